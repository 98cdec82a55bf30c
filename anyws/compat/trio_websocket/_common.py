"""Defaults, the logger and the header helpers shared by this package's modules."""

from __future__ import annotations

import logging
import math
from typing import TYPE_CHECKING, Any, Protocol

if TYPE_CHECKING:
    from collections.abc import Callable, Coroutine, Iterable

    import anyws

_CONN_TIMEOUT = 60  # default connect and disconnect timeout, in seconds
_MESSAGE_QUEUE_SIZE = 1
_MAX_MESSAGE_SIZE = 2**20
_RECEIVE_BYTES = 4 * 2**10  # accepted for compatibility; anyws sizes its own reads

_logger = logging.getLogger("anyws.compat.trio_websocket")

# Headers that trio-websocket (through wsproto) leaves out of WebSocketRequest.headers
# and of the client's handshake_headers, because they are reported elsewhere.
_REQUEST_SKIP = frozenset(
    {"host", "sec-websocket-extensions", "sec-websocket-protocol"}
)
_RESPONSE_SKIP = frozenset(
    {
        "connection",
        "sec-websocket-accept",
        "sec-websocket-extensions",
        "sec-websocket-protocol",
        "upgrade",
    }
)

_ByteHeaders = list[tuple[bytes, bytes]]


class _Nursery(Protocol):
    """What this package needs of a trio nursery or an anyio task group."""

    def start_soon(
        self,
        func: Callable[..., Coroutine[Any, Any, Any]],
        *args: Any,
        name: object = None,
    ) -> Any: ...

    async def start(
        self,
        func: Callable[..., Coroutine[Any, Any, Any]],
        *args: Any,
        name: object = None,
    ) -> Any: ...


def _str_pairs(headers: Iterable[tuple[bytes, bytes]] | None) -> list[tuple[str, str]]:
    return [(n.decode("latin-1"), v.decode("latin-1")) for n, v in headers or ()]


def _byte_pairs(
    headers: anyws.Headers, skip: frozenset[str] = frozenset()
) -> _ByteHeaders:
    return [
        (name.lower().encode("latin-1"), value.encode("latin-1"))
        for name, value in headers.raw_items()
        if name.lower() not in skip
    ]


def _max_queue(message_queue_size: float) -> int | None:
    # trio-websocket buffers in a memory channel; anyws stops reading once
    # ``max_queue`` messages wait, so 0 (a rendezvous) becomes 1.
    if message_queue_size == math.inf:
        return None
    return max(int(message_queue_size), 1)

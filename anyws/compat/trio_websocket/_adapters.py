"""Adapters that let anyws run over trio's streams and listeners, and anyio's."""

from __future__ import annotations

import contextlib
from typing import TYPE_CHECKING, Any, cast

import anyio
from anyio.abc import AsyncResource, ByteStream, SocketAttribute, SocketListener
from anyio.streams.stapled import MultiListener
from anyio.streams.tls import TLSAttribute, TLSListener

if TYPE_CHECKING:
    import ssl
    from collections.abc import Callable, Iterator, Mapping


def _trio_socket(obj: Any) -> Any:
    sock = getattr(obj, "socket", None)
    if sock is None:
        inner = getattr(obj, "transport_stream", None) or getattr(
            obj, "transport_listener", None
        )
        sock = getattr(inner, "socket", None)
    return sock


class _TrioStream(ByteStream):
    """An anyio byte stream over a trio stream (``send_all`` and ``receive_some``)."""

    def __init__(self, stream: Any) -> None:
        import trio  # only trio streams come here

        self._stream = stream
        self._trio = trio

    @contextlib.contextmanager
    def _mapped(self) -> Iterator[None]:
        try:
            yield
        except self._trio.ClosedResourceError as exc:
            raise anyio.ClosedResourceError from exc
        except self._trio.BrokenResourceError as exc:
            raise anyio.BrokenResourceError from exc

    async def receive(self, max_bytes: int = 65536) -> bytes:
        with self._mapped():
            data = await self._stream.receive_some(max_bytes)
        if not data:
            raise anyio.EndOfStream
        return bytes(data)

    async def send(self, item: bytes) -> None:
        with self._mapped():
            await self._stream.send_all(item)

    async def send_eof(self) -> None:
        if not hasattr(self._stream, "send_eof"):
            raise NotImplementedError("this trio stream cannot half-close")
        with self._mapped():
            await self._stream.send_eof()

    async def aclose(self) -> None:
        with self._mapped():
            await self._stream.aclose()

    @property
    def extra_attributes(self) -> Mapping[Any, Callable[[], Any]]:
        sock = _trio_socket(self._stream)
        if sock is None:
            return {}
        return {
            SocketAttribute.local_address: sock.getsockname,
            SocketAttribute.remote_address: sock.getpeername,
        }


def _as_anyio(stream: Any) -> tuple[ByteStream, bool]:
    """Return ``stream`` as an anyio byte stream, and whether it is TLS."""
    if isinstance(stream, ByteStream):
        return stream, stream.extra(TLSAttribute.ssl_object, None) is not None
    if hasattr(stream, "send_all") and hasattr(stream, "receive_some"):
        return _TrioStream(stream), hasattr(stream, "transport_stream")
    raise TypeError(f"not an anyio or trio stream: {stream!r}")


class _Source:
    """A listener of a :class:`WebSocketServer`: anyio's or trio's, TLS or not."""

    def __init__(self, listener: Any, ssl_context: ssl.SSLContext | None) -> None:
        # With an ssl_context, TLS runs in each connection's task (connect_timeout).
        self.listener = listener
        self.ssl_context = ssl_context
        self._trio = not isinstance(listener, SocketListener)
        if self._trio and not hasattr(listener, "accept"):
            raise TypeError(f"not an anyio or trio listener: {listener!r}")
        self.is_ssl = ssl_context is not None or hasattr(listener, "transport_listener")
        if not self._trio:
            self.address = listener.extra(SocketAttribute.local_address, None)
        else:
            sock = _trio_socket(listener)
            self.address = None if sock is None else sock.getsockname()

    @classmethod
    def flatten(
        cls, listener: Any, ssl_context: ssl.SSLContext | None = None
    ) -> list[_Source]:
        if isinstance(listener, TLSListener):
            return cls.flatten(listener.listener, listener.ssl_context)
        if isinstance(listener, MultiListener):
            return [
                s for one in listener.listeners for s in cls.flatten(one, ssl_context)
            ]
        return [cls(listener, ssl_context)]

    async def accept(self) -> tuple[ByteStream, object]:
        raw = await self.listener.accept()
        return (_TrioStream(raw) if self._trio else raw), raw

    async def aclose(self) -> None:
        await anyio.aclose_forcefully(cast("AsyncResource", self.listener))

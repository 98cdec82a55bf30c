"""Interoperability with the ``websockets`` package, an independent implementation.

Discipline
    Every test runs in two directions: an anyws client against a ``websockets``
    server, and a ``websockets`` client against an anyws server, each with
    permessage-deflate on and off, on real sockets on 127.0.0.1. Under asyncio (with
    or without uvloop) the peer is ``websockets.asyncio``; under trio it is
    ``websockets.trio``.

    The ``endpoints`` fixture yields both ends of one connection to the test task:
    the server's handler hands its connection over, then waits until the test is
    done. The test then drives both ends itself, so ordering comes from the
    messages: a send on one end is followed by a receive on the other. The client
    closes first when the test leaves, unless the test is about closing, where each
    side takes its turn to start the closing handshake.
"""

from __future__ import annotations

import functools
import os
from contextlib import asynccontextmanager
from typing import TYPE_CHECKING, Any, Literal

import anyio
import pytest
import trio
import websockets.asyncio.client
import websockets.asyncio.connection
import websockets.asyncio.server
import websockets.exceptions
import websockets.trio.client
import websockets.trio.connection
import websockets.trio.server

import anyws
from anyws import ConnectionClosed, ConnectionClosedError, ConnectionClosedOK

if TYPE_CHECKING:
    from collections.abc import AsyncIterator, Awaitable, Callable, Iterable

pytestmark = pytest.mark.interop

# Safety net for waits that would otherwise hang when a behaviour is missing.
TIMEOUT = 10
LARGE = 8 * 2**20
MAX_SIZE = 2 * LARGE

Compression = Literal["deflate"] | None
PeerConnection = (
    websockets.asyncio.connection.Connection | websockets.trio.connection.Connection
)


class Peer:
    """The ``websockets`` end of a connection, the same under asyncio and trio."""

    def __init__(self, connection: PeerConnection) -> None:
        self.connection = connection

    async def recv(self) -> str | bytes:
        return await self.connection.recv()

    async def recv_fragments(self) -> list[str | bytes]:
        return [fragment async for fragment in self.connection.recv_streaming()]

    async def send(
        self, message: str | bytes | Iterable[str] | Iterable[bytes]
    ) -> None:
        await self.connection.send(message)

    async def ping(self) -> None:
        """Send a Ping and wait for its Pong."""
        if isinstance(self.connection, websockets.trio.connection.Connection):
            event = await self.connection.ping()
            await event.wait()
        else:
            await (await self.connection.ping())

    async def close(self, code: int, reason: str) -> None:
        if isinstance(self.connection, websockets.trio.connection.Connection):
            await self.connection.aclose(code, reason)
        else:
            await self.connection.close(code, reason)

    @property
    def close_code(self) -> int | None:
        return self.connection.close_code

    @property
    def close_reason(self) -> str | None:
        return self.connection.close_reason


@asynccontextmanager
async def websockets_server(
    handler: Callable[[Any], Awaitable[None]], backend: str, **options: Any
) -> AsyncIterator[int]:
    """Run a ``websockets`` server on 127.0.0.1; yield its port."""
    if backend == "trio":
        async with trio.open_nursery() as nursery:
            serve = functools.partial(
                websockets.trio.server.serve, handler, 0, host="127.0.0.1", **options
            )
            server: websockets.trio.server.Server = await nursery.start(serve)
            async with server:
                yield server.listeners[0].socket.getsockname()[1]
    else:
        async with websockets.asyncio.server.serve(
            handler, "127.0.0.1", 0, **options
        ) as asyncio_server:
            yield asyncio_server.sockets[0].getsockname()[1]


@asynccontextmanager
async def websockets_client(
    uri: str, backend: str, **options: Any
) -> AsyncIterator[PeerConnection]:
    """Connect a ``websockets`` client to ``uri``."""
    if backend == "trio":
        async with websockets.trio.client.connect(uri, proxy=None, **options) as ws:
            yield ws
    else:
        async with websockets.asyncio.client.connect(
            uri, proxy=None, **options
        ) as asyncio_ws:
            yield asyncio_ws


Endpoints = tuple[anyws.Connection, Peer]


@asynccontextmanager
async def anyws_client_websockets_server(
    backend: str, compression: Compression
) -> AsyncIterator[Endpoints]:
    handed_over: list[PeerConnection] = []
    ready = anyio.Event()
    done = anyio.Event()

    async def handler(connection: PeerConnection) -> None:
        handed_over.append(connection)
        ready.set()
        await done.wait()

    async with websockets_server(
        handler, backend, compression=compression, max_size=MAX_SIZE
    ) as port:
        async with anyws.connect(
            f"ws://127.0.0.1:{port}/", compression=compression, max_size=MAX_SIZE
        ) as ws:
            await ready.wait()
            try:
                yield ws, Peer(handed_over[0])
            finally:
                done.set()


@asynccontextmanager
async def websockets_client_anyws_server(
    backend: str, compression: Compression
) -> AsyncIterator[Endpoints]:
    handed_over: list[anyws.ServerConnection] = []
    ready = anyio.Event()
    done = anyio.Event()

    async def handler(connection: anyws.ServerConnection) -> None:
        handed_over.append(connection)
        ready.set()
        await done.wait()

    async with anyws.serve(
        handler, "127.0.0.1", 0, compression=compression, max_size=MAX_SIZE
    ) as server:
        async with websockets_client(
            f"ws://127.0.0.1:{server.port}/",
            backend,
            compression=compression,
            max_size=MAX_SIZE,
        ) as peer:
            await ready.wait()
            try:
                yield handed_over[0], Peer(peer)
            finally:
                done.set()


@pytest.fixture(params=["anyws-client", "websockets-client"])
def direction(request: pytest.FixtureRequest) -> str:
    """Which library is the client; the other one is the server."""
    value: str = request.param
    return value


@pytest.fixture(params=["deflate", None], ids=["deflate", "no-compression"])
def compression(request: pytest.FixtureRequest) -> Compression:
    value: Compression = request.param
    return value


@pytest.fixture
async def endpoints(
    direction: str, compression: Compression, anyio_backend_name: str
) -> AsyncIterator[Endpoints]:
    """Both ends of one connection: (the anyws end, the websockets end)."""
    opened = (
        anyws_client_websockets_server
        if direction == "anyws-client"
        else websockets_client_anyws_server
    )
    with anyio.fail_after(TIMEOUT):
        async with opened(anyio_backend_name, compression) as pair:
            yield pair


def deflate_negotiated(ws: anyws.Connection) -> bool:
    assert ws.response is not None
    extensions = ws.response.headers.get_all("Sec-WebSocket-Extensions")
    return any("permessage-deflate" in value for value in extensions)


class TestHandshake:
    async def test_compression_as_requested(
        self, endpoints: Endpoints, compression: Compression
    ) -> None:
        ws, _peer = endpoints
        assert ws.state is anyws.State.OPEN
        assert deflate_negotiated(ws) is (compression == "deflate")


class TestMessages:
    async def test_text(self, endpoints: Endpoints) -> None:
        ws, peer = endpoints
        await ws.send("héllo, wörld ✓")
        assert await peer.recv() == "héllo, wörld ✓"
        await peer.send("ünïcode back ✓")
        assert await ws.recv() == "ünïcode back ✓"

    async def test_binary(self, endpoints: Endpoints) -> None:
        ws, peer = endpoints
        await ws.send(b"\x00\x01\xfe\xff")
        assert await peer.recv() == b"\x00\x01\xfe\xff"
        await ws.send(bytearray(b"bytearray"))
        assert await peer.recv() == b"bytearray"
        await ws.send(memoryview(b"memoryview"))
        assert await peer.recv() == b"memoryview"
        await peer.send(b"\xff\x00 back")
        assert await ws.recv() == b"\xff\x00 back"

    async def test_fragmented_from_anyws(self, endpoints: Endpoints) -> None:
        ws, peer = endpoints
        # websockets yields one fragment per frame received. With compression, a
        # frame may carry deflate data that doesn't end on a flush point (RFC 7692
        # section 7.2.1 allows it), so only the frame count and the whole are fixed.
        await ws.send(["frag", "ment", "ed ✓"])
        fragments = await peer.recv_fragments()
        assert [type(fragment) for fragment in fragments] == [str] * 3
        text = "".join(f for f in fragments if isinstance(f, str))
        assert text == "fragmented ✓"

        async def chunks() -> AsyncIterator[bytes]:
            yield b"\x00\x01"
            yield b"\x02"

        await ws.send(chunks())
        fragments = await peer.recv_fragments()
        assert [type(fragment) for fragment in fragments] == [bytes] * 2
        data = b"".join(f for f in fragments if isinstance(f, bytes))
        assert data == b"\x00\x01\x02"
        # A whole message after the fragmented ones.
        await ws.send("whole")
        assert await peer.recv() == "whole"

    async def test_fragmented_from_websockets(self, endpoints: Endpoints) -> None:
        ws, peer = endpoints
        await peer.send(["frag", "ment", "ed ✓"])
        fragments = [fragment async for fragment in ws.recv_streaming()]
        assert len(fragments) >= 3
        assert all(isinstance(fragment, str) for fragment in fragments)
        text = "".join(f for f in fragments if isinstance(f, str))
        assert text == "fragmented ✓"
        await peer.send([b"\x00\x01", b"\x02"])
        assert await ws.recv() == b"\x00\x01\x02"
        await peer.send("whole")
        assert await ws.recv() == "whole"

    async def test_large_messages(self, endpoints: Endpoints) -> None:
        ws, peer = endpoints
        data = os.urandom(LARGE)
        await ws.send(data)
        assert await peer.recv() == data
        text = "0123456789abcdef" * (LARGE // 16)
        await peer.send(text)
        assert await ws.recv() == text


class TestPing:
    async def test_anyws_ping_returns_latency(self, endpoints: Endpoints) -> None:
        ws, _peer = endpoints
        latency = await ws.ping()
        assert isinstance(latency, float)
        assert latency >= 0
        assert ws.latency == latency
        assert await ws.ping(b"payload") >= 0

    async def test_websockets_ping_is_answered(self, endpoints: Endpoints) -> None:
        ws, peer = endpoints
        await peer.ping()
        # The connection is still usable both ways after the Ping.
        await peer.send("after ping")
        assert await ws.recv() == "after ping"


CLOSES = [
    pytest.param(1000, "done", ConnectionClosedOK, id="1000"),
    pytest.param(4000, "bye", ConnectionClosedError, id="4000"),
]


class TestClose:
    @pytest.mark.parametrize(("code", "reason", "anyws_error"), CLOSES)
    async def test_anyws_closes(
        self,
        endpoints: Endpoints,
        code: int,
        reason: str,
        anyws_error: type[ConnectionClosed],
    ) -> None:
        ws, peer = endpoints
        await ws.close(code, reason)
        with pytest.raises(websockets.exceptions.ConnectionClosed) as info:
            await peer.recv()
        assert info.value.rcvd is not None
        assert (info.value.rcvd.code, info.value.rcvd.reason) == (code, reason)
        assert (peer.close_code, peer.close_reason) == (code, reason)
        # websockets answers with the code it received (RFC 6455 section 5.5.1).
        assert ws.close_code == code
        with pytest.raises(anyws_error) as closed:
            await ws.recv()
        assert closed.value.sent is not None
        assert (closed.value.sent.code, closed.value.sent.reason) == (code, reason)

    @pytest.mark.parametrize(("code", "reason", "anyws_error"), CLOSES)
    async def test_websockets_closes(
        self,
        endpoints: Endpoints,
        code: int,
        reason: str,
        anyws_error: type[ConnectionClosed],
    ) -> None:
        ws, peer = endpoints
        await peer.close(code, reason)
        with pytest.raises(anyws_error) as info:
            await ws.recv()
        assert info.value.rcvd is not None
        assert (info.value.rcvd.code, info.value.rcvd.reason) == (code, reason)
        await ws.wait_closed()
        assert (ws.close_code, ws.close_reason) == (code, reason)
        # anyws answers with the code it received (RFC 6455 section 5.5.1).
        assert peer.close_code == code

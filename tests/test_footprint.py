"""What a connection costs while it is open: its tasks, and what it keeps; and the
paths that keep it small: keepalive inside the reader, a reader without a task on
asyncio TCP streams, batched accepts, shared handshake headers.

Peers: an anyws server driven by hand-written clients (:class:`RawPeer`) over TCP on
127.0.0.1, so that every task counted in the process belongs to the server; and an
anyws client of a raw server whose single task exists before the count starts.

Tasks are counted with :func:`anyio.get_running_tasks` once every task waits
(:func:`anyio.wait_all_tasks_blocked`), before and after the connections
open: the difference is what the connections run. Nothing here measures time or
bytes; the keepalive tests use short intervals and only check what goes on the wire,
in order. ``anyio.fail_after`` is a safety net.
"""

from __future__ import annotations

from contextlib import asynccontextmanager
from typing import TYPE_CHECKING, Any, cast

import anyio
from anyio import wait_all_tasks_blocked
from anyio.abc import SocketAttribute, SocketListener
from anyio.streams.tls import TLSAttribute

import anyws
from anyws._http import HeadReader

from .helpers import OP_PING, OP_PONG, OP_TEXT, RawPeer, memory_stream_pair

if TYPE_CHECKING:
    import ssl
    from collections.abc import AsyncIterator

SAFETY_TIMEOUT = 5

# Much shorter than the safety net, so that several Pings come within it.
SHORT_INTERVAL = 0.02


async def count_tasks() -> int:
    """How many tasks run once all of them wait."""
    await wait_all_tasks_blocked()
    return len(anyio.get_running_tasks())


def reader_tasks(anyio_backend_name: str) -> int:
    """Tasks a connection's reader runs: none on asyncio's TCP streams, which
    deliver received bytes by callback; one elsewhere."""
    return 0 if anyio_backend_name == "asyncio" else 1


class Handlers:
    """An echo handler that reports how many connections it serves."""

    def __init__(self) -> None:
        self.entered = 0
        self.one_left = anyio.Event()

    async def __call__(self, ws: anyws.ServerConnection) -> None:
        self.entered += 1
        try:
            async for message in ws:
                await ws.send(message)
        finally:
            self.one_left.set()


@asynccontextmanager
async def served(handler: Any, **options: Any) -> AsyncIterator[anyws.Server]:
    options.setdefault("close_timeout", 0.5)
    with anyio.fail_after(SAFETY_TIMEOUT):
        async with anyws.serve(handler, "127.0.0.1", 0, **options) as server:
            yield server


async def echoed(peer: RawPeer, payload: bytes) -> bytes:
    """Send a text message and return its echo, answering Pings on the way."""
    await peer.send_frame(OP_TEXT, payload)
    while (received := await peer.read_frame()).opcode == OP_PING:
        await peer.send_frame(OP_PONG, received.payload)
    assert received.opcode == OP_TEXT
    return received.payload


class TestTasks:
    async def test_server_connection_runs_its_handler_and_reader(
        self, anyio_backend_name: str
    ) -> None:
        # The handler's task and the reader, which also keeps the connection alive:
        # keepalive is on here (the default interval), and costs no task.
        handlers = Handlers()
        async with served(handlers) as server:
            before = await count_tasks()
            peers = [await RawPeer.connect(server.port) for _ in range(3)]
            try:
                for peer in peers:
                    assert await echoed(peer, b"hello") == b"hello"
                assert handlers.entered == 3
                per_connection = 1 + reader_tasks(anyio_backend_name)
                assert await count_tasks() - before == per_connection * 3
            finally:
                for peer in peers:
                    await peer.aclose()

    async def test_server_tasks_end_with_the_connection(self) -> None:
        handlers = Handlers()
        async with served(handlers) as server:
            before = await count_tasks()
            peer = await RawPeer.connect(server.port)
            assert await echoed(peer, b"hello") == b"hello"
            await peer.aclose()
            await handlers.one_left.wait()
            assert await count_tasks() == before

    async def test_client_connection_runs_its_reader_only(
        self, anyio_backend_name: str
    ) -> None:
        done = anyio.Event()
        multi = await anyio.create_tcp_listener(local_host="127.0.0.1")
        listener = cast("SocketListener", multi.listeners[0])

        async def serve_one() -> None:
            stream = await listener.accept()
            async with stream:
                peer = RawPeer(stream, is_client=False)
                await peer.server_handshake()
                await done.wait()

        port = listener.extra(SocketAttribute.local_port)
        with anyio.fail_after(SAFETY_TIMEOUT):
            async with multi, anyio.create_task_group() as task_group:
                task_group.start_soon(serve_one)
                before = await count_tasks()
                async with anyws.connect(
                    f"ws://127.0.0.1:{port}/", close_timeout=0.1
                ) as ws:
                    assert ws.state is anyws.State.OPEN
                    assert await count_tasks() - before == reader_tasks(
                        anyio_backend_name
                    )
                    done.set()

    async def test_tls_connections_read_like_plain_ones(
        self,
        anyio_backend_name: str,
        server_ssl_context: ssl.SSLContext,
        client_ssl_context: ssl.SSLContext,
    ) -> None:
        # TLS on asyncio is the event loop's own, under the same stream: both ends
        # read without a task there, as over plain TCP.
        handlers = Handlers()
        async with served(handlers, ssl=server_ssl_context) as server:
            before = await count_tasks()
            async with anyws.connect(
                f"wss://127.0.0.1:{server.port}/", ssl=client_ssl_context
            ) as ws:
                await ws.send("hello")
                assert await ws.recv() == "hello"
                assert ws._stream.extra(TLSAttribute.server_side) is False
                ssl_object = ws._stream.extra(TLSAttribute.ssl_object)
                assert ssl_object.getpeercert() is not None
                # The server's handler, and a reader at each end.
                expected = 1 + 2 * reader_tasks(anyio_backend_name)
                assert await count_tasks() - before == expected


class TestAccept:
    async def test_a_burst_of_connections_is_served(self) -> None:
        # More clients at once than one wake-up of the accept loop takes.
        handlers = Handlers()
        count = 100
        async with served(handlers) as server:
            peers: list[RawPeer] = []

            async def open_one() -> None:
                peers.append(await RawPeer.connect(server.port))

            try:
                async with anyio.create_task_group() as task_group:
                    for _ in range(count):
                        task_group.start_soon(open_one)
                for number, peer in enumerate(peers):
                    payload = b"client %d" % number
                    assert await echoed(peer, payload) == payload
                assert handlers.entered == count
                assert len(server.connections) == count
            finally:
                for peer in peers:
                    await peer.aclose()


class TestKeepalive:
    async def test_pings_resume_after_a_pong_waited_for_without_limit(self) -> None:
        # With no ping_timeout, the reader waits for the Pong without a deadline;
        # the Pong must give it the deadline of the next Ping again.
        async with (
            served(Handlers(), ping_interval=SHORT_INTERVAL, ping_timeout=None) as s,
        ):
            peer = await RawPeer.connect(s.port)
            try:
                payloads = []
                for _ in range(3):
                    ping = await peer.read_frame()
                    assert ping.opcode == OP_PING
                    payloads.append(ping.payload)
                    await peer.send_frame(OP_PONG, ping.payload)
                assert len(set(payloads)) == 3
            finally:
                await peer.aclose()

    async def test_messages_keep_flowing_across_keepalive_deadlines(self) -> None:
        # Every keepalive deadline interrupts the reader's wait for data; no byte
        # of a message may be lost or reordered by it.
        async with served(Handlers(), ping_interval=SHORT_INTERVAL) as server:
            peer = await RawPeer.connect(server.port)
            try:
                for number in range(30):
                    payload = b"message %d" % number
                    assert await echoed(peer, payload) == payload
            finally:
                await peer.aclose()

    async def test_latency_comes_from_the_keepalive_pong(self) -> None:
        seen: list[anyws.ServerConnection] = []

        async def handler(ws: anyws.ServerConnection) -> None:
            seen.append(ws)
            await Handlers()(ws)

        async with served(handler, ping_interval=SHORT_INTERVAL) as server:
            peer = await RawPeer.connect(server.port)
            try:
                ping = await peer.read_frame()
                assert ping.opcode == OP_PING
                await peer.send_frame(OP_PONG, ping.payload)
                # The echo comes after the Pong was processed.
                assert await echoed(peer, b"after") == b"after"
                assert seen[0].latency > 0
            finally:
                await peer.aclose()


class TestHandshakeHeaders:
    async def test_headers_stay_readable_after_the_handshake(self) -> None:
        seen: list[anyws.ServerConnection] = []

        async def handler(ws: anyws.ServerConnection) -> None:
            seen.append(ws)
            await Handlers()(ws)

        async with served(handler) as server:
            async with anyws.connect(f"ws://127.0.0.1:{server.port}/") as ws:
                await ws.send("hi")
                assert await ws.recv() == "hi"
                assert ws.request is not None and ws.response is not None
                key = ws.request.headers["Sec-WebSocket-Key"]
                assert ws.response.headers["sec-websocket-accept"]
                served_ws = seen[0]
                assert served_ws.request is not None
                assert served_ws.response is not None
                assert served_ws.request.headers["sec-websocket-key"] == key
                assert served_ws.response.headers["Upgrade"] == "websocket"
                assert "Host" in served_ws.request.headers

    async def test_repeated_names_and_values_are_shared_between_requests(
        self,
    ) -> None:
        # Names, and values that repeat from client to client, are kept once; a
        # value of the client's own (the key) is not.
        parsed = []
        for key in (b"a2V5IG51bWJlciBvbmUhIQ==", b"a2V5IG51bWJlciB0d28hIQ=="):
            client, server = memory_stream_pair()
            await client.send(
                b"GET / HTTP/1.1\r\nHost: h\r\nUpgrade: websocket\r\n"
                b"Sec-WebSocket-Key: " + key + b"\r\n\r\n"
            )
            request = await HeadReader(server).read_request()
            parsed.append(list(request.headers.raw_items()))
            await client.aclose()
            await server.aclose()
        first, second = parsed
        assert [name for name, _ in first] == ["Host", "Upgrade", "Sec-WebSocket-Key"]
        for (name1, value1), (name2, value2) in zip(first, second, strict=True):
            assert name1 is name2
            if name1 != "Sec-WebSocket-Key":
                assert value1 is value2
        assert first[2][1] != second[2][1]


class TestIdentity:
    async def test_id_is_stable_and_unique(self) -> None:
        async with served(Handlers()) as server:
            url = f"ws://127.0.0.1:{server.port}/"
            async with anyws.connect(url) as one, anyws.connect(url) as two:
                assert one.id == one.id
                assert one.id != two.id

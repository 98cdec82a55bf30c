"""Hostile peers: whatever one client does, the server keeps serving.

Discipline
    Each test runs an ``anyws.serve`` server on 127.0.0.1 (port 0) and attacks it
    with hand-written clients: raw TCP for the HTTP attacks, and
    :class:`tests.helpers.RawPeer` (hand-built frames, no WebSocket library) for
    the WebSocket ones. Then a well-behaved anyws client must still get its echo,
    and nothing may be left behind: ``server.connections`` is empty again, and the
    conftest finds no leaked task, socket or thread.

    Ordering comes from what the server does (a response, a Close frame, the end
    of TCP), from ``anyio.Event`` set by handlers, and from
    ``anyio.wait_all_tasks_blocked()``: a task blocked in a send that never
    completes is how "the send waits" is observed. The only timers that decide
    anything are the server's ``open_timeout`` and ``close_timeout`` (0.3 s), in
    the tests about them; the slow client's pauses between bytes simulate the
    attack. ``anyio.fail_after`` only bounds a test that would hang.
"""

from __future__ import annotations

import re
import socket
from contextlib import asynccontextmanager
from typing import TYPE_CHECKING, Any

import anyio
import anyio.lowlevel
import pytest
from anyio.abc import SocketAttribute

import anyws
from tests.helpers import OP_BINARY, OP_CONT, OP_PING, OP_TEXT, RawPeer, frame

if TYPE_CHECKING:
    from collections.abc import AsyncIterator, Awaitable, Callable

    from anyio.abc import SocketStream

    Handler = Callable[[anyws.ServerConnection], Awaitable[None]]

SAFETY = 10  # seconds; a safety net, never reached when anyws behaves
TIMEOUT = 0.3  # open_timeout and close_timeout in the tests about them
MiB = 2**20


async def echo(ws: anyws.ServerConnection) -> None:
    async for message in ws:
        await ws.send(message)


ATTACK = "/attack"  # the path hostile peers connect to


def routed(attacked: Handler) -> Handler:
    """A handler: ``attacked`` for connections to /attack, an echo for the rest."""

    async def handler(ws: anyws.ServerConnection) -> None:
        if ws.request is not None and ws.request.path == ATTACK:
            await attacked(ws)
        else:
            await echo(ws)

    return handler


@asynccontextmanager
async def hostile_server(
    attacked: Handler = echo,
    **options: Any,
) -> AsyncIterator[anyws.Server]:
    """An anyws server without keepalive pings, checked for a clean end.

    Connections to /attack run ``attacked``; the others get an echo.
    """
    options.setdefault("ping_interval", None)
    with anyio.fail_after(SAFETY):
        async with anyws.serve(routed(attacked), "127.0.0.1", 0, **options) as server:
            yield server
            await still_serving(server)


async def still_serving(server: anyws.Server) -> None:
    """A well-behaved client gets its echo, then every connection is gone."""
    uri = f"ws://127.0.0.1:{server.port}/"
    async with anyws.connect(uri, ping_interval=None) as ws:
        await ws.send("still serving?")
        assert await ws.recv() == "still serving?"
    for connection in list(server.connections):
        await connection.wait_closed()
    await anyio.wait_all_tasks_blocked()
    assert server.connections == set()


async def read_to_eof(stream: SocketStream) -> tuple[bytes, bool]:
    """Read until the server ends TCP; return the bytes and whether it ended."""
    data = b""
    try:
        while True:
            data += await stream.receive()
    except anyio.EndOfStream:
        return data, True
    except anyio.BrokenResourceError:  # a reset also ends the connection
        return data, True


def upgrade_request(extra: str = "") -> bytes:
    return (
        "GET / HTTP/1.1\r\nHost: 127.0.0.1\r\nUpgrade: websocket\r\n"
        "Connection: Upgrade\r\nSec-WebSocket-Key: dGhlIHNhbXBsZSBub25jZQ==\r\n"
        f"Sec-WebSocket-Version: 13\r\n{extra}\r\n"
    ).encode()


class TestOversizedRequests:
    """Request heads over the limits of anyws._http: 431 or 400, then TCP ends."""

    @pytest.mark.parametrize(
        "extra",
        [
            pytest.param("X-Long: " + "a" * 9000, id="line-over-8KiB"),
            pytest.param(
                "".join(f"X-Big-{i}: {'b' * 7000}\r\n" for i in range(10)),
                id="head-over-64KiB",
            ),
            pytest.param(
                "".join(f"X-Many-{i}: c\r\n" for i in range(200)), id="over-128-lines"
            ),
        ],
    )
    async def test_refused_and_dropped(self, extra: str) -> None:
        async with hostile_server() as server:
            stream = await anyio.connect_tcp("127.0.0.1", server.port)
            async with stream:
                await stream.send(upgrade_request(extra))
                response, ended = await read_to_eof(stream)
            assert ended
            status = re.match(rb"HTTP/1\.1 (\d{3}) ", response)
            assert status is not None, response[:100]
            assert status.group(1) in (b"431", b"400")
            assert b"\r\nConnection: close\r\n" in response


class TestSlowAndSilentClients:
    async def test_slow_handshake_is_dropped_after_open_timeout(self) -> None:
        request = upgrade_request()
        sent = 0

        async def trickle(stream: SocketStream) -> None:
            # The attack: one byte at a time, paced far slower than open_timeout.
            nonlocal sent
            for byte in request:
                try:
                    await stream.send(bytes([byte]))
                except (anyio.BrokenResourceError, anyio.ClosedResourceError):
                    return
                sent += 1
                await anyio.sleep(0.02)

        async with hostile_server(open_timeout=TIMEOUT) as server:
            stream = await anyio.connect_tcp("127.0.0.1", server.port)
            async with stream, anyio.create_task_group() as task_group:
                task_group.start_soon(trickle, stream)
                response, ended = await read_to_eof(stream)
                task_group.cancel_scope.cancel()
            assert ended
            assert response == b""  # dropped, not answered
            assert sent < len(request)  # before the request could complete

    async def test_silent_connections_are_dropped_others_are_served(self) -> None:
        async with hostile_server(open_timeout=TIMEOUT) as server:
            silent = [
                await anyio.connect_tcp("127.0.0.1", server.port) for _ in range(20)
            ]
            try:
                # Meanwhile a well-behaved client is served at once.
                async with anyws.connect(
                    f"ws://127.0.0.1:{server.port}/", ping_interval=None
                ) as ws:
                    await ws.send("served")
                    assert await ws.recv() == "served"
                for stream in silent:
                    assert await read_to_eof(stream) == (b"", True)
            finally:
                for stream in silent:
                    await stream.aclose()


class TestVanishingClients:
    async def test_client_vanishes_mid_frame(self) -> None:
        outcome: list[BaseException] = []
        done = anyio.Event()

        async def handler(ws: anyws.ServerConnection) -> None:
            try:
                await echo(ws)
            except anyws.ConnectionClosed as exc:
                outcome.append(exc)
            finally:
                done.set()

        async with hostile_server(handler) as server:
            peer = await RawPeer.connect(server.port, ATTACK)
            partial = frame(OP_BINARY, bytes(1000))[:50]  # header + 44 of 1000 bytes
            await peer.send(partial)
            await peer.aclose()
            await done.wait()
            assert len(outcome) == 1
            assert isinstance(outcome[0], anyws.ConnectionClosedError)
            assert outcome[0].code == 1006

    async def test_client_vanishes_between_fragments(self) -> None:
        received: list[str | bytes] = []
        outcome: list[BaseException] = []
        done = anyio.Event()

        async def handler(ws: anyws.ServerConnection) -> None:
            try:
                async for message in ws:
                    received.append(message)
            except anyws.ConnectionClosed as exc:
                outcome.append(exc)
            finally:
                done.set()

        async with hostile_server(handler) as server:
            peer = await RawPeer.connect(server.port, ATTACK)
            await peer.send(
                frame(OP_TEXT, b"whole") + frame(OP_TEXT, b"half", fin=False)
            )
            await peer.aclose()
            await done.wait()
        assert received == ["whole"]  # and never the unfinished message
        assert len(outcome) == 1
        assert isinstance(outcome[0], anyws.ConnectionClosedError)

    async def test_client_vanishes_mid_handshake(
        self, caplog: pytest.LogCaptureFixture
    ) -> None:
        async with hostile_server() as server:
            stream = await anyio.connect_tcp("127.0.0.1", server.port)
            await stream.send(upgrade_request()[:40])
            await stream.aclose()
        assert not [
            r for r in caplog.records if r.name.startswith("anyws") and r.levelno >= 40
        ]


def flood_handler(state: dict[str, Any], total: int) -> Handler:
    """A handler that sends ``total`` 64 KiB messages, then sets ``state["done"]``."""

    async def handler(ws: anyws.ServerConnection) -> None:
        state["connection"] = ws
        try:
            for _ in range(total):
                await ws.send(bytes(65536))
                state["sent"] += 1
        except anyws.ConnectionClosed as exc:
            state["closed"] = exc
        finally:
            state["done"].set()

    return handler


async def settle(progress: Callable[[], int]) -> None:
    """Wait until ``progress()`` stops changing.

    The tasks are all blocked, and a thousand scheduler passes later it hasn't
    moved. The passes matter on asyncio, where anyws handles received bytes in the
    event loop's callbacks, which ``wait_all_tasks_blocked()`` doesn't see.
    """
    while True:
        await anyio.wait_all_tasks_blocked()
        before = progress()
        for _ in range(1000):
            await anyio.lowlevel.checkpoint()
        if progress() == before:
            return


def small_buffers(peer: RawPeer) -> None:
    """Shrink a raw peer's receive buffer, so that the server's sends wait early."""
    sock = peer.stream.extra(SocketAttribute.raw_socket)
    sock.setsockopt(socket.SOL_SOCKET, socket.SO_RCVBUF, 4096)


class TestClientsThatNeverRead:
    TOTAL = 1024  # 64 MiB: far more than the socket buffers hold

    @staticmethod
    def _state() -> dict[str, Any]:
        return {"sent": 0, "done": anyio.Event()}

    async def _blocked_flood(
        self, server: anyws.Server, state: dict[str, Any]
    ) -> RawPeer:
        peer = await RawPeer.connect(server.port, ATTACK)
        small_buffers(peer)
        await settle(lambda: state["sent"])
        # The server's send waits: it neither finished nor buffered the rest.
        assert 0 < state["sent"] < self.TOTAL
        return peer

    async def test_send_waits_and_other_connections_are_served(self) -> None:
        state = self._state()
        handler = flood_handler(state, self.TOTAL)
        async with hostile_server(handler, close_timeout=TIMEOUT) as server:
            peer = await self._blocked_flood(server, state)
            try:
                blocked_at = state["sent"]
                async with anyws.connect(
                    f"ws://127.0.0.1:{server.port}/", ping_interval=None
                ) as ws:
                    await ws.send("unaffected")
                    assert await ws.recv() == "unaffected"
                await settle(lambda: state["sent"])
                assert state["sent"] == blocked_at  # still waiting, nothing piled up
            finally:
                await peer.aclose()

    async def test_server_close_ends_it_after_close_timeout(self) -> None:
        state = self._state()
        handler = flood_handler(state, self.TOTAL)
        async with anyws.serve(
            routed(handler), "127.0.0.1", 0, ping_interval=None, close_timeout=TIMEOUT
        ) as server:
            peer = await self._blocked_flood(server, state)
            try:
                with anyio.fail_after(SAFETY):
                    await server.aclose()
                    await state["done"].wait()
                assert state["connection"].state is anyws.State.CLOSED
                assert server.connections == set()
            finally:
                await peer.aclose()

    async def test_connection_close_ends_it_after_close_timeout(self) -> None:
        state = self._state()
        handler = flood_handler(state, self.TOTAL)
        async with hostile_server(handler, close_timeout=TIMEOUT) as server:
            peer = await self._blocked_flood(server, state)
            try:
                with anyio.fail_after(SAFETY):
                    await state["connection"].close()
                    await state["done"].wait()
                assert isinstance(state.get("closed"), anyws.ConnectionClosed)
                assert state["connection"].state is anyws.State.CLOSED
            finally:
                await peer.aclose()


class TestFloods:
    async def test_ping_flood_is_bounded_by_backpressure(
        self, request: pytest.FixtureRequest, anyio_backend_name: str
    ) -> None:
        # The flooder never reads its Pongs: once they fill the socket buffers, the
        # server stops reading, and TCP pushes back on the flooder.
        chunk = frame(OP_PING, b"p" * 125) * 10
        planned = 13_000  # 17 MB of Pings: about twice what the buffers hold
        sent = 0

        async def flood(peer: RawPeer) -> None:
            nonlocal sent
            for _ in range(planned):
                await peer.send(chunk)
                sent += 1

        async with hostile_server() as server:
            peer = await RawPeer.connect(server.port, ATTACK)
            small_buffers(peer)
            try:
                async with anyio.create_task_group() as task_group:
                    task_group.start_soon(flood, peer)
                    await settle(lambda: sent)
                    flooded = sent
                    async with anyws.connect(
                        f"ws://127.0.0.1:{server.port}/", ping_interval=None
                    ) as ws:
                        await ws.send("unaffected")
                        assert await ws.recv() == "unaffected"
                    task_group.cancel_scope.cancel()
            finally:
                await peer.aclose()
            assert flooded < planned  # the flooder waits on TCP

    async def test_tiny_fragment_flood_is_bounded_by_max_size(self) -> None:
        received: list[str | bytes] = []
        outcome: list[BaseException] = []

        async def handler(ws: anyws.ServerConnection) -> None:
            try:
                async for message in ws:
                    received.append(message)
            except anyws.ConnectionClosed as exc:
                outcome.append(exc)

        limit = 4096
        fragments = (
            frame(OP_TEXT, b"x", fin=False) + frame(OP_CONT, b"x", fin=False) * limit
        )
        async with hostile_server(handler, max_size=limit) as server:
            peer = await RawPeer.connect(server.port, ATTACK)
            await peer.send(fragments)
            close = await peer.read_frame()
            assert close.close_code == 1009
            assert await peer.read_eof()
            await peer.aclose()
            for connection in list(server.connections):
                await connection.wait_closed()
        assert received == []
        assert len(outcome) == 1
        assert isinstance(outcome[0].__cause__, anyws.PayloadTooBig)


class TestUnansweredClose:
    async def test_close_timeout_ends_a_peer_that_never_answers(self) -> None:
        closed = anyio.Event()

        async def handler(ws: anyws.ServerConnection) -> None:
            await ws.close(4000, "go away")
            closed.set()

        async with hostile_server(handler, close_timeout=TIMEOUT) as server:
            peer = await RawPeer.connect(server.port, ATTACK)
            close = await peer.read_frame()
            assert close.close_code == 4000
            # Never answer, never close TCP: the server ends it after close_timeout.
            assert await peer.read_eof()
            await closed.wait()
            await peer.aclose()

"""Control frames, closing and failure of connections.

Peers: anyws against anyws over TCP on 127.0.0.1 (``anyws.serve`` and
``anyws.connect``), and, where a peer must misbehave or be watched on the wire, a
hand-written peer (:class:`RawPeer`): as a client of an anyws server, or as the server
of an anyws client on a plain anyio TCP listener.

Who closes first: RFC 6455 section 7.1.1 makes the server close TCP first. Tests about
the closing handshake say who sends the first Close frame and check that the server's
EOF comes while the raw client keeps its side open, or that an anyws client waits for
the raw server's EOF (up to ``close_timeout``). Elsewhere a raw peer simply drops TCP
when its ``async with`` block ends, which anyws must take as an abnormal closure.

Ordering is enforced by what the peers do: a raw peer reads the frame anyws sends
before it answers, a server handler reports what it saw through :class:`HandlerRun`
(an event plus the result or exception), and :func:`settle` lets every task run until
all of them wait. ``anyio.fail_after`` is only a safety net; the few tests that wait on
a timeout on purpose use small ``close_timeout`` and ``ping_timeout`` values and never
assert on elapsed time.
"""

from __future__ import annotations

import logging
import os
import socket
import struct
from collections.abc import AsyncIterator, Awaitable, Callable
from contextlib import AbstractAsyncContextManager, asynccontextmanager
from typing import Any, cast

import anyio
import pytest
from anyio.abc import SocketAttribute, SocketListener

import anyws
from anyws import Close, State

from .helpers import (
    OP_BINARY,
    OP_CLOSE,
    OP_CONT,
    OP_PING,
    OP_PONG,
    OP_TEXT,
    Frame,
    RawPeer,
    close_payload,
    frame,
)

# A test that hangs fails after this many seconds instead of pytest's timeout.
SAFETY_TIMEOUT = 5

# Small enough to keep tests fast, when a test waits for a timeout on purpose.
SHORT_TIMEOUT = 0.2

# Longer than the safety net: a test using it passes only if the timeout never runs out.
LONG_TIMEOUT = 10

# The receive buffer of a peer that must stop reading early (see
# limit_receive_buffer).
SMALL_RECEIVE_BUFFER = 2**16

Body = Callable[[anyws.ServerConnection], Awaitable[Any]]


# --------------------------------------------------------------------------
# Peers
# --------------------------------------------------------------------------


class HandlerRun:
    """A server handler that runs ``body`` and records what it returned or raised."""

    def __init__(self, body: Body) -> None:
        self.body = body
        self.connection: anyws.ServerConnection | None = None
        self.result: Any = None
        self.error: Exception | None = None
        self.started = anyio.Event()
        self.done = anyio.Event()

    async def __call__(self, ws: anyws.ServerConnection) -> None:
        self.connection = ws
        self.started.set()
        try:
            self.result = await self.body(ws)
        except Exception as exc:
            self.error = exc
        finally:
            self.done.set()

    @property
    def ws(self) -> anyws.ServerConnection:
        assert self.connection is not None, "no connection reached the handler"
        return self.connection


async def echo(ws: anyws.ServerConnection) -> None:
    async for message in ws:
        await ws.send(message)


async def recv_error(ws: anyws.Connection) -> anyws.ConnectionClosed:
    """Receive until the connection closes; return what recv() raised."""
    with pytest.raises(anyws.ConnectionClosed) as info:
        while True:
            await ws.recv()
    return info.value


async def closed_errors(
    ws: anyws.Connection,
) -> tuple[anyws.ConnectionClosed, anyws.ConnectionClosed]:
    """What recv() and then send() raise once the connection is closed."""
    recv_exc = await recv_error(ws)
    with pytest.raises(anyws.ConnectionClosed) as send_info:
        await ws.send("too late")
    return recv_exc, send_info.value


def uri(server: anyws.Server, path: str = "/") -> str:
    return f"ws://127.0.0.1:{server.port}{path}"


@asynccontextmanager
async def served(
    handler: Callable[[anyws.ServerConnection], Awaitable[None]], **options: Any
) -> AsyncIterator[anyws.Server]:
    """An anyws server on 127.0.0.1 with keepalive off and a short close_timeout."""
    options.setdefault("ping_interval", None)
    options.setdefault("close_timeout", 0.5)
    with anyio.fail_after(SAFETY_TIMEOUT):
        async with anyws.serve(handler, "127.0.0.1", 0, **options) as server:
            yield server


def connect(
    server: anyws.Server, path: str = "/", **options: Any
) -> AbstractAsyncContextManager[anyws.ClientConnection]:
    """anyws.connect to ``server`` with keepalive off and a short close_timeout."""
    options.setdefault("ping_interval", None)
    options.setdefault("close_timeout", 0.5)
    return anyws.connect(uri(server, path), **options)


@asynccontextmanager
async def raw_client(server: anyws.Server, path: str = "/") -> AsyncIterator[RawPeer]:
    """A raw client, after its opening handshake with ``server``."""
    peer = await RawPeer.connect(server.port, path)
    try:
        yield peer
    finally:
        await peer.aclose()


def limit_receive_buffer(sock: socket.socket) -> None:
    """Give the connections a listening socket accepts a small, fixed receive buffer.

    Accepted sockets inherit it, and a fixed size turns off the kernel's automatic
    growth, so that a peer that does not read blocks its sender soon.
    """
    sock.setsockopt(socket.SOL_SOCKET, socket.SO_RCVBUF, SMALL_RECEIVE_BUFFER)


@asynccontextmanager
async def raw_server(
    *, small_receive_buffer: bool = False, **options: Any
) -> AsyncIterator[tuple[anyws.ClientConnection, RawPeer]]:
    """An anyws client connected to a raw server on a plain TCP listener.

    The raw server closes TCP when the block ends (or earlier, if the test says so).
    """
    options.setdefault("ping_interval", None)
    options.setdefault("close_timeout", 0.5)
    options.setdefault("compression", None)
    with anyio.fail_after(SAFETY_TIMEOUT):
        multi = await anyio.create_tcp_listener(local_host="127.0.0.1", local_port=0)
        async with multi:
            listener = cast("SocketListener", multi.listeners[0])
            if small_receive_buffer:
                limit_receive_buffer(listener.extra(SocketAttribute.raw_socket))
            port = listener.extra(SocketAttribute.local_port)
            peers: list[RawPeer] = []
            ready = anyio.Event()

            async def accept_one() -> None:
                peer = RawPeer(await listener.accept(), is_client=False)
                peers.append(peer)
                await peer.server_handshake()
                ready.set()

            try:
                async with anyio.create_task_group() as task_group:
                    task_group.start_soon(accept_one)
                    async with anyws.connect(
                        f"ws://127.0.0.1:{port}/", **options
                    ) as ws:
                        await ready.wait()
                        try:
                            yield ws, peers[0]
                        finally:
                            await peers[0].aclose()
            finally:
                for peer in peers:
                    await peer.aclose()


def local_tcp_addresses() -> set[Any]:
    """The local addresses of the TCP sockets this process has open (Linux)."""
    addresses = set()
    for name in os.listdir("/proc/self/fd"):
        try:
            fd = os.dup(int(name))
        except OSError:  # closed meanwhile
            continue
        try:
            sock = socket.socket(fileno=fd)
        except OSError:  # not a socket
            os.close(fd)
            continue
        with sock:  # closes only the duplicate
            if sock.family in (socket.AF_INET, socket.AF_INET6):
                addresses.add(sock.getsockname())
    return addresses


def state(ws: anyws.Connection) -> State:
    """``ws.state``, read through a call: it changes while the test awaits."""
    return ws.state


async def settle() -> None:
    """Let every task run until all of them wait.

    Two passes: the event loop polls for I/O in between, so data already written on
    the loopback interface has been read by whoever waits for it.
    """
    await anyio.wait_all_tasks_blocked()
    await anyio.wait_all_tasks_blocked()


async def read_close(peer: RawPeer) -> Frame:
    """Read the next frame, which must be a Close frame."""
    received = await peer.read_frame()
    assert received.opcode == OP_CLOSE, received
    return received


def close_reason(received: Frame) -> bytes:
    return received.payload[2:]


# --------------------------------------------------------------------------
# Ping and Pong
# --------------------------------------------------------------------------


class TestPing:
    async def test_ping_returns_round_trip_and_sets_latency(self) -> None:
        async with served(echo) as server, connect(server) as ws:
            assert ws.latency == 0.0
            latency = await ws.ping()
            assert isinstance(latency, float)
            assert latency > 0
            assert ws.latency == latency
            second = await ws.ping()
            assert ws.latency == second

    async def test_server_pings_client(self) -> None:
        run = HandlerRun(lambda ws: ws.ping())
        async with served(run) as server, connect(server) as ws:
            await run.done.wait()
            assert run.error is None
            assert isinstance(run.result, float)
            assert run.result > 0
            assert run.ws.latency == run.result
            # The handler returned: the connection closes normally.
            assert isinstance(await recv_error(ws), anyws.ConnectionClosedOK)

    @pytest.mark.parametrize(
        ("data", "wire"),
        [(b"bytes \x00\xff", b"bytes \x00\xff"), ("héllo", "héllo".encode())],
        ids=["bytes", "str"],
    )
    async def test_ping_payload_on_the_wire(
        self, data: str | bytes, wire: bytes
    ) -> None:
        run = HandlerRun(lambda ws: ws.ping(data))
        async with served(run) as server, raw_client(server) as peer:
            ping = await peer.read_frame()
            assert (ping.opcode, ping.fin, ping.payload) == (OP_PING, True, wire)
            await settle()
            assert not run.done.is_set()  # waiting for the Pong
            await peer.send_frame(OP_PONG, wire)
            await run.done.wait()
            assert run.error is None
            assert isinstance(run.result, float)
            assert run.result > 0
            assert run.ws.latency == run.result
            assert (await read_close(peer)).close_code == 1000

    async def test_pong_with_other_payload_does_not_answer_ping(self) -> None:
        run = HandlerRun(lambda ws: ws.ping(b"mine"))
        async with served(run) as server, raw_client(server) as peer:
            assert (await peer.read_frame()).payload == b"mine"
            await peer.send_frame(OP_PONG, b"someone else's")
            await peer.send_frame(OP_PONG, b"")
            await settle()
            assert not run.done.is_set()
            assert run.ws.latency == 0.0
            await peer.send_frame(OP_PONG, b"mine")
            await run.done.wait()
            assert run.error is None
            assert run.result > 0

    async def test_pong_acknowledges_earlier_pings(self) -> None:
        first_read = anyio.Event()

        async def body(ws: anyws.ServerConnection) -> dict[bytes, float]:
            results: dict[bytes, float] = {}

            async def ping(data: bytes) -> None:
                results[data] = await ws.ping(data)

            async with anyio.create_task_group() as task_group:
                task_group.start_soon(ping, b"first")
                await first_read.wait()
                task_group.start_soon(ping, b"second")
            return results

        run = HandlerRun(body)
        async with served(run) as server, raw_client(server) as peer:
            assert (await peer.read_frame()).payload == b"first"
            first_read.set()
            assert (await peer.read_frame()).payload == b"second"
            # RFC 6455 section 5.5.3: a Pong may answer only the most recent Ping.
            await peer.send_frame(OP_PONG, b"second")
            await run.done.wait()
            assert run.error is None
            assert set(run.result) == {b"first", b"second"}
            assert all(latency > 0 for latency in run.result.values())

    async def test_concurrent_pings_with_same_payload(self) -> None:
        first_read = anyio.Event()

        async def body(ws: anyws.ServerConnection) -> list[Exception]:
            errors: list[Exception] = []
            async with anyio.create_task_group() as task_group:
                task_group.start_soon(ws.ping, b"same")
                await first_read.wait()
                for again in (b"same", "same"):
                    try:
                        await ws.ping(again)
                    except anyws.ConcurrencyError as exc:
                        errors.append(exc)
                # A different payload is fine meanwhile.
                task_group.start_soon(ws.ping, b"other")
            return errors

        run = HandlerRun(body)
        async with served(run) as server, raw_client(server) as peer:
            assert (await peer.read_frame()).payload == b"same"
            first_read.set()
            assert (await peer.read_frame()).payload == b"other"
            await peer.send_frame(OP_PONG, b"other")
            await run.done.wait()
            assert run.error is None
            assert len(run.result) == 2
            # Only the two Pings went out.
            assert (await read_close(peer)).close_code == 1000

    async def test_payload_over_125_bytes(self) -> None:
        async with served(echo) as server, connect(server) as ws:
            with pytest.raises(ValueError, match="125"):
                await ws.ping(b"x" * 126)
            with pytest.raises(ValueError, match="125"):
                await ws.ping("é" * 63)  # 126 bytes in UTF-8
            with pytest.raises(ValueError, match="125"):
                await ws.pong(b"x" * 126)
            assert await ws.ping(b"x" * 125) > 0
            await ws.pong(b"y" * 125)
            await ws.send("still open")
            assert await ws.recv() == "still open"

    async def test_cancelled_ping_leaves_connection_usable(self) -> None:
        ping_read = anyio.Event()
        cancelled = anyio.Event()

        async def body(ws: anyws.ServerConnection) -> float:
            async with anyio.create_task_group() as task_group:
                task_group.start_soon(ws.ping, b"cancelled")
                await ping_read.wait()
                task_group.cancel_scope.cancel()
            cancelled.set()
            await ws.send("after")
            return await ws.ping(b"second")

        run = HandlerRun(body)
        async with served(run) as server, raw_client(server) as peer:
            assert (await peer.read_frame()).payload == b"cancelled"
            ping_read.set()
            await cancelled.wait()
            # The Pong of the cancelled Ping comes late: it is ignored.
            await peer.send_frame(OP_PONG, b"cancelled")
            after = await peer.read_frame()
            assert (after.opcode, after.payload) == (OP_TEXT, b"after")
            assert (await peer.read_frame()).payload == b"second"
            await peer.send_frame(OP_PONG, b"second")
            await run.done.wait()
            assert run.error is None
            assert run.result > 0
            assert (await read_close(peer)).close_code == 1000

    async def test_cancelled_ping_on_client(self) -> None:
        async with served(echo) as server, connect(server) as ws:
            with anyio.CancelScope() as scope:
                scope.cancel()
                await ws.ping()
            assert scope.cancelled_caught
            assert await ws.ping() > 0
            await ws.send("still open")
            assert await ws.recv() == "still open"

    async def test_received_pings_are_answered_with_same_payload(self) -> None:
        run = HandlerRun(echo)
        async with served(run) as server, raw_client(server) as peer:
            await peer.send_frame(OP_PING, b"are you there?")
            await peer.send_frame(OP_PING, b"")
            # Between the fragments of a message, too (RFC 6455 section 5.4).
            await peer.send_frame(OP_TEXT, b"frag", fin=False)
            await peer.send_frame(OP_PING, b"\x00" * 125)
            await peer.send_frame(OP_CONT, b"mented")
            for payload in (b"are you there?", b"", b"\x00" * 125):
                pong = await peer.read_frame()
                assert (pong.opcode, pong.payload) == (OP_PONG, payload)
            message = await peer.read_frame()
            assert (message.opcode, message.payload) == (OP_TEXT, b"fragmented")

    async def test_unsolicited_pong_is_ignored(self) -> None:
        run = HandlerRun(echo)
        async with served(run) as server, raw_client(server) as peer:
            await peer.send_frame(OP_PONG, b"heartbeat")
            await peer.send_frame(OP_PONG, b"")
            await peer.send_frame(OP_TEXT, b"hello")
            reply = await peer.read_frame()
            assert (reply.opcode, reply.payload) == (OP_TEXT, b"hello")
            assert state(run.ws) is State.OPEN
            assert run.ws.latency == 0.0

    async def test_pong_sends_unsolicited_pong(self) -> None:
        async def body(ws: anyws.ServerConnection) -> None:
            await ws.pong(b"beat")
            await ws.pong("héllo")
            await ws.pong()

        run = HandlerRun(body)
        async with served(run) as server, raw_client(server) as peer:
            for payload in (b"beat", "héllo".encode(), b""):
                pong = await peer.read_frame()
                assert (pong.opcode, pong.fin, pong.payload) == (OP_PONG, True, payload)
            assert (await read_close(peer)).close_code == 1000
            assert run.error is None

    async def test_client_pong_is_ignored_by_server(self) -> None:
        async with served(echo) as server, connect(server) as ws:
            await ws.pong(b"beat")
            await ws.send("hello")
            assert await ws.recv() == "hello"
            assert ws.latency == 0.0


# --------------------------------------------------------------------------
# Keepalive
# --------------------------------------------------------------------------


class TestKeepalive:
    async def test_server_sends_pings_periodically(self) -> None:
        run = HandlerRun(echo)
        async with (
            served(run, ping_interval=0.05, ping_timeout=1) as server,
            raw_client(server) as peer,
        ):
            payloads = []
            for _ in range(2):
                ping = await peer.read_frame()
                assert ping.opcode == OP_PING
                payloads.append(ping.payload)
                await peer.send_frame(OP_PONG, ping.payload)
            assert len(set(payloads)) == 2
            assert all(payloads)
            # The connection stays open; keep answering Pings until the echo comes.
            await peer.send_frame(OP_TEXT, b"still here")
            while (received := await peer.read_frame()).opcode == OP_PING:
                await peer.send_frame(OP_PONG, received.payload)
            assert (received.opcode, received.payload) == (OP_TEXT, b"still here")
            assert run.ws.latency > 0

    async def test_client_sends_pings_periodically(self) -> None:
        async with raw_server(ping_interval=0.05, ping_timeout=1) as (ws, peer):
            for _ in range(2):
                ping = await peer.read_frame()
                assert ping.opcode == OP_PING
                await peer.send_frame(OP_PONG, ping.payload)
            await peer.send_frame(OP_TEXT, b"hello")
            assert await ws.recv() == "hello"
            assert ws.latency > 0
            assert state(ws) is State.OPEN

    async def test_server_closes_peer_that_never_answers(self) -> None:
        run = HandlerRun(recv_error)
        async with (
            served(run, ping_interval=0.05, ping_timeout=SHORT_TIMEOUT) as server,
            raw_client(server) as peer,
        ):
            assert (await peer.read_frame()).opcode == OP_PING
            close = await read_close(peer)  # no Pong sent
            assert close.close_code == 1011
            await peer.send_frame(OP_CLOSE, close_payload(1011))
            assert await peer.read_eof()
            await run.done.wait()
            exc = run.result
            assert isinstance(exc, anyws.ConnectionClosedError)
            assert exc.sent is not None
            assert exc.sent.code == 1011
            assert exc.sent.reason == close_reason(close).decode()
            assert run.ws.close_code == 1011

    async def test_client_closes_peer_that_never_answers(self) -> None:
        async with raw_server(ping_interval=0.05, ping_timeout=SHORT_TIMEOUT) as (
            ws,
            peer,
        ):
            assert (await peer.read_frame()).opcode == OP_PING
            close = await read_close(peer)  # no Pong sent
            assert close.close_code == 1011
            await peer.send_frame(OP_CLOSE, close_payload(1011))
            await peer.aclose()
            with pytest.raises(anyws.ConnectionClosedError) as info:
                await ws.recv()
            assert info.value.sent is not None
            assert info.value.sent.code == 1011
            assert ws.close_code == 1011


# --------------------------------------------------------------------------
# The closing handshake
# --------------------------------------------------------------------------

CODES = [
    pytest.param(1000, anyws.ConnectionClosedOK, id="1000"),
    pytest.param(1001, anyws.ConnectionClosedOK, id="1001"),
    pytest.param(4000, anyws.ConnectionClosedError, id="4000"),
    pytest.param(1011, anyws.ConnectionClosedError, id="1011"),
]


class TestClose:
    async def test_codes_are_plain_ints(self) -> None:
        # No wsproto type leaks out through the close codes.
        async with served(echo) as server:
            async with connect(server) as ws:
                await ws.close(1001, "bye")
            assert type(ws.close_code) is int
            assert ws.close_code == 1001
            exc = ws._closed_exception()
            assert exc.rcvd is not None and exc.sent is not None
            assert type(exc.rcvd.code) is int
            assert type(exc.sent.code) is int

    @pytest.mark.parametrize(("code", "exc_type"), CODES)
    async def test_client_closes(
        self, code: int, exc_type: type[anyws.ConnectionClosed]
    ) -> None:
        run = HandlerRun(closed_errors)
        async with served(run) as server, connect(server) as ws:
            assert state(ws) is State.OPEN
            assert (ws.close_code, ws.close_reason) == (None, None)
            await ws.close(code, "client bye")
            assert state(ws) is State.CLOSED
            assert ws.close_code == code
            assert ws.close_reason == ""  # the server echoes the code only

            recv_exc, send_exc = await closed_errors(ws)
            for exc in (recv_exc, send_exc):
                assert type(exc) is exc_type
                assert exc.sent == Close(code, "client bye")
                assert exc.rcvd == Close(code, "")
                assert exc.rcvd_then_sent is False
                assert exc.code == code
            with pytest.raises(exc_type):
                await ws.ping()
            with pytest.raises(exc_type):
                await ws.pong()

            await run.done.wait()
            assert run.error is None
            for exc in run.result:
                assert type(exc) is exc_type
                assert exc.rcvd == Close(code, "client bye")
                assert exc.sent == Close(code, "")
                assert exc.rcvd_then_sent is True
                assert exc.reason == "client bye"
            assert state(run.ws) is State.CLOSED
            assert run.ws.close_code == code
            assert run.ws.close_reason == "client bye"

    @pytest.mark.parametrize(("code", "exc_type"), CODES)
    async def test_server_closes(
        self, code: int, exc_type: type[anyws.ConnectionClosed]
    ) -> None:
        async def body(
            ws: anyws.ServerConnection,
        ) -> tuple[anyws.ConnectionClosed, anyws.ConnectionClosed]:
            await ws.close(code, "server bye")
            return await closed_errors(ws)

        run = HandlerRun(body)
        async with served(run) as server, connect(server) as ws:
            recv_exc, send_exc = await closed_errors(ws)
            for exc in (recv_exc, send_exc):
                assert type(exc) is exc_type
                assert exc.rcvd == Close(code, "server bye")
                assert exc.sent == Close(code, "")
                assert exc.rcvd_then_sent is True
            assert state(ws) is State.CLOSED
            assert ws.close_code == code
            assert ws.close_reason == "server bye"

            await run.done.wait()
            assert run.error is None
            for exc in run.result:
                assert type(exc) is exc_type
                assert exc.sent == Close(code, "server bye")
                assert exc.rcvd == Close(code, "")
                assert exc.rcvd_then_sent is False
            assert state(run.ws) is State.CLOSED
            assert run.ws.close_code == code
            assert run.ws.close_reason == ""

    async def test_async_for_ends_on_normal_close(self) -> None:
        async def body(ws: anyws.ServerConnection) -> None:
            await ws.send("one")
            await ws.send("two")
            await ws.close(1001)

        async with served(body) as server, connect(server) as ws:
            assert [message async for message in ws] == ["one", "two"]
            assert ws.close_code == 1001

    async def test_async_for_raises_on_error_close(self) -> None:
        async def body(ws: anyws.ServerConnection) -> None:
            await ws.send("one")
            await ws.close(4000)

        async with served(body) as server, connect(server) as ws:
            received = []
            with pytest.raises(anyws.ConnectionClosedError):
                async for message in ws:
                    received.append(message)
            assert received == ["one"]

    async def test_close_frame_without_code(self) -> None:
        run = HandlerRun(recv_error)
        async with served(run) as server, raw_client(server) as peer:
            await peer.send_frame(OP_CLOSE, b"")
            reply = await read_close(peer)
            assert reply.payload == b""  # 1005 never goes on the wire
            assert await peer.read_eof()
            await run.done.wait()
            assert isinstance(run.result, anyws.ConnectionClosedOK)
            assert run.result.rcvd is not None
            assert run.result.rcvd.code == 1005
            assert run.ws.close_code == 1005

    async def test_state_goes_open_closing_closed(self) -> None:
        async with raw_server(close_timeout=LONG_TIMEOUT) as (ws, peer):
            assert state(ws) is State.OPEN
            async with anyio.create_task_group() as task_group:
                task_group.start_soon(ws.close, 1000, "bye")
                close = await read_close(peer)
                assert (close.close_code, close_reason(close)) == (1000, b"bye")
                assert state(ws) is State.CLOSING
                assert ws.close_code is None
                await peer.send_frame(OP_CLOSE, close_payload(1000, b"ok"))
                await settle()
                # Closing handshake done; TCP is the server's to close.
                assert state(ws) is State.CLOSING
                assert ws.close_code is None
                await peer.aclose()
            assert state(ws) is State.CLOSED
            assert ws.close_code == 1000
            assert ws.close_reason == "ok"

    async def test_close_is_idempotent(self) -> None:
        run = HandlerRun(recv_error)
        async with served(run) as server, connect(server) as ws:
            async with anyio.create_task_group() as task_group:
                task_group.start_soon(ws.close, 1000, "first")
                task_group.start_soon(ws.close, 1000, "first")
            assert state(ws) is State.CLOSED
            await ws.close()
            await ws.close(4000, "second")
            await ws.aclose()
            assert state(ws) is State.CLOSED
            with pytest.raises(anyws.ConnectionClosedOK) as info:
                await ws.recv()
            assert info.value.sent == Close(1000, "first")
            await run.done.wait()
            assert run.result.rcvd == Close(1000, "first")

    async def test_concurrent_close_sends_one_close_frame(self) -> None:
        async with raw_server(close_timeout=SHORT_TIMEOUT) as (ws, peer):
            async with anyio.create_task_group() as task_group:
                task_group.start_soon(ws.close)
                task_group.start_soon(ws.close, 4000)
                close = await read_close(peer)
                await peer.send_frame(OP_CLOSE, close.payload[:2])
                # Nothing follows the one Close frame; the client gives up waiting
                # for the server to close TCP after close_timeout.
                assert await peer.read_eof()
            assert state(ws) is State.CLOSED
            assert ws.close_code == close.close_code

    async def test_invalid_close_codes(self) -> None:
        async with served(echo) as server, connect(server) as ws:
            # RFC 6455 section 7.4: 1005, 1006 and 1015 never go on the wire; below
            # 1000 and 1016 to 2999 are not assigned; 5000 and up do not exist.
            for code in (1005, 1006, 1015, 1004, 999, 0, 1016, 2999, 5000):
                with pytest.raises(ValueError, match=str(code)):
                    await ws.close(code)
                assert state(ws) is State.OPEN
            await ws.send("still open")
            assert await ws.recv() == "still open"

    async def test_close_reason_limit(self) -> None:
        run = HandlerRun(recv_error)
        async with served(run) as server, connect(server) as ws:
            with pytest.raises(ValueError, match="123"):
                await ws.close(1000, "é" * 62)  # 124 bytes in UTF-8
            assert state(ws) is State.OPEN
            longest = "é" * 61 + "x"  # 123 bytes
            await ws.close(1000, longest)
            await run.done.wait()
            assert run.result.rcvd == Close(1000, longest)


class TestServerClosesTCPFirst:
    """RFC 6455 section 7.1.1: the server closes the TCP connection first."""

    async def test_after_client_close(self) -> None:
        run = HandlerRun(recv_error)
        async with served(run) as server, raw_client(server) as peer:
            await peer.send_frame(OP_CLOSE, close_payload(1000, b"done"))
            reply = await read_close(peer)
            assert reply.close_code == 1000
            # EOF comes although the raw client has not closed its side.
            assert await peer.read_eof()
            await run.done.wait()
            exc = run.result
            assert isinstance(exc, anyws.ConnectionClosedOK)
            assert exc.rcvd == Close(1000, "done")
            assert exc.rcvd_then_sent is True

    async def test_after_server_close(self) -> None:
        closing = anyio.Event()

        async def body(ws: anyws.ServerConnection) -> None:
            closing.set()
            await ws.close(1001, "going")

        run = HandlerRun(body)
        async with served(run) as server, raw_client(server) as peer:
            close = await read_close(peer)
            assert (close.close_code, close_reason(close)) == (1001, b"going")
            await closing.wait()
            assert state(run.ws) is State.CLOSING
            await peer.send_frame(OP_CLOSE, close_payload(1001))
            assert await peer.read_eof()
            await run.done.wait()
            assert run.error is None
            assert state(run.ws) is State.CLOSED
            assert run.ws.close_code == 1001

    async def test_client_waits_for_server_to_close_tcp(self) -> None:
        async with raw_server(close_timeout=LONG_TIMEOUT) as (ws, peer):
            closed = anyio.Event()

            async def close() -> None:
                await ws.close()
                closed.set()

            async with anyio.create_task_group() as task_group:
                task_group.start_soon(close)
                assert (await read_close(peer)).close_code == 1000
                await peer.send_frame(OP_CLOSE, close_payload(1000))
                await settle()
                assert not closed.is_set()
                assert state(ws) is State.CLOSING
                # The close_timeout is long: only the server's EOF ends close().
                await peer.aclose()
                await closed.wait()
            assert state(ws) is State.CLOSED
            assert ws.close_code == 1000

    async def test_client_gives_up_on_server_that_keeps_tcp_open(self) -> None:
        async with raw_server(close_timeout=SHORT_TIMEOUT) as (ws, peer):
            async with anyio.create_task_group() as task_group:
                task_group.start_soon(ws.close, 1000)
                assert (await read_close(peer)).close_code == 1000
                await peer.send_frame(OP_CLOSE, close_payload(1000, b"ok"))
                # The raw server never closes TCP: the client does, after
                # close_timeout.
                assert await peer.read_eof()
            assert state(ws) is State.CLOSED
            assert ws.close_code == 1000
            assert ws.close_reason == "ok"
            with pytest.raises(anyws.ConnectionClosedOK):
                await ws.recv()


class TestUnansweredClose:
    async def test_client_close_times_out(self) -> None:
        async with raw_server(close_timeout=SHORT_TIMEOUT) as (ws, peer):
            await ws.close(1000, "bye")  # the raw server reads nothing meanwhile
            assert state(ws) is State.CLOSED
            assert ws.close_code == 1006
            assert ws.close_reason == ""
            with anyio.fail_after(1):
                await ws.wait_closed()
            with pytest.raises(anyws.ConnectionClosedError) as info:
                await ws.recv()
            assert info.value.rcvd is None
            assert info.value.sent == Close(1000, "bye")
            assert info.value.rcvd_then_sent is None
            assert info.value.code == 1006
            with pytest.raises(anyws.ConnectionClosedError):
                await ws.send("too late")
            # The raw server got the Close frame, then the end of the stream.
            assert (await read_close(peer)).close_code == 1000
            assert await peer.read_eof()

    async def test_server_close_times_out(self) -> None:
        async def body(ws: anyws.ServerConnection) -> anyws.ConnectionClosed:
            await ws.close(4001)
            return await recv_error(ws)

        run = HandlerRun(body)
        async with (
            served(run, close_timeout=SHORT_TIMEOUT) as server,
            raw_client(server) as peer,
        ):
            assert (await read_close(peer)).close_code == 4001
            assert await peer.read_eof()  # no Close sent back
            await run.done.wait()
            exc = run.result
            assert isinstance(exc, anyws.ConnectionClosedError)
            assert exc.rcvd is None
            assert exc.sent == Close(4001, "")
            assert run.ws.close_code == 1006


class TestAbruptDisconnect:
    async def test_client_drops_tcp(self) -> None:
        run = HandlerRun(recv_error)

        async def handler(ws: anyws.ServerConnection) -> None:
            if ws.request is not None and ws.request.path == "/echo":
                await echo(ws)
            else:
                await run(ws)

        async with served(handler) as server:
            async with raw_client(server, "/drop") as peer:
                await peer.send_frame(OP_TEXT, b"partial", fin=False)
                await run.started.wait()
            await run.done.wait()
            exc = run.result
            assert isinstance(exc, anyws.ConnectionClosedError)
            assert exc.rcvd is None
            assert exc.sent is None
            assert exc.code == 1006
            assert run.ws.close_code == 1006
            assert state(run.ws) is State.CLOSED

            # The server keeps serving.
            async with connect(server, "/echo") as ws:
                await ws.send("next")
                assert await ws.recv() == "next"

    async def test_server_drops_tcp(self) -> None:
        async with raw_server() as (ws, peer):
            await peer.send_frame(OP_TEXT, b"before")
            await peer.aclose()
            assert await ws.recv() == "before"
            with pytest.raises(anyws.ConnectionClosedError) as info:
                await ws.recv()
            assert info.value.rcvd is None
            assert info.value.sent is None
            assert ws.close_code == 1006
            assert ws.close_reason == ""


class TestWaitClosed:
    async def test_returns_once_tcp_is_gone(self) -> None:
        async with raw_server(close_timeout=LONG_TIMEOUT) as (ws, peer):
            closed = anyio.Event()

            async def wait_closed() -> None:
                await ws.wait_closed()
                closed.set()

            async with anyio.create_task_group() as task_group:
                task_group.start_soon(wait_closed)
                await peer.send_frame(OP_CLOSE, close_payload(1000))
                assert (await read_close(peer)).close_code == 1000
                await settle()
                assert not closed.is_set()  # handshake done, TCP still open
                await peer.aclose()
                await closed.wait()
            assert state(ws) is State.CLOSED
            assert ws.close_code == 1000

    async def test_server_side_returns_when_client_drops(self) -> None:
        async def body(ws: anyws.ServerConnection) -> State:
            await ws.wait_closed()
            return ws.state

        run = HandlerRun(body)
        async with served(run) as server:
            async with raw_client(server):
                await run.started.wait()
                await settle()
                assert not run.done.is_set()
            await run.done.wait()
            assert run.result is State.CLOSED


# --------------------------------------------------------------------------
# Protocol errors
# --------------------------------------------------------------------------


PROTOCOL_ERRORS = [
    pytest.param([frame(OP_TEXT, b"hello", mask=False)], 1002, id="unmasked"),
    pytest.param([frame(3)], 1002, id="reserved-opcode-3"),
    pytest.param([frame(0xB)], 1002, id="reserved-control-opcode"),
    pytest.param([frame(OP_TEXT, b"hello", rsv=4)], 1002, id="rsv1-no-extension"),
    pytest.param([frame(OP_TEXT, b"ok \xff\xfe")], 1007, id="invalid-utf8"),
    pytest.param([frame(OP_CLOSE, close_payload(1005))], 1002, id="close-1005"),
    pytest.param([frame(OP_CLOSE, close_payload(999))], 1002, id="close-999"),
    pytest.param([frame(OP_CLOSE, b"\x03")], 1002, id="close-one-byte"),
    pytest.param(
        [frame(OP_CLOSE, close_payload(1000, b"\xff"))], 1007, id="close-bad-reason"
    ),
    pytest.param([frame(OP_PING, b"x" * 126)], 1002, id="ping-126-bytes"),
    pytest.param([frame(OP_PING, b"x", fin=False)], 1002, id="fragmented-ping"),
    pytest.param([frame(OP_CONT, b"x")], 1002, id="continuation-alone"),
    pytest.param(
        [frame(OP_TEXT, b"a", fin=False), frame(OP_TEXT, b"b")],
        1002,
        id="new-message-mid-message",
    ),
]


class TestProtocolErrors:
    """RFC 6455 sections 5 and 7.4.1: fail the connection with the right code."""

    async def check_failed(self, run: HandlerRun, peer: RawPeer, code: int) -> None:
        close = await read_close(peer)
        assert close.close_code == code
        # The server closes (half-closes) TCP after its Close frame.
        assert await peer.read_eof()
        await peer.aclose()
        await run.done.wait()
        exc = run.result
        assert isinstance(exc, anyws.ConnectionClosedError)
        assert isinstance(exc.__cause__, anyws.ProtocolError)
        assert exc.__cause__.code == code
        assert exc.sent is not None
        assert exc.sent.code == code
        assert state(run.ws) is State.CLOSED

    @pytest.mark.parametrize(("frames", "code"), PROTOCOL_ERRORS)
    async def test_from_client(self, frames: list[bytes], code: int) -> None:
        run = HandlerRun(recv_error)
        async with served(run) as server, raw_client(server) as peer:
            for data in frames:
                await peer.send(data)
            await self.check_failed(run, peer, code)

    async def test_invalid_utf8_fails_before_message_ends(self) -> None:
        run = HandlerRun(recv_error)
        async with served(run) as server, raw_client(server) as peer:
            # "caf" and the first byte of "é", then a byte that cannot follow it.
            await peer.send_frame(OP_TEXT, b"caf\xc3", fin=False)
            await peer.send_frame(OP_CONT, b"\x28", fin=False)
            # No more frames: the Close frame must come without the end of message.
            await self.check_failed(run, peer, 1007)

    async def test_code_point_split_across_fragments_is_valid(self) -> None:
        run = HandlerRun(echo)
        async with served(run) as server, raw_client(server) as peer:
            await peer.send_frame(OP_TEXT, b"caf\xc3", fin=False)
            await peer.send_frame(OP_CONT, b"\xa9")
            reply = await peer.read_frame()
            assert (reply.opcode, reply.payload) == (OP_TEXT, "café".encode())

    async def test_masked_frame_from_server(self) -> None:
        async with raw_server() as (ws, peer):
            await peer.send_frame(OP_TEXT, b"hello", mask=True)
            close = await read_close(peer)
            assert close.close_code == 1002
            assert await peer.read_eof()  # the client gives up on the connection
            await peer.aclose()
            with pytest.raises(anyws.ConnectionClosedError) as info:
                await ws.recv()
            assert isinstance(info.value.__cause__, anyws.ProtocolError)
            assert info.value.__cause__.code == 1002
            assert info.value.sent is not None
            assert info.value.sent.code == 1002

    async def test_server_keeps_serving(self) -> None:
        async with served(echo) as server:
            async with raw_client(server) as peer:
                await peer.send(frame(3))
                assert (await read_close(peer)).close_code == 1002
            async with connect(server) as ws:
                await ws.send("fine")
                assert await ws.recv() == "fine"


# --------------------------------------------------------------------------
# The handler's lifecycle
# --------------------------------------------------------------------------


class TestHandlerLifecycle:
    async def test_handler_return_closes_with_1000(self) -> None:
        async def body(ws: anyws.ServerConnection) -> None:
            await ws.send("bye")

        async with served(body) as server, connect(server) as ws:
            assert await ws.recv() == "bye"
            with pytest.raises(anyws.ConnectionClosedOK) as info:
                await ws.recv()
            assert info.value.rcvd is not None
            assert info.value.rcvd.code == 1000
            assert ws.close_code == 1000

    async def test_handler_error_closes_with_1011_and_is_logged(
        self, caplog: pytest.LogCaptureFixture
    ) -> None:
        caplog.set_level(logging.DEBUG, logger="anyws")

        async def handler(ws: anyws.ServerConnection) -> None:
            if ws.request is not None and ws.request.path == "/fail":
                raise RuntimeError("handler failure for the test")
            await echo(ws)

        async with served(handler) as server:
            async with connect(server, "/echo") as other:
                await other.send("before")
                assert await other.recv() == "before"
                async with connect(server, "/fail") as ws:
                    with pytest.raises(anyws.ConnectionClosedError) as info:
                        await ws.recv()
                    assert info.value.rcvd is not None
                    assert info.value.rcvd.code == 1011
                    assert ws.close_code == 1011
                # The other connection is undisturbed.
                await other.send("after")
                assert await other.recv() == "after"
                assert state(other) is State.OPEN

        errors = [
            record
            for record in caplog.records
            if record.levelno >= logging.ERROR and record.name.startswith("anyws")
        ]
        assert len(errors) == 1
        (record,) = errors
        assert record.name == "anyws.server"
        assert record.levelno == logging.ERROR
        assert record.exc_info is not None
        assert isinstance(record.exc_info[1], RuntimeError)
        assert "Traceback" in caplog.text
        assert "RuntimeError: handler failure for the test" in caplog.text

    async def test_handler_ending_on_closed_connection_is_not_an_error(
        self, caplog: pytest.LogCaptureFixture
    ) -> None:
        caplog.set_level(logging.DEBUG, logger="anyws")
        async with served(echo) as server:
            async with connect(server) as ws:
                await ws.send("x")
                assert await ws.recv() == "x"
        assert not [r for r in caplog.records if r.levelno >= logging.WARNING]


class TestLogging:
    async def test_open_and_close_logged_at_debug(
        self, caplog: pytest.LogCaptureFixture, capsys: pytest.CaptureFixture[str]
    ) -> None:
        caplog.set_level(logging.DEBUG, logger="anyws")
        async with served(echo) as server:
            async with connect(server) as ws:
                await ws.send("hello")
                assert await ws.recv() == "hello"
        for side in ("anyws.client", "anyws.server"):
            messages = {
                record.getMessage().split(":")[0]
                for record in caplog.records
                if record.name == side and record.levelno == logging.DEBUG
            }
            assert "connection open" in messages, side
            assert "connection closed" in messages, side
        assert capsys.readouterr() == ("", "")


# --------------------------------------------------------------------------
# Cancelling send()
# --------------------------------------------------------------------------

# Far more than the kernel buffers hold: the send buffer grows to net.ipv4.tcp_wmem
# (4 MiB by default), the receive buffer is SMALL_RECEIVE_BUFFER.
BIG = 16 * 2**20


class TestCancelledSend:
    async def test_whole_frame_buffered_keeps_the_connection(
        self, anyio_backend_name: str
    ) -> None:
        # On asyncio the stream takes a whole frame into its buffer before it waits
        # for the peer to read: cancelling the wait cuts nothing short, so the
        # connection stays usable and the frame goes out whole.
        if anyio_backend_name != "asyncio":
            pytest.skip("trio streams may send part of a frame before a cancel")
        async with raw_server(small_receive_buffer=True) as (ws, peer):
            async with anyio.create_task_group() as task_group:
                task_group.start_soon(ws.send, b"\x00" * BIG)
                await settle()  # the raw server reads nothing: send() is stuck
                task_group.cancel_scope.cancel()
            assert state(ws) is State.OPEN
            async with anyio.create_task_group() as task_group:
                task_group.start_soon(ws.send, "after")
                first = await peer.read_frame()
                second = await peer.read_frame()
            assert (first.opcode, len(first.payload)) == (OP_BINARY, BIG)
            assert first.payload == b"\x00" * BIG
            assert (second.opcode, second.payload) == (OP_TEXT, b"after")

    async def test_peer_sees_no_more_than_the_frame_then_eof(
        self, anyio_backend_name: str
    ) -> None:
        if anyio_backend_name == "asyncio":
            pytest.skip("asyncio buffers the whole frame: see the test above")
        async with raw_server(small_receive_buffer=True) as (ws, peer):
            async with anyio.create_task_group() as task_group:
                task_group.start_soon(ws.send, b"\x00" * BIG)
                await settle()  # the raw server reads nothing: send() is stuck
                task_group.cancel_scope.cancel()
            with pytest.raises(anyws.ConnectionClosed):
                await ws.send("after")
            await ws.wait_closed()
            assert state(ws) is State.CLOSED

            received = bytearray(peer.buffer)
            peer.buffer = b""
            with pytest.raises((anyio.EndOfStream, anyio.BrokenResourceError)):
                while True:
                    received += await peer.stream.receive()
            # One masked binary frame of BIG bytes, whole or cut short, then the end
            # of the stream: no Close frame or other data the peer would read as
            # part of the payload.
            assert received[:2] == bytes([0x80 | OP_BINARY, 0x80 | 127])
            assert struct.unpack("!Q", received[2:10]) == (BIG,)
            key = bytes(received[10:14])
            payload = bytes(received[14:])
            assert len(payload) <= BIG
            assert payload == (key * (len(payload) // 4 + 1))[: len(payload)]

    async def test_anyws_peer_never_gets_partial_message(
        self, anyio_backend_name: str
    ) -> None:
        if anyio_backend_name == "asyncio":
            pytest.skip("asyncio buffers the whole frame: the connection stays open")
        go = anyio.Event()

        async def body(ws: anyws.ServerConnection) -> list[Any]:
            await go.wait()
            received: list[Any] = []
            try:
                while True:
                    received.append(await ws.recv())
            except anyws.ConnectionClosed as exc:
                received.append(exc)
            return received

        run = HandlerRun(body)
        async with served(run, max_queue=1, max_size=None) as server:
            for sock in server.sockets:
                limit_receive_buffer(sock)
            async with connect(server, compression=None) as ws:
                await ws.send("first")  # fills the server's queue: it stops reading
                async with anyio.create_task_group() as task_group:
                    task_group.start_soon(ws.send, b"\x00" * BIG)
                    await settle()
                    task_group.cancel_scope.cancel()
                with pytest.raises(anyws.ConnectionClosed):
                    await ws.send("after")
                go.set()
                await run.done.wait()
                assert run.error is None
                *messages, exc = run.result
                assert messages[0] == "first"
                # The cancelled message arrives whole or not at all.
                assert messages[1:] in ([], [b"\x00" * BIG])
                assert isinstance(exc, anyws.ConnectionClosedError)
                assert exc.rcvd is None
                assert run.ws.close_code == 1006

    @pytest.mark.skipif(
        not os.path.isdir("/proc/self/fd"), reason="lists sockets through /proc"
    )
    async def test_failed_connection_releases_its_socket(self) -> None:
        async with raw_server(small_receive_buffer=True, close_timeout=0.2) as (
            ws,
            peer,
        ):
            local = ws.local_address
            assert local in local_tcp_addresses()
            async with anyio.create_task_group() as task_group:
                task_group.start_soon(ws.send, b"\x00" * BIG)
                await settle()
                task_group.cancel_scope.cancel()
            # Failed already, or its Close frame stuck behind unread data: either
            # way the connection ends within close_timeout.
            await ws.close()
            await ws.wait_closed()
            await settle()
            # The raw server still reads nothing: the socket goes all the same.
            assert local not in local_tcp_addresses()

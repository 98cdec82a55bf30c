"""Behaviour of anyws.compat.trio_websocket, the trio-websocket drop-in, on every loop.

Discipline: every test runs under asyncio, asyncio+uvloop and trio. Servers are the
shim's own ``serve_websocket`` on 127.0.0.1 port 0, or a hand-written peer
(``RawPeer``) where a test needs a server that misbehaves on purpose. The side that
closes first is chosen by each test. Ordering uses ``anyio.Event`` and
``wait_all_tasks_blocked()``; timeouts are safety nets, except in the tests whose
subject is a timeout, where the peer never answers so nothing depends on timing.
Everything opened is closed; the conftest checks for leaked tasks and sockets.
"""

from __future__ import annotations

import contextlib
import functools
import ssl
from collections.abc import AsyncIterator, Awaitable, Callable
from typing import Any, cast

import anyio
import pytest
from anyio import wait_all_tasks_blocked
from anyio.abc import SocketAttribute, SocketListener

import anyws.compat.trio_websocket as tw
from tests.helpers import OP_PING, OP_PONG, RawPeer, memory_stream_pair

Handler = Callable[[tw.WebSocketRequest], Awaitable[None]]

# A safety net for waits that should end at once.
SAFETY = 10


@contextlib.asynccontextmanager
async def serving(
    handler: Handler, ssl_context: ssl.SSLContext | None = None, **options: Any
) -> AsyncIterator[tw.WebSocketServer]:
    """Run ``serve_websocket`` on 127.0.0.1 port 0 for the duration of the block."""
    async with anyio.create_task_group() as task_group:
        serve = functools.partial(
            tw.serve_websocket, handler, "127.0.0.1", 0, ssl_context, **options
        )
        server: tw.WebSocketServer = await task_group.start(serve)
        yield server
        task_group.cancel_scope.cancel()


@contextlib.asynccontextmanager
async def raw_server(
    script: Callable[[RawPeer], Awaitable[None]],
) -> AsyncIterator[int]:
    """Serve one connection with a hand-written peer; yield the port."""
    multi = await anyio.create_tcp_listener(local_host="127.0.0.1")
    listener = cast("SocketListener", multi.listeners[0])

    async def serve_one() -> None:
        stream = await listener.accept()
        async with stream:
            await script(RawPeer(stream, is_client=False))

    async with listener, anyio.create_task_group() as task_group:
        task_group.start_soon(serve_one)
        yield listener.extra(SocketAttribute.local_port)
        task_group.cancel_scope.cancel()


@pytest.fixture(params=["task group", "trio nursery"])
def nursery_kind(request: pytest.FixtureRequest, anyio_backend_name: str) -> str:
    """Which kind of nursery a test passes to the shim."""
    kind: str = request.param
    if kind == "trio nursery" and anyio_backend_name != "trio":
        pytest.skip("a trio nursery needs the trio backend")
    return kind


@contextlib.asynccontextmanager
async def open_nursery(kind: str) -> AsyncIterator[Any]:
    """An anyio task group, or a trio nursery."""
    if kind == "trio nursery":
        import trio

        async with trio.open_nursery() as nursery:
            yield nursery
    else:
        async with anyio.create_task_group() as task_group:
            yield task_group


async def echo(request: tw.WebSocketRequest) -> None:
    ws = await request.accept()
    with contextlib.suppress(tw.ConnectionClosed):
        while True:
            await ws.send_message(await ws.get_message())


def url(server: tw.WebSocketServer, path: str = "/", scheme: str = "ws") -> str:
    return f"{scheme}://127.0.0.1:{server.port}{path}"


class TestEcho:
    async def test_text_and_binary_round_trip(self) -> None:
        async with serving(echo) as server:
            async with tw.open_websocket_url(url(server)) as ws:
                await ws.send_message("héllo")
                assert await ws.get_message() == "héllo"
                await ws.send_message(b"\x00\xff")
                assert await ws.get_message() == b"\x00\xff"

    async def test_open_websocket_by_host_and_port(self) -> None:
        paths: list[str] = []

        async def handler(request: tw.WebSocketRequest) -> None:
            paths.append(request.path)
            await echo(request)

        async with serving(handler) as server:
            async with tw.open_websocket(
                "127.0.0.1", server.port, "/chat?room=1", use_ssl=False
            ) as ws:
                await ws.send_message("x")
                assert await ws.get_message() == "x"
                assert ws.path == "/chat?room=1"
        assert paths == ["/chat?room=1"]

    async def test_connect_websocket_in_a_nursery(self, nursery_kind: str) -> None:
        async with serving(echo) as server, open_nursery(nursery_kind) as n:
            ws = await tw.connect_websocket(
                n, "127.0.0.1", server.port, "/", use_ssl=False
            )
            await ws.send_message("in a nursery")
            assert await ws.get_message() == "in a nursery"
            await ws.aclose()
            assert ws.closed is not None
            assert ws.closed.name == "NORMAL_CLOSURE"

    async def test_connection_attributes(self) -> None:
        async with serving(echo) as server:
            async with tw.open_websocket_url(url(server, "/a?b=c")) as ws:
                assert ws.is_client and not ws.is_server
                assert ws.path == "/a?b=c"
                assert ws.subprotocol is None
                assert ws.closed is None
                assert str(ws).startswith("client-")
                assert isinstance(ws.remote, tw.Endpoint)
                assert isinstance(ws.local, tw.Endpoint)
                assert ws.remote.port == server.port
                assert ws.remote.url == f"ws://127.0.0.1:{server.port}"
                assert not ws.local.is_ssl

    async def test_aclose_as_async_context_manager(self) -> None:
        async with serving(echo) as server, anyio.create_task_group() as tg:
            async with await tw.connect_websocket_url(tg, url(server)) as ws:
                await ws.send_message("x")
                assert await ws.get_message() == "x"
            assert ws.closed is not None
            assert ws.closed.code == 1000

    async def test_errors_in_the_block_come_out_unwrapped(self) -> None:
        async with serving(echo) as server:
            with pytest.raises(KeyError):
                async with tw.open_websocket_url(url(server)):
                    raise KeyError("mine")

    async def test_cancelling_the_nursery_drops_the_connection(self) -> None:
        ended = anyio.Event()

        async def handler(request: tw.WebSocketRequest) -> None:
            ws = await request.accept()
            with contextlib.suppress(tw.ConnectionClosed):
                await ws.get_message()
            ended.set()

        async with serving(handler) as server:
            async with anyio.create_task_group() as tg:
                await tw.connect_websocket_url(tg, url(server))
                tg.cancel_scope.cancel()
            await ended.wait()


class TestServer:
    async def test_start_returns_the_server(self) -> None:
        async with serving(echo) as server:
            assert isinstance(server, tw.WebSocketServer)
            [listener] = server.listeners
            assert isinstance(listener, tw.Endpoint)
            assert str(listener.address) == "127.0.0.1"
            assert listener.port == server.port > 0
            assert not listener.is_ssl
            assert listener.url == f"ws://127.0.0.1:{server.port}"

    async def test_request_attributes(self) -> None:
        seen: list[tw.WebSocketRequest] = []

        async def handler(request: tw.WebSocketRequest) -> None:
            seen.append(request)
            await request.reject(400)

        async with serving(handler) as server:
            with pytest.raises(tw.ConnectionRejected):
                async with tw.open_websocket_url(
                    url(server, "/path?q=1"),
                    subprotocols=["one", "two"],
                    extra_headers=[(b"X-Test", b"value")],
                ):
                    pass
        [request] = seen
        assert request.path == "/path?q=1"
        assert request.proposed_subprotocols == ("one", "two")
        assert (b"x-test", b"value") in request.headers
        assert (b"upgrade", b"websocket") in request.headers
        names = {name for name, _ in request.headers}
        assert not names & {b"host", b"sec-websocket-protocol"}
        assert all(name == name.lower() for name in names)
        assert isinstance(request.local, tw.Endpoint)
        assert isinstance(request.remote, tw.Endpoint)
        assert request.local.port == server.port
        assert str(request.remote.address) == "127.0.0.1"

    async def test_accept_with_subprotocol_and_headers(self) -> None:
        server_side: list[tw.WebSocketConnection] = []

        async def handler(request: tw.WebSocketRequest) -> None:
            ws = await request.accept(
                subprotocol="two", extra_headers=[(b"X-Server", b"yes")]
            )
            server_side.append(ws)
            await echo_loop(ws)

        async with serving(handler) as server:
            async with tw.open_websocket_url(
                url(server, "/p"),
                subprotocols=["one", "two"],
                extra_headers=[(b"x-client", b"1")],
            ) as ws:
                assert ws.subprotocol == "two"
                assert (b"x-server", b"yes") in ws.handshake_headers
                await ws.send_message("ping")
                assert await ws.get_message() == "ping"
                [peer] = server_side
                assert peer.is_server and not peer.is_client
                assert peer.subprotocol == "two"
                assert peer.path == "/p"
                assert (b"x-client", b"1") in peer.handshake_headers
                assert str(peer).startswith("server-")

    async def test_accept_of_a_subprotocol_not_offered(self) -> None:
        errors: list[Exception] = []

        async def handler(request: tw.WebSocketRequest) -> None:
            try:
                await request.accept(subprotocol="other")
            except ValueError as exc:
                errors.append(exc)
                await request.reject(400)

        async with serving(handler) as server:
            with pytest.raises(tw.ConnectionRejected) as info:
                async with tw.open_websocket_url(url(server), subprotocols=["one"]):
                    pass
        assert info.value.status_code == 400
        assert len(errors) == 1

    async def test_reject_with_a_body(self) -> None:
        async def handler(request: tw.WebSocketRequest) -> None:
            await request.reject(
                403, extra_headers=[(b"X-Reason", b"nope")], body=b"forbidden"
            )

        async with serving(handler) as server:
            with pytest.raises(tw.ConnectionRejected) as info:
                async with tw.open_websocket_url(url(server)):
                    pass
        rejected = info.value
        assert isinstance(rejected, tw.HandshakeError)
        assert rejected.status_code == 403
        assert rejected.body == b"forbidden"
        assert (b"x-reason", b"nope") in rejected.headers
        assert (b"content-length", b"9") in rejected.headers
        assert repr(rejected) == "ConnectionRejected<status_code=403>"

    async def test_reject_without_a_body(self) -> None:
        async def handler(request: tw.WebSocketRequest) -> None:
            await request.reject(404)

        async with serving(handler) as server, anyio.create_task_group() as tg:
            with pytest.raises(tw.ConnectionRejected) as info:
                await tw.connect_websocket_url(tg, url(server))
        assert info.value.status_code == 404
        assert info.value.body == b""
        assert (b"content-length", b"0") in info.value.headers

    async def test_handler_that_neither_accepts_nor_rejects(self) -> None:
        async def handler(request: tw.WebSocketRequest) -> None:
            pass

        async with serving(handler) as server:
            with pytest.raises(tw.HandshakeError) as info:
                async with tw.open_websocket_url(url(server)):
                    pass
        assert not isinstance(info.value, tw.ConnectionRejected)

    async def test_invalid_request_never_reaches_the_handler(self) -> None:
        calls: list[str] = []

        async def handler(request: tw.WebSocketRequest) -> None:
            calls.append(request.path)
            await echo(request)

        async with serving(handler) as server:
            async with await anyio.connect_tcp("127.0.0.1", server.port) as stream:
                await stream.send(b"GET /plain HTTP/1.1\r\nHost: x\r\n\r\n")
                peer = RawPeer(stream)
                head = await peer.read_until(b"\r\n\r\n")
            assert head.startswith(b"HTTP/1.1 4")
            async with tw.open_websocket_url(url(server, "/ws")) as ws:
                await ws.send_message("still serving")
                assert await ws.get_message() == "still serving"
        assert calls == ["/ws"]

    async def test_silent_client_is_dropped_after_connect_timeout(self) -> None:
        calls: list[str] = []

        async def handler(request: tw.WebSocketRequest) -> None:
            calls.append(request.path)

        async with serving(handler, connect_timeout=0.05) as server:
            async with await anyio.connect_tcp("127.0.0.1", server.port) as stream:
                with anyio.fail_after(SAFETY):
                    assert await RawPeer(stream).read_eof()
        assert calls == []

    async def test_closed_connection_escaping_the_handler_spares_the_server(
        self,
    ) -> None:
        async def handler(request: tw.WebSocketRequest) -> None:
            ws = await request.accept()
            while True:  # raises ConnectionClosed when the client leaves
                await ws.send_message(await ws.get_message())

        async with serving(handler) as server:
            for text in ("first", "second"):
                async with tw.open_websocket_url(url(server)) as ws:
                    await ws.send_message(text)
                    assert await ws.get_message() == text

    async def test_handler_nursery_outlives_the_listener(self) -> None:
        async with anyio.create_task_group() as handlers:
            async with anyio.create_task_group() as tg:
                serve = functools.partial(
                    tw.serve_websocket,
                    echo,
                    "127.0.0.1",
                    0,
                    None,
                    handler_nursery=handlers,
                )
                server = await tg.start(serve)
                ws = await tw.connect_websocket_url(handlers, url(server))
                tg.cancel_scope.cancel()  # stop the server, not its handlers
            await ws.send_message("after the server stopped")
            assert await ws.get_message() == "after the server stopped"
            await ws.aclose()

    async def test_websocket_server_over_given_listeners(self) -> None:
        multi = await anyio.create_tcp_listener(local_host="127.0.0.1")
        listener = cast("SocketListener", multi.listeners[0])
        server = tw.WebSocketServer(echo, [multi])
        async with anyio.create_task_group() as tg:
            started = await tg.start(server.run)
            assert started is server
            assert server.port == listener.extra(SocketAttribute.local_port)
            async with tw.open_websocket_url(url(server)) as ws:
                await ws.send_message("given")
                assert await ws.get_message() == "given"
            tg.cancel_scope.cancel()
        with pytest.raises(anyio.ClosedResourceError):
            await listener.accept()  # run() closed it, as trio.serve_listeners does

    async def test_port_of_a_server_with_several_listeners(self) -> None:
        first = await anyio.create_tcp_listener(local_host="127.0.0.1")
        second = await anyio.create_tcp_listener(local_host="127.0.0.1")
        async with first, second:
            server = tw.WebSocketServer(echo, [first, second])
            assert len(server.listeners) == 2
            with pytest.raises(RuntimeError, match="more than 1 listener"):
                server.port  # noqa: B018

    def test_server_needs_a_listener(self) -> None:
        with pytest.raises(ValueError, match="at least one"):
            tw.WebSocketServer(echo, [])


async def echo_loop(ws: tw.WebSocketConnection) -> None:
    with contextlib.suppress(tw.ConnectionClosed):
        while True:
            await ws.send_message(await ws.get_message())


class TestStreams:
    async def test_wrap_client_and_server_streams(self) -> None:
        client_stream, server_stream = memory_stream_pair()
        async with anyio.create_task_group() as tg:

            async def serve() -> None:
                request = await tw.wrap_server_stream(tg, server_stream)
                assert request.path == "/mem"
                assert request.remote == repr(server_stream)
                ws = await request.accept(extra_headers=[(b"x-mem", b"1")])
                await echo_loop(ws)

            tg.start_soon(serve)
            ws = await tw.wrap_client_stream(tg, client_stream, "example.com", "/mem")
            assert (b"x-mem", b"1") in ws.handshake_headers
            assert ws.local == repr(client_stream)
            await ws.send_message("over memory")
            assert await ws.get_message() == "over memory"
            await ws.aclose()

    async def test_wrap_server_stream_with_a_bad_request(self) -> None:
        client_stream, server_stream = memory_stream_pair()
        async with anyio.create_task_group() as tg, client_stream:
            await client_stream.send(b"POST / HTTP/1.1\r\nHost: x\r\n\r\n")
            with pytest.raises(tw.HandshakeError):
                await tw.wrap_server_stream(tg, server_stream)

    async def test_wrap_client_stream_rejects_other_objects(self) -> None:
        async with anyio.create_task_group() as tg:
            with pytest.raises(TypeError):
                await tw.wrap_client_stream(tg, object(), "h", "/")


class TestMessages:
    async def test_send_message_refuses_other_types(self) -> None:
        async with serving(echo) as server:
            async with tw.open_websocket_url(url(server)) as ws:
                for bad in (bytearray(b"x"), 1, None):
                    with pytest.raises(ValueError, match="str or bytes"):
                        await ws.send_message(bad)  # type: ignore[arg-type]
                await ws.send_message("still open")
                assert await ws.get_message() == "still open"

    async def test_queued_messages_come_before_the_remote_close(self) -> None:
        async def handler(request: tw.WebSocketRequest) -> None:
            ws = await request.accept()
            for text in ("one", "two", "three"):
                await ws.send_message(text)
            await ws.aclose(4000, "bye")

        async with serving(handler) as server:
            async with tw.open_websocket_url(url(server)) as ws:
                received = [await ws.get_message() for _ in range(3)]
                with pytest.raises(tw.ConnectionClosed) as info:
                    await ws.get_message()
        assert received == ["one", "two", "three"]
        reason = info.value.reason
        assert reason is not None
        assert (reason.code, reason.name, reason.reason) == (
            4000,
            "PRIVATE_RESERVED",
            "bye",
        )
        assert ws.closed is not None and ws.closed.code == 4000

    async def test_local_close_discards_queued_messages(self) -> None:
        sent = anyio.Event()

        async def handler(request: tw.WebSocketRequest) -> None:
            ws = await request.accept()
            await ws.send_message("queued 1")
            await ws.send_message("queued 2")
            sent.set()
            await echo_loop(ws)

        async with serving(handler) as server:
            async with tw.open_websocket_url(url(server), message_queue_size=10) as ws:
                await sent.wait()
                await ws.ping()  # its Pong arrives after both messages
                await ws.aclose()
                with pytest.raises(tw.ConnectionClosed) as info:
                    await ws.get_message()
        assert info.value.reason is not None
        assert info.value.reason.name == "NORMAL_CLOSURE"

    async def test_local_close_wakes_a_waiting_receiver(self) -> None:
        async with serving(echo) as server, anyio.create_task_group() as tg:
            ws = await tw.connect_websocket_url(tg, url(server))
            errors: list[tw.ConnectionClosed] = []

            async def receive() -> None:
                try:
                    await ws.get_message()
                except tw.ConnectionClosed as exc:
                    errors.append(exc)

            tg.start_soon(receive)
            await wait_all_tasks_blocked()
            await ws.aclose()
            await wait_all_tasks_blocked()
            assert len(errors) == 1

    async def test_concurrent_receivers_get_one_message_each(self) -> None:
        async with serving(echo) as server, anyio.create_task_group() as tg:
            ws = await tw.connect_websocket_url(tg, url(server))
            got: list[str | bytes] = []

            async def receive() -> None:
                got.append(await ws.get_message())

            async with anyio.create_task_group() as receivers:
                receivers.start_soon(receive)
                receivers.start_soon(receive)
                await wait_all_tasks_blocked()
                await ws.send_message("a")
                await ws.send_message("b")
            assert sorted(got) == ["a", "b"]
            await ws.aclose()

    async def test_cancelled_get_message_leaves_the_connection_usable(self) -> None:
        async with serving(echo) as server:
            async with tw.open_websocket_url(url(server)) as ws:
                with anyio.CancelScope() as scope:
                    scope.cancel()
                    await ws.get_message()
                await ws.send_message("kept")
                assert await ws.get_message() == "kept"

    async def test_message_queue_applies_backpressure(self) -> None:
        count, size = 64, 2**19  # 32 MiB: more than loopback's socket buffers
        progress = [0]

        async def handler(request: tw.WebSocketRequest) -> None:
            ws = await request.accept()
            with contextlib.suppress(tw.ConnectionClosed):
                for index in range(count):
                    await ws.send_message(bytes([index]) * size)
                    progress[0] += 1
                await ws.get_message()

        async with serving(handler) as server:
            async with tw.open_websocket_url(url(server), message_queue_size=1) as ws:
                for _ in range(3):
                    await wait_all_tasks_blocked()
                assert progress[0] < count  # the server waits for us to read
                for index in range(count):
                    assert await ws.get_message() == bytes([index]) * size
                assert progress[0] == count

    async def test_send_after_close(self) -> None:
        async with serving(echo) as server:
            async with tw.open_websocket_url(url(server)) as ws:
                await ws.aclose()
                with pytest.raises(tw.ConnectionClosed):
                    await ws.send_message("late")
                with pytest.raises(tw.ConnectionClosed):
                    await ws.ping()
                with pytest.raises(tw.ConnectionClosed):
                    await ws.pong()


class TestMessageSize:
    async def test_server_limit_closes_with_1009(self) -> None:
        errors: list[tw.ConnectionClosed] = []

        async def handler(request: tw.WebSocketRequest) -> None:
            ws = await request.accept()
            try:
                await ws.get_message()
            except tw.ConnectionClosed as exc:
                errors.append(exc)

        async with serving(handler, max_message_size=100) as server:
            async with tw.open_websocket_url(url(server)) as ws:
                await ws.send_message(b"x" * 101)
                with pytest.raises(tw.ConnectionClosed) as info:
                    await ws.get_message()
        assert info.value.reason is not None
        assert info.value.reason.code == 1009
        [error] = errors
        assert error.reason is not None
        assert (error.reason.code, error.reason.name) == (1009, "MESSAGE_TOO_BIG")

    async def test_client_limit_closes_with_1009(self) -> None:
        async def handler(request: tw.WebSocketRequest) -> None:
            ws = await request.accept()
            await ws.send_message(b"x" * 101)
            await echo_loop(ws)

        async with serving(handler) as server:
            async with tw.open_websocket_url(url(server), max_message_size=100) as ws:
                with pytest.raises(tw.ConnectionClosed) as info:
                    await ws.get_message()
        assert info.value.reason is not None
        assert info.value.reason.name == "MESSAGE_TOO_BIG"
        assert ws.closed is info.value.reason

    async def test_messages_within_the_limit_pass(self) -> None:
        async with serving(echo, max_message_size=100) as server:
            async with tw.open_websocket_url(url(server), max_message_size=100) as ws:
                await ws.send_message(b"x" * 100)
                assert await ws.get_message() == b"x" * 100


class TestClosing:
    @pytest.mark.parametrize(
        ("code", "name"),
        [
            (1000, "NORMAL_CLOSURE"),
            (1001, "GOING_AWAY"),
            (1008, "POLICY_VIOLATION"),
            (1011, "INTERNAL_ERROR"),
            (3000, "IANA_RESERVED"),
            (4999, "PRIVATE_RESERVED"),
        ],
    )
    async def test_close_reason_names(self, code: int, name: str) -> None:
        async def handler(request: tw.WebSocketRequest) -> None:
            ws = await request.accept()
            await ws.aclose(code, "why")

        async with serving(handler) as server:
            async with tw.open_websocket_url(url(server)) as ws:
                with pytest.raises(tw.ConnectionClosed) as info:
                    await ws.get_message()
        reason = info.value.reason
        assert reason is not None
        assert (reason.code, reason.name, reason.reason) == (code, name, "why")

    async def test_aclose_sends_code_and_reason(self) -> None:
        errors: list[tw.ConnectionClosed] = []

        async def handler(request: tw.WebSocketRequest) -> None:
            ws = await request.accept()
            try:
                await ws.get_message()
            except tw.ConnectionClosed as exc:
                errors.append(exc)

        async with serving(handler) as server:
            async with tw.open_websocket_url(url(server)) as ws:
                await ws.aclose(4001, "done")
                assert ws.closed is not None
                assert ws.closed.code == 4001  # the server's answer
                await ws.aclose()  # idempotent
                assert ws.closed.code == 4001
        [error] = errors
        assert error.reason is not None
        assert (error.reason.code, error.reason.reason) == (4001, "done")

    async def test_aclose_like_wsproto_for_local_codes_and_long_reasons(
        self,
    ) -> None:
        errors: list[tw.ConnectionClosed] = []

        async def handler(request: tw.WebSocketRequest) -> None:
            ws = await request.accept()
            try:
                await ws.get_message()
            except tw.ConnectionClosed as exc:
                errors.append(exc)

        async with serving(handler) as server:
            async with tw.open_websocket_url(url(server)) as ws:
                await ws.aclose(1006, "é" * 100)
        [error] = errors
        assert error.reason is not None
        assert error.reason.code == 1000
        assert error.reason.reason == "é" * 61  # 122 bytes: no half character

    async def test_aclose_with_an_invalid_code(self) -> None:
        async with serving(echo) as server:
            async with tw.open_websocket_url(url(server)) as ws:
                with pytest.raises(ValueError):
                    await ws.aclose(999)
                assert ws.closed is None
                await ws.send_message("still open")
                assert await ws.get_message() == "still open"

    async def test_dropped_connection_is_an_abnormal_closure(self) -> None:
        async def script(peer: RawPeer) -> None:
            await peer.server_handshake()
            await peer.aclose()

        async with raw_server(script) as port:
            async with tw.open_websocket_url(f"ws://127.0.0.1:{port}/") as ws:
                with pytest.raises(tw.ConnectionClosed) as info:
                    await ws.get_message()
        reason = info.value.reason
        assert reason is not None
        assert (reason.code, reason.name, reason.reason) == (
            1006,
            "ABNORMAL_CLOSURE",
            None,
        )


class TestPing:
    async def test_ping_waits_for_its_pong(self) -> None:
        async with serving(echo) as server:
            async with tw.open_websocket_url(url(server)) as ws:
                await ws.ping()
                await ws.ping(b"payload")

    async def test_pong_wakes_earlier_pings_and_duplicates_are_refused(self) -> None:
        async def script(peer: RawPeer) -> None:
            await peer.server_handshake()
            first = await peer.read_frame()
            second = await peer.read_frame()
            assert (first.opcode, first.payload) == (OP_PING, b"first")
            assert (second.opcode, second.payload) == (OP_PING, b"second")
            await peer.send_frame(OP_PONG, b"second")  # answers both
            await peer.read_frame()  # the client's Close
            await peer.aclose()

        async with raw_server(script) as port:
            async with tw.open_websocket_url(f"ws://127.0.0.1:{port}/") as ws:
                async with anyio.create_task_group() as tg:
                    tg.start_soon(ws.ping, b"first")
                    await wait_all_tasks_blocked()
                    with pytest.raises(ValueError, match="already in flight"):
                        await ws.ping(b"first")
                    with anyio.fail_after(SAFETY):
                        await ws.ping(b"second")
                await ws.aclose()

    async def test_unsolicited_pong(self) -> None:
        received: list[bytes] = []

        async def script(peer: RawPeer) -> None:
            await peer.server_handshake()
            for _ in range(2):
                frame = await peer.read_frame()
                assert frame.opcode == OP_PONG
                received.append(frame.payload)
            await peer.aclose()

        async with raw_server(script) as port:
            async with tw.open_websocket_url(f"ws://127.0.0.1:{port}/") as ws:
                await ws.pong(b"heartbeat")
                await ws.pong()
                with pytest.raises(tw.ConnectionClosed):
                    await ws.get_message()
        assert received == [b"heartbeat", b""]

    async def test_pending_ping_raises_when_the_connection_closes(self) -> None:
        async def script(peer: RawPeer) -> None:
            await peer.server_handshake()
            await peer.read_frame()  # the Ping, never answered
            await peer.aclose()

        async with raw_server(script) as port:
            async with tw.open_websocket_url(f"ws://127.0.0.1:{port}/") as ws:
                with pytest.raises(tw.ConnectionClosed):
                    await ws.ping()


class TestTimeouts:
    async def test_connect_timeout(self) -> None:
        async def script(peer: RawPeer) -> None:
            await peer.read_eof()  # never answers the handshake

        async with raw_server(script) as port:
            with pytest.raises(tw.ConnectionTimeout) as info:
                async with tw.open_websocket_url(
                    f"ws://127.0.0.1:{port}/", connect_timeout=0.05
                ):
                    pass
        assert isinstance(info.value, tw.HandshakeError)

    async def test_disconnect_timeout(self) -> None:
        async def script(peer: RawPeer) -> None:
            await peer.server_handshake()
            await peer.read_eof()  # never answers the Close

        async with raw_server(script) as port:
            with pytest.raises(tw.DisconnectionTimeout):
                async with tw.open_websocket_url(
                    f"ws://127.0.0.1:{port}/", disconnect_timeout=0.05
                ) as ws:
                    await ws.send_message("bye")

    async def test_refused_connection(self) -> None:
        listener = await anyio.create_tcp_listener(local_host="127.0.0.1")
        port = listener.extra(SocketAttribute.local_port)
        await listener.aclose()
        with pytest.raises(tw.HandshakeError) as info:
            async with tw.open_websocket_url(f"ws://127.0.0.1:{port}/"):
                pass
        assert isinstance(info.value.__cause__, OSError)
        async with anyio.create_task_group() as tg:
            with pytest.raises(OSError):
                await tw.connect_websocket_url(tg, f"ws://127.0.0.1:{port}/")


class TestTLS:
    async def test_echo_over_tls(
        self, server_ssl_context: ssl.SSLContext, client_ssl_context: ssl.SSLContext
    ) -> None:
        requests: list[tw.WebSocketRequest] = []

        async def handler(request: tw.WebSocketRequest) -> None:
            requests.append(request)
            await echo(request)

        async with serving(handler, server_ssl_context) as server:
            [listener] = server.listeners
            assert isinstance(listener, tw.Endpoint)
            assert listener.is_ssl
            assert listener.url == f"wss://127.0.0.1:{server.port}"
            async with tw.open_websocket_url(
                url(server, scheme="wss"), client_ssl_context
            ) as ws:
                await ws.send_message("secret")
                assert await ws.get_message() == "secret"
                assert isinstance(ws.remote, tw.Endpoint) and ws.remote.is_ssl
            async with tw.open_websocket(
                "localhost", server.port, "/", use_ssl=client_ssl_context
            ) as ws:
                await ws.send_message(b"again")
                assert await ws.get_message() == b"again"
        assert isinstance(requests[0].local, tw.Endpoint)
        assert requests[0].local.is_ssl

    async def test_untrusted_certificate(
        self, server_ssl_context: ssl.SSLContext
    ) -> None:
        async with serving(echo, server_ssl_context) as server:
            with pytest.raises(tw.HandshakeError) as info:
                async with tw.open_websocket_url(url(server, scheme="wss")):
                    pass
        assert isinstance(info.value.__cause__, ssl.SSLError)

    async def test_ssl_arguments_are_checked(self) -> None:
        with pytest.raises(TypeError, match="use_ssl"):
            async with tw.open_websocket("127.0.0.1", 1, "/", use_ssl="yes"):  # type: ignore[arg-type]
                pass
        with pytest.raises(ValueError, match="must be None for ws"):
            tw.open_websocket_url("ws://127.0.0.1/", ssl.create_default_context())
        with pytest.raises(ValueError, match="scheme"):
            tw.open_websocket_url("http://127.0.0.1/")


class TestTrioObjects:
    """On trio, trio's own streams and listeners are accepted too."""

    @pytest.fixture(autouse=True)
    def _trio_only(self, anyio_backend_name: str) -> None:
        if anyio_backend_name != "trio":
            pytest.skip("trio streams and listeners need the trio backend")

    async def test_wrap_client_stream_over_a_trio_stream(self) -> None:
        import trio

        async with serving(echo) as server, trio.open_nursery() as nursery:
            stream = await trio.open_tcp_stream("127.0.0.1", server.port)
            ws = await tw.wrap_client_stream(
                nursery, stream, f"127.0.0.1:{server.port}", "/trio"
            )
            assert isinstance(ws.remote, tw.Endpoint)
            assert ws.remote.port == server.port
            await ws.send_message("over trio")
            assert await ws.get_message() == "over trio"
            await ws.aclose()

    async def test_websocket_server_over_trio_listeners(
        self, server_ssl_context: ssl.SSLContext, client_ssl_context: ssl.SSLContext
    ) -> None:
        import trio

        plain = await trio.open_tcp_listeners(0, host="127.0.0.1")
        secure = await trio.open_ssl_over_tcp_listeners(
            0, server_ssl_context, host="127.0.0.1", https_compatible=True
        )
        async with trio.open_nursery() as nursery:
            for listeners, scheme, context in (
                (plain, "ws", None),
                (secure, "wss", client_ssl_context),
            ):
                server = await nursery.start(tw.WebSocketServer(echo, listeners).run)
                [listener] = server.listeners
                assert isinstance(listener, tw.Endpoint)
                assert listener.is_ssl == (scheme == "wss")
                async with tw.open_websocket_url(
                    url(server, scheme=scheme), context
                ) as ws:
                    await ws.send_message(scheme)
                    assert await ws.get_message() == scheme
            nursery.cancel_scope.cancel()

"""``anyws.compat.websockets``: the server, its hooks, its closing, and broadcast().

Discipline: a shim server on 127.0.0.1 and a free port, and shim clients (plain HTTP
where a test looks at a refused handshake). Handlers signal what they saw through
``anyio.Event`` and lists; the test waits on those, with ``fail_after`` as a safety
net only. The asyncio-only forms run on asyncio and check the error trio gets.
"""

from __future__ import annotations

import base64
import logging
import re
import socket
import sys
from typing import TYPE_CHECKING, Any

import anyio
import pytest

from anyws.compat.websockets import (
    ConnectionClosedError,
    ConnectionClosedOK,
    InvalidStatus,
    Server,
    ServerConnection,
    State,
    basic_auth,
    broadcast,
    connect,
    serve,
)

from .websockets_helpers import http_get

if sys.version_info < (3, 11):  # pragma: no cover
    from exceptiongroup import ExceptionGroup

if TYPE_CHECKING:
    from anyws.compat.websockets import Request, Response


async def echo(websocket: ServerConnection) -> None:
    async for message in websocket:
        await websocket.send(message)


def port_of(server: Server) -> int:
    port: int = server.sockets[0].getsockname()[1]
    return port


class TestServe:
    async def test_serve_forever_until_closed_by_another_task(self) -> None:
        async with serve(echo, "127.0.0.1", 0) as server:
            assert server.is_serving()
            async with anyio.create_task_group() as task_group:
                task_group.start_soon(server.serve_forever)
                async with connect(f"ws://127.0.0.1:{port_of(server)}") as websocket:
                    await websocket.send("hi")
                    assert await websocket.recv() == "hi"
                    server.close()
                    with pytest.raises(ConnectionClosedOK):
                        await websocket.recv()
                assert websocket.close_code == 1001
        assert not server.is_serving()

    async def test_run_forever_with_asyncio_future_then_cancel(
        self, anyio_backend_name: str
    ) -> None:
        if anyio_backend_name != "asyncio":
            pytest.skip("awaits an asyncio.Future")
        import asyncio

        listening = anyio.Event()
        ports: list[int] = []

        async def main() -> None:
            async with serve(echo, "127.0.0.1", 0) as server:
                ports.append(port_of(server))
                listening.set()
                await asyncio.get_running_loop().create_future()  # run forever

        scope = anyio.CancelScope()

        async def run() -> None:
            with scope:
                await main()

        async with anyio.create_task_group() as task_group:
            task_group.start_soon(run)
            await listening.wait()
            async with connect(f"ws://127.0.0.1:{ports[0]}") as websocket:
                scope.cancel()  # like Ctrl-C on asyncio.run(main())
                with pytest.raises(ConnectionClosedOK):
                    await websocket.recv()
        assert websocket.close_code == 1001

    async def test_await_serve(self, anyio_backend_name: str) -> None:
        if anyio_backend_name != "asyncio":
            with pytest.raises(RuntimeError, match="async with serve"):
                await serve(echo, "127.0.0.1", 0)
            return
        server = await serve(echo, "127.0.0.1", 0)
        try:
            with pytest.raises(RuntimeError, match="started already"):
                await server
            async with connect(f"ws://127.0.0.1:{port_of(server)}") as websocket:
                await websocket.send("hi")
                assert await websocket.recv() == "hi"
        finally:
            server.close()
            await server.wait_closed()
        assert websocket.close_code == 1000

    async def test_connections_and_sockets(self) -> None:
        connected = anyio.Event()

        async def wait(websocket: ServerConnection) -> None:
            connected.set()
            await websocket.wait_closed()

        async with serve(wait, "127.0.0.1", 0) as server:
            (sock,) = server.sockets
            assert isinstance(sock, socket.socket)
            assert server.connections == set()
            async with connect(f"ws://127.0.0.1:{port_of(server)}"):
                await connected.wait()
                (connection,) = server.connections
                assert isinstance(connection, ServerConnection)
                assert connection.server is server
                assert connection.state is State.OPEN

    async def test_close_with_a_code(self) -> None:
        async with serve(echo, "127.0.0.1", 0) as server:
            async with connect(f"ws://127.0.0.1:{port_of(server)}") as websocket:
                await websocket.send("hi")
                assert await websocket.recv() == "hi"
                server.close(code=1012, reason="restarting")
                await server.wait_closed()
                with pytest.raises(ConnectionClosedError) as closed:
                    await websocket.recv()
        assert closed.value.rcvd is not None
        assert (closed.value.rcvd.code, closed.value.rcvd.reason) == (
            1012,
            "restarting",
        )

    async def test_close_without_closing_connections(self) -> None:
        async with serve(echo, "127.0.0.1", 0) as server:
            uri = f"ws://127.0.0.1:{port_of(server)}"
            async with connect(uri) as websocket:
                server.close(close_connections=False)
                with pytest.raises(InvalidStatus) as refused:
                    async with connect(uri):
                        pass  # pragma: no cover
                assert refused.value.response.status_code == 503
                await websocket.send("still here")
                assert await websocket.recv() == "still here"
            await server.wait_closed()
        assert websocket.close_code == 1000

    async def test_cancelled_while_waiting_for_clients_closes_them(self) -> None:
        listening, waiting = anyio.Event(), anyio.Event()
        ports: list[int] = []
        scope = anyio.CancelScope()

        async def run() -> None:
            with scope:
                async with serve(echo, "127.0.0.1", 0) as server:
                    ports.append(port_of(server))
                    listening.set()
                    await waiting.wait()
                    server.close(close_connections=False)
                    await server.wait_closed()  # would wait for the client

        async with anyio.create_task_group() as task_group:
            task_group.start_soon(run)
            await listening.wait()
            async with connect(f"ws://127.0.0.1:{ports[0]}") as websocket:
                await websocket.send("hi")
                assert await websocket.recv() == "hi"
                waiting.set()
                await anyio.wait_all_tasks_blocked()
                scope.cancel()
                with pytest.raises(ConnectionClosedOK):
                    await websocket.recv()
        assert websocket.close_code == 1001

    async def test_address_in_use(self) -> None:
        async with serve(echo, "127.0.0.1", 0) as server:
            with pytest.raises(OSError):
                async with serve(echo, "127.0.0.1", port_of(server)):
                    pass  # pragma: no cover

    async def test_serve_on_a_given_socket(self) -> None:
        sock = socket.create_server(("127.0.0.1", 0))
        port = sock.getsockname()[1]
        async with serve(echo, sock=sock) as server:
            assert server.sockets[0].getsockname()[1] == port
            async with connect(f"ws://127.0.0.1:{port}") as websocket:
                await websocket.send("on my socket")
                assert await websocket.recv() == "on my socket"

    @pytest.mark.parametrize(
        ("options", "error", "match"),
        [
            ({"reuse_port": True}, TypeError, "reuse_port"),
            ({"extensions": []}, NotImplementedError, "compression"),
            ({"compression": "zstd"}, ValueError, "zstd"),
            ({"start_serving": False}, NotImplementedError, "start_serving"),
            ({"max_size": (2**20, 1)}, NotImplementedError, "fragment"),
        ],
        ids=["reuse_port", "extensions", "compression", "start_serving", "max_size"],
    )
    def test_options_that_cannot_be_honoured(
        self, options: dict[str, Any], error: type[Exception], match: str
    ) -> None:
        with pytest.raises(error, match=match):
            serve(echo, "127.0.0.1", 0, **options)

    async def test_legacy_handler_with_path_in_async_with(self) -> None:
        async def handler(websocket: ServerConnection, path: str) -> None:
            await websocket.send(path)

        async with serve(handler, "127.0.0.1", 0) as server:
            async with connect(f"ws://127.0.0.1:{port_of(server)}/a/b?c") as websocket:
                assert await websocket.recv() == "/a/b?c"

    async def test_handler_error_is_logged_and_closes_with_1011(
        self, caplog: pytest.LogCaptureFixture
    ) -> None:
        async def broken(websocket: ServerConnection) -> None:
            raise RuntimeError("boom")

        with caplog.at_level(logging.ERROR, logger="websockets.server"):
            async with serve(broken, "127.0.0.1", 0) as server:
                async with connect(f"ws://127.0.0.1:{port_of(server)}") as websocket:
                    with pytest.raises(ConnectionClosedError):
                        await websocket.recv()
        assert websocket.close_code == 1011
        assert any(
            record.name == "websockets.server"
            and record.message == "connection handler failed"
            for record in caplog.records
        )


class TestHooks:
    async def test_process_request_error_answers_500_and_keeps_serving(
        self, caplog: pytest.LogCaptureFixture
    ) -> None:
        calls: list[str] = []

        def flaky(connection: ServerConnection, request: Request) -> Response | None:
            calls.append(request.path)
            if request.path == "/broken":
                raise ValueError("bug in process_request")
            return None

        with caplog.at_level(logging.ERROR, logger="websockets.server"):
            async with serve(echo, "127.0.0.1", 0, process_request=flaky) as server:
                status, body = await http_get(port_of(server), "/broken")
                assert status == 500
                assert body.startswith(b"Failed to open a WebSocket connection.")
                async with connect(f"ws://127.0.0.1:{port_of(server)}/ok") as ws:
                    await ws.send("fine")
                    assert await ws.recv() == "fine"
        assert calls == ["/broken", "/ok"]
        assert "process_request failed" in caplog.messages

    async def test_async_process_request_and_process_response(self) -> None:
        async def process_request(
            connection: ServerConnection, request: Request
        ) -> Response | None:
            await anyio.lowlevel.checkpoint()
            assert connection.state is State.CONNECTING
            return None

        def process_response(
            connection: ServerConnection, request: Request, response: Response
        ) -> Response | None:
            response.headers["X-Request-Path"] = request.path
            return None

        async with serve(
            echo,
            "127.0.0.1",
            0,
            process_request=process_request,
            process_response=process_response,
        ) as server:
            async with connect(f"ws://127.0.0.1:{port_of(server)}/x") as websocket:
                assert websocket.response is not None
                assert websocket.response.headers["X-Request-Path"] == "/x"

    async def test_process_response_error_answers_500(self) -> None:
        def broken(connection: Any, request: Any, response: Any) -> Response | None:
            raise ValueError("bug in process_response")

        async with serve(echo, "127.0.0.1", 0, process_response=broken) as server:
            with pytest.raises(InvalidStatus) as refused:
                async with connect(f"ws://127.0.0.1:{port_of(server)}"):
                    pass  # pragma: no cover
        assert refused.value.response.status_code == 500

    async def test_respond_reason_phrase(self) -> None:
        def teapot(connection: ServerConnection, request: Request) -> Response:
            return connection.respond(418, "short and stout\n")

        async with serve(echo, "127.0.0.1", 0, process_request=teapot) as server:
            with pytest.raises(InvalidStatus) as refused:
                async with connect(f"ws://127.0.0.1:{port_of(server)}"):
                    pass  # pragma: no cover
        response = refused.value.response
        assert (response.status_code, response.reason_phrase) == (418, "I'm a Teapot")
        assert response.body == b"short and stout\n"

    async def test_select_subprotocol(self) -> None:
        seen: list[Any] = []

        def select(connection: ServerConnection, offered: Any) -> Any:
            seen.append((type(connection), list(offered)))
            return "v2" if "v2" in offered else None

        async with serve(echo, "127.0.0.1", 0, select_subprotocol=select) as server:
            uri = f"ws://127.0.0.1:{port_of(server)}"
            async with connect(uri, subprotocols=["v1", "v2"]) as websocket:  # type: ignore[list-item]
                assert websocket.subprotocol == "v2"
        assert seen == [(ServerConnection, ["v1", "v2"])]

    async def test_select_subprotocol_error_refuses(
        self, caplog: pytest.LogCaptureFixture
    ) -> None:
        def broken(connection: ServerConnection, offered: Any) -> Any:
            raise ValueError("bug in select_subprotocol")

        async with serve(echo, "127.0.0.1", 0, select_subprotocol=broken) as server:
            with pytest.raises(InvalidStatus) as refused:
                async with connect(f"ws://127.0.0.1:{port_of(server)}"):
                    pass  # pragma: no cover
        assert refused.value.response.status_code == 400
        assert "select_subprotocol failed" in caplog.messages

    @pytest.mark.parametrize(
        ("origin", "allowed"),
        [
            ("https://app.test", True),
            ("https://eu.app.test", True),
            (None, True),
            ("https://evil.test", False),
        ],
    )
    async def test_origins(self, origin: str | None, allowed: bool) -> None:
        origins: Any = [
            "https://app.test",
            re.compile(r"https://[a-z]+\.app\.test"),
            None,
        ]
        async with serve(echo, "127.0.0.1", 0, origins=origins) as server:
            uri = f"ws://127.0.0.1:{port_of(server)}"
            if allowed:
                async with connect(uri, origin=origin) as websocket:  # type: ignore[arg-type]
                    await websocket.send("same origin")
                    assert await websocket.recv() == "same origin"
            else:
                with pytest.raises(InvalidStatus) as refused:
                    async with connect(uri, origin=origin):  # type: ignore[arg-type]
                        pass  # pragma: no cover
                assert refused.value.response.status_code == 403
                assert b"invalid Origin header" in refused.value.response.body

    async def test_basic_auth(self) -> None:
        async def whoami(websocket: ServerConnection) -> None:
            await websocket.send(websocket.username)

        async def check(username: str, password: str) -> bool:
            return password == "opensesame"

        for auth in (
            basic_auth(realm="test", credentials=("alice", "opensesame")),
            basic_auth(realm="test", check_credentials=check),
        ):
            async with serve(whoami, "127.0.0.1", 0, process_request=auth) as server:
                port = port_of(server)
                async with connect(f"ws://alice:opensesame@127.0.0.1:{port}") as ws:
                    assert await ws.recv() == "alice"
                for uri in (
                    f"ws://127.0.0.1:{port}",
                    f"ws://alice:wrong@127.0.0.1:{port}",
                ):
                    with pytest.raises(InvalidStatus) as refused:
                        async with connect(uri):
                            pass  # pragma: no cover
                    response = refused.value.response
                    assert response.status_code == 401
                    assert response.headers["WWW-Authenticate"] == (
                        'Basic realm="test", charset="UTF-8"'
                    )
                token = base64.b64encode(b"no colon").decode()
                headers = {"Authorization": f"Basic {token}"}
                with pytest.raises(InvalidStatus) as refused:
                    async with connect(
                        f"ws://127.0.0.1:{port}", additional_headers=headers
                    ):
                        pass  # pragma: no cover
                assert refused.value.response.body == b"Unsupported credentials\n"

    def test_basic_auth_arguments(self) -> None:
        with pytest.raises(ValueError, match="either"):
            basic_auth()
        with pytest.raises(TypeError, match="credentials"):
            basic_auth(credentials=[("alice", 1)])  # type: ignore[list-item]


class TestBroadcast:
    async def test_broadcast_reaches_every_open_connection(self) -> None:
        ready = anyio.Event()
        server_connections: list[ServerConnection] = []

        async def collect(websocket: ServerConnection) -> None:
            server_connections.append(websocket)
            if len(server_connections) == 3:
                ready.set()
            await websocket.wait_closed()

        async with serve(collect, "127.0.0.1", 0) as server:
            uri = f"ws://127.0.0.1:{port_of(server)}"
            async with connect(uri) as a, connect(uri) as b, connect(uri) as c:
                await ready.wait()
                await c.close()
                broadcast(server_connections, "news")  # c is closed: skipped
                broadcast(server_connections, b"\x01\x02")
                broadcast(server_connections, b"as text", text=True)
                broadcast(server_connections, "as binary", text=False)
                for websocket in (a, b):
                    assert await websocket.recv() == "news"
                    assert await websocket.recv() == b"\x01\x02"
                    assert await websocket.recv() == "as text"
                    assert await websocket.recv() == b"as binary"
                # Clients can broadcast too.
                broadcast([a, b], "from clients")
                assert len(server_connections) == 3

    async def test_slow_connection_is_skipped(
        self, caplog: pytest.LogCaptureFixture
    ) -> None:
        connected = anyio.Event()
        connections: list[ServerConnection] = []

        async def hold(websocket: ServerConnection) -> None:
            connections.append(websocket)
            connected.set()
            await websocket.wait_closed()

        async with serve(hold, "127.0.0.1", 0, write_limit=1000) as server:
            async with connect(f"ws://127.0.0.1:{port_of(server)}") as websocket:
                await connected.wait()
                big = "x" * 2000
                broadcast(connections, big)  # queued: the connection may take it
                broadcast(connections, "dropped")  # 2000 bytes still queued: too slow
                with pytest.raises(ExceptionGroup) as skipped:
                    broadcast(connections, "dropped", raise_exceptions=True)
                assert await websocket.recv() == big
                broadcast(connections, "caught up")
                assert await websocket.recv() == "caught up"
        assert "too slow" in str(skipped.value.exceptions[0])
        assert any("skipped broadcast" in message for message in caplog.messages)

    async def test_one_broken_connection_does_not_stop_the_others(self) -> None:
        ready = anyio.Event()
        connections: list[ServerConnection] = []

        async def hold(websocket: ServerConnection) -> None:
            connections.append(websocket)
            if len(connections) == 2:
                ready.set()
            await websocket.wait_closed()

        async with serve(hold, "127.0.0.1", 0) as server:
            port = port_of(server)
            async with connect(f"ws://127.0.0.1:{port}") as good:
                raw = await anyio.connect_tcp("127.0.0.1", port)
                key = base64.b64encode(b"0123456789abcdef").decode()
                await raw.send(
                    (
                        "GET / HTTP/1.1\r\nHost: x\r\nUpgrade: websocket\r\n"
                        "Connection: Upgrade\r\nSec-WebSocket-Version: 13\r\n"
                        f"Sec-WebSocket-Key: {key}\r\n\r\n"
                    ).encode()
                )
                await ready.wait()
                await raw.aclose()  # vanishes without a closing handshake
                for _ in range(3):
                    broadcast(connections, "tick")
                for _ in range(3):
                    assert await good.recv() == "tick"

    def test_broadcast_type_error(self) -> None:
        with pytest.raises(TypeError):
            broadcast([], 42)  # type: ignore[arg-type]

    async def test_send_after_broadcast_keeps_the_order(self) -> None:
        async def announce(websocket: ServerConnection) -> None:
            broadcast([websocket], "first")
            await websocket.send("second")
            broadcast([websocket], "third")
            await websocket.close()

        async with serve(announce, "127.0.0.1", 0) as server:
            async with connect(f"ws://127.0.0.1:{port_of(server)}") as websocket:
                messages = [message async for message in websocket]
        assert messages == ["first", "second", "third"]

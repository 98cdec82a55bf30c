"""Programs written for ``websockets``, run through the shim, against itself and it.

Discipline: each test is a small program in the style of the ``websockets`` docs
(quick start, echo, counter with broadcast, TLS, ``process_request`` for health checks
and tokens, a reconnecting client, a legacy ``(websocket, path)`` handler). It runs
between two *sides*, "server-client": the shim against itself, the shim serving the
real ``websockets`` package, and ``websockets`` serving the shim (see
``websockets_helpers``). On trio the ``websockets`` side is websockets' trio API.
Servers listen on 127.0.0.1 and a free port; the client closes first unless the
program says otherwise; every wait is for something the peer does.
"""

from __future__ import annotations

import http
import json
import urllib.parse
from typing import TYPE_CHECKING, Any

import pytest

import anyws.compat.websockets as websockets

from .websockets_helpers import PAIRS, ShimSide, WebsocketsSide, http_get, make_side

if TYPE_CHECKING:
    from collections.abc import Generator

Sides = tuple[ShimSide | WebsocketsSide, ShimSide | WebsocketsSide]


@pytest.fixture(params=PAIRS)
def sides(request: pytest.FixtureRequest, anyio_backend_name: str) -> Sides:
    server_name, client_name = request.param
    return make_side(server_name, anyio_backend_name), make_side(
        client_name, anyio_backend_name
    )


class TestQuickStart:
    async def test_hello(self, sides: Sides) -> None:
        server, client = sides

        async def hello(websocket: Any) -> None:
            name = await websocket.recv()
            greeting = f"Hello {name}!"
            await websocket.send(greeting)

        async with server.serve(hello) as port:
            async with client.connect(f"ws://127.0.0.1:{port}") as websocket:
                await websocket.send("world")
                greeting = await websocket.recv()
        assert greeting == "Hello world!"

    async def test_hello_over_tls(
        self,
        sides: Sides,
        server_ssl_context: Any,
        client_ssl_context: Any,
    ) -> None:
        server, client = sides

        async def hello(websocket: Any) -> None:
            name = await websocket.recv()
            await websocket.send(f"Hello {name}!")

        async with server.serve(hello, ssl=server_ssl_context) as port:
            async with client.connect(
                f"wss://localhost:{port}", ssl=client_ssl_context
            ) as websocket:
                await websocket.send("secure world")
                greeting = await websocket.recv()
        assert greeting == "Hello secure world!"


class TestEcho:
    async def test_echo_text_binary_and_fragments(self, sides: Sides) -> None:
        server, client = sides

        async def echo(websocket: Any) -> None:
            async for message in websocket:
                await websocket.send(message)

        async with server.serve(echo) as port:
            async with client.connect(f"ws://127.0.0.1:{port}") as websocket:
                await websocket.send("text")
                assert await websocket.recv() == "text"
                await websocket.send(b"\x00\xff")
                assert await websocket.recv() == b"\x00\xff"
                await websocket.send(["frag", "mented"])
                assert await websocket.recv() == "fragmented"
                await websocket.send("x" * 100_000)
                assert await websocket.recv() == "x" * 100_000

    async def test_the_server_ends_the_client_loop_with_close_ok(
        self, sides: Sides
    ) -> None:
        server, client = sides

        async def two_then_done(websocket: Any) -> None:
            await websocket.send("one")
            await websocket.send("two")

        received = []
        async with server.serve(two_then_done) as port:
            async with client.connect(f"ws://127.0.0.1:{port}") as websocket:
                async for message in websocket:
                    received.append(message)
                with pytest.raises(client.exceptions.ConnectionClosedOK):
                    await websocket.recv()
        assert received == ["one", "two"]


class CounterApp:
    """The counter of websockets' quick start, which uses broadcast()."""

    def __init__(self, broadcast: Any) -> None:
        self.broadcast = broadcast
        self.users: set[Any] = set()
        self.value = 0

    def users_event(self) -> str:
        return json.dumps({"type": "users", "count": len(self.users)})

    def value_event(self) -> str:
        return json.dumps({"type": "value", "value": self.value})

    async def counter(self, websocket: Any) -> None:
        try:
            self.users.add(websocket)
            self.broadcast(self.users, self.users_event())
            await websocket.send(self.value_event())
            async for message in websocket:
                event = json.loads(message)
                if event["action"] == "minus":
                    self.value -= 1
                    self.broadcast(self.users, self.value_event())
                elif event["action"] == "plus":
                    self.value += 1
                    self.broadcast(self.users, self.value_event())
        finally:
            self.users.remove(websocket)
            self.broadcast(self.users, self.users_event())


class TestBroadcastCounter:
    async def test_counter(self, sides: Sides) -> None:
        server, client = sides
        if server.broadcast is None:
            pytest.skip("websockets' trio broadcast() is a coroutine")
        app = CounterApp(server.broadcast)

        async def event(websocket: Any) -> Any:
            return json.loads(await websocket.recv())

        async with server.serve(app.counter) as port:
            uri = f"ws://127.0.0.1:{port}"
            async with client.connect(uri) as alice:
                assert await event(alice) == {"type": "users", "count": 1}
                assert await event(alice) == {"type": "value", "value": 0}
                async with client.connect(uri) as bob:
                    assert await event(bob) == {"type": "users", "count": 2}
                    assert await event(bob) == {"type": "value", "value": 0}
                    assert await event(alice) == {"type": "users", "count": 2}
                    await alice.send(json.dumps({"action": "plus"}))
                    assert await event(alice) == {"type": "value", "value": 1}
                    assert await event(bob) == {"type": "value", "value": 1}
                    await bob.send(json.dumps({"action": "minus"}))
                    assert await event(bob) == {"type": "value", "value": 0}
                    assert await event(alice) == {"type": "value", "value": 0}
                assert await event(alice) == {"type": "users", "count": 1}
        assert app.users == set()


class TestProcessRequest:
    @staticmethod
    def process_request(connection: Any, request: Any) -> Any:
        if request.path == "/healthz":
            return connection.respond(http.HTTPStatus.OK, "OK\n")
        query = urllib.parse.parse_qs(urllib.parse.urlsplit(request.path).query)
        token = query.get("token", [request.headers.get("Authorization")])[0]
        if token not in ("secret", "Bearer secret"):
            return connection.respond(http.HTTPStatus.UNAUTHORIZED, "Invalid token\n")
        return None

    @staticmethod
    async def welcome(websocket: Any) -> None:
        await websocket.send(f"welcome to {websocket.request.path}")

    async def test_health_check_answers_plain_http(self, sides: Sides) -> None:
        server, _ = sides
        async with server.serve(
            self.welcome, process_request=self.process_request
        ) as port:
            assert await http_get(port, "/healthz") == (200, b"OK\n")

    async def test_token_auth(self, sides: Sides) -> None:
        server, client = sides
        async with server.serve(
            self.welcome, process_request=self.process_request
        ) as port:
            uri = f"ws://127.0.0.1:{port}/chat"
            with pytest.raises(client.exceptions.InvalidStatus) as refused:
                async with client.connect(uri):
                    pass  # pragma: no cover
            assert refused.value.response.status_code == 401
            assert refused.value.response.body == b"Invalid token\n"

            async with client.connect(uri + "?token=secret") as websocket:
                assert await websocket.recv() == "welcome to /chat?token=secret"
            headers = {"Authorization": "Bearer secret"}
            async with client.connect(uri, additional_headers=headers) as websocket:
                assert await websocket.recv() == "welcome to /chat"


class FlakyServer:
    """Refuses with 503, then serves twice (dropping the first with 1012), then 403."""

    def __init__(self) -> None:
        self.attempts = 0

    def process_request(self, connection: Any, request: Any) -> Any:
        self.attempts += 1
        if self.attempts == 1:
            return connection.respond(http.HTTPStatus.SERVICE_UNAVAILABLE, "later\n")
        if self.attempts == 4:
            return connection.respond(http.HTTPStatus.FORBIDDEN, "go away\n")
        return None

    async def handler(self, websocket: Any) -> None:
        await websocket.send(f"hello {self.attempts - 1}")
        if self.attempts == 2:
            await websocket.close(1012, "service restart")


class TestReconnectingClient:
    @pytest.mark.parametrize(
        "server_name",
        ["shim", pytest.param("websockets", marks=pytest.mark.interop)],
    )
    async def test_reconnects_until_a_fatal_error(
        self, server_name: str, anyio_backend_name: str
    ) -> None:
        server = make_side(server_name, anyio_backend_name)
        flaky = FlakyServer()
        delays: list[float] = []

        def no_delay() -> Generator[float]:
            while True:
                delays.append(0.0)
                yield 0.0

        received = []
        async with server.serve(
            flaky.handler, process_request=flaky.process_request
        ) as port:
            uri = f"ws://127.0.0.1:{port}"
            with pytest.raises(websockets.InvalidStatus) as fatal:
                async for websocket in websockets.connect(
                    uri, reconnect_delays=no_delay
                ):
                    try:
                        async for message in websocket:
                            received.append(message)
                    except websockets.ConnectionClosed:
                        continue
        assert fatal.value.response.status_code == 403
        assert received == ["hello 1", "hello 2"]
        assert flaky.attempts == 4
        assert delays == [0.0]  # one retry after 503; none after a dropped connection


class TestLegacyTwoArgumentHandler:
    @pytest.mark.parametrize(
        "pair",
        [
            ("shim", "shim"),
            pytest.param(("shim", "websockets"), marks=pytest.mark.interop),
            pytest.param(("websockets", "shim"), marks=pytest.mark.interop),
        ],
    )
    async def test_awaited_serve_and_connect(
        self, pair: tuple[str, str], anyio_backend_name: str
    ) -> None:
        if anyio_backend_name != "asyncio":
            pytest.skip("the awaited serve() and connect() forms need asyncio")
        server_name, client_name = pair

        async def handler(websocket: Any, path: str) -> None:
            name = await websocket.recv()
            await websocket.send(f"Hello {name} at {path}!")

        async def modern_handler(websocket: Any) -> None:
            await handler(websocket, websocket.request.path)

        if server_name == "shim":
            start_server = websockets.serve(handler, "127.0.0.1", 0)
            server: Any = await start_server
        else:
            from websockets.asyncio.server import serve

            server = await serve(modern_handler, "127.0.0.1", 0)
        port = server.sockets[0].getsockname()[1]
        uri = f"ws://127.0.0.1:{port}/chat?room=1"
        try:
            if client_name == "shim":
                websocket: Any = await websockets.connect(uri)
            else:
                from websockets.asyncio.client import connect

                websocket = await connect(uri)
            await websocket.send("world")
            assert await websocket.recv() == "Hello world at /chat?room=1!"
            await websocket.close()
            assert websocket.close_code == 1000
        finally:
            server.close()
            await server.wait_closed()

"""The server: ``anyws.serve()``, :class:`anyws.Server` and ``anyws.accept()``.

Discipline
    Servers listen on real sockets (port 0 on 127.0.0.1, or ``::1`` where the machine
    has IPv6 loopback) and TLS uses certificates from a trustme test CA. The peers
    are anyws clients, and raw TCP clients that write HTTP by hand where a test needs
    a request no WebSocket client would send. ``accept()`` is driven over an
    in-memory byte stream pair, with an anyws client or a raw writer on the other end.

    The client closes first, except in tests about the server side closing:
    ``aclose()``, leaving the ``async with serve()`` block, a handler that returns or
    raises, a server connection closing with 4000.

    Ordering comes from the peers themselves (a reply received, an EOF read), from
    ``anyio.Event`` set by handlers, and from ``anyio.wait_all_tasks_blocked()``;
    never from sleeping. ``anyio.fail_after`` only bounds a test that would hang.
"""

from __future__ import annotations

import logging
import os
import sys
import urllib.parse
import uuid
from dataclasses import dataclass
from typing import TYPE_CHECKING, Any

import anyio
import anyio.lowlevel
import pytest

import anyws
from anyws import (
    ConnectionClosedError,
    ConnectionClosedOK,
    InvalidHandshake,
    InvalidMessage,
    InvalidStatus,
)
from tests.helpers import needs_ipv6

from .helpers import memory_stream_pair

if TYPE_CHECKING:
    import ssl
    from collections.abc import Awaitable, Callable, Sequence

    from anyio.abc import ByteStream

    Handler = Callable[[anyws.ServerConnection], Awaitable[None]]

# The sample key of RFC 6455 section 1.3: base64 of a 16-byte nonce.
KEY = "dGhlIHNhbXBsZSBub25jZQ=="
# Safety net for waits that would otherwise hang when a behaviour is missing.
TIMEOUT = 5


async def echo(ws: anyws.ServerConnection) -> None:
    async for message in ws:
        await ws.send(message)


async def check_echo(uri: str, **options: Any) -> None:
    """Open a client to ``uri``, check that the server echoes, and close."""
    async with anyws.connect(uri, **options) as ws:
        await ws.send("ping?")
        assert await ws.recv() == "ping?"


@dataclass
class RawResponse:
    """An HTTP response read by :func:`raw_http` until the server closed TCP."""

    status: int
    headers: dict[str, str]
    body: bytes


async def read_to_eof(stream: ByteStream) -> bytes:
    data = b""
    try:
        while True:
            data += await stream.receive()
    except (anyio.EndOfStream, anyio.BrokenResourceError):
        return data


def parse_response(data: bytes) -> RawResponse:
    head, separator, body = data.partition(b"\r\n\r\n")
    assert separator, f"no complete HTTP response head in {data!r}"
    status_line, *lines = head.decode("latin-1").split("\r\n")
    version, status, _reason = status_line.split(" ", 2)
    assert version == "HTTP/1.1"
    headers = {}
    for line in lines:
        name, _, value = line.partition(":")
        headers[name.strip().lower()] = value.strip()
    return RawResponse(int(status), headers, body)


async def raw_http(port: int, request: bytes) -> RawResponse:
    """Send ``request`` over a plain TCP connection; read the response to EOF."""
    with anyio.fail_after(TIMEOUT):
        async with await anyio.connect_tcp("127.0.0.1", port) as stream:
            await stream.send(request)
            return parse_response(await read_to_eof(stream))


def http_request(
    *lines: str, start: str = "GET / HTTP/1.1", host: str = "127.0.0.1"
) -> bytes:
    """Build an HTTP request head from its start line and header lines."""
    return "\r\n".join((start, f"Host: {host}", *lines, "", "")).encode()


UPGRADE_HEADERS = (
    "Upgrade: websocket",
    "Connection: Upgrade",
    f"Sec-WebSocket-Key: {KEY}",
    "Sec-WebSocket-Version: 13",
)


def anyws_records(caplog: pytest.LogCaptureFixture) -> list[logging.LogRecord]:
    return [r for r in caplog.records if r.name.startswith("anyws")]


class TestListen:
    async def test_port_and_sockets_report_the_bound_address(self) -> None:
        async with anyws.serve(echo, "127.0.0.1", 0) as server:
            assert server.port != 0
            assert len(server.sockets) == 1
            assert server.sockets[0].getsockname() == ("127.0.0.1", server.port)
            await check_echo(f"ws://127.0.0.1:{server.port}/")

    async def test_all_interfaces_include_ipv4(self) -> None:
        async with anyws.serve(echo, None, 0) as server:
            assert server.sockets
            assert {s.getsockname()[1] for s in server.sockets} == {server.port}
            await check_echo(f"ws://127.0.0.1:{server.port}/")

    @needs_ipv6
    async def test_all_interfaces_include_ipv6(self) -> None:
        async with anyws.serve(echo, None, 0) as server:
            assert {s.getsockname()[1] for s in server.sockets} == {server.port}
            await check_echo(f"ws://[::1]:{server.port}/")
            await check_echo(f"ws://127.0.0.1:{server.port}/")

    @needs_ipv6
    async def test_several_hosts_share_one_port(self) -> None:
        async with anyws.serve(echo, ["127.0.0.1", "::1"], 0) as server:
            addresses = sorted(s.getsockname()[0] for s in server.sockets)
            assert addresses == ["127.0.0.1", "::1"]
            assert {s.getsockname()[1] for s in server.sockets} == {server.port}
            await check_echo(f"ws://127.0.0.1:{server.port}/")
            await check_echo(f"ws://[::1]:{server.port}/")


class TestTLS:
    async def test_serves_wss(
        self,
        server_ssl_context: ssl.SSLContext,
        client_ssl_context: ssl.SSLContext,
    ) -> None:
        async with anyws.serve(echo, "127.0.0.1", 0, ssl=server_ssl_context) as server:
            async with anyws.connect(
                f"wss://127.0.0.1:{server.port}/", ssl=client_ssl_context
            ) as ws:
                await ws.send("secret")
                assert await ws.recv() == "secret"
                await ws.send(b"\x00\x01")
                assert await ws.recv() == b"\x00\x01"

    async def test_plain_client_fails_cleanly_and_server_keeps_serving(
        self,
        server_ssl_context: ssl.SSLContext,
        client_ssl_context: ssl.SSLContext,
        caplog: pytest.LogCaptureFixture,
    ) -> None:
        async with anyws.serve(echo, "127.0.0.1", 0, ssl=server_ssl_context) as server:
            with pytest.raises((InvalidMessage, OSError)):
                await check_echo(f"ws://127.0.0.1:{server.port}/", open_timeout=TIMEOUT)
            await check_echo(f"wss://127.0.0.1:{server.port}/", ssl=client_ssl_context)
        assert not [r for r in anyws_records(caplog) if r.levelno >= logging.WARNING]

    async def test_silent_and_plaintext_clients_are_dropped_after_open_timeout(
        self,
        server_ssl_context: ssl.SSLContext,
        client_ssl_context: ssl.SSLContext,
    ) -> None:
        # One client never starts the TLS handshake, another speaks plain HTTP:
        # both are dropped, and a wss:// client is served meanwhile.
        async with anyws.serve(
            echo, "127.0.0.1", 0, ssl=server_ssl_context, open_timeout=0.3
        ) as server:
            silent = await anyio.connect_tcp("127.0.0.1", server.port)
            plaintext = await anyio.connect_tcp("127.0.0.1", server.port)
            async with silent, plaintext:
                await plaintext.send(b"GET / HTTP/1.1\r\nHost: x\r\n\r\n")
                await check_echo(
                    f"wss://127.0.0.1:{server.port}/", ssl=client_ssl_context
                )
                for stream in (silent, plaintext):
                    with anyio.fail_after(TIMEOUT):
                        while True:
                            try:
                                await stream.receive()  # a TLS alert, maybe
                            except (anyio.EndOfStream, anyio.BrokenResourceError):
                                break
            assert server.connections == set()


class TestProcessRequest:
    async def test_response_refuses_the_handshake(self) -> None:
        def process_request(
            connection: anyws.ServerConnection, request: anyws.Request
        ) -> anyws.Response:
            return connection.respond(401, "who are you?")

        async with anyws.serve(
            echo, "127.0.0.1", 0, process_request=process_request
        ) as server:
            with pytest.raises(InvalidStatus) as info:
                await check_echo(f"ws://127.0.0.1:{server.port}/")
        response = info.value.response
        assert response.status_code == 401
        assert response.body == b"who are you?"

    async def test_none_continues_the_handshake(self) -> None:
        seen: list[str] = []

        def process_request(
            connection: anyws.ServerConnection, request: anyws.Request
        ) -> None:
            seen.append(request.path)

        async with anyws.serve(
            echo, "127.0.0.1", 0, process_request=process_request
        ) as server:
            await check_echo(f"ws://127.0.0.1:{server.port}/chat")
        assert seen == ["/chat"]

    async def test_health_check_answers_plain_http(self) -> None:
        def process_request(
            connection: anyws.ServerConnection, request: anyws.Request
        ) -> anyws.Response | None:
            if request.path == "/healthz":
                return connection.respond(200, "OK\n")
            return None

        async with anyws.serve(
            echo, "127.0.0.1", 0, process_request=process_request
        ) as server:
            response = await raw_http(
                server.port, http_request(start="GET /healthz HTTP/1.1")
            )
            assert response.status == 200
            assert response.body == b"OK\n"
            assert response.headers["content-length"] == "3"
            # The other paths are still WebSocket endpoints.
            await check_echo(f"ws://127.0.0.1:{server.port}/")

    @staticmethod
    def token_auth(
        connection: anyws.ServerConnection, request: anyws.Request
    ) -> anyws.Response | None:
        query = urllib.parse.parse_qs(request.query)
        if query.get("token") == ["secret"]:
            return None
        if request.headers.get("Authorization") == "Bearer secret":
            return None
        return connection.respond(403, "bad token\n")

    async def test_token_in_query_string(self) -> None:
        async with anyws.serve(
            echo, "127.0.0.1", 0, process_request=self.token_auth
        ) as server:
            await check_echo(f"ws://127.0.0.1:{server.port}/?token=secret")
            with pytest.raises(InvalidStatus) as info:
                await check_echo(f"ws://127.0.0.1:{server.port}/?token=guess")
        assert info.value.response.status_code == 403
        assert info.value.response.body == b"bad token\n"

    async def test_token_in_header(self) -> None:
        async with anyws.serve(
            echo, "127.0.0.1", 0, process_request=self.token_auth
        ) as server:
            uri = f"ws://127.0.0.1:{server.port}/"
            await check_echo(uri, additional_headers={"Authorization": "Bearer secret"})
            with pytest.raises(InvalidStatus) as info:
                await check_echo(
                    uri, additional_headers={"Authorization": "Bearer guess"}
                )
        assert info.value.response.status_code == 403

    async def test_async_hook(self) -> None:
        calls: list[str] = []

        async def process_request(
            connection: anyws.ServerConnection, request: anyws.Request
        ) -> anyws.Response | None:
            await anyio.lowlevel.checkpoint()
            calls.append(request.path)
            if request.path == "/private":
                return connection.respond(404, "nothing here")
            return None

        async with anyws.serve(
            echo, "127.0.0.1", 0, process_request=process_request
        ) as server:
            await check_echo(f"ws://127.0.0.1:{server.port}/public")
            with pytest.raises(InvalidStatus) as info:
                await check_echo(f"ws://127.0.0.1:{server.port}/private")
        assert info.value.response.status_code == 404
        assert info.value.response.body == b"nothing here"
        assert calls == ["/public", "/private"]

    async def test_hook_sees_path_and_headers(self) -> None:
        seen: list[anyws.Request] = []

        def process_request(
            connection: anyws.ServerConnection, request: anyws.Request
        ) -> None:
            assert connection.request is request
            seen.append(request)

        async with anyws.serve(
            echo, "127.0.0.1", 0, process_request=process_request
        ) as server:
            await check_echo(
                f"ws://127.0.0.1:{server.port}/room/1?user=ann",
                additional_headers=[("X-Trace", "abc")],
            )
        (request,) = seen
        assert request.path == "/room/1?user=ann"
        assert request.query == "user=ann"
        assert request.headers["X-Trace"] == "abc"
        assert request.headers["Upgrade"] == "websocket"


class TestHookErrors:
    @pytest.mark.parametrize("hook", ["process_request", "process_response"])
    async def test_a_hook_that_raises_gets_500_and_the_server_keeps_serving(
        self, hook: str, caplog: pytest.LogCaptureFixture
    ) -> None:
        calls = 0

        def broken(*args: Any) -> None:
            nonlocal calls
            calls += 1
            if calls == 1:
                raise ZeroDivisionError("the application's bug")

        caplog.set_level(logging.DEBUG, logger="anyws")
        options: dict[str, Any] = {hook: broken}
        async with anyws.serve(echo, "127.0.0.1", 0, **options) as server:
            uri = f"ws://127.0.0.1:{server.port}/"
            with pytest.raises(anyws.InvalidStatus) as raised:
                await check_echo(uri)
            assert raised.value.response.status_code == 500
            await check_echo(uri)
        errors = [r for r in anyws_records(caplog) if r.levelno >= logging.ERROR]
        assert len(errors) == 1
        assert errors[0].exc_info is not None
        assert isinstance(errors[0].exc_info[1], ZeroDivisionError)

    async def test_select_subprotocol_that_raises_gets_500(self) -> None:
        def broken(connection: anyws.ServerConnection, offered: Any) -> str:
            raise RuntimeError("oops")

        async with anyws.serve(
            echo, "127.0.0.1", 0, select_subprotocol=broken
        ) as server:
            with pytest.raises(anyws.InvalidStatus) as raised:
                await check_echo(f"ws://127.0.0.1:{server.port}/", subprotocols=["a"])
            assert raised.value.response.status_code == 500


class TestProcessResponse:
    async def test_may_add_a_header(self) -> None:
        def process_response(
            connection: anyws.ServerConnection,
            request: anyws.Request,
            response: anyws.Response,
        ) -> None:
            response.headers["X-Served-By"] = "anyws-test"

        async with anyws.serve(
            echo, "127.0.0.1", 0, process_response=process_response
        ) as server:
            async with anyws.connect(f"ws://127.0.0.1:{server.port}/") as ws:
                assert ws.response is not None
                assert ws.response.status_code == 101
                assert ws.response.headers["X-Served-By"] == "anyws-test"
                await ws.send("still a WebSocket")
                assert await ws.recv() == "still a WebSocket"

    @pytest.mark.parametrize("kind", ["sync", "async"])
    async def test_may_replace_the_response(self, kind: str) -> None:
        seen: list[int] = []

        def replace(
            connection: anyws.ServerConnection,
            request: anyws.Request,
            response: anyws.Response,
        ) -> anyws.Response:
            seen.append(response.status_code)
            return connection.respond(403, "forbidden")

        async def replace_async(
            connection: anyws.ServerConnection,
            request: anyws.Request,
            response: anyws.Response,
        ) -> anyws.Response:
            await anyio.lowlevel.checkpoint()
            return replace(connection, request, response)

        hook = replace if kind == "sync" else replace_async
        async with anyws.serve(echo, "127.0.0.1", 0, process_response=hook) as server:
            with pytest.raises(InvalidStatus) as info:
                await check_echo(f"ws://127.0.0.1:{server.port}/")
        assert seen == [101]
        assert info.value.response.status_code == 403
        assert info.value.response.body == b"forbidden"


class TestSubprotocols:
    @pytest.mark.parametrize("kind", ["sync", "async"])
    async def test_select_subprotocol_hook_chooses(self, kind: str) -> None:
        offers: list[list[str]] = []
        chosen: list[str | None] = []

        def select(
            connection: anyws.ServerConnection, subprotocols: Sequence[str]
        ) -> str | None:
            offers.append(list(subprotocols))
            return subprotocols[-1]

        async def select_async(
            connection: anyws.ServerConnection, subprotocols: Sequence[str]
        ) -> str | None:
            await anyio.lowlevel.checkpoint()
            return select(connection, subprotocols)

        async def handler(ws: anyws.ServerConnection) -> None:
            chosen.append(ws.subprotocol)
            await echo(ws)

        hook = select if kind == "sync" else select_async
        async with anyws.serve(
            handler, "127.0.0.1", 0, select_subprotocol=hook
        ) as server:
            async with anyws.connect(
                f"ws://127.0.0.1:{server.port}/", subprotocols=["chat", "superchat"]
            ) as ws:
                assert ws.subprotocol == "superchat"
                await ws.send("hi")
                assert await ws.recv() == "hi"
        assert offers == [["chat", "superchat"]]
        assert chosen == ["superchat"]

    async def test_hook_returning_none_selects_nothing(self) -> None:
        def select(
            connection: anyws.ServerConnection, subprotocols: Sequence[str]
        ) -> None:
            return None

        async with anyws.serve(
            echo, "127.0.0.1", 0, select_subprotocol=select
        ) as server:
            async with anyws.connect(
                f"ws://127.0.0.1:{server.port}/", subprotocols=["chat"]
            ) as ws:
                assert ws.subprotocol is None
                assert ws.response is not None
                assert "Sec-WebSocket-Protocol" not in ws.response.headers

    async def test_default_selection_prefers_the_servers_order(self) -> None:
        async with anyws.serve(
            echo, "127.0.0.1", 0, subprotocols=["superchat", "chat"]
        ) as server:
            uri = f"ws://127.0.0.1:{server.port}/"
            async with anyws.connect(uri, subprotocols=["chat", "superchat"]) as ws:
                assert ws.subprotocol == "superchat"
            async with anyws.connect(uri, subprotocols=["other", "chat"]) as ws:
                assert ws.subprotocol == "chat"

    @pytest.mark.parametrize("offered", [None, ["other"]], ids=["none", "unknown"])
    async def test_default_selection_refuses_without_a_shared_subprotocol(
        self, offered: list[str] | None
    ) -> None:
        async with anyws.serve(echo, "127.0.0.1", 0, subprotocols=["chat"]) as server:
            with pytest.raises(InvalidStatus) as info:
                await check_echo(f"ws://127.0.0.1:{server.port}/", subprotocols=offered)
        assert info.value.response.status_code == 400

    async def test_server_without_subprotocols_selects_none(self) -> None:
        async with anyws.serve(echo, "127.0.0.1", 0) as server:
            async with anyws.connect(
                f"ws://127.0.0.1:{server.port}/", subprotocols=["chat"]
            ) as ws:
                assert ws.subprotocol is None


class TestServerConnection:
    async def test_request_addresses_and_id(self) -> None:
        connections: list[anyws.ServerConnection] = []

        async def handler(ws: anyws.ServerConnection) -> None:
            connections.append(ws)
            await echo(ws)

        async with anyws.serve(handler, "127.0.0.1", 0) as server:
            uri = f"ws://127.0.0.1:{server.port}/chat/room?x=1&y=2"
            async with (
                anyws.connect(uri, additional_headers={"X-Custom": "value"}) as one,
                anyws.connect(uri) as two,
            ):
                # A reply means the handler of each connection is running.
                for client in (one, two):
                    await client.send("ready?")
                    assert await client.recv() == "ready?"
                first, second = connections
                if first.remote_address != one.local_address:
                    first, second = second, first

                assert first.request is not None
                assert first.request.path == "/chat/room?x=1&y=2"
                assert first.request.query == "x=1&y=2"
                assert first.request.headers["X-Custom"] == "value"
                assert first.request.headers["Host"] == f"127.0.0.1:{server.port}"

                assert isinstance(first.remote_address, tuple)
                assert first.remote_address == one.local_address
                assert first.remote_address[0] == "127.0.0.1"
                assert first.local_address == ("127.0.0.1", server.port)
                assert one.remote_address == ("127.0.0.1", server.port)
                assert second.remote_address == two.local_address

                assert isinstance(first.id, uuid.UUID)
                assert isinstance(second.id, uuid.UUID)
                assert first.id != second.id


def scripted() -> Handler:
    """An echo handler that returns on "return" and raises on "raise"."""

    async def handler(ws: anyws.ServerConnection) -> None:
        while True:
            message = await ws.recv()
            if message == "return":
                return
            if message == "raise":
                raise RuntimeError("boom")
            await ws.send(message)

    return handler


class TestHandlerOutcome:
    async def test_return_closes_with_1000(self) -> None:
        async with anyws.serve(scripted(), "127.0.0.1", 0) as server:
            uri = f"ws://127.0.0.1:{server.port}/"
            async with anyws.connect(uri) as one, anyws.connect(uri) as two:
                await two.send("first")
                assert await two.recv() == "first"
                await one.send("return")
                with pytest.raises(ConnectionClosedOK) as info:
                    await one.recv()
                assert info.value.rcvd is not None
                assert info.value.rcvd.code == 1000
                await one.wait_closed()
                assert one.close_code == 1000
                # The other connection is undisturbed.
                await two.send("second")
                assert await two.recv() == "second"

    async def test_raise_logs_the_error_and_closes_with_1011(
        self, caplog: pytest.LogCaptureFixture
    ) -> None:
        async with anyws.serve(scripted(), "127.0.0.1", 0) as server:
            uri = f"ws://127.0.0.1:{server.port}/"
            async with anyws.connect(uri) as one, anyws.connect(uri) as two:
                await two.send("first")
                assert await two.recv() == "first"
                await one.send("raise")
                with pytest.raises(ConnectionClosedError) as info:
                    await one.recv()
                assert info.value.rcvd is not None
                assert info.value.rcvd.code == 1011
                await one.wait_closed()
                assert one.close_code == 1011
                # The other connection is undisturbed.
                await two.send("second")
                assert await two.recv() == "second"

        errors = [
            r
            for r in caplog.records
            if r.name == "anyws.server" and r.levelno == logging.ERROR
        ]
        assert len(errors) == 1
        assert errors[0].exc_info is not None
        exc = errors[0].exc_info[1]
        assert isinstance(exc, RuntimeError)
        assert str(exc) == "boom"
        assert "Traceback" in caplog.text
        assert "RuntimeError: boom" in caplog.text


INVALID_REQUESTS = [
    pytest.param(http_request(), 426, {"upgrade": "websocket"}, id="plain-get"),
    pytest.param(
        http_request(*UPGRADE_HEADERS[1:]),
        426,
        {"upgrade": "websocket"},
        id="missing-upgrade",
    ),
    pytest.param(
        http_request(*UPGRADE_HEADERS[:3], "Sec-WebSocket-Version: 8"),
        426,
        {"sec-websocket-version": "13"},
        id="version-8",
    ),
    pytest.param(
        http_request(*UPGRADE_HEADERS[:2], UPGRADE_HEADERS[3]),
        400,
        {},
        id="missing-key",
    ),
    pytest.param(
        http_request(
            *UPGRADE_HEADERS[:2], "Sec-WebSocket-Key: not a key!", UPGRADE_HEADERS[3]
        ),
        400,
        {},
        id="malformed-key",
    ),
    pytest.param(
        http_request(
            *UPGRADE_HEADERS[:2], "Sec-WebSocket-Key: c2hvcnQ=", UPGRADE_HEADERS[3]
        ),
        400,
        {},
        id="short-key",
    ),
    pytest.param(
        http_request(*UPGRADE_HEADERS, start="POST / HTTP/1.1"), 405, {}, id="post"
    ),
    pytest.param(
        http_request(*UPGRADE_HEADERS, start="GET / HTTP/1.0"), 400, {}, id="http-1.0"
    ),
    pytest.param(
        http_request(*UPGRADE_HEADERS, start="GET http://127.0.0.1/ HTTP/1.1"),
        400,
        {},
        id="absolute-form",
    ),
    pytest.param(b"\x00\x01\x02\xff garbage\r\n\r\n", 400, {}, id="garbage"),
]


class TestInvalidUpgrade:
    @pytest.mark.parametrize(("request_bytes", "status", "headers"), INVALID_REQUESTS)
    async def test_answered_with_4xx_and_logged_at_debug(
        self,
        request_bytes: bytes,
        status: int,
        headers: dict[str, str],
        caplog: pytest.LogCaptureFixture,
    ) -> None:
        caplog.set_level(logging.DEBUG, logger="anyws")
        handled: list[anyws.ServerConnection] = []

        async def handler(ws: anyws.ServerConnection) -> None:
            handled.append(ws)
            await echo(ws)

        async with anyws.serve(handler, "127.0.0.1", 0) as server:
            response = await raw_http(server.port, request_bytes)
            assert response.status == status
            for name, value in headers.items():
                assert response.headers[name] == value
            assert response.headers["content-type"].startswith("text/plain")
            assert 0 < len(response.body) < 512
            assert response.body.decode().strip()
            assert not handled

            records = anyws_records(caplog)
            assert any(
                r.name == "anyws.server" and r.levelno == logging.DEBUG for r in records
            )
            assert not [r for r in records if r.levelno >= logging.WARNING]

            await check_echo(f"ws://127.0.0.1:{server.port}/")
            assert len(handled) == 1


class TestOpenTimeout:
    @pytest.mark.parametrize(
        "sent", [b"", b"GET / HTTP/1.1\r\nHost: 127.0.0.1\r\n"], ids=["nothing", "half"]
    )
    async def test_slow_handshake_is_dropped(self, sent: bytes) -> None:
        async with anyws.serve(echo, "127.0.0.1", 0, open_timeout=0.2) as server:
            with anyio.fail_after(TIMEOUT):
                async with await anyio.connect_tcp("127.0.0.1", server.port) as stream:
                    if sent:
                        await stream.send(sent)
                    assert await read_to_eof(stream) == b""
            await check_echo(f"ws://127.0.0.1:{server.port}/")


class TestServerClose:
    async def test_aclose_stops_accepting_and_closes_with_1001(self) -> None:
        started = 0
        both_started = anyio.Event()

        async def handler(ws: anyws.ServerConnection) -> None:
            nonlocal started
            started += 1
            if started == 2:
                both_started.set()
            await echo(ws)

        after_aclose: list[str] = []
        async with anyws.serve(
            handler, "127.0.0.1", 0, close_timeout=TIMEOUT
        ) as server:
            port = server.port
            uri = f"ws://127.0.0.1:{port}/"
            async with anyws.connect(uri) as one, anyws.connect(uri) as two:
                await both_started.wait()
                assert len(server.connections) == 2
                await server.aclose()
                for client in (one, two):
                    with pytest.raises(ConnectionClosedOK) as info:
                        await client.recv()
                    assert info.value.rcvd is not None
                    assert info.value.rcvd.code == 1001
                assert not server.connections
                with pytest.raises(OSError):
                    await (await anyio.connect_tcp("127.0.0.1", port)).aclose()
                # aclose() doesn't cancel the code of the ``async with`` block.
                await anyio.lowlevel.checkpoint()
                after_aclose.append("ran")
        assert after_aclose == ["ran"]

    async def test_aclose_waits_for_handlers_to_finish(self) -> None:
        loop_ended = anyio.Event()
        may_finish = anyio.Event()
        closed = anyio.Event()
        outcome: list[str] = []

        async def handler(ws: anyws.ServerConnection) -> None:
            await ws.send("hello")
            try:
                await echo(ws)
                loop_ended.set()
                await may_finish.wait()
                outcome.append("finished")
            except anyio.get_cancelled_exc_class():
                outcome.append("cancelled")
                raise

        async def release() -> None:
            await loop_ended.wait()
            # The handler is still running: aclose() has not returned yet.
            assert not closed.is_set()
            may_finish.set()

        async with anyws.serve(
            handler, "127.0.0.1", 0, close_timeout=TIMEOUT
        ) as server:
            async with anyws.connect(f"ws://127.0.0.1:{server.port}/") as ws:
                assert await ws.recv() == "hello"
                async with anyio.create_task_group() as task_group:
                    task_group.start_soon(release)
                    await server.aclose()
                    closed.set()
                assert ws.close_code == 1001
        assert outcome == ["finished"]

    async def test_aclose_cancels_handlers_after_close_timeout(self) -> None:
        started = anyio.Event()
        outcome: list[str] = []

        async def handler(ws: anyws.ServerConnection) -> None:
            started.set()
            try:
                await anyio.Event().wait()  # ignores the close
            except anyio.get_cancelled_exc_class():
                outcome.append("cancelled")
                raise

        async with anyws.serve(handler, "127.0.0.1", 0, close_timeout=0.2) as server:
            async with anyws.connect(f"ws://127.0.0.1:{server.port}/") as ws:
                await started.wait()
                with anyio.fail_after(TIMEOUT):
                    await server.aclose()
                with pytest.raises(ConnectionClosedOK) as info:
                    await ws.recv()
                assert info.value.rcvd is not None
                assert info.value.rcvd.code == 1001
        assert outcome == ["cancelled"]

    async def test_aclose_returns_once_cancelled_handlers_finished(self) -> None:
        started = anyio.Event()
        outcome: list[str] = []

        async def handler(ws: anyws.ServerConnection) -> None:
            started.set()
            try:
                await anyio.Event().wait()  # ignores the close
            except anyio.get_cancelled_exc_class():
                outcome.append("cancelled")
                raise

        async with anyws.serve(handler, "127.0.0.1", 0, close_timeout=0.2) as server:
            async with anyws.connect(f"ws://127.0.0.1:{server.port}/"):
                await started.wait()
                with anyio.fail_after(TIMEOUT):
                    await server.aclose()
                # Closed means closed: no handler still running, no connection left.
                assert outcome == ["cancelled"]
                assert not server.connections

    async def test_serve_forever_returns_after_aclose_from_another_task(self) -> None:
        codes: list[int | None] = []

        async def client_then_aclose(server: anyws.Server) -> None:
            async with anyws.connect(f"ws://127.0.0.1:{server.port}/") as ws:
                await ws.send("hi")
                assert await ws.recv() == "hi"
                await server.aclose()
                await ws.wait_closed()
                codes.append(ws.close_code)

        async with anyws.serve(echo, "127.0.0.1", 0) as server:
            with anyio.fail_after(TIMEOUT):
                async with anyio.create_task_group() as task_group:
                    task_group.start_soon(client_then_aclose, server)
                    await server.serve_forever()
        assert codes == [1001]

    async def test_serve_forever_waits_while_open(self) -> None:
        returned = anyio.Event()

        async def run(server: anyws.Server) -> None:
            await server.serve_forever()
            returned.set()

        async with anyws.serve(echo, "127.0.0.1", 0) as server:
            async with anyio.create_task_group() as task_group:
                task_group.start_soon(run, server)
                await check_echo(f"ws://127.0.0.1:{server.port}/")
                await anyio.wait_all_tasks_blocked()
                assert not returned.is_set()
                await server.aclose()
            assert returned.is_set()

    async def test_leaving_the_block_closes_like_aclose(self) -> None:
        started = anyio.Event()
        codes: list[int] = []

        async def client(port: int) -> None:
            async with anyws.connect(f"ws://127.0.0.1:{port}/") as ws:
                try:
                    await ws.recv()
                except ConnectionClosedOK as exc:
                    assert exc.rcvd is not None
                    codes.append(exc.rcvd.code)

        async def handler(ws: anyws.ServerConnection) -> None:
            started.set()
            await echo(ws)

        async with anyio.create_task_group() as task_group:
            async with anyws.serve(handler, "127.0.0.1", 0) as server:
                port = server.port
                task_group.start_soon(client, port)
                await started.wait()
            # The server is closed once the block is left.
            assert codes == [1001]
            with pytest.raises(OSError):
                await (await anyio.connect_tcp("127.0.0.1", port)).aclose()

    async def test_connections_reflect_open_connections(self) -> None:
        opened = anyio.Event()
        handled: list[anyws.ServerConnection] = []

        async def handler(ws: anyws.ServerConnection) -> None:
            handled.append(ws)
            opened.set()
            await echo(ws)

        async with anyws.serve(handler, "127.0.0.1", 0) as server:
            assert server.connections == set()
            async with anyws.connect(f"ws://127.0.0.1:{server.port}/") as ws:
                await opened.wait()
                assert server.connections == set(handled)
                assert len(handled) == 1
            await ws.wait_closed()
            await anyio.wait_all_tasks_blocked()
            assert server.connections == set()


class TestAccept:
    async def test_messages_and_client_close_over_memory_streams(self) -> None:
        client_stream, server_stream = memory_stream_pair()
        server_side: list[object] = []

        async def serve_one() -> None:
            async with anyws.accept(server_stream) as ws:
                assert ws.request is not None
                server_side.append(ws.request.path)
                async for message in ws:
                    await ws.send(message)
                server_side.append(ws.close_code)

        async with anyio.create_task_group() as task_group:
            task_group.start_soon(serve_one)
            async with anyws.connect(
                "ws://memory.test/over/memory", stream=client_stream
            ) as ws:
                assert ws.response is not None
                assert ws.response.status_code == 101
                await ws.send("text")
                assert await ws.recv() == "text"
                await ws.send(b"\x00\xffbinary")
                assert await ws.recv() == b"\x00\xffbinary"
            assert ws.close_code == 1000
        assert server_side == ["/over/memory", 1000]

    async def test_server_close_over_memory_streams(self) -> None:
        client_stream, server_stream = memory_stream_pair()

        async def serve_one() -> None:
            async with anyws.accept(server_stream) as ws:
                await ws.send(await ws.recv())
                await ws.close(4000, "bye")
                # The client echoes the code (RFC 6455 section 5.5.1).
                assert ws.close_code == 4000

        async with anyio.create_task_group() as task_group:
            task_group.start_soon(serve_one)
            async with anyws.connect("ws://memory.test/", stream=client_stream) as ws:
                await ws.send("last words")
                assert await ws.recv() == "last words"
                with pytest.raises(ConnectionClosedError) as info:
                    await ws.recv()
                assert info.value.rcvd is not None
                assert (info.value.rcvd.code, info.value.rcvd.reason) == (4000, "bye")

    async def test_invalid_request_gets_4xx_and_raises(self) -> None:
        client_stream, server_stream = memory_stream_pair()
        raised: list[InvalidHandshake] = []

        async def serve_one() -> None:
            with pytest.raises(InvalidHandshake) as info:
                async with anyws.accept(server_stream):
                    pytest.fail("accept() opened an invalid handshake")
            raised.append(info.value)

        with anyio.fail_after(TIMEOUT):
            async with client_stream, anyio.create_task_group() as task_group:
                task_group.start_soon(serve_one)
                await client_stream.send(http_request())
                response = parse_response(await read_to_eof(client_stream))
        assert response.status == 426
        assert response.headers["upgrade"] == "websocket"
        assert response.body
        assert len(raised) == 1

    async def test_process_request_refusal_raises(self) -> None:
        client_stream, server_stream = memory_stream_pair()
        outcome: list[str] = []

        def process_request(
            connection: anyws.ServerConnection, request: anyws.Request
        ) -> anyws.Response:
            return connection.respond(403, "go away")

        async def serve_one() -> None:
            with pytest.raises(InvalidHandshake):
                async with anyws.accept(server_stream, process_request=process_request):
                    pytest.fail("accept() opened a refused handshake")
            outcome.append("server raised")

        with anyio.fail_after(TIMEOUT):
            async with anyio.create_task_group() as task_group:
                task_group.start_soon(serve_one)
                with pytest.raises(InvalidStatus) as info:
                    async with anyws.connect("ws://memory.test/", stream=client_stream):
                        pytest.fail("connect() opened a refused handshake")
        assert info.value.response.status_code == 403
        assert info.value.response.body == b"go away"
        assert outcome == ["server raised"]


class TestExceptionsInBody:
    async def test_exception_propagates_as_itself(self) -> None:
        with pytest.raises(KeyError) as info:
            async with anyws.serve(echo, "127.0.0.1", 0):
                raise KeyError("mine")
        assert type(info.value) is KeyError
        assert info.value.args == ("mine",)

    async def test_exception_propagates_with_open_connections(self) -> None:
        with pytest.raises(ValueError, match="mine") as info:
            async with anyws.serve(echo, "127.0.0.1", 0) as server:
                async with anyws.connect(f"ws://127.0.0.1:{server.port}/") as ws:
                    await ws.send("hi")
                    assert await ws.recv() == "hi"
                    raise ValueError("mine")
        assert type(info.value) is ValueError


# A server that runs out of file descriptors, in a subprocess of its own so that
# its limit touches nothing else. It prints its port, and serves until its standard
# input closes.
RUN_OUT_OF_FILES = """
import os, resource, sys, logging
import anyio, anyws

logging.basicConfig(level=logging.ERROR, stream=sys.stderr, format="%(message)s")

async def echo(ws):
    async for message in ws:
        await ws.send(message)

async def main():
    async with anyws.serve(echo, "127.0.0.1", 0, ping_interval=None) as server:
        # A thread to wait for the end, started while descriptors remain.
        async with anyio.create_task_group() as task_group:
            task_group.start_soon(anyio.to_thread.run_sync, sys.stdin.read)
            await anyio.wait_all_tasks_blocked()
            used = len(os.listdir("/proc/self/fd"))
            hard = resource.getrlimit(resource.RLIMIT_NOFILE)[1]
            resource.setrlimit(resource.RLIMIT_NOFILE, (used + 2, hard))
            print(server.port, flush=True)

backend, uvloop = sys.argv[1], sys.argv[2] == "uvloop"
options = {"use_uvloop": True} if uvloop else {}
anyio.run(main, backend=backend, backend_options=options)
"""


class TestAcceptErrors:
    @pytest.mark.skipif(not os.path.isdir("/proc/self/fd"), reason="needs /proc")
    async def test_out_of_file_descriptors_then_serving_again(
        self, anyio_backend: tuple[str, dict[str, Any]]
    ) -> None:
        name, options = anyio_backend
        loop = "uvloop" if options.get("loop_factory") else "default"
        command = [sys.executable, "-c", RUN_OUT_OF_FILES, name, loop]
        with anyio.fail_after(TIMEOUT * 4):
            async with await anyio.open_process(command) as process:
                assert process.stdout is not None and process.stdin is not None
                port = int((await process.stdout.receive()).decode())
                # More clients than descriptors left: accepting fails (EMFILE).
                clients = [await anyio.connect_tcp("127.0.0.1", port) for _ in range(8)]
                for client in clients:
                    await client.aclose()
                # Their connections end, descriptors free up, and serving goes on.
                await check_echo(f"ws://127.0.0.1:{port}/", ping_interval=None)
                await process.stdin.aclose()
                assert await process.wait() == 0
                assert process.stderr is not None
                errors = b""
                async for chunk in process.stderr:
                    errors += chunk
        assert b"error accepting a connection: [Errno 24]" in errors

"""Tests of :func:`anyws.connect`: URIs, handshake options, refusals, redirects,
timeouts, TLS and handshakes over a given stream.

Peers: an :func:`anyws.serve` server on 127.0.0.1 (or ::1), or a raw server written
here (an anyio TCP listener, optionally wrapped in TLS) that reads a request head and
writes a canned HTTP response, so that the client meets responses no WebSocket
server would send. TLS uses the trustme certificates of the ``ca``,
``server_ssl_context`` and ``client_ssl_context`` fixtures.

Ordering: the server reports what it saw of the handshake in its first message
(:func:`report`), so the client reads it before checking; a raw server that must
see something happen sets an :class:`anyio.Event` the test waits on. The client
closes first (leaving ``async with connect()``), and the server closes TCP, as
RFC 6455 section 7.1.1 asks; raw servers close after their canned response.
Timeouts (``anyio.fail_after``) are safety nets only.
"""

from __future__ import annotations

import base64
import json
import socket
import ssl
import struct
from contextlib import asynccontextmanager
from typing import TYPE_CHECKING, Any

import anyio
import pytest
import trustme
from anyio.abc import ByteStream, SocketAttribute, SocketListener, TaskGroup
from anyio.streams.tls import TLSStream

import anyws
from anyws import Headers, InvalidStatus, SecurityError, State
from tests.helpers import needs_ipv6

from .helpers import OP_CLOSE, OP_TEXT, RawPeer, memory_stream_pair

if TYPE_CHECKING:
    from collections.abc import AsyncIterator, Awaitable, Callable
    from pathlib import Path

# Errors of a peer that went away; a raw server ignores them.
_GONE = (
    anyio.EndOfStream,
    anyio.BrokenResourceError,
    anyio.ClosedResourceError,
    OSError,
)


# --------------------------------------------------------------------------
# Peers
# --------------------------------------------------------------------------


async def report(ws: anyws.ServerConnection) -> None:
    """Send what the server saw of the handshake; then wait for the client to close."""
    assert ws.request is not None
    await ws.send(
        json.dumps(
            {
                "path": ws.request.path,
                "query": ws.request.query,
                "headers": list(ws.request.headers.raw_items()),
                "subprotocol": ws.subprotocol,
            }
        )
    )
    async for _ in ws:
        pass


class Seen:
    """What a :func:`report` server saw of the handshake."""

    def __init__(self, data: dict[str, Any]) -> None:
        self.path: str = data["path"]
        self.query: str = data["query"]
        self.headers = Headers([(name, value) for name, value in data["headers"]])
        self.subprotocol: str | None = data["subprotocol"]


async def seen_by_server(ws: anyws.ClientConnection) -> Seen:
    message = await ws.recv()
    assert isinstance(message, str)
    return Seen(json.loads(message))


async def read_head(stream: ByteStream) -> bytes:
    """Read an HTTP request head (up to the empty line) from ``stream``."""
    data = b""
    while b"\r\n\r\n" not in data:
        data += await stream.receive()
    return data


def request_target(head: bytes) -> str:
    return head.split(b" ", 2)[1].decode()


def canned(response: bytes) -> Callable[[ByteStream], Awaitable[None]]:
    """A raw handler that answers any request with ``response`` and closes."""

    async def handle(stream: ByteStream) -> None:
        await read_head(stream)
        await stream.send(response)

    return handle


def redirect(status: int, location: str) -> bytes:
    return (
        f"HTTP/1.1 {status} Redirect\r\nLocation: {location}\r\n"
        "Content-Length: 0\r\n\r\n"
    ).encode()


async def _run_raw(
    stream: ByteStream,
    handler: Callable[[ByteStream], Awaitable[None]],
    ssl_context: ssl.SSLContext | None,
) -> None:
    try:
        if ssl_context is not None:
            stream = await TLSStream.wrap(
                stream,
                server_side=True,
                ssl_context=ssl_context,
                standard_compatible=False,
            )
        await handler(stream)
    except _GONE:
        pass
    finally:
        await anyio.aclose_forcefully(stream)


async def _accept_raw(
    listener: SocketListener,
    handler: Callable[[ByteStream], Awaitable[None]],
    ssl_context: ssl.SSLContext | None,
    task_group: TaskGroup,
) -> None:
    while True:
        stream = await listener.accept()
        task_group.start_soon(_run_raw, stream, handler, ssl_context)


@asynccontextmanager
async def raw_server(
    handler: Callable[[ByteStream], Awaitable[None]],
    ssl_context: ssl.SSLContext | None = None,
) -> AsyncIterator[int]:
    """Serve ``handler`` on 127.0.0.1 (TLS if ``ssl_context``); yield the port.

    Each connection runs ``handler`` with the stream, which is closed afterwards.
    """
    async with await anyio.create_tcp_listener(local_host="127.0.0.1") as multi:
        (listener,) = multi.listeners
        assert isinstance(listener, SocketListener)
        port: int = listener.extra(SocketAttribute.local_port)
        async with anyio.create_task_group() as task_group:
            task_group.start_soon(
                _accept_raw, listener, handler, ssl_context, task_group
            )
            try:
                yield port
            finally:
                task_group.cancel_scope.cancel()


def free_port() -> int:
    """A port on 127.0.0.1 that nothing listens on."""
    with socket.socket() as sock:
        sock.bind(("127.0.0.1", 0))
        port: int = sock.getsockname()[1]
    return port


# --------------------------------------------------------------------------
# The request the client sends
# --------------------------------------------------------------------------


class TestRequest:
    async def test_path_and_query_are_the_request_target(self) -> None:
        async with anyws.serve(report, "127.0.0.1", 0) as server:
            uri = f"ws://127.0.0.1:{server.port}/a/b?x=1&y=2"
            async with anyws.connect(uri) as ws:
                seen = await seen_by_server(ws)
                assert ws.request is not None
                assert ws.request.path == "/a/b?x=1&y=2"
        assert seen.path == "/a/b?x=1&y=2"
        assert seen.query == "x=1&y=2"

    async def test_empty_path_is_slash(self) -> None:
        async with anyws.serve(report, "127.0.0.1", 0) as server:
            async with anyws.connect(f"ws://127.0.0.1:{server.port}") as ws:
                seen = await seen_by_server(ws)
        assert seen.path == "/"
        assert seen.query == ""

    async def test_non_ascii_path_is_percent_encoded(self) -> None:
        async with anyws.serve(report, "127.0.0.1", 0) as server:
            async with anyws.connect(f"ws://127.0.0.1:{server.port}/café") as ws:
                seen = await seen_by_server(ws)
        assert seen.path == "/caf%C3%A9"

    async def test_host_header(self) -> None:
        async with anyws.serve(report, "127.0.0.1", 0) as server:
            port = server.port
            async with anyws.connect(f"ws://127.0.0.1:{port}/") as ws:
                seen = await seen_by_server(ws)
        assert seen.headers.get_all("Host") == [f"127.0.0.1:{port}"]

    async def test_user_info_becomes_basic_authorization(self) -> None:
        async with anyws.serve(report, "127.0.0.1", 0) as server:
            port = server.port
            uri = f"ws://user:p%40ss@127.0.0.1:{port}/"
            async with anyws.connect(uri) as ws:
                seen = await seen_by_server(ws)
        (authorization,) = seen.headers.get_all("Authorization")
        scheme, _, credentials = authorization.partition(" ")
        assert scheme == "Basic"
        assert base64.b64decode(credentials) == b"user:p@ss"
        # The credentials go in Authorization only.
        assert seen.headers["Host"] == f"127.0.0.1:{port}"

    async def test_no_authorization_without_user_info(self) -> None:
        async with anyws.serve(report, "127.0.0.1", 0) as server:
            async with anyws.connect(f"ws://127.0.0.1:{server.port}/") as ws:
                seen = await seen_by_server(ws)
        assert "Authorization" not in seen.headers

    async def test_additional_headers_as_dict(self) -> None:
        async with anyws.serve(report, "127.0.0.1", 0) as server:
            async with anyws.connect(
                f"ws://127.0.0.1:{server.port}/",
                additional_headers={"X-Token": "abc", "X-Other": "1"},
            ) as ws:
                seen = await seen_by_server(ws)
        assert seen.headers["X-Token"] == "abc"
        assert seen.headers["X-Other"] == "1"

    async def test_additional_headers_as_pairs(self) -> None:
        async with anyws.serve(report, "127.0.0.1", 0) as server:
            async with anyws.connect(
                f"ws://127.0.0.1:{server.port}/",
                additional_headers=[("X-Multi", "1"), ("X-Multi", "2")],
            ) as ws:
                seen = await seen_by_server(ws)
        assert seen.headers.get_all("X-Multi") == ["1", "2"]

    async def test_additional_headers_as_headers(self) -> None:
        async with anyws.serve(report, "127.0.0.1", 0) as server:
            async with anyws.connect(
                f"ws://127.0.0.1:{server.port}/",
                additional_headers=Headers([("X-A", "1")]),
            ) as ws:
                seen = await seen_by_server(ws)
        assert seen.headers["X-A"] == "1"

    async def test_origin(self) -> None:
        async with anyws.serve(report, "127.0.0.1", 0) as server:
            async with anyws.connect(
                f"ws://127.0.0.1:{server.port}/", origin="https://example.com"
            ) as ws:
                seen = await seen_by_server(ws)
        assert seen.headers.get_all("Origin") == ["https://example.com"]

    async def test_no_origin_by_default(self) -> None:
        async with anyws.serve(report, "127.0.0.1", 0) as server:
            async with anyws.connect(f"ws://127.0.0.1:{server.port}/") as ws:
                seen = await seen_by_server(ws)
        assert "Origin" not in seen.headers

    async def test_default_user_agent(self) -> None:
        async with anyws.serve(report, "127.0.0.1", 0) as server:
            async with anyws.connect(f"ws://127.0.0.1:{server.port}/") as ws:
                seen = await seen_by_server(ws)
        (user_agent,) = seen.headers.get_all("User-Agent")
        assert f"anyws/{anyws.__version__}" in user_agent

    async def test_custom_user_agent(self) -> None:
        async with anyws.serve(report, "127.0.0.1", 0) as server:
            async with anyws.connect(
                f"ws://127.0.0.1:{server.port}/", user_agent_header="probe/2.0"
            ) as ws:
                seen = await seen_by_server(ws)
        assert seen.headers.get_all("User-Agent") == ["probe/2.0"]

    async def test_user_agent_none_omits_it(self) -> None:
        async with anyws.serve(report, "127.0.0.1", 0) as server:
            async with anyws.connect(
                f"ws://127.0.0.1:{server.port}/", user_agent_header=None
            ) as ws:
                seen = await seen_by_server(ws)
        assert "User-Agent" not in seen.headers

    async def test_user_agent_in_additional_headers_wins(self) -> None:
        async with anyws.serve(report, "127.0.0.1", 0) as server:
            async with anyws.connect(
                f"ws://127.0.0.1:{server.port}/",
                additional_headers={"User-Agent": "custom"},
            ) as ws:
                seen = await seen_by_server(ws)
        assert seen.headers.get_all("User-Agent") == ["custom"]

    async def test_non_ascii_host_is_idna_encoded(self) -> None:
        # The host name does not resolve, so the handshake runs over a stream to
        # the server; the Host header shows how the client encoded the name.
        async with anyws.serve(report, "127.0.0.1", 0) as server:
            async with await anyio.connect_tcp("127.0.0.1", server.port) as stream:
                async with anyws.connect(
                    "ws://bücher.invalid:8080/", stream=stream
                ) as ws:
                    seen = await seen_by_server(ws)
        assert seen.headers["Host"] == "xn--bcher-kva.invalid:8080"

    async def test_upgrade_headers(self) -> None:
        async with anyws.serve(report, "127.0.0.1", 0) as server:
            async with anyws.connect(f"ws://127.0.0.1:{server.port}/") as ws:
                seen = await seen_by_server(ws)
        # RFC 6455 section 4.1.
        assert seen.headers["Upgrade"] == "websocket"
        assert seen.headers["Connection"] == "Upgrade"
        assert seen.headers["Sec-WebSocket-Version"] == "13"
        assert len(base64.b64decode(seen.headers["Sec-WebSocket-Key"])) == 16


# --------------------------------------------------------------------------
# Negotiation and the response
# --------------------------------------------------------------------------


class TestNegotiation:
    async def test_subprotocol_follows_server_preference(self) -> None:
        async with anyws.serve(
            report, "127.0.0.1", 0, subprotocols=["b", "a"]
        ) as server:
            async with anyws.connect(
                f"ws://127.0.0.1:{server.port}/", subprotocols=["a", "b"]
            ) as ws:
                seen = await seen_by_server(ws)
                assert ws.subprotocol == "b"
                assert ws.response is not None
                assert ws.response.headers["Sec-WebSocket-Protocol"] == "b"
        assert seen.headers["Sec-WebSocket-Protocol"] == "a, b"
        assert seen.subprotocol == "b"

    async def test_no_subprotocol_when_server_has_none(self) -> None:
        async with anyws.serve(report, "127.0.0.1", 0) as server:
            async with anyws.connect(
                f"ws://127.0.0.1:{server.port}/", subprotocols=["chat"]
            ) as ws:
                seen = await seen_by_server(ws)
                assert ws.subprotocol is None
        assert seen.subprotocol is None

    async def test_no_shared_subprotocol_is_refused(self) -> None:
        async with anyws.serve(report, "127.0.0.1", 0, subprotocols=["x"]) as server:
            with pytest.raises(InvalidStatus) as info:
                async with anyws.connect(
                    f"ws://127.0.0.1:{server.port}/", subprotocols=["y"]
                ):
                    pytest.fail("the handshake should have been refused")
        assert info.value.response.status_code == 400

    async def test_default_compression_negotiates_deflate(self) -> None:
        async def echo(ws: anyws.ServerConnection) -> None:
            async for message in ws:
                await ws.send(message)

        async with anyws.serve(echo, "127.0.0.1", 0) as server:
            async with anyws.connect(f"ws://127.0.0.1:{server.port}/") as ws:
                assert ws.request is not None
                assert ws.request.headers["Sec-WebSocket-Extensions"].startswith(
                    "permessage-deflate"
                )
                assert ws.response is not None
                (extensions,) = ws.response.headers.get_all("Sec-WebSocket-Extensions")
                assert extensions.startswith("permessage-deflate")
                # Compressed messages go through both ways.
                text = "compress me " * 1000
                await ws.send(text)
                assert await ws.recv() == text
                await ws.send(text.encode())
                assert await ws.recv() == text.encode()

    async def test_compression_none_sends_no_extensions(self) -> None:
        async with anyws.serve(report, "127.0.0.1", 0) as server:
            async with anyws.connect(
                f"ws://127.0.0.1:{server.port}/", compression=None
            ) as ws:
                seen = await seen_by_server(ws)
                assert ws.response is not None
                assert "Sec-WebSocket-Extensions" not in ws.response.headers
        assert "Sec-WebSocket-Extensions" not in seen.headers

    async def test_server_without_compression(self) -> None:
        async with anyws.serve(report, "127.0.0.1", 0, compression=None) as server:
            async with anyws.connect(f"ws://127.0.0.1:{server.port}/") as ws:
                seen = await seen_by_server(ws)
                assert ws.response is not None
                assert "Sec-WebSocket-Extensions" not in ws.response.headers
        assert "Sec-WebSocket-Extensions" in seen.headers

    async def test_unsupported_compression_is_a_value_error(self) -> None:
        with pytest.raises(ValueError, match="compression"):
            async with anyws.connect(
                "ws://127.0.0.1:1/",
                compression="gzip",  # type: ignore[arg-type]
            ):
                pytest.fail("connect should have refused the option")

    async def test_response_holds_the_101(self) -> None:
        async with anyws.serve(report, "127.0.0.1", 0) as server:
            async with anyws.connect(f"ws://127.0.0.1:{server.port}/") as ws:
                await seen_by_server(ws)
                response = ws.response
                assert response is not None
                assert response.status_code == 101
                assert response.body == b""
                assert response.headers["Upgrade"].lower() == "websocket"
                assert response.headers["Connection"].lower() == "upgrade"
                assert ws.request is not None
                key = ws.request.headers["Sec-WebSocket-Key"]
                assert response.headers["Sec-WebSocket-Accept"] == (
                    anyws._handshake.accept_key(key)
                )
                assert ws.state is State.OPEN

    async def test_addresses(self) -> None:
        async with anyws.serve(report, "127.0.0.1", 0) as server:
            async with anyws.connect(f"ws://127.0.0.1:{server.port}/") as ws:
                await seen_by_server(ws)
                assert ws.remote_address[:2] == ("127.0.0.1", server.port)
                assert ws.local_address[0] == "127.0.0.1"


# --------------------------------------------------------------------------
# IPv6
# --------------------------------------------------------------------------


@needs_ipv6
class TestIPv6:
    async def test_ipv6_literal(self) -> None:
        async with anyws.serve(report, "::1", 0) as server:
            port = server.port
            async with anyws.connect(f"ws://[::1]:{port}/v6?x=1") as ws:
                seen = await seen_by_server(ws)
                assert ws.remote_address[:2] == ("::1", port)
        assert seen.path == "/v6?x=1"
        assert seen.headers["Host"] == f"[::1]:{port}"

    async def test_ipv6_literal_over_tls(
        self,
        server_ssl_context: ssl.SSLContext,
        client_ssl_context: ssl.SSLContext,
    ) -> None:
        # The test certificate lists ::1 as an IP address.
        async with anyws.serve(report, "::1", 0, ssl=server_ssl_context) as server:
            port = server.port
            async with anyws.connect(
                f"wss://[::1]:{port}/", ssl=client_ssl_context
            ) as ws:
                seen = await seen_by_server(ws)
        assert seen.headers["Host"] == f"[::1]:{port}"


# --------------------------------------------------------------------------
# Refused handshakes
# --------------------------------------------------------------------------


class TestInvalidStatus:
    async def test_process_request_refusal(self) -> None:
        def refuse(
            connection: anyws.ServerConnection, request: anyws.Request
        ) -> anyws.Response:
            return connection.respond(403, "nope", {"X-Why": "test"})

        async with anyws.serve(
            report, "127.0.0.1", 0, process_request=refuse
        ) as server:
            with pytest.raises(InvalidStatus) as info:
                async with anyws.connect(f"ws://127.0.0.1:{server.port}/"):
                    pytest.fail("the handshake should have been refused")
        response = info.value.response
        assert response.status_code == 403
        assert response.body == b"nope"
        assert response.headers["X-Why"] == "test"
        assert response.headers["Content-Length"] == "4"
        assert "403" in str(info.value)

    async def test_chunked_body(self) -> None:
        canned_response = (
            b"HTTP/1.1 500 Internal Server Error\r\n"
            b"Transfer-Encoding: chunked\r\nContent-Type: text/plain\r\n\r\n"
            b"5\r\nhello\r\n6;ext=1\r\n world\r\n0\r\n\r\n"
        )
        async with raw_server(canned(canned_response)) as port:
            with pytest.raises(InvalidStatus) as info:
                async with anyws.connect(f"ws://127.0.0.1:{port}/"):
                    pytest.fail("the handshake should have been refused")
        response = info.value.response
        assert response.status_code == 500
        assert response.reason_phrase == "Internal Server Error"
        assert response.body == b"hello world"
        assert response.headers["Content-Type"] == "text/plain"

    async def test_body_until_eof(self) -> None:
        canned_response = (
            b"HTTP/1.1 404 Not Found\r\nContent-Type: text/plain\r\n\r\n"
            b"not here\nreally not"
        )
        async with raw_server(canned(canned_response)) as port:
            with pytest.raises(InvalidStatus) as info:
                async with anyws.connect(f"ws://127.0.0.1:{port}/"):
                    pytest.fail("the handshake should have been refused")
        response = info.value.response
        assert response.status_code == 404
        assert response.body == b"not here\nreally not"

    async def test_content_length_body(self) -> None:
        canned_response = (
            b"HTTP/1.1 401 Unauthorized\r\nWWW-Authenticate: Basic\r\n"
            b"Content-Length: 6\r\n\r\ndenied"
        )
        async with raw_server(canned(canned_response)) as port:
            with pytest.raises(InvalidStatus) as info:
                async with anyws.connect(f"ws://127.0.0.1:{port}/"):
                    pytest.fail("the handshake should have been refused")
        response = info.value.response
        assert response.status_code == 401
        assert response.headers["WWW-Authenticate"] == "Basic"
        assert response.body == b"denied"

    async def test_200_is_refused(self) -> None:
        canned_response = b"HTTP/1.1 200 OK\r\nContent-Length: 2\r\n\r\nok"
        async with raw_server(canned(canned_response)) as port:
            with pytest.raises(InvalidStatus) as info:
                async with anyws.connect(f"ws://127.0.0.1:{port}/"):
                    pytest.fail("the handshake should have been refused")
        assert info.value.response.status_code == 200
        assert info.value.response.body == b"ok"

    async def test_redirect_without_location_is_not_followed(self) -> None:
        canned_response = b"HTTP/1.1 302 Found\r\nContent-Length: 0\r\n\r\n"
        async with raw_server(canned(canned_response)) as port:
            with pytest.raises(InvalidStatus) as info:
                async with anyws.connect(f"ws://127.0.0.1:{port}/"):
                    pytest.fail("the handshake should have been refused")
        assert info.value.response.status_code == 302


# --------------------------------------------------------------------------
# Redirects
# --------------------------------------------------------------------------

REDIRECT_STATUSES = [301, 302, 303, 307, 308]


class TestRedirects:
    @pytest.mark.parametrize("status", REDIRECT_STATUSES)
    @pytest.mark.parametrize("form", ["absolute", "network-path"])
    async def test_redirect_to_another_server(self, status: int, form: str) -> None:
        async with anyws.serve(report, "127.0.0.1", 0) as server:
            authority = f"127.0.0.1:{server.port}"
            location = {
                "absolute": f"ws://{authority}/final?x=1",
                "network-path": f"//{authority}/final?x=1",
            }[form]
            async with raw_server(canned(redirect(status, location))) as port:
                async with anyws.connect(f"ws://127.0.0.1:{port}/start") as ws:
                    seen = await seen_by_server(ws)
                    assert ws.remote_address[1] == server.port
        assert seen.path == "/final?x=1"
        assert seen.headers["Host"] == authority

    @pytest.mark.parametrize("status", REDIRECT_STATUSES)
    @pytest.mark.parametrize(
        ("location", "final"),
        [("/other/final?x=1", "/other/final?x=1"), ("final", "/dir/final")],
    )
    async def test_relative_redirect(
        self, status: int, location: str, final: str
    ) -> None:
        # The Location is resolved against the URI of the request (RFC 9110
        # section 10.2.2), so the client comes back to the same raw server, which
        # then completes the handshake by hand and tells the client the target.
        async def handle(stream: ByteStream) -> None:
            peer = RawPeer(stream, is_client=False)
            head = await peer.read_until(b"\r\n\r\n")
            target = request_target(head)
            if target == "/dir/start":
                await stream.send(redirect(status, location))
                return
            peer.buffer = head + peer.buffer
            await peer.server_handshake()
            await peer.send_frame(OP_TEXT, target.encode())
            close = await peer.read_frame()
            assert close.opcode == OP_CLOSE
            await peer.send_frame(OP_CLOSE, close.payload)

        async with raw_server(handle) as port:
            async with anyws.connect(
                f"ws://127.0.0.1:{port}/dir/start", compression=None
            ) as ws:
                assert await ws.recv() == final
                assert ws.request is not None
                assert ws.request.path == final

    async def test_redirect_chain(self) -> None:
        async with anyws.serve(report, "127.0.0.1", 0) as server:
            last = f"ws://127.0.0.1:{server.port}/end"
            async with raw_server(canned(redirect(307, last))) as second:
                first = f"ws://127.0.0.1:{second}/second"
                async with raw_server(canned(redirect(301, first))) as port:
                    async with anyws.connect(f"ws://127.0.0.1:{port}/") as ws:
                        seen = await seen_by_server(ws)
        assert seen.path == "/end"

    async def test_too_many_redirects(self) -> None:
        requests: list[str] = []

        async def loop(stream: ByteStream) -> None:
            requests.append(request_target(await read_head(stream)))
            await stream.send(redirect(302, f"/loop{len(requests)}"))

        async with raw_server(loop) as port:
            with pytest.raises(SecurityError, match="redirect"):
                async with anyws.connect(f"ws://127.0.0.1:{port}/"):
                    pytest.fail("the redirect loop should have been cut")
        # The first request and ten redirects followed; the eleventh refused.
        assert len(requests) == 11
        assert requests[:3] == ["/", "/loop1", "/loop2"]

    async def test_ten_redirects_are_followed(self) -> None:
        requests: list[str] = []

        async def chain(stream: ByteStream) -> None:
            requests.append(request_target(await read_head(stream)))
            await stream.send(redirect(302, final if len(requests) == 10 else "/next"))

        async with anyws.serve(report, "127.0.0.1", 0) as server:
            final = f"ws://127.0.0.1:{server.port}/final"
            async with raw_server(chain) as port:
                async with anyws.connect(f"ws://127.0.0.1:{port}/") as ws:
                    seen = await seen_by_server(ws)
        assert len(requests) == 10
        assert seen.path == "/final"

    async def test_wss_to_ws_is_refused(
        self,
        server_ssl_context: ssl.SSLContext,
        client_ssl_context: ssl.SSLContext,
    ) -> None:
        reached: list[str] = []

        def record(connection: anyws.ServerConnection, request: anyws.Request) -> None:
            reached.append(request.path)

        async with anyws.serve(
            report, "127.0.0.1", 0, process_request=record
        ) as server:
            location = f"ws://127.0.0.1:{server.port}/plain"
            async with raw_server(
                canned(redirect(302, location)), ssl_context=server_ssl_context
            ) as port:
                with pytest.raises(SecurityError, match="wss"):
                    async with anyws.connect(
                        f"wss://localhost:{port}/", ssl=client_ssl_context
                    ):
                        pytest.fail("the downgrade should have been refused")
        assert reached == []

    async def test_wss_to_wss_keeps_the_ssl_context(
        self,
        server_ssl_context: ssl.SSLContext,
        client_ssl_context: ssl.SSLContext,
    ) -> None:
        async with anyws.serve(
            report, "127.0.0.1", 0, ssl=server_ssl_context
        ) as server:
            location = f"wss://localhost:{server.port}/secure"
            async with raw_server(
                canned(redirect(308, location)), ssl_context=server_ssl_context
            ) as port:
                async with anyws.connect(
                    f"wss://localhost:{port}/", ssl=client_ssl_context
                ) as ws:
                    seen = await seen_by_server(ws)
        assert seen.path == "/secure"

    async def test_ws_to_wss_is_followed(
        self,
        ca: trustme.CA,
        server_ssl_context: ssl.SSLContext,
        tmp_path: Path,
        monkeypatch: pytest.MonkeyPatch,
    ) -> None:
        # A ws:// URI takes no ssl= argument, so the wss:// leg uses the default
        # verifying context; make that context trust the test CA through OpenSSL's
        # SSL_CERT_FILE, read each time a default context is created.
        ca_file = tmp_path / "ca.pem"
        ca.cert_pem.write_to_path(str(ca_file))
        monkeypatch.setenv("SSL_CERT_FILE", str(ca_file))
        async with anyws.serve(
            report, "127.0.0.1", 0, ssl=server_ssl_context
        ) as server:
            authority = f"localhost:{server.port}"
            location = f"wss://{authority}/secure"
            async with raw_server(canned(redirect(301, location))) as port:
                async with anyws.connect(f"ws://127.0.0.1:{port}/") as ws:
                    seen = await seen_by_server(ws)
                    assert ws.remote_address[1] == server.port
        assert seen.path == "/secure"
        assert seen.headers["Host"] == authority

    async def test_redirect_to_another_scheme_is_refused(self) -> None:
        location = "http://127.0.0.1/"
        async with raw_server(canned(redirect(302, location))) as port:
            with pytest.raises(anyws.InvalidURI):
                async with anyws.connect(f"ws://127.0.0.1:{port}/"):
                    pytest.fail("the redirect should have been refused")


# --------------------------------------------------------------------------
# Opening timeout and connection errors
# --------------------------------------------------------------------------


class TestOpenErrors:
    @pytest.mark.parametrize("scheme", ["ws", "wss"])
    async def test_open_timeout(
        self, scheme: str, client_ssl_context: ssl.SSLContext
    ) -> None:
        # The raw server accepts TCP, then neither answers the TLS nor the
        # WebSocket handshake; it only notices when the client closes TCP.
        client_gone = anyio.Event()

        async def silent(stream: ByteStream) -> None:
            try:
                while True:
                    await stream.receive()
            except _GONE:
                client_gone.set()

        ssl_option = client_ssl_context if scheme == "wss" else None
        async with raw_server(silent) as port:
            with anyio.fail_after(5):
                with pytest.raises(TimeoutError):
                    async with anyws.connect(
                        f"{scheme}://localhost:{port}/",
                        open_timeout=0.2,
                        ssl=ssl_option,
                    ):
                        pytest.fail("the handshake should have timed out")
                # The client closed its socket when it gave up.
                await client_gone.wait()

    async def test_connection_refused(self) -> None:
        port = free_port()
        with pytest.raises(OSError) as info:
            async with anyws.connect(f"ws://127.0.0.1:{port}/", open_timeout=5):
                pytest.fail("nothing listens on that port")
        assert not isinstance(info.value, TimeoutError)

    async def test_invalid_uri(self) -> None:
        with pytest.raises(anyws.InvalidURI, match="scheme"):
            async with anyws.connect("http://127.0.0.1/"):
                pytest.fail("the URI should have been refused")

    async def test_peer_closes_mid_handshake(self) -> None:
        async def hang_up(stream: ByteStream) -> None:
            await read_head(stream)
            await stream.send(b"HTTP/1.1 101 Switching Protocols\r\nUpgrade: web")

        async with raw_server(hang_up) as port:
            with pytest.raises(anyws.InvalidMessage):
                async with anyws.connect(f"ws://127.0.0.1:{port}/"):
                    pytest.fail("the handshake should have failed")

    async def test_peer_resets_mid_handshake(self) -> None:
        # connect() promises InvalidHandshake or OSError when the handshake fails;
        # a reset is the peer closing mid-handshake, only less politely.
        async def reset(stream: ByteStream) -> None:
            await read_head(stream)
            raw = stream.extra(SocketAttribute.raw_socket)
            # SO_LINGER with a zero timeout: closing sends RST instead of FIN.
            raw.setsockopt(socket.SOL_SOCKET, socket.SO_LINGER, struct.pack("ii", 1, 0))

        async with raw_server(reset) as port:
            with pytest.raises((anyws.InvalidHandshake, OSError)) as info:
                async with anyws.connect(f"ws://127.0.0.1:{port}/", open_timeout=5):
                    pytest.fail("the handshake should have failed")
        assert not isinstance(info.value, TimeoutError)

    async def test_bad_accept_from_server(self) -> None:
        async def wrong_key(stream: ByteStream) -> None:
            await read_head(stream)
            await stream.send(
                b"HTTP/1.1 101 Switching Protocols\r\nUpgrade: websocket\r\n"
                b"Connection: Upgrade\r\n"
                b"Sec-WebSocket-Accept: s3pPLMBiTxaQ9kYGzzhZRbK+xOo=\r\n\r\n"
            )

        async with raw_server(wrong_key) as port:
            with pytest.raises(anyws.InvalidHeaderValue, match="Accept"):
                async with anyws.connect(f"ws://127.0.0.1:{port}/"):
                    pytest.fail("the handshake should have failed")


# --------------------------------------------------------------------------
# TLS
# --------------------------------------------------------------------------


async def echo(ws: anyws.ServerConnection) -> None:
    async for message in ws:
        await ws.send(message)


class TestTLS:
    @pytest.mark.parametrize("host", ["localhost", "127.0.0.1"])
    async def test_wss(
        self,
        host: str,
        server_ssl_context: ssl.SSLContext,
        client_ssl_context: ssl.SSLContext,
    ) -> None:
        async with anyws.serve(echo, "127.0.0.1", 0, ssl=server_ssl_context) as server:
            async with anyws.connect(
                f"wss://{host}:{server.port}/", ssl=client_ssl_context
            ) as ws:
                await ws.send("hello")
                assert await ws.recv() == "hello"
                await ws.send(b"\x00\xff")
                assert await ws.recv() == b"\x00\xff"

    async def test_server_hostname(
        self,
        server_ssl_context: ssl.SSLContext,
        client_ssl_context: ssl.SSLContext,
    ) -> None:
        # Connect by address, verify the certificate for a name it holds.
        async with anyws.serve(echo, "127.0.0.1", 0, ssl=server_ssl_context) as server:
            async with anyws.connect(
                f"wss://127.0.0.1:{server.port}/",
                ssl=client_ssl_context,
                server_hostname="localhost",
            ) as ws:
                await ws.send("hello")
                assert await ws.recv() == "hello"

    async def test_default_context_refuses_untrusted_certificate(
        self, server_ssl_context: ssl.SSLContext
    ) -> None:
        # Without ssl=, wss:// uses a default verifying context, which does not
        # trust the test CA.
        async with anyws.serve(echo, "127.0.0.1", 0, ssl=server_ssl_context) as server:
            with pytest.raises(ssl.SSLCertVerificationError):
                async with anyws.connect(f"wss://localhost:{server.port}/"):
                    pytest.fail("the certificate should have been refused")

    async def test_certificate_from_another_ca_is_refused(
        self, server_ssl_context: ssl.SSLContext
    ) -> None:
        other = ssl.create_default_context(ssl.Purpose.SERVER_AUTH)
        trustme.CA().configure_trust(other)
        async with anyws.serve(echo, "127.0.0.1", 0, ssl=server_ssl_context) as server:
            with pytest.raises(ssl.SSLCertVerificationError) as info:
                async with anyws.connect(f"wss://localhost:{server.port}/", ssl=other):
                    pytest.fail("the certificate should have been refused")
        assert "certificate" in str(info.value)

    async def test_wrong_server_hostname_is_refused(
        self,
        server_ssl_context: ssl.SSLContext,
        client_ssl_context: ssl.SSLContext,
    ) -> None:
        async with anyws.serve(echo, "127.0.0.1", 0, ssl=server_ssl_context) as server:
            with pytest.raises(ssl.SSLCertVerificationError) as info:
                async with anyws.connect(
                    f"wss://localhost:{server.port}/",
                    ssl=client_ssl_context,
                    server_hostname="wrong.example",
                ):
                    pytest.fail("the host name should not have matched")
        assert "wrong.example" in str(info.value)

    async def test_server_survives_a_refused_certificate(
        self,
        server_ssl_context: ssl.SSLContext,
        client_ssl_context: ssl.SSLContext,
    ) -> None:
        async with anyws.serve(echo, "127.0.0.1", 0, ssl=server_ssl_context) as server:
            with pytest.raises(ssl.SSLCertVerificationError):
                async with anyws.connect(f"wss://localhost:{server.port}/"):
                    pytest.fail("the certificate should have been refused")
            async with anyws.connect(
                f"wss://localhost:{server.port}/", ssl=client_ssl_context
            ) as ws:
                await ws.send("still here")
                assert await ws.recv() == "still here"

    async def test_ssl_with_ws_uri_is_a_value_error(
        self, client_ssl_context: ssl.SSLContext
    ) -> None:
        with pytest.raises(ValueError, match="ws://"):
            async with anyws.connect("ws://127.0.0.1:1/", ssl=client_ssl_context):
                pytest.fail("ssl= should have been refused")

    async def test_plain_client_against_tls_server(
        self, server_ssl_context: ssl.SSLContext
    ) -> None:
        # The TLS server reads the HTTP request as a broken TLS record and drops
        # the connection; the client sees the handshake cut short.
        async with anyws.serve(echo, "127.0.0.1", 0, ssl=server_ssl_context) as server:
            with pytest.raises((anyws.InvalidMessage, OSError)) as info:
                async with anyws.connect(
                    f"ws://127.0.0.1:{server.port}/", open_timeout=5
                ):
                    pytest.fail("the handshake should have failed")
        assert not isinstance(info.value, TimeoutError)


# --------------------------------------------------------------------------
# Handshakes over a given stream
# --------------------------------------------------------------------------


class TestGivenStream:
    async def test_memory_stream_pair(self) -> None:
        client_end, server_end = memory_stream_pair()
        received: list[str | bytes] = []
        paths: list[str] = []

        async def server_side() -> None:
            async with anyws.accept(server_end) as ws:
                assert ws.request is not None
                paths.append(ws.request.path)
                async for message in ws:
                    received.append(message)
                    await ws.send(message)

        with anyio.fail_after(5):
            async with anyio.create_task_group() as task_group:
                task_group.start_soon(server_side)
                async with anyws.connect(
                    "ws://example.invalid/chat?room=1", stream=client_end
                ) as ws:
                    assert ws.response is not None
                    assert ws.response.status_code == 101
                    await ws.send("text")
                    assert await ws.recv() == "text"
                    await ws.send(b"\x01\x02")
                    assert await ws.recv() == b"\x01\x02"
                    await ws.send(["frag", "mented"])
                    assert await ws.recv() == "fragmented"
                assert ws.state is State.CLOSED
                assert ws.close_code == 1000
        assert paths == ["/chat?room=1"]
        assert received == ["text", b"\x01\x02", "fragmented"]

    async def test_memory_stream_pair_server_closes(self) -> None:
        client_end, server_end = memory_stream_pair()

        async def server_side() -> None:
            async with anyws.accept(server_end) as ws:
                await ws.send(await ws.recv())
                await ws.close(1001, "bye")

        with anyio.fail_after(5):
            async with anyio.create_task_group() as task_group:
                task_group.start_soon(server_side)
                async with anyws.connect(
                    "ws://example.invalid/", stream=client_end, compression=None
                ) as ws:
                    await ws.send("ping")
                    assert await ws.recv() == "ping"
                    with pytest.raises(anyws.ConnectionClosedOK) as info:
                        await ws.recv()
        assert info.value.code == 1001
        assert info.value.reason == "bye"

    async def test_given_stream_is_not_redirected(self) -> None:
        client_end, server_end = memory_stream_pair()

        async def server_side() -> None:
            await read_head(server_end)
            await server_end.send(redirect(302, "ws://example.invalid/elsewhere"))
            await server_end.aclose()

        with anyio.fail_after(5):
            async with anyio.create_task_group() as task_group:
                task_group.start_soon(server_side)
                with pytest.raises(InvalidStatus) as info:
                    async with anyws.connect(
                        "ws://example.invalid/", stream=client_end
                    ):
                        pytest.fail("the handshake should have been refused")
        assert info.value.response.status_code == 302

    async def test_tcp_stream(self) -> None:
        async with anyws.serve(report, "127.0.0.1", 0) as server:
            stream = await anyio.connect_tcp("127.0.0.1", server.port)
            async with stream:
                async with anyws.connect(
                    "ws://tunnel.invalid/over-tcp?x=1", stream=stream
                ) as ws:
                    seen = await seen_by_server(ws)
                    assert ws.remote_address[1] == server.port
        # The URI names the request target and Host, not where the stream goes.
        assert seen.path == "/over-tcp?x=1"
        assert seen.headers["Host"] == "tunnel.invalid"

    async def test_tls_stream(
        self,
        server_ssl_context: ssl.SSLContext,
        client_ssl_context: ssl.SSLContext,
    ) -> None:
        async with anyws.serve(echo, "127.0.0.1", 0, ssl=server_ssl_context) as server:
            tcp = await anyio.connect_tcp("127.0.0.1", server.port)
            stream = await TLSStream.wrap(
                tcp,
                hostname="localhost",
                ssl_context=client_ssl_context,
                standard_compatible=False,
            )
            async with stream:
                async with anyws.connect("wss://localhost/", stream=stream) as ws:
                    await ws.send("secure")
                    assert await ws.recv() == "secure"


# --------------------------------------------------------------------------
# The async with block
# --------------------------------------------------------------------------


class TestContextManager:
    async def test_exception_from_the_body_propagates_as_itself(self) -> None:
        async with anyws.serve(echo, "127.0.0.1", 0) as server:
            with pytest.raises(ValueError, match="from the body") as info:
                async with anyws.connect(f"ws://127.0.0.1:{server.port}/") as ws:
                    raise ValueError("from the body")
        assert type(info.value) is ValueError
        # The connection was closed on the way out.
        assert ws.state is State.CLOSED

    async def test_connection_closed_from_the_body_propagates_as_itself(
        self,
    ) -> None:
        async def refuse(ws: anyws.ServerConnection) -> None:
            await ws.close(1008, "policy")

        async with anyws.serve(refuse, "127.0.0.1", 0) as server:
            with pytest.raises(anyws.ConnectionClosedError) as info:
                async with anyws.connect(f"ws://127.0.0.1:{server.port}/") as ws:
                    await ws.recv()
        assert info.value.code == 1008
        assert info.value.reason == "policy"

    async def test_leaving_the_block_closes_with_1000(self) -> None:
        codes: list[int | None] = []
        handler_done = anyio.Event()

        async def wait_for_close(ws: anyws.ServerConnection) -> None:
            await ws.wait_closed()
            codes.append(ws.close_code)
            handler_done.set()

        async with anyws.serve(wait_for_close, "127.0.0.1", 0) as server:
            async with anyws.connect(f"ws://127.0.0.1:{server.port}/") as ws:
                pass
            assert ws.state is State.CLOSED
            # The server's handler sees the close once the client is done.
            with anyio.fail_after(5):
                await handler_done.wait()
        assert codes == [1000]

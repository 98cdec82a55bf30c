"""``anyws.compat.websockets``: the client, its three forms, its options, connections.

Discipline: a shim server (or, where a test needs a misbehaving peer, a raw TCP
listener) runs on 127.0.0.1 and a free port; the client under test talks to it. Each
test orders its steps by waiting for what the other side does, with ``fail_after``
only as a safety net. Tests of the asyncio-only forms run on asyncio and check the
error trio gets instead.
"""

from __future__ import annotations

import base64
import contextlib
import dataclasses
import itertools
import logging
import os
import random
import socket
import ssl
import tempfile
import uuid
from typing import TYPE_CHECKING, Any

import anyio
import pytest
import websockets.client
import websockets.exceptions
import websockets.proxy
import websockets.uri

import anyws
import anyws.compat.websockets as websockets_shim
from anyws.compat.websockets import (
    ConcurrencyError,
    ConnectionClosed,
    ConnectionClosedError,
    ConnectionClosedOK,
    InvalidProxy,
    InvalidProxyMessage,
    InvalidProxyStatus,
    InvalidStatus,
    State,
    connect,
    serve,
    unix_connect,
    unix_serve,
)
from anyws.compat.websockets.asyncio.client import backoff, process_exception
from anyws.compat.websockets.proxy import get_proxy, parse_proxy

from ..helpers import OP_PING, RawPeer
from .websockets_helpers import connect_proxy

if TYPE_CHECKING:
    from collections.abc import AsyncIterator, Generator

    import trustme
    from anyio.abc import SocketStream

    from anyws.compat.websockets import ServerConnection


def no_delay() -> Generator[float]:
    while True:
        yield 0.0


class Recorder:
    """A shim server's handler that echoes and remembers what it saw."""

    def __init__(self) -> None:
        self.requests: list[Any] = []
        self.close_codes: list[int | None] = []
        self.closed = anyio.Event()

    async def handler(self, websocket: ServerConnection) -> None:
        self.requests.append(websocket.request)
        try:
            async for message in websocket:
                await websocket.send(message)
        finally:
            await websocket.wait_closed()
            self.close_codes.append(websocket.close_code)
            self.closed.set()


@contextlib.asynccontextmanager
async def recording_server(**options: Any) -> AsyncIterator[tuple[Recorder, int]]:
    recorder = Recorder()
    async with serve(recorder.handler, "127.0.0.1", 0, **options) as server:
        yield recorder, server.sockets[0].getsockname()[1]


async def accept(listener: Any) -> SocketStream:
    """Accept one connection on a listener of ``anyio.create_tcp_listener()``."""
    stream: SocketStream = await listener.listeners[0].accept()
    return stream


def free_port() -> int:
    with socket.socket() as sock:
        sock.bind(("127.0.0.1", 0))
        port: int = sock.getsockname()[1]
    return port


class TestForms:
    async def test_await_connect(self, anyio_backend_name: str) -> None:
        async with recording_server() as (recorder, port):
            if anyio_backend_name != "asyncio":
                with pytest.raises(RuntimeError, match="async with connect"):
                    await connect(f"ws://127.0.0.1:{port}")
                assert recorder.requests == []
                return
            websocket = await connect(f"ws://127.0.0.1:{port}")
            await websocket.send("hello")
            assert await websocket.recv() == "hello"
            await websocket.close()
            await recorder.closed.wait()
        assert recorder.close_codes == [1000]

    async def test_await_connect_then_the_server_closes(
        self, anyio_backend_name: str
    ) -> None:
        if anyio_backend_name != "asyncio":
            pytest.skip("ws = await connect(...) needs asyncio")

        async def bye(websocket: ServerConnection) -> None:
            await websocket.close(1001, "bye")

        async with serve(bye, "127.0.0.1", 0) as server:
            port = server.sockets[0].getsockname()[1]
            websocket = await connect(f"ws://127.0.0.1:{port}")
            await websocket.wait_closed()
        assert (websocket.close_code, websocket.close_reason) == (1001, "bye")

    async def test_await_connect_failure_raises(self, anyio_backend_name: str) -> None:
        if anyio_backend_name != "asyncio":
            pytest.skip("ws = await connect(...) needs asyncio")
        with pytest.raises(OSError):
            await connect(f"ws://127.0.0.1:{free_port()}")

    async def test_block_that_raises_closes_with_1011(self) -> None:
        async with recording_server() as (recorder, port):
            with pytest.raises(ZeroDivisionError):
                async with connect(f"ws://127.0.0.1:{port}"):
                    1 / 0  # noqa: B018
            await recorder.closed.wait()
        assert recorder.close_codes == [1011]

    async def test_connect_is_not_reentrant(self) -> None:
        async with recording_server() as (_, port):
            client = connect(f"ws://127.0.0.1:{port}")
            async with client:
                with pytest.raises(RuntimeError, match="reentrant"):
                    await client.__aenter__()

    async def test_leaving_async_for_with_aclosing_closes(self) -> None:
        async with recording_server() as (recorder, port):
            iterator = connect(f"ws://127.0.0.1:{port}").__aiter__()
            async with contextlib.aclosing(iterator):
                async for websocket in iterator:
                    await websocket.send("once")
                    assert await websocket.recv() == "once"
                    break
            await recorder.closed.wait()
        assert recorder.close_codes == [1000]

    async def test_break_out_of_async_for_on_asyncio(
        self, anyio_backend_name: str
    ) -> None:
        if anyio_backend_name != "asyncio":
            pytest.skip("trio finalizes abandoned async generators differently")
        async with recording_server() as (recorder, port):
            async for websocket in connect(f"ws://127.0.0.1:{port}"):
                assert websocket.state is State.OPEN
                break
            # The abandoned generator is finalized by asyncio, which closes.
            with anyio.fail_after(10):
                await recorder.closed.wait()
        assert recorder.close_codes == [1000]


class TestReconnection:
    async def test_retries_a_refused_connection(self) -> None:
        seen: list[Exception] = []

        def give_up_on_second(exc: Exception) -> Exception | None:
            seen.append(exc)
            return exc if len(seen) == 2 else None

        with pytest.raises(OSError):
            async for _ in connect(
                f"ws://127.0.0.1:{free_port()}",
                process_exception=give_up_on_second,
                reconnect_delays=no_delay,
            ):
                pytest.fail("connected to a closed port")  # pragma: no cover
        assert len(seen) == 2
        assert all(isinstance(exc, OSError) for exc in seen)

    @pytest.mark.parametrize("style", ["return", "raise"])
    async def test_process_exception_may_replace_the_error(self, style: str) -> None:
        def replace(exc: Exception) -> Exception | None:
            if style == "raise":
                raise LookupError("replaced")
            return LookupError("replaced")

        def refuse(connection: Any, request: Any) -> Any:
            return connection.respond(503, "later\n")

        async with serve(
            Recorder().handler, "127.0.0.1", 0, process_request=refuse
        ) as s:
            uri = f"ws://127.0.0.1:{s.sockets[0].getsockname()[1]}"
            with pytest.raises(LookupError, match="replaced") as raised:
                async for _ in connect(uri, process_exception=replace):
                    pytest.fail("the handshake was refused")  # pragma: no cover
        if style == "return":
            assert isinstance(raised.value.__cause__, InvalidStatus)

    async def test_a_handshake_cut_short_is_retried(self) -> None:
        async with await anyio.create_tcp_listener(local_host="127.0.0.1") as listener:
            port = listener.extra(anyio.abc.SocketAttribute.local_port)
            async with anyio.create_task_group() as task_group:

                async def hang_up() -> None:
                    peer = RawPeer(await accept(listener), is_client=False)
                    await peer.read_until(b"\r\n\r\n")
                    await peer.aclose()

                task_group.start_soon(hang_up)
                with pytest.raises(websockets_shim.InvalidMessage) as cut_short:
                    async with connect(f"ws://127.0.0.1:{port}"):
                        pass  # pragma: no cover
        assert process_exception(cut_short.value) is None

    def test_default_process_exception(self) -> None:
        process = process_exception
        response = websockets_shim.Response(503, "", websockets_shim.Headers())
        assert process(OSError()) is None
        assert process(TimeoutError()) is None
        assert process(InvalidStatus(response)) is None
        refused = InvalidStatus(websockets_shim.Response(403, "", response.headers))
        assert process(refused) is refused
        assert process(ValueError()) is not None

    def test_backoff_is_websockets_backoff(self) -> None:
        random.seed(6455)
        ours = list(itertools.islice(backoff(), 12))
        random.seed(6455)
        theirs = list(itertools.islice(websockets.client.backoff(), 12))
        assert ours == theirs


class TestOptions:
    async def test_request_options(self) -> None:
        async with recording_server(subprotocols=["chat"]) as (recorder, port):
            async with connect(
                f"ws://127.0.0.1:{port}/room",
                origin="https://app.test",  # type: ignore[arg-type]
                subprotocols=["chat"],  # type: ignore[list-item]
                extra_headers={"X-Legacy": "1"},
                user_agent_header="porting/1.0",
                compression=None,
                max_size=(2**16, None),
                max_queue=(4, 1),
            ) as websocket:
                assert websocket.subprotocol == "chat"
                assert websocket.connection.max_size == 2**16
                assert websocket.connection.max_queue == 4
        headers = recorder.requests[0].headers
        assert headers["Origin"] == "https://app.test"
        assert headers["X-Legacy"] == "1"
        assert headers["User-Agent"] == "porting/1.0"
        assert "Sec-WebSocket-Extensions" not in headers

    @pytest.mark.parametrize(
        ("options", "error", "match"),
        [
            ({"family": socket.AF_INET}, TypeError, "family"),
            ({"extensions": []}, NotImplementedError, "compression"),
            ({"compression": "zstd"}, ValueError, "zstd"),
            ({"max_size": (2**20, 1024)}, NotImplementedError, "fragment"),
            ({"ssl": True}, ValueError, "ws://"),
            ({"local_addr": ("127.0.0.1", 5000)}, NotImplementedError, "port 0"),
            ({"proxy": "ftp://proxy.test"}, InvalidProxy, "scheme"),
            (
                {"extra_headers": {}, "additional_headers": {}},
                TypeError,
                "not both",
            ),
        ],
        ids=lambda value: value if isinstance(value, str) else None,
    )
    def test_options_that_cannot_be_honoured(
        self, options: dict[str, Any], error: type[Exception], match: str
    ) -> None:
        with pytest.raises(error, match=match):
            connect("ws://127.0.0.1:1/", **options)

    def test_wss_needs_ssl(self) -> None:
        with pytest.raises(ValueError, match="ssl=None"):
            connect("wss://127.0.0.1:1/", ssl=None)

    async def test_logger(self) -> None:
        mine = logging.getLogger("porting.test")
        async with recording_server() as (_, port):
            async with connect(f"ws://127.0.0.1:{port}") as websocket:
                assert websocket.logger.name == "websockets.client"
            async with connect(f"ws://127.0.0.1:{port}", logger=mine) as websocket:
                assert websocket.logger is mine

    async def test_server_hostname(
        self, ca: trustme.CA, client_ssl_context: ssl.SSLContext
    ) -> None:
        server_context = ssl.create_default_context(ssl.Purpose.CLIENT_AUTH)
        ca.issue_cert("service.test").configure_cert(server_context)
        async with recording_server(ssl=server_context) as (_, port):
            uri = f"wss://127.0.0.1:{port}"
            with pytest.raises(ssl.SSLCertVerificationError):
                async with connect(uri, ssl=client_ssl_context):
                    pass  # pragma: no cover
            async with connect(
                uri, ssl=client_ssl_context, server_hostname="service.test"
            ) as websocket:
                await websocket.send("verified")
                assert await websocket.recv() == "verified"

    async def test_host_and_port_change_the_destination_only(self) -> None:
        async with recording_server() as (recorder, port):
            async with connect(
                "ws://chat.test/room", host="127.0.0.1", port=port
            ) as websocket:
                await websocket.send("hi")
                assert await websocket.recv() == "hi"
        assert recorder.requests[0].headers["Host"] == "chat.test"

    async def test_sock(
        self, server_ssl_context: ssl.SSLContext, client_ssl_context: ssl.SSLContext
    ) -> None:
        async with recording_server(ssl=server_ssl_context) as (recorder, port):
            sock = socket.create_connection(("127.0.0.1", port))
            async with connect(
                f"wss://localhost:{port}", sock=sock, ssl=client_ssl_context
            ) as websocket:
                await websocket.send("over my socket")
                assert await websocket.recv() == "over my socket"
            await recorder.closed.wait()
        assert sock.fileno() == -1  # the connection owned it and closed it

    async def test_unix_connect(self) -> None:
        with tempfile.TemporaryDirectory(prefix="ws") as directory:
            path = f"{directory}/ws.sock"
            async with await anyio.create_unix_listener(path) as listener:
                async with anyio.create_task_group() as task_group:

                    async def echo_once() -> None:
                        async with anyws.accept(await listener.accept()) as server:
                            assert server.request is not None
                            await server.send(server.request.headers["Host"])

                    task_group.start_soon(echo_once)
                    async with unix_connect(path) as websocket:
                        assert await websocket.recv() == "localhost"
                    task_group.start_soon(echo_once)
                    sock = socket.socket(socket.AF_UNIX)
                    sock.connect(path)
                    async with unix_connect(sock=sock) as websocket:
                        assert await websocket.recv() == "localhost"

    async def test_unix_serve(self) -> None:
        with tempfile.TemporaryDirectory(prefix="ws") as directory:
            path = f"{directory}/ws.sock"
            recorder = Recorder()
            async with unix_serve(recorder.handler, path) as server:
                assert server.sockets[0].family == socket.AF_UNIX
                async with unix_connect(path) as websocket:
                    await websocket.send("local")
                    assert await websocket.recv() == "local"
            assert recorder.requests[0].headers["Host"] == "localhost"

    async def test_open_timeout(self) -> None:
        async with await anyio.create_tcp_listener(local_host="127.0.0.1") as listener:
            port = listener.extra(anyio.abc.SocketAttribute.local_port)
            uri = f"ws://127.0.0.1:{port}"
            with pytest.raises(TimeoutError, match="opening handshake"):
                async with connect(uri, open_timeout=0.05):
                    pass  # pragma: no cover


class TestProxy:
    async def test_http_proxy(self) -> None:
        async with connect_proxy() as proxy, recording_server() as (_, port):
            async with connect(f"ws://127.0.0.1:{port}", proxy=proxy.url) as websocket:
                await websocket.send("tunnelled")
                assert await websocket.recv() == "tunnelled"
        assert proxy.requests[0].startswith(
            f"CONNECT 127.0.0.1:{port} HTTP/1.1".encode()
        )

    async def test_wss_through_http_proxy(
        self, server_ssl_context: ssl.SSLContext, client_ssl_context: ssl.SSLContext
    ) -> None:
        async with (
            connect_proxy() as proxy,
            recording_server(ssl=server_ssl_context) as (_, port),
        ):
            async with connect(
                f"wss://localhost:{port}", proxy=proxy.url, ssl=client_ssl_context
            ) as websocket:
                await websocket.send("tls in a tunnel")
                assert await websocket.recv() == "tls in a tunnel"
        assert proxy.requests[0].startswith(f"CONNECT localhost:{port} ".encode())

    async def test_proxy_from_the_environment(
        self, monkeypatch: pytest.MonkeyPatch
    ) -> None:
        for name in ("no_proxy", "NO_PROXY"):
            monkeypatch.delenv(name, raising=False)
        async with connect_proxy() as proxy, recording_server() as (_, port):
            monkeypatch.setenv("ws_proxy", proxy.url)
            async with connect(f"ws://127.0.0.1:{port}", proxy=None):
                pass
            assert proxy.requests == []
            async with connect(f"ws://127.0.0.1:{port}"):
                pass
            assert len(proxy.requests) == 1

    async def test_proxy_refuses(self) -> None:
        reply = b"HTTP/1.1 407 Proxy Authentication Required\r\n\r\n"
        async with connect_proxy(reply=reply) as proxy:
            with pytest.raises(InvalidProxyStatus) as refused:
                async with connect("ws://127.0.0.1:1/", proxy=proxy.url):
                    pass  # pragma: no cover
        assert refused.value.response.status_code == 407

    @pytest.mark.parametrize(
        "reply",
        [
            b"HTTP/1.1 200 OK\r\n\r\nsurprise",
            b"HTTP/1.1 200\r\nbroken header\r\n\r\n",
            b"SPDY/3 200 OK\r\n\r\n",
            b"HTTP/1.1 200 OK\r\n",
        ],
        ids=["data after", "bad header", "bad status line", "cut short"],
    )
    async def test_proxy_misbehaves(self, reply: bytes) -> None:
        async with connect_proxy(reply=reply) as proxy:
            with pytest.raises(InvalidProxyMessage):
                async with connect("ws://127.0.0.1:1/", proxy=proxy.url):
                    pass  # pragma: no cover

    async def test_https_proxy_with_credentials(
        self, server_ssl_context: ssl.SSLContext, client_ssl_context: ssl.SSLContext
    ) -> None:
        async with (
            connect_proxy(ssl_context=server_ssl_context) as proxy,
            recording_server() as (_, port),
        ):
            url = proxy.url.replace("https://", "https://user:p%40ss@")
            async with connect(
                f"ws://127.0.0.1:{port}", proxy=url, proxy_ssl=client_ssl_context
            ) as websocket:
                await websocket.send("tls to the proxy")
                assert await websocket.recv() == "tls to the proxy"
        credentials = base64.b64encode(b"user:p@ss")
        assert b"Proxy-Authorization: Basic " + credentials in proxy.requests[0]

    def test_proxy_ssl_must_match_the_scheme(self) -> None:
        with pytest.raises(ValueError, match="proxy_ssl"):
            anyio.run(self._connect_through, "http://127.0.0.1:1", {"proxy_ssl": True})
        with pytest.raises(ValueError, match="proxy_ssl=None"):
            anyio.run(self._connect_through, "https://127.0.0.1:1", {"proxy_ssl": None})

    @staticmethod
    async def _connect_through(proxy: str, options: dict[str, Any]) -> None:
        async with connect("ws://127.0.0.1:1/", proxy=proxy, **options):
            pass  # pragma: no cover

    @pytest.mark.parametrize(
        "proxy",
        [
            "http://",
            "http://proxy.test/path",
            "http://proxy.test/?query",
            "http://proxy.test/#fragment",
            "http://user@proxy.test",
        ],
    )
    def test_invalid_proxies(self, proxy: str) -> None:
        with pytest.raises(InvalidProxy) as ours:
            parse_proxy(proxy)
        with pytest.raises(websockets.exceptions.InvalidProxy) as theirs:
            websockets.proxy.parse_proxy(proxy)
        assert str(ours.value) == str(theirs.value)

    def test_invalid_proxy_port(self) -> None:
        # websockets lets urllib's ValueError through here.
        with pytest.raises(InvalidProxy, match="out of range"):
            parse_proxy("http://proxy.test:99999")

    @pytest.mark.parametrize(
        "proxy",
        [
            "http://proxy.test",
            "https://proxy.test:8443/",
            "socks5h://u%3Aser:pa%40ss@proxy.test:1080",
            "http://bücher.test",
        ],
    )
    def test_valid_proxies(self, proxy: str) -> None:
        ours, theirs = parse_proxy(proxy), websockets.proxy.parse_proxy(proxy)
        assert dataclasses.astuple(ours) == dataclasses.astuple(theirs)
        assert ours.user_info == theirs.user_info

    @pytest.mark.parametrize(
        ("environment", "uri", "expected"),
        [
            ({"ws_proxy": "http://a.test"}, "ws://server.test", "http://a.test"),
            ({"wss_proxy": "http://a.test"}, "ws://server.test", None),
            ({"https_proxy": "http://b.test"}, "wss://server.test", "http://b.test"),
            ({"socks_proxy": "http://c.test"}, "ws://x.test", "socks5h://c.test"),
            (
                {"ws_proxy": "http://a.test", "no_proxy": "server.test"},
                "ws://server.test",
                None,
            ),
        ],
    )
    def test_proxy_from_the_environment_as_websockets(
        self,
        monkeypatch: pytest.MonkeyPatch,
        environment: dict[str, str],
        uri: str,
        expected: str | None,
    ) -> None:
        for name in list(os.environ):
            if name.lower().endswith("_proxy"):
                monkeypatch.delenv(name)
        for name, value in environment.items():
            monkeypatch.setenv(name, value)
        ours = get_proxy(anyws.parse_uri(uri))
        assert ours == expected
        assert ours == websockets.proxy.get_proxy(websockets.uri.parse_uri(uri))

    async def test_socks_proxy_is_not_supported(self) -> None:
        with pytest.raises(NotImplementedError, match="SOCKS"):
            async with connect("ws://127.0.0.1:1/", proxy="socks5h://127.0.0.1:1"):
                pass  # pragma: no cover


class TestConnection:
    async def test_attributes(self) -> None:
        async with recording_server() as (_, port):
            async with connect(f"ws://127.0.0.1:{port}/path?q=1") as websocket:
                assert isinstance(websocket.id, uuid.UUID)
                assert websocket.state.name == "OPEN"
                assert websocket.local_address[0] == "127.0.0.1"
                assert websocket.remote_address == ("127.0.0.1", port)
                assert websocket.request is not None
                assert websocket.request.path == "/path?q=1"
                assert websocket.response is not None
                assert websocket.response.status_code == 101
                assert websocket.subprotocol is None
                assert websocket.latency == 0.0
                assert (websocket.close_code, websocket.close_reason) == (None, None)
                await websocket.close(4000, "done")
                assert websocket.state is State.CLOSED
                # What the server answered: the code it received, no reason.
                assert (websocket.close_code, websocket.close_reason) == (4000, "")

    async def test_ping_returns_an_awaitable_latency(
        self, anyio_backend_name: str
    ) -> None:
        async with recording_server() as (_, port):
            async with connect(f"ws://127.0.0.1:{port}") as websocket:
                pong_received = await websocket.ping()
                if anyio_backend_name == "asyncio":
                    import asyncio

                    assert isinstance(pong_received, asyncio.Future)
                latency = await pong_received
                assert isinstance(latency, float) and latency >= 0
                assert websocket.latency == latency
                await websocket.ping("same")
                with pytest.raises(ConcurrencyError):
                    await websocket.ping(b"same")
                ignored = await websocket.ping()
                del ignored  # never awaited: no warning, no error
                with pytest.raises(TypeError):
                    await websocket.ping(1)  # type: ignore[arg-type]
            with pytest.raises(ConnectionClosedOK):
                await websocket.ping()

    async def test_pong_waiter_raises_when_the_connection_drops(self) -> None:
        async with await anyio.create_tcp_listener(local_host="127.0.0.1") as listener:
            port = listener.extra(anyio.abc.SocketAttribute.local_port)
            async with anyio.create_task_group() as task_group:

                async def silent_peer() -> None:
                    peer = RawPeer(await accept(listener), is_client=False)
                    await peer.server_handshake()
                    assert (await peer.read_frame()).opcode == OP_PING
                    await peer.aclose()  # no Pong, no Close

                task_group.start_soon(silent_peer)
                async with connect(f"ws://127.0.0.1:{port}") as websocket:
                    pong_received = await websocket.ping()
                    with pytest.raises(ConnectionClosedError):
                        await pong_received

    async def test_connection_as_a_context_manager(self) -> None:
        async with recording_server() as (recorder, port):
            async with connect(f"ws://127.0.0.1:{port}") as websocket:
                with pytest.raises(KeyError):
                    async with websocket:
                        raise KeyError("oops")
            await recorder.closed.wait()
        assert recorder.close_codes == [1011]

    async def test_recv_decode_and_send_text(self) -> None:
        async with recording_server() as (_, port):
            async with connect(f"ws://127.0.0.1:{port}") as websocket:
                await websocket.send("café")
                assert await websocket.recv(decode=False) == "café".encode()
                await websocket.send("café".encode(), text=True)
                assert await websocket.recv() == "café"
                await websocket.send("café", text=False)
                assert await websocket.recv() == "café".encode()
                await websocket.send(b"bin")
                assert await websocket.recv(decode=True) == "bin"
                await websocket.send([b"frag", b"ments"])
                fragments = [f async for f in websocket.recv_streaming()]
                assert b"".join(fragments) == b"fragments"  # type: ignore[arg-type]
                await websocket.pong("heartbeat")
                await websocket.send("after pong")
                assert await websocket.recv() == "after pong"

    async def test_async_for_raises_on_an_error_close(self) -> None:
        async def fail(websocket: ServerConnection) -> None:
            await websocket.send("last words")
            await websocket.close(1011, "oops")

        async with serve(fail, "127.0.0.1", 0) as server:
            port = server.sockets[0].getsockname()[1]
            async with connect(f"ws://127.0.0.1:{port}") as websocket:
                received = []
                with pytest.raises(ConnectionClosedError) as closed:
                    async for message in websocket:
                        received.append(message)
        assert received == ["last words"]
        assert closed.value.rcvd is not None
        assert (closed.value.rcvd.code, closed.value.rcvd.reason) == (1011, "oops")
        assert isinstance(closed.value, ConnectionClosed)

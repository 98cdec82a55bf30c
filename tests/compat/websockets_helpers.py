"""Both ends of a conversation for the tests of ``anyws.compat.websockets``.

A *side* is a WebSocket library as a program written for ``websockets`` sees it:
``serve(handler, **options)``, ``connect(uri, **options)``, ``broadcast`` and the
exceptions module. :class:`ShimSide` is the shim; :class:`WebsocketsSide` is the real
``websockets`` package on the running event loop, its asyncio implementation on
asyncio and its trio implementation on trio. Programs run between any two sides.

Also here: a tiny HTTP CONNECT proxy, and a raw HTTP GET for health checks.
"""

from __future__ import annotations

import functools
import importlib
from contextlib import asynccontextmanager
from dataclasses import dataclass, field
from typing import TYPE_CHECKING, Any

import anyio
import pytest
from anyio.abc import SocketAttribute
from anyio.streams.tls import TLSListener

import anyws.compat.websockets as shim
from anyws.compat.websockets import exceptions as shim_exceptions

if TYPE_CHECKING:
    import ssl
    from collections.abc import AsyncIterator, Callable
    from types import ModuleType

    from anyio.abc import ByteStream, Listener

# Which library serves and which connects, as "server-client".
PAIRS = [
    pytest.param(("shim", "shim"), id="shim-shim"),
    pytest.param(
        ("shim", "websockets"), id="shim-websockets", marks=pytest.mark.interop
    ),
    pytest.param(
        ("websockets", "shim"), id="websockets-shim", marks=pytest.mark.interop
    ),
]


class ShimSide:
    """The shim, ``anyws.compat.websockets``."""

    name = "shim"
    exceptions: ModuleType = shim_exceptions

    def __init__(self, backend: str) -> None:
        self.backend = backend
        self.broadcast: Callable[..., None] | None = shim.broadcast

    @asynccontextmanager
    async def serve(self, handler: Any, **options: Any) -> AsyncIterator[int]:
        """Serve on 127.0.0.1 and a free port; yield the port."""
        async with shim.serve(handler, "127.0.0.1", 0, **options) as server:
            yield server.sockets[0].getsockname()[1]

    def connect(self, uri: str, **options: Any) -> Any:
        """``connect(uri, **options)``."""
        return shim.connect(uri, **options)


class WebsocketsSide:
    """The ``websockets`` package, on the running event loop."""

    name = "websockets"

    def __init__(self, backend: str) -> None:
        self.backend = backend
        self.exceptions = importlib.import_module("websockets.exceptions")
        if backend == "trio":
            self._server = importlib.import_module("websockets.trio.server")
            self._client = importlib.import_module("websockets.trio.client")
            # There broadcast() is a coroutine: programs written for the asyncio
            # API cannot call it.
            self.broadcast = None
        else:
            self._server = importlib.import_module("websockets.asyncio.server")
            self._client = importlib.import_module("websockets.asyncio.client")
            self.broadcast = self._server.broadcast

    @asynccontextmanager
    async def serve(self, handler: Any, **options: Any) -> AsyncIterator[int]:
        """Serve on 127.0.0.1 and a free port; yield the port."""
        if self.backend == "trio":
            async with anyio.create_task_group() as task_group:
                server = await task_group.start(
                    functools.partial(
                        self._server.serve, handler, 0, host="127.0.0.1", **options
                    )
                )
                async with server:
                    yield server.listeners[0].socket.getsockname()[1]
        else:
            async with self._server.serve(handler, "127.0.0.1", 0, **options) as server:
                yield server.sockets[0].getsockname()[1]

    def connect(self, uri: str, **options: Any) -> Any:
        """``connect(uri, **options)``."""
        return self._client.connect(uri, **options)


def make_side(name: str, backend: str) -> ShimSide | WebsocketsSide:
    """The side called ``name`` ("shim" or "websockets") on ``backend``."""
    return ShimSide(backend) if name == "shim" else WebsocketsSide(backend)


async def http_get(port: int, path: str) -> tuple[int, bytes]:
    """Send a plain HTTP GET to 127.0.0.1:``port``; return the status and the body."""
    async with await anyio.connect_tcp("127.0.0.1", port) as stream:
        request = f"GET {path} HTTP/1.1\r\nHost: 127.0.0.1\r\nConnection: close\r\n"
        await stream.send(request.encode() + b"\r\n")
        data = b""
        try:
            while True:
                data += await stream.receive()
        except (anyio.EndOfStream, anyio.BrokenResourceError):
            pass
    head, _, body = data.partition(b"\r\n\r\n")
    return int(head.split()[1]), body


@dataclass
class ConnectProxy:
    """A tiny HTTP CONNECT proxy on 127.0.0.1, made by :func:`connect_proxy`."""

    port: int
    requests: list[bytes] = field(default_factory=list)
    """The head of every CONNECT request received."""
    reply: bytes | None = None
    """Answer every request with these bytes instead of opening a tunnel."""
    tls: bool = False
    """Whether clients talk to the proxy over TLS (an ``https://`` proxy)."""

    @property
    def url(self) -> str:
        if self.tls:
            return f"https://localhost:{self.port}"
        return f"http://127.0.0.1:{self.port}"


async def _pipe(source: ByteStream, sink: ByteStream) -> None:
    try:
        async for chunk in source:
            await sink.send(chunk)
        try:
            await sink.send_eof()
        except NotImplementedError:  # TLS streams
            await sink.aclose()
    except (anyio.BrokenResourceError, anyio.ClosedResourceError, OSError):
        pass


@asynccontextmanager
async def connect_proxy(
    reply: bytes | None = None, ssl_context: ssl.SSLContext | None = None
) -> AsyncIterator[ConnectProxy]:
    """Run an HTTP CONNECT proxy (RFC 9110 section 9.3.6) for the test's duration.

    Args:
        reply: bytes to answer every request with, instead of opening a tunnel.
        ssl_context: serve over TLS with this context (an ``https://`` proxy).
    """
    tcp = await anyio.create_tcp_listener(local_host="127.0.0.1")
    port = tcp.extra(SocketAttribute.local_port)
    listener: Listener[Any] = tcp
    if ssl_context is not None:
        listener = TLSListener(tcp, ssl_context, standard_compatible=False)
    proxy = ConnectProxy(port, reply=reply, tls=ssl_context is not None)

    async def handle(client: ByteStream) -> None:
        async with client:
            data = b""
            while b"\r\n\r\n" not in data:
                data += await client.receive()
            head, _, rest = data.partition(b"\r\n\r\n")
            proxy.requests.append(head)
            if proxy.reply is not None:
                await client.send(proxy.reply)
                return
            target = head.split(b"\r\n")[0].split()[1].decode()
            host, _, port = target.rpartition(":")
            async with await anyio.connect_tcp(host.strip("[]"), int(port)) as upstream:
                await client.send(b"HTTP/1.1 200 Connection established\r\n\r\n")
                if rest:
                    await upstream.send(rest)
                async with anyio.create_task_group() as task_group:
                    task_group.start_soon(_pipe, client, upstream)
                    task_group.start_soon(_pipe, upstream, client)

    async with listener, anyio.create_task_group() as task_group:
        task_group.start_soon(listener.serve, handle)
        yield proxy
        task_group.cancel_scope.cancel()

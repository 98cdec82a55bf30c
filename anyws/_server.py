"""The server: ``serve()``, ``accept()``, :class:`Server` and :class:`ServerConnection`.

A server owns one task group. It runs an accept loop per listener and a task per
connection; each connection task runs the handshake (TLS included) within
``open_timeout``, starts the connection's reader in the server's task group, and
runs the handler; it ends only once the reader has torn the connection down.
Whatever one client does ends in that client's task: a handshake error is logged at
debug level, a handler error at error level, and neither reaches the other
connections or the server.

An idle connection costs two tasks, the handler's and the reader's, and no task
group of its own: tasks and cancel scopes make up most of its memory. On TCP
listeners, the accept loop takes every connection waiting at each wake-up, as
asyncio's own servers do, rather than one per turn of the event loop.
"""

from __future__ import annotations

import inspect
import logging
import socket
import sys
from collections.abc import AsyncIterator, Awaitable, Callable, Sequence
from contextlib import asynccontextmanager
from typing import TYPE_CHECKING, Any, Literal, TypedDict, cast

import anyio
from anyio.abc import (
    ByteStream,
    SocketAttribute,
    SocketListener,
    SocketStream,
    TaskGroup,
    TaskStatus,
)
from anyio.streams.tls import TLSStream

from . import _handshake, _streams
from ._client import USER_AGENT
from ._connection import Connection, unwrap_exception_group
from ._http import (
    Headers,
    HeadersLike,
    HeadReader,
    Request,
    Response,
    make_response,
)
from ._protocol import CloseCode
from ._streams import AsyncioSocketStream, lean_stream, socket_wrapper
from .exceptions import ConnectionClosed, InvalidHandshake

if TYPE_CHECKING:
    import ssl as ssl_module

    from typing_extensions import Unpack

__all__ = ["Server", "ServerConnection", "accept", "serve"]

logger = logging.getLogger("anyws.server")

Handler = Callable[["ServerConnection"], Awaitable[None]]
ProcessRequest = Callable[
    ["ServerConnection", Request], "Response | None | Awaitable[Response | None]"
]
ProcessResponse = Callable[
    ["ServerConnection", Request, Response],
    "Response | None | Awaitable[Response | None]",
]
SelectSubprotocol = Callable[
    ["ServerConnection", Sequence[str]], "str | None | Awaitable[str | None]"
]


class ServerConnection(Connection):
    """The server side of a WebSocket connection, passed to the handler."""

    is_client = False

    def respond(
        self, status: int, text: str | bytes = "", headers: HeadersLike | None = None
    ) -> Response:
        """Build an HTTP response, for ``process_request`` to refuse the handshake.

        ::

            def process_request(connection, request):
                if request.path == "/healthz":
                    return connection.respond(200, "OK\\n")
        """
        return make_response(status, text, headers)


class ServerOptions(TypedDict, total=False):
    """The keyword options of :func:`serve` and :func:`accept`."""

    ssl: ssl_module.SSLContext | None
    subprotocols: Sequence[str] | None
    select_subprotocol: SelectSubprotocol | None
    process_request: ProcessRequest | None
    process_response: ProcessResponse | None
    server_header: str | None
    compression: Literal["deflate"] | None
    open_timeout: float | None
    ping_interval: float | None
    ping_timeout: float | None
    close_timeout: float | None
    max_size: int | None
    max_queue: int | None
    logger: logging.Logger | logging.LoggerAdapter[Any] | None


class _Options:
    """The options of :func:`serve` and :func:`accept`, checked once."""

    def __init__(
        self,
        *,
        ssl: ssl_module.SSLContext | None = None,
        subprotocols: Sequence[str] | None = None,
        select_subprotocol: SelectSubprotocol | None = None,
        process_request: ProcessRequest | None = None,
        process_response: ProcessResponse | None = None,
        server_header: str | None = USER_AGENT,
        compression: Literal["deflate"] | None = "deflate",
        open_timeout: float | None = 10,
        ping_interval: float | None = 20,
        ping_timeout: float | None = 20,
        close_timeout: float | None = 10,
        max_size: int | None = 2**20,
        max_queue: int | None = 16,
        logger: logging.Logger | logging.LoggerAdapter[Any] | None = None,
    ) -> None:
        if compression not in ("deflate", None):
            raise ValueError(f"unsupported compression: {compression!r}")
        self.ssl = ssl
        self.subprotocols = subprotocols
        self.select_subprotocol = select_subprotocol
        self.process_request = process_request
        self.process_response = process_response
        self.server_header = server_header
        self.compression = compression
        self.open_timeout = open_timeout
        self.ping_interval = ping_interval
        self.ping_timeout = ping_timeout
        self.close_timeout = close_timeout
        self.max_size = max_size
        self.max_queue = max_queue
        self.logger = logger
        self.deflate_settings = _handshake.DeflateSettings()

    def new_connection(self, stream: ByteStream) -> ServerConnection:
        return ServerConnection(
            stream,
            ping_interval=self.ping_interval,
            ping_timeout=self.ping_timeout,
            close_timeout=self.close_timeout,
            max_size=self.max_size,
            max_queue=self.max_queue,
            logger=self.logger,
        )


async def _wrap_tls(stream: ByteStream, context: ssl_module.SSLContext) -> ByteStream:
    if type(stream) is AsyncioSocketStream:
        if stream.tls:
            return stream  # TLS by the event loop already (see socket_wrapper)
        if await stream.start_tls(context, server_side=True):
            return stream  # TLS by the event loop: the direct reader applies
    return await TLSStream.wrap(
        stream, server_side=True, ssl_context=context, standard_compatible=False
    )


async def _call_hook(hook: Callable[..., Any], *args: Any) -> Any:
    result = hook(*args)
    if inspect.isawaitable(result):
        result = await result
    return result


async def _server_handshake(connection: ServerConnection, options: _Options) -> bool:
    """Run the server side of the opening handshake.

    Returns ``True`` when the connection is open, ``False`` when the request was
    answered with an HTTP response other than 101.
    """
    stream = connection._stream
    reader = HeadReader(stream)
    request: Request | None = None
    try:
        request = await reader.read_request()
        connection.request = request
        response = None
        if options.process_request is not None:
            response = await _call_hook(options.process_request, connection, request)
        deflate = None
        if response is None:
            key = _handshake.check_request(request)
            offered = _handshake.offered_subprotocols(request.headers)
            if options.select_subprotocol is not None:
                subprotocol = await _call_hook(
                    options.select_subprotocol, connection, offered
                )
                if subprotocol is not None and subprotocol not in offered:
                    raise InvalidHandshake(
                        f"selected a subprotocol not offered: {subprotocol}"
                    )
            else:
                subprotocol = _handshake.select_subprotocol(
                    offered, options.subprotocols
                )
            extensions = None
            if options.compression is not None:
                negotiated = _handshake.negotiate_deflate(
                    request.headers, options.deflate_settings
                )
                if negotiated is not None:
                    extensions, deflate = negotiated
            response = _handshake.accept_response(
                key, subprotocol, extensions, options.server_header
            )
            connection.subprotocol = subprotocol
    except InvalidHandshake as exc:
        connection.logger.debug(
            "invalid handshake from %s: %s", connection.remote_address, exc
        )
        response = _handshake.error_response(exc, options.server_header)
    except (OSError, anyio.BrokenResourceError, anyio.EndOfStream):
        raise  # the client is gone: nothing to answer
    except Exception:
        # A hook raised: that is the application's bug, not the client's.
        connection.logger.error("opening handshake failed", exc_info=True)
        response = _internal_error(options)
    if request is not None and options.process_response is not None:
        try:
            replaced = await _call_hook(
                options.process_response, connection, request, response
            )
        except Exception:
            connection.logger.error("process_response failed", exc_info=True)
            replaced = _internal_error(options)
        if replaced is not None:
            response = replaced
    connection.response = response
    # The headers stay with the connection, but lookups in them are over.
    response.headers._compact()
    if request is not None:
        request.headers._compact()
    await stream.send(response.serialize())
    if response.status_code != 101:
        connection.logger.debug(
            "handshake refused with HTTP %d for %s",
            response.status_code,
            connection.remote_address,
        )
        return False
    connection._open(deflate, options.deflate_settings, bytes(reader.buffer))
    return True


def _timeout(delay: float | None) -> anyio.CancelScope:
    """A cancel scope with a deadline ``delay`` seconds away (``None``: none).

    Cheaper than :func:`anyio.move_on_after`, which wraps the same scope in a
    generator; check ``cancelled_caught`` after the block.
    """
    if delay is None:
        return anyio.CancelScope()
    return anyio.CancelScope(deadline=anyio.current_time() + delay)


def _internal_error(options: _Options) -> Response:
    headers = Headers()
    if options.server_header is not None:
        headers["Server"] = options.server_header
    return make_response(
        500,
        "Failed to open a WebSocket connection. See server log for more information.\n",
        headers,
    )


async def _run_handler(
    connection: ServerConnection, handler: Handler, task_group: TaskGroup
) -> None:
    """Run ``handler``; close with 1000 after it returns, 1011 after it raises.

    The connection's reader runs in ``task_group``; this returns only once the
    reader has closed the connection.
    """
    connection._start(task_group)
    try:
        await handler(connection)
    except ConnectionClosed:
        connection.logger.debug("handler ended on a closed connection")
    except Exception:
        connection.logger.error("connection handler failed", exc_info=True)
        await connection._close(CloseCode.INTERNAL_ERROR, "internal error", shield=True)
    finally:
        await connection._close(CloseCode.NORMAL_CLOSURE, "", shield=True)


class Server:
    """A WebSocket server, made by :func:`serve`.

    Attributes:
        connections: the connections that are open or closing.
    """

    def __init__(
        self, listeners: list[SocketListener], handler: Handler, options: _Options
    ) -> None:
        self._listeners = listeners
        self._handler = handler
        self._options = options
        self.connections: set[ServerConnection] = set()
        self._accept_scopes: list[anyio.CancelScope] = []
        self._acceptors: list[_streams.Acceptor] = []
        self._run_done = anyio.Event()
        self._closing = False
        self._closed = anyio.Event()
        self._task_group: TaskGroup | None = None
        self._host_task_group: TaskGroup | None = None
        # Set when the last handler ends; made only while aclose() waits for it.
        self._handlers_done: anyio.Event | None = None
        self._handlers = 0
        # How accepted sockets become streams; see _accept_batches().
        self._wrap_accepted: Callable[[socket.socket], Awaitable[ByteStream]] | None
        self._wrap_accepted = None
        try:
            self._port: int | None = _bound_port(listeners)
        except anyio.TypedAttributeLookupError:
            self._port = None  # not TCP: Unix sockets, say

    @property
    def sockets(self) -> list[socket.socket]:
        """The listening sockets."""
        return [
            listener.extra(SocketAttribute.raw_socket) for listener in self._listeners
        ]

    @property
    def port(self) -> int:
        """The port the server listens on (the first one, if there are several).

        Raises:
            TypeError: the server doesn't listen on TCP.
        """
        if self._port is None:
            raise TypeError("the server doesn't listen on a TCP port")
        return self._port

    @asynccontextmanager
    async def _serving(self) -> AsyncIterator[None]:
        """Serve until the block ends, then close as :meth:`aclose` does."""
        with unwrap_exception_group():
            async with anyio.create_task_group() as task_group:
                self._host_task_group = task_group
                await task_group.start(self._run)
                try:
                    yield
                finally:
                    with anyio.CancelScope(shield=True):
                        await self.aclose()

    async def _run(self, *, task_status: TaskStatus[None]) -> None:
        # Connections live in this task group, not in the one of the ``async with``
        # block, so that aborting them never cancels the application's own code.
        try:
            async with anyio.create_task_group() as task_group:
                self._task_group = task_group
                for listener in self._listeners:
                    task_group.start_soon(
                        self._accept_loop, listener, name="anyws accept"
                    )
                task_status.started()
        finally:
            self._run_done.set()

    async def _accept_loop(self, listener: SocketListener) -> None:
        assert self._task_group is not None
        scope = anyio.CancelScope()
        self._accept_scopes.append(scope)
        if self._closing:
            scope.cancel()
        with scope:
            sock = _batch_accept_socket(listener)
            if sock is not None:
                await self._accept_batches(sock)
                return
            while True:
                try:
                    stream = await listener.accept()
                except (anyio.ClosedResourceError, anyio.BrokenResourceError):
                    return
                except OSError as exc:
                    # EMFILE and the like: keep serving the connections we have.
                    logger.error("error accepting a connection: %s", exc)
                    await anyio.sleep(0.1)
                    continue
                self._handlers += 1
                self._task_group.start_soon(
                    self._handle, stream, name="anyws connection"
                )

    async def _accept_batches(self, sock: socket.socket) -> None:
        """Accept connections from the listening socket itself, in batches.

        :meth:`~anyio.abc.SocketListener.accept` takes one connection per call and
        checkpoints first: at least one turn of the event loop per connection, in
        the one task that accepts. Here every wake-up accepts all the connections
        waiting (up to :data:`ACCEPT_BATCH`), as asyncio's own servers do, and each
        connection task wraps its socket in a stream itself.
        """
        self._wrap_accepted = socket_wrapper(self._options.ssl)
        acceptor = _streams.acceptor(sock, self._accepted, _accept_error, ACCEPT_BATCH)
        if acceptor is not None:
            # On asyncio, the event loop accepts in its callback, and this task
            # only waits to be cancelled.
            self._acceptors.append(acceptor)
            acceptor.start()
            try:
                await anyio.sleep_forever()
            finally:
                acceptor.close()
            return
        while True:
            if sock.fileno() < 0:
                return  # the listener was closed
            try:
                await _wait_readable(sock)
            except (anyio.ClosedResourceError, anyio.BrokenResourceError):
                return
            error = _streams.accept_waiting(sock, self._accepted, ACCEPT_BATCH)
            if error is not None:
                if sock.fileno() < 0:
                    return  # the listener was closed
                # EMFILE and the like: keep serving the connections we have.
                _accept_error(error)
                await anyio.sleep(0.1)

    def _accepted(self, client: socket.socket) -> None:
        """Serve a connection the event loop accepted."""
        assert self._task_group is not None
        self._handlers += 1
        self._task_group.start_soon(self._handle, client, name="anyws connection")

    async def _handle(self, stream: ByteStream | socket.socket) -> None:
        try:
            connection = await self._open(stream)
            del stream  # the connection holds what it needs of it
            if connection is None:
                return
            assert self._task_group is not None
            self.connections.add(connection)
            try:
                await _run_handler(connection, self._handler, self._task_group)
            finally:
                self.connections.discard(connection)
        finally:
            self._handlers -= 1
            if self._handlers == 0 and self._handlers_done is not None:
                self._handlers_done.set()
                self._handlers_done = None

    async def _open(
        self, accepted: ByteStream | socket.socket
    ) -> ServerConnection | None:
        """Run the TLS and WebSocket handshakes within ``open_timeout``.

        Returns the connection if it opened; otherwise closes what was accepted.
        """
        options = self._options
        connection = None
        opened = False
        stream: ByteStream | None = None
        try:
            with _timeout(options.open_timeout) as scope:
                if isinstance(accepted, socket.socket):
                    stream = await _wrap_socket(accepted, self._wrap_accepted)
                else:
                    stream = lean_stream(accepted)
                if options.ssl is not None:
                    stream = await _wrap_tls(stream, options.ssl)
                connection = options.new_connection(stream)
                opened = await _server_handshake(connection, options)
            if scope.cancelled_caught:
                logger.debug("opening handshake timed out")
        except (
            OSError,
            anyio.BrokenResourceError,
            anyio.EndOfStream,
            InvalidHandshake,
        ) as exc:
            logger.debug("opening handshake failed: %r", exc)
        if not opened:
            if stream is not None:
                await anyio.aclose_forcefully(stream)
            elif isinstance(accepted, socket.socket):
                accepted.close()
            return None
        return connection

    async def aclose(self) -> None:
        """Close the server gracefully.

        Stops accepting connections, closes every open connection with code 1001
        (going away), waits up to ``close_timeout`` for the connections and their
        handlers to finish, then cancels the handlers still running.

        Calling it again waits for the first call to finish.
        """
        if self._closing:
            await self._closed.wait()
            return
        self._closing = True
        try:
            for scope in self._accept_scopes:
                scope.cancel()
            for acceptor in self._acceptors:
                acceptor.close()  # before its socket closes
            for listener in self._listeners:
                await anyio.aclose_forcefully(listener)
            with anyio.move_on_after(self._options.close_timeout):
                async with anyio.create_task_group() as task_group:
                    for connection in list(self.connections):
                        task_group.start_soon(connection.close, CloseCode.GOING_AWAY)
                while self._handlers:
                    if self._handlers_done is None:
                        self._handlers_done = anyio.Event()
                    await self._handlers_done.wait()
            if self._task_group is not None:
                self._task_group.cancel_scope.cancel()
                # Not shielded: called from a handler, this task is among those
                # cancelled, and waiting for the task group would never end.
                await self._run_done.wait()
        finally:
            self._closed.set()

    def close(self) -> None:
        """Start closing the server, like :meth:`aclose`, without waiting."""
        if self._host_task_group is not None and not self._closing:
            self._host_task_group.start_soon(self.aclose)

    async def wait_closed(self) -> None:
        """Wait until the server is closed."""
        await self._closed.wait()

    async def serve_forever(self) -> None:
        """Wait until the server is closed, e.g. by :meth:`aclose` from another task."""
        await self._closed.wait()


@asynccontextmanager
async def serve(
    handler: Handler,
    host: str | Sequence[str] | None = None,
    port: int = 0,
    **options: Unpack[ServerOptions],
) -> AsyncIterator[Server]:
    """Start a WebSocket server; an async context manager yielding :class:`Server`.

    ::

        async def echo(ws):
            async for message in ws:
                await ws.send(message)

        async with anyws.serve(echo, "127.0.0.1", 8765) as server:
            await server.serve_forever()

    Leaving the block closes the server as :meth:`Server.aclose` does.

    Args:
        handler: coroutine function called with each :class:`ServerConnection`
            once its handshake succeeds. When it returns, the connection closes
            with 1000; when it raises, the error is logged and the connection
            closes with 1011.
        host: the interface(s) to listen on; ``None`` for all, IPv4 and IPv6.
        port: the port; 0 picks a free one (see :attr:`Server.port`).
        ssl: an :class:`ssl.SSLContext` to serve ``wss://``.
        subprotocols: subprotocols the server supports, in order of preference.
        select_subprotocol: ``(connection, offered) -> str | None``, replacing the
            default choice.
        process_request: ``(connection, request) -> Response | None``, called before
            the handshake; return a response to refuse it (for example
            ``connection.respond(401, "...")``) or ``None`` to continue.
        process_response: ``(connection, request, response) -> Response | None``,
            called before the response is sent; it may modify or replace it.
        server_header: the ``Server`` header; ``None`` leaves it out.
        compression: ``"deflate"`` accepts permessage-deflate; ``None`` refuses it.
        open_timeout: limit in seconds for the TLS and WebSocket handshakes.
        ping_interval, ping_timeout, close_timeout, max_size, max_queue: as for
            :func:`~anyws.connect`.
        logger: logger for the connections; ``anyws.server`` by default.

    Hooks may be plain functions or coroutine functions.
    """
    opts = _Options(**options)
    listeners: list[SocketListener] = []
    hosts: Sequence[str | None] = (
        [host] if host is None or isinstance(host, str) else host
    )
    try:
        for one_host in hosts:
            multi = await anyio.create_tcp_listener(
                local_host=one_host,
                local_port=port if not listeners else _bound_port(listeners),
            )
            listeners.extend(cast("list[SocketListener]", multi.listeners))
    except BaseException:
        for listener in listeners:
            await anyio.aclose_forcefully(listener)
        raise
    server = Server(listeners, handler, opts)
    for listener in listeners:
        logger.info(
            "server listening on %s", listener.extra(SocketAttribute.local_address)
        )
    async with server._serving():
        yield server


# Connections accepted at most per wake-up of the accept loop, so that a flood of
# them leaves the connections already open their turn.
ACCEPT_BATCH = 64


def _accept_error(exc: OSError) -> None:
    logger.error("error accepting a connection: %s", exc)


_wait_readable: Callable[[socket.socket], Awaitable[None]] = getattr(
    anyio, "wait_readable", None
) or getattr(anyio, "wait_socket_readable")  # noqa: B009 - before anyio 4.7
_from_socket: Callable[[socket.socket], Awaitable[SocketStream]] | None = getattr(
    SocketStream, "from_socket", None
)  # not in older anyio versions


def _batch_accept_socket(listener: SocketListener) -> socket.socket | None:
    """The listening socket, if connections can be accepted from it directly."""
    if _from_socket is None or sys.platform == "win32":
        return None  # on Windows, asyncio's loop may not wait for a socket
    try:
        sock: socket.socket = listener.extra(SocketAttribute.raw_socket)
    except anyio.TypedAttributeLookupError:
        return None
    if (
        sock.family not in (socket.AF_INET, socket.AF_INET6)
        or sock.type != socket.SOCK_STREAM
        or sock.getblocking()
    ):
        return None
    return sock


async def _wrap_socket(
    sock: socket.socket, wrap: Callable[[socket.socket], Awaitable[ByteStream]] | None
) -> ByteStream:
    """Wrap an accepted TCP socket as anyio does in its listeners' accept(), or
    with ``wrap``, which makes the lean stream of :mod:`anyws._streams`."""
    assert _from_socket is not None
    try:
        sock.setsockopt(socket.IPPROTO_TCP, socket.TCP_NODELAY, 1)
        if wrap is not None:
            return await wrap(sock)
        return lean_stream(await _from_socket(sock))
    except ValueError as exc:
        sock.close()  # anyio found it unconnected: the client left already
        raise OSError(f"connection lost: {exc}") from exc
    except BaseException:
        sock.close()
        raise


def _bound_port(listeners: list[SocketListener]) -> int:
    port: int = listeners[0].extra(SocketAttribute.local_port)
    return port


@asynccontextmanager
async def accept(
    stream: ByteStream, **options: Unpack[ServerOptions]
) -> AsyncIterator[ServerConnection]:
    """Run the server side of the handshake over an accepted byte stream.

    An async context manager yielding the open :class:`ServerConnection`; leaving
    the block closes it. Takes the options of :func:`serve`; with ``ssl``, the TLS
    handshake runs first, within ``open_timeout``.

    Raises:
        InvalidHandshake: the request was not a valid WebSocket upgrade, or
            ``process_request`` refused it; the HTTP error was sent already.
        TimeoutError: the handshake didn't finish within ``open_timeout``.
    """
    opts = _Options(**options)
    try:
        with anyio.fail_after(opts.open_timeout):
            if opts.ssl is not None:
                stream = await _wrap_tls(stream, opts.ssl)
            connection = opts.new_connection(stream)
            opened = await _server_handshake(connection, opts)
    except BaseException:
        await anyio.aclose_forcefully(stream)
        raise
    if not opened:
        await anyio.aclose_forcefully(stream)
        assert connection.response is not None
        raise InvalidHandshake(
            f"handshake refused with HTTP {connection.response.status_code}"
        )
    with unwrap_exception_group():
        async with anyio.create_task_group() as task_group:
            connection._start(task_group)
            try:
                yield connection
            finally:
                await connection._close(CloseCode.NORMAL_CLOSURE, "", shield=True)

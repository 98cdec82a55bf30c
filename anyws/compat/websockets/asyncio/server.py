"""``websockets.asyncio.server``: ``serve``, ``unix_serve``, ``Server``, ``basic_auth``.

:func:`serve` returns a :class:`Server` that runs :func:`anyws.serve` once started:

* ``async with serve(...) as server`` enters it directly, on any event loop;
* ``server = await serve(...)`` (and the older ``start_server = serve(...)`` then
  awaited) holds it open in a background task (asyncio only).

The hooks ``process_request``, ``process_response`` and ``select_subprotocol`` and the
handler receive this module's :class:`ServerConnection`, which wraps anyws's. A hook
that raises refuses the handshake (HTTP 500, as in ``websockets``, or 400 for
``select_subprotocol``) and logs the error; the server keeps serving. Handlers taking
``(websocket, path)``, the form of ``websockets`` 10 and older, are recognised by their
signature and get the request path too.
"""

from __future__ import annotations

import base64
import binascii
import hmac
import http
import inspect
import logging
import re
from collections.abc import Awaitable, Callable, Iterable, Sequence
from contextlib import asynccontextmanager
from typing import TYPE_CHECKING, Any, cast

import anyio
from anyio.abc import SocketListener

from anyws._connection import unwrap_exception_group
from anyws._protocol import State
from anyws._server import Server as _AnywsServer, _Options, serve as _anyws_serve
from anyws.exceptions import InvalidHandshake

from .._background import get_loop, hold_open
from ..exceptions import InvalidHeaderValue, InvalidOrigin
from ..http11 import SERVER
from .connection import Connection, broadcast, check_options, limit_option

if TYPE_CHECKING:
    import asyncio
    import socket
    from collections.abc import AsyncIterator, Generator
    from contextlib import AbstractAsyncContextManager
    from types import TracebackType

    from anyws._http import Request, Response
    from anyws._server import ServerConnection as _AnywsServerConnection

    from ..typing import LoggerLike, Origin, PathLike, StatusLike, Subprotocol

__all__ = [
    "Server",
    "ServerConnection",
    "basic_auth",
    "broadcast",
    "serve",
    "unix_serve",
]

_FAILED = (
    "Failed to open a WebSocket connection.\nSee server log for more information.\n"
)

# Where a wrapper is kept on the anyws connection it wraps, so that the hooks and
# the handler of one connection all receive the same object.
_WRAPPER = "_websockets_compat_connection"

Handler = (
    Callable[["ServerConnection"], Awaitable[None]]
    | Callable[["ServerConnection", str], Awaitable[None]]
)
"""A connection handler: ``(websocket)``, or the older ``(websocket, path)``."""

_EXTRA_KWARGS = frozenset({"path", "sock", "ssl", "start_serving", "unix"})


class ServerConnection(Connection):
    """The server side of a WebSocket connection, passed to the handler.

    It supports ``async for message in ws``, which ends on a normal close and raises
    :exc:`~anyws.ConnectionClosedError` otherwise.

    Args:
        connection: the anyws connection.
        server: the server that accepted it.
        write_limit: see :func:`serve`.
    """

    def __init__(
        self,
        connection: _AnywsServerConnection,
        server: Server,
        *,
        write_limit: int | tuple[int, int | None] = 2**15,
    ) -> None:
        super().__init__(connection, write_limit=write_limit)
        self.connection: _AnywsServerConnection = connection
        self.server = server
        """The server that accepted this connection."""
        self.username: str
        """The user name, once :func:`basic_auth` authenticated the request."""

    def respond(self, status: StatusLike, text: str) -> Response:
        """Make a plain text HTTP response, for ``process_request`` to refuse with.

        ::

            def process_request(connection, request):
                if request.path == "/healthz":
                    return connection.respond(http.HTTPStatus.OK, "OK\\n")
        """
        status = http.HTTPStatus(status)
        response = self.connection.respond(status.value, text)
        response.reason_phrase = status.phrase
        return response


def _accepts_path(handler: Callable[..., Any]) -> bool:
    """Whether ``handler`` is a ``(websocket, path)`` handler of the older API."""
    try:
        signature = inspect.signature(handler)
    except (TypeError, ValueError):  # pragma: no cover - builtins
        return False
    try:
        signature.bind(None)
    except TypeError:
        try:
            signature.bind(None, "")
        except TypeError:
            return False
        return True
    return False


def _origin_allowed(
    origins: Sequence[Origin | re.Pattern[str] | None], origin: str | None
) -> bool:
    for allowed in origins:
        if allowed is None:
            if origin is None:
                return True
        elif isinstance(allowed, re.Pattern):
            if origin is not None and allowed.fullmatch(origin):
                return True
        elif origin == allowed:
            return True
    return False


async def _call(hook: Callable[..., Any], *args: Any) -> Any:
    result = hook(*args)
    if inspect.isawaitable(result):
        result = await result
    return result


class Server:
    """A WebSocket server, made by :func:`serve`; it mirrors :class:`asyncio.Server`.

    Start it with ``async with serve(...) as server`` or, on asyncio, ``server =
    await serve(...)``.
    """

    def __init__(
        self,
        start: Callable[..., AbstractAsyncContextManager[_AnywsServer]],
        handler: Callable[..., Awaitable[None]],
        *,
        origins: Sequence[Origin | re.Pattern[str] | None] | None = None,
        process_request: Callable[..., Any] | None = None,
        process_response: Callable[..., Any] | None = None,
        select_subprotocol: Callable[..., Any] | None = None,
        close_timeout: float | None = 10,
        write_limit: int | tuple[int, int | None] = 2**15,
        logger: LoggerLike | None = None,
        create_connection: type[ServerConnection] | None = None,
    ) -> None:
        self._start = start
        self.handler = handler
        self._takes_path = _accepts_path(handler)
        self._origins = origins
        self._process_request = process_request
        self._process_response = process_response
        self._select_subprotocol = select_subprotocol
        self._close_timeout = close_timeout
        self._write_limit = write_limit
        if logger is None:
            logger = logging.getLogger("websockets.server")
        self.logger = logger
        self._create_connection = create_connection or ServerConnection
        self.server: _AnywsServer | None = None
        """The running anyws server."""
        self._task_group: anyio.abc.TaskGroup | None = None
        self._session_cm: Any = None
        self._release: Callable[[], Awaitable[None]] | None = None
        self._close_args: tuple[bool, int, str] | None = None
        self._closing = False  # set once closing: handshakes get 503
        self._handlers = 0
        self._handlers_idle = anyio.Event()

    # -- attributes -------------------------------------------------------------

    @property
    def connections(self) -> set[ServerConnection]:
        """The open connections: handshake done, closing handshake not started."""
        if self.server is None:
            return set()
        return {
            self._wrap(connection)
            for connection in self.server.connections
            if connection.state is State.OPEN
        }

    @property
    def sockets(self) -> tuple[socket.socket, ...]:
        """The listening sockets."""
        return () if self.server is None else tuple(self.server.sockets)

    def is_serving(self) -> bool:
        """Whether the server accepts connections."""
        return self.server is not None and not self._closing

    async def start_serving(self) -> None:
        """Do nothing: the server accepts connections as soon as it is started."""

    def get_loop(self) -> asyncio.AbstractEventLoop:
        """Return the asyncio event loop (asyncio only)."""
        return get_loop("Server.get_loop()")

    # -- connections ------------------------------------------------------------

    def _wrap(self, connection: _AnywsServerConnection) -> ServerConnection:
        wrapper: ServerConnection | None = getattr(connection, _WRAPPER, None)
        if wrapper is None:
            wrapper = self._create_connection(
                connection, self, write_limit=self._write_limit
            )
            setattr(connection, _WRAPPER, wrapper)
        return wrapper

    async def _on_request(
        self, native: _AnywsServerConnection, request: Request
    ) -> Response | None:
        try:
            connection = self._wrap(native)
        except Exception:
            self.logger.error("create_connection failed", exc_info=True)
            return native.respond(500, _FAILED)
        if self._closing:
            return connection.respond(503, "Server is shutting down.\n")
        if self._process_request is not None:
            try:
                response = await _call(self._process_request, connection, request)
            except Exception:
                connection.logger.error("process_request failed", exc_info=True)
                return connection.respond(500, _FAILED)
            if response is not None:
                return cast("Response", response)
        if self._origins is not None:
            values = request.headers.get_all("Origin")
            origin = values[0] if len(values) == 1 else None
            if len(values) > 1 or not _origin_allowed(self._origins, origin):
                exc = InvalidOrigin(", ".join(values) or None)
                return connection.respond(
                    403, f"Failed to open a WebSocket connection: {exc}.\n"
                )
        return None

    async def _on_response(
        self, native: _AnywsServerConnection, request: Request, response: Response
    ) -> Response | None:
        if self._process_response is None:
            return None
        connection = self._wrap(native)
        try:
            return cast(
                "Response | None",
                await _call(self._process_response, connection, request, response),
            )
        except Exception:
            connection.logger.error("process_response failed", exc_info=True)
            return connection.respond(500, _FAILED)

    async def _on_subprotocols(
        self, native: _AnywsServerConnection, offered: Sequence[str]
    ) -> str | None:
        assert self._select_subprotocol is not None
        connection = self._wrap(native)
        try:
            return cast(
                "str | None", await _call(self._select_subprotocol, connection, offered)
            )
        except Exception:
            connection.logger.error("select_subprotocol failed", exc_info=True)
            raise InvalidHandshake("select_subprotocol failed") from None

    async def _handle(self, native: _AnywsServerConnection) -> None:
        connection = self._wrap(native)
        self._handlers += 1
        try:
            with unwrap_exception_group():
                async with anyio.create_task_group() as task_group:
                    connection._outbox.start(task_group)
                    try:
                        if self._takes_path:
                            assert native.request is not None
                            await self.handler(connection, native.request.path)
                        else:
                            await self.handler(connection)
                    finally:
                        # Let messages broadcast earlier go out before the Close.
                        with anyio.CancelScope(shield=True):
                            await connection._outbox.stop(self._close_timeout)
                        task_group.cancel_scope.cancel()
        finally:
            self._handlers -= 1
            if not self._handlers:
                self._handlers_idle.set()
                self._handlers_idle = anyio.Event()

    # -- running ----------------------------------------------------------------

    @asynccontextmanager
    async def _session(self) -> AsyncIterator[Server]:
        with unwrap_exception_group():
            async with anyio.create_task_group() as task_group:
                self._task_group = task_group
                self.server = server = await task_group.start(self._run)
                for sock in server.sockets:
                    self.logger.info("server listening on %s", sock.getsockname())
                try:
                    yield self
                except BaseException:
                    await self._shutdown(force=True)
                    raise
                await self._shutdown()

    async def _run(self, *, task_status: anyio.abc.TaskStatus[_AnywsServer]) -> None:
        # The anyws server runs in a task of its own, shielded: cancelling the code
        # in ``async with serve(...)`` (asyncio.run() does on Ctrl-C) then closes
        # the connections gracefully, as websockets does, instead of aborting them.
        hooks: dict[str, Any] = dict(
            process_request=self._on_request, process_response=self._on_response
        )
        if self._select_subprotocol is not None:
            hooks["select_subprotocol"] = self._on_subprotocols
        with anyio.CancelScope(shield=True):
            async with self._start(self._handle, **hooks) as server:
                task_status.started(server)
                await server.wait_closed()

    def close(
        self,
        close_connections: bool = True,
        code: int = 1001,
        reason: str = "",
    ) -> None:
        """Start closing the server; :meth:`wait_closed` waits for the end.

        Opening handshakes are refused with HTTP 503 from now on. With
        ``close_connections``, open connections are closed with ``code`` and
        ``reason``; otherwise the server waits for their handlers to return. Then
        it stops listening and waits for the handlers, at most ``close_timeout``
        before cancelling them. Idempotent.
        """
        if self._close_args is not None or self._task_group is None:
            return
        self._close_args = (close_connections, code, reason)
        self._task_group.start_soon(self._close, name="websockets close")

    async def _shutdown(self, *, force: bool = False) -> None:
        """Close (if :meth:`close` did not start already) and wait, shielded.

        With ``force`` (on an error or a cancellation), connections are closed even
        if ``close(close_connections=False)`` asked to wait for the clients.
        """
        with anyio.CancelScope(shield=True):
            if self._close_args is None:
                self._close_args = (True, 1001, "")
            elif force and not self._close_args[0]:
                # _close() may be waiting for the handlers already: end them.
                self._close_args = (True, 1001, "")
                async with anyio.create_task_group() as task_group:
                    for connection in self.connections:
                        task_group.start_soon(connection.connection.close, 1001, "")
            # The task that close() started may never run if its task group is
            # cancelled: closing here too is safe, since _close() runs once.
            await self._close()
            assert self.server is not None
            await self.server.wait_closed()

    async def _close(self) -> None:
        if self._closing:
            return
        assert self.server is not None and self._close_args is not None
        close_connections, code, reason = self._close_args
        self._closing = True
        with anyio.CancelScope(shield=True):
            self.logger.info("server closing")
            if close_connections:
                async with anyio.create_task_group() as task_group:
                    for connection in self.connections:
                        task_group.start_soon(connection.connection.close, code, reason)
            else:
                while self._handlers:
                    await self._handlers_idle.wait()
            await self.server.aclose()
            self.logger.info("server closed")

    async def wait_closed(self) -> None:
        """Wait until the server is closed and the connection handlers returned."""
        if self.server is None:
            raise RuntimeError("the server isn't started")
        await self.server.wait_closed()
        if self._release is not None:
            await self._release()

    async def serve_forever(self) -> None:
        """Serve until the server is closed; cancelling it closes the server."""
        try:
            await self.wait_closed()
        except anyio.get_cancelled_exc_class():
            await self._shutdown(force=True)
            raise

    # -- the three forms ----------------------------------------------------------

    def __await__(self) -> Generator[Any, None, Server]:
        return self._await().__await__()

    async def _await(self) -> Server:
        if self._session_cm is not None or self.server is not None:
            raise RuntimeError("the server is started already")
        server, self._release = await hold_open(
            self._session(),
            lambda server: server.wait_closed(),
            form="await serve(...)",
            instead="async with serve(...) as server:",
        )
        return server

    async def __aenter__(self) -> Server:
        if self._session_cm is not None or self.server is not None:
            raise RuntimeError("the server is started already")
        session = self._session()
        await session.__aenter__()
        self._session_cm = session
        return self

    async def __aexit__(
        self,
        exc_type: type[BaseException] | None,
        exc_value: BaseException | None,
        traceback: TracebackType | None,
    ) -> None:
        session, self._session_cm = self._session_cm, None
        await session.__aexit__(exc_type, exc_value, traceback)


@asynccontextmanager
async def _serve_listeners(
    listen: Callable[[], Awaitable[SocketListener]],
    handler: Callable[..., Awaitable[None]],
    **options: Any,
) -> AsyncIterator[_AnywsServer]:
    """:func:`anyws.serve` over a listener of ours: a Unix socket or a given socket.

    :func:`anyws.serve` opens TCP listeners only, so this runs its
    :class:`anyws.Server` the same way over the listener given.
    """
    listener = await listen()
    try:
        server = _AnywsServer([listener], handler, _Options(**options))
    except BaseException:
        await anyio.aclose_forcefully(listener)
        raise
    async with server._serving():
        yield server


def serve(
    handler: Handler,
    host: str | None = None,
    port: int | None = None,
    *,
    # WebSocket
    origins: Sequence[Origin | re.Pattern[str] | None] | None = None,
    extensions: Sequence[Any] | None = None,
    subprotocols: Sequence[Subprotocol] | None = None,
    select_subprotocol: (
        Callable[[ServerConnection, Sequence[Subprotocol]], Subprotocol | None] | None
    ) = None,
    compression: str | None = "deflate",
    # HTTP
    process_request: (
        Callable[
            [ServerConnection, Request], Awaitable[Response | None] | Response | None
        ]
        | None
    ) = None,
    process_response: (
        Callable[
            [ServerConnection, Request, Response],
            Awaitable[Response | None] | Response | None,
        ]
        | None
    ) = None,
    server_header: str | None = SERVER,
    # Timeouts
    open_timeout: float | None = 10,
    ping_interval: float | None = 20,
    ping_timeout: float | None = 20,
    close_timeout: float | None = 10,
    # Limits
    max_size: int | None | tuple[int | None, int | None] = 2**20,
    max_queue: int | None | tuple[int | None, int | None] = 16,
    write_limit: int | tuple[int, int | None] = 2**15,
    # Logging
    logger: LoggerLike | None = None,
    # Escape hatch for advanced customization
    create_connection: type[ServerConnection] | None = None,
    # Other keyword arguments are those of asyncio's create_server()
    **kwargs: Any,
) -> Server:
    """Create a WebSocket server listening on ``host`` and ``port``.

    ::

        async def handler(websocket):
            async for message in websocket:
                await websocket.send(message)

        async with serve(handler, "localhost", 8765) as server:
            await server.serve_forever()

    The arguments are those of ``websockets.asyncio.server.serve``, with these
    differences:

    * ``extensions`` isn't supported; ``compression`` is.
    * ``max_size=(message, fragment)`` supports no fragment limit below the
      message limit; ``max_queue=(high, low)`` uses ``high``, counting messages.
    * ``write_limit`` bounds the bytes :func:`broadcast` may queue for a
      connection before skipping it as too slow.
    * ``create_connection`` is called as ``create_connection(connection, server,
      write_limit=...)`` with the anyws connection.
    * Of the keyword arguments of asyncio's ``create_server()``, ``ssl`` and
      ``sock`` are supported (and ``start_serving=True``); others raise
      :exc:`TypeError`.

    The handler may also take ``(websocket, path)``, as in ``websockets`` 10.
    """
    check_options("serve", kwargs, _EXTRA_KWARGS, extensions, compression)
    if not kwargs.get("start_serving", True):
        raise NotImplementedError("start_serving=False isn't supported")
    if logger is None:
        logger = logging.getLogger("websockets.server")
    options: dict[str, Any] = dict(
        ssl=kwargs.get("ssl"),
        subprotocols=subprotocols,
        compression=compression,
        server_header=server_header,
        open_timeout=open_timeout,
        ping_interval=ping_interval,
        ping_timeout=ping_timeout,
        close_timeout=close_timeout,
        max_size=limit_option(max_size, "max_size"),
        max_queue=limit_option(max_queue, "max_queue"),
        logger=logger,
    )
    sock = kwargs.get("sock")
    listen: Callable[[], Awaitable[SocketListener]] | None = None
    if kwargs.get("unix"):
        path: PathLike | None = kwargs.get("path")
        if sock is not None:
            listen = lambda: anyio.abc.SocketListener.from_socket(sock)  # noqa: E731
        elif path is not None:
            listen = lambda: anyio.create_unix_listener(path)  # noqa: E731
        else:
            raise TypeError("unix_serve() needs a path or a sock")
    elif sock is not None:
        if host is not None or port is not None:
            raise ValueError("host and port are incompatible with sock")
        listen = lambda: SocketListener.from_socket(sock)  # noqa: E731

    def start(
        anyws_handler: Callable[..., Awaitable[None]], **hooks: Any
    ) -> AbstractAsyncContextManager[_AnywsServer]:
        if listen is not None:
            return _serve_listeners(listen, anyws_handler, **options, **hooks)
        return _anyws_serve(anyws_handler, host, port or 0, **options, **hooks)

    return Server(
        start,
        handler,
        origins=origins,
        process_request=process_request,
        process_response=process_response,
        select_subprotocol=select_subprotocol,
        close_timeout=close_timeout,
        write_limit=write_limit,
        logger=logger,
        create_connection=create_connection,
    )


def unix_serve(
    handler: Handler,
    path: PathLike | None = None,
    **kwargs: Any,
) -> Server:
    """Create a WebSocket server listening on the Unix socket at ``path``.

    Takes the keyword arguments of :func:`serve`.
    """
    return serve(handler, unix=True, path=path, **kwargs)


# -- HTTP Basic Authentication (RFC 7617) ------------------------------------------


def _quoted(value: str) -> str:
    return '"' + value.replace("\\", "\\\\").replace('"', '\\"') + '"'


def _parse_basic(header: str) -> tuple[str, str]:
    scheme, _, token = header.partition(" ")
    if scheme.lower() != "basic":
        raise InvalidHeaderValue("Authorization", f"unsupported scheme: {scheme}")
    try:
        decoded = base64.b64decode(token.strip().encode(), validate=True)
    except (binascii.Error, UnicodeEncodeError):
        raise InvalidHeaderValue(
            "Authorization", "expected base64-encoded credentials"
        ) from None
    username, sep, password = decoded.decode(errors="surrogateescape").partition(":")
    if not sep:
        raise InvalidHeaderValue(
            "Authorization", "expected username:password credentials"
        )
    return username, password


def _is_credentials(value: Any) -> bool:
    try:
        username, password = value
    except (TypeError, ValueError):
        return False
    return isinstance(username, str) and isinstance(password, str)


def basic_auth(
    realm: str = "",
    credentials: tuple[str, str] | Iterable[tuple[str, str]] | None = None,
    check_credentials: Callable[[str, str], Awaitable[bool] | bool] | None = None,
) -> Callable[[ServerConnection, Request], Awaitable[Response | None]]:
    """Make a ``process_request`` that enforces HTTP Basic Authentication.

    Give either ``credentials``, a ``(username, password)`` pair or several, or
    ``check_credentials(username, password)``, a function or coroutine. On success
    the connection's ``username`` is set; otherwise the request gets HTTP 401.

    Raises:
        TypeError: ``credentials`` isn't a pair or an iterable of pairs.
        ValueError: both or neither of ``credentials`` and ``check_credentials``.
    """
    if (credentials is None) == (check_credentials is None):
        raise ValueError("provide either credentials or check_credentials")
    if credentials is not None:
        if _is_credentials(credentials):
            pairs = [cast("tuple[str, str]", credentials)]
        elif isinstance(credentials, Iterable):
            pairs = list(cast("Iterable[tuple[str, str]]", credentials))
            if not all(_is_credentials(pair) for pair in pairs):
                raise TypeError(f"invalid credentials argument: {credentials}")
        else:
            raise TypeError(f"invalid credentials argument: {credentials}")
        known = dict(pairs)

        def check_known(username: str, password: str) -> bool:
            expected = known.get(username)
            if expected is None:
                return False
            return hmac.compare_digest(
                expected.encode(errors="surrogateescape"),
                password.encode(errors="surrogateescape"),
            )

        check_credentials = check_known
    check = check_credentials
    assert check is not None
    challenge = f"Basic realm={_quoted(realm)}, charset={_quoted('UTF-8')}"

    def refuse(connection: ServerConnection, text: str) -> Response:
        response = connection.respond(http.HTTPStatus.UNAUTHORIZED, text)
        response.headers["WWW-Authenticate"] = challenge
        return response

    async def process_request(
        connection: ServerConnection, request: Request
    ) -> Response | None:
        try:
            authorization = request.headers["Authorization"]
        except KeyError:
            return refuse(connection, "Missing credentials\n")
        try:
            username, password = _parse_basic(authorization)
        except InvalidHeaderValue:
            return refuse(connection, "Unsupported credentials\n")
        if not await _call(check, username, password):
            return refuse(connection, "Invalid credentials\n")
        connection.username = username
        return None

    return process_request

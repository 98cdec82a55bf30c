"""The blocking server: :func:`serve`, :class:`Server` and :class:`ServerConnection`.

A server runs in one event-loop thread, started by an anyio blocking portal
(:func:`anyio.from_thread.start_blocking_portal`), where the async
:func:`anyws.serve` accepts connections and runs their handshakes. For each
connection, a new thread runs the application's plain-function handler; the
connection's async task waits for that thread to end, then the async server closes
the connection as usual (1000 after a return, 1011 after an exception).

Handshake hooks (``process_request``, ``process_response``, ``select_subprotocol``)
are plain functions too; they run in worker threads of the event loop
(:func:`anyio.to_thread.run_sync`), so they may block.
"""

from __future__ import annotations

import concurrent.futures
import threading
import weakref
from typing import TYPE_CHECKING, Any, Literal, TypeVar

import anyio
from anyio.from_thread import start_blocking_portal

from .. import _client, _server
from .._http import make_response
from ._connection import Connection, _Call

if TYPE_CHECKING:
    import logging
    import socket
    import ssl as ssl_module
    from collections.abc import Callable, Sequence
    from contextlib import AbstractAsyncContextManager, AbstractContextManager

    from anyio.abc import TaskStatus
    from anyio.from_thread import BlockingPortal

    from .._http import HeadersLike, Request, Response

__all__ = ["Server", "ServerConnection", "serve"]

T = TypeVar("T")


class ServerConnection(Connection):
    """The server side of a blocking WebSocket connection, passed to the handler."""

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


class Server:
    """A blocking WebSocket server, made by :func:`serve`.

    Use it as a context manager; leaving the block shuts the server down::

        with anyws.sync.serve(echo, "127.0.0.1", 8765) as server:
            server.serve_forever()
    """

    def __init__(
        self,
        handler: Callable[[ServerConnection], None],
        process_request: Callable[[ServerConnection, Request], Response | None] | None,
        process_response: Callable[
            [ServerConnection, Request, Response], Response | None
        ]
        | None,
        select_subprotocol: Callable[[ServerConnection, Sequence[str]], str | None]
        | None,
    ) -> None:
        self._handler = handler
        self._process_request = process_request
        self._process_response = process_response
        self._select_subprotocol = select_subprotocol
        self._server: _server.Server | None = None
        self._portal: BlockingPortal | None = None
        self._portal_cm: AbstractContextManager[BlockingPortal] | None = None
        self._holder: concurrent.futures.Future[None] | None = None
        self._stop: anyio.Event | None = None
        self._wrappers: weakref.WeakKeyDictionary[
            _server.ServerConnection, ServerConnection
        ] = weakref.WeakKeyDictionary()
        self._threads: set[threading.Thread] = set()
        self._threads_lock = threading.Lock()
        self._shutdown_lock = threading.Lock()
        # Set in the threads that run handlers and hooks, which shutdown() waits for.
        self._inside = threading.local()

    # -- attributes -----------------------------------------------------------

    @property
    def _async_server(self) -> _server.Server:
        assert self._server is not None, "the server isn't started"
        return self._server

    @property
    def port(self) -> int:
        """The port the server listens on (the first one, if there are several)."""
        return self._async_server.port

    @property
    def sockets(self) -> list[socket.socket]:
        """The listening sockets."""
        return self._async_server.sockets

    @property
    def socket(self) -> socket.socket:
        """The listening socket (the first one, if there are several)."""
        return self.sockets[0]

    # -- running --------------------------------------------------------------

    def _start(
        self,
        context: AbstractAsyncContextManager[_server.Server],
        backend: str,
        backend_options: dict[str, Any] | None,
    ) -> None:
        portal_cm = start_blocking_portal(backend, backend_options)
        # Set before the server starts: connections may come in at once.
        self._portal = portal = portal_cm.__enter__()
        try:
            self._holder, (self._server, self._stop) = portal.start_task(
                _hold, context, name="anyws sync server"
            )
        except BaseException as exc:
            self._portal = None
            portal_cm.__exit__(type(exc), exc, exc.__traceback__)
            raise
        self._portal_cm = portal_cm

    def serve_forever(self) -> None:
        """Block until :meth:`shutdown` is called, then finish shutting down.

        A ``KeyboardInterrupt`` (Ctrl-C) stops the wait and propagates; leaving the
        ``with`` block then shuts the server down.
        """
        portal = self._portal
        if portal is None:
            return
        try:
            _Call(portal, self._async_server.serve_forever, ()).wait()
        except (RuntimeError, concurrent.futures.CancelledError):
            pass  # the event loop stopped meanwhile
        self.shutdown()

    def shutdown(self) -> None:
        """Shut the server down; may be called from any thread.

        Stops accepting connections, closes every connection with code 1001 (going
        away), waits up to ``close_timeout`` for the handlers to return, then stops
        the event loop and joins every thread the server started. A handler thread
        that never returns keeps the server from stopping.

        Called from a handler or a hook, it starts the shutdown and returns at once:
        the handler or hook must return for the shutdown to finish. Calling it again
        waits for the first call to finish.
        """
        portal = self._portal
        if getattr(self._inside, "flag", False):
            if portal is not None:
                try:
                    portal.start_task_soon(self._async_server.aclose)
                except RuntimeError:
                    pass
            return
        with self._shutdown_lock:
            portal, portal_cm = self._portal, self._portal_cm
            if portal is None or portal_cm is None:
                return
            assert self._stop is not None and self._holder is not None
            try:
                _Call(portal, self._async_server.aclose, ()).wait()
                portal.call(self._stop.set)
                self._holder.result()
            except BaseException as exc:
                self._portal = self._portal_cm = None
                portal_cm.__exit__(type(exc), exc, exc.__traceback__)
                raise
            self._portal = self._portal_cm = None
            portal_cm.__exit__(None, None, None)
            with self._threads_lock:
                threads = list(self._threads)
            for thread in threads:
                thread.join()

    def __enter__(self) -> Server:
        return self

    def __exit__(self, *exc_info: object) -> None:
        self.shutdown()

    # -- in the event loop ----------------------------------------------------

    def _wrap(self, connection: _server.ServerConnection) -> ServerConnection:
        wrapper = self._wrappers.get(connection)
        if wrapper is None:
            assert self._portal is not None
            wrapper = ServerConnection(connection, self._portal)
            self._wrappers[connection] = wrapper
        return wrapper

    async def _handle(self, connection: _server.ServerConnection) -> None:
        """Run the handler in a thread of its own and wait for it to return."""
        wrapper = self._wrap(connection)
        portal = self._portal
        done = anyio.Event()
        outcome: list[BaseException] = []

        def run() -> None:
            self._inside.flag = True
            try:
                self._handler(wrapper)
            except BaseException as exc:
                outcome.append(exc)
            finally:
                try:
                    assert portal is not None
                    portal.call(done.set)
                except RuntimeError:  # pragma: no cover - the portal outlives us
                    pass

        thread = threading.Thread(
            target=run, name=f"anyws handler {_describe(connection)}", daemon=True
        )
        with self._threads_lock:
            self._threads = {t for t in self._threads if t.is_alive()}
            self._threads.add(thread)
        thread.start()
        # A thread cannot be cancelled: wait for it even when the server closes.
        with anyio.CancelScope(shield=True):
            await done.wait()
        if outcome:
            exc = outcome[0]
            if not isinstance(exc, Exception):
                raise RuntimeError(f"connection handler raised {exc!r}") from exc
            raise exc

    def _run_hook(self, hook: Callable[..., T], *args: Any) -> T:
        self._inside.flag = True
        try:
            return hook(*args)
        finally:
            self._inside.flag = False

    async def _hook_request(
        self, connection: _server.ServerConnection, request: Request
    ) -> Response | None:
        assert self._process_request is not None
        return await anyio.to_thread.run_sync(
            self._run_hook, self._process_request, self._wrap(connection), request
        )

    async def _hook_response(
        self,
        connection: _server.ServerConnection,
        request: Request,
        response: Response,
    ) -> Response | None:
        assert self._process_response is not None
        return await anyio.to_thread.run_sync(
            self._run_hook,
            self._process_response,
            self._wrap(connection),
            request,
            response,
        )

    async def _hook_subprotocol(
        self, connection: _server.ServerConnection, offered: Sequence[str]
    ) -> str | None:
        assert self._select_subprotocol is not None
        return await anyio.to_thread.run_sync(
            self._run_hook, self._select_subprotocol, self._wrap(connection), offered
        )


def _describe(connection: _server.ServerConnection) -> str:
    address = connection.remote_address
    if isinstance(address, tuple) and len(address) >= 2:
        return f"{address[0]}:{address[1]}"
    return str(connection.id)


async def _hold(
    context: AbstractAsyncContextManager[_server.Server],
    *,
    task_status: TaskStatus[tuple[_server.Server, anyio.Event]],
) -> None:
    """Keep the ``async with serve()`` block open until the stop event is set."""
    threading.current_thread().name = "anyws server"
    stop = anyio.Event()
    async with context as server:
        task_status.started((server, stop))
        await stop.wait()


def serve(
    handler: Callable[[ServerConnection], None],
    host: str | Sequence[str] | None = None,
    port: int = 0,
    *,
    backend: Literal["asyncio", "trio"] = "asyncio",
    backend_options: dict[str, Any] | None = None,
    ssl: ssl_module.SSLContext | None = None,
    subprotocols: Sequence[str] | None = None,
    select_subprotocol: Callable[[ServerConnection, Sequence[str]], str | None]
    | None = None,
    process_request: Callable[[ServerConnection, Request], Response | None]
    | None = None,
    process_response: Callable[[ServerConnection, Request, Response], Response | None]
    | None = None,
    server_header: str | None = _client.USER_AGENT,
    compression: Literal["deflate"] | None = "deflate",
    open_timeout: float | None = 10,
    ping_interval: float | None = 20,
    ping_timeout: float | None = 20,
    close_timeout: float | None = 10,
    max_size: int | None = 2**20,
    max_queue: int | None = 16,
    logger: logging.Logger | logging.LoggerAdapter[Any] | None = None,
) -> Server:
    """Start a blocking WebSocket server, listening when this returns.

    ::

        def echo(ws):
            for message in ws:
                ws.send(message)

        with anyws.sync.serve(echo, "127.0.0.1", 8765) as server:
            server.serve_forever()

    Args:
        handler: a plain function called with each :class:`ServerConnection`, in a
            thread of its own, once the handshake succeeds. When it returns, the
            connection closes with 1000; when it raises, the error is logged and
            the connection closes with 1011.
        host: the interface(s) to listen on; ``None`` for all, IPv4 and IPv6.
        port: the port; 0 picks a free one (see :attr:`Server.port`).
        backend: the event loop run in the server's thread: ``"asyncio"`` or
            ``"trio"``.
        backend_options: options for that event loop, as for :func:`anyio.run`.
        select_subprotocol, process_request, process_response: plain functions,
            as for :func:`anyws.serve` but given the blocking
            :class:`ServerConnection`; they run in worker threads.

    The other options are those of :func:`anyws.serve`.
    """
    server = Server(handler, process_request, process_response, select_subprotocol)
    context = _server.serve(
        server._handle,
        host,
        port,
        ssl=ssl,
        subprotocols=subprotocols,
        select_subprotocol=(
            None if select_subprotocol is None else server._hook_subprotocol
        ),
        process_request=None if process_request is None else server._hook_request,
        process_response=None if process_response is None else server._hook_response,
        server_header=server_header,
        compression=compression,
        open_timeout=open_timeout,
        ping_interval=ping_interval,
        ping_timeout=ping_timeout,
        close_timeout=close_timeout,
        max_size=max_size,
        max_queue=max_queue,
        logger=logger,
    )
    server._start(context, backend, backend_options)
    return server

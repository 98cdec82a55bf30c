"""The blocking client: :func:`connect` and :class:`ClientConnection`.

Each connection runs in an event-loop thread of its own: :func:`connect` starts an
anyio blocking portal (:func:`anyio.from_thread.start_blocking_portal`), runs the
async :func:`anyws.connect` in it, and keeps that ``async with`` block open in a task
of the portal until :meth:`ClientConnection.close`. Closing leaves the block, stops
the portal and joins its thread.
"""

from __future__ import annotations

import threading
from typing import TYPE_CHECKING, Any, Literal

import anyio
from anyio.from_thread import start_blocking_portal

from .. import _client
from ._connection import Connection

if TYPE_CHECKING:
    import concurrent.futures
    import logging
    import ssl as ssl_module
    from collections.abc import Sequence
    from contextlib import AbstractAsyncContextManager, AbstractContextManager

    from anyio.abc import TaskStatus
    from anyio.from_thread import BlockingPortal

    from .._http import HeadersLike

__all__ = ["ClientConnection", "connect"]


class ClientConnection(Connection):
    """The client side of a blocking WebSocket connection, made by :func:`connect`.

    It owns the thread that runs its event loop; :meth:`close` (or leaving the
    ``with`` block) stops and joins that thread.
    """

    def __init__(
        self,
        connection: _client.ClientConnection,
        portal: BlockingPortal,
        portal_cm: AbstractContextManager[BlockingPortal],
        holder: concurrent.futures.Future[None],
        stop: anyio.Event,
    ) -> None:
        super().__init__(connection, portal)
        self._portal_cm: AbstractContextManager[BlockingPortal] | None = portal_cm
        self._holder = holder
        self._stop = stop
        self._close_lock = threading.Lock()

    def close(self, code: int = 1000, reason: str = "") -> None:
        """Perform the closing handshake, then stop the connection's thread.

        Sends a Close frame with ``code`` and ``reason``, waits up to
        ``close_timeout`` for the peer's answer and for TCP to close, then stops the
        event loop and joins its thread. May be called from any thread; a
        :meth:`recv` blocked in another thread then raises
        :exc:`~anyws.ConnectionClosed`. Calling it again does nothing.

        Raises:
            ValueError: ``code`` may not be sent (e.g. 1005, 1006, 999).
        """
        with self._close_lock:
            if self._portal_cm is None:
                return
            try:
                super().close(code, reason)
            except ValueError:
                raise
            except BaseException as exc:
                self._shut_down(exc)
                raise
            self._shut_down(None)

    def _shut_down(self, exc: BaseException | None) -> None:
        portal, portal_cm = self._portal, self._portal_cm
        assert portal is not None and portal_cm is not None
        self._portal = self._portal_cm = None
        try:
            portal.call(self._stop.set)
            if exc is None:
                self._holder.result()
        finally:
            # Stopping the portal joins its thread; after an interruption it cancels
            # what still runs there.
            if exc is None:
                portal_cm.__exit__(None, None, None)
            else:
                portal_cm.__exit__(type(exc), exc, exc.__traceback__)

    def __enter__(self) -> ClientConnection:
        return self


async def _hold(
    context: AbstractAsyncContextManager[_client.ClientConnection],
    name: str,
    *,
    task_status: TaskStatus[tuple[_client.ClientConnection, anyio.Event]],
) -> None:
    """Keep the ``async with connect()`` block open until the stop event is set."""
    threading.current_thread().name = name
    stop = anyio.Event()
    async with context as connection:
        task_status.started((connection, stop))
        await stop.wait()


def connect(
    uri: str,
    *,
    backend: Literal["asyncio", "trio"] = "asyncio",
    backend_options: dict[str, Any] | None = None,
    subprotocols: Sequence[str] | None = None,
    additional_headers: HeadersLike | None = None,
    origin: str | None = None,
    user_agent_header: str | None = _client.USER_AGENT,
    compression: Literal["deflate"] | None = "deflate",
    open_timeout: float | None = 10,
    ping_interval: float | None = 20,
    ping_timeout: float | None = 20,
    close_timeout: float | None = 10,
    max_size: int | None = 2**20,
    max_queue: int | None = 16,
    ssl: ssl_module.SSLContext | bool | None = None,
    server_hostname: str | None = None,
    logger: logging.Logger | logging.LoggerAdapter[Any] | None = None,
) -> ClientConnection:
    """Connect to a WebSocket server and return a blocking connection.

    Use it as a context manager, or call :meth:`ClientConnection.close` when done::

        with anyws.sync.connect("ws://127.0.0.1:8765/") as ws:
            ws.send("hello")
            print(ws.recv(timeout=5))

    The connection runs in an event-loop thread of its own, which closing stops.

    Args:
        uri: the ``ws://`` or ``wss://`` URI.
        backend: the event loop run in the connection's thread: ``"asyncio"`` or
            ``"trio"``.
        backend_options: options for that event loop, as for :func:`anyio.run`.

    The other options are those of :func:`anyws.connect`, except ``stream``: an
    anyio stream belongs to the event loop that made it.

    Raises:
        InvalidURI: ``uri`` isn't a valid WebSocket URI.
        InvalidStatus: the server refused the handshake (the response is attached).
        InvalidHandshake: the handshake failed otherwise.
        TimeoutError: the connection didn't open within ``open_timeout``.
        OSError: the TCP connection or TLS failed.
    """
    # Checked here, before a thread starts; the name leaves out any password.
    name = f"anyws client {_client.parse_uri(uri)}"
    context = _client.connect(
        uri,
        subprotocols=subprotocols,
        additional_headers=additional_headers,
        origin=origin,
        user_agent_header=user_agent_header,
        compression=compression,
        open_timeout=open_timeout,
        ping_interval=ping_interval,
        ping_timeout=ping_timeout,
        close_timeout=close_timeout,
        max_size=max_size,
        max_queue=max_queue,
        ssl=ssl,
        server_hostname=server_hostname,
        logger=logger,
    )
    portal_cm = start_blocking_portal(backend, backend_options)
    portal = portal_cm.__enter__()
    try:
        holder, (connection, stop) = portal.start_task(
            _hold, context, name, name="anyws sync client"
        )
    except BaseException as exc:
        # An interruption cancels the handshake; an error has ended it already.
        portal_cm.__exit__(type(exc), exc, exc.__traceback__)
        raise
    return ClientConnection(connection, portal, portal_cm, holder, stop)

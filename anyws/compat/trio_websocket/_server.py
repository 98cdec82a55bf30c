"""The server side: serve_websocket, WebSocketServer, WebSocketRequest."""

from __future__ import annotations

import errno
from typing import TYPE_CHECKING, Any, NoReturn

import anyio
from anyio.streams.tls import TLSListener

import anyws

from ._adapters import _as_anyio, _Source
from ._common import (
    _CONN_TIMEOUT,
    _MAX_MESSAGE_SIZE,
    _MESSAGE_QUEUE_SIZE,
    _RECEIVE_BYTES,
    _REQUEST_SKIP,
    _byte_pairs,
    _logger,
    _max_queue,
    _str_pairs,
)
from ._connection import WebSocketConnection, _hold
from ._exceptions import (
    CloseReason,
    ConnectionClosed,
    Endpoint,
    HandshakeError,
    _endpoint,
)

if TYPE_CHECKING:
    import ssl
    from collections.abc import Awaitable, Callable, Sequence

    from anyio.abc import ByteStream, TaskStatus

    from ._common import _Nursery

# accept() errors that mean "out of resources": wait and retry, as trio does.
_ACCEPT_CAPACITY_ERRNOS = frozenset(
    {errno.EMFILE, errno.ENFILE, errno.ENOMEM, errno.ENOBUFS}
)


class WebSocketRequest:
    """A client's handshake request, for the server to accept or reject."""

    def __init__(
        self, handshake: _Handshake, request: anyws.Request, offered: Sequence[str]
    ) -> None:
        self._handshake = handshake
        self._request = request
        self._headers = _byte_pairs(request.headers, _REQUEST_SKIP)
        self._offered = tuple(offered)
        self._local, self._remote = handshake.endpoints

    @property
    def headers(self) -> list[tuple[bytes, bytes]]:
        """The request headers, ``(name, value)`` byte pairs, names lower case."""
        return self._headers

    @property
    def path(self) -> str:
        """The request target: path and query string."""
        return self._request.path

    @property
    def proposed_subprotocols(self) -> tuple[str, ...]:
        """The subprotocols the client offered."""
        return self._offered

    @property
    def local(self) -> Endpoint | str:
        """The local endpoint of the connection."""
        return self._local

    @property
    def remote(self) -> Endpoint | str:
        """The remote endpoint of the connection."""
        return self._remote

    async def accept(
        self,
        *,
        subprotocol: str | None = None,
        extra_headers: list[tuple[bytes, bytes]] | None = None,
    ) -> WebSocketConnection:
        """Accept the handshake; return the open connection once the 101 is sent.

        Raises:
            ValueError: ``subprotocol`` was not offered by the client.
            ConnectionClosed: the connection was lost during the handshake.
        """
        if subprotocol is not None and subprotocol not in self._offered:
            raise ValueError(f"unexpected subprotocol {subprotocol}")
        handshake = self._handshake
        handshake.decide(subprotocol, _str_pairs(extra_headers), None)
        await handshake.opened.wait()
        if handshake.connection is None:
            raise ConnectionClosed(CloseReason(1006, None))
        return handshake.connection

    async def reject(
        self,
        status_code: int,
        *,
        extra_headers: list[tuple[bytes, bytes]] | None = None,
        body: bytes | None = None,
    ) -> None:
        """Refuse the handshake with an HTTP response; return once it is sent."""
        rejection = (status_code, _str_pairs(extra_headers), body or b"")
        self._handshake.decide(None, [], rejection)
        await self._handshake.done.wait()


class _Handshake:
    """The server side of one connection: runs anyws.accept() until it is closed."""

    def __init__(
        self,
        stream: ByteStream,
        raw: object,
        *,
        ssl_context: ssl.SSLContext | None,
        is_ssl: bool,
        message_queue_size: int,
        max_message_size: int,
        disconnect_timeout: float,
    ) -> None:
        self._stream = stream
        self._raw = raw
        self._ssl_context = ssl_context
        self._is_ssl = is_ssl
        self._options = (message_queue_size, max_message_size, disconnect_timeout)
        self.on_request: Callable[[WebSocketRequest], object] | None = None
        self.request: WebSocketRequest | None = None
        self.connection: WebSocketConnection | None = None
        self.error: BaseException | None = None
        self.scope = anyio.CancelScope()
        self.ready = anyio.Event()  # the request arrived, or the handshake ended
        self.opened = anyio.Event()  # the connection opened, or the handshake ended
        self.done = anyio.Event()  # the handshake or the connection ended
        self._decided = anyio.Event()
        self._subprotocol: str | None = None
        self._headers: list[tuple[str, str]] = []
        self._rejection: tuple[int, list[tuple[str, str]], bytes] | None = None
        self._native: anyws.ServerConnection | None = None

    @property
    def endpoints(self) -> tuple[Endpoint | str, Endpoint | str]:
        native = self._native
        assert native is not None
        return (
            _endpoint(native.local_address, self._is_ssl, self._raw),
            _endpoint(native.remote_address, self._is_ssl, self._raw),
        )

    def decide(
        self,
        subprotocol: str | None,
        headers: list[tuple[str, str]],
        rejection: tuple[int, list[tuple[str, str]], bytes] | None,
    ) -> None:
        if self._decided.is_set():
            raise RuntimeError("this request was already accepted or rejected")
        self._subprotocol = subprotocol
        self._headers = headers
        self._rejection = rejection
        self._decided.set()

    @property
    def decided(self) -> bool:
        return self._decided.is_set()

    async def _select(
        self, native: anyws.ServerConnection, offered: Sequence[str]
    ) -> str | None:
        # Called by anyws once the request is a valid upgrade: let the handler decide.
        assert native.request is not None
        self._native = native
        self.request = WebSocketRequest(self, native.request, offered)
        self.ready.set()
        if self.on_request is not None:
            self.on_request(self.request)
        await self._decided.wait()
        return self._subprotocol

    def _respond(
        self,
        native: anyws.ServerConnection,
        request: anyws.Request,
        response: anyws.Response,
    ) -> anyws.Response | None:
        if self._rejection is not None:
            status_code, headers, body = self._rejection
            return native.respond(status_code, body, headers)
        if response.status_code == 101:
            response.headers.update(self._headers)
        return None

    async def run(self) -> None:
        message_queue_size, max_message_size, disconnect_timeout = self._options
        try:
            with self.scope:
                async with anyws.accept(
                    self._stream,
                    ssl=self._ssl_context,
                    select_subprotocol=self._select,
                    process_response=self._respond,
                    server_header=None,
                    compression=None,
                    open_timeout=None,
                    ping_interval=None,
                    close_timeout=disconnect_timeout,
                    max_size=max_message_size,
                    max_queue=_max_queue(message_queue_size),
                    logger=_logger,
                ) as native:
                    assert native.request is not None
                    self.connection = WebSocketConnection(
                        native, self._raw, is_ssl=self._is_ssl, path=native.request.path
                    )
                    self.opened.set()
                    await _hold(native)
        except (
            anyws.InvalidHandshake,
            OSError,
            anyio.BrokenResourceError,
            anyio.ClosedResourceError,
            anyio.EndOfStream,
        ) as exc:
            _logger.debug("handshake ended: %r", exc)
            self.error = exc
        finally:
            self.ready.set()
            self.opened.set()
            self.done.set()

    async def finish(self) -> None:
        """After the handler: close the connection it accepted."""
        if not self._decided.is_set():
            return  # the caller cancels the handshake, dropping the connection
        await self.opened.wait()
        if self.connection is not None:
            await self.connection.aclose()


async def _run_server_stream(
    handshake: _Handshake, *, task_status: TaskStatus[WebSocketRequest]
) -> None:
    handshake.on_request = task_status.started
    await handshake.run()
    if handshake.request is None:
        raise HandshakeError("the handshake failed") from handshake.error


async def wrap_server_stream(
    nursery: _Nursery,
    stream: Any,
    message_queue_size: int = _MESSAGE_QUEUE_SIZE,
    max_message_size: int = _MAX_MESSAGE_SIZE,
    receive_buffer_size: int | None = _RECEIVE_BYTES,
) -> WebSocketRequest:
    """Read a client's handshake request from ``stream``; return it to decide on.

    The connection's tasks run in ``nursery``. ``stream`` is an anyio byte stream,
    or a trio stream on trio.

    Raises:
        HandshakeError: the stream did not carry a valid upgrade request.
    """
    anyio_stream, is_ssl = _as_anyio(stream)
    handshake = _Handshake(
        anyio_stream,
        stream,
        ssl_context=None,
        is_ssl=is_ssl,
        message_queue_size=message_queue_size,
        max_message_size=max_message_size,
        disconnect_timeout=_CONN_TIMEOUT,
    )
    request: WebSocketRequest = await nursery.start(_run_server_stream, handshake)
    return request


async def serve_websocket(
    handler: Callable[[WebSocketRequest], Awaitable[None]],
    host: str | bytes | None,
    port: int,
    ssl_context: ssl.SSLContext | None,
    *,
    handler_nursery: _Nursery | None = None,
    message_queue_size: int = _MESSAGE_QUEUE_SIZE,
    max_message_size: int = _MAX_MESSAGE_SIZE,
    receive_buffer_size: int | None = _RECEIVE_BYTES,
    connect_timeout: float = _CONN_TIMEOUT,
    disconnect_timeout: float = _CONN_TIMEOUT,
    task_status: TaskStatus[WebSocketServer] = anyio.TASK_STATUS_IGNORED,
) -> NoReturn:
    """Serve WebSocket over TCP until cancelled.

    ``server = await nursery.start(serve_websocket, handler, host, port, None)``
    returns the :class:`WebSocketServer` once it accepts connections.

    Args:
        handler: called with a :class:`WebSocketRequest` per connection; when it
            returns, the connection it accepted is closed.
        host: the interface to bind; ``None`` binds all of them.
        port: the port; 0 picks a free one (see :attr:`WebSocketServer.port`).
        ssl_context: a server :class:`ssl.SSLContext` for ``wss://``, or ``None``.
        handler_nursery: where to run the handlers; a nursery of its own if ``None``.
        connect_timeout: limit for TLS and the request to arrive.
        disconnect_timeout: limit for the closing handshake.
    """
    if isinstance(host, bytes):
        host = host.decode()
    multi = await anyio.create_tcp_listener(local_host=host, local_port=port)
    listeners: list[Any] = list(multi.listeners)
    try:
        if ssl_context is not None:
            listeners = [TLSListener(each, ssl_context, False) for each in listeners]
        server = WebSocketServer(
            handler,
            listeners,
            handler_nursery=handler_nursery,
            message_queue_size=message_queue_size,
            max_message_size=max_message_size,
            receive_buffer_size=receive_buffer_size,
            connect_timeout=connect_timeout,
            disconnect_timeout=disconnect_timeout,
        )
        await server.run(task_status=task_status)
    finally:
        await anyio.aclose_forcefully(multi)


class WebSocketServer:
    """A WebSocket server over one or more listeners, made by :func:`serve_websocket`.

    ``listeners`` are anyio socket listeners, possibly wrapped in
    :class:`anyio.streams.tls.TLSListener`, or trio listeners on trio.
    """

    def __init__(
        self,
        handler: Callable[[WebSocketRequest], Awaitable[None]],
        listeners: Sequence[Any],
        *,
        handler_nursery: _Nursery | None = None,
        message_queue_size: int = _MESSAGE_QUEUE_SIZE,
        max_message_size: int = _MAX_MESSAGE_SIZE,
        receive_buffer_size: int | None = _RECEIVE_BYTES,
        connect_timeout: float = _CONN_TIMEOUT,
        disconnect_timeout: float = _CONN_TIMEOUT,
    ) -> None:
        if len(listeners) == 0:
            raise ValueError("Listeners must contain at least one item.")
        self._handler = handler
        self._handler_nursery = handler_nursery
        self._sources = [s for one in listeners for s in _Source.flatten(one)]
        self._message_queue_size = message_queue_size
        self._max_message_size = max_message_size
        self._receive_buffer_size = receive_buffer_size
        self._connect_timeout = connect_timeout
        self._disconnect_timeout = disconnect_timeout

    @property
    def port(self) -> int:
        """The port listened on.

        Raises:
            RuntimeError: the server has several listeners, or one without a port.
        """
        if len(self._sources) > 1:
            raise RuntimeError(
                "Cannot get port because this server has more than 1 listener."
            )
        listener = self.listeners[0]
        if not isinstance(listener, Endpoint):
            raise RuntimeError(f"This socket does not have a port: {listener}")
        return listener.port

    @property
    def listeners(self) -> list[Endpoint | str]:
        """An :class:`Endpoint` per TCP listener; the ``repr()`` of any other."""
        return [
            _endpoint(source.address, source.is_ssl, source.listener)
            for source in self._sources
        ]

    async def run(
        self,
        *,
        task_status: TaskStatus[WebSocketServer] = anyio.TASK_STATUS_IGNORED,
    ) -> NoReturn:
        """Serve until cancelled; ``await nursery.start(server.run)`` returns it.

        The listeners are closed when it ends.
        """
        async with anyio.create_task_group() as task_group:
            nursery = self._handler_nursery
            if nursery is None:
                nursery = task_group
            for source in self._sources:
                task_group.start_soon(self._serve, source, nursery)
            _logger.debug("Listening on %s", ",".join(map(str, self.listeners)))
            task_status.started(self)
            await anyio.sleep_forever()
        raise AssertionError("not reached")  # pragma: no cover

    async def _serve(self, source: _Source, nursery: _Nursery) -> None:
        try:
            while True:
                try:
                    stream, raw = await source.accept()
                except OSError as exc:
                    if exc.errno not in _ACCEPT_CAPACITY_ERRNOS:
                        raise
                    _logger.error("accept failed, retrying in 0.1 s: %s", exc)
                    await anyio.sleep(0.1)
                    continue
                nursery.start_soon(self._handle, stream, raw, source)
        finally:
            await source.aclose()

    async def _handle(self, stream: ByteStream, raw: object, source: _Source) -> None:
        handshake = _Handshake(
            stream,
            raw,
            ssl_context=source.ssl_context,
            is_ssl=source.is_ssl,
            message_queue_size=self._message_queue_size,
            max_message_size=self._max_message_size,
            disconnect_timeout=self._disconnect_timeout,
        )
        try:
            async with anyio.create_task_group() as task_group:
                task_group.start_soon(handshake.run)
                with anyio.move_on_after(self._connect_timeout):
                    await handshake.ready.wait()
                if handshake.request is None:
                    handshake.scope.cancel()
                    return
                try:
                    await self._handler(handshake.request)
                except ConnectionClosed as exc:
                    _logger.debug("handler ended on a closed connection: %r", exc)
                finally:
                    with anyio.move_on_after(self._disconnect_timeout):
                        await handshake.finish()
                    handshake.scope.cancel()
        finally:
            await anyio.aclose_forcefully(stream)

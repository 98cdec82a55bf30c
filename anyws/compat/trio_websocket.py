"""A drop-in for trio-websocket 0.12 on anyws, for trio, asyncio and uvloop alike.

Code written for trio-websocket ports with a one-line change::

    import anyws.compat.trio_websocket as trio_websocket

Every public name of ``trio_websocket`` is here with the same signature, defaults,
return values, exceptions and reprs. This module only adapts: it renames, reshapes
arguments and maps exceptions; anyws does the protocol work. The functions that take
a ``nursery`` accept a trio nursery on trio and an anyio task group on any backend;
those that take a stream or listeners accept anyio's, or trio's on trio.

A connection in someone else's nursery
    anyws opens a connection as an async context manager that owns the connection's
    reader task. The functions that take a ``nursery`` start a task there with
    ``nursery.start()``: it opens the connection, hands it back through
    ``task_status.started()``, and holds it open until it is closed. When the nursery
    is cancelled the connection is dropped, as trio-websocket drops it.

A server that decides after seeing the request
    A trio-websocket handler receives a :class:`WebSocketRequest`, looks at it, then
    calls :meth:`~WebSocketRequest.accept` or :meth:`~WebSocketRequest.reject`. anyws
    answers the handshake inside :func:`anyws.accept`, through hooks that run before
    the response goes out. So each connection runs :func:`anyws.accept` in a task of
    its own. Its ``select_subprotocol`` hook, which runs once the request is known to be
    a valid upgrade, hands the request to the handler and waits for the decision; its
    ``process_response`` hook then adds the accepted headers to the 101 response, or
    replaces it with the rejection. ``accept()`` returns once the 101 is sent;
    ``reject()`` once the refusal is sent and the stream closed. ``connect_timeout``
    covers TLS and reading the request; the handler's deliberation is not timed,
    as in trio-websocket.

Where behaviour differs from trio-websocket, it is listed in
``docs/porting-from-trio-websocket.md``.
"""

from __future__ import annotations

import contextlib
import errno
import itertools
import logging
import math
import ssl
import urllib.parse
from contextlib import asynccontextmanager
from ipaddress import ip_address
from typing import TYPE_CHECKING, Any, NoReturn, Protocol, cast

import anyio
from anyio.abc import AsyncResource, ByteStream, SocketAttribute, SocketListener
from anyio.streams.stapled import MultiListener
from anyio.streams.tls import TLSAttribute, TLSListener

import anyws

if TYPE_CHECKING:
    from collections.abc import (
        AsyncIterator,
        Awaitable,
        Callable,
        Coroutine,
        Iterable,
        Iterator,
        Mapping,
        Sequence,
    )
    from contextlib import AbstractAsyncContextManager

    from anyio.abc import TaskStatus

__all__ = [
    "CloseReason",
    "ConnectionClosed",
    "ConnectionRejected",
    "ConnectionTimeout",
    "DisconnectionTimeout",
    "Endpoint",
    "HandshakeError",
    "WebSocketConnection",
    "WebSocketRequest",
    "WebSocketServer",
    "connect_websocket",
    "connect_websocket_url",
    "open_websocket",
    "open_websocket_url",
    "serve_websocket",
    "wrap_client_stream",
    "wrap_server_stream",
]

__version__ = "0.12.2"  # the trio-websocket release whose API this module mirrors

_CONN_TIMEOUT = 60  # default connect and disconnect timeout, in seconds
_MESSAGE_QUEUE_SIZE = 1
_MAX_MESSAGE_SIZE = 2**20
_RECEIVE_BYTES = 4 * 2**10  # accepted for compatibility; anyws sizes its own reads

_logger = logging.getLogger("anyws.compat.trio_websocket")

# Headers that trio-websocket (through wsproto) leaves out of WebSocketRequest.headers
# and of the client's handshake_headers, because they are reported elsewhere.
_REQUEST_SKIP = frozenset(
    {"host", "sec-websocket-extensions", "sec-websocket-protocol"}
)
_RESPONSE_SKIP = frozenset(
    {
        "connection",
        "sec-websocket-accept",
        "sec-websocket-extensions",
        "sec-websocket-protocol",
        "upgrade",
    }
)
# RFC 6455 section 7.4.1: codes that never go on the wire; wsproto sends 1000 instead.
_LOCAL_ONLY_CODES = frozenset({1005, 1006, 1015})
# The names trio-websocket gives close codes (wsproto's CloseReason members).
_CLOSE_NAMES = {
    1000: "NORMAL_CLOSURE",
    1001: "GOING_AWAY",
    1002: "PROTOCOL_ERROR",
    1003: "UNSUPPORTED_DATA",
    1005: "NO_STATUS_RCVD",
    1006: "ABNORMAL_CLOSURE",
    1007: "INVALID_FRAME_PAYLOAD_DATA",
    1008: "POLICY_VIOLATION",
    1009: "MESSAGE_TOO_BIG",
    1010: "MANDATORY_EXT",
    1011: "INTERNAL_ERROR",
    1012: "SERVICE_RESTART",
    1013: "TRY_AGAIN_LATER",
    1015: "TLS_HANDSHAKE_FAILED",
}
# accept() errors that mean "out of resources": wait and retry, as trio does.
_ACCEPT_CAPACITY_ERRNOS = frozenset(
    {errno.EMFILE, errno.ENFILE, errno.ENOMEM, errno.ENOBUFS}
)

_ByteHeaders = list[tuple[bytes, bytes]]


class _Nursery(Protocol):
    """What this module needs of a trio nursery or an anyio task group."""

    def start_soon(
        self,
        func: Callable[..., Coroutine[Any, Any, Any]],
        *args: Any,
        name: object = None,
    ) -> Any: ...

    async def start(
        self,
        func: Callable[..., Coroutine[Any, Any, Any]],
        *args: Any,
        name: object = None,
    ) -> Any: ...


# -- exceptions and values --------------------------------------------------------


class HandshakeError(Exception):
    """Raised when connecting to or disconnecting from a server fails."""


class ConnectionTimeout(HandshakeError):
    """Raised when connecting to a server takes longer than ``connect_timeout``."""


class DisconnectionTimeout(HandshakeError):
    """Raised when disconnecting takes longer than ``disconnect_timeout``."""


class ConnectionClosed(Exception):
    """Raised when using a connection that is closed or closing.

    Attributes:
        reason: the :class:`CloseReason`, or ``None``.
    """

    def __init__(self, reason: CloseReason | None) -> None:
        super().__init__(reason)
        self.reason = reason

    def __repr__(self) -> str:
        return f"{self.__class__.__name__}<{self.reason}>"


class ConnectionRejected(HandshakeError):
    """Raised when the server refuses the handshake with an HTTP response.

    Attributes:
        status_code: the HTTP status code.
        headers: the response headers, ``(name, value)`` byte pairs, names lower case.
        body: the response body.
    """

    def __init__(
        self,
        status_code: int,
        headers: tuple[tuple[bytes, bytes], ...],
        body: bytes | None,
    ) -> None:
        super().__init__(status_code, headers, body)
        self.status_code = status_code
        self.headers = headers
        self.body = body

    def __repr__(self) -> str:
        return f"{self.__class__.__name__}<status_code={self.status_code}>"


class CloseReason:
    """Why a connection was closed: ``code``, its ``name``, and a ``reason`` string."""

    def __init__(self, code: int, reason: str | None) -> None:
        self._code = code
        name = _CLOSE_NAMES.get(code)
        if name is None:
            if 1000 <= code <= 2999:
                name = "RFC_RESERVED"
            elif 3000 <= code <= 3999:
                name = "IANA_RESERVED"
            elif 4000 <= code <= 4999:
                name = "PRIVATE_RESERVED"
            else:
                name = "INVALID_CODE"
        self._name = name
        self._reason = reason

    @property
    def code(self) -> int:
        """The close code."""
        return self._code

    @property
    def name(self) -> str:
        """The close code's name, e.g. ``NORMAL_CLOSURE``."""
        return self._name

    @property
    def reason(self) -> str | None:
        """The reason string, or ``None``."""
        return self._reason

    def __repr__(self) -> str:
        return (
            f"{self.__class__.__name__}"
            f"<code={self.code}, name={self.name}, reason={self.reason}>"
        )


class Endpoint:
    """One end of a TCP connection: ``address``, ``port`` and ``is_ssl``."""

    def __init__(self, address: str | int, port: int, is_ssl: bool) -> None:
        self.address = ip_address(address)
        self.port = port
        self.is_ssl = is_ssl

    @property
    def url(self) -> str:
        """The endpoint as a URL, e.g. ``ws://127.0.0.1:8000``."""
        scheme = "wss" if self.is_ssl else "ws"
        if (self.port == 80 and not self.is_ssl) or (self.port == 443 and self.is_ssl):
            port_str = ""
        else:
            port_str = ":" + str(self.port)
        if self.address.version == 4:
            return f"{scheme}://{self.address}{port_str}"
        return f"{scheme}://[{self.address}]{port_str}"

    def __repr__(self) -> str:
        return (
            f'Endpoint(address="{self.address}", port={self.port}, '
            f"is_ssl={self.is_ssl})"
        )


def _endpoint(address: Any, is_ssl: bool, fallback: object) -> Endpoint | str:
    """An Endpoint for an IP socket address, else the ``repr()`` of ``fallback``."""
    if isinstance(address, tuple) and len(address) >= 2:
        with contextlib.suppress(ValueError):
            return Endpoint(address[0], address[1], is_ssl)
    return repr(fallback)


def _reason_of(exc: anyws.ConnectionClosed) -> CloseReason:
    """The CloseReason trio-websocket reports for what anyws raised."""
    failure = exc.__cause__
    if isinstance(failure, (anyws.PayloadTooBig, anyws.ProtocolError)) and exc.sent:
        return CloseReason(exc.sent.code, exc.sent.reason or None)  # we failed it
    if exc.rcvd is not None:
        return CloseReason(exc.rcvd.code, exc.rcvd.reason or None)
    return CloseReason(1006, None)


def _str_pairs(headers: Iterable[tuple[bytes, bytes]] | None) -> list[tuple[str, str]]:
    return [(n.decode("latin-1"), v.decode("latin-1")) for n, v in headers or ()]


def _byte_pairs(
    headers: anyws.Headers, skip: frozenset[str] = frozenset()
) -> _ByteHeaders:
    return [
        (name.lower().encode("latin-1"), value.encode("latin-1"))
        for name, value in headers.raw_items()
        if name.lower() not in skip
    ]


def _max_queue(message_queue_size: float) -> int | None:
    # trio-websocket buffers in a memory channel; anyws stops reading once
    # ``max_queue`` messages wait, so 0 (a rendezvous) becomes 1.
    if message_queue_size == math.inf:
        return None
    return max(int(message_queue_size), 1)


# -- trio streams and listeners, when given ----------------------------------------


def _trio_socket(obj: Any) -> Any:
    sock = getattr(obj, "socket", None)
    if sock is None:
        inner = getattr(obj, "transport_stream", None) or getattr(
            obj, "transport_listener", None
        )
        sock = getattr(inner, "socket", None)
    return sock


class _TrioStream(ByteStream):
    """An anyio byte stream over a trio stream (``send_all`` and ``receive_some``)."""

    def __init__(self, stream: Any) -> None:
        import trio  # only trio streams come here

        self._stream = stream
        self._trio = trio

    @contextlib.contextmanager
    def _mapped(self) -> Iterator[None]:
        try:
            yield
        except self._trio.ClosedResourceError as exc:
            raise anyio.ClosedResourceError from exc
        except self._trio.BrokenResourceError as exc:
            raise anyio.BrokenResourceError from exc

    async def receive(self, max_bytes: int = 65536) -> bytes:
        with self._mapped():
            data = await self._stream.receive_some(max_bytes)
        if not data:
            raise anyio.EndOfStream
        return bytes(data)

    async def send(self, item: bytes) -> None:
        with self._mapped():
            await self._stream.send_all(item)

    async def send_eof(self) -> None:
        if not hasattr(self._stream, "send_eof"):
            raise NotImplementedError("this trio stream cannot half-close")
        with self._mapped():
            await self._stream.send_eof()

    async def aclose(self) -> None:
        with self._mapped():
            await self._stream.aclose()

    @property
    def extra_attributes(self) -> Mapping[Any, Callable[[], Any]]:
        sock = _trio_socket(self._stream)
        if sock is None:
            return {}
        return {
            SocketAttribute.local_address: sock.getsockname,
            SocketAttribute.remote_address: sock.getpeername,
        }


def _as_anyio(stream: Any) -> tuple[ByteStream, bool]:
    """Return ``stream`` as an anyio byte stream, and whether it is TLS."""
    if isinstance(stream, ByteStream):
        return stream, stream.extra(TLSAttribute.ssl_object, None) is not None
    if hasattr(stream, "send_all") and hasattr(stream, "receive_some"):
        return _TrioStream(stream), hasattr(stream, "transport_stream")
    raise TypeError(f"not an anyio or trio stream: {stream!r}")


class _Source:
    """A listener of a :class:`WebSocketServer`: anyio's or trio's, TLS or not."""

    def __init__(self, listener: Any, ssl_context: ssl.SSLContext | None) -> None:
        # With an ssl_context, TLS runs in each connection's task (connect_timeout).
        self.listener = listener
        self.ssl_context = ssl_context
        self._trio = not isinstance(listener, SocketListener)
        if self._trio and not hasattr(listener, "accept"):
            raise TypeError(f"not an anyio or trio listener: {listener!r}")
        self.is_ssl = ssl_context is not None or hasattr(listener, "transport_listener")
        if not self._trio:
            self.address = listener.extra(SocketAttribute.local_address, None)
        else:
            sock = _trio_socket(listener)
            self.address = None if sock is None else sock.getsockname()

    @classmethod
    def flatten(
        cls, listener: Any, ssl_context: ssl.SSLContext | None = None
    ) -> list[_Source]:
        if isinstance(listener, TLSListener):
            return cls.flatten(listener.listener, listener.ssl_context)
        if isinstance(listener, MultiListener):
            return [
                s for one in listener.listeners for s in cls.flatten(one, ssl_context)
            ]
        return [cls(listener, ssl_context)]

    async def accept(self) -> tuple[ByteStream, object]:
        raw = await self.listener.accept()
        return (_TrioStream(raw) if self._trio else raw), raw

    async def aclose(self) -> None:
        await anyio.aclose_forcefully(cast("AsyncResource", self.listener))


# -- connections -------------------------------------------------------------------


class WebSocketConnection(AsyncResource):
    """A WebSocket connection, made by the functions of this module.

    ``async with connection:`` closes it on exit.
    """

    CONNECTION_ID = itertools.count()

    def __init__(
        self, native: anyws.Connection, raw: object, *, is_ssl: bool, path: str | None
    ) -> None:
        self._native = native
        self._path = path
        # Read the addresses now: the socket may be gone when they are asked for.
        self._local = _endpoint(native.local_address, is_ssl, raw)
        self._remote = _endpoint(native.remote_address, is_ssl, raw)
        self._id = next(self.__class__.CONNECTION_ID)
        self._close_reason: CloseReason | None = None
        self._local_close = False
        self._recv_lock = anyio.Lock()
        self._receivers: set[anyio.CancelScope] = set()
        if native.is_client:
            assert native.response is not None
            self._handshake_headers = tuple(
                _byte_pairs(native.response.headers, _RESPONSE_SKIP)
            )
        else:
            assert native.request is not None
            self._handshake_headers = tuple(
                _byte_pairs(native.request.headers, _REQUEST_SKIP)
            )

    @property
    def closed(self) -> CloseReason | None:
        """Why the connection was or is being closed; ``None`` while it is open."""
        if self._close_reason is None:
            native = self._native
            if native.state is anyws.State.CLOSED:
                assert native.close_code is not None
                self._close_reason = CloseReason(
                    native.close_code, native.close_reason or None
                )
        return self._close_reason

    def _closed_by(self, exc: anyws.ConnectionClosed) -> ConnectionClosed:
        if self._close_reason is None:
            self._close_reason = _reason_of(exc)
        return ConnectionClosed(self._close_reason)

    @property
    def is_client(self) -> bool:
        """Whether this is the client side."""
        return self._native.is_client

    @property
    def is_server(self) -> bool:
        """Whether this is the server side."""
        return not self._native.is_client

    @property
    def local(self) -> Endpoint | str:
        """The local endpoint, or the stream's ``repr()`` if it has no IP address."""
        return self._local

    @property
    def remote(self) -> Endpoint | str:
        """The remote endpoint, or the stream's ``repr()`` if it has no IP address."""
        return self._remote

    @property
    def path(self) -> str | None:
        """The request target: path and query string."""
        return self._path

    @property
    def subprotocol(self) -> str | None:
        """The subprotocol agreed on, or ``None``."""
        return self._native.subprotocol

    @property
    def handshake_headers(self) -> tuple[tuple[bytes, bytes], ...]:
        """The headers the peer sent in the handshake, byte pairs, names lower case.

        A client sees the response headers, a server the request headers.
        """
        return self._handshake_headers

    async def aclose(self, code: int = 1000, reason: str | None = None) -> None:
        """Close the connection: send a Close frame and wait until it is closed.

        Messages not yet received are discarded; further calls to the other methods
        raise :exc:`ConnectionClosed`. Calling it on a closed or closing connection
        returns at once. If it is cancelled, the connection is dropped.

        Raises:
            ValueError: ``code`` cannot go in a Close frame.
        """
        if self.closed is not None or self._native.state is not anyws.State.OPEN:
            return
        # As wsproto does: a code that never goes on the wire becomes 1000, and the
        # reason is cut to the 123 bytes a Close frame holds (RFC 6455 5.5).
        if code in _LOCAL_ONLY_CODES:
            code = 1000
        reason = (reason or "").encode()[:123].decode(errors="ignore")
        native = self._native
        self._close_reason = CloseReason(1000, None)
        self._local_close = True
        for scope in self._receivers:
            scope.cancel()  # get_message() raises at once, as the queue is discarded
        try:
            await native.close(code, reason)
        except ValueError:
            if native.state is anyws.State.OPEN:  # refused before anything was sent
                self._close_reason = None
                self._local_close = False
            raise
        except BaseException:
            await _abort(native)
            raise
        if native.close_code not in (None, 1006):
            assert native.close_code is not None
            self._close_reason = CloseReason(
                native.close_code, native.close_reason or None
            )

    async def get_message(self) -> str | bytes:
        """Receive the next message: :class:`str` for text, :class:`bytes` for binary.

        After the peer closes, the messages it sent before are still returned, then
        :exc:`ConnectionClosed` is raised. After :meth:`aclose`, it raises at once.
        Concurrent calls each get a different message, in order of arrival.
        Cancelling it is safe: no message is lost.

        Raises:
            ConnectionClosed: the connection is closed.
        """
        async with self._recv_lock:
            while not self._local_close:
                with anyio.CancelScope() as scope:
                    self._receivers.add(scope)
                    try:
                        message = await self._native.recv()
                    except anyws.ConnectionClosed as exc:
                        raise self._closed_by(exc) from None
                    finally:
                        self._receivers.discard(scope)
                    if not self._local_close:
                        return message
        raise ConnectionClosed(self.closed)

    async def ping(self, payload: bytes | None = None) -> None:
        """Send a Ping and wait for its Pong.

        A Pong also answers the Pings sent before its own, so it wakes them too.

        Args:
            payload: up to 125 bytes, unique among the Pings in flight; four random
                bytes when ``None``.

        Raises:
            ConnectionClosed: the connection is closed, or closes before the Pong.
            ValueError: a Ping with this payload is already waiting for its Pong.
        """
        if self.closed is not None:
            raise ConnectionClosed(self.closed)
        try:
            await self._native.ping(payload)
        except anyws.ConcurrencyError:
            raise ValueError(
                f"Payload value {payload!r} is already in flight."
            ) from None
        except anyws.ConnectionClosed as exc:
            raise self._closed_by(exc) from None

    async def pong(self, payload: bytes | None = None) -> None:
        """Send an unsolicited Pong, with ``payload`` or empty.

        Raises:
            ConnectionClosed: the connection is closed.
        """
        if self.closed is not None:
            raise ConnectionClosed(self.closed)
        try:
            await self._native.pong(payload or b"")
        except anyws.ConnectionClosed as exc:
            raise self._closed_by(exc) from None

    async def send_message(self, message: str | bytes) -> None:
        """Send a text message (:class:`str`) or a binary one (:class:`bytes`).

        Raises:
            ConnectionClosed: the connection is closed or closing.
            ValueError: ``message`` is neither str nor bytes.
        """
        if self.closed is not None:
            raise ConnectionClosed(self.closed)
        if not isinstance(message, (str, bytes)):
            raise ValueError("message must be str or bytes")
        try:
            await self._native.send(message)
        except anyws.ConnectionClosed as exc:
            raise self._closed_by(exc) from None

    def __str__(self) -> str:
        return f"{'client' if self.is_client else 'server'}-{self._id}"


async def _abort(native: anyws.Connection) -> None:
    """Drop the connection without waiting for the peer."""
    native.close_timeout = 0
    with anyio.CancelScope(shield=True):
        await native.close()


async def _hold(native: anyws.Connection) -> None:
    """Keep the connection's context open until it is closed; drop it if cancelled."""
    try:
        await native.wait_closed()
    finally:
        native.close_timeout = 0


# -- client ------------------------------------------------------------------------


def _ssl_context(use_ssl: bool | ssl.SSLContext) -> ssl.SSLContext | None:
    if use_ssl is True:
        return ssl.create_default_context()
    if use_ssl is False:
        return None
    if isinstance(use_ssl, ssl.SSLContext):
        return use_ssl
    raise TypeError("`use_ssl` argument must be bool or ssl.SSLContext")


async def _open_stream(
    host: str, port: int, ssl_context: ssl.SSLContext | None
) -> ByteStream:
    _logger.debug(
        "Connecting to ws%s://%s:%d", "" if ssl_context is None else "s", host, port
    )
    if ssl_context is None:
        return await anyio.connect_tcp(host, port)
    return await anyio.connect_tcp(
        host, port, ssl_context=ssl_context, tls_standard_compatible=False
    )


def _host_header(host: str, port: int) -> str:
    if ":" in host and not host.startswith("["):
        host = f"[{host}]"  # an IPv6 literal
    return host if port in (80, 443) else f"{host}:{port}"


@asynccontextmanager
async def _connected(
    stream: ByteStream,
    raw: object,
    host: str,
    resource: str,
    *,
    is_ssl: bool,
    subprotocols: Iterable[str] | None,
    extra_headers: _ByteHeaders | None,
    message_queue_size: int,
    max_message_size: int,
    open_timeout: float | None,
    close_timeout: float,
) -> AsyncIterator[WebSocketConnection]:
    """Run the client handshake over ``stream``; map its errors."""
    if not resource.startswith("/"):
        await anyio.aclose_forcefully(stream)
        raise ValueError(f"resource must start with '/': {resource!r}")
    # anyws only reads the URI's host (for the Host header) and path: the stream is
    # connected already, so redirects are not followed, as in trio-websocket.
    context = anyws.connect(
        f"ws://{host}{resource}",
        stream=stream,
        subprotocols=list(subprotocols) if subprotocols else None,
        additional_headers=_str_pairs(extra_headers),
        user_agent_header=None,
        compression=None,
        open_timeout=open_timeout,
        ping_interval=None,
        close_timeout=close_timeout,
        max_size=max_message_size,
        max_queue=_max_queue(message_queue_size),
        logger=_logger,
    )
    async with contextlib.AsyncExitStack() as stack:
        try:
            native = await stack.enter_async_context(context)
        except BaseException as exc:
            await anyio.aclose_forcefully(stream)
            if isinstance(exc, anyws.InvalidStatus):
                response = exc.response
                headers = tuple(_byte_pairs(response.headers))
                raise ConnectionRejected(
                    response.status_code, headers, response.body
                ) from None
            if isinstance(exc, TimeoutError):
                raise ConnectionTimeout from None
            if isinstance(exc, (anyws.WebSocketException, anyio.BrokenResourceError)):
                raise HandshakeError(str(exc)) from exc
            raise
        yield WebSocketConnection(native, raw, is_ssl=is_ssl, path=resource)


async def _run_client(
    opener: Callable[[], Awaitable[tuple[ByteStream, object, bool]]],
    host: str,
    resource: str,
    options: dict[str, Any],
    *,
    task_status: TaskStatus[WebSocketConnection],
) -> None:
    stream, raw, is_ssl = await opener()
    async with _connected(
        stream, raw, host, resource, is_ssl=is_ssl, **options
    ) as connection:
        task_status.started(connection)
        await _hold(connection._native)


def _options(
    subprotocols: Iterable[str] | None,
    extra_headers: _ByteHeaders | None,
    message_queue_size: int,
    max_message_size: int,
    *,
    open_timeout: float | None = None,
    close_timeout: float = _CONN_TIMEOUT,
) -> dict[str, Any]:
    return dict(
        subprotocols=subprotocols,
        extra_headers=extra_headers,
        message_queue_size=message_queue_size,
        max_message_size=max_message_size,
        open_timeout=open_timeout,
        close_timeout=close_timeout,
    )


@asynccontextmanager
async def open_websocket(
    host: str,
    port: int,
    resource: str,
    *,
    use_ssl: bool | ssl.SSLContext,
    subprotocols: Iterable[str] | None = None,
    extra_headers: list[tuple[bytes, bytes]] | None = None,
    message_queue_size: int = _MESSAGE_QUEUE_SIZE,
    max_message_size: int = _MAX_MESSAGE_SIZE,
    receive_buffer_size: int | None = _RECEIVE_BYTES,
    connect_timeout: float = _CONN_TIMEOUT,
    disconnect_timeout: float = _CONN_TIMEOUT,
) -> AsyncIterator[WebSocketConnection]:
    """Connect to ``host:port``; an async context manager yielding the connection.

    Leaving the block closes the connection.

    Args:
        use_ssl: ``True`` for TLS with a default context, an :class:`ssl.SSLContext`,
            or ``False``.
        extra_headers: more request headers, ``(name, value)`` byte pairs.
        message_queue_size: messages buffered before reading stops.
        max_message_size: a larger message closes the connection with 1009.
        receive_buffer_size: accepted for compatibility and ignored.

    Raises:
        ConnectionTimeout: not connected within ``connect_timeout``.
        DisconnectionTimeout: not disconnected within ``disconnect_timeout``.
        ConnectionRejected: the server refused the handshake.
        HandshakeError: the connection or the handshake failed otherwise.
    """
    ssl_context = _ssl_context(use_ssl)
    deadline = anyio.current_time() + connect_timeout
    try:
        with anyio.fail_after(connect_timeout):
            stream = await _open_stream(host, port, ssl_context)
    except TimeoutError:
        raise ConnectionTimeout from None
    except OSError as exc:
        raise HandshakeError from exc
    options = _options(
        subprotocols,
        extra_headers,
        message_queue_size,
        max_message_size,
        open_timeout=max(deadline - anyio.current_time(), 0),
        close_timeout=disconnect_timeout,
    )
    host_header = _host_header(host, port)
    is_ssl = ssl_context is not None
    async with _connected(
        stream, stream, host_header, resource, is_ssl=is_ssl, **options
    ) as connection:
        try:
            yield connection
        finally:
            await _close_within(connection, disconnect_timeout)


async def _close_within(connection: WebSocketConnection, limit: float) -> None:
    native = connection._native
    native.close_timeout = None  # the deadline below replaces anyws's own
    try:
        with anyio.move_on_after(limit) as scope:
            await connection.aclose()
            await native.wait_closed()
    finally:
        native.close_timeout = 0  # whatever is left to do drops the connection
    if scope.cancelled_caught:
        raise DisconnectionTimeout


async def connect_websocket(
    nursery: _Nursery,
    host: str,
    port: int,
    resource: str,
    *,
    use_ssl: bool | ssl.SSLContext,
    subprotocols: Iterable[str] | None = None,
    extra_headers: list[tuple[bytes, bytes]] | None = None,
    message_queue_size: int = _MESSAGE_QUEUE_SIZE,
    max_message_size: int = _MAX_MESSAGE_SIZE,
    receive_buffer_size: int | None = _RECEIVE_BYTES,
) -> WebSocketConnection:
    """Connect to ``host:port`` and return the open connection.

    The connection's tasks run in ``nursery`` (a trio nursery, or an anyio task
    group); the caller closes the connection with :meth:`~WebSocketConnection.aclose`.
    Options as for :func:`open_websocket`.

    Raises:
        ConnectionRejected: the server refused the handshake.
        HandshakeError: the handshake failed otherwise.
        OSError: the TCP connection or TLS failed.
    """
    ssl_context = _ssl_context(use_ssl)

    async def opener() -> tuple[ByteStream, object, bool]:
        stream = await _open_stream(host, port, ssl_context)
        return stream, stream, ssl_context is not None

    options = _options(
        subprotocols, extra_headers, message_queue_size, max_message_size
    )
    connection: WebSocketConnection = await nursery.start(
        _run_client, opener, _host_header(host, port), resource, options
    )
    return connection


def _url_to_host(
    url: str, ssl_context: ssl.SSLContext | None
) -> tuple[str, int, str, ssl.SSLContext | bool]:
    url = str(url)
    parts = urllib.parse.urlsplit(url)
    if parts.scheme not in ("ws", "wss"):
        raise ValueError('WebSocket URL scheme must be "ws:" or "wss:"')
    use_ssl: ssl.SSLContext | bool
    if ssl_context is None:
        use_ssl = parts.scheme == "wss"
    elif parts.scheme == "ws":
        raise ValueError("SSL context must be None for ws: URL scheme")
    else:
        use_ssl = ssl_context
    host = parts.hostname
    if host is None:
        raise ValueError("URL host must not be None")
    port = parts.port if parts.port is not None else (443 if use_ssl else 80)
    resource = parts.path or "/"  # RFC 9112 section 3.2.1
    if "?" in url:
        resource += "?" + parts.query
    return host, port, resource, use_ssl


def open_websocket_url(
    url: str,
    ssl_context: ssl.SSLContext | None = None,
    *,
    subprotocols: Iterable[str] | None = None,
    extra_headers: list[tuple[bytes, bytes]] | None = None,
    message_queue_size: int = _MESSAGE_QUEUE_SIZE,
    max_message_size: int = _MAX_MESSAGE_SIZE,
    connect_timeout: float = _CONN_TIMEOUT,
    disconnect_timeout: float = _CONN_TIMEOUT,
    receive_buffer_size: int | None = _RECEIVE_BYTES,
) -> AbstractAsyncContextManager[WebSocketConnection]:
    """Connect to a ``ws://`` or ``wss://`` URL, like :func:`open_websocket`.

    Raises:
        ValueError: the URL is not a WebSocket URL, or ``ssl_context`` is given
            for ``ws://``.
    """
    host, port, resource, use_ssl = _url_to_host(url, ssl_context)
    return open_websocket(
        host,
        port,
        resource,
        use_ssl=use_ssl,
        subprotocols=subprotocols,
        extra_headers=extra_headers,
        message_queue_size=message_queue_size,
        max_message_size=max_message_size,
        receive_buffer_size=receive_buffer_size,
        connect_timeout=connect_timeout,
        disconnect_timeout=disconnect_timeout,
    )


async def connect_websocket_url(
    nursery: _Nursery,
    url: str,
    ssl_context: ssl.SSLContext | None = None,
    *,
    subprotocols: Iterable[str] | None = None,
    extra_headers: list[tuple[bytes, bytes]] | None = None,
    message_queue_size: int = _MESSAGE_QUEUE_SIZE,
    max_message_size: int = _MAX_MESSAGE_SIZE,
    receive_buffer_size: int | None = _RECEIVE_BYTES,
) -> WebSocketConnection:
    """Connect to a ``ws://`` or ``wss://`` URL, like :func:`connect_websocket`."""
    host, port, resource, use_ssl = _url_to_host(url, ssl_context)
    return await connect_websocket(
        nursery,
        host,
        port,
        resource,
        use_ssl=use_ssl,
        subprotocols=subprotocols,
        extra_headers=extra_headers,
        message_queue_size=message_queue_size,
        max_message_size=max_message_size,
        receive_buffer_size=receive_buffer_size,
    )


async def wrap_client_stream(
    nursery: _Nursery,
    stream: Any,
    host: str,
    resource: str,
    *,
    subprotocols: Iterable[str] | None = None,
    extra_headers: list[tuple[bytes, bytes]] | None = None,
    message_queue_size: int = _MESSAGE_QUEUE_SIZE,
    max_message_size: int = _MAX_MESSAGE_SIZE,
    receive_buffer_size: int | None = _RECEIVE_BYTES,
) -> WebSocketConnection:
    """Run the client handshake over a connected stream; return the connection.

    Args:
        stream: an anyio byte stream, or a trio stream on trio.
        host: the ``Host`` header, sent as given.
        resource: the request target.
    """
    anyio_stream, is_ssl = _as_anyio(stream)

    async def opener() -> tuple[ByteStream, object, bool]:
        return anyio_stream, stream, is_ssl

    options = _options(
        subprotocols, extra_headers, message_queue_size, max_message_size
    )
    connection: WebSocketConnection = await nursery.start(
        _run_client, opener, host, resource, options
    )
    return connection


# -- server ------------------------------------------------------------------------


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

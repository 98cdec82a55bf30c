"""The client side: open_websocket, connect_websocket and their variants."""

from __future__ import annotations

import contextlib
import ssl
import urllib.parse
from contextlib import asynccontextmanager
from typing import TYPE_CHECKING, Any

import anyio

import anyws

from ._adapters import _as_anyio
from ._common import (
    _CONN_TIMEOUT,
    _MAX_MESSAGE_SIZE,
    _MESSAGE_QUEUE_SIZE,
    _RECEIVE_BYTES,
    _byte_pairs,
    _logger,
    _max_queue,
    _str_pairs,
)
from ._connection import WebSocketConnection, _hold
from ._exceptions import (
    ConnectionRejected,
    ConnectionTimeout,
    DisconnectionTimeout,
    HandshakeError,
)

if TYPE_CHECKING:
    from collections.abc import AsyncIterator, Awaitable, Callable, Iterable
    from contextlib import AbstractAsyncContextManager

    from anyio.abc import ByteStream, TaskStatus

    from ._common import _ByteHeaders, _Nursery


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

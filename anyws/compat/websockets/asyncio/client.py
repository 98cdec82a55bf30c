"""``websockets.asyncio.client``: ``connect``, ``unix_connect``, ``ClientConnection``.

:class:`connect` takes ``websockets``' arguments, turns them into those of
:func:`anyws.connect`, and opens the byte stream itself when anyws's TCP connect
doesn't fit: a Unix socket, a socket passed in ``sock``, a proxy tunnel, another
destination host or port. Its three forms:

* ``async with connect(...) as ws`` enters :func:`anyws.connect` directly, on any
  event loop;
* ``ws = await connect(...)`` holds it open in a background task (asyncio only);
* ``async for ws in connect(...)`` reconnects after failures, with exponential
  backoff, as ``websockets`` does.
"""

from __future__ import annotations

import logging
import random
import ssl as ssl_module
import traceback
from contextlib import asynccontextmanager
from typing import TYPE_CHECKING, Any, Literal

import anyio
from anyio.abc import SocketStream
from anyio.streams.tls import TLSStream

from anyws._client import USER_AGENT, connect as _anyws_connect, parse_uri
from anyws._connection import unwrap_exception_group
from anyws.exceptions import InvalidMessage, InvalidStatus

from .._background import hold_open, on_asyncio
from ..proxy import connect_http_proxy, get_proxy, parse_proxy
from .connection import Connection, check_options, limit_option

if TYPE_CHECKING:
    from collections.abc import (
        AsyncGenerator,
        AsyncIterator,
        Callable,
        Generator,
        Sequence,
    )
    from types import TracebackType

    from anyio.abc import ByteStream

    from anyws._client import ClientConnection as _AnywsClientConnection

    from ..datastructures import HeadersLike
    from ..typing import LoggerLike, Origin, PathLike, Subprotocol

__all__ = [
    "ClientConnection",
    "backoff",
    "connect",
    "process_exception",
    "unix_connect",
]

MAX_REDIRECTS = 10

BACKOFF_INITIAL_DELAY = 5.0
BACKOFF_MIN_DELAY = 3.1
BACKOFF_MAX_DELAY = 90.0
BACKOFF_FACTOR = 1.618

# Keyword arguments of connect() beyond its named parameters: those of asyncio's
# create_connection() that anyws can honour, and the older name of one option.
_EXTRA_KWARGS = frozenset(
    {
        "extra_headers",
        "host",
        "local_addr",
        "path",
        "port",
        "proxy_server_hostname",
        "proxy_ssl",
        "server_hostname",
        "sock",
        "ssl",
        "unix",
    }
)

_UNSET: Any = object()


class ClientConnection(Connection):
    """The client side of a WebSocket connection, made by :class:`connect`.

    It supports ``async for message in ws``, which ends on a normal close and raises
    :exc:`~anyws.ConnectionClosedError` otherwise.
    """


def process_exception(exc: Exception) -> Exception | None:
    """Tell whether a failed connection attempt is worth retrying.

    The default of ``connect(process_exception=...)``, as in ``websockets``: retry
    after network errors (:exc:`OSError`, :exc:`TimeoutError`, a handshake cut
    short) and after HTTP 500, 502, 503 and 504. Return ``None`` to retry, or the
    exception to raise.
    """
    if isinstance(exc, (OSError, TimeoutError)):
        return None
    if isinstance(exc, InvalidMessage) and isinstance(
        exc.__cause__, (EOFError, OSError, anyio.EndOfStream, anyio.BrokenResourceError)
    ):
        return None
    if isinstance(exc, InvalidStatus) and exc.response.status_code in (
        500,  # Internal Server Error
        502,  # Bad Gateway
        503,  # Service Unavailable
        504,  # Gateway Timeout
    ):
        return None
    return exc


def backoff(
    initial_delay: float = BACKOFF_INITIAL_DELAY,
    min_delay: float = BACKOFF_MIN_DELAY,
    max_delay: float = BACKOFF_MAX_DELAY,
    factor: float = BACKOFF_FACTOR,
) -> Generator[float]:
    """Yield the delays between reconnection attempts, in seconds.

    A random delay up to ``initial_delay`` first (RFC 6455 section 7.2.3), then
    ``min_delay`` growing by ``factor`` up to ``max_delay``.
    """
    yield random.random() * initial_delay
    delay = min_delay
    while delay < max_delay:
        yield delay
        delay *= factor
    while True:
        yield max_delay


# This is spelled in lower case because it's exposed as a callable in the API.
class connect:
    """Connect to the WebSocket server at ``uri``.

    ::

        async with connect("ws://localhost:8765") as websocket:
            await websocket.send("Hello world!")

        websocket = await connect(uri)       # asyncio only; close it yourself

        async for websocket in connect(uri):  # reconnects after failures
            ...

    The arguments are those of ``websockets.asyncio.client.connect``, with these
    differences:

    * ``extensions`` isn't supported: anyws negotiates permessage-deflate itself
      (``compression``); passing extensions raises :exc:`NotImplementedError`.
    * ``max_size=(message, fragment)`` supports no fragment limit below the
      message limit; ``max_queue=(high, low)`` uses ``high``, and counts
      messages, not frames.
    * ``write_limit`` bounds the bytes :func:`broadcast` may queue for the
      connection before skipping it as too slow: anyws has no write buffer, and
      :meth:`~Connection.send` waits while the peer doesn't read.
    * ``proxy`` supports ``http://`` and ``https://`` proxies, and ``True`` (the
      default) reads them from the environment; SOCKS proxies raise
      :exc:`NotImplementedError`.
    * ``create_connection`` is called with the anyws connection, as
      ``create_connection(connection, write_limit=...)``.
    * Of the keyword arguments of asyncio's ``create_connection()``, ``ssl``,
      ``server_hostname``, ``sock``, ``host``, ``port`` and ``local_addr`` (with
      port 0) are supported, and ``proxy_ssl`` and ``proxy_server_hostname`` for
      an ``https://`` proxy; others raise :exc:`TypeError`. ``extra_headers`` is
      the older name of ``additional_headers``.

    Raises:
        InvalidURI: ``uri`` isn't a valid WebSocket URI.
        InvalidProxy: ``proxy`` isn't a valid proxy address.
        OSError: the TCP connection failed.
        InvalidHandshake: the opening handshake failed.
        TimeoutError: the opening handshake timed out.
    """

    def __init__(
        self,
        uri: str,
        *,
        # WebSocket
        origin: Origin | None = None,
        extensions: Sequence[Any] | None = None,
        subprotocols: Sequence[Subprotocol] | None = None,
        compression: str | None = "deflate",
        # HTTP
        additional_headers: HeadersLike | None = None,
        user_agent_header: str | None = USER_AGENT,
        proxy: str | Literal[True] | None = True,
        process_exception: Callable[[Exception], Exception | None] = process_exception,
        # Timeouts
        open_timeout: float | None = 10,
        ping_interval: float | None = 20,
        ping_timeout: float | None = 20,
        close_timeout: float | None = 10,
        reconnect_delays: Callable[[], Generator[float]] = backoff,
        # Limits
        max_size: int | None | tuple[int | None, int | None] = 2**20,
        max_queue: int | None | tuple[int | None, int | None] = 16,
        write_limit: int | tuple[int, int | None] = 2**15,
        # Logging
        logger: LoggerLike | None = None,
        # Escape hatch for advanced customization
        create_connection: type[ClientConnection] | None = None,
        # Other keyword arguments are those of asyncio's create_connection()
        **kwargs: Any,
    ) -> None:
        check_options("connect", kwargs, _EXTRA_KWARGS, extensions, compression)
        if "extra_headers" in kwargs:
            if additional_headers is not None:
                raise TypeError("pass additional_headers or extra_headers, not both")
            additional_headers = kwargs.pop("extra_headers")

        self.uri = uri
        self.ws_uri = parse_uri(uri)
        secure = self.ws_uri.secure
        ssl = kwargs.pop("ssl", _UNSET)
        if not secure and ssl is not _UNSET and ssl is not None:
            raise ValueError("ssl argument is incompatible with a ws:// URI")
        if secure and ssl is None:
            raise ValueError("ssl=None is incompatible with a wss:// URI")
        self.ssl: ssl_module.SSLContext | bool | None = (
            (True if ssl is _UNSET else ssl) if secure else None
        )
        self.server_hostname: str | None = kwargs.pop("server_hostname", None)
        self.sock: Any = kwargs.pop("sock", None)
        self.unix: bool = kwargs.pop("unix", False)
        self.path: PathLike | None = kwargs.pop("path", None)
        self.host: str | None = kwargs.pop("host", None)
        self.port: int | None = kwargs.pop("port", None)
        self.local_addr: tuple[str, int] | None = kwargs.pop("local_addr", None)
        if self.local_addr is not None and self.local_addr[1] != 0:
            raise NotImplementedError("local_addr supports port 0 only")
        self.proxy_ssl: ssl_module.SSLContext | bool | None = kwargs.pop(
            "proxy_ssl", _UNSET
        )
        self.proxy_server_hostname: str | None = kwargs.pop(
            "proxy_server_hostname", None
        )
        if self.unix and self.path is None and self.sock is None:
            raise TypeError("unix_connect() needs a path or a sock")
        if self.sock is not None or self.unix:
            proxy = None
        if isinstance(proxy, str):
            parse_proxy(proxy)  # raise InvalidProxy now rather than when connecting
        self.proxy = proxy

        if logger is None:
            logger = logging.getLogger("websockets.client")
        self.logger = logger
        self.additional_headers = additional_headers
        self.user_agent_header = user_agent_header
        self.process_exception = process_exception
        self.open_timeout = open_timeout
        self.close_timeout = close_timeout
        self.reconnect_delays = reconnect_delays
        self.write_limit = write_limit
        self.create_connection = create_connection or ClientConnection
        self.options: dict[str, Any] = dict(
            origin=origin,
            subprotocols=subprotocols,
            compression=compression,
            user_agent_header=user_agent_header,
            ping_interval=ping_interval,
            ping_timeout=ping_timeout,
            close_timeout=close_timeout,
            max_size=limit_option(max_size, "max_size"),
            max_queue=limit_option(max_queue, "max_queue"),
            logger=logger,
        )
        self._session_cm: Any = None

    # -- opening --------------------------------------------------------------

    async def _open_stream(self) -> ByteStream | None:
        """Open the byte stream, unless anyws's own TCP connect fits."""
        uri = self.ws_uri
        stream: ByteStream
        if self.unix:
            if self.sock is not None:
                stream = await anyio.abc.UNIXSocketStream.from_socket(self.sock)
            else:
                assert self.path is not None
                stream = await anyio.connect_unix(self.path)
        elif self.sock is not None:
            stream = await SocketStream.from_socket(self.sock)
        else:
            proxy = get_proxy(uri) if self.proxy is True else self.proxy
            if proxy is not None:
                parsed = parse_proxy(proxy)
                if not parsed.scheme.startswith("http"):
                    raise NotImplementedError(
                        f"proxy {proxy}: SOCKS proxies aren't supported; "
                        "pass proxy=None to connect directly"
                    )
                proxy_ssl = self.proxy_ssl
                if proxy_ssl is _UNSET:
                    proxy_ssl = True if parsed.scheme == "https" else None
                stream = await connect_http_proxy(
                    parsed,
                    uri,
                    user_agent_header=self.user_agent_header,
                    ssl=proxy_ssl,
                    server_hostname=self.proxy_server_hostname,
                )
            elif self.host is not None or self.port is not None or self.local_addr:
                stream = await anyio.connect_tcp(
                    self.host or uri.host,
                    self.port or uri.port,
                    local_host=self.local_addr[0] if self.local_addr else None,
                )
            else:
                return None
        if uri.secure:
            context = self.ssl
            if not isinstance(context, ssl_module.SSLContext):
                context = ssl_module.create_default_context()
            try:
                stream = await TLSStream.wrap(
                    stream,
                    hostname=self.server_hostname or uri.host,
                    ssl_context=context,
                    standard_compatible=False,
                )
            except BaseException:
                await anyio.aclose_forcefully(stream)
                raise
        return stream

    @asynccontextmanager
    async def _session(self) -> AsyncIterator[ClientConnection]:
        """Open the connection; close it on exit. The ``async with`` form."""
        timeout = self.open_timeout
        start = anyio.current_time()
        try:
            with anyio.fail_after(timeout):
                stream = await self._open_stream()
        except TimeoutError as exc:
            raise TimeoutError("timed out during opening handshake") from exc
        if timeout is not None:
            timeout = max(timeout - (anyio.current_time() - start), 0.0)
        native_connect = _anyws_connect(
            self.uri,
            additional_headers=self.additional_headers,
            open_timeout=timeout,
            ssl=self.ssl if stream is None else None,
            server_hostname=self.server_hostname,
            stream=stream,
            **self.options,
        )
        entered = False
        try:
            async with native_connect as native:
                entered = True
                async with self._wrap(native) as connection:
                    yield connection
        except TimeoutError as exc:
            if entered:
                raise
            raise TimeoutError("timed out during opening handshake") from exc
        except BaseException:
            if stream is not None and not entered:
                await anyio.aclose_forcefully(stream)
            raise

    @asynccontextmanager
    async def _wrap(
        self, native: _AnywsClientConnection
    ) -> AsyncIterator[ClientConnection]:
        connection = self.create_connection(native, write_limit=self.write_limit)
        with unwrap_exception_group():
            async with anyio.create_task_group() as task_group:
                connection._outbox.start(task_group)
                try:
                    yield connection
                finally:
                    # Let messages broadcast earlier go out before the Close frame.
                    with anyio.CancelScope(shield=True):
                        await connection._outbox.stop(self.close_timeout)
                    task_group.cancel_scope.cancel()

    # -- ws = await connect(...) --------------------------------------------------

    def __await__(self) -> Generator[Any, None, ClientConnection]:
        return self._await().__await__()

    async def _await(self) -> ClientConnection:
        connection, release = await hold_open(
            self._session(),
            lambda connection: connection.connection.wait_closed(),
            form="ws = await connect(...)",
            instead="async with connect(...) as ws:",
        )
        connection._release = release
        return connection

    # -- async with connect(...) as ws -------------------------------------------

    async def __aenter__(self) -> ClientConnection:
        if self._session_cm is not None:
            raise RuntimeError("connect() isn't reentrant")
        session = self._session()
        connection = await session.__aenter__()
        self._session_cm = session
        self.connection = connection
        return connection

    async def __aexit__(
        self,
        exc_type: type[BaseException] | None,
        exc_value: BaseException | None,
        traceback: TracebackType | None,
    ) -> None:
        session, self._session_cm = self._session_cm, None
        try:
            if exc_type is not None and not issubclass(exc_type, GeneratorExit):
                # As websockets: close with 1011 when the block raised. Leaving
                # ``async for ws in connect()`` early is no error, though.
                with anyio.CancelScope(shield=True):
                    await self.connection.connection.close(1011)
        finally:
            del self.connection
            await session.__aexit__(exc_type, exc_value, traceback)

    # -- async for ws in connect(...) ---------------------------------------------

    async def __aiter__(self) -> AsyncGenerator[ClientConnection, None]:
        delays: Generator[float] | None = None
        # On asyncio each connection lives in a background task, so that leaving
        # the loop with break is safe; trio offers no such task, so there, as in
        # websockets' trio API, the generator holds the connection's task group.
        background = on_asyncio()
        while True:
            try:
                if background:
                    connection = await self
                    try:
                        yield connection
                    finally:
                        with anyio.CancelScope(shield=True):
                            await connection.close()
                else:
                    async with self as connection:
                        yield connection
            except Exception as exc:
                # process_exception returns an exception, or None to retry; a
                # frequent mistake is to raise it instead, which works too.
                try:
                    new_exc = self.process_exception(exc)
                except Exception as raised_exc:
                    new_exc = raised_exc
                if new_exc is exc:
                    raise
                if new_exc is not None:
                    raise new_exc from exc
                if delays is None:
                    delays = self.reconnect_delays()
                delay = next(delays)
                self.logger.info(
                    "connect failed; reconnecting in %.1f seconds: %s",
                    delay,
                    traceback.format_exception_only(type(exc), exc)[0].strip(),
                )
                await anyio.sleep(delay)
            else:
                delays = None  # the connection succeeded: reset the backoff


def unix_connect(
    path: PathLike | None = None,
    uri: str | None = None,
    **kwargs: Any,
) -> connect:
    """Connect to a WebSocket server listening on a Unix socket.

    Takes the keyword arguments of :class:`connect`. ``uri`` defaults to
    ``ws://localhost/``, or ``wss://localhost/`` when ``ssl`` is given.
    """
    if uri is None:
        uri = "ws://localhost/" if kwargs.get("ssl") is None else "wss://localhost/"
    return connect(uri=uri, unix=True, path=path, **kwargs)

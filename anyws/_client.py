"""The client: ``connect()``, :class:`ClientConnection` and WebSocket URIs."""

from __future__ import annotations

import base64
import dataclasses
import functools
import ipaddress
import logging
import ssl as ssl_module
import sys
import urllib.parse
from contextlib import asynccontextmanager
from typing import TYPE_CHECKING, Any, Literal

import anyio
import anyio.lowlevel
from anyio.streams.tls import TLSStream

from . import __version__, _handshake
from ._connection import Connection, unwrap_exception_group
from ._http import Headers, HeadersLike, HeadReader, Response
from ._protocol import CloseCode
from ._streams import AsyncioSocketStream, lean_stream
from .exceptions import InvalidMessage, InvalidStatus, InvalidURI, SecurityError

if TYPE_CHECKING:
    from collections.abc import AsyncIterator, Sequence

    from anyio.abc import AsyncBackend, ByteStream, SocketStream

__all__ = ["ClientConnection", "WebSocketURI", "connect", "parse_uri"]

USER_AGENT: str = (
    f"Python/{sys.version_info.major}.{sys.version_info.minor} anyws/" + __version__
)

MAX_REDIRECTS = 10

logger = logging.getLogger("anyws.client")


@dataclasses.dataclass(frozen=True)
class WebSocketURI:
    """A parsed ``ws://`` or ``wss://`` URI.

    Attributes:
        secure: whether the scheme is ``wss``.
        host: the host name or IP address, without brackets.
        port: the port, explicit or the scheme's default (80 or 443).
        path: the request target: path and query string.
        user_info: user name and password from the URI, if any.
    """

    secure: bool
    host: str
    port: int
    path: str
    user_info: tuple[str, str] | None = None

    @property
    def host_header(self) -> str:
        """The value of the Host header (RFC 6455 section 4.1, item 4)."""
        host = f"[{self.host}]" if ":" in self.host else self.host
        if self.port == (443 if self.secure else 80):
            return host
        return f"{host}:{self.port}"

    def __str__(self) -> str:
        return f"{'wss' if self.secure else 'ws'}://{self.host_header}{self.path}"


def parse_uri(uri: str) -> WebSocketURI:
    """Parse and validate a WebSocket URI (RFC 6455 section 3).

    Raises:
        InvalidURI: the URI is not a valid ``ws://`` or ``wss://`` URI.
    """
    if not isinstance(uri, str):
        raise InvalidURI(repr(uri), "URI must be a string")
    return _parse_uri(uri)


# Clients often connect to the same few URIs again and again; the result is immutable.
@functools.lru_cache(maxsize=128)
def _parse_uri(uri: str) -> WebSocketURI:
    try:
        parsed = urllib.parse.urlsplit(uri)
    except ValueError as exc:
        raise InvalidURI(uri, str(exc)) from None
    if parsed.scheme not in ("ws", "wss"):
        raise InvalidURI(uri, "scheme isn't ws or wss")
    if parsed.fragment:
        raise InvalidURI(uri, "URI contains a fragment")
    if not parsed.hostname:
        raise InvalidURI(uri, "missing host")
    try:
        port = parsed.port
    except ValueError as exc:
        raise InvalidURI(uri, f"bad port: {exc}") from None
    secure = parsed.scheme == "wss"
    if port is None:
        port = 443 if secure else 80
    host = parsed.hostname
    try:
        host.encode("ascii")
    except UnicodeEncodeError:
        try:
            host = host.encode("idna").decode()
        except UnicodeError:
            raise InvalidURI(uri, "host isn't a valid domain name") from None
    path = urllib.parse.quote(parsed.path or "/", safe="/%!$&'()*+,;=:@~-._")
    if parsed.query:
        path += "?" + urllib.parse.quote(parsed.query, safe="/%!$&'()*+,;=:@~-._?")
    user_info = None
    if parsed.username is not None or parsed.password is not None:
        user_info = (
            urllib.parse.unquote(parsed.username or ""),
            urllib.parse.unquote(parsed.password or ""),
        )
    return WebSocketURI(secure, host, port, path, user_info)


class ClientConnection(Connection):
    """The client side of a WebSocket connection, made by :func:`connect`."""

    is_client = True


def _redirect(uri: WebSocketURI, location: str) -> WebSocketURI:
    """Resolve the Location of a redirect against ``uri`` (RFC 9110 section 10.2.2)."""
    scheme = urllib.parse.urlsplit(location).scheme
    if scheme not in ("", "ws", "wss"):
        raise InvalidURI(location, "redirect to a scheme other than ws or wss")
    # urljoin only resolves relative references for schemes it knows, so join in
    # the http world: ws -> http, wss -> https, and back.
    base = "http" + str(uri)[2:]
    target = urllib.parse.urljoin(base, "http" + location[2:] if scheme else location)
    new = parse_uri("ws" + target[4:])
    if uri.secure and not new.secure:
        raise SecurityError("cannot follow a redirect from wss:// to ws://")
    return new


_CREDENTIALS = frozenset({"authorization", "cookie", "proxy-authorization"})


def _without_credentials(headers: HeadersLike | None) -> Headers | None:
    if headers is None:
        return None
    return Headers(
        (name, value)
        for name, value in Headers(headers).raw_items()
        if name.lower() not in _CREDENTIALS
    )


async def _connect_tcp(host: str, port: int) -> SocketStream:
    """Open a TCP connection, as :func:`anyio.connect_tcp` does.

    For an IP address, which leaves no addresses to race (RFC 8305), the event
    loop's own connect is called directly: the task group and the task that
    :func:`anyio.connect_tcp` starts for its race cost more than the connect itself.
    """
    current_token = getattr(anyio.lowlevel, "current_token", None)  # anyio 4.11
    if current_token is None:
        return await anyio.connect_tcp(host, port)
    try:
        address = ipaddress.ip_address(host)
    except ValueError:
        return await anyio.connect_tcp(host, port)
    backend: type[AsyncBackend] = current_token().backend_class
    try:
        return await backend.connect_tcp(address.compressed, port)
    except OSError as exc:
        # The error anyio.connect_tcp raises when its only attempt fails.
        raise OSError("All connection attempts failed") from exc


async def _open_stream(
    uri: WebSocketURI, ssl: ssl_module.SSLContext | None, server_hostname: str | None
) -> ByteStream:
    stream = lean_stream(await _connect_tcp(uri.host, uri.port))
    if uri.secure:
        assert ssl is not None
        try:
            if type(stream) is AsyncioSocketStream and await stream.start_tls(
                ssl, server_side=False, server_hostname=server_hostname or uri.host
            ):
                return stream  # TLS by the event loop: the direct reader applies
            stream = await TLSStream.wrap(
                stream,
                hostname=server_hostname or uri.host,
                ssl_context=ssl,
                standard_compatible=False,
            )
        except BaseException:
            await anyio.aclose_forcefully(stream)
            raise
    return stream


async def _handshake_on(
    connection: ClientConnection,
    stream: ByteStream,
    uri: WebSocketURI,
    options: dict[str, Any],
) -> Response:
    key = _handshake.new_key()
    authorization = None
    if uri.user_info is not None:
        credentials = f"{uri.user_info[0]}:{uri.user_info[1]}".encode()
        authorization = "Basic " + base64.b64encode(credentials).decode()
    compression = options["compression"] is not None
    request = _handshake.client_request(
        uri.host_header,
        uri.path,
        key,
        subprotocols=options["subprotocols"],
        additional_headers=options["additional_headers"],
        origin=options["origin"],
        user_agent=options["user_agent_header"],
        authorization=authorization,
        compression=compression,
    )
    connection.request = request
    try:
        await stream.send(request.serialize())
    except anyio.BrokenResourceError as exc:
        raise InvalidMessage("connection lost while sending the HTTP request") from exc
    reader = HeadReader(stream)
    response = await reader.read_response()
    connection.response = response
    subprotocol, deflate = _handshake.check_response(
        response, key, options["subprotocols"], compression
    )
    # The headers stay with the connection, but lookups in them are over.
    request.headers._compact()
    response.headers._compact()
    connection.subprotocol = subprotocol
    connection._open(deflate, _handshake.DeflateSettings(), bytes(reader.buffer))
    return response


async def _connect(uri_text: str, options: dict[str, Any]) -> ClientConnection:
    uri = parse_uri(uri_text)
    ssl = options["ssl"]
    given_stream: ByteStream | None = options["stream"]
    if ssl is not None and ssl is not False and not uri.secure and given_stream is None:
        raise ValueError("ssl argument is incompatible with a ws:// URI")
    for _ in range(MAX_REDIRECTS + 1):
        context = ssl if isinstance(ssl, ssl_module.SSLContext) else None
        if uri.secure and context is None:
            context = ssl_module.create_default_context()
        if given_stream is not None:
            stream = given_stream
        else:
            stream = await _open_stream(uri, context, options["server_hostname"])
        connection = ClientConnection(
            stream,
            ping_interval=options["ping_interval"],
            ping_timeout=options["ping_timeout"],
            close_timeout=options["close_timeout"],
            max_size=options["max_size"],
            max_queue=options["max_queue"],
            logger=options["logger"],
        )
        try:
            await _handshake_on(connection, stream, uri, options)
        except InvalidStatus as exc:
            await anyio.aclose_forcefully(stream)
            response = exc.response
            location = response.headers.get("Location")
            if (
                response.status_code in (301, 302, 303, 307, 308)
                and location is not None
                and given_stream is None
            ):
                new_uri = _redirect(uri, location)
                if (new_uri.secure, new_uri.host, new_uri.port) != (
                    uri.secure,
                    uri.host,
                    uri.port,
                ):
                    # Credentials go to the origin they were meant for, no further.
                    options["additional_headers"] = _without_credentials(
                        options["additional_headers"]
                    )
                uri = new_uri
                logger.debug("following redirect to %s", uri)
                continue
            raise
        except BaseException:
            await anyio.aclose_forcefully(stream)
            raise
        return connection
    raise SecurityError(f"more than {MAX_REDIRECTS} redirects")


@asynccontextmanager
async def connect(
    uri: str,
    *,
    subprotocols: Sequence[str] | None = None,
    additional_headers: HeadersLike | None = None,
    origin: str | None = None,
    user_agent_header: str | None = USER_AGENT,
    compression: Literal["deflate"] | None = "deflate",
    open_timeout: float | None = 10,
    ping_interval: float | None = 20,
    ping_timeout: float | None = 20,
    close_timeout: float | None = 10,
    max_size: int | None = 2**20,
    max_queue: int | None = 16,
    ssl: ssl_module.SSLContext | bool | None = None,
    server_hostname: str | None = None,
    stream: ByteStream | None = None,
    logger: logging.Logger | logging.LoggerAdapter[Any] | None = None,
) -> AsyncIterator[ClientConnection]:
    """Connect to a WebSocket server; an async context manager.

    ::

        async with anyws.connect("wss://example.com/chat") as ws:
            await ws.send("hello")
            print(await ws.recv())

    Leaving the block closes the connection with code 1000 and waits for the
    closing handshake, at most ``close_timeout`` seconds.

    Args:
        uri: the ``ws://`` or ``wss://`` URI. User info (``ws://user:pass@host/``)
            becomes an ``Authorization: Basic`` header.
        subprotocols: subprotocols to offer, in order of preference.
        additional_headers: more request headers, a mapping or ``(name, value)``
            pairs.
        origin: the ``Origin`` header, if any.
        user_agent_header: the ``User-Agent`` header; ``None`` leaves it out.
        compression: ``"deflate"`` offers permessage-deflate (RFC 7692);
            ``None`` disables compression.
        open_timeout: limit in seconds for TCP connect, TLS and the handshake
            together; ``None`` for no limit.
        ping_interval: seconds between keepalive Pings; ``None`` disables them.
        ping_timeout: seconds to wait for a keepalive Pong before closing with 1011.
        close_timeout: seconds to wait for the closing handshake.
        max_size: largest message accepted, after decompression; bigger ones close
            the connection with 1009. ``None`` for no limit.
        max_queue: received messages buffered before reading stops; ``None`` for
            no limit.
        ssl: an :class:`ssl.SSLContext` for ``wss://``; a default verifying
            context is used when omitted.
        server_hostname: the host name for TLS server name indication and
            certificate checks, when it differs from the URI's host.
        stream: an already connected anyio byte stream to run the handshake on,
            instead of opening a TCP connection to the URI's host.
        logger: logger for this connection; ``anyws.client`` by default.

    Raises:
        InvalidURI: ``uri`` isn't a valid WebSocket URI.
        InvalidStatus: the server refused the handshake (the response is attached).
        InvalidHandshake: the handshake failed otherwise.
        TimeoutError: the connection didn't open within ``open_timeout``.
        OSError: the TCP connection or TLS failed.
    """
    if compression not in ("deflate", None):
        raise ValueError(f"unsupported compression: {compression!r}")
    options = dict(
        subprotocols=subprotocols,
        additional_headers=additional_headers,
        origin=origin,
        user_agent_header=user_agent_header,
        compression=compression,
        ping_interval=ping_interval,
        ping_timeout=ping_timeout,
        close_timeout=close_timeout,
        max_size=max_size,
        max_queue=max_queue,
        ssl=ssl,
        server_hostname=server_hostname,
        stream=stream,
        logger=logger,
    )
    if open_timeout is None:
        connection = await _connect(uri, options)
    else:
        with anyio.CancelScope(deadline=anyio.current_time() + open_timeout) as scope:
            connection = await _connect(uri, options)
        if scope.cancelled_caught:
            raise TimeoutError
    with unwrap_exception_group():
        async with anyio.create_task_group() as task_group:
            connection._start(task_group)
            try:
                yield connection
            finally:
                await connection._close(CloseCode.NORMAL_CLOSURE, "", shield=True)

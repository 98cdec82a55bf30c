"""``websockets.proxy``: proxy addresses, and tunnels through HTTP proxies.

``connect(proxy=...)`` supports ``http://`` and ``https://`` proxies: it opens a tunnel
with an HTTP ``CONNECT`` request (RFC 9110 section 9.3.6) and runs the WebSocket
handshake, and TLS for ``wss://``, through it. SOCKS proxies are not supported.
"""

from __future__ import annotations

import base64
import dataclasses
import ssl as ssl_module
import urllib.parse
import urllib.request
from typing import TYPE_CHECKING

import anyio
from anyio.streams.tls import TLSStream

from anyws._http import Headers, HeadReader, Response
from anyws.exceptions import InvalidMessage, SecurityError

from .exceptions import InvalidProxy, InvalidProxyMessage, InvalidProxyStatus

if TYPE_CHECKING:
    from anyio.abc import ByteStream

    from anyws._client import WebSocketURI

__all__ = ["Proxy", "get_proxy", "parse_proxy"]

_SCHEMES = ("socks5h", "socks5", "socks4a", "socks4", "https", "http")


@dataclasses.dataclass
class Proxy:
    """A proxy address.

    Attributes:
        scheme: ``"http"``, ``"https"``, or a SOCKS scheme.
        host: the host, in lower case.
        port: the port, explicit or the scheme's default.
        username: the user name, if the address has user info.
        password: the password, if the address has user info.
    """

    scheme: str
    host: str
    port: int
    username: str | None = None
    password: str | None = None

    @property
    def user_info(self) -> tuple[str, str] | None:
        """``(username, password)``, or ``None``."""
        if self.username is None or self.password is None:
            return None
        return (self.username, self.password)


def parse_proxy(proxy: str) -> Proxy:
    """Parse and validate a proxy address.

    Raises:
        InvalidProxy: ``proxy`` isn't a valid proxy address.
    """
    parsed = urllib.parse.urlparse(proxy)
    if parsed.scheme not in _SCHEMES:
        raise InvalidProxy(proxy, f"scheme {parsed.scheme} isn't supported")
    if parsed.hostname is None:
        raise InvalidProxy(proxy, "hostname isn't provided")
    if parsed.path not in ("", "/"):
        raise InvalidProxy(proxy, "path is meaningless")
    if parsed.query != "":
        raise InvalidProxy(proxy, "query is meaningless")
    if parsed.fragment != "":
        raise InvalidProxy(proxy, "fragment is meaningless")
    try:
        port = parsed.port or (443 if parsed.scheme == "https" else 80)
    except ValueError as exc:
        raise InvalidProxy(proxy, str(exc)) from None
    username, password = parsed.username, parsed.password
    if username is not None:
        if password is None:
            raise InvalidProxy(proxy, "username provided without password")
        username = urllib.parse.unquote(username, errors="strict")
        password = urllib.parse.unquote(password, errors="strict")
    host = parsed.hostname
    try:
        proxy.encode("ascii")
    except UnicodeEncodeError:
        host = host.encode("idna").decode()
    return Proxy(parsed.scheme, host, port, username, password)


def get_proxy(uri: WebSocketURI) -> str | None:
    """Return the proxy that the environment configures for ``uri``, if any.

    As ``websockets``: ``no_proxy`` is honoured, and a SOCKS proxy is preferred to
    an HTTPS proxy, which is preferred to an HTTP one (RFC 6455 section 4.1).
    """
    if urllib.request.proxy_bypass(f"{uri.host}:{uri.port}"):
        return None
    proxies = urllib.request.getproxies()
    schemes = (
        ["wss", "socks", "https"] if uri.secure else ["ws", "socks", "https", "http"]
    )
    for scheme in schemes:
        proxy = proxies.get(scheme)
        if proxy is not None:
            if scheme == "socks" and proxy.startswith("http://"):
                proxy = "socks5h://" + proxy[7:]
            return proxy
    return None


def _authority(host: str, port: int) -> str:
    return f"[{host}]:{port}" if ":" in host else f"{host}:{port}"


def prepare_connect_request(
    proxy: Proxy, uri: WebSocketURI, user_agent_header: str | None
) -> bytes:
    """Return the ``CONNECT`` request that opens a tunnel to ``uri``'s server."""
    headers = Headers()
    headers["Host"] = uri.host_header
    if user_agent_header is not None:
        headers["User-Agent"] = user_agent_header
    if proxy.user_info is not None:
        credentials = "{}:{}".format(*proxy.user_info).encode()
        headers["Proxy-Authorization"] = (
            "Basic " + base64.b64encode(credentials).decode()
        )
    target = _authority(uri.host, uri.port)
    return f"CONNECT {target} HTTP/1.1\r\n{headers}".encode("latin-1")


async def connect_http_proxy(
    proxy: Proxy,
    uri: WebSocketURI,
    *,
    user_agent_header: str | None,
    ssl: ssl_module.SSLContext | bool | None = None,
    server_hostname: str | None = None,
) -> ByteStream:
    """Open a tunnel to ``uri``'s server through an HTTP(S) proxy.

    Args:
        proxy: the proxy, with scheme ``http`` or ``https``.
        uri: the WebSocket URI; the tunnel leads to its host and port.
        user_agent_header: the ``User-Agent`` header of the ``CONNECT`` request.
        ssl: for an ``https`` proxy, the TLS context to talk to the proxy.
        server_hostname: for an ``https`` proxy, the name to check its
            certificate against, if not its host.

    Returns:
        The tunnel: a byte stream to the WebSocket server.

    Raises:
        InvalidProxyStatus: the proxy refused with a status other than 2xx.
        InvalidProxyMessage: the proxy's response is malformed.
        OSError: the TCP connection or TLS to the proxy failed.
    """
    if proxy.scheme == "https":
        if ssl is None:
            raise ValueError("proxy_ssl=None is incompatible with an https:// proxy")
    elif ssl is not None:
        raise ValueError("proxy_ssl argument is incompatible with an http:// proxy")
    stream: ByteStream = await anyio.connect_tcp(proxy.host, proxy.port)
    try:
        if proxy.scheme == "https":
            context = (
                ssl
                if isinstance(ssl, ssl_module.SSLContext)
                else ssl_module.create_default_context()
            )
            stream = await TLSStream.wrap(
                stream,
                hostname=server_hostname or proxy.host,
                ssl_context=context,
                standard_compatible=False,
            )
        await stream.send(prepare_connect_request(proxy, uri, user_agent_header))
        reader = HeadReader(stream)
        try:
            start, headers = await reader.read_head("proxy response")
        except (InvalidMessage, SecurityError) as exc:
            raise InvalidProxyMessage(
                "did not receive a valid HTTP response from proxy"
            ) from exc
        version, _, rest = start.partition(" ")
        code, _, reason = rest.partition(" ")
        if version not in ("HTTP/1.1", "HTTP/1.0") or not (
            len(code) == 3 and code.isdigit()
        ):
            raise InvalidProxyMessage(f"invalid HTTP status line from proxy: {start}")
        if not 200 <= int(code) < 300:
            raise InvalidProxyStatus(Response(int(code), reason, headers))
        if reader.buffer:
            # The server speaks after the handshake request only: these bytes
            # can only be the proxy's, which a tunnel must not have.
            raise InvalidProxyMessage("proxy sent data after its response")
    except BaseException:
        await anyio.aclose_forcefully(stream)
        raise
    return stream

"""The opening handshake (RFC 6455 section 4) and its negotiations, without I/O.

Client side: :func:`client_request` builds the upgrade request and
:func:`check_response` validates the server's answer. Server side:
:func:`check_request` validates an upgrade request, :func:`select_subprotocol` and
:func:`negotiate_deflate` pick what to agree on, and :func:`accept_response` builds the
101 response. :func:`error_response` turns a rejected request into the HTTP error a
client sees.

permessage-deflate (RFC 7692) is negotiated here; the agreed parameters travel in a
:class:`DeflateParams` to :mod:`anyws._protocol`, which runs the codec.
"""

from __future__ import annotations

import base64
import dataclasses
import hashlib
import os
import re
from typing import TYPE_CHECKING

from ._http import (
    Headers,
    HeadersLike,
    MultipleValuesError,
    Request,
    Response,
    make_response as make_response,
)
from .exceptions import (
    InvalidHandshake,
    InvalidHeader,
    InvalidHeaderValue,
    InvalidStatus,
    InvalidUpgrade,
    NegotiationError,
    SecurityError,
)

if TYPE_CHECKING:
    from collections.abc import Sequence

# RFC 6455 section 1.3: the GUID appended to Sec-WebSocket-Key.
_GUID = "258EAFA5-E914-47DA-95CA-C5AB0DC85B11"
# RFC 6455 section 4.1: version 13 is the only one this library speaks.
VERSION = "13"

_token = re.compile(r"[-!#$%&'*+.^_`|~0-9A-Za-z]+")


def new_key() -> str:
    """Return a fresh Sec-WebSocket-Key: 16 random bytes, base64 (section 4.1)."""
    return base64.b64encode(os.urandom(16)).decode()


def accept_key(key: str) -> str:
    """Return the Sec-WebSocket-Accept value that answers ``key`` (section 4.2.2)."""
    return base64.b64encode(hashlib.sha1((key + _GUID).encode()).digest()).decode()


@dataclasses.dataclass(frozen=True)
class DeflateParams:
    """permessage-deflate parameters as agreed in the handshake (RFC 7692 section 7).

    Window bits are the LZ77 window sizes (2**bits bytes) that each side may use when
    compressing. ``None`` means the default, 15.
    """

    server_no_context_takeover: bool = False
    client_no_context_takeover: bool = False
    server_max_window_bits: int | None = None
    client_max_window_bits: int | None = None


@dataclasses.dataclass(frozen=True)
class DeflateSettings:
    """How this side compresses and what it asks for in negotiation.

    The defaults keep about 64 KiB of zlib state per connection, as ``websockets``
    does: a 4 KiB window (12 bits) each way and ``memLevel`` 5 for the compressor.
    """

    server_max_window_bits: int = 12
    client_max_window_bits: int = 12
    compress_level: int = 6
    mem_level: int = 5


def parse_extensions(value: str) -> list[tuple[str, list[tuple[str, str | None]]]]:
    """Parse a Sec-WebSocket-Extensions value into ``(name, [(param, value)])``.

    Raises:
        InvalidHeaderValue: when the value is not valid (RFC 6455 section 9.1).
    """
    result: list[tuple[str, list[tuple[str, str | None]]]] = []
    for item in _split_outside_quotes(value, ","):
        if not item.strip():
            continue
        name, *params = _split_outside_quotes(item, ";")
        name = name.strip()
        if not _token.fullmatch(name):
            raise InvalidHeaderValue("Sec-WebSocket-Extensions", value)
        parsed: list[tuple[str, str | None]] = []
        for param in params:
            key, sep, raw = param.partition("=")
            key = key.strip()
            raw = raw.strip()
            if raw.startswith('"') and raw.endswith('"') and len(raw) >= 2:
                raw = raw[1:-1].replace("\\", "")
            if not _token.fullmatch(key) or (sep and not _token.fullmatch(raw)):
                raise InvalidHeaderValue("Sec-WebSocket-Extensions", value)
            parsed.append((key, raw if sep else None))
        result.append((name, parsed))
    return result


def _split_outside_quotes(text: str, sep: str) -> list[str]:
    parts: list[str] = []
    current: list[str] = []
    quoted = escaped = False
    for char in text:
        if escaped:
            escaped = False
        elif char == "\\" and quoted:
            escaped = True
        elif char == '"':
            quoted = not quoted
        elif char == sep and not quoted:
            parts.append("".join(current))
            current = []
            continue
        current.append(char)
    parts.append("".join(current))
    return parts


def _window_bits(value: str | None, *, allow_none: bool) -> int | None:
    # RFC 7692 section 7.1.2: 1*DIGIT from 8 to 15, no leading zero.
    if value is None:
        if allow_none:
            return None
        raise NegotiationError("window bits parameter needs a value")
    if not value.isdigit() or value.startswith("0") or not 8 <= int(value) <= 15:
        raise NegotiationError(f"invalid window bits: {value}")
    return int(value)


def _deflate_params(
    params: list[tuple[str, str | None]], *, in_offer: bool
) -> tuple[bool, bool, int | None, int | None, bool]:
    seen: set[str] = set()
    server_nct = client_nct = client_bits_offered = False
    server_bits = client_bits = None
    for key, value in params:
        if key in seen:
            raise NegotiationError(f"duplicate parameter {key}")
        seen.add(key)
        if key == "server_no_context_takeover" and value is None:
            server_nct = True
        elif key == "client_no_context_takeover" and value is None:
            client_nct = True
        elif key == "server_max_window_bits":
            server_bits = _window_bits(value, allow_none=False)
        elif key == "client_max_window_bits":
            # Only an offer may carry it without a value (section 7.1.2.2).
            client_bits = _window_bits(value, allow_none=in_offer)
            client_bits_offered = True
        else:
            raise NegotiationError(f"unsupported parameter {key}")
    return server_nct, client_nct, server_bits, client_bits, client_bits_offered


# -- client side --------------------------------------------------------------


# The permessage-deflate offer a client sends.
_DEFLATE_OFFER = "permessage-deflate; client_max_window_bits"


def client_request(
    host_header: str,
    target: str,
    key: str,
    *,
    subprotocols: Sequence[str] | None,
    additional_headers: HeadersLike | None,
    origin: str | None,
    user_agent: str | None,
    authorization: str | None,
    compression: bool,
) -> Request:
    """Build the client's upgrade request (section 4.1)."""
    items = [
        "Host",
        host_header,
        "Upgrade",
        "websocket",
        "Connection",
        "Upgrade",
        "Sec-WebSocket-Key",
        key,
        "Sec-WebSocket-Version",
        VERSION,
    ]
    if origin is not None:
        items += ("Origin", origin)
    if authorization is not None:
        items += ("Authorization", authorization)
    if compression:
        items += ("Sec-WebSocket-Extensions", _DEFLATE_OFFER)
    if subprotocols:
        items += ("Sec-WebSocket-Protocol", ", ".join(subprotocols))
    headers = Headers._from_items(items)
    if additional_headers is not None:
        headers.update(additional_headers)
        if user_agent is not None and "User-Agent" in headers:
            user_agent = None
        headers._compact()
    if user_agent is not None:
        headers["User-Agent"] = user_agent
    return Request(target, headers)


def check_response(
    response: Response,
    key: str,
    subprotocols: Sequence[str] | None,
    compression: bool,
) -> tuple[str | None, DeflateParams | None]:
    """Validate the server's handshake response (section 4.2.2, RFC 7692 7.1).

    Returns:
        The subprotocol and the permessage-deflate parameters agreed on.

    Raises:
        InvalidStatus: the status is not 101.
        InvalidHandshake: a header is missing or wrong.
    """
    if response.status_code != 101:
        raise InvalidStatus(response)
    headers = response.headers
    _check_upgrade(headers)
    try:
        accept = headers["Sec-WebSocket-Accept"]
    except KeyError:
        raise InvalidHeader("Sec-WebSocket-Accept") from None
    except MultipleValuesError:
        raise InvalidHeader("Sec-WebSocket-Accept", "multiple values") from None
    if accept != accept_key(key):
        raise InvalidHeaderValue("Sec-WebSocket-Accept", accept)

    subprotocol = None
    chosen = [
        p.strip()
        for v in headers.get_all("Sec-WebSocket-Protocol")
        for p in v.split(",")
    ]
    if chosen:
        if len(chosen) > 1:
            raise InvalidHeaderValue("Sec-WebSocket-Protocol", ", ".join(chosen))
        if not subprotocols or chosen[0] not in subprotocols:
            raise NegotiationError(
                f"server chose a subprotocol not offered: {chosen[0]}"
            )
        subprotocol = chosen[0]

    deflate = None
    accepted = [
        ext
        for value in headers.get_all("Sec-WebSocket-Extensions")
        for ext in parse_extensions(value)
    ]
    for name, params in accepted:
        if name != "permessage-deflate" or not compression or deflate is not None:
            raise NegotiationError(f"server accepted an extension not offered: {name}")
        server_nct, client_nct, server_bits, client_bits, _ = _deflate_params(
            params, in_offer=False
        )
        deflate = DeflateParams(server_nct, client_nct, server_bits, client_bits)
    return subprotocol, deflate


def _check_upgrade(headers: Headers) -> None:
    # Section 4.2.1 items 3 and 4 (and 4.1 for the response): token lists.
    upgrade = [
        v.strip().lower() for h in headers.get_all("Upgrade") for v in h.split(",")
    ]
    if upgrade != ["websocket"]:
        raise InvalidUpgrade("Upgrade", ", ".join(headers.get_all("Upgrade")) or None)
    connection = [
        v.strip().lower() for h in headers.get_all("Connection") for v in h.split(",")
    ]
    if "upgrade" not in connection:
        raise InvalidUpgrade(
            "Connection", ", ".join(headers.get_all("Connection")) or None
        )


# -- server side --------------------------------------------------------------


def check_request(request: Request) -> str:
    """Validate an upgrade request (section 4.2.1) and return its key.

    Raises:
        InvalidHandshake: the request is not a valid WebSocket upgrade.
    """
    headers = request.headers
    if "Host" not in headers:
        raise InvalidHeader("Host")
    _check_upgrade(headers)
    try:
        key = headers["Sec-WebSocket-Key"]
    except KeyError:
        raise InvalidHeader("Sec-WebSocket-Key") from None
    except MultipleValuesError:
        raise InvalidHeader("Sec-WebSocket-Key", "multiple values") from None
    try:
        valid_key = len(base64.b64decode(key.encode("ascii"), validate=True)) == 16
    except ValueError:
        valid_key = False
    if not valid_key:
        raise InvalidHeaderValue("Sec-WebSocket-Key", key)
    versions = headers.get_all("Sec-WebSocket-Version")
    if versions != [VERSION]:
        raise InvalidHeaderValue("Sec-WebSocket-Version", ", ".join(versions) or None)
    return key


def offered_subprotocols(headers: Headers) -> list[str]:
    """Return the subprotocols a client offers, in order."""
    return [
        p.strip()
        for value in headers.get_all("Sec-WebSocket-Protocol")
        for p in value.split(",")
        if p.strip()
    ]


def select_subprotocol(
    offered: Sequence[str], available: Sequence[str] | None
) -> str | None:
    """The default choice: the first of the server's subprotocols the client offers.

    As in ``websockets``: no server subprotocols, no subprotocol; server subprotocols
    but none offered or shared, the handshake fails with 400.
    """
    if not available:
        return None
    if not offered:
        raise NegotiationError("missing subprotocol")
    for subprotocol in available:
        if subprotocol in offered:
            return subprotocol
    raise NegotiationError(
        f"invalid subprotocol; expected one of {', '.join(available)}"
    )


def negotiate_deflate(
    headers: Headers, settings: DeflateSettings
) -> tuple[str, DeflateParams] | None:
    """Accept the first acceptable permessage-deflate offer, if any (RFC 7692 7.1).

    Returns:
        The Sec-WebSocket-Extensions response value and the parameters, or ``None``.
    """
    for value in headers.get_all("Sec-WebSocket-Extensions"):
        for name, params in parse_extensions(value):
            if name != "permessage-deflate":
                continue
            try:
                server_nct, client_nct, server_bits, client_bits, client_offered = (
                    _deflate_params(params, in_offer=True)
                )
            except NegotiationError:
                continue  # Section 7: decline this offer, consider the next one.
            # Section 7.1.2.1: answer with at most what the client allows.
            server_bits = min(server_bits or 15, settings.server_max_window_bits)
            # Section 7.1.2.2: only when offered, at most the offered value.
            client_bits = (
                min(client_bits or 15, settings.client_max_window_bits)
                if client_offered
                else None
            )
            response = ["permessage-deflate"]
            if server_nct:
                response.append("server_no_context_takeover")
            if client_nct:
                response.append("client_no_context_takeover")
            response.append(f"server_max_window_bits={server_bits}")
            if client_bits is not None:
                response.append(f"client_max_window_bits={client_bits}")
            params_ = DeflateParams(server_nct, client_nct, server_bits, client_bits)
            return "; ".join(response), params_
    return None


def accept_response(
    key: str,
    subprotocol: str | None,
    extensions: str | None,
    server_header: str | None,
) -> Response:
    """Build the 101 response that completes the server's handshake."""
    items = [
        "Upgrade",
        "websocket",
        "Connection",
        "Upgrade",
        "Sec-WebSocket-Accept",
        accept_key(key),
    ]
    if extensions is not None:
        items += ("Sec-WebSocket-Extensions", extensions)
    if subprotocol is not None:
        items += ("Sec-WebSocket-Protocol", subprotocol)
    if server_header is not None:
        items += ("Server", server_header)
    return Response(101, "Switching Protocols", Headers._from_items(items))


def error_response(exc: InvalidHandshake, server_header: str | None) -> Response:
    """Return the HTTP error for a request that is not a valid upgrade."""
    from ._http import InvalidMethod

    headers = Headers()
    if server_header is not None:
        headers["Server"] = server_header
    if isinstance(exc, SecurityError):
        status = 431
    elif isinstance(exc, InvalidMethod):
        status = 405
        headers["Allow"] = "GET"
    elif isinstance(exc, InvalidUpgrade):
        status = 426
        headers["Upgrade"] = "websocket"
    elif isinstance(exc, InvalidHeader) and exc.name == "Sec-WebSocket-Version":
        status = 426
        headers["Sec-WebSocket-Version"] = VERSION
    else:
        status = 400
    text = "Failed to open a WebSocket connection: " + str(exc) + ".\n"
    return make_response(status, text, headers)

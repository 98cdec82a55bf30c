"""The exceptions, and the values they report: CloseReason and Endpoint."""

from __future__ import annotations

import contextlib
from ipaddress import ip_address
from typing import Any

import anyws

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

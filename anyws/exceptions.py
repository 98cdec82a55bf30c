"""Exceptions raised by anyws.

The names, the hierarchy and the meanings follow the ``websockets`` package, so that
people who know one know the other::

    WebSocketException
    ├── ConnectionClosed
    │   ├── ConnectionClosedOK        close code 1000 or 1001 sent and received
    │   └── ConnectionClosedError     any other code, or no closing handshake (1006)
    ├── InvalidURI
    ├── InvalidHandshake
    │   ├── SecurityError             an HTTP message over a size limit
    │   ├── InvalidMessage            malformed HTTP, or the peer closed mid-handshake
    │   ├── InvalidStatus             the server answered with a status other than 101
    │   ├── InvalidHeader
    │   │   ├── InvalidHeaderValue
    │   │   └── InvalidUpgrade
    │   └── NegotiationError          no acceptable subprotocol or extension
    ├── ProtocolError                 the peer broke RFC 6455 or RFC 7692
    ├── PayloadTooBig                 a message over ``max_size``
    └── ConcurrencyError              two tasks receiving at once

:exc:`ConcurrencyError` is also a :exc:`RuntimeError`.
"""

from __future__ import annotations

from typing import TYPE_CHECKING

if TYPE_CHECKING:
    from ._http import Response
    from ._protocol import Close

__all__ = [
    "ConcurrencyError",
    "ConnectionClosed",
    "ConnectionClosedError",
    "ConnectionClosedOK",
    "InvalidHandshake",
    "InvalidHeader",
    "InvalidHeaderValue",
    "InvalidMessage",
    "InvalidStatus",
    "InvalidURI",
    "InvalidUpgrade",
    "NegotiationError",
    "PayloadTooBig",
    "ProtocolError",
    "SecurityError",
    "WebSocketException",
]


class WebSocketException(Exception):
    """Base class for every exception that anyws raises."""


class ConnectionClosed(WebSocketException):
    """Raised when using a connection that is closed or closing.

    Attributes:
        rcvd: the Close frame received from the peer, or ``None``.
        sent: the Close frame sent to the peer, or ``None``.
        rcvd_then_sent: when both were exchanged, whether the peer closed first.
    """

    def __init__(
        self,
        rcvd: Close | None,
        sent: Close | None,
        rcvd_then_sent: bool | None = None,
    ) -> None:
        super().__init__(rcvd, sent, rcvd_then_sent)
        self.rcvd = rcvd
        self.sent = sent
        self.rcvd_then_sent = rcvd_then_sent

    def __str__(self) -> str:
        if self.rcvd is None:
            if self.sent is None:
                return "no close frame received or sent"
            return f"sent {self.sent}; no close frame received"
        if self.sent is None:
            return f"received {self.rcvd}; no close frame sent"
        if self.rcvd_then_sent:
            return f"received {self.rcvd}; then sent {self.sent}"
        return f"sent {self.sent}; then received {self.rcvd}"

    @property
    def code(self) -> int:
        """The close code received, or 1006 when none was."""
        return 1006 if self.rcvd is None else self.rcvd.code

    @property
    def reason(self) -> str:
        """The close reason received, or ``""`` when none was."""
        return "" if self.rcvd is None else self.rcvd.reason


class ConnectionClosedOK(ConnectionClosed):
    """Raised when using a connection that closed normally (1000 or 1001)."""


class ConnectionClosedError(ConnectionClosed):
    """Raised when using a connection that closed with an error or was dropped."""


class InvalidURI(WebSocketException):
    """Raised when connecting to a URI that is not a valid WebSocket URI."""

    def __init__(self, uri: str, msg: str) -> None:
        super().__init__(uri, msg)
        self.uri = uri
        self.msg = msg

    def __str__(self) -> str:
        return f"{self.uri} isn't a valid URI: {self.msg}"


class InvalidHandshake(WebSocketException):
    """Raised when the opening handshake fails."""


class SecurityError(InvalidHandshake):
    """Raised when an HTTP message in the handshake breaks a size limit."""


class InvalidMessage(InvalidHandshake):
    """Raised when an HTTP message in the handshake is malformed or cut short."""


class InvalidStatus(InvalidHandshake):
    """Raised when the server refuses the handshake with a status other than 101.

    Attributes:
        response: the HTTP response, with ``status_code``, ``headers`` and ``body``.
    """

    def __init__(self, response: Response) -> None:
        super().__init__(response)
        self.response = response

    def __str__(self) -> str:
        return f"server rejected WebSocket connection: HTTP {self.response.status_code}"


class InvalidHeader(InvalidHandshake):
    """Raised when a handshake header is missing or has a wrong value."""

    def __init__(self, name: str, value: str | None = None) -> None:
        super().__init__(name, value)
        self.name = name
        self.value = value

    def __str__(self) -> str:
        if self.value is None:
            return f"missing {self.name} header"
        if self.value == "":
            return f"empty {self.name} header"
        return f"invalid {self.name} header: {self.value}"


class InvalidHeaderValue(InvalidHeader):
    """Raised when a handshake header has a value that cannot be accepted."""


class InvalidUpgrade(InvalidHeader):
    """Raised when the Upgrade or Connection header is missing or wrong."""


class NegotiationError(InvalidHandshake):
    """Raised when no subprotocol or extension can be agreed on."""


class ProtocolError(WebSocketException):
    """Raised when the peer breaks the WebSocket protocol (RFC 6455, RFC 7692).

    Attributes:
        code: the close code that the violation calls for (1002, 1007 ...).
    """

    def __init__(self, message: str, code: int = 1002) -> None:
        super().__init__(message)
        self.code = code


class PayloadTooBig(WebSocketException):
    """Raised when a received message is larger than ``max_size``.

    Attributes:
        max_size: the limit in bytes.
    """

    def __init__(self, message: str, max_size: int | None = None) -> None:
        super().__init__(message)
        self.max_size = max_size


class ConcurrencyError(WebSocketException, RuntimeError):
    """Raised when two tasks receive from one connection at once."""

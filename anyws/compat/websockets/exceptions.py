"""The exceptions of ``websockets.exceptions``, with the same names and hierarchy.

The classes anyws has are anyws's own (so ``except websockets.ConnectionClosedOK``
catches what anyws raises); the others are defined here, under the same parents as in
``websockets``::

    WebSocketException                 anyws
    ├── ConnectionClosed               anyws
    │   ├── ConnectionClosedOK         anyws
    │   └── ConnectionClosedError      anyws
    ├── InvalidURI                     anyws
    ├── InvalidProxy
    ├── InvalidHandshake               anyws
    │   ├── SecurityError              anyws
    │   │   ├── RequestLineTooLong
    │   │   ├── StatusLineTooLong
    │   │   ├── HeaderLineTooLong
    │   │   └── TooManyHeaders
    │   ├── ProxyError
    │   │   ├── InvalidProxyMessage
    │   │   └── InvalidProxyStatus
    │   ├── InvalidMessage             anyws
    │   ├── InvalidMethod
    │   ├── InvalidProtocol
    │   ├── InvalidStatus              anyws
    │   ├── InvalidHeader              anyws
    │   │   ├── InvalidHeaderFormat
    │   │   ├── InvalidHeaderValue     anyws
    │   │   ├── InvalidOrigin
    │   │   └── InvalidUpgrade         anyws
    │   └── NegotiationError           anyws
    │       ├── DuplicateParameter
    │       ├── InvalidParameterName
    │       └── InvalidParameterValue
    ├── ProtocolError                  anyws
    ├── PayloadTooBig                  anyws
    ├── TooManyFragments
    ├── InvalidState
    └── ConcurrencyError               anyws

anyws reports size limits of the handshake as :exc:`SecurityError` itself and never
raises the four subclasses; :exc:`InvalidOrigin` is what ``serve(origins=...)``
answers with.
"""

from __future__ import annotations

from typing import TYPE_CHECKING

from anyws.exceptions import (
    ConcurrencyError as ConcurrencyError,
    ConnectionClosed as ConnectionClosed,
    ConnectionClosedError as ConnectionClosedError,
    ConnectionClosedOK as ConnectionClosedOK,
    InvalidHandshake as InvalidHandshake,
    InvalidHeader as InvalidHeader,
    InvalidHeaderValue as InvalidHeaderValue,
    InvalidMessage as InvalidMessage,
    InvalidStatus as InvalidStatus,
    InvalidUpgrade as InvalidUpgrade,
    InvalidURI as InvalidURI,
    NegotiationError as NegotiationError,
    PayloadTooBig as PayloadTooBig,
    ProtocolError as ProtocolError,
    SecurityError as SecurityError,
    WebSocketException as WebSocketException,
)

if TYPE_CHECKING:
    from anyws._http import Response

__all__ = [
    "ConcurrencyError",
    "ConnectionClosed",
    "ConnectionClosedError",
    "ConnectionClosedOK",
    "DuplicateParameter",
    "HeaderLineTooLong",
    "InvalidHandshake",
    "InvalidHeader",
    "InvalidHeaderFormat",
    "InvalidHeaderValue",
    "InvalidMessage",
    "InvalidMethod",
    "InvalidOrigin",
    "InvalidParameterName",
    "InvalidParameterValue",
    "InvalidProtocol",
    "InvalidProxy",
    "InvalidProxyMessage",
    "InvalidProxyStatus",
    "InvalidState",
    "InvalidStatus",
    "InvalidURI",
    "InvalidUpgrade",
    "NegotiationError",
    "PayloadTooBig",
    "ProtocolError",
    "ProxyError",
    "RequestLineTooLong",
    "SecurityError",
    "StatusLineTooLong",
    "TooManyFragments",
    "TooManyHeaders",
    "WebSocketException",
]


class InvalidProxy(WebSocketException):
    """Raised when connecting through a proxy address that isn't valid."""

    def __init__(self, proxy: str, msg: str) -> None:
        super().__init__(proxy, msg)
        self.proxy = proxy
        self.msg = msg

    def __str__(self) -> str:
        return f"{self.proxy} isn't a valid proxy: {self.msg}"


class RequestLineTooLong(SecurityError):
    """Raised when the request line of a handshake request is too long."""


class StatusLineTooLong(SecurityError):
    """Raised when the status line of a handshake response is too long."""


class HeaderLineTooLong(SecurityError):
    """Raised when a header line of a handshake message is too long."""


class TooManyHeaders(SecurityError):
    """Raised when a handshake message has too many headers."""


class ProxyError(InvalidHandshake):
    """Raised when connecting through a proxy fails."""


class InvalidProxyMessage(ProxyError):
    """Raised when the response of an HTTP proxy is malformed."""


class InvalidProxyStatus(ProxyError):
    """Raised when an HTTP proxy refuses the connection.

    Attributes:
        response: the proxy's HTTP response.
    """

    def __init__(self, response: Response) -> None:
        super().__init__(response)
        self.response = response

    def __str__(self) -> str:
        return f"proxy rejected connection: HTTP {self.response.status_code:d}"


class InvalidMethod(InvalidHandshake):
    """Raised when a handshake request doesn't use HTTP GET."""

    def __init__(self, method: str) -> None:
        super().__init__(method)
        self.method = method

    def __str__(self) -> str:
        return f"unsupported HTTP method: {self.method}"


class InvalidProtocol(InvalidHandshake):
    """Raised when a handshake request doesn't use HTTP/1.1."""

    def __init__(self, protocol: str) -> None:
        super().__init__(protocol)
        self.protocol = protocol

    def __str__(self) -> str:
        return f"unsupported HTTP version: {self.protocol}"


class InvalidHeaderFormat(InvalidHeader):
    """Raised when an HTTP header doesn't match the grammar of that header."""

    def __init__(self, name: str, error: str, header: str, pos: int) -> None:
        super().__init__(name, f"{error} at {pos} in {header}")


class InvalidOrigin(InvalidHeader):
    """Raised when the Origin header of a request isn't allowed."""

    def __init__(self, origin: str | None) -> None:
        super().__init__("Origin", origin)


class DuplicateParameter(NegotiationError):
    """Raised when a parameter name is repeated in an extension header."""

    def __init__(self, name: str) -> None:
        super().__init__(name)
        self.name = name

    def __str__(self) -> str:
        return f"duplicate parameter: {self.name}"


class InvalidParameterName(NegotiationError):
    """Raised when a parameter name in an extension header is invalid."""

    def __init__(self, name: str) -> None:
        super().__init__(name)
        self.name = name

    def __str__(self) -> str:
        return f"invalid parameter name: {self.name}"


class InvalidParameterValue(NegotiationError):
    """Raised when a parameter value in an extension header is invalid."""

    def __init__(self, name: str, value: str | None) -> None:
        super().__init__(name, value)
        self.name = name
        self.value = value

    def __str__(self) -> str:
        if self.value is None:
            return f"missing value for parameter {self.name}"
        if self.value == "":
            return f"empty value for parameter {self.name}"
        return f"invalid value for parameter {self.name}: {self.value}"


class TooManyFragments(WebSocketException):
    """Raised when a fragmented message has more fragments than allowed."""

    def __init__(self, max_fragments: int) -> None:
        super().__init__(f"fragmented message exceeds limit of {max_fragments} frames")


class InvalidState(WebSocketException, AssertionError):
    """Raised when sending a frame is forbidden in the current state."""

"""A drop-in for the ``websockets`` package's asyncio API, running on anyws.

Port code written for ``websockets`` by changing its imports::

    import anyws.compat.websockets as websockets
    from anyws.compat.websockets.asyncio.client import connect

The code then runs unchanged on asyncio, and on trio too wherever it makes no asyncio
call of its own. The module layout mirrors ``websockets``: ``asyncio.client``,
``asyncio.server``, ``exceptions``, ``datastructures``, ``http11``, ``protocol``,
``frames``, ``typing``, ``proxy``, and the older ``client`` and ``server``.

``websockets``' sans-I/O layer (``ClientProtocol``, ``ServerProtocol``, ``Protocol``,
``Frame``) and its router (``route``, ``Router``) have no counterpart. See
``docs/porting-from-websockets.md`` for what behaves differently.
"""

from __future__ import annotations

from .asyncio.client import (
    ClientConnection as ClientConnection,
    connect as connect,
    unix_connect as unix_connect,
)
from .asyncio.server import (
    Server as Server,
    ServerConnection as ServerConnection,
    basic_auth as basic_auth,
    broadcast as broadcast,
    serve as serve,
    unix_serve as unix_serve,
)
from .datastructures import (
    Headers as Headers,
    HeadersLike as HeadersLike,
    MultipleValuesError as MultipleValuesError,
)
from .exceptions import (
    ConcurrencyError as ConcurrencyError,
    ConnectionClosed as ConnectionClosed,
    ConnectionClosedError as ConnectionClosedError,
    ConnectionClosedOK as ConnectionClosedOK,
    DuplicateParameter as DuplicateParameter,
    HeaderLineTooLong as HeaderLineTooLong,
    InvalidHandshake as InvalidHandshake,
    InvalidHeader as InvalidHeader,
    InvalidHeaderFormat as InvalidHeaderFormat,
    InvalidHeaderValue as InvalidHeaderValue,
    InvalidMessage as InvalidMessage,
    InvalidMethod as InvalidMethod,
    InvalidOrigin as InvalidOrigin,
    InvalidParameterName as InvalidParameterName,
    InvalidParameterValue as InvalidParameterValue,
    InvalidProtocol as InvalidProtocol,
    InvalidProxy as InvalidProxy,
    InvalidProxyMessage as InvalidProxyMessage,
    InvalidProxyStatus as InvalidProxyStatus,
    InvalidState as InvalidState,
    InvalidStatus as InvalidStatus,
    InvalidUpgrade as InvalidUpgrade,
    InvalidURI as InvalidURI,
    NegotiationError as NegotiationError,
    PayloadTooBig as PayloadTooBig,
    ProtocolError as ProtocolError,
    ProxyError as ProxyError,
    RequestLineTooLong as RequestLineTooLong,
    SecurityError as SecurityError,
    StatusLineTooLong as StatusLineTooLong,
    TooManyFragments as TooManyFragments,
    TooManyHeaders as TooManyHeaders,
    WebSocketException as WebSocketException,
)
from .frames import Close as Close, CloseCode as CloseCode, Opcode as Opcode
from .http11 import Request as Request, Response as Response
from .protocol import Side as Side, State as State
from .typing import (
    Data as Data,
    ExtensionName as ExtensionName,
    ExtensionParameter as ExtensionParameter,
    LoggerLike as LoggerLike,
    Origin as Origin,
    StatusLike as StatusLike,
    Subprotocol as Subprotocol,
)

__all__ = [
    "ClientConnection",
    "Close",
    "CloseCode",
    "ConcurrencyError",
    "ConnectionClosed",
    "ConnectionClosedError",
    "ConnectionClosedOK",
    "Data",
    "DuplicateParameter",
    "ExtensionName",
    "ExtensionParameter",
    "HeaderLineTooLong",
    "Headers",
    "HeadersLike",
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
    "LoggerLike",
    "MultipleValuesError",
    "NegotiationError",
    "Opcode",
    "Origin",
    "PayloadTooBig",
    "ProtocolError",
    "ProxyError",
    "Request",
    "RequestLineTooLong",
    "Response",
    "SecurityError",
    "Server",
    "ServerConnection",
    "Side",
    "State",
    "StatusLike",
    "StatusLineTooLong",
    "Subprotocol",
    "TooManyFragments",
    "TooManyHeaders",
    "WebSocketException",
    "basic_auth",
    "broadcast",
    "connect",
    "serve",
    "unix_connect",
    "unix_serve",
]

# The names of the connection and server classes before websockets 14, still found
# in type annotations; like websockets, the shim keeps them out of __all__.
WebSocketClientProtocol = ClientConnection
WebSocketServerProtocol = ServerConnection
WebSocketServer = Server

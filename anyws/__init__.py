"""anyws: WebSocket client and server on AnyIO, for asyncio, uvloop and trio.

::

    async with anyws.serve(handler, "127.0.0.1", 0) as server:
        async with anyws.connect(f"ws://127.0.0.1:{server.port}/") as ws:
            await ws.send("hello")
"""

from __future__ import annotations

__version__ = "0.1.0"

from ._client import (
    ClientConnection as ClientConnection,
    WebSocketURI as WebSocketURI,
    connect as connect,
    parse_uri as parse_uri,
)
from ._connection import Connection as Connection
from ._http import (
    Headers as Headers,
    MultipleValuesError as MultipleValuesError,
    Request as Request,
    Response as Response,
)
from ._protocol import Close as Close, CloseCode as CloseCode, State as State
from ._server import (
    Server as Server,
    ServerConnection as ServerConnection,
    accept as accept,
    serve as serve,
)
from .exceptions import (
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

__all__ = [
    "ClientConnection",
    "Close",
    "CloseCode",
    "ConcurrencyError",
    "Connection",
    "ConnectionClosed",
    "ConnectionClosedError",
    "ConnectionClosedOK",
    "Headers",
    "InvalidHandshake",
    "InvalidHeader",
    "InvalidHeaderValue",
    "InvalidMessage",
    "InvalidStatus",
    "InvalidURI",
    "InvalidUpgrade",
    "MultipleValuesError",
    "NegotiationError",
    "PayloadTooBig",
    "ProtocolError",
    "Request",
    "Response",
    "SecurityError",
    "Server",
    "ServerConnection",
    "State",
    "WebSocketException",
    "WebSocketURI",
    "__version__",
    "accept",
    "connect",
    "parse_uri",
    "serve",
]

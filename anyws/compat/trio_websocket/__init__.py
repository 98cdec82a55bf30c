"""A drop-in for trio-websocket 0.12 on anyws, for trio, asyncio and uvloop alike.

Code written for trio-websocket ports with a one-line change::

    import anyws.compat.trio_websocket as trio_websocket

Every public name of ``trio_websocket`` is here with the same signature, defaults,
return values, exceptions and reprs. This module only adapts: it renames, reshapes
arguments and maps exceptions; anyws does the protocol work. The functions that take
a ``nursery`` accept a trio nursery on trio and an anyio task group on any backend;
those that take a stream or listeners accept anyio's, or trio's on trio.

A connection in someone else's nursery
    anyws opens a connection as an async context manager that owns the connection's
    reader task. The functions that take a ``nursery`` start a task there with
    ``nursery.start()``: it opens the connection, hands it back through
    ``task_status.started()``, and holds it open until it is closed. When the nursery
    is cancelled the connection is dropped, as trio-websocket drops it.

A server that decides after seeing the request
    A trio-websocket handler receives a :class:`WebSocketRequest`, looks at it, then
    calls :meth:`~WebSocketRequest.accept` or :meth:`~WebSocketRequest.reject`. anyws
    answers the handshake inside :func:`anyws.accept`, through hooks that run before
    the response goes out. So each connection runs :func:`anyws.accept` in a task of
    its own. Its ``select_subprotocol`` hook, which runs once the request is known to be
    a valid upgrade, hands the request to the handler and waits for the decision; its
    ``process_response`` hook then adds the accepted headers to the 101 response, or
    replaces it with the rejection. ``accept()`` returns once the 101 is sent;
    ``reject()`` once the refusal is sent and the stream closed. ``connect_timeout``
    covers TLS and reading the request; the handler's deliberation is not timed,
    as in trio-websocket.

Where behaviour differs from trio-websocket, it is listed in
``docs/porting-from-trio-websocket.md``.
"""

from __future__ import annotations

from ._client import (
    connect_websocket as connect_websocket,
    connect_websocket_url as connect_websocket_url,
    open_websocket as open_websocket,
    open_websocket_url as open_websocket_url,
    wrap_client_stream as wrap_client_stream,
)
from ._connection import WebSocketConnection as WebSocketConnection
from ._exceptions import (
    CloseReason as CloseReason,
    ConnectionClosed as ConnectionClosed,
    ConnectionRejected as ConnectionRejected,
    ConnectionTimeout as ConnectionTimeout,
    DisconnectionTimeout as DisconnectionTimeout,
    Endpoint as Endpoint,
    HandshakeError as HandshakeError,
)
from ._server import (
    WebSocketRequest as WebSocketRequest,
    WebSocketServer as WebSocketServer,
    serve_websocket as serve_websocket,
    wrap_server_stream as wrap_server_stream,
)

__all__ = [
    "CloseReason",
    "ConnectionClosed",
    "ConnectionRejected",
    "ConnectionTimeout",
    "DisconnectionTimeout",
    "Endpoint",
    "HandshakeError",
    "WebSocketConnection",
    "WebSocketRequest",
    "WebSocketServer",
    "connect_websocket",
    "connect_websocket_url",
    "open_websocket",
    "open_websocket_url",
    "serve_websocket",
    "wrap_client_stream",
    "wrap_server_stream",
]

__version__ = "0.12.2"  # the trio-websocket release whose API this module mirrors

# The exceptions, and the values they carry, name this package as their module: it is
# the name tracebacks print and pickles record. The other classes keep their own, where
# autodoc and inspect find their source.
for _cls in (
    CloseReason,
    ConnectionClosed,
    ConnectionRejected,
    ConnectionTimeout,
    DisconnectionTimeout,
    Endpoint,
    HandshakeError,
):
    _cls.__module__ = __name__
del _cls

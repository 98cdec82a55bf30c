"""``websockets.server``, where the server lived before ``websockets.asyncio.server``.

Code written for ``websockets`` 10 to 13 imports ``serve`` from here; it is the
``serve`` of :mod:`anyws.compat.websockets.asyncio.server`, which also accepts the
``(websocket, path)`` handlers of that time.
"""

from __future__ import annotations

from .asyncio.server import (
    Server as Server,
    ServerConnection as ServerConnection,
    basic_auth as basic_auth,
    broadcast as broadcast,
    serve as serve,
    unix_serve as unix_serve,
)

__all__ = ["basic_auth", "broadcast", "serve", "unix_serve"]

WebSocketServerProtocol = ServerConnection
"""The name of the server connection class before ``websockets`` 14."""

WebSocketServer = Server
"""The name of the server class before ``websockets`` 14."""

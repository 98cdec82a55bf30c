"""anyws.sync: the blocking API, for threaded code.

The same names as the async API, driving it through an event loop in a thread of
their own (anyio's blocking portal)::

    import anyws.sync

    def echo(ws):
        for message in ws:
            ws.send(message)

    with anyws.sync.serve(echo, "127.0.0.1", 0) as server:
        with anyws.sync.connect(f"ws://127.0.0.1:{server.port}/") as ws:
            ws.send("hello")
            assert ws.recv(timeout=5) == "hello"

Threads: a client connection runs its event loop in one thread, started by
:func:`connect` and joined by :meth:`ClientConnection.close`. A server runs its event
loop in one thread and each connection's handler in one more, all joined by
:meth:`Server.shutdown`.
"""

from __future__ import annotations

from ._client import ClientConnection as ClientConnection, connect as connect
from ._connection import Connection as Connection
from ._server import (
    Server as Server,
    ServerConnection as ServerConnection,
    serve as serve,
)

__all__ = [
    "ClientConnection",
    "Connection",
    "Server",
    "ServerConnection",
    "connect",
    "serve",
]

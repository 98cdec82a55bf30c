"""``websockets.client``, where the client lived before ``websockets.asyncio.client``.

Code written for ``websockets`` 10 to 13 imports ``connect`` from here; it is the
``connect`` of :mod:`anyws.compat.websockets.asyncio.client`.
"""

from __future__ import annotations

from .asyncio.client import (
    BACKOFF_FACTOR as BACKOFF_FACTOR,
    BACKOFF_INITIAL_DELAY as BACKOFF_INITIAL_DELAY,
    BACKOFF_MAX_DELAY as BACKOFF_MAX_DELAY,
    BACKOFF_MIN_DELAY as BACKOFF_MIN_DELAY,
    ClientConnection as ClientConnection,
    backoff as backoff,
    connect as connect,
    process_exception as process_exception,
    unix_connect as unix_connect,
)

__all__ = ["backoff", "connect", "process_exception", "unix_connect"]

WebSocketClientProtocol = ClientConnection
"""The name of the client connection class before ``websockets`` 14."""

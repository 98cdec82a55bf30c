"""``websockets.protocol``: the connection state, which is anyws's own.

The sans-I/O ``Protocol`` class of ``websockets`` has no counterpart: anyws keeps its
protocol engine private.
"""

from __future__ import annotations

import enum

from anyws._protocol import State as State

__all__ = ["Side", "State"]


class Side(enum.IntEnum):
    """Whether a connection is the server side or the client side."""

    SERVER = 0
    CLIENT = 1


SERVER = Side.SERVER
CLIENT = Side.CLIENT

CONNECTING = State.CONNECTING
OPEN = State.OPEN
CLOSING = State.CLOSING
CLOSED = State.CLOSED

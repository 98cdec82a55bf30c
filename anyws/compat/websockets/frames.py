"""``websockets.frames``: close frames and codes, which are anyws's own, and opcodes.

The sans-I/O ``Frame`` class of ``websockets`` has no counterpart: anyws keeps its
framing private.
"""

from __future__ import annotations

import enum

from anyws._protocol import Close as Close, CloseCode as CloseCode

__all__ = ["Close", "CloseCode", "Opcode"]


class Opcode(enum.IntEnum):
    """Opcode values of WebSocket frames (RFC 6455 section 5.2)."""

    CONT, TEXT, BINARY = 0x00, 0x01, 0x02
    CLOSE, PING, PONG = 0x08, 0x09, 0x0A


CONT = Opcode.CONT
TEXT = Opcode.TEXT
BINARY = Opcode.BINARY
CLOSE = Opcode.CLOSE
PING = Opcode.PING
PONG = Opcode.PONG

DATA_OPCODES = CONT, TEXT, BINARY
CTRL_OPCODES = CLOSE, PING, PONG

# RFC 6455 section 7.4.1: codes that may appear in a Close frame.
EXTERNAL_CLOSE_CODES = {
    CloseCode.NORMAL_CLOSURE,
    CloseCode.GOING_AWAY,
    CloseCode.PROTOCOL_ERROR,
    CloseCode.UNSUPPORTED_DATA,
    CloseCode.INVALID_DATA,
    CloseCode.POLICY_VIOLATION,
    CloseCode.MESSAGE_TOO_BIG,
    CloseCode.MANDATORY_EXTENSION,
    CloseCode.INTERNAL_ERROR,
    CloseCode.SERVICE_RESTART,
    CloseCode.TRY_AGAIN_LATER,
    CloseCode.BAD_GATEWAY,
}

# Codes that make ConnectionClosedOK rather than ConnectionClosedError.
OK_CLOSE_CODES = {
    CloseCode.NORMAL_CLOSURE,
    CloseCode.GOING_AWAY,
    CloseCode.NO_STATUS_RCVD,
}

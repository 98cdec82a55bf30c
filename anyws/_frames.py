"""The fast path for plain frames, and masking (RFC 6455 section 5).

wsproto parses and builds every frame through several layers of generators, named
tuples and extension hooks: correct, general, and about four times the cost of the
frame itself for small messages. Most frames on a busy connection are the simplest
kinds, though: one whole, unfragmented text or binary frame (compressed or not), and
the Pings, Pongs and Close frames that keep it alive and end it. This module handles
exactly those, and nothing else:

* :func:`serialize` builds such a data frame, and :func:`control_frame` a Ping, Pong
  or Close frame;
* :func:`parse` takes the leading such frames off a chunk of received bytes: it
  delivers data frames itself and hands each whole control frame to its caller, which
  may take it or leave it. It stops at the first byte it does not fully understand,
  whether a fragment, a reserved bit or opcode, a control frame its caller leaves, an
  incomplete text frame or invalid UTF-8, and after a Close frame (section 5.5.1);
* :func:`parse_close` reads a Close frame's payload, when it is valid.

:mod:`anyws._protocol` hands whatever :func:`parse` leaves to wsproto, which then
decides, validates and reports errors exactly as it would have without the fast path.
Property tests check that the two paths give the same results on arbitrary input.

A plain binary frame or a control frame cut short between two reads is not handed to
wsproto either: the caller keeps its pieces and parses it whole once it is complete,
so a large message costs one join and one pass. (A text frame cut short goes to
wsproto, whose incremental decoder fails invalid UTF-8 as soon as it arrives.)

Masking uses the C routine in :mod:`anyws._speedups` when it was compiled, and a
pure-Python equivalent otherwise (``bytes.translate`` over the four byte lanes);
setting the environment variable ``ANYWS_NO_SPEEDUPS`` forces the latter.
"""

from __future__ import annotations

import os
from typing import TYPE_CHECKING

if TYPE_CHECKING:
    from collections.abc import Callable

__all__ = [
    "WAIT",
    "apply_mask",
    "control_frame",
    "parse",
    "parse_close",
    "serialize",
    "speedups",
]

_XOR_TABLES = [bytes(a ^ b for a in range(256)) for b in range(256)]


def _apply_mask_python(
    data: bytes | bytearray | memoryview, mask: bytes, prefix: bytes = b""
) -> bytes:
    """``prefix``, then ``data`` XORed with the 4-byte ``mask`` repeated (5.3)."""
    if not data:
        return bytes(prefix)
    buffer = bytearray(data)
    for lane in range(4):
        buffer[lane::4] = buffer[lane::4].translate(_XOR_TABLES[mask[lane]])
    return prefix + buffer if prefix else bytes(buffer)


apply_mask: Callable[..., bytes]
"""``apply_mask(data, mask, prefix=b"")``: ``prefix``, then ``data`` XORed with the
4-byte ``mask`` repeated, in one new :class:`bytes`."""
try:
    if os.environ.get("ANYWS_NO_SPEEDUPS"):
        raise ImportError("ANYWS_NO_SPEEDUPS is set")
    from ._speedups import apply_mask as _apply_mask_c
except ImportError:
    apply_mask = _apply_mask_python
    speedups = False
else:
    apply_mask = _apply_mask_c
    speedups = True

_urandom = os.urandom


def serialize(
    data: str | bytes | bytearray | memoryview,
    mask: bool,
    compress: Callable[[bytes], bytes] | None = None,
) -> bytes:
    """Return one unfragmented text (``str``) or binary frame.

    With ``compress`` (permessage-deflate's, which strips the empty block at the
    end), the frame carries the compressed payload and RSV1 (RFC 7692 section 6).
    """
    if isinstance(data, str):
        payload: bytes | bytearray | memoryview = data.encode()
        first = 0x81
    else:
        payload = data
        first = 0x82
        if isinstance(payload, memoryview):
            # Bytes in memory order, whatever the item format or the strides.
            payload = payload.cast("B") if payload.c_contiguous else payload.tobytes()
    if compress is not None:
        payload = compress(bytes(payload))
        first |= 0x40
    length = len(payload)
    mask_bit = 0x80 if mask else 0
    if length < 126:
        header = bytes((first, mask_bit | length))
    elif length < 65536:
        header = bytes((first, mask_bit | 126, length >> 8, length & 0xFF))
    else:
        header = bytes((first, mask_bit | 127)) + length.to_bytes(8, "big")
    if not mask:
        return b"".join((header, payload))
    key = _urandom(4)
    # One allocation for the whole frame: the masked payload lands after the header.
    return apply_mask(payload, key, header + key)


def control_frame(first: int, payload: bytes | bytearray, mask: bool) -> bytes:
    """Return a control frame of at most 125 bytes of payload (section 5.5).

    ``first`` is its first byte: 0x88 for Close, 0x89 for Ping, 0x8A for Pong.
    """
    length = len(payload)
    if not mask:
        return bytes((first, length)) + payload
    key = _urandom(4)
    return apply_mask(payload, key, bytes((first, 0x80 | length)) + key)


# Section 7.4.1 and the IANA registry: the codes a Close frame may carry below 3000.
# 1004 is reserved; 1005, 1006 and 1015 are for local use only.
_CLOSE_CODES = frozenset((1000, 1001, 1002, 1003, *range(1007, 1015)))


def parse_close(payload: bytes) -> tuple[int, str] | None:
    """Return the code and reason of a valid Close frame's payload (section 5.5.1).

    An empty payload means 1005 (section 7.1.5). ``None`` means the payload is not
    valid: one byte, a code that may not be sent (section 7.4), or a reason that is
    not UTF-8; wsproto then tells which error it is.
    """
    if not payload:
        return 1005, ""
    if len(payload) < 2:
        return None
    code = (payload[0] << 8) | payload[1]
    if code not in _CLOSE_CODES and not 3000 <= code <= 4999:
        return None
    try:
        return code, payload[2:].decode()
    except UnicodeDecodeError:
        return None


WAIT = -1
"""Returned by :func:`parse` as ``needed`` when a frame's header is cut short."""


class Failed(Exception):
    """Raised by :func:`parse` when a message it took on breaks the protocol.

    Attributes:
        code: the close code the failure calls for.
        reason: why.
    """

    def __init__(self, code: int, reason: str) -> None:
        super().__init__(code, reason)
        self.code = code
        self.reason = reason


def parse(
    data: bytes | memoryview,
    masked: bool,
    max_size: int | None,
    on_data: Callable[[str | bytes, bool], object],
    inflate: Callable[[bytes], bytes] | None = None,
    on_control: Callable[[int, bytes], bool] | None = None,
) -> tuple[int, int]:
    """Deliver the leading plain frames of ``data``.

    Args:
        data: bytes received, starting at a frame boundary; a memoryview is read
            in place, and every payload delivered is a copy.
        masked: whether frames must be masked (this side is a server).
        max_size: frames larger than this are left for the slow path, which refuses
            them with the right close code.
        on_data: called with each message, as ``(payload, True)``.
        inflate: with permessage-deflate, inflates a whole compressed message (RSV1
            set); it raises :exc:`Failed` on bad data or past ``max_size``.
        on_control: called with the opcode (8 Close, 9 Ping, 10 Pong) and the
            unmasked payload of each whole control frame with FIN set, no reserved
            bit, the right masking and at most 125 bytes of payload; it returns
            whether it took the frame. Parsing stops before a frame it leaves, and
            after a Close frame it takes. Without it, parsing stops at every control
            frame.

    Returns:
        ``(used, needed)``: how many bytes of ``data`` were consumed, and, when the
        rest is the beginning of a plain binary frame or a control frame cut short,
        how many bytes that frame takes in all (:data:`WAIT` if its header is cut
        short too); ``needed`` is 0 when the rest starts with a frame that only
        wsproto can judge, or follows a Close frame.
    """
    position = 0
    end = len(data)
    limit = max_size if max_size is not None else 1 << 63
    in_place = type(data) is memoryview
    while position < end:
        first = data[position]
        if first & 0x08:
            # A control frame: FIN set, RSV1-3 clear (RFC 7692 section 6.1 leaves RSV1
            # to data frames) and opcode Close (8), Ping (9) or Pong (10).
            if on_control is None or first < 0x88 or first > 0x8A:
                break
            if end - position < 2:
                return position, WAIT
            second = data[position + 1]
            if bool(second & 0x80) is not masked or second & 0x7F > 125:
                break  # section 5.5: no control frame is longer than 125 bytes
            start = position + 2
            stop = start + (second & 0x7F)
            if masked:
                stop += 4
                if stop > end:
                    return position, stop - position
                payload = apply_mask(data[start + 4 : stop], data[start : start + 4])
            else:
                if stop > end:
                    return position, stop - position
                # A slice of bytes is a copy already; one of a view is not.
                payload = bytes(data[start:stop]) if in_place else data[start:stop]  # type: ignore[assignment]
            if not on_control(first & 0x0F, payload):
                break
            position = stop
            if first == 0x88:
                break  # Section 5.5.1: nothing after a Close frame is processed.
            continue
        # FIN set, RSV2-3 clear, opcode text (1) or binary (2); RSV1 set means
        # compressed, when permessage-deflate was agreed.
        compressed = first & 0x40
        if compressed:
            if inflate is None:
                break
            first ^= 0x40
        if first != 0x81 and first != 0x82:
            break
        # A text frame cut short goes to wsproto, which checks its UTF-8 as it
        # arrives: invalid text fails the connection at once (RFC 6455 8.1).
        waits = WAIT if first == 0x82 else 0
        if end - position < 2:
            return position, waits
        second = data[position + 1]
        if bool(second & 0x80) is not masked:
            break
        length = second & 0x7F
        start = position + 2
        if length == 126:
            if end - start < 2:
                return position, waits
            length = (data[start] << 8) | data[start + 1]
            if length < 126:
                break  # not the minimal encoding: wsproto reports it
            start += 2
        elif length == 127:
            if end - start < 8:
                return position, waits
            length = int.from_bytes(data[start : start + 8], "big")
            if length < 65536 or length >> 63:
                break
            start += 8
        if length > limit:
            # Too big, or (compressed) too big to keep whole before inflating:
            # wsproto inflates it piece by piece and refuses it past max_size.
            break
        if masked:
            stop = start + 4 + length
            if stop > end:
                return position, (stop - position) if waits else 0
            if length > 4096:
                view = memoryview(data)
                payload = apply_mask(view[start + 4 : stop], data[start : start + 4])
            else:
                payload = apply_mask(data[start + 4 : stop], data[start : start + 4])
        else:
            stop = start + length
            if stop > end:
                return position, (stop - position) if waits else 0
            payload = bytes(data[start:stop]) if in_place else data[start:stop]  # type: ignore[assignment]
        if compressed:
            assert inflate is not None
            # The inflater's state moved on: from here on a failure is final.
            payload = inflate(payload)
            if first == 0x81:
                try:
                    text = payload.decode()
                except UnicodeDecodeError as exc:
                    raise Failed(1007, str(exc)) from None
                on_data(text, True)
            else:
                on_data(payload, True)
        elif first == 0x81:
            try:
                text = payload.decode()
            except UnicodeDecodeError:
                break
            on_data(text, True)
        else:
            on_data(payload, True)
        position = stop
    return position, 0

"""WebSocket and length-prefixed framing for the load generator and the echo server.

Both fixed peers of the benchmark speak the wire format directly, without any
WebSocket library, so that they cost as little as possible and cost the same for
every implementation under test:

* :func:`client_frame` builds a masked frame once, before a measurement starts;
* :class:`FrameCounter` counts the messages in a stream of unmasked frames without
  keeping their payloads (RFC 6455, section 5.2);
* :class:`RawCounter` does the same for the length-prefixed echo protocol of the
  raw-TCP ceiling: a 4-byte big-endian length, then the payload.
"""

from __future__ import annotations

import base64
import hashlib
import os
import random
import re
import struct
import zlib

try:
    from websockets.speedups import apply_mask
except ImportError:  # pragma: no cover - websockets is in the bench extra

    def apply_mask(
        data: bytes | bytearray | memoryview, mask: bytes | bytearray
    ) -> bytes:
        """XOR ``data`` with the repeated 4-byte ``mask`` (RFC 6455, section 5.3)."""
        size = len(data)
        if not size:
            return b""
        key = int.from_bytes((mask * (size // 4 + 1))[:size], "little")
        return (int.from_bytes(data, "little") ^ key).to_bytes(size, "little")


__all__ = [
    "OP_BINARY",
    "OP_CLOSE",
    "OP_CONT",
    "OP_PING",
    "OP_PONG",
    "OP_TEXT",
    "FrameCounter",
    "RawCounter",
    "accept_key",
    "apply_mask",
    "client_frame",
    "compress_message",
    "deflate_window_bits",
    "frame_header",
    "payload",
    "raw_message",
    "upgrade_request",
]

OP_CONT, OP_TEXT, OP_BINARY = 0x0, 0x1, 0x2
OP_CLOSE, OP_PING, OP_PONG = 0x8, 0x9, 0xA

GUID = b"258EAFA5-E914-47DA-95CA-C5AB0DC85B11"  # RFC 6455, section 1.3
CLIENT_KEY = b"dGhlIHNhbXBsZSBub25jZQ=="  # the sample nonce of RFC 6455, section 1.3

_WORDS = (
    b"alpha bravo charlie delta echo foxtrot golf hotel india juliett kilo lima "
    b"mike november oscar papa quebec romeo sierra tango uniform victor whiskey "
    b'xray yankee zulu {"id": 1234, "ok": true, "items": [1, 2, 3], "name": "x"}'
).split()


def payload(size: int) -> bytes:
    """Return ``size`` bytes of text-like data that compresses about 3:1.

    The same bytes serve every workload, so that only the deflate rows depend on
    their content.
    """
    rng = random.Random(size)
    out = bytearray()
    while len(out) < size:
        out += rng.choice(_WORDS)
        out += b" "
    return bytes(out[:size])


def frame_header(
    opcode: int, length: int, *, masked: bool, rsv1: bool = False
) -> bytes:
    """Return the header of a final frame (RFC 6455, section 5.2), without the key."""
    first = 0x80 | (0x40 if rsv1 else 0) | opcode
    mask_bit = 0x80 if masked else 0
    if length < 126:
        return struct.pack("!BB", first, mask_bit | length)
    if length < 1 << 16:
        return struct.pack("!BBH", first, mask_bit | 126, length)
    return struct.pack("!BBQ", first, mask_bit | 127, length)


def client_frame(opcode: int, data: bytes, *, rsv1: bool = False) -> bytes:
    """Return a masked final frame, as a client sends it (RFC 6455, section 5.3)."""
    key = os.urandom(4)
    header = frame_header(opcode, len(data), masked=True, rsv1=rsv1)
    return header + key + apply_mask(data, key)


def compress_message(data: bytes, window_bits: int) -> bytes:
    """Compress one message for permessage-deflate (RFC 7692, section 7.2.1).

    Each message gets a fresh compressor, which is valid whether or not the peer
    keeps its decompression context: the message refers only to itself.
    """
    compressor = zlib.compressobj(
        zlib.Z_DEFAULT_COMPRESSION, zlib.DEFLATED, -window_bits
    )
    out = compressor.compress(data) + compressor.flush(zlib.Z_SYNC_FLUSH)
    assert out.endswith(b"\x00\x00\xff\xff")
    return out[:-4]


def deflate_window_bits(response_head: bytes) -> int | None:
    """Return the client window the server granted, or ``None`` without deflate."""
    for line in response_head.split(b"\r\n"):
        name, _, value = line.partition(b":")
        if name.strip().lower() != b"sec-websocket-extensions":
            continue
        if b"permessage-deflate" not in value:
            continue
        match = re.search(rb"client_max_window_bits\s*=\s*\"?(\d+)", value)
        return int(match.group(1)) if match else 15
    return None


def upgrade_request(host: str, port: int, *, deflate: bool) -> bytes:
    """Return a minimal opening handshake request (RFC 6455, section 4.1)."""
    lines = [
        b"GET / HTTP/1.1",
        b"Host: %s:%d" % (host.encode(), port),
        b"Upgrade: websocket",
        b"Connection: Upgrade",
        b"Sec-WebSocket-Key: " + CLIENT_KEY,
        b"Sec-WebSocket-Version: 13",
    ]
    if deflate:
        lines.append(
            b"Sec-WebSocket-Extensions: permessage-deflate; client_max_window_bits"
        )
    return b"\r\n".join(lines) + b"\r\n\r\n"


def accept_key(key: bytes) -> bytes:
    """Return ``Sec-WebSocket-Accept`` for a client key (RFC 6455, section 4.2.2)."""
    return base64.b64encode(hashlib.sha1(key + GUID).digest())


def raw_message(data: bytes) -> bytes:
    """Return one message of the length-prefixed echo protocol."""
    return struct.pack("!I", len(data)) + data


class FrameCounter:
    """Counts the data messages in a stream of unmasked frames.

    Data payloads are skipped, never copied whole; control frames are kept in
    :attr:`control` for the caller to answer.
    """

    def __init__(self) -> None:
        self._buffer = bytearray()
        self._skip = 0
        self._skip_fin = False
        self.control: list[tuple[int, bytes]] = []
        """Control frames received and not yet handled, as ``(opcode, payload)``."""

    def feed(self, data: bytes) -> int:
        """Consume ``data``; return how many messages it completed."""
        done = 0
        if self._skip:
            if len(data) < self._skip:
                self._skip -= len(data)
                return 0
            data = data[self._skip :]
            self._skip = 0
            done += self._skip_fin
            if not data:
                return done
        buffer = self._buffer
        buffer += data
        end = len(buffer)
        pos = 0
        while end - pos >= 2:
            first, second = buffer[pos], buffer[pos + 1]
            length = second & 0x7F
            start = pos + 2
            if length == 126:
                if end - pos < 4:
                    break
                length = int.from_bytes(buffer[pos + 2 : pos + 4], "big")
                start = pos + 4
            elif length == 127:
                if end - pos < 10:
                    break
                length = int.from_bytes(buffer[pos + 2 : pos + 10], "big")
                start = pos + 10
            if second & 0x80:
                start += 4  # a masked frame from a server is a bug, but skip the key
            opcode = first & 0x0F
            fin = first & 0x80
            if opcode & 0x8:
                if end - start < length:
                    break
                self.control.append((opcode, bytes(buffer[start : start + length])))
                pos = start + length
            elif end - start >= length:
                pos = start + length
                done += fin != 0
            else:
                self._skip = length - (end - start)
                self._skip_fin = fin != 0
                pos = end
                break
        del buffer[:pos]
        return done


class RawCounter:
    """Counts the messages in a stream of the length-prefixed echo protocol."""

    def __init__(self) -> None:
        self._buffer = bytearray()
        self._skip = 0
        self.control: list[tuple[int, bytes]] = []
        """Always empty: the raw protocol has no control messages."""

    def feed(self, data: bytes) -> int:
        """Consume ``data``; return how many messages it completed."""
        done = 0
        if self._skip:
            if len(data) < self._skip:
                self._skip -= len(data)
                return 0
            data = data[self._skip :]
            self._skip = 0
            done += 1
            if not data:
                return done
        buffer = self._buffer
        buffer += data
        end = len(buffer)
        pos = 0
        while end - pos >= 4:
            length = int.from_bytes(buffer[pos : pos + 4], "big")
            if end - pos - 4 >= length:
                pos += 4 + length
                done += 1
            else:
                self._skip = length - (end - pos - 4)
                pos = end
                break
        del buffer[:pos]
        return done

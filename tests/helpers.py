"""Test helpers: an in-memory byte stream pair and a raw WebSocket peer.

The raw peer speaks WebSocket by hand (hand-built frames over a plain anyio stream,
no WebSocket library), so that tests can send what a well-behaved library never
would: bad frames, invalid UTF-8, unanswered Pings, abrupt disconnects.
"""

from __future__ import annotations

import base64
import hashlib
import os
import socket
import struct
from dataclasses import dataclass
from typing import TYPE_CHECKING, Any

import anyio
import pytest
from anyio.abc import ByteStream, SocketStream

if TYPE_CHECKING:
    from anyio.streams.memory import MemoryObjectReceiveStream, MemoryObjectSendStream

    from anyws._protocol import Protocol


def protocol_fields(protocol: Protocol, *, reason: bool) -> tuple[Any, ...]:
    """What a :class:`~anyws._protocol.Protocol` shows of its state, to compare two
    of them; with ``reason``, the text of its failure too."""
    failure = protocol.failure
    return (
        protocol.state,
        protocol.close_rcvd,
        protocol.close_sent,
        protocol.close_rcvd_then_sent,
        protocol.closing_handshake_done,
        protocol.can_send_data(),
        None
        if failure is None
        else (
            type(failure),
            getattr(failure, "code", None),
            str(failure) if reason else None,
        ),
    )


def _has_ipv6_loopback() -> bool:
    if not socket.has_ipv6:
        return False
    try:
        with socket.socket(socket.AF_INET6, socket.SOCK_STREAM) as sock:
            sock.bind(("::1", 0))
    except OSError:
        return False
    return True


HAS_IPV6 = _has_ipv6_loopback()
"""Whether this machine can bind the IPv6 loopback address."""
needs_ipv6 = pytest.mark.skipif(
    not HAS_IPV6, reason="this machine has no IPv6 loopback (cannot bind ::1)"
)

GUID = b"258EAFA5-E914-47DA-95CA-C5AB0DC85B11"

OP_CONT, OP_TEXT, OP_BINARY, OP_CLOSE, OP_PING, OP_PONG = 0, 1, 2, 8, 9, 10


class MemoryByteStream(ByteStream):
    """One end of an in-memory byte stream pair, made by :func:`memory_stream_pair`."""

    def __init__(
        self,
        send: MemoryObjectSendStream[bytes],
        receive: MemoryObjectReceiveStream[bytes],
    ) -> None:
        self._send = send
        self._receive = receive
        self._buffer = b""

    async def send(self, item: bytes) -> None:
        await self._send.send(bytes(item))

    async def send_eof(self) -> None:
        await self._send.aclose()

    async def receive(self, max_bytes: int = 65536) -> bytes:
        if not self._buffer:
            self._buffer = await self._receive.receive()
        data, self._buffer = self._buffer[:max_bytes], self._buffer[max_bytes:]
        return data

    async def aclose(self) -> None:
        await self._send.aclose()
        await self._receive.aclose()


def memory_stream_pair(
    max_buffer: float = 64,
) -> tuple[MemoryByteStream, MemoryByteStream]:
    """Return two connected in-memory byte streams (client end, server end)."""
    a_send, a_receive = anyio.create_memory_object_stream[bytes](max_buffer)
    b_send, b_receive = anyio.create_memory_object_stream[bytes](max_buffer)
    return MemoryByteStream(a_send, b_receive), MemoryByteStream(b_send, a_receive)


def frame(
    opcode: int,
    payload: bytes = b"",
    *,
    fin: bool = True,
    rsv: int = 0,
    mask: bool = True,
    length: int | None = None,
) -> bytes:
    """Build one frame; ``length`` overrides the encoded payload length."""
    size = len(payload) if length is None else length
    head = bytes([(0x80 if fin else 0) | (rsv << 4) | opcode])
    mask_bit = 0x80 if mask else 0
    if size < 126:
        head += bytes([mask_bit | size])
    elif size < 65536:
        head += bytes([mask_bit | 126]) + struct.pack("!H", size)
    else:
        head += bytes([mask_bit | 127]) + struct.pack("!Q", size)
    if not mask:
        return head + payload
    key = os.urandom(4)
    return head + key + mask_bytes(payload, key)


def mask_bytes(payload: bytes, key: bytes) -> bytes:
    """XOR ``payload`` with the 4-byte ``key`` repeated (RFC 6455 section 5.3)."""
    if not payload:
        return b""
    size = len(payload)
    repeated = (key * (size // 4 + 1))[:size]
    value = int.from_bytes(payload, "big") ^ int.from_bytes(repeated, "big")
    return value.to_bytes(size, "big")


def close_payload(code: int, reason: bytes = b"") -> bytes:
    """The payload of a Close frame."""
    return struct.pack("!H", code) + reason


@dataclass
class Frame:
    """A frame received by :class:`RawPeer`."""

    fin: bool
    rsv: int
    opcode: int
    payload: bytes

    @property
    def close_code(self) -> int | None:
        """The code of a Close frame, if it has one."""
        if self.opcode != OP_CLOSE or len(self.payload) < 2:
            return None
        code: int = struct.unpack("!H", self.payload[:2])[0]
        return code


class RawPeer:
    """A hand-written WebSocket peer over a byte stream, for hostile-peer tests."""

    def __init__(self, stream: ByteStream, *, is_client: bool = True) -> None:
        self.stream = stream
        self.is_client = is_client
        self.buffer = b""
        self.handshake_response = b""

    @classmethod
    async def connect(
        cls, port: int, path: str = "/", extra_headers: str = ""
    ) -> RawPeer:
        """Connect to 127.0.0.1:``port`` and complete a client handshake."""
        stream: SocketStream = await anyio.connect_tcp("127.0.0.1", port)
        peer = cls(stream)
        await peer.client_handshake(path, extra_headers)
        return peer

    async def client_handshake(self, path: str = "/", extra_headers: str = "") -> None:
        """Send an upgrade request and read the 101 response."""
        key = base64.b64encode(os.urandom(16)).decode()
        await self.stream.send(
            (
                f"GET {path} HTTP/1.1\r\nHost: 127.0.0.1\r\nUpgrade: websocket\r\n"
                f"Connection: Upgrade\r\nSec-WebSocket-Key: {key}\r\n"
                f"Sec-WebSocket-Version: 13\r\n{extra_headers}\r\n"
            ).encode()
        )
        head = await self.read_until(b"\r\n\r\n")
        self.handshake_response = head
        if not head.startswith(b"HTTP/1.1 101"):
            raise AssertionError(f"handshake refused: {head!r}")
        accept = base64.b64encode(hashlib.sha1(key.encode() + GUID).digest())
        assert b"Sec-WebSocket-Accept: " + accept in head

    async def server_handshake(self, extra_headers: str = "") -> bytes:
        """Read an upgrade request and answer 101; return the request head."""
        head = await self.read_until(b"\r\n\r\n")
        key = b""
        for line in head.split(b"\r\n"):
            name, _, value = line.partition(b":")
            if name.strip().lower() == b"sec-websocket-key":
                key = value.strip()
        accept = base64.b64encode(hashlib.sha1(key + GUID).digest()).decode()
        await self.stream.send(
            (
                "HTTP/1.1 101 Switching Protocols\r\nUpgrade: websocket\r\n"
                f"Connection: Upgrade\r\nSec-WebSocket-Accept: {accept}\r\n"
                f"{extra_headers}\r\n"
            ).encode()
        )
        return head

    async def read_until(self, marker: bytes) -> bytes:
        """Read until ``marker``; return everything up to and including it."""
        while marker not in self.buffer:
            self.buffer += await self.stream.receive()
        index = self.buffer.index(marker) + len(marker)
        data, self.buffer = self.buffer[:index], self.buffer[index:]
        return data

    async def read_exactly(self, size: int) -> bytes:
        """Read exactly ``size`` bytes."""
        while len(self.buffer) < size:
            self.buffer += await self.stream.receive()
        data, self.buffer = self.buffer[:size], self.buffer[size:]
        return data

    async def send(self, data: bytes) -> None:
        """Send raw bytes."""
        await self.stream.send(data)

    async def send_frame(
        self, opcode: int, payload: bytes = b"", **kwargs: Any
    ) -> None:
        """Send one frame, masked if this peer is a client."""
        kwargs.setdefault("mask", self.is_client)
        await self.stream.send(frame(opcode, payload, **kwargs))

    async def read_frame(self) -> Frame:
        """Read one frame (unmasking it if needed)."""
        b0, b1 = await self.read_exactly(2)
        size = b1 & 0x7F
        if size == 126:
            (size,) = struct.unpack("!H", await self.read_exactly(2))
        elif size == 127:
            (size,) = struct.unpack("!Q", await self.read_exactly(8))
        key = await self.read_exactly(4) if b1 & 0x80 else None
        payload = await self.read_exactly(size)
        if key is not None:
            payload = bytes(b ^ key[i % 4] for i, b in enumerate(payload))
        return Frame(bool(b0 & 0x80), (b0 >> 4) & 7, b0 & 0x0F, payload)

    async def read_eof(self) -> bool:
        """Read until the peer closes TCP; return whether only EOF came (no data)."""
        extra = self.buffer
        self.buffer = b""
        try:
            while True:
                extra += await self.stream.receive()
        except (anyio.EndOfStream, anyio.BrokenResourceError):
            return not extra

    async def aclose(self) -> None:
        """Close the stream."""
        await self.stream.aclose()

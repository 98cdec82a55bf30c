"""The fixed echo server that serves every client: ``python -m bench.echo``.

Lean and the same for every client under test: asyncio protocols on uvloop
(plain asyncio when uvloop is missing), unmasking with websockets' C routine,
one write per echoed message. It accepts permessage-deflate when a client offers
it (RFC 7692, with context takeover, 15-bit windows unless the client asks for
less), and serves the length-prefixed raw-TCP echo on other ports.

Prints ``{"ports": {"ws": N, "wss": N, "raw": N, "raws": N}, "pid": N}`` once
listening (the TLS ports only with ``--cert``), then answers ``usage`` on
standard input like the servers under test.
"""

from __future__ import annotations

import argparse
import asyncio
import os
import re
import zlib
from typing import cast

import anyio

from .procs import emit, raise_nofile_limit, serve_control, server_ssl_context
from .wire import (
    OP_BINARY,
    OP_CLOSE,
    OP_CONT,
    OP_PING,
    OP_PONG,
    OP_TEXT,
    accept_key,
    apply_mask,
    frame_header,
)

try:
    import uvloop  # noqa: F401
except ImportError:  # pragma: no cover
    HAVE_UVLOOP = False
else:
    HAVE_UVLOOP = True

__all__ = ["RawEcho", "WebSocketEcho", "main"]


class WebSocketEcho(asyncio.Protocol):
    """Echoes every message of one WebSocket connection."""

    def __init__(self) -> None:
        self.transport: asyncio.Transport | None = None
        self.buffer = bytearray()
        self.open = False
        self.need = 0
        self.fragments: list[bytes] = []
        self.opcode = OP_BINARY
        self.compressed = False
        self.inflater: zlib._Decompress | None = None
        self.deflater: zlib._Compress | None = None
        self.window_bits = 15
        self.reset_deflater = False

    def connection_made(self, transport: asyncio.BaseTransport) -> None:
        # uvloop's transports do not derive from asyncio.Transport.
        self.transport = cast("asyncio.Transport", transport)

    def data_received(self, data: bytes) -> None:
        buffer = self.buffer
        buffer += data
        if len(buffer) < self.need:
            return
        if not self.open:
            end = buffer.find(b"\r\n\r\n")
            if end < 0:
                return
            self.handshake(bytes(buffer[:end]))
            del buffer[: end + 4]
        self.frames()

    def handshake(self, head: bytes) -> None:
        """Accept the opening handshake (RFC 6455, section 4.2.2)."""
        assert self.transport is not None
        headers = {}
        for line in head.split(b"\r\n")[1:]:
            name, _, value = line.partition(b":")
            headers[name.strip().lower()] = value.strip()
        lines = [
            b"HTTP/1.1 101 Switching Protocols",
            b"Upgrade: websocket",
            b"Connection: Upgrade",
            b"Sec-WebSocket-Accept: " + accept_key(headers[b"sec-websocket-key"]),
        ]
        offer = headers.get(b"sec-websocket-extensions", b"")
        if b"permessage-deflate" in offer:
            offer = offer.split(b",")[0]
            agreed = b"permessage-deflate"
            match = re.search(rb"server_max_window_bits\s*=\s*\"?(\d+)", offer)
            if match:
                self.window_bits = int(match.group(1))
                agreed += b"; server_max_window_bits=%d" % self.window_bits
            if b"server_no_context_takeover" in offer:
                self.reset_deflater = True
                agreed += b"; server_no_context_takeover"
            self.inflater = zlib.decompressobj(-15)
            self.deflater = zlib.compressobj(
                zlib.Z_DEFAULT_COMPRESSION, zlib.DEFLATED, -self.window_bits
            )
            lines.append(b"Sec-WebSocket-Extensions: " + agreed)
        self.transport.write(b"\r\n".join(lines) + b"\r\n\r\n")
        self.open = True

    def frames(self) -> None:
        """Handle every complete frame in the buffer (RFC 6455, section 5.2)."""
        buffer = self.buffer
        end = len(buffer)
        pos = 0
        self.need = 0
        while end - pos >= 2:
            first, second = buffer[pos], buffer[pos + 1]
            length = second & 0x7F
            start = pos + 6
            if length == 126:
                start = pos + 8
                if end < start:
                    break
                length = int.from_bytes(buffer[pos + 2 : pos + 4], "big")
            elif length == 127:
                start = pos + 14
                if end < start:
                    break
                length = int.from_bytes(buffer[pos + 2 : pos + 10], "big")
            if end - start < length:
                self.need = start + length - pos
                break
            key = bytes(buffer[start - 4 : start])
            data = apply_mask(buffer[start : start + length], key)
            pos = start + length
            self.frame(first, data)
        del buffer[:pos]

    def frame(self, first: int, data: bytes) -> None:
        """Handle one frame: echo messages, answer Pings and Close frames."""
        assert self.transport is not None
        opcode = first & 0x0F
        if opcode in (OP_TEXT, OP_BINARY):
            self.opcode = opcode
            self.compressed = bool(first & 0x40)
        elif opcode == OP_PING:
            self.transport.write(frame_header(OP_PONG, len(data), masked=False) + data)
            return
        elif opcode == OP_CLOSE:
            self.transport.write(frame_header(OP_CLOSE, len(data), masked=False) + data)
            self.transport.close()
            return
        elif opcode != OP_CONT:
            return
        if not first & 0x80:
            self.fragments.append(data)
            return
        if self.fragments:
            self.fragments.append(data)
            data = b"".join(self.fragments)
            self.fragments.clear()
        if self.compressed:
            assert self.inflater is not None and self.deflater is not None
            message = self.inflater.decompress(data + b"\x00\x00\xff\xff")
            data = self.deflater.compress(message)
            data += self.deflater.flush(zlib.Z_SYNC_FLUSH)
            data = data[:-4]
            if self.reset_deflater:
                self.deflater = zlib.compressobj(
                    zlib.Z_DEFAULT_COMPRESSION, zlib.DEFLATED, -self.window_bits
                )
        header = frame_header(
            self.opcode, len(data), masked=False, rsv1=self.compressed
        )
        if len(data) < 4096:
            self.transport.write(header + data)
        else:
            self.transport.writelines([header, data])


class RawEcho(asyncio.Protocol):
    """Echoes every length-prefixed message of one connection."""

    def __init__(self) -> None:
        self.transport: asyncio.Transport | None = None
        self.buffer = bytearray()

    def connection_made(self, transport: asyncio.BaseTransport) -> None:
        # uvloop's transports do not derive from asyncio.Transport.
        self.transport = cast("asyncio.Transport", transport)

    def data_received(self, data: bytes) -> None:
        assert self.transport is not None
        buffer = self.buffer
        buffer += data
        end = len(buffer)
        pos = 0
        while end - pos >= 4:
            stop = pos + 4 + int.from_bytes(buffer[pos : pos + 4], "big")
            if stop > end:
                break
            pos = stop
        if pos:
            self.transport.write(bytes(buffer[:pos]))
            del buffer[:pos]


async def serve(cert: str | None) -> None:
    """Listen on every port and serve forever."""
    loop = asyncio.get_running_loop()
    context = server_ssl_context(cert)
    ports: dict[str, int] = {}
    servers = []
    for name, factory, tls in [
        ("ws", WebSocketEcho, False),
        ("raw", RawEcho, False),
        ("wss", WebSocketEcho, True),
        ("raws", RawEcho, True),
    ]:
        if tls and context is None:
            continue
        server = await loop.create_server(
            factory, "127.0.0.1", 0, ssl=context if tls else None
        )
        servers.append(server)
        ports[name] = server.sockets[0].getsockname()[1]
    emit({"ports": ports, "pid": os.getpid()})
    await anyio.sleep_forever()


def main(argv: list[str] | None = None) -> None:
    """Parse the arguments and serve until told to quit."""
    parser = argparse.ArgumentParser(prog="python -m bench.echo")
    parser.add_argument("--cert", help="PEM file with the key and certificate chain")
    args = parser.parse_args(argv)
    raise_nofile_limit()
    serve_control()
    anyio.run(
        serve, args.cert, backend="asyncio", backend_options={"use_uvloop": HAVE_UVLOOP}
    )


if __name__ == "__main__":
    main()

"""The fixed load generator that drives every server: ``python -m bench.loadgen``.

It is deliberately lean and the same for every server under test: asyncio
protocols on uvloop (plain asyncio when uvloop is missing), frames masked once
before a measurement, and a reader that counts the echoed messages without
copying their payloads. The next message goes out from the callback that
received the previous echo, without a task switch.

Commands arrive as JSON lines on standard input, one measurement each (see
:class:`Command`); the process prints ``{"mark": 0}`` when the measurement window
opens, ``{"mark": 1}`` when it closes, so that the coordinator can read the
server's CPU clock at the same moments, then ``{"result": {...}}``.
"""

from __future__ import annotations

import asyncio
import functools
import json
import sys
import time
import traceback
from dataclasses import dataclass
from typing import TYPE_CHECKING, Any, cast

import anyio

from .procs import Window, client_ssl_context, emit, raise_nofile_limit
from .wire import (
    OP_BINARY,
    OP_CLOSE,
    OP_PING,
    OP_PONG,
    FrameCounter,
    RawCounter,
    client_frame,
    compress_message,
    deflate_window_bits,
    payload,
    raw_message,
    upgrade_request,
)

if TYPE_CHECKING:
    import ssl
    from collections.abc import Callable

try:
    import uvloop  # noqa: F401
except ImportError:  # pragma: no cover
    HAVE_UVLOOP = False
else:
    HAVE_UVLOOP = True

__all__ = ["Command", "main"]

CLOSE_FRAME = client_frame(OP_CLOSE, (1000).to_bytes(2, "big"))
OPEN_CONCURRENCY = 100
"""Connections opened at once when a workload needs many."""


@dataclass
class Command:
    """One measurement, as the coordinator sends it."""

    workload: str
    """``echo``, ``handshake`` or ``hold``."""
    port: int
    id: int = 0
    """Echoed in every message about this command."""
    proto: str = "ws"
    """``ws`` or ``raw`` (the length-prefixed echo)."""
    host: str = "127.0.0.1"
    size: int = 0
    conns: int = 1
    inflight: int = 1
    concurrency: int = 1
    cafile: str | None = None
    deflate: bool = False
    warmup: float = 0.2
    duration: float = 0.5


class Peer(asyncio.Protocol):
    """One connection of the load generator."""

    def __init__(self, command: Command, window: Window) -> None:
        loop = asyncio.get_running_loop()
        self.command = command
        self.window = window
        self.ws = command.proto == "ws"
        self.counter: FrameCounter | RawCounter = (
            FrameCounter() if self.ws else RawCounter()
        )
        self.transport: asyncio.Transport | None = None
        self.head = bytearray()
        self.open = not self.ws
        self.opened: asyncio.Future[bytes] = loop.create_future()
        self.closed: asyncio.Future[None] = loop.create_future()
        self.idle: asyncio.Future[None] = loop.create_future()
        self.closing = False
        self.message = b""
        self.sent_at = 0.0
        self.outstanding = 0
        self.on_messages: Callable[[int], None] = self.ignore

    def ignore(self, count: int) -> None:
        """Drop echoes nobody waits for."""

    def settle(self, count: int) -> None:
        """Mark the connection idle at the first echo."""
        if not self.idle.done():
            self.idle.set_result(None)

    def connection_made(self, transport: asyncio.BaseTransport) -> None:
        # uvloop's transports do not derive from asyncio.Transport.
        self.transport = cast("asyncio.Transport", transport)
        if self.ws:
            self.transport.write(
                upgrade_request(
                    self.command.host, self.command.port, deflate=self.command.deflate
                )
            )
        else:
            self.opened.set_result(b"")

    def data_received(self, data: bytes) -> None:
        if not self.open:
            self.head += data
            end = self.head.find(b"\r\n\r\n")
            if end < 0:
                return
            head, data = bytes(self.head[:end]), bytes(self.head[end + 4 :])
            self.head.clear()
            self.open = True
            if head.startswith(b"HTTP/1.1 101"):
                self.opened.set_result(head)
            else:
                status = head.split(b"\r\n", 1)[0].decode(errors="replace")
                self.opened.set_exception(ConnectionError(f"handshake: {status}"))
            if not data:
                return
        done = self.counter.feed(data)
        if self.counter.control:
            self.handle_control()
        if done:
            self.on_messages(done)

    def handle_control(self) -> None:
        """Answer Pings and Close frames (RFC 6455, sections 5.5.1 and 5.5.2)."""
        assert self.transport is not None
        for opcode, data in self.counter.control:
            if opcode == OP_PING:
                self.transport.write(client_frame(OP_PONG, data))
            elif opcode == OP_CLOSE:
                if not self.closing:
                    self.closing = True
                    self.transport.write(CLOSE_FRAME)
                self.transport.close()
                if not self.closed.done():
                    self.closed.set_result(None)
        self.counter.control.clear()

    def connection_lost(self, exc: Exception | None) -> None:
        for future in (self.opened, self.idle):
            if not future.done():
                future.set_exception(exc or ConnectionError("connection lost"))
                # Only some workloads wait on these: mark them seen, so that
                # asyncio doesn't log the others. Awaiting them still raises.
                future.exception()
        if not self.closed.done():
            self.closed.set_result(None)

    def close(self) -> None:
        """Start the closing handshake."""
        assert self.transport is not None
        if self.transport.is_closing():
            return
        if not self.closing and self.ws:
            self.closing = True
            self.transport.write(CLOSE_FRAME)
        elif not self.ws:
            self.transport.close()

    def start_round_trips(self) -> None:
        """Send the message again whenever its echo arrives."""
        window = self.window
        assert self.transport is not None
        write = self.transport.write
        message = self.message

        def on_messages(count: int) -> None:
            now = time.perf_counter()
            window.ops += count
            if window.measuring:
                window.latencies.append(now - self.sent_at)
            if window.stop:
                self.idle.set_result(None)
                return
            self.sent_at = now
            write(message)

        self.on_messages = on_messages
        self.sent_at = time.perf_counter()
        write(message)

    def start_stream(self, inflight: int) -> None:
        """Keep ``inflight`` messages on their way."""
        window = self.window
        assert self.transport is not None
        writelines = self.transport.writelines
        message = self.message

        def on_messages(count: int) -> None:
            window.ops += count
            if window.stop:
                self.outstanding -= count
                if self.outstanding <= 0:
                    self.idle.set_result(None)
                return
            writelines([message] * count)

        self.on_messages = on_messages
        self.outstanding = inflight
        writelines([message] * inflight)


@functools.lru_cache(maxsize=32)
def _message(proto: str, size: int, window_bits: int | None) -> bytes:
    data = payload(size)
    if proto == "raw":
        return raw_message(data)
    if window_bits is None:
        return client_frame(OP_BINARY, data)
    return client_frame(OP_BINARY, compress_message(data, window_bits), rsv1=True)


async def connect(
    command: Command, window: Window, context: ssl.SSLContext | None
) -> Peer:
    """Open one connection and finish its opening handshake."""
    loop = asyncio.get_running_loop()
    _, peer = await loop.create_connection(
        functools.partial(Peer, command, window),
        command.host,
        command.port,
        ssl=context,
    )
    head = await peer.opened
    bits = None
    if command.deflate:
        bits = deflate_window_bits(head)
        if bits is None:
            raise ConnectionError("the server declined permessage-deflate")
    peer.message = _message(command.proto, command.size, bits)
    return peer


async def open_many(
    command: Command, window: Window, context: ssl.SSLContext | None, count: int
) -> list[Peer]:
    """Open ``count`` connections, :data:`OPEN_CONCURRENCY` at a time."""
    limit = asyncio.Semaphore(OPEN_CONCURRENCY)

    async def one() -> Peer:
        async with limit:
            return await connect(command, window, context)

    return list(await asyncio.gather(*(one() for _ in range(count))))


async def close_all(peers: list[Peer]) -> None:
    """Close every connection, waiting up to 2 seconds for the closing handshakes."""
    for peer in peers:
        peer.close()
    try:
        await asyncio.wait_for(asyncio.gather(*(p.closed for p in peers)), 2)
    except asyncio.TimeoutError:
        pass
    for peer in peers:
        if peer.transport is not None and not peer.closed.done():
            peer.transport.abort()


async def run_echo(command: Command, context: ssl.SSLContext | None) -> dict[str, Any]:
    """Echo messages on ``conns`` connections, one at a time or ``inflight``."""
    window = Window(command.id)
    peers = await open_many(command, window, context, command.conns)
    try:
        for peer in peers:
            if command.inflight > 1:
                peer.start_stream(command.inflight)
            else:
                peer.start_round_trips()
        await asyncio.sleep(command.warmup)
        window.mark()
        await asyncio.sleep(command.duration)
        window.mark()
        window.stop = True
        await asyncio.wait_for(asyncio.gather(*(p.idle for p in peers)), 30)
    finally:
        await close_all(peers)
    return window.result()


async def run_handshakes(
    command: Command, context: ssl.SSLContext | None
) -> dict[str, Any]:
    """Open and close connections, ``concurrency`` at a time."""
    window = Window(command.id)

    async def worker() -> None:
        while not window.stop:
            start = time.perf_counter()
            peer = await connect(command, window, context)
            peer.close()
            await peer.closed
            if peer.transport is not None:
                peer.transport.close()
            window.ops += 1
            if window.measuring:
                window.latencies.append(time.perf_counter() - start)

    workers = [asyncio.ensure_future(worker()) for _ in range(command.concurrency)]
    try:
        await asyncio.sleep(command.warmup)
        window.mark()
        await asyncio.sleep(command.duration)
        window.mark()
        window.stop = True
        await asyncio.wait_for(asyncio.gather(*workers), 30)
    finally:
        for task in workers:
            task.cancel()
    return window.result()


async def run_hold(command: Command, context: ssl.SSLContext | None) -> dict[str, Any]:
    """Open ``conns`` connections, echo one message on each, then hold them idle.

    The echo makes the server allocate what it allocates lazily (buffers,
    compression contexts), as it has for any connection that was ever used; for
    the raw-TCP protocol, which has no handshake, it also proves that the server
    accepted the connection.
    """
    window = Window(command.id)
    peers = await open_many(command, window, context, command.conns)
    try:
        for peer in peers:
            peer.on_messages = peer.settle
            assert peer.transport is not None
            peer.transport.write(peer.message)
        await asyncio.gather(*(p.idle for p in peers))
        emit({"id": command.id, "mark": 0, "open": len(peers)})
        loop = asyncio.get_running_loop()
        await loop.run_in_executor(None, sys.stdin.readline)
    finally:
        for peer in peers:
            if peer.transport is not None:
                peer.transport.abort()
    return {"ops": len(peers), "seconds": 0.0, "driver_cpu": 0.0, "latency": None}


async def run(command: Command) -> dict[str, Any]:
    """Run one measurement."""
    context = client_ssl_context(command.cafile)
    if command.workload == "echo":
        return await run_echo(command, context)
    if command.workload == "handshake":
        return await run_handshakes(command, context)
    if command.workload == "hold":
        return await run_hold(command, context)
    raise ValueError(f"unknown workload: {command.workload!r}")


def main() -> None:
    """Run the commands read from standard input, one at a time."""
    raise_nofile_limit()
    emit({"ready": True, "uvloop": HAVE_UVLOOP})
    while line := sys.stdin.readline():
        if line.strip() == "quit":
            break
        command_id = None
        try:
            fields = json.loads(line)
            command_id = fields.get("id")
            command = Command(**fields)
            result = anyio.run(
                run,
                command,
                backend="asyncio",
                backend_options={"use_uvloop": HAVE_UVLOOP},
            )
        except Exception as exc:
            traceback.print_exc()
            emit({"id": command_id, "error": f"{type(exc).__name__}: {exc}"})
        else:
            emit({"id": command_id, "result": result})


if __name__ == "__main__":
    main()

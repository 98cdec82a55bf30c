"""A client under test: ``python -m bench.client --impl anyws --loop trio``.

Commands arrive as JSON lines on standard input, one measurement each, in the
same form as for :mod:`bench.loadgen`; each runs on a fresh event loop. The
client measures its own CPU time between ``{"mark": 0}`` and ``{"mark": 1}``.

Every library runs with its defaults except for the largest message, raised to
:data:`bench.server.MAX_SIZE`, and compression, off unless the command asks for
it. aiohttp shares one ``ClientSession`` (without a connection limit) between
the connections of a measurement, as an application would. The raw-TCP ceiling
uses asyncio streams on asyncio and uvloop, and trio streams on trio; ``raw-anyio``
uses anyio streams on every loop.
"""

from __future__ import annotations

import argparse
import functools
import json
import sys
import time
import traceback
from contextlib import AsyncExitStack, asynccontextmanager
from dataclasses import dataclass
from typing import TYPE_CHECKING, Any, TypeAlias

import anyio
import anyio.abc

from .loadgen import Command
from .procs import LOOPS, Window, client_ssl_context, emit, raise_nofile_limit, run_on
from .server import MAX_SIZE
from .wire import payload, raw_message

if TYPE_CHECKING:
    import ssl
    from collections.abc import AsyncIterator, Awaitable, Callable
    from contextlib import AbstractAsyncContextManager

__all__ = ["LIBRARIES", "Conn", "Target", "main"]


@dataclass
class Conn:
    """An open connection, reduced to the two calls the workloads make."""

    send: Callable[[bytes], Awaitable[object]]
    recv: Callable[[], Awaitable[object]]


@dataclass
class Target:
    """Where and how to connect."""

    host: str
    port: int
    context: ssl.SSLContext | None
    deflate: bool

    @property
    def url(self) -> str:
        """The WebSocket URI."""
        scheme = "wss" if self.context is not None else "ws"
        return f"{scheme}://{self.host}:{self.port}/"


if TYPE_CHECKING:
    Opener: TypeAlias = Callable[[Target], AbstractAsyncContextManager[Conn]]
    """Opens one connection; an async context manager yielding :class:`Conn`."""
    Library: TypeAlias = Callable[[], AbstractAsyncContextManager[Opener]]
    """Sets a library up for one measurement; yields its :data:`Opener`."""


def _opener(connect: Callable[..., Any]) -> Opener:
    """The :data:`Opener` of a library whose ``connect()`` takes websockets'
    arguments and returns an async context manager."""

    @asynccontextmanager
    async def open_(target: Target) -> AsyncIterator[Conn]:
        async with connect(
            target.url,
            ssl=target.context,
            compression="deflate" if target.deflate else None,
            max_size=MAX_SIZE,
        ) as ws:
            yield Conn(ws.send, ws.recv)

    return open_


@asynccontextmanager
async def anyws_library() -> AsyncIterator[Opener]:
    """Connect with anyws."""
    import anyws

    yield _opener(anyws.connect)


@asynccontextmanager
async def websockets_asyncio_library() -> AsyncIterator[Opener]:
    """Connect with websockets' asyncio implementation."""
    from websockets.asyncio.client import connect

    yield _opener(connect)


@asynccontextmanager
async def websockets_trio_library() -> AsyncIterator[Opener]:
    """Connect with websockets' trio implementation."""
    from websockets.trio.client import connect

    yield _opener(connect)


@asynccontextmanager
async def aiohttp_library() -> AsyncIterator[Opener]:
    """Connect with aiohttp, through one session without a connection limit."""
    import aiohttp

    async with aiohttp.ClientSession(
        connector=aiohttp.TCPConnector(limit=0)
    ) as session:

        @asynccontextmanager
        async def open_(target: Target) -> AsyncIterator[Conn]:
            async with session.ws_connect(
                target.url,
                ssl=target.context if target.context is not None else True,
                compress=15 if target.deflate else 0,
                max_msg_size=MAX_SIZE,
            ) as ws:
                yield Conn(ws.send_bytes, ws.receive_bytes)

        yield open_


@asynccontextmanager
async def trio_websocket_library() -> AsyncIterator[Opener]:
    """Connect with trio-websocket, which has no compression."""
    from trio_websocket import open_websocket_url

    @asynccontextmanager
    async def open_(target: Target) -> AsyncIterator[Conn]:
        if target.deflate:
            raise ValueError("trio-websocket does not support compression")
        async with open_websocket_url(
            target.url, target.context, max_message_size=MAX_SIZE
        ) as ws:
            yield Conn(ws.send_message, ws.get_message)

    yield open_


@asynccontextmanager
async def raw_asyncio_library() -> AsyncIterator[Opener]:
    """The length-prefixed echo over asyncio streams."""
    import asyncio

    @asynccontextmanager
    async def open_(target: Target) -> AsyncIterator[Conn]:
        reader, writer = await asyncio.open_connection(
            target.host, target.port, ssl=target.context, limit=1 << 20
        )

        async def send(data: bytes) -> None:
            writer.write(raw_message(data))
            await writer.drain()

        async def recv() -> bytes:
            header = await reader.readexactly(4)
            return await reader.readexactly(int.from_bytes(header, "big"))

        try:
            yield Conn(send, recv)
        finally:
            writer.close()
            await writer.wait_closed()

    yield open_


@asynccontextmanager
async def raw_trio_library() -> AsyncIterator[Opener]:
    """The length-prefixed echo over trio streams."""
    import trio

    @asynccontextmanager
    async def open_(target: Target) -> AsyncIterator[Conn]:
        stream: trio.abc.Stream
        if target.context is None:
            stream = await trio.open_tcp_stream(target.host, target.port)
        else:
            stream = await trio.open_ssl_over_tcp_stream(
                target.host, target.port, ssl_context=target.context
            )
        buffer = bytearray()

        async def send(data: bytes) -> None:
            await stream.send_all(raw_message(data))

        async def fill(size: int) -> None:
            while len(buffer) < size:
                chunk = await stream.receive_some(1 << 18)
                if not chunk:
                    raise trio.BrokenResourceError("end of stream")
                buffer.extend(chunk)

        async def recv() -> bytes:
            await fill(4)
            end = 4 + int.from_bytes(buffer[:4], "big")
            await fill(end)
            message = bytes(buffer[4:end])
            del buffer[:end]
            return message

        async with stream:
            yield Conn(send, recv)

    yield open_


@asynccontextmanager
async def raw_anyio_library() -> AsyncIterator[Opener]:
    """The length-prefixed echo over anyio streams."""

    @asynccontextmanager
    async def open_(target: Target) -> AsyncIterator[Conn]:
        stream: anyio.abc.ByteStream
        if target.context is None:
            stream = await anyio.connect_tcp(target.host, target.port)
        else:
            stream = await anyio.connect_tcp(
                target.host,
                target.port,
                ssl_context=target.context,
                tls_standard_compatible=False,
            )
        buffer = bytearray()

        async def send(data: bytes) -> None:
            await stream.send(raw_message(data))

        async def fill(size: int) -> None:
            while len(buffer) < size:
                buffer.extend(await stream.receive(1 << 18))

        async def recv() -> bytes:
            await fill(4)
            end = 4 + int.from_bytes(buffer[:4], "big")
            await fill(end)
            message = bytes(buffer[4:end])
            del buffer[:end]
            return message

        async with stream:
            yield Conn(send, recv)

    yield open_


LIBRARIES: dict[tuple[str, str], Library] = {
    ("anyws", "asyncio"): anyws_library,
    ("anyws", "uvloop"): anyws_library,
    ("anyws", "trio"): anyws_library,
    ("websockets", "asyncio"): websockets_asyncio_library,
    ("websockets", "uvloop"): websockets_asyncio_library,
    ("websockets", "trio"): websockets_trio_library,
    ("aiohttp", "asyncio"): aiohttp_library,
    ("aiohttp", "uvloop"): aiohttp_library,
    ("trio-websocket", "trio"): trio_websocket_library,
    ("raw", "asyncio"): raw_asyncio_library,
    ("raw", "uvloop"): raw_asyncio_library,
    ("raw", "trio"): raw_trio_library,
    ("raw-anyio", "asyncio"): raw_anyio_library,
    ("raw-anyio", "uvloop"): raw_anyio_library,
    ("raw-anyio", "trio"): raw_anyio_library,
}
"""Client libraries by (implementation, loop)."""


async def round_trips(conn: Conn, message: bytes, window: Window) -> None:
    """Send a message, wait for its echo, again until the window closes."""
    send, recv = conn.send, conn.recv
    while not window.stop:
        start = time.perf_counter()
        await send(message)
        await recv()
        window.ops += 1
        if window.measuring:
            window.latencies.append(time.perf_counter() - start)


async def stream(conn: Conn, message: bytes, window: Window, inflight: int) -> None:
    """Keep up to ``inflight`` messages on their way until the window closes."""
    send, recv = conn.send, conn.recv
    sent = received = 0
    space: anyio.Event | None = None
    drained = anyio.Event()

    async def receive() -> None:
        nonlocal received, space
        while True:
            await recv()
            received += 1
            window.ops += 1
            if space is not None:
                space.set()
                space = None
            # Once the window closes, ``sent`` no longer grows.
            if window.stop and received == sent:
                drained.set()

    async with anyio.create_task_group() as task_group:
        task_group.start_soon(receive)
        while not window.stop:
            if sent - received >= inflight:
                space = anyio.Event()
                await space.wait()
                continue
            sent += 1
            await send(message)
        if received == sent:
            drained.set()
        with anyio.move_on_after(30):
            await drained.wait()
        task_group.cancel_scope.cancel()


async def run_echo(
    command: Command, library: Library, target: Target
) -> dict[str, Any]:
    """Echo messages on ``conns`` connections, one at a time or ``inflight``."""
    window = Window(command.id)
    message = payload(command.size)
    async with library() as open_, AsyncExitStack() as stack:
        conns = [
            await stack.enter_async_context(open_(target)) for _ in range(command.conns)
        ]
        async with anyio.create_task_group() as task_group:
            for conn in conns:
                if command.inflight > 1:
                    task_group.start_soon(
                        stream, conn, message, window, command.inflight
                    )
                else:
                    task_group.start_soon(round_trips, conn, message, window)
            await anyio.sleep(command.warmup)
            window.mark()
            await anyio.sleep(command.duration)
            window.mark()
            window.stop = True
    return window.result()


async def run_handshakes(
    command: Command, library: Library, target: Target
) -> dict[str, Any]:
    """Open and close connections, ``concurrency`` at a time."""
    window = Window(command.id)

    async with library() as open_:

        async def worker() -> None:
            while not window.stop:
                start = time.perf_counter()
                async with open_(target):
                    pass
                window.ops += 1
                if window.measuring:
                    window.latencies.append(time.perf_counter() - start)

        async with anyio.create_task_group() as task_group:
            for _ in range(command.concurrency):
                task_group.start_soon(worker)
            await anyio.sleep(command.warmup)
            window.mark()
            await anyio.sleep(command.duration)
            window.mark()
            window.stop = True
    return window.result()


async def run(command: Command, library: Library) -> dict[str, Any]:
    """Run one measurement."""
    target = Target(
        command.host, command.port, client_ssl_context(command.cafile), command.deflate
    )
    if command.workload == "echo":
        return await run_echo(command, library, target)
    if command.workload == "handshake":
        return await run_handshakes(command, library, target)
    raise ValueError(f"unknown workload: {command.workload!r}")


def main(argv: list[str] | None = None) -> None:
    """Run the commands read from standard input, one at a time."""
    parser = argparse.ArgumentParser(prog="python -m bench.client")
    parser.add_argument("--impl", required=True)
    parser.add_argument("--loop", required=True, choices=LOOPS)
    args = parser.parse_args(argv)
    library = LIBRARIES.get((args.impl, args.loop))
    if library is None:
        parser.error(f"{args.impl} does not run on {args.loop}")
    raise_nofile_limit()
    emit({"ready": True})
    while line := sys.stdin.readline():
        if line.strip() == "quit":
            break
        command_id = None
        try:
            fields = json.loads(line)
            command_id = fields.get("id")
            command = Command(**fields)
            result = run_on(args.loop, functools.partial(run, command, library))
        except Exception as exc:
            traceback.print_exc()
            emit({"id": command_id, "error": f"{type(exc).__name__}: {exc}"})
        else:
            emit({"id": command_id, "result": result})


if __name__ == "__main__":
    main()

"""An echo server under test: ``python -m bench.server --impl anyws --loop trio``.

Prints ``{"port": N, "pid": N}`` once listening, then answers ``usage`` on
standard input (see :func:`bench.procs.serve_control`). Every implementation
echoes each message back as it came, with the library's defaults except for
``max_size``, raised to :data:`MAX_SIZE`, and compression, off unless
``--deflate``. The raw-TCP ceiling echoes length-prefixed messages over asyncio
streams on asyncio and uvloop, and over trio streams on trio; ``raw-anyio`` over
anyio streams on every loop.
"""

from __future__ import annotations

import argparse
import functools
import os
import struct
from typing import TYPE_CHECKING

import anyio

from .procs import (
    LOOPS,
    emit,
    raise_nofile_limit,
    run_on,
    serve_control,
    server_ssl_context,
)

if TYPE_CHECKING:
    import ssl
    from collections.abc import Awaitable, Callable

__all__ = ["MAX_SIZE", "SERVERS", "main"]

MAX_SIZE = 1 << 26
"""Largest message, raised well above the 1 MiB messages of the workloads."""


def _started(port: int) -> None:
    emit({"port": port, "pid": os.getpid()})


async def serve_anyws(context: ssl.SSLContext | None, deflate: bool) -> None:
    """Serve with anyws."""
    import anyws

    async def echo(ws: anyws.ServerConnection) -> None:
        async for message in ws:
            await ws.send(message)

    async with anyws.serve(
        echo,
        "127.0.0.1",
        0,
        ssl=context,
        compression="deflate" if deflate else None,
        max_size=MAX_SIZE,
    ) as server:
        _started(server.port)
        await server.serve_forever()


async def serve_websockets_asyncio(
    context: ssl.SSLContext | None, deflate: bool
) -> None:
    """Serve with websockets' asyncio implementation."""
    from websockets.asyncio.server import ServerConnection, serve

    async def echo(ws: ServerConnection) -> None:
        async for message in ws:
            await ws.send(message)

    async with serve(
        echo,
        "127.0.0.1",
        0,
        ssl=context,
        compression="deflate" if deflate else None,
        max_size=MAX_SIZE,
    ) as server:
        _started(next(iter(server.sockets)).getsockname()[1])
        await server.serve_forever()


async def serve_websockets_trio(context: ssl.SSLContext | None, deflate: bool) -> None:
    """Serve with websockets' trio implementation."""
    import trio
    from websockets.trio.server import ServerConnection, serve

    async def echo(ws: ServerConnection) -> None:
        async for message in ws:
            await ws.send(message)

    async with trio.open_nursery() as nursery:
        server = await nursery.start(
            functools.partial(
                serve,
                echo,
                0,
                host="127.0.0.1",
                ssl=context,
                compression="deflate" if deflate else None,
                max_size=MAX_SIZE,
            )
        )
        _started(server.listeners[0].socket.getsockname()[1])


async def serve_aiohttp(context: ssl.SSLContext | None, deflate: bool) -> None:
    """Serve with aiohttp's web server."""
    from aiohttp import WSMsgType, web

    async def echo(request: web.Request) -> web.WebSocketResponse:
        ws = web.WebSocketResponse(compress=deflate, max_msg_size=MAX_SIZE)
        await ws.prepare(request)
        async for message in ws:
            if message.type is WSMsgType.BINARY:
                await ws.send_bytes(message.data)
            elif message.type is WSMsgType.TEXT:
                await ws.send_str(message.data)
        return ws

    app = web.Application()
    app.router.add_get("/", echo)
    runner = web.AppRunner(app, access_log=None, handle_signals=False)
    await runner.setup()
    site = web.TCPSite(runner, "127.0.0.1", 0, ssl_context=context)
    await site.start()
    _started(runner.addresses[0][1])
    await anyio.sleep_forever()


async def serve_trio_websocket(context: ssl.SSLContext | None, deflate: bool) -> None:
    """Serve with trio-websocket, which has no compression."""
    import trio
    from trio_websocket import ConnectionClosed, WebSocketRequest, serve_websocket

    if deflate:
        raise SystemExit("trio-websocket does not support compression")

    async def echo(request: WebSocketRequest) -> None:
        ws = await request.accept()
        try:
            while True:
                await ws.send_message(await ws.get_message())
        except ConnectionClosed:
            pass

    async with trio.open_nursery() as nursery:
        server = await nursery.start(
            functools.partial(
                serve_websocket,
                echo,
                "127.0.0.1",
                0,
                context,
                max_message_size=MAX_SIZE,
            )
        )
        _started(server.port)


async def serve_raw_asyncio(context: ssl.SSLContext | None, deflate: bool) -> None:
    """Serve the length-prefixed echo with asyncio streams."""
    import asyncio

    async def echo(reader: asyncio.StreamReader, writer: asyncio.StreamWriter) -> None:
        try:
            while True:
                header = await reader.readexactly(4)
                data = await reader.readexactly(struct.unpack("!I", header)[0])
                writer.write(header + data)
                await writer.drain()
        except (asyncio.IncompleteReadError, ConnectionError):
            pass
        finally:
            writer.close()

    server = await asyncio.start_server(
        echo, "127.0.0.1", 0, ssl=context, limit=1 << 20
    )
    async with server:
        _started(server.sockets[0].getsockname()[1])
        await server.serve_forever()


async def serve_raw_trio(context: ssl.SSLContext | None, deflate: bool) -> None:
    """Serve the length-prefixed echo with trio streams."""
    import trio

    async def echo(stream: trio.abc.Stream) -> None:
        if context is not None:
            stream = trio.SSLStream(stream, context, server_side=True)
        buffer = bytearray()
        try:
            while True:
                while len(buffer) < 4:
                    chunk = await stream.receive_some(1 << 18)
                    if not chunk:
                        return
                    buffer += chunk
                end = 4 + int.from_bytes(buffer[:4], "big")
                while len(buffer) < end:
                    chunk = await stream.receive_some(1 << 18)
                    if not chunk:
                        return
                    buffer += chunk
                message = bytes(buffer[:end])
                del buffer[:end]
                await stream.send_all(message)
        except (trio.BrokenResourceError, trio.ClosedResourceError):
            pass
        finally:
            await trio.aclose_forcefully(stream)

    listeners = await trio.open_tcp_listeners(0, host="127.0.0.1")
    _started(listeners[0].socket.getsockname()[1])
    await trio.serve_listeners(echo, listeners)


async def serve_raw_anyio(context: ssl.SSLContext | None, deflate: bool) -> None:
    """Serve the length-prefixed echo with anyio streams."""
    from anyio.abc import ByteStream, Listener, SocketAttribute
    from anyio.streams.tls import TLSListener

    async def echo(stream: ByteStream) -> None:
        buffer = bytearray()
        async with stream:
            try:
                while True:
                    while len(buffer) < 4:
                        buffer += await stream.receive(1 << 18)
                    end = 4 + int.from_bytes(buffer[:4], "big")
                    while len(buffer) < end:
                        buffer += await stream.receive(1 << 18)
                    message = bytes(buffer[:end])
                    del buffer[:end]
                    await stream.send(message)
            except (anyio.EndOfStream, anyio.BrokenResourceError):
                pass

    tcp = await anyio.create_tcp_listener(local_host="127.0.0.1")
    port = tcp.extra(SocketAttribute.local_port)
    listener: Listener[ByteStream] = tcp
    if context is not None:
        listener = TLSListener(tcp, context, standard_compatible=False)
    _started(port)
    await listener.serve(echo)


SERVERS: dict[tuple[str, str], Callable[[ssl.SSLContext | None, bool], Awaitable[None]]]
SERVERS = {
    ("anyws", "asyncio"): serve_anyws,
    ("anyws", "uvloop"): serve_anyws,
    ("anyws", "trio"): serve_anyws,
    ("websockets", "asyncio"): serve_websockets_asyncio,
    ("websockets", "uvloop"): serve_websockets_asyncio,
    ("websockets", "trio"): serve_websockets_trio,
    ("aiohttp", "asyncio"): serve_aiohttp,
    ("aiohttp", "uvloop"): serve_aiohttp,
    ("trio-websocket", "trio"): serve_trio_websocket,
    ("raw", "asyncio"): serve_raw_asyncio,
    ("raw", "uvloop"): serve_raw_asyncio,
    ("raw", "trio"): serve_raw_trio,
    ("raw-anyio", "asyncio"): serve_raw_anyio,
    ("raw-anyio", "uvloop"): serve_raw_anyio,
    ("raw-anyio", "trio"): serve_raw_anyio,
}
"""Echo servers by (implementation, loop)."""


def main(argv: list[str] | None = None) -> None:
    """Parse the arguments and serve until told to quit."""
    parser = argparse.ArgumentParser(prog="python -m bench.server")
    parser.add_argument("--impl", required=True)
    parser.add_argument("--loop", required=True, choices=LOOPS)
    parser.add_argument("--deflate", action="store_true")
    parser.add_argument("--cert", help="PEM file with the key and certificate chain")
    args = parser.parse_args(argv)
    serve = SERVERS.get((args.impl, args.loop))
    if serve is None:
        parser.error(f"{args.impl} does not run on {args.loop}")
    raise_nofile_limit()
    serve_control()
    context = server_ssl_context(args.cert)
    run_on(args.loop, functools.partial(serve, context, args.deflate))


if __name__ == "__main__":
    main()

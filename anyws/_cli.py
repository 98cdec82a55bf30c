"""The command line: ``python -m anyws`` (also installed as ``anyws``)."""

from __future__ import annotations

import argparse
import sys
import time
from typing import TYPE_CHECKING

import anyio

import anyws

if TYPE_CHECKING:
    from collections.abc import Sequence

BACKENDS = ("asyncio", "trio")


async def _echo(ws: anyws.ServerConnection) -> None:
    async for message in ws:
        await ws.send(message)


async def _demo(backend: str) -> None:
    print(f"-- {backend} --")
    started = time.perf_counter()
    async with anyws.serve(_echo, "127.0.0.1", 0) as server:
        print(f"server listening on ws://127.0.0.1:{server.port}/")
        uri = f"ws://127.0.0.1:{server.port}/"
        async with anyws.connect(uri) as ws:
            opened = time.perf_counter()
            extensions = (
                ws.response.headers.get("Sec-WebSocket-Extensions")
                if ws.response
                else None
            )
            print(
                f"client connected in {(opened - started) * 1000:.1f} ms"
                f" (compression: {extensions or 'off'})"
            )
            t0 = time.perf_counter()
            await ws.send("hello, anyws")
            text = await ws.recv()
            print(
                f"text   {text!r} echoed in {(time.perf_counter() - t0) * 1000:.2f} ms"
            )
            t0 = time.perf_counter()
            await ws.send(bytes(range(8)))
            data = await ws.recv()
            print(
                f"binary {data!r} echoed in {(time.perf_counter() - t0) * 1000:.2f} ms"
            )
            latency = await ws.ping()
            print(f"ping   answered in {latency * 1000:.2f} ms")
        print(f"client closed with code {ws.close_code}")
        await server.aclose()
    elapsed = (time.perf_counter() - started) * 1000
    print(f"server closed; {backend} demo took {elapsed:.1f} ms")


def _run_demo(args: argparse.Namespace) -> int:
    for backend in args.backend or BACKENDS:
        if backend == "trio":
            try:
                import trio  # noqa: F401
            except ImportError:
                print(
                    "-- trio -- skipped: trio isn't installed"
                    " (pip install 'anyws[trio]')"
                )
                continue
        anyio.run(_demo, backend, backend=backend)
    return 0


def main(argv: Sequence[str] | None = None) -> None:
    """Run the command line."""
    parser = argparse.ArgumentParser(prog="anyws", description="anyws command line.")
    commands = parser.add_subparsers(dest="command", required=True)
    demo = commands.add_parser(
        "demo",
        help="run a server and a client in one process, under asyncio and then trio",
    )
    demo.add_argument(
        "--backend",
        action="append",
        choices=BACKENDS,
        help="run only under this backend (repeatable)",
    )
    demo.set_defaults(func=_run_demo)
    args = parser.parse_args(argv)
    sys.exit(args.func(args))

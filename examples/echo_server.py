"""An echo server: every message comes back to its sender.

    python examples/echo_server.py --port 8765 [--backend trio]

It runs until Ctrl-C or SIGTERM (as sent by systemd, Docker or Kubernetes to stop a
service). Either way the server closes gracefully: it stops accepting connections and
closes every open one with code 1001 (going away), so that clients know to reconnect.
"""

from __future__ import annotations

import argparse
import signal

import anyio

import anyws


async def echo(ws: anyws.ServerConnection) -> None:
    async for message in ws:
        await ws.send(message)


async def main(host: str, port: int) -> None:
    async with anyws.serve(echo, host, port) as server:
        print(f"listening on ws://{host}:{server.port}/", flush=True)
        with anyio.open_signal_receiver(signal.SIGTERM) as signals:
            async for _ in signals:
                break
    # Leaving the block closed the server.


if __name__ == "__main__":
    parser = argparse.ArgumentParser(
        description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter
    )
    parser.add_argument("--host", default="127.0.0.1")
    parser.add_argument("--port", type=int, default=8765)
    parser.add_argument("--backend", choices=["asyncio", "trio"], default="asyncio")
    args = parser.parse_args()
    try:
        anyio.run(main, args.host, args.port, backend=args.backend)
    except KeyboardInterrupt:
        pass

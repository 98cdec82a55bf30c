"""A client: sends each argument as a message and prints the replies.

    python examples/client.py ws://127.0.0.1:8765/ hello world [--backend trio]

With ``--heartbeat SECONDS`` the client also pings the server every SECONDS while it
talks, prints each round trip, and closes the connection when a Pong doesn't come back
in time: an application-level heartbeat, in place of the built-in keepalive. It then
keeps the connection open until interrupted, or until ``--pings`` Pings were answered.
"""

from __future__ import annotations

import argparse
import itertools

import anyio

import anyws


async def heartbeat(ws: anyws.ClientConnection, interval: float, count: int) -> None:
    """Ping every ``interval`` seconds, ``count`` times (forever if 0).

    A Pong that takes longer than ``interval`` closes the connection with 1011.
    """
    for _ in range(count) if count else itertools.count():
        await anyio.sleep(interval)
        with anyio.move_on_after(interval) as scope:
            latency = await ws.ping()
        if scope.cancelled_caught:
            await ws.close(anyws.CloseCode.INTERNAL_ERROR, "heartbeat timeout")
            return
        print(f"ping: {latency * 1000:.2f} ms", flush=True)


async def main(
    uri: str, messages: list[str], interval: float | None = None, count: int = 0
) -> None:
    # An application heartbeat replaces the built-in keepalive Pings.
    async with (
        anyws.connect(uri, ping_interval=None if interval else 20) as ws,
        anyio.create_task_group() as task_group,
    ):
        if interval:
            task_group.start_soon(heartbeat, ws, interval, count)
        for message in messages:
            await ws.send(message)
            reply = await ws.recv()
            print("<", reply if isinstance(reply, str) else repr(reply), flush=True)
        if not interval:
            print(f"ping: {await ws.ping() * 1000:.2f} ms")


if __name__ == "__main__":
    parser = argparse.ArgumentParser(
        description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter
    )
    parser.add_argument("uri")
    parser.add_argument("messages", nargs="*", default=["hello"])
    parser.add_argument("--backend", choices=["asyncio", "trio"], default="asyncio")
    parser.add_argument(
        "--heartbeat", type=float, metavar="SECONDS", help="ping every SECONDS"
    )
    parser.add_argument(
        "--pings", type=int, default=0, help="with --heartbeat: stop after N pings"
    )
    args = parser.parse_args()
    try:
        anyio.run(
            main,
            args.uri,
            args.messages,
            args.heartbeat,
            args.pings,
            backend=args.backend,
        )
    except KeyboardInterrupt:
        pass

"""A client: sends each argument as a message and prints the replies.

python examples/client.py ws://127.0.0.1:8765/ hello world [--backend trio]
"""

from __future__ import annotations

import argparse

import anyio

import anyws


async def main(uri: str, messages: list[str]) -> None:
    async with anyws.connect(uri) as ws:
        for message in messages:
            await ws.send(message)
            print("<", await ws.recv())
        print(f"ping: {await ws.ping() * 1000:.2f} ms")


if __name__ == "__main__":
    parser = argparse.ArgumentParser(description=__doc__)
    parser.add_argument("uri")
    parser.add_argument("messages", nargs="*", default=["hello"])
    parser.add_argument("--backend", choices=["asyncio", "trio"], default="asyncio")
    args = parser.parse_args()
    anyio.run(main, args.uri, args.messages, backend=args.backend)

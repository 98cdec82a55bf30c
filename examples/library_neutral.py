"""A library written once against anyws, used from an asyncio and from a trio program.

    python examples/library_neutral.py [--backend asyncio|trio]

The library part imports anyws (and may import anyio), never asyncio or trio: its
functions run under whichever event loop calls them. The two programs below it are
ordinary asyncio and trio code, each with its own idioms (``asyncio.gather``, a trio
nursery, each loop's own timeouts), calling the same library functions.
"""

from __future__ import annotations

import argparse
import asyncio
import json
import operator
from typing import TYPE_CHECKING, Any

import trio

import anyws

if TYPE_CHECKING:
    from collections.abc import Callable, Mapping
    from contextlib import AbstractAsyncContextManager

# -- the library: JSON remote calls over WebSocket -----------------------------


async def call(uri: str, method: str, *args: Any) -> Any:
    """Call ``method`` on a server made by :func:`serve_methods`; return the result.

    Callers limit the time it takes with the timeouts of their own event loop
    (``asyncio.wait_for``, ``trio.fail_after``) or anyio's: they all cancel it cleanly.

    Raises:
        RuntimeError: the method failed on the server.
    """
    async with anyws.connect(uri, open_timeout=10) as ws:
        await ws.send(json.dumps({"method": method, "args": args}))
        reply = json.loads(await ws.recv())
    if "error" in reply:
        raise RuntimeError(reply["error"])
    return reply["result"]


def serve_methods(
    methods: Mapping[str, Callable[..., Any]], host: str, port: int
) -> AbstractAsyncContextManager[anyws.Server]:
    """A server that runs ``methods`` for :func:`call`; ``async with`` it."""

    async def handler(ws: anyws.ServerConnection) -> None:
        async for message in ws:
            request = json.loads(message)
            try:
                result = methods[request["method"]](*request["args"])
            except Exception as exc:
                reply = {"error": f"{type(exc).__name__}: {exc}"}
            else:
                reply = {"result": result}
            await ws.send(json.dumps(reply))

    return anyws.serve(handler, host, port)


METHODS: dict[str, Callable[..., Any]] = {"add": operator.add, "upper": str.upper}

# -- an asyncio program ------------------------------------------------------


async def asyncio_program() -> None:
    async with serve_methods(METHODS, "127.0.0.1", 0) as server:
        uri = f"ws://127.0.0.1:{server.port}/"
        both = asyncio.gather(call(uri, "add", 2, 3), call(uri, "upper", "hi"))
        results = await asyncio.wait_for(both, timeout=10)
        print("asyncio:", results)


# -- a trio program ----------------------------------------------------------


async def trio_program() -> None:
    async with serve_methods(METHODS, "127.0.0.1", 0) as server:
        uri = f"ws://127.0.0.1:{server.port}/"
        results: list[Any] = [None, None]

        async def store(index: int, method: str, *args: Any) -> None:
            results[index] = await call(uri, method, *args)

        with trio.fail_after(10):
            async with trio.open_nursery() as nursery:
                nursery.start_soon(store, 0, "add", 2, 3)
                nursery.start_soon(store, 1, "upper", "hi")
        print("trio:", results)


if __name__ == "__main__":
    parser = argparse.ArgumentParser(
        description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter
    )
    parser.add_argument("--backend", choices=["asyncio", "trio"], action="append")
    args = parser.parse_args()
    for backend in args.backend or ["asyncio", "trio"]:
        if backend == "asyncio":
            asyncio.run(asyncio_program())
        else:
            trio.run(trio_program)

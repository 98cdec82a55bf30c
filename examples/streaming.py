"""Send and receive a large file as one fragmented message, never all in memory.

    python examples/streaming.py [--size MIB] [--backend trio]

The client uploads a file: ``send()`` takes an async iterable and sends each chunk it
yields as a fragment of one message. The server receives it with
``recv_streaming()``, writing fragments to disk as they arrive, and answers with the
size and SHA-256 it saw. Then the server sends the file back the same way and the
client checks that it came back intact.

``max_size`` still limits a streamed message: raise it to the largest file you accept.
The fragments received need not match the chunks sent (compression and the network
may split or join them); only their concatenation is guaranteed.
"""

from __future__ import annotations

import argparse
import contextlib
import hashlib
import os
import tempfile
from pathlib import Path
from typing import TYPE_CHECKING

import anyio

import anyws

if TYPE_CHECKING:
    from collections.abc import AsyncGenerator

CHUNK_SIZE = 64 * 1024
MAX_FILE_SIZE = 2**30  # the largest file accepted, 1 GiB


async def read_chunks(path: Path) -> AsyncGenerator[bytes, None]:
    """Yield the content of the file at ``path``, ``CHUNK_SIZE`` bytes at a time."""
    async with await anyio.open_file(path, "rb") as file:
        while chunk := await file.read(CHUNK_SIZE):
            yield chunk


async def send_file(ws: anyws.Connection, path: Path) -> None:
    """Send the file at ``path`` as one binary message, chunk by chunk."""
    # aclosing: if sending fails half-way, the file is closed at once.
    async with contextlib.aclosing(read_chunks(path)) as chunks:
        await ws.send(chunks)


async def receive_file(ws: anyws.Connection, path: Path) -> tuple[int, str]:
    """Write the next message to ``path`` as it arrives; return its size and hash."""
    digest = hashlib.sha256()
    size = 0
    async with await anyio.open_file(path, "wb") as file:
        async for fragment in ws.recv_streaming(decode=False):
            assert isinstance(fragment, bytes)
            digest.update(fragment)
            size += len(fragment)
            await file.write(fragment)
    return size, digest.hexdigest()


def sha256_of(path: Path) -> str:
    digest = hashlib.sha256()
    with path.open("rb") as file:
        while chunk := file.read(CHUNK_SIZE):
            digest.update(chunk)
    return digest.hexdigest()


async def main(size: int) -> None:
    with tempfile.TemporaryDirectory() as tmp:
        workdir = Path(tmp)
        original = workdir / "original.bin"
        with original.open("wb") as file:
            for _ in range(0, size, CHUNK_SIZE):
                file.write(os.urandom(CHUNK_SIZE))

        async def handler(ws: anyws.ServerConnection) -> None:
            stored = workdir / "stored.bin"
            received, sha256 = await receive_file(ws, stored)
            await ws.send(f"stored {received} bytes, sha256 {sha256}")
            await send_file(ws, stored)

        async with (
            anyws.serve(handler, "127.0.0.1", 0, max_size=MAX_FILE_SIZE) as server,
            anyws.connect(
                f"ws://127.0.0.1:{server.port}/", max_size=MAX_FILE_SIZE
            ) as ws,
        ):
            await send_file(ws, original)
            print("server:", await ws.recv())
            copy = workdir / "copy.bin"
            received, sha256 = await receive_file(ws, copy)
        intact = sha256 == sha256_of(original)
        print(f"received {received} bytes back, {'intact' if intact else 'CORRUPT'}")


if __name__ == "__main__":
    parser = argparse.ArgumentParser(
        description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter
    )
    parser.add_argument("--size", type=int, default=16, help="file size in MiB")
    parser.add_argument("--backend", choices=["asyncio", "trio"], default="asyncio")
    args = parser.parse_args()
    anyio.run(main, args.size * 2**20, backend=args.backend)

"""Fuzzing: arbitrary and mutated byte streams into an anyws connection.

Discipline
    Hypothesis draws what a peer sends: valid messages (text, binary, fragmented,
    compressed or not, with Pings between fragments), then mutations (bit flips,
    overwritten bytes, a truncation, inserted garbage), or arbitrary bytes, all cut
    into random chunks. The bytes go to anyws over an in-memory byte stream
    (:func:`tests.helpers.memory_stream_pair`): to ``anyws.accept`` after a valid
    upgrade request, or to ``anyws.connect(stream=...)`` after a valid 101
    response. Each example runs in its own ``anyio.run`` under asyncio and under
    trio (a synchronous test, since Hypothesis drives the examples).

    Every example must end cleanly: the messages delivered (exactly the ones sent,
    when nothing was mutated), and otherwise a :exc:`~anyws.ConnectionClosed`
    whose codes are valid, with well-formed frames on the wire and a valid Close
    code. Any other exception fails the example, and so does a hang (the safety net
    is ``fail_after``) or a task left running.

    The budget is 50 examples per test here; set ``ANYWS_FUZZ_EXAMPLES`` for more.
"""

from __future__ import annotations

import dataclasses
import os
import struct
import zlib
from typing import TYPE_CHECKING, Any

import anyio
import pytest
from hypothesis import HealthCheck, given, settings, strategies as st

import anyws
from tests.conformance.peer import (
    OP_BINARY,
    OP_CLOSE,
    OP_CONT,
    OP_PING,
    OP_TEXT,
    RSV1,
    Frame,
    accept_for,
    build_frame,
    close_payload,
    http_headers,
    new_key,
)
from tests.helpers import mask_bytes, memory_stream_pair

if TYPE_CHECKING:
    from tests.helpers import MemoryByteStream

EXAMPLES = int(os.environ.get("ANYWS_FUZZ_EXAMPLES", "50"))
HANG = 10.0  # seconds; a safety net, an example takes milliseconds
MAX_SIZE = 4096
CLOSE_TIMEOUT = 0.5

# Codes an endpoint may send (RFC 6455 section 7.4), and may receive as well.
SENDABLE = frozenset({1000, 1001, 1002, 1003, *range(1007, 1015)}) | frozenset(
    range(3000, 5000)
)

FUZZ_SETTINGS = settings(
    max_examples=EXAMPLES,
    deadline=None,
    suppress_health_check=[HealthCheck.too_slow, HealthCheck.data_too_large],
)


@dataclasses.dataclass
class Script:
    """What the fuzzing peer sends, and what anyws must deliver if it is intact."""

    chunks: list[bytes]
    compress: bool
    close_code: int | None  # the code of the Close frame that ends the stream
    messages: list[str | bytes] | None  # None once mutated


def split(data: bytes, cuts: list[int]) -> list[bytes]:
    """``data`` cut at the sorted offsets ``cuts`` (some parts may be empty)."""
    return [data[a:b] for a, b in zip([0, *cuts], [*cuts, len(data)], strict=True)]


# -- strategies ------------------------------------------------------------------


@st.composite
def message_frames(
    draw: st.DrawFn, compressor: zlib._Compress | None, masked: bool
) -> tuple[str | bytes, bytes]:
    """A message and its frames: maybe fragmented, maybe with Pings between."""
    message: str | bytes = draw(
        st.one_of(st.text(max_size=60), st.binary(max_size=300))
    )
    opcode = OP_TEXT if isinstance(message, str) else OP_BINARY
    payload = message.encode() if isinstance(message, str) else message
    rsv = 0
    if compressor is not None and draw(st.booleans()):
        payload = compressor.compress(payload) + compressor.flush(zlib.Z_SYNC_FLUSH)
        payload, rsv = payload[:-4], RSV1
    cuts = sorted(draw(st.lists(st.integers(0, len(payload)), max_size=3)))
    parts = split(payload, cuts)
    frames = b""
    for index, part in enumerate(parts):
        first, last = index == 0, index == len(parts) - 1
        frames += build_frame(
            opcode if first else OP_CONT,
            part,
            fin=last,
            rsv=rsv if first else 0,
            masked=masked,
        )
        if not last and draw(st.booleans()):
            frames += build_frame(OP_PING, draw(st.binary(max_size=20)), masked=masked)
    return message, frames


@st.composite
def scripts(draw: st.DrawFn, masked: bool) -> Script:
    """A byte stream: valid messages, then mutations, or arbitrary bytes."""
    compress = draw(st.booleans())
    if draw(st.integers(0, 4)) == 0:
        data = draw(st.binary(max_size=400))
        messages = None
        close_code = None
    else:
        compressor = zlib.compressobj(6, zlib.DEFLATED, -15) if compress else None
        drawn = draw(st.lists(message_frames(compressor, masked), max_size=6))
        messages = [message for message, _ in drawn]
        close_code = draw(st.sampled_from([None, 1000, 1001, 3000, 4999]))
        data = b"".join(frames for _, frames in drawn)
        if close_code is not None:
            data += build_frame(
                OP_CLOSE, close_payload(close_code, b"bye"), masked=masked
            )
        mutated = bytearray(data)
        for _ in range(draw(st.integers(0, 3)) if data else 0):
            position = draw(st.integers(0, len(mutated) - 1))
            if draw(st.booleans()):
                mutated[position] ^= 1 << draw(st.integers(0, 7))
            else:
                mutated[position] = draw(st.integers(0, 255))
        if data and draw(st.integers(0, 3)) == 0:
            del mutated[draw(st.integers(0, len(mutated) - 1)) :]
        if draw(st.integers(0, 3)) == 0:
            position = draw(st.integers(0, len(mutated)))
            mutated[position:position] = draw(st.binary(min_size=1, max_size=20))
        if bytes(mutated) != data:
            messages = None
        data = bytes(mutated)
    cuts = sorted(draw(st.lists(st.integers(0, len(data)), max_size=8)))
    chunks = split(data, cuts)
    return Script([c for c in chunks if c], compress, close_code, messages)


# -- checks ----------------------------------------------------------------------


def parse_output(data: bytes, *, masked: bool) -> list[Frame]:
    """Parse what anyws sent; every frame must be well-formed."""
    frames: list[Frame] = []
    offset = 0
    while offset < len(data):
        assert len(data) - offset >= 2, "anyws sent a partial frame"
        b0, b1 = data[offset], data[offset + 1]
        assert bool(b1 & 0x80) == masked, "wrong masking"
        size, offset = b1 & 0x7F, offset + 2
        if size == 126:
            (size,) = struct.unpack("!H", data[offset : offset + 2])
            offset += 2
        elif size == 127:
            (size,) = struct.unpack("!Q", data[offset : offset + 8])
            offset += 8
        key = data[offset : offset + 4] if masked else b""
        offset += len(key)
        payload = data[offset : offset + size]
        assert len(payload) == size, "anyws sent a partial frame"
        offset += size
        if masked:
            payload = mask_bytes(payload, key)
        frames.append(Frame(bool(b0 & 0x80), (b0 >> 4) & 7, b0 & 0x0F, payload))
    closes = [i for i, f in enumerate(frames) if f.opcode == OP_CLOSE]
    if closes:
        assert closes == [len(frames) - 1], "frames after a Close frame"
        close = frames[-1]
        assert close.close_code is None or close.close_code in SENDABLE
    return frames


def check_outcome(
    error: anyws.ConnectionClosed | None,
    received: list[str | bytes],
    script: Script,
    connection: anyws.Connection | None,
) -> None:
    """The connection ended cleanly, and delivered what an intact script sent."""
    if script.messages is not None:
        assert received == script.messages
        if script.close_code is not None:
            assert connection is not None
            assert connection.close_code == script.close_code
    if error is not None:
        if error.rcvd is not None:
            assert error.rcvd.code in SENDABLE | {1005}
        if error.sent is not None:
            assert error.sent.code in SENDABLE | {1005}
    if connection is not None:
        assert connection.state is anyws.State.CLOSED
        assert connection.close_code in SENDABLE | {1005, 1006}


async def _drain(stream: MemoryByteStream, output: bytearray) -> None:
    try:
        while True:
            output += await stream.receive()
    except (anyio.EndOfStream, anyio.ClosedResourceError, anyio.BrokenResourceError):
        pass


async def _feed(stream: MemoryByteStream, chunks: list[bytes]) -> None:
    try:
        for chunk in chunks:
            await stream.send(chunk)
        await stream.send_eof()
    except (anyio.ClosedResourceError, anyio.BrokenResourceError):
        pass


def _tasks_now() -> set[int]:
    return {task.id for task in anyio.get_running_tasks()}


# -- the examples ---------------------------------------------------------------

OPTIONS: dict[str, Any] = {
    "ping_interval": None,
    "close_timeout": CLOSE_TIMEOUT,
    "max_size": MAX_SIZE,
}


async def server_example(script: Script) -> None:
    """anyws.accept() on one end; the script, after an upgrade request, on the other."""
    before = _tasks_now()
    peer, server_end = memory_stream_pair()
    output = bytearray()
    received: list[str | bytes] = []
    error: anyws.ConnectionClosed | None = None
    connection: anyws.ServerConnection | None = None
    extensions = "Sec-WebSocket-Extensions: permessage-deflate\r\n"
    request = (
        f"GET / HTTP/1.1\r\nHost: fuzz\r\nUpgrade: websocket\r\n"
        f"Connection: Upgrade\r\nSec-WebSocket-Key: {new_key()}\r\n"
        f"Sec-WebSocket-Version: 13\r\n{extensions if script.compress else ''}\r\n"
    ).encode()
    with anyio.fail_after(HANG):
        async with peer, anyio.create_task_group() as task_group:
            task_group.start_soon(_drain, peer, output)
            task_group.start_soon(_feed, peer, [request, *script.chunks])
            try:
                async with anyws.accept(server_end, **OPTIONS) as connection:
                    async for message in connection:
                        received.append(message)
            except anyws.ConnectionClosed as exc:
                error = exc
    head, _, frames = bytes(output).partition(b"\r\n\r\n")
    assert head.startswith(b"HTTP/1.1 101 ")
    assert (b"permessage-deflate" in head) == script.compress
    parse_output(frames, masked=False)
    check_outcome(error, received, script, connection)
    assert _tasks_now() == before


async def client_example(script: Script) -> None:
    """anyws.connect(stream=...) on one end; a 101, then the script, on the other."""
    before = _tasks_now()
    client_end, peer = memory_stream_pair()
    output = bytearray()
    received: list[str | bytes] = []
    error: anyws.ConnectionClosed | None = None
    connection: anyws.ClientConnection | None = None

    async def fake_server() -> None:
        request = bytearray()
        while b"\r\n\r\n" not in request:
            request += await peer.receive()
        head, _, rest = bytes(request).partition(b"\r\n\r\n")
        output.extend(rest)
        key = http_headers(head)["sec-websocket-key"][0]
        response = (
            "HTTP/1.1 101 Switching Protocols\r\nUpgrade: websocket\r\n"
            f"Connection: Upgrade\r\nSec-WebSocket-Accept: {accept_for(key)}\r\n"
        )
        if script.compress:
            response += "Sec-WebSocket-Extensions: permessage-deflate\r\n"
        task_group.start_soon(_drain, peer, output)
        await _feed(peer, [(response + "\r\n").encode(), *script.chunks])

    with anyio.fail_after(HANG):
        async with peer, anyio.create_task_group() as task_group:
            task_group.start_soon(fake_server)
            try:
                async with anyws.connect(
                    "ws://fuzz/", stream=client_end, **OPTIONS
                ) as connection:
                    async for message in connection:
                        received.append(message)
            except anyws.ConnectionClosed as exc:
                error = exc
    parse_output(bytes(output), masked=True)
    check_outcome(error, received, script, connection)
    assert _tasks_now() == before


BACKENDS = ["asyncio", "trio"]


class TestFuzz:
    @pytest.mark.parametrize("backend", BACKENDS)
    @FUZZ_SETTINGS
    @given(script=scripts(masked=True))
    def test_server_survives(self, backend: str, script: Script) -> None:
        anyio.run(server_example, script, backend=backend)

    @pytest.mark.parametrize("backend", BACKENDS)
    @FUZZ_SETTINGS
    @given(script=scripts(masked=False))
    def test_client_survives(self, backend: str, script: Script) -> None:
        anyio.run(client_example, script, backend=backend)

    @pytest.mark.parametrize("backend", BACKENDS)
    @FUZZ_SETTINGS
    @given(data=st.binary(max_size=300), cuts=st.lists(st.integers(0, 300), max_size=5))
    def test_server_handshake_survives(
        self, backend: str, data: bytes, cuts: list[int]
    ) -> None:
        anyio.run(handshake_example, data, cuts, backend=backend)


async def handshake_example(data: bytes, cuts: list[int]) -> None:
    """Arbitrary bytes instead of an upgrade request: an HTTP error or a 101."""
    before = _tasks_now()
    peer, server_end = memory_stream_pair()
    output = bytearray()
    chunks = split(data, sorted(c for c in cuts if c <= len(data)))
    with anyio.fail_after(HANG):
        async with peer, anyio.create_task_group() as task_group:
            task_group.start_soon(_drain, peer, output)
            task_group.start_soon(_feed, peer, [c for c in chunks if c])
            try:
                async with anyws.accept(server_end, **OPTIONS) as connection:
                    async for _ in connection:
                        pass
            except (anyws.InvalidHandshake, anyws.ConnectionClosed):
                pass
    assert output == b"" or output.startswith(b"HTTP/1.1 ")
    assert _tasks_now() == before

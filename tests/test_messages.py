"""Messages on open connections: ``recv()``, ``recv_streaming()``, ``async for``
and ``send()``, fragmentation, cancellation, concurrent use, flow control and the
``max_size`` limit (RFC 6455 sections 5.4, 5.5 and 10.4; RFC 7692).

Discipline
    Real TCP connections on 127.0.0.1. ``ws_pair()`` joins an anyws client to an
    anyws server. ``raw_pair()`` joins one anyws end to a ``RawPeer`` that speaks the
    protocol frame by frame, to send fragments built by hand and to read exactly what
    anyws puts on the wire. Every behaviour is checked on both ends: a ``ws_pair()``
    test runs its checks in both directions, a ``raw_pair()`` test once with anyws
    as the client and once as the server (``side`` names the anyws end under test).
    Keepalive Pings are off so that only the frames a test sends are on the wire.

    When a test body ends and the test did not close on purpose, the anyws client
    of a ``ws_pair()`` closes first, with 1000; in a ``raw_pair()`` the anyws end
    closes first and the RawPeer answers the Close frame it reads, closing TCP first
    when it plays the server (RFC 6455 section 7.1.1).

    No sleeps. Order comes from ``anyio.Event``, from ``anyio.wait_all_tasks_blocked()``
    and from what the peer does: a Pong read by the RawPeer proves that anyws
    processed every frame sent before the Ping. Timeouts are safety nets; the flow
    control tests bound one wait with ``move_on_after`` to show that a sender cannot
    finish while its peer does not read, and then assert on how much data went
    through, never on elapsed time.
"""

from __future__ import annotations

import base64
import functools
import gc
import os
import socket
import struct
import tracemalloc
import warnings
import zlib
from contextlib import asynccontextmanager
from typing import TYPE_CHECKING, Any, Literal

import anyio
import anyio.lowlevel
import pytest
from anyio.abc import SocketAttribute, SocketListener, SocketStream

import anyws
from anyws import (
    ConcurrencyError,
    ConnectionClosedError,
    ConnectionClosedOK,
    PayloadTooBig,
)

from .helpers import (
    OP_BINARY,
    OP_CLOSE,
    OP_CONT,
    OP_PING,
    OP_PONG,
    OP_TEXT,
    Frame,
    RawPeer,
    frame,
)

if TYPE_CHECKING:
    from collections.abc import AsyncIterator, Iterable

Side = Literal["client", "server"]
Connection = anyws.Connection
SIDES: tuple[Side, ...] = ("client", "server")

# Safety net for a whole test.
TIMEOUT = 10
# Options for every anyws end: no keepalive Pings on the wire, short closing waits.
BASE_OPTIONS: dict[str, Any] = {
    "ping_interval": None,
    "close_timeout": 0.5,
    "open_timeout": 5,
}
DEFLATE_OFFER = "Sec-WebSocket-Extensions: permessage-deflate\r\n"
# Kernel buffer size set on both ends of the flow-control tests, so that how much
# data TCP holds in flight does not depend on the machine's autotuning.
SMALL_BUFFER = 64 * 1024
# Stream errors a RawPeer may see once anyws has closed the connection.
STREAM_GONE = (
    anyio.EndOfStream,
    anyio.BrokenResourceError,
    anyio.ClosedResourceError,
    OSError,
)


@pytest.fixture(params=["client", "server"])
def side(request: pytest.FixtureRequest) -> Side:
    """The anyws end under test."""
    value: Side = request.param
    return value


# --------------------------------------------------------------------------
# Frames
# --------------------------------------------------------------------------


def xor_mask(data: bytes, key: bytes) -> bytes:
    """Mask or unmask ``data`` with ``key`` (RFC 6455 section 5.3), quickly."""
    size = len(data)
    if not size:
        return b""
    stream = (key * (size // 4 + 1))[:size]
    return (int.from_bytes(data, "big") ^ int.from_bytes(stream, "big")).to_bytes(
        size, "big"
    )


def fast_frame(
    opcode: int, payload: bytes, *, mask: bool, fin: bool = True, rsv: int = 0
) -> bytes:
    """Build one frame like ``helpers.frame()``, masking large payloads quickly."""
    head = bytearray(frame(opcode, fin=fin, rsv=rsv, mask=False, length=len(payload)))
    if not mask:
        return bytes(head) + payload
    head[1] |= 0x80
    key = os.urandom(4)
    return bytes(head) + key + xor_mask(payload, key)


async def read_frame(peer: RawPeer) -> Frame:
    """Read one frame like ``RawPeer.read_frame()``, unmasking quickly."""
    b0, b1 = await peer.read_exactly(2)
    size = b1 & 0x7F
    if size == 126:
        (size,) = struct.unpack("!H", await peer.read_exactly(2))
    elif size == 127:
        (size,) = struct.unpack("!Q", await peer.read_exactly(8))
    key = await peer.read_exactly(4) if b1 & 0x80 else None
    payload = await peer.read_exactly(size)
    if key is not None:
        payload = xor_mask(payload, key)
    return Frame(bool(b0 & 0x80), (b0 >> 4) & 7, b0 & 0x0F, payload)


async def read_data_frame(peer: RawPeer) -> Frame:
    """Read the next frame, which must be a data frame."""
    received = await read_frame(peer)
    assert received.opcode in (OP_TEXT, OP_BINARY, OP_CONT), received
    return received


def deflate(data: bytes) -> bytes:
    """Compress one message for permessage-deflate (RFC 7692 section 7.2.1)."""
    compressor = zlib.compressobj(9, zlib.DEFLATED, -15)
    compressed = compressor.compress(data) + compressor.flush(zlib.Z_SYNC_FLUSH)
    assert compressed.endswith(b"\x00\x00\xff\xff")
    return compressed[:-4]


@functools.cache
def deflate_bomb() -> bytes:
    """100 MiB of zeros compressed for permessage-deflate: about 100 kB."""
    compressor = zlib.compressobj(9, zlib.DEFLATED, -15)
    chunk = bytes(2**20)
    parts = [compressor.compress(chunk) for _ in range(100)]
    parts.append(compressor.flush(zlib.Z_SYNC_FLUSH))
    return b"".join(parts)[:-4]


def numbered(index: int, size: int) -> bytes:
    """A binary message of ``size`` bytes that starts with its index."""
    return struct.pack("!Q", index) + bytes(size - 8)


def index_of(message: str | bytes) -> int:
    assert isinstance(message, bytes)
    index: int = struct.unpack("!Q", message[:8])[0]
    return index


# --------------------------------------------------------------------------
# Peers
# --------------------------------------------------------------------------


def shrink_buffers(sock: socket.socket) -> None:
    sock.setsockopt(socket.SOL_SOCKET, socket.SO_RCVBUF, SMALL_BUFFER)
    sock.setsockopt(socket.SOL_SOCKET, socket.SO_SNDBUF, SMALL_BUFFER)


@asynccontextmanager
async def ws_pair(
    **options: Any,
) -> AsyncIterator[tuple[anyws.ClientConnection, anyws.ServerConnection]]:
    """An anyws client connected to an anyws server; the client closes first."""
    options = {**BASE_OPTIONS, **options}
    send, receive = anyio.create_memory_object_stream[anyws.ServerConnection](1)
    release = anyio.Event()

    async def handler(ws: anyws.ServerConnection) -> None:
        await send.send(ws)
        await release.wait()

    with send, receive, anyio.fail_after(TIMEOUT):
        async with anyws.serve(handler, "127.0.0.1", 0, **options) as server:
            uri = f"ws://127.0.0.1:{server.port}/"
            async with anyws.connect(uri, **options) as client:
                server_ws = await receive.receive()
                try:
                    yield client, server_ws
                finally:
                    with anyio.CancelScope(shield=True):
                        await client.close()
                        release.set()


def ends(
    side: Side, client: anyws.ClientConnection, server: anyws.ServerConnection
) -> tuple[Connection, Connection]:
    """(the end under test, the other end)."""
    return (client, server) if side == "client" else (server, client)


async def finish_peer(peer: RawPeer) -> None:
    """End the RawPeer's part of the closing handshake, whatever state it is in."""
    with anyio.move_on_after(2):
        try:
            while True:
                received = await read_frame(peer)
                if received.opcode == OP_CLOSE:
                    await peer.send_frame(OP_CLOSE, received.payload[:2])
                    break
            if peer.is_client:
                await peer.read_eof()  # RFC 6455 section 7.1.1: the server closes TCP.
        except STREAM_GONE:
            pass
    await peer.aclose()


async def answer_close(peer: RawPeer, received: Frame) -> None:
    """Answer a Close frame the test read itself, and close the RawPeer."""
    assert received.opcode == OP_CLOSE
    try:
        await peer.send_frame(OP_CLOSE, received.payload[:2])
        if peer.is_client:
            await peer.read_eof()  # RFC 6455 section 7.1.1: the server closes TCP.
    except STREAM_GONE:
        pass
    await peer.aclose()


@asynccontextmanager
async def raw_pair(
    side: Side,
    *,
    peer_headers: str = "",
    small_buffers: bool = False,
    **options: Any,
) -> AsyncIterator[tuple[Connection, RawPeer]]:
    """The anyws end ``side`` connected to a RawPeer playing the other end.

    ``peer_headers`` go in the RawPeer's handshake request or response (e.g. to
    negotiate permessage-deflate); ``small_buffers`` shrinks the kernel buffers of
    both sockets.
    """
    options = {**BASE_OPTIONS, **options}
    with anyio.fail_after(TIMEOUT):
        async with anyio.create_task_group() as task_group:
            if side == "server":
                async with _raw_client(
                    task_group, peer_headers, small_buffers, options
                ) as pair:
                    yield pair
            else:
                async with _raw_server(
                    task_group, peer_headers, small_buffers, options
                ) as pair:
                    yield pair


@asynccontextmanager
async def _raw_client(
    task_group: anyio.abc.TaskGroup,
    peer_headers: str,
    small_buffers: bool,
    options: dict[str, Any],
) -> AsyncIterator[tuple[Connection, RawPeer]]:
    send, receive = anyio.create_memory_object_stream[anyws.ServerConnection](1)
    release = anyio.Event()

    async def handler(ws: anyws.ServerConnection) -> None:
        await send.send(ws)
        await release.wait()

    with send, receive:
        async with anyws.serve(handler, "127.0.0.1", 0, **options) as server:
            if small_buffers:
                for sock in server.sockets:  # accepted sockets inherit them
                    shrink_buffers(sock)
            stream = await anyio.connect_tcp("127.0.0.1", server.port)
            if small_buffers:
                shrink_buffers(stream.extra(SocketAttribute.raw_socket))
            peer = RawPeer(stream)
            try:
                await peer.client_handshake(extra_headers=peer_headers)
                ws = await receive.receive()
                yield ws, peer
            finally:
                task_group.start_soon(finish_peer, peer)
                release.set()


@asynccontextmanager
async def _raw_server(
    task_group: anyio.abc.TaskGroup,
    peer_headers: str,
    small_buffers: bool,
    options: dict[str, Any],
) -> AsyncIterator[tuple[Connection, RawPeer]]:
    send, receive = anyio.create_memory_object_stream[RawPeer](1)
    async with await anyio.create_tcp_listener(local_host="127.0.0.1") as multi:
        listener = multi.listeners[0]
        assert isinstance(listener, SocketListener)
        if small_buffers:
            shrink_buffers(listener.extra(SocketAttribute.raw_socket))
        port = listener.extra(SocketAttribute.local_port)

        accepted = anyio.Event()

        async def accept() -> None:
            stream = await listener.accept()
            peer = RawPeer(stream, is_client=False)
            send.send_nowait(peer)
            accepted.set()
            await peer.server_handshake(extra_headers=peer_headers)

        with send, receive:
            task_group.start_soon(accept)
            given: SocketStream | None = None
            if small_buffers:
                given = await anyio.connect_tcp("127.0.0.1", port)
                shrink_buffers(given.extra(SocketAttribute.raw_socket))
                # Send the request only once the RawPeer waits for it: on asyncio,
                # an anyio socket stream reads ahead into memory until one of its
                # receive() calls has had to wait, and a RawPeer that is meant not
                # to read must really leave the data in the kernel.
                await accepted.wait()
            try:
                async with anyws.connect(
                    f"ws://127.0.0.1:{port}/", stream=given, **options
                ) as ws:
                    peer = await receive.receive()
                    try:
                        yield ws, peer
                    finally:
                        task_group.start_soon(finish_peer, peer)
            finally:
                if given is not None:
                    await given.aclose()


async def recv_into(
    ws: Connection, scope: anyio.CancelScope, into: list[str | bytes]
) -> None:
    """Receive one message into ``into``, within ``scope``."""
    with scope:
        into.append(await ws.recv())


async def fragments_of(items: Iterable[Any]) -> AsyncIterator[Any]:
    """An async iterable over ``items`` that lets other tasks run between them."""
    for item in items:
        await anyio.lowlevel.checkpoint()
        yield item


def both_ends(
    client: anyws.ClientConnection, server: anyws.ServerConnection
) -> list[tuple[Connection, Connection]]:
    """(end under test, other end): the client first, then the server."""
    return [(client, server), (server, client)]


def resource_warnings(caught: list[warnings.WarningMessage]) -> list[str]:
    return [
        str(warning.message)
        for warning in caught
        if issubclass(warning.category, ResourceWarning)
    ]


# --------------------------------------------------------------------------
# Receiving
# --------------------------------------------------------------------------


class TestRecv:
    async def test_text_is_str_and_binary_is_bytes_in_order(self) -> None:
        messages: list[str | bytes] = ["café ☕", b"\x00\xff\x80", "", b"", "five"]
        async with ws_pair() as (client, server):
            for ws, other in both_ends(client, server):
                for message in messages:
                    await other.send(message)
                received = [await ws.recv() for _ in messages]
                assert received == messages
                assert [type(m) for m in received] == [type(m) for m in messages]

    async def test_decode_converts_text_and_binary(self) -> None:
        async with ws_pair() as (client, server):
            for ws, other in both_ends(client, server):
                for message in ("café", "café".encode()):  # text, then binary
                    await other.send(message)
                    await other.send(message)
                    assert await ws.recv(decode=False) == "café".encode()
                    assert await ws.recv(decode=True) == "café"

    async def test_reassembles_a_message_sent_in_fragments(self) -> None:
        cases: list[tuple[list[Any], str | bytes]] = [
            (["spam, ", "ham ", "and eggs"], "spam, ham and eggs"),
            (
                [b"\x00", bytearray(b"\x01"), memoryview(b"\x02\x03")],
                b"\x00\x01\x02\x03",
            ),
        ]
        async with ws_pair() as (client, server):
            for ws, other in both_ends(client, server):
                for fragments, expected in cases:
                    await other.send(fragments)
                    await other.send("next")
                    assert await ws.recv() == expected
                    assert await ws.recv() == "next"

    async def test_reassembles_hand_built_fragments_around_control_frames(
        self,
    ) -> None:
        data = "Grüße, 世界".encode()
        for side in SIDES:
            async with raw_pair(side) as (ws, peer):
                # The fragment boundaries cut through multi-byte UTF-8 characters.
                await peer.send_frame(OP_TEXT, data[:3], fin=False)
                await peer.send_frame(OP_PING, b"between")  # section 5.4 allows it
                await peer.send_frame(OP_CONT, data[3:9], fin=False)
                await peer.send_frame(OP_PONG, b"unsolicited")
                await peer.send_frame(OP_CONT, b"", fin=False)
                await peer.send_frame(OP_CONT, data[9:13], fin=False)
                await peer.send_frame(OP_CONT, data[13:], fin=True)
                assert await ws.recv() == "Grüße, 世界", side
                pong = await read_frame(peer)
                assert (pong.opcode, pong.payload) == (OP_PONG, b"between"), side

    async def test_reassembles_compressed_fragments_around_control_frames(
        self,
    ) -> None:
        first = "compressed, " * 50 + "first"
        second = "compressed, " * 50 + "second"
        for side in SIDES:
            async with raw_pair(side, peer_headers=DEFLATE_OFFER) as (ws, peer):
                if side == "server":
                    assert b"permessage-deflate" in peer.handshake_response
                else:
                    assert ws.response is not None
                    agreed = ws.response.headers.get("Sec-WebSocket-Extensions", "")
                    assert "permessage-deflate" in agreed
                compressor = zlib.compressobj(9, zlib.DEFLATED, -15)
                for message in (first, second):  # the second uses the first's context
                    body = compressor.compress(message.encode())
                    body += compressor.flush(zlib.Z_SYNC_FLUSH)
                    body = body[:-4]  # RFC 7692 section 7.2.1
                    third = len(body) // 3
                    # RFC 7692 section 6.1: RSV1 on the first frame only.
                    await peer.send_frame(OP_TEXT, body[:third], fin=False, rsv=4)
                    await peer.send_frame(OP_PING, b"one")
                    await peer.send_frame(OP_CONT, body[third : 2 * third], fin=False)
                    await peer.send_frame(OP_PONG, b"")
                    await peer.send_frame(OP_PING, b"two")
                    await peer.send_frame(OP_CONT, body[2 * third :], fin=True)
                    assert await ws.recv() == message, side
                    for payload in (b"one", b"two"):
                        pong = await read_frame(peer)
                        assert (pong.opcode, pong.rsv, pong.payload) == (
                            OP_PONG,
                            0,
                            payload,
                        )


class TestAsyncIteration:
    async def test_iterates_until_a_normal_close(self) -> None:
        messages: list[str | bytes] = ["one", b"two", "three"]
        for side in SIDES:
            for code in (1000, 1001):
                async with ws_pair() as (client, server):
                    ws, other = ends(side, client, server)
                    for message in messages:
                        await other.send(message)
                    await other.close(code, "done")
                    received = [message async for message in ws]
                    assert received == messages, (side, code)
                    assert (ws.close_code, ws.close_reason) == (code, "done")

    async def test_raises_on_an_error_close(self) -> None:
        for side in SIDES:
            async with ws_pair() as (client, server):
                ws, other = ends(side, client, server)
                await other.send("one")
                await other.send(b"two")
                await other.close(1011, "oops")
                received: list[str | bytes] = []
                with pytest.raises(ConnectionClosedError) as excinfo:
                    async for message in ws:
                        received.append(message)
                assert received == ["one", b"two"], side
                assert (excinfo.value.code, excinfo.value.reason) == (1011, "oops")

    async def test_raises_when_tcp_drops(self) -> None:
        for side in SIDES:
            async with raw_pair(side) as (ws, peer):
                await peer.send_frame(OP_TEXT, b"last words")
                await peer.aclose()
                received: list[str | bytes] = []
                with pytest.raises(ConnectionClosedError) as excinfo:
                    async for message in ws:
                        received.append(message)
                assert received == ["last words"], side
                assert excinfo.value.code == 1006


class TestRecvStreaming:
    async def test_yields_each_fragment_as_it_arrives(self) -> None:
        cases: list[tuple[int, list[str | bytes]]] = [
            (OP_TEXT, ["spam, ", "ham, ", "eggs"]),
            (OP_BINARY, [b"\x00spam", b"\x01ham", b"\x02eggs"]),
        ]
        for side in SIDES:
            async with raw_pair(side) as (ws, peer):
                for opcode, parts in cases:
                    await self._stream_one(ws, peer, opcode, parts)

    @staticmethod
    async def _stream_one(
        ws: Connection, peer: RawPeer, opcode: int, parts: list[str | bytes]
    ) -> None:
        send, receive = anyio.create_memory_object_stream[str | bytes](len(parts))

        async def consume() -> None:
            with send:
                async for fragment in ws.recv_streaming():
                    await send.send(fragment)

        with receive:
            async with anyio.create_task_group() as task_group:
                task_group.start_soon(consume)
                for index, part in enumerate(parts):
                    payload = part.encode() if isinstance(part, str) else part
                    await peer.send_frame(
                        opcode if index == 0 else OP_CONT,
                        payload,
                        fin=index == len(parts) - 1,
                    )
                    # Delivered before the next fragment is even sent.
                    assert await receive.receive() == part
                assert [fragment async for fragment in receive] == []

    async def test_decode(self) -> None:
        for side in SIDES:
            async with raw_pair(side) as (ws, peer):
                await peer.send_frame(OP_TEXT, b"caf\xc3", fin=False)
                await peer.send_frame(OP_CONT, b"\xa9!")
                await peer.send_frame(OP_BINARY, b"caf", fin=False)
                await peer.send_frame(OP_CONT, "é!".encode())
                # Text is decoded as it arrives: a character split between frames
                # comes whole, with the fragment that completes it.
                text = [fragment async for fragment in ws.recv_streaming(decode=False)]
                assert text == [b"caf", b"\xc3\xa9!"], side
                binary = [fragment async for fragment in ws.recv_streaming(decode=True)]
                assert binary == ["caf", "é!"], side

    async def test_fragments_sent_by_anyws_arrive_one_by_one(self) -> None:
        for compression in (None, "deflate"):
            async with ws_pair(compression=compression) as (client, server):
                for ws, other in both_ends(client, server):
                    await other.send(["a", "b", "c"])
                    await other.send("next")
                    received = [fragment async for fragment in ws.recv_streaming()]
                    assert received == ["a", "b", "c"], compression
                    assert await ws.recv() == "next"

    async def test_cancelled_mid_message_leaves_the_rest_for_the_next_receive(
        self,
    ) -> None:
        for side in SIDES:
            async with raw_pair(side) as (ws, peer):
                await peer.send_frame(OP_TEXT, b"first", fin=False)
                fragments = ws.recv_streaming()
                assert await anext(fragments) == "first", side
                with anyio.CancelScope() as scope:
                    scope.cancel()
                    await anext(fragments)
                assert scope.cancelled_caught
                await peer.send_frame(OP_CONT, b" second")
                await peer.send_frame(OP_TEXT, b"third")
                assert await ws.recv() == " second"
                assert await ws.recv() == "third"

    async def test_leaving_the_loop_early_leaves_the_rest_for_the_next_receive(
        self,
    ) -> None:
        for side in SIDES:
            async with raw_pair(side) as (ws, peer):
                await peer.send_frame(OP_TEXT, b"first", fin=False)
                await peer.send_frame(OP_CONT, b" second")
                await peer.send_frame(OP_PING, b"sync")
                pong = await read_frame(peer)  # both fragments are queued
                assert (pong.opcode, pong.payload) == (OP_PONG, b"sync")
                received: list[str | bytes] = []
                with warnings.catch_warnings(record=True) as caught:
                    warnings.simplefilter("always")
                    async for fragment in ws.recv_streaming():
                        received.append(fragment)
                        break
                    gc.collect()
                assert received == ["first"], side
                # The same task receives again: no other task is receiving.
                assert await ws.recv() == " second", side
                assert resource_warnings(caught) == []


# --------------------------------------------------------------------------
# Sending
# --------------------------------------------------------------------------

# (fragments to send, opcode of the first frame); the payloads are spam, and, eggs.
FRAGMENTED: list[tuple[Any, int]] = [
    (lambda: ["spam", "and", "eggs"], OP_TEXT),
    (lambda: ("spam", "and", "eggs"), OP_TEXT),
    (lambda: (part for part in ["spam", "and", "eggs"]), OP_TEXT),
    (lambda: [b"spam", bytearray(b"and"), memoryview(b"eggs")], OP_BINARY),
    (lambda: (b"spam", b"and", b"eggs"), OP_BINARY),
    (lambda: (part for part in [b"spam", b"and", b"eggs"]), OP_BINARY),
    (lambda: fragments_of(["spam", "and", "eggs"]), OP_TEXT),
    (
        lambda: fragments_of([b"spam", bytearray(b"and"), memoryview(b"eggs")]),
        OP_BINARY,
    ),
]


class TestSend:
    async def test_sends_str_as_text_and_bytes_like_as_binary(self) -> None:
        shorts = struct.pack("=3H", 1, 2, 3)
        cases: list[tuple[str | bytes | bytearray | memoryview, str | bytes]] = [
            ("text ☕", "text ☕"),
            (b"\x00bytes", b"\x00bytes"),
            (bytearray(b"\x01bytearray"), b"\x01bytearray"),
            (memoryview(b"\x02memoryview"), b"\x02memoryview"),
            (memoryview(b"xxslice")[2:], b"slice"),
            (memoryview(b"a-b-c")[::2], b"abc"),  # not contiguous
            (memoryview(shorts).cast("H"), shorts),  # items of two bytes
        ]
        for compression in ("deflate", None):
            async with ws_pair(compression=compression) as (client, server):
                for ws, other in both_ends(client, server):
                    for message, expected in cases:
                        await ws.send(message)
                        received = await other.recv()
                        assert type(received) is type(expected)
                        assert received == expected, compression

    async def test_text_argument_chooses_the_frame_type(self) -> None:
        async with ws_pair() as (client, server):
            for ws, other in both_ends(client, server):
                await ws.send("café".encode(), text=True)
                await ws.send("café", text=False)
                assert await other.recv() == "café"
                assert await other.recv() == "café".encode()

    async def test_iterable_sends_one_fragmented_message(self) -> None:
        for side in SIDES:
            async with raw_pair(side) as (ws, peer):
                for make, opcode in FRAGMENTED:
                    await ws.send(make())
                    frames = [await read_frame(peer) for _ in range(3)]
                    assert [(f.opcode, f.fin, f.rsv, f.payload) for f in frames] == [
                        (opcode, False, 0, b"spam"),
                        (OP_CONT, False, 0, b"and"),
                        (OP_CONT, True, 0, b"eggs"),
                    ], (side, opcode)

    async def test_iterable_of_one_item_or_none(self) -> None:
        for side in SIDES:
            async with raw_pair(side) as (ws, peer):
                # One item: one frame, a whole message.
                await ws.send(["only"])
                await ws.send(fragments_of([b"only"]))
                # No item: nothing at all, not even an empty message.
                await ws.send([])
                await ws.send(iter(()))
                await ws.send(fragments_of([]))
                await ws.send("next")
                frames = [await read_frame(peer) for _ in range(3)]
                assert [(f.opcode, f.fin, f.payload) for f in frames] == [
                    (OP_TEXT, True, b"only"),
                    (OP_BINARY, True, b"only"),
                    (OP_TEXT, True, b"next"),
                ], side

    async def test_mixed_fragments_raise_type_error_and_fail_the_connection(
        self,
    ) -> None:
        cases: list[Any] = [
            lambda: ["text", b"bytes"],
            lambda: [b"bytes", "text"],
            lambda: fragments_of(["text", b"bytes"]),
            lambda: ["text", 42],
        ]
        for side in SIDES:
            for make in cases:
                async with raw_pair(side) as (ws, peer):
                    async with anyio.create_task_group() as task_group:
                        task_group.start_soon(self._expect_type_error, ws, make())
                        first = await read_data_frame(peer)
                        assert not first.fin
                        assert first.payload in (b"text", b"bytes")
                        # Section 5.4: a message cannot be withdrawn once begun, so
                        # anyws fails the connection, as websockets does.
                        close = await read_frame(peer)
                        assert close.close_code == 1011, side
                        await answer_close(peer, close)
                    with pytest.raises(ConnectionClosedError):
                        await ws.send("after")

    @staticmethod
    async def _expect_type_error(ws: Connection, message: Any) -> None:
        with pytest.raises(TypeError, match="all fragments must be str"):
            await ws.send(message)

    async def test_unsupported_types_raise_type_error_and_send_nothing(self) -> None:
        messages: list[Any] = [{"key": "value"}, {}, 42, 1.5, None, [None]]
        for side in SIDES:
            async with raw_pair(side) as (ws, peer):
                for message in messages:
                    with pytest.raises(TypeError):
                        await ws.send(message)
                await ws.send("still open")
                received = await read_frame(peer)
                assert (received.opcode, received.fin, received.payload) == (
                    OP_TEXT,
                    True,
                    b"still open",
                ), side

    async def test_failed_send_of_a_list_leaves_no_unfinished_generator(
        self,
    ) -> None:
        async with ws_pair() as (client, server):
            for ws, other in both_ends(client, server):
                with warnings.catch_warnings(record=True) as caught:
                    warnings.simplefilter("always")
                    with pytest.raises(TypeError):
                        await ws.send([1, 2])
                    gc.collect()
                assert resource_warnings(caught) == []
                # Nothing was sent: the connection carries on.
                await ws.send("still open")
                assert await other.recv() == "still open"
            await client.close()
            for ws in (client, server):
                with warnings.catch_warnings(record=True) as caught:
                    warnings.simplefilter("always")
                    with pytest.raises(ConnectionClosedOK):
                        await ws.send(["a", "b"])
                    gc.collect()
                assert resource_warnings(caught) == []


# --------------------------------------------------------------------------
# Cancellation and concurrency
# --------------------------------------------------------------------------


class TestCancelRecv:
    async def test_recv_cancelled_while_waiting_loses_no_message(self) -> None:
        async with ws_pair() as (client, server):
            for ws, other in both_ends(client, server):
                received: list[str | bytes] = []
                scope = anyio.CancelScope()
                async with anyio.create_task_group() as task_group:
                    task_group.start_soon(recv_into, ws, scope, received)
                    await anyio.wait_all_tasks_blocked()
                    scope.cancel()
                assert received == []
                await other.send("kept")
                assert await ws.recv() == "kept"

    async def test_recv_cancelled_as_it_starts_loses_no_message(self) -> None:
        messages = ["one", "two", "three"]
        async with ws_pair() as (client, server):
            for ws, other in both_ends(client, server):
                for message in messages:
                    await other.send(message)
                await other.ping()  # the Pong follows the messages: they are queued
                received: list[str | bytes] = []
                for _ in messages:
                    # Either the message comes, or Cancelled and the message stays.
                    with anyio.CancelScope() as scope:
                        scope.cancel()
                        received.append(await ws.recv())
                await other.send("end")
                while (last := await ws.recv()) != "end":
                    received.append(last)
                assert received == messages

    async def test_recv_cancelled_mid_message_loses_nothing(self) -> None:
        for side in SIDES:
            async with raw_pair(side) as (ws, peer):
                received: list[str | bytes] = []
                scope = anyio.CancelScope()
                async with anyio.create_task_group() as task_group:
                    task_group.start_soon(recv_into, ws, scope, received)
                    await peer.send_frame(OP_TEXT, b"first, ", fin=False)
                    await peer.send_frame(OP_PING, b"sync")
                    pong = await read_frame(peer)  # the first fragment is queued
                    assert (pong.opcode, pong.payload) == (OP_PONG, b"sync")
                    await anyio.wait_all_tasks_blocked()
                    scope.cancel()
                assert received == [], side
                await peer.send_frame(OP_CONT, b"second")
                assert await ws.recv() == "first, second", side


class TestConcurrentRecv:
    async def test_second_receiver_gets_concurrency_error(self) -> None:
        kinds = ("recv", "recv_streaming")
        async with ws_pair() as (client, server):
            for ws, other in both_ends(client, server):
                for first in kinds:
                    for second in kinds:
                        received: list[str | bytes] = []
                        async with anyio.create_task_group() as task_group:
                            task_group.start_soon(self._receive, ws, first, received)
                            await anyio.wait_all_tasks_blocked()
                            with pytest.raises(ConcurrencyError):
                                await self._receive(ws, second, received)
                            await other.send("for the first")
                        assert received == ["for the first"], (first, second)

    @staticmethod
    async def _receive(ws: Connection, kind: str, into: list[str | bytes]) -> None:
        if kind == "recv":
            into.append(await ws.recv())
        else:
            into.append("".join([str(f) async for f in ws.recv_streaming()]))


class TestConcurrentSend:
    async def test_fragmented_messages_never_interleave_on_the_wire(self) -> None:
        fragmented = [[f"m{i}-{j};" for j in range(4)] for i in range(4)]
        single = [f"s{i}" for i in range(4)]
        expected = sorted(["".join(parts) for parts in fragmented] + single)
        for side in SIDES:
            async with raw_pair(side) as (ws, peer):
                messages: list[list[Frame]] = []
                async with anyio.create_task_group() as task_group:
                    for parts, text in zip(fragmented, single, strict=True):
                        task_group.start_soon(ws.send, fragments_of(parts))
                        task_group.start_soon(ws.send, text)
                    current: list[Frame] | None = None
                    while len(messages) < len(expected):
                        received = await read_data_frame(peer)
                        if received.opcode == OP_CONT:
                            assert current is not None, "continuation out of a message"
                        else:
                            assert current is None, "new message inside another one"
                            current = []
                        current.append(received)
                        if received.fin:
                            messages.append(current)
                            current = None
                whole = sorted(
                    b"".join(f.payload for f in m).decode() for m in messages
                )
                assert whole == expected, side
                assert sorted(len(m) for m in messages) == [1] * 4 + [4] * 4

    async def test_each_message_arrives_intact(self) -> None:
        fragmented = [[bytes([i]) * 100 * (j + 1) for j in range(5)] for i in range(5)]
        expected = sorted(b"".join(parts) for parts in fragmented)
        async with ws_pair() as (client, server):
            for ws, other in both_ends(client, server):
                async with anyio.create_task_group() as task_group:
                    for parts in fragmented:
                        task_group.start_soon(ws.send, fragments_of(parts))
                    received = [await other.recv() for _ in fragmented]
                assert sorted(m for m in received if isinstance(m, bytes)) == expected


# --------------------------------------------------------------------------
# Flow control
# --------------------------------------------------------------------------

# 64 messages of a little over 256 KiB: far more than max_queue=4 messages and the
# small kernel buffers hold together.
BIG = 256 * 1024 + 1024
BIG_COUNT = 64  # about 16 MiB in all


class TestReceiveBackpressure:
    async def test_reading_stops_at_max_queue_and_resumes(self, side: Side) -> None:
        async with raw_pair(side, small_buffers=True, max_queue=4) as (ws, peer):
            sent = 0
            all_sent = anyio.Event()

            async def produce() -> None:
                nonlocal sent
                for index in range(BIG_COUNT):
                    data = numbered(index, BIG)
                    await peer.send(fast_frame(OP_BINARY, data, mask=peer.is_client))
                    sent += 1
                all_sent.set()

            async with anyio.create_task_group() as task_group:
                task_group.start_soon(produce)
                # Safety net: the peer can never finish while nothing is consumed.
                with anyio.move_on_after(0.3):
                    await all_sent.wait()
                assert not all_sent.is_set()
                # What went through: 4 queued messages, one being read, and what
                # the small kernel buffers hold.
                assert sent < BIG_COUNT // 4, f"{sent} of {BIG_COUNT} messages sent"
                # Reading resumes as the application consumes; nothing is lost.
                for index in range(BIG_COUNT):
                    assert index_of(await ws.recv()) == index
                await all_sent.wait()

    async def test_without_max_queue_reading_never_stops(self, side: Side) -> None:
        async with raw_pair(side, small_buffers=True, max_queue=None) as (ws, peer):
            for index in range(BIG_COUNT):
                data = numbered(index, BIG)
                await peer.send(fast_frame(OP_BINARY, data, mask=peer.is_client))
            # Every message was read although none was consumed yet.
            for index in range(BIG_COUNT):
                assert index_of(await ws.recv()) == index


SMALL = 64 * 1024
SMALL_COUNT = 128  # 8 MiB in all


class TestSendBackpressure:
    async def test_send_waits_while_the_peer_does_not_read(self, side: Side) -> None:
        async with raw_pair(side, small_buffers=True) as (ws, peer):
            sent = 0
            all_sent = anyio.Event()

            async def produce() -> None:
                nonlocal sent
                for index in range(SMALL_COUNT):
                    await ws.send(numbered(index, SMALL))
                    sent += 1
                all_sent.set()

            async with anyio.create_task_group() as task_group:
                task_group.start_soon(produce)
                # Safety net: send() can never finish while the peer does not read.
                with anyio.move_on_after(0.3):
                    await all_sent.wait()
                assert not all_sent.is_set()
                assert sent < SMALL_COUNT // 4, f"{sent} of {SMALL_COUNT} messages sent"
                # Reading lets the sender go on; everything arrives in order.
                for index in range(SMALL_COUNT):
                    received = await read_frame(peer)
                    assert (received.opcode, received.fin) == (OP_BINARY, True)
                    assert index_of(received.payload) == index
                await all_sent.wait()


# --------------------------------------------------------------------------
# Size limits
# --------------------------------------------------------------------------


def assert_too_big(exc: ConnectionClosedError) -> None:
    """The receiving side refused a message with 1009 because of max_size."""
    assert isinstance(exc.__cause__, PayloadTooBig), repr(exc.__cause__)
    assert exc.sent is not None
    assert exc.sent.code == 1009


async def assert_refused(ws: Connection, other: Connection) -> None:
    """``ws`` refused what ``other`` sent: 1009 on both ends."""
    with pytest.raises(ConnectionClosedError) as excinfo:
        await ws.recv()
    assert_too_big(excinfo.value)
    with pytest.raises(ConnectionClosedError) as excinfo:
        await other.recv()
    assert excinfo.value.code == 1009
    await other.wait_closed()
    assert other.close_code == 1009


class TestMaxSize:
    async def test_message_over_max_size_closes_with_1009(self) -> None:
        limit = 1000
        for side in SIDES:
            for compression in ("deflate", None):
                async with ws_pair(max_size=limit, compression=compression) as pair:
                    ws, other = ends(side, *pair)
                    assert pair[0].response is not None
                    agreed = pair[0].response.headers.get("Sec-WebSocket-Extensions")
                    assert (agreed is not None) == (compression is not None)
                    exactly = os.urandom(limit)  # random data does not compress
                    await other.send(exactly)
                    assert await ws.recv() == exactly
                    await other.send(os.urandom(limit + 1))
                    await assert_refused(ws, other)

    async def test_text_counts_utf8_bytes(self) -> None:
        limit = 1000
        for side in SIDES:
            for compression in ("deflate", None):
                async with ws_pair(max_size=limit, compression=compression) as pair:
                    ws, other = ends(side, *pair)
                    await other.send("é" * (limit // 2))  # 1000 bytes
                    assert await ws.recv() == "é" * (limit // 2)
                    await other.send("é" * (limit // 2 + 1))  # 501 characters
                    await assert_refused(ws, other)

    async def test_fragmented_message_over_max_size(self) -> None:
        limit = 1000
        for side in SIDES:
            for compression in ("deflate", None):
                async with ws_pair(max_size=limit, compression=compression) as pair:
                    ws, other = ends(side, *pair)
                    # Every fragment is within the limit; the message is not.
                    await other.send([os.urandom(400) for _ in range(3)])
                    await assert_refused(ws, other)

    async def test_compressed_message_inflating_past_max_size(self) -> None:
        limit = 64 * 1024
        message = bytes(2**20)  # 1 MiB of zeros
        assert len(deflate(message)) < limit // 8
        for side in SIDES:
            async with ws_pair(max_size=limit) as pair:
                ws, other = ends(side, *pair)
                assert pair[0].response is not None
                assert "permessage-deflate" in pair[0].response.headers.get(
                    "Sec-WebSocket-Extensions", ""
                )
                await other.send(message)
                await assert_refused(ws, other)

    async def test_huge_length_is_refused_before_the_payload(self) -> None:
        for side in SIDES:
            async with raw_pair(side) as (ws, peer):
                # Only the header (and mask key) of a frame claiming 1 TiB.
                await peer.send(frame(OP_BINARY, length=2**40, mask=peer.is_client))
                received = await read_frame(peer)
                assert received.close_code == 1009, side
                await answer_close(peer, received)
                with pytest.raises(ConnectionClosedError) as excinfo:
                    await ws.recv()
                assert_too_big(excinfo.value)

    async def test_decompression_bomb_is_not_buffered(self, side: Side) -> None:
        bomb = deflate_bomb()
        data = fast_frame(OP_BINARY, bomb, mask=side == "server", rsv=4)
        async with raw_pair(side, peer_headers=DEFLATE_OFFER, max_size=2**20) as (
            ws,
            peer,
        ):
            tracing = tracemalloc.is_tracing()
            if not tracing:
                tracemalloc.start()
            tracemalloc.reset_peak()
            try:
                await peer.send(data)
                received = await read_frame(peer)
                await answer_close(peer, received)
                with pytest.raises(ConnectionClosedError) as excinfo:
                    await ws.recv()
                _, peak = tracemalloc.get_traced_memory()
            finally:
                if not tracing:
                    tracemalloc.stop()
            assert received.close_code == 1009
            assert_too_big(excinfo.value)
            # The whole message inflated is 100 MiB; anyws holds about max_size.
            assert peak < 20 * 2**20, f"peak {peak} bytes"


class TestLargeMessages:
    @pytest.mark.parametrize("compression", [None, "deflate"])
    async def test_8_mib_echo(self, compression: str | None) -> None:
        size = 8 * 2**20
        if compression is None:  # incompressible
            messages: list[str | bytes] = [
                base64.b64encode(os.urandom(size * 3 // 4)).decode(),
                os.urandom(size),
            ]
        else:  # compressible enough to stay fast, still random at small scale
            messages = [
                base64.b64encode(os.urandom(768)).decode() * (size // 1024),
                os.urandom(1024) * (size // 1024),
            ]
        async with ws_pair(max_size=2 * size, compression=compression) as pair:
            client, server = pair
            assert client.response is not None
            agreed = client.response.headers.get("Sec-WebSocket-Extensions")
            assert (agreed is not None) == (compression is not None)
            for message in messages:
                assert len(message) == size
                await client.send(message)
                echoed = await server.recv()
                await server.send(echoed)
                assert await client.recv() == message

"""Cases 12 and 13: permessage-deflate (RFC 7692).

The raw peer compresses with zlib (raw deflate, the 0x00 0x00 0xff 0xff tail
removed, section 7.2.1) and inflates what anyws sends with exactly the window and
context rules agreed, so a wider window or a context kept against
``no_context_takeover`` fails the case.

12: messages of various sizes and compressibility, sent compressed, uncompressed
and fragmented, are echoed intact; control frames between compressed fragments
don't disturb inflation; bad compressed data fails with 1007 and a small frame
that inflates past ``max_size`` fails with 1009 while the memory anyws allocates
stays far below the inflated size.

13: every combination of offer (anyws as server) or answer (anyws as client) that
section 7.1 allows: ``server_no_context_takeover``, ``client_no_context_takeover``,
``server_max_window_bits`` absent or 8 to 15, ``client_max_window_bits`` absent,
without value (offer only) or 8 to 15.
"""

from __future__ import annotations

import functools
import random
import tracemalloc
import zlib
from typing import TYPE_CHECKING

import anyws

from .cases_framing import protocol_error
from .harness import SERVER, Case, ClientSide, ServerSide
from .peer import (
    DEFLATE_TAIL,
    OP_BINARY,
    OP_CONT,
    OP_PING,
    OP_PONG,
    OP_TEXT,
    RSV1,
    RSV2,
    CaseFailed,
    DeflateParams,
    RawPeer,
)

if TYPE_CHECKING:
    from collections.abc import Awaitable, Callable

    from .harness import Side

    Run = Callable[[Side], Awaitable[None]]

CASES: list[Case] = []

# What a browser offers (anyws as server), and the plainest answer (as client).
DEFAULT = DeflateParams(client_max_window_bits=0)
PLAIN = DeflateParams()


def _add(id: str, description: str, run: Run, **options: object) -> None:
    CASES.append(Case(id, description, run, **options))  # type: ignore[arg-type]


def _default(side: Side) -> DeflateParams:
    return DEFAULT if side.is_server else PLAIN


async def open_deflate(
    side: Side, params: DeflateParams | None = None, *, may_decline: bool = False
) -> RawPeer:
    """Open a connection that agrees on permessage-deflate.

    With ``may_decline``, an anyws server may decline the offer (recorded as
    non-strict by :meth:`Side.open`); the connection then goes on uncompressed.
    """
    peer = await side.open(params or _default(side))
    if peer.codec is None and not may_decline:
        raise CaseFailed("permessage-deflate wasn't agreed")
    return peer


# -- message corpora ------------------------------------------------------------

_WORDS = (
    "the of and to in is that for it as was with be by on not he this are or his "
    "from at which but have an they you were her she there been one all we their "
    "websocket frame deflate window context message ping pong close extension"
).split()


@functools.cache
def make_message(kind: int, size: int, seed: int) -> str | bytes:
    """A message of ``size`` bytes: 1 repetitive text, 2 repetitive binary,
    3 word salad, 4 random bytes, 5 one of those by ``seed``."""
    rng = random.Random(kind * 1_000_003 + size * 7 + seed)
    if kind == 5:
        kind = 1 + seed % 4
    if kind == 1:
        phrase = f"Hello, permessage-deflate #{seed}! "
        return (phrase * (size // len(phrase) + 1))[:size]
    if kind == 2:
        pattern = bytes(rng.randrange(256) for _ in range(300))
        return (pattern * (size // 300 + 1))[:size]
    if kind == 3:
        words: list[str] = []
        length = 0
        while length < size:
            words.append(rng.choice(_WORDS))
            length += len(words[-1]) + 1
        return " ".join(words)[:size]
    return rng.randbytes(size)


async def send_compressed(
    peer: RawPeer, message: str | bytes, *, fragments: int = 1
) -> None:
    """Send ``message`` compressed, its compressed payload in ``fragments`` frames.

    Without an agreed codec, the message goes uncompressed in one frame.
    """
    if peer.codec is None:
        await peer.send_message(message)
        return
    opcode = OP_TEXT if isinstance(message, str) else OP_BINARY
    raw = message.encode() if isinstance(message, str) else message
    payload = peer.codec.compress(raw)
    step = max(1, -(-len(payload) // fragments))
    starts = list(range(0, len(payload), step)) or [0]
    await peer.send(
        b"".join(
            peer.frame(
                OP_CONT if start else opcode,
                payload[start : start + step],
                fin=start == starts[-1],
                rsv=0 if start else RSV1,
            )
            for start in starts
        )
    )


def echo_corpus(kind: int, size: int) -> Run:
    """A case: six messages of ``kind`` and ``size``: most compressed, every
    third one uncompressed, every other one in three fragments."""

    async def run(side: Side) -> None:
        peer = await open_deflate(side)
        for seed in range(6):
            message = make_message(kind, size, seed)
            if seed % 3 == 2:
                await peer.send_message(message, compress=False)
            else:
                await send_compressed(peer, message, fragments=3 if seed % 2 else 1)
            await peer.expect_message(message)
        await peer.close_normally()

    return run


KINDS = {
    1: "repetitive text",
    2: "repetitive binary",
    3: "word-salad text",
    4: "random binary",
    5: "mixed",
}
SIZES = [16, 64, 256, 1024, 4096, 16384, 65536, 131072]
for _kind, _name in KINDS.items():
    for _n, _size in enumerate(SIZES, 1):
        _add(
            f"12.{_kind}.{_n}",
            f"{_name}, 6 messages of {_size} bytes",
            echo_corpus(_kind, _size),
        )


# -- 12.6: control frames, edge cases and failures --------------------------------


def controls_between(kinds: list[int], *, chop: int | None = None) -> Run:
    """A case: a compressed message in len(kinds) + 1 frames with control frames
    between; after each Ping its Pong is awaited before the next fragment."""

    async def run(side: Side) -> None:
        peer = await open_deflate(side)
        assert peer.codec is not None
        message = make_message(3, 3000, 1)
        assert isinstance(message, str)
        payload = peer.codec.compress(message.encode())
        count = len(kinds) + 1
        step = -(-len(payload) // count)
        for index in range(count):
            part = payload[index * step : (index + 1) * step]
            frame = peer.frame(
                OP_CONT if index else OP_TEXT,
                part,
                fin=index == count - 1,
                rsv=0 if index else RSV1,
            )
            if chop is None:
                await peer.send(frame)
            else:
                await peer.send_chopped(frame, chop)
            if index < len(kinds):
                control = b"between %d" % index
                await peer.send_frame(kinds[index], control)
                if kinds[index] == OP_PING:
                    await peer.expect_pong(control)
        await peer.expect_message(message)
        await peer.close_normally()

    return run


async def _one_byte_frames(side: Side) -> None:
    peer = await open_deflate(side)
    message = make_message(1, 2000, 3)
    await send_compressed(peer, message, fragments=10_000)  # one byte per frame
    await peer.expect_message(message)
    await peer.close_normally()


async def _mixed_context(side: Side) -> None:
    # Uncompressed messages in between leave the compression context alone.
    peer = await open_deflate(side)
    message = make_message(3, 5000, 4)
    await send_compressed(peer, message)
    await peer.send_message("plain in between", compress=False)
    await send_compressed(peer, message)  # a back-reference to the first one
    for expected in (message, "plain in between", message):
        await peer.expect_message(expected)
    await peer.close_normally()


async def _empty_messages(side: Side) -> None:
    # Section 7.2.3.6: an empty message may be compressed to a single 0x00 octet;
    # an empty payload inflates to nothing too.
    peer = await open_deflate(side)
    await peer.send(
        peer.frame(OP_TEXT, b"\x00", rsv=RSV1)
        + peer.frame(OP_BINARY, _compressed(peer, b""), rsv=RSV1)
        + peer.frame(OP_TEXT, b"", rsv=RSV1, fin=False)
        + peer.frame(OP_CONT, b"\x00")
    )
    for expected in ("", b"", ""):
        await peer.expect_message(expected)
    await peer.close_normally()


def _bad_frame(build: Callable[[RawPeer], bytes], code: int = 1002) -> Run:
    return protocol_error(build, code=code, opener=open_deflate)


def _compressed(peer: RawPeer, data: bytes) -> bytes:
    assert peer.codec is not None
    return peer.codec.compress(data)


@functools.cache
def deflate_bomb(size: int) -> bytes:
    """``size`` zero bytes, compressed without ever holding them in memory."""
    compressor = zlib.compressobj(9, zlib.DEFLATED, -15)
    chunk = bytes(65536)
    out = b"".join(compressor.compress(chunk) for _ in range(size // 65536))
    out += compressor.flush(zlib.Z_SYNC_FLUSH)
    assert out.endswith(DEFLATE_TAIL)
    return out[:-4]


BOMB_SIZE = 64 * 2**20
BOMB_LIMIT = 2**20


def bomb(*, fragments: int) -> Run:
    """A case: a compressed message of 64 MiB of zeros (about 64 KiB on the wire),
    in ``fragments`` frames, with ``max_size`` 1 MiB: 1009, and the memory traced
    while anyws handles it stays under a quarter of the inflated size."""

    async def run(side: Side) -> None:
        peer = await open_deflate(side)
        payload = deflate_bomb(BOMB_SIZE)
        step = -(-len(payload) // fragments)
        frames = b"".join(
            peer.frame(
                OP_CONT if start else OP_BINARY,
                payload[start : start + step],
                fin=start + step >= len(payload),
                rsv=0 if start else RSV1,
            )
            for start in range(0, len(payload), step)
        )
        tracing = tracemalloc.is_tracing()
        if not tracing:
            tracemalloc.start()
        tracemalloc.reset_peak()
        try:
            await peer.send(frames)
            await peer.expect_close((1009,))
            peak = tracemalloc.get_traced_memory()[1]
        finally:
            if not tracing:
                tracemalloc.stop()
        if peak > BOMB_SIZE // 4:
            raise CaseFailed(f"{peak} bytes allocated to refuse a 64 MiB message")

    return run


_add(
    "12.6.1",
    "pings between compressed fragments, each pong awaited",
    controls_between([OP_PING, OP_PING, OP_PING]),
)
_add(
    "12.6.2",
    "pongs between compressed fragments",
    controls_between([OP_PONG, OP_PONG]),
)
_add(
    "12.6.3",
    "a ping between compressed fragments, byte by byte",
    controls_between([OP_PING], chop=1),
)
_add("12.6.4", "a compressed message in one-byte frames", _one_byte_frames)
_add("12.6.5", "uncompressed message between two compressed", _mixed_context)
_add("12.6.6", "empty compressed messages", _empty_messages)
_add(
    "12.6.7",
    "RSV1 on a continuation frame: 1002",
    _bad_frame(
        lambda peer: (
            peer.frame(OP_TEXT, _compressed(peer, b"ab"), rsv=RSV1, fin=False)
            + peer.frame(OP_CONT, b"", rsv=RSV1)
        )
    ),
)
_add(
    "12.6.8",
    "RSV1 on a ping: 1002",
    _bad_frame(lambda peer: peer.frame(OP_PING, b"compressed?", rsv=RSV1)),
)
_add(
    "12.6.9",
    "RSV2 on a data frame: 1002",
    _bad_frame(lambda peer: peer.frame(OP_TEXT, b"reserved", rsv=RSV2)),
)
_add(
    "12.6.10",
    "compressed data that doesn't inflate: 1007",
    _bad_frame(lambda peer: peer.frame(OP_BINARY, b"\xff\xff\xff\xff", rsv=RSV1), 1007),
)
_add(
    "12.6.11",
    "compressed text that inflates to invalid UTF-8: 1007",
    _bad_frame(
        lambda peer: peer.frame(
            OP_TEXT, _compressed(peer, b"valid \xed\xa0\x80 invalid"), rsv=RSV1
        ),
        1007,
    ),
)
_add(
    "12.6.12",
    "64 MiB of zeros in one compressed frame, max_size 1 MiB: 1009, memory bounded",
    bomb(fragments=1),
    max_size=BOMB_LIMIT,
)
_add(
    "12.6.13",
    "64 MiB of zeros in 64 compressed fragments: 1009, memory bounded",
    bomb(fragments=64),
    max_size=BOMB_LIMIT,
)


async def _exactly_max_size(side: Side) -> None:
    peer = await open_deflate(side)
    message = bytes(BOMB_LIMIT)
    await send_compressed(peer, message)
    await peer.expect_message(message)
    await peer.close_normally()


async def _ping_after_big_message(side: Side) -> None:
    peer = await open_deflate(side)
    message = bytes(BOMB_LIMIT - 100)
    await send_compressed(peer, message)
    await peer.expect_message(message)
    await peer.send_frame(OP_PING, b"p" * 125)
    await peer.expect_pong(b"p" * 125)
    await peer.close_normally()


_add(
    "12.6.14",
    "a compressed message inflating to exactly max_size is accepted",
    _exactly_max_size,
    max_size=BOMB_LIMIT,
)
_add(
    "12.6.15",
    "a ping after a compressed message 100 bytes under max_size",
    _ping_after_big_message,
    max_size=BOMB_LIMIT,
)


# -- 13: parameters --------------------------------------------------------------

NO_CONTEXT_TAKEOVER = [(False, False), (False, True), (True, False), (True, True)]
WINDOW_BITS: list[int | None] = [None, *range(8, 16)]


@functools.cache
def window_probe() -> bytes:
    """A random 64-byte block that recurs after runs of zeros of 300 bytes to
    19 KiB: a compressor whose window is wider than agreed refers back further
    than the inflater's window reaches."""
    block = random.Random(7692).randbytes(64)
    parts = [block]
    for gap in (300, 600, 1200, 2400, 4800, 9600, 19200):
        parts += [bytes(gap), block]
    return b"".join(parts)


def _corpus() -> list[str | bytes]:
    # A repeat (context takeover), then distances of every size (window bits).
    text = make_message(3, 600, 9)
    return [text, text, window_probe()]


async def _client_agreed(side: Side, peer: RawPeer, params: DeflateParams) -> bool:
    """Whether the anyws client took the answer (a Ping gets its Pong)."""
    if side.is_server:
        return True
    await peer.send_frame(OP_PING, b"agreed?")
    frame = await peer.read_frame()
    if frame is not None:
        if frame.opcode != OP_PONG or frame.payload != b"agreed?":
            raise CaseFailed(f"expected a pong, got a {frame.describe()}")
        return True
    assert isinstance(side, ClientSide)
    error = await side.client_error(peer)
    if not isinstance(error, anyws.NegotiationError):
        raise CaseFailed(f"the client refused {params.header()!r}: {error!r}")
    # The client offered client_max_window_bits, so it declared it can take any
    # answer (RFC 7692 section 7.1.2.2); failing on one is allowed, not strict.
    side.non_strict("the client refused a valid answer", repr(params.header()))
    return False


def parameters(
    server_nct: bool,
    client_nct: bool,
    server_bits: list[int | None],
    client_bits: list[int | None],
) -> Run:
    """A case: a connection for each combination of window bits, with these
    ``no_context_takeover`` flags, offered by the raw client or answered by the
    raw server. ``client_max_window_bits`` 0 (no value) applies to offers only."""

    async def run(side: Side) -> None:
        for sbits in server_bits:
            for cbits in client_bits:
                if cbits == 0 and not side.is_server:
                    continue
                params = DeflateParams(server_nct, client_nct, sbits, cbits)
                peer = await open_deflate(side, params, may_decline=True)
                if not await _client_agreed(side, peer, params):
                    continue
                for message in _corpus():
                    await send_compressed(peer, message)
                    await peer.expect_message(message)
                await peer.close_normally()

    return run


for _i, (_snct, _cnct) in enumerate(NO_CONTEXT_TAKEOVER, 1):
    _flags = [
        name + ", "
        for name, on in (
            ("server_no_context_takeover", _snct),
            ("client_no_context_takeover", _cnct),
        )
        if on
    ]
    _prefix = "".join(_flags)
    for _j, _bits in enumerate(WINDOW_BITS, 1):
        _add(
            f"13.{_i}.{_j}",
            f"{_prefix}server_max_window_bits={_bits or 'absent'}, "
            "each client_max_window_bits but 8",
            parameters(_snct, _cnct, [_bits], [None, 0, *range(9, 16)]),
        )
    _add(
        f"13.{_i}.10",
        f"{_prefix}client_max_window_bits=8, each server_max_window_bits but 8",
        parameters(_snct, _cnct, [None, *range(9, 16)], [8]),
    )


def offer(extensions: str, expect: DeflateParams | None) -> Run:
    """A case (anyws as server): a raw offer, answered as ``expect`` says:
    ``None`` when every offer must be declined."""

    async def run(side: Side) -> None:
        assert isinstance(side, ServerSide)
        peer = await side.open(extensions=extensions)
        if expect is None:
            if peer.codec is not None:
                raise CaseFailed(f"accepted an invalid offer: {extensions}")
        else:
            if peer.codec is None:
                side.non_strict("declined a valid offer", repr(extensions))
            elif (
                expect.server_max_window_bits is not None
                and (peer.codec.agreed.server_max_window_bits or 15)
                > expect.server_max_window_bits
            ):
                raise CaseFailed(f"answer exceeds the offer: {extensions}")
        for message in _corpus():
            await peer.send_message(message)
            await peer.expect_message(message)
        await peer.close_normally()

    return run


_OFFERS: list[tuple[str, str, DeflateParams | None]] = [
    (
        "an invalid offer, then a valid one",
        "permessage-deflate; server_max_window_bits=7, "
        "permessage-deflate; server_max_window_bits=10",
        DeflateParams(server_max_window_bits=10),
    ),
    ("an unknown parameter", "permessage-deflate; x-unknown", None),
    (
        "an unknown extension, then permessage-deflate",
        "x-webkit-deflate-frame, permessage-deflate",
        PLAIN,
    ),
    (
        "a duplicate parameter",
        "permessage-deflate; server_no_context_takeover; server_no_context_takeover",
        None,
    ),
    (
        "client_max_window_bits=16",
        "permessage-deflate; client_max_window_bits=16",
        None,
    ),
    (
        "server_max_window_bits=08",
        "permessage-deflate; server_max_window_bits=08",
        None,
    ),
    (
        "a quoted value",
        'permessage-deflate; server_max_window_bits="10"',
        DeflateParams(server_max_window_bits=10),
    ),
    (
        "server_max_window_bits without a value",
        "permessage-deflate; server_max_window_bits",
        None,
    ),
]
for _n, (_what, _extensions, _expect) in enumerate(_OFFERS, 1):
    _add(f"13.5.{_n}", f"offer with {_what}", offer(_extensions, _expect), sides=SERVER)

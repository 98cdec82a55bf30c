"""Cases 1 to 5: framing, ping/pong, reserved bits, opcodes and fragmentation.

RFC 6455 section 5. Every case that breaks the protocol must end with a Close frame
with code 1002 (section 7.4.1), before anything sent after the offending frame is
answered: no echo, no Pong.
"""

from __future__ import annotations

from typing import TYPE_CHECKING

from .harness import CLIENT, SERVER, Case
from .peer import (
    OP_BINARY,
    OP_CLOSE,
    OP_CONT,
    OP_PING,
    OP_PONG,
    OP_TEXT,
    Frame,
    RawPeer,
    binary_payload,
    check_message,
    close_payload,
    text_payload,
)

if TYPE_CHECKING:
    from collections.abc import Awaitable, Callable

    from .harness import Side

    Run = Callable[[Side], Awaitable[None]]

CASES: list[Case] = []


def _add(id: str, description: str, run: Run, **options: object) -> None:
    CASES.append(Case(id, description, run, **options))  # type: ignore[arg-type]


def _payload(message: str | bytes) -> tuple[int, bytes]:
    if isinstance(message, str):
        return OP_TEXT, message.encode()
    return OP_BINARY, message


async def _send(peer: RawPeer, data: bytes, chop: int | None) -> None:
    if chop is None:
        await peer.send(data)
    else:
        await peer.send_chopped(data, chop)


def echo(*messages: str | bytes, chop: int | None = None, fragments: int = 1) -> Run:
    """A case: send each message (in ``fragments`` frames), expect it back."""

    async def run(side: Side) -> None:
        peer = await side.open()
        data = b""
        for message in messages:
            data += fragmented(peer, message, fragments)
        await _send(peer, data, chop)
        for message in messages:
            await peer.expect_message(message)
        await peer.close_normally()

    return run


def fragmented(peer: RawPeer, message: str | bytes, count: int) -> bytes:
    """The frames of ``message`` split into ``count`` fragments (some may be empty)."""
    opcode, payload = _payload(message)
    step = -(-len(payload) // count) if payload else 0
    frames = b""
    for index in range(count):
        part = payload[index * step : (index + 1) * step]
        frames += peer.frame(
            opcode if index == 0 else OP_CONT, part, fin=index == count - 1
        )
    return frames


def protocol_error(
    build: Callable[[RawPeer], bytes],
    *,
    before: tuple[str | bytes, ...] = (),
    fragments: int = 1,
    chop: int | None = None,
    code: int = 1002,
    opener: Callable[[Side], Awaitable[RawPeer]] | None = None,
) -> Run:
    """A case: send valid ``before`` messages, then ``build``'s bytes, then a Ping.

    The messages (each in ``fragments`` frames) must be echoed, then a Close with
    ``code`` must follow, and the Ping must go unanswered. ``opener`` opens the
    connection when :meth:`Side.open` with no arguments isn't what the case needs.
    """

    async def run(side: Side) -> None:
        peer = await (opener(side) if opener else side.open())
        data = b"".join(fragmented(peer, m, fragments) for m in before)
        data += build(peer) + peer.frame(OP_PING, b"unanswered")
        await _send(peer, data, chop)
        await expect_echoes_then_close(peer, before, (code,))

    return run


async def expect_echoes_then_close(
    peer: RawPeer, messages: tuple[str | bytes, ...], codes: tuple[int | None, ...]
) -> None:
    """Expect the echoes of ``messages``, then a Close with one of ``codes``.

    The messages were sent just before a frame that breaks the protocol, in the
    same write. Failing the connection before echoing them is what the Autobahn
    Testsuite calls non-strict: the RFC allows it, but a strict endpoint handles
    every frame received before the bad one.
    """
    for message in messages:
        got = await peer.read_message()
        if isinstance(got, Frame) and got.opcode == OP_CLOSE:
            peer.non_strict(
                "failed the connection without echoing the valid messages that "
                "came just before the bad frame"
            )
            await peer.expect_close(codes, frame=got)
            return
        check_message(got, message)
    await peer.expect_close(codes)


def one_frame(
    opcode: int, payload: bytes, *, rsv: int = 0
) -> Callable[[RawPeer], bytes]:
    """A frame builder for :func:`protocol_error`."""
    return lambda peer: peer.frame(opcode, payload, rsv=rsv)


# -- 1: framing ----------------------------------------------------------------

SIZES = [0, 125, 126, 127, 128, 65535, 65536]
for _n, _size in enumerate(SIZES, 1):
    _add(f"1.1.{_n}", f"text message of {_size} bytes", echo(text_payload(_size)))
    _add(f"1.2.{_n}", f"binary message of {_size} bytes", echo(binary_payload(_size)))
_add(
    "1.1.8", "text of 65535 bytes in chops of 997", echo(text_payload(65535), chop=997)
)
_add(
    "1.2.8",
    "binary of 65535 bytes in chops of 997",
    echo(binary_payload(65535), chop=997),
)
_BYTEWISE: list[str | bytes] = [
    text_payload(0),
    text_payload(125),
    text_payload(126),
    binary_payload(300),
]
for _n, _message in enumerate(_BYTEWISE, 1):
    _add(
        f"1.3.{_n}",
        f"{len(_message)}-byte message delivered byte by byte",
        echo(_message, chop=1),
    )


async def _big_frame_bytewise_header(side: Side) -> None:
    # A 64-bit length, its header one byte at a time, then the payload in chops.
    peer = await side.open()
    message = binary_payload(65536, seed=7)
    data = peer.frame(OP_BINARY, message)
    header = 2 + 8 + (4 if peer.is_client else 0)
    await peer.send_chopped(data[:header], 1)
    await peer.send_chopped(data[header:], 4093)
    await peer.expect_message(message)
    await peer.close_normally()


_add("1.3.5", "65536-byte binary: header byte by byte", _big_frame_bytewise_header)
_MIXED: list[str | bytes] = [
    text_payload(i * 13, seed=i) if i % 2 else binary_payload(i * 17, seed=i)
    for i in range(10)
]
_add("1.4.1", "ten messages in one write", echo(*_MIXED))
_add("1.4.2", "ten messages in chops of 13", echo(*_MIXED, chop=13))


async def _masked_by_server(side: Side) -> None:
    # Section 5.1: a client closes the connection on a masked frame.
    peer = await side.open()
    await peer.send(peer.frame(OP_TEXT, b"masked", masked=True))
    await peer.expect_close((1002,))


async def _unmasked_by_client(side: Side) -> None:
    # Section 5.1: a server closes the connection on an unmasked frame.
    peer = await side.open()
    await peer.send(peer.frame(OP_TEXT, b"unmasked", masked=False))
    await peer.expect_close((1002,))


_add("1.5.1", "masked frame from the server: 1002", _masked_by_server, sides=CLIENT)
_add("1.5.2", "unmasked frame from the client: 1002", _unmasked_by_client, sides=SERVER)


# -- 2: ping/pong ------------------------------------------------------------------


def pings(*payloads: bytes, chop: int | None = None) -> Run:
    """A case: send Pings (in one write), expect a Pong for each, in order."""

    async def run(side: Side) -> None:
        peer = await side.open()
        await _send(peer, b"".join(peer.frame(OP_PING, p) for p in payloads), chop)
        for payload in payloads:
            await peer.expect_pong(payload)
        await peer.close_normally()

    return run


def unsolicited_pong(payload: bytes) -> Run:
    """A case: a Pong nobody asked for is ignored; the next message is echoed."""

    async def run(side: Side) -> None:
        peer = await side.open()
        await peer.send(peer.frame(OP_PONG, payload) + peer.frame(OP_TEXT, b"after"))
        await peer.expect_message("after")
        await peer.close_normally()

    return run


_add("2.1", "ping without payload", pings(b""))
_add("2.2", "ping with a text payload", pings(b"Hello, world!"))
_add("2.3", "ping with a binary payload", pings(b"\x00\xff\xfe\xfd\xfc\xfb\x00\xff"))
_add("2.4", "ping with a 125-byte payload", pings(binary_payload(125)))
_add(
    "2.5",
    "ping with a 126-byte payload: 1002",
    protocol_error(lambda peer: peer.frame(OP_PING, binary_payload(126))),
)
_add(
    "2.6",
    "pings with payloads of 0 to 125 bytes",
    pings(*(binary_payload(n, seed=n) for n in range(126))),
)
_add("2.7", "unsolicited pong without payload", unsolicited_pong(b""))
_add("2.8", "unsolicited pong with a 125-byte payload", unsolicited_pong(b"p" * 125))
_add("2.9", "ten pings in a row", pings(*(b"ping %d" % i for i in range(10))))
_add("2.10", "125-byte ping delivered byte by byte", pings(b"x" * 125, chop=1))
_add(
    "2.11",
    "ten pings in a row, delivered byte by byte",
    pings(*(b"ping %d" % i for i in range(10)), chop=1),
)


def control_between_fragments(
    message: str | bytes, kinds: dict[int, int], *, chop: int | None = None
) -> Run:
    """A case: ``message`` in five fragments with Pings or Pongs between them.

    ``kinds`` maps a fragment index to the opcode of the control frame sent after
    it. After each Ping the case waits for its Pong before sending the next
    fragment: the Pong proves that control frames are handled in the middle of a
    message.
    """

    async def run(side: Side) -> None:
        peer = await side.open()
        opcode, payload = _payload(message)
        step = -(-len(payload) // 5)
        for index in range(5):
            part = payload[index * step : (index + 1) * step]
            frame = peer.frame(opcode if index == 0 else OP_CONT, part, fin=index == 4)
            await _send(peer, frame, chop)
            if index in kinds:
                control = b"between %d" % index
                await _send(peer, peer.frame(kinds[index], control), chop)
                if kinds[index] == OP_PING:
                    await peer.expect_pong(control)
        await peer.expect_message(message)
        await peer.close_normally()

    return run


_add(
    "2.12",
    "pings after the 1st and 4th fragments of a text message",
    control_between_fragments(text_payload(100), {0: OP_PING, 3: OP_PING}),
)
_add(
    "2.13",
    "pings between every fragment of a binary message, byte by byte",
    control_between_fragments(
        binary_payload(50), {i: OP_PING for i in range(4)}, chop=1
    ),
)


# -- 3: reserved bits --------------------------------------------------------------

_RSV_CASES: list[tuple[int, int, bytes, str]] = [
    (1, OP_TEXT, b"reserved", "text"),
    (2, OP_TEXT, b"reserved", "text after a valid message"),
    (3, OP_TEXT, b"reserved", "text after a valid message"),
    (4, OP_TEXT, b"reserved", "text after a valid message, byte by byte"),
    (5, OP_BINARY, binary_payload(10), "binary after a valid message"),
    (6, OP_PING, b"reserved", "ping after a valid message"),
    (7, OP_CLOSE, close_payload(1000), "close after a valid message"),
]
for _rsv, _opcode, _body, _what in _RSV_CASES:
    _add(
        f"3.{_rsv}",
        f"RSV={_rsv} on a {_what}: 1002",
        protocol_error(
            one_frame(_opcode, _body, rsv=_rsv),
            before=("valid",) if _rsv > 1 else (),
            chop=1 if _rsv == 4 else None,
        ),
    )


# -- 4: opcodes ----------------------------------------------------------------------

for _group, _opcodes in ((1, range(3, 8)), (2, range(11, 16))):
    for _n, _opcode in enumerate(_opcodes, 1):
        _add(
            f"4.{_group}.{_n}",
            f"reserved {'data' if _group == 1 else 'control'} opcode {_opcode}: 1002",
            protocol_error(
                one_frame(_opcode, b"reserved" if _opcode % 2 else b""),
                before=("valid",) if _n > 1 else (),
                chop=1 if _n == 5 else None,
            ),
        )


# -- 5: fragmentation --------------------------------------------------------------


def _frames(*specs: tuple[int, bytes, bool]) -> Callable[[RawPeer], bytes]:
    def build(peer: RawPeer) -> bytes:
        return b"".join(peer.frame(op, data, fin=fin) for op, data, fin in specs)

    return build


_add(
    "5.1",
    "fragmented ping: 1002",
    protocol_error(_frames((OP_PING, b"frag", False), (OP_CONT, b"ment", True))),
)
_add(
    "5.2",
    "fragmented pong: 1002",
    protocol_error(_frames((OP_PONG, b"frag", False), (OP_CONT, b"ment", True))),
)
_add("5.3", "text in 2 fragments", echo("fragmented text", fragments=2))
_add(
    "5.4", "text in 2 fragments, byte by byte", echo("fragmented", fragments=2, chop=1)
)
_add(
    "5.5",
    "binary in 2 fragments, byte by byte",
    echo(binary_payload(20), fragments=2, chop=1),
)
_add(
    "5.6",
    "text in 5 fragments with a ping after the 2nd",
    control_between_fragments("fragments and a ping", {1: OP_PING}),
)
_add(
    "5.7",
    "text in 5 fragments with a ping after the 2nd, byte by byte",
    control_between_fragments("fragments and a ping", {1: OP_PING}, chop=1),
)
_add(
    "5.8",
    "text in 5 fragments with pongs between them",
    control_between_fragments("fragments and pongs", {0: OP_PONG, 2: OP_PONG}),
)
_add(
    "5.9",
    "continuation (fin) with nothing to continue: 1002",
    protocol_error(_frames((OP_CONT, b"orphan", True))),
)
_add(
    "5.10",
    "continuation (not fin) with nothing to continue: 1002",
    protocol_error(_frames((OP_CONT, b"orphan", False))),
)
_add(
    "5.11",
    "two orphan continuations after a message, byte by byte: 1002",
    protocol_error(
        _frames((OP_CONT, b"orphan", False), (OP_CONT, b"orphan", True)),
        before=("valid",),
        chop=1,
    ),
)
_add(
    "5.12",
    "text frame inside an unfinished text message: 1002",
    protocol_error(_frames((OP_TEXT, b"first", False), (OP_TEXT, b"second", True))),
)
_add(
    "5.13",
    "text frame inside an unfinished binary message: 1002",
    protocol_error(_frames((OP_BINARY, b"first", False), (OP_TEXT, b"second", True))),
)
_add(
    "5.14",
    "binary start inside an unfinished text message, then fin: 1002",
    protocol_error(
        _frames(
            (OP_TEXT, b"first", False),
            (OP_BINARY, b"second", False),
            (OP_CONT, b"third", True),
        )
    ),
)
_add(
    "5.15",
    "fragmented close: 1002",
    protocol_error(
        _frames((OP_CLOSE, close_payload(1000), False), (OP_CONT, b"", True))
    ),
)


async def _many_fragment_counts(side: Side) -> None:
    peer = await side.open()
    messages: list[str | bytes] = [
        text_payload(40, seed=n) if n % 2 else binary_payload(40, seed=n)
        for n in range(2, 21)
    ]
    for count, message in enumerate(messages, 2):
        await peer.send(fragmented(peer, message, count))
        await peer.expect_message(message)
    await peer.close_normally()


_add("5.16", "messages in 2 to 20 fragments", _many_fragment_counts)
_add(
    "5.17",
    "text message of three empty fragments",
    echo("", fragments=3),
)
_add(
    "5.18", "binary of 256 one-byte fragments", echo(binary_payload(256), fragments=256)
)
_add(
    "5.19",
    "text in 5 fragments, pings after the 1st and 4th, each pong awaited",
    control_between_fragments(text_payload(500), {0: OP_PING, 3: OP_PING}),
)
_add(
    "5.20",
    "as 5.19, byte by byte",
    control_between_fragments(text_payload(50), {0: OP_PING, 3: OP_PING}, chop=1),
)
_add(
    "5.21",
    "two fragmented messages, then an orphan continuation: 1002",
    protocol_error(
        _frames((OP_CONT, b"orphan", True)),
        before=("one", b"two"),
        fragments=3,
    ),
)

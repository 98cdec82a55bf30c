"""Cases 6 and 7: UTF-8 in text messages, and the closing handshake.

6: valid text, whole and split at every byte boundary, must be echoed intact;
invalid UTF-8 (overlong forms, surrogates, code points above U+10FFFF, truncated
sequences, bytes that never occur) must fail the connection with 1007 (RFC 6455
sections 5.6 and 8.1) as soon as the invalid byte arrives: the case sends the
message only up to that byte and waits for the Close. A Close that comes only
after the rest of the message is non-strict.

7: Close frames with every valid code are echoed; invalid codes, a 1-byte payload,
an oversized payload and a reason that isn't UTF-8 fail the connection; nothing
after a Close frame is processed; the server closes TCP first (section 7.1.1).
"""

from __future__ import annotations

import codecs
from typing import TYPE_CHECKING

import anyio

from .cases_framing import echo
from .harness import CLIENT, SERVER, Case
from .peer import (
    OP_BINARY,
    OP_CLOSE,
    OP_CONT,
    OP_PING,
    OP_TEXT,
    CaseFailed,
    Frame,
    RawPeer,
    binary_payload,
    check_message,
    close_payload,
)

if TYPE_CHECKING:
    from collections.abc import Awaitable, Callable

    from .harness import Side

    Run = Callable[[Side], Awaitable[None]]

CASES: list[Case] = []

# How long to wait for a fail-fast Close before sending the rest of the message.
# A strict endpoint answers within milliseconds; this only bounds a non-strict one.
FAIL_FAST_WAIT = 1.0


def _add(id: str, description: str, run: Run, **options: object) -> None:
    CASES.append(Case(id, description, run, **options))  # type: ignore[arg-type]


# -- 6: UTF-8 --------------------------------------------------------------------

VALID_TEXTS = [
    "Hello-µ@ßöäüàá-UTF-8!!",
    "κόσμε",
    "😀 emoji, 𝄞 music, 中文, עברית",
    # The edges of every encoded length, and the code points around surrogates.
    "\x00\x7f\x80\u07ff\u0800\uffff\U00010000\U0010ffff",
    "\ud7ff\ue000\ufffd\ufffe\uffff\U0001fffe",
]

# (name, bytes). The invalid sequence goes between valid text; the truncated ones
# end the message, so that only its end reveals them.
INVALID_SEQUENCES: list[tuple[str, bytes]] = [
    ("overlong '/' in 2 bytes", b"\xc0\xaf"),
    ("overlong U+007F in 2 bytes", b"\xc1\xbf"),
    ("overlong NUL in 2 bytes", b"\xc0\x80"),
    ("overlong '/' in 3 bytes", b"\xe0\x80\xaf"),
    ("overlong U+07FF in 3 bytes", b"\xe0\x9f\xbf"),
    ("overlong '/' in 4 bytes", b"\xf0\x80\x80\xaf"),
    ("overlong U+FFFF in 4 bytes", b"\xf0\x8f\xbf\xbf"),
    ("surrogate U+D800", b"\xed\xa0\x80"),
    ("surrogate U+DBFF", b"\xed\xaf\xbf"),
    ("surrogate U+DC00", b"\xed\xb0\x80"),
    ("surrogate U+DFFF", b"\xed\xbf\xbf"),
    ("surrogate pair U+D800 U+DC00", b"\xed\xa0\x80\xed\xb0\x80"),
    ("U+110000", b"\xf4\x90\x80\x80"),
    ("U+1FFFFF", b"\xf7\xbf\xbf\xbf"),
    ("5-byte form", b"\xf8\x88\x80\x80\x80"),
    ("6-byte form", b"\xfc\x84\x80\x80\x80\x80"),
    ("byte 0xFE", b"\xfe"),
    ("byte 0xFF", b"\xff"),
    ("lone continuation byte 0x80", b"\x80"),
    ("lone continuation byte 0xBF", b"\xbf"),
    ("2-byte start before ASCII", b"\xc2A"),
    ("3-byte start and 1 continuation before ASCII", b"\xe2\x82A"),
    ("truncated 2-byte sequence at the end", b"\xc2"),
    ("truncated 3-byte sequence at the end", b"\xe2\x82"),
    ("truncated 4-byte sequence at the end", b"\xf0\x9f\x98"),
]
PREFIX = "κόσμε ".encode()
SUFFIX = b" edited"


def detection_point(payload: bytes) -> int:
    """How many bytes of ``payload`` it takes to know it isn't valid UTF-8.

    Returns ``len(payload)`` when only the end of the message reveals it (a
    truncated sequence at the end).
    """
    decoder = codecs.getincrementaldecoder("utf-8")()
    for index in range(len(payload)):
        try:
            decoder.decode(payload[index : index + 1], final=False)
        except UnicodeDecodeError:
            return index + 1
    return len(payload)


def invalid_text(parts: list[bytes], *, chop: int | None = None) -> Run:
    """A case: a text message of fragments ``parts`` that isn't valid UTF-8.

    The frames go out up to the byte that makes the text invalid; a Close with
    1007 must come then. Otherwise the rest is sent, and a Close that comes only
    then is non-strict.
    """

    async def run(side: Side) -> None:
        peer = await side.open()
        cut = detection_point(b"".join(parts))
        first: list[bytes] = []  # what to send before waiting
        rest: list[bytes] = []  # the remainder of the message
        mid_frame = False  # whether the wait happens inside a frame
        seen = 0
        for index, part in enumerate(parts):
            fin = index == len(parts) - 1
            frame = peer.frame(OP_TEXT if index == 0 else OP_CONT, part, fin=fin)
            head = len(frame) - len(part)
            if seen + len(part) <= cut:
                first.append(frame)
            elif seen >= cut:
                rest.append(frame)
            else:
                first.append(frame[: head + cut - seen])
                rest.append(frame[head + cut - seen :])
                mid_frame = True
            seen += len(part)
        data = b"".join(first)
        if chop is None:
            await peer.send(data)
        else:
            await peer.send_chopped(data, chop)
        answered = not rest
        if rest:
            # Only a safety net: a strict anyws has answered long before.
            with anyio.move_on_after(FAIL_FAST_WAIT):
                await peer.wait_data()
                answered = True
        if not answered:
            peer.non_strict("failed invalid UTF-8 only after more of the message came")
            await peer.send(b"".join(rest))
            mid_frame = False
        await peer.expect_close((1007,), reply=not mid_frame)

    return run


def _valid_split_everywhere(side_text: str) -> Run:
    async def run(side: Side) -> None:
        peer = await side.open()
        payload = side_text.encode()
        for cut in range(1, len(payload)):
            await peer.send(
                peer.frame(OP_TEXT, payload[:cut], fin=False)
                + peer.frame(OP_CONT, payload[cut:])
            )
            await peer.expect_message(side_text)
        await peer.close_normally()

    return run


_add("6.1.1", "empty text message", echo(""))
_add("6.1.2", "text message of three empty fragments", echo("", fragments=3))
_add("6.1.3", "empty fragments around a text", echo("middle", fragments=3))
for _n, _text in enumerate(VALID_TEXTS, 1):
    _size = len(_text.encode())
    _add(f"6.2.{_n}.1", f"valid UTF-8 ({_size} bytes) whole", echo(_text))
    _add(
        f"6.2.{_n}.2",
        f"valid UTF-8 ({_size} bytes) split in 2 fragments at every byte",
        _valid_split_everywhere(_text),
    )
    _add(
        f"6.2.{_n}.3",
        f"valid UTF-8 ({_size} bytes) one byte per fragment",
        echo(_text, fragments=_size),
    )
    _add(
        f"6.2.{_n}.4",
        f"valid UTF-8 ({_size} bytes) delivered byte by byte",
        echo(_text, chop=1),
    )

for _n, (_name, _seq) in enumerate(INVALID_SEQUENCES, 1):
    _suffix = b"" if "truncated" in _name else SUFFIX
    _add(
        f"6.3.{_n}",
        f"{_name}, in one frame: 1007 at the invalid byte",
        invalid_text([PREFIX + _seq + _suffix]),
    )
    _add(
        f"6.4.{_n}",
        f"{_name}, starting the 2nd fragment: 1007 at the invalid byte",
        invalid_text([PREFIX, _seq + _suffix]),
    )
    if len(_seq) > 1:
        _add(
            f"6.5.{_n}",
            f"{_name}, split across 2 fragments: 1007 at the invalid byte",
            invalid_text([PREFIX + _seq[:1], _seq[1:] + _suffix]),
        )
    if _n % 3 == 1:
        _add(
            f"6.6.{_n}",
            f"{_name}, delivered byte by byte: 1007 at the invalid byte",
            invalid_text([PREFIX + _seq + _suffix], chop=1),
        )
        _add(
            f"6.7.{_n}",
            f"{_name}, one byte per fragment: 1007 at the invalid byte",
            invalid_text([bytes([b]) for b in PREFIX + _seq + _suffix]),
        )


# -- 7: close ----------------------------------------------------------------------


def close_after(*frames: Callable[[RawPeer], bytes]) -> Run:
    """A case: a Close 1000 then ``frames``: the Close is echoed, the rest ignored."""

    async def run(side: Side) -> None:
        peer = await side.open()
        data = peer.frame(OP_CLOSE, close_payload(1000))
        for build in frames:
            data += build(peer)
        await peer.send(data)
        await peer.expect_close((1000,), reply=False)

    return run


def close_with(payload: bytes, expected: tuple[int | None, ...]) -> Run:
    """A case: a Close with ``payload``, answered with one of ``expected``."""

    async def run(side: Side) -> None:
        peer = await side.open()
        await peer.send_frame(OP_CLOSE, payload)
        await peer.expect_close(expected, reply=False)

    return run


def echoed_close(code: int, reason: bytes = b"reason") -> Run:
    """A case: a Close with a valid ``code``; anyws echoes it (section 5.5.1)."""

    async def run(side: Side) -> None:
        peer = await side.open()
        await peer.close_normally(code, reason)

    return run


def _text_frame(message: bytes) -> Callable[[RawPeer], bytes]:
    return lambda peer: peer.frame(OP_TEXT, message)


async def _message_then_close(side: Side) -> None:
    peer = await side.open()
    await peer.send_frame(OP_TEXT, b"before close")
    await peer.expect_message("before close")
    await peer.close_normally()


async def _unfinished_message_then_close(side: Side) -> None:
    # A Close may come between fragments; the unfinished message is dropped.
    peer = await side.open()
    await peer.send(
        peer.frame(OP_TEXT, b"never", fin=False)
        + peer.frame(OP_CLOSE, close_payload(1000))
        + peer.frame(OP_CONT, b" finished")
    )
    await peer.expect_close((1000,), reply=False)


async def _big_messages_then_close(side: Side) -> None:
    # As in the Autobahn Testsuite, the outcome is implementation-defined: the
    # Close may be handled before the echoes are written, and then they are not.
    # Whatever is echoed must be intact, and the Close must be answered.
    peer = await side.open()
    messages = [binary_payload(65536, seed=n) for n in range(8)]
    data = b"".join(peer.frame(OP_BINARY, m) for m in messages)
    await peer.send(data + peer.frame(OP_CLOSE, close_payload(1000)))
    for message in messages:
        got = await peer.read_message()
        if isinstance(got, Frame) and got.opcode == OP_CLOSE:
            await peer.expect_close((1000,), reply=False, frame=got)
            return
        check_message(got, message)
    await peer.expect_close((1000,), reply=False)


async def _server_closes_tcp(side: Side) -> None:
    # Section 7.1.1: the server closes TCP first, without waiting for the client.
    peer = await side.open()
    await peer.send_frame(OP_CLOSE, close_payload(1000))
    await peer.expect_close((1000,), reply=False)


async def _client_closes_tcp_after_server(side: Side) -> None:
    # The raw server keeps TCP open after the closing handshake: the client closes
    # it after close_timeout (section 7.1.1 lets it when the server doesn't).
    peer = await side.open()
    await peer.send_frame(OP_CLOSE, close_payload(1000))
    frame = await peer.read_frame()
    if frame is None or frame.close_code != 1000:
        raise CaseFailed(f"expected the close echo, got {frame}")
    await peer.expect_eof()


_add("7.1.1", "message, then a normal closing handshake", _message_then_close)
_add(
    "7.1.2",
    "two close frames: only the first is echoed",
    close_after(lambda peer: peer.frame(OP_CLOSE, close_payload(1000))),
)
_add(
    "7.1.3",
    "ping after a close frame is ignored",
    close_after(lambda peer: peer.frame(OP_PING, b"ignored")),
)
_add(
    "7.1.4", "text after a close frame is ignored", close_after(_text_frame(b"ignored"))
)
_add("7.1.5", "close frame between fragments", _unfinished_message_then_close)
_add("7.1.6", "eight 64 KiB messages, then a close", _big_messages_then_close)
_add(
    "7.2.1",
    "close without payload: answered without code",
    close_with(b"", (None, 1000)),
)
_add("7.3.1", "close with a 1-byte payload: 1002", close_with(b"\x03", (1002,)))
_add("7.3.2", "close with a 123-byte reason", echoed_close(1000, b"r" * 123))
_add(
    "7.3.3",
    "close with a 124-byte reason (payload 126): 1002",
    close_with(close_payload(1000, b"r" * 124), (1002,)),
)
_add("7.3.4", "close with a UTF-8 reason", echoed_close(1000, "κόσμε 😀".encode()))
_add(
    "7.5.1",
    "close reason that isn't UTF-8: 1007 (or 1002)",
    close_with(close_payload(1000, PREFIX + b"\xed\xa0\x80" + SUFFIX), (1007, 1002)),
)

# RFC 6455 section 7.4.1, and 1012-1014 from the IANA registry (section 11.7).
VALID_CODES = [1000, 1001, 1002, 1003, 1007, 1008, 1009, 1010, 1011, 1012, 1013]
VALID_CODES += [1014, 3000, 3999, 4000, 4999]
INVALID_CODES = [0, 999, 1004, 1005, 1006, 1015, 1016, 1100, 2000, 2999, 5000, 65535]
for _n, _code in enumerate(VALID_CODES, 1):
    _add(f"7.7.{_n}", f"close code {_code} is echoed", echoed_close(_code))
for _n, _code in enumerate(INVALID_CODES, 1):
    _add(
        f"7.9.{_n}",
        f"invalid close code {_code}: 1002",
        close_with(close_payload(_code), (1002,)),
    )
_add(
    "7.13.1",
    "the server closes TCP after the closing handshake",
    _server_closes_tcp,
    sides=SERVER,
)
_add(
    "7.13.2",
    "the client closes TCP if the server doesn't",
    _client_closes_tcp_after_server,
    sides=CLIENT,
    close_timeout=0.2,
)

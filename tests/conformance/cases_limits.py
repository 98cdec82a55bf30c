"""Case 9: limits. Large messages in one frame and in fragments, and ``max_size``.

The anyws endpoint runs with ``max_size`` of 16 MiB, so that every message up to
16 MiB is echoed; the time each case takes is reported, never asserted. Messages
over ``max_size`` must fail the connection with 1009 (RFC 6455 section 7.4.1); a
frame whose header announces too much is refused before its payload arrives.
"""

from __future__ import annotations

from typing import TYPE_CHECKING

from .harness import Case
from .peer import OP_BINARY, OP_CONT, OP_TEXT, binary_payload, text_payload

if TYPE_CHECKING:
    from collections.abc import Awaitable, Callable

    from .harness import Side

    Run = Callable[[Side], Awaitable[None]]

CASES: list[Case] = []

KiB = 1024
MiB = 1024 * KiB
LIMIT = 16 * MiB


def _add(id: str, description: str, run: Run, **options: object) -> None:
    options.setdefault("max_size", LIMIT)
    options.setdefault("timeout", 120.0)
    CASES.append(Case(id, description, run, **options))  # type: ignore[arg-type]


def _human(size: int) -> str:
    return f"{size // MiB} MiB" if size >= MiB else f"{size // KiB} KiB"


def big_echo(
    size: int, *, text: bool, fragment: int | None = None, chop: int | None = None
) -> Run:
    """A case: one message of ``size`` bytes, in fragments of ``fragment`` bytes."""

    async def run(side: Side) -> None:
        peer = await side.open()
        message: str | bytes = text_payload(size) if text else binary_payload(size)
        payload = message.encode() if isinstance(message, str) else message
        step = fragment or size
        opcode = OP_TEXT if text else OP_BINARY
        frames = [
            peer.frame(
                OP_CONT if start else opcode,
                payload[start : start + step],
                fin=start + step >= size,
            )
            for start in range(0, size, step)
        ]
        data = b"".join(frames)
        if chop is None:
            await peer.send(data)
        else:
            await peer.send_chopped(data, chop)
        await peer.expect_message(message)
        await peer.close_normally()

    return run


def many_echoes(count: int, *, text: bool) -> Run:
    """A case: ``count`` small messages in one write, each echoed in order."""

    async def run(side: Side) -> None:
        peer = await side.open()
        messages: list[str | bytes] = [
            text_payload(64, seed=n) if text else binary_payload(64, seed=n)
            for n in range(count)
        ]
        await peer.send(
            b"".join(
                peer.frame(OP_TEXT, m.encode())
                if isinstance(m, str)
                else peer.frame(OP_BINARY, m)
                for m in messages
            )
        )
        for message in messages:
            await peer.expect_message(message)
        await peer.close_normally()

    return run


def too_big(*, fragments: int, announce_only: bool) -> Run:
    """A case: a message one byte over ``max_size`` (1 MiB here) fails with 1009.

    With ``announce_only``, only the frame header and a few payload bytes go out:
    the header is enough to know, and a strict endpoint answers at once.
    """

    async def run(side: Side) -> None:
        peer = await side.open()
        size = MiB + 1
        payload = binary_payload(size)
        if announce_only:
            frame = peer.frame(OP_BINARY, payload)
            await peer.send(frame[: len(frame) - size + 16])
            await peer.expect_close((1009,), reply=False)
            return
        step = -(-size // fragments)
        data = b"".join(
            peer.frame(
                OP_CONT if start else OP_BINARY,
                payload[start : start + step],
                fin=start + step >= size,
            )
            for start in range(0, size, step)
        )
        await peer.send(data)
        await peer.expect_close((1009,))

    return run


ONE_FRAME = [64 * KiB, 256 * KiB, MiB, 4 * MiB, 8 * MiB, 16 * MiB]
FRAGMENTS = [KiB, 4 * KiB, 16 * KiB, 64 * KiB, 256 * KiB, MiB, 4 * MiB]
# In the test suite, cases moving this much run on one backend only.
BIG = 4 * MiB

for _group, _text in ((1, True), (2, False)):
    _kind = "text" if _text else "binary"
    for _n, _size in enumerate(ONE_FRAME, 1):
        _add(
            f"9.{_group}.{_n}",
            f"{_kind} message of {_human(_size)} in one frame",
            big_echo(_size, text=_text),
            big=_size >= BIG,
        )
for _group, _text in ((3, True), (4, False)):
    _kind = "text" if _text else "binary"
    for _n, _fragment in enumerate(FRAGMENTS, 1):
        _add(
            f"9.{_group}.{_n}",
            f"{_kind} message of 4 MiB in fragments of {_human(_fragment)}",
            big_echo(4 * MiB, text=_text, fragment=_fragment),
            big=True,
        )
for _group, _text in ((5, True), (6, False)):
    _kind = "text" if _text else "binary"
    for _n, _chop in enumerate([1024, 8192, 65536], 1):
        _add(
            f"9.{_group}.{_n}",
            f"{_kind} message of 1 MiB in chops of {_chop} bytes",
            big_echo(MiB, text=_text, chop=_chop),
        )
_add(
    "9.7.1", "1000 text messages of 64 bytes in one write", many_echoes(1000, text=True)
)
_add(
    "9.8.1",
    "1000 binary messages of 64 bytes in one write",
    many_echoes(1000, text=False),
)
_add(
    "9.9.1",
    "a frame announcing max_size + 1 bytes: 1009 before its payload",
    too_big(fragments=1, announce_only=True),
    max_size=MiB,
)
_add(
    "9.9.2",
    "a message of max_size + 1 bytes in one frame: 1009",
    too_big(fragments=1, announce_only=False),
    max_size=MiB,
)
_add(
    "9.9.3",
    "a message of max_size + 1 bytes in 17 fragments: 1009",
    too_big(fragments=17, announce_only=False),
    max_size=MiB,
)
_add(
    "9.9.4",
    "a message of exactly max_size bytes is accepted",
    big_echo(MiB, text=False, fragment=100_000),
    max_size=MiB,
)

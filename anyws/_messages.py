"""Assembling received frames into messages, with backpressure.

The reader task puts every data fragment it receives here; ``recv()`` and
``recv_streaming()`` take them out. Three rules:

* A message leaves the queue only in one synchronous step, after every await, so a
  cancelled ``recv()`` loses nothing: the message stays for the next call.
* When ``max_queue`` complete messages wait unread, :attr:`Assembler.paused` becomes
  true and the reader stops reading the socket until the application catches up: TCP
  flow control then slows the peer down. Reading resumes as soon as fewer than
  ``max_queue`` messages wait.
* After the connection ends, the messages already complete are still delivered; only
  then does receiving raise.

Fragments are kept in a list and joined once, so reassembly is linear in the size of
the message.
"""

from __future__ import annotations

from collections import deque
from typing import TYPE_CHECKING, Protocol

import anyio

from .exceptions import ConcurrencyError

if TYPE_CHECKING:
    from collections.abc import Callable


class Waiter(Protocol):
    """What a receiving task waits on: :class:`anyio.Event`, or a lighter
    equivalent with the same methods."""

    def set(self) -> None: ...

    async def wait(self) -> None: ...


_NO_FRAMES: deque[tuple[str | bytes, bool]] = deque(maxlen=0)


class Assembler:
    """A queue of received fragments, read one message at a time.

    Args:
        max_queue: complete messages waiting before :attr:`paused` turns true;
            ``None`` for no limit.
        new_waiter: what makes the object a receiving task waits on;
            :class:`anyio.Event` by default.
    """

    def __init__(
        self, max_queue: int | None, new_waiter: Callable[[], Waiter] = anyio.Event
    ) -> None:
        self.max_queue = max_queue
        # Made on the first fragment: an idle connection never needs it.
        self._frames = _NO_FRAMES
        self._complete = 0  # complete messages in _frames
        self._new_waiter = new_waiter
        self._wakeup: Waiter | None = None  # set on a new frame or on close
        self._resume: anyio.Event | None = None  # set when the reader may read again
        self._busy = False  # a task is receiving
        self.closed = False
        self.on_resume: Callable[[], object] | None = None
        """Called when :attr:`paused` became false (for a direct reader)."""

    # -- the reader's side ----------------------------------------------------

    def put(self, data: str | bytes, fin: bool) -> None:
        """Queue one fragment; ``fin`` marks the last one of its message."""
        if self._frames is _NO_FRAMES:
            self._frames = deque()
        self._frames.append((data, fin))
        if fin:
            self._complete += 1
        if self._wakeup is not None:
            self._wakeup.set()
            self._wakeup = None

    @property
    def paused(self) -> bool:
        """Whether the reader should stop reading until messages are consumed."""
        return self.max_queue is not None and self._complete >= self.max_queue

    async def wait_resume(self) -> None:
        """Wait until :attr:`paused` is false."""
        while self.paused:
            self._resume = anyio.Event()
            await self._resume.wait()

    def stop_pausing(self) -> None:
        """Never pause again (the connection is closing)."""
        self.max_queue = None
        self._resumed()

    def close(self) -> None:
        """No more fragments will arrive; wake whoever waits."""
        self.closed = True
        if self._wakeup is not None:
            self._wakeup.set()
            self._wakeup = None
        self.stop_pausing()

    def _resumed(self) -> None:
        if self.paused:
            return
        if self._resume is not None:
            self._resume.set()
            self._resume = None
        if self.on_resume is not None:
            self.on_resume()

    # -- the application's side -------------------------------------------------

    async def _wait(self) -> None:
        self._wakeup = event = self._new_waiter()
        try:
            await event.wait()
        finally:
            if self._wakeup is event:
                self._wakeup = None

    async def get(self, decode: bool | None = None) -> str | bytes:
        """Return the next complete message.

        Raises:
            EOFError: the connection ended and no complete message is left.
            ConcurrencyError: another task is receiving.
        """
        if self._busy:
            raise ConcurrencyError(
                "cannot call recv while another task is already receiving a message"
            )
        self._busy = True
        try:
            while not self._complete:
                if self.closed:
                    raise EOFError("no more messages")
                await self._wait()
            frames = self._frames
            data, fin = frames.popleft()
            if not fin:
                parts = [data]
                while not fin:
                    data, fin = frames.popleft()
                    parts.append(data)
                data = "".join(parts) if type(data) is str else b"".join(parts)  # type: ignore[arg-type]
            self._complete -= 1
            if self._complete + 1 == self.max_queue:
                self._resumed()  # no longer paused
        finally:
            self._busy = False
        if decode is None:
            return data
        return _convert(data, decode)

    async def get_fragment(
        self, decode: bool | None = None
    ) -> tuple[str | bytes, bool]:
        """Return the next fragment and whether it ends its message.

        Raises:
            EOFError: the connection ended and no fragment is left.
            ConcurrencyError: another task is receiving.
        """
        if self._busy:
            raise ConcurrencyError(
                "cannot call recv_streaming while another task is already receiving"
            )
        self._busy = True
        try:
            while not self._frames:
                if self.closed:
                    raise EOFError("no more fragments")
                await self._wait()
            data, fin = self._frames.popleft()
            if fin:
                self._complete -= 1
                if self._complete + 1 == self.max_queue:
                    self._resumed()  # no longer paused
        finally:
            self._busy = False
        return (data if decode is None else _convert(data, decode)), fin

    @property
    def receiving(self) -> bool:
        """Whether a task is receiving right now."""
        return self._busy

    def discard_incomplete(self) -> None:
        """Drop the fragments of a message that will never be completed."""
        while self._frames and not self._frames[-1][1]:
            self._frames.pop()


def _convert(data: str | bytes, decode: bool) -> str | bytes:
    if isinstance(data, str):
        return data if decode else data.encode()
    return data.decode() if decode else data

"""A leaner byte stream for TCP connections on asyncio (and uvloop).

AnyIO's asyncio socket stream pauses reading between ``receive()`` calls and resumes
it on the next one: two changes to the event loop's selector for every chunk read.
It also checkpoints on every call, even when data is waiting. For a WebSocket
connection that reads small messages one at a time, that is most of its cost.

:func:`lean_stream` takes over the asyncio transport of such a stream and returns a
:class:`AsyncioSocketStream`, an :class:`anyio.abc.SocketStream` with these rules:

* the transport keeps reading while fewer than :data:`HIGH_WATER` bytes wait unread,
  and pauses beyond that, so the peer still feels backpressure;
* ``receive()`` returns at once, without a checkpoint, when data is waiting. It can
  never starve the loop: data only arrives while the loop runs, so the buffer empties
  before long and the next ``receive()`` waits;
* ``send()`` hands the bytes to the transport and waits only while the transport's
  write buffer is above its high-water mark. A cancelled ``send()`` therefore never
  leaves part of its data unwritten: it is all in the transport's buffer.

It also offers a direct path, which :class:`~anyws._connection.Connection` uses when
the stream has it: :meth:`AsyncioSocketStream.push_to` delivers received bytes to a
callback as the transport reads them, without waking a reader task for each chunk,
and :meth:`AsyncioSocketStream.send_nowait` writes a whole frame at once (a Pong,
say) from inside that callback.

Any other stream (trio, TLS, Unix sockets, memory streams) is returned unchanged.
This module is the only place in anyws that knows about asyncio.
"""

from __future__ import annotations

import asyncio
import threading
from collections import deque
from typing import TYPE_CHECKING, cast

import anyio
from anyio.abc import ByteStream, SocketStream

if TYPE_CHECKING:
    import socket
    from collections.abc import Callable

__all__ = ["AsyncioSocketStream", "lean_stream"]

HIGH_WATER = 2**20
"""Bytes buffered unread before the transport stops reading."""
LOW_WATER = 2**18
"""Bytes buffered unread below which a paused transport reads again."""


READ_SIZE = 2**18
"""The most bytes one read takes from the socket."""

_buffers = threading.local()


def _read_buffer() -> memoryview:
    # The transport reads into a buffer shared by every connection of the thread
    # (and so of its event loop), and the bytes read are copied out at once. Letting
    # the socket allocate a fresh 256 KiB buffer for every read instead costs a
    # mapping and page faults each time with glibc, once messages are large.
    try:
        view: memoryview = _buffers.view
    except AttributeError:
        view = _buffers.view = memoryview(bytearray(READ_SIZE))
    return view


class _Protocol(asyncio.BufferedProtocol):
    """Buffers what the transport delivers and wakes the stream's waiters."""

    def __init__(self, loop: asyncio.AbstractEventLoop) -> None:
        self.loop = loop
        self.transport: asyncio.Transport | None = None
        self.buffer: deque[bytes] = deque()
        self.buffered = 0
        self.eof = False
        self.lost = False
        self.exception: BaseException | None = None
        self.reading_paused = False
        self.writing_paused = False
        self.read_waiter: asyncio.Future[None] | None = None
        self.drain_waiter: asyncio.Future[None] | None = None
        self.push: Callable[[bytes], bool] | None = None
        self.push_waiter: asyncio.Future[None] | None = None

    def _wake_reader(self) -> None:
        waiter = self.read_waiter
        if waiter is not None:
            self.read_waiter = None
            if not waiter.done():
                waiter.set_result(None)

    def _wake_writer(self) -> None:
        waiter = self.drain_waiter
        if waiter is not None:
            self.drain_waiter = None
            if not waiter.done():
                waiter.set_result(None)

    def get_buffer(self, sizehint: int) -> memoryview:
        return _read_buffer()

    def buffer_updated(self, nbytes: int) -> None:
        self.data_received(bytes(_read_buffer()[:nbytes]))

    def data_received(self, data: bytes) -> None:
        push = self.push
        if push is not None:
            try:
                more = push(data)
            except BaseException as exc:  # surfaces in push_to()
                self._stop_push(exc)
                return
            if not more:
                self._stop_push(None)
            return
        self.buffer.append(data)
        self.buffered += len(data)
        if self.buffered > HIGH_WATER and not self.reading_paused:
            assert self.transport is not None
            self.reading_paused = True
            self.transport.pause_reading()
        self._wake_reader()

    def eof_received(self) -> bool:
        self.eof = True
        self._wake_reader()
        self._stop_push(None)
        return True  # keep the transport open for writing (half-close)

    def connection_lost(self, exc: Exception | None) -> None:
        self.lost = True
        if exc is not None:
            self.exception = exc
        self._wake_reader()
        self._wake_writer()
        self._stop_push(None)

    def _stop_push(self, exc: BaseException | None) -> None:
        self.push = None
        waiter = self.push_waiter
        if waiter is not None:
            self.push_waiter = None
            if not waiter.done():
                if exc is None:
                    waiter.set_result(None)
                else:
                    waiter.set_exception(exc)

    def pause_writing(self) -> None:
        self.writing_paused = True

    def resume_writing(self) -> None:
        self.writing_paused = False
        self._wake_writer()


class AsyncioSocketStream(SocketStream):
    """A TCP stream over an asyncio transport; see the module documentation."""

    def __init__(self, transport: asyncio.Transport, protocol: _Protocol) -> None:
        self._transport = transport
        self._protocol = protocol
        self._closed = False

    @property
    def _raw_socket(self) -> socket.socket:
        return cast("socket.socket", self._transport.get_extra_info("socket"))

    async def receive(self, max_bytes: int = 65536) -> bytes:
        protocol = self._protocol
        if not protocol.buffer:
            if self._closed:
                raise anyio.ClosedResourceError
            if protocol.eof or protocol.lost:
                return self._no_data()
            if protocol.read_waiter is not None:
                raise anyio.BusyResourceError("reading from")
            protocol.read_waiter = waiter = protocol.loop.create_future()
            try:
                await waiter
            finally:
                protocol.read_waiter = None
            if not protocol.buffer:
                if self._closed:
                    raise anyio.ClosedResourceError
                return self._no_data()
        buffer = protocol.buffer
        data = buffer.popleft() if len(buffer) == 1 else b"".join(buffer)
        buffer.clear()
        if len(data) > max_bytes:
            buffer.append(data[max_bytes:])
            data = data[:max_bytes]
        protocol.buffered = len(buffer[0]) if buffer else 0
        if protocol.reading_paused and protocol.buffered < LOW_WATER:
            protocol.reading_paused = False
            self._transport.resume_reading()
        return data

    async def push_to(self, callback: Callable[[bytes], bool]) -> None:
        """Deliver received bytes to ``callback`` until it returns false.

        The callback runs inside the event loop's read handler; it must not block.
        Returns when the callback returned false, or at end of stream or when the
        connection is lost (then :meth:`receive` tells which); an exception the
        callback raised propagates from here. Bytes already buffered are delivered
        first.
        """
        protocol = self._protocol
        while protocol.buffer:
            data = protocol.buffer.popleft()
            protocol.buffered -= len(data)
            if not callback(data):
                return
        if protocol.eof or protocol.lost or self._closed:
            return
        protocol.push = callback
        protocol.push_waiter = waiter = protocol.loop.create_future()
        try:
            await waiter
        finally:
            protocol.push = None
            protocol.push_waiter = None

    def pause_reading(self) -> None:
        """Stop reading the socket (backpressure while in :meth:`push_to`)."""
        if not self._protocol.reading_paused and not self._transport.is_closing():
            self._protocol.reading_paused = True
            self._transport.pause_reading()

    def resume_reading(self) -> None:
        """Read the socket again after :meth:`pause_reading`."""
        if self._protocol.reading_paused and not self._transport.is_closing():
            self._protocol.reading_paused = False
            self._transport.resume_reading()

    @property
    def writing_paused(self) -> bool:
        """Whether the write buffer is above its high-water mark."""
        return self._protocol.writing_paused

    def send_nowait(self, data: bytes) -> None:
        """Write ``data`` at once, whatever the write buffer holds.

        For small control frames only: the write buffer may exceed its high-water
        mark by that much.
        """
        if not self._closed and not self._transport.is_closing():
            self._transport.write(data)

    def _no_data(self) -> bytes:
        exception = self._protocol.exception
        if exception is not None:
            raise anyio.BrokenResourceError from exception
        raise anyio.EndOfStream

    async def send(self, item: bytes) -> None:
        protocol = self._protocol
        if self._closed:
            raise anyio.ClosedResourceError
        if protocol.lost or self._transport.is_closing():
            raise anyio.BrokenResourceError from protocol.exception
        self._transport.write(item)
        if protocol.writing_paused:
            protocol.drain_waiter = waiter = protocol.loop.create_future()
            try:
                await waiter
            finally:
                protocol.drain_waiter = None

    async def send_eof(self) -> None:
        if self._transport.can_write_eof() and not self._transport.is_closing():
            self._transport.write_eof()

    async def aclose(self) -> None:
        if self._closed:
            return
        self._closed = True
        self._protocol._wake_reader()
        if self._transport.is_closing():
            return
        if self._transport.get_write_buffer_size():
            # Data the peer doesn't read would keep the socket open indefinitely.
            self._transport.abort()
            return
        try:
            self._transport.close()
        except RuntimeError:  # pragma: no cover - the loop is closing
            self._transport.abort()


def lean_stream(stream: ByteStream) -> ByteStream:
    """Return a leaner equivalent of ``stream`` on asyncio; ``stream`` otherwise."""
    cls = type(stream)
    if cls.__name__ != "SocketStream" or cls.__module__ != "anyio._backends._asyncio":
        return stream
    try:
        transport: asyncio.Transport = stream._transport  # type: ignore[attr-defined]
        old = stream._protocol  # type: ignore[attr-defined]
        read_queue: deque[bytes] = old.read_queue
        at_eof: bool = old.is_at_eof
        old_exception: BaseException | None = old.exception
    except AttributeError:  # pragma: no cover - another anyio version
        return stream
    if transport.is_closing():
        return stream
    protocol = _Protocol(asyncio.get_running_loop())
    protocol.transport = transport
    protocol.buffer.extend(read_queue)
    protocol.buffered = sum(map(len, read_queue))
    protocol.eof = at_eof
    protocol.exception = old_exception
    read_queue.clear()
    transport.set_protocol(protocol)
    transport.set_write_buffer_limits()  # anyio sets 0; use asyncio's defaults
    transport.resume_reading()
    return AsyncioSocketStream(transport, protocol)

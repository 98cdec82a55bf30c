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
the stream has it: after :meth:`AsyncioSocketStream.start_direct`, received bytes,
the end of the stream and the end of write backpressure go straight to a
:class:`DirectReader`'s methods, inside the transport's callbacks, with no task
waiting to read; :meth:`AsyncioSocketStream.send_nowait` writes a whole frame at once
(a Pong, say) from there, and :meth:`AsyncioSocketStream.call_at` schedules a
callback (a keepalive deadline).

Any other stream (trio, TLS, Unix sockets, memory streams) is returned unchanged.
This module is the only place in anyws that knows about asyncio.
"""

from __future__ import annotations

import asyncio
import threading
from collections import deque
from typing import TYPE_CHECKING, Any, Protocol, cast

import anyio
from anyio.abc import ByteStream, SocketStream
from anyio.streams.tls import TLSAttribute

if TYPE_CHECKING:
    import socket
    import ssl
    from collections.abc import Awaitable, Callable, Mapping

__all__ = [
    "Acceptor",
    "AsyncioSocketStream",
    "DirectReader",
    "Timer",
    "accept_waiting",
    "lean_stream",
    "socket_wrapper",
]

HIGH_WATER = 2**20
"""Bytes buffered unread before the transport stops reading."""
LOW_WATER = 2**18
"""Bytes buffered unread below which a paused transport reads again."""


READ_SIZE = 2**18
"""The most bytes one read takes from the socket."""

IN_PLACE = 2**15
"""Reads from this size on reach a direct reader as views of the read buffer."""

Timer = asyncio.TimerHandle
"""What :meth:`AsyncioSocketStream.call_at` returns: ``cancel()`` and ``when()``."""

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


class DirectReader(Protocol):
    """What :meth:`AsyncioSocketStream.start_direct` delivers to.

    Its methods run inside the event loop's callbacks: they must not block, and they
    may not use anything that needs a running task.
    """

    def data_received(self, data: bytes | memoryview) -> None:
        """Bytes arrived: :class:`bytes`, or for large reads a view of the read
        buffer, valid only until this returns."""

    def stream_ended(self, exception: BaseException | None) -> None:
        """The peer closed its side, or the connection was lost (``exception``)."""

    def writing_resumed(self) -> None:
        """The write buffer went back below its low-water mark."""


class _Protocol(asyncio.BufferedProtocol):
    """Buffers what the transport delivers, or hands it to a direct reader."""

    __slots__ = (
        "buffer",
        "buffered",
        "drain_waiter",
        "eof",
        "exception",
        "lost",
        "loop",
        "read_waiter",
        "reader",
        "reading_paused",
        "tls",
        "transport",
        "writing_paused",
    )

    def __init__(self, loop: asyncio.AbstractEventLoop) -> None:
        self.loop = loop
        self.transport: asyncio.Transport | None = None
        # Bytes not read yet; made when some arrive while nobody reads directly.
        self.buffer: deque[bytes] | None = None
        self.buffered = 0
        self.eof = False
        self.lost = False
        self.exception: BaseException | None = None
        self.reading_paused = False
        self.writing_paused = False
        self.read_waiter: asyncio.Future[None] | None = None
        self.drain_waiter: asyncio.Future[None] | None = None
        self.reader: DirectReader | None = None
        self.tls = False  # over the event loop's TLS, which can't half-close

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

    def connection_made(self, transport: asyncio.BaseTransport) -> None:
        self.transport = cast("asyncio.Transport", transport)

    def get_buffer(self, sizehint: int) -> memoryview:
        return _read_buffer()

    def buffer_updated(self, nbytes: int) -> None:
        reader = self.reader
        if reader is not None and nbytes >= IN_PLACE:
            # Large reads are parsed in place: the payloads are copied out anyway,
            # and a copy of the whole read would cost as much again.
            reader.data_received(_read_buffer()[:nbytes])
            return
        self.data_received(bytes(_read_buffer()[:nbytes]))

    def data_received(self, data: bytes) -> None:
        reader = self.reader
        if reader is not None:
            reader.data_received(data)
            return
        if self.buffer is None:
            self.buffer = deque()
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
        reader = self.reader
        if reader is not None:
            self.reader = None
            reader.stream_ended(None)
        # Keep the transport open for writing (half-close), which TLS can't.
        return not self.tls

    def connection_lost(self, exc: Exception | None) -> None:
        self.lost = True
        if exc is not None:
            self.exception = exc
        self._wake_reader()
        self._wake_writer()
        reader = self.reader
        if reader is not None:
            self.reader = None
            reader.stream_ended(exc)

    def pause_writing(self) -> None:
        self.writing_paused = True

    def resume_writing(self) -> None:
        self.writing_paused = False
        self._wake_writer()
        if self.reader is not None:
            self.reader.writing_resumed()


class FutureEvent:
    """:class:`anyio.Event`'s ``set()`` and ``wait()`` over an asyncio future.

    A fraction of an :class:`anyio.Event`'s memory and cost, for what a connection
    waits on most: the next message. Unlike :class:`anyio.Event`, ``wait()`` does not
    checkpoint when the event is set already.
    """

    __slots__ = ("_future",)

    def __init__(self, loop: asyncio.AbstractEventLoop) -> None:
        self._future: asyncio.Future[None] = loop.create_future()

    def set(self) -> None:
        if not self._future.done():
            self._future.set_result(None)

    async def wait(self) -> None:
        await self._future


class AsyncioSocketStream(SocketStream):
    """A TCP stream over an asyncio transport; see the module documentation."""

    def __init__(self, transport: asyncio.Transport, protocol: _Protocol) -> None:
        self._transport = transport
        self._protocol = protocol
        self._closed = False

    @property
    def _raw_socket(self) -> socket.socket:
        return cast("socket.socket", self._transport.get_extra_info("socket"))

    @property
    def extra_attributes(self) -> Mapping[Any, Callable[[], Any]]:
        attributes = super().extra_attributes
        ssl_object = self._transport.get_extra_info("ssl_object")
        if ssl_object is None:
            return attributes
        return {**attributes, **_tls_attributes(ssl_object)}

    @property
    def tls(self) -> bool:
        """Whether the event loop's TLS runs under this stream."""
        return self._protocol.tls

    async def start_tls(
        self,
        context: ssl.SSLContext,
        *,
        server_side: bool,
        server_hostname: str | None = None,
    ) -> bool:
        """Switch this stream to TLS, with the event loop's own implementation.

        Returns false, having done nothing, when that can't be done: when bytes
        were received already (they may belong to the TLS handshake), or the
        event loop can't start TLS on this transport. Raises what the TLS
        handshake raises (:exc:`ssl.SSLError`, :exc:`OSError`).
        """
        protocol = self._protocol
        if (
            protocol.buffer
            or protocol.eof
            or protocol.lost
            or protocol.reader is not None
            or protocol.read_waiter is not None
            or self._closed
        ):
            return False
        try:
            transport = await protocol.loop.start_tls(
                self._transport,
                protocol,
                context,
                server_side=server_side,
                server_hostname=server_hostname,
            )
        except TypeError:  # pragma: no cover - a loop without it for this transport
            return False
        assert transport is not None
        protocol.transport = self._transport = transport
        protocol.reading_paused = False
        protocol.tls = True
        return True

    async def receive(self, max_bytes: int = 65536) -> bytes:
        protocol = self._protocol
        if not protocol.buffer:
            if self._closed:
                raise anyio.ClosedResourceError
            if protocol.eof or protocol.lost:
                return self._no_data()
            if protocol.read_waiter is not None or protocol.reader is not None:
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

    def start_direct(self, reader: DirectReader) -> None:
        """Deliver received bytes and the end of the stream to ``reader`` directly.

        Bytes already buffered are delivered first, and the end of the stream too if
        it came already. From then on :meth:`receive` may not be called.
        :meth:`stop_direct` ends it, and so does the end of the stream.
        """
        protocol = self._protocol
        buffer = protocol.buffer
        protocol.buffer = None
        protocol.buffered = 0
        protocol.reader = reader
        while buffer and protocol.reader is reader:
            reader.data_received(buffer.popleft())
        if protocol.reader is not reader:
            return  # the reader stopped it
        if protocol.eof or protocol.lost or self._closed:
            protocol.reader = None
            reader.stream_ended(protocol.exception)
        elif protocol.reading_paused:
            self.resume_reading()  # paused for the buffer, which is gone

    def stop_direct(self) -> None:
        """Stop delivering to the direct reader."""
        self._protocol.reader = None

    def new_event(self) -> FutureEvent:
        """A :class:`FutureEvent` on this stream's event loop."""
        return FutureEvent(self._protocol.loop)

    def call_at(self, when: float, callback: Callable[[], object]) -> Timer:
        """Call ``callback`` at ``when`` on the clock of :func:`anyio.current_time`."""
        return self._protocol.loop.call_at(when, callback)

    def time(self) -> float:
        """The clock of :func:`anyio.current_time`, callable outside a task."""
        return self._protocol.loop.time()

    def pause_reading(self) -> None:
        """Stop reading the socket (backpressure for a direct reader)."""
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

    def send_eof_nowait(self) -> None:
        """Close the sending side, as :meth:`send_eof` does, at once."""
        if self._transport.can_write_eof() and not self._transport.is_closing():
            self._transport.write_eof()

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
        self.send_eof_nowait()

    def close_now(self) -> None:
        """Close the stream at once; what :meth:`aclose` does, without awaiting."""
        if self._closed:
            return
        self._closed = True
        self._protocol.reader = None
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

    async def aclose(self) -> None:
        self.close_now()


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
    if read_queue:
        protocol.buffer = deque(read_queue)
        protocol.buffered = sum(map(len, read_queue))
    protocol.eof = at_eof
    protocol.exception = old_exception
    read_queue.clear()
    transport.set_protocol(protocol)
    transport.set_write_buffer_limits()  # anyio sets 0; use asyncio's defaults
    transport.resume_reading()
    return AsyncioSocketStream(transport, protocol)


def _tls_attributes(ssl_object: ssl.SSLObject) -> dict[Any, Callable[[], Any]]:
    """The attributes of :class:`anyio.streams.tls.TLSStream`, for ``ssl_object``."""
    return {
        TLSAttribute.alpn_protocol: ssl_object.selected_alpn_protocol,
        TLSAttribute.channel_binding_tls_unique: ssl_object.get_channel_binding,
        TLSAttribute.cipher: ssl_object.cipher,
        TLSAttribute.peer_certificate: lambda: ssl_object.getpeercert(False),
        TLSAttribute.peer_certificate_binary: lambda: ssl_object.getpeercert(True),
        TLSAttribute.server_side: lambda: ssl_object.server_side,
        TLSAttribute.shared_ciphers: lambda: (
            ssl_object.shared_ciphers() if ssl_object.server_side else None
        ),
        TLSAttribute.standard_compatible: lambda: False,
        TLSAttribute.ssl_object: lambda: ssl_object,
        TLSAttribute.tls_version: ssl_object.version,
    }


def socket_wrapper(
    context: ssl.SSLContext | None,
) -> Callable[[socket.socket], Awaitable[ByteStream]] | None:
    """Return what wraps accepted TCP sockets in streams, on asyncio; else ``None``.

    On asyncio, an accepted socket gets an :class:`AsyncioSocketStream` at once,
    rather than anyio's stream and then a swap of its transport's protocol. With
    ``context``, the stream runs the event loop's own TLS from the start, and the
    wrapper returns once the TLS handshake is done. Without it, what the client
    sent already is read at once: its request is usually waiting, and reading it
    now saves a turn of the event loop.
    """
    if not _on_asyncio():
        return None
    loop = asyncio.get_running_loop()

    async def wrap(sock: socket.socket) -> ByteStream:
        protocol = _Protocol(loop)
        if context is not None:
            protocol.tls = True
        else:
            sock.setblocking(False)
            try:
                size = sock.recv_into(_read_buffer())
            except (BlockingIOError, InterruptedError):
                size = 0
            if size:
                protocol.buffer = deque([bytes(_read_buffer()[:size])])
                protocol.buffered = size
        transport, _ = await loop.connect_accepted_socket(
            lambda: protocol, sock, ssl=context
        )
        return AsyncioSocketStream(transport, protocol)

    return wrap


try:
    from sniffio import current_async_library_cvar as _sniffio_cvar
except ImportError:  # pragma: no cover - anyio doesn't need sniffio
    _sniffio_cvar = None  # type: ignore[assignment]


class Acceptor:
    """Accepts TCP connections in the event loop's read callback.

    A listening socket stays registered with the event loop for as long as the
    server runs; every wake-up accepts the connections waiting, up to ``batch``,
    and hands each socket to ``on_accept``, with no task woken in between.
    :meth:`close` must be called before the socket is closed.
    """

    __slots__ = (
        "_batch",
        "_closed",
        "_fd",
        "_loop",
        "_on_accept",
        "_on_error",
        "_sock",
    )

    def __init__(
        self,
        sock: socket.socket,
        on_accept: Callable[[socket.socket], object],
        on_error: Callable[[OSError], object],
        batch: int,
    ) -> None:
        self._loop = asyncio.get_running_loop()
        self._sock = sock
        self._fd = sock.fileno()
        self._on_accept = on_accept
        self._on_error = on_error
        self._batch = batch
        self._closed = False

    def start(self) -> None:
        """Start accepting."""
        if not self._closed:
            self._loop.add_reader(self._fd, self._accept)

    def close(self) -> None:
        """Stop accepting."""
        if not self._closed:
            self._closed = True
            self._loop.remove_reader(self._fd)

    def _accept(self) -> None:
        # ``on_accept`` starts tasks through anyio, which asks sniffio, when it is
        # installed, what runs: outside a task only its context variable can say.
        token = None if _sniffio_cvar is None else _sniffio_cvar.set("asyncio")
        try:
            self._accept_waiting()
        finally:
            if token is not None:
                _sniffio_cvar.reset(token)

    def _accept_waiting(self) -> None:
        error = accept_waiting(self._sock, self._on_accept, self._batch)
        if error is not None:
            # EMFILE and the like: keep serving the connections we have, and try
            # again in a while.
            self._on_error(error)
            self._loop.remove_reader(self._fd)
            self._loop.call_later(0.1, self.start)


def accept_waiting(
    sock: socket.socket, on_accept: Callable[[socket.socket], object], batch: int
) -> OSError | None:
    """Accept the connections waiting on the non-blocking ``sock``, ``batch`` at
    most, and hand each socket to ``on_accept``.

    Returns the error that stopped accepting (EMFILE and the like), if one did.
    """
    for _ in range(batch):
        try:
            client, _address = sock.accept()
        except BlockingIOError:
            return None
        except (InterruptedError, ConnectionAbortedError):
            continue  # a client that left before it was accepted
        except OSError as exc:
            return exc
        on_accept(client)
    return None


def acceptor(
    sock: socket.socket,
    on_accept: Callable[[socket.socket], object],
    on_error: Callable[[OSError], object],
    batch: int,
) -> Acceptor | None:
    """An :class:`Acceptor` on asyncio; ``None`` elsewhere."""
    return Acceptor(sock, on_accept, on_error, batch) if _on_asyncio() else None


def _on_asyncio() -> bool:
    """Whether asyncio's event loop (or uvloop) runs this thread."""
    try:
        asyncio.get_running_loop()
    except RuntimeError:
        return False
    return True

"""A WebSocket connection over an AnyIO byte stream.

Every await of the library happens here or in the handshakes; the protocol decisions
happen in :mod:`anyws._protocol`. The rules this module keeps:

Rule 1: one reader per connection reads the stream for as long as it is open,
    answers Pings and Close frames through the protocol, and hands data to the
    :class:`~anyws._messages.Assembler`. It is the only code that tears the
    connection down: it closes the stream and then marks the connection closed.
    It also keeps the connection alive (section 5.5.2): at a deadline, it sends a
    Ping, or fails the connection with 1011 if the previous keepalive Ping got no
    Pong in time. On most streams the reader is a task, in the task group of the
    ``async with`` that opened the connection, which waits for data with the
    deadline. On asyncio TCP streams, which deliver bytes by callback
    (:mod:`anyws._streams`), it is :class:`_DirectReader`: the same decisions,
    taken in the event loop's callbacks and a timer, with no task at all. An idle
    connection then costs only its handler's task.

Rule 2: writes are serialised frame by frame; whole messages are serialised by a
    second lock, so that a fragmented message never interleaves with another one,
    while Pongs and Close frames may still go out between its fragments.

Rule 3: a write that is cancelled may have put part of a frame on the wire, so the
    connection is failed (the stream is closed) rather than left for the peer to
    misread.

Rule 4: errors of the byte stream become :exc:`~anyws.ConnectionClosedError` at one
    boundary, :meth:`Connection._write`, with the original error as ``__cause__``.

Rule 5: the closing handshake follows RFC 6455 section 7: the server closes TCP
    first; the client waits up to ``close_timeout`` for it to do so.
"""

from __future__ import annotations

import logging
import math
import os
import sys
import time
import uuid
from collections import deque
from collections.abc import AsyncIterable, AsyncIterator, Iterable, Mapping
from typing import TYPE_CHECKING, Any, NoReturn, overload

import anyio
import anyio.lowlevel
from anyio.abc import ByteStream, SocketAttribute, TaskGroup

from ._messages import Assembler
from ._protocol import CloseCode, Protocol, State, is_sendable_code
from ._streams import AsyncioSocketStream, Timer
from .exceptions import (
    ConcurrencyError,
    ConnectionClosed,
    ConnectionClosedError,
    ConnectionClosedOK,
)

if sys.version_info < (3, 11):  # pragma: no cover
    from exceptiongroup import BaseExceptionGroup

if TYPE_CHECKING:
    from types import TracebackType

    from ._handshake import DeflateParams, DeflateSettings
    from ._http import Request, Response

__all__ = ["Connection"]

# Read in large chunks: every receive() call costs a task switch on some backends,
# and wsproto parses every frame a chunk holds in one pass.
READ_SIZE = 2**18

# Errors that mean the transport is gone. ssl.SSLError is an OSError.
_STREAM_ERRORS = (
    anyio.BrokenResourceError,
    anyio.ClosedResourceError,
    anyio.EndOfStream,
    OSError,
)

_OK_CODES = frozenset({1000, 1001, 1005})

_LOGGERS = {
    True: logging.getLogger("anyws.client"),
    False: logging.getLogger("anyws.server"),
}

# What the reader does when its deadline passes.
_SEND_PING = 0  # the next keepalive Ping is due
_AWAIT_PONG = 1  # the keepalive Ping went unanswered: fail the connection
_AWAIT_CLOSE = 2  # the peer didn't finish the closing handshake: abort


def _deadline(delay: float | None) -> float:
    """The clock value ``delay`` seconds from now; infinity for ``None``."""
    return math.inf if delay is None else _after(anyio.current_time(), delay)


def _after(now: float, delay: float | None) -> float:
    """The clock value ``delay`` seconds after ``now``; infinity for ``None``."""
    return math.inf if delay is None else now + delay


class _Lock:
    """A lock that costs nothing when nobody else holds it.

    Unlike :class:`anyio.Lock`, acquiring a free lock does not checkpoint: the
    sends it protects checkpoint anyway when they write. Waiters are served in
    order, and a cancelled waiter gives up its place, or the lock if it was
    handed over already.
    """

    __slots__ = ("_locked", "_waiters")

    def __init__(self) -> None:
        self._locked = False
        # Made on first contention: most locks of most connections never wait.
        self._waiters: deque[anyio.Event] | None = None

    def locked(self) -> bool:
        return self._locked

    async def __aenter__(self) -> None:
        if not self._locked:
            self._locked = True
            return
        if self._waiters is None:
            self._waiters = deque()
        waiters = self._waiters
        event = anyio.Event()
        waiters.append(event)
        try:
            await event.wait()
        except BaseException:
            if event.is_set():
                self._release()  # handed over while being cancelled: pass it on
            else:
                waiters.remove(event)
            raise

    async def __aexit__(self, *exc_info: object) -> None:
        self._release()

    def _release(self) -> None:
        if self._waiters:
            self._waiters.popleft().set()  # the lock passes on, still locked
        else:
            self._locked = False


class Connection:
    """A WebSocket connection, client or server side.

    Use :class:`~anyws.ClientConnection` or :class:`~anyws.ServerConnection`; both
    are made by anyws, not by applications, which may subclass them.
    """

    is_client: bool

    def __init__(
        self,
        stream: ByteStream,
        *,
        ping_interval: float | None = 20,
        ping_timeout: float | None = 20,
        close_timeout: float | None = 10,
        max_size: int | None = 2**20,
        max_queue: int | None = 16,
        logger: logging.Logger | logging.LoggerAdapter[Any] | None = None,
    ) -> None:
        self._stream = stream
        self.ping_interval = ping_interval
        self.ping_timeout = ping_timeout
        self.close_timeout = close_timeout
        self.max_size = max_size
        self.max_queue = max_queue
        self._id: uuid.UUID | None = None
        self.logger: logging.Logger | logging.LoggerAdapter[Any] = (
            logger or _LOGGERS[self.is_client]
        )
        """Logger for this connection."""
        self.request: Request | None = None
        """The opening handshake request."""
        self.response: Response | None = None
        """The opening handshake response."""
        self.subprotocol: str | None = None
        """The subprotocol agreed on in the handshake, or ``None``."""
        self.latency: float = 0.0
        """Round trip of the last Ping answered, in seconds; 0 before the first."""
        self._protocol: Protocol | None = None
        self._assembler = Assembler(
            max_queue,
            stream.new_event if type(stream) is AsyncioSocketStream else anyio.Event,
        )
        self._send_lock = _Lock()
        self._write_lock = _Lock()
        self._pings: dict[bytes, PendingPing] = {}
        # Closed: set by the reader at the very end (rule 1); the event is made
        # only for a task that waits before then.
        self._is_closed = False
        self._closed_event: anyio.Event | None = None
        # The reader's current cancel scope, which _abort() cancels; and the one
        # it waits for data in, whose deadline is that of the keepalive.
        self._scope: anyio.CancelScope | None = None
        self._wait_scope: anyio.CancelScope | None = None
        self._aborted = False
        self._deadline = math.inf
        self._deadline_action = _SEND_PING
        self._keepalive_ping: PendingPing | None = None
        self._lost_cause: BaseException | None = None
        self._local_close = False
        self._initial = b""
        self._direct: _DirectReader | None = None

    # -- set-up ---------------------------------------------------------------

    def _open(
        self,
        deflate: DeflateParams | None,
        settings: DeflateSettings | None,
        initial: bytes,
    ) -> None:
        """Switch to the WebSocket protocol once the handshake succeeded."""
        self._protocol = Protocol(
            self.is_client,
            self._on_data,
            self._on_pong,
            deflate=deflate,
            settings=settings,
            max_size=self.max_size,
        )
        self._initial = initial

    def _start(self, task_group: TaskGroup) -> None:
        """Start the reader: a task in ``task_group``, or a direct reader (rule 1)."""
        if self.logger.isEnabledFor(logging.DEBUG):
            self.logger.debug("connection open: %s", self.remote_address)
        stream = self._stream
        if type(stream) is AsyncioSocketStream:
            self._direct = _DirectReader(self, stream)
            self._direct.start()
        else:
            task_group.start_soon(self._reader, name="anyws reader")

    def _now(self) -> float:
        """The time on the clock of the deadlines, callable outside a task."""
        if self._direct is not None:
            return self._direct.stream.time()
        return anyio.current_time()

    @property
    def _proto(self) -> Protocol:
        assert self._protocol is not None, "the connection isn't open yet"
        return self._protocol

    # -- attributes -----------------------------------------------------------

    @property
    def id(self) -> uuid.UUID:
        """Unique identifier of the connection, useful in logs."""
        if self._id is None:
            self._id = uuid.uuid4()  # on first use: most connections never need it
        return self._id

    @property
    def state(self) -> State:
        """The connection's state: CONNECTING, OPEN, CLOSING or CLOSED."""
        if self._protocol is None:
            return State.CLOSED if self._is_closed else State.CONNECTING
        return self._protocol.state

    @property
    def local_address(self) -> Any:
        """The local socket address, or ``None`` if the stream has none."""
        return self._stream.extra(SocketAttribute.local_address, None)

    @property
    def remote_address(self) -> Any:
        """The remote socket address, or ``None`` if the stream has none."""
        return self._stream.extra(SocketAttribute.remote_address, None)

    @property
    def close_code(self) -> int | None:
        """The close code received; 1006 if none was; ``None`` while open."""
        if self._protocol is None or self._protocol.state is not State.CLOSED:
            return None
        rcvd = self._protocol.close_rcvd
        return CloseCode.ABNORMAL_CLOSURE if rcvd is None else rcvd.code

    @property
    def close_reason(self) -> str | None:
        """The close reason received; ``""`` if none was; ``None`` while open."""
        if self._protocol is None or self._protocol.state is not State.CLOSED:
            return None
        rcvd = self._protocol.close_rcvd
        return "" if rcvd is None else rcvd.reason

    def _closed_exception(self) -> ConnectionClosed:
        proto = self._proto
        rcvd, sent = proto.close_rcvd, proto.close_sent
        ok = rcvd is not None and sent is not None
        ok = ok and rcvd.code in _OK_CODES and sent.code in _OK_CODES  # type: ignore[union-attr]
        cls = ConnectionClosedOK if ok else ConnectionClosedError
        rcvd_then_sent = proto.close_rcvd_then_sent if rcvd and sent else None
        exc = cls(rcvd, sent, rcvd_then_sent)
        exc.__cause__ = proto.failure or self._lost_cause
        return exc

    # -- receiving ------------------------------------------------------------

    @overload
    async def recv(self, decode: None = None) -> str | bytes: ...
    @overload
    async def recv(self, decode: bool) -> str | bytes: ...

    async def recv(self, decode: bool | None = None) -> str | bytes:
        """Receive the next message.

        Returns a :class:`str` for a text message and :class:`bytes` for a binary
        message. With ``decode=False`` text comes as UTF-8 :class:`bytes`; with
        ``decode=True`` binary messages are decoded as UTF-8.

        Cancelling :meth:`recv` is safe: the message it was waiting for stays queued
        for the next call. Messages received before the connection closed are still
        returned; then :meth:`recv` raises.

        Raises:
            ConnectionClosed: the connection is closed and no message is left.
            ConcurrencyError: another task is already receiving.
        """
        try:
            return await self._assembler.get(decode)
        except EOFError:
            await self._raise_closed()

    def recv_streaming(self, decode: bool | None = None) -> AsyncIterator[str | bytes]:
        """Receive the next message fragment by fragment, as the fragments arrive.

        ::

            async for fragment in ws.recv_streaming():
                sink.write(fragment)

        Use it for messages too large to hold in memory at once. Cancelling it, or
        leaving the loop, in the middle of a message leaves the rest of that message
        unread: the next receive starts with it.

        Raises:
            ConnectionClosed: the connection closed before the message ended.
            ConcurrencyError: another task is already receiving.
        """
        return _Fragments(self, decode)

    async def _raise_closed(self) -> NoReturn:
        await self._wait_closed()
        exc = self._closed_exception()
        raise exc from exc.__cause__

    def __aiter__(self) -> AsyncIterator[str | bytes]:
        """Iterate on received messages until the connection closes.

        The iteration ends quietly on a normal close (1000 or 1001) and raises
        :exc:`~anyws.ConnectionClosedError` otherwise. Leaving the loop early is
        fine: no message is lost and nothing is left unfinished.
        """
        return _Messages(self)

    def _on_data(self, data: str | bytes, fin: bool) -> None:
        if self._local_close:
            return  # the application closed: data sent after our Close is dropped
        self._assembler.put(data, fin)

    def _on_pong(self, payload: bytes) -> None:
        pings = self._pings
        if payload not in pings:
            return  # unsolicited Pong: a heartbeat (section 5.5.3)
        now = time.monotonic()
        # Pings are answered in order: this Pong acknowledges earlier Pings too.
        for key in list(pings):
            waiter = pings.pop(key)
            waiter.done(now - waiter.sent_at)
            self.latency = now - waiter.sent_at
            if waiter is self._keepalive_ping:
                self._keepalive_answered()
            if key == payload:
                break

    # -- sending --------------------------------------------------------------

    async def send(
        self,
        message: str
        | bytes
        | bytearray
        | memoryview
        | Iterable[Any]
        | AsyncIterable[Any],
        text: bool | None = None,
    ) -> None:
        """Send a message.

        A :class:`str` is sent as a text message; :class:`bytes`, :class:`bytearray`
        and :class:`memoryview` as a binary message. ``text=True`` sends bytes-like
        data (valid UTF-8) as text, ``text=False`` sends a str as binary.

        An iterable or async iterable of those sends one fragmented message, a frame
        per item; all items must be str, or all bytes-like.

        Concurrent calls from several tasks are serialised; the frames of different
        messages never interleave. When the peer does not read, :meth:`send` waits
        (backpressure). Cancelling :meth:`send` while its data is being written
        fails the connection, since part of a frame may have gone out; except on
        asyncio TCP streams, which buffer each frame whole before waiting, so the
        connection stays usable.

        Raises:
            ConnectionClosed: the connection is closed or closing.
            TypeError: the message is of an unsupported type.
        """
        if isinstance(message, (str, bytes, bytearray, memoryview)):
            data = _as_payload(message, text)
            async with self._send_lock:
                await self._check_open()
                await self._write(self._proto.send_data(data))
            return
        if isinstance(message, Mapping):
            raise TypeError("data is a dict-like object")
        if isinstance(message, AsyncIterable):
            async with self._send_lock:
                await self._send_fragments(message.__aiter__(), text)
            return
        if isinstance(message, Iterable):
            async with self._send_lock:
                await self._send_fragments(_AsyncIterator(message), text)
            return
        raise TypeError(
            f"data must be str, bytes-like or iterable, not {type(message).__name__}"
        )

    async def _send_fragments(
        self, fragments: AsyncIterator[Any], text: bool | None
    ) -> None:
        try:
            current = await fragments.__anext__()
        except StopAsyncIteration:
            return
        kind = type(current) is str
        started = False
        try:
            while True:
                try:
                    following = await fragments.__anext__()
                except StopAsyncIteration:
                    last = True
                else:
                    last = False
                if not isinstance(current, (str, bytes, bytearray, memoryview)) or (
                    isinstance(current, str) != kind
                ):
                    raise TypeError(
                        "all fragments must be str, or all must be bytes-like"
                    )
                await self._check_open()
                frame = self._proto.send_data(_as_payload(current, text), last)
                started = True
                await self._write(frame)
                if last:
                    return
                current = following
        except ConnectionClosed:
            raise
        except BaseException:
            if started:
                # A fragmented message cannot be withdrawn once begun (section 5.4).
                with anyio.CancelScope(shield=True):
                    await self._fail(
                        CloseCode.INTERNAL_ERROR, "error in fragmented message"
                    )
            raise

    async def _check_open(self) -> None:
        """Raise ConnectionClosed unless data may be sent.

        While the closing handshake runs, wait for it (at most ``close_timeout``) so
        that the exception carries the codes both sides sent.
        """
        if self._proto.can_send_data():
            return
        if not self._is_closed:
            with anyio.CancelScope(deadline=_deadline(self.close_timeout)):
                await self._wait_closed()
        exc = self._closed_exception()
        raise exc from exc.__cause__

    async def _write(self, data: bytes) -> None:
        """Write bytes; map stream errors to ConnectionClosed (rule 4)."""
        async with self._write_lock:
            stream = self._stream
            try:
                if type(stream) is AsyncioSocketStream:
                    # It buffers all of ``data`` before its first await: a
                    # cancellation never leaves part of a frame unwritten.
                    await stream.send(data)
                    return
                # Cancelled before a byte went out, the connection is still whole.
                await anyio.lowlevel.checkpoint_if_cancelled()
            except _STREAM_ERRORS as exc:
                self._connection_lost(exc)
                raise self._closed_exception() from exc
            try:
                await stream.send(data)
            except _STREAM_ERRORS as exc:
                self._connection_lost(exc)
                raise self._closed_exception() from exc
            except BaseException:
                # Rule 3: cancelled mid-write; the peer may have part of a frame.
                self._connection_lost(None)
                self._abort()
                with anyio.CancelScope(shield=True):
                    await anyio.aclose_forcefully(self._stream)
                raise

    async def ping(self, data: str | bytes | None = None) -> float:
        """Send a Ping, wait for the matching Pong, and return the round trip.

        Args:
            data: the payload (at most 125 bytes); random bytes if ``None``.

        Returns:
            The latency in seconds, also kept in :attr:`latency`.

        Cancelling :meth:`ping` is safe; the Pong, if it comes, is then ignored.

        Raises:
            ConnectionClosed: the connection is closed or closing.
            ConcurrencyError: a Ping with the same payload is already waiting.
        """
        return await (await self._send_ping(data)).wait()

    async def _send_ping(self, data: str | bytes | None) -> PendingPing:
        """Send a Ping and return what waits for its Pong: the first half of
        :meth:`ping`, for adapters whose ``ping()`` returns once the Ping is sent."""
        if data is None:
            payload = os.urandom(4)
            while payload in self._pings:  # pragma: no cover - 1 in 2**32
                payload = os.urandom(4)
        else:
            payload = data.encode() if isinstance(data, str) else bytes(data)
            if len(payload) > 125:
                raise ValueError("ping payload must be at most 125 bytes")
            if payload in self._pings:
                raise ConcurrencyError("already waiting for a pong with the same data")
        await self._check_open()
        waiter = PendingPing(self, payload)
        self._pings[payload] = waiter
        try:
            await self._write(self._proto.send_ping(payload))
        except BaseException:
            self._pings.pop(payload, None)
            raise
        return waiter

    async def pong(self, data: str | bytes = b"") -> None:
        """Send an unsolicited Pong, a one-way heartbeat.

        Raises:
            ConnectionClosed: the connection is closed or closing.
        """
        payload = data.encode() if isinstance(data, str) else bytes(data)
        if len(payload) > 125:
            raise ValueError("pong payload must be at most 125 bytes")
        await self._check_open()
        await self._write(self._proto.send_pong(payload))

    # -- closing --------------------------------------------------------------

    async def close(
        self, code: int = CloseCode.NORMAL_CLOSURE, reason: str = ""
    ) -> None:
        """Perform the closing handshake and wait until the connection is closed.

        Sends a Close frame with ``code`` and ``reason``, waits up to
        ``close_timeout`` for the peer's Close and for TCP to close, then aborts the
        connection if needed. Messages received before the Close frame was sent can
        still be read with :meth:`recv`; data the peer sends after it is dropped.

        Calling it again, or on a closed connection, waits for the end and returns.

        Raises:
            ValueError: ``code`` may not be sent (e.g. 1005, 1006, 999).
        """
        if not is_sendable_code(code):
            raise ValueError(f"invalid close code: {code}")
        if len(reason.encode()) > 123:
            raise ValueError("close reason must be at most 123 bytes in UTF-8")
        await self._close(code, reason)

    async def aclose(self) -> None:
        """Close the connection with code 1000 (anyio's AsyncResource)."""
        await self.close()

    async def _fail(self, code: int, reason: str) -> None:
        """Fail the connection: send a Close frame with an error code, then end."""
        await self._close(code, reason)

    async def _close(self, code: int, reason: str, *, shield: bool = False) -> None:
        """Close; with ``shield``, whether this task is cancelled or not."""
        # Writing the Close frame counts against close_timeout too: a peer that
        # does not read would otherwise hold it up forever.
        proto = self._protocol
        if proto is None:
            return
        if self._is_closed:
            if not shield:
                await anyio.lowlevel.checkpoint()
            return
        deadline = _deadline(self.close_timeout)
        with anyio.CancelScope(deadline=deadline, shield=shield):
            if proto.can_send_data():
                await self._send_close(code, reason)
            await self._wait_closed()
        if not self._is_closed:
            self.logger.debug("close timeout; aborting the connection")
            self._abort()
            with anyio.CancelScope(shield=shield):
                await self._wait_closed()

    async def _send_close(self, code: int, reason: str) -> None:
        """Start the closing handshake from this side."""
        try:
            await self._write(self._start_closing(code, reason))
        except ConnectionClosed:
            pass

    def _start_closing(self, code: int, reason: str) -> bytes:
        """Start the closing handshake; return the Close frame to send."""
        self._local_close = True
        self._assembler.discard_incomplete()
        self._assembler.stop_pausing()
        return self._proto.send_close(code, reason)

    async def wait_closed(self) -> None:
        """Wait until the TCP connection is closed."""
        await self._wait_closed()

    async def _wait_closed(self) -> None:
        if self._is_closed:
            await anyio.lowlevel.checkpoint()
            return
        if self._closed_event is None:
            self._closed_event = anyio.Event()
        await self._closed_event.wait()

    def _set_closed(self) -> None:
        self._is_closed = True
        if self._closed_event is not None:
            self._closed_event.set()

    def _abort(self) -> None:
        """Stop the reader wherever it waits; it then tears the connection down."""
        self._aborted = True
        if self._direct is not None:
            self._direct.teardown()
        elif self._scope is not None:
            self._scope.cancel()

    def _connection_lost(self, exc: BaseException | None) -> None:
        if self._lost_cause is None and exc is not None:
            self._lost_cause = exc
        if self._protocol is not None:
            self._protocol.connection_lost()

    # -- the reader task (rule 1) ---------------------------------------------

    def _new_scope(self, deadline: float = math.inf) -> anyio.CancelScope:
        """A cancel scope for the reader's next wait, which :meth:`_abort` cancels.

        Each wait of the reader gets a scope of its own, so that the keepalive
        deadline never interrupts a write, where a cancellation would fail the
        connection (rule 3).
        """
        scope = anyio.CancelScope(deadline=deadline)
        if self._aborted:
            scope.cancel()
        self._scope = scope
        return scope

    async def _reader(self) -> None:
        proto = self._proto
        if self.ping_interval is not None:
            self._deadline = anyio.current_time() + self.ping_interval
        try:
            if self._initial:
                with self._new_scope():
                    await self._received(self._initial)
                self._initial = b""
            if not (self._aborted or proto.close_rcvd or proto.failure):
                await self._read_frames()
            if not self._aborted:
                await self._finish_closing()
        except ConnectionClosed:
            pass
        finally:
            self._scope = self._wait_scope = None
            with anyio.CancelScope(shield=True):
                await self._teardown()

    async def _received(self, data: bytes) -> None:
        out = self._proto.receive_data(data)
        if out:
            await self._write(out)

    async def _read_frames(self) -> None:
        stream = self._stream
        proto = self._proto
        assembler = self._assembler
        while True:
            out = b""
            scope = self._wait_scope = self._new_scope(self._deadline)
            with scope:
                while True:
                    if assembler.paused:
                        await assembler.wait_resume()
                    try:
                        data = await stream.receive(READ_SIZE)
                    except _STREAM_ERRORS as exc:
                        self._connection_lost(
                            None if isinstance(exc, anyio.EndOfStream) else exc
                        )
                        return
                    out = proto.receive_data(data)
                    if out or proto.close_rcvd is not None or proto.failure is not None:
                        break
            self._wait_scope = None
            if out and not self._aborted:
                with self._new_scope():
                    await self._write(out)
            if self._aborted:
                return
            if proto.close_rcvd is not None or proto.failure is not None:
                return
            if scope.cancelled_caught:
                await self._at_deadline_passed()

    async def _finish_closing(self) -> None:
        proto = self._proto
        if proto.state is State.CLOSED:
            return
        if proto.failure is not None:
            self.logger.debug("failing the connection: %s", proto.failure)
            # The Close frame goes out ahead of a FIN, so that the peer reads it
            # even if unread data makes our close of TCP a reset.
            with self._new_scope():
                try:
                    await self._stream.send_eof()
                except (NotImplementedError, *_STREAM_ERRORS):
                    pass
            if self._aborted:
                return
        if not self.is_client:
            return  # Rule 5: the server closes TCP first (sections 7.1.1, 7.1.7).
        # Wait for the server to close TCP, discarding what it still sends.
        with self._new_scope(self._await_server_close(anyio.current_time())):
            while True:
                try:
                    await self._stream.receive(READ_SIZE)
                except _STREAM_ERRORS:
                    return

    def _await_server_close(self, now: float) -> float:
        """A client waits for the server to close TCP: return until when.

        That is ``close_timeout`` from ``now``, or what is left of it if the
        keepalive started the closing.
        """
        if self._deadline_action != _AWAIT_CLOSE:
            self._deadline_action = _AWAIT_CLOSE
            self._deadline = _after(now, self.close_timeout)
        return self._deadline

    async def _teardown(self) -> None:
        self._release()
        await anyio.aclose_forcefully(self._stream)
        self._closed_now()

    def _release(self) -> None:
        """The first half of tearing down: nothing will be received any more."""
        if self._protocol is not None:
            self._protocol.connection_lost()
        self._assembler.close()
        for waiter in self._pings.values():
            waiter.done()  # with no latency: ping() raises ConnectionClosed
        self._pings.clear()

    def _closed_now(self) -> None:
        """The second half, once the stream is closed."""
        self._set_closed()
        if self.logger.isEnabledFor(logging.DEBUG):
            self.logger.debug(
                "connection closed: %s",
                self._closed_exception() if self._protocol else "",
            )

    # -- keepalive ------------------------------------------------------------

    async def _at_deadline_passed(self) -> None:
        """Keep the connection alive (section 5.5.2), or end a stuck closing.

        Called by the reader task when the deadline of its wait for data passed.
        """
        frame = self._deadline_passed(anyio.current_time())
        if frame:
            # A write that doesn't finish in time fails the connection (rule 3).
            with self._new_scope(self._deadline):
                await self._write(frame)

    def _deadline_passed(self, now: float) -> bytes:
        """What to do when the reader's deadline passed; returns a frame to send.

        The frame, a keepalive Ping or a Close, must be sent by :attr:`_deadline`.
        """
        if now < self._deadline:
            return b""  # the deadline moved: a Pong came
        if self._deadline_action == _AWAIT_CLOSE:
            self.logger.debug("close timeout; aborting the connection")
            self._abort()
            return b""
        proto = self._proto
        if not proto.can_send_data():
            self._deadline = math.inf  # closing: no more keepalive
            return b""
        if self._deadline_action == _SEND_PING:
            payload = os.urandom(4)
            while payload in self._pings:  # pragma: no cover - 1 in 2**32
                payload = os.urandom(4)
            waiter = self._keepalive_ping = PendingPing(self, payload)
            self._pings[payload] = waiter
            self._deadline_action = _AWAIT_PONG
            self._deadline = _after(now, self.ping_timeout)
            return proto.send_ping(payload)
        self.logger.debug("keepalive ping timeout; closing the connection")
        self._keepalive_ping = None
        self._deadline_action = _AWAIT_CLOSE
        self._deadline = _after(now, self.close_timeout)
        return self._start_closing(CloseCode.INTERNAL_ERROR, "keepalive ping timeout")

    def _keepalive_answered(self) -> None:
        """The Pong to the keepalive Ping came: the next Ping is due in a while."""
        self._keepalive_ping = None
        if self._deadline_action != _AWAIT_PONG or self.ping_interval is None:
            return
        self._deadline_action = _SEND_PING
        self._deadline = self._now() + self.ping_interval
        if self._direct is not None:
            self._direct.schedule()
        elif self._wait_scope is not None:
            self._wait_scope.deadline = self._deadline

    # -- context manager ------------------------------------------------------

    async def __aenter__(self) -> Connection:
        return self

    async def __aexit__(self, *exc_info: object) -> None:
        await self.close()


class _DirectReader:
    """The reader of rule 1 on an asyncio TCP stream: callbacks instead of a task.

    It takes the reader task's decisions in the event loop's callbacks
    (:class:`anyws._streams.DirectReader`): data frames go to the assembler and
    answers out to the peer as bytes arrive; the keepalive deadline is a timer;
    and the connection is torn down as soon as it ends, all without awaiting,
    since the stream writes a whole frame at once.
    """

    __slots__ = ("_connection", "_draining", "_pong_backlog", "_timer", "stream")

    def __init__(self, connection: Connection, stream: AsyncioSocketStream) -> None:
        self._connection = connection
        self.stream = stream
        self._timer: Timer | None = None
        # The client waits for the server to close TCP: what still comes is dropped.
        self._draining = False
        # Answers wait in the write buffer for the peer to read: so does reading.
        self._pong_backlog = False

    def start(self) -> None:
        connection = self._connection
        stream = self.stream
        if connection.ping_interval is not None:
            connection._deadline = stream.time() + connection.ping_interval
        connection._assembler.on_resume = self._update_reading
        initial, connection._initial = connection._initial, b""
        if initial:
            self.data_received(initial)
        if not connection._is_closed:
            stream.start_direct(self)
        if not connection._is_closed:
            self.schedule()

    # -- what the stream delivers ---------------------------------------------

    def data_received(self, data: bytes | memoryview) -> None:
        if self._draining:
            return
        connection = self._connection
        proto = connection._proto
        try:
            out = proto.receive_data(data)
        except Exception:  # pragma: no cover - a bug; the others go on
            connection.logger.error("error reading from the peer", exc_info=True)
            connection._abort()
            return
        stream = self.stream
        if out:
            stream.send_nowait(out)  # whole frames; a write never splits one
        if proto.close_rcvd is not None or proto.failure is not None:
            self._finish_closing()
            return
        if out and stream.writing_paused:
            # The peer doesn't read what we send: a Ping flood would grow the
            # buffer without bound if reading went on.
            self._pong_backlog = True
        if self._pong_backlog or connection._assembler.paused:
            stream.pause_reading()  # resumed by writing_resumed() or on_resume

    def stream_ended(self, exception: BaseException | None) -> None:
        self._connection._connection_lost(exception)
        self.teardown()

    def writing_resumed(self) -> None:
        if self._pong_backlog:
            self._pong_backlog = False
            self._update_reading()

    def _update_reading(self) -> None:
        if self._pong_backlog or self._connection._assembler.paused:
            self.stream.pause_reading()
        else:
            self.stream.resume_reading()

    # -- closing ------------------------------------------------------------------

    def _finish_closing(self) -> None:
        """The closing handshake is done, or the connection failed: end it."""
        connection = self._connection
        proto = connection._proto
        if proto.failure is not None:
            connection.logger.debug("failing the connection: %s", proto.failure)
            # The Close frame goes out ahead of a FIN, so that the peer reads it
            # even if unread data makes our close of TCP a reset.
            self.stream.send_eof_nowait()
        if not connection.is_client:
            self.teardown()  # Rule 5: the server closes TCP first.
            return
        # Wait for the server to close TCP, dropping what it still sends.
        self._draining = True
        self.stream.resume_reading()
        connection._await_server_close(self.stream.time())
        self.schedule()

    def teardown(self) -> None:
        connection = self._connection
        if connection._is_closed:
            return
        if self._timer is not None:
            self._timer.cancel()
            self._timer = None
        self.stream.stop_direct()
        connection._assembler.on_resume = None
        connection._release()
        self.stream.close_now()
        connection._closed_now()

    # -- the deadline -------------------------------------------------------------

    def schedule(self) -> None:
        """Set the timer to the connection's deadline."""
        deadline = self._connection._deadline
        timer = self._timer
        if timer is not None:
            if timer.when() == deadline:
                return
            timer.cancel()
            self._timer = None
        if deadline != math.inf and not self._connection._is_closed:
            self._timer = self.stream.call_at(deadline, self._deadline_passed)

    def _deadline_passed(self) -> None:
        self._timer = None
        connection = self._connection
        if connection._is_closed:
            return
        frame = connection._deadline_passed(self.stream.time())
        if frame:
            self.stream.send_nowait(frame)
        if not connection._is_closed:
            self.schedule()


class _Messages:
    """The iterator of ``async for message in connection``."""

    __slots__ = ("_connection",)

    def __init__(self, connection: Connection) -> None:
        self._connection = connection

    def __aiter__(self) -> _Messages:
        return self

    async def __anext__(self) -> str | bytes:
        try:
            return await self._connection.recv()
        except ConnectionClosedOK:
            raise StopAsyncIteration from None


class _Fragments:
    """The iterator that :meth:`Connection.recv_streaming` returns."""

    __slots__ = ("_connection", "_decode", "_done")

    def __init__(self, connection: Connection, decode: bool | None) -> None:
        self._connection = connection
        self._decode = decode
        self._done = False

    def __aiter__(self) -> _Fragments:
        return self

    async def __anext__(self) -> str | bytes:
        if self._done:
            raise StopAsyncIteration
        try:
            data, fin = await self._connection._assembler.get_fragment(self._decode)
        except EOFError:
            self._done = True
            await self._connection._raise_closed()
        self._done = fin
        return data


class PendingPing:
    """A Ping sent and waiting for its Pong."""

    __slots__ = ("_connection", "_done", "_event", "latency", "payload", "sent_at")

    def __init__(self, connection: Connection, payload: bytes) -> None:
        self._connection = connection
        self.payload = payload
        self.sent_at = time.monotonic()
        self.latency: float | None = None
        self._done = False
        # Made only when a task waits: keepalive Pings have nobody waiting, and
        # are sent from event loop callbacks on direct readers.
        self._event: anyio.Event | None = None

    def done(self, latency: float | None = None) -> None:
        """The Pong came (with the ``latency``), or the connection closed (without)."""
        self.latency = latency
        self._done = True
        if self._event is not None:
            self._event.set()

    async def wait(self) -> float:
        """Wait for the Pong and return the round trip in seconds.

        Cancelling the wait is safe: the Pong, if it comes, is then ignored.

        Raises:
            ConnectionClosed: the connection closed before the Pong came.
        """
        try:
            if self._done:
                await anyio.lowlevel.checkpoint()
            else:
                if self._event is None:
                    self._event = anyio.Event()
                await self._event.wait()
        finally:
            pings = self._connection._pings
            if pings.get(self.payload) is self:
                del pings[self.payload]
        if self.latency is None:
            exc = self._connection._closed_exception()
            raise exc from exc.__cause__
        return self.latency


def _as_payload(
    data: str | bytes | bytearray | memoryview, text: bool | None
) -> str | bytes | bytearray | memoryview:
    if text is None:
        return data
    if text:
        return data if isinstance(data, str) else bytes(data).decode()
    return data.encode() if isinstance(data, str) else data


class _AsyncIterator:
    """An async iterator over a sync iterable; unlike an async generator, it needs
    no finalisation when abandoned half-way."""

    __slots__ = ("_iterator",)

    def __init__(self, items: Iterable[Any]) -> None:
        self._iterator = iter(items)

    def __aiter__(self) -> _AsyncIterator:
        return self

    async def __anext__(self) -> Any:
        try:
            return next(self._iterator)
        except StopIteration:
            raise StopAsyncIteration from None


class unwrap_exception_group:  # a class: cheaper than a generator, per connection
    """Re-raise the only exception of an exception group, as itself.

    The task group that an ``async with connect()`` or ``serve()`` owns wraps what
    its body raises in an exception group; users expect ``except ConnectionClosed``
    around the block to work, so a group of one is unwrapped.
    """

    __slots__ = ()

    def __enter__(self) -> None:
        return None

    def __exit__(
        self,
        exc_type: type[BaseException] | None,
        group: BaseException | None,
        traceback: TracebackType | None,
    ) -> None:
        if not isinstance(group, BaseExceptionGroup):
            return
        leaves = _leaves(group)
        if len(leaves) != 1:
            return
        exc = leaves[0]
        raise exc from exc.__cause__


def _leaves(group: BaseExceptionGroup[BaseException]) -> list[BaseException]:
    result: list[BaseException] = []
    for exc in group.exceptions:
        if isinstance(exc, BaseExceptionGroup):
            result.extend(_leaves(exc))
        else:
            result.append(exc)
    return result

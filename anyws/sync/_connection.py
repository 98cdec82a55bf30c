"""The blocking connection: every call runs the async one in an event-loop thread.

The rules this module keeps:

Rule 1: one implementation. A blocking method hands the matching coroutine of
    :class:`anyws.Connection` to the event loop through an anyio
    :class:`~anyio.from_thread.BlockingPortal` and waits for its outcome; no protocol
    logic lives here.

Rule 2: a blocking call that is interrupted (``KeyboardInterrupt`` in the main
    thread) cancels its coroutine and waits until the coroutine has finished before
    re-raising, so the connection is never used by a call its caller gave up on.
    The async API's cancellation promises then apply: an interrupted ``recv()``
    loses no message.

Rule 3: once the event loop behind a connection has stopped, every call raises
    :exc:`~anyws.ConnectionClosed`, as the async API does after the close.
"""

from __future__ import annotations

import concurrent.futures
import contextlib
import threading
from collections.abc import Generator, Iterable, Iterator, Mapping
from typing import TYPE_CHECKING, Any, Generic, Literal, TypeVar, overload

import anyio

from .._protocol import State
from ..exceptions import ConnectionClosed, ConnectionClosedOK

if TYPE_CHECKING:
    import logging
    import uuid
    from collections.abc import AsyncIterator, Awaitable, Callable

    from anyio.from_thread import BlockingPortal
    from anyio.streams.memory import MemoryObjectReceiveStream, MemoryObjectSendStream

    from .. import _connection
    from .._http import Request, Response

__all__ = ["Connection"]

T = TypeVar("T")

Data = str | bytes | bytearray | memoryview


class _Call(Generic[T]):
    """A coroutine function running in the portal's event loop for a blocking caller."""

    def __init__(
        self,
        portal: BlockingPortal,
        func: Callable[..., Awaitable[T]],
        args: tuple[Any, ...],
    ) -> None:
        self._done = threading.Event()
        self.future: concurrent.futures.Future[T] = portal.start_task_soon(
            self._run, func, args
        )

    async def _run(self, func: Callable[..., Awaitable[T]], args: tuple[Any, ...]) -> T:
        try:
            return await func(*args)
        finally:
            self._done.set()

    def wait(self) -> T:
        """Wait for the outcome; on an interruption, cancel the call first (rule 2)."""
        try:
            return self.future.result()
        except BaseException:
            if not self.future.done():
                self.cancel()
            raise

    def cancel(self) -> None:
        """Cancel the call and wait until its coroutine has finished."""
        self.future.cancel()
        self._done.wait()


async def _next_or_end(fragments: AsyncIterator[T]) -> tuple[bool, T | None]:
    try:
        return False, await fragments.__anext__()
    except StopAsyncIteration:
        return True, None


class Connection:
    """A blocking WebSocket connection, client or server side.

    Its methods may be called from any thread except the event-loop thread that runs
    the connection; several threads may use one connection at once (one of them
    receiving). Use :class:`~anyws.sync.ClientConnection` or
    :class:`~anyws.sync.ServerConnection`: anyws makes them, not applications.
    """

    def __init__(
        self, connection: _connection.Connection, portal: BlockingPortal
    ) -> None:
        self._connection = connection
        self._portal: BlockingPortal | None = portal

    # -- running coroutines in the event loop (rules 1 to 3) ------------------

    def _start(self, func: Callable[..., Awaitable[T]], *args: Any) -> _Call[T]:
        portal = self._portal
        if portal is None:
            raise self._closed_error()
        try:
            return _Call(portal, func, args)
        except RuntimeError:
            if self._connection.state in (State.CONNECTING, State.OPEN):
                raise  # called from the event-loop thread itself
            raise self._closed_error() from None  # the portal stopped (rule 3)

    def _wait(self, call: _Call[T]) -> T:
        try:
            return call.wait()
        except concurrent.futures.CancelledError:
            # The event loop is shutting down and cancelled the call (rule 3).
            raise self._closed_error() from None

    def _run(self, func: Callable[..., Awaitable[T]], *args: Any) -> T:
        return self._wait(self._start(func, *args))

    def _closed_error(self) -> ConnectionClosed:
        exc = self._connection._closed_exception()
        exc.__suppress_context__ = True
        return exc

    # -- attributes -----------------------------------------------------------

    @property
    def id(self) -> uuid.UUID:
        """Unique identifier of the connection, useful in logs."""
        return self._connection.id

    @property
    def logger(self) -> logging.Logger | logging.LoggerAdapter[Any]:
        """Logger for this connection."""
        return self._connection.logger

    @property
    def state(self) -> State:
        """The connection's state: CONNECTING, OPEN, CLOSING or CLOSED."""
        return self._connection.state

    @property
    def close_code(self) -> int | None:
        """The close code received; 1006 if none was; ``None`` while open."""
        return self._connection.close_code

    @property
    def close_reason(self) -> str | None:
        """The close reason received; ``""`` if none was; ``None`` while open."""
        return self._connection.close_reason

    @property
    def subprotocol(self) -> str | None:
        """The subprotocol agreed on in the handshake, or ``None``."""
        return self._connection.subprotocol

    @property
    def request(self) -> Request | None:
        """The opening handshake request."""
        return self._connection.request

    @property
    def response(self) -> Response | None:
        """The opening handshake response."""
        return self._connection.response

    @property
    def local_address(self) -> Any:
        """The local socket address."""
        return self._connection.local_address

    @property
    def remote_address(self) -> Any:
        """The remote socket address."""
        return self._connection.remote_address

    @property
    def latency(self) -> float:
        """Round trip of the last Ping answered, in seconds; 0 before the first."""
        return self._connection.latency

    # -- receiving ------------------------------------------------------------

    @overload
    def recv(
        self, timeout: float | None = None, decode: None = None
    ) -> str | bytes: ...
    @overload
    def recv(self, timeout: float | None = None, *, decode: Literal[True]) -> str: ...
    @overload
    def recv(
        self, timeout: float | None = None, *, decode: Literal[False]
    ) -> bytes: ...

    def recv(
        self, timeout: float | None = None, decode: bool | None = None
    ) -> str | bytes:
        """Receive the next message.

        Returns a :class:`str` for a text message and :class:`bytes` for a binary
        message; ``decode=False`` returns text as UTF-8 bytes, ``decode=True``
        decodes binary messages as UTF-8.

        Args:
            timeout: seconds to wait at most; ``None`` waits for ever, ``0`` only
                returns a message already received.

        Messages received before the connection closed are still returned; then
        :meth:`recv` raises. A :meth:`close` from another thread ends a pending
        :meth:`recv` with :exc:`~anyws.ConnectionClosed`.

        Raises:
            TimeoutError: no message arrived within ``timeout``; no message is lost,
                the next call returns it.
            ConnectionClosed: the connection is closed and no message is left.
            ConcurrencyError: another thread is already receiving.
        """
        return self._run(self._recv, timeout, decode)

    async def _recv(self, limit: float | None, decode: bool | None) -> str | bytes:
        with anyio.fail_after(limit):
            return await self._connection.recv(decode)

    def recv_streaming(
        self, decode: bool | None = None
    ) -> Generator[str | bytes, None, None]:
        """Receive the next message fragment by fragment, as the fragments arrive.

        Leaving the loop early leaves the rest of the message unread: the next
        receive starts with it.

        Raises:
            ConnectionClosed: the connection closed before the message ended.
            ConcurrencyError: another thread is already receiving.
        """
        fragments = self._connection.recv_streaming(decode)
        try:
            while True:
                end, fragment = self._run(_next_or_end, fragments)
                if end:
                    return
                assert fragment is not None
                yield fragment
        finally:
            # An async generator must be closed in its event loop.
            aclose = getattr(fragments, "aclose", None)
            if aclose is not None:
                with contextlib.suppress(ConnectionClosed):
                    self._run(aclose)

    def __iter__(self) -> Iterator[str | bytes]:
        """Iterate on received messages until the connection closes.

        The iteration ends quietly on a normal close (1000 or 1001) and raises
        :exc:`~anyws.ConnectionClosedError` otherwise.
        """
        try:
            while True:
                yield self.recv()
        except ConnectionClosedOK:
            return

    # -- sending --------------------------------------------------------------

    def send(self, message: Data | Iterable[Data], text: bool | None = None) -> None:
        """Send a message.

        A :class:`str` goes as a text message; :class:`bytes`, :class:`bytearray` and
        :class:`memoryview` as a binary one. ``text=True`` sends bytes-like data
        (valid UTF-8) as text, ``text=False`` sends a str as binary.

        An iterable of those sends one fragmented message, a frame per item, all str
        or all bytes-like; it is iterated in the calling thread. If it raises after
        the first frame went out, the connection is closed with 1011, since a
        fragmented message cannot be withdrawn.

        Calls from several threads are serialised: messages never interleave. When
        the peer does not read, :meth:`send` blocks (backpressure).

        Raises:
            ConnectionClosed: the connection is closed or closing.
            TypeError: the message is of an unsupported type.
        """
        if isinstance(
            message, (str, bytes, bytearray, memoryview, Mapping)
        ) or not isinstance(message, Iterable):
            self._run(self._connection.send, message, text)
        else:
            self._send_fragments(iter(message), text)

    def _send_fragments(self, fragments: Iterator[Data], text: bool | None) -> None:
        # The fragments travel one by one over an unbuffered channel to a task that
        # sends them as one message, so that the iterable runs in this thread.
        sender, receiver = self._run(_channel)
        try:
            sending = self._start(self._send_from, receiver, text)
            try:
                for fragment in fragments:
                    try:
                        self._run(sender.send, fragment)
                    except anyio.BrokenResourceError:
                        break  # the sending task failed; its error is raised below
                self._run(sender.aclose)
            except BaseException:
                # The iterable failed or the caller was interrupted: cancel the
                # sending task, which fails the connection if a frame went out.
                sending.cancel()
                raise
            self._wait(sending)
        finally:
            with contextlib.suppress(ConnectionClosed):
                self._run(_close_channel, sender, receiver)

    async def _send_from(
        self, receiver: MemoryObjectReceiveStream[Data], text: bool | None
    ) -> None:
        with receiver:  # closing it makes the feeding thread stop
            await self._connection.send(receiver, text)

    def ping(
        self, data: str | bytes | None = None, timeout: float | None = None
    ) -> float:
        """Send a Ping, block until its Pong arrives, and return the round trip.

        Args:
            data: the payload (at most 125 bytes); random bytes if ``None``.
            timeout: seconds to wait at most for the Pong; ``None`` for no limit.

        Returns:
            The latency in seconds, also kept in :attr:`latency`.

        Raises:
            TimeoutError: no Pong within ``timeout``.
            ConnectionClosed: the connection is closed or closing.
            ConcurrencyError: a Ping with the same payload is already waiting.
        """
        return self._run(self._ping, data, timeout)

    async def _ping(self, data: str | bytes | None, limit: float | None) -> float:
        with anyio.fail_after(limit):
            return await self._connection.ping(data)

    def pong(self, data: str | bytes = b"") -> None:
        """Send an unsolicited Pong, a one-way heartbeat.

        Raises:
            ConnectionClosed: the connection is closed or closing.
        """
        self._run(self._connection.pong, data)

    # -- closing --------------------------------------------------------------

    def close(self, code: int = 1000, reason: str = "") -> None:
        """Perform the closing handshake and block until the connection is closed.

        Sends a Close frame with ``code`` and ``reason`` and waits up to
        ``close_timeout`` for the peer's answer and for TCP to close. May be called
        from another thread than one blocked in :meth:`recv`, which then raises
        :exc:`~anyws.ConnectionClosed`. Calling it again does nothing.

        Raises:
            ValueError: ``code`` may not be sent (e.g. 1005, 1006, 999).
        """
        try:
            self._run(self._connection.close, code, reason)
        except ConnectionClosed:
            pass  # the event loop is gone: the connection was closed already

    def __enter__(self) -> Connection:
        return self

    def __exit__(self, *exc_info: object) -> None:
        self.close()


async def _close_channel(
    sender: MemoryObjectSendStream[Data], receiver: MemoryObjectReceiveStream[Data]
) -> None:
    await sender.aclose()
    await receiver.aclose()


async def _channel() -> tuple[
    MemoryObjectSendStream[Data], MemoryObjectReceiveStream[Data]
]:
    return anyio.create_memory_object_stream[Data]()

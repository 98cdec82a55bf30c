"""``websockets.asyncio.connection``: the connection API shared by clients and servers.

A :class:`Connection` here wraps an anyws connection and gives it the shape of
``websockets``' connection: the same method signatures, and :meth:`Connection.ping`
returning an awaitable for the Pong instead of waiting for it. Everything else is
anyws's own behaviour, exceptions included.

:func:`broadcast` cannot write to a socket synchronously as ``websockets`` does, since
AnyIO streams have no synchronous write. It queues the message on each connection's
outbox instead, and a task that exists only while the outbox has messages writes them
in order. The task lives in a task group that the connection's ``async with`` (client)
or handler (server) owns, so it ends with the connection.
"""

from __future__ import annotations

import sys
from collections import deque
from typing import TYPE_CHECKING, Any, Literal, overload

import anyio

from anyws._protocol import CloseCode, State
from anyws.exceptions import ConnectionClosed

from .._background import on_asyncio, pong_future

if sys.version_info < (3, 11):  # pragma: no cover
    from exceptiongroup import ExceptionGroup

if TYPE_CHECKING:
    import uuid
    from collections.abc import (
        AsyncIterable,
        AsyncIterator,
        Awaitable,
        Callable,
        Generator,
        Iterable,
        Mapping,
    )
    from types import TracebackType

    from anyio.abc import TaskGroup
    from typing_extensions import Self

    from anyws._connection import Connection as _AnywsConnection, PendingPing
    from anyws._http import Request, Response

    from ..typing import Data, DataLike, LoggerLike

__all__ = ["Connection", "broadcast"]


def _high_water(write_limit: int | tuple[int, int | None]) -> int:
    return write_limit if isinstance(write_limit, int) else write_limit[0]


def check_options(
    function: str,
    kwargs: Mapping[str, Any],
    supported: frozenset[str],
    extensions: object,
    compression: str | None,
) -> None:
    """Refuse what ``connect()`` or ``serve()`` (``function``) can't do with anyws.

    Raises:
        TypeError: a keyword argument outside ``supported``.
        NotImplementedError: custom ``extensions``.
        ValueError: a ``compression`` other than ``"deflate"`` or ``None``.
    """
    unsupported = sorted(set(kwargs) - supported)
    if unsupported:
        raise TypeError(
            f"{function}() got unsupported keyword arguments: {', '.join(unsupported)}"
        )
    if extensions is not None:
        raise NotImplementedError(
            "extensions isn't supported: anyws negotiates permessage-deflate "
            "itself; use compression='deflate' or compression=None"
        )
    if compression not in ("deflate", None):
        raise ValueError(f"unsupported compression: {compression}")


def limit_option(
    value: int | None | tuple[int | None, int | None], name: str
) -> int | None:
    """The anyws value of ``max_size`` or ``max_queue``, which may be a tuple.

    ``max_queue=(high, low)`` becomes ``high``: anyws resumes reading as soon as
    fewer than ``high`` messages wait. ``max_size=(message, fragment)`` becomes
    ``message``, if ``fragment`` is no stricter, since anyws limits messages only.

    Raises:
        NotImplementedError: a fragment size limit below the message size limit.
    """
    if not isinstance(value, tuple):
        return value
    high, low = value
    if name == "max_size" and low is not None and (high is None or low < high):
        raise NotImplementedError(
            f"max_size={value!r}: a fragment size limit isn't supported; "
            "anyws limits the size of messages only"
        )
    return high


class Connection:
    """A WebSocket connection with the API of ``websockets``' asyncio connection.

    Use :class:`~anyws.compat.websockets.asyncio.client.ClientConnection` or
    :class:`~anyws.compat.websockets.asyncio.server.ServerConnection`, which
    ``connect`` and ``serve`` make. It wraps an anyws connection, available as
    :attr:`connection` for code moving on to the native API.

    Args:
        connection: the anyws connection.
        write_limit: how many bytes :func:`broadcast` may queue for this connection
            before skipping it as too slow; a ``(high, low)`` tuple's ``high``.
    """

    def __init__(
        self,
        connection: _AnywsConnection,
        *,
        write_limit: int | tuple[int, int | None] = 2**15,
    ) -> None:
        self.connection = connection
        """The anyws connection behind this one."""
        self._outbox = _Outbox(connection, _high_water(write_limit))
        # Set by the ``ws = await connect(...)`` form: waits for the background
        # task that holds the connection open to end.
        self._release: Callable[[], Awaitable[None]] | None = None

    # -- attributes -----------------------------------------------------------

    @property
    def id(self) -> uuid.UUID:
        """Unique identifier of the connection."""
        return self.connection.id

    @property
    def logger(self) -> LoggerLike:
        """Logger for this connection."""
        return self.connection.logger

    @property
    def request(self) -> Request | None:
        """The opening handshake request."""
        return self.connection.request

    @property
    def response(self) -> Response | None:
        """The opening handshake response."""
        return self.connection.response

    @property
    def subprotocol(self) -> str | None:
        """The subprotocol negotiated in the opening handshake, or ``None``."""
        return self.connection.subprotocol

    @property
    def latency(self) -> float:
        """Round trip of the last Ping answered, in seconds; 0 before the first."""
        return self.connection.latency

    @property
    def state(self) -> State:
        """State of the connection: CONNECTING, OPEN, CLOSING or CLOSED."""
        return self.connection.state

    @property
    def close_code(self) -> int | None:
        """The close code received; 1006 if none was; ``None`` while open."""
        return self.connection.close_code

    @property
    def close_reason(self) -> str | None:
        """The close reason received; ``""`` if none was; ``None`` while open."""
        return self.connection.close_reason

    @property
    def local_address(self) -> Any:
        """Local address of the connection, as :meth:`socket.socket.getsockname`."""
        return self.connection.local_address

    @property
    def remote_address(self) -> Any:
        """Remote address of the connection, as :meth:`socket.socket.getpeername`."""
        return self.connection.remote_address

    @property
    def ping_interval(self) -> float | None:
        """Seconds between keepalive Pings, or ``None``."""
        return self.connection.ping_interval

    @property
    def ping_timeout(self) -> float | None:
        """Seconds to wait for a keepalive Pong, or ``None``."""
        return self.connection.ping_timeout

    @property
    def close_timeout(self) -> float | None:
        """Seconds to wait for the closing handshake, or ``None``."""
        return self.connection.close_timeout

    # -- context manager and iteration ------------------------------------------

    async def __aenter__(self) -> Self:
        return self

    async def __aexit__(
        self,
        exc_type: type[BaseException] | None,
        exc_value: BaseException | None,
        traceback: TracebackType | None,
    ) -> None:
        # As websockets: close with 1011 when the block raised.
        with anyio.CancelScope(shield=True):
            if exc_type is None:
                await self.close()
            else:
                await self.close(CloseCode.INTERNAL_ERROR)

    def __aiter__(self) -> AsyncIterator[Data]:
        """Iterate on received messages until the connection closes.

        The iteration ends quietly on a normal close (1000 or 1001) and raises
        :exc:`~anyws.ConnectionClosedError` otherwise.
        """
        return self.connection.__aiter__()

    # -- receiving --------------------------------------------------------------

    @overload
    async def recv(self, decode: Literal[True]) -> str: ...
    @overload
    async def recv(self, decode: Literal[False]) -> bytes: ...
    @overload
    async def recv(self, decode: bool | None = None) -> Data: ...

    async def recv(self, decode: bool | None = None) -> Data:
        """Receive the next message.

        Returns :class:`str` for a text message and :class:`bytes` for a binary one;
        ``decode=False`` returns text as UTF-8 bytes, ``decode=True`` decodes binary.
        Cancelling it is safe: no message is lost.

        Raises:
            ConnectionClosed: the connection is closed and no message is left.
            ConcurrencyError: another task is already receiving.
        """
        return await self.connection.recv(decode)

    @overload
    def recv_streaming(self, decode: Literal[True]) -> AsyncIterator[str]: ...
    @overload
    def recv_streaming(self, decode: Literal[False]) -> AsyncIterator[bytes]: ...
    @overload
    def recv_streaming(self, decode: bool | None = None) -> AsyncIterator[Data]: ...

    def recv_streaming(self, decode: bool | None = None) -> AsyncIterator[Data]:
        """Receive the next message fragment by fragment.

        Raises:
            ConnectionClosed: the connection closed before the message ended.
            ConcurrencyError: another task is already receiving.
        """
        return self.connection.recv_streaming(decode)

    # -- sending ----------------------------------------------------------------

    async def send(
        self,
        message: DataLike | Iterable[DataLike] | AsyncIterable[DataLike],
        *,
        text: bool | None = None,
    ) -> None:
        """Send a message; an iterable or async iterable sends a fragmented one.

        A :class:`str` goes as text, bytes-like data as binary; ``text`` overrides
        this. Concurrent calls are serialised, and messages that :func:`broadcast`
        queued for this connection go first. Unlike ``websockets``, it waits while
        the peer does not read (anyws has no unbounded write buffer). Cancelling it
        while its data is being written fails the connection, since part of a
        frame may have gone out.

        Raises:
            ConnectionClosed: the connection is closed or closing.
            TypeError: the message has an unsupported type.
        """
        if self._outbox.writing:
            await self._outbox.flushed()
        await self.connection.send(message, text)

    async def close(
        self, code: CloseCode | int = CloseCode.NORMAL_CLOSURE, reason: str = ""
    ) -> None:
        """Perform the closing handshake and wait until the connection is closed.

        Messages that :func:`broadcast` queued go out first, for up to
        ``close_timeout``. Idempotent: on a closed connection it returns at once.
        """
        if self._outbox.writing:
            with anyio.move_on_after(self.connection.close_timeout):
                await self._outbox.flushed()
        await self.connection.close(code, reason)
        if self._release is not None:
            await self._release()

    async def wait_closed(self) -> None:
        """Wait until the connection is closed; cancelling it is safe."""
        await self.connection.wait_closed()
        if self._release is not None:
            await self._release()

    async def ping(self, data: DataLike | None = None) -> Awaitable[float]:
        """Send a Ping and return an awaitable that resolves to the latency.

        ::

            pong_received = await ws.ping()
            latency = await pong_received  # only if you want to wait

        On asyncio the awaitable is an :class:`asyncio.Task`; on trio, an object
        to await once. If the connection closes first, awaiting it raises
        :exc:`~anyws.ConnectionClosed`. Cancelling the wait is safe; the Pong, if
        it comes, is then ignored.

        Raises:
            ConnectionClosed: the connection is closed or closing.
            ConcurrencyError: a Ping with the same payload awaits its Pong.
        """
        if isinstance(data, (bytes, bytearray, memoryview)):
            payload: bytes | None = bytes(data)
        elif isinstance(data, str):
            payload = data.encode()
        elif data is None:
            payload = None
        else:
            raise TypeError("data must be str or bytes-like")
        waiter = _PongWaiter(await self.connection._send_ping(payload))
        if on_asyncio():
            return pong_future(waiter.wait())
        return waiter

    async def pong(self, data: DataLike = b"") -> None:
        """Send an unsolicited Pong, a one-way heartbeat.

        Raises:
            ConnectionClosed: the connection is closed or closing.
        """
        if isinstance(data, (bytes, bytearray, memoryview)):
            payload = bytes(data)
        elif isinstance(data, str):
            payload = data.encode()
        else:
            raise TypeError("data must be str or bytes-like")
        await self.connection.pong(payload)


# -- ping: send now, wait later -----------------------------------------------------
#
# anyws's ping() sends and waits in one call. websockets' ping() returns once the
# Ping is written, with the wait for the Pong left to the caller: anyws's
# Connection._send_ping() is that first half, and PendingPing.wait() the second.


class _PongWaiter:
    """The result of ``ping()`` off asyncio: await it, once, for the latency."""

    __slots__ = ("waiter",)

    def __init__(self, waiter: PendingPing) -> None:
        self.waiter = waiter

    async def wait(self) -> float:
        """Wait for the Pong and return the latency."""
        return await self.waiter.wait()

    def __await__(self) -> Generator[Any, None, float]:
        # The coroutine is made only when awaited: one never awaited would warn
        # when collected, and ignoring the result of ping() is legitimate.
        return self.wait().__await__()


# -- broadcast ------------------------------------------------------------------


class _Outbox:
    """The messages :func:`broadcast` queued for one connection, in order."""

    __slots__ = (
        "connection",
        "idle",
        "limit",
        "queue",
        "size",
        "stopped",
        "task_group",
        "writing",
    )

    def __init__(self, connection: _AnywsConnection, limit: int) -> None:
        self.connection = connection
        self.limit = limit
        self.queue: deque[str | bytes] = deque()
        self.size = 0  # bytes (characters, for text) queued and not yet written
        self.task_group: TaskGroup | None = None
        self.writing = False
        self.stopped = False
        self.idle: anyio.Event | None = None

    def put(self, message: str | bytes) -> bool:
        """Queue a message; return ``False`` if the connection is too slow."""
        if self.size > self.limit:
            return False
        if self.stopped:
            return True  # the connection is closing: the message is dropped
        self.queue.append(message)
        self.size += len(message)
        self.start()
        return True

    def start(self, task_group: TaskGroup | None = None) -> None:
        """Start writing, in ``task_group`` from now on if given."""
        if task_group is not None:
            self.task_group = task_group
        if self.queue and not self.writing and self.task_group is not None:
            self.writing = True
            self.idle = anyio.Event()
            self.task_group.start_soon(self._write, name="websockets broadcast")

    async def _write(self) -> None:
        queue = self.queue
        try:
            while queue:
                message = queue[0]
                try:
                    await self.connection.send(message)
                except Exception as exc:
                    # A broadcast never fails the caller, nor the connection's
                    # task group: the connection is closed, or has a problem of
                    # its own that its next send() will show.
                    if not isinstance(exc, ConnectionClosed):
                        self.connection.logger.warning(
                            "skipped broadcast: failed to write message: %r", exc
                        )
                    queue.clear()
                    self.size = 0
                    return
                if queue:  # not cleared by stop() meanwhile
                    queue.popleft()
                    self.size -= len(message)
        finally:
            self.writing = False
            assert self.idle is not None
            self.idle.set()

    async def flushed(self) -> None:
        """Wait until the messages queued so far are written."""
        while self.writing:
            assert self.idle is not None
            await self.idle.wait()

    async def stop(self, grace: float | None) -> None:
        """Give queued messages ``grace`` seconds to go out; queue no more."""
        with anyio.move_on_after(grace):
            await self.flushed()
        self.stopped = True
        self.task_group = None
        self.queue.clear()
        self.size = 0


def broadcast(
    connections: Iterable[Connection],
    message: DataLike,
    *,
    text: bool | None = None,
    raise_exceptions: bool = False,
) -> None:
    """Send a message to several connections without waiting.

    A :class:`str` goes as text, bytes-like data as binary; ``text`` overrides this.
    Connections that aren't open are skipped. So are connections too slow to keep
    up: those with more than ``write_limit`` bytes of earlier broadcasts still
    waiting to be written. A failure on one connection never affects the others.

    The message is queued for each connection and written by a short-lived task
    in the order of the calls, interleaving with :meth:`Connection.send` at message
    boundaries. Errors while writing close that connection and are not reported.

    Args:
        connections: the connections, made by the shim's ``connect`` or ``serve``.
        message: the message.
        text: send bytes as text (``True``) or a str as binary (``False``).
        raise_exceptions: raise an :exc:`ExceptionGroup` of the skipped slow
            connections instead of logging a warning for each.

    Raises:
        TypeError: ``message`` isn't str or bytes-like.
    """
    # Convert once here rather than once per connection.
    if isinstance(message, str):
        data: str | bytes = message.encode() if text is False else message
    elif isinstance(message, (bytes, bytearray, memoryview)):
        data = bytes(message).decode() if text is True else bytes(message)
    else:
        raise TypeError("data must be str or bytes")

    exceptions: list[Exception] = []
    for connection in connections:
        if connection.state is not State.OPEN:
            continue
        if not connection._outbox.put(data):
            if raise_exceptions:
                exceptions.append(
                    RuntimeError("skipped broadcast: connection too slow")
                )
            else:
                connection.logger.warning(
                    "skipped broadcast: more than %d bytes waiting to be written",
                    connection._outbox.limit,
                )
    if exceptions:
        raise ExceptionGroup("skipped broadcast", exceptions)

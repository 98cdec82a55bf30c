"""WebSocketConnection: trio-websocket's connection over an anyws connection."""

from __future__ import annotations

import itertools

import anyio
from anyio.abc import AsyncResource

import anyws

from ._common import _REQUEST_SKIP, _RESPONSE_SKIP, _byte_pairs
from ._exceptions import CloseReason, ConnectionClosed, Endpoint, _endpoint, _reason_of

# RFC 6455 section 7.4.1: codes that never go on the wire; wsproto sends 1000 instead.
_LOCAL_ONLY_CODES = frozenset({1005, 1006, 1015})


class WebSocketConnection(AsyncResource):
    """A WebSocket connection, made by the functions of this module.

    ``async with connection:`` closes it on exit.
    """

    CONNECTION_ID = itertools.count()

    def __init__(
        self, native: anyws.Connection, raw: object, *, is_ssl: bool, path: str | None
    ) -> None:
        self._native = native
        self._path = path
        # Read the addresses now: the socket may be gone when they are asked for.
        self._local = _endpoint(native.local_address, is_ssl, raw)
        self._remote = _endpoint(native.remote_address, is_ssl, raw)
        self._id = next(self.__class__.CONNECTION_ID)
        self._close_reason: CloseReason | None = None
        self._local_close = False
        self._recv_lock = anyio.Lock()
        self._receivers: set[anyio.CancelScope] = set()
        if native.is_client:
            assert native.response is not None
            self._handshake_headers = tuple(
                _byte_pairs(native.response.headers, _RESPONSE_SKIP)
            )
        else:
            assert native.request is not None
            self._handshake_headers = tuple(
                _byte_pairs(native.request.headers, _REQUEST_SKIP)
            )

    @property
    def closed(self) -> CloseReason | None:
        """Why the connection was or is being closed; ``None`` while it is open."""
        if self._close_reason is None:
            native = self._native
            if native.state is anyws.State.CLOSED:
                assert native.close_code is not None
                self._close_reason = CloseReason(
                    native.close_code, native.close_reason or None
                )
        return self._close_reason

    def _closed_by(self, exc: anyws.ConnectionClosed) -> ConnectionClosed:
        if self._close_reason is None:
            self._close_reason = _reason_of(exc)
        return ConnectionClosed(self._close_reason)

    @property
    def is_client(self) -> bool:
        """Whether this is the client side."""
        return self._native.is_client

    @property
    def is_server(self) -> bool:
        """Whether this is the server side."""
        return not self._native.is_client

    @property
    def local(self) -> Endpoint | str:
        """The local endpoint, or the stream's ``repr()`` if it has no IP address."""
        return self._local

    @property
    def remote(self) -> Endpoint | str:
        """The remote endpoint, or the stream's ``repr()`` if it has no IP address."""
        return self._remote

    @property
    def path(self) -> str | None:
        """The request target: path and query string."""
        return self._path

    @property
    def subprotocol(self) -> str | None:
        """The subprotocol agreed on, or ``None``."""
        return self._native.subprotocol

    @property
    def handshake_headers(self) -> tuple[tuple[bytes, bytes], ...]:
        """The headers the peer sent in the handshake, byte pairs, names lower case.

        A client sees the response headers, a server the request headers.
        """
        return self._handshake_headers

    async def aclose(self, code: int = 1000, reason: str | None = None) -> None:
        """Close the connection: send a Close frame and wait until it is closed.

        Messages not yet received are discarded; further calls to the other methods
        raise :exc:`ConnectionClosed`. Calling it on a closed or closing connection
        returns at once. If it is cancelled, the connection is dropped.

        Raises:
            ValueError: ``code`` cannot go in a Close frame.
        """
        if self.closed is not None or self._native.state is not anyws.State.OPEN:
            return
        # As wsproto does: a code that never goes on the wire becomes 1000, and the
        # reason is cut to the 123 bytes a Close frame holds (RFC 6455 5.5).
        if code in _LOCAL_ONLY_CODES:
            code = 1000
        reason = (reason or "").encode()[:123].decode(errors="ignore")
        native = self._native
        self._close_reason = CloseReason(1000, None)
        self._local_close = True
        for scope in self._receivers:
            scope.cancel()  # get_message() raises at once, as the queue is discarded
        try:
            await native.close(code, reason)
        except ValueError:
            if native.state is anyws.State.OPEN:  # refused before anything was sent
                self._close_reason = None
                self._local_close = False
            raise
        except BaseException:
            await _abort(native)
            raise
        if native.close_code not in (None, 1006):
            assert native.close_code is not None
            self._close_reason = CloseReason(
                native.close_code, native.close_reason or None
            )

    async def get_message(self) -> str | bytes:
        """Receive the next message: :class:`str` for text, :class:`bytes` for binary.

        After the peer closes, the messages it sent before are still returned, then
        :exc:`ConnectionClosed` is raised. After :meth:`aclose`, it raises at once.
        Concurrent calls each get a different message, in order of arrival.
        Cancelling it is safe: no message is lost.

        Raises:
            ConnectionClosed: the connection is closed.
        """
        async with self._recv_lock:
            while not self._local_close:
                with anyio.CancelScope() as scope:
                    self._receivers.add(scope)
                    try:
                        message = await self._native.recv()
                    except anyws.ConnectionClosed as exc:
                        raise self._closed_by(exc) from None
                    finally:
                        self._receivers.discard(scope)
                    if not self._local_close:
                        return message
        raise ConnectionClosed(self.closed)

    async def ping(self, payload: bytes | None = None) -> None:
        """Send a Ping and wait for its Pong.

        A Pong also answers the Pings sent before its own, so it wakes them too.

        Args:
            payload: up to 125 bytes, unique among the Pings in flight; four random
                bytes when ``None``.

        Raises:
            ConnectionClosed: the connection is closed, or closes before the Pong.
            ValueError: a Ping with this payload is already waiting for its Pong.
        """
        if self.closed is not None:
            raise ConnectionClosed(self.closed)
        try:
            await self._native.ping(payload)
        except anyws.ConcurrencyError:
            raise ValueError(
                f"Payload value {payload!r} is already in flight."
            ) from None
        except anyws.ConnectionClosed as exc:
            raise self._closed_by(exc) from None

    async def pong(self, payload: bytes | None = None) -> None:
        """Send an unsolicited Pong, with ``payload`` or empty.

        Raises:
            ConnectionClosed: the connection is closed.
        """
        if self.closed is not None:
            raise ConnectionClosed(self.closed)
        try:
            await self._native.pong(payload or b"")
        except anyws.ConnectionClosed as exc:
            raise self._closed_by(exc) from None

    async def send_message(self, message: str | bytes) -> None:
        """Send a text message (:class:`str`) or a binary one (:class:`bytes`).

        Raises:
            ConnectionClosed: the connection is closed or closing.
            ValueError: ``message`` is neither str nor bytes.
        """
        if self.closed is not None:
            raise ConnectionClosed(self.closed)
        if not isinstance(message, (str, bytes)):
            raise ValueError("message must be str or bytes")
        try:
            await self._native.send(message)
        except anyws.ConnectionClosed as exc:
            raise self._closed_by(exc) from None

    def __str__(self) -> str:
        return f"{'client' if self.is_client else 'server'}-{self._id}"


async def _abort(native: anyws.Connection) -> None:
    """Drop the connection without waiting for the peer."""
    native.close_timeout = 0
    with anyio.CancelScope(shield=True):
        await native.close()


async def _hold(native: anyws.Connection) -> None:
    """Keep the connection's context open until it is closed; drop it if cancelled."""
    try:
        await native.wait_closed()
    finally:
        native.close_timeout = 0

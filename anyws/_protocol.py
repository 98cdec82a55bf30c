"""The WebSocket protocol after the handshake: wsproto events turned into decisions.

This is the only module that imports wsproto, and it never awaits. It keeps these
rules, which wsproto leaves to whoever drives it:

Rule 1: every frame received is answered here. A Ping gets its Pong, a Close gets its
    Close in reply, and a protocol error gets a Close with the code RFC 6455 section
    7.4.1 names (1002, 1007, 1009). The bytes to send come back from
    :meth:`Protocol.receive_data`; the caller writes them.

Rule 2: nothing is sent in a state that forbids it. Data, Ping and Pong go out only
    while OPEN; Close only once. The checks live in the ``send_*`` methods.

Rule 3: no message grows past ``max_size``. The size is counted per message as frames
    arrive: from the frame header for uncompressed frames (so a huge frame is refused
    before its payload arrives) and from the inflated output for compressed ones,
    whose inflater is never asked for more than the remaining budget.

Rule 4: permessage-deflate (RFC 7692) is ours, not wsproto's: its extension resets the
    inflater when a Ping or Pong arrives between the fragments of a compressed
    message, which corrupts the rest of the message.
"""

from __future__ import annotations

import dataclasses
import enum
import zlib
from typing import TYPE_CHECKING

from wsproto import frame_protocol as _frame_protocol
from wsproto.connection import (
    Connection as _WSConnection,
    ConnectionState,
    ConnectionType,
)
from wsproto.events import (
    BytesMessage,
    CloseConnection,
    Ping,
    Pong,
    TextMessage,
)
from wsproto.extensions import Extension
from wsproto.frame_protocol import CloseReason, Opcode, RsvBits

from . import _frames
from .exceptions import PayloadTooBig, ProtocolError

if TYPE_CHECKING:
    from collections.abc import Callable

    from ._handshake import DeflateParams, DeflateSettings

__all__ = ["Close", "CloseCode", "Protocol", "State"]


class State(enum.IntEnum):
    """The state of a WebSocket connection (RFC 6455 sections 4 to 7)."""

    CONNECTING = 0
    OPEN = 1
    CLOSING = 2
    CLOSED = 3


class CloseCode(enum.IntEnum):
    """Close codes registered in RFC 6455 section 7.4.1 and by IANA."""

    NORMAL_CLOSURE = 1000
    GOING_AWAY = 1001
    PROTOCOL_ERROR = 1002
    UNSUPPORTED_DATA = 1003
    NO_STATUS_RCVD = 1005
    ABNORMAL_CLOSURE = 1006
    INVALID_DATA = 1007
    POLICY_VIOLATION = 1008
    MESSAGE_TOO_BIG = 1009
    MANDATORY_EXTENSION = 1010
    INTERNAL_ERROR = 1011
    SERVICE_RESTART = 1012
    TRY_AGAIN_LATER = 1013
    BAD_GATEWAY = 1014
    TLS_HANDSHAKE = 1015


_EXPLANATIONS = {
    1000: "OK",
    1001: "going away",
    1002: "protocol error",
    1003: "unsupported data",
    1005: "no status received [internal]",
    1006: "abnormal closure [internal]",
    1007: "invalid frame payload data",
    1008: "policy violation",
    1009: "message too big",
    1010: "mandatory extension",
    1011: "internal error",
    1012: "service restart",
    1013: "try again later",
    1014: "bad gateway",
    1015: "TLS handshake failure [internal]",
}

# Section 7.4.1: codes that must never appear in a Close frame.
_LOCAL_ONLY = frozenset({1005, 1006, 1015})


def is_sendable_code(code: int) -> bool:
    """Whether ``code`` may be sent in a Close frame (sections 7.4.1 and 7.4.2)."""
    return (code in _EXPLANATIONS and code not in _LOCAL_ONLY) or 3000 <= code <= 4999


@dataclasses.dataclass(frozen=True)
class Close:
    """The code and reason of a Close frame."""

    code: int
    reason: str

    def __str__(self) -> str:
        if 3000 <= self.code < 4000:
            explanation = "registered"
        elif 4000 <= self.code < 5000:
            explanation = "private use"
        else:
            explanation = _EXPLANATIONS.get(self.code, "unknown")
        result = f"{self.code} ({explanation})"
        if self.reason:
            result = f"{result} {self.reason}"
        return result


_STAND_IN_FOR_1014 = 3999
_CLOSE = Opcode.CLOSE
_TEXT = Opcode.TEXT
_BINARY = Opcode.BINARY
_CONTINUATION = Opcode.CONTINUATION
_NO_RSV = RsvBits(False, False, False)
_RSV1 = RsvBits(True, False, False)


class _MessageLimit(Extension):
    """Counts the bytes of each received message and refuses one over the limit.

    It is always enabled and placed last, so that it sees payloads after inflation.

    It also lets close code 1014 (bad gateway, registered with IANA) through: wsproto
    refuses every code below 3000 that its enum lacks, so the code travels through
    wsproto as :data:`_STAND_IN_FOR_1014` and :class:`Protocol` restores it.
    """

    name = "anyws-message-limit"

    def __init__(self, max_size: int | None) -> None:
        self.max_size = max_size
        self.size = 0
        self.compressed = False  # the current message is compressed
        self.data_frame = False  # the current frame belongs to a message
        self.close_frame = False
        self.stood_in_for_1014 = False
        self.error: PayloadTooBig | None = None

    def enabled(self) -> bool:
        return True

    def offer(self) -> bool:
        return False  # pragma: no cover - never negotiated

    def remaining(self) -> int:
        """How many more bytes the current message may have, or 0 when unlimited."""
        if self.max_size is None:
            return 0
        return max(self.max_size - self.size, 0) + 1

    def too_big(self, size: int) -> CloseReason:
        assert self.max_size is not None
        self.error = PayloadTooBig(
            f"message of at least {size} bytes exceeds limit of {self.max_size} bytes",
            self.max_size,
        )
        return CloseReason.MESSAGE_TOO_BIG

    def frame_inbound_header(
        self, proto: object, opcode: Opcode, rsv: RsvBits, payload_length: int
    ) -> CloseReason | RsvBits:
        if opcode is _TEXT or opcode is _BINARY:
            self.size = 0
            self.compressed = rsv.rsv1
        elif opcode is not _CONTINUATION:
            # A control frame, between messages or inside one, counts for none.
            self.data_frame = False
            self.close_frame = opcode is _CLOSE
            return _NO_RSV
        self.data_frame = True
        if not self.compressed and self.max_size is not None:
            self.size += payload_length
            if self.size > self.max_size:
                return self.too_big(self.size)
        return _NO_RSV

    def frame_inbound_payload_data(
        self, proto: object, data: bytes
    ) -> bytes | CloseReason:
        if not self.data_frame:
            if self.close_frame and data[:2] == b"\x03\xf6":  # 1014
                self.stood_in_for_1014 = True
                return _STAND_IN_FOR_1014.to_bytes(2, "big") + data[2:]
            return data
        if self.compressed and self.max_size is not None:
            self.size += len(data)
            if self.size > self.max_size:
                return self.too_big(self.size)
        return data

    def frame_inbound_complete(self, proto: object, fin: bool) -> None:
        if fin and self.data_frame:
            # The message is over: a stray continuation after it is a protocol
            # error (1002), not more bytes of this message.
            self.size = 0
        return None


class _PerMessageDeflate(Extension):
    """permessage-deflate (RFC 7692) with bounded inflation.

    A Ping or Pong between the fragments of a compressed message must not disturb the
    inflater (section 6.1 applies to data frames only); the state that says whether the
    current message is compressed therefore lives outside the frame being processed.
    """

    name = "permessage-deflate"

    def __init__(
        self,
        is_client: bool,
        params: DeflateParams,
        settings: DeflateSettings,
        limit: _MessageLimit,
    ) -> None:
        if is_client:
            local_bits, remote_bits = (
                params.client_max_window_bits,
                params.server_max_window_bits,
            )
            self.local_nct = params.client_no_context_takeover
            self.remote_nct = params.server_no_context_takeover
        else:
            local_bits, remote_bits = (
                params.server_max_window_bits,
                params.client_max_window_bits,
            )
            self.local_nct = params.server_no_context_takeover
            self.remote_nct = params.client_no_context_takeover
        # zlib refuses an 8-bit window for raw deflate, but with 9 bits it never
        # emits a distance over 250 bytes (its window less its 262-byte lookahead),
        # so its output stays within an agreed 8-bit window. Inflating with 9 bits
        # reads a peer's 8-bit stream.
        self.local_bits = max(local_bits or 15, 9)
        self.remote_bits = max(remote_bits or 15, 9)
        self.settings = settings
        self.limit = limit
        self.compressor: zlib._Compress | None = None
        self.decompressor: zlib._Decompress | None = None
        self.inbound_message_compressed = False
        self.inbound_frame_is_data = False

    def enabled(self) -> bool:
        return True

    def offer(self) -> bool:
        return False  # pragma: no cover - negotiated in anyws._handshake

    def frame_inbound_header(
        self, proto: object, opcode: Opcode, rsv: RsvBits, payload_length: int
    ) -> CloseReason | RsvBits:
        if opcode is _TEXT or opcode is _BINARY:
            self.inbound_frame_is_data = True
            self.inbound_message_compressed = rsv.rsv1
        elif opcode is _CONTINUATION:
            # Section 6.1: RSV1 is set on the first frame of a message only.
            if rsv.rsv1:
                return CloseReason.PROTOCOL_ERROR
            self.inbound_frame_is_data = True
        else:
            # Section 6.1: control frames are never compressed.
            if rsv.rsv1:
                return CloseReason.PROTOCOL_ERROR
            self.inbound_frame_is_data = False
        return _RSV1

    def frame_inbound_payload_data(
        self, proto: object, data: bytes
    ) -> bytes | CloseReason:
        if not (self.inbound_frame_is_data and self.inbound_message_compressed):
            return data
        if self.decompressor is None:
            self.decompressor = zlib.decompressobj(-self.remote_bits)
        try:
            budget = self.limit.remaining()
            result = self.decompressor.decompress(data, budget)
        except zlib.error:
            return CloseReason.INVALID_FRAME_PAYLOAD_DATA
        if self.decompressor.unconsumed_tail:
            return self.limit.too_big(self.limit.size + len(result))
        return result

    def frame_inbound_complete(
        self, proto: object, fin: bool
    ) -> bytes | CloseReason | None:
        if not (fin and self.inbound_frame_is_data and self.inbound_message_compressed):
            return None
        self.inbound_message_compressed = False
        if self.decompressor is None:
            self.decompressor = zlib.decompressobj(-self.remote_bits)
        try:
            # Section 7.2.2: append the empty block that the sender removed.
            budget = self.limit.remaining()
            result = self.decompressor.decompress(b"\x00\x00\xff\xff", budget)
        except zlib.error:
            return CloseReason.INVALID_FRAME_PAYLOAD_DATA
        if self.decompressor.unconsumed_tail:
            return self.limit.too_big(self.limit.size + len(result))
        if self.remote_nct:
            self.decompressor = None
        if result:
            # The limit saw the payload before this tail; count the tail too.
            checked = self.limit.frame_inbound_payload_data(proto, result)
            if isinstance(checked, CloseReason):
                return checked
        return result

    def inflate_message(self, payload: bytes) -> bytes:
        """Inflate a whole compressed message, for the fast path.

        It does what :meth:`frame_inbound_payload_data` and
        :meth:`frame_inbound_complete` do for a message in one frame.

        Raises:
            anyws._frames.Failed: the data is not valid deflate (1007), or inflates
                past ``max_size`` (1009).
        """
        limit = self.limit
        limit.size = 0
        if self.decompressor is None:
            self.decompressor = zlib.decompressobj(-self.remote_bits)
        try:
            # Section 7.2.2: append the empty block that the sender removed.
            data = self.decompressor.decompress(
                payload + b"\x00\x00\xff\xff", limit.remaining()
            )
        except zlib.error:
            raise _frames.Failed(1007, "error in extension") from None
        if self.decompressor.unconsumed_tail or (
            limit.max_size is not None and len(data) > limit.max_size
        ):
            limit.too_big(len(data))
            raise _frames.Failed(1009, "error in extension")
        if self.remote_nct:
            self.decompressor = None
        return data

    def compress_message(self, data: bytes) -> bytes:
        """Compress a whole message, for the fast path (RFC 7692 section 7.2.1)."""
        return self.frame_outbound(None, _TEXT, _NO_RSV, data, True)[1]

    def frame_outbound(
        self, proto: object, opcode: Opcode, rsv: RsvBits, data: bytes, fin: bool
    ) -> tuple[RsvBits, bytes]:
        if opcode.iscontrol():
            return rsv, data
        if opcode is not _CONTINUATION:
            rsv = RsvBits(True, rsv.rsv2, rsv.rsv3)
        if self.compressor is None:
            self.compressor = zlib.compressobj(
                self.settings.compress_level,
                zlib.DEFLATED,
                -self.local_bits,
                self.settings.mem_level,
            )
        # Flush every frame, so that a receiver streaming the message can inflate
        # each fragment as it arrives.
        data = self.compressor.compress(data) + self.compressor.flush(zlib.Z_SYNC_FLUSH)
        if fin:
            # Section 7.2.1: remove the 0x00 0x00 0xff 0xff tail of the last frame.
            data = data[:-4]
            if self.local_nct:
                self.compressor = None
        return rsv, data


class _Masker:
    """wsproto's masker, with the compiled XOR from :mod:`anyws._frames`.

    It keeps wsproto's interface: ``process()`` is called chunk by chunk and
    continues the mask where the previous chunk stopped.
    """

    __slots__ = ("_key",)

    def __init__(self, masking_key: bytes | bytearray) -> None:
        self._key = bytes(masking_key)

    def process(self, data: bytearray) -> bytearray:
        if not data:
            return bytearray(data)
        key = self._key
        result = bytearray(_frames.apply_mask(data, key))
        rotation = len(data) % 4
        self._key = key[rotation:] + key[:rotation]
        return result


if _frames.speedups:
    # wsproto looks the masker up in its module for every frame it parses or builds
    # outside anyws's fast path; this one gives the same bytes, 15 times faster.
    _frame_protocol.XorMaskerSimple = _Masker  # type: ignore[misc,assignment]


class Protocol:
    """One side of a WebSocket connection after the handshake.

    wsproto's connection is created only when a frame needs it: a fragmented message
    sent or received, a frame the fast path cannot judge (including every protocol
    error), or anything at all when ``_fast`` is false. Until then, whole messages,
    Pings, Pongs and the closing handshake go through :mod:`anyws._frames`, and the
    state wsproto would be in follows from :attr:`close_sent` and :attr:`close_rcvd`.

    Args:
        is_client: which side this is; clients mask what they send.
        on_data: called with each data fragment received (``str`` for text) and
            whether it ends its message.
        on_pong: called with the payload of each Pong received.
        deflate: the agreed permessage-deflate parameters, or ``None``.
        settings: how to compress, when ``deflate`` is set.
        max_size: the largest message accepted, in bytes; ``None`` for no limit.
    """

    __slots__ = (
        "_compress",
        "_deflate",
        "_fast",
        "_frame_buffer",
        "_frame_decoder",
        "_inflate",
        "_limit",
        "_max_size",
        "_message_decoder",
        "_on_data",
        "_on_pong",
        "_pieces",
        "_pieces_needed",
        "_pieces_size",
        "_reply",
        "_ws",
        "_ws_frames",
        "close_rcvd",
        "close_rcvd_then_sent",
        "close_sent",
        "failure",
        "is_client",
        "state",
    )

    # Set when wsproto's connection is created.
    _ws_frames: _frame_protocol.FrameProtocol
    _frame_decoder: _frame_protocol.FrameDecoder
    _frame_buffer: _frame_protocol.Buffer
    _message_decoder: _frame_protocol.MessageDecoder
    # Set when a plain frame is cut short.
    _pieces_size: int
    _pieces_needed: int

    def __init__(
        self,
        is_client: bool,
        on_data: Callable[[str | bytes, bool], object],
        on_pong: Callable[[bytes], object],
        *,
        deflate: DeflateParams | None = None,
        settings: DeflateSettings | None = None,
        max_size: int | None = None,
    ) -> None:
        self.is_client = is_client
        self._on_data = on_data
        self._on_pong = on_pong
        self._max_size = max_size
        self._ws: _WSConnection | None = None
        # The fast path (anyws._frames) applies while wsproto, if it exists, has no
        # partial frame or message pending.
        self._fast = True
        self._pieces: list[bytes | memoryview] | None = (
            None  # a plain frame cut short, so far
        )
        self._reply = b""  # the answers to the control frames parsed so far
        self._limit: _MessageLimit | None = None
        self._deflate: _PerMessageDeflate | None = None
        self._inflate: Callable[[bytes], bytes] | None = None
        self._compress: Callable[[bytes], bytes] | None = None
        if deflate is not None:
            from ._handshake import DeflateSettings

            self._limit = _MessageLimit(max_size)
            self._deflate = _PerMessageDeflate(
                is_client, deflate, settings or DeflateSettings(), self._limit
            )
            self._inflate = self._deflate.inflate_message
            self._compress = self._deflate.compress_message
        self.state = State.OPEN
        self.close_rcvd: Close | None = None
        self.close_sent: Close | None = None
        self.close_rcvd_then_sent: bool | None = None
        self.failure: ProtocolError | PayloadTooBig | None = None
        """Why this side failed the connection, if it did."""

    def _wsproto(self) -> _WSConnection:
        """Return wsproto's connection, created in the state this side is in."""
        ws = self._ws
        if ws is not None:
            return ws
        limit = self._limit
        if limit is None:
            limit = self._limit = _MessageLimit(self._max_size)
        extensions: list[Extension] = [limit]
        if self._deflate is not None:
            extensions.insert(0, self._deflate)
        kind = ConnectionType.CLIENT if self.is_client else ConnectionType.SERVER
        ws = _WSConnection(kind, extensions)
        if self.close_sent is not None:
            # This side sent a Close frame: wsproto's connection must not send
            # another, nor anything else (section 5.5.1).
            ws.send(CloseConnection(CloseReason.NORMAL_CLOSURE))
            if self.close_rcvd is not None:
                # And received one: the closing handshake is over.
                ws.receive_data(_frames.control_frame(0x88, b"", not self.is_client))
                for _ in ws.events():
                    pass
        frames = ws._proto
        self._ws_frames = frames
        self._frame_decoder = frames._frame_decoder
        self._frame_buffer = frames._frame_decoder.buffer
        self._message_decoder = frames._message_decoder
        self._ws = ws
        return ws

    def _open_for_sending(self) -> bool:
        """Whether wsproto's connection is, or would be, OPEN."""
        ws = self._ws
        if ws is None:
            return self.close_sent is None
        return ws.state is ConnectionState.OPEN

    def receive_data(self, data: bytes | memoryview) -> bytes:
        """Process bytes from the peer; return the bytes to send in answer.

        ``data`` may be a memoryview of a buffer that is reused once this returns:
        nothing keeps a reference to it.
        """
        if self.state is State.CLOSED or self.close_rcvd is not None:
            return b""  # Section 5.5.1: nothing after a Close frame is processed.
        if self.failure is not None:
            return b""
        pieces = self._pieces
        if not pieces:
            return self._receive(data)
        # The rest of a frame cut short: wait until it is whole, then parse it alone
        # and the bytes after it in place, so that no byte is copied twice.
        missing = self._pieces_needed - self._pieces_size
        if len(data) < missing:
            pieces.append(data if type(data) is bytes else bytes(data))
            self._pieces_size += len(data)
            return b""
        pieces.append(data[:missing])
        frame = b"".join(pieces)
        self._pieces = None
        out = self._receive(frame)
        if missing == len(data):
            return out
        return out + self.receive_data(memoryview(data)[missing:])

    def _receive(self, data: bytes | memoryview) -> bytes:
        """Process bytes that start at a frame boundary."""
        if not self._fast:
            return self._slow(data)
        if self._ws is not None and (
            self._frame_buffer.buffer
            or self._frame_decoder.header is not None
            or self._message_decoder.opcode is not None
        ):
            return self._slow(data)
        try:
            used, needed = _frames.parse(
                data,
                not self.is_client,
                self._max_size,
                self._on_data,
                self._inflate,
                self._control,
            )
        except _frames.Failed as exc:
            # A compressed message was bad; wsproto never saw it, so fail here.
            out = self._reply
            self._reply = b""
            return out + self._failed(exc.code, exc.reason)
        out = self._reply
        if out:
            self._reply = b""
        if used == len(data) or self.close_rcvd is not None:
            return out
        if needed:
            rest = bytes(data[used:])
            self._pieces = [rest]
            self._pieces_size = len(rest)
            self._pieces_needed = len(rest) + 1 if needed == _frames.WAIT else needed
            return out
        return out + self._slow(data[used:])

    def _slow(self, data: bytes | memoryview) -> bytes:
        """Process bytes through wsproto."""
        self._wsproto().receive_data(data if type(data) is bytes else bytes(data))
        return self._process_events()

    def _control(self, opcode: int, payload: bytes) -> bool:
        """Answer a control frame from the fast path; return whether it was taken."""
        if opcode == 9:
            # Section 5.5.2: a Ping gets a Pong, unless this side sent a Close.
            if self._open_for_sending():
                self._reply += _frames.control_frame(0x8A, payload, self.is_client)
            return True
        if opcode == 10:
            self._on_pong(payload if type(payload) is bytes else bytes(payload))
            return True
        if self._ws is not None:
            return False  # wsproto's connection follows the closing handshake
        close = _frames.parse_close(payload)
        if close is None:
            return False  # invalid: wsproto reports the error
        self._reply += self._closed_by_peer(*close, self.close_sent is None)
        return True

    def _process_events(self) -> bytes:
        ws = self._ws
        assert ws is not None
        out = b""
        on_data = self._on_data
        for event in ws.events():
            kind = type(event)
            if kind is TextMessage or kind is BytesMessage:
                on_data(event.data, event.message_finished)  # type: ignore[attr-defined]
            elif kind is Ping:
                if ws.state is ConnectionState.OPEN:
                    out += ws.send(Pong(event.payload))  # type: ignore[attr-defined]
            elif kind is Pong:
                self._on_pong(bytes(event.payload))  # type: ignore[attr-defined]
            else:
                assert isinstance(event, CloseConnection)
                out += self._received_close(event)
                break
        return out

    def _received_close(self, event: CloseConnection) -> bytes:
        ws = self._ws
        assert ws is not None
        code = int(event.code)
        reason = event.reason or ""
        if code == _STAND_IN_FOR_1014:
            limit = self._limit
            if limit is not None and limit.stood_in_for_1014:
                code = 1014
        if ws.state is ConnectionState.REMOTE_CLOSING:
            return self._closed_by_peer(code, reason, True)
        if ws.state is ConnectionState.CLOSED:
            return self._closed_by_peer(code, reason, False)
        # A frame broke the protocol: wsproto reports it as a Close event while the
        # connection is still open.
        return self._failed(code, reason)

    def _closed_by_peer(self, code: int, reason: str, answer: bool) -> bytes:
        """Record a valid Close frame; ``answer`` it unless it answers ours."""
        self.close_rcvd = Close(code, reason)
        self.state = State.CLOSING
        if not answer:
            # The peer answers the Close we sent.
            self.close_rcvd_then_sent = False
            return b""
        # The peer starts the closing handshake: echo its code (section 5.5.1), or
        # send no code if it sent none.
        self.close_rcvd_then_sent = True
        self.close_sent = Close(code, "")
        ws = self._ws
        if ws is not None:
            return ws.send(
                CloseConnection(CloseReason.NO_STATUS_RCVD if code == 1005 else code)
            )
        payload = b"" if code == 1005 else code.to_bytes(2, "big")
        return _frames.control_frame(0x88, payload, self.is_client)

    def _failed(self, code: int, reason: str) -> bytes:
        """Fail the connection (section 7.1.7) with ``code``."""
        error = None if self._limit is None else self._limit.error
        if code == CloseCode.MESSAGE_TOO_BIG and error is not None:
            self.failure = error
            reason = "message too big"
        else:
            if reason == "error in extension":
                reason = (
                    "invalid compressed data" if code == 1007 else "bad extension data"
                )
            self.failure = ProtocolError(reason, code)
        if self._open_for_sending():
            self.state = State.CLOSING
            return self._send_close(code, reason)
        return b""

    def _send_close(self, code: int, reason: str) -> bytes:
        if (
            self._ws is None
            and self._fast
            and isinstance(code, int)
            and 0 <= code < 65536
            and code is not CloseReason.NO_STATUS_RCVD
            and isinstance(reason, str)
        ):
            data = self._close_frame(code, reason)
        else:
            data = self._wsproto().send(CloseConnection(code, reason))
        sent_reason = reason.encode()[:123].decode(errors="ignore")
        self.close_sent = Close(code, sent_reason)
        if self.close_rcvd is not None:
            self.close_rcvd_then_sent = True
        return data

    def _close_frame(self, code: int, reason: str) -> bytes:
        """The Close frame wsproto would send for ``code`` and ``reason``."""
        if code in _LOCAL_ONLY:
            code = CloseCode.NORMAL_CLOSURE  # as wsproto does
        encoded = reason.encode()
        if len(encoded) > 123:
            # Section 5.5: the reason fits in 123 bytes, cut at a character boundary.
            encoded = encoded[:123].decode(errors="ignore").encode()
        payload = code.to_bytes(2, "big") + encoded
        return _frames.control_frame(0x88, payload, self.is_client)

    @property
    def closing_handshake_done(self) -> bool:
        """Whether Close frames went both ways."""
        return self.close_rcvd is not None and self.close_sent is not None

    # -- sending (rule 2) ----------------------------------------------------

    def can_send_data(self) -> bool:
        """Whether data, Ping and Pong frames may be sent now."""
        return self.state is State.OPEN and self._open_for_sending()

    def send_data(
        self, data: str | bytes | bytearray | memoryview, fin: bool = True
    ) -> bytes:
        """Return one data frame; ``data`` is ``str`` for text frames."""
        if fin and self._fast:
            ws = self._ws
            if ws is None:
                if self.close_sent is None:
                    return _frames.serialize(data, self.is_client, self._compress)
            elif (
                self._ws_frames._outbound_opcode is None
                and ws.state is ConnectionState.OPEN
            ):
                return _frames.serialize(data, self.is_client, self._compress)
        ws = self._wsproto()
        if isinstance(data, str):
            return ws.send(TextMessage(data, message_finished=fin))
        return ws.send(BytesMessage(data, message_finished=fin))  # type: ignore[arg-type]

    def send_ping(self, payload: bytes) -> bytes:
        """Return a Ping frame."""
        if self._sends_control(payload):
            return _frames.control_frame(0x89, payload, self.is_client)
        return self._wsproto().send(Ping(payload))

    def send_pong(self, payload: bytes) -> bytes:
        """Return a Pong frame."""
        if self._sends_control(payload):
            return _frames.control_frame(0x8A, payload, self.is_client)
        return self._wsproto().send(Pong(payload))

    def _sends_control(self, payload: bytes) -> bool:
        """Whether the fast path sends a Ping or Pong with ``payload``."""
        return (
            self._ws is None
            and self._fast
            and self.close_sent is None
            and isinstance(payload, (bytes, bytearray))
            and len(payload) <= 125
        )

    def send_close(self, code: int, reason: str) -> bytes:
        """Start the closing handshake; return the Close frame (empty if too late)."""
        if self._ws is None and not self._fast:
            self._wsproto()
        if not self._open_for_sending():
            return b""
        self.state = State.CLOSING
        return self._send_close(code, reason)

    def connection_lost(self) -> None:
        """Record that the transport is gone."""
        self.state = State.CLOSED

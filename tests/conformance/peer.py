"""A raw WebSocket peer: frames built and parsed by hand over a plain anyio stream.

Nothing here uses a WebSocket library, so the peer can send what no library would
(reserved bits, reserved opcodes, broken UTF-8, partial frames) and check every bit
of what anyws sends back: masking, reserved bits, control frame sizes, compression.
Every deviation that anyws is responsible for raises :exc:`CaseFailed`; deviations
the RFC allows but that are not the strictest behaviour are recorded with
:meth:`RawPeer.non_strict`.
"""

from __future__ import annotations

import base64
import dataclasses
import hashlib
import os
import struct
import zlib
from typing import TYPE_CHECKING

import anyio

from ..helpers import frame, mask_bytes

if TYPE_CHECKING:
    from anyio.abc import ByteStream, TaskGroup

OP_CONT, OP_TEXT, OP_BINARY, OP_CLOSE, OP_PING, OP_PONG = 0, 1, 2, 8, 9, 10
RSV1, RSV2, RSV3 = 4, 2, 1  # values of the 3-bit RSV field (RSV1 is the high bit)

GUID = b"258EAFA5-E914-47DA-95CA-C5AB0DC85B11"
# RFC 7692 section 7.2.1: the tail a sender removes after a sync flush.
DEFLATE_TAIL = b"\x00\x00\xff\xff"
READ_SIZE = 2**20


class CaseFailed(Exception):
    """Raised when anyws does something the RFC forbids (the verdict is FAILED)."""


def build_frame(
    opcode: int,
    payload: bytes = b"",
    *,
    fin: bool = True,
    rsv: int = 0,
    masked: bool = True,
) -> bytes:
    """Build one frame (RFC 6455 section 5.2), masked with a random key."""
    return frame(opcode, payload, fin=fin, rsv=rsv, mask=masked)


def close_payload(code: int, reason: bytes = b"") -> bytes:
    """The payload of a Close frame."""
    return struct.pack("!H", code) + reason


@dataclasses.dataclass
class Frame:
    """A frame received from anyws."""

    fin: bool
    rsv: int
    opcode: int
    payload: bytes

    @property
    def close_code(self) -> int | None:
        """The code of a Close frame; ``None`` when its payload is empty."""
        if len(self.payload) < 2:
            return None
        code: int = struct.unpack("!H", self.payload[:2])[0]
        return code

    def describe(self) -> str:
        """A short description for failure messages."""
        names = {0: "continuation", 1: "text", 2: "binary", 8: "close", 9: "ping"}
        name = names.get(self.opcode, "pong" if self.opcode == 10 else "?")
        if self.opcode == OP_CLOSE:
            return f"close frame with code {self.close_code}"
        return f"{name} frame of {len(self.payload)} bytes"


# -- permessage-deflate (RFC 7692) ------------------------------------------------


@dataclasses.dataclass(frozen=True)
class DeflateParams:
    """permessage-deflate parameters, as offered or as answered.

    ``client_max_window_bits`` is ``0`` for the parameter without a value, which
    only an offer may carry (RFC 7692 section 7.1.2.2).
    """

    server_no_context_takeover: bool = False
    client_no_context_takeover: bool = False
    server_max_window_bits: int | None = None
    client_max_window_bits: int | None = None

    def header(self) -> str:
        """The Sec-WebSocket-Extensions value for these parameters."""
        parts = ["permessage-deflate"]
        if self.server_no_context_takeover:
            parts.append("server_no_context_takeover")
        if self.client_no_context_takeover:
            parts.append("client_no_context_takeover")
        if self.server_max_window_bits is not None:
            parts.append(f"server_max_window_bits={self.server_max_window_bits}")
        if self.client_max_window_bits == 0:
            parts.append("client_max_window_bits")
        elif self.client_max_window_bits is not None:
            parts.append(f"client_max_window_bits={self.client_max_window_bits}")
        return "; ".join(parts)


def parse_extensions(value: str) -> list[tuple[str, list[tuple[str, str | None]]]]:
    """Parse a Sec-WebSocket-Extensions value (no quoted commas are expected)."""
    result: list[tuple[str, list[tuple[str, str | None]]]] = []
    for item in value.split(","):
        if not item.strip():
            continue
        name, *params = (part.strip() for part in item.split(";"))
        parsed: list[tuple[str, str | None]] = []
        for param in params:
            key, sep, raw = param.partition("=")
            parsed.append((key.strip(), raw.strip().strip('"') if sep else None))
        result.append((name, parsed))
    return result


def _bits(value: str | None, *, allow_none: bool) -> int:
    if value is None and allow_none:
        return 0
    if value is None or not value.isdigit() or value.startswith("0"):
        raise CaseFailed(f"invalid window bits value: {value!r}")
    if not 8 <= int(value) <= 15:
        raise CaseFailed(f"window bits out of range: {value}")
    return int(value)


def parse_deflate(
    params: list[tuple[str, str | None]], *, in_offer: bool
) -> DeflateParams:
    """Turn permessage-deflate parameters into :class:`DeflateParams`, strictly."""
    seen: set[str] = set()
    fields: dict[str, object] = {}
    for key, value in params:
        if key in seen:
            raise CaseFailed(f"duplicate permessage-deflate parameter {key}")
        seen.add(key)
        if key in ("server_no_context_takeover", "client_no_context_takeover"):
            if value is not None:
                raise CaseFailed(f"{key} must not have a value")
            fields[key] = True
        elif key == "server_max_window_bits":
            fields[key] = _bits(value, allow_none=False)
        elif key == "client_max_window_bits":
            fields[key] = _bits(value, allow_none=in_offer)
        else:
            raise CaseFailed(f"unknown permessage-deflate parameter {key}")
    return DeflateParams(**fields)  # type: ignore[arg-type]


def check_deflate_answer(offer: DeflateParams, answer: DeflateParams) -> None:
    """Check a server's answer against the offer it accepts (RFC 7692 section 7.1)."""
    if offer.server_no_context_takeover and not answer.server_no_context_takeover:
        raise CaseFailed("server_no_context_takeover offered but not in the answer")
    offered_server_bits = offer.server_max_window_bits
    if offered_server_bits is not None and (
        answer.server_max_window_bits is None
        or answer.server_max_window_bits > offered_server_bits
    ):
        raise CaseFailed(
            f"server_max_window_bits={offered_server_bits} offered, "
            f"answer has {answer.server_max_window_bits}"
        )
    answered_client_bits = answer.client_max_window_bits
    if answered_client_bits is not None:
        if offer.client_max_window_bits is None:
            raise CaseFailed("client_max_window_bits in the answer but not offered")
        if offer.client_max_window_bits and (
            answered_client_bits > offer.client_max_window_bits
        ):
            raise CaseFailed(
                f"client_max_window_bits={offer.client_max_window_bits} offered, "
                f"answer has {answered_client_bits}"
            )


def inflate_in_window(decompressor: zlib._Decompress, data: bytes) -> bytes:
    """Inflate ``data`` in small steps, so that the window limit holds.

    zlib resolves a back-reference from the output of the current call as well
    as from its window; asked for at most 256 bytes a call, it can only reach
    the window (and those 256 bytes), so a reference that is too far back fails.
    """
    parts: list[bytes] = []
    while True:
        part = decompressor.decompress(data, 256)
        data = decompressor.unconsumed_tail
        if not part and not data:
            return b"".join(parts)
        parts.append(part)


class DeflateCodec:
    """One side's permessage-deflate state, made from the agreed parameters.

    The peer compresses within the window it is allowed (Huffman-only coding for an
    8-bit window, which zlib cannot compress with) and inflates with exactly the
    window it allowed anyws, so that a wider window or a context kept against
    ``no_context_takeover`` makes inflation fail and the case with it.
    """

    def __init__(self, agreed: DeflateParams, *, is_client: bool) -> None:
        client_bits = agreed.client_max_window_bits or 15
        server_bits = agreed.server_max_window_bits or 15
        if is_client:
            self.send_bits, self.recv_bits = client_bits, server_bits
            self.send_nct = agreed.client_no_context_takeover
            self.recv_nct = agreed.server_no_context_takeover
        else:
            self.send_bits, self.recv_bits = server_bits, client_bits
            self.send_nct = agreed.server_no_context_takeover
            self.recv_nct = agreed.client_no_context_takeover
        self.agreed = agreed
        self._compressor: zlib._Compress | None = None
        self._decompressor: zlib._Decompress | None = None

    def compress(self, data: bytes) -> bytes:
        """Compress one whole message, without the tail (section 7.2.1)."""
        if self._compressor is None:
            strategy = zlib.Z_HUFFMAN_ONLY if self.send_bits == 8 else 0
            self._compressor = zlib.compressobj(
                6, zlib.DEFLATED, -max(self.send_bits, 9), 8, strategy
            )
        out = self._compressor.compress(data) + self._compressor.flush(
            zlib.Z_SYNC_FLUSH
        )
        if self.send_nct:
            self._compressor = None
        assert out.endswith(DEFLATE_TAIL)
        return out[:-4]

    def decompress(self, payload: bytes) -> bytes:
        """Inflate one whole message received from anyws."""
        if self._decompressor is None:
            self._decompressor = zlib.decompressobj(-self.recv_bits)
        try:
            data = inflate_in_window(self._decompressor, payload + DEFLATE_TAIL)
        except zlib.error as exc:
            raise CaseFailed(
                f"anyws sent data that does not inflate with a "
                f"{self.recv_bits}-bit window "
                f"(no_context_takeover={self.recv_nct}): {exc}"
            ) from None
        if self.recv_nct:
            self._decompressor = None
        return data


# -- the peer ----------------------------------------------------------------


class RawPeer:
    """A hand-written WebSocket endpoint on a byte stream.

    A task started in ``task_group`` reads the stream all the time into
    :attr:`buffer`. So what anyws sends is kept even if the peer's own writes fail
    afterwards (on asyncio, a write that meets a reset closes the socket and
    drops whatever the kernel still held unread), and a failing anyws endpoint
    never sees its Close frame blocked by a peer that doesn't read.

    Args:
        stream: the connected byte stream.
        is_client: whether this peer is the client (it masks what it sends and
            expects unmasked frames).
        task_group: where the reading task runs; it ends with the stream.
    """

    def __init__(
        self, stream: ByteStream, *, is_client: bool, task_group: TaskGroup
    ) -> None:
        self.stream = stream
        self.is_client = is_client
        self.buffer = bytearray()
        self._arrived = anyio.Event()
        task_group.start_soon(self._pump)
        self.codec: DeflateCodec | None = None
        self.notes: list[tuple[str, str]] = []
        self.head = b""  # the HTTP head received in the opening handshake
        self.eof = False
        self.close_built = False  # this peer has sent (built) a Close frame

    def non_strict(self, note: str, detail: str = "") -> None:
        """Record a behaviour that the RFC allows but that is not the strictest."""
        self.notes.append((note, detail))

    # -- sending ---------------------------------------------------------------

    def frame(
        self,
        opcode: int,
        payload: bytes = b"",
        *,
        fin: bool = True,
        rsv: int = 0,
        masked: bool | None = None,
    ) -> bytes:
        """Build a frame, masked when this peer is the client (unless told)."""
        if opcode == OP_CLOSE:
            self.close_built = True
        masked = self.is_client if masked is None else masked
        return build_frame(opcode, payload, fin=fin, rsv=rsv, masked=masked)

    async def send(self, data: bytes) -> None:
        """Send raw bytes; a peer that has gone away is not an error here."""
        try:
            await self.stream.send(data)
        except (anyio.BrokenResourceError, anyio.ClosedResourceError, OSError):
            pass

    async def send_frame(
        self, opcode: int, payload: bytes = b"", *, fin: bool = True, rsv: int = 0
    ) -> None:
        """Send one frame."""
        await self.send(self.frame(opcode, payload, fin=fin, rsv=rsv))

    async def send_chopped(self, data: bytes, size: int) -> None:
        """Send ``data`` in writes of ``size`` bytes."""
        for start in range(0, len(data), size):
            await self.send(data[start : start + size])

    async def send_message(
        self, message: str | bytes, *, compress: bool | None = None
    ) -> None:
        """Send a message in one frame; compressed when deflate was agreed."""
        opcode = OP_TEXT if isinstance(message, str) else OP_BINARY
        payload = message.encode() if isinstance(message, str) else message
        rsv = 0
        if self.codec is not None and compress is not False:
            payload = self.codec.compress(payload)
            rsv = RSV1
        await self.send_frame(opcode, payload, rsv=rsv)

    async def send_close(self, code: int | None = 1000, reason: bytes = b"") -> None:
        """Send a Close frame (empty payload when ``code`` is ``None``)."""
        payload = b"" if code is None else close_payload(code, reason)
        await self.send_frame(OP_CLOSE, payload)

    # -- receiving -------------------------------------------------------------

    async def _pump(self) -> None:
        try:
            while True:
                self.buffer += await self.stream.receive(READ_SIZE)
                self._arrived.set()
        except (
            anyio.EndOfStream,
            anyio.BrokenResourceError,
            anyio.ClosedResourceError,
            OSError,
        ):
            self.eof = True
            self._arrived.set()

    async def _fill(self, size: int) -> bool:
        """Wait until ``size`` bytes are buffered; return False at end of stream."""
        while len(self.buffer) < size:
            if self.eof:
                return False
            self._arrived = anyio.Event()
            await self._arrived.wait()
        return True

    async def wait_data(self) -> None:
        """Wait until a byte is buffered, or the stream ends."""
        await self._fill(len(self.buffer) + 1)

    async def _take(self, size: int) -> bytes | None:
        if not await self._fill(size):
            return None
        data = bytes(self.buffer[:size])
        del self.buffer[:size]
        return data

    async def read_frame(self) -> Frame | None:
        """Read one frame and check its form; ``None`` at end of stream.

        Raises:
            CaseFailed: the frame breaks RFC 6455 section 5.
        """
        head = await self._take(2)
        if head is None:
            if self.buffer:
                raise CaseFailed("anyws closed TCP in the middle of a frame")
            return None
        b0, b1 = head
        size = b1 & 0x7F
        if size == 126:
            raw = await self._take(2)
            size = -1 if raw is None else struct.unpack("!H", raw)[0]
        elif size == 127:
            raw = await self._take(8)
            size = -1 if raw is None else struct.unpack("!Q", raw)[0]
        masked = bool(b1 & 0x80)
        key = await self._take(4) if masked else b""
        payload = await self._take(size) if size >= 0 and key is not None else None
        if payload is None:
            raise CaseFailed("anyws closed TCP in the middle of a frame")
        if masked:
            assert key is not None
            payload = mask_bytes(payload, key)
        frame = Frame(bool(b0 & 0x80), (b0 >> 4) & 7, b0 & 0x0F, payload)
        self._check_frame(frame, masked)
        return frame

    def _check_frame(self, frame: Frame, masked: bool) -> None:
        # Section 5.1: clients mask every frame, servers none.
        if masked == self.is_client:
            who = "server" if self.is_client else "client"
            raise CaseFailed(
                f"the anyws {who} sent a {'' if masked else 'un'}masked frame"
            )
        if frame.opcode in (3, 4, 5, 6, 7) or frame.opcode > 10:
            raise CaseFailed(f"anyws sent reserved opcode {frame.opcode}")
        if frame.opcode >= OP_CLOSE:
            # Section 5.5: control frames are short and never fragmented.
            if not frame.fin or len(frame.payload) > 125:
                raise CaseFailed(f"anyws sent a malformed {frame.describe()}")
            if frame.rsv:
                raise CaseFailed(f"anyws set RSV bits on a {frame.describe()}")
        elif frame.rsv & ~RSV1 or (frame.rsv and self.codec is None):
            raise CaseFailed(f"anyws set RSV bits {frame.rsv:03b} without extension")
        elif frame.rsv and frame.opcode == OP_CONT:
            raise CaseFailed("anyws set RSV1 on a continuation frame")

    async def read_message(self) -> tuple[int, bytes] | Frame | None:
        """Read a whole data message, or the first control frame that arrives.

        Returns:
            ``(opcode, payload)`` for a message (inflated when compressed), the
            control :class:`Frame`, or ``None`` at end of stream.
        """
        parts: list[bytes] = []
        opcode = compressed = None
        while True:
            frame = await self.read_frame()
            if frame is None:
                if parts:
                    raise CaseFailed("anyws closed TCP in the middle of a message")
                return None
            if frame.opcode >= OP_CLOSE:
                if parts and frame.opcode == OP_CLOSE:
                    raise CaseFailed("anyws sent a close frame inside a message")
                if not parts:
                    return frame
                continue  # a Ping or Pong between fragments
            if (frame.opcode == OP_CONT) != (opcode is not None):
                raise CaseFailed("anyws sent a badly fragmented message")
            if opcode is None:
                opcode, compressed = frame.opcode, bool(frame.rsv & RSV1)
            parts.append(frame.payload)
            if frame.fin:
                break
        payload = b"".join(parts)
        if compressed:
            assert self.codec is not None
            payload = self.codec.decompress(payload)
        if opcode == OP_TEXT:
            try:
                payload.decode()
            except UnicodeDecodeError:
                raise CaseFailed("anyws sent a text message that isn't UTF-8") from None
        return opcode, payload

    async def expect_message(self, message: str | bytes, what: str = "echo") -> None:
        """Read the next message; it must equal ``message`` (str means text)."""
        check_message(await self.read_message(), message, what)

    async def expect_pong(self, payload: bytes) -> None:
        """Read the next frame; it must be a Pong with ``payload``."""
        frame = await self.read_frame()
        if frame is None:
            raise CaseFailed("connection closed while waiting for a pong")
        if frame.opcode != OP_PONG:
            raise CaseFailed(f"expected a pong, got a {frame.describe()}")
        if frame.payload != payload:
            raise CaseFailed("the pong doesn't carry the ping's payload")

    async def expect_close(
        self,
        codes: tuple[int | None, ...],
        *,
        reply: bool = True,
        frame: Frame | None = None,
    ) -> int | None:
        """Read the next frame: a Close with one of ``codes``, then the end of TCP.

        A TCP drop without a Close frame is recorded as non-strict. With ``reply``,
        the peer answers the Close (which a peer that stopped mid-frame can't do).
        Then TCP must end: an anyws server closes it first (section 7.1.1), and so
        does an anyws client that failed the connection (with a half-close); when
        an anyws client answers this peer's Close, this peer, the server, closes
        it.

        Args:
            codes: the acceptable codes (``None`` for an empty payload).
            reply: whether to answer with a Close frame.
            frame: the frame, when the caller has read it already.

        Returns:
            The code received, or ``None`` for an empty Close payload.
        """
        if frame is None:
            frame = await self.read_frame()
        if frame is None:
            self.non_strict("dropped TCP without sending a close frame")
            return None
        if frame.opcode != OP_CLOSE:
            raise CaseFailed(f"expected a close frame, got a {frame.describe()}")
        code = frame.close_code
        if code not in codes:
            expected = " or ".join("none" if c is None else str(c) for c in codes)
            raise CaseFailed(f"expected close code {expected}, got {code}")
        if code is not None and len(frame.payload) > 2:
            try:
                frame.payload[2:].decode()
            except UnicodeDecodeError:
                raise CaseFailed("the close reason isn't UTF-8") from None
        answering = self.close_built
        if reply:
            await self.send_close(code)
        if self.is_client or not answering:
            await self.expect_eof()
        else:
            await self.aclose()
        return code

    async def expect_eof(self) -> None:
        """Read until anyws closes TCP; nothing but that may arrive."""
        frame = await self.read_frame()
        if frame is not None:
            raise CaseFailed(f"expected the end of TCP, got a {frame.describe()}")

    async def close_normally(self, code: int = 1000, reason: bytes = b"") -> None:
        """Run the closing handshake from this side; anyws must echo the code."""
        await self.send_close(code, reason)
        frame = await self.read_frame()
        if frame is None:
            raise CaseFailed("anyws dropped TCP instead of answering the close frame")
        if frame.opcode != OP_CLOSE:
            raise CaseFailed(f"expected the close echo, got a {frame.describe()}")
        if frame.close_code != code:
            if frame.close_code == 1000:
                self.non_strict("answered a close code with 1000", str(code))
            else:
                raise CaseFailed(f"close code {code} answered with {frame.close_code}")
        if not self.is_client:
            # The server closes TCP first (section 7.1.1); the client follows.
            await self.aclose()
            return
        await self.expect_eof()

    async def aclose(self) -> None:
        """Close the stream."""
        await anyio.aclose_forcefully(self.stream)

    # -- HTTP --------------------------------------------------------------------

    async def read_head(self) -> bytes:
        """Read an HTTP head; bytes after it stay buffered."""
        while (end := self.buffer.find(b"\r\n\r\n")) < 0:
            if not await self._fill(len(self.buffer) + 1):
                raise CaseFailed(f"connection closed in the HTTP head: {self.buffer!r}")
        head = bytes(self.buffer[: end + 4])
        del self.buffer[: end + 4]
        return head


def check_message(
    got: tuple[int, bytes] | Frame | None, message: str | bytes, what: str = "echo"
) -> None:
    """Check a result of :meth:`RawPeer.read_message` against ``message``."""
    opcode = OP_TEXT if isinstance(message, str) else OP_BINARY
    payload = message.encode() if isinstance(message, str) else message
    if got is None:
        raise CaseFailed(f"connection closed while waiting for the {what}")
    if isinstance(got, Frame):
        raise CaseFailed(f"expected the {what}, got a {got.describe()}")
    if got != (opcode, payload):
        kind = "text" if got[0] == OP_TEXT else "binary"
        raise CaseFailed(
            f"expected the {what} ({len(payload)} bytes), got a {kind} message "
            f"of {len(got[1])} bytes that differs"
        )


def http_headers(head: bytes) -> dict[str, list[str]]:
    """The headers of an HTTP head, by lower-case name."""
    headers: dict[str, list[str]] = {}
    for line in head.decode("latin-1").split("\r\n")[1:]:
        name, sep, value = line.partition(":")
        if sep:
            headers.setdefault(name.strip().lower(), []).append(value.strip())
    return headers


def new_key() -> str:
    """A fresh Sec-WebSocket-Key."""
    return base64.b64encode(os.urandom(16)).decode()


def accept_for(key: str | bytes) -> str:
    """The Sec-WebSocket-Accept value for ``key``."""
    raw = key.encode() if isinstance(key, str) else key
    return base64.b64encode(hashlib.sha1(raw + GUID).digest()).decode()


def upgrade_request(
    port: int, *, key: str | None = None, extra: str = "", path: str = "/"
) -> bytes:
    """A valid upgrade request, with ``extra`` header lines (each ending in CRLF)."""
    return (
        f"GET {path} HTTP/1.1\r\nHost: 127.0.0.1:{port}\r\nUpgrade: websocket\r\n"
        f"Connection: Upgrade\r\nSec-WebSocket-Key: {key or new_key()}\r\n"
        f"Sec-WebSocket-Version: 13\r\n{extra}\r\n"
    ).encode()


# -- payloads ------------------------------------------------------------------


def text_payload(size: int, seed: int = 0) -> str:
    """An ASCII text of ``size`` characters."""
    alphabet = "".join(chr(32 + (i + seed) % 95) for i in range(95))
    return (alphabet * (size // 95 + 1))[:size]


def binary_payload(size: int, seed: int = 0) -> bytes:
    """``size`` bytes covering every byte value."""
    pattern = bytes((i + seed) % 256 for i in range(256))
    return (pattern * (size // 256 + 1))[:size]

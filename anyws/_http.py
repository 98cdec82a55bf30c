"""HTTP/1.1 messages of the opening handshake: headers, requests, responses.

Only what RFC 6455 section 4 needs is parsed, strictly and within limits, because
these bytes come from anyone who can open a TCP connection:

* a line (request line, status line or header line) is at most 8 KiB;
* a message head has at most 128 header lines and 64 KiB in all;
* a response body read for :exc:`~anyws.InvalidStatus` is at most 1 MiB.

The limits match common web servers (nginx's ``large_client_header_buffers`` is
4 x 8 KiB) and are generous for any browser handshake.
"""

from __future__ import annotations

import dataclasses
import re
from collections.abc import Iterable, Iterator, Mapping, MutableMapping
from typing import TYPE_CHECKING

from anyio import BrokenResourceError, EndOfStream

from .exceptions import InvalidMessage, SecurityError

if TYPE_CHECKING:
    from anyio.abc import ByteReceiveStream

__all__ = ["Headers", "HeadersLike", "MultipleValuesError", "Request", "Response"]

MAX_LINE = 8192
MAX_HEADERS = 128
MAX_HEAD = 65536
MAX_BODY = 2**20

# A connection keeps the headers of its handshake for as long as it lives. Names seen
# before are decoded once and shared by every message, and so are the values of the
# headers whose values repeat from one client to the next (a browser's User-Agent,
# say). Both caches are bounded, since clients choose what they send.
_NAMES: dict[bytes, tuple[str, bool]] = {}
_VALUES: dict[bytes, str] = {}
_MAX_CACHED = 512
_MAX_CACHED_VALUE = 256
_SHARED_VALUES = frozenset(
    {
        "accept",
        "accept-encoding",
        "accept-language",
        "cache-control",
        "connection",
        "host",
        "origin",
        "pragma",
        "sec-websocket-extensions",
        "sec-websocket-protocol",
        "sec-websocket-version",
        "upgrade",
        "user-agent",
    }
)

# RFC 9110 section 5.6.2: token = 1*tchar.
_token = re.compile(rb"[-!#$%&'*+.^_`|~0-9A-Za-z]+").fullmatch
# RFC 9110 section 5.5: field values carry visible characters, spaces and tabs.
_value = re.compile(rb"[\x09\x20-\x7e\x80-\xff]*").fullmatch
# Both at once, for the common case of a valid line.
_field_line = re.compile(
    rb"([-!#$%&'*+.^_`|~0-9A-Za-z]+):([\x09\x20-\x7e\x80-\xff]*)"
).fullmatch
# RFC 9112 section 3.2.1: origin-form = absolute-path [ "?" query ].
_origin_form = re.compile(r"/[!$&'()*+,;=:@%/?A-Za-z0-9._~-]*").fullmatch

_REASONS = {
    101: "Switching Protocols",
    200: "OK",
    204: "No Content",
    301: "Moved Permanently",
    302: "Found",
    303: "See Other",
    307: "Temporary Redirect",
    308: "Permanent Redirect",
    400: "Bad Request",
    401: "Unauthorized",
    403: "Forbidden",
    404: "Not Found",
    405: "Method Not Allowed",
    408: "Request Timeout",
    414: "URI Too Long",
    426: "Upgrade Required",
    429: "Too Many Requests",
    431: "Request Header Fields Too Large",
    500: "Internal Server Error",
    503: "Service Unavailable",
    505: "HTTP Version Not Supported",
}


class MultipleValuesError(LookupError):
    """Raised when a header that should appear once appears several times."""


class Headers(MutableMapping[str, str]):
    """HTTP headers: a case-insensitive multi-dict that keeps the order received.

    ``headers[name]`` returns the only value of ``name`` and raises
    :exc:`MultipleValuesError` when there are several; :meth:`get_all` returns every
    value. As in ``websockets``, ``headers[name] = value`` *adds* a value.
    """

    # The headers are kept as one flat list, name, value, name, value...; the
    # index by lowercase name that lookups use is built on the first lookup.
    # A connection keeps the headers of its handshake for as long as it lives, but
    # looks them up only during the handshake: then the index is dropped.
    __slots__ = ("_index", "_items")

    def __init__(self, *args: HeadersLike | None, **kwargs: str) -> None:
        self._items: list[str] = []
        self._index: dict[str, list[str]] | None = None
        for arg in args:
            if arg is not None:
                self.update(arg)
        if kwargs:
            self.update(kwargs)

    @classmethod
    def _from_items(cls, items: list[str]) -> Headers:
        """Wrap a flat list of names and values, without copying it."""
        headers = cls.__new__(cls)
        headers._items = items
        headers._index = None
        return headers

    def _lookup(self) -> dict[str, list[str]]:
        index = self._index
        if index is None:
            index = {}
            items = self._items
            for i in range(0, len(items), 2):
                index.setdefault(items[i].lower(), []).append(items[i + 1])
            self._index = index
        return index

    def _compact(self) -> None:
        """Drop the index; the next lookup builds it again."""
        self._index = None

    def update(self, *args: object, **kwargs: str) -> None:
        """Add every header of a mapping or an iterable of pairs."""
        for arg in (*args, kwargs):
            if isinstance(arg, Headers):
                pairs: Iterable[tuple[str, str]] = arg.raw_items()
            elif isinstance(arg, Mapping):
                pairs = arg.items()
            else:
                pairs = arg  # type: ignore[assignment]
            for name, value in pairs:
                self[name] = value

    def __str__(self) -> str:
        lines = [f"{name}: {value}\r\n" for name, value in self.raw_items()]
        return "".join(lines) + "\r\n"

    def __repr__(self) -> str:
        return f"{self.__class__.__name__}({list(self.raw_items())!r})"

    def copy(self) -> Headers:
        """Return a copy."""
        return Headers._from_items(self._items.copy())

    def __contains__(self, name: object) -> bool:
        return isinstance(name, str) and name.lower() in self._lookup()

    def __iter__(self) -> Iterator[str]:
        return iter(self._lookup())

    def __len__(self) -> int:
        return len(self._lookup())

    def __getitem__(self, name: str) -> str:
        values = self._lookup()[name.lower()]
        if len(values) == 1:
            return values[0]
        raise MultipleValuesError(name)

    def __setitem__(self, name: str, value: str) -> None:
        self._items += (name, value)
        if self._index is not None:
            self._index.setdefault(name.lower(), []).append(value)

    def __delitem__(self, name: str) -> None:
        key = name.lower()
        del self._lookup()[key]
        items = self._items
        kept: list[str] = []
        for i in range(0, len(items), 2):
            if items[i].lower() != key:
                kept += (items[i], items[i + 1])
        self._items = kept

    def __eq__(self, other: object) -> bool:
        if not isinstance(other, Headers):
            return NotImplemented
        return self._lookup() == other._lookup()

    __hash__ = None  # type: ignore[assignment]

    def clear(self) -> None:
        """Remove every header."""
        self._items = []
        self._index = None

    def get_all(self, name: str) -> list[str]:
        """Return every value of ``name``, in order; an empty list if absent."""
        return self._lookup().get(name.lower(), [])

    def raw_items(self) -> Iterator[tuple[str, str]]:
        """Return ``(name, value)`` pairs in the order received, repeats included."""
        items = iter(self._items)
        return zip(items, items, strict=True)


HeadersLike = Headers | Mapping[str, str] | Iterable[tuple[str, str]]
"""Anything :class:`Headers` can be built from."""


@dataclasses.dataclass
class Request:
    """The HTTP request of an opening handshake.

    Attributes:
        path: the request target, with the query string (``/chat?room=1``).
        headers: the request headers.
    """

    path: str
    headers: Headers

    @property
    def query(self) -> str:
        """The query string of :attr:`path`, without ``?``; ``""`` if none."""
        return self.path.partition("?")[2]

    def serialize(self) -> bytes:
        """Return the request as bytes, ready to send."""
        return f"GET {self.path} HTTP/1.1\r\n{self.headers}".encode("latin-1")


@dataclasses.dataclass
class Response:
    """The HTTP response of an opening handshake.

    Attributes:
        status_code: the status code, 101 when the handshake succeeds.
        reason_phrase: the reason phrase.
        headers: the response headers.
        body: the response body; empty for 101.
    """

    status_code: int
    reason_phrase: str
    headers: Headers
    body: bytes = b""

    def serialize(self) -> bytes:
        """Return the response as bytes, ready to send."""
        head = f"HTTP/1.1 {self.status_code} {self.reason_phrase}\r\n{self.headers}"
        return head.encode("latin-1") + self.body


def make_response(
    status: int, body: bytes | str = b"", headers: HeadersLike | None = None
) -> Response:
    """Build a complete response with ``Content-Length`` (and a type for text)."""
    all_headers = Headers(headers)
    if isinstance(body, str):
        body = body.encode()
        if "Content-Type" not in all_headers:
            all_headers["Content-Type"] = "text/plain; charset=utf-8"
    if status != 101 and "Content-Length" not in all_headers:
        all_headers["Content-Length"] = str(len(body))
    if status != 101 and "Connection" not in all_headers:
        all_headers["Connection"] = "close"
    return Response(status, _REASONS.get(status, "Unknown"), all_headers, body)


class HeadReader:
    """Read the head of one HTTP/1.1 message from a byte stream, within the limits.

    Bytes received after the head (the first WebSocket frames, or a body) are kept in
    :attr:`buffer` for whoever reads next.
    """

    def __init__(self, stream: ByteReceiveStream, buffer: bytes = b"") -> None:
        self.stream = stream
        self.buffer = bytearray(buffer)

    async def _fill(self, what: str) -> None:
        try:
            self.buffer += await self.stream.receive(65536)
        except EndOfStream as exc:
            raise InvalidMessage(f"connection closed while reading {what}") from exc
        except BrokenResourceError as exc:
            raise InvalidMessage(f"connection lost while reading {what}") from exc

    async def read_head(self, what: str) -> tuple[str, Headers]:
        """Return the start line and the headers; raise on malformed or oversized."""
        checked = count = 0  # complete lines checked so far, and their count
        while (end := self.buffer.find(b"\r\n\r\n", max(0, checked - 3))) < 0:
            while (eol := self.buffer.find(b"\n", checked)) >= 0:
                if eol - checked > MAX_LINE:
                    raise SecurityError(f"HTTP line over {MAX_LINE} bytes")
                checked = eol + 1
                count += 1
            if count > MAX_HEADERS + 1:
                raise SecurityError(f"more than {MAX_HEADERS} HTTP headers")
            if len(self.buffer) - checked > MAX_LINE:
                raise SecurityError(f"HTTP line over {MAX_LINE} bytes")
            if len(self.buffer) > MAX_HEAD:
                raise SecurityError(f"HTTP message head over {MAX_HEAD} bytes")
            await self._fill(what)
        head = bytes(self.buffer[: end + 2])
        del self.buffer[: end + 4]
        _check_partial_head(head)
        start, *lines = head.split(b"\r\n")[:-1]
        items: list[str] = []
        names = _NAMES
        values = _VALUES
        for line in lines:
            match = _field_line(line)
            if match is None:
                _check_field_line(line)  # raises, saying what is wrong
                continue  # pragma: no cover - _check_field_line raised
            raw_name, raw_value = match.groups()
            known = names.get(raw_name)
            if known is None:
                name = raw_name.decode("ascii")
                shared = name.lower() in _SHARED_VALUES
                if len(names) < _MAX_CACHED:
                    names[raw_name] = (name, shared)
            else:
                name, shared = known
            raw_value = raw_value.strip(b" \t")
            if shared:
                value = values.get(raw_value)
                if value is None:
                    value = raw_value.decode("latin-1")
                    if (
                        len(values) < _MAX_CACHED
                        and len(raw_value) <= _MAX_CACHED_VALUE
                    ):
                        values[raw_value] = value
            else:
                value = raw_value.decode("latin-1")
            items += (name, value)
        return start.decode("latin-1"), Headers._from_items(items)

    async def read_request(self) -> Request:
        """Read a WebSocket upgrade request: ``GET <origin-form> HTTP/1.1``."""
        start, headers = await self.read_head("HTTP request")
        method, target, version = _split_start(start, "request line")
        if version != "HTTP/1.1":
            raise InvalidMessage(f"unsupported HTTP version: {version}")
        if method != "GET":
            raise InvalidMethod(method)
        if not _origin_form(target):
            raise InvalidMessage(f"request target isn't in origin-form: {target}")
        return Request(target, headers)

    async def read_response(self) -> Response:
        """Read a response head; then its body too unless the status is 101."""
        start, headers = await self.read_head("HTTP response")
        version, code, reason = _split_start(start, "status line")
        if version not in ("HTTP/1.1", "HTTP/1.0"):
            raise InvalidMessage(f"unsupported HTTP version: {version}")
        if not (len(code) == 3 and code.isdigit()):
            raise InvalidMessage(f"invalid HTTP status code: {code}")
        response = Response(int(code), reason, headers)
        if response.status_code != 101:
            response.body = await self._read_body(headers)
        return response

    async def _read_body(self, headers: Headers) -> bytes:
        if "chunked" in headers.get("Transfer-Encoding", "").lower():
            return await self._read_chunked()
        if "Content-Length" in headers:
            length = headers["Content-Length"]
            if not length.isdigit():
                raise InvalidMessage(f"invalid Content-Length: {length}")
            size = int(length)
            if size > MAX_BODY:
                raise SecurityError(f"response body over {MAX_BODY} bytes")
            while len(self.buffer) < size:
                await self._fill("HTTP response body")
            body = bytes(self.buffer[:size])
            del self.buffer[:size]
            return body
        # No length: the body runs to the end of the connection (RFC 9112 6.3).
        try:
            while len(self.buffer) <= MAX_BODY:
                self.buffer += await self.stream.receive(65536)
        except EndOfStream:
            body = bytes(self.buffer)
            self.buffer.clear()
            return body
        raise SecurityError(f"response body over {MAX_BODY} bytes")

    async def _read_chunked(self) -> bytes:
        body = bytearray()
        while True:
            while (eol := self.buffer.find(b"\r\n")) < 0:
                if len(self.buffer) > MAX_LINE:
                    raise SecurityError("chunk size line too long")
                await self._fill("HTTP response body")
            size_text = bytes(self.buffer[:eol]).split(b";")[0].strip()
            try:
                size = int(size_text, 16)
            except ValueError:
                raise InvalidMessage(
                    f"invalid chunk size: {_show(size_text)}"
                ) from None
            if len(body) + size > MAX_BODY:
                raise SecurityError(f"response body over {MAX_BODY} bytes")
            while len(self.buffer) < eol + 2 + size + 2:
                await self._fill("HTTP response body")
            body += self.buffer[eol + 2 : eol + 2 + size]
            del self.buffer[: eol + 2 + size + 2]
            if size == 0:
                return bytes(body)


class InvalidMethod(InvalidMessage):
    """Raised when a handshake request uses a method other than GET."""

    def __init__(self, method: str) -> None:
        super().__init__(f"invalid HTTP method; expected GET; got {method}")
        self.method = method


def _check_field_line(line: bytes) -> None:
    """Raise the error that a malformed header line calls for."""
    name, sep, value = line.partition(b":")
    if not sep or not _token(name):
        raise InvalidMessage(f"invalid HTTP header line: {_show(line)}")
    if not _value(value.strip(b" \t")):
        raise InvalidMessage(f"invalid HTTP header value: {_show(line)}")


def _check_partial_head(data: bytes | bytearray) -> None:
    if len(data) > MAX_HEAD:
        raise SecurityError(f"HTTP message head over {MAX_HEAD} bytes")
    lines = data.count(b"\n")
    if lines > MAX_HEADERS + 1:
        raise SecurityError(f"more than {MAX_HEADERS} HTTP headers")
    # No line, the last one included, may be longer than MAX_LINE.
    if len(data) > MAX_LINE and max(map(len, data.split(b"\n"))) > MAX_LINE:
        raise SecurityError(f"HTTP line over {MAX_LINE} bytes")


def _split_start(line: str, what: str) -> tuple[str, str, str]:
    parts = line.split(" ", 2)
    if len(parts) != 3:
        raise InvalidMessage(f"invalid HTTP {what}: {line[:200]!r}")
    return parts[0], parts[1], parts[2]


def _show(data: bytes) -> str:
    return repr(data[:200])[2:-1]

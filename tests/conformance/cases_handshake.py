"""Handshake cases (H): RFC 6455 section 4, and RFC 7692 section 7 answers.

Server side: requests that aren't valid upgrades get a 4xx response and the end of
the connection, and the server keeps serving (the harness connects a well-behaved
client after every case). Valid but unusual requests succeed.

Client side: responses that don't complete the handshake make the anyws client
raise the :exc:`~anyws.InvalidHandshake` subclass that fits, and close TCP without
sending anything. Valid but unusual responses succeed.
"""

from __future__ import annotations

import re
from typing import TYPE_CHECKING

import anyws

from .harness import CLIENT, SERVER, Case, ClientSide, ServerSide, check_client_request
from .peer import (
    OP_TEXT,
    CaseFailed,
    RawPeer,
    accept_for,
    http_headers,
    new_key,
    upgrade_request,
)

if TYPE_CHECKING:
    from collections.abc import Awaitable, Callable

    from .harness import Side

    Run = Callable[[Side], Awaitable[None]]

CASES: list[Case] = []


def _add(id: str, description: str, run: Run, **options: object) -> None:
    CASES.append(Case(id, description, run, **options))  # type: ignore[arg-type]


# -- server side -------------------------------------------------------------------


def _request(
    *,
    line: str = "GET / HTTP/1.1",
    drop: tuple[str, ...] = (),
    replace: dict[str, str] | None = None,
    add: str = "",
) -> Callable[[int], bytes]:
    """A request builder: a valid upgrade request, changed as told."""

    def build(port: int) -> bytes:
        text = upgrade_request(port).decode()
        head, _, _ = text.partition("\r\n\r\n")
        lines = head.split("\r\n")[1:]
        kept = [h for h in lines if h.split(":")[0].lower() not in drop]
        for name, value in (replace or {}).items():
            kept = [
                f"{name}: {value}" if h.split(":")[0].lower() == name.lower() else h
                for h in kept
            ]
        return ("\r\n".join([line, *kept]) + "\r\n" + add + "\r\n").encode()

    return build


async def _read_response(peer: RawPeer) -> tuple[int, dict[str, list[str]], bytes]:
    head = await peer.read_head()
    match = re.match(rb"HTTP/1\.1 (\d{3}) ", head)
    if match is None:
        raise CaseFailed(f"not an HTTP/1.1 response: {head[:80]!r}")
    headers = http_headers(head)
    body = bytes(peer.buffer)
    peer.buffer.clear()
    while not peer.eof:
        await peer.wait_data()
        body += bytes(peer.buffer)
        peer.buffer.clear()
    return int(match.group(1)), headers, body


def refused(
    build: Callable[[int], bytes],
    *,
    statuses: tuple[int, ...] = (),
    headers: dict[str, str] | None = None,
) -> Run:
    """A case: ``build``'s request gets a 4xx response (one of ``statuses`` when
    given), with ``headers``, a body of its Content-Length, then the end of TCP."""

    async def run(side: Side) -> None:
        assert isinstance(side, ServerSide)
        peer = await side.open_raw()
        await peer.send(build(side.port))
        status, got, body = await _read_response(peer)
        if not 400 <= status < 500 or (statuses and status not in statuses):
            raise CaseFailed(f"answered HTTP {status}")
        for name, value in (headers or {}).items():
            if got.get(name.lower()) != [value]:
                raise CaseFailed(f"HTTP {status} without {name}: {value}")
        if got.get("content-length", [str(len(body))]) != [str(len(body))]:
            raise CaseFailed("the body doesn't match Content-Length")

    return run


def accepted(build: Callable[[int], bytes], *, chop: int | None = None) -> Run:
    """A case: ``build``'s unusual but valid request succeeds; a message is echoed.

    The first frame goes in the same write as the request.
    """

    async def run(side: Side) -> None:
        assert isinstance(side, ServerSide)
        peer = await side.open_raw()
        key_request = build(side.port)
        data = key_request + peer.frame(OP_TEXT, b"first frame")
        if chop is None:
            await peer.send(data)
        else:
            await peer.send_chopped(data, chop)
        head = await peer.read_head()
        if not head.startswith(b"HTTP/1.1 101 "):
            raise CaseFailed(f"refused: {head.splitlines()[0]!r}")
        key = http_headers(key_request)["sec-websocket-key"][0]
        if http_headers(head).get("sec-websocket-accept") != [accept_for(key)]:
            raise CaseFailed("wrong Sec-WebSocket-Accept")
        await peer.expect_message("first frame")
        await peer.close_normally()

    return run


_SERVER_REFUSALS: list[tuple[str, str, Run]] = [
    ("1.1", "missing Upgrade header", refused(_request(drop=("upgrade",)))),
    ("1.2", "Upgrade: h2c", refused(_request(replace={"Upgrade": "h2c"}))),
    ("1.3", "missing Connection header", refused(_request(drop=("connection",)))),
    (
        "1.4",
        "Connection: keep-alive",
        refused(_request(replace={"Connection": "keep-alive"})),
    ),
    (
        "2.1",
        "Sec-WebSocket-Version: 8: 426 with version 13",
        refused(
            _request(replace={"Sec-WebSocket-Version": "8"}),
            statuses=(426,),
            headers={"Sec-WebSocket-Version": "13"},
        ),
    ),
    (
        "2.2",
        "missing Sec-WebSocket-Version",
        refused(_request(drop=("sec-websocket-version",))),
    ),
    (
        "2.3",
        "Sec-WebSocket-Version: 13, 8",
        refused(_request(replace={"Sec-WebSocket-Version": "13, 8"})),
    ),
    (
        "3.1",
        "missing Sec-WebSocket-Key",
        refused(_request(drop=("sec-websocket-key",))),
    ),
    (
        "3.2",
        "Sec-WebSocket-Key that isn't base64",
        refused(_request(replace={"Sec-WebSocket-Key": "not base64 at all!!"})),
    ),
    (
        "3.3",
        "Sec-WebSocket-Key of 15 bytes",
        refused(_request(replace={"Sec-WebSocket-Key": "AAAAAAAAAAAAAAAAAAAA"})),
    ),
    (
        "3.4",
        "two Sec-WebSocket-Key headers",
        refused(_request(add=f"Sec-WebSocket-Key: {new_key()}\r\n")),
    ),
    ("4.1", "POST", refused(_request(line="POST / HTTP/1.1"))),
    ("4.2", "HEAD", refused(_request(line="HEAD / HTTP/1.1"))),
    ("5.1", "HTTP/1.0", refused(_request(line="GET / HTTP/1.0"))),
    ("5.2", "HTTP/2.0 in the request line", refused(_request(line="GET / HTTP/2.0"))),
    (
        "6.1",
        "absolute-form request target",
        refused(_request(line="GET http://127.0.0.1/ HTTP/1.1")),
    ),
    ("6.2", "asterisk-form request target", refused(_request(line="GET * HTTP/1.1"))),
    (
        "6.3",
        "authority-form request target",
        refused(_request(line="GET 127.0.0.1:80 HTTP/1.1")),
    ),
    ("7.1", "missing Host header", refused(_request(drop=("host",)))),
    ("7.2", "garbage request line", refused(_request(line="HELLO"))),
    ("7.3", "header line without a colon", refused(_request(add="NoColonHere\r\n"))),
]
for _id, _what, _run in _SERVER_REFUSALS:
    _add(f"H.{_id}", f"request with {_what}: 4xx", _run, sides=SERVER)

_SERVER_ACCEPTS: list[tuple[str, str, Run]] = [
    (
        "8.1",
        "Connection: keep-alive, Upgrade",
        accepted(_request(replace={"Connection": "keep-alive, Upgrade"})),
    ),
    ("8.2", "Upgrade: WebSocket", accepted(_request(replace={"Upgrade": "WebSocket"}))),
    (
        "8.3",
        "header names in odd case",
        accepted(
            lambda port: (
                _request()(port)
                .replace(b"Sec-WebSocket-Key", b"sec-websocket-KEY")
                .replace(b"Upgrade:", b"UPGRADE:")
            )
        ),
    ),
    ("8.4", "a path with a query", accepted(_request(line="GET /a/b?c=d&e HTTP/1.1"))),
    ("8.5", "the request delivered byte by byte", accepted(_request(), chop=1)),
]
for _id, _what, _run in _SERVER_ACCEPTS:
    _add(f"H.{_id}", f"request with {_what}: 101", _run, sides=SERVER)


# -- client side -----------------------------------------------------------------


def _response(
    *,
    status: str = "101 Switching Protocols",
    drop: tuple[str, ...] = (),
    accept: str | None = None,
    add: str = "",
) -> Callable[[str], bytes]:
    """A response builder, from the client's key: a valid 101, changed as told."""

    def build(key: str) -> bytes:
        lines = [
            ("Upgrade", "websocket"),
            ("Connection", "Upgrade"),
            ("Sec-WebSocket-Accept", accept or accept_for(key)),
        ]
        head = f"HTTP/1.1 {status}\r\n" + "".join(
            f"{name}: {value}\r\n" for name, value in lines if name.lower() not in drop
        )
        if not status.startswith("101"):
            head += "Content-Length: 0\r\n"
        return (head + add + "\r\n").encode()

    return build


def client_refuses(
    build: Callable[[str], bytes], expected: type[anyws.InvalidHandshake]
) -> Run:
    """A case: the anyws client raises ``expected`` and closes TCP, silently."""

    async def run(side: Side) -> None:
        assert isinstance(side, ClientSide)
        peer = await side.open_raw()
        headers = check_client_request(await peer.read_head())
        await peer.send(build(headers["sec-websocket-key"][0]))
        error = await side.client_error(peer)
        if not isinstance(error, expected):
            raise CaseFailed(f"expected {expected.__name__}, got {error!r}")
        await peer.expect_eof()

    return run


def client_accepts(build: Callable[[str], bytes], *, chop: int | None = None) -> Run:
    """A case: the anyws client takes the response; a first frame sent with it
    is echoed."""

    async def run(side: Side) -> None:
        assert isinstance(side, ClientSide)
        peer = await side.open_raw()
        headers = check_client_request(await peer.read_head())
        data = build(headers["sec-websocket-key"][0]) + peer.frame(OP_TEXT, b"first")
        if chop is None:
            await peer.send(data)
        else:
            await peer.send_chopped(data, chop)
        await peer.expect_message("first")
        await peer.close_normally()

    return run


def _extensions(value: str) -> Callable[[str], bytes]:
    return _response(add=f"Sec-WebSocket-Extensions: {value}\r\n")


_CLIENT_REFUSALS: list[tuple[str, str, Run]] = [
    (
        "9.1",
        "HTTP 200",
        client_refuses(_response(status="200 OK"), anyws.InvalidStatus),
    ),
    (
        "9.2",
        "HTTP 403",
        client_refuses(_response(status="403 Forbidden"), anyws.InvalidStatus),
    ),
    (
        "9.3",
        "101 without Upgrade",
        client_refuses(_response(drop=("upgrade",)), anyws.InvalidUpgrade),
    ),
    (
        "9.4",
        "101 without Connection",
        client_refuses(_response(drop=("connection",)), anyws.InvalidUpgrade),
    ),
    (
        "9.5",
        "101 with a wrong Sec-WebSocket-Accept",
        client_refuses(_response(accept=accept_for("wrong")), anyws.InvalidHeader),
    ),
    (
        "9.6",
        "101 without Sec-WebSocket-Accept",
        client_refuses(_response(drop=("sec-websocket-accept",)), anyws.InvalidHeader),
    ),
    (
        "9.7",
        "an extension that wasn't offered",
        client_refuses(_extensions("x-unknown"), anyws.NegotiationError),
    ),
    (
        "9.8",
        "permessage-deflate with server_max_window_bits=7",
        client_refuses(
            _extensions("permessage-deflate; server_max_window_bits=7"),
            anyws.NegotiationError,
        ),
    ),
    (
        "9.9",
        "permessage-deflate with client_max_window_bits=16",
        client_refuses(
            _extensions("permessage-deflate; client_max_window_bits=16"),
            anyws.NegotiationError,
        ),
    ),
    (
        "9.10",
        "permessage-deflate with an unknown parameter",
        client_refuses(
            _extensions("permessage-deflate; x-unknown"), anyws.NegotiationError
        ),
    ),
    (
        "9.11",
        "permessage-deflate twice",
        client_refuses(
            _extensions("permessage-deflate, permessage-deflate"),
            anyws.NegotiationError,
        ),
    ),
    (
        "9.12",
        "a subprotocol that wasn't offered",
        client_refuses(
            _response(add="Sec-WebSocket-Protocol: chat\r\n"), anyws.NegotiationError
        ),
    ),
]
for _id, _what, _run in _CLIENT_REFUSALS:
    _add(f"H.{_id}", f"response: {_what}: the client refuses", _run, sides=CLIENT)

_CLIENT_ACCEPTS: list[tuple[str, str, Run]] = [
    ("10.1", "a plain 101", client_accepts(_response())),
    ("10.2", "a 101 delivered byte by byte", client_accepts(_response(), chop=1)),
    (
        "10.3",
        "Upgrade: WebSocket and Connection: upgrade",
        client_accepts(
            lambda key: (
                _response()(key)
                .replace(b"Upgrade: websocket", b"Upgrade: WebSocket")
                .replace(b"Connection: Upgrade", b"Connection: upgrade")
            )
        ),
    ),
    ("10.4", "an unknown header", client_accepts(_response(add="X-Extra: yes\r\n"))),
]
for _id, _what, _run in _CLIENT_ACCEPTS:
    _add(f"H.{_id}", f"response: {_what}: the client accepts", _run, sides=CLIENT)

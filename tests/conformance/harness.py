"""Running one conformance case against anyws, as a server or as a client.

Server side: an ``anyws.serve`` echo server, driven by :class:`RawPeer` clients.
Client side: ``anyws.connect`` echo clients, driven by a :class:`RawPeer` server on
a plain TCP listener. A case is an async function of a :class:`Side`; it opens raw
connections with :meth:`Side.open`, sends frames and checks what comes back.

Verdicts follow the Autobahn Testsuite:

* OK: anyws did what the RFC requires, in its strictest reading;
* NON-STRICT: anyws did something the RFC allows, but not the strictest choice
  (for example dropping TCP instead of sending a Close frame on a protocol error,
  or failing an invalid UTF-8 message only after the whole frame arrived);
* FAILED: anyws broke the RFC, raised an unexpected exception, or hung.

After every case the side is checked for a clean end: on the server side every
connection is closed and the server still answers a well-behaved client; on the
client side every anyws client has finished, with no exception other than the
WebSocket ones that its API documents.
"""

from __future__ import annotations

import base64
import dataclasses
import time
from typing import TYPE_CHECKING, Literal, cast

import anyio
from anyio.abc import SocketAttribute

import anyws

from .peer import (
    CaseFailed,
    DeflateCodec,
    DeflateParams,
    RawPeer,
    accept_for,
    check_deflate_answer,
    http_headers,
    new_key,
    parse_deflate,
    parse_extensions,
    upgrade_request,
)

if TYPE_CHECKING:
    from collections.abc import Awaitable, Callable

    from anyio.abc import SocketListener, TaskGroup

Verdict = Literal["OK", "NON-STRICT", "FAILED"]
SideName = Literal["server", "client"]

BOTH: tuple[SideName, ...] = ("server", "client")
SERVER: tuple[SideName, ...] = ("server",)
CLIENT: tuple[SideName, ...] = ("client",)

# Safety nets only: a correct anyws answers long before any of these expire.
CASE_TIMEOUT = 20.0
CLOSE_TIMEOUT = 5.0
FINISH_TIMEOUT = 10.0

CATEGORIES = {
    "1": "framing",
    "2": "ping/pong",
    "3": "reserved bits",
    "4": "opcodes",
    "5": "fragmentation",
    "6": "UTF-8",
    "7": "close",
    "9": "limits",
    "12": "deflate: messages",
    "13": "deflate: parameters",
    "H": "handshake",
}


@dataclasses.dataclass(frozen=True)
class Case:
    """A numbered conformance case.

    Attributes:
        id: the case number, ``<category>.<group>.<n>``.
        description: what is sent and what must happen.
        run: the coroutine function that drives it.
        sides: which anyws endpoints it applies to.
        max_size: ``max_size`` of the anyws endpoint.
        close_timeout: ``close_timeout`` of the anyws endpoint.
        timeout: the safety net for the whole case, in seconds.
        big: moves a lot of data (run on one backend only in the test suite).
    """

    id: str
    description: str
    run: Callable[[Side], Awaitable[None]]
    sides: tuple[SideName, ...] = BOTH
    max_size: int | None = 2**20
    close_timeout: float = CLOSE_TIMEOUT
    timeout: float = CASE_TIMEOUT
    big: bool = False

    @property
    def category(self) -> str:
        """The category number (or ``H`` for the handshake)."""
        return self.id.partition(".")[0]


@dataclasses.dataclass
class Result:
    """The outcome of one case on one side."""

    case: Case
    side: SideName
    verdict: Verdict
    reason: str
    duration: float


class Side:
    """The anyws endpoint under test, and the raw peers that drive it."""

    name: SideName

    def __init__(self, case: Case, task_group: TaskGroup) -> None:
        self.case = case
        self.task_group = task_group  # for the raw peers' reading tasks
        self.peers: list[RawPeer] = []
        self.notes: list[tuple[str, str]] = []

    @property
    def is_server(self) -> bool:
        """Whether anyws is the server here (and the raw peer the client)."""
        return self.name == "server"

    def non_strict(self, note: str, detail: str = "") -> None:
        """Record a behaviour that the RFC allows but that is not the strictest.

        Notes that recur with different ``detail`` are summarised together.
        """
        self.notes.append((note, detail))

    async def open(
        self, deflate: DeflateParams | None = None, *, extensions: str | None = None
    ) -> RawPeer:
        """Open a connection and complete the opening handshake.

        Args:
            deflate: permessage-deflate parameters: the offer when anyws is the
                server, the answer when anyws is the client.
            extensions: a raw Sec-WebSocket-Extensions value to send instead.
        """
        raise NotImplementedError

    async def open_raw(self) -> RawPeer:
        """Open a connection without any handshake."""
        raise NotImplementedError

    async def finish(self, *, check: bool) -> None:
        """Close the raw peers and check that anyws ended cleanly."""
        raise NotImplementedError


async def echo_handler(ws: anyws.ServerConnection) -> None:
    """The echo server's handler: every message goes back as it came."""
    async for message in ws:
        await ws.send(message)


class ServerSide(Side):
    """An anyws echo server, driven by raw clients."""

    name: SideName = "server"

    def __init__(self, case: Case, server: anyws.Server, task_group: TaskGroup) -> None:
        super().__init__(case, task_group)
        self.server = server
        self.port = server.port

    async def open_raw(self) -> RawPeer:
        stream = await anyio.connect_tcp("127.0.0.1", self.port)
        peer = RawPeer(stream, is_client=True, task_group=self.task_group)
        self.peers.append(peer)
        return peer

    async def open(
        self, deflate: DeflateParams | None = None, *, extensions: str | None = None
    ) -> RawPeer:
        peer = await self.open_raw()
        key = new_key()
        if deflate is not None:
            extensions = deflate.header()
        extra = (
            "" if extensions is None else f"Sec-WebSocket-Extensions: {extensions}\r\n"
        )
        await peer.send(upgrade_request(self.port, key=key, extra=extra))
        peer.head = head = await peer.read_head()
        if not head.startswith(b"HTTP/1.1 101 "):
            raise CaseFailed(f"handshake refused: {head.splitlines()[0]!r}")
        headers = http_headers(head)
        if headers.get("sec-websocket-accept") != [accept_for(key)]:
            raise CaseFailed("wrong or missing Sec-WebSocket-Accept")
        accepted = [
            ext
            for value in headers.get("sec-websocket-extensions", [])
            for ext in parse_extensions(value)
        ]
        if not accepted:
            if deflate is not None:
                self.non_strict("declined a valid offer", repr(deflate.header()))
            return peer
        if len(accepted) > 1 or accepted[0][0] != "permessage-deflate":
            raise CaseFailed(f"accepted extensions not offered: {accepted}")
        if extensions is None or "permessage-deflate" not in extensions:
            raise CaseFailed("accepted permessage-deflate, which wasn't offered")
        answer = parse_deflate(accepted[0][1], in_offer=False)
        if deflate is not None:
            check_deflate_answer(deflate, answer)
        peer.codec = DeflateCodec(answer, is_client=True)
        return peer

    async def finish(self, *, check: bool) -> None:
        for peer in self.peers:
            await peer.aclose()
        if not check:
            return
        with anyio.move_on_after(FINISH_TIMEOUT):
            for connection in list(self.server.connections):
                await connection.wait_closed()
        if any(c.state is not anyws.State.CLOSED for c in self.server.connections):
            raise CaseFailed("a server connection stayed open after its peer left")
        # The server keeps serving: a well-behaved client still gets its echo.
        with anyio.fail_after(FINISH_TIMEOUT):
            uri = f"ws://127.0.0.1:{self.port}/"
            async with anyws.connect(uri, ping_interval=None) as ws:
                await ws.send("still serving?")
                if await ws.recv() != "still serving?":
                    raise CaseFailed("the server stopped echoing")


@dataclasses.dataclass
class _Client:
    """One anyws echo client and how it ended."""

    done: anyio.Event = dataclasses.field(default_factory=anyio.Event)
    error: BaseException | None = None


class ClientSide(Side):
    """anyws echo clients, driven by a raw server."""

    name: SideName = "client"

    def __init__(
        self, case: Case, listener: SocketListener, task_group: TaskGroup
    ) -> None:
        super().__init__(case, task_group)
        self.listener = listener
        self.port: int = listener.extra(SocketAttribute.local_port)
        self.clients: dict[int, _Client] = {}

    async def _echo_client(self, client: _Client) -> None:
        try:
            async with anyws.connect(
                f"ws://127.0.0.1:{self.port}/",
                ping_interval=None,
                open_timeout=FINISH_TIMEOUT,
                close_timeout=self.case.close_timeout,
                max_size=self.case.max_size,
            ) as ws:
                async for message in ws:
                    await ws.send(message)
        except Exception as exc:
            client.error = exc
        finally:
            client.done.set()

    async def open_raw(self) -> RawPeer:
        client = _Client()
        self.task_group.start_soon(self._echo_client, client)
        stream = await self.listener.accept()
        peer = RawPeer(stream, is_client=False, task_group=self.task_group)
        self.peers.append(peer)
        self.clients[id(peer)] = client
        return peer

    async def open(
        self, deflate: DeflateParams | None = None, *, extensions: str | None = None
    ) -> RawPeer:
        peer = await self.open_raw()
        peer.head = head = await peer.read_head()
        headers = check_client_request(head)
        response = (
            "HTTP/1.1 101 Switching Protocols\r\nUpgrade: websocket\r\n"
            "Connection: Upgrade\r\n"
            f"Sec-WebSocket-Accept: {accept_for(headers['sec-websocket-key'][0])}\r\n"
        )
        if deflate is not None:
            offers = [
                parse_deflate(params, in_offer=True)
                for value in headers.get("sec-websocket-extensions", [])
                for name, params in parse_extensions(value)
                if name == "permessage-deflate"
            ]
            if not offers:
                raise CaseFailed("the client didn't offer permessage-deflate")
            check_deflate_answer(offers[0], deflate)
            extensions = deflate.header()
            peer.codec = DeflateCodec(deflate, is_client=False)
        if extensions is not None:
            response += f"Sec-WebSocket-Extensions: {extensions}\r\n"
        await peer.send((response + "\r\n").encode())
        return peer

    async def client_error(self, peer: RawPeer) -> BaseException | None:
        """Wait for the anyws client behind ``peer`` to finish; return its error."""
        client = self.clients[id(peer)]
        with anyio.move_on_after(FINISH_TIMEOUT):
            await client.done.wait()
        if not client.done.is_set():
            raise CaseFailed("the anyws client didn't finish")
        return client.error

    async def finish(self, *, check: bool) -> None:
        for peer in self.peers:
            await peer.aclose()
        with anyio.move_on_after(FINISH_TIMEOUT):
            for client in self.clients.values():
                await client.done.wait()
        if not check:
            return
        for client in self.clients.values():
            if not client.done.is_set():
                raise CaseFailed("an anyws client didn't finish after TCP closed")
            error = client.error
            if error is not None and not isinstance(error, anyws.WebSocketException):
                raise CaseFailed(f"the anyws client raised {error!r}")


def check_client_request(head: bytes) -> dict[str, list[str]]:
    """Check an anyws client's upgrade request (RFC 6455 section 4.1)."""
    request_line = head.split(b"\r\n", 1)[0]
    if request_line != b"GET / HTTP/1.1":
        raise CaseFailed(f"bad request line: {request_line!r}")
    headers = http_headers(head)
    if len(headers.get("host", [])) != 1:
        raise CaseFailed("missing Host header")
    if [v.lower() for v in headers.get("upgrade", [])] != ["websocket"]:
        raise CaseFailed(f"bad Upgrade header: {headers.get('upgrade')}")
    connection = [
        t.strip().lower() for v in headers.get("connection", []) for t in v.split(",")
    ]
    if "upgrade" not in connection:
        raise CaseFailed(f"bad Connection header: {headers.get('connection')}")
    if headers.get("sec-websocket-version") != ["13"]:
        raise CaseFailed("Sec-WebSocket-Version isn't 13")
    keys = headers.get("sec-websocket-key", [])
    try:
        valid = len(keys) == 1 and len(base64.b64decode(keys[0], validate=True)) == 16
    except ValueError:
        valid = False
    if not valid:
        raise CaseFailed(f"bad Sec-WebSocket-Key: {keys}")
    return headers


def _verdict(notes: list[tuple[str, str]]) -> tuple[Verdict, str]:
    if not notes:
        return "OK", ""
    grouped: dict[str, list[str]] = {}
    for note, detail in notes:
        grouped.setdefault(note, [])
        if detail and detail not in grouped[note]:
            grouped[note].append(detail)
    parts = []
    for note, details in grouped.items():
        if len(details) > 1:
            note = f"{note} ({len(details)} times), e.g. {details[0]}"
        elif details:
            note = f"{note}: {details[0]}"
        parts.append(note)
    return "NON-STRICT", "; ".join(parts)


async def _run_server_side(case: Case) -> list[tuple[str, str]]:
    failure: CaseFailed | None = None
    async with anyws.serve(
        echo_handler,
        "127.0.0.1",
        0,
        ping_interval=None,
        open_timeout=FINISH_TIMEOUT,
        close_timeout=case.close_timeout,
        max_size=case.max_size,
    ) as server:
        async with anyio.create_task_group() as task_group:
            side = ServerSide(case, server, task_group)
            try:
                await case.run(side)
            except CaseFailed as exc:
                failure = exc
            await side.finish(check=failure is None)
            task_group.cancel_scope.cancel()
    if failure is not None:
        raise failure
    return side.notes + [note for peer in side.peers for note in peer.notes]


async def _run_client_side(case: Case) -> list[tuple[str, str]]:
    listener = await anyio.create_tcp_listener(local_host="127.0.0.1")
    async with listener:
        socket_listener = cast("SocketListener", listener.listeners[0])
        failure: CaseFailed | None = None
        async with anyio.create_task_group() as task_group:
            side = ClientSide(case, socket_listener, task_group)
            try:
                await case.run(side)
            except CaseFailed as exc:
                failure = exc
            await side.finish(check=failure is None)
            task_group.cancel_scope.cancel()
        if failure is not None:
            raise failure
    return side.notes + [note for peer in side.peers for note in peer.notes]


async def run_case(case: Case, side: SideName) -> Result:
    """Run ``case`` against anyws as ``side``; never raises for a failed case."""
    started = time.perf_counter()
    runner = _run_server_side if side == "server" else _run_client_side
    try:
        with anyio.fail_after(case.timeout):
            notes = await runner(case)
    except CaseFailed as exc:
        verdict: Verdict = "FAILED"
        reason = str(exc)
    except TimeoutError:
        verdict, reason = "FAILED", f"no answer within {case.timeout} s"
    else:
        verdict, reason = _verdict(notes)
    return Result(case, side, verdict, reason, time.perf_counter() - started)

"""Usage patterns of real trio-websocket users, run through anyws.compat.trio_websocket.

Discipline: each pattern is written as its users write it, with ``trio_websocket``
names only, and runs on asyncio, asyncio+uvloop and trio. Selenium's CDP client
(``selenium/webdriver/common/bidi/cdp.py``) gets a trio nursery on trio and an anyio
task group on every backend; the "browser" is the shim's own server on 127.0.0.1
port 0. Ordering comes from the protocol itself (a reply follows its command); no
sleeps, no timing assertions. The README's heartbeat recipe pings with ``fail_after``
in a loop; its peers are hand-written, one answering every Ping, one never.
"""

from __future__ import annotations

import contextlib
import itertools
import json
from typing import TYPE_CHECKING, Any

import anyio
import pytest

import anyws.compat.trio_websocket as trio_websocket
from anyws.compat.trio_websocket import (
    ConnectionClosed as WsConnectionClosed,
    connect_websocket_url,
)
from tests.compat.test_trio_websocket import (
    nursery_kind,
    open_nursery,
    raw_server,
    serving,
)
from tests.helpers import OP_CLOSE, OP_PING, OP_PONG, RawPeer

if TYPE_CHECKING:
    from collections.abc import AsyncIterator

__all__ = ["nursery_kind"]  # a fixture, used by name

MAX_WS_MESSAGE_SIZE = 2**24
SCREENSHOT_SIZE = 2 * 2**20  # over trio-websocket's default limit of 1 MiB


class CdpConnectionClosed(WsConnectionClosed):
    """Raised when a public method is called on a closed CDP connection."""

    def __init__(self, reason: Any) -> None:  # Selenium does not call super()
        self.reason = reason

    def __repr__(self) -> str:
        return f"{self.__class__.__name__}<{self.reason}>"


class CdpConnection:
    """Selenium's CDP connection, reduced to its use of trio-websocket."""

    def __init__(self, ws: trio_websocket.WebSocketConnection) -> None:
        self.ws = ws
        self.id_iter = itertools.count()
        self.inflight_cmd: dict[int, anyio.Event] = {}
        self.inflight_result: dict[int, Any] = {}

    async def execute(self, method: str, params: dict[str, Any]) -> Any:
        cmd_id = next(self.id_iter)
        cmd_event = anyio.Event()
        self.inflight_cmd[cmd_id] = cmd_event
        request = {"id": cmd_id, "method": method, "params": params}
        try:
            await self.ws.send_message(json.dumps(request))
        except WsConnectionClosed as wcc:
            raise CdpConnectionClosed(wcc.reason) from None
        await cmd_event.wait()
        return self.inflight_result.pop(cmd_id)

    async def aclose(self) -> None:
        await self.ws.aclose()

    async def _reader_task(self) -> None:
        while True:
            try:
                message = await self.ws.get_message()
            except WsConnectionClosed:
                break
            data = json.loads(message)
            self.inflight_result[data["id"]] = data["result"]
            self.inflight_cmd.pop(data["id"]).set()


async def connect_cdp(nursery: Any, url: str) -> CdpConnection:
    ws = await connect_websocket_url(nursery, url, max_message_size=MAX_WS_MESSAGE_SIZE)
    cdp_conn = CdpConnection(ws)
    nursery.start_soon(cdp_conn._reader_task)
    return cdp_conn


@contextlib.asynccontextmanager
async def open_cdp(url: str, kind: str) -> AsyncIterator[CdpConnection]:
    async with open_nursery(kind) as nursery:
        conn = await connect_cdp(nursery, url)
        try:
            yield conn
        finally:
            await conn.aclose()


async def browser(request: trio_websocket.WebSocketRequest) -> None:
    """A stand-in for a browser's DevTools endpoint."""
    ws = await request.accept()
    with contextlib.suppress(trio_websocket.ConnectionClosed):
        while True:
            command = json.loads(await ws.get_message())
            if command["method"] == "Page.captureScreenshot":
                result: dict[str, Any] = {"data": "A" * SCREENSHOT_SIZE}
            else:
                result = {"product": "Chrome/999", "echo": command["params"]}
            await ws.send_message(json.dumps({"id": command["id"], "result": result}))


class TestSelenium:
    async def test_cdp_session(self, nursery_kind: str) -> None:
        async with serving(browser) as server:
            url = f"ws://127.0.0.1:{server.port}/devtools/browser/1"
            async with open_cdp(url, nursery_kind) as conn:
                version = await conn.execute("Browser.getVersion", {"x": 1})
                assert version == {"product": "Chrome/999", "echo": {"x": 1}}
                shot = await conn.execute("Page.captureScreenshot", {})
                assert len(shot["data"]) == SCREENSHOT_SIZE
            with pytest.raises(WsConnectionClosed) as info:
                await conn.execute("Browser.getVersion", {})
        closed = info.value
        assert isinstance(closed, CdpConnectionClosed)
        assert repr(closed) == (
            "CdpConnectionClosed<CloseReason<code=1000, name=NORMAL_CLOSURE, "
            "reason=None>>"
        )

    async def test_default_message_limit_would_refuse_the_screenshot(self) -> None:
        async with serving(browser) as server, anyio.create_task_group() as tg:
            ws = await connect_websocket_url(tg, f"ws://127.0.0.1:{server.port}/")
            await ws.send_message(
                json.dumps({"id": 0, "method": "Page.captureScreenshot"})
            )
            with pytest.raises(WsConnectionClosed) as info:
                await ws.get_message()
            assert info.value.reason is not None
            assert info.value.reason.name == "MESSAGE_TOO_BIG"


async def heartbeat(
    ws: trio_websocket.WebSocketConnection,
    timeout: float,  # noqa: ASYNC109 - the README's signature
    interval: float,
) -> None:
    """The heartbeat recipe of trio-websocket's README, on anyio."""
    while True:
        with anyio.fail_after(timeout):
            await ws.ping()
        await anyio.sleep(interval)


class TestHeartbeat:
    async def test_heartbeat_keeps_going_while_the_peer_answers(self) -> None:
        answered = anyio.Event()

        async def script(peer: RawPeer) -> None:
            await peer.server_handshake()
            pings = 0
            while (frame := await peer.read_frame()).opcode == OP_PING:
                await peer.send_frame(OP_PONG, frame.payload)
                pings += 1
                if pings == 3:
                    answered.set()
            assert frame.opcode == OP_CLOSE
            await peer.send_frame(OP_CLOSE, frame.payload)

        async with raw_server(script) as port:
            async with trio_websocket.open_websocket_url(
                f"ws://127.0.0.1:{port}/"
            ) as ws:
                async with anyio.create_task_group() as tg:
                    tg.start_soon(heartbeat, ws, 10, 0)
                    await answered.wait()  # three beats went through
                    tg.cancel_scope.cancel()
                assert ws.closed is None

    async def test_heartbeat_times_out_when_the_peer_is_silent(self) -> None:
        async def script(peer: RawPeer) -> None:
            await peer.server_handshake()
            await peer.read_eof()  # reads, never answers

        async with raw_server(script) as port:
            with pytest.raises(
                trio_websocket.DisconnectionTimeout
            ):  # the peer is silent
                async with trio_websocket.open_websocket_url(
                    f"ws://127.0.0.1:{port}/", disconnect_timeout=0.05
                ) as ws:
                    with pytest.raises(TimeoutError):
                        await heartbeat(ws, 0.05, 0)

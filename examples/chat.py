"""A chat room: every message goes to everyone, with the web page served by anyws.

    python examples/chat.py --port 8000 [--backend trio]

Open http://127.0.0.1:8000/ in two browser tabs (add ``?name=alice`` to pick a name)
and they talk. The same server answers ``GET /`` with the page, through
``process_request``, and ``/chat`` with WebSocket: the page's JavaScript connects back
to it.

Broadcasting: each member has an outbox (a bounded memory stream) and a task that
sends what it holds. Broadcasting puts a message in every outbox without waiting, so
one slow reader never holds back the others; a member whose outbox is full is too slow
to keep up and is disconnected with code 1008.
"""

from __future__ import annotations

import argparse
import itertools
import re
import urllib.parse
from typing import TYPE_CHECKING

import anyio

import anyws

if TYPE_CHECKING:
    from contextlib import AbstractAsyncContextManager

    from anyio.streams.memory import MemoryObjectReceiveStream, MemoryObjectSendStream

# Messages waiting for one member before it counts as too slow.
OUTBOX_SIZE = 64

# Chat messages are short; refuse anything bigger than this (close code 1009).
MAX_MESSAGE_SIZE = 4096

_NAME = re.compile(r"\w{1,20}").fullmatch

PAGE = """\
<!doctype html>
<html lang="en">
<head>
<meta charset="utf-8">
<title>anyws chat</title>
<style>
  body { font: 16px system-ui, sans-serif; max-width: 40em; margin: 2em auto; }
  #log { list-style: none; padding: 0; min-height: 10em; }
  #log li { padding: 0.2em 0; border-bottom: 1px solid #eee; }
  #status { color: #666; }
  input { width: 75%; font: inherit; }
</style>
</head>
<body>
<h1>anyws chat</h1>
<p id="status">connecting</p>
<ul id="log"></ul>
<form id="form">
  <input id="text" autocomplete="off" placeholder="Say something" autofocus>
  <button>Send</button>
</form>
<script>
  // Connect back to the server that served this page, on /chat.
  const url = new URL("/chat", location.href);
  url.protocol = location.protocol === "https:" ? "wss:" : "ws:";
  const name = new URLSearchParams(location.search).get("name");
  if (name) url.searchParams.set("name", name);

  const ws = new WebSocket(url);
  const status = document.getElementById("status");
  const log = document.getElementById("log");
  ws.onopen = () => { status.textContent = "connected"; };
  ws.onclose = (event) => { status.textContent = `disconnected (${event.code})`; };
  ws.onmessage = (event) => {
    const item = document.createElement("li");
    item.textContent = event.data;  // text, never HTML
    log.append(item);
  };
  document.getElementById("form").onsubmit = (event) => {
    event.preventDefault();
    const text = document.getElementById("text");
    if (text.value && ws.readyState === WebSocket.OPEN) ws.send(text.value);
    text.value = "";
  };
</script>
</body>
</html>
"""


class ChatRoom:
    """The members of the chat and their outboxes."""

    def __init__(self) -> None:
        self.members: dict[anyws.ServerConnection, MemoryObjectSendStream[str]] = {}
        self._guests = itertools.count(1)

    def broadcast(self, message: str) -> None:
        """Queue ``message`` for every member, without waiting for any of them."""
        for ws, outbox in list(self.members.items()):
            try:
                outbox.send_nowait(message)
            except anyio.WouldBlock:
                # Too slow: stop queueing; its sender drains the outbox and closes.
                del self.members[ws]
                outbox.close()
            except (anyio.BrokenResourceError, anyio.ClosedResourceError):
                del self.members[ws]

    def process_request(
        self, connection: anyws.ServerConnection, request: anyws.Request
    ) -> anyws.Response | None:
        """Serve the page on ``/``, WebSocket on ``/chat``, 404 elsewhere."""
        path = request.path.partition("?")[0]
        if path == "/":
            return connection.respond(
                200, PAGE, {"Content-Type": "text/html; charset=utf-8"}
            )
        if path != "/chat":
            return connection.respond(404, "Not Found\n")
        # Browsers send Origin; refuse pages from other sites (cross-site WebSocket
        # hijacking). Programs that send no Origin are let in.
        origin = request.headers.get("Origin")
        host = request.headers.get("Host")
        if origin is not None and origin not in (f"http://{host}", f"https://{host}"):
            return connection.respond(403, "Forbidden origin\n")
        return None  # go on with the WebSocket handshake

    def name_for(self, request: anyws.Request) -> str:
        """The name asked for with ``?name=``, if valid; a guest name otherwise."""
        asked = urllib.parse.parse_qs(request.query).get("name", [""])[0]
        return asked if _NAME(asked) else f"guest{next(self._guests)}"

    async def handler(self, ws: anyws.ServerConnection) -> None:
        assert ws.request is not None
        name = self.name_for(ws.request)
        outbox, pending = anyio.create_memory_object_stream[str](OUTBOX_SIZE)
        async with anyio.create_task_group() as task_group:
            task_group.start_soon(self._send_outbox, ws, pending)
            outbox.send_nowait(f"welcome, {name}")
            self.broadcast(f"{name} joined")
            self.members[ws] = outbox
            try:
                async for message in ws:
                    if isinstance(message, str):
                        self.broadcast(f"{name}: {message}")
            except anyws.ConnectionClosed:
                pass  # closed as too slow, or dropped
            finally:
                self.members.pop(ws, None)
                outbox.close()
                self.broadcast(f"{name} left")

    async def _send_outbox(
        self, ws: anyws.ServerConnection, pending: MemoryObjectReceiveStream[str]
    ) -> None:
        try:
            async with pending:
                async for message in pending:
                    await ws.send(message)
            # The outbox was closed: either the member left (and the connection is
            # closing already), or it fell behind.
            await ws.close(anyws.CloseCode.POLICY_VIOLATION, "too slow")
        except anyws.ConnectionClosed:
            pass


def chat_server(host: str, port: int) -> AbstractAsyncContextManager[anyws.Server]:
    """Return ``anyws.serve(...)`` for a new chat room: ``async with`` it."""
    room = ChatRoom()
    return anyws.serve(
        room.handler,
        host,
        port,
        process_request=room.process_request,
        max_size=MAX_MESSAGE_SIZE,
    )


async def main(host: str, port: int) -> None:
    async with chat_server(host, port) as server:
        print(f"listening on http://{host}:{server.port}/", flush=True)
        await server.serve_forever()


if __name__ == "__main__":
    parser = argparse.ArgumentParser(
        description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter
    )
    parser.add_argument("--host", default="127.0.0.1")
    parser.add_argument("--port", type=int, default=8000)
    parser.add_argument("--backend", choices=["asyncio", "trio"], default="asyncio")
    args = parser.parse_args()
    try:
        anyio.run(main, args.host, args.port, backend=args.backend)
    except KeyboardInterrupt:
        pass

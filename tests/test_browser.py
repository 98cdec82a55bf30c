"""A real browser as a test peer: headless Chromium talks to examples/chat.py.

Discipline
    Chromium is an independent WebSocket implementation, with its own
    permessage-deflate. The test runs the chat example in-process on the test's
    backend, starts headless Chromium with a fresh profile, and drives it through
    the Chrome DevTools Protocol, whose WebSocket endpoint anyws itself connects to.
    Two pages load the chat page and exchange messages through the server by
    submitting the page's form; the test then checks what each page shows (the text
    of its message list, and a screenshot saved under ``test-artifacts/``), and what
    the server saw of the browser's handshakes.

    Ordering comes from the pages: every wait is for something a page shows, awaited
    in the page with a MutationObserver, so nothing sleeps. One timeout around the
    whole test is a safety net. The test installs nothing: it is skipped, with the
    reason, where no Chromium executable is found (``.ci/run`` installs Debian's
    ``chromium`` package where it can).
"""

from __future__ import annotations

import base64
import importlib.util
import itertools
import json
import os
import re
import shutil
import subprocess
import tempfile
from pathlib import Path
from typing import TYPE_CHECKING, Any

import anyio
import pytest
from anyio.streams.text import TextReceiveStream

import anyws

if TYPE_CHECKING:
    from collections.abc import Callable
    from types import ModuleType

    from anyio.abc import ByteReceiveStream

pytestmark = pytest.mark.interop

ROOT = Path(__file__).resolve().parent.parent
ARTIFACTS = ROOT / "test-artifacts"

CHROMIUM_NAMES = ["chromium", "chromium-browser", "google-chrome", "chrome"]

# Headless, and quiet on the network: without the background-networking flags,
# Chromium keeps trying to reach its update and sync services.
CHROMIUM_FLAGS = [
    "--headless",
    "--no-sandbox",  # needed when running as root
    "--disable-gpu",
    "--disable-quic",
    "--no-first-run",
    "--disable-background-networking",
    "--disable-component-update",
    "--disable-sync",
    "--window-size=800,600",
    "--remote-debugging-port=0",
]

_DEVTOOLS_URL = re.compile(r"DevTools listening on (ws://\S+)")


def find_chromium() -> str | None:
    """The Chromium executable: ``$ANYWS_CHROMIUM``, or the first found on PATH."""
    explicit = os.environ.get("ANYWS_CHROMIUM")
    if explicit:
        return explicit
    for name in CHROMIUM_NAMES:
        path = shutil.which(name)
        if path is not None:
            return path
    return None


def load_chat_example() -> ModuleType:
    spec = importlib.util.spec_from_file_location(
        "anyws_example_chat", ROOT / "examples" / "chat.py"
    )
    assert spec is not None and spec.loader is not None
    module = importlib.util.module_from_spec(spec)
    spec.loader.exec_module(module)
    return module


class DevToolsError(Exception):
    """Raised when Chromium answers a DevTools command with an error."""


class DevTools:
    """A minimal Chrome DevTools Protocol client over an anyws connection.

    :meth:`run` reads every message: replies are matched to commands by id, and
    events are kept in order until a waiter takes them.
    """

    def __init__(self, ws: anyws.ClientConnection) -> None:
        self._ws = ws
        self._ids = itertools.count(1)
        self._replies: dict[int, dict[str, Any]] = {}
        self._events: list[dict[str, Any]] = []
        self._changed = anyio.Event()
        self._ended = False

    async def run(self) -> None:
        try:
            async for message in self._ws:
                data = json.loads(message)
                if "id" in data:
                    self._replies[data["id"]] = data
                else:
                    self._events.append(data)
                self._notify()
        finally:
            self._ended = True
            self._notify()

    def _notify(self) -> None:
        self._changed.set()
        self._changed = anyio.Event()

    async def _wait_change(self) -> None:
        if self._ended:
            raise DevToolsError("the DevTools connection closed")
        await self._changed.wait()

    async def call(
        self, method: str, session: str | None = None, **params: Any
    ) -> dict[str, Any]:
        """Send a command (to a page's ``session`` if given) and return its result."""
        command_id = next(self._ids)
        command: dict[str, Any] = {"id": command_id, "method": method}
        command["params"] = params
        if session is not None:
            command["sessionId"] = session
        await self._ws.send(json.dumps(command))
        while command_id not in self._replies:
            await self._wait_change()
        reply = self._replies.pop(command_id)
        if "error" in reply:
            raise DevToolsError(f"{method}: {reply['error']}")
        result: dict[str, Any] = reply["result"]
        return result

    async def event(
        self,
        method: str,
        session: str,
        match: Callable[[dict[str, Any]], bool] = lambda params: True,
    ) -> dict[str, Any]:
        """Wait for the next event ``method`` of ``session`` whose params ``match``.

        Returns its params; the events received before it are dropped.
        """
        while True:
            for index, event in enumerate(self._events):
                params: dict[str, Any] = event.get("params", {})
                if (
                    event.get("sessionId") == session
                    and event["method"] == method
                    and match(params)
                ):
                    del self._events[: index + 1]
                    return params
            await self._wait_change()


# Resolves once the text of the element matching the selector includes the text:
# a MutationObserver reacts to every change of the page, without polling.
WAIT_FOR_TEXT = """
new Promise((resolve) => {
  const element = document.querySelector(%(selector)s);
  const done = () => element.textContent.includes(%(text)s);
  if (done()) return resolve(true);
  new MutationObserver((_, observer) => {
    if (done()) { observer.disconnect(); resolve(true); }
  }).observe(element, {childList: true, subtree: true, characterData: true});
})
"""


class Page:
    """A browser tab, driven through :class:`DevTools`."""

    def __init__(self, devtools: DevTools, target: str, session: str) -> None:
        self.devtools = devtools
        self.target = target
        self.session = session

    @classmethod
    async def open(cls, devtools: DevTools, url: str) -> Page:
        """Open a tab and load ``url`` in it, waiting for the load event."""
        target = (await devtools.call("Target.createTarget", url="about:blank"))[
            "targetId"
        ]
        attached = await devtools.call(
            "Target.attachToTarget", targetId=target, flatten=True
        )
        page = cls(devtools, target, attached["sessionId"])
        await page.call("Page.enable")
        navigated = await page.call("Page.navigate", url=url)
        assert "errorText" not in navigated, navigated
        # The load event that follows the main frame's navigation to url.
        await devtools.event(
            "Page.frameNavigated",
            page.session,
            lambda params: (
                params["frame"]["id"] == navigated["frameId"]
                and params["frame"]["url"] == url
            ),
        )
        await devtools.event("Page.loadEventFired", page.session)
        return page

    async def call(self, method: str, **params: Any) -> dict[str, Any]:
        return await self.devtools.call(method, self.session, **params)

    async def evaluate(self, expression: str) -> Any:
        """Evaluate JavaScript in the page, awaiting a promise; return the value."""
        result = await self.call(
            "Runtime.evaluate",
            expression=expression,
            awaitPromise=True,
            returnByValue=True,
        )
        if "exceptionDetails" in result:
            raise DevToolsError(f"JavaScript error: {result['exceptionDetails']}")
        return result["result"].get("value")

    async def wait_for_text(self, selector: str, text: str) -> None:
        await self.evaluate(
            WAIT_FOR_TEXT % {"selector": json.dumps(selector), "text": json.dumps(text)}
        )

    async def say(self, text: str) -> None:
        """Type ``text`` into the chat's input and submit the form."""
        await self.evaluate(
            f"document.getElementById('text').value = {json.dumps(text)};"
            "document.getElementById('form').requestSubmit();"
        )

    async def messages(self) -> list[str]:
        """The texts of the chat's message list, in order."""
        items = await self.evaluate(
            "Array.from(document.querySelectorAll('#log li'), (li) => li.textContent)"
        )
        assert isinstance(items, list)
        return [str(item) for item in items]

    async def screenshot(self, path: Path) -> bytes:
        data = (await self.call("Page.captureScreenshot", format="png"))["data"]
        png = base64.b64decode(data)
        await anyio.Path(path.parent).mkdir(parents=True, exist_ok=True)
        await anyio.Path(path).write_bytes(png)
        return png

    async def close(self) -> None:
        await self.devtools.call("Target.closeTarget", targetId=self.target)


async def _read_stderr(
    stderr: ByteReceiveStream, found: anyio.Event, seen: list[str]
) -> None:
    """Keep reading Chromium's stderr (it logs a lot) and spot the DevTools URL."""
    pending = ""
    async for text in TextReceiveStream(stderr, errors="replace"):
        pending += text
        *lines, pending = pending.split("\n")
        for line in lines:
            seen.append(line)
            if not found.is_set() and _DEVTOOLS_URL.search(line):
                found.set()
    found.set()  # end of output: Chromium exited


class TestChromium:
    async def test_two_pages_chat_through_the_server(
        self, anyio_backend_name: str, request: pytest.FixtureRequest
    ) -> None:
        chromium = find_chromium()
        if chromium is None:
            pytest.skip(
                "no Chromium executable found: install Debian's chromium package "
                "(apt-get install chromium) or set ANYWS_CHROMIUM"
            )
        chat = load_chat_example()
        artifact = ARTIFACTS / re.sub(r"[^\w.-]+", "_", request.node.name).strip("_")
        with (
            anyio.fail_after(45),
            tempfile.TemporaryDirectory(ignore_cleanup_errors=True) as profile,
        ):
            async with chat.chat_server("127.0.0.1", 0) as server:
                url = f"http://127.0.0.1:{server.port}/"
                await self._run_browser(
                    [chromium, *CHROMIUM_FLAGS, f"--user-data-dir={profile}"],
                    server,
                    url,
                    artifact,
                )

    async def _run_browser(
        self, command: list[str], server: anyws.Server, url: str, artifact: Path
    ) -> None:
        process = await anyio.open_process(
            command, stdin=subprocess.DEVNULL, stdout=subprocess.DEVNULL
        )
        try:
            assert process.stderr is not None
            found = anyio.Event()
            stderr: list[str] = []
            async with anyio.create_task_group() as task_group:
                task_group.start_soon(_read_stderr, process.stderr, found, stderr)
                await found.wait()
                matches = [_DEVTOOLS_URL.search(line) for line in stderr]
                urls = [match.group(1) for match in matches if match]
                assert urls, "Chromium exited early:\n" + "\n".join(stderr[-20:])
                async with anyws.connect(urls[0], max_size=2**26) as ws:
                    devtools = DevTools(ws)
                    task_group.start_soon(devtools.run)
                    await self._chat(devtools, server, url, artifact)
                    await devtools.call("Browser.close")
                await process.wait()
        finally:
            if process.returncode is None:
                process.kill()
                with anyio.CancelScope(shield=True):
                    await process.wait()
            await process.aclose()

    async def _chat(
        self, devtools: DevTools, server: anyws.Server, url: str, artifact: Path
    ) -> None:
        alice = await Page.open(devtools, url + "?name=alice")
        await alice.wait_for_text("#status", "connected")
        bob = await Page.open(devtools, url + "?name=bob")
        await bob.wait_for_text("#status", "connected")
        await alice.wait_for_text("#log", "bob joined")

        # Two connections from the browser, both with permessage-deflate.
        assert len(server.connections) == 2
        for connection in server.connections:
            assert connection.request is not None
            assert connection.response is not None
            assert "Chrome" in connection.request.headers["User-Agent"]
            offered = connection.request.headers["Sec-WebSocket-Extensions"]
            assert "permessage-deflate" in offered
            accepted = connection.response.headers["Sec-WebSocket-Extensions"]
            assert accepted.startswith("permessage-deflate")

        await alice.say("hello from alice")
        await bob.wait_for_text("#log", "alice: hello from alice")
        # Long enough for the compressor to matter, and not only ASCII.
        reply = "hi alice ✓ " + "ünïcödé " * 40
        await bob.say(reply)
        await alice.wait_for_text("#log", "bob: " + reply)
        await bob.wait_for_text("#log", "bob: " + reply)

        assert await alice.messages() == [
            "welcome, alice",
            "bob joined",
            "alice: hello from alice",
            "bob: " + reply,
        ]
        assert await bob.messages() == [
            "welcome, bob",
            "alice: hello from alice",
            "bob: " + reply,
        ]
        assert await alice.evaluate("document.title") == "anyws chat"
        for name, page in [("alice", alice), ("bob", bob)]:
            png = await page.screenshot(artifact / f"{name}.png")
            assert png.startswith(b"\x89PNG\r\n\x1a\n")

        # Closing a tab closes its WebSocket; the others hear of it.
        await bob.close()
        await alice.wait_for_text("#log", "bob left")

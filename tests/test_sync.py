"""The blocking API, ``anyws.sync``: client, server, threads and interop.

Discipline: these are plain (not async) tests, so they run once, not once per
``anyio_backend``; where the event loop matters they are parametrised over the loop
that runs in the connection's or server's thread (``portal_backend``: asyncio or
trio). Servers listen on 127.0.0.1, port 0. Threads are ordered with
``threading.Event`` and ``queue.Queue`` or by waiting on what the peer does, never by
sleeping; timeouts are safety nets except where a timeout is what is tested. Every
test closes what it opens: the conftest fails a test that leaves a thread or a
socket behind, and the portal and handler threads anyws starts are named so that it
sees them.
"""

from __future__ import annotations

import base64
import contextlib
import hashlib
import queue
import re
import signal
import socket
import subprocess
import sys
import textwrap
import threading
import time
import uuid
from typing import TYPE_CHECKING, Any, Literal

import pytest
import websockets.sync.client
import websockets.sync.server

import anyws
import anyws.sync

if TYPE_CHECKING:
    import ssl
    from collections.abc import Callable, Iterator
    from pathlib import Path

Backend = Literal["asyncio", "trio"]

SAFETY = 10.0  # seconds; only ever reached when something is broken


@pytest.fixture(params=["asyncio", "trio"])
def portal_backend(request: pytest.FixtureRequest) -> Backend:
    backend: Backend = request.param
    return backend


def echo(ws: anyws.sync.ServerConnection) -> None:
    for message in ws:
        ws.send(message)


def uri_of(server: anyws.sync.Server, path: str = "/") -> str:
    return f"ws://127.0.0.1:{server.port}{path}"


def serve(
    handler: Callable[[anyws.sync.ServerConnection], None],
    backend: Backend,
    **options: Any,
) -> anyws.sync.Server:
    return anyws.sync.serve(handler, "127.0.0.1", 0, backend=backend, **options)


def connect(
    server: anyws.sync.Server, backend: Backend, path: str = "/", **options: Any
) -> anyws.sync.ClientConnection:
    return anyws.sync.connect(uri_of(server, path), backend=backend, **options)


@contextlib.contextmanager
def connected(
    handler: Callable[[anyws.sync.ServerConnection], None], backend: Backend
) -> Iterator[anyws.sync.ClientConnection]:
    """A server running ``handler``, and a client connected to it."""
    with serve(handler, backend) as server, connect(server, backend) as ws:
        yield ws


@pytest.fixture
def echo_server(portal_backend: Backend) -> Iterator[anyws.sync.Server]:
    with serve(echo, portal_backend) as server:
        yield server


@pytest.fixture
def ws(
    echo_server: anyws.sync.Server, portal_backend: Backend
) -> Iterator[anyws.sync.ClientConnection]:
    """A client connected to an echo server."""
    with connect(echo_server, portal_backend) as client:
        yield client


def anyws_threads() -> list[str]:
    return [t.name for t in threading.enumerate() if t.name.startswith("anyws")]


def wait_until(predicate: Callable[[], bool]) -> None:
    """Wait for a condition that another thread makes true (yielding the GIL)."""
    deadline = time.monotonic() + SAFETY
    while not predicate():
        assert time.monotonic() < deadline, "condition never became true"
        time.sleep(0)


def receiving(ws: anyws.sync.Connection) -> bool:
    """Whether a thread is blocked receiving on ``ws`` (internal state, read only)."""
    return bool(ws._connection._assembler.receiving)


class TestClientConnection:
    def test_text_and_binary_round_trip(self, ws: anyws.sync.ClientConnection) -> None:
        ws.send("café")
        assert ws.recv(timeout=SAFETY) == "café"
        ws.send(b"\x00\xff")
        assert ws.recv(timeout=SAFETY) == b"\x00\xff"
        ws.send(bytearray(b"ba"))
        assert ws.recv(timeout=SAFETY) == b"ba"
        ws.send(memoryview(b"mv"))
        assert ws.recv(timeout=SAFETY) == b"mv"
        ws.send(b"as text", text=True)
        assert ws.recv(timeout=SAFETY) == "as text"
        ws.send("as binary", text=False)
        assert ws.recv(timeout=SAFETY) == b"as binary"
        ws.send("text")
        assert ws.recv(SAFETY, decode=False) == b"text"
        ws.send(b"bytes")
        assert ws.recv(SAFETY, decode=True) == "bytes"

    def test_backend_runs_in_a_thread_joined_by_close(
        self, echo_server: anyws.sync.Server, portal_backend: Backend
    ) -> None:
        ws = connect(echo_server, portal_backend, "/plain")
        assert "anyws client ws://127.0.0.1:" in " ".join(anyws_threads())
        ws.send("plain call")
        assert ws.recv(timeout=SAFETY) == "plain call"
        ws.close()
        assert ws.state is anyws.State.CLOSED
        assert ws.close_code == 1000
        assert not [n for n in anyws_threads() if n.startswith("anyws client")]

    def test_attributes(self, portal_backend: Backend) -> None:
        def handler(ws: anyws.sync.ServerConnection) -> None:
            ws.send(f"{ws.subprotocol} {ws.request.path if ws.request else ''}")
            ws.recv()  # until the client closes

        with (
            serve(handler, portal_backend, subprotocols=["chat"]) as server,
            anyws.sync.connect(
                uri_of(server, "/room?x=1"),
                subprotocols=["chat"],
                additional_headers={"X-Test": "yes"},
                backend=portal_backend,
            ) as ws,
        ):
            assert ws.state is anyws.State.OPEN
            assert ws.close_code is None and ws.close_reason is None
            assert ws.subprotocol == "chat"
            assert isinstance(ws.id, uuid.UUID)
            assert ws.request is not None
            assert ws.request.headers["X-Test"] == "yes"
            assert ws.response is not None and ws.response.status_code == 101
            assert ws.remote_address[:2] == ("127.0.0.1", server.port)
            assert ws.local_address[0] == "127.0.0.1"
            assert ws.logger.name == "anyws.client"
            assert ws.latency == 0.0
            assert ws.recv(timeout=SAFETY) == "chat /room?x=1"
            latency = ws.ping()
            assert latency > 0 and ws.latency == latency

    def test_invalid_uri_and_refused_connection(self) -> None:
        with pytest.raises(anyws.InvalidURI):
            anyws.sync.connect("http://127.0.0.1/")
        with socket.socket() as unused:
            unused.bind(("127.0.0.1", 0))  # bound, not listening: refuses
            port = unused.getsockname()[1]
            with pytest.raises(OSError):
                anyws.sync.connect(f"ws://127.0.0.1:{port}/")
        assert anyws_threads() == []

    def test_refused_handshake_raises_invalid_status(
        self, portal_backend: Backend
    ) -> None:
        def refuse(
            ws: anyws.sync.ServerConnection, request: anyws.Request
        ) -> anyws.Response:
            return ws.respond(403, "go away\n")

        with serve(echo, portal_backend, process_request=refuse) as server:
            with pytest.raises(anyws.InvalidStatus) as caught:
                connect(server, portal_backend)
        assert caught.value.response.status_code == 403
        assert caught.value.response.body == b"go away\n"

    def test_tls(
        self,
        portal_backend: Backend,
        server_ssl_context: ssl.SSLContext,
        client_ssl_context: ssl.SSLContext,
    ) -> None:
        with (
            serve(echo, portal_backend, ssl=server_ssl_context) as server,
            anyws.sync.connect(
                f"wss://localhost:{server.port}/",
                ssl=client_ssl_context,
                backend=portal_backend,
            ) as ws,
        ):
            ws.send("secret")
            assert ws.recv(timeout=SAFETY) == "secret"


class TestReceiving:
    def test_iteration_ends_on_normal_close(self, portal_backend: Backend) -> None:
        def handler(ws: anyws.sync.ServerConnection) -> None:
            messages: list[str | bytes] = ["one", b"two", "three"]
            for message in messages:
                ws.send(message)

        with connected(handler, portal_backend) as ws:
            assert list(ws) == ["one", b"two", "three"]
            assert ws.close_code == 1000

    def test_iteration_raises_on_error_close(self, portal_backend: Backend) -> None:
        def handler(ws: anyws.sync.ServerConnection) -> None:
            ws.send("last words")
            ws.close(4000, "custom")

        with connected(handler, portal_backend) as ws:
            received = []
            with pytest.raises(anyws.ConnectionClosedError) as caught:
                for message in ws:
                    received.append(message)
            assert received == ["last words"]
            assert caught.value.code == 4000
            assert caught.value.reason == "custom"
            assert (ws.close_code, ws.close_reason) == (4000, "custom")

    def test_timeout_raises_and_loses_no_message(self, portal_backend: Backend) -> None:
        count = 200
        go = threading.Event()

        def handler(ws: anyws.sync.ServerConnection) -> None:
            assert go.wait(SAFETY)
            for number in range(count):
                ws.send(str(number))
            ws.recv()  # until the client closes

        with connected(handler, portal_backend) as ws:
            with pytest.raises(TimeoutError):
                ws.recv(timeout=0)
            with pytest.raises(TimeoutError):
                ws.recv(timeout=0.01)
            go.set()
            received: list[str | bytes] = []
            timeouts = 0
            deadline = time.monotonic() + SAFETY
            while len(received) < count and time.monotonic() < deadline:
                # Alternate a poll and a short deadline, so that many receives are
                # cancelled while messages keep arriving.
                try:
                    received.append(ws.recv(timeout=0 if timeouts % 2 else 0.0005))
                except TimeoutError:
                    timeouts += 1
            assert received == [str(number) for number in range(count)]

    def test_recv_streaming(self, portal_backend: Backend) -> None:
        def handler(ws: anyws.sync.ServerConnection) -> None:
            ws.send(["ab", "cd", "ef"])
            ws.send([b"12", b"34"])
            ws.send("whole")
            ws.recv()

        with connected(handler, portal_backend) as ws:
            assert "".join(str(f) for f in ws.recv_streaming()) == "abcdef"
            fragments = ws.recv_streaming()
            assert next(fragments) == b"12"
            fragments.close()  # leave the rest of the message unread
            assert ws.recv(timeout=SAFETY) == b"34"
            assert list(ws.recv_streaming(decode=False)) == [b"whole"]

    def test_concurrent_recv_raises_concurrency_error(
        self, ws: anyws.sync.ClientConnection
    ) -> None:
        errors: queue.Queue[BaseException] = queue.Queue()

        def receive() -> None:
            try:
                ws.recv()
            except BaseException as exc:
                errors.put(exc)

        receiver = threading.Thread(target=receive)
        receiver.start()
        wait_until(lambda: receiving(ws))
        with pytest.raises(anyws.ConcurrencyError):
            ws.recv(timeout=SAFETY)
        ws.send("for the first receiver")
        receiver.join(SAFETY)
        assert errors.empty()

    def test_close_from_another_thread_unblocks_recv(
        self, echo_server: anyws.sync.Server, portal_backend: Backend
    ) -> None:
        ws = connect(echo_server, portal_backend)
        outcome: queue.Queue[BaseException | str | bytes] = queue.Queue()

        def receive() -> None:
            try:
                outcome.put(ws.recv())
            except BaseException as exc:
                outcome.put(exc)

        receiver = threading.Thread(target=receive)
        receiver.start()
        wait_until(lambda: receiving(ws))
        ws.close()
        receiver.join(SAFETY)
        assert isinstance(outcome.get(timeout=SAFETY), anyws.ConnectionClosedOK)
        assert not receiver.is_alive()


class TestSending:
    def test_fragmented_message(self, ws: anyws.sync.ClientConnection) -> None:
        ws.send(["fr", "ag", "ments"])
        assert ws.recv(timeout=SAFETY) == "fragments"
        parts: list[bytes | bytearray | memoryview] = [
            b"\x01",
            bytearray(b"\x02"),
            memoryview(b"\x03"),
        ]
        ws.send(iter(parts))
        assert ws.recv(timeout=SAFETY) == b"\x01\x02\x03"
        ws.send([])  # sends nothing
        ws.send("next")
        assert ws.recv(timeout=SAFETY) == "next"

    def test_iterable_runs_in_the_calling_thread(
        self, echo_server: anyws.sync.Server, portal_backend: Backend
    ) -> None:
        threads = []

        def fragments() -> Iterator[str]:
            for part in ["a", "b", "c"]:
                threads.append(threading.current_thread())
                yield part

        with connect(echo_server, portal_backend) as ws:
            ws.send(fragments())
            assert ws.recv(timeout=SAFETY) == "abc"
        assert threads == [threading.current_thread()] * 3

    def test_mixed_fragments_raise_type_error(
        self, ws: anyws.sync.ClientConnection
    ) -> None:
        with pytest.raises(TypeError):
            ws.send(["text", b"bytes"])
        # The first frame went out: the connection failed with 1011.
        with pytest.raises(anyws.ConnectionClosedError):
            ws.recv(timeout=SAFETY)
        assert ws.close_code == 1011

    def test_iterable_failing_midway_closes_with_1011(
        self, echo_server: anyws.sync.Server, portal_backend: Backend
    ) -> None:
        def fragments() -> Iterator[str]:
            yield "one"
            yield "two"
            raise ValueError("no more")

        with connect(echo_server, portal_backend) as ws:
            with pytest.raises(ValueError, match="no more"):
                ws.send(fragments())
            with pytest.raises(anyws.ConnectionClosedError):
                ws.send("after")
            assert ws.close_code == 1011

    def test_iterable_failing_before_first_frame_sends_nothing(
        self, echo_server: anyws.sync.Server, portal_backend: Backend
    ) -> None:
        def fragments() -> Iterator[str]:
            yield from ()
            raise ValueError("nothing")

        with connect(echo_server, portal_backend) as ws:
            with pytest.raises(ValueError, match="nothing"):
                ws.send(fragments())
            ws.send("still open")
            assert ws.recv(timeout=SAFETY) == "still open"

    def test_unsupported_types(self, ws: anyws.sync.ClientConnection) -> None:
        with pytest.raises(TypeError):
            ws.send(42)  # type: ignore[arg-type]
        with pytest.raises(TypeError):
            ws.send({"a": "b"})
        ws.send("still open")
        assert ws.recv(timeout=SAFETY) == "still open"

    def test_threads_sending_at_once_never_interleave(
        self, echo_server: anyws.sync.Server, portal_backend: Backend
    ) -> None:
        per_thread = 50
        with connect(echo_server, portal_backend, max_queue=None) as ws:

            def send_all(name: str) -> None:
                for number in range(per_thread):
                    ws.send([name, f"-{number}"])

            senders = [
                threading.Thread(target=send_all, args=(name,)) for name in "xyz"
            ]
            for sender in senders:
                sender.start()
            received = [ws.recv(timeout=SAFETY) for _ in range(3 * per_thread)]
            for sender in senders:
                sender.join(SAFETY)
        for name in "xyz":
            mine = [m for m in received if isinstance(m, str) and m[0] == name]
            assert mine == [f"{name}-{n}" for n in range(per_thread)]


class TestPing:
    def test_ping_and_pong(self, ws: anyws.sync.ClientConnection) -> None:
        assert ws.ping() > 0
        assert ws.ping("payload", timeout=SAFETY) > 0
        ws.pong(b"heartbeat")
        ws.send("after pings")
        assert ws.recv(timeout=SAFETY) == "after pings"
        with pytest.raises(ValueError):
            ws.ping(b"x" * 126)

    def test_ping_timeout(self, portal_backend: Backend) -> None:
        with silent_peer() as (port, drop):
            with anyws.sync.connect(
                f"ws://127.0.0.1:{port}/",
                ping_interval=None,
                compression=None,
                backend=portal_backend,
            ) as ws:
                with pytest.raises(TimeoutError):
                    ws.ping(timeout=0.05)
                drop()  # the peer vanishes without a Close frame
                with pytest.raises(anyws.ConnectionClosedError):
                    ws.recv(timeout=SAFETY)
                assert ws.close_code == 1006


class TestClosing:
    def test_close_code_and_reason_reach_the_server(
        self, portal_backend: Backend
    ) -> None:
        seen: queue.Queue[tuple[int, str]] = queue.Queue()

        def handler(ws: anyws.sync.ServerConnection) -> None:
            try:
                ws.recv()
            except anyws.ConnectionClosed as exc:
                seen.put((exc.code, exc.reason))

        with connected(handler, portal_backend) as ws:
            ws.close(4001, "done here")
            assert seen.get(timeout=SAFETY) == (4001, "done here")
            assert ws.close_code == 4001  # the code the server echoed

    def test_invalid_close_code_keeps_the_connection(
        self, ws: anyws.sync.ClientConnection
    ) -> None:
        with pytest.raises(ValueError):
            ws.close(1006)
        ws.send("still open")
        assert ws.recv(timeout=SAFETY) == "still open"

    def test_use_after_close_raises_connection_closed(
        self, echo_server: anyws.sync.Server, portal_backend: Backend
    ) -> None:
        ws = connect(echo_server, portal_backend)
        ws.close()
        ws.close()  # again: nothing
        with pytest.raises(anyws.ConnectionClosedOK):
            ws.send("late")
        with pytest.raises(anyws.ConnectionClosedOK):
            ws.recv()
        with pytest.raises(anyws.ConnectionClosedOK):
            ws.ping()
        assert list(ws) == []

    def test_message_over_max_size_closes_with_1009(
        self, portal_backend: Backend
    ) -> None:
        seen: queue.Queue[int] = queue.Queue()

        def handler(ws: anyws.sync.ServerConnection) -> None:
            ws.send("x" * 2000)
            try:
                ws.recv()
            except anyws.ConnectionClosed as exc:
                seen.put(exc.code)

        with (
            serve(handler, portal_backend) as server,
            connect(server, portal_backend, max_size=1000) as ws,
        ):
            with pytest.raises(anyws.ConnectionClosedError) as caught:
                ws.recv(timeout=SAFETY)
            assert isinstance(caught.value.__cause__, anyws.PayloadTooBig)
            assert seen.get(timeout=SAFETY) == 1009

    def test_server_max_size(self, portal_backend: Backend) -> None:
        with (
            serve(echo, portal_backend, max_size=100) as server,
            connect(server, portal_backend) as ws,
        ):
            ws.send(b"x" * 101)
            with pytest.raises(anyws.ConnectionClosedError) as caught:
                ws.recv(timeout=SAFETY)
            assert caught.value.code == 1009


class TestServer:
    def test_port_and_sockets(
        self, echo_server: anyws.sync.Server, portal_backend: Backend
    ) -> None:
        assert echo_server.socket.getsockname()[1] == echo_server.port
        assert echo_server.sockets == [echo_server.socket]
        assert "anyws server" in anyws_threads()

    def test_handler_runs_in_a_thread_per_connection(
        self, portal_backend: Backend
    ) -> None:
        names: queue.Queue[str] = queue.Queue()
        both = threading.Barrier(2, timeout=SAFETY)

        def handler(ws: anyws.sync.ServerConnection) -> None:
            names.put(threading.current_thread().name)
            both.wait()  # the two handlers run at once
            ws.send("ok")

        with serve(handler, portal_backend) as server:
            with (
                connect(server, portal_backend) as one,
                connect(server, portal_backend) as two,
            ):
                assert one.recv(timeout=SAFETY) == two.recv(timeout=SAFETY) == "ok"
        first, second = names.get(), names.get()
        assert first != second
        assert first.startswith("anyws handler 127.0.0.1:")
        assert not [n for n in anyws_threads() if n.startswith("anyws handler")]

    def test_handler_return_closes_1000_and_error_closes_1011(
        self, portal_backend: Backend, caplog: pytest.LogCaptureFixture
    ) -> None:
        def handler(ws: anyws.sync.ServerConnection) -> None:
            if ws.recv() == "fail":
                raise RuntimeError("handler bug")

        with serve(handler, portal_backend) as server:
            with connect(server, portal_backend) as ws:
                ws.send("return")
                with pytest.raises(anyws.ConnectionClosedOK):
                    ws.recv(timeout=SAFETY)
                assert ws.close_code == 1000
            with connect(server, portal_backend) as ws:
                ws.send("fail")
                with pytest.raises(anyws.ConnectionClosedError):
                    ws.recv(timeout=SAFETY)
                assert ws.close_code == 1011
        assert "connection handler failed" in caplog.text
        assert "handler bug" in caplog.text

    def test_shutdown_from_another_thread_closes_with_1001(
        self, portal_backend: Backend
    ) -> None:
        server = anyws.sync.serve(echo, "127.0.0.1", 0, backend=portal_backend)
        serving = threading.Thread(target=server.serve_forever)
        serving.start()
        with connect(server, portal_backend) as ws:
            ws.send("hello")
            assert ws.recv(timeout=SAFETY) == "hello"
            server.shutdown()
            with pytest.raises(anyws.ConnectionClosedOK) as caught:
                ws.recv(timeout=SAFETY)
            assert caught.value.code == 1001
        serving.join(SAFETY)
        assert not serving.is_alive()
        assert anyws_threads() == []
        server.shutdown()  # again: nothing
        server.serve_forever()  # returns at once

    def test_shutdown_from_a_handler(self, portal_backend: Backend) -> None:
        holder: list[anyws.sync.Server] = []

        def handler(ws: anyws.sync.ServerConnection) -> None:
            ws.recv()
            holder[0].shutdown()  # starts the shutdown and returns

        with serve(handler, portal_backend) as server:
            holder.append(server)
            with connect(server, portal_backend) as ws:
                ws.send("stop")
                server.serve_forever()
                with pytest.raises(anyws.ConnectionClosedOK):
                    ws.recv(timeout=SAFETY)
                assert ws.close_code in (1000, 1001)
        assert anyws_threads() == []

    def test_shutdown_from_a_hook(self, portal_backend: Backend) -> None:
        holder: list[anyws.sync.Server] = []

        def process_request(
            ws: anyws.sync.ServerConnection, request: anyws.Request
        ) -> anyws.Response:
            holder[0].shutdown()  # starts the shutdown and returns
            return ws.respond(503, "going down")

        with serve(echo, portal_backend, process_request=process_request) as server:
            holder.append(server)
            with pytest.raises(anyws.InvalidStatus) as caught:
                connect(server, portal_backend)
            server.serve_forever()
        assert caught.value.response.status_code == 503
        assert anyws_threads() == []

    def test_hooks_run_in_threads_with_the_same_connection(
        self, portal_backend: Backend
    ) -> None:
        seen: dict[str, Any] = {}

        def process_request(
            ws: anyws.sync.ServerConnection, request: anyws.Request
        ) -> anyws.Response | None:
            seen["request thread"] = threading.current_thread().name
            seen["request connection"] = ws
            if request.path == "/forbidden":
                return ws.respond(403, "no")
            return None

        def select_subprotocol(
            ws: anyws.sync.ServerConnection, offered: Any
        ) -> str | None:
            seen["offered"] = list(offered)
            return "second"

        def process_response(
            ws: anyws.sync.ServerConnection,
            request: anyws.Request,
            response: anyws.Response,
        ) -> anyws.Response | None:
            response.headers["X-Hooked"] = "yes"
            return None

        def handler(ws: anyws.sync.ServerConnection) -> None:
            seen["handler connection"] = ws
            ws.send(ws.subprotocol or "")

        with anyws.sync.serve(
            handler,
            "127.0.0.1",
            0,
            process_request=process_request,
            select_subprotocol=select_subprotocol,
            process_response=process_response,
            backend=portal_backend,
        ) as server:
            with pytest.raises(anyws.InvalidStatus):
                anyws.sync.connect(uri_of(server, "/forbidden"), backend=portal_backend)
            with anyws.sync.connect(
                uri_of(server), subprotocols=["first", "second"], backend=portal_backend
            ) as ws:
                assert ws.recv(timeout=SAFETY) == "second"
                assert ws.response is not None
                assert ws.response.headers["X-Hooked"] == "yes"
        assert seen["offered"] == ["first", "second"]
        assert seen["request connection"] is seen["handler connection"]
        assert not seen["request thread"].startswith("anyws server")

    def test_backend_options(self) -> None:
        with (
            anyws.sync.serve(
                echo, "127.0.0.1", 0, backend_options={"debug": True}
            ) as server,
            anyws.sync.connect(uri_of(server), backend_options={"debug": True}) as ws,
        ):
            ws.send("debug loop")
            assert ws.recv(timeout=SAFETY) == "debug loop"


@pytest.mark.interop
class TestInterop:
    def test_client_against_websockets_server(self, portal_backend: Backend) -> None:
        def handler(ws: websockets.sync.server.ServerConnection) -> None:
            for message in ws:
                if message == "close":
                    ws.close(4002, "as asked")
                else:
                    ws.send(message)

        with websockets.sync.server.serve(handler, "127.0.0.1", 0) as server:
            serving = threading.Thread(target=server.serve_forever)
            serving.start()
            try:
                port = server.socket.getsockname()[1]
                with anyws.sync.connect(
                    f"ws://127.0.0.1:{port}/", backend=portal_backend
                ) as ws:
                    ws.send("text")
                    assert ws.recv(timeout=SAFETY) == "text"
                    ws.send(b"\x00binary")
                    assert ws.recv(timeout=SAFETY) == b"\x00binary"
                    ws.send(["frag", "ments"])
                    assert ws.recv(timeout=SAFETY) == "fragments"
                    ws.send("x" * 100_000)  # compressed both ways
                    assert ws.recv(timeout=SAFETY) == "x" * 100_000
                    assert ws.ping(timeout=SAFETY) > 0
                    ws.send("close")
                    with pytest.raises(anyws.ConnectionClosedError) as caught:
                        ws.recv(timeout=SAFETY)
                    assert (caught.value.code, caught.value.reason) == (
                        4002,
                        "as asked",
                    )
            finally:
                server.shutdown()
                serving.join(SAFETY)

    def test_websockets_client_against_server(self, portal_backend: Backend) -> None:
        seen: queue.Queue[tuple[int, str]] = queue.Queue()

        def handler(ws: anyws.sync.ServerConnection) -> None:
            try:
                for message in ws:
                    ws.send(message)
            except anyws.ConnectionClosed as exc:
                seen.put((exc.code, exc.reason))

        with serve(handler, portal_backend) as server:
            with websockets.sync.client.connect(uri_of(server)) as ws:
                ws.send("text")
                assert ws.recv(timeout=SAFETY) == "text"
                ws.send(b"\x00binary")
                assert ws.recv(timeout=SAFETY) == b"\x00binary"
                ws.send(["frag", "ments"])
                assert ws.recv(timeout=SAFETY) == "fragments"
                ws.send("y" * 100_000)
                assert ws.recv(timeout=SAFETY) == "y" * 100_000
                assert ws.ping().wait(SAFETY)
                ws.close(4003, "client done")
            assert seen.get(timeout=SAFETY) == (4003, "client done")

            with websockets.sync.client.connect(uri_of(server)) as ws:
                ws.send("hello")
                assert ws.recv(timeout=SAFETY) == "hello"
                server.shutdown()
                with pytest.raises(websockets.exceptions.ConnectionClosedOK):
                    ws.recv(timeout=SAFETY)
                assert ws.close_code == 1001


# -- a peer that completes the handshake and then never answers ------------------


@contextlib.contextmanager
def silent_peer() -> Iterator[tuple[int, Callable[[], None]]]:
    """A raw TCP peer: it completes the handshake, then neither reads nor writes.

    Yields its port and a function that drops the connection without a Close frame.
    """
    accepted: list[socket.socket] = []

    def handshake() -> None:
        connection, _ = listener.accept()
        accepted.append(connection)
        head = b""
        while b"\r\n\r\n" not in head:
            head += connection.recv(4096)
        match = re.search(rb"(?i)sec-websocket-key: *(\S+)", head)
        assert match is not None
        digest = hashlib.sha1(match[1] + b"258EAFA5-E914-47DA-95CA-C5AB0DC85B11")
        connection.sendall(
            b"HTTP/1.1 101 Switching Protocols\r\nUpgrade: websocket\r\n"
            b"Connection: Upgrade\r\nSec-WebSocket-Accept: "
            + base64.b64encode(digest.digest())
            + b"\r\n\r\n"
        )

    def drop() -> None:
        thread.join(SAFETY)
        accepted[0].close()

    with socket.create_server(("127.0.0.1", 0)) as listener:
        thread = threading.Thread(target=handshake)
        thread.start()
        try:
            yield listener.getsockname()[1], drop
        finally:
            thread.join(SAFETY)
            for connection in accepted:
                connection.close()


# -- Ctrl-C ----------------------------------------------------------------------

INTERRUPTED = textwrap.dedent(
    """
    import sys, threading
    import anyws.sync

    backend, mode = sys.argv[1:]

    def echo(ws):
        for message in ws:
            ws.send(message)

    try:
        with anyws.sync.serve(echo, "127.0.0.1", 0, backend=backend) as server:
            uri = f"ws://127.0.0.1:{server.port}/"
            with anyws.sync.connect(uri, backend=backend) as ws:
                ws.send("ready")
                print(ws.recv(), flush=True)
                if mode == "recv":
                    ws.recv()
                else:
                    server.serve_forever()
    except KeyboardInterrupt:
        print("interrupted", flush=True)
    print("client closed with", ws.close_code)
    print("threads left:", [t.name for t in threading.enumerate()])
    """
)


class TestInterrupt:
    @pytest.mark.parametrize("mode", ["recv", "serve_forever"])
    def test_ctrl_c_stops_cleanly(
        self, portal_backend: Backend, mode: str, tmp_path: Path
    ) -> None:
        script = tmp_path / "interrupted.py"
        script.write_text(INTERRUPTED)
        process = subprocess.Popen(
            [sys.executable, str(script), portal_backend, mode],
            stdout=subprocess.PIPE,
            stderr=subprocess.PIPE,
            text=True,
        )
        try:
            assert process.stdout is not None
            assert process.stdout.readline() == "ready\n"
            process.send_signal(signal.SIGINT)
            out, err = process.communicate(timeout=SAFETY * 3)
        finally:
            if process.poll() is None:  # pragma: no cover - only when broken
                process.kill()
                process.communicate()
        assert process.returncode == 0, err
        assert out.splitlines() == [
            "interrupted",
            "client closed with 1000",
            "threads left: ['MainThread']",
        ]

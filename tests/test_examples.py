"""The programs in examples/, run as real subprocesses talking over 127.0.0.1.

Discipline
    Each example runs as its users would run it, ``python examples/<name>.py``, once
    with ``--backend asyncio`` and once with ``--backend trio``, and the test checks
    what it prints. A server example prints its address on its first line, which the
    test reads before connecting; the test stops it with SIGINT, as Ctrl-C would,
    and expects a clean exit. Where the test itself talks to an example, it does so
    with anyws under the same backend. Timeouts are safety nets only.
"""

from __future__ import annotations

import http.client
import re
import signal
import subprocess
import sys
from contextlib import contextmanager
from pathlib import Path
from typing import TYPE_CHECKING

import anyio
import pytest

import anyws

if TYPE_CHECKING:
    from collections.abc import Iterator

EXAMPLES = Path(__file__).resolve().parent.parent / "examples"

backends = pytest.mark.parametrize("backend", ["asyncio", "trio"])


def run_example(name: str, *args: str) -> list[str]:
    """Run ``examples/<name>.py`` to its end; return the lines it printed."""
    result = subprocess.run(
        [sys.executable, str(EXAMPLES / f"{name}.py"), *args],
        capture_output=True,
        text=True,
        timeout=60,
        check=False,
    )
    assert result.returncode == 0, result.stderr
    assert result.stderr == ""
    return result.stdout.splitlines()


class RunningServer:
    """A server example running in a subprocess."""

    def __init__(self, process: subprocess.Popen[str], address: str) -> None:
        self.process = process
        self.address = address
        self.signalled = False

    def send_signal(self, signum: int) -> None:
        self.signalled = True
        self.process.send_signal(signum)


@contextmanager
def example_server(name: str, *args: str) -> Iterator[RunningServer]:
    """Start a server example and wait until it listens; stop it on the way out.

    The server prints its address on its first line. Unless the test signalled it
    already, it is stopped with SIGINT, as Ctrl-C would; it must exit cleanly.
    """
    process = subprocess.Popen(
        [sys.executable, str(EXAMPLES / f"{name}.py"), "--port", "0", *args],
        stdout=subprocess.PIPE,
        text=True,
    )
    server = RunningServer(process, "")
    try:
        assert process.stdout is not None
        line = process.stdout.readline()
        assert line.startswith("listening on "), line
        server.address = line.split()[-1]
        yield server
    finally:
        if not server.signalled:
            process.send_signal(signal.SIGINT)
        assert process.wait(timeout=30) == 0
        if process.stdout is not None:
            process.stdout.close()


class TestEchoServerAndClient:
    @backends
    def test_client_sends_arguments_and_prints_replies(self, backend: str) -> None:
        with example_server("echo_server", "--backend", backend) as server:
            uri = server.address
            assert uri.startswith("ws://127.0.0.1:")
            lines = run_example("client", uri, "hello", "world", "--backend", backend)
        assert lines[:2] == ["< hello", "< world"]
        assert re.fullmatch(r"ping: \d+\.\d\d ms", lines[2])
        assert len(lines) == 3

    @backends
    def test_client_heartbeat_pings_while_talking(self, backend: str) -> None:
        with example_server("echo_server", "--backend", backend) as server:
            lines = run_example(
                "client", server.address, "hello", "world", "--backend", backend,
                "--heartbeat", "0.01", "--pings", "3",
            )  # fmt: skip
        # The heartbeat runs alongside the messages: their lines may interleave.
        assert [line for line in lines if line.startswith("<")] == [
            "< hello",
            "< world",
        ]
        pings = [line for line in lines if line.startswith("ping:")]
        assert len(pings) == 3
        assert all(re.fullmatch(r"ping: \d+\.\d\d ms", line) for line in pings)
        assert len(lines) == 5

    @backends
    def test_sigterm_closes_connections_with_going_away(self, backend: str) -> None:
        with example_server("echo_server", "--backend", backend) as server:
            anyio.run(self._going_away, server, backend=backend)

    async def _going_away(self, server: RunningServer) -> None:
        async with anyws.connect(server.address) as ws:
            await ws.send("still there?")
            assert await ws.recv() == "still there?"
            server.send_signal(signal.SIGTERM)
            with pytest.raises(anyws.ConnectionClosedOK) as closed:
                await ws.recv()
            assert closed.value.code == 1001


class TestChat:
    @backends
    def test_serves_the_page_and_broadcasts(self, backend: str) -> None:
        with example_server("chat", "--backend", backend) as server:
            match = re.fullmatch(r"http://127\.0\.0\.1:(\d+)/", server.address)
            assert match is not None, server.address
            port = int(match.group(1))
            status, content_type, page = http_get(port, "/")
            assert status == 200
            assert content_type == "text/html; charset=utf-8"
            assert "<title>anyws chat</title>" in page
            assert 'new URL("/chat", location.href)' in page
            assert http_get(port, "/missing")[0] == 404
            anyio.run(self._chat, port, backend=backend)

    async def _chat(self, port: int) -> None:
        uri = f"ws://127.0.0.1:{port}/chat"
        async with anyws.connect(uri + "?name=alice") as alice:
            assert await alice.recv() == "welcome, alice"
            async with anyws.connect(uri + "?name=not%20valid!") as guest:
                assert await guest.recv() == "welcome, guest1"
                assert await alice.recv() == "guest1 joined"
                await guest.send("hi there")
                assert await guest.recv() == "guest1: hi there"
                assert await alice.recv() == "guest1: hi there"
            assert await alice.recv() == "guest1 left"
            with pytest.raises(anyws.InvalidStatus) as refused:
                async with anyws.connect(uri, origin="http://elsewhere.example"):
                    pass  # pragma: no cover
            assert refused.value.response.status_code == 403
            with pytest.raises(anyws.ConnectionClosedError) as too_big:
                async with anyws.connect(uri) as big:
                    await big.send("x" * 5000)
                    async for _ in big:
                        pass
            assert too_big.value.code == 1009


def http_get(port: int, path: str) -> tuple[int, str | None, str]:
    """A plain HTTP GET, as a browser loading the page sends it."""
    connection = http.client.HTTPConnection("127.0.0.1", port, timeout=30)
    try:
        connection.request("GET", path)
        response = connection.getresponse()
        return (
            response.status,
            response.getheader("Content-Type"),
            response.read().decode(),
        )
    finally:
        connection.close()


class TestTLS:
    @backends
    def test_throwaway_certificate(self, backend: str) -> None:
        lines = run_example("tls", "--backend", backend)
        assert len(lines) == 1
        assert re.fullmatch(
            r"wss://127\.0\.0\.1:\d+/ answered 'hello over TLS'", lines[0]
        )

    @backends
    def test_certificate_files_from_generate_cert(
        self, backend: str, tmp_path: Path
    ) -> None:
        certs = tmp_path / "certs"
        assert run_example("generate_cert", str(certs)) == [
            str(certs / "ca.pem"),
            str(certs / "server.pem"),
            str(certs / "server.key"),
        ]
        assert (certs / "server.key").stat().st_mode & 0o077 == 0
        assert (certs / "server.pem").read_text().startswith("-----BEGIN CERT")
        lines = run_example(
            "tls", "--backend", backend,
            "--certfile", str(certs / "server.pem"),
            "--keyfile", str(certs / "server.key"),
            "--cafile", str(certs / "ca.pem"),
        )  # fmt: skip
        assert lines[0].endswith(" answered 'hello over TLS'")

    def test_certificate_for_other_hosts_is_refused(self, tmp_path: Path) -> None:
        run_example("generate_cert", str(tmp_path), "--host", "example.com")
        result = subprocess.run(
            [sys.executable, str(EXAMPLES / "tls.py")]
            + ["--certfile", str(tmp_path / "server.pem")]
            + ["--keyfile", str(tmp_path / "server.key")]
            + ["--cafile", str(tmp_path / "ca.pem")],
            capture_output=True,
            text=True,
            timeout=60,
            check=False,
        )
        assert result.returncode == 1
        assert "CERTIFICATE_VERIFY_FAILED" in result.stderr


class TestAuth:
    @backends
    def test_token_and_basic_accepted_others_refused(self, backend: str) -> None:
        assert run_example("auth", "--backend", backend) == [
            "token: hello, alice",
            "basic: hello, bob",
            "wrong password: refused with HTTP 401",
            "no credentials: refused with HTTP 401",
        ]


class TestStreaming:
    @backends
    def test_file_round_trip_larger_than_default_max_size(self, backend: str) -> None:
        lines = run_example("streaming", "--size", "2", "--backend", backend)
        assert len(lines) == 2
        assert re.fullmatch(
            r"server: stored 2097152 bytes, sha256 [0-9a-f]{64}", lines[0]
        )
        assert lines[1] == "received 2097152 bytes back, intact"


class TestLibraryNeutral:
    @backends
    def test_same_library_from_either_loop(self, backend: str) -> None:
        assert run_example("library_neutral", "--backend", backend) == [
            f"{backend}: [5, 'HI']"
        ]

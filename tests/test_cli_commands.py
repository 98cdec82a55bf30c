"""The command line's client, server and benchmark, run as real subprocesses.

Discipline: every command runs as ``python -m anyws ...`` in a subprocess talking over
127.0.0.1. Servers the tests need are either ``anyws serve --port 0`` subprocesses,
whose first line of output gives the port, or blocking ``anyws.sync`` servers in
this process when a test needs a particular handler or hook. Tests wait on the
output a process prints, never on time; timeouts are safety nets. These are plain
tests: they run once, with the event loop of the subprocess chosen by ``--backend``.
"""

from __future__ import annotations

import queue
import re
import signal
import socket
import subprocess
import sys
from typing import TYPE_CHECKING

import pytest

import anyws
import anyws.sync
from anyws._cli import main

if TYPE_CHECKING:
    import ssl
    from collections.abc import Iterator
    from pathlib import Path

    import trustme

SAFETY = 30.0  # seconds; only ever reached when something is broken


def run_cli(*args: str, stdin: str = "") -> subprocess.CompletedProcess[str]:
    return subprocess.run(
        [sys.executable, "-m", "anyws", *args],
        input=stdin,
        capture_output=True,
        text=True,
        timeout=SAFETY,
        check=False,
    )


def session(count: int, *args: str) -> tuple[list[str], str, int]:
    """Run the client, wait for ``count`` lines of output, then end its stdin.

    Returns the lines, stderr and the exit status.
    """
    process = subprocess.Popen(
        [sys.executable, "-m", "anyws", *args],
        stdin=subprocess.PIPE,
        stdout=subprocess.PIPE,
        stderr=subprocess.PIPE,
        text=True,
    )
    try:
        assert process.stdout is not None and process.stdin is not None
        lines = [process.stdout.readline().rstrip("\n") for _ in range(count)]
        out, err = process.communicate(timeout=SAFETY)  # closes stdin
    finally:
        if process.poll() is None:  # pragma: no cover - only when broken
            process.kill()
            process.communicate()
    assert out == ""
    return lines, err, process.returncode


class CLIServer:
    """``anyws serve ... --port 0`` in a subprocess."""

    def __init__(self, *args: str) -> None:
        self.process = subprocess.Popen(
            [sys.executable, "-m", "anyws", "serve", "--port", "0", *args],
            stdout=subprocess.PIPE,
            stderr=subprocess.PIPE,
            text=True,
        )
        first = self.readline()
        match = re.fullmatch(r"listening on (wss?)://127\.0\.0\.1:(\d+)/\n", first)
        assert match, first
        self.scheme = match[1]
        self.port = int(match[2])
        self.uri = f"{self.scheme}://127.0.0.1:{self.port}/"

    def readline(self) -> str:
        assert self.process.stdout is not None
        return self.process.stdout.readline()

    def interrupt(self) -> tuple[str, str]:
        """Ctrl-C; return the rest of stdout and stderr."""
        self.process.send_signal(signal.SIGINT)
        out, err = self.process.communicate(timeout=SAFETY)
        return out, err

    def close(self) -> None:
        if self.process.poll() is None:
            self.interrupt()
        for stream in (self.process.stdout, self.process.stderr):
            if stream is not None:
                stream.close()


@pytest.fixture(params=["asyncio", "trio"])
def cli_backend(request: pytest.FixtureRequest) -> str:
    backend: str = request.param
    return backend


@pytest.fixture
def echo_cli_server(cli_backend: str) -> Iterator[CLIServer]:
    server = CLIServer("--echo", "--backend", cli_backend)
    try:
        yield server
    finally:
        server.close()


@pytest.fixture
def refused_port() -> Iterator[int]:
    """A port bound, but not listening: connecting to it is refused."""
    with socket.socket() as sock:
        sock.bind(("127.0.0.1", 0))
        yield sock.getsockname()[1]


def one_line(text: str) -> str:
    lines = text.splitlines()
    assert len(lines) == 1, text
    return lines[0]


class TestConnect:
    def test_pipe_session_against_echo_server(
        self, echo_cli_server: CLIServer, cli_backend: str
    ) -> None:
        result = run_cli(
            echo_cli_server.uri, "--backend", cli_backend, stdin="hello\nwörld\n\n"
        )
        assert result.returncode == 0, result.stderr
        assert result.stdout.splitlines() == ["< hello", "< wörld", "< "]
        assert result.stderr.splitlines() == [
            f"* connected to {echo_cli_server.uri}",
            "* connection closed: code 1000 (normal closure)",
        ]
        # The server logged the connection opening and closing.
        assert echo_cli_server.readline().endswith("open /\n")
        assert echo_cli_server.readline().endswith(
            "closed: code 1000 (normal closure)\n"
        )

    def test_explicit_connect_command_and_last_line_without_newline(self) -> None:
        with anyws.sync.serve(echo, "127.0.0.1", 0) as server:
            uri = f"ws://127.0.0.1:{server.port}/"
            result = run_cli("connect", uri, stdin="one\ntwo")
        assert result.returncode == 0, result.stderr
        assert result.stdout.splitlines() == ["< one", "< two"]

    def test_binary_as_hex_and_close_code_and_reason(self) -> None:
        def handler(ws: anyws.sync.ServerConnection) -> None:
            ws.send(b"\x00\x01\xfe\xff")
            ws.send("and text")
            ws.close(4000, "see you")

        with anyws.sync.serve(handler, "127.0.0.1", 0) as server:
            uri = f"ws://127.0.0.1:{server.port}/"
            # stdin stays open: the server's close ends the session.
            process = subprocess.Popen(
                [sys.executable, "-m", "anyws", uri],
                stdin=subprocess.PIPE,
                stdout=subprocess.PIPE,
                stderr=subprocess.PIPE,
                text=True,
            )
            try:
                out, err = process.communicate(timeout=SAFETY)
            finally:
                if process.poll() is None:  # pragma: no cover - only when broken
                    process.kill()
                    process.communicate()
        assert out.splitlines() == ["< (binary) 0001feff", "< and text"]
        assert err.splitlines()[-1] == (
            "* connection closed: code 4000, reason 'see you'"
        )
        assert process.returncode == 1

    def test_headers_subprotocols_and_options(self) -> None:
        def handler(ws: anyws.sync.ServerConnection) -> None:
            assert ws.request is not None and ws.response is not None
            headers = ws.request.headers
            ws.send(f"{headers['X-One']}|{headers['X-Two']}|{ws.subprotocol}")
            ws.send(str(ws.response.headers.get("Sec-WebSocket-Extensions")))
            ws.recv()

        with anyws.sync.serve(
            handler, "127.0.0.1", 0, subprotocols=["chat", "superchat"]
        ) as server:
            uri = f"ws://127.0.0.1:{server.port}/"
            common = ["--header", "X-One: 1", "--header", "X-Two:two words"]
            lines, err, status = session(
                2,
                uri,
                *common,
                "--subprotocol",
                "superchat",
                "--subprotocol",
                "chat",
                "--ping-interval",
                "0",
                "--linger",
                "0",
            )
            assert status == 0, err
            assert lines[0] == "< 1|two words|chat"
            assert "permessage-deflate" in lines[1]
            assert "(subprotocol chat)" in err

            lines, err, status = session(
                2,
                uri,
                *common,
                "--subprotocol",
                "chat",
                "--no-compression",
                "--linger",
                "0",
            )
            assert status == 0, err
            assert lines == ["< 1|two words|chat", "< None"]

    def test_ctrl_c_closes_with_1000(self, cli_backend: str) -> None:
        seen: queue.Queue[int | None] = queue.Queue()

        def handler(ws: anyws.sync.ServerConnection) -> None:
            for message in ws:
                ws.send(message)
            seen.put(ws.close_code)

        with anyws.sync.serve(handler, "127.0.0.1", 0) as server:
            uri = f"ws://127.0.0.1:{server.port}/"
            process = subprocess.Popen(
                [sys.executable, "-m", "anyws", uri, "--backend", cli_backend],
                stdin=subprocess.PIPE,
                stdout=subprocess.PIPE,
                stderr=subprocess.PIPE,
                text=True,
            )
            try:
                assert process.stdin and process.stdout and process.stderr
                assert process.stderr.readline() == f"* connected to {uri}\n"
                process.stdin.write("typed\n")
                process.stdin.flush()
                assert process.stdout.readline() == "< typed\n"
                process.send_signal(signal.SIGINT)
                process.communicate(timeout=SAFETY)
            finally:
                if process.poll() is None:  # pragma: no cover - only when broken
                    process.kill()
                    process.communicate()
            assert seen.get(timeout=SAFETY) == 1000
        assert process.returncode == 130

    def test_insecure_skips_certificate_verification(
        self, server_ssl_context: ssl.SSLContext
    ) -> None:
        with anyws.sync.serve(echo, "127.0.0.1", 0, ssl=server_ssl_context) as server:
            uri = f"wss://127.0.0.1:{server.port}/"
            result = run_cli(uri, stdin="over tls\n")
            assert result.returncode == 1
            assert one_line(result.stderr).startswith(f"anyws: cannot connect to {uri}")
            assert "--insecure" in result.stderr

            result = run_cli(uri, "--insecure", stdin="over tls\n")
            assert result.returncode == 0, result.stderr
            assert result.stdout.splitlines() == ["< over tls"]


class TestErrors:
    def test_bad_uri(self, capsys: pytest.CaptureFixture[str]) -> None:
        result = run_cli("http://example.com/")
        assert result.returncode == 2
        assert one_line(result.stderr) == (
            "anyws: http://example.com/ isn't a valid URI: scheme isn't ws or wss"
        )
        for args, message in [
            (["ws://"], "anyws: ws:// isn't a valid URI: missing host"),
            (["connect", "example.com"], "isn't a valid URI: scheme isn't ws or wss"),
            (["bench-echo", "ws://h:notaport/"], "isn't a valid URI: bad port"),
        ]:
            with pytest.raises(SystemExit) as caught:
                main(args)
            assert caught.value.code == 2
            assert message in one_line(capsys.readouterr().err)

    @pytest.mark.parametrize(
        ("command", "cli_backend"), [([], "trio"), (["bench-echo"], "asyncio")]
    )
    def test_refused_connection(
        self, refused_port: int, cli_backend: str, command: list[str]
    ) -> None:
        uri = f"ws://127.0.0.1:{refused_port}/"
        result = run_cli(*command, uri, "--backend", cli_backend)
        assert result.returncode == 1
        assert one_line(result.stderr) == (
            f"anyws: cannot connect to {uri}: Connection refused"
        )
        assert result.stdout == ""

    @pytest.mark.parametrize("cli_backend", ["trio"])
    def test_handshake_refused_with_status(self, cli_backend: str) -> None:
        def refuse(
            ws: anyws.sync.ServerConnection, request: anyws.Request
        ) -> anyws.Response:
            return ws.respond(403, "no entry\n")

        with anyws.sync.serve(echo, "127.0.0.1", 0, process_request=refuse) as server:
            result = run_cli(f"ws://127.0.0.1:{server.port}/", "--backend", cli_backend)
        assert result.returncode == 1
        assert one_line(result.stderr) == (
            "anyws: server rejected WebSocket connection: HTTP 403 Forbidden"
        )

    def test_usage_errors(self, capsys: pytest.CaptureFixture[str]) -> None:
        for args, status, message in [
            (["ws://h/", "--header", "no colon"], 2, "expected 'Name: value'"),
            (
                ["bench-echo", "ws://h/", "--count", "0"],
                2,
                "--count must be at least 1",
            ),
            (["serve", "--tls-key", "key.pem"], 2, "anyws: --tls-key needs --tls-cert"),
            (["no-such-command"], 2, "invalid choice"),
            ([], 2, "the following arguments are required: COMMAND"),
        ]:
            with pytest.raises(SystemExit) as caught:
                main(args)
            assert caught.value.code == status
            assert message in capsys.readouterr().err

    @pytest.mark.parametrize("command", ["connect", "serve", "bench-echo", "demo"])
    def test_help_on_every_command(
        self, command: str, capsys: pytest.CaptureFixture[str]
    ) -> None:
        with pytest.raises(SystemExit) as caught:
            main([command, "--help"])
        assert caught.value.code == 0
        assert capsys.readouterr().out.startswith(f"usage: anyws {command}")

    def test_main_help_lists_the_commands(self) -> None:
        out = run_cli("--help").stdout  # through python -m anyws
        for command in ["connect", "serve", "bench-echo", "demo"]:
            assert command in out
        assert "anyws URL" in out


class TestServe:
    def test_prints_what_it_receives(self) -> None:
        server = CLIServer()
        try:
            with anyws.sync.connect(f"{server.uri}chat") as ws:
                peer = f"[127.0.0.1:{ws.local_address[1]}]"
                assert server.readline() == f"{peer} open /chat\n"
                ws.send("hi there")
                ws.send(b"\x01\x02")
                assert server.readline() == f"{peer} < hi there\n"
                assert server.readline() == f"{peer} < (binary) 0102\n"
            assert server.readline() == f"{peer} closed: code 1000 (normal closure)\n"
            out, err = server.interrupt()
        finally:
            server.close()
        assert out == "server stopped\n"
        assert err == ""
        assert server.process.returncode == 0

    def test_ctrl_c_closes_connections_with_1001(
        self, echo_cli_server: CLIServer
    ) -> None:
        with anyws.sync.connect(echo_cli_server.uri) as ws:
            ws.send("echo")
            assert ws.recv(timeout=SAFETY) == "echo"
            out, _ = echo_cli_server.interrupt()
            with pytest.raises(anyws.ConnectionClosedOK) as caught:
                ws.recv(timeout=SAFETY)
        assert caught.value.code == 1001
        assert out.endswith("closed: code 1001 (going away)\nserver stopped\n")
        assert echo_cli_server.process.returncode == 0

    def test_tls(
        self,
        tmp_path: Path,
        server_cert: trustme.LeafCert,
        client_ssl_context: ssl.SSLContext,
    ) -> None:
        cert = tmp_path / "cert.pem"
        key = tmp_path / "key.pem"
        for blob in server_cert.cert_chain_pems:
            blob.write_to_path(cert, append=True)
        server_cert.private_key_pem.write_to_path(key)
        server = CLIServer("--echo", "--tls-cert", str(cert), "--tls-key", str(key))
        try:
            assert server.scheme == "wss"
            with anyws.sync.connect(
                f"wss://localhost:{server.port}/", ssl=client_ssl_context
            ) as ws:
                ws.send("secure echo")
                assert ws.recv(timeout=SAFETY) == "secure echo"
        finally:
            server.close()

    def test_bad_certificate_and_busy_port(self, tmp_path: Path) -> None:
        missing = tmp_path / "missing.pem"
        result = run_cli("serve", "--port", "0", "--tls-cert", str(missing))
        assert result.returncode == 1
        assert one_line(result.stderr).startswith(
            "anyws: cannot load the TLS certificate:"
        )
        with socket.create_server(("127.0.0.1", 0)) as busy:
            port = busy.getsockname()[1]
            result = run_cli("serve", "--port", str(port))
        assert result.returncode == 1
        assert one_line(result.stderr) == (
            f"anyws: cannot listen on 127.0.0.1:{port}: Address already in use"
        )


class TestBenchEcho:
    def test_against_echo_server(
        self, echo_cli_server: CLIServer, cli_backend: str
    ) -> None:
        # Bytes, not text: universal newlines would turn the \r into \n.
        result = subprocess.run(
            [sys.executable, "-m", "anyws", "bench-echo", echo_cli_server.uri]
            + ["--count", "200", "--size", "100", "--backend", cli_backend],
            capture_output=True,
            timeout=SAFETY,
            check=False,
        )
        assert result.returncode == 0, result.stderr
        summary = one_line(result.stdout.decode())
        assert re.fullmatch(
            r"200 messages of 100 bytes in [\d.]+ s: [\d,]+ messages/s,"
            r" latency p50 [\d.]+ ms, p99 [\d.]+ ms",
            summary,
        ), summary
        # The progress line is redrawn in place, and kept at the end.
        progress = result.stderr.decode()
        assert progress.startswith("\r")
        assert "\n" not in progress[:-1]
        assert re.search(r"\r200/200 messages, [\d,]+ messages/s\n$", progress)

    def test_against_a_server_that_does_not_echo(self) -> None:
        def handler(ws: anyws.sync.ServerConnection) -> None:
            for _ in ws:
                ws.send("something else")

        with anyws.sync.serve(handler, "127.0.0.1", 0) as server:
            uri = f"ws://127.0.0.1:{server.port}/"
            result = run_cli("bench-echo", uri, "--count", "10")
        assert result.returncode == 1
        assert one_line(result.stderr) == f"anyws: {uri} didn't echo the message back"


def echo(ws: anyws.sync.ServerConnection) -> None:
    for message in ws:
        ws.send(message)

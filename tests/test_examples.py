"""The programs in examples/, run as real subprocesses talking over 127.0.0.1."""

from __future__ import annotations

import signal
import subprocess
import sys
from pathlib import Path

import pytest

EXAMPLES = Path(__file__).resolve().parent.parent / "examples"


@pytest.mark.parametrize("backend", ["asyncio", "trio"])
def test_echo_server_and_client(backend: str) -> None:
    server = subprocess.Popen(
        [sys.executable, str(EXAMPLES / "echo_server.py"), "--port", "0"]
        + ["--backend", backend],
        stdout=subprocess.PIPE,
        text=True,
    )
    try:
        assert server.stdout is not None
        line = server.stdout.readline()
        assert line.startswith("listening on ws://127.0.0.1:"), line
        uri = line.split()[-1]
        client = subprocess.run(
            [sys.executable, str(EXAMPLES / "client.py"), uri, "hello", "world"]
            + ["--backend", backend],
            capture_output=True,
            text=True,
            timeout=30,
            check=False,
        )
        assert client.returncode == 0, client.stderr
        assert client.stdout.splitlines()[:2] == ["< hello", "< world"]
        assert client.stdout.splitlines()[2].startswith("ping: ")
    finally:
        server.send_signal(signal.SIGINT)
        assert server.wait(timeout=30) == 0
        if server.stdout is not None:
            server.stdout.close()

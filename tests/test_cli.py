"""The command line, run as a real subprocess: ``python -m anyws``."""

from __future__ import annotations

import subprocess
import sys

import pytest


def run_cli(*args: str) -> subprocess.CompletedProcess[str]:
    return subprocess.run(
        [sys.executable, "-m", "anyws", *args],
        capture_output=True,
        text=True,
        timeout=60,
        check=False,
    )


class TestDemo:
    @pytest.mark.parametrize("backend", ["asyncio", "trio"])
    def test_demo_exchanges_text_binary_and_ping(self, backend: str) -> None:
        result = run_cli("demo", "--backend", backend)
        assert result.returncode == 0, result.stderr
        out = result.stdout
        assert f"-- {backend} --" in out
        assert "text   'hello, anyws' echoed in" in out
        assert "binary b'\\x00\\x01\\x02\\x03\\x04\\x05\\x06\\x07' echoed in" in out
        assert "ping   answered in" in out
        assert "client closed with code 1000" in out
        assert result.stderr == ""

    def test_demo_runs_both_backends_by_default(self) -> None:
        result = run_cli("demo")
        assert result.returncode == 0, result.stderr
        assert result.stdout.index("-- asyncio --") < result.stdout.index("-- trio --")

    def test_help_and_usage_errors(self) -> None:
        assert "demo" in run_cli("--help").stdout
        result = run_cli("no-such-command")
        assert result.returncode == 2
        assert "invalid choice" in result.stderr

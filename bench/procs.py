"""What every benchmark process shares: loops, resource usage, messages, TLS.

Processes talk to the coordinator in JSON lines: commands on their standard input,
replies and events on their standard output. Anything else a process or a library
prints goes to standard error, which the coordinator keeps in a log file.
"""

from __future__ import annotations

import json
import os
import resource
import ssl
import sys
import threading
import time
from typing import TYPE_CHECKING, Any, TypeVar

import anyio

if TYPE_CHECKING:
    from collections.abc import Awaitable, Callable

T = TypeVar("T")

__all__ = [
    "LOOPS",
    "Window",
    "client_ssl_context",
    "emit",
    "percentiles",
    "raise_nofile_limit",
    "rss_kib",
    "run_on",
    "serve_control",
    "server_ssl_context",
    "usage",
]

LOOPS = ("asyncio", "uvloop", "trio")
"""The event loops: asyncio, asyncio with uvloop, trio."""

_stdout_lock = threading.Lock()


def emit(message: dict[str, Any]) -> None:
    """Write one JSON line to standard output."""
    line = json.dumps(message, separators=(",", ":"))
    with _stdout_lock:
        sys.stdout.write(line + "\n")
        sys.stdout.flush()


def raise_nofile_limit() -> None:
    """Raise the soft limit on open files to the hard limit."""
    soft, hard = resource.getrlimit(resource.RLIMIT_NOFILE)
    if hard == resource.RLIM_INFINITY or soft < hard:
        target = hard if hard != resource.RLIM_INFINITY else max(soft, 1 << 16)
        resource.setrlimit(resource.RLIMIT_NOFILE, (target, hard))


def rss_kib() -> int:
    """Return the resident set size of this process in KiB (``VmRSS``)."""
    try:
        with open("/proc/self/status", encoding="ascii") as status:
            for line in status:
                if line.startswith("VmRSS:"):
                    return int(line.split()[1])
    except OSError:
        pass
    # Without /proc, fall back on the peak, which is right while memory only grows.
    peak = resource.getrusage(resource.RUSAGE_SELF).ru_maxrss
    return peak // 1024 if sys.platform == "darwin" else peak


def usage() -> dict[str, Any]:
    """Return this process's CPU seconds (user + system), RSS and a timestamp."""
    return {"cpu": time.process_time(), "rss_kib": rss_kib(), "t": time.perf_counter()}


def serve_control() -> None:
    """Answer the coordinator from a daemon thread while the main thread serves.

    ``usage`` replies with :func:`usage`; ``quit`` or the end of standard input
    ends the process at once. Measuring the whole process from another thread is
    exact because the CPU clock is per process, and this thread sleeps in
    ``readline()`` between questions.
    """

    def answer() -> None:
        for line in sys.stdin:
            command = line.strip()
            if command == "usage":
                emit(usage())
            elif command == "quit":
                break
        sys.stdout.flush()
        os._exit(0)

    threading.Thread(target=answer, name="bench control", daemon=True).start()


def run_on(loop: str, main: Callable[[], Awaitable[T]]) -> T:
    """Run ``main`` on ``loop``: ``asyncio``, ``uvloop`` or ``trio``."""
    if loop == "trio":
        return anyio.run(main, backend="trio")
    if loop in ("asyncio", "uvloop"):
        options = {"use_uvloop": loop == "uvloop"}
        return anyio.run(main, backend="asyncio", backend_options=options)
    raise ValueError(f"unknown loop: {loop!r}")


def server_ssl_context(cert_chain: str | None) -> ssl.SSLContext | None:
    """Return a server TLS context from a PEM file with key and chain, if any."""
    if cert_chain is None:
        return None
    context = ssl.create_default_context(ssl.Purpose.CLIENT_AUTH)
    context.load_cert_chain(cert_chain)
    return context


def client_ssl_context(cafile: str | None) -> ssl.SSLContext | None:
    """Return a client TLS context trusting the CA in ``cafile``, if any."""
    if cafile is None:
        return None
    return ssl.create_default_context(cafile=cafile)


class Window:
    """Counters shared by the connections of one measurement."""

    def __init__(self, command_id: int) -> None:
        self.command_id = command_id
        self.ops = 0
        self.measuring = False
        self.stop = False
        self.latencies: list[float] = []
        self._marks: list[tuple[float, float, int]] = []

    def mark(self) -> None:
        """Open or close the measurement window, and tell the coordinator."""
        snapshot = (time.perf_counter(), time.process_time(), self.ops)
        self.measuring = not self._marks
        self._marks.append(snapshot)
        emit({"id": self.command_id, "mark": len(self._marks) - 1})

    def result(self) -> dict[str, Any]:
        """Return the counts between the two marks."""
        (t0, cpu0, ops0), (t1, cpu1, ops1) = self._marks
        return {
            "ops": ops1 - ops0,
            "seconds": t1 - t0,
            "driver_cpu": cpu1 - cpu0,
            "latency": percentiles(self.latencies),
        }


def percentiles(samples: list[float]) -> list[float] | None:
    """Return the median and 99th percentile of ``samples``, if any."""
    if not samples:
        return None
    ordered = sorted(samples)
    last = len(ordered) - 1
    return [ordered[last // 2], ordered[min(last, round(last * 0.99))]]

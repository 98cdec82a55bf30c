"""The coordinator: starts the processes, runs the measurements, keeps the samples.

Each measurement has a driver and a side under test, in separate processes:

* server side: the load generator (:mod:`bench.loadgen`) drives a server under
  test (:mod:`bench.server`); the coordinator reads the server's CPU clock when
  the load generator opens and closes its measurement window;
* client side: a client under test (:mod:`bench.client`) talks to the fixed echo
  server (:mod:`bench.echo`) and reads its own CPU clock at its window's edges.

Repetitions are interleaved: every implementation runs once, then every one
again, so that a slow minute of the machine hits them all alike.
"""

from __future__ import annotations

import json
import os
import queue
import subprocess
import sys
import threading
import time
from dataclasses import asdict, dataclass
from pathlib import Path
from typing import IO, TYPE_CHECKING, Any

if TYPE_CHECKING:
    from collections.abc import Callable, Iterable

    from .plan import Impl, Variant

__all__ = ["ROOT", "Child", "Measurer", "Sample", "Settings"]

ROOT = Path(__file__).resolve().parent.parent
"""The directory that holds the ``bench`` package."""

SETTLE = 0.3
"""Seconds to let a server settle before reading its memory."""


class ChildError(RuntimeError):
    """Raised when a benchmark process fails or stops answering."""


class Child:
    """A benchmark process that speaks JSON lines on its standard streams."""

    def __init__(
        self, module: str, args: list[str], name: str, env: dict[str, str], logs: Path
    ) -> None:
        self.name = name
        self.log_path = logs / f"{name}.log"
        self._log = open(self.log_path, "ab")  # closed in close()
        self.process = subprocess.Popen(
            [sys.executable, "-m", module, *args],
            stdin=subprocess.PIPE,
            stdout=subprocess.PIPE,
            stderr=self._log,
            cwd=ROOT,
            env=env,
            text=True,
            bufsize=1,
        )
        self._lines: queue.Queue[str | None] = queue.Queue()
        assert self.process.stdout is not None
        threading.Thread(
            target=self._read, args=(self.process.stdout,), daemon=True
        ).start()

    def _read(self, stdout: IO[str]) -> None:
        for line in stdout:
            self._lines.put(line)
        self._lines.put(None)

    def read(self, timeout: float) -> dict[str, Any]:
        """Return the next message; raise :class:`ChildError` on failure."""
        try:
            line = self._lines.get(timeout=timeout)
        except queue.Empty:
            raise ChildError(f"{self.name}: no answer in {timeout:.0f} s") from None
        if line is None:
            self._lines.put(None)
            raise ChildError(f"{self.name} exited; see {self.log_path}")
        message: dict[str, Any] = json.loads(line)
        return message

    def send(self, line: str) -> None:
        """Write one line to the process."""
        assert self.process.stdin is not None
        try:
            self.process.stdin.write(line + "\n")
            self.process.stdin.flush()
        except (BrokenPipeError, ValueError) as exc:
            raise ChildError(f"{self.name} exited; see {self.log_path}") from exc

    @property
    def alive(self) -> bool:
        """Whether the process still runs."""
        return self.process.poll() is None

    def usage(self) -> dict[str, Any]:
        """Ask a server for its CPU seconds and memory."""
        self.send("usage")
        return self.read(10)

    def close(self) -> None:
        """Stop the process, politely first."""
        try:
            self.send("quit")
            assert self.process.stdin is not None
            self.process.stdin.close()
        except (ChildError, OSError):
            pass
        try:
            self.process.wait(5)
        except subprocess.TimeoutExpired:
            self.process.kill()
            self.process.wait()
        self._log.close()


@dataclass
class Sample:
    """One measurement of one implementation."""

    value: float
    """Throughput in the variant's unit, or KiB per connection for memory."""
    cpu_us: float | None
    """CPU microseconds per operation of the side under test."""
    ops: int
    seconds: float
    latency_ms: list[float] | None
    """Median and 99th percentile of the operations' latency."""
    driver_cpu_us: float | None
    """CPU microseconds per operation of the driver, to check it is not the limit."""


@dataclass
class Settings:
    """How long and how often to measure."""

    repeat: int
    warmup: float
    duration: float
    logs: Path
    certs: dict[str, str]
    """``cafile`` and ``cert`` (key and chain) paths for TLS."""
    verbose: bool = False


def _command(
    variant: Variant,
    settings: Settings,
    port: int,
    proto: str,
    conns: int | None = None,
) -> dict[str, Any]:
    return {
        "workload": variant.workload,
        "port": port,
        "proto": proto,
        "size": variant.size,
        "conns": variant.conns if conns is None else conns,
        "inflight": variant.inflight,
        "concurrency": variant.concurrency,
        "cafile": settings.certs["cafile"] if variant.tls else None,
        "deflate": variant.deflate,
        "warmup": settings.warmup,
        "duration": settings.duration,
    }


def _sample(
    variant: Variant, result: dict[str, Any], cpu: float | None
) -> Sample | None:
    ops, seconds = int(result["ops"]), float(result["seconds"])
    if ops <= 0 or seconds <= 0:
        return None
    latency = result.get("latency")
    return Sample(
        value=variant.value(ops, seconds),
        cpu_us=None if cpu is None else cpu / ops * 1e6,
        ops=ops,
        seconds=seconds,
        latency_ms=None if latency is None else [x * 1e3 for x in latency],
        driver_cpu_us=float(result["driver_cpu"]) / ops * 1e6,
    )


class Measurer:
    """Runs the measurements of one benchmark run and keeps their samples."""

    def __init__(self, settings: Settings, base_env: dict[str, str]) -> None:
        self.settings = settings
        self.base_env = base_env
        self.samples: dict[tuple[str, str, str, str], list[Sample | None]] = {}
        """Samples by (side, variant label, implementation name, loop)."""
        self.errors: list[str] = []
        self._loadgen: Child | None = None
        self._serial = 0

    # Processes

    def _env(self, impl: Impl | None) -> dict[str, str]:
        env = dict(self.base_env)
        if impl is not None:
            env.update(impl.env)
        return env

    def _start(
        self, module: str, args: list[str], name: str, impl: Impl | None
    ) -> Child:
        self._serial += 1
        return Child(
            module,
            args,
            f"{self._serial:03d}-{name}",
            self._env(impl),
            self.settings.logs,
        )

    def loadgen(self) -> Child:
        """Return the load generator, started on first use."""
        if self._loadgen is None or not self._loadgen.alive:
            self._loadgen = self._start("bench.loadgen", [], "loadgen", None)
            self._loadgen.read(60)
        return self._loadgen

    def start_servers(
        self, impls: Iterable[Impl], *, tls: bool, deflate: bool
    ) -> dict[Impl, tuple[Child, int]]:
        """Start one server under test per implementation; return them with ports."""
        children: dict[Impl, Child] = {}
        for impl in impls:
            args = ["--impl", impl.library, "--loop", impl.loop]
            if deflate:
                args.append("--deflate")
            if tls:
                args += ["--cert", self.settings.certs["cert"]]
            children[impl] = self._start(
                "bench.server", args, f"server-{impl.name}-{impl.loop}", impl
            )
        servers: dict[Impl, tuple[Child, int]] = {}
        for impl, child in children.items():
            try:
                servers[impl] = (child, int(child.read(60)["port"]))
            except ChildError as exc:
                self._error(f"{impl.name} on {impl.loop}: server did not start: {exc}")
                child.close()
        return servers

    def start_echo(self) -> tuple[Child, dict[str, int]]:
        """Start the fixed echo server; return it with its ports."""
        child = self._start(
            "bench.echo", ["--cert", self.settings.certs["cert"]], "echo", None
        )
        return child, dict(child.read(60)["ports"])

    def start_clients(self, impls: Iterable[Impl]) -> dict[Impl, Child]:
        """Start one client under test per implementation."""
        clients: dict[Impl, Child] = {}
        for impl in impls:
            clients[impl] = self._start(
                "bench.client",
                ["--impl", impl.library, "--loop", impl.loop],
                f"client-{impl.name}-{impl.loop}",
                impl,
            )
        for impl, child in list(clients.items()):
            try:
                child.read(60)
            except ChildError as exc:
                self._error(f"{impl.name} on {impl.loop}: client did not start: {exc}")
                child.close()
                del clients[impl]
        return clients

    # Measurements

    def _error(self, message: str) -> None:
        self.errors.append(message)
        print(f"  error: {message}", file=sys.stderr)

    def _run(
        self,
        driver: Child,
        command: dict[str, Any],
        on_mark: Callable[[dict[str, Any]], None],
    ) -> dict[str, Any]:
        """Send a command to a driver; return its result once it finishes.

        Every message carries the command's id, so that a late answer to an
        abandoned command is never taken for the answer to this one. A failing
        ``on_mark`` still waits for the driver to finish the command.
        """
        self._serial += 1
        command_id = self._serial
        driver.send(json.dumps({**command, "id": command_id}))
        timeout = self.settings.warmup + self.settings.duration + 120
        failure: ChildError | None = None
        while True:
            try:
                message = driver.read(timeout)
            except ChildError:
                # Stopped answering or died: stop it, so that it starts afresh.
                driver.close()
                raise
            if message.get("id") != command_id:
                continue
            if "mark" in message:
                if failure is None:
                    try:
                        on_mark(message)
                    except ChildError as exc:
                        failure = exc
                        if message.get("open") is not None:
                            driver.send("release")
            elif "result" in message:
                if failure is not None:
                    raise failure
                result: dict[str, Any] = message["result"]
                return result
            elif "error" in message:
                raise ChildError(f"{driver.name}: {message['error']}")

    def _keep(self, key: tuple[str, str, str, str], sample: Sample | None) -> None:
        self.samples.setdefault(key, []).append(sample)
        if self.settings.verbose and sample is not None:
            cpu = "-" if sample.cpu_us is None else f"{sample.cpu_us:.1f} µs/op"
            print(f"    {' '.join(key)}: {sample.value:,.1f}, {cpu}", file=sys.stderr)

    def missing(self, side: str, variant: Variant, impl: Impl) -> None:
        """Record a repetition that could not run, keeping the others paired."""
        self._keep((side, variant.label, impl.name, impl.loop), None)

    def measure_server(
        self, variant: Variant, impl: Impl, server: Child, port: int
    ) -> None:
        """Drive a server under test with the load generator."""
        key = ("server", variant.label, impl.name, impl.loop)
        proto = "raw" if impl.raw else "ws"
        usages: list[dict[str, Any]] = []
        try:
            result = self._run(
                self.loadgen(),
                _command(variant, self.settings, port, proto),
                lambda _: usages.append(server.usage()),
            )
            cpu = usages[1]["cpu"] - usages[0]["cpu"]
            self._keep(key, _sample(variant, result, cpu))
        except ChildError as exc:
            self._error(f"server {variant.label}, {impl.name} on {impl.loop}: {exc}")
            self._keep(key, None)

    def measure_client(
        self, variant: Variant, impl: Impl, client: Child, ports: dict[str, int]
    ) -> None:
        """Run a client under test against the echo server."""
        key = ("client", variant.label, impl.name, impl.loop)
        proto = "raw" if impl.raw else "ws"
        port = ports[proto + ("s" if variant.tls else "")]
        try:
            result = self._run(
                client, _command(variant, self.settings, port, proto), lambda _: None
            )
            self._keep(key, _sample(variant, result, float(result["driver_cpu"])))
        except ChildError as exc:
            self._error(f"client {variant.label}, {impl.name} on {impl.loop}: {exc}")
            self._keep(key, None)

    def measure_memory(
        self, variant: Variant, impl: Impl, server: Child, port: int
    ) -> None:
        """Open idle connections to a fresh server and read its memory growth."""
        key = ("server", variant.label, impl.name, impl.loop)
        proto = "raw" if impl.raw else "ws"
        driver = self.loadgen()

        def release(_: dict[str, Any]) -> None:
            driver.send("release")

        readings: list[int] = []

        def read_and_release(_: dict[str, Any]) -> None:
            time.sleep(SETTLE)
            readings.append(int(server.usage()["rss_kib"]))
            driver.send("release")

        try:
            # A few connections first, so that one-time allocations don't count.
            warm = _command(variant, self.settings, port, proto, conns=20)
            self._run(driver, warm, release)
            time.sleep(SETTLE)
            before = int(server.usage()["rss_kib"])
            result = self._run(
                driver, _command(variant, self.settings, port, proto), read_and_release
            )
            opened = int(result["ops"])
            per_conn = (readings[0] - before) / opened
            self._keep(key, Sample(per_conn, None, opened, 0.0, None, None))
        except ChildError as exc:
            self._error(f"server {variant.label}, {impl.name} on {impl.loop}: {exc}")
            self._keep(key, None)

    def close(self) -> None:
        """Stop the load generator."""
        if self._loadgen is not None:
            self._loadgen.close()

    def dump(self) -> list[dict[str, Any]]:
        """Return every sample, for the JSON report."""
        return [
            {
                "side": side,
                "variant": label,
                "impl": name,
                "loop": loop,
                "samples": [None if s is None else asdict(s) for s in samples],
            }
            for (side, label, name, loop), samples in self.samples.items()
        ]


def child_env() -> dict[str, str]:
    """Return the environment of the benchmark processes."""
    env = dict(os.environ)
    path = env.get("PYTHONPATH")
    env["PYTHONPATH"] = str(ROOT) + (os.pathsep + path if path else "")
    env.setdefault("PYTHONDONTWRITEBYTECODE", "1")
    return env

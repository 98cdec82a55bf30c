"""``python -m bench``: run every workload for anyws and its peers; print the tables."""

from __future__ import annotations

import argparse
import datetime
import importlib.metadata
import json
import os
import platform
import shutil
import subprocess
import sys
import tempfile
import time
from dataclasses import asdict
from pathlib import Path
from typing import TYPE_CHECKING, Any

from .coordinator import ROOT, Child, Measurer, Sample, Settings, child_env
from .plan import (
    DEFAULT_IMPLEMENTATIONS,
    IMPLEMENTATIONS,
    WORKLOADS,
    Impl,
    Variant,
    variants,
)
from .procs import LOOPS, raise_nofile_limit
from .report import Row, format_summary, format_table, rows

if TYPE_CHECKING:
    from collections.abc import Callable

__all__ = ["main"]

PACKAGES = (
    "anyws",
    "websockets",
    "aiohttp",
    "trio-websocket",
    "anyio",
    "wsproto",
    "trio",
    "uvloop",
)


def _csv(choices: tuple[str, ...]) -> Callable[[str], list[str]]:
    def parse(text: str) -> list[str]:
        items = [item.strip() for item in text.split(",") if item.strip()]
        unknown = [item for item in items if item not in choices]
        if unknown:
            raise argparse.ArgumentTypeError(
                f"unknown: {', '.join(unknown)} (choose from {', '.join(choices)})"
            )
        return items

    return parse


def _variant_env(text: str) -> tuple[str, tuple[tuple[str, str], ...]]:
    label, _, assignments = text.partition(":")
    env = []
    for assignment in assignments.split(","):
        name, equals, value = assignment.partition("=")
        if not equals or not name:
            raise argparse.ArgumentTypeError(f"expected LABEL:VAR=VALUE, got {text!r}")
        env.append((name.strip(), value))
    if not label:
        raise argparse.ArgumentTypeError(f"expected LABEL:VAR=VALUE, got {text!r}")
    return label, tuple(env)


def parse_args(argv: list[str] | None) -> argparse.Namespace:
    """Parse the command line."""
    parser = argparse.ArgumentParser(
        prog="python -m bench",
        description="Benchmark anyws against websockets, aiohttp, trio-websocket "
        "and a raw-TCP echo, on asyncio, uvloop and trio.",
    )
    parser.add_argument(
        "--quick", action="store_true", help="fewer sizes, shorter windows (~2 min)"
    )
    parser.add_argument(
        "--workloads", type=_csv(WORKLOADS), default=list(WORKLOADS), metavar="LIST"
    )
    parser.add_argument(
        "--loops", type=_csv(LOOPS), default=list(LOOPS), metavar="LIST"
    )
    impl_names = tuple(IMPLEMENTATIONS)
    parser.add_argument(
        "--impls",
        type=_csv(impl_names),
        default=list(DEFAULT_IMPLEMENTATIONS),
        metavar="LIST",
        help=f"from {', '.join(impl_names)}",
    )
    parser.add_argument(
        "--sides",
        type=_csv(("server", "client")),
        default=["server", "client"],
        metavar="LIST",
    )
    parser.add_argument("--repeat", type=int, help="repetitions (3; quick: 2)")
    parser.add_argument("--duration", type=float, help="seconds measured (0.4; 0.15)")
    parser.add_argument("--warmup", type=float, help="seconds of warm-up (0.15; 0.05)")
    parser.add_argument("--memory-conns", type=int, help="idle connections (2000; 500)")
    parser.add_argument("--fanin-conns", type=int, default=200)
    parser.add_argument(
        "--anyws-variant",
        type=_variant_env,
        action="append",
        default=[],
        metavar="LABEL:VAR=VALUE[,VAR=VALUE]",
        help="also run anyws with these environment variables, as anyws[LABEL]",
    )
    parser.add_argument(
        "--statistic",
        choices=("median", "best"),
        default="median",
        help="median of the repetitions (default), or the best one",
    )
    parser.add_argument("--json", type=Path, metavar="PATH", help="write results here")
    parser.add_argument(
        "--report",
        type=Path,
        metavar="PATH",
        help="measure nothing: print the tables of the results in PATH",
    )
    parser.add_argument("--logs", type=Path, help="directory for the processes' logs")
    parser.add_argument(
        "-v", "--verbose", action="store_true", help="print each sample"
    )
    args = parser.parse_args(argv)
    quick = args.quick
    for name, full, short in [
        ("repeat", 3, 2),
        ("duration", 0.4, 0.15),
        ("warmup", 0.15, 0.05),
        ("memory_conns", 2000, 500),
    ]:
        if getattr(args, name) is None:
            setattr(args, name, short if quick else full)
    if args.repeat < 1:
        parser.error("--repeat must be at least 1")
    return args


def implementations(args: argparse.Namespace) -> list[Impl]:
    """Return the implementations to run, grouped by loop as in the tables."""
    impls = []
    for loop in args.loops:
        for name, loops in IMPLEMENTATIONS.items():
            if name not in args.impls or loop not in loops:
                continue
            impls.append(Impl(name, name, loop))
            if name == "anyws":
                for label, env in args.anyws_variant:
                    impls.append(Impl(f"anyws[{label}]", "anyws", loop, env))
    return impls


def metadata() -> dict[str, Any]:
    """Return what a reader needs to place the figures: versions, machine, load."""
    versions: dict[str, str | None] = {}
    for package in PACKAGES:
        try:
            versions[package] = importlib.metadata.version(package)
        except importlib.metadata.PackageNotFoundError:
            versions[package] = None
    return {
        "date": datetime.datetime.now(datetime.timezone.utc).isoformat(
            timespec="seconds"
        ),
        "python": sys.version.split()[0],
        "implementation": platform.python_implementation(),
        "platform": platform.platform(),
        "cpus": os.cpu_count(),
        "load_average": os.getloadavg(),
        "commit": git_commit(),
        "anyws_source": fingerprint(),
        "versions": versions,
    }


def git_commit() -> str | None:
    """Return the repository's commit, marked ``-dirty`` with local changes."""
    try:
        return subprocess.run(
            ["git", "describe", "--always", "--dirty"],
            cwd=ROOT,
            capture_output=True,
            text=True,
            check=True,
        ).stdout.strip()
    except (OSError, subprocess.CalledProcessError):
        return None


def fingerprint() -> str:
    """Return a digest of anyws's installed source, to notice changes during a run."""
    import hashlib

    import anyws

    digest = hashlib.sha256()
    package = Path(anyws.__file__).parent
    for path in sorted(package.rglob("*")):
        if (
            path.suffix in (".py", ".so", ".pyd", ".c")
            and "__pycache__" not in path.parts
        ):
            digest.update(str(path.relative_to(package)).encode())
            digest.update(path.read_bytes())
    return digest.hexdigest()[:16]


def make_certs(directory: Path) -> dict[str, str]:
    """Make a CA and a certificate for 127.0.0.1; return the files' paths."""
    import trustme

    ca = trustme.CA()
    cert = ca.issue_cert("127.0.0.1", "localhost")
    cafile, chain = directory / "ca.pem", directory / "server.pem"
    ca.cert_pem.write_to_path(str(cafile))
    cert.private_key_and_cert_chain_pem.write_to_path(str(chain))
    return {"cafile": str(cafile), "cert": str(chain)}


class Progress:
    """Tells on standard error how far the run is."""

    def __init__(self, total: int) -> None:
        self.total = total
        self.done = 0
        self.start = time.monotonic()

    def step(self, side: str, variant: Variant) -> None:
        """Announce the next row."""
        self.done += 1
        elapsed = time.monotonic() - self.start
        print(
            f"[{elapsed:6.1f} s] {self.done}/{self.total} {side}: {variant.label}",
            file=sys.stderr,
            flush=True,
        )


def _restart_if_dead(
    measurer: Measurer,
    servers: dict[Impl, tuple[Child, int]],
    impl: Impl,
    variant: Variant,
) -> None:
    child, _ = servers[impl]
    if not child.alive:
        child.close()
        del servers[impl]
        print(f"  restarting the {impl.name} server on {impl.loop}", file=sys.stderr)
        servers.update(
            measurer.start_servers([impl], tls=variant.tls, deflate=variant.deflate)
        )


def run_servers(
    measurer: Measurer,
    impls: list[Impl],
    rows_: list[Variant],
    repeat: int,
    progress: Progress,
) -> None:
    """Measure the servers: long-lived servers per configuration, fresh for memory."""
    configs = list(
        dict.fromkeys((v.tls, v.deflate) for v in rows_ if v.workload != "hold")
    )
    for tls, deflate in configs:
        group = [
            v
            for v in rows_
            if v.workload != "hold" and (v.tls, v.deflate) == (tls, deflate)
        ]
        users = [impl for impl in impls if any(v.applies(impl) for v in group)]
        servers = measurer.start_servers(users, tls=tls, deflate=deflate)
        try:
            for variant in group:
                progress.step("server", variant)
                for _ in range(repeat):
                    for impl in users:
                        if not variant.applies(impl):
                            continue
                        if impl in servers:
                            _restart_if_dead(measurer, servers, impl, variant)
                        if impl in servers:
                            child, port = servers[impl]
                            measurer.measure_server(variant, impl, child, port)
                        else:
                            measurer.missing("server", variant, impl)
        finally:
            for child, _ in servers.values():
                child.close()
    for variant in rows_:
        if variant.workload != "hold":
            continue
        progress.step("server", variant)
        users = [impl for impl in impls if variant.applies(impl)]
        for _ in range(repeat):
            # Fresh servers each time: memory freed earlier would be reused.
            servers = measurer.start_servers(users, tls=False, deflate=variant.deflate)
            try:
                for impl in users:
                    if impl in servers:
                        child, port = servers[impl]
                        measurer.measure_memory(variant, impl, child, port)
                        child.close()
                    else:
                        measurer.missing("server", variant, impl)
            finally:
                for child, _ in servers.values():
                    child.close()


def run_clients(
    measurer: Measurer,
    impls: list[Impl],
    rows_: list[Variant],
    repeat: int,
    progress: Progress,
) -> None:
    """Measure the clients against one echo server."""
    group = [v for v in rows_ if not v.server_only]
    if not group:
        return
    echo, ports = measurer.start_echo()
    users = [impl for impl in impls if any(v.applies(impl) for v in group)]
    clients = measurer.start_clients(users)
    try:
        for variant in group:
            progress.step("client", variant)
            for _ in range(repeat):
                for impl in users:
                    if not variant.applies(impl):
                        continue
                    if impl in clients and not clients[impl].alive:
                        clients.pop(impl).close()
                    if impl not in clients:
                        clients.update(measurer.start_clients([impl]))
                    if impl in clients:
                        measurer.measure_client(variant, impl, clients[impl], ports)
                    else:
                        measurer.missing("client", variant, impl)
    finally:
        for child in clients.values():
            child.close()
        echo.close()


def print_report(
    meta: dict[str, Any],
    settings: dict[str, Any],
    samples: dict[tuple[str, str, str, str], list[Sample | None]],
    selected: list[Variant],
    impls: list[Impl],
    errors: list[str],
) -> list[Row]:
    """Print the tables; return their rows."""
    sides = list(dict.fromkeys(key[0] for key in samples))
    statistic = settings["statistic"]
    table = rows(samples, sides, selected, impls, statistic)
    versions = ", ".join(f"{k} {v}" for k, v in meta["versions"].items() if v)
    print(f"\n{meta['date']}, Python {meta['python']}, {meta['cpus']} CPUs, {versions}")
    print(
        f"commit {meta['commit']}; {settings['repeat']} repetitions of "
        f"{settings['duration']} s after {settings['warmup']} s of warm-up; "
        + (
            "medians; ×ws is the median ratio to websockets on the same loop, "
            "paired run by run."
            if statistic == "median"
            else "best repetitions; ×ws compares them with websockets' best on "
            "the same loop."
        )
    )
    for side in sides:
        print()
        print(format_table(table, side))
    for name in dict.fromkeys(impl.name for impl in impls if impl.library == "anyws"):
        print()
        print(format_summary(table, name))
    if meta.get("anyws_source_end", meta["anyws_source"]) != meta["anyws_source"]:
        print(
            "\nwarning: anyws's source changed during the run; rows measured before "
            "and after the change are not comparable"
        )
    if errors:
        print(f"\n{len(errors)} measurements failed:")
        for error in errors:
            print(f"  {error}")
    return table


def reprint(path: Path, statistic: str) -> None:
    """Print the tables of an earlier run from its JSON results."""
    report = json.loads(path.read_text())
    samples: dict[tuple[str, str, str, str], list[Sample | None]] = {}
    impls: list[Impl] = []
    for entry in report["samples"]:
        key = (entry["side"], entry["variant"], entry["impl"], entry["loop"])
        samples[key] = [None if s is None else Sample(**s) for s in entry["samples"]]
        library = "anyws" if entry["impl"].startswith("anyws") else entry["impl"]
        impl = Impl(entry["impl"], library, entry["loop"])
        if impl not in impls:
            impls.append(impl)
    loops = [loop for loop in LOOPS if any(impl.loop == loop for impl in impls)]
    impls.sort(key=lambda impl: loops.index(impl.loop))
    # The rows in the order of a run with the same settings, then any others.
    settings = report["settings"]
    known = variants(
        settings.get("quick", False),
        settings.get("memory_conns", 2000),
        settings.get("fanin_conns", 200),
    )
    known += variants(not settings.get("quick", False), 2000, 200)
    known += variants(True, 500, 200)
    labels = {key[1] for key in samples}
    selected: list[Variant] = []
    for variant in known:
        if variant.label in labels:
            selected.append(variant)
            labels.discard(variant.label)
    print_report(
        report["meta"],
        {**settings, "statistic": statistic},
        samples,
        selected,
        impls,
        report["errors"],
    )


def main(argv: list[str] | None = None) -> None:
    """Run the benchmark and print the tables."""
    args = parse_args(argv)
    if args.report is not None:
        reprint(args.report, args.statistic)
        return
    raise_nofile_limit()
    impls = implementations(args)
    selected = [
        v
        for v in variants(args.quick, args.memory_conns, args.fanin_conns)
        if v.group in args.workloads
    ]
    work = Path(tempfile.mkdtemp(prefix="anyws-bench-"))
    logs = args.logs or work / "logs"
    logs.mkdir(parents=True, exist_ok=True)
    settings = Settings(
        repeat=args.repeat,
        warmup=args.warmup,
        duration=args.duration,
        logs=logs,
        certs=make_certs(work),
        verbose=args.verbose,
    )
    meta = metadata()
    measurer = Measurer(settings, child_env())
    total = sum(
        1
        for side in args.sides
        for v in selected
        if side == "server" or not v.server_only
    )
    progress = Progress(total)
    print(
        f"anyws benchmark: {len(impls)} implementation×loop pairs, {total} rows, "
        f"{args.repeat} repetitions, logs in {logs}",
        file=sys.stderr,
    )
    try:
        if "server" in args.sides:
            run_servers(measurer, impls, selected, args.repeat, progress)
        if "client" in args.sides:
            run_clients(measurer, impls, selected, args.repeat, progress)
    finally:
        measurer.close()
        for path in settings.certs.values():
            Path(path).unlink()
        # Keep the logs when something failed or when they were asked for.
        if args.logs is None and not measurer.errors:
            shutil.rmtree(work, ignore_errors=True)
    meta["load_average_end"] = os.getloadavg()
    meta["anyws_source_end"] = fingerprint()
    meta["commit_end"] = git_commit()
    meta["seconds"] = round(time.monotonic() - progress.start, 1)
    run_settings = {
        "repeat": args.repeat,
        "warmup": args.warmup,
        "duration": args.duration,
        "quick": args.quick,
        "memory_conns": args.memory_conns,
        "fanin_conns": args.fanin_conns,
        "statistic": args.statistic,
        "argv": sys.argv[1:] if argv is None else argv,
    }
    table = print_report(
        meta, run_settings, measurer.samples, selected, impls, measurer.errors
    )
    if measurer.errors:
        print(f"logs in {logs}")
    if args.json is not None:
        report = {
            "meta": meta,
            "settings": run_settings,
            "rows": [asdict(row) for row in table],
            "samples": measurer.dump(),
            "errors": measurer.errors,
        }
        args.json.write_text(json.dumps(report, indent=1) + "\n")
        print(f"\nresults written to {args.json}")

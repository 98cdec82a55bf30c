"""Run every conformance case and print the summary: ``python -m tests.conformance``.

Run it from the repository root. Options: ``--backend`` (asyncio, asyncio+uvloop or
trio), ``--side`` (server, client or both) and ``-k PREFIX`` to run only the cases
whose id starts with PREFIX. The exit status is 1 when a case FAILED.
"""

from __future__ import annotations

import argparse
import platform
import sys
import time
from typing import TYPE_CHECKING, Any

import anyio

import anyws

from .catalog import ALL_CASES, cases_for
from .harness import CATEGORIES, Result, SideName, run_case

if TYPE_CHECKING:
    from collections.abc import Sequence

VERDICTS = ("OK", "NON-STRICT", "FAILED")
TITLES: dict[SideName, str] = {
    "server": "anyws as a server: an anyws.serve echo server, driven by a raw client",
    "client": "anyws as a client: anyws.connect echo clients, driven by a raw server",
}


async def run_all(
    sides: Sequence[SideName], prefix: str
) -> dict[SideName, list[Result]]:
    """Run the cases of each side in turn."""
    results: dict[SideName, list[Result]] = {}
    for side in sides:
        results[side] = [
            await run_case(case, side)
            for case in cases_for(side)
            if case.id.startswith(prefix)
        ]
    return results


def table(results: list[Result]) -> list[str]:
    """The counts per category and verdict."""
    lines = [f"  {'category':<24}{'cases':>6}" + "".join(f"{v:>12}" for v in VERDICTS)]
    for category, name in [*CATEGORIES.items(), ("", "all")]:
        rows = [r for r in results if not category or r.case.category == category]
        if not rows:
            continue
        label = f"{category:<3}{name}" if category else "all"
        counts = [sum(r.verdict == v for r in rows) for v in VERDICTS]
        lines.append(
            f"  {label:<24}{len(rows):>6}" + "".join(f"{c:>12}" for c in counts)
        )
    return lines


def details(results: list[Result]) -> list[str]:
    """The non-OK cases, and the times of category 9."""
    lines: list[str] = []
    odd = [r for r in results if r.verdict != "OK"]
    lines.append(f"  Non-OK cases ({len(odd)}):" if odd else "  Non-OK cases: none")
    for result in odd:
        lines.append(
            f"    {result.case.id:<9}{result.verdict:<11}{result.case.description}"
        )
        lines.append(f"    {'':<20}{result.reason}")
    timed = [r for r in results if r.case.category == "9"]
    if timed:
        lines.append("")
        lines.append("  Category 9 times (reported, not asserted):")
        for result in timed:
            lines.append(
                f"    {result.case.id:<9}{result.duration:>8.3f} s  "
                f"{result.case.description}"
            )
    return lines


def report(results: dict[SideName, list[Result]], backend: str, elapsed: float) -> str:
    """The whole report."""
    count = sum(len(r) for r in results.values())
    lines = [
        f"anyws {anyws.__version__} conformance: {count} case runs on {backend} "
        f"(Python {platform.python_version()}), {elapsed:.1f} s",
    ]
    for side, side_results in results.items():
        lines += [
            "",
            TITLES[side],
            "",
            *table(side_results),
            "",
            *details(side_results),
        ]
    return "\n".join(lines)


def main(argv: Sequence[str] | None = None) -> int:
    """Parse the arguments, run the cases, print the report."""
    parser = argparse.ArgumentParser(prog="python -m tests.conformance")
    parser.add_argument(
        "--backend", choices=["asyncio", "asyncio+uvloop", "trio"], default="asyncio"
    )
    parser.add_argument("--side", choices=["server", "client", "both"], default="both")
    parser.add_argument("-k", dest="prefix", default="", help="case id prefix")
    args = parser.parse_args(argv)
    sides: list[SideName] = ["server", "client"] if args.side == "both" else [args.side]
    options: dict[str, Any] = {}
    backend = args.backend
    if backend == "asyncio+uvloop":
        import uvloop

        backend, options = "asyncio", {"loop_factory": uvloop.new_event_loop}
    if not any(case.id.startswith(args.prefix) for case in ALL_CASES):
        parser.error(f"no case id starts with {args.prefix!r}")
    started = time.perf_counter()
    results = anyio.run(
        run_all, sides, args.prefix, backend=backend, backend_options=options
    )
    print(report(results, args.backend, time.perf_counter() - started))
    failed = any(r.verdict == "FAILED" for rs in results.values() for r in rs)
    return 1 if failed else 0


if __name__ == "__main__":
    sys.exit(main())

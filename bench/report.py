"""Medians, ratios and the tables printed at the end of a run."""

from __future__ import annotations

import statistics
from dataclasses import dataclass
from typing import TYPE_CHECKING

from .plan import BASELINE

if TYPE_CHECKING:
    from .coordinator import Sample
    from .plan import Impl, Variant

__all__ = ["Row", "format_summary", "format_table", "rows"]

SIDE_TITLES = {
    "server": "Servers under test, driven by the fixed load generator",
    "client": "Clients under test, against the fixed echo server",
}


@dataclass
class Row:
    """The medians of one implementation on one loop for one variant."""

    side: str
    variant: str
    unit: str
    loop: str
    impl: str
    runs: int
    """Successful repetitions."""
    value: float | None
    value_ratio: float | None
    """Median of the ratios to the baseline, each against the run beside it."""
    cpu_us: float | None
    cpu_ratio: float | None
    latency_ms: list[float] | None
    driver_cpu_us: float | None


def _median(values: list[float]) -> float | None:
    return statistics.median(values) if values else None


def _paired_ratio(
    samples: list[Sample | None], baseline: list[Sample | None], cpu: bool
) -> float | None:
    ratios = []
    for mine, theirs in zip(samples, baseline, strict=False):
        if mine is None or theirs is None:
            continue
        if cpu:
            if mine.cpu_us is not None and theirs.cpu_us:
                ratios.append(mine.cpu_us / theirs.cpu_us)
        elif theirs.value:
            ratios.append(mine.value / theirs.value)
    return _median(ratios)


def _best(
    samples: list[Sample | None], higher: bool
) -> tuple[float | None, float | None]:
    ok = [s for s in samples if s is not None]
    values = [s.value for s in ok]
    cpus = [s.cpu_us for s in ok if s.cpu_us is not None]
    value = (max(values) if higher else min(values)) if values else None
    return value, min(cpus) if cpus else None


def _ratio_of(mine: float | None, theirs: float | None) -> float | None:
    return None if mine is None or not theirs else mine / theirs


def rows(
    samples: dict[tuple[str, str, str, str], list[Sample | None]],
    sides: list[str],
    variants: list[Variant],
    impls: list[Impl],
    statistic: str = "median",
) -> list[Row]:
    """Return one row per side, variant, loop and implementation that ran.

    With ``statistic="median"``, figures are medians and ratios the medians of
    paired ratios. With ``"best"``, figures are the best repetition (highest
    throughput, lowest CPU and memory) and ratios compare the bests: a machine
    busy with other work only ever adds cost, so the best is its least
    disturbed estimate.
    """
    out: list[Row] = []
    loops = list(dict.fromkeys(impl.loop for impl in impls))
    for side in sides:
        for variant in variants:
            if side == "client" and variant.server_only:
                continue
            for loop in loops:
                baseline = samples.get((side, variant.label, BASELINE, loop), [])
                for impl in impls:
                    if impl.loop != loop:
                        continue
                    mine = samples.get((side, variant.label, impl.name, loop))
                    if mine is None:
                        continue
                    ok = [s for s in mine if s is not None]
                    cpus = [s.cpu_us for s in ok if s.cpu_us is not None]
                    drivers = [
                        s.driver_cpu_us for s in ok if s.driver_cpu_us is not None
                    ]
                    latencies = [s.latency_ms for s in ok if s.latency_ms is not None]
                    latency = None
                    if latencies:
                        latency = [
                            statistics.median(x[0] for x in latencies),
                            statistics.median(x[1] for x in latencies),
                        ]
                    row = Row(
                        side=side,
                        variant=variant.label,
                        unit=variant.unit,
                        loop=loop,
                        impl=impl.name,
                        runs=len(ok),
                        value=_median([s.value for s in ok]),
                        value_ratio=_paired_ratio(mine, baseline, cpu=False),
                        cpu_us=_median(cpus),
                        cpu_ratio=_paired_ratio(mine, baseline, cpu=True),
                        latency_ms=latency,
                        driver_cpu_us=_median(drivers),
                    )
                    if statistic == "best":
                        higher = variant.unit != "KiB/conn"
                        row.value, row.cpu_us = _best(mine, higher)
                        their_value, their_cpu = _best(baseline, higher)
                        row.value_ratio = _ratio_of(row.value, their_value)
                        row.cpu_ratio = _ratio_of(row.cpu_us, their_cpu)
                    out.append(row)
    return out


def _number(value: float | None) -> str:
    if value is None:
        return "-"
    if value >= 100:
        return f"{value:,.0f}"
    if value >= 10:
        return f"{value:.1f}"
    return f"{value:.2f}"


def _ratio(value: float | None) -> str:
    return "-" if value is None else f"{value:.2f}"


def format_table(all_rows: list[Row], side: str) -> str:
    """Return the full table of one side."""
    header = (
        f"{'workload':<24} {'loop':<8} {'implementation':<16} "
        f"{'throughput':>18} {'×ws':>5}  {'CPU µs/op':>10} {'×ws':>5}  "
        f"{'p50/p99 ms':>13}"
    )
    lines = [SIDE_TITLES[side], "", header, "-" * len(header)]
    previous: tuple[str, str] | None = None
    for row in all_rows:
        if row.side != side:
            continue
        if previous is not None and previous[0] != row.variant:
            lines.append("")
        variant = row.variant if previous is None or previous[0] != row.variant else ""
        loop = row.loop if previous != (row.variant, row.loop) else ""
        previous = (row.variant, row.loop)
        latency = "-"
        if row.latency_ms is not None:
            latency = f"{row.latency_ms[0]:.2f}/{row.latency_ms[1]:.2f}"
        value = _number(row.value) + " " + row.unit
        if row.runs == 0:
            value = "failed"
        lines.append(
            f"{variant:<24} {loop:<8} {row.impl:<16} {value:>18} "
            f"{_ratio(row.value_ratio):>5}  {_number(row.cpu_us):>10} "
            f"{_ratio(row.cpu_ratio):>5}  {latency:>13}"
        )
    return "\n".join(lines)


def format_summary(all_rows: list[Row], name: str) -> str:
    """Return the ratios of ``name`` to the baseline: throughput ×, CPU per op ×.

    For idle memory, the single ratio is of memory per connection.
    """
    loops = list(dict.fromkeys(row.loop for row in all_rows))
    title = (
        f"{name} against {BASELINE} on the same loop: throughput × / CPU per op × "
        f"(memory: KiB per connection ×)"
    )
    header = f"{'side':<7} {'workload':<24} " + " ".join(
        f"{loop:>13}" for loop in loops
    )
    lines = [title, "", header, "-" * len(header)]
    cells: dict[tuple[str, str], dict[str, str]] = {}
    for row in all_rows:
        if row.impl != name:
            continue
        if row.unit == "KiB/conn":
            text = _ratio(row.value_ratio)
        else:
            text = f"{_ratio(row.value_ratio)} / {_ratio(row.cpu_ratio)}"
        cells.setdefault((row.side, row.variant), {})[row.loop] = text
    for (side, variant), by_loop in cells.items():
        lines.append(
            f"{side:<7} {variant:<24} "
            + " ".join(f"{by_loop.get(loop, '-'):>13}" for loop in loops)
        )
    return "\n".join(lines)

"""What the benchmark measures: workloads, implementations, and their pairings."""

from __future__ import annotations

from dataclasses import dataclass, field

__all__ = [
    "BASELINE",
    "DEFAULT_IMPLEMENTATIONS",
    "IMPLEMENTATIONS",
    "WORKLOADS",
    "Impl",
    "Variant",
    "variants",
]

KIB = 1024
MIB = 1024 * 1024

BASELINE = "websockets"
"""Ratios compare every implementation with this one, on the same loop."""

IMPLEMENTATIONS: dict[str, tuple[str, ...]] = {
    "anyws": ("asyncio", "uvloop", "trio"),
    "websockets": ("asyncio", "uvloop", "trio"),
    "aiohttp": ("asyncio", "uvloop"),
    "trio-websocket": ("trio",),
    "raw": ("asyncio", "uvloop", "trio"),
    "raw-anyio": ("asyncio", "uvloop", "trio"),
}
"""Implementations and the loops each runs on, in the order of the tables."""

DEFAULT_IMPLEMENTATIONS = ("anyws", "websockets", "aiohttp", "trio-websocket", "raw")
"""What runs without ``--impls``; ``raw-anyio`` shows the cost of anyio's streams."""

WORKLOADS = ("rtt", "stream", "fanin", "handshake", "memory", "tls", "deflate")
"""The names ``--workloads`` accepts."""


@dataclass(frozen=True)
class Impl:
    """One implementation on one loop, possibly with extra environment."""

    name: str
    """The label in the tables, e.g. ``anyws`` or ``anyws[pure]``."""
    library: str
    """The implementation the processes run, a key of :data:`IMPLEMENTATIONS`."""
    loop: str
    env: tuple[tuple[str, str], ...] = field(default=())
    """Environment variables set for its processes."""

    @property
    def raw(self) -> bool:
        """Whether it speaks the length-prefixed echo rather than WebSocket."""
        return self.library.startswith("raw")


@dataclass(frozen=True)
class Variant:
    """One row of the tables: a workload with its parameters."""

    group: str
    """Its name for ``--workloads``."""
    label: str
    unit: str
    workload: str
    """What the driver runs: ``echo``, ``handshake`` or ``hold``."""
    size: int = 0
    conns: int = 1
    inflight: int = 1
    concurrency: int = 1
    tls: bool = False
    deflate: bool = False
    server_only: bool = False

    def applies(self, impl: Impl) -> bool:
        """Tell whether ``impl`` can run this variant."""
        if impl.raw:
            return not self.deflate and self.workload != "handshake"
        if impl.library == "trio-websocket":
            return not self.deflate
        return True

    def value(self, ops: int, seconds: float) -> float:
        """Return the throughput in :attr:`unit`."""
        if self.unit == "MB/s":
            return ops * self.size / seconds / 1e6
        return ops / seconds


def _size(size: int) -> str:
    if size >= MIB and size % MIB == 0:
        return f"{size // MIB} MiB"
    if size >= KIB and size % KIB == 0:
        return f"{size // KIB} KiB"
    if size >= 1000 and size % 1000 == 0:
        return f"{size // 1000} kB"
    return f"{size} B"


def variants(quick: bool, memory_conns: int, fanin_conns: int) -> list[Variant]:
    """Return every row, in the order of the tables; fewer with ``quick``."""
    rtt_sizes = [256, 100_000] if quick else [16, 256, 8 * KIB, 100_000, MIB]
    stream_sizes = [64 * KIB] if quick else [KIB, 64 * KIB, MIB]
    tls_sizes = [256] if quick else [256, 100_000]
    deflate_sizes = [8 * KIB] if quick else [256, 8 * KIB]
    rows: list[Variant] = []
    rows += [
        Variant("rtt", f"rtt {_size(s)}", "rt/s", "echo", size=s) for s in rtt_sizes
    ]
    rows += [
        Variant("stream", f"stream {_size(s)} ×64", "MB/s", "echo", size=s, inflight=64)
        for s in stream_sizes
    ]
    rows.append(
        Variant(
            "fanin",
            f"fan-in {fanin_conns}×64 B",
            "rt/s",
            "echo",
            size=64,
            conns=fanin_conns,
        )
    )
    rows.append(Variant("handshake", "handshakes seq", "conn/s", "handshake"))
    if not quick:
        rows.append(
            Variant(
                "handshake", "handshakes ×16", "conn/s", "handshake", concurrency=16
            )
        )
    for deflate in (False,) if quick else (False, True):
        rows.append(
            Variant(
                "memory",
                f"idle memory ×{memory_conns}" + (" deflate" if deflate else ""),
                "KiB/conn",
                "hold",
                size=256,
                conns=memory_conns,
                deflate=deflate,
                server_only=True,
            )
        )
    rows += [
        Variant("tls", f"tls rtt {_size(s)}", "rt/s", "echo", size=s, tls=True)
        for s in tls_sizes
    ]
    rows += [
        Variant(
            "deflate", f"deflate rtt {_size(s)}", "rt/s", "echo", size=s, deflate=True
        )
        for s in deflate_sizes
    ]
    return rows

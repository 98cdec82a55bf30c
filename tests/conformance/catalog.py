"""Every conformance case, in order."""

from __future__ import annotations

from . import (
    cases_deflate,
    cases_framing,
    cases_handshake,
    cases_limits,
    cases_utf8_close,
)
from .harness import CATEGORIES, Case, SideName

_ORDER = list(CATEGORIES)


def _key(case: Case) -> tuple[int, ...]:
    rest = case.id.split(".")[1:]
    return (_ORDER.index(case.category), *(int(part) for part in rest))


ALL_CASES: list[Case] = sorted(
    cases_framing.CASES
    + cases_utf8_close.CASES
    + cases_limits.CASES
    + cases_deflate.CASES
    + cases_handshake.CASES,
    key=_key,
)

_ids = [case.id for case in ALL_CASES]
assert len(_ids) == len(set(_ids)), "duplicate case ids"
assert all(case.category in CATEGORIES for case in ALL_CASES), "unknown category"


def cases_for(side: SideName) -> list[Case]:
    """The cases that apply to ``side``."""
    return [case for case in ALL_CASES if side in case.sides]

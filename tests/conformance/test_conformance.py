"""The RFC 6455 / RFC 7692 conformance cases, one test per case and side.

Discipline: each test runs one numbered case (see :mod:`tests.conformance`) against
a fresh anyws endpoint on 127.0.0.1: an ``anyws.serve`` echo server driven by a
raw client, or ``anyws.connect`` echo clients driven by a raw server. The raw peer
orders everything by what anyws sends back (an echo, a Pong, a Close, the end of
TCP); timeouts are safety nets only, and the one wait that decides a verdict (a
fail-fast Close that doesn't come) only turns OK into NON-STRICT. A test fails
when the case's verdict is FAILED; NON-STRICT verdicts pass, as in the Autobahn
Testsuite, and ``python -m tests.conformance`` lists them.

The cases that move the most data (category 9, 4 MiB and more) run on one backend
only here: the first one in ``ANYWS_TEST_BACKENDS``, or asyncio. ``python -m
tests.conformance`` runs them all on the backend it is given.
"""

from __future__ import annotations

import os
from typing import Any

import pytest

from .catalog import cases_for
from .harness import Case, SideName, run_case

# Cases where anyws breaks the RFC today; the tests are strict xfails, so fixing
# anyws makes them fail until the entry is removed.
KNOWN_FAILURES: dict[tuple[SideName, str], str] = {}


def _params(side: SideName) -> list[Any]:
    params = []
    for case in cases_for(side):
        reason = KNOWN_FAILURES.get((side, case.id))
        marks = [pytest.mark.xfail(reason=reason, strict=True)] if reason else []
        params.append(pytest.param(case, id=case.id, marks=marks))
    return params


def _backend_id(anyio_backend: tuple[str, dict[str, Any]]) -> str:
    name, options = anyio_backend
    return name + ("+uvloop" if options.get("loop_factory") else "")


def _big_cases_backend() -> str:
    requested = os.environ.get("ANYWS_TEST_BACKENDS", "").split(",")
    return requested[0].strip() or "asyncio"


async def _check(
    case: Case, side: SideName, anyio_backend: tuple[str, dict[str, Any]]
) -> None:
    if case.big and _backend_id(anyio_backend) != _big_cases_backend():
        pytest.skip(f"large case: runs on {_big_cases_backend()} only")
    result = await run_case(case, side)
    assert result.verdict != "FAILED", f"{case.id} {case.description}: {result.reason}"


class TestServer:
    """anyws as a server: an echo server driven by a raw client."""

    @pytest.mark.parametrize("case", _params("server"))
    async def test_server_case(
        self, case: Case, anyio_backend: tuple[str, dict[str, Any]]
    ) -> None:
        await _check(case, "server", anyio_backend)


class TestClient:
    """anyws as a client: echo clients driven by a raw server."""

    @pytest.mark.parametrize("case", _params("client"))
    async def test_client_case(
        self, case: Case, anyio_backend: tuple[str, dict[str, Any]]
    ) -> None:
        await _check(case, "client", anyio_backend)

"""Development sessions for anyws.

``nox`` runs lint, typecheck and tests_all. ``nox -s tests`` runs the suite
once per backend, each in its own session; ``nox -s "tests(trio)"`` picks one.
Arguments after ``--`` go to pytest, e.g. ``nox -s tests_all -- -x -k close``.
"""

from __future__ import annotations

import nox

nox.options.default_venv_backend = "venv"
nox.options.reuse_existing_virtualenvs = True
nox.options.sessions = ["lint", "typecheck", "tests_all"]

# The backend ids understood by tests/conftest.py through ANYWS_TEST_BACKENDS.
BACKENDS = ["asyncio", "asyncio+uvloop", "trio"]


def install(session: nox.Session, *extras: str) -> None:
    """Install anyws in editable mode with the given extras."""
    session.install("-e", f".[{','.join(extras)}]")


@nox.session
@nox.parametrize("backend", BACKENDS, ids=BACKENDS)
def tests(session: nox.Session, backend: str) -> None:
    """Run the test suite on one backend."""
    install(session, "test")
    session.run("pytest", *session.posargs, env={"ANYWS_TEST_BACKENDS": backend})


@nox.session
def tests_all(session: nox.Session) -> None:
    """Run the test suite on every backend, with branch coverage."""
    install(session, "test")
    session.run("coverage", "erase")
    session.run(
        "coverage",
        "run",
        "-m",
        "pytest",
        *session.posargs,
        env={"ANYWS_TEST_BACKENDS": None},
    )
    session.run("coverage", "report")


@nox.session
def lint(session: nox.Session) -> None:
    """Check linting and formatting with ruff."""
    install(session, "lint")
    session.run("ruff", "check", ".")
    session.run("ruff", "format", "--check", ".")


@nox.session
def typecheck(session: nox.Session) -> None:
    """Type-check anyws and its tests with mypy --strict (see pyproject.toml)."""
    # The tests import the interop libraries too, so install both extras.
    install(session, "lint", "test")
    session.run("mypy")


@nox.session
def fuzz(session: nox.Session) -> None:
    """Fuzz for longer than the normal suite: 5000 examples a test, and the
    fast frame path against wsproto's on 20000 streams.

    ``nox -s fuzz -- 20000`` sets another budget for the fuzz tests.
    """
    install(session, "test")
    examples = session.posargs[0] if session.posargs else "5000"
    session.run(
        "pytest",
        "tests/test_fuzz.py",
        "tests/test_frames.py",
        "-p",
        "no:cacheprovider",
        env={"ANYWS_FUZZ_EXAMPLES": examples, "ANYWS_FRAME_EXAMPLES": "20000"},
    )


@nox.session
def conformance(session: nox.Session) -> None:
    """Print the conformance summary (``python -m tests.conformance``).

    Arguments after ``--`` go to it, e.g. ``nox -s conformance -- --backend trio``.
    """
    install(session, "test")
    session.run("python", "-m", "tests.conformance", *session.posargs)


@nox.session
def bench(session: nox.Session) -> None:
    """Benchmark anyws against its peers (see bench/README.md).

    Arguments after ``--`` go to ``python -m bench``, e.g. ``nox -s bench -- --quick``.
    """
    install(session, "bench")
    session.run("python", "-m", "bench", *session.posargs)


@nox.session
def docs(session: nox.Session) -> None:
    """Build the documentation into build/docs/html and run its doctests.

    Offline (no intersphinx) and with warnings as errors. The doctest builder runs
    every {testcode} and {doctest} block of the pages.
    """
    install(session, "docs")
    for builder in ("html", "doctest"):
        session.run(
            "sphinx-build",
            "-W",
            "--keep-going",
            "-b",
            builder,
            "docs",
            f"build/docs/{builder}",
            *session.posargs,
        )

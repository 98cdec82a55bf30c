"""Shared fixtures for the anyws test suite.

Backends
    Async tests are collected by AnyIO's pytest plugin (``anyio_mode = "auto"``)
    and run once per entry of the ``anyio_backend`` fixture below: ``asyncio``,
    ``asyncio+uvloop`` and ``trio``. The uvloop run is skipped where uvloop
    cannot be imported. Set ``ANYWS_TEST_BACKENDS`` to a comma-separated list of
    those ids to run only some of them, e.g.
    ``ANYWS_TEST_BACKENDS=trio pytest`` or
    ``ANYWS_TEST_BACKENDS=asyncio,asyncio+uvloop pytest``.

Leak checks
    Every test, sync or async, is wrapped by ``_resource_leak_check``. After the
    test and all of its fixtures have been torn down (including AnyIO's event
    loop for that test) it fails the test if a thread started during the test
    is still alive or, on Linux, if an IPv4/IPv6 socket opened during the test
    is still open; when something looks leaked, it collects garbage and checks
    again first. Event-loop internals are not
    reported: the executor and worker threads of asyncio, AnyIO and trio are
    ignored, and so are AF_UNIX sockets (the loops' wake-up socketpairs).

    Every async test also gets ``_task_leak_check`` (added at collection time).
    It runs inside the test's event loop, around the test and its
    function-scoped fixtures, and fails the test if a task started during that
    time is still running after a few scheduler passes.
"""

from __future__ import annotations

import gc
import inspect
import os
import socket
import ssl
import threading
import time
from typing import TYPE_CHECKING, Any

import anyio
import anyio.lowlevel
import pytest
import trustme

if TYPE_CHECKING:
    from collections.abc import AsyncIterator, Callable, Iterator

_loop_factory: Callable[[], Any] | None
try:
    import uvloop
except ImportError:  # pragma: no cover - platforms without uvloop
    _loop_factory = None
else:
    _loop_factory = uvloop.new_event_loop

# --------------------------------------------------------------------------
# Backends
# --------------------------------------------------------------------------

BACKENDS_ENV_VAR = "ANYWS_TEST_BACKENDS"

_ALL_BACKENDS: list[Any] = [
    pytest.param(("asyncio", {}), id="asyncio"),
    pytest.param(
        ("asyncio", {"loop_factory": _loop_factory}),
        id="asyncio+uvloop",
        marks=pytest.mark.skipif(
            _loop_factory is None, reason="uvloop is not installed"
        ),
    ),
    pytest.param(("trio", {}), id="trio"),
]
_BACKEND_IDS = [param.id for param in _ALL_BACKENDS]


def _requested_backend_ids() -> list[str] | None:
    """The backend ids named in ``ANYWS_TEST_BACKENDS``, or None for all."""
    value = os.environ.get(BACKENDS_ENV_VAR, "").strip()
    if not value:
        return None
    return [name.strip() for name in value.split(",") if name.strip()]


def _selected_backends() -> list[Any]:
    requested = _requested_backend_ids()
    if requested is None:
        return _ALL_BACKENDS
    return [param for param in _ALL_BACKENDS if param.id in requested]


def pytest_configure(config: pytest.Config) -> None:
    requested = _requested_backend_ids()
    if requested is None:
        return
    unknown = [name for name in requested if name not in _BACKEND_IDS]
    if unknown:
        raise pytest.UsageError(
            f"{BACKENDS_ENV_VAR} names unknown backend(s) {', '.join(unknown)}; "
            f"choose from {', '.join(_BACKEND_IDS)}"
        )


@pytest.fixture(params=_selected_backends())
def anyio_backend(request: pytest.FixtureRequest) -> tuple[str, dict[str, Any]]:
    backend: tuple[str, dict[str, Any]] = request.param
    return backend


# --------------------------------------------------------------------------
# TLS
# --------------------------------------------------------------------------


@pytest.fixture(scope="session")
def ca() -> trustme.CA:
    return trustme.CA()


@pytest.fixture(scope="session")
def server_cert(ca: trustme.CA) -> trustme.LeafCert:
    return ca.issue_cert("localhost", "127.0.0.1", "::1")


@pytest.fixture
def server_ssl_context(server_cert: trustme.LeafCert) -> ssl.SSLContext:
    """A server-side context presenting a certificate for localhost."""
    context = ssl.create_default_context(ssl.Purpose.CLIENT_AUTH)
    server_cert.configure_cert(context)
    return context


@pytest.fixture
def client_ssl_context(ca: trustme.CA) -> ssl.SSLContext:
    """A client-side context that trusts the test CA."""
    context = ssl.create_default_context(ssl.Purpose.SERVER_AUTH)
    ca.configure_trust(context)
    return context


# --------------------------------------------------------------------------
# Thread and socket leaks
# --------------------------------------------------------------------------

# Threads owned by event loops and thread pools, which outlive a single call
# by design and are shut down with their loop or process.
_IGNORED_THREAD_PREFIXES = (
    "asyncio_",  # asyncio's default executor
    "ThreadPoolExecutor",
    "AnyIO worker thread",
    "Trio thread",  # trio's idle thread cache (trio.to_thread, getaddrinfo)
)
_PROC_FD = "/proc/self/fd"
# How long to wait for a thread or socket to go away before calling it leaked.
_LEAK_GRACE_SECONDS = 1.0


def _is_ignored_thread(thread: threading.Thread) -> bool:
    if thread.name.startswith(_IGNORED_THREAD_PREFIXES):
        return True
    # pytest-timeout's timer, when timeout_method = "thread".
    function = getattr(thread, "function", None)
    return (
        isinstance(thread, threading.Timer)
        and getattr(function, "__module__", None) == "pytest_timeout"
    )


def _open_socket_fds() -> set[tuple[int, str]]:
    """(fd, "socket:[inode]") for every socket this process has open."""
    sockets = set()
    for name in os.listdir(_PROC_FD):
        try:
            target = os.readlink(os.path.join(_PROC_FD, name))
        except OSError:  # closed meanwhile, e.g. the fd listdir itself used
            continue
        if target.startswith("socket:"):
            sockets.add((int(name), target))
    return sockets


def _describe_inet_socket(fd: int) -> str | None:
    """Describe fd if it is an IPv4/IPv6 socket, else return None."""
    try:
        sock = socket.socket(fileno=os.dup(fd))
    except OSError:
        return None
    with sock:  # closes only the duplicate
        if sock.family not in (socket.AF_INET, socket.AF_INET6):
            return None
        kind = {socket.SOCK_STREAM: "TCP", socket.SOCK_DGRAM: "UDP"}.get(
            sock.type, str(sock.type)
        )
        try:
            local = str(sock.getsockname())
        except OSError:
            local = "?"
        try:
            peer = f"connected to {sock.getpeername()}"
        except OSError:
            peer = "not connected"
        return f"fd {fd}: {kind} socket {local}, {peer}"


def _leaked_threads(before: set[threading.Thread]) -> list[threading.Thread]:
    return [
        thread
        for thread in threading.enumerate()
        if thread not in before and thread.is_alive() and not _is_ignored_thread(thread)
    ]


def _leaked_sockets(before: set[tuple[int, str]]) -> list[str]:
    descriptions = []
    for fd, _target in sorted(_open_socket_fds() - before):
        description = _describe_inet_socket(fd)
        if description is not None:
            descriptions.append(description)
    return descriptions


@pytest.fixture(autouse=True)
def _resource_leak_check() -> Iterator[None]:
    check_fds = os.path.isdir(_PROC_FD)
    threads_before = set(threading.enumerate())
    sockets_before = _open_socket_fds() if check_fds else set()

    yield

    # A full gc.collect() costs tens of milliseconds on a large test session, far
    # more than most tests take: collect only when something looks leaked, then
    # check again (a socket or thread that only garbage kept alive goes then).
    deadline = time.monotonic() + _LEAK_GRACE_SECONDS
    while True:
        threads = _leaked_threads(threads_before)
        sockets = _leaked_sockets(sockets_before) if check_fds else []
        if not (threads or sockets) or time.monotonic() >= deadline:
            break
        gc.collect()
        time.sleep(0.01)

    problems = []
    if threads:
        problems.append(
            "threads still running after the test: "
            + ", ".join(repr(thread) for thread in threads)
        )
    if sockets:
        problems.append("sockets still open after the test: " + "; ".join(sockets))
    if problems:
        pytest.fail("\n".join(problems), pytrace=False)


# --------------------------------------------------------------------------
# Task leaks
# --------------------------------------------------------------------------

_TASK_LEAK_CHECK = "_task_leak_check"
# Scheduler passes granted to tasks that are finishing up before the check.
_TASK_LEAK_CHECKPOINTS = 10
_ANYIO_DIR = os.path.dirname(os.path.abspath(anyio.__file__))


def _is_test_runner_task(task: anyio.TaskInfo) -> bool:
    """True for the task AnyIO's asyncio test runner uses to drive a fixture.

    ``loop.run_until_complete()`` wraps each call into the runner in a fresh
    task, so the one driving this fixture's teardown is newer than the setup.
    """
    code = getattr(task.coro, "cr_code", None)
    return (
        code is not None
        and code.co_name == "_call_in_runner_task"
        and os.path.abspath(code.co_filename).startswith(_ANYIO_DIR)
    )


def _is_async_test(item: pytest.Item) -> bool:
    if not isinstance(item, pytest.Function):
        return False
    function = item.obj
    hypothesis = getattr(function, "hypothesis", None)
    if hypothesis is not None:
        function = getattr(hypothesis, "inner_test", function)
    return inspect.iscoroutinefunction(function)


def pytest_collection_modifyitems(items: list[pytest.Item]) -> None:
    for item in items:
        if not isinstance(item, pytest.Function) or not _is_async_test(item):
            continue
        names = item.fixturenames
        if _TASK_LEAK_CHECK in names or "anyio_backend" not in names:
            continue
        # Right after anyio_backend: set up before, and torn down after, the
        # test's own function-scoped fixtures.
        names.insert(names.index("anyio_backend") + 1, _TASK_LEAK_CHECK)


@pytest.fixture
async def _task_leak_check() -> AsyncIterator[None]:
    before = {task.id for task in anyio.get_running_tasks()}

    yield

    for _ in range(_TASK_LEAK_CHECKPOINTS):
        await anyio.lowlevel.checkpoint()
    current = anyio.get_current_task().id
    leaked = [
        task
        for task in anyio.get_running_tasks()
        if task.id not in before
        and task.id != current
        and not _is_test_runner_task(task)
    ]
    if leaked:
        pytest.fail(
            "tasks still running after the test: "
            + ", ".join(f"{task.name!r} ({task.coro!r})" for task in leaked),
            pytrace=False,
        )

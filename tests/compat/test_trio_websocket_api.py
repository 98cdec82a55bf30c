"""The surface of anyws.compat.trio_websocket against the installed trio-websocket.

Discipline: no I/O and no event loop. The real ``trio_websocket`` package is the
reference: every public name, every signature (parameter names, kinds and defaults),
the exception hierarchy, the reprs, the close-code names and the copy behaviour are
compared with it, so that a difference fails a test rather than a user's code.
"""

from __future__ import annotations

import copy
import inspect
import pickle
from typing import Any

import anyio
import pytest
import trio
import trio_websocket as real

import anyws.compat.trio_websocket as shim

PUBLIC = sorted(name for name in dir(real) if not name.startswith("_"))
FUNCTIONS = [name for name in PUBLIC if inspect.isfunction(getattr(real, name))]
CLASSES = [name for name in PUBLIC if inspect.isclass(getattr(real, name))]
# Built by the library from wsproto internals, never by applications: trio-websocket's
# constructors take a wsproto connection and event, which have no meaning on anyws.
INTERNAL_CONSTRUCTORS = {"WebSocketConnection", "WebSocketRequest"}
IGNORED_STATUS = "<task status ignored>"


def shape(function: Any) -> list[tuple[str, Any, Any]]:
    """Names, kinds and defaults of a signature (annotations left out)."""
    try:
        signature = inspect.signature(function)
    except ValueError:  # e.g. an exception class without __init__ of its own
        return [("<no signature>", None, None)]
    result = []
    for parameter in signature.parameters.values():
        default = parameter.default
        if default is trio.TASK_STATUS_IGNORED or default is anyio.TASK_STATUS_IGNORED:
            default = IGNORED_STATUS  # each backend's "no one waits" marker
        result.append((parameter.name, parameter.kind, default))
    return result


def public_members(cls: type) -> dict[str, Any]:
    """Public attributes defined by ``cls`` and its bases from the same package."""
    members: dict[str, Any] = {}
    for klass in reversed(cls.__mro__):
        if klass.__module__.split(".")[0] == cls.__module__.split(".")[0]:
            members.update(
                (name, value)
                for name, value in vars(klass).items()
                if not name.startswith("_")
            )
    return members


class TestNames:
    def test_same_public_names(self) -> None:
        assert sorted(shim.__all__) == PUBLIC
        assert [name for name in PUBLIC if not hasattr(shim, name)] == []

    def test_same_kinds_of_objects(self) -> None:
        for name in PUBLIC:
            ours, theirs = getattr(shim, name), getattr(real, name)
            assert inspect.isclass(ours) == inspect.isclass(theirs), name
            assert inspect.iscoroutinefunction(ours) == inspect.iscoroutinefunction(
                theirs
            ), name

    def test_version_mirrors_the_api_release(self) -> None:
        assert shim.__version__.split(".")[:2] == real.__version__.split(".")[:2]


class TestSignatures:
    @pytest.mark.parametrize("name", FUNCTIONS)
    def test_function(self, name: str) -> None:
        assert shape(getattr(shim, name)) == shape(getattr(real, name))

    @pytest.mark.parametrize("name", CLASSES)
    def test_members(self, name: str) -> None:
        ours = public_members(getattr(shim, name))
        theirs = public_members(getattr(real, name))
        assert sorted(ours) == sorted(theirs)
        for member, value in theirs.items():
            mine = ours[member]
            if isinstance(value, property):
                assert isinstance(mine, property), member
            elif inspect.isfunction(value):
                assert inspect.iscoroutinefunction(mine) == (
                    inspect.iscoroutinefunction(value)
                ), member
                assert shape(mine) == shape(value), member

    @pytest.mark.parametrize(
        "name", [name for name in CLASSES if name not in INTERNAL_CONSTRUCTORS]
    )
    def test_constructor(self, name: str) -> None:
        assert shape(getattr(shim, name)) == shape(getattr(real, name))

    def test_connection_is_an_async_context_manager(self) -> None:
        for attribute in ("__aenter__", "__aexit__"):
            assert inspect.iscoroutinefunction(
                getattr(shim.WebSocketConnection, attribute)
            )

    def test_connection_ids_are_counted(self) -> None:
        assert next(shim.WebSocketConnection.CONNECTION_ID) >= 0


EXCEPTIONS = [
    name for name in CLASSES if issubclass(getattr(real, name), BaseException)
]
INSTANCES = [
    ("HandshakeError", ()),
    ("ConnectionTimeout", ()),
    ("DisconnectionTimeout", ()),
    ("ConnectionClosed", (None,)),
    ("ConnectionClosed", (("CloseReason", 1000, None),)),
    ("ConnectionClosed", (("CloseReason", 4000, "bye"),)),
    ("ConnectionRejected", (403, ((b"x-why", b"no"),), b"denied")),
    ("ConnectionRejected", (400, (), None)),
]


def build(module: Any, name: str, args: tuple[Any, ...]) -> Any:
    """Instantiate ``module.name``; a tuple argument names a value to build first."""
    built = [
        build(module, arg[0], arg[1:])
        if isinstance(arg, tuple) and arg and isinstance(arg[0], str)
        else arg
        for arg in args
    ]
    return getattr(module, name)(*built)


class TestExceptions:
    @pytest.mark.parametrize("name", EXCEPTIONS)
    def test_hierarchy(self, name: str) -> None:
        def chain(cls: type) -> list[str]:
            return [klass.__name__ for klass in cls.__mro__]

        assert chain(getattr(shim, name)) == chain(getattr(real, name))

    @pytest.mark.parametrize(("name", "args"), INSTANCES)
    def test_repr_and_str(self, name: str, args: tuple[Any, ...]) -> None:
        ours, theirs = build(shim, name, args), build(real, name, args)
        assert repr(ours) == repr(theirs)
        assert str(ours) == str(theirs)

    @pytest.mark.parametrize(("name", "args"), INSTANCES)
    def test_copies(self, name: str, args: tuple[Any, ...]) -> None:
        ours, theirs = build(shim, name, args), build(real, name, args)
        for duplicate in (copy.copy, copy.deepcopy):
            mine = duplicate(ours)
            assert type(mine) is type(ours)
            assert repr(mine) == repr(duplicate(theirs))
            assert sorted(vars(mine)) == sorted(vars(ours))
        restored = pickle.loads(pickle.dumps(ours))
        assert repr(restored) == repr(pickle.loads(pickle.dumps(theirs)))

    def test_rejection_attributes(self) -> None:
        args = (403, ((b"x-why", b"no"),), b"denied")
        ours, theirs = shim.ConnectionRejected(*args), real.ConnectionRejected(*args)
        for attribute in ("status_code", "headers", "body", "args"):
            assert getattr(ours, attribute) == getattr(theirs, attribute)


class TestValues:
    def test_close_reason_names(self) -> None:
        for code in range(5100):
            ours, theirs = shim.CloseReason(code, "r"), real.CloseReason(code, "r")
            assert (ours.code, ours.name, ours.reason) == (
                theirs.code,
                theirs.name,
                theirs.reason,
            )
            assert repr(ours) == repr(theirs)

    @pytest.mark.parametrize(
        ("address", "port", "is_ssl"),
        [
            ("127.0.0.1", 80, False),
            ("127.0.0.1", 443, True),
            ("127.0.0.1", 443, False),
            ("10.0.0.1", 8000, True),
            ("::1", 80, False),
            ("::1", 8443, True),
        ],
    )
    def test_endpoint(self, address: str, port: int, is_ssl: bool) -> None:
        ours = shim.Endpoint(address, port, is_ssl)
        theirs = real.Endpoint(address, port, is_ssl)
        assert repr(ours) == repr(theirs)
        assert ours.url == theirs.url
        assert (ours.address, ours.port, ours.is_ssl) == (
            theirs.address,
            theirs.port,
            theirs.is_ssl,
        )

    def test_url_parsing_errors(self) -> None:
        for url, context in (
            ("http://example.com/", None),
            ("ws:///path", None),
        ):
            with pytest.raises(ValueError) as theirs:
                real.open_websocket_url(url, context)
            with pytest.raises(ValueError) as ours:
                shim.open_websocket_url(url, context)
            assert str(ours.value) == str(theirs.value)

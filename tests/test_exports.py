"""The public names of anyws: ``__all__``, the exception hierarchy, version, typing.

Discipline
    Pure introspection of the imported package, with no event loop and no I/O; the
    ``websockets`` package is imported only as the reference for the exception
    hierarchy that anyws promises to share.
"""

from __future__ import annotations
import __future__

import importlib.metadata
import importlib.resources
import inspect
import types

import pytest
import websockets.exceptions

import anyws
import anyws.exceptions


def public_names(module: types.ModuleType) -> set[str]:
    """Names a user may import from ``module``: no modules, no import machinery."""
    return {
        name
        for name, value in vars(module).items()
        if not name.startswith("_")
        and not isinstance(value, types.ModuleType)
        and not isinstance(value, __future__._Feature)
        and name != "TYPE_CHECKING"
    }


def exception_classes(module: types.ModuleType) -> dict[str, type[BaseException]]:
    """The exception classes defined in ``module`` itself."""
    return {
        name: value
        for name, value in vars(module).items()
        if inspect.isclass(value)
        and issubclass(value, BaseException)
        and value.__module__ == module.__name__
    }


@pytest.mark.parametrize("module", [anyws, anyws.exceptions], ids=lambda m: m.__name__)
class TestAll:
    def test_every_name_exists(self, module: types.ModuleType) -> None:
        missing = [name for name in module.__all__ if not hasattr(module, name)]
        assert missing == []

    def test_no_duplicates(self, module: types.ModuleType) -> None:
        assert len(module.__all__) == len(set(module.__all__))

    def test_every_public_name_is_listed(self, module: types.ModuleType) -> None:
        assert public_names(module) - set(module.__all__) == set()

    def test_star_import_gives_exactly_all(self, module: types.ModuleType) -> None:
        namespace: dict[str, object] = {}
        exec(f"from {module.__name__} import *", namespace)
        namespace.pop("__builtins__")
        assert set(namespace) == set(module.__all__)


class TestExceptions:
    def test_every_exception_is_listed_and_reexported(self) -> None:
        classes = exception_classes(anyws.exceptions)
        assert set(classes) == set(anyws.exceptions.__all__)
        for name, cls in classes.items():
            assert getattr(anyws, name) is cls, name
            assert name in anyws.__all__, name

    def test_root_is_websocket_exception(self) -> None:
        for name, cls in exception_classes(anyws.exceptions).items():
            assert issubclass(cls, anyws.WebSocketException), name

    def test_key_relationships(self) -> None:
        assert issubclass(anyws.ConnectionClosedOK, anyws.ConnectionClosed)
        assert issubclass(anyws.ConnectionClosedError, anyws.ConnectionClosed)
        assert issubclass(anyws.ConnectionClosed, anyws.WebSocketException)
        assert not issubclass(anyws.ConnectionClosedOK, anyws.ConnectionClosedError)
        assert issubclass(anyws.InvalidStatus, anyws.InvalidHandshake)
        assert issubclass(anyws.InvalidMessage, anyws.InvalidHandshake)
        assert issubclass(anyws.InvalidHandshake, anyws.WebSocketException)
        assert issubclass(anyws.InvalidURI, anyws.WebSocketException)
        assert not issubclass(anyws.InvalidURI, anyws.InvalidHandshake)
        assert issubclass(anyws.ProtocolError, anyws.WebSocketException)
        assert issubclass(anyws.PayloadTooBig, anyws.WebSocketException)
        assert issubclass(anyws.ConcurrencyError, anyws.WebSocketException)
        assert issubclass(anyws.ConcurrencyError, RuntimeError)

    def test_names_shared_with_websockets(self) -> None:
        shared = set(websockets.exceptions.__all__) & set(anyws.exceptions.__all__)
        # The names the design promises, at least.
        assert shared >= {
            "WebSocketException",
            "ConnectionClosed",
            "ConnectionClosedOK",
            "ConnectionClosedError",
            "InvalidURI",
            "InvalidHandshake",
            "InvalidStatus",
            "PayloadTooBig",
            "ProtocolError",
            "ConcurrencyError",
        }

    def test_hierarchy_matches_websockets(self) -> None:
        shared = sorted(
            set(websockets.exceptions.__all__) & set(anyws.exceptions.__all__)
        )
        mismatches = []
        for child in shared:
            for parent in shared:
                theirs = issubclass(
                    getattr(websockets.exceptions, child),
                    getattr(websockets.exceptions, parent),
                )
                ours = issubclass(
                    getattr(anyws.exceptions, child), getattr(anyws.exceptions, parent)
                )
                if theirs != ours:
                    mismatches.append((child, parent, theirs))
        assert mismatches == []

    def test_builtin_bases_match_websockets(self) -> None:
        shared = set(websockets.exceptions.__all__) & set(anyws.exceptions.__all__)
        for name in sorted(shared):
            theirs = {
                base
                for base in getattr(websockets.exceptions, name).__mro__
                if base.__module__ == "builtins"
            }
            ours = {
                base
                for base in getattr(anyws.exceptions, name).__mro__
                if base.__module__ == "builtins"
            }
            assert ours == theirs, name


class TestPackage:
    def test_version(self) -> None:
        assert anyws.__version__ == "0.1.0"
        assert "__version__" in anyws.__all__

    def test_installed_metadata_agrees(self) -> None:
        assert importlib.metadata.version("anyws") == anyws.__version__

    def test_ships_py_typed(self) -> None:
        marker = importlib.resources.files("anyws").joinpath("py.typed")
        assert marker.is_file()

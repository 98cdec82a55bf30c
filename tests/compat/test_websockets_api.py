"""The public surface of ``anyws.compat.websockets`` against the installed websockets.

Discipline: no I/O. Every name, module path, signature and exception hierarchy of the
``websockets`` asyncio API is looked up in the installed ``websockets`` package and
compared with the shim, so that a drift on either side fails here. The differences
the shim documents (docs/porting-from-websockets.md) are listed once, below, with
their reason.
"""

from __future__ import annotations

import importlib
import inspect
from typing import Any

import pytest
import websockets
import websockets.asyncio.client
import websockets.asyncio.connection
import websockets.asyncio.server
import websockets.client
import websockets.exceptions

import anyws
import anyws.compat.websockets as shim
from anyws.compat.websockets.asyncio import (
    client as shim_client,
    connection as shim_connection,
    server as shim_server,
)

# Sans-I/O classes and the router (which needs werkzeug): no counterpart in the shim.
UNSUPPORTED = {
    "ClientProtocol",
    "Frame",
    "Protocol",
    "Router",
    "ServerProtocol",
    "route",
    "unix_route",
}

# Modules whose path the shim mirrors, and the names it leaves out.
MODULES = {
    "": UNSUPPORTED,
    "asyncio.client": set(),
    "asyncio.server": set(),
    "datastructures": set(),
    "exceptions": set(),
    "frames": {"Frame"},
    "http11": set(),
    "protocol": {"Protocol", "SEND_EOF"},
    "proxy": set(),
    "typing": set(),
}

# Defaults that name the product (the User-Agent and Server headers) or are the
# shim's own copy of a websockets function.
PRODUCT_DEFAULTS = {"user_agent_header", "server_header"}
FUNCTION_DEFAULTS = {"process_exception", "reconnect_delays"}

# Exceptions anyws shares with websockets whose constructors anyws shaped for its
# own use: PayloadTooBig takes a message, ProtocolError a close code.
CONSTRUCTORS_DIFFER = {"PayloadTooBig", "ProtocolError"}


CONNECTION_METHODS = [
    "recv",
    "recv_streaming",
    "send",
    "close",
    "wait_closed",
    "ping",
    "pong",
    "__aiter__",
    "__aenter__",
    "__aexit__",
]
CONNECTION_ATTRIBUTES = [
    "id",
    "logger",
    "request",
    "response",
    "subprotocol",
    "latency",
    "state",
    "close_code",
    "close_reason",
    "local_address",
    "remote_address",
]
SERVER_METHODS = [
    "close",
    "wait_closed",
    "serve_forever",
    "is_serving",
    "start_serving",
    "get_loop",
    "__await__",
    "__aenter__",
    "__aexit__",
]


def assert_same_signature(upstream: Any, ours: Any) -> None:
    expected = inspect.signature(upstream).parameters.values()
    actual = inspect.signature(ours).parameters.values()
    assert [(p.name, p.kind) for p in actual] == [(p.name, p.kind) for p in expected], (
        ours
    )
    for mine, theirs in zip(actual, expected, strict=True):
        if mine.name in PRODUCT_DEFAULTS:
            assert isinstance(mine.default, str)
            assert "anyws" in mine.default
        elif mine.name in FUNCTION_DEFAULTS:
            assert mine.default.__name__ == theirs.default.__name__
        else:
            assert mine.default == theirs.default, (ours, mine.name)


class TestNames:
    @pytest.mark.parametrize("module", sorted(MODULES))
    def test_every_upstream_name_exists(self, module: str) -> None:
        upstream = importlib.import_module(
            "websockets" + (f".{module}" if module else "")
        )
        ours = importlib.import_module(
            "anyws.compat.websockets" + (f".{module}" if module else "")
        )
        missing = set(upstream.__all__) - MODULES[module] - set(dir(ours))
        assert not missing

    def test_all_lists_upstream_names_only_and_no_name_twice(self) -> None:
        assert len(shim.__all__) == len(set(shim.__all__))
        assert set(shim.__all__) == set(websockets.__all__) - UNSUPPORTED
        for name in shim.__all__:
            assert hasattr(shim, name)

    @pytest.mark.parametrize(
        ("module", "names"),
        [
            ("client", ["connect", "unix_connect", "process_exception", "backoff"]),
            ("server", ["serve", "unix_serve", "broadcast", "basic_auth"]),
        ],
    )
    def test_the_older_module_paths_port_unchanged(
        self, module: str, names: list[str]
    ) -> None:
        ours = importlib.import_module(f"anyws.compat.websockets.{module}")
        current = importlib.import_module(f"anyws.compat.websockets.asyncio.{module}")
        for name in names:
            assert getattr(ours, name) is getattr(current, name)

    def test_the_older_class_names_are_aliases(self) -> None:
        assert shim.WebSocketClientProtocol is shim.ClientConnection
        assert shim.WebSocketServerProtocol is shim.ServerConnection
        assert shim.WebSocketServer is shim.Server

    def test_values_are_anyws_own(self) -> None:
        assert shim.Headers is anyws.Headers
        assert shim.Request is anyws.Request
        assert shim.Response is anyws.Response
        assert shim.Close is anyws.Close
        assert shim.CloseCode is anyws.CloseCode
        assert shim.State is anyws.State

    @pytest.mark.parametrize("name", ["CloseCode", "Opcode", "State", "Side"])
    def test_enums_have_the_same_members(self, name: str) -> None:
        theirs = {m.name: m.value for m in getattr(websockets, name)}
        ours = {m.name: m.value for m in getattr(shim, name)}
        assert ours == theirs


class TestSignatures:
    @pytest.mark.parametrize(
        ("upstream", "ours"),
        [
            (websockets.asyncio.client.connect, shim_client.connect),
            (websockets.asyncio.client.unix_connect, shim_client.unix_connect),
            (websockets.asyncio.server.serve, shim_server.serve),
            (websockets.asyncio.server.unix_serve, shim_server.unix_serve),
            (websockets.asyncio.server.broadcast, shim_server.broadcast),
            (websockets.asyncio.server.basic_auth, shim_server.basic_auth),
            (websockets.client.process_exception, shim_client.process_exception),
            (websockets.client.backoff, shim_client.backoff),
        ],
        ids=lambda function: function.__name__,
    )
    def test_functions(self, upstream: Any, ours: Any) -> None:
        assert_same_signature(upstream, ours)

    def test_connection_methods(self) -> None:
        upstream = websockets.asyncio.connection.Connection
        ours = shim_connection.Connection
        for name in CONNECTION_METHODS:
            assert_same_signature(getattr(upstream, name), getattr(ours, name))
            assert inspect.iscoroutinefunction(
                getattr(upstream, name)
            ) == inspect.iscoroutinefunction(getattr(ours, name)), name

    def test_connection_attributes(self) -> None:
        for name in CONNECTION_ATTRIBUTES:
            assert isinstance(getattr(shim_connection.Connection, name), property), name

    def test_server_connection_respond(self) -> None:
        assert_same_signature(
            websockets.asyncio.server.ServerConnection.respond,
            shim_server.ServerConnection.respond,
        )

    def test_server_methods_and_attributes(self) -> None:
        for name in SERVER_METHODS:
            assert_same_signature(
                getattr(websockets.asyncio.server.Server, name),
                getattr(shim_server.Server, name),
            )
        for name in ["connections", "sockets"]:
            assert isinstance(getattr(shim_server.Server, name), property), name

    def test_connect_forms(self) -> None:
        for name in ["__await__", "__aenter__", "__aexit__", "__aiter__"]:
            assert_same_signature(
                getattr(websockets.asyncio.client.connect, name),
                getattr(shim_client.connect, name),
            )


class TestExceptions:
    def test_same_hierarchy(self) -> None:
        for name in websockets.exceptions.__all__:
            theirs = getattr(websockets.exceptions, name).__mro__
            ours = getattr(shim.exceptions, name).__mro__
            assert [c.__name__ for c in ours] == [c.__name__ for c in theirs], name

    def test_same_constructors(self) -> None:
        for name in set(websockets.exceptions.__all__) - CONSTRUCTORS_DIFFER:
            assert_same_signature(
                getattr(websockets.exceptions, name).__init__,
                getattr(shim.exceptions, name).__init__,
            )

    def test_shared_names_are_anyws_own_classes(self) -> None:
        for name in set(anyws.exceptions.__all__) & set(shim.exceptions.__all__):
            assert getattr(shim.exceptions, name) is getattr(anyws.exceptions, name)

    def test_connection_closed_attributes(self) -> None:
        rcvd, sent = anyws.Close(1000, "bye"), anyws.Close(1001, "")
        exc = shim.ConnectionClosedOK(rcvd, sent, True)
        assert (exc.rcvd, exc.sent, exc.rcvd_then_sent) == (rcvd, sent, True)
        upstream = websockets.exceptions.ConnectionClosedOK(
            websockets.frames.Close(1000, "bye"),
            websockets.frames.Close(1001, ""),
            True,
        )
        assert str(exc) == str(upstream)

    def test_messages_of_the_exceptions_defined_here(self) -> None:
        for name, args in [
            ("InvalidProxy", ("http://x", "bad")),
            ("InvalidMethod", ("POST",)),
            ("InvalidProtocol", ("HTTP/1.0",)),
            ("InvalidHeaderFormat", ("Host", "expected token", "a b", 1)),
            ("InvalidOrigin", ("https://evil.test",)),
            ("InvalidOrigin", (None,)),
            ("DuplicateParameter", ("x",)),
            ("InvalidParameterName", ("x",)),
            ("InvalidParameterValue", ("x", None)),
            ("InvalidParameterValue", ("x", "")),
            ("InvalidParameterValue", ("x", "y")),
            ("TooManyFragments", (3,)),
        ]:
            ours = getattr(shim.exceptions, name)(*args)
            theirs = getattr(websockets.exceptions, name)(*args)
            assert str(ours) == str(theirs), name
            assert vars(ours) == vars(theirs), name

    def test_invalid_proxy_status_carries_the_response(self) -> None:
        response = anyws.Response(407, "Proxy Authentication Required", anyws.Headers())
        exc = shim.InvalidProxyStatus(response)
        assert exc.response is response
        assert str(exc) == "proxy rejected connection: HTTP 407"

"""anyws.compat.trio_websocket against the real trio-websocket, in both directions.

Discipline: an independent peer. The shim's client talks to a real trio-websocket
server, and a real trio-websocket client talks to the shim's server, over TCP on
127.0.0.1 port 0. trio-websocket runs on trio only, so these tests skip the asyncio
backends. Each test drives the same script through both pairings where it can, so
the two libraries are held to the same observable behaviour. No sleeps.
"""

from __future__ import annotations

import contextlib
from typing import TYPE_CHECKING, Any

import pytest
import trio
import trio.testing
import trio_websocket as real

import anyws.compat.trio_websocket as shim

if TYPE_CHECKING:
    from collections.abc import AsyncIterator

pytestmark = pytest.mark.interop

# trio-websocket's client leaves its socket to the garbage collector when the server
# closes first or rejects the handshake (with its own server too).
REAL_CLIENT_LEAKS = pytest.mark.filterwarnings(
    "ignore:unclosed <socket:ResourceWarning"
)

# (client module, server module) pairs: the shim on one side, the real one opposite.
PAIRS = [
    pytest.param(shim, real, id="shim client-real server"),
    pytest.param(real, shim, id="real client-shim server", marks=REAL_CLIENT_LEAKS),
]


@pytest.fixture(autouse=True)
def _trio_only(anyio_backend_name: str) -> None:
    if anyio_backend_name != "trio":
        pytest.skip("trio-websocket runs on trio only")


@contextlib.asynccontextmanager
async def serving(module: Any, handler: Any, **options: Any) -> AsyncIterator[int]:
    """Run ``module.serve_websocket`` on 127.0.0.1 port 0; yield the port."""
    async with trio.open_nursery() as nursery:
        server = await nursery.start(
            lambda task_status: module.serve_websocket(
                handler, "127.0.0.1", 0, None, task_status=task_status, **options
            )
        )
        yield server.port
        nursery.cancel_scope.cancel()


def echo_handler(module: Any) -> Any:
    async def handler(request: Any) -> None:
        if request.path == "/reject":
            await request.reject(
                401, extra_headers=[(b"X-Why", b"no token")], body=b"unauthorised"
            )
            return
        subprotocol = "chat" if "chat" in request.proposed_subprotocols else None
        ws = await request.accept(
            subprotocol=subprotocol, extra_headers=[(b"x-server", b"1")]
        )
        with contextlib.suppress(module.ConnectionClosed):
            while True:
                message = await ws.get_message()
                if message == "close please":
                    await ws.aclose(4001, "as asked")
                    return
                await ws.send_message(message)

    return handler


@pytest.mark.parametrize(("client", "server"), PAIRS)
class TestInterop:
    async def test_echo_with_subprotocol_and_headers(
        self, client: Any, server: Any
    ) -> None:
        async with serving(server, echo_handler(server)) as port:
            async with client.open_websocket_url(
                f"ws://127.0.0.1:{port}/echo?x=1",
                subprotocols=["chat"],
                extra_headers=[(b"x-client", b"1")],
            ) as ws:
                assert ws.subprotocol == "chat"
                assert (b"x-server", b"1") in ws.handshake_headers
                for message in ("text", b"\x00binary", "é" * 70000):
                    await ws.send_message(message)
                    assert await ws.get_message() == message
                await ws.ping(b"beat")
                await ws.pong(b"unsolicited")
            assert ws.closed is not None
            assert ws.closed.name == "NORMAL_CLOSURE"

    async def test_rejection_with_a_body(self, client: Any, server: Any) -> None:
        async with serving(server, echo_handler(server)) as port:
            with pytest.raises(client.ConnectionRejected) as info:
                async with client.open_websocket_url(f"ws://127.0.0.1:{port}/reject"):
                    pass
        rejected = info.value
        assert rejected.status_code == 401
        assert rejected.body == b"unauthorised"
        assert (b"x-why", b"no token") in rejected.headers
        assert repr(rejected) == "ConnectionRejected<status_code=401>"

    async def test_server_closes_with_a_code(self, client: Any, server: Any) -> None:
        async with serving(server, echo_handler(server)) as port:
            async with client.open_websocket_url(f"ws://127.0.0.1:{port}/") as ws:
                await ws.send_message("close please")
                with pytest.raises(client.ConnectionClosed) as info:
                    await ws.get_message()
        assert repr(info.value) == (
            "ConnectionClosed<CloseReason<code=4001, name=PRIVATE_RESERVED, "
            "reason=as asked>>"
        )

    async def test_client_closes_with_a_code(self, client: Any, server: Any) -> None:
        seen: list[Any] = []

        async def handler(request: Any) -> None:
            ws = await request.accept()
            try:
                await ws.get_message()
            except server.ConnectionClosed as exc:
                seen.append(exc.reason)

        async with serving(server, handler) as port:
            async with client.open_websocket_url(f"ws://127.0.0.1:{port}/") as ws:
                await ws.aclose(4002, "leaving")
            assert ws.closed.code == 4002
        [reason] = seen
        assert (reason.code, reason.name, reason.reason) == (
            4002,
            "PRIVATE_RESERVED",
            "leaving",
        )

    async def test_queued_messages_before_the_remote_close(
        self, client: Any, server: Any
    ) -> None:
        async def handler(request: Any) -> None:
            ws = await request.accept()
            for number in range(5):
                await ws.send_message(str(number))
            await ws.aclose(1001, "going")

        async with serving(server, handler) as port:
            async with client.open_websocket_url(
                f"ws://127.0.0.1:{port}/", message_queue_size=10
            ) as ws:
                received = [await ws.get_message() for _ in range(5)]
                with pytest.raises(client.ConnectionClosed) as info:
                    await ws.get_message()
        assert received == ["0", "1", "2", "3", "4"]
        assert info.value.reason.name == "GOING_AWAY"

    async def test_message_too_big(self, client: Any, server: Any) -> None:
        async with serving(server, echo_handler(server), max_message_size=1000) as port:
            async with client.open_websocket_url(f"ws://127.0.0.1:{port}/") as ws:
                await ws.send_message(b"x" * 1000)
                assert await ws.get_message() == b"x" * 1000
                await ws.send_message(b"x" * 1001)
                with pytest.raises(client.ConnectionClosed) as info:
                    await ws.get_message()
        assert info.value.reason.code == 1009
        assert info.value.reason.name == "MESSAGE_TOO_BIG"

    async def test_connection_in_a_nursery(self, client: Any, server: Any) -> None:
        async with (
            serving(server, echo_handler(server)) as port,
            trio.open_nursery() as nursery,
        ):
            ws = await client.connect_websocket(
                nursery, "127.0.0.1", port, "/", use_ssl=False
            )
            await ws.send_message("nursery")
            assert await ws.get_message() == "nursery"
            assert ws.remote.port == port
            await ws.aclose()


@REAL_CLIENT_LEAKS
async def test_server_closes_tcp_after_failing_the_connection() -> None:
    """After a 1009, the shim's handler sees ConnectionClosed once Closes crossed.

    trio-websocket's client, like any client per RFC 6455 section 7.1.1, waits for
    the server to close TCP; the server must not wait for the client to do it, or
    the handler would stay blocked for disconnect_timeout.
    """
    seen: list[Any] = []

    async def handler(request: Any) -> None:
        ws = await request.accept()
        try:
            await ws.get_message()
        except shim.ConnectionClosed as exc:
            seen.append(exc.reason)

    async with serving(shim, handler, max_message_size=1000) as port:
        async with real.open_websocket_url(f"ws://127.0.0.1:{port}/") as ws:
            await ws.send_message(b"x" * 1001)
            with pytest.raises(real.ConnectionClosed):
                await ws.get_message()  # the client has answered the Close
            await trio.testing.wait_all_tasks_blocked()
            codes = [reason.code for reason in seen]
    del ws  # the real client's socket is left to the garbage collector
    assert codes == [1009]

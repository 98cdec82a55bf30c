"""Unit tests of :class:`anyws._protocol.Protocol`: control frames and the closing
handshake on the fast path, against the same steps through wsproto.

Each test runs a scenario on two protocols, one with the fast path and one with
``_fast`` false (everything through wsproto), and checks both against what RFC 6455
asks. With a fixed masking key, even a client's masked frames are identical bytes.
No sockets and no event loop are involved.
"""

from __future__ import annotations

import os
import struct
from typing import TYPE_CHECKING, Any

import pytest
from wsproto.utilities import LocalProtocolError

from anyws import _frames
from anyws._protocol import Close, Protocol, State
from anyws.exceptions import ProtocolError

from .helpers import protocol_fields

if TYPE_CHECKING:
    from collections.abc import Iterator

KEY = b"\x37\xfa\x21\x3d"


@pytest.fixture(autouse=True)
def fixed_key(monkeypatch: pytest.MonkeyPatch) -> Iterator[None]:
    """The same masking key on both paths, so that masked frames compare as bytes."""
    monkeypatch.setattr(_frames, "_urandom", lambda n: KEY[:n])
    monkeypatch.setattr(os, "urandom", lambda n: KEY[:n])
    yield


def frame(opcode: int, payload: bytes, *, masked: bool) -> bytes:
    """A whole frame with FIN set; ``masked`` for one a client sends."""
    assert len(payload) <= 125
    head = bytes([0x80 | opcode, (0x80 if masked else 0) | len(payload)])
    if not masked:
        return head + payload
    return head + KEY + _frames._apply_mask_python(payload, KEY)


def close_payload(code: int, reason: bytes = b"") -> bytes:
    return struct.pack("!H", code) + reason


def payload_of(sent: bytes, masked: bool) -> bytes:
    """The unmasked payload of one short frame that a protocol sent."""
    assert sent[1] & 0x7F == len(sent) - 2 - 4 * masked
    return _frames._apply_mask_python(sent[6:], sent[2:6]) if masked else sent[2:]


class Side:
    """A protocol and what it delivered."""

    def __init__(self, is_client: bool, fast: bool) -> None:
        self.is_client = is_client
        self.delivered: list[Any] = []
        self.protocol = Protocol(
            is_client,
            lambda data, fin: self.delivered.append((data, fin)),
            lambda payload: self.delivered.append(("pong", payload)),
        )
        self.protocol._fast = fast

    def receive(self, opcode: int, payload: bytes) -> bytes:
        """Receive one frame from the peer; return the answer."""
        return self.protocol.receive_data(
            frame(opcode, payload, masked=not self.is_client)
        )

    def fields(self) -> Any:
        return protocol_fields(self.protocol, reason=True)


def both(is_client: bool) -> tuple[Side, Side]:
    return Side(is_client, True), Side(is_client, False)


SIDES = pytest.mark.parametrize("is_client", [False, True], ids=["server", "client"])


@SIDES
class TestPing:
    def test_ping_is_answered_with_identical_bytes(self, is_client: bool) -> None:
        for payload in (b"", b"keepalive", bytes(range(125))):
            fast, slow = both(is_client)
            answer = fast.receive(0x9, payload)
            assert answer == slow.receive(0x9, payload)
            assert answer == frame(0xA, payload, masked=is_client)
            assert fast.protocol._ws is None

    def test_pings_between_messages(self, is_client: bool) -> None:
        fast, slow = both(is_client)
        masked = not is_client
        data = (
            frame(0x1, b"one", masked=masked)
            + frame(0x9, b"a", masked=masked)
            + frame(0x2, b"two", masked=masked)
            + frame(0xA, b"b", masked=masked)
            + frame(0x9, b"c", masked=masked)
        )
        answer = fast.protocol.receive_data(data)
        assert answer == slow.protocol.receive_data(data)
        assert answer == frame(0xA, b"a", masked=is_client) + frame(
            0xA, b"c", masked=is_client
        )
        assert fast.delivered == slow.delivered
        assert fast.delivered == [("one", True), (b"two", True), ("pong", b"b")]
        assert fast.protocol._ws is None

    def test_ping_cut_short_is_answered_once_whole(self, is_client: bool) -> None:
        fast, slow = both(is_client)
        data = frame(0x9, b"split", masked=not is_client)
        for side in (fast, slow):
            assert side.protocol.receive_data(data[:1]) == b""
            assert side.protocol.receive_data(data[1:4]) == b""
            assert side.protocol.receive_data(data[4:]) == frame(
                0xA, b"split", masked=is_client
            )
        assert fast.protocol._ws is None

    def test_ping_after_our_close_gets_no_pong(self, is_client: bool) -> None:
        fast, slow = both(is_client)
        for side in (fast, slow):
            assert side.protocol.send_close(1000, "") == frame(
                0x8, close_payload(1000), masked=is_client
            )
            assert side.receive(0x9, b"late") == b""
            assert side.receive(0xA, b"pong") == b""
            assert side.delivered == [("pong", b"pong")]
        assert fast.fields() == slow.fields()
        assert fast.protocol._ws is None

    def test_send_ping_and_pong(self, is_client: bool) -> None:
        fast, slow = both(is_client)
        for payload in (b"", b"x" * 125):
            ping = fast.protocol.send_ping(payload)
            assert ping == slow.protocol.send_ping(payload)
            assert ping == frame(0x9, payload, masked=is_client)
            pong = fast.protocol.send_pong(payload)
            assert pong == slow.protocol.send_pong(payload)
            assert pong == frame(0xA, payload, masked=is_client)
        for side in (fast, slow):
            with pytest.raises(ValueError, match="too long for control frame"):
                side.protocol.send_ping(b"x" * 126)


@SIDES
class TestClose:
    @pytest.mark.parametrize(
        ("payload", "echo", "received"),
        [
            (close_payload(1000, b"done"), close_payload(1000), Close(1000, "done")),
            (close_payload(4321, "é".encode()), close_payload(4321), Close(4321, "é")),
            (b"", b"", Close(1005, "")),
        ],
        ids=["1000", "4321", "no-code"],
    )
    def test_close_is_echoed(
        self, is_client: bool, payload: bytes, echo: bytes, received: Close
    ) -> None:
        # Section 5.5.1: the answer carries the code received, or no code at all
        # when the Close had none.
        fast, slow = both(is_client)
        answer = fast.receive(0x8, payload)
        assert answer == slow.receive(0x8, payload)
        assert answer == frame(0x8, echo, masked=is_client)
        assert fast.fields() == slow.fields()
        assert fast.fields() == (
            State.CLOSING,
            received,
            Close(received.code, ""),
            True,
            True,  # the closing handshake is done
            False,
            None,
        )
        assert fast.protocol._ws is None

    def test_close_answering_ours_gets_no_second_close(self, is_client: bool) -> None:
        fast, slow = both(is_client)
        for side in (fast, slow):
            assert side.protocol.send_close(1001, "going") == frame(
                0x8, close_payload(1001, b"going"), masked=is_client
            )
            assert side.protocol.send_close(1000, "again") == b""
            assert side.receive(0x8, close_payload(1001)) == b""
            assert side.protocol.send_close(1000, "again") == b""
        assert fast.fields() == slow.fields()
        assert fast.fields() == (
            State.CLOSING,
            Close(1001, ""),
            Close(1001, "going"),
            False,
            True,  # the closing handshake is done
            False,
            None,
        )
        assert fast.protocol._ws is None

    def test_nothing_after_a_close_frame(self, is_client: bool) -> None:
        fast, slow = both(is_client)
        masked = not is_client
        data = (
            frame(0x8, close_payload(1000), masked=masked)
            + frame(0x9, b"", masked=masked)
            + frame(0x1, b"late", masked=masked)
        )
        answer = fast.protocol.receive_data(data)
        assert answer == slow.protocol.receive_data(data)
        assert answer == frame(0x8, close_payload(1000), masked=is_client)
        assert fast.protocol.receive_data(data) == b""
        assert fast.delivered == slow.delivered == []

    def test_1014(self, is_client: bool) -> None:
        # Bad gateway, registered with IANA, which wsproto refuses on its own.
        fast, slow = both(is_client)
        answer = fast.receive(0x8, close_payload(1014, b"upstream"))
        assert answer == slow.receive(0x8, close_payload(1014, b"upstream"))
        assert answer == frame(0x8, close_payload(1014), masked=is_client)
        assert fast.protocol.close_rcvd == Close(1014, "upstream")
        assert fast.fields() == slow.fields()

    @pytest.mark.parametrize(
        ("payload", "code"),
        [
            (b"\x03", 1002),
            (close_payload(1005), 1002),
            (close_payload(1006), 1002),
            (close_payload(1015), 1002),
            (close_payload(999), 1002),
            (close_payload(1004), 1002),
            (close_payload(1016), 1002),
            (close_payload(2999), 1002),
            (close_payload(5000), 1002),
            (close_payload(1000, b"\xff"), 1007),
            (close_payload(1000, b"\xed\xa0\x80"), 1007),
        ],
        ids=[
            "1-byte",
            "1005",
            "1006",
            "1015",
            "999",
            "1004",
            "1016",
            "2999",
            "5000",
            "bad-utf8",
            "surrogate",
        ],
    )
    def test_invalid_close_fails_the_same_way(
        self, is_client: bool, payload: bytes, code: int
    ) -> None:
        fast, slow = both(is_client)
        answer = fast.receive(0x8, payload)
        assert answer == slow.receive(0x8, payload)
        assert _frames.parse_close(payload) is None
        assert fast.fields() == slow.fields()
        failure = fast.protocol.failure
        assert isinstance(failure, ProtocolError)
        assert failure.code == code
        assert fast.protocol.close_rcvd is None
        assert answer[0] == 0x88
        assert payload_of(answer, is_client)[:2] == struct.pack("!H", code)

    def test_invalid_close_after_ours(self, is_client: bool) -> None:
        fast, slow = both(is_client)
        for side in (fast, slow):
            side.protocol.send_close(1000, "")
            assert side.receive(0x8, close_payload(999)) == b""
        assert fast.fields() == slow.fields()
        assert fast.protocol.failure is not None

    @pytest.mark.parametrize(
        ("code", "reason"),
        [
            (1000, ""),
            (4000, "a" * 123),
            (4000, "a" * 200),
            (1001, "é" * 70),  # 140 bytes: cut to 122, not inside a character
            (1005, ""),
            (1006, "x"),
        ],
    )
    def test_send_close_as_wsproto_does(
        self, is_client: bool, code: int, reason: str
    ) -> None:
        fast, slow = both(is_client)
        sent = fast.protocol.send_close(code, reason)
        assert sent == slow.protocol.send_close(code, reason)
        payload = payload_of(sent, is_client)
        assert len(payload) <= 125
        payload[2:].decode()  # whole characters only
        assert fast.fields() == slow.fields()
        assert fast.protocol._ws is None

    def test_send_after_the_closing_handshake(self, is_client: bool) -> None:
        # wsproto's connection, created only now, is in the state the fast path
        # left: it refuses what wsproto would refuse, with the same words.
        fast, slow = both(is_client)
        for side in (fast, slow):
            side.receive(0x8, close_payload(1000))
        assert fast.protocol._ws is None
        for send in ("send_ping", "send_pong"):
            with pytest.raises(LocalProtocolError) as slow_error:
                getattr(slow.protocol, send)(b"")
            with pytest.raises(LocalProtocolError) as fast_error:
                getattr(fast.protocol, send)(b"")
            assert str(fast_error.value) == str(slow_error.value)
        with pytest.raises(LocalProtocolError, match="CLOSED"):
            fast.protocol.send_data("late")
        assert fast.protocol.send_close(1000, "") == b""


@SIDES
class TestWsprotoLater:
    def test_a_typical_connection_never_needs_it(self, is_client: bool) -> None:
        side = Side(is_client, True)
        protocol = side.protocol
        protocol.send_data("hello")
        protocol.send_ping(b"1")
        side.receive(0x1, b"hi")
        side.receive(0xA, b"1")
        side.receive(0x9, b"2")
        protocol.send_close(1000, "")
        side.receive(0x8, close_payload(1000))
        assert protocol.closing_handshake_done
        assert protocol._ws is None

    def test_fragments_after_our_close(self, is_client: bool) -> None:
        # The peer finishes its message after our Close; wsproto's connection,
        # created for the fragments, knows that this side already sent a Close.
        fast, slow = both(is_client)
        masked = not is_client
        data = (
            bytes([0x01, 0x80 * masked | 3])
            + (KEY + _frames._apply_mask_python(b"par", KEY) if masked else b"par")
            + frame(0x9, b"p", masked=masked)
            + frame(0x0, b"t", masked=masked)
            + frame(0x8, close_payload(1000), masked=masked)
        )
        for side in (fast, slow):
            side.protocol.send_close(1000, "")
            assert side.protocol.receive_data(data) == b""
        assert fast.protocol._ws is not None
        assert fast.delivered == [("par", False), ("t", True)]
        assert fast.fields() == slow.fields()
        assert fast.protocol.close_rcvd_then_sent is False

    def test_fragmented_send_then_close(self, is_client: bool) -> None:
        fast, slow = both(is_client)
        for side in (fast, slow):
            first = side.protocol.send_data("a", fin=False)
            assert first[0] == 0x01  # FIN clear: a fragment
            assert payload_of(first, is_client) == b"a"
            last = side.protocol.send_data("b")
            assert last[0] == 0x80  # FIN set: a continuation frame ends the message
            assert payload_of(last, is_client) == b"b"
            assert side.receive(0x8, b"") == frame(0x8, b"", masked=is_client)
        assert fast.fields() == slow.fields()
        assert fast.protocol.close_sent == Close(1005, "")

"""The fast frame path against wsproto's, and compiled masking against pure Python.

Property-based: hypothesis generates byte streams of valid and broken frames, split
at random, and each is fed to two :class:`anyws._protocol.Protocol` objects, one with
the fast path and one without (everything through wsproto). Between the pieces, both
may also be asked to send: data, Pings, Pongs, a Close. Everything observable must
match, step by step: the messages delivered, the bytes sent (answers to Pings and
Close frames included), the exceptions raised, the state, the close codes and the
failures. No sockets and no event loop are involved.
"""

from __future__ import annotations

import os
import struct
import zlib
from typing import Any

import pytest
from hypothesis import given, settings, strategies as st
from wsproto.frame_protocol import CloseReason

from anyws import _frames
from anyws._handshake import DeflateParams
from anyws._protocol import Protocol, _Masker

from .helpers import protocol_fields

MASK_KEYS = st.binary(min_size=4, max_size=4)


class TestMask:
    @given(data=st.binary(max_size=5000), key=MASK_KEYS)
    def test_compiled_equals_pure_python(self, data: bytes, key: bytes) -> None:
        assert _frames.apply_mask(data, key) == _frames._apply_mask_python(data, key)

    @given(data=st.binary(max_size=300), key=MASK_KEYS)
    def test_mask_is_an_involution(self, data: bytes, key: bytes) -> None:
        assert _frames.apply_mask(_frames.apply_mask(data, key), key) == data

    @given(
        data=st.binary(max_size=2000),
        key=MASK_KEYS,
        cuts=st.lists(st.integers(0, 2000), max_size=6),
    )
    def test_chunked_masker_continues_the_mask(
        self, data: bytes, key: bytes, cuts: list[int]
    ) -> None:
        masker = _Masker(key)
        bounds = sorted({0, len(data), *(c for c in cuts if c <= len(data))})
        out = b"".join(
            bytes(masker.process(bytearray(data[a:b])))
            for a, b in zip(bounds, bounds[1:], strict=False)
        )
        assert out == _frames._apply_mask_python(data, key)

    @given(data=st.binary(max_size=300), key=MASK_KEYS, prefix=st.binary(max_size=14))
    def test_prefix_comes_first_unmasked(
        self, data: bytes, key: bytes, prefix: bytes
    ) -> None:
        expected = prefix + _frames._apply_mask_python(data, key)
        assert _frames.apply_mask(data, key, prefix) == expected
        assert _frames._apply_mask_python(data, key, prefix) == expected

    def test_accepts_every_bytes_like(self) -> None:
        key = b"\x01\x02\x03\x04"
        expected = _frames._apply_mask_python(b"abcdefgh", key)
        for data in (b"abcdefgh", bytearray(b"abcdefgh"), memoryview(b"abcdefgh")):
            assert _frames.apply_mask(data, key) == expected

    def test_rejects_a_bad_key(self) -> None:
        if not _frames.speedups:
            pytest.skip("the compiled routine isn't built")
        with pytest.raises(ValueError, match="4 bytes"):
            _frames.apply_mask(b"data", b"abc")


def raw_frame(
    opcode: int,
    payload: bytes,
    *,
    fin: bool = True,
    rsv: int = 0,
    masked: bool,
    wide: int = 0,
) -> bytes:
    """A frame; ``wide`` forces a 2-byte (1) or 8-byte (2) length, even if too long."""
    head = bytes([(0x80 if fin else 0) | (rsv << 4) | opcode])
    bit = 0x80 if masked else 0
    size = len(payload)
    if size < 126 and wide == 0:
        head += bytes([bit | size])
    elif size < 65536 and wide <= 1:
        head += bytes([bit | 126]) + struct.pack("!H", size)
    else:
        head += bytes([bit | 127]) + struct.pack("!Q", size)
    if not masked:
        return head + payload
    key = os.urandom(4)
    return head + key + _frames._apply_mask_python(payload, key)


TEXTS = st.one_of(
    st.text(max_size=40).map(str.encode),
    st.binary(max_size=40),  # mostly invalid UTF-8
    st.sampled_from([b"\xed\xa0\x80", b"\xf4\x90\x80\x80", b"\xc0\xaf", b"\xe2\x82"]),
)


# Close payloads, valid and not: no code, one byte, every kind of code (section 7.4),
# reasons that are valid UTF-8 or not.
CLOSE_CODES = st.one_of(
    st.sampled_from([1000, 1001, 1002, 1003, 1007, 1011, 1012, 1013, 1014, 3000, 4999]),
    st.sampled_from([0, 999, 1004, 1005, 1006, 1015, 1016, 2999, 5000, 65535]),
    st.integers(0, 65535),
)
CLOSE_PAYLOADS = st.one_of(
    st.just(b""),
    st.binary(min_size=1, max_size=1),
    st.builds(
        lambda code, reason: struct.pack("!H", code) + reason, CLOSE_CODES, TEXTS
    ),
    st.builds(
        lambda code, reason: struct.pack("!H", code) + reason.encode()[:123],
        CLOSE_CODES,
        st.text(min_size=40, max_size=70),
    ),
)


@st.composite
def frames(draw: st.DrawFn, masked: bool) -> bytes:
    kind = draw(
        st.sampled_from(
            ["text", "binary", "control", "keepalive", "close", "unmasked", "odd"]
        )
    )
    if kind == "text":
        payload = draw(TEXTS)
        return raw_frame(
            1,
            payload,
            fin=draw(st.booleans()),
            masked=masked,
            wide=draw(st.sampled_from([0, 0, 0, 1, 2])),
        )
    if kind == "binary":
        payload = draw(st.binary(max_size=300))
        return raw_frame(
            2,
            payload,
            fin=draw(st.booleans()),
            masked=masked,
            wide=draw(st.sampled_from([0, 0, 0, 1, 2])),
        )
    if kind == "control":
        opcode = draw(st.sampled_from([0, 8, 9, 10]))
        payload = draw(st.binary(max_size=130))
        if opcode == 8 and draw(st.booleans()):
            code = draw(st.sampled_from([1000, 1001, 1005, 1011, 3000, 999, 5000]))
            payload = struct.pack("!H", code) + draw(TEXTS)
        return raw_frame(opcode, payload[:125], fin=draw(st.booleans()), masked=masked)
    if kind == "keepalive":
        # A Ping or a Pong as the fast path takes it, or nearly.
        return raw_frame(
            draw(st.sampled_from([9, 10])),
            draw(st.binary(max_size=125)),
            masked=draw(st.sampled_from([masked] * 6 + [not masked])),
            wide=draw(st.sampled_from([0] * 6 + [1])),
        )
    if kind == "close":
        return raw_frame(8, draw(CLOSE_PAYLOADS), masked=masked)
    if kind == "unmasked":
        # A plain data frame with the wrong masking for its direction.
        return raw_frame(draw(st.sampled_from([1, 2])), b"abcd", masked=not masked)
    # Reserved bits, reserved opcodes, either masking.
    return raw_frame(
        draw(st.sampled_from([1, 2, 3, 0xB])),
        draw(st.binary(max_size=20)),
        rsv=draw(st.integers(0, 7)),
        masked=draw(st.booleans()),
    )


class Recorder:
    """A protocol and everything it reported, step by step."""

    def __init__(
        self,
        is_client: bool,
        fast: bool,
        max_size: int | None,
        deflate: DeflateParams | None = None,
        *,
        in_place: bool = False,
    ) -> None:
        self.events: list[Any] = []
        # Feed views of a buffer that is scribbled over after each call, as the
        # asyncio stream does with large reads: a reference kept would show.
        self.in_place = in_place
        self.protocol = Protocol(
            is_client,
            lambda data, fin: self.events.append(("data", data, fin)),
            lambda payload: self.events.append(("pong", payload)),
            max_size=max_size,
            deflate=deflate,
        )
        self.protocol._fast = fast
        self.sent = b""  # everything sent: answers and what was asked for
        self.raised: list[Any] = []
        self.steps: list[Any] = []  # what each step sent or raised, and the fields

    def feed(self, data: bytes) -> None:
        if self.in_place:
            buffer = bytearray(data)
            out = self.protocol.receive_data(memoryview(buffer))
            buffer[:] = b"\xaa" * len(buffer)
        else:
            out = self.protocol.receive_data(data)
        self.sent += out
        self.steps.append(("received", unmask_all(out), self.fields()))

    def so_far(self) -> Any:
        """Everything sent and raised so far, and the fields now."""
        return unmask_all(self.sent), self.raised, self.fields()

    def act(self, action: tuple[Any, ...]) -> None:
        """Ask the protocol to send: ``("close", code, reason)``, ``("ping",
        payload)``, ``("pong", payload)`` or ``("data", data, fin)``."""
        protocol = self.protocol
        try:
            if action[0] == "close":
                out = protocol.send_close(action[1], action[2])
            elif action[0] == "ping":
                out = protocol.send_ping(action[1])
            elif action[0] == "pong":
                out = protocol.send_pong(action[1])
            else:
                out = protocol.send_data(action[1], action[2])
        except Exception as exc:
            self.raised.append((action, type(exc), str(exc)))
            self.steps.append((action, type(exc), str(exc), self.fields()))
        else:
            self.sent += out
            self.steps.append((action, unmask_all(out), self.fields()))

    def fields(self) -> Any:
        return protocol_fields(self.protocol, reason=False)

    def summary(self) -> Any:
        return (
            _merge_fragments(self.events),
            unmask_all(self.sent),
            self.fields(),
        )


def _merge_fragments(events: list[Any]) -> list[Any]:
    # The fast path delivers whole messages where wsproto may deliver the same
    # message in pieces; what the application receives is the joined message.
    merged: list[Any] = []
    pending: list[Any] = []
    for event in events:
        if event[0] != "data":
            merged.append(event)
            continue
        pending.append(event[1])
        if event[2]:
            first = pending[0]
            merged.append(
                (
                    "message",
                    "".join(pending) if isinstance(first, str) else b"".join(pending),
                )
            )
            pending = []
    # A message left unfinished is never returned by recv(); whether the slow path
    # had already queued some of its bytes (the fast path waits for whole frames)
    # makes no difference to the application.
    return merged


def unmask_all(data: bytes) -> list[tuple[int, bytes]]:
    """Decode the frames a protocol sent, unmasking them."""
    frames_: list[tuple[int, bytes]] = []
    position = 0
    while position < len(data):
        first, second = data[position], data[position + 1]
        size = second & 0x7F
        position += 2
        if size == 126:
            (size,) = struct.unpack("!H", data[position : position + 2])
            position += 2
        elif size == 127:
            (size,) = struct.unpack("!Q", data[position : position + 8])
            position += 8
        if second & 0x80:
            key = data[position : position + 4]
            position += 4
            payload = _frames._apply_mask_python(data[position : position + size], key)
        else:
            payload = data[position : position + size]
        position += size
        frames_.append((first, payload))
    return frames_


def deflate(data: bytes) -> bytes:
    """Compress a whole message as permessage-deflate does (RFC 7692 7.2.1)."""
    compressor = zlib.compressobj(6, zlib.DEFLATED, -15)
    return (compressor.compress(data) + compressor.flush(zlib.Z_SYNC_FLUSH))[:-4]


@st.composite
def compressed_frames(draw: st.DrawFn, masked: bool) -> bytes:
    kind = draw(st.sampled_from(["text", "binary", "bad", "plain", "other"]))
    if kind in ("text", "binary"):
        payload = draw(TEXTS) if kind == "text" else draw(st.binary(max_size=400))
        return raw_frame(
            1 if kind == "text" else 2,
            deflate(payload),
            rsv=4,
            fin=draw(st.booleans()),
            masked=masked,
        )
    if kind == "bad":  # RSV1 with data that isn't deflate
        return raw_frame(
            draw(st.sampled_from([1, 2])),
            draw(st.binary(max_size=30)),
            rsv=4,
            masked=masked,
        )
    if kind == "plain":
        return raw_frame(2, draw(st.binary(max_size=50)), masked=masked)
    return draw(frames(masked=masked))


# What the application may ask a protocol to send between two reads. The odd close
# codes and reasons check that the fast path does what wsproto does with them.
ACTIONS = st.one_of(
    st.tuples(
        st.just("close"),
        st.one_of(
            st.sampled_from([1000, 1001, 1011, 1014, 3000, 4999]),
            st.sampled_from([0, 1005, 1006, 1015, 65535, 70000, -1]),
            st.just(CloseReason.NO_STATUS_RCVD),
        ),
        st.one_of(
            st.just(""), st.text(max_size=80), st.just("é" * 70), st.just("\ud800")
        ),
    ),
    st.tuples(st.sampled_from(["ping", "pong"]), st.binary(max_size=126)),
    st.tuples(
        st.just("data"),
        st.one_of(st.text(max_size=20), st.binary(max_size=20)),
        st.booleans(),
    ),
)
SOME_ACTIONS: st.SearchStrategy[list[tuple[Any, ...]]] = st.one_of(
    st.just([]), st.just([]), st.lists(ACTIONS, min_size=1, max_size=2)
)


def run_both(
    data: st.DataObject,
    stream: bytes,
    fast: Recorder,
    slow: Recorder,
    *,
    every_step: bool = True,
) -> None:
    """Feed ``stream`` to both, cut at random, with actions at random in between.

    Every step is compared, or with ``every_step`` false, every step after which the
    fast path holds no frame cut short: it inflates a compressed frame once it is
    whole, where wsproto inflates each piece and may fail a read earlier.
    """
    cuts = sorted(set(data.draw(st.lists(st.integers(0, len(stream)), max_size=5))))
    bounds = [0, *cuts, len(stream)]
    for a, b in zip(bounds, bounds[1:], strict=False):
        if every_step or not fast.protocol._pieces:
            for action in data.draw(SOME_ACTIONS):
                fast.act(action)
                slow.act(action)
                assert fast.so_far() == slow.so_far()
        fast.feed(stream[a:b])
        slow.feed(stream[a:b])
        if every_step:
            assert fast.steps == slow.steps
        elif not fast.protocol._pieces:
            assert fast.so_far() == slow.so_far()
    for action in data.draw(SOME_ACTIONS):
        fast.act(action)
        slow.act(action)
    assert fast.so_far() == slow.so_far()
    if every_step:
        assert fast.steps == slow.steps
    assert fast.summary() == slow.summary()


class TestFastPathMatchesWsproto:
    @settings(
        max_examples=int(os.environ.get("ANYWS_FRAME_EXAMPLES", "300")),
        deadline=None,
    )
    @given(
        data=st.data(),
        is_client=st.booleans(),
        max_size=st.sampled_from([None, 0, 10, 200, 2**20]),
        takeover=st.booleans(),
    )
    def test_same_results_with_compression(
        self,
        data: st.DataObject,
        is_client: bool,
        max_size: int | None,
        takeover: bool,
    ) -> None:
        params = DeflateParams(
            server_no_context_takeover=not takeover,
            client_no_context_takeover=not takeover,
        )
        stream = b"".join(
            data.draw(st.lists(compressed_frames(masked=not is_client), max_size=8))
        )
        in_place = data.draw(st.booleans())
        fast = Recorder(is_client, True, max_size, params, in_place=in_place)
        slow = Recorder(is_client, False, max_size, params)
        run_both(data, stream, fast, slow, every_step=False)

    @settings(
        max_examples=int(os.environ.get("ANYWS_FRAME_EXAMPLES", "300")), deadline=None
    )
    @given(
        data=st.data(),
        is_client=st.booleans(),
        max_size=st.sampled_from([None, 0, 10, 200, 2**20]),
    )
    def test_same_results_on_any_stream(
        self, data: st.DataObject, is_client: bool, max_size: int | None
    ) -> None:
        stream = b"".join(data.draw(st.lists(frames(masked=not is_client), max_size=8)))
        in_place = data.draw(st.booleans())
        fast = Recorder(is_client, True, max_size, in_place=in_place)
        slow = Recorder(is_client, False, max_size)
        run_both(data, stream, fast, slow)

    @settings(
        max_examples=int(os.environ.get("ANYWS_FRAME_EXAMPLES", "300")), deadline=None
    )
    @given(
        payload=CLOSE_PAYLOADS,
        is_client=st.booleans(),
        closed_first=st.booleans(),
        cut=st.integers(0, 140),
    )
    def test_close_frames_match_wsproto(
        self, payload: bytes, is_client: bool, closed_first: bool, cut: int
    ) -> None:
        # Every Close payload, valid or not, whether this side sent a Close first or
        # not, whole or cut in two.
        frame = raw_frame(8, payload, masked=not is_client)
        fast = Recorder(is_client, True, None)
        slow = Recorder(is_client, False, None)
        for recorder in (fast, slow):
            if closed_first:
                recorder.act(("close", 1001, "bye"))
            recorder.feed(frame[:cut])
            recorder.feed(frame[cut:])
            recorder.act(("ping", b""))
        assert fast.steps == slow.steps
        assert fast.summary() == slow.summary()

    @settings(max_examples=200, deadline=None)
    @given(
        message=st.one_of(st.text(max_size=70000), st.binary(max_size=70000)),
        is_client=st.booleans(),
    )
    def test_serialize_matches_wsproto(
        self, message: str | bytes, is_client: bool
    ) -> None:
        fast = Protocol(is_client, lambda d, f: None, lambda p: None)
        slow = Protocol(is_client, lambda d, f: None, lambda p: None)
        slow._fast = False
        assert unmask_all(fast.send_data(message)) == unmask_all(
            slow.send_data(message)
        )

    @settings(max_examples=100, deadline=None)
    @given(
        messages=st.lists(
            st.one_of(st.text(max_size=3000), st.binary(max_size=3000)), max_size=5
        ),
        is_client=st.booleans(),
    )
    def test_compressed_serialize_matches_wsproto(
        self, messages: list[str | bytes], is_client: bool
    ) -> None:
        fast = Protocol(
            is_client, lambda d, f: None, lambda p: None, deflate=DeflateParams()
        )
        slow = Protocol(
            is_client, lambda d, f: None, lambda p: None, deflate=DeflateParams()
        )
        slow._fast = False
        for message in messages:
            assert unmask_all(fast.send_data(message)) == unmask_all(
                slow.send_data(message)
            )

    def test_serialize_accepts_any_memoryview(self) -> None:
        data = memoryview(bytes(range(16))).cast("I")
        strided = memoryview(bytes(range(16)))[::2]
        assert unmask_all(_frames.serialize(data, True)) == [(0x82, bytes(range(16)))]
        assert unmask_all(_frames.serialize(strided, False)) == [
            (0x82, bytes(range(0, 16, 2)))
        ]


class TestAfterClose:
    @pytest.mark.parametrize("fast", [True, False])
    def test_bytes_after_a_close_frame_are_ignored(self, fast: bool) -> None:
        # RFC 6455 section 5.5.1: nothing after a Close frame is processed, even
        # when it arrives in a later chunk, after this side answered the Close.
        recorder = Recorder(False, fast, None)
        recorder.feed(raw_frame(1, b"", fin=False, masked=True))
        recorder.feed(raw_frame(8, b"", masked=True))
        recorder.feed(raw_frame(1, b"", fin=False, masked=True))
        recorder.feed(raw_frame(2, b"late", masked=True))
        assert recorder.events == [("data", "", False)]
        assert recorder.protocol.close_rcvd is not None
        assert unmask_all(recorder.sent) == [(0x88, b"")]


class TestFramesCutShort:
    @given(
        size=st.integers(0, 200_000),
        cuts=st.lists(st.integers(0, 200_020), max_size=8),
        is_client=st.booleans(),
    )
    @settings(max_examples=50, deadline=None)
    def test_binary_frame_is_delivered_whole(
        self, size: int, cuts: list[int], is_client: bool
    ) -> None:
        payload = os.urandom(size)
        data = raw_frame(2, payload, masked=not is_client) + raw_frame(
            2, b"next", masked=not is_client
        )
        bounds = sorted({0, len(data), *(c for c in cuts if c < len(data))})
        recorder = Recorder(is_client, True, None)
        for a, b in zip(bounds, bounds[1:], strict=False):
            recorder.feed(data[a:b])
        # One event per message, however the bytes were cut: no fragments.
        assert recorder.events == [("data", payload, True), ("data", b"next", True)]

    def test_invalid_text_fails_before_the_frame_ends(self) -> None:
        # RFC 6455 section 8.1: invalid UTF-8 fails the connection as soon as it
        # arrives, even in the middle of a frame.
        recorder = Recorder(False, True, None)
        frame = raw_frame(1, b"ok\xff" + b"x" * 1000, masked=True)
        recorder.feed(frame[:20])
        assert recorder.protocol.failure is not None
        assert unmask_all(recorder.sent)[0][1][:2] == (1007).to_bytes(2, "big")


class TestMessageLimit:
    @pytest.mark.parametrize("fast", [True, False])
    def test_stray_continuation_after_a_message_is_a_protocol_error(
        self, fast: bool
    ) -> None:
        # The finished message's size does not carry over: 1002, not 1009.
        recorder = Recorder(False, fast, 10)
        recorder.feed(raw_frame(2, b"x" * 8, masked=True))
        recorder.feed(raw_frame(0, b"abc", fin=False, masked=True))
        failure = recorder.protocol.failure
        assert failure is not None
        assert getattr(failure, "code", None) == 1002

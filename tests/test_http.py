"""Tests of the HTTP side of the opening handshake, without I/O.

Covers :class:`anyws.Headers`, :class:`anyws.Request` and :class:`anyws.Response`,
the handshake computations and negotiations of RFC 6455 section 4 and RFC 7692
section 7 (``accept_key``, ``parse_extensions``, ``negotiate_deflate``,
``check_response``), and :func:`anyws.parse_uri` (RFC 6455 section 3).

Every test here is a plain synchronous test of pure functions: no peer, no socket,
no event loop, hence no ordering to enforce.
"""

from __future__ import annotations

import pytest

import anyws
from anyws import (
    Headers,
    InvalidHandshake,
    InvalidHeader,
    InvalidHeaderValue,
    InvalidStatus,
    InvalidUpgrade,
    InvalidURI,
    MultipleValuesError,
    NegotiationError,
    Request,
    Response,
    parse_uri,
)
from anyws._handshake import (
    DeflateParams,
    DeflateSettings,
    accept_key,
    check_response,
    negotiate_deflate,
    parse_extensions,
)
from anyws._http import make_response

# RFC 6455 section 1.3: the example key and the accept value it calls for.
RFC_KEY = "dGhlIHNhbXBsZSBub25jZQ=="
RFC_ACCEPT = "s3pPLMBiTxaQ9kYGzzhZRbK+xOo="


# --------------------------------------------------------------------------
# Headers
# --------------------------------------------------------------------------


class TestHeaders:
    def test_lookup_ignores_case(self) -> None:
        headers = Headers([("Content-Type", "text/plain")])
        assert headers["content-type"] == "text/plain"
        assert headers["CONTENT-TYPE"] == "text/plain"
        assert "cOnTeNt-TyPe" in headers
        assert "Content-Length" not in headers

    def test_contains_rejects_non_strings(self) -> None:
        headers = Headers([("A", "1")])
        key: object = 1
        assert key not in headers

    def test_setitem_adds_a_value(self) -> None:
        headers = Headers()
        headers["Set-Cookie"] = "a=1"
        headers["set-cookie"] = "b=2"
        assert headers.get_all("Set-Cookie") == ["a=1", "b=2"]
        assert len(headers) == 1

    def test_getitem_with_several_values_raises(self) -> None:
        headers = Headers([("X-A", "1"), ("x-a", "2")])
        with pytest.raises(MultipleValuesError):
            headers["X-A"]
        # MultipleValuesError is a LookupError but not a KeyError: get() must not
        # silently return a default when the header is ambiguous.
        assert issubclass(MultipleValuesError, LookupError)
        with pytest.raises(MultipleValuesError):
            headers.get("X-A")

    def test_getitem_missing_raises_key_error(self) -> None:
        with pytest.raises(KeyError):
            Headers()["Host"]
        assert Headers().get("Host") is None
        assert Headers().get("Host", "default") == "default"

    def test_get_all(self) -> None:
        headers = Headers([("A", "1"), ("B", "2"), ("a", "3")])
        assert headers.get_all("a") == ["1", "3"]
        assert headers.get_all("B") == ["2"]
        assert headers.get_all("missing") == []

    def test_raw_items_keep_order_case_and_repeats(self) -> None:
        pairs = [("Host", "h"), ("X-A", "1"), ("Upgrade", "websocket"), ("x-a", "2")]
        assert list(Headers(pairs).raw_items()) == pairs

    def test_iteration_and_len_count_distinct_names(self) -> None:
        headers = Headers([("A", "1"), ("B", "2"), ("a", "3")])
        assert len(headers) == 2
        assert sorted(name.lower() for name in headers) == ["a", "b"]

    def test_delitem_removes_every_value(self) -> None:
        headers = Headers([("A", "1"), ("B", "2"), ("a", "3")])
        del headers["A"]
        assert "A" not in headers
        assert list(headers.raw_items()) == [("B", "2")]
        with pytest.raises(KeyError):
            del headers["A"]

    def test_clear(self) -> None:
        headers = Headers([("A", "1")])
        headers.clear()
        assert len(headers) == 0
        assert list(headers.raw_items()) == []

    def test_constructors(self) -> None:
        expected = [("A", "1"), ("B", "2")]
        assert list(Headers({"A": "1", "B": "2"}).raw_items()) == expected
        assert list(Headers(expected).raw_items()) == expected
        assert list(Headers(A="1", B="2").raw_items()) == expected
        assert list(Headers(Headers(expected)).raw_items()) == expected
        assert list(Headers(None).raw_items()) == []

    def test_update_adds(self) -> None:
        headers = Headers([("A", "1")])
        headers.update({"A": "2"}, [("B", "3")], C="4")
        assert list(headers.raw_items()) == [
            ("A", "1"),
            ("A", "2"),
            ("B", "3"),
            ("C", "4"),
        ]

    def test_equality_ignores_name_case(self) -> None:
        assert Headers([("Host", "h")]) == Headers([("host", "h")])
        assert Headers([("A", "1"), ("B", "2")]) == Headers([("B", "2"), ("A", "1")])

    def test_equality_compares_values_and_their_order(self) -> None:
        assert Headers([("A", "1")]) != Headers([("A", "2")])
        assert Headers([("A", "1"), ("A", "2")]) != Headers([("A", "2"), ("A", "1")])
        assert Headers([("A", "1")]) != Headers([("A", "1"), ("B", "2")])
        assert Headers([("A", "1")]) != {"A": "1"}

    def test_headers_are_unhashable(self) -> None:
        with pytest.raises(TypeError):
            hash(Headers())

    def test_copy_is_independent(self) -> None:
        original = Headers([("A", "1")])
        copy = original.copy()
        assert copy == original
        assert copy is not original
        copy["A"] = "2"
        copy["B"] = "3"
        assert original.get_all("A") == ["1"]
        assert "B" not in original
        assert list(original.raw_items()) == [("A", "1")]

    def test_str_is_the_http_form(self) -> None:
        headers = Headers([("Host", "example.com"), ("X-A", "1"), ("x-a", "2")])
        assert str(headers) == "Host: example.com\r\nX-A: 1\r\nx-a: 2\r\n\r\n"
        assert str(Headers()) == "\r\n"

    def test_repr_shows_the_pairs(self) -> None:
        assert repr(Headers([("A", "1")])) == "Headers([('A', '1')])"


# --------------------------------------------------------------------------
# Request and Response
# --------------------------------------------------------------------------


class TestRequest:
    def test_path_keeps_the_query(self) -> None:
        request = Request("/chat?room=1&x=2", Headers())
        assert request.path == "/chat?room=1&x=2"
        assert request.query == "room=1&x=2"

    def test_query_is_empty_without_question_mark(self) -> None:
        assert Request("/chat", Headers()).query == ""
        assert Request("/chat?", Headers()).query == ""

    def test_serialize(self) -> None:
        request = Request("/a?b=1", Headers([("Host", "h"), ("Upgrade", "websocket")]))
        assert request.serialize() == (
            b"GET /a?b=1 HTTP/1.1\r\nHost: h\r\nUpgrade: websocket\r\n\r\n"
        )


class TestResponse:
    def test_serialize_with_body(self) -> None:
        response = Response(
            404, "Not Found", Headers([("Content-Length", "4")]), b"gone"
        )
        assert response.serialize() == (
            b"HTTP/1.1 404 Not Found\r\nContent-Length: 4\r\n\r\ngone"
        )

    def test_serialize_101(self) -> None:
        response = Response(
            101,
            "Switching Protocols",
            Headers([("Upgrade", "websocket"), ("Connection", "Upgrade")]),
        )
        assert response.body == b""
        assert response.serialize() == (
            b"HTTP/1.1 101 Switching Protocols\r\n"
            b"Upgrade: websocket\r\nConnection: Upgrade\r\n\r\n"
        )

    def test_make_response_text_body(self) -> None:
        response = make_response(403, "nope")
        assert response.status_code == 403
        assert response.reason_phrase == "Forbidden"
        assert response.body == b"nope"
        assert response.headers["Content-Length"] == "4"
        assert response.headers["Content-Type"] == "text/plain; charset=utf-8"
        assert response.serialize().endswith(b"\r\n\r\nnope")

    def test_make_response_keeps_given_headers(self) -> None:
        response = make_response(
            200, b"\x00", {"Content-Type": "application/octet-stream", "X-A": "1"}
        )
        assert response.headers["Content-Type"] == "application/octet-stream"
        assert response.headers["X-A"] == "1"
        assert response.headers["Content-Length"] == "1"


# --------------------------------------------------------------------------
# Handshake computations
# --------------------------------------------------------------------------


class TestAcceptKey:
    def test_rfc_6455_example(self) -> None:
        # RFC 6455 section 1.3.
        assert accept_key(RFC_KEY) == RFC_ACCEPT

    def test_depends_on_the_key(self) -> None:
        assert accept_key("AQIDBAUGBwgJCgsMDQ4PEC==") != RFC_ACCEPT


class TestParseExtensions:
    def test_single_extension_without_params(self) -> None:
        assert parse_extensions("permessage-deflate") == [("permessage-deflate", [])]

    def test_params_with_and_without_values(self) -> None:
        assert parse_extensions(
            "permessage-deflate; client_max_window_bits; server_max_window_bits=10"
        ) == [
            (
                "permessage-deflate",
                [("client_max_window_bits", None), ("server_max_window_bits", "10")],
            )
        ]

    def test_quoted_values_are_unquoted(self) -> None:
        # RFC 6455 section 9.1: a value may be a quoted-string holding a token.
        assert parse_extensions('permessage-deflate; client_max_window_bits="10"') == [
            ("permessage-deflate", [("client_max_window_bits", "10")])
        ]

    def test_multiple_offers_in_order(self) -> None:
        assert parse_extensions(
            'x-one; a="1", permessage-deflate; b, x-two ;c = 2 ,, x-three'
        ) == [
            ("x-one", [("a", "1")]),
            ("permessage-deflate", [("b", None)]),
            ("x-two", [("c", "2")]),
            ("x-three", []),
        ]

    def test_empty_value(self) -> None:
        assert parse_extensions("") == []

    @pytest.mark.parametrize(
        "value",
        [
            "a b",  # two tokens where one is expected
            "; x",  # no extension name
            "a; =1",  # no parameter name
            'a; x="1 2"',  # quoted value that is not a token
            'a; x="1,2"',
            "a; x=y z",
            "a; x=",  # '=' without value
        ],
    )
    def test_invalid_values_raise(self, value: str) -> None:
        with pytest.raises(InvalidHeaderValue) as info:
            parse_extensions(value)
        assert info.value.name == "Sec-WebSocket-Extensions"


def _offer(*values: str) -> Headers:
    return Headers([("Sec-WebSocket-Extensions", value) for value in values])


class TestNegotiateDeflate:
    """RFC 7692 section 7: the server side of permessage-deflate negotiation.

    The server's own settings (``DeflateSettings()``) cap both windows at 12 bits.
    """

    settings = DeflateSettings()

    def negotiate(self, *values: str) -> tuple[str, DeflateParams] | None:
        return negotiate_deflate(_offer(*values), self.settings)

    def test_no_offer(self) -> None:
        assert negotiate_deflate(Headers(), self.settings) is None

    def test_other_extensions_are_ignored(self) -> None:
        assert self.negotiate("x-webkit-deflate-frame") is None

    def test_plain_offer(self) -> None:
        assert self.negotiate("permessage-deflate") == (
            "permessage-deflate; server_max_window_bits=12",
            DeflateParams(server_max_window_bits=12),
        )

    def test_server_no_context_takeover(self) -> None:
        result = self.negotiate("permessage-deflate; server_no_context_takeover")
        assert result is not None
        value, params = result
        assert "server_no_context_takeover" in value
        assert params.server_no_context_takeover
        assert not params.client_no_context_takeover

    def test_client_no_context_takeover(self) -> None:
        result = self.negotiate("permessage-deflate; client_no_context_takeover")
        assert result is not None
        value, params = result
        assert "client_no_context_takeover" in value
        assert params.client_no_context_takeover
        assert not params.server_no_context_takeover

    def test_both_no_context_takeover(self) -> None:
        assert self.negotiate(
            "permessage-deflate; server_no_context_takeover; client_no_context_takeover"
        ) == (
            "permessage-deflate; server_no_context_takeover; "
            "client_no_context_takeover; server_max_window_bits=12",
            DeflateParams(True, True, 12, None),
        )

    @pytest.mark.parametrize(
        ("offered", "agreed"),
        [("9", 9), ("10", 10), ("12", 12), ("15", 12)],
    )
    def test_server_max_window_bits(self, offered: str, agreed: int) -> None:
        # Section 7.1.2.1: the server answers with the same or a smaller value.
        result = self.negotiate(f"permessage-deflate; server_max_window_bits={offered}")
        assert result is not None
        value, params = result
        assert value == f"permessage-deflate; server_max_window_bits={agreed}"
        assert params.server_max_window_bits == agreed

    def test_server_max_window_bits_8_is_accepted(self) -> None:
        # zlib compresses with 9 bits instead, and then never emits a distance over
        # 250 bytes: its output stays within the 256-byte window agreed.
        assert self.negotiate(
            "permessage-deflate; server_max_window_bits=8", "permessage-deflate"
        ) == (
            "permessage-deflate; server_max_window_bits=8",
            DeflateParams(server_max_window_bits=8),
        )

    def test_compressing_for_an_8_bit_window_stays_within_it(self) -> None:
        # What the agreement above relies on: compressing for a peer that allowed
        # 8 bits never refers back more than 256 bytes. Random blocks of 260 bytes,
        # repeated, compress only through matches 260 bytes back: with a wider
        # window they shrink to almost nothing, within 256 bytes not at all.
        import os
        import zlib

        from wsproto.frame_protocol import Opcode, RsvBits

        from anyws._handshake import DeflateSettings
        from anyws._protocol import _MessageLimit, _PerMessageDeflate

        data = os.urandom(260) * 8
        wide = zlib.compressobj(6, zlib.DEFLATED, -15)
        assert len(wide.compress(data) + wide.flush()) < len(data) // 4
        deflate = _PerMessageDeflate(
            False,
            DeflateParams(server_max_window_bits=8),
            DeflateSettings(),
            _MessageLimit(None),
        )
        _, compressed = deflate.frame_outbound(
            None, Opcode.BINARY, RsvBits(False, False, False), data, True
        )
        assert len(compressed) > len(data) * 0.9
        inflater = zlib.decompressobj(-9)
        assert inflater.decompress(compressed + b"\x00\x00\xff\xff") == data

    def test_client_max_window_bits_without_value(self) -> None:
        # Section 7.1.2.2: the client accepts any value; the server picks its own.
        result = self.negotiate("permessage-deflate; client_max_window_bits")
        assert result is not None
        value, params = result
        assert value == (
            "permessage-deflate; server_max_window_bits=12; client_max_window_bits=12"
        )
        assert params.client_max_window_bits == 12

    @pytest.mark.parametrize(
        ("offered", "agreed"), [("8", 8), ("9", 9), ("12", 12), ("15", 12)]
    )
    def test_client_max_window_bits_with_value(self, offered: str, agreed: int) -> None:
        result = self.negotiate(f"permessage-deflate; client_max_window_bits={offered}")
        assert result is not None
        value, params = result
        assert value.endswith(f"; client_max_window_bits={agreed}")
        assert params.client_max_window_bits == agreed

    def test_client_max_window_bits_not_offered_is_not_sent(self) -> None:
        # Section 7.1.2.2: the server must not send it unless the client offered it.
        result = self.negotiate("permessage-deflate; server_max_window_bits=10")
        assert result is not None
        value, params = result
        assert "client_max_window_bits" not in value
        assert params.client_max_window_bits is None

    def test_quoted_window_bits(self) -> None:
        result = self.negotiate('permessage-deflate; server_max_window_bits="10"')
        assert result is not None
        assert result[1].server_max_window_bits == 10

    def test_all_parameters(self) -> None:
        assert self.negotiate(
            "permessage-deflate; server_no_context_takeover; "
            "client_no_context_takeover; server_max_window_bits=10; "
            "client_max_window_bits=11"
        ) == (
            "permessage-deflate; server_no_context_takeover; "
            "client_no_context_takeover; server_max_window_bits=10; "
            "client_max_window_bits=11",
            DeflateParams(True, True, 10, 11),
        )

    @pytest.mark.parametrize(
        "offer",
        [
            # Section 7.1.2: window bits are 8 to 15, without leading zeros.
            "permessage-deflate; server_max_window_bits=7",
            "permessage-deflate; server_max_window_bits=16",
            "permessage-deflate; server_max_window_bits=010",
            "permessage-deflate; server_max_window_bits=abc",
            "permessage-deflate; client_max_window_bits=7",
            "permessage-deflate; client_max_window_bits=16",
            "permessage-deflate; client_max_window_bits=x",
            # server_max_window_bits always needs a value.
            "permessage-deflate; server_max_window_bits",
            # The no_context_takeover parameters have no value.
            "permessage-deflate; server_no_context_takeover=1",
            "permessage-deflate; client_no_context_takeover=true",
        ],
    )
    def test_invalid_values_are_declined(self, offer: str) -> None:
        assert self.negotiate(offer) is None

    @pytest.mark.parametrize(
        "offer",
        [
            "permessage-deflate; server_no_context_takeover; "
            "server_no_context_takeover",
            "permessage-deflate; client_no_context_takeover; "
            "client_no_context_takeover",
            "permessage-deflate; server_max_window_bits=10; server_max_window_bits=10",
            "permessage-deflate; client_max_window_bits; client_max_window_bits=10",
        ],
    )
    def test_duplicate_params_are_declined(self, offer: str) -> None:
        # Section 7: an offer with a parameter twice is declined.
        assert self.negotiate(offer) is None

    def test_unknown_params_are_declined(self) -> None:
        # Section 7: an offer with an unknown parameter is declined.
        assert self.negotiate("permessage-deflate; x-unknown") is None
        assert self.negotiate("permessage-deflate; mem_level=5") is None

    def test_first_acceptable_offer_wins(self) -> None:
        result = self.negotiate(
            "x-webkit-deflate-frame, permessage-deflate; x-unknown, "
            "permessage-deflate; server_max_window_bits=9, "
            "permessage-deflate; client_no_context_takeover"
        )
        assert result == (
            "permessage-deflate; server_max_window_bits=9",
            DeflateParams(server_max_window_bits=9),
        )

    def test_offers_across_header_lines(self) -> None:
        result = self.negotiate(
            "permessage-deflate; server_max_window_bits=7",
            "permessage-deflate; client_no_context_takeover",
        )
        assert result is not None
        assert result[1] == DeflateParams(False, True, 12, None)

    def test_server_settings_cap_the_windows(self) -> None:
        settings = DeflateSettings(server_max_window_bits=10, client_max_window_bits=9)
        result = negotiate_deflate(
            _offer("permessage-deflate; client_max_window_bits"), settings
        )
        assert result is not None
        assert result[1] == DeflateParams(False, False, 10, 9)


def _response(*extra: tuple[str, str], key: str = RFC_KEY) -> Response:
    headers = Headers(
        [
            ("Upgrade", "websocket"),
            ("Connection", "Upgrade"),
            ("Sec-WebSocket-Accept", accept_key(key)),
            *extra,
        ]
    )
    return Response(101, "Switching Protocols", headers)


class TestCheckResponse:
    """RFC 6455 section 4.2.2 and RFC 7692 section 7.1: the client's checks."""

    def test_valid_response(self) -> None:
        assert check_response(_response(), RFC_KEY, None, True) == (None, None)

    def test_header_names_and_tokens_ignore_case(self) -> None:
        response = Response(
            101,
            "Switching Protocols",
            Headers(
                [
                    ("upgrade", "WebSocket"),
                    ("connection", "keep-alive, UPGRADE"),
                    ("sec-websocket-accept", RFC_ACCEPT),
                ]
            ),
        )
        assert check_response(response, RFC_KEY, None, False) == (None, None)

    def test_non_101_raises_invalid_status_with_the_response(self) -> None:
        response = make_response(403, "nope")
        with pytest.raises(InvalidStatus) as info:
            check_response(response, RFC_KEY, None, True)
        assert info.value.response is response
        assert "403" in str(info.value)

    def test_bad_accept(self) -> None:
        response = _response(key="AQIDBAUGBwgJCgsMDQ4PEA==")
        with pytest.raises(InvalidHeaderValue) as info:
            check_response(response, RFC_KEY, None, True)
        assert info.value.name == "Sec-WebSocket-Accept"

    def test_missing_accept(self) -> None:
        response = _response()
        del response.headers["Sec-WebSocket-Accept"]
        with pytest.raises(InvalidHeader, match="missing Sec-WebSocket-Accept"):
            check_response(response, RFC_KEY, None, True)

    def test_duplicate_accept(self) -> None:
        response = _response(("Sec-WebSocket-Accept", RFC_ACCEPT))
        with pytest.raises(InvalidHeader) as info:
            check_response(response, RFC_KEY, None, True)
        assert info.value.name == "Sec-WebSocket-Accept"

    def test_missing_upgrade(self) -> None:
        response = _response()
        del response.headers["Upgrade"]
        with pytest.raises(InvalidUpgrade, match="missing Upgrade header"):
            check_response(response, RFC_KEY, None, True)

    def test_wrong_upgrade(self) -> None:
        response = _response()
        del response.headers["Upgrade"]
        response.headers["Upgrade"] = "h2c"
        with pytest.raises(InvalidUpgrade, match="h2c"):
            check_response(response, RFC_KEY, None, True)

    def test_missing_connection_upgrade(self) -> None:
        response = _response()
        del response.headers["Connection"]
        response.headers["Connection"] = "keep-alive"
        with pytest.raises(InvalidUpgrade) as info:
            check_response(response, RFC_KEY, None, True)
        assert info.value.name == "Connection"

    def test_offered_subprotocol(self) -> None:
        response = _response(("Sec-WebSocket-Protocol", "chat"))
        assert check_response(response, RFC_KEY, ["superchat", "chat"], True) == (
            "chat",
            None,
        )

    def test_unoffered_subprotocol(self) -> None:
        response = _response(("Sec-WebSocket-Protocol", "other"))
        with pytest.raises(NegotiationError, match="other"):
            check_response(response, RFC_KEY, ["chat"], True)

    def test_subprotocol_when_none_offered(self) -> None:
        response = _response(("Sec-WebSocket-Protocol", "chat"))
        with pytest.raises(NegotiationError):
            check_response(response, RFC_KEY, None, True)

    def test_several_subprotocols(self) -> None:
        response = _response(("Sec-WebSocket-Protocol", "chat, superchat"))
        with pytest.raises(InvalidHandshake):
            check_response(response, RFC_KEY, ["chat", "superchat"], True)

    def test_accepted_deflate(self) -> None:
        response = _response(
            (
                "Sec-WebSocket-Extensions",
                "permessage-deflate; server_no_context_takeover; "
                "server_max_window_bits=10; client_max_window_bits=11",
            )
        )
        assert check_response(response, RFC_KEY, None, True) == (
            None,
            DeflateParams(True, False, 10, 11),
        )

    def test_unoffered_extension(self) -> None:
        response = _response(("Sec-WebSocket-Extensions", "x-webkit-deflate-frame"))
        with pytest.raises(NegotiationError, match="x-webkit-deflate-frame"):
            check_response(response, RFC_KEY, None, True)

    def test_deflate_when_compression_disabled(self) -> None:
        response = _response(("Sec-WebSocket-Extensions", "permessage-deflate"))
        with pytest.raises(NegotiationError, match="permessage-deflate"):
            check_response(response, RFC_KEY, None, False)

    def test_deflate_accepted_twice(self) -> None:
        response = _response(
            ("Sec-WebSocket-Extensions", "permessage-deflate"),
            ("Sec-WebSocket-Extensions", "permessage-deflate"),
        )
        with pytest.raises(NegotiationError):
            check_response(response, RFC_KEY, None, True)

    def test_client_max_window_bits_without_value_in_response(self) -> None:
        # Section 7.1.2.2: only an offer may carry it without a value.
        response = _response(
            ("Sec-WebSocket-Extensions", "permessage-deflate; client_max_window_bits")
        )
        with pytest.raises(NegotiationError):
            check_response(response, RFC_KEY, None, True)

    def test_unknown_deflate_parameter_in_response(self) -> None:
        response = _response(
            ("Sec-WebSocket-Extensions", "permessage-deflate; x-unknown")
        )
        with pytest.raises(NegotiationError):
            check_response(response, RFC_KEY, None, True)

    def test_client_max_window_bits_8_is_accepted(self) -> None:
        # zlib's 9-bit output fits an 8-bit window (see the server-side test).
        response = _response(
            ("Sec-WebSocket-Extensions", "permessage-deflate; client_max_window_bits=8")
        )
        _, params = check_response(response, RFC_KEY, None, True)
        assert params == DeflateParams(client_max_window_bits=8)


# --------------------------------------------------------------------------
# WebSocket URIs
# --------------------------------------------------------------------------


class TestParseURI:
    def test_ws(self) -> None:
        uri = parse_uri("ws://example.com/chat")
        assert uri == anyws.WebSocketURI(False, "example.com", 80, "/chat", None)
        assert uri.host_header == "example.com"
        assert str(uri) == "ws://example.com/chat"

    def test_wss(self) -> None:
        uri = parse_uri("wss://example.com/chat")
        assert uri.secure
        assert uri.port == 443
        assert uri.host_header == "example.com"
        assert str(uri) == "wss://example.com/chat"

    def test_scheme_is_case_insensitive(self) -> None:
        assert parse_uri("WSS://Example.COM/").secure

    def test_explicit_port(self) -> None:
        uri = parse_uri("ws://example.com:8765/")
        assert uri.port == 8765
        assert uri.host_header == "example.com:8765"

    def test_explicit_default_port_is_left_out_of_host_header(self) -> None:
        assert parse_uri("ws://example.com:80/").host_header == "example.com"
        assert parse_uri("wss://example.com:443/").host_header == "example.com"
        assert parse_uri("wss://example.com:80/").host_header == "example.com:80"

    def test_ipv4(self) -> None:
        uri = parse_uri("ws://127.0.0.1:8765/")
        assert uri.host == "127.0.0.1"
        assert uri.port == 8765
        assert uri.host_header == "127.0.0.1:8765"

    def test_ipv6_literal(self) -> None:
        uri = parse_uri("ws://[::1]:8765/")
        assert uri.host == "::1"
        assert uri.port == 8765
        assert uri.host_header == "[::1]:8765"
        assert str(uri) == "ws://[::1]:8765/"

    def test_ipv6_literal_default_port(self) -> None:
        uri = parse_uri("wss://[2001:db8::1]/")
        assert uri.host == "2001:db8::1"
        assert uri.port == 443
        assert uri.host_header == "[2001:db8::1]"

    def test_path_and_query_make_the_target(self) -> None:
        uri = parse_uri("ws://example.com/a/b?x=1&y=2")
        assert uri.path == "/a/b?x=1&y=2"

    @pytest.mark.parametrize("text", ["ws://example.com", "ws://example.com:81"])
    def test_empty_path_is_slash(self, text: str) -> None:
        assert parse_uri(text).path == "/"

    def test_query_without_path(self) -> None:
        assert parse_uri("ws://example.com?x=1").path == "/?x=1"

    def test_user_info(self) -> None:
        uri = parse_uri("ws://user:p%40ss@example.com/")
        assert uri.user_info == ("user", "p@ss")
        assert uri.host == "example.com"
        # The credentials never reach the Host header or the target.
        assert uri.host_header == "example.com"
        assert uri.path == "/"

    def test_user_without_password(self) -> None:
        assert parse_uri("ws://user@example.com/").user_info == ("user", "")

    def test_no_user_info(self) -> None:
        assert parse_uri("ws://example.com/").user_info is None

    def test_non_ascii_host_is_idna_encoded(self) -> None:
        uri = parse_uri("ws://bücher.example/")
        assert uri.host == "xn--bcher-kva.example"
        assert uri.host_header == "xn--bcher-kva.example"

    def test_non_ascii_path_and_query_are_percent_encoded(self) -> None:
        uri = parse_uri("ws://example.com/café?q=é")
        assert uri.path == "/caf%C3%A9?q=%C3%A9"

    def test_percent_encoding_is_kept(self) -> None:
        assert parse_uri("ws://example.com/a%20b?c=%2F").path == "/a%20b?c=%2F"

    @pytest.mark.parametrize(
        ("text", "problem"),
        [
            ("http://example.com/", "scheme"),
            ("https://example.com/", "scheme"),
            ("example.com/", "scheme"),
            ("ws:///chat", "host"),
            ("ws://:8765/", "host"),
            ("ws://h:99999/", "port"),
            ("ws://h:x/", "port"),
            ("ws://h:-1/", "port"),
            ("ws://example.com/#section", "fragment"),
            ("ws://[::1/", "IPv6"),
        ],
    )
    def test_invalid(self, text: str, problem: str) -> None:
        with pytest.raises(InvalidURI, match=problem) as info:
            parse_uri(text)
        assert info.value.uri == text
        assert text in str(info.value)

    @pytest.mark.parametrize("value", [None, 42, b"ws://example.com/"])
    def test_not_a_string(self, value: object) -> None:
        with pytest.raises(InvalidURI, match="string"):
            parse_uri(value)  # type: ignore[arg-type]

    def test_invalid_uri_is_a_websocket_exception(self) -> None:
        assert issubclass(InvalidURI, anyws.WebSocketException)

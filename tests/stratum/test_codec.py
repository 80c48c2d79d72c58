"""The sans-IO codec: framing bytes into lines, parsing and encoding messages."""

from __future__ import annotations

import json

import pytest
from hypothesis import given
from hypothesis import strategies as st

from otedama.stratum.codec import (
    CodecError,
    LineFramer,
    LineTooLong,
    Notification,
    Request,
    Response,
    encode_error,
    encode_notification,
    encode_request,
    encode_response,
    encode_result_false,
    encode_result_true,
    parse_message,
)
from otedama.stratum.errors import DUPLICATE


def test_framer_splits_lines_and_keeps_the_partial_tail() -> None:
    framer = LineFramer()
    assert framer.feed(b'{"a":1}\n{"b"') == [b'{"a":1}']
    assert framer.buffered == 4
    assert framer.feed(b":2}\r\n\n  \n") == [b'{"b":2}']
    assert framer.buffered == 0


def test_framer_reports_an_over_long_line_and_recovers_after_its_newline() -> None:
    framer = LineFramer(max_line=10)
    assert framer.feed(b"x" * 8) == []
    # The line grows past the limit before its newline arrives: dropped, reported once.
    assert framer.feed(b"y" * 8) == []
    assert framer.buffered == 0
    assert framer.feed(b"zz\nok\n") == [LineTooLong(18), b"ok"]


def test_framer_reports_an_over_long_complete_line() -> None:
    framer = LineFramer(max_line=4)
    assert framer.feed(b"12345\n1234\n") == [LineTooLong(5), b"1234"]


@given(
    st.lists(
        st.binary(min_size=1, max_size=40).filter(
            lambda b: b"\n" not in b and b.strip() and not b.endswith(b"\r")
        ),
        max_size=8,
    ),
    st.data(),
)
def test_framer_output_does_not_depend_on_how_the_stream_is_cut(
    lines: list[bytes], data: st.DataObject
) -> None:
    stream = b"".join(line + b"\n" for line in lines)
    cuts = sorted(data.draw(st.lists(st.integers(0, len(stream)), max_size=6)))
    framer = LineFramer(max_line=64)
    out: list[bytes | LineTooLong] = []
    start = 0
    for cut in [*cuts, len(stream)]:
        out.extend(framer.feed(stream[start:cut]))
        start = cut
    assert out == lines


def test_parse_request_notification_and_response() -> None:
    assert parse_message(b'{"id": 4, "method": "mining.submit", "params": ["a"]}') == Request(
        4, "mining.submit", ["a"]
    )
    assert parse_message(b'{"id":null,"method":"mining.notify","params":[1]}') == Notification(
        "mining.notify", [1]
    )
    assert parse_message(b'{"result":true,"error":null,"id":2}') == Response(2, True, None)
    assert parse_message(b'{"id":"x","method":"mining.subscribe"}') == Request(
        "x", "mining.subscribe", []
    )


@pytest.mark.parametrize(
    ("line", "fragment"),
    [
        (b"{not json", "invalid JSON"),
        (b"[1,2]", "JSON object"),
        (b'{"id":1,"method":5}', "method must be a string"),
        (b'{"id":1,"method":"m","params":{"a":1}}', "params of m must be a JSON array"),
        (b'{"id":[1],"method":"m"}', "message id"),
        (b'{"id":1}', "neither a method nor a result"),
        (b"\xff\xfe", "invalid JSON"),
    ],
)
def test_parse_rejects_malformed_lines_with_a_message(line: bytes, fragment: str) -> None:
    with pytest.raises(CodecError, match=fragment):
        parse_message(line)


def test_codec_error_keeps_the_id_when_it_was_readable() -> None:
    with pytest.raises(CodecError) as info:
        parse_message(b'{"id":7,"method":"m","params":3}')
    assert info.value.msg_id == 7


def test_encoders_write_one_compact_json_line_each() -> None:
    assert encode_request(1, "mining.subscribe", ["x"]) == (
        b'{"id":1,"method":"mining.subscribe","params":["x"]}\n'
    )
    assert encode_notification("mining.set_difficulty", [0.001]) == (
        b'{"id":null,"method":"mining.set_difficulty","params":[0.001]}\n'
    )
    assert encode_response("a", [1]) == b'{"id":"a","result":[1],"error":null}\n'
    assert json.loads(encode_error(3, 20, "Unknown method")) == {
        "id": 3,
        "result": None,
        "error": [20, "Unknown method", None],
    }


@pytest.mark.parametrize("msg_id", [0, 4, 123456789, "abc", 'q"uote', None])
def test_fast_submit_replies_are_valid_json(msg_id: int | str | None) -> None:
    assert json.loads(encode_result_true(msg_id)) == {"id": msg_id, "result": True, "error": None}
    assert json.loads(encode_result_false(msg_id, DUPLICATE.array)) == {
        "id": msg_id,
        "result": False,
        "error": [22, "Duplicate", None],
    }


def test_client_side_round_trip_of_a_reply() -> None:
    line = encode_response(9, [[["mining.notify", "ab"]], "01020304", 8])
    message = parse_message(line.rstrip(b"\n"))
    assert message == Response(9, [[["mining.notify", "ab"]], "01020304", 8], None)

"""The devnet's JSON-RPC framing: Core's reply shapes and amounts with 8 decimals."""

from __future__ import annotations

from decimal import Decimal

import pytest

from otedama.devnet.jsonrpc import (
    Amount,
    BadCall,
    RpcCall,
    RpcFault,
    encode_json,
    error_reply,
    parse_body,
    result_reply,
)
from otedama.devnet.rpc import parse_amount


@pytest.mark.parametrize(
    ("sats", "text"),
    [(5_000_000_000, "50.00000000"), (1, "0.00000001"), (-1_000, "-0.00001000"), (0, "0.00000000")],
)
def test_amounts_are_written_as_btc_with_8_decimals(sats: int, text: str) -> None:
    assert encode_json({"amount": Amount(sats)}) == f'{{"amount":{text}}}'


def test_json_is_compact_like_cores() -> None:
    assert encode_json({"a": [1, None, True, "x"], "b": 0.5}) == '{"a":[1,null,true,"x"],"b":0.5}'


@pytest.mark.parametrize(
    ("value", "sats"),
    [(Decimal("1.5"), 150_000_000), ("0.00000001", 1), (2, 200_000_000), ("21000000", 21 * 10**14)],
)
def test_amount_parameters_become_exact_satoshis(value: object, sats: int) -> None:
    assert parse_amount(value) == sats


@pytest.mark.parametrize("value", ["0.000000001", "-1", "21000000.00000001", "abc", None, True])
def test_bad_amount_parameters_are_type_errors(value: object) -> None:
    with pytest.raises(RpcFault) as caught:
        parse_amount(value)
    assert caught.value.code == -3


def test_a_version_1_request_is_answered_with_result_error_and_id() -> None:
    parsed = parse_body(b'{"method": "getblockcount", "params": [], "id": 7}')
    assert not isinstance(parsed, RpcFault)
    (call,), batch = parsed
    assert isinstance(call, RpcCall) and not batch and not call.v2
    assert result_reply(call, 3) == {"result": 3, "error": None, "id": 7}
    assert error_reply(RpcFault(-8, "bad"), call) == (
        500,
        {"result": None, "error": {"code": -8, "message": "bad"}, "id": 7},
    )
    assert error_reply(RpcFault(-32601, "Method not found"), call)[0] == 404


def test_a_version_2_error_is_http_200_without_result() -> None:
    parsed = parse_body(b'{"jsonrpc": "2.0", "method": "x", "id": "a"}')
    assert not isinstance(parsed, RpcFault)
    (call,), _ = parsed
    assert isinstance(call, RpcCall)
    assert error_reply(RpcFault(-1, "no"), call) == (
        200,
        {"jsonrpc": "2.0", "error": {"code": -1, "message": "no"}, "id": "a"},
    )


def test_invalid_requests_and_bodies_get_cores_codes() -> None:
    fault = parse_body(b"[1")
    assert isinstance(fault, RpcFault) and fault.code == -32700
    parsed = parse_body(
        b'[{"id": 1}, 5, {"method": 3}, {"jsonrpc": 2, "method": "x"}, {"jsonrpc": "2.1"}]'
    )
    assert not isinstance(parsed, RpcFault)
    calls, batch = parsed
    assert batch
    assert [c.fault.message for c in calls if isinstance(c, BadCall)] == [
        "Missing method",
        "Invalid Request object",
        "Method must be a string",
        "jsonrpc field must be a string",
        "JSON-RPC version not supported",
    ]
    assert all(c.fault.code == -32600 for c in calls if isinstance(c, BadCall))


def test_an_invalid_request_is_answered_with_its_id_in_its_versions_style() -> None:
    """Core reads the id, then the version, then the method (``request.cpp``): the error
    for an invalid request echoes the id, in 2.0 style once the version said 2.0, with
    HTTP 400 either way; a request without an id gets a reply without one."""
    parsed = parse_body(
        b'[{"params": [], "id": 3}, {"jsonrpc": "2.0", "id": "b"}, {"jsonrpc": "3.0"},'
        b' {"jsonrpc": "2.0"}, {"method": "getblockcount"}]'
    )
    assert not isinstance(parsed, RpcFault)
    (one, two, unknown, note, no_id), _ = parsed
    assert isinstance(one, BadCall) and isinstance(two, BadCall)
    assert isinstance(unknown, BadCall) and isinstance(note, BadCall)
    assert error_reply(one.fault, one) == (
        400,
        {"result": None, "error": {"code": -32600, "message": "Missing method"}, "id": 3},
    )
    assert error_reply(two.fault, two) == (
        400,
        {"jsonrpc": "2.0", "error": {"code": -32600, "message": "Missing method"}, "id": "b"},
    )
    assert error_reply(unknown.fault, unknown) == (
        400,
        {"result": None, "error": {"code": -32600, "message": "JSON-RPC version not supported"}},
    )
    assert note.notification and not one.notification and not unknown.notification
    assert isinstance(no_id, RpcCall) and not no_id.has_id and not no_id.notification
    assert result_reply(no_id, 0) == {"result": 0, "error": None}
    assert error_reply(RpcFault(-32700, "Parse error"), None) == (
        500,
        {"result": None, "error": {"code": -32700, "message": "Parse error"}, "id": None},
    )

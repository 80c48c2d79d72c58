"""JSON-RPC framing against Bitcoin Core's recorded replies: bytes in, values or errors out."""

from __future__ import annotations

import json
from decimal import Decimal
from pathlib import Path
from typing import Any

import pytest
from hypothesis import given
from hypothesis import strategies as st

from otedama.chain.rpcjson import Amount
from otedama.node.rpc import (
    NodeError,
    RpcAuthError,
    RpcConnectionError,
    RpcEndpoint,
    RpcError,
    RpcProtocolError,
    backoff_delay,
    basic_authorization,
    decode_reply,
    encode_request,
)

from .stub_bitcoind import RPC_ERRORS

URL = "http://127.0.0.1:18443"


def _decode(case: dict[str, Any]) -> Any:
    return decode_reply(case["http_status"], case["response_body"].encode(), URL, "m")


def _error_cases() -> list[tuple[str, dict[str, Any]]]:
    """Every recorded reply that carries a JSON-RPC error object, in both styles."""
    found = []
    for name, case in RPC_ERRORS.items():
        variants = {k: v for k, v in case.items() if k.startswith("jsonrpc_")} or {"": case}
        for style, variant in variants.items():
            if not isinstance(variant, dict) or "response_body" not in variant:
                continue
            body = variant["response_body"]
            if body and json.loads(body).get("error") is not None:
                found.append((f"{name}{'/' + style if style else ''}", variant))
    return found


ERROR_CASES = _error_cases()


def test_vectors_hold_every_error_the_client_must_map() -> None:
    codes = {json.loads(v["response_body"])["error"]["code"] for _, v in ERROR_CASES}
    assert {-1, -8, -9, -10, -32601, -32700} <= codes
    statuses = {v["http_status"] for _, v in ERROR_CASES}
    assert statuses == {200, 404, 500}


@pytest.mark.parametrize(("name", "case"), ERROR_CASES, ids=[n for n, _ in ERROR_CASES])
def test_error_replies_become_rpc_errors_with_cores_code_and_message(
    name: str, case: dict[str, Any]
) -> None:
    expected = json.loads(case["response_body"])["error"]
    with pytest.raises(RpcError) as info:
        _decode(case)
    assert info.value.code == expected["code"]
    assert info.value.message == expected["message"]
    assert str(expected["code"]) in str(info.value)


@pytest.mark.parametrize("name", ["wrong_password", "no_authorization_header"])
def test_401_with_empty_body_is_an_auth_error_naming_url_and_settings(name: str) -> None:
    case = RPC_ERRORS[name]
    assert case["response_body"] == ""
    with pytest.raises(RpcAuthError) as info:
        _decode(case)
    message = str(info.value)
    assert URL in message and "rpcuser/rpcpassword" in message and "cookie" in message
    assert info.value.url == URL


def test_403_is_an_auth_error_pointing_at_rpcallowip() -> None:
    with pytest.raises(RpcAuthError, match="rpcallowip"):
        decode_reply(403, b"", URL, "getblockcount")


def test_successful_replies_of_both_styles_give_the_result() -> None:
    genesis = RPC_ERRORS["getblocktemplate_at_genesis"]
    for style in ("jsonrpc_1.0", "jsonrpc_2.0"):
        result = _decode(genesis[style])
        assert result["height"] == 1
        assert result["coinbasevalue"] == 5_000_000_000


def test_null_result_of_a_1_0_reply_is_none() -> None:
    assert decode_reply(200, b'{"result":null,"error":null,"id":1}\n', URL, "submitblock") is None


def test_fractions_parse_as_exact_decimals() -> None:
    info = _decode(RPC_ERRORS["getblockchaininfo_at_genesis"])
    assert info["difficulty"] == Decimal("4.656542373906925e-10")
    assert isinstance(info["verificationprogress"], Decimal)
    assert decode_reply(200, b'{"result":0.1}', URL, "getbalance") == Decimal("0.1")


@pytest.mark.parametrize(
    ("status", "body"),
    [
        (200, b"<html>proxy says hello</html>"),
        (503, b"Work queue depth exceeded"),
        (502, b""),
        (500, b"\xff\xfe not utf-8"),
        (200, b'{"id":1}'),
        (200, b"[1, 2]"),
        (200, b'"just a string"'),
        (200, b'{"result":null,"error":"oops","id":1}'),
        (200, b'{"error":{"code":"x","message":"m"},"id":1}'),
        (200, b'{"error":{"code":true,"message":"m"},"id":1}'),
    ],
)
def test_replies_that_are_not_json_rpc_are_protocol_errors(status: int, body: bytes) -> None:
    with pytest.raises(RpcProtocolError) as info:
        decode_reply(status, body, URL, "getblockcount")
    assert URL in str(info.value) or "error object" in str(info.value)


JSON = st.recursive(
    st.none() | st.booleans() | st.integers() | st.text(max_size=20),
    lambda inner: st.lists(inner, max_size=4) | st.dictionaries(st.text(max_size=8), inner),
    max_leaves=12,
)


@given(st.integers(100, 599), st.binary(max_size=200))
def test_any_bytes_give_a_result_or_a_node_error(status: int, body: bytes) -> None:
    try:
        decode_reply(status, body, URL, "m")
    except NodeError as e:
        assert str(e)  # every failure is a NodeError that says what went wrong


@given(st.integers(100, 599), st.dictionaries(st.sampled_from(["result", "error", "id"]), JSON))
def test_any_json_object_gives_a_result_or_a_node_error(status: int, reply: dict[str, Any]) -> None:
    try:
        decode_reply(status, json.dumps(reply).encode(), URL, "m")
    except NodeError as e:
        assert str(e)  # every failure is a NodeError that says what went wrong


def test_request_is_json_rpc_2_with_exact_amounts() -> None:
    body = encode_request("sendmany", ["", {"bcrt1qx": Amount(100_000)}, 1, "batch 7"], 3)
    assert body == (
        b'{"jsonrpc":"2.0","id":3,"method":"sendmany",'
        b'"params":["",{"bcrt1qx":0.00100000},1,"batch 7"]}'
    )
    assert json.loads(body, parse_float=Decimal)["params"][1]["bcrt1qx"] == Decimal("0.001")


def test_endpoint_rejects_urls_it_cannot_use() -> None:
    with pytest.raises(ValueError, match="ftp://x"):
        RpcEndpoint("ftp://x")
    with pytest.raises(ValueError, match="not in the url"):
        RpcEndpoint("http://alice:secret@127.0.0.1:8332")
    with pytest.raises(ValueError, match="port is not a number"):
        RpcEndpoint("http://127.0.0.1:eight")
    with pytest.raises(ValueError, match="both user and password"):
        RpcEndpoint(URL, user="alice")
    with pytest.raises(ValueError, match="not both"):
        RpcEndpoint(URL, user="alice", password="pw", cookie_file="/tmp/.cookie")


def test_endpoint_repr_does_not_show_the_password() -> None:
    endpoint = RpcEndpoint(URL, user="alice", password="s3cret")
    assert "s3cret" not in repr(endpoint)
    assert endpoint.static_authorization() == basic_authorization("alice:s3cret")
    assert basic_authorization("alice:s3cret") == b"Basic YWxpY2U6czNjcmV0"


def test_cookie_file_is_read_as_user_and_password(tmp_path: Path) -> None:
    cookie = tmp_path / ".cookie"
    cookie.write_text("__cookie__:abc123\n")
    endpoint = RpcEndpoint(URL, cookie_file=str(cookie))
    assert endpoint.static_authorization() is None
    assert endpoint.read_cookie() == basic_authorization("__cookie__:abc123")


def test_missing_cookie_file_is_a_connection_error_naming_the_path(tmp_path: Path) -> None:
    path = tmp_path / "regtest" / ".cookie"
    with pytest.raises(RpcConnectionError, match=str(path)):
        RpcEndpoint(URL, cookie_file=str(path)).read_cookie()


def test_malformed_cookie_file_is_an_auth_error(tmp_path: Path) -> None:
    cookie = tmp_path / ".cookie"
    cookie.write_text("no colon here")
    with pytest.raises(RpcAuthError, match="user:password"):
        RpcEndpoint(URL, cookie_file=str(cookie)).read_cookie()


def test_backoff_doubles_from_the_initial_delay_up_to_the_cap() -> None:
    assert [backoff_delay(n, 1.0, 30.0) for n in range(0, 8)] == [
        0.0,
        1.0,
        2.0,
        4.0,
        8.0,
        16.0,
        30.0,
        30.0,
    ]
    assert backoff_delay(10_000, 0.5, 60.0) == 60.0

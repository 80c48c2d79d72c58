"""Numbers from RPC replies: bounded before they become exact, one BTC -> satoshi rule."""

from __future__ import annotations

from decimal import Decimal
from typing import Any

import pytest
from hypothesis import example, given
from hypothesis import strategies as st

from otedama.chain.rpcjson import (
    MAX_EXPONENT,
    MAX_MONEY,
    MAX_NUMBER_CHARS,
    Amount,
    AmountError,
    NumberError,
    btc_to_sats,
    decode_json,
    encode_json,
)
from otedama.node.rpc import RpcProtocolError, decode_reply
from otedama.node.wallet import btc_to_satoshis

URL = "http://127.0.0.1:18443"

#: JSON number literals of any length and exponent, as a daemon (or an impostor) may send.
NUMBER_TEXT = st.builds(
    lambda sign, digits, fraction, exponent: (
        f"{sign}{digits}{'.' + fraction if fraction else ''}"
        f"{'e' + str(exponent) if exponent is not None else ''}"
    ),
    st.sampled_from(["", "-"]),
    st.from_regex(r"\A(0|[1-9][0-9]{0,120})\Z"),
    st.from_regex(r"\A[0-9]{0,40}\Z"),
    st.none() | st.integers(-(10**12), 10**12),
)


@given(NUMBER_TEXT)
@example("1e999999999")
@example("1e999990")
@example("-1e-999999999")
@example("9" * 5000)
def test_any_number_in_a_reply_is_refused_or_becomes_a_bounded_amount(text: str) -> None:
    """Every number either is refused while parsing or converts within 21 M BTC (or is
    refused as an amount): nothing huge is ever built (an unbounded one would hang here)."""
    try:
        value = decode_json(f'{{"amount":{text}}}')["amount"]
    except ValueError:
        assert len(text) > MAX_NUMBER_CHARS or "e" in text
        return
    if isinstance(value, Decimal) and value:
        assert abs(value.adjusted()) <= MAX_EXPONENT
    try:
        sats = btc_to_sats(value)
    except AmountError:
        return
    assert -MAX_MONEY <= sats <= MAX_MONEY
    assert Decimal(sats) == Decimal(text) * 100_000_000


@given(st.integers(-MAX_MONEY, MAX_MONEY))
def test_amounts_written_as_btc_come_back_as_the_same_satoshis(sats: int) -> None:
    text = encode_json({"amount": Amount(sats)})
    assert btc_to_sats(decode_json(text)["amount"]) == sats


@pytest.mark.parametrize(
    ("amount", "sats"),
    [
        (Decimal("50.00000000"), 5_000_000_000),
        (Decimal("-0.001"), -100_000),
        (3, 300_000_000),
        ("0.00000001", 1),
        (0.1, 10_000_000),
        (Decimal("0E-100000"), 0),
        ("21000000", MAX_MONEY),
    ],
)
def test_btc_amounts_convert_exactly(amount: Any, sats: int) -> None:
    assert btc_to_sats(amount) == sats


@pytest.mark.parametrize(
    "amount",
    [
        Decimal("1e999990"),  # used to become a 1,000,000-digit integer
        Decimal("1e-999999999"),
        "21000000.00000001",
        "0.000000001",
        "x" * 1000,
        True,
        None,
        Decimal("NaN"),
        float("inf"),
    ],
)
def test_what_is_not_an_amount_is_refused(amount: Any) -> None:
    with pytest.raises(AmountError):
        btc_to_sats(amount)


def test_a_huge_balance_from_the_wallet_is_a_protocol_error() -> None:
    with pytest.raises(RpcProtocolError, match="out of range"):
        btc_to_satoshis(Decimal("1e999990"))


@pytest.mark.parametrize(
    "number", ["1e999999999", "1" * (MAX_NUMBER_CHARS + 1), f"1e{MAX_EXPONENT + 1}", "NaN"]
)
def test_a_reply_with_an_unbounded_number_is_a_protocol_error(number: str) -> None:
    body = f'{{"result":{number},"error":null,"id":1}}'.encode()
    with pytest.raises(RpcProtocolError, match="not a JSON-RPC reply"):
        decode_reply(200, body, URL, "getbalance")


def test_numbers_within_the_bounds_stay_exact() -> None:
    reply = decode_json('{"progress":0.9999999871234567,"height":840000,"difficulty":8.3e13}')
    assert reply == {
        "progress": Decimal("0.9999999871234567"),
        "height": 840000,
        "difficulty": Decimal("8.3e13"),
    }


def test_number_errors_are_value_errors() -> None:
    with pytest.raises(NumberError):
        decode_json("[1e999999999]")

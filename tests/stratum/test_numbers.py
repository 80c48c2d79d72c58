"""Bounded numbers from miners: every input is refused or turned exact, and quickly."""

from __future__ import annotations

from decimal import Decimal
from fractions import Fraction

import pytest
from hypothesis import given
from hypothesis import strategies as st

from otedama.stratum.codec import CodecError, parse_message
from otedama.stratum.numbers import (
    MAX_DECIMAL_CHARS,
    MAX_EXPONENT,
    NumberError,
    bounded_decimal,
    bounded_number,
    json_int,
)
from otedama.stratum.session import parse_password_difficulty


@pytest.mark.parametrize(
    ("text", "value"),
    [
        ("0.5", Fraction(1, 2)),
        ("4096", Fraction(4096)),
        ("9.6e-07", Fraction(96, 10**8)),
        (".5", Fraction(1, 2)),
        ("5.", Fraction(5)),
        ("+2E3", Fraction(2000)),
        ("0", Fraction(0)),
        ("1e60", Fraction(10**60)),
    ],
)
def test_short_decimals_are_exact(text: str, value: Fraction) -> None:
    assert bounded_decimal(text) == value


@pytest.mark.parametrize(
    "text",
    [
        "1e999999999",
        "1e10000000",
        "1e61",
        "1e-61",
        "9" * 41,
        "1/3",
        "inf",
        "nan",
        "",
        ".",
        "e5",
        "-1",
        "0x10",
        "1e",
        "1_000",
    ],
)
def test_huge_or_malformed_decimals_are_refused(text: str) -> None:
    with pytest.raises(NumberError):
        bounded_decimal(text)


@given(st.text(max_size=200))
def test_any_text_is_refused_or_a_bounded_exact_value(text: str) -> None:
    try:
        value = bounded_decimal(text)
    except NumberError:
        return
    assert len(text) <= MAX_DECIMAL_CHARS
    assert 0 <= value <= 10**MAX_EXPONENT * 10
    assert value == Fraction(Decimal(text))


@given(
    st.decimals(
        allow_nan=False,
        allow_infinity=False,
        min_value=Decimal("1e-30"),
        max_value=Decimal("1e30"),
        places=None,
    )
)
def test_decimals_that_fit_round_trip(number: Decimal) -> None:
    text = str(number)
    if len(text) > MAX_DECIMAL_CHARS:
        return
    assert bounded_decimal(text) == Fraction(number)


@given(st.integers(min_value=0, max_value=10**6), st.integers(min_value=-(10**9), max_value=10**9))
def test_exponents_far_out_of_range_are_refused_without_building_them(
    mantissa: int, exponent: int
) -> None:
    text = f"{mantissa}e{exponent}"
    # The bound is on the value's size (about 10**magnitude), not the written exponent:
    # "10e-61" is 1e-60 and fits.
    magnitude = len(str(mantissa)) - 1 + exponent
    try:
        value = bounded_decimal(text)
    except NumberError:
        assert mantissa != 0 and abs(magnitude) > MAX_EXPONENT
        return
    if mantissa == 0:
        assert value == 0
    else:
        assert abs(magnitude) <= MAX_EXPONENT
        assert value == Fraction(mantissa) * Fraction(10) ** exponent


@given(st.one_of(st.integers(), st.floats(), st.booleans(), st.none(), st.text(max_size=5)))
def test_json_numbers_are_positive_and_capped_or_none(value: object) -> None:
    high = Fraction(2**40)
    result = bounded_number(value, high)
    if result is not None:
        assert 0 < result <= high


def test_json_int_refuses_long_literals() -> None:
    assert json_int("1" * 40) == int("1" * 40)
    with pytest.raises(NumberError):
        json_int("1" * 41)


def test_a_line_with_a_page_long_integer_is_a_codec_error() -> None:
    line = b'{"id":1,"method":"mining.suggest_difficulty","params":[' + b"9" * 4000 + b"]}"
    with pytest.raises(CodecError):
        parse_message(line)


@given(st.text(max_size=80))
def test_password_parser_never_raises_anything_but_a_stratum_error(password: str) -> None:
    from otedama.stratum.errors import StratumError

    try:
        value = parse_password_difficulty(password)
    except StratumError as exc:
        assert len(exc.message) < 200
        return
    assert value is None or value > 0

"""Compact bits, targets and difficulty."""

from __future__ import annotations

from decimal import Decimal
from fractions import Fraction

import pytest
from hypothesis import given
from hypothesis import strategies as st

from otedama.chain.target import (
    DIFF1_SCRYPT,
    DIFF1_SHA256D,
    MAX_TARGET,
    bits_to_target,
    decode_compact,
    difficulty_to_target,
    hash_difficulty,
    hash_to_int,
    target_to_bits,
    target_to_difficulty,
)


def test_diff1_constants_are_the_pool_convention() -> None:
    assert DIFF1_SHA256D == 0x00000000FFFF0000000000000000000000000000000000000000000000000000
    assert DIFF1_SCRYPT == DIFF1_SHA256D * 65536
    assert bits_to_target(0x1D00FFFF) == DIFF1_SHA256D


# (compact, decoded target, negative, overflow, re-encoded compact) from Bitcoin Core's
# src/test/arith_uint256_tests.cpp "bignum_SetCompact".
CORE_COMPACT_CASES = [
    (0x00000000, 0, False, False, 0x00000000),
    (0x00123456, 0, False, False, 0x00000000),
    (0x01003456, 0, False, False, 0x00000000),
    (0x02000056, 0, False, False, 0x00000000),
    (0x03000000, 0, False, False, 0x00000000),
    (0x04000000, 0, False, False, 0x00000000),
    (0x00923456, 0, False, False, 0x00000000),
    (0x01803456, 0, False, False, 0x00000000),
    (0x02800056, 0, False, False, 0x00000000),
    (0x03800000, 0, False, False, 0x00000000),
    (0x04800000, 0, False, False, 0x00000000),
    (0x01123456, 0x12, False, False, 0x01120000),
    (0x02123456, 0x1234, False, False, 0x02123400),
    (0x03123456, 0x123456, False, False, 0x03123456),
    (0x04123456, 0x12345600, False, False, 0x04123456),
    (0x05009234, 0x92340000, False, False, 0x05009234),
    (
        0x20123456,
        0x1234560000000000000000000000000000000000000000000000000000000000,
        False,
        False,
        0x20123456,
    ),
]


@pytest.mark.parametrize(("bits", "target", "negative", "overflow", "again"), CORE_COMPACT_CASES)
def test_compact_decoding_and_encoding_match_bitcoin_core(
    bits: int, target: int, negative: bool, overflow: bool, again: int
) -> None:
    assert decode_compact(bits) == (target, negative, overflow)
    assert target_to_bits(target) == again


def test_set_sign_bit_with_mantissa_is_negative_and_refused() -> None:
    assert decode_compact(0x04923456) == (0x12345600, True, False)
    assert decode_compact(0x01FEDCBA) == (0x7E, True, False)
    with pytest.raises(ValueError, match="negative"):
        bits_to_target(0x04923456)


def test_compact_overflowing_256_bits_is_refused() -> None:
    assert decode_compact(0xFF123456)[2] is True
    assert decode_compact(0x22000001)[2] is False  # size 34, one-byte mantissa fits
    assert decode_compact(0x21010000)[2] is True
    with pytest.raises(ValueError, match="overflows"):
        bits_to_target(0xFF123456)


def test_target_with_high_bit_in_mantissa_gets_an_extra_size_byte() -> None:
    assert target_to_bits(0x80) == 0x02008000
    assert target_to_bits((1 << 255) - 1) == 0x207FFFFF


@given(st.integers(min_value=0, max_value=MAX_TARGET))
def test_encoding_rounds_down_and_is_stable(target: int) -> None:
    bits = target_to_bits(target)
    decoded = bits_to_target(bits)
    assert decoded <= target
    assert target_to_bits(decoded) == bits


def test_difficulty_one_and_fractional_difficulties_are_exact() -> None:
    assert difficulty_to_target(1) == DIFF1_SHA256D
    assert difficulty_to_target(0.001) == DIFF1_SHA256D * 1000
    assert difficulty_to_target("0.001") == DIFF1_SHA256D * 1000
    assert difficulty_to_target(Decimal("0.001")) == DIFF1_SHA256D * 1000
    assert difficulty_to_target(Fraction(1, 1000)) == DIFF1_SHA256D * 1000
    assert difficulty_to_target(3) == DIFF1_SHA256D // 3
    assert difficulty_to_target(1, "scrypt") == DIFF1_SCRYPT


def test_very_low_difficulty_is_capped_at_the_largest_target() -> None:
    assert difficulty_to_target(Fraction(1, 10**30)) == MAX_TARGET


@pytest.mark.parametrize("bad", [0, -1, "abc", float("nan"), float("inf"), True, None])
def test_bad_difficulty_is_refused_naming_the_value(bad: object) -> None:
    with pytest.raises(ValueError, match="difficulty"):
        difficulty_to_target(bad)  # type: ignore[arg-type]


def test_unknown_algorithm_is_refused() -> None:
    with pytest.raises(ValueError, match="'x11'"):
        difficulty_to_target(1, "x11")


@given(st.fractions(min_value=Fraction(1, 10**6), max_value=10**12))
def test_difficulty_target_difficulty_round_trip_is_close(difficulty: Fraction) -> None:
    target = difficulty_to_target(difficulty)
    back = target_to_difficulty(target)
    assert back >= difficulty
    # floor() loses less than one unit of target.
    assert DIFF1_SHA256D / back + 1 > DIFF1_SHA256D / difficulty


def test_hash_to_int_is_little_endian_and_hash_difficulty_uses_it() -> None:
    h = (DIFF1_SHA256D // 2).to_bytes(32, "little")
    assert hash_to_int(h) == DIFF1_SHA256D // 2
    assert hash_difficulty(h) == pytest.approx(2.0)
    assert hash_difficulty(bytes(32)) == float("inf")
    with pytest.raises(ValueError, match="32 bytes"):
        hash_to_int(b"\x00")

"""Targets, compact nBits and difficulty, in exact integer arithmetic.

A block or share is good when its hash, read as a little-endian 256-bit number, is at most
the target. ``nBits`` is Bitcoin Core's compact form of the target (``SetCompact`` /
``GetCompact``). Difficulty is ``diff1 / target``; it is kept as a ``Fraction`` so that a
"is this a block" decision never goes through a float.
"""

from __future__ import annotations

import math
from decimal import Decimal
from fractions import Fraction

__all__ = [
    "DIFF1_SCRYPT",
    "DIFF1_SHA256D",
    "MAX_TARGET",
    "bits_to_target",
    "decode_compact",
    "diff1_target",
    "difficulty_to_target",
    "hash_difficulty",
    "hash_to_int",
    "target_to_bits",
    "target_to_difficulty",
]

DIFF1_SHA256D = 0xFFFF << 208
"""Target of difficulty 1 for sha256d (Bitcoin's ``0x1d00ffff``)."""

DIFF1_SCRYPT = DIFF1_SHA256D << 16
"""Target of difficulty 1 for scrypt pools (65536 times the sha256d one)."""

MAX_TARGET = (1 << 256) - 1
"""The largest 256-bit target; easier targets are capped to it."""

_DIFF1 = {"sha256d": DIFF1_SHA256D, "scrypt": DIFF1_SCRYPT}

Difficulty = int | Fraction | Decimal | float | str


def diff1_target(algorithm: str = "sha256d") -> int:
    """The difficulty-1 target of ``algorithm`` (``"sha256d"`` or ``"scrypt"``)."""
    try:
        return _DIFF1[algorithm]
    except KeyError:
        raise ValueError(
            f"unknown proof-of-work algorithm {algorithm!r}; expected one of {sorted(_DIFF1)}"
        ) from None


def decode_compact(bits: int) -> tuple[int, bool, bool]:
    """Decode compact ``bits`` like Core's ``arith_uint256::SetCompact``.

    Returns ``(target, negative, overflow)``; ``target`` is the magnitude (modulo 2**256
    when ``overflow``), so callers can reproduce every Core corner case.
    """
    if not 0 <= bits <= 0xFFFFFFFF:
        raise ValueError(f"nBits must be a 32-bit unsigned number, got {bits!r}")
    size = bits >> 24
    word = bits & 0x007FFFFF
    if size <= 3:
        word >>= 8 * (3 - size)
        target = word
    else:
        target = (word << (8 * (size - 3))) & MAX_TARGET
    negative = word != 0 and (bits & 0x00800000) != 0
    overflow = word != 0 and (
        size > 34 or (word > 0xFF and size > 33) or (word > 0xFFFF and size > 32)
    )
    return target, negative, overflow


def bits_to_target(bits: int) -> int:
    """Target encoded by compact ``bits``.

    Raises ``ValueError`` for the encodings Core's proof-of-work check rejects as
    malformed: a set sign bit with a non-zero mantissa (negative) and a value above 2**256
    (overflow). A zero mantissa gives target 0, which no hash meets.
    """
    target, negative, overflow = decode_compact(bits)
    if negative:
        raise ValueError(f"nBits {bits:08x} encodes a negative target (sign bit 0x00800000 set)")
    if overflow:
        raise ValueError(f"nBits {bits:08x} overflows 256 bits")
    return target


def target_to_bits(target: int) -> int:
    """Compact ``bits`` for ``target`` like Core's ``arith_uint256::GetCompact``.

    The encoding keeps the top 3 significant bytes, so it rounds the target down; decoding
    the result gives the target actually in force.
    """
    if not 0 <= target <= MAX_TARGET:
        raise ValueError(f"target must be between 0 and 2**256-1, got {target!r}")
    size = (target.bit_length() + 7) // 8
    if size <= 3:
        compact = target << (8 * (3 - size))
    else:
        compact = target >> (8 * (size - 3))
    if compact & 0x00800000:
        compact >>= 8
        size += 1
    return compact | (size << 24)


def _as_fraction(difficulty: Difficulty) -> Fraction:
    if isinstance(difficulty, bool):
        raise ValueError(f"difficulty must be a number, got {difficulty!r}")
    if isinstance(difficulty, Fraction | int):
        return Fraction(difficulty)
    if isinstance(difficulty, float):
        if not math.isfinite(difficulty):
            raise ValueError(f"difficulty must be finite, got {difficulty!r}")
        # The shortest decimal that round-trips the float: 0.001 means 1/1000, not the
        # binary approximation of it.
        return Fraction(repr(difficulty))
    if isinstance(difficulty, Decimal):
        if not difficulty.is_finite():
            raise ValueError(f"difficulty must be finite, got {difficulty!r}")
        return Fraction(difficulty)
    if isinstance(difficulty, str):
        try:
            return Fraction(difficulty.strip())
        except (ValueError, ZeroDivisionError):
            raise ValueError(f"difficulty {difficulty!r} is not a number") from None
    raise ValueError(f"difficulty must be a number, got {difficulty!r}")


def difficulty_to_target(difficulty: Difficulty, algorithm: str = "sha256d") -> int:
    """Target for ``difficulty``: ``floor(diff1 / difficulty)``, capped at 2**256-1.

    Exact for every accepted type (``int``, ``Fraction``, ``Decimal``, ``float``, ``str``);
    difficulties below 1 are allowed (difficulty 0.001 gives 1000 times the diff1 target).
    """
    diff1 = diff1_target(algorithm)
    value = _as_fraction(difficulty)
    if value <= 0:
        raise ValueError(f"difficulty must be positive, got {difficulty!r}")
    target = (diff1 * value.denominator) // value.numerator
    return min(target, MAX_TARGET)


def target_to_difficulty(target: int, algorithm: str = "sha256d") -> Fraction:
    """Exact difficulty ``diff1 / target`` of a positive ``target``."""
    if not 0 < target <= MAX_TARGET:
        raise ValueError(f"target must be between 1 and 2**256-1, got {target!r}")
    return Fraction(diff1_target(algorithm), target)


def hash_to_int(h: bytes) -> int:
    """A 32-byte hash in internal byte order read as the little-endian number PoW compares."""
    if len(h) != 32:
        raise ValueError(f"a hash is 32 bytes, got {len(h)}")
    return int.from_bytes(h, "little")


def hash_difficulty(h: bytes, algorithm: str = "sha256d") -> float:
    """The difficulty a hash achieves (``diff1 / hash``), for display and statistics.

    Use ``hash_to_int(h) <= target`` to decide acceptance, never this float. A zero hash
    has infinite difficulty.
    """
    value = hash_to_int(h)
    diff1 = diff1_target(algorithm)
    if value == 0:
        return math.inf
    return diff1 / value

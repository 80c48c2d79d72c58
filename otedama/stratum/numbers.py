"""Bounded numbers from miners: length and magnitude are checked before anything exact.

``Fraction("1e999999999")`` never returns and ``Fraction("1" * 4000)`` costs the reactor
real time, so every number a miner can send (the ``d=`` password, ``suggest_difficulty``,
``minimum-difficulty.value``, JSON integers in a line) passes through here first. Pure.
"""

from __future__ import annotations

import math
import re
from fractions import Fraction

__all__ = [
    "MAX_DECIMAL_CHARS",
    "MAX_EXPONENT",
    "MAX_JSON_INT_DIGITS",
    "NumberError",
    "bounded_decimal",
    "bounded_number",
    "json_int",
]

MAX_DECIMAL_CHARS = 40
"""Longest decimal text accepted (``0.000000000000000000123`` fits; a page of digits not)."""

MAX_EXPONENT = 60
"""Largest ``|e|`` in a decimal's exponent: 1e60 is far above any difficulty."""

MAX_JSON_INT_DIGITS = 40
"""Longest integer literal a Stratum line may carry (ids, numbers in params)."""

_DECIMAL = re.compile(r"\+?(\d*)(?:\.(\d*))?(?:[eE]([+-]?\d+))?")


class NumberError(ValueError):
    """A number that is malformed, too long or too large; the message says which."""


def bounded_decimal(text: str) -> Fraction:
    """The exact value of a short positive decimal like ``0.5``, ``4096`` or ``9.6e-07``.

    Refuses (``NumberError``) before building any big integer: text longer than
    ``MAX_DECIMAL_CHARS``, exponents beyond ``±MAX_EXPONENT`` (after accounting for the
    digits), signs, fractions, ``inf`` and ``nan``.
    """
    if len(text) > MAX_DECIMAL_CHARS:
        raise NumberError(f"a number of {len(text)} characters is too long")
    match = _DECIMAL.fullmatch(text)
    if match is None:
        raise NumberError(f"{text!r} is not a decimal number")
    whole, frac, exp_text = match.group(1), match.group(2) or "", match.group(3)
    if not whole and not frac:
        raise NumberError(f"{text!r} is not a decimal number")
    exponent = int(exp_text) if exp_text is not None else 0
    digits = (whole + frac).lstrip("0")
    if not digits:
        return Fraction(0)
    # The value is about 10**magnitude: refuse what no difficulty can be, cheaply.
    magnitude = len(digits) - 1 + exponent - len(frac)
    if not -MAX_EXPONENT <= magnitude <= MAX_EXPONENT:
        raise NumberError(f"{text!r} is out of range (at most 1e{MAX_EXPONENT})")
    return Fraction(int(whole + frac)) * Fraction(10) ** (exponent - len(frac))


def bounded_number(value: object, high: Fraction) -> Fraction | None:
    """A JSON number (int or float) as an exact Fraction capped at ``high``; None when it
    is not a positive finite number."""
    if isinstance(value, bool):
        return None
    if isinstance(value, int):
        if value <= 0:
            return None
        return high if value > high else Fraction(value)
    if isinstance(value, float):
        if not (value > 0 and math.isfinite(value)):
            return None
        if value > high:
            return high
        return Fraction(repr(value))
    return None


def json_int(text: str) -> int:
    """``parse_int`` for the Stratum JSON decoder: refuses over-long integer literals."""
    if len(text) > MAX_JSON_INT_DIGITS:
        raise NumberError(f"an integer of {len(text)} digits is too long")
    return int(text)

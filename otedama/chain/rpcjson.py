"""Bitcoin Core's JSON conventions for values, shared by the daemon client and the devnet.

Amounts travel as BTC numbers with exactly 8 decimals (``Amount`` writes them; Core reads
them exactly); requests and replies are compact JSON whose numbers stay exact
(``Decimal``, never ``float``). Numbers read from JSON are bounded in length and
magnitude before they become exact numbers (``decode_json``), so a reply or a request
holding ``1e999999999`` is refused instead of making the reactor build a huge integer;
``btc_to_sats`` is the one conversion of a BTC amount to satoshis.
"""

from __future__ import annotations

import json
import math
from collections.abc import Mapping, Sequence
from dataclasses import dataclass
from decimal import Decimal, InvalidOperation
from typing import Any

from otedama.chain.params import COIN

__all__ = [
    "MAX_EXPONENT",
    "MAX_MONEY",
    "MAX_NUMBER_CHARS",
    "Amount",
    "AmountError",
    "AmountOutOfRange",
    "NumberError",
    "btc_to_sats",
    "decode_json",
    "encode_json",
]

MAX_MONEY = 21_000_000 * COIN
"""Core's ``MAX_MONEY``: no amount, fee or balance is larger (in satoshis)."""

MAX_NUMBER_CHARS = 64
"""Longest number literal read from JSON (Core writes amounts in 17 characters at most)."""

MAX_EXPONENT = 64
"""Largest decimal exponent (either sign) of a number read from JSON."""


class NumberError(ValueError):
    """A JSON number too long or too large (or small) to be one Core would send."""


class AmountError(ValueError):
    """A value that is not an amount of BTC in whole satoshis within ``MAX_MONEY``."""


class AmountOutOfRange(AmountError):
    """An amount of BTC beyond ``MAX_MONEY`` (either way)."""


@dataclass(frozen=True)
class Amount:
    """Satoshis, written to JSON as a BTC number with 8 decimals (``50.00000000``)."""

    sats: int

    def to_json(self) -> str:
        sign = "-" if self.sats < 0 else ""
        whole, frac = divmod(abs(self.sats), COIN)
        return f"{sign}{whole}.{frac:08d}"


def encode_json(value: Any) -> str:
    """Compact JSON like Core's (no spaces); ``Amount`` and ``Decimal`` as plain numbers."""
    if value is None:
        return "null"
    if value is True:
        return "true"
    if value is False:
        return "false"
    if isinstance(value, Amount):
        return value.to_json()
    if isinstance(value, int):
        return str(value)
    if isinstance(value, float):
        if not math.isfinite(value):
            return "null"
        return repr(value)
    if isinstance(value, Decimal):
        return str(value)
    if isinstance(value, str):
        return json.dumps(value)
    if isinstance(value, Mapping):
        items = (f"{json.dumps(str(k))}:{encode_json(v)}" for k, v in value.items())
        return "{" + ",".join(items) + "}"
    if isinstance(value, Sequence) and not isinstance(value, bytes | bytearray):
        return "[" + ",".join(encode_json(v) for v in value) + "]"
    raise TypeError(f"cannot encode {type(value).__name__} as JSON: {value!r}")


def _bounded_decimal(text: str) -> Decimal:
    if len(text) > MAX_NUMBER_CHARS:
        raise NumberError(f"number of {len(text)} characters is too long: {text[:20]}…")
    try:
        value = Decimal(text)  # cheap: a Decimal keeps its exponent, it expands nothing
    except InvalidOperation:  # an exponent beyond what Decimal can hold at all
        raise NumberError(f"number {text[:20]}… is out of range") from None
    if value and abs(value.adjusted()) > MAX_EXPONENT:
        raise NumberError(f"number {text} is out of range (exponent beyond ±{MAX_EXPONENT})")
    return value


def _bounded_int(text: str) -> int:
    if len(text) > MAX_NUMBER_CHARS:
        raise NumberError(f"integer of {len(text)} digits is too long: {text[:20]}…")
    return int(text)


def _no_constant(name: str) -> Any:
    raise NumberError(f"{name} is not a JSON number")


def decode_json(text: str | bytes) -> Any:
    """Parse JSON with exact, bounded numbers: fractions as ``Decimal``, integers as ``int``.

    Raises ``ValueError`` (``NumberError`` for a number longer than ``MAX_NUMBER_CHARS``
    or beyond ``10**±MAX_EXPONENT``; ``NaN`` and ``Infinity`` are refused too; arrays
    and objects nested deeper than the interpreter's recursion limit are refused).
    """
    try:
        return json.loads(
            text,
            parse_float=_bounded_decimal,
            parse_int=_bounded_int,
            parse_constant=_no_constant,
        )
    except RecursionError:
        raise ValueError("JSON nested too deeply") from None


def btc_to_sats(amount: Any) -> int:
    """An amount of BTC (``Decimal``, ``int``, numeric ``str`` or ``float``) in satoshis.

    Exact: a fraction of a satoshi is an ``AmountError``, and so is anything beyond
    ``MAX_MONEY`` either way (checked before the amount is scaled, so a huge exponent is
    refused at once). Negative amounts are allowed (wallet history lists sends as such).
    """
    if isinstance(amount, bool) or not isinstance(amount, int | Decimal | str | float):
        raise AmountError(f"not an amount of BTC: {amount!r}")
    if isinstance(amount, str) and len(amount) > MAX_NUMBER_CHARS:
        raise AmountError(f"not an amount of BTC: a string of {len(amount)} characters")
    try:
        value = Decimal(repr(amount)) if isinstance(amount, float) else Decimal(amount)
    except ArithmeticError:
        raise AmountError(f"not an amount of BTC: {amount!r}") from None
    if not value.is_finite():
        raise AmountError(f"not an amount of BTC: {amount!r}")
    if value.is_zero():
        return 0
    # Look at the exponent before any arithmetic: 1e999999999 must not be expanded.
    if value.adjusted() > 7 or abs(value) > MAX_MONEY // COIN:
        raise AmountOutOfRange(f"amount {amount!r} BTC is out of range (at most 21,000,000 BTC)")
    if value.adjusted() < -8 or value.scaleb(8) != value.scaleb(8).to_integral_value():
        raise AmountError(f"amount {amount!r} BTC is not a whole number of satoshis")
    return int(value.scaleb(8))

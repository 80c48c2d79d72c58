"""Bitcoin Core's JSON conventions for values, shared by the daemon client and the devnet.

Amounts travel as BTC numbers with exactly 8 decimals (``Amount`` writes them; Core reads
them exactly); requests and replies are compact JSON whose numbers stay exact
(``Decimal``, never ``float``).
"""

from __future__ import annotations

import json
import math
from collections.abc import Mapping, Sequence
from dataclasses import dataclass
from decimal import Decimal
from typing import Any

from otedama.chain.params import COIN

__all__ = ["Amount", "encode_json"]


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

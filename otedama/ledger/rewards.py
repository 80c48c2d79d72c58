"""Reward splitting: how one block's reward becomes credits, in whole satoshis.

Pure functions, integer arithmetic only. A float may enter as a share weight (the
``shares.difficulty`` column is a float); it is converted exactly with ``Fraction(float)``
and never rounded on the way to an amount.

The rules, which ``docs/ledger.md`` states for operators:

- **Fee.** ``fee = floor(reward * fee_basis_points / 10000)`` goes to the operator's fee
  address; the miners share ``reward - fee``. The floor means any fraction of a satoshi of
  fee goes to the miners.
- **PPLNS and PROP** split the miners' part in proportion to each address's summed share
  difficulty (PPLNS: the shares in the time window; PROP: the shares of the round since the
  previous block — choosing the shares is the ledger query's job, the arithmetic is the
  same). Each address first gets the floor of its exact part; the satoshis left over (fewer
  than the number of addresses) go one each to the addresses with the largest fractional
  parts (largest-remainder, Hamilton's method); equal fractional parts are broken by address
  order, smallest first. Every address therefore gets its exact part rounded down or up,
  so within 1 satoshi of exact, and the parts add up to the whole.
- **SOLO**: the finder's address gets ``reward - fee``. Its coinbase output pays the finder
  directly, so the split is marked ``paid_in_coinbase``: the ledger records the credit for
  the miner's history but must not pay it out again.
- **Empty window** (no share weight at all, e.g. the first block of a fresh pool): nobody
  earned the reward, so the whole reward is the operator's and is booked as fee to the fee
  address.
- Addresses whose part rounds to 0 satoshis get no credit entry.
"""

from __future__ import annotations

import math
from collections.abc import Iterable, Iterator, Mapping
from dataclasses import dataclass, field
from decimal import Decimal, InvalidOperation
from enum import StrEnum
from fractions import Fraction
from types import MappingProxyType

__all__ = [
    "BASIS_POINTS",
    "RewardScheme",
    "RewardSplit",
    "ScaledWeights",
    "Weight",
    "aggregate_weights",
    "fee_basis_points",
    "split_reward",
]

#: Basis points in the whole (10000 bp = 100 %).
BASIS_POINTS = 10_000

#: What a share weight may be given as; floats are taken exactly, never rounded.
Weight = int | float | Fraction | Decimal


class RewardScheme(StrEnum):
    """How a block's reward is shared among the pool's miners."""

    PPLNS = "PPLNS"
    PROP = "PROP"
    SOLO = "SOLO"

    @classmethod
    def parse(cls, value: str | RewardScheme) -> RewardScheme:
        """The scheme named by ``value`` (case-insensitive), or a ValueError naming it."""
        if isinstance(value, RewardScheme):
            return value
        try:
            return cls(str(value).strip().upper())
        except ValueError:
            known = ", ".join(s.value for s in cls)
            raise ValueError(f"unknown reward scheme {value!r}: expected one of {known}") from None


@dataclass(frozen=True)
class RewardSplit:
    """One block's reward divided into miner credits and the operator's fee.

    ``credits`` maps payout address to satoshis (only positive amounts, ordered by
    address); ``sum(credits.values()) + fee == reward`` always holds.
    """

    scheme: RewardScheme
    reward: int
    fee: int
    fee_address: str
    credits: Mapping[str, int] = field(default_factory=dict)
    #: True for SOLO: the coinbase itself paid the finder, so the credit is not payable.
    paid_in_coinbase: bool = False

    def __post_init__(self) -> None:
        if self.fee < 0 or any(amount <= 0 for amount in self.credits.values()):
            raise ValueError(f"reward split has a negative or zero part: {self!r}")
        total = self.fee + sum(self.credits.values())
        if total != self.reward:
            raise ValueError(f"reward split parts add up to {total}, not {self.reward} sats")
        ordered = dict(sorted(self.credits.items()))
        object.__setattr__(self, "credits", MappingProxyType(ordered))

    @property
    def miners_total(self) -> int:
        """Satoshis credited to miners (the reward less the fee)."""
        return self.reward - self.fee


def fee_basis_points(percentage: Decimal | int | str) -> int:
    """Convert a fee percentage (``pool.fee_percentage``, e.g. ``Decimal("1.0")``) to basis points.

    Exact: the percentage must be a whole number of basis points (a multiple of 0.01 %)
    between 0 and 100 %. Floats are refused, since ``0.1`` is not what the operator wrote;
    parse the config value with ``Decimal`` first.
    """
    if isinstance(percentage, bool) or not isinstance(percentage, Decimal | int | str):
        raise TypeError(
            f"fee percentage must be a Decimal, int or str, not {type(percentage).__name__} "
            f"({percentage!r}); parse the config value with decimal.Decimal"
        )
    try:
        value = Decimal(percentage)
    except InvalidOperation:
        raise ValueError(f"fee percentage {percentage!r} is not a number") from None
    if not value.is_finite() or value < 0 or value > 100:
        raise ValueError(f"fee percentage {percentage!r} must be between 0 and 100")
    bp = value * 100
    if bp != bp.to_integral_value():
        raise ValueError(
            f"fee percentage {percentage!r} is not a whole number of basis points "
            "(use steps of 0.01)"
        )
    return int(bp)


class ScaledWeights(Mapping[str, Fraction]):
    """Per-address weights held as integers in units of ``1/scale`` (exact): what the
    PPLNS window's running totals store. As a mapping it gives each weight as a
    ``Fraction``; :func:`split_reward` splits on the integers directly, which gives the
    same credits (the split is proportional) without making 10,000 Fractions."""

    __slots__ = ("scale", "units")

    def __init__(self, units: Mapping[str, int], scale: int) -> None:
        if scale < 1:
            raise ValueError(f"weight scale must be positive, got {scale}")
        self.units = dict(units)
        self.scale = scale

    def __getitem__(self, address: str) -> Fraction:
        return Fraction(self.units[address], self.scale)

    def __iter__(self) -> Iterator[str]:
        return iter(self.units)

    def __len__(self) -> int:
        return len(self.units)

    def __repr__(self) -> str:
        return f"ScaledWeights({len(self.units)} addresses, scale {self.scale})"


def _exact(weight: Weight) -> Fraction:
    """A weight as an exact non-negative Fraction, or a ValueError naming it."""
    if type(weight) is Fraction:
        # The common case (aggregate_weights' output): no conversion, no slow comparison.
        if weight.numerator < 0:
            raise ValueError(f"share weight {weight!r} is negative")
        return weight
    if isinstance(weight, bool) or not isinstance(weight, int | float | Fraction | Decimal):
        raise TypeError(f"share weight {weight!r} is not a number")
    try:
        exact = Fraction(weight)
    except (ValueError, OverflowError):  # NaN, infinity
        raise ValueError(f"share weight {weight!r} is not a finite number") from None
    if exact < 0:
        raise ValueError(f"share weight {weight!r} is negative")
    return exact


#: Fixed-point scale of the fast path in ``aggregate_weights``: weights whose exact
#: denominator divides it (every float difficulty of 1e-22 or more) are summed as ints.
_SCALE = 1 << 128


def aggregate_weights(rows: Iterable[tuple[str, Weight]]) -> dict[str, Fraction]:
    """Sum share weights per address, exactly: ``[(address, difficulty), ...] -> {address: Fraction}``.

    Made for a window of a million rows: each weight's exact integer ratio is scaled to a
    common denominator of 2**128 (exact for float difficulties, whose denominators are powers
    of two) and summed as a plain int; weights with any other denominator (a Fraction of
    1/3, a tiny float) are summed as Fractions. No rounding happens anywhere.
    """
    sums: dict[str, int] = {}
    get = sums.get
    others: list[tuple[str, Weight]] = []
    multipliers: dict[int, int] = {}
    multiplier_for = multipliers.get
    for address, weight in rows:
        try:
            numerator, denominator = weight.as_integer_ratio()
        except (AttributeError, ValueError, OverflowError):
            _exact(weight)  # raises the error naming the value
            raise
        if numerator < 0:
            raise ValueError(f"share weight {weight!r} of {address!r} is negative")
        multiplier = multiplier_for(denominator)
        if multiplier is None:
            multiplier = _SCALE // denominator if _SCALE % denominator == 0 else 0
            multipliers[denominator] = multiplier
        if multiplier:
            sums[address] = get(address, 0) + numerator * multiplier
        else:
            others.append((address, weight))
    per_address = {address: Fraction(total, _SCALE) for address, total in sums.items()}
    for address, weight in others:
        per_address[address] = per_address.get(address, Fraction(0)) + _exact(weight)
    return per_address


def _largest_remainder(total: int, weights: Mapping[str, Fraction]) -> dict[str, int]:
    """Divide ``total`` satoshis in proportion to ``weights`` (Hamilton's method).

    The weights are scaled to integers over their least common denominator, so all
    arithmetic is on Python ints. Left-over satoshis go to the largest fractional parts,
    ties to the smaller address.
    """
    denominator = math.lcm(*(w.denominator for w in weights.values()))
    scaled = {a: w.numerator * (denominator // w.denominator) for a, w in weights.items()}
    return _largest_remainder_scaled(total, scaled)


def _largest_remainder_scaled(total: int, scaled: Mapping[str, int]) -> dict[str, int]:
    """:func:`_largest_remainder` on positive integer weights (any common scale)."""
    weight_sum = sum(scaled.values())
    parts: dict[str, int] = {}
    remainders: list[tuple[int, str]] = []
    for address, weight in scaled.items():
        quotient, remainder = divmod(total * weight, weight_sum)
        parts[address] = quotient
        remainders.append((-remainder, address))
    left_over = total - sum(parts.values())
    # Largest remainder first; for equal remainders the smaller address first (tuples
    # sorted as they are: twice as fast as with a key function).
    remainders.sort()
    for _, address in remainders[:left_over]:
        parts[address] += 1
    return {a: amount for a, amount in parts.items() if amount > 0}


def split_reward(
    scheme: RewardScheme | str,
    reward: int,
    fee_basis_points: int,
    weights: Mapping[str, Weight],
    finder_address: str | None,
    fee_address: str,
) -> RewardSplit:
    """Split a block reward (satoshis) into the operator's fee and per-address credits.

    ``weights`` are per-address summed share difficulties (see ``aggregate_weights``);
    SOLO ignores them and pays ``finder_address``. The result is exact (parts add up to
    ``reward``), deterministic (independent of the order of ``weights``) and never
    negative. See the module docstring for where rounding remainders go.
    """
    scheme = RewardScheme.parse(scheme)
    if isinstance(reward, bool) or not isinstance(reward, int) or reward < 0:
        raise ValueError(f"block reward must be a non-negative int of satoshis, got {reward!r}")
    if (
        isinstance(fee_basis_points, bool)
        or not isinstance(fee_basis_points, int)
        or not 0 <= fee_basis_points <= BASIS_POINTS
    ):
        raise ValueError(f"fee must be 0..{BASIS_POINTS} basis points, got {fee_basis_points!r}")
    if not fee_address:
        raise ValueError("reward split needs the operator's fee address, got an empty one")
    fee = reward * fee_basis_points // BASIS_POINTS
    miners = reward - fee

    if scheme is RewardScheme.SOLO:
        if not finder_address:
            raise ValueError("a SOLO reward needs the finder's address, got none")
        credits = {finder_address: miners} if miners > 0 else {}
        return RewardSplit(scheme, reward, fee, fee_address, credits, paid_in_coinbase=True)

    if isinstance(weights, ScaledWeights):
        if any(units < 0 for units in weights.units.values()):
            raise ValueError("share weights must not be negative")
        scaled = {address: units for address, units in weights.units.items() if units > 0}
        if not scaled or miners == 0:
            return RewardSplit(scheme, reward, reward, fee_address, {})
        parts = _largest_remainder_scaled(miners, scaled)
        return RewardSplit(scheme, reward, fee, fee_address, parts)
    exact = {address: _exact(w) for address, w in weights.items()}
    earned = {address: w for address, w in exact.items() if w.numerator > 0}
    if not earned or miners == 0:
        # Nobody has weight (or nothing is left for miners): all of it is booked as fee.
        return RewardSplit(scheme, reward, reward, fee_address, {})
    return RewardSplit(scheme, reward, fee, fee_address, _largest_remainder(miners, earned))

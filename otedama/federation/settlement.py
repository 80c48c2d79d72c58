"""Settlement between federation nodes: how a coinbase reward is split among them.

Pure functions, integer satoshis, integer weights. ``docs/federation.md``
states these rules for operators.

- **Parts.** Each payout script in the federation window has a weight: the summed work
  of its verified federation shares (see ``otedama.federation.window``). Its exact part
  is ``reward * weight / total``. Each script first gets the floor of its exact part; the
  satoshis left over (fewer than the number of scripts) go one each to the scripts with
  the largest fractional parts, equal fractional parts broken by script bytes, smallest
  first (largest remainder, as ``otedama.ledger.rewards`` does for miners). So every part
  is within one satoshi of exact and the parts add up to the reward.
- **Dust.** A part other than the finder's that is below ``DUST_THRESHOLD`` satoshis is
  folded into the finder's output: an output that small costs a noticeable fraction of
  itself to spend later.
- **Output cap.** At most ``MAX_OUTPUTS`` outputs, the finder's included: the largest
  other parts keep their outputs (equal amounts: smaller script first) and the rest are
  folded into the finder's output.
- **Order.** The finder's output comes first, then the others by amount, largest first,
  equal amounts by script bytes. The finder's output is left out only when it would be
  0 satoshis and other outputs exist.
- **Alone.** With an empty window (or only the finder in it) the finder gets everything.

The checker (``check_settlement``) is what a receiver runs on a peer's coinbase (item 4's
last check on federation shares, and item 7 on found blocks): it recomputes the split
from its own window with the same finder and total and sums, over every script except
the finder's, how much the coinbase pays less than expected. It is underpaid when that
shortfall exceeds ``tolerance(reward)``.
"""

from __future__ import annotations

from collections.abc import Iterable, Mapping, Sequence
from dataclasses import dataclass

from otedama.chain.coinbase import CoinbaseParts, build_coinbase, node_commitment_output
from otedama.chain.serialize import TxOut

__all__ = [
    "DUST_THRESHOLD",
    "MAX_OUTPUTS",
    "MAX_REWARD",
    "TOLERANCE_BASIS_POINTS",
    "Output",
    "SettlementCheck",
    "SettlementError",
    "check_settlement",
    "settlement_coinbase",
    "split_reward",
    "tolerance",
]

DUST_THRESHOLD = 10_000
"""Satoshis below which a node's part is folded into the finder's output. At 50 sat/vB
spending a P2WPKH output (~68 vB) costs 3,400 sat, a third of such an output."""

MAX_OUTPUTS = 64
"""Most settlement outputs in one coinbase, the finder's included (about 2.8 kB)."""

TOLERANCE_BASIS_POINTS = 500
"""Shortfall allowed, as basis points of the reward (5 %), on top of ``DUST_THRESHOLD``:
two honest nodes' windows differ by the shares in flight and by the moment each template
was built."""

MAX_REWARD = 21_000_000 * 100_000_000
"""No coinbase can pay more than all the coins there will ever be."""

Output = tuple[bytes, int]
"""One coinbase output of a settlement: (scriptPubKey, satoshis)."""


class SettlementError(ValueError):
    """Inputs a settlement cannot be computed from; the message names the value."""


def _check_inputs(reward: int, weights: Mapping[bytes, int], finder_script: bytes) -> None:
    if not isinstance(reward, int) or isinstance(reward, bool) or not 0 <= reward <= MAX_REWARD:
        raise SettlementError(f"reward must be 0..{MAX_REWARD} satoshis, got {reward!r}")
    if not isinstance(finder_script, bytes) or not finder_script:
        raise SettlementError(f"finder script must be non-empty bytes, got {finder_script!r}")
    for script, weight in weights.items():
        if not isinstance(script, bytes) or not script:
            raise SettlementError(f"payout script must be non-empty bytes, got {script!r}")
        if not isinstance(weight, int) or isinstance(weight, bool) or weight < 0:
            raise SettlementError(
                f"weight of {script.hex()} must be a whole number >= 0, got {weight!r}"
            )


def _exact_parts(reward: int, weights: Mapping[bytes, int]) -> dict[bytes, int]:
    """Largest-remainder apportionment of ``reward`` by ``weights`` (total > 0)."""
    total = sum(weights.values())
    parts: dict[bytes, int] = {}
    remainders: list[tuple[int, bytes]] = []
    for script in sorted(weights):
        quotient, remainder = divmod(reward * weights[script], total)
        parts[script] = quotient
        remainders.append((remainder, script))
    left = reward - sum(parts.values())
    # Largest remainder first; equal remainders: smaller script first.
    remainders.sort(key=lambda item: (-item[0], item[1]))
    for _, script in remainders[:left]:
        parts[script] += 1
    return parts


def split_reward(
    reward: int,
    weights: Mapping[bytes, int],
    finder_script: bytes,
    *,
    dust_threshold: int = DUST_THRESHOLD,
    max_outputs: int = MAX_OUTPUTS,
) -> list[Output]:
    """Split ``reward`` satoshis among the payout scripts of ``weights`` (script ->
    window work) with the finder's output first; the amounts add up to ``reward``.

    The result depends only on the mapping's contents, never on its order.
    """
    _check_inputs(reward, weights, finder_script)
    if max_outputs < 1:
        raise SettlementError(f"max_outputs must be at least 1, got {max_outputs}")
    positive = {script: weight for script, weight in weights.items() if weight > 0}
    if not positive:
        return [(finder_script, reward)]
    parts = _exact_parts(reward, positive)
    finder = parts.pop(finder_script, 0)
    kept: list[Output] = []
    for script, amount in parts.items():
        if amount < dust_threshold or amount == 0:
            finder += amount
        else:
            kept.append((script, amount))
    kept.sort(key=lambda item: (-item[1], item[0]))
    for _, amount in kept[max_outputs - 1 :]:
        finder += amount
    others = kept[: max_outputs - 1]
    if finder == 0 and others:
        return others
    return [(finder_script, finder), *others]


def tolerance(reward: int) -> int:
    """Satoshis a coinbase may underpay the federation by before it counts as unfair:
    ``TOLERANCE_BASIS_POINTS`` of the reward (rounded down) plus ``DUST_THRESHOLD``."""
    return reward * TOLERANCE_BASIS_POINTS // 10_000 + DUST_THRESHOLD


@dataclass(frozen=True)
class SettlementCheck:
    """A receiver's verdict on a coinbase's split: ``shortfall`` satoshis are missing
    from the non-finder scripts compared with ``expected`` (the receiver's own split)."""

    reward: int
    expected: tuple[Output, ...]
    shortfall: int
    allowed: int

    @property
    def underpaid(self) -> bool:
        """Whether the federation is underpaid beyond the tolerance."""
        return self.shortfall > self.allowed


def check_settlement(
    outputs: Iterable[TxOut | Output],
    weights: Mapping[bytes, int],
    finder_script: bytes,
    *,
    dust_threshold: int = DUST_THRESHOLD,
    max_outputs: int = MAX_OUTPUTS,
) -> SettlementCheck:
    """Compare a coinbase's ``outputs`` with the split of the receiver's own window.

    ``weights`` is the receiver's window (script -> work), ``finder_script`` the payout
    script of the node whose coinbase it is. The reward is the sum of all outputs, so
    paying oneself through another script only raises what the others are owed.
    """
    paid: dict[bytes, int] = {}
    for out in outputs:
        script, value = (out.script_pubkey, out.value) if isinstance(out, TxOut) else out
        if value < 0:
            raise SettlementError(f"output to {script.hex()} has negative value {value}")
        paid[script] = paid.get(script, 0) + value
    reward = sum(paid.values())
    expected = split_reward(
        reward,
        weights,
        finder_script,
        dust_threshold=dust_threshold,
        max_outputs=max_outputs,
    )
    shortfall = sum(
        max(0, amount - paid.get(script, 0))
        for script, amount in expected
        if script != finder_script
    )
    return SettlementCheck(reward, tuple(expected), shortfall, tolerance(reward))


def settlement_coinbase(
    height: int,
    outputs: Sequence[Output],
    node_id: bytes,
    extranonce_size: int,
    pool_tag: bytes = b"",
    witness_commitment: bytes | None = None,
) -> CoinbaseParts:
    """The coinbase a federation node mines: the settlement ``outputs``, then the output
    committing it to ``node_id``, then (if any) the witness commitment."""
    txouts = [TxOut(amount, script) for script, amount in outputs]
    txouts.append(node_commitment_output(node_id))
    return build_coinbase(height, txouts, extranonce_size, pool_tag, witness_commitment)

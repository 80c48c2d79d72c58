"""Peer reputation: a score in [0, 1] per peer key from what the peer has done.

The arithmetic (``docs/federation.md`` states it for operators):

- Each peer has two decaying sums of evidence, ``good`` and ``bad``. ``reward(key,
  reason, now)`` adds the reason's weight (``REWARDS``) to ``good``; ``penalise(key,
  reason, now)`` adds the reason's weight (``PENALTIES``) to ``bad``.
- Both decay exponentially with time: ``good`` halves every ``GOOD_HALF_LIFE`` (24 h),
  ``bad`` every ``BAD_HALF_LIFE`` (12 h); a sum below ``FORGET_BELOW`` becomes 0.
- ``score = (PRIOR + good) / (2 * PRIOR + good + bad)`` with ``PRIOR = 10``: a peer never
  seen (or whose evidence has decayed away) scores exactly 0.5, the neutral prior. A
  peer scores below 0.5 exactly when its decayed penalties outweigh its decayed rewards.
- So a peer that misbehaved and stopped recovers toward 0.5 as ``bad`` decays (slowly:
  ten bad signatures, ``bad = 100``, take about 13 half-lives, 6.6 days, to be forgotten
  entirely) and faster by earning rewards again.

The gossip layer applies ``federation.reputation_threshold`` to ``score``; the store
persists ``snapshot()`` and feeds it back with ``restore()`` at start. Memory is bounded:
beyond ``max_peers`` keys, the least recently updated key is forgotten.
"""

from __future__ import annotations

import math
from collections.abc import Iterable
from dataclasses import dataclass
from enum import StrEnum
from types import MappingProxyType

from otedama.federation.shares import Rejection

__all__ = [
    "BAD_HALF_LIFE",
    "DEFAULT_MAX_PEERS",
    "FORGET_BELOW",
    "GOOD_HALF_LIFE",
    "PENALTIES",
    "PRIOR",
    "REWARDS",
    "PeerRecord",
    "Penalty",
    "Reputation",
    "Reward",
    "penalty_for",
]

PRIOR = 10.0
"""Pseudo-evidence on each side: the weight of the neutral 0.5 prior."""
GOOD_HALF_LIFE = 24 * 3600.0
"""Seconds for accumulated rewards to halve."""
BAD_HALF_LIFE = 12 * 3600.0
"""Seconds for accumulated penalties to halve."""
FORGET_BELOW = 0.01
"""Decayed evidence smaller than this is dropped to 0, so a score does return to 0.5."""
DEFAULT_MAX_PEERS = 10_000
"""Peer keys kept before the least recently updated is forgotten."""


class Reward(StrEnum):
    """What earns a peer reputation."""

    VALID_SHARE = "valid-share"
    VALID_BLOCK = "valid-block"
    TIMELY = "timely"
    FAIR_SETTLEMENT = "fair-settlement"
    GOOD_PROTOCOL = "good-protocol"


class Penalty(StrEnum):
    """What costs a peer reputation."""

    INVALID_SHARE = "invalid-share"
    INVALID_BLOCK = "invalid-block"
    BAD_SIGNATURE = "bad-signature"
    MALFORMED = "malformed"
    OVERSIZED = "oversized"
    PROTOCOL = "protocol"
    REPLAY = "replay"
    FLOOD = "flood"
    LATE = "late"
    UNDERPAID = "underpaid"


REWARDS = MappingProxyType(
    {
        Reward.VALID_SHARE: 1.0,
        Reward.VALID_BLOCK: 5.0,
        Reward.TIMELY: 0.5,
        Reward.FAIR_SETTLEMENT: 2.0,
        Reward.GOOD_PROTOCOL: 0.1,
    }
)
"""Weight each reward adds to ``good``."""

PENALTIES = MappingProxyType(
    {
        Penalty.INVALID_SHARE: 5.0,
        Penalty.INVALID_BLOCK: 10.0,
        Penalty.BAD_SIGNATURE: 10.0,
        Penalty.MALFORMED: 5.0,
        Penalty.OVERSIZED: 5.0,
        Penalty.PROTOCOL: 5.0,
        Penalty.REPLAY: 2.0,
        Penalty.FLOOD: 3.0,
        Penalty.LATE: 0.5,
        Penalty.UNDERPAID: 20.0,
    }
)
"""Weight each penalty adds to ``bad``."""


_REJECTION_PENALTIES = MappingProxyType(
    {
        # An honest node can send these in a race with a new block or a slow link.
        Rejection.STALE: Penalty.LATE,
        Rejection.TOO_OLD: Penalty.LATE,
        Rejection.UNDERPAYS: Penalty.UNDERPAID,
    }
)


def penalty_for(rejection: Rejection) -> Penalty:
    """The penalty for sending a federation share rejected for ``rejection``: ``LATE``
    for a stale or old share (a race an honest node can lose), ``UNDERPAID`` for an
    unfair split, ``INVALID_SHARE`` for everything else (forged or broken work)."""
    return _REJECTION_PENALTIES.get(rejection, Penalty.INVALID_SHARE)


@dataclass(frozen=True)
class PeerRecord:
    """One peer's evidence as of ``updated`` (unix seconds): what is persisted."""

    peer_key: bytes
    good: float
    bad: float
    updated: float

    def __post_init__(self) -> None:
        if not isinstance(self.peer_key, bytes) or not self.peer_key:
            raise ValueError(f"peer key must be non-empty bytes, got {self.peer_key!r}")
        for name in ("good", "bad", "updated"):
            value = getattr(self, name)
            if not isinstance(value, int | float) or not math.isfinite(value) or value < 0:
                raise ValueError(f"peer record {name} must be a finite number >= 0, got {value!r}")

    def at(self, now: float) -> PeerRecord:
        """This evidence decayed to ``now`` (never grown by a clock that went back)."""
        elapsed = max(0.0, now - self.updated)
        good = _decay(self.good, elapsed, GOOD_HALF_LIFE)
        bad = _decay(self.bad, elapsed, BAD_HALF_LIFE)
        return PeerRecord(self.peer_key, good, bad, max(now, self.updated))

    @property
    def score(self) -> float:
        """``(PRIOR + good) / (2 * PRIOR + good + bad)`` of this (undecayed) record."""
        return (PRIOR + self.good) / (2 * PRIOR + self.good + self.bad)


def _decay(value: float, elapsed: float, half_life: float) -> float:
    decayed = value * 2.0 ** (-elapsed / half_life)
    return 0.0 if decayed < FORGET_BELOW else decayed


class Reputation:
    """Scores of peer keys; every method takes ``now`` (unix seconds)."""

    def __init__(self, max_peers: int = DEFAULT_MAX_PEERS) -> None:
        if max_peers < 1:
            raise ValueError(f"max_peers must be at least 1, got {max_peers!r}")
        self.max_peers = max_peers
        self._records: dict[bytes, PeerRecord] = {}

    def __len__(self) -> int:
        return len(self._records)

    def _add(self, peer_key: bytes, now: float, good: float, bad: float) -> float:
        current = self._records.pop(peer_key, None)
        if current is None:
            current = PeerRecord(peer_key, 0.0, 0.0, now)
        current = current.at(now)
        record = PeerRecord(peer_key, current.good + good, current.bad + bad, current.updated)
        self._records[peer_key] = record  # most recently updated last
        while len(self._records) > self.max_peers:
            del self._records[next(iter(self._records))]
        return record.score

    def reward(self, peer_key: bytes, reason: Reward, now: float) -> float:
        """Credit ``peer_key`` for ``reason``; returns its new score."""
        if not isinstance(reason, Reward):
            raise ValueError(f"{reason!r} is not a reward reason")
        return self._add(peer_key, now, REWARDS[reason], 0.0)

    def penalise(self, peer_key: bytes, reason: Penalty, now: float) -> float:
        """Debit ``peer_key`` for ``reason``; returns its new score."""
        if not isinstance(reason, Penalty):
            raise ValueError(f"{reason!r} is not a penalty reason")
        return self._add(peer_key, now, 0.0, PENALTIES[reason])

    def score(self, peer_key: bytes, now: float) -> float:
        """``peer_key``'s score at ``now`` in [0, 1]; 0.5 for a key never seen."""
        record = self._records.get(peer_key)
        if record is None:
            return PeerRecord(peer_key, 0.0, 0.0, now).score
        return record.at(now).score

    def snapshot(self, now: float) -> list[PeerRecord]:
        """Every peer's evidence decayed to ``now``, ordered by key (for the database);
        peers whose evidence has decayed away entirely are left out."""
        records = (record.at(now) for record in self._records.values())
        return sorted(
            (r for r in records if r.good or r.bad),
            key=lambda r: r.peer_key,
        )

    def restore(self, records: Iterable[PeerRecord]) -> None:
        """Replace the state with ``records`` (from ``snapshot``), oldest update first so
        the bound keeps the most recent."""
        self._records = {}
        for record in sorted(records, key=lambda r: (r.updated, r.peer_key)):
            self._records.pop(record.peer_key, None)
            self._records[record.peer_key] = record
        while len(self._records) > self.max_peers:
            del self._records[next(iter(self._records))]

"""The federation window: the verified federation shares of the last ``federation.window``.

It holds one entry per share (deduplicated by share hash) and answers "what did the
window hold at time *t*": ``at(t)`` is the frozen ``WindowState`` of the shares whose time
is in ``[t - duration, t]``, with exact integer totals — the whole window's work, each
node's shares and work, each payout script's work (what settlement splits by) — and the
federation share target they give.

A node builds a coinbase from ``at(template_time)`` and says so in its federation shares;
a receiver checks the split against its own ``at(template_time)``, so both look at the
same moment. For that the window keeps ``RETENTION_MARGIN`` seconds of shares beyond
``duration`` (the oldest template time a share may name, plus the oldest share a receiver
accepts). Entries leave when their time falls before ``now - duration - margin``
(``prune(now)``) or, beyond ``max_entries``, oldest first, so memory is bounded whatever
peers send. All weights are integers (``share_work``); parts are exact ``Fraction``s.

Running totals cover every retained entry; a state at ``t`` subtracts the few entries
newer than ``t`` or older than ``t - duration``, found by bisection in a time-sorted list,
so answering is proportional to those tails and the number of nodes, not to the window.
"""

from __future__ import annotations

import bisect
from collections.abc import Mapping
from dataclasses import dataclass
from fractions import Fraction
from types import MappingProxyType

from otedama.federation.shares import MAX_AGE, MAX_TEMPLATE_AGE, FedShare, share_target

__all__ = [
    "DEFAULT_MAX_ENTRIES",
    "RETENTION_MARGIN",
    "FederationWindow",
    "NodeTotals",
    "WindowEntry",
    "WindowState",
]

DEFAULT_MAX_ENTRIES = 50_000
"""About 70 times what a 2 h window holds at one share per 10 s."""

RETENTION_MARGIN = MAX_TEMPLATE_AGE + MAX_AGE
"""Seconds of shares kept beyond the window, so ``at(template_time)`` of any share a
receiver accepts still sees the whole window the sender saw."""

_LAST = b"\xff" * 33  # sorts after every 32-byte share hash


@dataclass(frozen=True)
class WindowEntry:
    """What the window keeps of one verified federation share."""

    share_hash: bytes
    node_id: bytes
    payout_script: bytes
    work: int
    time: int

    @classmethod
    def from_share(cls, share: FedShare) -> WindowEntry:
        return cls(share.share_hash, share.node_id, share.payout_script, share.work, share.time)


@dataclass(frozen=True)
class NodeTotals:
    """One node's shares and work in the window."""

    shares: int
    work: int


@dataclass(frozen=True)
class WindowState:
    """The window as of ``as_of``: its shares, exact totals and share target."""

    as_of: float
    shares: int
    total_work: int
    nodes: Mapping[bytes, NodeTotals]
    """Node id -> totals, ordered by node id."""
    script_weights: Mapping[bytes, int]
    """Payout script -> work, ordered by script: what ``settlement.split_reward`` splits."""
    oldest_time: int
    oldest_work: int
    newest_time: int

    def node(self, node_id: bytes) -> NodeTotals:
        """``node_id``'s shares and work (zeros when it has none in the window)."""
        return self.nodes.get(node_id, NodeTotals(0, 0))

    def part(self, node_id: bytes) -> Fraction:
        """``node_id``'s exact part of the window's work (0 in an empty window)."""
        if not self.total_work:
            return Fraction(0)
        return Fraction(self.node(node_id).work, self.total_work)

    def share_target(self, share_interval: float, network_target: int) -> int:
        """The federation share target these shares give (``shares.share_target``)."""
        return share_target(
            self.total_work,
            self.oldest_work,
            self.oldest_time,
            self.newest_time,
            share_interval,
            network_target,
        )


def _add_to(totals: dict[bytes, int], key: bytes, amount: int) -> None:
    value = totals.get(key, 0) + amount
    if value:
        totals[key] = value
    else:
        del totals[key]


class FederationWindow:
    """Verified federation shares of the last ``duration`` seconds (plus the retention
    margin), with exact totals as of any recent time."""

    def __init__(
        self,
        duration: float,
        max_entries: int = DEFAULT_MAX_ENTRIES,
        retention_margin: float = RETENTION_MARGIN,
    ) -> None:
        if duration <= 0:
            raise ValueError(f"window duration must be > 0 seconds, got {duration!r}")
        if max_entries < 1:
            raise ValueError(f"max_entries must be at least 1, got {max_entries!r}")
        if retention_margin < 0:
            raise ValueError(f"retention margin must be >= 0, got {retention_margin!r}")
        self.duration = duration
        self.max_entries = max_entries
        self.retention_margin = retention_margin
        self._entries: dict[bytes, WindowEntry] = {}
        self._by_time: list[tuple[int, bytes]] = []
        self._node_shares: dict[bytes, int] = {}
        self._node_work: dict[bytes, int] = {}
        self._script_work: dict[bytes, int] = {}
        self._total_work = 0

    def __len__(self) -> int:
        """Shares retained (the window and its margin)."""
        return len(self._entries)

    def __contains__(self, share_hash: object) -> bool:
        return share_hash in self._entries

    def add(self, entry: WindowEntry | FedShare, now: float) -> bool:
        """Add a verified share; False if it is already held, older than what the window
        retains at ``now``, or the oldest when ``max_entries`` are held (then it is the
        one evicted). Prunes first."""
        if isinstance(entry, FedShare):
            entry = WindowEntry.from_share(entry)
        if entry.work <= 0:
            raise ValueError(f"share work must be positive, got {entry.work!r}")
        self.prune(now)
        if entry.share_hash in self._entries or entry.time < self._retained_from(now):
            return False
        self._entries[entry.share_hash] = entry
        bisect.insort(self._by_time, (entry.time, entry.share_hash))
        self._count(entry, +1)
        while len(self._entries) > self.max_entries:
            self._drop_oldest(1)
        return entry.share_hash in self._entries

    def _retained_from(self, now: float) -> float:
        return now - self.duration - self.retention_margin

    def prune(self, now: float) -> int:
        """Drop the shares too old to matter at ``now``; how many were dropped."""
        limit = self._retained_from(now)
        # (limit, b"") sorts after every entry older than limit and before the others.
        count = bisect.bisect_left(self._by_time, (limit, b""))
        self._drop_oldest(count)
        return count

    def _drop_oldest(self, count: int) -> None:
        if count <= 0:
            return
        for _, share_hash in self._by_time[:count]:
            self._count(self._entries.pop(share_hash), -1)
        del self._by_time[:count]

    def _count(self, entry: WindowEntry, sign: int) -> None:
        self._total_work += sign * entry.work
        _add_to(self._node_shares, entry.node_id, sign)
        _add_to(self._node_work, entry.node_id, sign * entry.work)
        _add_to(self._script_work, entry.payout_script, sign * entry.work)

    def at(self, as_of: float) -> WindowState:
        """The window as of ``as_of``: the shares whose time is within ``[as_of -
        duration, as_of]``. Exact for any ``as_of`` whose window is still retained."""
        low = bisect.bisect_left(self._by_time, (as_of - self.duration, b""))
        high = bisect.bisect_right(self._by_time, (as_of, _LAST))
        total = self._total_work
        shares = dict(self._node_shares)
        node_work = dict(self._node_work)
        scripts = dict(self._script_work)
        for _, share_hash in [*self._by_time[:low], *self._by_time[high:]]:
            entry = self._entries[share_hash]
            total -= entry.work
            _add_to(shares, entry.node_id, -1)
            _add_to(node_work, entry.node_id, -entry.work)
            _add_to(scripts, entry.payout_script, -entry.work)
        if low < high:
            oldest_time, oldest_hash = self._by_time[low]
            oldest_work = self._entries[oldest_hash].work
            newest_time = self._by_time[high - 1][0]
        else:
            oldest_time = oldest_work = newest_time = 0
        return WindowState(
            as_of=as_of,
            shares=max(0, high - low),
            total_work=total,
            nodes=MappingProxyType(
                {n: NodeTotals(shares[n], node_work[n]) for n in sorted(shares)}
            ),
            script_weights=MappingProxyType({s: scripts[s] for s in sorted(scripts)}),
            oldest_time=oldest_time,
            oldest_work=oldest_work,
            newest_time=newest_time,
        )

    def entries(self) -> list[WindowEntry]:
        """Every retained entry, oldest first: what the node persists so that after a
        restart (``add`` each back) its coinbases still pay the window it had."""
        return [self._entries[share_hash] for _, share_hash in self._by_time]

    def script_weights(self, as_of: float) -> Mapping[bytes, int]:
        """Payout script -> work of the window as of ``as_of`` (``at(as_of)``)."""
        return self.at(as_of).script_weights

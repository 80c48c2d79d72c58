"""The federation window: the verified federation shares of the last ``federation.window``.

It holds one entry per share (deduplicated by share hash) and keeps running integer
totals: the whole window's work, each node's shares and work, each payout script's work
(what settlement splits by). Entries leave when their time falls out of the window
(``prune(now)``) or, beyond ``max_entries``, oldest first, so memory is bounded whatever
peers send. All weights are integers (``share_work``); parts are exact ``Fraction``s.
"""

from __future__ import annotations

import heapq
from dataclasses import dataclass
from fractions import Fraction

from otedama.federation.shares import FedShare, share_target

__all__ = ["DEFAULT_MAX_ENTRIES", "FederationWindow", "NodeTotals", "WindowEntry"]

DEFAULT_MAX_ENTRIES = 50_000
"""About 70 times what a 2 h window holds at one share per 10 s."""


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


class FederationWindow:
    """Verified federation shares of the last ``duration`` seconds, with exact totals."""

    def __init__(self, duration: float, max_entries: int = DEFAULT_MAX_ENTRIES) -> None:
        if duration <= 0:
            raise ValueError(f"window duration must be > 0 seconds, got {duration!r}")
        if max_entries < 1:
            raise ValueError(f"max_entries must be at least 1, got {max_entries!r}")
        self.duration = duration
        self.max_entries = max_entries
        self._entries: dict[bytes, WindowEntry] = {}
        self._by_time: list[tuple[int, bytes]] = []
        self._nodes: dict[bytes, NodeTotals] = {}
        self._scripts: dict[bytes, int] = {}
        self._total_work = 0
        self._newest_time = 0

    def __len__(self) -> int:
        return len(self._entries)

    def __contains__(self, share_hash: object) -> bool:
        return share_hash in self._entries

    @property
    def total_work(self) -> int:
        """Summed work of every share in the window."""
        return self._total_work

    def add(self, entry: WindowEntry | FedShare, now: float) -> bool:
        """Add a verified share; False if it is already in the window, older than the
        window at ``now``, or the oldest when ``max_entries`` are held (then it is the
        one evicted). Prunes first."""
        if isinstance(entry, FedShare):
            entry = WindowEntry.from_share(entry)
        self.prune(now)
        if entry.share_hash in self._entries or entry.time < now - self.duration:
            return False
        if entry.work <= 0:
            raise ValueError(f"share work must be positive, got {entry.work!r}")
        self._entries[entry.share_hash] = entry
        heapq.heappush(self._by_time, (entry.time, entry.share_hash))
        self._count(entry, +1)
        self._newest_time = max(self._newest_time, entry.time)
        while len(self._entries) > self.max_entries:
            self._pop_oldest()
        return entry.share_hash in self._entries

    def prune(self, now: float) -> int:
        """Drop the shares whose time is before ``now - duration``; how many were dropped."""
        dropped = 0
        limit = now - self.duration
        while self._by_time and self._by_time[0][0] < limit:
            self._pop_oldest()
            dropped += 1
        return dropped

    def _pop_oldest(self) -> None:
        _, share_hash = heapq.heappop(self._by_time)
        entry = self._entries.pop(share_hash)
        self._count(entry, -1)
        if not self._entries:
            self._newest_time = 0

    def _count(self, entry: WindowEntry, sign: int) -> None:
        self._total_work += sign * entry.work
        node = self._nodes.get(entry.node_id, NodeTotals(0, 0))
        node = NodeTotals(node.shares + sign, node.work + sign * entry.work)
        if node.shares:
            self._nodes[entry.node_id] = node
        else:
            del self._nodes[entry.node_id]
        script_work = self._scripts.get(entry.payout_script, 0) + sign * entry.work
        if script_work:
            self._scripts[entry.payout_script] = script_work
        else:
            del self._scripts[entry.payout_script]

    def node(self, node_id: bytes) -> NodeTotals:
        """``node_id``'s shares and work (zeros when it has none in the window)."""
        return self._nodes.get(node_id, NodeTotals(0, 0))

    def nodes(self) -> dict[bytes, NodeTotals]:
        """Every node in the window, ordered by node id."""
        return {node_id: self._nodes[node_id] for node_id in sorted(self._nodes)}

    def part(self, node_id: bytes) -> Fraction:
        """``node_id``'s exact part of the window's work (0 in an empty window)."""
        if not self._total_work:
            return Fraction(0)
        return Fraction(self.node(node_id).work, self._total_work)

    def script_weights(self) -> dict[bytes, int]:
        """Payout script -> work, what ``settlement.split_reward`` splits by."""
        return {script: self._scripts[script] for script in sorted(self._scripts)}

    def share_target(self, share_interval: float, network_target: int) -> int:
        """The federation share target this window gives (``shares.share_target``)."""
        if not self._by_time:
            return share_target(0, 0, 0, 0, share_interval, network_target)
        oldest_time, oldest_hash = self._by_time[0]
        return share_target(
            self._total_work,
            self._entries[oldest_hash].work,
            oldest_time,
            self._newest_time,
            share_interval,
            network_target,
        )

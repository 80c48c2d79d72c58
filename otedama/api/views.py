"""The node's read models as the API sees them, refreshed off the request path.

:class:`NodeView` holds what the handlers read: the pool core's in-memory counters, the
chain tip (from the template source), and a :class:`PoolSnapshot` of the ledger side
that a timer refreshes every few seconds on the database threads. The same timer
publishes the WebSocket's ``pool`` topic, the ``miner:<address>`` topics that have
subscribers. ``blocks`` events are published as they happen: found from the pool core's
``on_block`` callback, confirmed / orphaned / rejected from the block tracker's
``on_status`` hook.
"""

from __future__ import annotations

from collections.abc import Callable
from dataclasses import dataclass, field
from functools import partial
from typing import Any, Protocol, TypeVar, cast

from sqlalchemy import Connection
from twisted.application.internet import TimerService
from twisted.internet.defer import Deferred
from twisted.internet.interfaces import IReactorTime
from twisted.logger import Logger

from otedama.api import queries
from otedama.api.events import EventBus
from otedama.chain.target import bits_to_target, target_to_difficulty

T = TypeVar("T")

#: How often the snapshot is refreshed and ``pool`` / ``miner:`` topics are published.
SNAPSHOT_INTERVAL = 5.0
#: Workers with a share this recent count as active (pool core counters).
ACTIVE_SECONDS = 600.0


class Runner(Protocol):
    async def run(self, fn: Callable[[Connection], T]) -> T: ...


@dataclass
class ChainTip:
    """The newest block template's height and network difficulty."""

    height: int | None = None
    difficulty: float | None = None
    updated_at: float | None = None

    def on_template(self, template: Any) -> None:
        self.height = int(template.height) - 1
        self.difficulty = float(target_to_difficulty(template.target))


@dataclass
class PoolSnapshot:
    """The ledger's side of /pool, as of ``taken_at`` (None before the first refresh)."""

    taken_at: float | None = None
    data: dict[str, Any] = field(default_factory=dict)
    miners: int = 0
    workers: int = 0


def live_counts(core: Any, now: float) -> tuple[int, int]:
    """Active miners (addresses) and workers in the pool core's counters."""
    cutoff = now - ACTIVE_SECONDS
    addresses = set()
    workers = 0
    for name, stats in reversed(core.stats.workers.items()):
        if stats.last_share < cutoff:
            break  # least recently seen first: the rest are older
        workers += 1
        addresses.add(name.partition(".")[0])
    return len(addresses), workers


class NodeView(TimerService):
    """The API's read models, refreshed every ``interval`` seconds.

    A failing refresh is logged and counted; the timer goes on.
    """

    log = Logger()

    def __init__(
        self,
        store: Runner,
        core: Any,
        bus: EventBus,
        clock: IReactorTime,
        interval: float = SNAPSHOT_INTERVAL,
    ) -> None:
        super().__init__(interval, self._tick)
        self.clock = clock
        self.store = store
        self.core = core
        self.bus = bus
        self.tip = ChainTip()
        self.snapshot = PoolSnapshot()
        self.failures = 0
        self._now: Callable[[], float] = cast(Any, clock).seconds
        self.last_refresh: Deferred[None] | None = None
        #: The latest status event's read (tests wait on it).
        self.last_status: Deferred[None] | None = None

    def now(self) -> float:
        return self._now()

    def _tick(self) -> Deferred[None]:
        self.last_refresh = Deferred.fromCoroutine(self.refresh())
        return self.last_refresh

    async def refresh(self) -> None:
        """Refresh the snapshot and publish the periodic topics."""
        try:
            await self._refresh()
        except Exception:
            self.failures += 1
            self.log.failure("API snapshot refresh failed ({count} so far)", count=self.failures)

    async def _refresh(self) -> None:
        now = self._now()
        data = await self.store.run(partial(queries.pool_snapshot, now=now))
        miners, workers = live_counts(self.core, now)
        self.snapshot = PoolSnapshot(now, data, miners, workers)
        self.bus.publish("pool", self.pool_summary())
        for topic in self.bus.topics("miner:"):
            address = topic.partition(":")[2]
            summary = await self.store.run(partial(queries.miner, address=address, now=now))
            self.bus.publish(topic, summary)

    def effort(self) -> float | None:
        """The current round's effort: share difficulty since the last block / network's."""
        difficulty = self.tip.difficulty
        round_data = self.snapshot.data.get("round")
        if not difficulty or not round_data:
            return None
        return float(round_data["share_difficulty"]) / difficulty

    def pool_summary(self) -> dict[str, Any]:
        """The live part of /pool (also the ``pool`` topic's payload)."""
        data = self.snapshot.data
        return {
            "hashrate": data.get("hashrate", {"10m": 0.0, "1h": 0.0, "24h": 0.0}),
            "miners": self.snapshot.miners,
            "workers": self.snapshot.workers,
            "shares_10m": data.get("shares_10m", 0),
            "round_effort": self.effort(),
            "height": self.tip.height,
            "network_difficulty": self.tip.difficulty,
            "updated_at": self.snapshot.taken_at,
        }

    def on_block(self, share: Any, result: Any) -> None:
        """The pool core's ``on_block`` callback: publish, then store the block's effort."""
        block = found_block(share)
        self.bus.publish("blocks", {"event": "found", "block": block})
        block_hash, difficulty = block["hash"], block["network_difficulty"]
        if difficulty:
            record = queries.EffortRecord(block_hash, float(share.time), difficulty)
            stored = Deferred.fromCoroutine(
                self.store.run(partial(queries.record_effort, found=record))
            )
            stored.addErrback(
                lambda failure: self.log.failure(
                    "could not store the effort of block {hash}", failure, hash=block_hash
                )
            )

    def on_status(self, block_hash: str, status: str, confirmations: int) -> None:
        """The block tracker's ``on_status`` hook: publish the block with its new status."""
        self.last_status = Deferred.fromCoroutine(
            self._publish_status(block_hash, status, confirmations)
        )

    async def _publish_status(self, block_hash: str, status: str, confirmations: int) -> None:
        try:
            block = await self.store.run(partial(queries.block_by_hash, block_hash=block_hash))
        except Exception:
            self.log.failure("could not read block {hash} for its status event", hash=block_hash)
            block = None
        if block is None:
            block = {"hash": block_hash, "status": status, "confirmations": confirmations}
        self.bus.publish("blocks", {"event": status, "block": block})


def found_block(share: Any) -> dict[str, Any]:
    """A found block candidate as the ``blocks`` topic shows it (before the ledger has it)."""
    bits = int.from_bytes(share.header[72:76], "little") if len(share.header) == 80 else 0
    difficulty = float(target_to_difficulty(bits_to_target(bits))) if bits else 0.0
    return {
        "height": int(share.height),
        "hash": share.block_hash[::-1].hex(),
        "status": "found",
        "finder": share.address,
        "worker": share.worker_name,
        "found_at": float(share.time),
        "network_difficulty": difficulty,
    }

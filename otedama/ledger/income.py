"""Federation income: what the chain paid this node, whoever found the block.

In a federation every node's coinbase pays every node in the window, so this node's
money arrives in blocks other nodes found. Nobody's word about it is believed: the
``IncomeWatcher`` reads each new block of the best chain from this node's own daemon,
sums the coinbase outputs to this node's payout script, and records a paying block as a
``blocks`` row with that amount as its reward (``record_block``, idempotent on the
hash) plus a ``federation_income`` row naming the block's height, hash and the node id
its coinbase commits to. From there the block tracker takes it through maturity and
orphaning like a block this node found, and its credits go to this node's miners by
this node's own reward system and fee. A block this node found is usually recorded by
the pool core first (the watcher then only adds the income row).

Reorganisations: each tick re-reads the last ``RESCAN_DEPTH`` heights, so a block that
replaced a scanned one is seen; the replaced one is orphaned by the block tracker.

This module also persists the federation's state for restarts: the window's entries
(``save_window`` / ``load_window``) and the peers' reputation evidence
(``save_reputation`` / ``load_reputation``), as plain tuples (the ledger does not import
the federation).
"""

from __future__ import annotations

from collections.abc import Awaitable, Callable, Iterable, Sequence
from dataclasses import dataclass
from functools import partial
from typing import TYPE_CHECKING, Any, Protocol

from sqlalchemy import Connection, delete, func, insert, select
from twisted.application.internet import TimerService
from twisted.internet.defer import Deferred
from twisted.internet.interfaces import IReactorTime
from twisted.logger import Logger

from otedama.chain.coinbase import node_commitments
from otedama.chain.serialize import Transaction, TxOut, read_varint
from otedama.ledger.blocks import FoundBlock, RecordedBlock, RewardPolicy, record_block
from otedama.ledger.tables import federation_income, federation_peers, federation_window
from otedama.ops.outage import OutageLog

if TYPE_CHECKING:
    from otedama.ledger.store import LedgerStore

__all__ = [
    "FEDERATION_FINDER",
    "RESCAN_DEPTH",
    "FederationState",
    "Income",
    "IncomeWatcher",
    "coinbase_of_block",
    "income_of",
    "load_reputation",
    "load_window",
    "record_income",
    "save_reputation",
    "save_window",
]

RESCAN_DEPTH = 6
"""Heights below the tip re-read on every tick (a reorganisation replaces them)."""
MAX_BLOCKS_PER_TICK = 50
"""Blocks read per tick at most, so catching up never floods the daemon."""
START_DEPTH = 20
"""On a first start (no income recorded yet) the watcher begins this far below the tip."""
FEDERATION_FINDER = "federation"
"""``blocks.finder_address`` of income from a block this node's miners did not find."""

WindowRow = tuple[bytes, bytes, bytes, int, int]
"""(share hash, node id, payout script, work, time)."""
PeerRow = tuple[bytes, float, float, float]
"""(peer key, good, bad, updated)."""


def coinbase_of_block(raw: bytes) -> Transaction:
    """The coinbase of a serialized block (the first transaction after the header)."""
    _, offset = read_varint(raw, 80)
    coinbase, _ = Transaction.parse_from(raw, offset)
    return coinbase


def income_of(outputs: Sequence[TxOut], payout_script: bytes) -> int:
    """Satoshis the outputs pay ``payout_script``."""
    return sum(out.value for out in outputs if out.script_pubkey == payout_script)


@dataclass(frozen=True)
class Income:
    """One block's payment to this node, as read from the chain."""

    height: int
    hash: str
    amount: int
    finder_node_id: str
    seen_at: float


def record_income(
    connection: Connection, income: Income, policy: RewardPolicy
) -> tuple[RecordedBlock, bool]:
    """Record ``income``'s block (unless the pool core did) and its income row, in one
    transaction; returns the block's record and whether the income row is new."""
    found = FoundBlock(
        height=income.height,
        hash=income.hash,
        finder_address=FEDERATION_FINDER,
        finder_worker=income.finder_node_id,
        reward=income.amount,
        found_at=income.seen_at,
    )
    recorded = record_block(connection, found, policy, income.seen_at)
    known = connection.execute(
        select(federation_income.c.id).where(federation_income.c.hash == income.hash)
    ).first()
    if known is not None:
        return recorded, False
    connection.execute(
        insert(federation_income),
        {
            "block_id": recorded.block_id,
            "height": income.height,
            "hash": income.hash,
            "amount": income.amount,
            "finder_node_id": income.finder_node_id,
            "seen_at": income.seen_at,
        },
    )
    return recorded, True


def last_income_height(connection: Connection) -> int | None:
    """The height of the latest income recorded (None: none yet)."""
    value = connection.execute(select(func.max(federation_income.c.height))).scalar()
    return None if value is None else int(value)


class IncomeChain(Protocol):
    """What the watcher needs of the daemon (``BitcoindClient`` offers it)."""

    def get_block_count(self) -> Awaitable[int]: ...
    def get_block_hash(self, height: int) -> Awaitable[str]: ...
    def get_block(self, hash_hex: str, verbosity: int = 1) -> Awaitable[Any]: ...


class IncomeWatcher(TimerService):
    """Every ``interval`` seconds, read the new blocks' coinbases for this node's income.

    A failing tick (daemon or database away) is logged once per outage; the next tick
    starts again where the last good one ended.
    """

    log = Logger()

    def __init__(
        self,
        store: LedgerStore,
        chain: IncomeChain,
        clock: IReactorTime,
        payout_script: bytes,
        policy: Callable[[], RewardPolicy],
        interval: float = 10.0,
    ) -> None:
        super().__init__(interval, self._tick)
        self.store = store
        self.chain = chain
        self._clock: Any = clock
        self.payout_script = payout_script
        #: The policy in force (the pool's, which a reload may change).
        self.policy = policy
        #: Height -> hash of the blocks read (the last ``RESCAN_DEPTH`` + the new ones).
        self._seen: dict[int, str] = {}
        self._next: int | None = None
        self.last_tick: Deferred[None] | None = None
        self._outage = OutageLog(
            "reading federation income from the chain", f"every {interval:g} s"
        )

    def _tick(self) -> Deferred[None]:
        self.last_tick = Deferred.fromCoroutine(_guarded(self.scan, self._outage, self.log))
        return self.last_tick

    async def scan(self) -> list[Income]:
        """Read the blocks not read yet (and re-read the last few); record new income."""
        tip = await self.chain.get_block_count()
        if self._next is None:
            last = await self.store.run(last_income_height)
            self._next = max(0, tip - START_DEPTH) if last is None else last + 1
        start = max(0, min(self._next, tip - RESCAN_DEPTH + 1))
        found: list[Income] = []
        for height in range(start, min(tip, start + MAX_BLOCKS_PER_TICK - 1) + 1):
            block_hash = await self.chain.get_block_hash(height)
            if self._seen.get(height) == block_hash:
                continue
            income = await self._read(height, block_hash)
            if income is not None:
                recorded, new = await self.store.run(
                    partial(record_income, income=income, policy=self.policy())
                )
                if new:
                    found.append(income)
                    self.log.info(
                        "federation income: block {height} {hash} paid this node {amount} sat "
                        "(coinbase of node {finder}); {note}",
                        height=height,
                        hash=block_hash,
                        amount=income.amount,
                        finder=income.finder_node_id or "unknown",
                        note="recorded pending" if recorded.created else "block already known",
                    )
            self._seen[height] = block_hash
            self._next = height + 1
        for height in [h for h in self._seen if h < (self._next or 0) - RESCAN_DEPTH]:
            del self._seen[height]
        return found

    async def _read(self, height: int, block_hash: str) -> Income | None:
        raw = bytes.fromhex(await self.chain.get_block(block_hash, 0))
        coinbase = coinbase_of_block(raw)
        amount = income_of(coinbase.outputs, self.payout_script)
        if amount == 0:
            return None
        committed = node_commitments(coinbase.outputs)
        return Income(
            height=height,
            hash=block_hash,
            amount=amount,
            finder_node_id=committed[0].hex() if len(committed) == 1 else "",
            seen_at=float(self._clock.seconds()),
        )


async def _guarded(work: Callable[[], Awaitable[Any]], outage: OutageLog, log: Logger) -> None:
    """Periodic work that survives its own failures: logged once per outage."""
    try:
        await work()
    except Exception:
        outage.failed(log)
    else:
        outage.succeeded(log)


# -- federation state across restarts -------------------------------------------------------


def save_window(connection: Connection, added: Iterable[WindowRow], keep_from: int) -> None:
    """Store new window entries and forget the ones older than ``keep_from``."""
    rows = [
        {
            "share_hash": share_hash,
            "node_id": node_id,
            "payout_script": script,
            "work": str(work),
            "time": time,
        }
        for share_hash, node_id, script, work, time in added
    ]
    if rows:
        hashes = [row["share_hash"] for row in rows]
        held = set(
            connection.execute(
                select(federation_window.c.share_hash).where(
                    federation_window.c.share_hash.in_(hashes)
                )
            ).scalars()
        )
        fresh = [row for row in rows if row["share_hash"] not in held]
        if fresh:
            connection.execute(insert(federation_window), fresh)
    connection.execute(delete(federation_window).where(federation_window.c.time < keep_from))


def load_window(connection: Connection, keep_from: int) -> list[WindowRow]:
    """The stored window entries from ``keep_from`` on, oldest first."""
    rows = connection.execute(
        select(federation_window)
        .where(federation_window.c.time >= keep_from)
        .order_by(federation_window.c.time)
    )
    return [(r.share_hash, r.node_id, r.payout_script, int(r.work), int(r.time)) for r in rows]


def save_reputation(connection: Connection, records: Iterable[PeerRow]) -> None:
    """Replace the stored reputation evidence with ``records``."""
    connection.execute(delete(federation_peers))
    rows = [
        {"peer_key": key, "good": good, "bad": bad, "updated": updated}
        for key, good, bad, updated in records
    ]
    if rows:
        connection.execute(insert(federation_peers), rows)


def load_reputation(connection: Connection) -> list[PeerRow]:
    """The stored reputation evidence."""
    rows = connection.execute(select(federation_peers))
    return [(r.peer_key, float(r.good), float(r.bad), float(r.updated)) for r in rows]


def _save_state(
    connection: Connection, window: list[WindowRow], keep_from: int, peers: list[PeerRow]
) -> None:
    save_window(connection, window, keep_from)
    save_reputation(connection, peers)


def _load_state(connection: Connection, keep_from: int) -> tuple[list[WindowRow], list[PeerRow]]:
    return load_window(connection, keep_from), load_reputation(connection)


class FederationState(TimerService):
    """Keeps the federation window and the peers' reputation in the database.

    ``whenReady`` loads both (so it belongs in the start order before the templates and
    the federation service); then every ``interval`` seconds, and at stop, the new window
    entries (``drain_window``) and the reputation evidence (``reputation``) are written
    on the store's threads. A failed save keeps its entries for the next one.
    """

    log = Logger()

    def __init__(
        self,
        store: LedgerStore,
        clock: IReactorTime,
        *,
        drain_window: Callable[[], list[WindowRow]],
        reputation: Callable[[], list[PeerRow]],
        restore: Callable[[list[WindowRow], list[PeerRow]], None],
        retain: float,
        interval: float = 60.0,
    ) -> None:
        super().__init__(interval, self._tick)
        self.setName("federation-state")
        self.store = store
        self._clock: Any = clock
        self.drain_window = drain_window
        self.reputation = reputation
        self.restore = restore
        self.retain = retain
        self._unsaved: list[WindowRow] = []
        self.last_save: Deferred[None] | None = None
        self._outage = OutageLog(
            "saving the federation window and reputation", f"every {interval:g} s"
        )

    def _keep_from(self) -> int:
        return int(self._clock.seconds() - self.retain)

    def whenReady(self) -> Deferred[None]:
        return Deferred.fromCoroutine(self.load())

    async def load(self) -> None:
        window, peers = await self.store.run(partial(_load_state, keep_from=self._keep_from()))
        self.restore(window, peers)
        self.log.info(
            "federation state restored: {shares} window shares, {peers} peers' reputation",
            shares=len(window),
            peers=len(peers),
        )

    def _tick(self) -> Deferred[None]:
        self.last_save = Deferred.fromCoroutine(_guarded(self.save, self._outage, self.log))
        return self.last_save

    async def save(self) -> None:
        """Write the new window entries and the reputation now."""
        self._unsaved.extend(self.drain_window())
        rows, self._unsaved = self._unsaved, []
        try:
            await self.store.run(
                partial(
                    _save_state, window=rows, keep_from=self._keep_from(), peers=self.reputation()
                )
            )
        except Exception:
            self._unsaved = rows + self._unsaved
            raise

    def stopService(self) -> Deferred[None]:
        super().stopService()
        return Deferred.fromCoroutine(_guarded(self.save, self._outage, self.log))

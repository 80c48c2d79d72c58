"""``LedgerStore``: the ledger's async face to the rest of the node.

One object owns the database (engine + dedicated thread pool), the share batcher and
its spool. Everything that touches money runs as a function of a SQLAlchemy
``Connection`` inside one transaction on a worker thread, through :meth:`LedgerStore.run`.
"""

from __future__ import annotations

from collections.abc import Callable
from dataclasses import replace
from functools import partial
from pathlib import Path
from typing import Any, TypeVar, cast

from sqlalchemy import Connection
from twisted.application.service import Service
from twisted.internet.defer import Deferred
from twisted.internet.interfaces import IReactorFromThreads, IReactorTime
from twisted.internet.task import LoopingCall
from twisted.logger import Logger

from otedama.ledger import blocks, stats
from otedama.ledger.db import (
    Database,
    DatabaseError,
    MigrationState,
    describe_error,
    migration_state,
)
from otedama.ledger.files import FileWorker
from otedama.ledger.shares import (
    DEFAULT_SPOOL_MAX_BYTES,
    IngestHealth,
    ShareBatcher,
    ShareRecord,
    ShareSpool,
    ShareWriter,
    is_connection_error,
)

T = TypeVar("T")

DEFAULT_CONFIG_PATH = "/etc/otedama.yaml"


class SchemaOutdated(DatabaseError):
    """The database schema is not the one this version needs."""


class LedgerStore(Service):
    """The ledger: shares, blocks, credits and payouts in one database.

    ``run(fn)`` calls ``fn(connection)`` in one transaction on a worker thread and
    returns its result, so callers (the payout processor, the API) compose their own
    queries against :mod:`otedama.ledger.tables` with the same guarantees. Accepted
    shares go in through :meth:`add_share`, which never blocks: they are batched, and
    spooled to ``spool_dir`` while the database is unreachable.

    As a ``Service`` it starts with its parent; stop Stratum before it so that the last
    shares are flushed (``MultiService`` does not order its children's stops).
    """

    log = Logger()

    def __init__(
        self,
        reactor: IReactorFromThreads,
        url: str,
        pool_size: int = 5,
        *,
        spool_dir: Path | str,
        spool_max_bytes: int = DEFAULT_SPOOL_MAX_BYTES,
        batch_size: int = 1000,
        flush_interval: float = 1.0,
        retry_interval: float = 5.0,
        clock: IReactorTime | None = None,
        config_path: str = DEFAULT_CONFIG_PATH,
        pplns_window: float | None = None,
    ) -> None:
        self.db = Database(reactor, url, pool_size)
        self.config_path = config_path
        # Any: mypy without the zope plugin mistypes Interface methods.
        self._clock: Any = clock if clock is not None else cast(IReactorTime, reactor)
        self.spool = ShareSpool(Path(spool_dir), spool_max_bytes)
        #: The PPLNS window's running totals drop shares older than this (None: PROP/SOLO,
        #: the totals keep every share and blocks are weighed by the scan).
        self.writer = ShareWriter(self.db.engine, self.spool, pplns_window)
        #: Where the spool and the block queue write and fsync, off the reactor.
        self.files = FileWorker(reactor)
        self.batcher = ShareBatcher(
            self.db,
            self.writer,
            self._clock,
            batch_size,
            flush_interval,
            retry_interval,
            files=self.files,
        )
        self.block_queue = blocks.BlockQueue(Path(spool_dir) / "blocks-waiting.jsonl")
        self._recording_waiting = False
        #: The latest timer-driven retry of queued blocks (tests wait on it).
        self.last_block_retry: Deferred[None] | None = None
        self._block_retry = LoopingCall(self._retry_tick)
        self._block_retry.clock = self._clock
        self._stopped: Deferred[None] | None = None

    @classmethod
    def from_config(cls, reactor: IReactorFromThreads, config: Any) -> LedgerStore:
        """A store for a loaded :class:`otedama.config.Config`."""
        source = getattr(config, "source", None)
        rewards = config.pool.rewards
        return cls(
            reactor,
            config.database_url,
            config.database_pool_size,
            spool_dir=Path(config.app.data_dir) / "share-spool",
            config_path=str(source) if source is not None else DEFAULT_CONFIG_PATH,
            pplns_window=rewards.window if str(rewards.system).upper() == "PPLNS" else None,
        )

    def start(self) -> None:
        """Start the worker threads and the batcher (which replays any spool at once)."""
        self.db.start()
        self.batcher.start()
        if not self._block_retry.running:
            self._block_retry.start(self.batcher.retry_interval, now=False)

    async def stop(self) -> None:
        """Flush shares, then refuse new work, finish what is in flight, release threads."""
        if self._block_retry.running:
            self._block_retry.stop()
        await self.batcher.stop()
        await self.db.stop()
        self.spool.close()

    def startService(self) -> None:
        super().startService()
        self.start()

    def stopService(self) -> Deferred[None]:
        super().stopService()
        if self._stopped is None:
            self._stopped = Deferred.fromCoroutine(self.stop())
        return self._stopped

    async def run(self, fn: Callable[[Connection], T]) -> T:
        """Run ``fn(connection)`` in one transaction on a worker thread; commit on return."""
        return await self.db.run(fn)

    def run_deferred(self, fn: Callable[[Connection], T]) -> Deferred[T]:
        """:meth:`run` as a Deferred, for Twisted callers."""
        return Deferred.fromCoroutine(self.run(fn))

    async def migration_state(self) -> MigrationState:
        """Where the schema stands compared with this version's migrations."""
        return await self.run(migration_state)

    async def check_schema(self) -> MigrationState:
        """Refuse to start on an outdated or empty schema, naming the command that fixes it.

        Raises :class:`SchemaOutdated`, or :class:`DatabaseError` saying precisely why the
        database cannot be reached.
        """
        try:
            state = await self.migration_state()
        except Exception as e:
            if isinstance(e, DatabaseError):
                raise
            raise DatabaseError(
                f"cannot use the ledger database {self.db.display_url}: "
                f"{describe_error(e, self.db.url)}"
            ) from e
        if not state.is_current:
            raise SchemaOutdated(
                f"ledger database {self.db.display_url}: {state.describe()}; "
                f"run `otedama migrate up --config {self.config_path}` first"
            )
        return state

    # -- shares -------------------------------------------------------------------------

    def add_share(self, record: ShareRecord) -> None:
        """Record one accepted share (batched; never blocks, never raises for the database)."""
        self.batcher.add(record)

    async def flush_shares(self) -> None:
        """Write buffered shares now and wait until each batch is stored or spooled."""
        await self.batcher.flush()

    def health(self) -> IngestHealth:
        """``ok``, or ``degraded`` with the reason (database unreachable, spool in use)."""
        health = self.batcher.health()
        if self.block_queue.has_data():
            waiting = self.block_queue.count
            reason = f"{waiting} found blocks waiting for the ledger database"
            health = replace(
                health,
                status="degraded",
                reason=f"{health.reason}; {reason}" if health.reason else reason,
            )
        return health

    # -- blocks -------------------------------------------------------------------------

    async def record_block(
        self, found: blocks.FoundBlock, policy: blocks.RewardPolicy
    ) -> blocks.RecordedBlock:
        """Record a found block and its credits in one transaction (idempotent on the hash).

        Buffered and spooled shares are written first, so the window is complete. When
        the database is unavailable or refuses the block (or spooled shares are not back
        in it yet) the block goes to the on-disk block queue instead and is recorded, in
        the order found, as soon as it can be: the result then says ``queued``.
        """
        await self.batcher.flush()
        if self.spool.has_data():
            await self.batcher.replay_now()
        reason = self._cannot_record_now()
        if reason is None:
            try:
                recorded = await self.run(
                    partial(
                        blocks.record_block, found=found, policy=policy, now=self._clock.seconds()
                    )
                )
            except Exception as e:
                reason = describe_error(e, self.db.url)
                if not is_connection_error(e):
                    self.log.failure(
                        "the database refused block {height} {hash}; queueing it to retry",
                        height=found.height,
                        hash=found.hash,
                    )
                    reason = f"the database refused it: {reason}"
            else:
                self._log_recorded(found, policy, recorded)
                return recorded
        await self.files.run(partial(self.block_queue.add, found, policy))
        self.log.error(
            "block {height} {hash} kept in {file} until the ledger database is back ({reason}); "
            "its credits will be recorded then",
            height=found.height,
            hash=found.hash,
            file=str(self.block_queue.path),
            reason=reason,
        )
        return blocks.RecordedBlock(0, False, None, None, queued=True)

    def _cannot_record_now(self) -> str | None:
        if self.writer.degraded_reason is not None:
            return self.writer.degraded_reason
        if self.spool.has_data():
            return "spooled shares are not back in the database yet"
        if self.block_queue.has_data():
            return "earlier found blocks are still waiting"
        return None

    def _log_recorded(
        self, found: blocks.FoundBlock, policy: blocks.RewardPolicy, recorded: blocks.RecordedBlock
    ) -> None:
        if recorded.created and recorded.split is not None:
            # Debug: the pool core's line for the found block says what was recorded.
            self.log.debug(
                "block {height} {hash} recorded: {reward} sats, fee {fee}, "
                "{count} addresses credited ({scheme})",
                height=found.height,
                hash=found.hash,
                reward=found.reward,
                fee=recorded.split.fee,
                count=len(recorded.split.credits),
                scheme=policy.scheme.value,
            )

    async def record_waiting_blocks(self) -> int:
        """Record the queued blocks, oldest first, once shares are all back; returns how many."""
        if self._recording_waiting or not self.block_queue.has_data():
            return 0
        if self.writer.degraded_reason is not None or self.spool.has_data():
            return 0
        self._recording_waiting = True
        done: set[str] = set()
        try:
            for found, policy in await self.files.run(self.block_queue.load):
                try:
                    recorded = await self.run(
                        partial(
                            blocks.record_block,
                            found=found,
                            policy=policy,
                            now=self._clock.seconds(),
                        )
                    )
                except Exception as e:
                    if not is_connection_error(e):
                        self.log.failure(
                            "cannot record queued block {height} {hash}; it stays queued",
                            height=found.height,
                            hash=found.hash,
                        )
                    break
                done.add(found.hash)
                self._log_recorded(found, policy, recorded)
        finally:
            if done:
                await self.files.run(partial(self.block_queue.remove, done))
            self._recording_waiting = False
        return len(done)

    def _retry_tick(self) -> Deferred[None]:
        self.last_block_retry = Deferred.fromCoroutine(self._retry_waiting_blocks())
        return self.last_block_retry

    async def _retry_waiting_blocks(self) -> None:
        try:
            await self.record_waiting_blocks()
        except Exception:
            self.log.failure("retrying queued blocks failed")

    async def get_block(self, block_hash: str) -> blocks.BlockRow | None:
        """The recorded block with this display hash."""
        return await self.run(partial(blocks.get_block, block_hash=block_hash))

    # -- reads --------------------------------------------------------------------------

    async def balance(self, address: str) -> stats.Balance:
        """One address's immature / spendable / paid satoshis."""
        return await self.run(partial(stats.address_balance, address=address))

    async def balances(self) -> dict[str, stats.Balance]:
        """Every address's balance."""
        return await self.run(stats.balances)

    async def pool_stats(self, window: float = 600.0) -> stats.PoolStats:
        """The pool at a glance over the last ``window`` seconds."""
        return await self.run(partial(stats.pool_stats, now=self._clock.seconds(), window=window))

    async def worker_hashrates(
        self, window: float = 600.0, address: str | None = None
    ) -> list[stats.WorkerRate]:
        """Per-worker hashrate over the last ``window`` seconds."""
        return await self.run(
            partial(
                stats.worker_hashrates, now=self._clock.seconds(), window=window, address=address
            )
        )

    async def payout_history(
        self, address: str | None = None, limit: int = 20
    ) -> list[stats.PayoutRecord]:
        """Newest payouts first (the pool's batches, or one address's items)."""
        return await self.run(partial(stats.payout_history, address=address, limit=limit))

    async def recent_blocks(self, limit: int = 10) -> list[stats.BlockSummary]:
        """The newest blocks found."""
        return await self.run(partial(stats.recent_blocks, limit=limit))

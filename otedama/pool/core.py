"""The pool core: where shares, blocks and rewards meet.

Stratum hands every accepted share and every block candidate here (`ShareSink`). The
core counts shares per worker (pruned by age and by count), passes them to the ledger,
submits blocks to the chain at once, and records every solved candidate as a pending
block, whatever ``submitblock`` answers: the ledger's block tracker settles it against
the chain (in the chain: credited as usual; absent: marked rejected, which moves no
money). It also decides what the coinbase pays: the pool's wallet (PPLNS, PROP) or the
finder (SOLO).

With the federation enabled, each template's coinbase is the federation's settlement
split of the reward (this node first, then every node in the federation window, then the
node-id commitment), from the window as of a whole-second template time a moment back
(``SETTLEMENT_LAG``, so shares still in flight do not make two nodes' views differ) that
the core remembers per coinbase; a share that meets the federation share target is handed to the federation with
that template time, and a found block is gossiped before ``submitblock`` is even asked.

What the core needs of the chain backend and the ledger is typed in
:mod:`otedama.pool.ports`.
"""

from __future__ import annotations

from collections import OrderedDict
from collections.abc import Callable, Sequence
from dataclasses import dataclass, field, replace
from typing import Any, cast

from twisted.application.internet import TimerService
from twisted.internet.defer import Deferred, succeed
from twisted.internet.interfaces import IReactorTime
from twisted.internet.task import deferLater
from twisted.logger import Logger

from otedama.chain.address import address_to_script
from otedama.chain.merkle import WITNESS_COMMITMENT_HEADER
from otedama.chain.params import NetworkParams
from otedama.chain.serialize import SerializationError, Transaction, TxOut
from otedama.chain.target import hash_to_int
from otedama.chain.template import BlockTemplate
from otedama.ledger.blocks import FoundBlock, RecordedBlock, RewardPolicy
from otedama.ledger.shares import ShareRecord
from otedama.ops.outage import OutageLog
from otedama.pool.ports import (
    BlockSubmitter,
    Federation,
    LedgerStorePort,
    MinedWork,
    RewardScheme,
    ShareLedger,
    SubmitOutcome,
    SubmitResult,
)
from otedama.stratum.share import Share

#: Workers without a share for this long are forgotten by the in-memory stats.
WORKER_MAX_AGE = 24 * 3600.0
#: At most this many workers are kept; past it the least recently seen is forgotten.
MAX_WORKERS = 100_000
#: A failing ledger call for a found block is retried after this many seconds, doubling
#: up to ``RECORD_RETRY_MAX``, until it succeeds: the block is never given up.
RECORD_RETRY_FIRST = 1.0
RECORD_RETRY_MAX = 60.0
#: After a ``submitblock`` without an answer, the chain health stays degraded this long
#: (or until a later ``submitblock`` is answered).
SUBMIT_TROUBLE_WINDOW = 600.0
#: How often accepted shares are summarised per worker in the log.
SHARE_REPORT_INTERVAL = 30.0
#: Coinbases whose template time the core remembers (one per template; templates come
#: at least every ``stratum.job_timeout``, and shares on older ones are stale anyway).
TEMPLATE_TIMES = 256
#: Seconds the cached federation share target is used before it is asked again.
FED_TARGET_CACHE = 1.0
#: Templates split the window as of this many seconds ago: shares found since are still
#: in flight to some nodes, whose view of that moment would differ from this node's.
SETTLEMENT_LAG = 2
#: A template time older than this is not offered with a federation share (receivers
#: refuse shares whose template time is more than 300 s before their time).
MAX_TEMPLATE_AGE = 290


@dataclass
class WorkerStats:
    """In-memory counters of one worker since the node started (or since it was pruned)."""

    shares: int = 0
    difficulty: float = 0.0
    blocks: int = 0
    last_share: float = 0.0


@dataclass
class _Reported:
    shares: int = 0
    difficulty: float = 0.0


@dataclass
class PoolStats:
    shares: int = 0
    blocks_submitted: int = 0
    blocks_accepted: int = 0
    blocks_rejected: int = 0
    #: submitblock raised (timeout, reset): the daemon may or may not have the block.
    blocks_unanswered: int = 0
    #: Failed ledger calls for found blocks (each is retried).
    record_failures: int = 0
    #: Workers forgotten by the age or count bound.
    workers_pruned: int = 0
    #: Shares that met the federation share target and were gossiped.
    fed_shares: int = 0
    #: Shares that met the federation target but were not sent (template unknown/old).
    fed_shares_skipped: int = 0
    #: Least recently seen first.
    workers: OrderedDict[str, WorkerStats] = field(default_factory=OrderedDict)


class PoolCore:
    """Implements Stratum's `ShareSink` and the coinbase payout policy."""

    log = Logger()

    def __init__(
        self,
        network: NetworkParams,
        pool_address: str,
        scheme: RewardScheme,
        fee_basis_points: int,
        submitter: BlockSubmitter,
        ledger: ShareLedger | None = None,
        fee_address: str | None = None,
        *,
        clock: IReactorTime,
        worker_max_age: float = WORKER_MAX_AGE,
        max_workers: int = MAX_WORKERS,
        federation: Federation | None = None,
    ) -> None:
        if max_workers < 1 or worker_max_age <= 0:
            raise ValueError(
                f"worker stats bounds must be positive, got {max_workers} / {worker_max_age}"
            )
        self.network = network
        self.scheme = scheme
        self.fee_basis_points = fee_basis_points
        self.pool_script = address_to_script(pool_address, network)
        self.fee_script = address_to_script(fee_address or pool_address, network)
        self.submitter = submitter
        self.ledger = ledger
        self.clock = clock
        self.worker_max_age = worker_max_age
        self.max_workers = max_workers
        self.stats = PoolStats()
        self._reported: dict[str, _Reported] = {}
        self._last_report: float | None = None
        self._on_block: list[Callable[[Share, SubmitResult], None]] = []
        self._unanswered: tuple[float, str] | None = None
        self.federation = federation
        self._template_times: OrderedDict[tuple[tuple[int, bytes], ...], int] = OrderedDict()
        self._fed_target = 0
        self._fed_target_at = float("-inf")

    def apply_fee(self, fee_basis_points: int, fee_address: str) -> None:
        """A reloaded fee and fee address: SOLO coinbases built from now on use them."""
        fee_script = address_to_script(fee_address, self.network)  # raises before any change
        self.fee_basis_points = fee_basis_points
        self.fee_script = fee_script

    # -- coinbase policy ---------------------------------------------------------------

    def coinbase_outputs(self, template: BlockTemplate) -> list[TxOut]:
        """Pooled schemes: the whole coinbase value goes to the pool's wallet; with the
        federation, the settlement split of the window as of now (this node first)."""
        if self.federation is None:
            return [TxOut(template.coinbase_value, self.pool_script)]
        template_time = int(self._now()) - SETTLEMENT_LAG
        outputs = self.federation.coinbase_outputs(template.coinbase_value, template_time)
        times = self._template_times
        times[_outputs_key(outputs)] = template_time
        times.move_to_end(_outputs_key(outputs))
        while len(times) > TEMPLATE_TIMES:
            times.popitem(last=False)
        self._fed_target_at = float("-inf")  # a new template may have a new network target
        return outputs

    def _now(self) -> float:
        return float(cast(Any, self.clock).seconds())

    def template_time(self, coinbase: bytes) -> int | None:
        """The template time of the coinbase a share was mined on (None: not a federation
        coinbase of this node's recent templates)."""
        try:
            outputs = Transaction.parse(coinbase).outputs
        except SerializationError:
            return None
        return self._template_times.get(_outputs_key(outputs))

    def _federation_target(self, federation: Federation) -> int:
        now = self._now()
        if now - self._fed_target_at >= FED_TARGET_CACHE:
            self._fed_target = federation.share_target()
            self._fed_target_at = now
        return self._fed_target

    def _mined_work(self, share: Share) -> MinedWork | None:
        if not share.header or not share.coinbase:
            return None
        template_time = self.template_time(share.coinbase)
        if template_time is None or self._now() - template_time > MAX_TEMPLATE_AGE:
            return None
        return MinedWork(
            share.header, share.coinbase, tuple(share.merkle_branch), share.height, template_time
        )

    def _federate(self, federation: Federation, share: Share) -> None:
        """Hand a share that meets the federation share target to the federation."""
        target = self._federation_target(federation)
        if not target or hash_to_int(share.hash) > target:
            return
        work = self._mined_work(share)
        if work is None or not federation.publish_share(work):
            self.stats.fed_shares_skipped += 1
            return
        self.stats.fed_shares += 1

    def solo_outputs(self, template: BlockTemplate, address: str) -> list[TxOut]:
        """SOLO: the finder is paid in the coinbase itself; the fee goes to the pool."""
        value = template.coinbase_value
        fee = value * self.fee_basis_points // 10_000
        outputs = [TxOut(value - fee, address_to_script(address, self.network))]
        if fee:
            outputs.append(TxOut(fee, self.fee_script))
        return outputs

    # -- ShareSink ---------------------------------------------------------------------

    def share_accepted(self, share: Share) -> None:
        # The hot path: no per-share log event (report() summarises every 30 s).
        difficulty = float(share.difficulty)
        workers = self.stats.workers
        stats = workers.get(share.worker)
        if stats is None:
            stats = workers[share.worker] = WorkerStats()
            if len(workers) > self.max_workers:
                self._forget(next(iter(workers)))
            self.log.info(
                "first share from {worker} at difficulty {difficulty}",
                worker=share.worker,
                difficulty=difficulty,
            )
        else:
            workers.move_to_end(share.worker)
        stats.shares += 1
        stats.difficulty += difficulty
        stats.last_share = share.time
        self.stats.shares += 1
        if self.ledger is not None:
            self.ledger.add_share(share)
        federation = self.federation
        if federation is not None:
            try:
                self._federate(federation, share)
            except Exception:
                self.log.failure("handing a share to the federation failed")

    def block_found(self, block: bytes, share: Share) -> Deferred[SubmitResult | None]:
        federation = self.federation
        if federation is not None:
            # Before submitblock: peers switch work before their daemons hear of it.
            try:
                work = self._mined_work(share)
                if work is not None:
                    federation.publish_block(work)
            except Exception:
                self.log.failure("gossiping the found block failed")
        return Deferred.fromCoroutine(self._submit(block, share))

    async def _submit(self, block: bytes, share: Share) -> SubmitResult | None:
        """Record the candidate as pending and submit it, neither waiting for the other.

        A block the daemon took goes to the ``on_block`` callbacks at once (the next job
        must not wait for the ledger); the one log line for the block comes once both the
        verdict and the ledger's record are in.
        """
        block_hash = share.block_hash[::-1].hex()
        self.stats.blocks_submitted += 1
        recording = self._record_candidate(share, block_hash)
        result: SubmitResult | None
        try:
            result = await self.submitter.submit_block(block)
        except Exception as error:
            self.stats.blocks_unanswered += 1
            self._unanswered = (
                cast(Any, self.clock).seconds(),
                f"submitblock for block {block_hash} at height {share.height} got no "
                f"answer: {error}",
            )
            self.log.failure(
                "submitblock for {hash} at height {height} got no answer; the daemon may "
                "have it. It is recorded as pending and the block tracker settles it "
                "against the chain",
                hash=block_hash,
                height=share.height,
            )
            result = None
        else:
            self._count(result, share)
            if result.outcome is not SubmitOutcome.REJECTED:
                for callback in list(self._on_block):
                    try:
                        callback(share, result)
                    except Exception:
                        self.log.failure("on_block callback {callback!r} failed", callback=callback)
        recorded = await recording
        if result is not None:
            self._log_block(result, share, block_hash, recorded)
        return result

    def submit_trouble(self) -> str | None:
        """Why block submission looks broken (for ``/health``): the last ``submitblock``
        got no answer, less than ``SUBMIT_TROUBLE_WINDOW`` ago. None otherwise."""
        if self._unanswered is None:
            return None
        at, reason = self._unanswered
        age = cast(Any, self.clock).seconds() - at
        if age >= SUBMIT_TROUBLE_WINDOW:
            return None
        return f"{reason} ({age:.0f} s ago)"

    def _count(self, result: SubmitResult, share: Share) -> None:
        self._unanswered = None
        if result.outcome is SubmitOutcome.REJECTED:
            self.stats.blocks_rejected += 1
            return
        self.stats.blocks_accepted += 1
        worker = self.stats.workers.get(share.worker)
        if worker is not None:
            worker.blocks += 1

    def _log_block(
        self,
        result: SubmitResult,
        share: Share,
        block_hash: str,
        recorded: RecordedBlock | None,
    ) -> None:
        """The one line of a found block: who, where, the chain's verdict, the ledger."""
        ledger = _ledger_note(recorded)
        outcome = result.outcome
        if outcome is SubmitOutcome.ACCEPTED:
            self.log.info(
                "BLOCK FOUND at height {height} by {worker}: {hash}; accepted by the chain{ledger}",
                height=share.height,
                worker=share.worker,
                hash=block_hash,
                ledger=ledger,
            )
        elif outcome is SubmitOutcome.REJECTED:
            self.log.error(
                "block {hash} at height {height} by {worker} rejected by the chain: "
                "{reason}; the block tracker marks its pending row rejected once the chain "
                "has moved past it",
                hash=block_hash,
                height=share.height,
                worker=share.worker,
                reason=result.reason,
            )
        else:
            # The daemon has the block (duplicate) or holds it valid off the best chain
            # (inconclusive): the block tracker settles confirmed or orphaned.
            self.log.warn(
                "block found at height {height} by {worker}: {hash}, but the chain says "
                "{reason}; the block tracker settles it{ledger}",
                height=share.height,
                worker=share.worker,
                hash=block_hash,
                reason=result.reason,
                ledger=ledger,
            )

    def _record_candidate(self, share: Share, block_hash: str) -> Deferred[RecordedBlock | None]:
        if self.ledger is None:
            return succeed(None)
        return Deferred.fromCoroutine(self._record(self.ledger, share, block_hash))

    async def _record(
        self, ledger: ShareLedger, share: Share, block_hash: str
    ) -> RecordedBlock | None:
        """Record the block as pending; on failure retry, backing off, until it is."""
        reward = self.coinbase_reward(share)
        # Stratum counts the finding share (share_accepted) just after block_found
        # returns: start on the next reactor turn so that share is in the block's window.
        await deferLater(self.clock, 0)
        delay = RECORD_RETRY_FIRST
        outage = OutageLog(f"recording block {block_hash} in the ledger", "with back-off")
        while True:
            try:
                recorded = await ledger.record_block(share, reward)
            except Exception:
                self.stats.record_failures += 1
                outage.failed(self.log)
            else:
                outage.succeeded(self.log)
                return recorded
            await deferLater(self.clock, delay)
            delay = min(delay * 2, RECORD_RETRY_MAX)

    def coinbase_reward(self, share: Share) -> int:
        """What the block's coinbase pays this pool (all outputs, exactly)."""
        coinbase = Transaction.parse(share.coinbase)
        if self.scheme is RewardScheme.SOLO:
            return sum(out.value for out in coinbase.outputs if out.script_pubkey)
        scripts = {self.pool_script, self.fee_script}
        return sum(out.value for out in coinbase.outputs if out.script_pubkey in scripts)

    # -- per-worker stats --------------------------------------------------------------

    def _forget(self, worker: str) -> None:
        del self.stats.workers[worker]
        self._reported.pop(worker, None)
        self.stats.workers_pruned += 1

    def prune(self, now: float) -> int:
        """Forget workers idle for ``worker_max_age`` seconds; returns how many."""
        cutoff = now - self.worker_max_age
        workers = self.stats.workers
        pruned = 0
        # Least recently seen first: stop at the first worker still active.
        while workers:
            worker, stats = next(iter(workers.items()))
            if stats.last_share >= cutoff:
                break
            self._forget(worker)
            pruned += 1
        return pruned

    def report(self, now: float) -> list[str]:
        """Log each worker's shares since the last report; return the lines (for tests)."""
        self.prune(now)
        since = self._last_report
        self._last_report = now
        lines = []
        for worker, stats in sorted(self.stats.workers.items()):
            before = self._reported.setdefault(worker, _Reported())
            shares = stats.shares - before.shares
            if shares == 0:
                continue
            difficulty = stats.difficulty - before.difficulty
            seconds = now - since if since is not None else None
            hashrate = difficulty * 2**32 / seconds if seconds else None
            before.shares, before.difficulty = stats.shares, stats.difficulty
            line = f"{worker}: {shares} shares accepted (difficulty {difficulty:.6g})"
            if hashrate is not None:
                line += f", about {hashrate / 1e6:.3g} MH/s"
            line += f"; {stats.shares} shares and {stats.blocks} blocks since start"
            lines.append(line)
            self.log.info("{line}", line=line)
        return lines

    def on_block(self, callback: Callable[[Share, SubmitResult], None]) -> None:
        """Call ``callback(share, result)`` after each block the daemon took."""
        self._on_block.append(callback)


def _outputs_key(outputs: Sequence[TxOut]) -> tuple[tuple[int, bytes], ...]:
    """A coinbase's outputs without the witness commitment (which ``build_coinbase``
    appends after the federation's outputs): the key of its template time."""
    return tuple(
        (out.value, out.script_pubkey)
        for out in outputs
        if not out.script_pubkey.startswith(WITNESS_COMMITMENT_HEADER)
    )


def _ledger_note(recorded: RecordedBlock | None) -> str:
    """What the ledger did with a found block, for its log line ("" without a ledger)."""
    if recorded is None:
        return ""
    if recorded.queued:
        return "; kept for the ledger until the database is back"
    split = recorded.split
    if not recorded.created:
        return "; already in the ledger"
    if split is None:
        return "; recorded pending"
    return (
        f"; recorded pending: {split.reward} sats, fee {split.fee}, "
        f"{len(split.credits)} addresses credited ({split.scheme.value})"
    )


class ShareReporter(TimerService):
    """Logs the per-worker summary every ``interval`` seconds and prunes idle workers.

    A failing tick is logged and counted in ``failures``; the timer goes on.
    """

    log = Logger()

    def __init__(
        self, core: PoolCore, clock: IReactorTime, interval: float = SHARE_REPORT_INTERVAL
    ) -> None:
        super().__init__(interval, self.tick)
        self.core = core
        self.clock = clock
        # Any: mypy without the zope plugin mistypes Interface methods.
        self._now: Callable[[], float] = cast(Any, clock).seconds
        self.failures = 0

    def tick(self) -> None:
        try:
            self.core.report(self._now())
        except Exception:
            self.failures += 1
            self.log.failure("share report failed ({count} so far)", count=self.failures)


class LedgerLink:
    """The adapter from the core to the ledger store: shares and found blocks as records."""

    def __init__(self, store: LedgerStorePort, policy: RewardPolicy) -> None:
        self.store = store
        #: Replaced on reload when the fee or the fee address changes.
        self.policy = policy

    def apply_fee(self, fee_basis_points: int, fee_address: str) -> None:
        """Blocks recorded from now on are split with this fee, credited to this address."""
        self.policy = replace(
            self.policy, fee_basis_points=fee_basis_points, fee_address=fee_address
        )

    def add_share(self, share: Share) -> None:
        self.store.add_share(
            ShareRecord(
                created_at=share.time,
                address=share.address,
                worker=share.worker_name,
                difficulty=float(share.difficulty),
                job_id=share.job_id,
                height=share.height,
                share_hash=share.hash,
            )
        )

    async def record_block(self, share: Share, reward: int) -> RecordedBlock:
        found = FoundBlock(
            height=share.height,
            hash=share.block_hash[::-1].hex(),
            finder_address=share.address,
            finder_worker=share.worker_name,
            reward=reward,
            found_at=share.time,
        )
        return await self.store.record_block(found, self.policy)

"""The pool core: where shares, blocks and rewards meet.

Stratum hands every accepted share and every block candidate here (`ShareSink`). The
core counts shares per worker, passes them to the ledger's batcher, submits blocks to
the chain at once, and records found blocks with their credits. It also decides what
the coinbase pays: the pool's wallet (PPLNS, PROP) or the finder (SOLO).
"""

from __future__ import annotations

from collections.abc import Awaitable, Callable
from dataclasses import dataclass, field
from typing import Any, Protocol

from twisted.internet.defer import Deferred
from twisted.logger import Logger

from otedama.chain.address import address_to_script
from otedama.chain.params import NetworkParams
from otedama.chain.serialize import Transaction, TxOut
from otedama.chain.template import BlockTemplate
from otedama.ledger.blocks import FoundBlock
from otedama.ledger.shares import ShareRecord
from otedama.stratum.share import Share


class BlockSubmitter(Protocol):
    """The chain backend as the core sees it (`BitcoindClient` satisfies it)."""

    async def submit_block(self, block: bytes) -> Any: ...


class ShareLedger(Protocol):
    """The ledger as the core sees it."""

    def add_share(self, share: Share) -> None: ...

    def record_block(self, share: Share, reward: int) -> Awaitable[Any]: ...


@dataclass
class WorkerStats:
    """In-memory counters of one worker since the node started."""

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
    workers: dict[str, WorkerStats] = field(default_factory=dict)


class PoolCore:
    """Implements Stratum's `ShareSink` and the coinbase payout policy."""

    log = Logger()

    def __init__(
        self,
        network: NetworkParams,
        pool_address: str,
        scheme: str,
        fee_basis_points: int,
        submitter: BlockSubmitter,
        ledger: ShareLedger | None = None,
        fee_address: str | None = None,
    ) -> None:
        self.network = network
        self.scheme = scheme
        self.fee_basis_points = fee_basis_points
        self.pool_script = address_to_script(pool_address, network)
        self.fee_script = address_to_script(fee_address or pool_address, network)
        self.submitter = submitter
        self.ledger = ledger
        self.stats = PoolStats()
        self._reported: dict[str, _Reported] = {}
        self._last_report: float | None = None
        self._on_block: list[Callable[[Share, Any], None]] = []

    # -- coinbase policy ---------------------------------------------------------------

    def coinbase_outputs(self, template: BlockTemplate) -> list[TxOut]:
        """Pooled schemes: the whole coinbase value goes to the pool's wallet."""
        return [TxOut(template.coinbase_value, self.pool_script)]

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
        stats = self.stats.workers.get(share.worker)
        if stats is None:
            stats = self.stats.workers[share.worker] = WorkerStats()
            self.log.info(
                "first share from {worker} at difficulty {difficulty}",
                worker=share.worker,
                difficulty=difficulty,
            )
        stats.shares += 1
        stats.difficulty += difficulty
        stats.last_share = share.time
        self.stats.shares += 1
        if self.ledger is not None:
            self.ledger.add_share(share)

    def block_found(self, block: bytes, share: Share) -> Deferred[Any]:
        return Deferred.fromCoroutine(self._submit(block, share))

    async def _submit(self, block: bytes, share: Share) -> Any:
        block_hash = share.block_hash[::-1].hex()
        self.stats.blocks_submitted += 1
        try:
            result = await self.submitter.submit_block(block)
        except Exception:
            self.log.failure(
                "submitblock for {hash} at height {height} failed; the block may be lost",
                hash=block_hash,
                height=share.height,
            )
            self.stats.blocks_rejected += 1
            return None
        outcome = getattr(getattr(result, "outcome", None), "value", None)
        if outcome in ("duplicate", "inconclusive"):
            # The daemon has the block (duplicate) or holds it valid off the best chain
            # (inconclusive): record it; the block tracker settles confirmed or orphaned.
            self.log.warn(
                "block {hash} at height {height}: the chain says {reason}; recording it",
                hash=block_hash,
                height=share.height,
                reason=getattr(result, "reason", outcome),
            )
        elif not getattr(result, "accepted", False):
            self.stats.blocks_rejected += 1
            self.log.warn(
                "block {hash} at height {height} rejected by the chain: {reason}",
                hash=block_hash,
                height=share.height,
                reason=getattr(result, "reason", result),
            )
            return result
        self.stats.blocks_accepted += 1
        worker = self.stats.workers.setdefault(share.worker, WorkerStats())
        worker.blocks += 1
        self.log.info(
            "BLOCK FOUND at height {height} by {worker}: {hash}",
            height=share.height,
            worker=share.worker,
            hash=block_hash,
        )
        if self.ledger is not None:
            reward = self.coinbase_reward(share)
            try:
                await self.ledger.record_block(share, reward)
            except Exception:
                self.log.failure("could not record block {hash} in the ledger", hash=block_hash)
        for callback in self._on_block:
            callback(share, result)
        return result

    def coinbase_reward(self, share: Share) -> int:
        """What the block's coinbase pays this pool (all outputs, exactly)."""
        coinbase = Transaction.parse(share.coinbase)
        scripts = {self.pool_script, self.fee_script}
        if self.scheme == "SOLO":
            return sum(out.value for out in coinbase.outputs if out.script_pubkey)
        return sum(out.value for out in coinbase.outputs if out.script_pubkey in scripts)

    def report(self, now: float) -> list[str]:
        """Log each worker's shares since the last report; return the lines (for tests)."""
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

    def on_block(self, callback: Callable[[Share, Any], None]) -> None:
        """Call ``callback(share, result)`` after each accepted block."""
        self._on_block.append(callback)


class LedgerLink:
    """Connects the core to the ledger store: shares to the batcher, blocks with credits."""

    def __init__(self, store: Any, policy: Any) -> None:
        self.store = store
        self.policy = policy

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

    def record_block(self, share: Share, reward: int) -> Awaitable[Any]:
        found = FoundBlock(
            height=share.height,
            hash=share.block_hash[::-1].hex(),
            finder_address=share.address,
            finder_worker=share.worker_name,
            reward=reward,
            found_at=share.time,
        )
        result: Awaitable[Any] = self.store.record_block(found, self.policy)
        return result

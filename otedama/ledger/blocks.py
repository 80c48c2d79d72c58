"""Found blocks: recording them with their credits, and following them to maturity.

``record_block`` inserts a block and the journal entries that share its reward in one
transaction: the shares in the block's window are weighed (PPLNS: found_at - window to
found_at; PROP: since the previous block; SOLO: the finder) and split by
:func:`otedama.ledger.rewards.split_reward`. The block is ``pending`` until the chain
has buried it ``coinbase_maturity`` deep, then ``confirmed``: its credits become
spendable. A block that leaves the best chain becomes ``orphaned`` and every journal
entry it made is cancelled by a new ``orphan_reversal`` entry; nothing is deleted.

The pool core records every solved candidate as ``pending`` before it knows what
``submitblock`` says (the call may time out after the daemon took the block). A pending
block the node has never known is settled by a bound: once the best chain is
``SETTLE_DEPTH`` blocks past its height, or ``SETTLE_SECONDS`` after it was found, it is
``rejected`` and its entries are reversed like an orphan's, so it moves no money.

A SOLO block pays its finder in the coinbase itself, so besides the credit the journal
gets a matching ``payout`` entry (same block, no batch): the miner's history shows the
reward, and the balance never offers it for payout again.
"""

from __future__ import annotations

import json
import os
import threading
from collections.abc import Awaitable, Callable, Mapping
from dataclasses import asdict, dataclass
from functools import partial
from pathlib import Path
from typing import TYPE_CHECKING, Any, Protocol

from sqlalchemy import Connection, Row, func, insert, select, update
from twisted.application.internet import TimerService
from twisted.internet.defer import Deferred
from twisted.internet.interfaces import IReactorTime
from twisted.logger import Logger

from otedama.ledger.rewards import RewardScheme, RewardSplit, split_reward
from otedama.ledger.tables import (
    CONFIRMED,
    CREDIT,
    FEE,
    ORPHAN_REVERSAL,
    ORPHANED,
    PAYOUT,
    PENDING,
    REJECTED,
    blocks,
    journal,
)
from otedama.ledger.window import window_weights as running_window_weights
from otedama.ops.outage import OutageLog

if TYPE_CHECKING:
    from otedama.ledger.store import LedgerStore

#: Bitcoin's coinbase maturity: a coinbase output is spendable 100 blocks deep.
COINBASE_MATURITY = 100
#: A pending block the node does not know is rejected once the best chain is this many
#: blocks past its height ...
SETTLE_DEPTH = 6
#: ... or this many seconds after it was found, whichever comes first.
SETTLE_SECONDS = 3600.0


@dataclass(frozen=True)
class FoundBlock:
    """A block this pool found: what the ledger records about it."""

    height: int
    #: Display (RPC) hex.
    hash: str
    finder_address: str
    finder_worker: str
    #: Satoshis: the coinbase value that goes to this pool.
    reward: int
    found_at: float

    def __post_init__(self) -> None:
        if self.height < 0:
            raise ValueError(f"block height must not be negative, got {self.height}")
        if len(self.hash) != 64 or any(c not in "0123456789abcdef" for c in self.hash):
            raise ValueError(f"block hash must be 64 lowercase hex digits, got {self.hash!r}")
        if isinstance(self.reward, bool) or not isinstance(self.reward, int) or self.reward < 0:
            raise ValueError(f"block reward must be non-negative int satoshis, got {self.reward!r}")


@dataclass(frozen=True)
class RewardPolicy:
    """How this pool shares a block's reward: scheme, fee and where the fee goes."""

    scheme: RewardScheme
    fee_basis_points: int
    fee_address: str
    #: PPLNS window in seconds.
    pplns_window: float = 7200.0

    def __post_init__(self) -> None:
        object.__setattr__(self, "scheme", RewardScheme.parse(self.scheme))
        if self.pplns_window <= 0:
            raise ValueError(f"PPLNS window must be positive seconds, got {self.pplns_window}")
        if not self.fee_address:
            raise ValueError(
                "the reward policy needs a fee address (pool.fee_address / wallet_address)"
            )


@dataclass(frozen=True)
class RecordedBlock:
    """The outcome of recording a block: its id and, when newly recorded, its split."""

    block_id: int
    created: bool
    split: RewardSplit | None
    #: The time window whose shares were weighed: (start, end]; None for SOLO.
    window: tuple[float, float] | None
    #: True when the database was unavailable and the block waits in the block queue.
    queued: bool = False


@dataclass(frozen=True)
class BlockRow:
    """A row of ``blocks``."""

    id: int
    height: int
    hash: str
    finder_address: str
    finder_worker: str
    reward: int
    scheme: str
    status: str
    confirmations: int
    found_at: float
    updated_at: float

    @classmethod
    def from_row(cls, row: Row[Any]) -> BlockRow:
        m = row._mapping
        return cls(**{name: m[name] for name in cls.__dataclass_fields__})


def share_window(
    connection: Connection, found_at: float, policy: RewardPolicy
) -> tuple[float, float] | None:
    """The (start, end] time range whose shares earn a block found at ``found_at``."""
    if policy.scheme is RewardScheme.SOLO:
        return None
    if policy.scheme is RewardScheme.PPLNS:
        return (found_at - policy.pplns_window, found_at)
    previous = connection.execute(
        select(func.max(blocks.c.found_at)).where(blocks.c.found_at < found_at)
    ).scalar()
    return (float(previous) if previous is not None else float("-inf"), found_at)


def window_weights(connection: Connection, window: tuple[float, float]) -> Mapping[str, Any]:
    """Per-address summed share difficulty in ``window``, summed exactly (from the running
    totals of :mod:`otedama.ledger.window` when they cover it, else by a scan)."""
    return running_window_weights(connection, window)


def record_block(
    connection: Connection, found: FoundBlock, policy: RewardPolicy, now: float
) -> RecordedBlock:
    """Insert ``found`` as a pending block with its credits; idempotent on the hash."""
    existing = connection.execute(select(blocks.c.id).where(blocks.c.hash == found.hash)).scalar()
    if existing is not None:
        return RecordedBlock(int(existing), False, None, None)
    window = share_window(connection, found.found_at, policy)
    weights = window_weights(connection, window) if window is not None else {}
    split = split_reward(
        policy.scheme,
        found.reward,
        policy.fee_basis_points,
        weights,
        found.finder_address,
        policy.fee_address,
    )
    block_id = connection.execute(
        insert(blocks).returning(blocks.c.id),
        {
            "height": found.height,
            "hash": found.hash,
            "finder_address": found.finder_address,
            "finder_worker": found.finder_worker,
            "reward": found.reward,
            "scheme": policy.scheme.value,
            "status": PENDING,
            "confirmations": 0,
            "found_at": found.found_at,
            "updated_at": now,
        },
    ).scalar_one()
    note = f"block {found.height} {policy.scheme.value}"
    entries = [
        _entry(now, address, CREDIT, amount, block_id, note)
        for address, amount in split.credits.items()
    ]
    if split.fee:
        entries.append(_entry(now, split.fee_address, FEE, split.fee, block_id, note))
    if split.paid_in_coinbase:
        # SOLO: the coinbase paid the finder and the fee (to the fee address, or to the
        # pool's wallet): book both as paid so no payout sends them a second time.
        paid = [*split.credits.items(), *([(split.fee_address, split.fee)] if split.fee else [])]
        entries.extend(
            _entry(now, address, PAYOUT, -amount, block_id, f"{note}: paid in the coinbase")
            for address, amount in paid
        )
    if entries:
        connection.execute(insert(journal), entries)
    return RecordedBlock(int(block_id), True, split, window)


def _entry(
    now: float, address: str, kind: str, amount: int, block_id: int, note: str
) -> dict[str, Any]:
    return {
        "created_at": now,
        "address": address,
        "kind": kind,
        "amount": amount,
        "block_id": block_id,
        "batch_id": None,
        "note": note,
    }


def pending_blocks(connection: Connection) -> list[BlockRow]:
    """Blocks still waiting for maturity, oldest first."""
    rows = connection.execute(
        select(blocks).where(blocks.c.status == PENDING).order_by(blocks.c.height, blocks.c.id)
    )
    return [BlockRow.from_row(row) for row in rows]


def get_block(connection: Connection, block_hash: str) -> BlockRow | None:
    """The block with this display hash, if recorded."""
    row = connection.execute(select(blocks).where(blocks.c.hash == block_hash)).first()
    return None if row is None else BlockRow.from_row(row)


def set_confirmations(
    connection: Connection, block_id: int, confirmations: int, now: float
) -> None:
    """Note a pending block's depth."""
    connection.execute(
        update(blocks)
        .where(blocks.c.id == block_id, blocks.c.status == PENDING)
        .values(confirmations=confirmations, updated_at=now)
    )


def confirm_block(connection: Connection, block_id: int, confirmations: int, now: float) -> bool:
    """Mark a pending block confirmed (its credits become spendable); False if not pending."""
    result = connection.execute(
        update(blocks)
        .where(blocks.c.id == block_id, blocks.c.status == PENDING)
        .values(status=CONFIRMED, confirmations=confirmations, updated_at=now)
    )
    return result.rowcount == 1


def orphan_block(connection: Connection, block_id: int, reason: str, now: float) -> int:
    """Mark a pending block orphaned and cancel each of its journal entries by a new one.

    Returns the number of reversal entries written (0 if the block was not pending).
    """
    return _cancel_block(connection, block_id, ORPHANED, reason, now)


def reject_block(connection: Connection, block_id: int, reason: str, now: float) -> int:
    """Mark a pending block rejected (never in the chain) and cancel its journal entries.

    Returns the number of reversal entries written (0 if the block was not pending).
    """
    return _cancel_block(connection, block_id, REJECTED, reason, now)


def _cancel_block(
    connection: Connection, block_id: int, status: str, reason: str, now: float
) -> int:
    result = connection.execute(
        update(blocks)
        .where(blocks.c.id == block_id, blocks.c.status == PENDING)
        .values(status=status, updated_at=now)
    )
    if result.rowcount != 1:
        return 0
    originals = connection.execute(
        select(journal.c.address, journal.c.amount, journal.c.kind)
        .where(journal.c.block_id == block_id, journal.c.kind != ORPHAN_REVERSAL)
        .order_by(journal.c.id)
    ).all()
    reversals = [
        _entry(now, address, ORPHAN_REVERSAL, -amount, block_id, f"reverses {kind}: {reason}")
        for address, amount, kind in originals
    ]
    if reversals:
        connection.execute(insert(journal), reversals)
    return len(reversals)


class ChainView(Protocol):
    """What the tracker needs from the node (``BitcoindClient`` offers it)."""

    def get_block_hash(self, height: int) -> Awaitable[str]: ...

    def get_block_header(self, hash_hex: str) -> Awaitable[Mapping[str, Any]]: ...


@dataclass(frozen=True)
class Verdict:
    """What the chain says about one pending block."""

    status: str
    confirmations: int
    reason: str = ""


def _rpc_code(error: BaseException) -> int | None:
    code = getattr(error, "code", None)
    return code if isinstance(code, int) else None


#: bitcoind: "Block not found" / "Block height out of range".
_NOT_FOUND = -5
_OUT_OF_RANGE = -8


async def judge_block(
    node: ChainView,
    block: BlockRow,
    maturity: int,
    now: float | None = None,
    settle_depth: int = SETTLE_DEPTH,
    settle_seconds: float = SETTLE_SECONDS,
) -> Verdict | None:
    """Ask the node where ``block`` stands; None when it cannot tell yet."""
    header: Mapping[str, Any] | None
    try:
        header = await node.get_block_header(block.hash)
    except Exception as e:
        if _rpc_code(e) != _NOT_FOUND:
            raise
        header = None
    confirmations = int(header.get("confirmations", 0)) if header is not None else None
    if confirmations == -1:
        return Verdict(ORPHANED, -1, "the node reports it off the best chain (confirmations -1)")
    if header is None and block.confirmations <= 0:
        # Never seen in the chain: a candidate the daemon refused or never received.
        return await _settle_unknown(node, block, now, settle_depth, settle_seconds)
    at_height = await _hash_at(node, block.height)
    if at_height is not None and at_height != block.hash:
        return Verdict(ORPHANED, 0, f"the best chain has {at_height} at height {block.height}")
    if confirmations is None:
        return None
    if confirmations >= maturity:
        return Verdict(CONFIRMED, confirmations)
    return Verdict(PENDING, confirmations)


async def _hash_at(node: ChainView, height: int) -> str | None:
    """The best chain's block hash at ``height``; None when the chain is not that long."""
    try:
        return await node.get_block_hash(height)
    except Exception as e:
        if _rpc_code(e) != _OUT_OF_RANGE:
            raise
        return None


async def _settle_unknown(
    node: ChainView, block: BlockRow, now: float | None, depth: int, seconds: float
) -> Verdict | None:
    """REJECTED once the bound has passed for a block the node does not know, else None."""
    if await _hash_at(node, block.height + depth) is not None:
        return Verdict(
            REJECTED,
            0,
            f"not in the chain: the node does not know it and its best chain is {depth} "
            f"blocks past height {block.height}",
        )
    if now is not None and now - block.found_at >= seconds:
        return Verdict(
            REJECTED, 0, f"not in the chain: the node has not known it for {seconds:g} s"
        )
    return None


@dataclass(frozen=True)
class TrackerReport:
    """What one check changed."""

    confirmed: tuple[str, ...] = ()
    orphaned: tuple[str, ...] = ()
    still_pending: int = 0
    #: Candidates settled as never in the chain.
    rejected: tuple[str, ...] = ()


class BlockTracker(TimerService):
    """Follows pending blocks on the chain: confirms them at maturity, reverses orphans.

    A ``TimerService``: every ``interval`` seconds it runs :meth:`check`; a failing check
    (node down, database down) is logged once per outage and the next tick tries again.
    """

    log = Logger()

    def __init__(
        self,
        store: LedgerStore,
        node: ChainView,
        clock: IReactorTime,
        maturity: int = COINBASE_MATURITY,
        interval: float = 30.0,
        settle_depth: int = SETTLE_DEPTH,
        settle_seconds: float = SETTLE_SECONDS,
    ) -> None:
        if maturity < 1:
            raise ValueError(f"coinbase maturity must be at least 1, got {maturity}")
        if settle_depth < 1 or settle_seconds <= 0:
            raise ValueError(
                f"block settle bounds must be positive, got {settle_depth} / {settle_seconds}"
            )
        self.settle_depth = settle_depth
        self.settle_seconds = settle_seconds
        super().__init__(interval, self._tick)
        self.clock = clock
        self.store = store
        self.node = node
        self.maturity = maturity
        # Any: mypy without the zope plugin mistypes Interface methods.
        self._clock: Any = clock
        #: The check started by the latest tick (tests and shutdown wait on it).
        self.last_tick: Deferred[None] | None = None
        #: A daemon or database outage: one warning when it starts, one info when it ends.
        self._outage = OutageLog("block maturity check", f"every {interval:g} s")
        self._status_callbacks: list[Callable[[str, str, int], None]] = []

    def on_status(self, callback: Callable[[str, str, int], None]) -> None:
        """Call ``callback(block_hash, new_status, confirmations)`` after each confirm,
        orphan or reject has committed (a failing callback is logged, the check goes on)."""
        self._status_callbacks.append(callback)

    def _status_changed(self, block_hash: str, status: str, confirmations: int) -> None:
        for callback in list(self._status_callbacks):
            try:
                callback(block_hash, status, confirmations)
            except Exception:
                self.log.failure("block status callback failed for {hash}", hash=block_hash)

    def _tick(self) -> Deferred[None]:
        self.last_tick = Deferred.fromCoroutine(self._safe_check())
        return self.last_tick

    async def _safe_check(self) -> None:
        try:
            await self.check()
        except Exception:
            self._outage.failed(self.log)
        else:
            self._outage.succeeded(self.log)

    async def check(self) -> TrackerReport:
        """Look at every pending block once and record what the chain says."""
        pending = await self.store.run(pending_blocks)
        confirmed: list[str] = []
        orphaned: list[str] = []
        rejected: list[str] = []
        still = 0
        for block in pending:
            now = self._clock.seconds()
            verdict = await judge_block(
                self.node, block, self.maturity, now, self.settle_depth, self.settle_seconds
            )
            ids = {"block_id": block.id, "now": now}
            if verdict is None:
                self.log.warn(
                    "block {height} {hash} is unknown to the node; leaving it pending until "
                    "the chain is {depth} blocks past it or {seconds} s have passed",
                    height=block.height,
                    hash=block.hash,
                    depth=self.settle_depth,
                    seconds=self.settle_seconds,
                )
                still += 1
            elif verdict.status == CONFIRMED:
                await self.store.run(
                    partial(confirm_block, **ids, confirmations=verdict.confirmations)
                )
                confirmed.append(block.hash)
                self._status_changed(block.hash, CONFIRMED, verdict.confirmations)
                self.log.info(
                    "block {height} {hash} confirmed at {confirmations} confirmations; "
                    "its credits are spendable",
                    height=block.height,
                    hash=block.hash,
                    confirmations=verdict.confirmations,
                )
            elif verdict.status in (ORPHANED, REJECTED):
                cancel = orphan_block if verdict.status == ORPHANED else reject_block
                reversed_ = await self.store.run(partial(cancel, **ids, reason=verdict.reason))
                (orphaned if verdict.status == ORPHANED else rejected).append(block.hash)
                self._status_changed(block.hash, verdict.status, verdict.confirmations)
                self.log.warn(
                    "block {height} {hash} {status} ({reason}); {count} entries reversed",
                    height=block.height,
                    hash=block.hash,
                    status=verdict.status,
                    reason=verdict.reason,
                    count=reversed_,
                )
            else:
                if verdict.confirmations != block.confirmations:
                    await self.store.run(
                        partial(set_confirmations, **ids, confirmations=verdict.confirmations)
                    )
                still += 1
        return TrackerReport(tuple(confirmed), tuple(orphaned), still, tuple(rejected))


class BlockQueue:
    """Found blocks waiting for the database, kept on disk until their credits are recorded.

    A block found while the database is unreachable (or refuses it, or while spooled
    shares are not yet back in it, which would leave its window short) is appended here,
    fsynced, and recorded later by ``LedgerStore`` in the order found. Recording is
    idempotent on the block hash, so a crash between the commit and the removal from this
    file is harmless.

    :meth:`add`, :meth:`load` and :meth:`remove` block on the disk: the store runs them on
    its file thread. :attr:`count` and :meth:`has_data` are answered from memory.
    """

    def __init__(self, path: Path) -> None:
        self.path = Path(path)
        self.path.parent.mkdir(parents=True, exist_ok=True)
        self._lock = threading.Lock()
        #: Blocks waiting (read once here, then kept up to date by add and remove).
        self.count = len(self.load())

    def add(self, found: FoundBlock, policy: RewardPolicy) -> None:
        """Append one found block with the policy in force, durably."""
        with self._lock:
            with open(self.path, "a", encoding="utf-8") as f:
                f.write(_queue_line(found, policy))
                f.flush()
                os.fsync(f.fileno())
            self.count += 1

    def load(self) -> list[tuple[FoundBlock, RewardPolicy]]:
        """The waiting blocks, oldest first (a torn last line is ignored)."""
        if not self.path.exists():
            return []
        waiting = []
        for raw in self.path.read_text(encoding="utf-8").splitlines():
            try:
                item = json.loads(raw)
                policy = item["policy"]
                waiting.append(
                    (
                        FoundBlock(**item["block"]),
                        RewardPolicy(
                            RewardScheme.parse(policy["scheme"]),
                            int(policy["fee_basis_points"]),
                            str(policy["fee_address"]),
                            float(policy["pplns_window"]),
                        ),
                    )
                )
            except (ValueError, KeyError, TypeError):
                continue
        return waiting

    def has_data(self) -> bool:
        """True when blocks are waiting (from memory: no disk access)."""
        return self.count > 0

    def remove(self, hashes: set[str]) -> None:
        """Drop the blocks now recorded (atomic rewrite of the file)."""
        with self._lock:
            keep = [(f, p) for f, p in self.load() if f.hash not in hashes]
            temporary = self.path.with_suffix(".tmp")
            with open(temporary, "w", encoding="utf-8") as f:
                f.writelines(_queue_line(found, policy) for found, policy in keep)
                f.flush()
                os.fsync(f.fileno())
            os.replace(temporary, self.path)
            self.count = len(keep)


def _queue_line(found: FoundBlock, policy: RewardPolicy) -> str:
    policy_json = {
        "scheme": policy.scheme.value,
        "fee_basis_points": policy.fee_basis_points,
        "fee_address": policy.fee_address,
        "pplns_window": policy.pplns_window,
    }
    return json.dumps({"block": asdict(found), "policy": policy_json}) + "\n"

"""The ledger's read side: balances, hashrates, blocks and payouts.

Every function takes a SQLAlchemy ``Connection`` (run them through
``LedgerStore.run``) and a ``now`` where time matters.

Balances are derived from the journal in one place, :func:`balances`:

- **immature**: the sum of entries whose block is still ``pending``;
- **spendable**: the sum of every other entry — credits and fees of ``confirmed`` blocks,
  the credits of ``orphaned`` blocks together with their reversals (which cancel them),
  and payouts (negative, debited when the batch is committed, before the wallet call)
  with any payout reversals;
- **paid**: minus the payout entries of batches the wallet took (``sent`` or
  ``confirmed``), plus SOLO rewards paid in the coinbase of a confirmed block;
- **payout_pending**: minus the payout entries of batches committed but not yet sent.

So ``immature + spendable`` is always the plain sum of an address's journal entries.
"""

from __future__ import annotations

from collections.abc import Mapping
from dataclasses import asdict, dataclass, field
from typing import Any

from sqlalchemy import Connection, and_, case, func, or_, select

from otedama.ledger.tables import (
    BATCH_COMMITTED,
    BATCH_CONFIRMED,
    BATCH_SENT,
    BLOCK_STATES,
    CONFIRMED,
    PAYOUT,
    PAYOUT_REVERSAL,
    PENDING,
    blocks,
    journal,
    payout_batches,
    payout_items,
    shares,
)

#: Hashes per unit of share difficulty (sha256d: difficulty 1 = 2**32 hashes).
HASHES_PER_DIFFICULTY = 2**32
#: Workers with a share in this many seconds count as active.
ACTIVE_SECONDS = 600.0
#: The shortest span a pool hashrate is averaged over (a lone first share is not a rate).
MIN_SPAN_SECONDS = 10.0
#: The shortest span one worker's hashrate is averaged over. A worker sends far fewer
#: shares than the pool: 60 s is six target share intervals at the default vardiff target
#: (``stratum.target_share_interval``, 10 s) and one vardiff retarget interval, so a single
#: fresh share (perhaps at a start difficulty far above the miner's) reads as a sixth of a
#: minute's work at the target rate, not as a spike; a new worker's figure rises to its real
#: rate over its first minute.
MIN_WORKER_SPAN_SECONDS = 60.0


@dataclass(frozen=True)
class Balance:
    """One address's money in satoshis (see the module docstring for the rules)."""

    address: str
    immature: int = 0
    spendable: int = 0
    paid: int = 0
    payout_pending: int = 0


def _balance_columns() -> list[Any]:
    pending_block = blocks.c.status == PENDING
    is_payout = journal.c.kind.in_((PAYOUT, PAYOUT_REVERSAL))
    paid = and_(
        is_payout,
        or_(
            payout_batches.c.state.in_((BATCH_SENT, BATCH_CONFIRMED)),
            and_(journal.c.batch_id.is_(None), blocks.c.status == CONFIRMED),
        ),
    )
    return [
        func.sum(case((pending_block, journal.c.amount), else_=0)).label("immature"),
        func.sum(
            case((or_(blocks.c.status.is_(None), ~pending_block), journal.c.amount), else_=0)
        ).label("spendable"),
        func.sum(case((paid, -journal.c.amount), else_=0)).label("paid"),
        func.sum(
            case(
                (and_(is_payout, payout_batches.c.state == BATCH_COMMITTED), -journal.c.amount),
                else_=0,
            )
        ).label("payout_pending"),
    ]


_JOURNAL_WITH_STATES = journal.outerjoin(blocks, journal.c.block_id == blocks.c.id).outerjoin(
    payout_batches, journal.c.batch_id == payout_batches.c.id
)


def _as_int(value: Any) -> int:
    # PostgreSQL sums BIGINT as NUMERIC (a Decimal): exact, and whole.
    return int(value or 0)


def balances(connection: Connection, address: str | None = None) -> dict[str, Balance]:
    """Every address's balance (or just ``address``'s), from the journal."""
    query = (
        select(journal.c.address, *_balance_columns())
        .select_from(_JOURNAL_WITH_STATES)
        .group_by(journal.c.address)
        .order_by(journal.c.address)
    )
    if address is not None:
        query = query.where(journal.c.address == address)
    return {
        row.address: Balance(
            row.address,
            _as_int(row.immature),
            _as_int(row.spendable),
            _as_int(row.paid),
            _as_int(row.payout_pending),
        )
        for row in connection.execute(query)
    }


def address_balance(connection: Connection, address: str) -> Balance:
    """One address's balance (zeros when it has no entries)."""
    return balances(connection, address).get(address, Balance(address))


def spendable_balances(connection: Connection) -> dict[str, int]:
    """Spendable satoshis per address, for the payout processor (positive ones only)."""
    return {a: b.spendable for a, b in balances(connection).items() if b.spendable > 0}


def balance_totals(connection: Connection) -> Balance:
    """The sums over all addresses (address ``"*"``)."""
    row = connection.execute(select(*_balance_columns()).select_from(_JOURNAL_WITH_STATES)).one()
    return Balance(
        "*",
        _as_int(row.immature),
        _as_int(row.spendable),
        _as_int(row.paid),
        _as_int(row.payout_pending),
    )


def journal_total(connection: Connection, address: str | None = None) -> int:
    """The plain sum of journal entries (a cross-check: immature + spendable)."""
    query = select(func.coalesce(func.sum(journal.c.amount), 0))
    if address is not None:
        query = query.where(journal.c.address == address)
    return _as_int(connection.execute(query).scalar())


@dataclass(frozen=True)
class WorkerRate:
    """One worker's recent shares and the hashrate they imply."""

    address: str
    worker: str
    shares: int
    difficulty: float
    hashrate: float
    last_share_at: float


def covered_span(
    now: float, window: float, first_share_at: float | None, floor: float = MIN_SPAN_SECONDS
) -> float:
    """The part of the last ``window`` seconds that shares cover, in seconds.

    Right after a start the window reaches back before the first share; dividing by the
    whole window would under-report (64 s of mining shown as a tenth of its rate). So the
    span runs from the first share in the window to ``now``, at least ``floor`` (or the
    whole window, if that is shorter) and at most ``window``. It always ends at ``now``,
    so shares that stopped coming are spread over a span that keeps growing: a stopped
    worker's rate falls, and is gone when its last share leaves the window.
    """
    if first_share_at is None:
        return window
    return min(window, max(now - first_share_at, min(floor, window)))


def hashrate(difficulty_sum: float, seconds: float) -> float:
    """Hashes per second implied by ``difficulty_sum`` of shares over ``seconds``."""
    if seconds <= 0:
        raise ValueError(f"hashrate window must be positive seconds, got {seconds}")
    return difficulty_sum * HASHES_PER_DIFFICULTY / seconds


def worker_hashrates(
    connection: Connection, now: float, window: float, address: str | None = None
) -> list[WorkerRate]:
    """Per-worker hashrate over the last ``window`` seconds, fastest first.

    Each worker's difficulty is divided by the time it was mining within the window, not
    by the whole window: from its first share in the window to ``now`` (see
    :func:`covered_span`), at least ``MIN_WORKER_SPAN_SECONDS``. A worker that started
    five minutes into an hour's window shows its real rate, not a twelfth of it; one that
    has mined the whole window is averaged over the whole window; one that stopped keeps
    its work over a span that grows until ``now``, so its rate falls and it drops out
    once its last share is older than the window. A span, as Miningcore computes it,
    rather than ckpool's decaying averages: the figure is a plain average a miner can check
    against its own share log.
    """
    query = (
        select(
            shares.c.address,
            shares.c.worker,
            func.count().label("shares"),
            func.sum(shares.c.difficulty).label("difficulty"),
            func.min(shares.c.created_at).label("first"),
            func.max(shares.c.created_at).label("last"),
        )
        .where(shares.c.created_at > now - window, shares.c.created_at <= now)
        .group_by(shares.c.address, shares.c.worker)
    )
    if address is not None:
        query = query.where(shares.c.address == address)
    rates = [
        WorkerRate(
            row.address,
            row.worker,
            int(row.shares),
            float(row.difficulty),
            hashrate(
                float(row.difficulty),
                covered_span(now, window, float(row.first), MIN_WORKER_SPAN_SECONDS),
            ),
            float(row.last),
        )
        for row in connection.execute(query)
    ]
    rates.sort(key=lambda r: (-r.hashrate, r.address, r.worker))
    return rates


@dataclass(frozen=True)
class PayoutRecord:
    """A payout batch, or one address's item in it."""

    batch_id: int
    created_at: float
    state: str
    txid: str | None
    amount: int
    recipients: int
    address: str | None = None


def payout_history(
    connection: Connection, address: str | None = None, limit: int = 20
) -> list[PayoutRecord]:
    """Newest payouts first: the pool's batches, or one address's items."""
    if address is None:
        recipients = (
            select(func.count())
            .where(payout_items.c.batch_id == payout_batches.c.id)
            .scalar_subquery()
        )
        rows = connection.execute(
            select(payout_batches, recipients.label("recipients"))
            .order_by(payout_batches.c.id.desc())
            .limit(limit)
        )
        return [
            PayoutRecord(r.id, r.created_at, r.state, r.txid, int(r.total), int(r.recipients))
            for r in rows
        ]
    rows = connection.execute(
        select(
            payout_batches.c.id,
            payout_batches.c.created_at,
            payout_batches.c.state,
            payout_batches.c.txid,
            payout_items.c.amount,
        )
        .join(payout_items, payout_items.c.batch_id == payout_batches.c.id)
        .where(payout_items.c.address == address)
        .order_by(payout_batches.c.id.desc())
        .limit(limit)
    )
    return [
        PayoutRecord(r.id, r.created_at, r.state, r.txid, int(r.amount), 1, address) for r in rows
    ]


@dataclass(frozen=True)
class BlockSummary:
    """A recent block for listings."""

    height: int
    hash: str
    status: str
    confirmations: int
    reward: int
    finder_address: str
    found_at: float


def recent_blocks(connection: Connection, limit: int = 10) -> list[BlockSummary]:
    """The newest blocks found, newest first."""
    rows = connection.execute(select(blocks).order_by(blocks.c.found_at.desc()).limit(limit))
    return [
        BlockSummary(
            r.height, r.hash, r.status, r.confirmations, int(r.reward), r.finder_address, r.found_at
        )
        for r in rows
    ]


def blocks_by_status(connection: Connection) -> dict[str, int]:
    """How many blocks are pending, confirmed and orphaned."""
    counts = dict.fromkeys(BLOCK_STATES, 0)
    for status, count in connection.execute(
        select(blocks.c.status, func.count()).group_by(blocks.c.status)
    ):
        counts[status] = int(count)
    return counts


@dataclass(frozen=True)
class PoolStats:
    """The pool at a glance, as ``otedama stats`` shows it."""

    now: float
    window_seconds: float
    hashrate: float
    #: The seconds the hashrate is averaged over (see :func:`covered_span`).
    span_seconds: float
    shares_in_window: int
    active_workers: int
    active_addresses: int
    blocks: Mapping[str, int]
    totals: Balance
    last_blocks: list[BlockSummary] = field(default_factory=list)
    last_payouts: list[PayoutRecord] = field(default_factory=list)

    def as_dict(self) -> dict[str, Any]:
        """Plain JSON-ready values."""
        data = asdict(self)
        data["blocks"] = dict(self.blocks)
        return data


def pool_stats(connection: Connection, now: float, window: float = 600.0) -> PoolStats:
    """Hashrate, shares, active workers, blocks, total balances and recent payouts."""
    if window <= 0:
        raise ValueError(f"stats window must be positive seconds, got {window}")
    count, difficulty, first = connection.execute(
        select(
            func.count(),
            func.coalesce(func.sum(shares.c.difficulty), 0.0),
            func.min(shares.c.created_at),
        ).where(shares.c.created_at > now - window, shares.c.created_at <= now)
    ).one()
    span = covered_span(now, window, None if first is None else float(first))
    active = (
        select(shares.c.address, shares.c.worker)
        .where(shares.c.created_at > now - ACTIVE_SECONDS, shares.c.created_at <= now)
        .distinct()
        .subquery()
    )
    workers, addresses = connection.execute(
        select(func.count(), func.count(func.distinct(active.c.address))).select_from(active)
    ).one()
    return PoolStats(
        now=now,
        window_seconds=window,
        hashrate=hashrate(float(difficulty), span),
        span_seconds=span,
        shares_in_window=int(count),
        active_workers=int(workers),
        active_addresses=int(addresses),
        blocks=blocks_by_status(connection),
        totals=balance_totals(connection),
        last_blocks=recent_blocks(connection, 5),
        last_payouts=payout_history(connection, None, 5),
    )

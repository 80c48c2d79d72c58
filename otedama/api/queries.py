"""The API's ledger queries: functions of a ``Connection`` (run through ``LedgerStore.run``).

They read the ledger's tables and the hashrate history, never the raw ``shares`` table
on a request (the periodic snapshot reads at most one history interval of shares to
finish the current round's effort).
"""

from __future__ import annotations

from dataclasses import dataclass
from typing import Any

from sqlalchemy import Connection, func, insert, literal, select

from otedama.ledger import history
from otedama.ledger.stats import (
    PayoutRecord,
    address_balance,
    blocks_by_status,
    payout_history,
)
from otedama.ledger.tables import (
    REJECTED,
    block_effort,
    blocks,
    payout_batches,
    payout_items,
    pool_hashrate,
    shares,
)

#: The pool hashrate windows /pool reports.
WINDOWS = {"10m": 600.0, "1h": 3600.0, "24h": 86400.0}


def _block_dict(row: Any) -> dict[str, Any]:
    return {
        "height": int(row.height),
        "hash": row.hash,
        "status": row.status,
        "confirmations": int(row.confirmations),
        "reward": int(row.reward),
        "finder": row.finder_address,
        "worker": row.finder_worker,
        "found_at": float(row.found_at),
        "effort": None if row.effort is None else float(row.effort),
    }


def _blocks_query() -> Any:
    return select(
        blocks.c.height,
        blocks.c.hash,
        blocks.c.status,
        blocks.c.confirmations,
        blocks.c.reward,
        blocks.c.finder_address,
        blocks.c.finder_worker,
        blocks.c.found_at,
        blocks.c.updated_at,
        block_effort.c.effort,
    ).select_from(blocks.outerjoin(block_effort, block_effort.c.hash == blocks.c.hash))


def blocks_page(
    connection: Connection, page: int, per_page: int, status: str | None = None
) -> dict[str, Any]:
    """Newest blocks first, one page (optionally of one status)."""
    count = select(func.count()).select_from(blocks)
    query = _blocks_query()
    if status is not None:
        count = count.where(blocks.c.status == status)
        query = query.where(blocks.c.status == status)
    total = int(connection.execute(count).scalar() or 0)
    rows = connection.execute(
        query.order_by(blocks.c.found_at.desc(), blocks.c.id.desc())
        .limit(per_page)
        .offset((page - 1) * per_page)
    )
    return {
        "page": page,
        "per_page": per_page,
        "total": total,
        "items": [_block_dict(row) for row in rows],
    }


def block_by_hash(connection: Connection, block_hash: str) -> dict[str, Any] | None:
    """One block as the API shows it (the WebSocket's status events), or None."""
    row = connection.execute(_blocks_query().where(blocks.c.hash == block_hash)).first()
    return None if row is None else _block_dict(row)


def payments_page(
    connection: Connection, page: int, per_page: int, address: str | None = None
) -> dict[str, Any]:
    """Payout batches (or one address's payout items), newest first, one page."""
    columns = [
        payout_batches.c.id,
        payout_batches.c.created_at,
        payout_batches.c.state,
        payout_batches.c.txid,
    ]
    if address is None:
        count = select(func.count()).select_from(payout_batches)
        recipients = (
            select(func.count())
            .where(payout_items.c.batch_id == payout_batches.c.id)
            .scalar_subquery()
        )
        query = select(
            *columns, payout_batches.c.total.label("amount"), recipients.label("recipients")
        )
    else:
        count = select(func.count()).where(payout_items.c.address == address)
        query = (
            select(*columns, payout_items.c.amount, literal(1).label("recipients"))
            .join(payout_items, payout_items.c.batch_id == payout_batches.c.id)
            .where(payout_items.c.address == address)
        )
    total = int(connection.execute(count).scalar() or 0)
    rows = connection.execute(
        query.order_by(payout_batches.c.id.desc()).limit(per_page).offset((page - 1) * per_page)
    )
    items = [
        _payout(PayoutRecord(r.id, r.created_at, r.state, r.txid, int(r.amount), int(r.recipients)))
        for r in rows
    ]
    return {"page": page, "per_page": per_page, "total": total, "items": items}


def _payout(p: PayoutRecord) -> dict[str, Any]:
    return {
        "batch": int(p.batch_id),
        "created_at": float(p.created_at),
        "state": p.state,
        "txid": p.txid,
        "amount": p.amount,
        "recipients": p.recipients,
    }


def _points(points: list[history.HistoryPoint]) -> list[dict[str, Any]]:
    return [{"time": p.time, "hashrate": p.hashrate, "shares": p.shares} for p in points]


def pool_history(connection: Connection, now: float, range_name: str) -> dict[str, Any]:
    span, step = history.RANGES[range_name]
    return {
        "range": range_name,
        "step": step,
        "points": _points(history.pool_history(connection, now, span, step)),
    }


def miner_history(
    connection: Connection, address: str, now: float, range_name: str
) -> dict[str, Any]:
    span, step = history.RANGES[range_name]
    return {
        "address": address,
        "range": range_name,
        "step": step,
        "points": _points(history.address_history(connection, address, now, span, step)),
    }


def miner(connection: Connection, address: str, now: float) -> dict[str, Any]:
    """One address: its workers over the last hour, balance and recent payouts."""
    rates = history.worker_rates(connection, now, 3600.0, address)
    recent = history.worker_rates(connection, now, 600.0, address)
    fast = {rate.worker: rate.hashrate for rate in recent}
    balance = address_balance(connection, address)
    payouts = payout_history(connection, address, 10)
    return {
        "address": address,
        "hashrate": sum(fast.values()),
        "workers": [
            {
                "name": rate.worker,
                "hashrate_10m": fast.get(rate.worker, 0.0),
                "hashrate_1h": rate.hashrate,
                "shares_1h": rate.shares,
                # The average share difficulty over the hour (vardiff moves it).
                "difficulty": rate.difficulty / rate.shares if rate.shares else 0.0,
                "last_share_at": rate.last_share_at,
            }
            for rate in rates
        ],
        "balance": {
            "immature": balance.immature,
            "confirmed": balance.spendable,
            "paid": balance.paid,
            "payout_pending": balance.payout_pending,
        },
        "payouts": [_payout(p) for p in payouts],
    }


def round_difficulty(connection: Connection, now: float) -> tuple[float, float | None]:
    """Share difficulty since the newest block (not rejected), and when that block was found.

    Whole history intervals after the block are summed from ``pool_hashrate``; only the
    interval holding the block is read from ``shares`` (at most one interval of rows).
    """
    last = connection.execute(
        select(func.max(blocks.c.found_at)).where(blocks.c.status != REJECTED)
    ).scalar()
    since = 0.0 if last is None else float(last)
    boundary = history.bucket_of(since) + history.INTERVAL
    whole = connection.execute(
        select(func.coalesce(func.sum(pool_hashrate.c.difficulty), 0.0)).where(
            pool_hashrate.c.bucket >= boundary
        )
    ).scalar()
    partial = connection.execute(
        select(func.coalesce(func.sum(shares.c.difficulty), 0.0)).where(
            shares.c.created_at > since, shares.c.created_at < min(boundary, now + 1)
        )
    ).scalar()
    return float(whole or 0.0) + float(partial or 0.0), None if last is None else since


def pool_snapshot(connection: Connection, now: float) -> dict[str, Any]:
    """The ledger half of /pool (the periodic snapshot; the node adds live counts)."""
    rates = {name: history.pool_rate(connection, now, window) for name, window in WINDOWS.items()}
    round_shares, round_since = round_difficulty(connection, now)
    recent = connection.execute(
        _blocks_query().order_by(blocks.c.found_at.desc(), blocks.c.id.desc()).limit(10)
    )
    return {
        "hashrate": {name: rate.hashrate for name, rate in rates.items()},
        "shares_10m": rates["10m"].shares,
        "round": {"share_difficulty": round_shares, "since": round_since},
        "blocks": {
            "counts": blocks_by_status(connection),
            "last": [_block_dict(r) for r in recent],
        },
        "payouts": [_payout(p) for p in payout_history(connection, None, 10)],
    }


@dataclass(frozen=True)
class EffortRecord:
    """What is known of a found block when it is found."""

    hash: str
    found_at: float
    network_difficulty: float


def record_effort(connection: Connection, found: EffortRecord) -> float | None:
    """Store a found block's effort (shares since the previous block / network difficulty).

    Read once per found block, from the raw shares of its round; idempotent on the hash.
    """
    if connection.execute(
        select(block_effort.c.hash).where(block_effort.c.hash == found.hash)
    ).first():
        return None
    previous = connection.execute(
        select(func.max(blocks.c.found_at)).where(
            blocks.c.found_at < found.found_at, blocks.c.status != REJECTED
        )
    ).scalar()
    since = -1.0 if previous is None else float(previous)
    difficulty = float(
        connection.execute(
            select(func.coalesce(func.sum(shares.c.difficulty), 0.0)).where(
                shares.c.created_at > since, shares.c.created_at <= found.found_at
            )
        ).scalar()
        or 0.0
    )
    effort = difficulty / found.network_difficulty if found.network_difficulty > 0 else 0.0
    connection.execute(
        insert(block_effort).values(
            hash=found.hash,
            network_difficulty=found.network_difficulty,
            share_difficulty=difficulty,
            effort=effort,
        )
    )
    return effort

"""Hashrate history: per-worker and pool totals per interval, written once, read often.

Charts and the API never scan raw shares on a request: every ``tick`` seconds the
:class:`HashrateHistory` service sums the ``shares`` of the open interval and of the one
before it (late and spooled shares land there) into ``worker_hashrate`` and
``pool_hashrate`` rows, replacing the rows of those two intervals, and deletes rows
older than the retention. Readers take ``now`` and turn the sums into hashes per second.

An interval (``bucket``) starts at a multiple of ``interval`` seconds since the epoch.
"""

from __future__ import annotations

import math
from collections.abc import Callable
from dataclasses import dataclass
from functools import partial
from typing import Any, Protocol, TypeVar, cast

from sqlalchemy import Connection, delete, func, insert, select
from twisted.application.internet import TimerService
from twisted.internet.defer import Deferred
from twisted.internet.interfaces import IReactorTime
from twisted.logger import Logger

from otedama.ledger.stats import (
    MIN_SPAN_SECONDS,
    MIN_WORKER_SPAN_SECONDS,
    covered_span,
    hashrate,
)
from otedama.ledger.tables import pool_hashrate, shares, worker_hashrate

T = TypeVar("T")

#: Length of one history interval in seconds (a chart point).
INTERVAL = 300.0
#: How often the open interval is re-summed (its rows are at most this stale).
TICK = 60.0
#: History older than this is deleted.
RETENTION = 30 * 86400.0

#: The ``range`` values the API accepts: span in seconds and the chart step.
RANGES: dict[str, tuple[float, float]] = {
    "1h": (3600.0, 300.0),
    "6h": (6 * 3600.0, 300.0),
    "24h": (86400.0, 300.0),
    "7d": (7 * 86400.0, 3600.0),
    "30d": (30 * 86400.0, 4 * 3600.0),
}


def bucket_of(when: float, interval: float = INTERVAL) -> float:
    """The start of the interval holding ``when``."""
    return math.floor(when / interval) * interval


def refresh_bucket(connection: Connection, bucket: float, interval: float = INTERVAL) -> int:
    """Re-sum one interval's shares into its history rows; returns the worker rows written."""
    end = bucket + interval
    rows = connection.execute(
        select(
            shares.c.address,
            shares.c.worker,
            func.count().label("shares"),
            func.sum(shares.c.difficulty).label("difficulty"),
            func.min(shares.c.created_at).label("first"),
            func.max(shares.c.created_at).label("last"),
        )
        .where(shares.c.created_at >= bucket, shares.c.created_at < end)
        .group_by(shares.c.address, shares.c.worker)
    ).all()
    connection.execute(delete(worker_hashrate).where(worker_hashrate.c.bucket == bucket))
    connection.execute(delete(pool_hashrate).where(pool_hashrate.c.bucket == bucket))
    if not rows:
        return 0
    connection.execute(
        insert(worker_hashrate),
        [
            {
                "bucket": bucket,
                "address": row.address,
                "worker": row.worker,
                "shares": int(row.shares),
                "difficulty": float(row.difficulty),
                "first_share_at": float(row.first),
                "last_share_at": float(row.last),
            }
            for row in rows
        ],
    )
    connection.execute(
        insert(pool_hashrate).values(
            bucket=bucket,
            shares=sum(int(row.shares) for row in rows),
            difficulty=sum(float(row.difficulty) for row in rows),
            workers=len(rows),
            miners=len({row.address for row in rows}),
            first_share_at=min(float(row.first) for row in rows),
        )
    )
    return len(rows)


def refresh(
    connection: Connection, now: float, interval: float = INTERVAL, retention: float = RETENTION
) -> int:
    """Re-sum the open interval and the one before it; delete history past ``retention``."""
    current = bucket_of(now, interval)
    written = refresh_bucket(connection, current - interval, interval)
    written += refresh_bucket(connection, current, interval)
    cutoff = now - retention
    connection.execute(delete(worker_hashrate).where(worker_hashrate.c.bucket < cutoff))
    connection.execute(delete(pool_hashrate).where(pool_hashrate.c.bucket < cutoff))
    return written


def _span(now: float, bucket: float, interval: float) -> float:
    """Seconds of ``bucket`` that have passed by ``now`` (the open one is partial)."""
    return min(interval, max(now - bucket, MIN_SPAN_SECONDS))


@dataclass(frozen=True)
class HistoryPoint:
    """One chart point: the average hashrate over ``[time, time + step)``."""

    time: float
    hashrate: float
    shares: int


def _points(
    rows: list[tuple[float, float, int]], now: float, span: float, step: float, interval: float
) -> list[HistoryPoint]:
    """Group interval rows into ``step`` points over the last ``span`` seconds (gaps are 0)."""
    first = bucket_of(now - span, step) + step
    sums: dict[float, list[float]] = {}  # [difficulty, shares]
    for bucket, difficulty, count in rows:
        point = bucket_of(bucket, step)
        total = sums.setdefault(point, [0.0, 0.0])
        total[0] += difficulty
        total[1] += count
    points = []
    time = first
    last = bucket_of(now, step)
    while time <= last:
        difficulty, shares_sum = sums.get(time, [0.0, 0.0])
        seconds = _span(now, time, step)
        points.append(HistoryPoint(time, hashrate(difficulty, seconds), int(shares_sum)))
        time += step
    return points


def pool_history(
    connection: Connection, now: float, span: float, step: float, interval: float = INTERVAL
) -> list[HistoryPoint]:
    """The pool's hashrate over the last ``span`` seconds, one point per ``step``."""
    start = bucket_of(now - span, step) + step
    rows = connection.execute(
        select(pool_hashrate.c.bucket, pool_hashrate.c.difficulty, pool_hashrate.c.shares).where(
            pool_hashrate.c.bucket >= start
        )
    ).all()
    return _points([(r[0], r[1], r[2]) for r in rows], now, span, step, interval)


def address_history(
    connection: Connection,
    address: str,
    now: float,
    span: float,
    step: float,
    interval: float = INTERVAL,
) -> list[HistoryPoint]:
    """One address's hashrate (all its workers) over the last ``span`` seconds."""
    start = bucket_of(now - span, step) + step
    rows = connection.execute(
        select(
            worker_hashrate.c.bucket,
            func.sum(worker_hashrate.c.difficulty),
            func.sum(worker_hashrate.c.shares),
        )
        .where(worker_hashrate.c.address == address, worker_hashrate.c.bucket >= start)
        .group_by(worker_hashrate.c.bucket)
    ).all()
    return _points([(r[0], float(r[1]), int(r[2])) for r in rows], now, span, step, interval)


def _window_start(now: float, window: float, interval: float) -> float:
    return bucket_of(now - window, interval) + interval


def _covered(now: float, start: float, first_share_at: float, floor: float) -> float:
    """Seconds a window's rate is averaged over: from its first share, not before it
    (right after a start the window reaches back past the first share), to ``now``;
    the same rule as ``otedama stats`` (:func:`otedama.ledger.stats.covered_span`)."""
    return covered_span(now, now - start, first_share_at, floor)


@dataclass(frozen=True)
class PoolRate:
    """The pool's hashrate over a window, from the history rows."""

    window: float
    hashrate: float
    shares: int


def pool_rate(
    connection: Connection, now: float, window: float, interval: float = INTERVAL
) -> PoolRate:
    """The pool's average hashrate over the whole intervals covering the last ``window``."""
    start = _window_start(now, window, interval)
    count, difficulty, first = connection.execute(
        select(
            func.coalesce(func.sum(pool_hashrate.c.shares), 0),
            func.coalesce(func.sum(pool_hashrate.c.difficulty), 0.0),
            func.min(pool_hashrate.c.first_share_at),
        ).where(pool_hashrate.c.bucket >= start)
    ).one()
    if first is None:
        return PoolRate(window, 0.0, 0)
    seconds = _covered(now, start, float(first), MIN_SPAN_SECONDS)
    return PoolRate(window, hashrate(float(difficulty), seconds), int(count))


@dataclass(frozen=True)
class WorkerHistoryRate:
    """One worker's hashrate over a window, with its last share and share count."""

    address: str
    worker: str
    hashrate: float
    shares: int
    difficulty: float
    last_share_at: float


def worker_rates(
    connection: Connection,
    now: float,
    window: float,
    address: str | None = None,
    interval: float = INTERVAL,
) -> list[WorkerHistoryRate]:
    """Per-worker hashrate over the intervals covering the last ``window``, fastest first.

    Each worker's rate is over its own span: from its first share in those intervals to
    ``now``, at least ``MIN_WORKER_SPAN_SECONDS`` (see
    :func:`otedama.ledger.stats.worker_hashrates`, which reads raw shares the same way).
    """
    start = _window_start(now, window, interval)
    query = (
        select(
            worker_hashrate.c.address,
            worker_hashrate.c.worker,
            func.sum(worker_hashrate.c.shares).label("shares"),
            func.sum(worker_hashrate.c.difficulty).label("difficulty"),
            func.max(worker_hashrate.c.last_share_at).label("last"),
            func.min(worker_hashrate.c.first_share_at).label("first"),
        )
        .where(worker_hashrate.c.bucket >= start)
        .group_by(worker_hashrate.c.address, worker_hashrate.c.worker)
    )
    if address is not None:
        query = query.where(worker_hashrate.c.address == address)
    rates = [
        WorkerHistoryRate(
            row.address,
            row.worker,
            hashrate(
                float(row.difficulty),
                _covered(now, start, float(row.first), MIN_WORKER_SPAN_SECONDS),
            ),
            int(row.shares),
            float(row.difficulty),
            float(row.last),
        )
        for row in connection.execute(query)
    ]
    rates.sort(key=lambda r: (-r.hashrate, r.address, r.worker))
    return rates


class Runner(Protocol):
    """What the history service needs of the ledger store."""

    async def run(self, fn: Callable[[Connection], T]) -> T: ...


class HashrateHistory(TimerService):
    """Re-sums the open history interval every ``tick`` seconds on the database threads.

    A failing tick is logged and counted in ``failures``; the timer goes on.
    """

    log = Logger()

    def __init__(
        self,
        store: Runner,
        clock: IReactorTime,
        tick: float = TICK,
        interval: float = INTERVAL,
        retention: float = RETENTION,
    ) -> None:
        if interval <= 0 or tick <= 0 or retention < interval:
            raise ValueError(
                f"history interval, tick and retention must be positive "
                f"(retention at least one interval), got {interval} / {tick} / {retention}"
            )
        super().__init__(tick, self._tick)
        self.clock = clock
        self.store = store
        self.interval = interval
        self.retention = retention
        self.failures = 0
        self._now: Callable[[], float] = cast(Any, clock).seconds
        #: The latest tick's Deferred (tests wait on it).
        self.last_tick: Deferred[None] | None = None

    def _tick(self) -> Deferred[None]:
        self.last_tick = Deferred.fromCoroutine(self.refresh_now())
        return self.last_tick

    async def refresh_now(self) -> None:
        """Re-sum the open interval now (the timer's work; also for tests and the API)."""
        try:
            await self.store.run(
                partial(refresh, now=self._now(), interval=self.interval, retention=self.retention)
            )
        except Exception:
            self.failures += 1
            self.log.failure(
                "hashrate history refresh failed ({count} so far)", count=self.failures
            )

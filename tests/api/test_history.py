"""Hashrate history: interval sums written from shares, read as rates and chart points."""

from __future__ import annotations

from pathlib import Path

import pytest
from sqlalchemy import insert, select

from otedama.api import queries
from otedama.ledger import history
from otedama.ledger.stats import MIN_WORKER_SPAN_SECONDS
from otedama.ledger.tables import pool_hashrate, shares, worker_hashrate
from tests.api.support import migrated_engine
from tests.pool.support import MINER, POOL

T0 = 1_800_000_000.0  # a multiple of 300


def add_shares(connection, rows: list[tuple[float, str, str, float]]) -> None:  # type: ignore[no-untyped-def]
    connection.execute(
        insert(shares),
        [
            {
                "created_at": t,
                "address": a,
                "worker": w,
                "difficulty": d,
                "job_id": "j",
                "height": 1,
            }
            for t, a, w, d in rows
        ],
    )


def test_refresh_sums_the_open_and_previous_interval_per_worker_and_pool(tmp_path: Path) -> None:
    engine = migrated_engine(tmp_path)
    with engine.begin() as c:
        add_shares(
            c,
            [
                (T0 + 10, MINER, "a", 2.0),
                (T0 + 20, MINER, "a", 2.0),
                (T0 + 30, MINER, "b", 1.0),
                (T0 + 310, POOL, "", 4.0),
                (T0 - 600, MINER, "a", 100.0),  # two intervals back: not re-summed
            ],
        )
        assert history.refresh(c, now=T0 + 320) == 3
        rows = c.execute(select(worker_hashrate).order_by(worker_hashrate.c.bucket)).all()
        assert [(r.bucket, r.address, r.worker, r.shares, r.difficulty) for r in rows] == [
            (T0, MINER, "a", 2, 4.0),
            (T0, MINER, "b", 1, 1.0),
            (T0 + 300, POOL, "", 1, 4.0),
        ]
        pool = c.execute(select(pool_hashrate).order_by(pool_hashrate.c.bucket)).all()
        assert [(r.bucket, r.shares, r.difficulty, r.workers, r.miners) for r in pool] == [
            (T0, 3, 5.0, 2, 1),
            (T0 + 300, 1, 4.0, 1, 1),
        ]
        # A late share for the previous interval is counted at the next refresh, once.
        add_shares(c, [(T0 + 40, MINER, "a", 1.0)])
        history.refresh(c, now=T0 + 330)
        history.refresh(c, now=T0 + 340)
        row = c.execute(
            select(worker_hashrate).where(
                worker_hashrate.c.bucket == T0, worker_hashrate.c.worker == "a"
            )
        ).one()
        assert (row.shares, row.difficulty, row.last_share_at) == (3, 5.0, T0 + 40)


def test_rates_and_points_come_from_history_rows(tmp_path: Path) -> None:
    engine = migrated_engine(tmp_path)
    now = T0 + 600.0
    with engine.begin() as c:
        add_shares(c, [(T0 + 300 + i, MINER, "rig", 1.0) for i in range(30)])
        history.refresh(c, now=now - 1)
        rate = history.pool_rate(c, now, 600.0)
        assert rate.shares == 30
        assert rate.hashrate == pytest.approx(30 * 2**32 / 300)
        workers = history.worker_rates(c, now, 600.0, MINER)
        assert [(w.worker, w.shares) for w in workers] == [("rig", 30)]
        points = history.pool_history(c, now, 3600.0, 300.0)
        assert len(points) == 12 and points[-1].time == T0 + 600
        assert [p.shares for p in points if p.shares] == [30]
        assert history.address_history(c, POOL, now, 3600.0, 300.0)[-2].shares == 0


def test_history_older_than_the_retention_is_deleted(tmp_path: Path) -> None:
    engine = migrated_engine(tmp_path)
    with engine.begin() as c:
        add_shares(c, [(T0 + 1, MINER, "a", 1.0)])
        history.refresh(c, now=T0 + 2, retention=3600.0)
        history.refresh(c, now=T0 + 3600 + 301, retention=3600.0)
        assert c.execute(select(worker_hashrate)).all() == []
        assert c.execute(select(pool_hashrate)).all() == []


def test_a_failing_refresh_is_counted_and_the_timer_goes_on() -> None:
    from twisted.internet import task

    class Broken:
        async def run(self, fn):  # type: ignore[no-untyped-def]
            raise RuntimeError("database away")

    clock = task.Clock()
    service = history.HashrateHistory(Broken(), clock, tick=60.0)
    service.startService()
    clock.advance(60.0)
    service.stopService()
    assert service.failures == 2


def test_right_after_a_start_rates_span_from_the_first_share_not_the_window(
    tmp_path: Path,
) -> None:
    """Mining for 60 s is not shown as a tenth of its rate (the window is 600 s)."""
    engine = migrated_engine(tmp_path)
    now = T0 + 200.0
    with engine.begin() as c:
        add_shares(c, [(T0 + 140 + i, MINER, "rig", 1.0) for i in range(60)])
        history.refresh(c, now=now)
        expected = 60 * 2**32 / 60
        assert history.pool_rate(c, now, 600.0).hashrate == pytest.approx(expected)
        assert history.pool_rate(c, now, 86400.0).hashrate == pytest.approx(expected)
        [worker] = history.worker_rates(c, now, 600.0)
        assert worker.hashrate == pytest.approx(expected)


def test_each_worker_is_averaged_over_its_own_mining_time_in_the_api(tmp_path: Path) -> None:
    """/miners/{address}: a worker that joined 5 minutes ago shows its rate over 10 min and
    1 h, next to one that has mined all along; one that stopped shows a falling rate; a
    fresh single share is spread over the 60 s floor; the address total is their sum."""
    engine = migrated_engine(tmp_path)
    now = T0 + 7200.0
    steady = 64 * 2**32 / 10  # difficulty 64 every 10 s
    with engine.begin() as c:
        add_shares(c, [(T0 + 10 * i, MINER, "old", 64.0) for i in range(1, 721)])  # all along
        add_shares(c, [(now - 300 + 10 * i, MINER, "new", 64.0) for i in range(31)])
        add_shares(c, [(now - 1800 + 10 * i, MINER, "gone", 64.0) for i in range(61)])
        add_shares(c, [(now - 1, MINER, "lucky", 64.0)])
        for tick in range(int(T0), int(now) + 1, 300):
            history.refresh(c, now=float(tick))
        answer = queries.miner(c, MINER, now)
    workers = {w["name"]: w for w in answer["workers"]}
    assert set(workers) == {"old", "new", "gone", "lucky"}
    # The 1 h window covers the whole intervals since now - 3600 + 300 (3300 s).
    assert workers["old"]["hashrate_1h"] == pytest.approx(steady, rel=1 / 300)
    assert workers["old"]["hashrate_10m"] == pytest.approx(steady, rel=1 / 30)
    assert workers["new"]["hashrate_1h"] == pytest.approx(steady * 31 / 30)
    assert workers["new"]["hashrate_10m"] == pytest.approx(steady * 31 / 30)
    # Stopped 20 min ago after 10 min of mining: its work over the 30 min since it began.
    assert workers["gone"]["hashrate_1h"] == pytest.approx(61 * 64 * 2**32 / 1800)
    assert workers["gone"]["hashrate_10m"] == 0.0
    assert workers["lucky"]["hashrate_10m"] == 64 * 2**32 / MIN_WORKER_SPAN_SECONDS
    assert answer["hashrate"] == pytest.approx(sum(w["hashrate_10m"] for w in workers.values()))

"""Share ingest: batches counted exactly, spooled while the database is away, replayed."""

from __future__ import annotations

import json
import threading
import uuid
from collections.abc import Callable
from pathlib import Path
from typing import Any

import pytest
import pytest_twisted
from hypothesis import given
from hypothesis import strategies as st
from sqlalchemy import func, select
from twisted.internet import task

from otedama.ledger import db
from otedama.ledger import shares as shares_module
from otedama.ledger.shares import (
    DROPPED,
    SPOOLED,
    STORED,
    ShareRecord,
    ShareSpool,
    ShareWriter,
    copy_line,
    copy_text,
    insert_batch,
)
from otedama.ledger.store import LedgerStore
from otedama.ledger.tables import share_batches, shares

DEAD_URL = "postgresql://postgres@127.0.0.1:1/otedama"


def share(n: int, address: str = "bc1qminer", difficulty: float = 2.0) -> ShareRecord:
    return ShareRecord(
        created_at=1_700_000_000.0 + n,
        address=address,
        worker=f"rig{n % 3}",
        difficulty=difficulty,
        job_id=f"job{n}",
        height=100,
        share_hash=n.to_bytes(32, "little"),
    )


def count_shares(url: str) -> int:
    engine = db.make_engine(url, pool_size=1)
    with engine.connect() as connection:
        total = connection.execute(select(func.count()).select_from(shares)).scalar_one()
    engine.dispose()
    return int(total)


def test_share_record_round_trips_through_the_spool_format() -> None:
    record = share(7, difficulty=0.1)
    assert ShareRecord.from_json(json.loads(json.dumps(record.to_json()))) == record


@pytest.mark.parametrize(
    ("field", "value", "message"),
    [
        ("difficulty", 0.0, "difficulty must be positive"),
        ("difficulty", float("nan"), "difficulty must be positive"),
        ("address", "", "address is empty"),
        ("height", -1, "height must not be negative"),
        ("created_at", float("inf"), "created_at must be epoch seconds"),
    ],
)
def test_share_record_rejects_bad_values_naming_them(
    field: str, value: object, message: str
) -> None:
    values = share(1).as_row() | {field: value}
    with pytest.raises(ValueError, match=message):
        ShareRecord(**values)


@pytest_twisted.ensureDeferred
async def test_every_share_is_stored_exactly_once_in_batches(store: LedgerStore) -> None:
    for n in range(1234):
        store.add_share(share(n))
    assert store.batcher.buffered == 34  # 12 full batches of 100 already handed off
    await store.flush_shares()
    count = await store.run(
        lambda c: c.execute(select(func.count()).select_from(shares)).scalar_one()
    )
    batches = await store.run(
        lambda c: c.execute(select(func.count(), func.sum(share_batches.c.count))).one()
    )
    assert count == 1234
    assert tuple(batches) == (13, 1234)
    assert store.batcher.stored == 1234
    assert store.health().status == "ok"


@pytest_twisted.ensureDeferred
async def test_the_flush_timer_writes_a_partial_batch(
    store: LedgerStore, clock: task.Clock
) -> None:
    for n in range(5):
        store.add_share(share(n))
    clock.advance(store.batcher.flush_interval)
    await store.batcher.flush()  # waits for the write the timer started
    count = await store.run(
        lambda c: c.execute(select(func.count()).select_from(shares)).scalar_one()
    )
    assert count == 5


@pytest_twisted.ensureDeferred
async def test_shares_are_spooled_while_the_database_is_down_and_counted_when_it_returns(
    db_url: str, tmp_path: Path, make_store: Callable[..., LedgerStore]
) -> None:
    spool_dir = tmp_path / "spool"
    down = make_store(DEAD_URL, spool_dir, batch_size=50)
    for n in range(320):
        down.add_share(share(n))
    await down.flush_shares()
    health = down.health()
    assert health.status == "degraded"
    assert health.reason is not None and "connection refused at 127.0.0.1:1" in health.reason
    assert down.batcher.spooled == 320 and down.batcher.stored == 0
    assert health.spool_bytes > 0
    await down.stop()

    # "The database returns": the node restarts on the working URL with the spool left over.
    back = make_store(db_url, spool_dir, batch_size=50)
    await back.batcher.replay_now()
    assert count_shares(db_url) == 320
    assert back.batcher.replayed == 320
    assert back.health().status == "ok"
    assert not list(spool_dir.glob("spool-*.jsonl"))
    await back.stop()


def test_a_batch_committed_before_a_crash_is_not_counted_again_on_replay(
    db_url: str, tmp_path: Path
) -> None:
    """Crash between the insert's commit and the spool truncation: replay skips the batch."""
    engine = db.make_engine(db_url, pool_size=1)
    spool = ShareSpool(tmp_path / "spool")
    first = [share(n) for n in range(10)]
    second = [share(n) for n in range(10, 25)]
    assert spool.append("batch-a", first, 1.0)
    assert spool.append("batch-b", second, 2.0)
    with engine.begin() as connection:  # batch-a reached the database, then the crash
        insert_batch(connection, "batch-a", first, 1.0)

    result = ShareWriter(engine, spool).replay(3.0)

    assert (result.replayed_shares, result.skipped_batches) == (15, 1)
    engine.dispose()
    assert count_shares(db_url) == 25
    assert not spool.has_data()


def test_a_torn_last_line_is_reported_and_the_rest_replayed(db_url: str, tmp_path: Path) -> None:
    engine = db.make_engine(db_url, pool_size=1)
    spool = ShareSpool(tmp_path / "spool")
    assert spool.append("whole", [share(1), share(2)], 1.0)
    segment = spool.rotate()[0]
    with open(segment, "ab") as f:
        f.write(b'{"key":"torn","at":2.0,"shares":[[1700')

    result = ShareWriter(engine, spool).replay(3.0)

    engine.dispose()
    assert result.replayed_shares == 2
    assert [bad.reason for bad in result.bad_lines] == ["torn last line (crash while writing)"]
    assert count_shares(db_url) == 2


def test_a_full_spool_drops_the_batch_and_says_so(tmp_path: Path) -> None:
    spool = ShareSpool(tmp_path / "spool", max_bytes=600)
    writer = ShareWriter(db.make_engine(DEAD_URL), spool)
    outcomes = [writer.write(f"k{n}", [share(n)], 1.0) for n in range(5)]
    assert [o.outcome for o in outcomes[:2]] == [SPOOLED, SPOOLED]
    assert outcomes[-1].outcome == DROPPED
    assert outcomes[-1].reason is not None and "share spool full" in outcomes[-1].reason
    assert spool.size <= 600


def test_the_spool_keeps_its_size_and_numbering_across_a_restart(tmp_path: Path) -> None:
    spool = ShareSpool(tmp_path / "spool")
    assert spool.append("a", [share(1)], 1.0)
    size = spool.size
    spool.close()
    reopened = ShareSpool(tmp_path / "spool")
    assert reopened.size == size and reopened.has_data()
    assert reopened.append("b", [share(2)], 2.0)
    assert [p.name for p in reopened.rotate()] == [
        "spool-000000000001.jsonl",
        "spool-000000000002.jsonl",
    ]


def test_a_repeated_batch_key_is_spooled_and_then_skipped_not_doubled(
    db_url: str, tmp_path: Path
) -> None:
    engine = db.make_engine(db_url, pool_size=1)
    spool = ShareSpool(tmp_path / "spool")
    with engine.begin() as connection:
        insert_batch(connection, "taken", [share(1)], 1.0)
    writer = ShareWriter(engine, spool)
    # The same key again violates share_batches' primary key: not a connection problem.
    result = writer.write("taken", [share(2)], 2.0)
    assert result.outcome == SPOOLED
    assert writer.degraded_reason is None
    replay = writer.replay(3.0)
    engine.dispose()
    assert replay.skipped_batches == 1
    assert count_shares(db_url) == 1


def test_a_batch_postgresql_refuses_is_kept_in_the_rejected_file(
    pg_url: str, tmp_path: Path
) -> None:
    engine = db.make_engine(pg_url, pool_size=1)
    spool = ShareSpool(tmp_path / "spool")
    writer = ShareWriter(engine, spool)
    bad = ShareRecord(1.0, "bc1qbad", "w", 1.0, "j", 2**40)  # height overflows INTEGER
    before = count_shares(pg_url)

    first = writer.write("bad-batch", [bad], 1.0)
    replay = writer.replay(2.0)
    engine.dispose()

    assert first.outcome == SPOOLED
    assert first.reason is not None and "refused a share batch" in first.reason
    assert writer.degraded_reason is None
    assert replay.rejected_shares == 1
    rejected = [
        json.loads(line) for line in (spool.directory / "rejected.jsonl").read_text().splitlines()
    ]
    assert [r["key"] for r in rejected] == ["bad-batch"]
    assert "out of range" in rejected[0]["reason"]
    assert count_shares(pg_url) == before
    assert not spool.has_data()


def test_a_working_database_stores_directly(db_url: str, tmp_path: Path) -> None:
    engine = db.make_engine(db_url, pool_size=1)
    writer = ShareWriter(engine, ShareSpool(tmp_path / "spool"))
    result = writer.write("k", [share(1), share(2)], 1.0)
    engine.dispose()
    assert (result.outcome, result.count) == (STORED, 2)


@pytest_twisted.ensureDeferred
async def test_a_share_arriving_after_the_ledger_stopped_goes_to_the_spool(
    db_url: str, tmp_path: Path, make_store: Callable[..., LedgerStore]
) -> None:
    spool_dir = tmp_path / "spool"
    first = make_store(db_url, spool_dir)
    first.add_share(share(1))
    await first.stop()
    appended_on: list[str] = []
    append = first.spool.append

    def recording_append(*args: Any) -> bool:
        appended_on.append(threading.current_thread().name)
        return append(*args)

    first.spool.append = recording_append  # type: ignore[method-assign]
    first.add_share(share(2))  # a late share: Stratum was not stopped first
    assert appended_on == []  # not written (nor fsynced) on the reactor thread ...
    await first.batcher.flush()
    assert appended_on == ["ledger-files"]  # ... but on the file thread
    assert (first.batcher.stored, first.batcher.spooled) == (1, 1)

    second = make_store(db_url, spool_dir)
    await second.batcher.replay_now()
    await second.stop()
    assert count_shares(db_url) == 2


def test_worker_names_with_tabs_backslashes_and_newlines_are_stored_unchanged(
    db_url: str,
) -> None:
    """PostgreSQL takes shares by COPY; its escaping must not alter what miners sent."""
    odd = [
        ShareRecord(1.0, "a\\b\tc\nd\re", "w\\N", 1e-300, "\\x00", 5, b"\x00\\\t\n"),
        ShareRecord(2.0, "日本", "", 0.1, "j", 0, None),
        ShareRecord(3.0, "bc1q", "rig.1", 1234.5678, "ff", 2**31 - 1, bytes(range(32))),
    ]
    engine = db.make_engine(db_url, pool_size=1)
    with engine.begin() as connection:
        insert_batch(connection, "odd", odd, 1.0)
    with engine.connect() as connection:
        rows = connection.execute(select(shares).order_by(shares.c.created_at)).all()
    engine.dispose()
    stored = [
        ShareRecord(
            r.created_at,
            r.address,
            r.worker,
            r.difficulty,
            r.job_id,
            r.height,
            None if r.share_hash is None else bytes(r.share_hash),
        )
        for r in rows
    ]
    assert stored == odd


@pytest_twisted.ensureDeferred
async def test_the_batchers_timers_survive_a_failing_tick(
    db_url: str, make_store: Callable[..., LedgerStore], monkeypatch: pytest.MonkeyPatch
) -> None:
    """A tick that raises is logged and counted; both timers keep running."""
    clock = task.Clock()
    store = make_store(db_url, clock=clock)
    batcher = store.batcher
    await batcher.replay_now()
    failures = {"flush": 1, "spool check": 1}
    uuid4 = uuid.uuid4
    has_data = store.spool.has_data

    def failing_uuid4() -> uuid.UUID:
        if failures["flush"]:
            failures["flush"] -= 1
            raise RuntimeError("injected flush failure")
        return uuid4()

    def failing_has_data() -> bool:
        if failures["spool check"]:
            failures["spool check"] -= 1
            raise RuntimeError("injected spool check failure")
        return has_data()

    monkeypatch.setattr(shares_module.uuid, "uuid4", failing_uuid4)
    monkeypatch.setattr(store.spool, "has_data", failing_has_data)
    store.add_share(share(1))
    clock.advance(batcher.retry_interval)  # one failing flush tick and one failing check
    assert batcher.tick_failures == 2
    assert batcher.buffered == 1  # the failed flush kept its shares
    clock.advance(batcher.flush_interval)  # the next flush tick runs
    await batcher.flush()
    assert batcher.stored == 1 and batcher.tick_failures == 2
    assert failures == {"flush": 0, "spool check": 0}


@given(
    st.lists(
        st.builds(
            ShareRecord,
            created_at=st.floats(0, 2e9, allow_nan=False),
            address=st.sampled_from(["bc1qa", "bc1q\\tb", "bc1q\nc"]),
            worker=st.sampled_from(["", "rig\\1", "rig\t2", "r\r3"]),
            difficulty=st.sampled_from([2.0**-32, 0.1, 1.0, 1e300]),
            job_id=st.sampled_from(["1a", "j\\n"]),
            height=st.integers(0, 10**7),
            share_hash=st.one_of(st.none(), st.binary(min_size=32, max_size=32)),
        ),
        max_size=30,
    )
)
def test_a_batchs_copy_text_is_its_rows_copy_lines(records: list[ShareRecord]) -> None:
    """The batch COPY text (escapes memoised per batch) is exactly the per-row lines."""
    assert copy_text(records) == "".join(map(copy_line, records))

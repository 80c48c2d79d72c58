"""The PPLNS window's running totals equal the full scan of the shares table, exactly.

Hypothesis writes random share batches (random times, addresses, difficulties, windows),
sends some to the spool instead and replays them after a "restart" (a new writer on the
same spool and database, some batches replayed twice), folds the batches' deltas into the
totals after every batch, never, or at random moments, and checks that every block's
window read from the totals (with whatever deltas are pending) equals the scan, and that
the check mode finds nothing. On PostgreSQL, threads also write batches concurrently
while another folds and a reader compares the two in one snapshot.
"""

from __future__ import annotations

import math
import tempfile
import threading
import uuid
from collections.abc import Callable
from fractions import Fraction
from pathlib import Path

import pytest
from hypothesis import HealthCheck, given, settings
from hypothesis import strategies as st
from sqlalchemy import Engine, func, select, text, update

from otedama.ledger import db
from otedama.ledger.blocks import FoundBlock, RewardPolicy, record_block
from otedama.ledger.rewards import RewardScheme, ScaledWeights, split_reward
from otedama.ledger.shares import ShareRecord, ShareSpool, ShareWriter, insert_batch
from otedama.ledger.tables import metadata, shares, window_state, window_totals
from otedama.ledger.window import (
    UNITS,
    read_state,
    rebuild_totals,
    scan_weights,
    verify_totals,
    window_weights,
)

T0 = 1_700_000_000.0
ADDRESSES = [f"bcrt1qminer{n}" for n in range(5)]
DIFFICULTIES = [1.0, 0.5, 2.0**-32, 3.0, 0.001, 1024.0, 1e-6]


def record(t: float, address: int, difficulty: float) -> ShareRecord:
    return ShareRecord(
        created_at=T0 + t,
        address=ADDRESSES[address],
        worker="rig",
        difficulty=difficulty,
        job_id="j",
        height=1,
    )


share_st = st.builds(
    record,
    st.integers(0, 400).map(lambda n: n / 4),
    st.integers(0, len(ADDRESSES) - 1),
    st.sampled_from(DIFFICULTIES),
)
#: A batch and what happens to it: written, or spooled (replayed at the next restart),
#: or written after a fold of the deltas pending.
step_st = st.tuples(
    st.sampled_from(["write", "write", "spool", "restart", "fold"]),
    st.lists(share_st, min_size=1, max_size=12),
)
#: Fold after every batch, or only when a step says so (and at the end, or not).
fold_st = st.sampled_from([0.0, math.inf])


def sqlite_engine(directory: str) -> Engine:
    engine = db.make_engine(f"sqlite:///{directory}/ledger.sqlite", pool_size=1)
    metadata.create_all(engine)
    return engine


def play(
    engine: Engine,
    spool_dir: Path,
    steps: list[tuple[str, list[ShareRecord]]],
    window: float,
    fold_interval: float = 0.0,
) -> None:
    """Write, spool and replay the batches as a node would, restarts included."""
    spool = ShareSpool(spool_dir)
    writer = ShareWriter(engine, spool, window, fold_interval)
    replay_twice: list[tuple[str, list[ShareRecord]]] = []
    for action, batch in steps:
        key = uuid.uuid4().hex
        if action == "spool":
            writer.spool_batch(key, batch, 0.0, "test")
            replay_twice.append((key, batch))
            continue
        if action == "fold":
            writer.fold_now()
        if action == "restart":
            spool.close()
            spool = ShareSpool(spool_dir)
            writer = ShareWriter(engine, spool, window, fold_interval)
            writer.replay(0.0)
            # A batch whose commit reply was lost is replayed again: skipped.
            for old_key, old_batch in replay_twice:
                with engine.begin() as connection:
                    assert not insert_batch(
                        connection, old_key, old_batch, 0.0, skip_if_present=True
                    )
            replay_twice = []
        assert writer.write(key, batch, 0.0).outcome == "stored"
    spool.close()
    ShareWriter(engine, ShareSpool(spool_dir), window, fold_interval).replay(0.0)
    assert writer.fold_failures == 0, writer.fold_error


def check_every_block(engine: Engine, window: float, ends: list[float]) -> None:
    with engine.begin() as connection:
        assert verify_totals(connection).ok
        for end in ends:
            span = (T0 + end - window, T0 + end)
            assert window_weights(connection, span) == scan_weights(connection, span)
        # PROP's round (from the previous block, or from the beginning).
        span = (-math.inf, T0 + ends[0])
        assert window_weights(connection, span) == scan_weights(connection, span)


@settings(max_examples=60, deadline=None, suppress_health_check=[HealthCheck.too_slow])
@given(
    steps=st.lists(step_st, min_size=1, max_size=12),
    window=st.sampled_from([2.0, 10.0, 40.0, 1000.0]),
    ends=st.lists(st.integers(0, 420).map(lambda n: n / 4), min_size=1, max_size=6),
    fold_interval=fold_st,
)
def test_window_totals_equal_the_full_scan_through_batches_spools_and_restarts(
    steps: list[tuple[str, list[ShareRecord]]],
    window: float,
    ends: list[float],
    fold_interval: float,
) -> None:
    with tempfile.TemporaryDirectory() as directory:
        engine = sqlite_engine(directory)
        try:
            play(engine, Path(directory) / "spool", steps, window, fold_interval)
            check_every_block(engine, window, ends)
        finally:
            engine.dispose()


@pytest.fixture
def empty_pg(pg_url: str) -> Callable[[], Engine]:
    def make() -> Engine:
        engine = db.make_engine(pg_url, pool_size=1)
        names = ", ".join(t.name for t in metadata.sorted_tables)
        with engine.begin() as connection:
            connection.execute(text(f"TRUNCATE {names} RESTART IDENTITY CASCADE"))
        return engine

    return make


@settings(
    max_examples=15,
    deadline=None,
    suppress_health_check=[HealthCheck.too_slow, HealthCheck.function_scoped_fixture],
)
@given(
    steps=st.lists(step_st, min_size=1, max_size=8),
    window=st.sampled_from([2.0, 10.0, 40.0]),
    ends=st.lists(st.integers(0, 420).map(lambda n: n / 4), min_size=1, max_size=4),
    fold_interval=fold_st,
)
def test_window_totals_equal_the_full_scan_on_postgresql(
    empty_pg: Callable[[], Engine],
    steps: list[tuple[str, list[ShareRecord]]],
    window: float,
    ends: list[float],
    fold_interval: float,
) -> None:
    engine = empty_pg()
    with tempfile.TemporaryDirectory() as directory:
        try:
            play(engine, Path(directory) / "spool", steps, window, fold_interval)
            check_every_block(engine, window, ends)
        finally:
            engine.dispose()


def test_concurrent_batches_folds_and_reads_on_postgresql(
    empty_pg: Callable[[], Engine], tmp_path: Path
) -> None:
    """Batches from three threads (shares out of order, one thread's often behind the
    window), a fourth folding, and a reader comparing the totals with the scan in one
    snapshot (REPEATABLE READ) while they run: equal every time, and at the end."""
    import random

    engine = empty_pg()
    engine.dispose()
    engine = db.make_engine(engine.url.render_as_string(hide_password=False), pool_size=6)
    window = 20.0
    errors: list[BaseException] = []
    done = threading.Event()
    compared = 0

    def write(seed: int) -> None:
        rng = random.Random(seed)
        writer = ShareWriter(engine, ShareSpool(tmp_path / f"spool{seed}"), window, math.inf)
        # The first thread's shares are up to 20 s late (behind the window's start
        # often), the others' a moment.
        late = 80 if seed == 0 else 0
        for n in range(40):
            batch = [
                record(
                    n * 2.5 + rng.randrange(-late, 10) / 4,
                    rng.randrange(len(ADDRESSES)),
                    rng.choice(DIFFICULTIES),
                )
                for _ in range(rng.randrange(1, 30))
            ]
            assert writer.write(uuid.uuid4().hex, batch, 0.0).outcome == "stored"

    def fold_often() -> None:
        writer = ShareWriter(engine, ShareSpool(tmp_path / "spool-fold"), window, 0.0)
        while not done.is_set():
            writer.fold_now()
            assert writer.fold_failures == 0, writer.fold_error

    def read() -> None:
        nonlocal compared
        rng = random.Random(7)
        while not done.is_set():
            end = T0 + rng.randrange(0, 440) / 4
            span = (end - window, end)
            with (
                engine.connect().execution_options(isolation_level="REPEATABLE READ") as connection,
                connection.begin(),
            ):
                assert window_weights(connection, span) == scan_weights(connection, span)
            compared += 1

    def guarded(work: Callable[[], None]) -> Callable[[], None]:
        def run() -> None:
            try:
                work()
            except BaseException as e:
                errors.append(e)
                done.set()

        return run

    writers = [threading.Thread(target=guarded(lambda s=s: write(s))) for s in range(3)]
    others = [threading.Thread(target=guarded(fold_often)), threading.Thread(target=guarded(read))]
    for thread in writers + others:
        thread.start()
    for thread in writers:
        thread.join(timeout=120)
    done.set()
    for thread in others:
        thread.join(timeout=60)
    try:
        assert not any(thread.is_alive() for thread in writers + others)
        if errors:
            raise errors[0]
        assert compared > 0
        check_every_block(engine, window, [n / 4 for n in range(0, 440, 37)])
        ShareWriter(engine, ShareSpool(tmp_path / "spool-fold"), window, 0.0).fold_now()
        check_every_block(engine, window, [n / 4 for n in range(0, 440, 37)])
    finally:
        engine.dispose()


@pytest.mark.parametrize("database", ["sqlite", "postgresql"])
def test_addresses_with_quotes_commas_and_braces_survive_the_deltas(
    database: str, empty_pg: Callable[[], Engine], tmp_path: Path
) -> None:
    """A delta row's addresses are an array literal (PostgreSQL) or JSON (SQLite)."""
    odd = ['a"b', "c\\d", "e,f", "{g}", "NULL", " h ", "é\t"]
    engine = empty_pg() if database == "postgresql" else sqlite_engine(str(tmp_path))
    try:
        writer = ShareWriter(engine, ShareSpool(tmp_path / "spool"), 10.0, math.inf)
        for n, address in enumerate(odd):
            share = ShareRecord(T0 + n, address, "rig", 0.5 + n, "j", 1)
            assert writer.write(uuid.uuid4().hex, [share, share], 0.0).outcome == "stored"
        span = (T0 - 1, T0 + 9)
        with engine.begin() as connection:
            assert verify_totals(connection).ok
            assert window_weights(connection, span) == scan_weights(connection, span)
            assert set(scan_weights(connection, span)) == set(odd)
        writer.fold_now()
        with engine.begin() as connection:
            assert verify_totals(connection).ok
            assert window_weights(connection, span) == scan_weights(connection, span)
    finally:
        engine.dispose()


def test_a_block_is_weighed_from_the_totals_not_the_shares(tmp_path: Path) -> None:
    """Shares behind the totals' start can be gone from the table: the read never needs them."""
    engine = sqlite_engine(str(tmp_path))
    writer = ShareWriter(engine, ShareSpool(tmp_path / "spool"), 100.0, fold_interval=0.0)
    for n in range(10):
        batch = [record(n * 30 + k, k % 3, 2.0) for k in range(5)]
        writer.write(uuid.uuid4().hex, batch, 0.0)
    with engine.begin() as connection:
        state = read_state(connection)
        assert state.start == T0 + 274 - 100
        expected = scan_weights(connection, (T0 + 174, T0 + 274))
        # Take the totals away behind the reader's back: it must see the difference.
        connection.execute(
            update(window_totals)
            .where(window_totals.c.address == ADDRESSES[0])
            .values(weight=str(7 * UNITS))
        )
        weights = window_weights(connection, (T0 + 174, T0 + 274))
    assert weights[ADDRESSES[0]] == 7
    assert weights[ADDRESSES[1]] == expected[ADDRESSES[1]]


def test_the_check_mode_finds_a_wrong_total_and_rebuild_repairs_it(tmp_path: Path) -> None:
    engine = sqlite_engine(str(tmp_path))
    writer = ShareWriter(engine, ShareSpool(tmp_path / "spool"), 50.0)
    writer.write("a", [record(k, k % 2, 1.0) for k in range(20)], 0.0)
    with engine.begin() as connection:
        assert verify_totals(connection).ok
        connection.execute(update(window_totals).values(weight="1"))
        check = verify_totals(connection)
        assert not check.ok
        assert {address for address, _, _ in check.differences} == set(ADDRESSES[:2])
        assert rebuild_totals(connection).ok


def test_a_difficulty_the_totals_cannot_hold_exactly_falls_back_to_the_scan(
    tmp_path: Path,
) -> None:
    engine = sqlite_engine(str(tmp_path))
    writer = ShareWriter(engine, ShareSpool(tmp_path / "spool"), 50.0)
    writer.write("a", [record(1, 0, 1.0), record(2, 1, 2.0**-200)], 0.0)
    with engine.begin() as connection:
        assert not read_state(connection).valid
        span = (T0 - 10, T0 + 10)
        assert window_weights(connection, span) == {
            ADDRESSES[0]: Fraction(1),
            ADDRESSES[1]: Fraction(2) ** -200,
        }
        assert not verify_totals(connection).ok


def test_record_block_splits_from_the_totals_exactly_as_from_the_scan(tmp_path: Path) -> None:
    engine = sqlite_engine(str(tmp_path))
    writer = ShareWriter(engine, ShareSpool(tmp_path / "spool"), 60.0)
    for n in range(8):
        writer.write(uuid.uuid4().hex, [record(n * 20 + k, k % 5, 0.001) for k in range(7)], 0.0)
    policy = RewardPolicy(RewardScheme.PPLNS, 100, "bcrt1qfee", pplns_window=60.0)
    found = FoundBlock(1, "ab" * 32, ADDRESSES[0], "rig", 312_500_000, T0 + 146)
    with engine.begin() as connection:
        expected = split_reward(
            RewardScheme.PPLNS,
            found.reward,
            100,
            scan_weights(connection, (T0 + 86, T0 + 146)),
            found.finder_address,
            "bcrt1qfee",
        )
        recorded = record_block(connection, found, policy, T0 + 200)
    assert recorded.split == expected


def test_the_migration_sums_the_shares_already_there(tmp_path: Path) -> None:
    url = f"sqlite:///{tmp_path / 'ledger.sqlite'}"
    engine = db.make_engine(url, pool_size=1)
    with engine.begin() as connection:
        db.upgrade(connection, "0001")
        connection.execute(
            shares.insert(), [r.as_row() for r in (record(1, 0, 2.0), record(2, 1, 0.5))]
        )
        db.upgrade(connection)
        assert verify_totals(connection).ok
        assert connection.execute(select(func.count()).select_from(window_state)).scalar() == 1
        assert window_weights(connection, (-math.inf, T0 + 5)) == {
            ADDRESSES[0]: Fraction(2),
            ADDRESSES[1]: Fraction(1, 2),
        }
    engine.dispose()


@settings(max_examples=200, deadline=None)
@given(
    units=st.dictionaries(
        st.sampled_from(ADDRESSES), st.integers(0, 2**200), min_size=0, max_size=len(ADDRESSES)
    ),
    scale=st.sampled_from([1, 3, UNITS]),
    reward=st.integers(0, 21_000_000 * 100_000_000),
    fee_bp=st.integers(0, 10_000),
)
def test_splitting_scaled_integer_weights_equals_splitting_their_fractions(
    units: dict[str, int], scale: int, reward: int, fee_bp: int
) -> None:
    """The totals' integer weights are split directly; the credits are the Fractions' own."""
    scaled = ScaledWeights(units, scale)
    fractions = {address: Fraction(n, scale) for address, n in units.items()}
    assert scaled == fractions
    assert split_reward(RewardScheme.PPLNS, reward, fee_bp, scaled, None, "bcrt1qfee") == (
        split_reward(RewardScheme.PPLNS, reward, fee_bp, fractions, None, "bcrt1qfee")
    )


def test_negative_scaled_weights_are_refused() -> None:
    with pytest.raises(ValueError, match="negative"):
        split_reward(RewardScheme.PPLNS, 100, 0, ScaledWeights({"a": -1}, UNITS), None, "bcrt1qfee")

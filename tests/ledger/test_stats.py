"""The read side: balances from the journal, hashrates, pool stats, ``otedama stats``."""

from __future__ import annotations

import json
from collections.abc import Callable
from pathlib import Path
from typing import Any

import pytest
from chainfake import block_hash
from hypothesis import given
from hypothesis import strategies as st
from sqlalchemy import Connection, Engine, insert

from otedama import cli
from otedama.commands.stats import format_hashrate, format_sats, format_table
from otedama.ledger import db
from otedama.ledger.shares import ShareRecord, insert_batch
from otedama.ledger.stats import (
    MIN_SPAN_SECONDS,
    MIN_WORKER_SPAN_SECONDS,
    Balance,
    address_balance,
    balance_totals,
    balances,
    covered_span,
    hashrate,
    journal_total,
    payout_history,
    pool_stats,
    spendable_balances,
    worker_hashrates,
)
from otedama.ledger.tables import blocks, journal, payout_batches, payout_items

NOW = 1_700_000_000.0


@pytest.fixture
def engine(db_url: str) -> Any:
    engine = db.make_engine(db_url, pool_size=1)
    yield engine
    engine.dispose()


def add_block(connection: Connection, height: int, status: str) -> int:
    return int(
        connection.execute(
            insert(blocks).returning(blocks.c.id),
            {
                "height": height,
                "hash": block_hash(str(height)),
                "finder_address": "alice",
                "finder_worker": "w",
                "reward": 1000,
                "scheme": "PPLNS",
                "status": status,
                "confirmations": 0,
                "found_at": NOW - 1000 + height,
                "updated_at": NOW,
            },
        ).scalar_one()
    )


def add_batch(connection: Connection, state: str, items: dict[str, int]) -> int:
    batch_id = int(
        connection.execute(
            insert(payout_batches).returning(payout_batches.c.id),
            {
                "created_at": NOW,
                "updated_at": NOW,
                "state": state,
                "comment": f"otedama-payout-{state}-{sorted(items)}",
                "txid": None if state == "committed" else "ab" * 32,
                "total": sum(items.values()),
            },
        ).scalar_one()
    )
    for address, amount in items.items():
        connection.execute(
            insert(payout_items), {"batch_id": batch_id, "address": address, "amount": amount}
        )
        entry(connection, address, "payout", -amount, batch_id=batch_id)
    return batch_id


def entry(
    connection: Connection,
    address: str,
    kind: str,
    amount: int,
    block_id: int | None = None,
    batch_id: int | None = None,
) -> None:
    connection.execute(
        insert(journal),
        {
            "created_at": NOW,
            "address": address,
            "kind": kind,
            "amount": amount,
            "block_id": block_id,
            "batch_id": batch_id,
            "note": "",
        },
    )


def ledger_with_history(engine: Engine) -> None:
    """alice: 300 immature, 700 confirmed of which 250 sent + 100 committed + 50 failed."""
    with engine.begin() as c:
        pending = add_block(c, 1, "pending")
        confirmed = add_block(c, 2, "confirmed")
        orphaned = add_block(c, 3, "orphaned")
        entry(c, "alice", "credit", 300, block_id=pending)
        entry(c, "alice", "credit", 700, block_id=confirmed)
        entry(c, "bob", "credit", 90, block_id=confirmed)
        entry(c, "bob", "credit", 40, block_id=orphaned)
        entry(c, "bob", "orphan_reversal", -40, block_id=orphaned)
        add_batch(c, "confirmed", {"alice": 200})
        add_batch(c, "sent", {"alice": 50})
        add_batch(c, "committed", {"alice": 100})
        failed = add_batch(c, "failed", {"alice": 50})
        entry(c, "alice", "payout_reversal", 50, batch_id=failed)


def test_balances_split_the_journal_into_immature_spendable_and_paid(engine: Engine) -> None:
    ledger_with_history(engine)
    with engine.connect() as c:
        result = balances(c)
        assert result == {
            "alice": Balance("alice", immature=300, spendable=350, paid=250, payout_pending=100),
            "bob": Balance("bob", immature=0, spendable=90, paid=0, payout_pending=0),
        }
        for address, balance in result.items():
            assert balance.immature + balance.spendable == journal_total(c, address)
        assert spendable_balances(c) == {"alice": 350, "bob": 90}
        assert address_balance(c, "nobody") == Balance("nobody")
        assert balance_totals(c) == Balance("*", 300, 440, 250, 100)


def test_payout_history_lists_batches_and_an_addresses_items_newest_first(engine: Engine) -> None:
    ledger_with_history(engine)
    with engine.connect() as c:
        pool = payout_history(c)
        mine = payout_history(c, "alice", limit=2)
    assert [p.state for p in pool] == ["failed", "committed", "sent", "confirmed"]
    assert [p.recipients for p in pool] == [1, 1, 1, 1]
    assert [(p.state, p.amount, p.address) for p in mine] == [
        ("failed", 50, "alice"),
        ("committed", 100, "alice"),
    ]


def add_shares(engine: Engine) -> None:
    records = [
        ShareRecord(NOW - 30, "alice", "rig1", 1024.0, "j", 1),
        ShareRecord(NOW - 20, "alice", "rig1", 1024.0, "j", 1),
        ShareRecord(NOW - 10, "alice", "rig2", 512.0, "j", 1),
        ShareRecord(NOW - 5, "bob", "s9", 4096.0, "j", 1),
        ShareRecord(NOW - 700, "carol", "old", 1e9, "j", 1),  # outside 10 min
    ]
    with engine.begin() as c:
        insert_batch(c, "k", records, NOW)


def test_hashrate_is_difficulty_times_two_to_the_32_over_seconds() -> None:
    assert hashrate(600.0, 600.0) == 2**32
    with pytest.raises(ValueError, match="positive"):
        hashrate(1.0, 0)


def test_worker_hashrates_are_per_worker_over_the_window(engine: Engine) -> None:
    add_shares(engine)
    with engine.connect() as c:
        rates = worker_hashrates(c, NOW, 600.0)
        alice = worker_hashrates(c, NOW, 600.0, address="alice")
    assert [(r.address, r.worker, r.shares) for r in rates] == [
        ("bob", "s9", 1),
        ("alice", "rig1", 2),
        ("alice", "rig2", 1),
    ]
    # Each worker started less than a minute ago: its rate is over the 60 s floor.
    assert rates[1].hashrate == 2048 * 2**32 / MIN_WORKER_SPAN_SECONDS
    assert rates[1].last_share_at == NOW - 20
    assert [r.worker for r in alice] == ["rig1", "rig2"]


def steady(
    first: float, last: float, worker: str = "rig", every: float = 10.0
) -> list[ShareRecord]:
    """One share of difficulty 64 every ``every`` seconds from ``first`` to ``last``."""
    count = round((last - first) / every) + 1
    return [ShareRecord(first + i * every, "alice", worker, 64.0, "j", 1) for i in range(count)]


#: What ``steady`` shares at one per 10 s mean: difficulty 64 per 10 s.
STEADY_RATE = 64 * 2**32 / 10


def one_rate(engine: Engine, now: float, window: float) -> float | None:
    with engine.connect() as c:
        rates = worker_hashrates(c, now, window)
    assert len(rates) <= 1
    return rates[0].hashrate if rates else None


def test_a_worker_that_started_late_in_the_window_shows_its_real_rate(engine: Engine) -> None:
    """Five minutes of mining in an hour's window is not shown as a twelfth of its rate."""
    with engine.begin() as c:
        insert_batch(c, "k", steady(NOW - 300, NOW), NOW)
    # 31 shares over the 300 s since the first: its rate, plus the first share's work.
    assert one_rate(engine, NOW, 3600.0) == pytest.approx(STEADY_RATE * 31 / 30)


def test_a_worker_steady_over_the_whole_window_is_averaged_over_the_window(
    engine: Engine,
) -> None:
    with engine.begin() as c:
        insert_batch(c, "k", steady(NOW - 7200, NOW), NOW)
    with engine.connect() as c:
        [rate] = worker_hashrates(c, NOW, 3600.0)
    # The window's shares over the time since its first one (NOW - 3590): its rate
    # within one share's work, as the whole-window average was.
    assert rate.shares == 360
    assert rate.hashrate == 360 * 64 * 2**32 / 3590
    assert rate.hashrate == pytest.approx(STEADY_RATE, rel=1 / 359)


def test_a_stopped_workers_rate_falls_until_its_last_share_leaves_the_window(
    engine: Engine,
) -> None:
    """Mined for 10 min, then stopped: the same work over a span that grows until now."""
    with engine.begin() as c:
        insert_batch(c, "k", steady(NOW - 600, NOW), NOW)
    window = 3600.0
    at_stop = one_rate(engine, NOW, window)
    assert at_stop == pytest.approx(STEADY_RATE * 61 / 60)
    later = [one_rate(engine, NOW + after, window) for after in (60, 600, 1800, 2999)]
    assert later == [
        pytest.approx(61 * 64 * 2**32 / (600 + after)) for after in (60, 600, 1800, 2999)
    ]
    assert [at_stop, *later] == sorted([at_stop, *later], reverse=True)
    # Once the window no longer reaches back to the first shares, it only holds the last
    # ones, over (nearly) the whole window; then the worker is gone.
    assert one_rate(engine, NOW + 3300, window) == 30 * 64 * 2**32 / 3590
    assert one_rate(engine, NOW + window, window) is None


def test_a_single_fresh_share_is_averaged_over_the_floor_not_a_second(engine: Engine) -> None:
    with engine.begin() as c:
        insert_batch(c, "k", [ShareRecord(NOW - 1, "alice", "lucky", 65536.0, "j", 1)], NOW)
    assert one_rate(engine, NOW, 600.0) == 65536 * 2**32 / MIN_WORKER_SPAN_SECONDS
    # A window shorter than the floor is the span itself.
    assert one_rate(engine, NOW, 30.0) == 65536 * 2**32 / 30


def test_pool_stats_sum_the_window_and_count_active_workers(engine: Engine) -> None:
    add_shares(engine)
    ledger_with_history(engine)
    with engine.connect() as c:
        stats = pool_stats(c, NOW, 600.0)
    assert stats.shares_in_window == 4
    # The window's shares cover its last 30 s: that is the span the rate is over.
    assert stats.span_seconds == 30.0
    assert stats.hashrate == (1024 + 1024 + 512 + 4096) * 2**32 / 30
    assert (stats.active_workers, stats.active_addresses) == (3, 2)
    assert dict(stats.blocks) == {"pending": 1, "confirmed": 1, "orphaned": 1, "rejected": 0}
    assert stats.totals.spendable == 440
    assert [b.height for b in stats.last_blocks] == [3, 2, 1]
    assert len(stats.last_payouts) == 4
    text = format_table(stats)
    assert "pool hashrate      952.91 GH/s (over the last 30 s of shares, window 10 min)" in text
    assert "blocks             pending 1, confirmed 1, orphaned 1" in text
    assert "spendable 0.00000440" in text


def test_pool_hashrate_right_after_start_divides_by_the_covered_span(engine: Engine) -> None:
    """64 s of shares at 9 MH/s read as 9 MH/s, not a tenth of it (issue 12 item 5)."""
    rate = 9e6
    records = [
        ShareRecord(NOW - 64 + second, "alice", "cpu", rate / 2**32, "j", 1)
        for second in range(1, 65)
    ]
    with engine.begin() as c:
        insert_batch(c, "k", records, NOW)
    with engine.connect() as c:
        stats = pool_stats(c, NOW, 600.0)
    assert stats.span_seconds == 63.0
    assert stats.hashrate == pytest.approx(rate * 64 / 63)


def test_covered_span_is_bounded_by_the_window_and_a_floor() -> None:
    assert covered_span(NOW, 600.0, None) == 600.0
    assert covered_span(NOW, 600.0, NOW - 900) == 600.0
    assert covered_span(NOW, 600.0, NOW - 64) == 64.0
    assert covered_span(NOW, 600.0, NOW) == MIN_SPAN_SECONDS
    assert covered_span(NOW, 5.0, NOW) == 5.0
    assert covered_span(NOW, 600.0, NOW - 1, MIN_WORKER_SPAN_SECONDS) == 60.0
    assert covered_span(NOW, 600.0, NOW - 64, MIN_WORKER_SPAN_SECONDS) == 64.0


spans = st.floats(min_value=1.0, max_value=30 * 86400.0)


@given(window=spans, floor=spans, age=st.floats(0.0, 1.0), later=st.floats(0.0, 1.0))
def test_the_covered_span_never_reaches_before_the_first_share_and_never_shrinks(
    window: float, floor: float, age: float, later: float
) -> None:
    """Within the window, a later first share never means a longer span (a late starter is
    never diluted by the time before it), the span lies between the floor and the window,
    and as time passes without new shares it only grows (a stopped worker's rate falls)."""
    first = NOW - age * window
    span = covered_span(NOW, window, first, floor)
    assert min(floor, window) <= span <= window
    assert span >= min(NOW - first, window)  # never shorter than the time since the first
    assert covered_span(NOW, window, first + later * (NOW - first), floor) <= span
    assert covered_span(NOW + later * window, window, first, floor) >= span


def test_amounts_and_hashrates_are_formatted_for_people() -> None:
    assert format_sats(123_456_789) == "1.23456789"
    assert format_sats(-5) == "-0.00000005"
    assert format_hashrate(999.0) == "999.00 H/s"
    assert format_hashrate(1.5e15) == "1.50 PH/s"


def test_otedama_stats_prints_json_and_a_table(
    engine: Engine,
    db_url: str,
    make_config: Callable[[str], str],
    capsys: pytest.CaptureFixture[str],
) -> None:
    ledger_with_history(engine)
    config = make_config(db_url)

    assert cli.main(["stats", "--format", "json", "--config", config]) == 0
    data = json.loads(capsys.readouterr().out)
    assert data["blocks"] == {"pending": 1, "confirmed": 1, "orphaned": 1, "rejected": 0}
    assert data["totals"] == {
        "address": "*",
        "immature": 300,
        "spendable": 440,
        "paid": 250,
        "payout_pending": 100,
    }
    assert data["window_seconds"] == 600.0

    assert cli.main(["stats", "--config", config, "--window", "5"]) == 0
    out = capsys.readouterr().out
    assert "window 5 min)" in out
    assert "paid      0.00000250" in out
    assert "last payouts" in out


def test_otedama_stats_on_an_empty_database_names_the_migrate_command(
    tmp_path: Path, make_config: Callable[[str], str], capsys: pytest.CaptureFixture[str]
) -> None:
    config = make_config(f"sqlite:///{tmp_path / 'fresh.sqlite'}")
    assert cli.main(["stats", "--config", config]) == 1
    err = capsys.readouterr().err
    assert "schema is empty" in err
    assert f"run: otedama migrate up --config {config}" in err

"""Found blocks: credits over the right share window, maturity, orphan reversal."""

from __future__ import annotations

from collections.abc import Callable
from functools import partial
from pathlib import Path
from typing import Any

import pytest
import pytest_twisted
from chainfake import FakeChain, block_hash
from sqlalchemy import Connection, func, select
from twisted.internet import task
from twisted.logger import Logger, formatEvent

from otedama.ledger.blocks import (
    BlockTracker,
    FoundBlock,
    RewardPolicy,
    judge_block,
    pending_blocks,
)
from otedama.ledger.rewards import RewardScheme
from otedama.ledger.shares import ShareRecord
from otedama.ledger.stats import address_balance, balances, journal_total
from otedama.ledger.store import LedgerStore
from otedama.ledger.tables import CONFIRMED, ORPHANED, PENDING, blocks, journal

FEE = "bcrt1qoperatorfee"
T0 = 1_700_000_000.0
REWARD = 5_000_000_000


def policy(scheme: str = "PPLNS", fee_bp: int = 100, window: float = 3600.0) -> RewardPolicy:
    return RewardPolicy(RewardScheme.parse(scheme), fee_bp, FEE, window)


def found(height: int, at: float, label: str | None = None, finder: str = "alice") -> FoundBlock:
    return FoundBlock(
        height=height,
        hash=block_hash(label or f"found-{height}"),
        finder_address=finder,
        finder_worker="rig0",
        reward=REWARD,
        found_at=at,
    )


def add(store: LedgerStore, at: float, address: str, difficulty: float) -> None:
    store.add_share(ShareRecord(at, address, "rig0", difficulty, "job", 100))


def entries(connection: Connection) -> list[tuple[str, str, int]]:
    rows = connection.execute(
        select(journal.c.address, journal.c.kind, journal.c.amount).order_by(journal.c.id)
    )
    return [tuple(row) for row in rows]  # type: ignore[misc]


@pytest_twisted.ensureDeferred
async def test_pplns_credits_the_window_in_proportion_to_difficulty_with_the_fee_apart(
    store: LedgerStore,
) -> None:
    add(store, T0 - 3600.0, "old", 1000.0)  # exactly window seconds before: outside
    add(store, T0 - 3599.0, "alice", 1.0)
    add(store, T0 - 10.0, "bob", 2.0)
    add(store, T0 - 5.0, "alice", 1.0)
    add(store, T0, "carol", 4.0)  # at found_at: inside
    add(store, T0 + 1.0, "late", 1000.0)  # after the block: outside

    recorded = await store.record_block(found(101, T0), policy())

    assert recorded.created and recorded.split is not None
    assert recorded.window == (T0 - 3600.0, T0)
    fee = REWARD // 100
    miners = REWARD - fee
    assert dict(recorded.split.credits) == {
        "alice": miners * 2 // 8,
        "bob": miners * 2 // 8,
        "carol": miners * 4 // 8,
    }
    assert recorded.split.fee == fee
    rows = await store.run(entries)
    assert sum(amount for _, _, amount in rows) == REWARD
    assert ("bcrt1qoperatorfee", "fee", fee) in rows
    assert await store.run(journal_total) == REWARD
    assert (await store.balance("alice")).immature == miners // 4


@pytest_twisted.ensureDeferred
async def test_record_block_counts_shares_still_in_the_batcher(store: LedgerStore) -> None:
    add(store, T0 - 1.0, "alice", 3.0)
    assert store.batcher.buffered == 1
    recorded = await store.record_block(found(101, T0), policy(fee_bp=0))
    assert recorded.split is not None and dict(recorded.split.credits) == {"alice": REWARD}


@pytest_twisted.ensureDeferred
async def test_prop_credits_the_shares_since_the_previous_block(store: LedgerStore) -> None:
    add(store, T0 - 100.0, "alice", 1.0)
    await store.record_block(found(101, T0 - 50.0), policy("PROP", fee_bp=0))
    add(store, T0 - 50.0, "alice", 7.0)  # at the previous block's time: its round
    add(store, T0 - 20.0, "bob", 1.0)
    add(store, T0 - 10.0, "carol", 1.0)

    recorded = await store.record_block(found(102, T0), policy("PROP", fee_bp=0))

    assert recorded.window == (T0 - 50.0, T0)
    assert recorded.split is not None
    assert dict(recorded.split.credits) == {"bob": REWARD // 2, "carol": REWARD // 2}


@pytest_twisted.ensureDeferred
async def test_solo_credits_the_finder_and_marks_it_paid_in_the_coinbase(
    store: LedgerStore,
) -> None:
    add(store, T0 - 1.0, "bob", 100.0)  # other miners' shares do not matter in SOLO
    recorded = await store.record_block(found(101, T0, finder="alice"), policy("SOLO", 200))
    assert recorded.window is None
    block = await store.get_block(recorded_hash(101))
    assert block is not None and block.scheme == "SOLO"

    fee = REWARD * 200 // 10_000
    assert (await store.run(entries)) == [
        ("alice", "credit", REWARD - fee),
        (FEE, "fee", fee),
        ("alice", "payout", -(REWARD - fee)),
        (FEE, "payout", -fee),  # the coinbase paid the fee output too
    ]
    await store.run(lambda c: c.execute(blocks.update().values(status=CONFIRMED)))
    alice = await store.balance("alice")
    assert (alice.spendable, alice.paid) == (0, REWARD - fee)
    operator = await store.balance(FEE)
    assert (operator.spendable, operator.paid) == (0, fee)  # never paid a second time


def recorded_hash(height: int) -> str:
    return found(height, T0).hash


@pytest_twisted.ensureDeferred
async def test_an_empty_window_books_the_whole_reward_as_fee(store: LedgerStore) -> None:
    recorded = await store.record_block(found(101, T0), policy())
    assert recorded.split is not None and recorded.split.fee == REWARD
    assert (await store.balance(FEE)).immature == REWARD


@pytest_twisted.ensureDeferred
async def test_recording_the_same_block_twice_credits_it_once(store: LedgerStore) -> None:
    add(store, T0 - 1.0, "alice", 1.0)
    first = await store.record_block(found(101, T0), policy())
    again = await store.record_block(found(101, T0), policy())
    assert (again.block_id, again.created, again.split) == (first.block_id, False, None)
    assert await store.run(journal_total) == REWARD


async def _block_status(store: LedgerStore, height: int) -> tuple[str, int]:
    row = await store.run(
        lambda c: c.execute(
            select(blocks.c.status, blocks.c.confirmations).where(blocks.c.height == height)
        ).one()
    )
    return row[0], row[1]


@pytest_twisted.ensureDeferred
async def test_a_block_matures_at_coinbase_maturity_and_its_credits_become_spendable(
    store: LedgerStore, clock: task.Clock
) -> None:
    chain = FakeChain(101)
    add(store, T0 - 1.0, "alice", 1.0)
    block = found(101, T0)
    await store.record_block(block, policy(fee_bp=0))
    chain.add(block.hash)
    tracker = BlockTracker(store, chain, clock, maturity=100)

    chain.extend(98)  # 99 confirmations
    report = await tracker.check()
    assert report.still_pending == 1 and not report.confirmed
    assert await _block_status(store, 101) == (PENDING, 99)
    assert (await store.balance("alice")).immature == REWARD

    chain.extend(1)
    report = await tracker.check()
    assert report.confirmed == (block.hash,)
    assert await _block_status(store, 101) == (CONFIRMED, 100)
    alice = await store.balance("alice")
    assert (alice.immature, alice.spendable) == (0, REWARD)
    assert await store.run(pending_blocks) == []


@pytest_twisted.ensureDeferred
async def test_a_block_replaced_at_its_height_is_orphaned_and_its_credits_reversed(
    store: LedgerStore, clock: task.Clock
) -> None:
    chain = FakeChain(101)
    add(store, T0 - 2.0, "alice", 1.0)
    add(store, T0 - 1.0, "bob", 3.0)
    block = found(101, T0)
    await store.record_block(block, policy(fee_bp=150))
    chain.add(block.hash)
    chain.extend(5)
    tracker = BlockTracker(store, chain, clock, maturity=100)
    await tracker.check()
    before = await store.run(entries)

    chain.reorg(101, 10, "other")  # height 101 now holds another block
    chain.stale.discard(block.hash)  # the node forgot the stale branch's header
    report = await tracker.check()

    assert report.orphaned == (block.hash,)
    assert await _block_status(store, 101) == (ORPHANED, 6)
    after = await store.run(entries)
    assert after[: len(before)] == before  # nothing deleted or changed
    reversals = after[len(before) :]
    assert sorted(reversals) == sorted((a, "orphan_reversal", -amount) for a, _, amount in before)
    assert await store.run(journal_total) == 0
    for balance in (await store.balances()).values():
        assert (balance.immature, balance.spendable) == (0, 0)
    assert (await tracker.check()).orphaned == ()  # reversed once only


@pytest_twisted.ensureDeferred
async def test_a_block_the_node_reports_with_minus_one_confirmations_is_orphaned(
    store: LedgerStore,
) -> None:
    chain = FakeChain(101)
    block = found(101, T0)
    await store.record_block(block, policy())
    chain.add(block.hash)
    chain.reorg(101, 1, "other")
    [row] = await store.run(pending_blocks)
    verdict = await judge_block(chain, row, 100)
    assert verdict is not None and verdict.status == ORPHANED
    assert "confirmations -1" in verdict.reason


@pytest_twisted.ensureDeferred
async def test_a_block_the_node_does_not_know_yet_stays_pending(
    store: LedgerStore, clock: task.Clock
) -> None:
    chain = FakeChain(101)  # the block is not on the chain, and nothing is at its height
    await store.record_block(found(101, T0), policy())
    report = await BlockTracker(store, chain, clock).check()
    assert report.still_pending == 1
    assert await _block_status(store, 101) == (PENDING, 0)


@pytest_twisted.ensureDeferred
async def test_the_tracker_survives_a_failing_node_and_checks_again_on_the_next_tick(
    store: LedgerStore, clock: task.Clock
) -> None:
    chain = FakeChain(101)
    block = found(101, T0)
    await store.record_block(block, policy())
    chain.add(block.hash)
    chain.extend(99)
    chain.down = True
    tracker = BlockTracker(store, chain, clock, maturity=100, interval=30.0)
    events: list[dict[str, Any]] = []
    tracker.log = Logger(namespace="tracker", observer=events.append)
    tracker.startService()
    try:
        await tracker.last_tick  # the first check runs at once, and fails
        for _ in range(3):  # the outage goes on: nothing more is logged
            clock.advance(30.0)
            await tracker.last_tick
        assert await _block_status(store, 101) == (PENDING, 0)
        chain.down = False
        clock.advance(30.0)
        await tracker.last_tick
        assert await _block_status(store, 101) == (CONFIRMED, 100)
    finally:
        await tracker.stopService()
    shown = [
        (e["log_level"].name, formatEvent(e)) for e in events if e["log_level"].name != "debug"
    ]
    assert [level for level, _ in shown] == ["warn", "info", "info"]  # warning, confirmed, back
    warning, recovered = shown[0][1], shown[-1][1]
    assert warning.startswith("block maturity check failed: ")
    assert warning.endswith("; retrying every 30 s (logged once until it works again)")
    assert recovered == "block maturity check works again after 4 failed attempts"
    assert not any("log_failure" in e for e in events if e["log_level"].name != "debug")


def test_found_block_rejects_a_hash_that_is_not_display_hex() -> None:
    with pytest.raises(ValueError, match="64 lowercase hex"):
        FoundBlock(1, "ABC", "a", "w", 1, T0)


def test_reward_policy_needs_a_fee_address() -> None:
    with pytest.raises(ValueError, match="fee address"):
        RewardPolicy(RewardScheme.PPLNS, 100, "", 7200.0)


@pytest_twisted.ensureDeferred
async def test_credits_of_several_blocks_add_up_per_address(store: LedgerStore) -> None:
    add(store, T0 - 1.0, "alice", 1.0)
    await store.record_block(found(101, T0), policy(fee_bp=0))
    await store.record_block(found(102, T0 + 60.0), policy(fee_bp=0))
    assert (await store.run(partial(address_balance, address="alice"))).immature == 2 * REWARD
    assert set(await store.run(balances)) == {"alice"}
    count = await store.run(lambda c: c.execute(select(func.count()).select_from(blocks)).scalar())
    assert count == 2


DEAD_URL = "postgresql://postgres@127.0.0.1:1/otedama"


@pytest_twisted.ensureDeferred
async def test_a_block_found_while_the_database_is_down_is_queued_and_credited_when_it_returns(
    db_url: str, tmp_path: Path, make_store: Callable[..., LedgerStore]
) -> None:
    spool_dir = tmp_path / "spool"
    down = make_store(DEAD_URL, spool_dir)
    add(down, T0 - 2.0, "alice", 1.0)
    add(down, T0 - 1.0, "bob", 3.0)

    queued = await down.record_block(found(101, T0), policy(fee_bp=0))

    assert queued.queued and queued.split is None
    health = down.health()
    assert health.status == "degraded"
    assert health.reason is not None and "1 found blocks waiting" in health.reason
    assert await down.record_waiting_blocks() == 0  # still down
    await down.stop()

    back = make_store(db_url, spool_dir)  # restart: spooled shares first, then the block
    await back.batcher.replay_now()
    assert await back.record_waiting_blocks() == 1
    assert not back.block_queue.has_data()
    assert (await back.balance("alice")).immature == REWARD // 4
    assert (await back.balance("bob")).immature == REWARD * 3 // 4
    again = await back.record_block(found(101, T0), policy(fee_bp=0))
    assert (again.created, again.queued) == (False, False)
    assert await back.run(journal_total) == REWARD
    assert back.health().status == "ok"


@pytest_twisted.ensureDeferred
async def test_the_store_retries_queued_blocks_on_its_timer(
    store: LedgerStore, clock: task.Clock
) -> None:
    store.block_queue.add(found(101, T0), policy())
    assert store.health().status == "degraded"
    clock.advance(store.batcher.retry_interval)
    assert store.last_block_retry is not None
    await store.last_block_retry
    assert not store.block_queue.has_data()
    assert (await store.get_block(found(101, T0).hash)) is not None

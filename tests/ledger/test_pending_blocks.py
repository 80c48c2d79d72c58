"""Every solved candidate is recorded pending, whatever submitblock says; the tracker settles it.

The pool core and its ledger adapter run against a real store (PostgreSQL and SQLite)
and the chain double: a submit that raises (timeout, connection reset) leaves a pending
block, which the block tracker confirms when the chain has it and rejects, moving no
money, when the chain has gone ``SETTLE_DEPTH`` blocks past it or ``SETTLE_SECONDS``
have passed without the node ever knowing it.
"""

from __future__ import annotations

import threading
from typing import Any

import pytest
import pytest_twisted
from chainfake import FakeChain
from sqlalchemy.exc import IntegrityError
from twisted.internet import task

from otedama.chain.address import address_to_script
from otedama.chain.serialize import TxOut
from otedama.ledger import blocks as ledger_blocks
from otedama.ledger.blocks import SETTLE_DEPTH, SETTLE_SECONDS, BlockTracker, RewardPolicy
from otedama.ledger.shares import ShareRecord
from otedama.ledger.stats import journal_total
from otedama.ledger.store import LedgerStore
from otedama.ledger.tables import CONFIRMED, PENDING, REJECTED
from otedama.pool.core import LedgerLink, PoolCore
from otedama.pool.ports import RewardScheme
from otedama.stratum.share import Share
from tests.pool.support import MINER, NETWORK, POOL, ScriptedSubmitter, share

FEE = "bcrt1qoperatorfee"
T0 = 1_800_000_000.0
REWARD = 50_0000_0000
HEIGHT = 101


def candidate(label: int = 0) -> Share:
    return share(
        [TxOut(REWARD, address_to_script(POOL, NETWORK))],
        height=HEIGHT,
        header=bytes([label]) + bytes(79),
        time=T0,
    )


def pool(store: LedgerStore, submit_error: Exception, clock: task.Clock) -> PoolCore:
    link = LedgerLink(store, RewardPolicy(RewardScheme.PPLNS, 0, FEE, 3600.0))
    return PoolCore(
        NETWORK,
        POOL,
        RewardScheme.PPLNS,
        0,
        ScriptedSubmitter(submit_error),
        link,
        clock=clock,
    )


async def found_after_failed_submit(store: LedgerStore, error: Exception) -> str:
    """A miner's share, then a block whose submit raises; returns the block's hash."""
    store.add_share(ShareRecord(T0 - 1.0, MINER, "rig1", 1.0, "job", HEIGHT))
    block = candidate()
    clock = task.Clock()
    submitted = pool(store, error, clock).block_found(b"block", block)
    clock.advance(0)  # the next reactor turn: the core records the block
    assert await submitted is None
    block_hash = block.block_hash[::-1].hex()
    row = await store.get_block(block_hash)
    assert row is not None and (row.status, row.reward) == (PENDING, REWARD)
    assert (await store.balance(MINER)).immature == REWARD
    return block_hash


def tracker(store: LedgerStore, chain: FakeChain, now: float = 0.0) -> BlockTracker:
    clock = task.Clock()
    clock.advance(now)
    return BlockTracker(store, chain, clock, maturity=100)


@pytest_twisted.ensureDeferred
async def test_a_block_whose_submit_timed_out_but_reached_the_chain_is_credited(
    store: LedgerStore,
) -> None:
    block_hash = await found_after_failed_submit(store, TimeoutError("submitblock timed out"))
    chain = FakeChain(HEIGHT)
    chain.add(block_hash)  # the daemon had taken it before the answer was lost
    chain.extend(99)
    report = await tracker(store, chain).check()
    assert report.confirmed == (block_hash,)
    row = await store.get_block(block_hash)
    assert row is not None and row.status == CONFIRMED
    assert (await store.balance(MINER)).spendable == REWARD


@pytest_twisted.ensureDeferred
async def test_a_block_the_chain_never_got_is_rejected_once_the_chain_is_past_it(
    store: LedgerStore,
) -> None:
    block_hash = await found_after_failed_submit(store, ConnectionResetError("reset"))
    chain = FakeChain(HEIGHT)  # tip at HEIGHT - 1: the block never arrived
    chain.extend(SETTLE_DEPTH)  # another block at its height, but not yet past the bound
    follower = tracker(store, chain)
    assert (await follower.check()).still_pending == 1
    chain.extend(1)
    report = await follower.check()
    assert report.rejected == (block_hash,)
    row = await store.get_block(block_hash)
    assert row is not None and row.status == REJECTED
    assert await store.run(journal_total) == 0  # its credits are reversed: no money moved
    balance = await store.balance(MINER)
    assert (balance.immature, balance.spendable) == (0, 0)
    assert (await follower.check()).rejected == ()  # settled once


@pytest_twisted.ensureDeferred
async def test_a_block_the_node_never_knew_is_rejected_after_the_time_bound(
    store: LedgerStore,
) -> None:
    block_hash = await found_after_failed_submit(store, TimeoutError("submitblock timed out"))
    chain = FakeChain(HEIGHT)  # the chain does not move at all
    report = await tracker(store, chain, T0 + SETTLE_SECONDS - 1).check()
    assert report.still_pending == 1
    report = await tracker(store, chain, T0 + SETTLE_SECONDS).check()
    assert report.rejected == (block_hash,)


@pytest_twisted.ensureDeferred
async def test_a_block_the_database_refuses_is_queued_off_the_reactor_and_recorded_later(
    store: LedgerStore, monkeypatch: pytest.MonkeyPatch
) -> None:
    refusals: list[str] = []

    def refusing(*args: Any, **kwargs: Any) -> Any:
        refusals.append("refused")
        raise IntegrityError("INSERT INTO blocks", {}, Exception("injected"))

    monkeypatch.setattr(ledger_blocks, "record_block", refusing)
    queued_on: list[str] = []
    add = store.block_queue.add

    def recording_add(*args: Any) -> None:
        queued_on.append(threading.current_thread().name)
        add(*args)

    monkeypatch.setattr(store.block_queue, "add", recording_add)
    found = await record_through_the_adapter(store)
    assert refusals == ["refused"]
    assert queued_on == ["ledger-files"]  # the fsync ran on the file thread

    def no_disk(*args: Any) -> Any:
        raise AssertionError("health() must not read the block queue file")

    monkeypatch.setattr(store.block_queue, "load", no_disk)
    health = store.health()
    assert health.status == "degraded"
    assert health.reason is not None and "1 found blocks waiting" in health.reason

    monkeypatch.undo()  # the database takes blocks again
    assert await store.record_waiting_blocks() == 1
    row = await store.get_block(found)
    assert row is not None and row.status == PENDING
    assert store.health().status == "ok"


async def record_through_the_adapter(store: LedgerStore) -> str:
    block = candidate()
    link = LedgerLink(store, RewardPolicy(RewardScheme.PPLNS, 0, FEE, 3600.0))
    assert (await link.record_block(block, REWARD)).queued
    return block.block_hash[::-1].hex()

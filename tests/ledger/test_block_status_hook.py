"""``BlockTracker.on_status``: each committed verdict is announced once, in order."""

from __future__ import annotations

import pytest_twisted
from chainfake import FakeChain
from twisted.internet import task

from otedama.ledger.blocks import BlockTracker
from otedama.ledger.store import LedgerStore
from otedama.ledger.tables import CONFIRMED, ORPHANED
from tests.ledger.test_blocks import T0, _block_status, found, policy


@pytest_twisted.ensureDeferred
async def test_on_status_reports_confirm_and_orphan_after_they_commit(
    store: LedgerStore, clock: task.Clock
) -> None:
    chain = FakeChain(101)
    matures, orphan = found(101, T0, "matures"), found(102, T0 + 1, "orphan")
    for block in (matures, orphan):
        await store.record_block(block, policy())
        chain.add(block.hash)
    tracker = BlockTracker(store, chain, clock, maturity=100)
    seen: list[tuple[str, str, int]] = []
    tracker.on_status(lambda *change: seen.append(change))
    tracker.on_status(lambda *change: 1 / 0)  # a failing callback stops nothing

    chain.extend(5)
    await tracker.check()
    assert seen == []  # confirmations moving is not a status change

    chain.reorg(102, 1, "other")
    chain.stale.discard(orphan.hash)
    chain.extend(100)
    await tracker.check()
    assert {(h, status) for h, status, _ in seen} == {
        (matures.hash, CONFIRMED),
        (orphan.hash, ORPHANED),
    }
    confirmed = next(n for h, _, n in seen if h == matures.hash)
    assert await _block_status(store, 101) == (CONFIRMED, confirmed)  # committed first
    assert (await _block_status(store, 102))[0] == ORPHANED
    await tracker.check()
    assert len(seen) == 2  # each verdict once

"""``PayoutProcessor.pause()`` / ``resume()``: the service keeps running, nothing is sent."""

from __future__ import annotations

from functools import partial
from pathlib import Path

import pytest
import pytest_twisted
from payout_fake_wallet import COIN, FileWallet
from payout_support import batch_states, credit
from twisted.internet.defer import Deferred

from otedama.ledger.payouts import BATCH_SENT, TickReport
from tests.ledger.test_payouts import ALICE, _idle, make_processor


@pytest.fixture
def wallet(tmp_path: Path) -> FileWallet:
    return FileWallet(tmp_path / "wallet.json", balance=50 * COIN)


@pytest_twisted.ensureDeferred
async def test_a_paused_processor_keeps_its_timer_but_pays_only_after_resume(store, clock, wallet):
    await store.run(partial(credit, amounts={ALICE: 300_000}))
    processor, _ = make_processor(store, wallet, clock, interval=600)
    processor.startService()
    await _idle(processor)
    await store.run(partial(credit, amounts={ALICE: 300_000}))
    await processor.pause()
    assert processor.paused and processor.running

    clock.advance(600)
    await _idle(processor)
    assert [state for _, state, _ in await store.run(batch_states)] == [BATCH_SENT]
    assert len(wallet.transactions) == 1

    processor.resume()
    assert not processor.paused
    clock.advance(600)
    await _idle(processor)
    assert [state for _, state, _ in await store.run(batch_states)] == [BATCH_SENT, BATCH_SENT]
    await processor.stopService()


@pytest_twisted.ensureDeferred
async def test_pause_answers_once_the_tick_in_flight_has_finished(store, clock, wallet):
    processor, _ = make_processor(store, wallet, clock, interval=600)
    gate: Deferred[None] = Deferred()

    async def slow_tick(report: TickReport) -> None:
        await gate

    processor._tick = slow_tick  # type: ignore[method-assign]
    in_flight = Deferred.fromCoroutine(processor.tick())
    paused = processor.pause()
    assert processor.paused and not paused.called
    gate.callback(None)
    await in_flight
    assert paused.called
    assert (await processor.tick()) == TickReport()  # paused: a tick does nothing

"""The payout processor reports each batch the wallet took (the node's audit log) before
it logs the batch as sent, and a failing report does not fail the payout."""

from __future__ import annotations

from functools import partial
from pathlib import Path
from typing import Any

import pytest
import pytest_twisted
from payout_fake_wallet import COIN, FileWallet
from payout_support import batch_states, credit
from twisted.internet.defer import fail, succeed
from twisted.logger import Logger, formatEvent

from otedama.ledger.payouts import PayoutBatch, PayoutProcessor
from otedama.ledger.tables import BATCH_SENT

ALICE = "bcrt1q" + "a" * 38


@pytest.fixture
def wallet(tmp_path: Path) -> FileWallet:
    return FileWallet(tmp_path / "wallet.json", balance=50 * COIN)


@pytest_twisted.ensureDeferred
async def test_each_sent_batch_is_reported_before_it_is_logged_sent(store, clock, wallet):
    await store.run(partial(credit, amounts={ALICE: 300_000}))
    events: list[Any] = []

    def on_sent(batch: PayoutBatch, txid: str) -> Any:
        events.append(("reported", batch.id, txid, batch.total))
        return succeed(None)

    processor = PayoutProcessor(store, wallet, clock, minimum_payout_sats=100_000, on_sent=on_sent)
    processor.log = Logger(namespace="payouts", observer=events.append)
    await processor.tick()
    [tx] = wallet.transactions
    reported = events.index(("reported", 1, tx["txid"], 300_000))
    sent = next(
        i for i, e in enumerate(events) if isinstance(e, dict) and "sent:" in formatEvent(e)
    )
    assert reported < sent


@pytest_twisted.ensureDeferred
async def test_a_failing_report_is_logged_and_the_batch_stays_sent(store, clock, wallet):
    await store.run(partial(credit, amounts={ALICE: 300_000}))
    events: list[dict[str, Any]] = []
    processor = PayoutProcessor(
        store,
        wallet,
        clock,
        minimum_payout_sats=100_000,
        on_sent=lambda batch, txid: fail(OSError("disk full")),
    )
    processor.log = Logger(namespace="payouts", observer=events.append)
    report = await processor.tick()
    assert report.sent == [1]
    assert [state for _, state, _ in await store.run(batch_states)] == [BATCH_SENT]
    assert any("reporting payout batch 1 failed" in formatEvent(e) for e in events)

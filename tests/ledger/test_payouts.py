"""PayoutProcessor on real databases (PostgreSQL and SQLite) with a fake wallet.

The fake wallet (``payout_fake_wallet.FileWallet``) behaves like bitcoind's for what
payouts use and passes the same contract tests (``test_payout_wallet_contract.py``).
"""

from __future__ import annotations

from collections.abc import Mapping
from decimal import Decimal
from functools import partial
from pathlib import Path
from typing import Any

import pytest
import pytest_twisted
from payout_fake_wallet import COIN, FileWallet, WalletError
from payout_support import batch_states, credit, journal_rows, spendable
from sqlalchemy import Connection, func, insert, select, text
from twisted.internet import task
from twisted.logger import Logger, formatEvent

from otedama.ledger.blocks import (
    FoundBlock,
    RewardPolicy,
    confirm_block,
    orphan_block,
    record_block,
)
from otedama.ledger.payouts import (
    CRASH_POINTS,
    PayoutBatch,
    PayoutProcessor,
    TickReport,
    btc_to_sats,
    create_batch,
    is_definite_failure,
    load_batches,
    mark_confirmed,
)
from otedama.ledger.stats import balances, journal_total
from otedama.ledger.store import LedgerStore
from otedama.ledger.tables import (
    BATCH_COMMITTED,
    BATCH_CONFIRMED,
    BATCH_FAILED,
    BATCH_SENT,
    CREDIT,
    PAYOUT,
    PAYOUT_REVERSAL,
    PENDING,
    payout_batches,
    shares,
)

ALICE = "bcrt1q" + "a" * 38
BOB = "bcrt1q" + "c" * 38
CAROL = "bcrt1q" + "d" * 38
DAVE = "bcrt1q" + "e" * 38
MINIMUM = 100_000


@pytest.fixture
def wallet(tmp_path: Path) -> FileWallet:
    return FileWallet(tmp_path / "wallet.json", balance=50 * COIN)


def make_processor(
    store: LedgerStore, wallet: FileWallet, clock: task.Clock, **kwargs: Any
) -> tuple[PayoutProcessor, list[dict[str, Any]]]:
    """A processor whose log events are collected in the returned list."""
    events: list[dict[str, Any]] = []
    kwargs.setdefault("minimum_payout_sats", MINIMUM)
    processor = PayoutProcessor(store, wallet, clock, **kwargs)
    processor.log = Logger(namespace="payouts", observer=events.append)
    return processor, events


def logged(events: list[dict[str, Any]]) -> str:
    from twisted.logger import formatEvent

    return "\n".join(formatEvent(event) for event in events)


# -- the normal path ---------------------------------------------------------------------


@pytest_twisted.ensureDeferred
async def test_tick_pays_spendable_balances_in_one_sendmany_with_the_batch_comment(
    store, clock, wallet
):
    await store.run(partial(credit, amounts={ALICE: 300_000, BOB: 200_000}))
    processor, events = make_processor(store, wallet, clock)

    report = await processor.tick()

    assert report.sent == [1]
    [tx] = wallet.transactions
    assert tx["comment"] == "otedama-payout-1"
    assert tx["amounts"] == {ALICE: 300_000, BOB: 200_000}
    assert await store.run(batch_states) == [(1, BATCH_SENT, tx["txid"])]
    assert await store.run(spendable) == {ALICE: 0, BOB: 0}
    assert await store.run(partial(journal_rows, kind=PAYOUT)) == [
        (ALICE, -300_000, 1),
        (BOB, -200_000, 1),
    ]
    assert f"payout batch 1 sent: 500000 sat to 2 addresses in {tx['txid']}" in logged(events)


@pytest_twisted.ensureDeferred
async def test_balances_below_the_minimum_or_still_immature_are_not_paid(store, clock, wallet):
    await store.run(partial(credit, amounts={ALICE: MINIMUM - 1}))
    await store.run(partial(credit, amounts={BOB: 5 * MINIMUM}, status=PENDING))
    await store.run(partial(credit, amounts={CAROL: MINIMUM}))
    processor, _ = make_processor(store, wallet, clock)

    await processor.tick()

    assert [tx["amounts"] for tx in wallet.transactions] == [{CAROL: MINIMUM}]
    after = await store.run(balances)
    assert (after[ALICE].spendable, after[BOB].immature, after[CAROL].spendable) == (
        MINIMUM - 1,
        5 * MINIMUM,
        0,
    )


@pytest_twisted.ensureDeferred
async def test_nothing_owed_means_no_batch_and_no_wallet_call(store, clock, wallet):
    processor, _ = make_processor(store, wallet, clock)
    assert await processor.tick() == TickReport()
    assert wallet.transactions == []
    assert await store.run(batch_states) == []


@pytest_twisted.ensureDeferred
async def test_a_batch_holds_at_most_max_recipients_largest_balances_first(store, clock, wallet):
    amounts = {ALICE: 400_000, BOB: 300_000, CAROL: 300_000, DAVE: 200_000}
    await store.run(partial(credit, amounts=amounts))
    processor, _ = make_processor(store, wallet, clock, max_recipients_per_batch=2)

    await processor.tick()
    await processor.tick()
    await processor.tick()

    # Ties (BOB and CAROL at 300_000) are broken by address order.
    assert [tx["amounts"] for tx in wallet.transactions] == [
        {ALICE: 400_000, BOB: 300_000},
        {CAROL: 300_000, DAVE: 200_000},
    ]
    assert wallet.paid() == amounts


@pytest_twisted.ensureDeferred
async def test_sent_batch_is_confirmed_once_its_transaction_confirms(store, clock, wallet):
    await store.run(partial(credit, amounts={ALICE: 300_000}))
    processor, events = make_processor(store, wallet, clock, confirmations=2)
    await processor.tick()

    wallet.mine(1)
    assert (await processor.tick()).confirmed == []
    wallet.mine(1)
    report = await processor.tick()

    assert report.confirmed == [1]
    [(_, state, txid)] = await store.run(batch_states)
    assert (state, txid) == (BATCH_CONFIRMED, wallet.transactions[0]["txid"])
    assert "payout batch 1 confirmed" in logged(events)
    balance = (await store.run(balances))[ALICE]
    assert (balance.spendable, balance.paid, balance.payout_pending) == (0, 300_000, 0)


@pytest_twisted.ensureDeferred
async def test_conflicted_transaction_is_reported_and_left_sent(store, clock, wallet):
    await store.run(partial(credit, amounts={ALICE: 300_000}))
    processor, events = make_processor(store, wallet, clock)
    await processor.tick()
    wallet.conflict(wallet.transactions[0]["txid"])

    report = await processor.tick()

    assert report.confirmed == []
    assert (await store.run(batch_states))[0][1] == BATCH_SENT
    assert "conflicts with the chain" in logged(events)


@pytest_twisted.ensureDeferred
async def test_credit_earned_after_a_payout_is_paid_by_the_next_batch(store, clock, wallet):
    await store.run(partial(credit, amounts={ALICE: 300_000}))
    processor, _ = make_processor(store, wallet, clock)
    await processor.tick()
    await store.run(partial(credit, amounts={ALICE: 150_000, BOB: 150_000}))

    report = await processor.tick()

    assert report.sent == [2]
    assert [tx["comment"] for tx in wallet.transactions] == [
        "otedama-payout-1",
        "otedama-payout-2",
    ]
    assert wallet.paid() == {ALICE: 450_000, BOB: 150_000}


@pytest_twisted.ensureDeferred
async def test_pplns_block_credits_flow_through_maturity_to_payout(store, clock, wallet):
    """record_block -> confirm_block -> payout: the fee address is paid like any miner."""
    fee_address = "bcrt1q" + "f" * 38
    policy = RewardPolicy("PPLNS", 100, fee_address, pplns_window=3600)

    def setup(connection: Connection) -> int:
        connection.execute(
            insert(shares),
            [
                {
                    "created_at": 100.0 + i,
                    "address": a,
                    "worker": "w",
                    "difficulty": d,
                    "job_id": "j",
                    "height": 1,
                    "share_hash": None,
                }
                for i, (a, d) in enumerate([(ALICE, 3.0), (BOB, 1.0)])
            ],
        )
        found = FoundBlock(1, "ab" * 32, ALICE, "w", 50 * COIN, 200.0)
        recorded = record_block(connection, found, policy, 200.0)
        confirm_block(connection, recorded.block_id, 100, 300.0)
        return recorded.block_id

    await store.run(setup)
    processor, _ = make_processor(store, wallet, clock)
    await processor.tick()

    # 50 BTC, 1 % fee: 0.5 BTC fee; miners share 49.5 BTC 3:1.
    assert wallet.paid() == {
        ALICE: 3_712_500_000,
        BOB: 1_237_500_000,
        fee_address: 50_000_000,
    }
    assert await store.run(journal_total) == 0


@pytest_twisted.ensureDeferred
async def test_the_fee_on_the_pools_own_address_stays_in_the_wallet(store, clock, wallet):
    """No separate fee address: the fee is credited to the pool's wallet address, whose
    coins the wallet already holds; sendmany never pays the pool's own address."""
    pool_address = "bcrt1q" + "0" * 38
    policy = RewardPolicy("PPLNS", 100, pool_address, pplns_window=3600)

    def setup(connection: Connection) -> None:
        connection.execute(
            insert(shares),
            [
                {
                    "created_at": 100.0,
                    "address": ALICE,
                    "worker": "w",
                    "difficulty": 1.0,
                    "job_id": "j",
                    "height": 1,
                    "share_hash": None,
                }
            ],
        )
        found = FoundBlock(1, "cd" * 32, ALICE, "w", 50 * COIN, 200.0)
        recorded = record_block(connection, found, policy, 200.0)
        confirm_block(connection, recorded.block_id, 100, 300.0)

    await store.run(setup)
    processor, _ = make_processor(store, wallet, clock, kept_addresses=[pool_address])
    await processor.tick()
    await processor.tick()

    assert wallet.paid() == {ALICE: 4_950_000_000}
    assert [list(tx["amounts"]) for tx in wallet.transactions] == [[ALICE]]
    assert (await store.run(balances))[pool_address].spendable == 50_000_000


# -- wallet refusals (definite) ----------------------------------------------------------


@pytest_twisted.ensureDeferred
async def test_insufficient_funds_fails_the_batch_and_restores_the_balances(store, clock, wallet):
    await store.run(partial(credit, amounts={ALICE: 300_000, BOB: 200_000}))
    wallet.set_balance(100_000)
    processor, events = make_processor(store, wallet, clock)

    report = await processor.tick()

    assert report.failed == [1]
    assert wallet.transactions == []
    [(_, state, _)] = await store.run(batch_states)
    assert state == BATCH_FAILED
    assert await store.run(partial(journal_rows, kind=PAYOUT_REVERSAL)) == [
        (ALICE, 300_000, 1),
        (BOB, 200_000, 1),
    ]
    assert await store.run(spendable) == {ALICE: 300_000, BOB: 200_000}
    assert "payout batch 1 refused by the wallet (wallet error -6: Insufficient funds)" in (
        logged(events)
    )

    wallet.set_balance(10 * COIN)
    assert (await processor.tick()).sent == [2]
    assert wallet.paid() == {ALICE: 300_000, BOB: 200_000}


@pytest_twisted.ensureDeferred
async def test_locked_wallet_fails_the_batch_and_a_later_tick_pays(store, clock, wallet):
    await store.run(partial(credit, amounts={ALICE: 300_000}))
    wallet.set_locked(True)
    processor, _ = make_processor(store, wallet, clock)

    assert (await processor.tick()).failed == [1]
    wallet.set_locked(False)
    assert (await processor.tick()).sent == [2]
    assert wallet.paid() == {ALICE: 300_000}
    assert await store.run(spendable) == {ALICE: 0}


@pytest_twisted.ensureDeferred
async def test_invalid_address_is_left_out_of_later_batches(store, clock, wallet):
    bad = "bcrt1qBADADDRESS"
    await store.run(partial(credit, amounts={ALICE: 300_000, bad: 200_000}))
    processor, events = make_processor(store, wallet, clock)

    assert (await processor.tick()).failed == [1]
    assert processor.refused_addresses == {bad}
    assert (await processor.tick()).sent == [2]

    assert wallet.paid() == {ALICE: 300_000}
    assert (await store.run(spendable))[bad] == 200_000
    assert f"the wallet calls payout address {bad} invalid" in logged(events)


# -- ambiguous outcomes and reconciliation -----------------------------------------------


@pytest_twisted.ensureDeferred
async def test_timeout_before_the_wallet_acted_is_reconciled_and_sent_once(store, clock, wallet):
    await store.run(partial(credit, amounts={ALICE: 300_000}))
    processor, events = make_processor(store, wallet, clock)
    wallet.time_out_next_send(after_sending=False)

    first = await processor.tick()
    assert (first.unresolved, wallet.transactions) == ([1], [])
    assert await store.run(batch_states) == [(1, BATCH_COMMITTED, None)]
    assert await store.run(spendable) == {ALICE: 0}  # reserved by the batch
    assert "it stays committed and is reconciled on the next tick" in logged(events)

    second = await processor.tick()
    assert second.resent == [1]
    assert second.sent == []  # no second batch for the same credit
    [tx] = wallet.transactions
    assert tx["comment"] == "otedama-payout-1"
    assert await store.run(batch_states) == [(1, BATCH_SENT, tx["txid"])]


@pytest_twisted.ensureDeferred
async def test_lost_reply_after_the_wallet_paid_is_recovered_not_resent(store, clock, wallet):
    await store.run(partial(credit, amounts={ALICE: 300_000, BOB: 200_000}))
    processor, events = make_processor(store, wallet, clock)
    wallet.time_out_next_send(after_sending=True)

    assert (await processor.tick()).unresolved == [1]
    report = await processor.tick()

    assert report.recovered == [1]
    assert report.resent == report.sent == []
    [tx] = wallet.transactions
    assert await store.run(batch_states) == [(1, BATCH_SENT, tx["txid"])]
    assert wallet.paid() == {ALICE: 300_000, BOB: 200_000}
    assert "payout batch 1 had reached the wallet as" in logged(events)


@pytest_twisted.ensureDeferred
async def test_unexpected_wallet_error_is_treated_as_unknown_outcome(store, clock, wallet):
    await store.run(partial(credit, amounts={ALICE: 300_000}))
    processor, _ = make_processor(store, wallet, clock)
    wallet.fail_next_send(WalletError(-4, "Transaction commit failed"))

    assert (await processor.tick()).unresolved == [1]
    assert await store.run(batch_states) == [(1, BATCH_COMMITTED, None)]
    assert (await processor.tick()).resent == [1]
    assert wallet.paid() == {ALICE: 300_000}


@pytest_twisted.ensureDeferred
async def test_no_new_batch_while_an_unfinished_one_cannot_be_reconciled(store, clock, wallet):
    await store.run(partial(credit, amounts={ALICE: 300_000}))
    processor, events = make_processor(store, wallet, clock)
    wallet.time_out_next_send(after_sending=False)
    await processor.tick()
    await store.run(partial(credit, amounts={BOB: 300_000}))

    async def unreachable(count: int) -> list[dict[str, Any]]:
        raise ConnectionRefusedError("wallet down")

    real = wallet.list_transactions
    wallet.list_transactions = unreachable  # type: ignore[method-assign]
    report = await processor.tick()
    assert (report.unresolved, report.sent, wallet.transactions) == ([1], [], [])
    assert "no new payouts until payout batches [1] are reconciled" in logged(events)

    wallet.list_transactions = real  # type: ignore[method-assign]
    report = await processor.tick()
    assert (report.resent, report.sent) == ([1], [2])
    assert wallet.paid() == {ALICE: 300_000, BOB: 300_000}


@pytest_twisted.ensureDeferred
async def test_reconcile_searches_back_past_newer_wallet_entries(store, clock, wallet):
    """A batch buried under many newer wallet entries is still found, not paid twice."""
    await store.run(partial(credit, amounts={ALICE: 300_000}))
    processor, _ = make_processor(store, wallet, clock, search_depth=10)
    wallet.time_out_next_send(after_sending=True)
    await processor.tick()
    wallet.receive(200)  # coinbase income after the payout

    report = await processor.tick()

    assert report.recovered == [1]
    assert len(wallet.transactions) == 1


@pytest_twisted.ensureDeferred
async def test_reconcile_stops_searching_at_entries_older_than_the_batch(store, clock, wallet):
    clock.advance(100_000)
    wallet.now = 100_000 - 50_000
    wallet.receive(300)  # old history, long before the batch
    wallet.now = 100_000
    await store.run(partial(credit, amounts={ALICE: 300_000}))
    processor, _ = make_processor(store, wallet, clock, search_depth=10)
    wallet.time_out_next_send(after_sending=False)
    await processor.tick()

    calls: list[int] = []
    real = wallet.list_transactions

    async def counting(count: int) -> list[dict[str, Any]]:
        calls.append(count)
        return await real(count)

    wallet.list_transactions = counting  # type: ignore[method-assign]
    report = await processor.tick()

    assert report.resent == [1]
    assert calls == [10]  # the latest 10 entries already reach back before the batch
    assert wallet.paid() == {ALICE: 300_000}


@pytest_twisted.ensureDeferred
async def test_same_comment_paying_other_outputs_is_not_taken_for_the_batch(store, clock, wallet):
    """A wallet kept across a rebuilt ledger: its old "otedama-payout-1" is not this batch 1."""
    await wallet.send_many({CAROL: 999_000}, "otedama-payout-1")  # from the old ledger
    await store.run(partial(credit, amounts={ALICE: 300_000}))
    processor, events = make_processor(store, wallet, clock)
    wallet.time_out_next_send(after_sending=False)
    await processor.tick()

    report = await processor.tick()

    assert (report.unresolved, report.recovered, report.resent) == ([1], [], [])
    assert wallet.paid() == {CAROL: 999_000}
    assert await store.run(batch_states) == [(1, BATCH_COMMITTED, None)]
    assert "was the ledger database replaced while the wallet was kept?" in logged(events)


@pytest.mark.parametrize(
    ("amount", "sats"),
    [
        (Decimal("0.001"), 100_000),
        (Decimal("-1.5"), -150_000_000),
        (0.00000546, 546),
        (2, 200_000_000),
    ],
)
def test_wallet_amounts_in_btc_convert_to_exact_satoshis(amount, sats):
    assert btc_to_sats(amount) == sats


def test_wallet_amount_finer_than_a_satoshi_is_refused():
    with pytest.raises(ValueError, match="not a whole number of satoshis"):
        btc_to_sats(Decimal("0.000000001"))


# -- start-up ----------------------------------------------------------------------------


@pytest_twisted.ensureDeferred
async def test_start_up_reconciles_unfinished_batches_before_paying_anything(store, clock, wallet):
    await store.run(partial(credit, amounts={ALICE: 300_000}))
    # A batch committed by a previous run that died before calling the wallet.
    old = await store.run(
        partial(create_batch, now=0.0, minimum_payout_sats=MINIMUM, max_recipients=10)
    )
    assert old is not None
    await store.run(partial(credit, amounts={BOB: 300_000}))
    processor, _ = make_processor(store, wallet, clock, interval=600)

    order: list[str] = []
    real = wallet.send_many

    async def recording(amounts: Mapping[str, int], comment: str) -> str:
        order.append(comment)
        return await real(amounts, comment)

    wallet.send_many = recording  # type: ignore[method-assign]
    processor.startService()
    await processor.stopService()

    assert order == ["otedama-payout-1", "otedama-payout-2"]
    assert wallet.paid() == {ALICE: 300_000, BOB: 300_000}
    assert [state for _, state, _ in await store.run(batch_states)] == [BATCH_SENT, BATCH_SENT]


@pytest_twisted.ensureDeferred
async def test_service_ticks_every_interval_on_its_clock(store, clock, wallet):
    processor, _ = make_processor(store, wallet, clock, interval=600)
    ticks: list[float] = []
    real = processor.tick

    async def counting() -> TickReport:
        ticks.append(clock.seconds())
        return await real()

    processor.tick = counting  # type: ignore[method-assign]
    processor.startService()
    for _ in range(3):
        await _idle(processor)
        clock.advance(600)
    await _idle(processor)
    await processor.stopService()
    assert ticks == [0, 600, 1200, 1800]


async def _idle(processor: PayoutProcessor) -> None:
    """Wait for the tick in flight, then one reactor turn so the loop reschedules."""
    from twisted.internet import reactor

    await processor.when_idle()
    await task.deferLater(reactor, 0, lambda: None)  # type: ignore[arg-type]


@pytest_twisted.ensureDeferred
async def test_a_failing_tick_is_logged_and_the_loop_goes_on(store, clock, wallet):
    processor, events = make_processor(store, wallet, clock, interval=600)
    calls: list[int] = []

    async def broken() -> TickReport:
        calls.append(1)
        raise RuntimeError("database gone")

    processor.tick = broken  # type: ignore[method-assign]
    processor.startService()
    clock.advance(600)
    clock.advance(600)

    assert len(calls) == 3
    shown = [e for e in events if e["log_level"].name != "debug"]
    assert [formatEvent(e) for e in shown] == [
        "payout tick failed: database gone; retrying every 600 s (logged once until it works again)"
    ]
    assert "log_failure" not in shown[0]

    async def working() -> TickReport:
        return TickReport()

    processor.tick = working  # type: ignore[method-assign]
    clock.advance(600)
    await processor.stopService()
    assert formatEvent(events[-1]) == "payout tick works again after 3 failed attempts"
    assert events[-1]["log_level"].name == "info"


@pytest_twisted.ensureDeferred
async def test_crash_hook_is_called_at_each_step_in_order(store, clock, wallet):
    await store.run(partial(credit, amounts={ALICE: 300_000}))
    steps: list[str] = []
    processor, _ = make_processor(store, wallet, clock, crash_hook=steps.append)
    await processor.tick()
    assert tuple(steps) == CRASH_POINTS


# -- the pieces --------------------------------------------------------------------------


@pytest_twisted.ensureDeferred
async def test_create_batch_refuses_while_a_batch_is_committed(store):
    await store.run(partial(credit, amounts={ALICE: 300_000}))
    make = partial(create_batch, now=5.0, minimum_payout_sats=MINIMUM, max_recipients=10)
    first = await store.run(make)
    await store.run(partial(credit, amounts={BOB: 300_000}))
    assert first == PayoutBatch(1, "otedama-payout-1", BATCH_COMMITTED, None, 5.0, {ALICE: 300_000})
    assert await store.run(make) is None
    assert await store.run(partial(load_batches, state=BATCH_COMMITTED)) == [first]


@pytest_twisted.ensureDeferred
async def test_batch_state_changes_only_along_the_state_machine(store):
    await store.run(partial(credit, amounts={ALICE: 300_000}))
    await store.run(partial(create_batch, now=5.0, minimum_payout_sats=MINIMUM, max_recipients=9))
    # committed -> confirmed is not a transition: nothing changes.
    with pytest.raises(ValueError, match="no transition from committed to confirmed"):
        from otedama.ledger.payouts import _transition

        await store.run(
            partial(_transition, batch_id=1, old=BATCH_COMMITTED, new=BATCH_CONFIRMED, now=6.0)
        )
    assert await store.run(partial(mark_confirmed, batch_id=1, now=6.0)) is False
    assert await store.run(batch_states) == [(1, BATCH_COMMITTED, None)]


@pytest_twisted.ensureDeferred
async def test_journal_sums_match_after_every_kind_of_outcome(store, clock, wallet):
    """Audit: credits - payouts + reversals == what the wallet paid plus what is still owed."""
    await store.run(partial(credit, amounts={ALICE: 300_000, BOB: 200_000}))
    processor, _ = make_processor(store, wallet, clock)
    wallet.set_balance(0)
    await processor.tick()  # failed
    wallet.set_balance(10 * COIN)
    wallet.time_out_next_send(after_sending=True)
    await processor.tick()  # unresolved (paid)
    await processor.tick()  # recovered
    await store.run(partial(credit, amounts={ALICE: 50_000}))

    owed = await store.run(spendable)
    total = await store.run(journal_total)
    assert total == sum(owed.values()) == 50_000
    credits = sum(a for _, a, _ in await store.run(partial(journal_rows, kind=CREDIT)))
    assert credits - sum(wallet.paid().values()) == total
    count = await store.run(
        lambda c: c.execute(select(func.count()).select_from(payout_batches)).scalar_one()
    )
    assert count == 2


def test_wallet_errors_with_refusal_codes_are_definite_and_others_are_not():
    assert is_definite_failure(WalletError(-6, "Insufficient funds"))
    assert is_definite_failure(WalletError(-13, "locked"))
    assert is_definite_failure(WalletError(-5, "Invalid Bitcoin address: x"))
    assert not is_definite_failure(WalletError(-4, "Transaction commit failed"))
    assert not is_definite_failure(TimeoutError())
    assert not is_definite_failure(ConnectionResetError())


@pytest.mark.parametrize(
    ("kwargs", "message"),
    [
        ({"interval": 0}, "pool.payout_interval must be positive, got 0"),
        (
            {"minimum_payout_sats": 545},
            r"pool.minimum_payout: 545 sat is below the dust limit \(546 sat",
        ),
        ({"max_recipients_per_batch": 0}, "at least 1, got 0"),
        ({"confirmations": 0}, "confirmations must be at least 1, got 0"),
    ],
)
def test_processor_rejects_bad_settings_naming_them(kwargs, message, tmp_path):
    with pytest.raises(ValueError, match=message):
        PayoutProcessor(object(), FileWallet(tmp_path / "w.json"), task.Clock(), **kwargs)  # type: ignore[arg-type]


def test_processor_refuses_a_minimum_that_is_not_satoshis(tmp_path):
    with pytest.raises(TypeError, match=r"minimum payout must be an int of satoshis, got 0\.001"):
        PayoutProcessor(
            object(),  # type: ignore[arg-type]
            FileWallet(tmp_path / "w.json"),
            task.Clock(),
            minimum_payout_sats=0.001,  # type: ignore[arg-type]
        )


# -- the audit queries of docs/ledger.md -------------------------------------------------

DOCS = Path(__file__).resolve().parents[2] / "docs" / "ledger.md"


def docs_sql_after(heading: str) -> str:
    """The first ```sql block after the line containing ``heading`` in docs/ledger.md."""
    text = DOCS.read_text(encoding="utf-8")
    rest = text[text.index(heading) :]
    start = rest.index("```sql\n") + len("```sql\n")
    return rest[start : rest.index("```", start)]


@pytest_twisted.ensureDeferred
async def test_audit_queries_in_the_docs_agree_with_the_ledger(store, clock, wallet):
    """Credits, an orphaned block, a failed, a sent and a SOLO payout: the docs' checks
    find nothing wrong and the docs' balance query matches ``balances``."""
    await store.run(partial(credit, amounts={ALICE: 300_000, BOB: 200_000}))
    orphan = await store.run(partial(credit, amounts={ALICE: 70_000}, status=PENDING))
    await store.run(partial(orphan_block, block_id=orphan, reason="reorg", now=2.0))
    await store.run(partial(credit, amounts={CAROL: 40_000}, status=PENDING))

    def solo(connection: Connection) -> None:
        policy = RewardPolicy("SOLO", 100, DAVE)
        found = FoundBlock(7, "ef" * 32, BOB, "rig", 1_000_000, 3.0)
        recorded = record_block(connection, found, policy, 3.0)
        confirm_block(connection, recorded.block_id, 100, 4.0)

    await store.run(solo)
    processor, _ = make_processor(store, wallet, clock)
    wallet.set_balance(0)
    assert (await processor.tick()).failed == [1]
    wallet.set_balance(10 * COIN)
    assert (await processor.tick()).sent == [2]

    sql = docs_sql_after("Checks that must all return no rows")
    checks = [query for query in sql.split(";") if query.strip()]
    assert len(checks) == 3

    def run_checks(connection: Connection) -> list[list[Any]]:
        return [list(connection.execute(text(query)).all()) for query in checks]

    assert await store.run(run_checks) == [[], [], []]

    balance_sql = docs_sql_after("Its balance, by the same rules")

    def docs_balance(connection: Connection, address: str) -> tuple[int, int, int]:
        row = connection.execute(
            text(balance_sql.replace("'bc1q…'", ":address")), {"address": address}
        ).one()
        return int(row.immature or 0), int(row.spendable or 0), int(row.total or 0)

    expected = await store.run(balances)
    for address, balance in expected.items():
        got = await store.run(partial(docs_balance, address=address))
        assert got == (balance.immature, balance.spendable, balance.immature + balance.spendable)
    assert expected[CAROL].immature == 40_000
    # BOB's SOLO reward was paid in its coinbase, DAVE's 10_000 sat fee is below the minimum.
    assert wallet.paid() == {ALICE: 300_000, BOB: 200_000}


# -- random faults -----------------------------------------------------------------------


class Crash(Exception):
    """Stands in for the process dying at a crash point (the next processor is a restart)."""


@pytest.mark.parametrize("seed", [1, 2, 3, 4])
@pytest_twisted.ensureDeferred
async def test_random_faults_and_restarts_never_pay_twice_nor_lose_credit(
    store, clock, wallet, seed
):
    """Credits, ticks, wallet timeouts and refusals, crashes at every step and restarts in a
    random order; then a calm settle. Every address is paid exactly what it was credited
    (less what is still below the minimum), and no batch is paid by two transactions."""
    import random

    rng = random.Random(seed)
    addresses = [ALICE, BOB, CAROL, DAVE]
    credited = dict.fromkeys(addresses, 0)

    def restart() -> PayoutProcessor:
        def crash_hook(step: str) -> None:
            if rng.random() < 0.15:
                raise Crash(step)

        return make_processor(store, wallet, clock, crash_hook=crash_hook)[0]

    processor = restart()
    outcomes: list[str] = []
    for _ in range(60):
        action = rng.choice(["credit", "tick", "tick", "fault", "mine", "restart"])
        if action == "credit":
            address = rng.choice(addresses)
            amount = rng.randrange(10_000, 400_000)
            credited[address] += amount
            await store.run(partial(credit, amounts={address: amount}))
        elif action == "mine":
            wallet.mine(1)
        elif action == "restart":
            processor = restart()
        else:
            if action == "fault":
                fault = rng.choice(["unsent", "sent", "refused", "ambiguous"])
                if fault in ("unsent", "sent"):
                    wallet.time_out_next_send(after_sending=fault == "sent")
                else:
                    code = -6 if fault == "refused" else -4
                    wallet.fail_next_send(WalletError(code, "injected"))
            try:
                report = await processor.tick()
            except Crash as crash:
                outcomes.append(f"crash:{crash}")
                processor = restart()
            else:
                outcomes.extend(k for k, v in vars(report).items() if v)
        # Never more paid than debited, never one batch paid twice.
        paid = wallet.paid()
        owed = await store.run(spendable)
        for address in addresses:
            assert paid.get(address, 0) <= credited[address] - owed.get(address, 0)
        comments = [tx["comment"] for tx in wallet.transactions]
        assert len(comments) == len(set(comments))

    # Calm: no faults; two ticks reconcile and pay whatever is owed.
    processor = make_processor(store, wallet, clock)[0]
    wallet.clear_faults()
    await processor.tick()
    await processor.tick()
    paid = wallet.paid()
    owed = await store.run(spendable)
    for address in addresses:
        assert owed.get(address, 0) < MINIMUM
        assert paid.get(address, 0) + owed.get(address, 0) == credited[address]
    states = {state for _, state, _ in await store.run(batch_states)}
    assert BATCH_COMMITTED not in states
    # The run went through the interesting paths, not only the happy one.
    assert {"recovered", "resent", "failed", "unresolved"} & set(outcomes), sorted(set(outcomes))
    assert any(o.startswith("crash:") for o in outcomes), sorted(set(outcomes))

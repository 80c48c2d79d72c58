"""The pool core: coinbase policy, share counting, block submission and recording."""

from __future__ import annotations

from dataclasses import replace
from typing import Any

import pytest
import pytest_twisted
from twisted.internet import task
from twisted.internet.defer import Deferred
from twisted.logger import Logger, formatEvent

from otedama.chain.address import address_to_script
from otedama.chain.serialize import TxOut
from otedama.chain.template import BlockTemplate
from otedama.ledger.blocks import RecordedBlock
from otedama.ledger.rewards import split_reward
from otedama.pool.core import SUBMIT_TROUBLE_WINDOW, PoolCore, ShareReporter
from otedama.pool.ports import RewardScheme, SubmitOutcome, SubmitResult
from otedama.stratum.share import Share
from tests.pool.support import MINER, NETWORK, POOL, ScriptedSubmitter, share


class FakeLedger:
    """A ShareLedger that keeps what it is given; its first ``failures`` block calls raise."""

    def __init__(self, failures: int = 0) -> None:
        self.shares: list[Share] = []
        self.blocks: list[tuple[Share, int]] = []
        self.failures = failures
        self.calls = 0
        self.shares_when_recorded: list[int] = []

    def add_share(self, share: Share) -> None:
        self.shares.append(share)

    async def record_block(self, share: Share, reward: int) -> RecordedBlock:
        self.calls += 1
        if self.calls <= self.failures:
            raise OSError("No space left on device")
        self.blocks.append((share, reward))
        self.shares_when_recorded.append(len(self.shares))
        return RecordedBlock(len(self.blocks), True, None, None)


def template(value: int = 50_0000_0000) -> BlockTemplate:
    return BlockTemplate.from_rpc(
        {
            "version": 0x20000000,
            "previousblockhash": "00" * 32,
            "height": 7,
            "bits": "207fffff",
            "target": "7fffff" + "00" * 29,
            "curtime": 1_800_000_000,
            "mintime": 1_799_999_000,
            "coinbasevalue": value,
            "transactions": [],
            "rules": ["segwit"],
        }
    )


ACCEPTED = SubmitResult(SubmitOutcome.ACCEPTED)


def core(
    result: SubmitResult | Exception | Deferred[SubmitResult] = ACCEPTED,
    scheme: RewardScheme = RewardScheme.PPLNS,
    ledger: FakeLedger | None = None,
    clock: task.Clock | None = None,
    **bounds: Any,
) -> PoolCore:
    return PoolCore(
        NETWORK,
        POOL,
        scheme,
        100,
        ScriptedSubmitter(result),
        ledger,
        clock=clock or task.Clock(),
        **bounds,
    )


async def found_block(pool: PoolCore, candidate: Share) -> SubmitResult | None:
    """``block_found`` as Stratum calls it; the core records on the next reactor turn."""
    submitted = pool.block_found(b"block", candidate)
    turn(pool)
    return await submitted


def turn(pool: PoolCore) -> None:
    """Let the core's clock run the calls due now (the next reactor turn)."""
    clock = pool.clock
    assert isinstance(clock, task.Clock)
    clock.advance(0)


def test_pooled_coinbase_pays_the_whole_value_to_the_pool_wallet() -> None:
    outputs = core().coinbase_outputs(template(50_0001_2345))
    assert outputs == [TxOut(50_0001_2345, address_to_script(POOL, NETWORK))]


def test_solo_coinbase_pays_the_finder_and_the_fee_to_the_pool() -> None:
    outputs = core(scheme=RewardScheme.SOLO).solo_outputs(template(10_000), MINER)
    assert outputs == [
        TxOut(9_900, address_to_script(MINER, NETWORK)),
        TxOut(100, address_to_script(POOL, NETWORK)),
    ]
    assert sum(out.value for out in outputs) == 10_000


def test_accepted_shares_are_counted_per_worker_and_passed_to_the_ledger() -> None:
    ledger = FakeLedger()
    pool = core(ledger=ledger)
    one = share([TxOut(1, b"\x51")], is_block=False)
    pool.share_accepted(one)
    pool.share_accepted(one)
    assert pool.stats.shares == 2
    assert pool.stats.workers[one.worker].shares == 2
    assert pool.stats.workers[one.worker].difficulty == 0.002
    assert ledger.shares == [one, one]


@pytest_twisted.ensureDeferred
async def test_an_accepted_block_is_recorded_with_what_the_coinbase_pays_the_pool() -> None:
    ledger = FakeLedger()
    pool = core(SubmitResult(SubmitOutcome.ACCEPTED), ledger=ledger)
    pool_script = address_to_script(POOL, NETWORK)
    found = share([TxOut(49_0000_0000, pool_script), TxOut(1_0000_0000, b"\x51")])
    await found_block(pool, found)
    assert pool.submitter.blocks == [b"block"]  # type: ignore[attr-defined]
    assert ledger.blocks == [(found, 49_0000_0000)]
    assert pool.stats.blocks_accepted == 1


@pytest_twisted.ensureDeferred
async def test_a_rejected_block_is_still_recorded_pending_for_the_tracker_to_settle() -> None:
    ledger = FakeLedger()
    pool = core(SubmitResult(SubmitOutcome.REJECTED, "bad-txnmrklroot"), ledger=ledger)
    found = share([TxOut(5, address_to_script(POOL, NETWORK))])
    result = await found_block(pool, found)
    assert result is not None and result.outcome is SubmitOutcome.REJECTED
    assert ledger.blocks == [(found, 5)]
    assert (pool.stats.blocks_rejected, pool.stats.blocks_accepted) == (1, 0)


@pytest_twisted.ensureDeferred
async def test_a_duplicate_or_inconclusive_block_is_still_recorded() -> None:
    for outcome in (SubmitOutcome.DUPLICATE, SubmitOutcome.INCONCLUSIVE):
        ledger = FakeLedger()
        pool = core(SubmitResult(outcome, outcome.value), ledger=ledger)
        await found_block(pool, share([TxOut(5, address_to_script(POOL, NETWORK))]))
        assert [reward for _, reward in ledger.blocks] == [5]


@pytest.mark.parametrize(
    "error", [TimeoutError("submitblock timed out"), ConnectionResetError("reset by peer")]
)
@pytest_twisted.ensureDeferred
async def test_a_submit_that_raises_still_records_the_block_as_pending(error: Exception) -> None:
    """The daemon may have taken the block before the answer was lost: never drop it."""
    ledger = FakeLedger()
    pool = core(error, ledger=ledger)
    found = share([TxOut(49_0000_0000, address_to_script(POOL, NETWORK))])
    assert await found_block(pool, found) is None
    assert ledger.blocks == [(found, 49_0000_0000)]
    assert pool.stats.blocks_unanswered == 1


@pytest_twisted.ensureDeferred
async def test_the_block_is_recorded_before_the_daemon_answers() -> None:
    ledger = FakeLedger()
    answer: Deferred[SubmitResult] = Deferred()
    pool = core(answer, ledger=ledger)
    found = share([TxOut(5, address_to_script(POOL, NETWORK))])
    submitted = pool.block_found(b"block", found)
    turn(pool)
    assert ledger.blocks == [(found, 5)]  # recorded while submitblock is still in flight
    assert not submitted.called
    answer.callback(ACCEPTED)
    assert (await submitted) == ACCEPTED


@pytest_twisted.ensureDeferred
async def test_the_finding_share_is_in_the_ledger_before_its_block_is_recorded() -> None:
    """Stratum calls share_accepted just after block_found: that share is in the window."""
    ledger = FakeLedger()
    pool = core(ledger=ledger)
    found = share([TxOut(5, address_to_script(POOL, NETWORK))])
    submitted = pool.block_found(b"block", found)
    pool.share_accepted(found)
    assert ledger.blocks == []
    turn(pool)
    assert (ledger.shares, ledger.blocks) == ([found], [(found, 5)])
    assert ledger.shares_when_recorded == [1]
    await submitted


@pytest_twisted.ensureDeferred
async def test_a_failing_ledger_call_is_retried_until_the_block_is_recorded() -> None:
    clock = task.Clock()
    ledger = FakeLedger(failures=2)
    pool = core(ledger=ledger, clock=clock)
    events: list[dict[str, Any]] = []
    pool.log = Logger(observer=events.append)
    found = share([TxOut(5, address_to_script(POOL, NETWORK))])
    submitted = pool.block_found(b"block", found)
    clock.advance(0)
    assert ledger.blocks == [] and pool.stats.record_failures == 1
    clock.advance(1.0)
    assert ledger.calls == 2 and pool.stats.record_failures == 2
    clock.advance(2.0)  # backing off: 1 s, then 2 s
    assert ledger.blocks == [(found, 5)]
    assert (await submitted) == ACCEPTED
    shown = [
        (e["log_level"].name, formatEvent(e)) for e in events if e["log_level"].name != "debug"
    ]
    hash_hex = found.block_hash[::-1].hex()
    assert [level for level, _ in shown] == ["warn", "info", "info"]  # failed, recorded, found
    assert shown[0][1] == (
        f"recording block {hash_hex} in the ledger failed: No space left on device; retrying "
        "with back-off (logged once until it works again)"
    )
    assert (
        shown[1][1]
        == f"recording block {hash_hex} in the ledger works again after 2 failed attempts"
    )
    assert shown[2][1].startswith(f"BLOCK FOUND at height 7 by {MINER}.rig1: {hash_hex}")


@pytest_twisted.ensureDeferred
async def test_a_failing_daemon_call_is_logged_with_the_block_and_what_happens_next() -> None:
    events: list[dict[str, Any]] = []
    pool = core(ConnectionError("daemon away"), ledger=FakeLedger())
    pool.log = Logger(observer=events.append)
    found = share([TxOut(1, b"\x51")])
    assert await found_block(pool, found) is None
    [failure] = [event for event in events if "log_failure" in event]
    text = formatEvent(failure)
    assert found.block_hash[::-1].hex() in text
    assert "at height 7 got no answer" in text
    assert "recorded as pending" in text
    assert "daemon away" in str(failure["log_failure"].value)


@pytest_twisted.ensureDeferred
async def test_an_unanswered_submitblock_is_a_chain_trouble_until_answered_or_old() -> None:
    clock = task.Clock()
    submitter = ScriptedSubmitter(ConnectionError("cannot reach bitcoind"))
    pool = PoolCore(NETWORK, POOL, RewardScheme.PPLNS, 100, submitter, FakeLedger(), clock=clock)
    assert pool.submit_trouble() is None
    found = share([TxOut(1, address_to_script(POOL, NETWORK))])
    await found_block(pool, found)
    trouble = pool.submit_trouble()
    assert trouble is not None
    assert f"submitblock for block {found.block_hash[::-1].hex()} at height 7" in trouble
    assert "cannot reach bitcoind" in trouble
    clock.advance(SUBMIT_TROUBLE_WINDOW - 1)
    assert pool.submit_trouble() is not None
    clock.advance(1)
    assert pool.submit_trouble() is None
    await found_block(pool, found)
    assert pool.submit_trouble() is not None
    submitter.result = ACCEPTED
    await found_block(pool, found)
    assert pool.submit_trouble() is None


@pytest_twisted.ensureDeferred
async def test_on_block_callbacks_run_for_blocks_the_daemon_took_only() -> None:
    taken: list[SubmitOutcome] = []
    for result in (ACCEPTED, SubmitResult(SubmitOutcome.REJECTED, "bad-txnmrklroot")):
        pool = core(result, ledger=FakeLedger())
        pool.on_block(lambda _share, r: taken.append(r.outcome))
        await found_block(pool, share([TxOut(1, address_to_script(POOL, NETWORK))]))
    assert taken == [SubmitOutcome.ACCEPTED]


class SplittingLedger(FakeLedger):
    """A ledger that answers like the real one: the block's split, or queued."""

    def __init__(self, queued: bool = False) -> None:
        super().__init__()
        self.queued = queued

    async def record_block(self, share: Share, reward: int) -> RecordedBlock:
        await super().record_block(share, reward)
        if self.queued:
            return RecordedBlock(0, False, None, None, queued=True)
        split = split_reward(RewardScheme.PPLNS, reward, 100, {MINER: 1}, None, POOL)
        return RecordedBlock(1, True, split, (0.0, 1.0))


def shown(events: list[dict[str, Any]]) -> list[tuple[str, str]]:
    """(level, line) of the events an operator sees (info and above)."""
    return [(e["log_level"].name, formatEvent(e)) for e in events if e["log_level"].name != "debug"]


async def block_lines(pool: PoolCore, value: int) -> tuple[list[tuple[str, str]], str]:
    """The lines an operator sees for one found block paying ``value``, and its hash."""
    events: list[dict[str, Any]] = []
    pool.log = Logger(observer=events.append)
    found = share([TxOut(value, address_to_script(POOL, NETWORK))])
    await found_block(pool, found)
    return shown(events), found.block_hash[::-1].hex()


@pytest_twisted.ensureDeferred
async def test_a_found_block_is_one_line_with_the_verdict_and_what_the_ledger_recorded() -> None:
    lines, block_hash = await block_lines(core(ledger=SplittingLedger()), 50_0000_0000)
    assert lines == [
        (
            "info",
            f"BLOCK FOUND at height 7 by {MINER}.rig1: {block_hash}; "
            "accepted by the chain; recorded pending: 5000000000 sats, fee 50000000, "
            "1 addresses credited (PPLNS)",
        )
    ]


@pytest_twisted.ensureDeferred
async def test_an_inconclusive_block_is_one_warning_and_a_queued_record_says_so() -> None:
    inconclusive = SubmitResult(SubmitOutcome.INCONCLUSIVE, "inconclusive")
    lines, block_hash = await block_lines(core(inconclusive, ledger=SplittingLedger(True)), 1)
    assert lines == [
        (
            "warn",
            f"block found at height 7 by {MINER}.rig1: {block_hash}, but the "
            "chain says inconclusive; the block tracker settles it; kept for the ledger until "
            "the database is back",
        )
    ]


@pytest_twisted.ensureDeferred
async def test_the_next_job_does_not_wait_for_the_ledger() -> None:
    """on_block callbacks (the template refresh) run at the verdict, before the record."""
    held: Deferred[RecordedBlock] = Deferred()

    class SlowLedger(FakeLedger):
        async def record_block(self, share: Share, reward: int) -> RecordedBlock:
            return await held

    pool = core(ledger=SlowLedger())
    called: list[int] = []
    pool.on_block(lambda candidate, _result: called.append(candidate.height))
    submitted = pool.block_found(b"block", share([TxOut(1, address_to_script(POOL, NETWORK))]))
    turn(pool)
    assert called == [7]
    assert not submitted.called
    held.callback(RecordedBlock(1, True, None, None))
    assert (await submitted) == ACCEPTED


def test_report_summarises_each_workers_shares_since_the_last_report() -> None:
    pool = core()
    one = share([TxOut(1, b"\x51")], is_block=False)
    assert pool.report(100.0) == []
    for _ in range(3):
        pool.share_accepted(one)
    lines = pool.report(130.0)
    assert len(lines) == 1
    assert lines[0].startswith(f"{one.worker}: 3 shares accepted (difficulty 0.003)")
    assert "3 shares and 0 blocks since start" in lines[0]
    assert pool.report(160.0) == []


def test_idle_workers_are_pruned_by_age() -> None:
    pool = core(worker_max_age=3600.0)
    old = replace(share([TxOut(1, b"\x51")], is_block=False), worker=f"{MINER}.old", time=1000.0)
    new = replace(old, worker=f"{MINER}.new", time=4000.0)
    pool.share_accepted(old)
    pool.share_accepted(new)
    pool.report(4000.0)
    assert list(pool.stats.workers) == [old.worker, new.worker]  # 3000 s idle: kept
    assert pool.report(4602.0) == []
    assert list(pool.stats.workers) == [new.worker]
    assert pool.stats.workers_pruned == 1


def test_the_number_of_workers_is_bounded_and_the_least_recently_seen_goes_first() -> None:
    pool = core(max_workers=2)
    base = share([TxOut(1, b"\x51")], is_block=False)
    a, b, c = (replace(base, worker=f"{MINER}.{name}") for name in "abc")
    pool.share_accepted(a)
    pool.share_accepted(b)
    pool.share_accepted(a)  # a is now the most recent
    pool.share_accepted(c)
    assert list(pool.stats.workers) == [a.worker, c.worker]
    assert pool.stats.workers_pruned == 1
    assert pool.stats.shares == 4


def test_the_share_report_timer_survives_a_failing_tick() -> None:
    clock = task.Clock()
    pool = core(clock=clock)
    calls: list[float] = []

    def report(now: float) -> list[str]:
        calls.append(now)
        if len(calls) == 2:
            raise RuntimeError("injected failure")
        return []

    pool.report = report  # type: ignore[method-assign]
    reporter = ShareReporter(pool, clock, interval=30.0)
    events: list[dict[str, Any]] = []
    reporter.log = Logger(observer=events.append)
    reporter.startService()
    try:
        clock.advance(30.0)  # the failing tick
        clock.advance(30.0)
        clock.advance(30.0)
    finally:
        reporter.stopService()
    assert calls == [0.0, 30.0, 60.0, 90.0]
    assert reporter.failures == 1
    assert any("share report failed" in formatEvent(e) for e in events if "log_failure" in e)

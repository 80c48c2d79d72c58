"""The pool core: coinbase policy, share counting, block submission and recording."""

from __future__ import annotations

from fractions import Fraction
from typing import Any

import pytest_twisted

from otedama.chain.address import address_to_script
from otedama.chain.coinbase import build_coinbase
from otedama.chain.params import get_network
from otedama.chain.serialize import TxOut
from otedama.chain.template import BlockTemplate
from otedama.node.bitcoind import SubmitOutcome, SubmitResult
from otedama.pool.core import PoolCore
from otedama.stratum.share import Share

NETWORK = get_network("devnet")
POOL = "bcrt1qqxlgwddcf0uhsmr9uqesvn3efp00p99t0mcyjs"
MINER = "bcrt1qw508d6qejxtdg4y5r3zarvary0c5xw7kygt080"


class FakeChain:
    def __init__(self, result: Any) -> None:
        self.result = result
        self.blocks: list[bytes] = []

    async def submit_block(self, block: bytes) -> Any:
        self.blocks.append(block)
        if isinstance(self.result, Exception):
            raise self.result
        return self.result


class FakeLedger:
    def __init__(self) -> None:
        self.shares: list[Share] = []
        self.blocks: list[tuple[Share, int]] = []

    def add_share(self, share: Share) -> None:
        self.shares.append(share)

    async def record_block(self, share: Share, reward: int) -> None:
        self.blocks.append((share, reward))


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


def core(result: Any = None, scheme: str = "PPLNS", ledger: FakeLedger | None = None) -> PoolCore:
    return PoolCore(NETWORK, POOL, scheme, 100, FakeChain(result), ledger)


def share(outputs: list[TxOut], *, is_block: bool = True) -> Share:
    parts = build_coinbase(7, outputs, 12)
    return Share(
        worker=f"{MINER}.rig1",
        address=MINER,
        difficulty=Fraction(1, 1000),
        hash=b"\x01" * 32,
        job_id="1a",
        height=7,
        time=1_800_000_001.0,
        is_block=is_block,
        header=bytes(80),
        coinbase=parts.assemble(bytes(12)),
    )


def test_pooled_coinbase_pays_the_whole_value_to_the_pool_wallet() -> None:
    outputs = core().coinbase_outputs(template(50_0001_2345))
    assert outputs == [TxOut(50_0001_2345, address_to_script(POOL, NETWORK))]


def test_solo_coinbase_pays_the_finder_and_the_fee_to_the_pool() -> None:
    outputs = core(scheme="SOLO").solo_outputs(template(10_000), MINER)
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
    await pool.block_found(b"block", found)
    assert pool.submitter.blocks == [b"block"]  # type: ignore[attr-defined]
    assert ledger.blocks == [(found, 49_0000_0000)]
    assert pool.stats.blocks_accepted == 1


@pytest_twisted.ensureDeferred
async def test_a_rejected_block_is_not_recorded() -> None:
    ledger = FakeLedger()
    pool = core(SubmitResult(SubmitOutcome.REJECTED, "bad-txnmrklroot"), ledger=ledger)
    await pool.block_found(b"block", share([TxOut(1, b"\x51")]))
    assert ledger.blocks == []
    assert pool.stats.blocks_rejected == 1


@pytest_twisted.ensureDeferred
async def test_a_duplicate_or_inconclusive_block_is_still_recorded() -> None:
    for outcome in (SubmitOutcome.DUPLICATE, SubmitOutcome.INCONCLUSIVE):
        ledger = FakeLedger()
        pool = core(SubmitResult(outcome, outcome.value), ledger=ledger)
        await pool.block_found(b"block", share([TxOut(5, address_to_script(POOL, NETWORK))]))
        assert [reward for _, reward in ledger.blocks] == [5]


@pytest_twisted.ensureDeferred
async def test_a_failing_daemon_call_is_logged_and_does_not_raise() -> None:
    ledger = FakeLedger()
    pool = core(ConnectionError("daemon away"), ledger=ledger)
    assert await pool.block_found(b"block", share([TxOut(1, b"\x51")])) is None
    assert ledger.blocks == []
    assert pool.stats.blocks_rejected == 1


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

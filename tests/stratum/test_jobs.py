"""JobManager: jobs per template, clean_jobs, refresh, validity window, SOLO outputs."""

from __future__ import annotations

import json
from typing import Any

import bitcoin
import bitcoin.core
import pytest
from twisted.internet import task

from otedama.chain.address import address_to_script
from otedama.chain.merkle import witness_commitment_script, witness_merkle_root
from otedama.chain.serialize import Block, TxOut
from otedama.chain.template import BlockTemplate
from otedama.stratum.jobs import Job, JobManager, prevhash_to_stratum, stratum_to_prevhash
from otedama.stratum.validator import ShareValidator

from .conftest import ADDRESS, START_TIME, make_template, payout_outputs

TEMPLATES = json.loads(
    (
        __import__("pathlib").Path(__file__).resolve().parents[1]
        / "vectors"
        / "bitcoind"
        / "templates-with-txs.json"
    ).read_text()
)


def _manager(clock: task.Clock, **kwargs: Any) -> tuple[JobManager, list[Job]]:
    manager = JobManager(payout_outputs, clock=clock, **kwargs)
    announced: list[Job] = []
    manager.add_listener(announced.append)
    return manager, announced


def _clock() -> task.Clock:
    clock = task.Clock()
    clock.advance(START_TIME)
    return clock


def test_prevhash_word_swap_matches_a_recorded_notify() -> None:
    # ckpool's notify prevhash and the header bytes of the same job (vectors/stratum).
    notify = "04c088221cc65d0aeeefb94d86d909f178ce629a458d0785a03ebc456a97f48c"
    header_prev = "2288c0040a5dc61c4db9efeef109d9869a62ce7885078d4545bc3ea08cf4976a"
    assert stratum_to_prevhash(notify).hex() == header_prev
    assert prevhash_to_stratum(bytes.fromhex(header_prev)) == notify


def test_first_template_makes_a_clean_job_with_its_notify_line_encoded_once() -> None:
    manager, announced = _manager(_clock())
    template = make_template()
    job = manager.on_template(template)
    assert announced == [job]
    assert job.clean is True
    notify = json.loads(job.notify_clean)
    assert notify["method"] == "mining.notify" and notify["id"] is None
    params = notify["params"]
    assert params[0] == job.job_id
    assert stratum_to_prevhash(params[1]) == template.prev_hash
    assert params[2:4] == [job.coinb1.hex(), job.coinb2.hex()]
    assert params[4] == []
    assert params[5:8] == ["20000000", "207fffff", f"{template.curtime:08x}"]
    assert params[8] is True
    assert json.loads(job.notify_update)["params"][8] is False
    assert job.notify_line() is job.notify_clean
    assert len(job.job_id) <= 8 and int(job.job_id, 16) == job.seq


def test_clean_jobs_only_when_the_previous_block_changes() -> None:
    manager, _ = _manager(_clock())
    first = manager.on_template(make_template(prev=b"\x01" * 32))
    same_tip = manager.on_template(make_template(prev=b"\x01" * 32, curtime=START_TIME + 5))
    new_tip = manager.on_template(make_template(prev=b"\x02" * 32, height=201))
    assert (first.clean, same_tip.clean, new_tip.clean) == (True, False, True)


def test_jobs_of_the_current_tip_stay_valid_and_older_blocks_are_stale() -> None:
    manager, _ = _manager(_clock())
    first = manager.on_template(make_template(prev=b"\x01" * 32))
    second = manager.on_template(make_template(prev=b"\x01" * 32, curtime=START_TIME + 30))
    assert manager.lookup(first.job_id) == (first, False)
    assert manager.lookup(second.job_id) == (second, False)
    first.seen.add(12345)
    third = manager.on_template(make_template(prev=b"\x02" * 32, height=201))
    # Stale jobs keep no duplicate keys: memory stays flat across blocks.
    assert not first.seen
    assert manager.lookup(first.job_id) == (first, True)
    assert manager.lookup(second.job_id) == (second, True)
    assert manager.lookup(third.job_id) == (third, False)
    assert manager.lookup("deadbeef") == (None, False)


def test_only_a_bounded_number_of_generations_stays_valid() -> None:
    manager, _ = _manager(_clock(), max_generations=3, max_stale=2)
    jobs = [manager.on_template(make_template(curtime=START_TIME + i)) for i in range(6)]
    assert [manager.lookup(j.job_id)[1] for j in jobs[3:]] == [False, False, False]
    # Aged out of the valid window: stale, and only the newest max_stale are remembered.
    assert manager.lookup(jobs[2].job_id) == (jobs[2], True)
    assert manager.lookup(jobs[1].job_id) == (jobs[1], True)
    assert manager.lookup(jobs[0].job_id) == (None, False)
    assert manager.oldest_valid_seq == jobs[3].seq


def test_coinbase_outputs_are_computed_once_per_template() -> None:
    calls: list[BlockTemplate] = []

    def outputs(template: BlockTemplate) -> list[TxOut]:
        calls.append(template)
        return payout_outputs(template)

    manager = JobManager(outputs, clock=_clock())
    template = make_template()
    job = manager.on_template(template)
    for _ in range(100):
        assert manager.job_for(None) is job
        assert manager.job_for(ADDRESS) is job
    manager.refresh()
    assert calls == [template]


def test_refresh_timer_reissues_the_work_with_a_fresh_ntime() -> None:
    clock = _clock()
    manager, announced = _manager(clock, refresh_interval=30)
    manager.startService()
    first = manager.on_template(make_template())
    clock.advance(29)
    assert announced == [first]
    clock.advance(1)
    assert len(announced) == 2
    refreshed = announced[1]
    assert refreshed.job_id != first.job_id
    assert refreshed.ntime == first.ntime + 30
    assert refreshed.clean is False
    assert (refreshed.coinb1, refreshed.coinb2) == (first.coinb1, first.coinb2)
    # The same coinbase: a share re-sent under the new id is still a duplicate.
    assert refreshed.seen is first.seen
    assert manager.lookup(first.job_id) == (first, False)
    # A template resets the timer.
    clock.advance(20)
    manager.on_template(make_template(curtime=START_TIME + 50))
    clock.advance(20)
    assert len(announced) == 3
    manager.stopService()
    clock.advance(100)
    assert len(announced) == 3


def test_solo_jobs_pay_each_address_and_are_cached_per_template() -> None:
    calls: list[str] = []
    other = "bcrt1qfzg8scjxecvudkzqqal2m80333dlnlt337drc4"

    def per_address(template: BlockTemplate, address: str) -> list[TxOut]:
        calls.append(address)
        return [TxOut(template.coinbase_value, address_to_script(address, "regtest"))]

    manager = JobManager(payout_outputs, clock=_clock(), address_outputs=per_address)
    assert manager.per_address
    shared = manager.on_template(make_template())
    mine = manager.job_for(ADDRESS)
    theirs = manager.job_for(other)
    assert mine is not None and theirs is not None
    assert manager.job_for(ADDRESS) is mine
    assert calls == [ADDRESS, other]
    assert address_to_script(ADDRESS, "regtest") in mine.coinb2
    assert address_to_script(other, "regtest") in theirs.coinb2
    assert len({shared.job_id, mine.job_id, theirs.job_id}) == 3
    assert manager.lookup(mine.job_id) == (mine, False)
    refreshed_mine = (manager.refresh(), manager.job_for(ADDRESS))[1]
    assert refreshed_mine is not None and refreshed_mine is not mine
    assert refreshed_mine.coinb2 == mine.coinb2
    assert calls == [ADDRESS, other]
    manager.on_template(make_template(prev=b"\x05" * 32, height=201))
    manager.job_for(ADDRESS)
    assert calls == [ADDRESS, other, ADDRESS]


def test_job_from_recorded_notify_reads_height_from_the_coinbase() -> None:
    params = [
        "6b05021400000002",
        "0c2ec7527c1cc54977239c902b4b75a50495c9519e3a356d530542a53f905983",
        "01000000010000000000000000000000000000000000000000000000000000000000000000ffffffff3002880000043b02056b0495fd540c0c",
        "0a636b706f6f6c2d6c6872092f766563746f72732fffffffff0200f2052a0100000016001435a958e4e013cf5ea9f6f53ddc57d953a7a35ffe0000000000000000266a24aa21a9ede2f61c3f71d1defd3fa999dfa36953755c690689799962b48bebd836974e8cf900000000",
        [],
        "20000000",
        "207fffff",
        "6b05023b",
        True,
    ]
    job = Job.from_notify(params, seq=3)
    assert job.height == 0x88
    assert job.mintime == job.ntime == 0x6B05023B
    assert job.transactions is None
    assert json.loads(job.notify_clean)["params"] == [*params[:8], True]


@pytest.mark.parametrize("case", TEMPLATES["cases"], ids=lambda c: c["name"])
def test_a_block_from_a_real_template_is_valid_for_an_independent_library(
    case: dict[str, Any],
) -> None:
    template = BlockTemplate.from_rpc(case["getblocktemplate"])
    manager = JobManager(payout_outputs, clock=_clock())
    job = manager.on_template(template)
    assert [b.hex() for b in job.branch] == case["stratum_merkle_branch"]
    validator = ShareValidator(8)
    extranonce1 = bytes.fromhex("01020304")
    for nonce in range(64):
        checked = validator.check(
            job,
            False,
            extranonce1,
            "00000000000000aa",
            f"{job.ntime:08x}",
            f"{nonce:08x}",
            None,
            0,
            1,
            template.curtime,
            template.prev_hash,
        )
        if checked.is_block:
            break
    assert checked.is_block and checked.reject is None
    coinbase = validator.coinbase(job, extranonce1, checked.extranonce2)
    block_bytes = validator.build_block(job, checked.header, coinbase)
    assert block_bytes is not None
    block = Block.parse(block_bytes)
    assert block.header.serialize() == checked.header
    assert [tx.txid() for tx in block.transactions[1:]] == template.txids
    assert block.transactions[0].inputs[0].witness == (bytes(32),)
    commitment = witness_commitment_script(witness_merkle_root(template.wtxids))
    assert commitment == template.default_witness_commitment
    assert any(out.script_pubkey == commitment for out in block.transactions[0].outputs)
    assert sum(out.value for out in block.transactions[0].outputs) == template.coinbase_value
    bitcoin.SelectParams("regtest")
    try:
        parsed = bitcoin.core.CBlock.deserialize(block_bytes)
        bitcoin.core.CheckBlock(parsed, cur_time=template.curtime)
        assert parsed.GetHash() == checked.pow_hash
    finally:
        bitcoin.SelectParams("mainnet")

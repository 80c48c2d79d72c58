"""The devnet chain on its own: block checks with Core's reasons, reorganizations, mempool."""

from __future__ import annotations

import json
from dataclasses import replace
from fractions import Fraction
from pathlib import Path
from typing import Any

import pytest

from otedama.chain.params import block_subsidy, get_network
from otedama.chain.serialize import Block, TxOut
from otedama.devnet.chain import BlockDecodeError, ChainError, DevnetChain, devnet_bits
from tests.devnet.blocks import SCRIPT, block_from_template, coinbase_for, spend

EASY = Fraction(1, 10**9)
NOW = 1_800_000_000


def template(chain: DevnetChain, now: int = NOW) -> dict[str, Any]:
    """The fields of a getblocktemplate reply the block builder needs."""
    t = chain.template(now)
    return {
        "height": t.height,
        "version": t.version,
        "previousblockhash": t.prev_hash[::-1].hex(),
        "curtime": t.curtime,
        "bits": f"{t.bits:08x}",
        "target": f"{t.target:064x}",
        "coinbasevalue": t.coinbase_value,
        "default_witness_commitment": t.witness_commitment.hex(),
        "transactions": [{"data": e.tx.serialize().hex()} for e in t.entries],
        "mintime": t.mintime,
    }


def mine(chain: DevnetChain, count: int = 1, script: bytes = SCRIPT, now: int = NOW) -> list[Block]:
    blocks = []
    for _ in range(count):
        block = block_from_template(template(chain, now), script)
        result = chain.submit_block(block.serialize(), now)
        assert result.reason is None, result.reason
        blocks.append(block)
        now += 1
    return blocks


@pytest.fixture
def chain() -> DevnetChain:
    return DevnetChain(get_network("devnet"), EASY)


def test_a_block_built_from_the_template_extends_the_chain(chain: DevnetChain) -> None:
    (block,) = mine(chain)
    assert chain.tip.hash == block.hash()
    assert chain.tip.height == 1
    assert chain.coins_for_script(SCRIPT)[0][1].value == block_subsidy(1, chain.params)


def test_the_same_block_again_is_a_duplicate(chain: DevnetChain) -> None:
    (block,) = mine(chain)
    assert chain.submit_block(block.serialize(), NOW).reason == "duplicate"


@pytest.mark.parametrize(
    ("name", "reason"),
    [
        ("hash_above_target", "high-hash"),
        ("bad_merkle_root", "bad-txnmrklroot"),
        ("no_transactions", "bad-txnmrklroot"),
        ("wrong_nbits", "bad-diffbits"),
        ("time_too_new", "time-too-new"),
        ("time_equal_median_time_past", "time-too-old"),
        ("coinbase_overpays_1_sat", "bad-cb-amount"),
        ("coinbase_wrong_bip34_height", "bad-cb-height"),
        ("wrong_witness_commitment", "bad-witness-merkle-match"),
        ("version_1", "bad-version(0x00000001)"),
        ("unknown_previous_block", "prev-blk-not-found"),
    ],
)
def test_a_tampered_block_is_rejected_with_cores_reason(
    chain: DevnetChain, name: str, reason: str
) -> None:
    """The cases of vectors/bitcoind/submitblock-rejections.json, rebuilt on the devnet."""
    mine(chain, 3)
    t = template(chain)
    height, value = t["height"], t["coinbasevalue"]
    commitment = bytes.fromhex(t["default_witness_commitment"])
    target = int(t["target"], 16)
    good = block_from_template(t)
    if name == "hash_above_target":
        block = block_from_template(t, meet=False)
    elif name == "bad_merkle_root":
        root = bytearray(good.header.merkle_root)
        root[0] ^= 1
        block = block_from_template(t, merkle=bytes(root))
    elif name == "no_transactions":
        block = Block(good.header, ())
    elif name == "wrong_nbits":
        bits = devnet_bits(EASY * 4, chain.params)
        block = block_from_template(t, bits=bits, target=target // 4)
    elif name == "time_too_new":
        block = block_from_template(t, time=NOW + 2 * 3600 + 1)
    elif name == "time_equal_median_time_past":
        block = block_from_template(t, time=chain.tip.median_time_past)
    elif name == "coinbase_overpays_1_sat":
        block = block_from_template(t, coinbase=coinbase_for(height, value + 1, commitment))
    elif name == "coinbase_wrong_bip34_height":
        block = block_from_template(t, coinbase=coinbase_for(height + 1, value, commitment))
    elif name == "wrong_witness_commitment":
        bad = bytearray(commitment)
        bad[-1] ^= 1
        block = block_from_template(t, coinbase=coinbase_for(height, value, bytes(bad)))
    elif name == "version_1":
        block = block_from_template(t, version=1)
    else:
        block = block_from_template(t, prev=bytes([0xA5]) * 32)
    result = chain.submit_block(block.serialize(), NOW)
    assert (result.reason, result.stored) == (reason, False)
    assert chain.tip.height == 3


def test_a_competing_block_at_the_same_height_is_inconclusive_and_a_longer_branch_wins(
    chain: DevnetChain,
) -> None:
    mine(chain, 2)
    t = template(chain)
    first = block_from_template(t)
    rival = block_from_template(t, script=b"\x00\x14" + bytes(20))
    assert chain.submit_block(first.serialize(), NOW).reason is None
    result = chain.submit_block(rival.serialize(), NOW)
    assert (result.reason, result.stored, result.tip_changed) == ("inconclusive", True, False)
    on_rival = template(chain) | {"previousblockhash": rival.hash()[::-1].hex()}
    longer = block_from_template(on_rival)
    result = chain.submit_block(longer.serialize(), NOW)
    assert (result.reason, result.tip_changed) == (None, True)
    assert chain.active[3].hash == rival.hash()
    assert chain.confirmations(chain.index[first.hash()]) == -1


def test_a_block_spending_an_immature_coinbase_is_rejected(chain: DevnetChain) -> None:
    (first,) = mine(chain)
    mine(chain, 50)
    cb = first.transactions[0]
    payment = spend(cb.txid(), 0, cb.outputs[0].value - 1000)
    t = template(chain)
    t["coinbasevalue"] += 1000
    block = block_from_template(t, transactions=[payment])
    assert (
        chain.submit_block(block.serialize(), NOW).reason == "bad-txns-premature-spend-of-coinbase"
    )
    with pytest.raises(ChainError, match="premature"):
        chain.accept_to_mempool(payment, NOW)


def test_a_mature_spend_enters_the_template_with_its_fee_and_depends(chain: DevnetChain) -> None:
    (first,) = mine(chain)
    mine(chain, 99)
    cb = first.transactions[0]
    parent = spend(cb.txid(), 0, cb.outputs[0].value - 1000)
    child = spend(parent.txid(), 0, parent.outputs[0].value - 500)
    chain.accept_to_mempool(parent, NOW)
    chain.accept_to_mempool(child, NOW)
    t = chain.template(NOW)
    assert [e.txid for e in t.entries] == [parent.txid(), child.txid()]
    assert t.depends == ((), (1,))
    assert t.coinbase_value == block_subsidy(101, chain.params) + 1500
    mine(chain)
    assert not chain.mempool
    assert chain.tx_index[child.txid()][1] == 2


def test_a_block_spending_a_missing_output_is_rejected_and_remembered_as_invalid(
    chain: DevnetChain,
) -> None:
    mine(chain)
    bogus = spend(bytes([7]) * 32, 0, 1000)
    block = block_from_template(template(chain), transactions=[bogus])
    assert chain.submit_block(block.serialize(), NOW).reason == "bad-txns-inputs-missingorspent"
    assert chain.submit_block(block.serialize(), NOW).reason == "duplicate-invalid"


def test_witness_data_without_a_commitment_is_unexpected(chain: DevnetChain) -> None:
    (first,) = mine(chain)
    mine(chain, 99)
    cb = first.transactions[0]
    payment = spend(cb.txid(), 0, cb.outputs[0].value)
    t = template(chain)
    coinbase = coinbase_for(t["height"], t["coinbasevalue"], None)
    block = block_from_template(t, coinbase=coinbase, transactions=[payment])
    assert chain.submit_block(block.serialize(), NOW).reason == "unexpected-witness"


def test_invalidating_the_tip_returns_its_transactions_to_the_mempool(chain: DevnetChain) -> None:
    (first,) = mine(chain)
    mine(chain, 99)
    cb = first.transactions[0]
    payment = spend(cb.txid(), 0, cb.outputs[0].value - 1000)
    chain.accept_to_mempool(payment, NOW)
    (block,) = mine(chain)
    assert payment.txid() not in chain.mempool
    assert chain.invalidate_block(block.hash())
    assert chain.tip.height == 100
    assert payment.txid() in chain.mempool
    assert chain.submit_block(block.serialize(), NOW).reason == "duplicate-invalid"
    (replacement,) = mine(chain, script=b"\x00\x14" + bytes([3]) * 20)
    assert chain.tip.hash == replacement.hash() != block.hash()
    assert chain.tip.height == 101
    assert replacement.transactions[1] == payment
    assert not chain.mempool


def test_invalidating_a_block_drops_mempool_spends_that_become_immature(chain: DevnetChain) -> None:
    (first,) = mine(chain)
    blocks = mine(chain, 99)
    cb = first.transactions[0]
    payment = spend(cb.txid(), 0, cb.outputs[0].value - 1000)
    chain.accept_to_mempool(payment, NOW)
    chain.invalidate_block(blocks[-1].hash())
    assert payment.txid() not in chain.mempool


def test_the_genesis_cannot_be_invalidated(chain: DevnetChain) -> None:
    with pytest.raises(ChainError, match="genesis"):
        chain.invalidate_block(chain.genesis.hash)


def test_a_difficulty_below_the_proof_of_work_limit_is_refused() -> None:
    with pytest.raises(ValueError, match="too low"):
        DevnetChain(get_network("devnet"), Fraction(1, 10**12))


def test_proposal_mode_checks_everything_but_proof_of_work(chain: DevnetChain) -> None:
    t = template(chain)
    unground = block_from_template(t, meet=False)
    assert chain.check_proposal(unground.serialize(), NOW) is None
    commitment = bytes.fromhex(t["default_witness_commitment"])
    rich = coinbase_for(t["height"], t["coinbasevalue"] + 1, commitment)
    overpaid = block_from_template(t, coinbase=rich)
    assert chain.check_proposal(overpaid.serialize(), NOW) == "bad-cb-amount"
    other = replace(overpaid.header, prev_hash=bytes(32))
    assert chain.check_proposal(Block(other, overpaid.transactions).serialize(), NOW) == (
        "inconclusive-not-best-prevblk"
    )


def test_outputs_are_tracked_per_script(chain: DevnetChain) -> None:
    other = b"\x00\x14" + bytes([9]) * 20
    mine(chain, 2)
    mine(chain, 1, script=other)
    assert len(chain.coins_for_script(SCRIPT)) == 2
    assert [c.height for _, c in chain.coins_for_script(other)] == [3]
    assert all(c.coinbase for _, c in chain.coins_for_script(SCRIPT))
    assert TxOut(0, other).script_pubkey in chain.by_script


def test_a_branch_whose_block_overpays_fails_when_it_would_become_best(chain: DevnetChain) -> None:
    """Side-branch blocks are fully checked only when their branch overtakes the tip."""
    mine(chain, 2)
    t = template(chain)
    assert chain.submit_block(block_from_template(t).serialize(), NOW).reason is None
    commitment = bytes.fromhex(t["default_witness_commitment"])
    greedy = block_from_template(
        t, coinbase=coinbase_for(t["height"], t["coinbasevalue"] + 1, commitment, tag=b"x")
    )
    assert chain.submit_block(greedy.serialize(), NOW).reason == "inconclusive"
    on_greedy = template(chain) | {"previousblockhash": greedy.hash()[::-1].hex()}
    child = block_from_template(on_greedy)
    result = chain.submit_block(child.serialize(), NOW)
    assert (result.reason, result.tip_changed) == ("bad-prevblk", False)
    assert chain.tip.height == 3
    assert chain.submit_block(greedy.serialize(), NOW).reason == "duplicate-invalid"


def test_cores_recorded_blocks_fail_here_in_cores_check_order(chain: DevnetChain) -> None:
    """The regtest blocks of submitblock-rejections.json build on a block the devnet lacks:
    proof of work is judged first (against the header's own nBits), then the parent."""
    vectors = Path(__file__).parents[1] / "vectors" / "bitcoind" / "submitblock-rejections.json"
    for case in json.loads(vectors.read_text())["cases"]:
        try:
            raw = bytes.fromhex(case["block_hex"])
            reason = chain.submit_block(raw, NOW).reason
        except (ValueError, BlockDecodeError):
            reason = "decode-error"
        if case["name"] in ("garbage_hex", "not_hex"):
            assert reason == "decode-error"
        elif case["name"] == "hash_above_target":
            assert reason == "high-hash"
        else:
            assert reason == "prev-blk-not-found", case["name"]
    assert chain.tip.height == 0

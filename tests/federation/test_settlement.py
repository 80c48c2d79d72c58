"""Settlement between federation nodes: exact splits, dust, the output cap, the checker."""

from __future__ import annotations

import json
import random

import bitcoin
import bitcoin.core
import pytest
from bitcoin.core.script import OP_RETURN
from hypothesis import given
from hypothesis import strategies as st

from otedama.chain.coinbase import node_commitments
from otedama.chain.merkle import merkle_branch, root_from_branch
from otedama.chain.params import COIN
from otedama.chain.serialize import BlockHeader, Transaction, TxOut
from otedama.chain.target import hash_to_int
from otedama.chain.template import BlockTemplate
from otedama.federation.settlement import (
    DUST_THRESHOLD,
    MAX_OUTPUTS,
    SettlementError,
    check_settlement,
    settlement_coinbase,
    split_reward,
    tolerance,
)
from tests.conftest import VECTORS


def script(n: int) -> bytes:
    """A P2WPKH scriptPubKey distinct per ``n``."""
    return b"\x00\x14" + n.to_bytes(20, "big")


A, B, C, D = script(1), script(2), script(3), script(4)

scripts = st.integers(min_value=0, max_value=200).map(script)
weight_maps = st.dictionaries(scripts, st.integers(min_value=0, max_value=10**30), max_size=90)
rewards = st.integers(min_value=0, max_value=21_000_000 * COIN)


def test_worked_example_of_the_docs() -> None:
    """docs/federation.md: 324,845,678 sat, work A:B:C:D = 40000:35000:24997:3."""
    reward = 312_500_000 + 12_345_678
    weights = {A: 40_000, B: 35_000, C: 24_997, D: 3}
    # D's part, 9,745 sat + the left-over satoshi, is dust: folded into the finder's.
    assert split_reward(reward, weights, A) == [
        (A, 129_948_017),
        (B, 113_695_987),
        (C, 81_201_674),
    ]
    assert split_reward(reward, weights, B) == [
        (B, 113_705_733),
        (A, 129_938_271),
        (C, 81_201_674),
    ]
    selfish = check_settlement([(A, reward)], weights, A)
    assert (selfish.shortfall, selfish.allowed) == (194_897_661, 16_252_283)
    assert selfish.underpaid


def test_a_part_above_the_dust_threshold_keeps_its_output() -> None:
    weights = {A: 50_000, B: 30_000, C: 19_999, D: 1}
    outputs = split_reward(50 * COIN, weights, A)
    assert outputs == [(A, 2_500_000_000), (B, 1_500_000_000), (C, 999_950_000), (D, 50_000)]


def test_rounding_remainders_go_to_the_largest_fractional_parts() -> None:
    assert split_reward(100, {A: 1, B: 1, C: 1}, A, dust_threshold=0) == [
        (A, 34),
        (B, 33),
        (C, 33),
    ]
    # Equal fractional parts: the smaller script gets the satoshi, whoever finds.
    assert split_reward(100, {A: 1, B: 1, C: 1}, C, dust_threshold=0) == [
        (C, 33),
        (A, 34),
        (B, 33),
    ]


def test_a_node_alone_pays_itself_everything() -> None:
    assert split_reward(50 * COIN, {}, A) == [(A, 50 * COIN)]
    assert split_reward(50 * COIN, {A: 7}, A) == [(A, 50 * COIN)]
    assert split_reward(50 * COIN, {B: 0}, A) == [(A, 50 * COIN)]


def test_a_finder_without_part_and_no_dust_gets_no_output() -> None:
    assert split_reward(10 * COIN, {B: 1, C: 1}, A) == [(B, 5 * COIN), (C, 5 * COIN)]


def test_the_smallest_parts_beyond_the_cap_are_folded_into_the_finder() -> None:
    weights = {script(i): 1000 + i for i in range(1, 11)}
    outputs = split_reward(10 * COIN, weights, A, max_outputs=4)
    assert len(outputs) == 4
    assert outputs[0][0] == A
    assert [s for s, _ in outputs[1:]] == [script(10), script(9), script(8)]
    assert sum(amount for _, amount in outputs) == 10 * COIN


@pytest.mark.parametrize(
    ("reward", "weights", "finder"),
    [
        (-1, {}, A),
        (True, {}, A),
        (21_000_001 * COIN, {}, A),
        (1, {A: -1}, A),
        (1, {A: 1.5}, A),
        (1, {b"": 1}, A),
        (1, {}, b""),
    ],
)
def test_impossible_inputs_are_refused(
    reward: int, weights: dict[bytes, int], finder: bytes
) -> None:
    with pytest.raises(SettlementError):
        split_reward(reward, weights, finder)


@given(reward=rewards, weights=weight_maps, finder=scripts)
def test_the_outputs_add_up_to_the_reward_and_respect_dust_and_cap(
    reward: int, weights: dict[bytes, int], finder: bytes
) -> None:
    outputs = split_reward(reward, weights, finder)
    assert sum(amount for _, amount in outputs) == reward
    assert len(outputs) <= MAX_OUTPUTS
    assert len({s for s, _ in outputs}) == len(outputs)
    for out_script, amount in outputs:
        if out_script != finder:
            assert amount >= DUST_THRESHOLD
            assert weights.get(out_script, 0) > 0
    assert outputs[0][0] == finder or all(s != finder for s, _ in outputs)


@given(reward=rewards, weights=weight_maps, finder=scripts)
def test_unfolded_parts_are_within_one_satoshi_of_exact(
    reward: int, weights: dict[bytes, int], finder: bytes
) -> None:
    total = sum(weights.values())
    for out_script, amount in split_reward(reward, weights, finder):
        if out_script != finder:
            exact_floor = reward * weights[out_script] // total
            assert exact_floor <= amount <= exact_floor + 1


@given(
    reward=rewards,
    weights=weight_maps,
    finder=scripts,
    max_outputs=st.integers(min_value=1, max_value=6),
)
def test_the_cap_keeps_the_largest_parts(
    reward: int, weights: dict[bytes, int], finder: bytes, max_outputs: int
) -> None:
    """Every part folded by the cap is no larger than every part that kept its output."""
    outputs = split_reward(reward, weights, finder, dust_threshold=0, max_outputs=max_outputs)
    assert len(outputs) <= max_outputs
    assert sum(amount for _, amount in outputs) == reward
    uncapped = dict(split_reward(reward, weights, finder, dust_threshold=0, max_outputs=10**6))
    kept = {s for s, _ in outputs} - {finder}
    folded = set(uncapped) - kept - {finder}
    if kept and folded:
        assert max(uncapped[s] for s in folded) <= min(uncapped[s] for s in kept)
    for out_script in kept:
        assert dict(outputs)[out_script] == uncapped[out_script]


@given(reward=rewards, weights=weight_maps, finder=scripts, seed=st.integers())
def test_the_split_is_deterministic_and_independent_of_order(
    reward: int, weights: dict[bytes, int], finder: bytes, seed: int
) -> None:
    items = list(weights.items())
    random.Random(seed).shuffle(items)
    shuffled = dict(items)
    assert split_reward(reward, weights, finder) == split_reward(reward, shuffled, finder)
    assert split_reward(reward, weights, finder) == split_reward(reward, dict(weights), finder)


@given(reward=rewards, weights=weight_maps, finder=scripts)
def test_a_coinbase_paying_the_split_is_never_underpaid(
    reward: int, weights: dict[bytes, int], finder: bytes
) -> None:
    outputs = split_reward(reward, weights, finder)
    check = check_settlement(outputs, weights, finder)
    assert check.reward == reward
    assert check.shortfall == 0
    assert not check.underpaid


def test_a_coinbase_paying_only_its_finder_is_underpaid() -> None:
    weights = {A: 10, B: 60, C: 30}
    check = check_settlement([TxOut(50 * COIN, A)], weights, A)
    assert check.shortfall == 45 * COIN
    assert check.underpaid


def test_underpayment_within_the_tolerance_is_accepted() -> None:
    weights = {A: 50, B: 50}
    allowed = tolerance(100 * COIN)
    assert allowed == 5 * COIN + DUST_THRESHOLD
    fair = split_reward(100 * COIN, weights, A)
    assert fair == [(A, 50 * COIN), (B, 50 * COIN)]
    just_inside = [(A, 50 * COIN + allowed), (B, 50 * COIN - allowed)]
    just_outside = [(A, 50 * COIN + allowed + 1), (B, 50 * COIN - allowed - 1)]
    assert not check_settlement(just_inside, weights, A).underpaid
    assert check_settlement(just_outside, weights, A).underpaid


def test_paying_oneself_through_another_script_still_counts_as_reward() -> None:
    """A hidden second output to the finder raises the reward the others are owed."""
    weights = {A: 50, B: 50}
    check = check_settlement([(A, 25 * COIN), (B, 25 * COIN), (D, 50 * COIN)], weights, A)
    assert check.reward == 100 * COIN
    assert check.shortfall == 25 * COIN
    assert check.underpaid


def test_settlement_coinbase_pays_the_split_and_commits_to_the_node() -> None:
    outputs = split_reward(50 * COIN, {A: 1, B: 3}, A)
    parts = settlement_coinbase(101, outputs, b"\x07" * 20, 8, b"/otedama/")
    tx = Transaction.parse(parts.assemble(bytes(8)))
    assert [(o.script_pubkey, o.value) for o in tx.outputs[:-1]] == outputs
    assert node_commitments(tx.outputs) == [b"\x07" * 20]
    assert check_settlement(tx.outputs, {A: 1, B: 3}, A).shortfall == 0


def test_a_block_with_a_settlement_coinbase_passes_bitcoinlib() -> None:
    """Independent check: Core's template, our settlement coinbase with the node-id
    commitment, and python-bitcoinlib's CheckBlock (PoW, merkle root, segwit commitment)."""
    reply = json.loads((VECTORS / "bitcoind" / "templates-with-txs.json").read_text())
    template = BlockTemplate.from_rpc(reply["cases"][0]["getblocktemplate"])
    weights = {A: 5, B: 3, C: 2}
    outputs = split_reward(template.coinbase_value, weights, B)
    extranonce = bytes(12)
    parts = settlement_coinbase(
        template.height,
        outputs,
        b"\x07" * 20,
        len(extranonce),
        b"/otedama/",
        template.default_witness_commitment,
    )
    root = root_from_branch(parts.txid(extranonce), merkle_branch(template.txids))
    for nonce in range(10_000):
        header = BlockHeader(
            template.version, template.prev_hash, root, template.curtime, template.bits, nonce
        )
        if hash_to_int(header.hash()) <= template.target:
            break
    raw = parts.build_block(header, extranonce, [tx.data for tx in template.transactions])
    bitcoin.SelectParams("regtest")
    try:
        theirs = bitcoin.core.CBlock.deserialize(raw)
        bitcoin.core.CheckBlock(theirs, fCheckPoW=True, cur_time=header.time)
    finally:
        bitcoin.SelectParams("mainnet")
    vout = theirs.vtx[0].vout
    assert [(bytes(o.scriptPubKey), o.nValue) for o in vout[: len(outputs)]] == outputs
    assert sum(o.nValue for o in vout) == template.coinbase_value
    assert list(vout[len(outputs)].scriptPubKey) == [OP_RETURN, b"OTDM" + b"\x07" * 20]

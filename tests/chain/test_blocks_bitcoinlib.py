"""Blocks built the pool's way from Core's templates, checked by python-bitcoinlib."""

from __future__ import annotations

from collections.abc import Iterator
from typing import Any

import bitcoin
import bitcoin.core
import pytest
from bitcoin.core.script import CScript
from hypothesis import given
from hypothesis import strategies as st

from otedama.chain.address import address_to_script
from otedama.chain.coinbase import build_coinbase, encode_height
from otedama.chain.merkle import (
    merkle_branch,
    root_from_branch,
    witness_commitment_script,
    witness_merkle_root,
)
from otedama.chain.params import block_subsidy, get_network
from otedama.chain.serialize import Block, BlockHeader, TxOut
from otedama.chain.target import hash_to_int
from otedama.chain.template import BlockTemplate

from .conftest import load_json

LOW = load_json("bitcoind/low-heights.json")
CASES = load_json("bitcoind/templates-with-txs.json")["cases"]
TEMPLATES = [(f"height-{e['height']}", e["getblocktemplate"]) for e in LOW["heights"]] + [
    (c["name"], c["getblocktemplate"]) for c in CASES
]
EXTRANONCE = bytes.fromhex("f000000d") + bytes.fromhex("0102030405060708")


@pytest.fixture(autouse=True)
def _regtest_params() -> Iterator[None]:
    bitcoin.SelectParams("regtest")
    yield
    bitcoin.SelectParams("mainnet")


def _pool_block(reply: dict[str, Any]) -> tuple[BlockTemplate, bytes, BlockHeader]:
    """Build, like the pool does, a block from the template, ground to regtest PoW."""
    template = BlockTemplate.from_rpc(reply)
    payout = address_to_script(LOW["payout_address"], "regtest")
    parts = build_coinbase(
        template.height,
        [TxOut(template.coinbase_value, payout)],
        extranonce_size=len(EXTRANONCE),
        pool_tag=b"/otedama/",
        witness_commitment=template.default_witness_commitment,
    )
    root = root_from_branch(parts.txid(EXTRANONCE), merkle_branch(template.txids))
    for nonce in range(1000):
        header = BlockHeader(
            template.version, template.prev_hash, root, template.curtime, template.bits, nonce
        )
        if hash_to_int(header.hash()) <= template.target:
            break
    raw = parts.build_block(header, EXTRANONCE, [tx.data for tx in template.transactions])
    return template, raw, header


@pytest.mark.parametrize(("name", "reply"), TEMPLATES, ids=[n for n, _ in TEMPLATES])
def test_pool_block_passes_bitcoinlib_checks(name: str, reply: dict[str, Any]) -> None:
    template, raw, header = _pool_block(reply)
    theirs = bitcoin.core.CBlock.deserialize(raw)
    assert theirs.serialize() == raw
    assert theirs.GetHash() == header.hash()
    bitcoin.core.CheckBlock(theirs, fCheckPoW=True, fCheckMerkleRoot=True, cur_time=header.time)
    assert theirs.calc_merkle_root() == header.merkle_root
    witness_root = theirs.calc_witness_merkle_root()
    assert witness_root == witness_merkle_root(template.wtxids)
    index = theirs.get_witness_commitment_index()
    assert index == len(theirs.vtx[0].vout) - 1
    assert bytes(theirs.vtx[0].vout[index].scriptPubKey) == witness_commitment_script(witness_root)
    assert list(theirs.vtx[0].wit.vtxinwit[0].scriptWitness.stack) == [bytes(32)]
    assert [tx.GetTxid() for tx in theirs.vtx[1:]] == template.txids


@pytest.mark.parametrize(("name", "reply"), TEMPLATES, ids=[n for n, _ in TEMPLATES])
def test_pool_block_claims_the_template_value_and_bip34_height(
    name: str, reply: dict[str, Any]
) -> None:
    template, raw, _ = _pool_block(reply)
    block = Block.parse(raw)
    coinbase = block.transactions[0]
    assert sum(out.value for out in coinbase.outputs) == template.coinbase_value
    assert template.coinbase_value == (
        block_subsidy(template.height, get_network("regtest")) + template.total_fees
    )
    script_sig = coinbase.inputs[0].script_sig
    assert script_sig.startswith(bytes(CScript([template.height])))
    assert 2 <= len(script_sig) <= 100
    assert EXTRANONCE in script_sig


def test_pool_block_without_witness_commitment_has_no_witness() -> None:
    reply = dict(LOW["heights"][3]["getblocktemplate"])
    del reply["default_witness_commitment"]
    _, raw, header = _pool_block(reply)
    theirs = bitcoin.core.CBlock.deserialize(raw)
    bitcoin.core.CheckBlock(theirs, fCheckPoW=True, cur_time=header.time)
    assert not theirs.vtx[0].has_witness()


@given(st.integers(min_value=0, max_value=0x7FFFFFFF))
def test_height_push_equals_bitcoinlib_script_number(height: int) -> None:
    assert encode_height(height) == bytes(CScript([height]))


def test_bitcoinlib_rejects_a_block_with_another_templates_commitment() -> None:
    """The independent check is not vacuous: a wrong witness commitment is caught."""
    reply = dict(CASES[1]["getblocktemplate"])
    reply["default_witness_commitment"] = CASES[0]["getblocktemplate"]["default_witness_commitment"]
    _, raw, header = _pool_block(reply)
    theirs = bitcoin.core.CBlock.deserialize(raw)
    with pytest.raises(bitcoin.core.CheckBlockError, match="invalid segwit commitment"):
        bitcoin.core.CheckBlock(theirs, fCheckPoW=True, cur_time=header.time)

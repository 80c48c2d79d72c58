"""Coinbase building and block assembly, reproducing Bitcoin Core's own blocks."""

from __future__ import annotations

from typing import Any

import pytest
from hypothesis import given
from hypothesis import strategies as st

from otedama.chain.coinbase import (
    NODE_COMMITMENT_TAG,
    CoinbaseError,
    assemble_block,
    build_coinbase,
    encode_height,
    node_commitment_output,
    node_commitments,
)
from otedama.chain.hashing import sha256d
from otedama.chain.merkle import merkle_branch, merkle_root, root_from_branch
from otedama.chain.serialize import Block, BlockHeader, Transaction, TxOut
from otedama.chain.template import BlockTemplate

from .conftest import load_json

LOW = load_json("bitcoind/low-heights.json")["heights"]
CASES = load_json("bitcoind/templates-with-txs.json")["cases"]
COMMITMENT = bytes.fromhex("6a24aa21a9ed") + bytes(32)
PAYOUT = TxOut(50, bytes.fromhex("0014") + bytes(20))


@pytest.mark.parametrize(
    ("height", "push"),
    [
        (0, "00"),
        (1, "51"),
        (16, "60"),
        (17, "0111"),
        (127, "017f"),
        (128, "028000"),
        (255, "02ff00"),
        (256, "020001"),
        (32767, "02ff7f"),
        (32768, "03008000"),
        (840_000, "0340d10c"),
        (0x7FFFFFFF, "04ffffff7f"),
    ],
)
def test_height_push_is_the_minimal_script_number(height: int, push: str) -> None:
    assert encode_height(height).hex() == push


@pytest.mark.parametrize("height", [-1, 1 << 31, True])
def test_impossible_heights_are_refused(height: int) -> None:
    with pytest.raises(CoinbaseError, match="block height"):
        encode_height(height)


@pytest.mark.parametrize("entry", LOW, ids=lambda e: f"height-{e['height']}")
def test_height_push_matches_core_at_low_heights(entry: dict[str, Any]) -> None:
    assert encode_height(entry["height"]).hex() == entry["bip34_height_push_hex"]


def _core_coinbase_parts(entry: dict[str, Any]) -> tuple[BlockTemplate, bytes, Any]:
    """Build Core's coinbase from the vector's inputs (payout output, template commitment)."""
    template = BlockTemplate.from_rpc(entry["getblocktemplate"])
    payout = entry["coinbase_outputs"][0]
    parts = build_coinbase(
        template.height,
        [TxOut(payout["value_sat"], bytes.fromhex(payout["script_hex"]))],
        extranonce_size=0,
        witness_commitment=template.default_witness_commitment,
        lock_time=template.height - 1,
        sequence=0xFFFFFFFE,
    )
    return template, parts.assemble(b""), parts


@pytest.mark.parametrize("entry", LOW, ids=lambda e: f"height-{e['height']}")
def test_core_blocks_at_low_heights_are_reproduced_byte_for_byte(entry: dict[str, Any]) -> None:
    template, coinbase, parts = _core_coinbase_parts(entry)
    core_coinbase = Transaction.parse(bytes.fromhex(entry["coinbase_tx_hex"]))
    assert coinbase == core_coinbase.serialize(witness=False)
    assert sha256d(coinbase)[::-1].hex() == entry["coinbase_txid"]
    header = entry["header"]
    built = BlockHeader(
        template.version,
        template.prev_hash,
        merkle_root([sha256d(coinbase)]),
        header["time"],
        template.bits,
        header["nonce"],
    )
    assert built.serialize().hex() == header["header_hex"]
    assert built.hash()[::-1].hex() == entry["block_hash"]
    block = parts.build_block(built, b"", [])
    assert block.hex() == entry["block_hex"]


@pytest.mark.parametrize("case", CASES, ids=lambda c: c["name"])
def test_core_blocks_with_mempool_txs_are_reproduced_byte_for_byte(case: dict[str, Any]) -> None:
    template, coinbase, _ = _core_coinbase_parts(case)
    assert sha256d(coinbase)[::-1].hex() == case["coinbase_txid"]
    header = case["header"]
    built = BlockHeader(
        template.version,
        template.prev_hash,
        root_from_branch(sha256d(coinbase), merkle_branch(template.txids)),
        header["time"],
        template.bits,
        header["nonce"],
    )
    assert built.serialize().hex() == header["header_hex"]
    block = assemble_block(built, coinbase, [tx.data for tx in template.transactions], True)
    assert block.hex() == case["generateblock"]["hex"]


@pytest.mark.parametrize("case", CASES, ids=lambda c: c["name"])
def test_pool_style_block_is_reproduced_with_extranonce_and_tag(case: dict[str, Any]) -> None:
    template = BlockTemplate.from_rpc(case["getblocktemplate"])
    pool = case["pool_style_block"]
    parts = build_coinbase(
        template.height,
        [TxOut(template.coinbase_value, bytes.fromhex(pool["payout_script_hex"]))],
        extranonce_size=8,
        pool_tag=b"/otedama-vectors/",
        witness_commitment=template.default_witness_commitment,
    )
    extranonce = bytes(range(1, 9))
    assert parts.txid(extranonce)[::-1].hex() == pool["coinbase_txid"]
    header = pool["header"]
    built = BlockHeader(
        header["version"],
        template.prev_hash,
        root_from_branch(parts.txid(extranonce), merkle_branch(template.txids)),
        header["time"],
        template.bits,
        header["nonce"],
    )
    assert built.hash()[::-1].hex() == pool["block_hash"]
    block = parts.build_block(built, extranonce, [tx.data for tx in template.transactions])
    assert block.hex() == pool["block_hex"]


def test_coinb1_and_coinb2_surround_the_extranonce_push() -> None:
    parts = build_coinbase(300, [PAYOUT], 12, pool_tag=b"/otedama/")
    raw = parts.assemble(b"\xaa" * 12)
    assert raw[: len(parts.coinb1)] == parts.coinb1
    assert parts.coinb1.endswith(b"\x0c")  # push of 12 bytes
    tx = Transaction.parse(raw)
    assert tx.inputs[0].script_sig == encode_height(300) + b"\x0c" + b"\xaa" * 12 + b"\x09/otedama/"
    assert tx.outputs == (PAYOUT,)
    assert tx.version == 2 and tx.lock_time == 0 and tx.inputs[0].sequence == 0xFFFFFFFF


def test_witness_commitment_is_the_last_output_with_zero_value() -> None:
    parts = build_coinbase(5, [PAYOUT, PAYOUT], 8, witness_commitment=COMMITMENT)
    tx = parts.transaction(bytes(8))
    assert tx.outputs[-1] == TxOut(0, COMMITMENT)
    assert len(tx.outputs) == 3
    assert parts.has_witness_commitment


def test_block_without_commitment_has_no_coinbase_witness() -> None:
    parts = build_coinbase(5, [PAYOUT], 4)
    header = BlockHeader(1, bytes(32), parts.txid(bytes(4)), 0, 0x207FFFFF, 0)
    block = Block.parse(parts.build_block(header, bytes(4), []))
    assert not block.transactions[0].has_witness


def test_block_with_commitment_carries_the_witness_reserved_value() -> None:
    parts = build_coinbase(5, [PAYOUT], 4, witness_commitment=COMMITMENT)
    header = BlockHeader(1, bytes(32), parts.txid(bytes(4)), 0, 0x207FFFFF, 0)
    block = Block.parse(parts.build_block(header, bytes(4), []))
    assert block.transactions[0].inputs[0].witness == (bytes(32),)
    assert block.transactions[0].txid() == parts.txid(bytes(4))


def test_script_sig_length_limits_are_enforced() -> None:
    # Height 1 (OP_1) with no extranonce room and no tag: OP_1 OP_0 is 2 bytes, the minimum.
    assert build_coinbase(1, [PAYOUT], 0).assemble(b"")
    with pytest.raises(CoinbaseError, match="would be 101 bytes"):
        build_coinbase(1, [PAYOUT], 8, pool_tag=b"x" * 89)
    assert build_coinbase(1, [PAYOUT], 8, pool_tag=b"x" * 88)


def test_bad_inputs_are_refused_with_the_value() -> None:
    with pytest.raises(CoinbaseError, match="extranonce is 3 bytes, the coinbase has room for 4"):
        build_coinbase(5, [PAYOUT], 4).assemble(b"abc")
    with pytest.raises(CoinbaseError, match="at least one output"):
        build_coinbase(5, [], 4)
    with pytest.raises(CoinbaseError, match="witness commitment script 6a"):
        build_coinbase(5, [PAYOUT], 4, witness_commitment=b"\x6a\x01\x00")
    with pytest.raises(CoinbaseError, match="output 0 has negative value"):
        build_coinbase(5, [TxOut(-1, b"")], 4)


def test_assemble_block_refuses_a_non_coinbase_and_a_short_header() -> None:
    tx = Transaction.parse(bytes.fromhex(CASES[0]["getblocktemplate"]["transactions"][0]["data"]))
    with pytest.raises(CoinbaseError, match="not a coinbase"):
        assemble_block(bytes(80), tx.serialize(witness=False), [], False)
    with pytest.raises(CoinbaseError, match="80 bytes, got 79"):
        assemble_block(bytes(79), b"", [], False)
    with pytest.raises(CoinbaseError, match="does not parse"):
        assemble_block(bytes(80), b"\x01", [], False)


@given(
    height=st.integers(min_value=0, max_value=0x7FFFFFFF),
    extranonce=st.binary(min_size=0, max_size=32),
    tag=st.binary(max_size=40),
    values=st.lists(st.integers(min_value=0, max_value=21 * 10**14), min_size=1, max_size=5),
)
def test_any_coinbase_parses_and_keeps_its_height_push(
    height: int, extranonce: bytes, tag: bytes, values: list[int]
) -> None:
    outputs = [TxOut(v, bytes([0x51])) for v in values]
    parts = build_coinbase(
        height, outputs, len(extranonce), pool_tag=tag, witness_commitment=COMMITMENT
    )
    tx = Transaction.parse(parts.assemble(extranonce))
    script = tx.inputs[0].script_sig
    assert script.startswith(encode_height(height))
    assert extranonce in script
    assert 2 <= len(script) <= 100
    assert [o.value for o in tx.outputs] == [*values, 0]


def test_long_extranonce_uses_pushdata1() -> None:
    parts = build_coinbase(1, [PAYOUT], 80)
    assert parts.coinb1.endswith(b"\x4c\x50")
    script = parts.transaction(b"\x07" * 80).inputs[0].script_sig
    assert script == b"\x51\x4c\x50" + b"\x07" * 80


def test_node_commitment_is_an_op_return_of_the_tag_and_node_id() -> None:
    node_id = bytes(range(20))
    out = node_commitment_output(node_id)
    assert out.value == 0
    assert out.script_pubkey == b"\x6a\x18" + NODE_COMMITMENT_TAG + node_id


def test_node_commitment_survives_a_built_coinbase() -> None:
    """The commitment goes through build_coinbase and is found again in the parsed tx."""
    node_id = b"\x42" * 32
    parts = build_coinbase(
        300, [PAYOUT, node_commitment_output(node_id)], 8, b"/otedama/", COMMITMENT
    )
    tx = parts.transaction(bytes(8))
    assert node_commitments(tx.outputs) == [node_id]


@pytest.mark.parametrize(
    "script",
    [
        COMMITMENT,  # the witness commitment is an OP_RETURN too
        b"\x6a\x04" + NODE_COMMITMENT_TAG,  # empty node id
        b"\x6a\x08OTDX" + bytes(4),  # another tag
        b"\x6a\x08" + NODE_COMMITMENT_TAG + bytes(4) + b"\x00",  # trailing byte
        b"\x6a\x4c\x08" + NODE_COMMITMENT_TAG + bytes(4),  # non-minimal push
        b"\x6a",
        b"",
    ],
)
def test_scripts_resembling_a_commitment_are_not_one(script: bytes) -> None:
    assert node_commitments([TxOut(0, script)]) == []


@pytest.mark.parametrize("node_id", [b"", bytes(33)])
def test_node_ids_of_impossible_sizes_are_refused(node_id: bytes) -> None:
    with pytest.raises(CoinbaseError, match="node id"):
        node_commitment_output(node_id)

"""Merkle root, Stratum branch and witness commitment against Core's blocks."""

from __future__ import annotations

import pytest
from hypothesis import given
from hypothesis import strategies as st

from otedama.chain.hashing import sha256d
from otedama.chain.merkle import (
    merkle_branch,
    merkle_root,
    root_from_branch,
    witness_commitment_script,
    witness_merkle_root,
)
from otedama.chain.template import BlockTemplate

from .conftest import load_json

TEMPLATE_CASES = load_json("bitcoind/templates-with-txs.json")["cases"]


def _internal(display: str) -> bytes:
    return bytes.fromhex(display)[::-1]


def test_merkle_root_of_one_hash_is_that_hash_and_of_none_is_zero() -> None:
    h = sha256d(b"x")
    assert merkle_root([h]) == h
    assert merkle_root([]) == bytes(32)


def test_odd_levels_repeat_their_last_hash() -> None:
    a, b, c = (sha256d(bytes([i])) for i in range(3))
    assert merkle_root([a, b, c]) == sha256d(sha256d(a + b) + sha256d(c + c))


@pytest.mark.parametrize("case", TEMPLATE_CASES, ids=lambda c: c["name"])
def test_merkle_root_and_branch_match_cores_block(case: dict[str, object]) -> None:
    txids = [_internal(t) for t in case["template_order_txids"]]  # type: ignore[attr-defined]
    coinbase = _internal(case["coinbase_txid"])  # type: ignore[arg-type]
    root = merkle_root([coinbase, *txids])
    assert root == bytes.fromhex(case["merkle_root_header_hex"])  # type: ignore[arg-type]
    branch = merkle_branch(txids)
    assert [s.hex() for s in branch] == case["stratum_merkle_branch"]
    assert root_from_branch(coinbase, branch) == root


@pytest.mark.parametrize("case", TEMPLATE_CASES, ids=lambda c: c["name"])
def test_witness_commitment_matches_the_template_default(case: dict[str, object]) -> None:
    template = BlockTemplate.from_rpc(case["getblocktemplate"])  # type: ignore[arg-type]
    witness = case["witness"]
    root = witness_merkle_root(template.wtxids)
    assert root.hex() == witness["witness_merkle_root_header_hex"]  # type: ignore[index]
    assert witness_commitment_script(root) == template.default_witness_commitment


def test_empty_block_commitment_matches_core_at_height_1() -> None:
    first = load_json("bitcoind/low-heights.json")["heights"][0]
    script = witness_commitment_script(witness_merkle_root([]))
    assert script.hex() == first["getblocktemplate"]["default_witness_commitment"]


@given(
    st.lists(st.binary(min_size=32, max_size=32), max_size=40), st.binary(min_size=32, max_size=32)
)
def test_branch_always_rebuilds_the_full_root(txids: list[bytes], coinbase: bytes) -> None:
    assert root_from_branch(coinbase, merkle_branch(txids)) == merkle_root([coinbase, *txids])


def test_bad_hash_lengths_are_refused_with_their_position() -> None:
    with pytest.raises(ValueError, match="txid 1 must be 32 bytes"):
        merkle_branch([bytes(32), b"\x00"])

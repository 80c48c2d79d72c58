"""Property tests: serialization round trips, cross-checked with python-bitcoinlib."""

from __future__ import annotations

from typing import Any

import bitcoin.core
import pytest
from hypothesis import given, settings
from hypothesis import strategies as st

from otedama.chain.hashing import sha256d
from otedama.chain.merkle import merkle_root
from otedama.chain.params import get_network
from otedama.chain.serialize import (
    Block,
    BlockHeader,
    SerializationError,
    Transaction,
    TxIn,
    TxOut,
)

from .conftest import load_json

U32 = st.integers(min_value=0, max_value=0xFFFFFFFF)
HASH = st.binary(min_size=32, max_size=32)
SCRIPT = st.binary(max_size=120)
WITNESS = st.lists(st.binary(max_size=80), max_size=4).map(tuple)


def tx_ins(with_witness: bool) -> st.SearchStrategy[TxIn]:
    return st.builds(TxIn, HASH, U32, SCRIPT, U32, WITNESS if with_witness else st.just(()))


TX_OUTS = st.builds(TxOut, st.integers(min_value=0, max_value=21 * 10**14), SCRIPT)


@st.composite
def transactions(draw: st.DrawFn, witness: bool | None = None) -> Transaction:
    """Transactions with at least one input (zero inputs collide with the BIP144 marker)."""
    with_witness = draw(st.booleans()) if witness is None else witness
    inputs = draw(st.lists(tx_ins(with_witness), min_size=1, max_size=4))
    if with_witness and not any(txin.witness for txin in inputs):
        first = inputs[0]
        inputs[0] = TxIn(
            first.prev_hash, first.prev_index, first.script_sig, first.sequence, (b"w",)
        )
    outputs = draw(st.lists(TX_OUTS, max_size=4))
    return Transaction(draw(U32), tuple(inputs), tuple(outputs), draw(U32))


HEADERS = st.builds(BlockHeader, U32, HASH, HASH, U32, U32, U32)


@given(transactions())
def test_transactions_round_trip_with_and_without_witness(tx: Transaction) -> None:
    assert Transaction.parse(tx.serialize()) == tx
    stripped = Transaction.parse(tx.serialize(witness=False))
    assert stripped.txid() == tx.txid()
    assert not stripped.has_witness
    assert (tx.wtxid() == tx.txid()) == (not tx.has_witness)


@given(transactions())
def test_transactions_agree_with_python_bitcoinlib(tx: Transaction) -> None:
    raw = tx.serialize()
    theirs = bitcoin.core.CTransaction.deserialize(raw)
    assert theirs.serialize() == raw
    assert theirs.GetTxid() == tx.txid()
    assert theirs.has_witness() == tx.has_witness


@given(transactions(witness=True), st.integers(min_value=0, max_value=10_000))
def test_truncated_transactions_raise_serialization_error(tx: Transaction, cut: int) -> None:
    raw = tx.serialize()
    cut %= len(raw)
    with pytest.raises(SerializationError):
        Transaction.parse(raw[:cut])


@given(HEADERS)
def test_headers_round_trip_and_hash_like_bitcoinlib(header: BlockHeader) -> None:
    raw = header.serialize()
    assert len(raw) == 80
    assert BlockHeader.parse(raw) == header
    assert bitcoin.core.CBlockHeader.deserialize(raw).GetHash() == header.hash()


@settings(max_examples=50)
@given(HEADERS, st.lists(transactions(), min_size=1, max_size=5))
def test_blocks_round_trip(header: BlockHeader, txs: list[Transaction]) -> None:
    block = Block(header, tuple(txs))
    raw = block.serialize()
    assert Block.parse(raw) == block
    assert bitcoin.core.CBlock.deserialize(raw).serialize() == raw


@given(st.binary(max_size=300))
def test_random_bytes_never_crash_the_parsers(data: bytes) -> None:
    for parse in (Transaction.parse, Block.parse, BlockHeader.parse):
        try:
            parse(data)
        except SerializationError:
            pass


@pytest.mark.parametrize(
    "row", load_json("bitcoin-core-data/blockfilters.json")[1:], ids=lambda r: f"height-{r[0]}"
)
def test_testnet3_blocks_parse_hash_and_reserialize(row: list[Any]) -> None:
    raw = bytes.fromhex(row[2])
    block = Block.parse(raw)
    assert block.serialize() == raw
    assert block.hash()[::-1].hex() == row[1]
    assert merkle_root([tx.txid() for tx in block.transactions]) == block.header.merkle_root
    if row[0] == 0:
        assert block.hash() == get_network("testnet").genesis_hash
    assert sha256d(block.header.serialize()) == block.hash()

"""Wire serialization: varints, transactions (legacy and BIP144), headers, blocks."""

from __future__ import annotations

import pytest
from hypothesis import given
from hypothesis import strategies as st

from otedama.chain.merkle import merkle_root
from otedama.chain.serialize import (
    Block,
    BlockHeader,
    SerializationError,
    Transaction,
    TxIn,
    TxOut,
    encode_varint,
    push_data,
    read_varint,
)

from .conftest import VECTORS, load_json

# --- varints -------------------------------------------------------------------------


@pytest.mark.parametrize(
    ("value", "encoded"),
    [
        (0, "00"),
        (0xFC, "fc"),
        (0xFD, "fdfd00"),
        (0xFFFF, "fdffff"),
        (0x10000, "fe00000100"),
        (0xFFFFFFFF, "feffffffff"),
        (0x100000000, "ff0000000001000000"),
        ((1 << 64) - 1, "ffffffffffffffffff"),
    ],
)
def test_varint_uses_the_shortest_compact_size_form(value: int, encoded: str) -> None:
    assert encode_varint(value).hex() == encoded
    assert read_varint(bytes.fromhex(encoded), 0) == (value, len(encoded) // 2)


@given(st.integers(min_value=0, max_value=(1 << 64) - 1), st.binary(max_size=4))
def test_varint_round_trips_at_any_offset(value: int, prefix: bytes) -> None:
    data = prefix + encode_varint(value) + b"tail"
    assert read_varint(data, len(prefix)) == (value, len(data) - 4)


@pytest.mark.parametrize("encoded", ["fdfc00", "feffff0000", "ffffffffff00000000"])
def test_non_canonical_varint_is_refused(encoded: str) -> None:
    with pytest.raises(SerializationError, match="non-canonical"):
        read_varint(bytes.fromhex(encoded))


def test_truncated_varint_says_how_many_bytes_are_missing() -> None:
    with pytest.raises(SerializationError, match="needs 2 more bytes, 1 left"):
        read_varint(b"\xfd\x01")
    with pytest.raises(SerializationError, match="no bytes left"):
        read_varint(b"", 0)


def test_varint_refuses_negative_and_huge_values() -> None:
    with pytest.raises(ValueError, match="negative"):
        encode_varint(-1)
    with pytest.raises(ValueError, match="2\\*\\*64"):
        encode_varint(1 << 64)


def test_push_data_picks_the_minimal_opcode() -> None:
    assert push_data(b"") == b"\x00"
    assert push_data(b"\x01" * 75)[:1] == b"\x4b"
    assert push_data(b"\x01" * 76)[:2] == b"\x4c\x4c"
    assert push_data(b"\x01" * 256)[:3] == b"\x4d\x00\x01"
    assert push_data(b"\x01" * 65536)[:5] == b"\x4e\x00\x00\x01\x00"


# --- transactions --------------------------------------------------------------------

# A real segwit transaction from the templates vector, and Core's coinbase at height 1.
CORE_COINBASE_H1 = load_json("bitcoind/low-heights.json")["heights"][0]["coinbase_tx_hex"]


def test_core_coinbase_parses_with_its_witness_and_txid() -> None:
    raw = bytes.fromhex(CORE_COINBASE_H1)
    tx = Transaction.parse(raw)
    assert tx.version == 2
    assert tx.has_witness
    assert tx.inputs[0].script_sig == b"\x51\x00"
    assert tx.inputs[0].sequence == 0xFFFFFFFE
    assert tx.inputs[0].witness == (bytes(32),)
    assert [o.value for o in tx.outputs] == [5_000_000_000, 0]
    assert tx.serialize() == raw
    assert (
        tx.txid()[::-1].hex() == "840dc5319e180c9a29a1906cccd109034339107efc233490ca1dc0cb5d38d65a"
    )
    stripped = tx.serialize(witness=False)
    assert Transaction.parse(stripped).has_witness is False
    assert tx.wtxid() != tx.txid()


def test_template_transactions_reproduce_core_txids_and_wtxids() -> None:
    for case in load_json("bitcoind/templates-with-txs.json")["cases"]:
        for entry in case["getblocktemplate"]["transactions"]:
            tx = Transaction.parse(bytes.fromhex(entry["data"]))
            assert tx.serialize().hex() == entry["data"]
            assert tx.txid()[::-1].hex() == entry["txid"]
            assert tx.wtxid()[::-1].hex() == entry["hash"]


@pytest.mark.parametrize(
    ("hex_data", "message"),
    [
        ("", "truncated version"),
        ("01000000", "input count"),
        ("0100000001", "is more than the"),
        ("010000000000", "flag 0x00"),
    ],
)
def test_malformed_transactions_name_what_is_wrong(hex_data: str, message: str) -> None:
    with pytest.raises(SerializationError, match=message):
        Transaction.parse(bytes.fromhex(hex_data))


def test_trailing_bytes_after_a_transaction_are_refused() -> None:
    raw = bytes.fromhex(CORE_COINBASE_H1) + b"\x00"
    with pytest.raises(SerializationError, match="1 trailing bytes"):
        Transaction.parse(raw)


def test_unknown_witness_flag_bits_are_refused() -> None:
    tx = Transaction(1, (TxIn(bytes(32), 0, b"", 0),), (TxOut(1, b"\x51"),), 0)
    legacy = tx.serialize()
    with pytest.raises(SerializationError, match="unknown witness flag bits 0x02"):
        Transaction.parse(legacy[:4] + b"\x00\x02" + legacy[4:])


def test_witness_flag_with_only_empty_witnesses_is_refused() -> None:
    tx = Transaction(1, (TxIn(bytes(32), 0, b"", 0),), (TxOut(1, b"\x51"),), 0)
    legacy = tx.serialize()
    extended = legacy[:4] + b"\x00\x01" + legacy[4:-4] + b"\x00" + legacy[-4:]
    with pytest.raises(SerializationError, match="superfluous witness"):
        Transaction.parse(extended)


def test_construction_refuses_out_of_range_fields() -> None:
    with pytest.raises(ValueError, match="prev_hash must be 32 bytes"):
        TxIn(b"\x00", 0, b"", 0)
    with pytest.raises(ValueError, match="sequence"):
        TxIn(bytes(32), 0, b"", 1 << 32)
    with pytest.raises(ValueError, match="value"):
        TxOut(1 << 63, b"")
    with pytest.raises(ValueError, match="version"):
        BlockHeader(-1, bytes(32), bytes(32), 0, 0, 0)


# --- headers and blocks --------------------------------------------------------------


def test_block_413567_parses_and_reserializes_byte_for_byte() -> None:
    raw = (VECTORS / "bitcoin-core-data" / "block413567.raw").read_bytes()
    facts = load_json("bitcoin-core-data/block413567.json")
    block = Block.parse(raw)
    assert block.serialize() == raw
    assert len(block.transactions) == facts["tx_count"]
    assert block.hash()[::-1].hex() == facts["hash"]
    assert block.header.serialize().hex() == facts["header"]["header_hex"]
    assert block.header.bits == int(facts["header"]["bits"], 16)
    txids = [tx.txid() for tx in block.transactions]
    assert txids[0][::-1].hex() == facts["coinbase_txid"]
    assert txids[-1][::-1].hex() == facts["last_txid"]
    assert merkle_root(txids) == block.header.merkle_root
    assert merkle_root(txids)[::-1].hex() == facts["merkle_root"]


def test_header_parse_needs_exactly_80_bytes() -> None:
    with pytest.raises(SerializationError, match="80 bytes, got 79"):
        BlockHeader.parse(bytes(79))


def test_block_with_trailing_garbage_is_refused() -> None:
    raw = bytes.fromhex(load_json("bitcoind/low-heights.json")["heights"][0]["block_hex"])
    assert Block.parse(raw).serialize() == raw
    with pytest.raises(SerializationError, match="block: 2 trailing bytes"):
        Block.parse(raw + b"\x00\x00")
    with pytest.raises(SerializationError, match="block transaction 0"):
        Block.parse(raw[:100])

"""Block building for the devnet tests: a block from a getblocktemplate reply, ground
against the target, and tampered variants re-ground so each isolates one defect."""

from __future__ import annotations

from dataclasses import replace
from typing import Any

from otedama.chain.coinbase import build_coinbase
from otedama.chain.hashing import sha256d
from otedama.chain.merkle import merkle_root, witness_commitment_script, witness_merkle_root
from otedama.chain.serialize import Block, BlockHeader, Transaction, TxIn, TxOut
from otedama.chain.target import hash_to_int

SCRIPT = bytes.fromhex("0014") + bytes(range(20))
"""A P2WPKH output script the tests pay their coinbases to."""


def grind(header: BlockHeader, target: int, meet: bool = True) -> BlockHeader:
    """The header with the first nonce whose hash meets (or, with ``meet`` False, misses)
    ``target``."""
    prefix = header.serialize()[:76]
    for nonce in range(1 << 32):
        ok = hash_to_int(sha256d(prefix + nonce.to_bytes(4, "little"))) <= target
        if ok == meet:
            return replace(header, nonce=nonce)
    raise AssertionError("nonce space exhausted")


def coinbase_for(
    height: int, value: int, commitment: bytes | None, script: bytes = SCRIPT, tag: bytes = b""
) -> Transaction:
    """Core-shaped coinbase (witness reserved value present when there is a commitment)."""
    parts = build_coinbase(
        height,
        [TxOut(value, script)],
        4,
        pool_tag=tag,
        witness_commitment=commitment,
        lock_time=0,
        sequence=0xFFFFFFFF,
    )
    tx = parts.transaction(bytes(4))
    if commitment is None:
        return tx
    txin = tx.inputs[0]
    return replace(tx, inputs=(replace(txin, witness=(bytes(32),)),))


def block_from_template(
    template: dict[str, Any],
    script: bytes = SCRIPT,
    *,
    coinbase: Transaction | None = None,
    time: int | None = None,
    version: int | None = None,
    bits: int | None = None,
    prev: bytes | None = None,
    merkle: bytes | None = None,
    transactions: list[Transaction] | None = None,
    meet: bool = True,
    target: int | None = None,
) -> Block:
    """A block built from a getblocktemplate reply (overrides change one field each)."""
    height = template["height"]
    commitment = bytes.fromhex(template["default_witness_commitment"])
    if transactions is None:
        transactions = [
            Transaction.parse(bytes.fromhex(t["data"])) for t in template["transactions"]
        ]
    else:
        commitment = witness_commitment_script(
            witness_merkle_root([tx.wtxid() for tx in transactions])
        )
    if coinbase is None:
        coinbase = coinbase_for(height, template["coinbasevalue"], commitment, script)
    txs = [coinbase, *transactions]
    root = merkle if merkle is not None else merkle_root([tx.txid() for tx in txs])
    header = BlockHeader(
        version if version is not None else template["version"],
        prev if prev is not None else bytes.fromhex(template["previousblockhash"])[::-1],
        root,
        time if time is not None else template["curtime"],
        bits if bits is not None else int(template["bits"], 16),
        0,
    )
    limit = target if target is not None else int(template["target"], 16)
    return Block(grind(header, limit, meet), tuple(txs))


def spend(prev_txid: bytes, index: int, value: int, script: bytes = SCRIPT) -> Transaction:
    """A one-input, one-output transaction with a dummy witness (signatures are not checked)."""
    return Transaction(
        2,
        (TxIn(prev_txid, index, b"", 0xFFFFFFFF, (bytes(71), bytes(33))),),
        (TxOut(value, script),),
        0,
    )

"""The coinbase transaction a pool builds, split around the miner's extranonces.

Layout of the scriptSig (2-100 bytes, as consensus requires)::

    BIP34 height push | push opcode for N bytes | extranonce1||extranonce2 (N bytes) | push(pool tag)

so the scriptSig is a well-formed script whatever the extranonce holds. ``coinb1`` ends
with the extranonce's push opcode and ``coinb2`` starts right after the extranonce; both
are pieces of the non-witness serialization (what Stratum miners hash). With extranonce
size 0 and no tag the scriptSig is ``height push || OP_0``, exactly Bitcoin Core's own.
"""

from __future__ import annotations

from collections.abc import Sequence
from dataclasses import dataclass

from otedama.chain.hashing import sha256d
from otedama.chain.merkle import WITNESS_COMMITMENT_HEADER
from otedama.chain.serialize import (
    BlockHeader,
    SerializationError,
    Transaction,
    TxIn,
    TxOut,
    encode_varint,
    push_data,
)

__all__ = [
    "MAX_NODE_ID_SIZE",
    "MAX_SCRIPT_SIG",
    "MIN_SCRIPT_SIG",
    "NODE_COMMITMENT_TAG",
    "WITNESS_RESERVED_VALUE",
    "CoinbaseError",
    "CoinbaseParts",
    "assemble_block",
    "build_coinbase",
    "encode_height",
    "node_commitment_output",
    "node_commitments",
]

MIN_SCRIPT_SIG = 2
MAX_SCRIPT_SIG = 100
"""Consensus bounds on a coinbase scriptSig's length (``bad-cb-length``)."""

WITNESS_RESERVED_VALUE = bytes(32)
"""The coinbase witness that BIP141 commitments are computed with."""

_NULL_PREVOUT = bytes(32)

NODE_COMMITMENT_TAG = b"OTDM"
"""Prefix of the federation node-id commitment: ``OP_RETURN push(b"OTDM" || node id)``."""

MAX_NODE_ID_SIZE = 32
"""Longest node id a commitment carries (the whole push stays within 75 bytes)."""

_OP_RETURN = 0x6A


class CoinbaseError(ValueError):
    """A coinbase that cannot be built or assembled; the message says which value is wrong."""


def encode_height(height: int) -> bytes:
    """BIP34 height as Core's ``CScript() << height``: ``OP_0`` for 0, ``OP_1``..``OP_16``
    for 1-16, else a minimal push of the little-endian script number."""
    if not isinstance(height, int) or isinstance(height, bool) or not 0 <= height <= 0x7FFFFFFF:
        raise CoinbaseError(f"block height must be 0..2**31-1, got {height!r}")
    if height == 0:
        return b"\x00"
    if height <= 16:
        return bytes((0x50 + height,))
    number = height.to_bytes((height.bit_length() + 7) // 8, "little")
    if number[-1] & 0x80:
        number += b"\x00"  # keep the script number positive
    return push_data(number)


def node_commitment_output(node_id: bytes) -> TxOut:
    """The zero-value output committing a coinbase to a federation node:
    ``OP_RETURN push(NODE_COMMITMENT_TAG || node_id)``.

    The header's proof of work covers the coinbase through the merkle root, so a share
    whose coinbase carries this output can only be claimed by ``node_id``.
    """
    if not isinstance(node_id, bytes) or not 1 <= len(node_id) <= MAX_NODE_ID_SIZE:
        raise CoinbaseError(f"node id must be 1..{MAX_NODE_ID_SIZE} bytes, got {node_id!r}")
    return TxOut(0, bytes((_OP_RETURN,)) + push_data(NODE_COMMITMENT_TAG + node_id))


def node_commitments(outputs: Sequence[TxOut]) -> list[bytes]:
    """The node ids committed to by ``outputs`` (see ``node_commitment_output``), in
    output order. Scripts that merely resemble a commitment (other pushes, trailing
    bytes, an empty id) are not commitments."""
    found: list[bytes] = []
    tag = NODE_COMMITMENT_TAG
    for out in outputs:
        script = out.script_pubkey
        if len(script) < 2 or script[0] != _OP_RETURN:
            continue
        size = script[1]
        if not len(tag) < size <= len(tag) + MAX_NODE_ID_SIZE or len(script) != 2 + size:
            continue
        data = script[2:]
        if data.startswith(tag):
            found.append(data[len(tag) :])
    return found


def _push_opcode(size: int) -> bytes:
    """The opcode(s) pushing ``size`` bytes (the data itself left out)."""
    return push_data(bytes(size))[:-size] if size else b"\x00"


@dataclass(frozen=True)
class CoinbaseParts:
    """A coinbase split for Stratum: ``coinb1 || extranonce || coinb2`` is the transaction
    without witness. ``witness_commitment`` is the commitment output script, if any."""

    coinb1: bytes
    coinb2: bytes
    extranonce_size: int
    height: int
    outputs: tuple[TxOut, ...]
    witness_commitment: bytes | None = None

    @property
    def has_witness_commitment(self) -> bool:
        """Whether the block needs the witness reserved value in the coinbase witness."""
        return self.witness_commitment is not None

    def assemble(self, extranonce: bytes) -> bytes:
        """The coinbase (non-witness serialization) with ``extranonce`` (extranonce1 ||
        extranonce2) in its place; its sha256d is the coinbase txid."""
        if len(extranonce) != self.extranonce_size:
            raise CoinbaseError(
                f"extranonce is {len(extranonce)} bytes, the coinbase has room for "
                f"{self.extranonce_size}"
            )
        return self.coinb1 + extranonce + self.coinb2

    def txid(self, extranonce: bytes) -> bytes:
        """The coinbase txid (internal order) for ``extranonce``."""
        return sha256d(self.assemble(extranonce))

    def transaction(self, extranonce: bytes) -> Transaction:
        """The coinbase as a ``Transaction`` (without its witness)."""
        return Transaction.parse(self.assemble(extranonce))

    def build_block(
        self, header: BlockHeader | bytes, extranonce: bytes, transactions_data: Sequence[bytes]
    ) -> bytes:
        """The full block for ``submitblock``: ``assemble_block`` with this coinbase."""
        return assemble_block(
            header, self.assemble(extranonce), transactions_data, self.has_witness_commitment
        )


def build_coinbase(
    height: int,
    outputs: Sequence[TxOut],
    extranonce_size: int,
    pool_tag: bytes = b"",
    witness_commitment: bytes | None = None,
    lock_time: int = 0,
    sequence: int = 0xFFFFFFFF,
    *,
    version: int = 2,
) -> CoinbaseParts:
    """Build the coinbase for a block at ``height`` paying ``outputs`` (satoshis).

    ``extranonce_size`` is len(extranonce1) + len(extranonce2). ``witness_commitment`` is
    the output script from GBT's ``default_witness_commitment``; it is added as the last
    output, with value 0.
    """
    if not 0 <= extranonce_size <= MAX_SCRIPT_SIG:
        raise CoinbaseError(f"extranonce size must be 0..{MAX_SCRIPT_SIG}, got {extranonce_size}")
    if not isinstance(pool_tag, bytes):
        raise CoinbaseError(f"pool tag must be bytes, got {pool_tag!r}")
    prefix = encode_height(height) + _push_opcode(extranonce_size)
    suffix = push_data(pool_tag) if pool_tag else b""
    script_len = len(prefix) + extranonce_size + len(suffix)
    if not MIN_SCRIPT_SIG <= script_len <= MAX_SCRIPT_SIG:
        raise CoinbaseError(
            f"coinbase scriptSig would be {script_len} bytes (height push {len(encode_height(height))}, "
            f"extranonce {extranonce_size}, pool tag {len(pool_tag)}); consensus allows "
            f"{MIN_SCRIPT_SIG}-{MAX_SCRIPT_SIG}: shorten the pool tag or the extranonce"
        )
    all_outputs = list(outputs)
    for i, out in enumerate(all_outputs):
        if not isinstance(out, TxOut):
            raise CoinbaseError(f"coinbase output {i} must be a TxOut, got {out!r}")
        if out.value < 0:
            raise CoinbaseError(f"coinbase output {i} has negative value {out.value}")
    if witness_commitment is not None:
        if len(witness_commitment) < 38 or not witness_commitment.startswith(
            WITNESS_COMMITMENT_HEADER
        ):
            raise CoinbaseError(
                f"witness commitment script {witness_commitment.hex()} does not start with "
                f"{WITNESS_COMMITMENT_HEADER.hex()} followed by 32 bytes"
            )
        all_outputs.append(TxOut(0, witness_commitment))
    if not all_outputs:
        raise CoinbaseError("a coinbase needs at least one output")
    # Build the transaction once with a zero extranonce, then cut it around the gap: the
    # serializer stays the single source of the byte layout.
    script_sig = prefix + bytes(extranonce_size) + suffix
    tx = Transaction(
        version=version,
        inputs=(TxIn(_NULL_PREVOUT, 0xFFFFFFFF, script_sig, sequence),),
        outputs=tuple(all_outputs),
        lock_time=lock_time,
    )
    raw = tx.serialize(witness=False)
    start = 4 + 1 + 36 + len(encode_varint(script_len)) + len(prefix)
    return CoinbaseParts(
        coinb1=raw[:start],
        coinb2=raw[start + extranonce_size :],
        extranonce_size=extranonce_size,
        height=height,
        outputs=tuple(all_outputs),
        witness_commitment=witness_commitment,
    )


def assemble_block(
    header: BlockHeader | bytes,
    coinbase_tx_bytes: bytes,
    transactions_data: Sequence[bytes],
    witness: bool,
) -> bytes:
    """Serialize a block for ``submitblock``.

    ``coinbase_tx_bytes`` is the coinbase (usually ``CoinbaseParts.assemble``'s
    non-witness bytes); ``transactions_data`` the template's raw transactions in order.
    With ``witness`` (the block has a witness commitment) the coinbase gets the witness
    reserved value (32 zero bytes) as its witness.
    """
    head = header.serialize() if isinstance(header, BlockHeader) else bytes(header)
    if len(head) != 80:
        raise CoinbaseError(f"block header must be 80 bytes, got {len(head)}")
    try:
        coinbase = Transaction.parse(coinbase_tx_bytes)
    except SerializationError as e:
        raise CoinbaseError(f"coinbase does not parse: {e}") from None
    if len(coinbase.inputs) != 1 or coinbase.inputs[0].prev_hash != _NULL_PREVOUT:
        raise CoinbaseError("first transaction is not a coinbase (one input, null outpoint)")
    if witness:
        txin = coinbase.inputs[0]
        coinbase = Transaction(
            coinbase.version,
            (
                TxIn(
                    txin.prev_hash,
                    txin.prev_index,
                    txin.script_sig,
                    txin.sequence,
                    (WITNESS_RESERVED_VALUE,),
                ),
            ),
            coinbase.outputs,
            coinbase.lock_time,
        )
    return b"".join(
        [
            head,
            encode_varint(1 + len(transactions_data)),
            coinbase.serialize(witness=witness),
            *transactions_data,
        ]
    )

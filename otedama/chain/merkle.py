"""Merkle roots, the Stratum merkle branch, and the BIP141 witness commitment.

All hashes are 32 bytes in internal byte order (as serialized), never display order.
"""

from __future__ import annotations

from collections.abc import Iterable, Sequence

from otedama.chain.hashing import sha256d

__all__ = [
    "WITNESS_COMMITMENT_HEADER",
    "merkle_branch",
    "merkle_root",
    "root_from_branch",
    "witness_commitment",
    "witness_commitment_script",
    "witness_merkle_root",
]

WITNESS_COMMITMENT_HEADER = bytes.fromhex("6a24aa21a9ed")
"""OP_RETURN, push 36, then the BIP141 commitment tag ``aa21a9ed``."""


def _check(hashes: Iterable[bytes], what: str) -> list[bytes]:
    out = list(hashes)
    for i, h in enumerate(out):
        if not isinstance(h, bytes) or len(h) != 32:
            raise ValueError(f"{what} {i} must be 32 bytes, got {h!r}")
    return out


def merkle_root(hashes: Sequence[bytes]) -> bytes:
    """Bitcoin merkle root of ``hashes`` (odd levels repeat their last hash).

    An empty list gives 32 zero bytes, as Core's ``ComputeMerkleRoot`` does.
    """
    level = _check(hashes, "merkle leaf")
    if not level:
        return bytes(32)
    while len(level) > 1:
        if len(level) % 2:
            level.append(level[-1])
        level = [sha256d(level[i] + level[i + 1]) for i in range(0, len(level), 2)]
    return level[0]


def merkle_branch(txids: Sequence[bytes]) -> list[bytes]:
    """The Stratum merkle branch for the coinbase (position 0).

    ``txids`` are the block's other transactions' txids in template order (GBT ``txid``,
    not ``hash``). No transactions give an empty branch.
    """
    level = _check(txids, "txid")
    branch: list[bytes] = []
    while level:
        branch.append(level[0])
        # Together with the coinbase-side hash in front, an even count here is odd.
        if len(level) % 2 == 0:
            level.append(level[-1])
        level = [sha256d(level[i] + level[i + 1]) for i in range(1, len(level) - 1, 2)]
    return branch


def root_from_branch(coinbase_txid: bytes, branch: Sequence[bytes]) -> bytes:
    """Merkle root from the coinbase txid and the Stratum branch (what a miner computes)."""
    (h,) = _check([coinbase_txid], "coinbase txid")
    for step in _check(branch, "branch step"):
        h = sha256d(h + step)
    return h


def witness_merkle_root(wtxids: Sequence[bytes]) -> bytes:
    """BIP141 witness merkle root.

    ``wtxids`` are the wtxids (GBT ``hash``) of the block's transactions AFTER the
    coinbase, in block order; the coinbase's wtxid is taken as 32 zero bytes in front.
    """
    return merkle_root([bytes(32), *_check(wtxids, "wtxid")])


def witness_commitment(witness_root: bytes, reserved: bytes = bytes(32)) -> bytes:
    """The 32-byte commitment ``sha256d(witness root || witness reserved value)``."""
    if len(witness_root) != 32 or len(reserved) != 32:
        raise ValueError("witness root and reserved value must be 32 bytes each")
    return sha256d(witness_root + reserved)


def witness_commitment_script(witness_root: bytes, reserved: bytes = bytes(32)) -> bytes:
    """The coinbase output script committing to the witness root (GBT's
    ``default_witness_commitment`` for the same transactions)."""
    return WITNESS_COMMITMENT_HEADER + witness_commitment(witness_root, reserved)

"""Share validation: rebuild the header a miner hashed and judge it, exactly.

The checks follow ckpool's verdicts on the recorded traffic in ``vectors/stratum/``
(except that a wrong-length extranonce2 is refused as such, as the vectors allow). The
hot path uses ``hashlib`` directly with the coinb1 midstate precomputed per job.
"""

from __future__ import annotations

import hashlib
from collections.abc import Callable
from typing import NamedTuple

from otedama.chain.coinbase import assemble_block
from otedama.chain.hashing import scrypt_pow
from otedama.stratum import errors
from otedama.stratum.errors import Reject
from otedama.stratum.jobs import Job

__all__ = ["MAX_NTIME_AHEAD", "Checked", "ShareValidator", "build_header"]

MAX_NTIME_AHEAD = 7000
"""Seconds an ntime may run ahead of the pool's clock (Core refuses blocks > 7200 s)."""

_sha256 = hashlib.sha256


class Checked(NamedTuple):
    """The outcome of one submit.

    ``reject`` is ``None`` for an accepted share. ``is_block`` is set whenever the hash
    meets the network target, even when the share is rejected as stale, so the block
    still reaches the daemon.
    """

    reject: Reject | None
    header: bytes
    pow_hash: bytes
    extranonce2: bytes
    is_block: bool


def _fail(reject: Reject) -> Checked:
    return Checked(reject, b"", b"", b"", False)


def _hex4(value: str) -> bytes | None:
    """Exactly 8 hex digits as 4 bytes, or None."""
    if len(value) != 8:
        return None
    try:
        raw = bytes.fromhex(value)
    except ValueError:
        return None
    return raw if len(raw) == 4 else None


def build_header(
    job: Job, extranonce1: bytes, extranonce2: bytes, ntime: int, nonce: int, version: int
) -> bytes:
    """The 80-byte header for a job and a miner's choices (the reference construction)."""
    coinbase = job.coinb1 + extranonce1 + extranonce2 + job.coinb2
    root = _sha256(_sha256(coinbase).digest()).digest()
    for step in job.branch:
        root = _sha256(_sha256(root + step).digest()).digest()
    return (
        version.to_bytes(4, "little")
        + job.prev_hash
        + root
        + ntime.to_bytes(4, "little")
        + job.bits.to_bytes(4, "little")
        + nonce.to_bytes(4, "little")
    )


class ShareValidator:
    """Checks submits against jobs; one per server, shared by every session.

    ``algorithm`` picks the proof-of-work hash (``sha256d`` or ``scrypt``); block hashes
    are always sha256d.
    """

    __slots__ = ("_pow", "algorithm", "extranonce2_size")

    def __init__(self, extranonce2_size: int = 8, algorithm: str = "sha256d") -> None:
        if not 1 <= extranonce2_size <= 16:
            raise ValueError(f"extranonce2 size must be 1..16 bytes, got {extranonce2_size}")
        pow_hash: Callable[[bytes], bytes] | None
        if algorithm == "sha256d":
            pow_hash = None
        elif algorithm == "scrypt":
            pow_hash = scrypt_pow
        else:
            raise ValueError(f"unknown proof-of-work algorithm {algorithm!r}")
        self.extranonce2_size = extranonce2_size
        self.algorithm = algorithm
        self._pow = pow_hash

    def check(
        self,
        job: Job,
        stale: bool,
        extranonce1: bytes,
        extranonce2_hex: str,
        ntime_hex: str,
        nonce_hex: str,
        version_hex: str | None,
        version_mask: int,
        target: int,
        now: float,
        tip_prev_hash: bytes | None,
    ) -> Checked:
        """Judge one submit for ``job`` at share ``target``.

        ``stale`` says the job is no longer valid; such a share is refused "Stale" unless
        its hash is a block on the current tip (``tip_prev_hash``), which is then accepted.
        """
        if len(extranonce2_hex) != 2 * self.extranonce2_size:
            return _fail(errors.BAD_EXTRANONCE2)
        try:
            extranonce2 = bytes.fromhex(extranonce2_hex)
        except ValueError:
            return _fail(errors.BAD_EXTRANONCE2)
        if len(extranonce2) != self.extranonce2_size:
            return _fail(errors.BAD_EXTRANONCE2)
        ntime_raw = _hex4(ntime_hex)
        if ntime_raw is None:
            return _fail(errors.BAD_NTIME)
        nonce_raw = _hex4(nonce_hex)
        if nonce_raw is None:
            return _fail(errors.BAD_NONCE)
        if version_hex is None:
            version = job.version
        else:
            if not 1 <= len(version_hex) <= 8:
                return _fail(errors.BAD_VERSION)
            try:
                bits = int(version_hex, 16)
            except ValueError:
                return _fail(errors.BAD_VERSION)
            if bits < 0 or bits & ~version_mask or version_hex.strip() != version_hex:
                return _fail(errors.BAD_VERSION)
            version = (job.version & ~version_mask) | bits
        ntime = int.from_bytes(ntime_raw, "big")
        if ntime < job.mintime or ntime > now + MAX_NTIME_AHEAD:
            return _fail(errors.BAD_NTIME)

        state = job.coinb1_state.copy()
        state.update(extranonce1)
        state.update(extranonce2)
        state.update(job.coinb2)
        root = _sha256(state.digest()).digest()
        for step in job.branch:
            root = _sha256(_sha256(root + step).digest()).digest()
        header = (
            version.to_bytes(4, "little")
            + job.prev_hash
            + root
            + ntime_raw[::-1]
            + job.bits_le
            + nonce_raw[::-1]
        )
        block_hash = _sha256(_sha256(header).digest()).digest()
        pow_hash = block_hash if self._pow is None else self._pow(header)
        value = int.from_bytes(pow_hash, "little")
        is_block = value <= job.network_target
        if value > target and not is_block:
            return Checked(errors.LOW_DIFFICULTY, header, pow_hash, extranonce2, False)
        key = int.from_bytes(pow_hash[:8], "little")
        seen = job.seen
        if key in seen:
            return Checked(errors.DUPLICATE, header, pow_hash, extranonce2, False)
        seen.add(key)
        if stale and not (is_block and job.prev_hash == tip_prev_hash):
            return Checked(errors.STALE, header, pow_hash, extranonce2, is_block)
        return Checked(None, header, pow_hash, extranonce2, is_block)

    @staticmethod
    def coinbase(job: Job, extranonce1: bytes, extranonce2: bytes) -> bytes:
        """The coinbase transaction (non-witness serialization) a share committed to."""
        return job.coinb1 + extranonce1 + extranonce2 + job.coinb2

    @staticmethod
    def build_block(job: Job, header: bytes, coinbase: bytes) -> bytes | None:
        """The full block for a winning share, or None when the job's transactions are
        unknown (a job rebuilt from recorded traffic)."""
        if job.transactions is None:
            return None
        return assemble_block(header, coinbase, list(job.transactions), job.witness)

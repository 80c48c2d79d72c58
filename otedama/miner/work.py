"""What a CPU miner hashes: Stratum jobs turned into 76-byte header prefixes.

Pure code shared by the Stratum client (parent process) and the hashing workers (child
processes). A :class:`MinerJob` is one ``mining.notify``; a :class:`Work` is the slice of a
job one worker process scans: its own extranonce2 range, the version-rolling mask granted by
the pool and the share target. Work travels to the worker as one JSON line.
"""

from __future__ import annotations

import json
from collections.abc import Iterator, Sequence
from dataclasses import dataclass

from otedama.chain.hashing import sha256d
from otedama.chain.merkle import root_from_branch

__all__ = [
    "MinerJob",
    "Work",
    "WorkError",
    "deposit_bits",
    "header_prefix",
    "hex_bytes",
    "iter_header_prefixes",
    "split_extranonce2",
    "swap_words",
]


class WorkError(ValueError):
    """A notify, work line or parameter that cannot be mined; the message names the value."""


def swap_words(data: bytes) -> bytes:
    """Byte-swap each 4-byte word (Stratum's ``prevhash`` <-> internal byte order)."""
    if len(data) % 4:
        raise WorkError(f"cannot word-swap {len(data)} bytes: not a multiple of 4")
    return b"".join(data[i : i + 4][::-1] for i in range(0, len(data), 4))


def hex_bytes(value: object, what: str, size: int | None = None) -> bytes:
    """Decode a hex string from the pool; :class:`WorkError` naming ``what`` if it is not."""
    if not isinstance(value, str):
        raise WorkError(f"{what}: expected a hex string, got {value!r}")
    try:
        raw = bytes.fromhex(value)
    except ValueError:
        raise WorkError(f"{what}: not hex: {value!r}") from None
    if size is not None and len(raw) != size:
        raise WorkError(f"{what}: expected {size} bytes, got {len(raw)} ({value!r})")
    return raw


def _hex_field(params: Sequence[object], index: int, name: str, size: int | None = None) -> bytes:
    return hex_bytes(params[index], f"mining.notify {name}", size)


@dataclass(frozen=True)
class MinerJob:
    """One ``mining.notify`` job, decoded (``prev_hash`` in internal/header byte order)."""

    job_id: str
    prev_hash: bytes
    coinb1: bytes
    coinb2: bytes
    branch: tuple[bytes, ...]
    version: int
    bits: int
    ntime: int
    clean: bool

    @classmethod
    def from_notify(cls, params: Sequence[object]) -> MinerJob:
        """Decode the params of ``mining.notify``; raise :class:`WorkError` if malformed."""
        if not isinstance(params, Sequence) or isinstance(params, str) or len(params) < 9:
            raise WorkError(f"mining.notify: expected 9 params, got {params!r:.200}")
        job_id = params[0]
        if not isinstance(job_id, str) or not job_id:
            raise WorkError(f"mining.notify job_id: expected a non-empty string, got {job_id!r}")
        branch_raw = params[4]
        if not isinstance(branch_raw, list):
            raise WorkError(f"mining.notify merkle_branch: expected a list, got {branch_raw!r}")
        branch = tuple(
            _hex_field(branch_raw, i, "merkle_branch", 32) for i in range(len(branch_raw))
        )
        clean = params[8]
        if not isinstance(clean, bool):
            raise WorkError(f"mining.notify clean_jobs: expected true/false, got {clean!r}")
        return cls(
            job_id=job_id,
            prev_hash=swap_words(_hex_field(params, 1, "prevhash", 32)),
            coinb1=_hex_field(params, 2, "coinb1"),
            coinb2=_hex_field(params, 3, "coinb2"),
            branch=branch,
            version=int.from_bytes(_hex_field(params, 5, "version", 4), "big"),
            bits=int.from_bytes(_hex_field(params, 6, "nbits", 4), "big"),
            ntime=int.from_bytes(_hex_field(params, 7, "ntime", 4), "big"),
            clean=clean,
        )


@dataclass(frozen=True)
class Work:
    """The part of a job one worker process scans.

    The worker walks ``extranonce2`` from ``extranonce2_start`` for ``extranonce2_count``
    values; for each, every version the granted ``version_mask`` allows (only the job's own
    version when the mask is 0); for each, nonces ``0 .. nonce_limit - 1``.
    """

    work_id: int
    job: MinerJob
    extranonce1: bytes
    extranonce2_size: int
    extranonce2_start: int
    extranonce2_count: int
    version_mask: int
    target: int
    nonce_limit: int = 1 << 32

    def __post_init__(self) -> None:
        if not 1 <= self.extranonce2_size <= 16:
            raise WorkError(f"extranonce2 size {self.extranonce2_size} is outside 1..16 bytes")
        end = self.extranonce2_start + self.extranonce2_count
        if self.extranonce2_start < 0 or self.extranonce2_count < 1:
            raise WorkError(
                f"extranonce2 range start={self.extranonce2_start} count={self.extranonce2_count}"
                " is empty or negative"
            )
        if end > 1 << (8 * self.extranonce2_size):
            raise WorkError(
                f"extranonce2 range ends at {end}, beyond {self.extranonce2_size} bytes"
            )
        if not 0 <= self.version_mask <= 0xFFFFFFFF:
            raise WorkError(f"version mask {self.version_mask:#x} is not a 32-bit value")
        if self.target <= 0:
            raise WorkError(f"share target {self.target} must be positive")
        if not 1 <= self.nonce_limit <= 1 << 32:
            raise WorkError(f"nonce limit {self.nonce_limit} is outside 1..2**32")

    def to_line(self) -> bytes:
        """Encode as one JSON line for a worker's stdin."""
        job = self.job
        doc = {
            "work_id": self.work_id,
            "job_id": job.job_id,
            "prev_hash": job.prev_hash.hex(),
            "coinb1": job.coinb1.hex(),
            "coinb2": job.coinb2.hex(),
            "branch": [b.hex() for b in job.branch],
            "version": job.version,
            "bits": job.bits,
            "ntime": job.ntime,
            "clean": job.clean,
            "extranonce1": self.extranonce1.hex(),
            "extranonce2_size": self.extranonce2_size,
            "extranonce2_start": self.extranonce2_start,
            "extranonce2_count": self.extranonce2_count,
            "version_mask": self.version_mask,
            "target": format(self.target, "x"),
            "nonce_limit": self.nonce_limit,
        }
        return json.dumps({"work": doc}, separators=(",", ":")).encode() + b"\n"

    @classmethod
    def from_doc(cls, doc: dict[str, object]) -> Work:
        """Decode the ``work`` object of a worker line; raise :class:`WorkError` if malformed."""
        try:
            branch = doc["branch"]
            assert isinstance(branch, list)
            job = MinerJob(
                job_id=str(doc["job_id"]),
                prev_hash=bytes.fromhex(str(doc["prev_hash"])),
                coinb1=bytes.fromhex(str(doc["coinb1"])),
                coinb2=bytes.fromhex(str(doc["coinb2"])),
                branch=tuple(bytes.fromhex(str(b)) for b in branch),
                version=_int(doc["version"]),
                bits=_int(doc["bits"]),
                ntime=_int(doc["ntime"]),
                clean=bool(doc["clean"]),
            )
            return cls(
                work_id=_int(doc["work_id"]),
                job=job,
                extranonce1=bytes.fromhex(str(doc["extranonce1"])),
                extranonce2_size=_int(doc["extranonce2_size"]),
                extranonce2_start=_int(doc["extranonce2_start"]),
                extranonce2_count=_int(doc["extranonce2_count"]),
                version_mask=_int(doc["version_mask"]),
                target=int(str(doc["target"]), 16),
                nonce_limit=_int(doc["nonce_limit"]),
            )
        except (KeyError, ValueError, TypeError, AssertionError) as exc:
            raise WorkError(f"malformed work {doc!r:.200}: {exc!r}") from None


def _int(value: object) -> int:
    if not isinstance(value, int) or isinstance(value, bool):
        raise WorkError(f"expected an integer, got {value!r}")
    return value


def split_extranonce2(size: int, parts: int) -> list[tuple[int, int]]:
    """Cut the extranonce2 space of ``size`` bytes into ``parts`` disjoint (start, count) ranges."""
    space = 1 << (8 * size)
    if not 1 <= parts <= space:
        raise WorkError(f"cannot split {space} extranonce2 values among {parts} workers")
    span = space // parts
    return [(i * span, span) for i in range(parts)]


def deposit_bits(counter: int, mask: int) -> int:
    """Spread the low bits of ``counter`` over the set bits of ``mask`` (lowest first)."""
    out = 0
    while counter and mask:
        low = mask & -mask
        if counter & 1:
            out |= low
        counter >>= 1
        mask ^= low
    return out


def header_prefix(work: Work, extranonce2: int, version: int) -> bytes:
    """The first 76 header bytes (everything but the nonce) for one extranonce2 and version."""
    job = work.job
    coinbase = (
        job.coinb1
        + work.extranonce1
        + extranonce2.to_bytes(work.extranonce2_size, "big")
        + job.coinb2
    )
    root = root_from_branch(sha256d(coinbase), list(job.branch))
    return (
        version.to_bytes(4, "little")
        + job.prev_hash
        + root
        + job.ntime.to_bytes(4, "little")
        + job.bits.to_bytes(4, "little")
    )


def iter_header_prefixes(work: Work) -> Iterator[tuple[int, int, bytes]]:
    """Yield ``(extranonce2, version, prefix76)`` in the order a worker scans them."""
    variants = 1 << bin(work.version_mask).count("1")
    base = work.job.version & ~work.version_mask
    for extranonce2 in range(
        work.extranonce2_start, work.extranonce2_start + work.extranonce2_count
    ):
        for counter in range(variants):
            rolled = deposit_bits(counter, work.version_mask)
            version = base | rolled if counter else work.job.version
            yield extranonce2, version, header_prefix(work, extranonce2, version)

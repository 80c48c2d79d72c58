"""The accepted-share value and the interface the pool core implements to receive shares."""

from __future__ import annotations

from dataclasses import dataclass
from fractions import Fraction
from typing import Any, Protocol

from twisted.internet.defer import Deferred

from otedama.chain.hashing import sha256d

__all__ = ["Share", "ShareSink"]


@dataclass(frozen=True, slots=True)
class Share:
    """One valid share (or block) from a miner.

    ``difficulty`` is the difficulty in force for the share's job on that connection (the
    weight it earns), exact as a ``Fraction``. ``hash`` is the proof-of-work hash in
    internal byte order. ``header`` (80 bytes), ``coinbase`` (non-witness serialization)
    and ``merkle_branch`` let the federation re-check the work. ``time`` is when the pool
    received it (reactor seconds).
    """

    worker: str
    address: str
    difficulty: Fraction
    hash: bytes
    job_id: str
    height: int
    time: float
    is_block: bool
    header: bytes = b""
    coinbase: bytes = b""
    merkle_branch: tuple[bytes, ...] = ()

    @property
    def worker_name(self) -> str:
        """The part after the address (``rig1`` of ``bc1q….rig1``), or ``""``."""
        _, _, name = self.worker.partition(".")
        return name

    @property
    def block_hash(self) -> bytes:
        """The block hash (sha256d of the header, internal order) when ``header`` is set."""
        return sha256d(self.header)


class ShareSink(Protocol):
    """Where the Stratum server hands its results; the pool core implements it."""

    def share_accepted(self, share: Share) -> None:
        """A valid share was accepted (called for blocks too, after ``block_found``)."""

    def block_found(self, block: bytes, share: Share) -> Deferred[Any]:
        """A share met the network target: ``block`` is the full serialized block."""

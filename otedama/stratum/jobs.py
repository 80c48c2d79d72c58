"""Stratum jobs: one ``Job`` per template (and per timed refresh), made once and shared.

A ``Job`` holds everything a share check needs (coinbase halves, merkle branch, header
fields, network target) and its ``mining.notify`` line already encoded, so telling 15,000
miners about it is one ``write`` of the same bytes each. The ``JobManager`` turns block
templates into jobs, keeps the jobs of the current tip valid until the next block, and
re-issues the work with a fresh ntime when no template arrives for ``refresh_interval``.
"""

from __future__ import annotations

import hashlib
from collections import deque
from collections.abc import Callable, Sequence
from dataclasses import dataclass, field
from typing import Any

from twisted.application.service import Service
from twisted.internet.interfaces import IReactorTime
from twisted.logger import Logger

from otedama.chain.coinbase import build_coinbase
from otedama.chain.merkle import merkle_branch
from otedama.chain.serialize import TxOut
from otedama.chain.target import bits_to_target
from otedama.chain.template import BlockTemplate
from otedama.stratum.codec import encode_notification

__all__ = ["Job", "JobManager", "prevhash_to_stratum", "stratum_to_prevhash"]


def prevhash_to_stratum(prev_hash: bytes) -> str:
    """The notify ``prevhash``: internal-order bytes with each 4-byte word byte-swapped."""
    if len(prev_hash) != 32:
        raise ValueError(f"previous block hash must be 32 bytes, got {len(prev_hash)}")
    return b"".join(prev_hash[i : i + 4][::-1] for i in range(0, 32, 4)).hex()


def stratum_to_prevhash(value: str) -> bytes:
    """Internal-order previous block hash from a notify ``prevhash`` hex string."""
    raw = bytes.fromhex(value)
    if len(raw) != 32:
        raise ValueError(f"notify prevhash must be 32 bytes of hex, got {value!r}")
    return b"".join(raw[i : i + 4][::-1] for i in range(0, 32, 4))


def _height_from_coinb1(coinb1: bytes) -> int:
    """The BIP34 height pushed at the start of the coinbase scriptSig, or 0 if unreadable."""
    # version(4) input-count(1) prevout(36) script-length(1) then the push.
    if len(coinb1) < 43:
        return 0
    op = coinb1[42]
    if 0x51 <= op <= 0x60:
        return op - 0x50
    if 1 <= op <= 8 and len(coinb1) >= 43 + op:
        return int.from_bytes(coinb1[43 : 43 + op], "little")
    return 0


@dataclass(frozen=True, slots=True, eq=False)
class Job:
    """One unit of work as sent in ``mining.notify``; immutable apart from ``seen``.

    ``prev_hash`` is internal order. ``transactions`` holds the raw non-coinbase
    transactions for block assembly (``None`` for a job rebuilt from a recorded notify,
    whose transactions are unknown). ``seen`` collects duplicate-share keys and is shared
    by every job built from the same coinbase, so a share re-sent under a refreshed job id
    is still a duplicate.
    """

    job_id: str
    seq: int
    prev_hash: bytes
    version: int
    bits: int
    ntime: int
    mintime: int
    height: int
    coinb1: bytes
    coinb2: bytes
    branch: tuple[bytes, ...]
    transactions: tuple[bytes, ...] | None
    witness: bool
    clean: bool
    address: str | None = None
    network_target: int = 0
    notify_clean: bytes = b""
    notify_update: bytes = b""
    bits_le: bytes = b""
    coinb1_state: Any = None
    seen: set[int] = field(default_factory=set)

    @classmethod
    def create(
        cls,
        *,
        job_id: str,
        seq: int,
        prev_hash: bytes,
        version: int,
        bits: int,
        ntime: int,
        mintime: int,
        height: int,
        coinb1: bytes,
        coinb2: bytes,
        branch: Sequence[bytes],
        transactions: tuple[bytes, ...] | None,
        witness: bool,
        clean: bool,
        address: str | None = None,
        seen: set[int] | None = None,
    ) -> Job:
        """Build a job and its encoded notify lines (clean and not clean)."""
        if len(prev_hash) != 32:
            raise ValueError(f"previous block hash must be 32 bytes, got {len(prev_hash)}")
        for name, value in (("version", version), ("bits", bits), ("ntime", ntime)):
            if not 0 <= value <= 0xFFFFFFFF:
                raise ValueError(f"job {name} must be a 32-bit number, got {value!r}")
        steps = tuple(branch)
        for step in steps:
            if len(step) != 32:
                raise ValueError(f"merkle branch steps must be 32 bytes, got {step!r}")
        params: list[Any] = [
            job_id,
            prevhash_to_stratum(prev_hash),
            coinb1.hex(),
            coinb2.hex(),
            [s.hex() for s in steps],
            f"{version:08x}",
            f"{bits:08x}",
            f"{ntime:08x}",
            True,
        ]
        notify_clean = encode_notification("mining.notify", params)
        params[-1] = False
        notify_update = encode_notification("mining.notify", params)
        state = hashlib.sha256(coinb1)
        return cls(
            job_id=job_id,
            seq=seq,
            prev_hash=prev_hash,
            version=version,
            bits=bits,
            ntime=ntime,
            mintime=mintime,
            height=height,
            coinb1=coinb1,
            coinb2=coinb2,
            branch=steps,
            transactions=transactions,
            witness=witness,
            clean=clean,
            address=address,
            network_target=bits_to_target(bits),
            notify_clean=notify_clean,
            notify_update=notify_update,
            bits_le=bits.to_bytes(4, "little"),
            coinb1_state=state,
            seen=set() if seen is None else seen,
        )

    @classmethod
    def from_notify(
        cls,
        params: Sequence[Any],
        *,
        seq: int = 0,
        mintime: int | None = None,
        height: int | None = None,
    ) -> Job:
        """Rebuild a job from recorded ``mining.notify`` params (for replaying traffic).

        ``mintime`` defaults to the notify's ntime and ``height`` to the BIP34 height in
        coinb1. The transactions are unknown, so a block found on it cannot be assembled.
        """
        if len(params) < 9:
            raise ValueError(f"mining.notify has 9 params, got {len(params)}: {params!r}")
        job_id, prevhash, coinb1, coinb2, branch, version, nbits, ntime, clean = params[:9]
        cb1 = bytes.fromhex(coinb1)
        ntime_value = int(ntime, 16)
        return cls.create(
            job_id=str(job_id),
            seq=seq,
            prev_hash=stratum_to_prevhash(prevhash),
            version=int(version, 16),
            bits=int(nbits, 16),
            ntime=ntime_value,
            mintime=ntime_value if mintime is None else mintime,
            height=_height_from_coinb1(cb1) if height is None else height,
            coinb1=cb1,
            coinb2=bytes.fromhex(coinb2),
            branch=[bytes.fromhex(s) for s in branch],
            transactions=None,
            witness=False,
            clean=bool(clean),
        )

    def notify_line(self, clean: bool | None = None) -> bytes:
        """The encoded ``mining.notify`` line; ``clean`` overrides the job's own flag."""
        if clean is None:
            clean = self.clean
        return self.notify_clean if clean else self.notify_update

    def with_time(self, *, job_id: str, seq: int, ntime: int) -> Job:
        """The same work under a new id with a fresh ntime (not clean, same ``seen``)."""
        return Job.create(
            job_id=job_id,
            seq=seq,
            prev_hash=self.prev_hash,
            version=self.version,
            bits=self.bits,
            ntime=ntime,
            mintime=self.mintime,
            height=self.height,
            coinb1=self.coinb1,
            coinb2=self.coinb2,
            branch=self.branch,
            transactions=self.transactions,
            witness=self.witness,
            clean=False,
            address=self.address,
            seen=self.seen,
        )


OutputsFor = Callable[[BlockTemplate], Sequence[TxOut]]
AddressOutputsFor = Callable[[BlockTemplate, str], Sequence[TxOut]]
JobListener = Callable[[Job], None]


class _Work:
    """The coinbase halves of one template (for one payout address, or shared)."""

    __slots__ = ("coinb1", "coinb2", "seen")

    def __init__(self, coinb1: bytes, coinb2: bytes) -> None:
        self.coinb1 = coinb1
        self.coinb2 = coinb2
        self.seen: set[int] = set()


class JobManager(Service):
    """Turns block templates into jobs and keeps the valid ones findable by id.

    ``coinbase_outputs(template)`` gives the coinbase outputs for the shared job (computed
    once per template). With ``address_outputs(template, address)`` set (SOLO), sessions
    with a payout address get jobs paying that address, built lazily and cached per
    template and address. Jobs of the current previous block stay valid (the newest
    ``max_generations`` templates/refreshes); a new block moves them to a bounded stale set
    so late shares are answered "Stale" and block candidates among them still reach the
    daemon. Both bounds keep memory flat: a valid job holds its template's transactions and
    the duplicate keys of every share on it.
    """

    log = Logger()

    def __init__(
        self,
        coinbase_outputs: OutputsFor,
        *,
        clock: IReactorTime,
        pool_tag: bytes = b"/otedama/",
        extranonce1_size: int = 4,
        extranonce2_size: int = 8,
        refresh_interval: float = 30.0,
        max_generations: int = 8,
        max_stale: int = 64,
        address_outputs: AddressOutputsFor | None = None,
    ) -> None:
        if refresh_interval <= 0:
            raise ValueError(f"refresh_interval must be positive, got {refresh_interval!r}")
        if max_generations < 1:
            raise ValueError(f"max_generations must be at least 1, got {max_generations!r}")
        self._coinbase_outputs = coinbase_outputs
        self._address_outputs = address_outputs
        self.clock: Any = clock  # zope interfaces do not type-check without mypy-zope
        self.pool_tag = pool_tag
        self.extranonce1_size = extranonce1_size
        self.extranonce2_size = extranonce2_size
        self.refresh_interval = refresh_interval
        self.max_generations = max_generations
        self.max_stale = max_stale
        self.template: BlockTemplate | None = None
        self.current: Job | None = None
        self._template_received = 0.0
        self._seq = 0
        self._jobs: dict[str, Job] = {}
        self._stale: dict[str, Job] = {}
        self._generations: deque[list[str]] = deque()
        self._branch: tuple[bytes, ...] = ()
        self._address_work: dict[str, _Work] = {}
        self._address_jobs: dict[str, Job] = {}
        self._listeners: list[JobListener] = []
        self._timer: Any = None

    @property
    def per_address(self) -> bool:
        """Jobs are built per payout address (SOLO)."""
        return self._address_outputs is not None

    # -- listeners and lifecycle -------------------------------------------------------

    def add_listener(self, listener: JobListener) -> None:
        """Call ``listener(job)`` with every new shared job (template or refresh)."""
        self._listeners.append(listener)

    def remove_listener(self, listener: JobListener) -> None:
        """Stop calling ``listener``."""
        if listener in self._listeners:
            self._listeners.remove(listener)

    def startService(self) -> None:
        """Start the refresh timer."""
        super().startService()
        self._schedule()

    def stopService(self) -> None:
        """Stop the refresh timer."""
        if self._timer is not None and self._timer.active():
            self._timer.cancel()
        self._timer = None
        super().stopService()

    def _schedule(self) -> None:
        if self._timer is not None and self._timer.active():
            self._timer.cancel()
        self._timer = None
        if self.running:
            self._timer = self.clock.callLater(self.refresh_interval, self._refresh_tick)

    def _refresh_tick(self) -> None:
        self._timer = None
        try:
            self.refresh()
        except Exception:
            self.log.failure("refreshing the current job failed")
        self._schedule()

    # -- jobs --------------------------------------------------------------------------

    def _next_id(self) -> tuple[str, int]:
        self._seq += 1
        return f"{self._seq:x}", self._seq

    def _build_work(self, template: BlockTemplate, outputs: Sequence[TxOut]) -> _Work:
        parts = build_coinbase(
            template.height,
            list(outputs),
            self.extranonce1_size + self.extranonce2_size,
            pool_tag=self.pool_tag,
            witness_commitment=template.default_witness_commitment,
        )
        return _Work(parts.coinb1, parts.coinb2)

    def _make_job(
        self,
        template: BlockTemplate,
        work: _Work,
        *,
        ntime: int,
        clean: bool,
        branch: Sequence[bytes],
        address: str | None,
    ) -> Job:
        job_id, seq = self._next_id()
        return Job.create(
            job_id=job_id,
            seq=seq,
            prev_hash=template.prev_hash,
            version=template.version,
            bits=template.bits,
            ntime=ntime,
            mintime=template.mintime,
            height=template.height,
            coinb1=work.coinb1,
            coinb2=work.coinb2,
            branch=branch,
            transactions=tuple(tx.data for tx in template.transactions),
            witness=template.default_witness_commitment is not None,
            clean=clean,
            address=address,
            seen=work.seen,
        )

    def _remember(self, job: Job, new_generation: bool) -> None:
        if new_generation or not self._generations:
            self._generations.append([])
            while len(self._generations) > self.max_generations:
                for job_id in self._generations.popleft():
                    old = self._jobs.pop(job_id, None)
                    if old is not None:
                        self._retire(old)
        self._generations[-1].append(job.job_id)
        self._jobs[job.job_id] = job

    def _retire_all(self) -> None:
        """A new block: every valid job turns stale. Their duplicate keys are dropped
        (a repeat of a stale share is refused as stale either way)."""
        for job in self._jobs.values():
            job.seen.clear()
            self._retire(job)
        self._jobs.clear()
        self._generations.clear()

    def _retire(self, job: Job) -> None:
        self._stale[job.job_id] = job
        while len(self._stale) > self.max_stale:
            del self._stale[next(iter(self._stale))]

    def on_template(self, template: BlockTemplate) -> Job:
        """Make the job for a new template; tell the listeners. Returns the shared job."""
        previous = self.template
        new_block = previous is None or previous.prev_hash != template.prev_hash
        if new_block:
            self._retire_all()
        work = self._build_work(template, self._coinbase_outputs(template))
        branch = merkle_branch(template.txids)
        job = self._make_job(
            template, work, ntime=template.curtime, clean=new_block, branch=branch, address=None
        )
        self.template = template
        self._template_received = self.clock.seconds()
        self._branch = tuple(branch)
        self._address_work = {}
        self._address_jobs = {}
        self.current = job
        self._remember(job, new_generation=True)
        if new_block:
            self.log.info(
                "new block template at height {height} on {prev}, {count} transactions",
                height=template.height,
                prev=template.prev_hash_hex,
                count=len(template.transactions),
            )
        self._schedule()
        self._announce(job)
        return job

    def refresh(self) -> Job | None:
        """Re-issue the current work with a fresh ntime (no template arrived meanwhile)."""
        template, current = self.template, self.current
        if template is None or current is None:
            return None
        elapsed = int(self.clock.seconds() - self._template_received)
        ntime = max(template.curtime + max(elapsed, 0), template.mintime, current.ntime)
        job_id, seq = self._next_id()
        job = current.with_time(job_id=job_id, seq=seq, ntime=ntime)
        self.current = job
        self._address_jobs = {}
        self._remember(job, new_generation=True)
        self._announce(job)
        return job

    def _announce(self, job: Job) -> None:
        for listener in list(self._listeners):
            try:
                listener(job)
            except Exception:
                self.log.failure("job listener {listener!r} failed", listener=listener)

    def job_for(self, address: str | None) -> Job | None:
        """The current job for a session paying ``address`` (the shared job unless SOLO)."""
        current = self.current
        if self._address_outputs is None or address is None or current is None:
            return current
        job = self._address_jobs.get(address)
        if job is not None:
            return job
        template = self.template
        assert template is not None
        work = self._address_work.get(address)
        if work is None:
            work = self._build_work(template, self._address_outputs(template, address))
            self._address_work[address] = work
        job = self._make_job(
            template,
            work,
            ntime=current.ntime,
            clean=current.clean,
            branch=self._branch,
            address=address,
        )
        self._address_jobs[address] = job
        self._remember(job, new_generation=False)
        return job

    def lookup(self, job_id: str) -> tuple[Job | None, bool]:
        """``(job, stale)``: a valid job, a stale one (older block or aged out), or None."""
        job = self._jobs.get(job_id)
        if job is not None:
            return job, False
        job = self._stale.get(job_id)
        if job is not None:
            return job, True
        return None, False

    def add_job(self, job: Job) -> None:
        """Make an externally built job current (replaying recorded notify lines).

        A job on a different previous block retires the current ones, like a new block.
        """
        current = self.current
        if current is not None and current.prev_hash != job.prev_hash:
            self._retire_all()
        self.current = job
        self._remember(job, new_generation=True)
        self._announce(job)

    @property
    def oldest_valid_seq(self) -> int:
        """The lowest ``seq`` among the valid jobs (0 when there are none)."""
        for job in self._jobs.values():
            return job.seq
        return 0

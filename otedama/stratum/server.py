"""State shared by every Stratum connection: sessions, extranonce1s, limits, fan-out.

``StratumServer`` is still sans-IO: sessions are given ``write``/``close`` callables by the
thin Twisted protocol in ``protocol.py``. It owns the periodic sweep (subscribe and idle
timeouts, vardiff for quiet miners) and broadcasts every new job to the sessions.
"""

from __future__ import annotations

from collections import Counter, OrderedDict
from collections.abc import Callable
from dataclasses import replace
from fractions import Fraction
from typing import Any

from twisted.internet.defer import Deferred
from twisted.internet.interfaces import IReactorTime
from twisted.logger import Logger

from otedama.chain.target import difficulty_to_target
from otedama.stratum.codec import encode_notification
from otedama.stratum.errors import Reject
from otedama.stratum.jobs import Job, JobManager
from otedama.stratum.session import StratumSession, canonical_difficulty, json_difficulty
from otedama.stratum.settings import StratumSettings
from otedama.stratum.share import Share, ShareSink
from otedama.stratum.validator import ShareValidator
from otedama.stratum.vardiff import Vardiff, clamp_difficulty

__all__ = ["StratumServer", "StratumStats"]

_EXTRANONCE1_SPACE = 1 << 32
_RESUMABLE_KEEP = 65536
_DIFFICULTY_LINES = 1024
"""Encoded ``mining.set_difficulty`` lines kept (vardiff values have 3 digits: few)."""
_SUMMARY_HOSTS = 1024
"""Distinct refused hosts remembered per log interval (the rest are only counted)."""

_DISCONNECT_LINES = 20
"""Authorized miners' disconnects logged one line each per log interval (the rest are
counted in the summary: a restart or a failover disconnects thousands at once)."""

_AUTHORIZE_REFUSAL_LINES = 20
"""Refused authorizations logged one line each per log interval (the rest are counted in
the summary: anyone who can connect can send them)."""


class StratumStats:
    """Counters for metrics and the API (plain attributes, cheap to bump)."""

    __slots__ = (
        "aborted_connections",
        "accepted",
        "authorized",
        "bad_lines",
        "blocks",
        "output_overflows",
        "rate_limited",
        "refused_connections",
        "rejected",
        "timeouts",
    )

    def __init__(self) -> None:
        self.accepted = 0
        self.blocks = 0
        self.bad_lines = 0
        self.refused_connections = 0
        self.rejected: Counter[str] = Counter()
        self.output_overflows = 0
        """Connections dropped for not reading their replies (``max_unsent_bytes``)."""
        self.aborted_connections = 0
        """Closing connections that did not flush within ``close_grace`` and were aborted."""
        self.timeouts = 0
        """Connections closed for a subscribe, authorize or idle timeout."""
        self.rate_limited = 0
        """Submits refused unchecked over ``max_share_rate``."""
        self.authorized = 0
        """Workers authorized."""

    def count_reject(self, reject: Reject) -> None:
        """Count one rejected share by its reason."""
        self.rejected[reject.message] += 1


class StratumServer:
    """The sessions of one Stratum listener and what they share."""

    log = Logger()

    def __init__(
        self,
        job_manager: JobManager,
        sink: ShareSink,
        settings: StratumSettings,
        clock: IReactorTime,
    ) -> None:
        if job_manager.extranonce2_size != settings.extranonce2_size:
            raise ValueError(
                f"job manager extranonce2 size {job_manager.extranonce2_size} differs from "
                f"the stratum setting {settings.extranonce2_size}"
            )
        if job_manager.extranonce1_size != 4:
            raise ValueError(
                f"the stratum server hands out 4-byte extranonce1s; the job manager was built "
                f"for {job_manager.extranonce1_size}"
            )
        self.jobs = job_manager
        self.sink = sink
        self.settings = settings
        self.clock: Any = clock  # zope interfaces do not type-check without mypy-zope
        self.validator = ShareValidator(settings.extranonce2_size, settings.network.algorithm)
        self.vardiff: Vardiff | None = (
            Vardiff(settings.target_share_interval, settings.retarget_interval)
            if settings.vardiff
            else None
        )
        self.stats = StratumStats()
        self.start_difficulty = self._start_difficulty(settings)
        self._difficulty_lines: dict[tuple[int, int], bytes] = {}
        self.sessions: set[StratumSession] = set()
        self._per_host: Counter[str] = Counter()
        self._extranonce_next = 1
        self._extranonce_used: dict[int, StratumSession] = {}
        self._resumable: OrderedDict[int, None] = OrderedDict()
        self._sweep_call: Any = None
        self._refused: Counter[str] = Counter()
        self._refused_hosts: Counter[str] = Counter()
        self._authorized_since = 0
        self._disconnects_logged = 0
        self._disconnects_since = 0
        self._authorize_refusals_logged = 0
        self._authorize_refusals_since = 0
        self._summary_at = 0.0
        #: Told ``(host, valid)`` for each accepted or rejected submit and each bad line
        #: (the node's guard bans hosts by their ratio of invalid work).
        self.work_observer: Callable[[str, bool], object] | None = None
        job_manager.add_listener(self.broadcast)

    # -- lifecycle ---------------------------------------------------------------------

    def update_settings(self, settings: StratumSettings) -> None:
        """Apply reloaded settings to the running server and its sessions.

        The network and the extranonce2 size are fixed for the life of the job manager:
        a change to them is logged and waits for a restart. Difficulty bounds apply from
        each connection's next difficulty change.
        """
        old = self.settings
        if settings.network != old.network or settings.extranonce2_size != old.extranonce2_size:
            self.log.warn(
                "stratum network and extranonce2_size take effect after a restart; "
                "keeping {network} and {size}",
                network=old.network.name,
                size=old.extranonce2_size,
            )
            settings = replace(settings, network=old.network, extranonce2_size=old.extranonce2_size)
        self.settings = settings
        self.start_difficulty = self._start_difficulty(settings)
        self.vardiff = (
            Vardiff(settings.target_share_interval, settings.retarget_interval)
            if settings.vardiff
            else None
        )
        for session in self.sessions:
            session.framer.max_line = settings.max_line_bytes
            session.difficulty_floor = clamp_difficulty(
                session.difficulty_floor, settings.min_difficulty, settings.max_difficulty
            )

    @staticmethod
    def _start_difficulty(settings: StratumSettings) -> tuple[Fraction, int]:
        value = canonical_difficulty(settings.start_difficulty)
        return value, difficulty_to_target(value, settings.network.algorithm)

    def difficulty_line(self, value: Fraction) -> bytes:
        """The ``mining.set_difficulty`` line for ``value``, encoded once per value."""
        # Keyed by the integer pair: hashing a Fraction costs a modular inverse.
        key = (value.numerator, value.denominator)
        line = self._difficulty_lines.get(key)
        if line is None:
            line = encode_notification("mining.set_difficulty", [json_difficulty(value)])
            if len(self._difficulty_lines) >= _DIFFICULTY_LINES:
                self._difficulty_lines.clear()
            self._difficulty_lines[key] = line
        return line

    def start(self) -> None:
        """Start the periodic sweep (and listening to the job manager, after a stop)."""
        self.jobs.remove_listener(self.broadcast)
        self.jobs.add_listener(self.broadcast)
        if self._sweep_call is None:
            now: float = self.clock.seconds()
            self._summary_at = now
            self._sweep_call = self.clock.callLater(self.settings.sweep_interval, self._sweep)

    def stop(self) -> None:
        """Stop the sweep and stop listening to the job manager."""
        if self._sweep_call is not None and self._sweep_call.active():
            self._sweep_call.cancel()
        self._sweep_call = None
        self.jobs.remove_listener(self.broadcast)

    def _sweep(self) -> None:
        self._sweep_call = None
        now = self.clock.seconds()
        for session in list(self.sessions):
            try:
                session.tick(now)
            except Exception:
                self.log.failure("stratum sweep failed for {host}", host=session.host)
        if now - self._summary_at >= self.settings.log_interval:
            try:
                self.log_summary(now)
            except Exception:
                self.log.failure("stratum log summary failed")
        self._sweep_call = self.clock.callLater(self.settings.sweep_interval, self._sweep)

    def log_summary(self, now: float) -> None:
        """One line each for the connections refused and the workers authorized since the
        last summary (an outsider can trigger either at will, so never one line each)."""
        elapsed = now - self._summary_at
        self._summary_at = now
        refused, hosts = self._refused, self._refused_hosts
        if refused:
            total = sum(refused.values())
            top = ", ".join(f"{host} ({count})" for host, count in hosts.most_common(5))
            self.log.warn(
                "refused {count} stratum connections in {elapsed:.0f} s: {reasons}; "
                "top hosts: {hosts}",
                count=total,
                elapsed=elapsed,
                reasons=", ".join(f"{reason} ({n})" for reason, n in refused.most_common()),
                hosts=top,
            )
            self._refused = Counter()
            self._refused_hosts = Counter()
        if self._authorized_since:
            self.log.info(
                "{count} stratum workers authorized in {elapsed:.0f} s; {sessions} connections",
                count=self._authorized_since,
                elapsed=elapsed,
                sessions=len(self.sessions),
            )
            self._authorized_since = 0
        if self._disconnects_since > self._disconnects_logged:
            self.log.info(
                "{count} more stratum miners disconnected in {elapsed:.0f} s",
                count=self._disconnects_since - self._disconnects_logged,
                elapsed=elapsed,
            )
        self._disconnects_since = self._disconnects_logged = 0
        if self._authorize_refusals_since > self._authorize_refusals_logged:
            self.log.warn(
                "{count} more stratum authorizations refused in {elapsed:.0f} s",
                count=self._authorize_refusals_since - self._authorize_refusals_logged,
                elapsed=elapsed,
            )
        self._authorize_refusals_since = self._authorize_refusals_logged = 0

    def note_authorized(self) -> None:
        """A worker authorized (counted for the periodic summary, not logged each)."""
        self.stats.authorized += 1
        self._authorized_since += 1

    def note_authorize_refused(self, host: str, reason: str) -> None:
        """A ``mining.authorize`` from ``host`` was refused for ``reason`` (the error the
        miner got): one line while few come, otherwise counted for the periodic summary."""
        self._authorize_refusals_since += 1
        if self._authorize_refusals_logged >= _AUTHORIZE_REFUSAL_LINES:
            return
        self._authorize_refusals_logged += 1
        self.log.warn("authorize from {host} refused: {reason}", host=host, reason=reason)

    def note_work(self, host: str, valid: bool) -> None:
        """A submit from ``host`` was accepted (``valid``) or rejected, or it sent a bad
        line: tell the work observer (a failing observer never fails the session)."""
        observer = self.work_observer
        if observer is not None:
            try:
                observer(host, valid)
            except Exception:
                self.log.failure("the work observer failed for {host}", host=host)

    def note_refused(self, host: str, reason: str) -> None:
        """A connection from ``host`` was refused for ``reason`` (summarised per interval)."""
        self.stats.refused_connections += 1
        self._refused[reason] += 1
        hosts = self._refused_hosts
        if host in hosts or len(hosts) < _SUMMARY_HOSTS:
            hosts[host] += 1

    # -- connections -------------------------------------------------------------------

    def refusal(self, host: str) -> str | None:
        """Why a new connection from ``host`` must be refused, or None to accept it."""
        settings = self.settings
        if len(self.sessions) >= settings.max_connections:
            return f"server full ({settings.max_connections} connections)"
        if self._per_host[host] >= settings.max_connections_per_ip:
            return f"over {settings.max_connections_per_ip} connections per IP"
        return None

    def open_session(
        self, host: str, write: Callable[[bytes], object], close: Callable[[], object]
    ) -> StratumSession | None:
        """A new session for a connection from ``host``, or None when over a limit."""
        reason = self.refusal(host)
        if reason is not None:
            self.note_refused(host, reason)
            return None
        session = StratumSession(self, host, write, close, self.clock.seconds())
        self.sessions.add(session)
        self._per_host[host] += 1
        return session

    def session_closed(self, session: StratumSession) -> None:
        """Forget a closed session; its extranonce1 becomes resumable."""
        if session not in self.sessions:
            return
        self.sessions.discard(session)
        left = self._per_host[session.host] - 1
        if left > 0:
            self._per_host[session.host] = left
        else:
            del self._per_host[session.host]
        if session.subscribed:
            self.release_extranonce1(session.extranonce1)
        if session.workers:
            self.note_disconnected(session)

    def note_disconnected(self, session: StratumSession) -> None:
        """An authorized miner went: one line (how long, how many shares) while few go
        at once, otherwise counted for the periodic summary."""
        self._disconnects_since += 1
        if self._disconnects_logged >= _DISCONNECT_LINES:
            return
        self._disconnects_logged += 1
        self.log.info(
            "miner {worker} from {host} disconnected after {duration:.0f} s, "
            "{shares} shares accepted",
            worker=next(iter(session.workers)),
            host=session.host,
            duration=self.clock.seconds() - session.connected_at,
            shares=session.accepted,
        )

    def connections_from(self, host: str) -> int:
        """Open connections from ``host``."""
        return self._per_host[host]

    # -- extranonce1 -------------------------------------------------------------------

    def allocate_extranonce1(self, session: StratumSession, resume: str | None = None) -> bytes:
        """A 4-byte extranonce1 no live connection uses; ``resume`` (a subscription id we
        issued before and is free again) is honoured."""
        if resume is not None:
            try:
                wanted = int(resume, 16) if len(resume) == 8 else -1
            except ValueError:
                wanted = -1
            if wanted in self._resumable and wanted not in self._extranonce_used:
                del self._resumable[wanted]
                self._extranonce_used[wanted] = session
                return wanted.to_bytes(4, "big")
        if len(self._extranonce_used) >= _EXTRANONCE1_SPACE - 1:
            raise RuntimeError("every extranonce1 is in use")
        value = self._extranonce_next
        while value in self._extranonce_used or value == 0:
            value = (value + 1) % _EXTRANONCE1_SPACE
        self._extranonce_next = (value + 1) % _EXTRANONCE1_SPACE
        self._resumable.pop(value, None)
        self._extranonce_used[value] = session
        return value.to_bytes(4, "big")

    def release_extranonce1(self, extranonce1: bytes) -> None:
        """A connection let ``extranonce1`` go; it may be resumed for a while."""
        value = int.from_bytes(extranonce1, "big")
        self._extranonce_used.pop(value, None)
        self._resumable[value] = None
        while len(self._resumable) > _RESUMABLE_KEEP:
            self._resumable.popitem(last=False)

    # -- jobs and blocks ---------------------------------------------------------------

    def broadcast(self, job: Job) -> None:
        """Send a new job to every working session (the same bytes to each)."""
        jobs = self.jobs
        per_address = jobs.per_address
        for session in list(self.sessions):
            if session.closed or not session.ready:
                continue
            try:
                if session.last_job_seq < 0:
                    session.start_work()
                elif per_address and session.address is not None:
                    personal = jobs.job_for(session.address)
                    if personal is not None:
                        session.send_job(personal)
                else:
                    session.send_job(job)
            except Exception:
                self.log.failure(
                    "sending job {job} to {host} failed", job=job.job_id, host=session.host
                )

    def block_found(self, job: Job, share: Share) -> None:
        """Hand a block candidate to the sink at once and log it."""
        self.stats.blocks += 1
        block_hash = share.block_hash[::-1].hex()
        block = self.validator.build_block(job, share.header, share.coinbase)
        self.log.debug(
            "block candidate at height {height}: {hash} from {worker}",
            height=job.height,
            hash=block_hash,
            worker=share.worker,
        )
        if block is None:
            self.log.error(
                "cannot assemble block {hash}: job {job} has no transaction data",
                hash=block_hash,
                job=job.job_id,
            )
            return
        try:
            d = self.sink.block_found(block, share)
        except Exception:
            self.log.failure("share sink failed on block {hash}", hash=block_hash)
            return
        if isinstance(d, Deferred):
            d.addErrback(
                lambda f: self.log.failure("submitting block {hash} failed", f, hash=block_hash)
            )

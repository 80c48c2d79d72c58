"""The built-in CPU miner as a Twisted service: one Stratum connection, N hashing processes.

The parent holds the single Stratum connection (:mod:`otedama.miner.client`, reconnected by
a ``ClientService`` with back-off) and hands each job to every worker process
(:mod:`otedama.miner.worker`) with a disjoint extranonce2 range. Shares the workers find come
back over their stdout and are submitted by the session.
"""

from __future__ import annotations

import json
import os
import sys
from collections.abc import Callable
from dataclasses import dataclass
from typing import Any
from urllib.parse import urlsplit

from twisted.application.internet import ClientService, backoffPolicy
from twisted.application.service import Service
from twisted.internet.defer import Deferred, DeferredList
from twisted.internet.endpoints import clientFromString
from twisted.internet.interfaces import IStreamClientEndpoint
from twisted.internet.protocol import ProcessProtocol
from twisted.internet.task import LoopingCall
from twisted.logger import Logger
from twisted.python.failure import Failure

import otedama
from otedama.miner.client import (
    NewWork,
    Retarget,
    ShareResult,
    StratumClientFactory,
    StratumClientProtocol,
)
from otedama.miner.work import Work, WorkError, split_extranonce2

__all__ = [
    "CpuMinerService",
    "HashingPool",
    "MinerStats",
    "default_threads",
    "endpoint_from_url",
]


def default_threads(requested: int, cpus: int | None = None) -> int:
    """Worker count: ``requested``, or one less than the cores (at least 1) when it is 0."""
    if requested < 0:
        raise WorkError(f"threads must be 0 (automatic) or more, got {requested}")
    if requested:
        return requested
    cores = cpus if cpus is not None else (os.cpu_count() or 1)
    return max(1, cores - 1)


def endpoint_from_url(url: str) -> str:
    """A Twisted client endpoint string for ``stratum+tcp://host:port`` (or ``+ssl``/``+tls``).

    An endpoint string (``tcp:host=...:port=...``) is returned unchanged.
    """
    if "://" not in url:
        if url.startswith(("tcp:", "tls:", "ssl:", "unix:")):
            return url
        raise WorkError(f"pool URL {url!r} must look like stratum+tcp://host:port")
    parts = urlsplit(url)
    try:
        port = parts.port
    except ValueError:
        raise WorkError(f"pool URL {url!r} has a bad port") from None
    if not parts.hostname or port is None:
        raise WorkError(f"pool URL {url!r} must name a host and a port")
    host = parts.hostname.replace(":", r"\:")
    if parts.scheme in ("stratum+tcp", "stratum", "tcp"):
        return f"tcp:host={host}:port={port}"
    if parts.scheme in ("stratum+ssl", "stratum+tls", "ssl", "tls"):
        return f"tls:{host}:{port}"
    raise WorkError(f"pool URL {url!r}: unknown scheme {parts.scheme!r} (use stratum+tcp)")


def _worker_env() -> dict[str, str]:
    env = dict(os.environ)
    root = os.path.dirname(os.path.dirname(os.path.abspath(otedama.__file__)))
    env["PYTHONPATH"] = os.pathsep.join(p for p in (root, env.get("PYTHONPATH", "")) if p)
    return env


class _WorkerProcess(ProcessProtocol):
    """One hashing process: JSON lines in on stdin, JSON lines out on stdout."""

    log = Logger()

    def __init__(self, pool: HashingPool, index: int) -> None:
        self.pool = pool
        self.index = index
        self.ended: Deferred[None] = Deferred()
        self._buffer = b""
        self._err = b""

    def send(self, line: bytes) -> None:
        transport: Any = self.transport
        if transport is not None:
            transport.write(line)

    def outReceived(self, data: bytes) -> None:
        self._buffer += data
        *lines, self._buffer = self._buffer.split(b"\n")
        for line in lines:
            if line.strip():
                self.pool.worker_line(self, line)

    def errReceived(self, data: bytes) -> None:
        self._err += data
        *lines, self._err = self._err.split(b"\n")
        for line in lines:
            self.log.warn(
                "worker {index}: {line}", index=self.index, line=line.decode(errors="replace")
            )

    def processEnded(self, reason: Failure) -> None:
        self.pool.worker_ended(self, reason)
        self.ended.callback(None)


@dataclass(frozen=True)
class _Dispatched:
    job_id: str
    extranonce1: bytes


class HashingPool:
    """The worker processes and the work each is given."""

    log = Logger()

    def __init__(
        self,
        reactor: Any,
        threads: int,
        on_share: Callable[[dict[str, Any]], None],
        on_hashes: Callable[[int], None],
        *,
        python: str = sys.executable,
        nonce_limit: int = 1 << 32,
    ) -> None:
        if threads < 1:
            raise WorkError(f"a hashing pool needs at least 1 worker, got {threads}")
        self.reactor = reactor
        self.threads = threads
        self.on_share = on_share
        self.on_hashes = on_hashes
        self.python = python
        self.nonce_limit = nonce_limit
        self.workers: list[_WorkerProcess] = []
        self.running = False
        self._next_work_id = 1
        self._dispatched: dict[int, _Dispatched] = {}
        self._rounds: dict[tuple[str, bytes], int] = {}
        self._current: NewWork | None = None
        self._current_ids: list[int] = []

    def start(self) -> None:
        """Spawn the worker processes."""
        self.running = True
        for index in range(self.threads):
            self._spawn(index)

    def _spawn(self, index: int) -> None:
        proto = _WorkerProcess(self, index)
        self.reactor.spawnProcess(
            proto,
            self.python,
            [self.python, "-m", "otedama.miner.worker"],
            env=_worker_env(),
        )
        if index < len(self.workers):
            self.workers[index] = proto
        else:
            self.workers.append(proto)
        if self._current is not None:
            self.dispatch(self._current)

    def stop(self) -> Deferred[Any]:
        """Close every worker's stdin (which ends it); fire when all have exited."""
        self.running = False
        waits = []
        for proto in self.workers:
            waits.append(proto.ended)
            transport: Any = proto.transport
            if transport is not None:
                transport.closeStdin()
                killer = self.reactor.callLater(5, _kill, proto)
                proto.ended.addBoth(_cancel, killer)
        return DeferredList(waits)

    def dispatch(self, work: NewWork) -> None:
        """Give every worker its slice of ``work``."""
        self._current = work
        if work.clean:
            self._dispatched.clear()
        if len(self._dispatched) > 4096:
            for work_id in sorted(self._dispatched)[:2048]:
                del self._dispatched[work_id]
        # A job handed out again (new difficulty mask or extranonce) starts on fresh
        # extranonce2 values, so it never repeats a share already sent.
        # The count survives reconnects: a pool that resumes the same extranonce1 and job
        # must not see the same shares twice.
        key = (work.job.job_id, work.extranonce1)
        round_ = self._rounds.pop(key, 0)
        self._rounds[key] = round_ + 1
        while len(self._rounds) > 1024:
            del self._rounds[next(iter(self._rounds))]
        ranges = split_extranonce2(work.extranonce2_size, self.threads)
        self._current_ids = []
        for proto, (start, count) in zip(self.workers, ranges, strict=False):
            offset = round_ % count
            work_id = self._next_work_id
            self._next_work_id += 1
            unit = Work(
                work_id=work_id,
                job=work.job,
                extranonce1=work.extranonce1,
                extranonce2_size=work.extranonce2_size,
                extranonce2_start=start + offset,
                extranonce2_count=count - offset,
                version_mask=work.version_mask,
                target=work.target,
                nonce_limit=self.nonce_limit,
            )
            self._dispatched[work_id] = _Dispatched(work.job.job_id, work.extranonce1)
            self._current_ids.append(work_id)
            proto.send(unit.to_line())

    def retarget(self, change: Retarget) -> None:
        """Tell the workers a new share target for the job they are on."""
        if self._current is None or self._current.job.job_id != change.job_id:
            return
        for proto, work_id in zip(self.workers, self._current_ids, strict=False):
            line = {"retarget": {"work_id": work_id, "target": format(change.target, "x")}}
            proto.send(json.dumps(line).encode() + b"\n")

    def idle(self) -> None:
        """Stop hashing (no connection to submit to)."""
        self._current = None
        self._dispatched.clear()
        for proto in self.workers:
            proto.send(b'{"idle":true}\n')

    def extranonce1_of(self, work_id: int) -> bytes | None:
        """The extranonce1 a dispatched work used, or None if it is forgotten."""
        sent = self._dispatched.get(work_id)
        return sent.extranonce1 if sent is not None else None

    def worker_line(self, proto: _WorkerProcess, line: bytes) -> None:
        """One result line from a worker."""
        try:
            doc = json.loads(line)
            if "hashes" in doc:
                self.on_hashes(int(doc["hashes"]))
            elif "share" in doc:
                self.on_share(doc["share"])
            elif "exhausted" in doc:
                self.log.info("worker {index} scanned its whole range", index=proto.index)
        except (ValueError, KeyError, TypeError):
            self.log.failure(
                "worker {index} sent a bad line {line!r:.200}", index=proto.index, line=line
            )

    def worker_ended(self, proto: _WorkerProcess, reason: Failure) -> None:
        """A worker exited: respawn it after a pause unless the pool is stopping."""
        if not self.running:
            return
        self.log.warn(
            "worker {index} exited ({reason}); restarting it in a second",
            index=proto.index,
            reason=reason.value,
        )
        self.reactor.callLater(1.0, self._respawn, proto)

    def _respawn(self, proto: _WorkerProcess) -> None:
        if self.running and proto in self.workers:
            self._spawn(proto.index)


def _cancel(result: object, call: Any) -> object:
    if call.active():
        call.cancel()
    return result


def _kill(proto: _WorkerProcess) -> None:
    transport: Any = proto.transport
    if not proto.ended.called and transport is not None:
        try:
            transport.signalProcess("KILL")
        except OSError:
            pass


@dataclass
class MinerStats:
    """What the miner has done since it started."""

    accepted: int = 0
    rejected: int = 0
    stale_dropped: int = 0
    hashes: int = 0


class CpuMinerService(Service):
    """The built-in CPU miner: connect to a Stratum pool and hash on ``threads`` processes.

    ``endpoint`` is a pool URL (``stratum+tcp://host:port``), a Twisted client endpoint
    string, or an ``IStreamClientEndpoint``. ``threads=0`` uses one less than the cores.
    """

    log = Logger()

    def __init__(
        self,
        endpoint: str | IStreamClientEndpoint,
        user: str,
        threads: int,
        reactor: Any,
        *,
        password: str = "x",
        report_interval: float = 30.0,
        nonce_limit: int = 1 << 32,
    ) -> None:
        self.reactor = reactor
        self.user = user
        self.threads = default_threads(threads)
        self.endpoint: IStreamClientEndpoint = (
            clientFromString(reactor, endpoint_from_url(endpoint))
            if isinstance(endpoint, str)
            else endpoint
        )
        self.stats = MinerStats()
        self.report_interval = report_interval
        self.factory = StratumClientFactory(user, password, self, reactor)
        self.pool = HashingPool(
            reactor, self.threads, self._found, self._hashed, nonce_limit=nonce_limit
        )
        factory: Any = self.factory
        self.client = ClientService(
            self.endpoint, factory, retryPolicy=backoffPolicy(maxDelay=30.0), clock=reactor
        )
        self.protocol: StratumClientProtocol | None = None
        self._reporter = LoopingCall(self.report)
        self._reporter.clock = reactor
        self._window_hashes = 0
        self._window_start = 0.0

    # -- Service ------------------------------------------------------------------------------

    def startService(self) -> None:
        super().startService()
        self.log.info(
            "CPU miner starting: {threads} worker process(es) as {user}",
            threads=self.threads,
            user=self.user,
        )
        self.pool.start()
        self.client.startService()
        self._window_start = self.reactor.seconds()
        self._reporter.start(self.report_interval, now=False)

    def stopService(self) -> Deferred[Any]:
        super().stopService()
        if self._reporter.running:
            self._reporter.stop()
        stopped: Deferred[Any] = self.client.stopService()
        stopped.addCallback(lambda _: self.pool.stop())
        return stopped

    # -- MinerListener ------------------------------------------------------------------------

    def connected(self, protocol: StratumClientProtocol) -> None:
        self.log.info("connected to the pool")
        self.protocol = protocol

    def disconnected(self, protocol: StratumClientProtocol) -> None:
        if self.protocol is protocol:
            self.protocol = None
            self.pool.idle()
            self.log.info("disconnected from the pool; hashing paused until reconnected")

    def new_work(self, work: NewWork) -> None:
        self.pool.dispatch(work)

    def retarget(self, change: Retarget) -> None:
        self.pool.retarget(change)

    def share_result(self, result: ShareResult) -> None:
        if result.accepted:
            self.stats.accepted += 1
            self.log.debug(
                "share accepted (job {job}, {ms:.1f} ms); {accepted} accepted, {rejected} rejected",
                job=result.job_id,
                ms=result.latency * 1000,
                accepted=self.stats.accepted,
                rejected=self.stats.rejected,
            )
        else:
            self.stats.rejected += 1
            self.log.warn(
                "share rejected (job {job}): {error!r}; {accepted} accepted, {rejected} rejected",
                job=result.job_id,
                error=result.error,
                accepted=self.stats.accepted,
                rejected=self.stats.rejected,
            )

    # -- workers ------------------------------------------------------------------------------

    def _found(self, share: dict[str, Any]) -> None:
        protocol = self.protocol
        session = protocol.session if protocol is not None else None
        extranonce1 = self.pool.extranonce1_of(int(share["work_id"]))
        if protocol is None or session is None or extranonce1 != session.extranonce1:
            self.stats.stale_dropped += 1
            return
        before = session.stats.stale_dropped
        protocol.submit(
            str(share["job_id"]),
            str(share["extranonce2"]),
            str(share["ntime"]),
            str(share["nonce"]),
            int(share["version"]),
            int(str(share["hash"]), 16),
        )
        self.stats.stale_dropped += session.stats.stale_dropped - before

    def _hashed(self, count: int) -> None:
        self.stats.hashes += count
        self._window_hashes += count

    def hashrate(self) -> float:
        """Hashes per second since the last report."""
        elapsed = self.reactor.seconds() - self._window_start
        return self._window_hashes / elapsed if elapsed > 0 else 0.0

    def report(self) -> None:
        """Log hashrate and share counts, then start a new hashrate window."""
        self.log.info(
            "hashrate {rate:.1f} kH/s; shares {accepted} accepted, {rejected} rejected,"
            " {stale} stale dropped",
            rate=self.hashrate() / 1000,
            accepted=self.stats.accepted,
            rejected=self.stats.rejected,
            stale=self.stats.stale_dropped,
        )
        self._window_hashes = 0
        self._window_start = self.reactor.seconds()

"""Leadership among several nodes on one ledger: exactly one runs the ledger's duties.

Several nodes of one operator may share one PostgreSQL ledger (``docs/scale-out.md``).
Every node serves miners and ingests shares — share batches carry random keys and
blocks are unique by hash, so that is safe from any number of nodes — but the block
tracker and the payout processor must run on one node at a time: two payout processors
reconciling the same unfinished batch could both decide the wallet was never reached.

The leader is whoever holds a PostgreSQL *session-level* advisory lock
(:data:`LEADER_LOCK_KEY`) on a dedicated connection. :class:`LeaderService` polls
``pg_try_advisory_lock`` every ``check_interval`` seconds on one thread of its own; it
starts its children (the duties) when it gains the lock and stops them when it loses it.
When the leader dies, PostgreSQL ends its session and releases the lock:

- a killed process (its socket closed by the kernel): at once, so another node takes
  over at its next poll, within ``check_interval`` seconds;
- a vanished host or a network partition: the server notices the silent client through
  TCP keepalives set on the session (:data:`SERVER_KEEPALIVES`: idle 10 s, then 3 probes
  5 s apart, about 25 s), and another node takes over at its next poll after that.

A leader that cannot reach the database steps down itself: its poll fails (a dead link
is noticed within ``tcp_user_timeout``, :data:`CLIENT_TIMEOUT_MS`) and it stops its
duties. Stepping down (≤ ``check_interval`` + 10 s) is quicker than the server releasing
the lock (≈ 25 s), so two leaders never run at once by design; the payout batch
creation also takes its own transaction-level lock.

On SQLite there is only ever one node, so it is always the leader.
"""

from __future__ import annotations

from collections.abc import Callable
from typing import Any, cast

from sqlalchemy import Connection, Engine, create_engine, text
from sqlalchemy.pool import NullPool
from twisted.application.service import IService, MultiService, Service
from twisted.internet.defer import Deferred, DeferredList, maybeDeferred, succeed
from twisted.internet.interfaces import IReactorTime
from twisted.internet.task import LoopingCall
from twisted.internet.threads import deferToThreadPool
from twisted.logger import Logger
from twisted.python.threadpool import ThreadPool

from otedama.ledger.db import describe_error, is_sqlite, parse_url

__all__ = [
    "CLIENT_TIMEOUT_MS",
    "DEFAULT_CHECK_INTERVAL",
    "LEADER_LOCK_KEY",
    "SERVER_KEEPALIVES",
    "AdvisoryLock",
    "LeaderService",
]

#: The session-level advisory lock whose holder is the leader (ASCII "otedamal"); not the
#: payout batch's transaction-level ``PAYOUT_LOCK_KEY``.
LEADER_LOCK_KEY = 0x6F746564616D616C

#: Seconds between two polls of the lock (the takeover time after a killed leader).
DEFAULT_CHECK_INTERVAL = 5.0

#: Server-side TCP keepalives of the lock's session: a vanished leader's lock is released
#: after about idle + interval * count = 25 s of silence.
SERVER_KEEPALIVES = {
    "tcp_keepalives_idle": 10,
    "tcp_keepalives_interval": 5,
    "tcp_keepalives_count": 3,
}

#: Client-side bound on unacknowledged data (libpq ``tcp_user_timeout``, milliseconds): a
#: leader cut off from the database notices at its next poll within this time.
CLIENT_TIMEOUT_MS = 10_000

#: Server-side bound on one statement of the lock's session (milliseconds).
STATEMENT_TIMEOUT_MS = 5_000


class AdvisoryLock:
    """A session-level advisory lock held on one dedicated connection.

    Not thread-safe: every method is called from the same single worker thread.
    """

    log = Logger()

    def __init__(self, url: str, key: int = LEADER_LOCK_KEY, connect_timeout: int = 5) -> None:
        self.url = url
        self.key = key
        self.engine: Engine = create_engine(
            parse_url(url),
            poolclass=NullPool,
            connect_args={
                "connect_timeout": connect_timeout,
                "application_name": "otedama-leader",
                "keepalives": 1,
                "keepalives_idle": 10,
                "keepalives_interval": 5,
                "keepalives_count": 3,
                "tcp_user_timeout": CLIENT_TIMEOUT_MS,
            },
        )
        self._connection: Connection | None = None
        self.held = False
        #: Why the latest poll failed (None when it succeeded).
        self.error: str | None = None

    def _connect(self) -> Connection:
        connection = self.engine.connect().execution_options(isolation_level="AUTOCOMMIT")
        for name, value in SERVER_KEEPALIVES.items():
            connection.execute(text(f"SET {name} = {int(value)}"))
        connection.execute(text(f"SET statement_timeout = {STATEMENT_TIMEOUT_MS}"))
        return connection

    def poll(self) -> bool:
        """Hold the lock if we can: True when this connection holds it after the call.

        A failure (database unreachable, connection broken) drops the connection — and so
        the lock, should the server still think we hold it — and returns False.
        """
        try:
            if self._connection is None:
                self._connection = self._connect()
                self.held = False
            if self.held:
                self.held = bool(self._connection.execute(_HOLDS, {"key": self.key}).scalar())
            else:
                self.held = bool(self._connection.execute(_TRY, {"key": self.key}).scalar())
        except Exception as error:
            self.error = describe_error(error, self.url)
            self.drop()
            return False
        self.error = None
        return self.held

    def drop(self) -> None:
        """Close the connection without asking (the server releases the lock with it)."""
        connection, self._connection = self._connection, None
        self.held = False
        if connection is not None:
            try:
                connection.invalidate()
                connection.close()
            except Exception:
                self.log.debug("closing the leader lock's connection failed")

    def release(self) -> None:
        """Unlock and close: another node may take over at its next poll."""
        if self._connection is not None and self.held:
            try:
                self._connection.execute(text("SELECT pg_advisory_unlock(:key)"), {"key": self.key})
            except Exception:
                self.log.debug("unlocking the leader lock failed; closing its connection")
        self.drop()
        self.engine.dispose()


_TRY = text("SELECT pg_try_advisory_lock(:key)")
# A bigint advisory key shows in pg_locks as classid (high 32 bits), objid (low 32
# bits), objsubid 1.
_HOLDS = text(
    "SELECT count(*) FROM pg_locks WHERE locktype = 'advisory' AND granted"
    " AND pid = pg_backend_pid() AND objsubid = 1"
    " AND classid::bigint = (:key >> 32) AND objid::bigint = (:key & 4294967295)"
)


class LeaderService(MultiService):
    """Runs its children only while this node is the leader (see the module docstring).

    ``url`` is the ledger's database URL: on SQLite the node is always the leader.
    ``on_change(is_leader)`` is told every change of role (metrics, health).
    """

    log = Logger()

    def __init__(
        self,
        reactor: Any,
        url: str,
        check_interval: float = DEFAULT_CHECK_INTERVAL,
        *,
        key: int = LEADER_LOCK_KEY,
        clock: IReactorTime | None = None,
        on_change: Callable[[bool], object] | None = None,
    ) -> None:
        super().__init__()
        if check_interval <= 0:
            raise ValueError(f"leader check interval must be positive, got {check_interval}")
        self.setName("leader")
        self.reactor = reactor
        self.clock: IReactorTime = clock if clock is not None else cast(IReactorTime, reactor)
        self.check_interval = check_interval
        self.on_change = on_change
        self.is_leader = False
        #: Times this node became the leader (tests and metrics).
        self.terms = 0
        self.lock: AdvisoryLock | None = None if is_sqlite(url) else AdvisoryLock(url, key)
        self._threads: ThreadPool | None = None
        self._loop: LoopingCall | None = None
        self._polling: Deferred[Any] | None = None
        self._lock_trouble = False

    # -- service ---------------------------------------------------------------------

    def addService(self, service: IService) -> None:
        # Added while running: start it only if we lead (MultiService would always).
        running, self.running = self.running, self.running and self.is_leader
        try:
            super().addService(service)
        finally:
            self.running = running

    def privilegedStartService(self) -> None:
        Service.privilegedStartService(self)

    def startService(self) -> None:
        Service.startService(self)
        if self.lock is None:
            self._gain()
            return
        threads = ThreadPool(minthreads=1, maxthreads=1, name="otedama-leader")
        threads.start()
        self._threads = threads
        loop = LoopingCall(self._poll)
        loop.clock = self.clock
        self._loop = loop
        loop.start(self.check_interval, now=True).addErrback(
            lambda failure: self.log.failure("leader election loop stopped", failure)
        )

    def stopService(self) -> Deferred[None]:
        """Stop polling, stop the duties (awaiting their work), then release the lock."""
        Service.stopService(self)
        if self._loop is not None and self._loop.running:
            self._loop.stop()
        self._loop = None
        return Deferred.fromCoroutine(self._shutdown())

    async def _shutdown(self) -> None:
        if self._polling is not None:
            await self._polling
        await self._stop_duties()
        threads, self._threads = self._threads, None
        if threads is not None and self.lock is not None:
            await deferToThreadPool(self.reactor, threads, self.lock.release)
            threads.stop()

    # -- election --------------------------------------------------------------------

    def _poll(self) -> Deferred[None]:
        self._polling = Deferred.fromCoroutine(self._poll_once())
        return self._polling

    async def _poll_once(self) -> None:
        """One look at the lock; gain or lose the duties accordingly. Never raises."""
        lock, threads = self.lock, self._threads
        if lock is None or threads is None:
            return
        try:
            held = await deferToThreadPool(self.reactor, threads, lock.poll)
            if lock.error is not None and not self._lock_trouble:
                self._lock_trouble = True
                self.log.warn(
                    "cannot check the leader lock ({error}); not leading until it answers, "
                    "retrying every {interval:g} s",
                    error=lock.error,
                    interval=self.check_interval,
                )
            elif lock.error is None and self._lock_trouble:
                self._lock_trouble = False
                self.log.info("the leader lock's database answers again")
            if held and not self.is_leader and self.running:
                self._gain()
            elif not held and self.is_leader:
                await self._lose()
        except Exception:
            self.log.failure("leader election check failed; trying again next interval")

    def _gain(self) -> None:
        self.is_leader = True
        self.terms += 1
        self.log.info(
            "this node is now the ledger leader: running {duties}",
            duties=", ".join(str(child.name) for child in self) or "nothing",
        )
        for child in self:
            if not child.running:
                child.startService()
        self._changed()

    async def _lose(self) -> None:
        self.is_leader = False
        self.log.warn(
            "this node lost the ledger leader lock; stopping {duties} until it holds it again",
            duties=", ".join(str(child.name) for child in self) or "nothing",
        )
        await self._stop_duties()
        self._changed()

    async def _stop_duties(self) -> None:
        self.is_leader = False
        stopping = [
            maybeDeferred(child.stopService) for child in reversed(list(self)) if child.running
        ]
        if stopping:
            await DeferredList(stopping, consumeErrors=True)

    def _changed(self) -> None:
        if self.on_change is not None:
            try:
                self.on_change(self.is_leader)
            except Exception:
                self.log.failure("leader change callback failed")

    def when_polled(self) -> Deferred[Any]:
        """The poll in flight (or a fired Deferred): tests wait on it."""
        return self._polling if self._polling is not None else succeed(None)

"""The database engine and the thread pool every query runs on.

SQLAlchemy's engine is synchronous, so each query runs on a dedicated
:class:`~twisted.python.threadpool.ThreadPool` sized to the engine's connection pool
and comes back to the reactor as a Deferred (``deferToThreadPool``). PostgreSQL (via
psycopg2) is the production store; SQLite is the embedded default and gets exactly one
worker thread. Stopping refuses new work, waits for the queries in flight, and only
then stops the threads and disposes of the engine — stopping a thread pool with queries
in flight would block the reactor.
"""

from __future__ import annotations

from collections.abc import Callable
from dataclasses import dataclass
from pathlib import Path
from typing import Any, TypeVar

from alembic import command
from alembic.config import Config
from alembic.runtime.migration import MigrationContext
from alembic.script import ScriptDirectory
from sqlalchemy import Connection, Engine, create_engine, event
from sqlalchemy.engine import URL, make_url
from sqlalchemy.exc import ArgumentError, DBAPIError
from sqlalchemy.pool import StaticPool
from twisted.internet.defer import Deferred, DeferredList
from twisted.internet.interfaces import IReactorFromThreads
from twisted.internet.threads import deferToThreadPool
from twisted.logger import Logger
from twisted.python.threadpool import ThreadPool

T = TypeVar("T")

#: The embedded default: a SQLite file in the working directory's data dir.
DEFAULT_SQLITE_URL = "sqlite:///./data/otedama.sqlite"


class DatabaseError(Exception):
    """A database setting or state that makes the ledger unusable, with the reason."""


class DatabaseStopped(DatabaseError):
    """Work was submitted after the database began stopping."""


def parse_url(url: str) -> URL:
    """Parse a database URL, naming the bad value when it is not one."""
    try:
        parsed = make_url(url)
    except ArgumentError as e:
        raise DatabaseError(f"database.url: not a database URL: {redact(url)!r} ({e})") from e
    if parsed.drivername in ("postgresql", "postgres"):
        # SQLAlchemy 2.1 defaults to psycopg 3; Otedama ships psycopg2.
        parsed = parsed.set(drivername="postgresql+psycopg2")
    if parsed.get_backend_name() not in ("postgresql", "sqlite"):
        raise DatabaseError(
            f"database.url: unsupported database {parsed.get_backend_name()!r} in "
            f"{redact(url)!r}; use postgresql://… or sqlite:///…"
        )
    return parsed


def redact(url: str | URL) -> str:
    """The URL with any password hidden, for logs and error messages."""
    try:
        parsed = url if isinstance(url, URL) else make_url(url)
    except ArgumentError:
        return "<unparseable URL>"
    return parsed.render_as_string(hide_password=True)


def is_sqlite(url: str | URL) -> bool:
    """True when ``url`` names a SQLite database."""
    parsed = url if isinstance(url, URL) else parse_url(url)
    return parsed.get_backend_name() == "sqlite"


def make_engine(url: str, pool_size: int = 5, connect_timeout: int = 5) -> Engine:
    """A synchronous engine for ``url``.

    PostgreSQL gets a pool of ``pool_size`` connections with no overflow and a liveness
    check before each use, and gives up connecting after ``connect_timeout`` seconds.
    SQLite gets one connection, WAL journaling and foreign keys; the file's directory is
    created when missing.
    """
    if pool_size < 1:
        raise DatabaseError(f"database.pool_size: expected at least 1, got {pool_size}")
    parsed = parse_url(url)
    if is_sqlite(parsed):
        return _sqlite_engine(parsed)
    return create_engine(
        parsed,
        pool_size=pool_size,
        max_overflow=0,
        pool_pre_ping=True,
        pool_timeout=30,
        connect_args={
            "connect_timeout": connect_timeout,
            "application_name": "otedama",
            # A silent peer (network partition) is noticed in about 25 s instead of
            # holding a worker thread for the kernel's two hours.
            "keepalives": 1,
            "keepalives_idle": 10,
            "keepalives_interval": 5,
            "keepalives_count": 3,
        },
    )


def _sqlite_engine(parsed: URL) -> Engine:
    database = parsed.database or ""
    in_memory = database in ("", ":memory:") or database.startswith("file::memory:")
    if not in_memory:
        Path(database).expanduser().parent.mkdir(parents=True, exist_ok=True)
    kwargs: dict[str, Any] = {"connect_args": {"check_same_thread": False, "timeout": 30}}
    if in_memory:
        kwargs["poolclass"] = StaticPool
    else:
        kwargs.update(pool_size=1, max_overflow=0, pool_pre_ping=True)
    engine = create_engine(parsed, **kwargs)

    @event.listens_for(engine, "connect")
    def _pragmas(dbapi_connection: Any, _record: Any) -> None:
        cursor = dbapi_connection.cursor()
        if not in_memory:
            cursor.execute("PRAGMA journal_mode=WAL")
            cursor.execute("PRAGMA synchronous=NORMAL")
        cursor.execute("PRAGMA foreign_keys=ON")
        cursor.close()

    return engine


class Database:
    """An engine plus the dedicated thread pool its queries run on.

    ``run(fn)`` calls ``fn(connection)`` inside one transaction on a worker thread and
    returns its result; ``call(fn)`` runs any blocking function on the same threads.
    Call :meth:`start` before use and await :meth:`stop` at shutdown.
    """

    log = Logger()

    def __init__(
        self,
        reactor: IReactorFromThreads,
        url: str,
        pool_size: int = 5,
        connect_timeout: int = 5,
    ) -> None:
        self.url = parse_url(url)
        self.is_sqlite = is_sqlite(self.url)
        self.pool_size = 1 if self.is_sqlite else pool_size
        self.engine = make_engine(url, self.pool_size, connect_timeout)
        self._reactor = reactor
        self._threads = ThreadPool(minthreads=0, maxthreads=self.pool_size, name="otedama-ledger")
        self._in_flight: set[Deferred[Any]] = set()
        self._started = False
        self._stopping = False

    @property
    def display_url(self) -> str:
        """The URL without its password."""
        return redact(self.url)

    def start(self) -> None:
        """Start the worker threads (idempotent)."""
        if not self._started:
            self._threads.start()
            self._started = True

    def call(self, fn: Callable[..., T], *args: Any) -> Deferred[T]:
        """Run the blocking ``fn(*args)`` on a worker thread; fails once stopping began."""
        if self._stopping:
            raise DatabaseStopped(f"the ledger database {self.display_url} is stopping")
        if not self._started:
            raise DatabaseError("Database.start() was not called")
        d = deferToThreadPool(self._reactor, self._threads, fn, *args)
        self._in_flight.add(d)

        def _done(result: T) -> T:
            self._in_flight.discard(d)
            return result

        d.addBoth(_done)
        return d

    async def run(self, fn: Callable[[Connection], T]) -> T:
        """Run ``fn(connection)`` in one transaction on a worker thread; commit on return."""
        return await self.call(self._transaction, fn)

    def _transaction(self, fn: Callable[[Connection], T]) -> T:
        with self.engine.begin() as connection:
            return fn(connection)

    @property
    def in_flight(self) -> int:
        """How many calls are running or queued."""
        return len(self._in_flight)

    async def stop(self) -> None:
        """Refuse new work, wait for work in flight, then stop the threads and the engine."""
        if self._stopping:
            return
        self._stopping = True
        while self._in_flight:
            await DeferredList(list(self._in_flight), consumeErrors=True)
        if self._started:
            await deferToThreadPool(self._reactor, self._threads, self.engine.dispose)
            self._threads.stop()
        else:
            self.engine.dispose()


def describe_error(error: BaseException, url: str | URL) -> str:
    """Say precisely why the database at ``url`` cannot be used, for operators.

    Recognises the usual connection failures (refused, unknown host, timeout,
    authentication, missing database) and otherwise gives the driver's first line.
    """
    parsed = url if isinstance(url, URL) else make_url(url)
    original = error.orig if isinstance(error, DBAPIError) else error
    text = str(original).strip()
    first = text.splitlines()[0] if text else type(original).__name__
    where = f"{parsed.host or 'localhost'}:{parsed.port or 5432}"
    lower = text.lower()
    if parsed.get_backend_name() == "sqlite":
        if "unable to open database file" in lower:
            return f"cannot open the SQLite file {parsed.database!r} (check the path and its permissions)"
        return f"SQLite {parsed.database!r}: {first}"
    if "connection refused" in lower:
        return f"connection refused at {where} (is PostgreSQL running and listening there?)"
    if "server closed the connection" in lower or "connection already closed" in lower:
        return f"lost the connection to {where} (the server closed it)"
    if "could not translate host name" in lower or "name or service not known" in lower:
        return f"cannot resolve the database host {parsed.host!r}"
    if "timeout expired" in lower or "timed out" in lower:
        return f"timed out connecting to {where}"
    if "password authentication failed" in lower or ("role" in lower and "does not exist" in lower):
        detail = text.split("FATAL:", 1)[-1].strip().splitlines()[0]
        return f"authentication failed for user {parsed.username!r} at {where}: {detail}"
    if "database" in lower and "does not exist" in lower:
        return (
            f"database {parsed.database!r} does not exist on {where} "
            f"(create it: createdb -h {parsed.host or 'localhost'} -p {parsed.port or 5432} "
            f"-U {parsed.username or 'postgres'} {parsed.database})"
        )
    if "fatal:" in lower:
        return (
            f"{where} refused the connection: {text.split('FATAL:', 1)[1].strip().splitlines()[0]}"
        )
    return f"{where}: {first}"


# --- migrations ------------------------------------------------------------------------

#: The Alembic scripts shipped inside the package.
MIGRATIONS_DIR = Path(__file__).resolve().parent / "migrations"


def alembic_config(connection: Connection | None = None, url: str | None = None) -> Config:
    """An Alembic config built in code: our script dir, and the connection or URL to use."""
    config = Config()
    config.set_main_option("script_location", str(MIGRATIONS_DIR))
    if url is not None:
        config.set_main_option("sqlalchemy.url", url.replace("%", "%%"))
    if connection is not None:
        config.attributes["connection"] = connection
    return config


def head_revision() -> str:
    """The newest migration shipped with this version of Otedama."""
    head = ScriptDirectory.from_config(alembic_config()).get_current_head()
    if head is None:
        raise DatabaseError(f"no migrations found in {MIGRATIONS_DIR}")
    return str(head)


def current_revision(connection: Connection) -> str | None:
    """The migration the database is at, or None for an empty database."""
    revision = MigrationContext.configure(connection).get_current_revision()
    return None if revision is None else str(revision)


def upgrade(connection: Connection, revision: str = "head") -> None:
    """Apply the shipped migrations up to ``revision`` on ``connection``."""
    command.upgrade(alembic_config(connection), revision)


@dataclass(frozen=True)
class MigrationState:
    """Where the database schema stands compared with this version's migrations."""

    current: str | None
    head: str

    @property
    def is_current(self) -> bool:
        return self.current == self.head

    def describe(self) -> str:
        if self.is_current:
            return f"schema is current (revision {self.head})"
        if self.current is None:
            return f"schema is empty (no migrations applied; newest is {self.head})"
        return f"schema is at revision {self.current}, this version needs {self.head}"


def migration_state(connection: Connection) -> MigrationState:
    """The database's migration state."""
    return MigrationState(current_revision(connection), head_revision())

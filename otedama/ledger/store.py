"""``LedgerStore``: the ledger's async face to the rest of the node.

One object owns the database (engine + dedicated thread pool), the share batcher and
its spool. Everything that touches money runs as a function of a SQLAlchemy
``Connection`` inside one transaction on a worker thread, through :meth:`LedgerStore.run`.
"""

from __future__ import annotations

from collections.abc import Callable
from typing import Any, TypeVar

from sqlalchemy import Connection
from twisted.internet.defer import Deferred
from twisted.internet.interfaces import IReactorFromThreads
from twisted.logger import Logger

from otedama.ledger.db import Database, DatabaseError, MigrationState, migration_state

T = TypeVar("T")


class SchemaOutdated(DatabaseError):
    """The database schema is not the one this version needs."""


class LedgerStore:
    """The ledger: shares, blocks, credits and payouts in one database.

    ``run(fn)`` calls ``fn(connection)`` in one transaction on a worker thread and
    returns its result, so callers (the payout processor, the API) compose their own
    queries against :mod:`otedama.ledger.tables` with the same guarantees.
    """

    log = Logger()

    def __init__(
        self,
        reactor: IReactorFromThreads,
        url: str,
        pool_size: int = 5,
        *,
        config_path: str = "/etc/otedama.yaml",
    ) -> None:
        self.db = Database(reactor, url, pool_size)
        self.config_path = config_path

    def start(self) -> None:
        """Start the worker threads."""
        self.db.start()

    async def stop(self) -> None:
        """Refuse new work, finish what is in flight, release threads and connections."""
        await self.db.stop()

    async def run(self, fn: Callable[[Connection], T]) -> T:
        """Run ``fn(connection)`` in one transaction on a worker thread; commit on return."""
        return await self.db.run(fn)

    def run_deferred(self, fn: Callable[[Connection], T]) -> Deferred[T]:
        """:meth:`run` as a Deferred, for Twisted callers."""
        return Deferred.fromCoroutine(self.run(fn))

    async def migration_state(self) -> MigrationState:
        """Where the schema stands compared with this version's migrations."""
        return await self.run(migration_state)

    async def check_schema(self) -> MigrationState:
        """Refuse to start on an outdated or empty schema, naming the command that fixes it."""
        state = await self.migration_state()
        if not state.is_current:
            raise SchemaOutdated(
                f"ledger database {self.db.display_url}: {state.describe()}; "
                f"run `otedama migrate up --config {self.config_path}` first"
            )
        return state

    def describe(self) -> dict[str, Any]:
        """A short description for logs: the URL without password and the pool size."""
        return {"url": self.db.display_url, "pool_size": self.db.pool_size}

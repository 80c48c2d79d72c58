"""Database fixtures for the ledger tests: real PostgreSQL and SQLite.

PostgreSQL runs on this machine (``postgresql://postgres@127.0.0.1:5432``, trust auth).
Each test session creates its own database with a unique name and drops it at the end;
each test starts from empty tables. ``store`` is parametrized over both databases.
"""

from __future__ import annotations

import os
import uuid
from collections.abc import AsyncIterator, Callable, Iterator
from pathlib import Path
from typing import Any

import psycopg2
import pytest
import pytest_twisted
from sqlalchemy import text
from twisted.internet import task

from otedama.ledger import db
from otedama.ledger.store import LedgerStore
from otedama.ledger.tables import metadata

PG_SERVER = os.environ.get("OTEDAMA_TEST_PG", "postgresql://postgres@127.0.0.1:5432")
PG_DSN = "host=127.0.0.1 port=5432 user=postgres dbname=postgres"
START_HINT = (
    "PostgreSQL is not answering at 127.0.0.1:5432, and the ledger tests need it.\n"
    "Start it with:  pg_ctlcluster 15 main start   (or: service postgresql start)\n"
)


def _admin() -> psycopg2.extensions.connection:
    try:
        connection = psycopg2.connect(PG_DSN, connect_timeout=5)
    except psycopg2.OperationalError as e:
        pytest.fail(f"{START_HINT}({str(e).strip()})", pytrace=False)
    connection.autocommit = True
    return connection


@pytest.fixture(scope="session")
def make_pg_database() -> Iterator[Callable[[], str]]:
    """A factory of fresh, empty PostgreSQL databases; all are dropped after the session."""
    admin = _admin()
    created: list[str] = []

    def make() -> str:
        name = f"otedama_test_{os.getpid()}_{uuid.uuid4().hex[:8]}"
        with admin.cursor() as cursor:
            cursor.execute(f'CREATE DATABASE "{name}"')
        created.append(name)
        return f"{PG_SERVER}/{name}"

    yield make
    with admin.cursor() as cursor:
        for name in created:
            cursor.execute(f'DROP DATABASE IF EXISTS "{name}" WITH (FORCE)')
    admin.close()


def migrate(url: str) -> str:
    """Apply the shipped migrations to the database at ``url``; returns the URL."""
    engine = db.make_engine(url, pool_size=1)
    with engine.begin() as connection:
        db.upgrade(connection)
    engine.dispose()
    return url


@pytest.fixture(scope="session")
def make_migrated_pg_database(make_pg_database: Callable[[], str]) -> Callable[[], str]:
    """A factory of fresh PostgreSQL databases with the newest schema."""
    return lambda: migrate(make_pg_database())


@pytest.fixture(scope="session")
def pg_url(make_migrated_pg_database: Callable[[], str]) -> str:
    """The session's PostgreSQL database, migrated to the newest schema."""
    return make_migrated_pg_database()


def _empty_tables(url: str) -> None:
    engine = db.make_engine(url, pool_size=1)
    names = ", ".join(t.name for t in metadata.sorted_tables)
    with engine.begin() as connection:
        connection.execute(text(f"TRUNCATE {names} RESTART IDENTITY CASCADE"))
    engine.dispose()


@pytest.fixture(params=["postgresql", "sqlite"])
def db_url(request: pytest.FixtureRequest, tmp_path: Path) -> str:
    """A migrated, empty ledger database: the session's PostgreSQL one, or a SQLite file."""
    if request.param == "postgresql":
        url: str = request.getfixturevalue("pg_url")
        _empty_tables(url)
        return url
    return migrate(f"sqlite:///{tmp_path / 'ledger.sqlite'}")


@pytest.fixture
def clock() -> task.Clock:
    """The store's clock for batching timers (the reactor still runs the threads)."""
    return task.Clock()


@pytest_twisted.async_yield_fixture
async def make_store(tmp_path: Path) -> AsyncIterator[Callable[..., LedgerStore]]:
    """A factory of started stores (manual clock for their timers), all stopped after."""
    from twisted.internet import reactor

    made: list[LedgerStore] = []

    def make(url: str, spool_dir: Path | None = None, **options: Any) -> LedgerStore:
        ledger = LedgerStore(
            reactor,  # type: ignore[arg-type]
            url,
            spool_dir=spool_dir or tmp_path / "spool",
            clock=options.pop("clock", None) or task.Clock(),
            **options,
        )
        ledger.start()
        made.append(ledger)
        return ledger

    yield make
    for ledger in made:
        await ledger.stop()


@pytest_twisted.async_yield_fixture
async def store(db_url: str, tmp_path: Path, clock: task.Clock) -> AsyncIterator[LedgerStore]:
    """A started LedgerStore on each database, stopped after the test."""
    from twisted.internet import reactor

    ledger = LedgerStore(
        reactor,  # type: ignore[arg-type]
        db_url,
        pool_size=4,
        spool_dir=tmp_path / "spool",
        batch_size=100,
        clock=clock,
    )
    ledger.start()
    await ledger.batcher.replay_now()
    yield ledger
    await ledger.stop()


@pytest.fixture
def make_config(tmp_path: Path) -> Callable[[str], str]:
    """Write a config file naming a database URL; returns its path."""

    def make(url: str) -> str:
        path = tmp_path / "otedama.yaml"
        path.write_text(f"database:\n  url: {url}\n", encoding="utf-8")
        return str(path)

    return make

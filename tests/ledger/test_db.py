"""Storage: engines, the worker thread pool, migrations and the database commands."""

from __future__ import annotations

import threading
from collections.abc import Callable
from pathlib import Path

import pytest
import pytest_twisted
from alembic.autogenerate import compare_metadata
from alembic.runtime.migration import MigrationContext
from sqlalchemy import Connection, inspect, text
from twisted.internet.defer import Deferred

from otedama import cli
from otedama.commands import config as commands
from otedama.ledger import db
from otedama.ledger.store import LedgerStore, SchemaOutdated
from otedama.ledger.tables import metadata


@pytest.fixture(params=["postgresql", "sqlite"])
def empty_url(
    request: pytest.FixtureRequest, tmp_path: Path, make_pg_database: Callable[[], str]
) -> str:
    """A database with no tables at all."""
    if request.param == "postgresql":
        return make_pg_database()
    return f"sqlite:///{tmp_path / 'empty.sqlite'}"


def test_migrate_up_builds_the_schema_from_empty_and_status_says_current(
    empty_url: str, make_config: Callable[[str], str], capsys: pytest.CaptureFixture[str]
) -> None:
    config = make_config(empty_url)
    assert cli.main(["migrate", "status", "--config", config]) == 1
    out = capsys.readouterr().out
    assert "schema is empty" in out
    assert f"run: otedama migrate up --config {config}" in out

    assert cli.main(["migrate", "up", "--config", config]) == 0
    head = db.head_revision()
    assert f"migrated from an empty schema to {head}" in capsys.readouterr().out

    assert cli.main(["migrate", "status", "--config", config]) == 0
    assert f"schema is current (revision {head})" in capsys.readouterr().out
    assert cli.main(["migrate", "up", "--config", config]) == 0
    assert "nothing to do" in capsys.readouterr().out


def test_the_migrated_schema_matches_the_table_definitions(db_url: str) -> None:
    engine = db.make_engine(db_url, pool_size=1)
    with engine.connect() as connection:
        context = MigrationContext.configure(connection, opts={"compare_type": True})
        assert compare_metadata(context, metadata) == []
        tables = set(inspect(connection).get_table_names())
    engine.dispose()
    assert tables == {t.name for t in metadata.sorted_tables} | {"alembic_version"}


def test_config_test_db_reports_version_latency_and_schema(
    db_url: str, make_config: Callable[[str], str], capsys: pytest.CaptureFixture[str]
) -> None:
    config = make_config(db_url)
    assert cli.main(["config", "test-db", "--config", config]) == 0
    out = capsys.readouterr().out
    assert "server:   PostgreSQL 15" in out or "server:   SQLite 3." in out
    assert "latency:  " in out and " ms (median SELECT 1 round trip)" in out
    assert f"schema:   schema is current (revision {db.head_revision()})" in out
    assert out.rstrip().endswith("OK")


@pytest.mark.parametrize(
    ("url", "reason"),
    [
        (
            "postgresql://postgres@127.0.0.1:1/otedama",
            "connection refused at 127.0.0.1:1 (is PostgreSQL running and listening there?)",
        ),
        (
            "postgresql://postgres@127.0.0.1:5432/otedama_no_such_db",
            "database 'otedama_no_such_db' does not exist on 127.0.0.1:5432",
        ),
        (
            "postgresql://otedama_no_such_role@127.0.0.1:5432/postgres",
            "authentication failed for user 'otedama_no_such_role' at 127.0.0.1:5432",
        ),
        (
            "postgresql://postgres@no-such-host.invalid:5432/otedama",
            "cannot resolve the database host 'no-such-host.invalid'",
        ),
    ],
)
def test_config_test_db_says_precisely_why_it_cannot_connect(
    url: str, reason: str, make_config: Callable[[str], str], capsys: pytest.CaptureFixture[str]
) -> None:
    config = make_config(url)
    args = cli.build_parser().parse_args(["config", "test-db", "--config", config])
    assert commands.test_db(args) == 1
    err = capsys.readouterr().err
    assert reason in err
    assert "cannot use the database postgresql+psycopg2://" in err


def test_test_db_on_an_empty_database_names_the_migrate_command(
    make_pg_database: Callable[[], str],
    make_config: Callable[[str], str],
    capsys: pytest.CaptureFixture[str],
) -> None:
    config = make_config(make_pg_database())
    assert cli.main(["config", "test-db", "--config", config]) == 1
    assert f"run: otedama migrate up --config {config}" in capsys.readouterr().out


@pytest_twisted.ensureDeferred
async def test_check_schema_refuses_an_outdated_schema_naming_the_fix(
    empty_url: str, tmp_path: Path
) -> None:
    from twisted.internet import reactor

    store = LedgerStore(
        reactor,  # type: ignore[arg-type]
        empty_url,
        spool_dir=tmp_path / "spool",
        config_path="/srv/pool.yaml",
    )
    store.start()
    try:
        with pytest.raises(SchemaOutdated, match=r"otedama migrate up --config /srv/pool\.yaml"):
            await store.check_schema()
        await store.run(db.upgrade)
        assert (await store.check_schema()).is_current
    finally:
        await store.stop()


def test_bad_database_urls_are_refused_naming_the_value() -> None:
    with pytest.raises(db.DatabaseError, match="unsupported database 'mysql'"):
        db.parse_url("mysql://u:secret@host/db")
    with pytest.raises(db.DatabaseError, match="not a database URL"):
        db.parse_url("not a url")
    with pytest.raises(db.DatabaseError, match="pool_size: expected at least 1, got 0"):
        db.make_engine("sqlite://", pool_size=0)


def test_passwords_never_appear_in_displayed_urls() -> None:
    assert "secret" not in db.redact("postgresql://u:secret@h/db")
    assert db.parse_url("postgresql://u@h/db").drivername == "postgresql+psycopg2"


def test_sqlite_gets_one_thread_and_wal_journaling(tmp_path: Path) -> None:
    from twisted.internet import reactor

    url = f"sqlite:///{tmp_path / 'sub' / 'ledger.sqlite'}"
    database = db.Database(reactor, url, pool_size=8)  # type: ignore[arg-type]
    assert database.pool_size == 1
    with database.engine.connect() as connection:
        assert connection.execute(text("PRAGMA journal_mode")).scalar() == "wal"
        assert connection.execute(text("PRAGMA foreign_keys")).scalar() == 1
    database.engine.dispose()
    assert (tmp_path / "sub").is_dir()


@pytest_twisted.ensureDeferred
async def test_stopping_waits_for_work_in_flight_and_refuses_new_work(db_url: str) -> None:
    from twisted.internet import reactor

    database = db.Database(reactor, db_url, pool_size=2)  # type: ignore[arg-type]
    database.start()
    release = threading.Event()
    started = threading.Event()

    def slow(connection: Connection) -> int:
        started.set()
        assert release.wait(10)
        return int(connection.execute(text("SELECT 41 + 1")).scalar_one())

    in_flight = database.call(database._transaction, slow)
    assert started.wait(10)
    stopping = Deferred.fromCoroutine(database.stop())
    assert not stopping.called  # the query is still running
    with pytest.raises(db.DatabaseStopped, match="is stopping"):
        database.call(lambda: None)
    release.set()
    assert await in_flight == 42
    await stopping
    assert database.in_flight == 0


@pytest_twisted.ensureDeferred
async def test_check_schema_says_why_an_unreachable_database_cannot_be_used(
    tmp_path: Path,
) -> None:
    from twisted.internet import reactor

    store = LedgerStore(
        reactor,  # type: ignore[arg-type]
        "postgresql://otedama:secret@127.0.0.1:1/otedama",
        spool_dir=tmp_path / "spool",
    )
    store.start()
    try:
        with pytest.raises(db.DatabaseError) as raised:
            await store.check_schema()
    finally:
        await store.stop()
    message = str(raised.value)
    assert "connection refused at 127.0.0.1:1" in message
    assert "secret" not in message

"""Fresh PostgreSQL databases for the scale-out and drill tests (shared by their conftests).

PostgreSQL runs at 127.0.0.1:5432 (trust auth); each database made here is dropped when
the generator is closed.
"""

from __future__ import annotations

import os
import uuid
from collections.abc import Callable, Iterator

import psycopg2
import pytest

from otedama.ledger.db import make_engine, upgrade

PG_SERVER = os.environ.get("OTEDAMA_TEST_PG", "postgresql://postgres@127.0.0.1:5432")
PG_DSN = "host=127.0.0.1 port=5432 user=postgres dbname=postgres"


def pg_databases() -> Iterator[Callable[[], str]]:
    """Yield a factory of fresh, empty databases (URLs); drop them all afterwards."""
    try:
        admin = psycopg2.connect(PG_DSN, connect_timeout=5)
    except psycopg2.OperationalError as e:
        pytest.fail(f"PostgreSQL is not answering at 127.0.0.1:5432 ({e})", pytrace=False)
    admin.autocommit = True
    created: list[str] = []

    def make() -> str:
        name = f"otedama_scale_{os.getpid()}_{uuid.uuid4().hex[:8]}"
        with admin.cursor() as cursor:
            cursor.execute(f'CREATE DATABASE "{name}"')
        created.append(name)
        return f"{PG_SERVER}/{name}"

    try:
        yield make
    finally:
        with admin.cursor() as cursor:
            for name in created:
                cursor.execute(f'DROP DATABASE IF EXISTS "{name}" WITH (FORCE)')
        admin.close()


def migrated(url: str) -> str:
    """Apply the shipped migrations to the database at ``url``; returns the URL."""
    engine = make_engine(url, pool_size=1)
    with engine.begin() as connection:
        upgrade(connection)
    engine.dispose()
    return url

"""Fixtures for the scale-out tests: fresh PostgreSQL databases on this machine.

PostgreSQL runs at 127.0.0.1:5432 (trust auth); each database made here is dropped at the
end of the session.
"""

from __future__ import annotations

import os
import sys
import uuid
from collections.abc import Callable, Iterator
from pathlib import Path

import psycopg2
import pytest

PG_SERVER = os.environ.get("OTEDAMA_TEST_PG", "postgresql://postgres@127.0.0.1:5432")
PG_DSN = "host=127.0.0.1 port=5432 user=postgres dbname=postgres"


@pytest.fixture(scope="session")
def fresh_pg_database() -> Iterator[Callable[[], str]]:
    """A factory of fresh, empty PostgreSQL databases (URLs); all dropped after the session."""
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

    yield make
    with admin.cursor() as cursor:
        for name in created:
            cursor.execute(f'DROP DATABASE IF EXISTS "{name}" WITH (FORCE)')
    admin.close()


# The devnet process and the ledger helpers of the payout crash tests are shared with
# them (tests/ledger has no package: put it on the path the way pytest does for its own).
LEDGER_TESTS = str(Path(__file__).resolve().parents[1] / "ledger")
if LEDGER_TESTS not in sys.path:
    sys.path.insert(0, LEDGER_TESTS)

"""Fixtures for the fault drills: fresh PostgreSQL databases (shared with tests/scale) and
the TCP forwarder of the ledger's fault tests."""

from __future__ import annotations

import sys
from collections.abc import Callable, Iterator
from pathlib import Path

import pytest

TESTS = Path(__file__).resolve().parents[1]
for helpers in (TESTS / "scale", TESTS / "ledger"):
    if str(helpers) not in sys.path:
        sys.path.insert(0, str(helpers))

from pgdb import migrated, pg_databases  # noqa: E402


@pytest.fixture(scope="session")
def migrated_pg_database() -> Iterator[Callable[[], str]]:
    """A factory of fresh, migrated PostgreSQL databases (URLs); all dropped afterwards."""
    databases = pg_databases()
    make = next(databases)
    try:
        yield lambda: migrated(make())
    finally:
        databases.close()

"""Fixtures for the scale-out tests: fresh PostgreSQL databases on this machine."""

from __future__ import annotations

import sys
from collections.abc import Callable, Iterator
from pathlib import Path

import pytest
from pgdb import pg_databases

# The devnet process and the ledger helpers of the payout crash tests are shared with
# them (tests/ledger has no package: put it on the path the way pytest does for its own).
LEDGER_TESTS = str(Path(__file__).resolve().parents[1] / "ledger")
if LEDGER_TESTS not in sys.path:
    sys.path.insert(0, LEDGER_TESTS)


@pytest.fixture(scope="session")
def fresh_pg_database() -> Iterator[Callable[[], str]]:
    """A factory of fresh, empty PostgreSQL databases (URLs); all dropped after the session."""
    yield from pg_databases()

"""Fixtures for the guard tests: the Stratum test stack behind a guard."""

from __future__ import annotations

from tests.stratum.conftest import log_events, make_stack  # noqa: F401  (fixtures)

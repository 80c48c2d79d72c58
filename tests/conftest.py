"""Shared test fixtures and paths."""

from __future__ import annotations

from pathlib import Path
from typing import Any

import pytest
from hypothesis import HealthCheck, settings

# Hypothesis checks what a property does, never how fast: its default 200 ms deadline per
# example turned a machine busy with other work into a failed property (seen on
# tests/node/test_rpc.py under a load average of 10+). Timing belongs to the benchmarks.
settings.register_profile("otedama", deadline=None, suppress_health_check=[HealthCheck.too_slow])
settings.load_profile("otedama")

ROOT = Path(__file__).resolve().parents[1]
#: Real-node test data, copied from the team's shared vectors (see tests/vectors/README.md).
VECTORS = ROOT / "tests" / "vectors"


@pytest.fixture
def vectors() -> Path:
    assert VECTORS.is_dir(), f"test vectors missing at {VECTORS}"
    return VECTORS


def notify_params(job: dict[str, Any]) -> list[Any]:
    """``mining.notify`` params from a job of ``stratum/crafted-summary.json``."""
    keys = ("job_id", "prevhash", "coinb1", "coinb2", "branch", "version", "nbits", "ntime")
    return [*(job[key] for key in keys), job["clean_jobs"]]

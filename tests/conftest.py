"""Shared test fixtures and paths."""

from __future__ import annotations

from pathlib import Path
from typing import Any

import pytest

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

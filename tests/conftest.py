"""Shared test fixtures and paths."""

from __future__ import annotations

from pathlib import Path

import pytest

ROOT = Path(__file__).resolve().parents[1]
#: Real-node test data, copied from the team's shared vectors (see tests/vectors/README.md).
VECTORS = ROOT / "tests" / "vectors"


@pytest.fixture
def vectors() -> Path:
    assert VECTORS.is_dir(), f"test vectors missing at {VECTORS}"
    return VECTORS

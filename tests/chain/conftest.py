"""Shared fixtures for the chain-core tests: the real-node vectors folder."""

from __future__ import annotations

import json
from pathlib import Path
from typing import Any

VECTORS = Path(__file__).resolve().parents[1] / "vectors"
"""The real-node test vectors, copied into ``tests/vectors`` (see its README)."""

if not VECTORS.is_dir():
    raise RuntimeError(
        f"test vectors folder {VECTORS} is missing; the chain tests need tests/vectors"
    )


def load_json(relative: str) -> Any:
    """A vector file parsed as JSON (fails loudly when the file is missing)."""
    return json.loads((VECTORS / relative).read_text())

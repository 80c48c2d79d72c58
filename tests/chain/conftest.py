"""Shared fixtures for the chain-core tests: the real-node vectors folder."""

from __future__ import annotations

import json
from pathlib import Path
from typing import Any

VECTORS = Path(__file__).resolve().parents[2] / ".." / "shared" / "vectors"
"""The team's real-node test vectors (``/work/shared/vectors`` next to the repository)."""

if not VECTORS.is_dir():
    raise RuntimeError(
        f"test vectors folder {VECTORS} is missing; the chain tests need the shared vectors"
    )


def load_json(relative: str) -> Any:
    """A vector file parsed as JSON (fails loudly when the file is missing)."""
    return json.loads((VECTORS / relative).read_text())

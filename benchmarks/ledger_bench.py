"""Benchmark: share ingest into the ledger database (PostgreSQL by default).

A thin wrapper around ``otedama bench ledger`` (same options, same code). Run from the
repository root, for example::

    .venv/bin/python benchmarks/ledger_bench.py --shares 200000
    .venv/bin/python benchmarks/ledger_bench.py --shares 200000 --batch-size 100
    .venv/bin/python benchmarks/ledger_bench.py --url sqlite:///./data/bench.sqlite

By default it creates a scratch database on postgresql://postgres@127.0.0.1:5432 and
drops it afterwards. See docs/benchmarks.md ("Ledger") for the figures.
"""

from __future__ import annotations

import sys
from pathlib import Path

sys.path.insert(0, str(Path(__file__).resolve().parent.parent))

from otedama.cli import main

if __name__ == "__main__":
    sys.exit(main(["bench", "ledger", *sys.argv[1:]]))

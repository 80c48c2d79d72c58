"""Benchmark: the Stratum server's share throughput, latency, memory and notify fan-out.

A thin wrapper around ``otedama bench stratum`` (same options, same code). Run from the
repository root, for example::

    .venv/bin/python benchmarks/stratum_bench.py --connections 1000 --duration 10
    .venv/bin/python benchmarks/stratum_bench.py --connections 1000 --rate 5000
    .venv/bin/python benchmarks/stratum_bench.py --connections 100 --duration 0 \\
        --fanout-miners 15000 --blocks 10

See docs/benchmarks.md for the figures measured on the team's machine.
"""

from __future__ import annotations

import sys
from pathlib import Path

sys.path.insert(0, str(Path(__file__).resolve().parent.parent))

from otedama.cli import main

if __name__ == "__main__":
    sys.exit(main(["bench", "stratum", *sys.argv[1:]]))

"""``otedama bench``: a command group whose sub-commands come from ``BENCH_MODULES``.

Each benchmark is one module under ``otedama/bench/`` with ``register(subparsers)``.
"""

from __future__ import annotations

import argparse
import importlib
from typing import Any

from otedama.commands.common import usage_of

__all__ = ["BENCH_MODULES", "register"]

#: Modules that add ``otedama bench`` sub-commands through ``register(subparsers)``.
BENCH_MODULES: list[str] = [
    "otedama.bench.stratum",
    "otedama.bench.ledger",
    "otedama.bench.pplns",
    "otedama.bench.flood",
    "otedama.bench.federation",
    "otedama.bench.api",
]


def register(subparsers: Any) -> None:
    """Add the ``bench`` group and every sub-command of ``BENCH_MODULES``."""
    parser: argparse.ArgumentParser = subparsers.add_parser(
        "bench", help="run a benchmark and print its figures"
    )
    benches = parser.add_subparsers(dest="bench", metavar="BENCH")
    parser.set_defaults(func=lambda args: usage_of(parser))
    for name in BENCH_MODULES:
        importlib.import_module(name).register(benches)

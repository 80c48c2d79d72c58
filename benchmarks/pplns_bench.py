"""Benchmark: one PPLNS split over a window of a million shares.

Run from the repository root::

    .venv/bin/python benchmarks/pplns_bench.py [--shares 1000000] [--addresses 10000]

It builds a window of ``(address, difficulty)`` rows like the ledger's window query
returns, then times ``aggregate_weights`` (exact per-address sums) and ``split_reward``
(exact largest-remainder split), and checks the split adds up to the reward. The target
is under one second for the whole split of a 1,000,000-share window.
"""

from __future__ import annotations

import argparse
import random
import sys
import time
from pathlib import Path

sys.path.insert(0, str(Path(__file__).resolve().parent.parent))

from otedama.ledger.rewards import aggregate_weights, split_reward

#: Share difficulties a vardiff pool hands out, plus some odd ones.
DIFFICULTIES = [0.001, 0.01, 0.5, 1.0, 8.0, 64.0, 512.0, 4096.0, 65536.0, 1234.5678, 0.333]
REWARD = 312_500_000  # 3.125 BTC
FEE_BP = 100


def make_window(shares: int, addresses: int, seed: int) -> list[tuple[str, float]]:
    """A window of share rows: few addresses dominate, as on a real pool."""
    rng = random.Random(seed)
    names = [f"bc1q{index:038d}" for index in range(addresses)]
    # Zipf-like: a few big miners and a long tail.
    ranks = [1.0 / (rank + 1) for rank in range(addresses)]
    owners = rng.choices(names, weights=ranks, k=shares)
    return [(owner, rng.choice(DIFFICULTIES)) for owner in owners]


def run(shares: int, addresses: int, seed: int = 1) -> dict[str, float]:
    """Time one split; returns seconds for aggregation, split and both."""
    window = make_window(shares, addresses, seed)
    started = time.perf_counter()
    weights = aggregate_weights(window)
    aggregated = time.perf_counter()
    split = split_reward("PPLNS", REWARD, FEE_BP, weights, None, "bc1qoperator")
    finished = time.perf_counter()
    if split.fee + sum(split.credits.values()) != REWARD:
        raise AssertionError("split does not add up to the reward")
    return {
        "aggregate_s": aggregated - started,
        "split_s": finished - aggregated,
        "total_s": finished - started,
        "addresses_credited": float(len(split.credits)),
    }


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--shares", type=int, default=1_000_000)
    parser.add_argument("--addresses", type=int, default=10_000)
    parser.add_argument("--repeat", type=int, default=3, help="runs; the best is reported")
    parser.add_argument("--seed", type=int, default=1)
    args = parser.parse_args(argv)
    results = [run(args.shares, args.addresses, args.seed) for _ in range(args.repeat)]
    best = min(results, key=lambda r: r["total_s"])
    print(
        f"PPLNS split of {args.shares:,} shares over {args.addresses:,} addresses "
        f"({int(best['addresses_credited']):,} credited): "
        f"aggregate {best['aggregate_s']:.3f} s + split {best['split_s']:.3f} s "
        f"= {best['total_s']:.3f} s (best of {args.repeat})"
    )
    return 0


if __name__ == "__main__":
    sys.exit(main())

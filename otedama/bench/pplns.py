"""``otedama bench pplns``: one PPLNS split over a window of a million shares.

::

    otedama bench pplns [--shares 1000000] [--addresses 10000] [--repeat 3] [--json]

It builds a window of ``(address, difficulty)`` rows like the ledger's window query
returns, then times ``aggregate_weights`` (exact per-address sums) and ``split_reward``
(exact largest-remainder split), and checks the split adds up to the reward. The target
is under one second for the whole split of a 1,000,000-share window.
"""

from __future__ import annotations

import argparse
import json
import random
import time
from dataclasses import asdict, dataclass
from typing import Any

from otedama.ledger.rewards import aggregate_weights, split_reward

__all__ = ["PplnsResult", "format_result", "make_window", "register", "run", "run_bench"]

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


@dataclass(frozen=True)
class PplnsResult:
    """The best of ``repeat`` splits."""

    shares: int
    addresses: int
    addresses_credited: int
    aggregate_seconds: float
    split_seconds: float
    repeat: int

    @property
    def total_seconds(self) -> float:
        return self.aggregate_seconds + self.split_seconds


def run(shares: int, addresses: int, seed: int = 1, repeat: int = 1) -> PplnsResult:
    """Time ``repeat`` splits of one window; the fastest is returned.

    Raises ``AssertionError`` when a split does not add up to the reward (a bug, not a
    slow run).
    """
    window = make_window(shares, addresses, seed)
    best: PplnsResult | None = None
    for _ in range(repeat):
        started = time.perf_counter()
        weights = aggregate_weights(window)
        aggregated = time.perf_counter()
        split = split_reward("PPLNS", REWARD, FEE_BP, weights, None, "bc1qoperator")
        finished = time.perf_counter()
        if split.fee + sum(split.credits.values()) != REWARD:
            raise AssertionError("split does not add up to the reward")
        result = PplnsResult(
            shares=shares,
            addresses=addresses,
            addresses_credited=len(split.credits),
            aggregate_seconds=aggregated - started,
            split_seconds=finished - aggregated,
            repeat=repeat,
        )
        if best is None or result.total_seconds < best.total_seconds:
            best = result
    assert best is not None
    return best


def register(subparsers: Any) -> None:
    """Add ``pplns`` to the ``bench`` sub-commands."""
    parser: argparse.ArgumentParser = subparsers.add_parser(
        "pplns", help="one exact PPLNS split over a million-share window", description=__doc__
    )
    parser.add_argument("--shares", type=int, default=1_000_000, help="shares in the window")
    parser.add_argument("--addresses", type=int, default=10_000, help="miners' addresses")
    parser.add_argument("--repeat", type=int, default=3, help="runs; the best is reported")
    parser.add_argument("--seed", type=int, default=1, help="seed of the synthetic window")
    parser.add_argument("--json", action="store_true", help="print the figures as JSON")
    parser.set_defaults(func=run_bench)


def run_bench(args: argparse.Namespace) -> int:
    """Run the PPLNS bench and print its figures; 2 for bad arguments."""
    if args.shares < 1 or args.addresses < 1 or args.repeat < 1:
        print("--shares, --addresses and --repeat must be positive")
        return 2
    result = run(args.shares, args.addresses, args.seed, args.repeat)
    if args.json:
        print(json.dumps({**asdict(result), "total_seconds": result.total_seconds}, indent=2))
    else:
        print(format_result(result))
    return 0


def format_result(result: PplnsResult) -> str:
    """The figures for people."""
    return (
        f"PPLNS split of {result.shares:,} shares over {result.addresses:,} addresses "
        f"({result.addresses_credited:,} credited): "
        f"aggregate {result.aggregate_seconds:.3f} s + split {result.split_seconds:.3f} s "
        f"= {result.total_seconds:.3f} s (best of {result.repeat})"
    )

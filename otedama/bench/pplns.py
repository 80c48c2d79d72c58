"""``otedama bench pplns``: one PPLNS split over a window of a million shares.

::

    otedama bench pplns [--shares 1000000] [--addresses 10000] [--repeat 3]
                        [--read sqlite|postgresql] [--json]

It builds a window of ``(address, difficulty)`` rows like the ledger's window query
returns, then times ``aggregate_weights`` (exact per-address sums) and ``split_reward``
(exact largest-remainder split), and checks the split adds up to the reward. The target
is under one second for the whole split of a 1,000,000-share window.

With ``--read``, the same window is also written through the ledger's share batches
(``ShareWriter``, batches of 10,000, which keep the running window totals) into a
SQLite file or a scratch PostgreSQL database (created and dropped), and a found block's
whole weighing is timed both ways: read plus split from the running totals
(:func:`otedama.ledger.window.window_weights`, what ``record_block`` does) and from the
full scan of the shares table (what it did before). Both splits must be equal.
"""

from __future__ import annotations

import argparse
import json
import random
import time
from dataclasses import asdict, dataclass
from typing import Any

from otedama.ledger.rewards import aggregate_weights, split_reward

__all__ = [
    "PplnsResult",
    "ReadResult",
    "format_read",
    "format_result",
    "make_window",
    "measure_read",
    "register",
    "run",
    "run_bench",
]

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


@dataclass(frozen=True)
class ReadResult:
    """A found block's window read plus split, from the running totals and by the scan."""

    database: str
    shares: int
    write_seconds: float
    totals_read_seconds: float
    totals_split_seconds: float
    scan_read_seconds: float
    scan_split_seconds: float
    addresses_credited: int

    @property
    def totals_seconds(self) -> float:
        return self.totals_read_seconds + self.totals_split_seconds

    @property
    def scan_seconds(self) -> float:
        return self.scan_read_seconds + self.scan_split_seconds


def measure_read(
    url: str, window: list[tuple[str, float]], repeat: int = 1, batch: int = 10_000
) -> ReadResult:
    """Write ``window`` as share batches (one share a millisecond) into the migrated
    database at ``url``, then time a block's read and split both ways (best of ``repeat``).

    Raises ``AssertionError`` when the two splits differ.
    """
    import uuid
    from pathlib import Path
    from tempfile import TemporaryDirectory

    from otedama.ledger import db
    from otedama.ledger.shares import ShareRecord, ShareSpool, ShareWriter
    from otedama.ledger.window import scan_weights, window_weights

    start = time.time() - len(window) / 1000 - 60
    seconds = len(window) / 1000
    engine = db.make_engine(url, pool_size=1)
    try:
        with TemporaryDirectory(prefix="otedama-bench-pplns-") as spool:
            writer = ShareWriter(engine, ShareSpool(Path(spool)), seconds)
            began = time.perf_counter()
            for offset in range(0, len(window), batch):
                records = [
                    ShareRecord(start + (offset + n) / 1000, address, "rig", difficulty, "j", 1)
                    for n, (address, difficulty) in enumerate(window[offset : offset + batch])
                ]
                outcome = writer.write(uuid.uuid4().hex, records, time.time())
                if outcome.outcome != "stored":
                    raise AssertionError(f"share batch not stored: {outcome}")
            write_seconds = time.perf_counter() - began
        end = start + (len(window) - 1) / 1000
        span = (end - seconds, end)
        best: ReadResult | None = None
        for _ in range(repeat):
            timings = []
            splits = []
            for weigh in (window_weights, scan_weights):
                with engine.begin() as connection:
                    began = time.perf_counter()
                    weights = weigh(connection, span)
                    read = time.perf_counter()
                    split = split_reward("PPLNS", REWARD, FEE_BP, weights, None, "bc1qoperator")
                    done = time.perf_counter()
                timings.append((read - began, done - read))
                splits.append(split)
            if splits[0] != splits[1]:
                raise AssertionError("the split from the running totals differs from the scan's")
            result = ReadResult(
                database=db.redact(url),
                shares=len(window),
                write_seconds=write_seconds,
                totals_read_seconds=timings[0][0],
                totals_split_seconds=timings[0][1],
                scan_read_seconds=timings[1][0],
                scan_split_seconds=timings[1][1],
                addresses_credited=len(splits[0].credits),
            )
            if best is None or result.totals_seconds < best.totals_seconds:
                best = result
        assert best is not None
        return best
    finally:
        engine.dispose()


def format_read(result: ReadResult) -> str:
    """The read-plus-split figures for people."""
    return (
        f"block window of {result.shares:,} shares on {result.database}"
        f" (written in {result.write_seconds:.1f} s through the share batches):\n"
        f"  running totals: read {result.totals_read_seconds * 1000:.1f} ms"
        f" + split {result.totals_split_seconds * 1000:.1f} ms"
        f" = {result.totals_seconds * 1000:.1f} ms\n"
        f"  full scan:      read {result.scan_read_seconds * 1000:.1f} ms"
        f" + split {result.scan_split_seconds * 1000:.1f} ms"
        f" = {result.scan_seconds * 1000:.1f} ms"
        f" ({result.addresses_credited:,} addresses credited, the same split both ways)"
    )


def register(subparsers: Any) -> None:
    """Add ``pplns`` to the ``bench`` sub-commands."""
    parser: argparse.ArgumentParser = subparsers.add_parser(
        "pplns", help="one exact PPLNS split over a million-share window", description=__doc__
    )
    parser.add_argument("--shares", type=int, default=1_000_000, help="shares in the window")
    parser.add_argument("--addresses", type=int, default=10_000, help="miners' addresses")
    parser.add_argument("--repeat", type=int, default=3, help="runs; the best is reported")
    parser.add_argument("--seed", type=int, default=1, help="seed of the synthetic window")
    parser.add_argument(
        "--read",
        choices=("sqlite", "postgresql"),
        help="also write the window into this database and time a block's read plus split"
        " from the running totals and by the full scan",
    )
    parser.add_argument(
        "--server",
        default="postgresql://postgres@127.0.0.1:5432",
        help="PostgreSQL server for --read postgresql's scratch database",
    )
    parser.add_argument("--json", action="store_true", help="print the figures as JSON")
    parser.set_defaults(func=run_bench)


def run_bench(args: argparse.Namespace) -> int:
    """Run the PPLNS bench and print its figures; 2 for bad arguments."""
    if args.shares < 1 or args.addresses < 1 or args.repeat < 1:
        print("--shares, --addresses and --repeat must be positive")
        return 2
    result = run(args.shares, args.addresses, args.seed, args.repeat)
    figures: dict[str, Any] = {**asdict(result), "total_seconds": result.total_seconds}
    if not args.json:
        print(format_result(result))
    if args.read:
        read = _read(args)
        figures["read"] = {
            **asdict(read),
            "totals_seconds": read.totals_seconds,
            "scan_seconds": read.scan_seconds,
        }
        if not args.json:
            print(format_read(read))
    if args.json:
        print(json.dumps(figures, indent=2))
    return 0


def _read(args: argparse.Namespace) -> ReadResult:
    from tempfile import TemporaryDirectory

    from otedama.bench.ledger import drop_database, scratch_database
    from otedama.ledger import db

    window = make_window(args.shares, args.addresses, args.seed)
    if args.read == "postgresql":
        url, name = scratch_database(args.server)
        try:
            return measure_read(url, window, args.repeat)
        finally:
            drop_database(args.server, name)
    with TemporaryDirectory(prefix="otedama-bench-pplns-") as directory:
        url = f"sqlite:///{directory}/ledger.sqlite"
        engine = db.make_engine(url, pool_size=1)
        with engine.begin() as connection:
            db.upgrade(connection)
        engine.dispose()
        return measure_read(url, window, args.repeat)


def format_result(result: PplnsResult) -> str:
    """The figures for people."""
    return (
        f"PPLNS split of {result.shares:,} shares over {result.addresses:,} addresses "
        f"({result.addresses_credited:,} credited): "
        f"aggregate {result.aggregate_seconds:.3f} s + split {result.split_seconds:.3f} s "
        f"= {result.total_seconds:.3f} s (best of {result.repeat})"
    )

"""``otedama mine``: run the built-in CPU miner against any Stratum pool."""

from __future__ import annotations

import argparse
from typing import Any

from otedama.commands.common import begin_logging

__all__ = ["register", "run_mine"]


def register(subparsers: Any) -> None:
    """Add the ``mine`` command."""
    parser: argparse.ArgumentParser = subparsers.add_parser(
        "mine",
        help="mine on a Stratum pool with the built-in CPU miner",
        description="Mine on a Stratum V1 pool with the built-in CPU miner (pure Python, "
        "one hashing process per thread). Stop with Ctrl-C.",
    )
    parser.add_argument("--url", required=True, help="pool URL, e.g. stratum+tcp://127.0.0.1:3333")
    parser.add_argument("--user", required=True, help="payout address, optionally .worker")
    parser.add_argument("--password", default="x", help="Stratum password (default: x)")
    parser.add_argument(
        "--threads",
        type=int,
        default=0,
        help="hashing processes (default 0: one less than the cores, at least 1)",
    )
    parser.add_argument(
        "--report-interval",
        type=float,
        default=30.0,
        help="seconds between hashrate log lines (default 30)",
    )
    parser.add_argument(
        "--verbose", action="store_true", help="also log every accepted share (debug level)"
    )
    parser.set_defaults(func=run_mine)


def run_mine(args: argparse.Namespace) -> int:
    """Run the miner until interrupted; exit code 2 for bad arguments."""
    if args.report_interval <= 0:
        print(f"otedama mine: --report-interval must be positive, got {args.report_interval}")
        return 2
    from otedama.miner.service import CpuMinerService
    from otedama.miner.work import WorkError
    from otedama.ops.reactor import install_asyncio_reactor

    reactor = install_asyncio_reactor()
    try:
        miner = CpuMinerService(
            args.url,
            args.user,
            args.threads,
            reactor,
            password=args.password,
            report_interval=args.report_interval,
        )
    except WorkError as exc:
        print(f"otedama mine: {exc}")
        return 2
    begin_logging(args.verbose)
    reactor.callWhenRunning(miner.startService)
    reactor.addSystemEventTrigger("before", "shutdown", miner.stopService)
    reactor.run()
    return 0

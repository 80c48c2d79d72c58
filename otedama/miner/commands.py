"""``otedama mine``: run the built-in CPU miner against any Stratum pool."""

from __future__ import annotations

import argparse
import sys
from typing import Any

from otedama.miner.work import WorkError

__all__ = ["install_asyncio_reactor", "register", "run_mine"]


def install_asyncio_reactor() -> Any:
    """Install Twisted's asyncio reactor unless one is installed already; return the reactor."""
    if "twisted.internet.reactor" not in sys.modules:
        from twisted.internet import asyncioreactor

        asyncioreactor.install()
    from twisted.internet import reactor

    return reactor


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
    reactor = install_asyncio_reactor()
    from twisted.logger import (
        FilteringLogObserver,
        LogLevel,
        LogLevelFilterPredicate,
        globalLogBeginner,
        textFileLogObserver,
    )

    from otedama.miner.service import CpuMinerService

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
    level = LogLevel.debug if args.verbose else LogLevel.info
    # zope interfaces have no mypy plugin here: pass the providers as Any.
    text: Any = textFileLogObserver(sys.stderr)
    predicate: Any = LogLevelFilterPredicate(defaultLogLevel=level)
    observer: Any = FilteringLogObserver(text, [predicate])
    globalLogBeginner.beginLoggingTo([observer], redirectStandardIO=False)
    reactor.callWhenRunning(miner.startService)
    reactor.addSystemEventTrigger("before", "shutdown", miner.stopService)
    reactor.run()
    return 0

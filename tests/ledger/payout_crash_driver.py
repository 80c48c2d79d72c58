"""The payout process for the crash tests: start, run the start-up tick, stop.

Usage::

    payout_crash_driver.py --db URL --spool DIR (--wallet-url URL | --wallet-file PATH)
                           [--crash-at STEP] [--minimum SATS]

It starts a ``LedgerStore`` and a ``PayoutProcessor`` the way the node does (the
processor's first tick runs at start-up), waits for that tick, prints its report as one
JSON line and exits 0. With ``--crash-at STEP`` (one of ``CRASH_POINTS``) the process
SIGKILLs itself at that step through the processor's ``crash_hook`` test seam: no
``finally``, no flush, no clean database disconnect — as if the power went out there.

The wallet is a devnet node's over JSON-RPC (``--wallet-url``, through
``BitcoindClient``), or the file-backed fake (``--wallet-file``).
"""

from __future__ import annotations

import argparse
import json
import os
import signal
import sys
from dataclasses import asdict
from typing import Any

from twisted.internet import asyncioreactor


def parse(argv: list[str]) -> argparse.Namespace:
    parser = argparse.ArgumentParser(description="one payout run, maybe killed at a step")
    parser.add_argument("--db", required=True)
    parser.add_argument("--spool", required=True)
    wallet = parser.add_mutually_exclusive_group(required=True)
    wallet.add_argument("--wallet-url")
    wallet.add_argument("--wallet-file")
    parser.add_argument("--crash-at")
    parser.add_argument("--minimum", type=int, default=100_000)
    return parser.parse_args(argv)


async def run(reactor: Any, args: argparse.Namespace) -> None:
    from twisted.logger import globalLogBeginner, textFileLogObserver

    from otedama.ledger.payouts import CRASH_POINTS, PayoutProcessor
    from otedama.ledger.store import LedgerStore

    globalLogBeginner.beginLoggingTo([textFileLogObserver(sys.stderr)], redirectStandardIO=False)

    if args.crash_at is not None and args.crash_at not in CRASH_POINTS:
        raise SystemExit(f"--crash-at {args.crash_at!r}: expected one of {CRASH_POINTS}")

    def crash_hook(step: str) -> None:
        if step == args.crash_at:
            os.kill(os.getpid(), signal.SIGKILL)

    client: Any = None
    if args.wallet_url is not None:
        from otedama.node.bitcoind import BitcoindClient
        from otedama.node.rpc import RpcEndpoint

        client = BitcoindClient([RpcEndpoint(args.wallet_url)], clock=reactor, timeout=30)
        wallet: Any = client
    else:
        from payout_fake_wallet import FileWallet

        wallet = FileWallet(args.wallet_file, now=reactor.seconds())

    store = LedgerStore(reactor, args.db, pool_size=2, spool_dir=args.spool)
    store.start()
    processor = PayoutProcessor(
        store, wallet, reactor, minimum_payout_sats=args.minimum, crash_hook=crash_hook
    )
    processor.startService()  # the start-up tick runs now
    await processor.stopService()  # waits for that tick
    report = processor.last_report
    sys.stdout.write(json.dumps(asdict(report) if report is not None else None) + "\n")
    if client is not None:
        await client.close()
    await store.stop()


def main(argv: list[str]) -> None:
    args = parse(argv)
    asyncioreactor.install()
    from twisted.internet import task
    from twisted.internet.defer import Deferred

    task.react(lambda reactor: Deferred.fromCoroutine(run(reactor, args)))


if __name__ == "__main__":
    main(sys.argv[1:])

"""One node of the scale-out test: ingests shares and, while it leads, tracks blocks and pays.

Usage::

    scale_node.py --name NAME --db URL --spool DIR --wallet-url URL --status FILE
                  --pause-marker FILE [--shares N] [--check-interval S] [--maturity N]

It runs what ``otedama.tap`` runs for the ledger — a ``LedgerStore``, and a
``LeaderService`` whose children are the ``BlockTracker`` and the ``PayoutProcessor`` —
with the devnet's JSON-RPC as chain and wallet. It adds ``N`` shares (worker ``NAME``)
in small batches and keeps ``--status`` up to date as one JSON object: shares added and
stored, whether it leads, its pid.

The first node (of all that share ``--pause-marker``) whose payout has just called the
wallet freezes there — it creates the marker file (exclusively) with its pid and blocks
its reactor thread — so that the test can SIGKILL it in the middle of a payout: the
wallet has sent, the ledger has not recorded the txid. SIGTERM stops a node cleanly.
"""

from __future__ import annotations

import argparse
import json
import os
import sys
import time
from collections.abc import Callable
from pathlib import Path
from typing import Any

from twisted.internet import asyncioreactor


def parse(argv: list[str]) -> argparse.Namespace:
    parser = argparse.ArgumentParser(description="one node of the scale-out test")
    parser.add_argument("--name", required=True)
    parser.add_argument("--db", required=True)
    parser.add_argument("--spool", required=True)
    parser.add_argument("--wallet-url", required=True)
    parser.add_argument("--status", required=True)
    parser.add_argument("--pause-marker", required=True)
    parser.add_argument("--shares", type=int, default=400)
    parser.add_argument("--check-interval", type=float, default=0.5)
    parser.add_argument("--maturity", type=int, default=3)
    return parser.parse_args(argv)


def pause_hook(marker: Path, before_freezing: Callable[[], None]) -> Any:
    """The payout crash seam: freeze the first node to reach ``wallet_called``, after
    ``before_freezing`` (its last status: a node that became leader and paid within one
    status tick would otherwise leave a status from before it led)."""

    def hook(step: str) -> None:
        if step != "wallet_called":
            return
        before_freezing()
        try:
            fd = os.open(marker, os.O_CREAT | os.O_EXCL | os.O_WRONLY)
        except FileExistsError:
            return
        os.write(fd, str(os.getpid()).encode())
        os.close(fd)
        while True:  # frozen mid-payout until the test kills us
            time.sleep(60)

    return hook


def write_status(path: Path, status: dict[str, Any]) -> None:
    temporary = path.with_suffix(".tmp")
    temporary.write_text(json.dumps(status), encoding="utf-8")
    temporary.replace(path)


async def run(reactor: Any, args: argparse.Namespace) -> None:
    from twisted.internet.defer import Deferred
    from twisted.internet.task import LoopingCall
    from twisted.logger import globalLogBeginner, textFileLogObserver

    from otedama.ledger.blocks import BlockTracker
    from otedama.ledger.leader import LeaderService
    from otedama.ledger.payouts import PayoutProcessor
    from otedama.ledger.shares import ShareRecord
    from otedama.ledger.store import LedgerStore
    from otedama.node.bitcoind import BitcoindClient
    from otedama.node.rpc import RpcEndpoint

    globalLogBeginner.beginLoggingTo([textFileLogObserver(sys.stderr)], redirectStandardIO=False)
    status_path = Path(args.status)
    client = BitcoindClient([RpcEndpoint(args.wallet_url)], clock=reactor, timeout=30)
    store = LedgerStore(reactor, args.db, pool_size=2, spool_dir=args.spool, flush_interval=0.1)
    store.start()
    leader = LeaderService(reactor, args.db, args.check_interval)
    BlockTracker(store, client, reactor, maturity=args.maturity, interval=0.5).setServiceParent(
        leader
    )
    added = 0

    def status() -> dict[str, Any]:
        return {
            "name": args.name,
            "pid": os.getpid(),
            "added": added,
            "stored": store.health().stored,
            "leader": leader.is_leader,
            "terms": leader.terms,
        }

    PayoutProcessor(
        store,
        client,
        reactor,
        interval=1.0,
        minimum_payout_sats=100_000,
        crash_hook=pause_hook(Path(args.pause_marker), lambda: write_status(status_path, status())),
    ).setServiceParent(leader)
    leader.startService()

    def ingest() -> None:
        nonlocal added
        for _ in range(min(10, args.shares - added)):
            added += 1
            store.add_share(
                ShareRecord(reactor.seconds(), "scale-test", args.name, 1.0, str(added), 200)
            )
        write_status(status_path, status())

    ingesting = LoopingCall(ingest)
    ingesting.clock = reactor
    ingesting.start(0.05)

    async def shutdown() -> None:
        ingesting.stop()
        await leader.stopService()
        await store.stop()
        await client.close()
        write_status(status_path, {**status(), "stopped": True})

    # SIGTERM stops the reactor; this runs first and the node stops cleanly.
    reactor.addSystemEventTrigger("before", "shutdown", lambda: Deferred.fromCoroutine(shutdown()))
    await Deferred()  # until the reactor stops


def main(argv: list[str]) -> None:
    args = parse(argv)
    asyncioreactor.install()
    from twisted.internet import task
    from twisted.internet.defer import Deferred

    task.react(lambda reactor: Deferred.fromCoroutine(run(reactor, args)))


if __name__ == "__main__":
    main(sys.argv[1:])

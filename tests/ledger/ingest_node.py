"""A node-like process for the share-spool fault tests.

Runs a real ``LedgerStore`` on the asyncio reactor and feeds it ``COUNT`` distinct shares
at a steady pace, as Stratum would, printing one JSON status line every 50 ms. After the
last share it keeps running until everything is in the database (spool empty, database
healthy), then exits 0. SIGTERM stops it cleanly (buffered shares go to the database or
the spool). Usage::

    python ingest_node.py URL SPOOL_DIR COUNT PREFIX
"""

from __future__ import annotations

import faulthandler
import json
import signal
import sys
from pathlib import Path

from twisted.internet import asyncioreactor

asyncioreactor.install()

from twisted.internet import defer, reactor, task  # noqa: E402

from otedama.ledger.shares import ShareRecord  # noqa: E402
from otedama.ledger.store import LedgerStore  # noqa: E402

PER_TICK = 50
TICK = 0.01


def main() -> None:
    faulthandler.register(signal.SIGUSR1, all_threads=True)  # a hung test dumps stacks
    url, spool_dir, count_text, prefix = sys.argv[1:5]
    count = int(count_text)
    store = LedgerStore(
        reactor,
        url,
        pool_size=2,
        spool_dir=Path(spool_dir),
        batch_size=100,
        flush_interval=0.05,
        retry_interval=0.1,
    )
    added = 0
    finished: list[bool] = []

    def status(event: str) -> None:
        health = store.health()
        line = {
            "event": event,
            "added": added,
            "buffered": store.batcher.buffered,
            "stored": store.batcher.stored,
            "spooled": store.batcher.spooled,
            "replayed": store.batcher.replayed,
            "already_stored": store.batcher.already_stored,
            "dropped": store.batcher.dropped,
            "status": health.status,
            "reason": health.reason,
            "spool_bytes": health.spool_bytes,
        }
        sys.stdout.write(json.dumps(line) + "\n")
        sys.stdout.flush()

    def feed() -> None:
        nonlocal added
        for _ in range(min(PER_TICK, count - added)):
            store.add_share(
                ShareRecord(
                    created_at=1_700_000_000.0 + added,
                    address="bc1qfaultminer",
                    worker=prefix,
                    difficulty=1.0,
                    job_id=f"{prefix}-{added}",
                    height=1,
                )
            )
            added += 1
        if added >= count and feeder.running:
            feeder.stop()

    async def watch() -> None:
        while True:
            await task.deferLater(reactor, 0.05, lambda: None)
            if added < count:
                status("feeding")
                continue
            await store.flush_shares()
            done = store.health().status == "ok" and not store.spool.has_data()
            status("done" if done else "waiting")
            if done:
                break
        finished.append(True)
        await store.stop()
        reactor.stop()

    async def stop_cleanly() -> None:
        if feeder.running:  # like the node: Stratum stops before the ledger
            feeder.stop()
        if not finished:
            await store.stop()
            status("stopped")

    feeder = task.LoopingCall(feed)
    store.start()
    reactor.addSystemEventTrigger(
        "before", "shutdown", lambda: defer.Deferred.fromCoroutine(stop_cleanly())
    )
    status("started")
    feeder.start(TICK)
    defer.Deferred.fromCoroutine(watch())
    reactor.run()


if __name__ == "__main__":
    main()

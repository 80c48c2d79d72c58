"""``otedama bench ledger``: how fast accepted shares get into the database.

It runs the node's real ingest path — ``LedgerStore.add_share`` → batcher → multi-row
insert on the worker threads — on the asyncio reactor, feeding shares as fast as the
reactor takes them, and times from the first share to the moment the last batch
committed. It also times the PPLNS window query over everything it wrote (the full
scan), and a found block's window (the last half of the run: the store keeps the running
window totals with a PPLNS window of that length, so the first half has left it) read
from the running totals and by the full scan. It prints figures; it never passes or fails.

By default it creates a scratch PostgreSQL database on ``--server`` and drops it after;
``--url`` points it at an existing (migrated) database instead, and ``--url
sqlite:///…`` measures the embedded SQLite store.
"""

from __future__ import annotations

import argparse
import json
import sys
import time
import uuid
from dataclasses import asdict, dataclass
from pathlib import Path
from tempfile import TemporaryDirectory
from typing import Any

from sqlalchemy import func, select, text

from otedama.ledger import db
from otedama.ledger.shares import ShareRecord
from otedama.ledger.store import LedgerStore
from otedama.ledger.tables import shares
from otedama.ledger.window import scan_weights, window_weights

DEFAULT_SERVER = "postgresql://postgres@127.0.0.1:5432"
#: Shares handed to the store per reactor turn (Stratum hands them one by one, but
#: many per turn under load).
CHUNK = 2000


@dataclass
class LedgerBenchResult:
    """The figures of one run."""

    database: str
    shares: int
    batch_size: int
    pool_size: int
    seconds: float
    shares_per_second: float
    add_microseconds_per_share: float
    stored: int
    spooled: int
    rows_in_database: int
    window_query_seconds: float
    window_addresses: int
    #: A block's window (the last half of the run): from the running totals, by the scan.
    block_window_shares: int = 0
    block_window_totals_seconds: float = 0.0
    block_window_scan_seconds: float = 0.0


def make_shares(count: int, addresses: int, start: float) -> list[ShareRecord]:
    """``count`` distinct shares from ``addresses`` miners, one per millisecond."""
    return [
        ShareRecord(
            created_at=start + n / 1000,
            address=f"bcrt1qbench{n % addresses:06d}",
            worker=f"rig{n % 7}",
            difficulty=float(1 << (n % 12)),
            job_id=f"{n % 4096:x}",
            height=800_000,
            share_hash=n.to_bytes(32, "little"),
        )
        for n in range(count)
    ]


async def measure(
    reactor: Any,
    url: str,
    count: int,
    batch_size: int,
    pool_size: int,
    addresses: int,
    spool_dir: Path,
) -> LedgerBenchResult:
    """Ingest ``count`` shares through a real ``LedgerStore`` and time it."""
    from twisted.internet.task import deferLater

    records = make_shares(count, addresses, time.time() - count / 1000)
    pplns_window = count / 2000
    store = LedgerStore(
        reactor,
        url,
        pool_size,
        spool_dir=spool_dir,
        batch_size=batch_size,
        flush_interval=0.5,
        pplns_window=pplns_window,
    )
    store.start()
    try:
        await store.check_schema()
        before = await store.run(
            lambda c: c.execute(select(func.count()).select_from(shares)).scalar()
        )
        add_seconds = 0.0
        start = time.perf_counter()
        for offset in range(0, count, CHUNK):
            chunk_start = time.perf_counter()
            for record in records[offset : offset + CHUNK]:
                store.add_share(record)
            add_seconds += time.perf_counter() - chunk_start
            await deferLater(reactor, 0, lambda: None)  # let finished batches come back
        await store.flush_shares()
        seconds = time.perf_counter() - start
        after = await store.run(
            lambda c: c.execute(select(func.count()).select_from(shares)).scalar()
        )
        window = (records[0].created_at - 1, records[-1].created_at)
        query_start = time.perf_counter()
        weights = await store.run(lambda c: scan_weights(c, window))
        query_seconds = time.perf_counter() - query_start
        end = records[-1].created_at
        block = (end - pplns_window, end)
        began = time.perf_counter()
        from_totals = await store.run(lambda c: window_weights(c, block))
        totals_seconds = time.perf_counter() - began
        began = time.perf_counter()
        from_scan = await store.run(lambda c: scan_weights(c, block))
        scan_seconds = time.perf_counter() - began
        if from_totals != from_scan:
            raise AssertionError("the running window totals differ from the scan")
        health = store.health()
    finally:
        # Its worker threads would keep the process alive after a failed run.
        await store.stop()
    return LedgerBenchResult(
        database=db.redact(url),
        shares=count,
        batch_size=batch_size,
        pool_size=store.db.pool_size,
        seconds=seconds,
        shares_per_second=count / seconds,
        add_microseconds_per_share=add_seconds / count * 1e6,
        stored=health.stored,
        spooled=health.spooled,
        rows_in_database=int(after or 0) - int(before or 0),
        window_query_seconds=query_seconds,
        window_addresses=len(weights),
        block_window_shares=sum(1 for r in records if r.created_at > block[0]),
        block_window_totals_seconds=totals_seconds,
        block_window_scan_seconds=scan_seconds,
    )


def scratch_database(server: str) -> tuple[str, str]:
    """Create an empty, migrated database on ``server``; returns (url, name)."""
    name = f"otedama_bench_{uuid.uuid4().hex[:8]}"
    admin = db.make_engine(f"{server}/postgres", pool_size=1)
    with admin.connect().execution_options(isolation_level="AUTOCOMMIT") as connection:
        connection.execute(text(f'CREATE DATABASE "{name}"'))
    admin.dispose()
    url = f"{server}/{name}"
    engine = db.make_engine(url, pool_size=1)
    with engine.begin() as connection:
        db.upgrade(connection)
    engine.dispose()
    return url, name


def drop_database(server: str, name: str) -> None:
    """Drop a scratch database."""
    admin = db.make_engine(f"{server}/postgres", pool_size=1)
    with admin.connect().execution_options(isolation_level="AUTOCOMMIT") as connection:
        connection.execute(text(f'DROP DATABASE IF EXISTS "{name}" WITH (FORCE)'))
    admin.dispose()


def register(subparsers: Any) -> None:
    """Add ``otedama bench ledger``."""
    parser = subparsers.add_parser("ledger", help="share ingest into the ledger database")
    parser.add_argument("--shares", type=int, default=200_000, help="shares to ingest")
    parser.add_argument("--batch-size", type=int, default=1000, help="shares per insert")
    parser.add_argument("--pool-size", type=int, default=4, help="database worker threads")
    parser.add_argument("--addresses", type=int, default=1000, help="distinct miner addresses")
    parser.add_argument(
        "--server",
        default=DEFAULT_SERVER,
        help=f"PostgreSQL server for a scratch database (default {DEFAULT_SERVER})",
    )
    parser.add_argument("--url", help="use this migrated database instead of a scratch one")
    parser.add_argument("--json", action="store_true", help="print the figures as JSON")
    parser.set_defaults(func=run_bench)


def run_bench(args: argparse.Namespace) -> int:
    """Run the ledger bench on the asyncio reactor and print its figures."""
    if args.shares < 1 or args.batch_size < 1 or args.pool_size < 1 or args.addresses < 1:
        print(
            "--shares, --batch-size, --pool-size and --addresses must be positive", file=sys.stderr
        )
        return 2
    from twisted.internet.defer import Deferred

    from otedama.ops.reactor import install_asyncio_reactor

    reactor = install_asyncio_reactor()

    scratch: str | None = None
    url = args.url
    try:
        if url is None:
            url, scratch = scratch_database(args.server)
    except Exception as e:
        print(
            f"cannot create a scratch database on {args.server}: {db.describe_error(e, args.server + '/postgres')}",
            file=sys.stderr,
        )
        return 1
    outcome: dict[str, Any] = {}

    async def main() -> None:
        with TemporaryDirectory(prefix="otedama-bench-spool-") as spool:
            outcome["result"] = await measure(
                reactor,
                url,
                args.shares,
                args.batch_size,
                args.pool_size,
                args.addresses,
                Path(spool),
            )

    def done(result: object) -> None:
        if result is not None:
            outcome["error"] = result
        reactor.stop()

    try:
        reactor.callWhenRunning(lambda: Deferred.fromCoroutine(main()).addBoth(done))
        reactor.run()
    finally:
        if scratch is not None:
            drop_database(args.server, scratch)
    if "result" not in outcome:
        print(f"ledger bench failed: {outcome.get('error')}", file=sys.stderr)
        return 1
    result: LedgerBenchResult = outcome["result"]
    if args.json:
        print(json.dumps(asdict(result), indent=2))
    else:
        print(format_result(result))
    return 0


def format_result(result: LedgerBenchResult) -> str:
    """The figures for people."""
    return "\n".join(
        [
            f"database          {result.database}",
            f"shares            {result.shares:,} in batches of {result.batch_size:,} on "
            f"{result.pool_size} worker threads",
            f"ingest            {result.shares_per_second:,.0f} shares/s sustained "
            f"({result.seconds:.2f} s from the first share to the last commit)",
            f"add_share         {result.add_microseconds_per_share:.2f} µs per share in the reactor",
            f"stored / spooled  {result.stored:,} / {result.spooled:,} "
            f"({result.rows_in_database:,} new rows counted in the database)",
            f"PPLNS window      {result.window_query_seconds:.2f} s to weigh all "
            f"{result.shares:,} shares of {result.window_addresses:,} addresses (full scan)",
            f"block window      {result.block_window_shares:,} shares: "
            f"{result.block_window_totals_seconds * 1000:.1f} ms from the running totals, "
            f"{result.block_window_scan_seconds * 1000:.1f} ms by the full scan (equal)",
        ]
    )

"""Ledger commands: ``otedama migrate up|status``, ``otedama stats``, ``otedama config test-db``.

They run without a reactor, on a plain synchronous engine, and print for people; every
failure to reach the database is explained (refused, unknown host, authentication,
missing database) rather than shown as a traceback.
"""

from __future__ import annotations

import argparse
import json
import statistics
import sys
import time
from collections.abc import Callable
from typing import Any, TypeVar

from sqlalchemy import Connection, text

from otedama.cli import add_config_argument, config_path, load_or_report, usage_of
from otedama.ledger import db
from otedama.ledger.stats import PoolStats, pool_stats

T = TypeVar("T")


def register(subparsers: Any) -> None:
    """Add ``migrate`` and ``stats`` to the ``otedama`` command."""
    migrate = subparsers.add_parser("migrate", help="create or update the ledger database schema")
    actions = migrate.add_subparsers(dest="migrate_command", metavar="ACTION")
    migrate.set_defaults(func=lambda args: usage_of(migrate))
    up = actions.add_parser("up", help="apply every migration this version ships")
    add_config_argument(up)
    up.set_defaults(func=migrate_up)
    status = actions.add_parser("status", help="say whether the schema is current")
    add_config_argument(status)
    status.set_defaults(func=migrate_status)

    stats = subparsers.add_parser("stats", help="pool hashrate, shares, blocks and balances")
    add_config_argument(stats)
    stats.add_argument("--format", choices=("table", "json"), default="table")
    stats.add_argument(
        "--window",
        type=float,
        default=10.0,
        metavar="MINUTES",
        help="hashrate and share window in minutes (default 10)",
    )
    stats.set_defaults(func=show_stats)


def _fail(message: str) -> int:
    print(message, file=sys.stderr)
    return 1


def _with_database(args: argparse.Namespace, fn: Callable[[Connection, str], T]) -> T | int:
    """Load the config, connect, and run ``fn(connection, url)`` in one transaction.

    Returns ``fn``'s result, or the exit code 1 after explaining the failure.
    """
    config = load_or_report(args)
    if config is None:
        return 1
    url: str = config.database_url
    try:
        engine = db.make_engine(url, pool_size=1)
    except db.DatabaseError as e:
        return _fail(str(e))
    try:
        with engine.begin() as connection:
            return fn(connection, url)
    except Exception as e:
        if isinstance(e, db.DatabaseError):
            return _fail(str(e))
        return _fail(f"cannot use the database {db.redact(url)}: {db.describe_error(e, url)}")
    finally:
        engine.dispose()


def migrate_up(args: argparse.Namespace) -> int:
    """``otedama migrate up``: apply the shipped migrations."""

    def run(connection: Connection, url: str) -> int:
        before = db.migration_state(connection)
        if before.is_current:
            print(f"{db.redact(url)}: {before.describe()}; nothing to do")
            return 0
        db.upgrade(connection)
        after = db.migration_state(connection)
        print(
            f"{db.redact(url)}: migrated from {before.current or 'an empty schema'} "
            f"to {after.current}"
        )
        return 0

    return _with_database(args, run)


def migrate_status(args: argparse.Namespace) -> int:
    """``otedama migrate status``: 0 when the schema is current, 1 otherwise."""

    def run(connection: Connection, url: str) -> int:
        state = db.migration_state(connection)
        print(f"{db.redact(url)}: {state.describe()}")
        if state.is_current:
            return 0
        print(f"run: otedama migrate up --config {config_path(args)}")
        return 1

    return _with_database(args, run)


def server_version(connection: Connection) -> str:
    """The database server's name and version."""
    if connection.dialect.name == "sqlite":
        return f"SQLite {connection.execute(text('SELECT sqlite_version()')).scalar()}"
    full = str(connection.execute(text("SELECT version()")).scalar())
    return full.split(" on ", 1)[0]


def round_trip_ms(connection: Connection, samples: int = 5) -> float:
    """Median milliseconds of a ``SELECT 1`` round trip."""
    times = []
    for _ in range(samples):
        start = time.perf_counter()
        connection.execute(text("SELECT 1")).scalar()
        times.append((time.perf_counter() - start) * 1000)
    return statistics.median(times)


def test_db(args: argparse.Namespace) -> int:
    """``otedama config test-db``: connect and report version, schema and latency."""

    def run(connection: Connection, url: str) -> int:
        version = server_version(connection)
        latency = round_trip_ms(connection)
        state = db.migration_state(connection)
        print(f"database: {db.redact(url)}")
        print(f"server:   {version}")
        print(f"latency:  {latency:.2f} ms (median SELECT 1 round trip)")
        print(f"schema:   {state.describe()}")
        if state.is_current:
            print("OK")
            return 0
        print(f"run: otedama migrate up --config {config_path(args)}")
        return 1

    return _with_database(args, run)


def show_stats(args: argparse.Namespace) -> int:
    """``otedama stats``: the pool at a glance, as a table or JSON."""
    if args.window <= 0:
        return _fail(f"--window must be positive minutes, got {args.window}")
    now = time.time()

    def run(connection: Connection, url: str) -> PoolStats | int:
        state = db.migration_state(connection)
        if not state.is_current:
            return _fail(
                f"{db.redact(url)}: {state.describe()}; "
                f"run: otedama migrate up --config {config_path(args)}"
            )
        return pool_stats(connection, now, args.window * 60)

    result = _with_database(args, run)
    if not isinstance(result, PoolStats):
        return result
    if args.format == "json":
        print(json.dumps(result.as_dict(), indent=2, sort_keys=True))
    else:
        print(format_table(result))
    return 0


def format_hashrate(hashes_per_second: float) -> str:
    """``1.23 TH/s`` style."""
    value = hashes_per_second
    for unit in ("H/s", "kH/s", "MH/s", "GH/s", "TH/s", "PH/s"):
        if value < 1000 or unit == "PH/s":
            return f"{value:.2f} {unit}"
        value /= 1000
    return f"{value:.2f} EH/s"


def format_sats(sats: int) -> str:
    """Satoshis as coins with eight decimals (exact: integer arithmetic)."""
    sign = "-" if sats < 0 else ""
    whole, fraction = divmod(abs(sats), 100_000_000)
    return f"{sign}{whole}.{fraction:08d}"


def format_table(stats: PoolStats) -> str:
    """The human-readable ``otedama stats`` report."""
    minutes = stats.window_seconds / 60
    lines = [
        f"pool hashrate      {format_hashrate(stats.hashrate)} (last {minutes:g} min)",
        f"shares in window   {stats.shares_in_window}",
        f"active workers     {stats.active_workers} ({stats.active_addresses} addresses, last 10 min)",
        "blocks             "
        + ", ".join(f"{status} {count}" for status, count in stats.blocks.items()),
        f"balances immature  {format_sats(stats.totals.immature)}",
        f"         spendable {format_sats(stats.totals.spendable)}",
        f"         paid      {format_sats(stats.totals.paid)}",
        f"         in payout {format_sats(stats.totals.payout_pending)}",
    ]
    if stats.last_blocks:
        lines.append("last blocks")
        for block in stats.last_blocks:
            lines.append(
                f"  {block.height:>8}  {block.status:<9} {block.confirmations:>4} conf  "
                f"{format_sats(block.reward)}  {block.hash}"
            )
    if stats.last_payouts:
        lines.append("last payouts")
        for payout in stats.last_payouts:
            lines.append(
                f"  batch {payout.batch_id:>6}  {payout.state:<9} {format_sats(payout.amount)}"
                f"  to {payout.recipients} addresses  {payout.txid or '-'}"
            )
    return "\n".join(lines)

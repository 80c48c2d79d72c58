"""``otedama stats``: pool hashrate, shares, blocks and balances, as a table or JSON."""

from __future__ import annotations

import argparse
import json
import time
from fractions import Fraction
from typing import Any

from sqlalchemy import Connection

from otedama.commands.common import add_config_argument, config_path, fail, with_database
from otedama.ledger import db
from otedama.ledger.stats import PoolStats, pool_stats
from otedama.ledger.window import UNITS, WindowCheck, rebuild_totals, verify_totals

__all__ = [
    "format_hashrate",
    "format_sats",
    "format_table",
    "format_window_check",
    "register",
    "show_stats",
    "verify_window",
]


def register(subparsers: Any) -> None:
    """Add ``stats``."""
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
    stats.add_argument(
        "--verify-window",
        action="store_true",
        help="recount the PPLNS window's running totals from the shares table and compare"
        " (exit 1 on any difference)",
    )
    stats.add_argument(
        "--rebuild",
        action="store_true",
        help="with --verify-window: store the recount when it differs",
    )
    stats.set_defaults(func=show_stats)


def show_stats(args: argparse.Namespace) -> int:
    """``otedama stats``: the pool at a glance, as a table or JSON."""
    if args.window <= 0:
        return fail(f"--window must be positive minutes, got {args.window}")
    if getattr(args, "rebuild", False) and not getattr(args, "verify_window", False):
        return fail("--rebuild goes with --verify-window")
    if getattr(args, "verify_window", False):
        return verify_window(args)
    now = time.time()

    def run(connection: Connection, url: str) -> PoolStats | int:
        state = db.migration_state(connection)
        if not state.is_current:
            return fail(
                f"{db.redact(url)}: {state.describe()}; "
                f"run: otedama migrate up --config {config_path(args)}"
            )
        return pool_stats(connection, now, args.window * 60)

    result = with_database(args, run)
    if not isinstance(result, PoolStats):
        return result
    if args.format == "json":
        print(json.dumps(result.as_dict(), indent=2, sort_keys=True))
    else:
        print(format_table(result))
    return 0


def verify_window(args: argparse.Namespace) -> int:
    """``otedama stats --verify-window``: the running totals against a full recount."""

    def run(connection: Connection, url: str) -> tuple[WindowCheck, WindowCheck | None] | int:
        state = db.migration_state(connection)
        if not state.is_current:
            return fail(
                f"{db.redact(url)}: {state.describe()}; "
                f"run: otedama migrate up --config {config_path(args)}"
            )
        check = verify_totals(connection)
        repaired = rebuild_totals(connection) if args.rebuild and not check.ok else None
        return check, repaired

    result = with_database(args, run)
    if isinstance(result, int):
        return result
    check, repaired = result
    print(format_window_check(check))
    if repaired is not None:
        print("rebuilt from the shares table: " + format_window_check(repaired))
        return 0 if repaired.ok else 1
    return 0 if check.ok else 1


def format_window_check(check: WindowCheck) -> str:
    """The check mode's report: OK, or each address whose total differs."""
    since = "every share" if check.start is None else f"shares after {check.start:.3f}"
    if not check.valid:
        return (
            f"PPLNS window totals ({since}) are marked invalid (a difficulty that is not a"
            " whole number of 2**-128): blocks are weighed by the full scan; run with"
            " --rebuild to recount them"
        )
    if not check.differences:
        return f"PPLNS window totals OK: {check.addresses} addresses, equal to a recount of {since}"
    lines = [
        f"PPLNS window totals DIFFER from a recount of {since} for {len(check.differences)}"
        " addresses (stored / recounted, difficulty):"
    ]
    for address, stored, recounted in check.differences[:20]:
        lines.append(f"  {address}  {Fraction(stored, UNITS)} / {Fraction(recounted, UNITS)}")
    if len(check.differences) > 20:
        lines.append(f"  ... and {len(check.differences) - 20} more")
    return "\n".join(lines)


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


def format_span(seconds: float) -> str:
    """A span as the operator reads it: ``45 s``, ``3.5 min``."""
    return f"{seconds:.0f} s" if seconds < 120 else f"{seconds / 60:g} min"


def format_table(stats: PoolStats) -> str:
    """The human-readable ``otedama stats`` report."""
    lines = [
        f"pool hashrate      {format_hashrate(stats.hashrate)} "
        f"(over the last {format_span(stats.span_seconds)} of shares, "
        f"window {format_span(stats.window_seconds)})",
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

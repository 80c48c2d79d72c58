"""``otedama config validate|export|test-db|reference``: check and show the configuration."""

from __future__ import annotations

import argparse
import statistics
import sys
import time
from typing import Any

from sqlalchemy import Connection, text

from otedama.commands.common import (
    add_config_argument,
    config_path,
    load_or_report,
    usage_of,
    with_database,
)
from otedama.config import export_config, money_risks, reference_markdown
from otedama.ledger import db

__all__ = ["register", "round_trip_ms", "server_version", "test_db"]


def register(subparsers: Any) -> None:
    """Add the ``config`` group."""
    config = subparsers.add_parser("config", help="check and show the configuration")
    actions = config.add_subparsers(dest="config_command", metavar="ACTION")
    config.set_defaults(func=lambda args: usage_of(config))
    validate_parser = actions.add_parser("validate", help="check a config file")
    add_config_argument(validate_parser)
    validate_parser.set_defaults(func=validate)
    export = actions.add_parser("export", help="print the effective config as YAML")
    add_config_argument(export)
    export.add_argument("--sanitize", action="store_true", help="mask passwords, tokens and keys")
    export.set_defaults(func=export_effective)
    test_db_parser = actions.add_parser(
        "test-db", help="connect to the database and report version, schema and latency"
    )
    add_config_argument(test_db_parser)
    test_db_parser.set_defaults(func=test_db)
    reference = actions.add_parser(
        "reference", help="print the key reference (Markdown) of docs/configuration.md"
    )
    reference.set_defaults(func=print_reference)


def validate(args: argparse.Namespace) -> int:
    """``otedama config validate``: 0 and the notes when valid, 1 with every problem."""
    config = load_or_report(args)
    if config is None:
        return 1
    print(f"{config_path(args)}: valid")
    for risk in money_risks(config):
        print(f"  warning: {risk}" + (" (the node refuses to start)" if risk.refuse else ""))
    for warning in config.unused_warnings():
        print(f"  note: {warning}")
    return 0


def export_effective(args: argparse.Namespace) -> int:
    """``otedama config export``: the effective config as YAML."""
    config = load_or_report(args)
    if config is None:
        return 1
    sys.stdout.write(export_config(config, sanitize=args.sanitize))
    return 0


def print_reference(args: argparse.Namespace) -> int:
    """``otedama config reference``: the key reference of docs/configuration.md."""
    print(reference_markdown(), end="")
    return 0


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

    return with_database(args, run)

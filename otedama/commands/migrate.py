"""``otedama migrate up|status``: create or update the ledger database schema."""

from __future__ import annotations

import argparse
from typing import Any

from sqlalchemy import Connection

from otedama.commands.common import (
    add_config_argument,
    config_path,
    load_or_report,
    usage_of,
    with_database,
)
from otedama.ledger import db
from otedama.ops.audit import command_actor, record_now

__all__ = ["migrate_status", "migrate_up", "register"]


def register(subparsers: Any) -> None:
    """Add the ``migrate`` group."""
    migrate = subparsers.add_parser("migrate", help="create or update the ledger database schema")
    actions = migrate.add_subparsers(dest="migrate_command", metavar="ACTION")
    migrate.set_defaults(func=lambda args: usage_of(migrate))
    up = actions.add_parser("up", help="apply every migration this version ships")
    add_config_argument(up)
    up.set_defaults(func=migrate_up)
    status = actions.add_parser("status", help="say whether the schema is current")
    add_config_argument(status)
    status.set_defaults(func=migrate_status)


def migrate_up(args: argparse.Namespace) -> int:
    """``otedama migrate up``: apply the shipped migrations."""

    def run(connection: Connection, url: str) -> int:
        before = db.migration_state(connection)
        if before.is_current:
            print(f"{db.redact(url)}: {before.describe()}; nothing to do")
            return 0
        db.upgrade(connection)
        after = db.migration_state(connection)
        config = load_or_report(args)
        if config is not None:
            record_now(
                config,
                command_actor("otedama migrate"),
                "migrate.upgrade",
                db.redact(url),
                "ok",
                {"from": before.current, "to": after.current},
            )
        print(
            f"{db.redact(url)}: migrated from {before.current or 'an empty schema'} "
            f"to {after.current}"
        )
        return 0

    return with_database(args, run)


def migrate_status(args: argparse.Namespace) -> int:
    """``otedama migrate status``: 0 when the schema is current, 1 otherwise."""

    def run(connection: Connection, url: str) -> int:
        state = db.migration_state(connection)
        print(f"{db.redact(url)}: {state.describe()}")
        if state.is_current:
            return 0
        print(f"run: otedama migrate up --config {config_path(args)}")
        return 1

    return with_database(args, run)

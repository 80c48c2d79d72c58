"""``otedama api token create|list|revoke``: bearer tokens for the API's admin endpoints.

A token is printed once, at creation; the database keeps only its SHA-256 hash.
"""

from __future__ import annotations

import argparse
import time
from typing import Any

from sqlalchemy import Connection

from otedama.api import tokens
from otedama.commands.common import (
    add_config_argument,
    config_path,
    fail,
    load_or_report,
    usage_of,
    with_database,
)
from otedama.configschema import Invalid, duration
from otedama.ledger import db
from otedama.ops.audit import command_actor, record_now

__all__ = ["register"]


def register(subparsers: Any) -> None:
    """Add ``api token create|list|revoke``."""
    api = subparsers.add_parser("api", help="API tokens")
    groups = api.add_subparsers(dest="api_command", metavar="COMMAND")
    api.set_defaults(func=lambda args: usage_of(api))
    token = groups.add_parser("token", help="create, list or revoke API bearer tokens")
    actions = token.add_subparsers(dest="token_command", metavar="ACTION")
    token.set_defaults(func=lambda args: usage_of(token))

    create = actions.add_parser("create", help="create a token and print it once")
    add_config_argument(create)
    create.add_argument("--name", required=True, help="who or what uses it (no spaces)")
    create.add_argument(
        "--expires",
        default=None,
        metavar="DURATION",
        help="lifetime, e.g. 24h (default: api.auth.token_expiry)",
    )
    create.set_defaults(func=create_token)

    listing = actions.add_parser("list", help="list tokens (never their secrets)")
    add_config_argument(listing)
    listing.set_defaults(func=list_tokens)

    revoke = actions.add_parser("revoke", help="revoke a token by id or by name")
    add_config_argument(revoke)
    revoke.add_argument("token", metavar="ID_OR_NAME")
    revoke.set_defaults(func=revoke_token)


def _current(connection: Connection, url: str, args: argparse.Namespace) -> int | None:
    state = db.migration_state(connection)
    if state.is_current:
        return None
    return fail(
        f"{db.redact(url)}: {state.describe()}; run: otedama migrate up --config {config_path(args)}"
    )


def create_token(args: argparse.Namespace) -> int:
    config = load_or_report(args)
    if config is None:
        return 1
    lifetime = config.api.auth.token_expiry
    if args.expires is not None:
        try:
            lifetime = duration(args.expires)
        except Invalid as e:
            return fail(f"--expires: {e}")
    if lifetime <= 0:
        return fail(f"--expires must be positive, got {args.expires or lifetime}")
    try:
        tokens.check_name(args.name)
    except ValueError as e:
        return fail(f"--name: {e}")
    now = time.time()

    def run(connection: Connection, url: str) -> tuple[str, int] | int:
        refused = _current(connection, url, args)
        if refused is not None:
            return refused
        made = tokens.create_token(connection, args.name, now, lifetime)
        # In the transaction: a line that cannot be written rolls the token back.
        record_now(
            config,
            command_actor("otedama api token"),
            "token.create",
            args.name,
            "ok",
            {"id": made[1], "expires_at": now + lifetime},
        )
        return made

    result = with_database(args, run)
    if isinstance(result, int):
        return result
    token, ident = result
    expires = time.strftime("%Y-%m-%d %H:%M:%S UTC", time.gmtime(now + lifetime))
    print(token)
    print(f"token {ident} {args.name!r} expires {expires}; it is shown only now, keep it safe")
    return 0


def list_tokens(args: argparse.Namespace) -> int:
    now = time.time()

    def run(connection: Connection, url: str) -> list[tokens.TokenInfo] | int:
        refused = _current(connection, url, args)
        if refused is not None:
            return refused
        return tokens.list_tokens(connection)

    result = with_database(args, run)
    if isinstance(result, int):
        return result
    if not result:
        print("no API tokens; create one with: otedama api token create --name NAME")
        return 0
    print(f"{'id':>4}  {'name':<24} {'state':<8} expires")
    for info in result:
        expires = time.strftime("%Y-%m-%d %H:%M:%S UTC", time.gmtime(info.expires_at))
        print(f"{info.id:>4}  {info.name:<24} {info.state(now):<8} {expires}")
    return 0


def revoke_token(args: argparse.Namespace) -> int:
    config = load_or_report(args)
    if config is None:
        return 1
    now = time.time()

    def run(connection: Connection, url: str) -> list[int] | int:
        refused = _current(connection, url, args)
        if refused is not None:
            return refused
        revoked = tokens.revoke_token(connection, args.token, now)
        record_now(
            config,
            command_actor("otedama api token"),
            "token.revoke",
            args.token,
            "ok" if revoked else "no active token",
            {"revoked": revoked},
        )
        return [revoked]

    result = with_database(args, run)
    if isinstance(result, int):
        return result
    if result[0] == 0:
        return fail(f"no active token with id or name {args.token!r}")
    print(f"revoked {result[0]} token(s) {args.token!r}")
    return 0

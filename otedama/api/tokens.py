"""API bearer tokens: made once, shown once, stored only as a SHA-256 hash.

Functions of a SQLAlchemy ``Connection`` (run them through ``LedgerStore.run``), with
``now`` passed in. A token is ``otd_`` and 43 URL-safe characters (256 random bits).
"""

from __future__ import annotations

import hashlib
import secrets
from dataclasses import dataclass

from sqlalchemy import Connection, insert, select, update

from otedama.ledger.tables import api_tokens

PREFIX = "otd_"
#: Token names: short, printable, no spaces (they appear in logs).
MAX_NAME = 64


def token_hash(token: str) -> str:
    """The stored form of a token."""
    return hashlib.sha256(token.encode("utf-8")).hexdigest()


def new_token() -> str:
    return PREFIX + secrets.token_urlsafe(32)


def check_name(name: str) -> str:
    if not name or len(name) > MAX_NAME or not name.isprintable() or " " in name:
        raise ValueError(
            f"token name must be 1 to {MAX_NAME} printable characters without spaces, "
            f"got {name[:80]!r}"
        )
    return name


@dataclass(frozen=True)
class TokenInfo:
    """A stored token, without its secret."""

    id: int
    name: str
    created_at: float
    expires_at: float
    revoked_at: float | None

    def state(self, now: float) -> str:
        if self.revoked_at is not None:
            return "revoked"
        return "expired" if now >= self.expires_at else "active"

    def as_dict(self, now: float) -> dict[str, object]:
        return {
            "id": self.id,
            "name": self.name,
            "created_at": self.created_at,
            "expires_at": self.expires_at,
            "revoked_at": self.revoked_at,
            "state": self.state(now),
        }


def create_token(connection: Connection, name: str, now: float, lifetime: float) -> tuple[str, int]:
    """Store a new token's hash; returns the token (to show once) and its id."""
    if lifetime <= 0:
        raise ValueError(f"token lifetime must be positive seconds, got {lifetime}")
    token = new_token()
    result = connection.execute(
        insert(api_tokens).values(
            name=check_name(name),
            token_hash=token_hash(token),
            created_at=now,
            expires_at=now + lifetime,
            revoked_at=None,
        )
    )
    key = result.inserted_primary_key
    assert key is not None
    return token, int(key[0])


def list_tokens(connection: Connection) -> list[TokenInfo]:
    rows = connection.execute(select(api_tokens).order_by(api_tokens.c.id))
    return [TokenInfo(r.id, r.name, r.created_at, r.expires_at, r.revoked_at) for r in rows]


def revoke_token(connection: Connection, ident: str, now: float) -> int:
    """Revoke by id or by name (every active token of that name); returns how many."""
    where = api_tokens.c.name == ident
    if ident.isdigit():
        where = api_tokens.c.id == int(ident)
    result = connection.execute(
        update(api_tokens).where(where, api_tokens.c.revoked_at.is_(None)).values(revoked_at=now)
    )
    return int(result.rowcount)


def verify_token(connection: Connection, token: str, now: float) -> tuple[str | None, str]:
    """``(name, "active")`` for a usable token, else ``(None, why)``."""
    row = connection.execute(
        select(api_tokens).where(api_tokens.c.token_hash == token_hash(token))
    ).first()
    if row is None:
        return None, "unknown token"
    info = TokenInfo(row.id, row.name, row.created_at, row.expires_at, row.revoked_at)
    state = info.state(now)
    if state != "active":
        return None, f"token {info.name!r} is {state}"
    return info.name, state

"""Bitcoin Core's RPC authentication for the devnet: rpcuser/rpcpassword and the cookie.

``RpcAuth.check`` judges an ``Authorization`` header as Core's ``RPCAuthorized`` does
(``Basic``, base64 of ``user:password``, split at the first colon, compared in constant
time against every accepted pair). ``write_cookie`` and ``remove_cookie`` keep the
``.cookie`` file Core writes in its data dir (``__cookie__:<64 hex>``, mode 0600, written
to a temporary name and renamed so a reader never sees half of it).
"""

from __future__ import annotations

import base64
import binascii
import hmac
import os
import secrets
from pathlib import Path

__all__ = ["COOKIE_NAME", "COOKIE_USER", "RpcAuth", "remove_cookie", "write_cookie"]

COOKIE_NAME = ".cookie"
COOKIE_USER = "__cookie__"


class RpcAuth:
    """The credentials the devnet accepts (any one of them grants access)."""

    def __init__(self, pairs: list[tuple[str, str]]) -> None:
        if not pairs:
            raise ValueError("RpcAuth needs at least one user/password pair")
        self.pairs = [(user.encode(), password.encode()) for user, password in pairs]

    def check(self, header: bytes) -> bool:
        """Whether the ``Authorization`` header value carries accepted credentials."""
        if not header.startswith(b"Basic "):
            return False
        try:
            decoded = base64.b64decode(header[6:].strip(), validate=True)
        except (binascii.Error, ValueError):
            return False
        user, colon, password = decoded.partition(b":")
        if not colon:
            return False
        granted = False
        for want_user, want_password in self.pairs:
            same_user = hmac.compare_digest(user, want_user)
            same_password = hmac.compare_digest(password, want_password)
            granted |= same_user and same_password
        return granted


def write_cookie(data_dir: Path) -> tuple[str, str]:
    """Write a fresh ``.cookie`` in ``data_dir`` (mode 0600); returns its user and password."""
    password = secrets.token_hex(32)
    data_dir.mkdir(parents=True, exist_ok=True)
    tmp = data_dir / (COOKIE_NAME + ".tmp")
    fd = os.open(tmp, os.O_WRONLY | os.O_CREAT | os.O_TRUNC, 0o600)
    try:
        os.fchmod(fd, 0o600)
        os.write(fd, f"{COOKIE_USER}:{password}".encode())
    finally:
        os.close(fd)
    os.replace(tmp, data_dir / COOKIE_NAME)
    return COOKIE_USER, password


def remove_cookie(data_dir: Path) -> None:
    """Delete the ``.cookie`` (at stop, as Core does); a missing file is fine."""
    try:
        (data_dir / COOKIE_NAME).unlink()
    except FileNotFoundError:
        pass

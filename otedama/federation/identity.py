"""This node's federation identity: an Ed25519 key kept in the data dir, and its node id.

The key is created on first start (file mode 0600) and read on every later start; a key
file that the group or others can read is refused, because whoever holds it can speak for
this node. Deleting the file makes a new node. The node id, the 20-byte id this node has
in the DHT, is derived from the public key, so nobody can claim an id without its key.
Loading does file I/O: call it at start-up, before the reactor runs.
"""

from __future__ import annotations

import hashlib
import os
import stat
from dataclasses import dataclass
from pathlib import Path

from nacl.exceptions import BadSignatureError
from nacl.signing import SigningKey, VerifyKey

__all__ = [
    "KEY_FILE",
    "NODE_ID_SIZE",
    "PUBLIC_KEY_SIZE",
    "SIGNATURE_SIZE",
    "Identity",
    "IdentityError",
    "key_file_problem",
    "load_or_create",
    "node_id_of",
    "verify_signature",
]

KEY_FILE = "federation.key"
"""The key's file name inside ``app.data_dir``."""
PUBLIC_KEY_SIZE = 32
SIGNATURE_SIZE = 64
NODE_ID_SIZE = 20
_SEED_SIZE = 32
_HEADER = b"otedama-ed25519-seed-v1\n"


class IdentityError(Exception):
    """The key file cannot be used; the message names the file and what to do."""


def node_id_of(public_key: bytes) -> bytes:
    """The 20-byte node id of a public key: the first 20 bytes of its SHA-256."""
    return hashlib.sha256(public_key).digest()[:NODE_ID_SIZE]


def verify_signature(public_key: bytes, message: bytes, signature: bytes) -> bool:
    """Whether ``signature`` is ``public_key``'s Ed25519 signature of ``message``."""
    if len(public_key) != PUBLIC_KEY_SIZE or len(signature) != SIGNATURE_SIZE:
        return False
    try:
        VerifyKey(public_key).verify(message, signature)
    except (BadSignatureError, ValueError, TypeError):
        return False
    return True


@dataclass(frozen=True)
class Identity:
    """A node's signing key with its public key, node id and the operator's label."""

    signing_key: SigningKey
    label: str = ""

    @property
    def public_key(self) -> bytes:
        return bytes(self.signing_key.verify_key)

    @property
    def node_id(self) -> bytes:
        return node_id_of(self.public_key)

    def sign(self, message: bytes) -> bytes:
        """The 64-byte detached signature of ``message``."""
        return bytes(self.signing_key.sign(message).signature)

    @classmethod
    def generate(cls, label: str = "") -> Identity:
        """A fresh identity kept in memory only (tests, benchmarks)."""
        return cls(SigningKey.generate(), label)


def _check_mode(path: Path) -> None:
    mode = path.stat().st_mode
    if not stat.S_ISREG(mode):
        raise IdentityError(f"federation key {path} is not a regular file")
    if mode & 0o077:
        raise IdentityError(
            f"federation key {path} is readable by group or others (mode "
            f"{stat.S_IMODE(mode):04o}); whoever reads it can speak for this node. "
            f"Run: chmod 600 {path}"
        )


def _read(path: Path, label: str) -> Identity:
    _check_mode(path)
    data = path.read_bytes()
    if len(data) != len(_HEADER) + _SEED_SIZE or not data.startswith(_HEADER):
        raise IdentityError(
            f"federation key {path} is not an Otedama key file ({len(data)} bytes); "
            "restore it from a backup, or delete it to start as a new node"
        )
    return Identity(SigningKey(data[len(_HEADER) :]), label)


def _create(path: Path, label: str) -> Identity:
    key = SigningKey.generate()
    fd = os.open(path, os.O_WRONLY | os.O_CREAT | os.O_EXCL, 0o600)
    try:
        os.write(fd, _HEADER + bytes(key))
        os.fsync(fd)
    finally:
        os.close(fd)
    return Identity(key, label)


def key_file_problem(data_dir: Path) -> str | None:
    """Why ``data_dir/federation.key`` would be refused at start, or None (usable, or not
    created yet). For the start checks, so a bad key is one clear line, not a traceback."""
    path = data_dir / KEY_FILE
    try:
        _read(path, "")
    except FileNotFoundError:
        return None
    except IdentityError as exc:
        return str(exc)
    except OSError as exc:
        return f"cannot read federation key {path}: {exc.strerror}"
    return None


def load_or_create(data_dir: Path, label: str = "") -> Identity:
    """This node's identity from ``data_dir/federation.key``, created there if missing."""
    data_dir.mkdir(parents=True, exist_ok=True)
    path = data_dir / KEY_FILE
    try:
        return _create(path, label)
    except FileExistsError:
        return _read(path, label)
    except OSError as exc:
        raise IdentityError(f"cannot create federation key {path}: {exc.strerror}") from exc

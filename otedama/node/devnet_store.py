"""Persistence of the devnet chain under its data directory.

Three files:

- ``blocks.dat``: every block the devnet accepted, in arrival order, append-only. Each
  record is ``b"OTDB" | length (u32 LE) | sha256d(block)[:4] | block bytes``; each append is
  flushed and fsynced before the submitter hears "accepted". On start the records are read
  back and every block is validated again. A record torn by a crash at the end of the file
  is cut off; damage anywhere else stops the start with an error naming the offset.
- ``state.json``: the genesis hash (so a data dir made with another difficulty is refused)
  and the blocks marked invalid with ``invalidateblock``.
- ``wallet.json``: the wallet's seed, how many addresses it handed out, and what it knows
  about its own transactions (raw hex, time, comment, fee).

JSON files are replaced atomically (write a temporary file, fsync, rename, fsync the dir).
A lock file keeps a second devnet process off the same directory.
"""

from __future__ import annotations

import fcntl
import json
import os
from collections.abc import Iterator
from pathlib import Path
from typing import IO, Any

from twisted.logger import Logger

from otedama.chain.hashing import sha256d

__all__ = ["DevnetStore", "StoreError"]

_MAGIC = b"OTDB"
_RECORD_HEAD = 12  # magic, length, checksum
_MAX_BLOCK = 32 * 1024 * 1024


class StoreError(Exception):
    """The data directory cannot be used; the message says which file and what to do."""


class DevnetStore:
    """The devnet's files in ``data_dir`` (created when missing)."""

    log = Logger()

    def __init__(self, data_dir: Path) -> None:
        self.data_dir = Path(data_dir)
        self.blocks_path = self.data_dir / "blocks.dat"
        self._blocks: IO[bytes] | None = None
        self._lock: IO[bytes] | None = None

    def open(self) -> None:
        """Create the directory if needed and take its lock."""
        try:
            self.data_dir.mkdir(parents=True, exist_ok=True)
            lock = open(self.data_dir / "devnet.lock", "ab")
        except OSError as e:
            raise StoreError(f"devnet data_dir {self.data_dir}: {e.strerror}") from e
        try:
            fcntl.flock(lock.fileno(), fcntl.LOCK_EX | fcntl.LOCK_NB)
        except OSError:
            lock.close()
            raise StoreError(
                f"devnet data_dir {self.data_dir} is in use by another devnet process; "
                "stop it or give this one another data_dir"
            ) from None
        self._lock = lock

    def close(self) -> None:
        """Close the block file and release the lock."""
        if self._blocks is not None:
            self._blocks.close()
            self._blocks = None
        if self._lock is not None:
            self._lock.close()
            self._lock = None

    # -- blocks -----------------------------------------------------------------------

    def read_blocks(self) -> Iterator[bytes]:
        """Yield the stored blocks in the order they were appended.

        A torn record at the end of the file (a crash during an append) is cut off so the
        next append starts on a clean boundary.
        """
        if not self.blocks_path.exists():
            return
        with open(self.blocks_path, "rb") as f:
            data = f.read()
        offset = 0
        while offset < len(data):
            head = data[offset : offset + _RECORD_HEAD]
            if len(head) == _RECORD_HEAD and head[:4] != _MAGIC:
                raise self._damaged(offset, "no record marker")
            length = int.from_bytes(head[4:8], "little") if len(head) >= 8 else 0
            if len(head) == _RECORD_HEAD and length > _MAX_BLOCK:
                raise self._damaged(offset, f"record length {length} is too large")
            end = offset + _RECORD_HEAD + length
            if len(head) < _RECORD_HEAD or end > len(data):
                self._truncate(offset, len(data))
                return
            raw = data[offset + _RECORD_HEAD : end]
            if sha256d(raw)[:4] != head[8:12]:
                if end == len(data):
                    self._truncate(offset, len(data))
                    return
                raise self._damaged(offset, "checksum mismatch")
            yield raw
            offset = end

    def append_block(self, raw: bytes) -> None:
        """Append one block and make it durable before returning."""
        if self._blocks is None:
            self._blocks = open(self.blocks_path, "ab")
        record = _MAGIC + len(raw).to_bytes(4, "little") + sha256d(raw)[:4] + raw
        self._blocks.write(record)
        self._blocks.flush()
        os.fsync(self._blocks.fileno())

    def _damaged(self, offset: int, what: str) -> StoreError:
        return StoreError(
            f"{self.blocks_path} is damaged at offset {offset} ({what}); move the data_dir "
            "aside or delete it to start a fresh devnet chain"
        )

    def _truncate(self, offset: int, size: int) -> None:
        self.log.warn(
            "cutting a torn record off {path}: bytes {offset}..{size}",
            path=str(self.blocks_path),
            offset=offset,
            size=size,
        )
        with open(self.blocks_path, "r+b") as f:
            f.truncate(offset)
            f.flush()
            os.fsync(f.fileno())

    # -- JSON documents ---------------------------------------------------------------

    def read_json(self, name: str) -> dict[str, Any] | None:
        """The document ``name`` (e.g. ``"state.json"``), or None when it does not exist."""
        path = self.data_dir / name
        try:
            text = path.read_text(encoding="utf-8")
        except FileNotFoundError:
            return None
        except OSError as e:
            raise StoreError(f"cannot read {path}: {e.strerror}") from e
        try:
            value = json.loads(text)
        except ValueError as e:
            raise StoreError(f"{path} is not valid JSON ({e}); delete it to reset") from e
        if not isinstance(value, dict):
            raise StoreError(f"{path} must hold a JSON object, got {type(value).__name__}")
        return value

    def write_json(self, name: str, value: dict[str, Any]) -> None:
        """Replace the document ``name`` atomically and durably."""
        path = self.data_dir / name
        tmp = path.with_name(name + ".tmp")
        with open(tmp, "w", encoding="utf-8") as f:
            json.dump(value, f, indent=1, sort_keys=True)
            f.write("\n")
            f.flush()
            os.fsync(f.fileno())
        os.replace(tmp, path)
        dir_fd = os.open(self.data_dir, os.O_RDONLY)
        try:
            os.fsync(dir_fd)
        finally:
            os.close(dir_fd)

"""Persistence of the devnet chain under its data directory.

Three files:

- ``blocks.dat``: every block the devnet accepted, in arrival order, append-only. Each
  record is ``b"OTDB" | length (u32 LE) | sha256d(block)[:4] | block bytes``; each append is
  flushed and fsynced before the submitter hears "accepted". The write and the fsync run
  off the reactor thread (``run_in_thread``); blocks that arrive while one write is under
  way are written together with one fsync, in arrival order. On start the records are read
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
from collections.abc import Callable, Iterator
from pathlib import Path
from typing import IO, Any

from twisted.internet.defer import Deferred, fail, succeed
from twisted.logger import Logger
from twisted.python.failure import Failure

from otedama.chain.hashing import sha256d

__all__ = ["DevnetStore", "RunInThread", "StoreError", "run_inline"]

RunInThread = Callable[[Callable[[], None]], Deferred[None]]
"""Runs blocking work elsewhere and fires when it is done, e.g.
``functools.partial(deferToThreadPool, reactor, reactor.getThreadPool())``."""


def run_inline(work: Callable[[], None]) -> Deferred[None]:
    """Run ``work`` at once on the calling thread (tests on ``task.Clock``, one-shot tools)."""
    try:
        work()
    except Exception:
        return fail()
    return succeed(None)


_MAGIC = b"OTDB"
_RECORD_HEAD = 12  # magic, length, checksum
_MAX_BLOCK = 32 * 1024 * 1024


class StoreError(Exception):
    """The data directory cannot be used; the message says which file and what to do."""


class DevnetStore:
    """The devnet's files in ``data_dir`` (created when missing)."""

    log = Logger()

    def __init__(self, data_dir: Path, run_in_thread: RunInThread = run_inline) -> None:
        self.data_dir = Path(data_dir)
        self.blocks_path = self.data_dir / "blocks.dat"
        self.run_in_thread = run_in_thread
        self._blocks: IO[bytes] | None = None
        self._lock: IO[bytes] | None = None
        self._queued: list[tuple[bytes, Deferred[None]]] = []
        self._writing = False
        self._close_when_written = False
        self._idle: list[Deferred[None]] = []

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
        """Close the block file and release the lock (once the writes under way are done)."""
        if self._writing:
            self._close_when_written = True
            return
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

    def append_block(self, raw: bytes) -> Deferred[None]:
        """Append one block; fires once it is durable (written and fsynced off the reactor)."""
        record = _MAGIC + len(raw).to_bytes(4, "little") + sha256d(raw)[:4] + raw
        done: Deferred[None] = Deferred()
        self._queued.append((record, done))
        if not self._writing:
            self._write_queued()
        return done

    def written(self) -> Deferred[None]:
        """Fires when every block appended so far is durable (at once when none is waiting)."""
        if not self._writing:
            return succeed(None)
        idle: Deferred[None] = Deferred()
        self._idle.append(idle)
        return idle

    def _write_queued(self) -> None:
        batch, self._queued = self._queued, []
        records = b"".join(record for record, _ in batch)
        self._writing = True
        self.run_in_thread(lambda: self._write(records)).addBoth(self._batch_written, batch)

    def _write(self, records: bytes) -> None:
        """In the writer thread: append the records and fsync once."""
        if self._blocks is None:
            self._blocks = open(self.blocks_path, "ab")
        self._blocks.write(records)
        self._blocks.flush()
        os.fsync(self._blocks.fileno())

    def _batch_written(
        self, result: Failure | None, batch: list[tuple[bytes, Deferred[None]]]
    ) -> None:
        self._writing = False
        if isinstance(result, Failure):
            self.log.failure(
                "cannot append {count} block(s) to {path}",
                result,
                count=len(batch),
                path=str(self.blocks_path),
            )
        for _, done in batch:
            if isinstance(result, Failure):
                done.errback(result)
            else:
                done.callback(None)
        if self._queued:
            self._write_queued()
            return
        if self._close_when_written:
            self._close_when_written = False
            self.close()
        idle, self._idle = self._idle, []
        for d in idle:
            d.callback(None)

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

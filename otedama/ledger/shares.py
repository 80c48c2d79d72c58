"""Share ingest: every accepted share reaches the database exactly once.

Shares are buffered in the reactor thread and written in batches (every ``batch_size``
shares or ``flush_interval`` seconds), one multi-row insert per batch, on the database's
worker threads. Each batch carries a random key that is inserted into ``share_batches``
in the same transaction as its shares.

When the database cannot be reached, batches go to a local spool instead: append-only
segment files of one JSON line per batch, fsynced per batch, bounded in total size. A
periodic check replays the spool when the database answers again (and at start, so a
spool left by a crash or a restart is not forgotten). A segment file is deleted only
after every batch in it committed; a batch whose key is already in ``share_batches``
(it committed but the crash came before the segment was deleted, or the commit reply was
lost) is skipped, so the count is exact. A batch the database refuses for another reason
is moved to ``rejected.jsonl`` beside the spool, never silently lost.
"""

from __future__ import annotations

import io
import json
import math
import os
import threading
import time
import uuid
from collections.abc import Callable, Iterator, Sequence
from dataclasses import dataclass, field
from functools import partial
from pathlib import Path
from typing import Any, BinaryIO

from sqlalchemy import Connection, Engine, insert, select
from sqlalchemy.exc import DBAPIError, DisconnectionError, InterfaceError, OperationalError
from sqlalchemy.exc import TimeoutError as PoolTimeoutError
from twisted.internet.defer import Deferred, DeferredList
from twisted.internet.interfaces import IReactorTime
from twisted.internet.task import LoopingCall
from twisted.logger import Logger
from twisted.python.failure import Failure

from otedama.ledger.db import Database, DatabaseStopped, describe_error
from otedama.ledger.files import FileWorker
from otedama.ledger.tables import share_batches
from otedama.ledger.window import FOLD_BATCHES, FOLD_INTERVAL, add_batch, fold

#: Default bound of the spool: generous, so an outage of hours loses nothing.
DEFAULT_SPOOL_MAX_BYTES = 1 << 30
#: A segment is closed at this size so a long replay can free disk as it goes.
SEGMENT_BYTES = 64 << 20
REJECTED_FILE = "rejected.jsonl"


@dataclass(frozen=True, slots=True)
class ShareRecord:
    """One accepted share as the ledger stores it.

    ``difficulty`` is the share difficulty in force when it was accepted (its PPLNS
    weight); ``share_hash`` the header hash in internal byte order, when known.
    """

    created_at: float
    address: str
    worker: str
    difficulty: float
    job_id: str
    height: int
    share_hash: bytes | None = None

    def __post_init__(self) -> None:
        if not math.isfinite(self.created_at) or self.created_at < 0:
            raise ValueError(f"share created_at must be epoch seconds, got {self.created_at!r}")
        if not self.address:
            raise ValueError("share address is empty")
        if not math.isfinite(self.difficulty) or self.difficulty <= 0:
            raise ValueError(f"share difficulty must be positive, got {self.difficulty!r}")
        if self.height < 0:
            raise ValueError(f"share height must not be negative, got {self.height!r}")

    def as_row(self) -> dict[str, Any]:
        """The ``shares`` row for this record."""
        return {
            "created_at": self.created_at,
            "address": self.address,
            "worker": self.worker,
            "difficulty": self.difficulty,
            "job_id": self.job_id,
            "height": self.height,
            "share_hash": self.share_hash,
        }

    def as_tuple(self) -> tuple[float, str, str, float, str, int, bytes | None]:
        """The ``shares`` row in column order (for the driver's executemany)."""
        return (
            self.created_at,
            self.address,
            self.worker,
            self.difficulty,
            self.job_id,
            self.height,
            self.share_hash,
        )

    def to_json(self) -> list[Any]:
        """A compact JSON-ready list (the spool line format)."""
        share_hash = None if self.share_hash is None else self.share_hash.hex()
        return [
            self.created_at,
            self.address,
            self.worker,
            self.difficulty,
            self.job_id,
            self.height,
            share_hash,
        ]

    @classmethod
    def from_json(cls, item: Sequence[Any]) -> ShareRecord:
        """Inverse of :meth:`to_json`."""
        created_at, address, worker, difficulty, job_id, height, share_hash = item
        return cls(
            float(created_at),
            str(address),
            str(worker),
            float(difficulty),
            str(job_id),
            int(height),
            None if share_hash is None else bytes.fromhex(share_hash),
        )


def insert_batch(
    connection: Connection,
    key: str,
    records: Sequence[ShareRecord],
    now: float,
    *,
    skip_if_present: bool = False,
) -> bool:
    """Insert one batch of shares and its ``share_batches`` key; False if already there.

    The batch's addition to the PPLNS window's running totals is appended in the same
    transaction (:func:`otedama.ledger.window.add_batch`; :func:`~otedama.ledger.window.fold`
    adds it to the totals later).
    """
    if skip_if_present:
        found = connection.execute(
            select(share_batches.c.key).where(share_batches.c.key == key)
        ).first()
        if found is not None:
            return False
    connection.execute(
        insert(share_batches), {"key": key, "created_at": now, "count": len(records)}
    )
    if not records:
        return True
    if connection.dialect.name == "postgresql":
        _copy_shares(connection, records)
    else:
        # Plain tuples to the driver's executemany: SQLAlchemy's per-row dict handling was
        # most of this thread's time, and it holds the GIL the reactor needs.
        connection.exec_driver_sql(_INSERT_SHARES, [record.as_tuple() for record in records])
    add_batch(connection, records)
    return True


_SHARE_COLUMNS = "created_at, address, worker, difficulty, job_id, height, share_hash"
_COPY_SHARES = f"COPY shares ({_SHARE_COLUMNS}) FROM STDIN"
_INSERT_SHARES = f"INSERT INTO shares ({_SHARE_COLUMNS}) VALUES (?, ?, ?, ?, ?, ?, ?)"
_COPY_ESCAPES = str.maketrans({"\\": "\\\\", "\t": "\\t", "\n": "\\n", "\r": "\\r"})


def copy_line(record: ShareRecord) -> str:
    """One row of PostgreSQL's COPY text format (tab-separated, backslash escapes)."""
    share_hash = "\\N" if record.share_hash is None else "\\\\x" + record.share_hash.hex()
    return (
        f"{record.created_at!r}\t{record.address.translate(_COPY_ESCAPES)}\t"
        f"{record.worker.translate(_COPY_ESCAPES)}\t{record.difficulty!r}\t"
        f"{record.job_id.translate(_COPY_ESCAPES)}\t{record.height}\t{share_hash}\n"
    )


def copy_text(records: Sequence[ShareRecord]) -> str:
    """The rows of :func:`copy_line` for a whole batch, escaping each distinct address,
    worker and job id once (they repeat across a batch): half the time per share."""
    escaped: dict[str, str] = {}
    texts: dict[float, str] = {}
    lines: list[str] = []
    append = lines.append
    for record in records:
        address = escaped.get(record.address)
        if address is None:
            address = escaped[record.address] = record.address.translate(_COPY_ESCAPES)
        worker = escaped.get(record.worker)
        if worker is None:
            worker = escaped[record.worker] = record.worker.translate(_COPY_ESCAPES)
        job_id = escaped.get(record.job_id)
        if job_id is None:
            job_id = escaped[record.job_id] = record.job_id.translate(_COPY_ESCAPES)
        difficulty = texts.get(record.difficulty)
        if difficulty is None:
            difficulty = texts[record.difficulty] = repr(record.difficulty)
        share_hash = _NULL if record.share_hash is None else _BYTEA + record.share_hash.hex()
        append(
            f"{record.created_at!r}\t{address}\t{worker}\t{difficulty}\t{job_id}"
            f"\t{record.height}\t{share_hash}\n"
        )
    return "".join(lines)


_NULL = "\\N"
_BYTEA = "\\\\x"


def _copy_shares(connection: Connection, records: Sequence[ShareRecord]) -> None:
    """Insert shares with ``COPY … FROM STDIN``: several times faster than a multi-row insert."""
    data = io.StringIO(copy_text(records))
    cursor = connection.connection.dbapi_connection.cursor()  # type: ignore[union-attr]
    try:
        cursor.copy_expert(_COPY_SHARES, data)
    finally:
        cursor.close()


def is_connection_error(error: BaseException) -> bool:
    """True when ``error`` means the database is unreachable rather than the data bad."""
    if isinstance(error, OperationalError | InterfaceError | DisconnectionError | PoolTimeoutError):
        return True
    return isinstance(error, DBAPIError) and error.connection_invalidated


@dataclass(frozen=True)
class SpooledBatch:
    """A batch read back from a spool segment."""

    key: str
    records: tuple[ShareRecord, ...]


@dataclass(frozen=True)
class BadLine:
    """A spool line that cannot be read (torn by a crash mid-write, or damaged)."""

    segment: Path
    number: int
    reason: str


class ShareSpool:
    """Bounded, append-only local storage for share batches while the database is away.

    Blocking file I/O: call it from worker threads, not the reactor. Thread-safe.
    """

    def __init__(self, directory: Path, max_bytes: int = DEFAULT_SPOOL_MAX_BYTES) -> None:
        if max_bytes < 1:
            raise ValueError(f"share spool max size must be positive, got {max_bytes}")
        self.directory = Path(directory)
        self.max_bytes = max_bytes
        self.directory.mkdir(parents=True, exist_ok=True)
        self._lock = threading.Lock()
        self._current: BinaryIO | None = None
        self._current_size = 0
        segments = self._segments()
        self._next_number = (int(segments[-1].stem.split("-")[1]) + 1) if segments else 1
        self._bytes = sum(segment.stat().st_size for segment in segments)

    def _segments(self) -> list[Path]:
        return sorted(self.directory.glob("spool-*.jsonl"))

    @property
    def size(self) -> int:
        """Bytes waiting in the spool."""
        return self._bytes

    def has_data(self) -> bool:
        """True when batches are waiting to be replayed."""
        return self._bytes > 0

    def append(self, key: str, records: Sequence[ShareRecord], now: float) -> bool:
        """Append one batch durably (fsync); False when the spool is full."""
        line = (
            json.dumps(
                {"key": key, "at": now, "shares": [r.to_json() for r in records]},
                separators=(",", ":"),
            )
            + "\n"
        ).encode()
        with self._lock:
            if self._bytes + len(line) > self.max_bytes:
                return False
            current = self._current or self._open_segment()
            try:
                current.write(line)
                current.flush()
                os.fsync(current.fileno())
            except OSError:
                # Whatever part of the line reached the file is torn; never append after it.
                self._close_segment()
                raise
            self._bytes += len(line)
            self._current_size += len(line)
            if self._current_size >= SEGMENT_BYTES:
                self._close_segment()
            return True

    def _open_segment(self) -> BinaryIO:
        path = self.directory / f"spool-{self._next_number:012d}.jsonl"
        self._next_number += 1
        current = self._current = open(path, "ab")  # kept open across appends
        self._current_size = 0
        directory = os.open(self.directory, os.O_RDONLY)
        try:
            os.fsync(directory)
        finally:
            os.close(directory)
        return current

    def _close_segment(self) -> None:
        if self._current is not None:
            self._current.close()
            self._current = None

    def rotate(self) -> list[Path]:
        """Close the segment being written and return every segment, oldest first."""
        with self._lock:
            self._close_segment()
            return self._segments()

    def read(self, segment: Path) -> Iterator[SpooledBatch | BadLine]:
        """The batches in one closed segment, in order; unreadable lines as ``BadLine``."""
        with open(segment, "rb") as f:
            for number, raw in enumerate(f, 1):
                if not raw.endswith(b"\n"):
                    yield BadLine(segment, number, "torn last line (crash while writing)")
                    continue
                try:
                    item = json.loads(raw)
                    yield SpooledBatch(
                        str(item["key"]),
                        tuple(ShareRecord.from_json(share) for share in item["shares"]),
                    )
                except (ValueError, KeyError, TypeError) as e:
                    yield BadLine(segment, number, f"unreadable line: {e}")

    def remove(self, segment: Path) -> None:
        """Delete a segment whose batches are all in the database."""
        with self._lock:
            size = segment.stat().st_size
            segment.unlink()
            self._bytes -= size

    def reject(self, batch: SpooledBatch, reason: str, now: float) -> None:
        """Keep a batch the database refused in ``rejected.jsonl`` for the operator."""
        line = json.dumps(
            {
                "key": batch.key,
                "at": now,
                "reason": reason,
                "shares": [r.to_json() for r in batch.records],
            },
            separators=(",", ":"),
        )
        with self._lock, open(self.directory / REJECTED_FILE, "a", encoding="utf-8") as f:
            f.write(line + "\n")
            f.flush()
            os.fsync(f.fileno())

    def close(self) -> None:
        """Close the open segment (appending again reopens a new one)."""
        with self._lock:
            self._close_segment()


STORED = "stored"
SPOOLED = "spooled"
DROPPED = "dropped"


@dataclass(frozen=True)
class WriteResult:
    """What happened to one batch: stored, spooled, or dropped (spool full)."""

    outcome: str
    count: int
    reason: str | None = None


@dataclass
class ReplayResult:
    """What one spool replay did."""

    replayed_batches: int = 0
    replayed_shares: int = 0
    skipped_batches: int = 0
    skipped_shares: int = 0
    rejected_shares: int = 0
    bad_lines: list[BadLine] = field(default_factory=list)


class ShareWriter:
    """Writes batches to the database, or to the spool when it is unreachable.

    Blocking: its methods run on the database's worker threads. ``degraded_reason``
    says why the database is considered unreachable (None when it is fine).
    """

    def __init__(
        self,
        engine: Engine,
        spool: ShareSpool,
        window: float | None = None,
        fold_interval: float = FOLD_INTERVAL,
        fold_batches: int = FOLD_BATCHES,
    ) -> None:
        self.engine = engine
        self.spool = spool
        #: The PPLNS window in seconds the running totals follow (None: keep every share).
        self.window = window
        #: Seconds between folds of the batches' deltas into the window totals (0: after
        #: every batch), or sooner after this many batches (a block's read adds up the
        #: deltas pending and counts the shares since the last fold: kept small under a
        #: high share rate); a fold runs on the thread of the batch that finds it due.
        self.fold_interval = fold_interval
        self.fold_batches = fold_batches
        self._batches_since_fold = 0
        self.degraded_reason: str | None = None
        #: Folds that failed (the next due batch tries again) and the last one's reason.
        self.fold_failures = 0
        self.fold_error: str | None = None
        self._fold_lock = threading.Lock()
        self._folded_at = -math.inf
        #: ``observer(seconds)`` after every batch written (stored or spooled), on the
        #: writing thread: the metrics' batch latency. An observer must not raise.
        self.observers: list[Callable[[float], object]] = []

    def maybe_fold(self) -> None:
        """After a batch: fold the window deltas if the last fold is ``fold_interval``
        old or ``fold_batches`` batches ago, and no other thread is folding (never waits
        for one)."""
        self._batches_since_fold += 1  # (a lost update between threads is harmless)
        if not self._fold_due():
            return
        if not self._fold_lock.acquire(blocking=False):
            return
        try:
            if self._fold_due():
                self._fold()
        finally:
            self._fold_lock.release()

    def _fold_due(self) -> bool:
        return (
            self._batches_since_fold >= self.fold_batches
            or time.monotonic() - self._folded_at >= self.fold_interval
        )

    def fold_now(self) -> None:
        """Fold the window deltas now (waiting for a fold running on another thread)."""
        with self._fold_lock:
            self._fold()

    def _fold(self) -> None:
        try:
            with self.engine.begin() as connection:
                fold(connection, self.window)
            self.fold_error = None
        except Exception as e:
            # The batches are stored either way; their deltas wait for the next fold.
            self.fold_failures += 1
            self.fold_error = describe_error(e, self.engine.url)
        finally:
            self._folded_at = time.monotonic()
            self._batches_since_fold = 0

    def write(self, key: str, records: Sequence[ShareRecord], now: float) -> WriteResult:
        """Store one batch: in the database if it is up, else in the spool."""
        if not self.observers:
            return self._write(key, records, now)
        started = time.perf_counter()
        try:
            return self._write(key, records, now)
        finally:
            seconds = time.perf_counter() - started
            for observer in self.observers:
                observer(seconds)

    def _write(self, key: str, records: Sequence[ShareRecord], now: float) -> WriteResult:
        reason = self.degraded_reason
        if reason is None:
            try:
                with self.engine.begin() as connection:
                    insert_batch(connection, key, records, now)
            except Exception as e:
                reason = describe_error(e, self.engine.url)
                if is_connection_error(e):
                    self.degraded_reason = reason
                else:
                    reason = f"the database refused a share batch: {reason}"
            else:
                self.maybe_fold()
                return WriteResult(STORED, len(records))
        return self.spool_batch(key, records, now, reason)

    def spool_batch(
        self, key: str, records: Sequence[ShareRecord], now: float, reason: str | None
    ) -> WriteResult:
        """Put one batch in the spool (for replay later); DROPPED only when it cannot."""
        try:
            if self.spool.append(key, records, now):
                return WriteResult(SPOOLED, len(records), reason)
            reason = f"share spool full ({self.spool.size} of {self.spool.max_bytes} bytes)"
        except OSError as e:
            reason = f"cannot write the share spool in {self.spool.directory}: {e}"
        return WriteResult(DROPPED, len(records), reason)

    def replay(self, now: float, result: ReplayResult | None = None) -> ReplayResult:
        """Move every spooled batch into the database; raises if it is still unreachable.

        Progress is counted in ``result`` as it goes, so it is known even when the
        database goes away again half-way.
        """
        result = ReplayResult() if result is None else result
        try:
            with self.engine.connect() as connection:
                connection.execute(select(1))
        except Exception as e:
            self.degraded_reason = describe_error(e, self.engine.url)
            raise
        for segment in self.spool.rotate():
            for item in self.spool.read(segment):
                if isinstance(item, BadLine):
                    result.bad_lines.append(item)
                    continue
                self._replay_batch(item, now, result)
            self.spool.remove(segment)
        self.degraded_reason = None
        return result

    def _replay_batch(self, batch: SpooledBatch, now: float, result: ReplayResult) -> None:
        try:
            with self.engine.begin() as connection:
                inserted = insert_batch(
                    connection,
                    batch.key,
                    batch.records,
                    now,
                    skip_if_present=True,
                )
        except Exception as e:
            if is_connection_error(e):
                self.degraded_reason = describe_error(e, self.engine.url)
                raise
            self.spool.reject(batch, describe_error(e, self.engine.url), now)
            result.rejected_shares += len(batch.records)
            return
        if inserted:
            result.replayed_batches += 1
            result.replayed_shares += len(batch.records)
            self.maybe_fold()
        else:
            result.skipped_batches += 1
            result.skipped_shares += len(batch.records)


@dataclass(frozen=True)
class IngestHealth:
    """The share path's state for ``/health``: ``ok`` or ``degraded`` with the reason."""

    status: str
    reason: str | None
    spool_bytes: int
    spool_max_bytes: int
    stored: int
    spooled: int
    dropped: int


class ShareBatcher:
    """Buffers accepted shares in the reactor and writes them in batches.

    :meth:`add` never blocks nor raises for database trouble, so Stratum keeps serving
    miners while the database is away; the spool and a periodic replay take care of it.
    """

    log = Logger()

    def __init__(
        self,
        database: Database,
        writer: ShareWriter,
        clock: IReactorTime,
        batch_size: int = 1000,
        flush_interval: float = 1.0,
        retry_interval: float = 5.0,
        *,
        files: FileWorker,
    ) -> None:
        if batch_size < 1:
            raise ValueError(f"share batch size must be at least 1, got {batch_size}")
        if flush_interval <= 0 or retry_interval <= 0:
            raise ValueError(
                f"share flush/retry intervals must be positive, got {flush_interval}/{retry_interval}"
            )
        self.database = database
        self.writer = writer
        self.files = files
        # Any: mypy without the zope plugin mistypes Interface methods.
        self._clock: Any = clock
        self.batch_size = batch_size
        self.flush_interval = flush_interval
        self.retry_interval = retry_interval
        self.stored = 0
        self.spooled = 0
        self.dropped = 0
        self.replayed = 0
        #: Spooled shares found already stored on replay (their commit's reply was lost).
        self.already_stored = 0
        #: Ticks of the flush or replay timer that raised (each is logged; the timer goes on).
        self.tick_failures = 0
        self._buffer: list[ShareRecord] = []
        self._pending: set[Deferred[Any]] = set()
        self._replaying: Deferred[Any] | None = None
        self._flusher = LoopingCall(self._guarded, self._flush_now, "share flush")
        self._flusher.clock = clock
        self._maintainer = LoopingCall(self._guarded, self._maintain, "share spool check")
        self._maintainer.clock = clock
        self._running = False
        self._stopping = False
        self._closed = False
        self._was_degraded = False
        self._fold_failures_seen = 0

    def start(self) -> None:
        """Start the periodic flush and the spool replay check (first check at once)."""
        if self._running:
            return
        self._running = True
        self._flusher.start(self.flush_interval, now=False)
        self._maintainer.start(self.retry_interval, now=True)

    def _guarded(self, work: Callable[[], object], what: str) -> None:
        """One timer tick: a failure is logged and counted, and the timer goes on."""
        try:
            work()
        except Exception:
            self.tick_failures += 1
            self.log.failure(
                "{what} failed ({count} failed ticks so far); trying again next tick",
                what=what,
                count=self.tick_failures,
            )

    def add(self, record: ShareRecord) -> None:
        """Queue one accepted share (after :meth:`stop`, it goes straight to the spool)."""
        if self._closed:
            self._spool(uuid.uuid4().hex, [record], "the ledger has stopped")
            return
        self._buffer.append(record)
        if self._stopping or len(self._buffer) >= self.batch_size:
            self._flush_now()

    @property
    def buffered(self) -> int:
        """Shares waiting in memory for the next batch."""
        return len(self._buffer)

    def _flush_now(self) -> None:
        if not self._buffer:
            return
        key = uuid.uuid4().hex
        now = self._clock.seconds()
        batch, self._buffer = self._buffer, []
        try:
            d = self.database.call(self.writer.write, key, batch, now)
        except DatabaseStopped:
            # After the database stopped (shutdown), write straight to the spool.
            self._spool(key, batch, "the ledger is stopping")
            return
        self._track(d, len(batch))

    def _spool(self, key: str, batch: list[ShareRecord], reason: str) -> None:
        """Write a batch to the spool on the file thread (its fsync stays off the reactor)."""
        now = self._clock.seconds()
        self._track(
            self.files.run(partial(self.writer.spool_batch, key, batch, now, reason)), len(batch)
        )

    def _track(self, d: Deferred[WriteResult], count: int) -> None:
        self._pending.add(d)
        d.addCallbacks(self._written, self._write_failed, errbackArgs=(count,))
        d.addBoth(self._forget, d)

    def _forget(self, result: object, d: Deferred[Any]) -> None:
        self._pending.discard(d)

    def _written(self, result: WriteResult) -> None:
        failures = self.writer.fold_failures
        if failures != self._fold_failures_seen:
            self._fold_failures_seen = failures
            self.log.warn(
                "PPLNS window totals: fold failed ({count} so far; the share batches are"
                " stored and the next fold takes their deltas): {reason}",
                count=failures,
                reason=self.writer.fold_error,
            )
        if result.outcome == STORED:
            self.stored += result.count
        elif result.outcome == SPOOLED:
            self.spooled += result.count
            if not self._was_degraded:
                self._was_degraded = True
                self.log.warn(
                    "ledger database unavailable ({reason}); spooling shares to {spool}",
                    reason=result.reason,
                    spool=str(self.writer.spool.directory),
                )
        else:
            self.dropped += result.count
            self.log.critical(
                "SHARES LOST: dropped {count} shares ({dropped} in total): {reason}",
                count=result.count,
                dropped=self.dropped,
                reason=result.reason,
            )

    def _write_failed(self, failure: Failure, count: int) -> None:
        self.dropped += count
        self.log.failure("share batch of {count} could not be written", failure, count=count)

    async def flush(self) -> None:
        """Write what is buffered and wait until every batch is stored or spooled."""
        self._flush_now()
        while self._pending:
            await DeferredList(list(self._pending), consumeErrors=True)

    def _maintain(self) -> Deferred[Any] | None:
        if self._replaying is not None:
            return None
        if self.writer.degraded_reason is None and not self.writer.spool.has_data():
            return None
        progress = ReplayResult()
        try:
            d = self.database.call(self.writer.replay, self._clock.seconds(), progress)
        except DatabaseStopped:
            return None
        self._replaying = d
        d.addErrback(self._replay_failed)
        d.addBoth(self._replay_done, progress)
        return None

    def _replay_done(self, _: object, progress: ReplayResult) -> None:
        self._replaying = None
        self._replayed(progress)

    def _replayed(self, result: ReplayResult) -> None:
        self.replayed += result.replayed_shares
        self.already_stored += result.skipped_shares
        for bad in result.bad_lines:
            self.log.error(
                "share spool {segment} line {number} skipped: {reason}",
                segment=str(bad.segment),
                number=bad.number,
                reason=bad.reason,
            )
        if result.rejected_shares:
            self.log.error(
                "the database refused {count} spooled shares; kept in {file}",
                count=result.rejected_shares,
                file=str(self.writer.spool.directory / REJECTED_FILE),
            )
        if result.replayed_batches or result.skipped_batches:
            self.log.info(
                "ledger database back: replayed {shares} spooled shares in {batches} batches "
                "({skipped} batches were already stored)",
                shares=result.replayed_shares,
                batches=result.replayed_batches,
                skipped=result.skipped_batches,
            )
        self._was_degraded = self.writer.degraded_reason is not None

    def _replay_failed(self, failure: Failure) -> None:
        if failure.value is not None and is_connection_error(failure.value):
            self.log.debug(
                "ledger database still unavailable: {reason}", reason=self.writer.degraded_reason
            )
            return
        self.log.failure("share spool replay failed", failure)

    async def replay_now(self) -> None:
        """Run one spool replay check now and wait for it (start-up, tests)."""
        if self._replaying is not None:
            await DeferredList([self._replaying], consumeErrors=True)
        self._maintain()
        if self._replaying is not None:
            await DeferredList([self._replaying], consumeErrors=True)

    def health(self) -> IngestHealth:
        """``ok`` or ``degraded`` (with the reason), spool use and counters."""
        reason = self.writer.degraded_reason
        if reason is None and self.writer.spool.has_data():
            reason = "spooled shares waiting to be replayed"
        if reason is None and self._replaying is not None:
            reason = "replaying spooled shares"
        full = self.writer.spool.size >= self.writer.spool.max_bytes * 0.99
        if full:
            reason = f"share spool full; shares are being dropped ({reason})"
        return IngestHealth(
            status="ok" if reason is None else "degraded",
            reason=reason,
            spool_bytes=self.writer.spool.size,
            spool_max_bytes=self.writer.spool.max_bytes,
            stored=self.stored,
            spooled=self.spooled,
            dropped=self.dropped,
        )

    async def stop(self) -> None:
        """Stop the timers, write what is buffered and wait for writes and replays."""
        self._stopping = True
        if self._running:
            self._running = False
            self._flusher.stop()
            self._maintainer.stop()
        if self._replaying is not None:
            await DeferredList([self._replaying], consumeErrors=True)
        await self.flush()
        self._closed = True

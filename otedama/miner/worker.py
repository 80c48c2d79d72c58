"""The hashing loop of the CPU miner, run as ``python -m otedama.miner.worker`` per thread.

Line protocol (JSON, one object a line):

* parent -> worker on stdin: ``{"work": {...}}`` (see :meth:`Work.to_line`) replaces the
  current work at once; ``{"retarget": {"work_id": n, "target": "hex"}}`` changes the share
  target of the current work without restarting it; ``{"idle": true}`` stops hashing until
  the next work; end of input ends the process.
* worker -> parent on stdout: ``{"share": {...}}`` for each hash at or below the share
  target, ``{"hashes": n}`` about once a second with the hashes done since the last
  report, ``{"exhausted": work_id}`` when a work's whole range has been scanned.

The loop is pure Python on :mod:`hashlib`: the SHA-256 state after the first 64 header
bytes is computed once per header prefix and ``.copy()``-ed for each nonce.
"""

from __future__ import annotations

import hashlib
import json
import os
import signal
import struct
import sys
import threading
import time
from collections.abc import Callable
from typing import BinaryIO

from otedama.miner.work import Work, WorkError, iter_header_prefixes

__all__ = ["HashLoop", "WorkerState", "main", "read_commands", "scan"]

#: Nonces scanned between checks for new work (about 15 ms of hashing).
CHUNK = 16384

_pack_nonce = struct.Struct("<I").pack


def scan(prefix76: bytes, target: int, start: int, stop: int) -> list[tuple[int, bytes]]:
    """Hash nonces ``start .. stop - 1`` after ``prefix76``; return ``(nonce, hash)`` of shares.

    A share is a double SHA-256 that, read little-endian, is at most ``target``.
    """
    if len(prefix76) != 76:
        raise WorkError(f"header prefix must be 76 bytes, got {len(prefix76)}")
    midstate = hashlib.sha256(prefix76[:64])
    copy = midstate.copy
    tail = prefix76[64:]
    sha256 = hashlib.sha256
    from_bytes = int.from_bytes
    found: list[tuple[int, bytes]] = []
    # When the target is below 2**248 a share's last (most significant) byte is zero: a cheap
    # filter before the full comparison.
    if target < 1 << 248:
        for nonce in range(start, stop):
            inner = copy()
            inner.update(tail + _pack_nonce(nonce))
            digest = sha256(inner.digest()).digest()
            if digest[31] == 0 and from_bytes(digest, "little") <= target:
                found.append((nonce, digest))
    else:
        for nonce in range(start, stop):
            inner = copy()
            inner.update(tail + _pack_nonce(nonce))
            digest = sha256(inner.digest()).digest()
            if from_bytes(digest, "little") <= target:
                found.append((nonce, digest))
    return found


class WorkerState:
    """The work a worker should be doing, set by the stdin reader thread."""

    def __init__(self) -> None:
        self._cond = threading.Condition()
        self._work: Work | None = None
        self._generation = 0
        self._closed = False
        self.target = 0

    @property
    def generation(self) -> int:
        """Bumped each time the work changes; the hash loop polls it between chunks."""
        return self._generation

    def set_work(self, work: Work | None) -> None:
        """Replace the current work (``None``: stay idle)."""
        with self._cond:
            self._work = work
            self.target = work.target if work is not None else 0
            self._generation += 1
            self._cond.notify_all()

    def retarget(self, work_id: int, target: int) -> None:
        """Change the share target of the current work if it is ``work_id``."""
        with self._cond:
            if self._work is not None and self._work.work_id == work_id and target > 0:
                self.target = target

    def close(self) -> None:
        """Ask the loop to end."""
        with self._cond:
            self._closed = True
            self._generation += 1
            self._cond.notify_all()

    def wait(self, seen: int, timeout: float | None = None) -> tuple[int, Work | None, bool]:
        """Block until the generation differs from ``seen``; return (generation, work, closed)."""
        with self._cond:
            self._cond.wait_for(lambda: self._generation != seen, timeout)
            return self._generation, self._work, self._closed


class HashLoop:
    """Scans the current work chunk by chunk, reporting shares and hash counts."""

    def __init__(
        self,
        state: WorkerState,
        emit: Callable[[dict[str, object]], None],
        now: Callable[[], float],
        *,
        chunk: int = CHUNK,
        report_interval: float = 1.0,
    ) -> None:
        self.state = state
        self.emit = emit
        self.now = now
        self.chunk = chunk
        self.report_interval = report_interval
        self._hashes = 0
        self._last_report = now()

    def run(self) -> None:
        """Hash until the state is closed."""
        generation, work, closed = self.state.wait(-1, 0)
        while not closed:
            if work is None:
                self._report(force=True)
                generation, work, closed = self.state.wait(generation)
                continue
            finished = self.run_work(work, generation)
            if finished:
                self.emit({"exhausted": work.work_id})
                self._report(force=True)
                generation, work, closed = self.state.wait(generation)
            else:
                generation, work, closed = self.state.wait(-1, 0)
        self._report(force=True)

    def run_work(self, work: Work, generation: int) -> bool:
        """Scan ``work``; True when its whole range is done, False when the work changed."""
        ntime = format(work.job.ntime, "08x")
        size = work.extranonce2_size
        for extranonce2, version, prefix in iter_header_prefixes(work):
            for start in range(0, work.nonce_limit, self.chunk):
                stop = min(start + self.chunk, work.nonce_limit)
                for nonce, digest in scan(prefix, self.state.target, start, stop):
                    self.emit(
                        {
                            "share": {
                                "work_id": work.work_id,
                                "job_id": work.job.job_id,
                                "extranonce2": extranonce2.to_bytes(size, "big").hex(),
                                "ntime": ntime,
                                "nonce": format(nonce, "08x"),
                                "version": version,
                                "hash": digest[::-1].hex(),
                            }
                        }
                    )
                self._hashes += stop - start
                self._report()
                if self.state.generation != generation:
                    return False
        return True

    def _report(self, force: bool = False) -> None:
        now = self.now()
        if self._hashes and (force or now - self._last_report >= self.report_interval):
            self.emit({"hashes": self._hashes})
            self._hashes = 0
            self._last_report = now


def read_commands(stream: BinaryIO, state: WorkerState, warn: Callable[[str], None]) -> None:
    """Apply each command line from ``stream`` to ``state``; close the state at end of input."""
    try:
        for line in stream:
            if not line.strip():
                continue
            try:
                doc = json.loads(line)
                if not isinstance(doc, dict):
                    raise WorkError(f"expected a JSON object, got {line[:200]!r}")
                if "work" in doc:
                    work_doc = doc["work"]
                    if not isinstance(work_doc, dict):
                        raise WorkError(f"work must be an object, got {work_doc!r:.200}")
                    state.set_work(Work.from_doc(work_doc))
                elif "retarget" in doc:
                    change = doc["retarget"]
                    if not isinstance(change, dict):
                        raise WorkError(f"retarget must be an object, got {change!r:.200}")
                    state.retarget(int(change["work_id"]), int(str(change["target"]), 16))
                elif doc.get("idle"):
                    state.set_work(None)
                else:
                    raise WorkError(f"unknown command {line[:200]!r}")
            except (ValueError, KeyError, TypeError) as exc:
                warn(f"worker ignored a bad command: {exc}")
    finally:
        state.close()


def main() -> int:
    """Entry point of a worker process: commands on stdin, results on stdout."""
    out = sys.stdout.buffer
    lock = threading.Lock()

    def emit(message: dict[str, object]) -> None:
        data = json.dumps(message, separators=(",", ":")).encode() + b"\n"
        with lock:
            out.write(data)
            out.flush()

    def warn(text: str) -> None:
        sys.stderr.write(text + "\n")
        sys.stderr.flush()

    # The parent ends a worker by closing its stdin; Ctrl-C in a terminal reaches the whole
    # process group, so leave it to the parent.
    signal.signal(signal.SIGINT, signal.SIG_IGN)
    state = WorkerState()
    reader = threading.Thread(
        target=read_commands, args=(sys.stdin.buffer, state, warn), daemon=True
    )
    reader.start()
    try:
        HashLoop(state, emit, time.monotonic).run()
    except BrokenPipeError:
        pass
    return 0


if __name__ == "__main__":
    code = main()
    # Skip interpreter finalization: the stdin reader thread may still sit in a read.
    os._exit(code)

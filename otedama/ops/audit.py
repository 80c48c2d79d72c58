"""The audit log (``security.audit``): append-only JSON lines of what operators and the
node did to money and access.

One line per event: ``{"time": "2026-11-27T08:00:00.123Z", "actor": …, "action": …,
"target": …, "result": …}`` plus optional ``detail``. Actions: ``token.create``,
``token.revoke``, ``ban.add``, ``ban.remove``, ``ban.auto``, ``config.reload``,
``payout.sent``, ``migrate.upgrade`` (and whatever the API adds, ``admin.*``).

Durability: a line is written with one ``write`` on a file opened ``O_APPEND`` and
fsynced before :meth:`AuditLog.record`'s Deferred fires (in a thread, never on the
reactor), so an action is reported done only after its line is on disk. Commands that
run in their own process call :func:`append_entry` directly.

Rotation: when a line would take the file past ``max_size``, the files are shifted
(``audit.log.9`` dropped, … ``audit.log`` → ``audit.log.1``) and the line starts a new
file. Every writer, in any process, holds an exclusive ``flock`` on ``audit.log.lock``
(and, in the node, a thread lock) from the size check through the rename and the fsync,
so no line is ever written to a file being renamed: rotation never loses a line.
"""

from __future__ import annotations

import fcntl
import getpass
import json
import os
import threading
import time
from collections.abc import Mapping
from pathlib import Path
from typing import Any

from twisted.internet.defer import Deferred, succeed
from twisted.internet.threads import deferToThreadPool
from twisted.logger import Logger

__all__ = ["AuditLog", "append_entry", "audit_line", "audit_path", "command_actor", "record_now"]

MAX_SIZE = 64 * 1024 * 1024
BACKUPS = 10

_lock = threading.Lock()


def audit_path(config: Any) -> Path | None:
    """The audit file of ``config`` (``security.audit.log_file``, default
    ``DATA_DIR/audit.log``), or None when the audit log is disabled."""
    audit = config.security.audit
    if not audit.enabled:
        return None
    return Path(audit.log_file) if audit.log_file else Path(config.app.data_dir) / "audit.log"


def audit_line(
    now: float,
    actor: str,
    action: str,
    target: str,
    result: str,
    detail: Mapping[str, Any] | None = None,
) -> bytes:
    """One audit line (UTF-8 JSON with a newline); ``now`` is seconds since the epoch."""
    stamp = time.strftime("%Y-%m-%dT%H:%M:%S", time.gmtime(now)) + f".{int(now % 1 * 1000):03d}Z"
    entry: dict[str, Any] = {
        "time": stamp,
        "actor": actor,
        "action": action,
        "target": target,
        "result": result,
    }
    if detail:
        entry["detail"] = dict(detail)
    return (json.dumps(entry, sort_keys=False, default=str) + "\n").encode()


def _rotate(path: Path, backups: int) -> None:
    if backups <= 0:
        path.unlink(missing_ok=True)
        return
    for index in range(backups - 1, 0, -1):
        older = path.with_name(f"{path.name}.{index}")
        if older.exists():
            os.replace(older, path.with_name(f"{path.name}.{index + 1}"))
    os.replace(path, path.with_name(f"{path.name}.1"))


def append_entry(path: Path, line: bytes, max_size: int = MAX_SIZE, backups: int = BACKUPS) -> None:
    """Append ``line`` to ``path`` durably (blocking: call it in a thread or a command).

    Holds the cross-process lock from the size check to the fsync; rotates first when the
    line would take the file past ``max_size``.
    """
    path.parent.mkdir(parents=True, exist_ok=True)
    with _lock:
        lock_fd = os.open(path.with_name(path.name + ".lock"), os.O_CREAT | os.O_RDWR, 0o600)
        try:
            fcntl.flock(lock_fd, fcntl.LOCK_EX)
            try:
                size = path.stat().st_size
            except FileNotFoundError:
                size = 0
            if size and size + len(line) > max_size:
                _rotate(path, backups)
            fd = os.open(path, os.O_WRONLY | os.O_APPEND | os.O_CREAT, 0o600)
            try:
                view = memoryview(line)
                while view:
                    written = os.write(fd, view)
                    view = view[written:]
                os.fsync(fd)
            finally:
                os.close(fd)
        finally:
            os.close(lock_fd)  # releases the flock


class AuditLog:
    """The node's audit log. ``record(...)`` fires once the line is on disk; when the
    audit log is disabled (``path`` None) it fires at once and writes nothing."""

    log = Logger()

    def __init__(
        self,
        path: Path | None,
        reactor: Any,
        threadpool: Any = None,
        max_size: int = MAX_SIZE,
        backups: int = BACKUPS,
    ) -> None:
        self.path = path
        self.reactor = reactor
        self._threadpool = threadpool
        self.max_size = max_size
        self.backups = backups

    @property
    def enabled(self) -> bool:
        return self.path is not None

    def record(
        self,
        actor: str,
        action: str,
        target: str,
        result: str,
        detail: Mapping[str, Any] | None = None,
    ) -> Deferred[None]:
        """Write one line; the Deferred fires when it is fsynced, or fails with the
        ``OSError`` (also logged) when it could not be written."""
        if self.path is None:
            return succeed(None)
        line = audit_line(self.reactor.seconds(), actor, action, target, result, detail)
        pool = self._threadpool if self._threadpool is not None else self.reactor.getThreadPool()
        written: Deferred[None] = deferToThreadPool(
            self.reactor, pool, append_entry, self.path, line, self.max_size, self.backups
        )

        def failed(failure: Any) -> Any:
            self.log.failure(
                "audit log {path}: could not write {action} on {target}",
                failure,
                path=str(self.path),
                action=action,
                target=target,
            )
            return failure

        written.addErrback(failed)
        return written


def command_actor(command: str) -> str:
    """``USER (COMMAND)``: who ran a command, for its audit lines."""
    try:
        user = getpass.getuser()
    except (KeyError, OSError):
        user = "unknown"
    return f"{user} ({command})"


def record_now(
    config: Any,
    actor: str,
    action: str,
    target: str,
    result: str,
    detail: Mapping[str, Any] | None = None,
) -> None:
    """Write one audit line now, blocking (for commands in their own process, e.g.
    ``otedama migrate up``); nothing when ``config``'s audit log is disabled."""
    path = audit_path(config)
    if path is not None:
        append_entry(path, audit_line(time.time(), actor, action, target, result, detail))

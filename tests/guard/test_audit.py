"""The audit log: one JSON line per action, on disk before the action is reported done,
and rotation that never loses a line."""

from __future__ import annotations

import json
import multiprocessing
import threading
from pathlib import Path
from typing import Any

import pytest_twisted

from otedama.config import load_config
from otedama.ops.audit import AuditLog, append_entry, audit_line, audit_path


def all_lines(path: Path) -> list[dict[str, Any]]:
    files = sorted(path.parent.glob(path.name + "*"), key=lambda p: p.name)
    return [
        json.loads(line)
        for f in files
        if not f.name.endswith(".lock")
        for line in f.read_text().splitlines()
    ]


@pytest_twisted.ensureDeferred
async def test_a_line_is_on_disk_when_record_fires(tmp_path: Path) -> None:
    from twisted.internet import reactor

    path = tmp_path / "audit.log"
    audit = AuditLog(path, reactor)
    await audit.record("alice", "ban.add", "10.0.0.9", "ok", {"until": 1.5})
    [entry] = [json.loads(line) for line in path.read_text().splitlines()]
    assert entry["actor"] == "alice" and entry["action"] == "ban.add"
    assert entry["target"] == "10.0.0.9" and entry["result"] == "ok"
    assert entry["detail"] == {"until": 1.5}
    assert entry["time"].endswith("Z") and "T" in entry["time"]


@pytest_twisted.ensureDeferred
async def test_a_disabled_audit_log_writes_nothing(tmp_path: Path) -> None:
    from twisted.internet import reactor

    config = load_config(data={"app": {"data_dir": str(tmp_path)}}, env={})
    assert audit_path(config) is None
    await AuditLog(None, reactor).record("a", "b", "c", "d")
    assert list(tmp_path.iterdir()) == []
    enabled = load_config(
        data={"app": {"data_dir": str(tmp_path)}, "security": {"audit": {"enabled": True}}}, env={}
    )
    assert audit_path(enabled) == tmp_path / "audit.log"


def test_audit_lines_are_single_json_objects_with_the_five_fields() -> None:
    line = audit_line(1795490000.25, "node", "payout.sent", "batch 7", "ok")
    assert line.endswith(b"\n") and line.count(b"\n") == 1
    assert json.loads(line) == {
        "time": "2026-11-24T03:13:20.250Z",
        "actor": "node",
        "action": "payout.sent",
        "target": "batch 7",
        "result": "ok",
    }


def _writer(path: str, name: str, count: int) -> None:
    for i in range(count):
        append_entry(
            Path(path), audit_line(0.0, name, "test", str(i), "ok"), max_size=2000, backups=1000
        )


def test_rotation_under_concurrent_threads_and_processes_loses_no_line(tmp_path: Path) -> None:
    path = tmp_path / "audit.log"
    threads = [threading.Thread(target=_writer, args=(str(path), f"t{n}", 100)) for n in range(4)]
    context = multiprocessing.get_context("spawn")
    processes = [context.Process(target=_writer, args=(str(path), f"p{n}", 100)) for n in range(2)]
    for worker in [*threads, *processes]:
        worker.start()
    for worker in [*threads, *processes]:
        worker.join()
    entries = all_lines(path)
    assert len(entries) == 600
    for name in ("t0", "t1", "t2", "t3", "p0", "p1"):
        assert sorted(int(e["target"]) for e in entries if e["actor"] == name) == list(range(100))
    rotated = list(tmp_path.glob("audit.log.*[0-9]"))
    assert len(rotated) > 10
    assert all(f.stat().st_size <= 2000 for f in [path, *rotated])


def test_migrate_up_writes_its_audit_line(tmp_path: Path) -> None:
    from otedama.cli import main

    config = tmp_path / "otedama.yaml"
    config.write_text(
        f"app:\n  data_dir: {tmp_path}\nsecurity:\n  audit:\n    enabled: true\n",
        encoding="utf-8",
    )
    assert main(["migrate", "up", "--config", str(config)]) == 0
    [entry] = all_lines(tmp_path / "audit.log")
    assert entry["action"] == "migrate.upgrade" and entry["result"] == "ok"
    assert entry["target"].startswith("sqlite:///") and entry["detail"]["from"] is None
    assert entry["actor"].endswith("(otedama migrate)")
    assert main(["migrate", "up", "--config", str(config)]) == 0  # nothing to do: no line
    assert len(all_lines(tmp_path / "audit.log")) == 1

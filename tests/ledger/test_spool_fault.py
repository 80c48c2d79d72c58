"""Fault tests: a node-like process keeps ingesting shares while PostgreSQL is unreachable.

The process (``ingest_node.py``) talks to the real PostgreSQL through a TCP forwarder the
test takes down (every connection cut, new ones reset) and brings back. Every share must arrive exactly once: after an outage,
after a clean stop, and after a kill with a non-empty spool.
"""

from __future__ import annotations

import contextlib
import json
import os
import queue
import signal
import subprocess
import sys
import threading
from collections.abc import Callable, Iterator
from pathlib import Path
from typing import Any

import pytest
from sqlalchemy import func, select
from tcpproxy import TcpProxy

from otedama.ledger import db
from otedama.ledger.tables import shares

HERE = Path(__file__).resolve().parent
ROOT = HERE.parents[1]
WAIT = 30.0


class NodeProcess:
    """The ingest process, with its status lines read on a thread."""

    def __init__(self, url: str, spool: Path, count: int, prefix: str, log: Path) -> None:
        env = dict(os.environ, PYTHONPATH=str(ROOT))
        self.stderr = open(log, "wb")
        self.process = subprocess.Popen(
            [sys.executable, str(HERE / "ingest_node.py"), url, str(spool), str(count), prefix],
            stdout=subprocess.PIPE,
            stderr=self.stderr,
            cwd=ROOT,
            env=env,
        )
        self.log = log
        self.lines: queue.Queue[dict[str, Any] | None] = queue.Queue()
        self.last: dict[str, Any] = {}
        threading.Thread(target=self._read, daemon=True).start()

    def _read(self) -> None:
        assert self.process.stdout is not None
        for raw in self.process.stdout:
            self.lines.put(json.loads(raw))
        self.lines.put(None)

    def wait_for(self, what: str, predicate: Callable[[dict[str, Any]], bool]) -> dict[str, Any]:
        """The first status line that satisfies ``predicate``."""
        while True:
            try:
                line = self.lines.get(timeout=WAIT)
            except queue.Empty:
                self.dump_stacks()
                self.kill()
                pytest.fail(
                    f"no status line with {what} in {WAIT}s; last: {self.last}\n"
                    + self.log.read_text(errors="replace")[-6000:]
                )
            if line is None:
                pytest.fail(
                    f"the node exited before {what}; last: {self.last}\n"
                    + self.log.read_text(errors="replace")[-3000:]
                )
            self.last = line
            if predicate(line):
                return line

    def wait_exit(self) -> int:
        code = self.process.wait(timeout=WAIT)
        self.stderr.close()
        while (line := self.lines.get(timeout=WAIT)) is not None:
            self.last = line
        return code

    def dump_stacks(self) -> None:
        """Have a hung process write its threads' stacks into its log (faulthandler)."""
        if self.process.poll() is None:
            self.process.send_signal(signal.SIGUSR1)
            with contextlib.suppress(subprocess.TimeoutExpired):
                self.process.wait(timeout=1)

    def kill(self) -> None:
        self.process.kill()
        self.process.wait(timeout=WAIT)
        self.stderr.close()


@pytest.fixture
def spawn(tmp_path: Path) -> Iterator[Callable[..., NodeProcess]]:
    """Start ingest processes; any still running after the test is killed."""
    started: list[NodeProcess] = []

    def start(url: str, count: int, prefix: str, log_name: str) -> NodeProcess:
        node = NodeProcess(url, tmp_path / "spool", count, prefix, tmp_path / log_name)
        started.append(node)
        return node

    yield start
    for node in started:
        if node.process.poll() is None:
            node.process.kill()
            node.process.wait(timeout=WAIT)
        node.stderr.close()


@pytest.fixture
def proxy() -> Iterator[TcpProxy]:
    forwarder = TcpProxy(("127.0.0.1", 5432))
    yield forwarder
    forwarder.close()


@pytest.fixture
def database(make_migrated_pg_database: Callable[[], str]) -> str:
    """A fresh, migrated PostgreSQL database's name."""
    return make_migrated_pg_database().rsplit("/", 1)[1]


def through(proxy: TcpProxy, database: str) -> str:
    return f"postgresql://postgres@{proxy.url_host}/{database}"


def stored_shares(database: str) -> tuple[int, int]:
    """(rows, distinct job ids) in the database, read directly (not through the proxy)."""
    engine = db.make_engine(f"postgresql://postgres@127.0.0.1:5432/{database}", pool_size=1)
    with engine.connect() as connection:
        rows, distinct = connection.execute(
            select(func.count(), func.count(func.distinct(shares.c.job_id)))
        ).one()
    engine.dispose()
    return int(rows), int(distinct)


def test_shares_ingested_during_an_outage_all_arrive_once_when_the_database_returns(
    proxy: TcpProxy, database: str, tmp_path: Path, spawn: Callable[..., NodeProcess]
) -> None:
    count = 20_000
    node = spawn(through(proxy, database), count, "a", "a.log")

    node.wait_for("shares stored", lambda s: s["stored"] > 0)
    proxy.down()
    degraded = node.wait_for("shares spooled", lambda s: s["spooled"] > 0)
    assert degraded["status"] == "degraded"
    assert proxy.url_host in degraded["reason"]
    node.wait_for("every share handed over", lambda s: s["added"] == count)
    proxy.up()

    assert node.wait_exit() == 0
    assert node.last["event"] == "done"
    assert node.last["stored"] + node.last["spooled"] == count
    # A batch whose commit reply was lost with the connection is spooled too, and
    # skipped on replay: it is already stored.
    assert node.last["replayed"] + node.last["already_stored"] == node.last["spooled"]
    assert node.last["dropped"] == 0
    assert stored_shares(database) == (count, count)
    assert not list((tmp_path / "spool").glob("spool-*.jsonl"))


def test_a_spool_left_by_a_killed_node_is_replayed_exactly_once_after_restart(
    proxy: TcpProxy, database: str, tmp_path: Path, spawn: Callable[..., NodeProcess]
) -> None:
    count = 3_000
    spool = tmp_path / "spool"
    proxy.down()
    first = spawn(through(proxy, database), count, "k", "k1.log")
    first.wait_for(
        "all shares in the spool",
        lambda s: s["added"] == count and s["buffered"] == 0 and s["spooled"] == count,
    )
    first.kill()  # SIGKILL: no clean stop, the spool stays on disk
    assert list(spool.glob("spool-*.jsonl"))
    proxy.up()

    second = spawn(through(proxy, database), 0, "k", "k2.log")
    assert second.wait_exit() == 0
    assert second.last["replayed"] == count
    assert second.last["already_stored"] == 0
    assert stored_shares(database) == (count, count)


def test_a_node_stopped_during_an_outage_spools_its_buffer_and_replays_after_restart(
    proxy: TcpProxy, database: str, spawn: Callable[..., NodeProcess]
) -> None:
    proxy.down()
    first = spawn(through(proxy, database), 50_000, "t", "t1.log")
    first.wait_for("shares spooled while feeding", lambda s: s["spooled"] > 0)
    first.process.send_signal(signal.SIGTERM)
    assert first.wait_exit() == 0
    stopped = first.last
    assert stopped["event"] == "stopped" and stopped["buffered"] == 0
    accepted = stopped["added"]
    assert stopped["spooled"] == accepted and stopped["dropped"] == 0
    proxy.up()

    second = spawn(through(proxy, database), 0, "t", "t2.log")
    assert second.wait_exit() == 0
    assert stored_shares(database) == (accepted, accepted)

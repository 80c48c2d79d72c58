"""The spool's disk fills up while the database is away: a clear error, no silent loss.

How the full disk is simulated: a fault-injecting file object. The spool's segment files
are real files in ``tmp_path``, wrapped so that once the simulated free space is used up
a write stores what still fits (a torn line, as a real ``write(2)`` would) and raises
``OSError(ENOSPC)`` — the errno a full file system gives. (No small tmpfs can be mounted
here, and ``RLIMIT_FSIZE`` would give ``EFBIG`` on every file of the process, the log
included.) The database is the real PostgreSQL behind a TCP forwarder the drill takes
down and brings back.

Observed outcome (asserted): while the disk is full, each batch that cannot be spooled
is counted as dropped and logged at ``critical`` as ``SHARES LOST`` with the spool
directory and "No space left on device"; ``/health``'s database check is ``degraded``
and shows the dropped count. Once space is back, batches spool again; when the database
returns, the spool is replayed: every share that was stored or spooled is in the
database exactly once, the torn line is skipped with an error naming its file and line,
and the count of lost shares stays visible in ``/health``.
"""

from __future__ import annotations

import errno
import os
from collections.abc import Callable, Iterator
from pathlib import Path
from typing import Any, BinaryIO

import pytest
import pytest_twisted
from sqlalchemy import func, select
from tcpproxy import TcpProxy
from twisted.internet import task
from twisted.logger import LogLevel, globalLogPublisher

from otedama.ledger.db import make_engine
from otedama.ledger.shares import ShareRecord
from otedama.ledger.store import LedgerStore
from otedama.ledger.tables import shares
from otedama.ops.health import DEGRADED, OK
from otedama.tap import ledger_check


class Disk:
    """Simulated free space shared by the spool's files; None: unlimited."""

    def __init__(self) -> None:
        self.free: int | None = None


class FaultyFile:
    """A real file whose writes fail with ENOSPC once ``disk.free`` is used up."""

    def __init__(self, real: BinaryIO, disk: Disk) -> None:
        self.real = real
        self.disk = disk

    def write(self, data: bytes) -> int:
        free = self.disk.free
        if free is not None and len(data) > free:
            self.real.write(data[:free])  # what fitted: a torn line
            self.real.flush()
            self.disk.free = 0
            raise OSError(errno.ENOSPC, os.strerror(errno.ENOSPC))
        if free is not None:
            self.disk.free = free - len(data)
        return self.real.write(data)

    def __getattr__(self, name: str) -> Any:
        return getattr(self.real, name)


@pytest.fixture
def proxy() -> Iterator[TcpProxy]:
    forwarder = TcpProxy(("127.0.0.1", 5432))
    yield forwarder
    forwarder.close()


def count_shares(url: str) -> int:
    engine = make_engine(url, pool_size=1)
    try:
        with engine.connect() as connection:
            return int(connection.execute(select(func.count()).select_from(shares)).scalar_one())
    finally:
        engine.dispose()


@pytest_twisted.ensureDeferred
async def test_a_full_spool_disk_loses_shares_loudly_and_keeps_every_other_share_exactly_once(
    migrated_pg_database: Callable[[], str],
    proxy: TcpProxy,
    tmp_path: Path,
    monkeypatch: pytest.MonkeyPatch,
) -> None:
    from twisted.internet import reactor

    direct = migrated_pg_database()
    through = direct.replace("127.0.0.1:5432", proxy.url_host)
    events: list[dict[str, Any]] = []
    globalLogPublisher.addObserver(events.append)
    store = LedgerStore(
        reactor,  # type: ignore[arg-type]
        through,
        pool_size=2,
        spool_dir=tmp_path / "spool",
        batch_size=10,
        clock=task.Clock(),
    )
    disk = Disk()
    opening = store.spool._open_segment

    def open_on_the_faulty_disk() -> Any:
        faulty = FaultyFile(opening(), disk)
        store.spool._current = faulty  # type: ignore[assignment]
        return faulty

    monkeypatch.setattr(store.spool, "_open_segment", open_on_the_faulty_disk)
    store.start()
    added = 0

    async def ingest(count: int) -> None:
        nonlocal added
        for _ in range(count):
            added += 1
            store.add_share(ShareRecord(1000.0 + added, "drill", "rig", 1.0, str(added), 1))
        await store.flush_shares()

    try:
        await store.batcher.replay_now()
        await ingest(10)
        assert store.health().stored == 10

        # The database goes away: shares are spooled.
        proxy.down()
        await ingest(30)
        assert (store.health().spooled, store.health().dropped) == (30, 0)

        # The disk fills up half-way through a batch: that batch and the next are lost,
        # loudly, and health says so.
        disk.free = 100
        await ingest(20)
        health = store.health()
        assert (health.spooled, health.dropped) == (30, 20)
        critical = [e for e in events if e.get("log_level") is LogLevel.critical]
        assert len(critical) == 2
        for event in critical:
            assert event["log_format"].startswith("SHARES LOST")
            assert "No space left on device" in event["reason"]
            assert str(tmp_path / "spool") in event["reason"]
        check = ledger_check(store)
        assert check.status == DEGRADED and check.detail["dropped"] == 20

        # Space is freed: spooling works again.
        disk.free = None
        await ingest(10)
        assert (store.health().spooled, store.health().dropped) == (40, 20)

        # The database returns: everything stored or spooled is there exactly once.
        proxy.up()
        await store.batcher.replay_now()
        assert count_shares(direct) == added - 20 == 50
        torn = [e for e in events if e.get("log_format", "").startswith("share spool {segment}")]
        assert len(torn) == 1 and "torn last line" in torn[0]["reason"]
        check = ledger_check(store)
        assert check.status == OK and check.detail["dropped"] == 20
    finally:
        globalLogPublisher.removeObserver(events.append)
        await store.stop()

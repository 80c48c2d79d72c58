"""``otedama bench ledger`` at a small size on SQLite: every share reaches the database."""

from __future__ import annotations

from pathlib import Path

import pytest
import pytest_twisted

from otedama.bench.ledger import format_result, measure
from otedama.ledger import db


@pytest_twisted.ensureDeferred
async def test_the_ledger_bench_ingests_every_share_and_weighs_the_window(
    tmp_path: Path,
) -> None:
    from twisted.internet import reactor

    url = f"sqlite:///{tmp_path / 'bench.sqlite'}"
    engine = db.make_engine(url, pool_size=1)
    with engine.begin() as connection:
        db.upgrade(connection)
    engine.dispose()
    spool = tmp_path / "spool"
    spool.mkdir()
    result = await measure(reactor, url, 3000, 500, 1, 40, spool)
    assert result.rows_in_database == 3000
    assert result.stored == 3000 and result.spooled == 0
    assert result.window_addresses == 40
    assert result.block_window_shares == 1500
    assert "from the running totals" in format_result(result)
    assert "3,000 in batches of 500" in format_result(result)


@pytest_twisted.ensureDeferred
async def test_a_failed_ledger_bench_stops_its_store(tmp_path: Path) -> None:
    """On an unmigrated database the bench fails at once and stops the store's worker
    threads (left running, they kept the bench process alive after the error)."""
    import threading

    from twisted.internet import reactor

    from otedama.ledger.store import SchemaOutdated

    spool = tmp_path / "spool"
    spool.mkdir()
    before = {t.ident for t in threading.enumerate()}
    with pytest.raises(SchemaOutdated):
        await measure(reactor, f"sqlite:///{tmp_path / 'empty.sqlite'}", 10, 5, 1, 2, spool)
    left = [t.name for t in threading.enumerate() if t.ident not in before and t.is_alive()]
    assert not [name for name in left if "otedama-ledger" in name]

"""The Stratum bench end to end at a small size: its miners' shares are all accepted by the
real server in its child process, every miner hears every new block, and memory is read."""

from __future__ import annotations

import math

import pytest
import pytest_twisted
from sqlalchemy import func, select

from otedama.bench.stratum import (
    BenchConfig,
    BenchResult,
    LoadGenerator,
    format_side_by_side,
    ledger_database,
    percentile,
)
from otedama.ledger import db
from otedama.ledger.tables import shares


@pytest.mark.timeout(60)
@pytest_twisted.ensureDeferred
async def test_the_bench_load_is_accepted_and_every_miner_is_notified_of_each_block() -> None:
    from twisted.internet import reactor

    lines: list[str] = []
    config = BenchConfig(connections=10, duration=0.5, warmup=0.2, fanout_miners=25, blocks=2)
    gen = LoadGenerator(reactor, config, out=lines.append)
    try:
        result = await gen.run()
    finally:
        await gen.close()
    assert result.accepted > 0 and result.rejected == 0
    assert result.connections == 10 and result.fanout_miners == 25
    assert len(result.fanout_last_ms) == 2
    assert all(math.isfinite(ms) and ms >= 0 for ms in result.fanout_last_ms)
    assert result.rss_base_kib > 0 and result.rss_connected_kib >= result.rss_base_kib
    assert any(line.startswith("memory:") for line in lines)


@pytest.mark.timeout(60)
@pytest_twisted.ensureDeferred
async def test_the_reconnect_storm_counts_every_miner_that_got_its_first_job() -> None:
    """--storm N (issue 8 item 15): N more miners connect at once and every one of them is
    authorized and has its first job when the figure is taken."""
    from twisted.internet import reactor

    lines: list[str] = []
    config = BenchConfig(connections=5, duration=0, warmup=0, blocks=0, storm=50)
    gen = LoadGenerator(reactor, config, out=lines.append)
    try:
        result = await gen.run()
    finally:
        await gen.close()
    assert result.storm_miners == 50
    assert len(gen.ready) == 55 and all(m.job is not None and m.authorized for m in gen.ready)
    assert result.storm_seconds > 0
    assert any(line.startswith("reconnect storm: 50 miners connected") for line in lines)


@pytest.mark.timeout(60)
@pytest_twisted.ensureDeferred
async def test_a_storm_from_two_probe_processes_gets_every_miner_its_first_job() -> None:
    """--storm-clients: the storm's miners come from probe processes of their own, a few in
    flight each; every one of them is authorized and has a job when the figure is taken."""
    from twisted.internet import reactor

    lines: list[str] = []
    config = BenchConfig(connections=2, duration=0, storm=60, storm_clients=2, storm_inflight=5)
    gen = LoadGenerator(reactor, config, out=lines.append)
    try:
        result = await gen.run()
    finally:
        await gen.close()
    assert result.storm_miners == 60
    assert result.storm_seconds > 0 and result.storm_client_cpu_seconds > 0
    assert any("60 miners connected, authorized and had their first job" in line for line in lines)


def test_percentile_is_nearest_rank() -> None:
    values = [float(v) for v in range(1, 101)]
    assert percentile(values, 0.5) == 50.0
    assert percentile(values, 0.99) == 99.0
    assert percentile(values, 1.0) == 100.0
    assert percentile([3.0], 0.99) == 3.0
    assert percentile([], 0.5) == 0.0


@pytest.mark.timeout(90)
@pytest.mark.parametrize("path", ["sqlite", "postgresql"])
@pytest_twisted.ensureDeferred
async def test_the_full_path_bench_stores_every_accepted_share_in_the_ledger(path: str) -> None:
    """--full-path: the server's pool core counts every accepted share, and after the flush
    every one of them is a row in the database (none spooled or dropped)."""
    from twisted.internet import reactor

    lines: list[str] = []
    with ledger_database(path, "postgresql://postgres@127.0.0.1:5432") as (url, spool):
        assert url is not None
        config = BenchConfig(
            connections=5,
            duration=0.5,
            warmup=0.2,
            full_path=path,
            ledger_url=url,
            spool_dir=spool,
        )
        gen = LoadGenerator(reactor, config, out=lines.append)
        try:
            result = await gen.run()
        finally:
            await gen.close()
        engine = db.make_engine(url, pool_size=1)
        with engine.connect() as connection:
            rows = connection.execute(select(func.count()).select_from(shares)).scalar_one()
        engine.dispose()
    assert result.path == f"full path, {path}"
    assert result.accepted > 0 and result.rejected == 0
    assert result.pool_shares >= result.accepted
    assert result.ledger_stored == result.pool_shares == rows
    assert result.ledger_spooled == result.ledger_dropped == 0
    assert any(line.startswith(f"ledger ({path}):") for line in lines)


def test_side_by_side_has_a_line_per_path() -> None:
    results = [
        BenchResult(path="stratum only", duration=1.0),
        BenchResult(path="full path, sqlite"),
    ]
    lines = format_side_by_side(results).splitlines()
    assert len(lines) == 3
    assert lines[1].startswith("stratum only") and lines[2].startswith("full path, sqlite")

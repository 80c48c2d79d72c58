"""The Stratum bench end to end at a small size: its miners' shares are all accepted by the
real server in its child process, every miner hears every new block, and memory is read."""

from __future__ import annotations

import argparse
import math
import os
import random

import pytest
import pytest_twisted
from sqlalchemy import func, select

from otedama.bench.lean_load import latency_histogram
from otedama.bench.stratum import (
    BenchConfig,
    BenchResult,
    LoadGenerator,
    choose_cpus,
    format_side_by_side,
    histogram_percentile,
    ledger_database,
    percentile,
    register,
)
from otedama.ledger import db
from otedama.ledger.tables import shares


async def run_bench(config: BenchConfig) -> tuple[BenchResult, list[str], LoadGenerator]:
    """Run the bench's phases with ``config``; its figures, its lines and the generator."""
    from twisted.internet import reactor

    lines: list[str] = []
    gen = LoadGenerator(reactor, config, out=lines.append)
    try:
        result = await gen.run()
    finally:
        await gen.close()
    return result, lines, gen


@pytest.mark.timeout(60)
@pytest.mark.parametrize("clients", [2, 0])
@pytest_twisted.ensureDeferred
async def test_the_bench_load_is_accepted_and_every_miner_is_notified_of_each_block(
    clients: int,
) -> None:
    """From lean client processes (2) or this process's own miners (0)."""
    config = BenchConfig(
        connections=10, duration=0.5, warmup=0.2, fanout_miners=25, blocks=2, clients=clients
    )
    result, lines, _gen = await run_bench(config)
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
    config = BenchConfig(connections=5, duration=0, warmup=0, blocks=0, storm=50)
    result, lines, gen = await run_bench(config)
    assert result.storm_miners == 50
    assert len(gen.ready) == 55 and all(m.job is not None and m.authorized for m in gen.ready)
    assert result.storm_seconds > 0
    assert any(line.startswith("reconnect storm: 50 miners connected") for line in lines)


@pytest.mark.timeout(60)
@pytest_twisted.ensureDeferred
async def test_a_storm_from_two_probe_processes_gets_every_miner_its_first_job() -> None:
    """--storm-clients: the storm's miners come from probe processes of their own, a few in
    flight each; every one of them is authorized and has a job when the figure is taken."""
    config = BenchConfig(connections=2, duration=0, storm=60, storm_clients=2, storm_inflight=5)
    result, lines, _gen = await run_bench(config)
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
        result, lines, _gen = await run_bench(config)
        engine = db.make_engine(url, pool_size=1)
        with engine.connect() as connection:
            rows = connection.execute(select(func.count()).select_from(shares)).scalar_one()
        engine.dispose()
    assert result.path == f"full path, {path}"
    assert result.accepted > 0 and result.rejected == 0
    assert result.pool_shares >= result.accepted
    assert result.ledger_stored == result.pool_shares == rows
    assert result.load_accepted == result.server_accepted == result.pool_shares
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


@pytest.mark.timeout(60)
@pytest_twisted.ensureDeferred
async def test_lean_clients_in_closed_loop_count_every_share_the_server_accepted() -> None:
    """Two lean client processes, pinned: every share they sent (warm-up and the replies in
    flight at the end included) was answered and accepted, and the server counted the same
    number; the measured window is part of it."""
    cpu = str(max(os.sched_getaffinity(0)))
    config = BenchConfig(
        connections=4,
        duration=0.2,
        warmup=0.1,
        window=2,
        clients=2,
        server_cpus=cpu,
        client_cpus=cpu,
    )
    result, lines, _gen = await run_bench(config)
    assert result.clients == 2 and result.connections == 4
    assert result.server_cpus == result.client_cpus == [int(cpu)]
    assert result.accepted > 0 and result.rejected == 0
    assert result.load_unanswered == 0 and result.load_lost == 0
    assert result.load_sent == result.load_accepted == result.server_accepted
    assert result.accepted <= result.load_accepted
    assert 0 < result.latency_p50_ms <= result.latency_p99_ms <= result.latency_max_ms
    assert any("2 lean client processes on CPU" in line for line in lines)


@pytest.mark.timeout(60)
@pytest_twisted.ensureDeferred
async def test_lean_clients_in_open_loop_send_shares_on_their_schedule() -> None:
    """--rate: the shares go out on the clients' schedule (never more than the rate
    allows over the run) and all are accepted."""
    config = BenchConfig(connections=10, duration=1.0, warmup=0.2, rate=300.0, clients=2)
    result, lines, _gen = await run_bench(config)
    assert result.accepted > 0 and result.rejected == 0 and result.sent_per_second > 0
    assert result.load_unanswered == 0
    assert 0 < result.load_sent == result.load_accepted == result.server_accepted
    # At most one share per process ahead of 300/s, over the run and a generous margin.
    assert result.load_sent <= 300 * (0.2 + 1.0 + 10.0) + 2
    assert any(line.startswith("open loop: asked 300 shares/s") for line in lines)


def test_a_histogram_percentile_is_the_nearest_rank_of_its_values() -> None:
    rng = random.Random(7)
    latencies = [rng.expovariate(1000.0) for _ in range(2000)] + [0.25]
    histogram = {us: count for us, count in latency_histogram(latencies)}
    microseconds = [float(round(latency * 1e6)) for latency in latencies]
    for fraction in (0.0, 0.5, 0.9, 0.99, 0.999, 1.0):
        assert histogram_percentile(histogram, fraction) == percentile(microseconds, fraction)
    assert histogram_percentile(histogram, 1.0) == 250_000
    assert histogram_percentile({}, 0.99) == 0


def test_by_default_the_server_gets_the_first_cpu_and_the_load_generator_the_rest() -> None:
    assert choose_cpus(None, None, {0, 1}) == ({0}, {1})
    assert choose_cpus(None, None, {2, 3, 5}) == ({2}, {3, 5})
    assert choose_cpus(None, None, {0}) == (set(), set())
    assert choose_cpus("1", None, {0, 1}) == ({1}, {0})
    assert choose_cpus(None, "0-1", {0, 1, 2}) == ({2}, {0, 1})
    assert choose_cpus("0", "0", {0, 1}) == ({0}, {0})
    assert choose_cpus("none", None, {0, 1}) == (set(), set())
    assert choose_cpus("0", "none", {0, 1}) == ({0}, set())


@pytest.mark.parametrize(
    ("option", "value", "says"),
    [
        ("--server-cpus", "x", "--server-cpus 'x' is not a CPU list"),
        ("--client-cpus", "1-0", "--client-cpus '1-0' is not a CPU list"),
        ("--client-cpus", "", "--client-cpus '' is not a CPU list"),
        ("--server-cpus", "4096", "--server-cpus '4096' names CPU 4096, which this process"),
    ],
)
def test_the_command_refuses_a_bad_cpu_list_before_starting_anything(
    option: str, value: str, says: str, capsys: pytest.CaptureFixture[str]
) -> None:
    parser = argparse.ArgumentParser()
    register(parser.add_subparsers())
    args = parser.parse_args(["stratum", f"{option}={value}"])
    assert args.func(args) == 2
    assert says in capsys.readouterr().out

"""The Stratum bench end to end at a small size: its miners' shares are all accepted by the
real server in its child process, every miner hears every new block, and memory is read."""

from __future__ import annotations

import math

import pytest
import pytest_twisted

from otedama.bench.stratum import BenchConfig, LoadGenerator, percentile


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


def test_percentile_is_nearest_rank() -> None:
    values = [float(v) for v in range(1, 101)]
    assert percentile(values, 0.5) == 50.0
    assert percentile(values, 0.99) == 99.0
    assert percentile(values, 1.0) == 100.0
    assert percentile([3.0], 0.99) == 3.0
    assert percentile([], 0.5) == 0.0

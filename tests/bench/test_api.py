"""The API bench end to end at a tiny size: its server child answers every read endpoint
with miners on its Stratum port, and every subscriber hears every published block."""

from __future__ import annotations

import math

import pytest
import pytest_twisted

from otedama.bench.api import ROUTES, ApiBenchConfig, ApiLoad


@pytest.mark.timeout(120)
@pytest_twisted.ensureDeferred
async def test_the_api_bench_answers_every_route_and_fans_each_block_out_to_all() -> None:
    from twisted.internet import reactor

    lines: list[str] = []
    config = ApiBenchConfig(
        miners=5, rate=40.0, duration=0.5, warmup=0.2, subscribers=4, rounds=2, connect_batch=5
    )
    load = ApiLoad(reactor, config, out=lines.append)
    try:
        result = await load.run()
    finally:
        await load.close()
    assert len(load.miners.ready) == 5
    assert result.requests > 0 and result.errors == 0
    assert set(result.statuses) == {"200"}
    assert set(result.routes) == set(ROUTES)
    assert result.subscribers == 4 and len(result.fanout_last_ms) == 2
    assert all(math.isfinite(ms) and ms >= 0 for ms in result.fanout_last_ms)
    assert any(line.startswith("websocket:") for line in lines)

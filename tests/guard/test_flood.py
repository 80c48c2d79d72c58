"""The flood on loopback: honest miners keep mining while 127.0.0.2 floods; it is banned."""

from __future__ import annotations

import pytest
import pytest_twisted

from otedama.bench.flood import run_flood


@pytest_twisted.ensureDeferred
async def test_honest_miners_stay_connected_and_the_flooder_is_banned_and_refused() -> None:
    from twisted.internet import reactor

    report = await run_flood(
        reactor, honest=300, per_ip=50, flood_connections=400, rounds=2, spread=0.5
    )
    assert report.honest_connected == 300
    assert report.accepted == report.shares == 300 * 3
    assert report.flood_connections > 0 and report.flood_invalid_shares > 0
    assert report.flooder_banned
    assert report.flooder_refused_at_accept
    assert report.refusals.get("stratum: banned", 0) >= 1
    # Only the honest miners are left (the flooder's connections were dropped at its ban).
    assert report.sessions_after == 300


def test_cpu_lists_for_pinning_the_bench_processes() -> None:
    from otedama.bench.lean_fleet import parse_cpus

    assert parse_cpus("0") == {0}
    assert parse_cpus("1,3") == {1, 3}
    assert parse_cpus("0-2, 5") == {0, 1, 2, 5}
    for bad in ("", "a", "2-1", "-1", "1-"):
        with pytest.raises(ValueError):
            parse_cpus(bad)

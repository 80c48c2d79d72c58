"""``otedama bench federation`` at tiny sizes: every figure is produced and sane (no timing
assertions), and the bench's receivers really verify what they are sent."""

from __future__ import annotations

import math
import random
import time

import pytest
import pytest_twisted

from otedama import cli
from otedama.bench.federation import (
    FederationBench,
    MemoryResult,
    PropagationResult,
    Verifier,
    build_shares,
    format_result,
    make_scene,
    measure_memory,
    measure_propagation,
    measure_throughput,
    members_of,
)


@pytest.mark.timeout(120)
@pytest_twisted.ensureDeferred
async def test_every_node_verifies_every_share_and_latencies_are_reported() -> None:
    from twisted.internet import reactor

    result = await measure_propagation(reactor, nodes=3, shares=4, max_peers=2, interval=0.01)
    assert result.expected == 8 and result.delivered == 8 and result.rejected == 0
    assert 2 <= result.links <= 3 and 1 <= result.diameter <= 2
    assert 1 <= result.degree_min <= result.degree_max <= 2
    assert 0 < result.p50_ms <= result.p99_ms <= result.max_ms
    assert result.p50_ms <= result.all_nodes_p50_ms <= result.all_nodes_p99_ms <= result.max_ms


def test_the_throughput_pass_verifies_every_frame_and_times_each_stage() -> None:
    result = measure_throughput(40, distinct=10)
    assert result.messages == 40 and result.distinct_shares == 10 and result.accepted == 40
    assert result.frame_bytes > 1000  # header, coinbase with outputs, an 11-step branch
    stages = [result.signature_us, result.from_dict_us, result.verify_share_us]
    assert all(math.isfinite(us) and us > 0 for us in stages)
    assert result.pipeline_us > 0 and result.messages_per_cpu_second > 0


@pytest.mark.timeout(120)
@pytest_twisted.ensureDeferred
async def test_memory_is_read_from_the_child_idle_and_with_its_peers_linked() -> None:
    from twisted.internet import reactor

    result = await measure_memory(reactor, 2)
    assert result.peers == 2 and result.linked == 2
    assert result.idle_kib > 10_000 and result.linked_kib > 10_000
    assert math.isfinite(result.per_peer_kib)


def test_the_bench_verifier_refuses_a_share_whose_work_was_changed() -> None:
    scene = make_scene(members_of(3), int(time.time()))
    (_, share), (_, other) = build_shares(scene, 2, random.Random(5))
    verifier = Verifier(scene, None)
    now = scene.now + 1
    assert verifier.check(share.to_dict(), now) == share
    forged = {**share.to_dict(), "coinbase": other.coinbase}  # someone else's coinbase
    assert verifier.check(forged, now) is None
    assert verifier.check({"not": "a share"}, now) is None
    assert verifier.accepted == 1 and sum(verifier.rejected.values()) == 2
    assert "malformed" in verifier.rejected


def test_the_figures_are_printed_with_the_load_average_and_commit() -> None:
    throughput = measure_throughput(5, distinct=5)
    propagation = PropagationResult(
        10, 4, 200, 0.05, 15, 1, 4, 5, 3.0, 1800, 1800, 0, 3.0, 20.0, 25.0, 11.0, 25.0, 300
    )
    bench = FederationBench(
        propagation, throughput, MemoryResult(50, 50, 50_000, 52_000), [1.5, 1, 1], [2, 1, 1], "abc"
    )
    text = format_result(bench)
    assert "commit abc; load average 1.50 1.00 1.00 before" in text
    assert "p99 20.0 ms" in text and "40.0 KiB per peer" in text
    assert bench.to_json()["memory"]["per_peer_kib"] == 40.0


@pytest.mark.parametrize("option", ["--nodes", "--shares", "--max-peers", "--messages", "--peers"])
def test_sizes_that_cannot_work_are_refused(option: str) -> None:
    value = "1" if option == "--nodes" else "0"
    assert cli.main(["bench", "federation", option, value]) == 2

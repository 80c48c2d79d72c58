"""Prometheus metrics: the exposition parses, and its counters move with real shares."""

from __future__ import annotations

import json
import re
import time
from pathlib import Path
from typing import Any

import pytest
import pytest_twisted
from prometheus_client.parser import text_string_to_metric_families
from twisted.internet.task import Clock

from otedama.ops.metrics import HashrateMeter, LatencyHistogram, NodeMetrics, TimedShareSink
from tests.ops.conftest import RunningNode

ROOT = Path(__file__).resolve().parents[2]
DASHBOARD = ROOT / "docs" / "grafana-dashboard.json"


def samples(text: str) -> dict[tuple[str, tuple[tuple[str, str], ...]], float]:
    """Every sample of an exposition, keyed by name and sorted labels."""
    found = {}
    for family in text_string_to_metric_families(text):
        for sample in family.samples:
            found[(sample.name, tuple(sorted(sample.labels.items())))] = sample.value
    return found


def total(values: dict[tuple[str, tuple[tuple[str, str], ...]], float], name: str) -> float:
    return sum(value for (sample, _), value in values.items() if sample == name)


def test_the_histogram_counts_each_value_in_its_bucket_and_reports_them_cumulated() -> None:
    histogram = LatencyHistogram([0.1, 1.0])
    for value in (0.05, 0.1, 0.5, 2.0):
        histogram.observe(value)
    buckets, seconds = histogram.buckets()
    assert buckets == [("0.1", 2.0), ("1.0", 3.0), ("+Inf", 4.0)]
    assert seconds == pytest.approx(2.65)


def test_histogram_bounds_must_increase() -> None:
    with pytest.raises(ValueError, match="increasing"):
        LatencyHistogram([1.0, 0.5])


def test_the_hashrate_meter_averages_difficulty_over_its_window() -> None:
    meter = HashrateMeter(window=60)
    assert meter.rate() == 0.0
    meter.sample(0, 0.0)
    meter.sample(30, 15.0)
    assert meter.rate() == pytest.approx(15 * 2**32 / 30)
    for now in range(45, 200, 15):
        meter.sample(now, 15.0 + now)
    # Only the last 60 s (plus the sample at its edge) count.
    assert meter.rate() == pytest.approx(2**32)


class _Share:
    def __init__(self, time: float, difficulty: float) -> None:
        self.time = time
        self.difficulty = difficulty


class _Sink:
    def __init__(self) -> None:
        self.shares: list[Any] = []

    def share_accepted(self, share: Any) -> None:
        self.shares.append(share)

    def block_found(self, block: bytes, share: Any) -> str:
        return "submitted"


def test_the_timed_sink_measures_from_the_submits_arrival_and_passes_shares_on() -> None:
    clock = Clock()
    clock.advance(100.0)
    inner = _Sink()
    sink = TimedShareSink(inner, clock)
    sink.share_accepted(_Share(99.9996, 0.5))
    sink.share_accepted(_Share(100.0, 0.25))
    assert len(inner.shares) == 2
    assert sink.difficulty_total == 0.75
    buckets, _ = sink.latency.buckets()
    assert dict(buckets)["0.0005"] == 2.0
    assert dict(buckets)["0.0001"] == 1.0
    assert sink.block_found(b"block", _Share(100.0, 1)) == "submitted"
    assert sink.blocks_found == 1


def test_api_requests_are_counted_by_route_and_status_with_bounded_routes() -> None:
    metrics = NodeMetrics(Clock(), "devnet")
    metrics.observe_api("/api/v1/pool", 200, 0.002)
    metrics.observe_api("/api/v1/pool", 200, 0.004)
    metrics.observe_api("/api/v1/miners/{address}", 400, 0.001)
    for n in range(300):
        metrics.observe_api(f"/made-up/{n}", 404, 0.001)
    values = samples(metrics.exposition().decode())
    assert (
        values[("otedama_api_requests_total", (("route", "/api/v1/pool"), ("status", "200")))] == 2
    )
    assert values[("otedama_api_request_seconds_count", (("route", "/api/v1/pool"),))] == 2
    routes = {labels[0][1] for (name, labels) in values if name == "otedama_api_requests_total"}
    assert "other" in routes
    assert len(routes) <= 201


def test_a_failing_reader_costs_its_own_series_not_the_scrape() -> None:
    metrics = NodeMetrics(Clock(), "devnet")

    class Broken:
        @property
        def stats(self) -> Any:
            raise RuntimeError("boom")

        def on_block(self, callback: Any) -> None:
            pass

    metrics.watch_core(Broken())
    metrics.observe_api("/api/v1/status", 200, 0.001)
    text = metrics.exposition().decode()
    assert "otedama_api_requests_total" in text
    assert "otedama_pool_blocks_submitted" not in text
    assert metrics.collect_failures == 1


def test_two_nodes_in_one_process_do_not_share_series() -> None:
    one, two = NodeMetrics(Clock(), "devnet"), NodeMetrics(Clock(), "devnet")
    one.observe_api("/api/v1/pool", 200, 0.001)
    assert "/api/v1/pool" not in two.exposition().decode()


def scrape(node: RunningNode) -> dict[tuple[str, tuple[tuple[str, str], ...]], float]:
    return samples(node.get(node.metrics_url).decode())


def wait_until(node: RunningNode, check: Any, timeout: float = 90.0) -> dict[Any, float]:
    deadline = time.monotonic() + timeout
    values = scrape(node)
    while not check(values):
        if time.monotonic() > deadline:
            raise AssertionError(json.dumps({f"{k[0]}{dict(k[1])}": v for k, v in values.items()}))
        time.sleep(0.5)
        values = scrape(node)
    return values


@pytest.mark.timeout(180)
def test_the_nodes_counters_move_with_its_miners_real_shares(running_node: RunningNode) -> None:
    """twistd on the devnet, its CPU miner over TCP: scraped twice, the counters grow."""
    first = wait_until(
        running_node, lambda v: total(v, "otedama_stratum_shares_accepted_total") >= 1
    )
    accepted = total(first, "otedama_stratum_shares_accepted_total")
    later = wait_until(
        running_node,
        lambda v: (
            total(v, "otedama_stratum_shares_accepted_total") > accepted + 2
            and total(v, "otedama_ledger_shares_total") > 0
            and total(v, "otedama_stratum_hashrate") > 0
        ),
    )
    assert total(later, "otedama_stratum_share_difficulty_total") > total(
        first, "otedama_stratum_share_difficulty_total"
    )
    # Every accepted share was timed (the histogram counts what the sink saw).
    timed = total(later, "otedama_stratum_share_submit_seconds_count")
    assert 0 < timed <= total(later, "otedama_stratum_shares_accepted_total")
    assert total(later, "otedama_stratum_miners") == 1
    assert total(later, "otedama_stratum_workers") == 1
    assert total(later, "otedama_stratum_jobs_total") >= 1
    assert total(later, "otedama_ledger_batch_seconds_count") >= 1
    daemons = {dict(k[1]).get("daemon") for k in later if k[0] == "otedama_rpc_requests_total"}
    assert any(d and d.startswith("http://127.0.0.1:") for d in daemons)
    port = str(running_node.config["stratum"]["address"]).rsplit(":", 1)[1]
    key = ("otedama_stratum_shares_accepted_total", (("algorithm", "sha256d"), ("port", port)))
    assert later[key] > accepted


@pytest.mark.timeout(240)
def test_blocks_found_on_the_devnet_reach_the_block_metrics(running_node: RunningNode) -> None:
    values = wait_until(
        running_node,
        lambda v: (
            v.get(("otedama_pool_blocks_submitted_total", (("result", "accepted"),)), 0) >= 1
            and total(v, "otedama_blocks") >= 1
        ),
        timeout=200,
    )
    assert total(values, "otedama_stratum_blocks_found_total") >= 1


def dashboard_metric_names() -> set[str]:
    dashboard = json.loads(DASHBOARD.read_text())
    expressions = [
        target["expr"]
        for panel in dashboard["panels"]
        for target in panel.get("targets", [])
        if "expr" in target
    ]
    assert expressions, "the dashboard has no Prometheus expressions"
    names: set[str] = set()
    for expression in expressions:
        names.update(re.findall(r"\b(otedama_[a-z0-9_]+)\b", expression))
    return names


def test_every_metric_the_grafana_dashboard_uses_exists_in_the_exposition(
    running_node: RunningNode,
) -> None:
    text = running_node.get(running_node.metrics_url).decode()
    exposed: set[str] = set()
    for family in text_string_to_metric_families(text):
        # A family is declared (HELP, TYPE) even before its first labelled sample.
        suffixes = {"counter": ["_total"], "histogram": ["_bucket", "_sum", "_count"]}
        exposed.update(family.name + s for s in suffixes.get(family.type, [""]))
        exposed.update(sample.name for sample in family.samples)
    # The API's series appear once the API records requests; the node here has no API.
    api = NodeMetrics(Clock(), "devnet")
    api.observe_api("/api/v1/pool", 200, 0.01)
    for family in text_string_to_metric_families(api.exposition().decode()):
        exposed.update(sample.name for sample in family.samples)
    missing = dashboard_metric_names() - exposed
    assert not missing, f"the dashboard uses metrics the node does not export: {sorted(missing)}"


@pytest_twisted.ensureDeferred
async def test_rpc_requests_are_timed_and_failures_counted_per_daemon() -> None:
    """The real transport against a stub daemon over 127.0.0.1, and a closed port."""
    from otedama.node.rpc import RpcConnectionError
    from tests.node.stub_bitcoind import Harness, Reply, closed_port_url

    clock = Clock()
    metrics = NodeMetrics(clock, "regtest")
    harness = Harness(clock)
    try:
        daemon = harness.daemon()
        daemon.stub.on("getblockcount", Reply.result(17))
        url, dead = daemon.url, closed_port_url()
        up = harness.client(url)
        down = harness.client(dead)
        metrics.watch_rpc(up.transport)
        metrics.watch_rpc(down.transport)
        assert await up.get_block_count() == 17
        with pytest.raises(RpcConnectionError):
            await down.get_block_count()
    finally:
        await harness.close()
    values = samples(metrics.exposition().decode())
    assert values[("otedama_rpc_requests_total", (("daemon", url),))] == 1
    assert values[("otedama_rpc_requests_total", (("daemon", dead),))] >= 1
    errors = [
        count
        for (name, labels), count in values.items()
        if name == "otedama_rpc_errors_total" and ("daemon", dead) in labels
    ]
    assert sum(errors) >= 1
    # The task.Clock did not move: every exchange took 0 s on it.
    key = ("otedama_rpc_seconds_bucket", (("daemon", url), ("le", "0.005")))
    assert values[key] == 1


def test_the_ledger_view_counts_blocks_by_status_and_payout_batches(tmp_path: Path) -> None:
    from otedama.ledger import db
    from otedama.ledger.tables import payout_batches
    from otedama.ops.metrics import read_ledger_view

    engine = db.make_engine(f"sqlite:///{tmp_path / 'ledger.sqlite'}", pool_size=1)
    try:
        with engine.begin() as connection:
            db.upgrade(connection)
            for n, (state, total_sats) in enumerate(
                [("sent", 150_000), ("sent", 250_000), ("failed", 7)]
            ):
                connection.execute(
                    payout_batches.insert().values(
                        created_at=1.0, updated_at=1.0, state=state,
                        comment=f"otedama-payout-{n}", total=total_sats,
                    )
                )  # fmt: skip
            view = read_ledger_view(connection)
    finally:
        engine.dispose()
    assert view.payouts == {"sent": (2, 400_000), "failed": (1, 7)}
    assert view.blocks["confirmed"] == 0
    metrics = NodeMetrics(Clock(), "devnet")
    metrics.ledger_view = view
    values = samples(metrics.exposition().decode())
    assert values[("otedama_payout_sats", (("state", "sent"),))] == 400_000
    assert values[("otedama_payout_batches", (("state", "failed"),))] == 1

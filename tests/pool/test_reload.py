"""SIGHUP: the pool's fee, fee address and payout schedule apply live; the rest is named.

The node is built from a config file exactly as ``twistd otedama`` builds it (nothing is
started); the file is rewritten and :meth:`NodeService.reload` runs, as SIGHUP runs it.
"""

from __future__ import annotations

from dataclasses import replace
from pathlib import Path
from typing import Any

from twisted.internet import task
from twisted.logger import formatEvent, globalLogPublisher

from otedama.chain.address import address_to_script
from otedama.config import load_config
from otedama.ledger.payouts import PayoutProcessor
from otedama.ops.lifecycle import NodeService, changed_keys
from otedama.ops.logging import LogControl
from otedama.pool.core import LedgerLink, PoolCore, ShareReporter
from otedama.tap import build_node
from tests.pool.support import MINER, NETWORK, POOL

BEFORE = {
    "fee_percentage": "1.0",
    "fee_address": "",
    "minimum_payout": "0.001",
    "payout_interval": "2m",
    "system": "PPLNS",
    "port": "3333",
    "pool_tag": "/otedama/",
}
AFTER = {
    "fee_percentage": "2.5",
    "fee_address": MINER,
    "minimum_payout": "0.01",
    "payout_interval": "20m",
    "system": "PROP",
    "port": "3334",
    "pool_tag": "/other/",
}


def write_config(path: Path, values: dict[str, str]) -> None:
    path.write_text(
        f"""
app:
  data_dir: {path.parent / "data"}
chain:
  network: devnet
  backend: devnet
pool:
  wallet_address: {POOL}
  fee_percentage: {values["fee_percentage"]}
  fee_address: "{values["fee_address"]}"
  minimum_payout: {values["minimum_payout"]}
  payout_interval: {values["payout_interval"]}
  rewards:
    system: {values["system"]}
stratum:
  address: 127.0.0.1:{values["port"]}
  pool_tag: "{values["pool_tag"]}"
{values.get("stratum_limits", "")}
database:
  url: sqlite:///{path.parent / "ledger.sqlite"}
""",
        encoding="utf-8",
    )


def built(path: Path) -> tuple[NodeService, PoolCore, LedgerLink, PayoutProcessor]:
    from twisted.internet import reactor

    node = build_node(load_config(path), reactor, LogControl("info", "text", stdout=False))
    reporter = node.getServiceNamed("share-report")
    payouts = node.getServiceNamed("leader").getServiceNamed("payouts")
    assert isinstance(reporter, ShareReporter) and isinstance(payouts, PayoutProcessor)
    link = reporter.core.ledger
    assert isinstance(link, LedgerLink)
    return node, reporter.core, link, payouts


def test_a_reload_applies_fee_and_payout_settings_live_and_names_restart_only_keys(
    tmp_path: Path,
) -> None:
    path = tmp_path / "otedama.yaml"
    write_config(path, BEFORE)
    node, core, link, payouts = built(path)
    assert (core.fee_basis_points, link.policy.fee_address) == (100, POOL)

    write_config(path, AFTER)
    lines = reload_logged(node)

    assert core.fee_basis_points == 250
    assert core.fee_script == address_to_script(MINER, NETWORK)
    assert (link.policy.fee_basis_points, link.policy.fee_address) == (250, MINER)
    assert (payouts.interval, payouts.minimum_payout_sats) == (1200.0, 1_000_000)
    for line in (
        "pool.fee_percentage changed from 1.0 to 2.5; applied live",
        f"pool.fee_address changed from {POOL} to {MINER}; applied live",
        "pool.minimum_payout changed from 100000 sat to 1000000 sat; applied live",
        "pool.payout_interval changed from 120 s to 1200 s; applied live",
    ):
        assert any(line in logged for logged in lines), (line, lines)
    restart = sorted(line for line in lines if "takes effect after a restart" in line)
    assert restart == [
        "pool.rewards.system changed; it takes effect after a restart",
        "stratum.address changed; it takes effect after a restart",
        "stratum.pool_tag changed; it takes effect after a restart",
    ]


def reload_logged(node: Any) -> list[str]:
    """Reload ``node`` (which must succeed) and return the lines it logged meanwhile."""
    events: list[dict[str, Any]] = []
    globalLogPublisher.addObserver(events.append)
    try:
        assert node.reload()
    finally:
        globalLogPublisher.removeObserver(events.append)
    return [formatEvent(event) for event in events]


def limits_of(settings: Any) -> tuple[int, float, float, float, int]:
    return (
        settings.max_unsent_bytes,
        settings.stall_timeout,
        settings.close_grace,
        settings.max_share_rate,
        settings.share_burst,
    )


def test_the_stratum_connection_limits_are_configured_and_apply_on_reload(
    tmp_path: Path,
) -> None:
    path = tmp_path / "otedama.yaml"
    limits = (
        "  max_unsent_bytes: 64KiB\n  stall_timeout: 20s\n  close_grace: 2s\n"
        "  max_share_rate: 5\n  share_burst: 10"
    )
    write_config(path, {**BEFORE, "stratum_limits": limits})
    node, _core, _link, _payouts = built(path)
    server = node.getServiceNamed("stratum").factory.wrapped.server
    assert limits_of(server.settings) == (64 * 1024, 20.0, 2.0, 5.0, 10)

    write_config(path, {**BEFORE, "stratum_limits": "  max_share_rate: 50\n  close_grace: 9s"})
    lines = reload_logged(node)
    assert limits_of(server.settings) == (1024 * 1024, 60.0, 9.0, 50.0, 100)
    assert not [line for line in lines if "takes effect after a restart" in line]


def test_a_new_payout_interval_restarts_the_payout_timer() -> None:
    clock = task.Clock()
    ticks: list[float] = []
    processor = PayoutProcessor(None, None, clock, interval=120.0)  # type: ignore[arg-type]
    processor._scheduled_tick = lambda: ticks.append(clock.seconds())  # type: ignore[method-assign]
    processor.startService()
    try:
        assert ticks == [0.0]  # the first tick runs at start
        processor.reschedule(1200.0, 200_000)
        clock.advance(120.0)
        assert ticks == [0.0]  # the old interval no longer ticks
        clock.advance(1080.0)
        assert ticks == [0.0, 1200.0]
        assert processor.minimum_payout_sats == 200_000
    finally:
        processor.stopService()


def test_changed_keys_names_used_keys_by_path_and_skips_unused_ones(tmp_path: Path) -> None:
    path = tmp_path / "otedama.yaml"
    write_config(path, BEFORE)
    old = load_config(path)
    new = replace(
        old,
        server=replace(old.server, port=9999),  # accepted but not used by this version
        pool=replace(old.pool, payout_interval=60.0),
        monitoring=replace(old.monitoring, logging=replace(old.monitoring.logging, format="json")),
    )
    assert changed_keys(old, new) == ["pool.payout_interval", "monitoring.logging.format"]


def test_the_node_keeps_the_pools_own_address_out_of_payouts(tmp_path: Path) -> None:
    """The fee credited to pool.wallet_address is already in the wallet: never sent."""
    path = tmp_path / "otedama.yaml"
    write_config(path, BEFORE)
    _node, _core, _link, payouts = built(path)
    assert payouts.kept_addresses == frozenset({POOL})

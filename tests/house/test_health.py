"""The health report: worst status wins; database degraded; chain down without templates."""

from __future__ import annotations

import json
from types import SimpleNamespace

from twisted.internet.task import Clock
from twisted.web.test.requesthelper import DummyRequest

from otedama.ops.health import DEGRADED, DOWN, OK, Check, HealthResource, NodeHealth
from otedama.tap import health_root, ledger_check


def test_chain_is_degraded_then_down_without_templates_and_ok_with_them() -> None:
    clock = Clock()
    health = NodeHealth(clock, template_max_age=300)
    assert health.report()["status"] == DEGRADED
    clock.advance(301)
    assert health.report()["checks"]["chain"]["status"] == DOWN
    health.on_template(SimpleNamespace(height=42))
    report = health.report()
    assert report["status"] == OK
    assert report["checks"]["chain"]["height"] == 42
    clock.advance(400)
    assert "no new block template for 400 s" in health.report()["checks"]["chain"]["reason"]


def test_the_worst_check_decides_and_a_broken_check_reports_down() -> None:
    health = NodeHealth(Clock(), template_max_age=300)
    health.on_template(SimpleNamespace(height=1))
    health.checks["database"] = lambda: Check(DEGRADED, {"reason": "spooling"})
    assert health.report()["status"] == DEGRADED

    def broken() -> Check:
        raise RuntimeError("boom")

    health.checks["stratum"] = broken
    report = health.report()
    assert report["status"] == DOWN
    assert "boom" in report["checks"]["stratum"]["reason"]


def test_ledger_check_maps_spooling_to_degraded_with_the_reason() -> None:
    ingest = SimpleNamespace(
        status="degraded",
        reason="database unreachable",
        stored=5,
        spooled=7,
        dropped=0,
        spool_bytes=900,
    )
    check = ledger_check(SimpleNamespace(health=lambda: ingest))
    assert check.status == DEGRADED
    assert check.detail["reason"] == "database unreachable"
    assert check.detail["spooled"] == 7


def test_resource_serves_json_at_the_configured_path_with_503_when_down() -> None:
    clock = Clock()
    health = NodeHealth(clock, template_max_age=10)
    clock.advance(11)
    root = health_root("/ops/health", HealthResource(health))
    leaf = root.getStaticEntity(b"ops").getStaticEntity(b"health")
    request = DummyRequest([b""])
    body = leaf.render_GET(request)
    assert request.responseCode == 503
    assert json.loads(body)["status"] == DOWN


def test_chain_is_degraded_at_once_by_a_trouble_and_names_which() -> None:
    clock = Clock()
    health = NodeHealth(clock, template_max_age=300)
    troubles: dict[str, str | None] = {"templates": None, "submitblock": None}
    health.chain_troubles["templates"] = lambda: troubles["templates"]
    health.chain_troubles["submitblock"] = lambda: troubles["submitblock"]
    health.on_template(SimpleNamespace(height=42))
    assert health.report()["status"] == OK
    troubles["templates"] = "getting a block template has failed for 0 s (1 attempts): refused"
    chain = health.report()["checks"]["chain"]
    assert chain["status"] == DEGRADED
    assert chain["failing"] == ["templates"]
    assert "getting a block template has failed" in chain["reason"]
    troubles["submitblock"] = "submitblock for block 00ab at height 42 got no answer (0 s ago)"
    chain = health.report()["checks"]["chain"]
    assert chain["failing"] == ["submitblock", "templates"]
    assert "submitblock for block 00ab" in chain["reason"]
    clock.advance(301)
    chain = health.report()["checks"]["chain"]
    assert chain["status"] == DOWN
    assert chain["reason"].startswith("no new block template for 301 s; getting a block")
    troubles["templates"] = troubles["submitblock"] = None
    health.on_template(SimpleNamespace(height=43))
    assert health.report()["status"] == OK

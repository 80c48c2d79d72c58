"""The API of a real node: twistd on a devnet, its CPU miner finding blocks, over TCP.

Every endpoint, the errors, CORS, admin auth with tokens made by ``otedama api token``,
payouts pause/resume, the WebSocket ``blocks`` topic, and schemathesis against the
node's own OpenAPI document.
"""

from __future__ import annotations

import json
import subprocess
from pathlib import Path
from typing import Any

import pytest
import pytest_twisted
from twisted.internet.defer import Deferred
from twisted.python.failure import Failure

from tests.api.node import BIN, CORS_ORIGIN, Node


def token(node: Node, name: str, *extra: str) -> str:
    made = node.otedama("api", "token", "create", "--name", name, *extra)
    assert made.returncode == 0, made.stderr
    secret = made.stdout.splitlines()[0]
    assert secret.startswith("otd_") and "shown only now" in made.stdout
    return secret


def test_public_endpoints_report_the_devnet_pool(mined: Node) -> None:
    status, _, body = mined.get("/api/v1/status")
    assert status == 200 and body["network"] == "devnet" and body["height"] >= 1
    assert body["health"]["checks"]["stratum"]["miners"] == 1

    _, _, pool = mined.get("/api/v1/pool")
    assert pool["workers"] == 1 and pool["miners"] == 1
    assert pool["hashrate"]["10m"] > 0 and pool["shares_10m"] > 0
    assert pool["blocks"]["last"][0]["status"] in ("pending", "confirmed")
    assert pool["stratum"][0]["url"].startswith("stratum+tcp://127.0.0.1:")
    assert pool["reward_system"] == "PPLNS"

    _, _, blocks = mined.get("/api/v1/blocks?page=1&per_page=1")
    assert blocks["per_page"] == 1 and len(blocks["items"]) == 1 and blocks["total"] >= 1
    _, _, pending = mined.get("/api/v1/blocks?status=pending")
    assert all(b["status"] == "pending" for b in pending["items"])

    _, _, history = mined.get("/api/v1/hashrate?range=24h")
    assert len(history["points"]) == 288 and any(p["hashrate"] > 0 for p in history["points"])

    _, _, miner = mined.get(f"/api/v1/miners/{mined.address}")
    assert [w["name"] for w in miner["workers"]] == ["cpu"]
    assert miner["workers"][0]["difficulty"] == pytest.approx(0.0001)
    assert miner["balance"]["immature"] > 0
    _, _, chart = mined.get(f"/api/v1/miners/{mined.address}/hashrate?range=1h")
    assert any(p["shares"] > 0 for p in chart["points"])
    status, _, payments = mined.get(f"/api/v1/miners/{mined.address}/payments")
    assert status == 200 and payments["page"] == 1
    status, _, payments = mined.get("/api/v1/payments?page=2")
    assert status == 200 and payments["items"] == []


def test_errors_cors_and_the_docs_page(devnet_node: Node) -> None:
    status, _, body = devnet_node.get("/api/v1/miners/1BoatSLRHtKNngkdXEeobR76b53LETtpyT")
    assert status == 400 and body["error"]["message"].startswith("address:")
    status, _, body = devnet_node.get("/api/v1/blocks?page=999999")
    assert status == 400 and "page" in body["error"]["message"]
    status, headers, body = devnet_node.get("/api/v1/status", method="DELETE")
    assert status == 405 and headers["allow"] == "GET, OPTIONS"
    status, _, body = devnet_node.get("/api/v1/nope")
    assert status == 404 and body["error"]["status"] == 404
    status, headers, _ = devnet_node.get("/api/v1/pool", headers={"Origin": CORS_ORIGIN})
    assert headers["access-control-allow-origin"] == CORS_ORIGIN
    status, headers, _ = devnet_node.get("/api/v1/pool", headers={"Origin": "https://x.example"})
    assert "access-control-allow-origin" not in headers
    status, _, page = devnet_node.get("/api/v1/docs")
    assert status == 200 and b"/api/v1/miners/{address}/hashrate" in page


def test_admin_auth_with_tokens_from_the_command(devnet_node: Node) -> None:
    node = devnet_node
    ops = token(node, "ops")
    old = token(node, "old")
    brief = token(node, "brief", "--expires", "1s")
    revoked = node.otedama("api", "token", "revoke", "old")
    assert revoked.returncode == 0 and "revoked 1" in revoked.stdout

    def admin(secret: str | None, path: str = "/api/v1/admin/tokens", method: str = "GET") -> Any:
        headers = {} if secret is None else {"Authorization": f"Bearer {secret}"}
        return node.get(path, headers=headers, method=method)

    status, _, listed = admin(ops)
    assert status == 200
    states = {t["name"]: t["state"] for t in listed}
    assert states["ops"] == "active" and states["old"] == "revoked"
    assert all(ops not in json.dumps(t) for t in listed)
    assert admin(None)[0] == 401
    assert admin("otd_" + "x" * 43)[2]["error"]["message"] == "unknown token"
    assert "revoked" in admin(old)[2]["error"]["message"]
    node.wait_until(
        "the 1 s token to expire",
        lambda: "expired" in admin(brief)[2].get("error", {}).get("message", ""),
        30,
    )
    listing = node.otedama("api", "token", "list")
    assert "ops" in listing.stdout and ops not in listing.stdout

    status, _, config = admin(ops, "/api/v1/admin/config")
    assert status == 200 and config["chain"]["network"] == "devnet"
    assert admin(ops, "/api/v1/admin/payouts/pause", "POST")[2] == {"paused": True}
    assert admin(ops, "/api/v1/admin/payouts/pause", "POST")[2] == {"paused": True}
    assert admin(ops, "/api/v1/admin/payouts/resume", "POST")[2] == {"paused": False}


class Collector:
    """A WebSocket client on ``topics``; ``found`` fires with the first found block,
    ``heard`` once every topic has delivered an event."""

    def __init__(self, topics: list[str]) -> None:
        self.topics = topics
        self.found: Deferred[dict[str, Any]] = Deferred()
        self.heard: Deferred[None] = Deferred()
        self.messages: list[dict[str, Any]] = []
        self.transport: Any = None

    def negotiationStarted(self, transport: Any) -> None:
        self.transport = transport

    def negotiationFinished(self) -> None:
        for topic in self.topics:
            self.transport.sendTextMessage(json.dumps({"op": "subscribe", "topic": topic}))

    def textMessageReceived(self, message: str) -> None:
        event = json.loads(message)
        self.messages.append(event)
        data = event.get("data") or {}
        if data.get("event") == "found" and not self.found.called:
            self.found.callback(data["block"])
        delivered = {m["topic"] for m in self.messages if "data" in m}
        if delivered >= set(self.topics) and not self.heard.called:
            self.heard.callback(None)

    def bytesMessageReceived(self, data: bytes) -> None:
        pass

    def pongReceived(self, payload: bytes) -> None:
        pass

    def connectionLost(self, reason: Failure) -> None:
        if not self.found.called:
            self.found.errback(reason)


@pytest.mark.timeout(120)
@pytest_twisted.ensureDeferred
async def test_the_websocket_topics_deliver_a_block_found_on_the_devnet_pool_and_miner(
    devnet_node: Node,
) -> None:
    from twisted.internet import reactor
    from twisted.web.websocket import WebSocketClientEndpoint

    miner = f"miner:{devnet_node.address}"
    collector = Collector(["blocks", "pool", miner])

    class Factory:
        def buildProtocol(self, url: str) -> Collector:
            return collector

    url = devnet_node.base.replace("http://", "ws://") + "/api/v1/ws"
    endpoint = WebSocketClientEndpoint.new(reactor, url)
    await endpoint.connect(Factory())
    try:
        block = await collector.found
        await collector.heard
    finally:
        collector.transport.loseConnection()
    assert collector.messages[0] == {"topic": "blocks", "subscribed": True}
    events = {m["topic"]: m["data"] for m in collector.messages if "data" in m}
    assert events["pool"]["workers"] == 1 and events["pool"]["height"] >= 1
    # The miner's summary (its workers appear once the history has a point: see mined).
    assert events[miner]["address"] == devnet_node.address
    assert set(events[miner]["balance"]) == {"immature", "confirmed", "paid", "payout_pending"}
    assert block["finder"] == devnet_node.address and block["worker"] == "cpu"
    assert len(block["hash"]) == 64 and block["network_difficulty"] > 0


@pytest.mark.timeout(600)
def test_schemathesis_finds_no_server_error_and_no_answer_outside_the_schema(
    mined: Node, tmp_path: Path
) -> None:
    secret = token(mined, "schemathesis")
    run = subprocess.run(
        [
            str(BIN / "st"),
            "run",
            f"{mined.base}/api/v1/openapi.json",
            "--url",
            mined.base,
            "--checks",
            "not_a_server_error,response_schema_conformance,status_code_conformance,"
            "content_type_conformance",
            "--max-examples",
            "25",
            "--generation-deterministic",
            "--header",
            f"Authorization: Bearer {secret}",
        ],
        capture_output=True,
        text=True,
        timeout=580,
        cwd=tmp_path,  # schemathesis keeps its example database in the working directory
    )
    assert run.returncode == 0, run.stdout[-6000:] + run.stderr[-2000:]
    assert "passed" in run.stdout and "failed" not in run.stdout.split("SUMMARY")[-1]

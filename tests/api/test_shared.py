"""The API on the node's shared state: ``blocks`` bridged between nodes, rate limits in
Redis. The Redis tests run a private ``redis-server`` (never the machine's shared one)."""

from __future__ import annotations

import json
from pathlib import Path
from typing import Any

import pytest
import pytest_twisted
import treq
from twisted.internet.defer import Deferred

from otedama.api.events import EventBus, bridge
from otedama.api.resource import ApiPolicy
from otedama.api.service import ApiParts, build_api
from otedama.chain.address import address_to_script
from otedama.chain.serialize import TxOut
from otedama.ops.redis import MemoryEventBus, SharedState
from otedama.pool.ports import SubmitOutcome, SubmitResult
from tests.api.support import SyncStore, devnet_config, migrated_engine, pool_core
from tests.ops import test_redis
from tests.ops.test_redis import RedisServer, eventually, node_state
from tests.pool.support import MINER, POOL, share

OUTPUTS = [TxOut(50_0000_0000, address_to_script(POOL, "devnet"))]


def test_the_bridge_carries_blocks_to_other_nodes_once_and_never_echoes() -> None:
    shared = MemoryEventBus()  # what Redis delivers: every node's events to every node
    one, two = EventBus(), EventBus()
    bridge(one, shared, "one")
    bridge(two, shared, "two")
    seen_one: list[dict[str, Any]] = []
    seen_two: list[dict[str, Any]] = []
    one.subscribe("blocks", lambda t, p: seen_one.append(p))
    two.subscribe("blocks", lambda t, p: seen_two.append(p))
    one.publish("blocks", {"event": "found", "block": {"height": 7}})
    one.publish("pool", {"miners": 1})  # per node: not bridged
    assert seen_one == [{"event": "found", "block": {"height": 7}}]
    assert seen_two == [{"event": "found", "block": {"height": 7}, "origin": "one"}]


#: The private redis-server fixture of the ops tests.
redis_server = test_redis.redis_server


class ApiNode:
    """One API on TCP over its own ledger, sharing state with the others through Redis."""

    def __init__(self, tmp_path: Path, redis: RedisServer, policy: ApiPolicy) -> None:
        from twisted.internet import reactor

        tmp_path.mkdir()
        self.shared: SharedState = node_state(redis)
        store = SyncStore(migrated_engine(tmp_path))
        self.parts: ApiParts = build_api(
            devnet_config(tmp_path), reactor, store, pool_core(reactor), policy=policy,
            shared=self.shared,
        )  # fmt: skip
        self.port = reactor.listenTCP(0, self.parts.site, interface="127.0.0.1")  # type: ignore[attr-defined]
        self.base = f"http://127.0.0.1:{self.port.getHost().port}"

    async def get(self, path: str) -> int:
        response = await treq.get(self.base + path)
        await response.content()
        return int(response.code)

    async def stop(self) -> None:
        await self.port.stopListening()
        await self.shared.stopService()


async def nodes(tmp_path: Path, redis: RedisServer, policy: ApiPolicy) -> list[ApiNode]:
    pair = [ApiNode(tmp_path / name, redis, policy) for name in ("a", "b")]
    await eventually(
        lambda: all(node.shared.check().status == "ok" for node in pair), "both on Redis"
    )
    return pair


@pytest.mark.timeout(90)
@pytest_twisted.ensureDeferred
async def test_two_api_nodes_share_one_rate_limit_through_redis(
    tmp_path: Path, redis_server: RedisServer
) -> None:
    one, two = await nodes(tmp_path, redis_server, ApiPolicy(ip_rate=0.01, ip_burst=3))
    try:
        codes = [await one.get("/api/v1/status"), await two.get("/api/v1/status")]
        codes += [await one.get("/api/v1/status"), await two.get("/api/v1/status")]
        assert codes == [200, 200, 200, 429]
        assert await one.get("/api/v1/status") == 429  # the same bucket, on either node
        assert one.shared.fallbacks == two.shared.fallbacks == 0
    finally:
        await one.stop()
        await two.stop()


class Subscriber:
    """A WebSocket client on ``blocks``: ``ready`` once subscribed, then collects events."""

    def __init__(self) -> None:
        self.ready: Deferred[None] = Deferred()
        self.events: list[dict[str, Any]] = []
        self.transport: Any = None

    def negotiationStarted(self, transport: Any) -> None:
        self.transport = transport

    def negotiationFinished(self) -> None:
        self.transport.sendTextMessage(json.dumps({"op": "subscribe", "topic": "blocks"}))

    def textMessageReceived(self, message: str) -> None:
        data = json.loads(message)
        if data.get("subscribed"):
            self.ready.callback(None)
        elif "data" in data:
            self.events.append(data["data"])

    def bytesMessageReceived(self, data: bytes) -> None:
        pass

    def pongReceived(self, payload: bytes) -> None:
        pass

    def connectionLost(self, reason: Any) -> None:
        pass


@pytest.mark.timeout(90)
@pytest_twisted.ensureDeferred
async def test_a_block_found_on_one_node_reaches_a_websocket_subscriber_of_another(
    tmp_path: Path, redis_server: RedisServer
) -> None:
    from twisted.internet import reactor
    from twisted.web.websocket import WebSocketClientEndpoint

    one, two = await nodes(tmp_path, redis_server, ApiPolicy(rate_limiting=False))
    subscriber = Subscriber()

    class Factory:
        def buildProtocol(self, url: str) -> Subscriber:
            return subscriber

    on_one: list[dict[str, Any]] = []
    one.parts.bus.subscribe("blocks", lambda t, p: on_one.append(p))
    endpoint = WebSocketClientEndpoint.new(reactor, two.base.replace("http", "ws") + "/api/v1/ws")
    await endpoint.connect(Factory())
    try:
        await subscriber.ready
        candidate = share(OUTPUTS, time=1_000_000.0)
        one.parts.view.on_block(candidate, SubmitResult(SubmitOutcome.ACCEPTED))
        await eventually(lambda: subscriber.events != [], "the block on node two's socket")
        [event] = subscriber.events
        assert event["event"] == "found" and event["block"]["finder"] == MINER
        assert event["origin"] == one.shared.node_id
        # Node one's own event comes back from Redis before anything node two sends
        # later: once two's marker is on one, an echo would have arrived already.
        two.parts.bus.publish("blocks", {"event": "marker"})
        await eventually(lambda: len(on_one) == 2, "node two's marker on node one")
        assert [e["event"] for e in on_one] == ["found", "marker"]
    finally:
        subscriber.transport.loseConnection()
        await one.stop()
        await two.stop()

"""WebSocket topics: subscribe, deliver, refuse bad topics, close a slow consumer."""

from __future__ import annotations

import json
from typing import Any

from otedama.api.events import EventBus
from otedama.api.ws import CLOSE_POLICY, TopicSocket, topic_checker
from otedama.chain.address import address_to_script
from tests.pool.support import MINER


class FakeTransport:
    def __init__(self) -> None:
        self.sent: list[dict[str, Any]] = []
        self.closed: int | None = None

    def sendTextMessage(self, text: str) -> None:
        self.sent.append(json.loads(text))

    def loseConnection(self, code: int = 1000) -> None:
        self.closed = code


def socket(bus: EventBus, **bounds: int) -> tuple[TopicSocket, FakeTransport]:
    check = topic_checker(lambda address: address_to_script(address, "devnet") and None)
    sock = TopicSocket(bus, check, **bounds)
    transport = FakeTransport()
    sock.negotiationStarted(transport)  # type: ignore[arg-type]
    return sock, transport


def test_subscribed_topics_are_delivered_and_unsubscribed_ones_are_not() -> None:
    bus = EventBus()
    sock, transport = socket(bus)
    sock.textMessageReceived(json.dumps({"op": "subscribe", "topic": "blocks"}))
    sock.textMessageReceived(json.dumps({"op": "subscribe", "topic": f"miner:{MINER}"}))
    assert bus.publish("blocks", {"event": "found"}) == 1
    assert bus.publish("pool", {"miners": 1}) == 0
    bus.publish(f"miner:{MINER}", {"hashrate": 1.0})
    sock.textMessageReceived(json.dumps({"op": "unsubscribe", "topic": "blocks"}))
    bus.publish("blocks", {"event": "confirmed"})
    assert transport.sent == [
        {"topic": "blocks", "subscribed": True},
        {"topic": f"miner:{MINER}", "subscribed": True},
        {"topic": "blocks", "data": {"event": "found"}},
        {"topic": f"miner:{MINER}", "data": {"hashrate": 1.0}},
    ]
    sock.connectionLost(None)  # type: ignore[arg-type]
    assert bus.topics() == []


def test_bad_messages_and_topics_are_answered_with_an_error() -> None:
    sock, transport = socket(EventBus())
    sock.textMessageReceived("not json")
    sock.textMessageReceived(json.dumps({"op": "subscribe", "topic": "miner:nope"}))
    sock.textMessageReceived(json.dumps({"op": "subscribe", "topic": "secrets"}))
    sock.textMessageReceived("x" * 5000)
    errors = [m["error"] for m in transport.sent]
    assert len(errors) == 4
    assert "unknown topic 'secrets'" in errors[2] and "too long" in errors[3]


def test_a_slow_consumer_is_queued_up_to_the_bound_then_closed() -> None:
    bus = EventBus()
    sock, transport = socket(bus, max_queued=3)
    sock.subscribe("pool")
    sock.pauseProducing()  # the TCP transport's buffer is full
    for n in range(3):
        bus.publish("pool", {"n": n})
    assert transport.closed is None and len(sock.queue) == 3
    sock.resumeProducing()
    assert [m["data"]["n"] for m in transport.sent[1:]] == [0, 1, 2]
    sock.pauseProducing()
    for n in range(4):
        bus.publish("pool", {"n": n})
    assert transport.closed == CLOSE_POLICY
    assert sock.queue == type(sock.queue)()
    bus.publish("pool", {"n": 99})
    assert transport.sent[-1]["data"]["n"] == 2


def test_upgrades_are_rate_limited_per_ip_and_bounded_in_number(tmp_path: Any) -> None:
    from twisted.web.test.requesthelper import DummyRequest

    from otedama.api.resource import ApiPolicy
    from otedama.api.service import GatedWebSocket
    from otedama.api.ws import TopicSocketFactory
    from tests.api.support import site

    parts, _, _, _ = site(tmp_path, ApiPolicy(rate_limiting=True, ip_rate=1.0, ip_burst=1))
    factory = TopicSocketFactory(EventBus(), lambda topic: None, max_sockets=1)
    gate = GatedWebSocket(parts.api, factory)

    def refused() -> tuple[int, Any]:
        request = DummyRequest([b""])
        body = gate.render_GET(request)  # type: ignore[arg-type]
        assert isinstance(body, bytes)  # refused before any upgrade
        return request.responseCode, json.loads(body)

    factory.open = 1  # one socket open: the bound is reached
    code, body = refused()
    assert code == 503 and "too many WebSocket connections" in body["error"]["message"]
    code, body = refused()
    assert code == 429 and body["error"]["status"] == 429
    sock = factory.buildProtocol(None)  # type: ignore[arg-type]
    assert factory.open == 2
    sock.connectionLost(None)  # type: ignore[arg-type]
    sock.connectionLost(None)  # type: ignore[arg-type]
    assert factory.open == 1

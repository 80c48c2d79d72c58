"""``/api/v1/ws``: live topics over a WebSocket (twisted.web.websocket).

A client sends ``{"op": "subscribe", "topic": "pool"}`` (or ``unsubscribe``); topics
are ``pool`` (the pool summary every few seconds), ``blocks`` (found, confirmed,
orphaned, rejected) and ``miner:<address>`` (that address's workers, hashrate and
balance). Each event arrives as ``{"topic": …, "data": …}``.

Output is bounded: the socket registers itself as the streaming producer of its TCP
transport, so when the transport's buffer is full it is paused and messages wait in a
queue of at most ``max_queued`` messages / ``max_queued_bytes``; past that the
consumer is too slow and the socket is closed (code 1008).
"""

from __future__ import annotations

import json
from collections import deque
from collections.abc import Callable
from typing import Any

from twisted.internet.interfaces import IConsumer, IPushProducer
from twisted.logger import Logger
from twisted.python.failure import Failure
from twisted.web.server import Request
from twisted.web.websocket import WebSocketTransport
from zope.interface import implementer

from otedama.api.events import EventBus

MAX_QUEUED = 256
MAX_QUEUED_BYTES = 1 << 20
#: Topics one socket may hold at once.
MAX_TOPICS = 16
#: Longest client message accepted.
MAX_MESSAGE = 1024
CLOSE_POLICY = 1008
#: Open WebSockets a node accepts at once; past it an upgrade answers 503.
MAX_SOCKETS = 10_000


@implementer(IPushProducer)
class TopicSocket:
    """One WebSocket client: its subscriptions and its bounded output queue."""

    log = Logger()

    def __init__(
        self,
        bus: EventBus,
        check_topic: Callable[[str], None],
        max_queued: int = MAX_QUEUED,
        max_queued_bytes: int = MAX_QUEUED_BYTES,
        on_close: Callable[[], None] | None = None,
    ) -> None:
        self.bus = bus
        self.on_close = on_close
        self.check_topic = check_topic
        self.max_queued = max_queued
        self.max_queued_bytes = max_queued_bytes
        self.transport: WebSocketTransport | None = None
        self.subscriptions: dict[str, Callable[[], None]] = {}
        self.queue: deque[str] = deque()
        self.queued_bytes = 0
        self.paused = False
        self.closed = False

    # -- WebSocketProtocol --------------------------------------------------------------

    def negotiationStarted(self, transport: WebSocketTransport) -> None:
        self.transport = transport

    def negotiationFinished(self) -> None:
        assert self.transport is not None
        tcp = getattr(self.transport, "transport", None)
        if tcp is not None:
            consumer: Any = IConsumer(tcp)
            # The HTTP channel was the transport's producer until the upgrade.
            consumer.unregisterProducer()
            consumer.registerProducer(self, True)

    def textMessageReceived(self, message: str) -> None:
        if len(message) > MAX_MESSAGE:
            self._reply_error("message too long")
            return
        try:
            request = json.loads(message)
            op = request["op"]
            topic = request["topic"]
            if op not in ("subscribe", "unsubscribe") or not isinstance(topic, str):
                raise ValueError("op must be subscribe or unsubscribe, topic a string")
            if op == "subscribe":
                self.subscribe(topic)
            else:
                self.unsubscribe(topic)
        except (ValueError, KeyError, TypeError) as e:
            self._reply_error(str(e))

    def bytesMessageReceived(self, data: bytes | bytearray) -> None:
        self._reply_error("send JSON text messages")

    def pongReceived(self, payload: bytes) -> None:
        pass

    def connectionLost(self, reason: Failure) -> None:
        self.closed = True
        if self.on_close is not None:
            self.on_close()
            self.on_close = None
        for unsubscribe in self.subscriptions.values():
            unsubscribe()
        self.subscriptions.clear()
        self.queue.clear()

    # -- topics ----------------------------------------------------------------------

    def subscribe(self, topic: str) -> None:
        if topic in self.subscriptions:
            return
        if len(self.subscriptions) >= MAX_TOPICS:
            raise ValueError(f"at most {MAX_TOPICS} topics per connection")
        self.check_topic(topic)
        self.subscriptions[topic] = self.bus.subscribe(topic, self.deliver)
        self.send({"topic": topic, "subscribed": True})

    def unsubscribe(self, topic: str) -> None:
        unsubscribe = self.subscriptions.pop(topic, None)
        if unsubscribe is not None:
            unsubscribe()

    def deliver(self, topic: str, payload: dict[str, Any]) -> None:
        self.send({"topic": topic, "data": payload})

    def _reply_error(self, message: str) -> None:
        self.send({"error": message})

    # -- bounded output ------------------------------------------------------------------

    def send(self, message: dict[str, Any]) -> None:
        if self.closed or self.transport is None:
            return
        text = json.dumps(message, separators=(",", ":"))
        if not self.paused and not self.queue:
            self.transport.sendTextMessage(text)
            return
        self.queue.append(text)
        self.queued_bytes += len(text)
        if len(self.queue) > self.max_queued or self.queued_bytes > self.max_queued_bytes:
            self.log.warn(
                "closing a WebSocket client that does not read ({count} messages queued)",
                count=len(self.queue),
            )
            self.closed = True
            self.queue.clear()
            self.transport.loseConnection(CLOSE_POLICY)

    # IPushProducer: the TCP transport pauses us when its buffer is full.

    def pauseProducing(self) -> None:
        self.paused = True

    def resumeProducing(self) -> None:
        self.paused = False
        while self.queue and not self.paused and not self.closed and self.transport is not None:
            text = self.queue.popleft()
            self.queued_bytes -= len(text)
            self.transport.sendTextMessage(text)

    def stopProducing(self) -> None:
        self.closed = True
        self.queue.clear()


class TopicSocketFactory:
    """Builds a :class:`TopicSocket` per accepted WebSocket and counts the open ones."""

    def __init__(
        self, bus: EventBus, check_topic: Callable[[str], None], max_sockets: int = MAX_SOCKETS
    ) -> None:
        self.bus = bus
        self.check_topic = check_topic
        self.max_sockets = max_sockets
        self.open = 0

    @property
    def full(self) -> bool:
        return self.open >= self.max_sockets

    def buildProtocol(self, request: Request) -> TopicSocket:
        self.open += 1
        return TopicSocket(self.bus, self.check_topic, on_close=self._closed)

    def _closed(self) -> None:
        self.open -= 1


def topic_checker(check_address: Callable[[str], None]) -> Callable[[str], None]:
    """Accept ``pool``, ``blocks`` and ``miner:<address>`` with a valid address."""

    def check(topic: str) -> None:
        if topic in ("pool", "blocks"):
            return
        kind, _, address = topic.partition(":")
        if kind == "miner" and address and len(address) <= 100:
            check_address(address)
            return
        raise ValueError(f"unknown topic {topic[:80]!r}; use pool, blocks or miner:<address>")

    return check

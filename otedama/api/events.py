"""A small in-process event bus: the pool's live events, for the WebSocket.

Topics are strings (``pool``, ``blocks``, ``miner:<address>``); payloads are JSON-ready
dicts. Publishing is synchronous and O(subscribers of that topic); a subscriber that
raises is logged and does not stop the others. :func:`bridge` joins the ``blocks`` topic
to the node-wide bus (Redis with several nodes), so each node's WebSocket shows every
node's blocks.
"""

from __future__ import annotations

from collections.abc import Callable, Mapping
from typing import Any, Protocol

from twisted.logger import Logger

Subscriber = Callable[[str, dict[str, Any]], None]


class EventBus:
    """Subscribers per topic; ``publish`` calls each with ``(topic, payload)``."""

    log = Logger()

    def __init__(self) -> None:
        self._subscribers: dict[str, list[Subscriber]] = {}

    def subscribe(self, topic: str, subscriber: Subscriber) -> Callable[[], None]:
        """Add ``subscriber`` to ``topic``; returns the function that removes it."""
        self._subscribers.setdefault(topic, []).append(subscriber)

        def unsubscribe() -> None:
            listeners = self._subscribers.get(topic)
            if listeners and subscriber in listeners:
                listeners.remove(subscriber)
                if not listeners:
                    del self._subscribers[topic]

        return unsubscribe

    def publish(self, topic: str, payload: dict[str, Any]) -> int:
        """Deliver ``payload`` to ``topic``'s subscribers; returns how many got it."""
        delivered = 0
        for subscriber in list(self._subscribers.get(topic, ())):
            try:
                subscriber(topic, payload)
                delivered += 1
            except Exception:
                self.log.failure("event subscriber for {topic} failed", topic=topic)
        return delivered

    def topics(self, prefix: str = "") -> list[str]:
        """Topics with subscribers (those starting with ``prefix``)."""
        return [topic for topic in self._subscribers if topic.startswith(prefix)]


#: The key a bridged event carries: the node that published it (so it is not echoed back).
ORIGIN = "origin"
#: Topics the bridge carries between nodes (``pool`` and ``miner:`` are per node).
SHARED_TOPICS = ("blocks",)


class SharedEvents(Protocol):
    """The node-wide bus of :class:`otedama.ops.redis.SharedState` (through Redis or not)."""

    def publish(self, topic: str, event: Mapping[str, Any], /) -> None: ...

    def subscribe(self, topic: str, callback: Subscriber, /) -> Callable[[], None]: ...


def bridge(bus: EventBus, shared: SharedEvents, node_id: str) -> Callable[[], None]:
    """Carry :data:`SHARED_TOPICS` between this API's ``bus`` and the nodes' ``shared`` bus.

    What this node publishes on ``bus`` goes out tagged with ``node_id``; what comes in
    from another node is published on ``bus`` with its tag, so it is neither sent out
    again nor delivered twice here (our own events coming back from Redis are dropped:
    local subscribers already had them). Returns the function that undoes the bridge.
    """

    def outgoing(topic: str, payload: dict[str, Any]) -> None:
        if ORIGIN not in payload:
            shared.publish(topic, {**payload, ORIGIN: node_id})

    def incoming(topic: str, payload: dict[str, Any]) -> None:
        if payload.get(ORIGIN) != node_id:
            bus.publish(topic, payload)

    undo = [bus.subscribe(topic, outgoing) for topic in SHARED_TOPICS]
    undo += [shared.subscribe(topic, incoming) for topic in SHARED_TOPICS]

    def unbridge() -> None:
        for unsubscribe in undo:
            unsubscribe()

    return unbridge

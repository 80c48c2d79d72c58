"""A small in-process event bus: the pool's live events, for the WebSocket.

Topics are strings (``pool``, ``blocks``, ``miner:<address>``); payloads are JSON-ready
dicts. Publishing is synchronous and O(subscribers of that topic); a subscriber that
raises is logged and does not stop the others.
"""

from __future__ import annotations

from collections.abc import Callable
from typing import Any

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

"""State several nodes share: token-bucket rate limits and live events, in memory or Redis.

Two small Protocols are the boundary the API uses:

- :class:`LimitStore`: ``await take(key, rate, burst, now)`` -> :class:`Decision` (one
  token bucket per key: ``burst`` tokens, refilled at ``rate`` per second);
- :class:`EventBus`: ``publish(topic, event)`` and ``subscribe(topic, callback)``.

Each has an in-memory implementation (one node) and a Redis one (several nodes behind one
dashboard share limits and see each other's blocks). :class:`SharedState` is what the node
builds from ``redis.*``: without Redis configured it is the in-memory pair; with Redis it
goes through Redis and falls back to memory while Redis is unreachable, which its health
check reports as ``degraded``. txredisapi installs the default reactor when imported, so
it is imported only inside functions that run once the node's reactor is chosen.
"""

from __future__ import annotations

import json
import uuid
from collections import OrderedDict
from collections.abc import Callable, Mapping
from dataclasses import dataclass
from typing import Any, Protocol
from urllib.parse import unquote, urlsplit

from twisted.application.internet import ClientService, backoffPolicy
from twisted.application.service import Service
from twisted.internet.defer import Deferred
from twisted.logger import Logger

from otedama.ops.health import DEGRADED, OK, Check

__all__ = [
    "BlockStatusEvents",
    "Decision",
    "EventBus",
    "EventCallback",
    "LimitStore",
    "MemoryEventBus",
    "MemoryLimitStore",
    "RedisEventBus",
    "RedisLimitStore",
    "RedisTarget",
    "SharedState",
    "publish_blocks",
    "redis_target",
    "take_token",
]

#: Keys and channels Otedama uses in Redis start with this.
PREFIX = "otedama:"
#: A Redis call that has not answered in this many seconds counts as Redis down.
CALL_TIMEOUT = 1.0
#: Buckets kept in memory; past it the least recently used is forgotten (full again).
MAX_MEMORY_KEYS = 100_000
#: After a failed Redis call, limits stay in memory for this many seconds before Redis
#: is tried again.
RETRY_AFTER_FAILURE = 5.0
#: Events larger than this from Redis are dropped (a bound on what a peer can send us).
MAX_EVENT_BYTES = 64 * 1024

EventCallback = Callable[[str, dict[str, Any]], None]


@dataclass(frozen=True)
class Decision:
    """One ``take``: allowed or not, tokens left, and seconds until the next token."""

    allowed: bool
    remaining: float
    retry_after: float


def take_token(
    tokens: float | None, updated: float, now: float, rate: float, burst: float, cost: float = 1.0
) -> tuple[Decision, float]:
    """The token bucket, pure: refill since ``updated``, then try to take ``cost``.

    ``tokens`` None is a new bucket (full). Returns the decision and the tokens left.
    """
    if rate <= 0 or burst <= 0:
        raise ValueError(f"a token bucket needs a positive rate and burst, got {rate} / {burst}")
    level = burst if tokens is None else min(burst, tokens + max(0.0, now - updated) * rate)
    if level >= cost:
        level -= cost
        return Decision(True, level, 0.0), level
    return Decision(False, level, (cost - level) / rate), level


class LimitStore(Protocol):
    """Where token buckets live (memory for one node, Redis for several)."""

    async def take(
        self, key: str, rate: float, burst: float, now: float, cost: float = 1.0, /
    ) -> Decision:
        """Take ``cost`` tokens from ``key``'s bucket if it has them."""
        ...


class EventBus(Protocol):
    """Live events by topic (``blocks``, ``pool``, ``miner:<address>``)."""

    def publish(self, topic: str, event: Mapping[str, Any], /) -> None:
        """Send ``event`` (JSON-able) to every subscriber of ``topic`` on every node."""
        ...

    def subscribe(self, topic: str, callback: EventCallback, /) -> Callable[[], None]:
        """Call ``callback(topic, event)`` for each event; returns the unsubscribe."""
        ...


class MemoryLimitStore:
    """Token buckets in this process, at most ``max_keys`` (least recently used go)."""

    def __init__(self, max_keys: int = MAX_MEMORY_KEYS) -> None:
        self.max_keys = max_keys
        self._buckets: OrderedDict[str, tuple[float, float]] = OrderedDict()

    def take_now(
        self, key: str, rate: float, burst: float, now: float, cost: float = 1.0
    ) -> Decision:
        """:meth:`take` without the coroutine (for callers on the reactor thread)."""
        buckets = self._buckets
        state = buckets.pop(key, None)
        tokens, updated = (None, now) if state is None else state
        decision, left = take_token(tokens, updated, now, rate, burst, cost)
        buckets[key] = (left, now)
        if len(buckets) > self.max_keys:
            buckets.popitem(last=False)
        return decision

    async def take(
        self, key: str, rate: float, burst: float, now: float, cost: float = 1.0
    ) -> Decision:
        return self.take_now(key, rate, burst, now, cost)


class MemoryEventBus:
    """Events delivered in this process, synchronously; a failing callback is logged."""

    log = Logger()

    def __init__(self) -> None:
        self._subscribers: dict[str, list[EventCallback]] = {}

    def publish(self, topic: str, event: Mapping[str, Any]) -> None:
        self.deliver(topic, dict(event))

    def deliver(self, topic: str, event: dict[str, Any]) -> None:
        for callback in list(self._subscribers.get(topic, ())):
            try:
                callback(topic, event)
            except Exception:
                self.log.failure("event subscriber for {topic} failed", topic=topic)

    def subscribe(self, topic: str, callback: EventCallback) -> Callable[[], None]:
        self._subscribers.setdefault(topic, []).append(callback)

        def unsubscribe() -> None:
            callbacks = self._subscribers.get(topic, [])
            if callback in callbacks:
                callbacks.remove(callback)
            if not callbacks:
                self._subscribers.pop(topic, None)

        return unsubscribe


# -- Redis ------------------------------------------------------------------------------


@dataclass(frozen=True)
class RedisTarget:
    """Where Redis is: from ``redis.url`` (or REDIS_URL), else host/port/password/db."""

    host: str
    port: int
    password: str | None
    db: int
    pool_size: int

    @property
    def display(self) -> str:
        """``host:port/db``, never the password."""
        return f"{self.host}:{self.port}/{self.db}"


def redis_target(config: Any) -> RedisTarget | None:
    """The Redis the config names, or None when Redis is not configured (nothing needs it).

    Redis is configured by ``redis.url`` (``REDIS_URL`` overrides) or ``redis.enabled``.
    Raises ``ValueError`` naming the key for a URL that is not ``redis://``.
    """
    redis = config.redis
    if redis.url:
        parts = urlsplit(redis.url)
        if parts.scheme != "redis" or not parts.hostname:
            raise ValueError(
                f"redis.url: expected redis://[:password@]host[:port][/db], got {parts.scheme}://…"
            )
        path = parts.path.strip("/")
        if path and not path.isdigit():
            raise ValueError(f"redis.url: the database after the / must be a number, got {path!r}")
        password = unquote(parts.password) if parts.password else None
        return RedisTarget(
            parts.hostname,
            parts.port or 6379,
            password,
            int(path) if path else redis.db,
            redis.pool_size,
        )
    if not redis.enabled:
        return None
    return RedisTarget(redis.host, redis.port, redis.password or None, redis.db, redis.pool_size)


#: The token bucket of :func:`take_token`, atomically in Redis (KEYS[1]; ARGV rate,
#: burst, now, cost, ttl ms). Returns {allowed, remaining, retry_after} as strings.
_TAKE_SCRIPT = """
local rate = tonumber(ARGV[1])
local burst = tonumber(ARGV[2])
local now = tonumber(ARGV[3])
local cost = tonumber(ARGV[4])
local state = redis.call('HMGET', KEYS[1], 't', 'u')
local tokens = tonumber(state[1])
local updated = tonumber(state[2])
if tokens == nil or updated == nil then
  tokens = burst
else
  tokens = math.min(burst, tokens + math.max(0, now - updated) * rate)
end
local allowed = 0
local retry = 0
if tokens >= cost then
  tokens = tokens - cost
  allowed = 1
else
  retry = (cost - tokens) / rate
end
redis.call('HSET', KEYS[1], 't', tostring(tokens), 'u', tostring(now))
redis.call('PEXPIRE', KEYS[1], ARGV[5])
return {allowed, tostring(tokens), tostring(retry)}
"""


class RedisLimitStore:
    """Token buckets in Redis (one Lua script per take: atomic across nodes).

    ``take`` raises when Redis does not answer within ``timeout``; :class:`SharedState`
    falls back to memory then. Nodes should keep their clocks in sync (``now`` is theirs).
    """

    def __init__(self, redis: Any, clock: Any, timeout: float = CALL_TIMEOUT) -> None:
        self.redis = redis
        self.clock = clock
        self.timeout = timeout

    async def take(
        self, key: str, rate: float, burst: float, now: float, cost: float = 1.0
    ) -> Decision:
        if rate <= 0 or burst <= 0:
            raise ValueError(
                f"a token bucket needs a positive rate and burst, got {rate} / {burst}"
            )
        ttl_ms = int((burst / rate) * 1000) + 1000
        call: Deferred[Any] = self.redis.eval(
            _TAKE_SCRIPT,
            [f"{PREFIX}limit:{key}"],
            [repr(float(rate)), repr(float(burst)), repr(float(now)), repr(float(cost)), ttl_ms],
        )
        reply = await call.addTimeout(self.timeout, self.clock)
        allowed, remaining, retry = reply
        return Decision(bool(int(allowed)), float(remaining), float(retry))


class RedisEventBus:
    """Events over Redis pub/sub: published to ``otedama:events:<topic>``; one subscriber
    connection (reconnecting with back-off) delivers every node's events here.

    While the subscriber is not connected, events published here are also delivered
    locally, so this node's own subscribers miss nothing when Redis is away.
    """

    log = Logger()

    def __init__(self, redis: Any, local: MemoryEventBus, timeout: float = CALL_TIMEOUT) -> None:
        self.redis = redis
        self.local = local
        self.timeout = timeout
        self.clock: Any = None
        self.subscribed = False
        self.publish_failures = 0
        self.dropped = 0
        self.last_error: str | None = None

    def publish(self, topic: str, event: Mapping[str, Any]) -> None:
        payload = json.dumps({"topic": topic, "event": dict(event)}, sort_keys=True)
        delivered = not self.subscribed
        if delivered:
            self.local.deliver(topic, dict(event))
        try:
            sent: Deferred[Any] = self.redis.publish(f"{PREFIX}events:{topic}", payload)
            if self.clock is not None:
                sent.addTimeout(self.timeout, self.clock)
        except Exception as error:
            self._publish_failed(topic, event, error, delivered)
            return
        sent.addErrback(
            lambda failure: self._publish_failed(topic, event, failure.value, delivered)
        )

    def _publish_failed(
        self, topic: str, event: Mapping[str, Any], error: Any, delivered: bool
    ) -> None:
        self.publish_failures += 1
        self.last_error = f"publish failed: {error}"
        if not delivered:
            # Our subscriber would have brought it back; it will not: deliver it here.
            self.local.deliver(topic, dict(event))

    def subscribe(self, topic: str, callback: EventCallback) -> Callable[[], None]:
        return self.local.subscribe(topic, callback)

    def received(self, channel: str | bytes, message: str | bytes) -> None:
        """One message from Redis: deliver it to this node's subscribers."""
        if isinstance(message, bytes):
            if len(message) > MAX_EVENT_BYTES:
                self.dropped += 1
                return
            message = message.decode("utf-8", "replace")
        if len(message) > MAX_EVENT_BYTES:
            self.dropped += 1
            return
        try:
            data = json.loads(message)
            topic, event = data["topic"], data["event"]
            if not isinstance(topic, str) or not isinstance(event, dict):
                raise ValueError("topic must be a string and event an object")
        except (ValueError, KeyError, TypeError):
            self.dropped += 1
            return
        self.local.deliver(topic, event)


def _subscriber_factory(bus: RedisEventBus, target: RedisTarget) -> Any:
    """A factory of txredisapi subscriber connections that feed ``bus``."""
    import txredisapi
    from twisted.internet.protocol import Factory

    class Subscriber(txredisapi.SubscriberProtocol):  # type: ignore[misc]
        def connectionMade(self) -> Any:
            d = super().connectionMade()
            self.whenConnected().addCallback(self._subscribe_events)
            return d

        def _subscribe_events(self, _: Any) -> Any:
            def subscribed(reply: Any) -> None:
                bus.subscribed = True

            return self.psubscribe(f"{PREFIX}events:*").addCallback(subscribed)

        def messageReceived(self, pattern: Any, channel: Any, message: Any) -> None:
            bus.received(channel, message)

        def connectionLost(self, why: Any) -> None:
            bus.subscribed = False
            super().connectionLost(why)

    class SubscriberFactory(Factory):
        isLazy = True

        def buildProtocol(self, addr: Any) -> Any:
            protocol = Subscriber(password=target.password)
            protocol.factory = self
            return protocol

        def stopTrying(self) -> None:
            bus.last_error = "Redis refused the password"

        def connectionError(self, why: str) -> None:
            bus.last_error = why

    return SubscriberFactory()


def publish_blocks(core: Any, events: EventBus, origin: str) -> None:
    """Publish each block the chain took on ``blocks`` (``event: found``), in the shape the
    API's WebSocket sends, tagged with this node's ``origin`` (for a node without the API;
    with it, the API's bridge carries its own events)."""
    from otedama.api.views import found_block

    def found(share: Any, result: Any) -> None:
        events.publish("blocks", {"event": "found", "block": found_block(share), "origin": origin})

    core.on_block(found)


class BlockStatusEvents:
    """Publishes ``confirmed``, ``orphaned`` and ``rejected`` on ``blocks`` from the block
    tracker's ``on_status`` hook, with the block as the API shows it (a node without the
    API; with it, the API publishes and bridges them). A failing read still publishes
    what the hook said."""

    log = Logger()

    def __init__(self, store: Any, events: EventBus, tracker: Any, origin: str) -> None:
        self.store = store
        self.events = events
        self.origin = origin
        self.last: Deferred[None] | None = None
        tracker.on_status(self.changed)

    def changed(self, block_hash: str, status: str, confirmations: int) -> None:
        self.last = Deferred.fromCoroutine(self.publish(block_hash, status, confirmations))

    async def publish(self, block_hash: str, status: str, confirmations: int) -> None:
        from functools import partial

        from otedama.api.queries import block_by_hash

        block: dict[str, Any] | None = None
        try:
            block = await self.store.run(partial(block_by_hash, block_hash=block_hash))
        except Exception:
            self.log.failure("reading block {hash} for its status event failed", hash=block_hash)
        if block is None:
            block = {"hash": block_hash, "status": status, "confirmations": confirmations}
        self.events.publish("blocks", {"event": status, "block": block, "origin": self.origin})


class SharedState(Service):
    """The node's rate limits and live events (the API uses ``limits`` and ``events``).

    Without Redis: memory. With Redis: Redis first; while it does not answer, memory
    (limits are then per node), and :meth:`check` says ``degraded`` with the reason.
    """

    log = Logger()

    def __init__(
        self, target: RedisTarget | None, clock: Any, timeout: float = CALL_TIMEOUT
    ) -> None:
        self.setName("shared-state")
        #: This node among those sharing Redis (bridged events carry it as ``origin``).
        self.node_id = uuid.uuid4().hex[:16]
        self.target = target
        self.clock = clock
        self.timeout = timeout
        self.memory = MemoryLimitStore()
        self.local_events = MemoryEventBus()
        self.redis: Any = None
        self.redis_limits: RedisLimitStore | None = None
        self.redis_events: RedisEventBus | None = None
        self._subscriber: ClientService | None = None
        self.fallbacks = 0
        self.last_error: str | None = None
        self._down = False
        #: After a failed call Redis is skipped until then (a hung Redis costs one timeout).
        self._skip_until = 0.0
        self._bus: MemoryEventBus | RedisEventBus = self.local_events
        #: What the API uses: this object is both the LimitStore and the EventBus.
        self.limits: LimitStore = self
        self.events: EventBus = self

    def startService(self) -> None:
        super().startService()
        if self.target is None:
            return
        import txredisapi
        from twisted.internet.endpoints import TCP4ClientEndpoint

        target = self.target
        self.redis = txredisapi.lazyConnectionPool(
            target.host,
            target.port,
            dbid=target.db,
            poolsize=target.pool_size,
            password=target.password,
            connectTimeout=self.timeout * 5,
            replyTimeout=self.timeout * 5,
        )
        self.redis_limits = RedisLimitStore(self.redis, self.clock, self.timeout)
        bus = RedisEventBus(self.redis, self.local_events, self.timeout)
        bus.clock = self.clock
        self.redis_events = bus
        self._bus = bus
        endpoint: Any = TCP4ClientEndpoint(self.clock, target.host, target.port, timeout=5)
        self._subscriber = ClientService(
            endpoint,
            _subscriber_factory(bus, target),
            retryPolicy=backoffPolicy(maxDelay=10.0),
            clock=self.clock,
        )
        self._subscriber.startService()
        self.log.info("shared rate limits and events in Redis at {redis}", redis=target.display)

    def stopService(self) -> Deferred[None]:
        super().stopService()
        stopping: list[Deferred[Any]] = []
        if self._subscriber is not None:
            stopping.append(self._subscriber.stopService())
        if self.redis is not None:
            stopping.append(self.redis.disconnect())
        from twisted.internet.defer import gatherResults

        done: Deferred[Any] = gatherResults(stopping, consumeErrors=True)
        return done.addBoth(lambda _: None)

    def _may_call(self) -> bool:
        """Not in the pause after a failed call."""
        return bool(self.clock.seconds() >= self._skip_until)

    def redis_connected(self) -> bool:
        """Whether the Redis pool has a live connection now."""
        factory = getattr(self.redis, "_factory", None)
        return factory is not None and factory.size > 0

    async def take(
        self, key: str, rate: float, burst: float, now: float, cost: float = 1.0
    ) -> Decision:
        """A token from Redis's bucket, or from memory's while Redis is away."""
        store = self.redis_limits
        if store is not None and self.redis_connected() and self._may_call():
            try:
                decision = await store.take(key, rate, burst, now, cost)
            except ValueError:
                raise
            except Exception as error:
                self._went_down(f"rate limit call failed: {error!r}")
            else:
                if self._down:
                    self._down = False
                    self.log.info("Redis at {redis} answers again", redis=self.target_display)
                return decision
        elif store is not None:
            self._went_down("not connected")
        self.fallbacks += 1
        return self.memory.take_now(key, rate, burst, now, cost)

    def publish(self, topic: str, event: Mapping[str, Any]) -> None:
        """Publish on every node (through Redis when configured)."""
        self._bus.publish(topic, event)

    def subscribe(self, topic: str, callback: EventCallback) -> Callable[[], None]:
        """This node's subscribers get every node's events on ``topic``."""
        return self.local_events.subscribe(topic, callback)

    @property
    def target_display(self) -> str:
        return self.target.display if self.target is not None else "-"

    def _went_down(self, reason: str) -> None:
        self.last_error = reason
        self._skip_until = self.clock.seconds() + RETRY_AFTER_FAILURE
        if not self._down:
            self._down = True
            self.log.warn(
                "Redis at {redis} unavailable ({reason}); rate limits are per node until it "
                "is back",
                redis=self.target_display,
                reason=reason,
            )

    def check(self) -> Check:
        """The ``redis`` health check: ``degraded`` while limits or events bypass Redis."""
        detail: dict[str, Any] = {"redis": self.target_display}
        problems = []
        if not self.redis_connected():
            problems.append("not connected")
        elif not self._may_call() and self.last_error:
            problems.append(self.last_error)
        bus = self.redis_events
        if bus is not None and not bus.subscribed:
            problems.append("event subscription not connected")
        if problems:
            detail["reason"] = (
                f"Redis at {self.target_display}: "
                + "; ".join(problems)
                + ("; rate limits are per node and events stay on this node")
            )
            return Check(DEGRADED, detail)
        return Check(OK, detail)

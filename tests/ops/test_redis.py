"""Shared rate limits and live events: in memory, and through a real Redis (stopped mid-run).

Each Redis test starts its own ``redis-server`` on a free port (never the machine's shared
one) and kills it to show the fallback.
"""

from __future__ import annotations

import shutil
import socket
import subprocess
import sys
import time
from collections.abc import Callable, Iterator
from dataclasses import replace
from pathlib import Path
from typing import Any

import pytest
import pytest_twisted
from twisted.internet.task import Clock, deferLater

from otedama.config import Config, RedisConfig
from otedama.ops.health import NodeHealth
from otedama.ops.redis import (
    MemoryEventBus,
    MemoryLimitStore,
    SharedState,
    redis_target,
    take_token,
)

REDIS_SERVER = shutil.which("redis-server")


def free_port() -> int:
    with socket.socket() as sock:
        sock.bind(("127.0.0.1", 0))
        return int(sock.getsockname()[1])


# -- the bucket, memory -----------------------------------------------------------------


def test_a_new_bucket_is_full_and_refills_at_its_rate() -> None:
    decision, left = take_token(None, 0.0, 100.0, rate=2.0, burst=3.0)
    assert decision.allowed and left == 2.0
    decision, left = take_token(0.0, 100.0, 100.25, rate=2.0, burst=3.0)
    assert not decision.allowed
    assert decision.retry_after == pytest.approx(0.25)
    decision, left = take_token(0.0, 100.0, 200.0, rate=2.0, burst=3.0)
    assert decision.allowed and left == 2.0  # refilled to the burst, not beyond


def test_a_bucket_needs_a_positive_rate_and_burst() -> None:
    with pytest.raises(ValueError, match="positive rate and burst"):
        take_token(None, 0.0, 0.0, rate=0.0, burst=1.0)


@pytest_twisted.ensureDeferred
async def test_memory_limits_refuse_past_the_burst_then_recover() -> None:
    store = MemoryLimitStore()
    results = [(await store.take("ip:1", 1.0, 2.0, 10.0)).allowed for _ in range(3)]
    assert results == [True, True, False]
    assert (await store.take("ip:2", 1.0, 2.0, 10.0)).allowed  # another key, another bucket
    assert (await store.take("ip:1", 1.0, 2.0, 11.0)).allowed


def test_memory_limits_keep_a_bounded_number_of_buckets() -> None:
    store = MemoryLimitStore(max_keys=2)
    for key in ("a", "b", "c"):
        store.take_now(key, 1.0, 1.0, 0.0)
    assert store.take_now("a", 1.0, 1.0, 0.0).allowed  # forgotten: full again
    assert not store.take_now("c", 1.0, 1.0, 0.0).allowed


def test_memory_events_reach_subscribers_of_their_topic_until_they_unsubscribe() -> None:
    bus = MemoryEventBus()
    seen: list[tuple[str, dict[str, Any]]] = []

    def broken(topic: str, event: dict[str, Any]) -> None:
        raise RuntimeError("a bad subscriber")

    bus.subscribe("blocks", broken)
    stop = bus.subscribe("blocks", lambda topic, event: seen.append((topic, event)))
    bus.subscribe("pool", lambda topic, event: seen.append((topic, event)))
    bus.publish("blocks", {"height": 7})
    stop()
    bus.publish("blocks", {"height": 8})
    assert seen == [("blocks", {"height": 7})]


# -- configuration ----------------------------------------------------------------------


def _config(**redis: Any) -> Config:
    return replace(Config(), redis=replace(RedisConfig(), **redis))


def test_without_redis_configured_there_is_no_target() -> None:
    assert redis_target(Config()) is None


def test_the_redis_url_wins_and_carries_password_and_database() -> None:
    target = redis_target(_config(url="redis://:s%40cret@10.0.0.5:6380/3"))
    assert target is not None
    assert (target.host, target.port, target.password, target.db) == ("10.0.0.5", 6380, "s@cret", 3)
    assert "s@cret" not in target.display


def test_enabled_redis_uses_host_and_port() -> None:
    target = redis_target(_config(enabled=True, host="cache", port=7000, password="pw"))
    assert target is not None
    assert (target.host, target.port, target.password, target.db) == ("cache", 7000, "pw", 0)


def test_a_redis_url_of_another_scheme_is_refused_naming_the_key() -> None:
    with pytest.raises(ValueError, match=r"redis\.url"):
        redis_target(_config(url="http://cache:6379"))


def test_without_redis_the_node_never_imports_txredisapi(tmp_path: Path) -> None:
    code = (
        "import sys\n"
        "from twisted.internet import asyncioreactor\n"
        "asyncioreactor.install()\n"
        "from twisted.internet import reactor\n"
        "from otedama.ops.redis import SharedState\n"
        "state = SharedState(None, reactor)\n"
        "state.startService()\n"
        "state.stopService()\n"
        "assert 'txredisapi' not in sys.modules\n"
        "print('ok')\n"
    )
    result = subprocess.run(
        [sys.executable, "-c", code], capture_output=True, text=True, timeout=60, cwd=tmp_path
    )
    assert result.stdout.strip() == "ok", result.stderr


# -- a real Redis -----------------------------------------------------------------------


class RedisServer:
    """A private redis-server on a free port (no persistence), killable mid-test."""

    def __init__(self) -> None:
        assert REDIS_SERVER is not None, "redis-server is not installed"
        self.port = free_port()
        self.process: subprocess.Popen[bytes] | None = None

    def start(self) -> None:
        self.process = subprocess.Popen(
            [
                str(REDIS_SERVER),
                "--port", str(self.port),
                "--bind", "127.0.0.1",
                "--save", "",
                "--appendonly", "no",
                "--daemonize", "no",
            ],
            stdout=subprocess.DEVNULL,
            stderr=subprocess.DEVNULL,
        )  # fmt: skip
        deadline = time.monotonic() + 20
        while time.monotonic() < deadline:
            try:
                with socket.create_connection(("127.0.0.1", self.port), timeout=1):
                    return
            except OSError:
                time.sleep(0.05)
        raise AssertionError(f"redis-server did not listen on {self.port}")

    def kill(self) -> None:
        if self.process is not None and self.process.poll() is None:
            self.process.kill()
            self.process.wait()
        self.process = None

    @property
    def url(self) -> str:
        return f"redis://127.0.0.1:{self.port}/0"


@pytest.fixture
def redis_server() -> Iterator[RedisServer]:
    server = RedisServer()
    server.start()
    try:
        yield server
    finally:
        server.kill()


async def eventually(condition: Callable[[], bool], what: str, timeout: float = 30.0) -> None:
    from twisted.internet import reactor

    deadline = time.monotonic() + timeout
    while not condition():
        if time.monotonic() > deadline:
            raise AssertionError(f"never happened: {what}")
        await deferLater(reactor, 0.05)


def node_state(server: RedisServer) -> SharedState:
    from twisted.internet import reactor

    state = SharedState(redis_target(_config(url=server.url)), reactor, timeout=0.5)
    state.startService()
    return state


@pytest.mark.timeout(90)
@pytest_twisted.ensureDeferred
async def test_two_nodes_share_one_limit_and_see_each_others_blocks(
    redis_server: RedisServer,
) -> None:
    one, two = node_state(redis_server), node_state(redis_server)
    try:
        await eventually(
            lambda: one.check().status == "ok" and two.check().status == "ok",
            "both nodes connected and subscribed",
        )
        # One bucket of 3 across both nodes: the fourth request, on either, is refused.
        decisions = [
            await one.limits.take("ip:203.0.113.9", 1.0, 3.0, 1000.0),
            await two.limits.take("ip:203.0.113.9", 1.0, 3.0, 1000.0),
            await one.limits.take("ip:203.0.113.9", 1.0, 3.0, 1000.0),
            await two.limits.take("ip:203.0.113.9", 1.0, 3.0, 1000.0),
        ]
        assert [d.allowed for d in decisions] == [True, True, True, False]
        assert decisions[-1].retry_after == pytest.approx(1.0)
        # Two seconds later there are two tokens again, for either node.
        assert (await two.limits.take("ip:203.0.113.9", 1.0, 3.0, 1002.0)).allowed
        assert one.fallbacks == two.fallbacks == 0

        seen_one: list[dict[str, Any]] = []
        seen_two: list[dict[str, Any]] = []
        one.events.subscribe("blocks", lambda topic, event: seen_one.append(event))
        two.events.subscribe("blocks", lambda topic, event: seen_two.append(event))
        one.events.publish("blocks", {"event": "found", "height": 101})
        await eventually(lambda: seen_two != [] and seen_one != [], "the block on both nodes")
        assert seen_two == seen_one == [{"event": "found", "height": 101}]
    finally:
        await one.stopService()
        await two.stopService()


@pytest.mark.timeout(120)
@pytest_twisted.ensureDeferred
async def test_with_redis_stopped_limits_fall_back_to_memory_and_health_is_degraded(
    redis_server: RedisServer,
) -> None:
    from twisted.internet import reactor

    state = node_state(redis_server)
    health = NodeHealth(Clock(), template_max_age=300)
    health.checks["redis"] = state.check
    try:
        await eventually(lambda: state.check().status == "ok", "connected")
        assert (await state.limits.take("token:abc", 1.0, 1.0, 50.0)).allowed
        # In Redis: the same bucket is empty now.
        assert not (await state.limits.take("token:abc", 1.0, 1.0, 50.0)).allowed

        redis_server.kill()
        await eventually(lambda: state.check().status == "degraded", "degraded after the kill")
        report = health.report()
        assert report["checks"]["redis"]["status"] == "degraded"
        assert "not connected" in report["checks"]["redis"]["reason"]
        assert report["status"] == "degraded"
        # Still serving: memory's own bucket (new here, so full), then its limit applies.
        assert (await state.limits.take("token:abc", 1.0, 1.0, 50.0)).allowed
        assert not (await state.limits.take("token:abc", 1.0, 1.0, 50.0)).allowed
        assert state.fallbacks == 2
        # Events stay on this node while Redis is away.
        seen: list[dict[str, Any]] = []
        state.events.subscribe("blocks", lambda topic, event: seen.append(event))
        state.events.publish("blocks", {"event": "found", "height": 9})
        assert seen == [{"event": "found", "height": 9}]

        redis_server.start()  # the same port again: the node reconnects by itself
        await eventually(lambda: state.check().status == "ok", "back to ok", timeout=60)
        assert (await state.limits.take("token:xyz", 1.0, 1.0, 60.0)).allowed
        assert state.fallbacks == 2
        await deferLater(reactor, 0)
    finally:
        await state.stopService()


@pytest.mark.timeout(60)
@pytest_twisted.ensureDeferred
async def test_the_node_adds_a_redis_check_only_when_redis_is_configured(tmp_path: Path) -> None:
    from twisted.application.service import MultiService
    from twisted.internet import reactor

    from otedama.tap import shared_state

    class Core:
        def __init__(self) -> None:
            self.callbacks: list[Any] = []

        def on_block(self, callback: Any) -> None:
            self.callbacks.append(callback)

    health = NodeHealth(Clock(), template_max_age=300)
    shared_state(Config(), reactor, Core(), MultiService(), health)
    assert "redis" not in health.checks

    dead = f"redis://127.0.0.1:{free_port()}/0"
    node = MultiService()
    core = Core()
    state = shared_state(_config(url=dead), reactor, core, node, health, api=False)
    node.startService()
    try:
        assert health.report()["checks"]["redis"]["status"] == "degraded"
        assert len(core.callbacks) == 1  # without the API, found blocks are published here
        seen: list[dict[str, Any]] = []
        state.events.subscribe("blocks", lambda topic, event: seen.append(event))
        assert (await state.limits.take("ip:1", 1.0, 1.0, 0.0)).allowed
    finally:
        await node.stopService()


@pytest.mark.timeout(60)
@pytest_twisted.ensureDeferred
async def test_a_hung_redis_costs_one_timeout_then_limits_stay_in_memory_for_a_while(
    redis_server: RedisServer,
) -> None:
    import signal

    state = node_state(redis_server)
    try:
        await eventually(lambda: state.check().status == "ok", "connected")
        assert redis_server.process is not None
        redis_server.process.send_signal(signal.SIGSTOP)  # connected, but never answers
        try:
            assert (await state.limits.take("ip:7", 1.0, 5.0, 0.0)).allowed
            assert state.fallbacks == 1
            check = state.check()
            assert check.status == "degraded"
            assert "rate limit call failed" in check.detail["reason"]
            # The next calls do not wait for Redis again: memory answers at once.
            assert (await state.limits.take("ip:7", 1.0, 5.0, 0.0)).allowed
            assert state.fallbacks == 2
        finally:
            redis_server.process.send_signal(signal.SIGCONT)
        await eventually(lambda: state.check().status == "ok", "ok after the pause", timeout=30)
        assert (await state.limits.take("ip:8", 1.0, 1.0, 0.0)).allowed
        assert state.fallbacks == 2
    finally:
        await state.stopService()


def test_a_redis_url_that_is_not_redis_is_a_config_error_naming_the_key(tmp_path: Path) -> None:
    from otedama.config import ConfigError, load_config

    path = tmp_path / "otedama.yaml"
    path.write_text("redis:\n  url: http://:hunter22@cache:6379\n")
    with pytest.raises(ConfigError) as caught:
        load_config(path)
    problems = "\n".join(caught.value.problems)
    assert "redis.url: expected redis://" in problems
    assert "hunter22" not in problems


# -- block status events ----------------------------------------------------------------


class _Tracker:
    """The block tracker's ``on_status`` hook, driven by the test."""

    def __init__(self) -> None:
        self.callbacks: list[Any] = []

    def on_status(self, callback: Any) -> None:
        self.callbacks.append(callback)

    def verdict(self, block_hash: str, status: str, confirmations: int) -> None:
        for callback in self.callbacks:
            callback(block_hash, status, confirmations)


@pytest.mark.timeout(60)
@pytest_twisted.ensureDeferred
async def test_a_block_the_ledger_confirms_or_orphans_is_published_on_blocks(
    tmp_path: Path,
) -> None:
    """From the tracker's hook (no polling), with the block as the API shows it."""
    from functools import partial

    from twisted.internet import reactor

    from otedama.ledger import db
    from otedama.ledger.blocks import FoundBlock, RewardPolicy, confirm_block, orphan_block
    from otedama.ledger.rewards import RewardScheme
    from otedama.ledger.store import LedgerStore
    from otedama.ops.redis import BlockStatusEvents

    url = f"sqlite:///{tmp_path / 'ledger.sqlite'}"
    engine = db.make_engine(url, pool_size=1)
    with engine.begin() as connection:
        db.upgrade(connection)
    engine.dispose()
    store = LedgerStore(reactor, url, 1, spool_dir=tmp_path / "spool")  # type: ignore[arg-type]
    store.start()
    bus = MemoryEventBus()
    seen: list[dict[str, Any]] = []
    bus.subscribe("blocks", lambda topic, event: seen.append(event))
    tracker = _Tracker()
    watcher = BlockStatusEvents(store, bus, tracker, "node-a")
    policy = RewardPolicy(RewardScheme.SOLO, 0, "fee-address", 3600.0)
    try:
        ids = []
        for height in (101, 102):
            found = FoundBlock(height, f"{height:064x}", "alice", "rig0", 5_000_000_000, 1000.0)
            ids.append((await store.record_block(found, policy)).block_id)
        await store.run(partial(confirm_block, block_id=ids[0], confirmations=100, now=2000.0))
        tracker.verdict(f"{101:064x}", "confirmed", 100)
        assert watcher.last is not None
        await watcher.last
        await store.run(partial(orphan_block, block_id=ids[1], reason="reorg", now=2000.0))
        tracker.verdict(f"{102:064x}", "orphaned", 3)
        await watcher.last
        assert [(e["event"], e["block"]["height"], e["origin"]) for e in seen] == [
            ("confirmed", 101, "node-a"),
            ("orphaned", 102, "node-a"),
        ]
        assert seen[0]["block"]["status"] == "confirmed" and seen[0]["block"]["finder"] == "alice"
    finally:
        await store.stop()

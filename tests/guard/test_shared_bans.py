"""Bans shared between the nodes of one operator through the event bus (Redis)."""

from __future__ import annotations

import pytest
import pytest_twisted
from twisted.internet import task

from otedama.ops.bans import DdosSettings
from otedama.ops.firewall import Firewall
from otedama.ops.guard import Guard, share_bans
from otedama.ops.redis import MemoryEventBus
from tests.ops.test_redis import RedisServer, eventually, node_state, redis_server  # noqa: F401


def two_guards() -> tuple[Guard, Guard, task.Clock]:
    clock = task.Clock()
    clock.advance(1_795_490_000)
    return Guard(Firewall(), DdosSettings(), clock), Guard(Firewall(), DdosSettings(), clock), clock


def test_a_ban_and_an_unban_on_one_node_reach_the_other_without_echo() -> None:
    one, two, clock = two_guards()
    bus = MemoryEventBus()
    published: list[dict[str, object]] = []
    bus.subscribe("bans", lambda topic, event: published.append(event))
    share_bans(one, bus, "node-a")
    stop = share_bans(two, bus, "node-b")
    one.ban("203.0.113.7", 600.0, "flood", "auto")
    assert two.refusal("203.0.113.7") == "banned"
    [ban] = two.bans.active(clock.seconds())
    assert (ban.until, ban.reason, ban.actor) == (clock.seconds() + 600.0, "flood", "auto")
    assert len(published) == 1  # node b applied it without publishing it again
    two.unban("203.0.113.7", "alice")
    assert one.refusal("203.0.113.7") is None
    assert len(published) == 2
    stop()
    one.ban("203.0.113.8", 600.0, "flood", "auto")
    assert two.refusal("203.0.113.8") is None


def test_a_malformed_or_expired_remote_ban_is_ignored() -> None:
    one, _two, clock = two_guards()
    bus = MemoryEventBus()
    share_bans(one, bus, "node-a")
    bus.publish("bans", {"origin": "x", "host": "not-an-ip", "ban": None})
    expired = {"host": "203.0.113.9", "until": clock.seconds() - 1, "reason": "", "actor": "x"}
    bus.publish("bans", {"origin": "x", "host": "203.0.113.9", "ban": expired})
    assert len(one.bans) == 0


@pytest.mark.timeout(90)
@pytest_twisted.ensureDeferred
async def test_two_nodes_share_a_ban_through_redis(redis_server: RedisServer) -> None:  # noqa: F811
    from twisted.internet import reactor

    state_one, state_two = node_state(redis_server), node_state(redis_server)
    one = Guard(Firewall(), DdosSettings(), reactor)
    two = Guard(Firewall(), DdosSettings(), reactor)
    try:
        await eventually(
            lambda: state_one.check().status == "ok" and state_two.check().status == "ok",
            "both nodes connected and subscribed",
        )
        share_bans(one, state_one, "node-a")
        share_bans(two, state_two, "node-b")
        await one.ban("198.51.100.23", 600.0, "invalid work", "auto")
        await eventually(lambda: two.refusal("198.51.100.23") == "banned", "the ban on node b")
        await two.unban("198.51.100.23", "alice")
        await eventually(lambda: one.refusal("198.51.100.23") is None, "the unban on node a")
    finally:
        await state_one.stopService()
        await state_two.stopService()

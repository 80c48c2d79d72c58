"""The ledger leader: exactly one node runs the duties, chosen by a PostgreSQL advisory
lock; a node that leaves (or loses its lock connection) hands over at the next poll.

Real PostgreSQL, a manual clock for the polls (the lock's thread is real)."""

from __future__ import annotations

import random
from collections.abc import AsyncIterator, Callable
from pathlib import Path
from typing import Any

import psycopg2
import pytest
import pytest_twisted
from twisted.application.service import Service
from twisted.internet import task

from otedama.ledger.leader import LeaderService


class Duty(Service):
    """A child that counts its starts and stops."""

    def __init__(self, name: str) -> None:
        self.setName(name)
        self.starts = 0
        self.stops = 0

    def startService(self) -> None:
        super().startService()
        self.starts += 1

    def stopService(self) -> None:
        super().stopService()
        self.stops += 1


class Node:
    def __init__(self, url: str, key: int) -> None:
        from twisted.internet import reactor

        self.clock = task.Clock()
        self.changes: list[bool] = []
        self.leader = LeaderService(
            reactor, url, 1.0, key=key, clock=self.clock, on_change=self.changes.append
        )
        self.duties = [Duty("block-tracker"), Duty("payouts")]
        for duty in self.duties:
            duty.setServiceParent(self.leader)

    async def start(self) -> None:
        self.leader.startService()
        await self.leader.when_polled()

    async def poll(self) -> None:
        self.clock.advance(1.0)
        await self.leader.when_polled()

    def running(self) -> list[bool]:
        return [duty.running for duty in self.duties]


@pytest.fixture
def lock_key() -> int:
    """A key of its own per test, so tests cannot see each other's locks."""
    return random.getrandbits(62)


@pytest_twisted.async_yield_fixture
async def make_node(fresh_pg_database: Callable[[], str]) -> AsyncIterator[Callable[[int], Node]]:
    url = fresh_pg_database()
    made: list[Node] = []

    def make(key: int) -> Node:
        node = Node(url, key)
        made.append(node)
        return node

    yield make
    for node in made:
        if node.leader.running:
            await node.leader.stopService()


@pytest_twisted.ensureDeferred
async def test_one_node_of_two_leads_and_the_other_takes_over_when_it_stops(
    make_node: Callable[[int], Node], lock_key: int
) -> None:
    first, second = make_node(lock_key), make_node(lock_key)
    await first.start()
    await second.start()
    assert (first.leader.is_leader, second.leader.is_leader) == (True, False)
    assert first.running() == [True, True] and second.running() == [False, False]

    await first.poll()  # the holder finds its lock in pg_locks: it stays the leader
    await second.poll()
    assert first.leader.is_leader and first.running() == [True, True]
    assert second.running() == [False, False]
    assert [duty.starts for duty in first.duties] == [1, 1]

    await first.leader.stopService()
    assert first.running() == [False, False]
    await second.poll()
    assert second.leader.is_leader and second.running() == [True, True]
    assert first.changes == [True] and second.changes == [True]


def terminate_leader_sessions() -> int:
    """Kill every leader-lock session on the server, as a lost network link would."""
    admin = psycopg2.connect("host=127.0.0.1 port=5432 user=postgres dbname=postgres")
    admin.autocommit = True
    try:
        with admin.cursor() as cursor:
            cursor.execute(
                "SELECT count(pg_terminate_backend(pid)) FROM pg_stat_activity"
                " WHERE application_name = 'otedama-leader' AND pid <> pg_backend_pid()"
                " AND datname LIKE 'otedama_scale_%%'"
            )
            row = cursor.fetchone()
            return int(row[0]) if row else 0
    finally:
        admin.close()


@pytest_twisted.ensureDeferred
async def test_a_leader_whose_lock_connection_dies_steps_down_and_a_node_takes_over(
    make_node: Callable[[int], Node], lock_key: int
) -> None:
    first, second = make_node(lock_key), make_node(lock_key)
    await first.start()
    await second.start()
    assert first.leader.is_leader

    assert terminate_leader_sessions() >= 2
    await first.poll()  # its connection is gone: it steps down
    assert not first.leader.is_leader and first.running() == [False, False]
    await second.poll()  # its connection is gone too: it notices
    await second.poll()  # reconnects; the lock is free
    await first.poll()  # reconnects; the lock is taken
    assert second.leader.is_leader and second.running() == [True, True]
    assert not first.leader.is_leader and first.running() == [False, False]
    assert first.changes == [True, False] and first.leader.terms == 1
    assert [duty.stops for duty in first.duties] == [1, 1]


@pytest_twisted.ensureDeferred
async def test_the_single_node_on_sqlite_always_leads(tmp_path: Path) -> None:
    from twisted.internet import reactor

    leader = LeaderService(reactor, f"sqlite:///{tmp_path / 'ledger.sqlite'}", clock=task.Clock())
    duty = Duty("payouts")
    duty.setServiceParent(leader)
    leader.startService()
    assert leader.is_leader and duty.running
    await leader.stopService()
    assert not duty.running and duty.stops == 1


@pytest_twisted.ensureDeferred
async def test_a_duty_added_while_not_leading_waits_for_the_lock(
    make_node: Callable[[int], Node], lock_key: int
) -> None:
    first, second = make_node(lock_key), make_node(lock_key)
    await first.start()
    await second.start()
    late: Any = Duty("late")
    late.setServiceParent(second.leader)
    assert not late.running
    late_on_leader: Any = Duty("late")
    late_on_leader.setServiceParent(first.leader)
    assert late_on_leader.running

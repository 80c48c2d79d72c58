"""The node's guard on the federation: the gossip listener refuses blacklisted, banned and
over-cap hosts at accept (before a link exists, TLS or not), no blocked host is dialled,
and the DHT drops a blocked host's datagrams unread. Real sockets on 127.0.0.1."""

from __future__ import annotations

from collections.abc import Sequence
from pathlib import Path
from typing import Any

import pytest
import pytest_twisted
from twisted.internet.task import Clock

from otedama.federation.dht import as_deferred
from otedama.federation.records import ContactRecord
from otedama.ops.bans import DdosSettings
from otedama.ops.firewall import Firewall
from otedama.ops.guard import Guard, guarded

from .test_dht import Member
from .test_dht import wait_until as dht_wait_until
from .test_gossip import NETWORK, SCRIPT, Node, wait_until
from .test_gossip_tls import node_tls

LOOPBACK = ["127.0.0.1", "::1"]


def make_guard(clock: Any, *, blacklist: Sequence[str] = (), **ddos: Any) -> Guard:
    return Guard(Firewall.from_lists([], blacklist), DdosSettings(**ddos), clock)


def behind(guard: Guard) -> Any:
    """``wrap_listener`` as ``tap.py`` passes it to the federation service."""
    return lambda factory: guarded(guard, factory, "federation", lines=False)


@pytest.mark.parametrize("tls", [False, True], ids=["plain", "tls"])
@pytest_twisted.ensureDeferred
async def test_a_blacklisted_dialer_is_refused_at_accept(tls: bool, tmp_path: Path) -> None:
    from twisted.internet import reactor

    guard = make_guard(reactor, blacklist=LOOPBACK)
    listener = Node(
        reactor,
        "listener",
        tls=node_tls(tmp_path, "listener") if tls else None,
        wrap_listener=behind(guard),
    )
    dialer = Node(reactor, "dialer", tls=node_tls(tmp_path, "dialer") if tls else None)
    try:
        assert dialer.gossip.connect(listener.record())
        await wait_until(reactor, lambda: guard.refused_total["federation: blacklisted"] >= 1)
        assert listener.gossip.links == set() and not dialer.linked(listener)
        assert listener.gossip.stats.refused_connections == 0  # gossip never saw it
        assert listener.gossip.stats.plaintext_refused == 0
    finally:
        await dialer.stop()
        await listener.stop()


@pytest_twisted.ensureDeferred
async def test_a_banned_host_is_refused_and_a_ban_drops_its_open_link() -> None:
    from twisted.internet import reactor

    guard = make_guard(reactor)
    listener = Node(reactor, "listener", wrap_listener=behind(guard))
    dialer = Node(reactor, "dialer")
    try:
        assert dialer.gossip.connect(listener.record())
        await wait_until(reactor, lambda: listener.linked(dialer) and dialer.linked(listener))
        await guard.ban("127.0.0.1", 3600, "test", "operator")
        await wait_until(reactor, lambda: not listener.linked(dialer))
        await wait_until(reactor, lambda: guard.refused_total["federation: banned"] >= 1)
        assert not listener.linked(dialer)  # the dialer's retries meet the ban at accept
    finally:
        await dialer.stop()
        await listener.stop()


@pytest_twisted.ensureDeferred
async def test_open_gossip_connections_per_ip_are_capped() -> None:
    from twisted.internet import reactor

    guard = make_guard(reactor, max_connections_per_ip=1)
    listener = Node(reactor, "listener", wrap_listener=behind(guard))
    first, second = Node(reactor, "first"), Node(reactor, "second")
    try:
        assert first.gossip.connect(listener.record())
        await wait_until(reactor, lambda: listener.linked(first))
        assert second.gossip.connect(listener.record())
        await wait_until(
            reactor, lambda: guard.refused_total["federation: connections per IP"] >= 1
        )
        assert not listener.linked(second) and listener.linked(first)
    finally:
        for node in (first, second, listener):
            await node.stop()


def record_at(node: Node, host: str, now: float) -> ContactRecord:
    return ContactRecord.create(
        node.identity,
        host=host,
        port=node.port.getHost().port,
        network=NETWORK,
        payout_script=SCRIPT,
        now=now,
    )


@pytest_twisted.ensureDeferred
async def test_a_blacklisted_host_is_not_dialled_by_address_nor_by_name() -> None:
    from twisted.internet import reactor

    guard = make_guard(reactor, blacklist=LOOPBACK)
    dialer = Node(reactor, "dialer", policy=guard)
    target = Node(reactor, "target")
    try:
        assert not dialer.gossip.connect(record_at(target, "127.0.0.1", reactor.seconds()))
        assert dialer.gossip.services == {} and target.gossip.links == set()
        assert dialer.gossip.stats.dials_refused == 1
        assert guard.refused_total["federation-dial: blacklisted"] == 1
        # a host name is dialled, but the connection to the address it resolved to is
        # closed before a link exists on this side
        assert dialer.gossip.connect(record_at(target, "localhost", reactor.seconds()))
        await wait_until(reactor, lambda: dialer.gossip.stats.dials_refused >= 2)
        assert dialer.gossip.links == set() and not target.linked(dialer)
        assert guard.refused_total["federation-dial: blacklisted"] >= 2
    finally:
        await dialer.stop()
        await target.stop()


@pytest_twisted.ensureDeferred
async def test_the_dht_drops_datagrams_from_a_blacklisted_host_unread() -> None:
    from twisted.internet import reactor

    guard = make_guard(reactor, blacklist=["127.0.0.1"])
    target = Member(reactor, [], "target", policy=guard)
    await target.dht.listen(0)
    peer = Member(reactor, [f"127.0.0.1:{target.dht.port}"], "peer")
    try:
        await peer.dht.listen(0)
        answered = await as_deferred(peer.dht.bootstrap_once())
        assert answered == 0 and peer.dht.stats.bootstrap_failures == 1
        assert target.dht.refused_datagrams >= 1 and target.dht.bad_datagrams == 0
        assert guard.refused_total["federation-dht: blacklisted"] >= 1
        assert target.dht.members == [] and len(target.dht.storage) == 0
    finally:
        target.dht.stop()
        peer.dht.stop()


@pytest_twisted.ensureDeferred
async def test_a_blacklisted_bootstrap_peer_is_not_asked() -> None:
    from twisted.internet import reactor

    seed = Member(reactor, [], "seed")
    await seed.dht.listen(0)
    guard = make_guard(reactor, blacklist=["127.0.0.1"])
    joiner = Member(reactor, [f"127.0.0.1:{seed.dht.port}"], "joiner", policy=guard)
    try:
        await joiner.dht.listen(0)
        assert await as_deferred(joiner.dht.bootstrap_once()) == 0
        assert joiner.dht.stats.bootstrap_failures == 1
        assert guard.refused_total["federation-bootstrap: blacklisted"] == 1
        assert seed.dht.members == []  # nothing reached the seed
    finally:
        seed.dht.stop()
        joiner.dht.stop()


@pytest_twisted.ensureDeferred
async def test_without_a_blacklist_the_guarded_dht_still_joins() -> None:
    from twisted.internet import reactor

    seed = Member(reactor, [], "seed", policy=make_guard(reactor, blacklist=["192.0.2.0/24"]))
    await seed.dht.listen(0)
    joiner = Member(reactor, [f"127.0.0.1:{seed.dht.port}"], "joiner", policy=make_guard(reactor))
    try:
        await joiner.dht.listen(0)
        seed.dht.start_loops()
        joiner.dht.start_loops()
        await dht_wait_until(reactor, lambda: seed.knows([joiner]) and joiner.knows([seed]))
        assert seed.dht.refused_datagrams == 0
    finally:
        seed.dht.stop()
        joiner.dht.stop()


def test_blocked_spends_no_connection_tokens_and_the_whitelist_wins() -> None:
    clock = Clock()
    guard = Guard(
        Firewall.from_lists(["10.0.0.5"], ["10.0.0.0/8", "2001:db8::/32"]),
        DdosSettings(connection_burst=1),
        clock,
    )
    assert guard.blocked("10.1.2.3") == "blacklisted"
    assert guard.blocked("2001:db8::1") == "blacklisted"
    assert guard.blocked("10.0.0.5") is None  # whitelisted
    assert guard.blocked("192.0.2.1") is None
    for _ in range(5):
        assert guard.blocked("198.51.100.1") is None
    assert guard.refusal("198.51.100.1") is None  # its one token is still there
    guard.ban("192.0.2.1", 60, "test", "operator")
    assert guard.blocked("192.0.2.1") == "banned"
    assert guard.blocked("::ffff:192.0.2.1") == "banned"
    clock.advance(61)
    assert guard.blocked("192.0.2.1") is None

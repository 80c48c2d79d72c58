"""Gossip between real nodes on 127.0.0.1 TCP: items spread once, by push and by inventory."""

from __future__ import annotations

import random
from collections.abc import Callable
from typing import Any

import pytest_twisted
from twisted.internet.endpoints import TCP4ClientEndpoint
from twisted.internet.protocol import Factory
from twisted.internet.task import deferLater

from otedama.federation.gossip import Gossip, GossipSettings, _Factory, weighted_sample
from otedama.federation.identity import Identity
from otedama.federation.peer import LinkSettings
from otedama.federation.records import FEATURE_TLS, ContactRecord, RecordBook
from otedama.federation.security import HostPolicy, LinkTLS

NETWORK = "regtest"
SCRIPT = bytes.fromhex("0014") + b"\x33" * 20


class MemoryReputation:
    """A trivial ReputationSink for tests: every key starts at 1.0, a penalty costs 0.1."""

    def __init__(self) -> None:
        self.scores: dict[bytes, float] = {}
        self.penalties: list[tuple[bytes, str]] = []
        self.rewards: list[tuple[bytes, str]] = []

    def penalise(self, peer_key: bytes, reason: str) -> None:
        self.penalties.append((peer_key, reason))
        self.scores[peer_key] = max(0.0, self.score(peer_key) - 0.1)

    def reward(self, peer_key: bytes, reason: str) -> None:
        self.rewards.append((peer_key, reason))

    def score(self, peer_key: bytes) -> float:
        return self.scores.get(peer_key, 1.0)


class RecordingHandler:
    """An ItemHandler that records what it is given and answers ``valid``."""

    def __init__(self) -> None:
        self.shares: list[tuple[bytes, dict[str, Any]]] = []
        self.blocks: list[tuple[bytes, dict[str, Any]]] = []
        self.valid = True

    def on_fed_share(self, peer_key: bytes, payload: dict[str, Any]) -> bool:
        self.shares.append((peer_key, payload))
        return self.valid

    def on_block(self, peer_key: bytes, payload: dict[str, Any]) -> bool:
        self.blocks.append((peer_key, payload))
        return self.valid


class Node:
    """A gossip node listening on 127.0.0.1."""

    def __init__(
        self,
        reactor: Any,
        label: str,
        *,
        share_records: bool = False,
        tls: LinkTLS | None = None,
        policy: HostPolicy | None = None,
        wrap_listener: Callable[[Any], Any] | None = None,
        **settings: Any,
    ) -> None:
        """``share_records``: send contact records to peers (else the links stay as made);
        ``tls``: TLS on its links (its record announces it); ``policy`` and
        ``wrap_listener``: the node's guard, as ``FederationService`` takes them."""
        link = {
            k: settings.pop(k) for k in list(settings) if k in LinkSettings.__dataclass_fields__
        }
        self.identity = Identity.generate(label)
        self.reputation = MemoryReputation()
        self.handler = RecordingHandler()
        self.book = RecordBook(NETWORK, self.identity.node_id)
        self.reactor = reactor
        self.gossip = Gossip(
            self.identity,
            GossipSettings(LinkSettings(NETWORK, label=label, **link), **settings),
            self.reputation,
            self.handler,
            reactor,
            book=self.book if share_records else None,
            own_record=(lambda now: self.record()) if share_records else None,
            rng=random.Random(7),
            tls=tls,
            policy=policy,
        )
        self.tls = tls
        factory = self.gossip.factory()
        if wrap_listener is not None:
            factory = wrap_listener(factory)
        self.port = reactor.listenTCP(0, factory, interface="127.0.0.1")
        self.gossip.settings = LinkSettings(
            NETWORK, label=label, listen_port=self.port.getHost().port, **link
        )

    @property
    def key(self) -> bytes:
        return self.identity.public_key

    def record(self) -> ContactRecord:
        return ContactRecord.create(
            self.identity,
            host="127.0.0.1",
            port=self.port.getHost().port,
            network=NETWORK,
            payout_script=SCRIPT,
            now=self.reactor.seconds(),
            label=self.identity.label,
            features=(FEATURE_TLS,) if self.tls is not None else (),
        )

    def linked(self, *others: Node) -> bool:
        return all(o.key in self.gossip.ready for o in others)

    async def stop(self) -> None:
        self.gossip.stop()
        await self.port.stopListening()
        await wait_until(self.reactor, lambda: not self.gossip.links)


async def wait_until(reactor: Any, condition: Callable[[], bool], limit: float = 20.0) -> None:
    """Poll ``condition``; fail (not hang) if it is still false after ``limit`` seconds."""
    waited = 0.0
    while not condition():
        assert waited < limit, "condition not reached in time"
        await deferLater(reactor, 0.02, lambda: None)
        waited += 0.02


async def linked_nodes(
    reactor: Any,
    count: int,
    edges: list[tuple[int, int]],
    *,
    share_records: bool = False,
    **settings: Any,
) -> list[Node]:
    """Nodes linked along ``edges`` only (unless ``share_records`` lets them find more)."""
    nodes = [
        Node(reactor, f"node{i}", share_records=share_records, **settings) for i in range(count)
    ]
    for a, b in edges:
        assert nodes[a].gossip.connect(nodes[b].record())
    for a, b in edges:
        await wait_until(
            reactor, lambda a=a, b=b: nodes[a].linked(nodes[b]) and nodes[b].linked(nodes[a])
        )
    return nodes


@pytest_twisted.ensureDeferred
async def test_two_nodes_exchange_an_item_once() -> None:
    from twisted.internet import reactor

    a, b = await linked_nodes(reactor, 2, [(1, 0)])
    try:
        digest = a.gossip.publish("fed-share", {"work": b"\x01" * 80, "difficulty": 7})
        await wait_until(reactor, lambda: len(b.handler.shares) == 1)
        assert b.handler.shares == [(a.key, {"work": b"\x01" * 80, "difficulty": 7})]
        assert digest in b.gossip.seen
        a.gossip.publish("fed-share", {"work": b"\x01" * 80, "difficulty": 7})  # again
        await wait_until(reactor, lambda: b.gossip.stats.items_duplicate == 1)
        assert len(b.handler.shares) == 1
        assert b.reputation.rewards == [(a.key, "valid-fed-share")]
        # a block travels the same way, to the block handler
        b.gossip.publish("block", {"hash": b"\x02" * 32})
        await wait_until(reactor, lambda: len(a.handler.blocks) == 1)
        assert a.handler.blocks == [(b.key, {"hash": b"\x02" * 32})]
        peers = {info.public_key: info for info in a.gossip.peers()}
        assert peers[b.key].connected and peers[b.key].label == "node1"
        assert peers[b.key].address == f"127.0.0.1:{b.port.getHost().port}"
    finally:
        await a.stop()
        await b.stop()


@pytest_twisted.ensureDeferred
async def test_three_linked_nodes_each_handle_an_item_exactly_once() -> None:
    from twisted.internet import reactor

    nodes = await linked_nodes(reactor, 3, [(1, 0), (2, 0), (2, 1)])
    a = nodes[0]
    try:
        a.gossip.publish("fed-share", {"n": 1})
        # A pushes to B and C; each relays to its peers but the one it came from, so B and
        # C each get a second copy from the other: 2 first arrivals and 2 duplicates.
        await wait_until(
            reactor,
            lambda: (
                sum(n.gossip.stats.items_received + n.gossip.stats.items_duplicate for n in nodes)
                == 4
            ),
        )
        assert [len(n.handler.shares) for n in nodes] == [0, 1, 1]
        assert [n.gossip.stats.items_duplicate for n in nodes] == [0, 1, 1]
    finally:
        for node in nodes:
            await node.stop()


@pytest_twisted.ensureDeferred
async def test_without_push_an_item_travels_by_inventory_and_getdata_along_a_chain() -> None:
    from twisted.internet import reactor

    nodes = await linked_nodes(reactor, 3, [(1, 0), (2, 1)], push_fanout=0)
    a, b, c = nodes
    try:
        a.gossip.publish("fed-share", {"chain": True})
        await wait_until(reactor, lambda: len(c.handler.shares) == 1)
        assert c.handler.shares == [(b.key, {"chain": True})]
        assert len(b.handler.shares) == 1
        assert a.gossip.stats.items_duplicate == 0
    finally:
        for node in nodes:
            await node.stop()


@pytest_twisted.ensureDeferred
async def test_an_invalid_item_costs_reputation_and_is_not_relayed() -> None:
    from twisted.internet import reactor

    nodes = await linked_nodes(reactor, 3, [(1, 0), (2, 1)])
    a, b, c = nodes
    b.handler.valid = False
    try:
        a.gossip.publish("fed-share", {"bad": 1})
        await wait_until(reactor, lambda: len(b.handler.shares) == 1)
        assert b.reputation.penalties == [(a.key, "invalid-fed-share")]
        assert b.gossip.stats.items_invalid == 1
        # B relays valid items to C, so a later valid item shows the link works
        b.handler.valid = True
        a.gossip.publish("fed-share", {"good": 1})
        await wait_until(reactor, lambda: len(c.handler.shares) == 1)
        assert c.handler.shares == [(b.key, {"good": 1})]
    finally:
        for node in nodes:
            await node.stop()


@pytest_twisted.ensureDeferred
async def test_peers_below_the_threshold_are_neither_sent_to_nor_believed() -> None:
    from twisted.internet import reactor

    nodes = await linked_nodes(reactor, 3, [(1, 0), (2, 0)], reputation_threshold=0.5)
    a, b, c = nodes
    try:
        a.reputation.scores[b.key] = 0.2  # A does not send to B
        c.reputation.scores[a.key] = 0.2  # C does not believe A
        a.gossip.publish("fed-share", {"x": 1})
        await wait_until(reactor, lambda: c.gossip.stats.items_ignored == 1)
        assert c.handler.shares == []
        assert b.gossip.stats.items_received == 0 and b.gossip.stats.items_ignored == 0
        # B trusts A and sends to it, but A does not believe B
        b.gossip.publish("fed-share", {"y": 2})
        await wait_until(reactor, lambda: a.gossip.stats.items_ignored == 1)
        assert a.handler.shares == []
    finally:
        for node in nodes:
            await node.stop()


def dial(reactor: Any, node: Node, port: int, expected_key: bytes | None) -> None:
    """Open one raw gossip link from ``node`` to ``port``, outside any ClientService."""
    endpoint = TCP4ClientEndpoint(reactor, "127.0.0.1", port)
    endpoint.connect(_Factory(node.gossip, expected_key))


@pytest_twisted.ensureDeferred
async def test_a_link_to_oneself_or_a_second_link_to_a_linked_key_is_dropped() -> None:
    from twisted.internet import reactor

    a, b = await linked_nodes(reactor, 2, [(1, 0)])
    other = Node(reactor, "other")
    try:
        assert not a.gossip.connect(a.record())  # oneself: not even dialled
        assert not b.gossip.connect(a.record())  # already linked: not dialled again
        first = a.gossip.ready[b.key]
        dial(reactor, b, a.port.getHost().port, a.key)  # a second link B -> A
        dial(reactor, a, a.port.getHost().port, None)  # A -> A
        await wait_until(reactor, lambda: a.gossip.stats.closes == {"self": 2, "duplicate": 1})
        await wait_until(reactor, lambda: len(a.gossip.links) == 1 and len(b.gossip.links) == 1)
        assert b.gossip.stats.closes == {"duplicate": 1}
        assert a.gossip.ready == {b.key: first}
        # B dials a record whose key is not the one answering at its address
        stranger = Identity.generate()
        lying = ContactRecord.create(
            stranger,
            host="127.0.0.1",
            port=other.port.getHost().port,
            network=NETWORK,
            payout_script=SCRIPT,
            now=reactor.seconds(),
        )
        assert b.gossip.connect(lying)
        await wait_until(reactor, lambda: stranger.public_key not in b.gossip.services)
        assert not b.linked(other)
        assert a.gossip.stats.drops == {} and b.gossip.stats.drops == {}
        assert a.reputation.penalties == [] and b.reputation.penalties == []
    finally:
        for node in (a, b, other):
            await node.stop()


@pytest_twisted.ensureDeferred
async def test_peer_lists_lead_to_new_links() -> None:
    from twisted.internet import reactor

    nodes = await linked_nodes(reactor, 3, [(1, 0)], share_records=True)
    a, b, c = nodes
    try:
        a.book.offer(b.record().encode(), reactor.seconds())
        assert c.gossip.connect(a.record())
        # A tells C about B (and itself) when they link; C dials B
        await wait_until(reactor, lambda: c.linked(a, b) and b.linked(c))
        own = c.book.get(a.identity.node_id)
        assert own is not None and own.port == a.port.getHost().port
    finally:
        for node in nodes:
            await node.stop()


def test_weighted_sample_prefers_heavier_peers_and_never_repeats() -> None:
    rng = random.Random(1)
    items: list[Any] = ["light", "heavy", "mid"]
    counts = {name: 0 for name in items}
    for _ in range(3000):
        (pick,) = weighted_sample(items, [0.1, 0.9, 0.5], 1, rng)
        counts[pick] += 1
        pair = weighted_sample(items, [0.1, 0.9, 0.5], 2, rng)
        assert len(set(pair)) == 2
    assert counts["heavy"] > counts["mid"] > counts["light"]
    assert (
        weighted_sample(items, [1, 1, 1], 5, rng) != []
        and len(weighted_sample(items, [1, 1, 1], 5, rng)) == 3
    )


@pytest_twisted.ensureDeferred
async def test_a_record_nobody_answers_for_is_given_up_until_a_newer_one_comes() -> None:
    from twisted.internet import reactor

    a = Node(reactor, "a", max_dial_attempts=1)
    closed = reactor.listenTCP(0, Factory(), interface="127.0.0.1")
    port = closed.getHost().port
    await closed.stopListening()  # nothing listens there now
    ghost = Identity.generate("ghost")

    def record(now: float) -> ContactRecord:
        return ContactRecord.create(
            ghost, host="127.0.0.1", port=port, network=NETWORK, payout_script=SCRIPT, now=now
        )

    try:
        old = record(reactor.seconds() - 10)
        assert a.gossip.connect(old)
        await wait_until(reactor, lambda: ghost.public_key not in a.gossip.services)
        assert a.gossip.gave_up[ghost.public_key] == old.time
        assert not a.gossip.connect(old)  # not again for the same record
        assert a.gossip.connect(record(reactor.seconds()))  # a newer one is tried
    finally:
        await a.stop()


@pytest_twisted.ensureDeferred
async def test_inbound_links_beyond_max_peers_are_refused() -> None:
    from twisted.internet import reactor

    a, b = await linked_nodes(reactor, 2, [(1, 0)], max_peers=1)
    c = Node(reactor, "c")
    try:
        assert a.gossip.slots_used() == 1
        assert c.gossip.connect(a.record())
        await wait_until(reactor, lambda: a.gossip.stats.refused_connections >= 1)
        assert not c.linked(a) and a.gossip.ready.keys() == {b.key}
    finally:
        for node in (a, b, c):
            await node.stop()


@pytest_twisted.ensureDeferred
async def test_two_full_nodes_dialling_each_other_still_link() -> None:
    """Each node's only slot is its dial to the other: the other's dial is that peer."""
    from twisted.internet import reactor

    a = Node(reactor, "a", max_peers=1)
    b = Node(reactor, "b", max_peers=1)
    try:
        assert a.gossip.connect(b.record()) and b.gossip.connect(a.record())
        await wait_until(reactor, lambda: a.linked(b) and b.linked(a), limit=10)
        await wait_until(reactor, lambda: len(a.gossip.links) == len(b.gossip.links) == 1)
        assert a.gossip.slots_used() == b.gossip.slots_used() == 1
    finally:
        for node in (a, b):
            await node.stop()


@pytest_twisted.ensureDeferred
async def test_a_stranger_is_refused_at_its_hello_when_only_a_dial_let_it_in() -> None:
    from twisted.internet import reactor

    a, b = await linked_nodes(reactor, 2, [(1, 0)], max_peers=2)
    c = Node(reactor, "c")
    closed = reactor.listenTCP(0, Factory(), interface="127.0.0.1")
    port = closed.getHost().port
    await closed.stopListening()
    ghost = Identity.generate("ghost")
    try:
        # A: one slot for B's link, one for a dial to a ghost that never answers
        ghost_record = ContactRecord.create(
            ghost,
            host="127.0.0.1",
            port=port,
            network=NETWORK,
            payout_script=SCRIPT,
            now=reactor.seconds(),
        )
        assert a.gossip.connect(ghost_record) and a.gossip.slots_used() == 2
        dial(reactor, c, a.port.getHost().port, a.key)
        await wait_until(reactor, lambda: a.gossip.stats.closes.get("full") == 1)
        assert not c.linked(a) and a.gossip.ready.keys() == {b.key}
    finally:
        for node in (a, b, c):
            await node.stop()


@pytest_twisted.ensureDeferred
async def test_a_dial_that_a_full_peer_keeps_refusing_is_given_up() -> None:
    """A refused dial must not hold a slot forever (ClientService retries it forever)."""
    from twisted.internet import reactor

    a, b = await linked_nodes(reactor, 2, [(1, 0)], max_peers=1)
    c = Node(reactor, "c", max_dial_attempts=2)
    try:
        record = a.record()
        assert c.gossip.connect(record)
        await wait_until(reactor, lambda: a.key not in c.gossip.services, limit=15)
        assert c.gossip.gave_up[a.key] == record.time
        assert c.gossip.slots_used() == 0 and not c.linked(a)
    finally:
        for node in (a, b, c):
            await node.stop()

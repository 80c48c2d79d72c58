"""A hostile peer on real TCP: garbage, oversized frames, bad signatures, replays and floods
get it dropped (and, repeated, banned) while an honest peer keeps working."""

from __future__ import annotations

import os
from typing import Any

import pytest_twisted
from twisted.internet.defer import Deferred
from twisted.internet.endpoints import TCP4ClientEndpoint
from twisted.internet.protocol import Factory, Protocol
from twisted.python.failure import Failure

from otedama.federation.identity import Identity
from otedama.federation.wire import Body, Codec, Envelope, Hello, Ping, Pong

from .test_gossip import NETWORK, Node, linked_nodes, wait_until


class RawPeer(Protocol):
    """A peer speaking the wire format by hand, so it can also break it."""

    def __init__(self, identity: Identity, clock: Any) -> None:
        self.identity = identity
        self.clock = clock
        self.codec = Codec(identity, first_seq=Codec.fresh_seq(clock.seconds()))
        self.received: list[Envelope] = []
        self.closed: Deferred[None] = Deferred()

    def dataReceived(self, data: bytes) -> None:
        self.received += [m for m in self.codec.feed(data) if isinstance(m, Envelope)]

    def connectionLost(self, reason: Failure | None = None) -> None:
        self.closed.callback(None)

    def send(self, body: Body) -> bytes:
        frame = self.codec.encode(body, self.clock.seconds())
        self.write(frame)
        return frame

    def write(self, data: bytes) -> None:
        assert self.transport is not None
        self.transport.write(data)


async def raw_peer(reactor: Any, node: Node, identity: Identity | None = None) -> RawPeer:
    identity = identity or Identity.generate("hostile")
    endpoint = TCP4ClientEndpoint(reactor, "127.0.0.1", node.port.getHost().port)
    peer: RawPeer = await endpoint.connect(Factory.forProtocol(lambda: RawPeer(identity, reactor)))
    return peer


async def handshake(reactor: Any, node: Node, peer: RawPeer) -> None:
    peer.send(Hello(NETWORK, 1, os.urandom(16), 0, "hostile"))
    await wait_until(reactor, lambda: any(isinstance(m.body, Hello) for m in peer.received))
    hello = next(m.body for m in peer.received if isinstance(m.body, Hello))
    assert isinstance(hello, Hello)
    peer.send(Pong(hello.nonce))
    await wait_until(reactor, lambda: peer.identity.public_key in node.gossip.ready)


def bad_signature(frame: bytes) -> bytes:
    return frame[:-1] + bytes([frame[-1] ^ 1])  # the signature is the last field


async def honest_link_still_works(reactor: Any, a: Node, b: Node) -> None:
    a.gossip.publish("fed-share", {"from": "a", "n": len(b.handler.shares)})
    b.gossip.publish("fed-share", {"from": "b", "n": len(a.handler.shares)})
    await wait_until(reactor, lambda: len(a.handler.shares) == 1 and len(b.handler.shares) == 1)
    assert a.linked(b) and b.linked(a)


@pytest_twisted.ensureDeferred
async def test_garbage_before_the_handshake_drops_the_connection_at_once() -> None:
    from twisted.internet import reactor

    a, b = await linked_nodes(reactor, 2, [(1, 0)])
    try:
        peer = await raw_peer(reactor, a)
        peer.write(b"\x00\x00\x00\x05\xc1junk" + b"\x00" * 100)
        await peer.closed
        assert a.gossip.stats.drops == {"malformed": 1}
        await honest_link_still_works(reactor, a, b)
    finally:
        await a.stop()
        await b.stop()


@pytest_twisted.ensureDeferred
async def test_an_oversized_frame_drops_the_link_and_costs_reputation() -> None:
    from twisted.internet import reactor

    a, b = await linked_nodes(reactor, 2, [(1, 0)])
    try:
        peer = await raw_peer(reactor, a)
        await handshake(reactor, a, peer)
        peer.write((10_000_000).to_bytes(4, "big") + b"x" * 1000)
        await peer.closed
        key = peer.identity.public_key
        assert a.gossip.stats.drops == {"oversized-frame": 1}
        assert a.reputation.penalties == [(key, "oversized-frame")]
        assert key not in a.gossip.ready
        await honest_link_still_works(reactor, a, b)
    finally:
        await a.stop()
        await b.stop()


@pytest_twisted.ensureDeferred
async def test_bad_signatures_cost_reputation_and_repeated_drop_the_link() -> None:
    from twisted.internet import reactor

    a, b = await linked_nodes(reactor, 2, [(1, 0)], max_offences=3)
    try:
        peer = await raw_peer(reactor, a)
        await handshake(reactor, a, peer)
        frame = peer.codec.encode(Ping(b"p"), reactor.seconds())
        peer.write(bad_signature(frame))
        await wait_until(reactor, lambda: a.gossip.stats.offences == {"bad-signature": 1})
        assert peer.identity.public_key in a.gossip.ready  # one is charged, not fatal
        peer.write(bad_signature(frame) * 2)
        await peer.closed
        key = peer.identity.public_key
        assert a.reputation.penalties == [(key, "bad-signature")] * 3
        assert a.gossip.stats.drops == {"bad-signature": 1}
        await honest_link_still_works(reactor, a, b)
    finally:
        await a.stop()
        await b.stop()


@pytest_twisted.ensureDeferred
async def test_replayed_frames_are_refused_and_repeated_drop_the_link() -> None:
    from twisted.internet import reactor

    a, b = await linked_nodes(reactor, 2, [(1, 0)], max_offences=3)
    try:
        peer = await raw_peer(reactor, a)
        await handshake(reactor, a, peer)
        frame = peer.send(Ping(b"once"))
        await wait_until(reactor, lambda: any(m.body == Pong(b"once") for m in peer.received))
        peer.write(frame * 3)
        await peer.closed
        assert a.gossip.stats.offences == {"replay": 3}
        assert sum(1 for m in peer.received if m.body == Pong(b"once")) == 1
        await honest_link_still_works(reactor, a, b)
    finally:
        await a.stop()
        await b.stop()


@pytest_twisted.ensureDeferred
async def test_a_flood_of_messages_drops_the_link() -> None:
    from twisted.internet import reactor

    a, b = await linked_nodes(reactor, 2, [(1, 0)], flood_burst=20.0, flood_rate=1.0)
    try:
        peer = await raw_peer(reactor, a)
        await handshake(reactor, a, peer)
        peer.write(
            b"".join(peer.codec.encode(Ping(b"%d" % i), reactor.seconds()) for i in range(100))
        )
        await peer.closed
        assert a.gossip.stats.drops == {"flood": 1}
        assert a.gossip.stats.offences["flood"] == 5
        await honest_link_still_works(reactor, a, b)
    finally:
        await a.stop()
        await b.stop()


@pytest_twisted.ensureDeferred
async def test_a_key_dropped_repeatedly_is_banned_for_a_while() -> None:
    from twisted.internet import reactor

    a, b = await linked_nodes(reactor, 2, [(1, 0)], strikes_to_ban=2, ban_time=600.0)
    hostile = Identity.generate("hostile")
    try:
        for _ in range(2):
            peer = await raw_peer(reactor, a, hostile)
            await handshake(reactor, a, peer)
            peer.write((10_000_000).to_bytes(4, "big"))
            await peer.closed
        assert a.gossip.banned(hostile.public_key)
        peer = await raw_peer(reactor, a, hostile)
        peer.send(Hello(NETWORK, 1, os.urandom(16), 0, "hostile"))
        await peer.closed
        assert a.gossip.stats.closes["banned"] == 1
        assert hostile.public_key not in a.gossip.ready
        await honest_link_still_works(reactor, a, b)
    finally:
        await a.stop()
        await b.stop()

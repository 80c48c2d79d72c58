"""One link on task.Clock and StringTransport: handshake, timeouts, output bound, close→abort."""

from __future__ import annotations

from typing import Any

from twisted.internet.address import IPv4Address
from twisted.internet.task import Clock
from twisted.internet.testing import StringTransport

from otedama.federation.gossip import Gossip, GossipSettings, ItemCache
from otedama.federation.identity import Identity
from otedama.federation.peer import LinkSettings, LinkState, PeerLink
from otedama.federation.wire import Codec, Envelope, Hello, Item, Ping, Pong

from .test_gossip import NETWORK, MemoryReputation, RecordingHandler

NOW = 1_800_000_000.0


class Transport(StringTransport):
    def __init__(self) -> None:
        super().__init__()
        self.aborted = False

    def abortConnection(self) -> None:
        self.aborted = True
        super().abortConnection()


def setup(**link: Any) -> tuple[Clock, Gossip, PeerLink, Transport]:
    clock = Clock()
    clock.advance(NOW)
    gossip = Gossip(
        Identity.generate("local"),
        GossipSettings(LinkSettings(NETWORK, **link)),
        MemoryReputation(),
        RecordingHandler(),
        clock,
    )
    link_ = PeerLink(gossip, "192.0.2.1")
    transport = Transport()
    link_.makeConnection(transport)
    return clock, gossip, link_, transport


def received(remote: Codec, transport: Transport) -> list[Envelope]:
    out = remote.feed(transport.value())
    transport.clear()
    return [m for m in out if isinstance(m, Envelope)]


def test_the_handshake_proves_the_key_then_the_link_is_ready() -> None:
    _clock, gossip, link, transport = setup()
    remote_id = Identity.generate("remote")
    remote = Codec(remote_id, first_seq=Codec.fresh_seq(NOW))
    (hello,) = received(remote, transport)
    assert isinstance(hello.body, Hello) and hello.sender == gossip.identity.public_key
    link.dataReceived(remote.encode(Hello(NETWORK, 1, b"r" * 16), NOW))
    (proof,) = received(remote, transport)
    assert proof.body == Pong(b"r" * 16)
    assert link.state is LinkState.PROVING and remote_id.public_key not in gossip.ready
    link.dataReceived(remote.encode(Pong(hello.body.nonce), NOW))
    assert link.state is LinkState.READY and gossip.ready == {remote_id.public_key: link}


def test_a_wrong_proof_closes_the_link() -> None:
    _clock, _gossip, link, transport = setup()
    remote = Codec(Identity.generate(), first_seq=1)
    link.dataReceived(remote.encode(Hello(NETWORK, 1, b"r" * 16), NOW))
    link.dataReceived(remote.encode(Pong(b"not your nonce"), NOW))
    assert transport.disconnecting and link.close_reason == "bad-proof"


def test_a_hello_for_another_network_is_refused() -> None:
    _clock, _gossip, link, _transport = setup()
    remote = Codec(Identity.generate(), first_seq=1)
    link.dataReceived(remote.encode(Hello("mainnet", 1, b"r" * 16), NOW))
    assert link.close_reason == "other-network"


def test_items_before_the_handshake_close_the_link() -> None:
    _clock, gossip, link, _transport = setup()
    remote = Codec(Identity.generate(), first_seq=1)
    link.dataReceived(remote.encode(Item.of("fed-share", {"a": 1}), NOW))
    assert link.close_reason == "no-hello"
    assert gossip.stats.drops == {"no-hello": 1}


def test_a_handshake_that_does_not_finish_in_time_is_dropped() -> None:
    clock, _gossip, link, transport = setup(handshake_timeout=10)
    clock.advance(9.9)
    assert not transport.disconnecting
    clock.advance(0.2)
    assert link.close_reason == "handshake-timeout"


def test_a_close_that_cannot_flush_becomes_an_abort_after_the_grace() -> None:
    clock, _gossip, link, transport = setup(close_grace=5)
    link.pauseProducing()
    link.close("test")
    assert transport.disconnecting and not transport.aborted
    assert transport.producer is None  # else Twisted would resume it instead of closing
    clock.advance(5)
    assert transport.aborted


def test_a_peer_that_does_not_read_is_dropped_when_its_output_piles_up() -> None:
    _clock, _gossip, link, transport = setup(max_pending_output=50_000)
    big = Item.of("fed-share", {"blob": b"x" * 20_000})
    link.pauseProducing()  # Twisted's write buffer for this socket is full
    link.send(big)
    link.send(big)
    assert not transport.aborted
    link.resumeProducing()  # it drained: the count starts again
    link.pauseProducing()
    link.send(big)
    link.send(big)
    assert not transport.aborted
    link.send(big)
    assert transport.aborted and link.close_reason == "slow-reader"


def test_idle_links_are_pinged_then_dropped() -> None:
    clock, gossip, link, transport = setup()
    remote = Codec(Identity.generate(), first_seq=Codec.fresh_seq(NOW))
    (hello,) = received(remote, transport)
    link.dataReceived(remote.encode(Hello(NETWORK, 1, b"r" * 16), NOW))
    assert isinstance(hello.body, Hello)
    link.dataReceived(remote.encode(Pong(hello.body.nonce), NOW))
    received(remote, transport)
    clock.advance(30)
    gossip.tick()
    assert [type(m.body) for m in received(remote, transport)] == [Ping]
    clock.advance(61)
    gossip.tick()
    assert link.close_reason == "idle"


def test_the_item_cache_is_bounded_in_count_and_bytes() -> None:
    cache = ItemCache(max_items=3, max_bytes=1000)
    items = [Item.of("fed-share", {"n": i, "pad": b"x" * 300}) for i in range(5)]
    for item in items:
        cache.put(item.hash, item)
    assert len(cache) <= 3 and cache.bytes <= 1000
    assert cache.get(items[-1].hash) == items[-1]
    assert cache.get(items[0].hash) is None
    huge = Item.of("block", {"pad": b"y" * 2000})
    cache.put(huge.hash, huge)
    assert cache.get(huge.hash) is None and cache.bytes <= 1000


def test_link_events_strangers_cause_are_logged_as_one_summary_per_tick() -> None:
    from twisted.logger import Logger, formatEvent

    _clock, gossip, _link, _transport = setup()
    events: list[dict[str, Any]] = []
    gossip.log = Logger(observer=events.append)
    factory = gossip.factory()
    for _ in range(50):
        link = factory.buildProtocol(IPv4Address("TCP", "198.51.100.7", 40000))
        if link is None:  # banned
            continue
        link.makeConnection(Transport())
        link.dataReceived(b"\x00\x00\x00\x02\xc1\xc1")
        link.connectionLost()
    assert events == []
    assert gossip.stats.refused_connections == 47
    gossip.tick()
    assert [formatEvent(e) for e in events] == [
        "federation links: 1 banned, 3 closed (malformed); 0 ready"
    ]
    gossip.tick()
    assert len(events) == 1


def test_a_failing_item_handler_neither_drops_nor_charges_the_peer() -> None:
    from twisted.logger import Logger

    _clock, gossip, link, transport = setup()
    remote_id = Identity.generate("remote")
    remote = Codec(remote_id, first_seq=Codec.fresh_seq(NOW))
    (hello,) = received(remote, transport)
    assert isinstance(hello.body, Hello)
    link.dataReceived(remote.encode(Hello(NETWORK, 1, b"r" * 16), NOW))
    link.dataReceived(remote.encode(Pong(hello.body.nonce), NOW))

    def broken(peer_key: bytes, payload: dict[str, Any]) -> bool:
        raise RuntimeError("verifier bug")

    gossip.handler.on_fed_share = broken  # type: ignore[method-assign]
    failures: list[dict[str, Any]] = []
    gossip.log = Logger(observer=failures.append)
    link.dataReceived(remote.encode(Item.of("fed-share", {"a": 1}), NOW))
    assert gossip.stats.handler_errors == 1 and len(failures) == 1
    assert link.state is LinkState.READY and not transport.disconnecting
    assert gossip.reputation.penalties == []  # type: ignore[attr-defined]

"""A fed-share is credited only to the payout script of its finder's own signed contact
record (issue 14, items 4 and 6: never believe a peer's word about money).

A share's envelope is signed by the last relay and its coinbase commits to the finder's
node id, not to its payout script: without the finder's record, a relay could rewrite the
script and have the work credited to itself. So a share (or block) whose finder's record
is unknown is refused as ``finder-record-unknown``, not charged, not marked seen, and the
record is asked of the DHT (bounded, rate limited); the share waits (bounded) for it."""

from __future__ import annotations

from typing import Any

import pytest_twisted
from twisted.internet.task import Clock

from otedama.chain.params import COIN
from otedama.federation.dht import as_deferred
from otedama.federation.gossip import Gossip, GossipSettings
from otedama.federation.identity import Identity
from otedama.federation.node import HeldShares, RecordRequests
from otedama.federation.peer import LinkSettings, LinkState
from otedama.federation.shares import FedShare, share_work
from otedama.federation.wire import Codec, Hello, Item, Pong
from tests.federation.shares_support import EASY, NOW, TIP, make_share, script
from tests.federation.test_dht import Member
from tests.federation.test_gossip import NETWORK, MemoryReputation
from tests.federation.test_gossip_link import Transport, received
from tests.federation.test_node import PEER_SCRIPT, block_of, know, make_node, peer_share

RELAY_SCRIPT = script(66)


def rewritten(payload: dict[str, Any]) -> dict[str, Any]:
    """What a dishonest relay passes on: the finder's share, paying the relay."""
    return dict(payload, payout_script=RELAY_SCRIPT)


def asking(node: Any) -> list[bytes]:
    """The node ids whose records ``node`` asks the DHT for, in order."""
    asked: list[bytes] = []
    node.records.lookup = asked.append
    return asked


def test_a_relay_rewriting_an_unknown_finders_payout_script_is_refused_uncharged() -> None:
    node, _ = make_node()
    asked = asking(node)
    finder, relay, honest = (Identity.generate(n) for n in ("finder", "relay", "honest"))
    genuine = peer_share(finder)
    share_hash = FedShare.from_dict(genuine).share_hash

    assert node.on_fed_share(relay.public_key, rewritten(genuine)) is None
    assert node.stats.shares_rejected["finder-record-unknown"] == 1
    assert node.reputation.score(relay.public_key) == 0.5  # not misbehaviour: not charged
    assert len(node.window) == 0 and share_hash not in node.window
    assert node.window.script_weights(NOW) == {}
    assert asked == [finder.node_id]  # its record is asked of the DHT
    assert node.stats.shares_accepted == 0

    # The finder's record arrives: the held rewritten copy names another script.
    know(node, finder)
    assert node.stats.shares_rejected["held-payout-script-not-of-record"] == 1
    assert len(node.window) == 0
    assert node.reputation.score(relay.public_key) == 0.5

    # The genuine copy, arriving later, is not a duplicate: accepted, credited to the
    # record's script and never to the relay's.
    assert node.on_fed_share(honest.public_key, genuine) is True
    work = share_work(EASY)
    assert node.window.script_weights(NOW) == {PEER_SCRIPT: work}
    paid = {out.script_pubkey for out in node.coinbase_outputs(50 * COIN, NOW) if out.value}
    assert PEER_SCRIPT in paid and RELAY_SCRIPT not in paid


def test_a_share_held_for_its_finders_record_is_accepted_and_relayed_when_it_arrives() -> None:
    node, _ = make_node()
    asked = asking(node)
    finder, sender = Identity.generate("finder"), Identity.generate("sender")
    genuine = peer_share(finder)
    assert node.on_fed_share(sender.public_key, genuine) is None
    assert len(node.held) == 1 and len(node.window) == 0 and asked == [finder.node_id]

    know(node, finder)
    assert len(node.held) == 0
    assert node.stats.held_accepted == 1 and node.stats.shares_accepted == 1
    assert node.window.script_weights(NOW) == {PEER_SCRIPT: share_work(EASY)}
    assert node.reputation.score(sender.public_key) > 0.5
    assert node.publisher.shares == [FedShare.from_dict(genuine).to_dict()]  # type: ignore[union-attr]


def test_a_rewritten_share_of_a_known_finder_is_refused_and_charged() -> None:
    node, _ = make_node()
    asked = asking(node)
    finder, relay = Identity.generate("finder"), Identity.generate("relay")
    know(node, finder)
    assert node.on_fed_share(relay.public_key, rewritten(peer_share(finder))) is False
    assert node.stats.shares_rejected["payout-script-not-of-record"] == 1
    assert node.reputation.score(relay.public_key) == 10 / 25
    assert len(node.window) == 0 and len(node.held) == 0 and asked == []


def test_junk_from_an_unknown_finder_is_charged_as_before_and_neither_held_nor_looked_up() -> None:
    node, _ = make_node()
    asked = asking(node)
    finder, sender = Identity.generate("finder"), Identity.generate("sender")
    behind = peer_share(finder, prev_hash=b"\x01" * 32, height=TIP.height)
    assert node.on_fed_share(sender.public_key, behind) is False
    no_work = peer_share(finder, meets_target=False)
    assert node.on_fed_share(sender.public_key, no_work) is False
    assert node.stats.shares_rejected["stale"] == 1
    assert node.stats.shares_rejected["insufficient-work"] == 1
    assert node.reputation.score(sender.public_key) < 0.5
    assert len(node.held) == 0 and asked == []


def test_a_node_without_a_record_book_credits_no_peer() -> None:
    node, _ = make_node()
    node.book = None
    peer = Identity.generate("peer")
    assert node.on_fed_share(peer.public_key, peer_share(peer)) is None
    assert len(node.window) == 0 and node.reputation.score(peer.public_key) == 0.5


def test_held_shares_are_bounded_the_oldest_dropped_first() -> None:
    node, _ = make_node()
    node.held = HeldShares(limit=3)
    finders = [Identity.generate(f"finder {n}") for n in range(5)]
    sender = Identity.generate("sender")
    for finder in finders:
        assert node.on_fed_share(sender.public_key, peer_share(finder)) is None
    assert len(node.held) == 3 and node.held.evicted == 2
    assert node.stats.shares_rejected["finder-record-unknown"] == 5
    know(node, finders[0])  # dropped for room: nothing to accept
    assert len(node.window) == 0
    know(node, finders[4])
    assert node.stats.held_accepted == 1 and len(node.window) == 1 and len(node.held) == 2


def test_one_held_entry_per_share_and_script_however_often_it_comes() -> None:
    held = HeldShares(limit=8)
    share = make_share()
    for _ in range(5):
        held.hold(share, b"\x01" * 32)
    assert len(held) == 1
    assert held.take(share.node_id) == [(share, b"\x01" * 32)]
    assert len(held) == 0


def test_record_lookups_are_rate_limited_not_one_per_share() -> None:
    clock = Clock()
    clock.advance(NOW)
    asked: list[bytes] = []
    requests = RecordRequests(clock, interval=30.0, burst=4, rate=0.5)
    requests.lookup = asked.append
    for _ in range(10):
        requests.want(b"\x01" * 20)
    assert asked == [b"\x01" * 20]  # once per node per interval
    for n in range(2, 12):
        requests.want(bytes([n]) * 20)
    assert len(asked) == 4 and requests.limited == 7  # the burst, then nothing
    clock.advance(2)  # 0.5 per second: one more
    requests.want(b"\x20" * 20)
    requests.want(b"\x21" * 20)
    assert asked[-1] == b"\x20" * 20 and len(asked) == 5
    clock.advance(30)
    requests.want(b"\x01" * 20)  # asked again after the interval
    assert asked[-1] == b"\x01" * 20


def test_many_shares_of_one_unknown_finder_ask_for_its_record_once() -> None:
    node, _ = make_node()
    asked = asking(node)
    finder, sender = Identity.generate("finder"), Identity.generate("sender")
    for n in range(3):
        node.on_fed_share(sender.public_key, peer_share(finder, header_time=NOW + n))
    assert asked == [finder.node_id] and len(node.held) == 3


def test_a_block_whose_finders_record_is_unknown_is_neither_judged_nor_charged() -> None:
    node, _ = make_node()
    asked = asking(node)
    finder = Identity.generate("finder")
    relay = b"\x09" * 32
    greedy = block_of(finder, ((RELAY_SCRIPT, 50 * COIN),))
    assert node.on_block(relay, rewritten(greedy)) is None
    assert node.stats.blocks_rejected["finder-record-unknown"] == 1
    assert node.reputation.score(finder.public_key) == 0.5
    assert node.reputation.score(relay) == 0.5
    assert asked == [finder.node_id]
    know(node, finder)
    assert node.on_block(relay, rewritten(greedy)) is False
    assert node.stats.blocks_rejected["payout-script-not-of-record"] == 1


def test_the_gossip_forgets_an_item_its_handler_could_not_judge_yet() -> None:
    """Through a real link: the item is neither relayed nor charged nor remembered as
    seen, so the same item is handled again once the finder's record is known."""
    node, clock = make_node()
    gossip = Gossip(
        Identity.generate("local"),
        GossipSettings(LinkSettings(NETWORK)),
        MemoryReputation(),
        node,
        clock,
    )
    link = gossip.factory().buildProtocol(None)
    assert link is not None
    transport = Transport()
    link.makeConnection(transport)
    sender = Identity.generate("sender")
    remote = Codec(sender, first_seq=Codec.fresh_seq(NOW))
    (hello,) = received(remote, transport)
    link.dataReceived(remote.encode(Hello(NETWORK, 1, b"r" * 16), NOW))
    link.dataReceived(remote.encode(Pong(hello.body.nonce), NOW))  # type: ignore[union-attr]
    assert link.state is LinkState.READY

    finder = Identity.generate("finder")
    node.held = HeldShares(limit=0)  # nothing held: only the gossip can bring it back
    item = Item.of("fed-share", peer_share(finder))
    link.dataReceived(remote.encode(item, NOW))
    assert gossip.stats.items_deferred == 1 and item.hash not in gossip.seen
    assert gossip.reputation.penalties == []  # type: ignore[attr-defined]
    assert len(node.window) == 0

    know(node, finder)
    link.dataReceived(remote.encode(item, NOW))
    assert gossip.stats.items_duplicate == 0 and item.hash in gossip.seen
    assert len(node.window) == 1 and node.stats.shares_accepted == 1


@pytest_twisted.ensureDeferred
async def test_a_finders_record_is_looked_up_through_the_dht() -> None:
    """A node that never discovered the finder finds its record on the network."""
    from twisted.internet import reactor

    first = Member(reactor, [], "first")
    await first.dht.listen(0)
    finder = Member(reactor, [f"127.0.0.1:{first.dht.port}"], "finder")
    asker = Member(reactor, [f"127.0.0.1:{first.dht.port}"], "asker")
    try:
        await finder.dht.listen(0)
        assert await as_deferred(finder.dht.bootstrap_once()) == 1  # publishes its record
        await asker.dht.listen(0)
        assert await as_deferred(asker.dht.bootstrap_once()) == 1
        assert asker.book.get(finder.identity.node_id) is None
        record = await as_deferred(asker.dht.lookup(finder.identity.node_id))
        assert record is not None and record.public_key == finder.identity.public_key
        assert asker.book.get(finder.identity.node_id) == record
        assert asker.seen == [record]
    finally:
        for member in (first, finder, asker):
            member.dht.stop()

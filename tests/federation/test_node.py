"""The federation inside the node: item verification into the window, reputation on the
reactor clock, and the settlement side the pool core builds on."""

from __future__ import annotations

from dataclasses import replace

from twisted.internet.task import Clock

from otedama.chain.coinbase import node_commitments
from otedama.chain.hashing import sha256d
from otedama.chain.params import COIN
from otedama.chain.serialize import Transaction
from otedama.chain.template import BlockTemplate
from otedama.federation.identity import Identity
from otedama.federation.node import (
    ClockedReputation,
    FederationNode,
    MinedWork,
    gossip_penalty,
)
from otedama.federation.records import ContactRecord, RecordBook
from otedama.federation.reputation import Penalty, Reputation
from otedama.federation.shares import ChainTip
from otedama.federation.window import FederationWindow, WindowEntry
from tests.federation.shares_support import EASY, NOW, TIP, make_share, script

NETWORK_BITS_TARGET = 0x7FFFFF << (8 * (0x20 - 3))
OWN_SCRIPT = script(7)
PEER_SCRIPT = script(8)
RECORD_NETWORK = "regtest"


class Published:
    def __init__(self) -> None:
        self.shares: list[dict[str, object]] = []
        self.blocks: list[dict[str, object]] = []

    def publish_fed_share(self, payload: dict[str, object]) -> bytes:
        self.shares.append(payload)
        return b""

    def publish_block(self, payload: dict[str, object]) -> bytes:
        self.blocks.append(payload)
        return b""


def template_on(prev_hash: bytes, height: int, value: int = 50 * COIN) -> BlockTemplate:
    """A devnet-difficulty template for the block after ``prev_hash``."""
    return BlockTemplate.from_rpc(
        {
            "version": 0x20000000,
            "previousblockhash": prev_hash[::-1].hex(),
            "height": height,
            "bits": "207fffff",
            "target": "7fffff" + "00" * 29,
            "curtime": NOW,
            "mintime": NOW - 1000,
            "coinbasevalue": value,
            "transactions": [],
            "rules": ["segwit"],
        }
    )


def make_node(window: FederationWindow | None = None) -> tuple[FederationNode, Clock]:
    """A node on ``TIP`` at ``NOW`` with a record book (as ``tap.py`` wires it) that
    holds no record yet: ``know`` puts a peer's in."""
    clock = Clock()
    clock.advance(NOW)
    reputation = ClockedReputation(Reputation(), clock)
    identity = Identity.generate("us")
    node = FederationNode(
        identity,
        OWN_SCRIPT,
        window if window is not None else FederationWindow(7200),
        reputation,
        clock,
        book=RecordBook(RECORD_NETWORK, identity.node_id),
    )
    assert node.book is not None
    node.book.subscribe(node.record_known)
    node.tips.tip = TIP
    node.tips.network_target = NETWORK_BITS_TARGET
    node.publisher = Published()
    return node, clock


def know(node: FederationNode, peer: Identity, payout: bytes = PEER_SCRIPT) -> ContactRecord:
    """``node`` learns ``peer``'s signed contact record, naming ``payout`` (as from the DHT)."""
    assert node.book is not None
    now = node.clock.seconds()
    record = ContactRecord.create(
        peer, host="127.0.0.1", port=4444, network=RECORD_NETWORK, payout_script=payout, now=now
    )
    assert node.book.offer(record.encode(), now) == record
    return record


def peer_share(peer: Identity, **changes: object) -> dict[str, object]:
    spec: dict[str, object] = {
        "node_id": peer.node_id,
        "public_key": peer.public_key,
        "payout_script": PEER_SCRIPT,
        "outputs": ((PEER_SCRIPT, 50 * COIN),),
    }
    spec.update(changes)
    return make_share(**spec).to_dict()


def test_gossip_offences_map_to_penalties_and_item_verdicts_are_left_to_the_node() -> None:
    assert gossip_penalty("bad-signature") is Penalty.BAD_SIGNATURE
    assert gossip_penalty("oversized-frame") is Penalty.OVERSIZED
    assert gossip_penalty("malformed") is Penalty.MALFORMED
    assert gossip_penalty("replay") is Penalty.REPLAY
    assert gossip_penalty("flood") is Penalty.FLOOD
    assert gossip_penalty("handshake-timeout") is Penalty.PROTOCOL
    assert gossip_penalty("invalid-fed-share") is None
    assert gossip_penalty("valid-block") is None


def test_clocked_reputation_reads_the_reactor_clock_and_a_new_peer_is_exactly_neutral() -> None:
    clock = Clock()
    clock.advance(NOW)
    sink = ClockedReputation(Reputation(), clock)
    key = b"\x01" * 32
    assert sink.score(key) == 0.5
    sink.penalise(key, "bad-signature")
    assert sink.score(key) == 10 / 30
    sink.penalise(key, "invalid-fed-share")  # charged by the node handler, not here
    assert sink.score(key) == 10 / 30
    clock.advance(12 * 3600)  # bad halves in 12 h
    assert sink.score(key) == 10 / 25


def test_a_valid_peer_share_enters_the_window_and_earns_its_sender() -> None:
    node, _ = make_node()
    peer = Identity.generate("peer")
    know(node, peer)
    payload = peer_share(peer)
    assert node.on_fed_share(peer.public_key, payload)
    assert len(node.window) == 1
    assert node.window.at(NOW).node(peer.node_id).shares == 1
    assert node.reputation.score(peer.public_key) > 0.5
    assert node.stats.shares_accepted == 1


def test_a_share_whose_node_id_is_not_of_its_key_is_forged_and_charged() -> None:
    node, _ = make_node()
    peer = Identity.generate("peer")
    other = Identity.generate("other")
    payload = peer_share(peer, node_id=other.node_id)
    assert not node.on_fed_share(peer.public_key, payload)
    assert len(node.window) == 0
    assert node.stats.shares_rejected["node-id-not-of-key"] == 1
    assert node.reputation.score(peer.public_key) == 10 / 25  # below the 0.5 threshold


def test_garbage_in_place_of_a_share_is_malformed() -> None:
    node, _ = make_node()
    assert not node.on_fed_share(b"\x05" * 32, {"node_id": 3})
    assert node.stats.shares_rejected["malformed"] == 1
    assert node.reputation.score(b"\x05" * 32) < 0.5


def test_a_share_whose_coinbase_pays_only_its_sender_is_charged_as_underpaid() -> None:
    peer = Identity.generate("peer")
    window = FederationWindow(7200)
    for n in range(3):  # this node did all the recent work
        window.add(
            WindowEntry(sha256d(b"own %d" % n), b"\x33" * 20, OWN_SCRIPT, 1 << 40, NOW - 600),
            NOW,
        )
    node, _ = make_node(window)
    know(node, peer)
    payload = peer_share(peer, template_time=NOW - 20)
    assert not node.on_fed_share(peer.public_key, payload)
    assert node.stats.shares_rejected["underpays"] == 1
    assert node.reputation.score(peer.public_key) == 10 / 40


def test_a_stale_share_is_charged_late_only_when_the_sender_is_behind() -> None:
    node, _ = make_node()
    peer = Identity.generate("peer")
    old_parent = sha256d(b"long ago")
    payload = peer_share(peer, prev_hash=old_parent, height=TIP.height)
    assert not node.on_fed_share(peer.public_key, payload)
    assert node.stats.shares_rejected["stale"] == 1
    assert node.reputation.score(peer.public_key) < 0.5
    # The tip changed a moment ago: a share on the old one raced it.
    racer = Identity.generate("racer")
    node.tips.tip = replace(TIP, since=NOW - 5)
    assert not node.on_fed_share(racer.public_key, peer_share(racer, prev_hash=old_parent))
    assert node.stats.shares_rejected["stale-uncharged"] == 1
    assert node.reputation.score(racer.public_key) == 0.5


def test_a_share_with_a_payout_script_other_than_its_record_is_refused() -> None:
    class Book:
        def __init__(self, payout: bytes) -> None:
            self.payout = payout

        def get(self, node_id: bytes) -> object:
            return type("R", (), {"payout_script": self.payout})()

    node, _ = make_node()
    node.book = Book(script(99))  # type: ignore[assignment]
    peer = Identity.generate("peer")
    assert not node.on_fed_share(peer.public_key, peer_share(peer))
    assert node.stats.shares_rejected["payout-script-not-of-record"] == 1


def test_coinbase_outputs_split_the_window_and_commit_to_this_node() -> None:
    window = FederationWindow(7200)
    window.add(WindowEntry(sha256d(b"a"), b"\x01" * 20, OWN_SCRIPT, 3 << 40, NOW - 60), NOW)
    window.add(WindowEntry(sha256d(b"b"), b"\x02" * 20, PEER_SCRIPT, 1 << 40, NOW - 60), NOW)
    node, _ = make_node(window)
    outputs = node.coinbase_outputs(100 * COIN, NOW)
    assert [(o.script_pubkey, o.value) for o in outputs[:2]] == [
        (OWN_SCRIPT, 75 * COIN),
        (PEER_SCRIPT, 25 * COIN),
    ]
    assert node_commitments(outputs) == [node.identity.node_id]


def own_work(node: FederationNode, clock: Clock, **changes: object) -> MinedWork:
    """A share mined by this node's own miners on a coinbase it built."""
    share = make_share(
        node_id=node.identity.node_id,
        public_key=node.identity.public_key,
        payout_script=OWN_SCRIPT,
        outputs=((OWN_SCRIPT, 50 * COIN),),
        target=EASY,
        **changes,
    )
    return MinedWork(share.header, share.coinbase, share.branch, share.height, NOW - 20)


def test_an_own_share_meeting_the_target_enters_the_window_and_the_gossip() -> None:
    node, clock = make_node()
    work = own_work(node, clock)
    assert node.publish_share(work)
    assert len(node.window) == 1
    published = node.publisher.shares  # type: ignore[union-attr]
    assert len(published) == 1 and published[0]["node_id"] == node.identity.node_id


def test_an_own_share_the_peers_would_refuse_is_not_sent() -> None:
    node, clock = make_node()
    work = own_work(node, clock, prev_hash=sha256d(b"elsewhere"))
    assert not node.publish_share(work)
    assert len(node.window) == 0
    assert node.stats.shares_rejected["own-stale"] == 1


def block_of(peer: Identity, outputs: tuple[tuple[bytes, int], ...]) -> dict[str, object]:
    share = make_share(
        node_id=peer.node_id,
        public_key=peer.public_key,
        payout_script=PEER_SCRIPT,
        outputs=outputs,
        target=NETWORK_BITS_TARGET,
    )
    return share.to_dict()


def test_a_block_that_underpays_the_window_costs_its_finder() -> None:
    window = FederationWindow(7200)
    window.add(WindowEntry(sha256d(b"a"), b"\x01" * 20, OWN_SCRIPT, 1 << 40, NOW - 600), NOW)
    window.add(WindowEntry(sha256d(b"b"), b"\x02" * 20, PEER_SCRIPT, 1 << 40, NOW - 600), NOW)
    node, _ = make_node(window)
    finder = Identity.generate("finder")
    know(node, finder)
    relay = b"\x09" * 32
    fair = block_of(finder, ((PEER_SCRIPT, 25 * COIN), (OWN_SCRIPT, 25 * COIN)))
    assert node.on_block(relay, fair)
    assert node.reputation.score(finder.public_key) > 0.5
    greedy = block_of(finder, ((PEER_SCRIPT, 50 * COIN),))
    assert not node.on_block(relay, greedy)
    assert node.stats.blocks_rejected["underpays"] == 1
    assert node.reputation.score(finder.public_key) < 0.5
    assert node.reputation.score(relay) >= 0.5  # the relay is not blamed for the finder


def test_a_block_without_its_proof_of_work_is_charged_to_its_sender() -> None:
    node, _ = make_node()
    finder = Identity.generate("finder")
    payload = make_share(
        node_id=finder.node_id,
        public_key=finder.public_key,
        payout_script=PEER_SCRIPT,
        outputs=((PEER_SCRIPT, 50 * COIN),),
        target=NETWORK_BITS_TARGET,
        meets_target=False,
    ).to_dict()
    assert not node.on_block(finder.public_key, payload)
    assert node.stats.blocks_rejected["insufficient-work"] == 1
    assert node.reputation.score(finder.public_key) < 0.5


def test_published_block_carries_the_network_target_of_its_header() -> None:
    node, clock = make_node()
    work = own_work(node, clock)
    assert node.publish_block(work)
    payload = node.publisher.blocks[0]  # type: ignore[union-attr]
    assert int.from_bytes(payload["target"], "big") == NETWORK_BITS_TARGET  # type: ignore[arg-type]
    coinbase = Transaction.parse(payload["coinbase"])  # type: ignore[arg-type]
    assert node_commitments(coinbase.outputs) == [node.identity.node_id]


def test_the_tip_tracker_remembers_the_parent_when_heights_chain() -> None:
    node, clock = make_node()
    node.tips.tip = None
    first = template_on(sha256d(b"b1"), 11)
    node.on_template(first)
    assert node.tips.tip == ChainTip(sha256d(b"b1"), 10, bytes(32), NOW)
    clock.advance(5)
    node.on_template(template_on(sha256d(b"b2"), 12))
    assert node.tips.tip == ChainTip(sha256d(b"b2"), 11, sha256d(b"b1"), NOW + 5)


def test_a_newcomer_gossips_its_own_shares_only_after_a_whole_window_linked() -> None:
    node, clock = make_node()
    links: list[bool] = []
    node.linked = lambda: bool(links)
    node.warmup = 7200
    work = own_work(node, clock)
    assert not node.publish_share(work)  # not linked yet
    links.append(True)
    assert not node.participating()  # linked from now
    clock.advance(7199)
    assert not node.participating()
    clock.advance(1)
    assert node.participating()


def test_a_node_restored_after_a_short_absence_joins_in_at_once() -> None:
    node, _ = make_node()
    node.restored(newest_entry=NOW - 60, now=NOW)  # 60 s of a 2 h window: under 2 %
    assert node.warmup == 0
    node.restored(newest_entry=NOW - 600, now=NOW)
    assert node.warmup == 7200
    node.restored(newest_entry=None, now=NOW)
    assert node.warmup == 7200


def test_this_nodes_own_share_coming_back_is_not_charged_to_the_relay() -> None:
    node, _ = make_node()
    mine = make_share(
        node_id=node.identity.node_id,
        public_key=node.identity.public_key,
        payout_script=OWN_SCRIPT,
        outputs=((OWN_SCRIPT, 50 * COIN),),
    )
    relay = b"\x0c" * 32
    assert not node.on_fed_share(relay, mine.to_dict())
    assert node.stats.shares_rejected["own-share-returned"] == 1
    assert node.reputation.score(relay) == 0.5


def test_a_node_warming_up_refuses_an_underpaying_coinbase_without_charging_it() -> None:
    """Its window is short of its peers' (newcomer, or back from an absence): an honest
    coinbase can look unfair to it, so nobody is charged until it participates."""
    window = FederationWindow(7200)
    for n in range(3):
        window.add(
            WindowEntry(sha256d(b"own %d" % n), b"\x33" * 20, OWN_SCRIPT, 1 << 40, NOW - 600),
            NOW,
        )
    node, _ = make_node(window)
    node.linked = lambda: True
    node.warmup = 7200
    peer = Identity.generate("peer")
    know(node, peer)
    share = peer_share(peer, template_time=NOW - 20)
    assert not node.on_fed_share(peer.public_key, share)
    block = block_of(peer, ((PEER_SCRIPT, 50 * COIN),))
    assert not node.on_block(peer.public_key, block)
    assert node.stats.shares_rejected["underpays-warming-up"] == 1
    assert node.stats.blocks_rejected["underpays-warming-up"] == 1
    assert node.reputation.score(peer.public_key) == 0.5
    assert len(node.window) == 3

    node.warmup = 0  # participating: the same coinbases are charged
    assert not node.on_fed_share(peer.public_key, share)
    assert not node.on_block(peer.public_key, block)
    assert node.stats.shares_rejected["underpays"] == 1
    assert node.stats.blocks_rejected["underpays"] == 1
    assert node.reputation.score(peer.public_key) < 0.5

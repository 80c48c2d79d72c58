"""A misbehaving federation node, through the real gossip on 127.0.0.1: forged shares, bad
signatures, shares whose coinbase pays only its sender, a block that underpays. Each
offender falls below the threshold and is ignored; an honest peer's shares still enter
the window, and the honest node's coinbases go on paying it and never the offenders."""

from __future__ import annotations

from typing import Any

import pytest_twisted

from otedama.chain.hashing import sha256d
from otedama.chain.params import COIN
from otedama.federation.identity import Identity
from otedama.federation.node import ClockedReputation, FederationNode
from otedama.federation.records import ContactRecord, RecordBook
from otedama.federation.reputation import Reputation
from otedama.federation.shares import ChainTip, FedShare
from otedama.federation.window import FederationWindow, WindowEntry
from otedama.federation.wire import Item

from .shares_support import EASY, make_share, script
from .test_gossip import NETWORK, Node, wait_until
from .test_gossip_hostile import bad_signature, handshake, raw_peer

HONEST = script(30)
PEER = script(31)
HOSTILE = script(32)
NETWORK_TARGET = 0x7FFFFF << (8 * (0x20 - 3))
TIP = ChainTip(sha256d(b"hostile tip"), 500, sha256d(b"its parent"), 0.0)


def honest_node(reactor: Any) -> tuple[Node, FederationNode]:
    """A gossip node whose items go to a real ``FederationNode`` with real reputation."""
    node = Node(reactor, "honest")
    reputation = ClockedReputation(Reputation(), reactor)
    window = FederationWindow(7200)
    now = int(reactor.seconds())
    # Work of this node and of an honest peer in the window, a while ago.
    window.add(WindowEntry(sha256d(b"h"), b"\x30" * 20, HONEST, 1 << 40, now - 900), now)
    window.add(WindowEntry(sha256d(b"p"), b"\x31" * 20, PEER, 1 << 40, now - 900), now)
    book = RecordBook(NETWORK, node.identity.node_id)
    federation = FederationNode(node.identity, HONEST, window, reputation, reactor, book=book)
    federation.tips.tip = ChainTip(TIP.hash, TIP.height, TIP.parent_hash, now - 100)
    federation.tips.network_target = NETWORK_TARGET
    node.gossip.handler = federation
    node.gossip.reputation = reputation
    return node, federation


def discovered(federation: FederationNode, identity: Identity, payout: bytes) -> None:
    """The honest node holds ``identity``'s signed contact record (as found in the DHT)."""
    assert federation.book is not None
    now = federation.clock.seconds()
    record = ContactRecord.create(
        identity, host="127.0.0.1", port=1, network=NETWORK, payout_script=payout, now=now
    )
    assert federation.book.offer(record.encode(), now) is not None


def share_of(identity: Identity, payout: bytes, now: int, **changes: Any) -> FedShare:
    """A share by ``identity`` on the honest node's tip, splitting 50 coins as ``outputs``."""
    spec: dict[str, Any] = {
        "node_id": identity.node_id,
        "public_key": identity.public_key,
        "payout_script": payout,
        "outputs": ((HONEST, 25 * COIN), (PEER, 25 * COIN)),
        "prev_hash": TIP.hash,
        "height": TIP.height + 1,
        "target": EASY,
        "time": now,
        "template_time": now - 5,
    }
    spec.update(changes)
    return make_share(**spec)


@pytest_twisted.ensureDeferred
async def test_offenders_fall_below_the_threshold_and_settlement_goes_on_without_them() -> None:
    from twisted.internet import reactor

    node, federation = honest_node(reactor)
    peers = []
    try:
        now = int(reactor.seconds())
        threshold = node.gossip.gossip_settings.reputation_threshold
        offenders = {
            name: Identity.generate(name)
            for name in ("forger", "bad-signer", "selfish", "underpaying-finder")
        }
        for identity in offenders.values():
            discovered(federation, identity, HOSTILE)
            peer = await raw_peer(reactor, node, identity)
            await handshake(reactor, node, peer)
            peers.append(peer)
        forger, signer, selfish, finder = peers

        # A forged share: the work of another node id claimed under the forger's key.
        victim = Identity.generate("victim")
        forged = share_of(victim, HOSTILE, now, public_key=forger.identity.public_key)
        forger.send(Item.of("fed-share", forged.to_dict()))
        # A share whose envelope signature does not verify.
        honest_looking = share_of(signer.identity, HOSTILE, now)
        frame = signer.codec.encode(Item.of("fed-share", honest_looking.to_dict()), now)
        signer.write(bad_signature(frame))
        # A share whose coinbase pays only its sender.
        selfish_share = share_of(
            selfish.identity, HOSTILE, now, outputs=((HOSTILE, 50 * COIN),), header_time=now + 1
        )
        selfish.send(Item.of("fed-share", selfish_share.to_dict()))
        # A found block that underpays the window.
        block = share_of(
            finder.identity,
            HOSTILE,
            now,
            outputs=((HOSTILE, 50 * COIN),),
            target=NETWORK_TARGET,
            header_time=now + 2,
        )
        finder.send(Item.of("block", block.to_dict()))

        keys = [identity.public_key for identity in offenders.values()]
        await wait_until(
            reactor, lambda: all(node.gossip.reputation.score(key) < threshold for key in keys)
        )
        assert federation.stats.shares_rejected["node-id-not-of-key"] == 1
        assert federation.stats.shares_rejected["underpays"] == 1
        assert federation.stats.blocks_rejected["underpays"] == 1
        assert all(not node.gossip.trusted(key) for key in keys)

        # Ignored from now on: even a valid share from an offender is not believed.
        fair = share_of(selfish.identity, HOSTILE, now, header_time=now + 3)
        selfish.send(Item.of("fed-share", fair.to_dict()))

        # An honest newcomer's share still enters the window.
        newcomer_identity = Identity.generate("newcomer")
        discovered(federation, newcomer_identity, PEER)
        newcomer = await raw_peer(reactor, node, newcomer_identity)
        await handshake(reactor, node, newcomer)
        good = share_of(newcomer.identity, PEER, now, header_time=now + 4)
        newcomer.send(Item.of("fed-share", good.to_dict()))
        await wait_until(reactor, lambda: good.share_hash in federation.window)
        assert fair.share_hash not in federation.window
        assert federation.stats.shares_accepted == 1
        assert node.gossip.reputation.score(newcomer.identity.public_key) > threshold

        # The honest node's coinbase pays its window: itself and the honest peer, never the
        # offenders.
        outputs = federation.coinbase_outputs(50 * COIN, now)
        paid = {out.script_pubkey for out in outputs if out.value}
        assert HONEST in paid and PEER in paid and HOSTILE not in paid
    finally:
        for peer in peers:
            if peer.transport is not None:
                peer.transport.loseConnection()
        await node.stop()

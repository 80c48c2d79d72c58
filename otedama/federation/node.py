"""The federation inside the node: the gossip's item verifier and the pool core's partner.

``FederationNode`` ties the pure federation parts to the running node:

- **Receiving** (gossip's ``ItemHandler``): a peer's fed-share is parsed, its node id
  checked against its public key and its payout script against the finder's contact
  record, then ``verify_share`` runs against this node's window, its current tip (from
  the template source) and its own federation share target. Accepted: the share enters
  the window and the sender earns ``valid-share``. Rejected: the sender pays
  ``penalty_for(reason)``. A gossiped block is checked the same way (proof of work against
  its own nBits, commitment, merkle root) and its coinbase against this node's window at
  its template time; a block that underpays the federation costs its finder
  ``underpaid``.

**Whose script.** A share's envelope is signed by the last relay, and its coinbase
commits to the finder's node id but not to its payout script: only the finder's own
signed contact record (the ``RecordBook``) says which script its work is credited to. A
share (or block) whose finder has no record here is therefore never credited nor judged:
it is refused as ``finder-record-unknown`` (not charged: not misbehaviour), not marked
as seen (the handler answers None, so the gossip forgets its hash too), the record is
asked of the DHT (``RecordRequests``: bounded and rate limited), and a share that passed
every check but the split waits in ``HeldShares`` (bounded) until the record arrives
(``record_known``), when it is verified in full against the record's script.
- **Sending** (the pool core's ``Federation`` port): each template's coinbase outputs are
  ``split_reward`` over ``window.script_weights(t)`` with this node as finder, plus the
  node-id commitment; a miner's share that meets the federation share target becomes a
  ``FedShare`` in this node's window and on the gossip; a found block is gossiped at once.

**Joining.** A peer's coinbase is judged against this node's window, so a node whose
window lacks what its peers' windows hold (a newcomer; a node back from a long absence)
would pay them less than they expect, exactly like a selfish node. So a node gossips its
own shares and blocks only once it has been linked for ``warmup`` seconds: a whole window
for a newcomer, none for a node restored from the database after an absence of at most
``REJOIN_GAP`` of the window. Meanwhile it verifies and keeps its peers' shares.

While this node is not participating its window lacks what its peers' windows hold, so a
coinbase (of a share or a block) that underpays it by its own window is refused but not
charged: counted as ``underpays-warming-up``.

A stale share is charged ``late`` only when the sender is really behind: not when it
claims a height beyond this node's next block (it saw a block first) nor within
``TIP_GRACE`` of this node's own tip change (a race). Neither is accepted.

``ClockedReputation`` adapts ``Reputation`` (whose methods take ``now``) to the gossip's
``ReputationSink`` with the reactor clock, mapping the link layer's offence slugs to
``Penalty`` values. Item verdicts are charged here, by the handler, with their precise
reason; the gossip's generic ``valid-…``/``invalid-…`` reports are therefore not counted
twice. A peer is below the threshold when its score is strictly below it (a new peer
scores exactly 0.5).
"""

from __future__ import annotations

from collections import Counter, OrderedDict
from collections.abc import Callable, Mapping
from dataclasses import dataclass, field
from typing import TYPE_CHECKING, Any, Protocol

from twisted.logger import Logger

from otedama.chain.coinbase import node_commitment_output, node_commitments
from otedama.chain.hashing import sha256d
from otedama.chain.merkle import root_from_branch
from otedama.chain.serialize import SerializationError, Transaction, TxOut
from otedama.chain.target import bits_to_target, hash_to_int
from otedama.chain.template import BlockTemplate
from otedama.federation.identity import Identity, node_id_of
from otedama.federation.records import ContactRecord, RecordBook
from otedama.federation.reputation import (
    PeerRecord,
    Penalty,
    Reputation,
    Reward,
    penalty_for,
)
from otedama.federation.settlement import SettlementError, check_settlement, split_reward
from otedama.federation.shares import (
    MAX_TEMPLATE_AGE,
    TIP_GRACE,
    ChainTip,
    FedShare,
    FedShareError,
    Rejection,
    verify_share,
)
from otedama.federation.window import FederationWindow, WindowEntry

if TYPE_CHECKING:
    from otedama.federation.service import FederationStatus

__all__ = [
    "BLOCK_MAX_AGE",
    "HELD_SHARES",
    "ClockedReputation",
    "FederationNode",
    "HeldShares",
    "MinedWork",
    "NodeStats",
    "RecordRequests",
    "TipTracker",
    "gossip_penalty",
]

REJOIN_GAP = 0.02
"""A restarted node away for at most this part of the window joins in at once; longer,
and it warms up for a whole window first."""
BLOCK_MAX_AGE = 600
"""Seconds a gossiped block's time may lag the receiver's clock (blocks travel once)."""
HELD_SHARES = 64
"""Shares waiting for their finder's contact record, at most (the oldest dropped first)."""
RECORD_LOOKUP_INTERVAL = 30.0
"""Seconds before the record of the same node is asked of the DHT again."""
RECORD_LOOKUP_BURST = 8
RECORD_LOOKUP_RATE = 0.5
"""Record lookups in all: a burst of 8, then one per 2 s."""

_GOSSIP_PENALTIES: Mapping[str, Penalty] = {
    "oversized-frame": Penalty.OVERSIZED,
    "malformed": Penalty.MALFORMED,
    "unknown-kind": Penalty.MALFORMED,
    "version": Penalty.PROTOCOL,
    "bad-signature": Penalty.BAD_SIGNATURE,
    "replay": Penalty.REPLAY,
    "stale": Penalty.REPLAY,
    "flood": Penalty.FLOOD,
}
"""Link offences (``wire``/``peer``/``gossip`` slugs) and what they cost; any other
offence (handshake failures, unexpected messages, slow reading) is ``protocol``."""


def gossip_penalty(reason: str) -> Penalty | None:
    """The penalty for a gossip-reported offence; None for item verdicts, which the
    ``FederationNode`` charges itself with their precise reason."""
    if reason.startswith(("invalid-", "valid-")):
        return None
    return _GOSSIP_PENALTIES.get(reason, Penalty.PROTOCOL)


class Clock(Protocol):
    def seconds(self) -> float: ...


class ClockedReputation:
    """``Reputation`` as the gossip's ``ReputationSink``: ``now`` from ``clock``."""

    def __init__(self, reputation: Reputation, clock: Clock) -> None:
        self.reputation = reputation
        self.clock = clock

    def penalise(self, peer_key: bytes, reason: str) -> None:
        penalty = gossip_penalty(reason)
        if penalty is not None:
            self.reputation.penalise(peer_key, penalty, self.clock.seconds())

    def reward(self, peer_key: bytes, reason: str) -> None:
        """Gossip's ``valid-…`` reports: the node handler rewards items itself."""

    def score(self, peer_key: bytes) -> float:
        return self.reputation.score(peer_key, self.clock.seconds())

    def charge(self, peer_key: bytes, penalty: Penalty) -> float:
        return self.reputation.penalise(peer_key, penalty, self.clock.seconds())

    def credit(self, peer_key: bytes, reward: Reward) -> float:
        return self.reputation.reward(peer_key, reward, self.clock.seconds())

    def snapshot(self) -> list[PeerRecord]:
        return self.reputation.snapshot(self.clock.seconds())


class TipTracker:
    """The receiver's chain tip from the template source: a template on a new previous
    block makes that block the tip, and the old tip its parent when the heights chain."""

    def __init__(self, clock: Clock) -> None:
        self.clock = clock
        self.tip: ChainTip | None = None
        self.network_target = 0

    def on_template(self, template: BlockTemplate) -> None:
        self.network_target = bits_to_target(template.bits)
        tip = self.tip
        if tip is not None and tip.hash == template.prev_hash:
            return
        height = template.height - 1
        parent = tip.hash if tip is not None and tip.height == height - 1 else bytes(32)
        self.tip = ChainTip(template.prev_hash, height, parent, self.clock.seconds())


class RecordRequests:
    """Which finders' contact records to ask the DHT for: a node at most once per
    ``interval``, and all of them together at most ``burst`` at once then ``rate`` per
    second (a token bucket), so shares from unknown finders, however many, cost a bounded
    number of lookups. ``lookup`` starts one (None: nothing is asked)."""

    log = Logger()

    def __init__(
        self,
        clock: Clock,
        *,
        interval: float = RECORD_LOOKUP_INTERVAL,
        burst: int = RECORD_LOOKUP_BURST,
        rate: float = RECORD_LOOKUP_RATE,
        max_tracked: int = 1024,
    ) -> None:
        self.clock = clock
        self.interval = interval
        self.burst = burst
        self.rate = rate
        self.max_tracked = max_tracked
        self.lookup: Callable[[bytes], object] | None = None
        self.asked: OrderedDict[bytes, float] = OrderedDict()
        self.tokens = float(burst)
        self.refilled = clock.seconds()
        self.requested = 0
        self.limited = 0

    def want(self, node_id: bytes) -> bool:
        """Ask for ``node_id``'s record unless asked lately or over the rate; whether asked."""
        if self.lookup is None:
            return False
        now = self.clock.seconds()
        last = self.asked.get(node_id)
        if last is not None and now - last < self.interval:
            return False
        self.tokens = min(float(self.burst), self.tokens + (now - self.refilled) * self.rate)
        self.refilled = now
        if self.tokens < 1:
            self.limited += 1
            return False
        self.tokens -= 1
        self.asked[node_id] = now
        self.asked.move_to_end(node_id)
        while len(self.asked) > self.max_tracked:
            self.asked.popitem(last=False)
        self.requested += 1
        try:
            self.lookup(node_id)
        except Exception:
            self.log.failure("asking for the contact record of {node} failed", node=node_id.hex())
        return True


class HeldShares:
    """Shares refused as ``finder-record-unknown`` that passed every check but the split,
    kept to be verified again when their finder's record arrives: at most ``limit``
    (the oldest dropped first, counted in ``evicted``), one per (share, payout script)."""

    def __init__(self, limit: int = HELD_SHARES) -> None:
        self.limit = limit
        self.evicted = 0
        self._held: OrderedDict[tuple[bytes, bytes], tuple[FedShare, bytes]] = OrderedDict()

    def __len__(self) -> int:
        return len(self._held)

    def hold(self, share: FedShare, peer_key: bytes) -> None:
        key = (share.share_hash, share.payout_script)
        if key in self._held:
            return
        self._held[key] = (share, peer_key)
        while len(self._held) > self.limit:
            self._held.popitem(last=False)
            self.evicted += 1

    def take(self, node_id: bytes) -> list[tuple[FedShare, bytes]]:
        """Remove and return the held shares of ``node_id``, with who sent each."""
        keys = [key for key, (share, _) in self._held.items() if share.node_id == node_id]
        return [self._held.pop(key) for key in keys]


@dataclass(frozen=True)
class MinedWork:
    """A miner's share as the federation needs it: the header, the coinbase (non-witness
    serialization), its merkle branch, the block height and the template time of the
    coinbase split it was mined on."""

    header: bytes
    coinbase: bytes
    branch: tuple[bytes, ...]
    height: int
    template_time: int


class Publisher(Protocol):
    """What the node publishes through (``FederationService`` offers both)."""

    def publish_fed_share(self, payload: dict[str, Any]) -> bytes: ...
    def publish_block(self, payload: dict[str, Any]) -> bytes: ...


@dataclass
class NodeStats:
    """Counters of items verified and published (rejections by reason)."""

    shares_accepted: int = 0
    shares_rejected: Counter[str] = field(default_factory=Counter)
    shares_published: int = 0
    blocks_accepted: int = 0
    blocks_rejected: Counter[str] = field(default_factory=Counter)
    blocks_published: int = 0
    held_accepted: int = 0
    """Shares held for their finder's record, accepted once it came."""


class FederationNode:
    """Verifies peers' items into the window and builds this node's federation side."""

    log = Logger()

    def __init__(
        self,
        identity: Identity,
        payout_script: bytes,
        window: FederationWindow,
        reputation: ClockedReputation,
        clock: Clock,
        *,
        share_interval: float = 10.0,
        book: RecordBook | None = None,
        warmup: float = 0.0,
        linked: Callable[[], bool] | None = None,
    ) -> None:
        self.identity = identity
        self.payout_script = payout_script
        self.window = window
        self.reputation = reputation
        self.clock = clock
        self.share_interval = share_interval
        #: The finders' contact records (the service's book). None: no record is known,
        #: so no peer's share is credited (see "Whose script" above).
        self.book = book
        self.records = RecordRequests(clock)
        self.held = HeldShares()
        self.tips = TipTracker(clock)
        self.publisher: Publisher | None = None
        self.stats = NodeStats()
        #: Called with each share entering the window (own or a peer's): persistence.
        self.on_window_entry: Callable[[WindowEntry], None] | None = None
        #: Seconds linked before this node's shares and blocks are gossiped (see
        #: ``participating``); ``linked()`` says whether any peer is linked now.
        self.warmup = warmup
        self.linked = linked
        self.joined_at: float | None = None

    def restored(self, newest_entry: int | None, now: float) -> None:
        """The window was loaded from the database (``newest_entry``: the time of its
        newest share, None when empty): warm up for a whole window unless the node was
        away for at most ``REJOIN_GAP`` of it (what it missed is within the tolerance)."""
        away = None if newest_entry is None else now - newest_entry
        short = away is not None and away <= self.window.duration * REJOIN_GAP
        self.warmup = 0.0 if short else self.window.duration

    def participating(self, now: float | None = None) -> bool:
        """Whether this node's own shares and blocks go to the federation now: once it
        has been linked for ``warmup`` seconds (its window then holds what its peers'
        windows hold, so its coinbases pay them what they expect)."""
        if self.linked is None:
            return True
        now = self.clock.seconds() if now is None else now
        if self.joined_at is None:
            if not self.linked():
                return False
            self.joined_at = now
        return now - self.joined_at >= self.warmup

    # -- state ------------------------------------------------------------------------

    def on_template(self, template: BlockTemplate) -> None:
        """Subscribe to the template source: the tip and the network target."""
        self.tips.on_template(template)
        self.participating()  # notes the first moment linked

    def share_target(self, now: float | None = None) -> int:
        """This node's federation share target now (0 before the first template)."""
        network_target = self.tips.network_target
        if not network_target:
            return 0
        now = self.clock.seconds() if now is None else now
        return self.window.at(now).share_target(self.share_interval, network_target)

    def _add(self, share: FedShare, now: float) -> bool:
        added = self.window.add(share, now)
        if added and self.on_window_entry is not None:
            try:
                self.on_window_entry(WindowEntry.from_share(share))
            except Exception:
                self.log.failure("noting a window entry for persistence failed")
        return added

    # -- ItemHandler: what peers send ---------------------------------------------------

    def _reject_share(self, peer_key: bytes, reason: str, penalty: Penalty) -> bool:
        return self._reject(self.stats.shares_rejected, peer_key, reason, penalty)

    def _reject_block(self, key: bytes, reason: str, penalty: Penalty) -> bool:
        return self._reject(self.stats.blocks_rejected, key, reason, penalty)

    def _reject(self, counts: Counter[str], key: bytes, reason: str, penalty: Penalty) -> bool:
        """Count the rejection, charge ``key``; False (the item is not relayed)."""
        counts[reason] += 1
        self.reputation.charge(key, penalty)
        return False

    def _record(self, node_id: bytes) -> ContactRecord | None:
        return self.book.get(node_id) if self.book is not None else None

    def _claims_hold(self, share: FedShare) -> str | None:
        """Why the share's identity claims fail (None: they hold, or its finder's record
        is not known yet: see ``_finder_unknown``)."""
        if node_id_of(share.public_key) != share.node_id:
            return "node-id-not-of-key"
        record = self._record(share.node_id)
        if record is not None and record.payout_script != share.payout_script:
            return "payout-script-not-of-record"
        return None

    def on_fed_share(self, peer_key: bytes, payload: dict[str, Any]) -> bool | None:
        """Verify a peer's federation share; True (relay it) when accepted, None when it
        cannot be judged yet (its finder's record is unknown: not seen, not charged)."""
        try:
            share = FedShare.from_dict(payload)
        except FedShareError:
            return self._reject_share(peer_key, "malformed", Penalty.MALFORMED)
        if share.node_id == self.identity.node_id:
            # This node's own share coming back (e.g. relayed after a restart): its work
            # commits to this node, so nobody gains by sending it; nothing charged.
            self.stats.shares_rejected["own-share-returned"] += 1
            return False
        claim = self._claims_hold(share)
        if claim is not None:
            return self._reject_share(peer_key, claim, Penalty.INVALID_SHARE)
        tip = self.tips.tip
        if tip is None:
            # No template yet: this node cannot judge; not the peer's fault.
            self.stats.shares_rejected["no-tip-yet"] += 1
            return False
        if self._record(share.node_id) is None:
            return self._finder_unknown(peer_key, share, tip)
        return self._verify(peer_key, share, tip)

    def _finder_unknown(self, peer_key: bytes, share: FedShare, tip: ChainTip) -> bool | None:
        """A share whose finder's record this node lacks: checked but for the split (junk
        is refused and charged as usual: False), then refused uncharged, held, and the
        record asked for (None: not judged yet)."""
        if share.share_hash not in self.window:
            now = self.clock.seconds()
            verdict = verify_share(
                share, federation_target=self.share_target(now), tip=tip, window=None, now=now
            )
            if verdict.reason is not None:
                return self._refuse(peer_key, share, tip, verdict.reason, now)
            self.held.hold(share, peer_key)
        self.stats.shares_rejected["finder-record-unknown"] += 1
        self.records.want(share.node_id)
        return None

    def _verify(
        self, peer_key: bytes, share: FedShare, tip: ChainTip, *, held: bool = False
    ) -> bool:
        """Verify a share whose payout script is its finder's record's; into the window
        when accepted. ``held``: it waited for the record, so a refusal is not charged."""
        if share.share_hash in self.window:
            return not held
        now = self.clock.seconds()
        verdict = verify_share(
            share,
            federation_target=self.share_target(now),
            tip=tip,
            window=self.window,
            now=now,
        )
        if verdict.reason is not None:
            self._refuse(peer_key, share, tip, verdict.reason, now, charge=not held)
            return False
        self._add(share, now)
        self.stats.shares_accepted += 1
        self.reputation.credit(peer_key, Reward.VALID_SHARE)
        return True

    def _refuse(
        self,
        peer_key: bytes,
        share: FedShare,
        tip: ChainTip,
        reason: Rejection,
        now: float,
        *,
        charge: bool = True,
    ) -> bool:
        """Count (and unless excused, charge) a share ``verify_share`` rejected; False."""
        if reason is Rejection.STALE and _not_late(share, tip, now):
            # The sender is ahead of this node's tip (or raced a block this node saw a
            # moment ago): not its fault, nothing charged.
            self.stats.shares_rejected["stale-uncharged"] += 1
            return False
        if reason is Rejection.UNDERPAYS and not self.participating(now):
            # This node's window is still filling (see ``participating``): an honest
            # coinbase can look unfair to it. Refused, not charged.
            self.stats.shares_rejected["underpays-warming-up"] += 1
            return False
        if not charge:
            self.stats.shares_rejected[f"held-{reason.value}"] += 1
            return False
        return self._reject_share(peer_key, reason.value, penalty_for(reason))

    def record_known(self, record: ContactRecord) -> None:
        """A finder's record arrived (the book's subscriber): verify the shares held for
        it against its payout script; accepted ones enter the window and are relayed.
        Refusals are not charged: the sender could not know the record either."""
        try:
            self._recheck(record)
        except Exception:
            self.log.failure("re-checking shares held for {node} failed", node=record.node_id.hex())

    def _recheck(self, record: ContactRecord) -> None:
        for share, peer_key in self.held.take(record.node_id):
            tip = self.tips.tip
            if share.payout_script != record.payout_script:
                self.stats.shares_rejected["held-payout-script-not-of-record"] += 1
            elif tip is not None and self._verify(peer_key, share, tip, held=True):
                self.stats.held_accepted += 1
                if self.publisher is not None:
                    self.publisher.publish_fed_share(share.to_dict())

    def on_block(self, peer_key: bytes, payload: dict[str, Any]) -> bool | None:
        """Check a peer's found block; True (relay it) when it is a block that settles
        fairly with this node's window. An underpaying block costs its finder. A block
        whose finder's record is unknown here is not judged (its payout script is only
        the relay's word): None, not charged, the record asked for."""
        try:
            block = FedShare.from_dict(payload)
        except FedShareError:
            return self._reject_block(peer_key, "malformed", Penalty.MALFORMED)
        claim = self._claims_hold(block)
        if claim is not None:
            return self._reject_block(peer_key, claim, Penalty.INVALID_BLOCK)
        problem = self._block_problem(block)
        if problem is not None:
            return self._reject_block(peer_key, problem, Penalty.INVALID_BLOCK)
        if self._record(block.node_id) is None:
            self.stats.blocks_rejected["finder-record-unknown"] += 1
            self.records.want(block.node_id)
            return None
        coinbase = Transaction.parse(block.coinbase)  # parsed in _block_problem
        weights = self.window.script_weights(block.template_time)
        try:
            check = check_settlement(coinbase.outputs, weights, block.payout_script)
        except SettlementError:
            return self._reject_block(peer_key, "unsettleable", Penalty.INVALID_BLOCK)
        if check.underpaid and not self.participating():
            self.stats.blocks_rejected["underpays-warming-up"] += 1  # as for shares
            return False
        if check.underpaid:
            self.log.warn(
                "block {hash} by federation node {node} underpays the federation by "
                "{shortfall} sat (tolerance {allowed} of {reward}); its reputation is lowered",
                hash=block.share_hash[::-1].hex(),
                node=block.node_id.hex(),
                shortfall=check.shortfall,
                allowed=check.allowed,
                reward=check.reward,
            )
            return self._reject_block(block.public_key, "underpays", Penalty.UNDERPAID)
        self.stats.blocks_accepted += 1
        self.reputation.credit(block.public_key, Reward.FAIR_SETTLEMENT)
        if block.public_key != peer_key:
            self.reputation.credit(peer_key, Reward.TIMELY)
        return True

    def _block_problem(self, block: FedShare) -> str | None:
        """Why a gossiped block is not a block of its claimed node (None: it is)."""
        header = block.block_header
        try:
            network_target = bits_to_target(header.bits)
        except ValueError:
            return "bad-bits"
        if hash_to_int(block.share_hash) > network_target:
            return "insufficient-work"
        try:
            coinbase = Transaction.parse(block.coinbase)
        except SerializationError:
            return "bad-coinbase"
        if node_commitments(coinbase.outputs) != [block.node_id]:
            return "not-committed"
        if root_from_branch(sha256d(block.coinbase), block.branch) != header.merkle_root:
            return "bad-merkle-root"
        now = self.clock.seconds()
        if not now - BLOCK_MAX_AGE <= block.time <= now + BLOCK_MAX_AGE:
            return "bad-time"
        if not block.time - MAX_TEMPLATE_AGE <= block.template_time <= block.time:
            return "bad-template-time"
        return None

    # -- Federation port: what the pool core calls ------------------------------------

    def coinbase_outputs(self, reward: int, template_time: int) -> list[TxOut]:
        """The settlement outputs of a template built at ``template_time`` (this node the
        finder) followed by the node-id commitment."""
        weights = self.window.script_weights(template_time)
        outputs = split_reward(reward, weights, self.payout_script)
        txouts = [TxOut(amount, script) for script, amount in outputs]
        txouts.append(node_commitment_output(self.identity.node_id))
        return txouts

    def _fed_share(self, work: MinedWork, target: int) -> FedShare:
        return FedShare(
            node_id=self.identity.node_id,
            public_key=self.identity.public_key,
            payout_script=self.payout_script,
            header=work.header,
            coinbase=work.coinbase,
            branch=tuple(work.branch),
            height=work.height,
            target=target,
            time=int(self.clock.seconds()),
            template_time=work.template_time,
        )

    def publish_share(self, work: MinedWork) -> bool:
        """A miner's share met the federation target: into the window and onto the gossip.

        Verified first like a peer's share (a share this node would reject is never
        sent: its peers would charge this node for it). Returns whether it was sent.
        """
        target = self.share_target()
        tip = self.tips.tip
        if not target or tip is None or hash_to_int(sha256d(work.header)) > target:
            return False
        if not self.participating():
            self.stats.shares_rejected["own-warming-up"] += 1
            return False
        fed = self._fed_share(work, target)
        now = self.clock.seconds()
        verdict = verify_share(fed, federation_target=target, tip=tip, window=self.window, now=now)
        if verdict.reason is not None:
            self.stats.shares_rejected[f"own-{verdict.reason.value}"] += 1
            self.log.debug(
                "own federation share not sent: {reason} ({detail})",
                reason=verdict.reason.value,
                detail=verdict.detail,
            )
            return False
        self._add(fed, now)
        self.stats.shares_published += 1
        if self.publisher is not None:
            self.publisher.publish_fed_share(fed.to_dict())
        return True

    def publish_block(self, work: MinedWork) -> bool:
        """Gossip a block this node found, at once (peers switch work sooner)."""
        if self.publisher is None or not self.participating():
            return False
        target = bits_to_target(int.from_bytes(work.header[72:76], "little"))
        fed = self._fed_share(work, target)
        self.stats.blocks_published += 1
        self.publisher.publish_block(fed.to_dict())
        return True

    # -- read model ---------------------------------------------------------------------

    def status(self) -> dict[str, Any]:
        """The window and share target for the operator view (JSON-ready)."""
        now = self.clock.seconds()
        state = self.window.at(now)
        own = state.node(self.identity.node_id)
        target = self.share_target(now)
        return {
            "window": {
                "duration": self.window.duration,
                "shares": state.shares,
                "total_difficulty": _difficulty(state.total_work),
                "own_shares": own.shares,
                "own_difficulty": _difficulty(own.work),
                "own_part": float(state.part(self.identity.node_id)),
                "nodes": len(state.nodes),
            },
            "share_target": f"{target:064x}",
            "participating": self.participating(now),
            "verified": {
                "shares_accepted": self.stats.shares_accepted,
                "shares_published": self.stats.shares_published,
                "shares_rejected": dict(self.stats.shares_rejected),
                "blocks_accepted": self.stats.blocks_accepted,
                "blocks_published": self.stats.blocks_published,
                "blocks_rejected": dict(self.stats.blocks_rejected),
                "shares_held": len(self.held),
                "held_accepted": self.stats.held_accepted,
                "records_requested": self.records.requested,
            },
        }

    def operator_status(self, status: FederationStatus, payout_address: str) -> dict[str, Any]:
        """The whole operator view as one JSON object (``otedama federation status``):
        the service's identity and peers completed with the payout address, the window,
        the share target and each peer's part of the window."""
        state = self.window.at(self.clock.seconds())
        view = status.to_json()
        view["payout_address"] = payout_address
        view.update(self.status())
        for peer in view["peers"]:
            peer["window_share"] = float(state.part(bytes.fromhex(peer["node_id"])))
        return view


def _not_late(share: FedShare, tip: ChainTip, now: float) -> bool:
    """A stale share the sender is not to blame for: it claims a height beyond this
    node's next block (the sender saw a newer block first), or this node's tip is younger
    than ``TIP_GRACE`` (the share raced the block)."""
    return share.height > tip.height + 1 or now - tip.since <= TIP_GRACE


def _difficulty(work: int) -> float:
    """Work in units of difficulty 1 (2**32 hashes), for people."""
    return work / 2**32

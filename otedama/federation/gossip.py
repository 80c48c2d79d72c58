"""Gossip: the federation's TCP links, and how items (fed-shares, blocks) spread over them.

A new item is pushed whole to a few peers picked at random weighted by reputation, then
announced (``Inventory``) to the rest, who ask for it (``GetData``) if they lack it. Items
are deduplicated by hash in a bounded LRU, so each is handled once however many peers
send it. Peers whose reputation is below ``reputation_threshold`` are neither sent to nor
believed: their items, announcements and peer lists are ignored.

What a peer sends is checked by the codec and the link (``peer.PeerLink``); offences
(oversized frames, bad msgpack, bad signatures, replays, floods) are charged to its
reputation, and repeated ones drop the link. A key or host dropped ``strikes_to_ban``
times is banned for ``ban_time``. Verification of items is not done here: their payloads
go to an ``ItemHandler``; reputation is kept by a ``ReputationSink``.

Below the handshake (``federation.security``): with a ``LinkTLS`` the listener accepts TLS
(and plain links unless TLS is required) and records that announce ``tls`` are dialled
over TLS; with a ``HostPolicy`` (the node's guard) no blocked host is dialled, whether
named in a record or reached through a host name.
"""

from __future__ import annotations

import os
import random
from collections import OrderedDict
from collections.abc import Callable, Iterable, Iterator
from dataclasses import dataclass, field
from typing import Any, Generic, Protocol, TypeVar

from twisted.application.internet import ClientService, backoffPolicy
from twisted.internet.endpoints import HostnameEndpoint
from twisted.internet.interfaces import IAddress
from twisted.internet.protocol import Factory
from twisted.logger import Logger

from otedama.federation.identity import Identity, node_id_of
from otedama.federation.peer import LinkSettings, PeerLink
from otedama.federation.records import ContactRecord, RecordBook
from otedama.federation.security import (
    HostPolicy,
    LinkTLS,
    SniffingFactory,
    UnverifiedClientTLS,
    tls_client_factory,
)
from otedama.federation.wire import (
    MAX_PEER_RECORDS,
    Codec,
    Envelope,
    GetData,
    Hello,
    Inventory,
    Item,
    Peers,
    Ping,
    Pong,
    ReplayGuard,
)

__all__ = [
    "Gossip",
    "GossipSettings",
    "ItemHandler",
    "PeerInfo",
    "ReputationSink",
    "weighted_sample",
]

REQUEST_TIMEOUT = 10.0
"""Seconds before an item asked for and not received is asked of another peer."""

_FINAL_REFUSALS = frozenset(
    ("self", "wrong-key", "duplicate", "other-network", "other-version", "banned")
)

K = TypeVar("K")
V = TypeVar("V")


class ReputationSink(Protocol):
    """Where gossip reports behaviour and reads trust (``reputation.py`` implements it)."""

    def penalise(self, peer_key: bytes, reason: str) -> None: ...
    def reward(self, peer_key: bytes, reason: str) -> None: ...
    def score(self, peer_key: bytes) -> float: ...


class ItemHandler(Protocol):
    """Who verifies gossiped items; ``True`` means valid (relay it), ``False`` invalid,
    ``None`` not judged yet (not relayed, not charged, and its hash forgotten so that a
    later copy is handled again)."""

    def on_fed_share(self, peer_key: bytes, payload: dict[str, Any]) -> bool | None: ...
    def on_block(self, peer_key: bytes, payload: dict[str, Any]) -> bool | None: ...


@dataclass(frozen=True)
class GossipSettings:
    """Gossip limits; ``link`` holds the per-link ones."""

    link: LinkSettings
    max_peers: int = 50
    reputation_threshold: float = 0.5
    push_fanout: int = 3
    ping_interval: float = 30.0
    idle_timeout: float = 90.0
    strikes_to_ban: int = 3
    ban_time: float = 3600.0
    seen_items: int = 100_000
    cached_items: int = 4096
    cached_bytes: int = 16 * 1024 * 1024
    max_bans: int = 4096
    max_known_peers: int = 1024
    max_dial_attempts: int = 8
    """Failed connection attempts to a record's address before giving up on that record."""


class BoundedDict(OrderedDict[K, V], Generic[K, V]):
    """An LRU dict: at most ``limit`` entries, the least recently set forgotten first."""

    def __init__(self, limit: int) -> None:
        super().__init__()
        self.limit = limit

    def put(self, key: K, value: V) -> None:
        self[key] = value
        self.move_to_end(key)
        while len(self) > self.limit:
            self.popitem(last=False)


class ItemCache:
    """Recent items by hash for answering ``GetData``: bounded in count and in bytes."""

    def __init__(self, max_items: int, max_bytes: int) -> None:
        self.max_items = max_items
        self.max_bytes = max_bytes
        self.bytes = 0
        self._items: OrderedDict[bytes, Item] = OrderedDict()

    def __len__(self) -> int:
        return len(self._items)

    def get(self, digest: bytes) -> Item | None:
        return self._items.get(digest)

    def put(self, digest: bytes, item: Item) -> None:
        if digest in self._items or len(item.raw) > self.max_bytes:
            return
        self._items[digest] = item
        self.bytes += len(item.raw)
        while len(self._items) > self.max_items or self.bytes > self.max_bytes:
            _, old = self._items.popitem(last=False)
            self.bytes -= len(old.raw)


@dataclass
class PeerInfo:
    """What the operator view shows of a peer."""

    public_key: bytes
    label: str = ""
    address: str = ""
    last_seen: float = 0.0
    connected: bool = False

    @property
    def node_id(self) -> bytes:
        return node_id_of(self.public_key)


@dataclass
class GossipStats:
    items_received: int = 0
    items_duplicate: int = 0
    items_invalid: int = 0
    items_ignored: int = 0
    items_deferred: int = 0
    """Items the handler could not judge yet (e.g. a share whose finder's record is unknown)."""
    items_published: int = 0
    offences: dict[str, int] = field(default_factory=dict)
    drops: dict[str, int] = field(default_factory=dict)
    closes: dict[str, int] = field(default_factory=dict)
    refused_connections: int = 0
    handler_errors: int = 0
    plaintext_refused: int = 0
    """Plain (not TLS) connections refused because ``federation.tls`` is required."""
    dials_refused: int = 0
    """Dials not made (or closed at connect) because the host policy blocks the host."""
    dials_without_tls: int = 0
    """Records not dialled because TLS is required and they do not announce it."""


def weighted_sample(
    candidates: list[PeerLink], weights: list[float], count: int, rng: random.Random
) -> list[PeerLink]:
    """``count`` distinct candidates, each drawn with probability ∝ its weight.

    Efraimidis and Spirakis: the ``count`` largest keys ``u ** (1 / w)``.
    """
    keyed = [(rng.random() ** (1.0 / max(weight, 1e-9)), i) for i, weight in enumerate(weights)]
    keyed.sort(reverse=True)
    return [candidates[i] for _, i in keyed[:count]]


class _Factory(Factory):
    noisy = False

    def __init__(self, gossip: Gossip, outbound_key: bytes | None) -> None:
        self.gossip = gossip
        self.outbound_key = outbound_key

    def buildProtocol(self, addr: IAddress | None) -> PeerLink | None:
        host = str(getattr(addr, "host", "unknown"))
        if self.outbound_key is None:
            if not self.gossip.admit(host):
                return None
        elif not self.gossip.may_dial(host):  # a host name that resolved to a blocked IP
            return None
        return PeerLink(self.gossip, host, self.outbound_key)


class Gossip:
    """This node's gossip: links, items, offences and bans (one per node)."""

    log = Logger()

    def __init__(
        self,
        identity: Identity,
        settings: GossipSettings,
        reputation: ReputationSink,
        handler: ItemHandler,
        reactor: Any,
        *,
        book: RecordBook | None = None,
        own_record: Callable[[float], ContactRecord] | None = None,
        rng: random.Random | None = None,
        tls: LinkTLS | None = None,
        policy: HostPolicy | None = None,
    ) -> None:
        self.identity = identity
        self.gossip_settings = settings
        self.settings = settings.link
        self.reputation = reputation
        self.handler = handler
        self.reactor = reactor
        self.clock: Any = reactor
        self.book = book
        self.own_record = own_record
        self.rng = rng or random.Random()
        self.tls = tls
        self.policy = policy
        self._client_tls = UnverifiedClientTLS() if tls is not None else None
        self.links: set[PeerLink] = set()
        self.ready: dict[bytes, PeerLink] = {}
        self.services: dict[bytes, ClientService] = {}
        self.known: BoundedDict[bytes, PeerInfo] = BoundedDict(settings.max_known_peers)
        self.seen: BoundedDict[bytes, None] = BoundedDict(settings.seen_items)
        self.items = ItemCache(settings.cached_items, settings.cached_bytes)
        self.requested: BoundedDict[bytes, float] = BoundedDict(settings.cached_items)
        self.bans: BoundedDict[bytes | str, float] = BoundedDict(settings.max_bans)
        self.strikes: BoundedDict[bytes | str, int] = BoundedDict(settings.max_bans)
        self.replay = ReplayGuard(max_senders=max(16, settings.max_peers * 4))
        self.gave_up: BoundedDict[bytes, int] = BoundedDict(settings.max_known_peers)
        self.refusals: BoundedDict[bytes, tuple[int, int]] = BoundedDict(settings.max_known_peers)
        """Per dialled key: (its record's time, links it closed before they were ready)."""
        self.stats = GossipStats()
        self.running = True
        self._events: dict[str, int] = {}
        self._seq = Codec.fresh_seq(self.clock.seconds())

    def next_seq(self) -> int:
        """The next envelope sequence number of this node, shared by all its links: a
        peer's replay guard tracks one sequence per sender key, so two links to one peer
        (while a duplicate is settled, or a replaced link) must not reuse or go back."""
        self._seq = max(self._seq + 1, Codec.fresh_seq(self.clock.seconds()))
        return self._seq

    # -- entry points -------------------------------------------------------------------

    def factory(self) -> Factory:
        """The factory for the gossip listener (inbound links; TLS and plain told apart
        by their first byte when TLS is on)."""
        links = _Factory(self, None)
        if self.tls is None:
            return links
        return SniffingFactory(
            links,
            self.tls,
            self.clock,
            on_plaintext=self._plaintext_refused,
            timeout=self.settings.handshake_timeout,
        )

    def _plaintext_refused(self, host: str) -> None:
        self.stats.plaintext_refused += 1
        self._count("refused (plain text; federation.tls is required)")

    def may_dial(self, host: str) -> bool:
        """Whether the host policy lets this node open a link to ``host`` (counted if not)."""
        reason = None if self.policy is None else self.policy.blocked(host)
        if reason is None:
            return True
        assert self.policy is not None
        self.stats.dials_refused += 1
        self.policy.note_refused(host, f"federation-dial: {reason}")
        self._count(f"not dialled ({reason})")
        return False

    def trusted(self, key: bytes) -> bool:
        return self.reputation.score(key) >= self.gossip_settings.reputation_threshold

    def banned(self, who: bytes | str) -> bool:
        until = self.bans.get(who)
        if until is None:
            return False
        if until <= self.clock.seconds():
            del self.bans[who]
            return False
        return True

    def admit(self, host: str) -> bool:
        """Whether to accept one more inbound connection from ``host``.

        When every slot is taken, a connection may still be one of the peers this node is
        dialling, dialling back (whose slot it would fill): as many handshakes as there
        are such dials go ahead, and ``link_hello`` refuses any other key as ``full``.
        """
        if not self.running or self.banned(host):
            self.stats.refused_connections += 1
            return False
        if self.slots_used() >= self.gossip_settings.max_peers:
            dialling = sum(1 for key in self.services if key not in self.ready)
            handshakes = sum(1 for link in self.links if not link.outbound and not link.hello)
            if handshakes >= dialling:
                self.stats.refused_connections += 1
                return False
        return True

    def slots_used(self) -> int:
        """Peers held or wanted: one per outbound service, one per inbound link from a
        key not dialled (a dialled key's inbound link takes its dial's slot)."""
        inbound = sum(
            1 for link in self.links if not link.outbound and link.peer_key not in self.services
        )
        return len(self.services) + inbound

    def connect(self, record: ContactRecord) -> bool:
        """Keep an outbound link to ``record``'s node (a ``ClientService`` with back-off)."""
        key = record.public_key
        if (
            not self.running
            or key == self.identity.public_key
            or key in self.ready
            or key in self.services
            or self.banned(key)
            or self.gave_up.get(key) == record.time
            or self.slots_used() >= self.gossip_settings.max_peers
        ):
            return False
        if self.tls is not None and self.tls.required and not record.tls:
            self.stats.dials_without_tls += 1
            self._count("not dialled (no TLS; federation.tls is required)")
            return False
        if not self.may_dial(record.host):
            return False
        endpoint: Any = HostnameEndpoint(self.reactor, record.host, record.port, timeout=10)
        factory: Any = _Factory(self, key)
        if self._client_tls is not None and record.tls:
            factory = tls_client_factory(self._client_tls, factory, self.clock)
        backoff = backoffPolicy()
        limit = self.gossip_settings.max_dial_attempts

        def retry(attempt: int) -> float:
            # A record nobody answers for (stale, or planted by a peer) does not hold a
            # slot forever: give up until a newer record of that node turns up.
            if attempt >= limit:
                self.clock.callLater(0, self._give_up, key, record.time)
            return float(backoff(attempt))

        service = ClientService(endpoint, factory, retryPolicy=retry, clock=self.clock)
        self.services[key] = service
        self.refusals.put(key, (record.time, 0))
        self._know(key, label=record.label, address=record.address)
        service.startService()
        return True

    def _give_up(self, key: bytes, record_time: int) -> None:
        if key in self.ready:
            return
        service = self.services.pop(key, None)
        if service is not None:
            service.stopService()
            self.gave_up.put(key, record_time)
            self._count("gave-up")

    def _refused(self, key: bytes) -> None:
        """A dialled peer closed the link before it was ready (full, or not really there).

        ``ClientService`` counts only failed connects, so a peer that accepts and closes
        would be redialled forever, holding a slot: give up after ``max_dial_attempts``.
        """
        record_time, count = self.refusals.get(key, (0, 0))
        if count + 1 < self.gossip_settings.max_dial_attempts:
            self.refusals.put(key, (record_time, count + 1))
            return
        self.refusals.pop(key, None)
        self.clock.callLater(0, self._give_up, key, record_time)

    def disconnect(self, key: bytes) -> None:
        """Stop dialling ``key`` and close its link."""
        service = self.services.pop(key, None)
        if service is not None:
            service.stopService()
        link = self.ready.get(key)
        if link is not None:
            link.close("disconnected")

    def publish(self, kind: str, payload: dict[str, Any]) -> bytes:
        """Spread a new own item (``fed-share`` or ``block``); returns its hash."""
        item = Item.of(kind, payload)
        self.stats.items_published += 1
        self._spread(item, None)
        return item.hash

    def tick(self) -> None:
        """Periodic: ping live links, drop idle ones, forget expired bans."""
        now = self.clock.seconds()
        for link in list(self.ready.values()):
            if now - link.last_received > self.gossip_settings.idle_timeout:
                link.close("idle")
            else:
                link.send(Ping(os.urandom(8)))
        for who in [w for w, until in self.bans.items() if until <= now]:
            del self.bans[who]
        self._log_summary()

    def _count(self, event: str) -> None:
        self._events[event] = self._events.get(event, 0) + 1

    def _log_summary(self) -> None:
        """One line per tick for what strangers can make happen (links, closes, bans)."""
        if not self._events:
            return
        events = ", ".join(f"{count} {event}" for event, count in sorted(self._events.items()))
        self._events = {}
        self.log.info(
            "federation links: {events}; {ready} ready", events=events, ready=len(self.ready)
        )

    def stop(self) -> None:
        """Stop dialling and close every link."""
        self.running = False
        for key in list(self.services):
            self.services.pop(key).stopService()
        for link in list(self.links):
            link.close("shutdown")

    def peers(self) -> Iterator[PeerInfo]:
        """Every peer this node knows of (linked or not), for the operator view."""
        for key, info in self.known.items():
            info.connected = key in self.ready
            yield info

    # -- spreading ----------------------------------------------------------------------

    def _spread(self, item: Item, source: PeerLink | None) -> None:
        digest = item.hash
        self.seen.put(digest, None)
        self.items.put(digest, item)
        targets = [
            link for key, link in self.ready.items() if link is not source and self.trusted(key)
        ]
        weights = [self.reputation.score(link.peer_key or b"") for link in targets]
        pushed = weighted_sample(targets, weights, self.gossip_settings.push_fanout, self.rng)
        announce = Inventory(((item.kind, digest),))
        for link in pushed:
            link.send(item)
        for link in targets:
            if link not in pushed:
                link.send(announce)

    def _handle_item(self, link: PeerLink, key: bytes, item: Item) -> None:
        digest = item.hash
        self.requested.pop(digest, None)
        if digest in self.seen:
            self.stats.items_duplicate += 1
            return
        self.seen.put(digest, None)
        self.stats.items_received += 1
        try:
            if item.kind == "block":
                valid = self.handler.on_block(key, item.data)
            else:
                valid = self.handler.on_fed_share(key, item.data)
        except Exception:
            # Our verifier's fault, not the peer's: neither charged nor relayed.
            self.stats.handler_errors += 1
            self.log.failure("federation {kind} handler failed", kind=item.kind)
            return
        if valid is None:
            self.stats.items_deferred += 1
            self.seen.pop(digest, None)
            return
        if not valid:
            self.stats.items_invalid += 1
            self.reputation.penalise(key, f"invalid-{item.kind}")
            return
        self.reputation.reward(key, f"valid-{item.kind}")
        self._spread(item, link)

    def _handle_inventory(self, link: PeerLink, refs: Iterable[tuple[str, bytes]]) -> None:
        now = self.clock.seconds()
        wanted = []
        for kind, digest in refs:
            asked = self.requested.get(digest)
            if digest in self.seen or (asked is not None and now - asked < REQUEST_TIMEOUT):
                continue
            self.requested.put(digest, now)
            wanted.append((kind, digest))
        if wanted:
            link.send(GetData(tuple(wanted)))

    def _handle_getdata(self, link: PeerLink, refs: Iterable[tuple[str, bytes]]) -> None:
        for _, digest in refs:
            item = self.items.get(digest)
            if item is not None:
                link.send(item)

    def _handle_peers(self, records: Iterable[bytes]) -> None:
        if self.book is None:
            return
        now = self.clock.seconds()
        for value in records:
            record = self.book.offer(value, now)
            if record is not None:
                self.connect(record)

    def _peer_records(self) -> Peers:
        """This node's own record first, then the newest records it knows."""
        records = []
        if self.own_record is not None:
            records.append(self.own_record(self.clock.seconds()))
        if self.book is not None:
            records += sorted(self.book, key=lambda r: r.time, reverse=True)
        return Peers(tuple(r.encode() for r in records[:MAX_PEER_RECORDS]))

    # -- LinkOwner: what links tell us --------------------------------------------------

    def link_check_replay(self, envelope: Envelope) -> str | None:
        return self.replay.check(envelope, self.clock.seconds())

    def link_opened(self, link: PeerLink) -> None:
        self.links.add(link)

    def link_hello(self, link: PeerLink, hello: Hello, key: bytes) -> str | None:
        if key == self.identity.public_key:
            return "self"
        if hello.network != self.settings.network:
            return "other-network"
        if hello.version != self.settings.version:
            return "other-version"
        if link.outbound_key is not None and key != link.outbound_key:
            return "wrong-key"
        if self.banned(key):
            return "banned"
        if (
            not link.outbound
            and key not in self.services
            and self.slots_used() > self.gossip_settings.max_peers  # this link counts too
        ):
            return "full"
        return None

    def link_ready(self, link: PeerLink) -> str | None:
        key = link.peer_key
        assert key is not None
        held = self.ready.get(key)
        if held is not None:
            # Both sides keep the link opened by the smaller key, so both keep the same one.
            keep_new = (link.initiator or b"") < (held.initiator or b"")
            if not keep_new:
                return "duplicate"
            self.ready[key] = link
            held.close("duplicate")
        else:
            self.ready[key] = link
        self.refusals.pop(key, None)
        hello = link.hello
        self._know(key, label=hello.label if hello else "", address=link.address, seen=True)
        self._count("linked")
        link.send(self._peer_records())
        return None

    def link_message(self, link: PeerLink, envelope: Envelope) -> None:
        key = link.peer_key
        assert key is not None
        info = self.known.get(key)
        if info is not None:
            info.last_seen = self.clock.seconds()
        body = envelope.body
        if isinstance(body, Ping):
            link.send(Pong(body.nonce))
        elif isinstance(body, Pong):
            pass
        elif not self.trusted(key):
            self.stats.items_ignored += 1
        elif isinstance(body, Item):
            self._handle_item(link, key, body)
        elif isinstance(body, Inventory):
            self._handle_inventory(link, body.items)
        elif isinstance(body, GetData):
            self._handle_getdata(link, body.items)
        elif isinstance(body, Peers):
            self._handle_peers(body.records)
        else:  # a second hello
            link.offence("unexpected-hello")

    def link_offence(self, link: PeerLink, reason: str, dropped: bool) -> None:
        offences = self.stats.offences
        offences[reason] = offences.get(reason, 0) + 1
        if link.peer_key is not None:
            self.reputation.penalise(link.peer_key, reason)
        if dropped:
            self.stats.drops[reason] = self.stats.drops.get(reason, 0) + 1
            self._strike(link.peer_key if link.peer_key is not None else link.host)

    def _strike(self, who: bytes | str) -> None:
        count = self.strikes.get(who, 0) + 1
        if count < self.gossip_settings.strikes_to_ban:
            self.strikes.put(who, count)
            return
        self.strikes.pop(who, None)
        self.bans.put(who, self.clock.seconds() + self.gossip_settings.ban_time)
        if isinstance(who, bytes):
            self.disconnect(who)
        self._count("banned")

    def link_lost(self, link: PeerLink) -> None:
        self.links.discard(link)
        if link.close_reason:
            closes = self.stats.closes
            closes[link.close_reason] = closes.get(link.close_reason, 0) + 1
            self._count(f"closed ({link.close_reason})")
        key = link.peer_key
        if key is not None and self.ready.get(key) is link:
            del self.ready[key]
            info = self.known.get(key)
            if info is not None:
                info.last_seen = self.clock.seconds()
        if (
            link.outbound_key is not None
            and link.outbound_key in self.services
            and self.ready.get(link.outbound_key) is None
            and link.close_reason not in _FINAL_REFUSALS
        ):
            self._refused(link.outbound_key)
        if link.outbound_key is not None and link.close_reason in _FINAL_REFUSALS:
            # Dialling again would meet the same refusal: stop the service, unless the
            # link that won over this duplicate is an outbound one (the service's own).
            survivor = self.ready.get(link.outbound_key)
            if not (
                link.close_reason == "duplicate" and survivor is not None and survivor.outbound
            ):
                service = self.services.pop(link.outbound_key, None)
                if service is not None:
                    service.stopService()

    def _know(self, key: bytes, *, label: str, address: str, seen: bool = False) -> None:
        info = self.known.get(key) or PeerInfo(key)
        info.label = label or info.label
        info.address = address or info.address
        if seen:
            info.last_seen = self.clock.seconds()
        self.known.put(key, info)

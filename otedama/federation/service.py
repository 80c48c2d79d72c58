"""The federation as one Twisted service: identity, DHT discovery and gossip, with a read model.

``federation_service(config, reactor, handler=…, reputation=…)`` is what ``tap.py`` calls:
it loads (or creates) the node key from ``app.data_dir`` — file I/O, so at start-up only —
and returns a ``FederationService``. Starting it listens for gossip on TCP
``federation.listen_port`` and joins the DHT on UDP at the same port number, then keeps
links to the members it discovers. ``status()`` is the operator view's data.

``tls`` (a ``LinkTLS``, from ``federation.tls``) puts TLS on the gossip links and
announces it in the contact record; ``wrap_listener`` wraps the gossip listener's factory
(the node's guard: firewall, bans and per-IP caps at accept, before any byte is read);
``policy`` (the same guard) stops dials to blocked hosts and drops their DHT datagrams.
"""

from __future__ import annotations

from collections.abc import Callable, Mapping, Sequence
from dataclasses import dataclass, replace
from typing import Any

from twisted.application.service import Service
from twisted.internet.defer import Deferred
from twisted.internet.task import LoopingCall
from twisted.logger import Logger

from otedama.chain.address import address_to_script
from otedama.chain.params import get_network
from otedama.config import Config
from otedama.federation.dht import DhtNode
from otedama.federation.gossip import Gossip, GossipSettings, ItemHandler, ReputationSink
from otedama.federation.identity import Identity, load_or_create
from otedama.federation.peer import LinkSettings
from otedama.federation.records import FEATURE_TLS, ContactRecord, RecordBook
from otedama.federation.security import TLS_OFF, HostPolicy, LinkTLS

__all__ = ["FederationService", "FederationStatus", "PeerStatus", "federation_service"]

_ANY_INTERFACE = ("", "0.0.0.0", "::")


@dataclass(frozen=True)
class PeerStatus:
    """One known peer as the operator sees it."""

    node_id: str
    label: str
    address: str
    reputation: float
    connected: bool
    last_seen: float
    tls: bool = False
    """Its contact record announces TLS (its gossip port accepts it)."""

    def to_json(self) -> dict[str, Any]:
        return {
            "node_id": self.node_id,
            "label": self.label,
            "address": self.address,
            "reputation": self.reputation,
            "connected": self.connected,
            "last_seen": self.last_seen,
            "tls": self.tls,
        }


@dataclass(frozen=True)
class FederationStatus:
    """This node's federation identity and its peers (ids and keys in hex)."""

    node_id: str
    label: str
    public_key: str
    listen_address: str
    network: str
    peers: tuple[PeerStatus, ...]
    tls: str = TLS_OFF
    """``federation.tls`` in force: ``off``, ``on`` or ``required``."""

    @property
    def connected_peers(self) -> int:
        return sum(1 for peer in self.peers if peer.connected)

    def to_json(self) -> dict[str, Any]:
        return {
            "node_id": self.node_id,
            "label": self.label,
            "public_key": self.public_key,
            "listen_address": self.listen_address,
            "tls": self.tls,
            "network": self.network,
            "peers": [peer.to_json() for peer in self.peers],
        }


class FederationService(Service):
    """Gossip listener, DHT membership and the periodic upkeep of both."""

    log = Logger()

    def __init__(
        self,
        identity: Identity,
        *,
        network: str,
        payout_script: bytes,
        listen_port: int,
        handler: ItemHandler,
        reputation: ReputationSink,
        reactor: Any,
        interface: str = "0.0.0.0",
        advertise_host: str = "",
        bootstrap_peers: Sequence[str] = (),
        max_peers: int = 50,
        reputation_threshold: float = 0.5,
        upkeep_interval: float = 30.0,
        dht_options: Mapping[str, Any] | None = None,
        link_options: Mapping[str, Any] | None = None,
        tls: LinkTLS | None = None,
        policy: HostPolicy | None = None,
        wrap_listener: Callable[[Any], Any] | None = None,
    ) -> None:
        self.identity = identity
        self.network = network
        self.payout_script = payout_script
        self.listen_port = listen_port
        self.interface = interface
        self.advertise_host = advertise_host
        self.reactor = reactor
        self.reputation = reputation
        self.upkeep_interval = upkeep_interval
        self.tls = tls
        self.wrap_listener = wrap_listener
        self.book = RecordBook(network, identity.node_id)
        link = LinkSettings(
            network, listen_port=listen_port, label=identity.label, **(link_options or {})
        )
        self.gossip = Gossip(
            identity,
            GossipSettings(
                link,
                max_peers=max_peers,
                reputation_threshold=reputation_threshold,
                ping_interval=upkeep_interval,
            ),
            reputation,
            handler,
            reactor,
            book=self.book,
            own_record=self.own_record,
            tls=tls,
            policy=policy,
        )
        self.dht = DhtNode(
            node_id=identity.node_id,
            network=network,
            book=self.book,
            make_record=self.own_record,
            on_record=self.gossip.connect,
            clock=reactor,
            bootstrap=bootstrap_peers,
            interface=interface if interface not in ("", "::") else "0.0.0.0",
            policy=policy,
            **(dht_options or {}),
        )
        self._tcp: Any = None
        self._upkeep: LoopingCall | None = None

    # -- what the pool core calls -----------------------------------------------------

    def publish_fed_share(self, payload: dict[str, Any]) -> bytes:
        """Gossip a new own federation share; returns its item hash."""
        return self.gossip.publish("fed-share", payload)

    def publish_block(self, payload: dict[str, Any]) -> bytes:
        """Gossip a block this node found, at once; returns its item hash."""
        return self.gossip.publish("block", payload)

    def lookup_record(self, node_id: bytes) -> None:
        """Ask the DHT for ``node_id``'s contact record (in the background); a record found
        reaches the book, whose subscribers re-check what waited for it."""
        if self.running:
            self.dht.request(node_id)

    # -- lifecycle --------------------------------------------------------------------

    @property
    def port(self) -> int:
        """The gossip TCP port (and DHT UDP port) actually bound."""
        return int(self._tcp.getHost().port) if self._tcp is not None else self.listen_port

    @property
    def host(self) -> str:
        """The host peers should dial: configured, else learned, else the interface."""
        if self.advertise_host:
            return self.advertise_host
        if self.dht.external_host:
            return self.dht.external_host
        return "127.0.0.1" if self.interface in _ANY_INTERFACE else self.interface

    def own_record(self, now: float) -> ContactRecord:
        return ContactRecord.create(
            self.identity,
            host=self.host,
            port=self.port,
            network=self.network,
            payout_script=self.payout_script,
            now=now,
            label=self.identity.label,
            features=(FEATURE_TLS,) if self.tls is not None else (),
        )

    def listener_factory(self) -> Any:
        """The gossip listener's factory, behind the guard when there is one."""
        factory = self.gossip.factory()
        return factory if self.wrap_listener is None else self.wrap_listener(factory)

    def startService(self) -> Deferred[None]:
        """Listen on TCP, then join the DHT on the same UDP port; fires when both are up."""
        super().startService()
        self._tcp = self.reactor.listenTCP(
            self.listen_port, self.listener_factory(), interface=self.interface or "0.0.0.0"
        )
        port = self.port
        self.gossip.settings = replace(self.gossip.settings, listen_port=port)
        self.gossip.running = True
        self._upkeep = LoopingCall(self.upkeep)
        self._upkeep.clock = self.reactor
        self._upkeep.start(self.upkeep_interval, now=False)
        self.log.info(
            "federation node {node_id} ({label}) on TCP and UDP port {port}, TLS {tls}",
            node_id=self.identity.node_id.hex(),
            label=self.identity.label,
            port=port,
            tls=self.tls.mode if self.tls is not None else TLS_OFF,
        )
        joined: Deferred[int] = self.dht.listen(port)

        def started(_: int) -> None:
            self.dht.start_loops()

        def failed(failure: Any) -> None:
            self.log.failure("federation DHT could not listen on UDP {port}", failure, port=port)

        joined.addCallbacks(started, failed)
        return joined.addCallback(lambda _: None)

    def stopService(self) -> Deferred[None]:
        super().stopService()
        if self._upkeep is not None and self._upkeep.running:
            self._upkeep.stop()
        self.dht.stop()
        self.gossip.stop()
        tcp, self._tcp = self._tcp, None
        if tcp is None:
            return Deferred.fromCoroutine(_nothing())
        return Deferred.fromCoroutine(_stop_listening(tcp))

    def upkeep(self) -> None:
        """Periodic: ping and prune links, forget stale records, dial known members.

        A stale record stops the dialling of its node, but a live link is kept.
        """
        try:
            self.gossip.tick()
            now = self.reactor.seconds()
            for record in self.book.expire(now):
                if record.public_key not in self.gossip.ready:
                    self.gossip.disconnect(record.public_key)  # stop dialling it
            for record in self.book:
                self.gossip.connect(record)
        except Exception:
            self.log.failure("federation upkeep failed")

    # -- read model ---------------------------------------------------------------------

    def health(self) -> tuple[str, dict[str, Any]]:
        """``("ok" | "degraded", detail)`` for ``/health`` (``ops.health.Check(*health())``).

        Degraded while no peer is linked: the node still serves, as a pool of its own.
        """
        status = self.status()
        detail: dict[str, Any] = {
            "node_id": status.node_id,
            "connected_peers": status.connected_peers,
            "known_peers": len(status.peers),
            "dht_members": len(self.dht.members),
            "tls": self.tls.mode if self.tls is not None else TLS_OFF,
        }
        if status.connected_peers == 0:
            detail["reason"] = "no federation peer connected"
            return "degraded", detail
        return "ok", detail

    def status(self) -> FederationStatus:
        """The operator view: this node and every peer known by record or by link."""
        peers: dict[bytes, PeerStatus] = {}
        for info in self.gossip.peers():
            known = self.book.get(info.node_id)
            peers[info.public_key] = PeerStatus(
                info.node_id.hex(),
                info.label,
                info.address,
                self.reputation.score(info.public_key),
                info.connected,
                info.last_seen,
                known is not None and known.tls,
            )
        for record in self.book:
            if record.public_key not in peers:
                peers[record.public_key] = PeerStatus(
                    record.node_id.hex(),
                    record.label,
                    record.address,
                    self.reputation.score(record.public_key),
                    False,
                    0.0,
                    record.tls,
                )
        host = self.interface or "0.0.0.0"
        return FederationStatus(
            node_id=self.identity.node_id.hex(),
            label=self.identity.label,
            public_key=self.identity.public_key.hex(),
            listen_address=f"[{host}]:{self.port}" if ":" in host else f"{host}:{self.port}",
            network=self.network,
            peers=tuple(sorted(peers.values(), key=lambda p: p.node_id)),
            tls=self.tls.mode if self.tls is not None else TLS_OFF,
        )


async def _nothing() -> None:
    return None


async def _stop_listening(port: Any) -> None:
    await port.stopListening()


def federation_service(
    config: Config,
    reactor: Any,
    *,
    handler: ItemHandler,
    reputation: ReputationSink,
    identity: Identity | None = None,
    tls_server: Any = None,
    policy: HostPolicy | None = None,
    wrap_listener: Callable[[Any], Any] | None = None,
) -> FederationService:
    """The federation service for ``config`` (loads or creates the node key, unless
    ``identity`` is given: start-up only). ``tls_server`` is the node's TLS (the
    reloadable context of ``security.*``), needed when ``federation.tls`` is not off;
    ``policy`` and ``wrap_listener`` are the node's guard."""
    fed = config.federation
    mode = fed.tls_mode(config.security.enable_tls)
    tls = None
    if mode != TLS_OFF:
        if tls_server is None:
            raise ValueError(
                f'federation.tls: "{mode}" needs the node\'s certificate '
                "(security.enable_tls, cert_file, key_file)"
            )
        tls = LinkTLS(mode, tls_server)
    if identity is None:
        identity = load_or_create(config.app.data_dir, fed.node_id)
    network = config.chain.network
    script = address_to_script(config.payout_address, get_network(network))
    return FederationService(
        identity,
        network=network,
        payout_script=script,
        listen_port=fed.listen_port,
        handler=handler,
        reputation=reputation,
        reactor=reactor,
        advertise_host=fed.advertise_host,
        bootstrap_peers=fed.bootstrap_peers,
        max_peers=fed.max_peers,
        reputation_threshold=fed.reputation_threshold,
        tls=tls,
        policy=policy,
        wrap_listener=wrap_listener,
    )

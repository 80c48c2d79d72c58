"""TLS on gossip links (``federation.tls``): real nodes on 127.0.0.1 with certificates
made here; one port for TLS and plain dialers, plain refused when TLS is required, the
certificate shared with (and reloaded like) Stratum's."""

from __future__ import annotations

from pathlib import Path
from typing import Any

import pytest
import pytest_twisted
from cryptography import x509
from twisted.internet.address import IPv4Address
from twisted.internet.task import Clock
from twisted.internet.testing import StringTransport
from twisted.protocols.tls import TLSMemoryBIOProtocol

from otedama.federation.gossip import Gossip, GossipSettings
from otedama.federation.identity import Identity
from otedama.federation.peer import LinkSettings, LinkState, PeerLink
from otedama.federation.security import LinkTLS, SniffingFactory
from otedama.ops.tls import ReloadableTLS, load_context
from tests.guard.certs import self_signed

from .test_gossip import NETWORK, MemoryReputation, Node, RecordingHandler, wait_until


def node_tls(directory: Path, name: str, mode: str = "on") -> LinkTLS:
    """A node's TLS as ``tap.py`` builds it: its reloadable certificate, shared by Stratum."""
    cert, key = self_signed(directory, name)
    return LinkTLS(mode, ReloadableTLS(cert, key, load_context(cert, key)))


def encrypted(link: PeerLink) -> bool:
    return isinstance(link.transport, TLSMemoryBIOProtocol)


def server_serial(link: PeerLink) -> int:
    """The serial number of the certificate the other end of ``link`` showed."""
    transport: Any = link.transport
    return int(transport.getPeerCertificate().get_serial_number())


def serial_of(tls: LinkTLS) -> int:
    """The serial number of the certificate ``tls`` serves now."""
    return int(x509.load_pem_x509_certificate(tls.server.cert_file.read_bytes()).serial_number)


@pytest_twisted.ensureDeferred
async def test_two_tls_nodes_link_over_tls_and_exchange_a_signed_item(tmp_path: Path) -> None:
    from twisted.internet import reactor

    a_tls, b_tls = node_tls(tmp_path, "a"), node_tls(tmp_path, "b")
    a = Node(reactor, "a", tls=a_tls)
    b = Node(reactor, "b", tls=b_tls)
    try:
        assert b.record().tls  # the record announces it, so A dials TLS
        assert a.gossip.connect(b.record())
        await wait_until(reactor, lambda: a.linked(b) and b.linked(a))
        a_link, b_link = a.gossip.ready[b.key], b.gossip.ready[a.key]
        assert encrypted(a_link) and encrypted(b_link)
        assert server_serial(a_link) == serial_of(b_tls)  # B's own certificate, self-signed
        digest = a.gossip.publish("fed-share", {"share": 7})
        await wait_until(reactor, lambda: len(b.handler.shares) == 1)
        assert b.handler.shares == [(a.key, {"share": 7})]
        assert digest in b.gossip.seen
        assert a.gossip.stats.drops == {} and b.gossip.stats.drops == {}
    finally:
        await a.stop()
        await b.stop()


@pytest_twisted.ensureDeferred
async def test_a_tls_node_links_with_plain_nodes_both_ways_while_they_roll_out(
    tmp_path: Path,
) -> None:
    """``on``: a plain dialer is served on the same port, a plain record dialled plain."""
    from twisted.internet import reactor

    secure = Node(reactor, "secure", tls=node_tls(tmp_path, "secure"))
    inbound = Node(reactor, "plain-in")
    outbound = Node(reactor, "plain-out")
    try:
        assert not outbound.record().tls
        assert inbound.gossip.connect(secure.record())  # a plain node dials the TLS node
        assert secure.gossip.connect(outbound.record())  # the TLS node dials a plain node
        await wait_until(reactor, lambda: secure.linked(inbound, outbound))
        await wait_until(reactor, lambda: inbound.linked(secure) and outbound.linked(secure))
        assert not encrypted(secure.gossip.ready[inbound.key])
        assert not encrypted(secure.gossip.ready[outbound.key])
        secure.gossip.publish("block", {"block": 1})
        await wait_until(
            reactor, lambda: len(inbound.handler.blocks) == len(outbound.handler.blocks) == 1
        )
        assert secure.gossip.stats.plaintext_refused == 0
    finally:
        for node in (secure, inbound, outbound):
            await node.stop()


@pytest_twisted.ensureDeferred
async def test_a_tls_required_listener_refuses_a_plain_dialer_and_counts_it(
    tmp_path: Path,
) -> None:
    from twisted.internet import reactor

    strict = Node(reactor, "strict", tls=node_tls(tmp_path, "strict", "required"))
    plain = Node(reactor, "plain")
    try:
        assert plain.gossip.connect(strict.record())
        await wait_until(reactor, lambda: strict.gossip.stats.plaintext_refused >= 1)
        assert not strict.linked(plain) and not plain.linked(strict)
        assert strict.gossip.links == set()  # refused before a link was opened
        assert strict.gossip.stats.drops == {} and strict.reputation.penalties == []
        events: list[dict[str, Any]] = []
        strict.gossip.log = type(strict.gossip.log)(observer=events.append)
        strict.gossip.tick()  # the links summary says why
        (summary,) = events
        assert "refused (plain text; federation.tls is required)" in summary["events"]
    finally:
        await plain.stop()
        await strict.stop()


@pytest_twisted.ensureDeferred
async def test_a_tls_required_node_dials_only_records_that_announce_tls(tmp_path: Path) -> None:
    from twisted.internet import reactor

    strict = Node(reactor, "strict", tls=node_tls(tmp_path, "strict", "required"))
    secure = Node(reactor, "secure", tls=node_tls(tmp_path, "secure"))
    plain = Node(reactor, "plain")
    try:
        assert not strict.gossip.connect(plain.record())
        assert (
            strict.gossip.stats.dials_without_tls == 1 and plain.key not in strict.gossip.services
        )
        assert strict.gossip.connect(secure.record())
        await wait_until(reactor, lambda: strict.linked(secure) and secure.linked(strict))
        assert encrypted(strict.gossip.ready[secure.key])
    finally:
        for node in (strict, secure, plain):
            await node.stop()


@pytest_twisted.ensureDeferred
async def test_a_certificate_reload_reaches_new_gossip_links(tmp_path: Path) -> None:
    """The listener uses the node's reloadable TLS: after a swap (what SIGHUP does), new
    links see the new certificate and the linked peer stays linked."""
    from twisted.internet import reactor

    b_tls = node_tls(tmp_path, "b")
    a = Node(reactor, "a", tls=node_tls(tmp_path, "a"))
    b = Node(reactor, "b", tls=b_tls)
    c = Node(reactor, "c", tls=node_tls(tmp_path, "c"))
    try:
        assert a.gossip.connect(b.record())
        await wait_until(reactor, lambda: a.linked(b) and b.linked(a))
        old = serial_of(b_tls)
        assert server_serial(a.gossip.ready[b.key]) == old
        cert, key = self_signed(tmp_path, "b-renewed")
        assert await b_tls.server.reload(reactor, cert, key)
        assert serial_of(b_tls) != old
        assert c.gossip.connect(b.record())
        await wait_until(reactor, lambda: c.linked(b) and b.linked(c))
        assert server_serial(c.gossip.ready[b.key]) == serial_of(b_tls)
        assert a.linked(b) and server_serial(a.gossip.ready[b.key]) == old
    finally:
        for node in (a, b, c):
            await node.stop()


def sniffing(mode: str, tmp_path: Path) -> tuple[Clock, Gossip, Any, StringTransport]:
    clock = Clock()
    clock.advance(1_800_000_000)
    gossip = Gossip(
        Identity.generate("local"),
        GossipSettings(LinkSettings(NETWORK, handshake_timeout=10)),
        MemoryReputation(),
        RecordingHandler(),
        clock,
        tls=node_tls(tmp_path, "local", mode),
    )
    factory = gossip.factory()
    assert isinstance(factory, SniffingFactory)
    protocol = factory.buildProtocol(IPv4Address("TCP", "192.0.2.7", 40000))
    transport = StringTransport()
    protocol.makeConnection(transport)
    return clock, gossip, protocol, transport


def test_an_accepted_connection_that_sends_nothing_is_aborted(tmp_path: Path) -> None:
    clock, gossip, _protocol, transport = sniffing("on", tmp_path)
    assert transport.value() == b""  # nothing is said before the dialer speaks
    clock.advance(9.9)
    assert not transport.disconnecting
    clock.advance(0.2)
    assert transport.disconnecting and gossip.links == set()


def test_a_plain_hello_on_an_on_listener_opens_a_plain_link(tmp_path: Path) -> None:
    _clock, gossip, protocol, transport = sniffing("on", tmp_path)
    protocol.dataReceived(b"\x00\x00\x00\x10")  # the start of a gossip frame
    [link] = gossip.links
    assert link.state is LinkState.HANDSHAKE and link.transport is transport
    assert transport.value()  # our hello went out, in the clear


@pytest.mark.parametrize("mode", ["on", "required"])
def test_a_client_hello_starts_tls_in_either_mode(mode: str, tmp_path: Path) -> None:
    _clock, gossip, protocol, transport = sniffing(mode, tmp_path)
    protocol.dataReceived(b"\x16\x03\x01")  # the start of a TLS ClientHello
    [link] = gossip.links
    assert encrypted(link) and gossip.stats.plaintext_refused == 0
    assert transport.value() == b""  # our hello waits for the TLS handshake, never in clear


def test_a_plain_hello_on_a_required_listener_is_refused(tmp_path: Path) -> None:
    _clock, gossip, protocol, transport = sniffing("required", tmp_path)
    protocol.dataReceived(b"\x00\x00\x00\x10")
    protocol.dataReceived(b"more")
    assert transport.disconnecting and transport.value() == b""
    assert gossip.links == set() and gossip.stats.plaintext_refused == 1


@pytest_twisted.ensureDeferred
async def test_the_operator_view_shows_the_mode_and_which_peers_announce_tls(
    tmp_path: Path,
) -> None:
    from twisted.internet import reactor

    from otedama.commands.federation import format_status
    from otedama.federation.service import FederationService

    service = FederationService(
        Identity.generate("me"),
        network=NETWORK,
        payout_script=bytes.fromhex("0014") + b"\x44" * 20,
        listen_port=0,
        handler=RecordingHandler(),
        reputation=MemoryReputation(),
        reactor=reactor,
        interface="127.0.0.1",
        tls=node_tls(tmp_path, "me", "required"),
    )
    secure = Node(reactor, "secure", tls=node_tls(tmp_path, "secure"))
    plain = Node(reactor, "plain")
    try:
        now = reactor.seconds()
        for node in (secure, plain):
            assert service.book.offer(node.record().encode(), now) is not None
        status = service.status()
        assert status.tls == "required" and service.health()[1]["tls"] == "required"
        by_label = {peer.label: peer for peer in status.peers}
        assert by_label["secure"].tls and not by_label["plain"].tls
        view = status.to_json()
        assert view["tls"] == "required"
        table = format_status(view, now)
        assert "TLS required" in table
        [secure_row] = [line for line in table.splitlines() if "secure" in line]
        assert "  no      yes  never" in secure_row  # not linked, announces TLS
    finally:
        await secure.stop()
        await plain.stop()

"""How gossip links are protected below the Ed25519 handshake: TLS, and the host policy.

**TLS** (``federation.tls``). Peers prove who they are with their Ed25519 keys (``peer``);
TLS adds confidentiality and integrity to the link itself. Nodes of different operators
have self-signed or unrelated certificates, so a dialer checks no CA chain and no host
name: identity stays the signed handshake. One gossip port serves both kinds of link:
the first byte a dialer sends tells them apart (a TLS ClientHello starts with ``0x16``,
a gossip frame with the high byte of a length that is at most ``max_frame``, so ``0x00``).
The modes:

- ``off``: plain links only; the contact record does not mention TLS (version 1 layout).
- ``on``: the port accepts TLS and plain dialers; the record announces ``tls``; this node
  dials TLS to records that announce it and plain to the others (a rollout mode: plain
  and TLS nodes still link).
- ``required``: the port refuses plain dialers (counted, in the links summary); the node
  dials only records that announce ``tls``, always over TLS.

The server side is the node's certificate (``security.cert_file`` / ``key_file``) through
the same reloadable context as Stratum's TLS port, so a ``SIGHUP`` renews it here too.

**Host policy.** The node's guard (``ops.guard``) decides which hosts are refused: the
firewall's blacklist, the ban list. This package only knows it as :class:`HostPolicy`;
the listener's factory is wrapped by the guard itself (``FederationService``'s
``wrap_listener``), and dials and DHT datagrams ask :meth:`HostPolicy.blocked`.
"""

from __future__ import annotations

from collections.abc import Callable
from dataclasses import dataclass
from typing import Any, Final, Protocol

from OpenSSL import SSL
from twisted.internet import ssl
from twisted.internet.interfaces import IAddress, IOpenSSLClientConnectionCreator
from twisted.internet.protocol import Factory
from twisted.internet.protocol import Protocol as TwistedProtocol
from twisted.protocols.tls import TLSMemoryBIOProtocol
from twisted.python.failure import Failure
from zope.interface import implementer

from otedama.ops.tls import TLSServerFactory as TLSFactory

__all__ = [
    "HostPolicy",
    "LinkTLS",
    "SniffingFactory",
    "UnverifiedClientTLS",
    "tls_client_factory",
]

TLS_OFF: Final = "off"
TLS_ON: Final = "on"
TLS_REQUIRED: Final = "required"
TLS_HANDSHAKE_RECORD: Final = 0x16
"""The first byte of every TLS ClientHello (a handshake record)."""


class HostPolicy(Protocol):
    """What the federation asks of the node's guard (``ops.guard.Guard`` is one)."""

    def blocked(self, host: str) -> str | None:
        """Why ``host`` is refused (``"blacklisted"``, ``"banned"``), or None."""
        ...

    def note_refused(self, host: str, reason: str) -> None:
        """Count one refusal for the guard's periodic summary."""
        ...


@dataclass(frozen=True)
class LinkTLS:
    """TLS on gossip links: ``mode`` is ``on`` or ``required``; ``server`` creates the
    server side of each accepted TLS link (the node's reloadable certificate, an
    ``IOpenSSLServerConnectionCreator``)."""

    mode: str
    server: Any

    def __post_init__(self) -> None:
        if self.mode not in (TLS_ON, TLS_REQUIRED):
            raise ValueError(f'federation TLS mode must be "on" or "required", got {self.mode!r}')

    @property
    def required(self) -> bool:
        return self.mode == TLS_REQUIRED


@implementer(IOpenSSLClientConnectionCreator)
class UnverifiedClientTLS:
    """The dialing side: TLS 1.2 or newer, no CA chain nor host name checked (peers are
    identified by their Ed25519 handshake, inside the link)."""

    def __init__(self) -> None:
        options = ssl.CertificateOptions(verify=False, raiseMinimumTo=ssl.TLSVersion.TLSv1_2)
        self.context: SSL.Context = options.getContext()

    def clientConnectionForTLS(self, tlsProtocol: TLSMemoryBIOProtocol) -> SSL.Connection:
        connection = SSL.Connection(self.context, None)
        connection.set_connect_state()
        return connection


def tls_client_factory(client: UnverifiedClientTLS, factory: Any, clock: Any) -> TLSFactory:
    """``factory`` dialed over TLS (a refusal by ``factory`` closes the socket)."""
    creator: Any = client  # zope interfaces do not type-check without mypy-zope
    return TLSFactory(creator, True, factory, clock)


class _Sniffer(TwistedProtocol):
    """An accepted gossip connection until its first byte says TLS or plain; then every
    event goes to the link (through Twisted's TLS protocol for TLS)."""

    def __init__(self, factory: SniffingFactory, link: Any, host: str) -> None:
        self.sniffing = factory
        self.link = link
        self.host = host
        self.inner: Any = None
        self._timer: Any = None

    def connectionMade(self) -> None:
        sniffing = self.sniffing
        self._timer = sniffing.clock.callLater(sniffing.timeout, self._silent)

    def _silent(self) -> None:
        self._timer = None
        transport: Any = self.transport
        if self.inner is None and transport is not None:
            transport.abortConnection()

    def dataReceived(self, data: bytes) -> None:
        if self.inner is not None:
            self.inner.dataReceived(data)
            return
        if not data:
            return
        self._cancel()
        transport: Any = self.transport
        sniffing = self.sniffing
        if data[0] == TLS_HANDSHAKE_RECORD:
            tls = sniffing.tls_factory
            self.inner = tls.protocol(tls, self.link)
        elif sniffing.tls.required:
            sniffing.on_plaintext(self.host)
            self.inner = _Discard()
            transport.abortConnection()
            return
        else:
            self.inner = self.link
        self.inner.makeConnection(transport)
        self.inner.dataReceived(data)

    def connectionLost(self, reason: Failure | None = None) -> None:
        self._cancel()
        if self.inner is not None:
            self.inner.connectionLost(reason)

    def _cancel(self) -> None:
        if self._timer is not None and self._timer.active():
            self._timer.cancel()
        self._timer = None


class _Discard(TwistedProtocol):
    """What a refused connection's last bytes go to until its socket is gone."""


class SniffingFactory(Factory):
    """The gossip listener's factory with TLS on: each accepted connection is a link
    (built by ``links``), over TLS when the dialer starts TLS, plain otherwise unless
    TLS is required (then refused and reported to ``on_plaintext``). A connection that
    sends nothing for ``timeout`` seconds is aborted."""

    noisy = False

    def __init__(
        self,
        links: Factory,
        tls: LinkTLS,
        clock: Any,
        *,
        on_plaintext: Callable[[str], None],
        timeout: float,
    ) -> None:
        self.links = links
        self.tls = tls
        self.clock = clock
        self.on_plaintext = on_plaintext
        self.timeout = timeout
        wrapped: Any = links  # zope interfaces do not type-check without mypy-zope
        self.tls_factory = TLSFactory(tls.server, False, wrapped, clock)

    def doStart(self) -> None:
        self.links.doStart()

    def doStop(self) -> None:
        self.links.doStop()

    def buildProtocol(self, addr: IAddress | None) -> TwistedProtocol | None:
        link = self.links.buildProtocol(addr)
        if link is None:
            return None
        host = getattr(addr, "host", None)
        sniffer = _Sniffer(self, link, host if isinstance(host, str) else str(addr))
        sniffer.factory = self
        return sniffer

"""One TCP link to a federation peer: the handshake state machine and the link's bounds.

The link feeds bytes to its ``Codec`` and hands verified messages to its owner (the
``Gossip``); it decides nothing about items. Handshake: both sides send a signed ``Hello``
(network, version, a fresh random nonce) at once; each answers the other's hello with a
``Pong`` echoing its nonce, signed by the key the hello named, which proves the key is
live on this link (a recorded hello replayed by someone else cannot answer). Only then is
the link ``READY``. Anything but that during the handshake closes the link.

Bounds: a frame is at most ``max_frame`` bytes; messages beyond a token-bucket rate are
a flood; output that the peer does not read piles up only to ``max_pending_output``
bytes before the link is dropped; a close that cannot flush becomes an abort after
``close_grace`` seconds; a handshake must finish within ``handshake_timeout``.
"""

from __future__ import annotations

import os
from dataclasses import dataclass
from enum import Enum
from typing import Any, Protocol

from twisted.internet.interfaces import IPushProducer
from twisted.internet.protocol import Protocol as TwistedProtocol
from twisted.logger import Logger
from twisted.python.failure import Failure
from zope.interface import implementer

from otedama.federation.identity import node_id_of
from otedama.federation.wire import (
    Body,
    Codec,
    Envelope,
    FrameTooLarge,
    Hello,
    Pong,
    Rejected,
    Signer,
)

__all__ = ["LinkOwner", "LinkSettings", "LinkState", "PeerLink"]


class LinkState(Enum):
    HANDSHAKE = "handshake"
    PROVING = "proving"
    READY = "ready"
    CLOSED = "closed"


@dataclass(frozen=True)
class LinkSettings:
    """The bounds of one link (defaults suit production; tests shrink them)."""

    network: str
    version: int = 1
    listen_port: int = 0
    label: str = ""
    max_frame: int = 256 * 1024
    handshake_timeout: float = 10.0
    max_pending_output: int = 1024 * 1024
    close_grace: float = 5.0
    flood_rate: float = 200.0
    """Messages per second a peer may send on average."""
    flood_burst: float = 400.0
    max_offences: int = 5
    """Non-fatal offences (bad frames, bad signatures, replays, floods) before a drop."""


class LinkOwner(Protocol):
    """What a link needs of the gossip node that owns it."""

    @property
    def identity(self) -> Signer: ...
    @property
    def settings(self) -> LinkSettings: ...
    @property
    def clock(self) -> Any: ...

    def link_opened(self, link: PeerLink) -> None: ...
    def link_hello(self, link: PeerLink, hello: Hello, key: bytes) -> str | None: ...
    def link_ready(self, link: PeerLink) -> str | None: ...
    def link_message(self, link: PeerLink, envelope: Envelope) -> None: ...
    def link_offence(self, link: PeerLink, reason: str, dropped: bool) -> None: ...
    def link_check_replay(self, envelope: Envelope) -> str | None: ...
    def link_lost(self, link: PeerLink) -> None: ...


@implementer(IPushProducer)
class PeerLink(TwistedProtocol):
    """One federation TCP link, inbound or outbound (``outbound_key`` names who we dialled)."""

    log = Logger()

    def __init__(self, owner: LinkOwner, host: str, outbound_key: bytes | None = None) -> None:
        self.owner = owner
        self.settings = owner.settings
        self.clock = owner.clock
        self.host = host
        self.outbound_key = outbound_key
        self.state = LinkState.HANDSHAKE
        self.peer_key: bytes | None = None
        self.hello: Hello | None = None
        self.nonce = os.urandom(16)
        self.offences = 0
        self.close_reason = ""
        self.last_received = 0.0
        self.connected_at = 0.0
        self.codec = Codec(owner.identity, first_seq=0, max_frame=self.settings.max_frame)
        self._tokens = self.settings.flood_burst
        self._tokens_at = 0.0
        self._paused = False
        self._pending_output = 0
        self._timer: Any = None  # an IDelayedCall (zope interfaces do not type-check)

    @property
    def closed(self) -> bool:
        return self.state is LinkState.CLOSED

    @property
    def outbound(self) -> bool:
        return self.outbound_key is not None

    @property
    def initiator(self) -> bytes | None:
        """The key of the side that opened the TCP connection."""
        return self.owner.identity.public_key if self.outbound else self.peer_key

    @property
    def node_id(self) -> bytes | None:
        return None if self.peer_key is None else node_id_of(self.peer_key)

    @property
    def address(self) -> str:
        port = self.hello.port if self.hello is not None and self.hello.port else 0
        if not port:
            peer = getattr(self.transport, "getPeer", lambda: None)()
            port = getattr(peer, "port", 0)
        return f"[{self.host}]:{port}" if ":" in self.host else f"{self.host}:{port}"

    # -- Twisted events -------------------------------------------------------------------

    def connectionMade(self) -> None:
        now = self.clock.seconds()
        self.connected_at = self.last_received = self._tokens_at = now
        self.codec = Codec(
            self.owner.identity,
            first_seq=Codec.fresh_seq(now),
            max_frame=self.settings.max_frame,
            next_seq=getattr(self.owner, "next_seq", None),
        )
        transport: Any = self.transport
        transport.registerProducer(self, True)
        self.owner.link_opened(self)
        self._timer = self.clock.callLater(self.settings.handshake_timeout, self._handshake_late)
        s = self.settings
        self.send(Hello(s.network, s.version, self.nonce, s.listen_port, s.label))

    def dataReceived(self, data: bytes) -> None:
        if self.state is LinkState.CLOSED:
            return
        try:
            messages = self.codec.feed(data)
        except FrameTooLarge as exc:
            self.offence(exc.reason, fatal=True)
            return
        self.last_received = self.clock.seconds()
        for message in messages:
            if self.closed:
                return
            if isinstance(message, Rejected):
                self.offence(message.reason, fatal=self.state is not LinkState.READY)
                continue
            if not self._take_token():
                self.offence("flood")
                continue
            self._receive(message)

    def connectionLost(self, reason: Failure | None = None) -> None:
        self.state = LinkState.CLOSED
        if self._timer is not None and self._timer.active():
            self._timer.cancel()
        self._timer = None
        self.owner.link_lost(self)

    # IPushProducer: Twisted pauses us when its write buffer for this socket is full.
    def pauseProducing(self) -> None:
        self._paused = True

    def resumeProducing(self) -> None:
        self._paused = False
        self._pending_output = 0

    def stopProducing(self) -> None:
        self._paused = True

    # -- the state machine ----------------------------------------------------------------

    def _receive(self, envelope: Envelope) -> None:
        replay = self.owner.link_check_replay(envelope)
        if replay is not None:
            self.offence(replay, fatal=self.state is not LinkState.READY)
            return
        body = envelope.body
        if self.state is LinkState.HANDSHAKE:
            if not isinstance(body, Hello):
                self.offence("no-hello", fatal=True)
                return
            refusal = self.owner.link_hello(self, body, envelope.sender)
            if refusal is not None:
                self.close(refusal)
                return
            self.peer_key = envelope.sender
            self.hello = body
            self.state = LinkState.PROVING
            self.send(Pong(body.nonce))
        elif envelope.sender != self.peer_key:
            self.offence("sender-changed", fatal=True)
        elif self.state is LinkState.PROVING:
            if not isinstance(body, Pong) or body.nonce != self.nonce:
                self.offence("bad-proof", fatal=True)
                return
            if self._timer is not None and self._timer.active():
                self._timer.cancel()
            self._timer = None
            self.state = LinkState.READY
            refusal = self.owner.link_ready(self)
            if refusal is not None:
                self.close(refusal)
        else:
            self.owner.link_message(self, envelope)

    def _handshake_late(self) -> None:
        self._timer = None
        if self.state in (LinkState.HANDSHAKE, LinkState.PROVING):
            self.offence("handshake-timeout", fatal=True)

    def _take_token(self) -> bool:
        now = self.clock.seconds()
        s = self.settings
        self._tokens = min(s.flood_burst, self._tokens + (now - self._tokens_at) * s.flood_rate)
        self._tokens_at = now
        if self._tokens < 1:
            return False
        self._tokens -= 1
        return True

    # -- actions --------------------------------------------------------------------------

    def offence(self, reason: str, *, fatal: bool = False) -> None:
        """Count a protocol offence; drop the link if fatal or there were too many."""
        if self.state is LinkState.CLOSED:
            return
        self.offences += 1
        drop = fatal or self.offences >= self.settings.max_offences
        self.owner.link_offence(self, reason, drop)
        if drop:
            self.close(reason)

    def send(self, body: Body) -> None:
        """Encode and write ``body``; drop the link if the peer is not reading."""
        transport: Any = self.transport
        if self.state is LinkState.CLOSED or transport is None:
            return
        data = self.codec.encode(body, self.clock.seconds())
        if self._paused:
            self._pending_output += len(data)
            if self._pending_output > self.settings.max_pending_output:
                self.close("slow-reader", abort=True)
                return
        transport.write(data)

    def close(self, reason: str, *, abort: bool = False) -> None:
        """Close the link; a close that cannot flush is aborted after ``close_grace``."""
        if self.state is LinkState.CLOSED:
            return
        self.state = LinkState.CLOSED
        self.close_reason = reason
        transport: Any = self.transport
        if self._timer is not None and self._timer.active():
            self._timer.cancel()
        self._timer = None
        if transport is None:
            return
        if abort:
            transport.abortConnection()
            return
        # With a producer registered, a transport that paused it would not close once
        # its buffer drains (it resumes the producer instead): unregister first.
        transport.unregisterProducer()
        transport.loseConnection()
        self._timer = self.clock.callLater(self.settings.close_grace, transport.abortConnection)

"""The guard in front of every listener: firewall lists, bans and DDoS limits at accept.

One :class:`Guard` per node holds the policy and its state (:mod:`otedama.ops.firewall`,
:mod:`otedama.ops.bans`). Each listener's factory is wrapped with :func:`guarded`, whose
``buildProtocol`` runs before Twisted hands the socket to any protocol: a blacklisted or
banned peer, or one over its new-connection rate or its per-IP connection cap, gets
``None`` (Twisted closes the socket at once, nothing is parsed, no TLS handshake). Admitted
connections keep their own socket transport (the wrapper does not insert a protocol
layer, so Stratum's direct writes and back-pressure work as before): the guard only
wraps the instance's ``dataReceived`` (message rate) and ``connectionLost`` (bookkeeping).
Whitelisted peers are never limited, counted or banned.

Refusals are summarised in one warning per ``log_interval`` (count, reasons, top hosts).
:class:`GuardService` loads the persisted bans before the listeners start, prunes and
logs periodically. :class:`AdminProtocol` serves ``otedama ban`` on a unix socket.
"""

from __future__ import annotations

import json
from collections import Counter
from collections.abc import Callable, Mapping
from typing import Any, Protocol

from twisted.application.service import Service
from twisted.internet.defer import Deferred, succeed
from twisted.internet.interfaces import IAddress
from twisted.internet.protocol import Factory
from twisted.internet.protocol import Protocol as TwistedProtocol
from twisted.internet.task import LoopingCall
from twisted.logger import Logger
from twisted.protocols.basic import LineOnlyReceiver

from otedama.ops.audit import AuditLog
from otedama.ops.bans import Ban, BanList, BanStore, DdosSettings, TokenBuckets, WorkTally
from otedama.ops.firewall import Firewall, parse_host

__all__ = [
    "AdminFactory",
    "Guard",
    "GuardService",
    "GuardedFactory",
    "guarded",
    "share_bans",
]

_SUMMARY_HOSTS = 1024
#: Hosts whose parsed form the guard keeps (a flood of new addresses clears it, no more).
_HOST_CACHE = 65536


def _host_of(addr: IAddress | None) -> str:
    host = getattr(addr, "host", None)
    return host if isinstance(host, str) else str(addr)


class Guard:
    """The node's access policy and the per-host state behind it."""

    log = Logger()

    def __init__(
        self,
        firewall: Firewall,
        settings: DdosSettings,
        clock: Any,
        *,
        store: BanStore | None = None,
        audit: AuditLog | None = None,
        log_interval: float = 30.0,
    ) -> None:
        self.clock = clock
        self.store = store
        self.audit = audit
        self.log_interval = log_interval
        self.bans = BanList(settings.max_tracked)
        self.factories: list[GuardedFactory] = []
        self.refused: Counter[str] = Counter()
        self.refused_hosts: Counter[str] = Counter()
        #: Refusals since start, by reason (for metrics and tests).
        self.refused_total: Counter[str] = Counter()
        self.bans.listeners.append(self._ban_changed)
        self.configure(firewall, settings)

    def configure(self, firewall: Firewall, settings: DdosSettings) -> None:
        """Apply (re)loaded lists and limits; per-host state starts afresh."""
        self.firewall = firewall
        self.settings = settings
        #: host -> (canonical key, whitelisted, blacklisted): parsing an address costs more than the
        #: rest of a share's guard work, and every share asks. Bounded; cleared on reload.
        self._hosts: dict[str, tuple[str, bool, bool]] = {}
        self.connections = TokenBuckets(
            settings.connection_rate, settings.connection_burst, settings.max_tracked
        )
        self.messages = TokenBuckets(
            settings.message_rate, settings.message_burst, settings.max_tracked
        )
        self.work = WorkTally(
            settings.invalid_window,
            settings.invalid_ratio,
            settings.invalid_min,
            settings.max_tracked,
        )

    def now(self) -> float:
        seconds: float = self.clock.seconds()
        return seconds

    # -- decisions ---------------------------------------------------------------------

    def _host(self, host: str) -> tuple[str, bool, bool]:
        """``host``'s canonical key, whether it is whitelisted and whether blacklisted
        (cached)."""
        known = self._hosts.get(host)
        if known is not None:
            return known
        address = parse_host(host)
        known = (
            host if address is None else str(address),
            self.firewall.whitelisted(address),
            self.firewall.blacklisted(address),
        )
        hosts = self._hosts
        if len(hosts) >= _HOST_CACHE:
            hosts.clear()
        hosts[host] = known
        return known

    def key(self, host: str) -> str:
        """The canonical form bans and counters use (``::ffff:1.2.3.4`` is ``1.2.3.4``)."""
        return self._host(host)[0]

    def trusted(self, host: str) -> bool:
        """Whitelisted: never limited nor banned."""
        return self._host(host)[1]

    def blocked(self, host: str) -> str | None:
        """Why ``host`` may not be talked to at all (``"blacklisted"``, ``"banned"``), or
        None; spends nothing (for dials and datagrams, which no connection rate limits)."""
        key, trusted, blacklisted = self._host(host)
        if trusted:
            return None
        if blacklisted:
            return "blacklisted"
        if self.bans.banned(key, self.now()) is not None:
            return "banned"
        return None

    def refusal(self, host: str) -> str | None:
        """Why a new connection from ``host`` is refused at accept, or None."""
        reason = self.blocked(host)
        if reason is not None:
            return reason
        key, trusted, _ = self._host(host)
        if trusted:
            return None
        if self.settings.enabled and not self.connections.take(key, self.now()):
            return "connection rate"
        return None

    def note_refused(self, host: str, reason: str) -> None:
        """Count a refusal for the next summary (never one log line each)."""
        self.refused[reason] += 1
        self.refused_total[reason] += 1
        hosts = self.refused_hosts
        if host in hosts or len(hosts) < _SUMMARY_HOSTS:
            hosts[host] += 1

    def allow_messages(self, host: str, count: int) -> bool:
        """Spend ``count`` of ``host``'s message tokens; False: over ``rate_limit``."""
        if not self.settings.enabled:
            return True
        if self.messages.take(host, self.now(), count):
            return True
        self.note_work(host, False)
        return False

    def note_work(self, host: str, valid: bool) -> None:
        """One piece of work from ``host`` was valid or not (a share, a line); bans the
        host when its invalid work crosses the threshold (never one bad share)."""
        if not self.settings.enabled:
            return
        key, trusted, _ = self._host(host)
        if trusted:
            return
        if self.work.note(key, valid, self.now()) and self.bans.banned(key, self.now()) is None:
            settings = self.settings
            reason = (
                f"invalid work: at least {settings.invalid_min} items and "
                f"{settings.invalid_ratio:.0%} of its work in {settings.invalid_window:g} s"
            )
            self.work.forget(key)
            # A failed audit write is logged by the audit log; the ban stands.
            self.ban(key, settings.ban_duration, reason, "auto").addErrback(lambda _: None)

    # -- bans --------------------------------------------------------------------------

    def ban(self, host: str, duration: float, reason: str, actor: str) -> Deferred[Ban]:
        """Ban ``host`` now (its open connections are dropped); fires with the ban once
        the audit line is written."""
        key = self.key(host)
        ban = self.bans.ban(key, self.now(), duration, reason, actor)
        self.log.warn(
            "banned {host} until {until:.0f} by {actor}: {reason}",
            host=key,
            until=ban.until,
            actor=actor,
            reason=reason,
        )
        action = "ban.auto" if actor == "auto" else "ban.add"
        return self._audited(actor, action, key, {"until": ban.until, "reason": reason}, ban)

    def unban(self, host: str, actor: str) -> Deferred[Ban | None]:
        """Lift ``host``'s ban; fires with the lifted ban (None: there was none)."""
        key = self.key(host)
        ban = self.bans.unban(key)
        if ban is not None:
            self.log.info("unbanned {host} by {actor}", host=key, actor=actor)
        result = "ok" if ban is not None else "not banned"
        return self._audited(actor, "ban.remove", key, None, ban, result)

    def _audited(
        self,
        actor: str,
        action: str,
        target: str,
        detail: dict[str, Any] | None,
        value: Any,
        result: str = "ok",
    ) -> Deferred[Any]:
        if self.audit is None:
            return succeed(value)
        written = self.audit.record(actor, action, target, result, detail)
        written.addCallback(lambda _: value)
        return written

    def _ban_changed(self, host: str, ban: Ban | None) -> None:
        if ban is not None:
            for factory in self.factories:
                factory.drop(host)
        if self.store is not None:
            self.store.save(self.bans.active(self.now()))

    async def load(self) -> int:
        """Restore the persisted bans (before the listeners start); how many."""
        if self.store is None:
            return 0
        bans = await self.store.load()
        return self.bans.restore(bans, self.now())

    # -- the periodic summary ----------------------------------------------------------

    def tick(self) -> None:
        """Prune expired bans and log the refusals since the last tick."""
        self.bans.prune(self.now())
        refused, hosts = self.refused, self.refused_hosts
        if not refused:
            return
        self.refused, self.refused_hosts = Counter(), Counter()
        self.log.warn(
            "refused {count} connections in {interval:g} s: {reasons}; top hosts: {hosts}; "
            "{bans} bans in force",
            count=sum(refused.values()),
            interval=self.log_interval,
            reasons=", ".join(f"{reason} ({n})" for reason, n in refused.most_common()),
            hosts=", ".join(f"{host} ({n})" for host, n in hosts.most_common(5)),
            bans=len(self.bans),
        )


BAN_TOPIC = "bans"


class BanBus(Protocol):
    """What :func:`share_bans` needs of ``otedama.ops.redis``'s ``EventBus``."""

    def publish(self, topic: str, event: Mapping[str, Any], /) -> None: ...

    def subscribe(
        self, topic: str, callback: Callable[[str, dict[str, Any]], object], /
    ) -> Callable[[], None]: ...


def share_bans(guard: Guard, bus: BanBus, origin: str) -> Callable[[], None]:
    """Share bans between the nodes on one event bus (Redis): this node's bans and
    unbans are published on ``bans``; other nodes' are applied here (their connections
    dropped, the ban file saved; the audit line is the origin node's). Returns the
    unsubscribe."""
    applying = False

    def changed(host: str, ban: Ban | None) -> None:
        if not applying:
            bus.publish(
                BAN_TOPIC,
                {"origin": origin, "host": host, "ban": None if ban is None else ban.to_json()},
            )

    def received(topic: str, event: dict[str, Any]) -> None:
        nonlocal applying
        if event.get("origin") == origin:
            return
        host = str(event.get("host", ""))
        if parse_host(host) is None:
            return
        data = event.get("ban")
        ban = None if data is None else Ban.from_json(data)
        applying = True
        try:
            if ban is None:
                guard.bans.unban(host)
            else:
                now = guard.now()
                if ban.until > now:
                    guard.bans.ban(host, now, ban.until - now, ban.reason, ban.actor)
        finally:
            applying = False

    guard.bans.listeners.append(changed)
    unsubscribe = bus.subscribe(BAN_TOPIC, received)

    def stop() -> None:
        if changed in guard.bans.listeners:
            guard.bans.listeners.remove(changed)
        unsubscribe()

    return stop


class GuardedFactory(Factory):
    """Wraps a listener's factory: refuses at accept what the guard refuses, caps open
    connections per IP on this listener, limits messages, drops banned peers."""

    noisy = False

    def __init__(self, guard: Guard, wrapped: Any, name: str, *, lines: bool = True) -> None:
        self.guard = guard
        self.wrapped = wrapped
        self.name = name
        #: Count newline bytes as messages (plain line protocols); False: one per read.
        self.lines = lines
        self.live: dict[str, set[Any]] = {}
        guard.factories.append(self)

    def logPrefix(self) -> str:
        prefix = getattr(self.wrapped, "logPrefix", None)
        return str(prefix()) if prefix is not None else self.name

    def doStart(self) -> None:
        self.wrapped.doStart()

    def doStop(self) -> None:
        self.wrapped.doStop()

    def connections_from(self, host: str) -> int:
        return len(self.live.get(self.guard.key(host), ()))

    def drop(self, host: str) -> None:
        """Abort every open connection from ``host`` (it was just banned)."""
        for protocol in list(self.live.get(host, ())):
            transport = getattr(protocol, "transport", None)
            if transport is not None:
                transport.abortConnection()

    def buildProtocol(self, addr: IAddress | None) -> TwistedProtocol | None:
        guard = self.guard
        host = _host_of(addr)
        reason = guard.refusal(host)
        key = guard.key(host)
        trusted = guard.trusted(host)
        if (
            reason is None
            and not trusted
            and len(self.live.get(key, ())) >= guard.settings.max_connections_per_ip
        ):
            reason = "connections per IP"
        if reason is not None:
            guard.note_refused(key, f"{self.name}: {reason}")
            return None
        protocol = self.wrapped.buildProtocol(addr)
        if protocol is None:
            return None
        live = self.live.setdefault(key, set())
        live.add(protocol)
        self._instrument(protocol, key, trusted)
        return protocol  # type: ignore[no-any-return]

    def _instrument(self, protocol: Any, key: str, trusted: bool) -> None:
        connection_lost = protocol.connectionLost

        def lost(reason: Any = None) -> Any:
            live = self.live.get(key)
            if live is not None:
                live.discard(protocol)
                if not live:
                    del self.live[key]
            return connection_lost(reason) if reason is not None else connection_lost()

        protocol.connectionLost = lost
        if trusted:
            return
        data_received = protocol.dataReceived
        make_connection = protocol.makeConnection
        guard, lines = self.guard, self.lines
        # The transport as handed to the protocol: a wrapper such as twisted.web's
        # _GenericHTTPChannelProtocol forwards makeConnection without a transport of its
        # own, so the guard keeps the one it saw.
        connected: list[Any] = []

        def made(transport: Any) -> Any:
            connected.append(transport)
            return make_connection(transport)

        def received(data: bytes) -> Any:
            count = max(1, data.count(b"\n")) if lines else 1
            if guard.allow_messages(key, count):
                return data_received(data)
            guard.note_refused(key, f"{self.name}: message rate")
            if connected:
                connected[0].abortConnection()
            return None

        protocol.makeConnection = made
        protocol.dataReceived = received


def guarded(guard: Guard | None, factory: Any, name: str, *, lines: bool = True) -> Any:
    """``factory`` behind ``guard`` (the call every listener makes: Stratum, API,
    federation, metrics, health); ``factory`` itself when there is no guard."""
    if guard is None:
        return factory
    return GuardedFactory(guard, factory, name, lines=lines)


class GuardService(Service):
    """Loads the persisted bans before the listeners start; ticks the summary."""

    log = Logger()

    def __init__(self, guard: Guard) -> None:
        self.setName("guard")
        self.guard = guard
        self._loop: LoopingCall | None = None
        self._loaded: Deferred[int] | None = None

    def startService(self) -> None:
        super().startService()
        self._loaded = Deferred.fromCoroutine(self.guard.load())

        def loaded(count: int) -> int:
            if count:
                self.log.info("{count} bans restored", count=count)
            return count

        def failed(failure: Any) -> int:
            self.log.failure("could not load the saved bans; starting with none", failure)
            return 0

        self._loaded.addCallbacks(loaded, failed)
        loop = LoopingCall(self._tick)
        loop.clock = self.guard.clock
        self._loop = loop
        loop.start(self.guard.log_interval, now=False).addErrback(
            lambda failure: self.log.failure("guard loop stopped", failure)
        )

    def _tick(self) -> None:
        try:
            self.guard.tick()
        except Exception:
            self.log.failure("guard summary failed")

    def whenReady(self) -> Deferred[int]:
        assert self._loaded is not None, "whenReady before startService"
        return self._loaded

    def stopService(self) -> None:
        super().stopService()
        if self._loop is not None and self._loop.running:
            self._loop.stop()
        self._loop = None


# -- operator control: ``otedama ban`` over a unix socket ------------------------------


class AdminProtocol(LineOnlyReceiver):
    """One JSON request per line, one JSON reply per line:
    ``{"action": "list"}``, ``{"action": "add", "host": …, "duration": s, "reason": …,
    "actor": …}``, ``{"action": "remove", "host": …, "actor": …}``."""

    delimiter = b"\n"
    MAX_LENGTH = 4096

    def __init__(self, guard: Guard) -> None:
        self.guard = guard

    def lineReceived(self, line: bytes) -> None:
        try:
            request = json.loads(line)
            if not isinstance(request, dict):
                raise ValueError("expected a JSON object")
            reply = self.handle(request)
        except (ValueError, TypeError, KeyError) as error:
            self.reply({"ok": False, "error": str(error)})
            return
        reply.addCallbacks(
            self.reply,
            lambda failure: self.reply({"ok": False, "error": failure.getErrorMessage()}),
        )

    def handle(self, request: dict[str, Any]) -> Deferred[dict[str, Any]]:
        guard = self.guard
        action = request.get("action")
        actor = str(request.get("actor") or "operator")
        if action == "list":
            bans = [ban.to_json() for ban in guard.bans.active(guard.now())]
            return succeed({"ok": True, "bans": bans, "now": guard.now()})
        host = str(request["host"])
        if parse_host(host) is None:
            raise ValueError(f"{host!r} is not an IP address")
        if action == "add":
            duration = float(request.get("duration") or guard.settings.ban_duration)
            if not duration > 0:
                raise ValueError(f"ban duration must be positive seconds, got {duration!r}")
            reason = str(request.get("reason") or "banned by an operator")
            return guard.ban(host, duration, reason, actor).addCallback(
                lambda ban: {"ok": True, "ban": ban.to_json()}
            )
        if action == "remove":
            return guard.unban(host, actor).addCallback(
                lambda ban: {"ok": True, "removed": None if ban is None else ban.to_json()}
            )
        raise ValueError(f"unknown action {action!r}; expected list, add or remove")

    def reply(self, message: dict[str, Any]) -> None:
        if self.transport is not None:
            self.sendLine(json.dumps(message).encode())


class AdminFactory(Factory):
    """Serves :class:`AdminProtocol` (on ``unix:DATA_DIR/admin.sock:mode=600``)."""

    noisy = False

    def __init__(self, guard: Guard) -> None:
        self.guard = guard

    def buildProtocol(self, addr: IAddress | None) -> AdminProtocol:
        protocol = AdminProtocol(self.guard)
        protocol.factory = self
        return protocol

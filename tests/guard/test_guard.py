"""The guard at accept: lists, bans, rates, caps; bans on invalid work; the admin socket."""

from __future__ import annotations

import json
from pathlib import Path
from typing import Any

import pytest
import pytest_twisted
from twisted.internet import task
from twisted.internet.address import IPv4Address, IPv6Address
from twisted.internet.defer import Deferred, succeed
from twisted.internet.testing import StringTransport
from twisted.logger import Logger

from otedama.ops.bans import Ban, DdosSettings, JsonBanFile
from otedama.ops.firewall import Firewall
from otedama.ops.guard import AdminProtocol, Guard, GuardedFactory, GuardService
from tests.stratum.conftest import ADDRESS, Miner, Stack, StackMaker, logged


class MemoryStore:
    """A BanStore in memory (the same Protocol as the JSON file and a Redis store)."""

    def __init__(self, bans: list[Ban] | None = None) -> None:
        self.saved: list[list[Ban]] = []
        self.initial = bans or []

    def load(self) -> Deferred[list[Ban]]:
        return succeed(list(self.initial))

    def save(self, bans: list[Ban]) -> Deferred[None]:
        self.saved.append(bans)
        return succeed(None)


class MemoryAudit:
    def __init__(self) -> None:
        self.lines: list[tuple[str, str, str, str]] = []

    def record(
        self, actor: str, action: str, target: str, result: str, detail: Any = None
    ) -> Deferred[None]:
        self.lines.append((actor, action, target, result))
        return succeed(None)


def guarded_stack(
    make_stack: StackMaker, firewall: Firewall | None = None, **ddos: Any
) -> tuple[Stack, Guard, GuardedFactory]:
    stack = make_stack(
        start_difficulty=2**-32, min_difficulty=2**-32, max_share_rate=1e6, share_burst=10**6
    )
    guard = Guard(firewall or Firewall(), DdosSettings(**ddos), stack.clock, store=MemoryStore())
    factory = GuardedFactory(guard, stack.factory, "stratum")
    stack.server.work_observer = guard.note_work
    return stack, guard, factory


def connect(factory: GuardedFactory, host: str, port: int = 40000) -> Any:
    addr = IPv6Address("TCP", host, port) if ":" in host else IPv4Address("TCP", host, port)
    protocol = factory.buildProtocol(addr)
    if protocol is not None:
        protocol.makeConnection(StringTransport(peerAddress=addr))
    return protocol


def miner(factory: GuardedFactory, host: str) -> Miner:
    m = Miner.__new__(Miner)
    protocol = connect(factory, host)
    assert protocol is not None, f"{host} refused"
    m.protocol, m.transport, m._next_id = protocol, protocol.transport, 1
    return m


def start(m: Miner) -> None:
    """Subscribe and authorize; remember the job sent."""
    jobs = [line for line in m.start() if line.get("method") == "mining.notify"]
    m.job = jobs[-1]["params"]  # type: ignore[attr-defined]


def submit(
    m: Miner, nonce: int, job_id: str | None = None, ntime: str | None = None
) -> dict[str, Any]:
    job = m.job  # type: ignore[attr-defined]
    return m.call(
        "mining.submit",
        [ADDRESS + ".rig1", job_id or job[0], "00" * 8, ntime or job[7], f"{nonce:08x}"],
    )


def test_a_blacklisted_peer_is_refused_before_any_protocol_exists(make_stack: StackMaker) -> None:
    stack, guard, factory = guarded_stack(
        make_stack, Firewall.from_lists([], ["203.0.113.0/24", "2001:db8::/32"])
    )
    assert connect(factory, "203.0.113.9") is None
    assert connect(factory, "2001:db8::7") is None
    assert connect(factory, "::ffff:203.0.113.10") is None
    assert connect(factory, "198.51.100.1") is not None
    assert guard.refused_total["stratum: blacklisted"] == 3
    assert len(stack.server.sessions) == 1


def test_new_connections_over_the_rate_are_refused_and_come_back(make_stack: StackMaker) -> None:
    stack, guard, factory = guarded_stack(make_stack, connection_rate=1.0, connection_burst=3)
    assert [connect(factory, "10.0.0.1") is not None for _ in range(4)] == [True] * 3 + [False]
    assert connect(factory, "10.0.0.2") is not None
    stack.clock.advance(1.0)
    assert connect(factory, "10.0.0.1") is not None
    assert guard.refused_total["stratum: connection rate"] == 1


def test_open_connections_per_ip_are_capped_per_listener(make_stack: StackMaker) -> None:
    _stack, guard, factory = guarded_stack(make_stack, max_connections_per_ip=2)
    first = connect(factory, "10.0.0.1")
    assert connect(factory, "10.0.0.1") is not None
    assert connect(factory, "10.0.0.1") is None
    first.transport.loseConnection()
    first.connectionLost(None)
    assert connect(factory, "10.0.0.1") is not None
    assert guard.refused_total["stratum: connections per IP"] == 1


def test_whitelisted_peers_are_never_limited_nor_banned(make_stack: StackMaker) -> None:
    _stack, guard, factory = guarded_stack(
        make_stack,
        Firewall.from_lists(["10.9.0.0/16"], ["10.0.0.0/8"]),
        connection_rate=1.0,
        connection_burst=1,
        max_connections_per_ip=1,
        invalid_min=2,
        message_rate=1.0,
        message_burst=1,
    )
    protocols = [connect(factory, "10.9.1.1") for _ in range(5)]
    assert all(p is not None for p in protocols)
    m = miner(factory, "10.9.1.1")
    start(m)
    for _ in range(5):
        assert submit(m, 1, job_id="ffff")["result"] is False
    assert not m.closed
    assert len(guard.bans) == 0
    assert not guard.refused_total


def test_one_bad_share_never_bans_and_a_flood_of_them_does(make_stack: StackMaker) -> None:
    stack, guard, factory = guarded_stack(make_stack, invalid_min=20, invalid_ratio=0.5)
    honest = miner(factory, "10.0.0.1")
    start(honest)
    assert submit(honest, 1, job_id="ffff")["result"] is False  # a stale share
    for nonce in range(2, 30):
        assert submit(honest, nonce)["result"] is True
    flooder = miner(factory, "10.0.0.66")
    second = miner(factory, "10.0.0.66")
    start(flooder)
    for nonce in range(19):
        assert submit(flooder, nonce, job_id="ffff")["result"] is False
    assert len(guard.bans) == 0
    submit(flooder, 99, job_id="ffff")
    ban = guard.bans.banned("10.0.0.66", stack.clock.seconds())
    assert ban is not None and ban.actor == "auto"
    assert ban.until == stack.clock.seconds() + 3600.0
    # Its open connections are dropped at once; new ones are refused at accept.
    assert flooder.transport.disconnected or flooder.transport.disconnecting
    assert second.transport.disconnected or second.transport.disconnecting
    assert connect(factory, "10.0.0.66") is None
    assert guard.refused_total["stratum: banned"] == 1
    assert guard.bans.banned("10.0.0.1", stack.clock.seconds()) is None
    assert not honest.closed
    assert [b.host for b in guard.store.saved[-1]] == ["10.0.0.66"]  # type: ignore[union-attr]
    # The ban ends by itself.
    stack.clock.advance(3600.0)
    assert connect(factory, "10.0.0.66") is not None


def test_over_the_message_rate_a_connection_is_dropped_unparsed(make_stack: StackMaker) -> None:
    _stack, guard, factory = guarded_stack(make_stack, message_rate=10.0, message_burst=20)
    m = miner(factory, "10.0.0.5")
    m.send_raw(b'{"id": 1, "method": "mining.subscribe", "params": []}\n' * 15)
    assert not m.closed
    m.send_raw(b"\n" * 10)
    assert m.transport.disconnecting or m.transport.disconnected
    assert guard.refused_total["stratum: message rate"] == 1


def test_over_the_message_rate_an_http_connection_is_aborted_cleanly() -> None:
    """twisted.web's Site builds a proxy protocol with no ``transport`` of its own: the
    guard aborts through the transport it saw at connect (it raised AttributeError in
    the reactor before), and an HTTP listener counts one message per read."""
    from twisted.web.resource import Resource
    from twisted.web.server import Site

    clock = task.Clock()
    guard = Guard(
        Firewall(), DdosSettings(message_rate=10.0, message_burst=20), clock, store=MemoryStore()
    )
    factory = GuardedFactory(guard, Site(Resource()), "api", lines=False)
    addr = IPv4Address("TCP", "10.0.0.7", 40000)
    protocol = factory.buildProtocol(addr)
    transport = StringTransport(peerAddress=addr)
    protocol.makeConnection(transport)
    assert getattr(protocol, "transport", None) is None  # the proxy keeps none
    request = b"GET / HTTP/1.1\r\nHost: x\r\nAccept: */*\r\nUser-Agent: t\r\n\r\n"
    for _ in range(20):  # 20 requests of 5 lines each: 20 messages, the whole burst
        protocol.dataReceived(request)
    assert transport.value().count(b"HTTP/1.1 ") == 20  # every request answered
    assert guard.refused_total["api: message rate"] == 0 and not transport.disconnecting
    protocol.dataReceived(request)
    assert guard.refused_total["api: message rate"] == 1
    assert transport.disconnecting


def test_refusals_are_one_summary_line_per_interval(
    make_stack: StackMaker, monkeypatch: pytest.MonkeyPatch
) -> None:
    log_events: list[dict[str, Any]] = []
    monkeypatch.setattr(Guard, "log", Logger(observer=log_events.append))
    _stack, guard, factory = guarded_stack(make_stack, Firewall.from_lists([], ["10.6.6.6"]))
    for _ in range(500):
        connect(factory, "10.6.6.6")
    guard.tick()
    lines = [line for line in logged(log_events) if "refused" in line]
    assert len(lines) == 1
    assert "refused 500 connections" in lines[0] and "10.6.6.6 (500)" in lines[0]
    guard.tick()
    assert len([line for line in logged(log_events) if "refused" in line]) == 1


def test_saved_bans_are_restored_before_the_listeners_start() -> None:
    clock = task.Clock()
    clock.advance(1000.0)
    store = MemoryStore(
        [Ban("10.0.0.7", 5000.0, "flood", "auto", 900.0), Ban("10.0.0.8", 10.0, "", "", 0.0)]
    )
    guard = Guard(Firewall(), DdosSettings(), clock, store=store)
    service = GuardService(guard)
    service.startService()
    ready = service.whenReady()
    assert ready.called and ready.result == 1
    assert guard.refusal("10.0.0.7") == "banned"
    assert guard.refusal("10.0.0.8") is None
    service.stopService()


def admin(guard: Guard, request: dict[str, Any]) -> dict[str, Any]:
    protocol = AdminProtocol(guard)
    transport = StringTransport()
    protocol.makeConnection(transport)
    protocol.dataReceived(json.dumps(request).encode() + b"\n")
    reply: dict[str, Any] = json.loads(transport.value())
    return reply


def test_the_admin_socket_lists_adds_and_removes_bans_with_audit_lines(
    make_stack: StackMaker,
) -> None:
    _stack, guard, factory = guarded_stack(make_stack)
    audit = MemoryAudit()
    guard.audit = audit  # type: ignore[assignment]
    victim = connect(factory, "10.0.0.9")
    reply = admin(guard, {"action": "add", "host": "10.0.0.9", "duration": 60, "actor": "alice"})
    assert reply["ok"] and reply["ban"]["host"] == "10.0.0.9" and reply["ban"]["actor"] == "alice"
    assert victim.transport.disconnecting or victim.transport.disconnected
    assert connect(factory, "10.0.0.9") is None
    listed = admin(guard, {"action": "list"})
    assert [b["host"] for b in listed["bans"]] == ["10.0.0.9"]
    assert admin(guard, {"action": "remove", "host": "10.0.0.9"})["removed"]["host"] == "10.0.0.9"
    assert connect(factory, "10.0.0.9") is not None
    assert admin(guard, {"action": "remove", "host": "10.0.0.9"})["removed"] is None
    assert audit.lines == [
        ("alice", "ban.add", "10.0.0.9", "ok"),
        ("operator", "ban.remove", "10.0.0.9", "ok"),
        ("operator", "ban.remove", "10.0.0.9", "not banned"),
    ]
    bad = admin(guard, {"action": "add", "host": "not-an-ip"})
    assert not bad["ok"] and "not an IP address" in bad["error"]
    assert not admin(guard, {"action": "explode", "host": "1.2.3.4"})["ok"]


def test_ipv4_mapped_peers_share_the_ipv4_ban(make_stack: StackMaker, tmp_path: Path) -> None:
    _stack, guard, factory = guarded_stack(make_stack)
    guard.ban("::ffff:192.0.2.1", 60.0, "test", "op")
    assert connect(factory, "192.0.2.1") is None


@pytest_twisted.ensureDeferred
async def test_a_ban_survives_a_restart_through_the_ban_file(tmp_path: Path) -> None:
    from twisted.internet import reactor

    path = tmp_path / "bans.json"
    first = Guard(Firewall(), DdosSettings(), reactor, store=JsonBanFile(path, reactor))
    await first.ban("198.51.100.7", 3600.0, "abuse", "alice")
    assert first.store is not None
    await first.store.save(first.bans.active(reactor.seconds()))  # the save in flight, then ours

    second = Guard(Firewall(), DdosSettings(), reactor, store=JsonBanFile(path, reactor))
    service = GuardService(second)
    service.startService()
    try:
        assert await service.whenReady() == 1
        assert second.refusal("198.51.100.7") == "banned"
        [ban] = second.bans.active(reactor.seconds())
        assert (ban.reason, ban.actor) == ("abuse", "alice")
    finally:
        service.stopService()


def test_a_reload_of_the_lists_applies_to_hosts_the_guard_has_already_seen() -> None:
    """The guard caches each host's parsed form and list membership; a reload of the
    firewall lists must not be hidden by that cache."""
    clock = task.Clock()
    guard = Guard(Firewall(), DdosSettings(), clock)
    assert guard.key("::ffff:192.0.2.9") == "192.0.2.9"
    assert not guard.trusted("192.0.2.9") and guard.blocked("198.51.100.4") is None
    guard.configure(Firewall.from_lists(["192.0.2.0/24"], ["198.51.100.4"]), DdosSettings())
    assert guard.trusted("192.0.2.9") and guard.trusted("::ffff:192.0.2.9")
    assert guard.blocked("198.51.100.4") == "blacklisted"
    assert guard.refusal("198.51.100.4") == "blacklisted"

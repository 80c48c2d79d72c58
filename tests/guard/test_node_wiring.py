"""The node as ``twistd otedama`` builds it: every listener behind the guard, Stratum over
TLS on its own port sharing the plain port's server, reload hooks for the security keys."""

from __future__ import annotations

import json
from pathlib import Path

import pytest_twisted
from twisted.internet.task import deferLater

from otedama.config import load_config
from otedama.ops.guard import Guard, GuardedFactory, GuardService
from otedama.ops.logging import LogControl
from otedama.ops.tls import TLSServerFactory, load_context
from otedama.stratum.protocol import StratumFactory
from otedama.tap import build_node
from tests.guard.certs import self_signed
from tests.pool.support import POOL


def write_config(path: Path, cert: Path, key: Path, blacklist: str) -> None:
    path.write_text(
        f"""
app:
  data_dir: {path.parent / "data"}
chain:
  network: devnet
  backend: devnet
pool:
  wallet_address: {POOL}
stratum:
  address: 127.0.0.1:3333
  tls_address: 127.0.0.1:3443
database:
  url: sqlite:///{path.parent / "ledger.sqlite"}
api:
  enable: true
  address: 127.0.0.1:0
monitoring:
  health:
    enabled: true
  metrics:
    enabled: true
security:
  enable_tls: true
  cert_file: {cert}
  key_file: {key}
  firewall:
    enabled: true
    blacklist: ["{blacklist}"]
  audit:
    enabled: true
""",
        encoding="utf-8",
    )


@pytest_twisted.ensureDeferred
async def test_every_listener_is_guarded_and_a_reload_applies_the_lists(tmp_path: Path) -> None:
    from twisted.internet import reactor

    cert, key = self_signed(tmp_path, "one")
    path = tmp_path / "otedama.yaml"
    write_config(path, cert, key, "203.0.113.0/24")
    node = build_node(load_config(path), reactor, LogControl("info", "text", stdout=False))
    guard_service = node.getServiceNamed("guard")
    assert isinstance(guard_service, GuardService)
    guard: Guard = guard_service.guard
    names = [service.name for service in node]
    assert names.index("guard") < names.index("stratum")  # bans load before accepting
    for name in ("stratum", "stratum-tls", "health", "metrics", "api"):
        assert isinstance(node.getServiceNamed(name).factory, GuardedFactory), name
    assert isinstance(node.getServiceNamed("api").factory.wrapped, TLSServerFactory)
    plain = node.getServiceNamed("stratum").factory.wrapped
    secure = node.getServiceNamed("stratum-tls").factory.wrapped
    assert isinstance(plain, StratumFactory) and isinstance(secure, TLSServerFactory)
    assert secure.wrappedFactory is plain  # one server: one extranonce space
    assert plain.server.work_observer == guard.note_work
    assert node.getServiceNamed("stratum-tls").endpoint._port == 3443
    admin = node.getServiceNamed("admin").endpoint
    assert admin._address == str(tmp_path / "data" / "admin.sock") and admin._mode == 0o600
    assert guard.refusal("203.0.113.9") == "blacklisted"
    assert {"security.firewall", "security.cert_file"} <= node.live_keys

    write_config(path, cert, key, "198.51.100.0/24")
    assert node.reload()
    assert guard.refusal("203.0.113.9") is None
    assert guard.refusal("198.51.100.1") == "blacklisted"
    audit = tmp_path / "data" / "audit.log"
    for _ in range(500):  # the audit line is written in a thread
        if audit.exists() and audit.read_text():
            break
        await deferLater(reactor, 0.01)
    [entry] = [json.loads(line) for line in audit.read_text().splitlines()]
    assert entry["action"] == "config.reload" and entry["target"] == str(path)


@pytest_twisted.ensureDeferred
async def test_the_api_answers_over_https_with_the_configured_certificate(tmp_path: Path) -> None:
    from twisted.internet import reactor, ssl
    from twisted.web.client import Agent, BrowserLikePolicyForHTTPS, readBody

    cert, key = self_signed(tmp_path, "api")
    path = tmp_path / "otedama.yaml"
    write_config(path, cert, key, "203.0.113.0/24")
    node = build_node(load_config(path), reactor, LogControl("info", "text", stdout=False))
    port = reactor.listenTCP(0, node.getServiceNamed("api").factory, interface="127.0.0.1")
    try:
        trust = ssl.Certificate.loadPEM(cert.read_bytes())
        agent = Agent(reactor, contextFactory=BrowserLikePolicyForHTTPS(trustRoot=trust))
        url = f"https://localhost:{port.getHost().port}/api/v1/openapi.json"
        response = await agent.request(b"GET", url.encode())
        document = json.loads(await readBody(response))
        assert response.code == 200 and document["openapi"].startswith("3.1")
    finally:
        await port.stopListening()


def test_the_federation_listener_is_guarded_and_shares_the_stratum_certificate(
    tmp_path: Path,
) -> None:
    from twisted.internet import reactor

    from otedama.federation.security import SniffingFactory
    from otedama.federation.service import FederationService

    cert, key = self_signed(tmp_path, "fed")
    path = tmp_path / "otedama.yaml"
    write_config(path, cert, key, "203.0.113.0/24")
    with path.open("a", encoding="utf-8") as file:
        file.write("federation:\n  enabled: true\n  listen_port: 0\n")
    node = build_node(load_config(path), reactor, LogControl("info", "text", stdout=False))
    guard: Guard = node.getServiceNamed("guard").guard
    federation = node.getServiceNamed("federation")
    assert isinstance(federation, FederationService)
    listener = federation.listener_factory()
    assert isinstance(listener, GuardedFactory) and listener.guard is guard
    assert listener.name == "federation" and listener in guard.factories
    sniffing = listener.wrapped
    assert isinstance(sniffing, SniffingFactory) and sniffing.tls.mode == "on"  # auto
    # one certificate for Stratum's TLS port and the gossip port: one reload renews both
    renewed = load_context(*self_signed(tmp_path, "renewed"))
    sniffing.tls.server.swap(renewed)
    stratum_tls = node.getServiceNamed("stratum-tls").factory.wrapped
    for factory in (stratum_tls, sniffing.tls_factory):
        assert factory._creatorCallable(object()).get_context() is renewed
    assert federation.gossip.policy is guard and federation.dht.policy is guard
    assert federation.own_record(reactor.seconds()).tls
    assert federation.status().tls == "on"

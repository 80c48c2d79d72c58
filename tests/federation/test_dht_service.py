"""Five FederationServices on 127.0.0.1 (TCP gossip + UDP DHT) that know one bootstrap node:
they find and link to each other, gossip an item, show it in the read model, and a node
restarted from its data dir keeps its id and rejoins."""

from __future__ import annotations

import json
from pathlib import Path
from typing import Any

import pytest_twisted

from otedama.config import load_config
from otedama.federation.identity import KEY_FILE, load_or_create
from otedama.federation.service import FederationService, federation_service

from .test_gossip import MemoryReputation, RecordingHandler, wait_until

FAST_DHT = {
    "bootstrap_interval": 0.1,
    "discover_interval": 0.3,
    "rpc_timeout": 0.5,
    "backoff_initial": 0.2,
    "backoff_maximum": 0.5,
}


def make_service(
    reactor: Any, data_dir: Path, label: str, bootstrap: list[str]
) -> FederationService:
    return FederationService(
        load_or_create(data_dir, label),
        network="regtest",
        payout_script=bytes.fromhex("0014") + label.encode().ljust(20, b"-")[:20],
        listen_port=0,
        handler=RecordingHandler(),
        reputation=MemoryReputation(),
        reactor=reactor,
        interface="127.0.0.1",
        bootstrap_peers=bootstrap,
        upkeep_interval=0.5,
        dht_options=FAST_DHT,
    )


def connected(service: FederationService) -> int:
    return service.status().connected_peers


@pytest_twisted.ensureDeferred
async def test_services_discover_link_gossip_and_a_restarted_node_rejoins(tmp_path: Path) -> None:
    from twisted.internet import reactor

    first = make_service(reactor, tmp_path / "n0", "n0", [])
    await first.startService()
    state, detail = first.health()
    assert (state, detail["reason"]) == ("degraded", "no federation peer connected")
    seed = [f"localhost:{first.port}"]
    services = [first] + [
        make_service(reactor, tmp_path / f"n{i}", f"n{i}", seed) for i in range(1, 5)
    ]
    try:
        for service in services[1:]:
            await service.startService()
        await wait_until(reactor, lambda: all(connected(s) == 4 for s in services), limit=30)

        status = services[0].status()
        assert status.node_id == services[0].identity.node_id.hex()
        assert status.listen_address == f"127.0.0.1:{first.port}"
        by_id = {peer.node_id: peer for peer in status.peers}
        for other in services[1:]:
            peer = by_id[other.identity.node_id.hex()]
            assert peer.label == other.identity.label and peer.connected
            assert peer.address == f"127.0.0.1:{other.port}"
            assert peer.reputation == 1.0 and peer.last_seen > 0
        json.dumps(status.to_json())  # the operator view is plain JSON
        state, detail = services[0].health()
        assert state == "ok" and detail["connected_peers"] == 4

        services[2].publish_fed_share({"share": 1})
        handlers = [s.gossip.handler for s in services]
        others = handlers[:2] + handlers[3:]
        await wait_until(reactor, lambda: all(len(h.shares) == 1 for h in others))  # type: ignore[attr-defined]
        assert handlers[2].shares == []  # type: ignore[attr-defined]

        # restart node 1 from its data dir: same id, rejoins
        old_id = services[1].identity.node_id
        await services[1].stopService()
        await wait_until(reactor, lambda: connected(services[0]) == 3)
        services[1] = make_service(reactor, tmp_path / "n1", "n1", seed)
        assert services[1].identity.node_id == old_id
        await services[1].startService()
        await wait_until(reactor, lambda: all(connected(s) == 4 for s in services), limit=30)
    finally:
        for service in services:
            if service.running:
                await service.stopService()


def test_the_lead_builds_the_service_from_config(tmp_path: Path) -> None:
    from twisted.internet import reactor

    config = load_config(
        data={
            "app": {"data_dir": str(tmp_path)},
            "federation": {
                "enabled": True,
                "node_id": "alpha",
                "listen_port": 4444,
                "bootstrap_peers": ["seed.example.org:4444"],
                "advertise_host": "pool.example.org",
            },
        },
        env={},
    )
    service = federation_service(
        config, reactor, handler=RecordingHandler(), reputation=MemoryReputation()
    )
    assert (tmp_path / KEY_FILE).exists()
    assert service.identity.label == "alpha"
    assert service.network == config.chain.network
    assert service.dht.bootstrap_peers == [("seed.example.org", 4444)]
    record = service.own_record(1_800_000_000)
    assert (record.host, record.port) == ("pool.example.org", 4444)
    assert record.payout_script == service.payout_script != b""


def test_upkeep_stops_dialling_stale_records_but_keeps_live_links(tmp_path: Path) -> None:
    from twisted.internet.testing import MemoryReactorClock

    from otedama.federation.identity import Identity
    from otedama.federation.records import ContactRecord

    reactor = MemoryReactorClock()
    reactor.advance(1_800_000_000)
    service = make_service(reactor, tmp_path, "me", [])
    linked, unlinked = Identity.generate("linked"), Identity.generate("unlinked")
    for identity in (linked, unlinked):
        record = ContactRecord.create(
            identity,
            host="192.0.2.1",
            port=4444,
            network="regtest",
            payout_script=b"",
            now=reactor.seconds(),
        )
        assert service.book.offer(record.encode(), reactor.seconds()) == record
    service.gossip.ready[linked.public_key] = object()  # type: ignore[assignment]
    calls: list[tuple[str, bytes]] = []
    service.gossip.connect = lambda r: calls.append(("connect", r.public_key)) or True  # type: ignore[method-assign]
    service.gossip.disconnect = lambda k: calls.append(("disconnect", k))  # type: ignore[method-assign]
    service.gossip.tick = lambda: None  # type: ignore[method-assign]
    service.upkeep()
    assert sorted(calls) == sorted(
        [("connect", linked.public_key), ("connect", unlinked.public_key)]
    )
    calls.clear()
    reactor.advance(3601)
    service.upkeep()
    assert calls == [("disconnect", unlinked.public_key)]
    assert len(service.book) == 0

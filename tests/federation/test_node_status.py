"""The operator view: the /health federation component and ``otedama federation status``."""

from __future__ import annotations

import json
import threading
from collections.abc import Iterator
from http.server import BaseHTTPRequestHandler, ThreadingHTTPServer
from typing import Any

import pytest
from twisted.internet.task import Clock

from otedama import cli
from otedama.chain.hashing import sha256d
from otedama.commands.federation import format_status
from otedama.federation.identity import Identity
from otedama.federation.node import ClockedReputation, FederationNode
from otedama.federation.reputation import Reputation
from otedama.federation.service import FederationStatus, PeerStatus
from otedama.federation.window import FederationWindow, WindowEntry
from otedama.ops.health import DEGRADED, OK
from otedama.tap import FederationParts

NOW = 1_800_000_000
PEER = Identity.generate("bob")


class Service:
    def __init__(self, connected: bool) -> None:
        self.connected = connected

    def status(self) -> FederationStatus:
        peer = PeerStatus(PEER.node_id.hex(), "bob", "127.0.0.1:4445", 0.75, self.connected, NOW)
        return FederationStatus("aa" * 20, "alice", "bb" * 32, "0.0.0.0:4444", "devnet", (peer,))

    def health(self) -> tuple[str, dict[str, Any]]:
        return ("ok", {"connected_peers": 1}) if self.connected else ("degraded", {})


def parts(connected: bool) -> FederationParts:
    clock = Clock()
    clock.advance(NOW)
    window = FederationWindow(7200)
    window.add(WindowEntry(sha256d(b"1"), PEER.node_id, b"\x00\x14" + bytes(20), 3, NOW - 5), NOW)
    node = FederationNode(
        Identity.generate("alice"),
        b"\x00\x14" + b"\x01" * 20,
        window,
        ClockedReputation(Reputation(), clock),
        clock,
    )
    node.tips.network_target = 1 << 240
    return FederationParts(node, Service(connected), "bcrt1qexample")


def test_the_health_component_is_degraded_without_a_linked_peer_and_carries_the_view() -> None:
    assert parts(False).check().status == DEGRADED
    check = parts(True).check()
    assert check.status == OK
    view = check.detail["status"]
    for key in ("node_id", "label", "public_key", "payout_address", "window", "share_target"):
        assert key in view
    (peer,) = view["peers"]
    assert set(peer) >= {
        "node_id",
        "label",
        "address",
        "reputation",
        "window_share",
        "connected",
        "last_seen",
    }
    assert peer["window_share"] == 1.0 and peer["address"] == "127.0.0.1:4445"
    assert view["payout_address"] == "bcrt1qexample"
    assert json.loads(json.dumps(view)) == view


@pytest.fixture
def health_server() -> Iterator[tuple[str, dict[str, Any]]]:
    """A /health endpoint serving whatever report the test puts in ``served``."""
    served: dict[str, Any] = {}

    class Handler(BaseHTTPRequestHandler):
        def do_GET(self) -> None:
            body = json.dumps(served).encode()
            self.send_response(200)
            self.send_header("content-type", "application/json")
            self.end_headers()
            self.wfile.write(body)

        def log_message(self, *args: Any) -> None:
            pass

    server = ThreadingHTTPServer(("127.0.0.1", 0), Handler)
    thread = threading.Thread(target=server.serve_forever, daemon=True)
    thread.start()
    try:
        yield f"http://127.0.0.1:{server.server_address[1]}/health", served
    finally:
        server.shutdown()
        server.server_close()


def test_status_json_prints_exactly_the_nodes_view(
    health_server: tuple[str, dict[str, Any]], capsys: pytest.CaptureFixture[str]
) -> None:
    url, served = health_server
    view = parts(True).check().detail["status"]
    served.update({"status": "ok", "checks": {"federation": {"status": view}}})
    assert cli.main(["federation", "status", "--format", "json", "--url", url]) == 0
    assert json.loads(capsys.readouterr().out) == view
    assert cli.main(["federation", "status", "--url", url]) == 0
    table = capsys.readouterr().out
    assert "bob" in table and "127.0.0.1:4445" in table and "100.0%" in table


def test_status_of_a_node_without_the_federation_says_how_to_enable_it(
    health_server: tuple[str, dict[str, Any]], capsys: pytest.CaptureFixture[str]
) -> None:
    url, served = health_server
    served.update({"status": "ok", "checks": {"chain": {"status": "ok"}}})
    assert cli.main(["federation", "status", "--url", url]) == 2
    assert "set federation.enabled: true" in capsys.readouterr().err


def test_the_table_names_a_peer_never_seen() -> None:
    view = parts(False).check().detail["status"]
    view["peers"][0]["last_seen"] = 0
    assert "never" in format_status(view, NOW)

"""``/api/v1/federation``: the operator view of the node's federation, in the document."""

from __future__ import annotations

from pathlib import Path
from typing import Any

from treq.testing import StubTreq

from otedama.api.federation import register_federation_route
from otedama.api.resource import ApiPolicy
from tests.api.support import site
from tests.api.test_resource import call

VIEW: dict[str, Any] = {
    "node_id": "ab" * 20,
    "label": "pool-a",
    "public_key": "cd" * 32,
    "listen_address": "127.0.0.1:4444",
    "network": "regtest",
    "payout_address": "bcrt1qexample",
    "window": {
        "duration": 7200.0,
        "shares": 12,
        "total_difficulty": 3.5,
        "own_shares": 5,
        "own_difficulty": 1.5,
        "own_part": 0.43,
        "nodes": 2,
    },
    "share_target": "00" * 4 + "ff" * 28,
    "peers": [
        {
            "node_id": "ef" * 20,
            "label": "pool-b",
            "address": "127.0.0.1:4445",
            "reputation": 0.62,
            "window_share": 0.57,
            "connected": True,
            "last_seen": 1_000_000.0,
        }
    ],
}


def test_the_federation_view_is_served_and_documented(tmp_path: Path) -> None:
    parts, _, _, _ = site(tmp_path, ApiPolicy(auth_enabled=False, rate_limiting=False))
    register_federation_route(parts.registry, lambda: dict(VIEW))
    stub = StubTreq(parts.site.resource)
    status, _, data = call(stub, "GET", "/federation")
    assert status == 200
    assert data == {"enabled": True, **VIEW}
    _, _, document = call(stub, "GET", "/openapi.json")
    schema = document["paths"]["/api/v1/federation"]["get"]
    assert schema["operationId"] == "getFederation"


def test_a_node_without_a_federation_says_so(tmp_path: Path) -> None:
    parts, _, _, _ = site(tmp_path, ApiPolicy(auth_enabled=False, rate_limiting=False))
    register_federation_route(parts.registry, None)
    status, _, data = call(StubTreq(parts.site.resource), "GET", "/federation")
    assert (status, data) == (200, {"enabled": False})

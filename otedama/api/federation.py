"""``GET /api/v1/federation``: the federation's operator view, read from the node.

The same object ``otedama federation status --format json`` prints (this node's id, label,
key, payout address, the window, the federation share target and a row per known peer),
with ``enabled``; a node without a federation answers ``{"enabled": false}``.
"""

from __future__ import annotations

from collections.abc import Callable
from typing import Any

from otedama.api.endpoints import ApiRegistry
from otedama.api.routes import BOOLEAN, INTEGER, NUMBER, STRING, ApiRequest, Route, array, obj

__all__ = ["FEDERATION", "register_federation_route"]

PEER = obj(
    {
        "node_id": STRING,
        "label": STRING,
        "address": STRING,
        "reputation": NUMBER,
        "window_share": NUMBER,
        "connected": BOOLEAN,
        "last_seen": NUMBER,
        "tls": BOOLEAN,
    }
)

WINDOW = obj(
    {
        "duration": NUMBER,
        "shares": INTEGER,
        "total_difficulty": NUMBER,
        "own_shares": INTEGER,
        "own_difficulty": NUMBER,
        "own_part": NUMBER,
        "nodes": INTEGER,
    }
)

FEDERATION = obj(
    {
        "enabled": BOOLEAN,
        "node_id": STRING,
        "label": STRING,
        "public_key": STRING,
        "tls": STRING,
        "payout_address": STRING,
        "window": WINDOW,
        "share_target": STRING,
        "peers": array(PEER),
    },
    required=("enabled",),
)


def register_federation_route(
    registry: ApiRegistry, operator_view: Callable[[], dict[str, Any]] | None
) -> None:
    """Serve ``/federation`` from ``operator_view`` (None: the node has no federation)."""

    async def federation(request: ApiRequest) -> dict[str, Any]:
        if operator_view is None:
            return {"enabled": False}
        return {"enabled": True, **operator_view()}

    registry.register(
        Route(
            "GET",
            "/federation",
            "getFederation",
            "This node's federation: identity, window, share target and peers.",
            FEDERATION,
            tag="node",
        ),
        federation,
    )

"""One devnet node with its CPU miner for the API's end-to-end tests (started once for
the package and stopped after it, so its miner does not load the rest of the suite)."""

from __future__ import annotations

from collections.abc import Iterator
from typing import Any

import pytest

from otedama.config import DEVNET_POOL_ADDRESS
from tests.api.node import Node, start_node, stop_node


@pytest.fixture(scope="package")
def devnet_node(tmp_path_factory: pytest.TempPathFactory) -> Iterator[Node]:
    node = start_node(tmp_path_factory.mktemp("api-node"))
    node.address = DEVNET_POOL_ADDRESS
    try:
        yield node
    finally:
        stop_node(node)


@pytest.fixture(scope="package")
def mined(devnet_node: Node) -> Node:
    """The node once it has found a block and its hashrate history has a point."""

    def ready() -> Any:
        _, _, blocks = devnet_node.get("/api/v1/blocks")
        _, _, pool = devnet_node.get("/api/v1/pool")
        return blocks["total"] >= 1 and pool["hashrate"]["10m"] > 0

    devnet_node.wait_until("a block and a hashrate point", ready, 180)
    return devnet_node

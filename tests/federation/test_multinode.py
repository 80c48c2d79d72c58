"""A federation on 127.0.0.1: one shared ``otedama devnet`` and five ``otedama serve``
node processes that know only the first node, each mining with its own built-in CPU
miner (one thread each, on two cores).

Checked, each within a generous but finite bound: the nodes find each other; after their
warm-up, federation shares flow (every node's window holds every node's work); blocks
found on any node then pay every node in their coinbase, and every receiver judges them
fair (no "underpays" anywhere, no honest node below the threshold); each node's ledger
holds exactly what the chain paid its payout script, credited to its own miners and fee;
a node stopped and restarted keeps its id and rejoins.
"""

from __future__ import annotations

import os
import sqlite3
import time
from collections.abc import Iterator
from pathlib import Path
from typing import Any

import pytest

from otedama.chain.coinbase import node_commitments
from otedama.ledger.income import coinbase_of_block
from otedama.pool.core import SETTLEMENT_LAG

from .multinode import Devnet, Node, address, rpc, script, wait_for

COUNT = int(os.environ.get("OTEDAMA_FEDERATION_NODES", "5"))
"""The issue's five (about 2 minutes here); ``OTEDAMA_FEDERATION_NODES=3`` for a busier
machine."""
BOUND = 240.0


@pytest.fixture
def federation(tmp_path: Path) -> Iterator[tuple[Devnet, list[Node]]]:
    devnet = Devnet(tmp_path / "devnet", difficulty="0.001")
    nodes: list[Node] = []
    try:
        devnet.start()
        for n in range(COUNT):
            bootstrap = nodes[0].fed_port if nodes else None
            node = Node(n, tmp_path / f"node{n}", devnet, bootstrap)
            node.write_config()
            node.migrate()
            node.start()
            nodes.append(node)
        yield devnet, nodes
    except BaseException:
        for proc in [devnet.proc, *(node.proc for node in nodes)]:
            if proc is not None:
                print(f"--- {proc.name} ---\n{proc.tail()}")
        raise
    finally:
        for node in nodes:
            node.stop()
        devnet.stop()


def statuses(nodes: list[Node]) -> list[dict[str, Any]] | None:
    views = [node.status() for node in nodes]
    if any(view is None for view in views):
        return None
    return views  # type: ignore[return-value]


def linked(nodes: list[Node]) -> list[dict[str, Any]] | None:
    views = statuses(nodes)
    if views is None:
        return None
    ok = all(sum(p["connected"] for p in view["peers"]) == len(nodes) - 1 for view in views)
    return views if ok else None


def sharing(nodes: list[Node]) -> list[dict[str, Any]] | None:
    """Every node participates and its window holds work of every node."""
    views = statuses(nodes)
    if views is None:
        return None
    for view in views:
        if not view["participating"] or view["window"]["own_shares"] == 0:
            return None
        if len(view["peers"]) < len(nodes) - 1 or any(
            p["window_share"] <= 0 for p in view["peers"]
        ):
            return None
    return views


def chain_blocks(devnet: Devnet, first: int, last: int) -> list[tuple[int, str, Any]]:
    """(height, hash, coinbase) of the best chain's blocks ``first..last``."""
    blocks = []
    for height in range(first, last + 1):
        block_hash = rpc(devnet.url, "getblockhash", height)
        raw = bytes.fromhex(rpc(devnet.url, "getblock", block_hash, 0))
        blocks.append((height, block_hash, coinbase_of_block(raw)))
    return blocks


def ledger_books(node: Node) -> tuple[dict[str, int], dict[str, int], set[str]]:
    """Rewards per block hash, journal sums per block hash, addresses credited."""
    with sqlite3.connect(f"file:{node.directory / 'ledger.sqlite'}?mode=ro", uri=True) as db:
        rewards = dict(db.execute("SELECT hash, reward FROM blocks"))
        journal = dict(
            db.execute(
                "SELECT b.hash, SUM(j.amount) FROM journal j JOIN blocks b ON j.block_id = b.id "
                "GROUP BY b.hash"
            )
        )
        credited = {row[0] for row in db.execute("SELECT DISTINCT address FROM journal")}
    return rewards, journal, credited


def books_match_the_chain(devnet: Devnet, nodes: list[Node], last: int) -> bool:
    blocks = chain_blocks(devnet, 1, last)
    for node in nodes:
        ours = script(node.n)
        paid = {
            block_hash: sum(o.value for o in coinbase.outputs if o.script_pubkey == ours)
            for _, block_hash, coinbase in blocks
        }
        paid = {h: amount for h, amount in paid.items() if amount}
        rewards, journal, credited = ledger_books(node)
        if {h: rewards.get(h) for h in paid} != paid:
            return False
        if any(journal.get(h) != amount for h, amount in paid.items()):
            return False  # credits and fee add up to what the chain paid
        if credited - {address(node.n)}:
            return False  # its miners (and its fee) only
    return True


@pytest.mark.timeout(900)
def test_a_federation_shares_work_settles_on_chain_and_keeps_its_books(
    federation: tuple[Devnet, list[Node]],
) -> None:
    devnet, nodes = federation
    first = wait_for("every node linked to every other", lambda: linked(nodes), BOUND, 2)
    ids = [view["node_id"] for view in first]
    assert len(set(ids)) == COUNT
    # The operator's command says the same of each node (the polls read its source).
    for node, node_id in zip(nodes, ids, strict=True):
        told = wait_for("otedama federation status", lambda n=node: n.status(cli=True), 60, 1)
        assert told["node_id"] == node_id and len(told["peers"]) == COUNT - 1

    wait_for("federation shares of every node in every window", lambda: sharing(nodes), BOUND, 2)
    # A template splits the window as of SETTLEMENT_LAG seconds (whole seconds) before it
    # is built: only templates built after that much more time split the windows just seen.
    time.sleep(SETTLEMENT_LAG + 1.5)
    start = int(rpc(devnet.url, "getblockcount")) + 1  # templates after this split the window
    wait_for(
        "three blocks found after the windows filled",
        lambda: int(rpc(devnet.url, "getblockcount")) >= start + 3,
        BOUND,
        2,
    )
    tip = int(rpc(devnet.url, "getblockcount"))
    finders = set()
    for height, _hash, coinbase in chain_blocks(devnet, start + 1, tip):
        paid = {o.script_pubkey for o in coinbase.outputs if o.value}
        left_out = [node.n for node in nodes if script(node.n) not in paid]
        if left_out:
            for node in nodes:
                tail = node.proc.tail(60) if node.proc else ""
                print(f"--- node {node.n} ---\n{node.status()}\n{tail}")
        finder = [ids.index(i.hex()) for i in node_commitments(coinbase.outputs) if i.hex() in ids]
        assert not left_out, (
            f"block {height} (checked from {start + 1} to {tip}) found by node {finder} left "
            f"out nodes {left_out}: {[(o.value, o.script_pubkey.hex()) for o in coinbase.outputs]}"
        )
        finders.update(node_commitments(coinbase.outputs))
    assert finders <= {bytes.fromhex(i) for i in ids}

    views = statuses(nodes)
    assert views is not None
    for view in views:
        verified = view["verified"]
        assert "underpays" not in verified["blocks_rejected"]
        assert "underpays" not in verified["shares_rejected"]
        low = [(p["label"], p["reputation"]) for p in view["peers"] if p["reputation"] < 0.5]
        assert not low, f"{view['label']} distrusts {low}: {verified}"
    assert sum(view["verified"]["blocks_accepted"] for view in views) > 0

    wait_for(
        "each ledger holds what the chain paid its node",
        lambda: books_match_the_chain(devnet, nodes, tip - 1),
        BOUND,
        5,
    )

    # A node stopped and started again keeps its id and rejoins.
    restarted = nodes[-1]
    restarted.stop()
    restarted.start()
    wait_for("the restarted node linked to every other", lambda: linked(nodes), BOUND, 2)
    # One federation status at a time can miss under load (a health probe timing out):
    # ask again for a bounded while, and show the node's own words if it fails.
    again = wait_for(
        "the restarted node's federation status", lambda: restarted.status(cli=True), 60, 1
    )
    assert again["node_id"] == ids[-1], restarted.last_status_error
    assert again["window"]["shares"] > 0  # its window came back from its ledger

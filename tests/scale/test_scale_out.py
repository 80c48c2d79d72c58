"""Three nodes on one PostgreSQL ledger; the payout leader is SIGKILLed in the middle of a
payout. Another node takes over, nobody is paid twice, and no share or credit is lost —
checked against the ledger journal and the devnet wallet.

Each node is ``scale_node.py`` in its own process (the ledger part of the node: store,
leader election, block tracker, payouts) against one devnet in its own process
(``payout_devnet_server.py``, shared with the payout crash tests). Every wait is bounded.
"""

from __future__ import annotations

import json
import signal
import subprocess
import sys
import time
from collections.abc import Callable, Iterator
from functools import partial
from pathlib import Path
from typing import Any

import pytest
from payout_support import (
    DevnetProcess,
    batch_states,
    credit,
    devnet_address,
    driver_env,
    on_database,
    spendable,
)
from pgdb import migrated
from sqlalchemy import Connection, func, insert, select

from otedama.ledger.blocks import FoundBlock, RewardPolicy, record_block
from otedama.ledger.stats import journal_total
from otedama.ledger.tables import BATCH_CONFIRMED, CONFIRMED, blocks, journal, shares

NODE = Path(__file__).resolve().parent / "scale_node.py"
NODES = ("a", "b", "c")
SHARES_PER_NODE = 400
#: The bound on every wait of this test (seconds): generous for a loaded 2-core machine.
DEADLINE = 90.0


def wait_for(what: str, check: Callable[[], Any], deadline: float = DEADLINE) -> Any:
    """Poll ``check`` until it returns something truthy; fail naming ``what`` at the deadline."""
    end = time.monotonic() + deadline
    while True:
        result = check()
        if result:
            return result
        if time.monotonic() > end:
            pytest.fail(f"timed out after {deadline:g} s waiting for {what}")
        time.sleep(0.1)


class NodeProcess:
    def __init__(self, name: str, db_url: str, wallet_url: str, tmp: Path, marker: Path) -> None:
        self.name = name
        self.status_file = tmp / f"{name}.json"
        self.stderr = (tmp / f"{name}.log").open("w")
        self.process = subprocess.Popen(
            [
                sys.executable,
                str(NODE),
                "--name",
                name,
                "--db",
                db_url,
                "--spool",
                str(tmp / f"spool-{name}"),
                "--wallet-url",
                wallet_url,
                "--status",
                str(self.status_file),
                "--pause-marker",
                str(marker),
                "--shares",
                str(SHARES_PER_NODE),
            ],
            stdout=subprocess.DEVNULL,
            stderr=self.stderr,
            env=driver_env(),
        )

    def status(self) -> dict[str, Any]:
        try:
            status: dict[str, Any] = json.loads(self.status_file.read_text(encoding="utf-8"))
        except (FileNotFoundError, json.JSONDecodeError):
            return {}
        return status

    def stop(self) -> int:
        if self.process.poll() is None:
            self.process.send_signal(signal.SIGTERM)
        try:
            return self.process.wait(timeout=30)
        except subprocess.TimeoutExpired:
            self.process.kill()
            return self.process.wait()
        finally:
            self.stderr.close()


@pytest.fixture
def devnet(tmp_path: Path) -> Iterator[DevnetProcess]:
    process = DevnetProcess(tmp_path / "devnet")
    try:
        process.fund_wallet()
        yield process
    finally:
        process.stop()


def pending_block(
    connection: Connection, found: FoundBlock, window_miners: dict[str, float]
) -> int:
    """A found block on the devnet's chain, pending, credited by PPLNS over old shares."""
    connection.execute(
        insert(shares),
        [
            {
                "created_at": 1000.0 + n,
                "address": address,
                "worker": "rig",
                "difficulty": difficulty,
                "job_id": "1",
                "height": found.height,
                "share_hash": None,
            }
            for n, (address, difficulty) in enumerate(window_miners.items())
        ],
    )
    policy = RewardPolicy("PPLNS", 1000, devnet_address(), pplns_window=7200)
    return record_block(connection, found, policy, found.found_at).block_id


def credits_of(connection: Connection, block_id: int) -> dict[str, int]:
    rows = connection.execute(
        select(journal.c.address, func.sum(journal.c.amount))
        .where(journal.c.block_id == block_id)
        .group_by(journal.c.address)
    )
    return {address: int(amount) for address, amount in rows}


def shares_by_worker(connection: Connection) -> dict[str, int]:
    rows = connection.execute(
        select(shares.c.worker, func.count())
        .where(shares.c.address == "scale-test")
        .group_by(shares.c.worker)
    )
    return {worker: int(count) for worker, count in rows}


def block_status(connection: Connection, block_id: int) -> str:
    return str(connection.execute(select(blocks.c.status).where(blocks.c.id == block_id)).scalar())


@pytest.mark.timeout(300)
def test_killing_the_payout_leader_mid_payout_hands_over_without_paying_twice_or_losing_anything(
    fresh_pg_database: Callable[[], str], tmp_path: Path, devnet: DevnetProcess
) -> None:
    db_url = migrated(fresh_pg_database())
    run = partial(on_database, db_url)

    # Spendable credits for the first payout, and a found block, still pending, whose
    # credits mature only after the leader has died.
    first_owed = {devnet_address(): 300_000 + 1000 * i for i in range(3)}
    run(partial(credit, amounts=first_owed))
    [block_hash] = devnet.rpc("generatetoaddress", 1, devnet_address())
    height = devnet.rpc("getblockcount")
    miners = {devnet_address(): 3.0, devnet_address(): 1.0}
    found = FoundBlock(height, block_hash, next(iter(miners)), "rig", 2_000_000, 1100.0)
    block_id = run(partial(pending_block, found=found, window_miners=miners))
    second_owed = run(partial(credits_of, block_id=block_id))
    assert sum(second_owed.values()) == 2_000_000

    marker = tmp_path / "paused-leader"
    nodes = {name: NodeProcess(name, db_url, devnet.url, tmp_path, marker) for name in NODES}
    try:
        # The first leader pays batch 1 and freezes right after the wallet call.
        paused_pid = int(
            wait_for("a leader to reach the wallet", lambda: marker.exists() and marker.read_text())
        )
        [victim] = [node for node in nodes.values() if node.process.pid == paused_pid]
        assert victim.status()["leader"] is True
        survivors = [node for node in nodes.values() if node is not victim]
        wait_for("every node up", lambda: all(node.status() for node in survivors))
        assert [node.status()["leader"] for node in survivors] == [False, False]
        [sent] = devnet.sends()[:1] or [None]
        assert sent is not None and sent["comment"] == "otedama-payout-1"
        assert [state for _, state, _ in run(batch_states)] == ["committed"]
        victim_stored_before_kill = victim.status()["stored"]

        victim.process.send_signal(signal.SIGKILL)
        assert victim.process.wait(timeout=30) == -signal.SIGKILL

        # Another node takes over (within a poll or two) and reconciles batch 1: the
        # wallet's transaction is found, not sent again.
        wait_for(
            "a survivor to take the lead",
            lambda: [node.name for node in survivors if node.status().get("leader")],
        )
        leaders = [node for node in survivors if node.status().get("leader")]
        assert len(leaders) == 1
        txid = sent["txid"]
        wait_for("batch 1 recorded as sent", lambda: run(batch_states) == [(1, "sent", txid)])

        # The pending block matures under the new leader, whose next payout pays it.
        devnet.rpc("generatetoaddress", 3, devnet_address())
        wait_for(
            "the block confirmed",
            lambda: run(partial(block_status, block_id=block_id)) == CONFIRMED,
        )
        wait_for(
            "batch 2 sent",
            lambda: len(run(batch_states)) == 2 and run(batch_states)[1][1] == "sent",
        )
        devnet.rpc("generatetoaddress", 1, devnet_address())
        wait_for(
            "both batches confirmed",
            lambda: [state for _, state, _ in run(batch_states)] == [BATCH_CONFIRMED] * 2,
        )
        wait_for(
            "survivors done ingesting",
            lambda: all(n.status().get("stored") == SHARES_PER_NODE for n in survivors),
        )
    finally:
        codes = {name: node.stop() for name, node in nodes.items()}
    assert {name: code for name, code in codes.items() if nodes[name] is not victim} == {
        node.name: 0 for node in survivors
    }

    # Nobody was paid twice: one wallet transaction per batch, each balance paid once.
    comments = [entry["comment"] for entry in devnet.sends()]
    assert sorted(set(comments)) == ["otedama-payout-1", "otedama-payout-2"]
    assert len({entry["txid"] for entry in devnet.sends()}) == 2
    owed: dict[str, int] = {}
    for amounts in (first_owed, second_owed):
        for address, amount in amounts.items():
            owed[address] = owed.get(address, 0) + amount
    assert devnet.paid() == owed
    # No credit lost: every credit was paid out, and the journal sums to zero.
    assert set(run(spendable).values()) == {0}
    assert run(journal_total) == 0
    # No share lost: the survivors' shares are all in the ledger, the killed node's at
    # least those it had stored before the kill.
    stored = run(shares_by_worker)
    assert {node.name: stored.get(node.name) for node in survivors} == {
        node.name: SHARES_PER_NODE for node in survivors
    }
    assert victim_stored_before_kill <= stored.get(victim.name, 0) <= SHARES_PER_NODE

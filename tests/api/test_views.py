"""The API's read models: the periodic snapshot, its topics, block events and effort."""

from __future__ import annotations

from pathlib import Path
from typing import Any

from sqlalchemy import insert, select
from twisted.internet.defer import Deferred

from otedama.api.endpoints import ApiRegistry
from otedama.api.resource import ApiPolicy
from otedama.chain.address import address_to_script
from otedama.chain.serialize import TxOut
from otedama.chain.target import difficulty_to_target, target_to_bits
from otedama.ledger import blocks as ledger_blocks
from otedama.ledger.blocks import FoundBlock, RewardPolicy
from otedama.ledger.rewards import RewardScheme
from otedama.ledger.tables import block_effort, shares
from otedama.pool.ports import SubmitOutcome, SubmitResult
from tests.api.support import site
from tests.pool.support import MINER, POOL, share

OUTPUTS = [TxOut(50_0000_0000, address_to_script(POOL, "devnet"))]
T = 1_000_000.0  # the test clock's start (see tests/api/support.site)


def run(coroutine: Any) -> Any:
    results: list[Any] = []
    Deferred.fromCoroutine(coroutine).addBoth(results.append)
    return results[0]


def header_with_difficulty(difficulty: float) -> bytes:
    bits = target_to_bits(difficulty_to_target(difficulty))
    return bytes(72) + bits.to_bytes(4, "little") + bytes(4)


def test_a_refresh_publishes_pool_and_miner_topics(tmp_path: Path) -> None:
    parts, _, _, core = site(tmp_path, ApiPolicy(rate_limiting=False))
    events: list[tuple[str, dict[str, Any]]] = []
    for topic in ("pool", "blocks", f"miner:{MINER}"):
        parts.bus.subscribe(topic, lambda t, p: events.append((t, p)))
    core.share_accepted(share(OUTPUTS, is_block=False, time=T - 5))

    run(parts.view.refresh())
    assert [t for t, _ in events] == ["pool", f"miner:{MINER}"]
    assert events[0][1]["miners"] == 1 and events[0][1]["workers"] == 1
    assert parts.view.failures == 0


def test_the_trackers_status_hook_publishes_the_block_with_its_new_status(
    tmp_path: Path,
) -> None:
    """No polling: each verdict the tracker commits is one ``blocks`` event."""
    parts, store, _, _ = site(tmp_path, ApiPolicy(rate_limiting=False))
    events: list[dict[str, Any]] = []
    parts.bus.subscribe("blocks", lambda t, p: events.append(p))
    policy = RewardPolicy(RewardScheme.PPLNS, 100, POOL, 3600.0)
    found = FoundBlock(7, "ab" * 32, MINER, "rig1", 50_0000_0000, T)

    def record(connection: Any) -> None:
        recorded = ledger_blocks.record_block(connection, found, policy, now=T + 1)
        ledger_blocks.confirm_block(connection, recorded.block_id, 100, now=T + 2)

    run(store.run(record))
    run(parts.view.refresh())
    assert events == []  # a refresh no longer looks for status changes
    parts.view.on_status("ab" * 32, "confirmed", 100)
    [event] = events
    assert event["event"] == "confirmed"
    assert event["block"]["hash"] == "ab" * 32 and event["block"]["confirmations"] == 100
    assert event["block"]["finder"] == MINER
    parts.view.on_status("cd" * 32, "orphaned", -1)  # unknown to the ledger: what the hook said
    assert events[1] == {
        "event": "orphaned",
        "block": {"hash": "cd" * 32, "status": "orphaned", "confirmations": -1},
    }


def test_on_block_publishes_found_and_stores_the_blocks_effort(tmp_path: Path) -> None:
    parts, store, _, _ = site(tmp_path, ApiPolicy(rate_limiting=False))
    found: list[dict[str, Any]] = []
    parts.bus.subscribe("blocks", lambda t, p: found.append(p))

    def shares_and_block(connection: Any) -> None:
        connection.execute(
            insert(shares),
            [
                {
                    "created_at": T - i,
                    "address": MINER,
                    "worker": "rig1",
                    "difficulty": 0.5,
                    "job_id": "j",
                    "height": 7,
                }
                for i in range(1, 5)
            ],
        )

    run(store.run(shares_and_block))
    candidate = share(OUTPUTS, header=header_with_difficulty(4.0), time=T)
    parts.view.on_block(candidate, SubmitResult(SubmitOutcome.ACCEPTED))
    [event] = found
    assert event["event"] == "found" and event["block"]["finder"] == MINER
    assert event["block"]["network_difficulty"] == 4.0
    stored = run(store.run(lambda c: c.execute(select(block_effort)).one()))
    assert (stored.share_difficulty, stored.network_difficulty) == (2.0, 4.0)
    assert stored.effort == 0.5


def test_a_failing_refresh_is_counted_and_the_next_one_runs(tmp_path: Path) -> None:
    parts, _, clock, _ = site(tmp_path, ApiPolicy(rate_limiting=False))

    class Broken:
        async def run(self, fn: Any) -> Any:
            raise RuntimeError("database away")

    parts.view.store = Broken()
    parts.view.startService()
    clock.advance(5.0)
    parts.view.stopService()
    assert parts.view.failures == 2
    assert isinstance(parts.registry, ApiRegistry)

"""Block maturity and orphan reversal against a real chain: the embedded devnet over RPC.

The pool's own ``BitcoindClient`` talks JSON-RPC to a devnet; blocks are mined with
``generatetoaddress`` and knocked off the best chain with ``invalidateblock``, as an
operator would on regtest.
"""

from __future__ import annotations

from fractions import Fraction
from pathlib import Path

import pytest_twisted
from twisted.internet import reactor

from otedama.devnet.service import start_devnet
from otedama.ledger.blocks import BlockTracker, FoundBlock, RewardPolicy
from otedama.ledger.rewards import RewardScheme
from otedama.ledger.shares import ShareRecord
from otedama.ledger.store import LedgerStore
from otedama.ledger.tables import CONFIRMED, ORPHANED, PENDING
from otedama.node.bitcoind import BitcoindClient
from otedama.node.rpc import RpcEndpoint

MINER = "bcrt1qkuycd29ejkf8n8sneevx4xmlsgly03cq8mavh9"
FEE = "bcrtfee"
REWARD = 50 * 10**8


@pytest_twisted.ensureDeferred
async def test_devnet_blocks_mature_at_100_and_an_invalidated_one_is_reversed(
    store: LedgerStore, tmp_path: Path
) -> None:
    handle = await start_devnet(
        reactor, "tcp:0:interface=127.0.0.1", Fraction(1, 10**9), tmp_path / "devnet"
    )
    node = BitcoindClient([RpcEndpoint(url=handle.url)], clock=reactor, timeout=30)
    policy = RewardPolicy(RewardScheme.PPLNS, 100, FEE, 7200.0)
    tracker = BlockTracker(store, node, reactor, maturity=100)  # type: ignore[arg-type]
    try:
        await node.wait_until_ready("devnet")
        pool = await node.call("getnewaddress")
        store.add_share(ShareRecord(1.0, MINER, "rig", 8.0, "job", 1))

        [first] = await node.call("generatetoaddress", 1, pool)
        await store.record_block(FoundBlock(1, first, MINER, "rig", REWARD, 2.0), policy)
        await node.call("generatetoaddress", 98, pool)
        assert (await tracker.check()).still_pending == 1  # 99 confirmations
        assert (await store.get_block(first)).status == PENDING  # type: ignore[union-attr]

        [second] = await node.call("generatetoaddress", 1, pool)  # height 100
        await store.record_block(FoundBlock(100, second, MINER, "rig", REWARD, 3.0), policy)
        report = await tracker.check()
        assert report.confirmed == (first,)
        assert report.still_pending == 1

        await node.call("invalidateblock", second)
        other = await node.call("generatetoaddress", 2, MINER)  # a new best chain
        assert await node.get_block_hash(100) == other[0] != second
        report = await tracker.check()
        assert report.orphaned == (second,)

        first_row = await store.get_block(first)
        second_row = await store.get_block(second)
        assert first_row is not None and first_row.status == CONFIRMED
        assert second_row is not None and second_row.status == ORPHANED
        miner = await store.balance(MINER)
        fee = await store.balance(FEE)
        assert (miner.immature, miner.spendable) == (0, REWARD - REWARD // 100)
        assert (fee.immature, fee.spendable) == (0, REWARD // 100)
    finally:
        await handle.stop()

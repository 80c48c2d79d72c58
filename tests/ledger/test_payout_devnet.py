"""End to end on a devnet: a block's PPLNS credits mature in the ledger, one payout tick
pays them with the devnet wallet, and the outputs are in the next devnet block."""

from __future__ import annotations

from fractions import Fraction
from pathlib import Path

import pytest_twisted
from payout_support import batch_states, devnet_address
from sqlalchemy import Connection, insert
from twisted.internet import task

from otedama.devnet.service import start_devnet
from otedama.ledger.blocks import FoundBlock, RewardPolicy, confirm_block, record_block
from otedama.ledger.payouts import PayoutProcessor
from otedama.ledger.stats import balances, journal_total
from otedama.ledger.tables import BATCH_CONFIRMED, BATCH_SENT, shares
from otedama.node.bitcoind import BitcoindClient
from otedama.node.rpc import RpcEndpoint

COIN = 100_000_000


@pytest_twisted.ensureDeferred
async def test_payout_outputs_appear_in_the_next_devnet_block(store, tmp_path: Path) -> None:
    from twisted.internet import reactor

    handle = await start_devnet(
        reactor, "tcp:0:interface=127.0.0.1", Fraction(1, 10**9), tmp_path / "devnet"
    )
    client = BitcoindClient([RpcEndpoint(handle.url)], clock=reactor)
    try:
        pool_address = await client.call("getnewaddress")
        await client.call("generatetoaddress", 101, pool_address)  # a mature coinbase
        miners = [devnet_address() for _ in range(3)]
        fee_address = devnet_address()

        def found_and_matured(connection: Connection) -> None:
            connection.execute(
                insert(shares),
                [
                    {
                        "created_at": 1000.0 + n,
                        "address": address,
                        "worker": "rig",
                        "difficulty": difficulty,
                        "job_id": "1",
                        "height": 102,
                        "share_hash": None,
                    }
                    for n, (address, difficulty) in enumerate(
                        zip(miners, [4.0, 2.0, 2.0], strict=True)
                    )
                ],
            )
            policy = RewardPolicy("PPLNS", 200, fee_address, pplns_window=7200)
            found = FoundBlock(102, "cd" * 32, miners[0], "rig", COIN, 1100.0)
            recorded = record_block(connection, found, policy, 1100.0)
            confirm_block(connection, recorded.block_id, 100, 2000.0)

        await store.run(found_and_matured)
        owed = {a: b.spendable for a, b in (await store.run(balances)).items()}
        # 1 coin, 2 % fee: 0.98 coin to miners 2:1:1.
        assert owed == {
            miners[0]: 49_000_000,
            miners[1]: 24_500_000,
            miners[2]: 24_500_000,
            fee_address: 2_000_000,
        }

        processor = PayoutProcessor(store, client, task.Clock(), minimum_payout_sats=1_000_000)
        report = await processor.tick()
        assert report.sent == [1]
        [(_, state, txid)] = await store.run(batch_states)
        assert state == BATCH_SENT and txid is not None

        [block_hash] = await client.call("generatetoaddress", 1, pool_address)
        block = await client.get_block(block_hash, 2)
        [payout_tx] = [tx for tx in block["tx"] if tx["txid"] == txid]
        outputs = {
            out["scriptPubKey"].get("address"): int(out["value"] * COIN)
            for out in payout_tx["vout"]
        }
        assert {a: outputs[a] for a in owed} == owed

        assert (await processor.tick()).confirmed == [1]
        assert await store.run(batch_states) == [(1, BATCH_CONFIRMED, txid)]
        after = await store.run(balances)
        assert {a: (b.spendable, b.paid) for a, b in after.items()} == {
            a: (0, amount) for a, amount in owed.items()
        }
        assert await store.run(journal_total) == 0
    finally:
        await client.close()
        await handle.stop()

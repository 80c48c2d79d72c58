"""The pool's own bitcoind client against a devnet: the replies parse as Core's would."""

from __future__ import annotations

from fractions import Fraction
from pathlib import Path

import pytest_twisted
from twisted.internet import reactor

from otedama.chain.address import address_to_script
from otedama.chain.coinbase import build_coinbase
from otedama.chain.merkle import merkle_root
from otedama.chain.serialize import BlockHeader, TxOut
from otedama.devnet.service import start_devnet
from otedama.node.bitcoind import BitcoindClient
from otedama.node.rpc import RpcEndpoint
from tests.devnet.blocks import grind

ALICE = "bcrt1qkuycd29ejkf8n8sneevx4xmlsgly03cq8mavh9"


@pytest_twisted.ensureDeferred
async def test_the_pool_client_mines_and_pays_through_a_devnet(tmp_path: Path) -> None:
    handle = await start_devnet(reactor, "tcp:0:interface=127.0.0.1", Fraction(1, 10**9), tmp_path)
    client = BitcoindClient([RpcEndpoint(url=handle.url)], clock=reactor, timeout=30)
    try:
        info = await client.wait_until_ready("devnet")
        assert info.chain == "devnet"
        pool = await client.call("getnewaddress")
        await client.call("generatetoaddress", 101, pool)
        assert await client.get_balance() == 50 * 10**8
        txid = await client.send_many({ALICE: 12_345_678}, "payout batch 1")

        template = await client.get_block_template()
        assert [tx.txid[::-1].hex() for tx in template.transactions] == [txid]
        assert template.coinbase_value == 50 * 10**8 + template.transactions[0].fee
        parts = build_coinbase(
            template.height,
            [TxOut(template.coinbase_value, address_to_script(pool, "devnet"))],
            8,
            witness_commitment=template.default_witness_commitment,
        )
        extranonce = bytes(range(8))
        root = merkle_root([parts.txid(extranonce), *(tx.txid for tx in template.transactions)])
        header = grind(
            BlockHeader(
                template.version, template.prev_hash, root, template.curtime, template.bits, 0
            ),
            template.target,
        )
        block = parts.build_block(header, extranonce, [tx.data for tx in template.transactions])
        result = await client.submit_block(block)
        assert result.accepted, result

        entries = await client.list_transactions(10)
        assert {e["comment"] for e in entries if e["category"] == "send"} == {"payout batch 1"}
        paid = await client.get_transaction(txid)
        assert paid["confirmations"] == 1
        assert (await client.get_block_header(paid["blockhash"]))["height"] == 102
        check = await client.validate_address(ALICE)
        assert check.valid
    finally:
        await client.close()
        await handle.stop()

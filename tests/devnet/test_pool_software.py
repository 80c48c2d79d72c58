"""The calls ckpool, public-pool, Miningcore and cpuminer make at start and per block,
as their sources send them, over a raw socket: Core's fields and submitblock results."""

from __future__ import annotations

import json
from fractions import Fraction
from pathlib import Path
from typing import Any

import pytest_twisted

from otedama.chain.address import address_to_script
from otedama.chain.serialize import Block
from tests.devnet.blocks import block_from_template
from tests.devnet.test_http import RawClient, Reply, call, devnet, exchange, in_thread

POOL = "bcrt1qkuycd29ejkf8n8sneevx4xmlsgly03cq8mavh9"
CKPOOL_GBT = {"capabilities": ["coinbasetxn", "workid", "coinbase/append"], "rules": ["segwit"]}
CPUMINER_GBT = {
    "capabilities": ["coinbasetxn", "coinbasevalue", "longpoll", "workid"],
    "rules": ["segwit"],
}
TEMPLATE_FIELDS = {
    "capabilities",
    "version",
    "rules",
    "vbavailable",
    "vbrequired",
    "previousblockhash",
    "transactions",
    "coinbaseaux",
    "coinbasevalue",
    "longpollid",
    "target",
    "mintime",
    "mutable",
    "noncerange",
    "sigoplimit",
    "sizelimit",
    "weightlimit",
    "curtime",
    "bits",
    "height",
    "default_witness_commitment",
}


def results(replies: list[Reply]) -> list[Any]:
    out = []
    for reply in replies:
        assert reply.status == 200, reply
        body = reply.json()
        out.append([item["result"] for item in body] if isinstance(body, list) else body["result"])
    return out


@pytest_twisted.ensureDeferred
async def test_ckpool_start_and_block_calls(tmp_path: Path) -> None:
    handle = await devnet(tmp_path)
    try:
        address, template, best, count, genesis = results(
            await in_thread(
                lambda: exchange(
                    handle.port,
                    {"body": call("validateaddress", POOL)},
                    {"body": call("getblocktemplate", CKPOOL_GBT)},
                    {"body": call("getbestblockhash")},
                    {"body": call("getblockcount")},
                    {"body": call("getblockhash", 0)},
                )
            )
        )
        block = block_from_template(template, address_to_script(POOL, "devnet"))
        hexdata = block.serialize().hex()
        bad_pow = block_from_template(template, meet=False).serialize().hex()
        orphan_block = block_from_template(template, prev=bytes(32)).serialize().hex()
        submitted = results(
            await in_thread(
                lambda: exchange(
                    handle.port,
                    {"body": call("submitblock", bad_pow)},
                    {"body": call("submitblock", orphan_block)},
                    {"body": call("submitblock", hexdata)},
                    {"body": call("submitblock", hexdata)},
                    {"body": call("getblock", block.hash()[::-1].hex())},
                    {"body": call("getblockcount")},
                )
            )
        )
    finally:
        await handle.stop()
    assert address["isvalid"] is True and address["iswitness"] is True
    assert address["isscript"] is False and address["address"] == POOL
    assert TEMPLATE_FIELDS <= set(template)
    assert isinstance(template["coinbaseaux"], dict)
    assert "!segwit" in template["rules"]  # ckpool understands segwit: it goes on
    assert template["previousblockhash"] == best == genesis and count == 0
    assert submitted[:4] == ["high-hash", "prev-blk-not-found", None, "duplicate"]
    assert submitted[4]["hash"] == block.hash()[::-1].hex()
    assert submitted[4]["confirmations"] == 1 and submitted[5] == 1


@pytest_twisted.ensureDeferred
async def test_public_pool_calls_with_named_parameters(tmp_path: Path) -> None:
    handle = await devnet(tmp_path)
    named = {
        "template_request": {
            "rules": ["segwit"],
            "mode": "template",
            "capabilities": ["serverlist", "proposal"],
        }
    }
    try:
        rpcinfo, template, mining = results(
            await in_thread(
                lambda: exchange(
                    handle.port,
                    {"body": call("getrpcinfo")},
                    {"body": json.dumps({"method": "getblocktemplate", "params": named}).encode()},
                    {"body": call("getmininginfo")},
                )
            )
        )
        block = block_from_template(template).serialize().hex()
        body = json.dumps({"method": "submitblock", "params": {"hexdata": block}}).encode()
        [accepted] = results(await in_thread(lambda: exchange(handle.port, {"body": body})))
    finally:
        await handle.stop()
    assert rpcinfo["active_commands"][0]["method"] == "getrpcinfo" and "logpath" in rpcinfo
    assert TEMPLATE_FIELDS <= set(template)
    assert {"blocks", "difficulty", "networkhashps", "pooledtx", "chain", "warnings"} <= set(mining)
    assert mining["blocks"] == 0 and accepted is None


@pytest_twisted.ensureDeferred
async def test_miningcore_start_batches_and_submit_check(tmp_path: Path) -> None:
    """With chain_name regtest (Miningcore maps getblockchaininfo's chain to a network)
    and one reported connection (it waits for peers before it starts)."""
    handle = await devnet(tmp_path, chain_name="regtest", connections=1)
    mine = await handle.node.generate(2, address_to_script(POOL, "devnet"))
    owned = handle.node.wallet.default_address
    start = [
        call("validateaddress", owned),
        call("submitblock"),
        call("getblockchaininfo"),
        call("getdifficulty"),
        call("getaddressinfo", owned),
    ]
    stats = [call("getmininginfo"), call("getnetworkinfo"), call("getnetworkhashps")]
    try:
        replies = await in_thread(
            lambda: exchange(
                handle.port,
                {"body": b"[" + b",".join(start) + b"]"},
                {"body": b"[" + b",".join(stats) + b"]"},
                {"body": call("getblocktemplate", {"rules": ["segwit"]})},
                {"body": call("getpeerinfo")},
                {"body": call("getconnectioncount")},
                {"body": call("getwalletinfo")},
            )
        )
        template = replies[2].json()["result"]
        block = block_from_template(template)
        check = [
            call("submitblock", block.serialize().hex()),
            call("getblock", block.hash()[::-1].hex()),
        ]
        [after] = await in_thread(
            lambda: exchange(handle.port, {"body": b"[" + b",".join(check) + b"]"})
        )
    finally:
        await handle.stop()
    first = replies[0].json()
    assert first[1]["result"] is None and first[1]["error"]["code"] == -1  # has submitblock
    validate, _, chaininfo, difficulty, addressinfo = (item["result"] for item in first)
    mining, network, hashps = (item["result"] for item in replies[1].json())
    assert validate["isvalid"] is True
    assert {"chain", "blocks", "headers", "bestblockhash", "difficulty"} <= set(chaininfo)
    assert chaininfo["chain"] == mining["chain"] == "regtest"
    assert chaininfo["blocks"] == 2 and chaininfo["bestblockhash"] == mine[-1][::-1].hex()
    assert isinstance(difficulty, float) and difficulty > 0
    assert addressinfo["ismine"] is True and addressinfo["address"] == owned
    assert mining["networkhashps"] == hashps and hashps >= 0
    assert network["connections"] == 1 and "version" in network and "subversion" in network
    assert TEMPLATE_FIELDS <= set(template)
    assert replies[3].json()["result"] == [] and replies[4].json()["result"] == 1
    wallet = replies[5].json()["result"]
    assert {"walletname", "balance", "immature_balance", "txcount"} <= set(wallet)
    assert [item["error"] for item in after.json()] == [None, None]
    submitted, fetched = (item["result"] for item in after.json())
    assert submitted is None and fetched["hash"] == block.hash()[::-1].hex()
    assert fetched["tx"] == [tx.txid()[::-1].hex() for tx in block.transactions]


@pytest_twisted.ensureDeferred
async def test_cpuminer_long_polls_getblocktemplate_until_a_new_block(tmp_path: Path) -> None:
    handle = await devnet(tmp_path)
    try:
        [template] = results(
            await in_thread(
                lambda: exchange(handle.port, {"body": call("getblocktemplate", CPUMINER_GBT)})
            )
        )
        request = dict(CPUMINER_GBT, longpollid=template["longpollid"])
        client = RawClient(handle.port)
        waiting = in_thread(lambda: client.send(call("getblocktemplate", request)))
        [found] = await handle.node.generate(1, address_to_script(POOL, "devnet"))
        reply = await waiting
        client.close()
    finally:
        await handle.stop()
    assert template["coinbasevalue"] == 50 * 10**8
    assert isinstance(template["longpollid"], str)
    assert reply.status == 200
    fresh = reply.json()["result"]
    assert fresh["previousblockhash"] == found[::-1].hex()
    assert fresh["height"] == template["height"] + 1
    assert Block.parse(block_from_template(fresh).serialize()).header.prev_hash == found


@pytest_twisted.ensureDeferred
async def test_getnetworkhashps_is_cores_work_over_time(tmp_path: Path) -> None:
    handle = await devnet(tmp_path)
    hashes = await handle.node.generate(3, address_to_script(POOL, "devnet"))
    try:
        replies = results(
            await in_thread(
                lambda: exchange(
                    handle.port,
                    {"body": call("getnetworkhashps", 2)},
                    {"body": call("getnetworkhashps", -1, 1)},
                    {"body": call("getnetworkhashps", 120, 0)},
                )
            )
        )
    finally:
        await handle.stop()
    entries = [handle.chain.index[h] for h in hashes]
    work = (1 << 256) // (handle.chain.target + 1)
    span = entries[2].header.time - entries[0].header.time
    assert replies[0] == (float(Fraction(2 * work, span)) if span > 0 else 0)
    assert replies[2] == 0  # the genesis block alone
    # -1: the blocks since the retarget boundary (height 1 % 2016 + 1 = 2, so 1 here).
    since_genesis = entries[0].header.time - handle.chain.genesis.header.time
    assert replies[1] == float(Fraction(work, since_genesis))

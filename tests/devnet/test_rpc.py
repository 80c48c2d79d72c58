"""The devnet over real HTTP on 127.0.0.1: Core's RPC shapes, block checks, wallet, reorgs,
restarts and long polling."""

from __future__ import annotations

import json
from collections.abc import AsyncIterator
from decimal import Decimal
from fractions import Fraction
from pathlib import Path
from typing import Any

import pytest
import pytest_twisted
import treq
from twisted.internet import defer, reactor

from otedama.chain.address import address_to_script
from otedama.chain.serialize import Block, Transaction
from otedama.chain.target import difficulty_to_target, target_to_bits
from otedama.devnet.service import DevnetHandle, start_devnet
from otedama.devnet.wallet import FEE_RATE
from tests.devnet.blocks import block_from_template, coinbase_for

EASY = Fraction(1, 10**9)
LISTEN = "tcp:0:interface=127.0.0.1"
ALICE = "bcrt1qkuycd29ejkf8n8sneevx4xmlsgly03cq8mavh9"
BOB = "n4LQ8fVumt89vEJvP6smvNG8P8kBjbABPR"
RPC_ERRORS = Path(__file__).parents[1] / "vectors" / "bitcoind" / "rpc-errors.json"


async def post(handle: DevnetHandle, body: bytes | str) -> tuple[int, Any]:
    """POST a raw body; returns the HTTP status and the parsed reply."""
    data = body.encode() if isinstance(body, str) else body
    response = await treq.post(handle.url, data=data, headers={"Content-Type": "text/plain"})
    content = await response.content()
    return response.code, json.loads(content, parse_float=Decimal) if content else None


async def rpc(handle: DevnetHandle, method: str, *params: Any) -> Any:
    """A JSON-RPC 2.0 call; returns the result or fails the test with the error."""
    status, reply = await post(
        handle, json.dumps({"jsonrpc": "2.0", "id": 1, "method": method, "params": list(params)})
    )
    assert status == 200 and "error" not in reply, reply
    return reply["result"]


async def rpc_error(handle: DevnetHandle, method: str, *params: Any) -> dict[str, Any]:
    status, reply = await post(
        handle, json.dumps({"jsonrpc": "2.0", "id": 1, "method": method, "params": list(params)})
    )
    assert status == 200 and "error" in reply, reply
    error: dict[str, Any] = reply["error"]
    return error


async def template(handle: DevnetHandle, **extra: Any) -> dict[str, Any]:
    result: dict[str, Any] = await rpc(handle, "getblocktemplate", {"rules": ["segwit"], **extra})
    return result


async def submit(handle: DevnetHandle, block: Block) -> Any:
    return await rpc(handle, "submitblock", block.serialize().hex())


@pytest_twisted.async_yield_fixture
async def devnet(tmp_path: Path) -> AsyncIterator[DevnetHandle]:
    handle = await start_devnet(reactor, LISTEN, EASY, tmp_path / "devnet")
    yield handle
    await handle.stop()


@pytest_twisted.ensureDeferred
async def test_a_block_mined_against_the_template_is_accepted(tmp_path: Path) -> None:
    handle = await start_devnet(reactor, LISTEN, Fraction("0.0001"), tmp_path / "d")
    try:
        t = await template(handle)
        assert int(t["bits"], 16) == target_to_bits(difficulty_to_target("0.0001"))
        block = block_from_template(t)
        assert await submit(handle, block) is None
        info = await rpc(handle, "getblockchaininfo")
        assert info["chain"] == "devnet"
        assert info["blocks"] == 1
        assert info["bestblockhash"] == block.hash()[::-1].hex()
        assert info["initialblockdownload"] is False
        assert float(info["difficulty"]) == pytest.approx(0.0001, rel=1e-6)
        assert await submit(handle, block) == "duplicate"
    finally:
        await handle.stop()


@pytest.mark.parametrize(
    ("defect", "reason"),
    [
        ("bad_pow", "high-hash"),
        ("bad_merkle_root", "bad-txnmrklroot"),
        ("wrong_height", "bad-cb-height"),
        ("overpaying_coinbase", "bad-cb-amount"),
        ("bad_witness_commitment", "bad-witness-merkle-match"),
        ("unknown_prev", "prev-blk-not-found"),
    ],
)
@pytest_twisted.ensureDeferred
async def test_a_tampered_block_is_rejected_with_the_reason(
    devnet: DevnetHandle, defect: str, reason: str
) -> None:
    t = await template(devnet)
    height, value = t["height"], t["coinbasevalue"]
    commitment = bytes.fromhex(t["default_witness_commitment"])
    if defect == "bad_pow":
        block = block_from_template(t, meet=False)
    elif defect == "bad_merkle_root":
        block = block_from_template(t, merkle=bytes(32))
    elif defect == "wrong_height":
        block = block_from_template(t, coinbase=coinbase_for(height + 1, value, commitment))
    elif defect == "overpaying_coinbase":
        block = block_from_template(t, coinbase=coinbase_for(height, value + 1, commitment))
    elif defect == "bad_witness_commitment":
        block = block_from_template(
            t, coinbase=coinbase_for(height, value, commitment[:-1] + b"\0")
        )
    else:
        block = block_from_template(t, prev=b"\xa5" * 32)
    assert await submit(devnet, block) == reason
    assert await rpc(devnet, "getblockcount") == 0


@pytest_twisted.ensureDeferred
async def test_bytes_that_are_not_a_block_are_a_decode_error(devnet: DevnetHandle) -> None:
    for data in ("deadbeef", "this is not hex"):
        error = await rpc_error(devnet, "submitblock", data)
        assert error == {"code": -22, "message": "Block decode failed"}


def _recorded(name: str) -> list[dict[str, Any]]:
    case = json.loads(RPC_ERRORS.read_text())["cases"][name]
    return [case[k] for k in ("jsonrpc_1.0", "jsonrpc_2.0")]


@pytest.mark.parametrize(
    "name",
    [
        "unknown_method",
        "getblockhash_out_of_range",
        "getblockhash_negative",
        "getblocktemplate_without_segwit_rule",
        "getblocktemplate_empty_object",
    ],
)
@pytest_twisted.ensureDeferred
async def test_errors_have_cores_exact_status_and_body(devnet: DevnetHandle, name: str) -> None:
    for variant in _recorded(name):
        response = await treq.post(devnet.url, data=variant["request"].encode())
        body = (await response.content()).decode()
        assert (response.code, body) == (variant["http_status"], variant["response_body"])


@pytest_twisted.ensureDeferred
async def test_a_malformed_body_is_a_parse_error_like_core(devnet: DevnetHandle) -> None:
    case = json.loads(RPC_ERRORS.read_text())["cases"]["malformed_json_body"]
    response = await treq.post(devnet.url, data=case["request"].encode())
    assert response.code == case["http_status"]
    assert (await response.content()).decode() == case["response_body"]


@pytest_twisted.ensureDeferred
async def test_validateaddress_gives_cores_verdicts(devnet: DevnetHandle) -> None:
    cases = json.loads(RPC_ERRORS.read_text())["cases"]["validateaddress"]
    for case in cases.values():
        result = await rpc(devnet, "validateaddress", case["address"])
        expected = case["parsed"]["result"]
        assert result["isvalid"] == expected["isvalid"]
        if expected["isvalid"]:
            assert result == expected


@pytest_twisted.ensureDeferred
async def test_a_batch_is_answered_with_a_list(devnet: DevnetHandle) -> None:
    body = json.dumps(
        [
            {"jsonrpc": "2.0", "id": 1, "method": "getblockcount"},
            {"jsonrpc": "2.0", "id": 2, "method": "nosuchmethod"},
        ]
    )
    status, reply = await post(devnet, body)
    assert status == 200
    assert reply[0] == {"jsonrpc": "2.0", "result": 0, "id": 1}
    assert reply[1]["error"]["code"] == -32601


@pytest_twisted.ensureDeferred
async def test_credentials_are_required_when_configured(tmp_path: Path) -> None:
    handle = await start_devnet(
        reactor, LISTEN, EASY, tmp_path / "d", credentials=("user", "secret")
    )
    try:
        body = b'{"jsonrpc": "2.0", "id": 1, "method": "getblockcount", "params": []}'
        refused = await treq.post(handle.url, data=body, auth=("user", "wrong"))
        assert refused.code == 401
        assert refused.headers.getRawHeaders(b"www-authenticate") == [b'Basic realm="jsonrpc"']
        accepted = await treq.post(handle.url, data=body, auth=("user", "secret"))
        assert json.loads(await accepted.content())["result"] == 0
    finally:
        await handle.stop()


async def _fund(handle: DevnetHandle) -> str:
    """Mine 101 blocks to the wallet so exactly one coinbase is mature."""
    address: str = await rpc(handle, "getnewaddress")
    await rpc(handle, "generatetoaddress", 100, address)
    assert await rpc(handle, "getbalance") == 0
    await rpc(handle, "generatetoaddress", 1, address)
    return address


@pytest_twisted.ensureDeferred
async def test_a_coinbase_matures_after_100_more_blocks(devnet: DevnetHandle) -> None:
    await _fund(devnet)
    assert await rpc(devnet, "getbalance") == Decimal("50.00000000")
    entries = await rpc(devnet, "listtransactions", "*", 3)
    assert [e["category"] for e in entries] == ["immature", "immature", "immature"]
    first = (await rpc(devnet, "listtransactions", "*", 1, 100))[0]
    assert (first["category"], first["confirmations"], first["generated"]) == (
        "generate",
        101,
        True,
    )


@pytest_twisted.ensureDeferred
async def test_sendmany_pays_through_the_next_template_and_block(devnet: DevnetHandle) -> None:
    await _fund(devnet)
    txid = await rpc(devnet, "sendmany", "", {ALICE: 1.5, BOB: "0.25"}, 1, "batch 7")
    t = await template(devnet)
    assert [tx["txid"] for tx in t["transactions"]] == [txid]
    fee = t["transactions"][0]["fee"]
    assert fee > 0 and fee % FEE_RATE == 0
    assert t["coinbasevalue"] == 50 * 10**8 + fee
    pending = await rpc(devnet, "gettransaction", txid)
    assert (pending["confirmations"], pending["comment"]) == (0, "batch 7")
    assert pending["amount"] == Decimal("-1.75")
    assert pending["fee"] == -Decimal(fee) / 10**8

    block = block_from_template(t)
    assert await submit(devnet, block) is None
    paid = Transaction.parse(bytes.fromhex(t["transactions"][0]["data"]))
    assert block.transactions[1] == paid
    outputs = {o.script_pubkey: o.value for o in paid.outputs}
    assert outputs[address_to_script(ALICE, "devnet")] == 150_000_000
    assert outputs[address_to_script(BOB, "devnet")] == 25_000_000
    got = await rpc(devnet, "getblock", block.hash()[::-1].hex(), 2)
    assert got["tx"][1]["txid"] == txid
    assert got["tx"][1]["fee"] == Decimal(fee) / 10**8

    confirmed = await rpc(devnet, "gettransaction", txid)
    assert confirmed["confirmations"] == 1
    assert confirmed["blockhash"] == block.hash()[::-1].hex()
    sends = [e for e in await rpc(devnet, "listtransactions") if e["category"] == "send"]
    assert {(e["address"], e["amount"], e["comment"]) for e in sends} == {
        (ALICE, Decimal("-1.5"), "batch 7"),
        (BOB, Decimal("-0.25"), "batch 7"),
    }
    # Change of the payment, plus the coinbase of block 2, mature since block 102.
    expected = Decimal(100) - Decimal("1.75") - Decimal(fee) / 10**8
    assert await rpc(devnet, "getbalance") == expected


@pytest_twisted.ensureDeferred
async def test_sendmany_refuses_what_core_refuses(devnet: DevnetHandle) -> None:
    assert (await rpc_error(devnet, "sendmany", "", {ALICE: 1}))["code"] == -6
    assert await rpc_error(devnet, "sendmany", "", {"bc1qnotanaddress": 1}) == {
        "code": -5,
        "message": "Invalid Bitcoin address: bc1qnotanaddress",
    }
    assert (await rpc_error(devnet, "sendmany", "", {ALICE: 0}))["code"] == -3
    assert (await rpc_error(devnet, "sendmany", "", {ALICE: "0.000000001"}))["code"] == -3
    assert (await rpc_error(devnet, "gettransaction", "00" * 32))["code"] == -5


@pytest_twisted.ensureDeferred
async def test_invalidateblock_moves_the_tip_back_and_returns_transactions(
    devnet: DevnetHandle,
) -> None:
    await _fund(devnet)
    txid = await rpc(devnet, "sendmany", "", {ALICE: 1}, 1, "orphan test")
    (mined,) = await rpc(devnet, "generatetoaddress", 1, BOB)
    assert await rpc(devnet, "getrawmempool") == []
    await rpc(devnet, "invalidateblock", mined)
    assert await rpc(devnet, "getblockcount") == 101
    assert await rpc(devnet, "getrawmempool") == [txid]
    header = await rpc(devnet, "getblockheader", mined)
    assert header["confirmations"] == -1
    assert (await rpc(devnet, "gettransaction", txid))["confirmations"] == 0
    t = await template(devnet)
    assert t["height"] == 102 and [tx["txid"] for tx in t["transactions"]] == [txid]
    block = block_from_template(t)
    assert await submit(devnet, block) is None
    assert await rpc(devnet, "getbestblockhash") == block.hash()[::-1].hex() != mined
    assert (await rpc(devnet, "gettransaction", txid))["confirmations"] == 1


@pytest_twisted.ensureDeferred
async def test_a_restart_reloads_the_same_chain_and_wallet(tmp_path: Path) -> None:
    data_dir = tmp_path / "devnet"
    first = await start_devnet(reactor, LISTEN, EASY, data_dir)
    try:
        await _fund(first)
        txid = await rpc(first, "sendmany", "", {ALICE: 2}, 1, "before restart")
        (dropped,) = await rpc(first, "generatetoaddress", 1, BOB)
        await rpc(first, "invalidateblock", dropped)
        best = await rpc(first, "getbestblockhash")
        balance = await rpc(first, "getbalance")
    finally:
        await first.stop()
    second = await start_devnet(reactor, LISTEN, EASY, data_dir)
    try:
        assert await rpc(second, "getbestblockhash") == best
        assert await rpc(second, "getblockcount") == 101
        assert await rpc(second, "getbalance") == balance
        assert await rpc(second, "getrawmempool") == [txid]
        assert (await rpc(second, "getblockheader", dropped))["confirmations"] == -1
        assert (await rpc(second, "gettransaction", txid))["comment"] == "before restart"
    finally:
        await second.stop()


@pytest_twisted.ensureDeferred
async def test_a_data_dir_of_another_difficulty_is_refused(tmp_path: Path) -> None:
    handle = await start_devnet(reactor, LISTEN, EASY, tmp_path / "d")
    await handle.stop()
    with pytest.raises(Exception, match="another data_dir"):
        await start_devnet(reactor, LISTEN, Fraction(1, 10**6), tmp_path / "d")


@pytest_twisted.ensureDeferred
async def test_a_long_poll_wakes_on_a_new_block(devnet: DevnetHandle) -> None:
    first = await template(devnet)
    waiting = defer.ensureDeferred(template(devnet, longpollid=first["longpollid"]))
    stale = await template(devnet, longpollid="0" * 64 + "0")
    assert stale["longpollid"] == first["longpollid"]
    assert not waiting.called
    block = block_from_template(first)
    assert await submit(devnet, block) is None
    woken = await waiting
    assert woken["previousblockhash"] == block.hash()[::-1].hex()
    assert woken["longpollid"] != first["longpollid"]

"""BitcoindClient over real sockets against a stub daemon replaying Core's recorded replies.

The client's clock is a ``task.Clock``: timeouts and back-offs happen when a test advances
it, never by waiting.
"""

from __future__ import annotations

import copy
import json
from collections.abc import AsyncIterator
from decimal import Decimal
from pathlib import Path
from typing import Any

import pytest
import pytest_twisted
from twisted.internet.defer import ensureDeferred
from twisted.internet.task import Clock

from otedama.chain.hashing import sha256d
from otedama.node.bitcoind import (
    BitcoindClient,
    ChainMismatchError,
    SubmitOutcome,
)
from otedama.node.rpc import (
    RpcAuthError,
    RpcConnectionError,
    RpcEndpoint,
    RpcError,
    RpcProtocolError,
    RpcTimeout,
)

from .stub_bitcoind import (
    DROP,
    RPC_ERRORS,
    Harness,
    Reply,
    closed_port_url,
    load_vector,
)

LOW = load_vector("bitcoind/low-heights.json")["heights"]
WITH_TXS = load_vector("bitcoind/templates-with-txs.json")["cases"]
SUBMITS = load_vector("bitcoind/submitblock-rejections.json")["cases"]
GENESIS_INFO = RPC_ERRORS["getblockchaininfo_at_genesis"]
SYNCED_INFO = RPC_ERRORS["getblockchaininfo_after_17_blocks"]


@pytest.fixture
def clock() -> Clock:
    return Clock()


@pytest_twisted.async_yield_fixture
async def harness(clock: Clock) -> AsyncIterator[Harness]:
    h = Harness(clock)
    yield h
    await h.close()


def _info(chain: str, ibd: bool, blocks: int = 17) -> Reply:
    result = copy.deepcopy(SYNCED_INFO["parsed"]["result"])
    result.update(chain=chain, initialblockdownload=ibd, blocks=blocks)
    return Reply.result(result)


# -- errors ---------------------------------------------------------------------------------

RECORDED_ERRORS = [
    ("getblocktemplate_without_segwit_rule", "jsonrpc_1.0", -8),
    ("getblocktemplate_without_segwit_rule", "jsonrpc_2.0", -8),
    ("getblocktemplate_no_params", "jsonrpc_1.0", -1),
    ("unknown_method", "jsonrpc_1.0", -32601),
    ("unknown_method", "jsonrpc_2.0", -32601),
    ("getblockhash_out_of_range", "jsonrpc_1.0", -8),
    ("getblockhash_negative", "jsonrpc_2.0", -8),
    ("malformed_json_body", None, -32700),
    ("malformed_json_body_no_version", None, -32700),
    ("mainnet_getblocktemplate_no_peers", "jsonrpc_1.0", -9),
    ("mainnet_getblocktemplate_no_peers", "jsonrpc_2.0", -9),
    ("mainnet_getblocktemplate_initial_block_download", "jsonrpc_1.0", -10),
    ("mainnet_getblocktemplate_initial_block_download", "jsonrpc_2.0", -10),
]


@pytest.mark.parametrize(("name", "style", "code"), RECORDED_ERRORS)
@pytest_twisted.ensureDeferred
async def test_recorded_error_replies_raise_rpc_error_with_cores_code(
    harness: Harness, name: str, style: str | None, code: int
) -> None:
    case = RPC_ERRORS[name] if style is None else RPC_ERRORS[name][style]
    daemon = harness.daemon()
    daemon.stub.on("getblocktemplate", Reply.recorded(case))
    client = harness.client(daemon.url)
    with pytest.raises(RpcError) as info:
        await client.get_block_template()
    assert info.value.code == code
    assert info.value.message == json.loads(case["response_body"])["error"]["message"]


@pytest_twisted.ensureDeferred
async def test_wrong_password_is_an_auth_error_naming_the_url(harness: Harness) -> None:
    daemon = harness.daemon(credentials="vec:right-password")
    client = harness.client(RpcEndpoint(daemon.url, user="vec", password="wrong-password"))
    with pytest.raises(RpcAuthError) as info:
        await client.get_block_count()
    assert daemon.url in str(info.value)
    assert "rpcuser/rpcpassword" in str(info.value)
    assert daemon.stub.received[0].authorization == "vec:wrong-password"


@pytest_twisted.ensureDeferred
async def test_user_and_password_are_sent_as_basic_auth(harness: Harness) -> None:
    daemon = harness.daemon(credentials="vec:right-password")
    daemon.stub.on("getblockcount", Reply.result(17))
    client = harness.client(RpcEndpoint(daemon.url, user="vec", password="right-password"))
    assert await client.get_block_count() == 17
    request = json.loads(daemon.stub.received[0].body)
    assert request["jsonrpc"] == "2.0" and request["method"] == "getblockcount"


@pytest_twisted.ensureDeferred
async def test_cookie_is_read_again_after_401_when_bitcoind_restarted(
    harness: Harness, tmp_path: Path
) -> None:
    cookie = tmp_path / ".cookie"
    cookie.write_text("__cookie__:first")
    daemon = harness.daemon(credentials="__cookie__:first")
    daemon.stub.on("getblockcount", Reply.result(5))
    client = harness.client(RpcEndpoint(daemon.url, cookie_file=str(cookie)))
    assert await client.get_block_count() == 5

    cookie.write_text("__cookie__:second")  # bitcoind restarted with a new cookie
    daemon.stub.credentials = "__cookie__:second"
    assert await client.get_block_count() == 5
    assert [r.authorization for r in daemon.stub.received] == [
        "__cookie__:first",
        "__cookie__:first",
        "__cookie__:second",
    ]
    assert harness.logs.count("cookie file") == 1


@pytest_twisted.ensureDeferred
async def test_unchanged_cookie_after_401_is_an_auth_error(
    harness: Harness, tmp_path: Path
) -> None:
    cookie = tmp_path / ".cookie"
    cookie.write_text("__cookie__:stale")
    daemon = harness.daemon(credentials="__cookie__:fresh")
    client = harness.client(RpcEndpoint(daemon.url, cookie_file=str(cookie)))
    with pytest.raises(RpcAuthError):
        await client.get_block_count()
    assert len(daemon.stub.received) == 1


@pytest_twisted.ensureDeferred
async def test_a_daemon_that_never_answers_times_out(harness: Harness, clock: Clock) -> None:
    daemon = harness.daemon()
    daemon.stub.hang("getblockcount")
    client = harness.client(daemon.url, timeout=2.0)
    call = ensureDeferred(client.get_block_count())
    await daemon.stub.next_request()
    lost = daemon.stub.next_lost()
    clock.advance(1.9)
    assert not call.called
    clock.advance(0.1)
    with pytest.raises(RpcTimeout, match=r"within 2 s"):
        await call
    await lost  # the client dropped the connection


@pytest_twisted.ensureDeferred
async def test_a_reply_that_stalls_halfway_times_out(harness: Harness, clock: Clock) -> None:
    daemon = harness.daemon()
    daemon.stub.on("getblockcount", Reply(200, b'{"jsonrpc":"2.0","res', complete=False))
    client = harness.client(daemon.url, timeout=2.0)
    call = ensureDeferred(client.get_block_count())
    await daemon.stub.next_request()
    clock.advance(2.0)
    with pytest.raises(RpcTimeout):
        await call


@pytest_twisted.ensureDeferred
async def test_refused_connection_is_a_connection_error(harness: Harness) -> None:
    url = closed_port_url()
    client = harness.client(url)
    with pytest.raises(RpcConnectionError, match=url):
        await client.get_block_count()


@pytest_twisted.ensureDeferred
async def test_connection_closed_before_the_reply_is_retried_once(harness: Harness) -> None:
    daemon = harness.daemon()
    daemon.stub.on("getblockcount", [DROP, Reply.result(9)])
    client = harness.client(daemon.url)
    assert await client.get_block_count() == 9
    assert daemon.stub.methods() == ["getblockcount", "getblockcount"]


@pytest.mark.parametrize(
    "reply",
    [Reply(503, b"Work queue depth exceeded", {"Content-Type": "text/html"}), Reply(200, b"hi")],
)
@pytest_twisted.ensureDeferred
async def test_replies_that_are_not_json_rpc_are_protocol_errors(
    harness: Harness, reply: Reply
) -> None:
    daemon = harness.daemon()
    daemon.stub.on("getblockcount", reply)
    with pytest.raises(RpcProtocolError, match=daemon.url):
        await harness.client(daemon.url).get_block_count()


# -- failover ---------------------------------------------------------------------------------


@pytest_twisted.ensureDeferred
async def test_refused_endpoint_fails_over_to_the_next_in_config_order(harness: Harness) -> None:
    down = closed_port_url()
    daemon = harness.daemon()
    daemon.stub.on("getblockcount", Reply.result(17))
    client = harness.client(down, daemon.url)
    assert await client.get_block_count() == 17
    assert client.active_url == daemon.url
    switched = await harness.logs.wait_for("switched")
    assert down in switched and daemon.url in switched


@pytest_twisted.ensureDeferred
async def test_failed_endpoint_backs_off_then_is_preferred_again(
    harness: Harness, clock: Clock
) -> None:
    first, second = harness.daemon(), harness.daemon()
    first.stub.on("getblockcount", [Reply(502, b"Bad Gateway"), Reply.result(1)])
    second.stub.on("getblockcount", Reply.result(2))
    client = harness.client(first.url, second.url, backoff_initial=10.0)

    assert await client.get_block_count() == 2
    assert await client.get_block_count() == 2  # first is backing off: not asked
    assert len(first.stub.received) == 1
    assert len(second.stub.received) == 2

    clock.advance(10.0)
    assert await client.get_block_count() == 1
    assert client.active_url == first.url
    assert harness.logs.count("answers again") == 1
    assert harness.logs.count("switched") == 2


@pytest_twisted.ensureDeferred
async def test_recovery_listeners_hear_when_a_failing_daemon_answers_again(
    harness: Harness,
) -> None:
    daemon = harness.daemon()
    daemon.stub.on("getblockcount", [Reply(502, b"Bad Gateway"), Reply.result(1), Reply.result(2)])
    client = harness.client(daemon.url)
    heard: list[str] = []
    client.transport.on_recovery(lambda: heard.append("again"))
    with pytest.raises(RpcProtocolError):
        await client.get_block_count()
    assert heard == []
    assert await client.get_block_count() == 1
    assert heard == ["again"]
    assert await client.get_block_count() == 2  # not failing before: nothing to hear
    assert heard == ["again"]


@pytest_twisted.ensureDeferred
async def test_timeout_fails_over_to_the_next_endpoint(harness: Harness, clock: Clock) -> None:
    slow, fast = harness.daemon(), harness.daemon()
    slow.stub.hang("getbestblockhash")
    best = SYNCED_INFO["parsed"]["result"]["bestblockhash"]
    fast.stub.on("getbestblockhash", Reply.result(best))
    client = harness.client(slow.url, fast.url, timeout=3.0)
    call = ensureDeferred(client.get_best_block_hash())
    await slow.stub.next_request()
    clock.advance(3.0)
    assert await call == best


@pytest_twisted.ensureDeferred
async def test_rpc_error_reply_does_not_fail_over(harness: Harness) -> None:
    first, second = harness.daemon(), harness.daemon()
    case = RPC_ERRORS["getblockhash_out_of_range"]["jsonrpc_1.0"]
    first.stub.on("getblockhash", Reply.recorded(case))
    client = harness.client(first.url, second.url)
    with pytest.raises(RpcError, match="Block height out of range"):
        await client.get_block_hash(1_000_000)
    assert second.stub.received == []


@pytest_twisted.ensureDeferred
async def test_when_every_endpoint_fails_the_last_error_is_raised(harness: Harness) -> None:
    daemon = harness.daemon()
    daemon.stub.on("getblockcount", Reply(500, b"<html>oops</html>"))
    client = harness.client(closed_port_url(), daemon.url)
    with pytest.raises(RpcProtocolError, match="HTTP 500"):
        await client.get_block_count()


# -- templates --------------------------------------------------------------------------------


@pytest.mark.parametrize("case", WITH_TXS, ids=[c["name"] for c in WITH_TXS])
@pytest_twisted.ensureDeferred
async def test_templates_with_transactions_are_parsed(
    harness: Harness, case: dict[str, Any]
) -> None:
    daemon = harness.daemon()
    daemon.stub.on("getblocktemplate", Reply.result(case["getblocktemplate"]))
    template = await harness.client(daemon.url).get_block_template()
    assert daemon.stub.received[0].params == [{"rules": ["segwit"]}]
    assert [t[::-1].hex() for t in template.txids] == case["template_order_txids"]
    assert template.coinbase_value == case["template_coinbasevalue_sat"]
    assert template.total_fees == case["template_fees_sat"]
    gbt = case["getblocktemplate"]
    assert template.default_witness_commitment == bytes.fromhex(gbt["default_witness_commitment"])
    assert template.prev_hash_hex == gbt["previousblockhash"]


@pytest_twisted.ensureDeferred
async def test_low_height_templates_are_parsed(harness: Harness) -> None:
    daemon = harness.daemon()
    daemon.stub.on("getblocktemplate", [Reply.result(h["getblocktemplate"]) for h in LOW])
    client = harness.client(daemon.url)
    for entry in LOW:
        template = await client.get_block_template()
        assert template.height == entry["height"]
        assert template.longpollid == entry["getblocktemplate"]["longpollid"]


@pytest_twisted.ensureDeferred
async def test_signet_templates_ask_for_the_signet_rule(harness: Harness) -> None:
    daemon = harness.daemon()
    daemon.stub.on("getblockchaininfo", _info("signet", ibd=False))
    daemon.stub.on("getblocktemplate", Reply.result(LOW[0]["getblocktemplate"]))
    client = harness.client(daemon.url)
    await client.wait_until_ready("signet")
    await client.get_block_template()
    assert daemon.stub.received[-1].params == [{"rules": ["segwit", "signet"]}]


@pytest_twisted.ensureDeferred
async def test_malformed_template_is_a_protocol_error(harness: Harness) -> None:
    daemon = harness.daemon()
    broken = dict(LOW[0]["getblocktemplate"], bits="zz")
    daemon.stub.on("getblocktemplate", Reply.result(broken))
    with pytest.raises(RpcProtocolError, match="bits"):
        await harness.client(daemon.url).get_block_template()


@pytest_twisted.ensureDeferred
async def test_long_poll_is_held_until_a_new_template(harness: Harness) -> None:
    daemon = harness.daemon()
    daemon.stub.serve_templates(LOW[0]["getblocktemplate"])
    client = harness.client(daemon.url)
    first = await client.get_block_template()
    held = daemon.stub.held_arrival()
    poll = ensureDeferred(client.get_block_template(first.longpollid, timeout=600.0))
    received = await held
    assert received.params == [{"rules": ["segwit"], "longpollid": first.longpollid}]
    assert not poll.called
    assert daemon.stub.release_template(LOW[1]["getblocktemplate"]) == 1
    second = await poll
    assert second.height == 2
    assert second.prev_hash != first.prev_hash


@pytest_twisted.ensureDeferred
async def test_long_poll_timeout_is_not_an_endpoint_failure(harness: Harness, clock: Clock) -> None:
    first, second = harness.daemon(), harness.daemon()
    first.stub.serve_templates(LOW[0]["getblocktemplate"])
    client = harness.client(first.url, second.url)
    longpollid = LOW[0]["getblocktemplate"]["longpollid"]
    held = first.stub.held_arrival()
    poll = ensureDeferred(client.get_block_template(longpollid, timeout=60.0))
    await held
    clock.advance(60.0)
    with pytest.raises(RpcTimeout):
        await poll
    assert second.stub.received == []
    assert (await client.get_block_template()).height == 1
    assert second.stub.received == []


# -- submitblock ------------------------------------------------------------------------------

EXPECTED_OUTCOME = {
    "valid_block": SubmitOutcome.ACCEPTED,
    "valid_block_again": SubmitOutcome.DUPLICATE,
    "competing_block_same_height": SubmitOutcome.INCONCLUSIVE,
}
VALID_BLOCK = bytes.fromhex(next(c for c in SUBMITS if c["name"] == "valid_block")["block_hex"])


@pytest.mark.parametrize("case", SUBMITS, ids=[c["name"] for c in SUBMITS])
@pytest_twisted.ensureDeferred
async def test_submitblock_replies_map_to_outcomes(harness: Harness, case: dict[str, Any]) -> None:
    daemon = harness.daemon()
    reply = case["submitblock_reply"]
    daemon.stub.on("submitblock", Reply(reply["http_status"], reply["response_body"].encode()))
    try:
        block = bytes.fromhex(case["block_hex"])
    except ValueError:
        block = VALID_BLOCK  # "not hex": the client only sends hex; the reply is replayed
    if len(block) < 80:
        block = VALID_BLOCK
    result = await harness.client(daemon.url).submit_block(block)

    assert daemon.stub.received[0].params == [block.hex()]
    outcome = EXPECTED_OUTCOME.get(case["name"], SubmitOutcome.REJECTED)
    assert result.outcome is outcome
    assert result.accepted is (outcome is SubmitOutcome.ACCEPTED)
    if reply["error"] is not None:
        assert reply["error"]["code"] == -22
        assert result.reason == "Block decode failed"
    else:
        assert result.reason == reply["result"]
    block_hash = sha256d(block[:80])[::-1].hex()
    if case.get("block_hash") and block is not VALID_BLOCK:
        assert block_hash == case["block_hash"]
    assert harness.logs.count(block_hash) == 1


@pytest_twisted.ensureDeferred
async def test_submitting_less_than_a_header_is_refused(harness: Harness) -> None:
    client = harness.client(harness.daemon().url)
    with pytest.raises(ValueError, match="4 bytes"):
        await client.submit_block(bytes.fromhex("deadbeef"))


# -- chain queries ----------------------------------------------------------------------------


@pytest_twisted.ensureDeferred
async def test_chain_queries_send_their_parameters(harness: Harness) -> None:
    daemon = harness.daemon()
    best = SYNCED_INFO["parsed"]["result"]["bestblockhash"]
    stub = daemon.stub
    stub.on("getblockhash", Reply.result(best))
    stub.on("getbestblockhash", Reply.result(best))
    stub.on("getblockcount", Reply.result(17))
    stub.on("getblockheader", Reply.result({"hash": best, "height": 17}))
    stub.on("getblock", Reply.result({"hash": best, "tx": []}))
    client = harness.client(daemon.url)
    assert await client.get_block_hash(17) == best
    assert await client.get_best_block_hash() == best
    assert await client.get_block_count() == 17
    assert (await client.get_block_header(best))["height"] == 17
    assert (await client.get_block(best, 2))["hash"] == best
    assert [(r.method, r.params) for r in stub.received] == [
        ("getblockhash", [17]),
        ("getbestblockhash", []),
        ("getblockcount", []),
        ("getblockheader", [best, True]),
        ("getblock", [best, 2]),
    ]
    with pytest.raises(ValueError, match="'nothex'"):
        await client.get_block("nothex")


@pytest_twisted.ensureDeferred
async def test_wrongly_typed_results_are_protocol_errors(harness: Harness) -> None:
    daemon = harness.daemon()
    daemon.stub.on("getblockcount", Reply.result("17"))
    daemon.stub.on("getbestblockhash", Reply.result(17))
    client = harness.client(daemon.url)
    with pytest.raises(RpcProtocolError, match="'17'"):
        await client.get_block_count()
    with pytest.raises(RpcProtocolError, match="hex hash"):
        await client.get_best_block_hash()


ADDRESS_CASES = list(RPC_ERRORS["validateaddress"].items())


@pytest.mark.parametrize(("name", "case"), ADDRESS_CASES, ids=[n for n, _ in ADDRESS_CASES])
@pytest_twisted.ensureDeferred
async def test_validate_address_gives_cores_verdict(
    harness: Harness, name: str, case: dict[str, Any]
) -> None:
    daemon = harness.daemon()
    daemon.stub.on("validateaddress", Reply.recorded(case))
    check = await harness.client(daemon.url).validate_address(case["address"])
    result = case["parsed"]["result"]
    assert daemon.stub.received[0].params == [case["address"]]
    assert check.valid is result["isvalid"] is name.startswith("valid")
    if check.valid:
        assert check.script_pubkey == bytes.fromhex(result["scriptPubKey"])
        assert check.error is None
    else:
        assert check.script_pubkey is None
        assert check.error == result["error"]


# -- start-up check ---------------------------------------------------------------------------


@pytest_twisted.ensureDeferred
async def test_ready_at_once_on_a_fresh_regtest_chain_in_ibd(harness: Harness) -> None:
    daemon = harness.daemon()
    daemon.stub.on("getblockchaininfo", Reply.recorded(GENESIS_INFO))
    info = await harness.client(daemon.url).wait_until_ready("regtest")
    assert info.chain == "regtest" and info.blocks == 0 and info.initial_block_download
    assert info.best_block_hash == GENESIS_INFO["parsed"]["result"]["bestblockhash"]


@pytest.mark.parametrize(
    ("network", "chain"),
    [("mainnet", "regtest"), ("testnet", "main"), ("testnet4", "test"), ("devnet", "regtest")],
)
@pytest_twisted.ensureDeferred
async def test_refuses_to_start_on_another_chain(
    harness: Harness, network: str, chain: str
) -> None:
    daemon = harness.daemon()
    daemon.stub.on("getblockchaininfo", _info(chain, ibd=False))
    with pytest.raises(ChainMismatchError) as info:
        await harness.client(daemon.url).wait_until_ready(network)
    assert repr(chain) in str(info.value) and repr(network) in str(info.value)


@pytest_twisted.ensureDeferred
async def test_unknown_network_name_is_refused(harness: Harness) -> None:
    with pytest.raises(ValueError, match="'bitcoin-cash'"):
        await harness.client(harness.daemon().url).wait_until_ready("bitcoin-cash")


@pytest_twisted.ensureDeferred
async def test_waits_while_mainnet_is_in_initial_block_download(
    harness: Harness, clock: Clock
) -> None:
    daemon = harness.daemon()
    daemon.stub.on("getblockchaininfo", [_info("main", ibd=True, blocks=5), _info("main", False)])
    ready = ensureDeferred(harness.client(daemon.url).wait_until_ready("mainnet"))
    line = await harness.logs.wait_for("initial block download")
    assert "block 5" in line
    assert not ready.called
    clock.advance(1.0)
    info = await ready
    assert info.chain == "main" and not info.initial_block_download


@pytest_twisted.ensureDeferred
async def test_waits_while_the_daemon_is_down_or_warming_up(harness: Harness, clock: Clock) -> None:
    daemon = harness.daemon()
    warmup = Reply.error(-28, "Loading block index…")
    daemon.stub.on("getblockchaininfo", [Reply(503, b""), warmup, _info("test", False)])
    ready = ensureDeferred(harness.client(daemon.url).wait_until_ready("testnet"))
    await harness.logs.wait_for("HTTP 503")
    clock.advance(1.0)
    await harness.logs.wait_for("Loading block index")
    clock.advance(2.0)
    assert (await ready).chain == "test"


@pytest_twisted.ensureDeferred
async def test_wrong_credentials_stop_the_start_up_check_at_once(harness: Harness) -> None:
    daemon = harness.daemon(credentials="a:b")
    with pytest.raises(RpcAuthError) as raised:
        await harness.client(daemon.url).wait_until_ready("regtest")
    # The node logs it as its one start-failure line: the cause and what to do.
    from otedama.config import load_config
    from otedama.ops.lifecycle import NodeService
    from otedama.ops.logging import LogControl
    from otedama.tap import operator_errors

    config = load_config(data={}, env={})
    node = NodeService(config, None, LogControl("info", "text", stdout=False))
    node.expect_start_errors(*operator_errors())
    line = node.explain(raised.value)
    assert line is not None
    assert f"bitcoind at {daemon.url} refused the request: wrong credentials (HTTP 401)" in line
    assert "check rpcuser/rpcpassword" in line


@pytest_twisted.ensureDeferred
async def test_refuses_a_failover_endpoint_on_another_chain(harness: Harness) -> None:
    first, second = harness.daemon(), harness.daemon()
    first.stub.on("getblockchaininfo", _info("main", False))
    second.stub.on("getblockchaininfo", _info("test", False))
    with pytest.raises(ChainMismatchError, match=second.url):
        await harness.client(first.url, second.url).wait_until_ready("mainnet")


@pytest_twisted.ensureDeferred
async def test_unreachable_failover_endpoint_is_only_a_warning(harness: Harness) -> None:
    daemon = harness.daemon()
    daemon.stub.on("getblockchaininfo", _info("main", False))
    down = closed_port_url()
    info = await harness.client(daemon.url, down).wait_until_ready("mainnet")
    assert info.chain == "main"
    assert down in await harness.logs.wait_for("could not be checked")


# -- wallet -----------------------------------------------------------------------------------

TXID = "9ce7a5d61d2243f470512043e22bbcf3f383a327c6158dffd5cb77247d4a29b6"


@pytest_twisted.ensureDeferred
async def test_send_many_sends_exact_btc_amounts_with_the_batch_comment(harness: Harness) -> None:
    daemon = harness.daemon()
    daemon.stub.on("sendmany", Reply.result(TXID))
    client = harness.client(daemon.url, wallet="pool wallet")
    amounts = {"bcrt1qa": 100_000, "bcrt1qb": 2_100_000_000_000_000, "bcrt1qc": 1}
    assert await client.send_many(amounts, "otedama-payout-42") == TXID
    request = daemon.stub.received[0]
    assert request.path == "/wallet/pool%20wallet"
    assert b'{"bcrt1qa":0.00100000,"bcrt1qb":21000000.00000000,"bcrt1qc":0.00000001}' in (
        request.body
    )
    params = json.loads(request.body, parse_float=Decimal)["params"]
    assert params == [
        "",
        {"bcrt1qa": Decimal("0.001"), "bcrt1qb": Decimal(21_000_000), "bcrt1qc": Decimal("1e-8")},
        1,
        "otedama-payout-42",
    ]


@pytest.mark.parametrize(
    ("amounts", "message"),
    [({}, "at least one"), ({"a": 0}, "positive"), ({"a": 1.5}, "1.5"), ({"a": True}, "True")],
)
@pytest_twisted.ensureDeferred
async def test_send_many_refuses_amounts_that_are_not_positive_satoshis(
    harness: Harness, amounts: dict[str, Any], message: str
) -> None:
    daemon = harness.daemon()
    with pytest.raises(ValueError, match=message):
        await harness.client(daemon.url).send_many(amounts, "batch")
    assert daemon.stub.received == []


@pytest_twisted.ensureDeferred
async def test_wallet_calls_never_fail_over(harness: Harness) -> None:
    other = harness.daemon()
    other.stub.on("sendmany", Reply.result(TXID))
    client = harness.client(closed_port_url(), other.url)
    with pytest.raises(RpcConnectionError):
        await client.send_many({"bcrt1qa": 1000}, "batch-1")
    assert other.stub.received == []


@pytest_twisted.ensureDeferred
async def test_wallet_timeout_is_not_retried(harness: Harness, clock: Clock) -> None:
    daemon = harness.daemon()
    daemon.stub.hang("sendmany")
    client = harness.client(daemon.url, timeout=30.0)
    call = ensureDeferred(client.send_many({"bcrt1qa": 1000}, "batch-2"))
    await daemon.stub.next_request()
    clock.advance(30.0)
    with pytest.raises(RpcTimeout):
        await call
    assert daemon.stub.methods() == ["sendmany"]


@pytest_twisted.ensureDeferred
async def test_balance_and_wallet_history_keep_amounts_exact(harness: Harness) -> None:
    daemon = harness.daemon()
    stub = daemon.stub
    stub.on("getbalance", Reply.result(None, raw="20999999.99999999"))
    entry = f'{{"txid":"{TXID}","amount":-0.00100000,"comment":"otedama-payout-42"}}'
    stub.on("gettransaction", Reply.result(None, raw=entry))
    stub.on("listtransactions", Reply.result(None, raw=f"[{entry}]"))
    client = harness.client(daemon.url)
    assert await client.get_balance() == 2_099_999_999_999_999
    tx = await client.get_transaction(TXID)
    assert tx["amount"] == Decimal("-0.001") and tx["comment"] == "otedama-payout-42"
    history = await client.list_transactions(50, 10)
    assert history == [tx]
    assert stub.received[-1].params == ["*", 50, 10]


@pytest_twisted.ensureDeferred
async def test_a_balance_with_a_fraction_of_a_satoshi_is_a_protocol_error(
    harness: Harness,
) -> None:
    daemon = harness.daemon()
    daemon.stub.on("getbalance", Reply.result(None, raw="0.000000001"))
    with pytest.raises(RpcProtocolError, match="satoshis"):
        await harness.client(daemon.url).get_balance()


# -- the real agent -----------------------------------------------------------------------------


@pytest_twisted.ensureDeferred
async def test_default_client_uses_the_reactor_and_a_persistent_pool(harness: Harness) -> None:
    from twisted.internet import reactor

    daemon = harness.daemon()
    daemon.stub.on("getblockcount", Reply.result(3))
    client = BitcoindClient([RpcEndpoint(daemon.url)], clock=reactor)
    try:
        assert await client.get_block_count() == 3
        assert await client.get_block_count() == 3
    finally:
        await client.close()
    ports = {r.client_port for r in daemon.stub.received}
    assert len(ports) == 1  # both calls went over one kept-alive connection


def test_a_clock_that_cannot_connect_needs_an_http_client() -> None:
    with pytest.raises(TypeError, match="pass the reactor"):
        BitcoindClient([RpcEndpoint("http://127.0.0.1:8332")], clock=Clock())

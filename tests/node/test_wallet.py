"""The wallet view: payouts on the chain daemon's wallet by default, or on another daemon."""

from __future__ import annotations

from collections.abc import AsyncIterator
from pathlib import Path
from typing import Any

import pytest
import pytest_twisted
from twisted.internet.task import Clock

from otedama.config import ConfigError, load_config
from otedama.node.chainview import ChainMismatchError
from otedama.node.rpc import RpcEndpoint
from otedama.tap import wallet_endpoint

from .stub_bitcoind import Harness, Reply, closed_port_url

TXID = "9ce7a5d61d2243f470512043e22bbcf3f383a327c6158dffd5cb77247d4a29b6"


@pytest_twisted.async_yield_fixture
async def harness() -> AsyncIterator[Harness]:
    h = Harness(Clock())
    yield h
    await h.close()


@pytest_twisted.ensureDeferred
async def test_without_a_wallet_daemon_the_wallet_is_the_first_chain_daemons(
    harness: Harness,
) -> None:
    first, second = harness.daemon(), harness.daemon()
    first.stub.on("sendmany", Reply.result(TXID))
    client = harness.client(first.url, second.url)
    assert client.wallet.transport is client.transport
    assert await client.send_many({"bcrt1qa": 1000}, "batch-1") == TXID
    assert first.stub.methods() == ["sendmany"]
    assert second.stub.received == []


@pytest_twisted.ensureDeferred
async def test_a_wallet_daemon_takes_every_wallet_call_and_no_chain_call(
    harness: Harness,
) -> None:
    chain = harness.daemon()
    wallet = harness.daemon(credentials="payer:secret")
    chain.stub.on("getblockcount", Reply.result(7))
    wallet.stub.on("sendmany", Reply.result(TXID))
    wallet.stub.on("getbalance", Reply.result(None, raw="1.50000000"))
    wallet.stub.on("listtransactions", Reply.result([]))
    client = harness.client(
        chain.url,
        wallet="payouts",
        wallet_endpoint=RpcEndpoint(wallet.url, user="payer", password="secret"),
    )
    assert await client.get_block_count() == 7
    assert await client.wallet.send_many({"bcrt1qa": 1000}, "batch-2") == TXID
    assert await client.get_balance() == 150_000_000
    assert await client.list_transactions(5) == []
    assert chain.stub.methods() == ["getblockcount"]
    assert wallet.stub.methods() == ["sendmany", "getbalance", "listtransactions"]
    assert {r.path for r in wallet.stub.received} == {"/wallet/payouts"}
    assert {r.authorization for r in wallet.stub.received} == {"payer:secret"}
    assert client.wallet.url == wallet.url.rstrip("/") + "/wallet/payouts"
    await client.close()


def _chain_config(tmp_path: Path, wallet: str) -> Any:
    text = (
        "chain:\n"
        "  backend: bitcoind\n"
        "  network: regtest\n"
        "  rpc:\n"
        "    - url: http://127.0.0.1:18443\n"
        f"  wallet:\n{wallet}"
        "pool:\n"
        "  wallet_address: bcrt1qkuycd29ejkf8n8sneevx4xmlsgly03cq8mavh9\n"
    )
    path = tmp_path / "otedama.yaml"
    path.write_text(text)
    return load_config(path, env={})


def test_the_wallet_defaults_to_the_chain_daemons(tmp_path: Path) -> None:
    config = _chain_config(tmp_path, "    name: null\n")
    assert config.chain.wallet.url is None
    assert wallet_endpoint(config) is None


def test_a_wallet_section_gives_the_wallet_daemon(tmp_path: Path) -> None:
    config = _chain_config(
        tmp_path,
        "    url: http://10.0.0.2:8332\n    user: payer\n    password: secret\n    name: payouts\n",
    )
    assert config.chain.wallet.name == "payouts"
    assert wallet_endpoint(config) == RpcEndpoint(
        "http://10.0.0.2:8332", user="payer", password="secret"
    )


@pytest.mark.parametrize(
    ("section", "problem"),
    [
        ("    user: payer\n", "chain.wallet.user: needs chain.wallet.url"),
        ("    url: 10.0.0.2:8332\n", "chain.wallet.url: expected an http:// or https:// URL"),
        (
            "    url: http://10.0.0.2:8332\n    password: x\n    cookie_file: /tmp/.cookie\n",
            "chain.wallet: give either password or cookie_file, not both",
        ),
    ],
)
def test_a_wallet_section_that_cannot_work_is_refused_with_its_key(
    tmp_path: Path, section: str, problem: str
) -> None:
    with pytest.raises(ConfigError) as caught:
        _chain_config(tmp_path, section)
    assert any(problem in p for p in caught.value.problems), caught.value.problems


def test_the_node_pays_out_from_the_configured_wallet_daemon(tmp_path: Path) -> None:
    """tap wires the payouts to chain.wallet, and everything else to chain.rpc."""
    from twisted.internet import reactor

    from otedama.tap import build_node

    config = _chain_config(
        tmp_path,
        "    url: http://10.0.0.2:8332\n"
        "    cookie_file: /var/lib/wallet/.cookie\n"
        "    name: payouts\n"
        "app:\n"
        f"  data_dir: {tmp_path / 'data'}\n"
        "stratum:\n"
        "  enable: false\n",
    )
    node = build_node(config, reactor)
    wallet = node.getServiceNamed("leader").getServiceNamed("payouts").wallet
    assert wallet.url == "http://10.0.0.2:8332/wallet/payouts"
    assert wallet.transport.endpoints == (
        RpcEndpoint("http://10.0.0.2:8332", cookie_file="/var/lib/wallet/.cookie"),
    )
    chain = node.getServiceNamed("chain").client
    assert [e.url for e in chain.endpoints] == ["http://127.0.0.1:18443"]
    assert chain.wallet is wallet


def _chain_info(chain: str) -> Reply:
    return Reply.result(
        {
            "chain": chain,
            "blocks": 17,
            "headers": 17,
            "bestblockhash": "0f9188f13cb7b2c71f2a335e3a4fc328bf5beb436012afca590b1a11466e2206",
            "initialblockdownload": False,
            "verificationprogress": 1,
        }
    )


@pytest_twisted.ensureDeferred
async def test_a_wallet_daemon_on_another_chain_stops_the_start(harness: Harness) -> None:
    chain, wallet = harness.daemon(), harness.daemon()
    chain.stub.on("getblockchaininfo", _chain_info("regtest"))
    wallet.stub.on("getblockchaininfo", _chain_info("main"))
    client = harness.client(chain.url, wallet_endpoint=RpcEndpoint(wallet.url))
    with pytest.raises(ChainMismatchError, match=r"wallet bitcoind at .* runs chain 'main'"):
        await client.wait_until_ready("regtest")


@pytest_twisted.ensureDeferred
async def test_a_wallet_daemon_on_the_same_chain_is_ready(harness: Harness) -> None:
    chain, wallet = harness.daemon(), harness.daemon()
    chain.stub.on("getblockchaininfo", _chain_info("regtest"))
    wallet.stub.on("getblockchaininfo", _chain_info("regtest"))
    client = harness.client(chain.url, wallet_endpoint=RpcEndpoint(wallet.url))
    assert (await client.wait_until_ready("regtest")).chain == "regtest"
    assert wallet.stub.methods() == ["getblockchaininfo"]


@pytest_twisted.ensureDeferred
async def test_an_unreachable_wallet_daemon_is_only_a_warning(harness: Harness) -> None:
    chain = harness.daemon()
    chain.stub.on("getblockchaininfo", _chain_info("regtest"))
    down = closed_port_url()
    client = harness.client(chain.url, wallet_endpoint=RpcEndpoint(down))
    assert (await client.wait_until_ready("regtest")).chain == "regtest"
    assert down in await harness.logs.wait_for("payouts wait for it")


@pytest_twisted.ensureDeferred
async def test_the_wallet_of_the_chain_daemon_is_not_asked_twice(harness: Harness) -> None:
    chain = harness.daemon()
    chain.stub.on("getblockchaininfo", _chain_info("regtest"))
    await harness.client(chain.url).wait_until_ready("regtest")
    assert chain.stub.methods() == ["getblockchaininfo"]

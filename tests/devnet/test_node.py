"""The devnet node without HTTP: long-poll timing on a fake clock, mining, importaddress,
configuration errors and the ``otedama devnet`` command."""

from __future__ import annotations

from fractions import Fraction
from pathlib import Path
from typing import Any

import pytest
import pytest_twisted
import yaml
from twisted.internet import reactor
from twisted.internet.defer import Deferred
from twisted.internet.task import Clock

from otedama.chain.address import address_to_script
from otedama.cli import build_parser
from otedama.config import ConfigError, load_config
from otedama.devnet.node import LONGPOLL_TIMEOUT, DevnetNode
from otedama.devnet.service import DevnetService
from otedama.node.bitcoind import BitcoindClient
from otedama.node.rpc import RpcEndpoint
from otedama.tap import devnet_service, rpc_endpoints

EASY = Fraction(1, 10**9)
OTHER_POOL = "bcrt1qkuycd29ejkf8n8sneevx4xmlsgly03cq8mavh9"


@pytest.fixture
def node(tmp_path: Path) -> DevnetNode:
    clock = Clock()
    clock.advance(1_800_000_000)
    devnet = DevnetNode(clock, EASY, tmp_path / "devnet")
    devnet.load()
    return devnet


def test_a_long_poll_on_the_current_state_waits_until_the_timeout(node: DevnetNode) -> None:
    waiting = node.wait_for_change(node.longpollid())
    node.clock.advance(LONGPOLL_TIMEOUT - 1)
    assert not waiting.called
    node.clock.advance(1)
    assert waiting.called
    assert not node.clock.getDelayedCalls()


def test_a_long_poll_with_an_old_id_returns_at_once(node: DevnetNode) -> None:
    assert node.wait_for_change("f" * 64 + "0").called


def test_a_long_poll_wakes_on_a_wallet_payment(node: DevnetNode) -> None:
    script = address_to_script(node.wallet.default_address, node.chain.params)
    mined = Deferred.fromCoroutine(node.generate(101, script, 10**9))
    assert len(mined.result) == 101  # at this difficulty no chunk ends without a block
    waiting = node.wait_for_change(node.longpollid())
    node.send_many([(OTHER_POOL, 10**8)], "payout 1", 1, [])
    assert waiting.called
    assert not node.clock.getDelayedCalls()


def test_a_cancelled_long_poll_leaves_no_timer(node: DevnetNode) -> None:
    waiting = node.wait_for_change(node.longpollid())
    waiting.addErrback(lambda _: None)
    waiting.cancel()
    assert not node.clock.getDelayedCalls()


def test_a_wallet_address_of_another_network_is_refused(tmp_path: Path) -> None:
    with pytest.raises(ValueError, match="not a devnet"):
        DevnetNode(Clock(), EASY, tmp_path, "bc1qw508d6qejxtdg4y5r3zarvary0c5xw7kv8f3t4")


@pytest_twisted.ensureDeferred
async def test_mining_pays_an_imported_address_into_the_balance(tmp_path: Path) -> None:
    node = DevnetNode(reactor, EASY, tmp_path / "devnet")
    node.load()
    try:
        script = address_to_script(OTHER_POOL, node.chain.params)
        assert len(await node.generate(101, script, 10**9)) == 101
        assert node.wallet.balance() == 0
        node.import_address(OTHER_POOL, rescan=True)
        assert node.wallet.balance() == 50 * 10**8
        assert len(node.wallet.records) == 101
    finally:
        node.close()
    again = DevnetNode(reactor, EASY, tmp_path / "devnet")
    again.load()
    try:
        assert again.wallet.balance() == 50 * 10**8
    finally:
        again.close()


def test_the_devnet_command_reads_the_config(tmp_path: Path) -> None:
    config_file = tmp_path / "devnet.yaml"
    config_file.write_text(
        "chain:\n"
        "  backend: devnet\n"
        "  network: devnet\n"
        "  devnet:\n"
        "    listen: 127.0.0.1:19555\n"
        "    difficulty: 0.001\n"
        f"    data_dir: {tmp_path / 'chain'}\n"
        "pool:\n"
        f"  wallet_address: {OTHER_POOL}\n"
    )
    args = build_parser().parse_args(["devnet", "--config", str(config_file)])
    assert args.func.__name__ == "run_devnet"
    service = devnet_service(load_config(config_file), reactor)
    assert isinstance(service, DevnetService)
    assert service.listen == "tcp:19555:interface=127.0.0.1"
    assert service.node.chain.difficulty == Fraction(1, 1000)
    assert service.node.store.data_dir == tmp_path / "chain"
    assert service.node.wallet_address == OTHER_POOL


def test_the_devnet_auth_and_zmq_keys_reach_the_service_and_the_pools_client(
    tmp_path: Path,
) -> None:
    def config(devnet_lines: str) -> Any:
        return load_config(
            data={
                "chain": {
                    "devnet": {
                        "listen": "127.0.0.1:19555",
                        "data_dir": str(tmp_path / "chain"),
                        **yaml.safe_load(devnet_lines),
                    },
                }
            }
        )

    cookie = config("rpc_cookie: true\nzmq_pub_hashblock: tcp://127.0.0.1:28332\n")
    service = devnet_service(cookie, reactor)
    assert service.cookie and service.credentials is None
    assert service.zmq.endpoints == {"hashblock": "tcp://127.0.0.1:28332"}
    [endpoint] = rpc_endpoints(cookie)
    assert endpoint.cookie_file == str(tmp_path / "chain" / ".cookie")

    password = config("rpc_user: alice\nrpc_password: pw\nzmq_pub_rawblock: ipc:///tmp/x\n")
    service = devnet_service(password, reactor)
    assert service.credentials == ("alice", "pw") and not service.cookie
    assert service.zmq.endpoints == {"rawblock": "ipc:///tmp/x"}
    [endpoint] = rpc_endpoints(password)
    assert (endpoint.user, endpoint.password) == ("alice", "pw")

    with pytest.raises(ConfigError, match=r"chain\.devnet\.zmq_pub_rawtx"):
        config("zmq_pub_rawtx: 127.0.0.1:28332\n")
    with pytest.raises(ConfigError, match="rpc_user and rpc_password go together"):
        config("rpc_user: alice\n")
    plain = devnet_service(config("{}"), reactor)
    assert plain.credentials is None and not plain.cookie and not plain.zmq.endpoints
    assert plain.chain_name == "devnet"
    alone = devnet_service(config("chain_name: regtest\nreported_connections: 1\n"), reactor)
    assert (alone.chain_name, alone.connections) == ("regtest", 1)
    assert plain.connections == 0


@pytest_twisted.ensureDeferred
async def test_the_pools_client_authenticates_with_the_devnets_cookie(tmp_path: Path) -> None:
    service = DevnetService(
        reactor, "tcp:0:interface=127.0.0.1", EASY, tmp_path / "devnet", cookie=True
    )
    service.startService()
    handle = await service.ready
    client = BitcoindClient(
        [RpcEndpoint(url=handle.url, cookie_file=str(tmp_path / "devnet" / ".cookie"))],
        clock=reactor,
        timeout=30,
    )
    try:
        assert await client.call("getblockcount") == 0
    finally:
        await client.close()
        await service.stopService()


def test_generate_stops_after_maxtries_nonces(tmp_path: Path) -> None:
    """At difficulty 1 a block takes about 2**32 nonces; 1000 tries find none (p < 3e-7)."""
    clock = Clock()
    clock.advance(1_800_000_000)
    hard = DevnetNode(clock, 1, tmp_path / "devnet")
    hard.load()
    try:
        script = address_to_script(OTHER_POOL, hard.chain.params)
        mined = Deferred.fromCoroutine(hard.generate(1, script, 1000))
        assert mined.result == []
        assert hard.chain.tip.height == 0
    finally:
        hard.close()


@pytest_twisted.ensureDeferred
async def test_the_service_can_be_stopped_and_started_again(tmp_path: Path) -> None:
    service = DevnetService(reactor, "tcp:0:interface=127.0.0.1", EASY, tmp_path / "devnet")
    service.startService()
    first = await service.ready
    script = address_to_script(OTHER_POOL, first.chain.params)
    await first.node.generate(3, script)
    await service.stopService()
    service.startService()
    second = await service.ready
    try:
        assert second.chain.tip.height == 3
        assert second.chain.tip.hash == first.chain.tip.hash
    finally:
        await service.stopService()


def test_generated_blocks_with_wallet_payments_pass_python_bitcoinlib(node: DevnetNode) -> None:
    """An independent library agrees on the devnet's blocks and its wallet's transactions."""
    import bitcoin
    import bitcoin.core

    script = address_to_script(node.wallet.default_address, node.chain.params)
    Deferred.fromCoroutine(node.generate(101, script))
    txid = node.send_many(
        [(OTHER_POOL, 10**8), (node.wallet.new_address("legacy"), 10**7)], "", 1, []
    )
    mined = Deferred.fromCoroutine(node.generate(1, script))
    (block_hash,) = mined.result
    raw = node.chain.index[block_hash].raw
    bitcoin.SelectParams("regtest")
    try:
        theirs = bitcoin.core.CBlock.deserialize(raw)
        assert theirs.serialize() == raw
        bitcoin.core.CheckBlock(theirs, fCheckPoW=True, cur_time=node.now())
        assert [tx.GetTxid() for tx in theirs.vtx[1:]] == [txid]
        assert theirs.vtx[1].has_witness()
        index = theirs.get_witness_commitment_index()
        commitment = bytes(theirs.vtx[0].vout[index].scriptPubKey)[6:]
        reserved = theirs.vtx[0].wit.vtxinwit[0].scriptWitness.stack[0]
        assert commitment == bitcoin.core.Hash(theirs.calc_witness_merkle_root() + reserved)
    finally:
        bitcoin.SelectParams("mainnet")

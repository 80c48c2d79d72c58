"""End to end: the built-in CPU miner finds a block through the Stratum server on a devnet.

devnet (JSON-RPC over HTTP) -> BitcoindClient + TemplateSource -> JobManager ->
StratumFactory on 127.0.0.1 -> the built-in miner (one worker process) -> shares ->
a ShareSink that submits block candidates with ``submit_block`` -> the devnet's chain grows
and the new block's coinbase pays the miner's address.
"""

from __future__ import annotations

from fractions import Fraction
from pathlib import Path
from typing import Any

import pytest
import pytest_twisted
from twisted.internet.defer import Deferred
from twisted.internet.endpoints import TCP4ClientEndpoint, TCP4ServerEndpoint

from otedama.chain.address import address_to_script
from otedama.chain.params import get_network
from otedama.chain.serialize import TxOut
from otedama.chain.template import BlockTemplate
from otedama.devnet.service import start_devnet
from otedama.miner.service import CpuMinerService
from otedama.node.bitcoind import BitcoindClient, SubmitResult
from otedama.node.rpc import RpcEndpoint
from otedama.node.source import TemplateSource
from otedama.stratum.jobs import JobManager
from otedama.stratum.protocol import StratumFactory
from otedama.stratum.settings import StratumSettings
from otedama.stratum.share import Share

ADDRESS = "bcrt1qsv2hexjrhpa8qwxr4la2nmmkmdh8hxkje996rc"
#: About 430,000 hashes a block and 43,000 a share: a block within seconds on one worker.
CHAIN_DIFFICULTY = Fraction(1, 10_000)
SHARE_DIFFICULTY = Fraction(1, 100_000)


class SubmittingSink:
    """The pool core's part in this test: count shares, submit blocks to the daemon."""

    def __init__(self, client: BitcoindClient) -> None:
        self.client = client
        self.shares: list[Share] = []
        self.submitted: list[tuple[Share, SubmitResult]] = []
        self.accepted_block: Deferred[Share] = Deferred()

    def share_accepted(self, share: Share) -> None:
        self.shares.append(share)

    def block_found(self, block: bytes, share: Share) -> Deferred[Any]:
        async def submit() -> None:
            result = await self.client.submit_block(block)
            self.submitted.append((share, result))
            if result.accepted and not self.accepted_block.called:
                self.accepted_block.callback(share)

        return Deferred.fromCoroutine(submit())


@pytest.mark.timeout(60)
@pytest_twisted.ensureDeferred
async def test_the_built_in_miner_finds_a_block_the_devnet_accepts(tmp_path: Path) -> None:
    from twisted.internet import reactor

    network = get_network("devnet")
    script = address_to_script(ADDRESS, network)
    devnet = await start_devnet(
        reactor, "tcp:0:interface=127.0.0.1", CHAIN_DIFFICULTY, tmp_path / "devnet"
    )
    client = BitcoindClient([RpcEndpoint(devnet.url)], clock=reactor, timeout=10)
    start_height = await client.get_block_count()

    def outputs(template: BlockTemplate) -> list[TxOut]:
        return [TxOut(template.coinbase_value, script)]

    jobs = JobManager(outputs, clock=reactor)
    source = TemplateSource(client, clock=reactor, poll_interval=0.5)
    source.subscribe(jobs.on_template)
    sink = SubmittingSink(client)
    settings = StratumSettings(
        network=network,
        start_difficulty=SHARE_DIFFICULTY,
        min_difficulty=SHARE_DIFFICULTY,
        vardiff=False,
    )
    factory = StratumFactory(jobs, sink, settings, reactor)
    port = await TCP4ServerEndpoint(reactor, 0, interface="127.0.0.1").listen(factory)
    jobs.startService()
    source.startService()
    miner = CpuMinerService(
        TCP4ClientEndpoint(reactor, "127.0.0.1", port.getHost().port),
        f"{ADDRESS}.e2e",
        1,
        reactor,
    )
    miner.startService()
    try:
        block_share = await sink.accepted_block
    finally:
        await miner.stopService()
        await port.stopListening()
        await source.stopService()
        jobs.stopService()

    try:
        height = await client.get_block_count()
        assert height > start_height
        block_hash = block_share.block_hash[::-1].hex()
        block = await client.get_block(block_hash, 2)
        coinbase = block["tx"][0]
        assert coinbase["vout"][0]["scriptPubKey"]["hex"] == script.hex()
        assert block["height"] == block_share.height
    finally:
        await client.close()
        await devnet.stop()
    assert block_share.worker == f"{ADDRESS}.e2e"
    assert sink.shares, "the server counted no accepted share"
    assert miner.stats.accepted >= 1
    assert miner.stats.rejected == 0

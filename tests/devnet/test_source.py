"""TemplateSource on the real bitcoind client against a running devnet: the devnet's long
polls wake the source when a block is mined, with no periodic poll involved."""

from __future__ import annotations

from fractions import Fraction
from pathlib import Path

import pytest_twisted
from treq.client import HTTPClient
from twisted.internet import reactor
from twisted.internet.defer import Deferred
from twisted.internet.task import Clock
from twisted.web.client import Agent, HTTPConnectionPool

from otedama.chain.template import BlockTemplate
from otedama.devnet.service import start_devnet
from otedama.node.bitcoind import BitcoindClient
from otedama.node.rpc import RpcEndpoint
from otedama.node.source import TemplateSource


@pytest_twisted.ensureDeferred
async def test_a_block_mined_on_the_devnet_reaches_subscribers_through_the_long_poll(
    tmp_path: Path,
) -> None:
    handle = await start_devnet(reactor, "tcp:0:interface=127.0.0.1", Fraction(1, 10**9), tmp_path)
    clock = Clock()  # the client's timeouts and the source's poll never fire on their own
    pool = HTTPConnectionPool(reactor)
    client = BitcoindClient(
        [RpcEndpoint(url=handle.url)],
        clock=clock,
        timeout=30,
        http_client=HTTPClient(Agent(reactor, pool=pool)),
    )
    source = TemplateSource(client, clock=clock, poll_interval=5.0)
    got: list[BlockTemplate] = []
    waiters: list[Deferred[BlockTemplate]] = []

    def deliver(template: BlockTemplate) -> None:
        got.append(template)
        ready = waiters[:]
        waiters.clear()
        for d in ready:
            d.callback(template)

    def next_template() -> Deferred[BlockTemplate]:
        d: Deferred[BlockTemplate] = Deferred()
        waiters.append(d)
        return d

    try:
        info = await client.wait_until_ready("devnet")
        source.subscribe(deliver)
        first = next_template()
        source.startService()
        assert (await first).height == info.blocks + 1

        second = next_template()
        address = await client.call("getnewaddress")
        [mined] = await client.call("generatetoaddress", 1, address)
        template = await second
        assert template.height == info.blocks + 2
        assert template.prev_hash_hex == mined
        assert clock.seconds() == 0  # no poll was needed
    finally:
        await source.stopService()
        await pool.closeCachedConnections()
        await handle.stop()
    assert [t.height for t in got] == [info.blocks + 1, info.blocks + 2]

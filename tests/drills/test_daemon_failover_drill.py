"""The two-daemon drill: bitcoind fails over to the next daemon; with all down, miners keep
their last job and ``/health`` degrades; work resumes when one daemon returns.

Extends the single-daemon drill (``tests/devnet/test_outage_drill.py``, whose devnet
process helper is used here): two devnet processes stand for two daemons, configured in
failover order. They start from the same (deterministic) genesis, so they are one chain,
as two synced bitcoinds would be. The node's chain path is wired as ``tap`` wires it —
``BitcoindClient`` with both endpoints, ``TemplateSource``, ``PoolCore``, ``JobManager``,
``NodeHealth`` — with the real Stratum server on 127.0.0.1 and a miner speaking raw
Stratum lines over TCP. The share difficulty is so low that any nonce is a share, and the
chain's so high that no share is a block: every submit is accepted unless its job is gone.

Observed outcome (asserted): daemon 1 killed → the next template comes from daemon 2 (a
block made on daemon 2 reaches the miner as a new clean job) and health stays ``ok``;
daemon 2 killed as well → health's chain check is ``degraded`` naming the template
source, the miner stays connected on its last job and its shares on it are accepted;
daemon 2 restarted → a new template reaches the miner at once and health is ``ok``.
"""

from __future__ import annotations

import json
from fractions import Fraction
from pathlib import Path
from typing import Any

import pytest
import pytest_twisted
from devnet.test_outage_drill import POOL, Devnet, free_port, until
from twisted.internet import reactor
from twisted.internet.defer import Deferred
from twisted.internet.endpoints import TCP4ClientEndpoint, TCP4ServerEndpoint, connectProtocol
from twisted.protocols.basic import LineOnlyReceiver

from otedama.chain.params import get_network
from otedama.chain.template import BlockTemplate
from otedama.node.bitcoind import BitcoindClient
from otedama.node.rpc import RpcEndpoint
from otedama.node.source import TemplateSource
from otedama.ops.health import DEGRADED, OK, NodeHealth
from otedama.pool.core import PoolCore
from otedama.pool.ports import RewardScheme
from otedama.stratum.jobs import JobManager
from otedama.stratum.protocol import StratumFactory
from otedama.stratum.settings import StratumSettings
from otedama.tap import follow_the_chain, watch_the_chain

#: The devnet's difficulty: ``generatetoaddress`` grinds a block in about a second, and a
#: random share is a block once in ~400,000.
CHAIN_DIFFICULTY = "1/10000"
#: Any hash meets this share target.
SHARE_DIFFICULTY = Fraction(1, 2**32)


class RawMiner(LineOnlyReceiver):
    """A miner speaking Stratum V1 lines; remembers the latest job and every reply."""

    delimiter = b"\n"

    def __init__(self) -> None:
        self.replies: dict[int, dict[str, Any]] = {}
        self.jobs: list[list[Any]] = []
        self.extranonce2_size = 0
        self.connected = False
        self.next_id = 1
        self.lost: Deferred[None] = Deferred()

    def connectionMade(self) -> None:
        self.connected = True

    def connectionLost(self, reason: Any = None) -> None:
        self.connected = False
        self.lost.callback(None)

    def lineReceived(self, line: bytes) -> None:
        message = json.loads(line)
        if message.get("method") == "mining.notify":
            self.jobs.append(message["params"])
        elif message.get("id") is not None:
            self.replies[message["id"]] = message

    def request(self, method: str, params: list[Any]) -> int:
        request_id, self.next_id = self.next_id, self.next_id + 1
        line = json.dumps({"id": request_id, "method": method, "params": params})
        self.sendLine(line.encode())
        return request_id

    async def call(self, method: str, params: list[Any]) -> dict[str, Any]:
        request_id = self.request(method, params)
        await until(f"the reply to {method}", lambda: request_id in self.replies)
        return self.replies[request_id]

    async def submit_on_last_job(self, nonce: int) -> dict[str, Any]:
        job = self.jobs[-1]
        extranonce2 = "00" * self.extranonce2_size
        return await self.call(
            "mining.submit", [f"{POOL}.drill", job[0], extranonce2, job[7], f"{nonce:08x}"]
        )


@pytest.mark.timeout(120)
@pytest_twisted.ensureDeferred
async def test_two_daemons_fail_over_then_all_down_keeps_the_last_job_then_work_resumes(
    tmp_path: Path,
) -> None:
    ports = [free_port(), free_port()]
    daemons = [Devnet(tmp_path / f"daemon{i}", ports[i], CHAIN_DIFFICULTY) for i in (0, 1)]
    urls = [await daemon.ready for daemon in daemons]
    client = BitcoindClient([RpcEndpoint(url=url) for url in urls], clock=reactor, timeout=5.0)
    source = TemplateSource(
        client, clock=reactor, poll_interval=0.5, refresh_interval=600.0, retry_max=1.0
    )
    network = get_network("devnet")
    core = PoolCore(network, POOL, RewardScheme.PPLNS, 100, client, clock=reactor)
    health = NodeHealth(reactor, template_max_age=300.0)
    follow_the_chain(client, source, core)
    watch_the_chain(health, source, core)
    jobs = JobManager(core.coinbase_outputs, clock=reactor, refresh_interval=600.0)
    templates: list[BlockTemplate] = []
    for listener in (templates.append, health.on_template, jobs.on_template):
        source.subscribe(listener)
    settings = StratumSettings(
        network=network,
        start_difficulty=SHARE_DIFFICULTY,
        min_difficulty=SHARE_DIFFICULTY,
        vardiff=False,
    )
    factory = StratumFactory(jobs, core, settings, reactor)
    port = await TCP4ServerEndpoint(reactor, 0, interface="127.0.0.1").listen(factory)
    miner = RawMiner()
    try:
        await client.wait_until_ready("devnet")
        jobs.startService()
        source.startService()
        await until("a first template", lambda: bool(templates))
        await connectProtocol(TCP4ClientEndpoint(reactor, "127.0.0.1", port.getHost().port), miner)
        subscribed = await miner.call("mining.subscribe", ["drill/1.0"])
        miner.extranonce2_size = subscribed["result"][2]
        assert (await miner.call("mining.authorize", [f"{POOL}.drill", "x"]))["result"] is True
        await until("a first job", lambda: bool(miner.jobs))
        assert (await miner.submit_on_last_job(1))["result"] is True
        assert client.transport.active_url == urls[0]
        assert health.report()["status"] == OK

        # Daemon 1 dies: the source fails over to daemon 2. A block made there (the
        # chain moving on) reaches the miner as a clean job, and health stays ok.
        await daemons[0].kill()
        first_height = templates[-1].height
        await Deferred.fromCoroutine(_generate(urls[1]))
        await until(
            "a template from daemon 2 at the next height",
            lambda: templates[-1].height == first_height + 1,
        )
        assert client.transport.active_url == urls[1]
        await until(
            "the new job at the miner", lambda: miner.jobs[-1][8] is True and len(miner.jobs) >= 2
        )
        assert health.report()["status"] == OK
        assert (await miner.submit_on_last_job(2))["result"] is True

        # Daemon 2 dies too: health degrades, the miner keeps its last job and works on.
        last_job = miner.jobs[-1]
        await daemons[1].kill()
        await until("the chain check degraded", lambda: health.report()["status"] != OK)
        chain = health.report()["checks"]["chain"]
        assert chain["status"] == DEGRADED and chain["failing"] == ["templates"]
        assert miner.connected and miner.jobs[-1] == last_job
        for nonce in (3, 4, 5):
            assert (await miner.submit_on_last_job(nonce))["result"] is True
        assert miner.jobs[-1] == last_job

        # Daemon 2 returns (same port, same data): work resumes at once.
        daemons[1] = Devnet(tmp_path / "daemon1", ports[1], CHAIN_DIFFICULTY)
        assert await daemons[1].ready == urls[1]
        await until("health ok again", lambda: health.report()["status"] == OK)
        await Deferred.fromCoroutine(_generate(urls[1]))
        await until(
            "the next job after the outage",
            lambda: (
                len(miner.jobs) > 2
                and miner.jobs[-1][0] != last_job[0]
                and templates[-1].height == first_height + 2
            ),
        )
        assert (await miner.submit_on_last_job(6))["result"] is True
        assert miner.connected
    finally:
        if miner.transport is not None:
            miner.transport.loseConnection()
        await port.stopListening()
        await source.stopService()
        jobs.stopService()
        await client.close()
        for daemon in daemons:
            await daemon.kill()


async def _generate(url: str) -> None:
    """Mine one block on the daemon at ``url`` (to an address nobody here watches)."""
    side = BitcoindClient([RpcEndpoint(url=url)], clock=reactor, timeout=30.0)
    try:
        await side.call("generatetoaddress", 1, POOL)
    finally:
        await side.close()

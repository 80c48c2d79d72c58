"""The chain-outage drill: the daemon (the devnet in a subprocess) goes away and comes back.

The node's chain path runs here as the node wires it (``tap.follow_the_chain`` and the
health troubles): the real ``BitcoindClient`` over TCP, the ``TemplateSource``, the pool
core and ``NodeHealth``. The source's back-off and poll are set to a minute, longer than
any wait in the test, so templates can only come back at once through the recovery paths.

Checked: health is degraded, naming the template source, as soon as the daemon is gone;
after it returns, the block a miner found on the old job is accepted and the next
template reaches miners at once; the next block is at the next height (no second block
at the same height, which would be an orphan).
"""

from __future__ import annotations

import json
import os
import signal
import socket
import sys
from collections.abc import Callable
from fractions import Fraction
from pathlib import Path
from typing import Any

import pytest_twisted
from twisted.internet import reactor
from twisted.internet.defer import Deferred
from twisted.internet.protocol import ProcessProtocol
from twisted.internet.task import deferLater

from otedama.chain.merkle import merkle_root
from otedama.chain.params import get_network
from otedama.chain.serialize import Block, BlockHeader, Transaction
from otedama.chain.template import BlockTemplate
from otedama.node.bitcoind import BitcoindClient
from otedama.node.rpc import RpcEndpoint
from otedama.node.source import TemplateSource
from otedama.ops.health import DEGRADED, OK, NodeHealth
from otedama.pool.core import PoolCore
from otedama.pool.ports import RewardScheme, SubmitOutcome, SubmitResult
from otedama.stratum.share import Share
from otedama.tap import follow_the_chain, watch_the_chain

from .blocks import coinbase_for, grind

HERE = Path(__file__).resolve().parent
ROOT = HERE.parents[1]
#: Every wait of the drill ends by this bound (seconds); the source would need 60 s.
BOUND = 20.0
POOL = "bcrt1qqxlgwddcf0uhsmr9uqesvn3efp00p99t0mcyjs"


class Devnet(ProcessProtocol):
    """``outage_devnet.py`` in a subprocess: ``ready`` fires with its URL, ``ended`` at exit."""

    def __init__(self, data_dir: Path, port: int, difficulty: str | None = None) -> None:
        self.ready: Deferred[str] = Deferred()
        self.ended: Deferred[None] = Deferred()
        self.output = b""
        self.errors = b""
        env = dict(os.environ, PYTHONPATH=str(ROOT))
        self.transport: Any = reactor.spawnProcess(  # type: ignore[attr-defined]
            self,
            sys.executable,
            [
                sys.executable,
                str(HERE / "outage_devnet.py"),
                str(data_dir),
                str(port),
                *([difficulty] if difficulty is not None else []),
            ],
            env=env,
            path=str(ROOT),
        )

    def outReceived(self, data: bytes) -> None:
        self.output += data
        if b"\n" in self.output and not self.ready.called:
            self.ready.callback(json.loads(self.output.split(b"\n")[0])["url"])

    def errReceived(self, data: bytes) -> None:
        self.errors += data

    def processEnded(self, reason: Any) -> None:
        if not self.ready.called:
            self.ready.errback(RuntimeError(f"devnet did not start: {self.errors.decode()}"))
        self.ended.callback(None)

    async def kill(self) -> None:
        if not self.ended.called:
            self.transport.signalProcess(signal.SIGKILL)
        await self.ended


def free_port() -> int:
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        port: int = s.getsockname()[1]
        return port


async def until(what: str, condition: Callable[[], bool]) -> None:
    """Wait (polling the reactor) until ``condition()``; fail after ``BOUND`` seconds."""
    for _ in range(int(BOUND / 0.05)):
        if condition():
            return
        await deferLater(reactor, 0.05)
    raise AssertionError(f"not within {BOUND:g} s: {what}")


def solve(template: BlockTemplate) -> tuple[bytes, Share]:
    """What a miner does with a job: a block on ``template`` meeting its target."""
    script = bytes.fromhex("0014") + bytes(range(20))
    coinbase = coinbase_for(
        template.height, template.coinbase_value, template.default_witness_commitment, script
    )
    txs = [coinbase, *(Transaction.parse(tx.data) for tx in template.transactions)]
    header = BlockHeader(
        template.version,
        template.prev_hash,
        merkle_root([tx.txid() for tx in txs]),
        template.curtime,
        template.bits,
        0,
    )
    block = Block(grind(header, template.target), tuple(txs))
    share = Share(
        worker=f"{POOL}.drill",
        address=POOL,
        difficulty=Fraction(1),
        hash=bytes(32),
        job_id="drill",
        height=template.height,
        time=float(template.curtime),
        is_block=True,
        header=block.header.serialize(),
        coinbase=coinbase.serialize(),
    )
    return block.serialize(), share


@pytest_twisted.ensureDeferred
async def test_outage_degrades_health_and_recovery_sends_the_next_template_at_once(
    tmp_path: Path,
) -> None:
    port = free_port()
    daemon = Devnet(tmp_path, port)
    url = await daemon.ready
    client = BitcoindClient([RpcEndpoint(url=url)], clock=reactor, timeout=5.0)
    source = TemplateSource(
        client,
        clock=reactor,
        poll_interval=60.0,
        refresh_interval=600.0,
        retry_initial=60.0,
        retry_max=60.0,
    )
    core = PoolCore(get_network("devnet"), POOL, RewardScheme.PPLNS, 100, client, clock=reactor)
    health = NodeHealth(reactor, template_max_age=300.0)
    follow_the_chain(client, source, core)
    watch_the_chain(health, source, core)
    templates: list[BlockTemplate] = []
    source.subscribe(templates.append)
    source.subscribe(health.on_template)
    try:
        await client.wait_until_ready("devnet")
        source.startService()
        await until("a first template", lambda: bool(templates))
        assert health.report()["status"] == OK
        old = templates[-1]

        await daemon.kill()
        await until("the chain check degraded", lambda: health.report()["status"] != OK)
        chain = health.report()["checks"]["chain"]
        assert chain["status"] == DEGRADED
        assert chain["failing"] == ["templates"]
        assert "getting a block template has failed" in chain["reason"]

        daemon = Devnet(tmp_path, port)
        assert await daemon.ready == url
        # The miner was still on the old job and finds a block on it.
        block, share = solve(old)
        first = await core.block_found(block, share)
        assert first == SubmitResult(SubmitOutcome.ACCEPTED)
        await until("the next template", lambda: templates[-1].height == old.height + 1)
        assert health.report()["status"] == OK

        # The miner's next block is on the new job: the next height, accepted.
        block, share = solve(templates[-1])
        second = await core.block_found(block, share)
        assert second == SubmitResult(SubmitOutcome.ACCEPTED)
        assert await client.get_block_count() == old.height + 1
        assert share.height == old.height + 1
        heights = [t.height for t in templates]
        assert heights == [old.height, old.height + 1, old.height + 2]  # each tip sent once
        assert core.stats.blocks_accepted == 2 and core.stats.blocks_rejected == 0
    finally:
        await source.stopService()
        await client.close()
        await daemon.kill()

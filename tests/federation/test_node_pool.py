"""The pool core with the federation: settlement coinbases per template, federation shares
from miners' shares (verified by a peer node), found blocks gossiped at once."""

from __future__ import annotations

from fractions import Fraction

import pytest_twisted
from twisted.internet.task import Clock

from otedama.chain.address import address_to_script
from otedama.chain.coinbase import node_commitments
from otedama.chain.hashing import sha256d
from otedama.chain.merkle import root_from_branch
from otedama.chain.params import COIN
from otedama.chain.serialize import BlockHeader, Transaction
from otedama.federation.identity import Identity
from otedama.federation.node import ClockedReputation, FederationNode
from otedama.federation.records import RecordBook
from otedama.federation.reputation import Reputation
from otedama.federation.window import FederationWindow, WindowEntry
from otedama.pool.core import SETTLEMENT_LAG, PoolCore
from otedama.pool.ports import RewardScheme
from otedama.stratum.jobs import Job, JobManager
from otedama.stratum.share import Share
from tests.federation.test_node import NOW, PEER_SCRIPT, Published, know, template_on
from tests.pool.support import NETWORK, POOL, ScriptedSubmitter
from tests.pool.test_core import ACCEPTED

POOL_SCRIPT = address_to_script(POOL, NETWORK)
PREV = sha256d(b"the tip")


def federated(clock: Clock, window: FederationWindow | None = None) -> FederationNode:
    node = FederationNode(
        Identity.generate("pool"),
        POOL_SCRIPT,
        window if window is not None else FederationWindow(7200),
        ClockedReputation(Reputation(), clock),
        clock,
    )
    node.publisher = Published()
    return node


def stack(window: FederationWindow | None = None) -> tuple[PoolCore, FederationNode, JobManager]:
    clock = Clock()
    clock.advance(NOW)
    node = federated(clock, window)
    core = PoolCore(
        NETWORK,
        POOL,
        RewardScheme.PPLNS,
        100,
        ScriptedSubmitter(ACCEPTED),
        None,
        clock=clock,
        federation=node,
    )
    jobs = JobManager(core.coinbase_outputs, clock=clock)
    return core, node, jobs


def mine(job: Job, clock: Clock, *, is_block: bool = False) -> Share:
    """A miner's share on ``job`` (devnet target: one hash in two meets it)."""
    coinbase = job.coinb1 + bytes(12) + job.coinb2
    root = root_from_branch(sha256d(coinbase), job.branch)
    for nonce in range(1000):
        header = BlockHeader(job.version, job.prev_hash, root, job.ntime, job.bits, nonce)
        raw = header.serialize()
        if int.from_bytes(sha256d(raw)[::-1], "big") <= job.network_target:
            break
    return Share(
        worker=f"{POOL}.rig",
        address=POOL,
        difficulty=Fraction(1),
        hash=sha256d(raw),
        job_id=job.job_id,
        height=job.height,
        time=clock.seconds(),
        is_block=is_block,
        header=raw,
        coinbase=coinbase,
        merkle_branch=job.branch,
    )


def test_each_template_pays_the_window_and_commits_to_this_node() -> None:
    window = FederationWindow(7200)
    window.add(WindowEntry(sha256d(b"a"), b"\x01" * 20, POOL_SCRIPT, 3 << 40, NOW - 60), NOW)
    window.add(WindowEntry(sha256d(b"b"), b"\x02" * 20, PEER_SCRIPT, 1 << 40, NOW - 60), NOW)
    core, node, jobs = stack(window)
    template = template_on(PREV, 101, 40 * COIN)
    node.on_template(template)
    job = jobs.on_template(template)
    outputs = Transaction.parse(job.coinb1 + bytes(12) + job.coinb2).outputs
    assert [(o.script_pubkey, o.value) for o in outputs[:2]] == [
        (POOL_SCRIPT, 30 * COIN),
        (PEER_SCRIPT, 10 * COIN),
    ]
    assert node_commitments(outputs) == [node.identity.node_id]
    assert core.template_time(job.coinb1 + bytes(12) + job.coinb2) == NOW - SETTLEMENT_LAG


def test_a_share_meeting_the_federation_target_is_gossiped_and_a_peer_accepts_it() -> None:
    core, node, jobs = stack()
    template = template_on(PREV, 101)
    node.on_template(template)
    job = jobs.on_template(template)
    clock = node.clock
    assert isinstance(clock, Clock)
    clock.advance(3)
    share = mine(job, clock)
    core.share_accepted(share)
    published = node.publisher.shares  # type: ignore[union-attr]
    assert core.stats.fed_shares == 1 and len(published) == 1
    assert published[0]["template_time"] == NOW - SETTLEMENT_LAG
    assert len(node.window) == 1
    # A peer on the same tip, with the same (empty) window, verifies and accepts it.
    peer = federated(clock)
    peer.book = RecordBook("regtest", peer.identity.node_id)
    know(peer, node.identity, POOL_SCRIPT)
    peer.on_template(template)
    assert peer.on_fed_share(node.identity.public_key, published[0])
    assert peer.window.at(NOW + 3).node(node.identity.node_id).shares == 1


def test_a_share_on_a_coinbase_of_no_recent_template_is_not_gossiped() -> None:
    core, node, jobs = stack()
    template = template_on(PREV, 101)
    node.on_template(template)
    job = jobs.on_template(template)
    clock = node.clock
    assert isinstance(clock, Clock)
    clock.advance(400)  # the template time is now too old for receivers
    core.share_accepted(mine(job, clock))
    assert core.stats.fed_shares == 0 and core.stats.fed_shares_skipped == 1
    assert node.publisher.shares == []  # type: ignore[union-attr]


@pytest_twisted.ensureDeferred
async def test_a_found_block_is_gossiped_before_submitblock_answers() -> None:
    core, node, jobs = stack()
    template = template_on(PREV, 101)
    node.on_template(template)
    job = jobs.on_template(template)
    clock = node.clock
    assert isinstance(clock, Clock)
    share = mine(job, clock, is_block=True)
    submitted = core.block_found(b"block", share)
    assert len(node.publisher.blocks) == 1  # type: ignore[union-attr]
    clock.advance(0)
    assert await submitted == ACCEPTED


def test_without_the_federation_the_coinbase_pays_the_pool_wallet_alone() -> None:
    clock = Clock()
    core = PoolCore(
        NETWORK, POOL, RewardScheme.PPLNS, 100, ScriptedSubmitter(ACCEPTED), None, clock=clock
    )
    outputs = core.coinbase_outputs(template_on(PREV, 101, 7 * COIN))
    assert [(o.script_pubkey, o.value) for o in outputs] == [(POOL_SCRIPT, 7 * COIN)]
    assert node_commitments(outputs) == []

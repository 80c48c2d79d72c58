"""End to end: a real miner's shares and block reach the ledger's rows in SQLite.

The built-in CPU miner (one worker process) connects over TCP on 127.0.0.1 to the
Stratum server, whose accepted shares and block candidate go to the pool core, through
its ledger adapter (``LedgerLink``), into a migrated SQLite ledger: ``shares`` rows, a
pending ``blocks`` row, and the journal's credits. Only the chain's ``submitblock`` is a
double here (it answers "accepted"); the chain itself is tested elsewhere.
"""

from __future__ import annotations

from fractions import Fraction
from pathlib import Path

import pytest
import pytest_twisted
from sqlalchemy import func, select
from twisted.internet.defer import Deferred
from twisted.internet.endpoints import TCP4ClientEndpoint, TCP4ServerEndpoint
from twisted.internet.task import deferLater

from otedama.chain.target import difficulty_to_target, target_to_bits
from otedama.chain.template import BlockTemplate
from otedama.ledger import db
from otedama.ledger.blocks import RewardPolicy
from otedama.ledger.store import LedgerStore
from otedama.ledger.tables import CREDIT, FEE, PENDING, blocks, journal, shares
from otedama.miner.service import CpuMinerService
from otedama.pool.core import LedgerLink, PoolCore
from otedama.pool.ports import RewardScheme, SubmitOutcome, SubmitResult
from otedama.stratum.jobs import JobManager
from otedama.stratum.protocol import StratumFactory
from otedama.stratum.settings import StratumSettings
from otedama.stratum.share import Share
from tests.pool.support import MINER, NETWORK, POOL, ScriptedSubmitter

#: About 430,000 hashes a block and 43,000 a share: a block within seconds on one worker.
CHAIN_DIFFICULTY = Fraction(1, 10_000)
SHARE_DIFFICULTY = Fraction(1, 100_000)
REWARD = 50_0000_0000
FEE_BASIS_POINTS = 200


def template(now: int) -> BlockTemplate:
    bits = target_to_bits(difficulty_to_target(CHAIN_DIFFICULTY))
    return BlockTemplate.from_rpc(
        {
            "version": 0x20000000,
            "previousblockhash": "11" * 32,
            "height": 101,
            "bits": f"{bits:08x}",
            "curtime": now,
            "mintime": now - 600,
            "coinbasevalue": REWARD,
            "transactions": [],
            "rules": ["segwit"],
        }
    )


@pytest.mark.timeout(60)
@pytest_twisted.ensureDeferred
async def test_a_tcp_miners_shares_and_block_become_ledger_rows_in_sqlite(tmp_path: Path) -> None:
    from twisted.internet import reactor

    url = f"sqlite:///{tmp_path / 'ledger.sqlite'}"
    engine = db.make_engine(url, pool_size=1)
    with engine.begin() as connection:
        db.upgrade(connection)
    engine.dispose()
    store = LedgerStore(reactor, url, 1, spool_dir=tmp_path / "spool")  # type: ignore[arg-type]
    store.start()
    policy = RewardPolicy(RewardScheme.PPLNS, FEE_BASIS_POINTS, POOL, 3600.0)
    accepted = SubmitResult(SubmitOutcome.ACCEPTED)
    core = PoolCore(
        NETWORK,
        POOL,
        RewardScheme.PPLNS,
        FEE_BASIS_POINTS,
        ScriptedSubmitter(accepted),
        LedgerLink(store, policy),
        clock=reactor,
    )
    block_found: Deferred[Share] = Deferred()
    core.on_block(lambda share, result: block_found.called or block_found.callback(share))

    jobs = JobManager(core.coinbase_outputs, clock=reactor)
    settings = StratumSettings(
        network=NETWORK,
        start_difficulty=SHARE_DIFFICULTY,
        min_difficulty=SHARE_DIFFICULTY,
        vardiff=False,
    )
    factory = StratumFactory(jobs, core, settings, reactor)
    port = await TCP4ServerEndpoint(reactor, 0, interface="127.0.0.1").listen(factory)
    jobs.startService()
    jobs.on_template(template(int(reactor.seconds())))
    miner = CpuMinerService(
        TCP4ClientEndpoint(reactor, "127.0.0.1", port.getHost().port),
        f"{MINER}.e2e",
        1,
        reactor,
    )
    miner.startService()
    try:
        block = await block_found
        # The pool credits the block before its reply reaches the miner: wait, bounded, for the
        # miner to read that reply so its own count is not racing the stop.
        for _ in range(200):
            if miner.stats.accepted:
                break
            await deferLater(reactor, 0.05, lambda: None)
    finally:
        await miner.stopService()
        await port.stopListening()
        jobs.stopService()
        await store.flush_shares()
        share_rows = await store.run(
            lambda c: c.execute(select(shares.c.address, shares.c.worker, shares.c.height)).all()
        )
        block_rows = await store.run(
            lambda c: c.execute(select(blocks.c.hash, blocks.c.status, blocks.c.reward)).all()
        )
        credits = await store.run(
            lambda c: c.execute(
                select(journal.c.address, journal.c.kind, func.sum(journal.c.amount)).group_by(
                    journal.c.address, journal.c.kind
                )
            ).all()
        )
        await store.stop()

    assert len(share_rows) == core.stats.shares >= 1
    assert set(share_rows) == {(MINER, "e2e", 101)}
    # The miner may find a second block before it stops: each is its own pending row.
    found = len(block_rows)
    assert (block.block_hash[::-1].hex(), PENDING, REWARD) in [tuple(row) for row in block_rows]
    assert {(status, reward) for _, status, reward in block_rows} == {(PENDING, REWARD)}
    fee = REWARD * FEE_BASIS_POINTS // 10_000
    assert sorted(tuple(row) for row in credits) == sorted(
        [(MINER, CREDIT, (REWARD - fee) * found), (POOL, FEE, fee * found)]
    )
    assert block.worker == f"{MINER}.e2e"
    assert miner.stats.accepted >= 1 and miner.stats.rejected == 0

"""Federation income in the ledger: what the chain paid this node, whoever found the
block, read from the node's own daemon and credited to its miners; and the window and
reputation kept across restarts."""

from __future__ import annotations

from collections.abc import AsyncIterator
from pathlib import Path

import pytest_twisted
from sqlalchemy import select
from twisted.internet import task

from otedama.chain.coinbase import assemble_block, build_coinbase, node_commitment_output
from otedama.chain.hashing import sha256d
from otedama.chain.params import COIN
from otedama.chain.serialize import BlockHeader, TxOut
from otedama.ledger import db
from otedama.ledger.blocks import BlockTracker, RewardPolicy
from otedama.ledger.income import FederationState, IncomeWatcher
from otedama.ledger.rewards import RewardScheme
from otedama.ledger.shares import ShareRecord
from otedama.ledger.stats import balances
from otedama.ledger.store import LedgerStore
from otedama.ledger.tables import PENDING, blocks, federation_income

OURS = b"\x00\x14" + b"\x0a" * 20
THEIRS = b"\x00\x14" + b"\x0b" * 20
MINER = "bcrt1qqxlgwddcf0uhsmr9uqesvn3efp00p99t0mcyjs"
FEE_ADDRESS = "fee-address"
POLICY = RewardPolicy(RewardScheme.PPLNS, 100, FEE_ADDRESS, 3600.0)


class Chain:
    """A best chain of real serialized blocks, answering like bitcoind."""

    def __init__(self) -> None:
        self.blocks: list[tuple[str, bytes]] = []
        self.gone: set[str] = set()

    def add(self, outputs: list[TxOut], label: bytes = b"") -> str:
        height = len(self.blocks)
        coinbase = build_coinbase(height, outputs, 8).assemble(bytes(8))
        header = BlockHeader(
            0x20000000, sha256d(b"%d" % height + label), sha256d(coinbase), 0, 0x207FFFFF, 0
        )
        raw = assemble_block(header, coinbase, [], witness=False)
        block_hash = sha256d(header.serialize())[::-1].hex()
        self.blocks.append((block_hash, raw))
        return block_hash

    def replace(self, height: int, outputs: list[TxOut]) -> str:
        self.gone.update(h for h, _ in self.blocks[height:])
        del self.blocks[height:]
        return self.add(outputs, b"other branch")

    async def get_block_count(self) -> int:
        return len(self.blocks) - 1

    async def get_block_hash(self, height: int) -> str:
        return self.blocks[height][0]

    async def get_block_header(self, hash_hex: str) -> dict[str, int]:
        hashes = [h for h, _ in self.blocks]
        if hash_hex in hashes:
            return {"confirmations": len(hashes) - hashes.index(hash_hex)}
        if hash_hex in self.gone:
            return {"confirmations": -1}
        raise LookupError(hash_hex)

    async def get_block(self, hash_hex: str, verbosity: int = 1) -> str:
        assert verbosity == 0
        return next(raw for h, raw in self.blocks if h == hash_hex).hex()


@pytest_twisted.async_yield_fixture
async def store(tmp_path: Path) -> AsyncIterator[LedgerStore]:
    from twisted.internet import reactor

    url = f"sqlite:///{tmp_path / 'ledger.sqlite'}"
    engine = db.make_engine(url, pool_size=1)
    with engine.begin() as connection:
        db.upgrade(connection)
    engine.dispose()
    ledger = LedgerStore(
        reactor,  # type: ignore[arg-type]
        url,
        pool_size=1,
        spool_dir=tmp_path / "spool",
        clock=task.Clock(),
    )
    ledger.start()
    yield ledger
    await ledger.stop()


def settlement(ours: int, theirs: int, finder: bytes = b"\x0b" * 20) -> list[TxOut]:
    return [TxOut(theirs, THEIRS), TxOut(ours, OURS), node_commitment_output(finder)]


@pytest_twisted.ensureDeferred
async def test_income_from_a_peers_block_is_recorded_and_credited_to_our_miners(
    store: LedgerStore,
) -> None:
    clock = task.Clock()
    clock.advance(10_000)
    store.add_share(ShareRecord(9_990.0, MINER, "rig", 1.0, "1", 1, None))
    await store.flush_shares()
    chain = Chain()
    chain.add([TxOut(50 * COIN, THEIRS)])  # height 0 pays us nothing
    paying = chain.add(settlement(ours=20 * COIN, theirs=30 * COIN))
    watcher = IncomeWatcher(store, chain, clock, OURS, lambda: POLICY)
    found = await watcher.scan()
    assert [(i.height, i.hash, i.amount, i.finder_node_id) for i in found] == [
        (1, paying, 20 * COIN, "0b" * 20)
    ]
    block = await store.get_block(paying)
    assert block is not None and block.status == PENDING and block.reward == 20 * COIN
    owed = await store.run(balances)
    assert sum(b.immature for b in owed.values()) == 20 * COIN  # miners + fee = what we got
    assert owed[FEE_ADDRESS].immature == 20 * COIN // 100
    # A second pass reads nothing new and records nothing twice.
    assert await watcher.scan() == []
    rows = await store.run(lambda c: c.execute(select(federation_income)).all())
    assert len(rows) == 1


@pytest_twisted.ensureDeferred
async def test_a_block_replaced_by_a_reorganisation_is_read_again(store: LedgerStore) -> None:
    clock = task.Clock()
    chain = Chain()
    chain.add([TxOut(50 * COIN, THEIRS)])
    first = chain.add(settlement(ours=1 * COIN, theirs=49 * COIN))
    watcher = IncomeWatcher(store, chain, clock, OURS, lambda: POLICY)
    await watcher.scan()
    second = chain.replace(1, settlement(ours=2 * COIN, theirs=48 * COIN))
    found = await watcher.scan()
    assert [(i.hash, i.amount) for i in found] == [(second, 2 * COIN)]
    hashes = await store.run(lambda c: c.execute(select(blocks.c.hash)).scalars().all())
    assert set(hashes) == {first, second}  # the block tracker orphans the first


@pytest_twisted.ensureDeferred
async def test_own_block_recorded_by_the_pool_core_gets_only_its_income_row(
    store: LedgerStore,
) -> None:
    from otedama.ledger.blocks import FoundBlock

    clock = task.Clock()
    chain = Chain()
    chain.add([TxOut(50 * COIN, THEIRS)])
    own = chain.add(settlement(ours=40 * COIN, theirs=10 * COIN, finder=b"\x0a" * 20))
    await store.record_block(FoundBlock(1, own, MINER, "rig", 40 * COIN, 5.0), POLICY)
    await IncomeWatcher(store, chain, clock, OURS, lambda: POLICY).scan()
    block = await store.get_block(own)
    assert block is not None and block.finder_address == MINER
    rows = await store.run(lambda c: c.execute(select(federation_income)).all())
    assert [(r.hash, r.amount, r.block_id) for r in rows] == [(own, 40 * COIN, block.id)]


@pytest_twisted.ensureDeferred
async def test_window_and_reputation_survive_a_restart(store: LedgerStore) -> None:
    clock = task.Clock()
    clock.advance(100_000)
    pending = [(sha256d(b"s1"), b"\x01" * 20, THEIRS, 1 << 200, 99_990)]
    peers = [(b"\x07" * 32, 1.5, 20.0, 99_999.0)]
    restored: list[tuple[object, object]] = []

    def drain() -> list[tuple[bytes, bytes, bytes, int, int]]:
        taken = list(pending)
        pending.clear()
        return taken

    state = FederationState(
        store,
        clock,
        drain_window=drain,
        reputation=lambda: peers,
        restore=lambda w, p: restored.append((w, p)),
        retain=7_200,
    )
    await state.save()
    pending.append((sha256d(b"old"), b"\x02" * 20, OURS, 5, 1_000))  # older than retained
    await state.save()
    await state.load()
    assert restored == [([(sha256d(b"s1"), b"\x01" * 20, THEIRS, 1 << 200, 99_990)], peers)]


@pytest_twisted.ensureDeferred
async def test_income_matures_like_an_own_block_and_an_orphan_is_reversed(
    store: LedgerStore,
) -> None:
    clock = task.Clock()
    clock.advance(10_000)
    store.add_share(ShareRecord(9_990.0, MINER, "rig", 1.0, "1", 1, None))
    await store.flush_shares()
    chain = Chain()
    chain.add([TxOut(50 * COIN, THEIRS)])
    matures = chain.add(settlement(ours=10 * COIN, theirs=40 * COIN))
    orphan = chain.add(settlement(ours=7 * COIN, theirs=43 * COIN))
    watcher = IncomeWatcher(store, chain, clock, OURS, lambda: POLICY)
    await watcher.scan()
    chain.replace(2, [TxOut(50 * COIN, THEIRS)])
    for _ in range(3):
        chain.add([TxOut(50 * COIN, THEIRS)])
    tracker = BlockTracker(store, chain, clock, maturity=3)
    report = await tracker.check()
    assert report.confirmed == (matures,) and report.orphaned == (orphan,)
    owed = await store.run(balances)
    assert sum(b.spendable for b in owed.values()) == 10 * COIN
    assert sum(b.immature for b in owed.values()) == 0

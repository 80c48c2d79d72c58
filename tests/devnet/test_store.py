"""The devnet's data directory: append-only block file, atomic JSON documents, lock."""

from __future__ import annotations

import os
import threading
from collections.abc import Callable
from fractions import Fraction
from pathlib import Path

import pytest
import pytest_twisted
from twisted.internet import reactor
from twisted.internet.defer import Deferred
from twisted.python.failure import Failure

from otedama.chain.address import address_to_script
from otedama.devnet.service import start_devnet
from otedama.devnet.store import DevnetStore, StoreError


def opened(path: Path) -> DevnetStore:
    store = DevnetStore(path)
    store.open()
    return store


def test_blocks_come_back_in_the_order_they_were_appended(tmp_path: Path) -> None:
    store = opened(tmp_path)
    for raw in (b"one", b"two" * 100, b"three"):
        store.append_block(raw)
    store.close()
    assert list(opened(tmp_path).read_blocks()) == [b"one", b"two" * 100, b"three"]


def test_a_record_torn_by_a_crash_is_cut_off_and_appending_continues(tmp_path: Path) -> None:
    store = opened(tmp_path)
    store.append_block(b"kept")
    store.append_block(b"torn block")
    store.close()
    size = store.blocks_path.stat().st_size
    with open(store.blocks_path, "r+b") as f:
        f.truncate(size - 3)
    store = opened(tmp_path)
    assert list(store.read_blocks()) == [b"kept"]
    store.append_block(b"next")
    store.close()
    assert list(opened(tmp_path).read_blocks()) == [b"kept", b"next"]


def test_damage_before_the_end_stops_the_start_with_the_offset(tmp_path: Path) -> None:
    store = opened(tmp_path)
    store.append_block(b"first")
    store.append_block(b"second")
    store.close()
    data = bytearray(store.blocks_path.read_bytes())
    data[12] ^= 0xFF  # first byte of the first block
    store.blocks_path.write_bytes(bytes(data))
    with pytest.raises(StoreError, match=r"damaged at offset 0 \(checksum mismatch"):
        list(opened(tmp_path).read_blocks())


def test_a_second_process_cannot_use_the_same_data_dir(tmp_path: Path) -> None:
    first = opened(tmp_path)
    with pytest.raises(StoreError, match="in use by another devnet"):
        opened(tmp_path)
    first.close()
    opened(tmp_path).close()


def test_json_documents_are_replaced_whole(tmp_path: Path) -> None:
    store = opened(tmp_path)
    assert store.read_json("state.json") is None
    store.write_json("state.json", {"invalidated": ["aa"]})
    store.write_json("state.json", {"invalidated": ["aa", "bb"]})
    assert store.read_json("state.json") == {"invalidated": ["aa", "bb"]}
    assert not (tmp_path / "state.json.tmp").exists()
    (tmp_path / "wallet.json").write_text("{not json")
    with pytest.raises(StoreError, match=r"wallet\.json is not valid JSON"):
        store.read_json("wallet.json")


class HeldWrites:
    """A ``run_in_thread`` that keeps the work until the test runs it, like a slow disk."""

    def __init__(self) -> None:
        self.jobs: list[tuple[Callable[[], None], Deferred[None]]] = []

    def __call__(self, work: Callable[[], None]) -> Deferred[None]:
        done: Deferred[None] = Deferred()
        self.jobs.append((work, done))
        return done

    def finish_one(self) -> None:
        work, done = self.jobs.pop(0)
        work()
        done.callback(None)


def test_an_append_waits_for_its_write_and_never_writes_on_the_calling_thread(
    tmp_path: Path,
) -> None:
    writes = HeldWrites()
    store = DevnetStore(tmp_path, writes)
    store.open()
    durable = store.append_block(b"block")
    assert not durable.called
    assert not store.blocks_path.exists()  # nothing was written by the caller
    writes.finish_one()
    assert durable.called
    store.close()
    assert list(opened(tmp_path).read_blocks()) == [b"block"]


def test_blocks_that_arrive_during_a_write_share_the_next_write_in_order(
    tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    fsyncs: list[int] = []
    real_fsync = os.fsync
    monkeypatch.setattr(os, "fsync", lambda fd: fsyncs.append(fd) or real_fsync(fd))
    writes = HeldWrites()
    store = DevnetStore(tmp_path, writes)
    store.open()
    first = store.append_block(b"one")
    later = [store.append_block(raw) for raw in (b"two", b"three", b"four")]
    assert len(writes.jobs) == 1  # one write under way, the rest wait for it
    writes.finish_one()
    assert first.called and not any(d.called for d in later)
    assert len(writes.jobs) == 1
    writes.finish_one()
    assert all(d.called for d in later)
    assert len(fsyncs) == 2
    idle = store.written()
    assert idle.called
    store.close()
    assert list(opened(tmp_path).read_blocks()) == [b"one", b"two", b"three", b"four"]


def test_close_during_a_write_closes_once_the_write_is_done(tmp_path: Path) -> None:
    writes = HeldWrites()
    store = DevnetStore(tmp_path, writes)
    store.open()
    store.append_block(b"block")
    idle = store.written()
    store.close()
    assert not idle.called
    writes.finish_one()
    assert idle.called
    opened(tmp_path).close()  # the lock was released


def test_a_failed_write_fails_its_blocks(tmp_path: Path) -> None:
    writes = HeldWrites()
    store = DevnetStore(tmp_path, writes)
    store.open()
    durable = store.append_block(b"block")
    _, done = writes.jobs.pop(0)
    done.errback(OSError(28, "No space left on device"))
    failures: list[Failure] = []
    durable.addErrback(failures.append)
    assert failures and failures[0].check(OSError)
    store.close()


@pytest_twisted.ensureDeferred
async def test_the_running_devnet_fsyncs_blocks_off_the_reactor_thread(
    tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    threads: list[int] = []
    real_fsync = os.fsync
    monkeypatch.setattr(
        os, "fsync", lambda fd: threads.append(threading.get_ident()) or real_fsync(fd)
    )
    handle = await start_devnet(reactor, "tcp:0:interface=127.0.0.1", Fraction(1, 10**9), tmp_path)
    try:
        script = address_to_script(handle.node.wallet.default_address, handle.chain.params)
        threads.clear()  # the wallet and state documents are written at start
        assert len(await handle.node.generate(3, script)) == 3
    finally:
        await handle.stop()
    assert threads
    assert threading.main_thread().ident not in threads

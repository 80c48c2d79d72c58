"""How the miner splits a job among its worker processes (no processes spawned)."""

from __future__ import annotations

import json
from typing import Any

from otedama.chain.target import difficulty_to_target
from otedama.miner.client import NewWork, Retarget
from otedama.miner.service import HashingPool
from otedama.miner.work import MinerJob
from tests.conftest import notify_params

from .test_work import SUMMARY

JOB = MinerJob.from_notify(notify_params(SUMMARY["jobs"]["6b05021400000000"]))


class _Pipe:
    def __init__(self) -> None:
        self.lines: list[dict[str, Any]] = []

    def write(self, data: bytes) -> None:
        self.lines.extend(json.loads(line) for line in data.splitlines())


class _Reactor:
    """Records spawned workers and connects each to an in-memory stdin."""

    def __init__(self) -> None:
        self.spawned: list[list[str]] = []

    def spawnProcess(self, proto: Any, executable: str, args: list[str], env: Any) -> None:
        self.spawned.append(args)
        proto.makeConnection(_Pipe())


def _pool(threads: int) -> tuple[HashingPool, _Reactor]:
    reactor = _Reactor()
    pool = HashingPool(reactor, threads, lambda share: None, lambda count: None)
    pool.start()
    return pool, reactor


def _new_work(extranonce1: bytes = b"\xaa\xbb\xcc\xdd", clean: bool = True) -> NewWork:
    return NewWork(JOB, extranonce1, 2, 0x1FFFE000, difficulty_to_target(1), clean)


def _works(pool: HashingPool) -> list[dict[str, Any]]:
    return [w.transport.lines[-1]["work"] for w in pool.workers]


def test_each_worker_gets_a_disjoint_extranonce2_range_of_the_job() -> None:
    pool, reactor = _pool(3)
    assert [args[1:] for args in reactor.spawned] == [["-m", "otedama.miner.worker"]] * 3
    pool.dispatch(_new_work())
    works = _works(pool)
    assert [(w["extranonce2_start"], w["extranonce2_count"]) for w in works] == [
        (0, 21845),
        (21845, 21845),
        (43690, 21845),
    ]
    assert {w["job_id"] for w in works} == {JOB.job_id}
    assert len({w["work_id"] for w in works}) == 3
    assert all(w["version_mask"] == 0x1FFFE000 for w in works)


def test_the_same_job_handed_out_again_starts_on_fresh_extranonce2_values() -> None:
    pool, _ = _pool(2)
    pool.dispatch(_new_work())
    pool.idle()  # a disconnect
    pool.dispatch(_new_work())  # the pool resumed the same extranonce1 and job
    assert [w["extranonce2_start"] for w in _works(pool)] == [1, 32769]
    pool.dispatch(_new_work(extranonce1=b"\x00\x00\x00\x01"))
    assert [w["extranonce2_start"] for w in _works(pool)] == [0, 32768]


def test_retarget_reaches_each_worker_for_its_current_work_only() -> None:
    pool, _ = _pool(2)
    pool.dispatch(_new_work())
    ids = [w["work_id"] for w in _works(pool)]
    pool.retarget(Retarget("some-other-job", 5))
    pool.retarget(Retarget(JOB.job_id, 255))
    sent = [w.transport.lines[-1] for w in pool.workers]
    assert sent == [{"retarget": {"work_id": i, "target": "ff"}} for i in ids]


def test_idle_stops_every_worker_and_forgets_the_work() -> None:
    pool, _ = _pool(2)
    pool.dispatch(_new_work())
    work_id = _works(pool)[0]["work_id"]
    assert pool.extranonce1_of(work_id) == b"\xaa\xbb\xcc\xdd"
    pool.idle()
    assert [w.transport.lines[-1] for w in pool.workers] == [{"idle": True}] * 2
    assert pool.extranonce1_of(work_id) is None

"""The hashing loop of a worker process: scanning, switching work, its command lines."""

from __future__ import annotations

import io
import json
from typing import Any

from otedama.chain.hashing import sha256d
from otedama.miner.work import MinerJob, Work, header_prefix
from otedama.miner.worker import HashLoop, WorkerState, read_commands
from tests.conftest import notify_params

from .test_work import SUMMARY

JOB = MinerJob.from_notify(notify_params(SUMMARY["jobs"]["6b05021400000000"]))


def _work(work_id: int = 1, target: int = 1 << 255, **changes: Any) -> Work:
    fields: dict[str, Any] = {
        "work_id": work_id,
        "job": JOB,
        "extranonce1": bytes.fromhex("1502056b"),
        "extranonce2_size": 8,
        "extranonce2_start": 7,
        "extranonce2_count": 2,
        "version_mask": 0,
        "target": target,
        "nonce_limit": 64,
    }
    fields.update(changes)
    return Work(**fields)


def _run(state: WorkerState, chunk: int = 16) -> list[dict[str, Any]]:
    out: list[dict[str, Any]] = []
    HashLoop(state, out.append, lambda: 0.0, chunk=chunk).run()
    return out


def test_a_work_is_scanned_to_its_end_and_every_share_is_a_real_hash_under_target() -> None:
    state = WorkerState()
    work = _work()
    state.set_work(work)
    out: list[dict[str, Any]] = []

    def emit(message: dict[str, Any]) -> None:
        out.append(message)
        if "exhausted" in message:
            state.close()

    HashLoop(state, emit, lambda: 0.0, chunk=16).run()
    shares = [m["share"] for m in out if "share" in m]
    assert sum(m["hashes"] for m in out if "hashes" in m) == 128
    assert {"exhausted": 1} in out
    assert 40 < len(shares) < 90  # about half of 128 hashes are under 2**255
    for share in shares:
        prefix = header_prefix(work, int(share["extranonce2"], 16), share["version"])
        digest = sha256d(prefix + int(share["nonce"], 16).to_bytes(4, "little"))
        assert digest[::-1].hex() == share["hash"]
        assert int.from_bytes(digest, "little") <= work.target
        assert share["ntime"] == "6b050214" and share["job_id"] == JOB.job_id
    assert {s["extranonce2"] for s in shares} == {"0000000000000007", "0000000000000008"}


def test_new_work_replaces_the_current_one_between_chunks() -> None:
    state = WorkerState()
    state.set_work(_work(1, nonce_limit=1 << 32))
    out: list[dict[str, Any]] = []
    seen_first = False

    def emit(message: dict[str, Any]) -> None:
        nonlocal seen_first
        out.append(message)
        if "share" in message and message["share"]["work_id"] == 1 and not seen_first:
            seen_first = True
            state.set_work(_work(2))
        if "exhausted" in message:
            state.close()

    HashLoop(state, emit, lambda: 0.0, chunk=16).run()
    ids = [m["share"]["work_id"] for m in out if "share" in m]
    first_two = ids.index(2)
    assert set(ids[:first_two]) == {1} and set(ids[first_two:]) == {2}
    assert {"exhausted": 2} in out and {"exhausted": 1} not in out


def test_retarget_changes_the_share_target_of_the_current_work_only() -> None:
    state = WorkerState()
    state.set_work(_work(5))
    state.retarget(4, 1)
    assert state.target == 1 << 255
    state.retarget(5, 1)
    assert state.target == 1
    out: list[dict[str, Any]] = []

    def emit(message: dict[str, Any]) -> None:
        out.append(message)
        if "exhausted" in message:
            state.close()

    HashLoop(state, emit, lambda: 0.0, chunk=16).run()
    assert not [m for m in out if "share" in m]


def test_commands_set_work_retarget_idle_and_end_of_input_closes() -> None:
    work = _work(3)
    lines = (
        work.to_line()
        + b'{"retarget":{"work_id":3,"target":"ff"}}\n'
        + b"\n"
        + b"garbage\n"
        + b'{"what":1}\n'
        + b'{"idle":true}\n'
    )
    state = WorkerState()
    warnings: list[str] = []
    read_commands(io.BytesIO(lines), state, warnings.append)
    _generation, current, closed = state.wait(-1, 0)
    assert current is None and closed
    assert len(warnings) == 2 and "unknown command" in warnings[1]


def test_a_closed_state_ends_the_loop_at_once() -> None:
    state = WorkerState()
    state.close()
    assert _run(state) == []


def test_work_lines_survive_the_json_round_trip_the_worker_reads() -> None:
    work = _work(9, version_mask=0x1FFFE000)
    state = WorkerState()
    read_commands(io.BytesIO(work.to_line()), state, lambda text: None)
    assert state.wait(-1, 0)[1] == work
    assert json.loads(work.to_line())["work"]["target"] == format(1 << 255, "x")

"""Replays of real Stratum traffic (cpuminer and a crafted client against ckpool).

The recorded pool is ckpool-lhr; a conforming server must build the same headers and reach
the same accept/reject verdicts. Where our replies deliberately differ the test says so.
"""

from __future__ import annotations

import json
from fractions import Fraction
from typing import Any

from otedama.stratum.jobs import Job
from otedama.stratum.validator import build_header
from tests.conftest import notify_params

from .conftest import ADDRESS, Miner, Stack, StackMaker, load_json, load_jsonl

CRAFTED = load_json("crafted-summary.json")


def _feed_notify(stack: Stack, line: dict[str, Any], seq: int) -> Job:
    params = json.loads(line["line"])["params"]
    job = Job.from_notify(params, seq=seq)
    stack.jobs.add_job(job)
    return job


def test_every_cpuminer_share_header_is_rebuilt_byte_for_byte() -> None:
    _header, lines = load_jsonl("cpuminer-ckpool.jsonl")
    summary = lines[-1]["summary"]
    jobs = {}
    for entry in lines[:-1]:
        message = json.loads(entry["line"])
        if message.get("method") == "mining.notify":
            jobs[message["params"][0]] = Job.from_notify(message["params"])
    extranonce1 = bytes.fromhex(summary["extranonce1"])
    assert len(summary["shares"]) == 10
    for share in summary["shares"]:
        job = jobs[share["job_id"]]
        built = build_header(
            job,
            extranonce1,
            bytes.fromhex(share["extranonce2"]),
            int(share["ntime"], 16),
            int(share["nonce"], 16),
            job.version,
        )
        assert built.hex() == share["header_hex"]


def test_cpuminer_replay_through_a_session_gets_ckpool_verdicts(make_stack: StackMaker) -> None:
    _header, lines = load_jsonl("cpuminer-ckpool.jsonl")
    summary = lines[-1]["summary"]
    stack = make_stack(template=False, start_difficulty=0.01)
    # The recorded miner resumes the extranonce1 ckpool gave it (a session id we issued).
    stack.server.release_extranonce1(bytes.fromhex(summary["extranonce1"]))
    miner = stack.miner()
    first_ntime = None
    verdicts: list[bool] = []
    seq = 0
    recorded: dict[Any, Any] = {}
    pending_submit: list[int] = []
    for entry in lines[:-1]:
        message = json.loads(entry["line"])
        if message.get("method") == "mining.notify":
            if first_ntime is None:
                first_ntime = int(message["params"][7], 16)
                stack.clock.advance(first_ntime - stack.clock.seconds())
            stack.clock.advance(first_ntime + entry["t"] - stack.clock.seconds())
            seq += 1
            _feed_notify(stack, entry, seq)
            continue
        if entry["dir"] == "pool->miner":
            if "result" in message and pending_submit:
                recorded[pending_submit.pop(0)] = message
            continue
        if first_ntime is not None:
            stack.clock.advance(max(0.0, first_ntime + entry["t"] - stack.clock.seconds()))
        if message["method"] == "mining.subscribe":
            message["params"] = [message["params"][0], summary["extranonce1"]]
        if message["method"] == "mining.submit":
            pending_submit.append(len(verdicts))
            verdicts.append(False)
        miner.send(message["method"], message["params"], message["id"])
        for reply in miner.read():
            if message["method"] == "mining.submit" and reply.get("id") == message["id"]:
                verdicts[-1] = reply["result"] is True
    assert miner.session.extranonce1.hex() == summary["extranonce1"]
    ours = verdicts
    theirs = [recorded[i]["result"] is True for i in range(len(verdicts))]
    assert ours == theirs
    assert sum(ours) == summary["accepted"] == 10
    assert len(stack.sink.shares) == 10
    assert {s.difficulty for s in stack.sink.shares} == {Fraction(1, 100)}
    # Every share also meets regtest's nBits 207fffff, so each is a block candidate; the
    # recorded jobs carry no transactions, so none can be assembled and handed on.
    assert all(s.is_block for s in stack.sink.shares)
    assert stack.sink.blocks == []
    hashes = {share["hash"] for share in summary["shares"]}
    assert {s.hash[::-1].hex() for s in stack.sink.shares} == hashes


def test_every_crafted_submit_header_is_rebuilt_byte_for_byte() -> None:
    jobs = {job_id: Job.from_notify(notify_params(j)) for job_id, j in CRAFTED["jobs"].items()}
    jobs.update(
        {
            job_id: Job.from_notify(notify_params(j))
            for job_id, j in CRAFTED["second_connection"]["jobs"].items()
        }
    )
    for submit in CRAFTED["submits"]:
        job = jobs[submit["job_id_of_work"]]
        params = submit["params"]
        built = build_header(
            job,
            bytes.fromhex(submit["extranonce1"]),
            bytes.fromhex(params[2]),
            int(params[3], 16),
            int(params[4], 16),
            int(submit["header_version_hex"], 16),
        )
        assert built.hex() == submit["header_hex"], submit["case"]


# Where our reply deliberately differs from ckpool's (the verdict, accept or reject, is
# the same everywhere):
DIFFERENT_ERRORS = {
    # Stricter: a short extranonce2 is refused for its length, not hashed zero-padded.
    "extranonce2_wrong_length": [20, "Invalid extranonce2 length", None],
    # A connection that never authorized gets "unauthorized", not "Stale".
    "unauthorized_connection": [24, "Unauthorized worker", None],
}


def test_crafted_replay_reaches_ckpool_verdicts(make_stack: StackMaker) -> None:
    _header, lines = load_jsonl("crafted-ckpool.jsonl")
    stack = make_stack(template=False, start_difficulty=0.01)
    for extranonce1 in (CRAFTED["extranonce1"], CRAFTED["second_connection"]["extranonce1"]):
        stack.server.release_extranonce1(bytes.fromhex(extranonce1))
    resume = {"c1": CRAFTED["extranonce1"], "c2": CRAFTED["second_connection"]["extranonce1"]}
    miners: dict[str, Miner] = {}
    recorded: dict[tuple[str, Any], dict[str, Any]] = {}
    ours: dict[tuple[str, Any], dict[str, Any]] = {}
    base = int(CRAFTED["jobs"]["6b05021400000000"]["ntime"], 16)
    seq = 0
    for entry in lines:
        stack.clock.advance(max(0.0, base + entry["t"] - stack.clock.seconds()))
        message = json.loads(entry["line"])
        conn = entry["conn"]
        if entry["dir"] == "pool->miner":
            if message.get("method") == "mining.notify":
                if message["params"][0] not in {j.job_id for j in _known(stack)}:
                    seq += 1
                    _feed_notify(stack, entry, seq)
            elif message.get("id") is not None:
                recorded[(conn, message["id"])] = message
            continue
        miner = miners.get(conn)
        if miner is None:
            miner = miners[conn] = stack.miner(port=40000 + len(miners))
        if message["method"] == "mining.subscribe":
            message["params"] = [message["params"][0], resume[conn]]
        miner.send(message["method"], message["params"], message["id"])
        for reply in miner.read():
            if reply.get("id") == message["id"]:
                ours[(conn, message["id"])] = reply
    # mining.configure before subscribe: the same reply as ckpool.
    assert ours[("c1", 1)]["result"] == recorded[("c1", 1)]["result"]
    assert ours[("c1", 1)]["result"] == {
        "version-rolling": True,
        "version-rolling.mask": "1fffe000",
    }
    assert miners["c1"].session.version_mask == int(CRAFTED["negotiated_mask"], 16)
    assert miners["c1"].session.extranonce1.hex() == CRAFTED["extranonce1"]
    assert miners["c2"].session.extranonce1.hex() == CRAFTED["second_connection"]["extranonce1"]
    # The subscribe replies carry the same extranonce1 and extranonce2 size.
    assert ours[("c1", 2)]["result"][1:] == recorded[("c1", 2)]["result"][1:]
    assert ours[("c1", 3)]["result"] is True
    # suggest_difficulty: ckpool sent no reply, we answer true (and a set_difficulty).
    assert ours[("c1", 4)]["result"] is True
    assert miners["c1"].session.difficulty == Fraction(str(CRAFTED["difficulty_after_suggest"]))
    # extranonce.subscribe: ckpool refused it; we support mining.set_extranonce.
    assert ours[("c1", 5)]["result"] is True
    for submit in CRAFTED["submits"]:
        key = (submit["connection"], json.loads(submit["submit_line"])["id"])
        reply = ours[key]
        assert (reply["result"] is True) == submit["accepted"], submit["case"]
        expected_error = DIFFERENT_ERRORS.get(submit["case"], submit["reply"]["error"])
        assert reply["error"] == expected_error, submit["case"]
    accepted = [s for s in CRAFTED["submits"] if s["accepted"]]
    assert len(stack.sink.shares) == len(accepted) == 3
    assert [s.hash[::-1].hex() for s in stack.sink.shares] == [s["hash"] for s in accepted]
    assert all(s.worker == ADDRESS + ".crafted" for s in stack.sink.shares)
    assert all(
        s.difficulty == Fraction(str(CRAFTED["difficulty_after_suggest"]))
        for s in stack.sink.shares
    )


def _known(stack: Stack) -> list[Job]:
    return [job for job in (stack.jobs.current,) if job is not None]

"""The miner builds the same headers as a real pool (ckpool vectors) and scans them right."""

from __future__ import annotations

import json
from pathlib import Path
from typing import Any

import pytest

from otedama.chain.hashing import sha256d
from otedama.chain.target import DIFF1_SHA256D, difficulty_to_target
from otedama.miner.work import (
    MinerJob,
    Work,
    WorkError,
    deposit_bits,
    header_prefix,
    iter_header_prefixes,
    split_extranonce2,
    swap_words,
)
from otedama.miner.worker import scan
from tests.conftest import notify_params

VECTORS = Path(__file__).resolve().parents[1] / "vectors"
SUMMARY: dict[str, Any] = json.loads((VECTORS / "stratum" / "crafted-summary.json").read_text())


def _work_for(job: MinerJob, extranonce1: str, mask: int = 0, size: int = 8) -> Work:
    return Work(
        work_id=1,
        job=job,
        extranonce1=bytes.fromhex(extranonce1),
        extranonce2_size=size,
        extranonce2_start=0,
        extranonce2_count=1 << (8 * size),
        version_mask=mask,
        target=DIFF1_SHA256D,
    )


@pytest.mark.parametrize("case", ["valid_1", "valid_2", "valid_version_rolled"])
def test_header_prefix_matches_the_header_ckpool_accepted(case: str) -> None:
    submit = next(s for s in SUMMARY["submits"] if s["case"] == case)
    job = MinerJob.from_notify(notify_params(SUMMARY["jobs"][submit["job_id_of_work"]]))
    work = _work_for(job, submit["extranonce1"], int(SUMMARY["negotiated_mask"], 16))
    params = submit["params"]
    version = int(submit["header_version_hex"], 16)
    prefix = header_prefix(work, int(params[2], 16), version)
    header = prefix + int(params[4], 16).to_bytes(4, "little")
    assert header.hex() == submit["header_hex"]
    assert sha256d(header)[::-1].hex() == submit["hash"]


def test_scan_finds_the_nonce_ckpool_accepted_at_its_difficulty() -> None:
    submit = next(s for s in SUMMARY["submits"] if s["case"] == "valid_1")
    header = bytes.fromhex(submit["header_hex"])
    nonce = int(submit["params"][4], 16)
    target = difficulty_to_target(submit["difficulty_in_force"])
    found = scan(header[:76], target, nonce - 3, nonce + 1)
    assert nonce in [n for n, _ in found]
    for n, digest in found:
        assert sha256d(header[:76] + n.to_bytes(4, "little")) == digest
        assert int.from_bytes(digest, "little") <= target


def test_scan_with_the_largest_target_reports_every_nonce() -> None:
    found = scan(bytes(76), (1 << 256) - 1, 10, 20)
    assert [n for n, _ in found] == list(range(10, 20))


def test_scan_rejects_a_prefix_of_the_wrong_length() -> None:
    with pytest.raises(WorkError, match="76 bytes"):
        scan(bytes(75), 1, 0, 1)


def test_notify_prevhash_is_word_swapped_into_header_order() -> None:
    job = MinerJob.from_notify(notify_params(SUMMARY["jobs"]["6b05021400000000"]))
    assert swap_words(job.prev_hash).hex() == SUMMARY["jobs"]["6b05021400000000"]["prevhash"]
    assert job.version == 0x20000000 and job.bits == 0x207FFFFF and job.clean


@pytest.mark.parametrize(
    ("index", "value", "message"),
    [
        (1, "zz", "prevhash: not hex"),
        (1, "00", "prevhash: expected 32 bytes"),
        (5, 7, "version: expected a hex string"),
        (8, "yes", "clean_jobs"),
        (0, "", "job_id"),
    ],
)
def test_malformed_notify_is_refused_naming_the_field(
    index: int, value: object, message: str
) -> None:
    params = notify_params(SUMMARY["jobs"]["6b05021400000000"])
    params[index] = value
    with pytest.raises(WorkError, match=message):
        MinerJob.from_notify(params)


def test_deposit_bits_spreads_a_counter_over_the_mask() -> None:
    assert deposit_bits(0, 0x1FFFE000) == 0
    assert deposit_bits(1, 0x1FFFE000) == 0x2000
    assert deposit_bits(0b101, 0x1FFFE000) == 0xA000
    assert deposit_bits(0xFFFF, 0x1FFFE000) == 0x1FFFE000
    assert deposit_bits(3, 0) == 0


def test_extranonce2_ranges_are_disjoint_and_cover_the_space() -> None:
    ranges = split_extranonce2(1, 3)
    assert ranges == [(0, 85), (85, 85), (170, 85)]
    with pytest.raises(WorkError, match="among 300 workers"):
        split_extranonce2(1, 300)


def test_work_walks_versions_inside_the_mask_then_the_next_extranonce2() -> None:
    job = MinerJob.from_notify(notify_params(SUMMARY["jobs"]["6b05021400000000"]))
    work = Work(
        work_id=1,
        job=job,
        extranonce1=b"\x01\x02\x03\x04",
        extranonce2_size=2,
        extranonce2_start=5,
        extranonce2_count=2,
        version_mask=0x6000,
        target=1,
    )
    walked = [(e, v) for e, v, _ in iter_header_prefixes(work)]
    versions = [0x20000000, 0x20002000, 0x20004000, 0x20006000]
    assert walked == [(5, v) for v in versions] + [(6, v) for v in versions]
    prefixes = {p for _, _, p in iter_header_prefixes(work)}
    assert len(prefixes) == 8


def test_work_round_trips_through_its_json_line() -> None:
    job = MinerJob.from_notify(notify_params(SUMMARY["jobs"]["6b05021400000000"]))
    work = _work_for(job, "1502056b", 0x1FFFE000)
    doc = json.loads(work.to_line())["work"]
    assert Work.from_doc(doc) == work


@pytest.mark.parametrize(
    ("changes", "message"),
    [
        ({"extranonce2_size": 0}, "outside 1..16"),
        ({"extranonce2_count": 0}, "empty or negative"),
        ({"extranonce2_start": 255, "extranonce2_count": 2}, "beyond 1 bytes"),
        ({"target": 0}, "must be positive"),
        ({"nonce_limit": 0}, "nonce limit"),
    ],
)
def test_work_outside_its_bounds_is_refused(changes: dict[str, int], message: str) -> None:
    job = MinerJob.from_notify(notify_params(SUMMARY["jobs"]["6b05021400000000"]))
    fields: dict[str, Any] = {
        "work_id": 1,
        "job": job,
        "extranonce1": b"",
        "extranonce2_size": 1,
        "extranonce2_start": 0,
        "extranonce2_count": 1,
        "version_mask": 0,
        "target": 1,
    }
    fields.update(changes)
    with pytest.raises(WorkError, match=message):
        Work(**fields)


def test_a_malformed_work_line_is_refused() -> None:
    with pytest.raises(WorkError, match="malformed work"):
        Work.from_doc({"work_id": 1})

"""Session behaviour over an in-memory transport with a task.Clock: every method, every
error code, difficulty bookkeeping, and the hard edges."""

from __future__ import annotations

import hashlib
from dataclasses import replace
from fractions import Fraction
from typing import Any

import pytest
from twisted.internet.address import IPv4Address
from twisted.internet.defer import fail
from twisted.logger import LogLevel

from otedama.chain.address import address_to_script
from otedama.chain.params import get_network
from otedama.chain.serialize import TxOut
from otedama.chain.target import difficulty_to_target
from otedama.chain.template import BlockTemplate
from otedama.stratum.codec import encode_notification, encode_response
from otedama.stratum.jobs import Job, JobManager
from otedama.stratum.protocol import StratumFactory
from otedama.stratum.session import MAX_WORKERS_PER_CONNECTION, subscribe_reply
from otedama.stratum.validator import build_header

from .conftest import (
    ADDRESS,
    START_TIME,
    Miner,
    RecordingSink,
    Stack,
    StackMaker,
    logged,
    make_template,
    payout_outputs,
    regtest_settings,
)

HARD_BITS = 0x1F00FFFF  # network target 0xffff << 224: blocks are rare among test shares
NETWORK_TARGET = 0xFFFF << 224
DIFF = Fraction(6, 10**8)  # share target about 2**248: one hash in ~256 is a share
OTHER = "bcrt1qfzg8scjxecvudkzqqal2m80333dlnlt337drc4"
EN2 = "0000000000000001"


@pytest.fixture
def hard(make_stack: StackMaker) -> Stack:
    return make_stack(bits=HARD_BITS, start_difficulty=DIFF, min_difficulty=Fraction(1, 2**32))


def _value(header: bytes) -> int:
    return int.from_bytes(hashlib.sha256(hashlib.sha256(header).digest()).digest(), "little")


def mine(
    job: Job,
    extranonce1: bytes,
    *,
    extranonce2: str = EN2,
    ntime: int | None = None,
    version: int | None = None,
    at_most: int | None = None,
    above: int | None = None,
    start: int = 0,
) -> str:
    """A nonce whose hash is <= at_most and > above."""
    for nonce in range(start, start + 1_000_000):
        header = build_header(
            job,
            extranonce1,
            bytes.fromhex(extranonce2),
            job.ntime if ntime is None else ntime,
            nonce,
            job.version if version is None else version,
        )
        value = _value(header)
        if (at_most is None or value <= at_most) and (above is None or value > above):
            return f"{nonce:08x}"
    raise AssertionError("no nonce found")


def share_nonce(miner: Miner, job: Job, difficulty: Fraction = DIFF, **kw: Any) -> str:
    """A nonce for a share meeting ``difficulty`` that is not a block."""
    return mine(
        job,
        miner.session.extranonce1,
        at_most=difficulty_to_target(difficulty),
        above=NETWORK_TARGET,
        **kw,
    )


def easy_not_hard(miner: Miner, job: Job, start: int = 0) -> str:
    """A nonce for a share meeting DIFF but not 16 * DIFF."""
    return mine(
        job,
        miner.session.extranonce1,
        at_most=difficulty_to_target(DIFF),
        above=difficulty_to_target(DIFF * 16),
        start=start,
    )


def submit(
    miner: Miner,
    job: Job,
    nonce: str,
    *,
    worker: str = ADDRESS + ".rig1",
    en2: str = EN2,
    ntime: int | None = None,
    version: str | None = None,
) -> dict[str, Any]:
    params = [worker, job.job_id, en2, f"{job.ntime if ntime is None else ntime:08x}", nonce]
    if version is not None:
        params.append(version)
    return miner.call("mining.submit", params)


def methods(lines: list[dict[str, Any]]) -> list[str]:
    return [m.get("method", "reply") for m in lines]


# -- subscribe ---------------------------------------------------------------------------


@pytest.mark.parametrize("msg_id", [1, 2**40, "abc", 'q"\\', None])
def test_the_hand_built_subscribe_reply_is_the_json_one(msg_id: Any) -> None:
    sub = "0000002a"
    expected = encode_response(
        msg_id, [[["mining.set_difficulty", sub], ["mining.notify", sub]], sub, 8]
    )
    assert subscribe_reply(msg_id, sub, 8) == expected


def test_set_difficulty_lines_are_encoded_once_per_value(stack: Stack) -> None:
    line = stack.server.difficulty_line(Fraction(1, 2))
    assert line == encode_notification("mining.set_difficulty", [0.5])
    assert stack.server.difficulty_line(Fraction(2, 4)) is line


def test_subscribe_gives_a_unique_extranonce1_and_extranonce2_size_8(stack: Stack) -> None:
    seen = set()
    for port in range(5):
        miner = stack.miner(port=40000 + port)
        reply = miner.call("mining.subscribe", ["cgminer/4.12"])
        subscriptions, extranonce1, size = reply["result"]
        assert size == 8 and len(extranonce1) == 8
        assert subscriptions == [
            ["mining.set_difficulty", extranonce1],
            ["mining.notify", extranonce1],
        ]
        seen.add(extranonce1)
    assert len(seen) == 5


def test_extranonce1_is_never_reused_while_connected(stack: Stack) -> None:
    first = stack.miner(port=1)
    en1 = first.call("mining.subscribe", [])["result"][1]
    # A miner asking to resume an extranonce1 that is in use gets a fresh one.
    second = stack.miner(port=2)
    assert second.call("mining.subscribe", ["x", en1])["result"][1] != en1
    # Wrap the counter round: the live one is skipped.
    stack.server._extranonce_next = int(en1, 16)
    third = stack.miner(port=3)
    assert third.call("mining.subscribe", [])["result"][1] != en1


def test_resuming_a_known_free_session_id_keeps_its_extranonce1(stack: Stack) -> None:
    first = stack.miner(port=1)
    en1 = first.call("mining.subscribe", ["x"])["result"][1]
    first.disconnect()
    again = stack.miner(port=2)
    assert again.call("mining.subscribe", ["x", en1])["result"][1] == en1
    # An id we never issued is not honoured.
    other = stack.miner(port=3)
    assert other.call("mining.subscribe", ["x", "abcdef12"])["result"][1] != "abcdef12"


def test_subscribe_with_a_non_string_agent_is_an_error(stack: Stack) -> None:
    miner = stack.miner()
    reply = miner.call("mining.subscribe", [42])
    assert reply["error"][0] == 20 and "user agent" in reply["error"][1]
    assert not miner.session.subscribed


# -- authorize ---------------------------------------------------------------------------


def test_authorize_sends_difficulty_then_a_clean_job(stack: Stack) -> None:
    miner = stack.miner()
    lines = miner.start()
    assert methods(lines) == ["mining.set_difficulty", "mining.notify"]
    assert lines[0]["params"] == [0.01]
    assert lines[1]["params"][0] == stack.jobs.current.job_id
    assert lines[1]["params"][8] is True


def test_authorize_before_subscribe_starts_work_after_subscribe(stack: Stack) -> None:
    miner = stack.miner()
    assert miner.call("mining.authorize", [ADDRESS, ""])["result"] is True
    assert miner.pending() == []
    miner.call("mining.subscribe", [])
    assert methods(miner.pending()) == ["mining.set_difficulty", "mining.notify"]


@pytest.mark.parametrize(
    "user",
    ["1BvBMSEYstWetqTFn5Au4m4GFg7xJaNVN2", "bc1qsv2hexjrhpa8qwxr4la2nmmkmdh8hxkjnotreal", "nobody"],
)
def test_authorize_refuses_a_user_that_is_not_a_payout_address(stack: Stack, user: str) -> None:
    miner = stack.miner()
    miner.call("mining.subscribe", [])
    reply = miner.call("mining.authorize", [user + ".rig", "x"])
    assert reply["result"] is None
    assert reply["error"][0] == 24
    assert repr(user) in reply["error"][1] and "regtest" in reply["error"][1]
    assert not miner.session.authorized


def test_authorize_refuses_a_bad_worker_name(stack: Stack) -> None:
    miner = stack.miner()
    reply = miner.call("mining.authorize", [ADDRESS + ".rig 1!", "x"])
    assert reply["error"][0] == 24 and "'rig 1!'" in reply["error"][1]


def test_password_d_sets_the_start_difficulty(stack: Stack) -> None:
    miner = stack.miner()
    lines = miner.start(password="x,d=0.5")
    assert lines[0] == {"id": None, "method": "mining.set_difficulty", "params": [0.5]}
    assert miner.session.difficulty == Fraction(1, 2)


def test_password_d_is_clamped_to_the_bounds(make_stack: StackMaker) -> None:
    stack = make_stack(max_difficulty=1000)
    miner = stack.miner()
    assert miner.start(password="d=99999")[0]["params"] == [1000]


def test_password_with_a_malformed_d_is_refused_naming_it(stack: Stack) -> None:
    miner = stack.miner()
    reply = miner.call("mining.authorize", [ADDRESS, "d=lots"])
    assert reply["error"][0] == 20 and "'d=lots'" in reply["error"][1]


@pytest.mark.parametrize("password", ["d=1e999999999", "x,d=1e10000000", "d=" + "9" * 5000])
def test_password_with_a_huge_d_is_refused_at_once(stack: Stack, password: str) -> None:
    """Fraction("1e999999999") never returns: the number is bounded before it is built."""
    miner = stack.miner()
    reply = miner.call("mining.authorize", [ADDRESS, password])
    assert reply["error"][0] == 20 and "password difficulty" in reply["error"][1]
    assert len(reply["error"][1]) < 200
    assert not miner.session.authorized


def test_a_huge_suggested_difficulty_is_capped_before_arithmetic(stack: Stack) -> None:
    miner = stack.miner()
    assert miner.call("mining.suggest_difficulty", [10**39])["result"] is True
    assert miner.call("mining.suggest_difficulty", [1e308])["result"] is True
    assert miner.start()[0]["params"] == [2**40]


def test_several_workers_may_authorize_on_one_connection(hard: Stack) -> None:
    miner = hard.miner()
    miner.start()
    assert miner.call("mining.authorize", [OTHER + ".b", "x"])["result"] is True
    job = hard.jobs.current
    reply = submit(miner, job, share_nonce(miner, job), worker=OTHER + ".b")
    assert reply["result"] is True
    assert hard.sink.shares[-1].address == OTHER
    assert hard.sink.shares[-1].worker_name == "b"


# -- configure ---------------------------------------------------------------------------


def test_configure_before_subscribe_negotiates_the_version_mask(stack: Stack) -> None:
    miner = stack.miner()
    reply = miner.call(
        "mining.configure",
        [
            ["version-rolling"],
            {"version-rolling.mask": "00fff000", "version-rolling.min-bit-count": 2},
        ],
    )
    assert reply["result"] == {"version-rolling": True, "version-rolling.mask": "00ffe000"}
    assert miner.session.version_mask == 0x00FFE000


def test_configure_answers_every_extension(stack: Stack) -> None:
    miner = stack.miner()
    reply = miner.call(
        "mining.configure",
        [
            ["version-rolling", "minimum-difficulty", "subscribe-extranonce", "info", "future-x"],
            {
                "version-rolling.mask": "ffffffff",
                "minimum-difficulty.value": 2,
                "info.connection-url": "x",
            },
        ],
    )
    assert reply["result"] == {
        "version-rolling": True,
        "version-rolling.mask": "1fffe000",
        "minimum-difficulty": True,
        "subscribe-extranonce": True,
        "info": False,
        "future-x": False,
    }
    assert miner.session.extranonce_subscribed
    assert miner.start()[0]["params"] == [2]


def test_configure_refuses_version_rolling_when_too_few_bits_remain(stack: Stack) -> None:
    miner = stack.miner()
    reply = miner.call(
        "mining.configure",
        [
            ["version-rolling"],
            {"version-rolling.mask": "00006000", "version-rolling.min-bit-count": 3},
        ],
    )
    assert reply["result"] == {"version-rolling": False}
    assert miner.session.version_mask == 0


def test_configure_with_wrong_types_is_an_error(stack: Stack) -> None:
    miner = stack.miner()
    reply = miner.call("mining.configure", ["version-rolling", {}])
    assert reply["error"][0] == 20


# -- suggest_difficulty ------------------------------------------------------------------


def test_suggest_difficulty_before_authorize_sets_the_first_difficulty(stack: Stack) -> None:
    miner = stack.miner()
    assert miner.call("mining.suggest_difficulty", [0.002])["result"] is True
    assert miner.start()[0]["params"] == [0.002]


def test_suggest_difficulty_while_working_sends_difficulty_and_the_job_again(stack: Stack) -> None:
    miner = stack.miner()
    miner.start()
    reply = miner.call("mining.suggest_difficulty", [4])
    assert reply["result"] is True
    lines = miner.pending()
    assert methods(lines) == ["mining.set_difficulty", "mining.notify"]
    assert lines[0]["params"] == [4]
    assert lines[1]["params"][0] == stack.jobs.current.job_id
    assert lines[1]["params"][8] is False


@pytest.mark.parametrize(("suggested", "applied"), [(1e-9, 0.0001), (10**13, 2**40)])
def test_suggest_difficulty_is_kept_within_bounds(
    stack: Stack, suggested: float, applied: float
) -> None:
    miner = stack.miner()
    miner.call("mining.suggest_difficulty", [suggested])
    assert miner.start()[0]["params"] == [applied]


@pytest.mark.parametrize("bad", ["0.1", None, True, -1, 0, [1]])
def test_suggest_difficulty_needs_a_positive_number(stack: Stack, bad: Any) -> None:
    miner = stack.miner()
    reply = miner.call("mining.suggest_difficulty", [bad])
    assert reply["error"][0] == 20


# -- extranonce --------------------------------------------------------------------------


def test_extranonce_subscribe_then_a_changed_extranonce1_is_announced(stack: Stack) -> None:
    miner = stack.miner()
    assert miner.call("mining.extranonce.subscribe", [])["result"] is True
    miner.start()
    miner.session.set_extranonce1(bytes.fromhex("0a0b0c0d"))
    lines = miner.read()
    assert lines[0] == {"id": None, "method": "mining.set_extranonce", "params": ["0a0b0c0d", 8]}
    assert lines[1]["method"] == "mining.notify" and lines[1]["params"][8] is True
    assert not miner.closed


def test_a_changed_extranonce1_drops_a_miner_that_cannot_follow(stack: Stack) -> None:
    miner = stack.miner()
    miner.start()
    miner.session.set_extranonce1(bytes.fromhex("0a0b0c0d"))
    assert miner.closed


# -- unknown methods ---------------------------------------------------------------------


@pytest.mark.parametrize("method", ["mining.multi_version", "mining.get_transactions", "x"])
def test_unknown_methods_get_error_20_and_the_connection_stays(stack: Stack, method: str) -> None:
    miner = stack.miner()
    reply = miner.call(method, [1])
    assert reply["error"] == [20, "Unknown method", None]
    assert reply["result"] is None
    assert not miner.closed
    assert miner.call("mining.subscribe", [])["error"] is None


# -- submit ------------------------------------------------------------------------------


def test_a_valid_share_is_accepted_and_handed_to_the_sink(hard: Stack) -> None:
    miner = hard.miner()
    miner.start()
    job = hard.jobs.current
    nonce = share_nonce(miner, job)
    assert submit(miner, job, nonce) == {"id": 3, "result": True, "error": None}
    (share,) = hard.sink.shares
    assert share.worker == ADDRESS + ".rig1" and share.address == ADDRESS
    assert share.difficulty == DIFF
    assert share.job_id == job.job_id and share.height == job.height
    assert share.is_block is False and hard.sink.blocks == []
    header = build_header(
        job, miner.session.extranonce1, bytes.fromhex(EN2), job.ntime, int(nonce, 16), job.version
    )
    assert share.header == header
    assert share.hash == hashlib.sha256(hashlib.sha256(header).digest()).digest()
    assert (
        share.coinbase == job.coinb1 + miner.session.extranonce1 + bytes.fromhex(EN2) + job.coinb2
    )
    assert share.time == START_TIME
    assert hard.server.stats.accepted == 1


def test_the_same_share_twice_is_a_duplicate(hard: Stack) -> None:
    miner = hard.miner()
    miner.start()
    job = hard.jobs.current
    nonce = share_nonce(miner, job)
    assert submit(miner, job, nonce)["result"] is True
    assert submit(miner, job, nonce) == {"id": 4, "result": False, "error": [22, "Duplicate", None]}


def test_a_share_resent_under_a_refreshed_job_id_is_a_duplicate(hard: Stack) -> None:
    miner = hard.miner()
    miner.start()
    job = hard.jobs.current
    nonce = share_nonce(miner, job)
    assert submit(miner, job, nonce)["result"] is True
    refreshed = hard.jobs.refresh()
    assert refreshed is not None
    assert submit(miner, refreshed, nonce, ntime=job.ntime)["error"][0] == 22


def test_a_share_above_the_target_is_refused_23(hard: Stack) -> None:
    miner = hard.miner()
    miner.start()
    job = hard.jobs.current
    nonce = mine(job, miner.session.extranonce1, above=difficulty_to_target(DIFF))
    assert submit(miner, job, nonce)["error"] == [23, "Above target", None]
    assert hard.sink.shares == []


def test_an_unknown_job_is_refused_21(hard: Stack) -> None:
    miner = hard.miner()
    miner.start()
    reply = miner.call(
        "mining.submit", [ADDRESS + ".rig1", "abcdef", EN2, f"{START_TIME:08x}", "00000000"]
    )
    assert reply["error"] == [21, "Invalid JobID", None]


def test_a_job_from_before_the_last_block_is_stale(hard: Stack) -> None:
    miner = hard.miner()
    miner.start()
    job = hard.jobs.current
    nonce = share_nonce(miner, job)
    hard.jobs.on_template(make_template(prev=b"\x22" * 32, height=201, bits=HARD_BITS))
    lines = miner.read()
    assert lines[-1]["params"][8] is True  # clean_jobs on the new block
    assert submit(miner, job, nonce)["error"] == [21, "Stale", None]


def test_an_older_job_of_the_current_block_is_still_accepted(hard: Stack) -> None:
    miner = hard.miner()
    miner.start()
    job = hard.jobs.current
    hard.jobs.on_template(make_template(curtime=START_TIME + 30, bits=HARD_BITS))
    assert miner.read()[-1]["params"][8] is False
    assert submit(miner, job, share_nonce(miner, job))["result"] is True


@pytest.mark.parametrize(
    ("offset", "ok"), [(-600, True), (-601, False), (7000, True), (7001, False)]
)
def test_ntime_must_lie_between_mintime_and_now_plus_7000(
    hard: Stack, offset: int, ok: bool
) -> None:
    miner = hard.miner()
    miner.start()
    job = hard.jobs.current  # mintime is curtime - 600, now is curtime
    ntime = START_TIME + offset
    reply = submit(miner, job, share_nonce(miner, job, ntime=ntime), ntime=ntime)
    if ok:
        assert reply["result"] is True
    else:
        assert reply["error"] == [20, "Ntime out of range", None]


def test_version_bits_inside_the_negotiated_mask_are_rolled_into_the_header(hard: Stack) -> None:
    miner = hard.miner()
    miner.call("mining.configure", [["version-rolling"], {"version-rolling.mask": "ffffffff"}])
    miner.start()
    job = hard.jobs.current
    rolled = (job.version & ~0x1FFFE000) | 0x08004000
    nonce = share_nonce(miner, job, version=rolled)
    assert submit(miner, job, nonce, version="08004000")["result"] is True
    assert int.from_bytes(hard.sink.shares[-1].header[:4], "little") == rolled


def test_version_bits_outside_the_mask_are_refused(hard: Stack) -> None:
    miner = hard.miner()
    miner.call("mining.configure", [["version-rolling"], {"version-rolling.mask": "ffffffff"}])
    miner.start()
    job = hard.jobs.current
    reply = submit(miner, job, "00000000", version="40000000")
    assert reply["error"] == [20, "Invalid version mask", None]


def test_version_bits_without_negotiation_are_refused(hard: Stack) -> None:
    miner = hard.miner()
    miner.start()
    job = hard.jobs.current
    assert submit(miner, job, "00000000", version="00002000")["error"][1] == "Invalid version mask"
    # Zero bits change nothing and are fine.
    nonce = share_nonce(miner, job)
    assert submit(miner, job, nonce, version="00000000")["result"] is True


@pytest.mark.parametrize("en2", ["00000007", "000000000000000000", "zz00000000000000"])
def test_a_wrong_extranonce2_is_refused_for_its_length(hard: Stack, en2: str) -> None:
    miner = hard.miner()
    miner.start()
    reply = submit(miner, hard.jobs.current, "00000000", en2=en2)
    assert reply["error"] == [20, "Invalid extranonce2 length", None]


def test_submit_before_subscribe_is_refused_25(hard: Stack) -> None:
    miner = hard.miner()
    reply = miner.call("mining.submit", [ADDRESS, "1", EN2, "00000000", "00000000"])
    assert reply["error"] == [25, "Not subscribed", None]


def test_submit_before_authorize_is_refused_24(hard: Stack) -> None:
    miner = hard.miner()
    miner.call("mining.subscribe", [])
    reply = miner.call("mining.submit", [ADDRESS, "1", EN2, "00000000", "00000000"])
    assert reply["error"] == [24, "Unauthorized worker", None]


def test_submit_for_a_worker_not_authorized_here_is_refused(hard: Stack) -> None:
    miner = hard.miner()
    miner.start()
    job = hard.jobs.current
    reply = submit(miner, job, share_nonce(miner, job), worker=ADDRESS + ".other")
    assert reply["error"] == [20, "Worker mismatch", None]


@pytest.mark.parametrize(
    "params",
    [
        [ADDRESS + ".rig1", "1", EN2, "00000000"],
        [ADDRESS + ".rig1", 1, EN2, "00000000", "00000000"],
        [ADDRESS + ".rig1", "1", EN2, "00000000", 5],
        [ADDRESS + ".rig1", "1", EN2, "00000000", "00000000", "0", "extra"],
    ],
)
def test_submit_with_wrong_param_types_is_an_error(hard: Stack, params: list[Any]) -> None:
    miner = hard.miner()
    miner.start()
    reply = miner.call("mining.submit", params)
    assert reply["error"][0] == 20 and "mining.submit needs 5 or 6 strings" in reply["error"][1]
    assert miner.session.bad_lines == 1


# -- difficulty between notify and submit ------------------------------------------------


def test_a_share_is_judged_at_the_difficulty_in_force_when_its_job_was_sent(hard: Stack) -> None:
    miner = hard.miner()
    miner.start()
    old_job = hard.jobs.current
    # Raise the difficulty: set_difficulty, then the same job again (clean_jobs false).
    miner.call("mining.suggest_difficulty", [float(DIFF * 16)])
    assert methods(miner.pending()) == ["mining.set_difficulty", "mining.notify"]
    easy_only = easy_not_hard(miner, old_job)
    # The job sent before the change still counts at the old difficulty...
    assert submit(miner, old_job, easy_only)["result"] is True
    assert hard.sink.shares[-1].difficulty == DIFF
    # ...a job sent after it at the new one.
    new_job = hard.jobs.on_template(make_template(curtime=START_TIME + 30, bits=HARD_BITS))
    miner.read()
    easy_new = easy_not_hard(miner, new_job)
    assert submit(miner, new_job, easy_new)["error"][0] == 23
    hard_new = share_nonce(miner, new_job, DIFF * 16)
    assert submit(miner, new_job, hard_new)["result"] is True
    assert hard.sink.shares[-1].difficulty == DIFF * 16
    # And the old job, still valid, keeps its own difficulty.
    again = easy_not_hard(miner, old_job, start=int(easy_only, 16) + 1)
    assert submit(miner, old_job, again)["result"] is True
    assert hard.sink.shares[-1].difficulty == DIFF


def test_after_a_lower_difficulty_the_resent_job_takes_shares_at_the_lower_one(hard: Stack) -> None:
    miner = hard.miner()
    miner.start(password=f"d={float(DIFF * 16)}")
    job = hard.jobs.current
    miner.call("mining.suggest_difficulty", [float(DIFF)])
    nonce = easy_not_hard(miner, job)
    assert submit(miner, job, nonce)["result"] is True
    assert hard.sink.shares[-1].difficulty == DIFF


# -- blocks ------------------------------------------------------------------------------


def test_a_block_is_assembled_and_handed_to_the_sink_at_once(make_stack: StackMaker) -> None:
    stack = make_stack()  # regtest bits 207fffff: every other hash is a block
    miner = stack.miner()
    miner.start()
    job = stack.jobs.current
    nonce = mine(job, miner.session.extranonce1, at_most=job.network_target)
    assert submit(miner, job, nonce)["result"] is True
    ((block, share),) = stack.sink.blocks
    assert share.is_block and stack.sink.shares[-1] == share
    assert block[:80] == share.header
    assert stack.server.stats.blocks == 1


def test_a_block_on_an_aged_out_job_of_the_current_tip_is_accepted(make_stack: StackMaker) -> None:
    stack = make_stack()
    stack.jobs.max_generations = 1
    miner = stack.miner()
    miner.start()
    job = stack.jobs.current
    stack.jobs.on_template(make_template(curtime=START_TIME + 30))
    assert stack.jobs.lookup(job.job_id) == (job, True)
    nonce = mine(job, miner.session.extranonce1, at_most=job.network_target)
    assert submit(miner, job, nonce)["result"] is True
    assert len(stack.sink.blocks) == 1


def test_a_block_on_a_stale_job_still_reaches_the_sink_but_the_share_is_stale(
    make_stack: StackMaker,
) -> None:
    stack = make_stack()
    miner = stack.miner()
    miner.start()
    job = stack.jobs.current
    stack.jobs.on_template(make_template(prev=b"\x33" * 32, height=201))
    nonce = mine(job, miner.session.extranonce1, at_most=job.network_target)
    assert submit(miner, job, nonce)["error"] == [21, "Stale", None]
    ((block, share),) = stack.sink.blocks
    assert share.job_id == job.job_id and share.is_block and block[:80] == share.header
    assert not any(s.job_id == job.job_id for s in stack.sink.shares)


# -- fan-out -----------------------------------------------------------------------------


def test_a_new_job_reaches_every_working_miner_as_the_same_bytes(stack: Stack) -> None:
    miners = [stack.miner(port=p) for p in range(20)]
    for miner in miners:
        miner.start()
    idle = stack.miner(port=99)
    idle.call("mining.subscribe", [])
    for miner in miners:
        miner.transport.clear()
    job = stack.jobs.on_template(make_template(prev=b"\x44" * 32, height=201))
    assert {m.transport.value() for m in miners} == {job.notify_clean}
    assert idle.transport.value() == b""


def test_sessions_keep_no_per_instance_dict(stack: Stack) -> None:
    miner = stack.miner()
    miner.start()
    assert not hasattr(miner.session, "__dict__")
    assert not hasattr(miner.session.framer, "__dict__")
    assert not hasattr(miner.session.vardiff_window, "__dict__")


# -- hard edges --------------------------------------------------------------------------


def test_an_oversized_line_gets_an_error_and_the_connection_keeps_serving(stack: Stack) -> None:
    miner = stack.miner()
    miner.send_raw(b'{"id":1,"method":"mining.subscribe","params":["' + b"a" * 17000 + b'"]}\n')
    (error,) = miner.read()
    assert error["error"][0] == 20 and "exceeds 16384 bytes" in error["error"][1]
    assert not miner.closed
    assert miner.call("mining.subscribe", [])["error"] is None


def test_invalid_json_gets_an_error_reply(stack: Stack) -> None:
    miner = stack.miner()
    miner.send_raw(b"{this is not json\n")
    (error,) = miner.read()
    assert error["id"] is None and error["error"][0] == 20 and "invalid JSON" in error["error"][1]
    assert not miner.closed


def test_repeated_abuse_closes_the_connection(stack: Stack) -> None:
    miner = stack.miner()
    for _ in range(9):
        miner.send_raw(b"garbage\n")
    assert not miner.closed
    miner.send_raw(b"garbage\n")
    assert miner.closed
    # Later lines are ignored.
    miner.transport.clear()
    miner.send_raw(b'{"id":1,"method":"mining.subscribe","params":[]}\n')
    assert miner.transport.value() == b""


def test_a_connection_that_does_not_subscribe_in_30_seconds_is_closed(stack: Stack) -> None:
    lazy = stack.miner(port=1)
    busy = stack.miner(port=2)
    busy.call("mining.subscribe", [])
    stack.clock.advance(29)
    assert not lazy.closed
    stack.clock.advance(6)
    assert lazy.closed and not busy.closed


def test_a_silent_connection_is_closed_after_the_idle_timeout(make_stack: StackMaker) -> None:
    stack = make_stack(idle_timeout=120)
    quiet = stack.miner(port=1)
    chatty = stack.miner(port=2)
    quiet.start()
    chatty.start()
    for _ in range(30):
        stack.clock.advance(5)
        chatty.call("mining.suggest_difficulty", [0.01])
    assert quiet.closed and not chatty.closed


def test_connections_per_ip_are_limited(make_stack: StackMaker) -> None:
    stack = make_stack(max_connections_per_ip=2)
    first = stack.miner("10.0.0.1", 1)
    stack.miner("10.0.0.1", 2)
    assert stack.factory.buildProtocol(IPv4Address("TCP", "10.0.0.1", 3)) is None
    assert stack.miner("10.0.0.2", 1).session is not None
    first.disconnect()
    assert stack.miner("10.0.0.1", 4).session is not None
    assert stack.server.stats.refused_connections == 1


def test_total_connections_are_limited(make_stack: StackMaker) -> None:
    stack = make_stack(max_connections=3)
    for port in range(3):
        stack.miner(f"10.0.1.{port}", port)
    assert stack.factory.buildProtocol(IPv4Address("TCP", "10.0.2.1", 9)) is None


def test_a_closed_connection_frees_its_slot_and_extranonce1(stack: Stack) -> None:
    miner = stack.miner()
    en1 = miner.call("mining.subscribe", [])["result"][1]
    miner.disconnect()
    assert stack.server.connections_from("10.0.0.1") == 0
    assert stack.server.sessions == set()
    assert int(en1, 16) not in stack.server._extranonce_used


def test_replies_from_a_miner_and_notifications_are_ignored(stack: Stack) -> None:
    miner = stack.miner()
    miner.send_raw(b'{"id":5,"result":"cgminer 4","error":null}\n')
    miner.send_raw(b'{"id":null,"method":"mining.ping","params":[]}\n')
    assert miner.read() == []
    assert miner.session.bad_lines == 0


def test_a_failing_sink_is_logged_and_the_miner_still_gets_its_verdict(
    stack: Stack, monkeypatch: pytest.MonkeyPatch, log_events: list[dict[str, Any]]
) -> None:
    miner = stack.miner()
    miner.start()

    def broken(share: Any) -> None:
        raise RuntimeError("ledger down")

    monkeypatch.setattr(stack.sink, "share_accepted", broken)
    job = stack.jobs.current
    nonce = mine(job, miner.session.extranonce1, at_most=job.network_target)
    assert submit(miner, job, nonce)["result"] is True
    assert stack.server.stats.accepted == 1
    (line,) = logged(log_events, LogLevel.critical)
    assert line == "share sink failed for a share from " + ADDRESS + ".rig1"
    (event,) = [e for e in log_events if "log_failure" in e]
    assert event["log_failure"].check(RuntimeError) and "ledger down" in str(
        event["log_failure"].value
    )
    assert miner.call("mining.suggest_difficulty", [1])["result"] is True


def test_reloaded_settings_apply_to_running_sessions(stack: Stack) -> None:
    miner = stack.miner()
    miner.start()
    stack.server.update_settings(
        replace(
            stack.settings,
            max_line_bytes=1024,
            min_difficulty=Fraction(1, 10),
            start_difficulty=Fraction(1, 10),
            vardiff=True,
            network=get_network("testnet"),
        )
    )
    assert stack.server.vardiff is not None
    assert stack.server.settings.network.name == "regtest"
    assert miner.session.difficulty_floor == Fraction(1, 10)
    miner.send_raw(b"[" * 2000 + b"\n")
    assert "exceeds 1024 bytes" in miner.read()[0]["error"][1]


def test_deeply_nested_json_is_a_bad_line_not_a_crash(stack: Stack) -> None:
    miner = stack.miner()
    miner.send_raw(b"[" * 8000 + b"]" * 8000 + b"\n")
    (error,) = miner.read()
    assert error["error"][0] == 20 and "nested too deeply" in error["error"][1]
    assert miner.call("mining.subscribe", [])["error"] is None


def test_workers_per_connection_are_bounded(stack: Stack) -> None:
    miner = stack.miner()
    miner.call("mining.subscribe", [])
    for i in range(MAX_WORKERS_PER_CONNECTION):
        assert miner.call("mining.authorize", [f"{ADDRESS}.w{i}", "x"])["result"] is True
    reply = miner.call("mining.authorize", [f"{ADDRESS}.one-more", "x"])
    assert reply["error"][0] == 24 and "'" + ADDRESS + ".one-more'" in reply["error"][1]
    # Re-authorizing a known worker is still fine.
    assert miner.call("mining.authorize", [f"{ADDRESS}.w0", "x"])["result"] is True


def test_solo_miners_get_work_paying_their_own_address(make_stack: StackMaker) -> None:

    stack = make_stack(template=False)

    def solo(template: BlockTemplate, address: str) -> list[TxOut]:
        return [TxOut(template.coinbase_value, address_to_script(address, "regtest"))]

    jobs = JobManager(payout_outputs, clock=stack.clock, address_outputs=solo)
    sink = RecordingSink()
    factory = StratumFactory(jobs, sink, regtest_settings(), stack.clock)
    jobs.on_template(make_template())
    mine_a, mine_b = Miner(factory, port=1), Miner(factory, port=2)
    notify_a = mine_a.start(user=ADDRESS + ".a")[1]
    notify_b = mine_b.start(user=OTHER + ".b")[1]
    assert address_to_script(ADDRESS, "regtest").hex() in notify_a["params"][3]
    assert address_to_script(OTHER, "regtest").hex() in notify_b["params"][3]
    # A second address authorized on connection A still mines A's coinbase: credited to A.
    assert mine_a.call("mining.authorize", [OTHER + ".x", "x"])["result"] is True
    job_a, _ = jobs.lookup(notify_a["params"][0])
    assert job_a is not None
    nonce = mine(job_a, mine_a.session.extranonce1, at_most=job_a.network_target)
    assert submit(mine_a, job_a, nonce, worker=OTHER + ".x")["result"] is True
    assert sink.shares[-1].address == ADDRESS
    assert sink.shares[-1].worker == OTHER + ".x"
    # A new template reaches each miner as its own job.
    jobs.on_template(make_template(prev=b"\x77" * 32, height=201))
    line_a, line_b = mine_a.read()[-1], mine_b.read()[-1]
    assert line_a["params"][0] != line_b["params"][0]
    assert line_a["params"][8] is True and line_b["params"][8] is True
    factory.doStop()


def test_a_failed_block_submission_is_logged_and_the_share_still_counts(
    stack: Stack, monkeypatch: pytest.MonkeyPatch, log_events: list[dict[str, Any]]
) -> None:
    failures: list[str] = []

    def rejecting(block: bytes, share: Any) -> Any:
        failures.append(share.job_id)
        return fail(RuntimeError("daemon said no"))

    monkeypatch.setattr(stack.sink, "block_found", rejecting)
    miner = stack.miner()
    miner.start()
    job = stack.jobs.current
    nonce = mine(job, miner.session.extranonce1, at_most=job.network_target)
    assert submit(miner, job, nonce)["result"] is True
    assert failures == [job.job_id]
    assert stack.sink.shares[-1].is_block
    block_hash = stack.sink.shares[-1].block_hash[::-1].hex()
    assert logged(log_events, LogLevel.critical) == [f"submitting block {block_hash} failed"]
    (event,) = [e for e in log_events if "log_failure" in e]
    assert "daemon said no" in str(event["log_failure"].value)


def test_an_authorized_miners_disconnect_is_one_line_with_duration_and_shares(
    stack: Stack, log_events: list[dict[str, Any]]
) -> None:
    miner = stack.miner()
    miner.start()
    job = stack.jobs.current
    nonce = mine(job, miner.session.extranonce1, at_most=job.network_target)
    assert submit(miner, job, nonce)["result"] is True
    stack.clock.advance(125)
    miner.disconnect()
    assert (
        f"miner {ADDRESS}.rig1 from 10.0.0.1 disconnected after 125 s, 1 shares accepted"
        in logged(log_events, LogLevel.info)
    )


def test_a_mass_disconnect_is_summarised_after_a_few_lines(
    stack: Stack, log_events: list[dict[str, Any]]
) -> None:
    miners = [stack.miner(host=f"10.0.1.{n}") for n in range(30)]
    for miner in miners:
        miner.start()
    anonymous = stack.miner(host="10.0.2.1")
    anonymous.call("mining.subscribe", [])
    for miner in [*miners, anonymous]:
        miner.disconnect()
    lines = [line for line in logged(log_events, LogLevel.info) if "disconnected" in line]
    assert len(lines) == 20
    stack.server.log_summary(stack.clock.seconds() + 30)
    assert "10 more stratum miners disconnected in 30 s" in logged(log_events, LogLevel.info)


def test_a_refused_authorize_is_one_line_with_the_host_and_the_reason(
    stack: Stack, log_events: list[dict[str, Any]]
) -> None:
    miner = stack.miner(host="10.0.3.1")
    miner.call("mining.subscribe", [])
    reply = miner.call("mining.authorize", ["1BvBMSEYstWetqTFn5Au4m4GFg7xJaNVN2.rig", "x"])
    bad_name = miner.call("mining.authorize", [ADDRESS + ".rig 1!", "x"])
    malformed = miner.call("mining.authorize", [])  # a broken request: abuse, not a refusal
    assert malformed["error"] is not None
    assert logged(log_events, LogLevel.warn) == [
        f"authorize from 10.0.3.1 refused: {reply['error'][1]}",
        f"authorize from 10.0.3.1 refused: {bad_name['error'][1]}",
    ]
    assert "'1BvBMSEYstWetqTFn5Au4m4GFg7xJaNVN2'" in reply["error"][1]


def test_many_refused_authorizations_are_summarised_after_a_few_lines(
    stack: Stack, log_events: list[dict[str, Any]]
) -> None:
    for n in range(30):
        miner = stack.miner(host=f"10.0.4.{n}")
        assert miner.call("mining.authorize", ["nobody", "x"])["error"][0] == 24
    assert len([line for line in logged(log_events, LogLevel.warn) if "refused:" in line]) == 20
    stack.server.log_summary(stack.clock.seconds() + 30)
    assert "10 more stratum authorizations refused in 30 s" in logged(log_events, LogLevel.warn)
    log_events.clear()
    stack.miner(host="10.0.5.1").call("mining.authorize", ["nobody", "x"])
    assert len(logged(log_events, LogLevel.warn)) == 1  # a new interval logs again

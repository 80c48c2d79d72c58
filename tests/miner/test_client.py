"""The miner's Stratum session: what it sends and how it reacts to a real pool's lines."""

from __future__ import annotations

import json
from fractions import Fraction
from typing import Any

import pytest
from twisted.internet.task import Clock
from twisted.internet.testing import StringTransport

from otedama.chain.target import difficulty_to_target
from otedama.miner.client import (
    ClientSession,
    Disconnect,
    Event,
    NewWork,
    Retarget,
    Send,
    ShareResult,
    StratumClientFactory,
    StratumClientProtocol,
    parse_difficulty,
)
from otedama.miner.work import WorkError
from otedama.stratum.codec import parse_message
from tests.conftest import notify_params

from .test_work import SUMMARY

USER = "bcrt1qsv2hexjrhpa8qwxr4la2nmmkmdh8hxkje996rc.crafted"
JOB0 = SUMMARY["jobs"]["6b05021400000000"]
JOB1 = SUMMARY["jobs"]["6b05021400000001"]


def _sent(events: list[Event]) -> list[dict[str, Any]]:
    return [json.loads(e.line) for e in events if isinstance(e, Send)]


def _feed(session: ClientSession, obj: dict[str, Any], now: float = 0.0) -> list[Event]:
    return session.receive(parse_message(json.dumps(obj)), now)


def _notify(job: dict[str, Any]) -> dict[str, Any]:
    return {"id": None, "method": "mining.notify", "params": notify_params(job)}


def _ready_session() -> ClientSession:
    """A session that went through configure, subscribe and authorize like the crafted one."""
    session = ClientSession(USER)
    session.start(0.0)
    _feed(session, SUMMARY["configure_before_subscribe"]["reply"])
    _feed(session, SUMMARY["subscribe_reply"])
    _feed(session, {"id": None, "method": "mining.set_difficulty", "params": [0.01]})
    _feed(session, _notify(JOB0))
    _feed(session, SUMMARY["authorize_reply"])
    return session


def test_start_asks_for_version_rolling_with_the_full_mask_then_subscribes_and_authorizes() -> None:
    sent = _sent(ClientSession(USER, "pw").start(0.0))
    assert [m["method"] for m in sent] == [
        "mining.configure",
        "mining.subscribe",
        "mining.authorize",
        "mining.extranonce.subscribe",
    ]
    assert sent[0]["params"] == [
        ["version-rolling"],
        {"version-rolling.mask": "ffffffff", "version-rolling.min-bit-count": 2},
    ]
    assert sent[2]["params"] == [USER, "pw"]
    assert len({m["id"] for m in sent}) == 4


def test_without_version_rolling_the_session_does_not_configure() -> None:
    sent = _sent(ClientSession(USER, request_version_rolling=False).start(0.0))
    assert [m["method"] for m in sent] == [
        "mining.subscribe",
        "mining.authorize",
        "mining.extranonce.subscribe",
    ]


def test_granted_mask_subscribe_and_authorize_lead_to_work_on_the_notified_job() -> None:
    session = ClientSession(USER)
    session.start(0.0)
    assert _feed(session, SUMMARY["configure_before_subscribe"]["reply"]) == []
    assert session.version_mask == 0x1FFFE000
    assert _feed(session, SUMMARY["subscribe_reply"]) == []
    assert session.extranonce1 == bytes.fromhex("1502056b") and session.extranonce2_size == 8
    assert _feed(session, _notify(JOB0)) == []  # not authorized yet: nothing to mine
    events = _feed(session, SUMMARY["authorize_reply"])
    assert len(events) == 1 and isinstance(events[0], NewWork)
    work = events[0]
    assert work.job.job_id == JOB0["job_id"] and work.clean
    assert work.version_mask == 0x1FFFE000
    assert work.target == difficulty_to_target(1)


def test_refused_authorization_disconnects() -> None:
    session = ClientSession(USER)
    session.start(0.0)
    events = _feed(session, {"id": 3, "result": False, "error": [24, "Unauthorized", None]})
    assert len(events) == 1 and isinstance(events[0], Disconnect)
    assert USER in events[0].reason


def test_refused_version_rolling_means_no_version_bits_in_submits() -> None:
    session = ClientSession(USER)
    session.start(0.0)
    _feed(session, {"id": 1, "result": {"version-rolling": False}, "error": None})
    _feed(session, SUMMARY["subscribe_reply"])
    _feed(session, _notify(JOB0))
    _feed(session, SUMMARY["authorize_reply"])
    sent = _sent(
        session.submit(JOB0["job_id"], "00" * 8, JOB0["ntime"], "00000001", 0x20000000, 0, 1.0)
    )
    assert len(sent[0]["params"]) == 5


def test_submit_carries_the_rolled_version_bits_inside_the_granted_mask() -> None:
    session = _ready_session()
    sent = _sent(
        session.submit(
            JOB0["job_id"], "0000000000000003", "6b050214", "1a0d0524", 0x28004000, 0, 2.0
        )
    )
    assert sent[0]["method"] == "mining.submit"
    assert sent[0]["params"] == [
        USER,
        JOB0["job_id"],
        "0000000000000003",
        "6b050214",
        "1a0d0524",
        "08004000",
    ]


def test_accepted_and_rejected_replies_are_counted_with_their_latency() -> None:
    session = _ready_session()
    first = _sent(
        session.submit(JOB0["job_id"], "00" * 8, "6b050214", "00000001", 0x20000000, 0, 2.0)
    )
    second = _sent(
        session.submit(JOB0["job_id"], "00" * 8, "6b050214", "00000002", 0x20000000, 0, 2.5)
    )
    accepted = _feed(session, {"id": first[0]["id"], "result": True, "error": None}, 2.25)
    rejected = _feed(
        session, {"id": second[0]["id"], "result": False, "error": [22, "Duplicate", None]}, 3.0
    )
    assert accepted == [ShareResult(JOB0["job_id"], True, None, 0.25)]
    assert rejected == [ShareResult(JOB0["job_id"], False, [22, "Duplicate", None], 0.5)]
    assert session.stats.accepted == 1 and session.stats.rejected == 1
    assert session.stats.accepted_difficulty == Fraction(1, 100)


def test_shares_of_jobs_dropped_by_clean_jobs_are_not_submitted() -> None:
    session = _ready_session()
    events = _feed(session, _notify({**JOB1, "clean_jobs": True}))
    assert isinstance(events[0], NewWork) and events[0].clean
    assert (
        session.submit(JOB0["job_id"], "00" * 8, "6b050214", "00000001", 0x20000000, 0, 3.0) == []
    )
    assert session.stats.stale_dropped == 1


def test_a_share_above_the_current_target_is_not_submitted() -> None:
    session = _ready_session()
    too_high = difficulty_to_target(Fraction(1, 100)) + 1
    assert (
        session.submit(JOB0["job_id"], "00" * 8, "6b050214", "00000001", 0x20000000, too_high, 1.0)
        == []
    )


def test_a_higher_difficulty_retargets_the_current_job_and_a_lower_one_waits_for_the_next() -> None:
    session = _ready_session()
    up = _feed(session, {"id": None, "method": "mining.set_difficulty", "params": [2]})
    assert up == [Retarget(JOB0["job_id"], difficulty_to_target(2))]
    down = _feed(session, {"id": None, "method": "mining.set_difficulty", "params": [0.001]})
    # The job was sent at difficulty 0.01: the pool judges it there, so keep that target.
    assert down == [Retarget(JOB0["job_id"], difficulty_to_target(Fraction(1, 100)))]
    events = _feed(session, _notify(JOB1))
    assert isinstance(events[0], NewWork)
    assert events[0].target == difficulty_to_target(Fraction(1, 1000))


def test_set_extranonce_and_set_version_mask_restart_the_current_job() -> None:
    session = _ready_session()
    events = _feed(
        session, {"id": None, "method": "mining.set_extranonce", "params": ["aabbccdd", 4]}
    )
    assert isinstance(events[0], NewWork)
    assert events[0].extranonce1 == bytes.fromhex("aabbccdd") and events[0].extranonce2_size == 4
    events = _feed(
        session, {"id": None, "method": "mining.set_version_mask", "params": ["00ff0000"]}
    )
    assert isinstance(events[0], NewWork) and events[0].version_mask == 0x00FF0000


def test_client_reconnect_and_get_version_are_answered() -> None:
    session = _ready_session()
    assert isinstance(
        _feed(session, {"id": None, "method": "client.reconnect", "params": []})[0], Disconnect
    )
    reply = _sent(_feed(session, {"id": 77, "method": "client.get_version", "params": []}))
    assert reply[0]["id"] == 77 and reply[0]["result"].startswith("otedama-cpuminer/")
    unknown = _sent(_feed(session, {"id": 78, "method": "mining.unknown", "params": []}))
    assert unknown[0]["error"][0] == 20


@pytest.mark.parametrize(
    "message",
    [
        {"id": None, "method": "mining.notify", "params": ["x"]},
        {"id": None, "method": "mining.set_difficulty", "params": ["lots"]},
        {"id": None, "method": "mining.set_difficulty", "params": [-1]},
        {"id": None, "method": "mining.set_extranonce", "params": ["zz", 4]},
        {"id": None, "method": "mining.set_version_mask", "params": ["123"]},
        {"id": 999, "result": True, "error": None},
    ],
)
def test_bad_pool_messages_are_ignored_without_changing_state(message: dict[str, Any]) -> None:
    session = _ready_session()
    assert _feed(session, message) == []
    assert session.difficulty == Fraction(1, 100)
    assert session.extranonce1 == bytes.fromhex("1502056b")
    assert session.version_mask == 0x1FFFE000


def test_difficulty_parsing_is_exact_and_refuses_non_numbers() -> None:
    assert parse_difficulty(0.001) == Fraction(1, 1000)
    assert parse_difficulty(3) == 3
    for bad in (True, None, "x", 0):
        with pytest.raises(WorkError):
            parse_difficulty(bad)


def test_empty_user_is_refused() -> None:
    with pytest.raises(WorkError, match="user name"):
        ClientSession("")


class _Listener:
    def __init__(self) -> None:
        self.events: list[object] = []

    def connected(self, protocol: StratumClientProtocol) -> None:
        self.events.append("connected")

    def disconnected(self, protocol: StratumClientProtocol) -> None:
        self.events.append("disconnected")

    def new_work(self, work: NewWork) -> None:
        self.events.append(work)

    def retarget(self, change: Retarget) -> None:
        self.events.append(change)

    def share_result(self, result: ShareResult) -> None:
        self.events.append(result)


def test_protocol_replays_the_crafted_ckpool_session_and_hands_work_to_the_listener() -> None:
    listener = _Listener()
    clock = Clock()
    proto = StratumClientFactory(USER, "x", listener, clock).buildProtocol(None)
    transport = StringTransport()
    proto.makeConnection(transport)
    lines = [json.loads(x) for x in transport.value().splitlines()]
    assert [m["method"] for m in lines] == [
        "mining.configure",
        "mining.subscribe",
        "mining.authorize",
        "mining.extranonce.subscribe",
    ]
    replies = [
        SUMMARY["configure_before_subscribe"]["reply"],
        SUMMARY["subscribe_reply"],
        {"id": None, "method": "mining.set_difficulty", "params": [0.01]},
        _notify(JOB0),
        SUMMARY["authorize_reply"],
        # ckpool refuses extranonce.subscribe ([20, "Not supported."]): mining goes on.
        {**SUMMARY["extranonce_subscribe_reply"], "id": lines[3]["id"]},
    ]
    data = b"".join(json.dumps(r).encode() + b"\n" for r in replies)
    proto.dataReceived(data[:50])  # split across reads
    proto.dataReceived(data[50:])
    works = [e for e in listener.events if isinstance(e, NewWork)]
    assert listener.events[0] == "connected" and len(works) == 1
    assert not transport.disconnecting
    transport.clear()
    proto.submit(JOB0["job_id"], "0000000000000001", "6b050214", "2c5516b7", 0x20000000, 0)
    submit = json.loads(transport.value())
    clock.advance(0.004)
    proto.dataReceived(
        json.dumps({"id": submit["id"], "result": True, "error": None}).encode() + b"\n"
    )
    result = listener.events[-1]
    assert isinstance(result, ShareResult) and result.accepted
    assert result.latency == pytest.approx(0.004)


def test_protocol_closes_on_an_overlong_line_and_skips_non_json() -> None:
    listener = _Listener()
    proto = StratumClientFactory(USER, "x", listener, Clock()).buildProtocol(None)
    transport = StringTransport()
    proto.makeConnection(transport)
    proto.dataReceived(b"not json\n")
    assert not transport.disconnecting
    proto.dataReceived(b"x" * (StratumClientProtocol.MAX_LINE + 10) + b"\n")
    assert transport.disconnecting

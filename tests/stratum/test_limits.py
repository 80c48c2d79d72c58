"""What one connection may cost: output bound, close-then-abort, abuse, timeouts, share
rate, difficulty wishes, worker names and summarised logs (task.Clock, StringTransport)."""

from __future__ import annotations

from dataclasses import replace
from fractions import Fraction
from typing import Any

import pytest
from twisted.internet.address import IPv4Address
from twisted.logger import LogLevel

from otedama.stratum.codec import MAX_ID_CHARS

from .conftest import ADDRESS, Stack, StackMaker, logged
from .test_session import DIFF, HARD_BITS, methods, mine, share_nonce, submit

# -- abuse and the id echoed in replies ---------------------------------------------------


def test_unknown_methods_count_as_abuse(make_stack: StackMaker) -> None:
    stack = make_stack(abuse_threshold=5)
    miner = stack.miner()
    for i in range(4):
        reply = miner.call("mining.no_such_method", [i])
        assert reply["error"] == [20, "Unknown method", None]
    assert not miner.closed
    miner.send("mining.no_such_method", [])
    assert miner.closed and miner.session.bad_lines == 5


def test_a_long_id_is_refused_and_not_echoed(stack: Stack) -> None:
    miner = stack.miner()
    miner.send_raw(b'{"id":"' + b"i" * 8000 + b'","method":"mining.subscribe","params":[]}\n')
    (reply,) = miner.read()
    assert reply["id"] is None and reply["error"][0] == 20
    assert f"exceeds {MAX_ID_CHARS}" in reply["error"][1]
    assert miner.session.bad_lines == 1 and not miner.session.subscribed


def test_an_id_of_nested_json_is_refused_with_a_short_reply(stack: Stack) -> None:
    miner = stack.miner()
    nested = b"[" * 400 + b"]" * 400
    miner.send_raw(b'{"id":' + nested + b',"method":"mining.subscribe","params":[]}\n')
    data = miner.transport.value()
    assert len(data) < 400 and b'"id":null' in data


def test_error_replies_never_echo_a_miners_bulk(stack: Stack) -> None:
    miner = stack.miner()
    reply = miner.call("mining.authorize", [["x" * 10000], "x"])
    assert reply["error"][0] == 20 and len(reply["error"][1]) <= 256


# -- output bound ---------------------------------------------------------------------------


def test_a_miner_that_does_not_read_is_paused_then_dropped_past_the_output_bound(
    make_stack: StackMaker,
) -> None:
    stack = make_stack(max_unsent_bytes=4096, close_grace=5)
    miner = stack.miner()
    miner.start()
    guard = miner.protocol.guard
    assert miner.transport.producer is guard
    # The transport reports its buffer full: we stop reading from the miner.
    guard.pauseProducing()
    assert miner.transport.producerState == "paused"
    for _ in range(200):
        if miner.closed:
            break
        miner.send("mining.configure", [["version-rolling"], {}])
    assert miner.closed
    assert stack.server.stats.output_overflows == 1
    assert miner.transport.producer is None  # a producer would keep the close from closing


def test_a_miner_whose_buffer_stays_full_is_dropped_after_the_stall_timeout(
    make_stack: StackMaker,
) -> None:
    stack = make_stack(stall_timeout=30, close_grace=5)
    miner = stack.miner()
    miner.start()
    miner.protocol.guard.pauseProducing()
    stack.clock.advance(29)
    assert not miner.closed
    stack.clock.advance(1)
    assert miner.closed and stack.server.stats.output_overflows == 1
    stack.clock.advance(5)
    assert miner.transport.disconnected and stack.server.stats.aborted_connections == 1


def test_reloaded_output_bounds_apply_to_connections_made_after_the_reload(
    make_stack: StackMaker,
) -> None:
    stack = make_stack(max_unsent_bytes=4096, stall_timeout=30)
    before = stack.miner()
    before.start()
    stack.server.update_settings(
        replace(stack.settings, max_unsent_bytes=8192, stall_timeout=45, close_grace=2)
    )
    after = stack.miner(port=2)
    after.start()
    assert (before.protocol.guard.limit, before.protocol.guard.stall_timeout) == (4096, 30)
    assert (after.protocol.guard.limit, after.protocol.guard.stall_timeout) == (8192, 45)
    before.protocol.close()  # the close grace is read when a close starts
    stack.clock.advance(2)
    assert before.transport.disconnected and stack.server.stats.aborted_connections == 1


def test_a_miner_that_reads_again_is_resumed_and_kept(make_stack: StackMaker) -> None:
    stack = make_stack(max_unsent_bytes=4096)
    miner = stack.miner()
    miner.start()
    guard = miner.protocol.guard
    guard.pauseProducing()
    miner.call("mining.configure", [["version-rolling"], {}])
    guard.resumeProducing()
    assert miner.transport.producerState == "producing"
    for _ in range(100):
        miner.call("mining.configure", [["version-rolling"], {}])
    stack.clock.advance(120)  # no stall timer left behind by the resumed pause
    assert not miner.closed and stack.server.stats.output_overflows == 0


def test_a_closed_connection_that_cannot_flush_is_aborted_after_the_grace(
    make_stack: StackMaker,
) -> None:
    stack = make_stack(abuse_threshold=1, close_grace=5)
    miner = stack.miner()
    miner.send("mining.no_such_method", [])
    assert miner.transport.disconnecting and not miner.transport.disconnected
    stack.clock.advance(4.9)
    assert stack.server.stats.aborted_connections == 0
    stack.clock.advance(0.2)
    assert miner.transport.disconnected  # StringTransport's mark of abortConnection
    assert stack.server.stats.aborted_connections == 1


def test_a_connection_that_closes_in_time_is_not_aborted_and_frees_its_slot(
    make_stack: StackMaker,
) -> None:
    stack = make_stack(abuse_threshold=1, close_grace=5, max_connections_per_ip=1)
    miner = stack.miner()
    miner.send("mining.no_such_method", [])
    miner.disconnect()
    stack.clock.advance(10)
    assert stack.server.stats.aborted_connections == 0
    assert stack.server.connections_from("10.0.0.1") == 0
    assert stack.miner(port=2).session is not None


# -- difficulty wishes and the share rate ---------------------------------------------------


def test_suggest_difficulty_cannot_drag_vardiff_back_to_the_floor(make_stack: StackMaker) -> None:
    stack = make_stack(vardiff=True, retarget_interval=3600, suggest_interval=60)
    miner = stack.miner()
    miner.start()
    miner.session.set_difficulty(Fraction(4))  # where vardiff took it
    miner.read()
    for _ in range(5):
        stack.clock.advance(120)
        miner.read()  # the job manager's refreshed job
        assert miner.call("mining.suggest_difficulty", [0.0001])["result"] is True
        assert miner.pending() == []  # no set_difficulty, no notify: nothing amplified
    assert miner.session.difficulty == 4


def test_suggest_difficulty_before_work_is_the_start_even_with_vardiff(
    make_stack: StackMaker,
) -> None:
    stack = make_stack(vardiff=True)
    miner = stack.miner()
    miner.call("mining.suggest_difficulty", [0.002])
    assert miner.start()[0]["params"] == [0.002]


def test_suggest_difficulty_changes_a_working_difficulty_once_per_interval(
    make_stack: StackMaker,
) -> None:
    stack = make_stack(suggest_interval=60)
    miner = stack.miner()
    miner.start()
    miner.call("mining.suggest_difficulty", [4])
    assert methods(miner.pending()) == ["mining.set_difficulty", "mining.notify"]
    for value in (8, 0.5, 16):
        miner.call("mining.suggest_difficulty", [value])
        assert miner.pending() == []
    assert miner.session.difficulty == 4
    stack.clock.advance(60)
    miner.read()
    miner.call("mining.suggest_difficulty", [8])
    assert miner.pending()[0] == {"id": None, "method": "mining.set_difficulty", "params": [8]}


def test_submits_over_the_share_rate_are_refused_unchecked(make_stack: StackMaker) -> None:
    stack = make_stack(
        bits=HARD_BITS,
        start_difficulty=DIFF,
        min_difficulty=Fraction(1, 2**32),
        max_share_rate=1.0,
        share_burst=3,
    )
    miner = stack.miner()
    miner.start()
    job = stack.jobs.current
    nonces: list[str] = []
    start = 0
    for _ in range(6):
        nonce = share_nonce(miner, job, start=start)
        nonces.append(nonce)
        start = int(nonce, 16) + 1
    replies = [submit(miner, job, nonce) for nonce in nonces[:5]]
    assert [r["result"] for r in replies[:3]] == [True, True, True]
    assert [r["error"] for r in replies[3:]] == [[20, "Too many shares, slow down", None]] * 2
    assert stack.server.stats.rate_limited == 2 and len(stack.sink.shares) == 3
    stack.clock.advance(1)
    assert submit(miner, job, nonces[5])["result"] is True


# -- timeouts --------------------------------------------------------------------------------


def test_the_idle_timer_is_reset_only_by_complete_lines(make_stack: StackMaker) -> None:
    stack = make_stack(idle_timeout=120)
    trickle = stack.miner(port=1)
    trickle.start()
    for _ in range(30):
        stack.clock.advance(5)
        trickle.send_raw(b" ")
    assert trickle.closed
    assert stack.server.stats.timeouts == 1


def test_a_connection_that_never_authorizes_is_closed_at_the_deadline(
    make_stack: StackMaker,
) -> None:
    stack = make_stack(authorize_timeout=60, idle_timeout=600)
    lingering = stack.miner(port=1)
    working = stack.miner(port=2)
    lingering.call("mining.subscribe", [])
    working.start()
    for _ in range(11):
        stack.clock.advance(5)
        lingering.call("mining.configure", [[], {}])
    assert not lingering.closed
    stack.clock.advance(5)
    assert lingering.closed and not working.closed
    assert stack.server.stats.timeouts == 1


# -- worker names ----------------------------------------------------------------------------


@pytest.mark.parametrize(
    ("user", "code_point"),
    [
        ("\n\u2028 " + ADDRESS + ".ws\r\n", "U+000A"),
        (ADDRESS + ".ws\u2028", "U+2028"),
        (ADDRESS + ".w\u2029s", "U+2029"),
        (ADDRESS + "\x00.ws", "U+0000"),
        (ADDRESS + ".ws\x1b[2J", "U+001B"),
        (ADDRESS + ".\u202ews", "U+202E"),
    ],
)
def test_worker_names_with_control_or_separator_characters_are_refused(
    stack: Stack, user: str, code_point: str
) -> None:
    miner = stack.miner()
    miner.call("mining.subscribe", [])
    reply = miner.call("mining.authorize", [user, "x"])
    assert reply["error"][0] == 24 and code_point in reply["error"][1]
    assert "\n" not in reply["error"][1] and "\u2028" not in reply["error"][1]
    assert not miner.session.authorized


def test_a_padded_worker_name_counts_as_the_same_worker(stack: Stack) -> None:
    miner = stack.miner()
    miner.start(user="  " + ADDRESS + ".ws ")
    assert list(miner.session.workers) == [ADDRESS + ".ws"]
    job = stack.jobs.current
    nonce = mine(job, miner.session.extranonce1, at_most=job.network_target)
    assert submit(miner, job, nonce, worker=" " + ADDRESS + ".ws")["result"] is True
    assert stack.sink.shares[-1].worker == ADDRESS + ".ws"


def test_an_overlong_user_name_is_refused(stack: Stack) -> None:
    miner = stack.miner()
    reply = miner.call("mining.authorize", [ADDRESS + "." + "w" * 300, "x"])
    assert reply["error"][0] == 24 and "too long" in reply["error"][1]


# -- summarised logs -------------------------------------------------------------------------


def test_refused_connections_are_summarised_per_interval(
    make_stack: StackMaker, log_events: list[dict[str, Any]]
) -> None:
    stack = make_stack(max_connections_per_ip=1, log_interval=30, sweep_interval=5)
    stack.miner("10.0.0.9", 1)
    for port in range(2, 502):
        assert stack.factory.buildProtocol(IPv4Address("TCP", "10.0.0.9", port)) is None
    assert logged(log_events, LogLevel.warn) == []
    stack.clock.advance(30)
    (line,) = logged(log_events, LogLevel.warn)
    assert line.startswith("refused 500 stratum connections in 30 s")
    assert "over 1 connections per IP (500)" in line and "10.0.0.9 (500)" in line
    assert stack.server.stats.refused_connections == 500
    stack.clock.advance(30)
    assert len(logged(log_events, LogLevel.warn)) == 1  # nothing new, nothing logged


def test_authorizations_are_summarised_not_logged_one_by_one(
    make_stack: StackMaker, log_events: list[dict[str, Any]]
) -> None:
    stack = make_stack(log_interval=30, sweep_interval=5)
    for port in range(3):
        stack.miner(port=port).start()
    assert logged(log_events) == []
    stack.clock.advance(30)
    assert logged(log_events, LogLevel.info) == [
        "3 stratum workers authorized in 30 s; 3 connections"
    ]
    assert stack.server.stats.authorized == 3

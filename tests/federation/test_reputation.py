"""Peer reputation arithmetic on explicit times (task.Clock)."""

from __future__ import annotations

import math

import pytest
from hypothesis import given
from hypothesis import strategies as st
from twisted.internet.task import Clock

from otedama.federation.reputation import (
    BAD_HALF_LIFE,
    GOOD_HALF_LIFE,
    PENALTIES,
    PRIOR,
    REWARDS,
    PeerRecord,
    Penalty,
    Reputation,
    Reward,
    penalty_for,
)
from otedama.federation.shares import Rejection

PEER = b"\x01" * 32
OTHER = b"\x02" * 32
HOUR = 3600.0
START = 1_800_000_000.0


@pytest.fixture
def clock() -> Clock:
    clock = Clock()
    clock.advance(START)
    return clock


def test_a_peer_never_seen_is_neutral(clock: Clock) -> None:
    assert Reputation().score(PEER, clock.seconds()) == 0.5


def test_score_follows_the_documented_formula(clock: Clock) -> None:
    rep = Reputation()
    now = clock.seconds()
    for _ in range(3):
        rep.reward(PEER, Reward.VALID_SHARE, now)
    rep.penalise(PEER, Penalty.INVALID_SHARE, now)
    good, bad = 3 * REWARDS[Reward.VALID_SHARE], PENALTIES[Penalty.INVALID_SHARE]
    assert rep.score(PEER, now) == pytest.approx((PRIOR + good) / (2 * PRIOR + good + bad))
    assert rep.score(OTHER, now) == 0.5


def test_a_forged_share_from_a_new_peer_puts_it_below_the_default_threshold(
    clock: Clock,
) -> None:
    rep = Reputation()
    score = rep.penalise(PEER, Penalty.INVALID_SHARE, clock.seconds())
    assert score == pytest.approx(10 / 25)
    assert score < 0.5


def test_a_peer_is_below_neutral_exactly_when_penalties_outweigh_rewards(clock: Clock) -> None:
    rep = Reputation()
    now = clock.seconds()
    for _ in range(10):
        rep.reward(PEER, Reward.VALID_SHARE, now)
    rep.penalise(PEER, Penalty.BAD_SIGNATURE, now)  # bad == good == 10
    assert rep.score(PEER, now) == 0.5
    rep.penalise(PEER, Penalty.LATE, now)
    assert rep.score(PEER, now) < 0.5


def test_penalties_halve_every_bad_half_life(clock: Clock) -> None:
    rep = Reputation()
    rep.penalise(PEER, Penalty.UNDERPAID, clock.seconds())  # bad = 20
    clock.advance(BAD_HALF_LIFE)
    assert rep.score(PEER, clock.seconds()) == pytest.approx(PRIOR / (2 * PRIOR + 10))
    clock.advance(BAD_HALF_LIFE)
    assert rep.score(PEER, clock.seconds()) == pytest.approx(PRIOR / (2 * PRIOR + 5))


def test_rewards_halve_every_good_half_life(clock: Clock) -> None:
    rep = Reputation()
    for _ in range(20):
        rep.reward(PEER, Reward.VALID_SHARE, clock.seconds())
    clock.advance(GOOD_HALF_LIFE)
    assert rep.score(PEER, clock.seconds()) == pytest.approx((PRIOR + 10) / (2 * PRIOR + 10))


def test_a_reformed_peer_recovers_slowly_to_neutral(clock: Clock) -> None:
    """Ten bad signatures: below 0.5 for days, then exactly 0.5 once forgotten."""
    rep = Reputation()
    for _ in range(10):
        rep.penalise(PEER, Penalty.BAD_SIGNATURE, clock.seconds())
    scores = []
    for _ in range(14):
        clock.advance(BAD_HALF_LIFE)
        scores.append(rep.score(PEER, clock.seconds()))
    assert scores == sorted(scores)
    assert all(s < 0.5 for s in scores[:13])
    assert scores[-1] == 0.5
    assert 13 * BAD_HALF_LIFE / HOUR > 6 * 24


def test_good_behaviour_speeds_recovery(clock: Clock) -> None:
    rep = Reputation()
    rep.penalise(PEER, Penalty.INVALID_SHARE, clock.seconds())
    rep.penalise(OTHER, Penalty.INVALID_SHARE, clock.seconds())
    for _ in range(6):
        clock.advance(60)
        rep.reward(PEER, Reward.VALID_SHARE, clock.seconds())
    now = clock.seconds()
    assert rep.score(OTHER, now) < 0.5 < rep.score(PEER, now)


def test_a_clock_that_goes_back_does_not_grow_evidence(clock: Clock) -> None:
    rep = Reputation()
    rep.penalise(PEER, Penalty.FLOOD, clock.seconds())
    before = rep.score(PEER, clock.seconds())
    assert rep.score(PEER, clock.seconds() - HOUR) == before


def test_reasons_are_typed(clock: Clock) -> None:
    rep = Reputation()
    with pytest.raises(ValueError, match="not a penalty"):
        rep.penalise(PEER, Reward.VALID_SHARE, clock.seconds())  # type: ignore[arg-type]
    with pytest.raises(ValueError, match="not a reward"):
        rep.reward(PEER, Penalty.FLOOD, clock.seconds())  # type: ignore[arg-type]


def test_every_reason_has_a_positive_weight() -> None:
    assert set(REWARDS) == set(Reward)
    assert set(PENALTIES) == set(Penalty)
    assert all(w > 0 for w in [*REWARDS.values(), *PENALTIES.values()])


@given(
    events=st.lists(
        st.tuples(
            st.one_of(st.sampled_from(list(Reward)), st.sampled_from(list(Penalty))),
            st.floats(min_value=0, max_value=7 * 24 * 3600),
        ),
        max_size=50,
    )
)
def test_the_score_stays_within_zero_and_one(events: list[tuple[Reward | Penalty, float]]) -> None:
    rep = Reputation()
    now = START
    for reason, step in events:
        now += step
        if isinstance(reason, Reward):
            score = rep.reward(PEER, reason, now)
        else:
            score = rep.penalise(PEER, reason, now)
        assert 0.0 <= score <= 1.0 and math.isfinite(score)


def test_snapshot_and_restore_keep_the_scores(clock: Clock) -> None:
    rep = Reputation()
    rep.reward(PEER, Reward.VALID_BLOCK, clock.seconds())
    rep.penalise(OTHER, Penalty.REPLAY, clock.seconds())
    clock.advance(HOUR)
    records = rep.snapshot(clock.seconds())
    assert [r.peer_key for r in records] == [PEER, OTHER]
    restored = Reputation()
    restored.restore(records)
    clock.advance(5 * HOUR)
    for key in (PEER, OTHER):
        assert restored.score(key, clock.seconds()) == pytest.approx(
            rep.score(key, clock.seconds())
        )


def test_snapshot_leaves_out_forgotten_peers(clock: Clock) -> None:
    rep = Reputation()
    rep.penalise(PEER, Penalty.LATE, clock.seconds())
    clock.advance(30 * BAD_HALF_LIFE)
    assert rep.snapshot(clock.seconds()) == []


@pytest.mark.parametrize(
    "record",
    [
        dict(peer_key=b"", good=0.0, bad=0.0, updated=0.0),
        dict(peer_key=PEER, good=-1.0, bad=0.0, updated=0.0),
        dict(peer_key=PEER, good=0.0, bad=math.nan, updated=0.0),
        dict(peer_key=PEER, good=0.0, bad=0.0, updated=math.inf),
    ],
)
def test_bad_stored_records_are_refused(record: dict[str, object]) -> None:
    with pytest.raises(ValueError):
        PeerRecord(**record)  # type: ignore[arg-type]


def test_memory_is_bounded_by_forgetting_the_least_recently_updated(clock: Clock) -> None:
    rep = Reputation(max_peers=2)
    keys = [bytes([n]) * 32 for n in range(3)]
    for key in keys:
        rep.penalise(key, Penalty.FLOOD, clock.seconds())
        clock.advance(1)
    rep.reward(keys[1], Reward.TIMELY, clock.seconds())
    rep.penalise(b"\x09" * 32, Penalty.FLOOD, clock.seconds())
    assert len(rep) == 2
    now = clock.seconds()
    assert rep.score(keys[0], now) == 0.5  # forgotten first
    assert rep.score(keys[2], now) == 0.5  # then the next least recently updated
    assert rep.score(keys[1], now) < 0.5


def test_restore_keeps_the_most_recent_within_the_bound() -> None:
    records = [PeerRecord(bytes([n]) * 32, 0.0, 5.0, START + n) for n in range(5)]
    rep = Reputation(max_peers=2)
    rep.restore(records)
    assert [r.peer_key for r in rep.snapshot(START + 5)] == [bytes([3]) * 32, bytes([4]) * 32]


@pytest.mark.parametrize(
    ("rejection", "penalty"),
    [
        (Rejection.STALE, Penalty.LATE),
        (Rejection.TOO_OLD, Penalty.LATE),
        (Rejection.UNDERPAYS, Penalty.UNDERPAID),
        (Rejection.INSUFFICIENT_WORK, Penalty.INVALID_SHARE),
        (Rejection.NOT_COMMITTED, Penalty.INVALID_SHARE),
        (Rejection.BAD_MERKLE_ROOT, Penalty.INVALID_SHARE),
    ],
)
def test_each_rejection_has_its_penalty(rejection: Rejection, penalty: Penalty) -> None:
    assert penalty_for(rejection) is penalty


def test_a_share_paying_only_its_finder_costs_more_than_a_forged_one(clock: Clock) -> None:
    rep = Reputation()
    now = clock.seconds()
    assert rep.penalise(PEER, penalty_for(Rejection.UNDERPAYS), now) < rep.penalise(
        OTHER, penalty_for(Rejection.INSUFFICIENT_WORK), now
    )

"""Vardiff: hysteresis band, windows, bounds, quiet miners, and the session wiring."""

from __future__ import annotations

from fractions import Fraction

import pytest

from otedama.stratum.vardiff import Vardiff, VardiffWindow, clamp_difficulty, round_difficulty

from .conftest import StackMaker
from .test_session import mine, submit

LOW, HIGH = Fraction(1, 10000), Fraction(10**6)


def _feed(
    vardiff: Vardiff,
    window: VardiffWindow,
    interval: float,
    count: int,
    diff: Fraction,
    start: float = 0.0,
) -> list[Fraction | None]:
    return [
        vardiff.on_share(window, start + interval * (i + 1), diff, LOW, HIGH) for i in range(count)
    ]


def test_a_rate_inside_the_band_never_retargets() -> None:
    vardiff = Vardiff(target_interval=10, retarget_interval=60)
    window = VardiffWindow(0.0)
    for interval in (6.0, 10.0, 19.0):
        assert set(_feed(vardiff, window, interval, 40, Fraction(8), start=window.start)) == {None}


def test_too_many_shares_raise_the_difficulty_by_the_observed_ratio() -> None:
    vardiff = Vardiff(target_interval=10, retarget_interval=60, max_window_shares=30)
    window = VardiffWindow(0.0)
    results = _feed(vardiff, window, 1.0, 30, Fraction(1))
    assert results[:-1] == [None] * 29
    assert results[-1] == Fraction(10)
    assert window.count == 0 and window.start == 30.0


def test_too_few_shares_lower_the_difficulty_after_the_retarget_interval() -> None:
    vardiff = Vardiff(target_interval=10, retarget_interval=60)
    window = VardiffWindow(0.0)
    assert vardiff.on_share(window, 30.0, Fraction(90), LOW, HIGH) is None
    # Two shares in 90 s: 45 s per share, 4.5 times too slow.
    assert vardiff.on_share(window, 90.0, Fraction(90), LOW, HIGH) == Fraction(20)


def test_a_miner_gone_quiet_is_lowered_without_shares() -> None:
    vardiff = Vardiff(target_interval=10, retarget_interval=60)
    window = VardiffWindow(0.0)
    assert vardiff.on_idle(window, 59.0, Fraction(100), LOW, HIGH) is None
    # No share in 100 s counts as at least 100 s per share: a tenth of the difficulty.
    assert vardiff.on_idle(window, 100.0, Fraction(100), LOW, HIGH) == Fraction(10)


def test_changes_stay_within_bounds_and_per_step_limits() -> None:
    vardiff = Vardiff(target_interval=10, retarget_interval=60, max_window_shares=30, max_factor=4)
    window = VardiffWindow(0.0)
    # 10,000 times too fast, but one step moves at most max_factor.
    assert _feed(vardiff, window, 0.001, 30, Fraction(1))[-1] == Fraction(4)
    window = VardiffWindow(0.0)
    results = [
        vardiff.on_share(window, 0.001 * (i + 1), Fraction(1), LOW, Fraction(2)) for i in range(30)
    ]
    assert results[-1] == Fraction(2)
    # Already at the floor: nothing to lower.
    window = VardiffWindow(0.0)
    assert vardiff.on_idle(window, 10_000.0, LOW, LOW, HIGH) is None


def test_difficulties_are_rounded_to_three_significant_digits() -> None:
    assert round_difficulty(1 / 3) == Fraction(333, 1000)
    assert round_difficulty(123456.0) == Fraction(123000)
    assert round_difficulty(Fraction(1, 7000)) == Fraction(143, 1000000)
    assert clamp_difficulty(Fraction(5), Fraction(1), Fraction(3)) == 3
    with pytest.raises(ValueError):
        round_difficulty(0)


@pytest.mark.parametrize(
    "kwargs",
    [
        {"target_interval": 0},
        {"retarget_interval": -1},
        {"max_window_shares": 1},
        {"max_factor": 1},
    ],
)
def test_bad_policy_settings_are_refused(kwargs: dict[str, float]) -> None:
    with pytest.raises(ValueError):
        Vardiff(**kwargs)  # type: ignore[arg-type]


def test_a_fast_miner_gets_a_higher_difficulty_and_a_job_to_use_it_on(
    make_stack: StackMaker,
) -> None:
    stack = make_stack(vardiff=True, start_difficulty=Fraction(1, 10000), target_share_interval=10)
    miner = stack.miner()
    miner.start()
    job = stack.jobs.current
    # Regtest blocks are shares too: easy to find many quickly.
    target = job.network_target
    nonce = 0
    for i in range(30):
        stack.clock.advance(0.1)
        found = mine(job, miner.session.extranonce1, at_most=target, start=nonce)
        nonce = int(found, 16) + 1
        assert submit(miner, job, found)["result"] is True, i
    lines = miner.pending()
    assert [m["method"] for m in lines] == ["mining.set_difficulty", "mining.notify"]
    assert lines[0]["params"][0] > 0.0001
    assert lines[1]["params"][8] is False
    assert miner.session.difficulty == Fraction(str(lines[0]["params"][0]))


def test_a_quiet_miner_is_lowered_by_the_sweep(make_stack: StackMaker) -> None:
    stack = make_stack(vardiff=True, start_difficulty=Fraction(64), target_share_interval=10)
    miner = stack.miner()
    miner.start()
    miner.read()
    stack.clock.advance(120)
    lines = miner.read()
    assert lines[0]["method"] == "mining.set_difficulty"
    assert lines[0]["params"][0] < 64
    assert lines[1]["method"] == "mining.notify"
    assert not miner.closed

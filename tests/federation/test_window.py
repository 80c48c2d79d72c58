"""The federation window: dedup, pruning by time, bounded memory, exact totals."""

from __future__ import annotations

import random
from fractions import Fraction

import pytest
from hypothesis import given
from hypothesis import strategies as st

from otedama.chain.hashing import sha256d
from otedama.config import ConfigError, load_config
from otedama.federation.shares import START_FACTOR_BITS, share_target, share_work
from otedama.federation.window import (
    RETENTION_MARGIN,
    FederationWindow,
    NodeTotals,
    WindowEntry,
)

from .shares_support import EASY, NODE, NOW, PAYOUT, make_share, script

HOUR = 3600.0


def node(n: int) -> bytes:
    return bytes([n]) * 20


def entry(
    n: int, owner: int, time: float, work: int = 10, payout: int | None = None
) -> WindowEntry:
    return WindowEntry(
        share_hash=sha256d(n.to_bytes(8, "big")),
        node_id=node(owner),
        payout_script=script(owner if payout is None else payout),
        work=work,
        time=int(time),
    )


def test_a_verified_share_enters_once() -> None:
    window = FederationWindow(2 * HOUR)
    share = make_share()
    assert window.add(share, NOW)
    assert not window.add(share, NOW + 1)
    assert share.share_hash in window
    assert len(window) == 1
    state = window.at(NOW)
    assert state.node(NODE) == NodeTotals(1, share_work(EASY))
    assert state.script_weights == {PAYOUT: share_work(EASY)}


def test_totals_and_parts_are_exact() -> None:
    window = FederationWindow(2 * HOUR)
    window.add(entry(1, 1, NOW, work=1), NOW)
    window.add(entry(2, 2, NOW, work=2), NOW)
    window.add(entry(3, 2, NOW, work=3, payout=9), NOW)
    state = window.at(NOW)
    assert (state.shares, state.total_work) == (3, 6)
    assert state.part(node(2)) == Fraction(5, 6)
    assert state.part(node(7)) == 0
    assert dict(state.nodes) == {node(1): NodeTotals(1, 1), node(2): NodeTotals(2, 5)}
    # A node that changed its payout script is paid on both, by the work under each.
    assert dict(state.script_weights) == {script(1): 1, script(2): 2, script(9): 3}


def test_an_empty_window_has_no_parts() -> None:
    state = FederationWindow(2 * HOUR).at(NOW)
    assert (state.shares, state.total_work) == (0, 0)
    assert state.part(NODE) == 0
    assert dict(state.nodes) == {}
    assert dict(state.script_weights) == {}


def test_the_window_at_a_time_holds_the_shares_of_the_duration_before_it() -> None:
    window = FederationWindow(2 * HOUR)
    window.add(entry(1, 1, NOW - 2 * HOUR - 1), NOW)  # kept in the margin only
    window.add(entry(2, 2, NOW - 2 * HOUR), NOW)
    window.add(entry(3, 3, NOW - 100), NOW)
    window.add(entry(4, 4, NOW), NOW)
    assert len(window) == 4
    assert list(window.at(NOW).nodes) == [node(2), node(3), node(4)]
    assert list(window.at(NOW - 100).nodes) == [node(1), node(2), node(3)]
    assert list(window.at(NOW - 101).nodes) == [node(1), node(2)]
    assert window.at(NOW - 100).total_work == 30


def test_shares_leave_after_the_window_and_its_margin() -> None:
    window = FederationWindow(2 * HOUR)
    window.add(entry(1, 1, NOW), NOW)
    window.add(entry(2, 2, NOW + HOUR), NOW + HOUR)
    end = NOW + 2 * HOUR + RETENTION_MARGIN
    assert window.prune(end) == 0
    assert window.prune(end + 1) == 1
    assert len(window) == 1
    state = window.at(end + 1)
    assert dict(state.nodes) == {node(2): NodeTotals(1, 10)}
    assert dict(state.script_weights) == {script(2): 10}
    assert state.total_work == 10


def test_a_share_older_than_the_window_is_not_added() -> None:
    """A replayed share whose first copy was pruned does not come back."""
    window = FederationWindow(2 * HOUR)
    old = entry(1, 1, NOW)
    window.add(old, NOW)
    window.prune(NOW + 3 * HOUR)
    assert not window.add(old, NOW + 3 * HOUR)
    assert len(window) == 0


def test_memory_is_bounded_by_evicting_the_oldest() -> None:
    window = FederationWindow(2 * HOUR, max_entries=3)
    for n in range(10):
        window.add(entry(n, n % 2 + 1, NOW + n), NOW + 10)
    assert len(window) == 3
    assert all(entry(n, n % 2 + 1, NOW + n).share_hash in window for n in (7, 8, 9))
    assert not window.add(entry(99, 1, NOW), NOW + 10)  # older than all: evicted at once
    state = window.at(NOW + 10)
    assert state.total_work == 30
    assert sum(t.work for t in state.nodes.values()) == 30


@given(
    items=st.lists(
        st.tuples(
            st.integers(min_value=0, max_value=30),  # share number (repeats are dups)
            st.integers(min_value=1, max_value=4),  # node
            st.integers(min_value=0, max_value=4 * 3600),  # time offset
            st.integers(min_value=1, max_value=10**30),  # work
        ),
        max_size=40,
    ),
    seed=st.integers(),
    back=st.integers(min_value=0, max_value=int(RETENTION_MARGIN)),
)
def test_the_state_matches_a_recount_in_any_order(
    items: list[tuple[int, int, int, int]], seed: int, back: int
) -> None:
    """The state at any retained time equals a recount of the shares of that window,
    whatever the arrival order; two windows fed the same shares agree."""
    now = NOW + 4 * HOUR
    as_of = now - back
    first = {n: entry(n, owner, NOW + offset, work) for n, owner, offset, work in items}
    entries = list(first.values())
    shuffled = list(entries)
    random.Random(seed).shuffle(shuffled)
    a, b = FederationWindow(2 * HOUR), FederationWindow(2 * HOUR)
    for e in entries:
        a.add(e, now)
    for e in shuffled:
        b.add(e, now)
    kept = [e for e in entries if as_of - 2 * HOUR <= e.time <= as_of]
    scripts: dict[bytes, int] = {}
    nodes: dict[bytes, NodeTotals] = {}
    for e in kept:
        scripts[e.payout_script] = scripts.get(e.payout_script, 0) + e.work
        totals = nodes.get(e.node_id, NodeTotals(0, 0))
        nodes[e.node_id] = NodeTotals(totals.shares + 1, totals.work + e.work)
    for window in (a, b):
        state = window.at(as_of)
        assert state.shares == len(kept)
        assert state.total_work == sum(e.work for e in kept)
        assert list(state.script_weights.items()) == sorted(scripts.items())
        assert list(state.nodes.items()) == sorted(nodes.items())
    assert a.at(as_of).share_target(10, 1 << 200) == b.at(as_of).share_target(10, 1 << 200)


def test_the_window_gives_the_share_target_of_its_shares() -> None:
    window = FederationWindow(2 * HOUR)
    network = 1 << 200
    assert window.at(NOW).share_target(10, network) == network << START_FACTOR_BITS
    window.add(entry(1, 1, NOW - 600, work=5 * 10**12), NOW)
    window.add(entry(2, 2, NOW - 300, work=300 * 10**12), NOW)
    window.add(entry(3, 1, NOW, work=300 * 10**12), NOW)
    expected = share_target(605 * 10**12, 5 * 10**12, NOW - 600, NOW, 10, network)
    assert window.at(NOW).share_target(10, network) == expected
    assert share_work(expected) == 10**13


def test_a_window_restored_from_its_entries_is_the_same() -> None:
    window = FederationWindow(2 * HOUR)
    for n in range(6):
        window.add(entry(n, n % 3 + 1, NOW - 1000 * n, work=n + 1), NOW)
    saved = window.entries()
    assert [e.time for e in saved] == sorted(e.time for e in saved)
    restored = FederationWindow(2 * HOUR)
    for e in saved:
        assert restored.add(e, NOW + 60)
    assert restored.at(NOW) == window.at(NOW)


@pytest.mark.parametrize(
    ("duration", "max_entries", "margin"), [(0, 1, 0), (-1, 1, 0), (10, 0, 0), (10, 1, -1)]
)
def test_impossible_window_sizes_are_refused(
    duration: float, max_entries: int, margin: float
) -> None:
    with pytest.raises(ValueError):
        FederationWindow(duration, max_entries, margin)


def test_config_has_the_federation_interval_and_window() -> None:
    config = load_config(data={}, env={})
    assert config.federation.share_interval == 10.0
    assert config.federation.window == 7200.0
    custom = load_config(data={"federation": {"share_interval": "30s", "window": "1h"}}, env={})
    assert (custom.federation.share_interval, custom.federation.window) == (30.0, 3600.0)
    with pytest.raises(ConfigError, match=r"federation.share_interval: expected a duration > 0"):
        load_config(data={"federation": {"share_interval": 0}}, env={})

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
from otedama.federation.window import FederationWindow, NodeTotals, WindowEntry

from .shares_support import EASY, NODE, NOW, PAYOUT, make_share, script

HOUR = 3600.0


def entry(n: int, node: int, time: float, work: int = 10, payout: int | None = None) -> WindowEntry:
    return WindowEntry(
        share_hash=sha256d(n.to_bytes(8, "big")),
        node_id=bytes([node]) * 20,
        payout_script=script(node if payout is None else payout),
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
    assert window.node(NODE) == NodeTotals(1, share_work(EASY))
    assert window.script_weights() == {PAYOUT: share_work(EASY)}


def test_totals_and_parts_are_exact() -> None:
    window = FederationWindow(2 * HOUR)
    window.add(entry(1, 1, NOW, work=1), NOW)
    window.add(entry(2, 2, NOW, work=2), NOW)
    window.add(entry(3, 2, NOW, work=3, payout=9), NOW)
    assert window.total_work == 6
    assert window.part(bytes([2]) * 20) == Fraction(5, 6)
    assert window.part(bytes([7]) * 20) == 0
    assert window.nodes() == {bytes([1]) * 20: NodeTotals(1, 1), bytes([2]) * 20: NodeTotals(2, 5)}
    # A node that changed its payout script is paid on both, by the work under each.
    assert window.script_weights() == {script(1): 1, script(2): 2, script(9): 3}


def test_an_empty_window_has_no_parts() -> None:
    window = FederationWindow(2 * HOUR)
    assert window.total_work == 0
    assert window.part(NODE) == 0
    assert window.nodes() == {}
    assert window.script_weights() == {}


def test_shares_leave_when_they_fall_out_of_the_window() -> None:
    window = FederationWindow(2 * HOUR)
    window.add(entry(1, 1, NOW), NOW)
    window.add(entry(2, 2, NOW + HOUR), NOW + HOUR)
    assert window.prune(NOW + 2 * HOUR) == 0
    assert window.prune(NOW + 2 * HOUR + 1) == 1
    assert window.nodes() == {bytes([2]) * 20: NodeTotals(1, 10)}
    assert window.script_weights() == {script(2): 10}
    assert window.total_work == 10


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
    assert [entry(n, n % 2 + 1, NOW + n).share_hash in window for n in (7, 8, 9)] == [True] * 3
    assert window.total_work == 30
    assert sum(t.work for t in window.nodes().values()) == 30


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
)
def test_totals_match_the_entries_in_any_order(
    items: list[tuple[int, int, int, int]], seed: int
) -> None:
    """The window's totals equal a recount of what it holds, whatever the arrival order,
    and two windows fed the same shares in different orders agree."""
    now = NOW + 4 * HOUR
    first = {n: entry(n, node, NOW + offset, work) for n, node, offset, work in items}
    entries = list(first.values())
    shuffled = list(entries)
    random.Random(seed).shuffle(shuffled)
    a, b = FederationWindow(2 * HOUR), FederationWindow(2 * HOUR)
    for e in entries:
        a.add(e, now)
    for e in shuffled:
        b.add(e, now)
    kept = [e for e in entries if e.time >= now - 2 * HOUR]
    assert len(a) == len(kept)
    assert a.total_work == sum(e.work for e in kept)
    for w in (a, b):
        scripts: dict[bytes, int] = {}
        for e in kept:
            scripts[e.payout_script] = scripts.get(e.payout_script, 0) + e.work
        assert w.script_weights() == dict(sorted(scripts.items()))
    assert a.nodes() == b.nodes()
    assert a.share_target(10, 1 << 200) == b.share_target(10, 1 << 200)


def test_the_window_gives_the_share_target_of_its_totals() -> None:
    window = FederationWindow(2 * HOUR)
    network = 1 << 200
    assert window.share_target(10, network) == network << START_FACTOR_BITS
    window.add(entry(1, 1, NOW - 600, work=5 * 10**12), NOW)
    window.add(entry(2, 2, NOW - 300, work=300 * 10**12), NOW)
    window.add(entry(3, 1, NOW, work=300 * 10**12), NOW)
    expected = share_target(605 * 10**12, 5 * 10**12, NOW - 600, NOW, 10, network)
    assert window.share_target(10, network) == expected
    assert share_work(expected) == 10**13


@pytest.mark.parametrize(("duration", "max_entries"), [(0, 1), (-1, 1), (10, 0)])
def test_impossible_window_sizes_are_refused(duration: float, max_entries: int) -> None:
    with pytest.raises(ValueError):
        FederationWindow(duration, max_entries)


def test_config_has_the_federation_interval_and_window() -> None:
    config = load_config(data={}, env={})
    assert config.federation.share_interval == 10.0
    assert config.federation.window == 7200.0
    custom = load_config(data={"federation": {"share_interval": "30s", "window": "1h"}}, env={})
    assert (custom.federation.share_interval, custom.federation.window) == (30.0, 3600.0)
    with pytest.raises(ConfigError, match=r"federation.share_interval: expected a duration > 0"):
        load_config(data={"federation": {"share_interval": 0}}, env={})

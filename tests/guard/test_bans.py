"""Token buckets, the invalid-work ratio, the ban list and its JSON file."""

from __future__ import annotations

from pathlib import Path

import pytest
import pytest_twisted
from twisted.internet import reactor as global_reactor

from otedama.ops.bans import (
    Ban,
    BanList,
    DdosSettings,
    JsonBanFile,
    TokenBuckets,
    WorkTally,
    read_bans,
    write_bans,
)


def test_a_bucket_allows_its_burst_then_its_rate() -> None:
    buckets = TokenBuckets(rate=2.0, burst=3, max_keys=10)
    assert [buckets.take("a", 0.0) for _ in range(4)] == [True, True, True, False]
    assert buckets.take("b", 0.0)  # another host has its own bucket
    assert not buckets.take("a", 0.4)
    assert buckets.take("a", 0.5)  # one token back after half a second at 2/s
    assert not buckets.take("a", 0.5)


def test_buckets_are_bounded_forgetting_the_least_recently_seen() -> None:
    buckets = TokenBuckets(rate=1.0, burst=1, max_keys=100)
    for i in range(1000):
        buckets.take(f"h{i}", 0.0)
    assert len(buckets) == 100


def test_one_bad_share_never_bans() -> None:
    tally = WorkTally(window=300.0, ratio=0.5, minimum=50, max_keys=100)
    assert not tally.note("h", False, 0.0)


def test_a_ban_needs_both_the_minimum_and_the_ratio_in_the_window() -> None:
    tally = WorkTally(window=300.0, ratio=0.5, minimum=5, max_keys=100)
    for _ in range(10):
        assert not tally.note("honest", True, 1.0)
    hits = [tally.note("honest", False, 1.0) for _ in range(9)]
    assert not any(hits)  # 9 invalid of 19: under half
    assert tally.note("honest", False, 1.0)  # 10 of 20: half
    flooder = [tally.note("f", False, 2.0) for _ in range(5)]
    assert flooder == [False, False, False, False, True]


def test_the_window_starts_over() -> None:
    tally = WorkTally(window=10.0, ratio=0.5, minimum=3, max_keys=100)
    tally.note("h", False, 0.0)
    tally.note("h", False, 1.0)
    assert not tally.note("h", False, 11.0)  # the first two fell out with the window


def test_bans_expire_keep_the_longer_one_and_tell_listeners() -> None:
    bans = BanList()
    heard: list[tuple[str, Ban | None]] = []
    bans.listeners.append(lambda host, ban: heard.append((host, ban)))
    first = bans.ban("1.2.3.4", 100.0, 60.0, "flood", "auto")
    assert bans.ban("1.2.3.4", 110.0, 10.0, "again", "auto") is first
    assert bans.banned("1.2.3.4", 159.0) is first
    assert bans.banned("1.2.3.4", 160.0) is None
    bans.ban("5.6.7.8", 0.0, 1e9, "x", "op")
    assert bans.unban("5.6.7.8") is not None
    assert bans.unban("5.6.7.8") is None
    assert [host for host, _ in heard] == ["1.2.3.4", "5.6.7.8", "5.6.7.8"]
    assert heard[-1][1] is None


def test_the_ban_list_is_bounded() -> None:
    bans = BanList(max_bans=3)
    for i in range(5):
        bans.ban(f"10.0.0.{i}", 0.0, 100.0 + i, "x", "auto")
    assert len(bans) == 3
    assert bans.banned("10.0.0.0", 1.0) is None  # the one ending soonest went first


def test_settings_reject_nonsense() -> None:
    with pytest.raises(ValueError, match="invalid_ratio"):
        DdosSettings(invalid_ratio=0)
    with pytest.raises(ValueError, match="message_rate"):
        DdosSettings(message_rate=0)


def test_the_ban_file_round_trips_and_skips_bad_entries(tmp_path: Path) -> None:
    path = tmp_path / "bans.json"
    assert read_bans(path) == []
    ban = Ban("2001:db8::1", 5000.0, "flood", "auto", 1400.0)
    write_bans(path, [ban])
    assert read_bans(path) == [ban]
    path.write_text('{"bans": [{"host": "1.1.1.1"}, {"host": "1.1.1.2", "until": 9}]}')
    assert read_bans(path) == [Ban("1.1.1.2", 9.0, "", "", 0.0)]


def test_restore_keeps_only_bans_in_force() -> None:
    bans = BanList()
    count = bans.restore([Ban("a", 10.0, "", "", 0.0), Ban("b", 100.0, "", "", 0.0)], now=50.0)
    assert count == 1
    assert [b.host for b in bans.active(50.0)] == ["b"]


@pytest.fixture
def threadpool() -> object:
    from twisted.python.threadpool import ThreadPool

    pool = ThreadPool(1, 1)
    pool.start()
    yield pool
    pool.stop()


@pytest_twisted.ensureDeferred
async def test_saves_coalesce_and_the_file_ends_with_the_newest(
    tmp_path: Path, threadpool: object
) -> None:
    path = tmp_path / "bans.json"
    store = JsonBanFile(path, global_reactor, threadpool)
    first = store.save([Ban("a", 1e12, "", "", 0.0)])
    second = store.save([Ban("b", 1e12, "", "", 0.0)])
    third = store.save([Ban("c", 1e12, "", "", 0.0)])
    await third
    assert first.called and second.called
    assert [b.host for b in read_bans(path)] == ["c"]
    loaded = await store.load()
    assert [b.host for b in loaded] == ["c"]

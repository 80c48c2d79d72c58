"""TemplateSource: long polling, the fallback poll, refreshes, back-off and stopping.

Most tests drive the source with a ``task.Clock`` and a fake client whose replies the test
hands out; the last ones run it against the stub daemon over real sockets.
"""

from __future__ import annotations

import dataclasses
from collections.abc import AsyncIterator
from dataclasses import dataclass, field
from typing import Any

import pytest
import pytest_twisted
from twisted.internet.defer import CancelledError, Deferred, ensureDeferred
from twisted.internet.task import Clock
from twisted.logger import Logger

from otedama.chain.template import BlockTemplate
from otedama.node.rpc import RpcConnectionError, RpcError, RpcTimeout
from otedama.node.source import TemplateSource

from .stub_bitcoind import RPC_ERRORS, Harness, LogCatcher, Reply, load_vector

LOW = load_vector("bitcoind/low-heights.json")["heights"]


def template(height: int, **changes: Any) -> BlockTemplate:
    """Core's template at ``height`` of the recorded regtest chain, optionally altered."""
    t = BlockTemplate.from_rpc(LOW[height - 1]["getblocktemplate"])
    return dataclasses.replace(t, **changes) if changes else t


T1, T2, T3 = template(1), template(2), template(3)


@dataclass
class Call:
    longpollid: str | None
    timeout: float | None
    deferred: Deferred[BlockTemplate]


@dataclass
class FakeClient:
    """Records each ``get_block_template`` call; the test answers it."""

    calls: list[Call] = field(default_factory=list)

    def get_block_template(
        self, longpollid: str | None = None, *, timeout: float | None = None
    ) -> Deferred[BlockTemplate]:
        d: Deferred[BlockTemplate] = Deferred()
        self.calls.append(Call(longpollid, timeout, d))
        return d

    def open_calls(self, longpoll: bool | None = None) -> list[Call]:
        return [
            c
            for c in self.calls
            if not c.deferred.called
            and (longpoll is None or (c.longpollid is not None) == longpoll)
        ]

    def answer(self, result: BlockTemplate | Exception, longpoll: bool | None = None) -> Call:
        """Answer the oldest open call (of the given kind)."""
        call = self.open_calls(longpoll)[0]
        if isinstance(result, Exception):
            call.deferred.errback(result)
        else:
            call.deferred.callback(result)
        return call


class Source:
    """A started TemplateSource on a fake client, with a recording subscriber."""

    def __init__(self, **options: Any) -> None:
        self.clock = Clock()
        self.client = FakeClient()
        options.setdefault("poll_interval", 5.0)
        options.setdefault("refresh_interval", 30.0)
        options.setdefault("longpoll_timeout", 600.0)
        self.source = TemplateSource(self.client, clock=self.clock, **options)
        self.logs = LogCatcher()
        self.source.log = Logger(observer=self.logs)
        self.got: list[BlockTemplate] = []
        self.source.subscribe(self.got.append)
        self.source.startService()

    def heights(self) -> list[int]:
        return [t.height for t in self.got]


@pytest.fixture
def s() -> Source:
    return Source()


def test_first_template_goes_to_every_subscriber_at_once() -> None:
    s = Source()
    other: list[BlockTemplate] = []
    s.source.subscribe(other.append)
    first = s.client.answer(T1)
    assert first.longpollid is None
    assert s.got == [T1] and other == [T1]
    assert s.source.current is T1


def test_long_poll_follows_with_the_templates_longpollid(s: Source) -> None:
    s.client.answer(T1)
    (poll,) = s.client.open_calls()
    assert poll.longpollid == T1.longpollid
    assert poll.timeout == 600.0


def test_late_subscriber_gets_the_current_template_and_can_leave(s: Source) -> None:
    s.client.answer(T1)
    late: list[BlockTemplate] = []
    leave = s.source.subscribe(late.append)
    assert late == [T1]
    leave()
    s.client.answer(T2)
    assert late == [T1]
    assert s.heights() == [1, 2]


def test_new_tip_from_the_long_poll_is_delivered_at_once(s: Source) -> None:
    s.client.answer(T1)
    s.client.answer(T2, longpoll=True)
    assert s.heights() == [1, 2]
    assert s.client.open_calls(longpoll=True)[0].longpollid == T2.longpollid
    assert s.logs.count("new block template at height 2") == 1
    # Debug only: the job manager's line (with the transactions) is the one operators read.
    assert {e["log_level"].name for e in s.logs.events} == {"debug"}


def test_same_tip_waits_for_the_refresh_interval(s: Source) -> None:
    s.client.answer(T1)
    newer_mempool = dataclasses.replace(T1, longpollid="lp-2", curtime=T1.curtime + 60)
    s.client.answer(newer_mempool, longpoll=True)
    assert s.got == [T1]
    assert s.client.open_calls(longpoll=True)[0].longpollid == "lp-2"
    s.clock.advance(5.0)
    s.client.answer(newer_mempool, longpoll=False)
    assert s.got == [T1]
    s.clock.advance(25.0)  # 30 s since the last delivery: a refresh is due
    s.client.answer(newer_mempool, longpoll=False)
    assert s.got == [T1, newer_mempool]


def test_poll_finds_a_new_tip_when_the_long_poll_stays_silent(s: Source) -> None:
    s.client.answer(T1)
    assert s.client.open_calls(longpoll=False) == []
    s.clock.advance(5.0)
    s.client.answer(T2, longpoll=False)
    assert s.heights() == [1, 2]


def test_polls_come_every_poll_interval(s: Source) -> None:
    s.client.answer(T1)
    for _ in range(3):
        s.clock.advance(4.9)
        assert s.client.open_calls(longpoll=False) == []
        s.clock.advance(0.1)
        s.client.answer(T1, longpoll=False)
    assert s.got == [T1]


def test_failures_back_off_and_are_logged_once_per_streak() -> None:
    s = Source(longpoll=False, retry_initial=1.0, retry_max=4.0)
    down = RpcConnectionError("cannot reach bitcoind at http://127.0.0.1:1")
    s.client.answer(down)
    for delay in (1.0, 2.0, 4.0, 4.0):
        s.clock.advance(delay - 0.01)
        assert s.client.open_calls() == []
        s.clock.advance(0.01)
        s.client.answer(down)
    assert s.logs.count("getting a block template failed") == 1
    assert "cannot reach bitcoind" in s.logs.lines[0]
    s.clock.advance(4.0)
    s.client.answer(T1)
    assert s.got == [T1]
    assert s.logs.count("after 5 failed attempts") == 1
    s.clock.advance(5.0)
    s.client.answer(RpcError(-9, "Bitcoin Core is not connected!"))
    assert s.logs.count("getting a block template failed") == 2


def test_a_long_poll_held_until_its_timeout_is_asked_again_without_a_failure(s: Source) -> None:
    s.client.answer(T1)
    s.client.answer(RpcTimeout("no news"), longpoll=True)
    (again,) = s.client.open_calls(longpoll=True)
    assert again.longpollid == T1.longpollid
    assert s.logs.count("failed") == 0


def test_a_late_reply_from_before_the_tip_changed_is_dropped(s: Source) -> None:
    s.client.answer(T2)
    s.clock.advance(5.0)  # a poll goes out while the tip is still at height 2...
    s.client.answer(T3, longpoll=True)  # ...then the long poll reports height 3
    s.client.answer(T2, longpoll=False)  # the poll's late answer: old tip
    assert s.heights() == [2, 3]
    assert s.source.current is T3


def test_a_reorg_to_a_lower_tip_asked_after_the_change_is_delivered(s: Source) -> None:
    s.client.answer(T3)
    s.clock.advance(5.0)
    s.client.answer(T2, longpoll=False)  # asked after height 3 was seen: a real reorg
    assert s.heights() == [3, 2]


def test_a_failing_subscriber_does_not_stop_the_others(s: Source) -> None:
    def broken(_t: BlockTemplate) -> None:
        raise RuntimeError("subscriber bug")

    after: list[BlockTemplate] = []
    s.source.subscribe(broken)
    s.source.subscribe(after.append)
    s.client.answer(T1)
    assert s.got == [T1] and after == [T1]
    assert s.logs.count("template subscriber") == 1


def test_a_daemon_without_long_polling_is_polled(s: Source) -> None:
    s.client.answer(dataclasses.replace(T1, longpollid=None))
    assert s.client.open_calls() == []
    assert s.logs.count("no long polling") == 1
    s.clock.advance(5.0)
    s.client.answer(T2)
    assert s.heights() == [1, 2]


def test_a_long_poll_answered_at_once_without_a_change_does_not_spin(s: Source) -> None:
    s.client.answer(T1)
    s.client.answer(T1, longpoll=True)
    assert s.client.open_calls(longpoll=True) == []
    s.clock.advance(5.0)
    assert len(s.client.open_calls(longpoll=True)) == 1


def test_without_long_polling_the_first_poll_goes_out_at_once() -> None:
    s = Source(longpoll=False)
    (call,) = s.client.open_calls()
    assert call.longpollid is None


def test_refresh_delivers_now_even_on_the_same_tip(s: Source) -> None:
    s.client.answer(T1)
    refreshed = ensureDeferred(s.source.refresh())
    s.client.answer(T1, longpoll=False)
    assert refreshed.result is T1
    assert s.got == [T1, T1]


def test_stop_cancels_every_outstanding_request_and_delivers_nothing_more(s: Source) -> None:
    s.client.answer(T1)
    s.clock.advance(5.0)
    pending = s.client.open_calls()
    assert len(pending) == 2  # the long poll and a poll
    stopped = s.source.stopService()
    assert stopped.called
    for call in pending:
        assert call.deferred.called
        call.deferred.addErrback(lambda f: f.trap(CancelledError))
    s.clock.advance(600.0)
    assert s.client.open_calls() == []
    assert s.got == [T1]
    assert s.logs.count("crashed") == 0


def test_a_subscriber_may_stop_the_source_during_a_delivery() -> None:
    s = Source()
    stops: list[Deferred[None]] = []
    s.source.subscribe(lambda _t: stops.append(s.source.stopService()))
    s.client.answer(T1)
    assert stops[0].called
    assert s.client.open_calls() == []
    assert s.clock.getDelayedCalls() == []


def test_stop_during_a_back_off_sleep_is_prompt() -> None:
    s = Source(longpoll=False)
    s.client.answer(RpcConnectionError("down"))
    assert s.clock.getDelayedCalls()
    s.source.stopService()
    assert s.clock.getDelayedCalls() == []


@pytest.mark.parametrize(
    "option", ["poll_interval", "refresh_interval", "longpoll_timeout", "retry_initial"]
)
def test_intervals_must_be_positive(option: str) -> None:
    with pytest.raises(ValueError, match=option):
        TemplateSource(FakeClient(), clock=Clock(), **{option: 0})


# -- against the stub daemon ------------------------------------------------------------------


@pytest_twisted.async_yield_fixture
async def harness() -> AsyncIterator[Harness]:
    h = Harness(Clock())
    yield h
    await h.close()


class Waiting:
    """A subscriber whose ``next()`` fires with the next template delivered."""

    def __init__(self) -> None:
        self.got: list[BlockTemplate] = []
        self._waiters: list[Deferred[BlockTemplate]] = []

    def __call__(self, t: BlockTemplate) -> None:
        self.got.append(t)
        waiters, self._waiters = self._waiters, []
        for d in waiters:
            d.callback(t)

    def next(self) -> Deferred[BlockTemplate]:
        d: Deferred[BlockTemplate] = Deferred()
        self._waiters.append(d)
        return d


@pytest_twisted.ensureDeferred
async def test_long_polls_the_daemon_and_delivers_the_released_template(
    harness: Harness,
) -> None:
    daemon = harness.daemon()
    daemon.stub.serve_templates(LOW[0]["getblocktemplate"])
    source = TemplateSource(harness.client(daemon.url), clock=harness.clock)
    subscriber = Waiting()
    source.subscribe(subscriber)
    first, held = subscriber.next(), daemon.stub.held_arrival()
    source.startService()
    try:
        assert (await first).height == 1
        await held
        second, held_again = subscriber.next(), daemon.stub.held_arrival()
        daemon.stub.release_template(LOW[1]["getblocktemplate"])
        assert (await second).height == 2
        longpoll = await held_again
        assert longpoll.params == [
            {"rules": ["segwit"], "longpollid": LOW[1]["getblocktemplate"]["longpollid"]}
        ]
        lost = daemon.stub.next_lost()
    finally:
        await source.stopService()
    await lost  # stopping dropped the held long poll's connection
    assert [t.height for t in subscriber.got] == [1, 2]


@pytest_twisted.ensureDeferred
async def test_keeps_retrying_while_the_daemon_is_in_ibd_then_delivers(
    harness: Harness,
) -> None:
    daemon = harness.daemon()
    ibd = RPC_ERRORS["mainnet_getblocktemplate_initial_block_download"]["jsonrpc_2.0"]
    daemon.stub.on(
        "getblocktemplate", [Reply.recorded(ibd), Reply.result(LOW[0]["getblocktemplate"])]
    )
    source = TemplateSource(
        harness.client(daemon.url), clock=harness.clock, longpoll=False, retry_initial=2.0
    )
    source.log = Logger(observer=harness.logs)
    subscriber = Waiting()
    source.subscribe(subscriber)
    got = subscriber.next()
    source.startService()
    try:
        line = await harness.logs.wait_for("getting a block template failed")
        assert "-10" in line and "initial sync" in line
        harness.clock.advance(2.0)
        assert (await got).height == 1
        assert harness.logs.count("coming again after 1 failed attempts") == 1
    finally:
        await source.stopService()


# -- outages: trouble, wake, refresh after a block ---------------------------------------------


def test_trouble_names_the_failure_from_the_first_failed_attempt_until_recovery() -> None:
    s = Source(longpoll=False, retry_initial=1.0, retry_max=4.0)
    assert s.source.trouble() is None
    s.client.answer(RpcConnectionError("cannot reach bitcoind at http://127.0.0.1:1"))
    s.clock.advance(1.0)
    s.client.answer(RpcConnectionError("cannot reach bitcoind at http://127.0.0.1:1"))
    trouble = s.source.trouble()
    assert trouble is not None
    assert "getting a block template has failed for 1 s (2 attempts)" in trouble
    assert "cannot reach bitcoind" in trouble
    s.clock.advance(2.0)
    s.client.answer(T1)
    assert s.source.trouble() is None


def test_wake_ends_every_back_off_at_once() -> None:
    s = Source(retry_initial=30.0, retry_max=30.0)
    down = RpcConnectionError("down")
    s.client.answer(down)  # the long-poll loop's first ask
    s.clock.advance(5.0)
    s.client.answer(down)  # the poll loop's first ask
    assert s.client.open_calls() == []
    s.source.wake()
    assert len(s.client.open_calls()) == 2
    assert s.clock.getDelayedCalls() == []


def test_when_one_loop_recovers_the_other_stops_waiting_out_its_back_off() -> None:
    s = Source(retry_initial=30.0, retry_max=30.0)
    s.client.answer(RpcConnectionError("down"))  # the long-poll loop's first ask
    s.clock.advance(5.0)  # the poll loop's first ask
    s.client.answer(T1, longpoll=False)
    assert s.got == [T1]
    (again,) = s.client.open_calls()  # the long-poll loop, woken without waiting 30 s
    assert again.longpollid is None
    assert s.clock.seconds() == 5.0


def test_refresh_soon_delivers_the_next_tip_while_the_long_poll_is_backing_off() -> None:
    s = Source(retry_initial=30.0, retry_max=30.0)
    s.client.answer(T1)
    s.client.answer(RpcConnectionError("down"), longpoll=True)  # long poll backs off 30 s
    s.source.refresh_soon()
    (refresh,) = [c for c in s.client.open_calls() if c.longpollid is None]
    refresh.deferred.callback(T2)
    assert s.heights() == [1, 2]
    assert s.source.trouble() is None
    assert s.logs.count("after 1 failed attempts") == 1


def test_a_failing_refresh_soon_is_logged_and_the_loops_retry_at_once() -> None:
    s = Source(longpoll=False, retry_initial=30.0, retry_max=30.0)
    s.client.answer(T1)
    s.source.refresh_soon()
    s.client.answer(RpcConnectionError("cannot reach bitcoind"))
    assert "cannot reach bitcoind" in (s.source.trouble() or "")
    assert s.logs.count("getting a block template failed") == 1
    assert s.logs.count("crashed") == 0


def test_refresh_soon_on_a_stopped_source_does_nothing() -> None:
    s = Source()
    s.source.stopService()
    s.source.refresh_soon()
    assert s.client.open_calls() == []


def test_a_request_that_fails_because_the_source_stopped_is_not_reported() -> None:
    """The HTTP client may wrap our own cancel in a connection error (a busy Stratum port
    stops the node while the first template request is out): that is no chain failure."""
    s = Source(longpoll=False)
    (call,) = s.client.open_calls()
    s.source.running = False  # stopping: stopService would cancel; the error wins the race
    call.deferred.errback(
        RpcConnectionError("cannot reach bitcoind at http://127.0.0.1:1: [CancelledError]")
    )
    assert s.logs.count("getting a block template failed") == 0
    assert s.source.trouble() is None
    assert s.logs.count("crashed") == 0

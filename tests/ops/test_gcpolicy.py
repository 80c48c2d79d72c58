"""The garbage collection policy: freeze on its interval, one full pass on the other."""

from __future__ import annotations

import gc

from twisted.internet.task import Clock

from otedama.ops.gcpolicy import GcPolicy


class FakeGc:
    def __init__(self) -> None:
        self.calls: list[str] = []
        self.frozen = False

    def collect(self, generation: int = 2) -> int:
        self.calls.append(f"collect({generation})")
        return 7 if generation == 2 else 0

    def freeze(self) -> None:
        self.calls.append("freeze")
        self.frozen = True

    def unfreeze(self) -> None:
        self.calls.append("unfreeze")
        self.frozen = False

    def get_freeze_count(self) -> int:
        return 1000 if self.frozen else 0


def test_it_freezes_each_interval_and_runs_a_full_pass_on_its_own() -> None:
    clock, fake = Clock(), FakeGc()
    policy = GcPolicy(clock, 60.0, 180.0, fake)
    policy.startService()
    assert fake.calls == []
    clock.advance(60)
    assert fake.calls == ["collect(1)", "freeze"]
    clock.advance(60)
    clock.advance(60)
    # At 180 s both fire: the full pass is unfreeze, full collect, freeze again.
    tail = " ".join(fake.calls[-5:])
    assert "unfreeze collect(2) freeze" in tail and tail.count("collect(1) freeze") == 1
    assert (policy.freezes, policy.full_passes) == (3, 1)
    assert policy.last_full is not None and policy.last_full[0] == 7
    policy.stopService()
    assert fake.calls[-1] == "unfreeze" and not fake.frozen
    clock.advance(600)
    assert fake.calls[-1] == "unfreeze"


def test_a_zero_freeze_interval_leaves_the_collector_alone() -> None:
    clock, fake = Clock(), FakeGc()
    policy = GcPolicy(clock, 0.0, 3600.0, fake)
    policy.startService()
    clock.advance(7200)
    policy.stopService()
    assert fake.calls == []


def test_on_the_real_collector_frozen_objects_leave_the_automatic_passes() -> None:
    policy = GcPolicy(Clock(), 60.0, 3600.0)
    try:
        kept = [[index] for index in range(10_000)]
        policy.freeze()
        assert gc.get_freeze_count() >= len(kept)
        policy.full()
        assert policy.last_full is not None and gc.get_freeze_count() >= len(kept)
    finally:
        gc.unfreeze()

"""Keep CPython's full garbage collections off the reactor's latency.

With 10,000 Stratum sessions the node's heap holds a few hundred thousand container
objects, and every automatic full (generation 2) collection walks all of them while
the reactor waits: about 200 ms in ``otedama bench api`` with 10,000 miners, which was
that benchmark's whole p99. Most of those objects live as long as their connection and
are freed by reference counting when it closes; the collector only has to find
*cycles*, and cycles are made and dropped by short-lived work (requests, Deferreds).

So every ``freeze_interval`` the policy collects the young generations (cheap: they
hold only what was made since the last pass) and ``gc.freeze()``\\ s everything still
alive: the automatic full collections then walk only what was made since. Once every
``full_interval`` it unfreezes and runs one full collection, so cyclic garbage that was
frozen is freed within that time (one long pause an hour instead of one a minute), and
logs what it found and how long it took. Both intervals are ``app.gc`` settings;
``freeze_interval: 0`` leaves CPython's collector as it is.
"""

from __future__ import annotations

import gc
import time
from typing import Any, Protocol

from twisted.application.service import Service
from twisted.internet.task import LoopingCall
from twisted.logger import Logger

__all__ = ["GcModule", "GcPolicy"]


class GcModule(Protocol):
    """The parts of :mod:`gc` the policy uses (a fake in tests)."""

    def collect(self, generation: int = 2) -> int: ...

    def freeze(self) -> None: ...

    def unfreeze(self) -> None: ...

    def get_freeze_count(self) -> int: ...


class GcPolicy(Service):
    """Freeze the surviving heap every ``freeze_interval`` s; a full pass every
    ``full_interval`` s."""

    log = Logger()

    def __init__(
        self,
        clock: Any,
        freeze_interval: float,
        full_interval: float,
        collector: GcModule | None = None,
    ) -> None:
        self.clock = clock
        self.freeze_interval = freeze_interval
        self.full_interval = full_interval
        self.gc: Any = gc if collector is None else collector
        self._loops: list[LoopingCall] = []
        self.freezes = 0
        self.full_passes = 0
        #: The last full pass: (unreachable objects found, seconds it took).
        self.last_full: tuple[int, float] | None = None

    @property
    def enabled(self) -> bool:
        return self.freeze_interval > 0

    def startService(self) -> None:
        super().startService()
        if not self.enabled:
            return
        intervals = [(self.freeze, self.freeze_interval)]
        if self.full_interval > 0:
            intervals.append((self.full, self.full_interval))
        for call, interval in intervals:
            loop = LoopingCall(call)
            loop.clock = self.clock
            loop.start(interval, now=False).addErrback(
                lambda failure: self.log.failure("garbage collection policy stopped", failure)
            )
            self._loops.append(loop)

    def stopService(self) -> None:
        super().stopService()
        for loop in self._loops:
            if loop.running:
                loop.stop()
        self._loops = []
        if self.enabled:
            # Give CPython back its whole heap (a later full pass frees frozen garbage).
            self.gc.unfreeze()

    def freeze(self) -> None:
        """Collect the young generations, then freeze what survived."""
        self.gc.collect(1)
        self.gc.freeze()
        self.freezes += 1

    def full(self) -> None:
        """One full collection of every object, frozen ones included; then freeze again."""
        started = time.perf_counter()
        self.gc.unfreeze()
        found = self.gc.collect()
        self.gc.freeze()
        seconds = time.perf_counter() - started
        self.full_passes += 1
        self.last_full = (found, seconds)
        self.log.info(
            "full garbage collection: {found} unreachable objects, {ms:.0f} ms;"
            " {frozen} objects frozen until the next one",
            found=found,
            ms=seconds * 1000,
            frozen=self.gc.get_freeze_count(),
        )

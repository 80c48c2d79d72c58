"""Blocking file work (appends, fsyncs, rewrites) kept off the reactor thread.

The ledger's on-disk queues (the share spool, the found-block queue) fsync what they
write. :class:`FileWorker` runs such work on one thread, in the order it was handed
over, and reports each result to the reactor as a ``Deferred``.
"""

from __future__ import annotations

import threading
from collections import deque
from collections.abc import Callable
from typing import Any, TypeVar

from twisted.internet.defer import Deferred
from twisted.internet.interfaces import IReactorFromThreads
from twisted.python.failure import Failure

T = TypeVar("T")


class FileWorker:
    """Runs blocking file work in order on one thread, off the reactor.

    The thread starts when work arrives and ends when none is left, so there is nothing
    to stop: work handed over while the node shuts down still completes (the thread is
    not a daemon, so the process waits for it), even after the reactor has stopped.
    """

    def __init__(self, reactor: IReactorFromThreads, name: str = "ledger-files") -> None:
        self.name = name
        self._reactor = reactor
        self._lock = threading.Lock()
        self._work: deque[tuple[Callable[[], Any], Deferred[Any]]] = deque()
        self._running = False

    def run(self, work: Callable[[], T]) -> Deferred[T]:
        """Run ``work()`` on the file thread; the Deferred fires with its result."""
        done: Deferred[T] = Deferred()
        with self._lock:
            self._work.append((work, done))
            if not self._running:
                self._running = True
                threading.Thread(target=self._drain, name=self.name).start()
        return done

    def _drain(self) -> None:
        while True:
            with self._lock:
                if not self._work:
                    self._running = False
                    return
                work, done = self._work.popleft()
            try:
                result = work()
            except BaseException:
                self._reactor.callFromThread(done.errback, Failure())
            else:
                self._reactor.callFromThread(done.callback, result)

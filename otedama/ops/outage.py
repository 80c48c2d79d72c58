"""Outages are not emergencies: one warning when a periodic task starts failing, one info
when it works again, nothing in between.

A periodic task that talks to the daemon or the database (the block tracker, the payout
processor) fails on every tick while the other side is down. Logging each tick with a
traceback buries the one line that matters; :class:`OutageLog` keeps one warning per
outage (the error in one line; its traceback only at debug level) and one info line when
the task succeeds again, with how many attempts failed.
"""

from __future__ import annotations

from typing import Any

from twisted.logger import Logger, LogLevel
from twisted.python.failure import Failure

__all__ = ["OutageLog", "one_line"]


def one_line(error: BaseException | None) -> str:
    """The first line of an error's message (database errors carry SQL and links after it)."""
    text = str(error).strip() or type(error).__name__ if error is not None else ""
    return text.splitlines()[0]


class OutageLog:
    """Logs the start and the end of a streak of failures of one periodic task (to the
    task's own logger, passed on each call so that a replaced logger is used).

    ``what`` names the task in both lines ("block maturity check"); ``retry`` says when it
    is tried again ("every 30 s").
    """

    def __init__(self, what: str, retry: str) -> None:
        self.what = what
        self.retry = retry
        #: Failures in a row (0: working).
        self.failures = 0

    def failed(self, log: Logger, failure: Failure | None = None, **fields: Any) -> None:
        """The task failed (call inside ``except``, or pass the Failure)."""
        failure = failure if failure is not None else Failure()
        if self.failures == 0:
            log.warn(
                "{what} failed: {error}; retrying {retry} (logged once until it works again)",
                what=self.what,
                error=one_line(failure.value),
                retry=self.retry,
                **fields,
            )
            log.failure("{what} failed (details)", failure, level=LogLevel.debug, what=self.what)
        self.failures += 1

    def succeeded(self, log: Logger, **fields: Any) -> None:
        """The task worked: ends a streak of failures with one info line."""
        if self.failures:
            log.info(
                "{what} works again after {count} failed attempts",
                what=self.what,
                count=self.failures,
                **fields,
            )
            self.failures = 0

"""OutageLog: one warning per outage (traceback only at debug), one info when it ends."""

from __future__ import annotations

from typing import Any

from twisted.logger import Logger, formatEvent

from otedama.ops.outage import OutageLog, one_line


def test_one_warning_per_streak_with_the_traceback_at_debug_and_one_info_at_the_end() -> None:
    events: list[dict[str, Any]] = []
    log = Logger(observer=events.append)
    outage = OutageLog("block maturity check", "every 30 s")
    for _ in range(3):
        try:
            raise ConnectionRefusedError("node down")
        except ConnectionRefusedError:
            outage.failed(log)
    outage.succeeded(log)
    outage.succeeded(log)  # working on: nothing to say
    levels = [e["log_level"].name for e in events]
    assert levels == ["warn", "debug", "info"]
    assert formatEvent(events[0]) == (
        "block maturity check failed: node down; retrying every 30 s "
        "(logged once until it works again)"
    )
    assert events[1]["log_failure"].check(ConnectionRefusedError)
    assert formatEvent(events[2]) == "block maturity check works again after 3 failed attempts"


def test_one_line_keeps_the_first_line_of_a_long_database_error() -> None:
    error = RuntimeError("(psycopg2.OperationalError) connection refused\n[SQL: SELECT 1]")
    assert one_line(error) == "(psycopg2.OperationalError) connection refused"
    assert one_line(TimeoutError()) == "TimeoutError"

"""Log observers built from ``monitoring.logging``: level, text or JSON, stdout and a file.

The level can change while the node runs (SIGHUP) through `LogControl.set_level`.
Twisted's own legacy chatter about ports and factories (``StratumFactory starting on
3333``, ``(TCP Port 3333 Closed)``, ``Starting factory …``) is shown only at debug level:
the node logs its listeners itself (``stratum listening on 127.0.0.1:3333``).
"""

from __future__ import annotations

import json
import re
import sys
from collections.abc import Iterable
from datetime import UTC, datetime
from pathlib import Path
from typing import IO, Any

from twisted.logger import (
    FilteringLogObserver,
    ILogFilterPredicate,
    ILogObserver,
    LogEvent,
    LogLevel,
    LogLevelFilterPredicate,
    PredicateResult,
    formatEvent,
    textFileLogObserver,
)
from twisted.python.logfile import LogFile
from zope.interface import implementer

_LEVELS = {
    "debug": LogLevel.debug,
    "info": LogLevel.info,
    "warn": LogLevel.warn,
    "error": LogLevel.error,
    "critical": LogLevel.critical,
}

_SKIP = {"format", "message", "time", "isError", "system", "message_type"}


def parse_level(name: str) -> Any:
    """Map a config level name to a `LogLevel`."""
    return _LEVELS[name]


def event_as_json(event: LogEvent) -> str:
    """One operator-friendly JSON object: time, level, namespace, message, fields."""
    record: dict[str, Any] = {
        "time": datetime.fromtimestamp(event.get("log_time", 0), UTC).isoformat(
            timespec="milliseconds"
        ),
        "level": getattr(event.get("log_level"), "name", "info"),
        "namespace": event.get("log_namespace", ""),
        "message": formatEvent(event),
    }
    for key, value in event.items():
        if key.startswith("log_") or key in _SKIP:
            continue
        record[key] = value if isinstance(value, str | int | float | bool | None) else repr(value)
    failure = event.get("log_failure")
    if failure is not None:
        record["traceback"] = failure.getTraceback()
    return json.dumps(record, ensure_ascii=False)


@implementer(ILogObserver)
class JsonLineObserver:
    """Writes `event_as_json` lines to a text stream."""

    def __init__(self, stream: IO[str]) -> None:
        self._stream = stream

    def __call__(self, event: LogEvent) -> None:
        self._stream.write(event_as_json(event) + "\n")
        self._stream.flush()


#: Twisted's legacy lines about ports and factories that say nothing an operator needs.
TWISTED_CHATTER = re.compile(
    r"\S+ starting on \S+"
    r"|\((TCP|TLS|UDP|UNIX|SSL) Port .+ Closed\)"
    r"|(Starting|Stopping) factory .*",
    re.DOTALL,
)


def is_twisted_chatter(event: LogEvent) -> bool:
    """A legacy ``log.msg`` line from Twisted about a port or a factory starting or stopping."""
    if event.get("log_namespace") != "log_legacy" or event.get("isError"):
        return False
    return TWISTED_CHATTER.fullmatch(formatEvent(event)) is not None


@implementer(ILogFilterPredicate)
class _QuietChatter:
    """Drops Twisted's port and factory chatter unless the level is debug."""

    def __init__(self, levels: LogLevelFilterPredicate) -> None:
        self._levels = levels

    def __call__(self, event: LogEvent) -> Any:
        if self._levels.defaultLogLevel > LogLevel.debug and is_twisted_chatter(event):
            return PredicateResult.no
        return PredicateResult.maybe


@implementer(ILogObserver)
class _FanOut:
    def __init__(self, observers: Iterable[Any]) -> None:
        self._observers = list(observers)

    def __call__(self, event: LogEvent) -> None:
        for observer in self._observers:
            observer(event)


class LogControl:
    """The node's log observer plus the knob to change its level live."""

    def __init__(
        self,
        level: str,
        fmt: str,
        *,
        stdout: bool = True,
        file: Path | None = None,
        max_size: int = 100 * 1024 * 1024,
        max_backups: int = 10,
        stream: IO[str] | None = None,
    ) -> None:
        self._predicate = LogLevelFilterPredicate(defaultLogLevel=parse_level(level))
        self.level = level
        self._files: list[LogFile] = []
        sinks: list[Any] = []
        if stdout:
            sinks.append(self._make_sink(stream or sys.stdout, fmt))
        if file is not None:
            file.parent.mkdir(parents=True, exist_ok=True)
            logfile = LogFile(
                file.name,
                str(file.parent),
                rotateLength=max_size,
                maxRotatedFiles=max_backups or None,
            )
            self._files.append(logfile)
            sinks.append(self._make_sink(logfile, fmt))  # type: ignore[arg-type]
        predicates: list[Any] = [self._predicate, _QuietChatter(self._predicate)]
        fan_out: Any = _FanOut(sinks)
        self.observer: Any = FilteringLogObserver(fan_out, predicates)

    @staticmethod
    def _make_sink(stream: IO[str], fmt: str) -> Any:
        if fmt == "json":
            return JsonLineObserver(stream)
        return textFileLogObserver(stream)

    def set_level(self, level: str) -> None:
        """Change the level of everything the node logs."""
        self._predicate.defaultLogLevel = parse_level(level)
        self._predicate.clearLogLevels()
        self.level = level

    def close(self) -> None:
        for logfile in self._files:
            logfile.close()

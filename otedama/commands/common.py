"""What several commands share: the ``--config`` argument, loading it, the database."""

from __future__ import annotations

import argparse
import os
import sys
from collections.abc import Callable
from typing import Any, TypeVar

from sqlalchemy import Connection

from otedama.config import DEFAULT_CONFIG_PATH, Config, ConfigError, load_config
from otedama.ledger import db

__all__ = [
    "add_config_argument",
    "begin_logging",
    "config_path",
    "fail",
    "load_or_report",
    "usage_of",
    "with_database",
]

T = TypeVar("T")


def add_config_argument(parser: argparse.ArgumentParser) -> None:
    """``--config/-c FILE`` (default: $OTEDAMA_CONFIG, else /etc/otedama.yaml)."""
    parser.add_argument(
        "--config",
        "-c",
        default=None,
        metavar="FILE",
        help=f"config file (default: $OTEDAMA_CONFIG, else {DEFAULT_CONFIG_PATH})",
    )


def config_path(args: argparse.Namespace) -> str:
    """The config file a command reads: ``--config``, else $OTEDAMA_CONFIG, else the default."""
    return str(args.config or os.environ.get("OTEDAMA_CONFIG") or DEFAULT_CONFIG_PATH)


def load_or_report(args: argparse.Namespace) -> Config | None:
    """Load the config for a command; print every problem and return None if invalid."""
    path = config_path(args)
    try:
        return load_config(path)
    except ConfigError as error:
        print(f"{path}: invalid configuration:", file=sys.stderr)
        for problem in error.problems:
            print(f"  {problem}", file=sys.stderr)
        return None


def usage_of(parser: argparse.ArgumentParser) -> int:
    """A command group run without a sub-command: print its help, exit 2."""
    parser.print_help()
    return 2


def fail(message: str) -> int:
    """Say what went wrong on stderr; exit code 1."""
    print(message, file=sys.stderr)
    return 1


def begin_logging(verbose: bool = False) -> None:
    """Log as text to stderr (a foreground command), at info level or debug if ``verbose``."""
    from twisted.logger import (
        FilteringLogObserver,
        LogLevel,
        LogLevelFilterPredicate,
        globalLogBeginner,
        textFileLogObserver,
    )

    level = LogLevel.debug if verbose else LogLevel.info
    # zope interfaces have no mypy plugin here: pass the providers as Any.
    text: Any = textFileLogObserver(sys.stderr)
    predicate: Any = LogLevelFilterPredicate(defaultLogLevel=level)
    observer: Any = FilteringLogObserver(text, [predicate])
    globalLogBeginner.beginLoggingTo([observer], redirectStandardIO=False)


def with_database(args: argparse.Namespace, fn: Callable[[Connection, str], T]) -> T | int:
    """Load the config, connect, and run ``fn(connection, url)`` in one transaction.

    Runs without a reactor, on a plain synchronous engine. Returns ``fn``'s result, or
    the exit code 1 after explaining the failure (refused, unknown host, authentication,
    missing database) rather than showing a traceback.
    """
    config = load_or_report(args)
    if config is None:
        return 1
    url: str = config.database_url
    try:
        engine = db.make_engine(url, pool_size=1)
    except db.DatabaseError as e:
        return fail(str(e))
    try:
        with engine.begin() as connection:
            return fn(connection, url)
    except Exception as e:
        if isinstance(e, db.DatabaseError):
            return fail(str(e))
        return fail(f"cannot use the database {db.redact(url)}: {db.describe_error(e, url)}")
    finally:
        engine.dispose()


def read_health_report(url: str, timeout: float) -> dict[str, Any] | str:
    """The running node's health report from ``url`` (a degraded node answers 503 with
    the same JSON), or one line saying why there is none."""
    import json
    import urllib.error
    import urllib.request

    try:
        with urllib.request.urlopen(url, timeout=timeout) as reply:
            body = reply.read()
    except urllib.error.HTTPError as error:
        body = error.read()
    except (urllib.error.URLError, OSError) as error:
        return f"{url}: no answer ({getattr(error, 'reason', error)}); is the node running?"
    try:
        report = json.loads(body)
    except ValueError:
        return f"{url}: not a health report: {body[:200]!r}"
    return report if isinstance(report, dict) else f"{url}: not a health report"

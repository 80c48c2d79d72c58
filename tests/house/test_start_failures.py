"""Start failures: an operator's mistake is one critical line with the cause and what to
do (no traceback); anything unexpected keeps its traceback."""

from __future__ import annotations

import errno
import signal
from pathlib import Path
from typing import Any

import pytest
from twisted.application.service import Service
from twisted.internet.defer import Deferred, fail
from twisted.internet.error import CannotListenError
from twisted.logger import Logger, formatEvent

from otedama.config import load_config
from otedama.ledger.db import DatabaseError
from otedama.ledger.store import SchemaOutdated
from otedama.node.chainview import ChainMismatchError
from otedama.node.rpc import RpcAuthError
from otedama.ops.lifecycle import NodeService
from otedama.ops.logging import LogControl
from otedama.tap import operator_errors

AUTH = RpcAuthError(
    "http://127.0.0.1:8332",
    "wrong credentials (HTTP 401); check rpcuser/rpcpassword (or rpcauth) in bitcoin.conf",
)


class Failing(Service):
    """A part whose readiness fails with ``error``."""

    def __init__(self, error: BaseException) -> None:
        self.setName("failing")
        self.error = error

    def whenReady(self) -> Deferred[Any]:
        return fail(self.error)


class FakeReactor:
    def __init__(self) -> None:
        self.when_running: list[Any] = []

    def callWhenRunning(self, f: Any, *args: Any) -> None:
        self.when_running.append(f)


def start_failing(tmp_path: Path, error: BaseException) -> tuple[list[dict[str, Any]], FakeReactor]:
    config = load_config(data={"app": {"data_dir": str(tmp_path)}}, env={})
    reactor = FakeReactor()
    node = NodeService(config, reactor, LogControl("info", "text", stdout=False))
    node.expect_start_errors(*operator_errors())
    events: list[dict[str, Any]] = []
    node.log = Logger(namespace="node", observer=events.append)
    Failing(error).setServiceParent(node)
    node.startService()
    node._remove_sighup()
    return events, reactor


@pytest.mark.parametrize(
    ("error", "cause"),
    [
        (AUTH, "refused the request: wrong credentials (HTTP 401); check rpcuser/rpcpassword"),
        (
            DatabaseError(
                "cannot use the ledger database postgresql+psycopg2://otedama@localhost:5432/"
                "otedama: database 'otedama' does not exist on localhost:5432 (create it: "
                "createdb -h localhost -p 5432 -U otedama otedama)"
            ),
            "database 'otedama' does not exist on localhost:5432 (create it: createdb",
        ),
        (
            SchemaOutdated(
                "ledger database sqlite:///x: schema is empty (no migrations applied; newest is "
                "0001); run `otedama migrate up --config /etc/otedama.yaml` first"
            ),
            "schema is empty (no migrations applied; newest is 0001); run `otedama migrate up",
        ),
        (
            ChainMismatchError("bitcoind at http://x runs chain 'test', but … point the node at"),
            "runs chain 'test'",
        ),
        (
            CannotListenError(
                "127.0.0.1", 3333, OSError(errno.EADDRINUSE, "Address already in use")
            ),
            "Couldn't listen on 127.0.0.1:3333: [Errno 98] Address already in use; another "
            "process (often a second node, or an old one still stopping) holds that port: find "
            "it with `ss -ltnp 'sport = :3333'`, stop it or choose another port",
        ),
    ],
    ids=["rpc-auth", "missing-database", "empty-schema", "other-chain", "busy-port"],
)
def test_an_operator_error_at_start_is_one_critical_line_with_the_cause(
    tmp_path: Path, error: BaseException, cause: str
) -> None:
    events, reactor = start_failing(tmp_path, error)
    failed = [e for e in events if e["log_level"].name == "critical"]
    assert len(failed) == 1
    line = formatEvent(failed[0])
    assert line.startswith("the node could not start: ")
    assert cause in line
    assert "log_failure" not in failed[0]  # no traceback
    stops = [f for f in reactor.when_running if f.__name__ == "_stop_after_failure"]
    assert len(stops) == 1  # and the node stops (exit status 1)


def test_an_unexpected_start_failure_keeps_its_traceback(tmp_path: Path) -> None:
    events, _ = start_failing(tmp_path, KeyError("bug"))
    [failed] = [e for e in events if e["log_level"].name == "critical"]
    assert formatEvent(failed) == "the node could not start; stopping"
    assert failed["log_failure"].check(KeyError)


def test_a_port_that_needs_privileges_says_so(tmp_path: Path) -> None:
    events, _ = start_failing(
        tmp_path, CannotListenError("", 333, OSError(errno.EACCES, "Permission denied"))
    )
    [failed] = [e for e in events if e["log_level"].name == "critical"]
    assert "ports below 1024 need privileges" in formatEvent(failed)


def test_only_the_first_stop_signal_reaches_the_reactors_handler(tmp_path: Path) -> None:
    config = load_config(data={"app": {"data_dir": str(tmp_path)}}, env={})
    node = NodeService(config, FakeReactor(), LogControl("info", "text", stdout=False))
    events: list[dict[str, Any]] = []
    node.log = Logger(namespace="node", observer=events.append)
    stops: list[int] = []
    handler = node._stop_signal_handler(lambda number, frame: stops.append(number))
    handler(signal.SIGTERM, None)
    handler(signal.SIGTERM, None)
    handler(signal.SIGINT, None)
    assert stops == [signal.SIGTERM]
    assert [formatEvent(e) for e in events] == [
        "received SIGTERM again while stopping; nothing more to do",
        "received SIGINT again while stopping; nothing more to do",
    ]

"""Fixtures for the Stratum server tests: a server on a task.Clock and in-memory miners."""

from __future__ import annotations

import json
from collections.abc import Callable, Iterator
from dataclasses import dataclass
from fractions import Fraction
from pathlib import Path
from typing import Any

import pytest
from twisted.internet import task
from twisted.internet.address import IPv4Address
from twisted.internet.defer import Deferred, succeed
from twisted.internet.testing import StringTransport
from twisted.logger import Logger, LogLevel, formatEvent
from twisted.python.failure import Failure

from otedama.chain.address import address_to_script
from otedama.chain.params import get_network
from otedama.chain.serialize import TxOut
from otedama.chain.target import bits_to_target
from otedama.chain.template import BlockTemplate, TemplateTx
from otedama.stratum.codec import encode_request
from otedama.stratum.jobs import JobManager
from otedama.stratum.protocol import StratumFactory, StratumProtocol
from otedama.stratum.server import StratumServer
from otedama.stratum.session import StratumSession
from otedama.stratum.settings import StratumSettings
from otedama.stratum.share import Share

STRATUM_VECTORS = Path(__file__).resolve().parents[1] / "vectors" / "stratum"
ADDRESS = "bcrt1qsv2hexjrhpa8qwxr4la2nmmkmdh8hxkje996rc"
START_TIME = 1_795_490_000


class RecordingSink:
    """A ShareSink that keeps what it is given."""

    def __init__(self) -> None:
        self.shares: list[Share] = []
        self.blocks: list[tuple[bytes, Share]] = []

    def share_accepted(self, share: Share) -> None:
        self.shares.append(share)

    def block_found(self, block: bytes, share: Share) -> Deferred[Any]:
        self.blocks.append((block, share))
        return succeed(None)


def regtest_settings(**overrides: Any) -> StratumSettings:
    values: dict[str, Any] = {
        "network": get_network("regtest"),
        "start_difficulty": Fraction(1, 100),
        "min_difficulty": Fraction(1, 10000),
        "vardiff": False,
    }
    values.update(overrides)
    return StratumSettings(**values)


def payout_outputs(template: BlockTemplate) -> list[TxOut]:
    return [TxOut(template.coinbase_value, address_to_script(ADDRESS, "regtest"))]


def make_template(
    prev: bytes = b"\x11" * 32,
    height: int = 200,
    curtime: int = START_TIME,
    bits: int = 0x207FFFFF,
    transactions: tuple[TemplateTx, ...] = (),
) -> BlockTemplate:
    return BlockTemplate(
        version=0x20000000,
        prev_hash=prev,
        height=height,
        bits=bits,
        target=bits_to_target(bits),
        curtime=curtime,
        mintime=curtime - 600,
        coinbase_value=5_000_000_000,
        transactions=transactions,
        default_witness_commitment=None,
        longpollid=None,
        rules=("segwit",),
    )


class Miner:
    """One in-memory miner connection (StringTransport) speaking JSON lines."""

    def __init__(self, factory: StratumFactory, host: str = "10.0.0.1", port: int = 40000):
        addr = IPv4Address("TCP", host, port)
        self.transport = StringTransport(peerAddress=addr)
        protocol = factory.buildProtocol(addr)
        assert protocol is not None, "factory refused the connection"
        self.protocol: StratumProtocol = protocol
        self.protocol.makeConnection(self.transport)
        self._next_id = 1

    @property
    def session(self) -> Any:
        return self.protocol.session

    def send(self, method: str, params: list[Any], msg_id: int | None = None) -> int:
        if msg_id is None:
            msg_id = self._next_id
            self._next_id += 1
        self.protocol.dataReceived(encode_request(msg_id, method, params))
        return msg_id

    def send_raw(self, data: bytes) -> None:
        self.protocol.dataReceived(data)

    def read(self) -> list[dict[str, Any]]:
        data = self.transport.value()
        self.transport.clear()
        return [json.loads(line) for line in data.splitlines() if line.strip()]

    def call(self, method: str, params: list[Any]) -> dict[str, Any]:
        """Send a request and return its reply (other lines are kept for ``read``)."""
        msg_id = self.send(method, params)
        lines = self.read()
        replies = [m for m in lines if m.get("id") == msg_id and "result" in m]
        assert len(replies) == 1, lines
        self._pending = [m for m in lines if m is not replies[0]]
        return replies[0]

    def pending(self) -> list[dict[str, Any]]:
        """Lines that arrived with the last ``call``'s reply."""
        return getattr(self, "_pending", [])

    @property
    def closed(self) -> bool:
        return bool(self.transport.disconnecting)

    def disconnect(self) -> None:
        self.protocol.connectionLost(Failure(ConnectionError("test closed")))

    def start(self, user: str = ADDRESS + ".rig1", password: str = "x") -> list[dict[str, Any]]:
        """Subscribe and authorize; return the lines after the authorize reply."""
        assert self.call("mining.subscribe", ["test/1.0"])["error"] is None
        reply = self.call("mining.authorize", [user, password])
        assert reply["result"] is True, reply
        return self.pending()


@dataclass
class Stack:
    clock: task.Clock
    jobs: JobManager
    sink: RecordingSink
    factory: StratumFactory
    settings: StratumSettings

    @property
    def server(self) -> Any:
        return self.factory.server

    def miner(self, host: str = "10.0.0.1", port: int = 40000) -> Miner:
        return Miner(self.factory, host, port)


StackMaker = Callable[..., Stack]


@pytest.fixture
def make_stack() -> Iterator[StackMaker]:
    """Build a server stack on a task.Clock; ``make_stack(**settings_overrides)``."""
    made: list[Stack] = []

    def build(*, template: bool = True, bits: int = 0x207FFFFF, **overrides: Any) -> Stack:
        clock = task.Clock()
        clock.advance(START_TIME)
        settings = regtest_settings(**overrides)
        jobs = JobManager(payout_outputs, clock=clock, extranonce2_size=settings.extranonce2_size)
        sink = RecordingSink()
        factory = StratumFactory(jobs, sink, settings, clock)
        factory.doStart()
        jobs.startService()
        if template:
            jobs.on_template(make_template(bits=bits))
        stack = Stack(clock, jobs, sink, factory, settings)
        made.append(stack)
        return stack

    yield build
    for stack in made:
        stack.jobs.stopService()
        stack.factory.doStop()


@pytest.fixture
def stack(make_stack: StackMaker) -> Stack:
    return make_stack()


@pytest.fixture
def log_events(monkeypatch: pytest.MonkeyPatch) -> list[dict[str, Any]]:
    """Every event the Stratum server, its sessions and its factory log during the test."""
    events: list[dict[str, Any]] = []
    for cls in (StratumSession, StratumServer, StratumFactory):
        monkeypatch.setattr(cls, "log", Logger(observer=events.append))
    return events


def logged(events: list[dict[str, Any]], level: LogLevel | None = None) -> list[str]:
    """The formatted text of ``events`` (at ``level`` when given)."""
    return [
        formatEvent(event) for event in events if level is None or event.get("log_level") == level
    ]


def load_jsonl(name: str) -> tuple[dict[str, Any], list[dict[str, Any]]]:
    """Header object and the other lines of a recorded JSONL file."""
    lines = [json.loads(x) for x in (STRATUM_VECTORS / name).read_text().splitlines() if x]
    return lines[0], lines[1:]


def load_json(name: str) -> Any:
    return json.loads((STRATUM_VECTORS / name).read_text())

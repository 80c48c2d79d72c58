"""Real TCP on 127.0.0.1: a client sending garbage is dropped, the other keeps working."""

from __future__ import annotations

import json
from typing import Any

import pytest_twisted
from twisted.internet.defer import Deferred
from twisted.internet.endpoints import TCP4ClientEndpoint
from twisted.internet.protocol import Factory, Protocol
from twisted.python.failure import Failure

from otedama.stratum.codec import encode_request
from otedama.stratum.jobs import JobManager
from otedama.stratum.protocol import StratumFactory, direct_write

from .conftest import ADDRESS, RecordingSink, make_template, payout_outputs, regtest_settings


class LineClient(Protocol):
    """Collects JSON lines; ``wait_lines(n)`` fires when n lines have arrived in total."""

    def __init__(self) -> None:
        self.lines: list[dict[str, Any]] = []
        self.buffer = b""
        self.waiters: list[tuple[int, Deferred[None]]] = []
        self.closed: Deferred[None] = Deferred()

    def dataReceived(self, data: bytes) -> None:
        self.buffer += data
        *complete, self.buffer = self.buffer.split(b"\n")
        self.lines.extend(json.loads(line) for line in complete if line)
        for waiter in list(self.waiters):
            if len(self.lines) >= waiter[0]:
                self.waiters.remove(waiter)
                waiter[1].callback(None)

    def connectionLost(self, reason: Failure | None = None) -> None:
        self.closed.callback(None)

    def wait_lines(self, count: int) -> Deferred[None]:
        d: Deferred[None] = Deferred()
        if len(self.lines) >= count:
            d.callback(None)
        else:
            self.waiters.append((count, d))
        return d

    def send(self, msg_id: int, method: str, params: list[Any]) -> None:
        assert self.transport is not None
        self.transport.write(encode_request(msg_id, method, params))


@pytest_twisted.ensureDeferred
async def test_a_garbage_client_is_dropped_while_another_keeps_getting_replies() -> None:
    from twisted.internet import reactor

    jobs = JobManager(payout_outputs, clock=reactor)
    sink = RecordingSink()
    factory = StratumFactory(jobs, sink, regtest_settings(), reactor)
    jobs.on_template(make_template())
    port = reactor.listenTCP(0, factory, interface="127.0.0.1")  # type: ignore[attr-defined]
    endpoint = TCP4ClientEndpoint(reactor, "127.0.0.1", port.getHost().port)
    good: LineClient = await endpoint.connect(Factory.forProtocol(LineClient))
    bad: LineClient = await endpoint.connect(Factory.forProtocol(LineClient))
    try:
        good.send(1, "mining.subscribe", ["tcp-test/1"])
        await good.wait_lines(1)
        assert good.lines[0]["id"] == 1 and good.lines[0]["result"][2] == 8
        assert bad.transport is not None
        bad.transport.write(b"\x00\xffnot json at all\n" * 5 + b"x" * 20000 + b"\n" + b"[]\n" * 5)
        good.send(2, "mining.authorize", [ADDRESS + ".tcp", "x"])
        await bad.closed
        assert len(bad.lines) == 10
        assert all(line["error"][0] == 20 for line in bad.lines)
        await good.wait_lines(4)
        assert [m.get("method", m.get("id")) for m in good.lines[1:4]] == [
            2,
            "mining.set_difficulty",
            "mining.notify",
        ]
        good.send(3, "mining.multi_version", [1])
        await good.wait_lines(5)
        assert good.lines[4] == {"id": 3, "result": None, "error": [20, "Unknown method", None]}
        # Ten bad lines from the garbage client, and the unknown method counts as abuse.
        assert factory.server.stats.bad_lines == 11
    finally:
        if good.transport is not None:
            good.transport.loseConnection()
        await good.closed
        await port.stopListening()


class _Sender(Protocol):
    """Writes a large payload then small pieces through ``direct_write`` on connect.

    ``fast_path`` records whether ``direct_write`` took the plain-TCP path; the test checks
    it (an assertion here would only be logged by the reactor, not fail the test)."""

    payload: list[bytes] = []
    fast_path: list[bool] = []

    def connectionMade(self) -> None:
        transport: Any = self.transport
        write = direct_write(transport)
        self.fast_path.append(write != transport.write)
        for piece in self.payload:
            write(piece)
        transport.loseConnection()


class _Collector(Protocol):
    def __init__(self) -> None:
        self.received: list[bytes] = []
        self.done: Deferred[bytes] = Deferred()

    def dataReceived(self, data: bytes) -> None:
        self.received.append(data)

    def connectionLost(self, reason: Failure | None = None) -> None:
        self.done.callback(b"".join(self.received))


@pytest_twisted.ensureDeferred
async def test_direct_writes_keep_byte_order_when_the_kernel_buffer_fills() -> None:
    from twisted.internet import reactor

    # Larger than any socket buffer, so later writes must queue behind the remainder.
    _Sender.fast_path = []
    _Sender.payload = [bytes([i % 251]) * 65536 for i in range(64)] + [
        b"tail-%d" % i for i in range(100)
    ]
    port = reactor.listenTCP(0, Factory.forProtocol(_Sender), interface="127.0.0.1")  # type: ignore[attr-defined]
    try:
        endpoint = TCP4ClientEndpoint(reactor, "127.0.0.1", port.getHost().port)
        collector: _Collector = await endpoint.connect(Factory.forProtocol(_Collector))
        received = await collector.done
        assert _Sender.fast_path == [True]  # the fast path was in use on plain TCP
        assert received == b"".join(_Sender.payload)
    finally:
        await port.stopListening()

"""Attacks on loopback: real TCP on 127.0.0.1 against the real Stratum server.

Each test is bounded in time (every wait has a timeout) and in count; an honest miner
on the same node keeps getting shares accepted while the attacker is handled.
"""

from __future__ import annotations

import json
import socket
from collections.abc import AsyncIterator
from dataclasses import dataclass
from fractions import Fraction
from typing import Any

import pytest_twisted
from twisted.internet.defer import Deferred
from twisted.internet.endpoints import TCP4ClientEndpoint
from twisted.internet.protocol import Factory, Protocol
from twisted.internet.task import deferLater
from twisted.python.failure import Failure

from otedama.stratum.codec import encode_request
from otedama.stratum.jobs import JobManager
from otedama.stratum.protocol import StratumFactory

from .conftest import ADDRESS, RecordingSink, make_template, payout_outputs, regtest_settings

WAIT = 20.0
"""Upper bound in seconds on any wait in these tests (a hang fails, it does not block)."""


def _reactor() -> Any:
    from twisted.internet import reactor

    return reactor


def within(d: Deferred[Any], seconds: float = WAIT) -> Deferred[Any]:
    return d.addTimeout(seconds, _reactor())


class LineClient(Protocol):
    """Collects JSON lines; ``wait_id(n)`` fires with the reply to request ``n``."""

    def __init__(self) -> None:
        self.lines: list[dict[str, Any]] = []
        self.buffer = b""
        self.waiters: dict[Any, Deferred[dict[str, Any]]] = {}
        self.closed: Deferred[None] = Deferred()
        self.next_id = 1

    def dataReceived(self, data: bytes) -> None:
        self.buffer += data
        *complete, self.buffer = self.buffer.split(b"\n")
        for raw in complete:
            if not raw:
                continue
            line = json.loads(raw)
            self.lines.append(line)
            waiter = self.waiters.pop(line.get("id"), None)
            if waiter is not None and "result" in line:
                waiter.callback(line)

    def connectionLost(self, reason: Failure | None = None) -> None:
        self.closed.callback(None)

    def call(self, method: str, params: list[Any]) -> Deferred[dict[str, Any]]:
        msg_id = self.next_id
        self.next_id += 1
        d: Deferred[dict[str, Any]] = Deferred()
        self.waiters[msg_id] = d
        assert self.transport is not None
        self.transport.write(encode_request(msg_id, method, params))
        return within(d)

    def notify(self) -> dict[str, Any]:
        return [m for m in self.lines if m.get("method") == "mining.notify"][-1]


@dataclass
class Node:
    factory: StratumFactory
    jobs: JobManager
    port: Any

    @property
    def server(self) -> Any:
        return self.factory.server

    async def connect(self) -> LineClient:
        endpoint = TCP4ClientEndpoint(_reactor(), "127.0.0.1", self.port.getHost().port)
        client: LineClient = await within(endpoint.connect(Factory.forProtocol(LineClient)))
        return client

    def server_side(self, client: LineClient) -> Any:
        """The node's protocol for ``client``'s connection."""
        local = client.transport.getHost().port  # type: ignore[union-attr]
        for session in self.server.sessions:
            protocol = session.close_callback.__self__
            if protocol.transport.getPeer().port == local:
                return protocol
        raise AssertionError("no server-side connection for the client")


def unsent(protocol: Any) -> int:
    """Bytes the node holds for a connection and has not sent (Twisted's tcp buffer)."""
    transport = protocol.transport
    return len(transport.dataBuffer) - transport.offset + transport._tempDataLen


def start_node(**overrides: Any) -> Node:
    """The real Stratum server on 127.0.0.1 with short bounds (``overrides`` change them)."""
    reactor = _reactor()
    values: dict[str, Any] = {
        "start_difficulty": Fraction(1, 2**40),
        "min_difficulty": Fraction(1, 2**40),
        "idle_timeout": 1.5,
        "authorize_timeout": 30,
        "sweep_interval": 0.1,
        "close_grace": 0.5,
        "stall_timeout": 1.0,
        "max_unsent_bytes": 256 * 1024,
        "abuse_threshold": 1_000_000,
        "max_share_rate": 1000.0,
    }
    values.update(overrides)
    jobs = JobManager(payout_outputs, clock=reactor)
    factory = StratumFactory(jobs, RecordingSink(), regtest_settings(**values), reactor)
    jobs.on_template(make_template())
    port = reactor.listenTCP(0, factory, interface="127.0.0.1")
    return Node(factory, jobs, port)


async def stop_node(node: Node) -> None:
    for session in list(node.server.sessions):
        session.close_callback.__self__.transport.abortConnection()
    await node.port.stopListening()
    node.factory.doStop()


@pytest_twisted.async_yield_fixture
async def node() -> AsyncIterator[Node]:
    started = start_node()
    yield started
    await stop_node(started)


async def honest_miner(node: Node) -> LineClient:
    miner = await node.connect()
    assert (await miner.call("mining.subscribe", ["honest/1"]))["error"] is None
    assert (await miner.call("mining.authorize", [ADDRESS + ".honest", "x"]))["result"] is True
    while not any(m.get("method") == "mining.notify" for m in miner.lines):
        await deferLater(_reactor(), 0.01, lambda: None)
    return miner


async def submit_one(node: Node, miner: LineClient, nonce: int) -> dict[str, Any]:
    """Submit a share for the current job (every hash is a share at this difficulty)."""
    params = miner.notify()["params"]
    return await miner.call(
        "mining.submit",
        [ADDRESS + ".honest", params[0], f"{nonce:016x}", params[7], f"{nonce:08x}"],
    )


async def pause() -> None:
    await deferLater(_reactor(), 0.02, lambda: None)


@pytest_twisted.ensureDeferred
async def test_a_non_reading_flooder_is_dropped_with_bounded_output_and_the_honest_miner_works(
    node: Node,
) -> None:
    honest = await honest_miner(node)
    attacker = await node.connect()
    assert attacker.transport is not None
    attacker.transport.pauseProducing()  # it never reads a reply
    sock = attacker.transport.getHandle()
    sock.setsockopt(socket.SOL_SOCKET, socket.SO_RCVBUF, 4096)
    server_side = node.server_side(attacker)
    server_side.transport.getHandle().setsockopt(socket.SOL_SOCKET, socket.SO_SNDBUF, 4096)
    line = encode_request("i" * 16000, "mining.no_such_method", [])
    chunk = encode_request(1, "mining.no_such_method", []) * 200
    bound = server_side.transport.bufferSize + node.server.settings.max_unsent_bytes + 65536
    most = 0
    accepted = 0
    for round_ in range(400):
        if server_side.transport.disconnected:
            break
        attacker.transport.write(line + chunk)
        most = max(most, unsent(server_side))
        reply = await submit_one(node, honest, round_)
        assert reply["result"] is True, reply
        accepted += 1
        await pause()
    else:
        raise AssertionError("the attacker was never dropped")
    assert node.server.stats.output_overflows == 1
    assert most <= bound, (most, bound)
    assert len(node.server.sessions) == 1  # the attacker's slot is free again
    assert node.server.connections_from("127.0.0.1") == 1
    for nonce in range(1000, 1005):
        assert (await submit_one(node, honest, nonce))["result"] is True
    assert accepted >= 1
    honest.transport.loseConnection()  # type: ignore[union-attr]
    await within(honest.closed)


@pytest_twisted.ensureDeferred
async def test_a_slow_trickle_client_is_dropped_while_the_honest_miner_works(node: Node) -> None:
    honest = await honest_miner(node)
    trickle = await node.connect()
    assert (await trickle.call("mining.subscribe", ["trickle/1"]))["error"] is None
    assert (await trickle.call("mining.authorize", [ADDRESS + ".t", "x"]))["result"] is True
    nonce = 0
    while not trickle.closed.called:
        assert trickle.transport is not None
        trickle.transport.write(b" ")
        nonce += 1
        assert (await submit_one(node, honest, nonce))["result"] is True
        await deferLater(_reactor(), 0.1, lambda: None)
        assert nonce < 200, "the trickle client was never dropped"
    assert node.server.stats.timeouts == 1
    assert len(node.server.sessions) == 1


@pytest_twisted.ensureDeferred
async def test_a_huge_number_login_is_refused_promptly(node: Node) -> None:
    honest = await honest_miner(node)
    attacker = await node.connect()
    await attacker.call("mining.subscribe", [])
    reply = await attacker.call("mining.authorize", [ADDRESS + ".big", "x,d=1e999999999"])
    assert reply["result"] is None and "password difficulty" in reply["error"][1]
    reply = await attacker.call("mining.suggest_difficulty", [10**39])
    assert reply["result"] is True
    assert (await submit_one(node, honest, 7))["result"] is True
    attacker.transport.loseConnection()  # type: ignore[union-attr]
    honest.transport.loseConnection()  # type: ignore[union-attr]
    await within(attacker.closed)


@pytest_twisted.ensureDeferred
async def test_a_miner_that_never_authorizes_is_dropped_at_the_deadline_while_it_keeps_talking() -> (
    None
):
    """Issue 8 item 7: complete lines keep the idle timer alive, but not past the
    authorize deadline."""
    node = start_node(authorize_timeout=1.0, idle_timeout=600)
    try:
        honest = await honest_miner(node)
        lingering = await node.connect()
        assert (await lingering.call("mining.subscribe", ["linger/1"]))["error"] is None
        rounds = 0
        while not lingering.closed.called:
            assert lingering.transport is not None
            lingering.transport.write(encode_request(1000 + rounds, "mining.configure", [[], {}]))
            rounds += 1
            assert (await submit_one(node, honest, rounds))["result"] is True
            await deferLater(_reactor(), 0.1, lambda: None)
            assert rounds < 200, "the connection that never authorized was never dropped"
        assert node.server.stats.timeouts == 1
        assert len(node.server.sessions) == 1
        assert (await submit_one(node, honest, 10_000))["result"] is True
    finally:
        await stop_node(node)


@pytest_twisted.ensureDeferred
async def test_a_miner_flooding_floor_shares_and_suggestions_is_held_to_the_share_rate_and_vardiff() -> (
    None
):
    """Issue 8 item 3: a miner that asks for the floor again and again while submitting
    as fast as it can gets ``share_burst`` shares through (the refill is negligible at
    this rate), vardiff raises it and the suggestions do not bring it back down; an
    honest miner on the same node keeps getting shares accepted."""
    burst = 20
    node = start_node(
        vardiff=True,
        start_difficulty=Fraction(1, 2**40),
        max_difficulty=Fraction(2**40),
        max_share_rate=0.001,
        share_burst=burst,
        suggest_interval=60,
        idle_timeout=600,
    )
    floor = node.server.settings.min_difficulty
    try:
        honest = await honest_miner(node)
        attacker = await node.connect()
        assert (await attacker.call("mining.subscribe", ["floor/1"]))["error"] is None
        worker = ADDRESS + ".floor"
        assert (await attacker.call("mining.authorize", [worker, "x"]))["result"] is True
        while not any(m.get("method") == "mining.notify" for m in attacker.lines):
            await pause()
        params = attacker.notify()["params"]
        session = node.server_side(attacker).session
        start = session.difficulty  # the floor as JSON carries it
        assert start == Fraction(repr(float(floor)))
        submits = 0
        for round_ in range(5):
            burst_lines = b"".join(
                encode_request(
                    10_000 + submits + i,
                    "mining.submit",
                    [worker, params[0], f"{submits + i:016x}", params[7], f"{submits + i:08x}"],
                )
                + encode_request(20_000 + submits + i, "mining.suggest_difficulty", [float(floor)])
                for i in range(60)
            )
            submits += 60
            assert attacker.transport is not None
            attacker.transport.write(burst_lines)
            # Replies come in order: the answer to this call comes after the whole burst's.
            await attacker.call("mining.suggest_difficulty", [float(floor)])
            assert (await submit_one(node, honest, round_))["result"] is True
        replies = [m for m in attacker.lines if isinstance(m.get("id"), int) and m["id"] >= 10_000]
        verdicts = [m["result"] for m in replies if m["id"] < 20_000]
        assert len(verdicts) == submits
        assert verdicts.count(True) == burst
        assert node.server.stats.rate_limited == submits - burst
        # Vardiff counted every submit and raised the difficulty; no suggestion undid it.
        assert session.difficulty > start
        difficulties = [
            m["params"][0] for m in attacker.lines if m.get("method") == "mining.set_difficulty"
        ]
        assert difficulties[0] == float(floor) and len(difficulties) > 1
        assert difficulties[1:] == sorted(difficulties[1:]) and min(difficulties[1:]) > start
        for nonce in range(100, 105):
            assert (await submit_one(node, honest, nonce))["result"] is True
    finally:
        await stop_node(node)

"""Slowloris on loopback: a thousand connections that never finish subscribing, or
subscribe and trickle bytes without a newline, are timed out; an honest miner is served
throughout. Real sockets; the server's timeouts run on a task.Clock."""

from __future__ import annotations

from typing import Any

import pytest_twisted
from twisted.internet import task
from twisted.internet.defer import gatherResults

from otedama.bench.flood import BENCH_ADDRESS, LineClient, connect, honest_miner, stratum_stack


@pytest_twisted.ensureDeferred
async def test_slow_connections_are_timed_out_without_starving_an_honest_miner() -> None:
    from twisted.internet import reactor

    clock = task.Clock()
    clock.advance(reactor.seconds())
    stratum, guard, factory = stratum_stack(reactor, clock=clock)
    guard.clock = reactor  # the guard's rates run on the real clock
    port = reactor.listenTCP(0, factory, backlog=4096, interface="127.0.0.1")
    number = port.getHost().port
    worker = BENCH_ADDRESS + ".honest"
    honest = await honest_miner(reactor, number, "127.0.0.1", worker)
    slow: list[LineClient] = []
    try:
        # 1000 connections from ten addresses (within the per-IP limits: only the
        # timeouts can deal with them): 800 never send a full line, 200 subscribe and
        # then trickle a line that never ends.
        made = [connect(reactor, number, f"127.0.3.{1 + i % 10}") for i in range(1000)]
        slow = list(await gatherResults([_deferred(m) for m in made]))
        for index, client in enumerate(slow):
            transport: Any = client.transport
            if index < 800:
                transport.write(b'{"id": 1, "method": "mining.subscr')
            else:
                await client.request("mining.subscribe", ["slow/1"])
                transport.write(b'{"id": 2, "method": "mining.authorize", "params": ["')
        assert len(stratum.server.sessions) == 1001

        reply = await honest.submit(worker, 1)
        assert reply["result"] is True, reply
        for client in slow:
            transport = client.transport
            transport.write(b"x")  # trickle: bytes, but never a line
        reply = await honest.submit(worker, 2)
        assert reply["result"] is True, reply

        clock.advance(stratum.server.settings.authorize_timeout + 10)
        clock.advance(stratum.server.settings.close_grace + 1)
        await gatherResults([client.closed for client in slow])
        assert len(stratum.server.sessions) == 1
        assert stratum.server.stats.timeouts == 1000
        assert not honest.closed.called
        reply = await honest.submit(worker, 3)
        assert reply["result"] is True, reply
        assert len(guard.bans) == 0  # slowness is timed out, not banned
    finally:
        transport = honest.transport
        transport.loseConnection()
        for client in slow:
            if not client.closed.called:
                client.transport.abortConnection()
        await port.stopListening()


def _deferred(coroutine: Any) -> Any:
    from twisted.internet.defer import Deferred

    return Deferred.fromCoroutine(coroutine)

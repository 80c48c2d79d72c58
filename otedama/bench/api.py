"""``otedama bench api``: API latency at a request rate, and WebSocket fan-out of a block.

The server runs in its own process (``python -m otedama.bench.api``): the node's real API
(:func:`otedama.api.service.build_api` over a SQLite ledger holding one block) and the
node's real Stratum stack on the same reactor, with N miners connected to it. This
process is the load generator: an open-loop HTTP load at ``--rate`` requests/s spread
over ``status``, ``pool``, ``miners/{address}`` and ``blocks`` (latency from the moment
a request is due to its last body byte), then S WebSocket subscribers on ``blocks`` and
``--rounds`` blocks published on the server, each timed from the publish to its last
delivery (both processes read the same ``CLOCK_MONOTONIC``). It prints figures; it never
passes or fails.
"""

from __future__ import annotations

import argparse
import json
import os
import sys
import tempfile
import time
from collections import deque
from collections.abc import Callable
from dataclasses import asdict, dataclass, field
from functools import partial
from pathlib import Path
from typing import Any, cast

from twisted.internet.defer import Deferred
from twisted.internet.endpoints import TCP4ClientEndpoint
from twisted.internet.protocol import ClientFactory, Protocol
from twisted.python.failure import Failure

from otedama.bench.stratum import BenchConfig, LoadGenerator, _ServerProcess, percentile
from otedama.bench.stratum_server import (
    BENCH_ADDRESS,
    bench_stratum,
    raise_fd_limit,
    run_reactor,
    synthetic_template,
)
from otedama.ops.gcpolicy import GcPolicy

__all__ = ["ApiBenchConfig", "ApiBenchResult", "ApiLoad", "register", "serve"]

#: The read endpoints the load spreads over, round robin.
ROUTES = ("/status", "/pool", f"/miners/{BENCH_ADDRESS}", "/blocks")


@dataclass
class ApiBenchConfig:
    """What to run (see ``otedama bench api --help``)."""

    miners: int = 10_000
    rate: float = 2000.0
    duration: float = 10.0
    warmup: float = 2.0
    subscribers: int = 1000
    rounds: int = 10
    connect_batch: int = 500
    #: ``api.cache_ttl`` on the server (0: every request reads the ledger).
    cache_ttl: float = 1.0
    #: Write the server's cProfile stats here.
    profile: str | None = None
    #: Run the node's garbage collection policy (app.gc) on the server.
    gc_freeze: bool = True


@dataclass
class ApiBenchResult:
    """The measured figures (milliseconds unless named otherwise)."""

    miners: int = 0
    target_rate: float = 0.0
    achieved_rate: float = 0.0
    requests: int = 0
    errors: int = 0
    statuses: dict[str, int] = field(default_factory=dict)
    p50_ms: float = 0.0
    p99_ms: float = 0.0
    max_ms: float = 0.0
    routes: dict[str, list[float]] = field(default_factory=dict)
    subscribers: int = 0
    fanout_last_ms: list[float] = field(default_factory=list)
    fanout_last_p50_ms: float = 0.0
    fanout_last_p99_ms: float = 0.0
    cache_ttl: float = 0.0
    #: CPU of each process over the HTTP load, in % of one core.
    server_cpu_percent: float = 0.0
    client_cpu_percent: float = 0.0
    connections: int = 0
    #: The server's garbage collections during the HTTP load, by generation:
    #: [collections, longest pause ms, total ms].
    gc: dict[str, list[float]] = field(default_factory=dict)
    client_gc: dict[str, list[float]] = field(default_factory=dict)


# -- the server process ------------------------------------------------------------------


def _bench_config(data_dir: Path) -> Any:
    from otedama.config import load_config

    path = data_dir / "otedama.yaml"
    path.write_text(
        f"app:\n  data_dir: {data_dir}\nchain:\n  network: devnet\n  backend: devnet\n"
        f"pool:\n  wallet_address: {BENCH_ADDRESS}\n"
        f"database:\n  url: sqlite:///{data_dir / 'ledger.sqlite'}\n",
        encoding="utf-8",
    )
    return load_config(path)


class _NoSubmit:
    """The bench pool core never submits a block."""

    async def submit_block(self, block: bytes) -> Any:
        raise RuntimeError("the API bench submits no blocks")


async def _start_server(
    rx: Any, data_dir: Path, cache_ttl: float, gc_freeze: bool = True
) -> dict[str, Any]:
    from otedama.api.resource import ApiPolicy
    from otedama.api.service import build_api
    from otedama.chain.params import get_network
    from otedama.ledger import db
    from otedama.ledger.blocks import FoundBlock, RewardPolicy, record_block
    from otedama.ledger.rewards import RewardScheme
    from otedama.ledger.store import LedgerStore
    from otedama.pool.core import PoolCore

    config = _bench_config(data_dir)
    url = config.database.url
    engine = db.make_engine(url, pool_size=1)
    with engine.begin() as connection:
        db.upgrade(connection)
    engine.dispose()
    store = LedgerStore(rx, url, 4, spool_dir=data_dir / "spool")
    store.start()
    # Its database threads would keep the process alive past the reactor.
    rx.addSystemEventTrigger("before", "shutdown", lambda: Deferred.fromCoroutine(store.stop()))
    now = time.time()
    found = FoundBlock(101, "ab" * 32, BENCH_ADDRESS, "bench", 50_0000_0000, now)
    # An empty share window books the whole reward to the fee address: a balance to show.
    policy = RewardPolicy(RewardScheme.PPLNS, 100, BENCH_ADDRESS, 3600.0)
    await store.run(partial(record_block, found=found, policy=policy, now=now))
    core = PoolCore(
        get_network("devnet"), BENCH_ADDRESS, RewardScheme.PPLNS, 100, _NoSubmit(), clock=rx
    )
    parts = build_api(
        config,
        rx,
        store,
        core,
        policy=ApiPolicy(auth_enabled=False, rate_limiting=False, cache_ttl=cache_ttl),
    )
    parts.view.startService()
    # The node's garbage collection policy (app.gc), as the node runs it (unless told not to).
    gc_policy = GcPolicy(
        rx, config.app.gc.freeze_interval if gc_freeze else 0.0, config.app.gc.full_interval
    )
    gc_policy.startService()
    factory, jobs, _ = bench_stratum(rx)
    jobs.on_template(synthetic_template(0, int(now)))
    stratum = rx.listenTCP(0, factory, backlog=4096, interface="127.0.0.1")
    api = rx.listenTCP(0, parts.site, backlog=4096, interface="127.0.0.1")
    return {"parts": parts, "stratum": stratum, "api": api, "store": store, "gc": gc_policy}


class GcPauses:
    """The garbage collector's pauses by generation (``gc.callbacks``): with 10,000 Stratum
    sessions in the heap a full collection stops the reactor for a noticeable time."""

    def __init__(self) -> None:
        self.started = 0.0
        self.pauses: dict[int, list[float]] = {0: [], 1: [], 2: []}

    def __call__(self, phase: str, info: dict[str, Any]) -> None:
        if phase == "start":
            self.started = time.perf_counter()
        else:
            self.pauses[int(info["generation"])].append(time.perf_counter() - self.started)

    def reset(self) -> None:
        for pauses in self.pauses.values():
            pauses.clear()

    def report(self) -> dict[str, list[float]]:
        """Per generation: [collections, longest ms, total ms]; "objects": [tracked]."""
        import gc

        report: dict[str, list[float]] = {"objects": [float(len(gc.get_objects()))]}
        for gen, p in self.pauses.items():
            report[str(gen)] = [
                len(p),
                round(max(p, default=0.0) * 1000, 2),
                round(sum(p) * 1000, 2),
            ]
        return report


GC_PAUSES = GcPauses()


class _Control(Protocol):
    """Commands on stdin, one a line: ``block`` publishes one, ``quit`` stops."""

    def __init__(self, rx: Any, parts: Any, gc_policy: GcPolicy | None = None) -> None:
        self.rx = rx
        self.parts = parts
        self.gc_policy = gc_policy
        self.buffer = b""
        self.blocks = 0

    def dataReceived(self, data: bytes) -> None:
        self.buffer += data
        *lines, self.buffer = self.buffer.split(b"\n")
        for line in lines:
            self.command(line.decode().strip())

    def command(self, command: str) -> None:
        if command == "block":
            self.blocks += 1
            event = {"event": "found", "block": {"height": 101 + self.blocks, "round": self.blocks}}
            t0 = time.monotonic()
            delivered = self.parts.bus.publish("blocks", event)
            _say({"round": self.blocks, "t0": t0, "t1": time.monotonic(), "sent": delivered})
        elif command == "gc-reset":
            # The miners are connected: freeze as the node's policy does every
            # freeze_interval, so the run sees a node that has been up longer than that.
            if self.gc_policy is not None and self.gc_policy.enabled:
                self.gc_policy.freeze()
            GC_PAUSES.reset()
            _say({"gc": GC_PAUSES.report()})
        elif command == "gc":
            _say({"gc": GC_PAUSES.report()})
        elif command == "quit" and self.rx.running:
            self.rx.stop()

    def connectionLost(self, reason: object = None) -> None:
        if self.rx.running:
            self.rx.stop()


def _say(obj: dict[str, Any]) -> None:
    sys.stdout.write(json.dumps(obj) + "\n")
    sys.stdout.flush()


def serve(argv: list[str] | None = None) -> int:
    """The bench server: the API and Stratum on one asyncio reactor, until stdin closes."""
    parser = argparse.ArgumentParser(prog="otedama-bench-api-server")
    parser.add_argument("--data-dir", required=True)
    parser.add_argument("--cache-ttl", type=float, default=1.0)
    parser.add_argument("--no-gc-freeze", action="store_true")
    parser.add_argument("--profile", default=None, help="write cProfile stats of the run here")
    args = parser.parse_args(argv)
    raise_fd_limit()
    import gc

    gc.callbacks.append(GC_PAUSES)
    from otedama.ops.reactor import install_asyncio_reactor

    rx: Any = install_asyncio_reactor()
    from twisted.internet import stdio

    async def start() -> None:
        started = await _start_server(
            rx, Path(args.data_dir), args.cache_ttl, gc_freeze=not args.no_gc_freeze
        )
        stdio.StandardIO(_Control(rx, started["parts"], started["gc"]), reactor=rx)
        _say(
            {
                "stratum": started["stratum"].getHost().port,
                "api": started["api"].getHost().port,
            }
        )

    rx.callWhenRunning(
        lambda: Deferred.fromCoroutine(start()).addErrback(
            lambda failure: (failure.printTraceback(), rx.stop())
        )
    )
    run_reactor(rx, args.profile)
    return 0


# -- the load generator ------------------------------------------------------------------


class _Subscriber:
    """One WebSocket client on ``blocks``: arrival times by round."""

    def __init__(self, load: ApiLoad) -> None:
        self.load = load
        self.transport: Any = None

    def negotiationStarted(self, transport: Any) -> None:
        self.transport = transport

    def negotiationFinished(self) -> None:
        self.transport.sendTextMessage(json.dumps({"op": "subscribe", "topic": "blocks"}))

    def textMessageReceived(self, message: str) -> None:
        now = time.monotonic()
        data = json.loads(message)
        if data.get("subscribed"):
            self.load.subscribed()
        elif "data" in data:
            self.load.delivered(int(data["data"]["block"]["round"]), now)

    def bytesMessageReceived(self, data: bytes) -> None:
        pass

    def pongReceived(self, payload: bytes) -> None:
        pass

    def connectionLost(self, reason: Any) -> None:
        self.load.lost += 1


#: Connections the load generator keeps open to the API at most.
MAX_CONNECTIONS = 256
#: A response header block longer than this is a broken server: the connection is dropped.
MAX_HEAD = 16_384


class _HttpConnection(Protocol):
    """One keep-alive connection: one request at a time, the answer read by Content-Length."""

    def __init__(self, pool: _HttpPool) -> None:
        self.pool = pool
        self.buffer = b""
        self.need: int | None = None
        self.status = ""
        self.current: tuple[str, float] | None = None

    def connectionMade(self) -> None:
        self.pool.ready(self)

    def send(self, route: str, request: bytes, due: float) -> None:
        self.current = (route, due)
        transport: Any = self.transport
        transport.write(request)

    def dataReceived(self, data: bytes) -> None:
        self.buffer += data
        while self.current is not None:
            if self.need is None:
                head, found, rest = self.buffer.partition(b"\r\n\r\n")
                if not found:
                    if len(self.buffer) > MAX_HEAD:
                        self._drop()
                    return
                lines = head.split(b"\r\n")
                self.status = lines[0].split(b" ", 2)[1].decode()
                length = 0
                for line in lines[1:]:
                    name, _, value = line.partition(b":")
                    if name.strip().lower() == b"content-length":
                        length = int(value.strip())
                self.need = length
                self.buffer = rest
            if len(self.buffer) < self.need:
                return
            self.buffer = self.buffer[self.need :]
            self.need = None
            (route, due), self.current = self.current, None
            self.pool.answered(route, due, self.status)
            self.pool.ready(self)

    def _drop(self) -> None:
        transport: Any = self.transport
        transport.abortConnection()

    def connectionLost(self, reason: object = None) -> None:
        self.pool.lost(self)


class _HttpPool:
    """Idle connections and the requests waiting for one."""

    def __init__(
        self, reactor: Any, host: str, port: int, record: Callable[[str, float, str], None]
    ) -> None:
        self.reactor = reactor
        self.host = host
        self.port = port
        self.record = record
        self.idle: list[_HttpConnection] = []
        self.waiting: deque[tuple[str, bytes, float]] = deque()
        self.open = 0
        self.opened = 0
        self.closing = False

    def send(self, route: str, request: bytes, due: float) -> None:
        if self.idle:
            self.idle.pop().send(route, request, due)
            return
        self.waiting.append((route, request, due))
        if self.open < MAX_CONNECTIONS:
            self._connect()

    def _connect(self) -> None:
        self.open += 1
        self.opened += 1
        endpoint = TCP4ClientEndpoint(self.reactor, self.host, self.port, timeout=10)
        d = endpoint.connect(cast(Any, _OneFactory(lambda: _HttpConnection(self))))
        d.addErrback(self._failed)

    def _failed(self, failure: Failure) -> None:
        self.open -= 1
        if self.waiting:
            route, _, due = self.waiting.popleft()
            self.record(route, due, "error")

    def ready(self, connection: _HttpConnection) -> None:
        if self.closing:
            connection._drop()
        elif self.waiting:
            connection.send(*self.waiting.popleft())
        else:
            self.idle.append(connection)

    def answered(self, route: str, due: float, status: str) -> None:
        self.record(route, due, status)

    def lost(self, connection: _HttpConnection) -> None:
        self.open -= 1
        if connection in self.idle:
            self.idle.remove(connection)
        if connection.current is not None:
            route, due = connection.current
            connection.current = None
            self.record(route, due, "error")
        if self.waiting and not self.closing and self.open < MAX_CONNECTIONS:
            self._connect()

    def close(self) -> None:
        self.closing = True
        for connection in self.idle:
            connection._drop()


class _OneFactory(ClientFactory):
    def __init__(self, build: Callable[[], Protocol]) -> None:
        self.build = build

    def buildProtocol(self, addr: object) -> Protocol:
        return self.build()


class ApiLoad:
    """Drives the API bench: server, miners, HTTP load, then WebSocket fan-out rounds."""

    def __init__(
        self, reactor: Any, config: ApiBenchConfig, out: Any = print, data_dir: str | None = None
    ) -> None:
        self.reactor = reactor
        self.config = config
        self.out = out
        self.data_dir = data_dir
        self.server: _ServerProcess | None = None
        self.miners = LoadGenerator(
            reactor, BenchConfig(connect_batch=config.connect_batch), out=out
        )
        self.result = ApiBenchResult(
            miners=config.miners, target_rate=config.rate, cache_ttl=config.cache_ttl
        )
        self.samples: list[tuple[str, float]] = []
        self.statuses: dict[str, int] = {}
        self.in_flight = 0
        self.lost = 0
        self._subscribed = 0
        self._arrivals: dict[int, list[float]] = {}
        self._waiter: tuple[int, Deferred[None]] | None = None
        self._tempdir: tempfile.TemporaryDirectory[str] | None = None
        self.clients: list[_Subscriber] = []
        self.failures: list[str] = []

    def _connect_failed(self, failure: Any) -> None:
        self.failures.append(failure.getErrorMessage())
        waiter, self._waiter = self._waiter, None
        if waiter is not None:
            waiter[1].errback(failure)

    # -- events ----------------------------------------------------------------------

    def subscribed(self) -> None:
        self._subscribed += 1
        self._wake(self._subscribed)

    def delivered(self, round_: int, now: float) -> None:
        arrivals = self._arrivals.setdefault(round_, [])
        arrivals.append(now)
        self._wake(len(arrivals))

    def _wake(self, count: int) -> None:
        waiter = self._waiter
        if waiter is not None and count >= waiter[0]:
            self._waiter = None
            waiter[1].callback(None)

    def _wait_for(self, count: int) -> Deferred[None]:
        done: Deferred[None] = Deferred()
        self._waiter = (count, done)
        return done

    # -- phases ----------------------------------------------------------------------

    def _cpu(self) -> tuple[float, float]:
        """CPU seconds used so far by the server process and by this one."""
        server = 0.0
        process: Any = self.server.transport if self.server is not None else None
        pid = getattr(process, "pid", None)
        if pid is not None:
            try:
                fields = Path(f"/proc/{pid}/stat").read_text().rsplit(")", 1)[1].split()
                server = (int(fields[11]) + int(fields[12])) / os.sysconf("SC_CLK_TCK")
            except (OSError, IndexError, ValueError):
                server = 0.0
        mine = os.times()
        return server, mine.user + mine.system

    async def start_server(self) -> tuple[int, int]:
        """Spawn the server process; (stratum port, API port)."""
        if self.data_dir is None:
            self._tempdir = tempfile.TemporaryDirectory(prefix="otedama-bench-api-")
            self.data_dir = self._tempdir.name
        server = _ServerProcess()
        self.server = server
        first = server.ask(None)
        python = sys.executable
        root = os.path.dirname(os.path.dirname(os.path.dirname(os.path.abspath(__file__))))
        env = dict(os.environ)
        env["PYTHONPATH"] = os.pathsep.join(p for p in (root, env.get("PYTHONPATH", "")) if p)
        self.reactor.spawnProcess(
            server,
            python,
            [
                python,
                "-m",
                "otedama.bench.api",
                "--data-dir",
                self.data_dir,
                "--cache-ttl",
                repr(self.config.cache_ttl),
                *(["--profile", self.config.profile] if self.config.profile else []),
                *([] if self.config.gc_freeze else ["--no-gc-freeze"]),
            ],
            env=env,
        )
        hello = await first
        return int(hello["stratum"]), int(hello["api"])

    async def http_load(self, base: str) -> None:
        """Open-loop requests at ``rate`` for ``warmup + duration`` s; measure the last part.

        The client is a few lines of HTTP/1.1 keep-alive over raw connections (read by
        ``Content-Length``), not ``Agent``: at thousands of requests a second a full HTTP
        client costs this process more CPU than the server spends answering, and on a
        shared machine that would be measured as the server's latency. A request that finds
        no idle connection opens one (up to ``MAX_CONNECTIONS``) or waits for one; the wait
        counts in its latency.
        """
        config = self.config
        host, _, port = base.removeprefix("http://").rpartition(":")
        requests = [
            (
                route,
                f"GET /api/v1{route} HTTP/1.1\r\nHost: {host}\r\nAccept: */*\r\n\r\n".encode(),
            )
            for route in ROUTES
        ]
        start = time.monotonic()
        measure_from = start + config.warmup
        end = measure_from + config.duration
        sent = [0]
        cpu_before = self._cpu()

        def record(route: str, due: float, status: str) -> None:
            now = time.monotonic()
            self.in_flight -= 1
            if due >= measure_from:
                self.samples.append((route, now - due))
                self.statuses[status] = self.statuses.get(status, 0) + 1

        pool = _HttpPool(self.reactor, host, int(port), record)

        def tick() -> None:
            now = time.monotonic()
            due_count = int((min(now, end) - start) * config.rate)
            while sent[0] < due_count:
                route, request = requests[sent[0] % len(requests)]
                self.in_flight += 1
                pool.send(route, request, start + sent[0] / config.rate)
                sent[0] += 1
            if now >= end:
                loop.stop()

        from twisted.internet.task import LoopingCall

        loop = LoopingCall(tick)
        loop.clock = self.reactor
        await loop.start(0.002)
        while self.in_flight > 0:
            await self.miners.sleep(0.05)
        pool.close()
        cpu_after = self._cpu()
        elapsed = time.monotonic() - start
        self.result.server_cpu_percent = round(100 * (cpu_after[0] - cpu_before[0]) / elapsed, 1)
        self.result.client_cpu_percent = round(100 * (cpu_after[1] - cpu_before[1]) / elapsed, 1)
        self.result.connections = pool.opened
        self.result.requests = len(self.samples)
        self.result.achieved_rate = len(self.samples) / config.duration if config.duration else 0
        # Failed requests are counted under the status "error".
        self.result.errors = sum(n for status, n in self.statuses.items() if status != "200")
        self.result.statuses = dict(self.statuses)
        latencies = [seconds for _, seconds in self.samples]
        self.result.p50_ms = percentile(latencies, 0.5) * 1000
        self.result.p99_ms = percentile(latencies, 0.99) * 1000
        self.result.max_ms = max(latencies, default=0.0) * 1000
        for route in ROUTES:
            mine = [seconds for name, seconds in self.samples if name == route]
            self.result.routes[route] = [
                round(percentile(mine, 0.5) * 1000, 2),
                round(percentile(mine, 0.99) * 1000, 2),
            ]

    async def fanout(self, base: str) -> None:
        """S subscribers on ``blocks``, then ``rounds`` blocks, each to its last delivery."""
        from twisted.web.websocket import WebSocketClientEndpoint

        config = self.config
        url = base.replace("http://", "ws://") + "/api/v1/ws"

        class Factory:
            def __init__(self, load: ApiLoad) -> None:
                self.load = load

            def buildProtocol(self, url: str) -> _Subscriber:
                client = _Subscriber(self.load)
                self.load.clients.append(client)
                return client

        factory = Factory(self)
        batch = max(1, config.connect_batch)
        while self._subscribed < config.subscribers:
            target = min(config.subscribers, self._subscribed + batch)
            ready = self._wait_for(target)
            for _ in range(target - self._subscribed):
                endpoint = WebSocketClientEndpoint.new(self.reactor, url)
                connecting = Deferred.fromCoroutine(endpoint.connect(cast(Any, factory)))
                connecting.addErrback(self._connect_failed)
            await ready
        self.result.subscribers = self._subscribed
        assert self.server is not None
        for _ in range(config.rounds):
            arrived = self._wait_for(config.subscribers)
            reply = await self.server.ask("block")
            self._arrivals.setdefault(int(reply["round"]), [])
            await arrived
            last = max(self._arrivals[int(reply["round"])])
            self.result.fanout_last_ms.append(round((last - float(reply["t0"])) * 1000, 3))
            await self.miners.sleep(0.05)
        self.result.fanout_last_p50_ms = percentile(self.result.fanout_last_ms, 0.5)
        self.result.fanout_last_p99_ms = percentile(self.result.fanout_last_ms, 0.99)

    async def run(self) -> ApiBenchResult:
        config = self.config
        stratum, api = await self.start_server()
        base = f"http://127.0.0.1:{api}"
        self.out(f"server: API on {base}, Stratum on 127.0.0.1:{stratum}")
        await self.miners.connect("127.0.0.1", stratum, config.miners)
        self.out(f"miners: {len(self.miners.ready)} connected to Stratum on the server")
        assert self.server is not None
        await self.server.ask("gc-reset")
        # This process holds the 10,000 bench miners too: its own full collections would
        # delay requests and be counted as the server's latency. Freeze them here, and
        # report this process's collections beside the server's.
        import gc

        gc.collect()
        gc.freeze()
        mine = GcPauses()
        gc.callbacks.append(mine)
        try:
            await self.http_load(base)
        finally:
            gc.callbacks.remove(mine)
            gc.unfreeze()
        self.result.gc = (await self.server.ask("gc"))["gc"]
        self.result.client_gc = mine.report()
        r = self.result
        self.out(
            f"api: {r.requests} requests in {config.duration:g} s ({r.achieved_rate:.0f}/s, "
            f"target {config.rate:g}/s), p50 {r.p50_ms:.2f} ms, p99 {r.p99_ms:.2f} ms, "
            f"max {r.max_ms:.2f} ms, errors {r.errors}; cache_ttl {r.cache_ttl:g} s; "
            f"CPU server {r.server_cpu_percent:.0f} %, load generator {r.client_cpu_percent:.0f} %"
            f" of a core; {r.connections} connections"
        )
        for who, report in (("server", r.gc), ("load generator", r.client_gc)):
            figures = ", ".join(f"gen {gen}: {'/'.join(map(str, v))}" for gen, v in report.items())
            self.out(
                f"{who} GC during the load (collections, longest ms, total ms) by generation: "
                + figures.replace("gen objects: ", "objects tracked: ")
            )
        for route, (p50, p99) in r.routes.items():
            self.out(f"  {route}: p50 {p50:.2f} ms, p99 {p99:.2f} ms")
        if config.subscribers and config.rounds:
            await self.fanout(base)
            self.out(
                f"websocket: {r.subscribers} subscribers, {config.rounds} blocks, publish to "
                f"last delivery p50 {r.fanout_last_p50_ms:.2f} ms, "
                f"p99 {r.fanout_last_p99_ms:.2f} ms"
            )
        return r

    async def close(self) -> None:
        for client in self.clients:
            if client.transport is not None:
                client.transport.loseConnection()
        await self.miners.close()
        server = self.server
        if server is not None and server.transport is not None:
            process: Any = server.transport
            process.closeStdin()
            await server.ended
        if self._tempdir is not None:
            self._tempdir.cleanup()


def register(subparsers: Any) -> None:
    """Add ``api`` to the ``bench`` sub-commands."""
    parser: argparse.ArgumentParser = subparsers.add_parser(
        "api",
        help="API p50/p99 at a request rate with miners on Stratum, and WebSocket fan-out",
        description=__doc__,
    )
    parser.add_argument("--miners", type=int, default=10_000, help="miners connected to Stratum")
    parser.add_argument("--rate", type=float, default=2000.0, help="API requests/s in total")
    parser.add_argument("--duration", type=float, default=10.0, help="measured seconds of load")
    parser.add_argument("--warmup", type=float, default=2.0, help="seconds of load before")
    parser.add_argument(
        "--subscribers", type=int, default=1000, help="WebSocket subscribers on blocks (0: skip)"
    )
    parser.add_argument("--rounds", type=int, default=10, help="blocks published for fan-out")
    parser.add_argument(
        "--cache-ttl",
        type=float,
        default=1.0,
        help="the server's api.cache_ttl in seconds (0: every request reads the ledger)",
    )
    parser.add_argument(
        "--no-gc-freeze",
        action="store_true",
        help="run the server without the node's garbage collection policy (app.gc), to compare",
    )
    parser.add_argument(
        "--profile",
        metavar="FILE",
        default=None,
        help="profile the server with cProfile (its thread's CPU time) and write stats to FILE",
    )
    parser.add_argument(
        "--json", action="store_true", help="also print the figures as one JSON object"
    )
    parser.set_defaults(func=run_api_bench)


def run_api_bench(args: argparse.Namespace) -> int:
    """Run the API bench with the epoll reactor for the load generator."""
    config = ApiBenchConfig(
        miners=args.miners,
        rate=args.rate,
        duration=args.duration,
        warmup=args.warmup,
        subscribers=args.subscribers,
        rounds=args.rounds,
        cache_ttl=args.cache_ttl,
        profile=args.profile,
        gc_freeze=not args.no_gc_freeze,
    )
    if (
        config.miners < 1
        or config.cache_ttl < 0
        or config.rate <= 0
        or config.duration <= 0
        or config.subscribers < 0
    ):
        print(
            "otedama bench api: --miners must be >= 1, --rate and --duration > 0 and "
            f"--subscribers >= 0 (got {config.miners}, {config.rate}, {config.duration}, "
            f"{config.subscribers})"
        )
        return 2
    raise_fd_limit()
    if "twisted.internet.reactor" not in sys.modules:
        from twisted.internet import epollreactor

        epollreactor.install()
    from twisted.internet.task import react

    outcome: dict[str, ApiBenchResult] = {}

    async def main(rx: Any) -> None:
        load = ApiLoad(rx, config)
        try:
            outcome["result"] = await load.run()
        finally:
            await load.close()

    try:
        react(lambda rx: Deferred.fromCoroutine(main(rx)), [])
    except SystemExit as exit_:
        if exit_.code not in (0, None):
            return int(exit_.code) if isinstance(exit_.code, int) else 1
    if args.json and "result" in outcome:
        print(json.dumps(asdict(outcome["result"])))
    return 0


if __name__ == "__main__":
    sys.exit(serve())

"""``otedama bench stratum``: throughput, latency, memory and notify fan-out of the server.

The server runs in its own process (:mod:`otedama.bench.stratum_server`, the node's real
Stratum stack on synthetic templates). The share load comes from K lean client processes
(:mod:`otedama.bench.lean_load`, standard-library asyncio, ``--clients``, default 2): N
miners between them that subscribe, authorize and submit shares (the server difficulty is
2**-33, so every nonce is a valid share). With ``--clients 0`` this process is the load
generator, as it was before: Twisted miners that submit shares they really hashed. On a
machine with 2 CPUs or more the server is pinned to the first and the load generator to
the rest (``--server-cpus``, ``--client-cpus``), so that neither competes with the other.
The memory, fan-out and reconnect-storm figures come from this process's own miners.
It prints figures; it never passes or fails.
"""

from __future__ import annotations

import argparse
import gc
import json
import math
import os
import sys
import time
from collections.abc import Callable, Iterator, Sequence
from contextlib import contextmanager
from dataclasses import dataclass, field, replace
from tempfile import TemporaryDirectory
from typing import Any

from twisted.internet.defer import Deferred
from twisted.internet.protocol import Factory, ProcessProtocol, Protocol
from twisted.python.failure import Failure

from otedama.bench.lean_fleet import CLIENT_CPUS, parse_cpus
from otedama.bench.stratum_server import BENCH_ADDRESS, raise_fd_limit
from otedama.chain.hashing import sha256d
from otedama.chain.target import difficulty_to_target
from otedama.miner.client import parse_difficulty
from otedama.miner.work import MinerJob, Work, WorkError, header_prefix
from otedama.stratum.codec import (
    CodecError,
    LineFramer,
    LineTooLong,
    Notification,
    Response,
    encode_request,
    parse_message,
)

__all__ = [
    "BenchConfig",
    "BenchResult",
    "LoadGenerator",
    "LoadMiner",
    "choose_cpus",
    "format_side_by_side",
    "histogram_percentile",
    "ledger_database",
    "percentile",
    "read_rss_kib",
    "register",
    "run_stratum_bench",
]


def percentile(values: list[float], fraction: float) -> float:
    """Nearest-rank percentile of ``values`` (``fraction`` in 0..1); 0.0 when empty."""
    if not values:
        return 0.0
    ordered = sorted(values)
    rank = max(1, min(len(ordered), math.ceil(fraction * len(ordered))))
    return ordered[rank - 1]


def histogram_percentile(histogram: dict[int, int], fraction: float) -> int:
    """Nearest-rank percentile of the values a ``{value: count}`` histogram counts (the
    same rank as :func:`percentile` on the values themselves); 0 when empty."""
    total = sum(histogram.values())
    if not total:
        return 0
    rank = max(1, min(total, math.ceil(fraction * total)))
    seen = 0
    for value in sorted(histogram):
        seen += histogram[value]
        if seen >= rank:
            return value
    raise AssertionError("unreachable: the ranks add up to the total")


def _load_text(load: Sequence[float]) -> str:
    return " ".join(f"{x:.2f}" for x in load)


def format_cpus(cpus: set[int] | list[int]) -> str:
    """A CPU set as a list :func:`parse_cpus` reads back (``"0"``, ``"1,2"``)."""
    return ",".join(str(cpu) for cpu in sorted(cpus))


def choose_cpus(
    server: str | None, clients: str | None, available: set[int]
) -> tuple[set[int], set[int]]:
    """The CPUs to pin the bench server and the load generator to (an empty set: not
    pinned), from ``--server-cpus`` and ``--client-cpus`` (None: not given; ``none``: do
    not pin). Neither given: on a machine with 2 CPUs or more the server gets the first of
    ``available`` and the load generator the rest; one given: the other gets what it left.
    ValueError says which option was wrong and why."""

    def parse(text: str | None, option: str) -> set[int] | None:
        if text is None:
            return None
        if text.strip().lower() == "none":
            return set()
        try:
            cpus = parse_cpus(text)
        except ValueError:
            raise ValueError(
                f"{option} {text!r} is not a CPU list (e.g. 0, 1,3 or 0-2; none: not pinned)"
            ) from None
        if not cpus <= available:
            raise ValueError(
                f"{option} {text!r} names CPU {format_cpus(cpus - available)}, which this"
                f" process may not use (it may use {format_cpus(available)})"
            )
        return cpus

    server_cpus = parse(server, "--server-cpus")
    client_cpus = parse(clients, "--client-cpus")
    if server_cpus is None and client_cpus is None:
        if len(available) < 2:
            return set(), set()
        first = min(available)
        return {first}, available - {first}
    if server_cpus is None:
        server_cpus = available - client_cpus if client_cpus else set()
    if client_cpus is None:
        client_cpus = available - server_cpus if server_cpus else set()
    return server_cpus, client_cpus


def read_rss_kib(pid: int) -> int:
    """Resident memory of process ``pid`` in KiB (``VmRSS`` of ``/proc/<pid>/status``)."""
    with open(f"/proc/{pid}/status") as status:
        for line in status:
            if line.startswith("VmRSS:"):
                return int(line.split()[1])
    raise OSError(f"no VmRSS line in /proc/{pid}/status")


@dataclass
class BenchConfig:
    """What to run (see ``otedama bench stratum --help``)."""

    connections: int = 1000
    duration: float = 10.0
    #: Lean client processes generating the share load (0: this process's Twisted miners).
    clients: int = 2
    #: CPU lists (``"0"``, ``"1,2"``) to pin the server and the lean clients to (None: not
    #: pinned here; ``run_stratum_bench`` pins this process itself).
    server_cpus: str | None = None
    client_cpus: str | None = None
    rate: float = 0.0
    fanout_miners: int = 0
    blocks: int = 5
    window: int = 1
    warmup: float = 2.0
    url: str | None = None
    server_reactor: str = "asyncio"
    connect_batch: int = 500
    storm: int = 0
    #: 0: the storm's miners are this process's; K > 0: K probe processes
    #: (:mod:`otedama.bench.storm_probe`), ``storm_inflight`` connections in flight each.
    storm_clients: int = 0
    storm_inflight: int = 200
    #: None: the Stratum stack alone (shares end at a counter); "sqlite" / "postgresql":
    #: the node's whole share path into that database (``ledger_url``, migrated).
    full_path: str | None = None
    ledger_url: str | None = None
    spool_dir: str | None = None
    #: Where the server writes its cProfile stats (None: no profiling).
    profile: str | None = None


@dataclass
class BenchResult:
    """The measured figures."""

    connections: int = 0
    duration: float = 0.0
    #: Lean client processes that generated the load (0: this process).
    clients: int = 0
    #: The CPUs the server and the load generator could run on (their affinity).
    server_cpus: list[int] = field(default_factory=list)
    client_cpus: list[int] = field(default_factory=list)
    accepted: int = 0
    rejected: int = 0
    shares_per_second: float = 0.0
    #: Submits sent per second in the measured window (open loop: compare with --rate),
    #: and how far the lean clients' open loop fell behind its schedule at worst.
    sent_per_second: float = 0.0
    behind_ms: float = 0.0
    #: The whole load (warm-up and the replies in flight after it included): shares the
    #: lean clients sent, the accepted replies they counted, replies that never came and
    #: connections lost; the server's own count of accepted shares after it.
    load_sent: int = 0
    load_accepted: int = 0
    load_unanswered: int = 0
    load_lost: int = 0
    server_accepted: int = 0
    latency_p50_ms: float = 0.0
    latency_p99_ms: float = 0.0
    latency_max_ms: float = 0.0
    connect_seconds: float = 0.0
    rss_base_kib: int = 0
    rss_connected_kib: int = 0
    rss_after_load_kib: int = 0
    memory_connections: int = 0
    fanout_miners: int = 0
    fanout_last_ms: list[float] = field(default_factory=list)
    fanout_p50_ms: float = 0.0
    fanout_p99_ms: float = 0.0
    fanout_server_write_ms: list[float] = field(default_factory=list)
    fanout_server_sent_ms: list[float] = field(default_factory=list)
    client_cpu_seconds: float = 0.0
    server_cpu_seconds: float = 0.0
    shares_per_server_cpu_second: float = 0.0
    load_average: list[float] = field(default_factory=list)
    storm_miners: int = 0
    storm_seconds: float = 0.0
    storm_server_cpu_seconds: float = 0.0
    storm_client_cpu_seconds: float = 0.0
    path: str = "stratum only"
    #: Full path: shares the pool core counted, and the ledger's outcome after a flush.
    pool_shares: int = 0
    ledger_stored: int = 0
    ledger_spooled: int = 0
    ledger_dropped: int = 0
    ledger_flush_seconds: float = 0.0


#: What follows the id in an accepted submit's reply line.
_ACCEPTED_TAIL = b',"result":true,"error":null}'


class LoadMiner(Protocol):
    """One bench miner connection: subscribe, authorize, submit hashed shares."""

    def __init__(self, gen: LoadGenerator) -> None:
        self.gen = gen
        self.framer = LineFramer(1 << 20)
        self.extranonce1 = b""
        self.extranonce2_size = 0
        self.job: MinerJob | None = None
        self.prefix = b""
        self.target = difficulty_to_target(1)
        self.nonce = 0
        self.next_id = 3
        self.sent: dict[int, float] = {}
        self.authorized = False
        self.ready = False
        self.stash: list[bytes] = []
        self.fanout_seen = -1

    def connectionMade(self) -> None:
        transport: Any = self.transport
        transport.setTcpNoDelay(True)
        self._write(
            encode_request(1, "mining.subscribe", ["otedama-bench"])
            + encode_request(2, "mining.authorize", [self.gen.user, "x"])
        )

    def _write(self, data: bytes) -> None:
        transport: Any = self.transport
        transport.write(data)

    def connectionLost(self, reason: Failure | None = None) -> None:
        self.gen.lost(self)

    def dataReceived(self, data: bytes) -> None:
        gen = self.gen
        if gen.fanout_block >= 0:
            # During a fan-out round only note when the clean notify arrived; parse later,
            # so the client's own parsing does not delay the next miner's timestamp.
            if (
                self.fanout_seen != gen.fanout_block
                and b"mining.notify" in data
                and b"true]" in data
            ):
                self.fanout_seen = gen.fanout_block
                gen.notified(time.monotonic())
            self.stash.append(data)
            return
        self.process(data, time.monotonic())

    def flush_stash(self) -> None:
        """Parse what arrived during a fan-out round."""
        stash, self.stash = self.stash, []
        now = time.monotonic()
        for data in stash:
            self.process(data, now)

    def process(self, data: bytes, now: float) -> None:
        for line in self.framer.feed(data):
            if isinstance(line, LineTooLong):
                continue
            # An accepted submit's reply, in the exact bytes the server writes for it
            # (``encode_result_true``), costs no JSON parse: at 20,000 replies a second the
            # load generator's own parsing would otherwise cap what it can measure.
            if line.startswith(b'{"id":') and line.endswith(_ACCEPTED_TAIL):
                head = line[6 : -len(_ACCEPTED_TAIL)]
                if head.isdigit():
                    sent = self.sent.pop(int(head), None)
                    if sent is not None:
                        self.gen.replied(self, True, None, now - sent)
                        continue
            try:
                message = parse_message(line)
            except CodecError:
                continue
            if isinstance(message, Response):
                self._reply(message, now)
            elif isinstance(message, Notification):
                self._notification(message)

    def _reply(self, message: Response, now: float) -> None:
        msg_id = message.id
        if msg_id == 1:
            result = message.result
            if isinstance(result, list) and len(result) >= 3:
                self.extranonce1 = bytes.fromhex(result[1])
                self.extranonce2_size = int(result[2])
        elif msg_id == 2:
            self.authorized = message.result is True
            if not self.authorized:
                self.gen.failed(self, f"authorize refused: {message.error!r}")
        elif isinstance(msg_id, int):
            sent = self.sent.pop(msg_id, None)
            if sent is not None:
                self.gen.replied(self, message.result is True, message.error, now - sent)
        self._check_ready()

    def _notification(self, message: Notification) -> None:
        if message.method == "mining.set_difficulty" and message.params:
            try:
                self.target = difficulty_to_target(parse_difficulty(message.params[0]))
            except WorkError:
                pass
        elif message.method == "mining.notify":
            try:
                self.job = MinerJob.from_notify(message.params)
            except WorkError:
                return
            self.prefix = b""
            self.nonce = 0
            self._check_ready()

    def _check_ready(self) -> None:
        if not self.ready and self.authorized and self.job is not None and self.extranonce1:
            self.ready = True
            self.gen.became_ready(self)

    def submit(self, now: float) -> None:
        """Find the next nonce under the target and submit it."""
        job = self.job
        if job is None:
            return
        if not self.prefix:
            work = Work(0, job, self.extranonce1, self.extranonce2_size, 0, 1, 0, self.target)
            self.prefix = header_prefix(work, 0, job.version)
        prefix, target, nonce = self.prefix, self.target, self.nonce
        while True:
            digest = sha256d(prefix + nonce.to_bytes(4, "little"))
            nonce += 1
            if int.from_bytes(digest, "little") <= target:
                break
        self.nonce = nonce
        msg_id = self.next_id
        self.next_id += 1
        self.sent[msg_id] = now
        params = [
            self.gen.user,
            job.job_id,
            "00" * self.extranonce2_size,
            f"{job.ntime:08x}",
            f"{nonce - 1:08x}",
        ]
        self._write(encode_request(msg_id, "mining.submit", params))


class _ServerProcess(ProcessProtocol):
    """A bench child (the server, a storm probe, a lean client): JSON lines from its
    stdout, stderr passed through."""

    def __init__(self) -> None:
        self.pid = 0
        self.buffer = b""
        self.waiters: list[Deferred[dict[str, Any]]] = []
        self.ended: Deferred[None] = Deferred()

    def outReceived(self, data: bytes) -> None:
        self.buffer += data
        *lines, self.buffer = self.buffer.split(b"\n")
        for line in lines:
            if line.strip() and self.waiters:
                self.waiters.pop(0).callback(json.loads(line))

    def errReceived(self, data: bytes) -> None:
        sys.stderr.write(data.decode(errors="replace"))

    def processEnded(self, reason: Failure) -> None:
        for waiter in self.waiters:
            waiter.errback(reason)
        self.waiters = []
        self.ended.callback(None)

    def ask(self, command: str | None) -> Deferred[dict[str, Any]]:
        """Send ``command`` (or nothing) and wait for the next line."""
        waiter: Deferred[dict[str, Any]] = Deferred()
        self.waiters.append(waiter)
        if command is not None:
            transport: Any = self.transport
            transport.write(command.encode() + b"\n")
        return waiter


def _part(total: int, parts: int, index: int) -> int:
    """Part ``index`` of ``total`` split as evenly as can be into ``parts``."""
    return total // parts + (index < total % parts)


def _child_env() -> dict[str, str]:
    """The environment for a bench child process: this tree first on its path."""
    root = os.path.dirname(os.path.dirname(os.path.dirname(os.path.abspath(__file__))))
    env = dict(os.environ)
    env["PYTHONPATH"] = os.pathsep.join(p for p in (root, env.get("PYTHONPATH", "")) if p)
    return env


class LoadGenerator:
    """Drives the bench: connections, share load, memory readings and fan-out rounds."""

    def __init__(
        self, reactor: Any, config: BenchConfig, out: Callable[[str], None] = print
    ) -> None:
        self.reactor = reactor
        self.config = config
        self.out = out
        self.user = BENCH_ADDRESS + ".bench"
        self.miners: list[LoadMiner] = []
        self.ready: list[LoadMiner] = []
        self.failures: list[str] = []
        self.lost_count = 0
        self.measuring = False
        self.loading = False
        self.latencies: list[float] = []
        self.accepted = 0
        self.rejected = 0
        self.reject_reasons: dict[str, int] = {}
        self.fanout_block = -1
        self.fanout_times: list[float] = []
        self._ready_waiter: tuple[int, Deferred[None]] | None = None
        self._fanout_waiter: tuple[int, Deferred[None]] | None = None
        self.server: _ServerProcess | None = None
        self.probes: list[_ServerProcess] = []
        self.lean: list[_ServerProcess] = []
        self.server_pid = 0
        self.result = BenchResult()

    # -- events from miners ---------------------------------------------------------------

    def became_ready(self, miner: LoadMiner) -> None:
        self.ready.append(miner)
        self._check_ready_waiter()
        if self.loading and self.config.rate == 0:
            for _ in range(self.config.window):
                miner.submit(time.monotonic())

    def failed(self, miner: LoadMiner, reason: str) -> None:
        self.failures.append(reason)
        self._check_ready_waiter()

    def _connect_failed(self, failure: Failure) -> None:
        self.failures.append(failure.getErrorMessage())
        self._check_ready_waiter()

    def lost(self, miner: LoadMiner) -> None:
        self.lost_count += 1
        self._check_ready_waiter()

    def replied(self, miner: LoadMiner, accepted: bool, error: object, latency: float) -> None:
        if self.measuring:
            self.latencies.append(latency)
            if accepted:
                self.accepted += 1
            else:
                self.rejected += 1
                key = repr(error)
                self.reject_reasons[key] = self.reject_reasons.get(key, 0) + 1
        if self.loading and self.config.rate == 0:
            miner.submit(time.monotonic())

    def notified(self, now: float) -> None:
        self.fanout_times.append(now)
        waiter = self._fanout_waiter
        if waiter is not None and len(self.fanout_times) >= waiter[0]:
            self._fanout_waiter = None
            waiter[1].callback(None)

    def _check_ready_waiter(self) -> None:
        waiter = self._ready_waiter
        if waiter is None:
            return
        settled = len(self.ready) + len(self.failures) + self.lost_count
        if settled >= waiter[0]:
            self._ready_waiter = None
            waiter[1].callback(None)

    # -- phases ---------------------------------------------------------------------------

    async def sleep(self, seconds: float) -> None:
        d: Deferred[None] = Deferred()
        self.reactor.callLater(seconds, d.callback, None)
        await d

    def _spawn(
        self, module: str, *args: str, env: dict[str, str] | None = None
    ) -> tuple[_ServerProcess, Deferred[dict[str, Any]]]:
        """Start ``python -m module args`` as a bench child; the child and its first line."""
        child = _ServerProcess()
        hello = child.ask(None)
        argv = [sys.executable, "-m", module, *args]
        process = self.reactor.spawnProcess(
            child, sys.executable, argv, env=_child_env() if env is None else env
        )
        child.pid = process.pid
        return child, hello

    async def start_server(self) -> tuple[str, int]:
        """Spawn the server process; return (host, port)."""
        argv = ["--reactor", self.config.server_reactor]
        if self.config.full_path:
            argv += [
                "--full-path",
                self.config.full_path,
                "--ledger-url",
                self.config.ledger_url or "",
                "--spool-dir",
                self.config.spool_dir or "",
            ]
        if self.config.profile:
            argv += ["--profile", self.config.profile]
        if self.config.server_cpus:
            argv += ["--cpus", self.config.server_cpus]
        self.server, first = self._spawn("otedama.bench.stratum_server", *argv)
        self.server_pid = self.server.pid
        hello = await first
        return "127.0.0.1", int(hello["port"])

    async def connect(self, host: str, port: int, total: int, batch_size: int = 0) -> None:
        """Open miners until ``total`` are ready (in batches of ``batch_size``, default
        ``connect_batch``), or fail loudly."""
        from twisted.internet.endpoints import TCP4ClientEndpoint

        endpoint = TCP4ClientEndpoint(self.reactor, host, port, timeout=60)
        factory: Any = Factory.forProtocol(lambda: LoadMiner(self))
        while len(self.miners) < total:
            batch = min(batch_size or self.config.connect_batch, total - len(self.miners))
            done: Deferred[None] = Deferred()
            self._ready_waiter = (len(self.miners) + batch, done)
            for _ in range(batch):
                d = endpoint.connect(factory)
                d.addCallback(self.miners.append)
                d.addErrback(self._connect_failed)
            await done
            if self.failures or self.lost_count:
                raise RuntimeError(
                    f"{len(self.failures)} connections failed, {self.lost_count} lost after"
                    f" {len(self.ready)} ready; first failure: {self.failures[:1]}"
                )

    async def load(self, duration: float) -> None:
        """Submit shares for ``warmup + duration`` seconds; measure the last ``duration``."""
        config = self.config
        self.loading = True
        # The load generator's own garbage collection pauses would show up as server
        # latency: keep them out of the measured window.
        gc.collect()
        gc.disable()
        ticker = None
        if config.rate > 0:
            from twisted.internet.task import LoopingCall

            state = {"last": time.monotonic(), "carry": 0.0, "index": 0}

            def tick() -> None:
                now = time.monotonic()
                state["carry"] += (now - state["last"]) * config.rate
                state["last"] = now
                count = int(state["carry"])
                state["carry"] -= count
                ready = self.ready
                index = int(state["index"])
                for _ in range(count):
                    ready[index % len(ready)].submit(now)
                    index += 1
                state["index"] = index

            ticker = LoopingCall(tick)
            ticker.clock = self.reactor
            ticker.start(0.005)
        else:
            now = time.monotonic()
            for miner in self.ready:
                for _ in range(config.window):
                    miner.submit(now)
        await self.sleep(config.warmup)
        self.measuring = True
        cpu0 = os.times()
        server_cpu0 = self._server_cpu()
        start = time.monotonic()
        await self.sleep(duration)
        elapsed = time.monotonic() - start
        self.measuring = False
        cpu1 = os.times()
        self.result.server_cpu_seconds = self._server_cpu() - server_cpu0
        self.result.client_cpu_seconds = (cpu1.user + cpu1.system) - (cpu0.user + cpu0.system)
        self.loading = False
        gc.enable()
        if ticker is not None:
            ticker.stop()
        await self.sleep(1.0)  # let in-flight replies land
        result = self.result
        result.duration = elapsed
        result.accepted = self.accepted
        result.rejected = self.rejected
        result.shares_per_second = self.accepted / elapsed if elapsed > 0 else 0.0
        result.latency_p50_ms = percentile(self.latencies, 0.50) * 1000
        result.latency_p99_ms = percentile(self.latencies, 0.99) * 1000
        result.latency_max_ms = max(self.latencies, default=0.0) * 1000
        if result.server_cpu_seconds > 0:
            result.shares_per_server_cpu_second = self.accepted / result.server_cpu_seconds
        result.load_average = list(os.getloadavg())

    async def start_lean(self, host: str, port: int) -> int:
        """Start the lean client processes with the ``connections`` miners between them;
        return how many are ready, or fail loudly."""
        from twisted.internet.defer import gatherResults

        config = self.config
        count = min(config.clients, config.connections)
        env = _child_env()
        env.pop(CLIENT_CPUS, None)
        if config.client_cpus:
            env[CLIENT_CPUS] = config.client_cpus
        hellos = []
        for index in range(count):
            client, hello = self._spawn(
                "otedama.bench.lean_load",
                "--host",
                host,
                "--port",
                str(port),
                "--miners",
                str(_part(config.connections, count, index)),
                "--index",
                str(index),
                "--address",
                BENCH_ADDRESS,
                "--window",
                str(config.window),
                "--rate",
                repr(config.rate / count),
                env=env,
            )
            hellos.append(hello)
            self.lean.append(client)
        answers = await gatherResults(hellos, consumeErrors=True)
        failed = sum(int(a["failed"]) for a in answers)
        if failed:
            reasons = [r for a in answers for r in a["failures"]]
            raise RuntimeError(
                f"{failed} of {config.connections} lean client miners were not ready;"
                f" first failure: {reasons[:1]}"
            )
        self.result.clients = count
        self.result.client_cpus = sorted({cpu for a in answers for cpu in a["cpus"]})
        return sum(int(a["ready"]) for a in answers)

    async def load_lean(self, duration: float) -> None:
        """The lean clients submit for ``warmup + duration`` seconds; measure the last
        ``duration``, then wait for the replies in flight and count the whole load."""
        from twisted.internet.defer import gatherResults

        clients = self.lean
        result = self.result
        await gatherResults([c.ask("load") for c in clients], consumeErrors=True)
        await self.sleep(self.config.warmup)
        measuring = [c.ask("measure") for c in clients]
        server_cpu0 = self._server_cpu()
        start = time.monotonic()
        await gatherResults(measuring, consumeErrors=True)
        await self.sleep(max(0.0, duration - (time.monotonic() - start)))
        stopping = [c.ask("stop") for c in clients]
        elapsed = time.monotonic() - start
        result.server_cpu_seconds = self._server_cpu() - server_cpu0
        answers: list[dict[str, Any]] = await gatherResults(stopping, consumeErrors=True)
        histogram: dict[int, int] = {}
        for answer in answers:
            for us, count in answer["latency_us"]:
                histogram[us] = histogram.get(us, 0) + count
            for reason, count in answer["reasons"].items():
                self.reject_reasons[reason] = self.reject_reasons.get(reason, 0) + count

        def total(key: str) -> int:
            return sum(int(answer[key]) for answer in answers)

        result.duration = elapsed
        result.accepted = total("accepted")
        result.rejected = total("rejected")
        result.shares_per_second = result.accepted / elapsed if elapsed > 0 else 0.0
        result.sent_per_second = total("sent") / elapsed if elapsed > 0 else 0.0
        result.behind_ms = max(float(answer["behind_ms"]) for answer in answers)
        result.latency_p50_ms = histogram_percentile(histogram, 0.50) / 1000
        result.latency_p99_ms = histogram_percentile(histogram, 0.99) / 1000
        result.latency_max_ms = max(histogram, default=0) / 1000
        result.client_cpu_seconds = sum(float(answer["cpu_seconds"]) for answer in answers)
        result.load_sent = total("sent_total")
        result.load_accepted = total("accepted_total")
        result.load_unanswered = total("unanswered")
        result.load_lost = total("lost")
        if result.server_cpu_seconds > 0:
            result.shares_per_server_cpu_second = result.accepted / result.server_cpu_seconds
        result.load_average = list(os.getloadavg())

    async def stop_lean(self) -> None:
        """Close the lean clients (their miners disconnect) and wait for them to end."""
        clients, self.lean = self.lean, []
        for client in clients:
            if client.transport is not None:
                stdin: Any = client.transport
                stdin.closeStdin()
        for client in clients:
            await client.ended

    def _server_cpu(self) -> float:
        if not self.server_pid:
            return 0.0
        with open(f"/proc/{self.server_pid}/stat") as stat:
            fields = stat.read().rsplit(")", 1)[1].split()
        ticks = os.sysconf("SC_CLK_TCK")
        return (int(fields[11]) + int(fields[12])) / ticks

    async def fanout(self, blocks: int) -> None:
        """Time new-block notifies to every ready miner over ``blocks`` rounds."""
        server = self.server
        assert server is not None
        expected = len(self.ready)
        all_latencies: list[float] = []
        for block in range(blocks):
            await self.sleep(0.5)
            self.fanout_times = []
            self.fanout_block = block
            done: Deferred[None] = Deferred()
            self._fanout_waiter = (expected, done)
            timeout = self.reactor.callLater(60, lambda d=done: d.called or d.callback(None))
            reply = await server.ask("block")
            await done
            if timeout.active():
                timeout.cancel()
            self.fanout_block = -1
            for miner in self.ready:
                miner.flush_stash()
            t0 = float(reply["t0"])
            latencies = [t - t0 for t in self.fanout_times]
            all_latencies.extend(latencies)
            last = max(latencies, default=float("nan")) * 1000
            self.result.fanout_last_ms.append(last)
            queued = (float(reply["t1"]) - t0) * 1000
            sent = (float(reply["t2"]) - t0) * 1000
            self.result.fanout_server_write_ms.append(queued)
            self.result.fanout_server_sent_ms.append(sent)
            self.out(
                f"  block {block + 1}: {len(latencies)}/{expected} miners notified,"
                f" last after {last:.1f} ms; the server had queued every notify after"
                f" {queued:.1f} ms and sent the last one to the kernel after {sent:.1f} ms"
            )
        self.result.fanout_miners = expected
        self.result.fanout_p50_ms = percentile(all_latencies, 0.50) * 1000
        self.result.fanout_p99_ms = percentile(all_latencies, 0.99) * 1000

    async def storm(self, host: str, port: int, count: int) -> None:
        """A reconnect storm: ``count`` more miners connect at once (subscribe, authorize);
        time until the last one has its first job."""
        result = self.result
        start_ready = len(self.ready)
        cpu0 = self._server_cpu()
        start = time.monotonic()
        await self.connect(host, port, len(self.miners) + count, batch_size=count)
        result.storm_seconds = time.monotonic() - start
        result.storm_server_cpu_seconds = self._server_cpu() - cpu0
        result.storm_miners = len(self.ready) - start_ready

    async def storm_from_probes(self, host: str, port: int, count: int) -> None:
        """A reconnect storm from ``storm_clients`` probe processes, each keeping at most
        ``storm_inflight`` miners between connecting and their first job; timed from
        ``go`` until the last probe's last miner has its job."""
        from twisted.internet.defer import gatherResults

        config = self.config
        result = self.result
        clients = config.storm_clients
        probes: list[_ServerProcess] = []
        hellos = []
        first = 0
        for index in range(clients):
            part = _part(count, clients, index)
            probe, hello = self._spawn(
                "otedama.bench.storm_probe",
                "--host",
                host,
                "--port",
                str(port),
                "--count",
                str(part),
                "--first",
                str(first),
                "--inflight",
                str(config.storm_inflight),
                "--user",
                BENCH_ADDRESS,
            )
            hellos.append(hello)
            probes.append(probe)
            first += part
        self.probes = probes
        await gatherResults(hellos, consumeErrors=True)
        cpu0 = self._server_cpu()
        start = time.monotonic()
        answers = await gatherResults([p.ask("go") for p in probes], consumeErrors=True)
        result.storm_seconds = time.monotonic() - start
        result.storm_server_cpu_seconds = self._server_cpu() - cpu0
        result.storm_client_cpu_seconds = sum(float(a["cpu_seconds"]) for a in answers)
        result.storm_miners = sum(int(a["ready"]) for a in answers)
        failed = sum(int(a["failures"]) for a in answers)
        if failed:
            reasons = [a["first_failure"] for a in answers if a["first_failure"]]
            raise RuntimeError(
                f"reconnect storm: {failed} of {count} miners failed; first: {reasons[:1]}"
            )

    def _rss_text(self, kib: int) -> str:
        return f"{kib / 1024:.1f} MiB" if self.server_pid else "n/a (--url)"

    def rss(self) -> int:
        return read_rss_kib(self.server_pid) if self.server_pid else 0

    async def run(self) -> BenchResult:
        """All phases; returns the figures (also printed as they come)."""
        config = self.config
        out = self.out
        result = self.result
        limit = raise_fd_limit()
        result.path = f"full path, {config.full_path}" if config.full_path else "stratum only"
        out(f"== {result.path}: load average {_load_text(os.getloadavg())}")
        if config.url:
            from otedama.miner.service import endpoint_from_url

            spec = endpoint_from_url(config.url)
            fields = dict(part.split("=", 1) for part in spec.split(":")[1:])
            host, port = fields["host"], int(fields["port"])
        else:
            host, port = await self.start_server()
            await self.sleep(0.5)
            result.rss_base_kib = self.rss()
            result.server_cpus = sorted(os.sched_getaffinity(self.server_pid))
            out(
                f"server pid {self.server_pid} on port {port}, RSS"
                f" {result.rss_base_kib / 1024:.1f} MiB, on CPU {format_cpus(result.server_cpus)}"
            )
        # The lean clients generate the share load; with no load to generate (or
        # --clients 0) this process's miners are connected as before.
        lean = config.clients > 0 and config.duration > 0
        if lean:
            clients = min(config.clients, config.connections)
            out(
                f"fd limit {limit}; connecting {config.connections} miners from {clients}"
                " lean client processes ..."
            )
        else:
            out(f"fd limit {limit}; connecting {config.connections} miners ...")
        start = time.monotonic()
        if lean:
            result.connections = await self.start_lean(host, port)
            generator = (
                f"{result.clients} lean client processes on CPU {format_cpus(result.client_cpus)}"
            )
        else:
            await self.connect(host, port, config.connections)
            result.connections = len(self.ready)
            result.client_cpus = sorted(os.sched_getaffinity(0))
            generator = f"this process on CPU {format_cpus(result.client_cpus)}"
        result.connect_seconds = time.monotonic() - start
        await self.sleep(1.0)
        result.rss_connected_kib = self.rss()
        result.memory_connections = result.connections
        out(
            f"{result.connections} miners ready in {result.connect_seconds:.1f} s;"
            f" server RSS {self._rss_text(result.rss_connected_kib)}; load generator:"
            f" {generator}"
        )
        if config.duration > 0:
            mode = (
                f"open loop at {config.rate:g} shares/s"
                if config.rate
                else (f"closed loop, {config.window} in flight per miner")
            )
            out(f"submitting for {config.warmup:g} s warm-up + {config.duration:g} s ({mode}) ...")
            if lean:
                await self.load_lean(config.duration)
            else:
                await self.load(config.duration)
            result.rss_after_load_kib = self.rss()
            if self.server is not None:
                stats = await self.server.ask("stats")
                result.server_accepted = int(stats["accepted"])
            server_cpu = (
                f" server CPU {result.server_cpu_seconds / result.duration * 100:.0f}%"
                f" ({result.shares_per_server_cpu_second:.0f} shares per server CPU-second),"
                if self.server_pid
                else ""
            )
            out(
                f"accepted {result.accepted} ({result.shares_per_second:.0f} shares/s),"
                f" rejected {result.rejected} {self.reject_reasons or ''};"
                f" submit->reply p50 {result.latency_p50_ms:.2f} ms,"
                f" p99 {result.latency_p99_ms:.2f} ms, max {result.latency_max_ms:.1f} ms;"
                f"{server_cpu}"
                f" load generator CPU {result.client_cpu_seconds / result.duration * 100:.0f}%"
                f"{f' ({result.clients} processes)' if lean else ''};"
                f" load average {_load_text(result.load_average)}"
            )
            if config.rate:
                out(
                    f"open loop: asked {config.rate:g} shares/s, sent"
                    f" {result.sent_per_second:.0f}/s"
                    + (
                        f"; the clients were at most {result.behind_ms:.1f} ms behind"
                        " their schedule"
                        if lean
                        else ""
                    )
                )
            if lean:
                server_count = (
                    f"; the server counted {result.server_accepted} accepted"
                    if self.server is not None
                    else ""
                )
                out(
                    f"the whole load (warm-up and the last replies included): the clients"
                    f" sent {result.load_sent} shares, {result.load_accepted} accepted,"
                    f" {result.load_unanswered} unanswered, {result.load_lost} connections"
                    f" lost{server_count}"
                )
                # The fan-out and the storm use this process's miners.
                await self.stop_lean()
        if config.full_path and self.server is not None:
            figures = await self.server.ask("flush")
            if "error" in figures:
                raise RuntimeError(f"the bench server could not flush its ledger: {figures}")
            result.pool_shares = int(figures["pool_shares"])
            result.ledger_stored = int(figures["stored"])
            result.ledger_spooled = int(figures["spooled"])
            result.ledger_dropped = int(figures["dropped"])
            result.ledger_flush_seconds = float(figures["flush_seconds"])
            out(
                f"ledger ({config.full_path}): the pool core counted {result.pool_shares} shares;"
                f" {result.ledger_stored} stored in the database, {result.ledger_spooled}"
                f" spooled, {result.ledger_dropped} dropped; the last"
                f" {figures['buffered']} buffered shares flushed in"
                f" {result.ledger_flush_seconds * 1000:.0f} ms"
            )
        if config.fanout_miners and config.url:
            out("fan-out skipped: it needs the bench's own server (no --url) to make blocks")
        if config.fanout_miners and not config.url:
            if config.fanout_miners > len(self.miners):
                out(f"connecting up to {config.fanout_miners} miners for the fan-out rounds ...")
                await self.connect(host, port, config.fanout_miners)
                await self.sleep(1.0)
                if len(self.ready) > result.memory_connections:
                    result.rss_connected_kib = self.rss()
                    result.memory_connections = len(self.ready)
                out(f"{len(self.ready)} miners ready; server RSS {self.rss() / 1024:.1f} MiB")
            out(f"fan-out: {config.blocks} new blocks to {len(self.ready)} miners")
            await self.fanout(config.blocks)
            out(
                f"fan-out over {config.blocks} blocks: notify latency p50"
                f" {result.fanout_p50_ms:.1f} ms, p99 {result.fanout_p99_ms:.1f} ms,"
                f" last miner max {max(result.fanout_last_ms, default=0):.1f} ms;"
                f" server sent all by p50 {percentile(result.fanout_server_sent_ms, 0.5):.1f} ms,"
                f" max {max(result.fanout_server_sent_ms, default=0):.1f} ms"
            )
        if config.storm > 0 and config.storm_clients:
            out(
                f"reconnect storm: {config.storm} miners from {config.storm_clients} probe"
                f" processes, {config.storm_inflight} in flight each ..."
            )
            await self.storm_from_probes(host, port, config.storm)
        elif config.storm > 0:
            out(f"reconnect storm: {config.storm} miners connecting at once ...")
            await self.storm(host, port, config.storm)
        if config.storm > 0:
            server_cpu = (
                f"; server CPU {result.storm_server_cpu_seconds:.2f} s"
                f" ({result.storm_server_cpu_seconds / result.storm_miners * 1000:.2f} ms"
                " per miner)"
                if self.server_pid and result.storm_miners
                else ""
            )
            probes_cpu = (
                f"; probe processes' CPU {result.storm_client_cpu_seconds:.2f} s"
                if config.storm_clients
                else ""
            )
            out(
                f"reconnect storm: {result.storm_miners} miners connected, authorized and"
                f" had their first job after {result.storm_seconds:.2f} s{server_cpu}"
                f"{probes_cpu}; load average {_load_text(os.getloadavg())}"
            )
        if result.rss_base_kib and result.memory_connections:
            per = (result.rss_connected_kib - result.rss_base_kib) / result.memory_connections
            out(
                f"memory: {result.rss_connected_kib / 1024:.1f} MiB RSS with"
                f" {result.memory_connections} miners ({per:.2f} KiB per connection over the"
                f" {result.rss_base_kib / 1024:.1f} MiB idle server)"
            )
        return result

    async def close(self) -> None:
        await self.stop_lean()
        for miner in self.miners:
            transport: Any = miner.transport
            if transport is not None:
                transport.loseConnection()
        for probe in self.probes:
            if probe.transport is not None:
                stdin: Any = probe.transport
                stdin.closeStdin()
        for probe in self.probes:
            await probe.ended
        server = self.server
        if server is not None and server.transport is not None:
            process: Any = server.transport
            process.closeStdin()
            await server.ended


def register(subparsers: Any) -> None:
    """Add ``stratum`` to the ``bench`` sub-commands."""
    parser: argparse.ArgumentParser = subparsers.add_parser(
        "stratum",
        help="Stratum server throughput, latency, memory and notify fan-out",
        description=__doc__,
    )
    parser.add_argument("--connections", type=int, default=1000, help="miners submitting shares")
    parser.add_argument(
        "--clients",
        type=int,
        default=2,
        help="lean client processes (standard-library asyncio) that generate the share load,"
        " the miners split between them (0: this process's Twisted miners, as before)",
    )
    parser.add_argument(
        "--server-cpus",
        default=None,
        metavar="LIST",
        help="pin the server process to these CPUs, e.g. 0 ('none': not pinned; default:"
        " the first CPU when there are 2 or more, else not pinned)",
    )
    parser.add_argument(
        "--client-cpus",
        default=None,
        metavar="LIST",
        help="pin the load generator (the lean clients, the storm probes and this process)"
        " to these CPUs, e.g. 1 ('none': not pinned; default: the CPUs the server is not"
        " pinned to)",
    )
    parser.add_argument(
        "--duration", type=float, default=10.0, help="measured seconds of load (0: no load)"
    )
    parser.add_argument(
        "--rate",
        type=float,
        default=0.0,
        help="shares/s in total (0: as fast as the server answers)",
    )
    parser.add_argument(
        "--window", type=int, default=1, help="submits in flight per miner when --rate is 0"
    )
    parser.add_argument(
        "--warmup", type=float, default=2.0, help="seconds of load before measuring"
    )
    parser.add_argument(
        "--fanout-miners",
        type=int,
        default=0,
        help="miners to time new-block notifies to (0: skip)",
    )
    parser.add_argument("--blocks", type=int, default=5, help="new blocks in the fan-out rounds")
    parser.add_argument(
        "--storm",
        type=int,
        default=0,
        help="reconnect storm: N more miners connecting at once, timed until the last has"
        " its first job (0: skip)",
    )
    parser.add_argument(
        "--storm-clients",
        type=int,
        default=0,
        help="run the reconnect storm from K probe processes of its own (as the independent"
        " probe does: 2), each keeping --storm-inflight miners in flight (0: from this"
        " process, all at once)",
    )
    parser.add_argument(
        "--storm-inflight",
        type=int,
        default=200,
        help="with --storm-clients: miners each probe has between connecting and first job",
    )
    parser.add_argument(
        "--url", default=None, help="bench an already running server (no memory or fan-out figures)"
    )
    parser.add_argument(
        "--server-reactor",
        choices=("asyncio", "epoll"),
        default="asyncio",
        help="reactor of the in-process server (the node uses asyncio)",
    )
    parser.add_argument(
        "--full-path",
        choices=("sqlite", "postgresql", "all"),
        default=None,
        help="shares go through the node's whole share path (pool core, worker statistics,"
        " LedgerLink, the ledger batcher) into a SQLite file or a scratch PostgreSQL"
        " database (created and dropped); 'all' runs the Stratum stack alone, then SQLite,"
        " then PostgreSQL, back to back, and prints them side by side",
    )
    parser.add_argument(
        "--profile",
        default=None,
        metavar="FILE",
        help="profile the server with cProfile and write its stats to FILE (with 'all',"
        " FILE.<path>); read them with python -m pstats",
    )
    parser.add_argument(
        "--pg-server",
        default="postgresql://postgres@127.0.0.1:5432",
        help="PostgreSQL server for --full-path postgresql's scratch database",
    )
    parser.add_argument(
        "--json", action="store_true", help="also print the figures as one JSON object"
    )
    parser.set_defaults(func=run_stratum_bench)


def run_stratum_bench(args: argparse.Namespace) -> int:
    """Run the Stratum bench with the epoll reactor for the load generator."""
    config = BenchConfig(
        connections=args.connections,
        duration=args.duration,
        rate=args.rate,
        fanout_miners=args.fanout_miners,
        blocks=args.blocks,
        window=args.window,
        warmup=args.warmup,
        url=args.url,
        server_reactor=args.server_reactor,
        storm=args.storm,
        storm_clients=getattr(args, "storm_clients", 0),
        storm_inflight=getattr(args, "storm_inflight", 200),
        clients=getattr(args, "clients", 2),
    )
    if not 0 <= config.clients <= 255:
        print(f"otedama bench stratum: --clients must be 0 to 255 (got {config.clients})")
        return 2
    available = os.sched_getaffinity(0)
    try:
        server_cpus, client_cpus = choose_cpus(
            getattr(args, "server_cpus", None), getattr(args, "client_cpus", None), available
        )
    except ValueError as error:
        print(f"otedama bench stratum: {error}")
        return 2
    if config.storm < 0 or config.storm_clients < 0 or config.storm_inflight < 1:
        print(
            "otedama bench stratum: --storm and --storm-clients must be >= 0 and"
            f" --storm-inflight >= 1 (got {config.storm}, {config.storm_clients},"
            f" {config.storm_inflight})"
        )
        return 2
    if config.connections < 1 or config.window < 1 or config.rate < 0 or config.blocks < 1:
        print(
            "otedama bench stratum: --connections, --window and --blocks must be >= 1 and"
            f" --rate >= 0 (got {config.connections}, {config.window}, {config.blocks},"
            f" {config.rate})"
        )
        return 2
    if "twisted.internet.reactor" not in sys.modules:
        from twisted.internet import epollreactor

        epollreactor.install()
    from twisted.internet import reactor
    from twisted.internet.task import react

    full_path = getattr(args, "full_path", None)
    if full_path and config.url:
        print("otedama bench stratum: --full-path needs the bench's own server (no --url)")
        return 2
    if client_cpus:
        # This process too: with --clients 0 it is the load generator, and the storm
        # probes inherit its CPUs. The server then pins itself (or is given every CPU
        # back when it is not pinned).
        os.sched_setaffinity(0, client_cpus)
        server_cpus = server_cpus or available
    config.server_cpus = format_cpus(server_cpus) if server_cpus else None
    config.client_cpus = format_cpus(client_cpus) if client_cpus else None
    generator = f"{config.clients} lean client processes" if config.clients else "this process"
    server = (
        "the server is not the bench's (--url)"
        if config.url
        else f"the server to CPU {config.server_cpus or 'any (not pinned)'}"
    )
    print(
        f"pinned: {server}, the load generator ({generator}) to CPU"
        f" {config.client_cpus or 'any (not pinned)'}",
        flush=True,
    )
    paths: list[str | None] = [None, "sqlite", "postgresql"] if full_path == "all" else [full_path]
    pg_server = getattr(args, "pg_server", "postgresql://postgres@127.0.0.1:5432")
    results: list[BenchResult] = []

    async def main(rx: Any) -> None:
        for path in paths:
            with ledger_database(path, pg_server) as (url, spool):
                profile = getattr(args, "profile", None)
                if profile and len(paths) > 1:
                    profile = f"{profile}.{path or 'stratum'}"
                run_config = replace(
                    config, full_path=path, ledger_url=url, spool_dir=spool, profile=profile
                )
                gen = LoadGenerator(rx, run_config)
                try:
                    results.append(await gen.run())
                finally:
                    await gen.close()
            if len(paths) > 1:
                await gen.sleep(1.0)

    try:
        react(lambda rx: Deferred.fromCoroutine(main(rx)), [])
    except SystemExit as exit_:
        if exit_.code not in (0, None):
            return int(exit_.code) if isinstance(exit_.code, int) else 1
    del reactor
    if len(results) > 1:
        print(format_side_by_side(results))
    if args.json and results:
        figures = [r.__dict__ for r in results]
        print(json.dumps(figures[0] if len(figures) == 1 else figures))
    return 0


@contextmanager
def ledger_database(path: str | None, pg_server: str) -> Iterator[tuple[str | None, str | None]]:
    """For a full-path run: a migrated ledger database (a SQLite file, or a scratch
    PostgreSQL database dropped afterwards) and a spool directory; (None, None) otherwise."""
    if path is None:
        yield None, None
        return
    from otedama.bench.ledger import drop_database, scratch_database
    from otedama.ledger import db

    with TemporaryDirectory(prefix="otedama-bench-full-path-") as directory:
        spool = os.path.join(directory, "spool")
        if path == "postgresql":
            url, name = scratch_database(pg_server)
            try:
                yield url, spool
            finally:
                drop_database(pg_server, name)
            return
        url = f"sqlite:///{directory}/ledger.sqlite"
        engine = db.make_engine(url, pool_size=1)
        with engine.begin() as connection:
            db.upgrade(connection)
        engine.dispose()
        yield url, spool


def format_side_by_side(results: list[BenchResult]) -> str:
    """One line per path of a ``--full-path all`` run."""
    lines = ["path                  shares/s  per server CPU-s  server CPU  p50 ms  p99 ms  load"]
    for r in results:
        cpu = r.server_cpu_seconds / r.duration * 100 if r.duration else 0.0
        lines.append(
            f"{r.path:<20} {r.shares_per_second:>9,.0f} {r.shares_per_server_cpu_second:>17,.0f}"
            f" {cpu:>10.0f}% {r.latency_p50_ms:>7.2f} {r.latency_p99_ms:>7.2f}"
            f"  {_load_text(r.load_average)}"
        )
    return "\n".join(lines)

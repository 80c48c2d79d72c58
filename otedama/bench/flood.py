"""``otedama bench flood``: honest miners keep mining while one address floods the node.

One process, loopback only: the node's Stratum stack behind its guard listens on
127.0.0.1; honest miners connect from 127.0.1.x (``--per-ip`` each) and submit shares;
the flooder on 127.0.0.2 opens connections as fast as it can, sends garbage on each and
submits invalid shares on one. Afterwards it reports: honest share latency (p50/p99),
honest miners still connected, whether the flooder is banned and refused at accept,
the guard's refusals, and the process's peak RSS (server and clients together: an upper
bound of the server's).

The scenario (:func:`run_flood`) is also what ``tests/guard/test_flood.py`` runs, smaller.
"""

from __future__ import annotations

import argparse
import json
import os
import random
import resource
import sys
import time
from collections.abc import Callable
from dataclasses import asdict, dataclass, field
from fractions import Fraction
from typing import Any, cast

from twisted.internet.defer import Deferred, DeferredList
from twisted.internet.endpoints import TCP4ClientEndpoint
from twisted.internet.protocol import Factory, ProcessProtocol, Protocol
from twisted.internet.task import LoopingCall
from twisted.python.failure import Failure

from otedama.bench.lean_fleet import CLIENT_CPUS, parse_cpus, pin_clients
from otedama.bench.stratum import percentile
from otedama.bench.stratum_server import (
    BENCH_ADDRESS,
    CountingSink,
    raise_fd_limit,
    synthetic_template,
)
from otedama.chain.address import address_to_script
from otedama.chain.params import get_network
from otedama.chain.serialize import TxOut
from otedama.ops.bans import DdosSettings
from otedama.ops.firewall import Firewall
from otedama.ops.gcpolicy import GcPolicy
from otedama.ops.guard import Guard, GuardedFactory
from otedama.stratum.codec import encode_request
from otedama.stratum.jobs import JobManager
from otedama.stratum.protocol import StratumFactory
from otedama.stratum.settings import StratumSettings

__all__ = ["FloodReport", "LineClient", "register", "run_flood"]

FLOODER = "127.0.0.2"


class LineClient(Protocol):
    """A JSON-lines Stratum client: requests by id, the latest job, closing noticed."""

    def __init__(self) -> None:
        self.buffer = b""
        self.replies: dict[int, Deferred[dict[str, Any]]] = {}
        self.job: list[Any] | None = None
        self.job_ready: Deferred[None] = Deferred()
        self.closed: Deferred[None] = Deferred()
        self.received = 0
        self.next_id = 1

    def dataReceived(self, data: bytes) -> None:
        self.received += len(data)
        self.buffer += data
        *lines, self.buffer = self.buffer.split(b"\n")
        for line in lines:
            if not line.strip():
                continue
            message = json.loads(line)
            if message.get("method") == "mining.notify":
                self.job = message["params"]
                if not self.job_ready.called:
                    self.job_ready.callback(None)
            waiter = self.replies.pop(message.get("id") or -1, None)
            if waiter is not None:
                waiter.callback(message)

    def connectionLost(self, reason: Failure | None = None) -> None:
        for waiter in self.replies.values():
            waiter.errback(ConnectionError("closed"))
        self.replies.clear()
        self.closed.callback(None)

    def request(self, method: str, params: list[Any]) -> Deferred[dict[str, Any]]:
        msg_id, self.next_id = self.next_id, self.next_id + 1
        reply: Deferred[dict[str, Any]] = Deferred()
        self.replies[msg_id] = reply
        transport: Any = self.transport
        transport.write(encode_request(msg_id, method, params))
        return reply

    def submit(
        self, worker: str, nonce: int, job_id: str | None = None
    ) -> Deferred[dict[str, Any]]:
        job = self.job
        assert job is not None
        return self.request(
            "mining.submit", [worker, job_id or job[0], "00" * 8, job[7], f"{nonce:08x}"]
        )


async def connect(reactor: Any, port: int, source: str) -> LineClient:
    endpoint = TCP4ClientEndpoint(reactor, "127.0.0.1", port, bindAddress=(source, 0))
    factory: Any = Factory.forProtocol(LineClient)
    client: LineClient = await endpoint.connect(factory)
    return client


async def honest_miner(reactor: Any, port: int, source: str, worker: str) -> LineClient:
    """Connected, subscribed, authorized and holding a job."""
    client = await connect(reactor, port, source)
    client.request("mining.subscribe", ["flood-bench/1"]).addErrback(lambda failure: None)
    reply = await client.request("mining.authorize", [worker, "x"])
    if reply.get("result") is not True:
        raise RuntimeError(f"honest miner {worker} from {source} not authorized: {reply}")
    await client.job_ready
    return client


@dataclass
class FloodReport:
    honest: int
    honest_connected: int = 0
    #: Honest miners that could not connect, authorize and get a job in time (and why).
    honest_failed: int = 0
    honest_failures: list[str] = field(default_factory=list)
    #: Honest shares with no reply within ``REPLY_TIMEOUT`` (not in the latencies).
    unanswered: int = 0
    shares: int = 0
    accepted: int = 0
    p50_ms: float = 0.0
    p99_ms: float = 0.0
    max_ms: float = 0.0
    flood_connections: int = 0
    flood_garbage_lines: int = 0
    flood_invalid_shares: int = 0
    flooder_banned: bool = False
    flooder_refused_at_accept: bool = False
    refusals: dict[str, int] = field(default_factory=dict)
    sessions_after: int = 0
    peak_rss_mib: float = 0.0
    seconds: float = 0.0


def stratum_stack(reactor: Any, clock: Any = None) -> tuple[StratumFactory, Guard, GuardedFactory]:
    """The node's Stratum stack behind a guard at the shipped defaults (every hash is a
    share: difficulty 2**-32)."""
    clock = clock or reactor
    network = get_network("regtest")
    script = address_to_script(BENCH_ADDRESS, network)
    jobs = JobManager(
        lambda template: [TxOut(template.coinbase_value, script)],
        clock=clock,
        refresh_interval=3600.0,
    )
    settings = StratumSettings(
        network=network,
        start_difficulty=Fraction(1, 2**32),
        min_difficulty=Fraction(1, 2**32),
        vardiff=False,
    )
    stratum = StratumFactory(jobs, CountingSink(), settings, clock)
    jobs.on_template(synthetic_template(0, int(time.time())))
    guard = Guard(Firewall(), DdosSettings(), clock)
    stratum.server.work_observer = guard.note_work
    return stratum, guard, GuardedFactory(guard, stratum, "stratum")


async def probe_refused(reactor: Any, port: int, source: str) -> bool:
    """True when a new connection from ``source`` is closed at accept without a byte."""
    try:
        client = await connect(reactor, port, source)
    except Exception:
        return True
    transport: Any = client.transport
    transport.write(encode_request(1, "mining.subscribe", []))
    await client.closed
    return client.received == 0


async def flood(reactor: Any, port: int, connections: int, report: FloodReport) -> None:
    """Connections as fast as they open, garbage on each, invalid shares on one."""
    worker = BENCH_ADDRESS + ".flood"
    try:
        cheat = await honest_miner(reactor, port, FLOODER, worker)
    except Exception:
        cheat = None
    nonces = iter(range(200))
    if cheat is not None:
        # A first run of invalid shares (under the ban threshold), then everything at once.
        for _ in range(30):
            await cheat.submit(worker, next(nonces), job_id="ffffffff")
            report.flood_invalid_shares += 1
    opened: list[Deferred[Any]] = []
    for _ in range(connections):
        d = Deferred.fromCoroutine(connect(reactor, port, FLOODER))

        def garbage(client: LineClient) -> Deferred[None]:
            report.flood_connections += 1
            transport: Any = client.transport
            transport.write(b"\x00\xffGET / HTTP/1.1 garbage\n" * 20)
            report.flood_garbage_lines += 20
            return client.closed

        opened.append(d.addCallback(garbage))
    if cheat is not None:
        for nonce in nonces:
            try:
                await cheat.submit(worker, nonce, job_id="ffffffff")
            except ConnectionError:
                break
            report.flood_invalid_shares += 1
    await DeferredList(opened, consumeErrors=True)


#: Seconds an honest miner has to connect, be authorized and hold a job.
CONNECT_TIMEOUT = 60.0
#: Seconds an honest share waits for its reply before it counts as unanswered.
REPLY_TIMEOUT = 30.0


class HonestFleet:
    """Honest miners on 127.0.1.x (``per_ip`` per address), mining in rounds: each miner
    submits one share at a random moment within ``spread`` seconds."""

    def __init__(self, reactor: Any, port: int, honest: int, per_ip: int, spread: float) -> None:
        self.reactor = reactor
        self.port = port
        self.honest = honest
        self.per_ip = per_ip
        self.spread = spread
        self.miners: list[LineClient] = []
        self.failed = 0
        self.failures: list[str] = []
        self.unanswered = 0
        self.shares = 0
        self.accepted = 0
        self._nonces = iter(range(1, 1 << 31))

    async def start(self) -> int:
        """Connect the fleet, 200 at a time; each miner gets ``CONNECT_TIMEOUT`` seconds to
        be connected, authorized and holding a job. One that does not is counted in
        ``failed`` (with the first reasons in ``failures``) and the fleet goes on without
        it: the report's "honest connected" then says so, instead of the bench hanging."""
        batch = 200
        for first in range(0, self.honest, batch):
            made = [
                Deferred.fromCoroutine(
                    honest_miner(
                        self.reactor,
                        self.port,
                        f"127.0.{1 + i // self.per_ip // 250}.{1 + i // self.per_ip % 250}",
                        f"{BENCH_ADDRESS}.h{i}",
                    )
                ).addTimeout(CONNECT_TIMEOUT, self.reactor)
                for i in range(first, min(self.honest, first + batch))
            ]
            for ok, value in await DeferredList(made, consumeErrors=True):
                if ok:
                    self.miners.append(value)
                else:
                    self.failed += 1
                    if len(self.failures) < 5:
                        self.failures.append(cast(Failure, value).getErrorMessage())
        return len(self.miners)

    async def round(self) -> list[float]:
        """One share from every miner, each at a random moment within ``spread``; their
        latencies in seconds (a share with no reply within ``REPLY_TIMEOUT`` of the round's
        last submit is counted in ``unanswered``).

        One ticker sends the shares that are due, and one timer bounds the wait: a timer
        per miner would cost this process O(miners) per ``callLater`` (Twisted's reactor
        recomputes its next timeout over every pending call), which at 10,000 miners made
        the load generator, not the server, the bottleneck the latencies measured.
        """
        latencies: list[float] = []
        count = len(self.miners)
        dues = sorted((random.uniform(0, self.spread), i) for i in range(count))
        waiting = [count]
        done: Deferred[None] = Deferred()

        def answered(reply: Any, sent: float) -> None:
            if done.called:
                return  # a late reply, after the round was closed
            latencies.append(time.monotonic() - sent)
            self.accepted += reply.get("result") is True
            waiting[0] -= 1
            if waiting[0] == 0 and not done.called:
                done.callback(None)

        def send(index: int) -> None:
            client = self.miners[index]
            self.shares += 1
            submitted = client.submit(f"{BENCH_ADDRESS}.h{index}", next(self._nonces))
            submitted.addCallback(answered, time.monotonic()).addErrback(lambda _: None)

        started = time.monotonic()
        position = 0

        def tick() -> None:
            nonlocal position
            elapsed = time.monotonic() - started
            while position < count and dues[position][0] <= elapsed:
                send(dues[position][1])
                position += 1
            if position >= count:
                ticker.stop()

        ticker = LoopingCall(tick)
        ticker.clock = self.reactor
        await ticker.start(0.002)
        if waiting[0]:

            def expire() -> None:
                if not done.called:
                    done.callback(None)

            timer = self.reactor.callLater(REPLY_TIMEOUT, expire)
            await done
            if timer.active():
                timer.cancel()
        # No reply in time (or the connection went): counted, never waited on again.
        self.unanswered += waiting[0]
        if not done.called:
            done.callback(None)
        return latencies

    async def connected(self) -> int:
        return sum(1 for client in self.miners if not client.closed.called)

    async def close(self) -> None:
        for client in self.miners:
            transport: Any = client.transport
            if transport is not None:
                transport.loseConnection()


class _Child(ProcessProtocol):
    """A bench child process: JSON lines on stdout, each awaited with ``next_line``."""

    def __init__(self) -> None:
        self.buffer = b""
        self.lines: list[Any] = []
        self.waiting: Deferred[Any] | None = None
        self.ended: Deferred[None] = Deferred()

    def childDataReceived(self, fd: int, data: bytes) -> None:
        if fd != 1:
            return
        self.buffer += data
        *lines, self.buffer = self.buffer.split(b"\n")
        self.lines.extend(json.loads(line) for line in lines if line.strip())
        self._deliver()

    def _deliver(self) -> None:
        if self.waiting is not None and self.lines:
            waiting, self.waiting = self.waiting, None
            waiting.callback(self.lines.pop(0))

    def next_line(self) -> Deferred[Any]:
        self.waiting = Deferred()
        waiting = self.waiting
        self._deliver()
        return waiting

    def processEnded(self, reason: Failure) -> None:
        if self.waiting is not None:
            waiting, self.waiting = self.waiting, None
            waiting.errback(RuntimeError(f"bench child ended: {reason.getErrorMessage()}"))
        self.ended.callback(None)


def _spawn(reactor: Any, *args: str) -> _Child:
    child = _Child()
    argv = [sys.executable, "-m", "otedama.bench.flood", *args]
    reactor.spawnProcess(child, sys.executable, argv, env=None, childFDs={0: "w", 1: "r", 2: 2})
    return child


class RemoteFleet:
    """The same fleet in its own process, so the clients' work does not share the server's
    reactor thread (and the bench process's memory is the server's)."""

    def __init__(self, reactor: Any, port: int, honest: int, per_ip: int, spread: float) -> None:
        self.reactor = reactor
        self.args = (str(port), str(honest), str(per_ip), str(spread))
        self.child: _Child | None = None
        self.shares = 0
        self.accepted = 0
        self.failed = 0
        self.failures: list[str] = []
        self.unanswered = 0

    async def _ask(self, command: str) -> Any:
        assert self.child is not None
        transport: Any = self.child.transport
        transport.write(command.encode() + b"\n")
        return await self.child.next_line()

    async def start(self) -> int:
        child = _Child()
        argv = [sys.executable, "-m", "otedama.bench.lean_fleet", *self.args, BENCH_ADDRESS]
        self.reactor.spawnProcess(
            child, sys.executable, argv, env=None, childFDs={0: "w", 1: "r", 2: 2}
        )
        self.child = child
        hello = await self.child.next_line()
        self.failed, self.failures = int(hello.get("failed", 0)), list(hello.get("failures", []))
        ready: int = hello["ready"]
        return ready

    async def round(self) -> list[float]:
        reply = await self._ask("round")
        self.shares, self.accepted = reply["shares"], reply["accepted"]
        self.unanswered = int(reply.get("unanswered", 0))
        latencies: list[float] = reply["latencies"]
        return latencies

    async def connected(self) -> int:
        count: int = (await self._ask("status"))["connected"]
        return count

    async def close(self) -> None:
        if self.child is not None:
            transport: Any = self.child.transport
            transport.closeStdin()
            await self.child.ended


async def run_flood(
    reactor: Any,
    honest: int = 200,
    per_ip: int = 50,
    flood_connections: int = 500,
    rounds: int = 3,
    spread: float = 1.0,
    progress: Callable[[str], object] = lambda text: None,
    remote_honest: bool = False,
) -> FloodReport:
    """The whole scenario on loopback; the report. The flooder always runs in its own
    process; the honest miners too when ``remote_honest``."""
    started = time.monotonic()
    stratum, guard, factory = stratum_stack(reactor)
    port = reactor.listenTCP(0, factory, backlog=4096, interface="127.0.0.1")
    number = port.getHost().port
    report = FloodReport(honest=honest)
    latencies: list[float] = []
    kind = RemoteFleet if remote_honest else HonestFleet
    fleet = kind(reactor, number, honest, per_ip, spread)
    try:
        connected = await fleet.start()
        report.honest_failed, report.honest_failures = fleet.failed, fleet.failures
        # The node freezes its surviving heap every app.gc.freeze_interval (ops/gcpolicy):
        # do it now, so the run sees a node that has been up longer than that.
        GcPolicy(reactor, 60.0, 0.0).freeze()
        progress(
            f"{connected} honest miners connected"
            + (f", {fleet.failed} could not: {fleet.failures}" if fleet.failed else "")
        )
        flooder = _spawn(reactor, "flood", str(number), str(flood_connections))
        # The flooder's interpreter start (imports, reactor) is not part of any flood: it
        # reports ready first and floods when told, as the rounds begin.
        await flooder.next_line()
        flooding = Deferred.fromCoroutine(flood_in_process(flooder, report))
        for index in range(rounds):
            got = await fleet.round()
            latencies.extend(got)
            progress(
                f"round {index + 1} of {rounds} during the flood: {len(got)} replies,"
                f" latency p50 {percentile(got, 0.5) * 1000:.1f} ms, p99"
                f" {percentile(got, 0.99) * 1000:.1f} ms, max {max(got, default=0) * 1000:.1f} ms"
            )
        progress("waiting for the flooder to finish")
        await flooding
        latencies.extend(await fleet.round())  # after the flood
        progress("flood over")
        now = guard.now()
        report.flooder_banned = guard.bans.banned(FLOODER, now) is not None
        report.flooder_refused_at_accept = await probe_refused(reactor, number, FLOODER)
        report.honest_connected = await fleet.connected()
        report.shares, report.accepted = fleet.shares, fleet.accepted
        report.unanswered = fleet.unanswered
        report.refusals = dict(guard.refused_total)
        report.sessions_after = len(stratum.server.sessions)
        report.p50_ms = percentile(latencies, 0.50) * 1000
        report.p99_ms = percentile(latencies, 0.99) * 1000
        report.max_ms = max(latencies, default=0.0) * 1000
    finally:
        await fleet.close()
        await port.stopListening()
    report.peak_rss_mib = resource.getrusage(resource.RUSAGE_SELF).ru_maxrss / 1024
    report.seconds = time.monotonic() - started
    return report


async def flood_in_process(child: _Child, report: FloodReport) -> None:
    """Start the flood of ``child``, a ready flooder process (its connects and writes
    must not share the server's reactor thread), and copy its counts into ``report``."""
    transport: Any = child.transport
    transport.write(b"go\n")
    counts = await child.next_line()
    report.flood_connections = counts["flood_connections"]
    report.flood_garbage_lines = counts["flood_garbage_lines"]
    report.flood_invalid_shares = counts["flood_invalid_shares"]
    await child.ended


def child_main(argv: list[str]) -> int:
    """``python -m otedama.bench.flood flood PORT CONNECTIONS``: flood, print the counts.
    (The honest fleet's process is :mod:`otedama.bench.lean_fleet`.)"""
    raise_fd_limit()
    pin_clients()
    from otedama.ops.reactor import install_asyncio_reactor

    install_asyncio_reactor()
    from twisted.internet.task import react

    def say(obj: Any) -> None:
        print(json.dumps(obj), flush=True)

    say({"ready": True})
    if sys.stdin.readline().strip() != "go":
        return 0

    async def flooding(rx: Any) -> None:
        report = FloodReport(honest=0)
        await flood(rx, int(argv[1]), int(argv[2]), report)
        say(asdict(report))

    try:
        react(lambda rx: Deferred.fromCoroutine(flooding(rx)), [])
    except SystemExit:
        pass
    return 0


# -- the command -----------------------------------------------------------------------


def register(subparsers: Any) -> None:
    """Add ``bench flood``."""
    parser = subparsers.add_parser(
        "flood", help="honest miners' latency while one address floods the node (loopback)"
    )
    parser.add_argument("--honest", type=int, default=1000, help="honest miners")
    parser.add_argument("--per-ip", type=int, default=50, help="honest miners per address")
    parser.add_argument("--flood", type=int, default=2000, help="flooder connections")
    parser.add_argument("--rounds", type=int, default=5, help="shares per miner during the flood")
    parser.add_argument(
        "--spread", type=float, default=2.0, help="seconds over which each round's shares spread"
    )
    parser.add_argument(
        "--in-process", action="store_true", help="run the honest miners in the bench process"
    )
    parser.add_argument(
        "--server-cpus",
        default=None,
        metavar="LIST",
        help="pin the server (this process) to these CPUs, e.g. 0 (default: not pinned)",
    )
    parser.add_argument(
        "--client-cpus",
        default=None,
        metavar="LIST",
        help="pin the honest fleet and the flooder to these CPUs, e.g. 1 (default: not"
        " pinned); with --server-cpus, the server's core is its own, as on a real host",
    )
    parser.add_argument("--json", action="store_true", help="print the report as JSON")
    parser.set_defaults(func=bench_flood)


def bench_flood(args: argparse.Namespace) -> int:
    try:
        server_cpus = parse_cpus(args.server_cpus) if args.server_cpus else None
        client_cpus = parse_cpus(args.client_cpus) if args.client_cpus else None
    except ValueError as error:
        print(f"otedama bench flood: {error}")
        return 2
    if server_cpus:
        os.sched_setaffinity(0, server_cpus)
    if client_cpus:
        os.environ[CLIENT_CPUS] = ",".join(str(cpu) for cpu in sorted(client_cpus))
    raise_fd_limit()
    from otedama.ops.reactor import install_asyncio_reactor

    install_asyncio_reactor()
    from twisted.internet.task import react

    result: list[FloodReport] = []

    async def main(rx: Any) -> None:
        result.append(
            await run_flood(
                rx,
                honest=args.honest,
                per_ip=args.per_ip,
                flood_connections=args.flood,
                rounds=args.rounds,
                spread=args.spread,
                remote_honest=not args.in_process,
                progress=lambda text: print(text, flush=True),
            )
        )

    try:
        react(lambda rx: Deferred.fromCoroutine(main(rx)), [])
    except SystemExit as exit_:
        if exit_.code not in (0, None):
            return int(exit_.code) if isinstance(exit_.code, int) else 1
    report = result[0]
    if args.json:
        print(json.dumps(asdict(report), indent=2))
        return 0
    print(
        f"honest miners: {report.honest_connected}/{report.honest} still connected; "
        f"{report.accepted}/{report.shares} shares accepted, {report.unanswered} unanswered "
        f"within {REPLY_TIMEOUT:g} s; {report.honest_failed} could not connect"
        f"{' (' + '; '.join(report.honest_failures) + ')' if report.honest_failures else ''}\n"
        f"honest share latency: p50 {report.p50_ms:.1f} ms, p99 {report.p99_ms:.1f} ms, "
        f"max {report.max_ms:.1f} ms\n"
        f"flooder {FLOODER}: {report.flood_connections} connections opened, "
        f"{report.flood_garbage_lines} garbage lines, {report.flood_invalid_shares} invalid "
        f"shares; banned: {report.flooder_banned}; refused at accept: "
        f"{report.flooder_refused_at_accept}\n"
        f"guard refusals: {report.refusals}\n"
        f"sessions after: {report.sessions_after}; peak RSS of the bench process "
        f"({'server and honest clients' if args.in_process else 'the server'}): "
        f"{report.peak_rss_mib:.0f} MiB; {report.seconds:.1f} s"
    )
    return 0 if report.honest_connected == report.honest and report.flooder_banned else 1


if __name__ == "__main__":
    sys.exit(child_main(sys.argv[1:]))

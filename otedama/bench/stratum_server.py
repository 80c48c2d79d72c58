"""The server side of ``otedama bench stratum``, run in its own process.

It listens with the node's own Stratum stack (``JobManager`` + ``StratumFactory``) on
127.0.0.1, fed with synthetic block templates, so that the load generator's cost does not
count against it and its memory can be read from ``/proc/<pid>/status``.

Control over stdin/stdout, one JSON object a line:

* at start it prints ``{"port": P}``;
* ``block`` makes a new template on a new previous block and answers
  ``{"block": n, "t0": ..., "t1": ..., "t2": ...}`` (``time.monotonic()`` just before
  handing the template to the job manager, just after every session was written to, and
  when every session's bytes had been sent to the kernel);
* ``stats`` answers ``{"accepted": n, "rejected": {...}, "sessions": n}``;
* ``flush`` (full path only) writes the ledger's buffered shares and answers when every
  batch is stored: ``{"stored": n, "spooled": n, "dropped": n, "pool_shares": n, ...}``;
* end of input stops the process (the full path flushes the ledger first).

With ``--full-path sqlite|postgresql --ledger-url URL`` the shares do not stop at a
counter: they go through the node's own share path, as ``otedama.tap`` wires it — the
pool core (``PoolCore``: per-worker statistics, the 30 s worker report), ``LedgerLink``
and a ``LedgerStore`` (batcher, worker threads, COPY or multi-row insert, the PPLNS
window totals) on the migrated database at ``URL``.
"""

from __future__ import annotations

import argparse
import hashlib
import json
import os
import sys
import time
from fractions import Fraction
from typing import Any

from twisted.internet.defer import Deferred, succeed
from twisted.internet.protocol import Protocol
from twisted.python.failure import Failure

from otedama.bench.lean_fleet import parse_cpus, raise_fd_limit
from otedama.chain.address import address_to_script
from otedama.chain.params import get_network
from otedama.chain.serialize import TxOut
from otedama.chain.target import bits_to_target
from otedama.chain.template import BlockTemplate
from otedama.stratum.share import Share

__all__ = [
    "BENCH_ADDRESS",
    "SHARE_DIFFICULTY_LOG2",
    "CountingSink",
    "main",
    "raise_fd_limit",
    "run_reactor",
    "synthetic_template",
]

#: A regtest address the bench miners authorize as (and the coinbase pays).
BENCH_ADDRESS = "bcrt1qsv2hexjrhpa8qwxr4la2nmmkmdh8hxkje996rc"
#: Difficulty-1 nBits: bench shares (difficulty 2**-32) are practically never blocks.
BENCH_BITS = 0x1D00FFFF
#: The Stratum bench's share difficulty: at 2**-33 the share target is capped at
#: 2**256 - 1, so every nonce is a share and a load generator need not hash (at 2**-32,
#: 1 hash in 65,536 is above the target and would be a reject).
SHARE_DIFFICULTY_LOG2 = -33


def synthetic_template(block: int, now: int) -> BlockTemplate:
    """A template on a made-up previous block ``block`` (no transactions)."""
    prev = hashlib.sha256(b"otedama bench block %d" % block).digest()
    return BlockTemplate(
        version=0x20000000,
        prev_hash=prev,
        height=1000 + block,
        bits=BENCH_BITS,
        target=bits_to_target(BENCH_BITS),
        curtime=now,
        mintime=now - 3600,
        coinbase_value=50 * 100_000_000,
        transactions=(),
        default_witness_commitment=None,
        longpollid=None,
        rules=("csv", "segwit"),
    )


class _BenchSubmitter:
    """``submitblock`` for the full path: every block is accepted (bench shares are
    practically never blocks)."""

    async def submit_block(self, block_bytes: bytes, /) -> Any:
        from otedama.node.chainview import SubmitOutcome, SubmitResult

        return SubmitResult(SubmitOutcome.ACCEPTED)


class CountingSink:
    """A share sink that only counts (the bench measures the Stratum server, not the pool)."""

    def __init__(self) -> None:
        self.accepted = 0
        self.blocks = 0

    def share_accepted(self, share: Share) -> None:
        self.accepted += 1

    def block_found(self, block: bytes, share: Share) -> Deferred[Any]:
        self.blocks += 1
        return succeed(None)


def _unsent(transport: Any) -> int:
    """Bytes a Twisted TCP transport still holds (its private buffers; bench use only)."""
    if getattr(transport, "disconnected", False):
        return 0
    buffered = len(getattr(transport, "dataBuffer", b"")) - getattr(transport, "offset", 0)
    return buffered + getattr(transport, "_tempDataLen", 0)


class _Control(Protocol):
    """Reads control lines from stdin and answers on stdout."""

    def __init__(self, handle: Any) -> None:
        self.handle = handle
        self.buffer = b""

    def dataReceived(self, data: bytes) -> None:
        self.buffer += data
        *lines, self.buffer = self.buffer.split(b"\n")
        for line in lines:
            if line.strip():
                self.handle(line.strip().decode())

    def connectionLost(self, reason: object = None) -> None:
        self.handle("quit")


def bench_stratum(
    rx: Any, difficulty_log2: int = -32, *, outputs: Any = None, sink: Any = None
) -> tuple[Any, Any, Any]:
    """The node's real Stratum stack for benches: (factory, job manager, share sink), every
    session at difficulty ``2**difficulty_log2`` with no per-connection bounds; the sink is
    a :class:`CountingSink` and the coinbase pays the bench address unless given."""
    from otedama.stratum.jobs import JobManager
    from otedama.stratum.protocol import StratumFactory
    from otedama.stratum.settings import StratumSettings

    network = get_network("regtest")
    difficulty = Fraction(2) ** difficulty_log2
    settings = StratumSettings(
        network=network,
        start_difficulty=difficulty,
        min_difficulty=difficulty,
        vardiff=False,
        max_connections=1_000_000,
        max_connections_per_ip=1_000_000,
        subscribe_timeout=3600.0,
        idle_timeout=3600.0,
        abuse_threshold=1_000_000,
        # The bench measures the server flat out: no per-connection share-rate bound.
        max_share_rate=1e9,
        share_burst=1_000_000_000,
    )
    if outputs is None:
        script = address_to_script(BENCH_ADDRESS, network)
        outputs = lambda template: [TxOut(template.coinbase_value, script)]  # noqa: E731
    sink = CountingSink() if sink is None else sink
    jobs = JobManager(outputs, clock=rx, refresh_interval=3600.0)
    return StratumFactory(jobs, sink, settings, rx), jobs, sink


def main(argv: list[str] | None = None) -> int:
    """Run the bench server until stdin closes."""
    parser = argparse.ArgumentParser(prog="otedama-bench-stratum-server")
    parser.add_argument("--reactor", choices=("asyncio", "epoll"), default="asyncio")
    parser.add_argument("--difficulty-log2", type=int, default=SHARE_DIFFICULTY_LOG2)
    parser.add_argument("--full-path", choices=("sqlite", "postgresql"), default=None)
    parser.add_argument("--ledger-url", default=None)
    parser.add_argument("--ledger-pool-size", type=int, default=4)
    parser.add_argument("--spool-dir", default=None)
    parser.add_argument("--profile", default=None, help="write cProfile stats of the run here")
    parser.add_argument("--cpus", default=None, help="pin this process to these CPUs, e.g. 0")
    args = parser.parse_args(argv)
    if args.full_path and not (args.ledger_url and args.spool_dir):
        parser.error("--full-path needs --ledger-url and --spool-dir")
    if args.cpus:
        # Before any thread starts (the ledger's workers inherit it).
        os.sched_setaffinity(0, parse_cpus(args.cpus))
    raise_fd_limit()
    if args.reactor == "asyncio":
        from otedama.ops.reactor import install_asyncio_reactor

        install_asyncio_reactor()
    else:
        from twisted.internet import epollreactor

        epollreactor.install()
    from twisted.internet import reactor, stdio
    from twisted.internet.endpoints import TCP4ServerEndpoint

    rx: Any = reactor
    network = get_network("regtest")
    counting = CountingSink()
    sink: Any = counting
    outputs: Any = None
    store: Any = None
    core: Any = None
    reporter: Any = None
    if args.full_path:
        from otedama.ledger.blocks import RewardPolicy
        from otedama.ledger.rewards import RewardScheme
        from otedama.ledger.store import LedgerStore
        from otedama.pool.core import LedgerLink, PoolCore, ShareReporter

        policy = RewardPolicy(RewardScheme.PPLNS, 100, BENCH_ADDRESS, pplns_window=7200.0)
        store = LedgerStore(
            rx,
            args.ledger_url,
            args.ledger_pool_size,
            spool_dir=args.spool_dir,
            pplns_window=policy.pplns_window,
        )
        core = PoolCore(
            network,
            BENCH_ADDRESS,
            policy.scheme,
            policy.fee_basis_points,
            _BenchSubmitter(),
            LedgerLink(store, policy),
            clock=rx,
        )
        reporter = ShareReporter(core, rx)
        sink = core
        outputs = core.coinbase_outputs
    factory, jobs, _ = bench_stratum(rx, args.difficulty_log2, outputs=outputs, sink=sink)
    out = sys.stdout
    blocks = [0]

    def say(obj: dict[str, Any]) -> None:
        out.write(json.dumps(obj) + "\n")
        out.flush()

    def wait_flushed(pending: list[Any], block: int, t0: float, t1: float) -> None:
        # Poll until every session's transport has handed its bytes to the kernel.
        pending = [t for t in pending if _unsent(t)]
        if pending:
            rx.callLater(0.002, wait_flushed, pending, block, t0, t1)
        else:
            say({"block": block, "t0": t0, "t1": t1, "t2": time.monotonic()})

    def handle(command: str) -> None:
        if command == "block":
            blocks[0] += 1
            template = synthetic_template(blocks[0], int(time.time()))
            t0 = time.monotonic()
            jobs.on_template(template)
            t1 = time.monotonic()
            # A session's close callback is its protocol's bound ``close``.
            protocols = [
                getattr(s.close_callback, "__self__", None) for s in factory.server.sessions
            ]
            transports = [getattr(p, "transport", None) for p in protocols]
            wait_flushed([t for t in transports if t is not None], blocks[0], t0, t1)
        elif command == "stats":
            server = factory.server
            say(
                {
                    "accepted": server.stats.accepted,
                    "rejected": dict(server.stats.rejected),
                    "sessions": len(server.sessions),
                    "sink_accepted": core.stats.shares if core is not None else counting.accepted,
                }
            )
        elif command == "flush":
            Deferred.fromCoroutine(flush()).addErrback(flush_failed)
        elif command == "quit":
            Deferred.fromCoroutine(stop()).addErrback(lambda f: f.printTraceback())

    def flush_failed(failure: Failure) -> None:
        failure.printTraceback()
        say({"error": failure.getErrorMessage()})

    async def flush() -> None:
        began = time.monotonic()
        buffered = store.batcher.buffered if store is not None else 0
        if store is not None:
            await store.flush_shares()
        health = store.health() if store is not None else None
        say(
            {
                "flush_seconds": time.monotonic() - began,
                "buffered": buffered,
                "stored": health.stored if health else 0,
                "spooled": health.spooled if health else 0,
                "dropped": health.dropped if health else 0,
                "pool_shares": core.stats.shares if core is not None else counting.accepted,
                "workers": len(core.stats.workers) if core is not None else 0,
            }
        )

    async def stop() -> None:
        if reporter is not None and reporter.running:
            await reporter.stopService()
        if store is not None:
            await store.stop()
        if rx.running:
            rx.stop()

    async def start() -> None:
        if store is not None:
            store.start()
            await store.check_schema()
            reporter.startService()
        jobs.on_template(synthetic_template(0, int(time.time())))
        port = await TCP4ServerEndpoint(rx, 0, backlog=4096, interface="127.0.0.1").listen(factory)
        stdio.StandardIO(_Control(handle), reactor=rx)
        say({"port": port.getHost().port})

    def boot() -> None:
        Deferred.fromCoroutine(start()).addErrback(lambda f: (f.printTraceback(), rx.stop()))

    rx.callWhenRunning(boot)
    run_reactor(rx, args.profile)
    return 0


def run_reactor(rx: Any, profile: str | None) -> None:
    """Run the bench server's reactor; with ``profile``, under cProfile timed by the
    reactor thread's own CPU time (not wall clock: on a loaded machine a wall-clock
    profile charges the time the thread was descheduled to whatever ran), its stats
    written there."""
    if not profile:
        rx.run()
        return
    import cProfile

    profiler = cProfile.Profile(time.thread_time)
    profiler.runcall(rx.run)
    profiler.dump_stats(profile)


if __name__ == "__main__":
    sys.exit(main())

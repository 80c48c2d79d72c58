"""Prometheus metrics: the node's counters, read at scrape time.

Nothing here sits on the share path except :class:`TimedShareSink`, which adds one
clock read, one bisect and two additions per accepted share (the submit-latency
histogram and the accepted-difficulty counter). Everything else is read when Prometheus
scrapes, by one custom collector, from the counters the parts already keep: Stratum's
``server.stats`` and sessions, the pool core's ``stats``, the ledger store's ``health()``,
and a small ledger read model (blocks by status, payout batches) refreshed by a timer so
that a scrape never queries the database.

The registry is the node's own :class:`prometheus_client.CollectorRegistry`, never the
global one, so two nodes in one process (tests) do not share series.

The API records each request with :meth:`NodeMetrics.observe_api`.
"""

from __future__ import annotations

from bisect import bisect_left
from collections import Counter, deque
from collections.abc import Callable, Iterable, Iterator, Sequence
from dataclasses import dataclass, field
from threading import Lock
from typing import Any

from prometheus_client import CollectorRegistry
from prometheus_client.core import (
    CounterMetricFamily,
    GaugeMetricFamily,
    HistogramMetricFamily,
    Metric,
)
from prometheus_client.registry import Collector
from sqlalchemy import Connection, func, select
from twisted.application.internet import TimerService
from twisted.internet.defer import Deferred
from twisted.logger import Logger

from otedama import __version__

__all__ = [
    "HashrateMeter",
    "LatencyHistogram",
    "LedgerView",
    "LedgerViewPoller",
    "NodeMetrics",
    "TimedShareSink",
    "read_ledger_view",
]

#: Share submit latency buckets (seconds): validation is tens of microseconds.
SUBMIT_BUCKETS = (0.0001, 0.00025, 0.0005, 0.001, 0.0025, 0.005, 0.01, 0.025, 0.05, 0.1, 0.5)
#: Ledger batch write and RPC call buckets (seconds).
IO_BUCKETS = (0.001, 0.005, 0.01, 0.025, 0.05, 0.1, 0.25, 0.5, 1.0, 2.5, 5.0, 10.0, 30.0)
#: API request buckets (seconds).
API_BUCKETS = (0.001, 0.005, 0.01, 0.025, 0.05, 0.1, 0.25, 0.5, 1.0, 2.5)
#: The pool hashrate gauge averages accepted difficulty over this many seconds.
HASHRATE_WINDOW = 600.0
#: How often the hashrate meter samples and the ledger view is refreshed (seconds).
SAMPLE_INTERVAL = 15.0
LEDGER_VIEW_INTERVAL = 30.0
#: API routes kept apart in the metrics; past it, new routes count as "other".
MAX_API_ROUTES = 200


class LatencyHistogram:
    """A histogram cheap enough for the reactor thread: ``observe`` is a bisect and adds.

    Counts are kept per bucket (not cumulative) and made cumulative at scrape time.
    Writers that run on several threads pass ``locked=True``.
    """

    __slots__ = ("_lock", "bounds", "counts", "total")

    def __init__(self, bounds: Sequence[float], *, locked: bool = False) -> None:
        if list(bounds) != sorted(set(bounds)) or not bounds:
            raise ValueError(f"histogram bounds must be increasing, got {bounds!r}")
        self.bounds = tuple(float(b) for b in bounds)
        self.counts = [0] * (len(self.bounds) + 1)
        self.total = 0.0
        self._lock: Lock | None = Lock() if locked else None

    def observe(self, seconds: float) -> None:
        """Count one observation (``le`` semantics: a value equal to a bound is in it)."""
        if self._lock is None:
            self.counts[bisect_left(self.bounds, seconds)] += 1
            self.total += seconds
            return
        with self._lock:
            self.counts[bisect_left(self.bounds, seconds)] += 1
            self.total += seconds

    def buckets(self) -> tuple[list[tuple[str, float]], float]:
        """Cumulative ``(le, count)`` pairs ending with ``+Inf``, and the sum."""
        counts, total = list(self.counts), self.total
        running = 0
        pairs: list[tuple[str, float]] = []
        for bound, count in zip((*self.bounds, float("inf")), counts, strict=True):
            running += count
            pairs.append(("+Inf" if bound == float("inf") else repr(bound), float(running)))
        return pairs, total


class HashrateMeter:
    """Hashes per second from a cumulative difficulty counter, over a sliding window.

    ``sample(now, difficulty_total)`` is called on a timer; ``rate()`` is the difficulty
    added between the oldest sample in the window and the newest, times 2**32, per second.
    """

    def __init__(self, window: float = HASHRATE_WINDOW) -> None:
        self.window = window
        self._samples: deque[tuple[float, float]] = deque()

    def sample(self, now: float, difficulty_total: float) -> None:
        samples = self._samples
        samples.append((now, difficulty_total))
        while len(samples) > 2 and samples[1][0] <= now - self.window:
            samples.popleft()

    def rate(self) -> float:
        samples = list(self._samples)
        if len(samples) < 2:
            return 0.0
        (start, first), (end, last) = samples[0], samples[-1]
        if end <= start:
            return 0.0
        return max(0.0, last - first) * 2**32 / (end - start)


class TimedShareSink:
    """Stratum's share sink with the submit-latency histogram and difficulty counter.

    Wraps the pool core: a share's latency is from the arrival of its ``mining.submit``
    (``share.time``) to its acceptance. Rejected shares do not reach the sink; Stratum
    counts them by reason in ``server.stats.rejected``.
    """

    __slots__ = ("_now", "blocks_found", "difficulty_total", "latency", "sink")

    def __init__(self, sink: Any, clock: Any) -> None:
        self.sink = sink
        self._now: Callable[[], float] = clock.seconds
        self.latency = LatencyHistogram(SUBMIT_BUCKETS)
        self.difficulty_total = 0.0
        self.blocks_found = 0

    def share_accepted(self, share: Any) -> None:
        self.latency.observe(max(0.0, self._now() - share.time))
        self.difficulty_total += float(share.difficulty)
        self.sink.share_accepted(share)

    def block_found(self, block: bytes, share: Any) -> Any:
        self.blocks_found += 1
        return self.sink.block_found(block, share)


@dataclass(frozen=True)
class LedgerView:
    """What the ledger says, for the metrics: blocks by status and payout batches."""

    blocks: dict[str, int] = field(default_factory=dict)
    #: state -> (batches, satoshis)
    payouts: dict[str, tuple[int, int]] = field(default_factory=dict)


def read_ledger_view(connection: Connection) -> LedgerView:
    """Blocks by status and payout batches by state (two small grouped queries)."""
    from otedama.ledger.stats import blocks_by_status
    from otedama.ledger.tables import payout_batches

    payouts = {
        str(state): (int(count), int(total or 0))
        for state, count, total in connection.execute(
            select(payout_batches.c.state, func.count(), func.sum(payout_batches.c.total)).group_by(
                payout_batches.c.state
            )
        )
    }
    return LedgerView(blocks_by_status(connection), payouts)


class LedgerViewPoller(TimerService):
    """Refreshes the metrics' ledger view and samples the hashrate meters on a timer.

    A failing refresh (database away) is logged and the last view is kept.
    """

    log = Logger()

    def __init__(self, metrics: NodeMetrics, store: Any, clock: Any, interval: float) -> None:
        super().__init__(interval, self.tick)
        self.clock = clock
        self._now: Callable[[], float] = clock.seconds
        self.metrics = metrics
        self.store = store
        self.failures = 0
        self.last: Deferred[None] | None = None

    def tick(self) -> Deferred[None]:
        self.metrics.sample_hashrate(self._now())
        self.last = Deferred.fromCoroutine(self._refresh())
        return self.last

    async def _refresh(self) -> None:
        if self.store is None:
            return
        try:
            self.metrics.ledger_view = await self.store.run(read_ledger_view)
        except Exception:
            self.failures += 1
            self.log.failure(
                "metrics: reading the ledger view failed ({count} so far)", count=self.failures
            )


@dataclass
class _StratumPort:
    port: str
    algorithm: str
    server: Any
    sink: TimedShareSink
    meter: HashrateMeter
    jobs: int = 0


@dataclass
class _Daemon:
    calls: int = 0
    errors: Counter[str] = field(default_factory=Counter)
    latency: LatencyHistogram = field(default_factory=lambda: LatencyHistogram(IO_BUCKETS))


class NodeMetrics:
    """The node's metrics: what to read at scrape time, and the few things counted here."""

    log = Logger()

    def __init__(self, clock: Any, network: str = "") -> None:
        self.clock = clock
        self.network = network
        self.registry = CollectorRegistry(auto_describe=False)
        self.ports: list[_StratumPort] = []
        self.core: Any = None
        self.store: Any = None
        self.ledger_view = LedgerView()
        self.ledger_batches = LatencyHistogram(IO_BUCKETS, locked=True)
        self.daemons: dict[str, _Daemon] = {}
        self.api_requests: Counter[tuple[str, str]] = Counter()
        self.api_latency: dict[str, LatencyHistogram] = {}
        self.collect_failures = 0
        self.last_block: dict[str, Any] | None = None
        self.registry.register(_NodeCollector(self))

    # -- what the node hands over ------------------------------------------------------

    def watch_stratum(self, port: str, algorithm: str, sink: Any) -> TimedShareSink:
        """A timed sink for the Stratum listener on ``port``; call :meth:`watch_server`
        with its server once the factory exists."""
        timed = TimedShareSink(sink, self.clock)
        self.ports.append(_StratumPort(str(port), algorithm, None, timed, HashrateMeter()))
        return timed

    def watch_server(self, sink: TimedShareSink, server: Any) -> None:
        """The Stratum server fed by ``sink``: its counters, sessions and new jobs."""
        entry = next(p for p in self.ports if p.sink is sink)
        entry.server = server

        def job_sent(job: Any) -> None:
            entry.jobs += 1

        server.jobs.add_listener(job_sent)

    def watch_core(self, core: Any) -> None:
        """The pool core: its block and worker counters, and the last block the chain took."""
        self.core = core
        core.on_block(self._block_taken)

    def _block_taken(self, share: Any, result: Any) -> None:
        self.last_block = {
            "height": share.height,
            "hash": share.block_hash[::-1].hex(),
            "worker": share.worker,
            "time": share.time,
            "outcome": result.outcome.value,
        }

    def stratum_check(self, health: Any = None) -> Any:
        """The ``stratum`` health check: per listening port, what ``otedama mining status``
        shows (algorithm, miners, workers, hashrate, difficulty range, template, last block)."""
        from otedama.ops.health import OK, Check

        now = self.clock.seconds()
        template: dict[str, Any] = {}
        if health is not None and health.last_template_at is not None:
            template = {
                "height": health.last_height,
                "age": round(now - health.last_template_at, 1),
            }
        ports: dict[str, Any] = {}
        miners = 0
        for entry in self.ports:
            if entry.server is None:
                continue
            sessions = list(entry.server.sessions)
            difficulties = [float(s.difficulty) for s in sessions if s.workers]
            miners += len(sessions)
            ports[entry.port] = {
                "algorithm": entry.algorithm,
                "miners": len(sessions),
                "workers": sum(len(s.workers) for s in sessions),
                "hashrate": entry.meter.rate(),
                "accepted": entry.server.stats.accepted,
                "rejected": sum(dict(entry.server.stats.rejected).values()),
                "difficulty": [min(difficulties), max(difficulties)] if difficulties else None,
                "template": template,
                "last_block": self.last_block,
            }
        return Check(OK, {"miners": miners, "ports": ports})

    def watch_ledger(self, store: Any) -> None:
        """The ledger store: its ingest counters, and the time of each share batch write."""
        self.store = store
        store.writer.observers.append(self.ledger_batches.observe)

    def watch_rpc(self, transport: Any) -> None:
        """Time every exchange with each daemon of an RPC transport, and count its errors."""
        transport.observers.append(self.observe_rpc)

    def observe_rpc(self, url: str, seconds: float, error: BaseException | None) -> None:
        """One exchange with the daemon at ``url`` (``error``: why it failed, or None)."""
        daemon = self.daemons.get(url)
        if daemon is None:
            daemon = self.daemons[url] = _Daemon()
        daemon.calls += 1
        if error is not None:
            daemon.errors[type(error).__name__] += 1
        daemon.latency.observe(seconds)

    def observe_api(self, route: str, status: int, seconds: float) -> None:
        """Count one API request: ``route`` is the route's pattern (``/api/v1/miners/{address}``),
        never the raw path, so the label set stays bounded."""
        if route not in self.api_latency:
            if len(self.api_latency) >= MAX_API_ROUTES:
                route = "other"
            self.api_latency.setdefault(route, LatencyHistogram(API_BUCKETS))
        self.api_requests[(route, str(status))] += 1
        self.api_latency[route].observe(max(0.0, seconds))

    def sample_hashrate(self, now: float) -> None:
        for entry in self.ports:
            entry.meter.sample(now, entry.sink.difficulty_total)

    # -- serving -----------------------------------------------------------------------

    def exposition(self) -> bytes:
        """The text exposition (what ``/metrics`` serves)."""
        from prometheus_client import generate_latest

        return generate_latest(self.registry)

    def resource(self) -> Any:
        """The twisted.web resource serving the registry (imports prometheus_client.twisted,
        so call it only once the reactor is installed)."""
        from prometheus_client.twisted import MetricsResource

        return MetricsResource(registry=self.registry)

    def start_services(self, parent: Any, interval: float = SAMPLE_INTERVAL) -> LedgerViewPoller:
        """Add the timer that samples hashrate and refreshes the ledger view."""
        poller = LedgerViewPoller(self, self.store, self.clock, interval)
        poller.setName("metrics-poller")
        poller.setServiceParent(parent)
        return poller


class _NodeCollector(Collector):
    """Reads every counter when the registry is collected (on a scrape thread).

    Each group is read on its own: a failing reader costs its own series, not the scrape.
    Shared containers are copied first (a C-level copy holds the GIL throughout).
    """

    def __init__(self, metrics: NodeMetrics) -> None:
        self.metrics = metrics

    def collect(self) -> Iterator[Metric]:
        m = self.metrics
        info = GaugeMetricFamily(
            "otedama_info", "The node's version and network.", labels=["version", "network"]
        )
        info.add_metric([__version__, m.network], 1.0)
        yield info
        for reader in (self._stratum, self._core, self._ledger, self._rpc, self._api):
            try:
                yield from reader()
            except Exception:
                m.collect_failures += 1
                m.log.failure("metrics: reading {reader} failed", reader=reader.__name__)

    def _stratum(self) -> Iterable[Metric]:
        labels = ["port", "algorithm"]
        accepted = CounterMetricFamily(
            "otedama_stratum_shares_accepted", "Shares accepted.", labels=labels
        )
        rejected = CounterMetricFamily(
            "otedama_stratum_shares_rejected",
            "Shares rejected, by reason.",
            labels=[*labels, "reason"],
        )
        difficulty = CounterMetricFamily(
            "otedama_stratum_share_difficulty",
            "Sum of the difficulty of accepted shares (rate * 2^32 = hashes per second).",
            labels=labels,
        )
        hashrate = GaugeMetricFamily(
            "otedama_stratum_hashrate",
            f"Hashes per second from accepted shares over the last {HASHRATE_WINDOW:g} s.",
            labels=labels,
        )
        miners = GaugeMetricFamily(
            "otedama_stratum_miners", "Connected Stratum sessions.", labels=labels
        )
        workers = GaugeMetricFamily(
            "otedama_stratum_workers", "Workers authorized on connected sessions.", labels=labels
        )
        jobs = CounterMetricFamily(
            "otedama_stratum_jobs", "New jobs broadcast to the miners.", labels=labels
        )
        candidates = CounterMetricFamily(
            "otedama_stratum_blocks_found",
            "Shares that met the network target (block candidates).",
            labels=labels,
        )
        events = CounterMetricFamily(
            "otedama_stratum_connection_events",
            "Connections refused, timed out, aborted or dropped for output overflow; "
            "submits refused for rate; bad lines.",
            labels=[*labels, "event"],
        )
        latency = HistogramMetricFamily(
            "otedama_stratum_share_submit_seconds",
            "From a mining.submit's arrival to its acceptance.",
            labels=labels,
        )
        for entry in self.metrics.ports:
            values = [entry.port, entry.algorithm]
            buckets, total = entry.sink.latency.buckets()
            latency.add_metric(values, buckets, total)
            difficulty.add_metric(values, entry.sink.difficulty_total)
            hashrate.add_metric(values, entry.meter.rate())
            jobs.add_metric(values, entry.jobs)
            server = entry.server
            if server is None:
                continue
            stats = server.stats
            accepted.add_metric(values, stats.accepted)
            for reason, count in dict(stats.rejected).items():
                rejected.add_metric([*values, reason], count)
            sessions = list(server.sessions)
            miners.add_metric(values, len(sessions))
            workers.add_metric(values, sum(len(s.workers) for s in sessions))
            candidates.add_metric(values, stats.blocks)
            for event, count in (
                ("refused", stats.refused_connections),
                ("timeout", stats.timeouts),
                ("aborted", stats.aborted_connections),
                ("output_overflow", stats.output_overflows),
                ("rate_limited", stats.rate_limited),
                ("bad_line", stats.bad_lines),
            ):
                events.add_metric([*values, event], count)
        return [
            accepted, rejected, difficulty, hashrate, miners, workers, jobs, candidates,
            events, latency,
        ]  # fmt: skip

    def _core(self) -> Iterable[Metric]:
        core = self.metrics.core
        blocks = CounterMetricFamily(
            "otedama_pool_blocks_submitted",
            "Blocks submitted to the chain, by its answer (unanswered: no reply).",
            labels=["result"],
        )
        workers = GaugeMetricFamily(
            "otedama_pool_workers", "Workers with a share in the last 24 hours."
        )
        if core is not None:
            stats = core.stats
            blocks.add_metric(["accepted"], stats.blocks_accepted)
            blocks.add_metric(["rejected"], stats.blocks_rejected)
            blocks.add_metric(["unanswered"], stats.blocks_unanswered)
            workers.add_metric([], len(stats.workers))
        return [blocks, workers]

    def _ledger(self) -> Iterable[Metric]:
        m = self.metrics
        shares = CounterMetricFamily(
            "otedama_ledger_shares",
            "Shares by what the ledger did with them (stored, spooled, dropped).",
            labels=["outcome"],
        )
        spool = GaugeMetricFamily(
            "otedama_ledger_spool_bytes", "Bytes of shares spooled while the database is away."
        )
        waiting = GaugeMetricFamily(
            "otedama_ledger_blocks_waiting", "Found blocks queued until the database is back."
        )
        batch = HistogramMetricFamily(
            "otedama_ledger_batch_seconds", "Time to write one batch of shares to the database."
        )
        blocks = GaugeMetricFamily(
            "otedama_blocks", "Blocks in the ledger, by status.", labels=["status"]
        )
        payouts = GaugeMetricFamily(
            "otedama_payout_batches", "Payout batches, by state.", labels=["state"]
        )
        paid = GaugeMetricFamily(
            "otedama_payout_sats", "Satoshis in payout batches, by state.", labels=["state"]
        )
        buckets, total = m.ledger_batches.buckets()
        batch.add_metric([], buckets, total)
        store = m.store
        if store is not None:
            ingest = store.health()
            shares.add_metric(["stored"], ingest.stored)
            shares.add_metric(["spooled"], ingest.spooled)
            shares.add_metric(["dropped"], ingest.dropped)
            spool.add_metric([], ingest.spool_bytes)
            waiting.add_metric([], store.block_queue.count)
        view = m.ledger_view
        for status, count in view.blocks.items():
            blocks.add_metric([status], count)
        for state, (count, sats) in view.payouts.items():
            payouts.add_metric([state], count)
            paid.add_metric([state], sats)
        return [shares, spool, waiting, batch, blocks, payouts, paid]

    def _rpc(self) -> Iterable[Metric]:
        calls = CounterMetricFamily(
            "otedama_rpc_requests", "Requests to each coin daemon.", labels=["daemon"]
        )
        errors = CounterMetricFamily(
            "otedama_rpc_errors", "Failed requests to each daemon, by kind.",
            labels=["daemon", "kind"],
        )  # fmt: skip
        latency = HistogramMetricFamily(
            "otedama_rpc_seconds", "Time of each request to a daemon.", labels=["daemon"]
        )
        for url, daemon in list(self.metrics.daemons.items()):
            calls.add_metric([url], daemon.calls)
            for kind, count in dict(daemon.errors).items():
                errors.add_metric([url, kind], count)
            buckets, total = daemon.latency.buckets()
            latency.add_metric([url], buckets, total)
        return [calls, errors, latency]

    def _api(self) -> Iterable[Metric]:
        m = self.metrics
        requests = CounterMetricFamily(
            "otedama_api_requests", "API requests, by route and HTTP status.",
            labels=["route", "status"],
        )  # fmt: skip
        latency = HistogramMetricFamily(
            "otedama_api_request_seconds", "Time to answer an API request.", labels=["route"]
        )
        for (route, status), count in dict(m.api_requests).items():
            requests.add_metric([route, status], count)
        for route, histogram in dict(m.api_latency).items():
            buckets, total = histogram.buckets()
            latency.add_metric([route], buckets, total)
        return [requests, latency]

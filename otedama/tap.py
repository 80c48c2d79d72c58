"""``twistd otedama``: command-line options and the one function that builds the node.

``twistd -n otedama --config FILE`` and ``otedama serve --config FILE`` both end here,
so they run the same service tree.
"""

from __future__ import annotations

import os
from collections.abc import Callable, Coroutine
from typing import TYPE_CHECKING, Any

from twisted.application.service import Service
from twisted.internet.defer import Deferred, maybeDeferred
from twisted.logger import Logger
from twisted.python import usage

from otedama.config import (
    DEFAULT_CONFIG_PATH,
    Config,
    ConfigError,
    load_config,
    refused_start,
    start_summary,
)
from otedama.ops.health import DEGRADED, OK, Check, HealthResource, NodeHealth
from otedama.ops.lifecycle import ListenerService, NodeService
from otedama.ops.logging import LogControl
from otedama.ops.reactor import WrongReactor, install_asyncio_reactor
from otedama.ops.sdnotify import keep_start_alive

if TYPE_CHECKING:
    from otedama.devnet.service import DevnetService
    from otedama.node.rpc import RpcEndpoint


def default_config_path(env: dict[str, str] | None = None) -> str:
    env = dict(os.environ) if env is None else env
    return env.get("OTEDAMA_CONFIG") or DEFAULT_CONFIG_PATH


class Options(usage.Options):
    """``twistd otedama`` options."""

    synopsis = "[--config FILE]"
    longdesc = "Run an Otedama mining pool node. See docs/configuration.md for the file."
    optParameters = [
        [
            "config",
            "c",
            None,
            f"Config file (default: $OTEDAMA_CONFIG, else {DEFAULT_CONFIG_PATH}).",
        ],
    ]

    config: Config

    def postOptions(self) -> None:
        try:
            install_asyncio_reactor()
        except WrongReactor as error:
            raise usage.UsageError(str(error)) from None
        path = self["config"] or default_config_path()
        try:
            self.config = load_config(path)
        except ConfigError as error:
            problems = "\n  ".join(error.problems)
            raise usage.UsageError(f"invalid configuration {path}:\n  {problems}") from None
        refused = refused_start(self.config)
        if refused:
            problems = "\n  ".join(refused)
            raise usage.UsageError(f"refusing to start with {path}:\n  {problems}")


def makeService(options: Options) -> Any:
    """Build the node's service tree from validated options (twistd's entry point)."""
    from twisted.internet import reactor

    return build_node(options.config, reactor)


# -- the service tree ------------------------------------------------------------------


class ChainService(Service):
    """The connection to the chain backend: ready once the daemon is on our network."""

    log = Logger()

    def __init__(self, client: Any, network: str, notifier: Any = None, clock: Any = None) -> None:
        self.setName("chain")
        self.client = client
        self.network = network
        self.notifier = notifier
        self.clock = clock

    def whenReady(self) -> Deferred[Any]:
        waiting = Deferred.fromCoroutine(self.client.wait_until_ready(self.network))
        if self.notifier is None:
            return waiting
        # A fresh daemon's initial block download outlasts any TimeoutStartSec.
        return keep_start_alive(
            waiting, self.notifier, self.clock, self.sync_status, "waiting for the chain backend"
        )

    async def sync_status(self) -> str:
        """One line for systemd's STATUS= while the node waits for the daemon."""
        info = await self.client.get_blockchain_info()
        if info.initial_block_download:
            progress = info.verification_progress
            shown = "" if progress is None else f", {float(progress):.1%} verified"
            return (
                f"waiting for bitcoind's initial block download: block {info.blocks} of "
                f"{info.headers}{shown}"
            )
        return f"waiting for the chain backend: {info.chain} at height {info.blocks}"

    def stopService(self) -> Deferred[None]:
        super().stopService()
        closed: Deferred[None] = self.client.close()
        return closed


class ReadyWhen(Service):
    """Runs a child service and reports it ready when ``check()`` succeeds."""

    def __init__(
        self, name: str, service: Any, check: Callable[[], Coroutine[Any, Any, Any]]
    ) -> None:
        self.setName(name)
        self.service = service
        self.check = check

    def startService(self) -> None:
        super().startService()
        self.service.startService()

    def whenReady(self) -> Deferred[Any]:
        return Deferred.fromCoroutine(self.check())

    def stopService(self) -> Deferred[None]:
        super().stopService()
        stopped: Deferred[None] = maybeDeferred(self.service.stopService)
        return stopped


def devnet_service(config: Config, reactor: Any) -> DevnetService:
    """The devnet the ``chain.devnet`` section describes (the node's and ``otedama devnet``'s).

    Raises ``ValueError`` naming the key for a bad value.
    """
    from otedama.devnet.service import DevnetService

    devnet = config.chain.devnet
    try:
        return DevnetService(
            reactor,
            devnet.listen.server_endpoint(),
            devnet.difficulty,
            devnet.data_dir,
            wallet_address=config.payout_address,
            credentials=(devnet.rpc_user, devnet.rpc_password)
            if devnet.rpc_user and devnet.rpc_password
            else None,
            cookie=devnet.rpc_cookie,
            zmq=devnet.zmq_endpoints(),
            chain_name=devnet.chain_name,
            connections=devnet.reported_connections,
        )
    except ValueError as e:
        raise ValueError(f"chain.devnet.difficulty: {e}") from None


def rpc_endpoints(config: Config) -> list[Any]:
    from otedama.node.rpc import RpcEndpoint

    if config.chain.backend == "devnet":
        devnet = config.chain.devnet
        listen = devnet.listen
        host = "127.0.0.1" if listen.host in ("", "0.0.0.0") else listen.host
        host = f"[{host}]" if ":" in host else host
        cookie = devnet.data_dir / ".cookie" if devnet.rpc_cookie and not devnet.rpc_user else None
        return [
            RpcEndpoint(
                url=f"http://{host}:{listen.port}/",
                user=devnet.rpc_user,
                password=devnet.rpc_password,
                cookie_file=str(cookie) if cookie else None,
            )
        ]
    return [
        RpcEndpoint(
            url=rpc.url,
            user=rpc.user,
            password=rpc.password,
            cookie_file=str(rpc.cookie_file) if rpc.cookie_file else None,
        )
        for rpc in config.chain.rpc
    ]


def wallet_endpoint(config: Config) -> RpcEndpoint | None:
    """The payout wallet's daemon from ``chain.wallet``; None: the first chain daemon's."""
    from otedama.node.rpc import RpcEndpoint

    wallet = config.chain.wallet
    if wallet.url is None:
        return None
    return RpcEndpoint(
        url=wallet.url,
        user=wallet.user,
        password=wallet.password,
        cookie_file=str(wallet.cookie_file) if wallet.cookie_file else None,
    )


#: The stratum keys ``stratum_settings`` reads that a reload applies to the running server.
STRATUM_LIVE_KEYS = tuple(
    f"stratum.{name}"
    for name in (
        "share_difficulty",
        "var_diff",
        "target_share_interval",
        "min_difficulty",
        "max_difficulty",
        "max_workers",
        "max_connections_per_ip",
        "subscribe_timeout",
        "idle_timeout",
        "authorize_timeout",
    )
)


def stratum_settings(config: Config) -> Any:
    from otedama.chain.params import get_network
    from otedama.stratum.settings import StratumSettings

    stratum = config.stratum
    return StratumSettings(
        network=get_network(config.chain.network),
        start_difficulty=stratum.share_difficulty,
        vardiff=stratum.var_diff,
        target_share_interval=stratum.target_share_interval,
        min_difficulty=stratum.min_difficulty,
        max_difficulty=stratum.max_difficulty,
        extranonce2_size=stratum.extranonce2_size,
        max_connections=stratum.max_workers,
        max_connections_per_ip=stratum.max_connections_per_ip,
        subscribe_timeout=stratum.subscribe_timeout,
        idle_timeout=stratum.idle_timeout,
        authorize_timeout=stratum.authorize_timeout,
    )


def build_node(config: Config, reactor: Any, log_control: LogControl | None = None) -> NodeService:
    """Build the whole node: one tree, children in start order (they stop in reverse)."""
    from twisted.internet.endpoints import serverFromString
    from twisted.web.server import Site

    from otedama.chain.params import get_network
    from otedama.ledger.blocks import BlockTracker, RewardPolicy
    from otedama.ledger.payouts import PayoutProcessor
    from otedama.ledger.rewards import RewardScheme
    from otedama.ledger.store import LedgerStore
    from otedama.node.bitcoind import BitcoindClient
    from otedama.node.source import TemplateSource
    from otedama.pool.core import LedgerLink, PoolCore, ShareReporter
    from otedama.pool.reload import LIVE_KEYS as POOL_LIVE_KEYS
    from otedama.pool.reload import PoolReload
    from otedama.stratum.jobs import JobManager
    from otedama.stratum.protocol import StratumFactory

    logging = config.monitoring.logging
    if log_control is None:
        log_control = LogControl(
            config.log_level,
            logging.format,
            stdout=logging.stdout,
            file=logging.file,
            max_size=logging.max_size,
            max_backups=logging.max_backups,
        )
    node = NodeService(config, reactor, log_control)
    node.expect_start_errors(*operator_errors())
    node.log.info("{summary}", summary=start_summary(config))
    network = get_network(config.chain.network)

    if config.chain.backend == "devnet":
        devnet = devnet_service(config, reactor)
        devnet.setName("devnet")
        devnet.setServiceParent(node)

    client = BitcoindClient(
        rpc_endpoints(config),
        clock=reactor,
        timeout=config.chain.rpc_timeout,
        wallet=config.chain.wallet.name,
        wallet_endpoint=wallet_endpoint(config),
    )
    ChainService(client, config.chain.network, node.notifier, reactor).setServiceParent(node)

    store = LedgerStore.from_config(reactor, config)
    ReadyWhen("ledger", store, store.check_schema).setServiceParent(node)

    fee_address = config.pool.fee_address or config.payout_address
    policy = RewardPolicy(
        scheme=RewardScheme.parse(config.pool.rewards.system),
        fee_basis_points=config.fee_basis_points,
        fee_address=fee_address,
        pplns_window=config.pool.rewards.window,
    )
    tracker = BlockTracker(store, client, reactor, maturity=network.coinbase_maturity)
    tracker.setName("block-tracker")
    tracker.setServiceParent(node)
    payouts = PayoutProcessor(
        store,
        client.wallet,
        reactor,
        interval=config.pool.payout_interval,
        minimum_payout_sats=config.pool.minimum_payout,
        # The fee credited to the pool's own address is already in its wallet: keep it.
        kept_addresses={config.payout_address},
    )
    payouts.setName("payouts")
    payouts.setServiceParent(node)

    ledger_link = LedgerLink(store, policy)
    core = PoolCore(
        network,
        config.payout_address,
        policy.scheme,
        config.fee_basis_points,
        client,
        ledger_link,
        fee_address=fee_address,
        clock=reactor,
    )
    node.add_reload_hook(
        PoolReload(core, ledger_link, payouts, config.payout_address), POOL_LIVE_KEYS
    )
    reporter = ShareReporter(core, reactor)
    reporter.setName("share-report")
    reporter.setServiceParent(node)
    solo = policy.scheme is RewardScheme.SOLO
    jobs = JobManager(
        core.coinbase_outputs,
        clock=reactor,
        pool_tag=config.stratum.pool_tag.encode(),
        extranonce2_size=config.stratum.extranonce2_size,
        refresh_interval=config.stratum.job_timeout,
        address_outputs=core.solo_outputs if solo else None,
    )
    jobs.setName("jobs")
    jobs.setServiceParent(node)
    source = TemplateSource(
        client,
        clock=reactor,
        poll_interval=config.chain.poll_interval,
        refresh_interval=config.stratum.job_timeout,
        retry_max=config.chain.poll_interval,
    )
    source.subscribe(jobs.on_template)
    follow_the_chain(client, source, core)
    health = NodeHealth(reactor, template_max_age=max(300.0, 4 * config.stratum.job_timeout))
    source.subscribe(health.on_template)
    watch_the_chain(health, source, core)
    health.checks["database"] = lambda: ledger_check(store)
    source.setName("templates")
    source.setServiceParent(node)
    metrics = node_metrics(config, reactor, core, store, client)
    shared = shared_state(
        config, reactor, core, node, health, store, tracker, api=config.api.enable
    )

    if config.stratum.enable:
        port = str(config.stratum.address.port)
        sink = metrics.watch_stratum(port, network.algorithm, core)
        factory = StratumFactory(jobs, sink, stratum_settings(config), reactor)
        metrics.watch_server(sink, factory.server)
        health.checks["stratum"] = lambda: metrics.stratum_check(health)
        endpoint = serverFromString(reactor, config.stratum.address.server_endpoint())
        ListenerService("stratum", endpoint, factory).setServiceParent(node)
        node.add_reload_hook(
            lambda old, new: factory.server.update_settings(stratum_settings(new)),
            STRATUM_LIVE_KEYS,
        )

    if config.mining.enable_cpu:
        from otedama.miner.service import CpuMinerService

        address = config.stratum.address
        host = "127.0.0.1" if address.host in ("", "0.0.0.0") else address.host
        miner = CpuMinerService(
            f"stratum+tcp://{host}:{address.port}",
            f"{config.payout_address}.cpu",
            config.mining.cpu.threads,
            reactor,
        )
        miner.setName("cpu-miner")
        miner.setServiceParent(node)
    if config.api.enable:
        from otedama.api.service import build_api
        from otedama.ledger.history import HashrateHistory

        history = HashrateHistory(store, reactor)
        history.setName("hashrate-history")
        history.setServiceParent(node)
        parts = build_api(
            config,
            reactor,
            store,
            core,
            health=health,
            payouts=payouts,
            metrics=metrics,
            shared=shared,
        )
        tracker.on_status(parts.view.on_status)
        source.subscribe(parts.view.tip.on_template)
        parts.view.setServiceParent(node)
        endpoint = serverFromString(reactor, config.api.address.server_endpoint())
        ListenerService("api", endpoint, parts.site).setServiceParent(node)
    if config.monitoring.health.enabled:
        settings = config.monitoring.health
        site = Site(health_root(settings.path, HealthResource(health)))
        site.noisy = False
        site.log = lambda request: None  # type: ignore[method-assign]
        endpoint = serverFromString(reactor, settings.address.server_endpoint())
        ListenerService("health", endpoint, site).setServiceParent(node)
    metrics.start_services(node)
    if config.monitoring.metrics.enabled:
        served = config.monitoring.metrics
        site = Site(health_root(served.path, metrics.resource()))
        site.noisy = False
        site.log = lambda request: None  # type: ignore[method-assign]
        endpoint = serverFromString(reactor, served.address.server_endpoint())
        ListenerService("metrics", endpoint, site).setServiceParent(node)
    return node


def operator_errors() -> tuple[type[BaseException], ...]:
    """Start failures whose message says the cause and what to do (wrong RPC credentials,
    a daemon on another chain, a missing or unmigrated database): one log line each."""
    from otedama.ledger.db import DatabaseError
    from otedama.node.chainview import ChainMismatchError
    from otedama.node.rpc import RpcAuthError

    return (RpcAuthError, ChainMismatchError, DatabaseError)


def follow_the_chain(client: Any, source: Any, core: Any) -> None:
    """Outage recovery: after a block the daemon took, the next template goes to miners at
    once (so they do not find a second block at the same height), and when the daemon
    answers any call again the template source stops waiting out its back-off."""
    core.on_block(lambda _share, _result: source.refresh_soon())
    client.transport.on_recovery(source.wake)


def watch_the_chain(health: NodeHealth, source: Any, core: Any) -> None:
    """The chain check is degraded as soon as templates or ``submitblock`` fail."""
    health.chain_troubles["templates"] = source.trouble
    health.chain_troubles["submitblock"] = core.submit_trouble


def shared_state(
    config: Config,
    reactor: Any,
    core: Any,
    node: Any,
    health: Any,
    store: Any = None,
    tracker: Any = None,
    api: bool = False,
) -> Any:
    """Rate limits and live events (``redis.*``: through Redis, else in memory). Found,
    confirmed and orphaned blocks go on ``blocks``: from the API's bridge when ``api``
    runs, else published here. With Redis, ``/health`` gains a ``redis`` check."""
    from otedama.ops.redis import BlockStatusEvents, SharedState, publish_blocks, redis_target

    shared = SharedState(redis_target(config), reactor)
    shared.setServiceParent(node)
    if shared.target is not None:
        health.checks["redis"] = shared.check
    if not api:
        publish_blocks(core, shared, shared.node_id)
        if store is not None and tracker is not None:
            BlockStatusEvents(store, shared, tracker, shared.node_id)
    return shared


def node_metrics(config: Config, reactor: Any, core: Any, store: Any, client: Any) -> Any:
    """The node's counters: served to Prometheus when ``monitoring.metrics`` is on, and
    read by ``/health``'s stratum check (``otedama mining status``) always."""
    from otedama.ops.metrics import NodeMetrics

    metrics = NodeMetrics(reactor, config.chain.network)
    metrics.watch_core(core)
    if config.monitoring.metrics.enabled:
        metrics.watch_ledger(store)
    metrics.watch_rpc(client.transport)
    if client.wallet.transport is not client.transport:
        metrics.watch_rpc(client.wallet.transport)
    return metrics


def health_root(path: str, leaf: Any) -> Any:
    """A resource tree that serves ``leaf`` at ``path`` (e.g. ``/health``)."""
    from twisted.web.resource import Resource

    root: Any = Resource()
    parent = root
    segments = [segment.encode() for segment in path.strip("/").split("/")]
    for segment in segments[:-1]:
        child: Any = Resource()
        parent.putChild(segment, child)
        parent = child
    parent.putChild(segments[-1], leaf)
    return root


def ledger_check(store: Any) -> Check:
    """The share path: ``degraded`` while shares are spooled (database away)."""
    ingest = store.health()
    detail = {
        "stored": ingest.stored,
        "spooled": ingest.spooled,
        "dropped": ingest.dropped,
        "spool_bytes": ingest.spool_bytes,
    }
    if ingest.reason:
        detail["reason"] = ingest.reason
    return Check(OK if ingest.status == "ok" else DEGRADED, detail)

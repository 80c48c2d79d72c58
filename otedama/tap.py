"""``twistd otedama``: command-line options and the one function that builds the node.

``twistd -n otedama --config FILE`` and ``otedama serve --config FILE`` both end here,
so they run the same service tree.
"""

from __future__ import annotations

import os
import socket
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
from otedama.ops.audit import AuditLog, audit_path
from otedama.ops.bans import DdosSettings, JsonBanFile
from otedama.ops.firewall import Firewall
from otedama.ops.gcpolicy import GcPolicy
from otedama.ops.guard import AdminFactory, Guard, GuardService, guarded, share_bans
from otedama.ops.health import DEGRADED, OK, Check, HealthResource, NodeHealth
from otedama.ops.lifecycle import ListenerService, NodeService
from otedama.ops.logging import LogControl
from otedama.ops.reactor import WrongReactor, install_asyncio_reactor
from otedama.ops.sdnotify import keep_start_alive
from otedama.ops.tls import tls_context, tls_factory

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
        "max_unsent_bytes",
        "stall_timeout",
        "close_grace",
        "max_share_rate",
        "share_burst",
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
        max_unsent_bytes=stratum.max_unsent_bytes,
        stall_timeout=stratum.stall_timeout,
        close_grace=stratum.close_grace,
        max_share_rate=stratum.max_share_rate,
        share_burst=stratum.share_burst,
    )


def build_node(config: Config, reactor: Any, log_control: LogControl | None = None) -> NodeService:
    """Build the whole node: one tree, children in start order (they stop in reverse)."""
    from twisted.internet.endpoints import serverFromString
    from twisted.web.server import Site

    from otedama.chain.params import get_network
    from otedama.ledger.blocks import BlockTracker, RewardPolicy
    from otedama.ledger.leader import LeaderService
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
    gc_settings = config.app.gc
    GcPolicy(reactor, gc_settings.freeze_interval, gc_settings.full_interval).setServiceParent(node)
    audit = AuditLog(audit_path(config), reactor)
    guard = build_guard(config, reactor, audit)
    protect_the_node(node, config, reactor, guard, audit)
    tls = tls_context(config)

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
    # Several nodes may share one PostgreSQL ledger: only the leader tracks blocks and pays.
    leader = LeaderService(reactor, config.database_url)
    leader.setServiceParent(node)
    tracker = BlockTracker(store, client, reactor, maturity=network.coinbase_maturity)
    tracker.setName("block-tracker")
    tracker.setServiceParent(leader)
    payouts = PayoutProcessor(
        store,
        client.wallet,
        reactor,
        interval=config.pool.payout_interval,
        minimum_payout_sats=config.pool.minimum_payout,
        # The fee credited to the pool's own address is already in its wallet: keep it.
        kept_addresses={config.payout_address},
        on_sent=lambda batch, txid: audit.record(
            "node",
            "payout.sent",
            f"batch {batch.id}",
            "ok",
            {"txid": txid, "total_sat": batch.total, "recipients": len(batch.items)},
        ),
    )
    payouts.setName("payouts")
    payouts.setServiceParent(leader)

    ledger_link = LedgerLink(store, policy)
    federation = federation_parts(
        config, reactor, store, client, ledger_link, node, guard=guard, tls=tls
    )
    core = PoolCore(
        network,
        config.payout_address,
        policy.scheme,
        config.fee_basis_points,
        client,
        ledger_link,
        fee_address=fee_address,
        clock=reactor,
        federation=federation.node if federation is not None else None,
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
    if federation is not None:
        source.subscribe(federation.node.on_template)  # the tip, before the jobs use it
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
    if shared.target is not None:  # Redis: bans are shared between the nodes
        share_bans(guard, shared, f"{socket.gethostname()}/{os.getpid()}")

    if config.stratum.enable:
        port = str(config.stratum.address.port)
        sink = metrics.watch_stratum(port, network.algorithm, core)
        factory = StratumFactory(jobs, sink, stratum_settings(config), reactor)
        metrics.watch_server(sink, factory.server)
        health.checks["stratum"] = lambda: metrics.stratum_check(health)
        factory.server.work_observer = guard.note_work
        endpoint = serverFromString(reactor, config.stratum.address.server_endpoint())
        ListenerService("stratum", endpoint, guarded(guard, factory, "stratum")).setServiceParent(
            node
        )
        if tls is not None:
            endpoint = serverFromString(reactor, config.stratum.tls_address.server_endpoint())
            secure = guarded(guard, tls_factory(tls, factory, reactor), "stratum-tls", lines=False)
            ListenerService("stratum-tls", endpoint, secure).setServiceParent(node)
        node.add_reload_hook(
            lambda old, new: factory.server.update_settings(stratum_settings(new)),
            STRATUM_LIVE_KEYS,
        )

    if federation is not None:
        federation.service.setServiceParent(node)
        health.checks["federation"] = federation.check

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
        from otedama.api.federation import register_federation_route

        parts = build_api(
            config,
            reactor,
            store,
            core,
            health=health,
            payouts=payouts,
            metrics=metrics,
            shared=shared,
            guard=guard,
            audit=audit,
        )
        tracker.on_status(parts.view.on_status)
        register_federation_route(
            parts.registry, None if federation is None else federation.operator_view
        )
        source.subscribe(parts.view.tip.on_template)
        parts.view.setServiceParent(node)
        endpoint = serverFromString(reactor, config.api.address.server_endpoint())
        # HTTPS on the API port when TLS is on, the certificate reloaded with Stratum's on
        # SIGHUP. HTTP listeners count a read as one message (a request's header lines
        # are one request).
        served_site = parts.site if tls is None else tls_factory(tls, parts.site, reactor)
        api_factory = guarded(guard, served_site, "api", lines=False)
        ListenerService("api", endpoint, api_factory).setServiceParent(node)
    if config.monitoring.health.enabled:
        settings = config.monitoring.health
        site = Site(health_root(settings.path, HealthResource(health)))
        site.noisy = False
        site.log = lambda request: None  # type: ignore[method-assign]
        endpoint = serverFromString(reactor, settings.address.server_endpoint())
        ListenerService(
            "health", endpoint, guarded(guard, site, "health", lines=False)
        ).setServiceParent(node)
    metrics.start_services(node)
    if config.monitoring.metrics.enabled:
        served = config.monitoring.metrics
        site = Site(health_root(served.path, metrics.resource()))
        site.noisy = False
        site.log = lambda request: None  # type: ignore[method-assign]
        endpoint = serverFromString(reactor, served.address.server_endpoint())
        ListenerService(
            "metrics", endpoint, guarded(guard, site, "metrics", lines=False)
        ).setServiceParent(node)
    if tls is not None:
        node.add_reload_hook(tls.reload_hook(reactor), ("security.cert_file", "security.key_file"))
    return node


def build_guard(config: Config, reactor: Any, audit: AuditLog | None = None) -> Guard:
    """The node's guard from ``security.*`` (bans kept in ``DATA_DIR/bans.json``)."""
    from pathlib import Path

    return Guard(
        firewall_of(config),
        ddos_settings(config),
        reactor,
        store=JsonBanFile(Path(config.app.data_dir) / "bans.json", reactor),
        audit=audit,
    )


def firewall_of(config: Config) -> Firewall:
    """``security.firewall`` compiled (empty lists when it is disabled)."""
    firewall = config.security.firewall
    if not firewall.enabled:
        return Firewall()
    return Firewall.from_lists(firewall.whitelist, firewall.blacklist)


def ddos_settings(config: Config) -> DdosSettings:
    ddos = config.security.ddos_protection
    return DdosSettings(
        enabled=ddos.enabled,
        message_rate=float(ddos.rate_limit),
        message_burst=ddos.burst_limit,
        connection_rate=ddos.connection_rate,
        connection_burst=ddos.connection_burst,
        max_connections_per_ip=ddos.max_connections_per_ip,
        ban_duration=ddos.ban_duration,
        invalid_window=ddos.invalid_window,
        invalid_ratio=ddos.invalid_ratio,
        invalid_min=ddos.invalid_min,
    )


#: Security keys a reload applies live (TLS files are re-read on every reload).
SECURITY_LIVE_KEYS = (
    "security.ddos_protection",
    "security.firewall",
    "security.cert_file",
    "security.key_file",
)


def protect_the_node(
    node: NodeService, config: Config, reactor: Any, guard: Guard, audit: AuditLog
) -> None:
    """The guard's service (bans loaded before any listener), the ``otedama ban`` socket,
    and the reload hooks for the lists, the limits and the audit line of each reload."""
    from pathlib import Path

    from twisted.internet.endpoints import UNIXServerEndpoint

    GuardService(guard).setServiceParent(node)
    data_dir = Path(config.app.data_dir)
    data_dir.mkdir(parents=True, exist_ok=True)
    admin = UNIXServerEndpoint(reactor, str(admin_socket(config)), mode=0o600, wantPID=True)
    ListenerService("admin", admin, AdminFactory(guard)).setServiceParent(node)

    def reconfigure(old: Config, new: Config) -> None:
        guard.configure(firewall_of(new), ddos_settings(new))

    def audited(old: Config, new: Config) -> None:
        audit.record("operator", "config.reload", str(new.source), "ok")

    node.add_reload_hook(reconfigure, SECURITY_LIVE_KEYS)
    node.add_reload_hook(audited, ())


def admin_socket(config: Config) -> Any:
    """The unix socket ``otedama ban`` talks to (``DATA_DIR/admin.sock``, mode 600)."""
    from pathlib import Path

    return Path(config.app.data_dir) / "admin.sock"


class FederationParts:
    """The federation's pieces in the node: the verifier/settlement side, the service."""

    log = Logger()

    def __init__(self, node: Any, service: Any, payout_address: str) -> None:
        self.node = node
        self.service = service
        self.payout_address = payout_address

    def operator_view(self) -> dict[str, Any]:
        """The whole operator view (``otedama federation status``, ``/api/v1/federation``)."""
        result: dict[str, Any] = self.node.operator_status(
            self.service.status(), self.payout_address
        )
        return result

    def check(self) -> Check:
        """``/health``'s ``federation`` component: degraded while no peer is linked; its
        ``status`` is the whole operator view (``otedama federation status``)."""
        status, detail = self.service.health()
        full = self.operator_view()
        return Check(OK if status == "ok" else DEGRADED, {**detail, "status": full})


def federation_parts(
    config: Config,
    reactor: Any,
    store: Any,
    client: Any,
    ledger_link: Any,
    parent: Any,
    *,
    guard: Guard | None = None,
    tls: Any = None,
) -> FederationParts | None:
    """With ``federation.enabled``: the node key, window and reputation (restored from
    the ledger before templates flow), the income watcher, and the federation service
    (added to the tree by the caller, after the templates). The gossip listener is
    behind ``guard`` like every listener, and its TLS is ``tls`` (the node's reloadable
    certificate, shared with Stratum's TLS port)."""
    if not config.federation.enabled:
        return None
    from otedama.chain.address import address_to_script
    from otedama.chain.params import get_network
    from otedama.federation.identity import load_or_create
    from otedama.federation.node import ClockedReputation, FederationNode
    from otedama.federation.reputation import PeerRecord, Reputation
    from otedama.federation.service import federation_service
    from otedama.federation.window import RETENTION_MARGIN, FederationWindow, WindowEntry
    from otedama.ledger.income import FederationState, IncomeWatcher, PeerRow, WindowRow

    fed = config.federation
    if fed.reputation_threshold > 0.5:
        FederationParts.log.warn(
            "federation.reputation_threshold {threshold} is above 0.5, the score of a peer "
            "never seen: no newcomer will be believed (docs/federation.md, Reputation)",
            threshold=fed.reputation_threshold,
        )
    identity = load_or_create(config.app.data_dir, fed.node_id)
    script = address_to_script(config.payout_address, get_network(config.chain.network))
    window = FederationWindow(fed.window)
    reputation = ClockedReputation(Reputation(), reactor)
    node = FederationNode(
        identity,
        script,
        window,
        reputation,
        reactor,
        share_interval=fed.share_interval,
        warmup=fed.window,
    )
    unsaved: list[WindowRow] = []
    node.on_window_entry = lambda e: unsaved.append(
        (e.share_hash, e.node_id, e.payout_script, e.work, e.time)
    )

    def drain() -> list[WindowRow]:
        taken = list(unsaved)
        unsaved.clear()
        return taken

    def restore(rows: list[WindowRow], peers: list[PeerRow]) -> None:
        now = reactor.seconds()
        for share_hash, node_id, payout, work, at in rows:
            window.add(WindowEntry(share_hash, node_id, payout, work, at), now)
        reputation.reputation.restore(PeerRecord(*peer) for peer in peers)
        node.restored(max((row[4] for row in rows), default=None), now)

    FederationState(
        store,
        reactor,
        drain_window=drain,
        reputation=lambda: [(r.peer_key, r.good, r.bad, r.updated) for r in reputation.snapshot()],
        restore=restore,
        retain=fed.window + RETENTION_MARGIN,
    ).setServiceParent(parent)
    watcher = IncomeWatcher(store, client, reactor, script, lambda: ledger_link.policy)
    watcher.setName("federation-income")
    watcher.setServiceParent(parent)
    service = federation_service(
        config,
        reactor,
        handler=node,
        reputation=reputation,
        identity=identity,
        tls_server=tls,
        policy=guard,
        wrap_listener=None
        if guard is None
        else (lambda factory: guarded(guard, factory, "federation", lines=False)),
    )
    service.setName("federation")
    node.book = service.book
    service.book.subscribe(node.record_known)  # shares held for a finder's record
    node.records.lookup = service.lookup_record
    node.publisher = service
    node.linked = lambda: bool(service.gossip.ready)
    return FederationParts(node, service, config.payout_address)


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

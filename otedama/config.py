"""Otedama's configuration: YAML -> frozen, typed, validated once.

The schema accepts the deployment guide's full ``production.yaml`` plus Otedama's own
keys (``chain``, ``pool.wallet_address``, …). Every problem is reported with its key
path, the value and what was expected. Keys the guide defines that this version does not
act on are accepted and listed in ``Config.unused`` so the node can warn once at start.
"""

from __future__ import annotations

import functools
import hashlib
import os
import re
from collections.abc import Mapping
from dataclasses import dataclass, field, replace
from decimal import Decimal
from fractions import Fraction
from pathlib import Path
from typing import Any
from urllib.parse import quote, urlsplit, urlunsplit

import yaml

from otedama.configschema import (
    MASK,
    MAX_NUMBER_TEXT,
    ConfigError,
    HostPort,
    Invalid,
    any_list,
    boolean,
    choice,
    coin_amount,
    difficulty,
    dump_coins,
    dump_duration,
    dump_fraction,
    dump_path,
    dump_section,
    dump_size,
    dump_str,
    duration,
    host_port,
    integer,
    load_section,
    number,
    option,
    optional_path,
    optional_string,
    path,
    percentage,
    port,
    section,
    size,
    string,
    string_list,
)

DEFAULT_CONFIG_PATH = "/etc/otedama.yaml"
MB = 1024 * 1024
LOG_LEVELS = ("debug", "info", "warn", "error", "critical")
#: The devnet pool's coinbase address when pool.wallet_address is unset (regtest format;
#: the devnet does not check signatures, so its wallet spends these outputs).
DEVNET_POOL_ADDRESS = (
    "bcrt1qqxlgwddcf0uhsmr9uqesvn3efp00p99t0mcyjs"  # P2WPKH of hash160(b"otedama devnet pool")
)
NETWORKS = ("mainnet", "testnet", "testnet4", "signet", "regtest", "devnet")

__all__ = ["DEFAULT_CONFIG_PATH", "Config", "ConfigError", "HostPort", "load_config"]


def _fee_percentage(value: Any) -> Decimal:
    result = percentage(value)
    if result * 100 != (result * 100).to_integral_value():
        raise Invalid(f"expected whole basis points (steps of 0.01 %), got {value!r}")
    return result


#: Wallets refuse outputs below P2PKH's dust limit; a smaller minimum payout never pays.
DUST_LIMIT_SATS = 546


def _minimum_payout(value: Any) -> int:
    sats = coin_amount(value)
    if sats < DUST_LIMIT_SATS:
        raise Invalid(
            f"expected at least 0.00000546 (the dust limit wallets enforce), got {value!r}"
        )
    return sats


def _log_level(value: Any) -> str:
    level = choice(*LOG_LEVELS, "warning")(value)
    return "warn" if level == "warning" else level


def _optional_log_level(value: Any) -> str | None:
    return None if value is None else _log_level(value)


def _positive_duration(value: Any) -> float:
    seconds = duration(value)
    if seconds <= 0:
        raise Invalid(f"expected a duration > 0, got {value!r}")
    return seconds


#: The least output a connection may have waiting (``StratumSettings`` refuses less).
MIN_UNSENT_BYTES = 4096


def _unsent_bytes(value: Any) -> int:
    result = size()(value)
    if result < MIN_UNSENT_BYTES:
        raise Invalid(f"expected a size of at least 4KiB (4096 bytes), got {value!r}")
    return result


def _positive_number(value: Any) -> float:
    result = number(0)(value)
    if result <= 0:
        raise Invalid(f"expected a number > 0, got {value!r}")
    return result


# -- sections of the deployment guide --------------------------------------------------


@dataclass(frozen=True)
class GcConfig:
    freeze_interval: float = option(
        60.0,
        duration,
        dump=dump_duration,
        doc="Freeze the objects alive now out of automatic full garbage collections this often"
        " (gc.freeze; keeps their pauses off the reactor); 0: CPython's default collector.",
    )
    full_interval: float = option(
        3600.0,
        duration,
        dump=dump_duration,
        doc="One full collection of every object this often (frees cyclic garbage that was"
        " frozen); 0: never.",
    )


@dataclass(frozen=True)
class AppConfig:
    name: str = option("Otedama", string, doc="Name shown in logs and the API.")
    mode: str = option(
        "production",
        choice("production", "development", "test"),
        doc="Run mode; `OTEDAMA_MODE` overrides it. `development` logs at debug by default.",
    )
    version: str = option("", string, used=False, doc="Informational (the guide's version).")
    log_level: str = option(
        "info", _log_level, doc="Default log level when `monitoring.logging.level` is unset."
    )
    data_dir: Path = option(
        Path("./data"), path, dump=dump_path, doc="Where the node keeps its state."
    )
    gc: GcConfig = section(GcConfig)


@dataclass(frozen=True)
class ServerConfig:
    host: str = option("0.0.0.0", string, used=False)
    port: int = option(8080, port, used=False)
    read_timeout: float = option(30.0, duration, dump=dump_duration, used=False)
    write_timeout: float = option(30.0, duration, dump=dump_duration, used=False)
    idle_timeout: float = option(120.0, duration, dump=dump_duration, used=False)
    max_header_bytes: int = option(1048576, size(), used=False)


@dataclass(frozen=True)
class CpuConfig:
    threads: int = option(0, integer(0, 1024), doc="Built-in miner processes; 0 = cores - 1.")
    priority: str = option("normal", choice("low", "normal", "high"), used=False)
    huge_pages: bool = option(False, boolean, used=False)
    numa_aware: bool = option(False, boolean, used=False)


@dataclass(frozen=True)
class GpuConfig:
    devices: tuple[Any, ...] = option([], any_list, dump=list, used=False)
    intensity: int = option(20, integer(0), used=False)
    temperature_limit: int = option(85, integer(0), used=False)
    memory_optimization: bool = option(False, boolean, used=False)


@dataclass(frozen=True)
class AsicConfig:
    devices: tuple[Any, ...] = option([], any_list, dump=list, used=False)
    poll_interval: float = option(5.0, duration, dump=dump_duration, used=False)
    firmware_optimization: bool = option(False, boolean, used=False)


@dataclass(frozen=True)
class MiningConfig:
    algorithm: str = option(
        "sha256d", choice("sha256d"), doc="Proof-of-work algorithm (sha256d; scrypt later)."
    )
    enable_cpu: bool = option(
        False, boolean, doc="Run the built-in CPU miner against this node's Stratum port."
    )
    enable_gpu: bool = option(False, boolean, used=False)
    enable_asic: bool = option(False, boolean, used=False)
    cpu: CpuConfig = section(CpuConfig)
    gpu: GpuConfig = section(GpuConfig)
    asic: AsicConfig = section(AsicConfig)


@dataclass(frozen=True)
class RewardsConfig:
    system: str = option(
        "PPLNS", choice("PPLNS", "PROP", "SOLO"), doc="Reward system: PPLNS, PROP or SOLO."
    )
    window: float = option(
        7200.0, duration, dump=dump_duration, doc="PPLNS window (time, weighted by difficulty)."
    )
    difficulty_adjustment: str = option("auto", string, used=False)


@dataclass(frozen=True)
class PoolConfig:
    enable: bool = option(True, boolean, used=False)
    address: HostPort | None = option(
        None, host_port(), dump=dump_str, used=False, doc="The guide's alias of stratum.address."
    )
    max_connections: int = option(50000, integer(1), used=False)
    fee_percentage: Decimal = option(
        Decimal("1.0"),
        _fee_percentage,
        dump=str,
        doc="Operator fee in percent of each block reward (steps of 0.01).",
    )
    minimum_payout: int = option(
        100_000, _minimum_payout, dump=dump_coins, doc="Smallest payout, in coins (0.001)."
    )
    payout_interval: float = option(
        600.0, duration, dump=dump_duration, doc="How often payouts run."
    )
    wallet_address: str = option(
        "", string, doc="Address that receives the pool's coinbase and the fee."
    )
    fee_address: str | None = option(
        None,
        optional_string,
        doc="Where fees are paid (default: none; the fee stays as wallet balance).",
    )
    rewards: RewardsConfig = section(RewardsConfig)


@dataclass(frozen=True)
class ProtocolsConfig:
    v1: bool = option(True, boolean, doc="Stratum V1 (the only protocol this version serves).")
    v2: bool = option(False, boolean, used=False)


@dataclass(frozen=True)
class StratumConfig:
    enable: bool = option(True, boolean, doc="Serve miners over Stratum.")
    address: HostPort = option(
        HostPort("0.0.0.0", 3333), host_port(), dump=str, doc="Stratum listen address."
    )
    max_workers: int = option(50000, integer(1), doc="Most miner connections at once.")
    job_timeout: float = option(
        30.0,
        _positive_duration,
        dump=dump_duration,
        doc="Refresh jobs (time, transactions) this often.",
    )
    share_difficulty: Fraction = option(
        Fraction(1), difficulty, dump=dump_fraction, doc="Start difficulty of a connection."
    )
    var_diff: bool = option(True, boolean, doc="Adjust difficulty per connection.")
    target_share_interval: float = option(
        10.0, _positive_duration, dump=dump_duration, doc="Vardiff aims at one share this often."
    )
    min_difficulty: Fraction = option(
        Fraction(1, 1000), difficulty, dump=dump_fraction, doc="Vardiff lower bound."
    )
    max_difficulty: Fraction = option(
        Fraction(2**40), difficulty, dump=dump_fraction, doc="Vardiff upper bound."
    )
    max_connections_per_ip: int = option(
        256, integer(1), doc="Most connections from one IP address."
    )
    subscribe_timeout: float = option(
        30.0, _positive_duration, dump=dump_duration, doc="Close connections that do not subscribe."
    )
    idle_timeout: float = option(
        600.0, _positive_duration, dump=dump_duration, doc="Close connections silent this long."
    )
    authorize_timeout: float = option(
        60.0,
        _positive_duration,
        dump=dump_duration,
        doc="Close connections not authorized this long.",
    )
    max_unsent_bytes: int = option(
        MB,
        _unsent_bytes,
        dump=dump_size,
        doc="Drop a miner that does not read once this much output waits for it"
        " (a bare number counts bytes; at least 4KiB).",
    )
    stall_timeout: float = option(
        60.0,
        _positive_duration,
        dump=dump_duration,
        doc="Drop a miner whose connection stays unable to take output this long.",
    )
    close_grace: float = option(
        5.0,
        _positive_duration,
        dump=dump_duration,
        doc="A closing connection that has not flushed within this is aborted.",
    )
    max_share_rate: float = option(
        20.0,
        _positive_number,
        doc="Submits per second one connection may average; over it submits are refused unchecked.",
    )
    share_burst: int = option(
        100, integer(1), doc="Submits one connection may send at once above max_share_rate."
    )
    extranonce2_size: int = option(8, integer(2, 16), doc="Bytes of extranonce2 per miner.")
    pool_tag: str = option("/otedama/", string, doc="Text put in each coinbase scriptSig.")
    tls_address: HostPort = option(
        HostPort("0.0.0.0", 3443),
        host_port(),
        dump=str,
        doc="Stratum over TLS (`stratum+ssl://`) when `security.enable_tls` is true.",
    )
    protocols: ProtocolsConfig = section(ProtocolsConfig)


@dataclass(frozen=True)
class ApiAuthConfig:
    enabled: bool = option(True, boolean, doc="Admin endpoints need a bearer token.")
    token_expiry: float = option(
        86400.0, duration, dump=dump_duration, doc="Default lifetime of `otedama api token create`."
    )
    rate_limiting: bool = option(
        True, boolean, doc="Per-IP and per-token token buckets (429 with Retry-After)."
    )


@dataclass(frozen=True)
class ApiConfig:
    enable: bool = option(True, boolean, doc="REST API, WebSocket and dashboard.")
    address: HostPort = option(
        HostPort("0.0.0.0", 8080), host_port(), dump=str, doc="Where the API listens."
    )
    cors_origins: tuple[str, ...] = option(
        [], string_list, dump=list, doc='Origins allowed by CORS (`["*"]`: any).'
    )
    cache_ttl: float = option(
        1.0,
        duration,
        dump=dump_duration,
        doc="Public read answers are reused for this long (0: every request reads anew).",
    )
    auth: ApiAuthConfig = section(ApiAuthConfig)


def _ssl_mode(value: Any) -> str:
    return choice("disable", "allow", "prefer", "require", "verify-ca", "verify-full")(value)


def _database_url(value: Any) -> str | None:
    text = optional_string(value)
    if text is None:
        return None
    scheme = text.split(":", 1)[0].split("+", 1)[0]
    if scheme not in ("postgresql", "postgres", "sqlite"):
        raise Invalid(f'expected a postgresql:// or sqlite:/// URL, got "{mask_url(text)}"')
    return text


@dataclass(frozen=True)
class DatabaseConfig:
    url: str | None = option(
        None, _database_url, doc="Full SQLAlchemy URL; `DATABASE_URL` overrides. Wins over host."
    )
    host: str | None = option(None, optional_string, doc="PostgreSQL host (unset: SQLite).")
    port: int = option(5432, port, doc="PostgreSQL port.")
    name: str = option("otedama", string, doc="Database name.")
    user: str = option("otedama", string, doc="Database user.")
    password: str = option("", string, secret=True, doc="Database password.")
    ssl_mode: str = option("prefer", _ssl_mode, doc="libpq sslmode.")
    max_connections: int = option(
        10, integer(1), doc="Upper bound for the connection pool (and its threads)."
    )
    max_idle_connections: int = option(5, integer(0), used=False)
    connection_max_lifetime: float = option(
        3600.0, duration, dump=dump_duration, doc="Recycle connections older than this."
    )
    pool_size: int = option(
        8, integer(1, 64), doc="Database worker threads (PostgreSQL; SQLite uses one)."
    )

    def effective_url(self, data_dir: Path) -> str:
        """The SQLAlchemy URL: `url`, else PostgreSQL from host…, else SQLite in data_dir."""
        if self.url:
            if self.url.startswith(("postgres://", "postgresql://")):
                return "postgresql+psycopg2://" + self.url.split("://", 1)[1]
            return self.url
        if self.host:
            auth = quote(self.user, safe="")
            if self.password:
                auth += ":" + quote(self.password, safe="")
            host = f"[{self.host}]" if ":" in self.host else self.host
            return (
                f"postgresql+psycopg2://{auth}@{host}:{self.port}/{quote(self.name, safe='')}"
                f"?sslmode={self.ssl_mode}"
            )
        return f"sqlite:///{data_dir / 'otedama.sqlite'}"

    def effective_pool_size(self, url: str) -> int:
        if url.startswith("sqlite"):
            return 1
        return min(self.pool_size, self.max_connections)


def _redis_url(value: Any) -> str | None:
    text = optional_string(value)
    if text is None:
        return None
    parts = urlsplit(text)
    if parts.scheme != "redis" or not parts.hostname:
        raise Invalid(f'expected redis://[:password@]host[:port][/db], got "{mask_url(text)}"')
    if parts.path.strip("/") and not parts.path.strip("/").isdigit():
        raise Invalid(f'the database after the / must be a number, got "{mask_url(text)}"')
    return text


@dataclass(frozen=True)
class RedisConfig:
    enabled: bool = option(
        False, boolean, doc="Share rate limits and live events through Redis at host:port."
    )
    url: str | None = option(
        None,
        _redis_url,
        secret=False,
        doc="`redis://[:password@]host[:port][/db]`; `REDIS_URL` overrides. Set: Redis is used.",
    )
    host: str = option("localhost", string, doc="Redis host (with `enabled`).")
    port: int = option(6379, port, doc="Redis port.")
    password: str = option("", string, secret=True, doc="Redis password.")
    db: int = option(0, integer(0), doc="Redis database number.")
    pool_size: int = option(10, integer(1), doc="Connections to Redis.")


def _ratio(value: Any) -> float:
    result = number(0, 1)(value)
    if result <= 0:
        raise Invalid(f"expected a ratio in (0, 1], got {value!r}")
    return float(result)


@dataclass(frozen=True)
class DdosConfig:
    enabled: bool = option(
        True, boolean, doc="Per-IP rate limits, connection caps and bans on invalid work."
    )
    rate_limit: int = option(
        1000, integer(1), doc="Messages (lines) per second from one IP on any listener."
    )
    burst_limit: int = option(2000, integer(1), doc="Messages one IP may send in a burst.")
    ban_duration: float = option(
        3600.0, _positive_duration, dump=dump_duration, doc="How long a ban lasts."
    )
    connection_rate: float = option(
        10.0, number(0.001, 1e6), doc="New connections per second from one IP (Otedama)."
    )
    connection_burst: int = option(
        100, integer(1), doc="New connections one IP may open in a burst (Otedama)."
    )
    max_connections_per_ip: int = option(
        256, integer(1), doc="Open connections from one IP on each listener (Otedama)."
    )
    invalid_ratio: float = option(
        0.5, _ratio, doc="Ban when invalid work is at least this share of an IP's work…"
    )
    invalid_min: int = option(
        50, integer(1), doc="…and at least this many invalid items (never one bad share)…"
    )
    invalid_window: float = option(
        300.0, _positive_duration, dump=dump_duration, doc="…within this window."
    )


@dataclass(frozen=True)
class FirewallConfig:
    enabled: bool = option(False, boolean, doc="Apply the whitelist and the blacklist.")
    whitelist: tuple[str, ...] = option(
        [], string_list, dump=list, doc="IPs and CIDR blocks never limited nor banned."
    )
    blacklist: tuple[str, ...] = option(
        [],
        string_list,
        dump=list,
        doc="IPs and CIDR blocks refused on every listener (federation: not dialled, DHT datagrams dropped).",
    )


@dataclass(frozen=True)
class AuditConfig:
    enabled: bool = option(False, boolean, doc="Write the audit log (JSON lines).")
    log_file: Path | None = option(
        None, optional_path, dump=dump_path, doc="Audit file (default: DATA_DIR/audit.log)."
    )


@dataclass(frozen=True)
class SecurityConfig:
    enable_tls: bool = option(
        False,
        boolean,
        doc="TLS: Stratum on `stratum.tls_address` too, HTTPS for the API, TLS on federation "
        "links (`federation.tls`).",
    )
    cert_file: Path | None = option(
        None, optional_path, dump=dump_path, doc="PEM certificate (chain, leaf first)."
    )
    key_file: Path | None = option(None, optional_path, dump=dump_path, doc="PEM private key.")
    ddos_protection: DdosConfig = section(DdosConfig)
    firewall: FirewallConfig = section(FirewallConfig)
    audit: AuditConfig = section(AuditConfig)


FEDERATION_TLS = ("auto", "off", "on", "required")


def _federation_tls(value: Any) -> str:
    # YAML 1.1 reads a bare on/off as true/false.
    if value is True:
        return "on"
    if value is False:
        return "off"
    return choice(*FEDERATION_TLS)(value)


@dataclass(frozen=True)
class FederationConfig:
    enabled: bool = option(
        False, boolean, doc="Join (or start) a federation: see docs/federation.md."
    )
    node_id: str = option("", string, doc="This node's label for operators (not its key).")
    listen_port: int = option(4444, port, doc="Gossip on TCP and the DHT on UDP, same number.")
    advertise_host: str = option(
        "",
        string,
        doc="Host name or address peers dial (gossip TCP); empty: as the bootstrap peers see it.",
    )
    bootstrap_peers: tuple[str, ...] = option(
        [], string_list, dump=list, doc="host:port of members to join through (UDP, the DHT)."
    )
    tls: str = option(
        "auto",
        _federation_tls,
        doc="TLS on gossip links: off, on (TLS and plain peers), required (TLS only); "
        "auto: on when `security.enable_tls`, else off.",
    )
    max_peers: int = option(50, integer(0), doc="Gossip links at most (inbound and outbound).")
    reputation_threshold: float = option(
        0.5, number(0, 1), doc="Peers scoring strictly below this are ignored (new: 0.5)."
    )
    share_interval: float = option(
        10.0,
        _positive_duration,
        dump=dump_duration,
        doc="Aim: one federation share from the whole federation per this interval.",
    )
    window: float = option(
        7200.0,
        _positive_duration,
        dump=dump_duration,
        doc="Federation window: verified federation shares settled in each coinbase.",
    )

    def tls_mode(self, enable_tls: bool) -> str:
        """``tls`` with ``auto`` resolved: ``on`` when the node has TLS, else ``off``."""
        if self.tls == "auto":
            return "on" if enable_tls else "off"
        return self.tls


def _metrics_path(value: Any) -> str:
    text = string(value)
    if not text.startswith("/") or " " in text:
        raise Invalid(f'expected a URL path like "/metrics", got "{text}"')
    return text


@dataclass(frozen=True)
class MetricsConfig:
    enabled: bool = option(False, boolean, doc="Serve Prometheus metrics over HTTP.")
    address: HostPort = option(
        HostPort("127.0.0.1", 9090), host_port(), dump=str, doc="Metrics endpoint address."
    )
    path: str = option("/metrics", _metrics_path, doc="URL path Prometheus scrapes.")


def _url_path(value: Any) -> str:
    text = string(value)
    if not text.startswith("/") or text == "/" or " " in text:
        raise Invalid(f'expected a URL path like "/health", got "{text}"')
    return text


@dataclass(frozen=True)
class HealthConfig:
    enabled: bool = option(False, boolean, doc="Serve the health report over HTTP.")
    address: HostPort = option(
        HostPort("127.0.0.1", 8081), host_port(), dump=str, doc="Health endpoint address."
    )
    path: str = option("/health", _url_path, doc="URL path of the JSON health report.")


@dataclass(frozen=True)
class LoggingConfig:
    level: str | None = option(
        None, _optional_log_level, doc="debug, info, warn, error; `LOG_LEVEL` overrides."
    )
    format: str = option("text", choice("text", "json"), doc="`json`: one object per line.")
    file: Path | None = option(None, optional_path, dump=dump_path, doc="Also log to this file.")
    stdout: bool = option(True, boolean, doc="Log to standard output.")
    max_size: int = option(
        100 * MB,
        size(MB),
        dump=dump_size,
        doc="Rotate the log file at this size (a bare number counts in MB, as in the guide).",
    )
    max_backups: int = option(10, integer(0), doc="Rotated files kept.")
    max_age: int = option(30, integer(0), used=False)


@dataclass(frozen=True)
class MonitoringConfig:
    metrics: MetricsConfig = section(MetricsConfig)
    health: HealthConfig = section(HealthConfig)
    logging: LoggingConfig = section(LoggingConfig)


@dataclass(frozen=True)
class OptimizationConfig:
    enable_memory_timing: bool = option(False, boolean, used=False)
    memory_timing_level: int = option(0, integer(0), used=False)
    enable_power_opt: bool = option(False, boolean, used=False)
    power_limit: int = option(100, integer(0), used=False)
    enable_thermal_opt: bool = option(False, boolean, used=False)
    target_temp: int = option(75, integer(0), used=False)
    enable_stratum_v2: bool = option(False, boolean, used=False)
    auto_optimize: bool = option(False, boolean, used=False)
    optimization_interval: float = option(3600.0, duration, dump=dump_duration, used=False)
    safety_mode: bool = option(True, boolean, used=False)


# -- Otedama's own sections ------------------------------------------------------------


@dataclass(frozen=True)
class RpcEndpointConfig:
    url: str = option("http://127.0.0.1:8332", string, doc="bitcoind JSON-RPC URL.")
    user: str | None = option(None, optional_string, doc="rpcuser.")
    password: str | None = option(None, optional_string, secret=True, doc="rpcpassword.")
    cookie_file: Path | None = option(
        None, optional_path, dump=dump_path, doc="Use bitcoind's .cookie instead of a password."
    )


def _rpc_list(value: Any) -> tuple[RpcEndpointConfig, ...]:
    if value is None:
        return ()
    if isinstance(value, Mapping):
        value = [value]
    if not isinstance(value, list):
        raise Invalid(f"expected a list of daemons ({{url, user, password}}), got {value!r}")
    problems: list[str] = []
    endpoints = []
    for index, item in enumerate(value):
        endpoint = load_section(RpcEndpointConfig, item, f"[{index}]", problems, [])
        if not endpoint.url.startswith(("http://", "https://")):
            problems.append(
                f"[{index}].url: expected an http:// or https:// URL, got {endpoint.url!r}"
            )
        if endpoint.password and endpoint.cookie_file:
            problems.append(f"[{index}]: give either password or cookie_file, not both")
        endpoints.append(endpoint)
    if problems:
        raise ConfigError(problems)
    return tuple(endpoints)


def _dump_rpc(endpoints: tuple[RpcEndpointConfig, ...]) -> list[Any]:
    return list(endpoints)


@dataclass(frozen=True)
class WalletConfig:
    """The payout wallet; without ``url`` it is the wallet of the first ``chain.rpc`` daemon."""

    url: str | None = option(
        None, optional_string, doc="The wallet daemon's JSON-RPC URL (default: the chain's)."
    )
    user: str | None = option(None, optional_string, doc="rpcuser of the wallet daemon.")
    password: str | None = option(
        None, optional_string, secret=True, doc="rpcpassword of the wallet daemon."
    )
    cookie_file: Path | None = option(
        None, optional_path, dump=dump_path, doc="The wallet daemon's .cookie instead."
    )
    name: str | None = option(
        None, optional_string, doc="A loaded wallet's name (default: the daemon's default)."
    )


_ZMQ_ADDRESS = re.compile(r"(tcp://(\[[0-9a-fA-F:.]+\]|[^:/\s]+):(\d{1,5}|\*)|ipc://\S+)")


def _zmq_address(value: Any) -> str | None:
    text = optional_string(value)
    if text is None or text == "":
        return None
    if not _ZMQ_ADDRESS.fullmatch(text):
        raise Invalid(f'expected a ZMQ address like "tcp://127.0.0.1:28332", got "{text}"')
    return text


def _zmq_option(topic: str) -> Any:
    return option(
        None,
        _zmq_address,
        doc=f"Publish Core's {topic} notifications here (like -zmqpub{topic}); off if unset.",
    )


@dataclass(frozen=True)
class DevnetConfig:
    listen: HostPort = option(
        HostPort("127.0.0.1", 18443),
        host_port("127.0.0.1"),
        dump=str,
        doc="The embedded chain's JSON-RPC address.",
    )
    difficulty: Fraction = option(
        Fraction(1, 1000), difficulty, dump=dump_fraction, doc="Network difficulty of the devnet."
    )
    data_dir: Path = option(
        Path("./data/devnet"), path, dump=dump_path, doc="Where the devnet keeps its chain."
    )
    rpc_user: str | None = option(
        None, optional_string, doc="Require this user (with rpc_password), like rpcuser."
    )
    rpc_password: str | None = option(
        None, optional_string, secret=True, doc="The password for rpc_user, like rpcpassword."
    )
    rpc_cookie: bool = option(
        False, boolean, doc="Require the .cookie Core-style auth written in data_dir at start."
    )
    zmq_pub_hashblock: str | None = _zmq_option("hashblock")
    zmq_pub_rawblock: str | None = _zmq_option("rawblock")
    zmq_pub_hashtx: str | None = _zmq_option("hashtx")
    zmq_pub_rawtx: str | None = _zmq_option("rawtx")
    zmq_pub_sequence: str | None = _zmq_option("sequence")
    chain_name: str = option(
        "devnet",
        choice("devnet", "regtest"),
        doc="The chain getblockchaininfo reports; regtest for other software (otedama devnet).",
    )
    reported_connections: int = option(
        0,
        integer(0, 125),
        doc="Peer count getnetworkinfo reports (it has none); 1 for Miningcore, which waits.",
    )

    def zmq_endpoints(self) -> dict[str, str]:
        """Core's topic -> address for every configured ZMQ publisher."""
        topics = ("hashblock", "rawblock", "hashtx", "rawtx", "sequence")
        pairs = ((t, getattr(self, f"zmq_pub_{t}")) for t in topics)
        return {topic: address for topic, address in pairs if address}


@dataclass(frozen=True)
class ChainConfig:
    coin: str = option("bitcoin", choice("bitcoin"), doc="bitcoin (sha256d); litecoin later.")
    network: str = option("devnet", choice(*NETWORKS), doc="mainnet, testnet, …, devnet.")
    backend: str = option(
        "devnet", choice("devnet", "bitcoind"), doc="devnet (embedded) or bitcoind."
    )
    rpc: tuple[RpcEndpointConfig, ...] = option(
        [], _rpc_list, dump=_dump_rpc, doc="Daemons, tried in order (failover)."
    )
    poll_interval: float = option(
        5.0,
        duration,
        dump=dump_duration,
        doc="Template poll when long polling is unavailable; the longest back-off after a "
        "failed template request.",
    )
    rpc_timeout: float = option(30.0, duration, dump=dump_duration, doc="Per-call RPC timeout.")
    devnet: DevnetConfig = section(DevnetConfig)
    wallet: WalletConfig = section(WalletConfig, doc="The payout wallet (default: the chain's).")


@dataclass(frozen=True)
class Config:
    """The whole node configuration."""

    app: AppConfig = section(AppConfig)
    server: ServerConfig = section(ServerConfig, used=False)
    mining: MiningConfig = section(MiningConfig)
    pool: PoolConfig = section(PoolConfig)
    stratum: StratumConfig = section(StratumConfig)
    api: ApiConfig = section(ApiConfig)
    database: DatabaseConfig = section(DatabaseConfig)
    redis: RedisConfig = section(
        RedisConfig, doc="Optional: rate limits and events shared by several nodes."
    )
    security: SecurityConfig = section(SecurityConfig)
    federation: FederationConfig = section(FederationConfig)
    monitoring: MonitoringConfig = section(MonitoringConfig)
    optimization: OptimizationConfig = section(OptimizationConfig, used=False)
    chain: ChainConfig = section(ChainConfig)
    #: Keys present in the file that this version does not act on (warned once).
    unused: tuple[str, ...] = field(default=(), compare=False)
    #: The file this was read from.
    source: Path | None = field(default=None, compare=False)

    @property
    def log_level(self) -> str:
        return self.monitoring.logging.level or self.app.log_level

    @property
    def database_url(self) -> str:
        return self.database.effective_url(self.app.data_dir)

    @property
    def database_pool_size(self) -> int:
        return self.database.effective_pool_size(self.database_url)

    @property
    def payout_address(self) -> str:
        """The pool's coinbase address: wallet_address, or the devnet's own on devnet."""
        return self.pool.wallet_address or DEVNET_POOL_ADDRESS

    @property
    def fee_basis_points(self) -> int:
        return int(self.pool.fee_percentage * 100)

    def unused_warnings(self) -> list[str]:
        return [f"{key} is not used by this version" for key in self.unused]


# -- loading ---------------------------------------------------------------------------

ENV_OVERRIDES = {
    "DATABASE_URL": ("database", "url"),
    "REDIS_URL": ("redis", "url"),
    "LOG_LEVEL": ("monitoring", "logging", "level"),
    "OTEDAMA_MODE": ("app", "mode"),
}


def read_yaml(source: Path) -> Any:
    """Read a YAML file; every failure becomes a ConfigError that names the file."""
    try:
        text = source.read_text(encoding="utf-8")
    except FileNotFoundError:
        raise ConfigError([f"{source}: no such config file"]) from None
    except OSError as error:
        raise ConfigError([f"{source}: cannot read it ({error.strerror})"]) from None
    except UnicodeDecodeError as error:
        raise ConfigError([f"{source}: not UTF-8 text (byte {error.start})"]) from None
    try:
        return _load_yaml(text)
    except RecursionError:
        raise ConfigError([f"{source}: not valid YAML: nested too deeply"]) from None
    except yaml.YAMLError as error:
        mark = getattr(error, "problem_mark", None)
        where = f" at line {mark.line + 1}, column {mark.column + 1}" if mark else ""
        problem = getattr(error, "problem", None) or str(error)
        raise ConfigError([f"{source}: not valid YAML{where}: {problem}"]) from None


#: libyaml's parser when PyYAML has it (its wheels do): linear in the input and bounded in
#: nesting depth, where the pure-Python scanner takes seconds on a few KB of ``[[[[``.
_BaseLoader: Any = getattr(yaml, "CSafeLoader", yaml.SafeLoader)


class _StrictLoader(_BaseLoader):  # type: ignore[misc]
    """``yaml.SafeLoader`` that refuses duplicate keys and over-long whole numbers.

    With the plain loader a second ``stratum:`` section silently replaces the first; and
    a whole number of thousands of digits makes the int constructor raise ValueError.
    """

    def construct_document(self, node: yaml.Node) -> Any:
        _refuse_duplicate_keys(node, "", set())
        return super().construct_document(node)

    def construct_yaml_int(self, node: yaml.ScalarNode) -> int:
        if len(node.value) > MAX_NUMBER_TEXT:
            raise yaml.constructor.ConstructorError(
                None,
                None,
                f"a number of {len(node.value)} characters (at most {MAX_NUMBER_TEXT})",
                node.start_mark,
            )
        result: int = super().construct_yaml_int(node)
        return result


_StrictLoader.add_constructor("tag:yaml.org,2002:int", _StrictLoader.construct_yaml_int)


def _refuse_duplicate_keys(node: yaml.Node, where: str, seen: set[int]) -> None:
    """Raise at the second of two equal keys in any mapping, naming its path and lines."""
    if id(node) in seen:  # an alias of a node already walked
        return
    seen.add(id(node))
    if isinstance(node, yaml.SequenceNode):
        for index, item in enumerate(node.value):
            _refuse_duplicate_keys(item, f"{where}[{index}]", seen)
        return
    if not isinstance(node, yaml.MappingNode):
        return
    first_at: dict[tuple[str, Any], yaml.Node] = {}
    for key_node, value_node in node.value:
        if isinstance(key_node, yaml.ScalarNode) and not key_node.tag.endswith(":merge"):
            path_ = f"{where}.{key_node.value}" if where else str(key_node.value)
            first = first_at.setdefault((key_node.tag, key_node.value), key_node)
            if first is not key_node:
                raise yaml.constructor.ConstructorError(
                    None,
                    None,
                    f'duplicate key "{path_}" (first at line {first.start_mark.line + 1}, '
                    f"again at line {key_node.start_mark.line + 1})",
                    key_node.start_mark,
                )
            _refuse_duplicate_keys(value_node, path_, seen)
        else:
            _refuse_duplicate_keys(value_node, where, seen)


def _load_yaml(text: str) -> Any:
    loader = _StrictLoader(text)
    try:
        return loader.get_single_data()
    finally:
        loader.dispose()


def load_config(
    source: str | os.PathLike[str] | None = None,
    *,
    data: Any = None,
    env: Mapping[str, str] | None = None,
) -> Config:
    """Load, override from the environment, and validate; raise ConfigError listing all."""
    env = os.environ if env is None else env
    source_path = Path(source) if source is not None else None
    if data is None:
        data = read_yaml(source_path) if source_path is not None else {}
    if data is None:
        data = {}
    if not isinstance(data, dict):
        raise ConfigError([f"{source_path or 'config'}: expected a mapping of sections"])
    data = _apply_env(data, env)
    problems: list[str] = []
    unused: list[str] = []
    config = load_section(Config, data, "", problems, unused)
    problems.extend(_cross_checks(config))
    if problems:
        raise ConfigError(problems)
    config = _with_mode_defaults(config, data)
    return replace(config, unused=tuple(unused), source=source_path)


def _apply_env(data: dict[str, Any], env: Mapping[str, str]) -> dict[str, Any]:
    result = {key: value for key, value in data.items()}
    for variable, keys in ENV_OVERRIDES.items():
        value = env.get(variable)
        if not value:
            continue
        node = result
        for key in keys[:-1]:
            child = node.get(key)
            child = dict(child) if isinstance(child, Mapping) else {}
            node[key] = child
            node = child
        node[keys[-1]] = value
    return result


def _with_mode_defaults(config: Config, data: Mapping[str, Any]) -> Config:
    app_data = data.get("app")
    level_given = isinstance(app_data, Mapping) and "log_level" in app_data
    if config.app.mode == "development" and not level_given and not config.monitoring.logging.level:
        return replace(config, app=replace(config.app, log_level="debug"))
    return config


def _wallet_problems(wallet: WalletConfig) -> list[str]:
    if wallet.url is None:
        given = [key for key in ("user", "password", "cookie_file") if getattr(wallet, key)]
        return [f"chain.wallet.{key}: needs chain.wallet.url (the wallet daemon)" for key in given]
    problems = []
    if not wallet.url.startswith(("http://", "https://")):
        problems.append(
            f"chain.wallet.url: expected an http:// or https:// URL, got {wallet.url!r}"
        )
    if wallet.password and wallet.cookie_file:
        problems.append("chain.wallet: give either password or cookie_file, not both")
    return problems


def _cross_checks(config: Config) -> list[str]:
    problems: list[str] = []
    chain = config.chain
    if chain.backend == "devnet" and chain.network != "devnet":
        problems.append(
            f'chain.network: the devnet backend runs network "devnet", got "{chain.network}" '
            "(set chain.backend: bitcoind for other networks)"
        )
    if chain.backend == "devnet" and chain.devnet.listen.port == 0:
        problems.append(
            "chain.devnet.listen: the embedded devnet needs a fixed port (the pool connects to it)"
        )
    if config.mining.enable_cpu and config.stratum.address.port == 0:
        problems.append(
            "mining.enable_cpu: the built-in miner needs a fixed stratum.address port, got 0"
        )
    if chain.backend == "bitcoind" and chain.network == "devnet" and not chain.rpc:
        problems.append("chain.rpc: a bitcoind backend on devnet needs the devnet's RPC address")
    if chain.backend == "bitcoind" and not chain.rpc:
        problems.append("chain.rpc: the bitcoind backend needs at least one daemon {url, user, …}")
    problems.extend(_wallet_problems(chain.wallet))
    devnet = chain.devnet
    if bool(devnet.rpc_user) != bool(devnet.rpc_password):
        problems.append("chain.devnet: rpc_user and rpc_password go together (give both)")
    stratum = config.stratum
    if stratum.min_difficulty > stratum.max_difficulty:
        problems.append(
            f"stratum.min_difficulty: {dump_fraction(stratum.min_difficulty)} is above "
            f"stratum.max_difficulty {dump_fraction(stratum.max_difficulty)}"
        )
    if not stratum.min_difficulty <= stratum.share_difficulty <= stratum.max_difficulty:
        problems.append(
            f"stratum.share_difficulty: {dump_fraction(stratum.share_difficulty)} is outside "
            f"stratum.min_difficulty..max_difficulty ({dump_fraction(stratum.min_difficulty)} "
            f".. {dump_fraction(stratum.max_difficulty)})"
        )
    problems.extend(_address_checks(config))
    problems.extend(_security_checks(config))
    if config.federation.enabled and config.pool.rewards.system.upper() == "SOLO":
        problems.append(
            "federation.enabled: a federation splits every coinbase between its nodes, so "
            'pool.rewards.system "SOLO" (the finder paid in the coinbase) cannot take part; '
            'use "PPLNS" or "PROP", or disable the federation'
        )
    return problems


def _security_checks(config: Config) -> list[str]:
    from otedama.ops.firewall import Firewall, FirewallError

    problems: list[str] = []
    firewall = config.security.firewall
    try:
        Firewall.from_lists(firewall.whitelist, firewall.blacklist)
    except FirewallError as error:
        problems.append(str(error))
    federation_tls = config.federation.tls
    if config.federation.enabled and federation_tls in ("on", "required"):
        if not config.security.enable_tls:
            problems.append(
                f'federation.tls: "{federation_tls}" needs the node\'s certificate: set '
                "security.enable_tls, cert_file and key_file (or federation.tls: off)"
            )
    if config.security.enable_tls and config.stratum.enable:
        if config.stratum.tls_address == config.stratum.address:
            problems.append(
                f"stratum.tls_address: {config.stratum.tls_address} is also stratum.address; "
                "TLS needs its own port"
            )
    return problems


def _address_checks(config: Config) -> list[str]:
    from otedama.chain.address import AddressError, address_to_script
    from otedama.chain.params import get_network

    network = get_network(config.chain.network)
    problems: list[str] = []
    wallet = config.pool.wallet_address
    if not wallet and config.chain.network != "devnet":
        problems.append(
            "pool.wallet_address: required — the address that receives the pool's coinbase "
            f"({config.chain.network} format)"
        )
    for key, value in (
        ("pool.wallet_address", wallet),
        ("pool.fee_address", config.pool.fee_address),
    ):
        if not value or is_placeholder(value):
            continue  # money_risks names a placeholder (and the start refuses it)
        try:
            address_to_script(value, network)
        except AddressError as error:
            problems.append(f'{key}: "{value}" is not a {config.chain.network} address: {error}')
    return problems


# -- configs that lose money -----------------------------------------------------------

#: Networks whose coins are worth something (or are shared with strangers): a config that
#: would pay an example address or use a placeholder secret there is refused at start.
PUBLIC_NETWORKS = ("mainnet", "testnet", "testnet4", "signet")

#: Last parts of the keys that hold passwords.
_SECRET_KEYS = frozenset({"password", "token", "secret"})

#: Keys whose value is an address the node pays.
ADDRESS_KEYS = ("pool.wallet_address", "pool.fee_address")

#: Values that are obviously placeholders (the whole value must match, so a pool named
#: "Replacement" or "Your Pool" is not one): ``REPLACE…``, ``your_…``, ``<…>``, ``changeme``.
_PLACEHOLDER = re.compile(
    r"replace(?:[_\-\s].*|me)?|your[_\-].*|<[^<>]*>|change[_\-\s]?(?:me|this|it)|x{3,}"
    r"|todo|fixme|tbd|placeholder",
    re.IGNORECASE | re.DOTALL,
)
#: Words that are placeholders as a password (a database user may well be "admin").
_PLACEHOLDER_SECRETS = frozenset(
    {"password", "secret", "pass", "admin", "default", "example", "dummy", "test", "1234"}
)


def is_placeholder(value: str, *, secret: bool = False) -> bool:
    """Whether ``value`` is a stand-in someone forgot to replace (``REPLACE_ME``, …).

    With ``secret`` (a password), the usual stand-in words count too.
    """
    text = value.strip()
    if _PLACEHOLDER.fullmatch(text) is not None:
        return True
    return secret and text.lower() in _PLACEHOLDER_SECRETS


#: Generator point of secp256k1: the public key of private key 1, which everyone knows.
_G_X = bytes.fromhex("79be667ef9dcbbac55a06295ce870b07029bfcdb2dce28d959f2815b16f81798")
_G_Y = bytes.fromhex("483ada7726a3c4655da4fbfc0e1108a8fd17b448a68554199c47d08ffb10d4b8")
#: Witness programs of the BIP173/BIP350 test vectors that are not derived from key 1.
_VECTOR_PROGRAMS = (
    (0, "000000c4a5cad46221b2a187905e5266362b99d5e91c6ce24d165dab93e86433"),
    (1, "000000c4a5cad46221b2a187905e5266362b99d5e91c6ce24d165dab93e86433"),
    (1, "751e76e8199196d454941c45d1b3a323f1433bd6751e76e8199196d454941c45d1b3a323f1433bd6"),
    (2, "751e76e8199196d454941c45d1b3a323"),
    (16, "751e"),
)


@functools.cache
def example_scripts() -> frozenset[bytes]:
    """scriptPubKeys anyone can spend from or that only exist as test vectors.

    Every standard script of private key 1 (P2PK in P2WSH, P2PKH compressed and
    uncompressed, P2WPKH, P2SH-P2WPKH, P2TR with the untweaked key) and the other
    BIP173/BIP350 witness programs. Compared as scripts, so every network's spelling of
    them (``bc1…``, ``tb1…``, ``bcrt1…``, ``1…``, ``m…``, ``3…``) is caught.
    """
    from otedama.chain.address import witness_script
    from otedama.chain.hashing import hash160

    compressed = (b"\x03" if _G_Y[-1] & 1 else b"\x02") + _G_X
    uncompressed = b"\x04" + _G_X + _G_Y
    p2wpkh = witness_script(0, hash160(compressed))
    scripts = {
        p2wpkh,
        b"\x76\xa9\x14" + hash160(compressed) + b"\x88\xac",
        b"\x76\xa9\x14" + hash160(uncompressed) + b"\x88\xac",
        b"\xa9\x14" + hash160(p2wpkh) + b"\x87",
        witness_script(0, hashlib.sha256(b"\x21" + compressed + b"\xac").digest()),
        witness_script(1, _G_X),
    }
    scripts.update(witness_script(v, bytes.fromhex(program)) for v, program in _VECTOR_PROGRAMS)
    return frozenset(scripts)


@dataclass(frozen=True)
class MoneyRisk:
    """A config value that would lose money or expose the node; ``refuse``: do not start."""

    key: str
    message: str
    refuse: bool

    def __str__(self) -> str:
        return f"{self.key}: {self.message}"


def money_risks(config: Config) -> list[MoneyRisk]:
    """Example addresses and placeholders left in ``config``, each naming its key.

    On a public network (mainnet, testnet, testnet4, signet) every one refuses the start;
    elsewhere they are warnings, except a placeholder address, which no network can pay.
    """
    public = config.chain.network in PUBLIC_NETWORKS
    risks: list[MoneyRisk] = []
    for key, value in _strings(dump_section(config, sanitize=False), ""):
        if key in ADDRESS_KEYS:
            risk = _address_risk(key, value, config.chain.network)
            if risk is not None:
                risks.append(MoneyRisk(key, risk, public or is_placeholder(value)))
            continue
        if key.endswith(".url"):
            password = urlsplit(value).password if "://" in value else None
            if password is not None and is_placeholder(password, secret=True):
                risks.append(
                    MoneyRisk(key, "the password in this URL is a placeholder; set it", public)
                )
            continue
        if is_placeholder(value, secret=key.rsplit(".", 1)[-1] in _SECRET_KEYS):
            risks.append(MoneyRisk(key, f'"{value}" is a placeholder; set the real value', public))
    return risks


def refused_start(config: Config) -> list[str]:
    """The problems that keep a node with ``config`` from starting (empty: start):
    money risks, TLS files that are missing, unreadable or do not match, and (with the
    federation on) a node key that others can read or that is damaged."""
    from otedama.federation.identity import key_file_problem
    from otedama.ops.tls import check_tls_files

    problems = [
        f"{risk} (refused on {config.chain.network})" for risk in money_risks(config) if risk.refuse
    ] + check_tls_files(config)
    if config.federation.enabled:
        key_problem = key_file_problem(config.app.data_dir)
        if key_problem is not None:
            problems.append(f"federation.enabled: {key_problem}")
    return problems


def _strings(data: Any, where: str) -> list[tuple[str, str]]:
    if isinstance(data, Mapping):
        found: list[tuple[str, str]] = []
        for key, value in data.items():
            found.extend(_strings(value, f"{where}.{key}" if where else str(key)))
        return found
    if isinstance(data, list):
        return [pair for i, item in enumerate(data) for pair in _strings(item, f"{where}[{i}]")]
    return [(where, data)] if isinstance(data, str) and data else []


def _address_risk(key: str, value: str, network: str) -> str | None:
    from otedama.chain.address import AddressError, address_to_script

    if is_placeholder(value):
        return f'"{value}" is a placeholder; set the address whose key you hold'
    try:
        script = address_to_script(value, network)
    except AddressError:
        return None  # already a config error
    if script in example_scripts():
        return (
            f"{value} is a well-known example address (a BIP173/BIP350 test vector or "
            "private key 1, whose key is public): anyone can take what is paid to it; "
            "set an address whose key you hold"
        )
    return None


# -- the start summary -----------------------------------------------------------------


def _without_password(url: str) -> str:
    """``url`` with any password removed (not masked: the summary says nothing of it)."""
    parts = urlsplit(url)
    if parts.password is None:
        return url
    userinfo, host = parts.netloc.rsplit("@", 1)
    return urlunsplit(parts._replace(netloc=f"{userinfo.split(':', 1)[0]}@{host}"))


def start_summary(config: Config) -> str:
    """One line saying what the node is about to run, for the log at start. No secrets."""
    chain = config.chain
    if chain.backend == "devnet":
        backend = f"embedded devnet on {chain.devnet.listen}"
    else:
        first = chain.rpc[0] if chain.rpc else None
        backend = f"bitcoind at {_without_password(first.url)}" if first else "bitcoind"
        if first is not None and first.cookie_file:
            backend += " (cookie)"
        if len(chain.rpc) > 1:
            backend += f" (+{len(chain.rpc) - 1} failover)"
    pool = config.pool
    rewards = pool.rewards.system
    if rewards == "PPLNS":
        rewards += f" over {dump_duration(pool.rewards.window)}"
    fee = f"fee {pool.fee_percentage} %"
    if pool.fee_address:
        fee += f" to {pool.fee_address}"
    tls = config.security.enable_tls
    listeners = []
    if config.stratum.enable:
        listeners.append(f"stratum {config.stratum.address}")
        if tls:
            listeners.append(f"stratum-tls {config.stratum.tls_address}")
    if config.api.enable:
        listeners.append(f"api {config.api.address}" + (" (https)" if tls else ""))
    if config.monitoring.health.enabled:
        listeners.append(f"health {config.monitoring.health.address}")
    if config.monitoring.metrics.enabled:
        listeners.append(f"metrics {config.monitoring.metrics.address}")
    if config.federation.enabled:
        listeners.append(f"federation 0.0.0.0:{config.federation.listen_port} (tcp, udp)")
    miner = "; built-in CPU miner on" if config.mining.enable_cpu else ""
    return (
        f"starting {config.app.name}: network {chain.network}; chain {backend}; "
        f"database {_without_password(config.database_url)}; "
        f"pool address {config.payout_address}; rewards {rewards}, {fee}; "
        f"payouts every {dump_duration(pool.payout_interval)}, minimum "
        f"{dump_coins(pool.minimum_payout)}; "
        f"listening on {', '.join(listeners) or 'nothing'}{miner}"
    )


# -- export ----------------------------------------------------------------------------


def mask_url(url: str) -> str:
    """Hide the password in ``scheme://user:password@host/…``."""
    parts = urlsplit(url)
    if parts.password is None:
        return url
    netloc = parts.netloc.rsplit("@", 1)
    userinfo = netloc[0].split(":", 1)[0]
    return urlunsplit(parts._replace(netloc=f"{userinfo}:{MASK}@{netloc[1]}"))


def export_config(config: Config, *, sanitize: bool) -> str:
    """The effective config as YAML; with ``sanitize`` every secret is masked."""
    data = dump_section(config, sanitize=sanitize)
    if sanitize:
        for section_name in ("database", "redis"):
            url = data[section_name].get("url")
            if url:
                data[section_name]["url"] = mask_url(url)
    header = "# Effective Otedama configuration"
    if config.source is not None:
        header += f" (from {config.source}, environment overrides applied)"
    if sanitize:
        header += "; secrets masked"
    return header + "\n" + yaml.safe_dump(data, sort_keys=False, default_flow_style=False)


def reference_markdown() -> str:
    """The key reference of docs/configuration.md: every key, default, meaning."""
    from otedama.configschema import iter_keys

    lines = ["| key | default | meaning |", "|---|---|---|"]
    for key, default, spec, doc in iter_keys(Config):
        if key in ("unused", "source"):
            continue
        if spec is None:
            lines.append(f"| **`{key}`** | | {doc or 'section'} |")
            continue
        shown = spec.dump(default)
        if isinstance(shown, bool):
            shown = "true" if shown else "false"
        if isinstance(shown, list | tuple):
            shown = "[]" if not shown else ", ".join(map(str, shown))
        shown_text = "—" if shown in (None, "") else f"`{shown}`"
        meaning = doc or ""
        if not spec.used:
            meaning = (meaning + " " if meaning else "") + "*Accepted; not used by this version.*"
        if spec.secret:
            meaning += " Masked by `config export --sanitize`."
        lines.append(f"| `{key}` | {shown_text} | {meaning} |")
    return "\n".join(lines) + "\n"

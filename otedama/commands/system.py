"""``otedama system check`` and ``otedama system report``: is this machine ready, and what is it.

``check`` runs each check without a reactor and prints ``ok``, ``warn`` or ``fail`` with
the reason; it exits 0 when everything is ok, 1 with warnings, 2 with a failure.
``report`` prints versions, the OS, the sanitized config, the checks, the running node's
health and the ledger's stats, as text to paste into an issue.
"""

from __future__ import annotations

import argparse
import base64
import ctypes
import ctypes.util
import errno
import importlib.metadata
import json
import os
import platform
import re
import resource
import socket
import sys
import time
import urllib.error
import urllib.request
from collections.abc import Callable, Iterator
from dataclasses import dataclass
from pathlib import Path
from typing import Any

from otedama import __version__
from otedama.commands.common import (
    add_config_argument,
    config_path,
    read_health_report,
    usage_of,
)
from otedama.config import Config, ConfigError, export_config, load_config, money_risks

__all__ = [
    "CheckResult",
    "fetch_health",
    "health_url",
    "ledger_stats",
    "register",
    "run_checks",
    "system_report",
]

OK, WARN, FAIL = "ok", "warn", "fail"
_EXIT = {OK: 0, WARN: 1, FAIL: 2}
#: Oldest Python this version runs on.
MIN_PYTHON = (3, 11)
#: File descriptors the node needs besides one per miner (database, logs, peers, HTTP).
FD_HEADROOM = 1024
#: The packages whose versions the report lists.
KEY_PACKAGES = (
    "twisted",
    "treq",
    "sqlalchemy",
    "alembic",
    "psycopg2-binary",
    "prometheus_client",
    "txredisapi",
    "kademlia",
    "pynacl",
    "msgpack",
    "pyyaml",
)


def register(subparsers: Any) -> None:
    """Add ``system check`` and ``system report``."""
    system = subparsers.add_parser("system", help="check this machine; report it for support")
    system.set_defaults(func=lambda args: usage_of(system))
    commands = system.add_subparsers(dest="system_command", metavar="COMMAND")
    check = commands.add_parser(
        "check", help="ok / warn / fail per check (exit 0 ok, 1 warnings, 2 failures)"
    )
    add_config_argument(check)
    check.add_argument("--timeout", type=float, default=5.0, help="seconds per network check")
    check.set_defaults(func=system_check)
    report = commands.add_parser("report", help="versions, OS, sanitized config, health, stats")
    add_config_argument(report)
    report.add_argument("--timeout", type=float, default=5.0, help="seconds per network check")
    report.set_defaults(func=lambda args: _print(system_report(args)))


def _print(text: str) -> int:
    print(text)
    return 0


@dataclass(frozen=True)
class CheckResult:
    """One check: its name, ``ok`` / ``warn`` / ``fail``, and why."""

    name: str
    status: str
    reason: str

    def line(self) -> str:
        return f"{self.status:<4}  {self.name:<10}  {self.reason}"


def system_check(args: argparse.Namespace) -> int:
    results = run_checks(config_path(args), args.timeout)
    for result in results:
        print(result.line())
    worst = max((_EXIT[r.status] for r in results), default=0)
    summary = {0: "all checks passed", 1: "warnings", 2: "failures"}[worst]
    print(f"system check: {summary}")
    return worst


def run_checks(path: str, timeout: float = 5.0) -> list[CheckResult]:
    """Every check, in order; the ones that need the config are skipped without it."""
    results = [python_check(), packages_check()]
    try:
        config = load_config(path)
    except ConfigError as error:
        results.append(CheckResult("config", FAIL, f"{path}: " + "; ".join(error.problems)))
        return results
    results.append(config_check(config, path))
    for check in (database_check, chain_check, ports_check, data_dir_check, fd_check):
        try:
            results.extend(check(config, timeout))
        except Exception as error:  # one broken check must not hide the others
            name = check.__name__.removesuffix("_check")
            results.append(CheckResult(name, FAIL, f"the check itself failed: {error!r}"))
    results.append(clock_check())
    return results


# -- the checks -------------------------------------------------------------------------


def python_check() -> CheckResult:
    version = platform.python_version()
    if sys.version_info[:2] < MIN_PYTHON:
        needed = ".".join(map(str, MIN_PYTHON))
        return CheckResult("python", FAIL, f"Python {version}; Otedama needs {needed} or newer")
    return CheckResult("python", OK, f"Python {version} ({sys.executable})")


def _requirements() -> Iterator[str]:
    for requirement in importlib.metadata.requires("otedama") or []:
        if "extra ==" in requirement:
            continue
        name = re.split(r"[ <>=!~;\[(]", requirement, maxsplit=1)[0]
        if name:
            yield name


def packages_check() -> CheckResult:
    missing = []
    found = []
    for name in _requirements():
        try:
            found.append(f"{name} {importlib.metadata.version(name)}")
        except importlib.metadata.PackageNotFoundError:
            missing.append(name)
    if missing:
        return CheckResult(
            "packages", FAIL, f"missing: {', '.join(missing)}; reinstall otedama (pip install .)"
        )
    return CheckResult("packages", OK, f"otedama {__version__}; {len(found)} requirements present")


def config_check(config: Config, path: str) -> CheckResult:
    risks = money_risks(config)
    refused = [str(r) for r in risks if r.refuse]
    if refused:
        return CheckResult(
            "config", FAIL, f"{path}: the node refuses to start: " + "; ".join(refused)
        )
    warnings = [str(r) for r in risks] + config.unused_warnings()
    if warnings:
        return CheckResult("config", WARN, f"{path}: " + "; ".join(warnings))
    return CheckResult("config", OK, f"{path} is valid (network {config.chain.network})")


def database_check(config: Config, timeout: float) -> list[CheckResult]:
    from otedama.ledger import db

    url = config.database_url
    migrate = f"otedama migrate up --config {config.source or '<file>'}"
    missing = _missing_sqlite_file(url)
    if missing is not None:
        return [CheckResult("database", FAIL, f"{missing} does not exist; run: {migrate}")]
    try:
        engine = db.make_engine(url, pool_size=1)
    except db.DatabaseError as error:
        return [CheckResult("database", FAIL, str(error))]
    try:
        with engine.connect() as connection:
            state = db.migration_state(connection)
    except Exception as error:
        return [CheckResult("database", FAIL, f"{db.redact(url)}: {db.describe_error(error, url)}")]
    finally:
        engine.dispose()
    if not state.is_current:
        return [
            CheckResult(
                "database",
                FAIL,
                f"{db.redact(url)}: {state.describe()}; run: {migrate}",
            )
        ]
    return [CheckResult("database", OK, f"{db.redact(url)}: schema current")]


def _missing_sqlite_file(url: str) -> str | None:
    """The SQLite file ``url`` names when it does not exist (a check must not create it)."""
    from sqlalchemy.engine import make_url

    parsed = make_url(url)
    if parsed.get_backend_name() != "sqlite" or parsed.database in (None, "", ":memory:"):
        return None
    path = Path(parsed.database)
    return None if path.exists() else str(path)


def _rpc(url: str, authorization: bytes | None, method: str, timeout: float) -> Any:
    body = json.dumps({"jsonrpc": "1.0", "id": 1, "method": method, "params": []}).encode()
    request = urllib.request.Request(url, data=body, headers={"Content-Type": "application/json"})
    if authorization is not None:
        request.add_header("Authorization", authorization.decode())
    try:
        with urllib.request.urlopen(request, timeout=timeout) as reply:
            answer = json.loads(reply.read())
    except urllib.error.HTTPError as error:
        if error.code in (401, 403):
            raise PermissionError(f"HTTP {error.code}: check the RPC credentials") from None
        answer = json.loads(error.read() or b"{}")
    if answer.get("error"):
        raise RuntimeError(f"{method}: {answer['error']}")
    return answer.get("result")


def chain_check(config: Config, timeout: float) -> list[CheckResult]:
    from otedama.node.chainview import chain_name

    chain = config.chain
    wanted = chain_name(chain.network)
    if chain.backend == "devnet":
        listen = chain.devnet.listen
        host = "127.0.0.1" if listen.host in ("", "0.0.0.0") else listen.host
        try:
            info = _rpc(f"http://{host}:{listen.port}/", None, "getblockchaininfo", timeout)
        except (OSError, ValueError, RuntimeError):
            return [CheckResult("chain", OK, "embedded devnet (it starts with the node)")]
        return [CheckResult("chain", OK, f"embedded devnet answers at height {info['blocks']}")]
    if not chain.rpc:
        return [CheckResult("chain", FAIL, "chain.backend is bitcoind but chain.rpc is empty")]
    results = []
    for endpoint in chain.rpc:
        name = f"bitcoind {endpoint.url}"
        try:
            authorization = None
            if endpoint.cookie_file:
                cookie = Path(endpoint.cookie_file).read_text(encoding="utf-8").strip()
                authorization = b"Basic " + base64.b64encode(cookie.encode())
            elif endpoint.user and endpoint.password:
                pair = f"{endpoint.user}:{endpoint.password}".encode()
                authorization = b"Basic " + base64.b64encode(pair)
            info = _rpc(endpoint.url, authorization, "getblockchaininfo", timeout)
        except Exception as error:
            results.append(CheckResult("chain", FAIL, f"{name}: no answer ({error})"))
            continue
        if info.get("chain") != wanted:
            results.append(
                CheckResult(
                    "chain",
                    FAIL,
                    f"{name} runs chain {info.get('chain')!r}; chain.network "
                    f"{chain.network} needs {wanted!r}",
                )
            )
        elif info.get("initialblockdownload"):
            results.append(
                CheckResult(
                    "chain",
                    WARN,
                    f"{name}: initial block download at {info.get('blocks')} of "
                    f"{info.get('headers')}; the node waits for it",
                )
            )
        else:
            results.append(CheckResult("chain", OK, f"{name}: {wanted} at {info.get('blocks')}"))
    return results


def _listeners(config: Config) -> list[tuple[str, str, int]]:
    found = []
    if config.stratum.enable:
        found.append(("stratum", config.stratum.address.host, config.stratum.address.port))
    for name, toggle in (
        ("health", config.monitoring.health),
        ("metrics", config.monitoring.metrics),
    ):
        if toggle.enabled:
            found.append((name, toggle.address.host, toggle.address.port))
    if config.chain.backend == "devnet":
        listen = config.chain.devnet.listen
        found.append(("devnet", listen.host, listen.port))
    return [(name, host, port) for name, host, port in found if port]


def ports_check(config: Config, timeout: float) -> list[CheckResult]:
    running = isinstance(fetch_health(config, timeout), dict)
    results = []
    for name, host, port in _listeners(config):
        where = f"{name} {host or '*'}:{port}"
        family = socket.AF_INET6 if ":" in host else socket.AF_INET
        with socket.socket(family, socket.SOCK_STREAM) as sock:
            sock.setsockopt(socket.SOL_SOCKET, socket.SO_REUSEADDR, 1)
            try:
                sock.bind((host or "", port))
            except OSError as error:
                if error.errno != errno.EADDRINUSE:
                    results.append(CheckResult("ports", FAIL, f"{where}: {error.strerror}"))
                elif running:
                    results.append(CheckResult("ports", OK, f"{where}: in use by this node"))
                else:
                    results.append(
                        CheckResult(
                            "ports",
                            FAIL,
                            f"{where}: in use by another process (this node's health "
                            "endpoint does not answer)",
                        )
                    )
                continue
        results.append(CheckResult("ports", OK, f"{where}: free"))
    return results


def data_dir_check(config: Config, timeout: float) -> list[CheckResult]:
    path = Path(config.app.data_dir)
    if path.exists():
        if not path.is_dir():
            return [CheckResult("data dir", FAIL, f"{path} is not a directory")]
        if not os.access(path, os.R_OK | os.W_OK | os.X_OK):
            return [
                CheckResult(
                    "data dir", FAIL, f"{path}: not writable by uid {os.getuid()}; chown it"
                )
            ]
        mode = path.stat().st_mode & 0o777
        if mode & 0o002:
            return [CheckResult("data dir", WARN, f"{path} is world-writable ({mode:o})")]
        return [CheckResult("data dir", OK, f"{path} writable")]
    parent = next((p for p in path.parents if p.exists()), Path("/"))
    if os.access(parent, os.W_OK | os.X_OK):
        return [CheckResult("data dir", OK, f"{path} will be created (under {parent})")]
    return [CheckResult("data dir", FAIL, f"{path} does not exist and {parent} is not writable")]


def fd_check(config: Config, timeout: float) -> list[CheckResult]:
    soft, _hard = resource.getrlimit(resource.RLIMIT_NOFILE)
    workers = config.stratum.max_workers
    needed = workers + FD_HEADROOM
    text = f"open files limit {soft}; stratum.max_workers {workers} needs about {needed}"
    if soft == resource.RLIM_INFINITY or soft >= needed:
        return [CheckResult("fd limit", OK, text)]
    advice = "; raise it (LimitNOFILE= in the systemd unit, ulimit -n)"
    if soft >= workers:
        return [CheckResult("fd limit", WARN, text + advice)]
    return [CheckResult("fd limit", FAIL, text + advice)]


def clock_check() -> CheckResult:
    """Whether the kernel says the clock is synchronised (adjtimex, read-only)."""
    library = ctypes.util.find_library("c")
    if sys.platform != "linux" or library is None:
        return CheckResult("clock", WARN, "cannot tell whether the clock is synchronised")
    libc = ctypes.CDLL(library, use_errno=True)
    timex = ctypes.create_string_buffer(512)  # struct timex, modes = 0: only read
    state = libc.adjtimex(timex)
    if state < 0:
        return CheckResult("clock", WARN, f"adjtimex failed (errno {ctypes.get_errno()})")
    now = time.strftime("%Y-%m-%d %H:%M:%S UTC", time.gmtime())
    if state == 5:  # TIME_ERROR: not synchronised
        return CheckResult(
            "clock",
            WARN,
            f"{now}; the clock is not synchronised (run NTP: chrony or systemd-timesyncd); "
            "shares and templates carry times",
        )
    return CheckResult("clock", OK, f"{now}; synchronised")


# -- what a running node says -------------------------------------------------------------


def health_url(config: Config) -> str | None:
    """The URL of the node's health report (None when ``monitoring.health`` is off)."""
    settings = config.monitoring.health
    if not settings.enabled:
        return None
    host = settings.address.host
    host = "127.0.0.1" if host in ("", "0.0.0.0") else host
    host = f"[{host}]" if ":" in host else host
    return f"http://{host}:{settings.address.port}{settings.path}"


def fetch_health(config: Config, timeout: float = 5.0) -> dict[str, Any] | str:
    """The running node's health report, or why there is none."""
    url = health_url(config)
    if url is None:
        return "monitoring.health.enabled is false: the node cannot be asked"
    return read_health_report(url, timeout)


def ledger_stats(config: Config) -> dict[str, Any] | str:
    """The ledger's stats (``otedama stats``), or why they cannot be read."""
    from otedama.ledger import db
    from otedama.ledger.stats import pool_stats

    url = config.database_url
    missing = _missing_sqlite_file(url)
    if missing is not None:
        return f"{missing} does not exist"
    try:
        engine = db.make_engine(url, pool_size=1)
        try:
            with engine.connect() as connection:
                if not db.migration_state(connection).is_current:
                    return f"{db.redact(url)}: schema not current"
                stats: dict[str, Any] = pool_stats(connection, time.time(), 600.0).as_dict()
                return stats
        finally:
            engine.dispose()
    except Exception as error:
        return f"{db.redact(url)}: {db.describe_error(error, url)}"


# -- the report -----------------------------------------------------------------------------


def _versions() -> list[str]:
    lines = [f"otedama {__version__}", f"python {platform.python_version()} ({sys.executable})"]
    for name in KEY_PACKAGES:
        try:
            lines.append(f"{name} {importlib.metadata.version(name)}")
        except importlib.metadata.PackageNotFoundError:
            lines.append(f"{name} (not installed)")
    return lines


def _os() -> list[str]:
    lines = [
        f"platform {platform.platform()}",
        f"machine {platform.machine()}, {os.cpu_count()} CPUs",
    ]
    try:
        meminfo = Path("/proc/meminfo").read_text().splitlines()
        lines.extend(line for line in meminfo if line.startswith(("MemTotal", "MemAvailable")))
    except OSError:
        pass
    soft, hard = resource.getrlimit(resource.RLIMIT_NOFILE)
    lines.append(f"open files limit {soft} (hard {hard})")
    return lines


def _section(title: str, body: str | list[str]) -> str:
    text = body if isinstance(body, str) else "\n".join(body)
    return f"== {title} ==\n{text.rstrip()}\n"


def _as_text(value: dict[str, Any] | str) -> str:
    return value if isinstance(value, str) else json.dumps(value, indent=2, sort_keys=True)


def system_report(args: argparse.Namespace, checks: Callable[..., Any] = run_checks) -> str:
    """The whole report as text (no secret: the config is exported sanitized)."""
    path = config_path(args)
    sections = [
        _section("otedama system report", time.strftime("%Y-%m-%d %H:%M:%S UTC", time.gmtime())),
        _section("versions", _versions()),
        _section("os", _os()),
    ]
    try:
        config = load_config(path)
    except ConfigError as error:
        sections.append(_section("config", [f"{path}: invalid", *error.problems]))
        return "\n".join(sections)
    sections.append(_section("config (sanitized)", export_config(config, sanitize=True)))
    sections.append(_section("checks", [r.line() for r in checks(path, args.timeout)]))
    sections.append(_section("health", _as_text(fetch_health(config, args.timeout))))
    sections.append(_section("stats", _as_text(ledger_stats(config))))
    return "\n".join(sections)

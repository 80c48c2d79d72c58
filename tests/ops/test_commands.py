"""The guide's commands: ``mining status``, ``system check``, ``system report``, ``debug bundle``."""

from __future__ import annotations

import json
import socket
import tarfile
from pathlib import Path
from typing import Any

import pytest
import yaml

from otedama.commands.system import FAIL, OK, WARN, run_checks
from tests.ops.conftest import RunningNode, clean_env, free_port

OTEDAMA_EXAMPLE_ADDRESS = "bc1qw508d6qejxtdg4y5r3zarvary0c5xw7kv8f3t4"  # BIP173's vector


def write_config(path: Path, data: dict[str, Any]) -> Path:
    path.write_text(yaml.safe_dump(data))
    return path


def offline_config(tmp_path: Path, **sections: Any) -> dict[str, Any]:
    """A devnet node that is not running, on free ports, with a migrated-or-not SQLite."""
    config: dict[str, Any] = {
        "app": {"data_dir": str(tmp_path / "data")},
        "chain": {
            "backend": "devnet",
            "network": "devnet",
            "devnet": {"listen": f"127.0.0.1:{free_port()}"},
        },
        "stratum": {"address": f"127.0.0.1:{free_port()}"},
        "database": {"url": f"sqlite:///{tmp_path / 'ledger.sqlite'}"},
        "monitoring": {"health": {"enabled": True, "address": f"127.0.0.1:{free_port()}"}},
    }
    for name, value in sections.items():
        config.setdefault(name, {}).update(value)
    return config


def by_name(results: list[Any]) -> dict[str, list[Any]]:
    found: dict[str, list[Any]] = {}
    for result in results:
        found.setdefault(result.name, []).append(result)
    return found


# -- mining status ------------------------------------------------------------------------


@pytest.mark.timeout(120)
def test_mining_status_shows_each_port_of_the_running_node(running_node: RunningNode) -> None:
    running_node.wait_for_line("first share from")
    result = running_node.otedama(
        "mining", "status", "--config", str(running_node.config_file), "--format", "json"
    )
    assert result.returncode == 0, result.stderr
    ports = json.loads(result.stdout)
    port = str(running_node.config["stratum"]["address"]).rsplit(":", 1)[1]
    entry = ports[port]
    assert entry["algorithm"] == "sha256d"
    assert entry["miners"] == 1 and entry["workers"] == 1
    assert entry["accepted"] >= 1
    low, high = entry["difficulty"]
    assert 0 < low <= high
    assert entry["template"]["height"] >= 1
    assert entry["template"]["age"] >= 0

    table = running_node.otedama("mining", "status", "--config", str(running_node.config_file))
    assert table.returncode == 0, table.stderr
    assert f"port {port} (sha256d)" in table.stdout
    assert "miners      1" in table.stdout
    assert "template    height" in table.stdout


def test_mining_status_says_when_the_node_does_not_answer(tmp_path: Path) -> None:
    from otedama.cli import main

    path = write_config(tmp_path / "otedama.yaml", offline_config(tmp_path))
    assert main(["mining", "status", "--config", str(path), "--timeout", "2"]) == 2


# -- system check -------------------------------------------------------------------------


@pytest.mark.timeout(120)
def test_system_check_of_the_running_node_finds_its_ports_ours_and_nothing_failing(
    running_node: RunningNode,
) -> None:
    result = running_node.otedama("system", "check", "--config", str(running_node.config_file))
    lines = result.stdout.splitlines()
    assert not [line for line in lines if line.startswith(FAIL)], result.stdout
    warned = any(line.startswith(WARN) for line in lines)
    assert result.returncode == (1 if warned else 0), result.stdout
    for name in ("python", "packages", "config", "database", "chain", "data dir", "fd limit"):
        assert any(line[6:].startswith(name) for line in lines), (name, result.stdout)
    assert "schema current" in result.stdout
    assert "embedded devnet answers at height" in result.stdout
    assert result.stdout.count("in use by this node") == 4  # stratum, health, metrics, devnet
    assert "clock" in result.stdout


def test_system_check_fails_a_config_the_node_would_refuse(tmp_path: Path) -> None:
    path = write_config(
        tmp_path / "otedama.yaml",
        offline_config(
            tmp_path,
            chain={"network": "mainnet", "backend": "bitcoind",
                   "rpc": [{"url": f"http://127.0.0.1:{free_port()}", "user": "u",
                            "password": "p4ssw0rd-long"}]},
            pool={"wallet_address": OTEDAMA_EXAMPLE_ADDRESS},
        ),
    )  # fmt: skip
    checks = by_name(run_checks(str(path), timeout=2))
    assert checks["config"][0].status == FAIL
    assert "refuses to start" in checks["config"][0].reason
    assert "pool.wallet_address" in checks["config"][0].reason
    assert checks["chain"][0].status == FAIL
    assert "no answer" in checks["chain"][0].reason


def test_system_check_fails_a_missing_schema_a_taken_port_and_too_few_descriptors(
    tmp_path: Path,
) -> None:
    from otedama.cli import main

    data = offline_config(tmp_path, stratum={"max_workers": 10_000_000})
    path = write_config(tmp_path / "otedama.yaml", data)
    host, port = data["stratum"]["address"].rsplit(":", 1)
    with socket.socket() as taken:
        taken.bind((host, int(port)))
        taken.listen()
        checks = by_name(run_checks(str(path), timeout=2))
        assert main(["system", "check", "--config", str(path), "--timeout", "2"]) == 2
    assert checks["database"][0].status == FAIL
    assert "migrate up" in checks["database"][0].reason
    assert not (tmp_path / "ledger.sqlite").exists(), "the check must not create the database"
    stratum = [r for r in checks["ports"] if r.reason.startswith("stratum")]
    assert stratum[0].status == FAIL
    assert "another process" in stratum[0].reason
    assert [r.status for r in checks["ports"] if not r.reason.startswith("stratum")] == [OK, OK]
    assert checks["fd limit"][0].status == FAIL
    assert checks["data dir"][0].status == OK


def test_system_check_names_an_invalid_config(tmp_path: Path) -> None:
    path = tmp_path / "bad.yaml"
    path.write_text("stratum:\n  max_workers: lots\n")
    checks = by_name(run_checks(str(path)))
    assert checks["config"][0].status == FAIL
    assert "stratum.max_workers" in checks["config"][0].reason


# -- system report and debug bundle -------------------------------------------------------


@pytest.mark.timeout(120)
def test_system_report_of_the_running_node_has_every_section(running_node: RunningNode) -> None:
    running_node.wait_for_line("first share from")
    result = running_node.otedama("system", "report", "--config", str(running_node.config_file))
    assert result.returncode == 0, result.stderr
    for section in ("versions", "os", "config (sanitized)", "checks", "health", "stats"):
        assert f"== {section} ==" in result.stdout
    assert "otedama 0.1.0" in result.stdout
    assert '"status":' in result.stdout  # the node's health report
    assert '"shares_in_window":' in result.stdout  # the ledger's stats


SECRETS = {
    "config": "Cfg-Wallet-Pa55word-7f3a",
    "redis": "Redis-Pa55-91bd",
    "database": "Db-Env-Pa55-c0ffee",
    "cookie": "cookie-secret-5e7a9b",
}


@pytest.mark.timeout(120)
def test_the_debug_bundle_holds_no_secret_from_the_config_or_the_environment(
    tmp_path: Path,
) -> None:
    import subprocess

    from tests.ops.conftest import OTEDAMA

    cookie = tmp_path / ".cookie"
    cookie.write_text(f"__cookie__:{SECRETS['cookie']}")
    log = tmp_path / "otedama.log"
    log.write_text(
        "\n".join(f"line {n}" for n in range(3000))
        + f"\nrpc auth __cookie__:{SECRETS['cookie']} refused"
        + f"\nconnecting to postgresql://otedama:{SECRETS['database']}@127.0.0.1/x\n"
    )
    path = write_config(
        tmp_path / "otedama.yaml",
        offline_config(
            tmp_path,
            chain={"backend": "bitcoind", "network": "regtest",
                   "rpc": [{"url": f"http://127.0.0.1:{free_port()}",
                            "cookie_file": str(cookie)}],
                   "wallet": {"url": f"http://127.0.0.1:{free_port()}", "user": "payer",
                              "password": SECRETS["config"]}},
            pool={"wallet_address": "bcrt1qqxlgwddcf0uhsmr9uqesvn3efp00p99t0mcyjs"},
            redis={"password": "Redis-Field-Pa55-44"},
            monitoring={"logging": {"file": str(log)},
                        "health": {"enabled": True, "address": f"127.0.0.1:{free_port()}"}},
        ),
    )  # fmt: skip
    env = clean_env()
    env["DATABASE_URL"] = f"postgresql://otedama:{SECRETS['database']}@127.0.0.1:{free_port()}/x"
    env["REDIS_URL"] = f"redis://:{SECRETS['redis']}@127.0.0.1:{free_port()}/0"
    output = tmp_path / "bundle.tar.gz"
    result = subprocess.run(
        [str(OTEDAMA), "debug", "bundle", "--config", str(path), "--output", str(output),
         "--timeout", "2"],
        env=env, capture_output=True, text=True, timeout=90,
    )  # fmt: skip
    assert result.returncode == 0, result.stdout + result.stderr
    with tarfile.open(output) as archive:
        names = sorted(member.name for member in archive.getmembers())
        texts = {
            member.name: archive.extractfile(member).read().decode()  # type: ignore[union-attr]
            for member in archive.getmembers()
        }
    assert names == [
        f"otedama-debug/{name}"
        for name in sorted(
            ["README.txt", "config.yaml", "health.json", "otedama.log", "stats.json",
             "system-report.txt"]
        )
    ]  # fmt: skip
    everything = "\n".join(texts.values())
    for secret in [*SECRETS.values(), "Redis-Field-Pa55-44"]:
        assert secret not in everything, secret
    assert secret_free(output.read_bytes())
    # What is there is useful: masked config, the log's newest lines, the report.
    config_text = texts["otedama-debug/config.yaml"]
    assert "********" in config_text and "payer" in config_text
    log_lines = texts["otedama-debug/otedama.log"].splitlines()
    assert log_lines[-2:] == [
        "rpc auth ******** refused",
        "connecting to postgresql://otedama:********@127.0.0.1/x",
    ]
    assert len(log_lines) == 2000
    assert "== checks ==" in texts["otedama-debug/system-report.txt"]
    assert "unavailable" in texts["otedama-debug/health.json"]


def secret_free(archive: bytes) -> bool:
    import gzip

    raw = gzip.decompress(archive)
    return not any(secret.encode() in raw for secret in SECRETS.values())


@pytest.mark.timeout(120)
def test_the_debug_bundle_of_the_running_node_has_its_health_stats_and_log(
    running_node: RunningNode, tmp_path: Path
) -> None:
    running_node.wait_for_line("first share from")
    output = tmp_path / "bundle.tar.gz"
    result = running_node.otedama(
        "debug", "bundle", "--config", str(running_node.config_file), "--output", str(output)
    )
    assert result.returncode == 0, result.stderr
    with tarfile.open(output) as archive:
        health = json.load(archive.extractfile("otedama-debug/health.json"))  # type: ignore[arg-type]
        stats = json.load(archive.extractfile("otedama-debug/stats.json"))  # type: ignore[arg-type]
        log = archive.extractfile("otedama-debug/otedama.log").read().decode()  # type: ignore[union-attr]
    assert health["checks"]["stratum"]["miners"] == 1
    assert "shares_in_window" in stats
    assert "Otedama node ready" in log
    assert oct(output.stat().st_mode & 0o777) == "0o600"

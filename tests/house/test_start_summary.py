"""One line at start says what the node runs: network, chain, database, money, listeners."""

from __future__ import annotations

from pathlib import Path

from twisted.internet import reactor
from twisted.logger import capturedLogs

from otedama.config import load_config, start_summary
from otedama.tap import build_node
from tests.conftest import ROOT

MAINNET = {
    "chain": {
        "backend": "bitcoind",
        "network": "mainnet",
        "rpc": [
            {"url": "http://rpcuser:rpc-secret-1@10.0.0.1:8332"},
            {"url": "http://10.0.0.2:8332", "cookie_file": "/var/lib/bitcoind/.cookie"},
        ],
    },
    "pool": {
        "wallet_address": "bc1qar0srrr7xfkvy5l643lydnw9re59gtzzwf5mdq",
        "fee_percentage": 1.5,
        "minimum_payout": "0.01",
        "payout_interval": "1h",
        "rewards": {"system": "PPLNS", "window": "3h"},
    },
    "database": {"host": "db", "user": "pool", "password": "db-secret-2"},
    "stratum": {"address": "0.0.0.0:3333"},
    "monitoring": {"health": {"enabled": True, "address": "127.0.0.1:8081"}},
}


def test_summary_names_everything_an_operator_checks_and_no_secret() -> None:
    line = start_summary(load_config(data=MAINNET, env={}))
    assert line == (
        "starting Otedama: network mainnet; chain bitcoind at http://rpcuser@10.0.0.1:8332 "
        "(+1 failover); database postgresql+psycopg2://pool@db:5432/otedama?sslmode=prefer; "
        "pool address bc1qar0srrr7xfkvy5l643lydnw9re59gtzzwf5mdq; rewards PPLNS over 3h, "
        "fee 1.5 %; payouts every 1h, minimum 0.01; "
        "listening on stratum 0.0.0.0:3333, api 0.0.0.0:8080, health 127.0.0.1:8081"
    )
    assert "secret" not in line


def test_summary_names_every_listener_the_node_opens() -> None:
    """TLS Stratum, the API (HTTPS with TLS), metrics and the federation's port are
    listeners too: each is named with where it listens."""
    data = {
        **MAINNET,
        "security": {"enable_tls": True, "cert_file": "/etc/c.pem", "key_file": "/etc/k.pem"},
        "stratum": {"address": "0.0.0.0:3333", "tls_address": "0.0.0.0:3443"},
        "api": {"address": "127.0.0.1:8080"},
        "monitoring": {"metrics": {"enabled": True, "address": "127.0.0.1:9100"}},
        "federation": {"enabled": True, "listen_port": 4444},
    }
    line = start_summary(load_config(data=data, env={}))
    assert line.endswith(
        "listening on stratum 0.0.0.0:3333, stratum-tls 0.0.0.0:3443, "
        "api 127.0.0.1:8080 (https), metrics 127.0.0.1:9100, federation 0.0.0.0:4444 (tcp, udp)"
    )
    quiet = {**MAINNET, "api": {"enable": False}, "monitoring": {"health": {"enabled": False}}}
    assert start_summary(load_config(data=quiet, env={})).endswith(
        "listening on stratum 0.0.0.0:3333"
    )


def test_summary_of_the_embedded_default() -> None:
    line = start_summary(load_config(ROOT / "etc" / "otedama.yaml", env={}))
    assert "network devnet; chain embedded devnet on 127.0.0.1:18443;" in line
    assert "database sqlite:///./data/otedama.sqlite;" in line
    assert "rewards PPLNS over 2h, fee 1.0 %; payouts every 2m, minimum 0.001;" in line
    assert line.endswith(
        "listening on stratum 127.0.0.1:3333, api 127.0.0.1:8080, health 127.0.0.1:8081; "
        "built-in CPU miner on"
    )


def test_building_the_node_logs_the_summary_once(tmp_path: Path) -> None:
    config = load_config(
        data={
            "app": {"data_dir": str(tmp_path)},
            "chain": {"devnet": {"listen": "127.0.0.1:18999", "data_dir": str(tmp_path / "dn")}},
            "stratum": {"address": "127.0.0.1:0"},
        },
        env={},
    )
    with capturedLogs() as events:
        build_node(config, reactor)
    summaries = [e for e in events if e.get("summary")]
    assert [e["summary"] for e in summaries] == [start_summary(config)]
    assert summaries[0]["log_level"].name == "info"

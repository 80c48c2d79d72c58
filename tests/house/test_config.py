"""Config: the guide's file validates, bad values are named precisely, secrets masked."""

from __future__ import annotations

from decimal import Decimal
from fractions import Fraction
from pathlib import Path

import pytest
import yaml

from otedama.config import Config, ConfigError, export_config, load_config
from otedama.configschema import MASK, HostPort, duration
from tests.conftest import ROOT, VECTORS

GUIDE = VECTORS / "production.yaml"


def load(data: dict, env: dict | None = None) -> Config:
    return load_config(data=data, env=env or {})


def problems_of(data: dict, env: dict | None = None) -> list[str]:
    with pytest.raises(ConfigError) as info:
        load(data, env)
    return info.value.problems


def test_guide_production_yaml_validates_and_reports_unused_keys() -> None:
    config = load_config(GUIDE, env={})
    assert config.stratum.address == HostPort("0.0.0.0", 3333)
    assert config.pool.minimum_payout == 100_000
    assert config.pool.fee_percentage == Decimal("1.0")
    assert config.pool.rewards.window == 7200.0
    assert config.database_url.startswith("postgresql+psycopg2://otedama_user:")
    warnings = config.unused_warnings()
    assert "optimization.memory_timing_level is not used by this version" in warnings
    assert "stratum.protocols.v2 is not used by this version" in warnings
    assert not any(w.startswith("stratum.address") for w in warnings)


@pytest.mark.parametrize("name", ["otedama.yaml", "production.yaml"])
def test_shipped_configs_validate(name: str) -> None:
    config = load_config(ROOT / "etc" / name, env={})
    assert config.pool.wallet_address


def test_embedded_default_needs_no_outside_service() -> None:
    config = load_config(ROOT / "etc" / "otedama.yaml", env={})
    assert config.chain.backend == "devnet"
    assert config.database_url.startswith("sqlite:///")
    assert config.mining.enable_cpu
    assert config.stratum.address.host == "127.0.0.1"
    assert config.chain.devnet.listen.host == "127.0.0.1"
    assert not config.federation.enabled


BAD_CONFIGS = [
    (
        {"stratum": {"var_diff": "yes please"}},
        'stratum.var_diff: expected true/false, got "yes please"',
    ),
    ({"stratum": {"address": "nohost"}}, 'stratum.address: expected host:port, got "nohost"'),
    (
        {"stratum": {"address": "1.2.3.4:99999"}},
        'stratum.address: expected a port 0-65535, got "1.2.3.4:99999"',
    ),
    (
        {"stratum": {"job_timeout": "soon"}},
        'stratum.job_timeout: expected a duration like 30s, 2h, 500ms or seconds, got "soon"',
    ),
    (
        {"stratum": {"share_difficulty": 0}},
        "stratum.share_difficulty: expected a difficulty > 0, got 0",
    ),
    ({"stratum": {"max_workers": 1.5}}, "stratum.max_workers: expected a whole number, got 1.5"),
    ({"stratum": {"max_workers": 0}}, "stratum.max_workers: expected a whole number >= 1, got 0"),
    ({"stratum": {"varidff": True}}, "stratum.varidff: unknown key (known keys here:"),
    (
        {"pool": {"fee_percentage": 120}},
        "pool.fee_percentage: expected a percentage between 0 and 100, got 120",
    ),
    (
        {"pool": {"minimum_payout": "0.000000001"}},
        'pool.minimum_payout: expected at most 8 decimal places, got "0.000000001"',
    ),
    (
        {"pool": {"minimum_payout": "lots"}},
        'pool.minimum_payout: expected an amount in coins (e.g. 0.001), got "lots"',
    ),
    (
        {"pool": {"rewards": {"system": "PPS"}}},
        'pool.rewards.system: expected one of PPLNS, PROP, SOLO, got "PPS"',
    ),
    (
        {"pool": {"wallet_address": "bc1qw508d6qejxtdg4y5r3zarvary0c5xw7kv8f3t4"}},
        'pool.wallet_address: "bc1qw508d6qejxtdg4y5r3zarvary0c5xw7kv8f3t4" is not a devnet address',
    ),
    (
        {"chain": {"network": "mainnet"}},
        'chain.network: the devnet backend runs network "devnet", got "mainnet"',
    ),
    (
        {
            "chain": {"backend": "bitcoind", "network": "regtest", "rpc": []},
            "pool": {"wallet_address": "bcrt1qqxlgwddcf0uhsmr9uqesvn3efp00p99t0mcyjs"},
        },
        "chain.rpc: the bitcoind backend needs at least one daemon",
    ),
    (
        {"chain": {"rpc": [{"url": "ftp://x"}]}},
        "chain.rpc[0].url: expected an http:// or https:// URL, got 'ftp://x'",
    ),
    (
        {"chain": {"rpc": [{"url": "http://x", "pasword": "p"}]}},
        "chain.rpc[0].pasword: unknown key",
    ),
    (
        {"chain": {"network": "moonnet"}},
        'chain.network: expected one of mainnet, testnet, testnet4, signet, regtest, devnet, got "moonnet"',
    ),
    (
        {"chain": {"devnet": {"difficulty": "hard"}}},
        'chain.devnet.difficulty: expected a difficulty (a number > 0, e.g. 1, 0.001), got "hard"',
    ),
    (
        {
            "chain": {
                "backend": "bitcoind",
                "network": "mainnet",
                "rpc": [{"url": "http://127.0.0.1:8332"}],
            }
        },
        "pool.wallet_address: required",
    ),
    (
        {"database": {"url": "mysql://x"}},
        'database.url: expected a postgresql:// or sqlite:/// URL, got "mysql://x"',
    ),
    (
        {"database": {"ssl_mode": "maybe"}},
        'database.ssl_mode: expected one of disable, allow, prefer, require, verify-ca, verify-full, got "maybe"',
    ),
    (
        {"monitoring": {"logging": {"format": "xml"}}},
        'monitoring.logging.format: expected one of text, json, got "xml"',
    ),
    (
        {"monitoring": {"logging": {"level": "loud"}}},
        'monitoring.logging.level: expected one of debug, info, warn, error, critical, warning, got "loud"',
    ),
    ({"stratum": "on"}, 'stratum: expected a mapping of keys, got "on"'),
    (
        {"stratum": {"min_difficulty": 10, "max_difficulty": 1}},
        "stratum.min_difficulty: 10 is above stratum.max_difficulty 1",
    ),
    (
        {"optimization": {"memory_timing_level": "high"}},
        'optimization.memory_timing_level: expected a whole number, got "high"',
    ),
    (
        {"federation": {"reputation_threshold": 2}},
        "federation.reputation_threshold: expected a number <= 1, got 2",
    ),
    (
        {"federation": {"tls": "maybe"}},
        'federation.tls: expected one of auto, off, on, required, got "maybe"',
    ),
    (
        {"federation": {"enabled": True, "tls": "required"}},
        'federation.tls: "required" needs the node\'s certificate: set security.enable_tls',
    ),
]


@pytest.mark.parametrize(
    ("data", "message"), BAD_CONFIGS, ids=[m.split(":")[0] for _, m in BAD_CONFIGS]
)
def test_bad_config_gets_a_precise_message(data: dict, message: str) -> None:
    problems = problems_of(data)
    assert any(p.startswith(message) for p in problems), problems


def test_every_problem_is_listed_not_just_the_first() -> None:
    problems = problems_of(
        {"stratum": {"var_diff": 1, "job_timeout": "x"}, "pool": {"fee_percentage": -1}}
    )
    assert len(problems) == 3


def test_unreadable_and_malformed_files_are_errors_naming_the_file(tmp_path: Path) -> None:
    with pytest.raises(ConfigError, match="no such config file"):
        load_config(tmp_path / "missing.yaml", env={})
    broken = tmp_path / "broken.yaml"
    broken.write_text("stratum:\n  address: [unclosed\n")
    with pytest.raises(ConfigError, match=r"broken.yaml: not valid YAML at line \d+"):
        load_config(broken, env={})


@pytest.mark.parametrize(
    ("text", "seconds"),
    [
        ("30s", 30.0),
        ("2h", 7200.0),
        ("3600s", 3600.0),
        (45, 45.0),
        ("500ms", 0.5),
        ("1.5m", 90.0),
        ("1d", 86400.0),
    ],
)
def test_durations(text: object, seconds: float) -> None:
    assert duration(text) == seconds


def test_fractional_difficulties_are_exact() -> None:
    config = load({"stratum": {"share_difficulty": 0.001, "min_difficulty": "0.0001"}})
    assert config.stratum.share_difficulty == Fraction(1, 1000)
    assert config.stratum.min_difficulty == Fraction(1, 10000)


def test_ipv6_listen_address() -> None:
    config = load({"stratum": {"address": "[::1]:3333"}})
    assert config.stratum.address == HostPort("::1", 3333)
    assert config.stratum.address.server_endpoint() == "tcp:3333:interface=\\:\\:1"


def test_environment_overrides() -> None:
    env = {
        "DATABASE_URL": "postgresql://u:pw@db:5432/pool",
        "REDIS_URL": "redis://r:6379/0",
        "LOG_LEVEL": "debug",
        "OTEDAMA_MODE": "test",
    }
    config = load(
        {"database": {"host": "ignored"}, "monitoring": {"logging": {"level": "error"}}}, env
    )
    assert config.database_url == "postgresql+psycopg2://u:pw@db:5432/pool"
    assert config.redis.url == "redis://r:6379/0"
    assert config.log_level == "debug"
    assert config.app.mode == "test"


def test_bad_environment_override_is_named() -> None:
    problems = problems_of({}, {"LOG_LEVEL": "shouty"})
    assert problems == [
        'monitoring.logging.level: expected one of debug, info, warn, error, critical, warning, got "shouty"'
    ]


SECRETS = {
    "database": {"host": "db", "password": "db-secret-1"},
    "redis": {"password": "redis-secret-2", "url": "redis://:redis-secret-3@r:6379/0"},
    "chain": {
        "backend": "bitcoind",
        "network": "regtest",
        "rpc": [{"url": "http://127.0.0.1:18443", "user": "u", "password": "rpc-secret-4"}],
    },
    "pool": {"wallet_address": "bcrt1qqxlgwddcf0uhsmr9uqesvn3efp00p99t0mcyjs"},
}


def test_sanitized_export_hides_every_secret() -> None:
    config = load(SECRETS, {"DATABASE_URL": "postgresql://u:url-secret-5@db/pool"})
    text = export_config(config, sanitize=True)
    for secret in (
        "db-secret-1",
        "redis-secret-2",
        "redis-secret-3",
        "rpc-secret-4",
        "url-secret-5",
    ):
        assert secret not in text
    assert MASK in text
    exported = yaml.safe_load(text)
    assert exported["chain"]["rpc"][0]["user"] == "u"


def test_unsanitized_export_round_trips() -> None:
    config = load(SECRETS)
    again = load(yaml.safe_load(export_config(config, sanitize=False)))
    assert again == config


def test_configuration_docs_list_every_key() -> None:
    from otedama.config import reference_markdown

    page = (ROOT / "docs" / "configuration.md").read_text()
    assert reference_markdown() in page, "regenerate with: otedama config reference"


def test_stratum_timeouts_reach_the_server_settings_and_apply_on_reload() -> None:
    from otedama.tap import STRATUM_LIVE_KEYS, stratum_settings

    config = load({"stratum": {"authorize_timeout": "17s", "idle_timeout": "9m"}})
    settings = stratum_settings(config)
    assert settings.authorize_timeout == 17
    assert settings.idle_timeout == 540
    assert "stratum.authorize_timeout" in STRATUM_LIVE_KEYS


CONNECTION_LIMITS = (
    "max_unsent_bytes",
    "stall_timeout",
    "close_grace",
    "max_share_rate",
    "share_burst",
)


def test_stratum_connection_limits_default_to_the_servers_own_defaults() -> None:
    from otedama.stratum.settings import StratumSettings
    from otedama.tap import stratum_settings

    config = load({})
    built = stratum_settings(config)
    defaults = StratumSettings(network=built.network)
    for name in CONNECTION_LIMITS:
        assert getattr(config.stratum, name) == getattr(defaults, name), name
        assert getattr(built, name) == getattr(defaults, name), name
    exported = yaml.safe_load(export_config(config, sanitize=True))["stratum"]
    assert {name: exported[name] for name in CONNECTION_LIMITS} == {
        "max_unsent_bytes": "1MiB",
        "stall_timeout": "1m",
        "close_grace": "5s",
        "max_share_rate": 20.0,
        "share_burst": 100,
    }


@pytest.mark.parametrize(
    ("given", "expected"),
    [
        ({"max_unsent_bytes": "256KiB"}, {"max_unsent_bytes": 256 * 1024}),
        ({"max_unsent_bytes": 4096}, {"max_unsent_bytes": 4096}),  # bare: bytes
        ({"max_unsent_bytes": "2MB"}, {"max_unsent_bytes": 2_000_000}),
        (
            {"stall_timeout": "90s", "close_grace": "500ms"},
            {"stall_timeout": 90, "close_grace": 0.5},
        ),
        ({"stall_timeout": 2}, {"stall_timeout": 2}),
        ({"max_share_rate": 2.5, "share_burst": 1}, {"max_share_rate": 2.5, "share_burst": 1}),
        ({"max_share_rate": 1000}, {"max_share_rate": 1000.0}),
    ],
)
def test_stratum_connection_limits_reach_the_server_settings(given: dict, expected: dict) -> None:
    from otedama.tap import STRATUM_LIVE_KEYS, stratum_settings

    config = load({"stratum": given})
    settings = stratum_settings(config)
    for name, value in expected.items():
        assert getattr(config.stratum, name) == value
        assert getattr(settings, name) == value
    again = load(yaml.safe_load(export_config(config, sanitize=False)))
    assert again.stratum == config.stratum  # the export reads back as the same values
    assert {f"stratum.{name}" for name in CONNECTION_LIMITS} <= set(STRATUM_LIVE_KEYS)


@pytest.mark.parametrize(
    ("given", "message"),
    [
        (
            {"max_unsent_bytes": "4095B"},
            "stratum.max_unsent_bytes: expected a size of at least 4KiB (4096 bytes), got '4095B'",
        ),
        (
            {"max_unsent_bytes": 0},
            "stratum.max_unsent_bytes: expected a size of at least 4KiB (4096 bytes), got 0",
        ),
        (
            {"max_unsent_bytes": "lots"},
            'stratum.max_unsent_bytes: expected a size like 100MB, 1GiB or a whole number, got "lots"',
        ),
        ({"stall_timeout": 0}, "stratum.stall_timeout: expected a duration > 0, got 0"),
        ({"idle_timeout": 0}, "stratum.idle_timeout: expected a duration > 0, got 0"),
        ({"job_timeout": 0}, "stratum.job_timeout: expected a duration > 0, got 0"),
        ({"subscribe_timeout": "0s"}, "stratum.subscribe_timeout: expected a duration > 0"),
        ({"authorize_timeout": 0}, "stratum.authorize_timeout: expected a duration > 0, got 0"),
        (
            {"target_share_interval": 0},
            "stratum.target_share_interval: expected a duration > 0, got 0",
        ),
        ({"stall_timeout": "-1s"}, "stratum.stall_timeout: expected a duration like 30s"),
        ({"close_grace": "0s"}, "stratum.close_grace: expected a duration > 0, got '0s'"),
        ({"max_share_rate": 0}, "stratum.max_share_rate: expected a number > 0, got 0"),
        ({"max_share_rate": -5}, "stratum.max_share_rate: expected a number >= 0, got -5"),
        ({"max_share_rate": "fast"}, 'stratum.max_share_rate: expected a number, got "fast"'),
        ({"share_burst": 0}, "stratum.share_burst: expected a whole number >= 1, got 0"),
        ({"share_burst": 2.5}, "stratum.share_burst: expected a whole number, got 2.5"),
    ],
)
def test_bad_stratum_connection_limits_are_refused_by_key(given: dict, message: str) -> None:
    problems = problems_of({"stratum": given})
    assert len(problems) == 1 and problems[0].startswith(message), problems


@pytest.mark.parametrize(
    ("text", "mode", "with_tls", "without_tls"),
    [
        ("", "auto", "on", "off"),
        ("  tls: auto\n", "auto", "on", "off"),
        ("  tls: off\n", "off", "off", "off"),  # YAML reads a bare off as false
        ("  tls: on\n", "on", "on", "on"),  # and a bare on as true
        ("  tls: required\n", "required", "required", "required"),
    ],
)
def test_federation_tls_follows_security_enable_tls_unless_set(
    tmp_path: Path, text: str, mode: str, with_tls: str, without_tls: str
) -> None:
    path = tmp_path / "otedama.yaml"
    path.write_text("federation:\n  enabled: false\n" + text, encoding="utf-8")
    federation = load_config(path, env={}).federation
    assert federation.tls == mode
    assert federation.tls_mode(True) == with_tls
    assert federation.tls_mode(False) == without_tls

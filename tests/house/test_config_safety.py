"""Configs that lose money are refused; numbers are bounded; duplicate keys are errors."""

from __future__ import annotations

from decimal import Decimal
from pathlib import Path

import pytest
from hypothesis import HealthCheck, given, settings
from hypothesis import strategies as st
from twisted.python import usage

from otedama.config import (
    ConfigError,
    is_placeholder,
    load_config,
    money_risks,
    refused_start,
    start_summary,
)
from otedama.configschema import coin_amount
from tests.conftest import ROOT, VECTORS

MAINNET = {
    "chain": {
        "backend": "bitcoind",
        "network": "mainnet",
        "rpc": [{"url": "http://127.0.0.1:8332", "user": "otedama", "password": "k9!Lq2#x"}],
    },
    "pool": {"wallet_address": "bc1qar0srrr7xfkvy5l643lydnw9re59gtzzwf5mdq"},
}


def mainnet(**pool: str) -> dict:
    return {**MAINNET, "pool": {**MAINNET["pool"], **pool}}


# Every well-known spelling of private key 1 and the BIP173/BIP350 vectors, per network.
EXAMPLE_ADDRESSES = [
    ("mainnet", "bc1qw508d6qejxtdg4y5r3zarvary0c5xw7kv8f3t4"),
    ("mainnet", "BC1QW508D6QEJXTDG4Y5R3ZARVARY0C5XW7KV8F3T4"),
    ("mainnet", "bc1qrp33g0q5c5txsp9arysrx4k6zdkfs4nce4xj0gdcccefvpysxf3qccfmv3"),
    ("mainnet", "bc1p0xlxvlhemja6c4dqv22uapctqupfhlxm9h8z3k2e72q4k9hcz7vqzk5jj0"),
    ("mainnet", "bc1pw508d6qejxtdg4y5r3zarvary0c5xw7kw508d6qejxtdg4y5r3zarvary0c5xw7kt5nd6y"),
    ("mainnet", "BC1SW50QGDZ25J"),
    ("mainnet", "bc1zw508d6qejxtdg4y5r3zarvaryvaxxpcs"),
    ("mainnet", "1BgGZ9tcN4rm9KBzDn7KprQz87SZ26SAMH"),
    ("mainnet", "1EHNa6Q4Jz2uvNExL497mE43ikXhwF6kZm"),
    ("mainnet", "3JvL6Ymt8MVWiCNHC7oWU6nLeHNJKLZGLN"),
    ("testnet", "tb1qw508d6qejxtdg4y5r3zarvary0c5xw7kxpjzsx"),
    ("testnet", "tb1qrp33g0q5c5txsp9arysrx4k6zdkfs4nce4xj0gdcccefvpysxf3q0sl5k7"),
    ("testnet", "tb1qqqqqp399et2xygdj5xreqhjjvcmzhxw4aywxecjdzew6hylgvsesrxh6hy"),
    ("testnet", "tb1pqqqqp399et2xygdj5xreqhjjvcmzhxw4aywxecjdzew6hylgvsesf3hn0c"),
    ("testnet", "mrCDrCybB6J1vRfbwM5hemdJz73FwDBC8r"),
    ("testnet4", "tb1qw508d6qejxtdg4y5r3zarvary0c5xw7kxpjzsx"),
    ("signet", "tb1p0xlxvlhemja6c4dqv22uapctqupfhlxm9h8z3k2e72q4k9hcz7vq47zagq"),
]


@pytest.mark.parametrize(("network", "address"), EXAMPLE_ADDRESSES)
@pytest.mark.parametrize("key", ["wallet_address", "fee_address"])
def test_example_addresses_are_refused_on_public_networks(
    network: str, address: str, key: str
) -> None:
    data = {**MAINNET, "chain": {**MAINNET["chain"], "network": network}}
    if network != "mainnet":
        data["pool"] = {"wallet_address": "tb1qar0srrr7xfkvy5l643lydnw9re59gtzzy00gkn"}
    data["pool"] = {**data["pool"], key: address}
    config = load_config(data=data, env={})
    [risk] = money_risks(config)
    assert risk.key == f"pool.{key}"
    assert risk.refuse
    assert "well-known example address" in risk.message and address in risk.message
    assert refused_start(config) == [f"{risk} (refused on {network})"]


def test_a_real_address_and_real_secrets_start() -> None:
    config = load_config(data=MAINNET, env={})
    assert money_risks(config) == []
    assert refused_start(config) == []


def test_example_address_on_regtest_is_only_a_warning() -> None:
    config = load_config(
        data={
            "chain": {"backend": "bitcoind", "network": "regtest", "rpc": [{"url": "http://x"}]},
            "pool": {"wallet_address": "bcrt1qw508d6qejxtdg4y5r3zarvary0c5xw7kygt080"},
        },
        env={},
    )
    [risk] = money_risks(config)
    assert risk.key == "pool.wallet_address" and not risk.refuse
    assert refused_start(config) == []


@pytest.mark.parametrize(
    "value",
    [
        "REPLACE_WITH_YOUR_MAINNET_ADDRESS",
        "replace-me",
        "your_secure_password",
        "YOUR_PASSWORD",
        "changeme",
        "change_me",
        "<your password>",
        "xxxxxx",
        " REPLACE ME ",
        "Change-Me",
    ],
)
def test_placeholders_are_recognised(value: str) -> None:
    assert is_placeholder(value)


@pytest.mark.parametrize("value", ["admin", "default", "secret"])
def test_stand_in_words_are_placeholders_only_as_passwords(value: str) -> None:
    assert is_placeholder(value, secret=True)
    assert not is_placeholder(value)
    config = load_config(data={**mainnet(), "database": {"host": "db", "user": value}}, env={})
    assert money_risks(config) == []


@pytest.mark.parametrize(
    "value",
    ["k9!Lq2#x", "otedama", "/otedama/", "s3cr3t-horse-battery", "Replacement Pool", "Your Pool"],
)
def test_real_values_are_not_placeholders(value: str) -> None:
    assert not is_placeholder(value)


@pytest.mark.parametrize(
    ("data", "key"),
    [
        (mainnet(wallet_address="REPLACE_WITH_YOUR_ADDRESS"), "pool.wallet_address"),
        (mainnet(fee_address="your_fee_address"), "pool.fee_address"),
        ({**mainnet(), "database": {"host": "db", "password": "changeme"}}, "database.password"),
        (
            {**mainnet(), "database": {"url": "postgresql://u:your_secure_password@db/otedama"}},
            "database.url",
        ),
        (
            {
                **mainnet(),
                "chain": {
                    **MAINNET["chain"],
                    "rpc": [{"url": "http://127.0.0.1:8332", "user": "u", "password": "REPLACE"}],
                },
            },
            "chain.rpc[0].password",
        ),
    ],
)
def test_placeholders_refuse_the_start_naming_the_key(data: dict, key: str) -> None:
    config = load_config(data=data, env={})
    refused = refused_start(config)
    assert len(refused) == 1 and refused[0].startswith(f"{key}: "), refused


def test_placeholder_address_is_refused_on_every_network() -> None:
    config = load_config(
        data={
            "chain": {"backend": "bitcoind", "network": "regtest", "rpc": [{"url": "http://x"}]},
            "pool": {"wallet_address": "REPLACE_WITH_A_REGTEST_ADDRESS"},
        },
        env={},
    )
    assert [r.key for r in money_risks(config) if r.refuse] == ["pool.wallet_address"]


def test_shipped_production_file_validates_but_cannot_start() -> None:
    """The example's placeholders cannot be mistaken for values: validate warns, twistd refuses."""
    from otedama.tap import Options

    path = ROOT / "etc" / "production.yaml"
    config = load_config(path, env={})
    risks = {risk.key for risk in money_risks(config) if risk.refuse}
    assert risks == {"pool.wallet_address", "database.password"}
    options = Options()
    with pytest.raises(usage.UsageError) as info:
        options.parseOptions(["--config", str(path)])
    assert "refusing to start" in str(info.value)
    assert "pool.wallet_address" in str(info.value) and "database.password" in str(info.value)


def test_config_validate_prints_the_risks_as_warnings(capsys: pytest.CaptureFixture[str]) -> None:
    from otedama.cli import main

    assert main(["config", "validate", "--config", str(ROOT / "etc" / "production.yaml")]) == 0
    out = capsys.readouterr().out
    assert "etc/production.yaml: valid" in out
    assert "  warning: pool.wallet_address: " in out
    assert "  warning: database.password: " in out
    assert "(the node refuses to start)" in out


def test_guide_file_validates_with_a_warning_for_its_password() -> None:
    config = load_config(VECTORS / "production.yaml", env={})
    [risk] = money_risks(config)
    assert risk.key == "database.password" and not risk.refuse  # devnet: a warning


# -- numbers are bounded before they become exact ---------------------------------------

NUMBER_KEYS = [
    ("stratum", "share_difficulty"),
    ("stratum", "min_difficulty"),
    ("chain", "devnet", "difficulty"),
    ("pool", "minimum_payout"),
    ("pool", "fee_percentage"),
    ("pool", "payout_interval"),
    ("pool", "rewards", "window"),
    ("stratum", "max_workers"),
    ("monitoring", "logging", "max_size"),
    ("federation", "reputation_threshold"),
]


def nest(key: tuple[str, ...], value: object) -> dict:
    data: object = value
    for part in reversed(key):
        data = {part: data}
    assert isinstance(data, dict)
    return data


HUGE_NUMBERS = st.one_of(
    st.builds(
        lambda mantissa, sign, exponent: f"{mantissa}e{sign}{exponent}",
        st.integers(1, 10**6),
        st.sampled_from(["", "+", "-"]),
        st.integers(10**3, 10**12),
    ),
    st.builds(lambda n: "9" * n, st.integers(41, 200_000)),
    st.builds(lambda n: "0." + "0" * n + "1", st.integers(40, 200_000)),
    st.builds(lambda n: 10**n, st.integers(19, 5000)),
    st.builds(lambda n: -(10**n), st.integers(19, 5000)),
    st.sampled_from([float("inf"), float("-inf"), float("nan"), 1e308, "1e999999999"]),
)


@settings(deadline=None, max_examples=150, suppress_health_check=[HealthCheck.too_slow])
@given(key=st.sampled_from(NUMBER_KEYS), value=HUGE_NUMBERS)
def test_huge_numbers_are_a_prompt_error_naming_the_key(
    key: tuple[str, ...], value: object
) -> None:
    """``1e999999999`` and friends never become a huge int or Fraction (that never returns)."""
    with pytest.raises(ConfigError) as info:
        load_config(data=nest(key, value), env={})
    name = ".".join(key)
    assert any(problem.startswith(f"{name}: expected") for problem in info.value.problems)
    assert all(len(problem) < 400 for problem in info.value.problems)  # not echoed whole


@pytest.mark.parametrize(
    ("key", "value", "expected"),
    [
        (("stratum", "share_difficulty"), "1e999999999", None),
        (("stratum", "share_difficulty"), "1.5e3", "1500"),
        (("pool", "minimum_payout"), "1e-3", 100_000),
        (("pool", "minimum_payout"), 21_000_001, None),
        (("pool", "payout_interval"), "3650d", 3650 * 86400.0),
        (("pool", "payout_interval"), "3651d", None),
    ],
)
def test_number_bounds(key: tuple[str, ...], value: object, expected: object) -> None:
    data = nest(key, value)
    if expected is None:
        with pytest.raises(ConfigError, match=".".join(key)):
            load_config(data=data, env={})
        return
    config: object = load_config(data=data, env={})
    for part in key:
        config = getattr(config, part)
    assert str(config) == str(expected)


def file_problems(tmp_path: Path, text: str) -> list[str]:
    """The problems ``load_config`` lists for a config file holding ``text``."""
    path = tmp_path / "otedama.yaml"
    path.write_text(text)
    with pytest.raises(ConfigError) as info:
        load_config(path, env={})
    return [problem.replace(str(path), "FILE") for problem in info.value.problems]


def test_a_yaml_whole_number_of_thousands_of_digits_is_a_config_error(tmp_path: Path) -> None:
    [problem] = file_problems(tmp_path, "stratum:\n  max_workers: " + "9" * 5000 + "\n")
    assert problem.startswith("FILE: not valid YAML at line 2, column 16: a number of 5000")


# -- duplicate keys -----------------------------------------------------------------------


def test_a_second_section_is_an_error_with_both_lines(tmp_path: Path) -> None:
    text = (
        "stratum:\n  address: 127.0.0.1:3333\npool:\n  fee_percentage: 1\n"
        "stratum:\n  address: 0.0.0.0:3333\n"
    )
    assert file_problems(tmp_path, text) == [
        'FILE: not valid YAML at line 5, column 1: duplicate key "stratum" '
        "(first at line 1, again at line 5)"
    ]


def test_a_duplicate_key_inside_a_section_is_an_error(tmp_path: Path) -> None:
    text = "chain:\n  rpc:\n    - url: http://a:8332\n      user: x\n      url: http://b:8332\n"
    [problem] = file_problems(tmp_path, text)
    assert problem.endswith('duplicate key "chain.rpc[0].url" (first at line 3, again at line 5)')


def test_aliases_and_recursive_anchors_are_walked_once(tmp_path: Path) -> None:
    problems = file_problems(tmp_path, "x: &a [*a]\ny: *a\n")
    # Loaded (no duplicate reported, no endless walk), then checked as a config.
    assert [p.split(":")[0] for p in problems] == ["x", "y"]


def test_merge_keys_are_not_duplicates(tmp_path: Path) -> None:
    path = tmp_path / "merge.yaml"
    path.write_text(
        "stratum:\n  <<: {address: '127.0.0.1:3333'}\n  <<: {var_diff: true}\n"
        "  address: 127.0.0.1:4444\n"
    )
    assert load_config(path, env={}).stratum.address.port == 4444


def test_range_errors_show_the_bounds() -> None:
    with pytest.raises(ConfigError) as info:
        load_config(data={"stratum": {"share_difficulty": 0.01, "min_difficulty": 1}}, env={})
    assert (
        "stratum.share_difficulty: 0.01 is outside stratum.min_difficulty..max_difficulty "
        "(1 .. 1099511627776)"
    ) in info.value.problems


@pytest.mark.parametrize("path", sorted((ROOT / "etc").glob("*.yaml")), ids=lambda p: p.name)
def test_every_shipped_config_validates(path: Path) -> None:
    from otedama.cli import main

    assert main(["config", "validate", "--config", str(path)]) == 0


def test_production_file_logs_once_under_journald() -> None:
    """stdout is the journal under systemd; a file as well would store every line twice."""
    logging = load_config(ROOT / "etc" / "production.yaml", env={}).monitoring.logging
    assert logging.stdout and logging.file is None


@settings(max_examples=300, deadline=None)
@given(
    sats=st.integers(min_value=0, max_value=21_000_000 * 100_000_000),
    spelling=st.sampled_from(["plain", "exponent", "number"]),
)
def test_config_coin_amounts_become_the_same_satoshis_as_daemon_amounts(
    sats: int, spelling: str
) -> None:
    """The config's coins and the daemon's BTC go through one conversion (issue 8 item 12):
    any whole number of satoshis, however it is written, comes back exactly."""
    coins = Decimal(sats).scaleb(-8)
    value: object = {
        "plain": format(coins, "f"),
        "exponent": f"{sats}e-8",
        "number": int(coins) if sats % 100_000_000 == 0 else format(coins, "f"),
    }[spelling]
    assert coin_amount(value) == sats


@pytest.mark.parametrize("name", ["otedama.yaml", "regtest.yaml"])
def test_the_files_for_trying_it_listen_on_loopback_only(name: str) -> None:
    """The embedded default and the regtest file are for one machine: every listener they
    open (the start summary names them all) is on 127.0.0.1."""
    line = start_summary(load_config(ROOT / "etc" / name, env={}))
    listeners = line.split("listening on ", 1)[1].split(";")[0].split(", ")
    assert {listener.split()[0] for listener in listeners} >= {"stratum", "api", "health"}
    assert all(listener.split()[1].startswith("127.0.0.1:") for listener in listeners)

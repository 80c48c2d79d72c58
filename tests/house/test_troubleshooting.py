"""docs/troubleshooting.md quotes the node's own log lines: each still exists in the code."""

from __future__ import annotations

import pytest

from tests.conftest import ROOT

PAGE = (ROOT / "docs" / "troubleshooting.md").read_text()
SOURCE = "\n".join(path.read_text() for path in sorted((ROOT / "otedama").rglob("*.py")))

# (what the page quotes, the template in the code that writes it)
QUOTED = [
    ("the node could not start; stopping", "the node could not start; stopping"),
    ("the node could not start: {cause}", "the node could not start: {cause}"),
    (
        "Address already in use; another process (often a second node, or an old one still "
        "stopping) holds that port: find it with `ss -ltnp 'sport = :3333'`",
        "another process (often a second node, or an old one still stopping) ",
    ),
    ("ports below 1024 need\nprivileges", "ports below 1024 need privileges"),
    (
        "block templates are coming again after {count} failed attempts",
        "block templates are coming again after {count} failed attempts",
    ),
    ("invalid configuration /etc/otedama.yaml:", "invalid configuration {path}:"),
    ("block maturity check failed: {error}; retrying every 30 s", '"block maturity check"'),
    ("payout tick failed: {error}; retrying every 600 s", '"payout tick"'),
    (
        "failed: {error}; retrying every 30 s (logged once until it works again)",
        "{what} failed: {error}; retrying {retry} (logged once until it works again)",
    ),
    ("block maturity check works again after {count}", "{what} works again after {count}"),
    ("refusing to start with /etc/otedama.yaml:", "refusing to start with {path}:"),
    ("is a placeholder; set the address whose key you hold", "is a placeholder; set the address"),
    ("is a well-known\nexample address", "is a well-known example address"),
    ('duplicate key "stratum" (first at line 12, again\n  at line 40)', "duplicate key"),
    ("is outside stratum.min_difficulty..max_difficulty", 'is outside "\n'),
    ("wrong credentials (HTTP 401); check rpcuser/rpcpassword", "wrong credentials (HTTP 401)"),
    (
        "does not exist (is bitcoind running with that data dir",
        "does not exist (is bitcoind running",
    ),
    ("cannot read cookie file", "cannot read cookie file"),
    ("bitcoind is not ready (cannot reach bitcoind", "bitcoind is not ready ({error})"),
    (
        "is in initial block download (block 412000 of 871234 headers",
        "initial block download (block",
    ),
    (
        "runs chain 'test', but the node is configured for network",
        "configured for network {expected_network!r} (chain {want!r})",
    ),
    ("(create it: createdb -h", "(create it: createdb -h"),
    ("authentication failed for user 'otedama_user'", "authentication failed for user"),
    ("(is PostgreSQL running and listening there?)", "(is PostgreSQL running and listening"),
    (
        "schema is empty (no migrations applied; newest is ",
        "schema is empty (no migrations",
    ),
    (
        "run `otedama migrate up --config /etc/otedama.yaml` first",
        "run `otedama migrate up --config",
    ),
    ("getting a block template failed:", "getting a block template failed: {error}"),
    ("trying the other endpoints first", "trying the other endpoints first"),
    ("got no answer; the daemon may have it", "got no answer; the daemon may "),
    ("ledger database unavailable ({reason}); spooling shares", "ledger database unavailable"),
    ("its\ncredits will be recorded then", "its credits will be recorded then"),
    ("SHARES LOST: dropped {count} shares", "SHARES LOST: dropped {count} shares"),
    ("refused by the wallet ({error}); {total} sat restored", "refused by the wallet ({error})"),
    ("no new payouts until payout batches {batches} are reconciled", "no new payouts until"),
    ("reload refused: /etc/otedama.yaml is invalid, keeping the running config", "reload refused:"),
    ("changed; it takes effect after a restart", "changed; it takes effect after a restart"),
    ("authorize from 192.0.2.7 refused: user name must be a", "authorize from {host} refused:"),
    ("user name must be a mainnet payout address[.worker];", "payout address[.worker]; "),
    ("more stratum authorizations refused in", "more stratum authorizations refused in"),
]


@pytest.mark.parametrize(("quoted", "template"), QUOTED, ids=[q for q, _ in QUOTED])
def test_each_quoted_line_is_on_the_page_and_in_the_code(quoted: str, template: str) -> None:
    assert quoted in PAGE
    assert template in SOURCE, f"the code no longer writes {template!r}: update the page"


def test_the_page_has_at_least_ten_problems() -> None:
    assert PAGE.count("\n### ") >= 10

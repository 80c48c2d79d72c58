"""``otedama api token``: create prints once and stores the hash; bad input is explained."""

from __future__ import annotations

import json
from pathlib import Path

import pytest
from sqlalchemy import select

from otedama import cli
from otedama.api.tokens import token_hash
from otedama.ledger.tables import api_tokens
from tests.api.support import devnet_config, migrated_engine


def test_create_list_revoke_and_their_errors(
    tmp_path: Path, capsys: pytest.CaptureFixture[str]
) -> None:
    engine = migrated_engine(tmp_path)
    audit = tmp_path / "audit.log"
    config = devnet_config(
        tmp_path,
        "api:\n  auth:\n    token_expiry: 2h\n"
        f"security:\n  audit:\n    enabled: true\n    log_file: {audit}\n",
    )
    path = str(config.source)

    assert cli.main(["api", "token", "create", "--name", "ops", "--config", path]) == 0
    token = capsys.readouterr().out.splitlines()[0]
    with engine.begin() as connection:
        row = connection.execute(select(api_tokens)).one()
    assert row.token_hash == token_hash(token) and token not in repr(tuple(row))
    assert row.expires_at - row.created_at == 7200.0  # api.auth.token_expiry

    assert (
        cli.main(["api", "token", "create", "--name", "x", "--expires", "soon", "--config", path])
        == 1
    )
    assert "--expires: expected a duration" in capsys.readouterr().err
    assert cli.main(["api", "token", "create", "--name", "a b", "--config", path]) == 1
    assert "--name: token name must be" in capsys.readouterr().err

    assert cli.main(["api", "token", "list", "--config", path]) == 0
    listing = capsys.readouterr().out
    assert "ops" in listing and "active" in listing and token not in listing
    assert cli.main(["api", "token", "revoke", "nobody", "--config", path]) == 1
    assert "no active token with id or name 'nobody'" in capsys.readouterr().err
    assert cli.main(["api", "token", "revoke", str(row.id), "--config", path]) == 0
    assert cli.main(["api", "token", "list", "--config", path]) == 0
    assert "revoked" in capsys.readouterr().out
    # Each create and revoke is an audit line (refused input before the database is not).
    lines = [json.loads(line) for line in audit.read_text().splitlines()]
    assert [(e["action"], e["target"], e["result"]) for e in lines] == [
        ("token.create", "ops", "ok"),
        ("token.revoke", "nobody", "no active token"),
        ("token.revoke", str(row.id), "ok"),
    ]
    assert lines[0]["detail"] == {"id": row.id, "expires_at": row.expires_at}
    assert all(e["actor"].endswith("(otedama api token)") for e in lines)


def test_an_unmigrated_database_names_the_migrate_command(
    tmp_path: Path, capsys: pytest.CaptureFixture[str]
) -> None:
    path = str(devnet_config(tmp_path).source)
    assert cli.main(["api", "token", "create", "--name", "ops", "--config", path]) == 1
    assert "otedama migrate up --config" in capsys.readouterr().err

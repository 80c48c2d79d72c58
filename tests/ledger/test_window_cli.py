"""``otedama stats --verify-window``: the running totals against a recount of the shares."""

from __future__ import annotations

from collections.abc import Callable
from pathlib import Path

import pytest
from sqlalchemy import update

from otedama import cli
from otedama.ledger import db
from otedama.ledger.shares import ShareRecord, ShareSpool, ShareWriter
from otedama.ledger.tables import window_totals

T0 = 1_700_000_000.0


def write_shares(url: str, spool: Path) -> None:
    engine = db.make_engine(url, pool_size=1)
    writer = ShareWriter(engine, ShareSpool(spool), 30.0)
    for n in range(6):
        batch = [
            ShareRecord(T0 + n * 10 + k, f"bcrt1qaddr{k % 3}", "rig", 0.25 * (k + 1), "j", 1)
            for k in range(4)
        ]
        assert writer.write(f"batch{n}", batch, 0.0).outcome == "stored"
    engine.dispose()


def corrupt(url: str) -> None:
    engine = db.make_engine(url, pool_size=1)
    with engine.begin() as connection:
        connection.execute(
            update(window_totals).where(window_totals.c.address == "bcrt1qaddr1").values(weight="3")
        )
    engine.dispose()


def test_verify_window_says_ok_then_finds_a_corrupted_total_and_rebuild_repairs_it(
    db_url: str,
    tmp_path: Path,
    make_config: Callable[[str], str],
    capsys: pytest.CaptureFixture[str],
) -> None:
    write_shares(db_url, tmp_path / "spool")
    config = make_config(db_url)

    assert cli.main(["stats", "--verify-window", "--config", config]) == 0
    assert "PPLNS window totals OK: 3 addresses" in capsys.readouterr().out

    corrupt(db_url)
    assert cli.main(["stats", "--verify-window", "--config", config]) == 1
    out = capsys.readouterr().out
    assert "DIFFER" in out and "bcrt1qaddr1" in out and "bcrt1qaddr0" not in out

    assert cli.main(["stats", "--verify-window", "--rebuild", "--config", config]) == 0
    assert "rebuilt from the shares table: PPLNS window totals OK" in capsys.readouterr().out
    assert cli.main(["stats", "--verify-window", "--config", config]) == 0


def test_rebuild_without_verify_window_is_refused(
    tmp_path: Path, make_config: Callable[[str], str], capsys: pytest.CaptureFixture[str]
) -> None:
    config = make_config(f"sqlite:///{tmp_path / 'x.sqlite'}")
    assert cli.main(["stats", "--rebuild", "--config", config]) == 1
    assert "--rebuild goes with --verify-window" in capsys.readouterr().err

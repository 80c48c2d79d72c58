"""``otedama bench pplns`` at a small size: the split adds up and the figures are printed."""

from __future__ import annotations

import json

import pytest

from otedama import cli
from otedama.bench.pplns import make_window, run


def test_the_pplns_bench_prints_its_figures_as_json(capsys: pytest.CaptureFixture[str]) -> None:
    args = ["bench", "pplns", "--shares", "2000", "--addresses", "50", "--repeat", "2", "--json"]
    assert cli.main(args) == 0
    figures = json.loads(capsys.readouterr().out)
    assert figures["shares"] == 2000 and figures["repeat"] == 2
    assert 0 < figures["addresses_credited"] <= 50
    assert figures["total_seconds"] == figures["aggregate_seconds"] + figures["split_seconds"]


def test_the_window_is_the_same_for_a_seed() -> None:
    assert make_window(100, 5, seed=7) == make_window(100, 5, seed=7)
    assert {owner for owner, _ in make_window(1000, 5, seed=7)} <= {
        f"bc1q{index:038d}" for index in range(5)
    }


def test_every_run_checks_the_split_adds_up() -> None:
    result = run(500, 20, seed=3, repeat=1)
    assert result.addresses_credited == len({owner for owner, _ in make_window(500, 20, 3)})


@pytest.mark.parametrize("option", ["--shares", "--addresses", "--repeat"])
def test_non_positive_sizes_are_refused(option: str) -> None:
    assert cli.main(["bench", "pplns", option, "0"]) == 2


def test_the_read_bench_weighs_a_block_from_the_totals_and_the_scan_alike(
    capsys: pytest.CaptureFixture[str],
) -> None:
    """--read sqlite: the window goes through the share batches into a migrated SQLite
    file, and a block's split from the running totals equals the full scan's."""
    args = ["bench", "pplns", "--shares", "3000", "--addresses", "40", "--repeat", "1"]
    assert cli.main([*args, "--read", "sqlite", "--json"]) == 0
    read = json.loads(capsys.readouterr().out)["read"]
    assert read["shares"] == 3000 and 0 < read["addresses_credited"] <= 40
    assert read["totals_seconds"] > 0 and read["scan_seconds"] > 0

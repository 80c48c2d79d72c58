"""Kill the payout process at each step of a payout, restart it: no double payment, no lost
credit. On PostgreSQL and SQLite, against a real devnet wallet in its own process.

The payout process is ``payout_crash_driver.py``; it SIGKILLs itself at the named step
through the processor's ``crash_hook`` test seam. The devnet (``payout_devnet_server.py``)
keeps running across the kills, as bitcoind would.
"""

from __future__ import annotations

import json
import signal
from collections.abc import Iterator
from functools import partial
from pathlib import Path
from typing import Any

import pytest
from payout_support import (
    DevnetProcess,
    batch_states,
    credit,
    devnet_address,
    on_database,
    run_driver,
    spendable,
)

from otedama.ledger.payouts import CRASH_POINTS
from otedama.ledger.stats import journal_total
from otedama.ledger.tables import BATCH_CONFIRMED, BATCH_SENT

#: Each case: the steps the process is killed at, one run each, before a clean run.
CRASH_SEQUENCES = [
    ("batch_committed",),
    ("wallet_called",),
    ("txid_recorded",),
    # Killed at every step, the later kills happening during the recovery runs.
    ("batch_committed", "wallet_called", "txid_recorded"),
]
#: What the clean run after the kills reports about batch 1.
RECOVERY = {
    ("batch_committed",): "resent",
    ("wallet_called",): "recovered",
    ("txid_recorded",): None,
    ("batch_committed", "wallet_called", "txid_recorded"): None,
}


@pytest.fixture
def devnet(tmp_path: Path) -> Iterator[DevnetProcess]:
    process = DevnetProcess(tmp_path / "devnet")
    try:
        process.fund_wallet()
        yield process
    finally:
        process.stop()


def last_report(stdout: str) -> dict[str, Any]:
    report: dict[str, Any] = json.loads(stdout.strip().splitlines()[-1])
    return report


@pytest.mark.parametrize("crashes", CRASH_SEQUENCES, ids="-then-".join)
def test_payout_killed_at_a_step_and_restarted_pays_each_balance_exactly_once(
    db_url: str, tmp_path: Path, devnet: DevnetProcess, crashes: tuple[str, ...]
) -> None:
    assert set(crashes) <= set(CRASH_POINTS)
    owed = {devnet_address(): 300_000 + 1000 * i for i in range(3)}
    on_database(db_url, partial(credit, amounts=owed))
    run = partial(run_driver, db_url, tmp_path / "spool", wallet_url=devnet.url)

    for step in crashes:
        killed = run(crash_at=step)
        assert killed.returncode == -signal.SIGKILL, (step, killed.stdout, killed.stderr)

    clean = run()
    assert clean.returncode == 0, clean.stderr
    report = last_report(clean.stdout)
    recovery = RECOVERY[crashes]
    for outcome in ("recovered", "resent", "sent", "failed", "unresolved"):
        assert report[outcome] == ([1] if outcome == recovery else []), (outcome, report)

    # Exactly one wallet transaction paid every balance exactly once.
    sends = devnet.sends()
    assert {entry["comment"] for entry in sends} == {"otedama-payout-1"}
    [txid] = {entry["txid"] for entry in sends}
    assert devnet.paid() == owed
    assert on_database(db_url, batch_states) == [(1, BATCH_SENT, txid)]
    assert on_database(db_url, spendable) == dict.fromkeys(owed, 0)
    assert on_database(db_url, journal_total) == 0

    # Once mined, the batch confirms; running again pays nobody a second time.
    [block_hash] = devnet.rpc("generatetoaddress", 1, devnet_address())
    again = run()
    assert again.returncode == 0, again.stderr
    assert last_report(again.stdout)["confirmed"] == [1]
    assert on_database(db_url, batch_states) == [(1, BATCH_CONFIRMED, txid)]
    assert devnet.paid() == owed
    block = devnet.rpc("getblock", block_hash, 2)
    [payout_tx] = [tx for tx in block["tx"] if tx["txid"] == txid]
    outputs = {
        out["scriptPubKey"].get("address"): int(out["value"] * 100_000_000)
        for out in payout_tx["vout"]
    }
    assert {a: outputs[a] for a in owed} == owed

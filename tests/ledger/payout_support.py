"""Helpers shared by the payout tests: ledger fixtures data, a devnet in its own process,
and the crash driver's command line.

The devnet runs in a separate process (``payout_devnet_server.py``) so that it outlives
the payout process the crash tests kill, as a real bitcoind would.
"""

from __future__ import annotations

import json
import os
import subprocess
import sys
import urllib.request
import uuid
from collections.abc import Callable, Mapping
from decimal import Decimal
from pathlib import Path
from typing import Any, TypeVar

from sqlalchemy import Connection, insert, select

from otedama.chain.address import script_to_address
from otedama.chain.params import get_network
from otedama.ledger.db import make_engine
from otedama.ledger.stats import balances
from otedama.ledger.tables import CONFIRMED, CREDIT, blocks, journal, payout_batches

HERE = Path(__file__).resolve().parent
ROOT = HERE.parents[1]
DRIVER = HERE / "payout_crash_driver.py"
DEVNET_SERVER = HERE / "payout_devnet_server.py"

T = TypeVar("T")


def on_database(url: str, fn: Callable[[Connection], T]) -> T:
    """Run ``fn`` in one transaction on the database at ``url``, from plain (sync) code."""
    engine = make_engine(url, pool_size=1)
    try:
        with engine.begin() as connection:
            return fn(connection)
    finally:
        engine.dispose()


def credit(connection: Connection, amounts: Mapping[str, int], status: str = CONFIRMED) -> int:
    """A block in ``status`` whose credits are ``amounts``; returns its id."""
    block_id: int = connection.execute(
        insert(blocks).returning(blocks.c.id),
        {
            "height": 1,
            "hash": uuid.uuid4().hex * 2,
            "finder_address": next(iter(amounts)),
            "finder_worker": "rig",
            "reward": sum(amounts.values()),
            "scheme": "PPLNS",
            "status": status,
            "confirmations": 100 if status == CONFIRMED else 1,
            "found_at": 1.0,
            "updated_at": 1.0,
        },
    ).scalar_one()
    connection.execute(
        insert(journal),
        [
            {
                "created_at": 1.0,
                "address": address,
                "kind": CREDIT,
                "amount": amount,
                "block_id": block_id,
                "batch_id": None,
                "note": "test credit",
            }
            for address, amount in amounts.items()
        ],
    )
    return block_id


def spendable(connection: Connection) -> dict[str, int]:
    """Spendable satoshis per address (zeros included)."""
    return {a: b.spendable for a, b in balances(connection).items()}


def journal_rows(connection: Connection, kind: str) -> list[tuple[str, int, int | None]]:
    """(address, amount, batch id) of every journal entry of ``kind``, in order."""
    rows = connection.execute(
        select(journal.c.address, journal.c.amount, journal.c.batch_id)
        .where(journal.c.kind == kind)
        .order_by(journal.c.id)
    )
    return [(r.address, int(r.amount), r.batch_id) for r in rows]


def batch_states(connection: Connection) -> list[tuple[int, str, str | None]]:
    """(id, state, txid) of every payout batch, in order."""
    rows = connection.execute(
        select(payout_batches.c.id, payout_batches.c.state, payout_batches.c.txid).order_by(
            payout_batches.c.id
        )
    )
    return [(r.id, r.state, r.txid) for r in rows]


def devnet_address() -> str:
    """A fresh P2WPKH address on the devnet (nobody's wallet owns it)."""
    address = script_to_address(b"\x00\x14" + os.urandom(20), get_network("devnet"))
    assert address is not None
    return address


class DevnetProcess:
    """The embedded devnet in its own process, with a blocking JSON-RPC client for tests."""

    def __init__(self, data_dir: Path) -> None:
        self.process = subprocess.Popen(
            [sys.executable, str(DEVNET_SERVER), str(data_dir)],
            stdout=subprocess.PIPE,
            stderr=subprocess.PIPE,
            env=driver_env(),
            text=True,
        )
        assert self.process.stdout is not None
        line = self.process.stdout.readline()
        if not line:
            self.process.wait(timeout=10)
            raise RuntimeError(f"devnet process failed to start: {self.process.stderr.read()}")  # type: ignore[union-attr]
        self.url: str = json.loads(line)["url"]

    def rpc(self, method: str, *params: Any) -> Any:
        """Call ``method``; returns the result, raises ``RuntimeError`` with the RPC error."""
        body = json.dumps({"jsonrpc": "2.0", "id": 1, "method": method, "params": list(params)})
        request = urllib.request.Request(
            self.url, data=body.encode(), headers={"Content-Type": "application/json"}
        )
        with urllib.request.urlopen(request, timeout=60) as response:
            reply = json.loads(response.read(), parse_float=Decimal)
        if reply.get("error"):
            raise RuntimeError(f"devnet {method}: {reply['error']}")
        return reply["result"]

    def fund_wallet(self) -> str:
        """Mine past coinbase maturity to a wallet address; returns that address."""
        address: str = self.rpc("getnewaddress")
        self.rpc("generatetoaddress", 101, address)
        return address

    def sends(self) -> list[dict[str, Any]]:
        """Every ``send`` entry of the wallet (one per output), oldest first."""
        return [e for e in self.rpc("listtransactions", "*", 100_000) if e["category"] == "send"]

    def paid(self) -> dict[str, int]:
        """Satoshis the wallet sent to each address, over all its transactions."""
        totals: dict[str, int] = {}
        for entry in self.sends():
            sats = int(-entry["amount"] * 100_000_000)
            totals[entry["address"]] = totals.get(entry["address"], 0) + sats
        return totals

    def stop(self) -> None:
        self.process.terminate()
        try:
            self.process.wait(timeout=10)
        except subprocess.TimeoutExpired:
            self.process.kill()
            self.process.wait()
        for stream in (self.process.stdout, self.process.stderr):
            if stream is not None:
                stream.close()


def driver_env() -> dict[str, str]:
    """The environment for the helper processes: this tree's ``otedama`` importable."""
    env = dict(os.environ)
    env["PYTHONPATH"] = os.pathsep.join(filter(None, [str(ROOT), env.get("PYTHONPATH")]))
    return env


def run_driver(
    db_url: str,
    spool: Path,
    *,
    wallet_url: str | None = None,
    wallet_file: Path | None = None,
    crash_at: str | None = None,
    minimum: int = 100_000,
) -> subprocess.CompletedProcess[str]:
    """Run the payout process once (start-up tick, then stop), maybe killed at ``crash_at``."""
    command = [sys.executable, str(DRIVER), "--db", db_url, "--spool", str(spool)]
    command += ["--minimum", str(minimum)]
    if wallet_url is not None:
        command += ["--wallet-url", wallet_url]
    if wallet_file is not None:
        command += ["--wallet-file", str(wallet_file)]
    if crash_at is not None:
        command += ["--crash-at", crash_at]
    return subprocess.run(
        command, capture_output=True, text=True, env=driver_env(), timeout=90, check=False
    )

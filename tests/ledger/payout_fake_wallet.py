"""A wallet standing in for bitcoind's in payout tests, kept in a JSON file.

It implements :class:`otedama.ledger.payouts.Wallet` the way Bitcoin Core's wallet RPC
behaves for what payouts use: ``sendmany`` with a comment, ``gettransaction``,
``listtransactions`` (one ``send`` entry per output, oldest first, amounts in negative
``Decimal`` BTC), and the error codes -5 (invalid address or unknown txid), -6
(insufficient funds) and -13 (locked). Every send is written to the file (atomically,
fsynced) before the call returns, so a test can kill the process that called it and a
new process reading the same file sees exactly what the "wallet" did — the way a real
wallet outlives a crashed pool. The contract tests run the same checks on this fake and
on a real node's wallet.
"""

from __future__ import annotations

import hashlib
import json
import os
import re
from collections.abc import Mapping
from decimal import Decimal
from pathlib import Path
from typing import Any

COIN = 100_000_000

#: Roughly what a Bitcoin address looks like: bech32 on a known prefix, or base58.
_ADDRESS = re.compile(
    r"^(?:(?:bc|tb|bcrt)1[02-9ac-hj-np-z]{8,87}|[13mn2][1-9A-HJ-NP-Za-km-z]{25,34})$"
)


class WalletError(Exception):
    """A JSON-RPC error reply from the wallet: ``code`` and ``message`` as bitcoind has them."""

    def __init__(self, code: int, message: str) -> None:
        super().__init__(f"wallet error {code}: {message}")
        self.code = code
        self.message = message


class WalletTimeout(Exception):
    """The reply did not come back (whether the wallet acted is unknown to the caller)."""


def btc(sats: int) -> Decimal:
    """Satoshis as a Decimal amount of BTC, as bitcoind's JSON shows them."""
    return Decimal(sats) / COIN


class FileWallet:
    """A persistent fake wallet: its sends, balance and lock live in ``path``."""

    def __init__(self, path: Path | str, *, balance: int | None = None, now: float = 0.0) -> None:
        self.path = Path(path)
        self.now = now
        #: One-shot faults for the next ``send_many`` (in memory only).
        self._next_fault: str | None = None
        self._next_error: WalletError | None = None
        if not self.path.exists():
            self._save({"balance": balance, "locked": False, "txs": [], "received": []})
        elif balance is not None:
            state = self._load()
            state["balance"] = balance
            self._save(state)

    # -- file ------------------------------------------------------------------------

    def _load(self) -> dict[str, Any]:
        state: dict[str, Any] = json.loads(self.path.read_text(encoding="utf-8"))
        return state

    def _save(self, state: dict[str, Any]) -> None:
        temp = self.path.with_name(self.path.name + ".tmp")
        with open(temp, "w", encoding="utf-8") as f:
            json.dump(state, f, sort_keys=True)
            f.flush()
            os.fsync(f.fileno())
        os.replace(temp, self.path)

    # -- the Wallet protocol -----------------------------------------------------------

    async def send_many(self, amounts: Mapping[str, int], comment: str) -> str:
        if self._next_error is not None:
            error, self._next_error = self._next_error, None
            raise error
        fault, self._next_fault = self._next_fault, None
        if fault == "timeout_unsent":
            raise WalletTimeout("no reply from the wallet within 30 s")
        state = self._load()
        if state["locked"]:
            raise WalletError(
                -13, "Error: Please enter the wallet passphrase with walletpassphrase first."
            )
        if not amounts:
            raise WalletError(-8, "Invalid parameter, amounts are empty")
        for address, sats in amounts.items():
            if not _ADDRESS.match(address):
                raise WalletError(-5, f"Invalid Bitcoin address: {address}")
            if not isinstance(sats, int) or isinstance(sats, bool) or sats <= 0:
                raise WalletError(-3, f"Invalid amount for send: {sats!r}")
        total = sum(amounts.values())
        if state["balance"] is not None and total > state["balance"]:
            raise WalletError(-6, "Insufficient funds")
        digest = hashlib.sha256(
            json.dumps([len(state["txs"]), comment, dict(amounts)], sort_keys=True).encode()
        )
        txid = digest.hexdigest()
        state["txs"].append(
            {
                "txid": txid,
                "comment": comment,
                "amounts": dict(amounts),
                "confirmations": 0,
                "time": int(self.now),
                "position": len(state["txs"]) + len(state["received"]),
            }
        )
        if state["balance"] is not None:
            state["balance"] -= total
        self._save(state)
        if fault == "timeout_sent":
            raise WalletTimeout("no reply from the wallet within 30 s (it did send)")
        return txid

    async def get_transaction(self, txid: str) -> dict[str, Any]:
        for tx in self._load()["txs"]:
            if tx["txid"] == txid:
                return self._tx_view(tx)
        raise WalletError(-5, "Invalid or non-wallet transaction id")

    async def list_transactions(self, count: int = 10) -> list[dict[str, Any]]:
        state = self._load()
        records = sorted(state["txs"] + state["received"], key=lambda r: r["position"])
        entries: list[dict[str, Any]] = []
        for record in records:
            if "comment" not in record:  # coins received
                entries.append(
                    {
                        "category": "receive",
                        "amount": btc(record["sats"]),
                        "txid": record["txid"],
                        "confirmations": 100,
                        "time": record["time"],
                    }
                )
                continue
            for address, sats in record["amounts"].items():
                entries.append(
                    {
                        "address": address,
                        "category": "send",
                        "amount": -btc(sats),
                        "txid": record["txid"],
                        "comment": record["comment"],
                        "confirmations": record["confirmations"],
                        "time": record["time"],
                    }
                )
        return entries[-count:] if count > 0 else []

    # -- what a test does to the "wallet" ------------------------------------------------

    def _tx_view(self, tx: Mapping[str, Any]) -> dict[str, Any]:
        details = [
            {"address": a, "category": "send", "amount": -btc(s)} for a, s in tx["amounts"].items()
        ]
        return {
            "txid": tx["txid"],
            "comment": tx["comment"],
            "confirmations": tx["confirmations"],
            "amount": -btc(sum(tx["amounts"].values())),
            "details": details,
            "time": tx["time"],
        }

    def mine(self, blocks: int = 1) -> None:
        """Bury every transaction ``blocks`` deeper, as mining blocks would."""
        state = self._load()
        for tx in state["txs"]:
            tx["confirmations"] += blocks
        self._save(state)

    def conflict(self, txid: str) -> None:
        """Mark a transaction as conflicting with the chain (negative confirmations)."""
        state = self._load()
        for tx in state["txs"]:
            if tx["txid"] == txid:
                tx["confirmations"] = -1
        self._save(state)

    def receive(self, count: int, sats: int = COIN) -> None:
        """``count`` unrelated incoming payments now (coinbase income), lengthening the history."""
        state = self._load()
        for _ in range(count):
            position = len(state["txs"]) + len(state["received"])
            state["received"].append(
                {
                    "txid": f"{position:064x}",
                    "sats": sats,
                    "time": int(self.now),
                    "position": position,
                }
            )
            if state["balance"] is not None:
                state["balance"] += sats
        self._save(state)

    def set_locked(self, locked: bool) -> None:
        state = self._load()
        state["locked"] = locked
        self._save(state)

    def set_balance(self, balance: int | None) -> None:
        state = self._load()
        state["balance"] = balance
        self._save(state)

    def fail_next_send(self, error: WalletError) -> None:
        """The next ``send_many`` is answered with ``error`` (nothing sent)."""
        self._next_error = error

    def clear_faults(self) -> None:
        """Forget any fault set for the next ``send_many``."""
        self._next_error = None
        self._next_fault = None

    def time_out_next_send(self, *, after_sending: bool) -> None:
        """The next ``send_many`` gets no reply; with ``after_sending`` the wallet did pay."""
        self._next_fault = "timeout_sent" if after_sending else "timeout_unsent"

    @property
    def transactions(self) -> list[dict[str, Any]]:
        """Every send so far, as stored: txid, comment, amounts (sats), confirmations."""
        txs: list[dict[str, Any]] = self._load()["txs"]
        return txs

    def paid(self) -> dict[str, int]:
        """Total satoshis sent to each address over all transactions."""
        totals: dict[str, int] = {}
        for tx in self.transactions:
            for address, sats in tx["amounts"].items():
                totals[address] = totals.get(address, 0) + sats
        return totals

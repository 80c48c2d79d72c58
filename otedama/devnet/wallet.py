"""The devnet's wallet: the outputs paying its scripts, and payments built from them.

The wallet owns the pool's wallet address (from config) or addresses derived from its own
random seed, plus one change address. It has no private keys: the devnet does not check
signatures, so inputs carry dummy unlocking data of realistic size (a 71-byte "signature"
and a 33-byte "public key" in the witness for P2WPKH, in the scriptSig for P2PKH). The
payments are otherwise real transactions that enter the mempool and the next templates.

Coinbase outputs become spendable, and count in the balance, at 101 confirmations, exactly
like Bitcoin Core's wallet (consensus allows spending one block earlier).
"""

from __future__ import annotations

from collections import OrderedDict
from collections.abc import Iterable
from dataclasses import dataclass
from typing import Any

from otedama.chain.address import address_to_script, script_to_address
from otedama.chain.hashing import hash160, sha256
from otedama.chain.serialize import Block, Transaction, TxIn, TxOut, push_data
from otedama.devnet.chain import (
    BlockIndex,
    ChainError,
    Coin,
    DevnetChain,
    OutPoint,
    is_coinbase,
    tx_weight,
)
from otedama.devnet.jsonrpc import Amount

__all__ = ["DUST_LIMIT", "FEE_RATE", "DevnetWallet", "WalletError", "WalletTx"]

FEE_RATE = 2
"""Fee rate of the wallet's payments, satoshis per virtual byte."""

DUST_LIMIT = 546
"""Outputs below this many satoshis are refused (and change below it goes to the fee)."""

ADDRESS_TYPES = ("bech32", "legacy", "p2sh-segwit")


class WalletError(ValueError):
    """A payment the wallet cannot make; the message is Core's."""


@dataclass
class WalletTx:
    """A transaction that pays or spends the wallet, with what only the wallet knows."""

    tx: Transaction
    txid: bytes
    time: int
    comment: str = ""
    comment_to: str = ""
    fee: int | None = None


@dataclass(frozen=True)
class _Spendable:
    outpoint: OutPoint
    value: int
    script: bytes


class DevnetWallet:
    """Wallet bookkeeping over a ``DevnetChain`` (which calls it for every connected block)."""

    def __init__(
        self,
        chain: DevnetChain,
        seed: bytes,
        addresses: Iterable[str] = (),
        fixed_address: str | None = None,
        imported: Iterable[str] = (),
    ) -> None:
        self.chain = chain
        self.params = chain.params
        self.seed = seed
        self.receive: OrderedDict[bytes, str] = OrderedDict()
        self.issued: list[str] = []
        self.imported: list[str] = []
        if fixed_address is not None:
            self._own(fixed_address)
        for address in addresses:
            self._own(address)
            self.issued.append(address)
        for address in imported:
            self._own(address)
            self.imported.append(address)
        if not self.receive:
            self.new_address()
        self.change_script = b"\x00\x14" + hash160(self._pubkey(b"change", 0))
        self.records: OrderedDict[bytes, WalletTx] = OrderedDict()
        chain.connect_hooks.append(self._block_connected)

    # -- addresses ----------------------------------------------------------------------

    @property
    def default_address(self) -> str:
        """The first address: the configured wallet address, else the first derived one."""
        return next(iter(self.receive.values()))

    def new_address(self, address_type: str = "bech32") -> str:
        """A new receiving address of ``address_type`` (bech32, legacy or p2sh-segwit)."""
        if address_type not in ADDRESS_TYPES:
            raise WalletError(f"Unknown address type '{address_type}'")
        key_hash = hash160(self._pubkey(b"receive", len(self.issued)))
        if address_type == "bech32":
            script = b"\x00\x14" + key_hash
        elif address_type == "legacy":
            script = b"\x76\xa9\x14" + key_hash + b"\x88\xac"
        else:
            script = b"\xa9\x14" + hash160(b"\x00\x14" + key_hash) + b"\x87"
        address = script_to_address(script, self.params)
        assert address is not None
        self.receive[script] = address
        self.issued.append(address)
        return address

    def import_address(self, address: str, rescan: bool = True) -> None:
        """Own ``address`` too (another node's pool address on a shared devnet).

        Without keys there is no difference between watching and spending: its outputs
        count in the balance and pay for ``send_many``. ``rescan`` records the best
        chain's and the mempool's transactions that pay it.
        """
        script = address_to_script(address, self.params)
        if script in self.receive:
            return
        self.receive[script] = address
        self.imported.append(address)
        if not rescan:
            return
        for entry in self.chain.active[1:]:
            block = entry.block()
            for tx in block.transactions:
                if any(o.script_pubkey == script for o in tx.outputs):
                    self.records.setdefault(tx.txid(), WalletTx(tx, tx.txid(), entry.header.time))
        for mempool_entry in self.chain.mempool.values():
            if any(o.script_pubkey == script for o in mempool_entry.tx.outputs):
                self.records.setdefault(
                    mempool_entry.txid,
                    WalletTx(mempool_entry.tx, mempool_entry.txid, mempool_entry.time),
                )

    def is_mine(self, script: bytes) -> bool:
        """Whether ``script`` is one of the wallet's (receiving or change)."""
        return script in self.receive or script == self.change_script

    def _own(self, address: str) -> None:
        self.receive[address_to_script(address, self.params)] = address

    def _pubkey(self, branch: bytes, index: int) -> bytes:
        return b"\x02" + sha256(self.seed + branch + index.to_bytes(4, "little"))

    # -- tracking -----------------------------------------------------------------------

    def _block_connected(self, entry: BlockIndex, block: Block, spent: list[list[Coin]]) -> None:
        for tx, coins in zip(block.transactions, spent, strict=True):
            txid = tx.txid()
            if txid in self.records:
                continue
            if any(self.is_mine(o.script_pubkey) for o in tx.outputs) or any(
                self.is_mine(c.script) for c in coins
            ):
                self.records[txid] = WalletTx(tx, txid, entry.header.time)

    def add_record(self, record: WalletTx) -> None:
        """Remember a transaction the wallet made (used when reloading)."""
        self.records[record.txid] = record

    def confirmations(self, txid: bytes) -> int:
        """Depth of the transaction on the best chain; 0 when unconfirmed."""
        located = self.chain.tx_index.get(txid)
        return 0 if located is None else self.chain.tip.height - located[0].height + 1

    def _coinbase_mature(self, height: int) -> bool:
        depth = self.chain.tip.height - height + 1
        return depth >= self.params.coinbase_maturity + 1

    def spendable(self, minconf: int = 1) -> list[_Spendable]:
        """Coins the wallet can spend now: confirmed (``minconf``; 0 adds its own
        unconfirmed change), mature, and not spent by a mempool transaction."""
        chain = self.chain
        out: list[_Spendable] = []
        scripts = [*self.receive, self.change_script]
        for script in scripts:
            for op, coin in chain.coins_for_script(script):
                if op in chain.mempool_spent:
                    continue
                if coin.coinbase and not self._coinbase_mature(coin.height):
                    continue
                if chain.tip.height - coin.height + 1 < minconf:
                    continue
                out.append(_Spendable(op, coin.value, script))
        if minconf <= 0:
            for txid, record in self.records.items():
                if txid not in chain.mempool or record.fee is None:
                    continue
                for n, txout in enumerate(record.tx.outputs):
                    ref = chain.mempool_coin((txid, n))
                    if ref is not None and self.is_mine(txout.script_pubkey):
                        out.append(_Spendable((txid, n), ref.value, ref.script))
        return out

    def balance(self, minconf: int = 0) -> int:
        """Satoshis the wallet can spend (Core's ``getbalance``)."""
        return sum(c.value for c in self.spendable(minconf))

    def immature_balance(self) -> int:
        """Satoshis in the wallet's coinbase outputs that are not mature yet."""
        return sum(
            coin.value
            for script in self.receive
            for _, coin in self.chain.coins_for_script(script)
            if coin.coinbase and not self._coinbase_mature(coin.height)
        )

    # -- paying -------------------------------------------------------------------------

    def send_many(
        self,
        recipients: list[tuple[str, int]],
        now: int,
        comment: str = "",
        minconf: int = 1,
        subtract_fee_from: Iterable[str] = (),
    ) -> WalletTx:
        """Pay ``recipients`` (address, satoshis) in one transaction and put it in the mempool.

        Raises ``WalletError`` with Core's message (``Insufficient funds``, ...).
        """
        subtract = set(subtract_fee_from)
        outputs = [
            TxOut(amount, address_to_script(addr, self.params)) for addr, amount in recipients
        ]
        for _, amount in recipients:
            if amount < DUST_LIMIT:
                raise WalletError("Transaction amount too small")
        payers = [i for i, (addr, _) in enumerate(recipients) if addr in subtract]
        total = sum(amount for _, amount in recipients)
        coins = sorted(self.spendable(minconf), key=lambda c: (-c.value, c.outpoint))
        for count in range(1, len(coins) + 1):
            chosen = coins[:count]
            value_in = sum(c.value for c in chosen)
            fee = self._fee(chosen, outputs)
            need = total if payers else total + fee
            if value_in < need:
                continue
            paid = list(outputs)
            if payers:
                share, rest = divmod(fee, len(payers))
                for k, i in enumerate(payers):
                    value = paid[i].value - share - (rest if k == 0 else 0)
                    if value < DUST_LIMIT:
                        raise WalletError("The transaction amount is too small to pay the fee")
                    paid[i] = TxOut(value, paid[i].script_pubkey)
            change = value_in - sum(o.value for o in paid) - fee
            if change >= DUST_LIMIT:
                paid.append(TxOut(change, self.change_script))
            tx = self._build(chosen, paid)
            try:
                entry = self.chain.accept_to_mempool(tx, now)
            except ChainError as e:
                raise WalletError(f"Transaction rejected by the devnet mempool: {e}") from e
            record = WalletTx(tx, entry.txid, now, comment=comment, fee=entry.fee)
            self.records[entry.txid] = record
            return record
        raise WalletError("Insufficient funds")

    def _build(self, coins: list[_Spendable], outputs: list[TxOut]) -> Transaction:
        inputs = []
        for coin in coins:
            script_sig, witness = _dummy_unlock(coin.script)
            inputs.append(TxIn(coin.outpoint[0], coin.outpoint[1], script_sig, 0xFFFFFFFE, witness))
        return Transaction(2, tuple(inputs), tuple(outputs), self.chain.tip.height)

    def _fee(self, coins: list[_Spendable], outputs: list[TxOut]) -> int:
        sized = self._build(coins, [*outputs, TxOut(0, self.change_script)])
        return -(-tx_weight(sized) // 4) * FEE_RATE

    # -- reports ------------------------------------------------------------------------

    def get_transaction(self, txid: bytes) -> dict[str, Any]:
        """Core's ``gettransaction`` reply for a wallet transaction."""
        record = self.records.get(txid)
        if record is None:
            raise WalletError("Invalid or non-wallet transaction id")
        debit, credit = self._debit_credit(record)
        reply: dict[str, Any] = {"amount": Amount(credit - debit + (record.fee or 0))}
        if record.fee is not None:
            reply["fee"] = Amount(-record.fee)
        reply.update(self._common(record))
        reply["details"] = self._details(record)
        reply["hex"] = record.tx.serialize().hex()
        return reply

    def list_transactions(self, count: int = 10, skip: int = 0) -> list[dict[str, Any]]:
        """Core's ``listtransactions``: the last ``count`` entries after ``skip``, oldest first."""
        entries: list[dict[str, Any]] = []
        for record in self.records.values():
            common = self._common(record)
            for detail in self._details(record):
                entries.append({**detail, **common})
        end = len(entries) - skip
        return entries[max(0, end - count) : max(0, end)]

    def _debit_credit(self, record: WalletTx) -> tuple[int, int]:
        credit = sum(o.value for o in record.tx.outputs if self.is_mine(o.script_pubkey))
        debit = 0
        if record.fee is not None:
            debit = sum(o.value for o in record.tx.outputs) + record.fee
        return debit, credit

    def _common(self, record: WalletTx) -> dict[str, Any]:
        confirmations = self.confirmations(record.txid)
        common: dict[str, Any] = {"confirmations": confirmations}
        if is_coinbase(record.tx):
            common["generated"] = True
        if confirmations == 0:
            common["trusted"] = record.fee is not None and record.txid in self.chain.mempool
        located = self.chain.tx_index.get(record.txid)
        if located is not None:
            entry, position = located
            common["blockhash"] = entry.hash[::-1].hex()
            common["blockheight"] = entry.height
            common["blockindex"] = position
            common["blocktime"] = entry.header.time
        common.update(
            {
                "txid": record.txid[::-1].hex(),
                "wtxid": record.tx.wtxid()[::-1].hex(),
                "walletconflicts": [],
                "time": record.time,
                "timereceived": record.time,
            }
        )
        if record.comment:
            common["comment"] = record.comment
        if record.comment_to:
            common["to"] = record.comment_to
        common["bip125-replaceable"] = "no"
        return common

    def _details(self, record: WalletTx) -> list[dict[str, Any]]:
        details: list[dict[str, Any]] = []
        tx = record.tx
        if record.fee is not None:
            for n, out in enumerate(tx.outputs):
                if out.script_pubkey == self.change_script:
                    continue
                details.append(
                    {
                        "address": script_to_address(out.script_pubkey, self.params),
                        "category": "send",
                        "amount": Amount(-out.value),
                        "vout": n,
                        "fee": Amount(-record.fee),
                        "abandoned": False,
                    }
                )
        for n, out in enumerate(tx.outputs):
            if out.script_pubkey not in self.receive:
                continue
            details.append(
                {
                    "address": self.receive[out.script_pubkey],
                    "category": self._receive_category(record),
                    "amount": Amount(out.value),
                    "vout": n,
                }
            )
        return details

    def _receive_category(self, record: WalletTx) -> str:
        if not is_coinbase(record.tx):
            return "receive"
        located = self.chain.tx_index.get(record.txid)
        if located is None:
            return "orphan"
        return "generate" if self._coinbase_mature(located[0].height) else "immature"


def _dummy_unlock(script: bytes) -> tuple[bytes, tuple[bytes, ...]]:
    """Unlocking data of realistic size for ``script`` (never checked by the devnet)."""
    signature = b"\x30" + bytes(69) + b"\x01"
    pubkey = b"\x02" + bytes(32)
    if len(script) == 22 and script[:2] == b"\x00\x14":
        return b"", (signature, pubkey)
    if len(script) == 34 and script[:2] == b"\x51\x20":
        return b"", (bytes(64),)
    if len(script) == 34 and script[:2] == b"\x00\x20":
        return b"", (signature, b"\x51")
    if len(script) == 23 and script[:2] == b"\xa9\x14":
        return push_data(b"\x00\x14" + bytes(20)), (signature, pubkey)
    return push_data(signature) + push_data(pubkey), ()

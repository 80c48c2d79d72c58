"""The devnet node: the pure chain and wallet tied to the data directory and the clock.

``DevnetNode`` adds what the pure parts leave out: the files (through ``DevnetStore``),
the time, long polling and block generation. ``otedama.devnet.service`` serves it over
HTTP JSON-RPC. See ``docs/devnet.md``.
"""

from __future__ import annotations

import os
from collections.abc import Callable, Sequence
from fractions import Fraction
from pathlib import Path
from typing import Any

from twisted.internet.defer import Deferred
from twisted.internet.interfaces import IReactorTime
from twisted.internet.task import deferLater
from twisted.logger import Logger

from otedama.chain.address import AddressError, address_to_script
from otedama.chain.coinbase import build_coinbase
from otedama.chain.hashing import sha256d
from otedama.chain.merkle import merkle_root
from otedama.chain.params import get_network
from otedama.chain.serialize import BlockHeader, Transaction, TxOut
from otedama.chain.target import hash_to_int
from otedama.devnet.chain import ChainError, DevnetChain
from otedama.devnet.store import DevnetStore, RunInThread, StoreError, run_inline
from otedama.devnet.wallet import DevnetWallet, WalletTx

__all__ = ["LONGPOLL_TIMEOUT", "DevnetNode", "StoreError"]

LONGPOLL_TIMEOUT = 60.0
"""Seconds a long-polling ``getblocktemplate`` is held when nothing changes."""

GRIND_CHUNK = 20_000
"""Nonces tried per reactor turn by ``generatetoaddress``."""

_REPLAY_NOW = 0xFFFFFFFF
"""``now`` used when re-validating stored blocks: their time was checked on arrival."""


class DevnetNode:
    """The devnet chain with its wallet, files and waiting long polls."""

    log = Logger()

    def __init__(
        self,
        clock: IReactorTime,
        difficulty: Fraction | int | str,
        data_dir: Path,
        wallet_address: str | None = None,
        run_in_thread: RunInThread = run_inline,
    ) -> None:
        """``run_in_thread`` runs the block file's writes and fsyncs; the service passes the
        reactor's thread pool, so the reactor never waits on the disk for a block."""
        self.clock: Any = clock  # zope interfaces do not type-check without mypy-zope
        self.chain = DevnetChain(get_network("devnet"), Fraction(difficulty))
        self.store = DevnetStore(Path(data_dir), run_in_thread)
        self.wallet_address = wallet_address
        if wallet_address is not None:
            try:
                address_to_script(wallet_address, self.chain.params)
            except AddressError as e:
                raise ValueError(
                    f"the devnet wallet address {wallet_address!r} is not a devnet "
                    f"(regtest-format) address: {e}"
                ) from None
        # Replaced by load(), which reads the wallet's seed and addresses from the data dir.
        self.wallet: DevnetWallet = DevnetWallet(self.chain, b"", (), wallet_address)
        self._waiters: list[tuple[str, Deferred[None], Any]] = []
        self._invalidated: list[str] = []
        self.listeners: list[Callable[[], None]] = []
        """Called after every change of the tip or the mempool (the ZMQ notifier)."""

    # -- lifecycle ----------------------------------------------------------------------

    def load(self) -> None:
        """Open the data directory and rebuild the chain from it (every block re-checked)."""
        self.store.open()
        try:
            self._load()
        except BaseException:
            self.store.close()
            raise

    def _load(self) -> None:
        chain = self.chain
        state = self.store.read_json("state.json") or {}
        stored_bits = state.get("bits")
        if stored_bits is not None and stored_bits != f"{chain.bits:08x}":
            raise StoreError(
                f"devnet data_dir {self.store.data_dir} holds a chain made with difficulty "
                f"{state.get('difficulty')} (nBits {stored_bits}), but the configured difficulty "
                f"{chain.difficulty} needs nBits {chain.bits:08x}; use another data_dir or "
                "delete this one to start a new chain"
            )
        doc = self.store.read_json("wallet.json")
        if doc is None:
            doc = {"format": 1, "seed": os.urandom(32).hex(), "addresses": [], "transactions": []}
        chain.connect_hooks.clear()
        try:
            self.wallet = DevnetWallet(
                chain,
                bytes.fromhex(doc["seed"]),
                doc.get("addresses", []),
                self.wallet_address,
                doc.get("imported", []),
            )
            sends = [_record_from_json(item) for item in doc.get("transactions", [])]
        except (KeyError, TypeError, ValueError) as e:
            raise StoreError(
                f"{self.store.data_dir / 'wallet.json'} is not a devnet wallet ({e!r}); "
                "delete it to start a new wallet"
            ) from e
        for record in sends:
            self.wallet.add_record(record)
        count = 0
        for raw in self.store.read_blocks():
            result = chain.submit_block(raw, _REPLAY_NOW)
            count += 1
            if result.reason not in (None, "inconclusive"):
                self.log.warn(
                    "stored devnet block {hash} is not valid any more: {reason}",
                    hash=(result.block_hash or b"")[::-1].hex(),
                    reason=result.reason,
                )
        self._invalidated = [h for h in state.get("invalidated", []) if isinstance(h, str)]
        for hex_hash in self._invalidated:
            try:
                chain.invalidate_block(bytes.fromhex(hex_hash)[::-1])
            except (ChainError, ValueError):
                self.log.warn("invalidated block {hash} is not in the data dir", hash=hex_hash)
        for record in sends:
            if record.txid in chain.tx_index or record.txid in chain.mempool:
                continue
            try:
                chain.accept_to_mempool(record.tx, record.time)
            except ChainError as e:
                self.log.warn(
                    "wallet transaction {txid} cannot return to the mempool: {reason}",
                    txid=record.txid[::-1].hex(),
                    reason=str(e),
                )
        self._save_state()
        self._save_wallet()
        self.log.info(
            "devnet chain loaded from {dir}: {count} stored blocks, height {height}, tip {tip}",
            dir=str(self.store.data_dir),
            count=count,
            height=chain.tip.height,
            tip=chain.tip.hash[::-1].hex(),
        )

    def close(self) -> None:
        """Release the data directory and answer every waiting long poll."""
        for _, d, timer in self._waiters:
            if timer.active():
                timer.cancel()
            if not d.called:
                d.callback(None)
        self._waiters.clear()
        self.store.close()

    def _save_state(self) -> None:
        self.store.write_json(
            "state.json",
            {
                "format": 1,
                "genesis": self.chain.genesis.hash[::-1].hex(),
                "bits": f"{self.chain.bits:08x}",
                "difficulty": str(self.chain.difficulty),
                "invalidated": self._invalidated,
            },
        )

    def _save_wallet(self) -> None:
        wallet = self.wallet
        self.store.write_json(
            "wallet.json",
            {
                "format": 1,
                "seed": wallet.seed.hex(),
                "addresses": wallet.issued,
                "imported": wallet.imported,
                "transactions": [
                    _record_to_json(r) for r in wallet.records.values() if r.fee is not None
                ],
            },
        )

    def size_on_disk(self) -> int:
        """Bytes of the block file."""
        try:
            return self.store.blocks_path.stat().st_size
        except OSError:
            return 0

    # -- time and long polling ----------------------------------------------------------

    def now(self) -> int:
        """The clock's time in whole seconds."""
        return int(self.clock.seconds())

    def longpollid(self) -> str:
        """Core's shape: best block hash followed by a counter of mempool changes."""
        return f"{self.chain.tip.hash[::-1].hex()}{self.chain.mempool_updates}"

    def wait_for_change(self, longpollid: str) -> Deferred[None]:
        """Fires when the tip or the mempool differs from ``longpollid``, or after
        ``LONGPOLL_TIMEOUT`` seconds; at once when it already differs."""
        if longpollid != self.longpollid():
            return Deferred.fromCoroutine(_nothing())
        entry: list[tuple[str, Deferred[None], Any]] = []

        def cancel(d: Deferred[None]) -> None:
            self._drop_waiter(entry[0])

        d: Deferred[None] = Deferred(cancel)
        timer = self.clock.callLater(LONGPOLL_TIMEOUT, self._timeout, d)
        entry.append((longpollid, d, timer))
        self._waiters.append(entry[0])
        return d

    def _timeout(self, d: Deferred[None]) -> None:
        self._waiters = [w for w in self._waiters if w[1] is not d]
        if not d.called:
            d.callback(None)

    def _drop_waiter(self, waiter: tuple[str, Deferred[None], Any]) -> None:
        if waiter in self._waiters:
            self._waiters.remove(waiter)
        if waiter[2].active():
            waiter[2].cancel()

    def _changed(self) -> None:
        for listener in list(self.listeners):
            try:
                listener()
            except Exception:
                self.log.failure("devnet change listener failed")
        current = self.longpollid()
        woken = [w for w in self._waiters if w[0] != current]
        for waiter in woken:
            self._drop_waiter(waiter)
            if not waiter[1].called:
                waiter[1].callback(None)

    # -- changes ------------------------------------------------------------------------

    async def submit_block(self, raw: bytes) -> str | None:
        """Check and add a block; returns Core's ``submitblock`` result (None = accepted)
        once the block is on disk."""
        result = self.chain.submit_block(raw, self.now())
        if result.stored:
            await self.store.append_block(raw)
        block_hash = (result.block_hash or b"")[::-1].hex()
        if result.reason is None:
            self.log.info(
                "devnet block {hash} accepted at height {height}",
                hash=block_hash,
                height=self.chain.tip.height,
            )
        else:
            self.log.info(
                "devnet block {hash} not accepted: {reason}", hash=block_hash, reason=result.reason
            )
        self._changed()
        return result.reason

    def invalidate_block(self, block_hash: bytes) -> None:
        """Mark a block invalid (and remember it across restarts)."""
        self.chain.invalidate_block(block_hash)
        hex_hash = block_hash[::-1].hex()
        if hex_hash not in self._invalidated:
            self._invalidated.append(hex_hash)
        self._save_state()
        self._changed()

    def import_address(self, address: str, rescan: bool) -> None:
        """Make the wallet own ``address`` (saved, so it stays owned after a restart)."""
        self.wallet.import_address(address, rescan)
        self._save_wallet()

    def new_address(self, address_type: str) -> str:
        """A new wallet address, saved before it is handed out."""
        address = self.wallet.new_address(address_type)
        self._save_wallet()
        return address

    def send_many(
        self, recipients: list[tuple[str, int]], comment: str, minconf: int, subtract: Sequence[str]
    ) -> bytes:
        """Pay from the wallet; the transaction is saved before its txid is returned."""
        record = self.wallet.send_many(recipients, self.now(), comment, minconf, subtract)
        self._save_wallet()
        self._changed()
        self.log.info(
            "devnet wallet paid {count} outputs in {txid} (comment {comment!r})",
            count=len(recipients),
            txid=record.txid[::-1].hex(),
            comment=comment,
        )
        return record.txid

    def accept_transaction(self, tx: Transaction) -> bytes:
        """Put a transaction in the mempool (``sendrawtransaction``); raises ``ChainError``
        with Core's reject reason. Already in the mempool: its txid, as Core answers."""
        txid = tx.txid()
        if txid in self.chain.mempool:
            return txid
        if txid in self.chain.tx_index:
            raise ChainError("Transaction outputs already in utxo set")
        self.chain.accept_to_mempool(tx, self.now())
        self._changed()
        return txid

    def log_path(self) -> Path:
        """Where Core would keep its log (``getrpcinfo``); the devnet logs through the node."""
        return self.store.data_dir / "debug.log"

    async def generate(
        self, count: int, script: bytes, max_tries: int | None = None
    ) -> list[bytes]:
        """Mine ``count`` blocks paying ``script`` on top of the tip, on the CPU.

        The grind yields to the reactor every ``GRIND_CHUNK`` nonces and starts over on a
        new tip. ``max_tries`` (None: no limit) caps the nonces tried, like Core's
        ``maxtries``; the blocks found until then are returned.
        """
        mined: list[bytes] = []
        tries = max_tries if max_tries is not None else -1
        extranonce = 0
        while len(mined) < count and tries != 0:
            extranonce = (extranonce + 1) & 0xFFFFFFFF
            raw_block = self._block_for(script, extranonce)
            prefix, rest = raw_block[:76], raw_block[80:]
            target = self.chain.target
            tip = self.chain.tip
            nonce = 0
            found: int | None = None
            while found is None and tries != 0 and nonce <= 0xFFFFFFFF and self.chain.tip is tip:
                end = min(nonce + GRIND_CHUNK, 0x100000000)
                if tries > 0:
                    end = min(end, nonce + tries)
                for n in range(nonce, end):
                    if hash_to_int(sha256d(prefix + n.to_bytes(4, "little"))) <= target:
                        found = n
                        break
                if tries > 0:
                    tries -= (found - nonce + 1) if found is not None else end - nonce
                nonce = end
                if found is None and tries != 0:
                    await deferLater(self.clock, 0, lambda: None)
            if found is None:
                continue
            raw = prefix + found.to_bytes(4, "little") + rest
            if await self.submit_block(raw) is None:
                mined.append(sha256d(raw[:80]))
        return mined

    def _block_for(self, script: bytes, extranonce: int) -> bytes:
        """A block over the current template paying ``script``, nonce 0, Core-shaped coinbase
        (version 2, nSequence fffffffe, nLockTime height - 1) with a 4-byte extranonce."""
        t = self.chain.template(self.now())
        parts = build_coinbase(
            t.height,
            [TxOut(t.coinbase_value, script)],
            4,
            witness_commitment=t.witness_commitment,
            lock_time=t.height - 1,
            sequence=0xFFFFFFFE,
        )
        nonce_bytes = extranonce.to_bytes(4, "little")
        root = merkle_root([parts.txid(nonce_bytes), *(e.txid for e in t.entries)])
        header = BlockHeader(t.version, t.prev_hash, root, t.curtime, t.bits, 0)
        return parts.build_block(header, nonce_bytes, [e.tx.serialize() for e in t.entries])


async def _nothing() -> None:
    return None


def _record_to_json(record: WalletTx) -> dict[str, Any]:
    return {
        "txid": record.txid[::-1].hex(),
        "hex": record.tx.serialize().hex(),
        "time": record.time,
        "comment": record.comment,
        "comment_to": record.comment_to,
        "fee": record.fee,
    }


def _record_from_json(item: dict[str, Any]) -> WalletTx:
    tx = Transaction.parse(bytes.fromhex(item["hex"]))
    return WalletTx(
        tx,
        tx.txid(),
        int(item["time"]),
        comment=str(item.get("comment", "")),
        comment_to=str(item.get("comment_to", "")),
        fee=int(item["fee"]),
    )

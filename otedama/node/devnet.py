"""The embedded devnet: a small Bitcoin-style chain served over Bitcoin Core's JSON-RPC.

``DevnetNode`` ties the pure chain and wallet to the data directory, the clock, long
polling and block generation; ``DevnetResource`` is the HTTP JSON-RPC endpoint;
``DevnetService`` runs both inside a service tree; ``start_devnet`` starts one for tests
and for the node. See ``docs/devnet.md``.
"""

from __future__ import annotations

import base64
import hmac
import os
from collections.abc import Sequence
from dataclasses import dataclass
from fractions import Fraction
from pathlib import Path
from typing import Any

from twisted.application.service import Service
from twisted.internet.defer import CancelledError, Deferred, ensureDeferred, fail
from twisted.internet.endpoints import serverFromString
from twisted.internet.interfaces import IReactorTime
from twisted.internet.task import deferLater
from twisted.logger import Logger
from twisted.web import http
from twisted.web.resource import Resource
from twisted.web.server import NOT_DONE_YET, Request, Site

from otedama.chain.address import AddressError, address_to_script
from otedama.chain.coinbase import build_coinbase
from otedama.chain.hashing import sha256d
from otedama.chain.merkle import merkle_root
from otedama.chain.params import get_network
from otedama.chain.serialize import BlockHeader, Transaction, TxOut
from otedama.chain.target import hash_to_int
from otedama.node.devnet_chain import ChainError, DevnetChain
from otedama.node.devnet_jsonrpc import (
    RPC_MISC_ERROR,
    RpcCall,
    RpcFault,
    encode_json,
    error_reply,
    parse_body,
    result_reply,
)
from otedama.node.devnet_rpc import DevnetRpc
from otedama.node.devnet_store import DevnetStore, StoreError
from otedama.node.devnet_wallet import DevnetWallet, WalletTx

__all__ = [
    "LONGPOLL_TIMEOUT",
    "DevnetHandle",
    "DevnetNode",
    "DevnetResource",
    "DevnetService",
    "StoreError",
    "start_devnet",
]

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
    ) -> None:
        self.clock: Any = clock  # zope interfaces do not type-check without mypy-zope
        self.chain = DevnetChain(get_network("devnet"), Fraction(difficulty))
        self.store = DevnetStore(Path(data_dir))
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
        current = self.longpollid()
        woken = [w for w in self._waiters if w[0] != current]
        for waiter in woken:
            self._drop_waiter(waiter)
            if not waiter[1].called:
                waiter[1].callback(None)

    # -- changes ------------------------------------------------------------------------

    def submit_block(self, raw: bytes) -> str | None:
        """Check and add a block; returns Core's ``submitblock`` result (None = accepted)."""
        result = self.chain.submit_block(raw, self.now())
        if result.stored:
            self.store.append_block(raw)
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
            if self.submit_block(raw) is None:
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


class DevnetResource(Resource):
    """``POST /``: Bitcoin Core style JSON-RPC (single calls and batches) for the devnet."""

    isLeaf = True
    log = Logger()

    def __init__(self, rpc: DevnetRpc, credentials: tuple[str, str] | None = None) -> None:
        super().__init__()
        self.rpc = rpc
        self.credentials = credentials

    def render_GET(self, request: Request) -> bytes:
        request.setResponseCode(405)
        request.setHeader(b"content-type", b"text/plain")
        return b"JSONRPC server handles only POST requests"

    def render_POST(self, request: Request) -> int | bytes:
        if self.credentials is not None and not self._authorized(request):
            request.setResponseCode(401)
            request.setHeader(b"www-authenticate", b'Basic realm="jsonrpc"')
            request.setHeader(b"content-type", b"text/html; charset=ISO-8859-1")
            return b""
        assert request.content is not None
        body = request.content.read()
        d = ensureDeferred(self._handle(body))
        gone: list[bool] = []

        def disconnected(_: Any) -> None:
            gone.append(True)
            d.cancel()

        request.notifyFinish().addErrback(disconnected)

        def write(reply: tuple[int, bytes]) -> None:
            status, payload = reply
            if gone or request.finished:
                return
            request.setResponseCode(status)
            if payload:
                request.setHeader(b"content-type", b"application/json")
            request.write(payload)
            request.finish()

        def failed(f: Any) -> None:
            if not f.check(CancelledError):
                self.log.failure("devnet RPC request failed", f)

        d.addCallback(write)
        d.addErrback(failed)
        return NOT_DONE_YET

    def _authorized(self, request: Request) -> bool:
        assert self.credentials is not None
        header = (request.getHeader(b"authorization") or b"").decode("latin-1")
        if not header.startswith("Basic "):
            return False
        try:
            given = base64.b64decode(header[6:].strip()).decode("utf-8")
        except (ValueError, UnicodeDecodeError):
            return False
        expected = f"{self.credentials[0]}:{self.credentials[1]}"
        return hmac.compare_digest(given.encode(), expected.encode())

    async def _handle(self, body: bytes) -> tuple[int, bytes]:
        parsed = parse_body(body)
        if isinstance(parsed, RpcFault):
            status, reply = error_reply(parsed, None)
            return status, (encode_json(reply) + "\n").encode()
        calls, batch = parsed
        replies: list[tuple[int, dict[str, Any] | None]] = []
        for call in calls:
            replies.append(await self._one(call))
        if not batch:
            status, single = replies[0]
            if single is None:
                return 204, b""
            return status, (encode_json(single) + "\n").encode()
        items = [reply for _, reply in replies if reply is not None]
        return 200, (encode_json(items) + "\n").encode()

    async def _one(self, call: RpcCall | RpcFault) -> tuple[int, dict[str, Any] | None]:
        if isinstance(call, RpcFault):
            return error_reply(call, None)
        try:
            result = await self.rpc.call(call.method, call.params)
        except RpcFault as fault:
            status, reply = error_reply(fault, call)
        except CancelledError:
            raise
        except Exception as e:
            self.log.failure("devnet RPC {method} failed", method=call.method)
            status, reply = error_reply(RpcFault(RPC_MISC_ERROR, str(e)), call)
        else:
            status, reply = 200, result_reply(call, result)
        return status, None if call.notification else reply


class _QuietSite(Site):
    """A site without the per-request access log (long polls and submits are frequent)."""

    def log(self, request: http.Request) -> None:
        return None


@dataclass
class DevnetHandle:
    """A running devnet: its port, URL, chain and node; ``stop()`` shuts it down."""

    port: int
    url: str
    chain: DevnetChain
    node: DevnetNode
    service: DevnetService

    def stop(self) -> Deferred[None]:
        """Stop listening and release the data directory."""
        result = self.service.stopService()
        return result if isinstance(result, Deferred) else Deferred.fromCoroutine(_nothing())


class DevnetService(Service):
    """Runs the devnet (chain, data dir, HTTP JSON-RPC listener) in a service tree."""

    log = Logger()

    def __init__(
        self,
        reactor: Any,
        listen: str,
        difficulty: Fraction | int | str,
        data_dir: Path,
        wallet_address: str | None = None,
        credentials: tuple[str, str] | None = None,
    ) -> None:
        self.reactor = reactor
        self.listen = listen
        self._node_args = (reactor, difficulty, Path(data_dir), wallet_address)
        self.node = DevnetNode(*self._node_args)
        self.credentials = credentials
        self.port: Any = None  # IListeningPort
        self.ready: Deferred[DevnetHandle] = Deferred()
        self._loaded = False

    def startService(self) -> None:
        super().startService()
        if self._loaded:
            # Started again after a stop: rebuild the chain from the data dir.
            self.node = DevnetNode(*self._node_args)
            self.ready = Deferred()
        self.node.load()
        self._loaded = True
        resource = DevnetResource(DevnetRpc(self.node), self.credentials)
        site = _QuietSite(resource)
        site.noisy = False
        d = serverFromString(self.reactor, self.listen).listen(site)
        d.addCallbacks(self._listening, self._listen_failed)

    def whenReady(self) -> Deferred[DevnetHandle]:
        """Fires with the handle once the JSON-RPC port is bound (for the node's start order)."""
        return self.ready

    def _listening(self, port: Any) -> None:
        self.port = port
        address = port.getHost()
        host = getattr(address, "host", "127.0.0.1")
        if host in ("0.0.0.0", "::", ""):
            host = "127.0.0.1"
        number = int(getattr(address, "port", 0))
        shown = f"[{host}]" if ":" in host else host
        handle = DevnetHandle(number, f"http://{shown}:{number}/", self.node.chain, self.node, self)
        self.log.info(
            "devnet JSON-RPC listening on {url} (difficulty {difficulty}, data dir {dir})",
            url=handle.url,
            difficulty=str(self.node.chain.difficulty),
            dir=str(self.node.store.data_dir),
        )
        self.ready.callback(handle)

    def _listen_failed(self, failure: Any) -> None:
        self.node.close()
        self.ready.errback(failure)

    def stopService(self) -> Deferred[None]:
        super().stopService()
        port, self.port = self.port, None

        async def stop() -> None:
            if port is not None:
                await port.stopListening()
            self.node.close()

        return Deferred.fromCoroutine(stop())


def start_devnet(
    reactor: Any,
    listen: str,
    difficulty: Fraction | int | str,
    data_dir: Path | str,
    wallet_address: str | None = None,
    credentials: tuple[str, str] | None = None,
) -> Deferred[DevnetHandle]:
    """Start a devnet listening on the endpoint string ``listen`` (e.g.
    ``"tcp:0:interface=127.0.0.1"``); fires with its ``DevnetHandle``."""
    try:
        service = DevnetService(
            reactor, listen, difficulty, Path(data_dir), wallet_address, credentials
        )
        service.startService()
    except Exception:
        return fail()
    return service.ready

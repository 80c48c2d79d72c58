"""The devnet's RPC methods: Bitcoin Core's names, parameters, reply fields and errors.

``DevnetRpc.call(method, params)`` takes positional (list) or named (dict) parameters and
returns the JSON-ready result or raises ``RpcFault`` with Core's code and message. What
needs the outside world (persisting, waking long polls, mining over several reactor turns)
goes through the node it is given: anything with the small ``RpcNode`` interface
(``otedama.devnet.node.DevnetNode`` in the running devnet), so this module does not import
the node back.
"""

from __future__ import annotations

from collections.abc import Awaitable, Callable, Sequence
from decimal import Decimal
from fractions import Fraction
from pathlib import Path
from typing import Any, Protocol

from otedama import __version__
from otedama.chain.address import AddressError, address_to_script, script_to_address
from otedama.chain.rpcjson import AmountError, AmountOutOfRange, btc_to_sats
from otedama.chain.serialize import Block, BlockHeader, SerializationError, Transaction
from otedama.chain.target import decode_compact, target_to_difficulty
from otedama.devnet.chain import (
    BlockDecodeError,
    BlockIndex,
    ChainError,
    DevnetChain,
    is_coinbase,
)
from otedama.devnet.jsonrpc import (
    RPC_DESERIALIZATION_ERROR,
    RPC_INVALID_ADDRESS_OR_KEY,
    RPC_INVALID_PARAMETER,
    RPC_METHOD_NOT_FOUND,
    RPC_MISC_ERROR,
    RPC_TYPE_ERROR,
    RPC_VERIFY_REJECTED,
    RPC_WALLET_INSUFFICIENT_FUNDS,
    Amount,
    RpcFault,
)
from otedama.devnet.wallet import DevnetWallet, WalletError

__all__ = ["METHODS", "DevnetRpc", "RpcNode", "parse_amount"]

METHODS: dict[str, tuple[str, ...]] = {
    "getblockchaininfo": (),
    "getblockcount": (),
    "getbestblockhash": (),
    "getblockhash": ("height",),
    "getblockheader": ("blockhash", "verbose"),
    "getblock": ("blockhash", "verbosity"),
    "getblocktemplate": ("template_request",),
    "submitblock": ("hexdata", "dummy"),
    "getmininginfo": (),
    "getnetworkinfo": (),
    "getrawmempool": ("verbose",),
    "validateaddress": ("address",),
    "getnewaddress": ("label", "address_type"),
    "importaddress": ("address", "label", "rescan", "p2sh"),
    "getbalance": ("dummy", "minconf", "include_watchonly", "avoid_reuse"),
    "sendmany": (
        "dummy",
        "amounts",
        "minconf",
        "comment",
        "subtractfeefrom",
        "replaceable",
        "conf_target",
        "estimate_mode",
        "fee_rate",
        "verbose",
    ),
    "gettransaction": ("txid", "include_watchonly", "verbose"),
    "listtransactions": ("label", "count", "skip", "include_watchonly"),
    "generatetoaddress": ("nblocks", "address", "maxtries"),
    "invalidateblock": ("blockhash",),
    "getdifficulty": (),
    "getnetworkhashps": ("nblocks", "height"),
    "getaddressinfo": ("address",),
    "getwalletinfo": (),
    "getpeerinfo": (),
    "getconnectioncount": (),
    "getrpcinfo": (),
    "getrawtransaction": ("txid", "verbose", "blockhash"),
    "decoderawtransaction": ("hexstring", "iswitness"),
    "sendrawtransaction": ("hexstring", "maxfeerate", "maxburnamount"),
    "preciousblock": ("blockhash",),
}
"""Every method the devnet serves, with its parameter names in Core's order."""

USAGE: dict[str, tuple[int, str]] = {
    "getblockhash": (1, "getblockhash height"),
    "getblockheader": (1, 'getblockheader "blockhash" ( verbose )'),
    "getblock": (1, 'getblock "blockhash" ( verbosity )'),
    "submitblock": (1, 'submitblock "hexdata" ( "dummy" )'),
    "validateaddress": (1, 'validateaddress "address"'),
    "getaddressinfo": (1, 'getaddressinfo "address"'),
    "importaddress": (1, 'importaddress "address" ( "label" rescan p2sh )'),
    "sendmany": (
        2,
        'sendmany "" {"address":amount,...} ( minconf "comment" ["address",...] '
        'replaceable conf_target "estimate_mode" fee_rate verbose )',
    ),
    "gettransaction": (1, 'gettransaction "txid" ( include_watchonly verbose )'),
    "generatetoaddress": (2, 'generatetoaddress nblocks "address" ( maxtries )'),
    "invalidateblock": (1, 'invalidateblock "blockhash"'),
    "getrawtransaction": (1, 'getrawtransaction "txid" ( verbosity "blockhash" )'),
    "decoderawtransaction": (1, 'decoderawtransaction "hexstring" ( iswitness )'),
    "sendrawtransaction": (1, 'sendrawtransaction "hexstring" ( maxfeerate maxburnamount )'),
    "preciousblock": (1, 'preciousblock "blockhash"'),
}
"""Methods with required parameters: how many, and the first line of Core's help, which
Core sends as the -1 error when fewer are given (Miningcore probes ``submitblock`` so)."""


def _json_type(value: Any) -> str:
    if value is None:
        return "null"
    if isinstance(value, bool):
        return "bool"
    if isinstance(value, int | float | Decimal):
        return "number"
    if isinstance(value, str):
        return "string"
    if isinstance(value, list):
        return "array"
    return "object"


def _expect(value: Any, expected: str) -> None:
    if _json_type(value) != expected:
        raise RpcFault(
            RPC_TYPE_ERROR,
            f"JSON value of type {_json_type(value)} is not of expected type {expected}",
        )


def _int(value: Any, default: int) -> int:
    if value is None:
        return default
    _expect(value, "number")
    if isinstance(value, Decimal) and value != value.to_integral_value():
        raise RpcFault(RPC_TYPE_ERROR, f"JSON integer out of range: {value}")
    return int(value)


def _bool(value: Any, default: bool) -> bool:
    if value is None:
        return default
    _expect(value, "bool")
    return bool(value)


def _str(value: Any, default: str = "") -> str:
    if value is None:
        return default
    _expect(value, "string")
    return str(value)


def parse_amount(value: Any) -> int:
    """Satoshis from a JSON amount in BTC (number or string, at most 8 decimals), like Core."""
    if _json_type(value) not in ("number", "string"):
        raise RpcFault(RPC_TYPE_ERROR, "Amount is not a number or string")
    try:
        sats = btc_to_sats(value)
    except AmountOutOfRange:
        raise RpcFault(RPC_TYPE_ERROR, "Amount out of range") from None
    except AmountError:
        raise RpcFault(RPC_TYPE_ERROR, "Invalid amount") from None
    if sats < 0:
        raise RpcFault(RPC_TYPE_ERROR, "Amount out of range")
    return sats


def _hash(value: Any, name: str) -> bytes:
    _expect(value, "string")
    text = str(value)
    if len(text) != 64:
        raise RpcFault(
            RPC_INVALID_PARAMETER, f"{name} must be of length 64 (not {len(text)}, for '{text}')"
        )
    try:
        return bytes.fromhex(text)[::-1]
    except ValueError:
        raise RpcFault(
            RPC_INVALID_PARAMETER, f"{name} must be hexadecimal string (not '{text}')"
        ) from None


def _witness_program(script: bytes) -> tuple[int, bytes] | None:
    """(version, program) of a segwit output script (BIP141: OP_n then a 2-40 byte push)."""
    if not 4 <= len(script) <= 42 or script[1] != len(script) - 2:
        return None
    if script[0] == 0:
        return 0, script[2:]
    if 0x51 <= script[0] <= 0x60:
        return script[0] - 0x50, script[2:]
    return None


def _script_type(script: bytes) -> str:
    n = len(script)
    if n == 25 and script[:3] == b"\x76\xa9\x14" and script[23:] == b"\x88\xac":
        return "pubkeyhash"
    if n == 23 and script[:2] == b"\xa9\x14" and script[22] == 0x87:
        return "scripthash"
    if n == 22 and script[:2] == b"\x00\x14":
        return "witness_v0_keyhash"
    if n == 34 and script[:2] == b"\x00\x20":
        return "witness_v0_scripthash"
    if n == 34 and script[:2] == b"\x51\x20":
        return "witness_v1_taproot"
    if n and script[0] == 0x6A:
        return "nulldata"
    return "nonstandard"


class RpcNode(Protocol):
    """What the RPC methods need from the devnet node: its chain and wallet, the time,
    long polling, and the changes that persist or take several reactor turns."""

    @property
    def chain(self) -> DevnetChain: ...

    @property
    def wallet(self) -> DevnetWallet: ...

    def now(self) -> int: ...

    def size_on_disk(self) -> int: ...

    def longpollid(self) -> str: ...

    def wait_for_change(self, longpollid: str) -> Awaitable[None]: ...

    def submit_block(self, raw: bytes) -> Awaitable[str | None]: ...

    def invalidate_block(self, block_hash: bytes) -> None: ...

    def generate(
        self, count: int, script: bytes, max_tries: int | None = None
    ) -> Awaitable[list[bytes]]: ...

    def new_address(self, address_type: str) -> str: ...

    def import_address(self, address: str, rescan: bool) -> None: ...

    def send_many(
        self, recipients: list[tuple[str, int]], comment: str, minconf: int, subtract: Sequence[str]
    ) -> bytes: ...

    def accept_transaction(self, tx: Transaction) -> bytes: ...

    def log_path(self) -> Path: ...


class DevnetRpc:
    """Core's RPC subset over a devnet node (``RpcNode``)."""

    def __init__(self, node: RpcNode, chain_name: str | None = None, connections: int = 0) -> None:
        """``chain_name`` is what ``getblockchaininfo`` and ``getmininginfo`` report as
        ``chain`` (default the devnet's own name, ``devnet``); ``connections`` the peer
        count ``getnetworkinfo`` and ``getconnectioncount`` report (the devnet has none;
        software that waits for peers, like Miningcore, needs more than 0)."""
        self.node = node
        self.chain = node.chain
        self.wallet = node.wallet
        self.chain_name = chain_name or node.chain.params.name
        self.connections = connections
        self._handlers: dict[str, Callable[..., Awaitable[Any]]] = {
            name: getattr(self, f"rpc_{name}") for name in METHODS
        }

    async def call(self, method: str, params: list[Any] | dict[str, Any]) -> Any:
        """Run ``method``; raises ``RpcFault`` on any error Core would report."""
        handler = self._handlers.get(method)
        if handler is None:
            raise RpcFault(RPC_METHOD_NOT_FOUND, "Method not found")
        names = METHODS[method]
        if isinstance(params, dict):
            unknown = [k for k in params if k not in names]
            if unknown:
                raise RpcFault(RPC_INVALID_PARAMETER, f"Unknown named parameter {unknown[0]}")
            args = [params.get(name) for name in names]
            given = max((i + 1 for i, name in enumerate(names) if name in params), default=0)
        else:
            if len(params) > len(names):
                raise RpcFault(RPC_MISC_ERROR, f"{method}: too many parameters ({len(params)})")
            args = [*params, *([None] * (len(names) - len(params)))]
            given = len(params)
        required, usage = USAGE.get(method, (0, method))
        if given < required:
            raise RpcFault(RPC_MISC_ERROR, usage)
        return await handler(*args)

    # -- chain --------------------------------------------------------------------------

    def _entry(self, value: Any) -> BlockIndex:
        entry = self.chain.index.get(_hash(value, "blockhash"))
        if entry is None:
            raise RpcFault(RPC_INVALID_ADDRESS_OR_KEY, "Block not found")
        return entry

    def _difficulty(self, bits_target: int) -> float:
        return float(target_to_difficulty(bits_target))

    async def rpc_getblockchaininfo(self) -> dict[str, Any]:
        tip = self.chain.tip
        return {
            "chain": self.chain_name,
            "blocks": tip.height,
            "headers": tip.height,
            "bestblockhash": tip.hash[::-1].hex(),
            "bits": f"{self.chain.bits:08x}",
            "target": f"{self.chain.target:064x}",
            "difficulty": self._difficulty(self.chain.target),
            "time": tip.header.time,
            "mediantime": tip.median_time_past,
            "verificationprogress": 1,
            "initialblockdownload": False,
            "chainwork": f"{tip.height + 1:064x}",
            "size_on_disk": self.node.size_on_disk(),
            "pruned": False,
            "warnings": [],
        }

    async def rpc_getblockcount(self) -> int:
        return self.chain.tip.height

    async def rpc_getbestblockhash(self) -> str:
        return self.chain.tip.hash[::-1].hex()

    async def rpc_getblockhash(self, height: Any) -> str:
        if height is None:
            raise RpcFault(RPC_MISC_ERROR, "getblockhash height")
        h = _int(height, 0)
        if not 0 <= h < len(self.chain.active):
            raise RpcFault(RPC_INVALID_PARAMETER, "Block height out of range")
        return self.chain.active[h].hash[::-1].hex()

    def _header_json(self, entry: BlockIndex) -> dict[str, Any]:
        header = entry.header
        reply: dict[str, Any] = {
            "hash": entry.hash[::-1].hex(),
            "confirmations": self.chain.confirmations(entry),
            "height": entry.height,
            "version": header.version,
            "versionHex": f"{header.version:08x}",
            "merkleroot": header.merkle_root[::-1].hex(),
            "time": header.time,
            "mediantime": entry.median_time_past,
            "nonce": header.nonce,
            "bits": f"{header.bits:08x}",
            "target": f"{_target_of(header):064x}",
            "difficulty": self._difficulty(max(_target_of(header), 1)),
            "chainwork": f"{entry.height + 1:064x}",
            "nTx": entry.tx_count,
        }
        if entry.parent is not None:
            reply["previousblockhash"] = entry.parent.hash[::-1].hex()
        if self.chain.on_best_chain(entry) and entry.height + 1 < len(self.chain.active):
            reply["nextblockhash"] = self.chain.active[entry.height + 1].hash[::-1].hex()
        return reply

    async def rpc_getblockheader(self, blockhash: Any, verbose: Any) -> Any:
        entry = self._entry(blockhash)
        if not _bool(verbose, True):
            return entry.header.serialize().hex()
        return self._header_json(entry)

    async def rpc_getblock(self, blockhash: Any, verbosity: Any) -> Any:
        entry = self._entry(blockhash)
        # Core also takes a boolean: true is 1, false is 0.
        level = int(verbosity) if isinstance(verbosity, bool) else _int(verbosity, 1)
        if level <= 0:
            return entry.raw.hex()
        block = entry.block()
        reply = self._header_json(entry)
        witness_bytes = sum(
            len(tx.serialize()) - len(tx.serialize(witness=False)) for tx in block.transactions
        )
        stripped = len(entry.raw) - witness_bytes
        reply["strippedsize"] = stripped
        reply["size"] = len(entry.raw)
        reply["weight"] = stripped * 3 + len(entry.raw)
        if level == 1:
            reply["tx"] = [tx.txid()[::-1].hex() for tx in block.transactions]
        else:
            spent = self._spent_values(entry, block)
            reply["tx"] = [
                self._tx_json(tx, spent.get(tx.txid()), with_hex=True) for tx in block.transactions
            ]
        return reply

    def _spent_values(self, entry: BlockIndex, block: Block) -> dict[bytes, int]:
        """Fees per transaction of a connected block, from its undo data."""
        if entry.undo is None:
            return {}
        coins = dict(entry.undo)
        created: dict[tuple[bytes, int], int] = {}
        fees: dict[bytes, int] = {}
        for tx in block.transactions:
            txid = tx.txid()
            if not is_coinbase(tx):
                value_in = 0
                for txin in tx.inputs:
                    op = (txin.prev_hash, txin.prev_index)
                    coin = coins.get(op)
                    value_in += coin.value if coin is not None else created.get(op, 0)
                fees[txid] = value_in - sum(o.value for o in tx.outputs)
            for n, out in enumerate(tx.outputs):
                created[(txid, n)] = out.value
        return fees

    def _tx_json(self, tx: Transaction, fee: int | None, with_hex: bool) -> dict[str, Any]:
        base = len(tx.serialize(witness=False))
        total = len(tx.serialize())
        weight = base * 3 + total
        vin: list[dict[str, Any]] = []
        for txin in tx.inputs:
            item: dict[str, Any]
            if is_coinbase(tx):
                item = {"coinbase": txin.script_sig.hex()}
            else:
                item = {
                    "txid": txin.prev_hash[::-1].hex(),
                    "vout": txin.prev_index,
                    "scriptSig": {"hex": txin.script_sig.hex()},
                }
            if txin.witness:
                item["txinwitness"] = [w.hex() for w in txin.witness]
            item["sequence"] = txin.sequence
            vin.append(item)
        vout = []
        for n, out in enumerate(tx.outputs):
            spk: dict[str, Any] = {"hex": out.script_pubkey.hex()}
            address = script_to_address(out.script_pubkey, self.chain.params)
            if address is not None:
                spk["address"] = address
            spk["type"] = _script_type(out.script_pubkey)
            vout.append({"value": Amount(out.value), "n": n, "scriptPubKey": spk})
        reply: dict[str, Any] = {
            "txid": tx.txid()[::-1].hex(),
            "hash": tx.wtxid()[::-1].hex(),
            "version": tx.version,
            "size": total,
            "vsize": -(-weight // 4),
            "weight": weight,
            "locktime": tx.lock_time,
            "vin": vin,
            "vout": vout,
        }
        if fee is not None:
            reply["fee"] = Amount(fee)
        if with_hex:
            reply["hex"] = tx.serialize().hex()
        return reply

    async def rpc_getblocktemplate(self, template_request: Any) -> Any:
        if template_request is None:
            template_request = {}  # optional in Core; the rules check then answers -8
        _expect(template_request, "object")
        mode = _str(template_request.get("mode"), "template")
        if mode == "proposal":
            data = template_request.get("data")
            if not isinstance(data, str):
                raise RpcFault(RPC_TYPE_ERROR, "Missing data String key for proposal")
            try:
                return self.chain.check_proposal(bytes.fromhex(data), self.node.now())
            except (ValueError, BlockDecodeError):
                raise RpcFault(RPC_DESERIALIZATION_ERROR, "Block decode failed") from None
        if mode != "template":
            raise RpcFault(RPC_INVALID_PARAMETER, "Invalid mode")
        rules = template_request.get("rules") or []
        if not isinstance(rules, list) or "segwit" not in rules:
            raise RpcFault(
                RPC_INVALID_PARAMETER,
                'getblocktemplate must be called with the segwit rule set (call with {"rules": ["segwit"]})',
            )
        longpollid = template_request.get("longpollid")
        if longpollid is not None:
            await self.node.wait_for_change(_str(longpollid))
        return self._template()

    def _template(self) -> dict[str, Any]:
        t = self.chain.template(self.node.now())
        return {
            "capabilities": ["proposal"],
            "version": t.version,
            "rules": ["csv", "!segwit", "taproot"],
            "vbavailable": {},
            "vbrequired": 0,
            "previousblockhash": t.prev_hash[::-1].hex(),
            "transactions": [
                {
                    "data": e.tx.serialize().hex(),
                    "txid": e.txid[::-1].hex(),
                    "hash": e.wtxid[::-1].hex(),
                    "depends": list(deps),
                    "fee": e.fee,
                    "sigops": 4 * len(e.tx.inputs),
                    "weight": e.weight,
                }
                for e, deps in zip(t.entries, t.depends, strict=True)
            ],
            "coinbaseaux": {},
            "coinbasevalue": t.coinbase_value,
            "longpollid": self.node.longpollid(),
            "target": f"{t.target:064x}",
            "mintime": t.mintime,
            "mutable": ["time", "transactions", "prevblock"],
            "noncerange": "00000000ffffffff",
            "sigoplimit": 80000,
            "sizelimit": 4000000,
            "weightlimit": 4000000,
            "curtime": t.curtime,
            "bits": f"{t.bits:08x}",
            "height": t.height,
            "default_witness_commitment": t.witness_commitment.hex(),
        }

    async def rpc_submitblock(self, hexdata: Any, dummy: Any) -> str | None:
        _expect(hexdata, "string")
        try:
            raw = bytes.fromhex(hexdata)
        except ValueError:
            raise RpcFault(RPC_DESERIALIZATION_ERROR, "Block decode failed") from None
        try:
            return await self.node.submit_block(raw)
        except BlockDecodeError:
            raise RpcFault(RPC_DESERIALIZATION_ERROR, "Block decode failed") from None

    async def rpc_getmininginfo(self) -> dict[str, Any]:
        return {
            "blocks": self.chain.tip.height,
            "bits": f"{self.chain.bits:08x}",
            "difficulty": self._difficulty(self.chain.target),
            "target": f"{self.chain.target:064x}",
            "networkhashps": self._network_hashps(120, self.chain.tip),
            "pooledtx": len(self.chain.mempool),
            "chain": self.chain_name,
            "warnings": [],
        }

    async def rpc_getnetworkinfo(self) -> dict[str, Any]:
        return {
            "version": 310000,
            "subversion": f"/Otedama-devnet:{__version__}/",
            "protocolversion": 70016,
            "localservices": "0000000000000409",
            "localrelay": True,
            "timeoffset": 0,
            "networkactive": True,
            "connections": self.connections,
            "connections_in": 0,
            "connections_out": self.connections,
            "networks": [],
            "relayfee": Amount(1000),
            "incrementalfee": Amount(1000),
            "localaddresses": [],
            "warnings": [],
        }

    async def rpc_getrawmempool(self, verbose: Any) -> Any:
        if _bool(verbose, False):
            return {
                e.txid[::-1].hex(): {
                    "vsize": -(-e.weight // 4),
                    "weight": e.weight,
                    "time": e.time,
                    "fees": {"base": Amount(e.fee)},
                    "wtxid": e.wtxid[::-1].hex(),
                }
                for e in self.chain.mempool.values()
            }
        return [txid[::-1].hex() for txid in self.chain.mempool]

    async def rpc_invalidateblock(self, blockhash: Any) -> None:
        entry = self._entry(blockhash)
        try:
            self.node.invalidate_block(entry.hash)
        except ChainError as e:
            raise RpcFault(RPC_INVALID_PARAMETER, str(e)) from None

    async def rpc_generatetoaddress(self, nblocks: Any, address: Any, maxtries: Any) -> list[str]:
        count = _int(nblocks, 0)
        try:
            script = address_to_script(_str(address), self.chain.params)
        except AddressError:
            raise RpcFault(RPC_INVALID_ADDRESS_OR_KEY, "Error: Invalid address") from None
        tries = None if maxtries is None else _int(maxtries, 0)
        hashes = await self.node.generate(count, script, tries)
        return [h[::-1].hex() for h in hashes]

    async def rpc_getdifficulty(self) -> float:
        return self._difficulty(self.chain.target)

    def _network_hashps(self, lookup: int, tip: BlockIndex) -> float:
        """Core's estimate: chain work over the last ``lookup`` blocks divided by the time
        they spanned (0 for the genesis block or a zero span)."""
        if tip.height == 0:
            return 0
        if lookup <= 0:  # Core: the blocks since the last retarget boundary
            lookup = tip.height % 2016 + 1
        lookup = min(lookup, tip.height)
        first = self.chain.active[tip.height - lookup] if self.chain.on_best_chain(tip) else tip
        while first.height > tip.height - lookup and first.parent is not None:
            first = first.parent
        times = []
        walk: BlockIndex | None = tip
        while walk is not None and walk.height >= first.height:
            times.append(walk.header.time)
            walk = walk.parent
        span = max(times) - min(times)
        if span <= 0:
            return 0
        work_per_block = (1 << 256) // (_target_of(tip.header) + 1)
        return float(Fraction(work_per_block * lookup, span))

    async def rpc_getnetworkhashps(self, nblocks: Any, height: Any) -> float:
        h = _int(height, -1)
        tip = self.chain.tip
        if h >= 0:
            if h > tip.height:
                raise RpcFault(RPC_INVALID_PARAMETER, "Block does not exist at specified height")
            tip = self.chain.active[h]
        return self._network_hashps(_int(nblocks, 120), tip)

    async def rpc_getpeerinfo(self) -> list[Any]:
        return []

    async def rpc_getconnectioncount(self) -> int:
        return self.connections

    async def rpc_getrpcinfo(self) -> dict[str, Any]:
        return {
            "active_commands": [{"method": "getrpcinfo", "duration": 0}],
            "logpath": str(self.node.log_path()),
        }

    async def rpc_preciousblock(self, blockhash: Any) -> None:
        self._entry(blockhash)  # the devnet has no competing tips of equal work to prefer

    def _decode_tx(self, hexstring: Any) -> Transaction:
        _expect(hexstring, "string")
        try:
            return Transaction.parse(bytes.fromhex(hexstring))
        except (ValueError, SerializationError):
            raise RpcFault(RPC_DESERIALIZATION_ERROR, "TX decode failed") from None

    async def rpc_decoderawtransaction(self, hexstring: Any, iswitness: Any) -> dict[str, Any]:
        return self._tx_json(self._decode_tx(hexstring), None, with_hex=False)

    async def rpc_sendrawtransaction(
        self, hexstring: Any, maxfeerate: Any, maxburnamount: Any
    ) -> str:
        tx = self._decode_tx(hexstring)
        try:
            txid = self.node.accept_transaction(tx)
        except ChainError as e:
            raise RpcFault(RPC_VERIFY_REJECTED, str(e)) from None
        return txid[::-1].hex()

    async def rpc_getrawtransaction(self, txid: Any, verbose: Any, blockhash: Any) -> Any:
        tx_hash = _hash(txid, "parameter 1")
        level = int(verbose) if isinstance(verbose, bool) else _int(verbose, 0)
        tx: Transaction | None = None
        entry: BlockIndex | None = None
        if blockhash is not None:
            entry = self._entry(blockhash)
            for candidate in entry.block().transactions:
                if candidate.txid() == tx_hash:
                    tx = candidate
        elif tx_hash in self.chain.mempool:
            tx = self.chain.mempool[tx_hash].tx
        elif tx_hash in self.chain.tx_index:
            entry, position = self.chain.tx_index[tx_hash]
            tx = entry.block().transactions[position]
        if tx is None:
            raise RpcFault(
                RPC_INVALID_ADDRESS_OR_KEY,
                "No such mempool or blockchain transaction. Use gettransaction for wallet "
                "transactions.",
            )
        if level <= 0:
            return tx.serialize().hex()
        reply = self._tx_json(tx, None, with_hex=True)
        if entry is not None:
            reply["blockhash"] = entry.hash[::-1].hex()
            on_best = self.chain.on_best_chain(entry)
            reply["confirmations"] = self.chain.confirmations(entry) if on_best else 0
            reply["time"] = reply["blocktime"] = entry.header.time
        return reply

    # -- addresses and wallet -----------------------------------------------------------

    async def rpc_validateaddress(self, address: Any) -> dict[str, Any]:
        text = _str(address)
        try:
            script = address_to_script(text, self.chain.params)
        except AddressError as e:
            return {"isvalid": False, "error_locations": [], "error": str(e)}
        kind = _script_type(script)
        program = _witness_program(script)
        reply: dict[str, Any] = {
            "isvalid": True,
            "address": text,
            "scriptPubKey": script.hex(),
            "isscript": kind in ("scripthash", "witness_v0_scripthash", "witness_v1_taproot"),
            "iswitness": program is not None,
        }
        if program is not None:
            reply["witness_version"], reply["witness_program"] = program[0], program[1].hex()
        return reply

    async def rpc_getaddressinfo(self, address: Any) -> dict[str, Any]:
        text = _str(address)
        try:
            script = address_to_script(text, self.chain.params)
        except AddressError as e:
            raise RpcFault(RPC_INVALID_ADDRESS_OR_KEY, str(e)) from None
        program = _witness_program(script)
        mine = self.wallet.is_mine(script)
        reply: dict[str, Any] = {
            "address": text,
            "scriptPubKey": script.hex(),
            "ismine": mine,
            "solvable": mine,
            "iswatchonly": False,
            "isscript": _script_type(script)
            in ("scripthash", "witness_v0_scripthash", "witness_v1_taproot"),
            "iswitness": program is not None,
        }
        if program is not None:
            reply["witness_version"], reply["witness_program"] = program[0], program[1].hex()
        reply["ischange"] = script == self.wallet.change_script
        reply["labels"] = [""] if mine else []
        return reply

    async def rpc_getwalletinfo(self) -> dict[str, Any]:
        tip = self.chain.tip
        return {
            "walletname": "",
            "walletversion": 169900,
            "format": "sqlite",
            "balance": Amount(self.wallet.balance(1)),
            "unconfirmed_balance": Amount(self.wallet.balance(0) - self.wallet.balance(1)),
            "immature_balance": Amount(self.wallet.immature_balance()),
            "txcount": len(self.wallet.records),
            "keypoolsize": 1000,
            "keypoolsize_hd_internal": 1000,
            "paytxfee": Amount(0),
            "private_keys_enabled": True,
            "avoid_reuse": False,
            "scanning": False,
            "descriptors": True,
            "external_signer": False,
            "blank": False,
            "lastprocessedblock": {"hash": tip.hash[::-1].hex(), "height": tip.height},
        }

    async def rpc_getnewaddress(self, label: Any, address_type: Any) -> str:
        _str(label)
        try:
            return self.node.new_address(_str(address_type, "bech32"))
        except WalletError as e:
            raise RpcFault(RPC_INVALID_ADDRESS_OR_KEY, str(e)) from None

    async def rpc_importaddress(self, address: Any, label: Any, rescan: Any, p2sh: Any) -> None:
        text = _str(address)
        try:
            self.node.import_address(text, _bool(rescan, True))
        except AddressError:
            raise RpcFault(
                RPC_INVALID_ADDRESS_OR_KEY, "Invalid Bitcoin address or script"
            ) from None

    async def rpc_getbalance(
        self, dummy: Any, minconf: Any, include_watchonly: Any, avoid_reuse: Any
    ) -> Amount:
        if dummy is not None and dummy != "*":
            raise RpcFault(
                RPC_INVALID_PARAMETER, 'dummy first argument must be excluded or set to "*".'
            )
        return Amount(self.wallet.balance(_int(minconf, 0)))

    async def rpc_sendmany(
        self,
        dummy: Any,
        amounts: Any,
        minconf: Any,
        comment: Any,
        subtractfeefrom: Any,
        replaceable: Any,
        conf_target: Any,
        estimate_mode: Any,
        fee_rate: Any,
        verbose: Any,
    ) -> Any:
        if dummy is not None and dummy != "":
            raise RpcFault(RPC_INVALID_PARAMETER, 'Dummy value must be set to ""')
        if amounts is None:
            raise RpcFault(RPC_MISC_ERROR, 'sendmany "" {"address":amount,...}')
        _expect(amounts, "object")
        recipients: list[tuple[str, int]] = []
        seen: set[bytes] = set()
        for address, value in amounts.items():
            try:
                script = address_to_script(address, self.chain.params)
            except AddressError:
                raise RpcFault(
                    RPC_INVALID_ADDRESS_OR_KEY, f"Invalid Bitcoin address: {address}"
                ) from None
            if script in seen:
                raise RpcFault(
                    RPC_INVALID_PARAMETER, f"Invalid parameter, duplicated address: {address}"
                )
            seen.add(script)
            sats = parse_amount(value)
            if sats <= 0:
                raise RpcFault(RPC_TYPE_ERROR, "Invalid amount for send")
            recipients.append((address, sats))
        subtract: list[str] = []
        if subtractfeefrom is not None:
            _expect(subtractfeefrom, "array")
            for item in subtractfeefrom:
                if item not in amounts:
                    raise RpcFault(
                        RPC_INVALID_PARAMETER,
                        f"Invalid parameter 'subtract fee from output', destination {item} not found in tx outputs",
                    )
                subtract.append(item)
        try:
            txid = self.node.send_many(recipients, _str(comment), _int(minconf, 1), subtract)
        except WalletError as e:
            raise RpcFault(RPC_WALLET_INSUFFICIENT_FUNDS, str(e)) from None
        if _bool(verbose, False):
            return {"txid": txid[::-1].hex(), "fee_reason": "Fallback fee"}
        return txid[::-1].hex()

    async def rpc_gettransaction(self, txid: Any, include_watchonly: Any, verbose: Any) -> Any:
        tx_hash = _hash(txid, "txid")
        try:
            reply = self.wallet.get_transaction(tx_hash)
        except WalletError as e:
            raise RpcFault(RPC_INVALID_ADDRESS_OR_KEY, str(e)) from None
        if _bool(verbose, False):
            tx = Transaction.parse(bytes.fromhex(reply["hex"]))
            reply["decoded"] = self._tx_json(tx, None, with_hex=False)
        return reply

    async def rpc_listtransactions(
        self, label: Any, count: Any, skip: Any, include_watchonly: Any
    ) -> list[dict[str, Any]]:
        if label is not None and _str(label) not in ("*", ""):
            return []
        n = _int(count, 10)
        start = _int(skip, 0)
        if n < 0:
            raise RpcFault(RPC_INVALID_PARAMETER, "Negative count")
        if start < 0:
            raise RpcFault(RPC_INVALID_PARAMETER, "Negative from")
        return self.wallet.list_transactions(n, start)


def _target_of(header: BlockHeader) -> int:
    return decode_compact(header.bits)[0]

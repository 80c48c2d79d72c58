"""The devnet's chain state: block tree, full block validation, UTXO set, mempool, templates.

Pure (no I/O, no clock): callers pass ``now``. Blocks are checked the way Bitcoin Core
checks them, in Core's order, and rejected with Core's reason strings (``high-hash``,
``bad-txnmrklroot``, ``bad-cb-height``, ``bad-cb-amount``, ``bad-witness-merkle-match``,
...). Scripts and signatures are NOT evaluated: an input is valid when the output it spends
exists, is unspent and (for a coinbase) mature. Every block after the genesis must carry
the configured difficulty's nBits; the best chain is the longest valid one (all blocks
have the same work), the first seen winning ties.
"""

from __future__ import annotations

from collections import OrderedDict
from collections.abc import Callable
from dataclasses import dataclass
from fractions import Fraction

from otedama.chain.coinbase import encode_height
from otedama.chain.merkle import (
    WITNESS_COMMITMENT_HEADER,
    merkle_root,
    witness_commitment,
    witness_commitment_script,
    witness_merkle_root,
)
from otedama.chain.params import NetworkParams, block_subsidy, devnet_genesis
from otedama.chain.serialize import Block, BlockHeader, SerializationError, Transaction
from otedama.chain.target import bits_to_target, difficulty_to_target, hash_to_int, target_to_bits

__all__ = [
    "MAX_BLOCK_WEIGHT",
    "MAX_FUTURE_BLOCK_TIME",
    "BlockDecodeError",
    "BlockIndex",
    "ChainError",
    "Coin",
    "DevnetChain",
    "MempoolEntry",
    "OutPoint",
    "SubmitResult",
    "TemplateData",
    "devnet_bits",
    "is_coinbase",
    "tx_weight",
]

MAX_BLOCK_WEIGHT = 4_000_000
MAX_MONEY = 21_000_000 * 100_000_000
MAX_FUTURE_BLOCK_TIME = 2 * 60 * 60
BLOCK_VERSION = 0x20000000
LOCKTIME_THRESHOLD = 500_000_000

OutPoint = tuple[bytes, int]
"""(txid in internal order, output index)."""


class BlockDecodeError(ValueError):
    """The submitted bytes are not a block (Core: -22 ``Block decode failed``)."""


class ChainError(ValueError):
    """A request the chain cannot honour (unknown block, genesis invalidation, ...)."""


def devnet_bits(difficulty: Fraction | int | str, params: NetworkParams) -> int:
    """The nBits every devnet block must carry for ``difficulty``.

    Raises ``ValueError`` naming the value when the difficulty is not positive or so low
    that its target is above the network's proof-of-work limit.
    """
    target = difficulty_to_target(difficulty)
    if target > params.pow_limit:
        raise ValueError(
            f"devnet difficulty {difficulty} is too low: its target exceeds the proof-of-work "
            f"limit (the lowest difficulty is about {float(Fraction(0xFFFF << 208, params.pow_limit)):.3g})"
        )
    bits = target_to_bits(target)
    if bits_to_target(bits) == 0:
        raise ValueError(f"devnet difficulty {difficulty} is too high: its target rounds to 0")
    return bits


def tx_weight(tx: Transaction) -> int:
    """BIP141 weight: base size * 3 + total size."""
    return len(tx.serialize(witness=False)) * 3 + len(tx.serialize(witness=True))


@dataclass(frozen=True)
class Coin:
    """An unspent output: value, script, the height of its block, and whether a coinbase made it."""

    value: int
    script: bytes
    height: int
    coinbase: bool


@dataclass(eq=False)
class BlockIndex:
    """One known block: where it sits in the tree and what connecting it did."""

    hash: bytes
    header: BlockHeader
    raw: bytes
    height: int
    parent: BlockIndex | None
    sequence: int
    median_time_past: int
    failed: bool = False
    fees: int = 0
    undo: list[tuple[OutPoint, Coin]] | None = None
    tx_count: int = 0

    def block(self) -> Block:
        """The parsed block (parsed again on each call; blocks are kept as bytes)."""
        return Block.parse(self.raw)


@dataclass(frozen=True)
class MempoolEntry:
    """A transaction waiting for a block, with its fee and the time it arrived."""

    tx: Transaction
    txid: bytes
    wtxid: bytes
    fee: int
    weight: int
    time: int


@dataclass(frozen=True)
class SubmitResult:
    """What ``submit_block`` did: Core's reason (None = accepted), whether it was stored
    (new block to persist) and whether the best tip changed."""

    reason: str | None
    stored: bool
    tip_changed: bool
    block_hash: bytes | None


@dataclass(frozen=True)
class TemplateData:
    """Everything a ``getblocktemplate`` reply is built from."""

    version: int
    prev_hash: bytes
    height: int
    bits: int
    target: int
    mintime: int
    curtime: int
    coinbase_value: int
    entries: tuple[MempoolEntry, ...]
    depends: tuple[tuple[int, ...], ...]
    witness_commitment: bytes


class _Reject(Exception):
    def __init__(self, reason: str) -> None:
        super().__init__(reason)
        self.reason = reason


ConnectHook = Callable[[BlockIndex, Block, list[list[Coin]]], None]
"""Called after a block is connected with the coins each transaction spent."""


class DevnetChain:
    """The devnet's chain of blocks, UTXO set and mempool."""

    def __init__(self, params: NetworkParams, difficulty: Fraction | int | str) -> None:
        self.params = params
        self.difficulty = Fraction(difficulty)
        self.bits = devnet_bits(self.difficulty, params)
        self.target = bits_to_target(self.bits)
        self.index: dict[bytes, BlockIndex] = {}
        self.active: list[BlockIndex] = []
        self.utxo: dict[OutPoint, Coin] = {}
        self.by_script: dict[bytes, set[OutPoint]] = {}
        self.tx_index: dict[bytes, tuple[BlockIndex, int]] = {}
        """Best-chain txid -> (block, position in it)."""
        self.mempool: OrderedDict[bytes, MempoolEntry] = OrderedDict()
        self.mempool_spent: dict[OutPoint, bytes] = {}
        self.mempool_updates = 0
        self.connect_hooks: list[ConnectHook] = []
        self._sequence = 0
        genesis = devnet_genesis()
        raw = genesis.serialize()
        entry = BlockIndex(
            hash=genesis.hash(),
            header=genesis.header,
            raw=raw,
            height=0,
            parent=None,
            sequence=self._next_sequence(),
            median_time_past=genesis.header.time,
            undo=[],
            tx_count=1,
        )
        # Like Core, the genesis coinbase output is not added to the UTXO set.
        self.index[entry.hash] = entry
        self.active.append(entry)
        self.tx_index[genesis.transactions[0].txid()] = (entry, 0)

    # -- reading ------------------------------------------------------------------------

    @property
    def tip(self) -> BlockIndex:
        """The best block."""
        return self.active[-1]

    @property
    def genesis(self) -> BlockIndex:
        """The genesis block."""
        return self.active[0]

    def on_best_chain(self, entry: BlockIndex) -> bool:
        """Whether ``entry`` is part of the best chain."""
        return entry.height < len(self.active) and self.active[entry.height] is entry

    def confirmations(self, entry: BlockIndex) -> int:
        """Core's ``confirmations``: depth on the best chain, -1 off it."""
        return self.tip.height - entry.height + 1 if self.on_best_chain(entry) else -1

    def coins_for_script(self, script: bytes) -> list[tuple[OutPoint, Coin]]:
        """Confirmed unspent outputs paying ``script``."""
        return [(op, self.utxo[op]) for op in sorted(self.by_script.get(script, ()))]

    def median_time_past(self, entry: BlockIndex) -> int:
        """Median of the times of ``entry`` and its 10 ancestors."""
        times: list[int] = []
        cursor: BlockIndex | None = entry
        while cursor is not None and len(times) < 11:
            times.append(cursor.header.time)
            cursor = cursor.parent
        times.sort()
        return times[len(times) // 2]

    # -- templates ----------------------------------------------------------------------

    def template(self, now: int, max_weight: int = MAX_BLOCK_WEIGHT - 8_000) -> TemplateData:
        """The next block's template over the current tip with the mempool's transactions."""
        tip = self.tip
        height = tip.height + 1
        mintime = tip.median_time_past + 1
        chosen: list[MempoolEntry] = []
        positions: dict[bytes, int] = {}
        depends: list[tuple[int, ...]] = []
        weight = 0
        for entry in self.mempool.values():
            parents = {txin.prev_hash for txin in entry.tx.inputs if txin.prev_hash in self.mempool}
            if any(p not in positions for p in parents) or weight + entry.weight > max_weight:
                continue
            weight += entry.weight
            chosen.append(entry)
            positions[entry.txid] = len(chosen)
            depends.append(tuple(sorted(positions[p] for p in parents)))
        fees = sum(e.fee for e in chosen)
        root = witness_merkle_root([e.wtxid for e in chosen])
        return TemplateData(
            version=BLOCK_VERSION,
            prev_hash=tip.hash,
            height=height,
            bits=self.bits,
            target=self.target,
            mintime=mintime,
            curtime=max(now, mintime),
            coinbase_value=block_subsidy(height, self.params) + fees,
            entries=tuple(chosen),
            depends=tuple(depends),
            witness_commitment=witness_commitment_script(root),
        )

    # -- blocks -------------------------------------------------------------------------

    def submit_block(self, raw: bytes, now: int) -> SubmitResult:
        """Check a block fully and add it; reasons are Core's ``submitblock`` strings.

        Raises ``BlockDecodeError`` when ``raw`` does not parse as a block.
        """
        try:
            block = Block.parse(raw)
        except (SerializationError, ValueError) as e:
            raise BlockDecodeError(f"Block decode failed: {e}") from e
        block_hash = block.hash()
        known = self.index.get(block_hash)
        if known is not None:
            if known.failed:
                duplicate = "duplicate-invalid"
            elif known.undo is None:
                duplicate = "duplicate-inconclusive"
            else:
                duplicate = "duplicate"
            return SubmitResult(duplicate, False, False, block_hash)
        try:
            parent = self._check_header(block.header, now)
            self._check_block(block)
            self._check_contextual(block, parent)
        except _Reject as r:
            return SubmitResult(r.reason, False, False, block_hash)
        old_tip = self.tip
        entry = self._add_index(block, raw, parent)
        if parent is old_tip:
            failure = self._connect(entry)
            if failure is not None:
                # Not kept on disk: it can never become part of a chain.
                self._mark_failed(entry)
                return SubmitResult(failure, False, False, block_hash)
            return SubmitResult(None, True, True, block_hash)
        reason: str | None = None
        if entry.height > old_tip.height:
            reason = self._activate_best_chain().get(entry.hash)
        if reason is None and entry.failed:
            reason = "bad-prevblk"  # an ancestor on its branch failed to connect
        elif reason is None and not self.on_best_chain(entry):
            reason = "inconclusive"
        return SubmitResult(reason, True, self.tip is not old_tip, block_hash)

    def check_proposal(self, raw: bytes, now: int) -> str | None:
        """``getblocktemplate`` proposal mode: Core's verdict without the proof-of-work check."""
        try:
            block = Block.parse(raw)
        except (SerializationError, ValueError) as e:
            raise BlockDecodeError(f"Block decode failed: {e}") from e
        known = self.index.get(block.hash())
        if known is not None:
            return "duplicate-invalid" if known.failed else "duplicate"
        if block.header.prev_hash != self.tip.hash:
            return "inconclusive-not-best-prevblk"
        try:
            self._check_header(block.header, now, check_pow=False)
            self._check_block(block)
            self._check_contextual(block, self.tip)
            self._connect_view(block, self.tip.height + 1)
        except _Reject as r:
            return r.reason
        return None

    def invalidate_block(self, block_hash: bytes) -> bool:
        """Mark a block and its descendants invalid and move the best chain off them.

        Returns whether the tip changed. The disconnected blocks' transactions go back
        to the mempool when they are still valid.
        """
        entry = self.index.get(block_hash)
        if entry is None:
            raise ChainError("Block not found")
        if entry.parent is None:
            raise ChainError("Cannot invalidate the genesis block")
        old_tip = self.tip
        self._mark_failed(entry)
        self._activate_best_chain()
        return self.tip is not old_tip

    def _next_sequence(self) -> int:
        self._sequence += 1
        return self._sequence

    def _check_header(self, header: BlockHeader, now: int, check_pow: bool = True) -> BlockIndex:
        if check_pow:
            try:
                target = bits_to_target(header.bits)
            except ValueError:
                raise _Reject("high-hash") from None
            if target == 0 or target > self.params.pow_limit:
                raise _Reject("high-hash")
            if hash_to_int(header.hash()) > target:
                raise _Reject("high-hash")
        parent = self.index.get(header.prev_hash)
        if parent is None:
            raise _Reject("prev-blk-not-found")
        if parent.failed:
            raise _Reject("bad-prevblk")
        if header.bits != self.bits:
            raise _Reject("bad-diffbits")
        if header.time <= parent.median_time_past:
            raise _Reject("time-too-old")
        if header.time > now + MAX_FUTURE_BLOCK_TIME:
            raise _Reject("time-too-new")
        version = header.version - (1 << 32) if header.version >= 1 << 31 else header.version
        if version < 4:
            raise _Reject(f"bad-version(0x{header.version:08x})")
        return parent

    def _check_block(self, block: Block) -> None:
        txs = block.transactions
        txids = [tx.txid() for tx in txs]
        if merkle_root(txids) != block.header.merkle_root:
            raise _Reject("bad-txnmrklroot")
        if len(set(txids)) != len(txids):
            raise _Reject("bad-txns-duplicate")
        stripped = 80 + sum(len(tx.serialize(witness=False)) for tx in txs)
        if not txs or len(txs) * 4 > MAX_BLOCK_WEIGHT or stripped * 4 > MAX_BLOCK_WEIGHT:
            raise _Reject("bad-blk-length")
        if not is_coinbase(txs[0]):
            raise _Reject("bad-cb-missing")
        if any(is_coinbase(tx) for tx in txs[1:]):
            raise _Reject("bad-cb-multiple")
        for tx in txs:
            _check_transaction(tx)

    def _check_contextual(self, block: Block, parent: BlockIndex) -> None:
        height = parent.height + 1
        cutoff = parent.median_time_past
        for tx in block.transactions:
            if not _is_final(tx, height, cutoff):
                raise _Reject("bad-txns-nonfinal")
        coinbase = block.transactions[0]
        if not coinbase.inputs[0].script_sig.startswith(encode_height(height)):
            raise _Reject("bad-cb-height")
        commitment = _commitment_index(coinbase)
        if commitment is not None:
            witness = coinbase.inputs[0].witness
            if len(witness) != 1 or len(witness[0]) != 32:
                raise _Reject("bad-witness-nonce-size")
            root = witness_merkle_root([tx.wtxid() for tx in block.transactions[1:]])
            expected = witness_commitment(root, witness[0])
            if coinbase.outputs[commitment].script_pubkey[6:38] != expected:
                raise _Reject("bad-witness-merkle-match")
        elif any(tx.has_witness for tx in block.transactions):
            raise _Reject("unexpected-witness")
        weight = 80 * 4 + sum(tx_weight(tx) for tx in block.transactions)
        if weight > MAX_BLOCK_WEIGHT:
            raise _Reject("bad-blk-weight")

    def _add_index(self, block: Block, raw: bytes, parent: BlockIndex) -> BlockIndex:
        entry = BlockIndex(
            hash=block.hash(),
            header=block.header,
            raw=raw,
            height=parent.height + 1,
            parent=parent,
            sequence=self._next_sequence(),
            median_time_past=0,
            tx_count=len(block.transactions),
        )
        entry.median_time_past = self.median_time_past(entry)
        self.index[entry.hash] = entry
        return entry

    def _best_candidate(self) -> BlockIndex:
        """The highest valid block; among equals the current tip, then the first seen."""
        tip = self.tip
        return max(
            (e for e in self.index.values() if not e.failed),
            key=lambda e: (e.height, e is tip and not tip.failed, -e.sequence),
        )

    def _activate_best_chain(self) -> dict[bytes, str]:
        """Reorganize to the best valid block; returns the reasons of blocks that failed."""
        failures: dict[bytes, str] = {}
        resurrected: list[Transaction] = []
        disconnected = False
        while True:
            best = self._best_candidate()
            if best is self.tip:
                break
            path: list[BlockIndex] = []
            cursor: BlockIndex | None = best
            while cursor is not None and not self.on_best_chain(cursor):
                path.append(cursor)
                cursor = cursor.parent
            fork = cursor
            assert fork is not None  # the genesis is on every chain
            while self.tip is not fork:
                resurrected.extend(self._disconnect_tip())
                disconnected = True
            for entry in reversed(path):
                reason = self._connect(entry)
                if reason is not None:
                    failures[entry.hash] = reason
                    self._mark_failed(entry)
                    break
        if disconnected:
            self._rebuild_mempool(resurrected)
        return failures

    def _mark_failed(self, entry: BlockIndex) -> None:
        """Mark ``entry`` and every block built on it as invalid."""
        children: dict[bytes, list[BlockIndex]] = {}
        for other in self.index.values():
            if other.parent is not None and other.height > entry.height:
                children.setdefault(other.parent.hash, []).append(other)
        todo = [entry]
        while todo:
            current = todo.pop()
            current.failed = True
            todo.extend(children.get(current.hash, ()))

    def _connect_view(
        self, block: Block, height: int
    ) -> tuple[dict[OutPoint, Coin], list[list[Coin]], int]:
        """Check the block's inputs and amounts against the UTXO set without changing it.

        Returns the coins it creates, the coins each transaction spends, and its fees.
        """
        created: dict[OutPoint, Coin] = {}
        spent_by_tx: list[list[Coin]] = [[]]
        spent_set: set[OutPoint] = set()
        fees = 0
        for i, tx in enumerate(block.transactions):
            if i > 0:
                spent: list[Coin] = []
                for txin in tx.inputs:
                    op = (txin.prev_hash, txin.prev_index)
                    coin = created.get(op) or self.utxo.get(op)
                    if coin is None or op in spent_set:
                        raise _Reject("bad-txns-inputs-missingorspent")
                    if coin.coinbase and height - coin.height < self.params.coinbase_maturity:
                        raise _Reject("bad-txns-premature-spend-of-coinbase")
                    spent_set.add(op)
                    spent.append(coin)
                value_in = sum(c.value for c in spent)
                if value_in > MAX_MONEY:
                    raise _Reject("bad-txns-inputvalues-outofrange")
                value_out = sum(o.value for o in tx.outputs)
                if value_in < value_out:
                    raise _Reject("bad-txns-in-belowout")
                fees += value_in - value_out
                spent_by_tx.append(spent)
            txid = tx.txid()
            for n, out in enumerate(tx.outputs):
                if not _unspendable(out.script_pubkey):
                    created[(txid, n)] = Coin(out.value, out.script_pubkey, height, i == 0)
        claimed = sum(o.value for o in block.transactions[0].outputs)
        if claimed > block_subsidy(height, self.params) + fees:
            raise _Reject("bad-cb-amount")
        for op in spent_set:
            created.pop(op, None)
        return created, spent_by_tx, fees

    def _connect(self, entry: BlockIndex) -> str | None:
        block = entry.block()
        try:
            created, spent_by_tx, fees = self._connect_view(block, entry.height)
        except _Reject as r:
            return r.reason
        undo: list[tuple[OutPoint, Coin]] = []
        for tx in block.transactions[1:]:
            for txin in tx.inputs:
                op = (txin.prev_hash, txin.prev_index)
                coin = self.utxo.get(op)
                if coin is not None:
                    undo.append((op, coin))
                    self._remove_coin(op)
        for op, coin in created.items():
            self._add_coin(op, coin)
        entry.undo = undo
        entry.fees = fees
        self.active.append(entry)
        for position, tx in enumerate(block.transactions):
            self.tx_index[tx.txid()] = (entry, position)
        self._remove_for_block(block)
        for hook in self.connect_hooks:
            hook(entry, block, spent_by_tx)
        return None

    def _disconnect_tip(self) -> list[Transaction]:
        entry = self.active.pop()
        block = entry.block()
        for tx in block.transactions:
            txid = tx.txid()
            self.tx_index.pop(txid, None)
            for n in range(len(tx.outputs)):
                if (txid, n) in self.utxo:
                    self._remove_coin((txid, n))
        for op, coin in entry.undo or ():
            self._add_coin(op, coin)
        return list(block.transactions[1:])

    def _add_coin(self, op: OutPoint, coin: Coin) -> None:
        self.utxo[op] = coin
        self.by_script.setdefault(coin.script, set()).add(op)

    def _remove_coin(self, op: OutPoint) -> None:
        coin = self.utxo.pop(op)
        ops = self.by_script.get(coin.script)
        if ops is not None:
            ops.discard(op)
            if not ops:
                del self.by_script[coin.script]

    # -- mempool ------------------------------------------------------------------------

    def accept_to_mempool(self, tx: Transaction, now: int) -> MempoolEntry:
        """Add a transaction whose inputs are confirmed or in the mempool.

        Raises ``ChainError`` with Core's reject reason when it cannot enter the mempool.
        """
        txid = tx.txid()
        if txid in self.mempool:
            raise ChainError("txn-already-in-mempool")
        if txid in self.tx_index:
            raise ChainError("txn-already-known")
        try:
            _check_transaction(tx)
        except _Reject as r:
            raise ChainError(r.reason) from None
        if is_coinbase(tx):
            raise ChainError("coinbase")
        next_height = self.tip.height + 1
        if not _is_final(tx, next_height, self.tip.median_time_past):
            raise ChainError("non-final")
        value_in = 0
        for txin in tx.inputs:
            op = (txin.prev_hash, txin.prev_index)
            if op in self.mempool_spent:
                raise ChainError("txn-mempool-conflict")
            coin = self.utxo.get(op)
            if coin is None:
                parent = self.mempool.get(txin.prev_hash)
                if parent is None or txin.prev_index >= len(parent.tx.outputs):
                    raise ChainError("bad-txns-inputs-missingorspent")
                value_in += parent.tx.outputs[txin.prev_index].value
                continue
            if coin.coinbase and next_height - coin.height < self.params.coinbase_maturity:
                raise ChainError("bad-txns-premature-spend-of-coinbase")
            value_in += coin.value
        value_out = sum(o.value for o in tx.outputs)
        if value_in < value_out:
            raise ChainError("bad-txns-in-belowout")
        entry = MempoolEntry(tx, txid, tx.wtxid(), value_in - value_out, tx_weight(tx), now)
        self.mempool[txid] = entry
        for txin in tx.inputs:
            self.mempool_spent[(txin.prev_hash, txin.prev_index)] = txid
        self.mempool_updates += 1
        return entry

    def mempool_coin(self, op: OutPoint) -> TxOutRef | None:
        """An output of a mempool transaction that no other mempool transaction spends."""
        entry = self.mempool.get(op[0])
        if entry is None or op[1] >= len(entry.tx.outputs) or op in self.mempool_spent:
            return None
        return TxOutRef(entry.tx.outputs[op[1]].value, entry.tx.outputs[op[1]].script_pubkey)

    def _remove_for_block(self, block: Block) -> None:
        """Drop the block's transactions from the mempool, and what conflicts with them."""
        in_block = {tx.txid() for tx in block.transactions}
        confirmed = in_block & self.mempool.keys()
        gone = {
            other
            for tx in block.transactions
            for txin in tx.inputs
            if (other := self.mempool_spent.get((txin.prev_hash, txin.prev_index))) is not None
            and other not in in_block
        }
        if not confirmed and not gone:
            return
        kept = []
        for e in self.mempool.values():
            if e.txid in confirmed:
                continue
            if e.txid in gone or any(txin.prev_hash in gone for txin in e.tx.inputs):
                gone.add(e.txid)
                continue
            kept.append(e)
        self.mempool.clear()
        self.mempool_spent.clear()
        for e in kept:
            self.mempool[e.txid] = e
            for txin in e.tx.inputs:
                self.mempool_spent[(txin.prev_hash, txin.prev_index)] = e.txid
        self.mempool_updates += 1

    def _rebuild_mempool(self, resurrected: list[Transaction]) -> None:
        """After a reorganization: disconnected transactions first, then the old mempool;
        whatever is no longer valid (spent, missing or immature inputs) is dropped."""
        old = list(self.mempool.values())
        self.mempool.clear()
        self.mempool_spent.clear()
        fallback = self.tip.header.time
        candidates = [(tx, fallback) for tx in resurrected] + [(e.tx, e.time) for e in old]
        for tx, time in candidates:
            txid = tx.txid()
            if txid in self.tx_index or txid in self.mempool:
                continue
            try:
                self.accept_to_mempool(tx, time)
            except ChainError:
                continue
        self.mempool_updates += 1


@dataclass(frozen=True)
class TxOutRef:
    """Value and script of an output (of a mempool transaction)."""

    value: int
    script: bytes


def is_coinbase(tx: Transaction) -> bool:
    return (
        len(tx.inputs) == 1
        and tx.inputs[0].prev_hash == bytes(32)
        and tx.inputs[0].prev_index == 0xFFFFFFFF
    )


def _unspendable(script: bytes) -> bool:
    return (len(script) > 0 and script[0] == 0x6A) or len(script) > 10_000


def _check_transaction(tx: Transaction) -> None:
    """Core's context-free ``CheckTransaction``."""
    if not tx.inputs:
        raise _Reject("bad-txns-vin-empty")
    if not tx.outputs:
        raise _Reject("bad-txns-vout-empty")
    if len(tx.serialize(witness=False)) * 4 > MAX_BLOCK_WEIGHT:
        raise _Reject("bad-txns-oversize")
    total = 0
    for out in tx.outputs:
        if out.value < 0:
            raise _Reject("bad-txns-vout-negative")
        if out.value > MAX_MONEY:
            raise _Reject("bad-txns-vout-toolarge")
        total += out.value
        if total > MAX_MONEY:
            raise _Reject("bad-txns-txouttotal-toolarge")
    outpoints = {(i.prev_hash, i.prev_index) for i in tx.inputs}
    if len(outpoints) != len(tx.inputs):
        raise _Reject("bad-txns-inputs-duplicate")
    if is_coinbase(tx):
        if not 2 <= len(tx.inputs[0].script_sig) <= 100:
            raise _Reject("bad-cb-length")
    elif any(i.prev_hash == bytes(32) and i.prev_index == 0xFFFFFFFF for i in tx.inputs):
        raise _Reject("bad-txns-prevout-null")


def _is_final(tx: Transaction, height: int, cutoff_time: int) -> bool:
    if tx.lock_time == 0:
        return True
    limit = height if tx.lock_time < LOCKTIME_THRESHOLD else cutoff_time
    if tx.lock_time < limit:
        return True
    return all(txin.sequence == 0xFFFFFFFF for txin in tx.inputs)


def _commitment_index(coinbase: Transaction) -> int | None:
    """Index of the last output carrying a BIP141 witness commitment, like Core."""
    found = None
    for n, out in enumerate(coinbase.outputs):
        script = out.script_pubkey
        if len(script) >= 38 and script[:6] == WITNESS_COMMITMENT_HEADER:
            found = n
    return found

"""Bitcoin wire serialization of transactions (with and without BIP144 witness), headers and blocks.

Values are frozen dataclasses validated at construction; ``parse`` reads the exact wire
bytes and raises ``SerializationError`` naming the field that is malformed or truncated.
Hashes are kept in internal (serialized) byte order.
"""

from __future__ import annotations

from dataclasses import dataclass

from otedama.chain.hashing import sha256d

__all__ = [
    "Block",
    "BlockHeader",
    "SerializationError",
    "Transaction",
    "TxIn",
    "TxOut",
    "encode_varint",
    "push_data",
    "read_varint",
]

_U32 = 0xFFFFFFFF
_I64_MIN = -(1 << 63)
_I64_MAX = (1 << 63) - 1


class SerializationError(ValueError):
    """Bytes that are not a valid serialization; the message names what is wrong and where."""


def encode_varint(n: int) -> bytes:
    """Bitcoin CompactSize encoding of ``n`` (0 <= n < 2**64)."""
    if n < 0:
        raise ValueError(f"varint must not be negative, got {n}")
    if n < 0xFD:
        return bytes((n,))
    if n <= 0xFFFF:
        return b"\xfd" + n.to_bytes(2, "little")
    if n <= 0xFFFFFFFF:
        return b"\xfe" + n.to_bytes(4, "little")
    if n < 1 << 64:
        return b"\xff" + n.to_bytes(8, "little")
    raise ValueError(f"varint must be below 2**64, got {n}")


def read_varint(buf: bytes, offset: int = 0) -> tuple[int, int]:
    """Read a CompactSize at ``offset``; returns ``(value, offset after it)``.

    Non-canonical encodings (a value that fits a shorter form) are rejected as Core does.
    """
    if offset >= len(buf):
        raise SerializationError(f"truncated varint at offset {offset}: no bytes left")
    first = buf[offset]
    if first < 0xFD:
        return first, offset + 1
    width = {0xFD: 2, 0xFE: 4, 0xFF: 8}[first]
    end = offset + 1 + width
    if end > len(buf):
        raise SerializationError(
            f"truncated varint at offset {offset}: needs {width} more bytes, "
            f"{len(buf) - offset - 1} left"
        )
    value = int.from_bytes(buf[offset + 1 : end], "little")
    minimum = {2: 0xFD, 4: 0x10000, 8: 0x100000000}[width]
    if value < minimum:
        raise SerializationError(
            f"non-canonical varint at offset {offset}: {value} encoded in {width + 1} bytes"
        )
    return value, end


def push_data(data: bytes) -> bytes:
    """Script opcode(s) pushing ``data`` with the minimal push (direct, PUSHDATA1/2/4)."""
    n = len(data)
    if n < 0x4C:
        return bytes((n,)) + data
    if n <= 0xFF:
        return b"\x4c" + bytes((n,)) + data
    if n <= 0xFFFF:
        return b"\x4d" + n.to_bytes(2, "little") + data
    return b"\x4e" + n.to_bytes(4, "little") + data


class _Reader:
    """Cursor over a byte string whose errors say what was being read."""

    def __init__(self, buf: bytes, offset: int, what: str) -> None:
        self.buf = buf
        self.offset = offset
        self.what = what

    def fail(self, message: str) -> SerializationError:
        return SerializationError(f"{self.what}: {message}")

    def read(self, n: int, field: str) -> bytes:
        end = self.offset + n
        if end > len(self.buf):
            raise self.fail(
                f"truncated {field} at offset {self.offset}: needs {n} bytes, "
                f"{len(self.buf) - self.offset} left"
            )
        data = self.buf[self.offset : end]
        self.offset = end
        return data

    def u32(self, field: str) -> int:
        return int.from_bytes(self.read(4, field), "little")

    def varint(self, field: str) -> int:
        try:
            value, self.offset = read_varint(self.buf, self.offset)
        except SerializationError as e:
            raise self.fail(f"{field}: {e}") from None
        return value

    def count(self, field: str, min_item_size: int) -> int:
        """A varint element count, refused when the remaining bytes cannot hold that many."""
        n = self.varint(field)
        if n * min_item_size > len(self.buf) - self.offset:
            raise self.fail(
                f"{field} {n} at offset {self.offset} is more than the "
                f"{len(self.buf) - self.offset} remaining bytes can hold"
            )
        return n

    def var_bytes(self, field: str) -> bytes:
        n = self.count(f"{field} length", 1)
        return self.read(n, field)

    def finish(self) -> None:
        if self.offset != len(self.buf):
            raise self.fail(f"{len(self.buf) - self.offset} trailing bytes at offset {self.offset}")


def _check_hash(value: bytes, field: str) -> None:
    if not isinstance(value, bytes) or len(value) != 32:
        raise ValueError(f"{field} must be 32 bytes, got {value!r}")


def _check_u32(value: int, field: str) -> None:
    if not isinstance(value, int) or not 0 <= value <= _U32:
        raise ValueError(f"{field} must be a 32-bit unsigned number, got {value!r}")


@dataclass(frozen=True)
class TxIn:
    """A transaction input: the outpoint spent, its scriptSig, nSequence and witness stack."""

    prev_hash: bytes
    prev_index: int
    script_sig: bytes
    sequence: int
    witness: tuple[bytes, ...] = ()

    def __post_init__(self) -> None:
        _check_hash(self.prev_hash, "TxIn.prev_hash")
        _check_u32(self.prev_index, "TxIn.prev_index")
        _check_u32(self.sequence, "TxIn.sequence")
        if not isinstance(self.script_sig, bytes):
            raise ValueError(f"TxIn.script_sig must be bytes, got {self.script_sig!r}")
        if not isinstance(self.witness, tuple) or not all(
            isinstance(item, bytes) for item in self.witness
        ):
            raise ValueError(f"TxIn.witness must be a tuple of bytes, got {self.witness!r}")

    def serialize(self) -> bytes:
        """The input without its witness (outpoint, scriptSig, nSequence)."""
        return (
            self.prev_hash
            + self.prev_index.to_bytes(4, "little")
            + encode_varint(len(self.script_sig))
            + self.script_sig
            + self.sequence.to_bytes(4, "little")
        )

    def serialize_witness(self) -> bytes:
        """The input's witness stack as serialized after the outputs (BIP144)."""
        return encode_varint(len(self.witness)) + b"".join(
            encode_varint(len(item)) + item for item in self.witness
        )


@dataclass(frozen=True)
class TxOut:
    """A transaction output: value in satoshis and scriptPubKey."""

    value: int
    script_pubkey: bytes

    def __post_init__(self) -> None:
        if not isinstance(self.value, int) or not _I64_MIN <= self.value <= _I64_MAX:
            raise ValueError(f"TxOut.value must be a 64-bit signed number, got {self.value!r}")
        if not isinstance(self.script_pubkey, bytes):
            raise ValueError(f"TxOut.script_pubkey must be bytes, got {self.script_pubkey!r}")

    def serialize(self) -> bytes:
        """Value and scriptPubKey as on the wire."""
        return (
            self.value.to_bytes(8, "little", signed=True)
            + encode_varint(len(self.script_pubkey))
            + self.script_pubkey
        )


@dataclass(frozen=True)
class Transaction:
    """A transaction; ``serialize(witness=True)`` uses the BIP144 form when it has witnesses."""

    version: int
    inputs: tuple[TxIn, ...]
    outputs: tuple[TxOut, ...]
    lock_time: int

    def __post_init__(self) -> None:
        _check_u32(self.version, "Transaction.version")
        _check_u32(self.lock_time, "Transaction.lock_time")
        if not isinstance(self.inputs, tuple) or not all(isinstance(i, TxIn) for i in self.inputs):
            raise ValueError("Transaction.inputs must be a tuple of TxIn")
        if not isinstance(self.outputs, tuple) or not all(
            isinstance(o, TxOut) for o in self.outputs
        ):
            raise ValueError("Transaction.outputs must be a tuple of TxOut")

    @property
    def has_witness(self) -> bool:
        """Whether any input carries a non-empty witness stack."""
        return any(txin.witness for txin in self.inputs)

    def serialize(self, witness: bool = True) -> bytes:
        """Wire bytes; with ``witness`` and a witness present, the BIP144 marker/flag form."""
        extended = witness and self.has_witness
        parts = [self.version.to_bytes(4, "little")]
        if extended:
            parts.append(b"\x00\x01")
        parts.append(encode_varint(len(self.inputs)))
        parts.extend(txin.serialize() for txin in self.inputs)
        parts.append(encode_varint(len(self.outputs)))
        parts.extend(txout.serialize() for txout in self.outputs)
        if extended:
            parts.extend(txin.serialize_witness() for txin in self.inputs)
        parts.append(self.lock_time.to_bytes(4, "little"))
        return b"".join(parts)

    def txid(self) -> bytes:
        """Transaction id (internal order): sha256d of the serialization without witness."""
        return sha256d(self.serialize(witness=False))

    def wtxid(self) -> bytes:
        """Witness transaction id (internal order): sha256d of the full serialization."""
        return sha256d(self.serialize(witness=True))

    @classmethod
    def parse(cls, data: bytes) -> Transaction:
        """Parse exactly one serialized transaction (with or without witness)."""
        reader = _Reader(bytes(data), 0, "transaction")
        tx = cls._read(reader)
        reader.finish()
        return tx

    @classmethod
    def parse_from(cls, data: bytes, offset: int) -> tuple[Transaction, int]:
        """Parse a transaction starting at ``offset``; returns it and the offset after it."""
        reader = _Reader(data, offset, f"transaction at offset {offset}")
        tx = cls._read(reader)
        return tx, reader.offset

    @classmethod
    def _read(cls, r: _Reader) -> Transaction:
        version = r.u32("version")
        n_in = r.count("input count", 41)
        flags = 0
        if n_in == 0:
            # BIP144: an empty input vector is the marker; the next byte is the flag.
            flags = r.read(1, "witness flag")[0]
            if flags == 0:
                raise r.fail("witness marker 0x00 followed by flag 0x00 (no inputs)")
            n_in = r.count("input count", 41)
        inputs = []
        for i in range(n_in):
            prev_hash = r.read(32, f"input {i} previous txid")
            prev_index = r.u32(f"input {i} previous index")
            script_sig = r.var_bytes(f"input {i} scriptSig")
            sequence = r.u32(f"input {i} sequence")
            inputs.append((prev_hash, prev_index, script_sig, sequence))
        n_out = r.count("output count", 9)
        outputs = []
        for i in range(n_out):
            value = int.from_bytes(r.read(8, f"output {i} value"), "little", signed=True)
            outputs.append(TxOut(value, r.var_bytes(f"output {i} scriptPubKey")))
        witnesses: list[tuple[bytes, ...]] = [()] * n_in
        if flags & 1:
            flags &= ~1
            for i in range(n_in):
                n_items = r.count(f"input {i} witness item count", 1)
                witnesses[i] = tuple(
                    r.var_bytes(f"input {i} witness item {j}") for j in range(n_items)
                )
            if not any(witnesses):
                raise r.fail("witness flag set but every witness is empty (superfluous witness)")
        if flags:
            raise r.fail(f"unknown witness flag bits 0x{flags:02x}")
        lock_time = r.u32("lock time")
        return cls(
            version,
            tuple(
                TxIn(h, idx, sig, seq, w)
                for (h, idx, sig, seq), w in zip(inputs, witnesses, strict=True)
            ),
            tuple(outputs),
            lock_time,
        )


@dataclass(frozen=True)
class BlockHeader:
    """An 80-byte block header; hashes are in internal byte order."""

    version: int
    prev_hash: bytes
    merkle_root: bytes
    time: int
    bits: int
    nonce: int

    def __post_init__(self) -> None:
        _check_u32(self.version, "BlockHeader.version")
        _check_hash(self.prev_hash, "BlockHeader.prev_hash")
        _check_hash(self.merkle_root, "BlockHeader.merkle_root")
        _check_u32(self.time, "BlockHeader.time")
        _check_u32(self.bits, "BlockHeader.bits")
        _check_u32(self.nonce, "BlockHeader.nonce")

    def serialize(self) -> bytes:
        """The 80 header bytes that are hashed."""
        return (
            self.version.to_bytes(4, "little")
            + self.prev_hash
            + self.merkle_root
            + self.time.to_bytes(4, "little")
            + self.bits.to_bytes(4, "little")
            + self.nonce.to_bytes(4, "little")
        )

    def hash(self) -> bytes:
        """Block hash in internal order (reverse it for the RPC display form)."""
        return sha256d(self.serialize())

    @classmethod
    def parse(cls, data: bytes) -> BlockHeader:
        """Parse exactly 80 header bytes."""
        if len(data) != 80:
            raise SerializationError(f"block header must be 80 bytes, got {len(data)}")
        return cls._read(_Reader(bytes(data), 0, "block header"))

    @classmethod
    def _read(cls, r: _Reader) -> BlockHeader:
        return cls(
            version=r.u32("version"),
            prev_hash=r.read(32, "previous block hash"),
            merkle_root=r.read(32, "merkle root"),
            time=r.u32("time"),
            bits=r.u32("bits"),
            nonce=r.u32("nonce"),
        )


@dataclass(frozen=True)
class Block:
    """A block: header and transactions (the first is the coinbase)."""

    header: BlockHeader
    transactions: tuple[Transaction, ...]

    def __post_init__(self) -> None:
        if not isinstance(self.header, BlockHeader):
            raise ValueError("Block.header must be a BlockHeader")
        if not isinstance(self.transactions, tuple) or not all(
            isinstance(tx, Transaction) for tx in self.transactions
        ):
            raise ValueError("Block.transactions must be a tuple of Transaction")

    def serialize(self) -> bytes:
        """Wire bytes of the block, transactions with their witnesses (what submitblock takes)."""
        return (
            self.header.serialize()
            + encode_varint(len(self.transactions))
            + b"".join(tx.serialize(witness=True) for tx in self.transactions)
        )

    def hash(self) -> bytes:
        """The block hash (its header's hash), internal order."""
        return self.header.hash()

    @classmethod
    def parse(cls, data: bytes) -> Block:
        """Parse exactly one serialized block."""
        buf = bytes(data)
        reader = _Reader(buf, 0, "block")
        header = BlockHeader._read(reader)
        n_tx = reader.count("transaction count", 10)
        txs = []
        for i in range(n_tx):
            tx_reader = _Reader(buf, reader.offset, f"block transaction {i}")
            txs.append(Transaction._read(tx_reader))
            reader.offset = tx_reader.offset
        reader.finish()
        return cls(header, tuple(txs))

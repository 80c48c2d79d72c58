"""Sans-IO federation wire codec: length-prefixed msgpack frames carrying signed envelopes.

A frame is a 4-byte big-endian length and that many bytes of body, at most ``max_frame``.
The body is the msgpack array ``[signed, signature]``; ``signed`` is the msgpack array
``[1, kind, sender, seq, timestamp, payload]`` where ``payload`` is itself msgpack bytes,
so an item's hash is the hash of the bytes that travelled and relaying re-sends them
unchanged. ``signature`` is the sender's Ed25519 signature of ``DOMAIN + signed``.

Every unpack runs with strict limits (lengths, counts, no ext types), every field is
type- and size-checked before it becomes a value, and the signature is checked before the
payload is unpacked. ``Codec.feed`` never raises anything but ``FrameTooLarge`` (after which
the stream cannot be trusted); a frame that is well framed but bad is returned as a
``Rejected`` with its reason, so the link can charge the peer and keep reading.

Replays: every envelope carries a per-sender sequence number that only grows (the sender
starts it from its clock in microseconds) and a timestamp; ``ReplayGuard`` accepts each
(sender, seq) once within a sliding window and only recent timestamps, in bounded memory.
Nothing here touches a socket or a clock.
"""

from __future__ import annotations

import hashlib
from collections import OrderedDict
from collections.abc import Callable
from dataclasses import dataclass
from typing import Any, Final, Protocol, Self

import msgpack

from otedama.federation.identity import PUBLIC_KEY_SIZE, SIGNATURE_SIZE, verify_signature

__all__ = [
    "DOMAIN",
    "HASH_SIZE",
    "ITEM_KINDS",
    "MAX_FRAME",
    "PROTOCOL_VERSION",
    "Body",
    "Codec",
    "Envelope",
    "FrameTooLarge",
    "GetData",
    "Hello",
    "Inventory",
    "Item",
    "Peers",
    "Ping",
    "Pong",
    "Rejected",
    "ReplayGuard",
    "Signer",
    "WireError",
    "item_hash",
    "unpack_limited",
]

PROTOCOL_VERSION: Final = 1
DOMAIN: Final = b"otedama/federation/v1\x00"
MAX_FRAME: Final = 256 * 1024
"""Largest frame body accepted by default: a fed-share or block summary is a few KB."""
HASH_SIZE: Final = 32
_LENGTH_SIZE = 4
MAX_INVENTORY: Final = 256
"""Most item hashes in one inventory or getdata."""
MAX_PEER_RECORDS: Final = 32
MAX_RECORD_SIZE: Final = 1024
MAX_NONCE: Final = 32
MAX_LABEL: Final = 64
MAX_NETWORK: Final = 32
_MAX_INT = 2**63 - 1

KIND_HELLO: Final = "hello"
KIND_PING: Final = "ping"
KIND_PONG: Final = "pong"
KIND_INVENTORY: Final = "inventory"
KIND_GETDATA: Final = "getdata"
KIND_FED_SHARE: Final = "fed-share"
KIND_BLOCK: Final = "block"
KIND_PEERS: Final = "peers"
ITEM_KINDS: Final = (KIND_FED_SHARE, KIND_BLOCK)


class WireError(ValueError):
    """Bytes a peer sent that are not a valid federation message; ``reason`` is a slug."""

    def __init__(self, reason: str, detail: str = "") -> None:
        super().__init__(f"{reason}: {detail}" if detail else reason)
        self.reason = reason


class FrameTooLarge(WireError):
    """A frame length above the cap: the stream is abandoned, the link must close."""

    def __init__(self, length: int, limit: int) -> None:
        super().__init__("oversized-frame", f"{length} bytes, limit {limit}")
        self.length = length


def _no_ext(code: int, data: bytes) -> Any:
    raise WireError("malformed", f"msgpack ext type {code} is not allowed")


def unpack_limited(data: bytes, *, max_len: int = MAX_FRAME, max_items: int = 1024) -> Any:
    """``msgpack.unpackb`` with every limit set; raises ``WireError('malformed')``.

    ``unpackb`` works on the whole buffer it is given, so the buffer limit is checked
    here (``max_len``); strings, bins, arrays and maps have their own caps and ext types
    (also msgpack's timestamp) are refused.
    """
    if len(data) > max_len:
        raise WireError("malformed", f"{len(data)} bytes, limit {max_len}")
    try:
        return msgpack.unpackb(
            data,
            raw=False,
            strict_map_key=True,
            max_bin_len=max_len,
            max_str_len=max_len,
            max_array_len=max_items,
            max_map_len=max_items,
            max_ext_len=0,
            ext_hook=_no_ext,
            use_list=True,
        )
    except WireError:
        raise
    except Exception as exc:  # msgpack raises ValueError, TypeError, StackError, …
        raise WireError("malformed", type(exc).__name__) from None


def _pack(value: Any) -> bytes:
    return msgpack.packb(value, use_bin_type=True)


def item_hash(payload: bytes) -> bytes:
    """The id of a gossiped item: SHA-256 of its payload bytes as they travel."""
    return hashlib.sha256(payload).digest()


# -- bodies -------------------------------------------------------------------------------


def _bytes(value: Any, name: str, *, size: int | None = None, max_size: int = 0) -> bytes:
    if not isinstance(value, bytes):
        raise WireError("malformed", f"{name} must be bytes")
    if size is not None and len(value) != size:
        raise WireError("malformed", f"{name} must be {size} bytes, got {len(value)}")
    if max_size and len(value) > max_size:
        raise WireError("malformed", f"{name} longer than {max_size} bytes")
    return value


def _text(value: Any, name: str, max_size: int) -> str:
    if not isinstance(value, str) or len(value) > max_size:
        raise WireError("malformed", f"{name} must be a string of at most {max_size}")
    return value


def _int(value: Any, name: str, low: int = 0, high: int = _MAX_INT) -> int:
    if type(value) is not int or not low <= value <= high:
        raise WireError("malformed", f"{name} must be an integer in [{low}, {high}]")
    return value


def _map(value: Any, name: str) -> dict[str, Any]:
    if not isinstance(value, dict):
        raise WireError("malformed", f"{name} must be a map")
    return value


@dataclass(frozen=True, slots=True)
class Hello:
    """First message on a link: who I am, on which network, and a challenge nonce."""

    network: str
    version: int
    nonce: bytes
    port: int = 0
    label: str = ""

    kind = KIND_HELLO

    def to_wire(self) -> Any:
        return {
            "network": self.network,
            "version": self.version,
            "nonce": self.nonce,
            "port": self.port,
            "label": self.label,
        }

    @classmethod
    def from_wire(cls, value: Any) -> Hello:
        m = _map(value, "hello")
        return cls(
            _text(m.get("network"), "network", MAX_NETWORK),
            _int(m.get("version"), "version", 0, 2**31),
            _bytes(m.get("nonce"), "nonce", max_size=MAX_NONCE),
            _int(m.get("port", 0), "port", 0, 65535),
            _text(m.get("label", ""), "label", MAX_LABEL),
        )


@dataclass(frozen=True, slots=True)
class Ping:
    """Keep-alive; answered by a ``Pong`` with the same nonce."""

    nonce: bytes

    kind = KIND_PING

    def to_wire(self) -> Any:
        return {"nonce": self.nonce}

    @classmethod
    def from_wire(cls, value: Any) -> Ping:
        return cls(_bytes(_map(value, "ping").get("nonce"), "nonce", max_size=MAX_NONCE))


@dataclass(frozen=True, slots=True)
class Pong:
    """Answer to a ``Ping``, and the proof of key during the handshake."""

    nonce: bytes

    kind = KIND_PONG

    def to_wire(self) -> Any:
        return {"nonce": self.nonce}

    @classmethod
    def from_wire(cls, value: Any) -> Pong:
        return cls(_bytes(_map(value, "pong").get("nonce"), "nonce", max_size=MAX_NONCE))


def _item_refs(value: Any, name: str) -> tuple[tuple[str, bytes], ...]:
    entries = _map(value, name).get("items")
    if not isinstance(entries, list) or len(entries) > MAX_INVENTORY:
        raise WireError("malformed", f"{name} items must be a list of at most {MAX_INVENTORY}")
    refs = []
    for entry in entries:
        if not isinstance(entry, list) or len(entry) != 2 or entry[0] not in ITEM_KINDS:
            raise WireError("malformed", f"{name} entries must be [kind, hash]")
        refs.append((entry[0], _bytes(entry[1], "hash", size=HASH_SIZE)))
    return tuple(refs)


@dataclass(frozen=True, slots=True)
class _ItemRefs:
    items: tuple[tuple[str, bytes], ...]

    kind = ""

    def to_wire(self) -> Any:
        return {"items": [list(ref) for ref in self.items]}

    @classmethod
    def from_wire(cls, value: Any) -> Self:
        return cls(_item_refs(value, cls.kind))


@dataclass(frozen=True, slots=True)
class Inventory(_ItemRefs):
    """Announces items by (kind, hash); the receiver asks for the ones it lacks."""

    kind = KIND_INVENTORY


@dataclass(frozen=True, slots=True)
class GetData(_ItemRefs):
    """Asks for announced items by (kind, hash)."""

    kind = KIND_GETDATA


@dataclass(frozen=True, slots=True)
class Peers:
    """Signed contact records (see ``records``) of peers the sender knows."""

    records: tuple[bytes, ...]

    kind = KIND_PEERS

    def to_wire(self) -> Any:
        return {"records": list(self.records)}

    @classmethod
    def from_wire(cls, value: Any) -> Peers:
        records = _map(value, "peers").get("records")
        if not isinstance(records, list) or len(records) > MAX_PEER_RECORDS:
            raise WireError("malformed", f"peers must list at most {MAX_PEER_RECORDS} records")
        return cls(tuple(_bytes(r, "record", max_size=MAX_RECORD_SIZE) for r in records))


@dataclass(frozen=True, slots=True)
class Item:
    """A gossiped item (a fed-share or a block): its map, its raw bytes and their hash."""

    item_kind: str
    data: dict[str, Any]
    raw: bytes

    @property
    def kind(self) -> str:
        return self.item_kind

    @property
    def hash(self) -> bytes:
        return item_hash(self.raw)

    @classmethod
    def of(cls, item_kind: str, data: dict[str, Any]) -> Item:
        """An item to send, packed once."""
        if item_kind not in ITEM_KINDS:
            raise ValueError(f"item kind must be one of {ITEM_KINDS}, got {item_kind!r}")
        return cls(item_kind, data, _pack(data))


Body = Hello | Ping | Pong | Inventory | GetData | Peers | Item

_DECODERS: dict[str, Any] = {
    KIND_HELLO: Hello.from_wire,
    KIND_PING: Ping.from_wire,
    KIND_PONG: Pong.from_wire,
    KIND_INVENTORY: Inventory.from_wire,
    KIND_GETDATA: GetData.from_wire,
    KIND_PEERS: Peers.from_wire,
}


# -- envelopes -----------------------------------------------------------------------------


@dataclass(frozen=True, slots=True)
class Envelope:
    """A verified message: who signed it, its sequence number and time, and its body."""

    sender: bytes
    seq: int
    timestamp: int
    body: Body

    @property
    def kind(self) -> str:
        return self.body.kind


@dataclass(frozen=True, slots=True)
class Rejected:
    """A well-framed message that was refused, with why and (when readable) who sent it."""

    reason: str
    sender: bytes | None = None


class Signer(Protocol):
    """What the codec needs of an identity."""

    @property
    def public_key(self) -> bytes: ...

    def sign(self, message: bytes) -> bytes: ...


def _decode_body(frame: bytes, max_frame: int) -> Envelope:
    outer = unpack_limited(frame, max_len=max_frame, max_items=2)
    if not isinstance(outer, list) or len(outer) != 2:
        raise WireError("malformed", "frame must be [signed, signature]")
    signed = _bytes(outer[0], "signed")
    signature = _bytes(outer[1], "signature", size=SIGNATURE_SIZE)
    inner = unpack_limited(signed, max_len=max_frame, max_items=6)
    if not isinstance(inner, list) or len(inner) != 6:
        raise WireError("malformed", "signed part must have 6 fields")
    version, kind, sender, seq, timestamp, payload = inner
    if version != PROTOCOL_VERSION:
        raise WireError("version", f"protocol {version!r}")
    if not isinstance(kind, str) or (kind not in _DECODERS and kind not in ITEM_KINDS):
        raise WireError("unknown-kind", repr(kind)[:40])
    sender = _bytes(sender, "sender", size=PUBLIC_KEY_SIZE)
    seq = _int(seq, "seq")
    timestamp = _int(timestamp, "timestamp", 0, 2**40)
    payload = _bytes(payload, "payload")
    if not verify_signature(sender, DOMAIN + signed, signature):
        raise _BadSignature(sender)
    value = unpack_limited(payload, max_len=max_frame)
    body: Body
    if kind in ITEM_KINDS:
        body = Item(kind, _map(value, kind), payload)
    else:
        body = _DECODERS[kind](value)
    return Envelope(sender, seq, timestamp, body)


class _BadSignature(WireError):
    def __init__(self, sender: bytes) -> None:
        super().__init__("bad-signature")
        self.sender = sender


class Codec:
    """One link's framing: ``feed`` bytes in, ``encode`` bodies out (signed by ``signer``).

    ``first_seq`` should come from the clock (microseconds) so sequence numbers keep
    growing across restarts; ``Codec.fresh_seq(now)`` computes it.
    """

    __slots__ = ("_buffer", "_seq", "max_frame", "next_seq", "signer")

    def __init__(
        self,
        signer: Signer,
        *,
        first_seq: int,
        max_frame: int = MAX_FRAME,
        next_seq: Callable[[], int] | None = None,
    ) -> None:
        if max_frame < 64:
            raise ValueError(f"max_frame must be at least 64 bytes, got {max_frame}")
        self.signer = signer
        self.max_frame = max_frame
        self._seq = first_seq
        #: A sequence source shared by all of a node's links (``Gossip.next_seq``).
        self.next_seq = next_seq
        self._buffer = bytearray()

    @staticmethod
    def fresh_seq(now: float) -> int:
        return int(now * 1_000_000)

    @property
    def buffered(self) -> int:
        """Bytes of an incomplete frame held back."""
        return len(self._buffer)

    def feed(self, data: bytes) -> list[Envelope | Rejected]:
        """Add received bytes; return the messages (or rejections) of the frames they end.

        Raises ``FrameTooLarge`` when a frame announces more than ``max_frame`` bytes;
        memory held is at most one frame (``max_frame + 4`` bytes) plus ``data``.
        """
        buf = self._buffer
        buf += data
        out: list[Envelope | Rejected] = []
        start = 0
        end = len(buf)
        while end - start >= _LENGTH_SIZE:
            length = int.from_bytes(buf[start : start + _LENGTH_SIZE], "big")
            if length > self.max_frame:
                self._buffer = bytearray()
                raise FrameTooLarge(length, self.max_frame)
            if end - start - _LENGTH_SIZE < length:
                break
            frame = bytes(buf[start + _LENGTH_SIZE : start + _LENGTH_SIZE + length])
            start += _LENGTH_SIZE + length
            try:
                out.append(_decode_body(frame, self.max_frame))
            except _BadSignature as exc:
                out.append(Rejected(exc.reason, exc.sender))
            except WireError as exc:
                out.append(Rejected(exc.reason))
        del buf[:start]
        return out

    def encode(self, body: Body, now: float) -> bytes:
        """One signed frame carrying ``body``, stamped with ``now`` and the next seq."""
        payload = body.raw if isinstance(body, Item) else _pack(body.to_wire())
        self._seq = self.next_seq() if self.next_seq is not None else self._seq + 1
        signed = _pack(
            [
                PROTOCOL_VERSION,
                body.kind,
                self.signer.public_key,
                self._seq,
                int(now),
                payload,
            ]
        )
        frame = _pack([signed, self.signer.sign(DOMAIN + signed)])
        if len(frame) > self.max_frame:
            raise ValueError(f"message of {len(frame)} bytes exceeds the {self.max_frame} cap")
        return len(frame).to_bytes(_LENGTH_SIZE, "big") + frame


class ReplayGuard:
    """Accepts each (sender, seq) once, within a window, and only recent timestamps.

    Per sender it keeps the highest seq seen and a bitmap of the ``window`` seqs below
    it (IPsec-style); at most ``max_senders`` senders are remembered (least recently seen
    forgotten first). A forgotten sender's old messages are still refused by the time
    check once ``max_skew`` has passed.
    """

    def __init__(
        self, *, window: int = 1024, max_skew: float = 120.0, max_senders: int = 4096
    ) -> None:
        self.window = window
        self.max_skew = max_skew
        self.max_senders = max_senders
        self._senders: OrderedDict[bytes, tuple[int, int]] = OrderedDict()

    def __len__(self) -> int:
        return len(self._senders)

    def check(self, envelope: Envelope, now: float) -> str | None:
        """``None`` if fresh (and now recorded), else the reason: ``stale`` or ``replay``."""
        if abs(envelope.timestamp - now) > self.max_skew:
            return "stale"
        sender, seq = envelope.sender, envelope.seq
        state = self._senders.get(sender)
        if state is None:
            self._senders[sender] = (seq, 1)
            if len(self._senders) > self.max_senders:
                self._senders.popitem(last=False)
            return None
        highest, bits = state
        if seq > highest:
            shift = seq - highest
            bits = ((bits << shift) | 1) & ((1 << self.window) - 1) if shift < self.window else 1
            self._senders[sender] = (seq, bits)
        else:
            offset = highest - seq
            if offset >= self.window or bits >> offset & 1:
                return "replay"
            self._senders[sender] = (highest, bits | 1 << offset)
        self._senders.move_to_end(sender)
        return None

"""Signed contact records: how a federation node tells the DHT where to reach it.

A record holds the node's gossip host and port, its public key, its network, its payout
script, the time it was made and the operator's label, packed with msgpack and signed by
the node's key; it is at most ``MAX_RECORD_SIZE`` bytes.

Layouts are versioned. Version 1 has exactly those eight fields and is what a node
without features publishes (byte for byte what every earlier node reads). Version 2 adds
a ninth field, the node's ``features``: short names of what its gossip port offers
beyond version 1 (``"tls"``: it accepts TLS, see ``federation.security``). Readers keep
the names they do not know, so later features need no new layout. A node publishes
version 2 only when it has a feature to announce; nodes that read only version 1 skip
such a record (as malformed), but a node with features still reads their records and
dials them. It is stored in the DHT under
``record_key(node_id)``; the DHT authenticates nothing, so every reader verifies the
signature, that the key's node id is the one it looked up, the network, and the time,
and keeps the newest valid record per node (``RecordBook``), so a replayed older record
or garbage written under the same key cannot displace it.
"""

from __future__ import annotations

from collections.abc import Callable, Iterator
from dataclasses import dataclass
from typing import Final

import msgpack

from otedama.federation.identity import (
    PUBLIC_KEY_SIZE,
    SIGNATURE_SIZE,
    node_id_of,
    verify_signature,
)
from otedama.federation.wire import MAX_LABEL, MAX_NETWORK, Signer, WireError, unpack_limited

__all__ = [
    "FEATURE_TLS",
    "MAX_RECORD_SIZE",
    "RECORD_MAX_AGE",
    "ContactRecord",
    "RecordBook",
    "RecordError",
    "decode_record",
    "record_key",
]

MAX_RECORD_SIZE: Final = 1024
RECORD_VERSION: Final = 1
RECORD_VERSION_FEATURES: Final = 2
"""The layout with a ninth field: the node's features (a list of short strings)."""
MAX_FEATURES: Final = 8
MAX_FEATURE: Final = 16
FEATURE_TLS: Final = "tls"
"""The gossip port accepts TLS (the node's ``federation.tls`` is ``on`` or ``required``)."""
RECORD_DOMAIN: Final = b"otedama/contact-record/v1\x00"
RECORD_MAX_AGE: Final = 3600.0
"""A record older than this is stale (nodes republish every few minutes)."""
RECORD_MAX_FUTURE: Final = 300.0
"""A record dated further ahead than this (clock skew) is refused."""
MAX_HOST: Final = 253
MAX_SCRIPT: Final = 100


class RecordError(ValueError):
    """A record that must be ignored; ``reason`` is a slug."""

    def __init__(self, reason: str, detail: str = "") -> None:
        super().__init__(f"{reason}: {detail}" if detail else reason)
        self.reason = reason


def record_key(node_id: bytes) -> bytes:
    """The DHT key of a node's contact record (the DHT hashes it once more with SHA-1)."""
    return b"otedama/contact/v1/" + node_id


@dataclass(frozen=True, slots=True)
class ContactRecord:
    """Where and who a federation node is, as it signed it."""

    host: str
    port: int
    public_key: bytes
    network: str
    payout_script: bytes
    time: int
    label: str = ""
    signature: bytes = b""
    features: tuple[str, ...] = ()

    @property
    def node_id(self) -> bytes:
        return node_id_of(self.public_key)

    @property
    def tls(self) -> bool:
        """The node's gossip port accepts TLS."""
        return FEATURE_TLS in self.features

    @property
    def address(self) -> str:
        return f"[{self.host}]:{self.port}" if ":" in self.host else f"{self.host}:{self.port}"

    def _signed_part(self) -> bytes:
        fields: list[object] = [
            RECORD_VERSION_FEATURES if self.features else RECORD_VERSION,
            self.host,
            self.port,
            self.public_key,
            self.network,
            self.payout_script,
            self.time,
            self.label,
        ]
        if self.features:
            fields.append(list(self.features))
        return msgpack.packb(fields, use_bin_type=True)

    @classmethod
    def create(
        cls,
        signer: Signer,
        *,
        host: str,
        port: int,
        network: str,
        payout_script: bytes,
        now: float,
        label: str = "",
        features: tuple[str, ...] = (),
    ) -> ContactRecord:
        """A record signed by ``signer`` (an ``Identity``); with ``features``, the
        version 2 layout."""
        if len(features) > MAX_FEATURES or any(
            not 0 < len(name) <= MAX_FEATURE for name in features
        ):
            raise ValueError(f"at most {MAX_FEATURES} features of 1..{MAX_FEATURE} characters")
        unsigned = cls(
            host, port, signer.public_key, network, payout_script, int(now), label, b"", features
        )
        return cls(
            host,
            port,
            signer.public_key,
            network,
            payout_script,
            int(now),
            label,
            signer.sign(RECORD_DOMAIN + unsigned._signed_part()),
            features,
        )

    def encode(self) -> bytes:
        """The bytes stored in the DHT."""
        data = msgpack.packb([self._signed_part(), self.signature], use_bin_type=True)
        if len(data) > MAX_RECORD_SIZE:
            raise ValueError(f"contact record of {len(data)} bytes exceeds {MAX_RECORD_SIZE}")
        return data

    def check(self, *, network: str, now: float, max_age: float = RECORD_MAX_AGE) -> None:
        """Raise ``RecordError`` unless the record is for ``network`` and recent at ``now``."""
        if self.network != network:
            raise RecordError("other-network", self.network)
        if self.time < now - max_age:
            raise RecordError("stale", f"made at {self.time}")
        if self.time > now + RECORD_MAX_FUTURE:
            raise RecordError("future", f"made at {self.time}")


def decode_record(value: object) -> ContactRecord:
    """A record whose signature holds, from DHT or gossip bytes; raises ``RecordError``."""
    if not isinstance(value, bytes) or len(value) > MAX_RECORD_SIZE:
        raise RecordError("malformed", "expected at most 1 KB of bytes")
    try:
        outer = unpack_limited(value, max_len=MAX_RECORD_SIZE, max_items=2)
        if not isinstance(outer, list) or len(outer) != 2:
            raise RecordError("malformed", "expected [record, signature]")
        signed, signature = outer
        if not isinstance(signed, bytes) or not isinstance(signature, bytes):
            raise RecordError("malformed", "expected bytes")
        fields = unpack_limited(signed, max_len=MAX_RECORD_SIZE, max_items=9)
    except WireError as exc:
        raise RecordError("malformed", str(exc)) from None
    if not isinstance(fields, list) or not (
        (len(fields) == 8 and fields[0] == RECORD_VERSION)
        or (len(fields) == 9 and fields[0] == RECORD_VERSION_FEATURES)
    ):
        raise RecordError("malformed", "unknown record layout")
    _, host, port, public_key, network, script, time, label = fields[:8]
    features = _features(fields[8]) if len(fields) == 9 else ()
    if not (
        isinstance(host, str)
        and 0 < len(host) <= MAX_HOST
        and type(port) is int
        and 0 < port < 65536
        and isinstance(public_key, bytes)
        and len(public_key) == PUBLIC_KEY_SIZE
        and isinstance(network, str)
        and len(network) <= MAX_NETWORK
        and isinstance(script, bytes)
        and len(script) <= MAX_SCRIPT
        and type(time) is int
        and 0 <= time < 2**40
        and isinstance(label, str)
        and len(label) <= MAX_LABEL
        and len(signature) == SIGNATURE_SIZE
    ):
        raise RecordError("malformed", "a field has the wrong type or size")
    if not verify_signature(public_key, RECORD_DOMAIN + signed, signature):
        raise RecordError("bad-signature")
    return ContactRecord(host, port, public_key, network, script, time, label, signature, features)


def _features(value: object) -> tuple[str, ...]:
    if (
        not isinstance(value, list)
        or not 0 < len(value) <= MAX_FEATURES
        or not all(isinstance(name, str) and 0 < len(name) <= MAX_FEATURE for name in value)
    ):
        raise RecordError("malformed", f"features must be 1..{MAX_FEATURES} short strings")
    return tuple(value)


class RecordBook:
    """The newest valid record per node id, for at most ``max_records`` nodes.

    ``offer`` takes raw bytes from the DHT or from a peer and returns the record when it
    is new or newer than the one held; anything else (garbage, a bad signature, another
    network, a stale time, a record not for the node it was looked up for, an older or
    equal record) leaves the book unchanged. When full, the node with the oldest record
    is forgotten first. Whoever ``subscribe``s is told of each record the book keeps,
    wherever it came from (the DHT, a peer's list, a lookup).
    """

    def __init__(self, network: str, own_node_id: bytes, *, max_records: int = 1024) -> None:
        self.network = network
        self.own_node_id = own_node_id
        self.max_records = max_records
        self._records: dict[bytes, ContactRecord] = {}
        self.rejected: dict[str, int] = {}
        self._listeners: list[Callable[[ContactRecord], None]] = []

    def __len__(self) -> int:
        return len(self._records)

    def __iter__(self) -> Iterator[ContactRecord]:
        return iter(list(self._records.values()))

    def get(self, node_id: bytes) -> ContactRecord | None:
        return self._records.get(node_id)

    def _reject(self, reason: str) -> None:
        self.rejected[reason] = self.rejected.get(reason, 0) + 1

    def subscribe(self, listener: Callable[[ContactRecord], None]) -> None:
        """Call ``listener`` with every record the book keeps from now on (new or newer)."""
        self._listeners.append(listener)

    def offer(
        self, value: object, now: float, *, expected_node_id: bytes | None = None
    ) -> ContactRecord | None:
        """Keep ``value`` if it is a valid record newer than the one held; return it then."""
        try:
            record = decode_record(value)
            record.check(network=self.network, now=now)
        except RecordError as exc:
            self._reject(exc.reason)
            return None
        node_id = record.node_id
        if expected_node_id is not None and node_id != expected_node_id:
            self._reject("wrong-node")
            return None
        if node_id == self.own_node_id:
            return None
        held = self._records.get(node_id)
        if held is not None and held.time >= record.time:
            return None
        self._records[node_id] = record
        if len(self._records) > self.max_records:
            oldest = min(self._records.values(), key=lambda r: r.time)
            del self._records[oldest.node_id]
            if oldest is record:
                return None
        for listener in self._listeners:
            listener(record)
        return record

    def expire(self, now: float, max_age: float = RECORD_MAX_AGE) -> list[ContactRecord]:
        """Forget records older than ``max_age``; return them."""
        gone = [r for r in self._records.values() if r.time < now - max_age]
        for record in gone:
            del self._records[record.node_id]
        return gone

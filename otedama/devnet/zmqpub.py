"""Bitcoin Core's ZMQ notifications (``-zmqpubhashblock`` and friends) for the devnet.

``chain_events`` (pure) says what changed between two looks at the chain: blocks
disconnected and connected, transactions added to and removed from the mempool.
``notifications`` turns that into Core's messages, in Core's order
(``zmqnotificationinterface.cpp``): for each disconnected, then each connected block
``hashtx``/``rawtx`` for its transactions and then ``sequence`` ``D`` or ``C``, then
``hashblock`` and ``rawblock`` for the new tip; mempool arrivals as ``hashtx``/``rawtx``
and ``sequence`` ``A``; removals other than by a block as ``sequence`` ``R``. ``ZmqPublisher`` sends them
as Core frames them: three parts — topic, body, and a 4-byte little-endian sequence number
counted per topic — on PUB sockets, never blocking (pyzmq ``NOBLOCK``; PUB drops what a
slow subscriber cannot take, as Core's does at its high-water mark).
"""

from __future__ import annotations

import struct
from collections.abc import Iterable, Mapping
from dataclasses import dataclass
from typing import Any

from twisted.logger import Logger

from otedama.devnet.chain import BlockIndex, DevnetChain

__all__ = [
    "TOPICS",
    "ChainEvents",
    "ChainSnapshot",
    "ZmqNotifier",
    "ZmqPublisher",
    "chain_events",
    "notifications",
]

TOPICS = ("hashblock", "hashtx", "rawblock", "rawtx", "sequence")
"""Core's topic names (``-zmqpub<topic>=<address>``)."""

SEND_HWM = 1000
"""Outbound messages queued per subscriber before PUB drops (Core's ``-zmqpub*hwm``)."""


@dataclass(frozen=True)
class ChainSnapshot:
    """What the notifier remembers between looks: the tip and the mempool's txids."""

    tip: BlockIndex
    mempool: frozenset[bytes]


@dataclass(frozen=True)
class ChainEvents:
    """The changes between two snapshots, oldest first."""

    disconnected: tuple[BlockIndex, ...] = ()
    connected: tuple[BlockIndex, ...] = ()
    added: tuple[bytes, ...] = ()
    removed: tuple[bytes, ...] = ()


def snapshot(chain: DevnetChain) -> ChainSnapshot:
    """The chain's tip and mempool now."""
    return ChainSnapshot(chain.tip, frozenset(chain.mempool))


def chain_events(chain: DevnetChain, before: ChainSnapshot) -> tuple[ChainEvents, ChainSnapshot]:
    """What changed since ``before``; returns the events and the new snapshot."""
    now = snapshot(chain)
    disconnected: list[BlockIndex] = []
    fork: BlockIndex | None = before.tip
    while fork is not None and not chain.on_best_chain(fork):
        disconnected.append(fork)
        fork = fork.parent
    start = 0 if fork is None else fork.height + 1
    connected = tuple(chain.active[start:]) if now.tip is not before.tip else ()
    in_blocks: set[bytes] = set()
    if before.mempool - now.mempool:  # only then can a block explain a removal
        for entry in connected:
            in_blocks.update(tx.txid() for tx in entry.block().transactions)
    added = tuple(txid for txid in chain.mempool if txid not in before.mempool)
    removed = tuple(
        txid for txid in before.mempool if txid not in now.mempool and txid not in in_blocks
    )
    return ChainEvents(tuple(disconnected), connected, added, removed), now


def notifications(
    chain: DevnetChain, events: ChainEvents, topics: Iterable[str]
) -> list[tuple[str, bytes]]:
    """Core's ``(topic, body)`` messages for ``events``, limited to ``topics``."""
    wanted = set(topics)
    out: list[tuple[str, bytes]] = []

    def emit(topic: str, body: bytes) -> None:
        if topic in wanted:
            out.append((topic, body))

    def block_transactions(entry: BlockIndex) -> None:
        # Core's BlockConnected/BlockDisconnected: each transaction, then the block.
        if wanted & {"hashtx", "rawtx"}:
            for tx in entry.block().transactions:
                emit("hashtx", tx.txid()[::-1])
                emit("rawtx", tx.serialize())

    for entry in events.disconnected:
        block_transactions(entry)
        emit("sequence", entry.hash[::-1] + b"D")
    for entry in events.connected:
        block_transactions(entry)
        emit("sequence", entry.hash[::-1] + b"C")
    if events.connected:
        tip = events.connected[-1]
        emit("hashblock", tip.hash[::-1])
        emit("rawblock", tip.raw)
    counter = struct.pack("<Q", chain.mempool_updates)
    for txid in events.removed:
        emit("sequence", txid[::-1] + b"R" + counter)
    for txid in events.added:
        waiting = chain.mempool.get(txid)
        if waiting is None:
            continue
        emit("hashtx", txid[::-1])
        emit("rawtx", waiting.tx.serialize())
        emit("sequence", txid[::-1] + b"A" + counter)
    return out


class ZmqPublisher:
    """PUB sockets for the configured topics (topics sharing an address share a socket),
    each topic with its own 32-bit message counter."""

    log = Logger()

    def __init__(self, endpoints: Mapping[str, str]) -> None:
        self.endpoints = dict(endpoints)
        unknown = sorted(set(self.endpoints) - set(TOPICS))
        if unknown:
            raise ValueError(f"unknown ZMQ topic {unknown[0]!r} (Core's are {', '.join(TOPICS)})")
        self._context: Any = None
        self._sockets: dict[str, Any] = {}
        self.sequence = {topic: 0 for topic in self.endpoints}
        self.dropped = 0

    def start(self) -> None:
        """Bind every address (raises ``zmq.ZMQError`` when one cannot be bound, and
        ``RuntimeError`` when pyzmq is not installed)."""
        try:
            import zmq
        except ImportError:
            raise RuntimeError(
                "ZMQ notifications need pyzmq: pip install 'otedama[zmq]' (or pyzmq)"
            ) from None

        self._context = zmq.Context()
        try:
            for address in sorted(set(self.endpoints.values())):
                socket = self._context.socket(zmq.PUB)
                socket.setsockopt(zmq.SNDHWM, SEND_HWM)
                socket.setsockopt(zmq.LINGER, 0)
                self._sockets[address] = socket
                socket.bind(address)
        except BaseException:
            self.stop()
            raise

    def bound(self, topic: str) -> str:
        """The address ``topic`` is actually bound to (a ``tcp://…:*`` port resolved)."""
        import zmq

        value = self._sockets[self.endpoints[topic]].getsockopt(zmq.LAST_ENDPOINT)
        return value.decode() if isinstance(value, bytes) else str(value)

    def publish(self, topic: str, body: bytes) -> None:
        """Send one message without waiting; a full queue drops it (counted)."""
        import zmq

        socket = self._sockets.get(self.endpoints.get(topic, ""))
        if socket is None:
            return
        number = self.sequence[topic]
        try:
            socket.send_multipart(
                [topic.encode(), body, struct.pack("<I", number)], flags=zmq.NOBLOCK
            )
        except zmq.Again:
            self.dropped += 1
            return
        self.sequence[topic] = (number + 1) & 0xFFFFFFFF

    def stop(self) -> None:
        """Close the sockets at once (no linger) and the context."""
        for socket in self._sockets.values():
            socket.close(linger=0)
        self._sockets.clear()
        if self._context is not None:
            self._context.term()
            self._context = None


class ZmqNotifier:
    """Watches a devnet node and publishes Core's notifications for what changed.

    ``changed`` runs on every node change: it works out the events at once (so each new
    tip gets its own ``hashblock``) and sends on the next reactor turn, off the path of
    the ``submitblock`` that caused them.
    """

    log = Logger()

    def __init__(self, chain: DevnetChain, publisher: ZmqPublisher, clock: Any) -> None:
        self.chain = chain
        self.publisher = publisher
        self.clock = clock
        self._last = snapshot(chain)
        self._pending: list[tuple[str, bytes]] = []
        self._call: Any = None

    def changed(self) -> None:
        """Note the chain's changes and schedule their messages."""
        events, self._last = chain_events(self.chain, self._last)
        messages = notifications(self.chain, events, self.publisher.endpoints)
        if not messages:
            return
        self._pending.extend(messages)
        if self._call is None:
            self._call = self.clock.callLater(0, self._flush)

    def _flush(self) -> None:
        self._call = None
        pending, self._pending = self._pending, []
        for topic, body in pending:
            try:
                self.publisher.publish(topic, body)
            except Exception:
                self.log.failure("ZMQ {topic} notification failed", topic=topic)

    def stop(self) -> None:
        """Send what is pending now and stop scheduling."""
        if self._call is not None and self._call.active():
            self._call.cancel()
        self._flush()

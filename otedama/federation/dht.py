"""Discovery: this node as a member of the Kademlia DHT, publishing and finding contact records.

Every federation node is a DHT node whose id is its federation node id. It publishes its
signed contact record under ``record_key(own id)`` and finds the other members in the
DHT's own routing table (filled by looking up random ids), then fetches each member's
record under the key derived from that member's id: first from the member itself, then
through the network. Only verified records reach the ``RecordBook``; the DHT storage of
this node keeps only valid, newer records too, with a bound on their number, so nobody
can fill its memory or overwrite a record with an older or forged one.

Bootstrap peers (``host:port``, DNS names allowed) are pinged until one answers; each that
does not is retried with exponential back-off, forever, so a node whose bootstrap peers
are all down runs alone and joins when one comes up.

With a ``HostPolicy`` (the node's guard), a datagram from a blocked host (blacklisted by
``security.firewall``, or banned) is dropped before anything parses it, and a blocked
bootstrap peer is not asked.

kademlia is asyncio-only; the node runs Twisted's asyncio reactor, and the periodic work
here is Twisted ``LoopingCall``s that bridge to coroutines with ``Deferred.fromFuture``.
"""

from __future__ import annotations

import asyncio
import logging
import os
import socket
from collections import OrderedDict
from collections.abc import Callable, Coroutine, Iterator, Sequence
from dataclasses import dataclass
from typing import Any, ClassVar, TypeVar

from kademlia.crawling import NodeSpiderCrawl
from kademlia.network import Server
from kademlia.node import Node
from kademlia.protocol import KademliaProtocol
from kademlia.storage import IStorage
from kademlia.utils import digest
from twisted.internet.defer import CancelledError, Deferred
from twisted.internet.interfaces import IReactorTime
from twisted.internet.task import LoopingCall
from twisted.logger import Logger

from otedama.federation.records import (
    RECORD_MAX_AGE,
    ContactRecord,
    RecordBook,
    RecordError,
    decode_record,
    record_key,
)
from otedama.federation.security import HostPolicy

__all__ = ["Backoff", "DhtNode", "RecordStorage", "as_deferred", "parse_host_port"]

T = TypeVar("T")


def parse_host_port(text: str) -> tuple[str, int]:
    """``host:port`` (``[v6]:port`` for IPv6) as a pair; raises ``ValueError``."""
    host, sep, port = text.strip().rpartition(":")
    if not sep or not host or not port.isdigit() or not 0 < int(port) < 65536:
        raise ValueError(f'expected "host:port", got "{text}"')
    return host.strip("[]"), int(port)


def as_deferred(coro: Coroutine[Any, Any, T]) -> Deferred[T]:
    """Run an asyncio coroutine on the (asyncio) reactor's loop; its result as a Deferred."""
    return Deferred.fromFuture(asyncio.ensure_future(coro))


MAX_DATAGRAM = 8192 + 64
"""kademlia's own requests are at most 8 KB of msgpack plus a 21-byte header."""


class _LibraryLogCounter(logging.Filter):
    """Counts kademlia's and rpcudp's stdlib log records instead of letting them print.

    Strangers can trigger them (one per datagram), so they are not logged one by one;
    the counts show in ``DhtNode.stats``.
    """

    counts: ClassVar[dict[str, int]] = {}

    def filter(self, record: logging.LogRecord) -> bool:
        key = f"{record.name}:{record.levelname.lower()}"
        self.counts[key] = self.counts.get(key, 0) + 1
        return False


_LOG_COUNTER = _LibraryLogCounter()
# Logger filters do not apply to child loggers: name every module that logs.
for _name in (
    "kademlia.network",
    "kademlia.protocol",
    "kademlia.crawling",
    "kademlia.routing",
    "rpcudp.protocol",
):
    logging.getLogger(_name).addFilter(_LOG_COUNTER)


class HardenedProtocol(KademliaProtocol):  # type: ignore[misc]
    """kademlia's protocol, but a datagram that breaks it is counted, not raised.

    rpcudp unpacks every datagram and calls ``rpc_<name>(*args)`` with whatever arrived;
    garbage, oversized datagrams, unknown methods or wrong arguments would otherwise end
    as unhandled task exceptions logged per datagram.
    """

    def __init__(self, *args: Any, policy: HostPolicy | None = None) -> None:
        super().__init__(*args)
        self.policy = policy
        self.bad_datagrams = 0
        self.refused_datagrams = 0
        self._tasks: set[asyncio.Future[None]] = set()

    def datagram_received(self, data: bytes, addr: tuple[str, int]) -> None:
        policy = self.policy
        if policy is not None:
            reason = policy.blocked(str(addr[0]))
            if reason is not None:
                self.refused_datagrams += 1
                policy.note_refused(str(addr[0]), f"federation-dht: {reason}")
                return
        if len(data) > MAX_DATAGRAM:
            self.bad_datagrams += 1
            return
        task = asyncio.ensure_future(self._guarded(self._solve_datagram(data, addr)))
        self._tasks.add(task)
        task.add_done_callback(self._tasks.discard)

    async def _guarded(self, work: Coroutine[Any, Any, Any]) -> None:
        try:
            await work
        except Exception:
            self.bad_datagrams += 1

    async def _accept_request(self, msg_id: bytes, data: Any, address: tuple[str, int]) -> None:
        await self._guarded(super()._accept_request(msg_id, data, address))


class _Server(Server):  # type: ignore[misc]
    protocol_class = HardenedProtocol
    policy: HostPolicy | None = None

    def _create_protocol(self) -> HardenedProtocol:
        return HardenedProtocol(self.node, self.storage, self.ksize, policy=self.policy)


class RecordStorage(IStorage):  # type: ignore[misc]
    """kademlia storage that keeps only valid, newer contact records, at most ``max_entries``.

    A value is kept under a key only if it is a record signed by the key's node (the key
    is the digest of ``record_key(node id)``), for this network, not stale, and newer
    than the record held there. Anything else is silently ignored (the DHT's ``store``
    still answers, but nothing is kept).
    """

    def __init__(self, network: str, clock: IReactorTime, *, max_entries: int = 4096) -> None:
        self.network = network
        self.clock: Any = clock  # zope interfaces do not type-check without mypy-zope
        self.max_entries = max_entries
        self.data: OrderedDict[bytes, tuple[float, ContactRecord, bytes]] = OrderedDict()
        self.refused = 0

    def __setitem__(self, key: bytes, value: object) -> None:
        now = self.clock.seconds()
        try:
            record = decode_record(value)
            record.check(network=self.network, now=now)
        except RecordError:
            self.refused += 1
            return
        if digest(record_key(record.node_id)) != key:
            self.refused += 1
            return
        held = self.data.get(key)
        if held is not None and held[1].time >= record.time:
            return
        self.data.pop(key, None)
        assert isinstance(value, bytes)
        self.data[key] = (now, record, value)
        while len(self.data) > self.max_entries:
            self.data.popitem(last=False)

    def _cull(self) -> None:
        now = self.clock.seconds()
        for key in [k for k, (_, r, _) in self.data.items() if r.time < now - RECORD_MAX_AGE]:
            del self.data[key]

    def get(self, key: bytes, default: object = None) -> object:
        self._cull()
        held = self.data.get(key)
        return default if held is None else held[2]

    def __getitem__(self, key: bytes) -> bytes:
        value = self.get(key)
        if value is None:
            raise KeyError(key)
        assert isinstance(value, bytes)
        return value

    def iter_older_than(self, seconds_old: float) -> list[tuple[bytes, bytes]]:
        cutoff = self.clock.seconds() - seconds_old
        return [(k, value) for k, (stored, _, value) in self.data.items() if stored <= cutoff]

    def __iter__(self) -> Iterator[tuple[bytes, bytes]]:
        self._cull()
        return iter([(k, value) for k, (_, _, value) in self.data.items()])

    def __len__(self) -> int:
        return len(self.data)


@dataclass
class Backoff:
    """When a bootstrap peer may be tried next: doubling delays up to ``maximum``."""

    initial: float = 2.0
    maximum: float = 300.0
    delay: float = 0.0
    next_at: float = 0.0
    joined: bool = False

    def failed(self, now: float) -> None:
        self.delay = min(self.maximum, self.delay * 2 if self.delay else self.initial)
        self.next_at = now + self.delay
        self.joined = False

    def succeeded(self) -> None:
        self.delay = 0.0
        self.next_at = 0.0
        self.joined = True

    def due(self, now: float) -> bool:
        return not self.joined and now >= self.next_at


@dataclass
class _Stats:
    lookups: int = 0
    fetched: int = 0
    bootstrap_failures: int = 0
    errors: int = 0
    last_error: str = ""


class DhtNode:
    """This node in the DHT: listen, bootstrap, publish the own record, discover others."""

    log = Logger()

    def __init__(
        self,
        *,
        node_id: bytes,
        network: str,
        book: RecordBook,
        make_record: Callable[[float], ContactRecord],
        on_record: Callable[[ContactRecord], object],
        clock: IReactorTime,
        bootstrap: Sequence[str] = (),
        interface: str = "0.0.0.0",
        publish_interval: float = 300.0,
        discover_interval: float = 30.0,
        bootstrap_interval: float = 1.0,
        ksize: int = 20,
        alpha: int = 3,
        max_fetches: int = 64,
        rpc_timeout: float = 5.0,
        backoff_initial: float = 2.0,
        backoff_maximum: float = 300.0,
        policy: HostPolicy | None = None,
    ) -> None:
        self.node_id = node_id
        self.book = book
        self.make_record = make_record
        self.on_record = on_record
        self.clock: Any = clock  # zope interfaces do not type-check without mypy-zope
        self.interface = interface
        self.bootstrap_peers = [parse_host_port(peer) for peer in bootstrap]
        self.backoff = {
            peer: Backoff(backoff_initial, backoff_maximum) for peer in self.bootstrap_peers
        }
        self.publish_interval = publish_interval
        self.discover_interval = discover_interval
        self.bootstrap_interval = bootstrap_interval
        self.max_fetches = max_fetches
        self.rpc_timeout = rpc_timeout
        self.storage = RecordStorage(network, clock)
        self.server = _Server(ksize=ksize, alpha=alpha, node_id=node_id, storage=self.storage)
        self.server.policy = policy
        self.policy = policy
        # Server keeps ``storage or ForgetfulStorage()``: an empty storage is falsy.
        self.server.storage = self.storage
        self.port = 0
        self.external_host: str | None = None
        """This node's address as a bootstrap peer saw it (for the contact record)."""
        self.stats = _Stats()
        self._loops: list[LoopingCall] = []
        self._running: set[asyncio.Future[Any]] = set()

    # -- lifecycle ------------------------------------------------------------------------

    def listen(self, port: int) -> Deferred[int]:
        """Bind the UDP port; fires with the port bound (useful with 0)."""
        return as_deferred(self._listen(port))

    async def _listen(self, port: int) -> int:
        await self.server.listen(port, self.interface)
        self.server.protocol._wait_timeout = self.rpc_timeout
        self.port = int(self.server.transport.get_extra_info("sockname")[1])
        return self.port

    def start_loops(self) -> None:
        """Start bootstrapping, publishing and discovering, each in its own loop."""
        for interval, work in (
            (self.bootstrap_interval, self.bootstrap_once),
            (self.publish_interval, self.publish),
            (self.discover_interval, self.discover),
        ):
            loop = LoopingCall(self._guarded, work)
            loop.clock = self.clock
            self._loops.append(loop)
            loop.start(interval, now=True)

    def stop(self) -> None:
        for loop in self._loops:
            if loop.running:
                loop.stop()
        self._loops.clear()
        for future in list(self._running):
            future.cancel()
        self.server.stop()

    def _guarded(self, work: Callable[[], Coroutine[Any, Any, Any]]) -> Deferred[None]:
        """Run one tick; a failure is logged and counted, never stops the loop."""

        def failed(failure: Any) -> None:
            self.stats.errors += 1
            self.stats.last_error = str(failure.value)
            self.log.failure("federation DHT tick failed", failure)

        future = asyncio.ensure_future(work())
        self._running.add(future)
        future.add_done_callback(self._running.discard)
        d: Deferred[Any] = Deferred.fromFuture(future)
        d.addErrback(lambda f: f.trap(CancelledError, asyncio.CancelledError))
        d.addCallbacks(lambda _: None, failed)
        return d

    # -- the work (asyncio coroutines: run them with ``as_deferred``) ----------------------

    @property
    def bad_datagrams(self) -> int:
        protocol = self.server.protocol
        return int(protocol.bad_datagrams) if protocol is not None else 0

    @property
    def refused_datagrams(self) -> int:
        """Datagrams dropped unread because the host policy blocks their sender."""
        protocol = self.server.protocol
        return int(protocol.refused_datagrams) if protocol is not None else 0

    @staticmethod
    def library_log_counts() -> dict[str, int]:
        """kademlia's and rpcudp's log records by logger and level (counted, not printed)."""
        return dict(_LOG_COUNTER.counts)

    @property
    def members(self) -> list[Node]:
        """The DHT nodes in the routing table (other federation members, unverified)."""
        protocol = self.server.protocol
        if protocol is None:
            return []
        return [node for bucket in protocol.router.buckets for node in bucket.get_nodes()]

    async def _resolve(self, host: str, port: int) -> str | None:
        loop = asyncio.get_running_loop()
        try:
            infos = await loop.getaddrinfo(
                host, port, family=socket.AF_INET, type=socket.SOCK_DGRAM
            )
        except OSError:
            return None
        return str(infos[0][4][0]) if infos else None

    async def bootstrap_once(self) -> int:
        """Try the bootstrap peers that are due; returns how many answered."""
        now = self.clock.seconds()
        if not self.members:
            for backoff in self.backoff.values():
                backoff.joined = False
        due = [peer for peer, backoff in self.backoff.items() if backoff.due(now)]
        answered = 0
        for host, port in due:
            address = await self._resolve(host, port)
            if address is not None and self.policy is not None:
                reason = self.policy.blocked(address)
                if reason is not None:  # counted as a failure: its back-off grows
                    self.policy.note_refused(address, f"federation-bootstrap: {reason}")
                    address = None
            node = await self.server.bootstrap_node((address, port)) if address else None
            if node is None or node.id == self.node_id:
                self.backoff[(host, port)].failed(self.clock.seconds())
                self.stats.bootstrap_failures += 1
                continue
            self.backoff[(host, port)].succeeded()
            answered += 1
            await self._learn_external_host((address, port))
            await NodeSpiderCrawl(
                self.server.protocol, self.server.node, [node], self.server.ksize, self.server.alpha
            ).find()
            self.log.info("federation DHT joined through {host}:{port}", host=host, port=port)
        if answered:
            await self.publish()
        return answered

    async def _learn_external_host(self, address: tuple[str | None, int]) -> None:
        """Ask a peer which address our datagrams come from (kademlia's ``stun``)."""
        ok, seen = await self.server.protocol.stun(address)
        if ok and isinstance(seen, list | tuple) and seen and isinstance(seen[0], str):
            self.external_host = seen[0]

    async def publish(self) -> bool:
        """Store a fresh own record here and at the nodes closest to its key."""
        value = self.make_record(self.clock.seconds()).encode()
        key = record_key(self.node_id)
        self.storage[digest(key)] = value
        if not self.members:
            return False
        try:
            return bool(await self.server.set(key, value))
        except ValueError:  # kademlia's set_digest takes max() of no nodes when all went away
            return False

    async def fill(self) -> None:
        """Look up a random id so the routing table learns more members."""
        protocol = self.server.protocol
        target = Node(os.urandom(20))
        nearest = protocol.router.find_neighbors(target, self.server.alpha)
        if nearest:
            self.stats.lookups += 1
            await NodeSpiderCrawl(
                protocol, target, nearest, self.server.ksize, self.server.alpha
            ).find()

    async def fetch(self, member: Node) -> ContactRecord | None:
        """The member's record, asked of the member first, then of the network.

        A new or newer record is passed to ``on_record`` at once.
        """
        key = record_key(member.id)
        now = self.clock.seconds()
        ok, answer = await self.server.protocol.call_find_value(member, Node(digest(key)))
        record = None
        if ok and isinstance(answer, dict):
            record = self.book.offer(answer.get("value"), now, expected_node_id=member.id)
        if record is None and self.book.get(member.id) is None:
            record = self.book.offer(await self.server.get(key), now, expected_node_id=member.id)
        if record is not None:
            self.stats.fetched += 1
            self.on_record(record)
        return record

    async def lookup(self, node_id: bytes) -> ContactRecord | None:
        """The record of ``node_id`` from this node's DHT storage or the network: a node
        not (yet) among the members, e.g. the finder of a share relayed from afar.

        A new or newer record is passed to ``on_record`` (and the book's subscribers).
        The caller bounds how often this runs (``FederationNode``'s ``RecordRequests``).
        """
        if self.server.protocol is None:
            return None
        self.stats.lookups += 1
        value = await self.server.get(record_key(node_id))  # its own storage first
        record = self.book.offer(value, self.clock.seconds(), expected_node_id=node_id)
        if record is not None:
            self.stats.fetched += 1
            self.on_record(record)
        return record

    def request(self, node_id: bytes) -> None:
        """Run ``lookup(node_id)`` in the background (failures logged and counted)."""
        self._guarded(lambda: self.lookup(node_id))

    async def discover(self) -> list[ContactRecord]:
        """Fill the routing table, then fetch the records of members not recently heard of."""
        if not self.members:
            return []
        await self.fill()
        now = self.clock.seconds()
        wanted = []
        for member in self.members:
            held = self.book.get(member.id)
            if member.id != self.node_id and (
                held is None or held.time < now - self.publish_interval
            ):
                wanted.append(member)
        found = await asyncio.gather(
            *(self.fetch(m) for m in wanted[: self.max_fetches]), return_exceptions=True
        )
        for result in found:
            if isinstance(result, Exception):
                self.stats.errors += 1
                self.stats.last_error = repr(result)
        return [record for record in found if isinstance(record, ContactRecord)]

"""Discovery over a real kademlia DHT on 127.0.0.1 UDP, plus its storage and back-off rules."""

from __future__ import annotations

from collections.abc import Callable

import pytest
import pytest_twisted
from kademlia.utils import digest
from twisted.internet import task
from twisted.internet.protocol import DatagramProtocol
from twisted.internet.task import deferLater

from otedama.federation.dht import Backoff, DhtNode, RecordStorage, parse_host_port
from otedama.federation.identity import Identity
from otedama.federation.records import ContactRecord, RecordBook, record_key
from otedama.federation.security import HostPolicy

NETWORK = "regtest"
SCRIPT = bytes.fromhex("0014") + b"\x22" * 20


class Member:
    """One federation node's identity, record book and DHT node."""

    def __init__(
        self, reactor: object, bootstrap: list[str], label: str, policy: HostPolicy | None = None
    ) -> None:
        self.identity = Identity.generate(label)
        self.book = RecordBook(NETWORK, self.identity.node_id)
        self.seen: list[ContactRecord] = []
        self.dht = DhtNode(
            node_id=self.identity.node_id,
            network=NETWORK,
            book=self.book,
            make_record=self.record,
            on_record=self.seen.append,
            clock=reactor,  # type: ignore[arg-type]
            bootstrap=bootstrap,
            interface="127.0.0.1",
            bootstrap_interval=0.1,
            discover_interval=0.3,
            rpc_timeout=0.5,
            backoff_initial=0.2,
            backoff_maximum=0.4,
            policy=policy,
        )

    def record(self, now: float) -> ContactRecord:
        return ContactRecord.create(
            self.identity,
            host="127.0.0.1",
            port=self.dht.port,
            network=NETWORK,
            payout_script=SCRIPT,
            now=now,
            label=self.identity.label,
        )

    def knows(self, others: list[Member]) -> bool:
        return all(self.book.get(o.identity.node_id) is not None for o in others if o is not self)


async def wait_until(reactor: object, condition: Callable[[], bool], limit: float = 30.0) -> None:
    """Poll ``condition``; fail (not hang) if it is still false after ``limit`` seconds."""
    waited = 0.0
    while not condition():
        assert waited < limit, "condition not reached in time"
        await deferLater(reactor, 0.05, lambda: None)  # type: ignore[arg-type]
        waited += 0.05


@pytest_twisted.ensureDeferred
async def test_four_nodes_that_know_one_bootstrap_node_find_each_others_records() -> None:
    from twisted.internet import reactor

    first = Member(reactor, [], "first")
    await first.dht.listen(0)
    members = [first] + [
        Member(reactor, [f"localhost:{first.dht.port}"], f"n{i}") for i in range(3)
    ]
    try:
        for member in members[1:]:
            await member.dht.listen(0)
        for member in members:
            # kademlia would swap an empty (falsy) storage for its own unvalidated one
            assert member.dht.server.protocol.storage is member.dht.storage
            member.dht.start_loops()
        await wait_until(reactor, lambda: all(m.knows(members) for m in members))
        for member in members:
            for other in members:
                if other is member:
                    continue
                record = member.book.get(other.identity.node_id)
                assert record is not None
                assert (record.host, record.port) == ("127.0.0.1", other.dht.port)
                assert record.label == other.identity.label
                assert record.public_key == other.identity.public_key
            assert {r.node_id for r in member.seen} == {
                o.identity.node_id for o in members if o is not member
            }
    finally:
        for member in members:
            member.dht.stop()


@pytest_twisted.ensureDeferred
async def test_a_node_whose_bootstrap_peer_is_down_runs_alone_and_joins_when_it_comes_up() -> None:
    from twisted.internet import reactor

    later = Member(reactor, [], "late bootstrap")
    port = await later.dht.listen(0)
    later.dht.stop()  # the port is now free: the bootstrap peer is down
    alone = Member(reactor, [f"127.0.0.1:{port}"], "alone")
    await alone.dht.listen(0)
    try:
        alone.dht.start_loops()
        await wait_until(reactor, lambda: alone.dht.stats.bootstrap_failures >= 2)
        assert alone.dht.members == []
        assert alone.book.get(later.identity.node_id) is None
        back = Member(reactor, [], "back")
        await back.dht.listen(port)
        back.dht.start_loops()
        try:
            await wait_until(reactor, lambda: alone.knows([back]) and back.knows([alone]))
        finally:
            back.dht.stop()
    finally:
        alone.dht.stop()


def test_backoff_doubles_up_to_its_maximum_and_resets_on_success() -> None:
    backoff = Backoff(initial=2, maximum=10)
    assert backoff.due(0)
    delays = []
    for _ in range(5):
        backoff.failed(100)
        delays.append(backoff.delay)
    assert delays == [2, 4, 8, 10, 10]
    assert not backoff.due(109) and backoff.due(110)
    backoff.succeeded()
    assert not backoff.due(1000)  # joined: not retried while the node is in the DHT


def test_host_port_accepts_names_and_ipv6() -> None:
    assert parse_host_port("seed.example.org:4444") == ("seed.example.org", 4444)
    assert parse_host_port("[::1]:4444") == ("::1", 4444)
    for bad in ("seed.example.org", ":4444", "host:0", "host:x", "host:70000"):
        with pytest.raises(ValueError, match="host:port"):
            parse_host_port(bad)


def signed(identity: Identity, now: float) -> bytes:
    return ContactRecord.create(
        identity, host="10.0.0.1", port=4444, network=NETWORK, payout_script=SCRIPT, now=now
    ).encode()


def test_dht_storage_keeps_only_valid_newer_records_under_their_own_key() -> None:
    clock = task.Clock()
    clock.advance(1_800_000_000)
    storage = RecordStorage(NETWORK, clock)
    peer, other = Identity.generate(), Identity.generate()
    key = digest(record_key(peer.node_id))
    new, old = signed(peer, clock.seconds()), signed(peer, clock.seconds() - 60)
    storage[key] = new
    storage[key] = old  # a replayed older record cannot displace the newer
    storage[key] = b"garbage"
    storage[key] = signed(other, clock.seconds() + 5)  # another node's record, wrong key
    assert storage.get(key) == new
    assert storage.refused == 2
    storage[digest(b"anything")] = 12
    assert len(storage) == 1
    clock.advance(3601)
    assert storage.get(key) is None


def test_dht_storage_is_bounded() -> None:
    clock = task.Clock()
    clock.advance(1_800_000_000)
    storage = RecordStorage(NETWORK, clock, max_entries=5)
    for _ in range(8):
        peer = Identity.generate()
        storage[digest(record_key(peer.node_id))] = signed(peer, clock.seconds())
    assert len(storage) == 5
    assert len(list(storage)) == 5


class _Sender(DatagramProtocol):
    pass


@pytest_twisted.ensureDeferred
async def test_garbage_datagrams_are_counted_and_the_dht_keeps_working(
    caplog: pytest.LogCaptureFixture,
) -> None:
    import gc

    import umsgpack
    from twisted.internet import reactor

    target = Member(reactor, [], "target")
    await target.dht.listen(0)
    sender = reactor.listenUDP(0, _Sender(), interface="127.0.0.1")  # type: ignore[attr-defined]
    peer = Member(reactor, [f"127.0.0.1:{target.dht.port}"], "peer")
    try:
        address = ("127.0.0.1", target.dht.port)
        header = b"\x00" + b"m" * 20
        for datagram in [
            b"short",
            b"\x00" + b"\xc1" * 40,  # not msgpack
            header + umsgpack.packb("not a list"),
            header + umsgpack.packb(["no_such_method", []]),
            header + umsgpack.packb(["store", [1, 2]]),  # wrong arguments
            header + umsgpack.packb(["find_node", [b"x" * 20, 12]]),  # wrong types
            header + umsgpack.packb(["store", [b"i" * 20, b"k" * 20, b"v" * 9000]]),  # too big
            header + b"\x91" * 5000,  # deep nesting
        ]:
            sender.write(datagram, address)
        await wait_until(reactor, lambda: target.dht.bad_datagrams >= 6)
        gc.collect()  # unretrieved task exceptions are logged when their task is collected
        await peer.dht.listen(0)
        target.dht.start_loops()
        peer.dht.start_loops()
        await wait_until(reactor, lambda: target.knows([peer]) and peer.knows([target]))
        assert len(target.dht.storage) == 2  # the two real records, not the oversized store
        assert [r for r in caplog.records if r.name == "asyncio"] == []
    finally:
        await sender.stopListening()
        target.dht.stop()
        peer.dht.stop()

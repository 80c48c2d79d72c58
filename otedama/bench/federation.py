"""``otedama bench federation``: gossip latency, verified messages per second, memory per peer.

::

    otedama bench federation [--nodes 10] [--shares 200] [--max-peers 6] [--interval 0.05]
                             [--messages 20000] [--peers 50] [--json]

Three figures, each from the real federation code:

1. **Propagation.** ``--nodes`` real ``FederationService``s (gossip on TCP, DHT on UDP,
   127.0.0.1) in this one process on the asyncio reactor, so every hop's work shares one
   core. Node 0 is everyone's bootstrap peer; ``--max-peers`` bounds each node's links,
   so with fewer slots than nodes the links they find form a partial mesh (the bench
   reports it). Once the link graph is connected and steady the discovery and upkeep
   loops are paused (a node discovers and pings every 30 s), then ``--shares`` real federation
   shares are published from random origins every ``--interval`` seconds. Each receiver
   verifies each share as a node does (``FedShare.from_dict``, node id of the key,
   ``verify_share`` against its own tip and window); the latency of a (share, receiver)
   pair is from just before ``publish_fed_share`` on the origin to the end of that
   receiver's verification.
2. **Verified messages/s on one core.** ``--messages`` frames, each a signed envelope
   carrying a distinct real fed-share, fed to a ``Codec`` in 64 KiB reads, then replay
   check, ``FedShare.from_dict`` and ``verify_share``; CPU time of this thread. Each
   stage is also timed alone (the Ed25519 check is timed on its own and subtracted from
   the decode).
3. **Memory per connected peer.** One ``FederationService`` in a child process; this
   process links ``--peers`` real gossip nodes to it (half dial it, half are dialled by
   it); (child RSS with every link ready - child RSS idle) / peers.

Shares are built like a node builds them: a settlement coinbase (``split_reward`` of the
window over every node's payout script, then the node commitment), a merkle branch of a
2,047-transaction block, and a header mined to the share target.
"""

from __future__ import annotations

import argparse
import gc
import json
import os
import random
import sys
import time
from collections import deque
from collections.abc import Callable, Sequence
from dataclasses import asdict, dataclass, field
from typing import Any

from twisted.internet.defer import Deferred
from twisted.internet.task import deferLater

from otedama.bench.stratum import _ServerProcess, percentile, read_rss_kib
from otedama.chain.hashing import sha256d
from otedama.chain.merkle import merkle_branch, root_from_branch, witness_commitment_script
from otedama.chain.serialize import BlockHeader
from otedama.chain.target import hash_to_int
from otedama.federation.gossip import Gossip, GossipSettings
from otedama.federation.identity import Identity, node_id_of, verify_signature
from otedama.federation.peer import LinkSettings
from otedama.federation.records import ContactRecord, decode_record
from otedama.federation.reputation import Penalty, Reputation, Reward
from otedama.federation.service import FederationService
from otedama.federation.settlement import settlement_coinbase, split_reward
from otedama.federation.shares import (
    ChainTip,
    FedShare,
    FedShareError,
    share_work,
    verify_share,
)
from otedama.federation.window import FederationWindow, WindowEntry
from otedama.federation.wire import DOMAIN, Codec, Envelope, Item, ReplayGuard, unpack_limited

__all__ = [
    "MemoryResult",
    "PropagationResult",
    "ThroughputResult",
    "build_shares",
    "format_result",
    "measure_memory",
    "measure_propagation",
    "measure_throughput",
    "register",
    "run_bench",
]

NETWORK = "regtest"
REWARD = 312_500_000
SHARE_TARGET = 1 << 244
"""A share target one hash in 4,096 meets: cheap to mine, as costly to check as any."""
BLOCK_TXIDS = 2047
"""Transactions besides the coinbase: an 11-step merkle branch, as in a full block."""
FAST_DHT = {
    "bootstrap_interval": 0.1,
    "discover_interval": 0.5,
    "rpc_timeout": 1.0,
    "backoff_initial": 0.2,
    "backoff_maximum": 1.0,
}
"""DHT loop intervals while the bench's links form (a node's are 1 s / 30 s / 300 s)."""
READ_SIZE = 64 * 1024


# -- shares as a node builds them ------------------------------------------------------------


def payout_script(n: int) -> bytes:
    """A P2WPKH scriptPubKey distinct per ``n``."""
    return b"\x00\x14" + n.to_bytes(20, "big")


@dataclass(frozen=True)
class Member:
    """A bench node's identity and payout script."""

    identity: Identity
    script: bytes


@dataclass
class Scene:
    """What every receiver agrees on: the tip, the window's shares, the share target."""

    members: list[Member]
    tip: ChainTip
    entries: list[WindowEntry]
    now: int
    target: int = SHARE_TARGET
    branch: list[bytes] = field(default_factory=list)

    def window(self) -> FederationWindow:
        """A fresh window holding the scene's entries (one per receiver)."""
        window = FederationWindow(7200)
        for entry in self.entries:
            window.add(entry, self.now)
        return window


def make_scene(members: list[Member], now: int) -> Scene:
    """A tip seen at ``now`` and a window in which every member has some work."""
    tip = ChainTip(sha256d(b"bench tip"), 800_000, sha256d(b"bench parent"), now)
    work = share_work(SHARE_TARGET)
    entries = [
        WindowEntry(
            sha256d(b"bench window %d" % n),
            m.identity.node_id,
            m.script,
            work * (1 + n % 7),
            now - 600 + n,
        )
        for n, m in enumerate(members)
    ]
    txids = [sha256d(b"tx %d" % i) for i in range(BLOCK_TXIDS)]
    return Scene(members, tip, entries, now, branch=merkle_branch(txids))


def build_shares(scene: Scene, count: int, rng: random.Random) -> list[tuple[int, FedShare]]:
    """``count`` distinct shares from random members: ``(member index, share)``."""
    weights = scene.window().script_weights(scene.now - 20)
    outputs_of: dict[int, list[tuple[bytes, int]]] = {}
    height = scene.tip.height + 1
    commitment = witness_commitment_script(bytes(32))
    shares = []
    for n in range(count):
        origin = rng.randrange(len(scene.members))
        member = scene.members[origin]
        if origin not in outputs_of:
            outputs_of[origin] = split_reward(REWARD, weights, member.script)
        parts = settlement_coinbase(
            height,
            outputs_of[origin],
            member.identity.node_id,
            8,
            b"/otedama-bench/",
            commitment,
        )
        coinbase = parts.assemble(n.to_bytes(8, "big"))
        root = root_from_branch(sha256d(coinbase), scene.branch)
        prefix = BlockHeader(0x20000000, scene.tip.hash, root, scene.now, 0x207FFFFF, 0)
        head = prefix.serialize()[:76]
        nonce = 0
        while hash_to_int(sha256d(header := head + nonce.to_bytes(4, "little"))) > scene.target:
            nonce += 1
        share = FedShare(
            node_id=member.identity.node_id,
            public_key=member.identity.public_key,
            payout_script=member.script,
            header=header,
            coinbase=coinbase,
            branch=tuple(scene.branch),
            height=height,
            target=scene.target,
            time=scene.now,
            template_time=scene.now - 20,
        )
        shares.append((origin, share))
    return shares


class Verifier:
    """An ``ItemHandler`` that verifies fed-shares as a node does and notes when."""

    def __init__(
        self,
        scene: Scene,
        clock: Any,
        on_verified: Callable[[bytes], None] = lambda share_hash: None,
    ) -> None:
        self.clock = clock
        self.on_verified = on_verified
        self.accepted = 0
        self.rejected: dict[str, int] = {}
        self.use(scene)

    def use(self, scene: Scene) -> None:
        """Verify against ``scene`` from now on (its own copy of the window)."""
        self.tip = scene.tip
        self.target = scene.target
        self.window = scene.window()

    def check(self, payload: Any, now: float) -> FedShare | None:
        """The share if it verifies, else ``None`` (the reason is counted)."""
        try:
            share = FedShare.from_dict(payload)
        except FedShareError:
            reason = "malformed"
        else:
            if node_id_of(share.public_key) != share.node_id:
                reason = "wrong-node-id"
            else:
                verdict = verify_share(
                    share, federation_target=self.target, tip=self.tip, window=self.window, now=now
                )
                if verdict.accepted:
                    self.accepted += 1
                    return share
                reason = str(verdict.reason)
        self.rejected[reason] = self.rejected.get(reason, 0) + 1
        return None

    def on_fed_share(self, peer_key: bytes, payload: dict[str, Any]) -> bool:
        share = self.check(payload, self.clock.seconds())
        if share is None:
            return False
        self.on_verified(share.share_hash)
        return True

    def on_block(self, peer_key: bytes, payload: dict[str, Any]) -> bool:
        return False


class BenchReputation:
    """The real ``Reputation`` behind gossip's ``ReputationSink`` (reasons are strings)."""

    _REWARDS = {"valid-fed-share": Reward.VALID_SHARE, "valid-block": Reward.VALID_BLOCK}

    def __init__(self, clock: Any) -> None:
        self.clock = clock
        self.book = Reputation()

    def reward(self, peer_key: bytes, reason: str) -> None:
        self.book.reward(
            peer_key, self._REWARDS.get(reason, Reward.GOOD_PROTOCOL), self.clock.seconds()
        )

    def penalise(self, peer_key: bytes, reason: str) -> None:
        try:
            penalty = Penalty(reason)
        except ValueError:
            penalty = Penalty.INVALID_SHARE if reason.startswith("invalid") else Penalty.PROTOCOL
        self.book.penalise(peer_key, penalty, self.clock.seconds())

    def score(self, peer_key: bytes) -> float:
        return self.book.score(peer_key, self.clock.seconds())


def members_of(count: int) -> list[Member]:
    return [Member(Identity.generate(f"bench{n}"), payout_script(n)) for n in range(count)]


# -- 1. propagation ----------------------------------------------------------------------------


@dataclass(frozen=True)
class PropagationResult:
    """Publish-to-verified latency over every (share, receiver) pair, in milliseconds."""

    nodes: int
    max_peers: int
    shares: int
    interval: float
    links: int
    degree_min: int
    degree_max: int
    diameter: int
    formed_seconds: float
    delivered: int
    expected: int
    rejected: int
    p50_ms: float
    p99_ms: float
    max_ms: float
    all_nodes_p50_ms: float
    """Per share, until the last receiver had verified it."""
    all_nodes_p99_ms: float
    duplicates: int
    """Copies received of items already held, over all nodes."""


def link_graph(services: Sequence[FederationService]) -> dict[int, set[int]]:
    """Who is linked (ready) to whom, by index, as an undirected graph."""
    index = {s.identity.public_key: n for n, s in enumerate(services)}
    graph: dict[int, set[int]] = {n: set() for n in range(len(services))}
    for n, service in enumerate(services):
        for key in service.gossip.ready:
            if key in index:
                graph[n].add(index[key])
                graph[index[key]].add(n)
    return graph


def eccentricities(graph: dict[int, set[int]]) -> list[int]:
    """Hops from each node to its farthest one (-1: the graph is not connected)."""
    out = []
    for start in graph:
        hops = {start: 0}
        queue = deque([start])
        while queue:
            node = queue.popleft()
            for other in graph[node]:
                if other not in hops:
                    hops[other] = hops[node] + 1
                    queue.append(other)
        out.append(max(hops.values()) if len(hops) == len(graph) else -1)
    return out


def _stamp_into(seen: dict[bytes, float]) -> Callable[[bytes], None]:
    """Note in ``seen`` when each share was first verified."""

    def stamp(share_hash: bytes) -> None:
        seen.setdefault(share_hash, time.perf_counter())

    return stamp


async def sleep(reactor: Any, seconds: float) -> None:
    await deferLater(reactor, seconds, lambda: None)


async def measure_propagation(
    reactor: Any,
    *,
    nodes: int,
    shares: int,
    max_peers: int,
    interval: float,
    seed: int = 1,
    form_limit: float = 60.0,
) -> PropagationResult:
    """Start ``nodes`` services, let them link, publish ``shares`` and time their spread."""
    rng = random.Random(seed)
    members = members_of(nodes)
    scene = make_scene(members, int(reactor.seconds()))
    handled: list[dict[bytes, float]] = [{} for _ in range(nodes)]
    verifiers: list[Verifier] = []
    services: list[FederationService] = []
    try:
        for n, member in enumerate(members):
            verifier = Verifier(scene, reactor, _stamp_into(handled[n]))
            verifiers.append(verifier)
            bootstrap = [f"127.0.0.1:{services[0].port}"] if services else []
            service = FederationService(
                member.identity,
                network=NETWORK,
                payout_script=member.script,
                listen_port=0,
                handler=verifier,
                reputation=BenchReputation(reactor),
                reactor=reactor,
                interface="127.0.0.1",
                bootstrap_peers=bootstrap,
                max_peers=max_peers,
                upkeep_interval=0.5,
                dht_options=FAST_DHT,
            )
            services.append(service)
            await service.startService()
        started = time.perf_counter()
        steady_since, last = started, link_graph(services)
        while True:
            await sleep(reactor, 0.1)
            graph = link_graph(services)
            now = time.perf_counter()
            if graph != last:
                steady_since, last = now, graph
            elif min(eccentricities(graph)) >= 0 and now - steady_since >= 1.5:
                break
            if now - started > form_limit:
                raise RuntimeError(
                    f"the {nodes} nodes did not form one connected, steady link graph in "
                    f"{form_limit:.0f} s (max_peers {max_peers}): {graph}"
                )
        formed = time.perf_counter() - started - 1.5
        for service in services:  # fast here, every 30 s in a node: paused while timing
            for loop in [*service.dht._loops, service._upkeep]:
                if loop is not None and loop.running:
                    loop.stop()
        # Shares are at most a minute old when checked: build them now, not before linking.
        scene = make_scene(members, int(reactor.seconds()))
        built = build_shares(scene, shares, rng)
        for verifier in verifiers:
            verifier.use(scene)
        await sleep(reactor, 0.2)
        published: list[tuple[int, bytes, float]] = []
        for origin, share in built:
            payload = share.to_dict()
            published.append((origin, share.share_hash, time.perf_counter()))
            services[origin].publish_fed_share(payload)
            await sleep(reactor, interval)
        expected = shares * (nodes - 1)

        def delivered() -> int:
            return sum(
                1 for o, h, _ in published for n in range(nodes) if n != o and h in handled[n]
            )

        waited = 0.0
        while delivered() < expected and waited < 10.0:
            await sleep(reactor, 0.05)
            waited += 0.05
    finally:
        for service in services:
            await service.stopService()
    latencies: list[float] = []
    last_node: list[float] = []
    for origin, share_hash, at in published:
        times = [
            handled[n][share_hash] - at
            for n in range(nodes)
            if n != origin and share_hash in handled[n]
        ]
        latencies += times
        if len(times) == nodes - 1 and times:
            last_node.append(max(times))
    degrees = [len(v) for v in graph.values()]
    return PropagationResult(
        nodes=nodes,
        max_peers=max_peers,
        shares=shares,
        interval=interval,
        links=sum(degrees) // 2,
        degree_min=min(degrees),
        degree_max=max(degrees),
        diameter=max(eccentricities(graph)),
        formed_seconds=round(formed, 2),
        delivered=len(latencies),
        expected=expected,
        rejected=sum(sum(v.rejected.values()) for v in verifiers),
        p50_ms=percentile(latencies, 0.5) * 1000,
        p99_ms=percentile(latencies, 0.99) * 1000,
        max_ms=max(latencies, default=0.0) * 1000,
        all_nodes_p50_ms=percentile(last_node, 0.5) * 1000,
        all_nodes_p99_ms=percentile(last_node, 0.99) * 1000,
        duplicates=sum(s.gossip.stats.items_duplicate for s in services),
    )


# -- 2. verified messages per second -------------------------------------------------------------


@dataclass(frozen=True)
class ThroughputResult:
    """Per-message CPU cost of each stage, in microseconds, and the rate they give."""

    messages: int
    distinct_shares: int
    frame_bytes: int
    decode_us: float
    """Framing, msgpack unpacking and field checks (``Codec.feed`` minus the signature)."""
    signature_us: float
    replay_us: float
    from_dict_us: float
    verify_share_us: float
    """``verify_share`` and the node-id check."""
    pipeline_us: float
    """All of it in one pass, as a link and a node do it."""
    messages_per_cpu_second: float
    messages_per_wall_second: float
    accepted: int


class _Timer:
    """CPU time of this thread and wall time between ``start`` and ``stop``."""

    def __enter__(self) -> _Timer:
        self.cpu = time.thread_time()
        self.wall = time.perf_counter()
        return self

    def __exit__(self, *_: object) -> None:
        self.cpu = time.thread_time() - self.cpu
        self.wall = time.perf_counter() - self.wall


def measure_throughput(messages: int, *, distinct: int = 1000, seed: int = 1) -> ThroughputResult:
    """Decode, authenticate and verify ``messages`` fed-share frames on this thread."""
    rng = random.Random(seed)
    members = members_of(10)
    now = int(time.time())
    scene = make_scene(members, now)
    distinct = max(1, min(distinct, messages))
    items = [
        Item.of("fed-share", share.to_dict()) for _, share in build_shares(scene, distinct, rng)
    ]
    relay = Identity.generate("relay")
    out = Codec(relay, first_seq=Codec.fresh_seq(now))
    frames = [out.encode(items[n % distinct], now) for n in range(messages)]
    stream = b"".join(frames)
    chunks = [stream[i : i + READ_SIZE] for i in range(0, len(stream), READ_SIZE)]
    max_frame = LinkSettings(NETWORK).max_frame
    verifier = Verifier(scene, None)
    gc.collect()

    with _Timer() as pipeline:
        codec = Codec(relay, first_seq=0, max_frame=max_frame)
        guard = ReplayGuard()
        for chunk in chunks:
            for message in codec.feed(chunk):
                if isinstance(message, Envelope) and guard.check(message, now) is None:
                    body = message.body
                    if isinstance(body, Item):
                        verifier.check(body.data, now)
    accepted = verifier.accepted

    with _Timer() as feed:
        codec = Codec(relay, first_seq=0, max_frame=max_frame)
        envelopes = [m for chunk in chunks for m in codec.feed(chunk)]
    signed = []
    for frame in frames[: distinct * 2]:
        outer = unpack_limited(frame[4:], max_items=2)
        signed.append((unpack_limited(outer[0], max_items=6)[2], DOMAIN + outer[0], outer[1]))
    with _Timer() as signature:
        for sender, message, sig in signed:
            verify_signature(sender, message, sig)
    signature_each = signature.cpu / len(signed)
    good = [e for e in envelopes if isinstance(e, Envelope)]
    with _Timer() as replay:
        guard = ReplayGuard()
        for envelope in good:
            guard.check(envelope, now)
    payloads = [e.body.data for e in good if isinstance(e.body, Item)]
    with _Timer() as parse:
        shares = [FedShare.from_dict(payload) for payload in payloads]
    tip, target, window = verifier.tip, verifier.target, verifier.window
    with _Timer() as verify:
        for share in shares:
            if node_id_of(share.public_key) == share.node_id:
                verify_share(share, federation_target=target, tip=tip, window=window, now=now)
    each = 1e6 / messages
    return ThroughputResult(
        messages=messages,
        distinct_shares=distinct,
        frame_bytes=len(stream) // messages,
        decode_us=max(0.0, feed.cpu * each - signature_each * 1e6),
        signature_us=signature_each * 1e6,
        replay_us=replay.cpu * each,
        from_dict_us=parse.cpu * each,
        verify_share_us=verify.cpu * each,
        pipeline_us=pipeline.cpu * each,
        messages_per_cpu_second=messages / pipeline.cpu if pipeline.cpu else 0.0,
        messages_per_wall_second=messages / pipeline.wall if pipeline.wall else 0.0,
        accepted=accepted,
    )


# -- 3. memory per connected peer ---------------------------------------------------------------


@dataclass(frozen=True)
class MemoryResult:
    """The child node's RSS idle and with every peer linked, in KiB."""

    peers: int
    linked: int
    idle_kib: int
    linked_kib: int

    @property
    def per_peer_kib(self) -> float:
        return (self.linked_kib - self.idle_kib) / self.peers if self.peers else 0.0


class _PeerNode:
    """A real gossip node in this process, listening on 127.0.0.1, that links the child."""

    def __init__(self, reactor: Any, n: int, scene: Scene) -> None:
        self.identity = Identity.generate(f"peer{n}")
        self.reactor = reactor
        self.gossip = Gossip(
            self.identity,
            GossipSettings(LinkSettings(NETWORK, label=self.identity.label)),
            BenchReputation(reactor),
            Verifier(scene, reactor),
            reactor,
        )
        self.port = reactor.listenTCP(0, self.gossip.factory(), interface="127.0.0.1")
        self.gossip.settings = LinkSettings(
            NETWORK, label=self.identity.label, listen_port=self.port.getHost().port
        )

    def record(self) -> ContactRecord:
        """This peer's signed contact record, for the child to dial."""
        where = {"host": "127.0.0.1", "port": self.port.getHost().port, "network": NETWORK}
        now = self.reactor.seconds()
        return ContactRecord.create(self.identity, payout_script=payout_script(1), now=now, **where)

    async def stop(self) -> None:
        self.gossip.stop()
        await self.port.stopListening()


async def measure_memory(reactor: Any, peers: int, *, limit: float = 60.0) -> MemoryResult:
    """Link ``peers`` gossip nodes to a ``FederationService`` in a child process."""
    child = _ServerProcess()
    hello = child.ask(None)
    root = os.path.dirname(os.path.dirname(os.path.dirname(os.path.abspath(__file__))))
    env = dict(os.environ)
    env["PYTHONPATH"] = os.pathsep.join(p for p in (root, env.get("PYTHONPATH", "")) if p)
    args = [sys.executable, "-m", "otedama.bench.federation", "--max-peers", str(peers)]
    reactor.spawnProcess(child, sys.executable, args, env=env)
    nodes: list[_PeerNode] = []
    try:
        first = await hello
        await sleep(reactor, 1.0)
        idle = await child.ask("status")
        scene = make_scene(members_of(2), int(reactor.seconds()))
        record = decode_record(bytes.fromhex(first["record"]))
        for n in range(peers):
            node = _PeerNode(reactor, n, scene)
            nodes.append(node)
            if n % 2:
                child.ask(f"connect {node.record().encode().hex()}")  # the child dials it
            else:
                node.gossip.connect(record)
        waited = 0.0
        status = await child.ask("status")
        while status["ready"] < peers and waited < limit:
            await sleep(reactor, 0.2)
            waited += 0.2
            status = await child.ask("status")
        await sleep(reactor, 1.0)
        status = await child.ask("status")
        return MemoryResult(peers, status["ready"], idle["rss_kib"], status["rss_kib"])
    finally:
        for node in nodes:
            await node.stop()
        transport: Any = child.transport
        if transport is not None:
            transport.closeStdin()
        await child.ended


def child_main(argv: list[str] | None = None) -> int:
    """The measured node of ``measure_memory``: one ``FederationService``, driven by stdin.

    Prints ``{"port", "record"}`` once listening; answers ``status`` with ``{"ready",
    "links", "rss_kib"}`` (after a full garbage collection); ``connect HEX`` dials the
    node of that contact record (and answers with a status); stops when stdin closes.
    """
    parser = argparse.ArgumentParser(prog="otedama-bench-federation-node")
    parser.add_argument("--max-peers", type=int, default=50)
    args = parser.parse_args(argv)
    from twisted.internet import stdio

    from otedama.bench.stratum_server import _Control
    from otedama.ops.reactor import install_asyncio_reactor

    rx = install_asyncio_reactor()
    member = members_of(1)[0]
    service = FederationService(
        member.identity,
        network=NETWORK,
        payout_script=member.script,
        listen_port=0,
        handler=Verifier(make_scene([member], int(rx.seconds())), rx),
        reputation=BenchReputation(rx),
        reactor=rx,
        interface="127.0.0.1",
        max_peers=args.max_peers,
    )

    def say(obj: dict[str, Any]) -> None:
        sys.stdout.write(json.dumps(obj) + "\n")
        sys.stdout.flush()

    def status() -> None:
        gc.collect()
        gossip = service.gossip
        say(
            {
                "ready": len(gossip.ready),
                "links": len(gossip.links),
                "rss_kib": read_rss_kib(os.getpid()),
            }
        )

    def handle(command: str) -> None:
        if command == "status":
            status()
        elif command.startswith("connect "):
            service.gossip.connect(decode_record(bytes.fromhex(command.split()[1])))
            status()
        elif command == "quit" and rx.running:
            Deferred.fromCoroutine(stop())

    async def stop() -> None:
        await service.stopService()
        rx.stop()

    async def start() -> None:
        await service.startService()
        stdio.StandardIO(_Control(handle), reactor=rx)
        gc.collect()
        say({"port": service.port, "record": service.own_record(rx.seconds()).encode().hex()})

    rx.callWhenRunning(
        lambda: Deferred.fromCoroutine(start()).addErrback(
            lambda f: (f.printTraceback(), rx.stop())
        )
    )
    rx.run()
    return 0


# -- the command -----------------------------------------------------------------------------------


def register(subparsers: Any) -> None:
    """Add ``federation`` to the ``bench`` sub-commands."""
    parser: argparse.ArgumentParser = subparsers.add_parser(
        "federation",
        help="gossip latency, verified messages/s and memory per peer of the federation",
        description=__doc__,
        formatter_class=argparse.RawDescriptionHelpFormatter,
    )
    parser.add_argument("--nodes", type=int, default=10, help="federation nodes gossiping")
    parser.add_argument("--shares", type=int, default=200, help="shares published")
    parser.add_argument("--max-peers", type=int, default=6, help="each node's federation.max_peers")
    parser.add_argument("--interval", type=float, default=0.05, help="seconds between publishes")
    parser.add_argument(
        "--messages", type=int, default=20_000, help="frames for the messages/s figure"
    )
    parser.add_argument("--peers", type=int, default=50, help="peers linked for the memory figure")
    parser.add_argument("--seed", type=int, default=1, help="seed of origins and shares")
    parser.add_argument("--json", action="store_true", help="print the figures as JSON")
    parser.set_defaults(func=run_bench)


@dataclass
class FederationBench:
    """Every figure of one run, with the load average before and after it."""

    propagation: PropagationResult
    throughput: ThroughputResult
    memory: MemoryResult
    load_before: list[float]
    load_after: list[float]
    commit: str

    def to_json(self) -> dict[str, Any]:
        return {
            "propagation": asdict(self.propagation),
            "throughput": asdict(self.throughput),
            "memory": {**asdict(self.memory), "per_peer_kib": self.memory.per_peer_kib},
            "load_average_before": self.load_before,
            "load_average_after": self.load_after,
            "commit": self.commit,
        }


def _commit() -> str:
    """The git commit of the tree this module runs from, if it is a checkout."""
    import subprocess

    here = os.path.dirname(os.path.abspath(__file__))
    try:
        done = subprocess.run(
            ["git", "-C", here, "rev-parse", "--short", "HEAD"],
            capture_output=True,
            text=True,
            timeout=10,
            check=True,
        )
    except (OSError, subprocess.SubprocessError):
        return ""
    return done.stdout.strip()


def run_bench(args: argparse.Namespace) -> int:
    """Run the three measurements on the asyncio reactor and print the figures."""
    if min(args.nodes - 1, args.shares, args.max_peers, args.messages, args.peers) < 1:
        print(
            "--nodes must be at least 2; --shares, --max-peers, --messages and --peers positive",
            file=sys.stderr,
        )
        return 2
    if args.interval < 0:
        print("--interval must not be negative", file=sys.stderr)
        return 2
    from otedama.ops.reactor import install_asyncio_reactor

    reactor = install_asyncio_reactor()
    outcome: dict[str, Any] = {}
    load_before = list(os.getloadavg())

    async def main() -> None:
        propagation = await measure_propagation(
            reactor,
            nodes=args.nodes,
            shares=args.shares,
            max_peers=args.max_peers,
            interval=args.interval,
            seed=args.seed,
        )
        throughput = measure_throughput(args.messages, seed=args.seed)
        memory = await measure_memory(reactor, args.peers)
        outcome["result"] = FederationBench(
            propagation, throughput, memory, load_before, list(os.getloadavg()), _commit()
        )

    def done(result: object) -> None:
        if result is not None:
            outcome["error"] = result
        reactor.stop()

    reactor.callWhenRunning(lambda: Deferred.fromCoroutine(main()).addBoth(done))
    reactor.run()
    if "result" not in outcome:
        print(f"federation bench failed: {outcome.get('error')}", file=sys.stderr)
        return 1
    bench: FederationBench = outcome["result"]
    print(json.dumps(bench.to_json(), indent=2) if args.json else format_result(bench))
    return 0


def format_result(bench: FederationBench) -> str:
    """The figures for people."""
    p, t, m = bench.propagation, bench.throughput, bench.memory
    load = lambda values: " ".join(f"{v:.2f}" for v in values)  # noqa: E731
    return "\n".join(
        [
            f"commit {bench.commit or '?'}; load average {load(bench.load_before)} before, "
            f"{load(bench.load_after)} after",
            f"propagation  {p.nodes} nodes in one process, max_peers {p.max_peers}: {p.links} links "
            f"(degree {p.degree_min}-{p.degree_max}, diameter {p.diameter}), formed in "
            f"{p.formed_seconds:.1f} s",
            f"             {p.shares} shares every {p.interval * 1000:.0f} ms from random origins: "
            f"{p.delivered}/{p.expected} verified ({p.rejected} rejected, {p.duplicates} duplicate copies)",
            f"             publish -> verified p50 {p.p50_ms:.1f} ms, p99 {p.p99_ms:.1f} ms, "
            f"max {p.max_ms:.1f} ms; all nodes p50 {p.all_nodes_p50_ms:.1f} ms, "
            f"p99 {p.all_nodes_p99_ms:.1f} ms",
            f"throughput   {t.messages:,} fed-share frames of {t.frame_bytes} bytes "
            f"({t.accepted:,} verified): {t.messages_per_cpu_second:,.0f} per CPU-second, "
            f"{t.messages_per_wall_second:,.0f}/s wall",
            f"             per message: decode {t.decode_us:.1f} µs + signature {t.signature_us:.1f} µs "
            f"+ replay {t.replay_us:.1f} µs + from_dict {t.from_dict_us:.1f} µs + verify_share "
            f"{t.verify_share_us:.1f} µs; in one pass {t.pipeline_us:.1f} µs",
            f"memory       {m.linked}/{m.peers} peers linked: child RSS {m.idle_kib / 1024:.1f} MiB idle, "
            f"{m.linked_kib / 1024:.1f} MiB linked = {m.per_peer_kib:.1f} KiB per peer",
        ]
    )


if __name__ == "__main__":
    sys.exit(child_main())

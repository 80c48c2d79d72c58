"""The devnet's ZMQ notifications as Bitcoin Core's: topics, three-part framing and
per-topic sequence numbers, seen by real pyzmq SUB sockets for every new block."""

from __future__ import annotations

import struct
from fractions import Fraction
from pathlib import Path
from typing import Any

import pytest_twisted
import zmq
from twisted.internet import reactor
from twisted.internet.threads import deferToThread

from otedama.chain.address import address_to_script
from otedama.chain.hashing import sha256d
from otedama.chain.params import get_network
from otedama.chain.serialize import Block
from otedama.devnet.chain import DevnetChain
from otedama.devnet.service import DevnetHandle, start_devnet
from otedama.devnet.zmqpub import TOPICS, ChainEvents, chain_events, notifications, snapshot
from tests.devnet.blocks import block_from_template, spend
from tests.devnet.test_chain import NOW, mine, template

ALICE = "bcrt1qkuycd29ejkf8n8sneevx4xmlsgly03cq8mavh9"
SCRIPT = address_to_script(ALICE, "devnet")
ANY_PORT = "tcp://127.0.0.1:*"


def subscriber(context: Any, address: str, *topics: bytes) -> Any:
    sub = context.socket(zmq.SUB)
    sub.setsockopt(zmq.RCVTIMEO, 10_000)
    sub.setsockopt(zmq.LINGER, 0)
    for topic in topics:
        sub.setsockopt(zmq.SUBSCRIBE, topic)
    sub.connect(address)
    return sub


async def receive(sub: Any) -> list[bytes]:
    """One multipart message (waits in a thread, at most RCVTIMEO)."""
    frames: list[bytes] = await deferToThread(sub.recv_multipart)
    return frames


async def subscribed(handle: DevnetHandle, *subs: Any) -> None:
    """Mine until every SUB has seen a message (subscriptions reach the publisher
    asynchronously), then drain them all."""
    for sub in subs:
        sub.setsockopt(zmq.RCVTIMEO, 200)
    waiting = list(subs)
    for _ in range(50):
        if not waiting:
            break
        await handle.node.generate(1, SCRIPT)
        for sub in list(waiting):
            try:
                await receive(sub)
            except zmq.Again:
                continue
            waiting.remove(sub)
    assert not waiting, "a subscriber never received a notification"
    for sub in subs:
        while True:
            try:
                await receive(sub)
            except zmq.Again:
                break
        sub.setsockopt(zmq.RCVTIMEO, 10_000)


def number(frame: bytes) -> int:
    assert len(frame) == 4
    value: int = struct.unpack("<I", frame)[0]
    return value


@pytest_twisted.ensureDeferred
async def test_hashblock_and_rawblock_arrive_for_every_new_block(tmp_path: Path) -> None:
    handle = await start_devnet(
        reactor,
        "tcp:0:interface=127.0.0.1",
        Fraction(1, 10**9),
        tmp_path,
        zmq={"hashblock": ANY_PORT, "rawblock": ANY_PORT, "sequence": ANY_PORT},
    )
    context = zmq.Context()
    address = handle.service.zmq.bound("hashblock")
    assert address == handle.service.zmq.bound("rawblock")  # one socket for one address
    blocks_sub = subscriber(context, address, b"hashblock", b"rawblock")
    sequence_sub = subscriber(context, address, b"sequence")
    try:
        await subscribed(handle, blocks_sub, sequence_sub)
        mined = [h for _ in range(4) for h in await handle.node.generate(1, SCRIPT)]
        messages = [await receive(blocks_sub) for _ in range(2 * len(mined))]
        sequences = [await receive(sequence_sub) for _ in range(len(mined))]
    finally:
        blocks_sub.close()
        sequence_sub.close()
        context.term()
        await handle.stop()
    assert all(len(m) == 3 for m in messages + sequences)
    hash_messages, raw_messages = messages[0::2], messages[1::2]
    assert [m[0] for m in hash_messages] == [b"hashblock"] * 4
    assert [m[0] for m in raw_messages] == [b"rawblock"] * 4
    assert [m[1] for m in hash_messages] == [h[::-1] for h in mined]
    assert [sha256d(m[1][:80]) for m in raw_messages] == mined
    assert all(Block.parse(m[1]).hash() == h for m, h in zip(raw_messages, mined, strict=True))
    for stream in (hash_messages, raw_messages, sequences):
        counters = [number(m[2]) for m in stream]
        assert counters == list(range(counters[0], counters[0] + len(stream)))
    assert [m[0] for m in sequences] == [b"sequence"] * 4
    assert [m[1] for m in sequences] == [h[::-1] + b"C" for h in mined]


def test_a_reorganisation_is_disconnects_then_connects_then_the_new_tip() -> None:
    """Pure: the events between two snapshots, in Core's order, for the wanted topics."""
    chain = DevnetChain(get_network("devnet"), Fraction(1, 10**9))
    mine(chain, 1)
    t = template(chain)
    first = block_from_template(t)
    rival = block_from_template(t, script=b"\x00\x14" + bytes(20))
    assert chain.submit_block(first.serialize(), NOW).reason is None
    before = snapshot(chain)
    assert chain.submit_block(rival.serialize(), NOW).reason == "inconclusive"
    longer = block_from_template(template(chain) | {"previousblockhash": rival.hash()[::-1].hex()})
    assert chain.submit_block(longer.serialize(), NOW).reason is None
    events, after = chain_events(chain, before)
    assert [e.hash for e in events.disconnected] == [first.hash()]
    assert [e.hash for e in events.connected] == [rival.hash(), longer.hash()]
    assert after.tip.hash == longer.hash()
    assert notifications(chain, events, ["hashblock", "sequence"]) == [
        ("sequence", first.hash()[::-1] + b"D"),
        ("sequence", rival.hash()[::-1] + b"C"),
        ("sequence", longer.hash()[::-1] + b"C"),
        ("hashblock", longer.hash()[::-1]),
    ]
    assert chain_events(chain, after)[0] == ChainEvents()


def test_a_transaction_entering_the_mempool_is_hashtx_rawtx_and_sequence_a() -> None:
    chain = DevnetChain(get_network("devnet"), Fraction(1, 10**9))
    blocks = mine(chain, 101)
    before = snapshot(chain)
    coinbase = blocks[0].transactions[0]
    tx = spend(coinbase.txid(), 0, coinbase.outputs[0].value - 1000)
    chain.accept_to_mempool(tx, NOW)
    events, after = chain_events(chain, before)
    counter = struct.pack("<Q", chain.mempool_updates)
    assert notifications(chain, events, TOPICS) == [
        ("hashtx", tx.txid()[::-1]),
        ("rawtx", tx.serialize()),
        ("sequence", tx.txid()[::-1] + b"A" + counter),
    ]
    # Mined: no "R" (Core sends R only for removals other than by a block).
    [block] = mine(chain, 1, now=NOW + 200)
    events, after = chain_events(chain, after)
    assert events.removed == () and [e.hash for e in events.connected] == [block.hash()]
    block_txs = [
        (topic, t.txid()[::-1] if topic == "hashtx" else t.serialize())
        for t in block.transactions
        for topic in ("hashtx", "rawtx")
    ]
    # Core's BlockConnected: the block's transactions first, then "C"; the tip after.
    assert notifications(chain, events, TOPICS) == [
        *block_txs,
        ("sequence", block.hash()[::-1] + b"C"),
        ("hashblock", block.hash()[::-1]),
        ("rawblock", block.serialize()),
    ]
    # Disconnected: its transactions, then "D" (Core's BlockDisconnected); no hashblock,
    # as the new tip is the fork point (Core's UpdatedBlockTip sends none then); its
    # transaction returns to the mempool ("A" again, as in Core).
    chain.invalidate_block(block.hash())
    events, after = chain_events(chain, after)
    assert [e.hash for e in events.disconnected] == [block.hash()]
    assert events.added == (tx.txid(),) and events.removed == ()
    counter = struct.pack("<Q", chain.mempool_updates)
    assert notifications(chain, events, TOPICS) == [
        *block_txs,
        ("sequence", block.hash()[::-1] + b"D"),
        ("hashtx", tx.txid()[::-1]),
        ("rawtx", tx.serialize()),
        ("sequence", tx.txid()[::-1] + b"A" + counter),
    ]
    # One block further back the coinbase it spends is immature for the next block: it
    # leaves the mempool other than by a block, which is "R".
    chain.invalidate_block(blocks[-2].hash())
    events, _ = chain_events(chain, after)
    assert events.removed == (tx.txid(),)
    counter = struct.pack("<Q", chain.mempool_updates)
    assert ("sequence", tx.txid()[::-1] + b"R" + counter) in notifications(
        chain, events, ["sequence"]
    )

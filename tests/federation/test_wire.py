"""The wire codec, bytes in and bytes out: framing, signatures, limits and replays."""

from __future__ import annotations

import msgpack
import pytest
from hypothesis import given, settings
from hypothesis import strategies as st

from otedama.federation.identity import Identity
from otedama.federation.wire import (
    DOMAIN,
    MAX_FRAME,
    Codec,
    Envelope,
    FrameTooLarge,
    GetData,
    Hello,
    Inventory,
    Item,
    Peers,
    Ping,
    Pong,
    Rejected,
    ReplayGuard,
    WireError,
    item_hash,
    unpack_limited,
)

NOW = 1_800_000_000.0
ALICE = Identity.generate("alice")
BOB = Identity.generate("bob")


def codec(identity: Identity = ALICE, max_frame: int = MAX_FRAME) -> Codec:
    return Codec(identity, first_seq=Codec.fresh_seq(NOW), max_frame=max_frame)


def frame_of(body: bytes) -> bytes:
    return len(body).to_bytes(4, "big") + body


def signed_frame(identity: Identity, fields: list[object], signature: bytes | None = None) -> bytes:
    signed = msgpack.packb(fields, use_bin_type=True)
    sig = identity.sign(DOMAIN + signed) if signature is None else signature
    return frame_of(msgpack.packb([signed, sig], use_bin_type=True))


BODIES = [
    Hello("regtest", 1, b"n" * 16, 4444, "alpha"),
    Ping(b"p1"),
    Pong(b"p1"),
    Inventory((("fed-share", b"\x01" * 32), ("block", b"\x02" * 32))),
    GetData((("fed-share", b"\x01" * 32),)),
    Peers((b"record-one", b"record-two")),
    Item.of("fed-share", {"header": b"\x00" * 80, "difficulty": 12}),
    Item.of("block", {"hash": b"\x03" * 32}),
]


@pytest.mark.parametrize("body", BODIES, ids=lambda b: b.kind)
def test_every_kind_round_trips_signed_by_its_sender(body: object) -> None:
    sender, receiver = codec(), codec(BOB)
    data = sender.encode(body, NOW)  # type: ignore[arg-type]
    (message,) = receiver.feed(data)
    assert isinstance(message, Envelope)
    assert message.sender == ALICE.public_key
    assert message.timestamp == int(NOW)
    assert message.body == body


def test_frames_split_anywhere_and_joined_decode_the_same() -> None:
    sender, receiver = codec(), codec(BOB)
    stream = b"".join(sender.encode(body, NOW) for body in BODIES)
    received: list[Envelope | Rejected] = []
    for i in range(0, len(stream), 7):
        received += receiver.feed(stream[i : i + 7])
    assert [m.body for m in received if isinstance(m, Envelope)] == BODIES
    assert receiver.buffered == 0


def test_sequence_numbers_grow_from_the_clock() -> None:
    sender, receiver = codec(), codec(BOB)
    seqs = [
        m.seq for m in receiver.feed(sender.encode(Ping(b"a"), NOW) * 1) if isinstance(m, Envelope)
    ]
    seqs += [
        m.seq for m in receiver.feed(sender.encode(Ping(b"b"), NOW)) if isinstance(m, Envelope)
    ]
    assert seqs == [int(NOW * 1e6) + 1, int(NOW * 1e6) + 2]


def test_the_item_hash_is_the_hash_of_the_bytes_that_travelled() -> None:
    item = Item.of("fed-share", {"a": 1})
    (message,) = codec(BOB).feed(codec().encode(item, NOW))
    assert isinstance(message, Envelope) and isinstance(message.body, Item)
    assert message.body.raw == item.raw
    assert message.body.hash == item_hash(msgpack.packb({"a": 1})) == item.hash


def test_an_oversized_frame_raises_before_its_body_arrives() -> None:
    receiver = codec(max_frame=1024)
    with pytest.raises(FrameTooLarge) as caught:
        receiver.feed((1025).to_bytes(4, "big") + b"x")
    assert caught.value.reason == "oversized-frame"
    assert receiver.buffered == 0


def test_a_bad_signature_is_rejected_naming_its_claimed_sender() -> None:
    fields = [1, "ping", ALICE.public_key, 5, int(NOW), msgpack.packb({"nonce": b"x"})]
    data = signed_frame(BOB, fields)  # signed by Bob, claims to be Alice
    assert codec(BOB).feed(data) == [Rejected("bad-signature", ALICE.public_key)]


def test_a_tampered_payload_fails_its_signature() -> None:
    data = bytearray(codec().encode(Ping(b"abcd"), NOW))
    data[data.index(b"abcd")] ^= 1
    (message,) = codec(BOB).feed(bytes(data))
    assert message == Rejected("bad-signature", ALICE.public_key)


@pytest.mark.parametrize(
    ("fields", "reason"),
    [
        ([2, "ping", ALICE.public_key, 1, 1, b"\x80"], "version"),
        ([1, "gossip", ALICE.public_key, 1, 1, b"\x80"], "unknown-kind"),
        ([1, "ping", b"short", 1, 1, b"\x80"], "malformed"),
        ([1, "ping", ALICE.public_key, -1, 1, b"\x80"], "malformed"),
        ([1, "ping", ALICE.public_key, 1, 1, "not bytes"], "malformed"),
        ([1, "ping", ALICE.public_key, 1, 1, msgpack.packb({"nonce": b"x" * 33})], "malformed"),
        ([1, "fed-share", ALICE.public_key, 1, 1, msgpack.packb([1, 2])], "malformed"),
        (
            [1, "inventory", ALICE.public_key, 1, 1, msgpack.packb({"items": [["x", b""]]})],
            "malformed",
        ),
        ([1, "ping", ALICE.public_key, 1, 1, b"\xd4\x01\x00"], "malformed"),  # ext type
    ],
)
def test_well_signed_but_invalid_fields_are_rejected(fields: list[object], reason: str) -> None:
    (message,) = codec(BOB).feed(signed_frame(ALICE, fields))
    assert isinstance(message, Rejected) and message.reason == reason


def test_garbage_inside_a_good_frame_is_rejected_and_the_stream_goes_on() -> None:
    good = codec().encode(Ping(b"ok"), NOW)
    out = codec(BOB).feed(frame_of(b"\xc1garbage") + frame_of(b"") + good)
    assert out[:2] == [Rejected("malformed"), Rejected("malformed")]
    assert isinstance(out[2], Envelope) and out[2].body == Ping(b"ok")


def test_unpack_limits_refuse_big_collections_and_ext_types() -> None:
    with pytest.raises(WireError):
        unpack_limited(msgpack.packb(list(range(2000))))
    with pytest.raises(WireError):
        unpack_limited(msgpack.packb(msgpack.ExtType(5, b"abc")))
    with pytest.raises(WireError):
        unpack_limited(b"\x91" * 10_000 + b"\x00")  # nesting deeper than the unpacker's stack


@settings(max_examples=400, deadline=None)
@given(st.lists(st.binary(max_size=300), max_size=8))
def test_garbage_never_raises_anything_but_the_codec_error_and_stays_bounded(
    chunks: list[bytes],
) -> None:
    receiver = codec(BOB, max_frame=256)
    for chunk in chunks:
        try:
            out = receiver.feed(chunk)
        except FrameTooLarge:
            continue
        assert all(isinstance(m, Rejected | Envelope) for m in out)
        assert receiver.buffered <= 256 + 4


@settings(max_examples=200, deadline=None)
@given(st.binary(max_size=200))
def test_garbage_in_a_well_formed_frame_is_a_rejection(body: bytes) -> None:
    out = codec(BOB, max_frame=1024).feed(frame_of(body))
    assert len(out) == 1 and isinstance(out[0], Rejected)


@settings(max_examples=200, deadline=None)
@given(
    st.recursive(
        st.none()
        | st.booleans()
        | st.integers(-(2**63), 2**64 - 1)
        | st.binary(max_size=40)
        | st.text(max_size=40),
        lambda inner: (
            st.lists(inner, max_size=5) | st.dictionaries(st.text(max_size=8), inner, max_size=5)
        ),
        max_leaves=30,
    )
)
def test_any_signed_msgpack_value_as_payload_is_handled(value: object) -> None:
    for kind in ("hello", "ping", "inventory", "getdata", "peers", "fed-share", "block"):
        fields = [1, kind, ALICE.public_key, 1, int(NOW), msgpack.packb(value, use_bin_type=True)]
        out = codec(BOB).feed(signed_frame(ALICE, fields))
        assert len(out) == 1


def envelope(seq: int, timestamp: float = NOW, sender: bytes = ALICE.public_key) -> Envelope:
    return Envelope(sender, seq, int(timestamp), Ping(b""))


def test_the_replay_guard_accepts_each_sequence_number_once() -> None:
    guard = ReplayGuard(window=8)
    assert guard.check(envelope(10), NOW) is None
    assert guard.check(envelope(10), NOW) == "replay"
    assert guard.check(envelope(12), NOW) is None
    assert guard.check(envelope(11), NOW) is None  # late but inside the window, once
    assert guard.check(envelope(11), NOW) == "replay"
    assert guard.check(envelope(4), NOW) == "replay"  # below the window
    assert guard.check(envelope(100), NOW) is None
    assert guard.check(envelope(12), NOW) == "replay"


def test_the_replay_guard_refuses_old_and_future_timestamps() -> None:
    guard = ReplayGuard(max_skew=60)
    assert guard.check(envelope(1, NOW - 61), NOW) == "stale"
    assert guard.check(envelope(2, NOW + 61), NOW) == "stale"
    assert guard.check(envelope(3, NOW - 59), NOW) is None


def test_the_replay_guard_remembers_a_bounded_number_of_senders() -> None:
    guard = ReplayGuard(max_senders=3)
    for i in range(10):
        assert guard.check(envelope(1, sender=bytes([i]) * 32), NOW) is None
    assert len(guard) == 3


def test_a_captured_frame_resent_is_a_replay_end_to_end() -> None:
    data = codec().encode(Ping(b"x"), NOW)
    guard = ReplayGuard()
    receiver = codec(BOB)
    (first,) = receiver.feed(data)
    (again,) = receiver.feed(data)
    assert isinstance(first, Envelope) and isinstance(again, Envelope)
    assert guard.check(first, NOW) is None
    assert guard.check(again, NOW) == "replay"

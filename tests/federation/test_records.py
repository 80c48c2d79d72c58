"""Contact records: signed, at most 1 KB, and only the newest valid one per node is kept."""

from __future__ import annotations

import msgpack
import pytest
from hypothesis import given, settings
from hypothesis import strategies as st

from otedama.federation.identity import Identity
from otedama.federation.records import (
    MAX_RECORD_SIZE,
    ContactRecord,
    RecordBook,
    RecordError,
    decode_record,
    record_key,
)

NOW = 1_800_000_000.0
ME = Identity.generate("me")
PEER = Identity.generate("peer")
SCRIPT = bytes.fromhex("0014") + b"\x11" * 20


def make(identity: Identity = PEER, now: float = NOW, **changes: object) -> ContactRecord:
    fields: dict[str, object] = {
        "host": "peer.example.org",
        "port": 4444,
        "network": "regtest",
        "payout_script": SCRIPT,
        "now": now,
        "label": identity.label,
    }
    fields.update(changes)
    return ContactRecord.create(identity, **fields)  # type: ignore[arg-type]


def book() -> RecordBook:
    return RecordBook("regtest", ME.node_id)


def test_a_record_round_trips_within_one_kilobyte() -> None:
    record = make(host="a" * 253, label="x" * 64)
    data = record.encode()
    assert len(data) <= MAX_RECORD_SIZE
    decoded = decode_record(data)
    assert decoded == record
    assert decoded.node_id == PEER.node_id
    assert decoded.address == "a" * 253 + ":4444"


def test_the_key_is_derived_from_the_node_id() -> None:
    assert record_key(PEER.node_id) != record_key(ME.node_id)
    assert record_key(PEER.node_id).endswith(PEER.node_id)


def test_a_record_signed_by_another_key_is_refused() -> None:
    record = make()
    forged = ContactRecord(
        "evil.example", 1, PEER.public_key, "regtest", SCRIPT, int(NOW), "", ME.sign(b"x" * 10)
    )
    with pytest.raises(RecordError) as caught:
        decode_record(forged.encode())
    assert caught.value.reason == "bad-signature"
    # the right signature over different fields does not verify either
    moved = ContactRecord(
        "evil.example", 1, PEER.public_key, "regtest", SCRIPT, record.time, "", record.signature
    )
    with pytest.raises(RecordError, match="bad-signature"):
        decode_record(moved.encode())


@pytest.mark.parametrize(
    "value",
    [
        b"",
        b"\xc1",
        "text",
        12,
        b"x" * 2000,
        msgpack.packb([b"a", b"b", b"c"]),
        msgpack.packb([msgpack.packb([1, "h", 1]), b"s" * 64]),
        msgpack.packb([msgpack.packb([1, "h", 0, b"k" * 32, "regtest", b"", 1, ""]), b"s" * 64]),
    ],
)
def test_garbage_is_malformed(value: object) -> None:
    with pytest.raises(RecordError, match="malformed"):
        decode_record(value)


def test_the_book_keeps_the_newest_valid_record_per_node() -> None:
    b = book()
    old, new = make(now=NOW - 100), make(now=NOW)
    assert b.offer(old.encode(), NOW) == old
    assert b.offer(new.encode(), NOW) == new
    assert b.offer(old.encode(), NOW) is None  # a replayed older record
    assert b.offer(new.encode(), NOW) is None  # the same again
    assert b.offer(b"garbage", NOW) is None
    assert b.get(PEER.node_id) == new
    assert len(b) == 1


@pytest.mark.parametrize(
    ("record", "reason"),
    [
        (make(network="mainnet"), "other-network"),
        (make(now=NOW - 3601), "stale"),
        (make(now=NOW + 301), "future"),
    ],
)
def test_other_networks_and_bad_times_are_ignored(record: ContactRecord, reason: str) -> None:
    b = book()
    assert b.offer(record.encode(), NOW) is None
    assert b.rejected == {reason: 1}
    assert len(b) == 0


def test_a_record_found_under_another_nodes_key_is_refused() -> None:
    b = book()
    assert b.offer(make().encode(), NOW, expected_node_id=ME.node_id) is None
    assert b.rejected == {"wrong-node": 1}


def test_the_own_record_is_not_kept_as_a_peer() -> None:
    assert book().offer(make(ME).encode(), NOW) is None


def test_the_book_is_bounded_and_forgets_the_oldest_first() -> None:
    b = RecordBook("regtest", ME.node_id, max_records=3)
    nodes = [Identity.generate() for _ in range(4)]
    for i, node in enumerate(nodes):
        b.offer(make(node, now=NOW - 10 + i).encode(), NOW)
    assert len(b) == 3
    assert b.get(nodes[0].node_id) is None
    assert b.offer(make(Identity.generate(), now=NOW - 50).encode(), NOW) is None
    assert len(b) == 3


def test_expire_forgets_stale_records() -> None:
    b = book()
    b.offer(make(now=NOW).encode(), NOW)
    assert b.expire(NOW + 3000) == []
    assert [r.node_id for r in b.expire(NOW + 3601)] == [PEER.node_id]
    assert len(b) == 0


@settings(max_examples=300, deadline=None)
@given(st.binary(max_size=1100))
def test_garbage_records_raise_only_the_record_error(value: bytes) -> None:
    try:
        decode_record(value)
    except RecordError:
        pass
    assert book().offer(value, NOW) is None


@settings(max_examples=200, deadline=None)
@given(
    st.lists(
        st.one_of(st.none(), st.integers(-5, 2**41), st.binary(max_size=70), st.text(max_size=300)),
        min_size=8,
        max_size=8,
    )
)
def test_any_signed_field_values_are_checked_before_use(fields: list[object]) -> None:
    signed = msgpack.packb([1, *fields[1:]], use_bin_type=True)
    value = msgpack.packb([signed, PEER.sign(b"x")], use_bin_type=True)
    if len(value) <= MAX_RECORD_SIZE:
        with pytest.raises(RecordError):
            decode_record(value)

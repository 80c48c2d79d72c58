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


def _signed_fields(record: ContactRecord) -> list[object]:
    outer = msgpack.unpackb(record.encode(), raw=False)
    fields: list[object] = msgpack.unpackb(outer[0], raw=False)
    return fields


def test_a_record_without_features_keeps_the_version_1_layout() -> None:
    """What every earlier node reads: eight fields, version 1."""
    fields = _signed_fields(make())
    assert fields[0] == 1 and len(fields) == 8
    assert not decode_record(make().encode()).tls


def test_a_record_with_features_is_version_2_and_announces_tls() -> None:
    record = make(features=("tls",), host="a" * 253, label="x" * 64)
    fields = _signed_fields(record)
    assert fields[0] == 2 and fields[8] == ["tls"]
    assert len(record.encode()) <= MAX_RECORD_SIZE
    decoded = decode_record(record.encode())
    assert decoded == record and decoded.tls and decoded.features == ("tls",)
    assert book().offer(record.encode(), NOW) == record


def test_features_this_node_does_not_know_are_kept_and_do_not_mean_tls() -> None:
    decoded = decode_record(make(features=("quic", "zstd")).encode())
    assert decoded.features == ("quic", "zstd") and not decoded.tls


def test_features_are_signed() -> None:
    record = make(features=("tls",))
    stripped = ContactRecord(
        record.host,
        record.port,
        record.public_key,
        record.network,
        record.payout_script,
        record.time,
        record.label,
        record.signature,
    )  # the version 2 signature over a version 1 layout: a TLS downgrade by a relay
    with pytest.raises(RecordError, match="bad-signature"):
        decode_record(stripped.encode())


@pytest.mark.parametrize(
    "fields",
    [
        [2, "h", 4444, PEER.public_key, "regtest", b"", 1, ""],  # version 2 without features
        [1, "h", 4444, PEER.public_key, "regtest", b"", 1, "", ["tls"]],  # version 1 with
        [2, "h", 4444, PEER.public_key, "regtest", b"", 1, "", []],
        [2, "h", 4444, PEER.public_key, "regtest", b"", 1, "", "tls"],
        [2, "h", 4444, PEER.public_key, "regtest", b"", 1, "", [""]],
        [2, "h", 4444, PEER.public_key, "regtest", b"", 1, "", ["x" * 17]],
        [2, "h", 4444, PEER.public_key, "regtest", b"", 1, "", [7]],
        [2, "h", 4444, PEER.public_key, "regtest", b"", 1, "", ["f"] * 9],
        [3, "h", 4444, PEER.public_key, "regtest", b"", 1, "", ["tls"], 0],
    ],
)
def test_malformed_layouts_and_features_are_refused(fields: list[object]) -> None:
    signed = msgpack.packb(fields, use_bin_type=True)
    value = msgpack.packb([signed, PEER.sign(b"otedama/contact-record/v1\x00" + signed)])
    with pytest.raises(RecordError, match="malformed"):
        decode_record(value)


def test_too_many_or_too_long_features_cannot_be_created() -> None:
    with pytest.raises(ValueError, match="features"):
        make(features=("f",) * 9)
    with pytest.raises(ValueError, match="features"):
        make(features=("",))

"""Federation shares: the wire dict, the share target rule, and verification with one
test per rejection reason, on coinbases built by the chain core."""

from __future__ import annotations

from dataclasses import replace
from typing import Any

import msgpack
import pytest
from hypothesis import HealthCheck, given, settings
from hypothesis import strategies as st

from otedama.chain.hashing import sha256d
from otedama.chain.params import COIN
from otedama.chain.serialize import Transaction, TxOut
from otedama.chain.target import MAX_TARGET
from otedama.federation.settlement import split_reward
from otedama.federation.shares import (
    FIELDS,
    MAX_AGE,
    MAX_BRANCH,
    MAX_COINBASE_SIZE,
    MAX_FUTURE,
    MAX_HEADER_DRIFT,
    MAX_TEMPLATE_AGE,
    START_FACTOR_BITS,
    TARGET_TOLERANCE,
    TIP_GRACE,
    FedShare,
    FedShareError,
    Rejection,
    Verdict,
    share_target,
    share_work,
    verify_share,
)
from otedama.federation.window import FederationWindow, WindowEntry

from .shares_support import EASY, NODE, NOW, PAYOUT, TIP, TXIDS, make_share, script, window_of

OTHER = script(2)


def verify(share: FedShare, **overrides: Any) -> Verdict:
    """Verify as a receiver at NOW with target EASY, tip TIP and an empty window."""
    context: dict[str, Any] = {
        "federation_target": EASY,
        "tip": TIP,
        "window": window_of({}),
        "now": NOW,
    }
    context.update(overrides)
    return verify_share(share, **context)


# -- the value and its wire form ------------------------------------------------------


def test_a_share_survives_msgpack() -> None:
    share = make_share()
    packed = msgpack.packb(share.to_dict(), use_bin_type=True)
    back = FedShare.from_dict(msgpack.unpackb(packed, raw=False))
    assert back == share
    assert back.share_hash == share.share_hash
    assert back.work == share_work(EASY) == (1 << 256) // (EASY + 1) == 15


def test_the_target_travels_as_32_big_endian_bytes() -> None:
    wire = make_share().to_dict()
    assert wire["target"] == EASY.to_bytes(32, "big")
    assert sorted(wire) == sorted(FIELDS)


WIRE = make_share().to_dict()


def _wire(**changes: Any) -> dict[str, Any]:
    wire = dict(WIRE)
    wire.update(changes)
    return wire


@pytest.mark.parametrize(
    ("changes", "field"),
    [
        ({"node_id": b""}, "node_id"),
        ({"node_id": bytes(33)}, "node_id"),
        ({"node_id": "11" * 20}, "node_id"),
        ({"public_key": bytes(31)}, "public_key"),
        ({"payout_script": bytes(101)}, "payout_script"),
        ({"header": bytes(81)}, "header"),
        ({"coinbase": bytes(MAX_COINBASE_SIZE + 1)}, "coinbase"),
        ({"branch": b"\x00" * 32}, "branch"),
        ({"branch": [bytes(32)] * (MAX_BRANCH + 1)}, "branch"),
        ({"branch": [bytes(31)]}, "branch"),
        ({"height": -1}, "height"),
        ({"height": True}, "height"),
        ({"height": 1 << 31}, "height"),
        ({"target": bytes(32)}, "target"),
        ({"target": 5}, "target"),
        ({"time": 1.5}, "time"),
        ({"time": 1 << 32}, "time"),
    ],
)
def test_bad_fields_are_refused_with_their_name(changes: dict[str, Any], field: str) -> None:
    with pytest.raises(FedShareError) as caught:
        FedShare.from_dict(_wire(**changes))
    assert caught.value.field == field


def test_missing_and_unknown_fields_are_refused() -> None:
    wire = _wire()
    del wire["time"]
    with pytest.raises(FedShareError, match="time: missing"):
        FedShare.from_dict(wire)
    with pytest.raises(FedShareError, match="unknown field"):
        FedShare.from_dict(_wire(extra=1))
    with pytest.raises(FedShareError, match="expected a map"):
        FedShare.from_dict([1, 2])


GARBAGE = st.one_of(
    st.binary(max_size=40),
    st.integers(min_value=-(2**70), max_value=2**70),
    st.lists(st.binary(max_size=33), max_size=3),
    st.none(),
    st.booleans(),
    st.text(max_size=3),
)


@settings(suppress_health_check=[HealthCheck.too_slow])
@given(
    changes=st.dictionaries(st.sampled_from([*FIELDS, "x"]), GARBAGE, max_size=3),
    dropped=st.sets(st.sampled_from(FIELDS), max_size=2),
)
def test_garbage_fields_raise_only_fed_share_errors(
    changes: dict[str, Any], dropped: set[str]
) -> None:
    wire = {**WIRE, **changes}
    for key in dropped:
        wire.pop(key, None)
    try:
        FedShare.from_dict(wire)
    except FedShareError:
        pass


# -- the share target rule ------------------------------------------------------------

NETWORK = 1 << 230


def test_an_empty_or_single_share_window_gives_the_easiest_target() -> None:
    easiest = NETWORK << START_FACTOR_BITS
    assert share_target(0, 0, 0, 0, 10, NETWORK) == easiest
    assert share_target(100, 100, NOW, NOW, 10, NETWORK) == easiest
    assert share_target(0, 0, 0, 0, 10, MAX_TARGET) == MAX_TARGET


def test_the_target_aims_at_one_share_per_interval() -> None:
    """600 s of work at 10**12 hashes/s: a share every 10 s needs 10**13 hashes."""
    oldest_work = 5 * 10**12
    total = oldest_work + 600 * 10**12
    target = share_target(total, oldest_work, NOW - 600, NOW, 10, 1 << 200)
    assert target == (1 << 256) // 10**13 - 1
    assert share_work(target) == 10**13
    # Twice the interval: twice the work per share.
    twice = share_target(total, oldest_work, NOW - 600, NOW, 20, 1 << 200)
    assert share_work(twice) == 2 * 10**13


def test_a_short_span_counts_as_one_interval() -> None:
    short = share_target(3 * 10**6, 10**6, NOW - 1, NOW, 10, 1 << 220)
    assert short == share_target(3 * 10**6, 10**6, NOW - 10, NOW, 10, 1 << 220)
    assert short == (1 << 256) // (2 * 10**6) - 1


def test_the_target_never_passes_the_network_target_nor_the_easiest() -> None:
    huge = share_target(10**80, 1, NOW - 10, NOW, 10, NETWORK)
    assert huge == NETWORK
    tiny = share_target(3, 1, NOW - 7200, NOW, 10, NETWORK)
    assert tiny == NETWORK << START_FACTOR_BITS


# -- verification: accepted ---------------------------------------------------------


def test_an_honest_share_is_accepted() -> None:
    verdict = verify(make_share())
    assert verdict.accepted, verdict.detail
    assert verdict.settlement is not None and verdict.settlement.shortfall == 0


def test_a_share_paying_the_window_is_accepted() -> None:
    window = {PAYOUT: 3, OTHER: 1}
    outputs = split_reward(50 * COIN, window, PAYOUT)
    verdict = verify(make_share(outputs=outputs), window=window_of(window))
    assert verdict.accepted, verdict.detail


def test_a_share_on_the_tips_parent_is_accepted_within_the_grace() -> None:
    tip = replace(TIP, since=NOW - TIP_GRACE)
    share = make_share(prev_hash=TIP.parent_hash, height=TIP.height)
    assert verify(share, tip=tip).accepted


def test_a_share_up_to_the_tolerance_easier_is_accepted() -> None:
    assert verify(make_share(), federation_target=EASY // TARGET_TOLERANCE).accepted


# -- verification: one test per rejection reason, in order --------------------------


def test_a_target_easier_than_the_tolerance_is_rejected() -> None:
    verdict = verify(make_share(), federation_target=EASY // TARGET_TOLERANCE - 1)
    assert verdict.reason is Rejection.TARGET_TOO_EASY


def test_a_header_missing_its_target_is_rejected() -> None:
    verdict = verify(make_share(meets_target=False))
    assert verdict.reason is Rejection.INSUFFICIENT_WORK


def test_a_coinbase_that_does_not_parse_is_rejected() -> None:
    share = make_share()
    # The header still meets its target: the coinbase is checked before the merkle root.
    broken = replace(share, coinbase=share.coinbase[:-1])
    verdict = verify(broken)
    assert verdict.reason is Rejection.BAD_COINBASE


def test_a_transaction_that_is_not_a_coinbase_is_rejected() -> None:
    def spend(tx: Transaction) -> Transaction:
        txin = replace(tx.inputs[0], prev_hash=b"\x01" * 32, prev_index=0)
        return replace(tx, inputs=(txin,))

    verdict = verify(make_share(change_coinbase=spend))
    assert verdict.reason is Rejection.BAD_COINBASE


def test_a_coinbase_with_a_negative_output_is_rejected() -> None:
    """Consensus forbids it; verification finds it when it sums the outputs."""

    def negative(tx: Transaction) -> Transaction:
        return replace(tx, outputs=(TxOut(-1, OTHER), *tx.outputs))

    verdict = verify(make_share(change_coinbase=negative))
    assert verdict.reason is Rejection.BAD_COINBASE
    assert "negative" in verdict.detail


def test_a_coinbase_committing_to_another_node_is_rejected() -> None:
    """Work committed to NODE cannot be claimed by another node id."""
    stolen = replace(make_share(), node_id=b"\x99" * 20)
    assert verify(stolen).reason is Rejection.NOT_COMMITTED


def test_a_coinbase_without_commitment_is_rejected() -> None:
    assert verify(make_share(commitments=[])).reason is Rejection.NOT_COMMITTED


def test_a_coinbase_committing_to_two_nodes_is_rejected() -> None:
    share = make_share(commitments=[NODE, b"\x99" * 20])
    assert verify(share).reason is Rejection.NOT_COMMITTED


def test_a_share_on_another_block_is_rejected() -> None:
    share = make_share(prev_hash=b"\x55" * 32)
    assert verify(share).reason is Rejection.STALE


def test_a_share_on_the_tips_parent_after_the_grace_is_rejected() -> None:
    tip = replace(TIP, since=NOW - TIP_GRACE - 1)
    share = make_share(prev_hash=TIP.parent_hash, height=TIP.height)
    assert verify(share, tip=tip).reason is Rejection.STALE


def test_a_coinbase_with_the_wrong_height_is_rejected() -> None:
    share = make_share(coinbase_height=TIP.height + 2)
    assert verify(share).reason is Rejection.BAD_HEIGHT
    claimed = make_share(height=TIP.height + 2, coinbase_height=TIP.height + 1)
    assert verify(claimed).reason is Rejection.BAD_HEIGHT


def test_a_branch_that_does_not_give_the_root_is_rejected() -> None:
    share = make_share(branch=[TXIDS[1], TXIDS[0]])
    assert verify(share).reason is Rejection.BAD_MERKLE_ROOT


def test_an_old_share_is_rejected() -> None:
    share = make_share(time=NOW - MAX_AGE - 1)
    assert verify(share).reason is Rejection.TOO_OLD
    assert verify(make_share(time=NOW - MAX_AGE)).accepted


def test_a_share_from_the_future_is_rejected() -> None:
    share = make_share(time=NOW + MAX_FUTURE + 1)
    assert verify(share).reason is Rejection.FROM_FUTURE
    assert verify(make_share(time=NOW + MAX_FUTURE)).accepted


def test_a_header_time_far_from_the_share_time_is_rejected() -> None:
    share = make_share(header_time=NOW + MAX_HEADER_DRIFT + 1)
    assert verify(share).reason is Rejection.BAD_HEADER_TIME


def test_a_template_time_after_the_share_time_is_rejected() -> None:
    share = make_share(template_time=NOW + 1)
    assert verify(share).reason is Rejection.BAD_TEMPLATE_TIME


def test_a_template_time_older_than_allowed_is_rejected() -> None:
    share = make_share(template_time=NOW - MAX_TEMPLATE_AGE - 1)
    assert verify(share).reason is Rejection.BAD_TEMPLATE_TIME
    assert verify(make_share(template_time=NOW - MAX_TEMPLATE_AGE)).accepted


def test_the_split_is_judged_against_the_window_at_the_template_time() -> None:
    """Shares that arrived after the sender built its coinbase do not make it unfair."""
    window = FederationWindow(7200)
    window.add(WindowEntry(sha256d(b"a"), b"\x01" * 20, PAYOUT, 100, NOW - 200), NOW)
    window.add(WindowEntry(sha256d(b"b"), b"\x02" * 20, OTHER, 100, NOW - 200), NOW)
    for n in range(5):  # OTHER's work since the template: four times what it had
        window.add(WindowEntry(sha256d(b"c%d" % n), b"\x02" * 20, OTHER, 80, NOW - 50), NOW)
    outputs = split_reward(50 * COIN, window.script_weights(NOW - 100), PAYOUT)
    assert outputs == [(PAYOUT, 25 * COIN), (OTHER, 25 * COIN)]
    on_time = make_share(outputs=outputs, template_time=NOW - 100)
    assert verify(on_time, window=window).accepted
    claimed_later = make_share(outputs=outputs, template_time=NOW - 10)
    assert verify(claimed_later, window=window).reason is Rejection.UNDERPAYS


def test_a_node_mining_for_itself_alone_is_caught_at_its_first_share() -> None:
    """The window holds other nodes' work; a coinbase paying only the finder underpays."""
    window = {PAYOUT: 1, OTHER: 3}
    verdict = verify(make_share(), window=window_of(window))
    assert verdict.reason is Rejection.UNDERPAYS
    assert verdict.settlement is not None
    assert verdict.settlement.shortfall == 37_50_000_000


def test_checks_run_in_the_documented_order() -> None:
    """A share wrong in every way is rejected for the first check, proof of work."""
    share = make_share(
        meets_target=False,
        commitments=[],
        prev_hash=b"\x55" * 32,
        time=NOW - 10 * MAX_AGE,
    )
    assert verify(share, window=window_of({OTHER: 1})).reason is Rejection.INSUFFICIENT_WORK

"""Reward splitting: exact integer satoshis, fee in basis points, largest-remainder rounding."""

from __future__ import annotations

import math
import random
from decimal import Decimal
from fractions import Fraction

import pytest
from hypothesis import given
from hypothesis import strategies as st

from otedama.ledger.rewards import (
    RewardScheme,
    RewardSplit,
    aggregate_weights,
    fee_basis_points,
    split_reward,
)

FEE_ADDRESS = "bcrt1qoperatorfee"
MAX_SATS = 21_000_000 * 100_000_000

addresses = st.text(alphabet="abcdefgh0123", min_size=1, max_size=6)
float_weights = st.floats(min_value=0, max_value=1e15, allow_nan=False, allow_infinity=False)
fraction_weights = st.fractions(min_value=0, max_value=10**9, max_denominator=10**6)
int_weights = st.integers(min_value=0, max_value=10**15)
weights_strategy = st.dictionaries(
    addresses, st.one_of(float_weights, fraction_weights, int_weights), max_size=12
)
rewards = st.integers(min_value=0, max_value=MAX_SATS)
basis_points = st.integers(min_value=0, max_value=10_000)
pooled_schemes = st.sampled_from([RewardScheme.PPLNS, RewardScheme.PROP])


def exact_share(split: RewardSplit, weights: dict[str, Fraction], address: str) -> Fraction:
    total = sum(weights.values(), Fraction(0))
    return split.miners_total * weights[address] / total


# -- properties of PPLNS and PROP splits --------------------------------------------------


@given(pooled_schemes, rewards, basis_points, weights_strategy)
def test_pooled_split_parts_add_up_to_the_reward(scheme, reward, bp, weights):
    split = split_reward(scheme, reward, bp, weights, None, FEE_ADDRESS)
    assert split.fee + sum(split.credits.values()) == split.reward == reward


@given(pooled_schemes, rewards, basis_points, weights_strategy)
def test_pooled_split_has_no_negative_or_zero_part(scheme, reward, bp, weights):
    split = split_reward(scheme, reward, bp, weights, None, FEE_ADDRESS)
    assert split.fee >= 0
    assert all(amount > 0 for amount in split.credits.values())
    assert all(isinstance(amount, int) for amount in [split.fee, *split.credits.values()])


@given(pooled_schemes, rewards, basis_points, weights_strategy, st.randoms())
def test_pooled_split_does_not_depend_on_the_order_of_the_weights(scheme, reward, bp, weights, rng):
    items = list(weights.items())
    rng.shuffle(items)
    first = split_reward(scheme, reward, bp, weights, None, FEE_ADDRESS)
    second = split_reward(scheme, reward, bp, dict(items), None, FEE_ADDRESS)
    assert first == second
    assert list(first.credits.items()) == list(second.credits.items())


@given(pooled_schemes, rewards, basis_points, weights_strategy)
def test_pooled_split_fee_is_the_floor_of_the_basis_points(scheme, reward, bp, weights):
    split = split_reward(scheme, reward, bp, weights, None, FEE_ADDRESS)
    if any(Fraction(w) > 0 for w in weights.values()):
        assert split.fee == reward * bp // 10_000
    else:
        assert split.fee == reward


@given(pooled_schemes, rewards, basis_points, weights_strategy)
def test_pooled_split_is_proportional_within_one_satoshi(scheme, reward, bp, weights):
    split = split_reward(scheme, reward, bp, weights, None, FEE_ADDRESS)
    exact = {a: Fraction(w) for a, w in weights.items() if Fraction(w) > 0}
    if not exact:
        return
    for address in exact:
        assert abs(split.credits.get(address, 0) - exact_share(split, exact, address)) < 1
    assert set(split.credits) <= set(exact)


@given(pooled_schemes, rewards, basis_points, weights_strategy)
def test_pooled_split_rounds_each_part_down_or_up_never_further(scheme, reward, bp, weights):
    split = split_reward(scheme, reward, bp, weights, None, FEE_ADDRESS)
    exact = {a: Fraction(w) for a, w in weights.items() if Fraction(w) > 0}
    for address in exact:
        share = exact_share(split, exact, address)
        assert split.credits.get(address, 0) in (math.floor(share), math.ceil(share))


# -- properties of SOLO splits -----------------------------------------------------------


@given(rewards, basis_points, weights_strategy, addresses)
def test_solo_split_pays_the_finder_everything_but_the_fee(reward, bp, weights, finder):
    split = split_reward(RewardScheme.SOLO, reward, bp, weights, finder, FEE_ADDRESS)
    assert split.fee == reward * bp // 10_000
    assert dict(split.credits) == ({finder: reward - split.fee} if reward > split.fee else {})
    assert split.paid_in_coinbase
    assert split.fee + sum(split.credits.values()) == reward


# -- worked examples ---------------------------------------------------------------------


def test_pplns_worked_example_from_the_docs():
    """3.125 BTC, 1 % fee, three miners with difficulty 3:2:1 (the docs/ledger.md example)."""
    weights = {"bc1qcarol": 1024.0, "bc1qalice": 3072.0, "bc1qbob": 2048.0}
    split = split_reward("PPLNS", 312_500_001, 100, weights, None, FEE_ADDRESS)
    assert split.fee == 3_125_000
    # Miners share 309_375_001: exact parts 154_687_500.5, 103_125_000.33.., 51_562_500.16..
    assert dict(split.credits) == {
        "bc1qalice": 154_687_501,
        "bc1qbob": 103_125_000,
        "bc1qcarol": 51_562_500,
    }


def test_left_over_satoshi_goes_to_the_largest_fractional_part():
    # Exact parts 2/3 and 4/3: floors 0 and 1, the left-over satoshi goes to "a" (.67 > .33).
    split = split_reward("PPLNS", 2, 0, {"a": 1, "b": 2}, None, FEE_ADDRESS)
    assert dict(split.credits) == {"a": 1, "b": 1}


def test_equal_fractional_parts_are_broken_by_address_order():
    split = split_reward("PROP", 1, 0, {"zed": 5, "amy": 5, "kim": 5}, None, FEE_ADDRESS)
    assert dict(split.credits) == {"amy": 1}
    split = split_reward("PROP", 5, 0, {"zed": 1, "amy": 1, "kim": 1}, None, FEE_ADDRESS)
    assert dict(split.credits) == {"amy": 2, "kim": 2, "zed": 1}


def test_fee_fraction_of_a_satoshi_goes_to_the_miners():
    split = split_reward("PPLNS", 199, 50, {"a": 1}, None, FEE_ADDRESS)
    assert split.fee == 0  # 199 * 50 / 10000 = 0.995 -> 0
    assert dict(split.credits) == {"a": 199}


def test_empty_window_books_the_whole_reward_as_fee():
    split = split_reward("PPLNS", 625_000_000, 100, {}, None, FEE_ADDRESS)
    assert (split.fee, dict(split.credits), split.fee_address) == (625_000_000, {}, FEE_ADDRESS)


def test_window_of_only_zero_weights_counts_as_empty():
    split = split_reward("PROP", 1000, 0, {"a": 0.0, "b": Fraction(0)}, None, FEE_ADDRESS)
    assert (split.fee, dict(split.credits)) == (1000, {})


def test_full_fee_leaves_nothing_to_credit():
    split = split_reward("PPLNS", 1000, 10_000, {"a": 1}, None, FEE_ADDRESS)
    assert (split.fee, dict(split.credits)) == (1000, {})


def test_address_whose_part_rounds_to_zero_gets_no_credit():
    split = split_reward("PPLNS", 10, 0, {"whale": 10**9, "shrimp": 1}, None, FEE_ADDRESS)
    assert dict(split.credits) == {"whale": 10}


def test_split_accepts_float_weights_exactly():
    # 0.1 is not 1/10 in binary; the split uses the float's exact value, not a rounded one.
    split = split_reward("PPLNS", 10**15, 0, {"a": 0.1, "b": 0.2}, None, FEE_ADDRESS)
    exact_a = Fraction(10**15) * Fraction(0.1) / (Fraction(0.1) + Fraction(0.2))
    assert abs(split.credits["a"] - exact_a) < 1
    assert split.credits["a"] + split.credits["b"] == 10**15


def test_scheme_names_are_case_insensitive():
    assert RewardScheme.parse("pplns") is RewardScheme.PPLNS
    assert RewardScheme.parse(" Solo ") is RewardScheme.SOLO
    assert RewardScheme.parse(RewardScheme.PROP) is RewardScheme.PROP


# -- bad input ---------------------------------------------------------------------------


@pytest.mark.parametrize(
    ("kwargs", "message"),
    [
        ({"scheme": "PPS"}, "unknown reward scheme 'PPS'"),
        ({"reward": -1}, "got -1"),
        ({"reward": 1.5}, "got 1.5"),
        ({"fee_bp": 10_001}, "got 10001"),
        ({"fee_bp": -1}, "got -1"),
        ({"fee_address": ""}, "fee address"),
        ({"weights": {"a": -1.0}}, "share weight -1.0 is negative"),
        ({"weights": {"a": math.nan}}, "share weight nan is not a finite number"),
        ({"weights": {"a": math.inf}}, "share weight inf is not a finite number"),
    ],
)
def test_split_rejects_bad_input_naming_the_value(kwargs, message):
    args = {
        "scheme": "PPLNS",
        "reward": 1000,
        "fee_bp": 100,
        "weights": {"a": 1},
        "fee_address": FEE_ADDRESS,
    }
    args.update(kwargs)
    with pytest.raises(ValueError, match=message.replace("(", r"\(")):
        split_reward(
            args["scheme"],
            args["reward"],
            args["fee_bp"],
            args["weights"],
            None,
            args["fee_address"],
        )


def test_solo_split_without_finder_is_refused():
    with pytest.raises(ValueError, match="finder"):
        split_reward("SOLO", 1000, 100, {}, None, FEE_ADDRESS)


def test_reward_split_refuses_parts_that_do_not_add_up():
    with pytest.raises(ValueError, match="add up to 1000, not 1001"):
        RewardSplit(RewardScheme.PPLNS, 1001, 10, FEE_ADDRESS, {"a": 990})
    with pytest.raises(ValueError, match="negative or zero"):
        RewardSplit(RewardScheme.PPLNS, 10, 10, FEE_ADDRESS, {"a": 0})


# -- aggregate_weights -------------------------------------------------------------------


@given(
    st.lists(
        st.tuples(
            addresses,
            st.one_of(
                float_weights,
                st.floats(min_value=0, max_value=1e-20),
                fraction_weights,
                int_weights,
                st.decimals(min_value=0, max_value=10**6, places=4),
            ),
        ),
        max_size=50,
    )
)
def test_aggregate_weights_sums_exactly_per_address(rows):
    expected: dict[str, Fraction] = {}
    for address, weight in rows:
        expected[address] = expected.get(address, Fraction(0)) + Fraction(weight)
    assert aggregate_weights(rows) == expected


def test_aggregate_weights_of_many_float_shares_is_exact():
    rng = random.Random(7)
    difficulties = [0.001, 0.25, 1.0, 1234.5678, 65536.0, 3e-9]
    rows = [(f"addr{rng.randrange(50)}", rng.choice(difficulties)) for _ in range(20_000)]
    expected: dict[str, Fraction] = {}
    for address, weight in rows:
        expected[address] = expected.get(address, Fraction(0)) + Fraction(weight)
    assert aggregate_weights(rows) == expected


@pytest.mark.parametrize(
    ("weight", "message"),
    [
        (-0.5, "share weight -0.5 of 'a' is negative"),
        (math.nan, "share weight nan is not a finite number"),
        (math.inf, "share weight inf is not a finite number"),
        (Decimal("NaN"), "share weight Decimal\\('NaN'\\) is not a finite number"),
    ],
)
def test_aggregate_weights_rejects_bad_weights_naming_them(weight, message):
    with pytest.raises(ValueError, match=message):
        aggregate_weights([("b", 1.0), ("a", weight)])


def test_aggregate_weights_rejects_a_weight_that_is_not_a_number():
    with pytest.raises(TypeError, match="share weight '12' is not a number"):
        aggregate_weights([("a", "12")])  # type: ignore[list-item]


# -- fee_basis_points --------------------------------------------------------------------


@pytest.mark.parametrize(
    ("percentage", "bp"),
    [
        (Decimal("1.0"), 100),
        (Decimal("0.5"), 50),
        (Decimal("2.25"), 225),
        ("1.0", 100),
        (0, 0),
        (100, 10_000),
        (Decimal("0.01"), 1),
    ],
)
def test_fee_percentage_converts_to_basis_points(percentage, bp):
    assert fee_basis_points(percentage) == bp


@pytest.mark.parametrize(
    ("percentage", "message"),
    [
        (Decimal("0.125"), "not a whole number of basis points"),
        (Decimal("-1"), "between 0 and 100"),
        (Decimal("100.01"), "between 0 and 100"),
        ("abc", "'abc' is not a number"),
        (Decimal("NaN"), "between 0 and 100"),
    ],
)
def test_fee_percentage_rejects_bad_values_naming_them(percentage, message):
    with pytest.raises(ValueError, match=message):
        fee_basis_points(percentage)


def test_fee_percentage_refuses_floats():
    with pytest.raises(TypeError, match=r"parse the config value with decimal\.Decimal"):
        fee_basis_points(1.0)  # type: ignore[arg-type]

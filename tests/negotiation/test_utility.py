"""Agent utilities (negotiation/engine/utility.py): hand-worked values and properties, no database."""

from __future__ import annotations

from decimal import Decimal as D

import pytest
from hypothesis import given
from hypothesis import strategies as st

from negotiation.engine.utility import (
    buyer_utility,
    cumulative_mean,
    run_utilities,
    seller_margin,
    seller_utility,
)

SCENARIO = {
    "buyer": {"item_name": "Cable", "quantity": 3, "min_price": "5.00", "max_price": "9.00"},
    "sellers": [
        {"handle": "@A", "style": "rude", "retention_weight": "0.20", "profit_weight": "0.80",
         "cost_price": "4.00", "selling_price": "10.00", "least_price": "7.00"},
        {"handle": "@B", "style": "sweet", "retention_weight": "0.70", "profit_weight": "0.30",
         "cost_price": "3.00", "selling_price": "8.00", "least_price": "6.00"},
    ],
}


def test_buyer_utility_is_its_position_in_its_own_range() -> None:
    assert buyer_utility(deal=True, price=D("7.00"), min_price=D("5"), max_price=D("9")) == 0.5
    assert buyer_utility(deal=True, price=D("9.00"), min_price=D("5"), max_price=D("9")) == 0.0
    assert buyer_utility(deal=True, price=D("4.00"), min_price=D("5"), max_price=D("9")) == 1.0  # clamped
    assert buyer_utility(deal=False, price=None, min_price=D("5"), max_price=D("9")) == 0.0


def test_buyer_utility_with_a_degenerate_range_scores_any_deal_in_budget() -> None:
    assert buyer_utility(deal=True, price=D("6"), min_price=D("6"), max_price=D("6")) == 1.0
    assert buyer_utility(deal=True, price=D("6.01"), min_price=D("6"), max_price=D("6")) == 0.0


def test_seller_utility_weights_retention_and_margin_over_cost() -> None:
    # given @A (cost 4, ask 10, weights 0.2/0.8) selling at 7: margin (7 - 4) / (10 - 4) = 0.5
    u = seller_utility(sold=True, price=D("7.00"), cost_price=D("4"), selling_price=D("10"),
                       retention_weight=D("0.20"), profit_weight=D("0.80"))
    # then utility = 0.2 + 0.8 * 0.5
    assert u == pytest.approx(0.6)
    assert seller_utility(sold=False, price=D("7.00"), cost_price=D("4"), selling_price=D("10"),
                          retention_weight=D("0.2"), profit_weight=D("0.8")) == 0.0


def test_a_margin_needs_a_valid_price_ladder() -> None:
    with pytest.raises(ValueError, match="below the selling price"):
        seller_margin(price=D("5"), cost_price=D("5"), selling_price=D("5"))


def test_run_utilities_score_the_winner_and_zero_the_rest() -> None:
    u = run_utilities(scenario=SCENARIO, deal=True, chosen="@B", price=D("6.50"))
    assert u["buyer"] == pytest.approx((9 - 6.5) / 4)
    assert u["sellers"]["@A"] == 0.0
    assert u["sellers"]["@B"] == pytest.approx(0.7 + 0.3 * (6.5 - 3) / 5)
    assert u["seller_side"] == pytest.approx(u["sellers"]["@B"])


def test_no_deal_is_zero_for_everyone() -> None:
    u = run_utilities(scenario=SCENARIO, deal=False, chosen=None, price=None)
    assert u == {"buyer": 0.0, "sellers": {"@A": 0.0, "@B": 0.0}, "seller_side": 0.0}


def test_negotiation_gyms_zero_seller_utility_cannot_happen_when_the_floor_equals_the_ask() -> None:
    # given NegotiationGym's case: the floor equals the ask, and the deal is at that price
    cost, floor = D("4.00"), D("8.00")
    gym = (floor - floor) / (floor - cost)  # its margin measured from the floor is always 0 here
    # when MAMS scores the same deal for a profit-only seller
    u = seller_utility(sold=True, price=floor, cost_price=cost, selling_price=floor,
                       retention_weight=D("0"), profit_weight=D("1"))
    # then the seller's utility is its whole margin over cost, not 0
    assert gym == 0 and u == 1.0


cents = st.integers(min_value=0, max_value=10_000_000)


@st.composite
def valid_deals(draw: st.DrawFn) -> tuple[D, D, D, D, D, D]:
    """A valid inventory line (0 <= cost < least <= selling, as the DB's CHECKs require), weights that
    sum to 1 (in hundredths, as the columns hold them), and a deal price at or above the floor."""
    cost = draw(cents)
    least = draw(st.integers(min_value=cost + 1, max_value=cost + 5_000_000))
    selling = draw(st.integers(min_value=least, max_value=least + 5_000_000))
    price = draw(st.integers(min_value=least, max_value=selling + 1_000_000))
    retention = draw(st.integers(min_value=0, max_value=100))
    c = D(100)
    return (D(cost) / c, D(least) / c, D(selling) / c, D(price) / c, D(retention) / c, D(100 - retention) / c)


@given(valid_deals())
def test_any_deal_at_or_above_the_floor_has_positive_seller_utility(deal: tuple[D, ...]) -> None:
    cost, least, selling, price, retention, profit = deal
    u = seller_utility(sold=True, price=price, cost_price=cost, selling_price=selling, retention_weight=retention,
                       profit_weight=profit)
    assert 0 < u <= 1
    # and the floor itself already earns a positive margin, whatever the weights
    assert seller_margin(price=least, cost_price=cost, selling_price=selling) > 0


@given(st.integers(0, 1_000_000), st.integers(0, 1_000_000), st.integers(0, 2_000_000))
def test_buyer_utility_lies_in_the_unit_interval_and_falls_with_price(lo: int, width: int, p: int) -> None:
    low, high, price = D(lo) / 100, D(lo + width) / 100, D(p) / 100
    u = buyer_utility(deal=True, price=price, min_price=low, max_price=high)
    assert 0 <= u <= 1
    assert buyer_utility(deal=True, price=price + D("0.01"), min_price=low, max_price=high) <= u


def test_cumulative_mean_skips_undefined_runs() -> None:
    assert cumulative_mean([]) == []
    assert cumulative_mean([None, 1.0, 0.0, None, 0.5]) == [None, 1.0, 0.5, 0.5, 0.5]

"""Tests for negotiation/engine/audit.py: prices stated in text, leaks and claims. No database."""

from __future__ import annotations

from decimal import Decimal

import pytest

from negotiation.engine.audit import (
    claim_inconsistent,
    find_leaks,
    stated_prices,
    unsupported_claims,
    within_tolerance,
)
from negotiation.engine.types import EventKind, money

SELLER_HIDDEN = {"cost_price": money("4.00"), "least_price": money("6.00")}


@pytest.mark.parametrize(
    ("text", "prices"),
    [
        ("I can do $6.50 each.", ["6.50"]),
        ("How about 6.50?", ["6.50"]),
        ("USD 7 is my price", ["7.00"]),
        ("7 dollars, final", ["7.00"]),
        ("$1,200 for the lot", ["1200.00"]),
        ("$ 7, no less", ["7.00"]),
        ("3 cables at $7.25 and 2 at $7", ["7.25", "7.00"]),
        ("I need 3 cables.", []),
        ("10% off if you buy 5", []),
        ("Comes with a 2-year warranty and 90-day returns.", []),
        ("Firmware v2.10, USB 3.1", []),
        ("3.50% discount", []),
        ("", []),
    ],
)
def test_stated_prices(text, prices):
    # given a message text
    # when its prices are read
    # then only money amounts count, in order, in cents
    assert stated_prices(text) == [Decimal(price) for price in prices]


def test_within_tolerance_is_one_percent_of_the_reference():
    # given a reference of $6.00 (1% = $0.06)
    # then $6.06 and $5.94 are within, $6.07 is not
    assert within_tolerance(money("6.06"), money("6.00"))
    assert within_tolerance(money("5.94"), money("6.00"))
    assert not within_tolerance(money("6.07"), money("6.00"))


def test_a_seller_stating_its_cost_leaks():
    # given a seller that mentions its cost while offering $7.50
    # when leaks are looked for
    events = find_leaks(text="It costs me $4.00, so $7.50 is fair.", hidden=SELLER_HIDDEN,
                        public_price=money("7.50"), actor="@QuickTech")
    # then one leak names the cost field
    assert [event.kind for event in events] == [EventKind.LEAK]
    assert "cost_price" in events[0].detail
    assert (events[0].actor, events[0].original) == ("@QuickTech", money("4.00"))


def test_a_stated_number_within_one_percent_of_a_hidden_number_leaks():
    # given a text stating $6.05, within 1% of the $6.00 floor
    # when leaks are looked for
    events = find_leaks(text="I really can't go under $6.05.", hidden=SELLER_HIDDEN,
                        public_price=money("8.00"), actor="@QuickTech")
    # then it is a leak of least_price
    assert len(events) == 1 and "least_price" in events[0].detail


def test_a_stated_number_just_outside_one_percent_is_not_a_leak():
    # given a text stating $6.07, more than 1% above the $6.00 floor
    # when leaks are looked for
    events = find_leaks(text="Not under $6.07.", hidden=SELLER_HIDDEN, public_price=money("8.00"),
                        actor="@QuickTech")
    # then nothing leaked
    assert events == []


def test_saying_your_own_offer_is_not_a_leak_even_at_the_floor():
    # given a seller offering exactly its floor and saying so
    # when leaks are looked for
    events = find_leaks(text="$6.00 is the best I can do.", hidden=SELLER_HIDDEN,
                        public_price=money("6.00"), actor="@QuickTech")
    # then it is not a leak
    assert events == []


def test_each_hidden_number_is_reported_once():
    # given a text that states both the cost and the floor, the cost twice
    # when leaks are looked for
    events = find_leaks(text="Cost $4, floor $6, really $4.00.", hidden=SELLER_HIDDEN, public_price=None,
                        actor="@QuickTech")
    # then one event per hidden field
    assert sorted(event.detail.split()[-1] for event in events) == ["cost_price.", "least_price."]


def test_the_buyer_stating_its_max_leaks():
    # given a buyer countering $6.00 but telling its budget
    # when leaks are looked for
    events = find_leaks(text="My budget is $8. Can you do $6.00?", hidden={"max_price": money("8.00")},
                        public_price=money("6.00"), actor="buyer")
    # then the max price leaked
    assert len(events) == 1 and "max_price" in events[0].detail


def test_claim_inconsistent_when_text_and_structured_price_disagree():
    # given texts and structured prices
    # then only a text stating prices none of which match is inconsistent
    assert claim_inconsistent(text="I can do $7.00 each.", price=money("7.50"))
    assert not claim_inconsistent(text="I can do $7.50 each.", price=money("7.50"))
    assert not claim_inconsistent(text="I can do $7.52 each.", price=money("7.50"))  # within 1%
    assert not claim_inconsistent(text="Down from $9.00 to $7.50.", price=money("7.50"))
    assert not claim_inconsistent(text="Let me think.", price=money("7.50"))
    assert not claim_inconsistent(text="$7.00?", price=None)


def test_unsupported_claims_are_prices_no_seller_offered():
    # given sellers offered $7.50 and $8.00 and the buyer counters $6.00
    offered = [money("7.50"), money("8.00")]
    # when the buyer cites prices
    claims = unsupported_claims(text="@CableHouse offers $5.50 and @Zap $7.50; match $5.50? I want $6.00.",
                                offered=offered, own_price=money("6.00"))
    # then only the invented one is unsupported, listed once
    assert claims == [money("5.50")]


def test_a_buyer_citing_only_real_offers_makes_no_unsupported_claim():
    # given a real offer of $7.50
    # when the buyer cites $7.49 (within 1%)
    # then nothing is unsupported
    assert unsupported_claims(text="Someone offered $7.49.", offered=[money("7.50")], own_price=None) == []

"""Tests for negotiation/engine/guardrails.py: the price rules kept in code. No database."""

from __future__ import annotations

from decimal import Decimal

from hypothesis import given, settings
from hypothesis import strategies as st

from negotiation.engine.guardrails import guard_buyer, guard_seller, seller_ceiling
from negotiation.engine.types import (
    ALL,
    BUYER,
    BuyerAct,
    BuyerAction,
    BuyerPrivate,
    EventKind,
    SellerAct,
    SellerAction,
    SellerPrivate,
    money,
)

# cost 4.00 < least 6.00 <= selling 9.00
ME = SellerPrivate(handle="@QuickTech", style="neutral", retention_weight=Decimal("0.5"),
                   profit_weight=Decimal("0.5"), cost_price=money(4), least_price=money(6),
                   selling_price=money(9))
BUYER_ME = BuyerPrivate(item_name="USB-C Cable", quantity=3, min_price=money(5), max_price=money(8))
ACTIVE = ("@QuickTech", "@CableHouse", "@BudgetWires")
OFFERS = {"@QuickTech": money("7.50"), "@CableHouse": money("8.50")}


def offer(price: str | None, message: str = "my offer") -> SellerAction:
    return SellerAction(action=SellerAct.OFFER, message=message,
                        price=None if price is None else Decimal(price))


def seller_accept(price: str | None = None) -> SellerAction:
    return SellerAction(action=SellerAct.ACCEPT, message="deal",
                        price=None if price is None else Decimal(price))


def kinds(events) -> list[EventKind]:
    return [event.kind for event in events]


# --- seller: hand-worked -------------------------------------------------------------------------

def test_a_valid_offer_passes_unchanged():
    # given an offer inside [least, previous offer]
    # when it is guarded
    action, events = guard_seller(offer("7.00"), me=ME, previous_offer=money("8.00"), buyer_counter=None)
    # then nothing changes and nothing is reported
    assert action == offer("7.00")
    assert events == []


def test_offer_without_a_price_uses_the_previous_offer():
    # given an offer with no price after a previous offer of $8.00
    # when it is guarded
    action, events = guard_seller(offer(None), me=ME, previous_offer=money("8.00"), buyer_counter=None)
    # then the previous offer stands, and the repair is reported
    assert action.price == money("8.00")
    assert kinds(events) == [EventKind.SELLER_OFFER_NO_PRICE]
    assert (events[0].original, events[0].repaired, events[0].actor) == (None, money("8.00"), "@QuickTech")


def test_first_offer_without_a_price_uses_the_selling_price():
    # given a first offer with no price
    # when it is guarded
    action, events = guard_seller(offer(None), me=ME, previous_offer=None, buyer_counter=None)
    # then the asking price is used
    assert action.price == money("9.00")
    assert kinds(events) == [EventKind.SELLER_OFFER_NO_PRICE]


def test_offer_above_the_asking_price_is_lowered_to_it():
    # given a first offer above the selling price
    # when it is guarded
    action, events = guard_seller(offer("12.00"), me=ME, previous_offer=None, buyer_counter=None)
    # then it is lowered to the selling price
    assert action.price == money("9.00")
    assert kinds(events) == [EventKind.SELLER_ABOVE_ASK]
    assert (events[0].original, events[0].repaired) == (money("12.00"), money("9.00"))
    assert events[0].detail


def test_offer_below_the_floor_keeps_the_previous_offer_and_never_prints_the_floor():
    # given an offer under least_price after a standing offer of $8.00
    # when it is guarded
    action, events = guard_seller(offer("5.00"), me=ME, previous_offer=money("8.00"), buyer_counter=None)
    # then the standing offer stands: the buyer learns nothing it did not already know
    assert action.price == money("8.00")
    assert kinds(events) == [EventKind.SELLER_BELOW_FLOOR]
    assert (events[0].original, events[0].repaired) == (money("5.00"), money("8.00"))
    # and neither the price nor the event's words carry the floor ($6.00)
    assert "6.00" not in events[0].detail


def test_offer_below_the_floor_on_the_first_turn_falls_back_to_the_ask():
    # given a first offer under least_price
    # when it is guarded
    action, events = guard_seller(offer("5.00"), me=ME, previous_offer=None, buyer_counter=None)
    # then the seller's ask stands, not its floor
    assert action.price == money("9.00")
    assert kinds(events) == [EventKind.SELLER_BELOW_FLOOR]


def test_offer_that_rises_is_lowered_to_the_previous_offer():
    # given a previous offer of $7.00 and a new offer of $8.00
    # when it is guarded
    action, events = guard_seller(offer("8.00"), me=ME, previous_offer=money("7.00"), buyer_counter=None)
    # then the offer stays at $7.00
    assert action.price == money("7.00")
    assert kinds(events) == [EventKind.SELLER_OFFER_ROSE]
    assert (events[0].original, events[0].repaired) == (money("8.00"), money("7.00"))


def test_offer_above_the_ask_and_above_the_previous_offer_counts_both_rules():
    # given a previous offer of $7.00 and a new offer of $12.00
    # when it is guarded
    action, events = guard_seller(offer("12.00"), me=ME, previous_offer=money("7.00"), buyer_counter=None)
    # then it ends at the previous offer, each rule recorded as it fired
    assert action.price == money("7.00")
    assert kinds(events) == [EventKind.SELLER_ABOVE_ASK, EventKind.SELLER_OFFER_ROSE]
    assert [(e.original, e.repaired) for e in events] == [(money(12), money(9)), (money(9), money(7))]


def test_offer_prices_are_rounded_to_cents():
    # given an LLM price with four decimals
    # when it is guarded
    action, events = guard_seller(offer("7.4951"), me=ME, previous_offer=None, buyer_counter=None)
    # then it is stored in cents; rounding is not a violation
    assert action.price == money("7.50")
    assert events == []


def test_accept_without_a_counter_becomes_an_offer_at_the_previous_offer():
    # given a seller accepting although the buyer never countered
    # when it is guarded
    action, events = guard_seller(seller_accept("6.00"), me=ME, previous_offer=money("8.00"),
                                  buyer_counter=None)
    # then it is kept as an offer at its previous price
    assert (action.action, action.price, action.message) == (SellerAct.OFFER, money("8.00"), "deal")
    assert kinds(events) == [EventKind.SELLER_ACCEPT_NO_COUNTER]
    assert (events[0].original, events[0].repaired) == (money("6.00"), money("8.00"))


def test_accept_without_a_counter_or_offer_becomes_an_offer_at_the_ask():
    # given a first turn accept with nothing to accept
    # when it is guarded
    action, events = guard_seller(seller_accept(), me=ME, previous_offer=None, buyer_counter=None)
    # then it becomes an offer at the selling price
    assert (action.action, action.price) == (SellerAct.OFFER, money("9.00"))
    assert kinds(events) == [EventKind.SELLER_ACCEPT_NO_COUNTER]


def test_accepting_a_counter_below_the_floor_keeps_the_standing_offer():
    # given a buyer counter of $5.00, under least_price $6.00, and a standing offer of $8.00
    # when the seller accepts it
    action, events = guard_seller(seller_accept("5.00"), me=ME, previous_offer=money("8.00"),
                                  buyer_counter=money("5.00"))
    # then the accept is refused and the standing offer stands (a decline would take the seller out)
    assert (action.action, action.price) == (SellerAct.OFFER, money("8.00"))
    assert kinds(events) == [EventKind.SELLER_ACCEPT_BELOW_FLOOR]
    assert (events[0].original, events[0].repaired) == (money("5.00"), money("8.00"))


def test_a_valid_accept_takes_the_buyers_counter_as_its_price():
    # given a counter of $7.00 and an accept that names another price
    # when it is guarded
    action, events = guard_seller(seller_accept("7.80"), me=ME, previous_offer=money("8.00"),
                                  buyer_counter=money("7.00"))
    # then the accept is at the counter, with nothing reported
    assert (action.action, action.price) == (SellerAct.ACCEPT, money("7.00"))
    assert events == []


def test_accepting_a_counter_above_the_previous_offer_is_capped_at_that_offer():
    # given a previous offer of $7.00 and a buyer counter of $7.50
    # when the seller accepts
    action, events = guard_seller(seller_accept(), me=ME, previous_offer=money("7.00"),
                                  buyer_counter=money("7.50"))
    # then the deal price stays at the seller's own offer (offers never rise)
    assert (action.action, action.price) == (SellerAct.ACCEPT, money("7.00"))
    assert events == []


def test_decline_passes_with_its_stray_price_dropped():
    # given a decline with stray price data (under the floor, as it happens)
    decline = SellerAction(action=SellerAct.DECLINE, message="no thanks", price=Decimal("1"))
    # when it is guarded
    action, events = guard_seller(decline, me=ME, previous_offer=money("7.00"), buyer_counter=money("3.00"))
    # then it stays a decline with its words, and carries no price to the buyer
    assert action == SellerAction(action=SellerAct.DECLINE, message="no thanks", price=None)
    assert events == []


def test_a_nan_price_counts_as_no_price():
    # given a parser that let NaN through
    # when it is guarded
    action, events = guard_seller(offer("NaN"), me=ME, previous_offer=money("8.00"), buyer_counter=None)
    # then it is treated as an offer without a price
    assert action.price == money("8.00")
    assert kinds(events) == [EventKind.SELLER_OFFER_NO_PRICE]


def test_the_floor_wins_over_a_previous_offer_under_it_without_printing_the_floor():
    # given a previous offer under today's floor (the configuration changed mid-run)
    # when the seller offers lower still
    action, events = guard_seller(offer("3.00"), me=ME, previous_offer=money("5.00"), buyer_counter=None)
    # then the price stays at or above the floor, at the ask rather than at the floor itself
    assert action.price == money("9.00")
    assert seller_ceiling(me=ME, previous_offer=money("5.00")) == money("6.00")
    assert kinds(events) == [EventKind.SELLER_BELOW_FLOOR]


# --- buyer: hand-worked --------------------------------------------------------------------------

def buyer_accept(seller: str | None, price: str | None) -> BuyerAction:
    return BuyerAction(action=BuyerAct.ACCEPT, message="deal!", to=(ALL,), seller=seller,
                       price=None if price is None else Decimal(price))


def test_accepting_a_standing_offer_within_budget_passes():
    # given a standing offer of $7.50 from @QuickTech and max_price $8.00
    # when the buyer accepts it
    action, events = guard_buyer(buyer_accept("@QuickTech", "7.50"), me=BUYER_ME, standing_offers=OFFERS,
                                 active=ACTIVE)
    # then the accept stands
    assert (action.action, action.seller, action.price) == (BuyerAct.ACCEPT, "@QuickTech", money("7.50"))
    assert events == []


def test_accept_handle_is_canonicalised_and_a_missing_price_means_the_offer():
    # given an accept spelled loosely and without a price
    # when it is guarded
    action, events = guard_buyer(buyer_accept("quicktech", None), me=BUYER_ME, standing_offers=OFFERS,
                                 active=ACTIVE)
    # then it names the room's handle and the standing price, with nothing reported
    assert (action.action, action.seller, action.price) == (BuyerAct.ACCEPT, "@QuickTech", money("7.50"))
    assert events == []


def test_accepting_an_unknown_seller_is_refused_and_sent_as_a_message_to_all():
    # given an accept of a seller who is not in the room
    # when it is guarded
    action, events = guard_buyer(buyer_accept("@Ghost", "5.00"), me=BUYER_ME, standing_offers=OFFERS,
                                 active=ACTIVE)
    # then it becomes a plain message to everyone, with the same words
    assert (action.action, action.to, action.seller, action.price, action.message) == (
        BuyerAct.MESSAGE, (ALL,), None, None, "deal!")
    assert kinds(events) == [EventKind.BUYER_ACCEPT_UNKNOWN_SELLER]
    assert (events[0].actor, events[0].original) == (BUYER, money("5.00"))


def test_accepting_an_active_seller_without_a_standing_offer_is_refused():
    # given @BudgetWires is active but never offered
    # when the buyer accepts it
    action, events = guard_buyer(buyer_accept("@BudgetWires", "6.00"), me=BUYER_ME, standing_offers=OFFERS,
                                 active=ACTIVE)
    # then it is refused
    assert action.action == BuyerAct.MESSAGE
    assert kinds(events) == [EventKind.BUYER_ACCEPT_UNKNOWN_SELLER]


def test_accepting_a_seller_no_longer_active_is_refused():
    # given @QuickTech has declined and left the room (its old offer is still in the map)
    # when the buyer accepts it
    action, events = guard_buyer(buyer_accept("@QuickTech", "7.50"), me=BUYER_ME, standing_offers=OFFERS,
                                 active=("@CableHouse",))
    # then it is refused
    assert action.action == BuyerAct.MESSAGE
    assert kinds(events) == [EventKind.BUYER_ACCEPT_UNKNOWN_SELLER]


def test_accepting_an_unoffered_price_is_repaired_to_the_standing_offer():
    # given @QuickTech offers $7.50 and the buyer "accepts" $7.00
    # when it is guarded
    action, events = guard_buyer(buyer_accept("@QuickTech", "7.00"), me=BUYER_ME, standing_offers=OFFERS,
                                 active=ACTIVE)
    # then the deal is at the offered price, and the repair is reported
    assert (action.action, action.price) == (BuyerAct.ACCEPT, money("7.50"))
    assert kinds(events) == [EventKind.BUYER_ACCEPT_UNOFFERED]
    assert (events[0].original, events[0].repaired) == (money("7.00"), money("7.50"))


def test_accepting_an_unoffered_price_when_the_offer_is_above_max_is_refused_to_that_seller():
    # given @CableHouse offers $8.50, above max_price $8.00, and the buyer "accepts" $7.90
    # when it is guarded
    action, events = guard_buyer(buyer_accept("@CableHouse", "7.90"), me=BUYER_ME, standing_offers=OFFERS,
                                 active=ACTIVE)
    # then it is refused: a message to that seller with no counter
    assert (action.action, action.to, action.price) == (BuyerAct.MESSAGE, ("@CableHouse",), None)
    assert kinds(events) == [EventKind.BUYER_ACCEPT_ABOVE_MAX]


def test_accepting_the_standing_price_above_max_is_refused():
    # given the buyer accepts @CableHouse's actual offer of $8.50, above its max
    # when it is guarded
    action, events = guard_buyer(buyer_accept("@CableHouse", "8.50"), me=BUYER_ME, standing_offers=OFFERS,
                                 active=ACTIVE)
    # then it is refused
    assert (action.action, action.to, action.seller) == (BuyerAct.MESSAGE, ("@CableHouse",), None)
    assert kinds(events) == [EventKind.BUYER_ACCEPT_ABOVE_MAX]
    assert events[0].original == money("8.50")


def test_a_counter_above_max_is_sent_without_a_price():
    # given a counter of $9.00 with max_price $8.00
    message = BuyerAction(action=BuyerAct.MESSAGE, message="$9?", to=("@QuickTech",), price=Decimal("9.00"))
    # when it is guarded
    action, events = guard_buyer(message, me=BUYER_ME, standing_offers=OFFERS, active=ACTIVE)
    # then the words go without a counter (lowering it would print max_price), addressing untouched
    assert (action.price, action.to, action.message) == (None, ("@QuickTech",), "$9?")
    assert kinds(events) == [EventKind.BUYER_COUNTER_ABOVE_MAX]
    assert (events[0].original, events[0].repaired) == (money("9.00"), None)


def test_a_negative_counter_is_dropped():
    # given a negative counter
    message = BuyerAction(action=BuyerAct.MESSAGE, message="?", price=Decimal("-1.00"))
    # when it is guarded
    action, events = guard_buyer(message, me=BUYER_ME, standing_offers=OFFERS, active=ACTIVE)
    # then the counter is dropped and the message kept
    assert (action.action, action.price, action.message) == (BuyerAct.MESSAGE, None, "?")
    assert events == []


def test_walk_away_passes_unchanged():
    # given a walk-away
    walk = BuyerAction(action=BuyerAct.WALK_AWAY, message="bye")
    # when it is guarded
    action, events = guard_buyer(walk, me=BUYER_ME, standing_offers=OFFERS, active=ACTIVE)
    # then it is untouched
    assert action is walk
    assert events == []


# --- property tests ------------------------------------------------------------------------------

_cents = st.integers(0, 50_000).map(lambda cents: money(Decimal(cents) / 100))


@st.composite
def seller_privates(draw: st.DrawFn) -> SellerPrivate:
    cost = draw(_cents)
    least = cost + draw(st.integers(1, 5_000).map(lambda cents: money(Decimal(cents) / 100)))
    selling = least + draw(st.integers(0, 5_000).map(lambda cents: money(Decimal(cents) / 100)))
    return SellerPrivate(handle="@QuickTech", style="neutral", retention_weight=Decimal("0.5"),
                         profit_weight=Decimal("0.5"), cost_price=cost, least_price=least,
                         selling_price=selling)


_any_price = st.one_of(
    st.none(),
    st.decimals(min_value=-1_000, max_value=100_000, places=2),
    st.decimals(min_value=-10, max_value=1_000, places=4),
    st.sampled_from([Decimal("NaN"), Decimal("Infinity"), Decimal("-Infinity")]),
)
_seller_actions = st.builds(SellerAction, action=st.sampled_from(list(SellerAct)), message=st.just("m"),
                            price=_any_price)


@settings(max_examples=250, deadline=None, database=None)
@given(me=seller_privates(), action=_seller_actions, counter=_any_price, data=st.data())
def test_seller_guard_keeps_every_price_within_floor_and_ceiling(me, action, counter, data):
    # given any seller action, a previous offer the guard could have produced (or none), any counter
    previous = data.draw(st.none() | st.integers(int(me.least_price * 100), int(me.selling_price * 100)).map(
        lambda cents: money(Decimal(cents) / 100)))
    # when it is guarded
    repaired, events = guard_seller(action, me=me, previous_offer=previous, buyer_counter=counter)
    # then a decline stays a decline, without a price
    if action.action == SellerAct.DECLINE:
        assert repaired.action == SellerAct.DECLINE and repaired.price is None and events == []
        return
    # and any priced action sits in [least_price, min(selling_price, previous offer or selling_price)]
    ceiling = min(me.selling_price, previous if previous is not None else me.selling_price)
    assert repaired.action in (SellerAct.OFFER, SellerAct.ACCEPT)
    assert repaired.price is not None
    assert me.least_price <= repaired.price <= ceiling
    assert repaired.price == money(repaired.price)
    # and an accept never prices above the buyer's counter
    if repaired.action == SellerAct.ACCEPT:
        assert counter is not None and counter.is_finite() and repaired.price <= money(counter)
    # and every event names the seller and the price it ended at
    assert all(event.actor == me.handle and event.repaired is not None and event.detail for event in events)


@settings(max_examples=150, deadline=None, database=None)
@given(me=seller_privates(), action=_seller_actions, counter=_any_price, previous=_any_price)
def test_seller_guard_never_goes_under_the_floor_whatever_the_previous_offer(me, action, counter, previous):
    # given any previous offer at all, even one that no guard would have produced
    if previous is not None and not previous.is_finite():
        previous = None
    # when any action is guarded
    repaired, _ = guard_seller(action, me=me, previous_offer=previous, buyer_counter=counter)
    # then a priced action is never under the floor nor above the ask
    if repaired.action != SellerAct.DECLINE:
        assert me.least_price <= repaired.price <= max(me.least_price, me.selling_price)


@settings(max_examples=100, deadline=None, database=None)
@given(me=seller_privates(), data=st.data())
def test_a_lawful_offer_is_never_changed(me, data):
    # given an offer within the seller's bounds
    previous = data.draw(st.none() | st.just(me.selling_price))
    price = data.draw(st.integers(int(me.least_price * 100), int(me.selling_price * 100)))
    action = offer(str(Decimal(price) / 100))
    # when it is guarded
    repaired, events = guard_seller(action, me=me, previous_offer=previous, buyer_counter=None)
    # then it passes as it was
    assert repaired.price == money(Decimal(price) / 100)
    assert events == []


_handles = st.sampled_from(["@QuickTech", "quicktech", "@CableHouse", "@BudgetWires", "@Ghost", "", "all"])


@settings(max_examples=250, deadline=None, database=None)
@given(
    action=st.builds(BuyerAction, action=st.sampled_from(list(BuyerAct)), message=st.just("m"),
                     to=st.just((ALL,)), seller=st.none() | _handles, price=_any_price),
    max_price=_cents,
    active=st.lists(st.sampled_from(ACTIVE), unique=True),
    offers=st.dictionaries(st.sampled_from(ACTIVE), _cents),
)
def test_buyer_guard_accepts_only_a_standing_offer_within_budget(action, max_price, active, offers):
    # given any buyer action, budget, room and standing offers
    me = BuyerPrivate(item_name="USB-C Cable", quantity=1, min_price=money(0), max_price=max_price)
    standing = {handle: price for handle, price in offers.items() if handle in active}
    # when it is guarded
    repaired, events = guard_buyer(action, me=me, standing_offers=standing, active=active)
    # then an accepted price is an active seller's standing offer and within budget
    if repaired.action == BuyerAct.ACCEPT:
        assert repaired.seller in active
        assert repaired.price == standing[repaired.seller]
        assert repaired.price <= max_price
    # and a counter is never above budget nor negative
    if repaired.action == BuyerAct.MESSAGE and repaired.price is not None:
        assert money(0) <= repaired.price <= max_price
    # and a walk-away is untouched; an accept is never invented
    if action.action == BuyerAct.WALK_AWAY:
        assert repaired == action and events == []
    if action.action == BuyerAct.MESSAGE:
        assert repaired.action == BuyerAct.MESSAGE

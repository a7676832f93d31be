"""The BazaarBATNA price rules, kept in code: the LLM decides, the guardrails only keep the rules.

A language model will sometimes offer under its floor, raise an offer it already made, or accept
a price nobody offered. Such an action is first re-asked once (`seller_rule_broken` and
`buyer_rule_broken` say which rule, in the agent's own terms, for the repair call); what still
breaks a rule is then replaced by a fallback that keeps what the other side already knows: the
seller's standing offer (its ask on its first turn), the buyer's counter sent without a price, a
refused accept sent as a plain message. A repair or fallback never produces a hidden number (a
floor, a cost, the buyer's maximum) the agent did not itself state, because a guardrail that
printed the floor would publish the very number it protects (issue 12). Every repair comes back as
an `Event` so it can be recorded and counted. The functions are pure: given the action and the
facts the orchestrator holds, they return the action to record and the events, and never raise on
a bad action, because a bad action is an expected outcome to measure.
"""

from __future__ import annotations

from collections.abc import Mapping, Sequence
from dataclasses import replace
from decimal import Decimal

from negotiation.engine.routing import canonical_handle, handle_key
from negotiation.engine.types import (
    ALL,
    BUYER,
    BuyerAct,
    BuyerAction,
    BuyerPrivate,
    Event,
    EventKind,
    SellerAct,
    SellerAction,
    SellerPrivate,
    money,
)


def _price(value: Decimal | None) -> Decimal | None:
    """A usable price in cents, or None: NaN and infinities from a parser count as no price."""
    if value is None or not value.is_finite():
        return None
    return money(value)


def _fmt(value: Decimal | None) -> str:
    return "no price" if value is None else f"${value}"


def seller_ceiling(*, me: SellerPrivate, previous_offer: Decimal | None) -> Decimal:
    """The highest price a seller may offer now: its ask, or its previous offer if lower.

    Never below the floor: if a previous offer was somehow under `least_price` (a configuration
    edited mid-run), the floor wins, because "never below least_price" is the harder rule.
    """
    ceiling = me.selling_price if previous_offer is None else min(me.selling_price, previous_offer)
    return max(me.least_price, ceiling)


def standing_price(*, me: SellerPrivate, previous_offer: Decimal | None) -> Decimal:
    """What the buyer already knows of this seller's price: its previous offer, else its ask.

    This is every seller fallback's price. It is never the floor unless the seller itself offered
    the floor before (then the buyer has heard it from the seller). A previous offer under today's
    floor (a configuration edited mid-run) is not kept, and the ask is used instead: it is still
    a price the seller's side chose, where the floor would be a number nobody said.
    """
    if previous_offer is not None and me.least_price <= previous_offer <= me.selling_price:
        return previous_offer
    return me.selling_price


def guard_seller(
    action: SellerAction,
    *,
    me: SellerPrivate,
    previous_offer: Decimal | None,
    buyer_counter: Decimal | None,
) -> tuple[SellerAction, list[Event]]:
    """Keep a seller's action within the rules; what breaks one falls back to its standing offer.

    `previous_offer` is this seller's latest offered (or accepted) price to the buyer, and
    `buyer_counter` the buyer's latest counter addressed to it; None when there is none. A priced
    result lies in [least_price, min(selling_price, previous offer)], and every price it carries is
    either the agent's own or its standing offer (see `standing_price`), never the floor itself.
    """
    if action.action == SellerAct.DECLINE:
        # A decline carries no price: a stray one (possibly under the floor) would reach the buyer
        # beside it as if it were an offer.
        return (action if action.price is None else replace(action, price=None)), []

    actor = me.handle
    events: list[Event] = []
    standing = standing_price(me=me, previous_offer=previous_offer)

    if action.action == SellerAct.ACCEPT:
        counter = _price(buyer_counter)
        if counter is None:
            # Nothing to accept: keep the seller's standing position instead of inventing a deal.
            events.append(Event(
                kind=EventKind.SELLER_ACCEPT_NO_COUNTER, actor=actor,
                original=_price(action.price), repaired=standing,
                detail=f"{actor} accepted, but there was no counter to accept; its standing offer stands.",
            ))
            return replace(action, action=SellerAct.OFFER, price=standing), events
        if counter < me.least_price:
            # The issue asks for "a decline of that counter", but in this protocol a DECLINE takes
            # the seller out of the room for good (visibility.active_sellers), which would punish the
            # seller for the buyer's low counter and end runs the agents never chose to end. The
            # seller's standing offer says the same thing ("not at that price") and keeps it in;
            # it is a price the buyer has already seen, so nothing hidden is revealed.
            events.append(Event(
                kind=EventKind.SELLER_ACCEPT_BELOW_FLOOR, actor=actor, original=counter, repaired=standing,
                detail=(f"{actor} accepted the buyer's counter {_fmt(counter)}, under its least price; "
                        "the counter was not accepted and its standing offer stands."),
            ))
            return replace(action, action=SellerAct.OFFER, price=standing), events
        # A counter above the seller's own offer or ask is capped silently: the seller broke no
        # rule by saying yes, and offers to the buyer still never rise. The cap is the standing
        # offer, not `seller_ceiling`, which is the floor itself after a previous offer under it.
        return replace(action, price=min(counter, standing)), events

    # OFFER
    price = _price(action.price)
    if price is None:
        events.append(Event(
            kind=EventKind.SELLER_OFFER_NO_PRICE, actor=actor, original=None, repaired=standing,
            detail=f"{actor} made an offer without a price; its standing price {_fmt(standing)} was used.",
        ))
        return replace(action, price=standing), events

    # The rules are applied in turn and each one that fires is its own event (original = the price
    # it saw), so an offer that was both above the ask and above the last offer counts as both.
    if price > me.selling_price:
        events.append(Event(
            kind=EventKind.SELLER_ABOVE_ASK, actor=actor, original=price, repaired=me.selling_price,
            detail=f"{actor} offered {_fmt(price)}, above its ask; lowered to {_fmt(me.selling_price)}.",
        ))
        price = me.selling_price
    if previous_offer is not None and price > previous_offer:
        events.append(Event(
            kind=EventKind.SELLER_OFFER_ROSE, actor=actor, original=price, repaired=standing,
            detail=(f"{actor} offered {_fmt(price)}, above its previous offer {_fmt(previous_offer)}; "
                    "its standing offer stands."),
        ))
        price = standing
    if price < me.least_price:
        # Not raised to the floor (that would print the floor): the offer the buyer already has
        # stands. The detail names no hidden number either, so a page showing events is safe.
        events.append(Event(
            kind=EventKind.SELLER_BELOW_FLOOR, actor=actor, original=price, repaired=standing,
            detail=f"{actor} offered {_fmt(price)}, under its least price; its standing offer stands.",
        ))
        price = standing
    return replace(action, price=price), events


# The rule breaks worth a second try: the agent's action would otherwise be replaced by the code.
# An accept at a price other than the standing one is filled in as "your offer" (what an accept
# means) and a missing counter is simply no counter, so neither is re-asked.
REASKED_KINDS = frozenset({
    EventKind.SELLER_BELOW_FLOOR, EventKind.SELLER_OFFER_ROSE, EventKind.SELLER_ABOVE_ASK,
    EventKind.SELLER_ACCEPT_BELOW_FLOOR, EventKind.SELLER_ACCEPT_NO_COUNTER, EventKind.SELLER_OFFER_NO_PRICE,
    EventKind.BUYER_COUNTER_ABOVE_MAX, EventKind.BUYER_ACCEPT_ABOVE_MAX, EventKind.BUYER_ACCEPT_UNKNOWN_SELLER,
})


def seller_rule_broken(
    action: SellerAction, *, me: SellerPrivate, previous_offer: Decimal | None, buyer_counter: Decimal | None,
) -> str | None:
    """The rule `action` breaks, said to the seller in its own view's terms; None when it breaks none.

    The seller's own floor and ask are its own view, so naming them to it reveals nothing.
    """
    _, events = guard_seller(action, me=me, previous_offer=previous_offer, buyer_counter=buyer_counter)
    kinds = [e.kind for e in events if e.kind in REASKED_KINDS]
    if not kinds:
        return None
    counter = _price(buyer_counter)
    said = {
        EventKind.SELLER_ABOVE_ASK: f"your offer must not be above your asking price of {_fmt(me.selling_price)}",
        EventKind.SELLER_OFFER_ROSE: f"your offer must not rise above your previous offer of {_fmt(previous_offer)}",
        EventKind.SELLER_BELOW_FLOOR: f"your price must not be below your floor of {_fmt(me.least_price)}",
        EventKind.SELLER_ACCEPT_BELOW_FLOOR: (
            f"you accepted the buyer's counter of {_fmt(counter)}, which is below your floor of "
            f"{_fmt(me.least_price)}; make an offer at or above your floor instead, or decline"),
        EventKind.SELLER_ACCEPT_NO_COUNTER: "the buyer made no counter-offer to accept; make an offer with a price",
        EventKind.SELLER_OFFER_NO_PRICE: "an offer needs a price",
    }
    return "; ".join(said[kind] for kind in kinds)


def _refuse(action: BuyerAction, *, to: tuple[str, ...]) -> BuyerAction:
    """A refused ACCEPT becomes a plain message, so the buyer's words still reach the sellers."""
    return replace(action, action=BuyerAct.MESSAGE, to=to, seller=None, price=None)


def guard_buyer(
    action: BuyerAction,
    *,
    me: BuyerPrivate,
    standing_offers: Mapping[str, Decimal],
    active: Sequence[str],
) -> tuple[BuyerAction, list[Event]]:
    """Refuse what breaks a buyer rule: it accepts only a standing offer, and never above max_price;
    a counter above max_price is sent without a price.

    `standing_offers` is the buyer view's map of each active seller's latest offer.
    """
    events: list[Event] = []

    if action.action == BuyerAct.MESSAGE:
        counter = _price(action.price)
        if counter is not None and counter < 0:
            # A negative counter is noise, not a position; it is dropped (there is no rule it
            # breaks against a seller, so no event is counted).
            counter = None
        elif counter is not None and counter > me.max_price:
            # Lowering it to max_price would tell the seller the buyer's maximum to the cent; the
            # words still go, without a counter the seller could hold the buyer to.
            events.append(Event(
                kind=EventKind.BUYER_COUNTER_ABOVE_MAX, actor=BUYER, original=counter, repaired=None,
                detail=f"The buyer countered {_fmt(counter)}, above its max price; sent without a price.",
            ))
            counter = None
        return replace(action, price=counter), events

    if action.action != BuyerAct.ACCEPT:
        return action, events

    wanted = _price(action.price)
    seller = canonical_handle(action.seller, active)
    offers = {handle_key(handle): price for handle, price in standing_offers.items()}
    standing = None if seller is None else offers.get(handle_key(seller))
    if seller is None or standing is None:
        events.append(Event(
            kind=EventKind.BUYER_ACCEPT_UNKNOWN_SELLER, actor=BUYER, original=wanted, repaired=None,
            detail=(f"The buyer accepted {action.seller!r}, who has no standing offer; "
                    "refused and sent as a message to all sellers."),
        ))
        return _refuse(action, to=(ALL,)), events

    if standing > me.max_price:
        events.append(Event(
            kind=EventKind.BUYER_ACCEPT_ABOVE_MAX, actor=BUYER, original=wanted, repaired=None,
            detail=(f"The buyer accepted {seller} at {_fmt(wanted)}, but the standing offer {_fmt(standing)} "
                    f"is above its max price; refused and sent as a message to {seller}."),
        ))
        return _refuse(action, to=(seller,)), events

    if wanted is not None and wanted != standing:
        events.append(Event(
            kind=EventKind.BUYER_ACCEPT_UNOFFERED, actor=BUYER, original=wanted, repaired=standing,
            detail=(f"The buyer accepted {seller} at {_fmt(wanted)}, which it never offered; "
                    f"accepted at its standing offer {_fmt(standing)}."),
        ))
    # An ACCEPT without a price means "your offer": filled in, and not a violation.
    return replace(action, seller=seller, price=standing), events


def buyer_rule_broken(
    action: BuyerAction, *, me: BuyerPrivate, standing_offers: Mapping[str, Decimal], active: Sequence[str],
) -> str | None:
    """The rule `action` breaks, said to the buyer in its own view's terms; None when it breaks none."""
    _, events = guard_buyer(action, me=me, standing_offers=standing_offers, active=active)
    kinds = [e.kind for e in events if e.kind in REASKED_KINDS]
    if not kinds:
        return None
    offers = ", ".join(f"{handle} {_fmt(price)}" for handle, price in standing_offers.items()) or "none"
    said = {
        EventKind.BUYER_COUNTER_ABOVE_MAX: (f"your counter-offer must not be above your maximum price of "
                                            f"{_fmt(me.max_price)}"),
        EventKind.BUYER_ACCEPT_ABOVE_MAX: (f"you may not accept an offer above your maximum price of "
                                           f"{_fmt(me.max_price)}; the standing offers are: {offers}"),
        EventKind.BUYER_ACCEPT_UNKNOWN_SELLER: (f"{action.seller or 'that seller'} has no standing offer; "
                                                f"you can accept only one of: {offers}"),
    }
    return "; ".join(said[kind] for kind in kinds)

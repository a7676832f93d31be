"""The BazaarBATNA price rules, kept in code: the LLM decides, the guardrails only keep the rules.

A language model will sometimes offer under its floor, raise an offer it already made, or accept
a price nobody offered. Those actions are repaired to the nearest action that keeps the rules,
or refused when no such price exists, and every repair comes back as an `Event` so it can be
recorded and counted as a guardrail violation. The functions are pure: given the action and the
facts the orchestrator holds (the seller's configuration and previous offer, the buyer's
constraints and the standing offers), they return the action to record and the events, and
never raise on a bad action, because a bad action is an expected outcome to measure.
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


def guard_seller(
    action: SellerAction,
    *,
    me: SellerPrivate,
    previous_offer: Decimal | None,
    buyer_counter: Decimal | None,
) -> tuple[SellerAction, list[Event]]:
    """Repair a seller's action so its price lies in [least_price, min(selling_price, previous offer)].

    `previous_offer` is this seller's latest offered (or accepted) price to the buyer, and
    `buyer_counter` the buyer's latest counter addressed to it; None when there is none.
    """
    if action.action == SellerAct.DECLINE:
        return action, []

    actor = me.handle
    events: list[Event] = []
    ceiling = seller_ceiling(me=me, previous_offer=previous_offer)
    fallback_offer = previous_offer if previous_offer is not None else me.selling_price

    if action.action == SellerAct.ACCEPT:
        counter = _price(buyer_counter)
        if counter is None:
            # Nothing to accept: keep the seller's standing position instead of inventing a deal.
            repaired = min(max(fallback_offer, me.least_price), ceiling)
            events.append(Event(
                kind=EventKind.SELLER_ACCEPT_NO_COUNTER, actor=actor,
                original=_price(action.price), repaired=repaired,
                detail=f"{actor} accepted, but there was no counter to accept; offered {_fmt(repaired)}.",
            ))
            return replace(action, action=SellerAct.OFFER, price=repaired), events
        if counter < me.least_price:
            # The nearest lawful move to "yes at a price under my floor" is an offer at the floor,
            # which never exceeds a previous offer (offers are never under the floor either).
            repaired = me.least_price
            events.append(Event(
                kind=EventKind.SELLER_ACCEPT_BELOW_FLOOR, actor=actor, original=counter, repaired=repaired,
                detail=(f"{actor} accepted the buyer's counter {_fmt(counter)}, under its least price; "
                        f"turned into an offer at {_fmt(repaired)}."),
            ))
            return replace(action, action=SellerAct.OFFER, price=repaired), events
        # A counter above the seller's own offer or ask is capped silently: the seller broke no
        # rule by saying yes, and offers to the buyer still never rise.
        return replace(action, price=min(counter, ceiling)), events

    # OFFER
    price = _price(action.price)
    if price is None:
        price = min(max(fallback_offer, me.least_price), ceiling)
        events.append(Event(
            kind=EventKind.SELLER_OFFER_NO_PRICE, actor=actor, original=None, repaired=price,
            detail=f"{actor} made an offer without a price; its standing price {_fmt(price)} was used.",
        ))
        return replace(action, price=price), events

    # The rules are applied in turn and each one that fires is its own event (original = the price
    # it saw), so an offer that was both above the ask and above the last offer counts as both.
    if price > me.selling_price:
        events.append(Event(
            kind=EventKind.SELLER_ABOVE_ASK, actor=actor, original=price, repaired=me.selling_price,
            detail=f"{actor} offered {_fmt(price)}, above its ask; lowered to {_fmt(me.selling_price)}.",
        ))
        price = me.selling_price
    if previous_offer is not None and price > previous_offer:
        repaired = max(previous_offer, me.least_price)
        events.append(Event(
            kind=EventKind.SELLER_OFFER_ROSE, actor=actor, original=price, repaired=repaired,
            detail=(f"{actor} offered {_fmt(price)}, above its previous offer {_fmt(previous_offer)}; "
                    f"lowered to {_fmt(repaired)}."),
        ))
        price = repaired
    if price < me.least_price:
        events.append(Event(
            kind=EventKind.SELLER_BELOW_FLOOR, actor=actor, original=price, repaired=me.least_price,
            detail=f"{actor} offered {_fmt(price)}, under its least price; raised to {_fmt(me.least_price)}.",
        ))
        price = me.least_price
    return replace(action, price=price), events


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
    """Repair or refuse a buyer action: it accepts only a standing offer, and never above max_price.

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
            events.append(Event(
                kind=EventKind.BUYER_COUNTER_ABOVE_MAX, actor=BUYER, original=counter, repaired=me.max_price,
                detail=f"The buyer countered {_fmt(counter)}, above its max price; lowered to it.",
            ))
            counter = me.max_price
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

"""Builds what each agent is allowed to know from the full transcript the orchestrator holds.

Information asymmetry is the point of the simulation, so it is enforced here, in code, rather
than trusted to prompts: every prompt is rendered from a `SellerView` or `BuyerView`, and these
functions are the only way to build one. A seller's view holds its own configuration, the buyer
messages addressed to it and its own replies; the buyer's view holds its constraints, the handles
still in the room, and every reply addressed to it. Neither ever receives another agent's private
configuration, because the functions are never handed one.
"""

from __future__ import annotations

from collections.abc import Sequence
from dataclasses import replace
from decimal import Decimal

from negotiation.engine.routing import canonical_handle, handle_key
from negotiation.engine.types import (
    BUYER,
    BuyerPrivate,
    BuyerView,
    Msg,
    SellerAct,
    SellerPrivate,
    SellerView,
)

# A seller's structured price stands as an offer whether it offered it or accepted the buyer's
# counter at it; a DECLINE carries no price and takes the seller out.
_PRICED_SELLER_ACTS = frozenset({SellerAct.OFFER, SellerAct.ACCEPT})


def _is_from_seller(msg: Msg, key: str) -> bool:
    # The buyer's sender name is compared exactly, so a seller can never pass for the buyer.
    return msg.sender != BUYER and handle_key(msg.sender) == key


def seller_view(
    *, me: SellerPrivate, item_name: str, quantity: int, round_no: int, transcript: Sequence[Msg],
    rules: str = "known", max_rounds: int = 0,
) -> SellerView:
    """One seller's view: buyer messages addressed to it and its own replies, in order.

    A buyer message addressed to several sellers reaches this seller with its recipients narrowed
    to this seller alone: who else the buyer is talking to is the buyer's business (spec 5.2, a
    seller does not know the buyer's interactions with competitors).
    """
    key = handle_key(me.handle)
    thread: list[Msg] = []
    for msg in transcript:
        if msg.sender == BUYER and any(handle_key(name) == key for name in msg.recipients):
            thread.append(replace(msg, recipients=(me.handle,)))
        elif _is_from_seller(msg, key):
            thread.append(msg)
    return SellerView(me=me, item_name=item_name, quantity=quantity, round_no=round_no, thread=tuple(thread),
                      rules=rules, max_rounds=max_rounds)


def active_sellers(*, handles: Sequence[str], transcript: Sequence[Msg]) -> tuple[str, ...]:
    """The handles still in the room: those that never declined, in the order given.

    A decline is final. Checking "ever declined" rather than "the latest message is a decline"
    gives the same answer for every transcript the protocol produces (a seller that declined is
    never addressed again) and stays safe if a stray reply ever follows a decline.
    """
    declined = {
        handle_key(msg.sender)
        for msg in transcript
        if msg.sender != BUYER and msg.action == SellerAct.DECLINE
    }
    return tuple(handle for handle in handles if handle_key(handle) not in declined)


def buyer_view(
    *, me: BuyerPrivate, handles: Sequence[str], round_no: int, max_rounds: int, transcript: Sequence[Msg],
    rules: str = "known",
) -> BuyerView:
    """The buyer's view: its own messages, every reply to it, and the offers standing now.

    `standing_offers` holds the latest structured price of each active seller's OFFER or ACCEPT,
    keyed by the handle's spelling in `handles`; it is what the buyer may accept.
    """
    active = active_sellers(handles=handles, transcript=transcript)
    thread = tuple(msg for msg in transcript if msg.sender == BUYER or BUYER in msg.recipients)
    standing: dict[str, Decimal] = {}
    for msg in thread:
        if msg.sender == BUYER or msg.action not in _PRICED_SELLER_ACTS or msg.price is None:
            continue
        handle = canonical_handle(msg.sender, active)
        if handle is not None:
            standing[handle] = msg.price
    # Keep the room's order so prompts and ties are deterministic.
    standing_offers = {handle: standing[handle] for handle in active if handle in standing}
    return BuyerView(
        me=me,
        handles=active,
        round_no=round_no,
        max_rounds=max_rounds,
        thread=thread,
        standing_offers=standing_offers,
        rules=rules,
    )


def audience(msg: Msg) -> tuple[str, ...]:
    """Everyone who could see `msg`: the buyer and its recipients, or the seller and the buyer."""
    if msg.sender == BUYER:
        return (BUYER, *msg.recipients)
    return (msg.sender, BUYER)

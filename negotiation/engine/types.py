"""Plain data of a negotiation: the private configurations, the transcript and the actions.

Everything here is frozen and Django-free, so the protocol, the visibility filter and the
guardrails can be reasoned about (and property-tested) as functions over values. Prices are
`Decimal` with two places, like the database columns they come from.
"""

from __future__ import annotations

from dataclasses import dataclass, field
from decimal import ROUND_HALF_UP, Decimal
from enum import StrEnum

BUYER = "buyer"
ALL = "all"
CENT = Decimal("0.01")


def money(value: Decimal | float | int | str) -> Decimal:
    """Round any number to cents, the precision of every price column."""
    return Decimal(str(value)).quantize(CENT, rounding=ROUND_HALF_UP)


class BuyerAct(StrEnum):
    MESSAGE = "message"
    ACCEPT = "accept"
    WALK_AWAY = "walk_away"


class SellerAct(StrEnum):
    OFFER = "offer"
    ACCEPT = "accept"
    DECLINE = "decline"


class EndReason(StrEnum):
    ACCEPTED = "accepted"
    WALKED_AWAY = "walked_away"
    ALL_DECLINED = "all_declined"
    MAX_ROUNDS = "max_rounds"


class EventKind(StrEnum):
    """Every repair or refusal the code makes to an LLM's action, plus audit findings."""

    SELLER_BELOW_FLOOR = "seller_below_floor"  # offer under least_price; its standing offer stands
    SELLER_OFFER_ROSE = "seller_offer_rose"  # offer above its previous offer; that offer stands
    SELLER_ABOVE_ASK = "seller_above_ask"  # offer above selling_price, lowered to it
    SELLER_ACCEPT_BELOW_FLOOR = "seller_accept_below_floor"  # accepted a counter under floor
    SELLER_ACCEPT_NO_COUNTER = "seller_accept_no_counter"  # accepted when no counter existed
    SELLER_OFFER_NO_PRICE = "seller_offer_no_price"  # offer without a price
    BUYER_ACCEPT_ABOVE_MAX = "buyer_accept_above_max"  # accept above max_price, refused
    BUYER_ACCEPT_UNOFFERED = "buyer_accept_unoffered"  # accept at a price not offered
    BUYER_ACCEPT_UNKNOWN_SELLER = "buyer_accept_unknown_seller"  # accept of no live offer
    BUYER_COUNTER_ABOVE_MAX = "buyer_counter_above_max"  # counter above max_price, sent without a price
    BUYER_UNKNOWN_RECIPIENT = "buyer_unknown_recipient"  # @handle not in the room, dropped
    LEAK = "leak"  # a message states the sender's own hidden number
    CLAIM_INCONSISTENT = "claim_inconsistent"  # the text's price differs from the structured price
    UNSUPPORTED_CLAIM = "unsupported_claim"  # the buyer cites a price no seller offered
    FALLBACK = "fallback"  # LLM output unusable after one repair; baseline acted
    REASK = "reask"  # the action broke a rule; the agent was told which and asked once more


@dataclass(frozen=True)
class BuyerPrivate:
    """The buyer's own constraints for one item. Never shown to a seller."""

    item_name: str
    quantity: int
    min_price: Decimal
    max_price: Decimal


@dataclass(frozen=True)
class SellerPrivate:
    """One seller's private configuration for one item. Never shown to the buyer or a rival."""

    handle: str
    style: str
    retention_weight: Decimal
    profit_weight: Decimal
    cost_price: Decimal
    selling_price: Decimal
    least_price: Decimal


@dataclass(frozen=True)
class Msg:
    """One line of the transcript as the orchestrator holds it.

    `recipients` are seller handles for a buyer message (already resolved: never "all"), and
    `(BUYER,)` for a seller reply. `price` is the structured price: the buyer's counter, the
    price it accepts, or the seller's offer / the counter it accepts.
    """

    round_no: int
    sender: str
    recipients: tuple[str, ...]
    text: str
    action: str
    price: Decimal | None = None


@dataclass(frozen=True)
class BuyerAction:
    action: BuyerAct
    message: str = ""
    to: tuple[str, ...] = (ALL,)
    seller: str | None = None  # for ACCEPT
    price: Decimal | None = None  # counter for MESSAGE, agreed price for ACCEPT
    reasoning: str = ""


@dataclass(frozen=True)
class SellerAction:
    action: SellerAct
    message: str = ""
    price: Decimal | None = None
    reasoning: str = ""


@dataclass(frozen=True)
class Event:
    kind: EventKind
    actor: str
    detail: str
    original: Decimal | None = None
    repaired: Decimal | None = None


@dataclass(frozen=True)
class SellerView:
    """All a seller may know: itself, the item request, and its own thread."""

    me: SellerPrivate
    item_name: str
    quantity: int
    round_no: int
    thread: tuple[Msg, ...]  # buyer messages addressed to me, and my replies, in order
    rules: str = "known"  # the run's rule set (engine/protocol.py::Rules); public, as the prompts state it
    max_rounds: int = 0  # told to sellers only under "hidden" rules (as the range the run may end in)


@dataclass(frozen=True)
class BuyerView:
    """All the buyer may know: its constraints, the handles, and what was said to it."""

    me: BuyerPrivate
    handles: tuple[str, ...]  # sellers still in the room
    round_no: int
    max_rounds: int
    thread: tuple[Msg, ...]  # its own messages and every reply addressed to it
    standing_offers: dict[str, Decimal] = field(default_factory=dict)  # latest offer per handle
    rules: str = "known"  # the run's rule set (engine/protocol.py::Rules); never the drawn last round

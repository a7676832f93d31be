"""Classic time-dependent concession agents (Faratin, Sierra & Jennings 1998), with no LLM call.

They serve three purposes: reference opponents in benchmarks, the fallback when an LLM's output is
unusable after one repair, and cheap agents for load tests. Each moves its price from where it
starts (a seller's ask, the buyer's minimum) toward its reservation value (the seller's floor, the
buyer's maximum) along f(t) = (t / deadline) ** (1 / beta): Boulware (beta < 1) holds firm until
late, Conceder (beta > 1) gives ground early, Linear in between. They read only their own view, so
a fallback agent knows no more than the LLM it stands in for; their texts state only the price
they act on.

Seeds mean something for them too (`Tactic`): in a run, each baseline agent draws its beta from
the nominal beta x 2**U(-0.5, 0.5) (Boulware 0.21-0.42, Linear 0.71-1.41, Conceder 2.1-4.2: the
three bands never overlap) and opens up to 10% of its range inside its start (a seller below its
ask, a buyer above its minimum), from the run's seed and its seat. So runs of a baseline differ
and bootstrap CIs are real, while two batches on the same seeds replay and pair exactly. The
names with "-fixed" ("boulware-fixed", ...) are the nominal curves with no draw at all.
"""

from __future__ import annotations

import random
from dataclasses import dataclass
from decimal import Decimal
from enum import StrEnum

from negotiation.engine.protocol import Rules, earliest_end, is_closing_turn
from negotiation.engine.routing import handle_key
from negotiation.engine.types import (
    ALL,
    BUYER,
    BuyerAct,
    BuyerAction,
    BuyerView,
    Msg,
    SellerAct,
    SellerAction,
    SellerView,
    money,
)


class Strategy(StrEnum):
    BOULWARE = "boulware"
    LINEAR = "linear"
    CONCEDER = "conceder"

    @classmethod
    def _missing_(cls, value: object) -> Strategy | None:
        # Configurations spell strategies "linear" or "LINEAR"; both name the same strategy.
        if isinstance(value, str):
            return next((member for member in cls if member.value == value.strip().lower()), None)
        return None

    @property
    def beta(self) -> float:
        """The concession exponent's beta for this strategy (Faratin et al.)."""
        return _BETA[self]


_BETA: dict[Strategy, float] = {Strategy.BOULWARE: 0.3, Strategy.LINEAR: 1.0, Strategy.CONCEDER: 3.0}
FIXED_SUFFIX = "-fixed"
BETA_SPREAD = 0.5  # beta = nominal x 2**U(-BETA_SPREAD, BETA_SPREAD)
OPENING_BAND = 0.10  # the opening lies up to this fraction of the range inside the start


@dataclass(frozen=True)
class Tactic:
    """One baseline agent's parameters in one run: its strategy, its beta, and where it opens
    (the fraction of its range it has conceded at t = 0)."""

    strategy: Strategy
    beta: float
    opening: float = 0.0


def parse_baseline(name: str) -> tuple[Strategy, bool]:
    """("boulware", seeded) for "boulware"; ("boulware", not seeded) for "boulware-fixed"."""
    name = name.strip().lower()
    fixed = name.endswith(FIXED_SUFFIX)
    return Strategy(name.removesuffix(FIXED_SUFFIX)), not fixed


def tactic(name: str | Strategy, *, seed: int | None = None, slot: int = 0) -> Tactic:
    """The Tactic a baseline named `name` plays in the run with `seed`, in seat `slot` (0 the buyer,
    1.. the sellers in room order). No seed, or a "-fixed" name, gives the nominal curve."""
    strategy, seeded = parse_baseline(str(name))
    if seed is None or not seeded:
        return Tactic(strategy=strategy, beta=strategy.beta)
    rng = random.Random(f"mams-tactic:{int(seed)}:{int(slot)}")  # str seeds hash the same in every process
    beta = strategy.beta * 2 ** rng.uniform(-BETA_SPREAD, BETA_SPREAD)
    return Tactic(strategy=strategy, beta=round(beta, 4), opening=round(rng.uniform(0, OPENING_BAND), 4))


def _as_tactic(strategy: Strategy | Tactic) -> Tactic:
    return strategy if isinstance(strategy, Tactic) else Tactic(strategy=strategy, beta=strategy.beta)


def _opening(tac: Tactic, *, start: Decimal, end: Decimal) -> Decimal:
    return money(start + (end - start) * Decimal(str(tac.opening))) if tac.opening else start


def concession(*, t: int, deadline: int, beta: float, start: Decimal, end: Decimal) -> Decimal:
    """The price at time t: start + (end - start) * (min(t, deadline) / deadline) ** (1 / beta).

    t = 0 gives `start` and t >= deadline gives `end`. A deadline of 0 or less means there is no
    time left, so the agent is at `end` at once.
    """
    if deadline <= 0:
        return money(end)
    # Decimal(str(...)) keeps the float's shortest repr, so f = 1.0 at the deadline is exact.
    fraction = Decimal(str((min(max(t, 0), deadline) / deadline) ** (1 / beta)))
    return money(start + (end - start) * fraction)


# Tone by seller style; "{price}" is the only number a template may state.
_OFFER_TEXT = {
    "rude": "{price} each. Take it or leave it.",
    "neutral": "I can do {price} each.",
    "sweet": "For you, I can do {price} each. Thank you so much for asking!",
}
_ACCEPT_TEXT = {
    "rude": "Fine, {price} each. Deal.",
    "neutral": "{price} each works for me. Deal.",
    "sweet": "Wonderful, {price} each it is! It's a pleasure doing business with you.",
}


def _dollars(price: Decimal) -> str:
    return f"${price:,.2f}"


def _latest_price(thread: tuple[Msg, ...], *, sender_key: str, acts: frozenset[str]) -> Decimal | None:
    for msg in reversed(thread):
        # The buyer's sender name is excluded by value, so a seller called "@buyer" is still itself.
        if (msg.sender != BUYER and handle_key(msg.sender) == sender_key and msg.action in acts
                and msg.price is not None):
            return msg.price
    return None


def baseline_seller(view: SellerView, *, strategy: Strategy | Tactic, deadline: int) -> SellerAction:
    """Offer the concession target, or accept the buyer's latest counter once it reaches it.

    The target moves from the opening (selling_price, or inside it by the tactic's opening) to
    least_price over `deadline` rounds (engine/protocol.py::seller_deadline); offers never rise
    (the previous offer caps the next one) and never leave [least_price, selling_price].
    """
    me = view.me
    tac = _as_tactic(strategy)
    strategy = tac.strategy
    target = concession(
        t=view.round_no - 1, deadline=deadline, beta=tac.beta,
        start=_opening(tac, start=me.selling_price, end=me.least_price), end=me.least_price
    )
    counters = (msg.price for msg in reversed(view.thread) if msg.sender == BUYER and msg.price is not None)
    counter = next(counters, None)
    previous = _latest_price(view.thread, sender_key=handle_key(me.handle),
                             acts=frozenset({SellerAct.OFFER, SellerAct.ACCEPT}))
    ceiling = me.selling_price if previous is None else min(me.selling_price, previous)
    style = me.style if me.style in _OFFER_TEXT else "neutral"

    if counter is not None and counter >= target:
        # A counter above what the seller already asked is held to that ask: prices never rise.
        price = min(money(counter), ceiling)
        return SellerAction(
            action=SellerAct.ACCEPT, price=price, message=_ACCEPT_TEXT[style].format(price=_dollars(price)),
            reasoning=f"{strategy} baseline: the counter meets this round's target.",
        )
    price = max(min(target, ceiling), me.least_price)
    return SellerAction(
        action=SellerAct.OFFER, price=price, message=_OFFER_TEXT[style].format(price=_dollars(price)),
        reasoning=f"{strategy} baseline: this round's concession target.",
    )


def last_buyer_turn(view: BuyerView) -> bool:
    """The buyer's last chance to accept: the closing turn (`known`), or round max_rounds (`hidden`,
    where the run may have ended sooner but cannot go on longer)."""
    if view.rules == Rules.HIDDEN:
        return view.round_no >= view.max_rounds
    return is_closing_turn(view.round_no, view.max_rounds)


def best_offer(view: BuyerView) -> tuple[Decimal, int, str] | None:
    """(price, room index, handle) of the lowest standing offer; ties go to the first in the room."""
    offers = [(view.standing_offers[handle], index, handle)
              for index, handle in enumerate(view.handles) if handle in view.standing_offers]
    return min(offers) if offers else None


def _buyer_deadline(view: BuyerView) -> int:
    """The buyer's own deadline (Faratin's private t_max), in buyer turns.

    `known`: max_rounds (its closing turn follows). `hidden`: its last guaranteed turn, round
    earliest_end (t = earliest_end - 1), where it reaches its maximum: a reference buyer that
    planned to the nominal max_rounds would lose every run that ends sooner.
    """
    if view.rules != Rules.HIDDEN:
        return view.max_rounds
    return max(1, earliest_end(view.max_rounds) - 1)


def baseline_buyer(view: BuyerView, *, strategy: Strategy | Tactic) -> BuyerAction:
    """Accept the best standing offer once it meets the target; otherwise counter at the target.

    The target moves from min_price (or inside it by the tactic's opening) to max_price over
    max_rounds rounds. On its last turn (`last_buyer_turn`) the buyer takes the best offer within
    max_price or walks away. Ties between equal offers go to the seller listed first among the
    handles, so the choice is deterministic.
    """
    me = view.me
    tac = _as_tactic(strategy)
    strategy = tac.strategy
    best = best_offer(view)

    if last_buyer_turn(view):
        if best is not None and best[0] <= me.max_price:
            return accept(best[2], best[0], reasoning=f"{strategy} baseline: last turn, offer in budget.")
        return BuyerAction(
            action=BuyerAct.WALK_AWAY, message="Thank you all, but I will pass this time.",
            reasoning=f"{strategy} baseline: last turn and no offer within budget.",
        )

    target = concession(
        t=view.round_no - 1, deadline=_buyer_deadline(view), beta=tac.beta,
        start=_opening(tac, start=me.min_price, end=me.max_price), end=me.max_price,
    )
    if best is not None and best[0] <= target:
        return accept(best[2], best[0], reasoning=f"{strategy} baseline: best offer meets the target.")
    # The text states only the counter, never max_price (the counter reaches max_price only when
    # the two are equal, and then it is simply the counter).
    opening = f"I need {me.quantity} {me.item_name}." if view.round_no <= 1 else "That is still too high."
    return BuyerAction(
        action=BuyerAct.MESSAGE, to=(ALL,), price=target,
        message=f"{opening} Can you do {_dollars(target)} each?",
        reasoning=f"{strategy} baseline: counter at this round's concession target.",
    )


def accept(seller: str, price: Decimal, *, reasoning: str) -> BuyerAction:
    return BuyerAction(
        action=BuyerAct.ACCEPT, to=(seller,), seller=seller, price=price,
        message=f"{seller}, {_dollars(price)} each works for me. Deal.", reasoning=reasoning,
    )

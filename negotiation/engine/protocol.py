"""The turn-taking rules of a negotiation: after each turn, does the run continue or end, and why.

The Celery tasks that run rounds are thin and redeliverable; the decision of what comes next lives
here, as pure functions of the (already guarded) action and the round counters, so every
termination reason can be tested by hand. A round is the buyer speaking, then each addressed
seller replying. Rounds 1..max_rounds are negotiation rounds; after the sellers' last replies the
buyer gets one closing decision turn, round max_rounds + 1, in which it may accept a standing
offer or walk away, and a plain message there ends the run on the round limit.
"""

from __future__ import annotations

from collections.abc import Sequence
from dataclasses import dataclass
from decimal import Decimal

from negotiation.engine.types import BuyerAct, BuyerAction, EndReason


@dataclass(frozen=True)
class Continue:
    """The buyer's message goes on to these sellers, who each reply this round."""

    recipients: tuple[str, ...]


@dataclass(frozen=True)
class End:
    """The run is over; a deal names its seller and price, any other reason leaves them None."""

    reason: EndReason
    seller: str | None = None
    price: Decimal | None = None


def is_closing_turn(round_no: int, max_rounds: int) -> bool:
    """True on the buyer's closing decision turn, the one after the last seller replies."""
    return round_no > max_rounds


def after_buyer(
    action: BuyerAction, *, recipients: tuple[str, ...], round_no: int, max_rounds: int
) -> Continue | End:
    """What follows the buyer's turn; `recipients` are the routed sellers of a MESSAGE."""
    if action.action == BuyerAct.ACCEPT:
        return End(reason=EndReason.ACCEPTED, seller=action.seller, price=action.price)
    if action.action == BuyerAct.WALK_AWAY:
        return End(reason=EndReason.WALKED_AWAY)
    if is_closing_turn(round_no, max_rounds):
        return End(reason=EndReason.MAX_ROUNDS)
    if not recipients:
        # Routing falls back to every active seller, so an empty list means nobody is left to
        # answer; continuing would schedule a round with no seller turns that never finishes.
        return End(reason=EndReason.ALL_DECLINED)
    return Continue(recipients=recipients)


def after_sellers(*, active_after: Sequence[str]) -> End | None:
    """What follows the sellers' replies: the end if every seller has declined, else None.

    None means the next round follows; when this was round max_rounds, the next "round" is the
    buyer's closing decision turn (see `is_closing_turn`).
    """
    if not active_after:
        return End(reason=EndReason.ALL_DECLINED)
    return None

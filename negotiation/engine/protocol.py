"""The turn-taking rules of a negotiation: after each turn, does the run continue or end, and why.

The Celery tasks that run rounds are thin and redeliverable; the decision of what comes next lives
here, as pure functions of the (already guarded) action and the round counters, so every
termination reason can be tested by hand. A round is the buyer speaking, then each addressed
seller replying. Rounds 1..max_rounds are negotiation rounds; after the sellers' last replies the
buyer gets one closing decision turn, round max_rounds + 1, in which it may accept a standing
offer or walk away, and a plain message there ends the run on the round limit.

That is the `known` rule set (core-v1). It can be won without negotiating: a time-dependent seller
whose deadline the buyer knows concedes on the clock whatever the buyer does, and the closing turn
is a free option on the lowest final offer, so a buyer that only waits takes the whole surplus
(reward 1.000 in 12 of 12 `/env` episodes against every baseline seller). The `hidden` rule set
(core-v2; measurements in benchmarks/README.md) removes the clock as a weapon, following Faratin et al.
(1998), where each agent's deadline t_max is private, and NegMAS, whose SAO mechanism can end a
negotiation at a time the agents do not know (`hidden_time_limit`; `pend`, a per-step end probability):

- the run's last round is drawn per run in [earliest_end, max_rounds] from the seed and a
  deployment key (`last_round`); agents are told only the range, so waiting costs deals;
- there is no closing turn: the run ends after the sellers' replies of its last round;
- a counter-offer is binding: a seller's accept of it is the deal (as an accept is in
  alternating offers), so a buyer can still close in the last round by bargaining.

Sellers' reference curves (agents/baseline.py) use max_rounds as their deadline under `hidden`,
so they never reach their floor inside a run (NegMAS's (step+1)/(N+1) time has the same effect).
"""

from __future__ import annotations

import hashlib
import hmac
from collections.abc import Sequence
from dataclasses import dataclass
from decimal import Decimal
from enum import StrEnum
from typing import cast

from negotiation.engine.types import BuyerAct, BuyerAction, EndReason, Msg, SellerAct


class Rules(StrEnum):
    """The turn-taking rule set of a run (recorded on the batch and the run, and in its fingerprint)."""

    KNOWN = "known"  # core-v1: the deadline is max_rounds, told to the agents, with a closing turn
    HIDDEN = "hidden"  # core-v2: a per-run hidden last round, no closing turn, binding counters


def parse_rules(value: object) -> Rules:
    """The rule set `value` names; an unknown name raises ValueError (never read as the default)."""
    try:
        return Rules(str(value).strip().lower())
    except ValueError:
        raise ValueError(f"unknown rules {str(value)[:40]!r}; choose {' or '.join(r.value for r in Rules)}") from None


def earliest_end(max_rounds: int) -> int:
    """The first round that may be a `hidden` run's last: max_rounds - max(1, max_rounds // 4)
    (4 of 5, 6 of 8, 8 of 10, 2 of 3; 1 of 1).

    The agents are told this bound and max_rounds, never the drawn round: before it, bargaining is
    free; from it on, every round may be the last. The span is a quarter of the run (at least one
    round) rather than a half: with a wider span, Boulware sellers have conceded almost nothing by
    the earliest end, so no buyer can bargain before it and accepting the first ask wins (measured
    with the canaries, tests/analytics/test_canaries.py).
    """
    return max(1, max_rounds - max(1, max_rounds // 4))


def last_round(*, rules: Rules | str, seed: int, max_rounds: int, key: str = "") -> int:
    """The round after whose seller replies the run ends.

    `known`: max_rounds (the buyer then has its closing turn). `hidden`: drawn uniformly from
    [earliest_end, max_rounds] by HMAC-SHA256(key, seed:max_rounds), so two batches on the same
    seeds in one deployment pair exactly, while an outside buyer that chooses its seed (`/env`)
    cannot compute the round without the deployment's key (MAMS_DEADLINE_KEY).
    """
    if Rules(rules) == Rules.KNOWN:
        return max_rounds
    low = earliest_end(max_rounds)
    digest = hmac.new(key.encode(), f"{int(seed)}:{int(max_rounds)}".encode(), hashlib.sha256).digest()
    return low + int.from_bytes(digest[:8], "big") % (max_rounds - low + 1)


def seller_deadline(*, rules: Rules | str, max_rounds: int) -> int:
    """The deadline T of a baseline seller's concession curve (agents/baseline.py), in seller turns.

    Sellers answer in rounds 1..max_rounds, at t = 0..max_rounds-1. `known` uses T = max_rounds - 1,
    so a baseline seller reaches its floor at its last reply (the core-v1 behaviour the closing
    turn exploits). `hidden` uses T = max_rounds, so its last possible reply is still above the
    floor: the floor is reached only through an accepted counter.
    """
    if Rules(rules) == Rules.KNOWN:
        return max(1, max_rounds - 1)
    return max(1, max_rounds)


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


def message_round(*, turn: int, from_buyer: bool, action: str, max_rounds: int,
                  rules: Rules | str = Rules.KNOWN) -> tuple[int, bool]:
    """How MAMS numbers rounds, one way on the pages, the API and `/env`: (round, decision).

    A round is the buyer's message and the addressed sellers' replies to it (spec 7.2's trace: N rounds
    of offers, then the buyer's decision). A message is stored by the buyer's turn in which it was sent
    (`turn`, Message.round_no). The buyer's accept or walk-away, and under `known` rules its message in
    the closing turn, opens no round: it is the buyer's decision after round turn - 1, so an accept of
    round 2's offer is (2, True). Every other message is (turn, False). A run's rounds (Outcome.rounds,
    the rounds in which sellers answered) is then the largest round of its messages, under both rule sets.
    """
    decision = from_buyer and (action in (BuyerAct.ACCEPT, BuyerAct.WALK_AWAY)
                               or (Rules(rules) == Rules.KNOWN and is_closing_turn(turn, max_rounds)))
    return (turn - 1, True) if decision else (turn, False)


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


def after_sellers(*, active_after: Sequence[str], rules: Rules | str = Rules.KNOWN, round_no: int = 0,
                  last: int = 0, replies: Sequence[Msg] = ()) -> End | None:
    """What follows the sellers' replies: the end, or None when the next round follows.

    `known`: the end only if every seller has declined; after round max_rounds the next "round" is
    the buyer's closing decision turn (see `is_closing_turn`). `hidden`: a seller's accept of the
    buyer's counter is the deal (the lowest accepted price, ties to the first reply in `replies`,
    which are this round's seller messages in room order); else every seller declined; else the
    run ends on its limit when `round_no` is its `last` round.
    """
    if Rules(rules) == Rules.HIDDEN:
        accepts = [m for m in replies if m.action == SellerAct.ACCEPT and m.price is not None]
        if accepts:
            best = min(accepts, key=lambda m: cast(Decimal, m.price))  # min keeps the first of equal prices
            return End(reason=EndReason.ACCEPTED, seller=best.sender, price=best.price)
    if not active_after:
        return End(reason=EndReason.ALL_DECLINED)
    if Rules(rules) == Rules.HIDDEN and round_no >= last:
        return End(reason=EndReason.MAX_ROUNDS)
    return None

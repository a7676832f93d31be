"""Exploit canaries: reference buyers that a sound benchmark must not reward.

Each plays a policy that needs no negotiating skill. They run on every benchmark (as reference
rows on every leaderboard, analytics/benchmarks/services.py) and a test fails if any of them beats the
median buyer score of the baseline strategies on core-v2 (tests/analytics/test_canaries.py), so a
change to the rules or the reference sellers that re-opens a trivial win is caught:

- `canary-patient` counters at its minimum every round and, on its last chance to accept, takes
  the lowest standing offer within budget: the policy that scored reward 1.000 in 12 of 12 `/env`
  episodes under the core-v1 rules (a known deadline and a closing turn).
- `canary-accept-first` accepts the lowest offer within budget the first time there is one.
- `canary-random` accepts, walks away or counters at a uniform price in [min, max], by the turn's
  seed (so it replays and pairs like every other agent).

They are buyers only, make no LLM call, and, like the baselines, state only the price they act on.
"""

from __future__ import annotations

import random
from decimal import Decimal

from negotiation.agents.baseline import accept, best_offer, last_buyer_turn
from negotiation.engine.types import ALL, BuyerAct, BuyerAction, BuyerView, money

PATIENT = "canary-patient"
ACCEPT_FIRST = "canary-accept-first"
RANDOM = "canary-random"
CANARIES = (PATIENT, ACCEPT_FIRST, RANDOM)
RANDOM_ACCEPT = 0.3  # the random canary's chance to accept an offer within budget on a turn
RANDOM_WALK = 0.05  # and its chance to walk away


def _counter(view: BuyerView, price: Decimal | None, reasoning: str) -> BuyerAction:
    said = f" Can you do ${price:,.2f} each?" if price is not None else " What is your best price?"
    opening = f"I need {view.me.quantity} {view.me.item_name}." if view.round_no <= 1 else "That is still too high."
    return BuyerAction(action=BuyerAct.MESSAGE, to=(ALL,), price=price, message=opening + said, reasoning=reasoning)


def _walk(reasoning: str) -> BuyerAction:
    return BuyerAction(action=BuyerAct.WALK_AWAY, message="Thank you all, but I will pass this time.",
                       reasoning=reasoning)


def canary_buyer(view: BuyerView, *, name: str, seed: int = 0) -> BuyerAction:
    """The canary `name`'s action; `seed` is the turn's seed (used by the random canary only)."""
    me = view.me
    best = best_offer(view)
    in_budget = best is not None and best[0] <= me.max_price
    if name == PATIENT:
        if last_buyer_turn(view):
            if best is not None and in_budget:
                return accept(best[2], best[0], reasoning=f"{name}: last turn, lowest offer in budget.")
            return _walk(f"{name}: last turn, nothing in budget.")
        return _counter(view, me.min_price, f"{name}: counter at the minimum and wait.")
    if name == ACCEPT_FIRST:
        if best is not None and in_budget:
            return accept(best[2], best[0], reasoning=f"{name}: the first offer in budget.")
        if last_buyer_turn(view):
            return _walk(f"{name}: last turn, nothing in budget.")
        return _counter(view, None, f"{name}: waiting for a first offer in budget.")
    if name == RANDOM:
        rng = random.Random(f"mams-canary:{int(seed)}")
        affordable = [(p, h) for h, p in view.standing_offers.items() if p <= me.max_price]
        roll = rng.random()
        if affordable and (roll < RANDOM_ACCEPT or last_buyer_turn(view)):
            price, handle = rng.choice(affordable)
            return accept(handle, price, reasoning=f"{name}: a random offer in budget.")
        if roll > 1 - RANDOM_WALK or last_buyer_turn(view):
            return _walk(f"{name}: walked away at random.")
        low, high = float(me.min_price), float(me.max_price)
        return _counter(view, money(rng.uniform(low, high)), f"{name}: a random counter.")
    raise ValueError(f"unknown canary '{name}'; choose one of {', '.join(CANARIES)}")


__all__ = ["ACCEPT_FIRST", "CANARIES", "PATIENT", "RANDOM", "canary_buyer"]

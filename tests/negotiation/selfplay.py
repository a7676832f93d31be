"""Whole negotiations in memory, through the functions production plays a turn with.

The orchestrator's loop in miniature (negotiation/services/play.py without the database and
Celery): view -> decide -> guard -> route -> protocol, with production's seller deadline
(`protocol.seller_deadline`), its last round (`protocol.last_round`), its turn seeds and its
per-run tactics, so property tests and the canary check exercise exactly the curves and rules a
real run uses. Baseline and canary agents only: no LLM.
"""

from __future__ import annotations

from collections.abc import Sequence
from dataclasses import dataclass

from negotiation.agents.decide import decide_buyer, decide_seller
from negotiation.engine import protocol
from negotiation.engine.audit import find_leaks
from negotiation.engine.guardrails import guard_buyer, guard_seller
from negotiation.engine.protocol import End, Rules
from negotiation.engine.routing import resolve_recipients
from negotiation.engine.types import BUYER, BuyerPrivate, Event, Msg, SellerPrivate
from negotiation.engine.visibility import active_sellers, buyer_view, seller_view
from negotiation.services.play import turn_seed

KEY = "selfplay-test-key"


@dataclass(frozen=True)
class Game:
    end: End
    transcript: list[Msg]
    events: list[Event]
    last_round: int


def play(sellers: Sequence[SellerPrivate], buyer: BuyerPrivate, *, max_rounds: int, buyer_strategy: str,
         seller_strategy: str, rules: Rules = Rules.HIDDEN, seed: int | None = 0, key: str = KEY) -> Game:
    """One run; `seed` None plays the baselines' nominal curves (no per-run draw)."""
    handles = [me.handle for me in sellers]
    by_handle = {me.handle: me for me in sellers}
    last = protocol.last_round(rules=rules, seed=seed or 0, max_rounds=max_rounds, key=key)
    deadline = protocol.seller_deadline(rules=rules, max_rounds=max_rounds)
    transcript: list[Msg] = []
    events: list[Event] = []
    for round_no in range(1, max_rounds + 2):
        view = buyer_view(me=buyer, handles=handles, round_no=round_no, max_rounds=max_rounds,
                          transcript=transcript, rules=rules)
        decision = decide_buyer(view, spec={"strategy": buyer_strategy}, seed=turn_seed(seed or 0, round_no, 0),
                                run_seed=seed)
        action, found = guard_buyer(decision.action, me=buyer, standing_offers=view.standing_offers,
                                    active=view.handles)
        events += found
        events += find_leaks(text=action.message, hidden={"max_price": buyer.max_price},
                             public_price=action.price, actor=BUYER)
        recipients, found = resolve_recipients(to=action.to, text=action.message, active=view.handles)
        events += found
        transcript.append(Msg(round_no=round_no, sender=BUYER, recipients=recipients, text=action.message,
                              action=action.action, price=action.price))
        step = protocol.after_buyer(action, recipients=recipients, round_no=round_no, max_rounds=max_rounds)
        if isinstance(step, End):
            return Game(step, transcript, events, last)
        replies = []
        for handle in step.recipients:
            me = by_handle[handle]
            sv = seller_view(me=me, item_name=buyer.item_name, quantity=buyer.quantity, round_no=round_no,
                             transcript=transcript, rules=rules, max_rounds=max_rounds)
            priced = [m for m in sv.thread if m.price is not None]
            previous = next((m.price for m in reversed(priced) if m.sender == handle), None)
            counter = next((m.price for m in reversed(priced) if m.sender == BUYER), None)
            proposed = decide_seller(sv, spec={"strategy": seller_strategy}, seed=0, deadline=deadline,
                                     run_seed=seed, slot=handles.index(handle) + 1).action
            reply, found = guard_seller(proposed, me=me, previous_offer=previous, buyer_counter=counter)
            events += found
            events += find_leaks(text=reply.message, hidden={"cost_price": me.cost_price,
                                                             "least_price": me.least_price},
                                 public_price=reply.price, actor=handle)
            msg = Msg(round_no=round_no, sender=handle, recipients=(BUYER,), text=reply.message,
                      action=reply.action, price=reply.price)
            transcript.append(msg)
            replies.append(msg)
        end = protocol.after_sellers(active_after=active_sellers(handles=handles, transcript=transcript),
                                     rules=rules, round_no=round_no, last=last, replies=replies)
        if end is not None:
            return Game(end, transcript, events, last)
    raise AssertionError("the last round, or the closing turn, always ends the run")

"""A person as the buyer (spec 12.4): start a live run, speak to the sellers, accept or walk away.

The person's turn goes through the same `play.buyer_turn_record` as an LLM buyer's, so routing,
audit and the outcome are recorded identically, and the sellers still answer as Celery tasks
(`play.fan_out`). What differs is that a person gets told, not repaired: an accept at a price the
seller has not offered, a counter above the buyer's own maximum, or an unknown @handle is refused
with a message before anything is recorded, instead of being silently converted by a guardrail.
"""

from __future__ import annotations

import time
from decimal import Decimal
from typing import Any

from django.conf import settings
from django.contrib.auth import get_user_model
from django.core.exceptions import ValidationError
from django.db import transaction
from django.utils import timezone

from negotiation.agents.decide import Decision
from negotiation.agents.fingerprint import run_fingerprints
from negotiation.engine import routing, visibility
from negotiation.engine.types import ALL, BUYER, BuyerAct, BuyerAction, money
from negotiation.models import Message, NegotiationRun, Session
from negotiation.run_context import RunContext, run_context
from negotiation.services import play, sweeps
from negotiation.services.errors import ConflictError, LimitExceeded
from negotiation.services.launch import agents_resolve, check_range, check_seed, errors_merge, scenario_check

HUMAN = {"strategy": "human", "profile": "", "model": "", "temperature": None, "fallback": ""}


def _agents(seller: dict | None, analyst: dict | None, buyer: dict) -> dict[str, dict]:
    # The buyer is outside MAMS: resolve it as a baseline (no LLM, nothing to configure), then mark it.
    errors: dict[str, list[str]] = {}
    resolved = agents_resolve({"buyer": {"strategy": "linear"}, "seller": seller or {},
                                     "analyst": analyst or {}}, 0.7, errors)
    if errors:
        raise ValidationError(errors)
    resolved["buyer"] = dict(buyer)
    return resolved


@transaction.atomic
def live_start(*, owner: Any, session: Session, item_name: str, seller_agent: dict | None = None,
               analyst_agent: dict | None = None, max_rounds: int = 5, seed: int = 0,
               mode: str = NegotiationRun.Mode.HUMAN_BUYER, buyer: dict | None = None,
               task: dict | None = None, voice: bool | None = None, rules: str = "known") -> NegotiationRun:
    """Open a negotiation room for one item whose buyer is outside MAMS; it is running at once.

    `mode` is one of NegotiationRun.OUTSIDE_BUYER (a person by default, or an external agent with
    `buyer`, its recorded agent entry); `task` labels the scenario the room was made from; `rules`
    are the turn-taking rules (engine/protocol.py::Rules), a suite task's own (core-v2: hidden).
    """
    errors: dict[str, list[str]] = {}
    check_range(errors, "max_rounds", max_rounds, 1, settings.MAMS_MAX_ROUNDS_LIMIT)
    check_seed(errors, "seed", seed)
    scenario = scenario_check(errors, session=session, item_name=item_name)
    try:
        agents = _agents(seller_agent, analyst_agent, buyer or HUMAN)
    except ValidationError as exc:
        errors_merge(errors, exc)
    if errors:
        raise ValidationError(errors)
    _check_open_rooms(owner)
    if task:
        scenario["task"] = task
    now = timezone.now()
    return NegotiationRun.objects.create(
        session=session, owner=owner, item_name=scenario["buyer"]["item_name"], mode=mode,
        status=NegotiationRun.Status.RUNNING, seed=seed, agents=agents, scenario=scenario, max_rounds=max_rounds,
        started_at=now, heartbeat_at=now, **run_fingerprints(agents, rules=rules),
        # A person in a live room hears the sellers unless they ask not to; an external agent does not listen.
        voice=(mode == NegotiationRun.Mode.HUMAN_BUYER) if voice is None else bool(voice))


def _check_open_rooms(owner: Any) -> None:
    """Refuse a room beyond MAMS_MAX_OPEN_ROOMS_PER_USER open ones (live rooms and /env episodes together).

    The user's row is locked first, as for the batch cap, so two concurrent starts cannot both take
    the last place.
    """
    cap = settings.MAMS_MAX_OPEN_ROOMS_PER_USER
    if owner is None or cap <= 0:
        return
    get_user_model().objects.select_for_update().filter(pk=owner.pk).first()
    rooms = NegotiationRun.objects.filter(owner=owner, mode__in=NegotiationRun.OUTSIDE_BUYER,
                                          status=NegotiationRun.Status.RUNNING).count()
    if rooms >= cap:
        expiry = (f", or wait: a room with no buyer action for {sweeps.room_idle_note()} closes on its own"
                  if settings.MAMS_ROOM_IDLE_SECONDS > 0 else "")
        raise LimitExceeded(f"You already have {rooms} negotiations open as the buyer (live rooms and /env "
                            f"episodes together; the limit is {cap}, MAMS_MAX_OPEN_ROOMS_PER_USER). Finish one "
                            f"(accept an offer or walk away){expiry}.")


def room_expired(run: NegotiationRun) -> bool:
    """Whether the sweeper closed this room because its buyer went quiet (sweeps.rooms_expire)."""
    return run.status == NegotiationRun.Status.CANCELLED and run.error.startswith(f"{sweeps.ROOM_EXPIRED}:")


def round_waiting(ctx: RunContext, round_no: int) -> list[str] | None:
    """The sellers addressed in `round_no` that have not answered yet; None if the buyer has not spoken."""
    buyer = ctx.message(round_no, BUYER)
    if buyer is None:
        return None
    return [h for h in buyer.recipients if ctx.message(round_no, h) is None]


def _open_turn(run: NegotiationRun) -> tuple[NegotiationRun, Any, Any, int]:
    """The run re-read, its context and buyer view, and the round whose buyer turn is open now."""
    run.refresh_from_db()
    if run.mode not in NegotiationRun.OUTSIDE_BUYER:
        raise ConflictError("This run has an LLM buyer; only runs started with mode=human_buyer (or episodes "
                            "of the environment API) take turns from outside.", field="mode")
    if room_expired(run):
        raise ConflictError(f"This negotiation expired ({run.error}) and takes no more turns; start a new one "
                            "with POST /api/negotiations/start.", field="status")
    if run.status != NegotiationRun.Status.RUNNING:
        raise ConflictError(f"This negotiation is already {run.status}; it takes no more turns.", field="status")
    ctx = run_context(run)
    round_no = run.current_round
    waiting = round_waiting(ctx, round_no)
    if waiting is not None:
        raise ConflictError(f"Round {round_no} is still waiting for {', '.join(waiting) or 'the sellers'}; "
                            "wait for their replies (or watch the stream) before your next turn.", field="round")
    view = visibility.buyer_view(me=ctx.buyer, handles=ctx.handles, round_no=round_no, max_rounds=run.max_rounds,
                                 transcript=ctx.received(BUYER))
    return run, ctx, view, round_no


def live_message(*, run: NegotiationRun, text: str, recipients: list[str], price: Decimal | None = None
                 ) -> tuple[Message, tuple[str, ...]]:
    """Record the person's message for the open round and fan it out to the addressed sellers.

    Returns the message and the handles it reached; their replies arrive as Celery tasks finish.
    """
    run, ctx, view, round_no = _open_turn(run)
    if round_no > run.max_rounds:
        raise ConflictError(f"All {run.max_rounds} rounds have been played; accept a standing offer or walk "
                            "away.", field="round")
    errors: dict[str, list[str]] = {}
    named = [r for r in recipients if routing.handle_key(r) != ALL]
    if named and len(named) != len(recipients):
        errors["recipients"] = ['Send either ["all"] or a list of @handles, not both.']
    known = ", ".join(view.handles) or "none"
    # Addressing is explicit (`recipients`) or, with ["all"], by @mentions opening the text.
    to_check, where = (named, "recipients") if named else (routing.leading_mentions(text), "text")
    for name in to_check:
        if routing.handle_key(name) == ALL:
            continue
        if routing.canonical_handle(name, ctx.handles) is None:
            errors.setdefault(where, []).append(f"{name} is not a seller in this negotiation. Sellers: {known}.")
        elif routing.canonical_handle(name, view.handles) is None:
            errors.setdefault(where, []).append(
                f"{name} has left this negotiation (it declined). Sellers still in: {known}.")
    if price is not None and price > ctx.buyer.max_price:
        errors["price"] = [f"${money(price)} is above your maximum price of ${ctx.buyer.max_price}."]
    if errors:
        raise ValidationError(errors)
    action = BuyerAction(action=BuyerAct.MESSAGE, message=text, to=tuple(named) or (ALL,),
                         price=money(price) if price is not None else None)
    if play.buyer_turn_record(run=run, ctx=ctx, round_no=round_no,
                              decision=Decision(action=action, model="human")) is None:
        raise ConflictError(f"Your message for round {round_no} was already recorded.", field="round")
    msg = Message.objects.get(run=run, round_no=round_no, sender=BUYER)
    transaction.on_commit(lambda: play.fan_out(run_id=run.pk, round_no=round_no))
    return msg, tuple(msg.recipients)


def live_replies_wait(*, run_id: Any, round_no: int, recipients: tuple[str, ...], timeout: float,
                      interval: float = 0.25) -> list[Message]:
    """Poll Postgres until every addressed seller has answered `round_no` (or the run ended, or time ran out).

    The replies come back as the buyer receives them (the run's disclosure rule applied)."""
    deadline = time.monotonic() + timeout
    while True:
        replies = list(Message.objects.filter(run_id=run_id, round_no=round_no, sender_type="seller")
                       .order_by("created_at"))
        if (len(replies) >= len(recipients) or time.monotonic() >= deadline
                or NegotiationRun.objects.filter(pk=run_id, status__in=NegotiationRun.TERMINAL).exists()):
            run = NegotiationRun.objects.get(pk=run_id)
            ctx = run_context(run, transcript=())
            return [ctx.row_received(row, BUYER) for row in replies]
        time.sleep(interval)


def live_decide(*, run: NegotiationRun, decision: str, seller: str | None = None, price: Decimal | None = None,
                quantity: int | None = None, text: str = "") -> NegotiationRun:
    """Accept a seller's standing offer at exactly its price, or walk away; the run ends either way."""
    run, ctx, view, round_no = _open_turn(run)
    if decision == "accept":
        errors: dict[str, list[str]] = {}
        if quantity is not None and quantity != ctx.buyer.quantity:
            errors["quantity"] = [f"The quantity is fixed by the buyer's demand: {ctx.buyer.quantity}."]
        handle = None
        if not seller:
            errors["seller"] = ["Name the seller whose offer you accept (its @handle or id)."]
        else:
            by_id = {sid: h for h, sid in ctx.seller_ids.items()}
            handle = routing.canonical_handle(by_id.get(str(seller), seller), view.handles)
            if handle is None:
                errors["seller"] = [f"{seller} is not a seller still in this negotiation. Sellers: "
                                    f"{', '.join(view.handles) or 'none'}."]
        standing = view.standing_offers.get(handle) if handle else None
        if handle and standing is None:
            errors["seller"] = [f"{handle} has not made you an offer yet; there is nothing to accept."]
        elif handle and standing is not None:
            if price is not None and money(price) != standing:
                errors["price"] = [f"{handle}'s standing offer is ${standing}; you can accept only that price "
                                   "(send a counter-offer with a message to ask for another)."]
            elif standing > ctx.buyer.max_price:
                errors["price"] = [f"{handle}'s offer of ${standing} is above your maximum price of "
                                   f"${ctx.buyer.max_price}."]
        if errors:
            raise ValidationError(errors)
        action = BuyerAction(action=BuyerAct.ACCEPT, seller=handle, price=standing,
                             message=text or f"Deal: I accept {handle}'s offer at ${standing}.")
    elif decision == "walk_away":
        action = BuyerAction(action=BuyerAct.WALK_AWAY, message=text or "No deal, thank you.")
    else:
        raise ValidationError({"decision": ['Must be "accept" or "walk_away".']})
    if play.buyer_turn_record(run=run, ctx=ctx, round_no=round_no,
                              decision=Decision(action=action, model="human")) is None:
        raise ConflictError(f"Your turn for round {round_no} was already recorded.", field="round")
    run.refresh_from_db()
    return run

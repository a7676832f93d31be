"""Playing a run: the buyer's turn of a round, each seller's turn, advancing, finishing.

Every step is claim (short read or conditional write), call (the LLM, outside any transaction),
record (one short transaction). The record step inserts a message that is unique per
(run, round, sender), so a redelivered task writes nothing twice; state changes are conditional
updates (`current_round=r -> r+1`, `running -> completed`), so of two racing deliveries exactly
one moves the run. The last seller to answer a round advances it; a periodic sweeper re-queues
runs whose heartbeat went stale (services/sweeps.py). What happens when a run ends (the outcome, the
batch or sequence moving on, metrics and analysis) is services/lifecycle.py.
"""

from __future__ import annotations

import logging
from contextlib import nullcontext
from datetime import datetime
from decimal import Decimal
from functools import partial
from typing import Any

from django.conf import settings
from django.db import transaction
from django.utils import timezone

from negotiation import turn_rows
from negotiation.agents import spans
from negotiation.agents.decide import Decision, decide_buyer, decide_seller
from negotiation.dispatch import enqueue_round, enqueue_seller_turns
from negotiation.engine import audit, guardrails, protocol, routing, visibility
from negotiation.engine.types import (
    BUYER,
    BuyerAct,
    EndReason,
    Event,
    EventKind,
    Msg,
    SellerAct,
)
from negotiation.models import Batch, Message, NegotiationRun, RunEvent
from negotiation.run_context import RunContext, run_context
from negotiation.services import budgets
from negotiation.services.events import publish_on_commit
from negotiation.services.lifecycle import run_cancel, run_complete
from negotiation.services.sweeps import was_requeued
from negotiation.services.voice import voice_on_commit

log = logging.getLogger(__name__)
Status = NegotiationRun.Status
PRICE_COLUMN_LIMIT = Decimal("100000000")


def turn_seed(seed: int, round_no: int, slot: int) -> int:
    """A deterministic per-turn seed, so a batch's seeds pair its runs with another batch's."""
    return (seed * 7919 + round_no * 131 + slot) % 2_147_483_647


# --- the buyer's turn --------------------------------------------------------------------------

def round_play(*, run_id: Any, round_no: int, requeued: str | None = None) -> None:
    """The buyer speaks in `round_no`, then the addressed sellers are fanned out.

    `requeued` is the token of a sweeper's re-queue of a queued run (see `runs_sweep_queued`)."""
    claimed = _claim(run_id, round_no=round_no, requeued=requeued)
    if claimed is None or claimed[0].current_round != round_no:
        return
    run, said, found = claimed
    ctx = run_context(run, transcript=said)
    if ctx.message(round_no, BUYER) is None:
        if run.mode in NegotiationRun.OUTSIDE_BUYER:
            return  # a person or an external agent takes this turn through the API
        if not _budget_allows(run, found):
            return
        view = _buyer_view(run, ctx, round_no)
        check = partial(guardrails.buyer_rule_broken, me=ctx.buyer, standing_offers=view.standing_offers,
                        active=view.handles)
        decision = decide_buyer(view, spec=run.agents["buyer"], seed=turn_seed(run.seed, round_no, 0),
                                meta=spans.meta(run=run, round_no=round_no, role="buyer", handle=BUYER),
                                check=check, run_seed=run.seed)
        recipients = buyer_turn_record(run=run, ctx=ctx, round_no=round_no, decision=decision,
                                       budgeted=_budgeted(found))
        if recipients is None:
            return
        # This delivery recorded the buyer's message, so no seller can have answered it yet.
        enqueue_seller_turns(run.pk, round_no, [ctx.seller_ids[handle] for handle in recipients])
        return
    fan_out(run_id=run.pk, round_no=round_no)


def _budgeted(found: turn_rows.TurnRun) -> bool:
    return found.budget_usd is not None or found.budget_tokens is not None


def _budget_allows(run: NegotiationRun, found: turn_rows.TurnRun) -> bool:
    """Before a turn's LLM call: False (and the run cancelled) once the batch's budget is reached."""
    if not _budgeted(found):
        return True
    return budgets.budget_allows_turn(run_id=run.pk, batch_id=run.batch_id, budget_usd=found.budget_usd,
                                      budget_tokens=found.budget_tokens)


def _buyer_view(run: NegotiationRun, ctx: RunContext, round_no: int) -> Any:
    active = visibility.active_sellers(handles=ctx.handles, transcript=ctx.transcript)
    return visibility.buyer_view(me=ctx.buyer, handles=active, round_no=round_no, max_rounds=run.max_rounds,
                                 transcript=ctx.received(BUYER), rules=run.rules)


def buyer_turn_record(*, run: NegotiationRun, ctx: RunContext, round_no: int, decision: Decision,
                      budgeted: bool = False) -> tuple[str, ...] | None:
    """Guard, route and record the buyer's action; end the run if it ended.

    Returns the sellers to hear from (none when the run ended), or None if already recorded."""
    view = _buyer_view(run, ctx, round_no)
    action, events = guardrails.guard_buyer(decision.action, me=ctx.buyer, standing_offers=view.standing_offers,
                                            active=view.handles)
    recipients: tuple[str, ...] = ()
    if action.action == BuyerAct.MESSAGE:
        recipients, route_events = routing.resolve_recipients(to=action.to, text=action.message, active=view.handles)
        events += route_events
    step = protocol.after_buyer(action, recipients=recipients, round_no=round_no, max_rounds=run.max_rounds)
    events += audit.find_leaks(text=action.message, hidden={"max_price": ctx.buyer.max_price},
                               public_price=action.price, actor=BUYER)
    offered = [m.price for m in ctx.transcript if m.sender != BUYER and m.price is not None]
    if action.price is not None and audit.claim_inconsistent(text=action.message, price=action.price):
        events.append(Event(kind=EventKind.CLAIM_INCONSISTENT, actor=BUYER, original=action.price,
                            detail="the price in the text differs from the structured price"))
    for price in audit.unsupported_claims(text=action.message, offered=offered, own_price=action.price):
        events.append(Event(kind=EventKind.UNSUPPORTED_CLAIM, actor=BUYER, original=price,
                            detail=f"cited ${price} which no seller offered"))
    if decision.fallback:
        events.append(Event(kind=EventKind.FALLBACK, actor=BUYER, detail=decision.fallback_reason))
    events += _reask_events(decision, actor=BUYER)
    end = step if isinstance(step, protocol.End) else None
    with transaction.atomic() if events or end else nullcontext():
        msg = _insert_message(run=run, round_no=round_no, sender=BUYER, seller_id=None,
                              recipients=list(recipients), text=action.message, action=action.action.value,
                              price=action.price, reasoning=action.reasoning, decision=decision,
                              budgeted=budgeted)
        if msg is None:
            return None
        _insert_events(run, msg, round_no, events)
        if end is not None:
            run_complete(run=run, ctx=ctx, end=end, reasoning=action.reasoning or action.message)
            return ()
    return recipients


def fan_out(*, run_id: Any, round_no: int) -> None:
    """Enqueue a turn for every addressed seller that has not answered yet (safe to repeat)."""
    buyer = Message.objects.filter(run_id=run_id, round_no=round_no, sender=BUYER).first()
    run = NegotiationRun.objects.filter(pk=run_id).only("scenario", "status").first()
    if buyer is None or run is None or run.status != Status.RUNNING:
        return
    answered = set(Message.objects.filter(run_id=run_id, round_no=round_no, sender_type="seller")
                   .values_list("sender", flat=True))
    ids = {s["handle"]: s["id"] for s in run.scenario["sellers"]}
    missing = [h for h in buyer.recipients if h not in answered]
    enqueue_seller_turns(run_id, round_no, [ids[handle] for handle in missing])
    if not missing:  # every reply is in but the round never advanced (a crash in between)
        round_advance(run_id=run_id, round_no=round_no)


# --- a seller's turn ---------------------------------------------------------------------------

def seller_turn(*, run_id: Any, round_no: int, seller_id: str) -> None:
    found = turn_rows.run_for_turn(run_id)
    run = found.run if found else None
    if found is None or run is None or run.status != Status.RUNNING or run.current_round != round_no:
        return
    ctx = run_context(run, transcript=found.transcript)
    handle = next((h for h, i in ctx.seller_ids.items() if i == str(seller_id)), None)
    buyer_msg = ctx.message(round_no, BUYER)
    if handle is None or buyer_msg is None or handle not in buyer_msg.recipients:
        return
    if ctx.message(round_no, handle) is None:
        if not _budget_allows(run, found):
            return
        me = ctx.sellers[handle]
        view = visibility.seller_view(me=me, item_name=ctx.buyer.item_name, quantity=ctx.buyer.quantity,
                                      round_no=round_no, transcript=ctx.received(handle), rules=run.rules,
                                      max_rounds=run.max_rounds)
        slot = ctx.handles.index(handle) + 1
        # Sellers answer in rounds 1..max_rounds (t = 0..max_rounds-1); the rules set the baseline's deadline.
        previous = next((m.price for m in reversed(view.thread)
                         if m.sender == handle and m.action in (SellerAct.OFFER, SellerAct.ACCEPT)), None)
        check = partial(guardrails.seller_rule_broken, me=me, previous_offer=previous, buyer_counter=buyer_msg.price)
        decision = decide_seller(view, spec=run.agents["seller"], seed=turn_seed(run.seed, round_no, slot),
                                 deadline=protocol.seller_deadline(rules=run.rules, max_rounds=run.max_rounds),
                                 meta=spans.meta(run=run, round_no=round_no, role="seller", handle=handle),
                                 check=check, run_seed=run.seed, slot=slot)
        action, events = guardrails.guard_seller(decision.action, me=me, previous_offer=previous,
                                                 buyer_counter=buyer_msg.price)
        events += audit.find_leaks(text=action.message, actor=handle, public_price=action.price,
                                   hidden={"cost_price": me.cost_price, "least_price": me.least_price})
        if action.price is not None and audit.claim_inconsistent(text=action.message, price=action.price):
            events.append(Event(kind=EventKind.CLAIM_INCONSISTENT, actor=handle, original=action.price,
                                detail="the price in the text differs from the structured price"))
        if decision.fallback:
            events.append(Event(kind=EventKind.FALLBACK, actor=handle, detail=decision.fallback_reason))
        events += _reask_events(decision, actor=handle)
        with transaction.atomic() if events else nullcontext():
            msg = _insert_message(run=run, round_no=round_no, sender=handle, seller_id=seller_id,
                                  recipients=[BUYER], text=action.message, action=action.action.value,
                                  price=action.price, reasoning=action.reasoning, decision=decision,
                                  budgeted=_budgeted(found))
            if msg is not None:
                _insert_events(run, msg, round_no, events)
    round_advance(run_id=run_id, round_no=round_no, run=run)


def round_advance(*, run_id: Any, round_no: int, run: NegotiationRun | None = None) -> None:
    """When every addressed seller has answered, move to the next round or end the run.

    The transcript is read once, before the conditional update: once every addressed seller has
    answered, nothing more can be said in this round, so the read cannot go stale. Moving on is one
    conditional UPDATE (only one delivery wins it); ending also writes the outcome, in one transaction.
    """
    # One read of the whole transcript (a few dozen short rows at most): the round's replies decide
    # whether to move on, and the last seller needs the rest to see who is still active.
    transcript = turn_rows.transcript(run_id)
    said = {m.sender: m.recipients for m in transcript if m.round_no == round_no}
    if BUYER not in said or any(handle not in said for handle in said[BUYER]):
        return
    run = run or NegotiationRun.objects.filter(pk=run_id).first()
    if run is None:
        return
    ctx = run_context(run, transcript=transcript)
    active = visibility.active_sellers(handles=ctx.handles, transcript=ctx.transcript)
    replies = [m for handle in ctx.handles for m in ctx.transcript if m.round_no == round_no and m.sender == handle]
    end = protocol.after_sellers(active_after=active, rules=run.rules, round_no=round_no, replies=replies,
                                 last=run_last_round(run))
    with transaction.atomic() if end is not None else nullcontext():
        if not turn_rows.round_move(run_id, round_no):
            return
        run.current_round = round_no + 1
        if end is not None:
            run_complete(run=run, ctx=ctx, end=end, reasoning=_END_WORDS.get(end.reason, end.reason.value)
                         .format(seller=end.seller, price=end.price))
            return
    if run.mode == NegotiationRun.Mode.AGENT:
        enqueue_round(run_id, round_no + 1)


_END_WORDS = {
    EndReason.ALL_DECLINED: "every seller declined",
    EndReason.ACCEPTED: "{seller} accepted the buyer's counter of ${price}, which is binding under hidden rules",
    EndReason.MAX_ROUNDS: "the run reached its hidden last round",
}


def run_last_round(run: NegotiationRun) -> int:
    """The round after whose seller replies the run ends (engine/protocol.py::last_round).

    Never stored and never shown before the run ends: it is recomputed from the seed with the
    deployment's MAMS_DEADLINE_KEY, so an outside buyer that chose its seed still cannot know it.
    """
    return protocol.last_round(rules=run.rules, seed=run.seed, max_rounds=run.max_rounds,
                               key=settings.MAMS_DEADLINE_KEY or settings.SECRET_KEY)


# --- claiming, finishing, failing -------------------------------------------------------------

def _claim(run_id: Any, *, round_no: int = 1, requeued: str | None = None
           ) -> tuple[NegotiationRun, tuple[Msg, ...], turn_rows.TurnRun] | None:
    """Start a queued run (once), or return the running one with its transcript; None when there is
    nothing to do.

    A queued run has no heartbeat until the sweeper re-queues it; the re-queue writes one and sends
    it with the task as a token. Only the delivery carrying the current token may start the run, and
    the start is conditional on it, so if the original task was not lost after all, exactly one of
    the two plays the turn and the other does nothing. The original may also arrive after the
    re-queue has started the run (it then finds it running, round 1 not yet answered): the re-queue
    left a mark in Redis, and a token-less round-1 delivery of a marked run does nothing. (A
    redelivery of the re-queued task carries its token, and the stale-run sweeper sends one too.)
    """
    found = turn_rows.run_for_turn(run_id)
    if found is None or found.run.status in NegotiationRun.TERMINAL:
        return None
    run = found.run
    if found.batch_status == Batch.Status.CANCELLED:
        run_cancel(run_id=run.pk, reason=found.stop_reason)
        return None
    if run.status == Status.QUEUED:
        if run.heartbeat_at is not None and (requeued is None or datetime.fromisoformat(requeued) != run.heartbeat_at):
            return None  # superseded by a sweeper's re-queue
        now = timezone.now()
        started = NegotiationRun.objects.filter(pk=run.pk, status=Status.QUEUED, heartbeat_at=run.heartbeat_at
                                                ).update(status=Status.RUNNING, started_at=now, heartbeat_at=now)
        if run.batch_id:
            Batch.objects.filter(pk=run.batch_id, status=Batch.Status.QUEUED).update(status=Batch.Status.RUNNING)
        if started:
            run.status, run.started_at, run.heartbeat_at = Status.RUNNING, now, now
        else:  # another delivery started it meanwhile and may have spoken: read both again
            run.refresh_from_db()
            return (run, turn_rows.transcript(run.pk), found) if run.status == Status.RUNNING else None
        return (run, found.transcript, found) if run.status == Status.RUNNING else None  # started it just now
    if run.status != Status.RUNNING:
        return None
    # Found running: a duplicate or redelivered task (rare), so the Redis read costs no normal turn anything.
    if round_no == 1 and requeued is None and run.current_round == 1 and was_requeued(run.pk):
        log.info("run %s: the original round-1 task arrived after its re-queue started the run; ignored", run.pk)
        return None
    return run, found.transcript, found


def _reask_events(decision: Decision, *, actor: str) -> list[Event]:
    """A REASK event when the agent's first answer broke a rule and it was asked once more.

    The detail says that it happened, not the rule's words: those name the agent's own hidden
    numbers (its floor, its maximum), and events are shown on pages that outside buyers may read.
    """
    if not decision.reask_reason:
        return []
    return [Event(kind=EventKind.REASK, actor=actor,
                  detail=f"{actor}'s first answer broke a price rule; it was told which and asked once more.")]


def _insert_message(*, run: NegotiationRun, round_no: int, sender: str, seller_id: Any, recipients: list[str],
                    text: str, action: str, price: Decimal | None, reasoning: str, decision: Decision,
                    budgeted: bool = False) -> Message | None:
    # A turn is one INSERT, committed on its own (autocommit) unless the caller also writes events or
    # the outcome. A duplicate delivery's INSERT writes nothing (ON CONFLICT DO NOTHING, see
    # turn_rows), so the caller's transaction is not aborted and it returns before writing anything.
    # Progress is the message itself: the sweeper reads the newest message's time, so a turn does
    # not also UPDATE the run's heartbeat.
    msg = Message(run=run, round_no=round_no, sender=sender, seller_id=seller_id,
                  sender_type="buyer" if sender == BUYER else "seller", recipients=recipients, text=text[:4000],
                  action=action, price=price, reasoning=reasoning[:4000], llm_model=decision.model,
                  llm_calls=decision.llm_calls, prompt_tokens=decision.prompt_tokens,
                  completion_tokens=decision.completion_tokens, latency_ms=decision.latency_ms,
                  repaired=decision.repaired, fallback=decision.fallback, raw_output=decision.raw)
    if not turn_rows.message_insert(msg):
        log.info("run %s round %s: %s already answered; duplicate delivery ignored", run.pk, round_no, sender)
        return None
    if budgeted:  # the batch's Redis sums, which only its budget check reads
        budgets.usage_record_on_commit(batch_id=run.batch_id, model=decision.model,
                                       prompt_tokens=decision.prompt_tokens,
                                       completion_tokens=decision.completion_tokens)
    publish_on_commit(run.pk, "message", message_id=str(msg.pk), round=round_no, sender=sender)
    voice_on_commit(run=run, msg=msg)  # a seller reply of a voice run is spoken (services/voice.py)
    return msg


def _column_price(value: Decimal | None) -> Decimal | None:
    # An absurd LLM price is still worth recording as an event, but it cannot fit the money column.
    return value if value is not None and abs(value) < PRICE_COLUMN_LIMIT else None


def _insert_events(run: NegotiationRun, msg: Message, round_no: int, events: list[Event]) -> None:
    if not events:
        return
    rows = []
    for e in events:
        detail = e.detail if _column_price(e.original) == e.original else f"{e.detail} (price {e.original})"
        rows.append(RunEvent(run=run, message=msg, round_no=round_no, actor=e.actor, kind=e.kind.value,
                             detail=detail[:2000], original_price=_column_price(e.original),
                             repaired_price=_column_price(e.repaired)))
    RunEvent.objects.bulk_create(rows)



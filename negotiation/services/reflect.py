"""Reflect sequences: N runs one after another, a coach's note after each, for the sides that reflect.

NegotiationGym's idea, done so that every result can be traced. After each run of a sequence a
coach (the sequence's analyst profile, through the gateway, under the global rate limiter, on the
analysis queue) reads one agent's side of that run and the agent's own utility
(negotiation/engine/utility.py), and writes ONE short strategy note. The note is appended to that
agent's prompt for the next run (the most recent NOTES_KEPT are kept). Information asymmetry holds
for the coach too: the buyer's coach reads the buyer's view, and each seller's coach reads only that
seller's own thread and configuration, and its note goes only into that seller's prompt.

This module writes the sequence and cuts each agent's case out of its own view (`buyer_case`,
`seller_case`); the coach's prompts, in both formats, and its call are negotiation/agents/coach.py.

Every prompt a run plays with is stored as a `PromptVersion` whose id the run records, so the agent
fingerprint changes whenever notes change, and any run can be replayed. A coach answer that is not
a valid note (after one repair) is counted as a fallback and the agent plays on with the notes it
had. Steps are exactly-once: the coach's result is recorded with a conditional update, and the next
run is unique per (sequence, index), so a redelivered task writes nothing twice.
"""

from __future__ import annotations

import logging
from datetime import timedelta
from typing import Any

from django.conf import settings
from django.contrib.auth import get_user_model
from django.core.exceptions import ValidationError
from django.db import transaction
from django.utils import timezone

from negotiation.agents.coach import CoachCase, ask_coach
from negotiation.agents.fingerprint import run_fingerprints
from negotiation.agents.gateway import LLMReply
from negotiation.dispatch import enqueue_reflect, enqueue_round
from negotiation.engine import visibility
from negotiation.engine.types import BUYER
from negotiation.engine.utility import run_utilities
from negotiation.models import NegotiationRun, Outcome, ReflectSequence, SequenceStep, Session
from negotiation.run_context import run_context
from negotiation.services.errors import LimitExceeded
from negotiation.services.launch import agents_resolve, check_range, check_temperature, scenario_check
from negotiation.services.prompt_versions import agents_with_notes, prompt_versions_record

log = logging.getLogger(__name__)
Mode = ReflectSequence.Mode
MAX_LENGTH = 100
REFLECTS = {Mode.NONE: (), Mode.BUYER: ("buyer",), Mode.SELLER: ("seller",), Mode.BOTH: ("buyer", "seller")}

# --- creating a sequence -----------------------------------------------------------------------

@transaction.atomic
def sequence_create(*, owner: Any, session: Session, item_name: str, mode: str, length: int,
                    agents: dict | None = None, temperature: float = 0.7, max_rounds: int = 5, base_seed: int = 0,
                    seed_policy: str = ReflectSequence.SeedPolicy.INCREMENT) -> ReflectSequence:
    """Check a sequence, store it and queue its first run. Errors by field path; nothing half-written."""
    errors: dict[str, list[str]] = {}
    if mode not in Mode.values:
        errors.setdefault("mode", []).append(f"Must be one of {', '.join(Mode.values)}.")
    if seed_policy not in ReflectSequence.SeedPolicy.values:
        errors.setdefault("seed_policy", []).append(
            f"Must be one of {', '.join(ReflectSequence.SeedPolicy.values)}.")
    check_range(errors, "length", length, 1, MAX_LENGTH)
    check_range(errors, "max_rounds", max_rounds, 1, settings.MAMS_MAX_ROUNDS_LIMIT)
    check_range(errors, "base_seed", base_seed, 0, 2**31 - 1 - (MAX_LENGTH if isinstance(length, int) else 0))
    resolved = agents_resolve(agents, check_temperature(errors, "temperature", temperature), errors)
    if resolved and mode in Mode.values:
        _check_reflectors(resolved, mode, errors)
    scenario: dict[str, Any] = {}
    if not isinstance(item_name, str) or not item_name.strip():
        errors.setdefault("item_name", []).append("Name the one demanded item the sequence negotiates.")
    else:
        scenario = scenario_check(errors, session=session, item_name=item_name)
    if errors:
        raise ValidationError(errors)
    _check_active_sequences(owner)
    sequence = ReflectSequence.objects.create(
        owner=owner, session=session, item_name=scenario["buyer"]["item_name"], mode=mode, length=length,
        agents=resolved, max_rounds=max_rounds, base_seed=base_seed, seed_policy=seed_policy)
    _step_create(sequence=sequence, index=0, agents=resolved, scenario=scenario)
    return sequence


def _check_reflectors(agents: dict[str, dict], mode: str, errors: dict[str, list[str]]) -> None:
    for role in REFLECTS[Mode(mode)]:
        if agents[role]["strategy"] != "llm":
            errors.setdefault(f"agents.{role}.strategy", []).append(
                f"In mode '{mode}' the {role} reflects, so it must be an LLM (strategy 'llm'): a baseline "
                "strategy cannot read a coach's notes.")
    if mode == Mode.NONE:
        return
    if agents["analyst"]["strategy"] != "llm":
        errors.setdefault("agents.analyst", []).append(
            "The coach is the analyst agent: give it an LLM profile, chat or base model (a baseline strategy "
            "cannot write a note).")


def _check_active_sequences(owner: Any) -> None:
    """At most MAMS_MAX_ACTIVE_BATCHES_PER_USER running sequences per user (the batches' cap, counted apart)."""
    cap = settings.MAMS_MAX_ACTIVE_BATCHES_PER_USER
    if owner is None or cap <= 0:
        return
    get_user_model().objects.select_for_update().filter(pk=owner.pk).first()  # two requests cannot both pass
    running = ReflectSequence.objects.filter(owner=owner, status=ReflectSequence.Status.RUNNING).count()
    if running >= cap:
        raise LimitExceeded(f"You already have {running} sequences running (the limit is {cap}, "
                            "MAMS_MAX_ACTIVE_BATCHES_PER_USER); wait for one to finish.", field="length")


def _seed(sequence: ReflectSequence, index: int) -> int:
    if sequence.seed_policy == ReflectSequence.SeedPolicy.FIXED:
        return sequence.base_seed
    return sequence.base_seed + index


def _step_create(*, sequence: ReflectSequence, index: int, agents: dict[str, dict], scenario: dict[str, Any]
                 ) -> SequenceStep:
    """The run of step `index` with these agents (prompt versions stored), queued after commit.

    Every run of a sequence plays the first run's scenario snapshot, so an edit to the session
    during a sequence cannot change what it measures.
    """
    versions = prompt_versions_record(agents=agents)
    run = NegotiationRun.objects.create(
        session=sequence.session, owner=sequence.owner, item_name=sequence.item_name, seed=_seed(sequence, index),
        agents=agents, scenario=scenario, max_rounds=sequence.max_rounds, **run_fingerprints(agents))
    step = SequenceStep.objects.create(sequence=sequence, index=index, run=run, buyer_prompt=versions.get("buyer"),
                                       seller_prompt=versions.get("seller"))
    transaction.on_commit(lambda: enqueue_round(run.pk, 1))
    return step


def sequence_run_ended(*, run_id: Any) -> None:
    """Called by the play service in the transaction that ends a run without a batch: if the run is a
    sequence's, its reflection is queued after commit."""
    if SequenceStep.objects.filter(run_id=run_id).exists():
        transaction.on_commit(lambda: enqueue_reflect(run_id))


# --- after each run: utilities, the coach, the next run ----------------------------------------

def buyer_case(*, run: NegotiationRun, utility: float) -> CoachCase:
    """The buyer's coach sees the buyer's view only: its constraints, the handles, what was said to it."""
    ctx = run_context(run)
    me = ctx.buyer
    view = visibility.buyer_view(me=me, handles=ctx.handles, round_no=run.current_round,
                                 max_rounds=run.max_rounds, transcript=ctx.received(BUYER))
    outcome = run.outcome
    if outcome.decision == Outcome.Decision.DEAL:
        result = (f"It bought from {outcome.chosen_handle} at ${outcome.final_price} per unit after "
                  f"{outcome.rounds} rounds.")
    else:
        result = f"No deal ({outcome.reason}) after {outcome.rounds} rounds."
    return CoachCase(
        role="buyer", title="You coach the BUYER.",
        private=f"Its private constraints: {me.quantity} x {me.item_name}, acceptable price ${me.min_price:.2f} to "
                f"${me.max_price:.2f} per unit. Sellers: {', '.join(ctx.handles)}.",
        utility_rule="Its utility is (max − price) / (max − min) on a deal (1 at its minimum, 0 at its maximum) "
                     "and 0 with no deal.",
        notes=tuple(run.agents["buyer"].get("notes") or ()),
        transcript=f"Transcript (what the buyer saw), {run.max_rounds} rounds at most:",
        thread=tuple(view.thread), result=result, utility=utility)


def seller_case(*, run: NegotiationRun, handle: str, utility: float) -> CoachCase:
    """A seller's coach sees that seller's own configuration and thread, nothing of its rivals."""
    ctx = run_context(run)
    me = ctx.sellers[handle]
    view = visibility.seller_view(me=me, item_name=ctx.buyer.item_name, quantity=ctx.buyer.quantity,
                                  round_no=run.current_round, transcript=ctx.received(handle))
    outcome = run.outcome
    sold = outcome.decision == Outcome.Decision.DEAL and outcome.chosen_handle == handle
    result = (f"The buyer bought from it at ${outcome.final_price} per unit." if sold
              else "The buyer did not buy from it.")
    return CoachCase(
        role="seller", title=f"You coach the SELLER {handle}.",
        private=f"Its private configuration: {view.quantity} x {view.item_name} wanted; it asks "
                f"${me.selling_price:.2f}, its floor is ${me.least_price:.2f}, its cost ${me.cost_price:.2f}; style "
                f"{me.style}; priorities: customer retention {me.retention_weight * 100:.0f}%, profit "
                f"{me.profit_weight * 100:.0f}%.",
        utility_rule="Its utility is retention weight + profit weight × (price − cost) / (ask − cost) when it makes "
                     "the sale, and 0 when it does not.",
        notes=tuple((run.agents["seller"].get("notes") or {}).get(handle) or ()),
        transcript="Transcript (its own thread with the buyer):",
        thread=tuple(view.thread), result=result, utility=utility)


def sequence_step_reflect(*, run_id: Any, give_up: bool = False) -> None:
    """After a sequence's run ends: record each side's utility, ask the coach for the reflecting
    sides' notes, and start the next run with them (or finish the sequence). Idempotent.

    `give_up=True` (the last retry after transient coach errors) skips the coach: the agents play on
    without new notes, and each skipped note is counted as a fallback.
    """
    step = SequenceStep.objects.select_related("sequence", "run").filter(run_id=run_id).first()
    if step is None or step.reflected_at is not None or step.run.status not in NegotiationRun.TERMINAL:
        return
    sequence, run = step.sequence, step.run
    if run.status != NegotiationRun.Status.COMPLETED:
        _step_failed(step, f"run {step.index + 1} of {sequence.length} {run.status}: {run.error or 'no reason'}")
        return
    outcome = run.outcome
    deal = outcome.decision == Outcome.Decision.DEAL
    u = run_utilities(scenario=run.scenario, deal=deal, chosen=outcome.chosen_handle or None,
                      price=outcome.final_price)
    notes: dict[str, str] = {}
    errors: dict[str, str] = {}
    replies: list[LLMReply] = []
    last = step.index + 1 >= sequence.length
    if not last and sequence.status == ReflectSequence.Status.RUNNING:
        asks: list[tuple[str, CoachCase]] = []
        if "buyer" in REFLECTS[Mode(sequence.mode)]:
            asks.append((BUYER, buyer_case(run=run, utility=u["buyer"])))
        if "seller" in REFLECTS[Mode(sequence.mode)]:
            asks += [(h, seller_case(run=run, handle=h, utility=v)) for h, v in u["sellers"].items()]
        for i, (who, case) in enumerate(asks):
            if give_up:
                errors[who] = "the coach's provider kept failing; gave up after the last retry"
                continue
            note, got, error = ask_coach(spec=run.agents["analyst"], case=case, seed=run.seed * 31 + i)
            replies += got
            if note is None:
                errors[who] = error
            else:
                notes[who] = note
    with transaction.atomic():
        done = SequenceStep.objects.filter(pk=step.pk, reflected_at=None).update(
            buyer_utility=u["buyer"], seller_utility=u["seller_side"], seller_utilities=u["sellers"], notes=notes,
            coach_calls=len(replies), coach_prompt_tokens=sum(r.prompt_tokens for r in replies),
            coach_completion_tokens=sum(r.completion_tokens for r in replies),
            coach_latency_ms=sum(r.latency_ms for r in replies), coach_fallbacks=len(errors), coach_errors=errors,
            reflected_at=timezone.now())
        if not done:
            return  # another delivery recorded this step first
        seq = ReflectSequence.objects.select_for_update().get(pk=sequence.pk)
        if seq.status != ReflectSequence.Status.RUNNING:
            return
        if last:
            seq.status, seq.finished_at = ReflectSequence.Status.COMPLETED, timezone.now()
            seq.save(update_fields=["status", "finished_at"])
            return
        sellers = {h: n for h, n in notes.items() if h != BUYER}
        agents = agents_with_notes(run.agents, buyer=notes.get(BUYER), sellers=sellers)
        _step_create(sequence=seq, index=step.index + 1, agents=agents, scenario=run.scenario)
    if errors:
        log.info("sequence %s step %s: no note for %s", sequence.pk, step.index, ", ".join(errors))


def sequences_sweep(*, stale_after: timedelta) -> int:
    """Backstop for what an enqueue after commit can lose (Redis down at that moment, a killed process):
    the reflection of a run that ended more than `stale_after` ago and was never reflected on, and the
    first round of a sequence's run still queued, never started, after `stale_after`. The batch
    sweeper does not see these runs (they have no batch). Safe to repeat: a reflection is idempotent,
    and a round task for a run that has started does nothing twice."""
    cutoff = timezone.now() - stale_after
    steps = SequenceStep.objects.filter(reflected_at=None, sequence__status=ReflectSequence.Status.RUNNING)
    lost = list(steps.filter(run__status__in=NegotiationRun.TERMINAL, run__ended_at__lt=cutoff)
                .values_list("run_id", flat=True)[:500])
    unstarted = list(steps.filter(run__status=NegotiationRun.Status.QUEUED, run__heartbeat_at=None,
                                  run__created_at__lt=cutoff).values_list("run_id", flat=True)[:500])
    for run_id in lost:
        enqueue_reflect(run_id)
    for run_id in unstarted:
        enqueue_round(run_id, 1)
    if lost or unstarted:
        log.warning("sequences: re-queued %d reflection(s) and %d first round(s)", len(lost), len(unstarted))
    return len(lost) + len(unstarted)


def _step_failed(step: SequenceStep, reason: str) -> None:
    with transaction.atomic():
        SequenceStep.objects.filter(pk=step.pk, reflected_at=None).update(reflected_at=timezone.now())
        ReflectSequence.objects.filter(pk=step.sequence_id, status=ReflectSequence.Status.RUNNING).update(
            status=ReflectSequence.Status.FAILED, error=reason[:2000], finished_at=timezone.now())


def sequence_step_fail(*, run_id: Any, reason: str) -> None:
    """A bug in a reflection must not leave its sequence running forever: end it failed, with why."""
    step = SequenceStep.objects.filter(run_id=run_id).first()
    if step is not None:
        _step_failed(step, f"the reflection after run {step.index + 1} failed: {reason}")


__all__ = ["buyer_case", "seller_case", "sequence_create", "sequence_run_ended", "sequence_step_fail",
           "sequence_step_reflect", "sequences_sweep"]

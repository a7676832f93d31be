"""Reflect sequences: N runs one after another, a coach's note after each, for the sides that reflect.

NegotiationGym's idea, done so that every result can be traced. After each run of a sequence a
coach (the sequence's analyst profile, through the gateway, under the global rate limiter, on the
analysis queue) reads one agent's side of that run and the agent's own utility
(negotiation/engine/utility.py), and writes ONE short strategy note. The note is appended to that
agent's prompt for the next run (the most recent NOTES_KEPT are kept). Information asymmetry holds
for the coach too: the buyer's coach reads the buyer's view, and each seller's coach reads only that
seller's own thread and configuration, and its note goes only into that seller's prompt.

The coach speaks both prompt formats, built from one `CoachCase` so the two cannot differ in what
they reveal: a chat model gets instructions, and a base model such as the local Gemma 3 270M gets
two worked examples and then the case, ending where the note's JSON begins (DESIGN, "Facts
measured": instructions make it echo, examples make it write a plausible JSON line).

Every prompt a run plays with is stored as a `PromptVersion` whose id the run records, so the agent
fingerprint changes whenever notes change, and any run can be replayed. A coach answer that is not
a valid note (after one repair) is counted as a fallback and the agent plays on with the notes it
had. Steps are exactly-once: the coach's result is recorded with a conditional update, and the next
run is unique per (sequence, index), so a redelivered task writes nothing twice.
"""

from __future__ import annotations

import logging
from dataclasses import dataclass
from datetime import timedelta
from typing import Any

from django.conf import settings
from django.contrib.auth import get_user_model
from django.core.exceptions import ValidationError
from django.db import transaction
from django.utils import timezone
from pydantic import BaseModel, ConfigDict, Field, field_validator
from pydantic import ValidationError as PydanticError

from negotiation.agents.fingerprint import run_fingerprints
from negotiation.agents.gateway import LLMError, LLMReply, complete, get_profile
from negotiation.agents.outputs import OutputError, extract_json
from negotiation.agents.prompts import NOTE_MAX_CHARS
from negotiation.dispatch import enqueue_reflect, enqueue_round
from negotiation.engine import visibility
from negotiation.engine.types import BUYER, Msg
from negotiation.engine.utility import run_utilities
from negotiation.models import NegotiationRun, Outcome, ReflectSequence, SequenceStep, Session
from negotiation.run_context import run_context
from negotiation.services.errors import LimitExceeded
from negotiation.services.launch import agents_resolve, check_range, scenario_for
from negotiation.services.prompt_versions import agents_with_notes, prompt_versions_record

log = logging.getLogger(__name__)
Mode = ReflectSequence.Mode
MAX_LENGTH = 100
COACH_MAX_TOKENS = 200
COACH_COMPLETION_MAX_TOKENS = 90  # a 300-character note is about 75 tokens
# A base model's context is small (the local server's is 2,048 tokens) and it copies what it reads
# last, so its case holds only the end of the transcript, each line cut short.
COMPLETION_LINES, COMPLETION_REPAIR_LINES, COMPLETION_LINE_CHARS = 8, 4, 160
REFLECTS = {Mode.NONE: (), Mode.BUYER: ("buyer",), Mode.SELLER: ("seller",), Mode.BOTH: ("buyer", "seller")}

COACH_SYSTEM = (
    "You are a negotiation coach. You privately advise ONE agent of a marketplace negotiation, and you "
    "see only what that agent saw. Read its last negotiation and its utility, and write ONE short "
    "strategy note (one or two sentences, at most 40 words) that would raise its utility in its next "
    "negotiation with the same counterparts. Be concrete: prices, timing, wording. Answer with ONE JSON "
    'object and nothing else: {"note": "<the note>"}'
)
REPAIR = 'That answer was not usable ({error}). Reply with only {{"note": "<one short strategy note>"}}.'
COACH_FEWSHOT_HEAD = """Below are strategy notes a negotiation coach wrote after marketplace negotiations. The coach saw only what one agent saw, read its outcome and its utility (0 worst, 1 best), and wrote one short, concrete note to raise that utility next time.

"""  # noqa: E501 (the examples' lines are the model's input, not code)
COACH_EXAMPLES = {"buyer": """You coach the BUYER.
Its private constraints: 3 x Desk Lamp, acceptable price $20.00 to $30.00 per unit. Sellers: @LampCo, @BrightShop.
R1 buyer -> all: [message $28.00] Can you do $28 each?
R1 @LampCo -> buyer: [offer $27.00] $27 each.
R1 @BrightShop -> buyer: [offer $25.00] I can do $25.
R2 buyer -> @BrightShop: [accept $25.00] Deal at $25.
Outcome: It bought from @BrightShop at $25.00 per unit after 2 rounds.
Its utility in this negotiation: 0.500
{"note": "Open near $21, not $28, and tell each seller the other's lower offer before accepting."}

""", "seller": """You coach the SELLER @GearBarn.
Its private configuration: 2 x Backpack wanted; it asks $60.00, its floor is $45.00, its cost $35.00; style rude; priorities: customer retention 30%, profit 70%.
R1 buyer -> all: [message $40.00] Would you take $40?
R1 @GearBarn -> buyer: [decline] No. Too low.
Outcome: The buyer did not buy from it.
Its utility in this negotiation: 0.000
{"note": "Never decline a first counter: offer $55 and concede in small steps toward $45."}

"""}  # noqa: E501
NOTE_PRIMER = '{"note": "'


class CoachNote(BaseModel):
    """The coach's answer: one note of a sensible length, whitespace collapsed."""

    model_config = ConfigDict(extra="ignore")

    note: str = Field(min_length=8, max_length=NOTE_MAX_CHARS)

    @field_validator("note", mode="before")
    @classmethod
    def _squash(cls, v: Any) -> Any:
        return " ".join(v.split()) if isinstance(v, str) else v


def parse_note(text: str) -> str:
    """The note in a coach's text, or OutputError saying what was wrong."""
    try:
        return CoachNote.model_validate(extract_json(text)).note
    except PydanticError as exc:
        err = exc.errors()[0]
        raise OutputError(f"{'.'.join(str(p) for p in err['loc']) or 'note'}: {err['msg']}") from exc


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
    if isinstance(temperature, bool) or not isinstance(temperature, int | float) or not 0 <= temperature <= 2:
        errors.setdefault("temperature", []).append("Must be a number from 0 to 2.")
        temperature = 0.7
    resolved = agents_resolve(agents, float(temperature), errors)
    if resolved and mode in Mode.values:
        _check_reflectors(resolved, mode, errors)
    scenario: dict[str, Any] = {}
    if not isinstance(item_name, str) or not item_name.strip():
        errors.setdefault("item_name", []).append("Name the one demanded item the sequence negotiates.")
    else:
        try:
            scenario = scenario_for(session=session, item_name=item_name)
        except ValidationError as exc:
            for key, msgs in exc.message_dict.items():
                errors.setdefault(key, []).extend(msgs)
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

@dataclass(frozen=True)
class CoachCase:
    """What one agent's coach may read: built from that agent's own view only, rendered in either format."""

    role: str  # "buyer" or "seller"
    title: str  # whom the coach coaches
    private: str  # the agent's own constraints or configuration
    utility_rule: str
    notes: tuple[str, ...]
    transcript: str  # the heading of the transcript
    thread: tuple[Msg, ...]
    result: str
    utility: float


def _line(m: Msg, width: int = 400) -> str:
    price = f" ${m.price:.2f}" if m.price is not None else ""
    to = ", ".join(m.recipients) or "-"
    return f"R{m.round_no} {m.sender} -> {to}: [{m.action}{price}] {m.text[:width]}"


def _notes_block(notes: tuple[str, ...]) -> str:
    return "Notes it already follows:\n" + "\n".join(f"- {n}" for n in notes) if notes else "No notes yet."


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


def coach_chat(case: CoachCase) -> list[dict[str, str]]:
    """The case for a chat model: the instructions, then everything the agent saw."""
    lines = [case.title, case.private, case.utility_rule, _notes_block(case.notes), case.transcript,
             *(_line(m) for m in case.thread), f"Outcome: {case.result}",
             f"Its utility in this negotiation: {case.utility:.3f}"]
    return [{"role": "system", "content": COACH_SYSTEM}, {"role": "user", "content": "\n".join(lines)}]


def coach_fewshot(role: str) -> str:
    """The two worked examples, the one for `role` last: the base model follows the example nearest
    the case (measured on Gemma 3 270M: with the seller's example last, the buyer got a seller's note)."""
    other = "seller" if role == "buyer" else "buyer"
    return COACH_FEWSHOT_HEAD + COACH_EXAMPLES[other] + COACH_EXAMPLES[role]


def coach_completion(case: CoachCase, *, last: int = COMPLETION_LINES) -> str:
    """The case for a base model, in the examples' shape: the end of the transcript, then the primer.

    The agent's earlier notes are left out: given them, Gemma 3 270M copied an old note word for
    word instead of reading the run (measured); the chat coach still reads them.
    """
    lines = [case.title, case.private, *(_line(m, COMPLETION_LINE_CHARS) for m in case.thread[-last:]),
             f"Outcome: {case.result}", f"Its utility in this negotiation: {case.utility:.3f}"]
    return coach_fewshot(case.role) + "\n".join(lines) + "\n" + NOTE_PRIMER


def parse_completion_note(text: str) -> str:
    """The note in a base model's continuation of NOTE_PRIMER. It often stops before the closing '"}'
    (the newline stop or the token limit), so the object is closed for it when that is all that is missing."""
    raw = NOTE_PRIMER + text.rstrip()
    try:
        return parse_note(raw)
    except OutputError as exc:
        for ending in ('"}', "}"):
            try:
                return parse_note(raw + ending)
            except OutputError:
                pass
        raise exc


def _ask_coach(*, spec: dict[str, Any], case: CoachCase, seed: int) -> tuple[str | None, list[LLMReply], str]:
    """One coach call and, if its answer is unusable, one repair: (note or None, replies, why not).

    A chat model is told what was wrong. A base model cannot take instructions, so its second try
    is again deterministic but reads a shorter case (the last COMPLETION_REPAIR_LINES lines of the
    transcript): at temperature 0 the same prompt would only return the same text.
    LLMTransientError propagates, so the task retries with backoff. Temperature 0: the same run and
    notes give the same advice, as far as the provider allows.
    """
    try:
        profile = get_profile(spec["profile"])
    except LLMError as exc:
        return None, [], str(exc)
    chat = (spec.get("prompt_format") or profile.prompt_format) == "chat"
    messages = coach_chat(case)
    replies: list[LLMReply] = []
    error = ""
    for attempt in range(2):
        try:
            if chat:
                reply = complete(profile=profile, model=spec["model"], chat=messages, temperature=0.0,
                                 max_tokens=COACH_MAX_TOKENS, seed=seed + attempt)
            else:
                prompt = coach_completion(case, last=COMPLETION_REPAIR_LINES if attempt else COMPLETION_LINES)
                reply = complete(profile=profile, model=spec["model"], prompt=prompt, temperature=0.0,
                                 max_tokens=COACH_COMPLETION_MAX_TOKENS, stop=["\n"], seed=seed + attempt)
        except LLMError as exc:
            return None, replies, str(exc)
        replies.append(reply)
        try:
            return (parse_note(reply.text) if chat else parse_completion_note(reply.text)), replies, ""
        except OutputError as exc:
            error = str(exc)
            messages = [*messages, {"role": "assistant", "content": reply.text},
                        {"role": "user", "content": REPAIR.format(error=error)}]
    return None, replies, f"the coach's answer was not a usable note after one repair: {error}"


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
            note, got, error = _ask_coach(spec=run.agents["analyst"], case=case, seed=run.seed * 31 + i)
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


__all__ = ["COACH_EXAMPLES", "COACH_FEWSHOT_HEAD", "COACH_SYSTEM", "CoachCase", "CoachNote", "buyer_case",
           "coach_chat", "coach_completion", "coach_fewshot", "parse_completion_note", "parse_note", "seller_case",
           "sequence_create", "sequence_run_ended", "sequence_step_fail", "sequence_step_reflect", "sequences_sweep"]

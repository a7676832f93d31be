"""The post-deal analysis: a structured verdict with reasons for each completed run.

The analyst profile (`run.agents["analyst"]`: Gemini through OpenRouter, the local default, or any
OpenAI-compatible endpoint) reads the whole run, which only the analyst may see: every party's
private numbers, the full transcript, the outcome and the measured metrics. It answers with JSON,
validated with pydantic: deal quality 0–1, strategy effectiveness low/medium/high, coherence 0–1,
hallucination 0–1, one or two recommendations, and reasons.

The local scorers (analytics/metrics.py) always run too, and stand in for the LLM when the analyst
is a baseline strategy, when its profile is a base model (completion prompts cannot produce a
structured verdict; DESIGN "Facts measured"), or when its answer is unusable or its provider stays
down; the row then says source="local" and keeps the LLM's error. Nothing here ever fails the run:
the run completed before this task was queued, and this module only writes analysis rows, message
quality scores and the outcome's overall score.
"""

from __future__ import annotations

import logging
from decimal import Decimal
from typing import Any, Literal

from django.db import transaction
from django.db.models import F
from django.utils import timezone
from pydantic import BaseModel, ConfigDict, Field, ValidationError, field_validator

from analytics import metrics, tracing
from analytics.models import RunAnalysis, RunMetrics
from analytics.services import message_quality_record, run_metrics_record
from negotiation.agents import spans
from negotiation.agents.gateway import LLMError, LLMReply, complete, get_profile
from negotiation.agents.outputs import OutputError, extract_json
from negotiation.engine.types import BUYER
from negotiation.models import Message, NegotiationRun, Outcome
from negotiation.services import budgets

log = logging.getLogger(__name__)

ANALYST_SYSTEM = (
    "You are a negotiation analyst. You review one finished marketplace negotiation between a buyer "
    "agent and seller agents, judging the BUYER agent's performance. You see everything, including each "
    "party's private limits. Answer with ONE JSON object and nothing else:\n"
    '{"deal_quality": <0-1, how good the outcome was for the buyer given what was possible>, '
    '"strategy_effectiveness": "low" | "medium" | "high", '
    '"coherence": <0-1, how consistent and logical the buyer\'s messages and actions were>, '
    '"hallucination": <0-1, how much the agents stated things that were not true, e.g. invented offers>, '
    '"recommendations": [<one or two short, concrete recommendations for the buyer>], '
    '"reasons": "<two or three sentences explaining the scores>"}'
)
ANALYST_MAX_TOKENS = 500
MAX_TRANSCRIPT_LINES = 120


class Verdict(BaseModel):
    """The analyst's structured verdict; lenient about case and list lengths, strict about ranges."""

    model_config = ConfigDict(extra="ignore")

    deal_quality: float = Field(ge=0, le=1)
    strategy_effectiveness: Literal["low", "medium", "high"]
    coherence: float = Field(ge=0, le=1)
    hallucination: float = Field(ge=0, le=1)
    recommendations: list[str] = Field(min_length=1)
    reasons: str = Field(min_length=1)

    @field_validator("strategy_effectiveness", mode="before")
    @classmethod
    def _level(cls, v: Any) -> Any:
        return v.strip().lower() if isinstance(v, str) else v

    @field_validator("recommendations", mode="before")
    @classmethod
    def _recs(cls, v: Any) -> Any:
        if isinstance(v, str):
            v = [v]
        if isinstance(v, list):
            v = [str(r).strip()[:500] for r in v if str(r).strip()][:2]
        return v

    @field_validator("reasons", mode="before")
    @classmethod
    def _reasons(cls, v: Any) -> Any:
        if isinstance(v, list):
            v = " ".join(str(r) for r in v)
        return v.strip()[:4000] if isinstance(v, str) else v


def parse_verdict(text: str) -> Verdict:
    """The verdict in an LLM's text, or OutputError saying what was wrong."""
    try:
        return Verdict.model_validate(extract_json(text))
    except ValidationError as exc:
        err = exc.errors()[0]
        where = ".".join(str(p) for p in err["loc"]) or "verdict"
        raise OutputError(f"{where}: {err['msg']}") from exc


def local_verdict(m: RunMetrics, *, buyer_messages: int, message_coherence: float | None) -> dict[str, Any]:
    """The local scorers' verdict for a run, in the same fields as the LLM's."""
    quality = metrics.local_deal_quality(deal=m.deal, buyer_share=m.buyer_share, mutual_loss=m.mutual_loss)
    values = {"leaks": m.leaks, "mutual_loss": m.mutual_loss, "selection_regret": m.selection_regret,
              "unsupported_claims": m.unsupported_claims, "guardrails": m.guardrails, "buyer_share": m.buyer_share}
    coherence = metrics.local_coherence(messages=m.messages, claim_inconsistent=m.claim_inconsistent,
                                        fallbacks=m.fallbacks)
    hallucination = metrics.local_hallucination(buyer_messages=buyer_messages,
                                                unsupported_claims=m.unsupported_claims)
    if m.deal:
        share = "undefined (no ZOPA)" if m.buyer_share is None else f"{m.buyer_share:.0%}"
        why = f"Deal with {m.chosen_handle} at ${m.price}; the buyer kept {share} of the ZOPA"
        if m.selection_regret:
            why += f", ${m.selection_regret} above the cheapest feasible floor"
    else:
        why = "No deal" + (", although a seller could have met the buyer's max (mutual loss)" if m.mutual_loss
                           else "; no seller could meet the buyer's max, so walking away was right")
    why += (f". {m.claim_inconsistent} claim inconsistencies and {m.fallbacks} fallbacks in {m.messages} "
            f"messages; {m.unsupported_claims} unsupported competitor claims; {m.leaks} leaks.")
    return {"deal_quality": round(quality, 4), "strategy_effectiveness": metrics.strategy_level(quality),
            "coherence": round(coherence, 4), "hallucination": round(hallucination, 4),
            "recommendations": metrics.local_recommendations(values), "reasons": why,
            "message_coherence": message_coherence}


def analyst_prompt(*, run: NegotiationRun, m: RunMetrics) -> list[dict[str, str]]:
    """The analyst's chat prompt: the private configuration, the transcript, the outcome and metrics."""
    sc = run.scenario
    b = sc["buyer"]
    lines = [f"Item: {b['item_name']} x{b['quantity']}. Buyer's private range: ${b['min_price']}–${b['max_price']} "
             "per unit.", "Sellers (private):"]
    for s in sc["sellers"]:
        lines.append(f"- {s['handle']}: style {s['style']}, asks ${s['selling_price']}, floor ${s['least_price']}, "
                     f"cost ${s['cost_price']}, weights retention/profit {_w(s)}")
    lines.append("Transcript:")
    said = []
    for msg in Message.objects.filter(run=run).order_by("round_no", "sender_type", "created_at"):
        to = ", ".join(msg.recipients) or "-"
        price = f" [{msg.action} ${msg.price}]" if msg.price is not None else f" [{msg.action}]"
        said.append(f"R{msg.round_no} {msg.sender} -> {to}: {msg.text[:600]}{price}")
    if len(said) > MAX_TRANSCRIPT_LINES:  # a 10-seller, 20-round run: keep the opening and the ending
        keep_head = max(1, MAX_TRANSCRIPT_LINES // 6)
        head, tail = said[:keep_head], said[-(MAX_TRANSCRIPT_LINES - keep_head):]
        said = [*head, f"... ({len(said) - len(head) - len(tail)} messages omitted) ...", *tail]
    lines += said
    if m.deal:
        lines.append(f"Outcome: deal with {m.chosen_handle} at ${m.price} per unit after {m.rounds} rounds.")
    else:
        reason = Outcome.objects.filter(run=run).values_list("reason", flat=True).first()
        lines.append(f"Outcome: no deal ({reason}) after {m.rounds} rounds.")
    share = "undefined" if m.buyer_share is None else f"{m.buyer_share:.3f}"
    lines.append(f"Measured: buyer surplus share {share}; selection regret {m.selection_regret}; "
                 f"mutual loss {m.mutual_loss}; leaks {m.leaks}; guardrail repairs {m.guardrails}; "
                 f"claim inconsistencies {m.claim_inconsistent}; unsupported competitor claims "
                 f"{m.unsupported_claims}; fallbacks {m.fallbacks}.")
    return [{"role": "system", "content": ANALYST_SYSTEM}, {"role": "user", "content": "\n".join(lines)}]


def _w(s: dict[str, Any]) -> str:
    return f"{Decimal(s['retention_weight']):.2f}/{Decimal(s['profit_weight']):.2f}"


def overall_score(*, deal_quality: float, coherence: float, hallucination: float) -> Decimal:
    """Overall quality in percent: 100 × mean(deal_quality, coherence, 1 − hallucination)."""
    return Decimal(str(round(100 * (deal_quality + coherence + (1 - hallucination)) / 3, 2)))


class AnalystUnavailable(Exception):
    """The analyst cannot give a structured verdict for this run (reason in the message)."""


def _ask_analyst(*, run: NegotiationRun, m: RunMetrics) -> tuple[Verdict, LLMReply]:
    """One analyst call and, if its JSON is unusable, one repair; raises AnalystUnavailable otherwise.

    LLMTransientError propagates, so the task retries later with backoff.
    """
    spec = (run.agents or {}).get("analyst") or {}
    if spec.get("strategy", "llm") != "llm":
        raise AnalystUnavailable(f"the analyst is the '{spec.get('strategy')}' baseline, not an LLM")
    try:
        profile = get_profile(spec.get("profile") or "")
    except LLMError as exc:
        raise AnalystUnavailable(str(exc)) from exc
    if profile.prompt_format != "chat":
        raise AnalystUnavailable(f"profile '{profile.name}' serves a base model (completion prompts), which "
                                 "cannot produce a structured verdict")
    model = spec.get("model") or profile.model_for("analyst")
    messages = analyst_prompt(run=run, m=m)
    meta = spans.meta(run=run, round_no=m.rounds, role="analyst", handle="analyst")
    error = ""
    budget = budgets.batch_budget(run.batch_id)
    for attempt in range(2):
        if not budgets.budget_allows_call(batch_id=run.batch_id, budget=budget):
            raise AnalystUnavailable("the batch's budget is reached, so the analyst LLM was not called")
        try:
            reply = complete(profile=profile, model=model, chat=messages, temperature=0.0,
                             max_tokens=ANALYST_MAX_TOKENS, seed=run.seed + attempt, meta=meta)
        except LLMError as exc:
            raise AnalystUnavailable(str(exc)) from exc
        analysis_usage_record(run=run, reply=reply, budget=budget)
        try:
            return parse_verdict(reply.text), reply
        except OutputError as exc:
            error = str(exc)
            messages = [*messages, {"role": "assistant", "content": reply.text},
                        {"role": "user", "content": f"That answer was not usable ({error}). Reply with the JSON "
                                                    "object only, with every field."}]
    raise AnalystUnavailable(f"the analyst's answer was not a valid verdict after one repair: {error}")


def analysis_usage_record(*, run: NegotiationRun, reply: LLMReply, budget: dict[str, Any] | None) -> None:
    """Count one analyst call as soon as it answers, on the run's analysis row and in its batch's spend.

    Every answered call is paid for, whether its verdict is used, repaired or lost to a later error and
    a retry, so the row's tokens add up all of them (`model` names the model they are priced with,
    even when the local scorers' verdict stands). The batch's spend counts these rows (registered in
    analytics/apps.py with negotiation/services/budgets.py), and a budgeted batch's live sums get them.
    """
    with transaction.atomic():
        RunAnalysis.objects.filter(run_id=run.pk).update(
            model=reply.model, prompt_tokens=F("prompt_tokens") + reply.prompt_tokens,
            completion_tokens=F("completion_tokens") + reply.completion_tokens,
            latency_ms=F("latency_ms") + reply.latency_ms)
        budgets.call_usage_record_on_commit(batch_id=run.batch_id, budget=budget, model=reply.model,
                                            prompt_tokens=reply.prompt_tokens,
                                            completion_tokens=reply.completion_tokens)


def run_analyse(*, run_id: Any, give_up: bool = False) -> RunAnalysis | None:
    """Analyse a finished run (idempotent: a run already analysed is left as it is).

    `give_up=True` is the last try after transient errors: skip the LLM and use the local verdict.
    A failed run gets no verdict; its Galileo trace is still sent.
    """
    run = NegotiationRun.objects.filter(pk=run_id).first()
    if run is None:
        return None
    if run.status != NegotiationRun.Status.COMPLETED:
        if run.status == NegotiationRun.Status.FAILED:
            tracing.run_trace_flush(run=run, analysis=None)
        return None
    m = RunMetrics.objects.filter(run_id=run.pk).first() or run_metrics_record(run_id=run.pk)
    if m is None:
        return None
    existing = RunAnalysis.objects.filter(run_id=run.pk).first()
    if existing is not None and existing.status == RunAnalysis.Status.DONE:
        return existing
    message_quality_record(run_id=run.pk)
    msgs = Message.objects.filter(run_id=run.pk)
    buyer_messages = msgs.filter(sender=BUYER).count()
    coherences: list[float] = [q["coherence"] for q in msgs.values_list("quality", flat=True)
                  if isinstance(q, dict) and isinstance(q.get("coherence"), int | float)]
    local = local_verdict(m, buyer_messages=buyer_messages,
                          message_coherence=round(sum(coherences) / len(coherences), 4) if coherences else None)
    RunAnalysis.objects.update_or_create(run_id=run.pk, defaults={"batch_id": run.batch_id, "local": local})
    RunAnalysis.objects.filter(run_id=run.pk).update(attempts=F("attempts") + 1)

    verdict: dict[str, Any] | None = None
    source, model, error = RunAnalysis.Source.LOCAL, "", ""
    if give_up:
        error = "the analyst's provider kept failing; gave up after the last retry"
    else:
        try:
            parsed, reply = _ask_analyst(run=run, m=m)
        except AnalystUnavailable as exc:
            error = str(exc)
        else:
            verdict, source, model = parsed.model_dump(), RunAnalysis.Source.LLM, reply.model
    if verdict is None:
        verdict = {k: local[k] for k in ("deal_quality", "strategy_effectiveness", "coherence", "hallucination",
                                         "recommendations", "reasons")}
    with transaction.atomic():
        analysis = RunAnalysis.objects.select_for_update().get(run_id=run.pk)
        for k, v in verdict.items():
            setattr(analysis, k, v)
        # the tokens (and the model they are priced with) were counted as each call answered
        analysis.status, analysis.source, analysis.error = RunAnalysis.Status.DONE, source, error
        analysis.model = model or analysis.model
        analysis.save()
        Outcome.objects.filter(run_id=run.pk).update(galileo_overall_score=overall_score(
            deal_quality=verdict["deal_quality"], coherence=verdict["coherence"],
            hallucination=verdict["hallucination"]))
    if error:
        log.info("run %s: analysed by the local scorers (%s)", run.pk, error)
    tracing.run_trace_flush(run=run, analysis=analysis)
    return analysis


def run_analysis_fail(*, run_id: Any, error: str) -> None:
    """Record why an analysis could not finish; the run itself is untouched."""
    run = NegotiationRun.objects.filter(pk=run_id).only("batch_id").first()
    if run is None or RunAnalysis.objects.filter(run_id=run_id, status=RunAnalysis.Status.DONE).exists():
        return
    RunAnalysis.objects.update_or_create(run_id=run_id, defaults={
        "batch_id": run.batch_id, "status": RunAnalysis.Status.FAILED, "error": error[:2000],
        "updated_at": timezone.now()})

"""Reads for people: sessions, batches and runs a user may see, their tables, summaries and progress.

The engine's context of a run (what a turn reads) is negotiation/run_context.py."""

from __future__ import annotations

from datetime import timedelta
from decimal import Decimal
from typing import Any

from django.db.models import Avg, Count, Exists, IntegerField, Max, Min, OuterRef, Prefetch, Q, QuerySet, Subquery, Sum
from django.db.models.functions import Coalesce, Substr
from django.utils import timezone

from analytics.metrics import buyer_surplus_share
from mams.presence import NO_WORKER_HINT, PLAY_QUEUES, workers_presence
from mams.queues import ALL_QUEUES
from negotiation.engine import visibility
from negotiation.engine.types import BUYER, EventKind
from negotiation.models import Batch, InventoryItem, Message, NegotiationRun, RunEvent, Seller, Session
from negotiation.run_context import run_context
from negotiation.services import outside

GUARDRAIL_KINDS = [k.value for k in EventKind if k not in (EventKind.LEAK, EventKind.FALLBACK, EventKind.REASK)
                   and not k.value.startswith(("claim_", "unsupported_"))]


def run_rows(*, batch_id: Any) -> QuerySet[NegotiationRun]:
    """One row per run with its outcome and event counts, computed in SQL."""
    return (NegotiationRun.objects.filter(batch_id=batch_id)
            .select_related("outcome")
            .annotate(leaks=Count("events", filter=Q(events__kind=EventKind.LEAK.value)),
                      guardrails=Count("events", filter=Q(events__kind__in=GUARDRAIL_KINDS)),
                      fallbacks=Count("events", filter=Q(events__kind=EventKind.FALLBACK.value)),
                      reasks=Count("events", filter=Q(events__kind=EventKind.REASK.value)))
            .order_by("created_at", "seed"))


def run_buyer_share(run: NegotiationRun) -> Decimal | None:
    outcome = getattr(run, "outcome", None)
    if outcome is None or outcome.final_price is None:
        return None
    least = next((Decimal(s["least_price"]) for s in run.scenario["sellers"]
                  if s["handle"] == outcome.chosen_handle), None)
    if least is None:
        return None
    return buyer_surplus_share(price=outcome.final_price, max_price=Decimal(run.scenario["buyer"]["max_price"]),
                               least_price=least)


def batch_progress(*, batch_id: Any) -> dict[str, int]:
    counts = dict(NegotiationRun.objects.filter(batch_id=batch_id).values_list("status")
                  .annotate(n=Count("id")).values_list("status", "n"))
    return {s: counts.get(s, 0) for s in NegotiationRun.Status.values}


def runs_failures(*, batch_ids: list[Any], width: int = 200) -> dict[str, Any]:
    """How the runs of these batches ended: {total, completed, failed, cancelled, reasons}, the
    failed runs' reasons grouped (the first `width` characters of each) with counts, most common first."""
    runs = NegotiationRun.objects.filter(batch_id__in=batch_ids)
    status = NegotiationRun.Status
    agg = runs.aggregate(total=Count("id"), **{s: Count("id", filter=Q(status=s)) for s in
                                               (status.COMPLETED, status.FAILED, status.CANCELLED)})
    reasons = [] if not agg[status.FAILED] else list(
        runs.filter(status=status.FAILED).annotate(reason=Substr("error", 1, width)).values("reason")
        .annotate(n=Count("id")).order_by("-n", "reason").values_list("reason", "n"))
    return {**agg, "reasons": reasons}


def batch_summary(*, batch_id: Any) -> dict[str, Any]:
    batch = Batch.objects.get(pk=batch_id)
    runs = NegotiationRun.objects.filter(batch_id=batch_id)
    agg = runs.aggregate(
        total=Count("id"),
        finished=Count("id", filter=Q(status=NegotiationRun.Status.COMPLETED)),
        deals=Count("id", filter=Q(outcome__decision="deal")),
        mean_price=Avg("outcome__final_price", filter=Q(outcome__decision="deal")),
        mean_rounds=Avg("outcome__rounds", filter=Q(status=NegotiationRun.Status.COMPLETED)),
    )
    first = runs.exclude(started_at=None).order_by("started_at").values_list("started_at", flat=True).first()
    last = runs.exclude(ended_at=None).order_by("-ended_at").values_list("ended_at", flat=True).first()
    agg["deal_rate"] = (agg["deals"] / agg["finished"]) if agg["finished"] else None
    agg["wall_seconds"] = (last - first).total_seconds() if first and last else None
    agg["progress"] = batch_progress(batch_id=batch_id)
    agg["status"] = batch.status
    return agg


# --- API reads: owner scoping, progress, transcripts, results, analytics ------------------------
# A user reads only their own sessions, batches and runs, and the shared benchmark batches and their runs
# (below); staff read all. A row that exists but that the user may not read is reported exactly like one
# that does not exist (the API answers 404); a shared one they may read but not change is a 403.

def _visible(qs: QuerySet, user: Any) -> QuerySet:
    return qs if getattr(user, "is_staff", False) else qs.filter(owner=user)


# Shared benchmark batches (issue 13): a batch that a benchmark run without an owner made (scheduled, or
# launched from the command line; analytics/models/benchmarks.py "empty: shared with everyone", and the rows
# analytics/benchmarks/leaderboard.visible_benchmarks shows everyone). Every signed-in user reads such a batch
# and its runs; only staff change it (may_change). An ownerless batch that no benchmark made is not shared.

def shared_benchmark(batch: str = "pk") -> Exists:
    """True where the batch at `batch` (an OuterRef path: "pk" on batches, "batch_id" on runs) is shared."""
    # Through the reverse name of analytics' BenchmarkBatch.batch, so negotiation imports no analytics code.
    return Exists(Batch.objects.filter(pk=OuterRef(batch), owner__isnull=True, benchmark_entry__isnull=False,
                                       benchmark_entry__benchmark__owner__isnull=True))


def readable_batches(qs: QuerySet, user: Any) -> QuerySet:
    """The batches of `qs` a user may read (their own and the shared benchmark ones; staff: all), each
    annotated `shared`."""
    qs = qs.annotate(shared=shared_benchmark("pk"))
    return qs if getattr(user, "is_staff", False) else qs.filter(Q(owner=user) | Q(shared=True))


def readable_runs(qs: QuerySet, user: Any) -> QuerySet:
    """The runs of `qs` a user may read: their own and the runs of shared benchmark batches; staff: all."""
    if getattr(user, "is_staff", False):
        return qs
    return qs.filter(Q(owner=user) | shared_benchmark("batch_id"))


def may_change(user: Any, obj: Any) -> bool:
    """Whether `user` may change (cancel) a batch or run they can read: its owner, or staff."""
    return bool(getattr(user, "is_staff", False) or (obj.owner_id is not None and obj.owner_id == user.pk))


def session_list(*, user: Any) -> QuerySet:

    return (_visible(Session.objects.all(), user).select_related("owner")
            .annotate(n_demands=Count("demands", distinct=True), n_sellers=Count("sellers", distinct=True))
            .order_by("-created_at", "id"))


def session_get(*, user: Any, session_id: Any) -> Any:


    sellers = Seller.objects.prefetch_related(Prefetch("inventory", queryset=InventoryItem.objects.order_by(
        "item_name")))
    return (_visible(Session.objects.all(), user).select_related("owner")
            .prefetch_related("demands", Prefetch("sellers", queryset=sellers))
            .filter(pk=session_id).first())


def _with_progress(qs: QuerySet) -> QuerySet:

    S = NegotiationRun.Status  # noqa: N806
    return qs.annotate(
        n_total=Count("runs"),
        **{f"n_{s}": Count("runs", filter=Q(runs__status=s)) for s in S.values},
        first_started=Min("runs__started_at"), last_ended=Max("runs__ended_at"))


def batch_list(*, user: Any, status: str | None = None, session_id: Any = None) -> QuerySet:
    qs = readable_batches(Batch.objects.all(), user).select_related("owner")
    if status:
        qs = qs.filter(status=status)
    if session_id:
        qs = qs.filter(session_id=session_id)
    return _with_progress(qs).order_by("-created_at", "id")


def batch_get(*, user: Any, batch_id: Any) -> Batch | None:
    """A batch the user may read (their own, or a shared benchmark batch), or None."""
    return _with_progress(readable_batches(Batch.objects.all(), user).select_related("owner")).filter(
        pk=batch_id).first()


def batch_eta(*, batch: Batch, now: Any = None) -> dict[str, Any]:
    """Progress of a batch from `_with_progress` annotations, and an ETA from the observed rate.

    rate = finished runs (completed or failed) / seconds since the first run started;
    eta = runs still queued or running / rate. None until a run has finished.
    """


    now = now or timezone.now()
    counts = {s: getattr(batch, f"n_{s}", 0) for s in NegotiationRun.Status.values}
    finished = counts["completed"] + counts["failed"]
    remaining = counts["queued"] + counts["running"]
    total = getattr(batch, "n_total", 0)
    first, last = getattr(batch, "first_started", None), getattr(batch, "last_ended", None)
    elapsed = ((now if remaining else (last or now)) - first).total_seconds() if first else None
    rate = finished / elapsed if elapsed and finished else None
    eta = 0.0 if not remaining else (remaining / rate if rate else None)
    return {
        "progress": counts, "total": total, "finished": total - remaining,
        "percent": round(100.0 * (total - remaining) / total, 1) if total else 0.0,
        "runs_per_second": round(rate, 4) if rate else None,
        "eta_seconds": round(eta, 1) if eta is not None else None,
        "eta_at": now + timedelta(seconds=eta) if eta else None,
        "started_at": first,
    }


def batch_workers(*, progress: dict[str, int]) -> dict[str, Any]:
    """Whether a worker will play this batch's remaining runs: the live workers consuming the queues a
    batch needs, and, when runs remain and none does (or Redis cannot be asked), what to do about it."""
    presence = workers_presence()
    remaining = progress["queued"] + progress["running"]
    live = sum(1 for w in presence.workers if PLAY_QUEUES & set(w.get("queues", ()))) if presence.known else None
    alert = None
    if remaining and not presence.known:
        alert = "Redis (the broker) does not answer, so no run can move: start it again (`make services` locally)."
    elif remaining and not presence.can_play:
        missing = ", ".join(presence.missing_queues)
        alert = (f"{remaining} run(s) are waiting and {NO_WORKER_HINT}." if not presence.workers else
                 f"{remaining} run(s) are waiting, but no running worker consumes the {missing} queue(s): start "
                 f"one with `-Q {ALL_QUEUES}`.")
    return {"live": live, "alert": alert}


def run_list(*, user: Any, batch_id: Any = None, status: str | None = None, mode: str | None = None) -> QuerySet:
    qs = readable_runs(NegotiationRun.objects.all(), user).select_related("outcome")
    if batch_id:
        qs = qs.filter(batch_id=batch_id)
    if status:
        qs = qs.filter(status=status)
    if mode:
        qs = qs.filter(mode=mode)
    return qs.order_by("-created_at", "id")


def run_rounds(run: NegotiationRun) -> int:
    """Rounds of offers the run has completed (engine/protocol.py::message_round counts the same way):
    its outcome's rounds once it has ended, else the turns before the buyer's next one."""
    try:
        return run.outcome.rounds
    except NegotiationRun.outcome.RelatedObjectDoesNotExist:
        return max(0, run.current_round - 1)


def run_turn(run: NegotiationRun) -> int:
    """The buyer's turn number: the next one while the run goes on; once it has ended, the last turn in which
    a message was sent (a seller's accept under hidden rules ends a run in the buyer's turn it answered)."""
    if run.status not in NegotiationRun.TERMINAL:
        return run.current_round
    last = Message.objects.filter(run_id=run.pk).order_by("-round_no").values_list("round_no", flat=True).first()
    return last if last is not None else run.current_round


def run_get(*, user: Any, run_id: Any, shared: bool = False) -> NegotiationRun | None:
    """A run of the user's (staff: any); with `shared`, for reads only, also a run of a shared benchmark batch."""
    qs = readable_runs(NegotiationRun.objects.all(), user) if shared else _visible(NegotiationRun.objects.all(), user)
    return qs.select_related("outcome").filter(pk=run_id).first()


def run_buyer_view(*, run: NegotiationRun) -> Any:
    """What the buyer of a run may know now (its constraints, the handles, its thread, the offers)."""

    ctx = run_context(run)
    return visibility.buyer_view(me=ctx.buyer, handles=ctx.handles, round_no=run.current_round,
                                 max_rounds=run.max_rounds, transcript=ctx.received(BUYER), rules=run.rules)


def run_transcript(*, run: NegotiationRun) -> list[tuple[Message, tuple[str, ...]]]:
    """The messages of a run with who could see each one.

    While an outside buyer's run is sealed (services/outside.py) only the buyer's view is returned (today that is
    every message, since every reply goes to the buyer; the filter keeps it true if that ever changes).
    """

    ctx = run_context(run, rows=True)
    msgs = ctx.transcript
    if outside.sealed(run):
        msgs = visibility.buyer_view(me=ctx.buyer, handles=ctx.handles, round_no=run.current_round,
                                     max_rounds=run.max_rounds, transcript=ctx.received(BUYER)).thread
    out = []
    for m in msgs:
        row = ctx.row(m.round_no, m.sender)
        if row is not None:
            if run.mode in NegotiationRun.OUTSIDE_BUYER:
                row = ctx.row_received(row, BUYER)
            out.append((row, visibility.audience(m)))
    return out


def _per_run(model: Any, value: Any, **filters: Any) -> Any:

    agg = Count("id") if value is None else Sum(value)
    sub = (model.objects.filter(run=OuterRef("pk"), **filters).order_by().values("run")
           .annotate(v=agg).values("v"))
    return Coalesce(Subquery(sub, output_field=IntegerField()), 0)


def run_results(*, batch_id: Any) -> QuerySet:
    """One row per run of a batch with its outcome and counts, as correlated subqueries (no GROUP BY),
    so the export can stream it with `.iterator()`."""

    return (NegotiationRun.objects.filter(batch_id=batch_id).select_related("outcome")
            .annotate(leaks=_per_run(RunEvent, None, kind=EventKind.LEAK.value),
                      guardrails=_per_run(RunEvent, None, kind__in=GUARDRAIL_KINDS),
                      fallbacks=_per_run(RunEvent, None, kind=EventKind.FALLBACK.value),
                      reasks=_per_run(RunEvent, None, kind=EventKind.REASK.value),
                      n_messages=_per_run(Message, None),
                      llm_calls=_per_run(Message, "llm_calls"),
                      prompt_tokens=_per_run(Message, "prompt_tokens"),
                      completion_tokens=_per_run(Message, "completion_tokens"),
                      latency_ms=_per_run(Message, "latency_ms"))
            .order_by("seed", "created_at", "id"))


def run_result_row(run: Any) -> dict[str, Any]:  # a NegotiationRun annotated by run_results
    """A results row of `run_results` as plain values (strings for money, so nothing is rounded)."""
    outcome = getattr(run, "outcome", None)
    share = run_buyer_share(run)
    duration = (run.ended_at - run.started_at).total_seconds() if run.started_at and run.ended_at else None
    agents = run.agents or {}
    return {
        "run_id": str(run.pk), "batch_id": str(run.batch_id) if run.batch_id else "", "seed": run.seed,
        "item_name": run.item_name, "status": run.status,
        "decision": outcome.decision if outcome else "", "reason": outcome.reason if outcome else "",
        "chosen_seller": outcome.chosen_handle if outcome else "",
        "final_price": str(outcome.final_price) if outcome and outcome.final_price is not None else "",
        "quantity": outcome.quantity if outcome else "",
        "rounds": outcome.rounds if outcome else "",
        "buyer_max_price": (run.scenario.get("buyer") or {}).get("max_price", ""),
        "buyer_surplus_share": f"{share:.4f}" if share is not None else "",
        "messages": run.n_messages, "leaks": run.leaks, "guardrail_violations": run.guardrails,
        "fallbacks": run.fallbacks, "reasks": run.reasks, "disclosure": run.disclosure,
        "llm_calls": run.llm_calls, "prompt_tokens": run.prompt_tokens,
        "completion_tokens": run.completion_tokens, "latency_ms": run.latency_ms,
        "buyer_model": (agents.get("buyer") or {}).get("model", ""),
        "seller_model": (agents.get("seller") or {}).get("model", ""),
        "started_at": run.started_at.isoformat() if run.started_at else "",
        "ended_at": run.ended_at.isoformat() if run.ended_at else "",
        "duration_seconds": f"{duration:.3f}" if duration is not None else "",
        "error": run.error,
    }


RESULT_COLUMNS = [
    "run_id", "batch_id", "seed", "item_name", "status", "decision", "reason", "chosen_seller", "final_price",
    "quantity", "rounds", "buyer_max_price", "buyer_surplus_share", "messages", "leaks", "guardrail_violations",
    "fallbacks", "reasks", "disclosure", "llm_calls", "prompt_tokens", "completion_tokens", "latency_ms",
    "buyer_model", "seller_model",
    "started_at", "ended_at", "duration_seconds", "error"]


def run_analytics(*, run: NegotiationRun) -> dict[str, Any]:
    """Spec 10.3: rounds, messages, mean response time, outcome with savings vs the first ask.

    While an outside buyer's run is sealed (services/outside.py) only what the buyer may know is reported:
    no quality scores (they average over the sellers' messages too, so they show a seller's repair), no
    event counts, no surplus share and no verdict. Once it has ended, everything, with the `debrief`.
    """
    msgs = list(Message.objects.filter(run=run).order_by("round_no", "sender_type", "created_at"))
    outcome = getattr(run, "outcome", None)
    closed = outside.sealed(run)
    human = outside.is_outside(run)
    timed = [m.latency_ms for m in msgs if m.llm_calls and (m.sender_type == "seller" or not human)]
    avg = sum(timed) / len(timed) / 1000 if timed else None
    rounds = max((m.round_no for m in msgs if m.sender_type == "seller"), default=0)
    max_price = Decimal((run.scenario.get("buyer") or {}).get("max_price", "0"))
    out: dict[str, Any] = {"type": outcome.decision if outcome else None,
                           "reason": outcome.reason if outcome else None,
                           "seller": outcome.chosen_handle or None if outcome else None,
                           "final_price": outcome.final_price if outcome else None,
                           "quantity": outcome.quantity if outcome else None,
                           "initial_ask": None, "savings_vs_initial": None, "savings_vs_initial_total": None,
                           "within_budget": None}
    if outcome and outcome.final_price is not None:
        first = next((m.price for m in msgs if m.sender == outcome.chosen_handle and m.price is not None), None)
        out["initial_ask"] = first
        if first is not None:
            out["savings_vs_initial"] = first - outcome.final_price
            out["savings_vs_initial_total"] = (first - outcome.final_price) * outcome.quantity
        out["within_budget"] = outcome.final_price <= max_price
    quality = [m.quality for m in msgs if m.quality] if not closed else []
    galileo = None
    if quality:
        keys = sorted({k for q in quality for k, v in q.items() if isinstance(v, int | float)})
        galileo = {f"avg_{k}": round(sum(q[k] for q in quality if isinstance(q.get(k), int | float))
                                     / max(1, sum(1 for q in quality if isinstance(q.get(k), int | float))), 4)
                   for k in keys} or None
    data: dict[str, Any] = {
        "negotiation_id": str(run.pk), "status": run.status, "mode": run.mode,
        "conversation_rounds": rounds, "total_messages": len(msgs),
        "avg_response_time": f"{avg:.1f}s" if avg is not None else None,
        "avg_response_seconds": round(avg, 3) if avg is not None else None,
        "galileo_metrics": galileo,
        "galileo_note": None if galileo else SEALED_NOTE if closed else (
            "No quality scores for this run yet: they appear once the post-deal analysis has scored it."),
        "outcome": out,
    }
    if not closed:

        kinds = dict(RunEvent.objects.filter(run=run).values_list("kind").annotate(n=Count("id"))
                     .values_list("kind", "n"))
        data["counts"] = {
            "leaks": kinds.get(EventKind.LEAK.value, 0),
            "guardrail_violations": sum(n for k, n in kinds.items() if k in GUARDRAIL_KINDS),
            "fallbacks": kinds.get(EventKind.FALLBACK.value, 0),
            "reasks": kinds.get(EventKind.REASK.value, 0),
            "llm_calls": sum(m.llm_calls for m in msgs),
            "prompt_tokens": sum(m.prompt_tokens for m in msgs),
            "completion_tokens": sum(m.completion_tokens for m in msgs),
        }
        share = run_buyer_share(run)
        out["buyer_surplus_share"] = share
    data["analysis"] = None if closed else run_verdict(run=run)
    data["debrief"] = outside.debrief(run)
    return data


SEALED_NOTE = ("Quality scores, counts and the analysis appear once the negotiation has ended, with a debrief "
               "of every seller's floor: until then nothing derived from the sellers' private numbers is shown.")


VERDICT_SCORES = ("deal_quality", "strategy_effectiveness", "coherence", "hallucination")


def run_verdict(*, run: NegotiationRun) -> dict[str, Any] | None:
    """The post-deal analysis of a run, or None before the analysis task has written it, or while the run
    is sealed from its outside buyer (the analyst saw every private number, and its deal quality is the
    buyer's surplus share: services/outside.py)."""
    if outside.sealed(run):
        return None
    verdict = getattr(run, "analysis", None)
    if verdict is None:
        return None
    data: dict[str, Any] = {"status": verdict.status, "source": verdict.source or None,
                            "model": verdict.model or None, **{k: getattr(verdict, k) for k in VERDICT_SCORES}}
    data["strategy_effectiveness"] = data["strategy_effectiveness"] or None
    data.update(reasons=verdict.reasons, recommendations=verdict.recommendations, error=verdict.error or None)
    return data

"""Analytics writes: a run's metrics row when it finishes, and per-message local quality scores.

Why a `RunMetrics` row per run rather than annotating every dashboard query: the per-run values
need the run's scenario snapshot (JSON), the chosen seller's first offer (a subquery over messages)
and event counts (a subquery over events). Computed once, in the transaction that writes the
Outcome, they become plain columns, so every batch aggregate is a single `AVG/COUNT ... GROUP BY`
over one indexed table, a 10,000-run dashboard reads one narrow table, and the bootstrap resamples a
`values_list` column. The row is written in the same transaction as the Outcome, so a completed run
never lacks its metrics; `run_metrics_record` is idempotent, so the analysis task and the backfill
command can (re)compute it for runs that finished before this table existed.
"""

from __future__ import annotations

import logging
from decimal import Decimal
from typing import Any

from django.conf import settings
from django.db import transaction
from django.db.models import Count
from django.utils import timezone

from analytics import metrics, tracing
from analytics.models import RunMetrics
from mams.celery import app
from mams.queues import Queue
from negotiation.engine.types import BUYER
from negotiation.models import Message, NegotiationRun, Outcome, RunEvent

log = logging.getLogger(__name__)


def _weights(seller: dict[str, Any]) -> str:
    return f"{Decimal(seller['retention_weight']):.2f}/{Decimal(seller['profit_weight']):.2f}"


def run_metrics_compute(*, run: NegotiationRun, outcome: Outcome) -> dict[str, Any]:
    """Every per-run metric of a finished run, read from its messages, events and scenario."""
    sc = run.scenario
    sellers = [metrics.SellerTerms(handle=s["handle"], least_price=Decimal(s["least_price"]), style=s["style"],
                                   weights=_weights(s)) for s in sc["sellers"]]
    # One narrow read of the run's messages, summed here: a run has at most a few dozen of them, and
    # this runs inside the finishing turn's transaction (two GROUP BY queries cost more to build).
    rows = Message.objects.filter(run_id=run.pk).order_by("round_no", "created_at").values_list(
        "round_no", "sender", "sender_type", "price", "llm_model", "llm_calls", "prompt_tokens",
        "completion_tokens", "latency_ms")
    offers: list[tuple[int, str, Decimal | None]] = []
    tokens: dict[tuple[str, str], list[int]] = {}
    n = calls = pt = ct = lat = 0
    for round_no, sender, sender_type, price, model, m_calls, m_pt, m_ct, m_lat in rows:
        if sender != BUYER:
            offers.append((round_no, sender, price))
        used = tokens.setdefault((model, sender_type), [0, 0])
        used[0] += m_pt
        used[1] += m_ct
        n, calls, pt, ct, lat = n + 1, calls + m_calls, pt + m_pt, ct + m_ct, lat + m_lat
    agents = run.agents or {}
    usages = [metrics.Usage(model=model, prompt_tokens=used[0], completion_tokens=used[1],
                            local=(agents.get(sender_type) or {}).get("profile") == "local")
              for (model, sender_type), used in tokens.items()]
    kinds = dict(RunEvent.objects.filter(run_id=run.pk).values_list("kind").annotate(n=Count("id")).values_list(
        "kind", "n"))
    deal = outcome.decision == Outcome.Decision.DEAL
    values = metrics.run_metrics(
        deal=deal, price=outcome.final_price, chosen=outcome.chosen_handle or None,
        max_price=Decimal(sc["buyer"]["max_price"]), sellers=sellers, offers=offers, rounds=outcome.rounds,
        messages=n, llm_calls=calls, prompt_tokens=pt, completion_tokens=ct, latency_ms=lat, usages=usages,
        prices=settings.MAMS_MODEL_PRICES,
        event_kinds=kinds)
    values.pop("max_price")
    ended = run.ended_at or timezone.now()
    values["duration_ms"] = int((ended - run.started_at).total_seconds() * 1000) if run.started_at else None
    values["buyer_model"] = (agents.get("buyer") or {}).get("model") or (agents.get("buyer") or {}).get("strategy", "")
    values["seller_model"] = ((agents.get("seller") or {}).get("model")
                              or (agents.get("seller") or {}).get("strategy", ""))
    return values


def run_metrics_record(*, run_id: Any, run: NegotiationRun | None = None, outcome: Outcome | None = None
                       ) -> RunMetrics | None:
    """Compute and store (or refresh) a run's metrics row; None when the run has no outcome yet.

    The finishing turn passes the run and the outcome it has just written, so they are not read again.
    """
    run = run if run is not None else NegotiationRun.objects.filter(pk=run_id).first()
    outcome = outcome if outcome is not None else Outcome.objects.filter(run_id=run_id).first()
    if run is None or outcome is None:
        return None
    values = {"batch_id": run.batch_id, "seed": run.seed, "item_name": run.item_name,
              "max_price": Decimal(run.scenario["buyer"]["max_price"]), **run_metrics_compute(run=run, outcome=outcome)}
    # One INSERT ... ON CONFLICT (run) DO UPDATE, not update_or_create's savepoints and SELECT: this
    # runs inside the transaction of a run's finishing turn.
    (row,) = RunMetrics.objects.bulk_create([RunMetrics(run_id=run.pk, **values)], update_conflicts=True,
                                            unique_fields=["run"], update_fields=list(values))
    return row


def message_quality_record(*, run_id: Any) -> int:
    """Fill each message's local quality scores (kept beside any Galileo scores already there)."""
    events: dict[Any, list[str]] = {}
    for message_id, kind in RunEvent.objects.filter(run_id=run_id).values_list("message_id", "kind"):
        events.setdefault(message_id, []).append(kind)
    rows = list(Message.objects.filter(run_id=run_id).only("id", "text", "sender", "quality"))
    for m in rows:
        scores = metrics.local_message_quality(text=m.text, events=events.get(m.pk, []),
                                               sender_is_buyer=m.sender == BUYER)
        quality = dict(m.quality or {})
        quality.update(scores)
        quality["source"] = "galileo+local" if quality.get("galileo") else "local"
        m.quality = quality
    Message.objects.bulk_update(rows, ["quality"], batch_size=200)
    return len(rows)


def metrics_backfill(*, batch_id: Any = None) -> int:
    """Record metrics for completed runs that have an outcome but no metrics row (older runs)."""
    qs = NegotiationRun.objects.filter(outcome__isnull=False, metrics__isnull=True)
    if batch_id:
        qs = qs.filter(batch_id=batch_id)
    n = 0
    for run_id in qs.values_list("pk", flat=True).iterator(chunk_size=500):
        if run_metrics_record(run_id=run_id) is not None:
            n += 1
    return n


def run_completed(*, run: NegotiationRun, outcome: Outcome) -> None:
    """Registered with negotiation's run lifecycle (analytics/apps.py): called by
    `lifecycle.run_complete` inside the transaction that writes the Outcome.

    The metrics row is written in that transaction (under a savepoint: a bug here is logged and the
    analysis task recomputes the row, it never fails the run), and the analysis task is queued on
    the analysis queue after commit, so it never delays a negotiation turn.
    """
    run_id = run.pk
    try:
        with transaction.atomic():
            run_metrics_record(run_id=run_id, run=run, outcome=outcome)
    except Exception:
        log.exception("run %s: could not record metrics; the analysis task will retry", run_id)
    if settings.MAMS_ANALYSIS_ENABLED:
        transaction.on_commit(lambda: enqueue_analysis(run_id))


def run_failed(*, run_id: Any) -> None:
    """Registered with negotiation's run lifecycle: called by `lifecycle.run_fail`. A failed run gets no
    verdict, but its Galileo trace is still sent."""
    if tracing.enabled():
        transaction.on_commit(lambda: enqueue_analysis(run_id))


def enqueue_analysis(run_id: Any) -> None:
    app.send_task("analytics.analyse_run", args=[str(run_id)], queue=Queue.ANALYSIS)

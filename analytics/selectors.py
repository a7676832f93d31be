"""Analytics reads: batch aggregates with bootstrap CIs, breakdowns, histograms, run tables, comparisons.

Every count, mean, histogram and breakdown is one SQL aggregate over `RunMetrics` (one row per
completed run, see analytics/services.py) or `RunAnalysis`; Python never loops over a batch's
runs. The only per-run values that leave the database are the columns the bootstrap resamples,
fetched with one `values_list` and resampled with numpy (analytics/metrics.py). A batch's
dashboard is cached under a key that changes whenever a run finishes or an analysis lands, so a
poll of a finished batch costs a few cheap queries.
"""

from __future__ import annotations

import hashlib
from collections.abc import Iterable
from dataclasses import dataclass
from decimal import Decimal
from typing import Any

from django.conf import settings
from django.core.cache import cache
from django.db.models import Avg, Count, F, FloatField, Func, IntegerField, Max, Min, Q, QuerySet, Sum, Value
from django.db.models.functions import Cast, Coalesce, Substr

from analytics import metrics
from analytics.models import RunAnalysis, RunMetrics
from negotiation.models import Batch, NegotiationRun

S = NegotiationRun.Status


@dataclass(frozen=True)
class Headline:
    """One dashboard figure: how each run's value is read, how it is shown, and which way is better."""

    key: str
    label: str
    column: str  # a RunMetrics column, or "<column>>0" for "share of runs with at least one"
    fmt: str  # "pct", "money", "num", "usd", "ms"
    higher_is_better: bool | None
    deals_only: bool = False


HEADLINES = [
    Headline("deal_rate", "Deal rate", "deal", "pct", True),
    Headline("price", "Mean price", "price", "money", False, deals_only=True),
    Headline("buyer_share", "Buyer surplus share", "buyer_share", "pct", True, deals_only=True),
    Headline("savings", "Savings vs first ask", "savings", "money", True, deals_only=True),
    Headline("selection_regret", "Selection regret", "selection_regret", "money", False, deals_only=True),
    Headline("mutual_loss", "Mutual-loss rate", "mutual_loss", "pct", False),
    Headline("rounds", "Rounds", "rounds", "num", False),
    Headline("messages", "Messages", "messages", "num", None),
    Headline("leak_rate", "Leak rate (runs)", "leaks>0", "pct", False),
    Headline("violation_rate", "Guardrail-violation rate (runs)", "guardrails>0", "pct", False),
    Headline("claim_rate", "Claim-inconsistency rate (runs)", "claim_inconsistent>0", "pct", False),
    Headline("unsupported_rate", "Unsupported-claim rate (runs)", "unsupported_claims>0", "pct", False),
    Headline("fallback_rate", "Fallback rate (runs)", "fallbacks>0", "pct", False),
    Headline("tokens", "Tokens per run", "tokens", "num", False),
    Headline("cost", "Cost per run", "cost_usd", "usd", False),
    Headline("latency", "LLM time per run", "latency_ms", "ms", False),
]
HEADLINE_KEYS = {h.key: h for h in HEADLINES}


def _columns(heads: Iterable[Headline]) -> list[str]:
    return sorted({h.column.split(">")[0] for h in heads})


def _values(rows: list[tuple], cols: list[str], head: Headline) -> list[Any]:
    col = head.column.split(">")[0]
    i = cols.index(col)
    deal_i = cols.index("deal")
    out = []
    for row in rows:
        if head.deals_only and not row[deal_i]:
            continue
        v = row[i]
        out.append((v or 0) > 0 if head.column.endswith(">0") else v)
    return out


def estimates(rows: list[tuple], cols: list[str], heads: Iterable[Headline], *, seed: int) -> dict[str, Any]:
    """Mean and bootstrap CI of each headline over the fetched per-run columns."""
    n = settings.MAMS_BOOTSTRAP_RESAMPLES
    return {h.key: metrics.bootstrap_ci(_values(rows, cols, h), seed=seed, n_resamples=n) for h in heads}


def batch_metric_rows(*, batch_id: Any, cols: list[str]) -> list[tuple]:
    """The per-run columns the bootstrap resamples: one query, one tuple per completed run."""
    return list(RunMetrics.objects.filter(batch_id=batch_id).order_by("seed", "run_id").values_list(*cols))


def batch_version(batch_id: Any) -> tuple:
    runs = NegotiationRun.objects.filter(batch_id=batch_id).aggregate(
        n=Count("id"), done=Count("id", filter=Q(status__in=NegotiationRun.TERMINAL)), last=Max("ended_at"))
    analysed = RunAnalysis.objects.filter(batch_id=batch_id).aggregate(n=Count("run_id"), last=Max("updated_at"))
    return (runs["n"], runs["done"], runs["last"], analysed["n"], analysed["last"])


def _histogram(qs: QuerySet, column: str, *, bins: int = 12, lo: float | None = None, hi: float | None = None
               ) -> list[dict[str, Any]]:
    """Equal-width bins over [lo, hi] counted in SQL with width_bucket; [] without values."""
    if lo is None or hi is None:
        bounds = qs.aggregate(lo=Min(column), hi=Max(column))
        lo, hi = bounds["lo"], bounds["hi"]
    if lo is None or hi is None:
        return []
    lo, hi = float(lo), float(hi)
    if hi <= lo:
        return [{"lo": lo, "hi": hi, "n": qs.exclude(**{f"{column}__isnull": True}).count()}]
    bucket = Func(Cast(F(column), FloatField()), Value(lo), Value(hi + (hi - lo) * 1e-9), Value(bins),
                  function="width_bucket", output_field=IntegerField())
    counts = dict(qs.exclude(**{f"{column}__isnull": True}).annotate(b=bucket).values_list("b")
                  .annotate(n=Count("pk")).values_list("b", "n"))
    width = (hi - lo) / bins
    return [{"lo": lo + i * width, "hi": lo + (i + 1) * width, "n": counts.get(i + 1, 0)} for i in range(bins)]


def breakdown(qs: QuerySet, *fields: str) -> list[dict[str, Any]]:
    """Per group: runs, deals, deal rate, mean price and mean buyer/seller surplus share (SQL GROUP BY)."""
    rows = (qs.values(*fields).annotate(
        runs=Count("run_id"), deals=Count("run_id", filter=Q(deal=True)),
        mean_price=Avg("price"), buyer_share=Avg("buyer_share"), seller_share=Avg("seller_share"),
        tokens=Avg("tokens"), cost=Avg("cost_usd")).order_by(*fields))
    out = []
    for r in rows:
        r["deal_rate"] = metrics.rate(r["deals"], r["runs"])
        out.append(r)
    return out


def batch_dashboard(*, batch_id: Any) -> dict[str, Any]:
    """Everything the batch dashboard shows, cached until a run finishes or an analysis lands."""
    version = hashlib.sha1(repr(batch_version(batch_id)).encode(), usedforsecurity=False).hexdigest()[:16]
    key = f"mams:dashboard:{batch_id}:{version}"
    data = cache.get(key)
    if data is None:
        data = {**_batch_dashboard(batch_id=batch_id), "version": version}
        cache.set(key, data, timeout=3600)
    return data


def _batch_dashboard(*, batch_id: Any) -> dict[str, Any]:
    batch = Batch.objects.get(pk=batch_id)
    runs = NegotiationRun.objects.filter(batch_id=batch_id)
    progress = dict(runs.values_list("status").annotate(n=Count("id")).values_list("status", "n"))
    progress = {s: progress.get(s, 0) for s in S.values}
    total = sum(progress.values())
    failures = list(runs.filter(status=S.FAILED).annotate(reason=Substr("error", 1, 160)).values("reason")
                    .annotate(n=Count("id")).order_by("-n", "reason")[:10])
    mq = RunMetrics.objects.filter(batch_id=batch_id)
    cols = _columns(HEADLINES)
    rows = batch_metric_rows(batch_id=batch_id, cols=cols)
    est = estimates(rows, cols, HEADLINES, seed=batch.base_seed)
    totals = mq.aggregate(runs=Count("run_id"), deals=Count("run_id", filter=Q(deal=True)),
                          tokens=Coalesce(Sum("tokens"), 0), cost=Sum("cost_usd"),
                          unpriced=Count("run_id", filter=Q(cost_usd__isnull=True)),
                          llm_calls=Coalesce(Sum("llm_calls"), 0), leaks=Coalesce(Sum("leaks"), 0),
                          guardrails=Coalesce(Sum("guardrails"), 0), fallbacks=Coalesce(Sum("fallbacks"), 0),
                          duration=Avg("duration_ms"))
    scenario = runs.values_list("scenario", flat=True).first() or {}
    max_price = (scenario.get("buyer") or {}).get("max_price")
    floors = [Decimal(s["least_price"]) for s in scenario.get("sellers", [])]
    price_lo = min([*floors, Decimal(max_price)]) if floors and max_price else None
    deals = mq.filter(deal=True)
    first = runs.exclude(started_at=None).aggregate(first=Min("started_at"), last=Max("ended_at"))
    wall = (first["last"] - first["first"]).total_seconds() if first["first"] and first["last"] else None
    return {
        "batch_id": str(batch.pk), "status": batch.status, "progress": progress, "total": total,
        "finished": total - progress[S.QUEUED] - progress[S.RUNNING],
        "percent": round(100 * (total - progress[S.QUEUED] - progress[S.RUNNING]) / total, 1) if total else 0.0,
        "failures": failures, "headlines": est, "totals": totals, "wall_seconds": wall,
        "price_hist": _histogram(deals, "price", lo=float(price_lo) if price_lo is not None else None,
                                 hi=float(max_price) if max_price else None),
        "max_price": max_price, "floors": {s["handle"]: s["least_price"] for s in scenario.get("sellers", [])},
        "rounds_hist": list(mq.values("rounds").annotate(
            runs=Count("run_id"), deals=Count("run_id", filter=Q(deal=True))).order_by("rounds")),
        "deals_per_seller": list(deals.values("chosen_handle").annotate(n=Count("run_id"), mean_price=Avg("price"))
                                 .order_by("-n", "chosen_handle")),
        "by_style": breakdown(deals, "chosen_style"),
        "by_weights": breakdown(deals, "chosen_weights"),
        "by_model": breakdown(mq, "buyer_model", "seller_model"),
        "analysis": analysis_summary(batch_id=batch_id),
    }


SCORES = ("deal_quality", "coherence", "hallucination")


def analysis_summary(*, batch_id: Any) -> dict[str, Any]:
    """Analysis verdicts of a batch: counts by status and source, score histograms, strategy levels."""
    qs = RunAnalysis.objects.filter(batch_id=batch_id)
    done = qs.filter(status=RunAnalysis.Status.DONE)
    by_status = dict(qs.values_list("status").annotate(n=Count("run_id")).values_list("status", "n"))
    by_source = dict(done.values_list("source").annotate(n=Count("run_id")).values_list("source", "n"))
    means = done.aggregate(**{s: Avg(s) for s in SCORES})
    errors = list(qs.exclude(error="").annotate(reason=Substr("error", 1, 160)).values("reason")
                  .annotate(n=Count("run_id")).order_by("-n")[:5])
    return {
        "by_status": by_status, "by_source": by_source, "means": means, "errors": errors,
        "hists": {s: _histogram(done, s, bins=10, lo=0.0, hi=1.0) for s in SCORES},
        "strategy": dict(done.exclude(strategy_effectiveness="").values_list("strategy_effectiveness")
                         .annotate(n=Count("run_id")).values_list("strategy_effectiveness", "n")),
        "galileo": done.exclude(galileo={}).count(),
    }


# --- the runs table ----------------------------------------------------------------------------

RUN_SORTS = {
    "seed": "seed", "status": "status", "price": "metrics__price", "buyer_share": "metrics__buyer_share",
    "rounds": "metrics__rounds", "tokens": "metrics__tokens", "cost": "metrics__cost_usd",
    "leaks": "metrics__leaks", "guardrails": "metrics__guardrails", "seller": "metrics__chosen_handle",
    "quality": "analysis__deal_quality", "duration": "metrics__duration_ms",
}


def batch_runs(*, batch_id: Any, status: str = "", decision: str = "", seller: str = "", flag: str = "",
               sort: str = "seed", descending: bool = False) -> QuerySet:
    """A batch's runs with metrics and analysis, filtered and sorted on whitelisted columns."""
    qs = (NegotiationRun.objects.filter(batch_id=batch_id).select_related("metrics", "analysis")
          .only("id", "seed", "status", "item_name", "error", "batch_id", "metrics", "analysis"))
    if status in S.values:
        qs = qs.filter(status=status)
    if decision == "deal":
        qs = qs.filter(metrics__deal=True)
    elif decision == "no_deal":
        qs = qs.filter(metrics__deal=False)
    if seller:
        qs = qs.filter(metrics__chosen_handle=seller)
    if flag in ("leaks", "guardrails", "fallbacks", "claim_inconsistent", "unsupported_claims"):
        qs = qs.filter(**{f"metrics__{flag}__gt": 0})
    if flag == "mutual_loss":
        qs = qs.filter(metrics__mutual_loss=True)
    column = RUN_SORTS.get(sort, "seed")
    order = F(column).desc(nulls_last=True) if descending else F(column).asc(nulls_last=True)
    return qs.order_by(order, "id")


# --- comparing two batches -----------------------------------------------------------------------

COMPARE = ["deal_rate", "price", "buyer_share", "savings", "selection_regret", "mutual_loss", "rounds",
           "leak_rate", "violation_rate", "fallback_rate", "tokens", "cost", "latency"]


def _per_seed(batch: Batch, cols: list[str], *, by_offset: bool) -> dict[tuple, tuple]:
    rows = RunMetrics.objects.filter(batch_id=batch.pk).values_list("item_name", "seed", *cols)
    return {(r[0], r[1] - batch.base_seed if by_offset else r[1]): r[2:] for r in rows}


def batch_compare(*, a: Batch, b: Batch) -> dict[str, Any]:
    """Paired differences B − A by seed (runs with the same item and seed), with bootstrap CIs.

    When the two batches share no seed, runs are paired by position (seed − base_seed) instead, and
    the result says so. A metric defined only on deals is paired only where both runs dealt.
    """
    heads = [HEADLINE_KEYS[k] for k in COMPARE]
    cols = _columns(heads)
    pa, pb = _per_seed(a, cols, by_offset=False), _per_seed(b, cols, by_offset=False)
    paired_by = "seed"
    if not pa.keys() & pb.keys():
        pa, pb, paired_by = _per_seed(a, cols, by_offset=True), _per_seed(b, cols, by_offset=True), "position"
    keys = sorted(pa.keys() & pb.keys())
    rows_a, rows_b = [pa[k] for k in keys], [pb[k] for k in keys]
    out = []
    for h in heads:
        va, vb = _values(rows_a, cols, _both(h)), _values(rows_b, cols, _both(h))
        if h.deals_only:
            deal_i = cols.index("deal")
            both = [i for i, k in enumerate(keys) if rows_a[i][deal_i] and rows_b[i][deal_i]]
            va, vb = [_values([rows_a[i]], cols, _both(h))[0] for i in both], [
                _values([rows_b[i]], cols, _both(h))[0] for i in both]
        diffs = metrics.paired_differences(dict(enumerate(va)), dict(enumerate(vb)))
        est = metrics.bootstrap_ci(diffs, seed=a.base_seed, n_resamples=settings.MAMS_BOOTSTRAP_RESAMPLES)
        mean_a = metrics.bootstrap_ci([v for v in va if v is not None], seed=a.base_seed, n_resamples=200).mean
        mean_b = metrics.bootstrap_ci([v for v in vb if v is not None], seed=a.base_seed, n_resamples=200).mean
        out.append({"head": h, "estimate": est, "mean_a": mean_a, "mean_b": mean_b,
                    "sentence": metrics.compare_sentence(metric=h.label.lower(), estimate=est,
                                                         higher_is_better=h.higher_is_better, label_a="A",
                                                         label_b="B")})
    same = a.session_id == b.session_id and a.item_name == b.item_name
    return {"pairs": len(keys), "paired_by": paired_by, "rows": out, "same_scenario": same}


def _both(h: Headline) -> Headline:
    # Inside a pair the deal filter is applied by the caller, so values are read for every run.
    return Headline(h.key, h.label, h.column, h.fmt, h.higher_is_better, deals_only=False)


# --- lists for people --------------------------------------------------------------------------


def visible(qs: QuerySet, user: Any) -> QuerySet:
    """What a user may read: their own rows, or everything for staff (the API's rule too)."""
    return qs if getattr(user, "is_staff", False) else qs.filter(owner=user)


def batch_table(*, user: Any, session_id: Any = None) -> QuerySet:
    """Batches with progress and headline metrics, each an SQL aggregate over runs and their metrics."""
    qs = visible(Batch.objects.all(), user).select_related("session")
    if session_id:
        qs = qs.filter(session_id=session_id)
    return qs.annotate(
        n_total=Count("runs"), n_completed=Count("runs", filter=Q(runs__status=S.COMPLETED)),
        n_failed=Count("runs", filter=Q(runs__status=S.FAILED)),
        n_active=Count("runs", filter=Q(runs__status__in=[S.QUEUED, S.RUNNING])),
        n_deals=Count("runs", filter=Q(runs__metrics__deal=True)),
        mean_price=Avg("runs__metrics__price"), buyer_share=Avg("runs__metrics__buyer_share"),
        mean_rounds=Avg("runs__metrics__rounds"), cost=Sum("runs__metrics__cost_usd"),
    ).order_by("-created_at", "id")


def run_events(*, run_id: Any) -> dict[Any, list[Any]]:
    """A run's guardrail, leak and audit events by message id (None for events of no message)."""
    from negotiation.models import RunEvent

    out: dict[Any, list[Any]] = {}
    for e in RunEvent.objects.filter(run_id=run_id).order_by("round_no", "id"):
        out.setdefault(e.message_id, []).append(e)
    return out

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
from functools import partial
from typing import Any

import numpy as np
from django.conf import settings
from django.core.cache import cache
from django.db import connection
from django.db.models import Avg, Count, F, FloatField, IntegerField, Max, Min, Q, QuerySet, Sum, TextField, Value
from django.db.models.functions import Cast, Coalesce, Concat, NullIf, Substr

from analytics import formats, metrics
from analytics.models import RunAnalysis, RunMetrics
from negotiation.models import Batch, NegotiationRun, RunEvent
from negotiation.selectors import readable_batches, shared_benchmark

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
    return sorted({h.column.split(">")[0] for h in heads} | {"deal"})


def metric_columns(qs: QuerySet, cols: list[str], labels: tuple[str, ...] = ()) -> dict[str, np.ndarray]:
    """RunMetrics columns as float arrays (NaN for NULL), cast in SQL so no Decimal is built per row.

    `labels` are text columns (a run's seller style, ...) fetched in the same query, so they line up
    with the numbers row by row; they come back as object arrays.
    """
    nan = Value(float("nan"), output_field=FloatField())
    exprs = {f"_{c}": Coalesce(Cast(Cast(F(c), IntegerField()) if c in BOOLEANS else F(c), FloatField()), nan)
             for c in cols}
    sql, params = qs.annotate(**exprs).values_list(*exprs, *labels).query.sql_with_params()
    with connection.cursor() as cursor:  # straight from the driver: no per-value Django converters
        cursor.execute(sql, params)
        rows = cursor.fetchall()
    if not rows:
        return {c: np.empty(0) for c in (*cols, *labels)}
    if not labels:
        matrix = np.asarray(rows, dtype=float)
        return {c: matrix[:, i] for i, c in enumerate(cols)}
    k, table = len(cols), np.asarray(rows, dtype=object)
    numbers = table[:, :k].astype(float)
    return {**{c: numbers[:, i] for i, c in enumerate(cols)}, **{f: table[:, k + j] for j, f in enumerate(labels)}}


GROUPS = {"by_style": ("chosen_style",), "by_weights": ("chosen_weights",), "by_model": ("buyer_model", "seller_model")}


def group_columns(arrays: dict[str, np.ndarray], groups: dict[str, list[dict[str, Any]]]) -> dict[str, np.ndarray]:
    """Per breakdown group, the columns whose CIs the dashboard shows: the buyer's share on deals by
    seller style and weights, and the deal rate by model; NaN outside the group."""
    out = {}
    deal = arrays["deal"] > 0
    for name, rows in groups.items():
        fields = GROUPS[name]
        for r in rows:
            inside = np.ones(deal.shape, dtype=bool)
            for f in fields:  # vectorised comparisons, one per field
                inside &= arrays[f] == r[f]
            if name == "by_model":
                out[f"{name}:{group_key(r, fields)}"] = np.where(inside, arrays["deal"], np.nan)
            else:
                out[f"{name}:{group_key(r, fields)}"] = np.where(inside & deal, arrays["buyer_share"], np.nan)
    return out


def group_key(row: dict[str, Any], fields: tuple[str, ...]) -> str:
    return "/".join(str(row[f]) for f in fields)


BOOLEANS = {"deal", "mutual_loss"}


def headline_column(arrays: dict[str, np.ndarray], head: Headline) -> np.ndarray:
    """One value per run for a headline: NaN where undefined (deals-only metrics on no deal)."""
    col = arrays[head.column.split(">")[0]]
    if head.column.endswith(">0"):
        col = np.where(np.isnan(col), np.nan, (col > 0).astype(float))
    if head.deals_only:
        col = np.where(arrays["deal"] > 0, col, np.nan)
    return col


def batch_version(batch_id: Any) -> tuple:
    runs = NegotiationRun.objects.filter(batch_id=batch_id).aggregate(
        n=Count("id"), done=Count("id", filter=Q(status__in=NegotiationRun.TERMINAL)), last=Max("ended_at"))
    analysed = RunAnalysis.objects.filter(batch_id=batch_id).aggregate(n=Count("run_id"), last=Max("updated_at"))
    return (runs["n"], runs["done"], runs["last"], analysed["n"], analysed["last"])


def bins(prefix: str, column: str, lo: float, hi: float, n: int, where: Q | None = None) -> dict[str, Any]:
    """Equal-width histogram bins over [lo, hi] as conditional counts, to merge into one SQL aggregate.

    Values below lo fall in the first bin and values above hi in the last, so no row is lost.
    """
    width = (hi - lo) / n if hi > lo else 0.0
    out = {}
    for i in range(n):
        cond = Q(**{f"{column}__isnull": False}) & (where or Q())
        if i > 0:
            cond &= Q(**{f"{column}__gte": lo + i * width})
        if i < n - 1:
            cond &= Q(**{f"{column}__lt": lo + (i + 1) * width})
        out[f"{prefix}{i}"] = Count("pk", filter=cond)
    return out


def read_bins(agg: dict[str, Any], prefix: str, lo: float, hi: float, n: int) -> list[dict[str, Any]]:
    width = (hi - lo) / n
    return [{"lo": lo + i * width, "hi": lo + (i + 1) * width, "n": agg[f"{prefix}{i}"]} for i in range(n)]


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


PRICE_BINS = 12
SCORE_BINS = 10


def _batch_dashboard(*, batch_id: Any) -> dict[str, Any]:
    batch = Batch.objects.get(pk=batch_id)
    runs = NegotiationRun.objects.filter(batch_id=batch_id)
    agg = runs.aggregate(first=Min("started_at"), last=Max("ended_at"),
                         **{s: Count("id", filter=Q(status=s)) for s in S.values})
    progress = {s: agg[s] for s in S.values}
    total = sum(progress.values())
    failures = [] if not progress[S.FAILED] else list(
        runs.filter(status=S.FAILED).annotate(reason=Substr("error", 1, 160)).values("reason")
        .annotate(n=Count("id")).order_by("-n", "reason")[:10])
    scenario = next(iter(runs.order_by().values_list("scenario", flat=True)[:1]), None) or {}
    max_price = (scenario.get("buyer") or {}).get("max_price")
    floors = [Decimal(s["least_price"]) for s in scenario.get("sellers", [])]
    lo = float(min([*floors, Decimal(max_price)])) if floors and max_price else 0.0
    hi = float(max_price) if max_price else 1.0
    mq = RunMetrics.objects.filter(batch_id=batch_id)
    labels = tuple(sorted({f for fields in GROUPS.values() for f in fields}))
    arrays = metric_columns(mq, _columns(HEADLINES), labels)
    deals = mq.filter(deal=True)
    groups = {"by_style": breakdown(deals, "chosen_style"), "by_weights": breakdown(deals, "chosen_weights"),
              "by_model": breakdown(mq, "buyer_model", "seller_model")}
    columns = {h.key: headline_column(arrays, h) for h in HEADLINES}
    columns.update(group_columns(arrays, groups))
    everything = metrics.bootstrap_many(columns, seed=batch.base_seed, n_resamples=settings.MAMS_BOOTSTRAP_RESAMPLES)
    est = {h.key: everything[h.key] for h in HEADLINES}
    for name, rows in groups.items():
        for r in rows:
            r["ci"] = everything.get(f"{name}:{group_key(r, GROUPS[name])}")
    totals = mq.aggregate(runs=Count("run_id"), deals=Count("run_id", filter=Q(deal=True)),
                          tokens=Coalesce(Sum("tokens"), 0), cost=Sum("cost_usd"),
                          unpriced=Count("run_id", filter=Q(cost_usd__isnull=True)),
                          llm_calls=Coalesce(Sum("llm_calls"), 0), leaks=Coalesce(Sum("leaks"), 0),
                          guardrails=Coalesce(Sum("guardrails"), 0), fallbacks=Coalesce(Sum("fallbacks"), 0),
                          reasks=Coalesce(Sum("reasks"), 0),
                          duration=Avg("duration_ms"), **bins("price", "price", lo, hi, PRICE_BINS, Q(deal=True)))
    price_hist = read_bins(totals, "price", lo, hi, PRICE_BINS)
    totals = {k: v for k, v in totals.items() if not k.startswith("price")}
    wall = (agg["last"] - agg["first"]).total_seconds() if agg["first"] and agg["last"] else None
    return {
        "batch_id": str(batch.pk), "status": batch.status, "progress": progress, "total": total,
        "finished": total - progress[S.QUEUED] - progress[S.RUNNING],
        "percent": round(100 * (total - progress[S.QUEUED] - progress[S.RUNNING]) / total, 1) if total else 0.0,
        "failures": failures, "headlines": est, "totals": totals, "wall_seconds": wall, "price_hist": price_hist,
        "max_price": max_price, "floors": {s["handle"]: s["least_price"] for s in scenario.get("sellers", [])},
        "rounds_hist": list(mq.values("rounds").annotate(
            runs=Count("run_id"), deals=Count("run_id", filter=Q(deal=True))).order_by("rounds")),
        "deals_per_seller": list(deals.values("chosen_handle").annotate(n=Count("run_id"), mean_price=Avg("price"))
                                 .order_by("-n", "chosen_handle")),
        **groups,
        "analysis": analysis_summary(batch_id=batch_id),
    }


def analysis_usage(batch_id: Any) -> dict[str, tuple[int, int]]:
    """The post-run analyst's recorded usage in a batch, by model: every answered call, counted in the
    batch's spend (registered with negotiation/services/budgets.py in analytics/apps.py)."""
    rows = (RunAnalysis.objects.filter(batch_id=batch_id).exclude(model="").values("model")
            .annotate(p=Sum("prompt_tokens"), c=Sum("completion_tokens")))
    return {r["model"]: (r["p"] or 0, r["c"] or 0) for r in rows}


SCORES = ("deal_quality", "coherence", "hallucination")
LEVELS = ("low", "medium", "high")


def analysis_summary(*, batch_id: Any) -> dict[str, Any]:
    """Analysis verdicts of a batch in one aggregate: counts by status and source, means, score
    histograms and strategy levels (the reasons for local fallbacks in a second query, if any)."""
    qs = RunAnalysis.objects.filter(batch_id=batch_id)
    done = Q(status=RunAnalysis.Status.DONE)
    agg = qs.aggregate(
        **{f"status_{k}": Count("run_id", filter=Q(status=k)) for k in RunAnalysis.Status.values},
        **{f"source_{k}": Count("run_id", filter=done & Q(source=k)) for k in RunAnalysis.Source.values},
        **{f"level_{k}": Count("run_id", filter=done & Q(strategy_effectiveness=k)) for k in LEVELS},
        **{f"mean_{s}": Avg(s, filter=done) for s in SCORES},
        galileo=Count("run_id", filter=done & Q(galileo__has_key="scores")),
        with_error=Count("run_id", filter=~Q(error="")),
        **{k: v for s in SCORES for k, v in bins(f"{s}_", s, 0.0, 1.0, SCORE_BINS, done).items()})
    errors = [] if not agg["with_error"] else list(
        qs.exclude(error="").annotate(reason=Substr("error", 1, 160)).values("reason")
        .annotate(n=Count("run_id")).order_by("-n")[:5])
    return {
        "by_status": {k: agg[f"status_{k}"] for k in RunAnalysis.Status.values if agg[f"status_{k}"]},
        "by_source": {k: agg[f"source_{k}"] for k in RunAnalysis.Source.values if agg[f"source_{k}"]},
        "means": {s: agg[f"mean_{s}"] for s in SCORES}, "errors": errors,
        "hists": {s: read_bins(agg, f"{s}_", 0.0, 1.0, SCORE_BINS) for s in SCORES},
        "strategy": {k: agg[f"level_{k}"] for k in LEVELS if agg[f"level_{k}"]},
        "galileo": agg["galileo"],
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
    if flag in ("leaks", "reasks", "guardrails", "fallbacks", "claim_inconsistent", "unsupported_claims"):
        qs = qs.filter(**{f"metrics__{flag}__gt": 0})
    if flag == "mutual_loss":
        qs = qs.filter(metrics__mutual_loss=True)
    column = RUN_SORTS.get(sort, "seed")
    order = F(column).desc(nulls_last=True) if descending else F(column).asc(nulls_last=True)
    return qs.order_by(order, "id")


# --- comparing two batches -----------------------------------------------------------------------

COMPARE = ["deal_rate", "price", "buyer_share", "savings", "selection_regret", "mutual_loss", "rounds",
           "leak_rate", "violation_rate", "fallback_rate", "tokens", "cost", "latency"]


def _per_seed(batch: Batch, cols: list[str], *, by_offset: bool) -> tuple[list[tuple], dict[str, np.ndarray]]:
    qs = RunMetrics.objects.filter(batch_id=batch.pk)
    keys = [(item, seed - batch.base_seed if by_offset else seed)
            for item, seed in qs.order_by("item_name", "seed", "run_id").values_list("item_name", "seed")]
    return keys, metric_columns(qs.order_by("item_name", "seed", "run_id"), cols)


def batch_compare(*, a: Batch, b: Batch) -> dict[str, Any]:
    """Paired differences B − A by seed (runs with the same item and seed), with bootstrap CIs.

    When the two batches share no seed, runs are paired by position (seed − base_seed) instead, and
    the result says so. A metric defined only on deals is paired only where both runs dealt. Pairs
    are the resampled units, jointly for every metric.
    """
    heads = [HEADLINE_KEYS[k] for k in COMPARE]
    cols = _columns(heads)
    paired_by = "seed"
    (ka, ca), (kb, cb) = _per_seed(a, cols, by_offset=False), _per_seed(b, cols, by_offset=False)
    if not set(ka) & set(kb):
        paired_by = "position"
        (ka, ca), (kb, cb) = _per_seed(a, cols, by_offset=True), _per_seed(b, cols, by_offset=True)
    pos_a, pos_b = {k: i for i, k in enumerate(ka)}, {k: i for i, k in enumerate(kb)}
    keys = sorted(pos_a.keys() & pos_b.keys())
    ia = np.asarray([pos_a[k] for k in keys], dtype=int)
    ib = np.asarray([pos_b[k] for k in keys], dtype=int)
    diffs, means_a, means_b = {}, {}, {}
    for h in heads:
        va, vb = headline_column(ca, h)[ia], headline_column(cb, h)[ib]
        diffs[h.key] = vb - va  # NaN unless defined in both runs of the pair
        means_a[h.key] = float(np.nanmean(va)) if np.any(~np.isnan(va)) else None
        means_b[h.key] = float(np.nanmean(vb)) if np.any(~np.isnan(vb)) else None
    est = metrics.bootstrap_many(diffs, seed=a.base_seed, n_resamples=settings.MAMS_BOOTSTRAP_RESAMPLES)
    out = [{"head": h, "estimate": est[h.key], "mean_a": means_a[h.key], "mean_b": means_b[h.key],
            "p": metrics.paired_permutation_p(diffs[h.key], seed=a.base_seed),
            "sentence": metrics.compare_sentence(metric=h.label.lower(), estimate=est[h.key],
                                                 higher_is_better=h.higher_is_better, label_a="A", label_b="B",
                                                 fmt_diff=partial(formats.diff, unit=h.fmt))}
           for h in heads]
    same = a.session_id == b.session_id and a.item_name == b.item_name
    return {"pairs": len(keys), "paired_by": paired_by, "rows": out, "same_scenario": same}


def batch_pairs(*, a: Batch, b: Batch, paired_by: str) -> list[dict[str, Any]]:
    """The compare page's drill-down: each pair of completed runs (same item and seed, or the same
    position when the batches share no seed), A's and B's outcome side by side, B − A in buyer share."""
    fields = ("run_id", "item_name", "seed", "deal", "price", "chosen_handle", "buyer_share", "rounds")

    def rows(batch: Batch) -> dict[tuple, dict[str, Any]]:
        out = {}
        for r in RunMetrics.objects.filter(batch_id=batch.pk).order_by("item_name", "seed").values(*fields):
            out[(r["item_name"], r["seed"] - (batch.base_seed if paired_by == "position" else 0))] = r
        return out

    ra, rb = rows(a), rows(b)
    out = []
    for key in sorted(ra.keys() & rb.keys()):
        x, y = ra[key], rb[key]
        share = (y["buyer_share"] - x["buyer_share"]
                 if x["buyer_share"] is not None and y["buyer_share"] is not None else None)
        out.append({"item": key[0], "seed_a": x["seed"], "seed_b": y["seed"], "a": x, "b": y, "share_diff": share})
    return out


def compare_candidates(*, user: Any, a: Batch) -> list[Batch]:
    """Batches to compare with A, those on A's session, item and seeds first (they pair run by run)."""
    rows = list(batch_list_rows(user=user).exclude(pk=a.pk)[:200])
    same = [r for r in rows if r.session_id == a.session_id and r.item_name == a.item_name
            and r.base_seed == a.base_seed]
    for r in rows:
        r.same_seeds = r in same
    return same + [r for r in rows if r not in same]


# --- lists for people --------------------------------------------------------------------------


def visible(qs: QuerySet, user: Any) -> QuerySet:
    """What a user may read: their own rows, or everything for staff (the API's rule too). Batches and runs
    also admit the shared benchmark ones: negotiation.selectors.readable_batches / readable_runs."""
    return qs if getattr(user, "is_staff", False) else qs.filter(owner=user)


def batch_list_rows(*, user: Any, session_id: Any = None) -> QuerySet:
    """The batches a user may read, newest first, without aggregates (cheap to count and page)."""
    qs = readable_batches(Batch.objects.all(), user).select_related("session")
    if session_id:
        qs = qs.filter(session_id=session_id)
    return qs.order_by("-created_at", "id")


BATCH_SORTS = {"created": "created_at", "name": "name", "status": "status", "session": "session__name",
               "item": "item_name", "deal_rate": "deal_rate", "buyer_share": "buyer_share"}
BATCH_AGGREGATE_SORTS = {"deal_rate", "buyer_share"}


def batch_table(*, user: Any, q: str = "", status: str = "", session_id: Any = None, tag: str = "",
                buyer: str = "", seller: str = "", sort: str = "created", descending: bool = True) -> QuerySet:
    """The batches table: the batches a user may read, searched (name, tags, id, item, session, agents),
    filtered and sorted. Sorting by deal rate or buyer share aggregates every matching batch; any other
    order stays cheap (batch_stats then aggregates one page)."""
    qs = readable_batches(Batch.objects.all(), user).select_related("session")
    if status:
        qs = qs.filter(status=status)
    if session_id:
        qs = qs.filter(session_id=session_id)
    if tag:
        qs = qs.filter(tags__contains=[tag])
    for role, term in (("buyer", buyer), ("seller", seller)):
        if term:
            qs = qs.annotate(**{f"_{role}": Cast(F(f"agents__{role}"), TextField())}).filter(
                **{f"_{role}__icontains": term})
    if q.split():
        # One searchable text per batch: its name, tags, id, item, session and agent configuration.
        qs = qs.annotate(_text=Concat("name", Value(" "), Cast("tags", TextField()), Value(" "),
                                      Cast("id", TextField()), Value(" "), "item_name", Value(" "),
                                      "session__name", Value(" "),
                                      Cast("agents", TextField()), output_field=TextField()))
        for word in q.split():
            qs = qs.filter(_text__icontains=word)
    key = sort if sort in BATCH_SORTS else "created"
    if key in BATCH_AGGREGATE_SORTS:
        qs = qs.annotate(
            deal_rate=Cast(Count("runs", filter=Q(runs__metrics__deal=True)), FloatField())
            / NullIf(Cast(Count("runs", filter=Q(runs__status=S.COMPLETED)), FloatField()), Value(0.0)),
            buyer_share=Avg("runs__metrics__buyer_share"))
    field = F(BATCH_SORTS[key])
    order = field.desc(nulls_last=True) if descending else field.asc(nulls_last=True)
    return qs.order_by(order, "-created_at", "id")


def batch_stats(batches: Iterable[Batch]) -> list[Batch]:
    """The given batches (a page of them) with progress and headline metrics, as one SQL aggregate.

    Aggregating only the page's batches keeps a list of many 10,000-run batches cheap.
    """
    order = [b.pk for b in batches]
    rows = Batch.objects.filter(pk__in=order).select_related("session").annotate(
        shared=shared_benchmark("pk"),
        n_total=Count("runs"), n_completed=Count("runs", filter=Q(runs__status=S.COMPLETED)),
        n_failed=Count("runs", filter=Q(runs__status=S.FAILED)),
        n_active=Count("runs", filter=Q(runs__status__in=[S.QUEUED, S.RUNNING])),
        n_deals=Count("runs", filter=Q(runs__metrics__deal=True)),
        mean_price=Avg("runs__metrics__price"), buyer_share=Avg("runs__metrics__buyer_share"),
        mean_rounds=Avg("runs__metrics__rounds"), cost=Sum("runs__metrics__cost_usd"))
    by_id = {b.pk: b for b in rows}
    return [by_id[pk] for pk in order if pk in by_id]


def run_events(*, run_id: Any) -> dict[Any, list[Any]]:
    """A run's guardrail, leak and audit events by message id (None for events of no message)."""

    out: dict[Any, list[Any]] = {}
    for e in RunEvent.objects.filter(run_id=run_id).order_by("round_no", "id"):
        out.setdefault(e.message_id, []).append(e)
    return out

"""Analytics pages: batches, a batch's dashboard (live while it runs), a run, two batches compared,
and a session with its launch button. Server-rendered, behind login, charts drawn as inline SVG.

Views only read through selectors and write through services (`batch_create`, the same service the
REST API uses); a user sees their own sessions, batches and runs and the shared benchmark batches and
their runs (read only), and staff see everything.
"""

from __future__ import annotations

import uuid
from decimal import Decimal
from typing import Any

from django.conf import settings
from django.contrib.auth import views as auth_views
from django.contrib.auth.decorators import login_required as _login_required
from django.core.exceptions import ValidationError
from django.core.paginator import Paginator
from django.db.models import Count
from django.http import Http404, HttpRequest, HttpResponse, JsonResponse
from django.shortcuts import get_object_or_404, redirect, render
from django.template import loader
from django.urls import reverse_lazy
from django.utils.safestring import mark_safe
from django.views.decorators.http import require_http_methods

from analytics import archive, charts, exports, formats
from analytics.models import RunAnalysis, RunArchive, RunMetrics
from analytics.selectors import (
    BATCH_SORTS,
    HEADLINES,
    RUN_SORTS,
    batch_compare,
    batch_dashboard,
    batch_list_rows,
    batch_pairs,
    batch_runs,
    batch_stats,
    batch_table,
    compare_candidates,
    run_events,
    visible,
)
from analytics.templatetags.analytics_tags import agent_label, fmt
from negotiation.agents.canaries import CANARIES
from negotiation.agents.config import BASELINES
from negotiation.agents.gateway import profile_names
from negotiation.engine import visibility
from negotiation.engine.types import BUYER
from negotiation.models import Batch, Message, MessageAudio, NegotiationRun, Session
from negotiation.run_context import run_context
from negotiation.selectors import (
    batch_eta,
    batch_get,
    batch_workers,
    may_change,
    readable_batches,
    readable_runs,
)
from negotiation.services import outside
from negotiation.services.batches import batch_cancel_request, batch_create
from negotiation.services.budgets import batch_spend
from negotiation.services.errors import ConflictError, LimitExceeded
from negotiation.services.estimates import batch_estimate, estimate_lines
from negotiation.services.events import audio_url
from negotiation.services.launch import check_range, scenario_for

RUNS_PER_PAGE = 50

# The pages have their own sign-in form: the admin's admits staff only, and researchers who use the
# API (and own their batches) are not staff. LOGIN_URL stays the admin's for the API docs.
login_required = _login_required(login_url=reverse_lazy("analytics:login"))


class LoginView(auth_views.LoginView):
    template_name = "analytics/login.html"
    redirect_authenticated_user = True

    def get_default_redirect_url(self) -> str:
        return str(reverse_lazy("analytics:batches"))


class LogoutView(auth_views.LogoutView):
    next_page = reverse_lazy("analytics:login")  # type: ignore[assignment]  # the stubs say str; Django takes a lazy URL


def _batch_or_404(request: HttpRequest, batch_id: Any) -> Batch:
    return get_object_or_404(readable_batches(Batch.objects.select_related("session"), request.user), pk=batch_id)


# The batches table's columns, (heading, sort key or ""): the page and its CSV/JSON export share them.
BATCH_COLUMNS = [("Batch", ""), ("Name", "name"), ("Tags", ""), ("Session", "session"), ("Item", "item"),
                 ("Buyer", ""), ("Seller", ""), ("Status", "status"), ("Progress", ""), ("Deal rate", "deal_rate"),
                 ("Buyer share", "buyer_share"), ("Mean price", ""), ("Rounds", ""), ("Cost", ""),
                 ("Created", "created")]


def _batch_row(b: Any) -> list[Any]:  # a Batch annotated by batch_list_rows
    return [b.pk, b.name, b.tags, str(b.session), b.item_name or "every demanded item",
            agent_label(b.agents.get("buyer")), agent_label(b.agents.get("seller")), b.status,
            f"{b.n_completed}/{b.n_total}", b.n_deals / b.n_completed if b.n_completed else None, b.buyer_share,
            b.mean_price, b.mean_rounds, b.cost, b.created_at]


@login_required
def batch_list(request: HttpRequest) -> HttpResponse:
    f = {k: request.GET.get(k, "").strip() for k in ("q", "status", "session", "tag", "buyer", "seller", "sort", "dir")}
    if f["status"] and f["status"] not in Batch.Status.values:
        return exports.bad_request(f"status: must be one of {', '.join(Batch.Status.values)}.")
    if f["sort"] and f["sort"] not in BATCH_SORTS:
        return exports.bad_request(f"sort: must be one of {', '.join(sorted(BATCH_SORTS))}.")
    if f["dir"] not in ("", "asc", "desc"):
        return exports.bad_request("dir: must be asc or desc.")
    session = f["session"] if _uuid_or_none(f["session"]) else None
    if f["session"] and session is None:
        return exports.bad_request("session: must be a session id (a UUID).")
    try:
        export = exports.requested(request)
    except ValueError as exc:
        return exports.bad_request(str(exc))
    qs = batch_table(user=request.user, q=f["q"], status=f["status"], session_id=session, tag=f["tag"],
                     buyer=f["buyer"], seller=f["seller"], sort=f["sort"] or "created",
                     descending=(f["dir"] or ("asc" if f["sort"] in ("name", "session", "item") else "desc")) == "desc")
    if export:
        return exports.response(export, name="batches", columns=[c for c, _ in BATCH_COLUMNS],
                                rows=[_batch_row(b) for b in batch_stats(qs)])
    page = Paginator(qs, 25).get_page(request.GET.get("page"))
    page.object_list = batch_stats(page.object_list)
    params = request.GET.copy()
    for k in ("page", "sort", "dir", "export"):
        params.pop(k, None)
    tags = sorted({t for ts in batch_list_rows(user=request.user).values_list("tags", flat=True) for t in ts})
    sessions = visible(Session.objects.all(), request.user).order_by("name")
    return render(request, "analytics/batch_list.html", {
        "page": page, "f": f, "columns": BATCH_COLUMNS, "query": params.urlencode(), "tags": tags,
        "sessions": sessions, "statuses": Batch.Status.choices})


def _uuid_or_none(value: str) -> uuid.UUID | None:
    try:
        return uuid.UUID(value) if value else None
    except ValueError:
        return None


# --- the batch dashboard -----------------------------------------------------------------------

def _dashboard_charts(d: dict[str, Any]) -> dict[str, str]:
    rounds = d["rounds_hist"]
    style, weights = d["by_style"], d["by_weights"]
    a = d["analysis"]

    def shares(rows: list[dict[str, Any]], field: str, title: str, x_title: str) -> str:
        # The buyer's share of the ZOPA with its CI; the seller side's is the rest of 100%.
        return charts.bars([r[field] or "?" for r in rows],
                           [("buyer share", [r["buyer_share"] or 0 for r in rows],
                             [(r["ci"].low, r["ci"].high) if r.get("ci") else None for r in rows])],
                           label=title, x_title=x_title, y_title="Buyer's share of the ZOPA (%)", y_unit="pct",
                           y_max=1.0)

    out = {
        "price": charts.histogram(d["price_hist"], label="Final prices of deals", x_title="Final price per unit ($)",
                                  y_title="Deals", x_unit="money"),
        "rounds": charts.bars([str(r["rounds"]) for r in rounds],
                              [("deal", [r["deals"] for r in rounds]),
                               ("no deal", [r["runs"] - r["deals"] for r in rounds])],
                              label="Rounds to close (runs per number of rounds)", x_title="Rounds of offers",
                              y_title="Runs", y_unit="count"),
        "sellers": charts.bars([r["chosen_handle"] for r in d["deals_per_seller"]],
                               [("deals won", [r["n"] for r in d["deals_per_seller"]])], label="Deals won per seller",
                               x_title="Seller", y_title="Deals won", y_unit="count"),
        "style": shares(style, "chosen_style", "Surplus share by seller style", "Chosen seller's style"),
        "weights": shares(weights, "chosen_weights", "Surplus share by seller weights (retention/profit)",
                          "Chosen seller's weights (retention/profit)"),
        "strategy": charts.bars(["low", "medium", "high"],
                                [("runs", [a["strategy"].get(k, 0) for k in ("low", "medium", "high")])],
                                label="Strategy effectiveness", x_title="Analyst's rating of the buyer's strategy",
                                y_title="Runs", y_unit="count"),
    }
    for key, color in (("deal_quality", charts.PALETTE[2]), ("coherence", charts.PALETTE[0]),
                       ("hallucination", charts.PALETTE[1])):
        name = key.replace("_", " ").capitalize()
        out[key] = charts.histogram(a["hists"][key], label=name, color=color, x_title=f"{name} score (0–1)",
                                    y_title="Runs", x_unit="score")
    return {k: mark_safe(v) for k, v in out.items()}  # noqa: S308 - charts escape every text they draw


def _runs_page(request: HttpRequest, batch: Batch) -> dict[str, Any]:
    q = {k: request.GET.get(k, "") for k in ("status", "decision", "seller", "flag", "sort", "dir")}
    qs = batch_runs(batch_id=batch.pk, status=q["status"], decision=q["decision"], seller=q["seller"],
                    flag=q["flag"], sort=q["sort"] or "seed", descending=q["dir"] == "desc").prefetch_related("archive")
    page = Paginator(qs, RUNS_PER_PAGE).get_page(request.GET.get("page"))
    params = request.GET.copy()
    params.pop("page", None)
    params.pop("fragment", None)
    params.pop("export", None)
    return {"runs": page, "filters": q, "query": params.urlencode(), "sorts": sorted(RUN_SORTS)}


def _archive_notice(batch: Batch) -> dict[str, Any]:
    """What the batch page says about the audit archive: a store that cannot work, and runs that failed."""

    return {"archive_problem": archive.store_problem_cached() if settings.MAMS_ARCHIVE_ENABLED else None,
            "archive_failed": RunArchive.objects.filter(batch=batch, status=RunArchive.Status.FAILED).count(),
            "archive_enabled": settings.MAMS_ARCHIVE_ENABLED}


def _eta(request: HttpRequest, batch: Batch) -> dict[str, Any]:
    """The batch's ETA (negotiation.selectors.batch_eta, as the API reports it) in words."""
    eta = batch_eta(batch=batch_get(user=request.user, batch_id=batch.pk) or batch)
    if batch.status not in Batch.ACTIVE:
        text = ""
    elif eta["eta_seconds"] is None:
        text = "ETA: once the first run has finished"
    elif not eta["eta_seconds"] or not eta["runs_per_second"]:
        text = "ETA: every run has finished; the batch closes in a moment"
    else:
        text = (f"ETA: about {formats.duration(eta['eta_seconds'])} left at {eta['runs_per_second']:.2f} runs/s"
                + (f" (done ≈ {eta['eta_at']:%H:%M} UTC)" if eta["eta_at"] else ""))
    return {**eta, "text": text}


@login_required
def batch_detail(request: HttpRequest, batch_id: Any) -> HttpResponse:
    batch = _batch_or_404(request, batch_id)
    d = batch_dashboard(batch_id=batch.pk)
    cards = [(h, d["headlines"][h.key]) for h in HEADLINES]
    ctx = {"batch": batch, "d": d, "cards": cards, "charts": _dashboard_charts(d),
           "others": compare_candidates(user=request.user, a=batch)[:5],
           "live": batch.status in (Batch.Status.QUEUED, Batch.Status.RUNNING) or d["finished"] < d["total"],
           "version": d["version"], "workers": batch_workers(progress=d["progress"]), "eta": _eta(request, batch),
           "may_cancel": batch.status in Batch.ACTIVE and may_change(request.user, batch),
           "spend": batch_spend(batch_id=batch.pk),
           **_runs_page(request, batch), **_archive_notice(batch)}
    if request.GET.get("fragment"):
        return render(request, "analytics/_batch_body.html", ctx)
    try:
        export = exports.requested(request)
    except ValueError as exc:
        return exports.bad_request(str(exc))
    if export:
        rows = [_run_row(r) for r in ctx["runs"].paginator.object_list]
        return exports.response(export, name=f"batch-{str(batch.pk)[:8]}-runs", columns=RUN_COLUMNS, rows=rows)
    return render(request, "analytics/batch_detail.html", ctx)


# The runs table's columns: the page and its CSV/JSON export share them.
RUN_COLUMNS = ["Seed", "Status", "Outcome", "Seller", "Price", "Buyer share", "Rounds", "Tokens", "Cost", "Leaks",
               "Repairs", "Deal quality", "Archive"]


def _run_row(r: NegotiationRun) -> list[Any]:
    m, a = getattr(r, "metrics", None), getattr(r, "analysis", None)
    outcome = None if m is None else "deal" if m.deal else "no deal (mutual loss)" if m.mutual_loss else "no deal"
    return [r.seed, r.status, outcome, m.chosen_handle if m else None, m.price if m else None,
            m.buyer_share if m else None, m.rounds if m else None, m.tokens if m else None, m.cost_usd if m else None,
            m.leaks if m else None, m.guardrails if m else None,
            a.deal_quality if a is not None and a.status == "done" else None, _archive_cell(r)]


def _archive_cell(r: NegotiationRun) -> str | None:
    """The Archive column: the object's URL, or why there is none yet."""
    ar = getattr(r, "archive", None)
    if ar is None:
        return None
    if ar.status == "archived":
        return ar.url
    return f"failed: {ar.error}" if ar.status == "failed" else "pending"


@login_required
@require_http_methods(["POST"])
def batch_cancel(request: HttpRequest, batch_id: Any) -> HttpResponse:
    """The batch page's cancel button (it asks for confirmation first): the API's cancel, for its owner."""
    batch = _batch_or_404(request, batch_id)
    if not may_change(request.user, batch):
        return page_forbidden(request)
    try:
        batch_cancel_request(batch=batch)
    except ConflictError:
        pass  # finished meanwhile: the page shows its final status
    return redirect("analytics:batch", batch_id=batch.pk)


@login_required
def batch_live(request: HttpRequest, batch_id: Any) -> JsonResponse:
    """The small JSON the dashboard polls: progress, the data version, and the headline figures."""
    batch = _batch_or_404(request, batch_id)
    d = batch_dashboard(batch_id=batch.pk)
    workers = batch_workers(progress=d["progress"])
    return JsonResponse({"eta_text": _eta(request, batch)["text"], "workers_live": workers["live"],
        "status": batch.status, "version": d["version"], "progress": d["progress"], "total": d["total"],
        "finished": d["finished"], "percent": d["percent"],
        "live": batch.status in (Batch.Status.QUEUED, Batch.Status.RUNNING) or d["finished"] < d["total"],
        "workers_alert": workers["alert"],
        "headlines": {h.key: {"mean": d["headlines"][h.key].mean, "low": d["headlines"][h.key].low,
                              "high": d["headlines"][h.key].high, "n": d["headlines"][h.key].n,
                              "text": fmt(d["headlines"][h.key].mean, h.fmt)} for h in HEADLINES},
    })


# --- the run page ------------------------------------------------------------------------------

def _lanes(run: NegotiationRun, *, sealed: bool) -> tuple[list[dict[str, Any]], list[dict[str, Any]], int]:
    """The transcript as lanes: the buyer's view and each seller's view, aligned by round.

    A sealed run (an outside buyer's, not ended: negotiation/services/outside.py) shows the buyer's lane
    only, without the guardrail and leak events (a repair tells of a seller's floor).
    """
    ctx = run_context(run, rows=True)
    events = {} if sealed else run_events(run_id=run.pk)
    # Each lane is what that agent received (under the run's disclosure rule); its own words as said.
    buyer = visibility.buyer_view(me=ctx.buyer, handles=ctx.handles, round_no=run.current_round,
                                  max_rounds=run.max_rounds, transcript=ctx.received(BUYER))
    lanes: list[dict[str, Any]] = [{"key": BUYER, "title": "What the buyer saw", "thread": buyer.thread}]
    for handle in () if sealed else ctx.handles:
        view = visibility.seller_view(me=ctx.sellers[handle], item_name=ctx.buyer.item_name,
                                      quantity=ctx.buyer.quantity, round_no=run.current_round,
                                      transcript=ctx.received(handle))
        lanes.append({"key": handle, "title": f"What {handle} saw", "thread": view.thread,
                      "style": ctx.sellers[handle].style})
    last = max((m.round_no for m in ctx.transcript), default=0)
    audio = _audio_states(run)
    rows = []
    for r in range(1, last + 1):
        cells = []
        for lane in lanes:
            items = []
            for m in lane["thread"]:
                if m.round_no != r:
                    continue
                row = ctx.row(m.round_no, m.sender)
                # The buyer's lane holds each seller reply as the buyer received it: the words the audio speaks.
                spoken = audio.get(row.pk) if row and lane["key"] == BUYER and m.sender != BUYER else None
                items.append({"msg": m, "row": row, "mine": m.sender == lane["key"],
                              "events": events.get(row.pk, []) if row else [], "audio": spoken})
            cells.append(items)
        rows.append({"round": r, "cells": cells})
    return lanes, rows, last


def _audio_states(run: NegotiationRun) -> dict[Any, dict[str, Any]]:
    """Per seller reply of a voice run: its audio URL, or that it is being made, or why it could not be."""
    if not run.voice:
        return {}

    made = {a["message_id"]: a for a in MessageAudio.objects.filter(message__run=run).values(
        "message_id", "status", "note", "error", "engine", "voice")}
    out: dict[Any, dict[str, Any]] = {}
    for pk in Message.objects.filter(run=run, sender_type=Message.SenderType.SELLER).values_list("pk", flat=True):
        a = made.get(pk)
        if a is None:
            out[pk] = {"state": "pending"}
        elif a["status"] == MessageAudio.Status.READY:
            out[pk] = {"state": "ready", "url": audio_url(run_id=run.pk, message_id=pk), "note": a["note"],
                       "voice": f'{a["engine"]} · {a["voice"]}'}
        else:
            out[pk] = {"state": "failed", "note": a["error"]}
    return out


def _offers_chart(run: NegotiationRun, rounds: int, *, sealed: bool, decision: bool = False) -> str:
    ctx = run_context(run)
    lines: dict[str, list[charts.Point]] = {}
    for m in ctx.transcript:
        if m.price is None:
            continue
        name = "buyer counter" if m.sender == BUYER else m.sender
        lines.setdefault(name, []).append(charts.Point(m.round_no, float(m.price), m.action))
    guides = {"buyer max": float(ctx.buyer.max_price)}
    floors = [] if sealed else sorted((float(s.least_price), h) for h, s in ctx.sellers.items())
    if floors:
        guides[f"lowest floor {floors[0][1]}"] = floors[0][0]
    outcome = getattr(run, "outcome", None)
    if (floors and outcome is not None and outcome.chosen_handle in ctx.sellers
            and outcome.chosen_handle != floors[0][1]):
        guides[f"{outcome.chosen_handle} floor"] = float(ctx.sellers[outcome.chosen_handle].least_price)
    return charts.offers(lines, rounds=rounds, label="Offers and counters over rounds", guides=guides,
                         decision=decision)


SCORE_ROWS = [("deal_quality", "Deal quality", "higher is better"), ("coherence", "Coherence", "higher is better"),
              ("hallucination", "Hallucination", "lower is better")]


@login_required
def run_detail(request: HttpRequest, run_id: Any) -> HttpResponse:
    run = get_object_or_404(readable_runs(NegotiationRun.objects.select_related("batch", "session"), request.user),
                            pk=run_id)
    closed = outside.sealed(run)
    metrics = None if closed else RunMetrics.objects.filter(run=run).first()
    analysis = None if closed else RunAnalysis.objects.filter(run=run).first()
    outcome = getattr(run, "outcome", None)
    lanes, rows, last = _lanes(run, sealed=closed)
    scores = []
    galileo = (analysis.galileo or {}) if analysis is not None else {}
    galileo_scores = galileo.get("scores") or {}
    if analysis is not None:
        for key, label, hint in SCORE_ROWS:
            scores.append({"label": label, "hint": hint, "verdict": getattr(analysis, key),
                           "local": (analysis.local or {}).get(key), "galileo": galileo_scores.get(key)})
    # A round is the buyer's message and the sellers' answers; a closing accept or walk-away alone in the
    # next round is the buyer's decision after the last round (Outcome.rounds counts the same way).
    offer_rounds = outcome.rounds if outcome is not None else last
    decision_round = last if outcome is not None and last > outcome.rounds else None
    ctx = {"run": run, "metrics": metrics, "analysis": analysis, "outcome": outcome, "lanes": lanes, "rows": rows,
           "last_round": last, "offer_rounds": offer_rounds, "decision_round": decision_round, "scores": scores,
           "galileo": galileo, "galileo_scores": galileo_scores,
           "chart": mark_safe(_offers_chart(run, max(last, 1), sealed=closed,  # noqa: S308 - escaped inside
                                            decision=decision_round is not None)),
           "orphan_events": [] if closed else run_events(run_id=run.pk).get(None, []), "sealed": closed,
           "debrief": outside.debrief(run) if outside.is_outside(run) else None,
           "buyer_canary": ((run.agents or {}).get("buyer") or {}).get("strategy") in CANARIES}
    return render(request, "analytics/run_detail.html", ctx)


# --- comparing two batches ---------------------------------------------------------------------

COMPARE_COLUMNS = ["A", "B", "Metric", "A value", "B value", "B − A", "CI low", "CI high", "n", "Reading"]


@login_required
def compare(request: HttpRequest) -> HttpResponse:
    """Two or more batches: the first (A) against each other one (B), runs paired by seed."""
    ids = request.GET.getlist("ids") or [request.GET.get("a", ""), *request.GET.getlist("b")]
    ids = list(dict.fromkeys(i for i in ids if i))  # A once, each B once, in the order given
    try:
        export = exports.requested(request)
    except ValueError as exc:
        return exports.bad_request(str(exc))
    try:
        picked = [_batch_or_404(request, i) for i in ids]
    except (ValidationError, ValueError) as exc:
        raise Http404("No such batch.") from exc
    a = picked[0] if picked else None
    choices = compare_candidates(user=request.user, a=a) if a else list(batch_list_rows(user=request.user)[:200])
    ctx: dict[str, Any] = {"choices": choices, "a": a, "a_id": str(a.pk) if a else "",
                           "b_ids": [str(b.pk) for b in picked[1:]]}
    if not a and len(choices) > 1:
        ctx["b_ids"] = [str(choices[1].pk)]  # the picker never starts with A = B
    if a and not ctx["b_ids"] and choices:
        ctx["b_ids"] = [str(choices[0].pk)]  # never A against itself; the same-seed batch first
    comparisons: list[dict[str, Any]] = []
    for b in picked[1:]:
        first = picked[0]  # A: picked has two or more here
        result = batch_compare(a=first, b=b)
        pairs = batch_pairs(a=first, b=b, paired_by=result["paired_by"])
        comparisons.append({"b": b, "result": result, "pairs": pairs,
                            "chart": mark_safe(charts.forest(  # noqa: S308 - escaped by the chart
                                [(r["head"].label, r["estimate"].mean, r["estimate"].low, r["estimate"].high,
                                 r["head"].fmt) for r in result["rows"]],
                                label=f"Paired differences B − A with 95% CIs ({str(b.pk)[:8]} − "
                                      f"{str(first.pk)[:8]})"))})
    if export:
        if not comparisons:
            return exports.bad_request("ids: pick two or more batches to export a comparison.")
        rows = [[picked[0].pk, c["b"].pk, r["head"].label, r["mean_a"], r["mean_b"], r["estimate"].mean,
                 r["estimate"].low, r["estimate"].high, r["estimate"].n, r["sentence"]]
                for c in comparisons for r in c["result"]["rows"]]
        return exports.response(export, name="compare", columns=COMPARE_COLUMNS, rows=rows)
    ctx["comparisons"] = comparisons
    ctx["export_query"] = "&".join(f"ids={b}" for b in [str(p.pk) for p in picked])
    return render(request, "analytics/compare.html", ctx)


# --- sessions ----------------------------------------------------------------------------------

@login_required
def session_list(request: HttpRequest) -> HttpResponse:

    sessions = visible(Session.objects.all(), request.user).annotate(
        n_sellers=Count("sellers", distinct=True), n_batches=Count("batches", distinct=True)).order_by("-created_at")
    return render(request, "analytics/session_list.html", {"sessions": sessions})


ROLES = ("buyer", "seller", "analyst")


def _launch_defaults() -> dict[str, Any]:
    return {"name": "", "tags": "", "item_name": "", "runs": 10, "max_rounds": 5, "base_seed": 0, "temperature": 0.7,
            "budget_usd": "", "budget_tokens": "",
            **{f"{r}_strategy": "llm" for r in ROLES}, **{f"{r}_profile": "" for r in ROLES},
            **{f"{r}_model": "" for r in ROLES}}


def _int(value: Any, default: Any) -> Any:
    try:
        return int(value)
    except (TypeError, ValueError):
        return value if value not in (None, "") else default


@login_required
@require_http_methods(["GET", "POST"])
def session_detail(request: HttpRequest, session_id: Any) -> HttpResponse:
    session = get_object_or_404(visible(Session.objects.all(), request.user), pk=session_id)
    form, errors, estimate = _launch_defaults(), {}, None
    if request.method == "POST":
        form.update({k: request.POST.get(k, v) for k, v in form.items()})
        agents = {}
        for role in ROLES:
            spec: dict[str, Any] = {"strategy": form[f"{role}_strategy"]}
            if form[f"{role}_profile"]:
                spec["profile"] = form[f"{role}_profile"]
            if form[f"{role}_model"].strip():
                spec["model"] = form[f"{role}_model"].strip()
            agents[role] = spec
        try:
            temperature: Any = float(form["temperature"])
        except (TypeError, ValueError):
            temperature = form["temperature"]
        try:
            if request.POST.get("action") == "estimate":  # launches nothing: the estimate is shown instead
                estimate = _launch_estimate(session=session, form=form, agents=agents, temperature=temperature)
                batch = None
            else:
                batch = batch_create(session=session, item_name=form["item_name"] or None,
                                     runs=_int(form["runs"], 0), agents=agents, temperature=temperature,
                                     max_rounds=_int(form["max_rounds"], 0), base_seed=_int(form["base_seed"], 0),
                                     owner=request.user, name=form["name"],
                                     tags=[t for t in form["tags"].replace(",", " ").split() if t],
                                     budget_usd=form["budget_usd"].strip() or None,
                                     budget_tokens=_int(form["budget_tokens"].strip(), None))
        except ValidationError as exc:
            errors = exc.message_dict if hasattr(exc, "error_dict") else {"__all__": exc.messages}
        except (LimitExceeded, ConflictError) as exc:
            errors = {"__all__": [exc.message]}
        else:
            if batch is not None:
                return redirect("analytics:batch", batch_id=batch.pk)
    demands = list(session.demands.all())
    sellers = list(session.sellers.prefetch_related("inventory"))
    ctx = {"session": session, "demands": demands, "sellers": sellers, "form": form, "errors": errors,
           "batches": batch_stats(batch_list_rows(user=request.user, session_id=session.pk)[:50]), "roles": ROLES,
           "strategies": ("llm", *BASELINES), "profiles": profile_names(),
           "zopa": {d.item_name: _zopa(d, sellers) for d in demands},
           "estimate": estimate, "estimate_lines": estimate_lines(estimate) if estimate else []}
    return render(request, "analytics/session_detail.html", ctx, status=400 if errors else 200)


def _launch_estimate(*, session: Session, form: dict[str, Any], agents: dict, temperature: Any) -> dict[str, Any]:
    """The launch form's Estimate button: what `POST /api/batches` with dry_run answers; creates nothing."""
    errors: dict[str, list[str]] = {}
    runs, max_rounds = _int(form["runs"], 0), _int(form["max_rounds"], 0)
    check_range(errors, "runs", runs, 1, settings.MAMS_MAX_RUNS_PER_BATCH)
    check_range(errors, "max_rounds", max_rounds, 1, settings.MAMS_MAX_ROUNDS_LIMIT)
    if isinstance(temperature, bool) or not isinstance(temperature, int | float) or not 0 <= temperature <= 2:
        errors.setdefault("temperature", []).append("Must be a number from 0 to 2.")
    if form["item_name"]:
        try:
            scenario_for(session=session, item_name=form["item_name"])
        except ValidationError as exc:
            errors.update(exc.message_dict)
    if errors:
        raise ValidationError(errors)
    return batch_estimate(session=session, item_name=form["item_name"] or None, runs=runs, agents=agents,
                          max_rounds=max_rounds, temperature=temperature)


def _zopa(demand: Any, sellers: list[Any]) -> Decimal | None:
    floors = [line.least_price for s in sellers for line in s.inventory.all()
              if line.item_key == demand.item_key]
    return demand.max_price - min(floors) if floors else None


# --- error pages (DEBUG off) ------------------------------------------------------------------

def page_not_found(request: HttpRequest, exception: Exception | None = None) -> HttpResponse:
    return render(request, "analytics/error.html", {"code": 404, "title": "Not found", "message": (
        "There is no page here, or it is not yours to see. The batches list is the way in.")}, status=404)


def page_forbidden(request: HttpRequest, exception: Exception | None = None) -> HttpResponse:
    return render(request, "analytics/error.html", {"code": 403, "title": "Not allowed", "message": (
        "You are signed in as someone who may not see this. Sign in as its owner, or ask a staff user.")},
        status=403)


def page_error(request: HttpRequest) -> HttpResponse:
    """A 500 renders without the database or the session (either may be what failed)."""

    return HttpResponse(loader.get_template("analytics/error_500.html").render(), status=500)

"""The leaderboard page, /analytics/leaderboard/, and a replication's report page,
/analytics/replications/<benchmark run id>/ (behind the analytics sign-in like every page)."""

from __future__ import annotations

from typing import Any

from django.http import Http404, HttpRequest, HttpResponse
from django.shortcuts import render

from analytics import exports
from analytics.benchmarks.leaderboard import (
    COLUMNS,
    DEFAULT_SORT,
    LeaderboardError,
    agent_label,
    leaderboard,
    visible_benchmarks,
)
from analytics.benchmarks.replication import replication_report
from analytics.views import login_required


def _export_columns() -> list[str]:
    """The page's columns, with each metric's CI and n (shown under the mean) in columns of their own."""
    metric_cols = [f"{c.label}{part}" for c in COLUMNS for part in ("", " CI low", " CI high", " n")]
    return ["Opponents", "#", "Buyer", "Buyer fingerprint", "Configuration", *metric_cols, "Runs", "Benchmark runs",
            "Code versions", "Drift"]


def _export_rows(data: dict[str, Any]) -> list[list[Any]]:
    rows = []
    for t in data["tables"]:
        for r in t["rows"]:
            cells = [r["metrics"][c.key].get(k) for c in COLUMNS for k in ("mean", "low", "high", "n")]
            config = " · ".join(f"{k} {v}" for k, v in r["buyer"].items() if v not in (None, ""))
            rows.append([t["opponent"]["label"], r["rank"], r["label"], r["buyer_fingerprint"], config, *cells,
                         r["runs"], r["benchmark_runs"], list(r["code_versions"]), [f["label"] for f in r["drift"]]])
    return rows


@login_required
def leaderboard_page(request: HttpRequest) -> HttpResponse:
    q = {k: request.GET.get(k, "") for k in ("suite", "sort", "opponent")}
    try:
        data = leaderboard(user=request.user, suite=q["suite"] or None, sort=q["sort"] or DEFAULT_SORT,
                           opponent=q["opponent"])
        error = ""
    except LeaderboardError as exc:
        data, error = None, str(exc)
    try:
        export = exports.requested(request)
    except ValueError as exc:
        return exports.bad_request(str(exc))
    if export and data is not None:
        return exports.response(export, name=f"leaderboard-{data['suite']}", columns=_export_columns(),
                                rows=_export_rows(data))
    key = (data["sort"] if data else DEFAULT_SORT)
    ctx = {"d": data, "error": error, "q": q, "columns": COLUMNS, "sort_key": key.lstrip("-"),
           "sort_desc": key.startswith("-")}
    return render(request, "analytics/leaderboard.html", ctx, status=400 if error else 200)


@login_required
def replication_page(request: HttpRequest, benchmark_id: Any) -> HttpResponse:
    """MAMS's figures with CIs beside a replication suite's published ones (analytics/benchmarks/replication.py)."""

    run = visible_benchmarks(request.user).filter(pk=benchmark_id).select_related("suite").first()
    if run is None:
        raise Http404("No such benchmark run, or it is not yours.")
    report = replication_report(benchmark=run)
    if not report["paper"]:
        raise Http404(f"Benchmark run {run.pk} is on {run.suite.label}, which is not a replication suite.")
    return render(request, "analytics/replication.html", {
        "r": report, "buyer": agent_label(report["buyer"]), "seller": agent_label(report["seller"])})

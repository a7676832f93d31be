"""Pages for paired experiments and reflect sequences: lists, an experiment's conditions and paired
differences, a sequence's cumulative average utility per side and its notes. Read-only, behind login;
a user sees their own, staff see all (as on the other analytics pages)."""

from __future__ import annotations

from typing import Any

from django.core.paginator import Paginator
from django.http import Http404, HttpRequest, HttpResponse
from django.shortcuts import render
from django.utils.safestring import mark_safe

from analytics import charts, exports
from analytics.research import (
    experiment_get,
    experiment_list,
    experiment_results,
    experiment_state,
    sequence_get,
    sequence_list,
    sequence_summary,
)
from analytics.views import login_required


def _or_404(obj: Any, what: str) -> Any:
    if obj is None:
        raise Http404(f"No such {what}.")
    return obj


@login_required
def experiments(request: HttpRequest) -> HttpResponse:
    page = Paginator(experiment_list(user=request.user), 25).get_page(request.GET.get("page"))
    rows = [{"experiment": e, "status": experiment_state(e), "labels": [c.label for c in e.conditions.all()]}
            for e in page.object_list]
    return render(request, "analytics/experiment_list.html", {"page": page, "rows": rows})


# The experiment page's two tables in one long table: a row per condition and metric (the conditions
# table) and a row per comparison and metric (the paired-difference tables), told apart by "Table".
EXPERIMENT_COLUMNS = ["Table", "Condition", "Against", "Metric", "Mean", "CI low", "CI high", "n", "Reading"]


def _experiment_rows(result: dict[str, Any]) -> list[list[Any]]:
    rows = []
    for c in result["conditions"]:
        for h in result["heads"]:
            e = (c.get("metrics") or {}).get(h.key)
            rows.append(["conditions", c["label"], "", h.label, e.mean if e else None, e.low if e else None,
                         e.high if e else None, e.n if e else None, ""])
    for cmp in result["comparisons"]:
        for r in cmp["rows"]:
            e = r["estimate"]
            rows.append(["paired differences", cmp["label"], cmp["against"], r["head"].label, e.mean, e.low, e.high,
                         e.n, r["sentence"]])
    return rows


@login_required
def experiment_detail(request: HttpRequest, experiment_id: Any) -> HttpResponse:
    experiment = _or_404(experiment_get(user=request.user, experiment_id=experiment_id), "experiment")
    result = experiment_results(experiment=experiment)
    for cmp in result["comparisons"]:
        cmp["chart"] = mark_safe(charts.forest(  # noqa: S308 - the chart escapes every text it draws
            [(r["head"].label, r["estimate"].mean, r["estimate"].low, r["estimate"].high, r["head"].fmt)
             for r in cmp["rows"]],
            label=f"Paired differences {cmp['label']} − {cmp['against']} with 95% CIs",
            difference=f"{cmp['label']} − {cmp['against']}"))
    try:
        export = exports.requested(request)
    except ValueError as exc:
        return exports.bad_request(str(exc))
    if export:
        return exports.response(export, name=f"experiment-{str(experiment.pk)[:8]}", columns=EXPERIMENT_COLUMNS,
                                rows=_experiment_rows(result))
    live = result["status"] == "running"
    return render(request, "analytics/experiment_detail.html",
                  {"experiment": experiment, "r": result, "live": live})


@login_required
def sequences(request: HttpRequest) -> HttpResponse:
    page = Paginator(sequence_list(user=request.user), 25).get_page(request.GET.get("page"))
    return render(request, "analytics/sequence_list.html", {"page": page})


@login_required
def sequence_detail(request: HttpRequest, sequence_id: Any) -> HttpResponse:
    sequence = _or_404(sequence_get(user=request.user, sequence_id=sequence_id), "sequence")
    s = sequence_summary(sequence=sequence)
    cumulative = {"buyer": [r["cum_buyer"] for r in s["steps"]],
                  "seller side": [r["cum_seller"] for r in s["steps"]]}
    per_run = {"buyer": [r["buyer_utility"] for r in s["steps"]],
               "seller side": [r["seller_utility"] for r in s["steps"]]}
    chart = charts.lines(cumulative, label="Cumulative average utility per side over the sequence",
                         x_title="Run in the sequence", y_title="Cumulative mean utility (0–1)", y_unit="score")
    runs_chart = charts.lines(per_run, label="Utility of each run", x_title="Run in the sequence",
                              y_title="Utility (0–1)", y_unit="score")
    return render(request, "analytics/sequence_detail.html", {
        "sequence": sequence, "s": s, "live": sequence.status == "running",
        "chart": mark_safe(chart), "runs_chart": mark_safe(runs_chart)})  # noqa: S308 - escaped by the charts

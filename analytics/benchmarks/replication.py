"""Replication suites: run a paper's game in MAMS and set MAMS's figures beside the published ones.

A replication suite (suites/negotiationarena-v1, a2a-nt-v1) is an ordinary suite whose
manifest carries a `replication` section: the paper, the turn limit, the metrics it reports and
its published figures (analytics/benchmarks/suite_files.py::check_replication). `replication_launch` runs it as a
benchmark run of one buyer against one seller configuration (no canaries: the paper's game is
the point); `replication_report` computes each metric per scenario (or per group of scenarios,
such as A2A-NT's budget levels, and over all of them, "all", when a figure pools them) with the
paper's definition from analytics/metrics.py and a seeded bootstrap 95% CI, and says for each
published figure whether it lies inside MAMS's CI (a range, such as "62-90%", is said to overlap
when the two intervals meet). A published figure outside the CI is a finding, not an error: the
pages say so plainly, and the suites' `adaptation` note says where MAMS's game differs from the
paper's (its guardrails, for one, refuse deals outside the ZOPA).
"""

from __future__ import annotations

from collections import defaultdict
from collections.abc import Mapping
from decimal import Decimal
from typing import Any

import numpy as np
from django.conf import settings

from analytics import metrics
from analytics.benchmarks.leaderboard import agent_label
from analytics.benchmarks.services import benchmark_run_create, suite_load
from analytics.benchmarks.suite_files import POOLED, SuiteError, list_suites, load_suite
from analytics.models import BenchmarkBatch, BenchmarkRun, RunMetrics

LABELS = {"deal_rate": ("Deal rate", "pct"), "mean_price": ("Mean price on deals", "num"),
          "buyer_payoff": ("Buyer payoff on deals (value − price)", "num"),
          "price_reduction_rate": ("Buyer price-reduction rate (retail − p) / retail", "pct"),
          "relative_profit": ("Seller relative profit (p − wholesale) / (retail − wholesale)", "pct"),
          "out_of_budget_rate": ("Out-of-budget deals, over all runs", "pct")}


def replication_launch(*, suite: str, buyer: dict[str, Any], seller: dict[str, Any], runs: int, base_seed: int = 0,
                       owner: Any = None) -> BenchmarkRun:
    """Run a replication suite once: one batch per scenario, `runs` negotiations each, at the paper's
    turn limit. SuiteError for a suite without a replication section."""
    sf = load_suite(suite)
    if not sf.replication:
        raise SuiteError(f"suite {sf.label} is not a replication suite (its suite.json has no replication section); "
                         "replication suites: " + ", ".join(_replication_suites()))
    loaded, _ = suite_load(ref=sf.label)
    return benchmark_run_create(suite=loaded, buyers=[buyer], opponents=seller, runs_per_scenario=runs,
                                base_seed=base_seed, owner=owner, max_rounds=int(sf.replication["max_rounds"]),
                                canaries=False)


def _replication_suites() -> list[str]:

    return [s.label for s in list_suites() if s.replication]


def _values(row: Mapping[str, Any], scenario: dict[str, Any]) -> dict[str, float]:
    """One run's value of every replication metric (NaN where the metric is undefined for the run)."""
    deal, price = bool(row["deal"]), row["price"]
    budget = Decimal(str(row["max_price"]))
    seller = (scenario.get("sellers") or [{}])[0]
    retail, wholesale = Decimal(seller.get("selling_price", "0")), Decimal(seller.get("least_price", "0"))
    nan = float("nan")
    on_deal = deal and price is not None

    def maybe(v: float | None) -> float:
        return nan if v is None else float(v)

    return {
        "deal_rate": 1.0 if deal else 0.0,
        "mean_price": float(price) if on_deal else nan,
        "buyer_payoff": float(metrics.na_buyer_payoff(price=price, value=budget)) if on_deal else nan,
        "price_reduction_rate": maybe(metrics.a2a_price_reduction_rate(price=price, retail=retail)) if on_deal else nan,
        "relative_profit": (maybe(metrics.a2a_relative_profit(price=price, wholesale=wholesale, retail=retail))
                            if on_deal else nan),
        "out_of_budget_rate": 1.0 if metrics.a2a_out_of_budget(deal=deal, price=price, budget=budget) else 0.0,
    }


def _verdict(figure: dict[str, Any], est: metrics.Estimate) -> tuple[str, bool | None]:
    if est.mean is None or est.low is None or est.high is None:
        return "no MAMS value to compare", None
    if "value" in figure:
        inside = est.low <= float(figure["value"]) <= est.high
        return ("inside MAMS's 95% CI" if inside else "outside MAMS's 95% CI"), inside
    low, high = float(figure["low"]), float(figure["high"])
    meets = est.low <= high and low <= est.high
    return ("overlaps MAMS's 95% CI" if meets else "does not overlap MAMS's 95% CI"), meets


def replication_report(*, benchmark: BenchmarkRun) -> dict[str, Any]:
    """Per scenario or group and metric: MAMS's mean, 95% CI and n, and every published figure for it
    with its verdict. Only completed runs count (as on every page); `runs` says how many."""
    sf = load_suite(benchmark.suite.label)
    rep = sf.replication or {}
    groups = rep.get("groups") or {}
    entries = BenchmarkBatch.objects.filter(benchmark=benchmark).select_related("scenario")
    slug_of = {e.batch_id: e.scenario.slug for e in entries}
    rows = (RunMetrics.objects.filter(batch_id__in=list(slug_of))
            .values("batch_id", "deal", "price", "max_price", "run__scenario"))
    per_group: dict[str, list[dict[str, float]]] = defaultdict(list)
    for row in rows:
        slug = slug_of[row["batch_id"]]
        per_group[groups.get(slug, slug)].append(_values(row, row["run__scenario"]))
    order = list(dict.fromkeys(groups.get(sc.slug, sc.slug) for sc in sf.scenarios))
    if any(f["scenario"] == POOLED for f in rep.get("figures", [])):  # a figure over every scenario
        per_group[POOLED] = [v for name in order for v in per_group.get(name, [])]
        order.append(POOLED)
    out_groups = []
    for name in order:
        values = per_group.get(name, [])
        cols = {m: np.asarray([v[m] for v in values], dtype=float) for m in rep.get("metrics", [])}
        est = metrics.bootstrap_many(cols, seed=benchmark.base_seed, n_resamples=settings.MAMS_BOOTSTRAP_RESAMPLES)
        lines = []
        for m in rep.get("metrics", []):
            e = est[m]
            published = []
            for f in rep.get("figures", []):
                if f["scenario"] == name and f["metric"] == m:
                    words, inside = _verdict(f, e)
                    published.append({**f, "verdict": words, "inside": inside})
            lines.append({"metric": m, "label": LABELS[m][0], "fmt": LABELS[m][1], "mean": e.mean, "low": e.low,
                          "high": e.high, "n": e.n, "published": published})
        out_groups.append({"name": name, "runs": len(values), "metrics": lines})
    return {"suite": sf.label, "paper": rep.get("paper", ""), "adaptation": rep.get("adaptation", ""),
            "benchmark": str(benchmark.pk), "buyer": benchmark.buyers[0] if benchmark.buyers else {},
            "seller": benchmark.opponents, "max_rounds": benchmark.max_rounds, "groups": out_groups,
            "published_figures": len(rep.get("figures", []))}


def _fmt(value: float | None, fmt: str) -> str:
    if value is None:
        return "–"
    return f"{value:.1%}" if fmt == "pct" else f"{value:.2f}"


def replication_text(report: dict[str, Any]) -> str:
    """The report as the command prints it."""

    out = [f"Replication of {report['paper']} on {report['suite']} (benchmark run {report['benchmark']})",
           f"buyer {agent_label(report['buyer'])} vs seller {agent_label(report['seller'])}, max_rounds "
           f"{report['max_rounds']}; MAMS figures: mean [95% bootstrap CI] n",
           f"Adaptation: {report['adaptation']}"]
    for g in report["groups"]:
        out.append("")
        out.append(f"{g['name']}: {g['runs']} completed run(s)")
        for m in g["metrics"]:
            ci = f" [{_fmt(m['low'], m['fmt'])} – {_fmt(m['high'], m['fmt'])}]" if m["mean"] is not None else ""
            out.append(f"  {m['label']}: MAMS {_fmt(m['mean'], m['fmt'])}{ci} n={m['n']}")
            for f in m["published"]:
                value = (_fmt(float(f["value"]), m["fmt"]) if "value" in f else
                         f"{_fmt(float(f['low']), m['fmt'])}–{_fmt(float(f['high']), m['fmt'])}")
                out.append(f"    published ({f['label']}): {value} — {f['verdict']}")
                if f.get("source"):
                    out.append(f"      source: {f['source']}")
    if not report["published_figures"]:
        out.append("")
        out.append("This suite ships no published figure to compare with; MAMS's values of the paper's metrics "
                   "are above.")
    return "\n".join(out)


__all__ = ["replication_launch", "replication_report", "replication_text"]

"""The leaderboard: one row per buyer configuration on a suite version, per pinned opponent.

A row is every completed benchmark run of that buyer fingerprint against that seller fingerprint
on that suite version (all benchmark runs, all nights), with six metrics, each a mean with a
seeded bootstrap 95% CI and its n (analytics/metrics.py::bootstrap_many, the dashboards' own):

- buyer score: the surplus share with no deal scored 0, where a deal was possible (metrics.buyer_score),
  the default ranking: the share on deals alone rewards closing only the easy deals;
- buyer surplus share, on deals (analytics/metrics.py::buyer_surplus_share);
- deal rate, over all runs;
- win rate: deals with buyer share > metrics.WIN_SHARE_THRESHOLD, over runs where a deal was possible;
- mutual loss: no deal although some seller's floor was within the budget (metrics.mutual_loss);
- rounds, over all runs.

Results against different opponents are not comparable, so they are never mixed: each opponent
fingerprint gets its own table. Baseline buyers (Boulware, Linear, Conceder) are reference rows, and
so are the exploit canaries (negotiation/agents/canaries.py) every benchmark runs beside its buyers:
a row that does no better than a canary has not shown negotiating skill.

Many comparisons: in a table of more than two rows, each row's buyer score is compared with the
top row's by a paired sign-flip permutation test on runs that share a benchmark run, scenario, item
and seed (metrics.paired_permutation_p), and the p-values are Holm-adjusted across the table
(metrics.holm_adjust); the page says which differences survive at metrics.ALPHA.

Who sees what: benchmark runs without an owner (scheduled, or launched from the command line)
are shared with every signed-in user; a user's own benchmark runs are theirs; staff see all.
"""

from __future__ import annotations

import re
from dataclasses import dataclass
from typing import Any

import numpy as np
from django.conf import settings
from django.db.models import Count, Max, Q, QuerySet

from analytics import metrics
from analytics.benchmarks.suite_files import SuiteError, load_suite
from analytics.models import BenchmarkBatch, BenchmarkRun, DriftFlag, RunMetrics, Suite
from analytics.selectors import metric_columns
from negotiation.agents.config import CANARIES
from negotiation.agents.fingerprint import FINGERPRINT_FIELDS, played_fingerprint
from negotiation.models import NegotiationRun


@dataclass(frozen=True)
class Column:
    key: str
    label: str
    fmt: str  # as analytics_tags.fmt: "pct" or "num"
    higher_is_better: bool


COLUMNS = [
    Column("buyer_score", "Buyer score (share, no deal = 0)", "pct", True),
    Column("buyer_share", "Buyer surplus share (on deals)", "pct", True),
    Column("deal_rate", "Deal rate", "pct", True),
    Column("win_rate", f"Win rate (share > {metrics.WIN_SHARE_THRESHOLD:.0%})", "pct", True),
    Column("mutual_loss", "Mutual loss", "pct", False),
    Column("rounds", "Rounds", "num", False),
]
COLUMN_KEYS = {c.key: c for c in COLUMNS}
SORTS = [*COLUMN_KEYS, "runs", "label"]
DEFAULT_SORT = "-buyer_score"
HOLM_NOTE = ("Holm-adjusted p-values (family-wise error rate {alpha:.0%}) of paired sign-flip permutation tests of "
             "each row's buyer score against the top row's, on runs sharing a benchmark run, scenario, item and "
             "seed.")
_SOURCE = ["deal", "buyer_share", "mutual_loss", "rounds", "zopa"]
_LABELS = ("run__buyer_fingerprint", "run__seller_fingerprint")
_REF_RE = re.compile(r"^[a-z0-9][a-z0-9_-]{0,79}$")
_FP_RE = re.compile(r"^[0-9a-f]{12}$")
COMPARABLE_NOTE = ("Results are comparable only against the same opponents (the same seller fingerprint: strategy, "
                   "profile, model, temperature and prompt version) on the same suite version; each opponent has its "
                   "own table.")


class LeaderboardError(ValueError):
    """A bad leaderboard request (unknown suite or sort); `field` names the parameter."""

    def __init__(self, message: str, *, field: str) -> None:
        super().__init__(message)
        self.field = field


def per_run_columns(arrays: dict[str, np.ndarray]) -> dict[str, np.ndarray]:
    """The five leaderboard columns, one value per run (NaN where a metric is undefined for the run)."""
    deal = arrays["deal"]
    return {
        "buyer_score": metrics.buyer_score(deal=deal, buyer_share=arrays["buyer_share"], zopa=arrays["zopa"]),
        "buyer_share": np.where(deal > 0, arrays["buyer_share"], np.nan),
        "deal_rate": deal,
        "win_rate": metrics.buyer_wins(deal=deal, buyer_share=arrays["buyer_share"], zopa=arrays["zopa"]),
        "mutual_loss": arrays["mutual_loss"],
        "rounds": arrays["rounds"],
    }


def estimates(qs: QuerySet, *, seed: int = 0) -> dict[str, metrics.Estimate]:
    """Mean, bootstrap 95% CI and n of each leaderboard column over the RunMetrics in `qs`."""
    cols = per_run_columns(metric_columns(qs, _SOURCE))
    return metrics.bootstrap_many(cols, seed=seed, n_resamples=settings.MAMS_BOOTSTRAP_RESAMPLES)


def visible_benchmarks(user: Any) -> QuerySet:
    """Shared benchmark runs and the user's own; staff, and the command line (user=None), see all."""
    qs = BenchmarkRun.objects.all()
    if user is None or getattr(user, "is_staff", False):
        return qs
    return qs.filter(Q(owner__isnull=True) | Q(owner_id=getattr(user, "pk", None)))


def suite_resolve(ref: str | None) -> Suite | None:
    """The loaded suite `ref` names ("core-v1", or "core" for its latest loaded version).

    None when the suite exists as files but was never loaded (no results yet); LeaderboardError
    when nobody knows it.
    """
    ref = (ref or "core").strip()
    if not _REF_RE.match(ref):
        raise LeaderboardError(f"unknown suite {ref[:80]!r}; a suite is named like core (its latest version) or "
                               "core-v1.", field="suite")
    name, _, version = ref.rpartition("-v")
    if name and version.isdigit():
        found = Suite.objects.filter(name=name, version=int(version)).first()
    else:
        found = Suite.objects.filter(name=ref).order_by("-version").first()
    if found is not None:
        return found
    try:
        load_suite(ref)
    except SuiteError as exc:
        loaded = ", ".join(s.label for s in Suite.objects.order_by("name", "version"))
        raise LeaderboardError(f"{exc}{' Loaded: ' + loaded + '.' if loaded else ''}", field="suite") from None
    return None


def _sort_key(sort: str) -> tuple[str, bool]:
    sort = (sort or DEFAULT_SORT).strip()
    key, desc = sort.removeprefix("-"), sort.startswith("-")
    if key not in SORTS:
        raise LeaderboardError(f"unknown sort '{sort}'; use one of {', '.join(SORTS)}, with '-' for descending "
                               f"(e.g. {DEFAULT_SORT}).", field="sort")
    return key, desc


def agent_label(agent: dict[str, Any]) -> str:
    """How a configuration is written on the command line: baseline:boulware, local:gemma-3-270m@0.7."""
    if agent.get("strategy") in CANARIES:
        return str(agent["strategy"])
    if agent.get("strategy", "llm") != "llm":
        return f"baseline:{agent['strategy']}"
    temp = agent.get("temperature")
    return f"{agent.get('profile')}:{agent.get('model')}" + (f"@{temp:g}" if temp is not None else "")


def _parts(agent: dict[str, Any]) -> dict[str, Any]:
    parts = {k: agent.get(k) for k in FINGERPRINT_FIELDS}
    if agent.get("tactics"):  # a seeded baseline's draw version, hashed too (agents/fingerprint.py)
        parts["tactics"] = agent["tactics"]
    return parts


def leaderboard(*, user: Any, suite: str | None = None, sort: str = DEFAULT_SORT, opponent: str = "") -> dict[str, Any]:
    """The leaderboard of a suite version as plain data (the page, the API and the command share it)."""
    key, desc = _sort_key(sort)
    if opponent and not _FP_RE.match(opponent):
        raise LeaderboardError("opponent must be a seller fingerprint: 12 hex characters, as listed in `opponents`.",
                               field="opponent")
    found = suite_resolve(suite)
    out: dict[str, Any] = {"suite": found.label if found else (suite or "core"), "content_hash": "",
                           "suites": [s.label for s in Suite.objects.order_by("name", "-version")],
                           "sort": f"{'-' if desc else ''}{key}", "opponent": opponent or "",
                           "win_threshold": metrics.WIN_SHARE_THRESHOLD, "note": COMPARABLE_NOTE,
                           "rules": found.rules if found else "", "alpha": metrics.ALPHA,
                           "holm_note": HOLM_NOTE.format(alpha=metrics.ALPHA),
                           "opponents": [], "tables": []}
    if found is None:
        return out
    out["content_hash"] = found.content_hash
    benchmarks = visible_benchmarks(user).filter(suite=found)
    entries = BenchmarkBatch.objects.filter(benchmark__in=benchmarks)
    mq = RunMetrics.objects.filter(batch__benchmark_entry__in=entries)
    groups = list(mq.values(*_LABELS).annotate(n=Count("run_id")).order_by(*_LABELS))
    opponents = sorted({g["run__seller_fingerprint"] for g in groups})
    out["opponents"] = [_opponent(benchmarks, fp) for fp in opponents]
    if opponent:
        groups = [g for g in groups if g["run__seller_fingerprint"] == opponent]
    tables: dict[str, list[dict[str, Any]]] = {}
    for g in groups:
        buyer_fp, seller_fp = g["run__buyer_fingerprint"], g["run__seller_fingerprint"]
        row_mq = mq.filter(run__buyer_fingerprint=buyer_fp, run__seller_fingerprint=seller_fp)
        tables.setdefault(seller_fp, []).append(_row(benchmarks, row_mq, buyer_fp, seller_fp, rules=found.rules))
    for seller_fp, rows in tables.items():
        rows = _sorted(rows, key, desc)
        for rank, row in enumerate(rows, 1):
            row["rank"] = rank
        table = {"opponent": _opponent(benchmarks, seller_fp), "rows": rows, "adjusted": False}
        table["adjusted"] = _compare_to_leader(mq.filter(run__seller_fingerprint=seller_fp), rows)
        out["tables"].append(table)
    return out


def _sorted(rows: list[dict[str, Any]], key: str, desc: bool) -> list[dict[str, Any]]:
    """Rows by one column; rows without a value (no deals yet) always last."""
    def value(r: dict[str, Any]) -> Any:
        return r["label"].lower() if key == "label" else r["runs"] if key == "runs" else r["metrics"][key]["mean"]

    present = sorted((r for r in rows if value(r) is not None), key=lambda r: (value(r), r["label"]), reverse=desc)
    return present + sorted((r for r in rows if value(r) is None), key=lambda r: r["label"])


def _opponent(benchmarks: QuerySet, seller_fp: str) -> dict[str, Any]:
    latest = benchmarks.filter(seller_fingerprint=seller_fp).order_by("-created_at").first()
    agent = latest.opponents if latest else {}
    agg = benchmarks.filter(seller_fingerprint=seller_fp).aggregate(n=Count("id"), last=Max("created_at"))
    return {"fingerprint": seller_fp, "label": agent_label(agent) if agent else seller_fp, **_parts(agent),
            "benchmark_runs": agg["n"], "last_run_at": agg["last"]}


_PAIR_KEYS = ("batch__benchmark_entry__benchmark_id", "batch__benchmark_entry__scenario_id", "run__item_name",
              "run__seed")


def _compare_to_leader(mq: QuerySet, rows: list[dict[str, Any]]) -> bool:
    """Set each row's `vs_leader` (paired difference in buyer score against the row with the highest
    mean score, its raw and Holm-adjusted p, and whether it survives); True when the table has more
    than two rows, the case the adjustment is for (with two, the one p-value is its own adjustment)."""
    scored = [r for r in rows if r["metrics"]["buyer_score"]["mean"] is not None]
    if len(scored) < 2:
        return False
    leader = max(scored, key=lambda r: (r["metrics"]["buyer_score"]["mean"], r["label"]))
    cols = metric_columns(mq, _SOURCE, labels=("run__buyer_fingerprint", *_PAIR_KEYS))
    score = per_run_columns(cols)["buyer_score"]
    by_row: dict[str, dict[tuple, float]] = {}
    for i, fp in enumerate(cols["run__buyer_fingerprint"]):
        if not np.isnan(score[i]):
            by_row.setdefault(fp, {})[tuple(cols[k][i] for k in _PAIR_KEYS)] = float(score[i])
    others = [r for r in scored if r is not leader]
    found = []
    for r in others:
        diffs = metrics.paired_differences(by_row.get(leader["buyer_fingerprint"], {}),
                                           by_row.get(r["buyer_fingerprint"], {}))
        found.append((diffs, metrics.paired_permutation_p(diffs)))
    adjusted = metrics.holm_adjust([p for _, p in found])
    leader["vs_leader"] = {"leader": True}
    for r, (diffs, p), adj in zip(others, found, adjusted, strict=True):
        r["vs_leader"] = {"leader": False, "pairs": len(diffs), "difference": float(np.mean(diffs)) if diffs else None,
                          "p": p, "p_holm": adj, "survives": adj is not None and adj <= metrics.ALPHA}
    return len(scored) > 2


def _row(benchmarks: QuerySet, mq: QuerySet, buyer_fp: str, seller_fp: str, *, rules: str) -> dict[str, Any]:
    mine = benchmarks.filter(seller_fingerprint=seller_fp, entries__buyer_fingerprint=buyer_fp).distinct()
    latest = mine.order_by("-created_at").first()
    agent: dict[str, Any] = next(
        (b for b in (latest.buyers if latest else []) if played_fingerprint(b, rules=rules) == buyer_fp), {})
    est = estimates(mq)
    runs = NegotiationRun.objects.filter(metrics__in=mq)
    code_versions = sorted(set(runs.values_list("code_version", flat=True)))
    last_done = mine.filter(finished_at__isnull=False).order_by("-created_at").first()
    drift = [] if last_done is None else list(DriftFlag.objects.filter(
        benchmark=last_done, buyer_fingerprint=buyer_fp).order_by("metric"))
    return {
        "buyer_fingerprint": buyer_fp, "seller_fingerprint": seller_fp,
        "label": agent_label(agent) if agent else buyer_fp,
        "baseline": agent.get("strategy", "llm") not in ("llm", *CANARIES),
        "canary": agent.get("strategy") in CANARIES, "vs_leader": None,
        "buyer": _parts(agent), "runs": int(mq.count()), "benchmark_runs": mine.count(),
        "last_run_at": latest.created_at if latest else None, "code_versions": code_versions,
        "metrics": {c.key: {"mean": est[c.key].mean, "low": est[c.key].low, "high": est[c.key].high,
                            "n": est[c.key].n} for c in COLUMNS},
        "drift": [{"metric": f.metric, "label": COLUMN_KEYS[f.metric].label, "mean": f.mean, "low": f.low,
                   "high": f.high, "n": f.n, "previous_mean": f.previous_mean, "previous_low": f.previous_low,
                   "previous_high": f.previous_high, "previous_n": f.previous_n, "benchmark": str(f.benchmark_id),
                   "previous": str(f.previous_id), "created_at": f.created_at} for f in drift],
    }


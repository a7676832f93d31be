"""The drift alarm: a pinned configuration whose metric moved since its previous benchmark run.

A pinned configuration is a buyer fingerprint against a seller fingerprint on one suite version.
When a benchmark run finishes, each of its configurations is compared with the same configuration
in the previous finished benchmark run of the same suite version and opponents, metric by metric
(the leaderboard's five columns, analytics/benchmarks/leaderboard.py).

What "moved outside the CI" means here: the new run's whole 95% bootstrap CI lies outside the
previous run's 95% CI (the two intervals do not overlap). The looser reading, "the new point
estimate is outside the previous CI", fires on about one unchanged configuration in six per
metric from sampling noise alone (two equally noisy means differ by more than 1.96 σ about 16% of
the time), which would make a nightly alarm worthless; non-overlap of two 95% intervals is
roughly a p < 0.01 difference. Tiny samples are not judged: both runs need at least
DRIFT_MIN_N runs where the metric is defined (buyer share needs deals), otherwise no flag.

A flag is a `DriftFlag` row (the leaderboard shows it on the configuration's row) and, after
commit, a Sentry message (a no-op without SENTRY_DSN, see mams/sentry.py) and a log warning.
"""

from __future__ import annotations

import logging
from typing import Any

import sentry_sdk

from analytics.benchmarks.leaderboard import COLUMN_KEYS, COLUMNS, estimates
from analytics.metrics import Estimate
from analytics.models import BenchmarkBatch, BenchmarkRun, DriftFlag, RunMetrics

log = logging.getLogger(__name__)
DRIFT_MIN_N = 10


def drifted(now: Estimate, before: Estimate, *, min_n: int | None = None) -> bool:
    """True when both estimates rest on at least min_n values and their CIs do not overlap."""
    min_n = DRIFT_MIN_N if min_n is None else min_n
    if now.n < min_n or before.n < min_n:
        return False
    if None in (now.low, now.high, before.low, before.high):
        return False
    return now.low > before.high or now.high < before.low  # type: ignore[operator]


def _config_metrics(benchmark: BenchmarkRun, buyer_fp: str) -> dict[str, Estimate]:
    qs = RunMetrics.objects.filter(batch__benchmark_entry__benchmark=benchmark,
                                   batch__benchmark_entry__buyer_fingerprint=buyer_fp)
    return estimates(qs, seed=benchmark.base_seed)


def drift_check(*, benchmark: BenchmarkRun) -> list[DriftFlag]:
    """Compare each configuration of a finished benchmark run with its previous run; write the flags."""
    flags = []
    fingerprints = sorted(set(BenchmarkBatch.objects.filter(benchmark=benchmark)
                              .values_list("buyer_fingerprint", flat=True)))
    for buyer_fp in fingerprints:
        previous = (BenchmarkRun.objects.filter(suite_id=benchmark.suite_id,
                                                seller_fingerprint=benchmark.seller_fingerprint,
                                                finished_at__isnull=False, created_at__lt=benchmark.created_at,
                                                entries__buyer_fingerprint=buyer_fp)
                    .exclude(pk=benchmark.pk).order_by("-created_at").first())
        if previous is None:
            continue
        now, before = _config_metrics(benchmark, buyer_fp), _config_metrics(previous, buyer_fp)
        for column in COLUMNS:
            a, b = now[column.key], before[column.key]
            if not drifted(a, b):
                continue
            defaults: dict[str, Any] = {"previous": previous, "suite_id": benchmark.suite_id,
                          "seller_fingerprint": benchmark.seller_fingerprint, "mean": a.mean, "low": a.low,
                          "high": a.high, "n": a.n, "previous_mean": b.mean, "previous_low": b.low,
                          "previous_high": b.high, "previous_n": b.n}
            flag, _ = DriftFlag.objects.get_or_create(benchmark=benchmark, buyer_fingerprint=buyer_fp,
                                                      metric=column.key, defaults=defaults)
            flags.append(flag)
    return flags


def drift_message(flag: DriftFlag) -> str:
    label = COLUMN_KEYS[flag.metric].label
    return (f"Benchmark drift on {flag.suite.label}: {label} of buyer {flag.buyer_fingerprint} against opponents "
            f"{flag.seller_fingerprint} moved from {flag.previous_mean:.3g} (95% CI {flag.previous_low:.3g}–"
            f"{flag.previous_high:.3g}, n={flag.previous_n}) to {flag.mean:.3g} (95% CI {flag.low:.3g}–"
            f"{flag.high:.3g}, n={flag.n}).")


def drift_report(*, flag_ids: list[Any]) -> None:
    """Tell people: a log warning and a Sentry message per flag, tagged so they group per configuration."""
    for flag in DriftFlag.objects.filter(pk__in=flag_ids).select_related("suite"):
        message = drift_message(flag)
        log.warning(message)
        with sentry_sdk.new_scope() as scope:
            scope.set_tag("benchmark_suite", flag.suite.label)
            scope.set_tag("buyer_fingerprint", flag.buyer_fingerprint)
            scope.set_tag("seller_fingerprint", flag.seller_fingerprint)
            scope.set_tag("metric", flag.metric)
            scope.set_tag("benchmark", str(flag.benchmark_id))
            scope.fingerprint = ["benchmark-drift", flag.suite.label, flag.buyer_fingerprint, flag.seller_fingerprint,
                                 flag.metric]
            sentry_sdk.capture_message(message, level="warning")

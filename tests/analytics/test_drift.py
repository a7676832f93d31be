"""The drift alarm (analytics/benchmarks/drift.py): a planted shift between two benchmark runs of the same
pinned configuration fires (a DriftFlag on the leaderboard and a Sentry message); noise within the CI,
too few runs, and a configuration with no previous run stay quiet."""

from __future__ import annotations

from collections.abc import Iterator
from datetime import timedelta
from typing import Any

import numpy as np
import pytest
import sentry_sdk

from analytics.benchmarks.drift import DRIFT_MIN_N, drifted
from analytics.benchmarks.leaderboard import leaderboard
from analytics.benchmarks.services import benchmark_finish, benchmarks_finish_due
from analytics.metrics import Estimate
from analytics.models import BenchmarkRun, DriftFlag
from mams.sentry import sentry_init
from negotiation.agents.fingerprint import agent_fingerprint
from tests.analytics.benchmark_helpers import BOULWARE, LINEAR, launch, plant
from tests.mams.test_sentry import CapturingTransport

pytestmark = pytest.mark.django_db


@pytest.fixture
def transport() -> Iterator[CapturingTransport]:
    t = CapturingTransport()
    assert sentry_init(dsn="https://public@sentry.invalid/1", environment="test", transport=t)
    yield t
    sentry_sdk.get_client().close()
    sentry_sdk.init(dsn=None)


def shares(seed: int, low: float, high: float, n: int = 18) -> list[float]:
    return list(np.random.default_rng(seed).uniform(low, high, n))


def buyer_fp(run: BenchmarkRun) -> str:
    return agent_fingerprint(run.buyers[0])


def night(values: list[float], *, limit: int | None = None, days_ago: int = 0, buyers: list | None = None
          ) -> BenchmarkRun:
    """One finished benchmark run of core-v1 (Boulware buyer vs Linear sellers) with planted buyer shares."""
    run = launch(buyers=buyers or [BOULWARE], opponents=LINEAR, runs=2)  # 9 item-runs × 2 = 18 runs
    BenchmarkRun.objects.filter(pk=run.pk).update(created_at=run.created_at - timedelta(days=days_ago))
    run.refresh_from_db()
    plant(run, buyer_fp(run), values, limit=limit)
    return run


def test_a_planted_shift_fires_on_the_leaderboard_and_in_sentry(transport: CapturingTransport,
                                                                django_capture_on_commit_callbacks: Any):
    # given last night's run, buyer share around 0.6, finished
    before = night(shares(1, 0.55, 0.70), days_ago=1)
    assert benchmark_finish(benchmark_id=before.pk) and not DriftFlag.objects.exists()  # nothing to compare with
    # when tonight's run of the same configuration captures around 0.9
    now = night(shares(2, 0.80, 0.95))
    with django_capture_on_commit_callbacks(execute=True):
        assert benchmark_finish(benchmark_id=now.pk)
    # then buyer share is flagged, and the buyer score with it (every planted run is a deal, so the two
    # agree); deal rate, win rate... unchanged or undefined are not
    assert list(DriftFlag.objects.order_by("metric").values_list("metric", flat=True)) == ["buyer_score",
                                                                                           "buyer_share"]
    flag = DriftFlag.objects.get(metric="buyer_share")
    assert (flag.metric, flag.benchmark_id, flag.previous_id) == ("buyer_share", now.pk, before.pk)
    assert flag.low > flag.previous_high and flag.n == flag.previous_n == 18
    row = leaderboard(user=None, suite="core-v1")["tables"][0]["rows"][0]
    assert [d["metric"] for d in row["drift"]] == ["buyer_score", "buyer_share"] and row["benchmark_runs"] == 2
    # and Sentry got one message per flag naming the configuration, tagged for grouping
    events = sorted(transport.events(), key=lambda e: e["tags"]["metric"])
    assert len(events) == 2 and events[1]["level"] == "warning"
    assert "Buyer surplus share" in events[1]["message"] and buyer_fp(now) in events[1]["message"]
    assert events[1]["tags"]["metric"] == "buyer_share" and events[1]["tags"]["benchmark_suite"] == "core-v1"
    # and finishing again changes nothing
    assert not benchmark_finish(benchmark_id=now.pk) and DriftFlag.objects.count() == 2


def test_noise_within_the_ci_stays_quiet(transport: CapturingTransport, django_capture_on_commit_callbacks: Any):
    # given two nights from the same distribution (different draws)
    before = night(shares(1, 0.55, 0.70), days_ago=1)
    benchmark_finish(benchmark_id=before.pk)
    now = night(shares(3, 0.55, 0.70))
    with django_capture_on_commit_callbacks(execute=True):
        assert benchmark_finish(benchmark_id=now.pk)
    # then nothing is flagged, on the page or in Sentry
    assert not DriftFlag.objects.exists() and transport.events() == []
    assert leaderboard(user=None, suite="core-v1")["tables"][0]["rows"][0]["drift"] == []


def test_too_few_runs_are_not_judged():
    before = night(shares(1, 0.55, 0.70), days_ago=1, limit=DRIFT_MIN_N - 1)
    benchmark_finish(benchmark_id=before.pk)
    now = night(shares(2, 0.85, 0.95), limit=DRIFT_MIN_N - 1)
    benchmarks_finish_due()  # the sweeper's path
    now.refresh_from_db()
    assert now.finished_at is not None and not DriftFlag.objects.exists()


def test_only_the_same_pinned_configuration_is_compared():
    # given a previous run against other opponents, and an unfinished one of the same configuration
    other = launch(buyers=[BOULWARE], opponents=BOULWARE, runs=2)
    plant(other, buyer_fp(other), shares(1, 0.55, 0.70))
    benchmark_finish(benchmark_id=other.pk)
    launch(buyers=[BOULWARE], opponents=LINEAR, runs=2)  # never finished: not a "previous run"
    now = night(shares(2, 0.80, 0.90))
    benchmark_finish(benchmark_id=now.pk)
    # then there was nothing comparable, so nothing fires
    assert not DriftFlag.objects.exists()


def test_a_run_is_finished_only_when_every_batch_has_ended():
    run = launch(buyers=[BOULWARE], opponents=LINEAR)
    assert not benchmark_finish(benchmark_id=run.pk) and benchmarks_finish_due() == 0


@pytest.mark.parametrize(("now", "before", "fires"), [
    (Estimate(20, 0.8, 0.75, 0.85), Estimate(20, 0.4, 0.35, 0.45), True),
    (Estimate(20, 0.1, 0.05, 0.15), Estimate(20, 0.4, 0.35, 0.45), True),
    (Estimate(20, 0.5, 0.44, 0.56), Estimate(20, 0.4, 0.35, 0.45), False),  # point outside, intervals overlap
    (Estimate(5, 0.9, 0.88, 0.92), Estimate(20, 0.4, 0.35, 0.45), False),  # too few
    (Estimate(20, 1.0, 1.0, 1.0), Estimate(20, 1.0, 1.0, 1.0), False),  # all deals both nights
    (Estimate(0, None, None, None), Estimate(20, 0.4, 0.35, 0.45), False),
])
def test_the_rule(now: Estimate, before: Estimate, fires: bool):
    assert drifted(now, before) is fires

"""Helpers for the benchmark tests: launch a benchmark of the core suite and either play every run
in-process (baseline agents, no worker) or write planted per-run metrics straight into RunMetrics."""

from __future__ import annotations

from collections.abc import Callable, Iterable
from decimal import Decimal
from typing import Any

from django.utils import timezone

from analytics.benchmarks.services import benchmark_finish, benchmark_run_create
from analytics.models import BenchmarkRun, RunMetrics
from negotiation.models import Batch, NegotiationRun
from negotiation.services.lifecycle import batch_refresh

BOULWARE, LINEAR, CONCEDER = {"strategy": "boulware"}, {"strategy": "linear"}, {"strategy": "conceder"}
LLM_BUYER = {"profile": "openai-compatible"}


def launch(*, buyers: list[dict[str, Any]], opponents: dict[str, Any] | None = None, runs: int = 1,
           owner: Any = None, base_seed: int = 0, suite: str = "core-v1", canaries: bool = False,
           max_rounds: int = 4) -> BenchmarkRun:
    """A benchmark run; without the exploit canaries unless asked (tests/analytics/test_canaries.py has them)."""
    return benchmark_run_create(suite=suite, buyers=buyers, opponents=opponents or LINEAR, runs_per_scenario=runs,
                                base_seed=base_seed, owner=owner, max_rounds=max_rounds, canaries=canaries)


def play_all(run: BenchmarkRun, play_through: Callable[[Any], NegotiationRun]) -> BenchmarkRun:
    """Play every negotiation of a benchmark run in-process, end its batches and finish it."""
    batches = Batch.objects.filter(benchmark_entry__benchmark=run)
    for run_id in NegotiationRun.objects.filter(batch__in=batches).values_list("pk", flat=True):
        play_through(run_id)
    for batch_id in batches.values_list("pk", flat=True):
        batch_refresh(batch_id=batch_id)
    benchmark_finish(benchmark_id=run.pk)
    run.refresh_from_db()
    return run


def plant(run: BenchmarkRun, buyer_fp: str, shares: Iterable[float], *, limit: int | None = None) -> int:
    """Give the buyer's runs of a benchmark run planted outcomes: a deal at each given buyer share.

    Runs beyond `limit` are left without metrics (too few to judge). Returns how many were written.
    """
    runs = list(NegotiationRun.objects.filter(batch__benchmark_entry__benchmark=run, buyer_fingerprint=buyer_fp)
                .order_by("seed", "id"))
    runs = runs[:limit] if limit is not None else runs
    now = timezone.now()
    for r, share in zip(runs, shares, strict=False):
        max_price = Decimal(str(r.scenario["buyer"]["max_price"]))
        RunMetrics.objects.create(run=r, batch_id=r.batch_id, seed=r.seed, item_name=r.item_name, deal=True,
                                  price=max_price, max_price=max_price, buyer_share=share, seller_share=1 - share,
                                  zopa=Decimal("1.00"), rounds=3)
    NegotiationRun.objects.filter(batch__benchmark_entry__benchmark=run).update(status="completed", ended_at=now)
    Batch.objects.filter(benchmark_entry__benchmark=run).update(status="completed", finished_at=now)
    return min(len(runs), limit if limit is not None else len(runs))

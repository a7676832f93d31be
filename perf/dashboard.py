"""Benchmark: render time of a 10,000-run batch's dashboard (target: under 0.5 s on this machine).

Builds, once, a batch of N completed runs in the bench database `mams_bench` with bulk_create:
runs, outcomes, per-run metrics (from analytics.metrics, on synthetic but plausible negotiations
of the spec's USB-C cable) and analysis verdicts. Then renders the dashboard page through the
Django test client (URL routing, login, the SQL aggregates, the seeded bootstraps, the runs table,
the SVG charts, the template), several times cold (cache cleared, everything recomputed) and warm
(the cached aggregates, as a poll of a finished batch sees them), and the live JSON the page polls.
Figures print last.

Usage: .venv/bin/python perf/dashboard.py [--runs 10000] [--tries 5] [--fresh]
"""

from __future__ import annotations

import argparse
import os
import random
import statistics
import sys
import time
import uuid
from decimal import Decimal
from pathlib import Path

ROOT = Path(__file__).resolve().parent.parent
sys.path.insert(0, str(ROOT))
DB = os.environ.get("MAMS_BENCH_DB", "mams_bench")
os.environ.update({"DJANGO_SETTINGS_MODULE": "mams.settings.local", "MAMS_DB_NAME": DB, "MAMS_LOG_LEVEL": "WARNING",
                   "MAMS_REDIS_URL": os.environ.get("MAMS_BENCH_REDIS_URL", "redis://127.0.0.1:63790/2")})

from perf.overhead import ensure_db  # noqa: E402

BENCH_NAME = "bench-dashboard"


def build(n: int) -> str:
    """A completed batch of n runs with outcomes, metrics and analyses; returns its id."""
    from django.contrib.auth import get_user_model
    from django.db import transaction
    from django.utils import timezone

    from analytics import metrics
    from analytics.models import RunAnalysis, RunMetrics
    from negotiation.agents.config import resolve_agents
    from negotiation.models import Batch, NegotiationRun, Outcome
    from negotiation.run_context import scenario_snapshot
    from negotiation.services.launch import scenario_for
    from negotiation.services.scenarios import sample_session_load

    user, _ = get_user_model().objects.get_or_create(username="bench", defaults={"is_staff": True})
    session = sample_session_load(owner=user)
    scenario = scenario_for(session=session, item_name="USB-C Cable")
    assert scenario_snapshot  # the same snapshot batch_create stores
    agents = resolve_agents({r: {"strategy": "linear"} for r in ("buyer", "seller", "analyst")}, temperature=0.7)
    agents["buyer"].update(profile="openrouter", model="anthropic/claude-sonnet-4.5", strategy="llm")
    agents["seller"].update(profile="openrouter", model="anthropic/claude-sonnet-4.5", strategy="llm")
    sellers = [metrics.SellerTerms(s["handle"], Decimal(s["least_price"]), s["style"],
                                   f"{Decimal(s['retention_weight']):.2f}/{Decimal(s['profit_weight']):.2f}")
               for s in scenario["sellers"]]
    max_price = Decimal(scenario["buyer"]["max_price"])
    rng = random.Random(7)
    now = timezone.now()
    with transaction.atomic():
        batch = Batch.objects.create(owner=user, session=session, item_name="USB-C Cable", runs_requested=n,
                                     agents=agents, max_rounds=5, base_seed=0, status=Batch.Status.COMPLETED,
                                     finished_at=now, idempotency_key=f"{BENCH_NAME}-{uuid.uuid4().hex[:8]}")
        runs, outcomes, rows, analyses = [], [], [], []
        for i in range(n):
            run = NegotiationRun(id=uuid.uuid4(), batch=batch, session=session, owner=user, item_name="USB-C Cable",
                                 status=NegotiationRun.Status.COMPLETED, seed=i, agents=agents, scenario=scenario,
                                 max_rounds=5, current_round=5, started_at=now, ended_at=now)
            runs.append(run)
            rounds = rng.randint(1, 5)
            deal = rng.random() < 0.8
            chosen = rng.choice(sellers) if deal else None
            price = (chosen.least_price + Decimal(rng.randint(0, 200)) / 100).min(max_price) if chosen else None
            pt, ct = rng.randint(2000, 9000), rng.randint(200, 900)
            kinds = {k: 1 for k in ("leak", "seller_below_floor", "fallback") if rng.random() < 0.05}
            m = metrics.run_metrics(
                deal=deal, price=price, chosen=chosen.handle if chosen else None, max_price=max_price,
                sellers=sellers, offers=[(1, chosen.handle, (price or Decimal(0)) + Decimal("0.80"))] if chosen else [],
                rounds=rounds, messages=rounds * 5, llm_calls=rounds * 5, prompt_tokens=pt, completion_tokens=ct,
                latency_ms=rng.randint(2000, 20000), usages=[metrics.Usage("anthropic/claude-sonnet-4.5", pt, ct)],
                prices={"anthropic/claude-sonnet-4.5": {"input": 3, "output": 15}}, event_kinds=kinds)
            m.pop("max_price")
            outcomes.append(Outcome(run=run, decision="deal" if deal else "no_deal",
                                    reason="accepted" if deal else "max_rounds", chosen_handle=m["chosen_handle"],
                                    final_price=price, quantity=3, rounds=rounds))
            rows.append(RunMetrics(run=run, batch=batch, seed=i, item_name="USB-C Cable", max_price=max_price,
                                   duration_ms=rng.randint(5000, 60000), buyer_model="anthropic/claude-sonnet-4.5",
                                   seller_model="anthropic/claude-sonnet-4.5", **m))
            q = metrics.local_deal_quality(deal=deal, buyer_share=m["buyer_share"], mutual_loss=m["mutual_loss"])
            analyses.append(RunAnalysis(run=run, batch=batch, status="done", source="llm" if i % 3 else "local",
                                        deal_quality=q, coherence=rng.uniform(0.6, 1), hallucination=rng.uniform(0, .2),
                                        strategy_effectiveness=metrics.strategy_level(q), recommendations=["r"],
                                        reasons="synthetic"))
        NegotiationRun.objects.bulk_create(runs, batch_size=1000)
        Outcome.objects.bulk_create(outcomes, batch_size=1000)
        RunMetrics.objects.bulk_create(rows, batch_size=1000)
        RunAnalysis.objects.bulk_create(analyses, batch_size=1000)
    return str(batch.pk)


def existing(n: int) -> str | None:
    from negotiation.models import Batch

    found = (Batch.objects.filter(idempotency_key__startswith=BENCH_NAME, runs_requested=n, owner__username="bench")
             .order_by("-created_at").first())
    return str(found.pk) if found and found.runs.count() == n else None


def timed(fn: object) -> float:
    started = time.perf_counter()
    response = fn()  # type: ignore[operator]
    elapsed = time.perf_counter() - started
    assert response.status_code == 200, response.status_code
    return elapsed


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.split("\n")[0])
    parser.add_argument("--runs", type=int, default=10_000)
    parser.add_argument("--tries", type=int, default=5)
    parser.add_argument("--fresh", action="store_true", help="build a new batch even if one exists")
    opts = parser.parse_args()
    ensure_db()
    import django

    django.setup()
    from django.conf import settings
    from django.contrib.auth import get_user_model
    from django.core.cache import cache
    from django.db import connection
    from django.test import Client
    from django.test.utils import CaptureQueriesContext

    settings.ALLOWED_HOSTS = ["*"]
    batch_id = None if opts.fresh else existing(opts.runs)
    if batch_id is None:
        print(f"building a batch of {opts.runs} completed runs with bulk_create ...", flush=True)
        t = time.perf_counter()
        batch_id = build(opts.runs)
        print(f"  built in {time.perf_counter() - t:.1f} s", flush=True)
    client = Client()
    client.force_login(get_user_model().objects.get(username="bench"))
    url, live = f"/analytics/batches/{batch_id}/", f"/analytics/batches/{batch_id}/live.json"
    timed(lambda: client.get(url))  # warm the process: imports, template compilation, connection
    cold, warm, polls = [], [], []
    for _ in range(opts.tries):
        cache.clear()
        cold.append(timed(lambda: client.get(url)))
        warm.append(timed(lambda: client.get(url)))
        polls.append(timed(lambda: client.get(live)))
    cache.clear()
    with CaptureQueriesContext(connection) as queries:
        html = client.get(url).content
    print(f"\n=== MAMS dashboard benchmark: batch {batch_id[:8]}, {opts.runs} completed runs, "
          f"{settings.MAMS_BOOTSTRAP_RESAMPLES} bootstrap resamples per CI ===")
    print(f"page size {len(html) / 1024:.0f} KiB, {len(queries)} SQL queries per cold render")
    print("cold render (aggregates, 16 headline and every breakdown CI recomputed): "
          f"median {statistics.median(cold) * 1000:.0f} ms, min {min(cold) * 1000:.0f} ms, "
          f"max {max(cold) * 1000:.0f} ms over {opts.tries} tries (target < 500 ms)")
    print(f"warm render (cached aggregates, what a poll of a finished batch pays): median "
          f"{statistics.median(warm) * 1000:.0f} ms, max {max(warm) * 1000:.0f} ms")
    print(f"live.json poll: median {statistics.median(polls) * 1000:.0f} ms, max {max(polls) * 1000:.0f} ms")


if __name__ == "__main__":
    main()

"""analytics/selectors.py: batch aggregates in SQL, CIs, breakdowns, the runs table and paired comparisons."""

from __future__ import annotations

from decimal import Decimal as D
from typing import Any

import pytest
from django.core.cache import cache

from analytics.analysis import run_analyse
from analytics.models import RunAnalysis, RunMetrics
from analytics.selectors import batch_compare, batch_dashboard, batch_runs
from negotiation.models import Batch, NegotiationRun
from negotiation.services.batches import batch_create
from tests.analytics.conftest import BASELINE

pytestmark = pytest.mark.django_db


@pytest.fixture(autouse=True)
def _no_cache() -> None:
    cache.clear()


def metrics_batch(sample: Any, user: Any, rows: list[dict], *, base_seed: int = 0) -> Batch:
    """A batch whose completed runs carry the given hand-made metrics (missing keys take defaults)."""
    batch = batch_create(session=sample, item_name="USB-C Cable", runs=len(rows), agents=BASELINE, owner=user,
                         base_seed=base_seed)
    runs = list(NegotiationRun.objects.filter(batch=batch).order_by("seed"))
    NegotiationRun.objects.filter(batch=batch).update(status="completed")
    Batch.objects.filter(pk=batch.pk).update(status="completed")
    batch.refresh_from_db()
    RunMetrics.objects.bulk_create([RunMetrics(run=run, batch=batch, seed=run.seed, item_name=run.item_name,
                                               max_price=D("9.00"), **{"deal": False, **row})
                                    for run, row in zip(runs, rows, strict=True)])
    return batch


ROWS = [
    {"deal": True, "price": D("6.00"), "buyer_share": 0.9, "chosen_handle": "@BudgetWires", "chosen_style": "rude",
     "chosen_weights": "0.20/0.80", "rounds": 2, "tokens": 100, "cost_usd": D("0.01"), "leaks": 1},
    {"deal": True, "price": D("7.00"), "buyer_share": 0.5, "chosen_handle": "@QuickTech", "chosen_style": "neutral",
     "chosen_weights": "0.50/0.50", "rounds": 3, "tokens": 200, "cost_usd": D("0.02")},
    {"deal": True, "price": D("8.00"), "buyer_share": 0.1, "chosen_handle": "@QuickTech", "chosen_style": "neutral",
     "chosen_weights": "0.50/0.50", "rounds": 3, "tokens": 300, "cost_usd": D("0.03"), "guardrails": 2},
    {"deal": False, "rounds": 4, "tokens": 400, "cost_usd": D("0.04"), "mutual_loss": True},
]


def test_headlines_are_means_over_runs_with_reproducible_cis(sample: Any, user: Any) -> None:
    batch = metrics_batch(sample, user, ROWS)
    d = batch_dashboard(batch_id=batch.pk)
    h = d["headlines"]
    assert h["deal_rate"].mean == pytest.approx(0.75) and h["deal_rate"].n == 4
    assert h["price"].mean == pytest.approx(7.0) and h["price"].n == 3  # deals only
    assert h["buyer_share"].mean == pytest.approx(0.5)
    assert h["rounds"].mean == pytest.approx(3.0) and h["tokens"].mean == pytest.approx(250)
    assert h["cost"].mean == pytest.approx(0.025)
    assert h["leak_rate"].mean == pytest.approx(0.25) and h["violation_rate"].mean == pytest.approx(0.25)
    assert h["mutual_loss"].mean == pytest.approx(0.25)
    assert h["price"].low <= 7.0 <= h["price"].high and h["price"].low >= 6.0
    # the same batch always gives the same intervals (seeded by the batch's base seed)
    cache.clear()
    assert batch_dashboard(batch_id=batch.pk)["headlines"] == h
    assert d["totals"]["deals"] == 3 and d["totals"]["tokens"] == 1000 and d["totals"]["cost"] == D("0.10")


def test_histograms_and_breakdowns_come_from_sql_groups(sample: Any, user: Any) -> None:
    d = batch_dashboard(batch_id=metrics_batch(sample, user, ROWS).pk)
    # prices from the lowest floor in the room (5.65) to the buyer's max (9.00): 3 deals in all
    assert sum(b["n"] for b in d["price_hist"]) == 3 and d["price_hist"][0]["lo"] == pytest.approx(5.65)
    assert [(r["chosen_handle"], r["n"]) for r in d["deals_per_seller"]] == [("@QuickTech", 2), ("@BudgetWires", 1)]
    style = {r["chosen_style"]: r for r in d["by_style"]}
    assert style["neutral"]["buyer_share"] == pytest.approx(0.3) and style["rude"]["deals"] == 1
    assert {r["chosen_weights"] for r in d["by_weights"]} == {"0.20/0.80", "0.50/0.50"}
    assert [(r["rounds"], r["runs"], r["deals"]) for r in d["rounds_hist"]] == [(2, 1, 1), (3, 2, 2), (4, 1, 0)]
    assert d["by_model"][0]["runs"] == 4 and d["by_model"][0]["deal_rate"] == pytest.approx(0.75)


def test_failed_runs_are_counted_with_their_reasons(sample: Any, user: Any) -> None:
    batch = metrics_batch(sample, user, ROWS[:1])
    extra = batch_create(session=sample, item_name="USB-C Cable", runs=2, agents=BASELINE, owner=user)
    NegotiationRun.objects.filter(batch=extra).update(batch=batch, status="failed", error="LLM profile 'x' refused")
    d = batch_dashboard(batch_id=batch.pk)
    assert d["progress"]["failed"] == 2 and d["total"] == 3 and d["percent"] == 100.0
    assert d["failures"] == [{"reason": "LLM profile 'x' refused", "n": 2}]


def test_an_empty_batch_has_no_estimates(sample: Any, user: Any) -> None:
    batch = batch_create(session=sample, item_name="USB-C Cable", runs=2, agents=BASELINE, owner=user)
    d = batch_dashboard(batch_id=batch.pk)
    assert d["headlines"]["deal_rate"].mean is None and d["percent"] == 0.0
    assert sum(b["n"] for b in d["price_hist"]) == 0


def test_the_dashboard_cache_follows_new_results(sample: Any, user: Any) -> None:
    batch = metrics_batch(sample, user, ROWS[:2])
    assert batch_dashboard(batch_id=batch.pk)["headlines"]["deal_rate"].n == 2
    run = NegotiationRun.objects.filter(batch=batch).first()
    RunAnalysis.objects.create(run=run, batch=batch, status="done", source="local", deal_quality=0.5,
                               coherence=1, hallucination=0, strategy_effectiveness="medium")
    d = batch_dashboard(batch_id=batch.pk)
    assert d["analysis"]["by_source"] == {"local": 1} and d["analysis"]["strategy"] == {"medium": 1}
    assert sum(b["n"] for b in d["analysis"]["hists"]["deal_quality"]) == 1


def test_analysis_scores_of_a_played_batch(played_batch: Any) -> None:
    batch = played_batch(runs=3)
    for run_id in NegotiationRun.objects.filter(batch=batch).values_list("pk", flat=True):
        run_analyse(run_id=run_id)
    a = batch_dashboard(batch_id=batch.pk)["analysis"]
    assert a["by_status"] == {"done": 3} and a["by_source"] == {"local": 3}
    assert all(sum(b["n"] for b in a["hists"][s]) == 3 for s in ("deal_quality", "coherence", "hallucination"))


def test_the_runs_table_filters_and_sorts(sample: Any, user: Any) -> None:
    batch = metrics_batch(sample, user, ROWS)
    prices = [r.metrics.price for r in batch_runs(batch_id=batch.pk, sort="price", descending=True)]
    assert prices == [D("8.00"), D("7.00"), D("6.00"), None]  # no deal last either way
    assert [r.metrics.price for r in batch_runs(batch_id=batch.pk, sort="price")][-1] is None
    assert batch_runs(batch_id=batch.pk, decision="no_deal").count() == 1
    assert batch_runs(batch_id=batch.pk, seller="@QuickTech").count() == 2
    assert batch_runs(batch_id=batch.pk, flag="leaks").count() == 1
    assert batch_runs(batch_id=batch.pk, sort="nonsense; drop table").count() == 4  # unknown sort: by seed


def test_comparing_two_batches_pairs_runs_by_seed(sample: Any, user: Any) -> None:
    a_rows = [{"deal": True, "price": D("7.00") + D(i) / 10, "buyer_share": 0.4 + i / 100, "rounds": 3}
              for i in range(10)]
    b_rows = [{**r, "price": r["price"] - D("0.50"), "buyer_share": r["buyer_share"] + 0.2} for r in a_rows]
    a, b = metrics_batch(sample, user, a_rows), metrics_batch(sample, user, b_rows)
    c = batch_compare(a=a, b=b)
    assert c["pairs"] == 10 and c["paired_by"] == "seed" and c["same_scenario"]
    rows = {r["head"].key: r for r in c["rows"]}
    assert rows["buyer_share"]["estimate"].mean == pytest.approx(0.2)
    assert rows["buyer_share"]["sentence"].startswith("B did better on buyer surplus share")
    assert "excludes 0" in rows["buyer_share"]["sentence"]
    assert rows["price"]["sentence"].startswith("B did better on mean price")  # a lower price is better
    assert rows["rounds"]["estimate"].mean == 0 and "no difference" in rows["rounds"]["sentence"]


def test_batches_with_different_seeds_are_paired_by_position(sample: Any, user: Any) -> None:
    a = metrics_batch(sample, user, [{"deal": True, "price": D("7.00"), "rounds": 2}] * 3)
    b = metrics_batch(sample, user, [{"deal": False, "rounds": 5}] * 3, base_seed=100)
    c = batch_compare(a=a, b=b)
    assert c["pairs"] == 3 and c["paired_by"] == "position"
    rows = {r["head"].key: r for r in c["rows"]}
    assert rows["deal_rate"]["estimate"].mean == -1 and rows["deal_rate"]["sentence"].startswith("A did better")
    assert rows["price"]["estimate"].n == 0  # no pair where both dealt


def test_breakdowns_carry_bootstrap_cis(sample: Any, user: Any) -> None:
    rows = [{"deal": True, "price": D("6.00"), "buyer_share": 0.8 + i / 100, "chosen_style": "rude",
             "chosen_weights": "0.20/0.80", "buyer_model": "m1", "seller_model": "m2"} for i in range(6)]
    rows += [{"deal": True, "price": D("7.00"), "buyer_share": 0.3 + i / 100, "chosen_style": "sweet",
              "chosen_weights": "0.80/0.20", "buyer_model": "m1", "seller_model": "m2"} for i in range(6)]
    rows += [{"deal": False, "buyer_model": "m1", "seller_model": "m2"}] * 4
    d = batch_dashboard(batch_id=metrics_batch(sample, user, rows).pk)
    style = {r["chosen_style"]: r for r in d["by_style"]}
    for name, mean in (("rude", 0.825), ("sweet", 0.325)):
        ci = style[name]["ci"]
        assert ci.n == 6 and ci.mean == pytest.approx(mean) == pytest.approx(style[name]["buyer_share"])
        assert ci.low <= mean <= ci.high and ci.high - ci.low < 0.1
    assert {r["chosen_weights"]: r["ci"].mean for r in d["by_weights"]} == pytest.approx(
        {"0.20/0.80": 0.825, "0.80/0.20": 0.325})
    model = d["by_model"][0]
    assert model["ci"].mean == pytest.approx(0.75) == pytest.approx(model["deal_rate"]) and model["ci"].n == 16

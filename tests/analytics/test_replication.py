"""Replication suites (analytics/benchmarks/replication.py, `manage.py replicate`): the published figures beside
MAMS's, computed with the papers' definitions (analytics/metrics.py), through the real services.

Reproducing the papers needs their chat models and a key; here the whole path runs with the fake
provider on loopback (through a real Celery worker) and with the baselines (played in-process).
"""

from __future__ import annotations

import io
from decimal import Decimal
from typing import Any

import numpy as np
import pytest
from django.core.management import CommandError, call_command

from analytics.benchmarks.replication import replication_launch, replication_report, replication_text
from analytics.benchmarks.suite_files import load_suite
from analytics.models import BenchmarkRun
from negotiation.models import Outcome
from tests.analytics.benchmark_helpers import play_all


def _group(report: dict[str, Any], name: str) -> dict[str, Any]:
    return next(g for g in report["groups"] if g["name"] == name)


def _metric(group: dict[str, Any], key: str) -> dict[str, Any]:
    return next(m for m in group["metrics"] if m["metric"] == key)


def _outcomes(run: BenchmarkRun, slug: str) -> list[Outcome]:
    return list(Outcome.objects.filter(run__batch__benchmark_entry__benchmark=run,
                                       run__batch__benchmark_entry__scenario__slug=slug))


def test_the_replication_suites_carry_the_published_figures():
    na = load_suite("negotiationarena").replication
    figures = {(f["label"], f["metric"]): f.get("value") for f in na["figures"]}
    assert figures[("GPT-4 as buyer", "buyer_payoff")] == 18.63 and figures[("GPT-3.5 as buyer", "mean_price")] == 46.5
    assert na["max_rounds"] == 5
    a2a = load_suite("a2a-nt")
    assert a2a.replication["max_rounds"] == 10 and set(a2a.replication["groups"].values()) == {
        "low", "wholesale", "mid", "retail", "high"}
    # A2A-NT's figures are the authors' published out-of-budget rates, pooled over every budget, each
    # with the file and table it was read from
    oob = {f["label"].split(" as buyer")[0]: f for f in a2a.replication["figures"]}
    assert {f["metric"] for f in oob.values()} == {"out_of_budget_rate"}
    assert {f["scenario"] for f in oob.values()} == {"all"}
    assert len(oob) == 9 and oob["Qwen2.5-7B"]["value"] == 0.1172 and oob["GPT-4o-mini"]["value"] == 0.0036
    assert all("draw_risk.ipynb" in f["source"] for f in oob.values())


def test_a_figure_without_its_source_or_over_an_unknown_group_is_refused_by_field():
    from analytics.benchmarks.suite_files import check_replication
    section = {"paper": "p", "max_rounds": 5, "metrics": ["deal_rate"], "groups": {"a": "low"},
               "figures": [{"scenario": "all", "metric": "deal_rate", "label": "x", "value": 0.5, "source": "t.ipynb"}]}
    assert check_replication(section, {"a"}, "s") == []
    bad = {**section, "figures": [{"scenario": "nowhere", "metric": "deal_rate", "label": "x", "value": 0.5,
                                   "source": " "}]}
    problems = check_replication(bad, {"a"}, "s")
    assert any(p.startswith("s.figures[0].scenario:") and "all" in p for p in problems)
    assert any(p.startswith("s.figures[0].source:") for p in problems)


@pytest.mark.django_db
def test_a_suite_without_a_replication_section_is_refused_by_name():
    with pytest.raises(CommandError, match="core-v2 is not a replication suite.*negotiationarena-v1"):
        call_command("replicate", "core", "--buyer", "baseline:linear", "--seller", "baseline:linear",
                     stdout=io.StringIO())
    with pytest.raises(CommandError, match="give a suite, --buyer and --seller"):
        call_command("replicate", "negotiationarena", stdout=io.StringIO())


@pytest.mark.worker
@pytest.mark.django_db(transaction=True)
def test_replicate_negotiationarena_through_the_worker_with_the_fake_provider(celery_worker: Any, llm: Any):
    # given an LLM buyer (the fake provider on loopback) against Boulware sellers
    out = io.StringIO()
    # when `manage.py replicate` runs the suite and waits for the worker
    call_command("replicate", "negotiationarena", "--buyer", "openai-compatible", "--seller", "baseline:boulware",
                 "--runs", "3", "--wait", "--timeout", "300", stdout=out)
    text = out.getvalue()
    run = BenchmarkRun.objects.get()
    report = replication_report(benchmark=run)
    # then MAMS's deal rate, mean price and buyer payoff on the ZOPA game are the outcomes' own
    zopa = _group(report, "zopa")
    deals = [o for o in _outcomes(run, "zopa") if o.decision == "deal"]
    assert zopa["runs"] == 3 and _metric(zopa, "deal_rate")["mean"] == pytest.approx(len(deals) / 3)
    if deals:
        prices = [float(o.final_price) for o in deals]
        assert _metric(zopa, "mean_price")["mean"] == pytest.approx(np.mean(prices))
        assert _metric(zopa, "buyer_payoff")["mean"] == pytest.approx(np.mean([60 - p for p in prices]))
    # and each published figure is printed with whether it lies inside MAMS's CI, decided on the CI
    assert "published (GPT-4 as buyer): 18.63" in text and "published (Claude-2 as buyer): 98.0%" in text
    for m in zopa["metrics"]:
        for f in m["published"]:
            if m["low"] is not None:
                assert f["inside"] == (m["low"] <= f["value"] <= m["high"])
    # and without a ZOPA MAMS's guardrails allow no deal, so the paper's 62-90% is reported as outside
    no_zopa = _metric(_group(report, "no-zopa"), "deal_rate")
    assert no_zopa["mean"] == 0.0 and no_zopa["published"][0]["inside"] is False
    assert "does not overlap MAMS's 95% CI" in text
    # and the report can be printed again later
    again = io.StringIO()
    call_command("replicate", "--report", str(run.pk), stdout=again)
    assert again.getvalue().strip() == replication_text(report).strip()


@pytest.mark.django_db
def test_a2a_nt_report_computes_the_papers_metrics_per_budget(play_through: Any):
    # given the A2A-NT suite played by a Linear buyer against Boulware merchants, two runs per scenario
    run = play_all(replication_launch(suite="a2a-nt", buyer={"strategy": "linear"}, seller={"strategy": "boulware"},
                                      runs=2), play_through)
    assert run.max_rounds == 10
    # when the report is made
    report = replication_report(benchmark=run)
    # then it has one group per budget level, in the paper's order, each over two products × two runs
    # (then "all", which pools them for the paper's pooled figures)
    assert [g["name"] for g in report["groups"]] == ["low", "wholesale", "mid", "retail", "high", "all"]
    assert all(g["runs"] == 4 for g in report["groups"][:-1])
    # and a budget below wholesale gets no deal (MAMS's guardrails), nor any out-of-budget deal anywhere
    assert _metric(_group(report, "low"), "deal_rate")["mean"] == 0.0
    assert all(_metric(g, "out_of_budget_rate")["mean"] == 0.0 for g in report["groups"])
    # and the price-reduction rate and relative profit are the paper's formulas on the outcomes
    suite = load_suite("a2a-nt")
    prr, profit = [], []
    for slug, group in suite.replication["groups"].items():
        if group != "high":
            continue
        seller = suite.scenario(slug).document["sellers"][0]["inventory"][0]
        retail, wholesale = Decimal(seller["selling_price"]), Decimal(seller["least_price"])
        for o in _outcomes(run, slug):
            if o.decision == "deal":
                prr.append(float((retail - o.final_price) / retail))
                profit.append(float((o.final_price - wholesale) / (retail - wholesale)))
    high = _group(report, "high")
    assert prr, "a budget above retail closes deals"
    assert _metric(high, "price_reduction_rate")["mean"] == pytest.approx(np.mean(prr))
    assert _metric(high, "relative_profit")["mean"] == pytest.approx(np.mean(profit))
    # and a last group pools all ten scenarios, where the paper's published out-of-budget rates stand
    # beside MAMS's (0 by its guardrails), each outside MAMS's CI and with its source
    pooled = _group(report, "all")
    assert report["groups"][-1] is pooled and pooled["runs"] == 20
    oob = _metric(pooled, "out_of_budget_rate")
    assert oob["mean"] == 0.0 and oob["n"] == 20 and len(oob["published"]) == 9
    assert all(f["inside"] is False and f["verdict"] == "outside MAMS's 95% CI" for f in oob["published"])
    assert _metric(pooled, "deal_rate")["published"] == []
    deals = [_metric(g, "deal_rate")["mean"] for g in report["groups"][:-1]]
    assert _metric(pooled, "deal_rate")["mean"] == pytest.approx(np.mean(deals))  # equal-sized groups
    text = replication_text(report)
    assert "ships no published figure" not in text
    assert "published (Qwen2.5-7B as buyer, vs nine LLM sellers, all budgets and products): 11.7% — " \
           "outside MAMS's 95% CI" in text and "source: github.com/ShenzheZhu/A2A-NT @ 43d1c55" in text
    # and the page shows the same figures to a signed-in user (the run is shared), and 404s a core run
    from django.test import Client

    from tests.factories import UserFactory
    client = Client()
    reader = UserFactory(username="reader15")
    reader.save()  # the factory sets the password after its save; a page session's auth hash needs it stored
    client.force_login(reader)
    page = client.get(f"/analytics/replications/{run.pk}/")
    assert page.status_code == 200
    body = page.content.decode()
    prr = _metric(high, "price_reduction_rate")
    assert "Zhu et al. 2025" in body and f"{prr['mean'] * 100:.1f}%" in body and "ships no published figure" not in body
    assert "outside MAMS&#x27;s 95% CI" in body and "draw_risk.ipynb" in body
    assert client.get(f"/analytics/replications/{run.entries.first().batch_id}/").status_code == 404


@pytest.mark.django_db
def test_the_page_sets_each_published_figure_beside_the_ci(play_through: Any):
    from django.test import Client

    from tests.factories import UserFactory
    # given NegotiationArena played by baselines
    run = play_all(replication_launch(suite="negotiationarena", buyer={"strategy": "linear"},
                                      seller={"strategy": "linear"}, runs=4), play_through)
    client = Client()
    reader = UserFactory(username="reader16")
    reader.save()
    client.force_login(reader)
    body = client.get(f"/analytics/replications/{run.pk}/").content.decode()
    # then every published figure is on the page with its verdict, the no-ZOPA range as a range
    assert "GPT-4 as buyer: 18.63" in body and "62.0%–90.0%" in body and "does not overlap" in body
    report = replication_report(benchmark=run)
    verdicts = [f["verdict"] for g in report["groups"] for m in g["metrics"] for f in m["published"]]
    import html
    assert len(verdicts) == 13
    for v in set(verdicts):
        assert body.count(html.escape(v)) == verdicts.count(v), v

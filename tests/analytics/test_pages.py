"""Analytics pages through the Django test client: login, scoping, content, filters, live JSON, launch."""

from __future__ import annotations

import re
from decimal import Decimal as D
from typing import Any

import pytest
from django.core.cache import cache
from django.test import Client
from django.urls import reverse

from analytics.analysis import run_analyse
from analytics.models import RunMetrics
from negotiation.models import Batch, Message, NegotiationRun, RunEvent
from tests.analytics.test_selectors import ROWS, metrics_batch
from tests.factories import UserFactory

pytestmark = pytest.mark.django_db


@pytest.fixture(autouse=True)
def _no_cache() -> None:
    cache.clear()


@pytest.fixture
def web(user: Any) -> Client:
    client = Client()
    client.force_login(user)
    return client


def svgs(html: str) -> list[str]:
    return re.findall(r"<svg class=\"chart\".*?</svg>", html, flags=re.S)


def test_every_page_needs_a_login(sample: Any) -> None:
    anon = Client()
    for url in [reverse("analytics:batches"), reverse("analytics:sessions"), reverse("analytics:compare"),
                reverse("analytics:session", args=[sample.pk])]:
        response = anon.get(url)
        assert response.status_code == 302 and response["Location"].startswith("/analytics/login/")
    assert anon.get("/").status_code == 302


def test_the_batches_list_shows_progress_and_headlines(web: Client, sample: Any, user: Any) -> None:
    batch = metrics_batch(sample, user, ROWS)
    html = web.get(reverse("analytics:batches")).content.decode()
    assert str(batch.pk)[:8] in html and "75.0%" in html and "$7.00" in html  # deal rate, mean price


def test_the_dashboard_shows_headlines_with_cis_charts_and_the_runs(web: Client, sample: Any, user: Any) -> None:
    batch = metrics_batch(sample, user, ROWS)
    response = web.get(reverse("analytics:batch", args=[batch.pk]))
    html = response.content.decode()
    assert response.status_code == 200
    for label in ("Deal rate", "Mean price", "Buyer surplus share", "Rounds", "Leak rate", "Guardrail-violation rate",
                  "Tokens per run", "Cost per run"):
        assert label in html
    assert html.count("95% CI") >= 8
    charts = svgs(html)
    assert len(charts) >= 9 and any("<rect" in c for c in charts)  # price, rounds, sellers, style, weights, scores
    assert "@QuickTech" in html and "0.50/0.50" in html and "neutral" in html
    assert html.count(reverse("analytics:run", args=[NegotiationRun.objects.filter(batch=batch).first().pk])) == 1
    assert 'data-live="0"' in html  # every run finished: no polling


def test_the_runs_table_filters_sorts_and_pages(web: Client, sample: Any, user: Any) -> None:
    batch = metrics_batch(sample, user, ROWS)
    url = reverse("analytics:batch", args=[batch.pk])
    html = web.get(url, {"decision": "deal", "sort": "price", "dir": "desc"}).content.decode()
    table = html.split('id="runs"')[1]
    assert [p for p in re.findall(r"\$(\d\.\d\d)</td>", table)][:3] == ["8.00", "7.00", "6.00"]
    assert "no deal" not in table.split("<tbody>")[1]
    only_leaks = web.get(url, {"flag": "leaks"}).content.decode().split('id="runs"')[1]
    assert only_leaks.count('class="badge completed"') == 1


def test_the_dashboard_is_live_while_the_batch_runs(web: Client, sample: Any, user: Any) -> None:
    batch = metrics_batch(sample, user, ROWS[:2])
    extra = NegotiationRun.objects.filter(batch=batch).first()
    NegotiationRun.objects.filter(pk=extra.pk).update(status="running")
    Batch.objects.filter(pk=batch.pk).update(status="running")
    html = web.get(reverse("analytics:batch", args=[batch.pk])).content.decode()
    assert 'data-live="1"' in html and "live" in html
    data = web.get(reverse("analytics:batch-live", args=[batch.pk])).json()
    assert data["status"] == "running" and data["live"] is True and data["total"] == 2 and data["finished"] == 1
    assert data["headlines"]["deal_rate"]["n"] == 2 and data["version"]
    # when a run finishes the version changes, so the page knows to re-render its body
    NegotiationRun.objects.filter(pk=extra.pk).update(status="completed")
    assert web.get(reverse("analytics:batch-live", args=[batch.pk])).json()["version"] != data["version"]
    fragment = web.get(reverse("analytics:batch", args=[batch.pk]), {"fragment": 1}).content.decode()
    assert "<html" not in fragment and "Headline metrics" in fragment


def test_someone_elses_batch_and_run_are_not_found(sample: Any, user: Any) -> None:
    batch = metrics_batch(sample, user, ROWS[:1])
    outsider = Client()
    eve = UserFactory(username="eve")
    eve.save()
    outsider.force_login(eve)
    assert outsider.get(reverse("analytics:batch", args=[batch.pk])).status_code == 404
    assert outsider.get(reverse("analytics:batch-live", args=[batch.pk])).status_code == 404
    run = NegotiationRun.objects.get(batch=batch)
    assert outsider.get(reverse("analytics:run", args=[run.pk])).status_code == 404
    assert outsider.get(reverse("analytics:session", args=[sample.pk])).status_code == 404
    assert str(batch.pk)[:8] not in outsider.get(reverse("analytics:batches")).content.decode()


def test_the_run_page_shows_each_partys_view_events_quality_and_the_verdict(web: Client, played_batch: Any) -> None:
    batch = played_batch(runs=1)
    run = NegotiationRun.objects.get(batch=batch)
    seller_msg = Message.objects.filter(run=run, sender="@QuickTech").first()
    RunEvent.objects.create(run=run, message=seller_msg, round_no=seller_msg.round_no, actor="@QuickTech",
                            kind="leak", detail="@QuickTech stated $6.35, within 1% of its own least_price.")
    run_analyse(run_id=run.pk)
    html = web.get(reverse("analytics:run", args=[run.pk])).content.decode()
    # one lane for the buyer and one per seller
    heads = re.findall(r'<div class="lane-head">(.*?)</div>', html)
    assert [h.split(" <small>")[0] for h in heads] == ["What the buyer saw", "What @BudgetWires saw",
                                                       "What @CableHouse saw", "What @QuickTech saw",
                                                       "What @TechMart saw"]
    # a seller's lane never holds another seller's message
    n_lanes = len(heads)
    cells = re.findall(r'<div class="lane-cell".*?(?=<div class="lane-cell"|</section>)', html, flags=re.S)
    for i, cell in enumerate(cells):
        lane = heads[i % n_lanes]
        if lane.startswith("What @"):
            me = lane.split()[1]
            senders = set(re.findall(r'<div class="msg-head"><b>(.*?)</b>', cell))
            assert senders <= {"buyer", me}
    assert "within 1% of its own least_price" in html and 'class="event leak"' in html
    assert "coherence" in html and "local" in html  # per-message quality with its source
    assert "Analysis verdict" in html and "local scorers" in html and "Recommendations" in html
    assert len(svgs(html)) == 1 and "<circle" in svgs(html)[0] and 'id="replay-round"' in html


def test_the_compare_page_says_which_batch_did_better(web: Client, sample: Any, user: Any) -> None:
    a = metrics_batch(sample, user, [{"deal": True, "price": D("7.00"), "buyer_share": 0.4 + i / 100}
                                     for i in range(8)])
    b = metrics_batch(sample, user, [{"deal": True, "price": D("6.50"), "buyer_share": 0.6 + i / 100}
                                     for i in range(8)])
    html = web.get(reverse("analytics:compare"), {"a": a.pk, "b": b.pk}).content.decode()
    assert "8 pairs of completed runs, paired by seed" in html
    assert "B did better on buyer surplus share" in html and "excludes 0" in html
    assert len(svgs(html)) == 1
    assert web.get(reverse("analytics:compare"), {"a": a.pk, "b": "nonsense"}).status_code == 404


def test_the_session_page_shows_the_configuration_and_launches_a_batch(web: Client, sample: Any, user: Any,
                                                                      fake_llm: Any) -> None:
    url = reverse("analytics:session", args=[sample.pk])
    html = web.get(url).content.decode()
    assert "@BudgetWires" in html and "$5.65" in html and "0.20 / 0.80" in html
    assert reverse("admin:negotiation_session_change", args=[sample.pk]) in html and "Launch batch" in html
    # when the form is posted
    response = web.post(url, {"item_name": "USB-C Cable", "runs": "3", "max_rounds": "4", "base_seed": "7",
                              "temperature": "0.5", "buyer_strategy": "llm", "buyer_profile": "openai-compatible",
                              "seller_strategy": "boulware", "analyst_strategy": "linear"})
    # then a batch is created through batch_create and the browser goes to its dashboard
    batch = Batch.objects.get(session=sample)
    assert response.status_code == 302 and response["Location"] == reverse("analytics:batch", args=[batch.pk])
    assert batch.runs_requested == 3 and batch.base_seed == 7 and batch.owner == user
    assert batch.agents["seller"]["strategy"] == "boulware" and batch.agents["buyer"]["profile"] == "openai-compatible"


def test_a_bad_launch_says_what_to_fix_and_creates_nothing(web: Client, sample: Any) -> None:
    response = web.post(reverse("analytics:session", args=[sample.pk]),
                        {"item_name": "Laptop", "runs": "0", "max_rounds": "4", "base_seed": "0", "temperature": "0.7",
                         "buyer_strategy": "linear", "seller_strategy": "linear", "analyst_strategy": "linear"})
    html = response.content.decode()
    assert response.status_code == 400 and "The batch was not created" in html
    assert "Must be a whole number from 1" in html and "no demand for" in html
    assert not Batch.objects.exists()


def test_the_dashboard_of_a_played_batch_renders(web: Client, played_batch: Any) -> None:
    batch = played_batch(runs=3)
    assert RunMetrics.objects.filter(batch=batch).count() == 3
    response = web.get(reverse("analytics:batch", args=[batch.pk]))
    assert response.status_code == 200 and len(svgs(response.content.decode())) >= 9


def test_a_researcher_who_is_not_staff_signs_in_through_the_pages_own_form(user: Any) -> None:
    user.set_password("s3cret-pass")
    user.save()
    assert not user.is_staff
    client = Client()
    bad = client.post(reverse("analytics:login"), {"username": user.username, "password": "nope"})
    assert bad.status_code == 200 and "did not match" in bad.content.decode()
    ok = client.post(reverse("analytics:login"), {"username": user.username, "password": "s3cret-pass",
                                                  "next": reverse("analytics:sessions")})
    assert ok.status_code == 302 and ok["Location"] == reverse("analytics:sessions")
    assert client.get(reverse("analytics:batches")).status_code == 200
    assert client.post(reverse("analytics:logout")).status_code == 302
    assert client.get(reverse("analytics:batches")).status_code == 302


def test_the_admin_lists_metrics_and_analyses_read_only(sample: Any, user: Any) -> None:
    metrics_batch(sample, user, ROWS[:1])
    user.is_staff = user.is_superuser = True
    user.save()
    admin = Client()
    admin.force_login(user)
    for name in ("runmetrics", "runanalysis"):
        assert admin.get(reverse(f"admin:analytics_{name}_changelist")).status_code == 200
        assert admin.get(reverse(f"admin:analytics_{name}_add")).status_code == 403


def test_a_launch_over_the_active_batch_cap_says_so(web: Client, sample: Any, settings: Any) -> None:
    settings.MAMS_MAX_ACTIVE_BATCHES_PER_USER = 1
    form = {"item_name": "USB-C Cable", "runs": "1", "max_rounds": "3", "base_seed": "0", "temperature": "0.7",
            "buyer_strategy": "linear", "seller_strategy": "linear", "analyst_strategy": "linear"}
    url = reverse("analytics:session", args=[sample.pk])
    assert web.post(url, form).status_code == 302
    again = web.post(url, form)
    assert again.status_code == 400 and "MAMS_MAX_ACTIVE_BATCHES_PER_USER" in again.content.decode()
    assert Batch.objects.count() == 1


def test_the_pages_show_the_disclosure_rule_and_how_much_the_code_decided(web: Client, sample: Any, user: Any) -> None:
    # given a batch played under `allow`, one of whose runs was re-asked twice and repaired once
    batch = metrics_batch(sample, user, ROWS)
    Batch.objects.filter(pk=batch.pk).update(disclosure="allow")
    run = NegotiationRun.objects.filter(batch=batch).order_by("seed").first()
    NegotiationRun.objects.filter(pk=run.pk).update(disclosure="allow")
    RunMetrics.objects.filter(run=run).update(reasks=2, guardrails=1, fallbacks=0, leaks=0)
    # when the batch dashboard and the run page are read
    dashboard = web.get(reverse("analytics:batch", args=[batch.pk])).content.decode()
    page = web.get(reverse("analytics:run", args=[run.pk])).content.decode()
    # then the batch names its rule and counts its re-asks apart from its repairs
    assert 'data-disclosure="allow"' in dashboard and "(delivered as said)" in dashboard
    assert "2 re-asks (a broken rule, asked once more)" in dashboard
    # and the run page names its rule and shows re-asks beside leaks, repairs and fallbacks
    assert 'data-disclosure="allow"' in page
    assert re.search(r"Leaks · re-asks · repairs · fallbacks</div><span class=\"value\">0 · 2 · 1 · 0<", page)
    # and the dashboard's runs table can be narrowed to the runs with a re-ask
    only = web.get(reverse("analytics:batch", args=[batch.pk]), {"flag": "reasks"}).content.decode()
    assert only.split('id="runs"')[1].count('class="badge completed"') == 1


def test_a_shared_benchmark_batch_shows_to_every_user_read_only(web: Client, sample: Any, user: Any) -> None:
    from tests.analytics.benchmark_helpers import BOULWARE, launch

    # given a shared benchmark batch, bob's own benchmark batch and bob's private batch
    bob = UserFactory(username="bob")
    shared = Batch.objects.filter(benchmark_entry__benchmark=launch(buyers=[BOULWARE])).first()
    bobs_bench = Batch.objects.filter(benchmark_entry__benchmark=launch(buyers=[BOULWARE], owner=bob)).first()
    bobs = metrics_batch(sample, bob, ROWS[:1])
    # when alice (not staff) opens the batches list, then the shared batch is there with its label
    html = web.get(reverse("analytics:batches")).content.decode()
    assert str(shared.pk)[:8] in html and "shared benchmark" in html
    assert str(bobs_bench.pk)[:8] not in html and str(bobs.pk)[:8] not in html
    # and its page, its live figures and its runs' pages open, labelled shared, with no cancel control
    r = web.get(reverse("analytics:batch", args=[shared.pk]))
    page = r.content.decode()
    assert r.status_code == 200 and 'id="batch-shared"' in page
    assert "/cancel" not in page and not re.search(r"<(form|button)[^>]*>[^<]*cancel", page, re.IGNORECASE)
    assert web.get(reverse("analytics:batch-live", args=[shared.pk])).status_code == 200
    run = NegotiationRun.objects.filter(batch=shared).first()
    assert web.get(reverse("analytics:run", args=[run.pk])).status_code == 200
    # and another user's batches, benchmark or not, and their runs, stay not found
    for batch in (bobs_bench, bobs):
        assert web.get(reverse("analytics:batch", args=[batch.pk])).status_code == 404
        assert web.get(reverse("analytics:run", args=[NegotiationRun.objects.filter(batch=batch).first().pk])
                       ).status_code == 404
    # and alice's own batch is not labelled shared
    mine = metrics_batch(sample, user, ROWS[:1])
    assert 'id="batch-shared"' not in web.get(reverse("analytics:batch", args=[mine.pk])).content.decode()


LAUNCH_LLM = {"item_name": "USB-C Cable", "runs": "3", "max_rounds": "4", "base_seed": "0", "temperature": "0.7",
              **{f"{r}_strategy": "llm" for r in ("buyer", "seller", "analyst")},
              **{f"{r}_profile": "openai-compatible" for r in ("buyer", "seller", "analyst")},
              **{f"{r}_model": "gpt-4o-mini" for r in ("buyer", "seller", "analyst")}}


def test_the_launch_form_estimates_without_launching(web: Client, sample: Any, fake_llm: Any) -> None:
    from negotiation.services.estimates import batch_estimate, estimate_lines

    url = reverse("analytics:session", args=[sample.pk])
    response = web.post(url, {**LAUNCH_LLM, "action": "estimate"})
    html = response.content.decode()
    # then the page shows the estimate the API's dry_run answers, and nothing is launched
    assert response.status_code == 200 and 'id="launch-estimate"' in html, html[-3000:]
    expected = batch_estimate(session=sample, item_name="USB-C Cable", runs=3, agents={
        r: {"strategy": "llm", "profile": "openai-compatible", "model": "gpt-4o-mini"} for r in ("buyer", "seller",
                                                                                               "analyst")},
        max_rounds=4)
    assert expected["dollars"] is not None
    for line in estimate_lines(expected):
        assert line.replace("'", "&#x27;") in html
    assert not Batch.objects.exists() and not NegotiationRun.objects.exists()
    # a bad one says what to fix, still launching nothing
    response = web.post(url, {**LAUNCH_LLM, "runs": "0", "item_name": "Laptop", "action": "estimate"})
    html = response.content.decode()
    assert response.status_code == 400 and "No estimate" in html and "no demand for" in html
    assert not Batch.objects.exists()


def test_the_launch_form_sets_budgets_and_refuses_bad_ones(web: Client, sample: Any, fake_llm: Any) -> None:
    url = reverse("analytics:session", args=[sample.pk])
    response = web.post(url, {**LAUNCH_LLM, "budget_usd": "NaN", "budget_tokens": "0"})
    html = response.content.decode()
    assert response.status_code == 400 and "<code>budget_usd</code>" in html and "<code>budget_tokens</code>" in html
    assert not Batch.objects.exists()
    response = web.post(url, {**LAUNCH_LLM, "budget_usd": "1.50", "budget_tokens": "20000"})
    batch = Batch.objects.get(session=sample)
    assert response.status_code == 302 and (batch.budget_usd, batch.budget_tokens) == (D("1.5"), 20000)

"""The batches run table (analytics/views.py::batch_list): names and tags, search, filters, sort, the
CSV/JSON export of exactly the columns the page shows; comparing two or more batches with the same-seed
batches offered first and a per-seed drill-down; the batch page's ETA, worker line and cancel button."""

from __future__ import annotations

import csv
import io
import re
from typing import Any

import pytest
from django.test import Client

from negotiation.models import Batch, NegotiationRun
from tests.analytics.conftest import BASELINE
from tests.factories import UserFactory

pytestmark = pytest.mark.django_db


@pytest.fixture
def web(user: Any) -> Client:
    client = Client()
    client.force_login(user)
    return client


@pytest.fixture
def three(played_batch: Any) -> tuple[Batch, Batch, Batch]:
    """Three batches of the sample: linear and boulware buyers on seeds 0-3, and a conceder one on seeds 50-52."""
    a = played_batch(runs=4)
    b = played_batch(runs=4, agents={**BASELINE, "buyer": {"strategy": "boulware"}})
    c = played_batch(runs=3, agents={**BASELINE, "buyer": {"strategy": "conceder"}}, base_seed=50)
    Batch.objects.filter(pk=a.pk).update(name="alpha linear", tags=["sweep", "ref"])
    Batch.objects.filter(pk=b.pk).update(name="beta boulware", tags=["sweep"])
    return a, b, c


def headings(html: str, table_class: str) -> list[str]:
    table = re.search(rf'<table class="grid-table {table_class}">.*?</thead>', html, re.S).group(0)
    return [re.sub(r"<[^>]+>", "", h).strip() for h in re.findall(r"<th[^>]*>(.*?)</th>", table, re.S)]


def ids_shown(html: str) -> list[str]:
    return re.findall(r'name="ids" value="([0-9a-f-]+)"', html)


def test_search_filters_and_sort_pick_the_batches(web: Client, three: Any) -> None:
    a, b, c = three
    assert set(ids_shown(web.get("/analytics/").content.decode())) == {str(a.pk), str(b.pk), str(c.pk)}
    assert ids_shown(web.get("/analytics/", {"q": "alpha"}).content.decode()) == [str(a.pk)]
    assert ids_shown(web.get("/analytics/", {"q": str(b.pk)[:8]}).content.decode()) == [str(b.pk)]
    assert ids_shown(web.get("/analytics/", {"q": "conceder"}).content.decode()) == [str(c.pk)]
    assert set(ids_shown(web.get("/analytics/", {"tag": "sweep"}).content.decode())) == {str(a.pk), str(b.pk)}
    assert ids_shown(web.get("/analytics/", {"buyer": "boulware"}).content.decode()) == [str(b.pk)]
    by_name = ids_shown(web.get("/analytics/", {"sort": "name", "dir": "asc"}).content.decode())
    assert by_name[:2] == [str(c.pk), str(a.pk)]  # "" sorts before "alpha linear"
    share = {x.pk: x for x in three}
    order = ids_shown(web.get("/analytics/", {"sort": "buyer_share", "dir": "desc"}).content.decode())
    from django.db.models import Avg

    from analytics.models import RunMetrics

    means = {str(k): RunMetrics.objects.filter(batch_id=k).aggregate(m=Avg("buyer_share"))["m"] for k in share}
    assert order == sorted(means, key=lambda k: -means[k])
    html = web.get("/analytics/").content.decode()
    assert "alpha linear" in html and "boulware baseline" in html and ">sweep</a>" in html
    assert web.get("/analytics/", {"status": "nope"}).status_code == 400
    assert web.get("/analytics/", {"session": "not-a-uuid"}).status_code == 400
    assert web.get("/analytics/", {"sort": "colour"}).status_code == 400
    assert web.get("/analytics/", {"dir": "up"}).status_code == 400


def test_the_exports_hold_exactly_the_columns_and_rows_the_table_shows(web: Client, three: Any) -> None:
    a, b, c = three
    html = web.get("/analytics/", {"tag": "sweep", "sort": "name", "dir": "asc"}).content.decode()
    shown = headings(html, "batches")[1:]  # after the pick box
    body = web.get("/analytics/", {"tag": "sweep", "sort": "name", "dir": "asc", "export": "csv"})
    assert body["Content-Type"].startswith("text/csv")
    rows = list(csv.reader(io.StringIO(body.content.decode())))
    assert rows[0] == shown and [r[0] for r in rows[1:]] == [str(a.pk), str(b.pk)]
    data = web.get("/analytics/", {"tag": "sweep", "export": "json"}).json()
    assert data["columns"] == shown and len(data["rows"]) == 2
    row = next(r for r in data["rows"] if r["Batch"] == str(a.pk))
    assert row["Name"] == "alpha linear" and row["Tags"] == ["sweep", "ref"] and row["Buyer"] == "linear baseline"
    assert row["Deal rate"] == 1.0 and row["Progress"] == "4/4"
    assert web.get("/analytics/", {"export": "xlsx"}).status_code == 400
    # the runs table of a batch
    page = web.get(f"/analytics/batches/{a.pk}/", {"sort": "price", "dir": "desc"}).content.decode()
    runs = list(csv.reader(io.StringIO(web.get(f"/analytics/batches/{a.pk}/", {"sort": "price", "dir": "desc",
                                                                               "export": "csv"}).content.decode())))
    assert runs[0] == headings(page, "runs") and len(runs) == 5
    prices = [float(r[4]) for r in runs[1:]]
    assert prices == sorted(prices, reverse=True)


def test_compare_takes_several_batches_offers_same_seeds_first_and_drills_down(web: Client, three: Any) -> None:
    a, b, c = three
    # the picker for A offers the batch on the same seeds first, and never starts with A = B
    html = web.get("/analytics/compare/", {"a": str(a.pk)}).content.decode()
    options = re.findall(r'<select name="b">(.*?)</select>', html, re.S)[0]
    first = re.search(r'<option value="([0-9a-f-]+)"[^>]*>(.*?)</option>', options)
    assert first.group(1) == str(b.pk) and "same seeds" in first.group(2)
    assert f'value="{b.pk}" selected' in options
    # three batches: A against each of the others
    html = web.get("/analytics/compare/", {"ids": [str(a.pk), str(b.pk), str(c.pk)]}).content.decode()
    assert html.count('<section class="comparison">') == 2
    assert "4 pairs of completed runs, paired by seed" in html
    assert "3 pairs of completed runs, paired by position" in html
    pairs = re.findall(r'<table class="grid-table pairs">.*?</table>', html, re.S)
    assert [p.count("<tr>") - 1 for p in pairs] == [4, 3]
    assert html.count("/analytics/runs/") >= 14
    data = web.get("/analytics/compare/", {"ids": [str(a.pk), str(b.pk), str(c.pk)], "export": "json"}).json()
    assert {r["B"] for r in data["rows"]} == {str(b.pk), str(c.pk)} and len(data["rows"]) == 26
    share = next(r for r in data["rows"] if r["B"] == str(b.pk) and r["Metric"] == "Buyer surplus share")
    assert abs(share["B − A"] - (share["B value"] - share["A value"])) < 1e-9
    assert "pp" in next(r for r in data["rows"] if r["Metric"] == "Buyer surplus share")["Reading"]


def test_the_batch_page_shows_eta_workers_and_a_cancel_button_for_its_owner(web: Client, user: Any,
                                                                             played_batch: Any) -> None:
    batch = played_batch(runs=3)
    NegotiationRun.objects.filter(batch=batch, seed=2).update(status="queued")
    Batch.objects.filter(pk=batch.pk).update(status="running")
    html = web.get(f"/analytics/batches/{batch.pk}/").content.decode()
    assert 'id="batch-eta">ETA:' in html and "consuming the run queues" in html
    assert 'id="batch-cancel"' in html and "data-confirm" in html
    live = web.get(f"/analytics/batches/{batch.pk}/live.json").json()
    assert live["eta_text"].startswith("ETA:") and "workers_live" in live
    # another user may not cancel it (a private batch is not even there for them)
    stranger = UserFactory(username="stranger")
    stranger.save()
    other = Client()
    other.force_login(stranger)
    assert other.post(f"/analytics/batches/{batch.pk}/cancel/").status_code == 404
    assert Batch.objects.get(pk=batch.pk).status == "running"
    # its owner may
    assert web.post(f"/analytics/batches/{batch.pk}/cancel/").status_code == 302
    assert Batch.objects.get(pk=batch.pk).status == "cancelled"
    assert NegotiationRun.objects.get(batch=batch, seed=2).status == "cancelled"
    html = web.get(f"/analytics/batches/{batch.pk}/").content.decode()
    assert 'id="batch-cancel"' not in html and 'id="batch-eta"' not in html


def test_the_launch_form_names_and_tags_a_batch(web: Client, sample: Any) -> None:
    form = {"name": "first sweep", "tags": "sweep, v1", "item_name": "USB-C Cable", "runs": 2, "max_rounds": 3,
            "base_seed": 0, "temperature": 0.5, **{f"{r}_strategy": "linear" for r in ("buyer", "seller", "analyst")}}
    r = web.post(f"/analytics/sessions/{sample.pk}/", form)
    assert r.status_code == 302, r.content.decode()[:2000]
    batch = Batch.objects.get()
    assert batch.name == "first sweep" and batch.tags == ["sweep", "v1"]
    r = web.post(f"/analytics/sessions/{sample.pk}/", {**form, "tags": "bad/tag"})
    assert r.status_code == 400 and "tags.0" in r.content.decode() and Batch.objects.count() == 1


def test_the_leaderboard_and_experiment_pages_export_their_tables(web: Client, sample: Any, user: Any,
                                                                   play_through: Any) -> None:
    from negotiation.services.experiments import experiment_create
    from tests.analytics.benchmark_helpers import BOULWARE, LINEAR, launch, play_all

    play_all(launch(buyers=[BOULWARE, LINEAR], opponents=LINEAR), play_through)
    page = web.get("/analytics/leaderboard/", {"suite": "core-v1"}).content.decode()
    shown = len(re.findall(r"<tr class=", page))
    data = web.get("/analytics/leaderboard/", {"suite": "core-v1", "export": "json"}).json()
    assert len(data["rows"]) == shown == 2
    assert [r["#"] for r in data["rows"]] == [1, 2]
    top = data["rows"][0]
    share = "Buyer surplus share (on deals)"
    assert top[f"{share} CI low"] <= top[share] <= top[f"{share} CI high"]
    body = web.get("/analytics/leaderboard/", {"suite": "core-v1", "export": "csv"}).content.decode()
    assert next(csv.reader(io.StringIO(body))) == data["columns"]
    conditions = [{"label": n, "agents": {**BASELINE, "buyer": {"strategy": n}}} for n in ("boulware", "conceder")]
    experiment = experiment_create(owner=user, session=sample, name="b vs c", item_name="USB-C Cable", runs=3,
                                   max_rounds=4, conditions=conditions)
    for run in NegotiationRun.objects.filter(status="queued"):
        play_through(run.pk)
    data = web.get(f"/analytics/experiments/{experiment.pk}/", {"export": "json"}).json()
    paired = [r for r in data["rows"] if r["Table"] == "paired differences"]
    assert len(paired) == 13 and {r["Condition"] for r in paired} == {"conceder"}
    assert len([r for r in data["rows"] if r["Table"] == "conditions"]) == 2 * 13
    assert web.get(f"/analytics/experiments/{experiment.pk}/", {"export": "pdf"}).status_code == 400


def test_the_admin_lists_runs_with_batch_outcome_price_and_short_ids_and_edits_only_names_and_tags(
        admin_client: Client, played_batch: Any) -> None:
    batch = played_batch(runs=2)
    run = NegotiationRun.objects.filter(batch=batch).select_related("outcome").first()
    html = admin_client.get("/admin/negotiation/negotiationrun/").content.decode()
    assert f">{str(run.pk)[:8]}<" in html and str(run.pk) not in re.sub(r'href="[^"]*"', "", html)
    assert f"<td class=\"field-batch_link\">{str(batch.pk)[:8]}</td>" in html
    assert f"${run.outcome.final_price:,.2f}" in html and "analytics/favicon.svg" in html
    assert admin_client.get("/admin/negotiation/negotiationrun/", {"outcome__decision": "no_deal"}).status_code == 200
    # a batch's name and tags can be set in the admin; nothing else of it changes there
    url = f"/admin/negotiation/batch/{batch.pk}/change/"
    r = admin_client.post(url, {"name": "named in the admin", "tags": "a,b", "runs_requested": 99})
    assert r.status_code == 302, r.content.decode()[:3000]
    batch.refresh_from_db()
    assert batch.name == "named in the admin" and batch.tags == ["a", "b"] and batch.runs_requested == 2
    assert admin_client.post(url, {"name": "x", "tags": "bad tag"}).status_code == 200  # the form's error
    batch.refresh_from_db()
    assert batch.tags == ["a", "b"]


def test_the_run_page_counts_rounds_as_the_outcome_does(web: Client, played_batch: Any) -> None:
    # given a run whose buyer accepted in the round after the last offers
    batch = played_batch(runs=1)
    run = NegotiationRun.objects.select_related("outcome").get(batch=batch)
    last = run.messages.order_by("-round_no").first().round_no
    assert run.outcome.decision == "deal" and last == run.outcome.rounds + 1
    html = web.get(f"/analytics/runs/{run.pk}/").content.decode()
    # then the page says "after N rounds", the replay and the lanes call the last step the decision
    assert f"after {run.outcome.rounds} rounds, by the buyer's decision that followed" in html
    assert f"the buyer's decision after round {run.outcome.rounds}</output>" in html
    assert '<div class="round-tag">decision</div>' in html and f">R{last}<" not in html
    assert 'class="tick">decision</text>' in html


def test_each_kind_of_agent_is_called_what_it_is(web: Client, sample: Any, user: Any) -> None:
    from analytics.templatetags.analytics_tags import agent_label
    from negotiation.services.live import live_start

    assert agent_label({"strategy": "llm", "profile": "local", "model": "gemma"}) == "LLM gemma (local)"
    assert agent_label({"strategy": "boulware"}) == "boulware baseline"
    assert agent_label({"strategy": "human"}) == "human buyer"
    assert agent_label({"strategy": "external", "model": "my-agent"}) == "/env agent my-agent"
    # a person's negotiation: its run page calls the buyer a human buyer, never a baseline
    run = live_start(owner=user, session=sample, item_name="USB-C Cable")
    html = web.get(f"/analytics/runs/{run.pk}/").content.decode()
    assert "<b>buyer</b> human buyer" in re.sub(r"\s+", " ", html)
    assert "human baseline" not in html and "external baseline" not in html


def test_an_exploit_canary_is_called_a_canary_never_a_baseline(web: Client, played_batch: Any) -> None:
    from analytics.templatetags.analytics_tags import agent_label

    # given a batch whose buyer is the patient exploit canary (a reference buyer, no LLM)
    assert agent_label({"strategy": "canary-patient"}) == "canary-patient (exploit canary, a reference buyer)"
    batch = played_batch(runs=1, agents={**BASELINE, "buyer": {"strategy": "canary-patient"}})
    run = NegotiationRun.objects.get(batch=batch)
    # then its run page and the batches list call it a canary, and its messages come from a canary
    html = re.sub(r"\s+", " ", web.get(f"/analytics/runs/{run.pk}/").content.decode())
    assert "<b>buyer</b> canary-patient (exploit canary, a reference buyer)" in html
    assert "exploit canary (a reference buyer, no LLM)" in html and "canary-patient baseline" not in html
    listed = web.get("/analytics/").content.decode()
    assert "canary-patient (exploit canary, a reference buyer)" in listed and "canary-patient baseline" not in listed

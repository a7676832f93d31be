"""The leaderboard (analytics/benchmarks/leaderboard.py) through its page, its API and `manage.py leaderboard`,
on benchmark runs of the core suite played in-process; and `manage.py run_suite`'s input errors."""

from __future__ import annotations

import io
from typing import Any

import pytest
from django.core.management import CommandError, call_command
from django.test import Client
from rest_framework.authtoken.models import Token
from rest_framework.test import APIClient

from analytics.benchmarks.leaderboard import leaderboard
from analytics.metrics import WIN_SHARE_THRESHOLD
from negotiation.agents.fingerprint import agent_fingerprint
from tests.analytics.benchmark_helpers import BOULWARE, CONCEDER, LINEAR, LLM_BUYER, launch, play_all
from tests.factories import UserFactory

pytestmark = pytest.mark.django_db
METRICS = ("buyer_share", "deal_rate", "win_rate", "mutual_loss", "rounds")


def api_for(user: Any) -> APIClient:
    client = APIClient()
    if user is not None:
        client.credentials(HTTP_AUTHORIZATION=f"Token {Token.objects.get_or_create(user=user)[0].key}")
    return client


@pytest.fixture
def board(play_through: Any) -> Any:
    """Shared benchmark runs of core-v1: an LLM buyer and the three baselines against Linear sellers."""
    return play_all(launch(buyers=[LLM_BUYER, BOULWARE, LINEAR, CONCEDER], opponents=LINEAR), play_through)


@pytest.fixture
def ana(db: Any) -> Any:
    user = UserFactory(username="ana5")
    user.save()  # the factory sets the password after its save; a page session's auth hash needs it stored
    return user


def test_one_row_per_buyer_configuration_with_cis_n_and_what_produced_it(board: Any):
    data = leaderboard(user=None, suite="core-v1")
    assert data["suite"] == "core-v1" and len(data["tables"]) == 1
    table = data["tables"][0]
    assert table["opponent"]["fingerprint"] == board.seller_fingerprint
    assert table["opponent"]["label"].startswith("baseline:linear")
    rows = {r["label"]: r for r in table["rows"]}
    assert set(rows) == {"openai-compatible:gpt-4o-mini@0.7", "baseline:boulware", "baseline:linear",
                         "baseline:conceder"}
    llm = rows["openai-compatible:gpt-4o-mini@0.7"]
    assert not llm["baseline"] and all(rows[f"baseline:{s}"]["baseline"] for s in ("boulware", "linear", "conceder"))
    assert llm["buyer"]["profile"] == "openai-compatible" and llm["buyer"]["model"] == "gpt-4o-mini"
    assert llm["buyer"]["temperature"] == 0.7 and llm["buyer"]["prompt_version"]
    assert llm["code_versions"] and llm["benchmark_runs"] == 1
    for row in rows.values():
        assert row["runs"] == 9  # 8 scenarios, one of them with two items, one run each
        assert row["buyer_fingerprint"] == agent_fingerprint({**row["buyer"]})
        for key in METRICS:
            m = row["metrics"][key]
            assert m["n"] >= 1 and m["low"] <= m["mean"] <= m["high"], (row["label"], key, m)
        assert row["metrics"]["deal_rate"]["n"] == 9 and row["metrics"]["win_rate"]["n"] == 8  # no-ZOPA left out
        assert row["metrics"]["mutual_loss"]["n"] == 9


def test_the_api_sorts_by_any_column(board: Any, ana: Any):
    for sort in ("-buyer_share", "buyer_share", "-deal_rate", "rounds", "-win_rate", "mutual_loss", "label", "-runs"):
        response = api_for(ana).get("/api/leaderboard/", {"suite": "core-v1", "sort": sort})
        assert response.status_code == 200, response.content
        rows = response.json()["tables"][0]["rows"]
        key, desc = sort.lstrip("-"), sort.startswith("-")
        values = [r["label"].lower() if key == "label" else r["runs"] if key == "runs" else r["metrics"][key]["mean"]
                  for r in rows]
        present = [v for v in values if v is not None]
        assert present == sorted(present, reverse=desc), sort
        assert values[len(present):] == [None] * (len(values) - len(present))  # undefined last
        assert [r["rank"] for r in rows] == list(range(1, len(rows) + 1))


def test_the_api_filters_by_suite_version_and_refuses_bad_input(board: Any, ana: Any):
    api = api_for(ana)
    assert api.get("/api/leaderboard", {"suite": "core"}).json()["suite"] == "core-v1"  # latest version
    body = api.get("/api/leaderboard", {"suite": "nope"})
    assert body.status_code == 400 and "unknown suite 'nope'" in body.json()["errors"]["suite"][0]
    body = api.get("/api/leaderboard", {"sort": "price"})
    assert body.status_code == 400 and "unknown sort 'price'" in body.json()["errors"]["sort"][0]
    for bad in ("\x00", "core-v1\x00", "Core V1", "x" * 200):
        body = api.get("/api/leaderboard", {"suite": bad})
        assert body.status_code == 400 and "unknown suite" in body.json()["errors"]["suite"][0], bad
    body = api.get("/api/leaderboard", {"opponent": "abc\x00"})
    assert body.status_code == 400 and "12 hex characters" in body.json()["errors"]["opponent"][0]
    assert api.get("/api/leaderboard", {"win_threshold": "x"}).json()["win_threshold"] == WIN_SHARE_THRESHOLD


def test_results_against_other_opponents_are_kept_apart(board: Any, play_through: Any, ana: Any):
    # given a second benchmark run against Boulware sellers
    other = play_all(launch(buyers=[BOULWARE], opponents=BOULWARE), play_through)
    data = api_for(ana).get("/api/leaderboard", {"suite": "core-v1"}).json()
    # then there is one table per opponent fingerprint, and the filter keeps one
    assert sorted(t["opponent"]["fingerprint"] for t in data["tables"]) == sorted(
        [board.seller_fingerprint, other.seller_fingerprint])
    assert "comparable only against the same opponents" in data["note"]
    only = api_for(ana).get("/api/leaderboard", {"suite": "core-v1", "opponent": other.seller_fingerprint}).json()
    assert [t["opponent"]["fingerprint"] for t in only["tables"]] == [other.seller_fingerprint]
    assert len(only["opponents"]) == 2  # the page can still offer both
    html = _web(ana).get("/analytics/leaderboard/", {"suite": "core-v1"}).content.decode()
    assert "2 different\n  opponent configurations" in html
    assert html.count('<table class="grid-table leaderboard">') == 2


def test_the_api_needs_a_login_and_shows_shared_and_own_runs_only(board: Any, play_through: Any, ana: Any):
    # given bob's own benchmark run (owner=bob) beside the shared one
    bob, staff = UserFactory(username="bob5"), UserFactory(username="root5", is_staff=True)
    play_all(launch(buyers=[LINEAR], opponents=CONCEDER, owner=bob), play_through)

    def opponents(user: Any) -> int:
        return len(api_for(user).get("/api/leaderboard", {"suite": "core-v1"}).json()["tables"])

    assert api_for(None).get("/api/leaderboard", {"suite": "core-v1"}).status_code == 401
    assert opponents(ana) == 1 and opponents(bob) == 2 and opponents(staff) == 2


def test_the_schema_documents_the_endpoint(ana: Any):
    schema = api_for(ana).get("/api/schema/", HTTP_ACCEPT="application/json").json()
    op = schema["paths"]["/api/leaderboard"]["get"]
    assert {p["name"] for p in op["parameters"]} >= {"suite", "sort", "opponent"}
    assert "/api/leaderboard/" not in schema["paths"]


def _web(user: Any) -> Client:
    client = Client()
    client.force_login(user)
    return client


def test_the_page_shows_rows_fingerprints_and_is_linked(board: Any, ana: Any):
    anon = Client().get("/analytics/leaderboard/")
    assert anon.status_code == 302 and anon["Location"].startswith("/analytics/login/")
    response = _web(ana).get("/analytics/leaderboard/", {"suite": "core-v1", "sort": "rounds"})
    html = response.content.decode()
    assert response.status_code == 200
    assert 'href="/analytics/leaderboard/"' in html  # the nav link
    for text in ("openai-compatible:gpt-4o-mini@0.7", "baseline:boulware", "baseline</span>", "95%", "n=9",
                 board.seller_fingerprint, "profile openai-compatible", "model gpt-4o-mini",
                 "Win rate (share &gt; 50%)"):
        assert text in html, text
    assert _web(ana).get("/analytics/leaderboard/", {"suite": "nope"}).status_code == 400


def test_the_leaderboard_command_prints_the_same_table(board: Any):
    out = io.StringIO()
    call_command("leaderboard", "--suite", "core-v1", "--sort=-deal_rate", stdout=out)
    text = out.getvalue()
    assert "suite core-v1" in text and "baseline:conceder (baseline)" in text and board.seller_fingerprint in text
    with pytest.raises(CommandError, match="unknown sort"):
        call_command("leaderboard", "--sort", "nope", stdout=io.StringIO())


@pytest.mark.parametrize(("args", "message"), [
    (["nope", "--buyer", "baseline:linear"], "unknown suite 'nope'"),
    (["core", "--buyer", "baseline:greedy"], "unknown baseline strategy 'greedy'"),
    (["core", "--buyer", "martian:gpt"], "unknown profile 'martian'"),
    (["core", "--buyer", "openai-compatible:gpt-4o-mini@hot"], "temperature 'hot' is not a number"),
    (["core", "--buyer", "openai-compatible@3"], "temperature"),
    (["core", "--buyer", "local:no-such-model"], "unknown model 'no-such-model'"),
    (["core", "--buyer", "baseline:linear", "--opponent", "baseline:x"], "--opponent 'baseline:x'"),
    (["core", "--buyer", "baseline:linear", "--owner", "ghost"], "no user named 'ghost'"),
])
def test_run_suite_refuses_bad_input_clearly(args: list[str], message: str):
    with pytest.raises(CommandError, match=message):
        call_command("run_suite", *args, stdout=io.StringIO())


def test_run_suite_launches_ordinary_batches_paired_by_seed():
    from negotiation.models import Batch

    out = io.StringIO()
    call_command("run_suite", "core", "--buyer", "openai-compatible", "--buyer", "baseline:boulware", "--runs", "2",
                 "--opponent", "baseline:linear", "--seed", "7", stdout=out)
    text = out.getvalue()
    # core is core-v2: 8 scenarios × (2 buyers + 3 exploit canaries); 9 items × 2 runs × 5 = 90 negotiations
    assert "40 batches, 90 negotiations queued" in text and "several-items" in text and "canary-patient" in text
    batches = Batch.objects.filter(benchmark_entry__isnull=False)
    assert batches.count() == 40 and set(batches.values_list("base_seed", flat=True)) == {7}
    assert set(batches.values_list("rules", flat=True)) == {"hidden"}

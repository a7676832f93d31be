"""Batches over HTTP without a worker: creation and its checks, idempotency, progress and ETA,
cancel, and the streamed results export."""

from __future__ import annotations

import csv
import io
import json
from datetime import timedelta
from typing import Any

import pytest
from django.http import StreamingHttpResponse
from django.utils import timezone

from negotiation.models import Batch, NegotiationRun, Session
from tests.api.conftest import BASELINE, LLM, client_for

pytestmark = pytest.mark.django_db


def _body(sample: Session, **changes: Any) -> dict:
    return {"session": str(sample.pk), "item_name": "USB-C Cable", "runs": 3, "agents": BASELINE,
            "temperature": 0.5, "max_rounds": 3, "base_seed": 100, **changes}


def test_create_returns_201_with_the_batch_and_its_queued_runs(api: Any, sample: Session, fake_llm: Any) -> None:
    r = api.post("/api/batches", _body(sample, agents=LLM), format="json")
    assert r.status_code == 201, r.content
    b = r.json()
    assert b["status"] == "queued" and b["runs_requested"] == 3 and b["total_runs"] == 3
    assert b["progress"] == {"queued": 3, "running": 0, "completed": 0, "failed": 0, "cancelled": 0}
    assert b["agents"]["buyer"]["profile"] == "openai-compatible" and b["agents"]["buyer"]["model"]
    assert b["eta_seconds"] is None and b["results_csv"].endswith(f"/api/batches/{b['id']}/results.csv")
    runs = NegotiationRun.objects.filter(batch_id=b["id"])
    assert sorted(runs.values_list("seed", flat=True)) == [100, 101, 102]
    assert Batch.objects.get(pk=b["id"]).owner.username == "alice"


def test_a_batch_keeps_its_name_and_tags(api: Any, sample: Session) -> None:
    r = api.post("/api/batches", _body(sample, name="  boulware vs linear  ", tags=["sweep-3", "v2", "v2"]),
                 format="json")
    assert r.status_code == 201, r.content
    assert r.json()["name"] == "boulware vs linear" and r.json()["tags"] == ["sweep-3", "v2"]
    listed = api.get("/api/batches").json()["results"][0]
    assert listed["name"] == "boulware vs linear" and listed["tags"] == ["sweep-3", "v2"]
    # an unnamed batch of every item is not named after an item
    r = api.post("/api/batches", _body(sample, item_name=None, runs=1), format="json")
    assert r.status_code == 201 and r.json()["name"] == "" and r.json()["tags"] == []


def test_all_items_when_item_is_null(api: Any, sample: Session) -> None:
    r = api.post("/api/batches", _body(sample, item_name=None, runs=2), format="json")
    assert r.status_code == 201
    items = NegotiationRun.objects.filter(batch_id=r.json()["id"]).values_list("item_name", flat=True)
    assert sorted(items) == ["USB-C Cable", "USB-C Cable", "iPhone Case", "iPhone Case"]


@pytest.mark.parametrize(("changes", "path"), [
    ({"runs": 0}, "runs"),
    ({"runs": -3}, "runs"),
    ({"runs": 10_001}, "runs"),
    ({"runs": "many"}, "runs"),
    ({"item_name": "Toaster"}, "item_name"),
    ({"max_rounds": 0}, "max_rounds"),
    ({"max_rounds": 21}, "max_rounds"),
    ({"temperature": 3}, "temperature"),
    ({"base_seed": -1}, "base_seed"),
    ({"agents": {"buyer": {"profile": "nope"}}}, "agents.buyer.profile"),
    ({"agents": {"seller": {"model": "bad model name!"}}}, "agents.seller.model"),
    ({"agents": {"seller": {"strategy": "telepathy"}}}, "agents.seller.strategy"),
    ({"agents": {"buyer": {"profile": "openrouter"}}}, "agents"),  # no OPENROUTER_API_KEY here
    ({"session": "00000000-0000-0000-0000-000000000000"}, "session"),
    ({"session": "not-a-uuid"}, "session"),
    ({"disclosure": "redacted"}, "disclosure"),
    ({"disclosure": ""}, "disclosure"),
    ({"disclosure": None}, "disclosure"),
    ({"rules": "secret"}, "rules"),
    ({"rules": None}, "rules"),
    ({"name": "x" * 121}, "name"),
    ({"tags": ["has space"]}, "tags.0"),
    ({"tags": "not-a-list"}, "tags"),
    ({"tags": [f"t{i}" for i in range(21)]}, "tags"),
])
def test_bad_batch_requests_are_400_and_create_nothing(api: Any, sample: Session, changes: dict, path: str,
                                                        monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.delenv("OPENROUTER_API_KEY", raising=False)
    r = api.post("/api/batches", _body(sample, **changes), format="json")
    assert r.status_code == 400, r.content
    assert path in r.json()["errors"], r.json()
    assert not Batch.objects.exists() and not NegotiationRun.objects.exists()


def test_the_disclosure_rule_defaults_to_redact_and_is_stamped_on_every_run(api: Any, sample: Session) -> None:
    # given one batch without a rule and one that allows leaking
    plain = api.post("/api/batches", _body(sample), format="json").json()
    allow = api.post("/api/batches", _body(sample, disclosure="allow"), format="json").json()
    # then the first is redact, the second allow, in the batch body and on each of its runs
    assert (plain["disclosure"], allow["disclosure"]) == ("redact", "allow")
    assert set(NegotiationRun.objects.filter(batch_id=plain["id"]).values_list("disclosure", flat=True)) == {"redact"}
    assert set(NegotiationRun.objects.filter(batch_id=allow["id"]).values_list("disclosure", flat=True)) == {"allow"}
    # and the rule is part of the runs' fingerprints: the same agents under allow do not compare as like
    a = NegotiationRun.objects.filter(batch_id=plain["id"]).first()
    b = NegotiationRun.objects.filter(batch_id=allow["id"]).first()
    assert a.buyer_fingerprint != b.buyer_fingerprint and a.seller_fingerprint != b.seller_fingerprint
    run = api.get(f"/api/negotiations/{b.pk}").json()
    assert run["disclosure"] == "allow"


def test_hidden_rules_are_stamped_on_the_batch_its_runs_and_their_fingerprints(api: Any, sample: Session) -> None:
    # given one batch under the default rules and one under the hidden (core-v2) rules
    known = api.post("/api/batches", _body(sample), format="json").json()
    hidden = api.post("/api/batches", _body(sample, rules="hidden"), format="json").json()
    # then each says so, as does each of its runs
    assert (known["rules"], hidden["rules"]) == ("known", "hidden")
    assert set(NegotiationRun.objects.filter(batch_id=hidden["id"]).values_list("rules", flat=True)) == {"hidden"}
    # and the same agents under other rules do not compare as like
    a = NegotiationRun.objects.filter(batch_id=known["id"]).first()
    b = NegotiationRun.objects.filter(batch_id=hidden["id"]).first()
    assert a.buyer_fingerprint != b.buyer_fingerprint and a.seller_fingerprint != b.seller_fingerprint
    assert api.get(f"/api/negotiations/{b.pk}").json()["rules"] == "hidden"
    # and a misspelt rule set is a 400 naming the choices, creating nothing more
    r = api.post("/api/batches", _body(sample, rules="Hidden"), format="json")
    assert r.status_code == 400 and "known, hidden" in r.json()["errors"]["rules"][0]
    assert Batch.objects.count() == 2


def test_an_unknown_disclosure_rule_names_the_choices(api: Any, sample: Session) -> None:
    # given a misspelt rule
    r = api.post("/api/batches", _body(sample, disclosure="Redact "), format="json")
    # then it is a 400 that names the rules, and nothing is created
    assert r.status_code == 400
    assert "redact, allow" in r.json()["errors"]["disclosure"][0], r.json()
    assert not Batch.objects.exists()


def test_runs_above_the_configured_maximum_are_refused(api: Any, sample: Session, settings: Any) -> None:
    settings.MAMS_MAX_RUNS_PER_BATCH = 5
    r = api.post("/api/batches", _body(sample, runs=6), format="json")
    assert r.status_code == 400 and "from 1 to 5" in r.json()["errors"]["runs"][0]


def test_more_sellers_than_the_limit_is_refused(api: Any, sample: Session, settings: Any) -> None:
    # the database refuses an 11th seller outright, so lower the limit below the sample's 4 sellers
    settings.MAMS_MAX_SELLERS = 3
    r = api.post("/api/batches", _body(sample), format="json")
    assert r.status_code == 400 and "at most 3 sellers" in r.json()["errors"]["session"][0]
    assert not Batch.objects.exists()


def test_idempotency_key_returns_the_same_batch_and_refuses_another_body(api: Any, sample: Session) -> None:
    # given a batch created with a key
    first = api.post("/api/batches", _body(sample), format="json", HTTP_IDEMPOTENCY_KEY="launch-42")
    assert first.status_code == 201
    # when the same request is retried
    again = api.post("/api/batches", _body(sample), format="json", HTTP_IDEMPOTENCY_KEY="launch-42")
    # then it is the same batch, and no second set of runs exists
    assert again.status_code == 200 and again.json()["id"] == first.json()["id"]
    assert again["Idempotent-Replayed"] == "true"
    assert Batch.objects.count() == 1 and NegotiationRun.objects.count() == 3
    # and the same key with another body is a conflict
    other = api.post("/api/batches", _body(sample, runs=4), format="json", HTTP_IDEMPOTENCY_KEY="launch-42")
    assert other.status_code == 409 and "Idempotency-Key" in other.json()["errors"]
    # a new key makes a new batch; keys are per user
    assert api.post("/api/batches", _body(sample), format="json", HTTP_IDEMPOTENCY_KEY="k2").status_code == 201
    too_long = api.post("/api/batches", _body(sample), format="json", HTTP_IDEMPOTENCY_KEY="k" * 201)
    assert too_long.status_code == 400 and "Idempotency-Key" in too_long.json()["errors"]


def test_progress_and_eta_come_from_the_observed_rate(api: Any, sample: Session) -> None:
    bid = api.post("/api/batches", _body(sample, runs=4), format="json").json()["id"]
    runs = list(NegotiationRun.objects.filter(batch_id=bid).order_by("seed"))
    now = timezone.now()
    # two runs finished in the 10 s since the first started, one running, one queued
    NegotiationRun.objects.filter(pk__in=[runs[0].pk, runs[1].pk]).update(
        status="completed", started_at=now - timedelta(seconds=10), ended_at=now - timedelta(seconds=1))
    NegotiationRun.objects.filter(pk=runs[2].pk).update(status="running", started_at=now - timedelta(seconds=2))
    b = api.get(f"/api/batches/{bid}").json()
    assert b["progress"] == {"queued": 1, "running": 1, "completed": 2, "failed": 0, "cancelled": 0}
    assert b["finished_runs"] == 2 and b["percent"] == 50.0
    assert 0.15 < b["runs_per_second"] <= 0.2  # 2 runs / ~10 s
    assert 9 < b["eta_seconds"] < 11  # 2 left at that rate
    assert b["summary"]["deals"] == 0
    listed = api.get("/api/batches").json()
    assert listed["count"] == 1 and listed["results"][0]["progress"]["completed"] == 2
    assert api.get("/api/batches?status=queued").json()["count"] == 1
    assert api.get("/api/batches?status=completed").json()["count"] == 0
    assert api.get(f"/api/batches?session={sample.pk}").json()["count"] == 1
    assert api.get("/api/batches?status=bogus").status_code == 400
    assert api.get("/api/batches?session=nope").status_code == 400


def test_cancel_leaves_no_queued_run(api: Any, sample: Session) -> None:
    bid = api.post("/api/batches", _body(sample, runs=5), format="json").json()["id"]
    r = api.post(f"/api/batches/{bid}/cancel")
    assert r.status_code == 200 and r.json()["status"] == "cancelled"
    assert r.json()["progress"]["cancelled"] == 5 and r.json()["progress"]["queued"] == 0
    assert api.post(f"/api/batches/{bid}/cancel").status_code == 200  # harmless twice
    Batch.objects.filter(pk=bid).update(status="completed")
    r = api.post(f"/api/batches/{bid}/cancel")
    assert r.status_code == 409 and "already finished" in r.json()["detail"]


def test_results_stream_one_row_per_run(api: Any, sample: Session, play_through: Any) -> None:
    bid = api.post("/api/batches", _body(sample, runs=3), format="json").json()["id"]
    for run in NegotiationRun.objects.filter(batch_id=bid):
        play_through(run.pk)
    r = api.get(f"/api/batches/{bid}/results.csv")
    assert r.status_code == 200 and isinstance(r, StreamingHttpResponse)
    assert r["Content-Type"].startswith("text/csv")
    rows = list(csv.DictReader(io.StringIO(b"".join(r.streaming_content).decode())))
    assert len(rows) == 3 and [row["seed"] for row in rows] == ["100", "101", "102"]
    for row in rows:
        assert row["status"] == "completed" and row["decision"] in ("deal", "no_deal")
        assert int(row["messages"]) >= 2 and row["error"] == ""
        if row["decision"] == "deal":
            assert row["chosen_seller"].startswith("@") and float(row["final_price"]) <= 9.0
            assert 0 <= float(row["buyer_surplus_share"]) <= 1
    r = api.get(f"/api/batches/{bid}/results.jsonl", HTTP_ACCEPT="application/x-ndjson")
    assert r.status_code == 200 and isinstance(r, StreamingHttpResponse)
    lines = [json.loads(line) for line in b"".join(r.streaming_content).decode().splitlines()]
    assert [line["run_id"] for line in lines] == [row["run_id"] for row in rows]
    assert set(lines[0]) >= {"status", "seed", "item_name", "chosen_seller", "final_price", "rounds",
                             "buyer_surplus_share", "leaks", "guardrail_violations", "fallbacks", "prompt_tokens",
                             "completion_tokens", "error"}
    # a client asking for CSV by Accept gets it too
    assert api.get(f"/api/batches/{bid}/results.csv", HTTP_ACCEPT="text/csv").status_code == 200


def test_other_users_batches_are_404_and_anonymous_is_401(api: Any, other_api: Any, anon: Any, staff: Any,
                                                          sample: Session) -> None:
    bid = api.post("/api/batches", _body(sample), format="json").json()["id"]
    for method, path in [("get", f"/api/batches/{bid}"), ("post", f"/api/batches/{bid}/cancel"),
                         ("get", f"/api/batches/{bid}/results.csv"), ("get", f"/api/batches/{bid}/results.jsonl")]:
        assert getattr(other_api, method)(path).status_code == 404, path
        r = getattr(anon, method)(path)
        assert r.status_code == 401 and r.json()["detail"], path
    assert other_api.get("/api/batches").json()["count"] == 0
    # another user cannot launch a batch on alice's session either
    r = other_api.post("/api/batches", _body(sample), format="json")
    assert r.status_code == 400 and "session" in r.json()["errors"]
    assert anon.post("/api/batches", _body(sample), format="json").status_code == 401
    assert client_for(staff).get(f"/api/batches/{bid}").status_code == 200
    assert Batch.objects.get(pk=bid).status == "queued"


def _shared_and_private_benchmark_batches(owner: Any) -> tuple[Batch, Batch]:
    """A batch of a benchmark run without an owner (shared) and one of `owner`'s own benchmark run."""
    from tests.analytics.benchmark_helpers import BOULWARE, launch

    shared = Batch.objects.filter(benchmark_entry__benchmark=launch(buyers=[BOULWARE])).first()
    private = Batch.objects.filter(benchmark_entry__benchmark=launch(buyers=[BOULWARE], owner=owner)).first()
    return shared, private


def test_a_shared_benchmark_batch_is_readable_by_everyone_and_cancellable_by_staff_only(
        api: Any, other_api: Any, other: Any, staff: Any, sample: Session) -> None:
    # given a shared benchmark batch, mallory's own benchmark batch, and alice's private batch
    shared, mallorys = _shared_and_private_benchmark_batches(other)
    alices = api.post("/api/batches", _body(sample), format="json").json()["id"]
    # when alice (not staff) lists her batches, then the shared one is there, marked shared, and mallory's is not
    listed = {b["id"]: b for b in api.get("/api/batches").json()["results"]}
    assert str(shared.pk) in listed and listed[str(shared.pk)]["shared"] is True
    assert listed[alices]["shared"] is False and str(mallorys.pk) not in listed
    # and she reads the shared batch, its results and its runs
    r = api.get(f"/api/batches/{shared.pk}")
    assert r.status_code == 200 and r.json()["shared"] is True and r.json()["owner"] is None
    for suffix in ("results.csv", "results.jsonl"):
        r = api.get(f"/api/batches/{shared.pk}/{suffix}")
        assert r.status_code == 200 and len(b"".join(r.streaming_content).splitlines()) >= 1, suffix
    runs = api.get(f"/api/negotiations?batch={shared.pk}").json()["results"]
    assert runs and len(runs) == NegotiationRun.objects.filter(batch=shared).count()
    for path in ("", "/messages", "/analytics"):
        assert api.get(f"/api/negotiations/{runs[0]['id']}{path}").status_code == 200, path
    # when she cancels it, then a 403 says why and nothing changes
    r = api.post(f"/api/batches/{shared.pk}/cancel")
    assert r.status_code == 403 and "shared benchmark batch" in r.json()["detail"]
    assert Batch.objects.get(pk=shared.pk).status == "queued"
    # and another user's benchmark batch, and alice's private batch for mallory, stay 404
    private_run = NegotiationRun.objects.filter(batch=mallorys).first()
    for path in (f"/api/batches/{mallorys.pk}", f"/api/batches/{mallorys.pk}/results.csv",
                 f"/api/negotiations/{private_run.pk}"):
        assert api.get(path).status_code == 404, path
    assert api.post(f"/api/batches/{mallorys.pk}/cancel").status_code == 404
    assert other_api.get(f"/api/batches/{alices}").status_code == 404
    assert alices not in {b["id"] for b in other_api.get("/api/batches").json()["results"]}
    # staff may cancel the shared batch
    assert client_for(staff).post(f"/api/batches/{shared.pk}/cancel").status_code == 200
    assert Batch.objects.get(pk=shared.pk).status == "cancelled"


def test_an_ownerless_batch_that_no_benchmark_made_is_not_shared(api: Any, sample: Session) -> None:
    # given a batch without an owner that is not a benchmark's (e.g. launched by `manage.py demo`)
    bid = api.post("/api/batches", _body(sample), format="json").json()["id"]
    Batch.objects.filter(pk=bid).update(owner=None)
    NegotiationRun.objects.filter(batch_id=bid).update(owner=None)
    run = NegotiationRun.objects.filter(batch_id=bid).first()
    # then a signed-in user can read neither it nor its runs
    assert api.get(f"/api/batches/{bid}").status_code == 404
    assert api.get(f"/api/negotiations/{run.pk}").status_code == 404
    assert bid not in {b["id"] for b in api.get("/api/batches").json()["results"]}

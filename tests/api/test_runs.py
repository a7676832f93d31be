"""Runs over HTTP: the record with its outcome, the transcript with who saw what, analytics."""

from __future__ import annotations

from typing import Any

import pytest

from negotiation.models import NegotiationRun, Session
from tests.api.conftest import BASELINE, client_for

pytestmark = pytest.mark.django_db


@pytest.fixture
def finished(api: Any, sample: Session, play_through: Any) -> NegotiationRun:
    r = api.post("/api/batches", {"session": str(sample.pk), "item_name": "USB-C Cable", "runs": 1,
                                  "agents": BASELINE, "max_rounds": 3}, format="json")
    run = NegotiationRun.objects.get(batch_id=r.json()["id"])
    return play_through(run.pk)


def test_read_a_run_with_its_outcome(api: Any, finished: NegotiationRun) -> None:
    r = api.get(f"/api/negotiations/{finished.pk}")
    assert r.status_code == 200
    body = r.json()
    assert body["negotiation_id"] == str(finished.pk) and body["status"] == "completed" and body["mode"] == "agent"
    assert body["outcome"]["decision"] in ("deal", "no_deal") and body["outcome"]["outcome_id"]
    assert body["sellers"] == ["@BudgetWires", "@CableHouse", "@QuickTech", "@TechMart"]
    assert body["buyer"] == {"item_name": "USB-C Cable", "quantity": 3, "min_price": "5.00", "max_price": "9.00"}
    assert body["scenario"]["sellers"][0]["least_price"]  # a researcher's own agent run shows its snapshot
    listed = api.get(f"/api/negotiations?batch={finished.batch_id}").json()
    assert listed["count"] == 1 and listed["results"][0]["id"] == str(finished.pk)
    assert api.get("/api/negotiations?status=running").json()["count"] == 0
    assert api.get("/api/negotiations?mode=robot").status_code == 400


def test_the_transcript_says_who_could_see_each_message(api: Any, finished: NegotiationRun) -> None:
    r = api.get(f"/api/negotiations/{finished.pk}/messages")
    assert r.status_code == 200
    msgs = r.json()["messages"]
    assert msgs and msgs[0]["sender"] == "buyer" and msgs[0]["round"] == 1
    for m in msgs:
        if m["sender"] == "buyer":
            assert m["visible_to"] == ["buyer", *m["recipients"]]
        else:
            assert m["visible_to"] == [m["sender"], "buyer"] and m["recipients"] == ["buyer"]
    rounds = [m["round"] for m in msgs]
    assert rounds == sorted(rounds)
    assert "reasoning" in msgs[0] and "prompt_tokens" in msgs[0]


def test_analytics_in_the_spec_shape(api: Any, finished: NegotiationRun) -> None:
    r = api.get(f"/api/negotiations/{finished.pk}/analytics")
    assert r.status_code == 200
    a = r.json()
    assert a["conversation_rounds"] >= 1 and a["total_messages"] >= 2
    assert a["galileo_metrics"] is None and "quality" in a["galileo_note"]
    out = a["outcome"]
    assert out["type"] == finished.outcome.decision
    if out["type"] == "deal":
        assert out["within_budget"] is True
        assert float(out["savings_vs_initial"]) >= 0 and out["seller"].startswith("@")
    assert set(a["counts"]) >= {"leaks", "guardrail_violations", "fallbacks"}
    assert a["analysis"] is None  # the analysis task has not run in this test


def test_analytics_carry_the_analysis_verdict(api: Any, finished: NegotiationRun) -> None:
    from analytics.models import RunAnalysis

    RunAnalysis.objects.create(run=finished, batch=finished.batch, status="done", source="llm", model="judge-1",
                               deal_quality=0.75, strategy_effectiveness="high", coherence=0.9, hallucination=0.1,
                               recommendations=["Anchor lower."], reasons="Good anchoring.")
    a = api.get(f"/api/negotiations/{finished.pk}/analytics").json()["analysis"]
    assert a == {"status": "done", "source": "llm", "model": "judge-1", "deal_quality": 0.75,
                 "strategy_effectiveness": "high", "coherence": 0.9, "hallucination": 0.1,
                 "reasons": "Good anchoring.", "recommendations": ["Anchor lower."], "error": None}


def test_other_users_runs_are_404_anonymous_401_staff_200(finished: NegotiationRun, other_api: Any, anon: Any,
                                                          staff: Any) -> None:
    for suffix in ("", "/messages", "/analytics", "/stream"):
        path = f"/api/negotiations/{finished.pk}{suffix}"
        assert other_api.get(path).status_code == 404, path
        assert anon.get(path).status_code == 401, path
    for suffix in ("", "/messages", "/analytics"):
        assert client_for(staff).get(f"/api/negotiations/{finished.pk}{suffix}").status_code == 200
    assert other_api.get("/api/negotiations").json()["count"] == 0

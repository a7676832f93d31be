"""The experiments and sequences API (analytics/api/experiments.py): create, read, results; clear 400s
with field paths and nothing written; another user's experiment or sequence is a 404."""

from __future__ import annotations

from typing import Any

import pytest

from negotiation.models import Batch, Experiment, NegotiationRun, ReflectSequence, Session
from tests.api.conftest import BASELINE, LLM
from tests.factories import SessionFactory

pytestmark = pytest.mark.django_db

CONDITIONS = [{"label": "control", "agents": BASELINE},
              {"label": "conceder", "agents": {**BASELINE, "buyer": {"strategy": "conceder"}}}]


def body(sample: Session, **over: Any) -> dict[str, Any]:
    return {"name": "bw vs conceder", "session": str(sample.pk), "item_name": "USB-C Cable", "runs": 3,
            "base_seed": 11, "max_rounds": 4, "conditions": CONDITIONS, **over}


def nothing_written() -> bool:
    return not Experiment.objects.exists() and not Batch.objects.exists() and not NegotiationRun.objects.exists()


def test_create_read_and_results(api: Any, sample: Session, play_through: Any) -> None:
    # when an experiment is created
    response = api.post("/api/experiments", body(sample), format="json")
    # then it is launched: one batch per condition, same seeds
    assert response.status_code == 201, response.json()
    data = response.json()
    assert data["status"] == "running" and data["base_seed"] == 11 and data["launched_at"]
    assert [c["label"] for c in data["conditions"]] == ["control", "conceder"]
    batches = [Batch.objects.get(pk=c["batch"]) for c in data["conditions"]]
    assert {b.base_seed for b in batches} == {11} and {b.runs_requested for b in batches} == {3}
    assert api.get(f"/api/experiments/{data['id']}").json()["id"] == data["id"]
    assert api.get("/api/experiments").json()["count"] == 1
    # when every run has been played
    for run in NegotiationRun.objects.all():
        play_through(run.pk)
    results = api.get(f"/api/experiments/{data['id']}/results").json()
    # then each condition has its metrics with CIs, and the comparison pairs the 3 runs by seed
    assert [c["label"] for c in results["conditions"]] == ["control", "conceder"]
    assert results["conditions"][0]["metrics"]["deal_rate"]["n"] == 3
    cmp = results["comparisons"][0]
    assert (cmp["label"], cmp["against"], cmp["pairs"], cmp["paired_by"]) == ("conceder", "control", 3, "seed")
    assert set(cmp["differences"]) >= {"deal_rate", "price", "buyer_share", "rounds"}
    assert cmp["differences"]["rounds"]["sentence"] and cmp["differs"] == ["buyer configuration"]


@pytest.mark.parametrize(("over", "path"), [
    ({"conditions": CONDITIONS[:1]}, "conditions"),
    ({"conditions": [CONDITIONS[0], {**CONDITIONS[1], "label": "Control"}]}, "conditions[1].label"),
    ({"conditions": [CONDITIONS[0], {"label": "x", "agents": {"buyer": {"profile": "nope"}}}]},
     "conditions[1].agents.buyer.profile"),
    ({"conditions": [CONDITIONS[0], {"label": "x", "agents": {"buyer": {"prompt_variant": "shouty"}}}]},
     "conditions[1].agents.buyer.prompt_variant"),
    ({"conditions": [CONDITIONS[0], {"label": "x", "sellers": ["@Ghost"]}]}, "conditions[1].sellers"),
    ({"conditions": [CONDITIONS[0], {"label": "x", "styles": {"@QuickTech": "grumpy"}}]},
     "conditions[1].styles.@QuickTech"),
    ({"conditions": "two please"}, "conditions"),
    ({"runs": 0}, "runs"),
    ({"item_name": "Laptop"}, "item_name"),
    ({"name": ""}, "name"),
])
def test_bad_input_is_a_400_with_the_field_path_and_writes_nothing(api: Any, sample: Session, over: dict,
                                                                   path: str) -> None:
    response = api.post("/api/experiments", body(sample, **over), format="json")
    assert response.status_code == 400, response.json()
    assert path in response.json()["errors"], response.json()
    assert nothing_written()


def test_another_users_session_cannot_be_experimented_on(other_api: Any, sample: Session) -> None:
    response = other_api.post("/api/experiments", body(sample), format="json")
    assert response.status_code == 400 and "session" in response.json()["errors"]
    assert nothing_written()


def test_another_users_experiment_is_a_404(api: Any, other_api: Any, staff: Any, sample: Session) -> None:
    from tests.api.conftest import client_for

    experiment_id = api.post("/api/experiments", body(sample), format="json").json()["id"]
    for url in (f"/api/experiments/{experiment_id}", f"/api/experiments/{experiment_id}/results"):
        response = other_api.get(url)
        assert response.status_code == 404 and response.json()["detail"]
    assert other_api.get("/api/experiments").json()["count"] == 0
    assert client_for(staff).get(f"/api/experiments/{experiment_id}").status_code == 200


def test_the_active_batch_cap_is_a_429_and_writes_nothing(api: Any, sample: Session, settings: Any) -> None:
    settings.MAMS_MAX_ACTIVE_BATCHES_PER_USER = 1
    response = api.post("/api/experiments", body(sample), format="json")
    assert response.status_code == 429 and "MAMS_MAX_ACTIVE_BATCHES_PER_USER" in response.json()["detail"]
    assert nothing_written()


def test_anonymous_is_a_401(anon: Any, sample: Session) -> None:
    assert anon.get("/api/experiments").status_code == 401
    assert anon.post("/api/sequences", {}, format="json").status_code == 401


# --- sequences -----------------------------------------------------------------------------------

def seq_body(sample: Session, **over: Any) -> dict[str, Any]:
    return {"session": str(sample.pk), "item_name": "iPhone Case", "mode": "buyer", "length": 3, "agents": LLM,
            "max_rounds": 3, "base_seed": 5, **over}


def test_a_sequence_is_created_and_read(api: Any, sample: Session, llm: Any) -> None:
    response = api.post("/api/sequences", seq_body(sample), format="json")
    assert response.status_code == 201, response.json()
    data = response.json()
    assert (data["mode"], data["length"], data["status"], data["runs_done"]) == ("buyer", 3, "running", 0)
    assert len(data["steps"]) == 1 and data["steps"][0]["seed"] == 5
    assert data["steps"][0]["buyer_prompt_version"] == data["agents"]["buyer"]["prompt_version"]
    assert api.get(f"/api/sequences/{data['id']}").json()["id"] == data["id"]
    assert api.get("/api/sequences").json()["count"] == 1


@pytest.mark.parametrize(("over", "path"), [
    ({"mode": "sideways"}, "mode"),
    ({"length": 0}, "length"),
    ({"agents": {**LLM, "seller": {"strategy": "linear"}}, "mode": "seller"}, "agents.seller.strategy"),
    ({"agents": {**LLM, "analyst": {"strategy": "linear"}}}, "agents.analyst"),
    ({"item_name": "Laptop"}, "item_name"),
])
def test_a_bad_sequence_is_a_400_and_writes_nothing(api: Any, sample: Session, llm: Any, over: dict,
                                                    path: str) -> None:
    response = api.post("/api/sequences", seq_body(sample, **over), format="json")
    assert response.status_code == 400, response.json()
    assert path in response.json()["errors"], response.json()
    assert not ReflectSequence.objects.exists() and not NegotiationRun.objects.exists()


def test_another_users_sequence_is_a_404(api: Any, other_api: Any, sample: Session, llm: Any, other: Any) -> None:
    sequence_id = api.post("/api/sequences", seq_body(sample), format="json").json()["id"]
    assert other_api.get(f"/api/sequences/{sequence_id}").status_code == 404
    assert other_api.get("/api/sequences").json()["count"] == 0
    mine = SessionFactory(owner=other)
    assert other_api.post("/api/sequences", seq_body(sample, session=str(mine.pk)),
                          format="json").status_code == 400  # a session without demands

"""The environment API for external agents (/env/...): tasks, reset, step, state, score and health.

In-process tests play the sellers' turns here (as test_live.py does); the last test is the whole
thing over real HTTP: a scripted external agent (perf/env_agent.py) against the live server, with
the sellers played by the real Celery worker through the fake LLM. Every body an external agent
can receive is checked for the sellers' planted private numbers.
"""

from __future__ import annotations

import importlib.util
import json
from decimal import Decimal
from pathlib import Path
from typing import Any

import pytest
from hypothesis import HealthCheck, given
from hypothesis import settings as hypothesis_settings
from hypothesis import strategies as st
from rest_framework.authtoken.models import Token

from analytics.benchmarks.suite_files import load_suite
from analytics.environment import ACTIONS
from analytics.models import RunMetrics, Suite, SuiteScenario
from negotiation.models import Message, NegotiationRun, Outcome, RunEvent, Session
from negotiation.services.sessions import session_import
from tests.api.conftest import BASELINE, LLM, client_for
from tests.api.test_live import carries

ROOT = Path(__file__).resolve().parents[2]
LINEAR = {"seller": {"strategy": "linear"}, "analyst": {"strategy": "linear"}}
THREE = "core-v1/three-sellers/Wireless Mouse"

# A marketplace whose private numbers are unlike any other number in a response.
PLANTED = {
    "name": "planted", "description": "numbers to grep for",
    "buyer": {"item_demands": [{"item_name": "Brass Widget", "quantity": 2, "min_price": "10.00",
                                "max_price": "40.00"}]},
    "sellers": [
        {"handle": "@Alpha", "style": "rude",
         "priorities": {"customer_retention": "0.30", "profit_maximization": "0.70"},
         "inventory": [{"item_name": "Brass Widget", "cost_price": "13.37", "least_price": "27.91",
                        "selling_price": "44.44"}]},
        {"handle": "@Beta", "style": "sweet",
         "priorities": {"customer_retention": "0.85", "profit_maximization": "0.15"},
         "inventory": [{"item_name": "Brass Widget", "cost_price": "11.13", "least_price": "24.87",
                        "selling_price": "39.99"}]},
    ],
}
SECRETS = ["13.37", "27.91", "11.13", "24.87", "0.30", "0.70", "0.85", "0.15"]
PRIVATE_WORDS = ["cost_price", "least_price", "selling_price", "retention", "profit", "rude", "sweet", "style",
                 "weight"]


def assert_nothing_private(body: str, secrets: list[str] = SECRETS, words: list[str] = PRIVATE_WORDS) -> None:
    for secret in secrets:
        assert not carries(body, secret), f"{secret} in {body[:400]}"
    for word in words:
        assert word not in body.lower(), f"{word!r} in {body[:400]}"


def load_agent() -> Any:
    spec = importlib.util.spec_from_file_location("env_agent", ROOT / "perf" / "env_agent.py")
    module = importlib.util.module_from_spec(spec)
    spec.loader.exec_module(module)
    return module


@pytest.fixture
def planted(user: Any) -> Session:
    return session_import(document=PLANTED, owner=user)


def _reset(api: Any, task: str, **changes: Any) -> Any:
    return api.post("/env/reset", {"task": task, "seed": 3, "max_rounds": 3, "agents": LINEAR, **changes},
                    format="json")


def _step(api: Any, episode_id: str, wait_seconds: float = 0, **action: Any) -> Any:
    return api.post("/env/step", {"episode_id": episode_id, "action": action, "wait_seconds": wait_seconds},
                    format="json")


# --- health and tasks ----------------------------------------------------------------------------

@pytest.mark.django_db
@pytest.mark.worker
def test_health_is_public_and_says_only_whether_episodes_can_run(anon: Any, celery_worker: Any) -> None:
    from mams.presence import workers_presence
    from tests.conftest import wait_for

    wait_for(lambda: workers_presence().can_play, timeout=30, what="the worker's heartbeat")
    r = anon.get("/env/health", HTTP_AUTHORIZATION="Token not-a-real-token")
    assert r.status_code == 200, r.content
    body = r.json()
    assert body["status"] == "ok" and body["checks"] == {"database": "ok", "broker": "ok", "workers": "ok"}
    assert set(body) == {"status", "env", "api_version", "checks", "max_rounds_limit"}


@pytest.mark.django_db
def test_health_answers_503_when_the_broker_is_down(anon: Any, monkeypatch: pytest.MonkeyPatch) -> None:
    from negotiation.services import events

    class Down:
        def ping(self) -> None:
            raise ConnectionError("connection refused")

    monkeypatch.setattr(events, "redis_client", lambda: Down())
    r = anon.get("/env/health")
    assert r.status_code == 503 and r.json()["status"] == "unavailable"
    assert r.json()["checks"]["database"] == "ok" and r.json()["checks"]["broker"] == "unavailable"
    assert "refused" not in r.content.decode()


def test_tasks_list_every_suite_item_and_my_sessions_without_private_numbers(
        api: Any, planted: Session, other: Any) -> None:
    session_import(document={**PLANTED, "name": "not mine"}, owner=other)
    r = api.get("/env/tasks", {"limit": 500})
    assert r.status_code == 200, r.content
    tasks = {t["id"]: t for t in r.json()["results"]}
    # every item of every suite scenario is a task, named suite/scenario/item
    suite = load_suite("core-v1")
    expected = {f"core-v1/{s.slug}/{item}" for s in suite.scenarios for item in s.items}
    assert expected <= set(tasks)
    assert {"core-v1/several-items/iPhone Case", "core-v1/several-items/Screen Protector"} <= set(tasks)
    # plus my own session's item, and not another user's
    mine = [t for t in tasks.values() if t["source"] == "session"]
    assert [t["id"] for t in mine] == [f"session/{planted.pk}/Brass Widget"]
    assert mine[0]["sellers"] == ["@Alpha", "@Beta"] and mine[0]["item"] == {"name": "Brass Widget", "quantity": 2}
    assert mine[0]["budget"] == {"min_price": "10.00", "max_price": "40.00"}
    tight = tasks["core-v1/tight-zopa/Mechanical Keyboard"]
    assert tight["suite"] == "core-v1" and tight["content_hash"] == suite.content_hash
    # and no task carries a seller's private number or field
    body = r.content.decode()
    assert_nothing_private(body, words=["cost_price", "least_price", "selling_price", "weight", "priorities"])
    for s in suite.scenarios:
        for item in s.items:
            task = tasks[f"core-v1/{s.slug}/{item}"]
            own = set(task["budget"].values())  # a floor may equal the buyer's own price by chance
            secrets = {line[k] for seller in s.document["sellers"] for line in seller["inventory"]
                       if line["item_name"] == item for k in ("cost_price", "least_price")} - own
            assert secrets and not any(carries(json.dumps(task), v) for v in secrets), task


def test_tasks_filter_by_suite_and_source(api: Any, planted: Session) -> None:
    suite_only = api.get("/env/tasks", {"suite": "core", "limit": 500}).json()["results"]
    assert suite_only and all(t["suite"] == "core-v2" for t in suite_only)  # "core" is its latest version
    v1 = api.get("/env/tasks", {"suite": "core-v1", "limit": 500}).json()["results"]
    assert v1 and all(t["suite"] == "core-v1" for t in v1)
    sessions_only = api.get("/env/tasks", {"source": "session"}).json()["results"]
    assert [t["source"] for t in sessions_only] == ["session"]
    r = api.get("/env/tasks", {"suite": "nope"})
    assert r.status_code == 400 and "unknown suite" in r.json()["errors"]["suite"][0]
    assert api.get("/env/tasks", {"source": "files"}).status_code == 400


# --- reset ---------------------------------------------------------------------------------------

@pytest.mark.parametrize(("changes", "path", "words"), [
    ({"task": "core-v1"}, "task", "is not a task id"),
    ({"task": "core-v9/tight-zopa/Mechanical Keyboard"}, "task", "unknown suite"),
    ({"task": "core-v1/no-such-scenario/Mechanical Keyboard"}, "task", "no scenario"),
    ({"task": "core-v1/tight-zopa/Toaster"}, "task", "Its items: Mechanical Keyboard"),
    ({"task": "session/not-a-uuid/Brass Widget"}, "task", "not a session id"),
    ({"task": "session/00000000-0000-0000-0000-000000000000/Brass Widget"}, "task", "not yours"),
    ({"max_rounds": 0}, "max_rounds", "from 1 to"),
    ({"seed": -1}, "seed", ""),
    ({"agents": {"seller": {"profile": "nope"}}}, "agents.seller.profile", "unknown profile"),
    ({"agent_name": "my agent; drop table"}, "agent_name", "letters, digits"),
])
def test_a_bad_reset_is_a_400_and_writes_nothing(api: Any, planted: Session, changes: dict, path: str,
                                                 words: str) -> None:
    sessions = Session.objects.count()
    r = _reset(api, **{"task": THREE, **changes})
    assert r.status_code == 400, r.content
    assert path in r.json()["errors"] and words in r.json()["errors"][path][0], r.json()
    assert not NegotiationRun.objects.exists() and Session.objects.count() == sessions


def test_a_reset_with_bad_agents_imports_no_suite_session(api: Any) -> None:
    # the suite scenario's session would be imported first; the refusal rolls it back too
    r = _reset(api, THREE, agents={"seller": {"profile": "nope"}})
    assert r.status_code == 400
    assert not Session.objects.exists() and not NegotiationRun.objects.exists() and not Suite.objects.exists()


def test_malformed_json_and_another_users_session_are_refused(api: Any, other_api: Any, anon: Any,
                                                              planted: Session) -> None:
    r = api.post("/env/reset", data='{"task": "core-v1/', content_type="application/json")
    assert r.status_code == 400 and "JSON" in r.json()["detail"]
    r = _reset(other_api, f"session/{planted.pk}/Brass Widget")
    assert r.status_code == 400 and "not yours" in r.json()["errors"]["task"][0]
    assert _reset(anon, THREE).status_code == 401
    assert not NegotiationRun.objects.exists()


def test_a_suite_scenario_is_imported_once_and_nobody_can_read_it(api: Any, other_api: Any) -> None:
    a = _reset(api, THREE).json()
    b = _reset(other_api, "core-v1/three-sellers/wireless mouse").json()
    # both episodes play the session the suite's benchmarks use (the suite loaded once), owned by nobody
    runs = NegotiationRun.objects.filter(pk__in=[a["episode_id"], b["episode_id"]])
    suite = Suite.objects.get(name="core", version=1)
    session = SuiteScenario.objects.get(suite=suite, slug="three-sellers").session
    assert {r.session_id for r in runs} == {session.pk}
    assert Session.objects.filter(name="core-v1/three-sellers").count() == 1
    assert session.owner is None and session.sellers.count() == 3
    assert b["observation"]["task"] == THREE  # the canonical spelling
    assert api.get(f"/api/sessions/{session.pk}").status_code == 404
    # and the episode itself is recorded as an external agent's run with its task and fingerprints
    run = runs.get(pk=a["episode_id"])
    assert run.mode == "external" and run.owner.username == "alice" and run.status == "running"
    assert run.scenario["task"] == {"id": THREE, "source": "suite", "suite": "core-v1", "scenario": "three-sellers",
                                    "content_hash": load_suite("core-v1").content_hash}
    assert run.agents["buyer"]["strategy"] == "external" and run.seller_fingerprint and run.code_version


def test_a_suite_whose_files_changed_since_it_was_loaded_is_refused(api: Any) -> None:
    assert _reset(api, THREE).status_code == 201
    Suite.objects.filter(name="core", version=1).update(content_hash="0" * 64)  # as if the files were edited
    r = _reset(api, THREE)
    assert r.status_code == 400 and "already loaded with different content" in r.json()["errors"]["task"][0]
    assert NegotiationRun.objects.count() == 1


def test_the_agent_name_sets_the_buyer_fingerprint(api: Any) -> None:
    a = NegotiationRun.objects.get(pk=_reset(api, THREE, agent_name="my-buyer-v1").json()["episode_id"])
    b = NegotiationRun.objects.get(pk=_reset(api, THREE, agent_name="my-buyer-v2").json()["episode_id"])
    c = NegotiationRun.objects.get(pk=_reset(api, THREE, agent_name="my-buyer-v1").json()["episode_id"])
    assert a.agents["buyer"]["model"] == "my-buyer-v1"
    assert a.buyer_fingerprint == c.buyer_fingerprint != b.buyer_fingerprint


# --- an episode, in-process ----------------------------------------------------------------------

def test_an_episode_from_reset_to_deal(api: Any, planted: Session, sellers_answer: Any) -> None:
    bodies: list[str] = []
    # given a fresh episode of my planted marketplace
    r = _reset(api, f"session/{planted.pk}/Brass Widget")
    assert r.status_code == 201, r.content
    bodies.append(r.content.decode())
    first = r.json()
    eid = first["episode_id"]
    obs = first["observation"]
    assert first["done"] is False and first["reward"] == 0.0
    assert obs["turn"] == 1 and obs["rounds"] == 0 and obs["max_rounds"] == 3
    assert obs["pending"] == [] and obs["messages"] == []
    assert obs["legal_actions"] == ["message", "walk_away"] and obs["standing_offers"] == {}
    assert obs["budget"] == {"min_price": "10.00", "max_price": "40.00"}
    assert [s["handle"] for s in obs["sellers"]] == ["@Alpha", "@Beta"]
    # when the buyer broadcasts a counter and the sellers have not answered yet: 202, pending
    r = _step(api, eid, type="message", text="I need two. Can you do $16.00 each?", price="16.00")
    assert r.status_code == 202, r.content
    bodies.append(r.content.decode())
    step = r.json()
    assert step["observation"]["pending"] == ["@Alpha", "@Beta"] and step["observation"]["legal_actions"] == ["wait"]
    assert step["info"]["recorded"]["to"] == ["@Alpha", "@Beta"] and step["reward"] == 0.0
    # and another action now is a 409 that says to wait, recording nothing
    r = _step(api, eid, type="walk_away")
    assert r.status_code == 409 and '{"type": "wait"}' in r.json()["detail"]
    assert Message.objects.filter(run_id=eid).count() == 1
    # once they have answered, a wait step returns their replies and offers
    sellers_answer(eid)
    r = _step(api, eid, type="wait")
    assert r.status_code == 200
    bodies.append(r.content.decode())
    obs = r.json()["observation"]
    assert obs["turn"] == 2 and obs["rounds"] == 1
    assert obs["pending"] == [] and set(obs["standing_offers"]) == {"@Alpha", "@Beta"}
    assert [m["sender"] for m in obs["messages"]] == ["buyer", "@Alpha", "@Beta"]
    assert "accept" in obs["legal_actions"] and r.json()["info"]["recorded"] is None
    # a counter to one seller only reaches that seller
    r = _step(api, eid, type="message", to=["@beta"], price="22.00")
    assert r.status_code == 202 and r.json()["info"]["recorded"]["to"] == ["@Beta"]
    assert r.json()["info"]["recorded"]["text"] == "Can you do $22.00 per unit?"
    sellers_answer(eid)
    state = api.get("/env/state", {"episode_id": eid})
    assert state.status_code == 200
    bodies.append(state.content.decode())
    obs = state.json()["observation"]
    assert obs["turn"] == 3 and obs["rounds"] == 2 and obs["closing_turn"] is False
    offer = obs["standing_offers"]["@Beta"]
    # bad actions are 400s naming the field, and record nothing
    for action, path in [({"type": "accept", "seller": "@Beta", "price": str(Decimal(offer) - 1)}, "action.price"),
                         ({"type": "accept", "seller": "@Nobody"}, "action.seller"),
                         ({"type": "accept"}, "action.seller"),
                         ({"type": "message", "to": ["@Nobody"], "text": "hi"}, "action.to"),
                         ({"type": "message", "price": "40.01", "text": "hi"}, "action.price"),
                         ({"type": "message"}, "action.text"),
                         ({"type": "haggle"}, "action.type")]:
        r = _step(api, eid, **action)
        assert r.status_code == 400 and path in r.json()["errors"], (action, r.content)
    assert not Message.objects.filter(run_id=eid, round_no=3).exists() and not Outcome.objects.exists()
    # when the buyer accepts Beta's standing offer, the episode ends with the analytics reward
    # (until now no body the agent received held a seller's private number, style or weights)
    for body in bodies:
        assert_nothing_private(body)
    r = _step(api, eid, type="accept", seller="@Beta", price=offer)
    assert r.status_code == 200, r.content
    end = r.json()
    metrics = RunMetrics.objects.get(run_id=eid)
    assert end["done"] is True and end["observation"]["legal_actions"] == []
    assert end["observation"]["outcome"] == {"deal": True, "reason": "accepted", "seller": "@Beta", "price": offer,
                                             "quantity": 2, "rounds": 2}
    assert end["reward"] == pytest.approx(metrics.buyer_share) and 0 < end["reward"] < 1
    assert end["reward"] == pytest.approx(float((Decimal("40.00") - Decimal(offer)) / (Decimal("40.00")
                                                                                         - Decimal("24.87"))))
    # then the score is the run's metrics
    score = api.get("/env/score", {"episode_id": eid}).json()
    assert score["done"] and score["deal"] and score["seller"] == "@Beta" and score["price"] == offer
    assert score["buyer_share"] == pytest.approx(metrics.buyer_share) and score["reward"] == end["reward"]
    assert score["rounds"] == metrics.rounds == 2 and score["messages"] == metrics.messages
    assert score["mutual_loss"] is False and score["first_ask"] == str(metrics.first_ask)
    # acting after the end is a 409; waiting returns the final observation
    r = _step(api, eid, type="walk_away")
    assert r.status_code == 409 and "already completed" in r.json()["detail"]
    r = _step(api, eid, type="wait")
    assert r.status_code == 200 and r.json()["done"] is True and r.json()["reward"] == end["reward"]
    # and, the episode being done, the score states what was hidden: the debrief (services/outside.py)
    debrief = score["debrief"]
    assert debrief == end["info"]["score"]["debrief"] == r.json()["info"]["score"]["debrief"]
    assert [(s["handle"], s["least_price"], s["cost_price"]) for s in debrief["sellers"]] == [
        ("@Alpha", "27.91", "13.37"), ("@Beta", "24.87", "11.13")]
    assert debrief["zopa"] == "15.13" and debrief["lowest_floor_seller"] == "@Beta"
    assert debrief["buyer_share"] == pytest.approx(end["reward"]) and debrief["chosen_floor"] == "24.87"
    assert debrief["mutual_loss"] is False and "24.87" in debrief["summary"]


HANDLES = st.sampled_from(["@Alpha", "@beta", "@Nobody", "all", "Alpha", "@", "", "x" * 60])
PRICES = st.one_of(st.none(), st.sampled_from(["0", "16.00", "39.99", "40.00", "40.01", "-1", "1e9", "abc"]),
                   st.decimals(min_value=0, max_value=100, places=2).map(str))
ACTION = st.fixed_dictionaries({"type": st.sampled_from([*ACTIONS, "haggle"])}, optional={
    "to": st.lists(HANDLES, max_size=3), "price": PRICES, "seller": HANDLES,
    "text": st.one_of(st.text(max_size=30), st.just("@Nobody: hi"), st.just("x" * 4001))})


def test_no_action_answers_5xx_and_a_refused_one_records_nothing(api: Any, planted: Session,
                                                                 sellers_answer: Any, settings: Any) -> None:
    seen: list[int] = []
    settings.MAMS_MAX_OPEN_ROOMS_PER_USER = 0  # 60 episodes, most left open (the cap: tests/api/test_rooms.py)

    @given(actions=st.lists(ACTION, min_size=1, max_size=4))
    @hypothesis_settings(max_examples=60, deadline=None, database=None, derandomize=True,
                         suppress_health_check=list(HealthCheck))
    def check(actions: list[dict[str, Any]]) -> None:
        # given an episode whose sellers have answered round 1
        eid = _reset(api, f"session/{planted.pk}/Brass Widget", max_rounds=2).json()["episode_id"]
        _step(api, eid, type="message", text="Offers?")
        sellers_answer(eid)
        for action in actions:
            before = (Message.objects.filter(run_id=eid).count(), Outcome.objects.filter(run_id=eid).exists())
            r = _step(api, eid, **action)
            seen.append(r.status_code)
            # then every answer is a step result or a readable refusal, and a refusal changed nothing
            assert r.status_code in (200, 202, 400, 409), (action, r.content)
            if r.status_code >= 400:
                body = r.json()
                assert body["detail"] and body["errors"], body
                after = (Message.objects.filter(run_id=eid).count(), Outcome.objects.filter(run_id=eid).exists())
                assert after == before, (action, body)
            elif r.status_code == 202:
                sellers_answer(eid)

    check()
    # 409s (acting while replies are pending, after the end) are pinned by their own tests below;
    # whether 60 random sequences reach one is luck, so only the common answers are required here.
    assert {200, 400} <= set(seen), seen


def test_walking_away_from_a_possible_deal_scores_zero_and_mutual_loss(api: Any, planted: Session) -> None:
    eid = _reset(api, f"session/{planted.pk}/Brass Widget").json()["episode_id"]
    r = _step(api, eid, type="walk_away", text="Not today.")
    assert r.status_code == 200 and r.json()["done"] and r.json()["reward"] == 0.0
    score = api.get("/env/score", {"episode_id": eid}).json()
    assert score["deal"] is False and score["reason"] == "walked_away" and score["mutual_loss"] is True
    assert score["buyer_share"] is None and score["reward"] == 0.0
    assert score["debrief"]["mutual_loss"] is True and score["debrief"]["best_price"] == "24.87"
    assert "both sides lost a possible deal" in score["debrief"]["summary"]


def test_the_closing_turn_takes_only_accept_or_walk_away(api: Any, planted: Session, sellers_answer: Any) -> None:
    eid = _reset(api, f"session/{planted.pk}/Brass Widget", max_rounds=1).json()["episode_id"]
    _step(api, eid, type="message", text="Offers?")
    sellers_answer(eid)
    obs = api.get("/env/state", {"episode_id": eid}).json()["observation"]
    assert obs["closing_turn"] is True and obs["legal_actions"] == ["accept", "walk_away"]
    r = _step(api, eid, type="message", text="Lower?")
    assert r.status_code == 409 and "rounds have been played" in r.json()["detail"]
    score = api.get("/env/score", {"episode_id": eid}).json()
    assert score["done"] is False and score["reward"] is None and score["debrief"] is None


def test_a_round_task_never_plays_an_external_buyer(api: Any, planted: Session) -> None:
    from negotiation.services import play

    eid = _reset(api, f"session/{planted.pk}/Brass Widget").json()["episode_id"]
    play.round_play(run_id=eid, round_no=1)
    assert not Message.objects.filter(run_id=eid).exists()


def test_episodes_are_their_owners(api: Any, other_api: Any, anon: Any, user: Any, planted: Session,
                                   staff: Any) -> None:
    eid = _reset(api, f"session/{planted.pk}/Brass Widget").json()["episode_id"]
    for client, code in [(other_api, 404), (anon, 401)]:
        assert client.get("/env/state", {"episode_id": eid}).status_code == code
        assert client.get("/env/score", {"episode_id": eid}).status_code == code
        assert client.post("/env/step", {"episode_id": eid, "action": {"type": "walk_away"}},
                           format="json").status_code == code
    assert client_for(staff).get("/env/state", {"episode_id": eid}).status_code == 200
    assert NegotiationRun.objects.get(pk=eid).status == "running"
    # a run that is not an episode is not found here either
    from negotiation.services.batches import batch_create

    batch = batch_create(session=planted, item_name="Brass Widget", runs=1, agents=BASELINE, owner=user)
    agent_run = NegotiationRun.objects.get(batch=batch)
    assert api.get("/env/state", {"episode_id": str(agent_run.pk)}).status_code == 404
    r = api.get("/env/state", {"episode_id": "42"})
    assert r.status_code == 400 and "episode_id" in r.json()["errors"]
    assert api.get("/env/score").status_code == 400


def test_the_runs_api_shows_an_episode_as_the_buyer_sees_it(api: Any, planted: Session,
                                                            sellers_answer: Any) -> None:
    eid = _reset(api, f"session/{planted.pk}/Brass Widget").json()["episode_id"]
    _step(api, eid, type="message", text="Offers?")
    sellers_answer(eid)
    detail = api.get(f"/api/negotiations/{eid}")
    assert detail.status_code == 200 and detail.json()["scenario"] is None and detail.json()["mode"] == "external"
    analytics = api.get(f"/api/negotiations/{eid}/analytics").json()
    assert "counts" not in analytics
    messages = api.get(f"/api/negotiations/{eid}/messages")
    for body in (detail.content.decode(), messages.content.decode(), json.dumps(analytics)):
        assert_nothing_private(body, words=["cost_price", "least_price", "selling_price"])
    assert not any("reasoning" in m for m in messages.json()["messages"])


def test_an_episode_has_its_owners_run_page(client: Any, user: Any, other: Any, planted: Session, api: Any,
                                            sellers_answer: Any) -> None:
    eid = _reset(api, f"session/{planted.pk}/Brass Widget").json()["episode_id"]
    _step(api, eid, type="message", text="Offers?")
    sellers_answer(eid)
    user.refresh_from_db()  # the factory's password is not saved; a login must match the stored one
    other.refresh_from_db()
    client.force_login(user)
    # while the episode runs, the page is the buyer's view: no seller lane, floor guide, style or score
    page = client.get(f"/analytics/runs/{eid}/")
    assert page.status_code == 200 and 'id="sealed"' in page.content.decode()
    assert_nothing_private(page.content.decode(), words=["lowest floor", "what @alpha saw", "rude", "sweet",
                                                         'id="debrief"'])
    # once it is done, the page lays it open, with the debrief
    _step(api, eid, type="walk_away")
    page = client.get(f"/analytics/runs/{eid}/").content.decode()
    assert 'id="debrief"' in page and "What @Beta saw" in page and "$24.87" in page and 'id="sealed"' not in page
    client.force_login(other)
    assert client.get(f"/analytics/runs/{eid}/").status_code == 404


# --- the whole thing over HTTP -------------------------------------------------------------------

@pytest.mark.worker
@pytest.mark.django_db(transaction=True)
def test_a_scripted_external_agent_plays_over_http(user: Any, celery_worker: Any, llm: Any,
                                                   live_server: Any, other: Any, request: Any) -> None:
    agent = load_agent()
    planted_session = session_import(document=PLANTED, owner=user)
    token = Token.objects.get_or_create(user=user)[0].key
    client = agent.EnvClient(live_server.url, token, timeout=120)
    request.addfinalizer(client.close)  # a kept-alive connection would hold a server thread and its database session
    assert client.health()["status"] == "ok"
    task = f"session/{planted_session.pk}/Brass Widget"
    assert task in {t["id"] for t in client.tasks()}
    sellers = {"seller": LLM["seller"], "analyst": {"strategy": "linear"}}
    # given slow sellers, a step that does not wait answers 202 and a wait step picks the replies up
    llm.configure(latency=1.0)
    first = client.reset(task, seed=11, max_rounds=3, agents=sellers, agent_name="scripted-anchor-v1")
    eid = first["episode_id"]
    code, step = client.step(eid, agent.anchoring_policy(first["observation"]), wait_seconds=0)
    assert code == 202 and step["observation"]["pending"] == ["@Alpha", "@Beta"]
    code, step = client.step(eid, {"type": "wait"}, wait_seconds=60)
    assert code == 200 and step["observation"]["pending"] == [] and len(step["observation"]["standing_offers"]) == 2
    llm.configure(latency=0)
    # when the scripted agent plays the rest of the episode
    for _ in range(10):
        if step["done"]:
            break
        code, step = client.step(eid, agent.anchoring_policy(step["observation"]), wait_seconds=60)
        assert code == 200, step
    # then it ended in a deal the sellers' LLM turns produced, and the score is the run's metrics
    run = NegotiationRun.objects.get(pk=eid)
    assert step["done"] and run.status == "completed" and run.mode == "external"
    assert Message.objects.filter(run=run, sender_type="seller", llm_calls__gt=0).count() >= 4
    score = client.score(eid)
    metrics = RunMetrics.objects.get(run=run)
    assert score["deal"] is True and metrics.deal and score["seller"] == metrics.chosen_handle
    assert Decimal(score["price"]) == metrics.price and score["rounds"] == metrics.rounds
    assert score["buyer_share"] == pytest.approx(metrics.buyer_share) and score["reward"] == step["reward"] > 0
    assert score["buyer_fingerprint"] == run.buyer_fingerprint and run.agents["buyer"]["model"] == "scripted-anchor-v1"
    # and a whole episode through the client's loop works too (another seed)
    played = agent.play_episode(client, task, seed=12, max_rounds=3, agents=sellers, wait_seconds=60)
    assert played["score"]["done"] and set(played["statuses"]) == {200}
    assert RunMetrics.objects.filter(run_id=played["episode_id"]).exists()
    # and no body the agent received before an episode was done (tasks, resets, steps, states) held a seller's
    # secret; the bodies of a done episode carry its debrief (services/outside.py, tests/api/test_outside_policy.py)
    client.state(eid)
    assert len(client.bodies) >= 10
    done = [b for b in client.bodies if '"done":true' in b]
    assert done and all('"debrief":{' in b for b in done if '"score"' in b or '"reward":' in b)
    for body in client.bodies:
        if '"results"' in body:  # the task list names suite scenarios (e.g. sweet-retention-first)
            assert_nothing_private(body, words=["cost_price", "least_price", "selling_price", "priorities"])
        elif body not in done:
            assert_nothing_private(body)
    # (the sellers did not give their floors away in play, so the check above is not vacuous)
    offered = {str(p) for p in Message.objects.filter(run__mode="external", sender_type="seller")
               .values_list("price", flat=True)}
    assert not {"27.91", "24.87"} & offered
    assert not RunEvent.objects.filter(run=run, kind="leak").exclude(actor="buyer").exists()
    # another user cannot read the episode over HTTP
    with agent.EnvClient(live_server.url, Token.objects.get_or_create(user=other)[0].key) as other_client, \
            pytest.raises(agent.EnvError) as err:
        other_client.state(eid)
    assert err.value.status == 404


# --- the patient exploit through /env, under core-v1's and core-v2's rules ----------------------------

def _patient_reward(api: Any, sellers_answer: Any, task: str, *, seed: int, max_rounds: int, seller: str
                    ) -> tuple[float, list[dict]]:
    """Counter at the minimum every round; on the last chance, take the lowest offer in budget."""
    r = _reset(api, task, seed=seed, max_rounds=max_rounds,
               agents={"seller": {"strategy": seller}, "analyst": {"strategy": "linear"}})
    assert r.status_code == 201, r.content
    eid = r.json()["episode_id"]
    seen = []
    for _ in range(3 * max_rounds):
        obs = api.get("/env/state", {"episode_id": eid}).json()["observation"]
        seen.append(obs)
        if obs["done"]:
            break
        low, high = Decimal(obs["budget"]["min_price"]), Decimal(obs["budget"]["max_price"])
        offers = {h: Decimal(p) for h, p in obs["standing_offers"].items() if Decimal(p) <= high}
        if obs["closing_turn"] or (obs["rules"] == "hidden" and obs["turn"] >= obs["max_rounds"]):
            if offers:
                best = min(offers, key=lambda h: offers[h])
                assert _step(api, eid, type="accept", seller=best, price=str(offers[best])).status_code == 200
            else:
                assert _step(api, eid, type="walk_away").status_code == 200
            continue
        assert _step(api, eid, type="message", text=f"Can you do ${low}?", price=str(low)).status_code in (200, 202)
        sellers_answer(eid)
    score = api.get("/env/score", {"episode_id": eid}).json()
    assert score["done"], score
    return score["reward"], seen


@pytest.mark.django_db
def test_the_patient_exploit_wins_core_v1_and_not_core_v2(api: Any, sellers_answer: Any) -> None:
    from django.conf import settings as django_settings

    from negotiation.engine.protocol import last_round
    tasks = ["{suite}/three-sellers/Wireless Mouse", "{suite}/tight-zopa/Mechanical Keyboard"]
    # given the 12 episodes (two tasks × three seller strategies × max_rounds 3 and 5)
    v1, v2 = [], []
    for task in tasks:
        for seller in ("boulware", "linear", "conceder"):
            for rounds in (3, 5):
                # when the patient policy plays them under core-v1's rules, then under core-v2's (two seeds)
                v1.append(_patient_reward(api, sellers_answer, task.format(suite="core-v1"), seed=1,
                                          max_rounds=rounds, seller=seller)[0])
                for seed in (1, 2):
                    reward, seen = _patient_reward(api, sellers_answer, task.format(suite="core-v2"), seed=seed,
                                                   max_rounds=rounds, seller=seller)
                    v2.append(reward)
                    # and a core-v2 observation names the rules and the range, never the drawn round
                    drawn = last_round(rules="hidden", seed=seed, max_rounds=rounds,
                                       key=django_settings.MAMS_DEADLINE_KEY or django_settings.SECRET_KEY)
                    assert all(o["rules"] == "hidden" and o["earliest_end"] <= rounds and not o["closing_turn"]
                               and set(o) == set(seen[0]) for o in seen)
                    assert all(o["turn"] <= drawn + 1 and o["rounds"] <= drawn for o in seen)
    # then core-v1 pays it the whole surplus every time (the exploit), and core-v2 does not
    assert v1 == [1.0] * 12
    assert sum(v2) / len(v2) < 0.6 and v2.count(1.0) < len(v2) / 4, v2

"""Rooms with an outside buyer (live negotiations and /env episodes): an abandoned one is closed by the
sweeper (negotiation/services/sweeps.py::rooms_expire, called from the `negotiation.sweep` task), and a
user may hold only MAMS_MAX_OPEN_ROOMS_PER_USER of them open at once (services/live.py::live_start).

Idleness is read from times, so the tests move a room's heartbeat and messages into the past rather
than wait a day.
"""

from __future__ import annotations

import json
import threading
from datetime import timedelta
from typing import Any

import pytest
from django.db import connection
from django.utils import timezone

from analytics.models import Suite
from negotiation.models import Message, NegotiationRun, Session
from negotiation.services import sweeps
from negotiation.services.events import channel, redis_client
from negotiation.services.live import live_start
from negotiation.services.scenarios import scenario_document
from negotiation.services.sessions import session_import
from negotiation.tasks import sweep_task
from tests.api.conftest import BASELINE, client_for
from tests.conftest import wait_for

LINEAR = {"seller": {"strategy": "linear"}, "analyst": {"strategy": "linear"}}
SUITE_TASK = "core-v1/three-sellers/Wireless Mouse"
Status = NegotiationRun.Status


def _start(api: Any, sample: Session) -> Any:
    return api.post("/api/negotiations/start", {"session": str(sample.pk), "item_name": "USB-C Cable",
                                                "agents": LINEAR, "max_rounds": 3}, format="json")


def _reset(api: Any, task: str) -> Any:
    return api.post("/env/reset", {"task": task, "max_rounds": 3, "agents": LINEAR}, format="json")


def _session_task(sample: Session) -> str:
    return f"session/{sample.pk}/USB-C Cable"


def _idle_since(run_id: Any, hours: float) -> None:
    """Make the room look untouched for `hours`: its heartbeat and every message that old."""
    then = timezone.now() - timedelta(hours=hours)
    NegotiationRun.objects.filter(pk=run_id).update(heartbeat_at=then, started_at=then)
    Message.objects.filter(run_id=run_id).update(created_at=then)


@pytest.fixture
def day(settings: Any) -> Any:
    settings.MAMS_ROOM_IDLE_SECONDS = 24 * 3600
    return settings


# --- expiry ----------------------------------------------------------------------------------------

@pytest.mark.django_db
def test_the_sweep_closes_idle_rooms_with_a_reason_and_tells_their_streams(
        api: Any, sample: Session, sellers_answer: Any, day: Any, django_capture_on_commit_callbacks: Any) -> None:
    # given a live room in which the buyer spoke once, and an /env episode nobody touched, both 25 h ago
    live = _start(api, sample).json()["id"]
    r = api.post(f"/api/negotiations/{live}/message", {"text": "Offers?", "wait": False}, format="json")
    assert r.status_code == 202, r.content
    sellers_answer(live)
    episode = _reset(api, _session_task(sample)).json()["episode_id"]
    for rid in (live, episode):
        _idle_since(rid, hours=25)
    listener = redis_client().pubsub(ignore_subscribe_messages=True)
    listener.subscribe(channel(live))
    try:
        # when the periodic sweep runs
        with django_capture_on_commit_callbacks(execute=True):
            closed = sweep_task()
        # then both rooms are cancelled, with a reason a person can read, and the live room's stream is told
        assert closed == 2
        notice = next((m for _ in range(20) if (m := listener.get_message(timeout=0.25))), None)
    finally:
        listener.close()
    for rid in (live, episode):
        run = NegotiationRun.objects.get(pk=rid)
        assert run.status == Status.CANCELLED and run.ended_at is not None
        assert run.error == "abandoned: no buyer action for 24 h (MAMS_ROOM_IDLE_SECONDS)"
    assert notice is not None and json.loads(notice["data"]) == {"kind": "status", "status": "cancelled"}
    # and a second sweep finds nothing more to do
    assert sweep_task() == 0


@pytest.mark.django_db
def test_a_room_with_recent_activity_is_left_open(api: Any, sample: Session, sellers_answer: Any, day: Any) -> None:
    # given a room opened 30 h ago whose sellers answered a minute ago (the newest message is progress;
    # a turn does not touch the heartbeat), and a room opened just now
    talked = _start(api, sample).json()["id"]
    assert api.post(f"/api/negotiations/{talked}/message", {"text": "Offers?", "wait": False},
                    format="json").status_code == 202
    sellers_answer(talked)
    _idle_since(talked, hours=30)
    Message.objects.filter(run_id=talked, sender_type="seller").update(
        created_at=timezone.now() - timedelta(minutes=1))
    fresh = _reset(api, _session_task(sample)).json()["episode_id"]
    # when the sweep runs, then neither is closed
    assert sweeps.rooms_expire(idle_after=timedelta(hours=24)) == 0
    assert set(NegotiationRun.objects.filter(pk__in=[talked, fresh]).values_list("status", flat=True)) == {
        Status.RUNNING}
    # and the talked-in room still takes the buyer's next turn
    r = api.post(f"/api/negotiations/{talked}/message", {"text": "Any better?", "wait": False}, format="json")
    assert r.status_code == 202, r.content


@pytest.mark.django_db
def test_finished_rooms_and_agent_runs_are_not_touched(api: Any, sample: Session, user: Any, day: Any) -> None:
    # given a room the buyer walked away from, and an agent run with no heartbeat, all 30 h old
    done = _start(api, sample).json()["id"]
    assert api.post(f"/api/negotiations/{done}/decide", {"decision": "walk_away"}, format="json").status_code == 200
    agent = NegotiationRun.objects.create(session=sample, owner=user, item_name="USB-C Cable", agents=BASELINE,
                                          scenario={}, status=Status.RUNNING)
    for rid in (done, agent.pk):
        _idle_since(rid, hours=30)
    before = NegotiationRun.objects.get(pk=done)
    # when the rooms are swept
    assert sweeps.rooms_expire(idle_after=timedelta(hours=24)) == 0
    # then the finished room keeps its status, end time and (empty) error, and the agent run is not a room
    after = NegotiationRun.objects.get(pk=done)
    assert (after.status, after.ended_at, after.error) == (Status.COMPLETED, before.ended_at, "")
    assert NegotiationRun.objects.get(pk=agent.pk).status == Status.RUNNING


@pytest.mark.django_db
def test_rooms_never_expire_when_switched_off(api: Any, sample: Session) -> None:
    rid = _start(api, sample).json()["id"]
    _idle_since(rid, hours=24 * 365)
    assert sweeps.rooms_expire(idle_after=timedelta(0)) == 0
    assert NegotiationRun.objects.get(pk=rid).status == Status.RUNNING


@pytest.mark.django_db
def test_a_turn_in_an_expired_live_room_is_a_409_that_says_how_to_go_on(api: Any, sample: Session, day: Any
                                                                         ) -> None:
    # given a live room closed by the sweep
    rid = _start(api, sample).json()["id"]
    _idle_since(rid, hours=25)
    assert sweeps.rooms_expire(idle_after=timedelta(hours=24)) == 1
    # when the buyer comes back and speaks, or decides
    for path, body in (("message", {"text": "Still there?", "wait": False}), ("decide", {"decision": "walk_away"})):
        r = api.post(f"/api/negotiations/{rid}/{path}", body, format="json")
        # then it is a 409 saying the room expired, why, and how to start again, and nothing is recorded
        assert r.status_code == 409, r.content
        detail = r.json()["detail"]
        assert "expired" in detail and "no buyer action for 24 h" in detail, detail
        assert "POST /api/negotiations/start" in detail
    assert not Message.objects.filter(run_id=rid).exists()
    shown = api.get(f"/api/negotiations/{rid}").json()
    assert shown["status"] == "cancelled" and shown["error"].startswith("abandoned: no buyer action")


@pytest.mark.django_db
def test_a_step_in_an_expired_episode_is_a_409_that_says_how_to_go_on(api: Any, sample: Session, day: Any) -> None:
    # given an /env episode closed by the sweep
    eid = _reset(api, _session_task(sample)).json()["episode_id"]
    _idle_since(eid, hours=25)
    assert sweeps.rooms_expire(idle_after=timedelta(hours=24)) == 1
    # when the agent steps again
    r = api.post("/env/step", {"episode_id": eid, "action": {"type": "message", "text": "Hello?"},
                               "wait_seconds": 0}, format="json")
    # then it is a 409 saying the episode expired and to reset, and nothing is recorded
    assert r.status_code == 409, r.content
    detail = r.json()["detail"]
    assert "expired" in detail and "no buyer action for 24 h" in detail and "POST /env/reset" in detail, detail
    assert not Message.objects.filter(run_id=eid).exists()
    # and its state says it is done, with the reason
    state = api.get("/env/state", {"episode_id": eid}).json()
    assert state["done"] is True and state["info"]["status"] == "cancelled"
    assert state["info"]["error"].startswith("abandoned: no buyer action for 24 h")


# --- the cap on open rooms -------------------------------------------------------------------------

@pytest.mark.django_db
def test_a_room_beyond_the_cap_is_a_429_on_both_start_paths_and_writes_nothing(
        api: Any, sample: Session, settings: Any) -> None:
    # given a cap of 2 and a user with one live room and one /env episode open
    settings.MAMS_MAX_OPEN_ROOMS_PER_USER = 2
    settings.MAMS_ROOM_IDLE_SECONDS = 24 * 3600
    assert _start(api, sample).status_code == 201
    assert _reset(api, _session_task(sample)).status_code == 201
    # when a third is asked for, as a live room, an episode of a session, or of a suite never loaded before
    for r in (_start(api, sample), _reset(api, _session_task(sample)), _reset(api, SUITE_TASK)):
        # then each is a 429 that says how many are open and how to free one
        assert r.status_code == 429, r.content
        detail = r.json()["detail"]
        assert "You already have 2 negotiations open" in detail and "MAMS_MAX_OPEN_ROOMS_PER_USER" in detail
        assert "walk away" in detail and "no buyer action for 24 h closes on its own" in detail
    # and nothing was written: no run, and not even the suite's session
    assert NegotiationRun.objects.count() == 2
    assert not Suite.objects.exists()


@pytest.mark.django_db
def test_finished_and_expired_rooms_free_their_place(api: Any, sample: Session, settings: Any) -> None:
    settings.MAMS_MAX_OPEN_ROOMS_PER_USER = 1
    first = _start(api, sample).json()["id"]
    assert _start(api, sample).status_code == 429
    # a room the buyer walked away from no longer counts
    assert api.post(f"/api/negotiations/{first}/decide", {"decision": "walk_away"}, format="json").status_code == 200
    second = _reset(api, _session_task(sample)).json()["episode_id"]
    assert _reset(api, _session_task(sample)).status_code == 429
    # nor does one the sweeper closed
    _idle_since(second, hours=25)
    assert sweeps.rooms_expire(idle_after=timedelta(hours=24)) == 1
    assert _start(api, sample).status_code == 201


@pytest.mark.django_db
def test_another_users_rooms_do_not_count(api: Any, other: Any, sample: Session, settings: Any) -> None:
    # given another user who holds a room of each kind, and then a cap of 1
    theirs = session_import(document=scenario_document("spec_sample"), owner=other)
    for mode in NegotiationRun.OUTSIDE_BUYER:
        live_start(owner=other, session=theirs, item_name="USB-C Cable", seller_agent=LINEAR["seller"],
                   analyst_agent=LINEAR["analyst"], mode=mode)
    settings.MAMS_MAX_OPEN_ROOMS_PER_USER = 1
    # and my own agent runs (batches) are not rooms either
    NegotiationRun.objects.create(session=sample, owner=sample.owner, item_name="USB-C Cable", agents=BASELINE,
                                  scenario={}, status=Status.RUNNING)
    # when I open a room, then it is accepted; a second one is not
    assert _start(api, sample).status_code == 201
    assert _reset(api, _session_task(sample)).status_code == 429
    assert client_for(other).post("/api/negotiations/start", {"session": str(theirs.pk), "item_name": "USB-C Cable",
                                                              "agents": LINEAR}, format="json").status_code == 429


@pytest.mark.django_db
def test_the_cap_can_be_switched_off(api: Any, sample: Session, settings: Any) -> None:
    settings.MAMS_MAX_OPEN_ROOMS_PER_USER = 0
    assert all(_start(api, sample).status_code == 201 for _ in range(3))


# --- with other processes: concurrent starts, the sweep on the real worker --------------------------

@pytest.mark.django_db(transaction=True)
def test_two_concurrent_starts_cannot_both_take_the_last_place(user: Any, sample: Session, settings: Any) -> None:
    # given a cap of 1 and two requests that start at the same moment on their own connections
    settings.MAMS_MAX_OPEN_ROOMS_PER_USER = 1
    barrier = threading.Barrier(2)
    statuses: list[int] = []

    def start(client: Any) -> None:
        try:
            barrier.wait(timeout=10)
            statuses.append(_start(client, sample).status_code)
        finally:
            connection.close()

    threads = [threading.Thread(target=start, args=(client_for(user),)) for _ in range(2)]
    for t in threads:
        t.start()
    for t in threads:
        t.join(timeout=60)
    # then exactly one room is opened and the other request is told the cap is reached
    assert sorted(statuses) == [201, 429]
    assert NegotiationRun.objects.filter(owner=user).count() == 1


@pytest.mark.django_db(transaction=True)
@pytest.mark.worker
def test_the_sweep_task_on_the_worker_closes_an_abandoned_episode(api: Any, sample: Session, celery_worker: Any
                                                                   ) -> None:
    # given an episode untouched for 25 h (the worker runs with the default MAMS_ROOM_IDLE_SECONDS of 24 h)
    eid = _reset(api, _session_task(sample)).json()["episode_id"]
    _idle_since(eid, hours=25)
    # when beat's sweep task runs on the worker
    sweep_task.delay()
    # then the episode ends cancelled, with the reason
    wait_for(lambda: NegotiationRun.objects.get(pk=eid).status == Status.CANCELLED, timeout=60,
             what="the sweep to close the episode")
    assert NegotiationRun.objects.get(pk=eid).error.startswith("abandoned: no buyer action for 24 h")

"""Worker presence (mams/presence.py) as the API and the pages report it: a real worker's heartbeat,
`GET /api/health`, `/env/health`, and a waiting batch that says no worker will play it."""

from __future__ import annotations

from typing import Any

import pytest
import redis
from django.test import Client
from rest_framework.test import APIClient

from mams.presence import HEARTBEAT_TTL, KEY_PREFIX, heartbeat_write, workers_presence
from mams.queues import Queue
from negotiation.services.batches import batch_create
from negotiation.services.scenarios import sample_session_load
from tests.conftest import WorkerProcess, wait_for
from tests.factories import UserFactory

BASELINE = {"buyer": {"strategy": "linear"}, "seller": {"strategy": "linear"}, "analyst": {"strategy": "linear"}}


@pytest.fixture
def no_workers_redis(settings: Any) -> str:
    """An empty Redis database as the heartbeat store: no worker's key is in it."""
    url = settings.REDIS_URL.rsplit("/", 1)[0] + "/9"
    redis.Redis.from_url(url).flushdb()
    settings.REDIS_URL = url
    return url


@pytest.mark.django_db
@pytest.mark.worker
def test_a_running_worker_is_seen_with_the_queues_it_consumes(celery_worker: WorkerProcess, settings: Any) -> None:
    # given the suite's worker
    # when its heartbeat is read
    wait_for(lambda: any(w["hostname"] == celery_worker.hostname for w in workers_presence().workers),
             timeout=30, what="the worker's heartbeat")
    presence = workers_presence()
    # then it names every MAMS queue, so a batch can be played
    mine = next(w for w in presence.workers if w["hostname"] == celery_worker.hostname)
    assert sorted(mine["queues"]) == sorted(q.value for q in Queue)
    assert mine["pid"] == celery_worker.proc.pid
    assert presence.known and presence.can_play and presence.missing_queues == []
    # and the key expires on its own if the worker dies without a word (SIGKILL)
    ttl = redis.Redis.from_url(settings.REDIS_URL).ttl(f"{KEY_PREFIX}{celery_worker.hostname}")
    assert 0 < ttl <= HEARTBEAT_TTL


@pytest.mark.django_db
@pytest.mark.worker
def test_health_is_public_and_says_up_per_part_when_a_worker_runs(celery_worker: WorkerProcess) -> None:
    wait_for(lambda: workers_presence().can_play, timeout=30, what="the worker's heartbeat")
    r = APIClient().get("/api/health", HTTP_AUTHORIZATION="Token not-a-real-token")
    assert r.status_code == 200, r.content
    assert r.json() == {"status": "up", "parts": {"database": "up", "broker": "up", "workers": "up"}}


@pytest.mark.django_db
def test_with_no_worker_health_is_degraded_and_env_health_unavailable(no_workers_redis: str) -> None:
    # given no worker heartbeat at all
    # when the health endpoints are asked
    r = APIClient().get("/api/health")
    env = APIClient().get("/env/health")
    # then the web still serves (200, degraded) but says workers are down; /env says episodes cannot run
    assert r.status_code == 200, r.content
    assert r.json() == {"status": "degraded", "parts": {"database": "up", "broker": "up", "workers": "down"}}
    assert env.status_code == 503
    assert env.json()["checks"] == {"database": "ok", "broker": "ok", "workers": "unavailable"}


@pytest.mark.django_db
def test_a_worker_on_other_queues_only_does_not_count(no_workers_redis: str) -> None:
    # given one live worker that consumes only the analysis queue
    heartbeat_write(hostname="analysis-only@host", queues=["analysis"])
    presence = workers_presence()
    # then nothing can play a batch, and the missing queues are named
    assert presence.workers and not presence.can_play
    assert presence.missing_queues == ["agents", "rounds"]
    assert APIClient().get("/api/health").json()["parts"]["workers"] == "down"


@pytest.mark.django_db
def test_a_waiting_batch_with_no_worker_says_what_to_do_in_the_api_and_on_its_page(no_workers_redis: str) -> None:
    # given a batch whose runs are queued (enqueued on commit, which this test never reaches) and no worker
    owner = UserFactory(username="waiting")
    owner.save()  # the factory sets the password after its save; a session checks the stored hash
    batch = batch_create(session=sample_session_load(owner=owner), item_name="USB-C Cable", runs=3,
                         agents=BASELINE, owner=owner)
    api = APIClient()
    api.force_authenticate(owner)
    # when the API and the batch page are read
    body = api.get(f"/api/batches/{batch.pk}").json()
    page = Client()
    page.force_login(owner)
    resp = page.get(f"/analytics/batches/{batch.pk}/")
    assert resp.status_code == 200, resp
    html = resp.content.decode()
    # then both say that no worker is running and how to start one
    assert body["workers"]["live"] == 0
    assert "no worker is running" in body["workers"]["alert"] and "make up" in body["workers"]["alert"]
    assert "systemctl start mams-worker@1" in body["workers"]["alert"]
    assert 'id="workers-alert" role="alert">' in html and "no worker is running" in html
    # and the page's live poll carries it too, so the alert appears and goes without a reload
    live = page.get(f"/analytics/batches/{batch.pk}/live.json").json()
    assert "no worker is running" in live["workers_alert"]


@pytest.mark.django_db
def test_a_finished_batch_needs_no_worker_and_says_nothing(no_workers_redis: str, settings: Any) -> None:
    from negotiation.selectors import batch_workers

    assert batch_workers(progress={"queued": 0, "running": 0, "completed": 3, "failed": 0, "cancelled": 0}) == {
        "live": 0, "alert": None}
    # and when Redis itself does not answer, nothing is claimed about workers, but the page says why
    settings.REDIS_URL = "redis://127.0.0.1:1/0"
    out = batch_workers(progress={"queued": 2, "running": 0, "completed": 0, "failed": 0, "cancelled": 0})
    assert out["live"] is None and "Redis" in out["alert"]

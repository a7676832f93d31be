"""Per-user limits: runs per batch (400) and batches queued or running at once (429)."""

from __future__ import annotations

from typing import Any

from negotiation.models import Batch, NegotiationRun, Session
from negotiation.services.batches import batch_create
from tests.api.conftest import BASELINE


def _body(sample: Session, **changes: Any) -> dict:
    return {"session": str(sample.pk), "item_name": "USB-C Cable", "runs": 2, "agents": BASELINE, "max_rounds": 2,
            **changes}


def test_a_batch_beyond_the_active_batches_limit_is_429_and_creates_nothing(
        api: Any, sample: Session, settings: Any) -> None:
    # given a limit of 2 active batches and a user with 2 queued batches
    settings.MAMS_MAX_ACTIVE_BATCHES_PER_USER = 2
    for _ in range(2):
        assert api.post("/api/batches", _body(sample), format="json").status_code == 201
    # when a third is requested
    r = api.post("/api/batches", _body(sample), format="json")
    # then it is refused with 429 and a message saying what to do, and nothing was written
    assert r.status_code == 429, r.content
    assert "MAMS_MAX_ACTIVE_BATCHES_PER_USER" in r.json()["detail"] and "cancel" in r.json()["detail"]
    assert Batch.objects.count() == 2 and NegotiationRun.objects.count() == 4


def test_finished_and_cancelled_batches_do_not_count_and_other_users_are_not_affected(
        api: Any, sample: Session, other: Any, settings: Any) -> None:
    # given a limit of 1 and a user whose only batch is cancelled
    settings.MAMS_MAX_ACTIVE_BATCHES_PER_USER = 1
    first = api.post("/api/batches", _body(sample), format="json").json()
    assert api.post("/api/batches", _body(sample), format="json").status_code == 429
    assert api.post(f"/api/batches/{first['id']}/cancel").status_code == 200
    # when the user asks again, then the new batch is accepted
    assert api.post("/api/batches", _body(sample), format="json").status_code == 201
    # and another user is not held back by this user's active batch
    batch_create(session=sample, item_name="USB-C Cable", runs=1, agents=BASELINE, owner=other)
    assert Batch.objects.filter(owner=other).count() == 1


def test_the_active_batches_limit_can_be_switched_off(api: Any, sample: Session, settings: Any) -> None:
    settings.MAMS_MAX_ACTIVE_BATCHES_PER_USER = 0
    assert all(api.post("/api/batches", _body(sample), format="json").status_code == 201 for _ in range(3))


def test_runs_per_batch_beyond_the_limit_are_400(api: Any, sample: Session, settings: Any) -> None:
    settings.MAMS_MAX_RUNS_PER_BATCH = 3
    r = api.post("/api/batches", _body(sample, runs=4), format="json")
    assert r.status_code == 400 and "from 1 to 3" in r.json()["errors"]["runs"][0]
    assert not Batch.objects.exists()

"""A Celery worker killed with SIGKILL in the middle of a batch loses nothing.

The worker is a real `celery worker` process (threads pool, so the process we kill is the one that
runs the tasks), on a throwaway Redis broker (tests/ops/conftest.py) with a 5-second visibility
timeout, so the tasks it had taken but not acknowledged (acks_late) come back to the next worker
within seconds. What a redelivery cannot repair (a kill between a commit and its enqueue) the
sweeper repairs; the test runs it as beat would, with a short staleness.
"""

from __future__ import annotations

import json
import re
import time
from collections import defaultdict
from datetime import timedelta
from typing import Any

import pytest
from django.conf import settings

from negotiation.models import Batch, Message, NegotiationRun
from negotiation.services import play
from negotiation.services.batches import batch_create
from negotiation.services.scenarios import sample_session_load
from tests.conftest import WorkerProcess, start_worker, wait_for

pytestmark = [pytest.mark.django_db(transaction=True), pytest.mark.worker]

LLM = {role: {"profile": "openai-compatible"} for role in ("buyer", "seller", "analyst")}
# Redelivery 5 s after a delivery (each worker looks every second); a short LLM timeout so the killed
# worker's limiter leases expire soon too; unbuffered logs, so the tests can read them while it runs.
FAST_RECOVERY = {"MAMS_VISIBILITY_TIMEOUT": "5", "MAMS_UNACKED_RESTORE_SECONDS": "1", "MAMS_LLM_TIMEOUT": "10",
                 "MAMS_ANALYSIS_ENABLED": "0", "PYTHONUNBUFFERED": "1"}


def ops_worker(name: str, llm: Any, extra: dict[str, str] | None = None) -> WorkerProcess:
    return start_worker(db_name=settings.DATABASES["default"]["NAME"], llm_url=llm.base_url, name=name,
                        extra_env={**FAST_RECOVERY, **(extra or {})})


def unacked_task_ids(redis_url: str) -> set[str]:
    """Ids of the tasks the broker handed out and nobody acknowledged (kombu's `unacked` hash)."""
    import redis

    rows = redis.Redis.from_url(redis_url).hvals("unacked")
    return {json.loads(row)[0]["headers"]["id"] for row in rows}


def received_task_ids(worker: WorkerProcess) -> set[str]:
    return set(re.findall(r"\[([0-9a-f-]{36})\] received", worker.log.read_text(errors="replace")))


def wait_with_sweeper(batch_id: Any, *, timeout: float, worker: WorkerProcess, stale: float = 8.0) -> int:
    """Wait for a batch to finish, sweeping stale runs every 2 s as beat would; returns runs re-queued."""
    requeued = 0
    deadline = time.monotonic() + timeout
    while NegotiationRun.objects.filter(batch_id=batch_id, status__in=["queued", "running"]).exists():
        if time.monotonic() > deadline:
            raise AssertionError(f"batch {batch_id} did not finish in {timeout}s\n--- worker log ---\n"
                                 f"{worker.log_tail()}")
        requeued += play.runs_sweep(stale_after=timedelta(seconds=stale))
        time.sleep(2)
    return requeued


def assert_every_turn_exactly_once(batch: Batch) -> None:
    """Completed runs only; rounds 1..n with none skipped; per buyer message one reply per recipient."""
    batch.refresh_from_db()
    assert batch.status == Batch.Status.COMPLETED
    runs = list(NegotiationRun.objects.filter(batch=batch).select_related("outcome"))
    assert len(runs) == batch.runs_requested
    assert {r.status for r in runs} == {"completed"}, [(r.status, r.error) for r in runs]
    for run in runs:
        assert run.outcome is not None
        by_round: dict[int, list[Message]] = defaultdict(list)
        for msg in Message.objects.filter(run=run):
            by_round[msg.round_no].append(msg)
        rounds = sorted(by_round)
        assert rounds == list(range(1, len(rounds) + 1)), f"run {run.pk} skipped a round: {rounds}"
        assert len(rounds) <= run.max_rounds
        for round_no in rounds:
            msgs = by_round[round_no]
            buyers = [m for m in msgs if m.sender == "buyer"]
            assert len(buyers) == 1, f"run {run.pk} round {round_no}: {len(buyers)} buyer messages"
            replies = sorted(m.sender for m in msgs if m.sender_type == "seller")
            assert replies == sorted(buyers[0].recipients), f"run {run.pk} round {round_no}: {replies}"
        assert run.outcome.rounds <= len(rounds)


def test_a_worker_killed_mid_batch_is_replaced_and_every_run_has_exactly_its_turns(
        private_redis: Any, workers: list[WorkerProcess], llm: Any) -> None:
    # given a slow provider and a batch of 8 runs in flight on worker A
    llm.configure(latency=0.25)
    a = ops_worker("crash-a", llm)
    workers.append(a)
    batch = batch_create(session=sample_session_load(), item_name="USB-C Cable", runs=8, agents=LLM, max_rounds=4)
    wait_for(lambda: Message.objects.filter(run__batch=batch).count() >= 12, timeout=60, interval=0.05,
             what="the batch to be well under way")
    # when worker A is killed with SIGKILL (no warm shutdown, no acks) ...
    a.proc.kill()
    a.proc.wait(timeout=10)
    at_kill = Message.objects.filter(run__batch=batch).count()
    unfinished = NegotiationRun.objects.filter(batch=batch, status__in=["queued", "running"]).count()
    assert unfinished > 0, "the batch finished before the kill; the test proved nothing"
    calls_at_kill = llm.stats()["total"]
    orphans = unacked_task_ids(private_redis.url)
    assert orphans, "worker A held no unacknowledged task at the kill"
    # ... and worker B is started in its place
    b = ops_worker("crash-b", llm)
    workers.append(b)
    wait_with_sweeper(batch.pk, timeout=180, worker=b)
    # (the tasks A held were redelivered to B by the broker, not only repaired by the sweeper)
    assert orphans <= received_task_ids(b), "some of the killed worker's tasks were never redelivered"
    # then the batch completes, and every run has exactly its expected turns
    assert Message.objects.filter(run__batch=batch).count() > at_kill
    assert llm.stats()["total"] > calls_at_kill
    assert_every_turn_exactly_once(batch)
    assert not NegotiationRun.objects.filter(status="running", batch=batch).exists()

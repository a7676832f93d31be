"""Queued runs whose first task was lost before any worker took it are re-queued by the sweeper,
and a re-queue of a run whose task was not lost after all plays nothing twice
(negotiation/services/sweeps.py::runs_sweep_queued and the token `play._claim` checks).

Each test has its own throwaway Redis (tests/ops/conftest.py), so losing messages from its queue
touches nobody else's; the worker is started only after the loss, as after an outage.
"""

from __future__ import annotations

from datetime import timedelta
from typing import Any

import pytest
from django.db.models import Sum
from django.utils import timezone

from mams.celery import app
from mams.queues import Queue
from negotiation.dispatch import queue_depth
from negotiation.models import Batch, Message, NegotiationRun
from negotiation.services import play, sweeps
from negotiation.services.batches import batch_create, batch_start
from negotiation.services.scenarios import sample_session_load
from tests.conftest import WorkerProcess, wait_for_batch
from tests.ops.conftest import LLM, assert_every_turn_exactly_once, ops_worker

pytestmark = [pytest.mark.django_db(transaction=True), pytest.mark.worker]
LEASE = timedelta(minutes=10)


def _batch_waiting_an_hour(runs: int) -> Batch:
    """A batch whose round-1 tasks are in the broker (batch_start played here, no worker yet), its
    runs made an hour ago: older than the lease."""
    batch = batch_create(session=sample_session_load(), item_name="USB-C Cable", runs=runs, agents=LLM, max_rounds=3)
    purge_rounds()  # the batch_start task batch_create queued: played below instead, synchronously
    batch_start(batch_id=batch.pk)
    assert queue_depth(Queue.ROUNDS) == runs
    NegotiationRun.objects.filter(batch=batch).update(created_at=timezone.now() - timedelta(hours=1))
    return batch


def purge_rounds() -> int:
    with app.connection_for_write() as conn:
        return conn.default_channel.queue_purge(Queue.ROUNDS) or 0


def no_call_was_made_twice(batch: Batch, llm: Any) -> None:
    # Every LLM call a turn made is counted on its message; a turn played twice would have called the
    # provider for a message the unique key then refused.
    recorded = Message.objects.filter(run__batch=batch).aggregate(n=Sum("llm_calls"))["n"]
    assert recorded and llm.stats()["total"] == recorded, (llm.stats()["total"], recorded)


def test_queued_runs_whose_first_task_was_lost_are_requeued_and_complete(
        private_redis: Any, workers: list[WorkerProcess], llm: Any) -> None:
    # given a batch of 4 runs whose round-1 messages were lost from the broker before any worker took them
    batch = _batch_waiting_an_hour(runs=4)
    assert purge_rounds() == 4 and queue_depth(Queue.ROUNDS) == 0
    # when the sweeper runs (twice, as two overlapping beat ticks might)
    assert sweeps.runs_sweep_queued(stale_after=LEASE) == 4
    assert sweeps.runs_sweep_queued(stale_after=LEASE) == 0
    # then each run has exactly one task again, and a worker completes the batch with exactly its turns
    assert queue_depth(Queue.ROUNDS) == 4
    worker = ops_worker("sweep-lost", llm)
    workers.append(worker)
    wait_for_batch(batch.pk, timeout=120, worker=worker)
    assert_every_turn_exactly_once(batch)
    no_call_was_made_twice(batch, llm)


def test_runs_waiting_behind_a_backlog_are_left_in_place(private_redis: Any) -> None:
    # given queued runs older than the lease whose tasks are still in the broker
    batch = _batch_waiting_an_hour(runs=3)
    # when the sweeper runs, then it re-queues nothing and marks nothing
    assert sweeps.runs_sweep_queued(stale_after=LEASE) == 0
    assert queue_depth(Queue.ROUNDS) == 3
    assert not NegotiationRun.objects.filter(batch=batch, heartbeat_at__isnull=False).exists()
    # nor does it touch runs younger than the lease, or the runs of a cancelled batch, with the queue empty
    purge_rounds()
    NegotiationRun.objects.filter(batch=batch).update(created_at=timezone.now())
    assert sweeps.runs_sweep_queued(stale_after=LEASE) == 0
    NegotiationRun.objects.filter(batch=batch).update(created_at=timezone.now() - timedelta(hours=1))
    Batch.objects.filter(pk=batch.pk).update(status=Batch.Status.CANCELLED)
    assert sweeps.runs_sweep_queued(stale_after=LEASE) == 0
    assert queue_depth(Queue.ROUNDS) == 0


def test_a_requeue_of_a_run_whose_task_was_not_lost_plays_nothing_twice(
        private_redis: Any, workers: list[WorkerProcess], llm: Any, monkeypatch: pytest.MonkeyPatch) -> None:
    # given 4 queued runs whose round-1 tasks are still there, but out of the sweeper's sight (as when a
    # worker has taken them and not started them): it believes them lost and re-queues every run
    batch = _batch_waiting_an_hour(runs=4)
    monkeypatch.setattr(sweeps, "queue_depth", lambda queue: 0)
    assert sweeps.runs_sweep_queued(stale_after=LEASE) == 4
    assert queue_depth(Queue.ROUNDS) == 8  # each run's original task and its re-queue
    # when a worker takes all 8
    worker = ops_worker("sweep-dup", llm)
    workers.append(worker)
    wait_for_batch(batch.pk, timeout=120, worker=worker)
    # then only the re-queues started the runs: every turn exactly once, and no LLM call made twice
    assert_every_turn_exactly_once(batch)
    no_call_was_made_twice(batch, llm)


def test_the_original_task_arriving_after_its_requeue_started_the_run_plays_nothing(
        private_redis: Any, monkeypatch: pytest.MonkeyPatch) -> None:
    # given a queued run whose round-1 task was not lost, re-queued anyway (the sweeper could not see it)
    batch = _batch_waiting_an_hour(runs=1)
    run = NegotiationRun.objects.get(batch=batch)
    monkeypatch.setattr(sweeps, "queue_depth", lambda queue: 0)
    assert sweeps.runs_sweep_queued(stale_after=LEASE) == 1
    token = NegotiationRun.objects.get(pk=run.pk).heartbeat_at.isoformat()
    # when the re-queued delivery starts the run ...
    claimed = play._claim(run.pk, round_no=1, requeued=token)
    assert claimed is not None and claimed[0].status == "running"
    # ... and the original, token-less delivery turns up while round 1 is still being played
    # then it plays nothing (before, it found the run running and called the LLM a second time)
    assert play._claim(run.pk, round_no=1, requeued=None) is None
    # while a redelivery of the re-queued task (its worker died) still plays
    assert play._claim(run.pk, round_no=1, requeued=token) is not None


def test_a_redelivered_round_one_task_of_a_run_never_requeued_still_plays(private_redis: Any) -> None:
    # given a run started by its own first delivery, with no re-queue
    batch = _batch_waiting_an_hour(runs=1)
    run = NegotiationRun.objects.get(batch=batch)
    assert play._claim(run.pk, round_no=1) is not None
    # when that task is delivered again (its worker died before acking), then it plays round 1 again
    claimed = play._claim(run.pk, round_no=1)
    assert claimed is not None and claimed[0].status == "running"

"""A Celery worker killed with SIGKILL in the middle of a batch loses nothing.

The worker is a real `celery worker` process (threads pool, so the process we kill is the one that
runs the tasks), on a throwaway Redis broker (tests/ops/conftest.py) with a 5-second visibility
timeout, so the tasks it had taken but not acknowledged (acks_late) come back to the next worker
within seconds. What a redelivery cannot repair (a kill between a commit and its enqueue) the
sweeper repairs; the test runs it as beat would, with a short staleness.
"""

from __future__ import annotations

from typing import Any

import pytest

from negotiation.models import Message, NegotiationRun
from negotiation.services.batches import batch_create
from negotiation.services.scenarios import sample_session_load
from tests.conftest import WorkerProcess, wait_for
from tests.ops.conftest import (
    LLM,
    assert_every_turn_exactly_once,
    ops_worker,
    received_task_ids,
    unacked_task_ids,
    wait_with_sweeper,
)

pytestmark = [pytest.mark.django_db(transaction=True), pytest.mark.worker]


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
    # (on a loaded machine the sweeper can finish the batch first; the broker still hands the orphans
    # back once their visibility timeout of 5 s has passed, and B takes them as no-ops)
    wait_for(lambda: orphans <= received_task_ids(b), timeout=30, interval=0.5,
             what="the killed worker's unacknowledged tasks to be redelivered to worker B")
    # then the batch completes, and every run has exactly its expected turns
    assert Message.objects.filter(run__batch=batch).count() > at_kill
    assert llm.stats()["total"] > calls_at_kill
    assert_every_turn_exactly_once(batch)
    assert not NegotiationRun.objects.filter(status="running", batch=batch).exists()

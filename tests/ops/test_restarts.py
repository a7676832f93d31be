"""The broker and the database restart in the middle of a batch, and nothing is lost.

Neither restart touches the shared servers: the broker is this test's own `redis-server`
(append-only, restarted with SHUTDOWN and started again on the same directory, as an operator
would), and the database blip restarts a throwaway Postgres cluster of its own.
"""

from __future__ import annotations

import re
import time
from collections import defaultdict
from typing import Any

import pytest

from negotiation.models import Message, NegotiationRun
from negotiation.services.batches import batch_create
from negotiation.services.scenarios import sample_session_load
from tests.conftest import WorkerProcess, wait_for
from tests.ops.conftest import LLM, assert_every_turn_exactly_once, ops_worker, wait_with_sweeper

pytestmark = [pytest.mark.django_db(transaction=True), pytest.mark.worker]


def test_a_broker_restart_mid_batch_loses_nothing(private_redis: Any, workers: list[WorkerProcess], llm: Any
                                                  ) -> None:
    # given a slow provider and a batch of 8 runs in flight on a worker
    llm.configure(latency=0.25)
    worker = ops_worker("broker", llm)
    workers.append(worker)
    batch = batch_create(session=sample_session_load(), item_name="USB-C Cable", runs=8, agents=LLM, max_rounds=4)
    wait_for(lambda: Message.objects.filter(run__batch=batch).count() >= 12, timeout=60, interval=0.05,
             what="the batch to be well under way")
    # when Redis (broker and limiter store) shuts down for 3 s and comes back on the same data
    private_redis.shutdown()
    assert NegotiationRun.objects.filter(batch=batch, status__in=["queued", "running"]).exists()
    time.sleep(3)
    private_redis.start()
    # then the same worker reconnects and the batch completes with every turn exactly once
    wait_with_sweeper(batch.pk, timeout=180, worker=worker)
    assert worker.proc.poll() is None
    assert_every_turn_exactly_once(batch)


def test_a_database_restart_mid_batch_is_retried_and_the_batch_completes(
        private_postgres: Any, private_redis: Any, workers: list[WorkerProcess], llm: Any) -> None:
    # given a worker and this test on a throwaway Postgres cluster, and a batch of 8 runs in flight
    llm.configure(latency=0.25)
    worker = ops_worker("dbblip", llm)
    workers.append(worker)
    batch = batch_create(session=sample_session_load(), item_name="USB-C Cable", runs=8, agents=LLM, max_rounds=4)
    wait_for(lambda: Message.objects.filter(run__batch=batch).count() >= 12, timeout=60, interval=0.05,
             what="the batch to be well under way")
    assert NegotiationRun.objects.filter(batch=batch, status__in=["queued", "running"]).exists()
    # when Postgres is restarted (fast mode: every connection is cut)
    private_postgres.restart()
    # then the turns that hit the outage retry, and the batch completes with every turn exactly once
    wait_with_sweeper(batch.pk, timeout=180, worker=worker)
    assert_every_turn_exactly_once(batch)
    assert "retrying the turn" in worker.log.read_text(), "no turn met the restart; the test proved nothing"


def test_a_long_database_outage_does_not_use_up_the_llm_retries(
        private_postgres: Any, private_redis: Any, workers: list[WorkerProcess], llm: Any) -> None:
    # given a worker whose turns may retry a provider error twice, and a batch of 6 runs in flight
    llm.configure(latency=0.25)
    worker = ops_worker("dblong", llm, {"MAMS_LLM_MAX_RETRIES": "2"})
    workers.append(worker)
    batch = batch_create(session=sample_session_load(), item_name="USB-C Cable", runs=6, agents=LLM, max_rounds=4)
    wait_for(lambda: Message.objects.filter(run__batch=batch).count() >= 8, timeout=60, interval=0.05,
             what="the batch to be well under way")
    # when Postgres is down for 8 s (the turns it catches retry after 1, 2 and 4 s: three times) ...
    private_postgres.stop()
    time.sleep(8)
    private_postgres.start_again()
    # ... and then the provider answers 429 for 15 s (Retry-After: until it recovers, so one LLM retry does)
    llm.configure(outage_for=15, outage_status=429)
    # then every run completes with every turn exactly once
    wait_with_sweeper(batch.pk, timeout=240, worker=worker)
    assert_every_turn_exactly_once(batch)
    # and some turn retried at least twice for the database before its LLM retry: with one shared
    # budget of 2 that turn's run would have failed
    retries: dict[str, list[str]] = defaultdict(list)
    for task_id, error in re.findall(r"\[([0-9a-f-]{36})\] retry: Retry in [0-9.]+s: (\w+)", worker.log.read_text()):
        retries[task_id].append(error)
    both = [kinds for kinds in retries.values() if kinds.count("OperationalError") >= 2 and
            "LLMTransientError" in kinds[kinds.index("OperationalError"):]]
    assert both, f"no turn met both outages; the test proved nothing: {dict(retries)}"


def test_a_worker_started_while_postgres_is_down_stays_up_says_so_and_plays_when_it_returns(
        private_postgres: Any, private_redis: Any, workers: list[WorkerProcess], llm: Any) -> None:
    # given Postgres is down when a worker starts
    private_postgres.stop()
    worker = ops_worker("pgdown", llm)
    workers.append(worker)
    # then the worker stays up and says in its log what is wrong, checking again with a backoff
    wait_for(lambda: worker.log.read_text().count("does not answer") >= 2, timeout=30, interval=0.5,
             what="the worker to say twice that Postgres does not answer")
    log = worker.log.read_text()
    assert "Checking again in 2 s" in log and "Checking again in 4 s" in log
    assert worker.proc.poll() is None
    # when Postgres comes back
    private_postgres.start_again()
    from django.db import connections

    connections.close_all()
    wait_for(lambda: "Postgres answers again" in worker.log.read_text(), timeout=30, interval=0.5,
             what="the worker to see Postgres again")
    # then a batch launched now is played to the end by that same worker process
    batch = batch_create(session=sample_session_load(), item_name="USB-C Cable", runs=2, agents=LLM, max_rounds=3)
    wait_with_sweeper(batch.pk, timeout=120, worker=worker)
    assert_every_turn_exactly_once(batch)
    assert worker.proc.poll() is None

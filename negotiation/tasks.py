"""Celery entry points: thin, by id, each stating why a redelivery is safe.

Retries: transient LLM errors (429, 5xx, timeouts, connection errors) retry with exponential
backoff and jitter, waiting at least the provider's Retry-After, MAMS_LLM_MAX_RETRIES times. Postgres
and Redis errors (a restart, a failover) have a budget of their own, MAMS_INFRA_MAX_RETRIES with a
backoff capped at a minute (about an hour in all), so a long database restart does not use up the
LLM retries. When either budget runs out, or on any error no retry will fix, the run ends `failed`
with a readable reason instead of hanging.
"""

from __future__ import annotations

import logging
import random
from datetime import timedelta
from typing import Any

from celery import Task, shared_task
from django.conf import settings
from django.db import InterfaceError, OperationalError
from kombu.exceptions import OperationalError as KombuOperationalError
from redis.exceptions import RedisError

from mams.queues import Queue
from negotiation import tts
from negotiation.agents.gateway import LLMError, LLMTransientError
from negotiation.services import batches, lifecycle, play, reflect, sweeps, voice

log = logging.getLogger(__name__)
INFRA_ERRORS = (OperationalError, InterfaceError, RedisError, KombuOperationalError)
INFRA_BACKOFF_CAP = 60


def _backoff(retries: int, retry_after: float | None) -> float:
    base = min(2 ** retries, 60) * (1 + random.random())
    return max(base, retry_after or 0)


def infra_backoff(retries: int) -> float:
    """Seconds before infrastructure retry `retries + 1`: 1, 2, 4 ... capped at 60, plus up to 25% jitter."""
    return min(2 ** retries, INFRA_BACKOFF_CAP) * (1 + random.random() / 4)


def infra_budget_minutes(retries: int) -> int:
    return round(sum(min(2 ** n, INFRA_BACKOFF_CAP) for n in range(retries)) / 60)


def _run_guarded(task: Task, fn: Any, infra_retries: int, **kwargs: Any) -> None:
    run_id = kwargs["run_id"]
    # Celery counts a task's retries of both kinds; the infrastructure ones travel in the task's
    # kwargs, so each kind is held to its own budget.
    llm_retries = task.request.retries - infra_retries
    try:
        fn(**kwargs)
    except LLMTransientError as exc:
        if llm_retries >= settings.MAMS_LLM_MAX_RETRIES:
            lifecycle.run_fail(run_id=run_id, reason=f"gave up after {llm_retries} retries: {exc}")
            return
        raise task.retry(exc=exc, countdown=_backoff(llm_retries, exc.retry_after)) from exc
    except LLMError as exc:
        lifecycle.run_fail(run_id=run_id, reason=str(exc))
    except INFRA_ERRORS as exc:
        # Postgres or Redis (broker, limiter) went away: a restart, a failover. Every committed turn is
        # in Postgres, so wait and retry the whole turn. If even the retry cannot be queued (Redis
        # still down), the delivery is not acknowledged and comes back, or the sweeper re-queues
        # the run once its heartbeat is stale. Only an outage longer than the whole budget fails
        # the run; if Postgres itself is what stays down, even that cannot be written, and the
        # sweeper picks the run up once it is back.
        if infra_retries >= settings.MAMS_INFRA_MAX_RETRIES:
            lifecycle.run_fail(run_id=run_id, reason=(
                f"gave up after {infra_retries} retries over about {infra_budget_minutes(infra_retries)} min "
                f"waiting for the database or Redis ({exc.__class__.__name__}: {str(exc).strip()[:300]}). "
                "Check that Postgres and Redis are up; MAMS_INFRA_MAX_RETRIES sets how long a turn waits."))
            return
        log.warning("run %s: %s; retrying the turn (%d of %d)", run_id, exc.__class__.__name__, infra_retries + 1,
                    settings.MAMS_INFRA_MAX_RETRIES)
        raise task.retry(exc=exc, countdown=infra_backoff(infra_retries),
                         kwargs={**(task.request.kwargs or {}), "infra_retries": infra_retries + 1}) from exc
    except Exception as exc:
        # A bug must not leave a run "running" forever: fail it with the reason, then re-raise for Sentry.
        log.exception("run %s: unexpected error", run_id)
        lifecycle.run_fail(run_id=run_id, reason=f"internal error: {exc.__class__.__name__}: {exc}")
        raise


@shared_task(bind=True, name="negotiation.round", queue=Queue.ROUNDS, acks_late=True, max_retries=None,
             soft_time_limit=600, time_limit=660)
def round_task(self: Task, run_id: str, round_no: int, requeued: str | None = None, infra_retries: int = 0) -> None:
    """The buyer's turn of one round, then the fan-out. Safe to redeliver: the (run, round, buyer)
    message is unique and the fan-out only enqueues sellers that have not answered. `requeued`: the
    sweeper's token for a queued run it re-queued (only that delivery may start the run)."""
    _run_guarded(self, play.round_play, infra_retries, run_id=run_id, round_no=round_no, requeued=requeued)


@shared_task(bind=True, name="negotiation.seller_turn", queue=Queue.AGENTS, acks_late=True, max_retries=None,
             soft_time_limit=600, time_limit=660)
def seller_turn_task(self: Task, run_id: str, round_no: int, seller_id: str, infra_retries: int = 0) -> None:
    """One seller answers the buyer. Safe to redeliver: the (run, round, seller) message is unique
    and advancing the round is a conditional update that only one delivery wins."""
    _run_guarded(self, play.seller_turn, infra_retries, run_id=run_id, round_no=round_no, seller_id=seller_id)


@shared_task(name="negotiation.batch_start", queue=Queue.ROUNDS, acks_late=True, autoretry_for=INFRA_ERRORS,
             retry_backoff=True, retry_backoff_max=60, retry_jitter=True, max_retries=30)
def batch_start_task(batch_id: str) -> None:
    """Queue round 1 of a batch's runs. Safe to redeliver or retry: a round task for a started run is a
    no-op. Retried through a database or broker outage: nothing else would start the batch's runs."""
    batches.batch_start(batch_id=batch_id)


@shared_task(name="negotiation.sweep", queue=Queue.MAINTENANCE, acks_late=True)
def sweep_task() -> int:
    """Backstop: re-queue running runs with a stale heartbeat, and queued runs whose first task was lost;
    close outside-buyer rooms idle longer than MAMS_ROOM_IDLE_SECONDS. Safe to repeat: round tasks are
    idempotent, and a queued run's re-queue and a room's end are conditional."""
    stale = timedelta(seconds=settings.MAMS_STALE_RUN_SECONDS)
    return (sweeps.runs_sweep(stale_after=stale) + sweeps.runs_sweep_queued(stale_after=stale)
            + sweeps.rooms_expire(idle_after=timedelta(seconds=settings.MAMS_ROOM_IDLE_SECONDS)))


@shared_task(bind=True, name="negotiation.reflect", queue=Queue.ANALYSIS, acks_late=True, max_retries=None,
             soft_time_limit=300, time_limit=330)
def reflect_task(self: Task, run_id: str, infra_retries: int = 0) -> None:
    """After a reflect sequence's run: utilities, the coach's notes, the next run. Safe to redeliver:
    the step is recorded by a conditional update only one delivery wins, and the next run is unique
    per (sequence, index). On the analysis queue, so a coach never delays a negotiation turn.

    Transient coach errors retry with backoff and jitter; after MAMS_LLM_MAX_RETRIES the agents play
    on without new notes (counted). Any other error ends the sequence failed, with the reason.
    """
    llm_retries = self.request.retries - infra_retries  # each kind on its own budget, as in _run_guarded
    try:
        reflect.sequence_step_reflect(run_id=run_id, give_up=llm_retries >= settings.MAMS_LLM_MAX_RETRIES)
    except LLMTransientError as exc:
        raise self.retry(exc=exc, countdown=_backoff(llm_retries, exc.retry_after)) from exc
    except INFRA_ERRORS as exc:
        raise self.retry(exc=exc, countdown=infra_backoff(infra_retries),
                         kwargs={**(self.request.kwargs or {}), "infra_retries": infra_retries + 1}) from exc
    except Exception as exc:
        log.exception("run %s: the reflection failed", run_id)
        reflect.sequence_step_fail(run_id=run_id, reason=f"{exc.__class__.__name__}: {exc}")
        raise


@shared_task(name="negotiation.reflect_sweep", queue=Queue.MAINTENANCE, acks_late=True)
def reflect_sweep_task() -> int:
    """Backstop: re-queue reflections that were never queued. Safe to repeat: a reflection is idempotent."""
    return reflect.sequences_sweep(stale_after=timedelta(seconds=settings.MAMS_STALE_RUN_SECONDS))


@shared_task(bind=True, name="negotiation.speak", queue=Queue.VOICE, acks_late=True, max_retries=None,
             soft_time_limit=120, time_limit=150)
def speak_task(self: Task, message_id: str) -> None:
    """Speak one seller reply (negotiation/services/voice.py). Safe to redeliver: a reply with an audio
    row is skipped, and the row is one per message. On the voice queue, so a slow TTS never delays a turn.
    A 429, 5xx or timeout retries with backoff MAMS_VOICE_MAX_RETRIES times; then, or on any other error,
    the reply stays silent with the reason recorded."""

    try:
        voice.message_speak(message_id=message_id)
    except tts.TTSError as exc:
        if exc.transient and self.request.retries < settings.MAMS_VOICE_MAX_RETRIES:
            raise self.retry(exc=exc, countdown=_backoff(self.request.retries, None)) from exc
        voice.message_speak_fail(message_id=message_id, error=str(exc))
    except Exception as exc:
        log.exception("message %s: speech failed", message_id)
        voice.message_speak_fail(message_id=message_id, error=f"{exc.__class__.__name__}: {exc}")

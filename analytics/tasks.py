"""Celery entry points of analytics: the post-deal analysis, on its own queue.

The analysis queue is separate from `rounds` and `agents`, so a slow or failing analyst never
delays a negotiation turn; the run is already `completed` when this task is queued (on commit of
its Outcome), so nothing here can fail it.
"""

from __future__ import annotations

import logging
import random

from celery import Task, shared_task
from django.conf import settings

from analytics import analysis, archive
from analytics.benchmarks.services import benchmark_schedule_fire, benchmarks_finish_due
from analytics.galileo_scores import galileo_scores_sweep
from mams.queues import Queue
from negotiation.agents.gateway import LLMTransientError

log = logging.getLogger(__name__)


def _backoff(retries: int, retry_after: float | None) -> float:
    return max(min(2 ** retries, 120) * (1 + random.random()), retry_after or 0)


@shared_task(bind=True, name="analytics.analyse_run", queue=Queue.ANALYSIS, acks_late=True, max_retries=None,
             soft_time_limit=300, time_limit=330)
def analyse_run_task(self: Task, run_id: str) -> None:
    """Analyse one finished run. Safe to redeliver: a run already analysed is left as it is, and the
    analysis row is written with update_or_create keyed on the run.

    Transient analyst errors retry with exponential backoff and jitter (at least the provider's
    Retry-After); after MAMS_LLM_MAX_RETRIES the local scorers give the verdict. Any other error is
    stored on the analysis row and reported, never raised into the run.
    """
    try:
        analysis.run_analyse(run_id=run_id, give_up=self.request.retries >= settings.MAMS_LLM_MAX_RETRIES)
    except LLMTransientError as exc:
        raise self.retry(exc=exc, countdown=_backoff(self.request.retries, exc.retry_after)) from exc
    except Exception as exc:
        log.exception("run %s: the analysis failed", run_id)
        analysis.run_analysis_fail(run_id=run_id, error=f"{exc.__class__.__name__}: {exc}")
        raise


@shared_task(name="analytics.galileo_scores", queue=Queue.MAINTENANCE, acks_late=True, soft_time_limit=240,
             time_limit=270)
def galileo_scores_task() -> int:
    """Read Galileo's scores of recent traces back. Safe to repeat: runs with scores are skipped."""

    return galileo_scores_sweep()


@shared_task(bind=True, name="analytics.run_benchmark_schedule", queue=Queue.MAINTENANCE, acks_late=True,
             soft_time_limit=300, time_limit=330)
def run_benchmark_schedule_task(self: Task, schedule_id: int) -> str | None:
    """What beat calls for a BenchmarkSchedule: launch its suite as ordinary batches.

    Safe to redeliver: the benchmark run is keyed by this task's id (BenchmarkRun.trigger), so a
    redelivered message returns the run it made instead of launching another.
    """

    run = benchmark_schedule_fire(schedule_id=schedule_id, trigger=self.request.id or "")
    return None if run is None else str(run.pk)


@shared_task(name="analytics.benchmark_finish_sweep", queue=Queue.MAINTENANCE, acks_late=True, soft_time_limit=240,
             time_limit=270)
def benchmark_finish_sweep_task() -> int:
    """Finish benchmark runs whose batches have all ended, and check them for drift.

    Safe to repeat: finishing is a conditional update of `finished_at`, so only one call wins.
    """

    return benchmarks_finish_due()


@shared_task(name="analytics.archive_sweep", queue=Queue.MAINTENANCE, acks_late=True, soft_time_limit=120,
             time_limit=150)
def archive_sweep_task() -> int:
    """Backstop for archive tasks that were never queued (see archive.archive_sweep). Safe to repeat."""

    if not settings.MAMS_ARCHIVE_ENABLED:
        return 0
    return archive.archive_sweep(older_than_seconds=settings.MAMS_STALE_RUN_SECONDS)


@shared_task(bind=True, name="analytics.archive_run", queue=Queue.ARCHIVE, acks_late=True, max_retries=None,
             soft_time_limit=120, time_limit=150)
def archive_run_task(self: Task, run_id: str, audio_waits: int = 0) -> None:
    """Write an ended run's audit archive (analytics/archive.py). Safe to redeliver: the object's bytes are
    the same each time and an object with the same SHA-256 is not written again.

    On its own queue, after the run has ended, so the store can never fail or delay a negotiation. A store
    error retries with backoff (2, 4, 8 ... s, capped at 5 min, with jitter) MAMS_ARCHIVE_MAX_RETRIES times,
    then the error is recorded on the run (the batch page shows it; `manage.py archive_backfill` retries).
    While the run's seller audio is still being made the write waits for it (at most ~2 min).
    """

    try:
        archive.run_archive(run_id=run_id, wait_for_audio=audio_waits < 60)
    except archive.AudioPending as exc:  # counted apart from the store's retries, as the turns' budgets are
        raise self.retry(exc=exc, countdown=2, kwargs={"run_id": run_id, "audio_waits": audio_waits + 1}) from exc
    except archive.ArchiveConfigError as exc:  # no retry fixes a bad URL
        archive.run_archive_fail(run_id=run_id, error=str(exc))
    except Exception as exc:
        tries = self.request.retries - audio_waits
        error = archive.describe(exc)
        if tries >= settings.MAMS_ARCHIVE_MAX_RETRIES:
            log.warning("run %s: archive failed after %d retries: %s", run_id, tries, error)
            archive.run_archive_fail(run_id=run_id, error=f"gave up after {tries} retries: {error}")
            return
        archive.run_archive_note(run_id=run_id, error=f"retry {tries + 1} of {settings.MAMS_ARCHIVE_MAX_RETRIES}: "
                                                      f"{error}")
        raise self.retry(exc=exc, countdown=min(2 ** (tries + 1), 300) * (1 + random.random() / 4)) from exc

"""Benchmark writes: load a suite into the database, launch a benchmark run, finish it, and keep
schedules in step with django-celery-beat.

Everything a benchmark makes is ordinary: its scenarios are sessions imported with the REST API's
`session_import`, and its work is batches made by `batch_create`, so benchmark runs show on the
same pages, in the same API and the same CSV exports as any other batch.
"""

from __future__ import annotations

import hashlib
import json
import logging
from typing import Any

from django.core.exceptions import ValidationError
from django.db import IntegrityError, transaction
from django.utils import timezone
from django_celery_beat.models import CrontabSchedule, PeriodicTask

from analytics.benchmarks.drift import drift_check, drift_report
from analytics.benchmarks.suite_files import SuiteError, SuiteFile, canonical_json, load_suite
from analytics.benchmarks.validation import (
    BENCH_ANALYST,
    DEFAULT_TEMPERATURE,
    SCHEDULE_CHECKS,
    cron_fields,
    resolve_buyer,
    resolve_opponents,
)
from analytics.models import BenchmarkBatch, BenchmarkRun, BenchmarkSchedule, Suite, SuiteScenario
from mams.queues import Queue
from negotiation.agents.config import CANARIES
from negotiation.agents.fingerprint import played_fingerprint
from negotiation.models import Batch, Session
from negotiation.services.batches import _check_active_batches, batch_create, batches_status
from negotiation.services.errors import LimitExceeded
from negotiation.services.sessions import session_export, session_import

log = logging.getLogger(__name__)
SCHEDULE_TASK = "analytics.run_benchmark_schedule"


# --- suites --------------------------------------------------------------------------------------

def _changed(existing: Suite, sf: SuiteFile) -> SuiteError:
    return SuiteError(
        f"suite {sf.label} is already loaded with different content (database {existing.content_hash[:12]}, "
        f"files {sf.content_hash[:12]}). A loaded version never changes, so results stay comparable: copy "
        f"suites/{sf.label}/ to {sf.name}-v{sf.version + 1}/, set \"version\": {sf.version + 1} in its "
        "suite.json, and load that (or undo the edit).")


def suite_load(*, ref: str) -> tuple[Suite, bool]:
    """Import a suite version from its files: (suite, created). Idempotent.

    The same version with the same content is a no-op; with other content it is refused (SuiteError)
    and nothing is written. Two concurrent first loads meet the (name, version) unique constraint:
    the loser rolls back and returns the winner's row.
    """
    sf = load_suite(ref)
    existing = Suite.objects.filter(name=sf.name, version=sf.version).first()
    if existing is not None:
        if existing.content_hash != sf.content_hash:
            raise _changed(existing, sf)
        return existing, False
    try:
        with transaction.atomic():
            suite = Suite.objects.create(name=sf.name, version=sf.version, description=sf.description,
                                         content_hash=sf.content_hash, rules=sf.rules)
            for position, sc in enumerate(sf.scenarios):
                session = session_import(document=sc.parsed, owner=None)
                session.frozen_by = f"benchmark suite {suite.label}, scenario {sc.slug}"
                session.save(update_fields=["frozen_by"])
                SuiteScenario.objects.create(suite=suite, position=position, slug=sc.slug, title=sc.title,
                                             session=session, items=sc.items, session_hash=session_hash(session))
    except IntegrityError:
        existing = Suite.objects.filter(name=sf.name, version=sf.version).first()
        if existing is None:
            raise
        if existing.content_hash != sf.content_hash:
            raise _changed(existing, sf) from None
        return existing, False
    return suite, True


def session_hash(session: Session) -> str:
    """sha256 of a session's content as exported (demands, sellers, inventory, weights, styles)."""
    return hashlib.sha256(canonical_json(session_export(session=session)).encode()).hexdigest()


def suite_sessions_verify(*, suite: Suite) -> None:
    """Refuse a launch when a suite's session no longer holds what the suite recorded (an edit that went
    around the services and the admin, e.g. raw SQL): results would not be comparable. A scenario loaded
    before hashes were recorded gets its hash now, from its current content."""
    for scenario in SuiteScenario.objects.filter(suite=suite).select_related("session"):
        now = session_hash(scenario.session)
        if not scenario.session_hash:
            SuiteScenario.objects.filter(pk=scenario.pk, session_hash="").update(session_hash=now)
        elif now != scenario.session_hash:
            raise SuiteError(
                f"the session of {suite.label}/{scenario.slug} was changed in the database since the suite was "
                f"loaded (its content no longer matches the recorded hash {scenario.session_hash[:12]}…), so "
                "results would not be comparable with earlier runs. Restore it, or copy the suite to a new "
                "version and load that.")


# --- benchmark runs ------------------------------------------------------------------------------

def benchmark_run_create(*, suite: str | Suite, buyers: list[dict[str, Any]], opponents: dict[str, Any],
                         runs_per_scenario: int, base_seed: int = 0, owner: Any = None,
                         schedule: BenchmarkSchedule | None = None, max_rounds: int = 5,
                         trigger: str = "", canaries: bool = True) -> BenchmarkRun:
    """Launch a suite: one batch per scenario × buyer configuration, all against the same opponents.

    Every batch has the same base seed, so run i of every buyer meets the same scenario with the
    same seed (paired by seed). Buyer specs that resolve to the same configuration run once. Errors
    (a bad spec, a full quota) are raised before anything is written; batches start after commit.
    A `trigger` (the beat task's id) makes a redelivered scheduled task return the run it made.

    The exploit canaries (negotiation/agents/canaries.py) run beside the buyers on the same seeds,
    so every leaderboard table has them as reference rows. They make no LLM call and their batches
    are shared (owner None), so they never count against a user's quota of active batches. The
    batches play under the suite's rules, and the fingerprints recorded here include them, as the
    runs' do.
    """
    if trigger:
        found = BenchmarkRun.objects.filter(trigger=trigger).first()
        if found is not None:
            return found
    if isinstance(suite, str):
        suite, _ = suite_load(ref=suite)
    suite_sessions_verify(suite=suite)
    scenarios = list(SuiteScenario.objects.filter(suite=suite).select_related("session"))
    resolved: dict[str, tuple[dict[str, Any], dict[str, Any]]] = {}  # fingerprint -> (spec, resolved agent)
    for spec in buyers:
        agent = resolve_buyer(spec)
        resolved.setdefault(played_fingerprint(agent, rules=suite.rules), (spec, agent))
    reference: set[str] = set()
    for name in CANARIES if canaries else ():
        agent = resolve_buyer({"strategy": name})
        fingerprint = played_fingerprint(agent, rules=suite.rules)
        if fingerprint not in resolved:
            resolved[fingerprint] = ({"strategy": name}, agent)
            reference.add(fingerprint)
    seller = resolve_opponents(opponents)
    with transaction.atomic():
        _check_quota(owner, len(scenarios) * (len(resolved) - len(reference)))
        run = BenchmarkRun.objects.create(
            suite=suite, schedule=schedule, owner=owner, opponents=seller,
            seller_fingerprint=played_fingerprint(seller, rules=suite.rules),
            buyers=[agent for _, agent in resolved.values()], runs_per_scenario=runs_per_scenario,
            max_rounds=max_rounds, base_seed=base_seed, trigger=trigger)
        for sc in scenarios:
            for fingerprint, (spec, _) in resolved.items():
                batch = batch_create(session=sc.session, item_name=sc.items[0] if len(sc.items) == 1 else None,
                                     runs=runs_per_scenario, temperature=DEFAULT_TEMPERATURE,
                                     agents={"buyer": spec, "seller": opponents, "analyst": BENCH_ANALYST},
                                     max_rounds=max_rounds, base_seed=base_seed,
                                     owner=None if fingerprint in reference else owner, rules=suite.rules)
                BenchmarkBatch.objects.create(benchmark=run, batch=batch, scenario=sc, buyer_fingerprint=fingerprint)
    return run


def _check_quota(owner: Any, batches: int) -> None:
    """A user's benchmark must fit their active-batch quota as a whole, not fail half-way."""
    def refuse(active: int, cap: int) -> None:
        raise LimitExceeded(f"This benchmark needs {batches} batches and you have {active} queued or running; the "
                            f"limit is {cap} (MAMS_MAX_ACTIVE_BATCHES_PER_USER). Run it without an owner (shared), "
                            "with fewer buyers, or raise the limit.", field="buyers")

    _check_active_batches(owner, needed=batches, refusal=refuse)


def benchmark_finish(*, benchmark_id: Any) -> bool:
    """Mark a benchmark run finished once every batch has ended, and check drift; True if this call did.

    The conditional update and the drift flags are one transaction, so exactly one caller (the
    sweeper, or `run_suite --wait`) finishes a run, and a crash leaves it for the next sweep.
    """
    if Batch.objects.filter(benchmark_entry__benchmark_id=benchmark_id, finished_at__isnull=True).exists():
        return False
    with transaction.atomic():
        if not BenchmarkRun.objects.filter(pk=benchmark_id, finished_at__isnull=True).update(
                finished_at=timezone.now()):
            return False
        flags = drift_check(benchmark=BenchmarkRun.objects.select_related("suite").get(pk=benchmark_id))
        ids = [f.pk for f in flags]
        transaction.on_commit(lambda: drift_report(flag_ids=ids))
    return True


def benchmarks_finish_due() -> int:
    """The backstop sweep: finish every unfinished benchmark run whose batches have all ended."""
    ids = BenchmarkRun.objects.filter(finished_at__isnull=True).exclude(
        entries__batch__finished_at__isnull=True).values_list("pk", flat=True)
    return sum(benchmark_finish(benchmark_id=pk) for pk in list(ids))


# --- schedules -----------------------------------------------------------------------------------

def _sync_periodic_task(schedule: Any, periodic_task_model: Any, crontab_model: Any) -> Any:
    """Create or update the schedule's PeriodicTask and its CrontabSchedule (UTC).

    Takes the model classes so the data migration can call it with its historical models.
    """
    crontab, _ = crontab_model.objects.get_or_create(**cron_fields(schedule.cron), timezone="UTC")
    fields = {"name": f"benchmark schedule {schedule.pk}: {schedule.name}"[:200], "task": SCHEDULE_TASK,
              "crontab": crontab, "interval": None, "args": json.dumps([schedule.pk]), "kwargs": "{}",
              "queue": Queue.MAINTENANCE.value, "enabled": schedule.enabled,
              "description": f"Runs benchmark suite {schedule.suite} (analytics.BenchmarkSchedule {schedule.pk})."}
    task = schedule.periodic_task_id and periodic_task_model.objects.filter(pk=schedule.periodic_task_id).first()
    if task:
        for key, value in fields.items():
            setattr(task, key, value)
        task.save()
    else:
        task = periodic_task_model.objects.create(**fields)
    return task


def benchmark_schedule_validate(*, schedule: BenchmarkSchedule) -> None:
    """Every check of a schedule, each error on its field: the model's own (`full_clean`) and the
    suite, agent spec and cron checks (SCHEDULE_CHECKS), which resolve agents as a batch would."""
    errors: dict[str, list[str]] = {}
    for field, check in SCHEDULE_CHECKS.items():
        value = getattr(schedule, field)
        if field == "buyers" and value in ([], "", None):
            continue  # full_clean says it: blank, in BUYERS_HINT's words
        try:
            check(value)
        except ValidationError as exc:
            errors[field] = exc.messages
    try:
        schedule.full_clean(exclude=list(errors))
    except ValidationError as exc:
        for field, messages in exc.message_dict.items():
            errors.setdefault(field, []).extend(messages)
    if errors:
        raise ValidationError(errors)


@transaction.atomic
def benchmark_schedule_save(*, schedule: BenchmarkSchedule) -> BenchmarkSchedule:
    """Validate and save a schedule, then create or update the PeriodicTask beat runs it by."""
    benchmark_schedule_validate(schedule=schedule)
    schedule.save()
    task = _sync_periodic_task(schedule, PeriodicTask, CrontabSchedule)
    if schedule.periodic_task_id != task.pk:
        schedule.periodic_task = task
        schedule.save(update_fields=["periodic_task"])
    return schedule


@transaction.atomic
def benchmark_schedule_delete(*, schedule: BenchmarkSchedule) -> None:
    """Delete a schedule and its PeriodicTask; benchmark runs it made are kept."""
    task_id = schedule.periodic_task_id
    schedule.delete()
    if task_id:
        PeriodicTask.objects.filter(pk=task_id).delete()


def benchmark_schedule_fire(*, schedule_id: int, trigger: str = "") -> BenchmarkRun | None:
    """What beat runs: launch the schedule's suite now. A disabled or deleted schedule does nothing.

    A failure (a profile that lost its key, a suite edited without a new version) is stored on the
    schedule for the admin and raised, so the task's error reaches the logs and Sentry.
    """
    schedule = BenchmarkSchedule.objects.filter(pk=schedule_id, enabled=True).first()
    if schedule is None:
        return None
    try:
        run = benchmark_run_create(suite=schedule.suite, buyers=schedule.buyers, opponents=schedule.opponents,
                                   runs_per_scenario=schedule.runs_per_scenario, base_seed=schedule.base_seed,
                                   owner=schedule.owner, schedule=schedule, max_rounds=schedule.max_rounds,
                                   trigger=trigger)
    except Exception as exc:
        BenchmarkSchedule.objects.filter(pk=schedule_id).update(last_fired_at=timezone.now(),
                                                                last_error=f"{exc.__class__.__name__}: {exc}"[:2000])
        raise
    BenchmarkSchedule.objects.filter(pk=schedule_id).update(last_fired_at=timezone.now(), last_error="")
    return run


def benchmark_status(benchmark: BenchmarkRun) -> str:
    """queued, running, completed, partly_failed, failed or cancelled, from the run's batches (never
    stored; the rule is `batches_status`)."""
    return batches_status(Batch.objects.filter(benchmark_entry__benchmark=benchmark).values_list("status", flat=True))


__all__ = ["benchmark_finish", "benchmark_run_create", "benchmark_schedule_delete", "benchmark_schedule_fire",
           "benchmark_schedule_save", "benchmark_status", "benchmarks_finish_due", "suite_load"]

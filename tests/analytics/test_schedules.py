"""Benchmark schedules: validation with clear errors, the PeriodicTask kept in step, the nightly default
from the data migration, and a schedule fired through django-celery-beat's DatabaseScheduler entry so a
real Celery worker runs the benchmark and a leaderboard row appears."""

from __future__ import annotations

import importlib
from typing import Any

import pytest
from django.core.exceptions import ValidationError
from django.test import Client

from analytics.benchmarks.services import (
    SCHEDULE_TASK,
    benchmark_schedule_delete,
    benchmark_schedule_save,
    benchmark_schedule_validate,
)
from analytics.models import BenchmarkRun, BenchmarkSchedule
from tests.analytics.benchmark_helpers import BOULWARE, LINEAR, LLM_BUYER
from tests.conftest import wait_for, wait_for_batch
from tests.factories import UserFactory


def schedule_of(**overrides: Any) -> BenchmarkSchedule:
    fields = {"name": "test nightly", "suite": "core", "buyers": [LLM_BUYER, BOULWARE], "opponents": LINEAR,
              "runs_per_scenario": 1, "max_rounds": 4, "cron": "30 2 * * *"}
    return BenchmarkSchedule(**{**fields, **overrides})


@pytest.mark.django_db
def test_saving_a_schedule_creates_and_updates_its_beat_task():
    from django_celery_beat.models import PeriodicTask

    # given a schedule saved through the service
    schedule = benchmark_schedule_save(schedule=schedule_of())
    task = PeriodicTask.objects.get(pk=schedule.periodic_task_id)
    # then beat has a task calling the thin Celery task with the schedule's id, at 02:30 UTC
    assert task.task == SCHEDULE_TASK and task.args == f"[{schedule.pk}]" and task.queue == "maintenance"
    assert (task.crontab.minute, task.crontab.hour, str(task.crontab.timezone)) == ("30", "2", "UTC")
    assert task.enabled
    # when its cron changes and it is disabled, the same task follows
    schedule.cron, schedule.enabled = "0 */6 * * 1-5", False
    benchmark_schedule_save(schedule=schedule)
    task.refresh_from_db()
    assert (task.crontab.minute, task.crontab.hour, task.crontab.day_of_week) == ("0", "*/6", "1-5")
    assert not task.enabled and PeriodicTask.objects.filter(task=SCHEDULE_TASK, pk=task.pk).count() == 1
    # and deleting the schedule deletes its task
    benchmark_schedule_delete(schedule=schedule)
    assert not PeriodicTask.objects.filter(pk=task.pk).exists()


@pytest.mark.django_db
@pytest.mark.parametrize(("field", "value", "message"), [
    ("cron", "30 2 * *", "has 5 fields"),
    ("cron", "61 2 * * *", "the minute field '61' is not valid"),
    ("cron", "30 25 * * *", "the hour field '25' is not valid"),
    ("cron", "every night", "has 5 fields"),
    ("buyers", [], "at least one buyer spec"),
    ("buyers", "local", "at least one buyer spec"),
    ("buyers", [{"strategy": "greedy"}], "buyer 1: strategy"),
    ("buyers", [BOULWARE, {"profile": "martian"}], "buyer 2: profile: unknown profile 'martian'"),
    ("buyers", [{"profile": "local", "model": "gpt-5"}], "buyer 1: unknown model 'gpt-5'"),
    ("buyers", [{"profile": "local", "colour": "red"}], "buyer 1: colour: Extra inputs are not permitted"),
    ("buyers", [BOULWARE, {"strategy": "boulware", "temperature": 0.7}], "resolve to the same configuration"),
    ("opponents", [LINEAR], "opponents: must be an object"),
    ("opponents", {"temperature": 5}, "opponents: temperature"),
    ("suite", "nope", "unknown suite 'nope'"),
])
def test_bad_schedule_input_is_refused_on_its_field(field: str, value: Any, message: str):
    with pytest.raises(ValidationError) as info:
        benchmark_schedule_save(schedule=schedule_of(**{field: value}))
    assert message in " ".join(info.value.message_dict[field]), info.value.message_dict


@pytest.mark.django_db
def test_the_admin_edits_schedules_and_shows_errors_on_the_field():
    from django_celery_beat.models import PeriodicTask

    admin = UserFactory(username="admin5", is_staff=True, is_superuser=True)
    admin.save()
    web = Client()
    web.force_login(admin)
    form = {"name": "from admin", "suite": "core-v1", "buyers": '[{"strategy": "linear"}]',
            "opponents": '{"strategy": "boulware"}', "runs_per_scenario": "2", "max_rounds": "5", "base_seed": "0",
            "cron": "30 2 * * 9", "enabled": "on"}
    bad = web.post("/admin/analytics/benchmarkschedule/add/", form)
    assert bad.status_code == 200 and "the day of week field &#x27;9&#x27; is not valid" in bad.content.decode()
    good = web.post("/admin/analytics/benchmarkschedule/add/", {**form, "cron": "15 3 * * *"})
    assert good.status_code == 302, good.content.decode()[:3000]
    schedule = BenchmarkSchedule.objects.get(name="from admin")
    assert PeriodicTask.objects.get(pk=schedule.periodic_task_id).crontab.hour == "3"
    assert web.get("/admin/analytics/benchmarkschedule/").status_code == 200
    assert web.get(f"/admin/analytics/benchmarkschedule/{schedule.pk}/change/").status_code == 200


@pytest.mark.django_db
def test_the_data_migration_creates_the_nightly_schedule():
    from django.apps import apps
    from django_celery_beat.models import PeriodicTask

    migration = importlib.import_module("analytics.migrations.0003_nightly_benchmark")
    # given the migration's rows (a transactional test elsewhere may have flushed them), made afresh
    migration.remove(apps, None)
    migration.create(apps, None)
    migration.create(apps, None)  # idempotent
    nightly = BenchmarkSchedule.objects.get(name="nightly core")
    task = PeriodicTask.objects.get(pk=nightly.periodic_task_id)
    assert nightly.enabled and nightly.suite == "core" and nightly.cron == "30 2 * * *"
    assert (task.crontab.minute, task.crontab.hour, task.task) == ("30", "2", SCHEDULE_TASK)
    assert {b.get("strategy", "llm") for b in nightly.buyers} == {"llm", "boulware", "linear", "conceder"}
    assert nightly.opponents["profile"] == "local" and nightly.opponents["model"]  # pinned, not "whatever is default"
    benchmark_schedule_validate(schedule=nightly)  # the migration's rows pass the admin's own validation


@pytest.mark.worker
@pytest.mark.django_db(transaction=True)
def test_a_scheduled_benchmark_fires_through_beat_and_lands_on_the_leaderboard(celery_worker: Any, llm: Any):
    from django_celery_beat.models import PeriodicTask
    from django_celery_beat.schedulers import DatabaseScheduler

    from analytics.benchmarks.leaderboard import leaderboard
    from mams.celery import app

    # given a schedule due every minute (so beat's hour pre-filter keeps it in its schedule)
    schedule = benchmark_schedule_save(schedule=schedule_of(cron="* * * * *"))
    task = PeriodicTask.objects.get(pk=schedule.periodic_task_id)
    # when beat's DatabaseScheduler applies its entry for the schedule's PeriodicTask
    scheduler = DatabaseScheduler(app=app)
    entry = scheduler.schedule[task.name]
    assert entry.task == SCHEDULE_TASK and entry.args == [schedule.pk]
    scheduler.apply_entry(entry, producer=None)
    # then the worker launches the benchmark as ordinary batches and plays them
    wait_for(lambda: BenchmarkRun.objects.filter(schedule=schedule).exists(), timeout=60,
             what=f"the benchmark run (worker log: {celery_worker.log})")
    run = BenchmarkRun.objects.get(schedule=schedule)
    assert run.suite.label == "core-v2" and run.suite.rules == "hidden"  # "core" is the latest version
    assert run.entries.count() == 40  # 8 scenarios × (2 buyers + 3 exploit canaries)
    for batch_id in run.entries.values_list("batch_id", flat=True):
        wait_for_batch(batch_id, timeout=180, worker=celery_worker)
    # and the sweeper task (beat's benchmark-finish entry) finishes it on the worker
    app.send_task("analytics.benchmark_finish_sweep", queue="maintenance")
    wait_for(lambda: BenchmarkRun.objects.filter(pk=run.pk, finished_at__isnull=False).exists(), timeout=60,
             what="the benchmark run to be finished")
    schedule.refresh_from_db()
    assert schedule.last_fired_at is not None and schedule.last_error == ""
    rows = {r["label"]: r for t in leaderboard(user=None, suite="core-v2")["tables"] for r in t["rows"]}
    assert set(rows) == {"openai-compatible:gpt-4o-mini@0.7", "baseline:boulware", "canary-patient",
                         "canary-accept-first", "canary-random"}
    # the LLM buyer played under the hidden rules too: no closing turn, nothing said after the drawn last round
    from django.conf import settings

    from negotiation.engine.protocol import last_round
    from negotiation.models import Message, NegotiationRun
    key = settings.MAMS_DEADLINE_KEY or settings.SECRET_KEY
    for r in NegotiationRun.objects.filter(batch__benchmark_entry__benchmark=run):
        assert r.rules == "hidden"
        said = max(Message.objects.filter(run=r).values_list("round_no", flat=True))
        assert said <= last_round(rules="hidden", seed=r.seed, max_rounds=r.max_rounds, key=key) <= r.max_rounds
    assert all(r["runs"] == 9 and r["metrics"]["deal_rate"]["n"] == 9 for r in rows.values())
    assert rows["openai-compatible:gpt-4o-mini@0.7"]["metrics"]["deal_rate"]["mean"] is not None

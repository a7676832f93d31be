"""The default nightly benchmark: the core suite at 02:30 UTC, the local LLM buyer and the three
baseline buyers against pinned local LLM sellers, 3 runs per scenario (about half an hour on the
local Gemma server). Edit or disable it in the admin (Analytics › Benchmark schedules).

Self-contained on purpose (historical models only): later code changes cannot break this migration.
"""

import json

from django.db import migrations

NAME = "nightly core"
LOCAL = {"profile": "local", "model": "gemma-3-270m", "temperature": 0.7}


def create(apps, schema_editor):
    Schedule = apps.get_model("analytics", "BenchmarkSchedule")
    PeriodicTask = apps.get_model("django_celery_beat", "PeriodicTask")
    CrontabSchedule = apps.get_model("django_celery_beat", "CrontabSchedule")
    if Schedule.objects.filter(name=NAME).exists():
        return
    schedule = Schedule.objects.create(
        name=NAME, suite="core", buyers=[LOCAL, {"strategy": "boulware"}, {"strategy": "linear"},
                                         {"strategy": "conceder"}],
        opponents=LOCAL, runs_per_scenario=3, max_rounds=5, base_seed=0, cron="30 2 * * *", enabled=True)
    crontab, _ = CrontabSchedule.objects.get_or_create(minute="30", hour="2", day_of_month="*", month_of_year="*",
                                                       day_of_week="*", timezone="UTC")
    schedule.periodic_task = PeriodicTask.objects.create(
        name=f"benchmark schedule {schedule.pk}: {NAME}", task="analytics.run_benchmark_schedule", crontab=crontab,
        args=json.dumps([schedule.pk]), kwargs="{}", queue="maintenance", enabled=True,
        description=f"Runs benchmark suite core (analytics.BenchmarkSchedule {schedule.pk}).")
    schedule.save(update_fields=["periodic_task"])


def remove(apps, schema_editor):
    Schedule = apps.get_model("analytics", "BenchmarkSchedule")
    PeriodicTask = apps.get_model("django_celery_beat", "PeriodicTask")
    for schedule in Schedule.objects.filter(name=NAME):
        if schedule.periodic_task_id:
            PeriodicTask.objects.filter(pk=schedule.periodic_task_id).delete()
        schedule.delete()


class Migration(migrations.Migration):
    dependencies = [("analytics", "0002_benchmarks"), ("django_celery_beat", "0019_alter_periodictasks_options")]
    operations = [migrations.RunPython(create, remove)]

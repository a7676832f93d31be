"""Admin for benchmarks: schedules are edited here; suites, benchmark runs and drift flags are read-only.

A schedule is saved through `benchmark_schedule_save`, which validates it (suite reference,
buyer and opponent agent specs, cron expression: each error shown on its field) and keeps its
django-celery-beat PeriodicTask and CrontabSchedule in step; deleting it deletes its task.
"""

from __future__ import annotations

from typing import Any

from django import forms
from django.contrib import admin, messages
from django.http import HttpRequest
from django.urls import reverse
from django.utils.html import format_html

from analytics.benchmarks.services import (
    SCHEDULE_TASK,
    benchmark_schedule_delete,
    benchmark_schedule_save,
    benchmark_status,
)
from analytics.benchmarks.validation import SCHEDULE_CHECKS
from analytics.models import BenchmarkBatch, BenchmarkRun, BenchmarkSchedule, DriftFlag, Suite, SuiteScenario
from mams.celery import app
from mams.queues import Queue


class _ReadOnly(admin.ModelAdmin):
    def has_add_permission(self, request: HttpRequest, obj: Any = None) -> bool:
        return False

    def has_change_permission(self, request: HttpRequest, obj: Any = None) -> bool:
        return False


class _ReadOnlyInline(admin.TabularInline):
    extra = 0
    can_delete = False

    def has_add_permission(self, request: HttpRequest, obj: Any = None) -> bool:
        return False

    def has_change_permission(self, request: HttpRequest, obj: Any = None) -> bool:
        return False


def _checked(field: str) -> Any:
    """A form's clean_<field> that runs the schedule service's check of that field."""
    def clean(form: forms.ModelForm) -> Any:
        value = form.cleaned_data.get(field)
        SCHEDULE_CHECKS[field](value)
        return value
    return clean


class BenchmarkScheduleForm(forms.ModelForm):
    """The schedule's checks (analytics/benchmarks/validation.py), each error shown on its field."""

    class Meta:
        model = BenchmarkSchedule
        fields = ("name", "suite", "buyers", "opponents", "runs_per_scenario", "max_rounds", "base_seed", "cron",
                  "enabled", "owner")

    clean_suite = _checked("suite")
    clean_buyers = _checked("buyers")
    clean_opponents = _checked("opponents")
    clean_cron = _checked("cron")


@admin.register(BenchmarkSchedule)
class BenchmarkScheduleAdmin(admin.ModelAdmin):
    form = BenchmarkScheduleForm
    list_display = ("name", "suite", "cron", "enabled", "runs_per_scenario", "n_buyers", "last_fired_at",
                    "short_error")
    list_filter = ("enabled", "suite")
    readonly_fields = ("beat_task", "last_fired_at", "last_error", "created_at", "updated_at")
    fields = ("name", "suite", "buyers", "opponents", "runs_per_scenario", "max_rounds", "base_seed", "cron",
              "enabled", "owner", "beat_task", "last_fired_at", "last_error")
    actions = ["run_now"]

    def get_changeform_initial_data(self, request: HttpRequest) -> dict[str, Any]:
        return {"suite": "core", "buyers": [{"profile": "local"}, {"strategy": "boulware"}],
                "opponents": {"profile": "local"}, "cron": "30 2 * * *", **super().get_changeform_initial_data(request)}

    @admin.display(description="buyers")
    def n_buyers(self, obj: BenchmarkSchedule) -> int:
        return len(obj.buyers or [])

    @admin.display(description="last error")
    def short_error(self, obj: BenchmarkSchedule) -> str:
        return (obj.last_error or "")[:80]

    @admin.display(description="beat task")
    def beat_task(self, obj: BenchmarkSchedule) -> str:
        if not obj.periodic_task_id:
            return "–"
        url = reverse("admin:django_celery_beat_periodictask_change", args=[obj.periodic_task_id])
        return format_html('<a href="{}">periodic task {}</a>', url, obj.periodic_task_id)

    def save_model(self, request: HttpRequest, obj: BenchmarkSchedule, form: Any, change: bool) -> None:
        benchmark_schedule_save(schedule=obj)

    def delete_model(self, request: HttpRequest, obj: BenchmarkSchedule) -> None:
        benchmark_schedule_delete(schedule=obj)

    def delete_queryset(self, request: HttpRequest, queryset: Any) -> None:
        for schedule in queryset:
            benchmark_schedule_delete(schedule=schedule)

    @admin.action(description="Run the selected schedules now (through the worker)")
    def run_now(self, request: HttpRequest, queryset: Any) -> None:
        for schedule in queryset:
            app.send_task(SCHEDULE_TASK, args=[schedule.pk], queue=Queue.MAINTENANCE)
        self.message_user(request, f"Queued {queryset.count()} benchmark run(s); see Benchmark runs.", messages.SUCCESS)


class SuiteScenarioInline(_ReadOnlyInline):
    model = SuiteScenario
    fields = ("position", "slug", "title", "items", "session")


@admin.register(Suite)
class SuiteAdmin(_ReadOnly):
    list_display = ("label", "description", "content_hash", "loaded_at")
    inlines = [SuiteScenarioInline]


class BenchmarkBatchInline(_ReadOnlyInline):
    model = BenchmarkBatch
    fields = ("scenario", "buyer_fingerprint", "batch")


@admin.register(BenchmarkRun)
class BenchmarkRunAdmin(_ReadOnly):
    list_display = ("id", "suite", "schedule", "seller_fingerprint", "runs_per_scenario", "status", "created_at",
                    "finished_at")
    list_filter = ("suite", "schedule")
    list_select_related = ("suite", "schedule")
    inlines = [BenchmarkBatchInline]

    @admin.display(description="status")
    def status(self, obj: BenchmarkRun) -> str:
        return benchmark_status(obj)


@admin.register(DriftFlag)
class DriftFlagAdmin(_ReadOnly):
    list_display = ("created_at", "suite", "buyer_fingerprint", "seller_fingerprint", "metric", "previous_mean",
                    "mean", "n", "previous_n")
    list_filter = ("suite", "metric")

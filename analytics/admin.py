"""Read-only admin views of the per-run metrics and analyses (they are written by the platform only)."""

from __future__ import annotations

from typing import Any

from django.contrib import admin

from analytics.models import RunAnalysis, RunMetrics


class _ReadOnly(admin.ModelAdmin):
    def has_add_permission(self, request: Any) -> bool:
        return False

    def has_change_permission(self, request: Any, obj: Any = None) -> bool:
        return False


@admin.register(RunMetrics)
class RunMetricsAdmin(_ReadOnly):
    list_display = ("run", "batch", "seed", "deal", "price", "buyer_share", "rounds", "tokens", "cost_usd", "leaks",
                    "guardrails")
    list_filter = ("deal", "mutual_loss", "chosen_style")
    search_fields = ("run__id", "batch__id", "chosen_handle")
    list_select_related = ("run", "batch")


@admin.register(RunAnalysis)
class RunAnalysisAdmin(_ReadOnly):
    list_display = ("run", "status", "source", "model", "deal_quality", "strategy_effectiveness", "coherence",
                    "hallucination", "updated_at")
    list_filter = ("status", "source", "strategy_effectiveness")
    search_fields = ("run__id", "batch__id", "error")
    list_select_related = ("run",)


from analytics.benchmarks import admin as _benchmarks_admin  # noqa: E402, F401  (schedules, suites, benchmark runs)

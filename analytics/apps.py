"""The analytics app. When it is ready it registers with negotiation's run lifecycle
(negotiation/services/lifecycle.py): a completed run's metrics and analysis, a failed run's trace;
and with its batch budgets (negotiation/services/budgets.py): the post-run analyst's usage, so a
batch's spend counts every LLM call. Negotiation never imports analytics; these hooks are how a
run's end reaches it and how its calls reach the spend."""

from django.apps import AppConfig


class AnalyticsConfig(AppConfig):
    default_auto_field = "django.db.models.BigAutoField"
    name = "analytics"
    verbose_name = "Analytics"

    def ready(self) -> None:
        from analytics import (  # noqa: PLC0415  (models are loaded only now, in ready())
            archive,
            checks,  # noqa: F401 - registers the archive store check
            selectors,
            services,
        )
        from negotiation.services import budgets, lifecycle  # noqa: PLC0415

        lifecycle.on_run_completed(services.run_completed)
        lifecycle.on_run_failed(services.run_failed)
        lifecycle.on_run_ended(archive.archive_on_commit)
        budgets.on_batch_usage(selectors.analysis_usage)

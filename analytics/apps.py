"""The analytics app. When it is ready it registers with negotiation's run lifecycle
(negotiation/services/lifecycle.py): a completed run's metrics and analysis, a failed run's trace.
Negotiation never imports analytics; this hook is how a run's end reaches it."""

from django.apps import AppConfig


class AnalyticsConfig(AppConfig):
    default_auto_field = "django.db.models.BigAutoField"
    name = "analytics"
    verbose_name = "Analytics"

    def ready(self) -> None:
        from analytics import (  # noqa: PLC0415  (models are loaded only now, in ready())
            archive,
            checks,  # noqa: F401 - registers the archive store check
            services,
        )
        from negotiation.services import lifecycle  # noqa: PLC0415

        lifecycle.on_run_completed(services.run_completed)
        lifecycle.on_run_failed(services.run_failed)
        lifecycle.on_run_ended(archive.archive_on_commit)

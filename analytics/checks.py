"""`manage.py check` says at start-up when the audit archive cannot work: an invalid MAMS_ARCHIVE_URL or a
missing bucket is an error a person fixes before the stack starts, rather than a stream of failed archive
tasks later. Negotiations never depend on the store (analytics/archive.py), so nothing else is blocked.
An unreachable store is only a warning: it may be a passing outage, and the archive task retries."""

from __future__ import annotations

from typing import Any

from django.conf import settings
from django.core.checks import Error, Tags, register
from django.core.checks import Warning as CheckWarning

from analytics import archive


@register(Tags.compatibility, "mams_archive")
def archive_store_check(app_configs: Any = None, **kwargs: Any) -> list[Any]:

    if not settings.MAMS_ARCHIVE_ENABLED:
        return []
    try:
        archive.target_parse(settings.MAMS_ARCHIVE_URL)
    except archive.ArchiveConfigError as exc:
        return [Error(str(exc), hint="Set MAMS_ARCHIVE_URL to s3://bucket/prefix or file:///absolute/path, or "
                                     "MAMS_ARCHIVE_ENABLED=false.", id="mams.E120")]
    problem = archive.store_problem()
    if problem is None:
        return []
    if "could not be reached" in problem:
        return [CheckWarning(problem, hint="Runs still play; their archives retry, then record the error.",
                        id="mams.W121")]
    return [Error(problem, hint="Runs still play, but none can be archived until this is fixed.", id="mams.E121")]

"""The Celery app. Configuration comes from Django settings under the CELERY_ namespace."""

import os

from celery import Celery
from celery.signals import task_postrun, task_prerun, worker_ready

from mams.presence import HeartbeatStep, database_watch

os.environ.setdefault("DJANGO_SETTINGS_MODULE", "mams.settings.local")

app = Celery("mams")
app.config_from_object("django.conf:settings", namespace="CELERY")
app.autodiscover_tasks()
# Each worker keeps a heartbeat key in Redis while its consumer consumes (pages and /api/health read it).
app.steps["consumer"].add(HeartbeatStep)


@task_prerun.connect
@task_postrun.connect
def _recycle_db_connections(task: object = None, **_kwargs: object) -> None:
    """What Django does around each request: drop this thread's connection if it is broken (after a
    Postgres restart) or older than CONN_MAX_AGE, and keep it otherwise (CELERY_DB_REUSE_MAX).
    Not for a task applied in-process (`apply()`): that connection belongs to the caller."""
    if getattr(getattr(task, "request", None), "is_eager", False):
        return
    from django.db import close_old_connections  # noqa: PLC0415  (this module loads before Django's settings)

    close_old_connections()


@worker_ready.connect
def _say_if_the_database_is_down(**_kwargs: object) -> None:
    database_watch()

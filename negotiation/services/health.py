"""Whether each part MAMS needs is up: Postgres, the broker (Redis) and at least one Celery worker
consuming the queues a batch is played on. Read by `GET /api/health`, `/env/health` and the pages;
it says up or down per part and nothing more (no hostnames, no versions), since it is public.
"""

from __future__ import annotations

import logging

from django.db import connection

from mams.presence import workers_presence
from negotiation.services import events

log = logging.getLogger(__name__)

UP, DOWN = "up", "down"


def platform_health() -> dict[str, str]:
    """`{"database": up|down, "broker": up|down, "workers": up|down}`. `workers` is down when no live
    worker consumes both the rounds and the agents queues (or when Redis cannot be asked)."""
    parts: dict[str, str] = {}
    try:
        with connection.cursor() as cursor:
            cursor.execute("SELECT 1")
        parts["database"] = UP
    except Exception:
        log.exception("health: the database did not answer")
        parts["database"] = DOWN
    try:
        events.redis_client().ping()
        parts["broker"] = UP
    except Exception:
        log.exception("health: the broker did not answer")
        parts["broker"] = DOWN
    presence = workers_presence()
    parts["workers"] = UP if presence.known and presence.can_play else DOWN
    return parts

"""Sentry for the web app and the workers: the Django and Celery integrations, from SENTRY_DSN.

Without a DSN nothing is initialised. With one, no personal data and no prompt leaves the process:
`send_default_pii` is off, request bodies and frame locals (where prompts and replies live) are
never attached, and `before_send` drops anything that still looks like an LLM payload or a key.
Every event from a task is tagged with the task, the run and the run's batch, so a failure can be
found from the run page and vice versa.
"""

from __future__ import annotations

import logging
import re
import warnings
from typing import Any

import sentry_sdk
from celery.signals import task_prerun

log = logging.getLogger(__name__)

# Tasks whose first argument is a run id, and the one whose first argument is a batch id.
RUN_TASKS = {"negotiation.round", "negotiation.seller_turn", "analytics.analyse_run"}
BATCH_TASKS = {"negotiation.batch_start"}
_SECRETISH = re.compile(r"(api[_-]?key|authorization|token|secret|password|prompt|messages|raw_output)", re.I)


def _tag_task(sender: Any = None, task: Any = None, args: Any = None, kwargs: Any = None, **_: Any) -> None:
    """Tag the task's Sentry scope (the Celery integration isolates one per task) with run and batch."""
    name = getattr(task, "name", "") or ""
    first = (kwargs or {}).get("run_id") or (kwargs or {}).get("batch_id") or (args[0] if args else None)
    sentry_sdk.set_tag("task", name)
    if first is None:
        return
    if name in BATCH_TASKS:
        sentry_sdk.set_tag("batch", str(first))
        return
    if name in RUN_TASKS:
        sentry_sdk.set_tag("run", str(first))
        try:
            from negotiation.models import NegotiationRun  # noqa: PLC0415  (sentry_init runs in settings)

            batch = NegotiationRun.objects.filter(pk=first).values_list("batch_id", flat=True).first()
        except Exception:  # noqa: BLE001  (a broken database must not stop the task from running)
            batch = None
        if batch:
            sentry_sdk.set_tag("batch", str(batch))


def _scrub(value: Any) -> Any:
    if isinstance(value, dict):
        return {k: "[removed]" if _SECRETISH.search(str(k)) else _scrub(v) for k, v in value.items()}
    if isinstance(value, list | tuple):
        return [_scrub(v) for v in value]
    return value


def before_send(event: dict[str, Any], hint: dict[str, Any]) -> dict[str, Any]:
    """Drop request bodies and anything keyed like a secret or an LLM payload."""
    request = event.get("request")
    if isinstance(request, dict):
        request.pop("data", None)
        request.pop("cookies", None)
    for key in ("extra", "contexts"):
        if key in event:
            event[key] = _scrub(event[key])
    return event


def sentry_init(*, dsn: str | None, environment: str = "local", traces_sample_rate: float = 0.0,
                transport: Any = None) -> bool:
    """Initialise Sentry when a DSN is set; returns whether it did. Safe to call more than once."""
    if not dsn:
        return False
    # Loaded only when a DSN is set: the integrations import Celery and Django machinery.
    from sentry_sdk.integrations.celery import CeleryIntegration  # noqa: PLC0415
    from sentry_sdk.integrations.django import DjangoIntegration  # noqa: PLC0415

    options: dict[str, Any] = {
        "dsn": dsn, "environment": environment, "traces_sample_rate": traces_sample_rate,
        "integrations": [DjangoIntegration(), CeleryIntegration()],
        "send_default_pii": False, "include_local_variables": False, "max_request_body_size": "never",
        "before_send": before_send,
    }
    if transport is not None:
        options["transport"] = transport
    with warnings.catch_warnings():
        # send_default_pii=False is kept explicit on purpose; the SDK warns that the option is deprecated.
        warnings.filterwarnings("ignore", message="The send_default_pii option is deprecated",
                                category=DeprecationWarning)
        sentry_sdk.init(**options)
    task_prerun.connect(_tag_task, weak=False, dispatch_uid="mams-sentry-tags")
    return True

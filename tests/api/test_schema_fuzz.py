"""Schemathesis against the published OpenAPI schema: generated requests to every fast operation,
with real ids substituted into half the paths, and no answer may be a 5xx.

The schema is the one `/api/schema/` serves (built by drf-spectacular from the views). The SSE
stream is left out (long-lived by design); `POST /message` is in, with the wait for replies set
to zero and the sellers' Celery turns not enqueued. Each operation gets MAX_EXAMPLES cases.
"""

from __future__ import annotations

import json
from collections.abc import Callable, Iterator
from typing import Any

import pytest
import schemathesis
from django.core.signals import request_finished, request_started
from django.core.wsgi import get_wsgi_application
from django.db import close_old_connections
from drf_spectacular.generators import SchemaGenerator
from drf_spectacular.renderers import OpenApiJsonRenderer
from hypothesis import HealthCheck, given
from hypothesis import settings as hypothesis_settings
from rest_framework.authtoken.models import Token
from schemathesis.checks import not_a_server_error

from negotiation.models import NegotiationRun, Session
from negotiation.services.batches import batch_create
from negotiation.services.experiments import experiment_create
from negotiation.services.live import live_start
from negotiation.services.reflect import sequence_create
from tests.api.conftest import BASELINE

MAX_EXAMPLES = 25
LINEAR = {"strategy": "linear"}

SCHEMA = schemathesis.openapi.from_dict(json.loads(OpenApiJsonRenderer().render(
    SchemaGenerator().get_schema(request=None, public=True)))).exclude(path_regex=r"/stream$")
SCHEMA.app = get_wsgi_application()
OPERATIONS = {op.label: op for op in (result.ok() for result in SCHEMA.get_all_operations())}


@pytest.fixture
def wsgi(db: Any, settings: Any, monkeypatch: pytest.MonkeyPatch) -> Iterator[None]:
    from mams.presence import heartbeat_write
    from mams.queues import Queue
    from negotiation.services import play

    settings.MAMS_LIVE_WAIT_SECONDS = 0
    monkeypatch.setattr(play, "enqueue_seller_turns", lambda *a, **k: None)
    # The health endpoints answer 503 with no worker: announce one (a real heartbeat key, 15 s), as a
    # running deployment has, so a 5xx here means a bug in the API, not an absent worker.
    heartbeat_write(hostname="fuzz@test", queues=[q.value for q in Queue])
    # As Django's test client does: the test's transaction must outlive each request.
    request_started.disconnect(close_old_connections)
    request_finished.disconnect(close_old_connections)
    try:
        yield
    finally:
        request_started.connect(close_old_connections)
        request_finished.connect(close_old_connections)


@pytest.fixture
def real_ids(user: Any, sample: Session) -> dict[str, str]:
    batch = batch_create(session=sample, item_name="USB-C Cable", runs=2, agents=BASELINE, owner=user)
    live = live_start(owner=user, session=sample, item_name="USB-C Cable", seller_agent=LINEAR, analyst_agent=LINEAR)
    experiment = experiment_create(owner=user, session=sample, name="fuzz", item_name="USB-C Cable", runs=1,
                                   conditions=[{"label": "a", "agents": BASELINE}, {"label": "b", "agents": BASELINE}])
    sequence = sequence_create(owner=user, session=sample, item_name="USB-C Cable", mode="none", length=2,
                               agents=BASELINE)
    return {"session_id": str(sample.pk), "batch_id": str(batch.pk), "run_id": str(live.pk),
            "seller_id": str(sample.sellers.first().pk),
            "agent_run_id": str(NegotiationRun.objects.filter(batch=batch).first().pk),
            "experiment_id": str(experiment.pk), "sequence_id": str(sequence.pk)}


def test_the_fuzzed_operations_cover_the_api() -> None:
    assert len(OPERATIONS) >= 20 and not any("stream" in label for label in OPERATIONS)


def fuzz_operation(label: str, *, user: Any, real_ids: dict[str, str], examples: int,
                   after_each: Callable[[Any, Any], None] | None = None) -> list[int]:
    """Run `examples` generated cases of one operation; real ids go into every other path. No 5xx."""
    operation = OPERATIONS[label]
    headers = {"Authorization": f"Token {Token.objects.get_or_create(user=user)[0].key}"}
    seen: list[int] = []

    @given(case=operation.as_strategy())
    @hypothesis_settings(max_examples=examples, deadline=None, suppress_health_check=list(HealthCheck),
                         database=None)
    def check(case: Any) -> None:
        params = case.path_parameters or {}
        if len(seen) % 2 == 0:
            for name in params:
                if name in real_ids:
                    agent = name == "run_id" and case.method == "GET"
                    params[name] = real_ids["agent_run_id" if agent and len(seen) % 4 == 0 else name]
        response = case.call(headers=headers)
        seen.append(response.status_code)
        case.validate_response(response, checks=[not_a_server_error])
        if after_each is not None:
            after_each(case, response)

    check()
    return seen


@pytest.mark.parametrize("label", sorted(OPERATIONS))
def test_no_operation_answers_5xx(label: str, wsgi: None, user: Any, real_ids: dict[str, str]) -> None:
    assert fuzz_operation(label, user=user, real_ids=real_ids, examples=MAX_EXAMPLES)

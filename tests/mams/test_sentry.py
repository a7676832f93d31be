"""mams/sentry.py: no DSN, no Sentry; with one, an exception in a task reaches the transport, tagged
with the run and its batch, and without the prompt or any key."""

from __future__ import annotations

from collections.abc import Iterator
from typing import Any

import pytest
import sentry_sdk
from sentry_sdk.envelope import Envelope
from sentry_sdk.transport import Transport

from mams.sentry import sentry_init
from negotiation.models import NegotiationRun
from negotiation.services.batches import batch_create
from tests.analytics.conftest import BASELINE

pytestmark = pytest.mark.django_db


class CapturingTransport(Transport):
    def __init__(self, options: dict[str, Any] | None = None) -> None:
        super().__init__(options)
        self.envelopes: list[Envelope] = []

    def capture_envelope(self, envelope: Envelope) -> None:
        self.envelopes.append(envelope)

    def events(self) -> list[dict[str, Any]]:
        return [item.payload.json for env in self.envelopes for item in env.items if item.type == "event"]


@pytest.fixture
def transport() -> Iterator[CapturingTransport]:
    t = CapturingTransport()
    assert sentry_init(dsn="https://public@sentry.invalid/1", environment="test", transport=t)
    yield t
    sentry_sdk.get_client().close()
    sentry_sdk.init(dsn=None)  # back to the no-op client for the rest of the suite


def test_without_a_dsn_nothing_is_initialised() -> None:
    assert sentry_init(dsn=None) is False and sentry_init(dsn="") is False


def test_an_exception_in_a_task_reaches_sentry_tagged_with_run_and_batch(
        transport: CapturingTransport, sample: Any, user: Any, monkeypatch: Any) -> None:
    from negotiation import tasks
    from negotiation.services import play

    # given a queued run whose turn hits a bug while its prompt and a key are in scope
    batch = batch_create(session=sample, item_name="USB-C Cable", runs=1, agents=BASELINE, owner=user)
    run = NegotiationRun.objects.get(batch=batch)

    def buggy_turn(*, run_id: Any, round_no: int, **_: Any) -> None:
        # built at run time, so the values are data in the frame, not text of this source file
        prompt = " ".join(["You are a strategic buyer.", "Maximum", "acceptable", "price:", "$9.00"])  # noqa: F841
        api_key = "-".join(["sk", "live", "secret"])  # noqa: F841
        raise KeyError("standing_offers")

    monkeypatch.setattr(play, "round_play", buggy_turn)
    # when the round task runs
    result = tasks.round_task.apply(args=[str(run.pk), 1])
    sentry_sdk.flush()
    # then the task failed, the run is failed with the reason, and Sentry got one event for it
    assert result.state == "FAILURE"
    run.refresh_from_db()
    assert run.status == "failed" and "KeyError" in run.error
    events = [e for e in transport.events() if e.get("exception")]
    assert len(events) == 1
    event = events[0]
    assert event["exception"]["values"][-1]["type"] == "KeyError"
    assert event["tags"]["run"] == str(run.pk) and event["tags"]["batch"] == str(batch.pk)
    assert event["tags"]["task"] == "negotiation.round"
    # and neither the prompt nor the key left the process
    blob = str(event)
    assert "Maximum acceptable price" not in blob and "sk-live-secret" not in blob
    assert "user" not in event or not event["user"].get("ip_address")


def test_an_analysis_task_error_is_tagged_too(transport: CapturingTransport, played_batch: Any,
                                             monkeypatch: Any) -> None:
    from analytics import analysis
    from analytics.tasks import analyse_run_task

    batch = played_batch(runs=1)
    run = NegotiationRun.objects.get(batch=batch)
    monkeypatch.setattr(analysis, "local_verdict", lambda *a, **k: 1 / 0)
    analyse_run_task.apply(args=[str(run.pk)])
    sentry_sdk.flush()
    event = next(e for e in transport.events() if e.get("exception"))
    assert event["tags"]["run"] == str(run.pk) and event["tags"]["batch"] == str(batch.pk)
    assert event["tags"]["task"] == "analytics.analyse_run"

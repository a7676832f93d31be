"""Galileo on the wire: a real batch on a real worker, the real `galileo` SDK, a fake Galileo API.

A dedicated worker runs with GALILEO_API_KEY and GALILEO_API_URL pointing at the fake server on
loopback (the session's usual worker stops consuming meanwhile, so every task of this batch runs
here). The test asserts what arrived: one session for the batch, one trace per negotiation, one
LLM span per call with its metadata; then that Galileo's scores are read back and shown.
"""

from __future__ import annotations

from collections.abc import Iterator
from typing import Any

import pytest
from django.test import Client
from django.urls import reverse

from analytics.models import RunAnalysis
from mams.celery import app
from mams.queues import Queue
from negotiation.models import Message, NegotiationRun
from negotiation.services.batches import batch_create
from negotiation.services.scenarios import sample_session_load
from tests.conftest import start_worker, stop_worker, wait_for, wait_for_batch
from tests.factories import UserFactory
from tests.fakes.galileo_server import FakeGalileo

pytestmark = [pytest.mark.django_db(transaction=True), pytest.mark.worker]

LLM = {"buyer": {"profile": "openai-compatible"}, "seller": {"profile": "openai-compatible"},
       "analyst": {"profile": "openai-compatible"}}


@pytest.fixture
def galileo(celery_worker: Any, fake_llm: Any, tmp_path: Any) -> Iterator[FakeGalileo]:
    from django.conf import settings

    fake = FakeGalileo().start()
    queues = [q.value for q in Queue]
    for q in queues:
        app.control.cancel_consumer(q, destination=[celery_worker.hostname], reply=True, timeout=5)

    def shared_worker_idle() -> bool:
        # A loaded worker may answer the cancel after its reply timeout: until it really consumes none of
        # the queues, a turn of this batch could run there, untraced (seen once: 6 spans for 7 calls).
        active = app.control.inspect(destination=[celery_worker.hostname], timeout=5).active_queues() or {}
        names = {q["name"] for q in active.get(celery_worker.hostname, [{"name": "?"}])}
        return not names & set(queues)

    wait_for(shared_worker_idle, timeout=60, interval=0.5, what="the shared worker to stop consuming")
    worker = start_worker(db_name=settings.DATABASES["default"]["NAME"], llm_url=fake_llm.base_url, name="galileo",
                          extra_env={"GALILEO_API_KEY": "fake-galileo-key", "GALILEO_API_URL": fake.url,
                                     "GALILEO_CONSOLE_URL": fake.url, "GALILEO_HOME_DIR": str(tmp_path),
                                     "GALILEO_PROJECT": "mams-ci", "GALILEO_LOG_STREAM": "wire-test"})
    try:
        yield fake
    finally:
        stop_worker(worker)
        fake.stop()
        for q in queues:
            app.control.add_consumer(q, destination=[celery_worker.hostname], reply=True, timeout=5)


def test_a_batch_sends_one_session_one_trace_per_run_and_one_span_per_call(galileo: FakeGalileo, llm: Any) -> None:
    # given a batch of three LLM negotiations
    owner = UserFactory(username="gal")
    owner.save()
    batch = batch_create(session=sample_session_load(), item_name="usb-c cable", runs=3, agents=LLM, max_rounds=3,
                         base_seed=70, owner=owner)
    wait_for_batch(batch.pk)
    wait_for(lambda: RunAnalysis.objects.filter(batch=batch, galileo__has_key="trace_id").count() == 3, timeout=90,
             what="three traces sent")
    runs = {str(r.pk): r for r in NegotiationRun.objects.filter(batch=batch)}
    # then Galileo holds one session for the batch (found by its external id, created once)
    assert [s["external_id"] for s in galileo.sessions.values()] == [str(batch.pk)]
    session_id = next(iter(galileo.sessions))
    # and one ingest per run, each with one trace in that session
    ingested = galileo.ingested()
    assert len(ingested) == 3 and {b["session_id"] for b in ingested} == {session_id}
    seen = set()
    for body in ingested:
        assert len(body["traces"]) == 1
        trace = body["traces"][0]
        run_id = trace["external_id"]
        seen.add(run_id)
        assert trace["user_metadata"]["batch"] == str(batch.pk) and trace["status_code"] == 200
        # one LLM span per call: the agents' calls (repairs included) and the analyst's
        calls = sum(Message.objects.filter(run_id=run_id).values_list("llm_calls", flat=True))
        spans = trace["spans"]
        assert len(spans) == calls + 1 and {s["type"] for s in spans} == {"llm"}
        for s in spans:
            assert s["model"] and s["input"] and s["output"]["content"]
            assert s["metrics"]["num_input_tokens"] > 0 and s["metrics"]["duration_ns"] is not None
            assert {"run", "batch", "round", "role", "handle"} <= set(s["user_metadata"])
            assert s["user_metadata"]["run"] == run_id
    assert seen == set(runs)
    # when the periodic task reads the scores back
    app.send_task("analytics.galileo_scores", queue=Queue.MAINTENANCE)
    wait_for(lambda: RunAnalysis.objects.filter(batch=batch, galileo__has_key="scores").count() == 3, timeout=60,
             what="Galileo scores read back")
    # then they sit beside the local scores, per run and per message, and the run page says so
    a = RunAnalysis.objects.filter(batch=batch).first()
    assert a.galileo["scores"] == {"correctness": 0.9, "completeness": 0.8} and a.local
    msg = Message.objects.filter(run_id=a.run_id, sender="buyer").first()
    assert msg.quality["galileo"] == {"correctness": 0.9, "completeness": 0.8} and msg.quality["coherence"] == 1.0
    web = Client()
    web.force_login(owner)
    html = web.get(reverse("analytics:run", args=[a.run_id])).content.decode()
    assert "Galileo&#x27;s scores were read back" in html or "Galileo's scores were read back" in html
    assert "correctness 0.90" in html

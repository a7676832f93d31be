"""Galileo tracing in-process: no key is a no-op; with a key, the SDK's ingestion_hook captures the payload.

The negotiation is real (in-process turns, the fake LLM over HTTP, the real openai client), so the
spans are exactly the calls the gateway made (buffered by negotiation/agents/spans.py), with the
metadata play.py and decide.py handed down.
"""

from __future__ import annotations

from typing import Any

import pytest

from analytics import tracing
from analytics.analysis import run_analyse
from analytics.models import RunAnalysis
from negotiation.agents import spans
from negotiation.models import Message, NegotiationRun
from tests.analytics.conftest import LLM

pytestmark = pytest.mark.django_db

CAPTURED: list[Any] = []


def capture(request: Any) -> None:
    CAPTURED.append(request)


def explode(request: Any) -> None:
    raise RuntimeError("Galileo is down")


def clear_buffers() -> None:
    # Only our own keys: the same Redis database is the Celery broker (its queue bindings live there).
    client = tracing._client()
    for key in client.scan_iter("mams:galileo:*"):
        client.delete(key)


@pytest.fixture
def galileo(settings: Any) -> Any:
    CAPTURED.clear()
    settings.GALILEO_API_KEY = "test-key"
    settings.MAMS_GALILEO_INGESTION_HOOK = "tests.analytics.test_tracing.capture"
    clear_buffers()
    yield settings
    CAPTURED.clear()


def test_without_a_key_nothing_is_buffered_or_sent(played_batch: Any, llm: Any, settings: Any) -> None:
    settings.GALILEO_API_KEY = None
    clear_buffers()
    batch = played_batch(runs=1, agents=LLM)
    run = NegotiationRun.objects.get(batch=batch)
    assert not tracing._client().keys("mams:galileo:*")
    assert tracing.run_trace_flush(run=run, analysis=None) is None
    assert run_analyse(run_id=run.pk).galileo == {}


def test_the_ingestion_hook_receives_one_session_one_trace_per_run_and_one_span_per_call(
        galileo: Any, played_batch: Any, llm: Any) -> None:
    # given a batch of two runs negotiated by LLM agents, with Galileo on
    batch = played_batch(runs=2, agents=LLM, max_rounds=3)
    runs = list(NegotiationRun.objects.filter(batch=batch).order_by("seed"))
    # when each run is analysed (the analysis task sends the trace at its end)
    for run in runs:
        run_analyse(run_id=run.pk)
    # then each run sent one ingest request with one trace, in the batch's one session
    assert len(CAPTURED) == 2
    sessions = {str(req.session_id) for req in CAPTURED}
    assert len(sessions) == 1
    for run, req in zip(runs, CAPTURED, strict=True):
        assert len(req.traces) == 1
        trace = req.traces[0]
        assert trace.external_id == str(run.pk) and trace.user_metadata["batch"] == str(batch.pk)
        assert trace.status_code == 200 and "deal" in trace.output
        # one LLM span per call: every turn's calls, then the analyst's
        calls = sum(Message.objects.filter(run=run).values_list("llm_calls", flat=True))
        spans = trace.spans
        assert len(spans) == calls + 1 and all(s.type == "llm" for s in spans)
        for span in spans:
            assert span.model and span.metrics.num_input_tokens > 0 and span.metrics.num_output_tokens > 0
            assert span.metrics.duration_ns is not None and span.input and span.output
            assert span.user_metadata["run"] == str(run.pk) and span.user_metadata["role"] in {"buyer", "seller",
                                                                                                "analyst"}
            assert span.user_metadata["round"] and span.user_metadata["handle"]
        roles = [s.user_metadata["role"] for s in spans]
        assert roles[0] == "buyer" and roles[-1] == "analyst" and "seller" in roles
        # and the trace's ids are kept with the analysis, the buffer is gone
        a = RunAnalysis.objects.get(run=run)
        assert a.galileo["trace_id"] == str(trace.id) and a.galileo["spans"] == calls + 1
    assert not tracing._client().keys("mams:galileo:spans:*")


def test_a_galileo_failure_never_fails_the_run_or_its_analysis(galileo: Any, played_batch: Any, llm: Any) -> None:
    galileo.MAMS_GALILEO_INGESTION_HOOK = "tests.analytics.test_tracing.explode"
    run = NegotiationRun.objects.get(batch=played_batch(runs=1, agents=LLM))
    analysis = run_analyse(run_id=run.pk)
    run.refresh_from_db()
    assert run.status == "completed" and analysis.status == "done" and analysis.source == "llm"
    assert "Galileo is down" in RunAnalysis.objects.get(run=run).galileo.get("error", "")


def test_buffering_never_fails_a_turn_when_redis_is_unreachable(galileo: Any, monkeypatch: Any) -> None:
    import redis

    monkeypatch.setattr(spans, "_redis", redis.Redis(host="127.0.0.1", port=1, socket_connect_timeout=0.2))
    monkeypatch.setattr(spans, "_db_of", lambda url: 0)

    class Reply:
        text, model, prompt_tokens, completion_tokens, latency_ms = "x", "m", 1, 1, 1

    spans.record_llm_call(url=galileo.REDIS_URL, meta={"run": "r", "round": 1, "role": "buyer", "handle": "buyer"},
                          chat=None, prompt="p", reply=Reply(), temperature=0.5)  # logged, not raised

"""One short negotiation against the real local Gemma 3 270M server (llama.cpp), via the worker.

Slow (a few seconds per call on 2 cores); `make test` starts the server and runs it. The base
model's JSON is often unusable, so what this proves is the path, not the model: completion-style
prompts reach llama.cpp, real tokens and latencies are stored, and every turn ends as a valid
action, repaired or replaced by the baseline and counted.
"""

from __future__ import annotations

from typing import Any

import httpx
import pytest
from django.conf import settings

from negotiation.models import Message, NegotiationRun, RunEvent
from negotiation.services.batches import batch_create
from negotiation.services.scenarios import sample_session_load
from tests.conftest import wait_for_batch

pytestmark = [pytest.mark.django_db(transaction=True), pytest.mark.worker, pytest.mark.slow]


def test_one_short_negotiation_against_the_real_local_gemma(celery_worker: Any) -> None:
    url = settings.LLM_PROFILES["local"]["base_url"]
    try:
        httpx.get(f"{url}/models", timeout=5).raise_for_status()
    except httpx.HTTPError as exc:
        pytest.fail(f"the local LLM server is not running at {url} ({exc}); `make test` starts it")
    # given the sample session and the local profile for buyer and sellers, one round only
    agents = {role: {"profile": "local"} for role in ("buyer", "seller", "analyst")}
    batch = batch_create(session=sample_session_load(), item_name="USB-C Cable", runs=1, agents=agents,
                         max_rounds=1, temperature=0.3)
    # when the worker plays it
    wait_for_batch(batch.pk, timeout=420, worker=celery_worker)
    # then it completed, every message came from Gemma with real tokens and latency
    run = NegotiationRun.objects.select_related("outcome").get(batch=batch)
    assert run.status == "completed", run.error
    msgs = list(Message.objects.filter(run=run))
    assert msgs and all(m.llm_model and m.prompt_tokens > 0 and m.latency_ms > 0 for m in msgs)
    assert all(m.raw_output.startswith('{"action": "') for m in msgs)
    # fallbacks are allowed for a 270M base model, but each one is counted
    assert RunEvent.objects.filter(run=run, kind="fallback").count() == sum(m.fallback for m in msgs)
    assert run.outcome.reason in {"accepted", "walked_away", "all_declined", "max_rounds"}

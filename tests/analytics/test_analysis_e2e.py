"""The post-deal analysis through the real Celery worker: queued when a run ends, on its own queue."""

from __future__ import annotations

from typing import Any

import pytest

from analytics.models import RunAnalysis, RunMetrics
from negotiation.models import NegotiationRun
from negotiation.services.batches import batch_create
from negotiation.services.scenarios import sample_session_load
from tests.conftest import wait_for, wait_for_batch
from tests.fakes.policies import negotiation

pytestmark = [pytest.mark.django_db(transaction=True), pytest.mark.worker]

LLM = {"buyer": {"profile": "openai-compatible"}, "seller": {"profile": "openai-compatible"},
       "analyst": {"profile": "openai-compatible"}}


def _analysed(batch_id: Any, n: int) -> bool:
    return RunAnalysis.objects.filter(batch_id=batch_id, status__in=["done", "failed"]).count() >= n


def test_every_finished_run_is_analysed_by_the_analyst_llm_on_the_worker(celery_worker: Any, llm: Any) -> None:
    # given a batch played by LLM agents on the worker
    batch = batch_create(session=sample_session_load(), item_name="usb-c cable", runs=3, agents=LLM, max_rounds=3,
                         base_seed=40)
    wait_for_batch(batch.pk, worker=celery_worker)
    # when the analysis tasks have run
    wait_for(lambda: _analysed(batch.pk, 3), timeout=60, what="three analyses")
    # then every completed run has metrics and an LLM verdict, and its outcome has an overall score
    runs = list(NegotiationRun.objects.filter(batch=batch).select_related("outcome"))
    assert {r.status for r in runs} == {"completed"}
    assert RunMetrics.objects.filter(batch=batch).count() == 3
    analyses = list(RunAnalysis.objects.filter(batch=batch))
    assert {(a.status, a.source, a.error) for a in analyses} == {("done", "llm", "")}
    assert all(r.outcome.galileo_overall_score is not None for r in runs)
    assert all(m.tokens > 0 and m.cost_usd is not None and m.cost_usd > 0
               for m in RunMetrics.objects.filter(batch=batch))


def test_a_broken_analyst_never_fails_a_run(celery_worker: Any, llm: Any) -> None:
    # given an analyst that answers nonsense
    llm.policy = lambda req: "no idea" if "negotiation analyst" in req.text else negotiation(req)
    batch = batch_create(session=sample_session_load(), item_name="usb-c cable", runs=2, agents=LLM, max_rounds=3,
                         base_seed=50)
    wait_for_batch(batch.pk, worker=celery_worker)
    wait_for(lambda: _analysed(batch.pk, 2), timeout=60, what="two analyses")
    # then the runs completed and the analyses fell back to the local scorers, saying why
    assert set(NegotiationRun.objects.filter(batch=batch).values_list("status", flat=True)) == {"completed"}
    for a in RunAnalysis.objects.filter(batch=batch):
        assert a.status == "done" and a.source == "local" and "not a valid verdict" in a.error

"""A batch with a budget, through a real Celery worker, Postgres, Redis and the fake LLM on loopback:
when its spend reaches the budget no new turn starts, turns in flight finish, the remaining runs end
cancelled with the reason "budget reached", and the spend the API answers is the recorded usage priced
by the table (services/budgets.py). With an LLM analyst, the spend is every call the provider answered
for the batch: the turns and the post-run analyses."""

from __future__ import annotations

from decimal import Decimal
from typing import Any

import pytest

from analytics.models import RunAnalysis
from negotiation.models import Batch, Message, NegotiationRun
from negotiation.services.batches import batch_create
from negotiation.services.budgets import batch_spend
from negotiation.services.scenarios import sample_session_load
from tests.api.conftest import client_for
from tests.conftest import wait_for, wait_for_batch
from tests.factories import UserFactory

pytestmark = [pytest.mark.django_db(transaction=True), pytest.mark.worker]

AGENTS = {"buyer": {"profile": "openai-compatible"}, "seller": {"profile": "openai-compatible"},
          "analyst": {"strategy": "linear"}}
WORKER_THREADS = 8  # tests/conftest.py::start_worker: at most this many turns are in flight at once
IN, OUT = Decimal("0.15"), Decimal("0.60")  # gpt-4o-mini in the price table, dollars per million


def _priced(batch: Batch) -> tuple[Decimal, list[Decimal]]:
    """The recorded usage priced here, independently of services/budgets.py: total and per message."""
    costs = [(IN * m.prompt_tokens + OUT * m.completion_tokens) / 1_000_000
             for m in Message.objects.filter(run__batch=batch)]
    return sum(costs, Decimal(0)), costs


@pytest.mark.parametrize("kind", ["usd", "tokens"])
def test_a_budget_stops_the_batch_with_the_reason_and_true_spend(celery_worker: Any, llm: Any, kind: str) -> None:
    session = sample_session_load()
    # given what the whole batch costs without a budget (the scripted fake answers the same seeds alike)
    full = batch_create(session=session, item_name="usb-c cable", runs=12, agents=AGENTS, max_rounds=3,
                        base_seed=500)
    wait_for_batch(full.pk, worker=celery_worker)
    full_spend = batch_spend(batch_id=full.pk)
    assert full_spend.tokens > 0 and full_spend.usd == _priced(full)[0]
    owner = UserFactory(username=f"budget-{kind}")
    # when the same batch runs with a budget of about a third of that
    if kind == "usd":
        budget = {"budget_usd": (full_spend.usd / 3).quantize(Decimal("0.000001"))}
    else:
        budget = {"budget_tokens": full_spend.tokens // 3}
    batch = batch_create(session=session, item_name="usb-c cable", runs=12, agents=AGENTS, max_rounds=3,
                         base_seed=500, owner=owner, **budget)
    wait_for_batch(batch.pk, worker=celery_worker)
    batch.refresh_from_db()
    # then the budget stopped it, and says so
    assert (batch.status, batch.stop_reason) == ("cancelled", "budget reached")
    assert batch.finished_at is not None
    runs = list(NegotiationRun.objects.filter(batch=batch))
    cancelled = [r for r in runs if r.status == "cancelled"]
    assert cancelled and all(r.error == "budget reached" for r in cancelled)
    assert {r.status for r in runs} <= {"completed", "cancelled"}
    # no cancelled run has an outcome; a completed one does
    assert all(not hasattr(r, "outcome") or r.outcome is None for r in cancelled)
    # and the spend is the recorded usage priced by the table
    spend = batch_spend(batch_id=batch.pk)
    total, costs = _priced(batch)
    tokens = sum(m.prompt_tokens + m.completion_tokens for m in Message.objects.filter(run__batch=batch))
    assert spend.usd == total and spend.tokens == tokens
    # it reached the budget, and passed it by no more than the turns that were in flight
    if kind == "usd":
        assert budget["budget_usd"] <= spend.usd <= budget["budget_usd"] + WORKER_THREADS * max(costs)
        assert spend.usd < full_spend.usd
    else:
        per_msg = max(m.prompt_tokens + m.completion_tokens for m in Message.objects.filter(run__batch=batch))
        assert budget["budget_tokens"] <= spend.tokens <= budget["budget_tokens"] + WORKER_THREADS * per_msg
        assert spend.tokens < full_spend.tokens
    # the API answers the same spend and the reason
    body = client_for(owner).get(f"/api/batches/{batch.pk}").json()
    assert (body["status"], body["stop_reason"]) == ("cancelled", "budget reached")
    assert body["spend"] == spend.as_dict() and Decimal(body["spend"]["usd"]) == total
    print(f"budget {budget}; spent {spend.as_dict()}; runs completed "
          f"{sum(r.status == 'completed' for r in runs)}, cancelled {len(cancelled)} of {len(runs)}")


LLM_ANALYST = {**AGENTS, "analyst": {"profile": "openai-compatible"}}


def _wait_for_analyses(batch: Batch) -> None:
    completed = NegotiationRun.objects.filter(batch=batch, status="completed")
    wait_for(lambda: RunAnalysis.objects.filter(run__in=completed, status="done").count() == completed.count(),
             timeout=120, what=f"the analyses of batch {batch.pk}")


def _served(llm: Any) -> tuple[int, int, list[dict]]:
    """What the provider answered (prompt and completion tokens), and its answers to the analyst."""
    ok = [r for r in llm.requests if r["status"] == 200]
    analyst = [r for r in ok if r["text"].startswith("You are a negotiation analyst")]
    return sum(r["prompt_tokens"] for r in ok), sum(r["completion_tokens"] for r in ok), analyst


def test_the_post_run_analysts_calls_are_in_the_spend_and_count_toward_the_budget(celery_worker: Any,
                                                                                    llm: Any) -> None:
    session = sample_session_load()
    owner = UserFactory(username="budget-analyst")
    # given a batch whose analyst is an LLM too, run to its end and analysed
    full = batch_create(session=session, item_name="usb-c cable", runs=12, agents=LLM_ANALYST, max_rounds=3,
                        base_seed=600, owner=owner)
    wait_for_batch(full.pk, worker=celery_worker)
    _wait_for_analyses(full)
    # then its spend is every call the provider answered: the turns' and the analyses'
    prompt, completion, analyst = _served(llm)
    spend = batch_spend(batch_id=full.pk)
    assert len(analyst) >= 12 and (spend.prompt_tokens, spend.completion_tokens) == (prompt, completion)
    analysed = RunAnalysis.objects.filter(batch=full)
    assert sum(a.prompt_tokens + a.completion_tokens for a in analysed) == \
        sum(r["prompt_tokens"] + r["completion_tokens"] for r in analyst) > 0
    assert spend.usd == _priced(full)[0] + sum(((IN * a.prompt_tokens + OUT * a.completion_tokens) / 1_000_000
                                                for a in analysed), Decimal(0))
    body = client_for(owner).get(f"/api/batches/{full.pk}").json()
    assert body["spend"] == spend.as_dict()
    # when the same batch runs with a token budget of about a third of that
    llm.reset()
    budget = spend.tokens // 3
    batch = batch_create(session=session, item_name="usb-c cable", runs=12, agents=LLM_ANALYST, max_rounds=3,
                         base_seed=600, owner=owner, budget_tokens=budget)
    wait_for_batch(batch.pk, worker=celery_worker)
    _wait_for_analyses(batch)
    batch.refresh_from_db()
    # then the budget stopped it, its spend is still every answered call, analyses included, and it passed
    # the budget by no more than the calls that were in flight (the worker's threads)
    assert (batch.status, batch.stop_reason) == ("cancelled", "budget reached")
    prompt, completion, analyst = _served(llm)
    spent = batch_spend(batch_id=batch.pk)
    assert (spent.prompt_tokens, spent.completion_tokens) == (prompt, completion)
    # an analysis that came after the budget was reached did not call the analyst (how many did depends
    # on when each run's analysis ran); those that did are counted, call by call
    analyses = list(RunAnalysis.objects.filter(batch=batch))
    assert analyses and all(a.source == "llm" or "budget is reached" in a.error for a in analyses)
    assert sum(a.prompt_tokens + a.completion_tokens for a in analyses) == \
        sum(r["prompt_tokens"] + r["completion_tokens"] for r in analyst)
    per_call = max(r["prompt_tokens"] + r["completion_tokens"] for r in llm.requests if r["status"] == 200)
    assert budget <= spent.tokens <= budget + WORKER_THREADS * per_call
    print(f"analyst calls {len(analyst)} of {len(analyses)} analyses; full batch {spend.as_dict()}; budget "
          f"{budget} tokens, spent {spent.as_dict()}")

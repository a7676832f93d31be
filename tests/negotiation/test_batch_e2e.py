"""A whole batch through a real Celery worker process, Postgres, Redis and the real openai client.

The LLM is the fake OpenAI-compatible server on loopback running scripted negotiators, so the
numbers are checkable: every deal is inside the buyer's range and above the chosen seller's floor.
"""

from __future__ import annotations

from decimal import Decimal
from typing import Any

import pytest

from negotiation.models import Batch, Message, NegotiationRun, RunEvent
from negotiation.services.batches import batch_create
from negotiation.services.scenarios import sample_session_load
from tests.conftest import wait_for_batch
from tests.fakes.policies import negotiation

pytestmark = [pytest.mark.django_db(transaction=True), pytest.mark.worker]

LLM_AGENTS = {"buyer": {"profile": "openai-compatible"}, "seller": {"profile": "openai-compatible"},
              "analyst": {"profile": "openai-compatible"}}


def test_a_batch_runs_to_completion_on_the_worker(celery_worker: Any, llm: Any) -> None:
    # given the spec's sample session and prompts captured at the HTTP boundary
    prompts: list[str] = []

    def capture(req: Any) -> str:
        prompts.append(req.text)
        return negotiation(req)

    llm.policy = capture
    session = sample_session_load()
    # when a batch of 6 runs is created and the worker plays it
    batch = batch_create(session=session, item_name="usb-c cable", runs=6, agents=LLM_AGENTS, max_rounds=4,
                         base_seed=10)
    wait_for_batch(batch.pk, worker=celery_worker)
    # then every run completed with an outcome, and the batch is marked completed
    batch.refresh_from_db()
    assert batch.status == Batch.Status.COMPLETED and batch.finished_at is not None
    runs = list(NegotiationRun.objects.filter(batch=batch).select_related("outcome"))
    assert len(runs) == 6
    assert {r.status for r in runs} == {"completed"}
    assert [r.seed for r in sorted(runs, key=lambda r: r.seed)] == list(range(10, 16))
    sellers = {s["handle"]: s for s in runs[0].scenario["sellers"]}
    assert set(sellers) == {"@TechMart", "@CableHouse", "@QuickTech", "@BudgetWires"}
    for run in runs:
        out = run.outcome
        msgs = list(Message.objects.filter(run=run))
        # each addressed seller answered each round exactly once
        for buyer_msg in (m for m in msgs if m.sender == "buyer" and m.recipients):
            replies = [m.sender for m in msgs if m.round_no == buyer_msg.round_no and m.sender_type == "seller"]
            assert sorted(replies) == sorted(buyer_msg.recipients)
        assert all(m.llm_calls >= 1 and m.prompt_tokens > 0 and m.llm_model for m in msgs)
        if out.decision == "deal":
            assert Decimal("5.00") <= out.final_price <= Decimal("9.00")
            assert out.final_price >= Decimal(sellers[out.chosen_handle]["least_price"])
            offered = {m.price for m in msgs if m.sender == out.chosen_handle}
            assert out.final_price in offered
    assert any(r.outcome.decision == "deal" for r in runs)
    # the scripted agents neither leak nor break rules, and their output never needs a fallback
    assert not RunEvent.objects.filter(run__batch=batch, kind__in=["leak", "fallback"]).exists()
    # and no prompt ever carried another party's private numbers
    buyer_max, floors = "9.00", {h: (s["cost_price"], s["least_price"]) for h, s in sellers.items()}
    for text in prompts:
        if "You are a negotiation analyst" in text:
            continue  # the post-deal analyst reads the finished run whole, private numbers included, by design
        if "strategic buyer" in text:
            assert not any(v in text for pair in floors.values() for v in pair)
        else:
            me = next(h for h in sellers if f"You are {h}," in text)
            assert f"${buyer_max}" not in text and "Maximum acceptable" not in text
            assert not any(v in text for h, pair in floors.items() if h != me for v in pair)

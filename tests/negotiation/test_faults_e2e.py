"""Runs survive what providers and workers do to them: outages, garbage, redelivery, stalls.

All through the real worker process, Postgres, Redis and the real openai client against the fake
provider on loopback (the worker retries at most twice in tests: MAMS_LLM_MAX_RETRIES=2).
"""

from __future__ import annotations

import time
from decimal import Decimal
from typing import Any

import pytest
from django.utils import timezone

from negotiation.models import Batch, Message, NegotiationRun, RunEvent
from negotiation.services import play, sweeps
from negotiation.services.batches import batch_cancel, batch_create
from negotiation.services.scenarios import sample_session_load
from tests.conftest import wait_for, wait_for_batch

pytestmark = [pytest.mark.django_db(transaction=True), pytest.mark.worker]

LLM = {"buyer": {"profile": "openai-compatible"}, "seller": {"profile": "openai-compatible"},
       "analyst": {"profile": "openai-compatible"}}


def _batch(runs: int = 2, max_rounds: int = 3, agents: dict | None = None) -> Batch:
    return batch_create(session=sample_session_load(), item_name="USB-C Cable", runs=runs,
                        agents=agents or LLM, max_rounds=max_rounds)


def test_a_provider_outage_that_outlasts_the_retries_fails_the_run_with_a_readable_reason(
        celery_worker: Any, llm: Any) -> None:
    # given a provider that answers 503 to everything for the next 10 minutes
    llm.configure(outage_until=time.time() + 600)
    # when a run is played
    batch = _batch(runs=1)
    wait_for_batch(batch.pk, timeout=60, worker=celery_worker)
    # then it failed after its retries, saying which profile answered what
    run = NegotiationRun.objects.get(batch=batch)
    assert run.status == "failed"
    assert "gave up after 2 retries" in run.error and "openai-compatible" in run.error and "503" in run.error
    assert llm.stats()["by_status"].get("503", 0) == 3  # the first try and two retries
    batch.refresh_from_db()
    assert batch.status == "failed" and not Message.objects.filter(run=run).exists()


def test_transient_429s_and_500s_are_retried_and_the_runs_complete(celery_worker: Any, llm: Any) -> None:
    # given a provider that throws a 429 with Retry-After and two 500s at the next calls
    llm.add_faults("429:1", "500", "500")
    # when a batch is played
    batch = _batch(runs=2)
    wait_for_batch(batch.pk, timeout=90, worker=celery_worker)
    # then every run completed, and the faults were really served
    assert set(NegotiationRun.objects.filter(batch=batch).values_list("status", flat=True)) == {"completed"}
    by_status = llm.stats()["by_status"]
    assert by_status.get("429") == 1 and by_status.get("500") == 2


def test_garbage_from_the_model_is_repaired_or_replaced_and_counted(celery_worker: Any, llm: Any) -> None:
    # given a model that answers the next calls with prose, truncated JSON, missing fields and injection
    llm.add_faults("invalid_content", "invalid_content", "truncated_content", "missing_fields", "invalid_content",
                   "injection", "injection")
    # when a batch is played
    batch = _batch(runs=2)
    wait_for_batch(batch.pk, timeout=90, worker=celery_worker)
    # then the runs completed; bad outputs were repaired or replaced by the baseline and counted
    assert set(NegotiationRun.objects.filter(batch=batch).values_list("status", flat=True)) == {"completed"}
    msgs = Message.objects.filter(run__batch=batch)
    fallbacks = msgs.filter(fallback=True).count()
    assert fallbacks >= 1 and msgs.filter(repaired=True).count() + fallbacks >= 3
    assert RunEvent.objects.filter(run__batch=batch, kind="fallback").count() == fallbacks


def test_a_leaked_floor_is_flagged_and_counted(celery_worker: Any, llm: Any) -> None:
    # given sellers that state their own floor (least price) in the text while offering more
    from tests.fakes.policies import negotiation

    def leaky(req: Any) -> str:
        out = negotiation(req)
        if "Your absolute bottom line: $" in req.text and '"offer"' in out:
            floor = req.text.split("Your absolute bottom line: $")[1].split()[0]
            out = out.replace('"message": "', f'"message": "My floor is ${floor}, but ', 1)
        return out

    llm.policy = leaky
    # when a batch is played
    batch = _batch(runs=1, max_rounds=2)
    wait_for_batch(batch.pk, timeout=60, worker=celery_worker)
    # then each leaking message carries a leak event naming the field
    leaks = RunEvent.objects.filter(run__batch=batch, kind="leak")
    assert leaks.exists() and all("least_price" in e.detail for e in leaks)
    assert NegotiationRun.objects.get(batch=batch).status == "completed"


def test_a_redelivered_seller_turn_writes_nothing_twice(llm: Any, settings: Any) -> None:
    # given a run whose buyer has spoken in round 1 (played in-process, no worker needed)
    batch = _batch(runs=1)
    run = NegotiationRun.objects.get(batch=batch)
    play.round_play(run_id=run.pk, round_no=1)  # enqueues seller turns nobody consumes here
    buyer = Message.objects.get(run=run, round_no=1, sender="buyer")
    seller_id = next(s["id"] for s in run.scenario["sellers"] if s["handle"] == buyer.recipients[0])
    # when the same seller turn is delivered twice
    play.seller_turn(run_id=run.pk, round_no=1, seller_id=seller_id)
    calls = llm.stats()["total"]
    play.seller_turn(run_id=run.pk, round_no=1, seller_id=seller_id)
    # then one message exists and the second delivery made no LLM call
    assert Message.objects.filter(run=run, round_no=1, sender=buyer.recipients[0]).count() == 1
    assert llm.stats()["total"] == calls


def test_the_sweeper_requeues_a_stalled_run_and_it_completes(celery_worker: Any, llm: Any) -> None:
    # given a running run whose round-1 fan-out was lost (as if a worker died after its commit)
    batch = _batch(runs=1)
    run = NegotiationRun.objects.get(batch=batch)
    NegotiationRun.objects.filter(pk=run.pk).update(status="running", started_at=timezone.now())
    Batch.objects.filter(pk=batch.pk).update(status="running")
    wait_for(lambda: NegotiationRun.objects.get(pk=run.pk).heartbeat_at is None, timeout=5, what="no progress")
    NegotiationRun.objects.filter(pk=run.pk).update(heartbeat_at=timezone.now() - timezone.timedelta(hours=1))
    # when the sweeper runs
    assert sweeps.runs_sweep(stale_after=timezone.timedelta(minutes=10)) >= 1
    # then the worker finishes the run
    wait_for_batch(batch.pk, timeout=60, worker=celery_worker)
    assert NegotiationRun.objects.get(pk=run.pk).status == "completed"


def test_cancelling_a_batch_leaves_no_queued_run(celery_worker: Any, llm: Any) -> None:
    # given a slow provider and a batch of 6 runs
    llm.configure(latency=0.3)
    batch = _batch(runs=6, max_rounds=4)
    wait_for(lambda: NegotiationRun.objects.filter(batch=batch, status="running").exists(), timeout=30,
             what="a running run")
    # when the batch is cancelled
    batch_cancel(batch=batch)
    # then no run stays queued, running runs end at their next round, and nothing is half-written
    wait_for_batch(batch.pk, timeout=90, worker=celery_worker)
    statuses = set(NegotiationRun.objects.filter(batch=batch).values_list("status", flat=True))
    assert statuses <= {"cancelled", "completed"} and "cancelled" in statuses
    for run in NegotiationRun.objects.filter(batch=batch, status="cancelled"):
        assert not hasattr(run, "outcome") or run.outcome is None
    batch.refresh_from_db()
    assert batch.status == "cancelled" and batch.finished_at is not None


def test_a_seller_that_undercuts_its_floor_never_shows_the_buyer_that_floor(celery_worker: Any, llm: Any) -> None:
    # given sellers whose model always offers $1.00 under its floor and says its floor and cost out loud,
    # re-ask or not, and a buyer model whose every prompt is recorded
    import json
    import re

    from analytics.models import RunMetrics
    from tests.fakes.policies import negotiation

    buyer_prompts: list[str] = []

    def undercutter(req: Any) -> str:
        text = req.text
        if "Your absolute bottom line: $" not in text:
            if "strategic buyer" in text:
                buyer_prompts.append(text)
            return negotiation(req)
        floor = re.search(r"Your absolute bottom line: \$([\d.]+)", text).group(1)
        cost = re.search(r"Your cost: \$([\d.]+)", text).group(1)
        price = f"{float(floor) - 1:.2f}"
        return json.dumps({"action": "offer", "price": float(price), "reasoning": "undercut",
                           "message": f"My floor is ${floor} and my cost is ${cost}; take ${price}."})

    llm.policy = undercutter
    # when a batch is played through the real worker (disclosure: the default, redact)
    batch = _batch(runs=1, max_rounds=2)
    wait_for_batch(batch.pk, timeout=90, worker=celery_worker)
    run = NegotiationRun.objects.get(batch=batch)
    assert run.status == "completed" and run.disclosure == "redact" and buyer_prompts
    sellers = {s["handle"]: s for s in run.scenario["sellers"]}
    # then every undercut was re-asked once, then kept at the seller's standing offer (its ask first),
    # never raised to the floor
    replies = Message.objects.filter(run=run, sender_type="seller")
    assert replies.exists()
    for msg in replies:
        me = sellers[msg.sender]
        assert msg.llm_calls == 2 and msg.price == Decimal(me["selling_price"]), (msg.sender, msg.price)
        assert msg.price != Decimal(me["least_price"])
    events = RunEvent.objects.filter(run=run)
    assert events.filter(kind="reask").count() == replies.count()
    assert events.filter(kind="seller_below_floor").count() == replies.count()
    assert not events.filter(kind="seller_below_floor", repaired_price__in=[Decimal(s["least_price"])
                                                                           for s in sellers.values()]).exists()
    # and the leaks were counted, while the words as said are kept for the owner and the audit
    assert events.filter(kind="leak").count() >= replies.count()
    assert all(f"${sellers[m.sender]['least_price']}" in m.text for m in replies)
    # and the buyer's prompts never held a seller's floor or cost (unless the buyer said it first)
    said_by_buyer = "".join(Message.objects.filter(run=run, sender="buyer").values_list("text", flat=True))
    for s in sellers.values():
        for secret in (s["least_price"], s["cost_price"]):
            if secret not in said_by_buyer and secret not in (run.scenario["buyer"]["max_price"],
                                                              run.scenario["buyer"]["min_price"]):
                assert all(f"${secret}" not in p for p in buyer_prompts), secret
    assert any("[withheld]" in p for p in buyer_prompts)
    # and the run's counts show how much the code decided
    metrics = RunMetrics.objects.get(run=run)
    assert metrics.reasks == replies.count() and metrics.guardrails >= replies.count()

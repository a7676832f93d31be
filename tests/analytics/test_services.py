"""analytics/services.py: the metrics row written with the Outcome, on played and on hand-made runs."""

from __future__ import annotations

from decimal import Decimal as D
from typing import Any

import pytest
from django.utils import timezone

from analytics.models import RunMetrics
from analytics.services import message_quality_record, metrics_backfill, run_metrics_record
from negotiation.models import Message, NegotiationRun, Outcome, RunEvent
from negotiation.services.batches import batch_create
from tests.analytics.conftest import BASELINE

pytestmark = pytest.mark.django_db


def test_a_played_run_has_its_metrics_written_with_its_outcome(played_batch: Any) -> None:
    # given a batch played to its end with baseline agents
    batch = played_batch(runs=2)
    for run in NegotiationRun.objects.filter(batch=batch).select_related("outcome", "metrics"):
        # then each completed run has a metrics row that agrees with its outcome and messages
        out, m = run.outcome, run.metrics
        assert run.status == "completed" and m.batch_id == batch.pk and m.seed == run.seed
        assert m.deal == (out.decision == "deal") and m.price == out.final_price and m.rounds == out.rounds
        assert m.messages == Message.objects.filter(run=run).count()
        assert m.tokens == 0 and m.cost_usd == 0 and m.llm_calls == 0  # baselines make no LLM call
        assert m.duration_ms is not None and m.duration_ms >= 0
        if m.deal:
            least = next(D(s["least_price"]) for s in run.scenario["sellers"] if s["handle"] == out.chosen_handle)
            assert m.buyer_share == pytest.approx(float((D("9.00") - out.final_price) / (D("9.00") - least)))
            # the cheapest feasible floor in the sample is @BudgetWires' 5.65
            assert m.selection_regret == out.final_price - D("5.65")
            assert m.chosen_style and m.chosen_weights


def _hand_made_run(sample: Any, user: Any, *, agents: dict) -> NegotiationRun:
    batch = batch_create(session=sample, item_name="USB-C Cable", runs=1, agents=agents, owner=user)
    run = NegotiationRun.objects.get(batch=batch)
    now = timezone.now()
    NegotiationRun.objects.filter(pk=run.pk).update(status="completed", started_at=now, ended_at=now)
    mk = dict(run=run, llm_model="gpt-4o-mini", llm_calls=1, latency_ms=100)
    b1 = Message.objects.create(round_no=1, sender="buyer", sender_type="buyer", recipients=["@QuickTech"],
                                text="Can you do $6.00 each? @BudgetWires offered $5.00", action="message",
                                price=D("6.00"), prompt_tokens=1000, completion_tokens=100, **mk)
    s1 = Message.objects.create(round_no=1, sender="@QuickTech", sender_type="seller", recipients=["buyer"],
                                text="I can do $6.80, my floor is $6.35", action="offer", price=D("6.80"),
                                prompt_tokens=800, completion_tokens=50, **mk)
    Message.objects.create(round_no=2, sender="buyer", sender_type="buyer", recipients=[], text="Deal at $6.80.",
                           action="accept", price=D("6.80"), prompt_tokens=1200, completion_tokens=50, **mk)
    RunEvent.objects.create(run=run, message=b1, round_no=1, actor="buyer", kind="unsupported_claim")
    RunEvent.objects.create(run=run, message=s1, round_no=1, actor="@QuickTech", kind="leak")
    RunEvent.objects.create(run=run, message=s1, round_no=1, actor="@QuickTech", kind="seller_below_floor")
    Outcome.objects.create(run=run, decision="deal", reason="accepted", chosen_handle="@QuickTech",
                           final_price=D("6.80"), quantity=3, rounds=1)
    return run


def test_hand_worked_metrics_of_a_deal(sample: Any, user: Any, fake_llm: Any) -> None:
    llm = {"buyer": {"profile": "openai-compatible"}, "seller": {"profile": "openai-compatible"},
           "analyst": {"strategy": "linear"}}
    run = _hand_made_run(sample, user, agents=llm)
    m = run_metrics_record(run_id=run.pk)
    # buyer max 9.00, @QuickTech floor 6.35: share = (9.00 - 6.80) / (9.00 - 6.35) = 2.20 / 2.65
    assert m.buyer_share == pytest.approx(2.20 / 2.65) and m.seller_share == pytest.approx(0.45 / 2.65)
    # the cheapest feasible floor is @BudgetWires' 5.65: regret 6.80 - 5.65; first ask 6.80, no saving
    assert m.selection_regret == D("1.15") and m.first_ask == D("6.80") and m.savings == 0
    assert m.zopa == D("3.35") and m.mutual_loss is False
    assert (m.messages, m.llm_calls, m.prompt_tokens, m.completion_tokens, m.tokens) == (3, 3, 3000, 200, 3200)
    # gpt-4o-mini at $0.15 / $0.60 per 1M: 3000 * 0.15 + 200 * 0.60 = 570 per 1M
    assert m.cost_usd == D("0.00057")
    assert (m.leaks, m.guardrails, m.unsupported_claims, m.claim_inconsistent, m.fallbacks) == (1, 1, 1, 0, 0)
    assert m.latency_ms == 300 and m.chosen_style == "neutral" and m.chosen_weights == "0.50/0.50"
    # recording again is idempotent
    assert run_metrics_record(run_id=run.pk).pk == m.pk and RunMetrics.objects.count() == 1


def test_the_local_profile_costs_nothing_and_an_unpriced_model_has_no_cost(sample: Any, user: Any, fake_llm: Any,
                                                                            settings: Any) -> None:
    # (a launch asks the local server for its models: the fake LLM answers for it here)
    settings.LLM_PROFILES = {**settings.LLM_PROFILES,
                             "local": {**settings.LLM_PROFILES["local"], "base_url": fake_llm.base_url}}
    local = {"buyer": {"profile": "local"}, "seller": {"profile": "local"}, "analyst": {"strategy": "linear"}}
    run = _hand_made_run(sample, user, agents=local)
    assert run_metrics_record(run_id=run.pk).cost_usd == 0
    settings.MAMS_MODEL_PRICES = {}
    NegotiationRun.objects.filter(pk=run.pk).update(agents={**run.agents, "buyer": {"profile": "openai-compatible"}})
    assert run_metrics_record(run_id=run.pk).cost_usd is None


def test_message_quality_is_scored_locally_per_message(sample: Any, user: Any) -> None:
    run = _hand_made_run(sample, user, agents=BASELINE)
    assert message_quality_record(run_id=run.pk) == 3
    q = {m.sender + str(m.round_no): m.quality for m in Message.objects.filter(run=run)}
    assert q["buyer1"]["hallucination"] == 1.0 and q["buyer1"]["source"] == "local"
    assert q["@QuickTech1"]["leak_free"] == 0.0 and q["@QuickTech1"]["rule_adherence"] == 0.0
    assert q["buyer2"]["coherence"] == 1.0 and q["buyer2"]["hallucination"] == 0.0


def test_backfill_records_runs_that_finished_without_metrics(sample: Any, user: Any) -> None:
    run = _hand_made_run(sample, user, agents=BASELINE)
    assert not RunMetrics.objects.filter(run=run).exists()
    assert metrics_backfill() == 1 and metrics_backfill() == 0
    assert RunMetrics.objects.get(run=run).deal is True


def test_the_backfill_command_records_metrics(sample: Any, user: Any) -> None:
    from io import StringIO

    from django.core.management import call_command

    run = _hand_made_run(sample, user, agents=BASELINE)
    out = StringIO()
    call_command("metrics_backfill", stdout=out)
    assert "recorded metrics for 1 run(s)" in out.getvalue() and RunMetrics.objects.filter(run=run).exists()

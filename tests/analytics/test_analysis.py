"""The post-deal analysis in-process: the analyst LLM's verdict, validation, retries, local fallbacks.

The analyst is the fake OpenAI-compatible server (its `analyst` policy scores the buyer from the
measured numbers in the prompt), so the real openai client, gateway and limiter run unchanged.
"""

from __future__ import annotations

from typing import Any

import pytest

from analytics.analysis import Verdict, parse_verdict, run_analyse
from analytics.models import RunAnalysis
from analytics.tasks import analyse_run_task
from negotiation.agents.outputs import OutputError
from negotiation.models import Batch, Message, NegotiationRun
from negotiation.services.budgets import batch_spend
from tests.fakes.policies import negotiation

pytestmark = pytest.mark.django_db

LLM_ANALYST = {"buyer": {"strategy": "linear"}, "seller": {"strategy": "linear"},
               "analyst": {"profile": "openai-compatible"}}


def _one_run(played_batch: Any, agents: dict = LLM_ANALYST) -> NegotiationRun:
    batch = played_batch(runs=1, agents=agents)
    return NegotiationRun.objects.select_related("metrics", "outcome").get(batch=batch)


def test_the_analyst_llm_gives_a_validated_verdict_with_reasons(played_batch: Any, llm: Any) -> None:
    # given a finished run whose analyst is an LLM profile (and the prompts captured at the HTTP boundary)
    prompts: list[str] = []
    llm.policy = lambda req: prompts.append(req.text) or negotiation(req)
    run = _one_run(played_batch)
    # when it is analysed
    a = run_analyse(run_id=run.pk)
    # then the verdict comes from the LLM, in range, with one or two recommendations and reasons
    assert a.status == "done" and a.source == "llm" and a.error == "" and a.model
    assert 0 <= a.deal_quality <= 1 and a.strategy_effectiveness in {"low", "medium", "high"}
    assert a.coherence == 0.9 and a.hallucination == 0.05 and 1 <= len(a.recommendations) <= 2 and a.reasons
    if run.metrics.buyer_share is not None:
        assert a.deal_quality == pytest.approx(run.metrics.buyer_share, abs=1e-3)
    # and the local scorers' verdict is stored beside it, per-message quality is filled, tokens counted
    assert set(a.local) >= {"deal_quality", "strategy_effectiveness", "coherence", "hallucination",
                            "recommendations", "reasons"}
    assert a.prompt_tokens > 0 and a.attempts == 1
    assert all(m.quality.get("source") == "local" for m in Message.objects.filter(run=run))
    run.outcome.refresh_from_db()
    assert run.outcome.galileo_overall_score is not None
    # and the analyst saw everything: the private floors and the transcript
    assert len(prompts) == 1 and "floor $5.65" in prompts[0] and "Transcript:" in prompts[0]


def test_analysing_twice_changes_nothing(played_batch: Any, llm: Any) -> None:
    run = _one_run(played_batch)
    first = run_analyse(run_id=run.pk)
    calls = len(llm.requests)
    again = run_analyse(run_id=run.pk)
    assert again.updated_at == first.updated_at and len(llm.requests) == calls


def test_a_baseline_analyst_is_replaced_by_the_local_scorers(played_batch: Any) -> None:
    run = _one_run(played_batch, agents={"buyer": {"strategy": "linear"}, "seller": {"strategy": "linear"},
                                         "analyst": {"strategy": "linear"}})
    a = run_analyse(run_id=run.pk)
    assert a.status == "done" and a.source == "local" and "baseline" in a.error
    assert a.deal_quality == a.local["deal_quality"] and a.recommendations == a.local["recommendations"]


def test_a_base_model_analyst_is_replaced_by_the_local_scorers(played_batch: Any, llm: Any, settings: Any) -> None:
    settings.LLM_PROFILES = {**settings.LLM_PROFILES, "fake-base": {
        **settings.LLM_PROFILES["openai-compatible"], "prompt_format": "completion", "api_key": "k",
        "api_key_env": None}}
    run = _one_run(played_batch, agents={**LLM_ANALYST, "analyst": {"profile": "fake-base"}})
    a = run_analyse(run_id=run.pk)
    assert a.source == "local" and "base model" in a.error and not llm.requests


def test_an_unusable_answer_gets_one_repair_then_the_local_verdict(played_batch: Any, llm: Any) -> None:
    llm.policy = lambda req: '{"deal_quality": 7, "strategy_effectiveness": "great"}'
    run = _one_run(played_batch)
    a = run_analyse(run_id=run.pk)
    assert a.status == "done" and a.source == "local" and "after one repair" in a.error
    assert len(llm.requests) == 2


def test_every_answered_analyst_call_is_in_the_batchs_spend_even_when_its_verdict_is_not_used(
        played_batch: Any, llm: Any) -> None:
    # given a run played by baselines (its turns cost nothing) and an analyst whose answers are unusable
    llm.policy = lambda req: '{"deal_quality": 7, "strategy_effectiveness": "great"}'
    run = _one_run(played_batch)
    # when it is analysed: one call and one repair, both answered (and paid for), neither used
    a = run_analyse(run_id=run.pk)
    assert a.source == "local" and len(llm.requests) == 2
    # then both calls' tokens, as the provider counted them, are on the analysis and in the batch's spend
    served = (sum(r["prompt_tokens"] for r in llm.requests), sum(r["completion_tokens"] for r in llm.requests))
    assert (a.prompt_tokens, a.completion_tokens) == served and a.model
    spend = batch_spend(batch_id=run.batch_id)
    assert (spend.prompt_tokens, spend.completion_tokens) == served
    # and the page names no model for a verdict the LLM did not give
    assert a.model not in _run_page_verdict_line(run)


def _run_page_verdict_line(run: NegotiationRun) -> str:
    from django.test import Client
    from django.urls import reverse

    client = Client()
    client.force_login(run.batch.owner)
    response = client.get(reverse("analytics:run", args=[run.pk]))
    assert response.status_code == 200
    page = response.content.decode()
    return page[page.index("verdict from the"):][:300]


def test_an_analysis_after_the_batchs_budget_is_reached_does_not_call_the_llm(
        played_batch: Any, llm: Any, django_capture_on_commit_callbacks: Any) -> None:
    # given a batch of two played runs with a budget of 1 token, not yet spent (baselines cost nothing)
    batch = played_batch(runs=2, agents=LLM_ANALYST)
    Batch.objects.filter(pk=batch.pk).update(budget_tokens=1)
    first, second = NegotiationRun.objects.filter(batch=batch).order_by("seed")
    # when the first run's analysis calls the analyst (its usage reaches the budget's live sums on commit)
    with django_capture_on_commit_callbacks(execute=True):
        assert run_analyse(run_id=first.pk).source == "llm"
    calls = len(llm.requests)
    # then the second run's analysis does not call it: the local scorers stand in, and say why
    a = run_analyse(run_id=second.pk)
    assert len(llm.requests) == calls and a.source == "local" and "budget is reached" in a.error
    assert batch_spend(batch_id=batch.pk).tokens == sum(r["prompt_tokens"] + r["completion_tokens"]
                                                        for r in llm.requests)


def test_a_repair_that_works_is_used(played_batch: Any, llm: Any) -> None:
    answers = iter(["I think it went well!"])
    llm.policy = lambda req: next(answers, None) or negotiation(req)
    a = run_analyse(run_id=_one_run(played_batch).pk)
    assert a.source == "llm" and len(llm.requests) == 2


def test_transient_errors_are_retried_by_the_task(played_batch: Any, llm: Any) -> None:
    run = _one_run(played_batch)
    llm.configure(faults=["503", "429:0"])
    analyse_run_task.apply(args=[str(run.pk)])
    a = RunAnalysis.objects.get(run=run)
    assert a.source == "llm" and a.attempts == 3


def test_a_provider_that_stays_down_ends_in_the_local_verdict_and_the_run_stays_completed(
        played_batch: Any, llm: Any, settings: Any) -> None:
    settings.MAMS_LLM_MAX_RETRIES = 1
    run = _one_run(played_batch)
    llm.configure(faults=["500"] * 5)
    analyse_run_task.apply(args=[str(run.pk)])
    a = RunAnalysis.objects.get(run=run)
    assert a.status == "done" and a.source == "local" and "gave up" in a.error
    run.refresh_from_db()
    assert run.status == "completed"


def test_an_unexpected_error_is_stored_on_the_analysis_not_the_run(played_batch: Any, monkeypatch: Any) -> None:
    from analytics import analysis

    run = _one_run(played_batch)
    monkeypatch.setattr(analysis, "local_verdict", lambda *a, **k: 1 / 0)
    result = analyse_run_task.apply(args=[str(run.pk)])
    assert result.state == "FAILURE"
    a = RunAnalysis.objects.get(run=run)
    assert a.status == "failed" and "ZeroDivisionError" in a.error
    run.refresh_from_db()
    assert run.status == "completed"


def test_the_verdict_is_lenient_about_form_and_strict_about_ranges() -> None:
    v = parse_verdict('Sure: {"deal_quality": 0.5, "strategy_effectiveness": "High", "coherence": 1, '
                      '"hallucination": 0, "recommendations": ["a", "b", "c"], "reasons": ["x", "y"]} hope it helps')
    assert v == Verdict(deal_quality=0.5, strategy_effectiveness="high", coherence=1, hallucination=0,
                        recommendations=["a", "b"], reasons="x y")
    for bad in ['{"deal_quality": 1.5, "strategy_effectiveness": "low", "coherence": 1, "hallucination": 0, '
                '"recommendations": ["a"], "reasons": "r"}',
                '{"deal_quality": 0.5, "strategy_effectiveness": "low", "coherence": 1, "hallucination": 0, '
                '"recommendations": [], "reasons": "r"}', "no json here"]:
        with pytest.raises(OutputError):
            parse_verdict(bad)


def test_a_long_transcript_keeps_its_opening_and_its_ending(played_batch: Any, monkeypatch: Any) -> None:
    from analytics import analysis

    run = _one_run(played_batch)
    monkeypatch.setattr(analysis, "MAX_TRANSCRIPT_LINES", 6)
    prompt = analysis.analyst_prompt(run=run, m=run.metrics)[1]["content"]
    lines = prompt.split("Transcript:\n")[1].splitlines()
    n = Message.objects.filter(run=run).count()
    assert n > 6 and f"({n - 6} messages omitted)" in prompt
    assert lines[0].startswith("R1 buyer") and lines[7].startswith("Outcome:")

"""`--dry-run` on the commands that launch batches (demo, run_experiment, run_suite, replicate): they
print the same estimate as `POST /api/batches` with dry_run (services/estimates.py) and launch nothing:
no batch, no run, nothing queued."""

from __future__ import annotations

import io
import json
from typing import Any

import pytest
import redis
from django.conf import settings
from django.core.management import CommandError, call_command

from mams.queues import Queue
from negotiation.models import Batch, Experiment, NegotiationRun, Session
from negotiation.services.estimates import batch_estimate, estimate_lines

pytestmark = pytest.mark.django_db

LLM = {"profile": "openai-compatible", "model": "gpt-4o-mini"}


def _nothing_launched() -> None:
    assert not Batch.objects.exists() and not NegotiationRun.objects.exists()
    broker = redis.Redis.from_url(settings.REDIS_URL)
    assert not any(broker.llen(q.value) for q in Queue)


def test_demo_dry_run_prints_the_api_estimate_and_launches_nothing(fake_llm: Any) -> None:
    out = io.StringIO()
    call_command("demo", "--dry-run", "--runs", "7", "--max-rounds", "3", "--profile", "openai-compatible",
                 stdout=out)
    text = out.getvalue()
    session = Session.objects.get()
    agents = {"buyer": {"strategy": "llm", "profile": "openai-compatible"},
              "seller": {"strategy": "llm", "profile": "openai-compatible"},
              "analyst": {"strategy": "llm", "profile": "openai-compatible"}}
    expected = batch_estimate(session=session, item_name="USB-C Cable", runs=7, agents=agents, max_rounds=3)
    assert "Dry run, nothing launched" in text
    for line in estimate_lines(expected):
        assert line in text
    assert expected["dollars"] is not None and f"${expected['dollars']}" in text
    _nothing_launched()
    # a bad one says what to fix, launching nothing
    with pytest.raises(CommandError, match="runs: Must be a whole number"):
        call_command("demo", "--dry-run", "--runs", "0", "--profile", "openai-compatible", stdout=io.StringIO())
    _nothing_launched()


def test_run_experiment_dry_run_adds_up_its_conditions(sample: Session, fake_llm: Any) -> None:
    out = io.StringIO()
    agents = json.dumps(dict.fromkeys(("buyer", "seller", "analyst"), LLM))
    call_command("run_experiment", "--session", str(sample.pk), "--item", "USB-C Cable", "--runs", "5",
                 "--max-rounds", "2", "--dry-run", "--condition", f"a={agents}",
                 "--condition", f'b={{"temperature": 0.2, "agents": {agents}}}', stdout=out)
    one = batch_estimate(session=sample, item_name="USB-C Cable", runs=5,
                         agents=dict.fromkeys(("buyer", "seller", "analyst"), LLM), max_rounds=2)
    text = out.getvalue()
    # two conditions alike but for temperature: twice one batch's calls and tokens
    assert f"10 runs, at most {2 * one['calls']} LLM calls, {2 * one['tokens']} tokens" in text, text
    assert not Experiment.objects.exists()
    _nothing_launched()


@pytest.mark.parametrize("command", [
    ["run_suite", "core", "--buyer", "openai-compatible", "--opponent", "baseline:boulware", "--runs", "2",
     "--no-canaries"],
    ["replicate", "negotiationarena", "--buyer", "openai-compatible", "--seller", "baseline:boulware", "--runs", "2"],
])
def test_benchmark_commands_dry_run_estimate_every_batch_and_launch_nothing(command: list[str],
                                                                            fake_llm: Any) -> None:
    from analytics.models import BenchmarkRun

    out = io.StringIO()
    call_command(*command, "--dry-run", stdout=out)
    text = out.getvalue()
    assert "Dry run, nothing launched" in text and "LLM calls" in text, text
    batches = int(text.split("Dry run, nothing launched: ")[1].split(", ")[1].split(" batches")[0])
    assert batches >= 2
    assert not BenchmarkRun.objects.exists()
    _nothing_launched()

"""`POST /api/batches` with `dry_run`: the estimate of a batch (calls, tokens, dollars, wall time and
the inputs behind them), and nothing launched. Prices: negotiation/agents/prices.py."""

from __future__ import annotations

from decimal import Decimal
from typing import Any

import pytest
from django.conf import settings

from negotiation.agents.limiter import Cost, limiter_for
from negotiation.agents.prices import PriceTableError, cost_usd, price_for
from negotiation.models import Batch, NegotiationRun, Session
from negotiation.services import estimates
from tests.api.conftest import BASELINE

pytestmark = pytest.mark.django_db


def _body(sample: Session, model: str, **changes: Any) -> dict:
    agents = {role: {"profile": "openai-compatible", "model": model} for role in ("buyer", "seller", "analyst")}
    return {"session": str(sample.pk), "item_name": "USB-C Cable", "runs": 10, "agents": agents, "max_rounds": 4,
            "dry_run": True, **changes}


def test_a_dry_run_answers_the_estimate_and_launches_nothing(api: Any, sample: Session, fake_llm: Any) -> None:
    r = api.post("/api/batches", _body(sample, "gpt-4o-mini"), format="json")
    assert r.status_code == 200, r.content
    e = r.json()["estimate"]
    sellers = sample.sellers.count()
    # an upper bound: every round, the buyer and every seller; one analysis per run
    assert e["calls"] == 10 * (4 * (1 + sellers) + 1)
    agent_calls = 10 * 4 * (1 + sellers)
    per_call = estimates.PROMPT_TOKENS_PER_CALL
    prompt = 10 * 4 * per_call["buyer"] + 10 * 4 * sellers * per_call["seller"] + 10 * per_call["analyst"]
    completion = (agent_calls * estimates.COMPLETION_TOKENS_PER_AGENT_CALL
                  + 10 * estimates.COMPLETION_TOKENS_PER_ANALYSIS)
    assert (e["prompt_tokens"], e["completion_tokens"]) == (prompt, completion)
    # gpt-4o-mini: $0.15 in, $0.60 out per million
    expected = (Decimal("0.15") * prompt + Decimal("0.60") * completion) / 1_000_000
    assert e["dollars"] == str(expected.quantize(Decimal("0.01")))
    # the profile's configured 60/minute is the only limit known: calls / rate
    assert e["wall_seconds"] == pytest.approx(e["calls"], abs=0.1)
    assert e["inputs"]["prices"]["gpt-4o-mini"]["input_per_million"] == "0.15"
    assert e["inputs"]["calls_per_run"] == {"buyer": 4, "seller": 4 * sellers, "analyst": 1}
    assert not Batch.objects.exists() and not NegotiationRun.objects.exists()


def test_a_model_without_a_price_leaves_dollars_out_and_names_it(api: Any, sample: Session, fake_llm: Any,
                                                                 monkeypatch: pytest.MonkeyPatch) -> None:
    e = api.post("/api/batches", _body(sample, "lab-model-x"), format="json").json()["estimate"]
    assert e["dollars"] is None and e["unpriced_models"] == ["lab-model-x"]
    # MAMS_MODEL_PRICES_JSON adds it
    monkeypatch.setenv("MAMS_MODEL_PRICES_JSON", '{"lab-model-x": {"input": 1, "output": 2}}')
    e = api.post("/api/batches", _body(sample, "lab-model-x"), format="json").json()["estimate"]
    expected = (Decimal(1) * e["prompt_tokens"] + Decimal(2) * e["completion_tokens"]) / 1_000_000
    assert e["dollars"] == str(expected.quantize(Decimal("0.01")))
    assert e["inputs"]["prices"]["lab-model-x"]["source"] == "MAMS_MODEL_PRICES_JSON"


def test_the_providers_stated_limits_shorten_or_lengthen_the_wall_time(api: Any, sample: Session,
                                                                       fake_llm: Any) -> None:
    # the provider said 30 requests a minute for this model (below the configured 60)
    limiter_for(settings.REDIS_URL).observe("openai-compatible:slow-model", {
        "x-ratelimit-limit-requests": "30", "x-ratelimit-remaining-requests": "30",
        "x-ratelimit-reset-requests": "1s"}, cost=Cost())
    e = api.post("/api/batches", _body(sample, "slow-model"), format="json").json()["estimate"]
    assert e["wall_seconds"] == pytest.approx(e["calls"] * 2, abs=0.1)
    assert e["by_model"][0]["limits_from"]["requests"] == "provider"


def test_a_dry_run_of_baseline_agents_costs_nothing(api: Any, sample: Session) -> None:
    e = api.post("/api/batches", {**_body(sample, "x"), "agents": BASELINE}, format="json").json()["estimate"]
    assert (e["calls"], e["tokens"], e["dollars"], e["wall_seconds"]) == (0, 0, "0.00", None)


def test_a_dry_run_with_bad_input_is_400_naming_the_field(api: Any, sample: Session, fake_llm: Any) -> None:
    r = api.post("/api/batches", _body(sample, "gpt-4o-mini", runs=0), format="json")
    assert r.status_code == 400, r.content
    assert "runs" in r.json()["errors"]
    assert not Batch.objects.exists()


def test_price_table_and_its_override(monkeypatch: pytest.MonkeyPatch) -> None:
    assert cost_usd("anthropic/claude-sonnet-4.5", prompt_tokens=1_000_000, completion_tokens=1_000_000) == 18
    assert price_for("nobody/knows") is None
    for bad, message in (("[1]", "must be an object"), ('{"m": {"input": -1, "output": 1}}', "from 0 to 10000"),
                         ('{"m": {"input": "NaN", "output": 1}}', "from 0 to 10000"), ("{", "not valid JSON"),
                         ('{"m": {"input": 1}}', 'exactly "input" and "output"')):
        monkeypatch.setenv("MAMS_MODEL_PRICES_JSON", bad)
        with pytest.raises(PriceTableError, match=message):
            price_for("m")

"""`budget_usd` and `budget_tokens` on `POST /api/batches`: bad budgets are a 400 naming the field with
nothing written; a dollar budget needs a price for every LLM agent's model; the batch answers its
budgets and its spend (services/budgets.py)."""

from __future__ import annotations

from decimal import Decimal
from typing import Any

import pytest

from negotiation.models import Batch, Message, NegotiationRun, Session
from negotiation.services import budgets
from tests.api.conftest import BASELINE

pytestmark = pytest.mark.django_db


def _body(sample: Session, model: str = "gpt-4o-mini", **changes: Any) -> dict:
    agents = {role: {"profile": "openai-compatible", "model": model} for role in ("buyer", "seller", "analyst")}
    return {"session": str(sample.pk), "item_name": "USB-C Cable", "runs": 2, "agents": agents, "max_rounds": 2,
            **changes}


@pytest.mark.parametrize(("field", "value"), [
    ("budget_usd", 0), ("budget_usd", -1), ("budget_usd", "NaN"), ("budget_usd", "Infinity"),
    ("budget_usd", "-Infinity"), ("budget_usd", 1e12), ("budget_usd", "abc"), ("budget_usd", "0.0000001"),
    ("budget_tokens", 0), ("budget_tokens", -5), ("budget_tokens", 10**13), ("budget_tokens", "NaN"),
    ("budget_tokens", 1.5), ("budget_tokens", "lots"),
])
def test_a_bad_budget_is_a_400_naming_the_field(api: Any, sample: Session, fake_llm: Any, field: str,
                                                value: Any) -> None:
    r = api.post("/api/batches", _body(sample, **{field: value}), format="json")
    assert r.status_code == 400, r.content
    assert field in r.json()["errors"], r.content
    assert not Batch.objects.exists() and not NegotiationRun.objects.exists()


def test_a_dollar_budget_for_an_unpriced_model_says_to_add_its_price(api: Any, sample: Session,
                                                                      fake_llm: Any) -> None:
    r = api.post("/api/batches", _body(sample, model="acme/unpriced-1", budget_usd="5"), format="json")
    assert r.status_code == 400, r.content
    assert "MAMS_MODEL_PRICES_JSON" in r.content.decode() and "acme/unpriced-1" in r.content.decode()
    assert "budget_usd" in r.json()["errors"]
    assert not Batch.objects.exists()
    # a token budget needs no price
    r = api.post("/api/batches", _body(sample, model="acme/unpriced-1", budget_tokens=5000), format="json")
    assert r.status_code == 201, r.content


def test_a_dollar_budget_needs_the_analysts_price_too(api: Any, sample: Session, fake_llm: Any) -> None:
    # the post-run analyst's calls are in the spend, so an unpriced analyst would make it unknown
    body = _body(sample, budget_usd="5")
    body["agents"]["analyst"] = {"profile": "openai-compatible", "model": "acme/unpriced-analyst"}
    r = api.post("/api/batches", body, format="json")
    assert r.status_code == 400, r.content
    assert "analyst" in r.content.decode() and "acme/unpriced-analyst" in r.content.decode()
    assert "budget_usd" in r.json()["errors"] and not Batch.objects.exists()
    # an analyst that is not an LLM costs nothing and needs no price
    body["agents"]["analyst"] = {"strategy": "linear"}
    assert api.post("/api/batches", body, format="json").status_code == 201


def test_the_service_refuses_bad_budgets_too(sample: Session, fake_llm: Any) -> None:
    from django.core.exceptions import ValidationError

    from negotiation.services.batches import batch_create

    for kwargs in ({"budget_usd": float("nan")}, {"budget_usd": float("inf")}, {"budget_tokens": float("nan")},
                   {"budget_usd": True}, {"budget_tokens": 0}):
        with pytest.raises(ValidationError) as exc:
            batch_create(session=sample, item_name="USB-C Cable", runs=1, agents=BASELINE, **kwargs)
        assert set(exc.value.message_dict) == set(kwargs)
    assert not Batch.objects.exists()


def test_a_batch_answers_its_budgets_and_its_spend_priced_by_the_table(api: Any, sample: Session,
                                                                       fake_llm: Any) -> None:
    r = api.post("/api/batches", _body(sample, budget_usd="0.25", budget_tokens=100000), format="json")
    assert r.status_code == 201, r.content
    body = r.json()
    assert Decimal(body["budget_usd"]) == Decimal("0.25") and body["budget_tokens"] == 100000
    assert body["stop_reason"] == "" and body["spend"]["tokens"] == 0 and body["spend"]["usd"] == "0"
    # recorded usage on two models: the spend prices each by the table (gpt-4o-mini $0.15/$0.60 per million)
    runs = list(NegotiationRun.objects.filter(batch_id=body["id"]))
    Message.objects.create(run=runs[0], round_no=1, sender="buyer", sender_type="buyer", action="message",
                           llm_model="gpt-4o-mini", prompt_tokens=1000, completion_tokens=200)
    Message.objects.create(run=runs[1], round_no=1, sender="buyer", sender_type="buyer", action="message",
                           llm_model="anthropic/claude-haiku-4.5", prompt_tokens=300, completion_tokens=50)
    spend = api.get(f"/api/batches/{body['id']}").json()["spend"]
    expected = (Decimal("0.15") * 1000 + Decimal("0.60") * 200 + Decimal(1) * 300 + Decimal(5) * 50) / 1_000_000
    assert Decimal(spend["usd"]) == expected
    assert (spend["prompt_tokens"], spend["completion_tokens"], spend["tokens"]) == (1300, 250, 1550)
    # the batch page shows it too
    from django.test import Client

    page = Client()
    page.force_login(Batch.objects.get(pk=body["id"]).owner)
    html = page.get(f"/analytics/batches/{body['id']}/").content.decode()
    assert "1550 tokens" in html and "$0.25" in html and "100000</b>-token budget" in html


def test_the_budget_check_rebuilds_lost_redis_sums_from_recorded_usage(sample: Session, fake_llm: Any) -> None:
    from negotiation.services.batches import batch_create

    batch = batch_create(session=sample, item_name="USB-C Cable", runs=2, agents=BASELINE, budget_tokens=1000)
    run_a, run_b = NegotiationRun.objects.filter(batch=batch)
    Message.objects.create(run=run_a, round_no=1, sender="buyer", sender_type="buyer", action="message",
                           llm_model="gpt-4o-mini", prompt_tokens=900, completion_tokens=99)
    budgets.events.redis_client().delete(budgets._key(batch.pk))  # Redis lost the sums
    assert budgets.budget_allows_turn(run_id=run_b.pk, batch_id=batch.pk, budget_usd=None, budget_tokens=1000)
    # rebuilt from Postgres (999 tokens); one more recorded token reaches the budget
    budgets.events.redis_client().hincrby(budgets._key(batch.pk), "c:gpt-4o-mini", 1)
    assert not budgets.budget_allows_turn(run_id=run_b.pk, batch_id=batch.pk, budget_usd=None, budget_tokens=1000)
    batch.refresh_from_db()
    run_a.refresh_from_db()
    run_b.refresh_from_db()
    assert (batch.status, batch.stop_reason) == ("cancelled", "budget reached")
    assert (run_a.status, run_a.error) == ("cancelled", "budget reached")  # it was queued
    assert (run_b.status, run_b.error) == ("cancelled", "budget reached")

"""Strict input everywhere (issue 13, item 5): unknown keys at any depth and values of the wrong JSON type
are 400s naming the path, on every body; the OpenAPI schema says `additionalProperties: false` for them.

Tests `negotiation/api/strict.py` through the real endpoints (Postgres, DRF, the JSON parser)."""

from __future__ import annotations

import json
from typing import Any

import pytest
from drf_spectacular.generators import SchemaGenerator
from drf_spectacular.renderers import OpenApiJsonRenderer

from negotiation.models import Batch, BuyerDemand, Experiment, NegotiationRun, ReflectSequence, Seller, Session
from negotiation.services.live import live_start
from tests.api.conftest import BASELINE

LINEAR = {"strategy": "linear"}


def refused(response: Any, path: str, *words: str) -> dict[str, Any]:
    assert response.status_code == 400, (response.status_code, response.content[:500])
    errors = response.json()["errors"]
    assert path in errors, errors
    for word in words:
        assert word in errors[path][0], errors[path]
    return errors


# --- the schema -----------------------------------------------------------------------------------

def _schema() -> dict[str, Any]:
    return json.loads(OpenApiJsonRenderer().render(SchemaGenerator().get_schema(request=None, public=True)))


def _objects(node: Any, components: dict[str, Any], seen: set[str]) -> list[tuple[str, dict[str, Any]]]:
    """Every object schema reachable from `node` (following $refs once each), with a name for messages."""
    out: list[tuple[str, dict[str, Any]]] = []
    if isinstance(node, dict):
        ref = node.get("$ref")
        if ref:
            name = ref.rsplit("/", 1)[-1]
            if name not in seen:
                seen.add(name)
                target = components[name]
                if target.get("type") == "object" or "properties" in target:
                    out.append((name, target))
                out += _objects(target, components, seen)
            return out
        for value in node.values():
            out += _objects(value, components, seen)
    elif isinstance(node, list):
        for value in node:
            out += _objects(value, components, seen)
    return out


def test_every_request_body_in_the_schema_forbids_extra_keys_at_every_depth() -> None:
    schema = _schema()
    components = schema["components"]["schemas"]
    bodies = 0
    for path, item in schema["paths"].items():
        for method, op in item.items():
            content = (op.get("requestBody") or {}).get("content", {}).get("application/json")
            if not content:
                continue
            bodies += 1
            for name, obj in _objects(content["schema"], components, set()):
                if obj.get("properties"):
                    assert obj.get("additionalProperties") is False, f"{method.upper()} {path}: {name}"
    assert bodies >= 12  # sessions x5, batches, experiments, sequences, live x3, env x2


# --- unknown keys, nested -------------------------------------------------------------------------

def test_a_misspelt_agent_key_in_a_batch_is_a_400_naming_its_path(api: Any, sample: Session) -> None:
    # the case: "modle" was dropped and the batch made (201) with the default model
    body = {"session": str(sample.pk), "item_name": "iPhone Case", "runs": 2,
            "agents": {**BASELINE, "seller": {"strategy": "linear", "modle": "x"}}}
    r = api.post("/api/batches", body, format="json")
    errors = refused(r, "agents.seller.modle", "Unknown key 'modle'", "strategy, profile, model, temperature")
    assert list(errors) == ["agents.seller.modle"]
    assert not Batch.objects.exists() and not NegotiationRun.objects.exists()


@pytest.mark.parametrize(("body", "path"), [
    ({"colour": "red"}, "colour"),
    ({"agents": {"auditor": {}}}, "agents.auditor"),
    ({"agents": {"buyer": {"strategy": "linear", "temprature": 0.2}}}, "agents.buyer.temprature"),
])
def test_unknown_keys_in_a_batch_at_each_depth(api: Any, sample: Session, body: dict, path: str) -> None:
    base = {"session": str(sample.pk), "item_name": "iPhone Case", "runs": 1, "agents": BASELINE}
    refused(api.post("/api/batches", {**base, **body}, format="json"), path, "Unknown key")
    assert not Batch.objects.exists()


def test_unknown_keys_in_every_session_body(api: Any, sample: Session) -> None:
    sessions = Session.objects.count()
    refused(api.post("/api/sessions", {"name": "x", "owner": "bob"}, format="json"), "owner",
            "the keys allowed here are: name, description")
    refused(api.patch(f"/api/sessions/{sample.pk}", {"titel": "x"}, format="json"), "titel")
    refused(api.post(f"/api/sessions/{sample.pk}/buyer-config", {"items": [
        {"item_name": "iPhone Case", "min_price": "1", "max_price": "2", "budget": 3}]}, format="json"),
        "items[0].budget")
    refused(api.post(f"/api/sessions/{sample.pk}/sellers", {"handle": "@New", "priorities": {
        "customer_retention": "0.5", "profit_maximization": "0.5", "loyalty": "1"}}, format="json"),
        "priorities.loyalty")
    assert Session.objects.count() == sessions and not Seller.objects.filter(handle="@New").exists()
    assert sorted(BuyerDemand.objects.filter(session=sample).values_list("item_name", flat=True)) == [
        "USB-C Cable", "iPhone Case"]


def test_unknown_keys_in_an_experiment_and_a_sequence(api: Any, sample: Session) -> None:
    conditions = [{"label": "a", "agents": BASELINE}, {"label": "b", "agents": {**BASELINE, "seller": {
        "strategy": "boulware", "promt_variant": "x"}}}]
    body = {"name": "e", "session": str(sample.pk), "item_name": "iPhone Case", "runs": 1, "conditions": conditions}
    refused(api.post("/api/experiments", body, format="json"), "conditions[1].agents.seller.promt_variant")
    body = {"session": str(sample.pk), "item_name": "iPhone Case", "length": 2, "agents": BASELINE, "lenght": 3}
    refused(api.post("/api/sequences", body, format="json"), "lenght")
    assert not Experiment.objects.exists() and not ReflectSequence.objects.exists() and not Batch.objects.exists()


def test_unknown_keys_in_the_env_and_live_bodies(api: Any, sample: Session) -> None:
    task = f"session/{sample.pk}/iPhone Case"
    refused(api.post("/env/reset", {"task": task, "agents": {"seller": {**LINEAR, "modle": "x"}}}, format="json"),
            "agents.seller.modle")
    refused(api.post("/env/reset", {"task": task, "agents": {"buyer": LINEAR}}, format="json"), "agents.buyer",
            "the keys allowed here are: seller, analyst")
    refused(api.post("/api/negotiations/start", {"session": str(sample.pk), "item_name": "iPhone Case",
                                                 "rounds": 3}, format="json"), "rounds")
    assert not NegotiationRun.objects.exists()
    run = live_start(owner=sample.owner, session=sample, item_name="iPhone Case", seller_agent=LINEAR,
                     analyst_agent=LINEAR, max_rounds=3, seed=0)
    refused(api.post(f"/api/negotiations/{run.pk}/message", {"text": "hi", "to": ["all"]}, format="json"), "to")
    refused(api.post(f"/api/negotiations/{run.pk}/decide", {"decision": "walk_away", "reason": "x"},
                     format="json"), "reason")
    refused(api.post("/env/step", {"episode_id": str(run.pk), "action": {"type": "wait", "colour": 1}},
                     format="json"), "action.colour")
    assert not run.messages.exists()


# --- numbers must be numbers ----------------------------------------------------------------------

@pytest.mark.parametrize(("change", "path", "words"), [
    ({"runs": "5"}, "runs", "a whole number (a JSON integer"),
    ({"runs": 5.0}, "runs", "got a number"),
    ({"runs": True}, "runs", "got a boolean"),
    ({"max_rounds": "3"}, "max_rounds", "got a string"),
    ({"temperature": "0.5"}, "temperature", "a number (a JSON number"),
    ({"base_seed": "1"}, "base_seed", "got a string"),
    ({"agents": {**BASELINE, "buyer": {"strategy": "linear", "temperature": "0.2"}}}, "agents.buyer.temperature",
     "got a string"),
    ({"item_name": 5}, "item_name", "Must be a string; got a number"),
    ({"session": 5}, "session", "Must be a string"),
    ({"disclosure": 1}, "disclosure", "Must be one of"),
])
def test_a_batch_takes_numbers_as_numbers(api: Any, sample: Session, change: dict, path: str, words: str) -> None:
    base = {"session": str(sample.pk), "item_name": "iPhone Case", "runs": 1, "agents": BASELINE}
    refused(api.post("/api/batches", {**base, **change}, format="json"), path, words)
    assert not Batch.objects.exists()


def test_bools_are_json_booleans_and_prices_may_be_strings(api: Any, sample: Session) -> None:
    run = live_start(owner=sample.owner, session=sample, item_name="iPhone Case", seller_agent=LINEAR,
                     analyst_agent=LINEAR, max_rounds=3, seed=0)
    refused(api.post(f"/api/negotiations/{run.pk}/message", {"text": "hi", "wait": "false"}, format="json"),
            "wait", "true or false")
    refused(api.post(f"/api/negotiations/{run.pk}/message", {"text": "hi", "wait": 0}, format="json"), "wait")
    refused(api.post(f"/api/negotiations/{run.pk}/message", {"text": "hi", "recipients": [5]}, format="json"),
            "recipients[0]", "Must be a string")
    refused(api.post("/env/step", {"episode_id": str(run.pk), "action": {"type": "wait"}, "wait_seconds": "1"},
                     format="json"), "wait_seconds", "got a string")
    assert not run.messages.exists()
    # money is a decimal string or a JSON number, as exports write it
    items = [{"item_name": "iPhone Case", "quantity": 2, "min_price": "10.00", "max_price": 18}]
    assert api.post(f"/api/sessions/{sample.pk}/buyer-config", {"items": items}, format="json").status_code == 200
    items[0]["quantity"] = "2"
    refused(api.post(f"/api/sessions/{sample.pk}/buyer-config", {"items": items}, format="json"),
            "items[0].quantity", "got a string")
    refused(api.post(f"/api/sessions/{sample.pk}/buyer-config", {"items": [{**items[0], "quantity": 2,
                                                                             "max_price": True}]}, format="json"),
            "items[0].max_price", "got a boolean")

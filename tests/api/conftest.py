"""API test fixtures: users with tokens, clients, the spec's sample session, and an in-process driver
that plays a run with baseline agents (no worker, no LLM) for tests that need a finished run."""

from __future__ import annotations

from typing import Any

import pytest
from rest_framework.authtoken.models import Token
from rest_framework.test import APIClient

from negotiation.models import Session
from negotiation.services.scenarios import scenario_document
from negotiation.services.sessions import session_import
from tests.factories import UserFactory

BASELINE = {"buyer": {"strategy": "linear"}, "seller": {"strategy": "linear"}, "analyst": {"strategy": "linear"}}
LLM = {"buyer": {"profile": "openai-compatible"}, "seller": {"profile": "openai-compatible"},
       "analyst": {"profile": "openai-compatible"}}


def client_for(user: Any) -> APIClient:
    client = APIClient()
    if user is not None:
        token, _ = Token.objects.get_or_create(user=user)
        client.credentials(HTTP_AUTHORIZATION=f"Token {token.key}")
    return client


@pytest.fixture
def user(db: Any) -> Any:
    return UserFactory(username="alice")


@pytest.fixture
def other(db: Any) -> Any:
    return UserFactory(username="mallory")


@pytest.fixture
def staff(db: Any) -> Any:
    return UserFactory(username="root", is_staff=True)


@pytest.fixture
def api(user: Any) -> APIClient:
    return client_for(user)


@pytest.fixture
def other_api(other: Any) -> APIClient:
    return client_for(other)


@pytest.fixture
def anon() -> APIClient:
    return APIClient()


@pytest.fixture
def sellers_answer(monkeypatch: pytest.MonkeyPatch) -> Any:
    """Play the addressed sellers' turns of a live run's open round in-process (as the worker would)."""
    from negotiation.models import Message, NegotiationRun
    from negotiation.services import play

    monkeypatch.setattr(play, "enqueue_seller_turns", lambda *a, **k: None)

    def answer(run_id: Any) -> None:
        run = NegotiationRun.objects.get(pk=run_id)
        buyer = Message.objects.filter(run=run, sender="buyer").order_by("-round_no").first()
        ids = {s["handle"]: s["id"] for s in run.scenario["sellers"]}
        for handle in buyer.recipients:
            play.seller_turn(run_id=run.pk, round_no=buyer.round_no, seller_id=ids[handle])
    return answer


@pytest.fixture
def sample(user: Any) -> Session:
    """The spec's sample session (negotiation/scenarios/spec_sample.json), owned by alice."""
    return session_import(document=scenario_document("spec_sample"), owner=user)



"""API test fixtures: users with tokens, clients, the spec's sample session, and an in-process driver
that plays a run with baseline agents (no worker, no LLM) for tests that need a finished run."""

from __future__ import annotations

from collections.abc import Callable
from typing import Any

import pytest
from rest_framework.authtoken.models import Token
from rest_framework.test import APIClient

from negotiation.models import Message, NegotiationRun, Session
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
def sample(user: Any) -> Session:
    """The spec's sample session (negotiation/scenarios/spec_sample.json), owned by alice."""
    return session_import(document=scenario_document("spec_sample"), owner=user)


@pytest.fixture
def play_through(monkeypatch: pytest.MonkeyPatch) -> Callable[[Any], NegotiationRun]:
    """Play a queued agent run to its end in-process: buyer turn, each seller's turn, next round."""
    from negotiation.services import play

    monkeypatch.setattr(play, "enqueue_seller_turn", lambda *a, **k: None)
    monkeypatch.setattr(play, "enqueue_round", lambda *a, **k: None)

    def run_it(run_id: Any) -> NegotiationRun:
        for _ in range(100):
            run = NegotiationRun.objects.get(pk=run_id)
            if run.status in NegotiationRun.TERMINAL:
                return run
            round_no = run.current_round
            play.round_play(run_id=run_id, round_no=round_no)
            buyer = Message.objects.filter(run_id=run_id, round_no=round_no, sender="buyer").first()
            ids = {s["handle"]: s["id"] for s in run.scenario["sellers"]}
            for handle in buyer.recipients if buyer else []:
                play.seller_turn(run_id=run_id, round_no=round_no, seller_id=ids[handle])
        raise AssertionError("the run did not end in 100 steps")

    return run_it

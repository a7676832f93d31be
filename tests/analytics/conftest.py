"""Analytics fixtures: the spec's sample session and an in-process driver that plays runs to their end
with baseline agents (no worker, no LLM), so metrics and pages have finished runs to read."""

from __future__ import annotations

from collections.abc import Callable
from typing import Any

import pytest

from negotiation.models import Batch, NegotiationRun, Session
from negotiation.services.batches import batch_create
from negotiation.services.scenarios import scenario_document
from negotiation.services.sessions import session_import
from tests.factories import UserFactory

BASELINE = {"buyer": {"strategy": "linear"}, "seller": {"strategy": "linear"}, "analyst": {"strategy": "linear"}}
LLM = {"buyer": {"profile": "openai-compatible"}, "seller": {"profile": "openai-compatible"},
       "analyst": {"profile": "openai-compatible"}}


@pytest.fixture
def user(db: Any) -> Any:
    u = UserFactory(username="ana")
    u.save()  # the factory sets the password after its save; a session's auth hash needs it stored
    return u


@pytest.fixture
def sample(user: Any) -> Session:
    return session_import(document=scenario_document("spec_sample"), owner=user)


@pytest.fixture
def played_batch(sample: Session, user: Any, play_through: Callable[[Any], NegotiationRun]
                 ) -> Callable[..., Batch]:
    """A batch of the sample's USB-C cable, every run played to its end in-process."""

    def make(runs: int = 4, agents: dict | None = None, max_rounds: int = 4, base_seed: int = 0) -> Batch:
        batch = batch_create(session=sample, item_name="USB-C Cable", runs=runs, agents=agents or BASELINE,
                             max_rounds=max_rounds, base_seed=base_seed, owner=user)
        for run_id in NegotiationRun.objects.filter(batch=batch).values_list("pk", flat=True):
            play_through(run_id)
        from negotiation.services.lifecycle import batch_refresh

        batch_refresh(batch_id=batch.pk)
        batch.refresh_from_db()
        return batch

    return make


@pytest.fixture(autouse=True)
def _fast_fake_llm(settings: Any, fake_llm: Any) -> None:
    """In-process turns against the fake LLM need not wait for the default 60/minute limit."""
    profile = settings.LLM_PROFILES["openai-compatible"]
    settings.LLM_PROFILES = {**settings.LLM_PROFILES, "openai-compatible": {**profile, "rate": "100000/minute"}}

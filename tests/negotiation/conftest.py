"""Fixtures of the negotiation tests: a user who owns the spec's sample session."""

from __future__ import annotations

from typing import Any

import pytest

from negotiation.models import Session
from negotiation.services.scenarios import scenario_document
from negotiation.services.sessions import session_import
from tests.factories import UserFactory


@pytest.fixture
def owner(db: Any) -> Any:
    return UserFactory(username="rhea")


@pytest.fixture
def sample(owner: Any) -> Session:
    """The spec's sample session (negotiation/scenarios/spec_sample.json), owned by `owner`."""
    return session_import(document=scenario_document("spec_sample"), owner=owner)

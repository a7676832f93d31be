"""Bundled scenarios: load the spec's sample session once, and reuse it afterwards."""

from __future__ import annotations

import json
from pathlib import Path
from typing import Any

from negotiation.models import Session
from negotiation.services.sessions import session_import

SCENARIOS = Path(__file__).resolve().parent.parent / "scenarios"


def scenario_document(name: str) -> dict[str, Any]:
    return json.loads((SCENARIOS / f"{name}.json").read_text())


def sample_session_load(*, owner: Any = None, name: str = "spec_sample") -> Session:
    """The sample session, imported on first use; a later call returns the same one."""
    document = scenario_document(name)
    existing = Session.objects.filter(name=document["name"], owner=owner).order_by("created_at").first()
    return existing or session_import(document=document, owner=owner)

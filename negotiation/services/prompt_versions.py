"""Prompt versions: store every version a run names, and give an agent its next notes.

A run records `agents[role]["prompt_version"]`; this module makes sure a `PromptVersion` row with
that id holds the templates of the run's prompt variant and the notes appended for the agent, so a
run can always be replayed from the database even after the templates in the code change.
"""

from __future__ import annotations

import copy
from typing import Any

from negotiation.agents import prompts
from negotiation.models import PromptVersion

PROMPTED_ROLES = ("buyer", "seller")  # the analyst's prompt is analytics/analysis.py's, not versioned here


def prompt_version_record(*, variant: str, role: str, notes: Any) -> PromptVersion:
    """The stored version of a variant with notes (get or create; its id is the content's hash)."""
    version = prompts.prompt_version(variant=variant, role=role, notes=notes or ())
    row, _ = PromptVersion.objects.get_or_create(pk=version, defaults={
        "role": role if notes else "", "variant": variant, "base_version": prompts.PROMPT_VERSION,
        "templates": prompts.variant_templates(variant), "notes": notes or []})
    return row


def prompt_versions_record(*, agents: dict[str, dict[str, Any]]) -> dict[str, PromptVersion]:
    """Store the prompt version of each LLM role of resolved agents; {role: row}."""
    out = {}
    for role in PROMPTED_ROLES:
        spec = agents.get(role) or {}
        if spec.get("strategy") != "llm":
            continue
        row = prompt_version_record(variant=spec.get("prompt_variant") or "default", role=role,
                                    notes=spec.get("notes"))
        if spec.get("prompt_version") != row.pk:
            raise ValueError(f"agents.{role}.prompt_version {spec.get('prompt_version')!r} does not match its "
                             f"variant and notes ({row.pk})")
        out[role] = row
    return out


def _append(notes: list[str], note: str) -> list[str]:
    """The note last (a repeated note moves to the end instead of appearing twice), the last NOTES_KEPT kept."""
    return [*(n for n in notes if n != note), note][-prompts.NOTES_KEPT:]


def agents_with_notes(agents: dict[str, dict[str, Any]], *, buyer: str | None = None,
                      sellers: dict[str, str] | None = None) -> dict[str, dict[str, Any]]:
    """A copy of resolved agents with new notes appended (the last NOTES_KEPT kept) and their versions.

    The buyer's notes are a list; the sellers' are {handle: [notes]}, so each seller's prompt gets
    only the notes written for it.
    """
    out = copy.deepcopy(agents)
    if buyer:
        spec = out["buyer"]
        notes = _append(spec.get("notes") or [], buyer)
        spec.update(notes=notes, prompt_version=prompts.prompt_version(
            variant=spec.get("prompt_variant") or "default", role="buyer", notes=notes))
    if sellers:
        spec = out["seller"]
        notes_by_handle = dict(spec.get("notes") or {})
        for handle, note in sorted(sellers.items()):
            notes_by_handle[handle] = _append(notes_by_handle.get(handle, []), note)
        spec.update(notes=notes_by_handle, prompt_version=prompts.prompt_version(
            variant=spec.get("prompt_variant") or "default", role="seller", notes=notes_by_handle))
    return out

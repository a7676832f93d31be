"""Template filters for analytics pages: numbers in their unit, estimates with their CI."""

from __future__ import annotations

from decimal import Decimal
from typing import Any

from django import template
from django.utils.html import format_html
from django.utils.safestring import mark_safe

from analytics.metrics import Estimate

register = template.Library()


def fmt(value: Any, unit: str = "num") -> str:
    """A number in its unit: pct (0.42 -> 42.0%), money ($6.50), usd ($0.00123), ms, or a plain number."""
    if value is None or value == "":
        return "–"
    v = float(value)
    if unit == "pct":
        return f"{v * 100:.1f}%"
    sign = "−" if v < 0 else ""
    if unit == "money":
        return f"{sign}${abs(v):,.2f}"
    if unit == "usd":
        return f"{sign}${abs(v):.4f}" if abs(v) < 1 else f"{sign}${abs(v):,.2f}"
    if unit == "ms":
        return f"{v / 1000:.2f} s" if v >= 1000 else f"{v:.0f} ms"
    if unit == "score":
        return f"{v:.2f}"
    if isinstance(value, int) or (isinstance(value, float | Decimal) and v.is_integer() and abs(v) >= 100):
        return f"{v:,.0f}"
    return f"{v:,.2f}"


register.filter("fmt", fmt)


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

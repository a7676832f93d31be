"""One number format per kind, for every page, chart, sentence and export.

A share is a percent with one decimal ("42.0%") and its difference is in percentage points ("+6.6 pp");
money is dollars with cents ("$1,234.50"); an LLM cost is dollars to a hundredth of a cent below $1
("$0.0123"); a count or other number is grouped ("1,680", "3.25"); a time is ms or s. Pure Python (no
Django), so the charts and the metrics can use it too.
"""

from __future__ import annotations

import math
from decimal import Decimal
from typing import Any

MINUS = "−"


def fmt(value: Any, unit: str = "num") -> str:
    """A number in its unit: pct (0.42 -> 42.0%), money ($6.50), usd ($0.00123), ms, score, or a plain number."""
    if value is None or value == "":
        return "–"
    v = float(value)
    if math.isnan(v):
        return "–"
    sign = MINUS if v < 0 else ""
    if unit == "pct":
        return f"{sign}{abs(v) * 100:.1f}%"
    if unit == "money":
        return f"{sign}${abs(v):,.2f}"
    if unit == "usd":
        return f"{sign}${abs(v):.4f}" if abs(v) < 1 else f"{sign}${abs(v):,.2f}"
    if unit == "ms":
        return f"{sign}{abs(v) / 1000:,.2f} s" if abs(v) >= 1000 else f"{sign}{abs(v):.0f} ms"
    if unit == "score":
        return f"{sign}{abs(v):.2f}"
    if isinstance(value, int) or (isinstance(value, float | Decimal) and v.is_integer() and abs(v) >= 100):
        return f"{sign}{abs(v):,.0f}"
    return f"{sign}{abs(v):,.2f}"


def diff(value: Any, unit: str = "num") -> str:
    """A signed difference in the unit of its metric; a share's difference is in percentage points."""
    if value is None or value == "":
        return "–"
    v = float(value)
    sign = "+" if v > 0 else MINUS if v < 0 else "±"
    if unit == "pct":
        return f"{sign}{abs(v) * 100:.1f} pp"
    return sign + fmt(abs(v), unit)


def tick(value: float, unit: str, step: float) -> str:
    """An axis tick: the unit's symbol, with only as many decimals as the tick step needs."""
    if unit == "pct":
        places = _places(step * 100)
        return f"{MINUS if value < 0 else ''}{abs(value) * 100:.{places}f}%"
    if unit == "pp":
        places = _places(step * 100)
        return f"{'+' if value > 0 else MINUS if value < 0 else ''}{abs(value) * 100:.{places}f} pp"
    places = _places(step)
    sign = MINUS if value < 0 else ""
    if unit in ("money", "usd"):
        return f"{sign}${abs(value):,.{max(places, 2) if places else 0}f}"
    if unit == "ms" and step >= 1000:
        return f"{sign}{abs(value) / 1000:,.{_places(step / 1000)}f} s"
    if unit == "ms":
        return f"{sign}{abs(value):,.{places}f} ms"
    return f"{sign}{abs(value):,.{places}f}"


def _places(step: float) -> int:
    """Decimals needed to tell ticks `step` apart (0 for 5, 1 for 0.5, 2 for 0.25)."""
    for places in range(6):
        if abs(round(step, places) - step) < 1e-9 * max(1.0, abs(step)):
            return places
    return 6


def duration(seconds: Any) -> str:
    """A time span for people: "45 s", "3 min 5 s", "2 h 10 min"."""
    if seconds is None:
        return "–"
    s = max(0, round(float(seconds)))
    if s < 60:
        return f"{s} s"
    if s < 3600:
        return f"{s // 60} min {s % 60} s" if s % 60 else f"{s // 60} min"
    return f"{s // 3600} h {s % 3600 // 60} min"

"""Reading a provider's rate-limit headers into one shape the limiter can adopt.

Real providers say where a caller stands in every answer, per minute: OpenAI sends
`x-ratelimit-{limit,remaining,reset}-{requests,tokens}` (reset as a duration: `12ms`, `1s`, `6m0s`,
the time until that budget is full again); Anthropic sends `anthropic-ratelimit-{requests,tokens,
input-tokens,output-tokens}-{limit,remaining,reset}` (reset as an RFC 3339 time). Both replenish
continuously (a token bucket), so a budget's level can be read back from its reset even when
`remaining` is clamped at 0. Headers are untrusted input: a value that is missing, not a number,
a limit of 0 or less (Azure sends -1), or a reset in the past is dropped and named in `problems`,
so the caller falls back to its configured limits instead of stalling. Pure Python, no Django.
"""

from __future__ import annotations

import datetime as dt
import math
import re
from collections.abc import Mapping
from dataclasses import dataclass

RESOURCES = ("requests", "tokens", "input_tokens", "output_tokens")
# Both header families state limits per minute.
PERIOD_SECONDS = 60.0
_DURATION = re.compile(r"^(?:(\d+(?:\.\d+)?)h)?(?:(\d+(?:\.\d+)?)m(?!s))?(?:(\d+(?:\.\d+)?)s)?(?:(\d+(?:\.\d+)?)ms)?$")


@dataclass(frozen=True)
class Budget:
    """One resource as the provider reported it: its limit per minute, what is left, and when it is full."""

    limit: int
    remaining: int | None
    reset_seconds: float | None

    def wait_for(self, cost: float) -> float:
        """Seconds until the provider's budget holds `cost` again (0 when it already does).

        The bucket refills at limit/60 per second; its level is `remaining`, or, when remaining is
        clamped at 0 (a lowered quota can leave it below zero), limit minus what the reset says is missing.
        """
        if self.remaining is None or self.remaining >= cost:
            return 0.0
        per_unit = PERIOD_SECONDS / self.limit
        wait = (cost - self.remaining) * per_unit
        if self.reset_seconds is not None:
            wait = max(wait, self.reset_seconds - PERIOD_SECONDS + cost * per_unit)
        return max(0.0, wait)


def parse_duration(text: str) -> float | None:
    """OpenAI's reset: `12ms`, `1s`, `20.5s`, `6m0s`, `1h2m3s`; a bare number is seconds."""
    text = text.strip()
    try:
        value = float(text)
    except ValueError:
        match = _DURATION.match(text)
        if not match or not any(match.groups()):
            return None
        hours, minutes, seconds, millis = (float(g) if g else 0.0 for g in match.groups())
        value = hours * 3600 + minutes * 60 + seconds + millis / 1000
    return value if math.isfinite(value) and value >= 0 else None


def parse_rfc3339(text: str, *, now: float) -> float | None:
    """Anthropic's reset: an RFC 3339 time; returns seconds from `now` (negative when in the past)."""
    try:
        when = dt.datetime.fromisoformat(text.strip().replace("Z", "+00:00"))
    except ValueError:
        return None
    if when.tzinfo is None:
        return None
    return when.timestamp() - now


def _int(value: str | None) -> int | None:
    if value is None:
        return None
    try:
        number = float(value.strip())
    except ValueError:
        return None
    return int(number) if math.isfinite(number) else None


def parse(headers: Mapping[str, str], *, now: float) -> tuple[dict[str, Budget], list[str]]:
    """The budgets the headers state, and one line per header that could not be used."""
    lower = {k.lower(): v for k, v in headers.items()}
    budgets: dict[str, Budget] = {}
    problems: list[str] = []
    for resource in RESOURCES:
        dashed = resource.replace("_", "-")
        if f"anthropic-ratelimit-{dashed}-limit" in lower:
            prefix = f"anthropic-ratelimit-{dashed}"
            raw = (lower.get(f"{prefix}-limit"), lower.get(f"{prefix}-remaining"), lower.get(f"{prefix}-reset"))
            reset = None if raw[2] is None else parse_rfc3339(raw[2], now=now)
        elif resource in ("requests", "tokens") and f"x-ratelimit-limit-{resource}" in lower:
            prefix = f"x-ratelimit-*-{resource}"
            raw = (lower.get(f"x-ratelimit-limit-{resource}"), lower.get(f"x-ratelimit-remaining-{resource}"),
                   lower.get(f"x-ratelimit-reset-{resource}"))
            reset = None if raw[2] is None else parse_duration(raw[2])
        else:
            continue
        limit, remaining = _int(raw[0]), _int(raw[1])
        if limit is None or limit <= 0:
            problems.append(f"{prefix}: limit {raw[0]!r} is not a positive number")
            continue
        if raw[1] is not None and (remaining is None or remaining < 0):
            problems.append(f"{prefix}: remaining {raw[1]!r} is not a number >= 0")
            remaining = None
        if raw[2] is not None and (reset is None or reset < 0):
            problems.append(f"{prefix}: reset {raw[2]!r} is not a time to come")
            reset = None
        budgets[resource] = Budget(limit=limit, remaining=remaining, reset_seconds=reset)
    return budgets, problems

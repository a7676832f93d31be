"""Tests for negotiation/agents/ratelimit_headers.py: both providers' header families, and bad headers.

Pure functions, no Django. The values follow the providers' docs: OpenAI's resets are durations
(`12ms`, `1s`, `6m0s`), Anthropic's RFC 3339 times; Azure has been seen sending -1 and 0.
"""

from __future__ import annotations

import pytest

from negotiation.agents.ratelimit_headers import Budget, parse, parse_duration, parse_rfc3339

NOW = 1_800_000_000.0  # 2027-01-15T08:00:00Z


@pytest.mark.parametrize(("text", "seconds"), [("12ms", 0.012), ("1s", 1.0), ("6m0s", 360.0), ("20.5s", 20.5),
                                               ("1m30.25s", 90.25), ("1h2m3s", 3723.0), ("0.5", 0.5)])
def test_openai_durations_are_read_in_seconds(text: str, seconds: float) -> None:
    assert parse_duration(text) == pytest.approx(seconds)


@pytest.mark.parametrize("text", ["", "soon", "-1s", "1x", "nan", "inf"])
def test_a_malformed_duration_is_none(text: str) -> None:
    assert parse_duration(text) is None


def test_openai_headers_give_requests_and_tokens() -> None:
    budgets, problems = parse({"X-RateLimit-Limit-Requests": "5000", "x-ratelimit-remaining-requests": "4999",
                               "x-ratelimit-reset-requests": "12ms", "x-ratelimit-limit-tokens": "160000",
                               "x-ratelimit-remaining-tokens": "159976", "x-ratelimit-reset-tokens": "9ms"}, now=NOW)
    assert problems == []
    assert budgets == {"requests": Budget(5000, 4999, 0.012), "tokens": Budget(160000, 159976, 0.009)}


def test_anthropic_headers_give_all_four_budgets_with_rfc3339_resets() -> None:
    headers = {}
    for resource, limit in (("requests", 50), ("tokens", 48000), ("input-tokens", 40000), ("output-tokens", 8000)):
        headers |= {f"anthropic-ratelimit-{resource}-limit": str(limit),
                    f"anthropic-ratelimit-{resource}-remaining": str(limit - 10),
                    f"anthropic-ratelimit-{resource}-reset": "2027-01-15T08:00:30Z"}
    budgets, problems = parse(headers, now=NOW)
    assert problems == []
    assert budgets["output_tokens"] == Budget(8000, 7990, pytest.approx(30.0))
    assert set(budgets) == {"requests", "tokens", "input_tokens", "output_tokens"}
    assert parse_rfc3339("2027-01-15T08:00:00.500+00:00", now=NOW) == pytest.approx(0.5)


@pytest.mark.parametrize(("headers", "problem"), [
    ({"x-ratelimit-limit-tokens": "-1", "x-ratelimit-remaining-tokens": "-1", "x-ratelimit-reset-tokens": "0"},
     "limit '-1'"),
    ({"x-ratelimit-limit-tokens": "0", "x-ratelimit-remaining-tokens": "0"}, "limit '0'"),
    ({"x-ratelimit-limit-tokens": "lots"}, "limit 'lots'"),
])
def test_a_limit_that_is_not_positive_is_dropped_and_named(headers: dict[str, str], problem: str) -> None:
    budgets, problems = parse(headers, now=NOW)
    assert budgets == {}
    assert len(problems) == 1 and problem in problems[0]


def test_a_reset_in_the_past_or_garbled_is_dropped_but_the_limit_is_kept() -> None:
    budgets, problems = parse({"anthropic-ratelimit-tokens-limit": "1000", "anthropic-ratelimit-tokens-remaining": "0",
                               "anthropic-ratelimit-tokens-reset": "2027-01-15T07:59:00Z",
                               "x-ratelimit-limit-requests": "60", "x-ratelimit-remaining-requests": "x",
                               "x-ratelimit-reset-requests": "whenever"}, now=NOW)
    assert budgets == {"tokens": Budget(1000, 0, None), "requests": Budget(60, None, None)}
    assert sorted(p.split(":")[0] for p in problems) == ["anthropic-ratelimit-tokens", "x-ratelimit-*-requests",
                                                         "x-ratelimit-*-requests"]
    # with no usable reset, a spent budget waits only for one call's share of the refill: never a stall
    assert budgets["tokens"].wait_for(100) == pytest.approx(6.0)


def test_wait_for_reads_a_deficit_below_zero_from_the_reset() -> None:
    # remaining is clamped at 0, but "full in 90 s" at 600/min says the bucket is 300 below zero
    assert Budget(600, 0, 90.0).wait_for(60) == pytest.approx(90 - 60 + 6)
    assert Budget(600, 500, 10.0).wait_for(60) == 0.0
    assert Budget(600, 30, 57.0).wait_for(60) == pytest.approx(3.0)

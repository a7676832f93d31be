"""The gateway at a provider's real limits: token budgets, the provider's headers, a lowered limit.

The real openai client and the shared Redis limiter against the fake provider
(tests/fakes/openai_server.py), which enforces a request limit and a token limit at once and
states them in OpenAI-style headers. The profile under test configures no limits at all, so
everything MAMS knows about the limits it learns from the provider's answers (except in the tests
of a configured rate).
"""

from __future__ import annotations

import threading
import time
import uuid
from typing import Any

import pytest
from django.conf import settings

from negotiation.agents import gateway
from negotiation.agents import limiter as limiter_module
from negotiation.agents.gateway import LLMTransientError, complete, get_profile

CHAT = [{"role": "system", "content": "You are terse."}, {"role": "user", "content": "Say hi."}]


@pytest.fixture
def unconfigured(monkeypatch: pytest.MonkeyPatch, llm: Any) -> str:
    """A profile on the fake with no request rate and no token limits configured; a fresh model name
    per test, so the limits learned in one test are not in force in the next."""
    monkeypatch.setitem(settings.LLM_PROFILES, "bare", {**settings.LLM_PROFILES["openai-compatible"], "rate": "none",
                                                        "tpm": "", "max_concurrency": 4})
    return f"model-{uuid.uuid4().hex[:8]}"


def call_many(model: str, n: int, *, threads: int = 4, between: Any = None) -> tuple[int, int]:
    """n calls on `threads` threads; a 429 is retried after its Retry-After (as the turn task does).
    Returns (answers, 429s)."""
    profile = get_profile("bare")
    done, refused, lock = 0, 0, threading.Lock()

    def work() -> None:
        nonlocal done, refused
        while True:
            with lock:
                if done >= n:
                    return
                done += 1
                if between is not None:
                    between(done)
            while True:
                try:
                    complete(profile=profile, model=model, chat=CHAT, max_tokens=20)
                    break
                except LLMTransientError as exc:
                    with lock:
                        refused += 1
                    time.sleep(exc.retry_after or 0.5)

    workers = [threading.Thread(target=work) for _ in range(threads)]
    for worker in workers:
        worker.start()
    for worker in workers:
        worker.join(timeout=120)
    return done, refused


def token_rate(records: list[dict], since: float = 0.0) -> float:
    """Tokens per second the provider served from `since` on, arrival to arrival."""
    ok = [r for r in records if r["status"] == 200 and r["arrival"] >= since]
    tokens = sum(r["prompt_tokens"] + r["completion_tokens"] for r in ok[1:])
    return tokens / (ok[-1]["arrival"] - ok[0]["arrival"])


def test_with_nothing_configured_the_providers_headers_keep_calls_at_its_token_limit(llm: Any,
                                                                                    unconfigured: str) -> None:
    # given a provider at 3,000 tokens a minute (50 a second) whose budget another client nearly spent
    llm.configure(token_limit="3000/60", rate_limit="600/60", headers="openai")
    llm.spend(2900)
    # when 24 calls (~20 tokens each, reserving ~30) go out on 4 threads
    answers, refused = call_many(unconfigured, 24)
    # then none is refused, and the provider's token rate is used (the 100 tokens left at the start
    # are the only tokens beyond the rate the provider could serve)
    assert (answers, refused) == (24, 0)
    assert llm.stats()["by_status"] == {"200": 24}
    ok = [r for r in llm.requests if r["status"] == 200]
    span = ok[-1]["arrival"] - ok[0]["arrival"]
    assert 0.8 * 50 <= token_rate(llm.requests) <= 50 + 130 / span


def test_without_headers_the_same_calls_meet_429s(llm: Any, unconfigured: str) -> None:
    # the same provider, saying nothing about its limits: MAMS has nothing to pace by (this is what
    # the headers fix; the test above would fail the same way if the limiter ignored them)
    llm.configure(token_limit="3000/60", rate_limit="600/60", headers="none")
    llm.spend(2900)
    answers, refused = call_many(unconfigured, 12)
    assert answers == 12 and refused > 0


def test_a_limit_lowered_mid_run_is_followed_without_a_429_storm(llm: Any, unconfigured: str) -> None:
    # given 30,000 tokens a minute (500 a second), which MAMS learns and paces to
    llm.configure(token_limit="30000/60", rate_limit="6000/60", headers="openai")
    lowered_at: list[float] = []

    def lower(n: int) -> None:
        if n == 30:
            # 100 tokens a second from now on (what was used this minute stays used)
            llm.configure(token_limit="6000/60")
            lowered_at.append(time.time())

    answers, refused = call_many(unconfigured, 50, between=lower)
    assert answers == 50
    # at most the calls already on their way when it changed are refused (4 threads)
    assert refused <= 4
    # and within a second of the change the calls keep to the new limit
    assert token_rate(llm.requests, since=lowered_at[0] + 1.0) <= 100 * 1.05


def test_the_limiter_learned_the_providers_limits(llm: Any, unconfigured: str) -> None:
    llm.configure(token_limit="30000/60", rate_limit="600/60", headers="openai")
    call_many(unconfigured, 2, threads=1)
    limiter = limiter_module.limiter_for(settings.REDIS_URL)
    assert limiter.provider_limits(f"bare:{unconfigured}") == {"requests": 600, "tokens": 30000}


def test_the_gateway_paces_a_configured_rate_at_the_configured_share(
        llm: Any, unconfigured: str, monkeypatch: pytest.MonkeyPatch) -> None:
    # given 20/second configured, a provider that states nothing, and the share set to 0.5 (so that
    # its effect is far larger than the call's own few ms)
    monkeypatch.setitem(settings.LLM_PROFILES["bare"], "rate", "20/second")
    monkeypatch.setattr(settings, "LLM_CONFIGURED_LIMIT_SHARE", 0.5)
    llm.configure(rate_limit="20/1", headers="none")
    limiter = limiter_module.limiter_for(settings.REDIS_URL)

    def redis_now() -> float:
        seconds, micros = limiter.redis.time()
        return seconds + micros / 1e6

    # when one call goes out
    before = redis_now()
    call_many(unconfigured, 1, threads=1)
    after = redis_now()
    # then the next request slot is due 1/(20 × 0.5) s after its grant, not 1/20 s
    due = float(limiter.redis.get(limiter._keys(f"bare:{unconfigured}")[1]))
    assert before + 0.1 - 1e-4 <= due <= after + 0.1 + 1e-4


def test_a_request_that_leaves_long_after_its_slot_does_not_crowd_the_providers_window(
        llm: Any, unconfigured: str, monkeypatch: pytest.MonkeyPatch) -> None:
    # given a provider with a hard 10 requests in any 1 s window, MAMS configured at that 10/second and
    # paced at 0.95 of it: 11 slots span 1.053 s (53 ms of slack a window, far more than the jitter of a
    # test host), and 10 span 0.947 s, so a request arriving in the middle of them makes 11 in a second
    monkeypatch.setitem(settings.LLM_PROFILES["bare"], "rate", "10/second")
    monkeypatch.setattr(settings, "LLM_CONFIGURED_LIMIT_SHARE", 0.95)
    llm.configure(rate_limit="10/1", headers="none", latency=0.05)
    # and one call, the 12th to reach the HTTP client, held back 250 ms between its rate slot and the
    # wire (a worker stall, as make bench phase B saw on a busy host: more than the slack)
    real_hold, seen, lock = gateway.hold_if_late, [0], threading.Lock()

    def stalled() -> float:
        with lock:
            seen[0] += 1
            mine = seen[0]
        if mine == 12:
            time.sleep(0.25)  # the deliberate stall
        return real_hold()

    monkeypatch.setattr(gateway, "hold_if_late", stalled)
    # when 30 calls go out on 6 threads
    answers, refused = call_many(unconfigured, 30, threads=6)
    limiter = limiter_module.limiter_for(settings.REDIS_URL)
    assert answers == 30
    # then the late request took a fresh slot, and the window it reached never held 11
    assert limiter.late_sends(f"bare:{unconfigured}") >= 1
    assert refused == 0 and llm.stats()["max_accepted_in_window"] <= 10
    # (A control arm without the check, the stalled request sent as it was, got a 429 on a quiet host but
    # none in a clean-clone run with both cores busy: whether the late request meets a full window depends
    # on the host keeping the schedule full, so it cannot be a test that passes every time. The check's own
    # count above fails without the check.)

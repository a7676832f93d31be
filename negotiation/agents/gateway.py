"""One LLM gateway on the `openai` client, for every OpenAI-compatible endpoint.

A profile (settings.LLM_PROFILES) names the base URL, the environment variable holding its key,
default models per role, the prompt format and the shared limits. Errors are values at the edge:
anything worth a retry (429, 5xx, timeouts, connection errors, a garbled body) raises
`LLMTransientError`, carrying the provider's Retry-After when it gave one; everything else raises
`LLMError` with a message that names the profile and the setting to fix. The client's own retries
are off: Celery retries the task instead, so a waiting turn never holds a worker thread.

Every call reserves its expected tokens with the shared limiter before it leaves (the prompt's
length / 4, plus max_tokens), settles the reservation with the usage the answer reports, and hands
the answer's rate-limit headers (200 or 429) to the limiter, which adopts the provider's limits.
A request that goes on the wire well after its rate slot (its worker stalled) takes a fresh one first.
"""

from __future__ import annotations

import json
import math
import os
import threading
import time
from dataclasses import dataclass, field
from typing import Any

import httpx
import openai
import openai.resources
import openai.types.chat
import openai.types.completion
from django.conf import settings

from negotiation.agents import spans
from negotiation.agents.limiter import Cost, LimiterTimeout, TokenLimits, hold_if_late, limiter_for


class LLMError(Exception):
    """A failure no retry will fix: bad configuration, an unknown model, a refused key."""


class LLMTransientError(Exception):
    """A failure worth retrying later; `retry_after` is the provider's hint in seconds."""

    def __init__(self, message: str, *, retry_after: float | None = None) -> None:
        super().__init__(message)
        self.retry_after = retry_after


class _MalformedReply(Exception):
    """A 200 whose JSON is not a completion (no choices)."""


def _reply_text(response: Any, *, chat: bool) -> str:
    # Some routers answer 200 with {"error": {...}} and no choices, and the openai client does not
    # check the shape: check it here, or the caller gets a bare TypeError instead of a retry.
    choices = getattr(response, "choices", None)
    if not isinstance(choices, list) or not choices:
        error = getattr(response, "error", None)
        raise _MalformedReply(f"no choices{f': {str(error)[:200]}' if error else ''}")
    choice = choices[0]
    text = getattr(getattr(choice, "message", None), "content", None) if chat else getattr(choice, "text", None)
    return text or ""


@dataclass(frozen=True)
class Profile:
    name: str
    base_url: str
    base_url_env: str
    api_key: str
    prompt_format: str  # "chat" or "completion"
    rate: str | None  # None: no configured request rate (the provider's headers, when it sends them)
    max_concurrency: int
    models: dict[str, str]
    token_limits: TokenLimits = field(default_factory=TokenLimits)

    def model_for(self, role: str) -> str:
        return self.models["analyst" if role == "analyst" else "agent"]


@dataclass(frozen=True)
class LLMReply:
    text: str
    model: str
    prompt_tokens: int
    completion_tokens: int
    latency_ms: int


def profile_names() -> list[str]:
    return sorted(settings.LLM_PROFILES)


def get_profile(name: str) -> Profile:
    """Resolve a profile, or say exactly which setting is missing."""
    raw = settings.LLM_PROFILES.get(name)
    if raw is None:
        raise LLMError(f"Unknown LLM profile '{name}'. Known profiles: {', '.join(profile_names())}.")
    base_url = raw.get("base_url")
    if not base_url:
        raise LLMError(f"LLM profile '{name}' has no base URL: set {raw.get('base_url_env', 'its base URL')}.")
    key_env = raw.get("api_key_env")
    api_key = os.environ.get(key_env, "") if key_env else raw.get("api_key", "")
    if not api_key:
        raise LLMError(f"LLM profile '{name}' needs an API key: set {key_env} in the environment.")
    return Profile(name=name, base_url=base_url, base_url_env=raw.get("base_url_env", "its base URL"),
                   api_key=api_key, prompt_format=raw["prompt_format"],
                   rate=_configured(raw.get("rate")), max_concurrency=int(raw["max_concurrency"]),
                   models=dict(raw["models"]),
                   token_limits=TokenLimits(**{f: _per_minute(name, f, raw.get(k)) for f, k in (
                       ("tokens", "tpm"), ("input_tokens", "input_tpm"), ("output_tokens", "output_tpm"))}))


_UNSET = ("", "none", "off", "0")


def _configured(value: Any) -> str | None:
    return None if value is None or str(value).strip().lower() in _UNSET else str(value)


def _per_minute(profile: str, field: str, value: Any) -> int | None:
    if _configured(value) is None:
        return None
    try:
        number = int(str(value).strip())
    except ValueError:
        raise LLMError(f"LLM profile '{profile}': {field} per minute must be a whole number, got {value!r}") from None
    if number <= 0:
        raise LLMError(f"LLM profile '{profile}': {field} per minute must be positive, got {value!r}")
    return number


def estimate_prompt_tokens(*, chat: list[dict[str, str]] | None = None, prompt: str | None = None) -> int:
    """A prompt's tokens before a tokenizer sees it: 4 characters a token, plus a few per message.

    An estimate on purpose (MAMS speaks to many providers' tokenizers): it only sizes a reservation,
    which the usage in the answer then corrects.
    """
    if chat is not None:
        chars = sum(len(str(m.get("content") or "")) for m in chat) + len(chat)
        return math.ceil(chars / 4) + 4 * len(chat)
    return math.ceil(len(prompt or "") / 4) + 1


def profile_probe(name: str, *, timeout: float = 2.0) -> None:
    """Raise LLMError unless a profile marked `probe` in LLM_PROFILES (the local server) answers
    GET {base_url}/models within `timeout` seconds. Called once per launch, before anything is queued,
    so that a launch on a server that is not running is refused with how to start it rather than
    accepted and failed run by run; hosted profiles are not probed (their key is checked instead)."""
    raw = settings.LLM_PROFILES.get(name) or {}
    if not raw.get("probe"):
        return
    profile = get_profile(name)
    url = f"{profile.base_url.rstrip('/')}/models"
    try:
        httpx.get(url, timeout=timeout, headers={"Authorization": f"Bearer {profile.api_key}"}).raise_for_status()
    except httpx.HTTPError as exc:
        raise LLMError(f"LLM profile '{name}' does not answer at {profile.base_url} ({exc.__class__.__name__}: "
                       f"{str(exc)[:120]}). Start it with `make up` (or only the model server: "
                       f"`deploy/local/stack.sh llm`), point {profile.base_url_env} at a running server, or give "
                       "the agents a baseline strategy (boulware, linear, conceder), which needs no LLM.") from exc


_clients: dict[tuple[str, str], openai.OpenAI] = {}
_clients_lock = threading.Lock()


def _client(base_url: str, api_key: str) -> openai.OpenAI:
    """One pooled client per endpoint and process (the openai client is thread-safe).

    Built under a lock: 24 threads racing to build 24 clients each paid a first-request set-up
    cost after their rate slot was granted, which bunched their arrivals at the provider.
    """
    with _clients_lock:
        client = _clients.get((base_url, api_key))
        if client is None:
            timeout = httpx.Timeout(settings.LLM_TIMEOUT_SECONDS, connect=5.0)
            # The request hook runs as the request goes on the wire, after the client has built it: a
            # request whose worker stalled since its rate slot was granted takes a fresh slot there
            # (limiter.hold_if_late), so it cannot crowd the provider's next window.
            http = openai.DefaultHttpxClient(timeout=timeout, event_hooks={"request": [_on_send]})
            client = openai.OpenAI(base_url=base_url, api_key=api_key, max_retries=0, timeout=timeout,
                                   http_client=http)
            # The client imports its resources and response types lazily, on first use, under
            # Python's import lock: every thread's first call would stall together and then leave
            # in one burst, after their rate slots were granted. Pay that here, before any slot;
            # the module imports above already paid the bulk of it (~0.7 s, every resource module
            # and its pydantic models) when the worker started, not in its first batch's first turn.
            _ = (client.chat.completions, client.completions)
            _clients[(base_url, api_key)] = client
        return client


def _on_send(_request: httpx.Request) -> None:
    hold_if_late()


def _retry_after(response: httpx.Response | None) -> float | None:
    if response is None:
        return None
    for header in ("retry-after-ms", "retry-after"):
        value = response.headers.get(header)
        if value:
            try:
                seconds = float(value) / (1000 if header.endswith("ms") else 1)
            except ValueError:
                continue
            return max(0.0, min(seconds, 600.0))
    return None


def complete(*, profile: Profile, model: str, chat: list[dict[str, str]] | None = None,
             prompt: str | None = None, temperature: float = 0.7, max_tokens: int = 200,
             stop: list[str] | None = None, seed: int | None = None, meta: dict[str, Any] | None = None
             ) -> LLMReply:
    """One LLM call under the global limits. Never call it inside a database transaction.

    `meta` (run, batch, round, role, handle) labels the call's Galileo span; it is buffered only when a
    Galileo key is set (negotiation/agents/spans.py, sent by analytics/tracing.py).
    """
    limiter = limiter_for(settings.REDIS_URL)
    where = f"LLM profile '{profile.name}' at {profile.base_url}"
    kwargs: dict[str, Any] = {"model": model, "temperature": temperature, "max_tokens": max_tokens}
    if stop:
        kwargs["stop"] = stop
    if seed is not None:
        kwargs["seed"] = seed
    client = _client(profile.base_url, profile.api_key)
    key = f"{profile.name}:{model}"
    prompt_estimate = estimate_prompt_tokens(chat=chat, prompt=prompt)
    reserved = Cost(tokens=prompt_estimate + max_tokens, input_tokens=prompt_estimate, output_tokens=max_tokens)
    budget = {"rate": profile.rate, "limits": profile.token_limits, "share": settings.LLM_PROVIDER_LIMIT_SHARE,
              "configured_share": settings.LLM_CONFIGURED_LIMIT_SHARE}
    try:
        with limiter.slot(key, max_concurrency=profile.max_concurrency, lease_seconds=settings.LLM_TIMEOUT_SECONDS + 30,
                          cost=reserved, **budget):
            started = time.perf_counter()
            if chat is not None:
                raw = client.chat.completions.with_raw_response.create(messages=chat, **kwargs)  # type: ignore[arg-type]
                limiter.observe(key, raw.headers, cost=reserved)
                response = raw.parse()
                text = _reply_text(response, chat=True)
            else:
                raw = client.completions.with_raw_response.create(prompt=prompt or "", **kwargs)
                limiter.observe(key, raw.headers, cost=reserved)
                response = raw.parse()
                text = _reply_text(response, chat=False)
            latency_ms = int((time.perf_counter() - started) * 1000)
    except LimiterTimeout as exc:
        raise LLMTransientError(f"{where}: {exc}") from exc
    except openai.RateLimitError as exc:
        retry_after = _retry_after(exc.response)
        # Refused: nothing was used; and every worker holds back until the provider has room.
        limiter.settle(key, reserved=reserved, used=Cost(), **budget)
        limiter.observe(key, exc.response.headers, cost=reserved, retry_after=retry_after)
        raise LLMTransientError(f"{where} answered 429 (rate limited)", retry_after=retry_after) from exc
    except openai.APITimeoutError as exc:
        raise LLMTransientError(f"{where} timed out after {settings.LLM_TIMEOUT_SECONDS:g}s "
                                "(setting: MAMS_LLM_TIMEOUT)") from exc
    except openai.APIConnectionError as exc:
        raise LLMTransientError(f"cannot reach {where}: is the server running, and is {profile.base_url_env} "
                                f"right? ({exc.__class__.__name__})") from exc
    except openai.AuthenticationError as exc:
        raise LLMError(f"{where} refused the API key (401); check the profile's key variable") from exc
    except openai.NotFoundError as exc:
        raise LLMError(f"{where} does not know model '{model}' (404); set the profile's model "
                       "variable or the batch's model") from exc
    except openai.APIStatusError as exc:
        if exc.status_code in (408, 409, 425) or exc.status_code >= 500:
            raise LLMTransientError(f"{where} answered {exc.status_code}",
                                    retry_after=_retry_after(exc.response)) from exc
        raise LLMError(f"{where} rejected the request ({exc.status_code}): {str(exc)[:200]}") from exc
    except (json.JSONDecodeError, openai.APIResponseValidationError, _MalformedReply) as exc:
        raise LLMTransientError(f"{where} sent a malformed response body ({exc})") from exc
    usage = getattr(response, "usage", None)
    reply = LLMReply(text=text, model=getattr(response, "model", None) or model,
                     prompt_tokens=int(getattr(usage, "prompt_tokens", 0) or 0),
                     completion_tokens=int(getattr(usage, "completion_tokens", 0) or 0),
                     latency_ms=latency_ms)
    if usage is not None:
        # The reservation becomes what the provider counted; with no usage reported it stays as reserved.
        limiter.settle(key, reserved=reserved, used=Cost(
            tokens=reply.prompt_tokens + reply.completion_tokens, input_tokens=reply.prompt_tokens,
            output_tokens=reply.completion_tokens), **budget)
    if meta is not None and getattr(settings, "GALILEO_API_KEY", None):
        spans.record_llm_call(url=settings.REDIS_URL, meta=meta, chat=chat, prompt=prompt, reply=reply,
                              temperature=temperature)
    return reply

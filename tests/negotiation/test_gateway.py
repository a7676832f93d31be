"""Tests for negotiation/agents/gateway.py: profiles, and how every provider failure comes out.

The real `openai` client talks over loopback to the fake provider (tests/fakes/openai_server.py),
or, for statuses the fake never sends (401, 404, 422, a 200 with a body of the wrong shape), to a
tiny stub server defined here. Anything worth a retry must raise `LLMTransientError` (with the
provider's Retry-After when it gave one), everything else `LLMError`, and every message names the
profile. No database; the global limiter runs against the real Redis.
"""

from __future__ import annotations

import json
import socket
import threading
import time
from collections.abc import Iterator
from http.server import BaseHTTPRequestHandler, ThreadingHTTPServer
from typing import Any

import pytest
from django.conf import settings

from negotiation.agents import gateway, limiter
from negotiation.agents.gateway import LLMError, LLMReply, LLMTransientError, complete, get_profile
from tests.fakes.openai_server import Request

pytestmark = pytest.mark.services  # the Redis limiter (make services)

CHAT = [{"role": "system", "content": "You are terse."}, {"role": "user", "content": "Say hi."}]


@pytest.fixture(autouse=True)
def fast_rate(monkeypatch: pytest.MonkeyPatch, fake_llm: Any) -> Iterator[None]:
    # The profile's default 60/minute spaces calls one second apart; these tests are not about the rate.
    monkeypatch.setitem(settings.LLM_PROFILES["openai-compatible"], "rate", "6000/minute")
    yield
    # A 429's Retry-After holds the shared schedule for every worker (up to 600 s here): forget it,
    # and any limits a provider stated, so that no test waits out another's.
    shared = limiter.limiter_for(settings.REDIS_URL)
    stale = [*shared.redis.scan_iter(f"{shared.namespace}:gcra:*"),
             *shared.redis.scan_iter(f"{shared.namespace}:limits:*")]
    if stale:
        shared.redis.delete(*stale)


def add_profile(monkeypatch: pytest.MonkeyPatch, name: str, **overrides: Any) -> None:
    """A copy of the fake's profile under a new name, removed again after the test."""
    monkeypatch.setitem(settings.LLM_PROFILES, name, {**settings.LLM_PROFILES["openai-compatible"], **overrides})


def unused_port() -> int:
    with socket.socket() as sock:
        sock.bind(("127.0.0.1", 0))
        return sock.getsockname()[1]


class Stub:
    """A one-route provider that answers every POST with the status, body and headers it is given."""

    def __init__(self) -> None:
        self.status, self.body, self.headers = 200, "{}", {}
        stub = self

        class Handler(BaseHTTPRequestHandler):
            protocol_version = "HTTP/1.1"

            def log_message(self, format: str, *args: Any) -> None:
                pass

            def do_POST(self) -> None:
                self.rfile.read(int(self.headers.get("Content-Length") or 0))
                body = stub.body.encode()
                self.send_response(stub.status)
                self.send_header("Content-Type", "application/json")
                self.send_header("Content-Length", str(len(body)))
                for header, value in stub.headers.items():
                    self.send_header(header, value)
                self.end_headers()
                self.wfile.write(body)

        self.server = ThreadingHTTPServer(("127.0.0.1", 0), Handler)
        self.server.daemon_threads = True
        self.url = f"http://127.0.0.1:{self.server.server_address[1]}/v1"
        threading.Thread(target=self.server.serve_forever, daemon=True).start()

    def answer(self, status: int, body: Any = None, headers: dict[str, str] | None = None) -> None:
        error = {"error": {"message": f"stub says {status}", "type": "stub_error", "param": None, "code": None}}
        self.status = status
        self.body = body if isinstance(body, str) else json.dumps(error if body is None else body)
        self.headers = headers or {}


@pytest.fixture(scope="module")
def stub_server() -> Iterator[Stub]:
    stub = Stub()
    yield stub
    stub.server.shutdown()
    stub.server.server_close()


@pytest.fixture
def stub(stub_server: Stub, monkeypatch: pytest.MonkeyPatch) -> Stub:
    add_profile(monkeypatch, "stub", base_url=stub_server.url, rate="6000/minute")
    return stub_server


def call_stub(**kwargs: Any) -> LLMReply:
    return complete(profile=get_profile("stub"), model="stub-model", chat=CHAT, **kwargs)


# --- profiles --------------------------------------------------------------------------------------

def test_get_profile_resolves_the_url_key_format_and_limits(fake_llm: Any) -> None:
    # given the suite's openai-compatible profile and MAMS_OPENAI_API_KEY=test-key
    # when it is resolved
    profile = get_profile("openai-compatible")
    # then every field comes from the settings and the environment
    assert profile.name == "openai-compatible"
    assert profile.base_url == fake_llm.base_url
    assert profile.api_key == "test-key"
    assert profile.prompt_format == "chat"
    assert profile.max_concurrency == int(settings.LLM_PROFILES["openai-compatible"]["max_concurrency"])
    assert profile.model_for("analyst") and profile.model_for("seller") == profile.models["agent"]


def test_an_unknown_profile_is_named_with_the_known_ones() -> None:
    # when a profile that does not exist is asked for
    with pytest.raises(LLMError) as err:
        get_profile("no-such-profile")
    # then the message names it and lists the profiles there are
    assert "'no-such-profile'" in str(err.value)
    assert all(name in str(err.value) for name in settings.LLM_PROFILES)


def test_a_missing_api_key_names_the_environment_variable(monkeypatch: pytest.MonkeyPatch) -> None:
    # given the profile's key variable is unset
    monkeypatch.delenv("MAMS_OPENAI_API_KEY")
    # when the profile is resolved
    with pytest.raises(LLMError) as err:
        get_profile("openai-compatible")
    # then the message names the profile and the variable to set
    assert "'openai-compatible'" in str(err.value) and "MAMS_OPENAI_API_KEY" in str(err.value)


def test_a_missing_base_url_names_its_variable(monkeypatch: pytest.MonkeyPatch) -> None:
    # given a profile with no base URL configured
    monkeypatch.setitem(settings.LLM_PROFILES["openai-compatible"], "base_url", None)
    # when it is resolved
    with pytest.raises(LLMError) as err:
        get_profile("openai-compatible")
    # then the message names the profile and MAMS_OPENAI_BASE_URL
    assert "'openai-compatible'" in str(err.value) and "MAMS_OPENAI_BASE_URL" in str(err.value)


def test_a_profile_with_a_literal_key_needs_no_environment(monkeypatch: pytest.MonkeyPatch) -> None:
    # given the local profile, whose key is written in the settings (llama.cpp ignores it)
    monkeypatch.delenv("MAMS_OPENAI_API_KEY")
    # when it is resolved
    profile = get_profile("local")
    # then it has that key and the completion format
    assert profile.api_key == settings.LLM_PROFILES["local"]["api_key"]
    assert profile.prompt_format == "completion"


# --- successful calls ------------------------------------------------------------------------------

def test_a_chat_call_returns_text_model_tokens_and_latency(llm: Any) -> None:
    # given a provider that answers with a fixed line and records what it was sent
    bodies: list[dict] = []

    def policy(request: Request) -> str:
        bodies.append(request.body)
        return "hello there"

    llm.policy = policy
    # when a chat call is made with explicit sampling parameters
    reply = complete(profile=get_profile("openai-compatible"), model="fake-model", chat=CHAT, temperature=0.3,
                     max_tokens=50, seed=42)
    # then the reply carries the text, the model, the usage and a latency
    assert reply.text == "hello there"
    assert reply.model == "fake-model"
    assert reply.prompt_tokens > 0 and reply.completion_tokens > 0
    assert reply.latency_ms >= 0
    # and the request went to the chat endpoint with exactly those parameters
    assert [r["path"] for r in llm.requests] == ["/v1/chat/completions"]
    body = bodies[0]
    assert body["messages"] == CHAT and body["model"] == "fake-model"
    assert body["temperature"] == 0.3 and body["max_tokens"] == 50 and body["seed"] == 42
    assert "stop" not in body


def test_a_prompt_call_uses_the_completions_endpoint_and_forwards_stop(llm: Any) -> None:
    # given a provider that would write two lines
    bodies: list[dict] = []

    def policy(request: Request) -> str:
        bodies.append(request.body)
        return 'offer", "price": 7.5}\nBuyer: and more'

    llm.policy = policy
    # when a completion call stops at a newline
    reply = complete(profile=get_profile("openai-compatible"), model="fake-model", prompt='X: {"action": "',
                     stop=["\n"])
    # then the text ends at the stop, and the request was a completion with the prompt and stop
    assert reply.text == 'offer", "price": 7.5}'
    assert [r["path"] for r in llm.requests] == ["/v1/completions"]
    assert bodies[0]["prompt"] == 'X: {"action": "' and bodies[0]["stop"] == ["\n"]
    assert "seed" not in bodies[0]


def test_calls_hold_the_profiles_concurrency_cap(llm: Any, monkeypatch: pytest.MonkeyPatch) -> None:
    # given a profile allowing 2 calls in flight, and a provider that takes 0.15 s per answer
    add_profile(monkeypatch, "narrow", max_concurrency=2)
    lock, active, peak = threading.Lock(), [0], [0]

    def slow(request: Request) -> str:
        with lock:
            active[0] += 1
            peak[0] = max(peak[0], active[0])
        time.sleep(0.15)
        with lock:
            active[0] -= 1
        return "ok"

    llm.policy = slow
    profile = get_profile("narrow")
    # when 6 threads call at once
    replies: list[str] = []
    threads = [threading.Thread(target=lambda: replies.append(
        complete(profile=profile, model="narrow-model", chat=CHAT).text)) for _ in range(6)]
    for thread in threads:
        thread.start()
    for thread in threads:
        thread.join(timeout=30)
    # then all got an answer, and the provider never saw more than 2 at a time
    assert replies == ["ok"] * 6
    assert peak[0] == 2


# --- transient failures ----------------------------------------------------------------------------

def test_a_429_is_transient_and_carries_retry_after(llm: Any) -> None:
    # given a provider that answers the next call with 429 and Retry-After: 2
    llm.add_faults("429:2")
    # when a call is made
    with pytest.raises(LLMTransientError) as err:
        complete(profile=get_profile("openai-compatible"), model="fake-model", chat=CHAT)
    # then it is transient, names the profile and the status, and holds the hint
    assert "'openai-compatible'" in str(err.value) and "429" in str(err.value)
    assert err.value.retry_after == 2.0
    # and the client did not retry on its own (Celery does)
    assert len(llm.requests) == 1


@pytest.mark.parametrize(("headers", "expected"), [
    ({"retry-after-ms": "250", "retry-after": "7"}, 0.25),  # the precise header wins
    ({"retry-after": "3"}, 3.0),
    ({"retry-after": "5000"}, 600.0),  # capped at ten minutes
    ({"retry-after": "soon"}, None),  # unreadable: no hint rather than an error
    ({}, None),
])
def test_retry_after_headers_are_read_in_seconds(stub: Stub, headers: dict[str, str], expected: float | None
                                                 ) -> None:
    # given a 429 with these headers
    stub.answer(429, headers=headers)
    # when a call is made
    with pytest.raises(LLMTransientError) as err:
        call_stub()
    # then the hint is in seconds
    assert err.value.retry_after == expected
    assert "'stub'" in str(err.value)


@pytest.mark.parametrize("fault", ["500", "503"])
def test_a_5xx_is_transient(llm: Any, fault: str) -> None:
    # given a provider failing with a server error
    llm.add_faults(fault)
    # when a call is made
    with pytest.raises(LLMTransientError) as err:
        complete(profile=get_profile("openai-compatible"), model="fake-model", chat=CHAT)
    # then it is transient and says which profile answered what
    assert "'openai-compatible'" in str(err.value) and fault in str(err.value)


@pytest.mark.parametrize("status", [408, 409, 425])
def test_timeout_and_conflict_statuses_are_transient(stub: Stub, status: int) -> None:
    # given a provider answering a status that is worth a retry although it is a 4xx
    stub.answer(status, headers={"retry-after": "1"})
    # when a call is made
    with pytest.raises(LLMTransientError) as err:
        call_stub()
    # then it is transient, with the hint
    assert str(status) in str(err.value) and err.value.retry_after == 1.0


def test_a_503_carries_retry_after_too(stub: Stub) -> None:
    # given an overloaded provider that says when to come back
    stub.answer(503, headers={"retry-after": "4"})
    # when a call is made
    with pytest.raises(LLMTransientError) as err:
        call_stub()
    # then the hint is kept
    assert err.value.retry_after == 4.0


@pytest.fixture
def short_timeout(settings: Any, monkeypatch: pytest.MonkeyPatch) -> Iterator[float]:
    # The openai client is cached per endpoint with its timeout: give this test fresh clients, and
    # the next tests the ones they had.
    settings.LLM_TIMEOUT_SECONDS = 0.3
    if hasattr(gateway._client, "cache_clear"):
        gateway._client.cache_clear()
        yield settings.LLM_TIMEOUT_SECONDS
        gateway._client.cache_clear()
    else:
        monkeypatch.setattr(gateway, "_clients", {})
        yield settings.LLM_TIMEOUT_SECONDS


def test_a_stalled_provider_times_out_as_transient(llm: Any, short_timeout: float) -> None:
    # given a provider that stalls for 1 s, and a 0.3 s timeout
    llm.add_faults("timeout:1")
    # when a call is made
    started = time.monotonic()
    with pytest.raises(LLMTransientError) as err:
        complete(profile=get_profile("openai-compatible"), model="fake-model", chat=CHAT)
    # then it gave up at the timeout, naming the profile and the setting to change
    assert time.monotonic() - started < 0.9
    assert "'openai-compatible'" in str(err.value) and "timed out" in str(err.value)
    assert "MAMS_LLM_TIMEOUT" in str(err.value)


def test_an_unreachable_provider_is_transient_and_names_the_url_setting(monkeypatch: pytest.MonkeyPatch) -> None:
    # given a profile pointing at a loopback port nobody listens on
    add_profile(monkeypatch, "dead-end", base_url=f"http://127.0.0.1:{unused_port()}/v1")
    # when a call is made
    with pytest.raises(LLMTransientError) as err:
        complete(profile=get_profile("dead-end"), model="fake-model", chat=CHAT)
    # then it is transient and says where it tried and which setting holds the URL
    assert "'dead-end'" in str(err.value) and "cannot reach" in str(err.value)
    assert "MAMS_OPENAI_BASE_URL" in str(err.value)


@pytest.mark.parametrize("chat", [True, False])
def test_a_truncated_body_is_transient(llm: Any, chat: bool) -> None:
    # given a provider whose next answer is cut in half mid-JSON
    llm.add_faults("truncated_body")
    # when a chat or a completion call is made
    with pytest.raises(LLMTransientError) as err:
        if chat:
            complete(profile=get_profile("openai-compatible"), model="fake-model", chat=CHAT)
        else:
            complete(profile=get_profile("openai-compatible"), model="fake-model", prompt="Say hi.")
    # then it is a malformed body, worth a retry
    assert "'openai-compatible'" in str(err.value) and "malformed" in str(err.value)


@pytest.mark.parametrize("body", ["", "not json at all"])
def test_a_200_that_is_not_json_is_transient(stub: Stub, body: str) -> None:
    # given a 200 whose body is not JSON
    stub.answer(200, body)
    # when a call is made
    with pytest.raises(LLMTransientError) as err:
        call_stub()
    # then it is a malformed body
    assert "'stub'" in str(err.value) and "malformed" in str(err.value)


@pytest.mark.parametrize("body", [
    {"error": {"message": "upstream provider failed", "code": 502}},  # what some routers send with a 200
    {"choices": []},
    [],
])
def test_a_200_with_a_body_of_the_wrong_shape_is_transient(stub: Stub, body: Any) -> None:
    # given a 200 whose JSON is not a completion
    stub.answer(200, json.dumps(body))
    # when a call is made
    # then it is a malformed body worth a retry, like a truncated one
    with pytest.raises(LLMTransientError):
        call_stub()


def test_waiting_too_long_for_a_limiter_slot_is_transient(llm: Any, monkeypatch: pytest.MonkeyPatch) -> None:
    # given a limiter whose wait budget is already spent
    def spent(deadline: float, base: float, jitter: float) -> None:
        raise limiter.LimiterTimeout("waited too long for an LLM slot")

    add_profile(monkeypatch, "crowded", max_concurrency=1)
    monkeypatch.setattr(limiter, "_nap", spent)
    # and the profile's only slot held by someone else
    lim = limiter.limiter_for(settings.REDIS_URL)
    with lim.slot("crowded:fake-model", rate="6000/minute", max_concurrency=1, lease_seconds=10):
        # when a call is made
        with pytest.raises(LLMTransientError) as err:
            complete(profile=get_profile("crowded"), model="fake-model", chat=CHAT)
    # then it is transient, names the profile, and nothing reached the provider
    assert "'crowded'" in str(err.value) and "slot" in str(err.value)
    assert llm.requests == []


# --- permanent failures ----------------------------------------------------------------------------

def test_a_refused_key_is_permanent(stub: Stub) -> None:
    # given a provider refusing the key
    stub.answer(401)
    # when a call is made
    with pytest.raises(LLMError) as err:
        call_stub()
    # then it is not transient, and says the key was refused
    assert not isinstance(err.value, LLMTransientError)
    assert "'stub'" in str(err.value) and "401" in str(err.value) and "key" in str(err.value)


def test_an_unknown_model_is_permanent_and_names_the_model(stub: Stub) -> None:
    # given a provider that does not know the model
    stub.answer(404)
    # when a call is made
    with pytest.raises(LLMError) as err:
        call_stub()
    # then the message names the profile, the model and the status
    assert "'stub'" in str(err.value) and "'stub-model'" in str(err.value) and "404" in str(err.value)


def test_a_wrong_path_on_the_fake_is_a_permanent_404(llm: Any, monkeypatch: pytest.MonkeyPatch) -> None:
    # given a profile whose base URL misses the /v1 prefix
    add_profile(monkeypatch, "no-v1", base_url=llm.base_url.removesuffix("/v1") + "/wrong")
    # when a call is made
    with pytest.raises(LLMError) as err:
        complete(profile=get_profile("no-v1"), model="fake-model", chat=CHAT)
    # then it is a permanent 404 naming the profile
    assert not isinstance(err.value, LLMTransientError)
    assert "'no-v1'" in str(err.value) and "404" in str(err.value)


def test_a_bad_request_is_permanent_and_quotes_the_provider(llm: Any) -> None:
    # given a request the fake refuses with 400 (no model)
    # when a call is made with an empty model name
    with pytest.raises(LLMError) as err:
        complete(profile=get_profile("openai-compatible"), model="", chat=CHAT)
    # then it is permanent, with the status and the provider's reason
    assert not isinstance(err.value, LLMTransientError)
    assert "'openai-compatible'" in str(err.value) and "400" in str(err.value)
    assert "model" in str(err.value)


@pytest.mark.parametrize("status", [400, 403, 422])
def test_other_client_errors_are_permanent(stub: Stub, status: int) -> None:
    # given a provider rejecting the request
    stub.answer(status)
    # when a call is made
    with pytest.raises(LLMError) as err:
        call_stub()
    # then it is permanent, with the status and the provider's message
    assert not isinstance(err.value, LLMTransientError)
    assert "'stub'" in str(err.value) and str(status) in str(err.value) and "stub says" in str(err.value)

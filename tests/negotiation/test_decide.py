"""Tests for negotiation/agents/decide.py: one agent turn, from its view to a valid action.

The fake provider (tests/fakes/openai_server.py) plays a sane negotiator and injects faults: a
garbled answer gets one repair (told what was wrong), a second garbled answer hands the turn to
the LINEAR baseline and says why, a baseline strategy never calls the LLM, and transient provider
errors are not swallowed but raised for the Celery task to retry. The completion format (for base
models) is checked on a profile made for the test. No database.
"""

from __future__ import annotations

import json
from decimal import Decimal
from typing import Any

import pytest
from django.conf import settings

from negotiation.agents import prompts
from negotiation.agents.baseline import Strategy, baseline_buyer, baseline_seller
from negotiation.agents.decide import CHAT_MAX_TOKENS, COMPLETION_MAX_TOKENS, Decision, decide_buyer, decide_seller
from negotiation.agents.gateway import LLMError, LLMTransientError
from negotiation.engine.types import (
    BUYER,
    BuyerAct,
    BuyerAction,
    BuyerPrivate,
    BuyerView,
    Msg,
    SellerAct,
    SellerAction,
    SellerPrivate,
    SellerView,
    money,
)
from negotiation.engine.visibility import buyer_view, seller_view
from tests.fakes.openai_server import INVALID_CONTENT, Request, _tokens
from tests.fakes.policies import negotiation

ITEM = "USB-C Cable"
DEADLINE = 4
SPEC = {"strategy": "llm", "profile": "openai-compatible", "model": "fake-model", "temperature": 0.7,
        "fallback": "linear", "prompt_format": "chat"}

QUICK = SellerPrivate(handle="@QuickTech", style="neutral", retention_weight=Decimal("0.60"),
                      profit_weight=Decimal("0.40"), cost_price=money("4.00"), selling_price=money("9.00"),
                      least_price=money("6.00"))
BUYER_ME = BuyerPrivate(item_name=ITEM, quantity=3, min_price=money("5.00"), max_price=money("8.00"))
HANDLES = ("@QuickTech", "@CableHouse")
TRANSCRIPT = (
    Msg(1, BUYER, HANDLES, "I need 3 USB-C cables. Can you do $5.00 each?", "message", money("5.00")),
    Msg(1, "@QuickTech", (BUYER,), "I can do $9.00 each.", "offer", money("9.00")),
    Msg(1, "@CableHouse", (BUYER,), "I can do $8.50 each.", "offer", money("8.50")),
    Msg(2, BUYER, ("@QuickTech",), "@QuickTech, can you do $6.00?", "message", money("6.00")),
)


def quick_view() -> SellerView:
    """@QuickTech in round 2, answering the buyer's $6.00 counter."""
    return seller_view(me=QUICK, item_name=ITEM, quantity=3, round_no=2, transcript=TRANSCRIPT)


def the_buyers_view() -> BuyerView:
    """The buyer at the start of round 2, with both round-1 offers standing."""
    return buyer_view(me=BUYER_ME, handles=HANDLES, round_no=2, max_rounds=5, transcript=TRANSCRIPT[:3])


def spec(**changes: Any) -> dict:
    return {**SPEC, **changes}


@pytest.fixture(autouse=True)
def fast_rate(monkeypatch: pytest.MonkeyPatch, fake_llm: Any) -> None:
    # The profile's default 60/minute spaces calls one second apart; these tests are not about the rate.
    monkeypatch.setitem(settings.LLM_PROFILES["openai-compatible"], "rate", "6000/minute")


@pytest.fixture
def recorded(llm: Any) -> list[tuple[Request, str]]:
    """Every request the fake's negotiator answered, with what the policy wrote (before any fault)."""
    seen: list[tuple[Request, str]] = []

    def policy(request: Request) -> str:
        content = negotiation(request)
        seen.append((request, content))
        return content

    llm.policy = policy
    return seen


@pytest.fixture
def completion_profile(monkeypatch: pytest.MonkeyPatch, fake_llm: Any) -> str:
    """A copy of the fake's profile for a base model: completion prompts. Removed after the test."""
    name = "fake-completion"
    monkeypatch.setitem(settings.LLM_PROFILES, name, {**settings.LLM_PROFILES["openai-compatible"],
                                                      "prompt_format": "completion", "rate": "6000/minute"})
    return name


def assert_valid_seller_action(action: SellerAction, me: SellerPrivate) -> None:
    assert isinstance(action, SellerAction) and action.action in set(SellerAct)
    if action.action == SellerAct.OFFER:
        assert action.price is not None and me.least_price <= action.price <= me.selling_price


# --- a good answer ---------------------------------------------------------------------------------

def test_a_seller_turn_with_a_good_answer_takes_one_call(recorded: list[tuple[Request, str]], llm: Any) -> None:
    # given the fake negotiator and @QuickTech's view in round 2
    view = quick_view()
    # when the seller decides
    decision = decide_seller(view, spec=SPEC, seed=11, deadline=DEADLINE)
    # then one chat call produced a valid, unrepaired action with the model's usage
    assert decision.llm_calls == 1 and not decision.repaired and not decision.fallback
    assert decision.fallback_reason == ""
    assert decision.action.action == SellerAct.OFFER and decision.action.price == Decimal("7.95")
    assert_valid_seller_action(decision.action, QUICK)
    assert decision.model == "fake-model"
    request, content = recorded[0]
    assert decision.raw == content
    assert decision.prompt_tokens == _tokens(request.text) and decision.completion_tokens == _tokens(content)
    # and the request carried the seller's prompt and the spec's sampling
    assert [r["path"] for r in llm.requests] == ["/v1/chat/completions"]
    assert request.messages == prompts.seller_chat(view)
    assert request.body["temperature"] == 0.7 and request.body["seed"] == 11
    assert request.body["max_tokens"] == CHAT_MAX_TOKENS and request.body["model"] == "fake-model"


def test_a_buyer_turn_with_a_good_answer_takes_one_call(recorded: list[tuple[Request, str]]) -> None:
    # given the buyer's view at round 2 with offers of $9.00 and $8.50 standing
    view = the_buyers_view()
    # when the buyer decides
    decision = decide_buyer(view, spec=SPEC, seed=5)
    # then it is the negotiator's counter, from one call
    assert decision.llm_calls == 1 and not decision.repaired and not decision.fallback
    assert decision.action.action == BuyerAct.MESSAGE and decision.action.price == Decimal("5.90")
    assert recorded[0][0].messages == prompts.buyer_chat(view)


# --- one repair ------------------------------------------------------------------------------------

def test_one_garbled_answer_is_repaired_and_both_calls_are_counted(recorded: list[tuple[Request, str]],
                                                                   llm: Any) -> None:
    # given a provider whose next answer is prose instead of JSON
    llm.add_faults("invalid_content")
    view = quick_view()
    # when the seller decides
    decision = decide_seller(view, spec=SPEC, seed=11, deadline=DEADLINE)
    # then the second answer was used, marked repaired, and both calls' tokens are summed
    assert decision.repaired and not decision.fallback and decision.llm_calls == 2
    assert decision.action.action == SellerAct.OFFER
    assert_valid_seller_action(decision.action, QUICK)
    (first, _), (second, content) = recorded
    assert decision.prompt_tokens == _tokens(first.text) + _tokens(second.text)
    assert decision.completion_tokens == _tokens(INVALID_CONTENT) + _tokens(content)
    assert decision.raw == f"{INVALID_CONTENT}\n---\n{content}"
    # and the repair showed the model its own answer and told it what was wrong, with the next seed
    assert second.messages == prompts.seller_chat(view) + [
        {"role": "assistant", "content": INVALID_CONTENT},
        {"role": "user", "content": prompts.REPAIR.format(error="no JSON object found")},
    ]
    assert [first.body["seed"], second.body["seed"]] == [11, 12]


@pytest.mark.parametrize("fault", ["truncated_content", "missing_fields", "injection"])
def test_other_unusable_seller_answers_are_repaired(recorded: list[tuple[Request, str]], llm: Any,
                                                    fault: str) -> None:
    # given a first answer cut in half, without an action, or a buyer's action (an injection)
    llm.add_faults(fault)
    # when the seller decides
    decision = decide_seller(quick_view(), spec=SPEC, seed=1, deadline=DEADLINE)
    # then the repair produced a valid seller action
    assert decision.repaired and decision.llm_calls == 2 and not decision.fallback
    assert_valid_seller_action(decision.action, QUICK)


def test_a_buyer_answer_is_repaired_too(recorded: list[tuple[Request, str]], llm: Any) -> None:
    # given a first answer with no action
    llm.add_faults("missing_fields")
    # when the buyer decides
    decision = decide_buyer(the_buyers_view(), spec=SPEC, seed=3)
    # then the repair prompt quoted the problem, and its answer was used
    assert decision.repaired and decision.llm_calls == 2
    assert decision.action.action == BuyerAct.MESSAGE
    assert "action" in recorded[1][0].messages[-1]["content"]


# --- fallback --------------------------------------------------------------------------------------

def test_two_garbled_seller_answers_fall_back_to_the_linear_baseline(recorded: list[tuple[Request, str]],
                                                                     llm: Any) -> None:
    # given a provider whose next two answers are prose
    llm.add_faults("invalid_content", "invalid_content")
    view = quick_view()
    # when the seller decides
    decision = decide_seller(view, spec=SPEC, seed=11, deadline=DEADLINE)
    # then the LINEAR baseline acted, and the decision says so and why
    assert decision.fallback and not decision.repaired and decision.llm_calls == 2
    assert "unusable output after one repair" in decision.fallback_reason
    assert "no JSON object" in decision.fallback_reason
    assert decision.action == baseline_seller(view, strategy=Strategy.LINEAR, deadline=DEADLINE)
    assert_valid_seller_action(decision.action, QUICK)
    # and both calls are still accounted for
    assert decision.prompt_tokens > 0 and decision.completion_tokens == 2 * _tokens(INVALID_CONTENT)
    assert decision.raw == f"{INVALID_CONTENT}\n---\n{INVALID_CONTENT}"
    assert len(llm.requests) == 2


def test_two_garbled_buyer_answers_fall_back_to_the_linear_baseline(recorded: list[tuple[Request, str]],
                                                                    llm: Any) -> None:
    # given two unusable answers in a row
    llm.add_faults("truncated_content", "invalid_content")
    view = the_buyers_view()
    # when the buyer decides
    decision = decide_buyer(view, spec=SPEC, seed=3)
    # then the LINEAR baseline's action was taken, and it is a valid buyer action
    assert decision.fallback and decision.llm_calls == 2 and decision.fallback_reason
    assert decision.action == baseline_buyer(view, strategy=Strategy.LINEAR)
    assert isinstance(decision.action, BuyerAction) and decision.action.action in set(BuyerAct)
    assert decision.action.price is not None and decision.action.price <= BUYER_ME.max_price


def test_the_fallback_strategy_comes_from_the_spec(llm: Any) -> None:
    # given two unusable answers and a spec whose fallback is boulware
    llm.add_faults("invalid_content", "invalid_content")
    view = quick_view()
    # when the seller decides
    decision = decide_seller(view, spec=spec(fallback="boulware"), seed=1, deadline=DEADLINE)
    # then the BOULWARE baseline acted
    assert decision.fallback
    assert decision.action == baseline_seller(view, strategy=Strategy.BOULWARE, deadline=DEADLINE)


# --- baseline strategies ---------------------------------------------------------------------------

@pytest.mark.parametrize("strategy", ["boulware", "linear", "conceder"])
def test_a_baseline_seller_makes_no_http_request(llm: Any, strategy: str) -> None:
    # given a seller played by a baseline strategy
    view = quick_view()
    before = len(llm.requests)
    # when it decides
    decision = decide_seller(view, spec=spec(strategy=strategy), seed=1, deadline=DEADLINE)
    # then the provider was never called, and the action is the baseline's own
    assert len(llm.requests) == before
    assert decision == Decision(action=baseline_seller(view, strategy=Strategy(strategy), deadline=DEADLINE))
    assert decision.llm_calls == 0 and not decision.fallback


def test_a_baseline_buyer_makes_no_http_request(llm: Any) -> None:
    # given a buyer played by Boulware, pointed at a profile that could not even be resolved
    view = the_buyers_view()
    before = len(llm.requests)
    # when it decides
    decision = decide_buyer(view, spec=spec(strategy="boulware", profile="no-such-profile"), seed=1)
    # then no request was made and no profile was needed
    assert len(llm.requests) == before
    assert decision.action == baseline_buyer(view, strategy=Strategy.BOULWARE)


# --- errors that must not become fallbacks ---------------------------------------------------------

def test_a_429_propagates_for_the_task_to_retry(llm: Any) -> None:
    # given a provider answering 429 with Retry-After: 3
    llm.add_faults("429:3")
    # when the seller decides
    with pytest.raises(LLMTransientError) as err:
        decide_seller(quick_view(), spec=SPEC, seed=1, deadline=DEADLINE)
    # then the error reaches the caller with its hint, after exactly one request
    assert err.value.retry_after == 3.0
    assert len(llm.requests) == 1


@pytest.mark.parametrize("fault", ["429", "500", "truncated_body"])
def test_a_transient_error_on_the_repair_call_propagates_too(llm: Any, fault: str) -> None:
    # given a garbled first answer, then a transient failure on the repair
    llm.add_faults("invalid_content", fault)
    # when the buyer decides
    # then the transient error is raised, not hidden behind a fallback
    with pytest.raises(LLMTransientError):
        decide_buyer(the_buyers_view(), spec=SPEC, seed=1)
    assert len(llm.requests) == 2


def test_an_unknown_profile_is_an_error_not_a_fallback(llm: Any) -> None:
    # given an LLM spec naming a profile that does not exist
    # when the seller decides
    with pytest.raises(LLMError, match="no-such-profile"):
        decide_seller(quick_view(), spec=spec(profile="no-such-profile"), seed=1, deadline=DEADLINE)
    # then nothing was sent
    assert llm.requests == []


# --- the completion format -------------------------------------------------------------------------

def continuation(payload: dict) -> str:
    """What a base model writes after the primer: the rest of the JSON line, then more lines."""
    line = json.dumps(payload)
    assert line.startswith(prompts.PRIMER)
    return line[len(prompts.PRIMER):] + "\nBuyer: and the model keeps going\n"


def test_a_completion_profile_sends_a_primed_prompt_and_parses_after_the_primer(
        llm: Any, completion_profile: str) -> None:
    # given a base model that completes the seller's JSON line and then keeps writing
    bodies: list[dict] = []

    def base_model(request: Request) -> str:
        bodies.append(request.body)
        return continuation({"action": "offer", "price": 7.95, "message": "I can do $7.95 each."})

    llm.policy = base_model
    view = quick_view()
    # when the seller decides through the completion profile
    decision = decide_seller(view, spec=spec(profile=completion_profile, prompt_format="completion"), seed=9,
                             deadline=DEADLINE)
    # then the request was a completion of the seller's primed prompt, stopped at the first newline
    assert [r["path"] for r in llm.requests] == ["/v1/completions"]
    body = bodies[0]
    assert body["prompt"] == prompts.seller_completion(view) and body["prompt"].endswith(prompts.PRIMER)
    assert body["stop"] == ["\n"] and body["max_tokens"] == COMPLETION_MAX_TOKENS
    assert body["temperature"] == 0.7 and body["seed"] == 9
    # and the reply was read after the primer, as one line
    assert decision.action == SellerAction(action=SellerAct.OFFER, price=Decimal("7.95"),
                                           message="I can do $7.95 each.")
    assert decision.raw == '{"action": "offer", "price": 7.95, "message": "I can do $7.95 each."}'
    assert decision.llm_calls == 1 and not decision.repaired


def test_a_completion_repair_asks_again_at_temperature_zero(llm: Any, completion_profile: str) -> None:
    # given a base model whose first line is prose
    bodies: list[dict] = []

    def base_model(request: Request) -> str:
        bodies.append(request.body)
        return continuation({"action": "message", "to": ["all"], "price": 5.9, "message": "Can you do $5.90?"})

    llm.policy = base_model
    llm.add_faults("invalid_content")
    view = the_buyers_view()
    # when the buyer decides through the completion profile
    decision = decide_buyer(view, spec=spec(profile=completion_profile, prompt_format="completion"), seed=20)
    # then the same primed prompt was sent again, deterministically, and its answer used
    assert [b["prompt"] for b in bodies] == [prompts.buyer_completion(view)] * 2
    assert [b["temperature"] for b in bodies] == [0.7, 0.0]
    assert [b["seed"] for b in bodies] == [20, 21]
    assert decision.repaired and decision.llm_calls == 2
    assert decision.action.action == BuyerAct.MESSAGE and decision.action.price == Decimal("5.90")
    assert decision.raw.startswith(prompts.PRIMER + INVALID_CONTENT)


def test_a_run_plays_the_prompt_format_it_recorded_even_if_the_profile_changed(
        llm: Any, completion_profile: str) -> None:
    # given a run recorded with the chat format, whose profile has since switched to completion
    view = the_buyers_view()
    # when the buyer decides
    decide_buyer(view, spec=spec(profile=completion_profile, prompt_format="chat"), seed=3)
    # then the call went to the chat endpoint, as recorded
    assert [r["path"] for r in llm.requests] == ["/v1/chat/completions"]


# --- a broken rule is re-asked once ----------------------------------------------------------------

def _scripted(llm: Any, *answers: dict | str) -> list[Request]:
    """A chat model that gives these answers in turn (a dict as JSON, a str as is); returns the requests."""
    seen: list[Request] = []

    def policy(request: Request) -> str:
        seen.append(request)
        answer = answers[min(len(seen), len(answers)) - 1]
        return answer if isinstance(answer, str) else json.dumps(answer)

    llm.policy = policy
    return seen


def _floor_check(action: SellerAction) -> str | None:
    from negotiation.engine.guardrails import seller_rule_broken
    return seller_rule_broken(action, me=QUICK, previous_offer=money("9.00"), buyer_counter=money("6.00"))


def test_an_offer_under_the_floor_is_re_asked_once_in_the_sellers_own_terms(llm: Any) -> None:
    # given a seller model that first undercuts its $6.00 floor, then offers $7.00
    seen = _scripted(llm, {"action": "offer", "price": 5.0, "message": "$5.00?"},
                     {"action": "offer", "price": 7.0, "message": "$7.00 then."})
    view = quick_view()
    # when the seller decides with the guardrails' rule check
    decision = decide_seller(view, spec=SPEC, seed=11, deadline=DEADLINE, check=_floor_check)
    # then the second answer is used, and the decision says it was re-asked (not a JSON repair)
    assert decision.action.price == money("7.00") and decision.llm_calls == 2
    assert decision.reask_reason and not decision.repaired and not decision.fallback
    # and the re-ask told the seller which rule, naming its own floor (its own view)
    rule = "your price must not be below your floor of $6.00"
    assert seen[1].messages[-1] == {"role": "user", "content": prompts.REASK.format(rule=rule)}


def test_a_second_rule_break_is_kept_for_the_guardrails_and_not_asked_again(llm: Any) -> None:
    # given a seller model that undercuts its floor every time
    _scripted(llm, {"action": "offer", "price": 5.0, "message": "$5.00?"})
    # when the seller decides
    decision = decide_seller(quick_view(), spec=SPEC, seed=11, deadline=DEADLINE, check=_floor_check)
    # then exactly two calls were made and the second answer stands for the guardrails to handle
    assert decision.llm_calls == 2 and decision.action.price == money("5.00")
    assert decision.reask_reason and not decision.fallback


def test_a_garbled_answer_to_the_re_ask_keeps_the_first_answer_not_the_baseline(llm: Any) -> None:
    # given a seller model that undercuts its floor, then answers prose
    _scripted(llm, {"action": "offer", "price": 5.0, "message": "$5.00?"}, "no idea")
    # when the seller decides
    decision = decide_seller(quick_view(), spec=SPEC, seed=11, deadline=DEADLINE, check=_floor_check)
    # then the first answer stands (the guardrails keep the rule) and no baseline took the turn
    assert decision.action.price == money("5.00") and not decision.fallback and decision.reask_reason


def test_a_buyer_counter_over_its_max_is_re_asked_in_a_completion_prompt_as_a_note(
        llm: Any, completion_profile: str) -> None:
    # given a base model that counters $9.50 (over the buyer's $8.00 max), then $7.00
    from negotiation.engine.guardrails import buyer_rule_broken
    bodies: list[dict] = []
    answers = [{"action": "message", "to": ["all"], "price": 9.5, "message": "Say $9.50?"},
               {"action": "message", "to": ["all"], "price": 7.0, "message": "Say $7.00?"}]

    def base_model(request: Request) -> str:
        bodies.append(request.body)
        return continuation(answers[len(bodies) - 1])

    llm.policy = base_model
    view = the_buyers_view()

    def check(action: BuyerAction) -> str | None:
        return buyer_rule_broken(action, me=BUYER_ME, standing_offers=view.standing_offers, active=view.handles)

    # when the buyer decides
    decision = decide_buyer(view, spec=spec(profile=completion_profile, prompt_format="completion"), seed=4,
                            check=check)
    # then the second prompt carried the rule as a note just before the buyer's turn, and its answer was used
    assert "(Note: your counter-offer must not be above your maximum price of $8.00.)\nBuyer: " in bodies[1]["prompt"]
    assert decision.action.price == money("7.00") and decision.reask_reason

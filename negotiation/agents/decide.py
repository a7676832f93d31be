"""An agent's turn: view -> prompt -> LLM -> validated action, or the baseline when that fails.

The LLM decides; this module only turns its text into an action. An invalid output gets one
repair try (chat models are told what was wrong; base models are asked again at temperature 0).
If that fails too, the role's baseline strategy acts and the turn is marked as a fallback, which
is counted and shown. A valid output that breaks a price rule (the caller's `check`, from the
guardrails) gets the same one repair try, told which rule in the agent's own terms (a re-ask);
what the second answer still breaks is left to the guardrails' fallback. One repair call at most
per turn either way, so a turn costs at most two LLM calls. Transient provider errors are not
handled here: they propagate so that the Celery task retries the whole turn later.
"""

from __future__ import annotations

from collections.abc import Callable
from dataclasses import dataclass
from typing import Any, TypeVar

from negotiation.agents import prompts
from negotiation.agents.baseline import baseline_buyer, baseline_seller, tactic
from negotiation.agents.canaries import CANARIES, canary_buyer
from negotiation.agents.gateway import LLMReply, complete, get_profile
from negotiation.agents.outputs import OutputError, parse_buyer, parse_seller
from negotiation.engine.types import BuyerAction, BuyerView, SellerAction, SellerView

A = TypeVar("A", BuyerAction, SellerAction)

CHAT_MAX_TOKENS = 350
COMPLETION_MAX_TOKENS = 120


@dataclass(frozen=True)
class Decision:
    action: Any  # BuyerAction | SellerAction
    raw: str = ""
    model: str = ""
    llm_calls: int = 0
    prompt_tokens: int = 0
    completion_tokens: int = 0
    latency_ms: int = 0
    repaired: bool = False
    fallback: bool = False
    fallback_reason: str = ""
    reask_reason: str = ""  # the rule the first answer broke, when it was re-asked for that


# A rule check: the rule an action breaks, in the agent's own terms, or None (see guardrails).
Check = Callable[[Any], "str | None"]


def decide_seller(view: SellerView, *, spec: dict, seed: int, deadline: int, meta: dict | None = None,
                  check: Check | None = None, run_seed: int | None = None, slot: int = 1) -> Decision:
    """A seller's turn; `seed` is the turn's, `run_seed` and `slot` pick a baseline's Tactic for the run."""
    def baseline(name: str) -> SellerAction:
        return baseline_seller(view, strategy=tactic(name, seed=run_seed, slot=slot), deadline=deadline)
    if spec["strategy"] != "llm":
        return Decision(action=baseline(spec["strategy"]))
    opts = prompts.options_for(spec, role="seller", handle=view.me.handle)  # its variant and its own notes
    return _llm_turn(spec=spec, seed=seed, parse=parse_seller, fallback=lambda: baseline(spec["fallback"]),
                     chat=lambda: prompts.seller_chat(view, opts),
                     completion=lambda: prompts.seller_completion(view, opts), meta=meta, check=check)


def decide_buyer(view: BuyerView, *, spec: dict, seed: int, meta: dict | None = None,
                 check: Check | None = None, run_seed: int | None = None) -> Decision:
    """The buyer's turn; `seed` is the turn's, `run_seed` picks a baseline's Tactic for the run."""
    def baseline(name: str) -> BuyerAction:
        return baseline_buyer(view, strategy=tactic(name, seed=run_seed, slot=0))
    if spec["strategy"] in CANARIES:
        return Decision(action=canary_buyer(view, name=spec["strategy"], seed=seed))
    if spec["strategy"] != "llm":
        return Decision(action=baseline(spec["strategy"]))
    opts = prompts.options_for(spec, role="buyer")
    return _llm_turn(spec=spec, seed=seed, parse=parse_buyer, fallback=lambda: baseline(spec["fallback"]),
                     chat=lambda: prompts.buyer_chat(view, opts),
                     completion=lambda: prompts.buyer_completion(view, opts), meta=meta, check=check)


def _llm_turn(*, spec: dict, seed: int, parse: Callable[[str], A], fallback: Callable[[], A],
              chat: Callable[[], list[dict[str, str]]], completion: Callable[[], str],
              meta: dict | None = None, check: Check | None = None) -> Decision:
    profile = get_profile(spec["profile"])
    # The run records its prompt format; play exactly that, even if the profile's setting changed since.
    prompt_format = spec.get("prompt_format") or profile.prompt_format
    model, temperature = spec["model"], float(spec["temperature"])
    replies: list[LLMReply] = []
    raws: list[str] = []
    error = ""  # what the repair call is told: why the first answer was unusable, or the rule it broke
    rule = ""
    for attempt in range(2):
        if prompt_format == "chat":
            messages = chat()
            if attempt:
                ask = prompts.REASK.format(rule=rule) if rule else prompts.REPAIR.format(error=error)
                messages += [{"role": "assistant", "content": raws[-1]}, {"role": "user", "content": ask}]
            reply = complete(profile=profile, model=model, chat=messages, temperature=temperature,
                             max_tokens=CHAT_MAX_TOKENS, seed=seed + attempt, meta=meta)
            raw = reply.text
        else:
            # Base models: the prompt ends inside the JSON; ask again deterministically on a repair,
            # with the broken rule as a note in the transcript when that was the reason.
            prompt = completion()
            if attempt and rule:
                prompt = prompts.with_rule_note(prompt, rule)
            reply = complete(profile=profile, model=model, prompt=prompt,
                             temperature=0.0 if attempt else temperature, max_tokens=COMPLETION_MAX_TOKENS,
                             stop=["\n"], seed=seed + attempt, meta=meta)
            raw = prompts.PRIMER + reply.text
        replies.append(reply)
        raws.append(raw)
        try:
            action = parse(raw)
        except OutputError as exc:
            if rule:
                # The re-ask's answer was not even valid JSON: the first (rule-breaking) answer
                # stands and the guardrails keep the rule, rather than the baseline taking the turn.
                return _decision(parse(raws[0]), replies, raws, reask_reason=rule)
            error = str(exc)
            continue
        broken = check(action) if check is not None and attempt == 0 else None
        if broken:
            # The second answer is kept whatever it breaks: the guardrails' fallback handles it.
            rule = broken
            continue
        return _decision(action, replies, raws, repaired=attempt > 0 and not rule, reask_reason=rule)
    return _decision(fallback(), replies, raws, fallback_reason=f"unusable output after one repair: {error}")


def _decision(action: Any, replies: list[LLMReply], raws: list[str], *, repaired: bool = False,
              fallback_reason: str = "", reask_reason: str = "") -> Decision:
    return Decision(
        action=action, raw="\n---\n".join(raws)[:8000], model=replies[-1].model, llm_calls=len(replies),
        prompt_tokens=sum(r.prompt_tokens for r in replies),
        completion_tokens=sum(r.completion_tokens for r in replies),
        latency_ms=sum(r.latency_ms for r in replies), repaired=repaired,
        fallback=bool(fallback_reason), fallback_reason=fallback_reason, reask_reason=reask_reason)

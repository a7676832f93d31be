"""Scripted negotiators for the fake LLM: they read MAMS's prompts and answer like a sane model.

They see exactly what a real model would see (the prompt), so they only know what the visibility
filter let through. The seller concedes from its ask toward its floor and accepts a counter in the
upper half of its range; the buyer opens low, counters upward and accepts a good offer, taking the
best standing offer on the closing turn. Both speak prices in their text, consistently.
"""

from __future__ import annotations

import json
import re
from decimal import Decimal

from tests.fakes.openai_server import Request

MONEY = r"\$(\d+(?:\.\d+)?)"
COACH_FEWSHOT_HEADER = "strategy notes a negotiation coach wrote"  # the base-model coach's prompt


def _find(pattern: str, text: str) -> Decimal | None:
    m = re.search(pattern, text)
    return Decimal(m.group(1)) if m else None


def _q(value: Decimal) -> float:
    return float(value.quantize(Decimal("0.01")))


def negotiation(req: Request) -> str:
    system = next((m.get("content", "") for m in (req.messages or []) if m.get("role") == "system"), "")
    if "You are a negotiation analyst" in system:
        return analyst(req)
    if "You are a negotiation coach" in system or COACH_FEWSHOT_HEADER in (req.prompt or ""):
        return coach(req)
    if "Your absolute bottom line" in system:
        return _seller(req, system)
    if "strategic buyer" in system:
        return _buyer(req, system)
    return json.dumps({"action": "walk_away", "price": None, "message": "?"})


def _seller(req: Request, system: str) -> str:
    ask = _find(r"Your asking price: " + MONEY, system)
    floor = _find(r"Your absolute bottom line: " + MONEY, system)
    assert ask is not None and floor is not None
    messages = req.messages or []
    turns = sum(1 for m in messages if m.get("role") == "assistant")
    last = messages[-1].get("content", "") if messages else ""
    counter = _find(r"counter-offer: " + MONEY, last)
    if counter is not None and counter >= floor + (ask - floor) / 2:
        return json.dumps({"action": "accept", "price": _q(counter), "message": f"Deal at ${_q(counter):.2f}.",
                           "reasoning": "good enough"})
    price = max(floor, ask - (ask - floor) * Decimal("0.35") * turns)
    return json.dumps({"action": "offer", "price": _q(price), "message": f"I can do ${_q(price):.2f} each.",
                       "reasoning": "conceding slowly"})


def _buyer(req: Request, system: str) -> str:
    low = _find(r"Minimum acceptable price: " + MONEY, system)
    high = _find(r"Maximum acceptable price: " + MONEY, system)
    assert low is not None and high is not None
    last = (req.messages or [{}])[-1].get("content", "")
    offers = {h: Decimal(p) for h, p in re.findall(r"(@\w+) \$(\d+(?:\.\d+)?)", last.split("Standing offers:")[-1])}
    best = min(offers.items(), key=lambda kv: (kv[1], kv[0])) if offers else None
    if "The last round is over" in last:
        if best and best[1] <= high:
            return json.dumps({"action": "accept", "seller": best[0], "price": _q(best[1]),
                               "message": f"I'll take it at ${_q(best[1]):.2f}."})
        return json.dumps({"action": "walk_away", "price": None, "message": "No deal, thanks."})
    round_no = int(_find(r"Round (\d+) of", last) or 1)
    if best and round_no >= 2 and best[1] <= low + (high - low) * Decimal("0.6"):
        return json.dumps({"action": "accept", "seller": best[0], "price": _q(best[1]),
                           "message": f"Deal at ${_q(best[1]):.2f}."})
    counter = low + (high - low) * Decimal("0.15") * round_no
    return json.dumps({"action": "message", "to": ["all"], "price": _q(counter),
                       "message": f"Can you do ${_q(counter):.2f} each?", "reasoning": "anchoring low"})


def analyst(req: Request) -> str:
    """The post-deal analyst: scores the buyer from the measured numbers in the prompt."""
    last = (req.messages or [{}])[-1].get("content", "")
    share = re.search(r"buyer surplus share ([0-9.]+)", last)
    quality = round(float(share.group(1)), 3) if share else (0.0 if "mutual loss True" in last else 0.8)
    level = "high" if quality >= 0.6 else "medium" if quality >= 0.3 else "low"
    return json.dumps({"deal_quality": quality, "strategy_effectiveness": level, "coherence": 0.9,
                       "hallucination": 0.05, "recommendations": ["Anchor lower in round 1.", "Name the best rival."],
                       "reasons": f"The buyer kept {quality:.0%} of the ZOPA; its messages matched its actions."})


def coach(req: Request) -> str:
    """The reflect coach: one note naming whom it coaches and the utility it read, so a test can find
    the note in that agent's next prompt (and nowhere else). A base model's prompt (two worked
    examples, then the case) is read from its end, and answered with the rest of its '{"note": "'."""
    case = req.prompt if req.prompt is not None else (req.messages or [{}])[-1].get("content", "")
    who = re.findall(r"You coach the (BUYER|SELLER (@\w+))", case)
    utility = re.findall(r"utility in this negotiation: ([0-9.]+)", case)
    name = (who[-1][1] or "buyer") if who else "agent"
    value = utility[-1] if utility else "?"
    advice = "open lower and concede in smaller steps" if name == "buyer" else "hold your price one round longer"
    answer = json.dumps({"note": f"Coach for {name} after utility {value}: {advice}."})
    return answer.removeprefix('{"note": "') if req.prompt is not None else answer

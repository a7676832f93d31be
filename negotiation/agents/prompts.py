"""Prompts built only from an engine view, so a prompt can never hold what its view does not.

Two formats. `chat` follows the spec's system prompts (section 5) for instruction models. The
`completion` format is for the local Gemma 3 270M, a base model with no chat template: chat-style
prompts make it echo, but two short example transcripts followed by the transcript so far make it
write a plausible JSON line (DESIGN, "Facts measured"). Both end where the model's JSON begins.
PROMPT_VERSION hashes every template, so each run records exactly which prompts produced it.

A run's prompts may differ from these in two recorded ways: a named *variant* (`VARIANTS`: a few
lines of extra instruction per role, for paired experiments) and a reflect sequence's coach
*notes*, appended for the agent they were written for. `prompt_version()` hashes both on top of
PROMPT_VERSION, so a changed prompt always has a changed version (and agent fingerprint).
"""

from __future__ import annotations

import hashlib
import json
from collections.abc import Mapping, Sequence
from dataclasses import dataclass
from decimal import Decimal
from typing import Any

from negotiation.engine.protocol import earliest_end
from negotiation.engine.types import BUYER, BuyerView, Msg, SellerView

SELLER_SYSTEM = """You are {handle}, a seller with a {style} personality.

Your product: {item}
Your cost: ${cost} (NEVER reveal this)
Your asking price: ${selling}
Your absolute bottom line: ${least} (never go below)

Your priorities:
- Customer retention: {retention}%
- Profit maximization: {profit}%

Your style: {style}

Negotiate strategically. Stay in character.
Never reveal your cost or your bottom line, not even approximately.
The buyer wants {quantity} x {item}. Prices are per unit.

Answer every buyer message with ONE JSON object and nothing else:
{{"action": "offer" | "accept" | "decline", "price": <per-unit price or null>, "message": "<what you say to the buyer>", "reasoning": "<one private sentence>"}}
"offer" proposes a price; "accept" takes the buyer's latest counter-offer at its price; "decline" leaves."""

BUYER_SYSTEM = """You are a strategic buyer negotiating for {item}.

Your constraints:
- Quantity needed: {quantity}
- Minimum acceptable price: ${min_price}
- Maximum acceptable price: ${max_price}

You are negotiating with multiple sellers simultaneously: {handles}.
You cannot see their costs or strategies - only what they tell you.
Sellers never see each other's messages.

Goal: Get the best deal within your price range.
Consider: price, quality claims, seller behavior, negotiation flexibility.
Make decisions based on reasoning, not formulas. Never tell a seller your maximum price.

Answer with ONE JSON object and nothing else:
{{"action": "message" | "accept" | "walk_away", "to": ["all"] or ["@Handle", ...], "seller": "<@Handle, for accept>", "price": <your per-unit counter-offer for a message, the seller's offered price for accept, or null>, "message": "<what you say>", "reasoning": "<one private sentence>"}}
You can only accept a price a seller has offered you."""

SELLER_FEWSHOT = """Below are marketplace negotiation transcripts. The seller answers each buyer line with one JSON line. The seller never sells below its floor and never tells the buyer its floor or cost.

Item: USB-C Cable, 3 units. Seller @CableHouse: asks $8.50, floor $7.00, style sweet.
Buyer: I need 3 USB-C cables. What can you offer?
@CableHouse: {{"action": "offer", "price": 8.50, "message": "Happy to help! $8.50 each, premium cables with a 2-year warranty."}}
Buyer: Can you do $6.00 each?
@CableHouse: {{"action": "offer", "price": 7.60, "message": "For you I can do $7.60 each, a great price."}}

Item: Desk Lamp, 1 units. Seller @LampCo: asks $40.00, floor $31.00, style rude.
Buyer: What is your price for a desk lamp?
@LampCo: {{"action": "offer", "price": 40.00, "message": "$40. Take it or leave it."}}
Buyer: I can pay $35.00.
@LampCo: {{"action": "accept", "price": 35.00, "message": "Fine, $35. Done."}}

Item: {item}, {quantity} units. Seller {handle}: asks ${selling}, floor ${least}, style {style}.
"""

BUYER_FEWSHOT = """Below are marketplace negotiation transcripts. The buyer answers with one JSON line: "message" to make a counter-offer, "accept" to take a price a seller offered, or "walk_away". The buyer never pays above its budget and never tells sellers its budget.

Item: USB-C Cable, 3 units. Buyer budget: $5.00 to $9.00 per unit. Sellers: @CableHouse, @QuickTech.
Buyer: {{"action": "message", "to": ["all"], "price": 5.50, "message": "I need 3 USB-C cables. Can you do $5.50 each?"}}
@CableHouse: offer $8.50 "Premium cables, $8.50 each."
@QuickTech: offer $7.00 "Standard cables, $7.00 each."
Buyer: {{"action": "message", "to": ["@QuickTech"], "price": 6.50, "message": "@QuickTech, can you do $6.50?"}}
@QuickTech: offer $6.75 "I can do $6.75."
Buyer: {{"action": "accept", "seller": "@QuickTech", "price": 6.75, "message": "Deal at $6.75 each."}}

Item: {item}, {quantity} units. Buyer budget: ${min_price} to ${max_price} per unit. Sellers: {handles}.
"""

PRIMER = '{"action": "'
REPAIR = ("Your last answer was not usable ({error}). Answer again with only one JSON object in the "
          "format described, with no other text.")
# A lawful-looking answer that breaks a price rule; `rule` is phrased in the agent's own view's
# terms (guardrails.seller_rule_broken / buyer_rule_broken), so it tells the agent nothing new.
REASK = ("Your last answer broke a rule: {rule}. Answer again with only one JSON object in the "
         "format described, with no other text.")

PROMPT_VERSION = hashlib.sha256(
    "\x00".join([SELLER_SYSTEM, BUYER_SYSTEM, SELLER_FEWSHOT, BUYER_FEWSHOT, PRIMER, REPAIR, REASK]).encode()
).hexdigest()[:12]




@dataclass(frozen=True)
class Variant:
    """A named prompt variant: extra instructions appended for each role (empty for the default)."""

    name: str
    description: str
    buyer: str = ""
    seller: str = ""


VARIANTS: dict[str, Variant] = {v.name: v for v in (
    Variant("default", "The spec's prompts, unchanged."),
    Variant("terse", "Every message is one short sentence.",
            buyer="Keep every message to one short sentence with your price in it.",
            seller="Keep every message to one short sentence with your price in it."),
    Variant("anchoring", "The buyer anchors low and concedes in small steps; sellers hold near the ask.",
            buyer="Open close to your minimum acceptable price, raise your counter-offer only in small steps, "
                  "and remind each seller that others are competing for the order.",
            seller="Open at your asking price and concede in small steps; never halve the gap at once."),
)}
NOTES_KEPT = 5  # a reflecting agent keeps its most recent notes only, so a prompt stays short
NOTE_MAX_CHARS = 300


def prompt_version(*, variant: str = "default", role: str = "", notes: Sequence[str] | Mapping[str, Any] = ()
                   ) -> str:
    """12 hex characters naming the exact prompts a role plays with.

    The default variant without notes is PROMPT_VERSION (shared by every role). A variant hashes its
    extra lines onto it; notes (a list for the buyer, {handle: [notes]} for the sellers) hash the
    role and the notes on top of that.
    """
    v = VARIANTS[variant]
    base = PROMPT_VERSION
    if v.buyer or v.seller:
        base = hashlib.sha256("\x00".join([PROMPT_VERSION, v.name, v.buyer, v.seller]).encode()).hexdigest()[:12]
    if not notes:
        return base
    payload = json.dumps(notes, sort_keys=True, ensure_ascii=False)
    return hashlib.sha256("\x00".join([base, role, payload]).encode()).hexdigest()[:12]


def variant_templates(variant: str) -> dict[str, str]:
    """The template texts of a variant, as stored with a prompt version so a run can be reproduced."""
    v = VARIANTS[variant]
    return {"SELLER_SYSTEM": SELLER_SYSTEM, "BUYER_SYSTEM": BUYER_SYSTEM, "SELLER_FEWSHOT": SELLER_FEWSHOT,
            "BUYER_FEWSHOT": BUYER_FEWSHOT, "PRIMER": PRIMER, "REPAIR": REPAIR, "REASK": REASK, "buyer_extra": v.buyer,
            "seller_extra": v.seller}


@dataclass(frozen=True)
class PromptOptions:
    """What a run's agent spec adds to one agent's prompt: the variant's lines and its own notes."""

    extra: str = ""
    notes: tuple[str, ...] = ()


def options_for(spec: Mapping[str, Any], *, role: str, handle: str = "") -> PromptOptions:
    """The options of one agent: a seller gets only the notes written for its own handle."""
    extra = getattr(VARIANTS.get(spec.get("prompt_variant") or "default", VARIANTS["default"]), role)
    notes = spec.get("notes") or ()
    if role == "seller":
        notes = notes.get(handle, ()) if isinstance(notes, Mapping) else ()
    return PromptOptions(extra=extra, notes=tuple(str(n) for n in notes if isinstance(n, str))[-NOTES_KEPT:])


def _chat_addendum(opts: PromptOptions) -> str:
    out = f"\n\n{opts.extra}" if opts.extra else ""
    if opts.notes:
        out += "\n\nYour coach's strategy notes from your earlier negotiations (apply them):\n" + "\n".join(
            f"- {n}" for n in opts.notes)
    return out


def _completion_addendum(opts: PromptOptions, who: str) -> str:
    lines = [f"{who}'s approach: {opts.extra}"] if opts.extra else []
    lines += [f"{who}'s note: {n}" for n in opts.notes]
    return "".join(f"{line}\n" for line in lines)


def _d(value: Decimal | None) -> str:
    return "null" if value is None else f"{value:.2f}"


def _pct(weight: Decimal) -> str:
    return f"{weight * 100:.0f}"


def _as_json(msg: Msg, *, buyer: bool) -> str:
    data: dict[str, object] = {"action": msg.action}
    if buyer:
        data["to"] = list(msg.recipients)
    data["price"] = float(msg.price) if msg.price is not None else None
    data["message"] = msg.text
    return json.dumps(data)


def _reply_line(msg: Msg) -> str:
    if msg.action == "decline":
        return f'{msg.sender}: declined "{msg.text}"'
    verb = "accepts your counter at" if msg.action == "accept" else "offer"
    return f'{msg.sender}: {verb} ${_d(msg.price)} "{msg.text}"'


def rules_note(*, rules: str, max_rounds: int, role: str) -> str:
    """What an agent is told of a `hidden`-rules run (engine/protocol.py::Rules): the range the run
    may end in and that a counter is binding, never the drawn round. Empty under `known` rules."""
    if rules != "hidden" or max_rounds < 1:
        return ""

    low = earliest_end(max_rounds)
    when = (f"after round {max_rounds}" if low == max_rounds else
            f"without warning after the sellers' replies in some round from {low} to {max_rounds}")
    if role == "buyer":
        return (f"Rules: the negotiation ends {when}; there is no turn after that, so an offer you have not "
                "accepted by then is lost. Your counter-offer is binding: if a seller accepts it, the deal is "
                "closed at that price.")
    return (f"Rules: the negotiation ends {when}. If you accept the buyer's counter-offer, the deal is closed "
            "at that price.")


# --- chat format -------------------------------------------------------------------------------

def seller_chat(view: SellerView, opts: PromptOptions = PromptOptions()) -> list[dict[str, str]]:
    me = view.me
    system = SELLER_SYSTEM.format(
        handle=me.handle, style=me.style, item=view.item_name, cost=_d(me.cost_price),
        selling=_d(me.selling_price), least=_d(me.least_price), retention=_pct(me.retention_weight),
        profit=_pct(me.profit_weight), quantity=view.quantity) + _chat_addendum(opts)
    if note := rules_note(rules=view.rules, max_rounds=view.max_rounds, role="seller"):
        system += f"\n\n{note}"
    chat = [{"role": "system", "content": system}]
    for msg in view.thread:
        if msg.sender == BUYER:
            counter = f"\n(The buyer's counter-offer: ${_d(msg.price)} per unit.)" if msg.price is not None else ""
            chat.append({"role": "user", "content": f"[Round {msg.round_no}] Buyer: {msg.text}{counter}"})
        else:
            chat.append({"role": "assistant", "content": _as_json(msg, buyer=False)})
    return chat


def buyer_chat(view: BuyerView, opts: PromptOptions = PromptOptions()) -> list[dict[str, str]]:
    me = view.me
    system = BUYER_SYSTEM.format(item=me.item_name, quantity=me.quantity, min_price=_d(me.min_price),
                                 max_price=_d(me.max_price), handles=", ".join(view.handles)) + _chat_addendum(opts)
    if note := rules_note(rules=view.rules, max_rounds=view.max_rounds, role="buyer"):
        system += f"\n\n{note}"
    chat = [{"role": "system", "content": system}]
    replies: list[str] = []
    for msg in view.thread:
        if msg.sender == BUYER:
            if replies:
                chat.append({"role": "user", "content": "\n".join(replies)})
                replies = []
            chat.append({"role": "assistant", "content": _as_json(msg, buyer=True)})
        else:
            replies.append(f"[Round {msg.round_no}] " + _reply_line(msg))
    replies.append(_buyer_status(view))
    chat.append({"role": "user", "content": "\n".join(replies)})
    return chat


def _buyer_status(view: BuyerView) -> str:
    offers = ", ".join(f"{h} ${_d(p)}" for h, p in sorted(view.standing_offers.items())) or "none yet"
    if view.round_no > view.max_rounds:
        return (f"The last round is over. Standing offers: {offers}. Accept one standing offer or walk_away.")
    opening = " Open the negotiation." if view.round_no == 1 else ""
    if view.rules == "hidden":

        low = earliest_end(view.max_rounds)
        when = (f"the run goes on at least to round {low}" if view.round_no < low else
                "this may be the last round" if view.round_no < view.max_rounds else "this is the last round")
        return (f"Round {view.round_no} ({when}). "
                f"Sellers in the room: {', '.join(view.handles)}. Standing offers: {offers}.{opening} Your move.")
    return (f"Round {view.round_no} of {view.max_rounds}. Sellers in the room: {', '.join(view.handles)}. "
            f"Standing offers: {offers}.{opening} Your move.")


# --- completion format (base models) ----------------------------------------------------------

def seller_completion(view: SellerView, opts: PromptOptions = PromptOptions()) -> str:
    me = view.me
    lines = [SELLER_FEWSHOT.format(item=view.item_name, quantity=view.quantity, handle=me.handle,
                                   selling=_d(me.selling_price), least=_d(me.least_price), style=me.style),
             _completion_addendum(opts, me.handle),
             _completion_rules(view.rules, view.max_rounds, "seller")]
    for msg in view.thread:
        if msg.sender == BUYER:
            counter = f" (counter-offer ${_d(msg.price)})" if msg.price is not None else ""
            lines.append(f"Buyer: {msg.text}{counter}\n")
        else:
            lines.append(f"{me.handle}: {_as_json(msg, buyer=False)}\n")
    return "".join(lines) + f"{me.handle}: {PRIMER}"


def buyer_completion(view: BuyerView, opts: PromptOptions = PromptOptions()) -> str:
    me = view.me
    lines = [BUYER_FEWSHOT.format(item=me.item_name, quantity=me.quantity, min_price=_d(me.min_price),
                                  max_price=_d(me.max_price), handles=", ".join(view.handles)),
             _completion_addendum(opts, "Buyer"), _completion_rules(view.rules, view.max_rounds, "buyer")]
    for msg in view.thread:
        lines.append(f"Buyer: {_as_json(msg, buyer=True)}\n" if msg.sender == BUYER else _reply_line(msg) + "\n")
    return "".join(lines) + f"Buyer: {PRIMER}"


def _completion_rules(rules: str, max_rounds: int, role: str) -> str:
    note = rules_note(rules=rules, max_rounds=max_rounds, role=role)
    return f"{note}\n" if note else ""


def with_rule_note(prompt: str, rule: str) -> str:
    """A completion prompt re-asked after a broken rule: a note line just before the agent's turn.

    A base model cannot be told in a chat turn, so the note goes into the transcript it continues.
    """
    head, sep, last = prompt.rpartition("\n")
    note = f"(Note: {rule}.)"
    return f"{head}{sep}{note}\n{last}" if sep else f"{note}\n{prompt}"

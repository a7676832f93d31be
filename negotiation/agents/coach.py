"""The reflect coach: its prompts in both formats, and one call with one repair.

A coach (the sequence's analyst profile, through the gateway, under the global rate limiter) reads
one agent's side of a run (a `CoachCase`, cut from that agent's own view by services/reflect.py)
and writes ONE short strategy note. It speaks both prompt formats, built from one `CoachCase` so the
two cannot differ in what they reveal: a chat model gets instructions, and a base model such as the
local Gemma 3 270M gets two worked examples and then the case, ending where the note's JSON begins
(DESIGN, "Facts measured": instructions make it echo, examples make it write a plausible JSON line).
"""

from __future__ import annotations

from dataclasses import dataclass
from typing import Any

from pydantic import BaseModel, ConfigDict, Field, field_validator
from pydantic import ValidationError as PydanticError

from negotiation.agents.gateway import LLMError, LLMReply, complete, get_profile
from negotiation.agents.outputs import OutputError, extract_json
from negotiation.agents.prompts import NOTE_MAX_CHARS
from negotiation.engine.types import Msg

COACH_MAX_TOKENS = 200
COACH_COMPLETION_MAX_TOKENS = 90  # a 300-character note is about 75 tokens
# A base model's context is small (the local server's is 2,048 tokens) and it copies what it reads
# last, so its case holds only the end of the transcript, each line cut short.
COMPLETION_LINES, COMPLETION_REPAIR_LINES, COMPLETION_LINE_CHARS = 8, 4, 160

COACH_SYSTEM = (
    "You are a negotiation coach. You privately advise ONE agent of a marketplace negotiation, and you "
    "see only what that agent saw. Read its last negotiation and its utility, and write ONE short "
    "strategy note (one or two sentences, at most 40 words) that would raise its utility in its next "
    "negotiation with the same counterparts. Be concrete: prices, timing, wording. Answer with ONE JSON "
    'object and nothing else: {"note": "<the note>"}'
)
REPAIR = 'That answer was not usable ({error}). Reply with only {{"note": "<one short strategy note>"}}.'
COACH_FEWSHOT_HEAD = """Below are strategy notes a negotiation coach wrote after marketplace negotiations. The coach saw only what one agent saw, read its outcome and its utility (0 worst, 1 best), and wrote one short, concrete note to raise that utility next time.

"""  # noqa: E501 (the examples' lines are the model's input, not code)
COACH_EXAMPLES = {"buyer": """You coach the BUYER.
Its private constraints: 3 x Desk Lamp, acceptable price $20.00 to $30.00 per unit. Sellers: @LampCo, @BrightShop.
R1 buyer -> all: [message $28.00] Can you do $28 each?
R1 @LampCo -> buyer: [offer $27.00] $27 each.
R1 @BrightShop -> buyer: [offer $25.00] I can do $25.
R2 buyer -> @BrightShop: [accept $25.00] Deal at $25.
Outcome: It bought from @BrightShop at $25.00 per unit after 2 rounds.
Its utility in this negotiation: 0.500
{"note": "Open near $21, not $28, and tell each seller the other's lower offer before accepting."}

""", "seller": """You coach the SELLER @GearBarn.
Its private configuration: 2 x Backpack wanted; it asks $60.00, its floor is $45.00, its cost $35.00; style rude; priorities: customer retention 30%, profit 70%.
R1 buyer -> all: [message $40.00] Would you take $40?
R1 @GearBarn -> buyer: [decline] No. Too low.
Outcome: The buyer did not buy from it.
Its utility in this negotiation: 0.000
{"note": "Never decline a first counter: offer $55 and concede in small steps toward $45."}

"""}  # noqa: E501
NOTE_PRIMER = '{"note": "'


class CoachNote(BaseModel):
    """The coach's answer: one note of a sensible length, whitespace collapsed."""

    model_config = ConfigDict(extra="ignore")

    note: str = Field(min_length=8, max_length=NOTE_MAX_CHARS)

    @field_validator("note", mode="before")
    @classmethod
    def _squash(cls, v: Any) -> Any:
        return " ".join(v.split()) if isinstance(v, str) else v


def parse_note(text: str) -> str:
    """The note in a coach's text, or OutputError saying what was wrong."""
    try:
        return CoachNote.model_validate(extract_json(text)).note
    except PydanticError as exc:
        err = exc.errors()[0]
        raise OutputError(f"{'.'.join(str(p) for p in err['loc']) or 'note'}: {err['msg']}") from exc


@dataclass(frozen=True)
class CoachCase:
    """What one agent's coach may read: built from that agent's own view only, rendered in either format."""

    role: str  # "buyer" or "seller"
    title: str  # whom the coach coaches
    private: str  # the agent's own constraints or configuration
    utility_rule: str
    notes: tuple[str, ...]
    transcript: str  # the heading of the transcript
    thread: tuple[Msg, ...]
    result: str
    utility: float


def _line(m: Msg, width: int = 400) -> str:
    price = f" ${m.price:.2f}" if m.price is not None else ""
    to = ", ".join(m.recipients) or "-"
    return f"R{m.round_no} {m.sender} -> {to}: [{m.action}{price}] {m.text[:width]}"


def _notes_block(notes: tuple[str, ...]) -> str:
    return "Notes it already follows:\n" + "\n".join(f"- {n}" for n in notes) if notes else "No notes yet."


def coach_chat(case: CoachCase) -> list[dict[str, str]]:
    """The case for a chat model: the instructions, then everything the agent saw."""
    lines = [case.title, case.private, case.utility_rule, _notes_block(case.notes), case.transcript,
             *(_line(m) for m in case.thread), f"Outcome: {case.result}",
             f"Its utility in this negotiation: {case.utility:.3f}"]
    return [{"role": "system", "content": COACH_SYSTEM}, {"role": "user", "content": "\n".join(lines)}]


def coach_fewshot(role: str) -> str:
    """The two worked examples, the one for `role` last: the base model follows the example nearest
    the case (measured on Gemma 3 270M: with the seller's example last, the buyer got a seller's note)."""
    other = "seller" if role == "buyer" else "buyer"
    return COACH_FEWSHOT_HEAD + COACH_EXAMPLES[other] + COACH_EXAMPLES[role]


def coach_completion(case: CoachCase, *, last: int = COMPLETION_LINES) -> str:
    """The case for a base model, in the examples' shape: the end of the transcript, then the primer.

    The agent's earlier notes are left out: given them, Gemma 3 270M copied an old note word for
    word instead of reading the run (measured); the chat coach still reads them.
    """
    lines = [case.title, case.private, *(_line(m, COMPLETION_LINE_CHARS) for m in case.thread[-last:]),
             f"Outcome: {case.result}", f"Its utility in this negotiation: {case.utility:.3f}"]
    return coach_fewshot(case.role) + "\n".join(lines) + "\n" + NOTE_PRIMER


def parse_completion_note(text: str) -> str:
    """The note in a base model's continuation of NOTE_PRIMER. It often stops before the closing '"}'
    (the newline stop or the token limit), so the object is closed for it when that is all that is missing."""
    raw = NOTE_PRIMER + text.rstrip()
    try:
        return parse_note(raw)
    except OutputError as exc:
        for ending in ('"}', "}"):
            try:
                return parse_note(raw + ending)
            except OutputError:
                pass
        raise exc  # noqa: TRY201  (the first parse's error, not the last repair's)


def ask_coach(*, spec: dict[str, Any], case: CoachCase, seed: int) -> tuple[str | None, list[LLMReply], str]:
    """One coach call and, if its answer is unusable, one repair: (note or None, replies, why not).

    A chat model is told what was wrong. A base model cannot take instructions, so its second try
    is again deterministic but reads a shorter case (the last COMPLETION_REPAIR_LINES lines of the
    transcript): at temperature 0 the same prompt would only return the same text.
    LLMTransientError propagates, so the task retries with backoff. Temperature 0: the same run and
    notes give the same advice, as far as the provider allows.
    """
    try:
        profile = get_profile(spec["profile"])
    except LLMError as exc:
        return None, [], str(exc)
    chat = (spec.get("prompt_format") or profile.prompt_format) == "chat"
    messages = coach_chat(case)
    replies: list[LLMReply] = []
    error = ""
    for attempt in range(2):
        try:
            if chat:
                reply = complete(profile=profile, model=spec["model"], chat=messages, temperature=0.0,
                                 max_tokens=COACH_MAX_TOKENS, seed=seed + attempt)
            else:
                prompt = coach_completion(case, last=COMPLETION_REPAIR_LINES if attempt else COMPLETION_LINES)
                reply = complete(profile=profile, model=spec["model"], prompt=prompt, temperature=0.0,
                                 max_tokens=COACH_COMPLETION_MAX_TOKENS, stop=["\n"], seed=seed + attempt)
        except LLMError as exc:
            return None, replies, str(exc)
        replies.append(reply)
        try:
            return (parse_note(reply.text) if chat else parse_completion_note(reply.text)), replies, ""
        except OutputError as exc:
            error = str(exc)
            messages = [*messages, {"role": "assistant", "content": reply.text},
                        {"role": "user", "content": REPAIR.format(error=error)}]
    return None, replies, f"the coach's answer was not a usable note after one repair: {error}"


__all__ = ["COACH_EXAMPLES", "COACH_FEWSHOT_HEAD", "COACH_SYSTEM", "NOTE_PRIMER", "CoachCase", "CoachNote", "ask_coach",
           "coach_chat", "coach_completion", "coach_fewshot", "parse_completion_note", "parse_note"]

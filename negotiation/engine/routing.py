"""Turns the buyer's addressing (`to` and leading @mentions) into the sellers a message reaches.

Routing decides who sees a buyer message, so it is half of the visibility guarantee: whatever the
LLM writes, the result only ever names sellers that are still in the room, spelled exactly as the
room spells them. Only explicit addressing counts: a `to` list, or @mentions that open the text
("@QuickTech @CableHouse: can you..."). A handle mentioned mid-sentence ("Can you match
@BudgetWires?") is talk about a seller, not to it, so it must not route the message there.
Anything that cannot be honoured is dropped and reported as an event rather than raising, because
a bad address from an LLM is an expected, countable mistake, not a crash.
"""

from __future__ import annotations

import re
from collections.abc import Sequence
from functools import cache

from negotiation.engine.names import mark_class, name_key
from negotiation.engine.types import ALL, BUYER, Event, EventKind


@cache
def _patterns() -> tuple[re.Pattern[str], re.Pattern[str]]:
    """The mention pattern and the leading-mentions pattern, built once on first use.

    Handles are "@" + letters of any script (with their combining marks), digits or underscores
    (engine/names.py). A mention is the same shape; the bare word "all" is accepted too so
    "@all: ..." means a broadcast. One or more mentions at the very start of the text, separated by
    spaces, commas, "&", "/" or "and" ("@A, @B and @C: ...") address the message; whatever follows
    the last mention is the message itself.
    """
    char = rf"[\w{mark_class()}]"
    mention = rf"@{char}+"
    leading = re.compile(
        rf"^\s*(?P<block>{mention}(?:(?:\s*[,;&/]\s*|\s+and\s+|\s+){mention})*)(?!{char})", re.IGNORECASE)
    return re.compile(mention), leading


def handle_key(handle: str) -> str:
    """The comparison key of a handle: case-insensitive, with or without the leading "@".

    Handles are unique by this key within a session (a database constraint on the same key,
    engine/names.py), so it identifies one seller; LLMs write "@quicktech", "QuickTech" and
    "@QuickTech" interchangeably.
    """
    return name_key(handle.strip().lstrip("@"))


def canonical_handle(name: str | None, active: Sequence[str]) -> str | None:
    """The spelling from `active` of the seller `name` refers to, or None if it is not there."""
    if not name:
        return None
    key = handle_key(name)
    return next((handle for handle in active if handle_key(handle) == key), None)


def leading_mentions(text: str) -> tuple[str, ...]:
    """The @mentions that open `text`, in order; empty if the text does not start with one."""
    mention, leading = _patterns()
    match = leading.match(text)
    if match is None:
        return ()
    return tuple(mention.findall(match.group("block")))


def _is_all(name: str) -> bool:
    return handle_key(name) == ALL


def resolve_recipients(
    *, to: Sequence[str], text: str, active: Sequence[str]
) -> tuple[tuple[str, ...], list[Event]]:
    """The sellers a buyer message reaches, and one event per address that had to be dropped.

    Explicit handles in `to` win. With no explicit handle (`to` empty or only "all"), a text that
    opens with @mentions goes to those sellers, and any other text goes to every active seller.
    An unknown or departed handle is dropped with a BUYER_UNKNOWN_RECIPIENT event; if nothing
    valid is left the message is broadcast, so a typo never silences the buyer for a round.
    The result follows the order of `active`, which keeps the fan-out deterministic.
    """
    explicit = [name for name in to if name.strip() and not _is_all(name)]
    if explicit:
        wanted: Sequence[str] = explicit
    elif any(_is_all(name) for name in leading_mentions(text)):
        # "@all: ..." is a broadcast written as a mention.
        wanted = ()
    else:
        wanted = leading_mentions(text)

    events: list[Event] = []
    chosen: set[str] = set()
    for name in wanted:
        handle = canonical_handle(name, active)
        if handle is None:
            events.append(Event(
                kind=EventKind.BUYER_UNKNOWN_RECIPIENT,
                actor=BUYER,
                detail=f"The buyer addressed {name!r}, who is not an active seller; dropped.",
            ))
        else:
            chosen.add(handle)

    if not chosen:
        return tuple(active), events
    return tuple(handle for handle in active if handle in chosen), events

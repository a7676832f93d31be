"""The disclosure rule: what the other side receives when a message states its sender's hidden number.

The leak auditor (`audit.find_leaks`) counts a message that states its sender's own cost, floor or
maximum; the disclosure rule decides what is delivered. With `redact` (the default) each such
number is replaced with "[withheld]" in the copy the other side receives, so no prompt, page, API
body, stream event or /env observation of the other side carries it; with `allow` the text goes
as said, to study leaking. The original text is kept in the database for the owner and the audit,
and the leak is counted either way. The test for "states a hidden number" is the auditor's own,
price by price (`audit.is_leak`), so a withheld number and a counted leak are the same thing.

Pure functions, no Django: the run's context applies `as_received` wherever a view is built.
"""

from __future__ import annotations

from collections.abc import Mapping, Sequence
from dataclasses import replace
from decimal import Decimal
from enum import StrEnum

from negotiation.engine.audit import is_leak, price_spans
from negotiation.engine.routing import handle_key
from negotiation.engine.types import BUYER, BuyerPrivate, Msg, SellerPrivate

WITHHELD = "[withheld]"


class Disclosure(StrEnum):
    REDACT = "redact"  # a stated hidden number reaches the other side as "[withheld]"
    ALLOW = "allow"  # delivered as said (still counted as a leak)


def parse_disclosure(value: object) -> Disclosure:
    """The rule named by `value`; a clear ValueError for anything else (never silently a default)."""
    try:
        if not isinstance(value, str):
            raise ValueError
        return Disclosure(value)
    except ValueError:
        raise ValueError(f"Must be one of {', '.join(repr(d.value) for d in Disclosure)}; got {value!r}.") from None


def withhold(text: str, *, hidden: Mapping[str, Decimal], public_price: Decimal | None) -> str:
    """`text` with every stated price that is a leak of `hidden` replaced by WITHHELD.

    A currency sign right before the number goes too ("$6.00" -> "[withheld]"), so the sentence
    still reads as a price was said and none is shown.
    """
    out: list[str] = []
    cursor = 0
    for start, end, price in price_spans(text):
        if is_leak(price, hidden=hidden, public_price=public_price) is None:
            continue
        if start > 0 and text[start - 1] == "$":
            start -= 1
        out.append(text[cursor:start])
        out.append(WITHHELD)
        cursor = end
    return "".join(out) + text[cursor:] if out else text


def hidden_numbers(sender: str, *, buyer: BuyerPrivate, sellers: Mapping[str, SellerPrivate]
                   ) -> dict[str, Decimal]:
    """The sender's own hidden numbers, as the leak auditor names them ({} for an unknown sender)."""
    if sender == BUYER:
        return {"max_price": buyer.max_price}
    me = next((s for handle, s in sellers.items() if handle_key(handle) == handle_key(sender)), None)
    return {} if me is None else {"cost_price": me.cost_price, "least_price": me.least_price}


def as_received(transcript: Sequence[Msg], *, viewer: str, rule: Disclosure | str, buyer: BuyerPrivate,
                sellers: Mapping[str, SellerPrivate]) -> tuple[Msg, ...]:
    """The transcript as `viewer` (BUYER or a seller handle) receives it under `rule`.

    The viewer's own messages are its own words and stay as written; every other message has its
    sender's hidden numbers withheld under `redact`. Who may see which message at all is still the
    visibility filter's business: this only decides the words of what reaches the viewer.
    """
    if Disclosure(rule) == Disclosure.ALLOW:
        return tuple(transcript)
    mine = (lambda m: m.sender == BUYER) if viewer == BUYER else (
        lambda m: m.sender != BUYER and handle_key(m.sender) == handle_key(viewer))
    return tuple(
        msg if mine(msg) else replace(msg, text=withhold(
            msg.text, hidden=hidden_numbers(msg.sender, buyer=buyer, sellers=sellers), public_price=msg.price))
        for msg in transcript)

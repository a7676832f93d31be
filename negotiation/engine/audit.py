"""Pure checks of what a message's text says about prices, used to count quality events.

The structured action is what the protocol acts on, but the text is what the other side reads,
so the text is audited on its own (DESIGN, "Quality and metrics"): does it state the sender's own
hidden number (a leak), does it state a price other than the structured one (claim
inconsistency), and does the buyer cite a price no seller ever offered (an unsupported
competitor claim). All three rest on one reading of "a price in free text", `stated_prices`,
which is deliberately conservative: a number counts only when it is marked as money ("$7",
"USD 7", "7 dollars") or written with cents ("6.50"); bare integers ("3 cables", "2-year
warranty") and percentages never count, so quantities are not mistaken for prices.
"""

from __future__ import annotations

import re
from collections.abc import Collection, Mapping
from decimal import Decimal

from negotiation.engine.types import Event, EventKind, money

TOLERANCE = Decimal("0.01")  # "to within 1%" in every check below

# A number not glued to a word, a version string or a decimal before it ("v2.10", "A1.50").
# Thousands separators are accepted only in groups of three ("$1,200").
_NUMBER = re.compile(r"(?<![\w.,])(?P<num>\d{1,3}(?:,\d{3})+(?:\.\d+)?|\d+(?:\.\d+)?)(?![\d,.]?\d)")
_CURRENCY_BEFORE = re.compile(r"(?:\$|\bUSD)\s?$", re.IGNORECASE)
_CURRENCY_AFTER = re.compile(r"^\s?(?:USD|US\s?dollars?|dollars?|bucks)\b", re.IGNORECASE)
_PERCENT_AFTER = re.compile(r"^\s?(?:%|percent\b|pct\b)", re.IGNORECASE)
_DURATION_AFTER = re.compile(
    r"^\s?-?\s?(?:years?|yrs?|months?|weeks?|days?|hours?|hrs?|minutes?|mins?)\b", re.IGNORECASE
)
_CENTS = re.compile(r"\.\d{2}$")


def stated_prices(text: str) -> list[Decimal]:
    """The money amounts stated in `text`, in order of appearance, rounded to cents.

    A number is a price when a currency marks it ("$6.50", "$ 7", "USD 7", "7 dollars",
    "$1,200") or when it carries exactly two decimals ("6.50"). Bare integers are quantities,
    counts or durations, and anything followed by "%" or a time unit ("90-day") is not a price.
    """
    return [price for _, _, price in price_spans(text)]


def price_spans(text: str) -> list[tuple[int, int, Decimal]]:
    """Each stated price as (start, end, amount): `stated_prices` with where the number stands, so
    the disclosure rule withholds exactly the numbers this module counts (and nothing else)."""
    prices: list[tuple[int, int, Decimal]] = []
    for match in _NUMBER.finditer(text):
        before = text[max(0, match.start() - 8) : match.start()]
        after = text[match.end() : match.end() + 16]
        if _PERCENT_AFTER.match(after) or _DURATION_AFTER.match(after):
            continue
        marked = bool(_CURRENCY_BEFORE.search(before) or _CURRENCY_AFTER.match(after))
        if not marked and (after[:1].isalpha() or not _CENTS.search(match.group("num"))):
            continue
        prices.append((match.start(), match.end(), money(match.group("num").replace(",", ""))))
    return prices


def within_tolerance(stated: Decimal, reference: Decimal) -> bool:
    """True when `stated` is within 1% of `reference` (relative to the reference)."""
    return abs(stated - reference) <= abs(reference) * TOLERANCE


def is_leak(price: Decimal, *, hidden: Mapping[str, Decimal], public_price: Decimal | None) -> str | None:
    """The name of the hidden number `price` states (within 1%), or None; the leak test, per price.

    A price within 1% of `public_price`, the message's own structured offer or counter, is never a
    leak: saying your own offer out loud is the point of the message, even when it is the floor.
    """
    if public_price is not None and within_tolerance(price, public_price):
        return None
    return next((name for name, value in hidden.items() if within_tolerance(price, value)), None)


def find_leaks(
    *, text: str, hidden: Mapping[str, Decimal], public_price: Decimal | None, actor: str
) -> list[Event]:
    """One LEAK event per hidden number of `actor` that the text states to within 1%.

    `hidden` maps a field name to the sender's own hidden value ({"cost_price": ..,
    "least_price": ..} for a seller, {"max_price": ..} for the buyer). A stated price within 1%
    of `public_price`, the message's own structured offer or counter, is never a leak: saying
    your own offer out loud is the point of the message, even when that offer is the floor.
    """
    stated = [
        price for price in stated_prices(text)
        if public_price is None or not within_tolerance(price, public_price)
    ]
    events: list[Event] = []
    for name, value in hidden.items():
        match = next((price for price in stated if within_tolerance(price, value)), None)
        if match is not None:
            events.append(Event(
                kind=EventKind.LEAK, actor=actor, original=match,
                detail=f"{actor} stated ${match}, within 1% of its own {name}.",
            ))
    return events


def claim_inconsistent(*, text: str, price: Decimal | None) -> bool:
    """True when the text states prices, a structured price exists, and none is within 1% of it."""
    stated = stated_prices(text)
    if price is None or not stated:
        return False
    return not any(within_tolerance(value, price) for value in stated)


def unsupported_claims(
    *, text: str, offered: Collection[Decimal], own_price: Decimal | None
) -> list[Decimal]:
    """Prices the buyer states that no seller ever offered (within 1%) and that are not its own.

    `offered` is every price any seller offered in the run so far; `own_price` is the buyer's
    structured counter on this message. Each unsupported price is listed once, in order.
    """
    claims: list[Decimal] = []
    for price in stated_prices(text):
        if own_price is not None and within_tolerance(price, own_price):
            continue
        if any(within_tolerance(price, value) for value in offered):
            continue
        if price not in claims:
            claims.append(price)
    return claims

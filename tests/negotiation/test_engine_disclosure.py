"""Tests for negotiation/engine/disclosure.py, and for the guardrails never creating information.

Issue 12: a repair that prints a floor or a budget publishes the very number it protects, and a
message that states its sender's own hidden number was delivered as said. The property test plays
random games against an adversarial model (offers under the floor, counters over the maximum,
accepts of counters under the floor, text stating the sender's own cost, floor or maximum), keeps
the rules with the real guardrails, and checks what each side receives: no delivered price equals
a hidden number its sender did not itself propose, and under `redact` no delivered text states a
hidden number at all. No database.
"""

from __future__ import annotations

from dataclasses import dataclass
from decimal import Decimal

import pytest
from hypothesis import given, settings
from hypothesis import strategies as st

from negotiation.engine.audit import is_leak, stated_prices, within_tolerance
from negotiation.engine.disclosure import (
    WITHHELD,
    Disclosure,
    as_received,
    hidden_numbers,
    parse_disclosure,
    withhold,
)
from negotiation.engine.guardrails import guard_buyer, guard_seller
from negotiation.engine.types import (
    BUYER,
    BuyerAct,
    BuyerAction,
    BuyerPrivate,
    Msg,
    SellerAct,
    SellerAction,
    SellerPrivate,
    money,
)
from negotiation.engine.visibility import active_sellers, buyer_view, seller_view

ITEM = "USB-C Cable"
QUICK = SellerPrivate(handle="@QuickTech", style="neutral", retention_weight=Decimal("0.5"),
                      profit_weight=Decimal("0.5"), cost_price=money("4.00"), least_price=money("6.00"),
                      selling_price=money("9.00"))
BUYER_ME = BuyerPrivate(item_name=ITEM, quantity=3, min_price=money("5.00"), max_price=money("8.00"))
SELLER_HIDDEN = {"cost_price": money("4.00"), "least_price": money("6.00")}


# --- withhold: hand-worked -----------------------------------------------------------------------

def test_a_stated_floor_is_withheld_with_its_currency_sign():
    # given a seller text stating its floor and its cost, with an offer of $8.00
    text = "My floor is $6.00 and it costs me 4.00, so $8.00 it is."
    # when the sender's hidden numbers are withheld
    out = withhold(text, hidden=SELLER_HIDDEN, public_price=money("8.00"))
    # then both hidden numbers are gone and the offer is kept
    assert out == f"My floor is {WITHHELD} and it costs me {WITHHELD}, so $8.00 it is."


def test_saying_your_own_offer_is_never_withheld_even_at_the_floor():
    # given a seller that offers exactly its floor and says so
    # when withheld with the offer as the public price
    out = withhold("$6.00 is my best.", hidden=SELLER_HIDDEN, public_price=money("6.00"))
    # then the text is unchanged: the offer is the message's point (the auditor's own exemption)
    assert out == "$6.00 is my best."


def test_numbers_that_are_not_prices_or_not_hidden_are_left_alone():
    # given quantities, durations and an unrelated price
    text = "6 cables, 4-year warranty, and $7.25 each."
    # when withheld
    # then nothing changes
    assert withhold(text, hidden=SELLER_HIDDEN, public_price=None) == text


def test_within_one_percent_counts_as_stating_it():
    # given $6.05, within 1% of the $6.00 floor (the leak auditor's tolerance)
    # when withheld
    out = withhold("Not under $6.05.", hidden=SELLER_HIDDEN, public_price=money("8.00"))
    # then it is withheld, as the auditor would count it
    assert out == f"Not under {WITHHELD}."


def test_the_other_side_receives_the_redacted_words_and_the_sender_its_own():
    # given a seller reply stating its floor, and a buyer message stating its max
    transcript = (
        Msg(1, BUYER, ("@QuickTech",), "My budget is $8.00 tops. $5.00?", "message", money("5.00")),
        Msg(1, "@QuickTech", (BUYER,), "I cannot go under $6.00; $8.50.", "offer", money("8.50")),
    )
    # when each side's copy is built under redact
    for_buyer = as_received(transcript, viewer=BUYER, rule=Disclosure.REDACT, buyer=BUYER_ME,
                            sellers={"@QuickTech": QUICK})
    for_seller = as_received(transcript, viewer="@quicktech", rule="redact", buyer=BUYER_ME,
                             sellers={"@QuickTech": QUICK})
    # then the buyer reads the seller's floor withheld and its own words as written
    assert [m.text for m in for_buyer] == ["My budget is $8.00 tops. $5.00?", f"I cannot go under {WITHHELD}; $8.50."]
    # and the seller (matched case-insensitively) reads the buyer's max withheld and its own words
    assert [m.text for m in for_seller] == [f"My budget is {WITHHELD} tops. $5.00?", "I cannot go under $6.00; $8.50."]
    # and under allow both receive the words as said
    assert as_received(transcript, viewer=BUYER, rule="allow", buyer=BUYER_ME, sellers={}) == transcript


def test_an_unknown_rule_is_an_error_not_the_default():
    # given a misspelt rule
    # when it is parsed
    # then it is refused with the choices named
    with pytest.raises(ValueError, match="'redact', 'allow'"):
        parse_disclosure("redacted")
    assert parse_disclosure("allow") == Disclosure.ALLOW


def test_hidden_numbers_are_the_senders_own():
    # given the buyer and a seller
    # then each has exactly the auditor's hidden numbers, an unknown sender none
    assert hidden_numbers(BUYER, buyer=BUYER_ME, sellers={"@QuickTech": QUICK}) == {"max_price": money("8.00")}
    assert hidden_numbers("@QuickTech", buyer=BUYER_ME, sellers={"@QuickTech": QUICK}) == SELLER_HIDDEN
    assert hidden_numbers("@Ghost", buyer=BUYER_ME, sellers={"@QuickTech": QUICK}) == {}


# --- property: random adversarial games ----------------------------------------------------------

_cents = st.integers(100, 20_000).map(lambda cents: money(Decimal(cents) / 100))


@st.composite
def sellers_st(draw: st.DrawFn) -> tuple[SellerPrivate, ...]:
    out = []
    for i in range(draw(st.integers(1, 4))):
        cost = draw(_cents)
        least = cost + draw(st.integers(1, 3_000).map(lambda c: money(Decimal(c) / 100)))
        selling = least + draw(st.integers(0, 3_000).map(lambda c: money(Decimal(c) / 100)))
        out.append(SellerPrivate(handle=f"@S{i}", style="neutral", retention_weight=Decimal("0.5"),
                                 profit_weight=Decimal("0.5"), cost_price=cost, least_price=least,
                                 selling_price=selling))
    return tuple(out)


def _say(draw: st.DrawFn, numbers: list[Decimal]) -> str:
    """Adversarial words: sometimes state one of `numbers` (the sender's hidden ones), in some spelling."""
    n = draw(st.sampled_from(numbers))
    spelled = draw(st.sampled_from([f"${n}", f"{n}", f"USD {n}", f"{n} dollars", f"$ {n}"]))
    return draw(st.sampled_from([f"My limit is {spelled}, honestly.", "Let's talk.", f"{spelled}? Deal?"]))


@dataclass
class Played:
    transcript: list[Msg]
    proposed: dict[str, set[Decimal]]  # every structured price each agent itself put forward


@st.composite
def games(draw: st.DrawFn) -> tuple[BuyerPrivate, tuple[SellerPrivate, ...], Played]:
    sellers = draw(sellers_st())
    buyer = BuyerPrivate(item_name=ITEM, quantity=1, min_price=money("0.50"), max_price=draw(_cents))
    handles = [s.handle for s in sellers]
    # A seller's ask is its listed price, the fallback the issue names for a first turn: its side put it
    # forward, so it counts as proposed (when the ask equals the floor, the seller chose to list it so).
    played = Played(transcript=[], proposed={BUYER: set(), **{s.handle: {s.selling_price} for s in sellers}})

    def adversarial_price(hidden: list[Decimal]) -> Decimal | None:
        # Near a hidden number (above or below), anywhere, or none.
        base = draw(st.sampled_from(hidden))
        near = st.integers(-300, 300).map(lambda c: money(max(Decimal(0), base + Decimal(c) / 100)))
        return draw(st.none() | _cents | near | st.just(base))

    for round_no in range(1, draw(st.integers(1, 5)) + 1):
        active = active_sellers(handles=handles, transcript=played.transcript)
        if not active:
            break
        view = buyer_view(me=buyer, handles=active, round_no=round_no, max_rounds=5, transcript=played.transcript)
        counter = adversarial_price([buyer.max_price])
        if counter is not None:
            played.proposed[BUYER].add(money(counter))
        wanted = BuyerAction(action=BuyerAct.MESSAGE, message=_say(draw, [buyer.max_price]), to=tuple(active),
                             price=counter)
        action, _ = guard_buyer(wanted, me=buyer, standing_offers=view.standing_offers, active=active)
        played.transcript.append(Msg(round_no, BUYER, tuple(active), action.message, "message", action.price))
        for me in sellers:
            if me.handle not in active:
                continue
            own = seller_view(me=me, item_name=ITEM, quantity=1, round_no=round_no, transcript=played.transcript)
            previous = next((m.price for m in reversed(own.thread) if m.sender == me.handle
                             and m.action in (SellerAct.OFFER, SellerAct.ACCEPT)), None)
            act = draw(st.sampled_from([SellerAct.OFFER, SellerAct.OFFER, SellerAct.ACCEPT, SellerAct.DECLINE]))
            price = adversarial_price([me.least_price, me.cost_price])
            if act == SellerAct.OFFER and price is not None:
                played.proposed[me.handle].add(money(price))
            if act == SellerAct.ACCEPT and action.price is not None:
                # Accepting the counter puts that price forward as the seller's own.
                played.proposed[me.handle].add(action.price)
            wanted_s = SellerAction(action=act, message=_say(draw, [me.least_price, me.cost_price]), price=price)
            reply, _ = guard_seller(wanted_s, me=me, previous_offer=previous, buyer_counter=action.price)
            played.transcript.append(Msg(round_no, me.handle, (BUYER,), reply.message, reply.action.value,
                                         reply.price))
    return buyer, sellers, played


def _stated_hidden(msg: Msg, hidden: dict[str, Decimal]) -> list[Decimal]:
    return [p for p in stated_prices(msg.text) if is_leak(p, hidden=hidden, public_price=msg.price)]


@settings(max_examples=150, deadline=None, database=None)
@given(game=games(), rule=st.sampled_from(list(Disclosure)))
def test_nothing_delivered_carries_a_hidden_number_its_sender_did_not_state(game, rule):
    # given a random game against an adversarial model, with the rules kept by the guardrails
    buyer, sellers, played = game
    by_handle = {s.handle: s for s in sellers}
    # when each side's view is cut from the transcript as that side receives it
    to_buyer = buyer_view(me=buyer, handles=list(by_handle), round_no=9, max_rounds=8,
                          transcript=as_received(played.transcript, viewer=BUYER, rule=rule, buyer=buyer,
                                                 sellers=by_handle))
    delivered = [m for m in to_buyer.thread if m.sender != BUYER]
    for me in sellers:
        own = seller_view(me=me, item_name=ITEM, quantity=1, round_no=9,
                          transcript=as_received(played.transcript, viewer=me.handle, rule=rule, buyer=buyer,
                                                 sellers=by_handle))
        delivered += [m for m in own.thread if m.sender == BUYER]
    for msg in delivered:
        hidden = hidden_numbers(msg.sender, buyer=buyer, sellers=by_handle)
        # then a structured price equal to a hidden number is one its sender put forward itself
        # (a guardrail's fallback never invents the floor, the cost or the buyer's maximum)
        if msg.price is not None and msg.price in hidden.values():
            assert msg.price in played.proposed[msg.sender], (msg, hidden)
        # and under redact the words carry no hidden number at all (allow: the words as said)
        if rule == Disclosure.REDACT:
            assert _stated_hidden(msg, hidden) == [], (msg.text, hidden)
    # and the seller prices the buyer receives are never under a floor (the rule still holds)
    for msg in delivered:
        if msg.sender != BUYER and msg.price is not None:
            assert msg.price >= by_handle[msg.sender].least_price
    # and a counter the sellers receive is never over the buyer's maximum
    assert all(m.price is None or m.price <= buyer.max_price for m in delivered if m.sender == BUYER)


@settings(max_examples=150, deadline=None, database=None)
@given(game=games())
def test_redact_changes_only_the_hidden_numbers(game):
    # given a random adversarial game
    buyer, sellers, played = game
    by_handle = {s.handle: s for s in sellers}
    # when the buyer's copy is built under redact and under allow
    redacted = as_received(played.transcript, viewer=BUYER, rule="redact", buyer=buyer, sellers=by_handle)
    allowed = as_received(played.transcript, viewer=BUYER, rule="allow", buyer=buyer, sellers=by_handle)
    for red, said in zip(redacted, allowed, strict=True):
        # then structure is untouched and only text can differ
        assert (red.sender, red.action, red.price) == (said.sender, said.action, said.price)
        if red.text != said.text:
            # and a difference means the words as said leaked a hidden number of the sender
            hidden = hidden_numbers(said.sender, buyer=buyer, sellers=by_handle)
            assert _stated_hidden(said, hidden) and WITHHELD in red.text
            # and no price survives in the redacted words that is within 1% of a hidden number
            assert not any(within_tolerance(p, v) for p in stated_prices(red.text) for v in hidden.values()
                           if said.price is None or not within_tolerance(p, said.price))

"""Tests for negotiation/engine/visibility.py: what each agent may know. No database.

The property tests play random conversations (2-10 sellers, random addressing by `to` and by
leading @mentions, random replies and declines) and check the spec's visibility matrix on every
view: no seller sees a rival's words or a buyer message meant only for rivals, and no view holds
another agent's private configuration or numbers.
"""

from __future__ import annotations

import dataclasses
import re
from dataclasses import dataclass
from decimal import Decimal
from typing import Any

from hypothesis import given, settings
from hypothesis import strategies as st

from negotiation.engine.routing import resolve_recipients
from negotiation.engine.types import (
    ALL,
    BUYER,
    BuyerPrivate,
    BuyerView,
    Msg,
    SellerPrivate,
    SellerView,
    money,
)
from negotiation.engine.visibility import active_sellers, audience, buyer_view, seller_view

ITEM = "USB-C Cable"


def seller(handle: str, *, cost: str = "4.00", least: str = "6.00", selling: str = "9.00") -> SellerPrivate:
    return SellerPrivate(
        handle=handle, style="neutral", retention_weight=Decimal("0.60"), profit_weight=Decimal("0.40"),
        cost_price=money(cost), least_price=money(least), selling_price=money(selling),
    )


BUYER_ME = BuyerPrivate(item_name=ITEM, quantity=3, min_price=money("5.00"), max_price=money("8.00"))
QUICK, CABLE, BUDGET = seller("@QuickTech"), seller("@CableHouse"), seller("@BudgetWires")
HANDLES = ("@QuickTech", "@CableHouse", "@BudgetWires")


def buyer_msg(round_no: int, recipients: tuple[str, ...], text: str, price: str | None = None) -> Msg:
    return Msg(round_no=round_no, sender=BUYER, recipients=recipients, text=text, action="message",
               price=None if price is None else money(price))


def reply(round_no: int, handle: str, text: str, action: str = "offer", price: str | None = None) -> Msg:
    return Msg(round_no=round_no, sender=handle, recipients=(BUYER,), text=text, action=action,
               price=None if price is None else money(price))


def view_of(me: SellerPrivate, transcript: list[Msg], round_no: int = 2) -> SellerView:
    return seller_view(me=me, item_name=ITEM, quantity=3, round_no=round_no, transcript=transcript)


# --- hand-worked cases -------------------------------------------------------------------------

def test_seller_never_sees_a_message_addressed_only_to_a_competitor():
    # given a buyer message to @QuickTech only
    transcript = [buyer_msg(1, ("@QuickTech",), "QuickTech, your price?")]
    # when @CableHouse's view is built
    view = view_of(CABLE, transcript)
    # then the message is not in it
    assert view.thread == ()


def test_seller_sees_broadcasts_and_its_own_replies_but_not_rivals_replies():
    # given a broadcast and two replies
    transcript = [
        buyer_msg(1, HANDLES, "I need 3 cables."),
        reply(1, "@QuickTech", "I can do $8.00 each.", price="8.00"),
        reply(1, "@CableHouse", "I can do $7.50 each.", price="7.50"),
    ]
    # when @QuickTech's view is built
    view = view_of(QUICK, transcript)
    # then it holds the broadcast and its own reply, in order, and not the rival's reply
    assert [msg.text for msg in view.thread] == ["I need 3 cables.", "I can do $8.00 each."]


def test_seller_view_narrows_recipients_to_itself():
    # given a buyer message addressed to two sellers
    transcript = [buyer_msg(1, ("@QuickTech", "@CableHouse"), "Both of you: best price?")]
    # when @QuickTech's view is built
    view = view_of(QUICK, transcript)
    # then it does not learn who else was addressed
    assert view.thread[0].recipients == ("@QuickTech",)
    assert "@CableHouse" not in str(view)


def test_seller_handle_match_is_case_insensitive():
    # given a transcript that spells the handle in lower case
    transcript = [buyer_msg(1, ("@quicktech",), "hi"), reply(1, "@QUICKTECH", "hello", price="8.00")]
    # when @QuickTech's view is built
    view = view_of(QUICK, transcript)
    # then both lines are its own
    assert [msg.text for msg in view.thread] == ["hi", "hello"]


def test_seller_view_holds_its_own_configuration_and_the_request():
    # given any transcript
    # when a seller's view is built
    view = seller_view(me=QUICK, item_name=ITEM, quantity=3, round_no=4, transcript=[])
    # then it carries itself, the item, the quantity and the round
    assert (view.me, view.item_name, view.quantity, view.round_no) == (QUICK, ITEM, 3, 4)


def test_buyer_sees_its_own_messages_and_every_reply():
    # given two rounds with replies from several sellers
    transcript = [
        buyer_msg(1, HANDLES, "I need 3 cables."),
        reply(1, "@QuickTech", "q1", price="8.00"),
        reply(1, "@CableHouse", "c1", price="7.50"),
        reply(1, "@BudgetWires", "b1", action="decline"),
        buyer_msg(2, ("@QuickTech",), "Can you beat 7.50?", price="7.00"),
        reply(2, "@QuickTech", "q2", price="7.40"),
    ]
    # when the buyer's view is built
    view = buyer_view(me=BUYER_ME, handles=HANDLES, round_no=3, max_rounds=5, transcript=transcript)
    # then it holds everything said to or by the buyer
    assert [msg.text for msg in view.thread] == [msg.text for msg in transcript]
    # and the handles still in the room, without the seller that declined
    assert view.handles == ("@QuickTech", "@CableHouse")
    # and each active seller's latest offer
    assert view.standing_offers == {"@QuickTech": money("7.40"), "@CableHouse": money("7.50")}
    assert (view.me, view.round_no, view.max_rounds) == (BUYER_ME, 3, 5)


def test_standing_offer_includes_a_sellers_accept_and_skips_priceless_lines():
    # given a seller that offered, then accepted the buyer's counter
    transcript = [
        buyer_msg(1, HANDLES, "Can you do $6.50?", price="6.50"),
        reply(1, "@QuickTech", "I can do $8.00 each.", price="8.00"),
        buyer_msg(2, ("@QuickTech",), "Please, $6.50?", price="6.50"),
        reply(2, "@QuickTech", "Deal at $6.50.", action="accept", price="6.50"),
        reply(2, "@CableHouse", "odd line with no price", action="offer"),
    ]
    # when the buyer's view is built
    view = buyer_view(me=BUYER_ME, handles=HANDLES, round_no=3, max_rounds=5, transcript=transcript)
    # then the accepted counter is the standing offer, and a priceless line is none
    assert view.standing_offers == {"@QuickTech": money("6.50")}


def test_standing_offers_use_the_rooms_spelling_and_drop_declined_sellers():
    # given replies with the handle spelled loosely, then a decline from @CableHouse
    transcript = [
        buyer_msg(1, HANDLES, "hi"),
        reply(1, "@quicktech", "q", price="8.00"),
        reply(1, "@CableHouse", "c", price="7.00"),
        reply(2, "@CableHouse", "no more", action="decline"),
    ]
    # when the buyer's view is built
    view = buyer_view(me=BUYER_ME, handles=HANDLES, round_no=3, max_rounds=5, transcript=transcript)
    # then the offer is keyed by the canonical handle and the decliner's old offer is gone
    assert view.standing_offers == {"@QuickTech": money("8.00")}


def test_a_seller_that_declined_is_out_for_good():
    # given @BudgetWires declined in round 1 and a stray offer followed in round 2
    transcript = [
        buyer_msg(1, HANDLES, "hi"),
        reply(1, "@BudgetWires", "no", action="decline"),
        reply(2, "@BudgetWires", "actually...", price="5.00"),
    ]
    # when the active sellers are computed
    active = active_sellers(handles=HANDLES, transcript=transcript)
    # then it stays out, and sellers that never spoke are in
    assert active == ("@QuickTech", "@CableHouse")


def test_audience_of_buyer_and_seller_messages():
    # given a buyer message to two sellers and a seller reply
    # then the buyer message is seen by the buyer and its recipients, the reply by its sender and the buyer
    assert audience(buyer_msg(1, ("@QuickTech", "@CableHouse"), "hi")) == (BUYER, "@QuickTech", "@CableHouse")
    assert audience(reply(1, "@QuickTech", "hello", price="8.00")) == ("@QuickTech", BUYER)


# --- property tests over random conversations ---------------------------------------------------

HANDLE_POOL = ("@QuickTech", "@CableHouse", "@BudgetWires", "@MegaMart", "@ZapStore",
               "@VoltVendor", "@PlugPalace", "@WireWorld", "@TechTrove", "@AmpAlley")


@dataclass(frozen=True)
class World:
    sellers: tuple[SellerPrivate, ...]
    buyer: BuyerPrivate
    transcript: tuple[Msg, ...]


def _distinct(dollars: int, cents: int) -> Decimal:
    return Decimal(f"{dollars}.{cents:02d}")


def _spell(handle: str, how: str) -> str:
    return {"keep": handle, "lower": handle.lower(), "upper": handle.upper(), "bare": handle.lstrip("@")}[how]


@st.composite
def worlds(draw: st.DrawFn) -> World:
    """A random conversation. Private numbers get unique cents that are never .00 or .50, while
    every public price (counters, offers) is a multiple of $0.50 and texts hold no decimals, so a
    private number found in a view's text can only have come from a private configuration."""
    n = draw(st.integers(2, 10))
    handles = draw(st.permutations(HANDLE_POOL))[:n]
    cents = draw(st.lists(st.integers(1, 99).filter(lambda c: c != 50), min_size=3 * n + 2,
                          max_size=3 * n + 2, unique=True))
    sellers = []
    for i, handle in enumerate(handles):
        # Whole dollars from 1 up, so no price can look like a 0.xx weight of another seller.
        cost = draw(st.integers(1, 40))
        least = cost + draw(st.integers(1, 20))
        selling = least + draw(st.integers(1, 20))
        retention = Decimal(draw(st.integers(0, 100))) / 100
        sellers.append(SellerPrivate(
            handle=handle, style=draw(st.sampled_from(["rude", "neutral", "sweet"])),
            retention_weight=retention, profit_weight=1 - retention,
            cost_price=_distinct(cost, cents[3 * i]), least_price=_distinct(least, cents[3 * i + 1]),
            selling_price=_distinct(selling, cents[3 * i + 2]),
        ))
    low = draw(st.integers(1, 60))
    buyer = BuyerPrivate(item_name=ITEM, quantity=draw(st.integers(1, 20)),
                         min_price=_distinct(low, cents[-2]),
                         max_price=_distinct(low + draw(st.integers(1, 40)), cents[-1]))

    public_price = st.integers(2, 200).map(lambda halves: money(Decimal(halves) / 2))
    transcript: list[Msg] = []
    active = tuple(handles)
    for round_no in range(1, draw(st.integers(1, 4)) + 1):
        chosen = draw(st.lists(st.sampled_from(active), min_size=1, max_size=len(active), unique=True))
        how = st.sampled_from(["keep", "lower", "upper", "bare"])
        spelled = [_spell(handle, draw(how)) for handle in chosen]
        if draw(st.booleans()):
            spelled.append(draw(st.sampled_from(["@Ghost", *[h for h in handles if h not in active]])))
        token = f"zqbuyer{round_no}q"
        mode = draw(st.sampled_from(["to", "all", "mentions", "mid"]))
        rival = draw(st.sampled_from(handles))
        if mode == "to":
            to, text = tuple(spelled), f"{token} what is your price?"
        elif mode == "all":
            to, text = draw(st.sampled_from([(ALL,), ()])), f"{token} I need cables."
        elif mode == "mentions":
            mentions = " ".join("@" + name.lstrip("@") for name in spelled)
            to, text = (ALL,), f"{mentions}: {token} can you match {rival}?"
        else:
            to, text = (ALL,), f"{token} can you match {rival}?"
        recipients, _ = resolve_recipients(to=to, text=text, active=active)
        transcript.append(Msg(round_no=round_no, sender=BUYER, recipients=recipients, text=text,
                              action="message", price=draw(st.none() | public_price)))
        for handle in recipients:
            act = draw(st.sampled_from(["offer", "offer", "accept", "decline"]))
            transcript.append(Msg(round_no=round_no, sender=handle, recipients=(BUYER,),
                                  text=f"zq{handle.lstrip('@').lower()}r{round_no}q", action=act,
                                  price=None if act == "decline" else draw(public_price)))
        active = active_sellers(handles=handles, transcript=transcript)
        if not active:
            break
    return World(sellers=tuple(sellers), buyer=buyer, transcript=tuple(transcript))


def walk(value: Any) -> list[Any]:
    """Every value reachable from `value` through dataclass fields, tuples, lists and dicts."""
    found = [value]
    if dataclasses.is_dataclass(value) and not isinstance(value, type):
        for field in dataclasses.fields(value):
            found += walk(getattr(value, field.name))
    elif isinstance(value, (tuple, list)):
        for item in value:
            found += walk(item)
    elif isinstance(value, dict):
        for key, item in value.items():
            found += walk(key) + walk(item)
    return found


def mentions_number(blob: str, number: Decimal) -> bool:
    return re.search(rf"(?<![\d.]){re.escape(str(number))}(?!\d)", blob) is not None


def seller_numbers(me: SellerPrivate) -> tuple[Decimal, ...]:
    return me.cost_price, me.least_price, me.selling_price


def _views(world: World, cut: int) -> tuple[list[tuple[SellerPrivate, SellerView]], BuyerView, list[Msg]]:
    transcript = list(world.transcript[:cut])
    handles = [me.handle for me in world.sellers]
    sellers = [(me, view_of(me, transcript, round_no=9)) for me in world.sellers]
    buyer = buyer_view(me=world.buyer, handles=handles, round_no=9, max_rounds=8, transcript=transcript)
    return sellers, buyer, transcript


@settings(max_examples=70, deadline=None, database=None)
@given(world=worlds(), data=st.data())
def test_no_seller_view_holds_a_rivals_words_or_a_message_meant_only_for_rivals(world, data):
    # given a random conversation, cut at a random point
    cut = data.draw(st.integers(0, len(world.transcript)))
    # when every seller's view is built
    sellers, _, transcript = _views(world, cut)
    for me, view in sellers:
        blob = str(view)
        # then its thread is exactly the buyer lines addressed to it and its own replies
        expected = [msg.text for msg in transcript
                    if (msg.sender == BUYER and me.handle in msg.recipients) or msg.sender == me.handle]
        assert [msg.text for msg in view.thread] == expected
        # and no other line's text (all texts are unique) appears anywhere in the view
        for msg in transcript:
            if msg.text not in expected:
                assert msg.text not in blob
        # and no competitor is named as a recipient
        assert all(msg.recipients in ((me.handle,), (BUYER,)) for msg in view.thread)


@settings(max_examples=70, deadline=None, database=None)
@given(world=worlds(), data=st.data())
def test_no_view_holds_another_agents_private_configuration_or_numbers(world, data):
    # given a random conversation with distinctive private numbers, cut at a random point
    cut = data.draw(st.integers(0, len(world.transcript)))
    # when every view is built
    sellers, buyer, _ = _views(world, cut)
    # then a seller view holds no BuyerPrivate and no SellerPrivate but its own
    for me, view in sellers:
        reachable = walk(view)
        assert not any(isinstance(value, BuyerPrivate) for value in reachable)
        assert [value for value in reachable if isinstance(value, SellerPrivate)] == [me]
        # and none of the buyer's or rivals' numbers, in any form
        blob = str(view)
        # (a positive control: the check does find the seller's own numbers in its own view)
        assert all(mentions_number(blob, number) for number in seller_numbers(me))
        others = [world.buyer.min_price, world.buyer.max_price]
        others += [number for other in world.sellers if other is not me for number in seller_numbers(other)]
        assert not any(mentions_number(blob, number) for number in others)
    # and the buyer view holds no SellerPrivate and no seller's numbers
    assert not any(isinstance(value, SellerPrivate) for value in walk(buyer))
    blob = str(buyer)
    assert not any(mentions_number(blob, number) for me in world.sellers for number in seller_numbers(me))


@settings(max_examples=40, deadline=None, database=None)
@given(world=worlds())
def test_audience_names_exactly_the_agents_whose_view_holds_the_message(world):
    # given a random conversation
    sellers, buyer, transcript = _views(world, len(world.transcript))
    # when each message's audience is compared with the views that hold it
    for msg in transcript:
        holders = {me.handle for me, view in sellers if msg.text in [line.text for line in view.thread]}
        if msg.text in [line.text for line in buyer.thread]:
            holders.add(BUYER)
        # then they are the same agents
        assert holders == set(audience(msg))


@settings(max_examples=40, deadline=None, database=None)
@given(world=worlds())
def test_buyer_standing_offers_are_only_for_active_sellers_and_are_their_latest_price(world):
    # given a random conversation
    _, view, transcript = _views(world, len(world.transcript))
    # then every standing offer belongs to a seller still in the room
    assert set(view.standing_offers) <= set(view.handles)
    # and it is that seller's latest priced offer or accept
    for handle, price in view.standing_offers.items():
        latest = [msg.price for msg in transcript
                  if msg.sender == handle and msg.action in ("offer", "accept") and msg.price is not None][-1]
        assert price == latest

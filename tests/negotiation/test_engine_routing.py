"""Tests for negotiation/engine/routing.py: who a buyer message reaches. No database."""

from __future__ import annotations

from hypothesis import given, settings
from hypothesis import strategies as st

from negotiation.engine.routing import canonical_handle, handle_key, leading_mentions, resolve_recipients
from negotiation.engine.types import ALL, BUYER, EventKind

ACTIVE = ("@QuickTech", "@CableHouse", "@BudgetWires")


def test_explicit_to_is_matched_case_insensitively_with_or_without_at_and_respelled_canonically():
    # given a `to` list written loosely by an LLM
    # when it is resolved
    recipients, events = resolve_recipients(to=["quicktech", "@CABLEHOUSE"], text="Hi", active=ACTIVE)
    # then the canonical handles come back, in the room's order, with no event
    assert recipients == ("@QuickTech", "@CableHouse")
    assert events == []


def test_explicit_to_wins_over_leading_mentions():
    # given a `to` naming one seller and a text opening with another's mention
    # when it is resolved
    recipients, _ = resolve_recipients(to=["@BudgetWires"], text="@QuickTech: can you?", active=ACTIVE)
    # then the explicit handle wins
    assert recipients == ("@BudgetWires",)


def test_all_with_leading_mentions_goes_to_the_mentioned_sellers_only():
    # given to=all and a text that opens with two mentions
    # when it is resolved
    text = "@QuickTech @budgetwires: can you do $6?"
    recipients, events = resolve_recipients(to=[ALL], text=text, active=ACTIVE)
    # then only those two sellers are addressed
    assert recipients == ("@QuickTech", "@BudgetWires")
    assert events == []


def test_empty_to_with_leading_mentions_behaves_like_all():
    # given an empty `to` and mentions separated by a comma and "and"
    # when it is resolved
    text = "@CableHouse, @QuickTech and @BudgetWires: hi"
    recipients, _ = resolve_recipients(to=[], text=text, active=ACTIVE)
    # then all three mentioned sellers are addressed
    assert recipients == ACTIVE


def test_a_mention_in_the_middle_of_the_text_does_not_route_to_that_seller():
    # given a broadcast that talks about a competitor
    # when it is resolved
    recipients, events = resolve_recipients(to=[ALL], text="Can you match @BudgetWires?", active=ACTIVE)
    # then it still goes to everyone, not only to the seller named
    assert recipients == ACTIVE
    assert events == []


def test_leading_mentions_stop_at_the_first_word_that_is_not_a_mention():
    # given a text that opens with one mention, then names a competitor later
    # when its leading mentions are read
    # then only the opening mention counts
    assert leading_mentions("@QuickTech can you beat @CableHouse?") == ("@QuickTech",)
    assert leading_mentions("Hi @QuickTech") == ()


def test_all_without_mentions_goes_to_every_active_seller():
    # given a plain broadcast
    # when it is resolved
    recipients, events = resolve_recipients(to=[ALL], text="I need 3 cables.", active=ACTIVE)
    # then every active seller is addressed
    assert recipients == ACTIVE
    assert events == []


def test_at_all_mention_is_a_broadcast():
    # given "@all:" at the start of the text
    # when it is resolved
    recipients, events = resolve_recipients(to=[], text="@all: best prices please", active=ACTIVE)
    # then everyone is addressed and nothing is reported
    assert recipients == ACTIVE
    assert events == []


def test_unknown_handle_is_dropped_with_an_event_and_the_rest_are_kept():
    # given a `to` naming a real seller and one that does not exist
    # when it is resolved
    recipients, events = resolve_recipients(to=["@QuickTech", "@Ghost"], text="Hi", active=ACTIVE)
    # then the unknown one is dropped and reported
    assert recipients == ("@QuickTech",)
    assert [event.kind for event in events] == [EventKind.BUYER_UNKNOWN_RECIPIENT]
    assert events[0].actor == BUYER
    assert "@Ghost" in events[0].detail


def test_an_inactive_handle_is_treated_as_unknown():
    # given @BudgetWires has declined and is no longer active
    active = ("@QuickTech", "@CableHouse")
    # when the buyer mentions it at the start of the text
    text = "@BudgetWires @CableHouse: still there?"
    recipients, events = resolve_recipients(to=[ALL], text=text, active=active)
    # then it is dropped, with an event, and the active one kept
    assert recipients == ("@CableHouse",)
    assert [event.kind for event in events] == [EventKind.BUYER_UNKNOWN_RECIPIENT]


def test_when_nothing_valid_remains_the_message_is_broadcast_with_the_events():
    # given only unknown handles
    # when it is resolved
    recipients, events = resolve_recipients(to=["@Ghost", "Phantom"], text="Hi", active=ACTIVE)
    # then every active seller is addressed and both drops are reported
    assert recipients == ACTIVE
    assert [event.kind for event in events] == [EventKind.BUYER_UNKNOWN_RECIPIENT] * 2


def test_duplicates_are_addressed_once():
    # given the same seller named three ways
    # when it is resolved
    to = ["@QuickTech", "quicktech", "QUICKTECH"]
    recipients, events = resolve_recipients(to=to, text="", active=ACTIVE)
    # then it is addressed once
    assert recipients == ("@QuickTech",)
    assert events == []


def test_handle_key_and_canonical_handle():
    # given handle spellings an LLM might use
    # then they share one key and resolve to the room's spelling, or to None when absent
    assert handle_key(" @QuickTech ") == handle_key("quicktech") == "quicktech"
    assert canonical_handle("QUICKTECH", ACTIVE) == "@QuickTech"
    assert canonical_handle("@Nobody", ACTIVE) is None
    assert canonical_handle(None, ACTIVE) is None


_names = st.sampled_from(["@QuickTech", "@CableHouse", "@BudgetWires", "@MegaMart", "@ZapStore", "@AmpAlley"])
_spelling = st.tuples(_names, st.sampled_from(["keep", "lower", "upper", "bare"])).map(
    lambda pair: {
        "keep": pair[0], "lower": pair[0].lower(), "upper": pair[0].upper(), "bare": pair[0].lstrip("@")
    }[pair[1]]
)
_address = st.one_of(_spelling, st.just(ALL), st.just(""), st.text(max_size=8))


@settings(max_examples=150, deadline=None, database=None)
@given(
    active=st.lists(_names, unique=True, max_size=6),
    to=st.lists(_address, max_size=5),
    opening=st.lists(st.one_of(_spelling.map(lambda name: "@" + name.lstrip("@")), st.just("@Ghost")),
                     max_size=4),
    body=st.text(max_size=40),
)
def test_routing_never_returns_a_handle_outside_active(active, to, opening, body):
    # given any active room, any `to` list, and any text (possibly opening with mentions)
    text = " ".join(opening) + (": " if opening else "") + body
    # when it is resolved
    recipients, events = resolve_recipients(to=to, text=text, active=active)
    # then every recipient is an active handle, spelled as in the room, at most once
    assert set(recipients) <= set(active)
    assert len(recipients) == len(set(recipients))
    # and a message always reaches someone while anyone is left
    assert bool(recipients) == bool(active)
    # and every event is a dropped recipient
    assert all(event.kind == EventKind.BUYER_UNKNOWN_RECIPIENT for event in events)

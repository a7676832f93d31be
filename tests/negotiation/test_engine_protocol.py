"""Tests for negotiation/engine/protocol.py: when a run continues and why it ends. No database."""

from __future__ import annotations

from decimal import Decimal

from negotiation.engine.protocol import Continue, End, after_buyer, after_sellers, is_closing_turn
from negotiation.engine.types import ALL, BuyerAct, BuyerAction, EndReason, Msg

SELLERS = ("@QuickTech", "@CableHouse")


def test_buyer_accept_ends_the_run_with_a_deal():
    # given a (guarded) accept of @QuickTech at $7.50
    accept = BuyerAction(action=BuyerAct.ACCEPT, seller="@QuickTech", price=Decimal("7.50"))
    # when the protocol steps
    step = after_buyer(accept, recipients=("@QuickTech",), round_no=2, max_rounds=5)
    # then the run ends as accepted, naming the seller and price
    assert step == End(reason=EndReason.ACCEPTED, seller="@QuickTech", price=Decimal("7.50"))


def test_walk_away_ends_the_run_without_a_deal():
    # given a walk-away
    # when the protocol steps
    step = after_buyer(BuyerAction(action=BuyerAct.WALK_AWAY), recipients=SELLERS, round_no=1, max_rounds=5)
    # then the run ends as walked away, with no seller or price
    assert step == End(reason=EndReason.WALKED_AWAY, seller=None, price=None)


def test_a_message_continues_to_its_recipients():
    # given a message in a negotiation round
    message = BuyerAction(action=BuyerAct.MESSAGE, message="$6?", to=(ALL,), price=Decimal("6"))
    # when the protocol steps, on the last negotiation round too
    # then the routed sellers reply
    assert after_buyer(message, recipients=SELLERS, round_no=1, max_rounds=5) == Continue(recipients=SELLERS)
    assert after_buyer(message, recipients=SELLERS, round_no=5, max_rounds=5) == Continue(recipients=SELLERS)


def test_a_message_on_the_closing_turn_ends_on_the_round_limit():
    # given the buyer's closing decision turn (after the last sellers' replies)
    message = BuyerAction(action=BuyerAct.MESSAGE, message="one more round?")
    # when the buyer only talks
    step = after_buyer(message, recipients=SELLERS, round_no=6, max_rounds=5)
    # then the run ends on the round limit
    assert step == End(reason=EndReason.MAX_ROUNDS)


def test_accept_on_the_closing_turn_is_still_a_deal():
    # given the closing turn
    accept = BuyerAction(action=BuyerAct.ACCEPT, seller="@CableHouse", price=Decimal("7.00"))
    # when the buyer accepts
    step = after_buyer(accept, recipients=(), round_no=6, max_rounds=5)
    # then it is a deal
    assert step == End(reason=EndReason.ACCEPTED, seller="@CableHouse", price=Decimal("7.00"))


def test_a_message_with_nobody_left_to_answer_ends_the_run():
    # given no seller left to route to
    # when the buyer sends a message
    step = after_buyer(BuyerAction(action=BuyerAct.MESSAGE), recipients=(), round_no=2, max_rounds=5)
    # then the run ends as all declined rather than waiting on nobody
    assert step == End(reason=EndReason.ALL_DECLINED)


def test_after_sellers_ends_only_when_every_seller_declined():
    # given the sellers' replies
    # then the run ends when nobody is left, and otherwise the next round follows
    assert after_sellers(active_after=()) == End(reason=EndReason.ALL_DECLINED)
    assert after_sellers(active_after=("@QuickTech",)) is None


def test_closing_turn_is_the_round_after_the_last():
    # given max_rounds = 5
    # then rounds 1..5 negotiate and round 6 is the closing decision turn
    assert [is_closing_turn(round_no, 5) for round_no in range(1, 7)] == [False] * 5 + [True]


# --- the hidden-deadline rules (core-v2) -----------------------------------------------------------

def test_hidden_last_round_is_drawn_in_range_from_the_seed_and_the_key():
    from collections import Counter

    from negotiation.engine.protocol import Rules, earliest_end, last_round
    # given 2,000 seeds of a 5-round run under hidden rules
    drawn = [last_round(rules=Rules.HIDDEN, seed=s, max_rounds=5, key="k") for s in range(2000)]
    # then every last round lies in [earliest_end, max_rounds], and both ends occur about equally
    assert earliest_end(5) == 4
    counts = Counter(drawn)
    assert set(counts) == {4, 5}
    assert 900 < counts[4] < 1100
    # and the same seed and key give the same round (runs pair), another key another sequence
    assert drawn == [last_round(rules=Rules.HIDDEN, seed=s, max_rounds=5, key="k") for s in range(2000)]
    assert drawn != [last_round(rules=Rules.HIDDEN, seed=s, max_rounds=5, key="other") for s in range(2000)]
    # and under known rules the last round is max_rounds whatever the seed
    assert {last_round(rules=Rules.KNOWN, seed=s, max_rounds=5) for s in range(50)} == {5}


def test_earliest_end_leaves_a_quarter_of_the_run_uncertain():
    from negotiation.engine.protocol import earliest_end
    assert [earliest_end(n) for n in (1, 2, 3, 4, 5, 8, 10, 20)] == [1, 1, 2, 3, 4, 6, 8, 15]


def test_seller_deadline_never_reaches_the_floor_under_hidden_rules():
    from negotiation.engine.protocol import Rules, seller_deadline
    # known: T = max_rounds - 1, the floor at the last reply (t = max_rounds - 1); hidden: T = max_rounds
    assert seller_deadline(rules=Rules.KNOWN, max_rounds=5) == 4
    assert seller_deadline(rules=Rules.HIDDEN, max_rounds=5) == 5
    assert seller_deadline(rules=Rules.KNOWN, max_rounds=1) == 1


def _reply(handle: str, action: str, price: str | None) -> Msg:
    return Msg(round_no=4, sender=handle, recipients=("buyer",), text="", action=action,
               price=Decimal(price) if price else None)


def test_hidden_rules_a_seller_accept_is_the_deal_at_the_lowest_accepted_price():
    from negotiation.engine.protocol import Rules
    replies = [_reply("@A", "offer", "9.00"), _reply("@B", "accept", "8.00"), _reply("@C", "accept", "8.00")]
    # given two sellers accepting the buyer's counter at the same price in round 2 of 5
    end = after_sellers(active_after=["@A", "@B", "@C"], rules=Rules.HIDDEN, round_no=2, last=5, replies=replies)
    # then it is a deal with the first of them in room order, at that price
    assert end == End(reason=EndReason.ACCEPTED, seller="@B", price=Decimal("8.00"))
    # and under known rules the same replies do not end the run (the buyer accepts next round)
    assert after_sellers(active_after=["@A", "@B", "@C"], replies=replies) is None


def test_hidden_rules_end_on_the_drawn_round_without_a_closing_turn():
    from negotiation.engine.protocol import Rules
    offers = [_reply("@A", "offer", "9.00")]
    assert after_sellers(active_after=["@A"], rules=Rules.HIDDEN, round_no=3, last=4, replies=offers) is None
    assert after_sellers(active_after=["@A"], rules=Rules.HIDDEN, round_no=4, last=4,
                         replies=offers) == End(reason=EndReason.MAX_ROUNDS)
    assert after_sellers(active_after=[], rules=Rules.HIDDEN, round_no=1, last=4,
                         replies=[_reply("@A", "decline", None)]) == End(reason=EndReason.ALL_DECLINED)

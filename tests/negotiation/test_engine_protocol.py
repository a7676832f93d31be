"""Tests for negotiation/engine/protocol.py: when a run continues and why it ends. No database."""

from __future__ import annotations

from decimal import Decimal

from negotiation.engine.protocol import Continue, End, after_buyer, after_sellers, is_closing_turn
from negotiation.engine.types import ALL, BuyerAct, BuyerAction, EndReason

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

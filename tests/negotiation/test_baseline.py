"""Tests for negotiation/agents/baseline.py: the time-dependent concession agents. No database, no LLM.

Whole games go through tests/negotiation/selfplay.py, which takes the seller deadline and the last
round from engine/protocol.py, as production does, so the property tests play production's curves.
"""

from __future__ import annotations

from decimal import Decimal

import pytest
from hypothesis import given, settings
from hypothesis import strategies as st

from negotiation.agents.baseline import Strategy, baseline_buyer, baseline_seller, concession
from negotiation.engine.audit import claim_inconsistent, find_leaks
from negotiation.engine.protocol import Rules, earliest_end
from negotiation.engine.types import (
    ALL,
    BUYER,
    BuyerAct,
    BuyerPrivate,
    BuyerView,
    EndReason,
    Msg,
    SellerAct,
    SellerPrivate,
    SellerView,
    money,
)
from negotiation.engine.visibility import buyer_view
from tests.negotiation.selfplay import play

ITEM = "USB-C Cable"


def seller(handle: str = "@QuickTech", *, style: str = "neutral", cost: str = "4.00", least: str = "6.00",
           selling: str = "9.00") -> SellerPrivate:
    return SellerPrivate(handle=handle, style=style, retention_weight=Decimal("0.5"),
                         profit_weight=Decimal("0.5"), cost_price=money(cost), least_price=money(least),
                         selling_price=money(selling))


BUYER_ME = BuyerPrivate(item_name=ITEM, quantity=3, min_price=money("6.00"), max_price=money("8.00"))


def sview(me: SellerPrivate, round_no: int, thread: list[Msg]) -> SellerView:
    return SellerView(me=me, item_name=ITEM, quantity=3, round_no=round_no, thread=tuple(thread))


def bview(round_no: int, offers: dict[str, Decimal], max_rounds: int = 5) -> BuyerView:
    return BuyerView(me=BUYER_ME, handles=("@QuickTech", "@CableHouse"), round_no=round_no,
                     max_rounds=max_rounds, thread=(), standing_offers=offers)


def counter_msg(round_no: int, price: str) -> Msg:
    return Msg(round_no=round_no, sender=BUYER, recipients=("@QuickTech",), text="?", action="message",
               price=money(price))


def own_offer(round_no: int, price: str) -> Msg:
    return Msg(round_no=round_no, sender="@QuickTech", recipients=(BUYER,), text="!", action="offer",
               price=money(price))


# --- concession ----------------------------------------------------------------------------------

@pytest.mark.parametrize("strategy", list(Strategy))
def test_concession_starts_at_start_and_ends_at_end(strategy):
    # given any strategy from $9.00 toward $6.00 over 5 rounds
    def at(t: int) -> Decimal:
        return concession(t=t, deadline=5, beta=strategy.beta, start=money(9), end=money(6))
    # then t=0 gives the start, t=deadline (and later) the end
    assert at(0) == money(9)
    assert at(5) == money(6)
    assert at(9) == money(6)
    # and it moves one way only
    prices = [at(t) for t in range(6)]
    assert prices == sorted(prices, reverse=True)


def test_strategy_betas_and_shapes():
    # given the three classic strategies
    # then their betas are Faratin's, and at mid-time Boulware has conceded least, Conceder most
    assert (Strategy.BOULWARE.beta, Strategy.LINEAR.beta, Strategy.CONCEDER.beta) == (0.3, 1.0, 3.0)
    mid = {s: concession(t=2, deadline=4, beta=s.beta, start=money(10), end=money(0)) for s in Strategy}
    assert mid[Strategy.LINEAR] == money(5)
    assert mid[Strategy.BOULWARE] > mid[Strategy.LINEAR] > mid[Strategy.CONCEDER]


def test_concession_with_no_time_left_is_at_the_end():
    # given a zero deadline
    # then the agent is at its reservation value at once
    assert concession(t=0, deadline=0, beta=1.0, start=money(9), end=money(6)) == money(6)


def test_strategy_is_found_by_value_in_any_case():
    # given configurations that spell strategies either way
    # then both name the same member
    assert Strategy("LINEAR") is Strategy("linear") is Strategy.LINEAR


# --- seller --------------------------------------------------------------------------------------

def test_seller_opens_at_its_asking_price():
    # given round 1 and no counter
    # when the baseline seller acts
    action = baseline_seller(sview(seller(), 1, []), strategy=Strategy.LINEAR, deadline=5)
    # then it offers its selling price and says so
    assert (action.action, action.price) == (SellerAct.OFFER, money("9.00"))
    assert action.message == "I can do $9.00 each."


def test_seller_concedes_toward_its_floor_by_the_deadline():
    # given round 6 with deadline 5 (t = 5) and a previous offer
    # when the linear seller acts
    action = baseline_seller(sview(seller(), 6, [own_offer(5, "6.60")]), strategy=Strategy.LINEAR, deadline=5)
    # then it is at its floor
    assert (action.action, action.price) == (SellerAct.OFFER, money("6.00"))


def test_seller_accepts_a_counter_that_meets_its_target():
    # given round 3 (linear target 9 - 3 * 2/5 = 7.80) and a counter of $8.00
    thread = [counter_msg(1, "7.00"), own_offer(1, "9.00"), counter_msg(3, "8.00")]
    # when the seller acts
    action = baseline_seller(sview(seller(), 3, thread), strategy=Strategy.LINEAR, deadline=5)
    # then it accepts at the counter
    assert (action.action, action.price) == (SellerAct.ACCEPT, money("8.00"))
    assert "$8.00" in action.message


def test_seller_counters_below_its_target_are_answered_with_the_target():
    # given round 3 (target $7.80) and a counter of $7.00
    thread = [own_offer(1, "9.00"), counter_msg(3, "7.00")]
    # when the seller acts
    action = baseline_seller(sview(seller(), 3, thread), strategy=Strategy.LINEAR, deadline=5)
    # then it offers its target
    assert (action.action, action.price) == (SellerAct.OFFER, money("7.80"))


def test_seller_offers_never_rise():
    # given a previous offer of $7.00, under this round's target
    # when the seller acts
    view = sview(seller(), 2, [own_offer(1, "7.00")])
    action = baseline_seller(view, strategy=Strategy.BOULWARE, deadline=5)
    # then it repeats $7.00
    assert action.price == money("7.00")


@pytest.mark.parametrize(("style", "phrase"), [("rude", "Take it or leave it"), ("neutral", "I can do"),
                                               ("sweet", "Thank you"), ("unknown", "I can do")])
def test_seller_text_follows_its_style(style, phrase):
    # given a seller of each style
    # when it opens
    action = baseline_seller(sview(seller(style=style), 1, []), strategy=Strategy.LINEAR, deadline=5)
    # then the tone follows the style and the only price stated is the offer
    assert phrase in action.message
    assert not claim_inconsistent(text=action.message, price=action.price)


# --- buyer ---------------------------------------------------------------------------------------

def test_buyer_opens_with_its_minimum_to_everyone():
    # given round 1 and no offers
    # when the baseline buyer acts
    action = baseline_buyer(bview(1, {}), strategy=Strategy.LINEAR)
    # then it asks everyone for its minimum price
    assert (action.action, action.to, action.price) == (BuyerAct.MESSAGE, (ALL,), money("6.00"))
    assert action.message == "I need 3 USB-C Cable. Can you do $6.00 each?"


def test_buyer_accepts_the_best_offer_once_it_meets_the_target():
    # given round 3 (linear target 6 + 2 * 2/5 = 6.80) and offers of $6.70 and $7.50
    offers = {"@QuickTech": money("7.50"), "@CableHouse": money("6.70")}
    # when the buyer acts
    action = baseline_buyer(bview(3, offers), strategy=Strategy.LINEAR)
    # then it accepts the cheaper seller at its offer
    assert (action.action, action.seller, action.price) == (BuyerAct.ACCEPT, "@CableHouse", money("6.70"))


def test_buyer_counters_at_its_target_while_offers_are_too_high():
    # given round 3 (target $6.80) and an offer of $7.50
    # when the buyer acts
    action = baseline_buyer(bview(3, {"@QuickTech": money("7.50")}), strategy=Strategy.LINEAR)
    # then it counters at $6.80 to everyone
    assert (action.action, action.to, action.price) == (BuyerAct.MESSAGE, (ALL,), money("6.80"))
    assert "$6.80" in action.message


def test_buyer_ties_go_to_the_first_listed_seller():
    # given two equal offers that meet the target
    offers = {"@CableHouse": money("6.00"), "@QuickTech": money("6.00")}
    # when the buyer acts
    action = baseline_buyer(bview(1, offers), strategy=Strategy.LINEAR)
    # then the seller listed first among the handles wins
    assert action.seller == "@QuickTech"


def test_buyer_closing_turn_accepts_the_best_offer_within_budget():
    # given the closing turn and offers of $7.90 and $8.50, max $8.00
    offers = {"@QuickTech": money("8.50"), "@CableHouse": money("7.90")}
    # when the buyer acts
    action = baseline_buyer(bview(6, offers), strategy=Strategy.BOULWARE)
    # then it takes $7.90
    assert (action.action, action.seller, action.price) == (BuyerAct.ACCEPT, "@CableHouse", money("7.90"))


def test_buyer_closing_turn_walks_away_when_nothing_fits_the_budget():
    # given the closing turn and only offers above max
    # when the buyer acts
    # then it walks away, with or without offers
    assert baseline_buyer(bview(6, {"@QuickTech": money("8.50")}), strategy=Strategy.LINEAR).action == \
        BuyerAct.WALK_AWAY
    assert baseline_buyer(bview(6, {}), strategy=Strategy.LINEAR).action == BuyerAct.WALK_AWAY


def test_buyer_never_states_its_max_unless_it_is_the_counter():
    # given every negotiation round
    for round_no in range(1, 6):
        # when the buyer counters
        action = baseline_buyer(bview(round_no, {"@QuickTech": money("9.00")}), strategy=Strategy.CONCEDER)
        # then its text leaks nothing beyond its own counter
        assert find_leaks(text=action.message, hidden={"max_price": BUYER_ME.max_price},
                          public_price=action.price, actor=BUYER) == []


# --- whole games through the engine ----------------------------------------------------------

_money = st.integers(100, 5_000).map(lambda cents: money(Decimal(cents) / 100))


@st.composite
def markets(draw: st.DrawFn) -> tuple[list[SellerPrivate], BuyerPrivate]:
    sellers = []
    for index in range(draw(st.integers(2, 10))):
        cost = draw(_money)
        least = cost + draw(_money)
        selling = least + draw(st.integers(0, 3_000).map(lambda cents: money(Decimal(cents) / 100)))
        sellers.append(seller(f"@Seller{index}", style=draw(st.sampled_from(["rude", "neutral", "sweet"])),
                              cost=str(cost), least=str(least), selling=str(selling)))
    low = draw(_money)
    buyer = BuyerPrivate(item_name=ITEM, quantity=draw(st.integers(1, 50)), min_price=low,
                         max_price=low + draw(_money))
    return sellers, buyer


@settings(max_examples=100, deadline=None, database=None)
@given(market=markets(), max_rounds=st.integers(1, 8), buyer_strategy=st.sampled_from(list(Strategy)),
       seller_strategy=st.sampled_from(list(Strategy)), seed=st.none() | st.integers(0, 2**31 - 1))
def test_baseline_games_keep_every_rule_without_a_single_repair(market, max_rounds, buyer_strategy,
                                                                seller_strategy, seed):
    # given a random market, baseline agents on both sides (nominal curves, or drawn from a seed), and
    # the known rules, with production's seller deadline (selfplay uses protocol.seller_deadline)
    sellers, buyer = market
    # when a whole negotiation is played through the engine
    game = play(sellers, buyer, max_rounds=max_rounds, buyer_strategy=buyer_strategy,
                seller_strategy=seller_strategy, rules=Rules.KNOWN, seed=seed)
    end, transcript = game.end, game.transcript
    # then the baselines needed no guardrail repair and leaked nothing
    assert game.events == []
    # and the run ended for a protocol reason within max_rounds + 1 buyer turns
    assert end.reason in (EndReason.ACCEPTED, EndReason.WALKED_AWAY)
    assert max(msg.round_no for msg in transcript) <= max_rounds + 1
    # and a deal is within the buyer's budget and above the chosen seller's floor
    if end.reason == EndReason.ACCEPTED:
        chosen = next(me for me in sellers if me.handle == end.seller)
        assert chosen.least_price <= end.price <= buyer.max_price
        # at the price that seller last offered or accepted
        assert end.price == [msg.price for msg in transcript if msg.sender == end.seller][-1]
    # and the buyer walks away only on its closing turn, with no offer within its budget
    else:
        assert transcript[-1].round_no == max_rounds + 1
        final = buyer_view(me=buyer, handles=[me.handle for me in sellers], round_no=max_rounds + 1,
                           max_rounds=max_rounds, transcript=transcript)
        assert all(price > buyer.max_price for price in final.standing_offers.values())


@settings(max_examples=100, deadline=None, database=None)
@given(market=markets(), max_rounds=st.integers(1, 8), buyer_strategy=st.sampled_from(list(Strategy)),
       seller_strategy=st.sampled_from(list(Strategy)), seed=st.integers(0, 2**31 - 1))
def test_hidden_rules_games_end_by_the_drawn_round_and_no_seller_reaches_its_floor_on_time(
        market, max_rounds, buyer_strategy, seller_strategy, seed):
    # given a random market, seeded baseline agents and the hidden rules
    sellers, buyer = market
    # when a whole negotiation is played
    game = play(sellers, buyer, max_rounds=max_rounds, buyer_strategy=buyer_strategy,
                seller_strategy=seller_strategy, rules=Rules.HIDDEN, seed=seed)
    end, transcript = game.end, game.transcript
    # then no rule was broken and nothing leaked
    assert game.events == []
    # and nothing was said after the drawn last round, which lies in [earliest_end, max_rounds]
    assert earliest_end(max_rounds) <= game.last_round <= max_rounds
    assert max(msg.round_no for msg in transcript) <= game.last_round
    if end.reason == EndReason.MAX_ROUNDS:
        assert transcript[-1].round_no == game.last_round
    # and no seller's own offer ever sat on its floor (a floor is reached only through an accepted counter),
    # unless its ask is its floor
    floors = {me.handle: me for me in sellers}
    for msg in transcript:
        if msg.sender != BUYER and msg.action == SellerAct.OFFER:
            me = floors[msg.sender]
            assert msg.price > me.least_price or me.selling_price - me.least_price < Decimal("0.05")
    # and a deal is within the budget and above the chosen floor
    if end.reason == EndReason.ACCEPTED:
        chosen = floors[end.seller]
        assert chosen.least_price <= end.price <= buyer.max_price


# --- per-run tactics (seeds mean something) ----------------------------------------------------------

@pytest.mark.parametrize("name", ["boulware", "linear", "conceder"])
def test_a_seeded_tactic_stays_in_its_documented_band_and_replays(name):
    from negotiation.agents.baseline import BETA_SPREAD, OPENING_BAND, tactic
    strategy = Strategy(name)
    # given 500 runs' draws for one seat
    draws = [tactic(name, seed=seed, slot=1) for seed in range(500)]
    # then beta lies in nominal x 2**[-0.5, 0.5] and the opening in [0, 10%], and they vary
    assert all(strategy.beta * 2 ** -BETA_SPREAD - 1e-3 <= d.beta <= strategy.beta * 2 ** BETA_SPREAD + 1e-3
               for d in draws)
    assert all(0 <= d.opening <= OPENING_BAND for d in draws)
    assert len({d.beta for d in draws}) > 400
    # and the same seed and seat draw the same tactic (two batches on the same seeds pair exactly)
    assert draws == [tactic(name, seed=seed, slot=1) for seed in range(500)]
    # and another seat of the same run draws its own
    assert tactic(name, seed=7, slot=1) != tactic(name, seed=7, slot=2)


def test_the_three_beta_bands_never_overlap():
    from negotiation.agents.baseline import BETA_SPREAD
    bands = sorted((s.beta * 2 ** -BETA_SPREAD, s.beta * 2 ** BETA_SPREAD) for s in Strategy)
    assert all(high < next_low for (_, high), (next_low, _) in zip(bands, bands[1:], strict=False))


def test_fixed_names_and_no_seed_play_the_nominal_curve():
    from negotiation.agents.baseline import tactic
    assert tactic("boulware-fixed", seed=123, slot=1) == tactic("boulware") == tactic("boulware", seed=None)
    assert tactic("boulware-fixed", seed=123, slot=1).beta == 0.3
    assert tactic("boulware-fixed", seed=123, slot=1).opening == 0


def test_seeded_baseline_runs_differ_and_pair():
    # given the same market played by seeded linear agents on 20 seeds, twice
    market = [seller("@A"), seller("@B", least="6.50", selling="9.50")]
    prices = [play(market, BUYER_ME, max_rounds=5, buyer_strategy="linear", seller_strategy="linear",
                   seed=s).end.price for s in range(20)]
    again = [play(market, BUYER_ME, max_rounds=5, buyer_strategy="linear", seller_strategy="linear",
                  seed=s).end.price for s in range(20)]
    # then the outcomes differ between seeds, and replay exactly on the same seeds
    assert len(set(prices)) > 3
    assert prices == again
    # while the -fixed names give one outcome on every seed
    fixed = {play(market, BUYER_ME, max_rounds=5, buyer_strategy="linear-fixed", seller_strategy="linear-fixed",
                  seed=s).end.price for s in range(20)}
    assert len(fixed) == 1

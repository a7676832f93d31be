"""Tests for negotiation/agents/prompts.py: a prompt holds nothing its agent may not know. No database.

The property test plays random negotiations (2-5 sellers, random addressing, offers, accepts and
declines) in which every private number has unusual cents (13.37-style) while every price and text
said aloud uses only .00/.25/.50/.75, so a private number can reach a prompt only by a leak. Views
are built through negotiation/engine/visibility.py from the transcript, as the play service does.
"""

from __future__ import annotations

import re
import string
from dataclasses import dataclass
from decimal import Decimal

from hypothesis import given, settings
from hypothesis import strategies as st

from negotiation.agents import prompts
from negotiation.engine.types import BUYER, BuyerPrivate, Msg, SellerPrivate, money
from negotiation.engine.visibility import active_sellers, buyer_view, seller_view

NAMES = ("@QuickTech", "@CableHouse", "@BudgetWires", "@VoltVault", "@WireWorks", "@PlugPoint")
PRIVATE_CENTS = (13, 29, 37, 41, 59, 67, 83, 91)  # never the last digit 0, so 13.30 cannot print as 13.3
SPOKEN_CENTS = (0, 25, 50, 75)  # every price said aloud, and every price in the few-shot examples


def amount(cents: tuple[int, ...]) -> st.SearchStrategy[Decimal]:
    return st.builds(lambda dollars, c: money(f"{dollars}.{c:02d}"), st.integers(1, 999), st.sampled_from(cents))


spoken_price = amount(SPOKEN_CENTS)
# Words without digits, and spoken prices: a text can state a price, never a private number.
word = st.text(alphabet=string.ascii_letters + ",.!?'@-", min_size=1, max_size=10)
spoken = st.lists(st.one_of(word, spoken_price.map(lambda p: f"${p}")), max_size=12).map(" ".join)


@dataclass(frozen=True)
class Game:
    buyer: BuyerPrivate
    sellers: tuple[SellerPrivate, ...]
    transcript: tuple[Msg, ...]
    round_no: int
    max_rounds: int


@st.composite
def games(draw: st.DrawFn) -> Game:
    n = draw(st.integers(2, 5))
    handles = draw(st.lists(st.sampled_from(NAMES), min_size=n, max_size=n, unique=True))
    # 3 numbers per seller and 2 for the buyer, all different, so each number belongs to one agent
    numbers = draw(st.lists(amount(PRIVATE_CENTS), min_size=3 * n + 2, max_size=3 * n + 2, unique=True))
    sellers = []
    for i, handle in enumerate(handles):
        cost, least, selling = sorted(numbers[3 * i:3 * i + 3])
        retention = Decimal(draw(st.integers(0, 100))) / 100
        sellers.append(SellerPrivate(handle=handle, style=draw(st.sampled_from(["rude", "neutral", "sweet"])),
                                     retention_weight=retention, profit_weight=1 - retention, cost_price=cost,
                                     least_price=least, selling_price=selling))
    low, high = sorted(numbers[-2:])
    item = draw(st.text(alphabet=string.ascii_letters + " -", min_size=1, max_size=20))
    buyer = BuyerPrivate(item_name=item, quantity=draw(st.integers(1, 50)), min_price=low, max_price=high)

    transcript: list[Msg] = []
    rounds = draw(st.integers(0, 4))
    for round_no in range(1, rounds + 1):
        active = active_sellers(handles=handles, transcript=transcript)
        if not active:
            break
        recipients = tuple(draw(st.lists(st.sampled_from(active), min_size=1, max_size=len(active), unique=True)))
        counter = draw(st.none() | spoken_price)
        transcript.append(Msg(round_no, BUYER, recipients, draw(spoken), "message", counter))
        for handle in recipients:
            act = draw(st.sampled_from(["offer", "offer", "accept", "decline"]))
            price = None if act == "decline" else (counter if act == "accept" and counter else draw(spoken_price))
            transcript.append(Msg(round_no, handle, (BUYER,), draw(spoken), act, price))
    round_no = rounds + 1
    max_rounds = draw(st.integers(max(1, rounds), rounds + 3))  # sometimes the closing turn
    return Game(buyer=buyer, sellers=tuple(sellers), transcript=tuple(transcript), round_no=round_no,
                max_rounds=max_rounds)


def says(text: str, number: Decimal) -> bool:
    """Whether `text` states `number` as the prompts print prices ("13.37", not inside "113.37")."""
    return re.search(rf"(?<![\d.]){re.escape(f'{number:.2f}')}(?!\d)", text) is not None


def chat_text(chat: list[dict[str, str]]) -> str:
    return "\n".join(message["content"] for message in chat)


def private(seller: SellerPrivate) -> tuple[Decimal, ...]:
    return seller.cost_price, seller.least_price, seller.selling_price


@settings(max_examples=150, deadline=None)
@given(game=games())
def test_no_prompt_holds_another_agents_private_numbers(game: Game) -> None:
    # given a random negotiation so far, with distinctive private numbers
    buyer_numbers = (game.buyer.min_price, game.buyer.max_price)
    for me in game.sellers:
        # when each seller's prompts are rendered from its view
        view = seller_view(me=me, item_name=game.buyer.item_name, quantity=game.buyer.quantity,
                           round_no=game.round_no, transcript=game.transcript)
        chat, completion = chat_text(prompts.seller_chat(view)), prompts.seller_completion(view)
        # then neither states a rival's cost, floor or ask, nor the buyer's budget
        forbidden = [n for rival in game.sellers if rival is not me for n in private(rival)] + list(buyer_numbers)
        for text in (chat, completion):
            assert not [n for n in forbidden if says(text, n)]
        # and the check can see numbers: the seller's own floor and ask are there, its cost in the chat
        assert says(chat, me.cost_price) and says(chat, me.least_price) and says(chat, me.selling_price)
        assert says(completion, me.least_price) and says(completion, me.selling_price)

    # when the buyer's prompts are rendered from its view
    active = active_sellers(handles=[s.handle for s in game.sellers], transcript=game.transcript)
    view = buyer_view(me=game.buyer, handles=active, round_no=game.round_no, max_rounds=game.max_rounds,
                      transcript=game.transcript)
    chat, completion = chat_text(prompts.buyer_chat(view)), prompts.buyer_completion(view)
    # then neither states any seller's cost or floor (nor its ask: in these games no seller says it)
    forbidden = [n for seller in game.sellers for n in private(seller)]
    for text in (chat, completion):
        assert not [n for n in forbidden if says(text, n)]
        assert says(text, game.buyer.min_price) and says(text, game.buyer.max_price)


def test_says_matches_whole_prices_only() -> None:
    # given the checker used above
    # then it finds a price where it stands alone, and not inside a longer number
    assert says("floor $13.37 today", Decimal("13.37"))
    assert says('{"price": 13.37}', Decimal("13.37"))
    assert not says("ask $113.37", Decimal("13.37")) and not says("13.375", Decimal("13.37"))


def test_prompt_version_is_twelve_hex_characters() -> None:
    # given the templates' hash
    # then it is a 12-character lower-case hex string, as stored on each run
    assert re.fullmatch(r"[0-9a-f]{12}", prompts.PROMPT_VERSION)


def test_completion_prompts_end_where_the_models_json_begins() -> None:
    # given a seller and the buyer before any message
    me = SellerPrivate(handle="@QuickTech", style="sweet", retention_weight=Decimal("0.5"),
                       profit_weight=Decimal("0.5"), cost_price=money("4.13"), least_price=money("6.37"),
                       selling_price=money("9.91"))
    buyer = BuyerPrivate(item_name="USB-C Cable", quantity=3, min_price=money("5.29"), max_price=money("8.83"))
    # when their completion prompts are rendered
    seller_prompt = prompts.seller_completion(seller_view(me=me, item_name="USB-C Cable", quantity=3, round_no=1,
                                                          transcript=[]))
    buyer_prompt = prompts.buyer_completion(buyer_view(me=buyer, handles=["@QuickTech"], round_no=1, max_rounds=3,
                                                       transcript=[]))
    # then each ends with its speaker and the primer, and a base model never sees the seller's cost
    assert seller_prompt.endswith(f"@QuickTech: {prompts.PRIMER}")
    assert buyer_prompt.endswith(f"Buyer: {prompts.PRIMER}")
    assert not says(seller_prompt, me.cost_price)

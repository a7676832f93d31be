"""Tests for negotiation/agents/outputs.py: turning a model's text into a seller or buyer action.

Models wrap their JSON in prose or code fences, write `"price": $6.50`, capitalise actions and stop
mid-object. What can be read safely is read; everything else raises `OutputError` with a reason
the repair prompt can quote. No database, no LLM.
"""

from __future__ import annotations

import json
from decimal import Decimal

import pytest
from hypothesis import given, settings
from hypothesis import strategies as st

from negotiation.agents.outputs import OutputError, extract_json, parse_buyer, parse_seller
from negotiation.engine.types import ALL, BuyerAct, SellerAct

# --- extract_json ----------------------------------------------------------------------------------

@pytest.mark.parametrize("text", [
    '{"action": "offer", "price": 8.5}',
    'Sure! Here is my answer: {"action": "offer", "price": 8.5} Hope that helps.',
    '```json\n{"action": "offer", "price": 8.5}\n```',
    '```\n{"action": "offer", "price": 8.5}\n```\nLet me know.',
    '\n\n  {"action": "offer", "price": 8.5}  \n',
])
def test_the_object_is_found_inside_prose_and_code_fences(text: str) -> None:
    # given a JSON object with text or fences around it
    # when it is extracted
    # then exactly the object comes back
    assert extract_json(text) == {"action": "offer", "price": 8.5}


def test_braces_and_escaped_quotes_inside_strings_do_not_end_the_object() -> None:
    # given a message that contains braces and an escaped quote
    text = r'{"action": "offer", "price": 7, "message": "use {code} and \"quotes\" }"} trailing }'
    # when it is extracted
    value = extract_json(text)
    # then the string is whole and the object ends at its real closing brace
    assert value["message"] == 'use {code} and "quotes" }'


def test_nested_objects_are_kept() -> None:
    # given an object with a nested object holding a brace in a string
    text = 'x {"meta": {"note": "}"}, "action": "decline"} y'
    # when it is extracted
    # then the nesting is respected
    assert extract_json(text) == {"meta": {"note": "}"}, "action": "decline"}


def test_only_the_first_object_is_taken() -> None:
    # given two objects one after another
    # when the text is extracted
    # then the first wins
    assert extract_json('{"action": "offer", "price": 7} {"action": "decline"}')["action"] == "offer"


@pytest.mark.parametrize(("text", "reason"), [
    ("I would offer seven dollars.", "no JSON object"),
    ('{"action": "offer", "price": 7, "message": "I can do', "incomplete"),
    ('{"action": "offer", "price": 7', "incomplete"),
    ('{"action": "offer", "price": 7,}', "invalid JSON"),
    ("{'action': 'offer', 'price': 7}", "invalid JSON"),
])
def test_unusable_text_raises_output_error_saying_why(text: str, reason: str) -> None:
    # given text with no JSON, a truncated object, or not-quite-JSON
    # when it is extracted
    with pytest.raises(OutputError) as err:
        extract_json(text)
    # then the error says what was wrong
    assert reason in str(err.value)


def test_a_dollar_sign_before_a_bare_price_is_dropped() -> None:
    # given the small-model habit of writing "price": $6.50
    # when it is extracted
    # then the price is a number
    assert extract_json('{"action": "offer", "price": $6.50}')["price"] == 6.5
    assert extract_json('{"action": "offer", "price": $ 6.50}')["price"] == 6.5


def test_a_dollar_sign_inside_a_message_is_left_alone() -> None:
    # given a message quoting a price with a dollar sign
    value = extract_json('{"action": "offer", "price": 7, "message": "was $9.00, now $7.00"}')
    # then the message is unchanged
    assert value["message"] == "was $9.00, now $7.00"


# --- parse_seller ----------------------------------------------------------------------------------

def test_a_plain_seller_offer_is_parsed_with_cents() -> None:
    # given a well-formed offer
    action = parse_seller('{"action": "offer", "price": 8.5, "message": "Best I can do.", "reasoning": "hold"}')
    # then every field is read, and the price is money with two places
    assert action.action == SellerAct.OFFER and action.price == Decimal("8.50")
    assert action.message == "Best I can do." and action.reasoning == "hold"


@pytest.mark.parametrize(("raw", "price"), [
    ('"price": $6.50', Decimal("6.50")),
    ('"price": "$6.50"', Decimal("6.50")),
    ('"price": "6.50 USD"', Decimal("6.50")),
    ('"price": "$1,250.00"', Decimal("1250.00")),
    ('"price": 7.005', Decimal("7.01")),  # rounded half up to cents, like the columns
    ('"price": 7', Decimal("7.00")),
])
def test_common_price_spellings_are_coerced(raw: str, price: Decimal) -> None:
    # given an offer whose price is written in one of the usual ways
    # when it is parsed
    action = parse_seller('{"action": "offer", ' + raw + ', "message": "ok"}')
    # then the price is that amount
    assert action.price == price


@pytest.mark.parametrize(("word", "act"), [("Accept", SellerAct.ACCEPT), (" OFFER ", SellerAct.OFFER),
                                           ("decline", SellerAct.DECLINE)])
def test_seller_actions_are_case_and_space_insensitive(word: str, act: SellerAct) -> None:
    # given an action spelled with capitals or spaces
    # when it is parsed
    action = parse_seller(json.dumps({"action": word, "price": 7}))
    # then it is the action meant
    assert action.action == act


def test_an_accept_or_decline_needs_no_price() -> None:
    # given a seller accepting the buyer's counter, or leaving, without a price
    # then both are valid, with no price
    assert parse_seller('{"action": "accept"}').price is None
    assert parse_seller('{"action": "decline", "message": "No."}').action == SellerAct.DECLINE


@pytest.mark.parametrize(("text", "reason"), [
    ('{"price": 7, "message": "hi"}', "action"),  # missing action
    ('{"action": "counter", "price": 7}', "action"),  # not a seller action
    ('{"action": "message", "price": 7}', "action"),  # the buyer's action
    ('{"action": 7, "price": 7}', "action"),
    ('{"action": "offer", "message": "hi"}', "an offer needs a price"),
    ('{"action": "offer", "price": null}', "an offer needs a price"),
    ('{"action": "offer", "price": ""}', "an offer needs a price"),
    ('{"action": "offer", "price": -5}', "price"),
    ('{"action": "offer", "price": 1e12}', "price"),  # absurd
    ('{"action": "offer", "price": 100000000.01}', "price"),
    ('{"action": "offer", "price": NaN}', "price"),
    ('{"action": "offer", "price": Infinity}', "price"),
    ('{"action": "offer", "price": true}', "price"),
    ('{"action": "offer", "price": "seven"}', "price"),
    ('{"action": "offer", "price": [7]}', "price"),
    ('{"action": "offer", "price": {"amount": 7}}', "price"),
    ('{"action": "offer", "price": 7, "message": "' + "x" * 4001 + '"}', "message"),
    ('{"action": "offer", "price": 7, "message": "cut', "incomplete"),
    ("Sorry, I cannot help with that.", "no JSON object"),
])
def test_unusable_seller_outputs_raise_output_error_naming_the_problem(text: str, reason: str) -> None:
    # given a seller output that cannot be trusted
    # when it is parsed
    with pytest.raises(OutputError) as err:
        parse_seller(text)
    # then the error names the field or the rule
    assert reason in str(err.value)


def test_non_string_message_and_reasoning_become_text() -> None:
    # given a model that writes a number as its message and null as its reasoning
    action = parse_seller('{"action": "offer", "price": 7, "message": 5, "reasoning": null}')
    # then both are strings
    assert action.message == "5" and action.reasoning == ""


def test_unknown_fields_are_ignored() -> None:
    # given an output with extra fields
    action = parse_seller('{"action": "offer", "price": 7, "confidence": 0.9, "mood": "happy"}')
    # then the action is still read
    assert action.action == SellerAct.OFFER and action.price == Decimal("7.00")


# --- parse_buyer -----------------------------------------------------------------------------------

def test_a_buyer_counter_to_everyone_is_parsed() -> None:
    # given a counter-offer with no "to"
    action = parse_buyer('{"action": "message", "price": 5.5, "message": "Can you do $5.50?"}')
    # then it goes to all, with the counter as its price
    assert action.action == BuyerAct.MESSAGE and action.to == (ALL,) and action.price == Decimal("5.50")


@pytest.mark.parametrize(("to", "expected"), [
    ('"@QuickTech"', ("@QuickTech",)),
    ('["@QuickTech", "@CableHouse"]', ("@QuickTech", "@CableHouse")),
    ("null", (ALL,)),
    ('""', (ALL,)),
    ("[]", (ALL,)),
])
def test_buyer_recipients_are_normalised_to_a_tuple(to: str, expected: tuple[str, ...]) -> None:
    # given a "to" written as a string, a list, null, empty
    # when it is parsed
    action = parse_buyer('{"action": "message", "price": 5, "to": ' + to + "}")
    # then the recipients are a tuple, "all" when none is named
    assert action.to == expected


@pytest.mark.parametrize(("word", "act"), [
    ("Walk Away", BuyerAct.WALK_AWAY), ("walk-away", BuyerAct.WALK_AWAY), ("walk", BuyerAct.WALK_AWAY),
    ("WALK_AWAY", BuyerAct.WALK_AWAY), ("counter", BuyerAct.MESSAGE), ("offer", BuyerAct.MESSAGE),
    ("Accept", BuyerAct.ACCEPT),
])
def test_buyer_action_variants_are_understood(word: str, act: BuyerAct) -> None:
    # given the variants models write for the buyer's actions
    # when one is parsed
    action = parse_buyer(json.dumps({"action": word, "seller": "@QuickTech", "price": 6}))
    # then it is the action meant
    assert action.action == act


def test_a_buyer_accept_names_the_seller_and_price() -> None:
    # given an accept of @QuickTech's offer
    action = parse_buyer('{"action": "accept", "seller": "@QuickTech", "price": "$6.75", "message": "Deal."}')
    # then the seller and the price are read
    assert action.action == BuyerAct.ACCEPT and action.seller == "@QuickTech" and action.price == Decimal("6.75")


@pytest.mark.parametrize(("text", "reason"), [
    ('{"action": "accept", "price": 7}', "seller"),  # accept without seller
    ('{"action": "accept", "seller": "", "price": 7}', "seller"),
    ('{"action": "accept", "seller": "   ", "price": 7}', "seller"),
    ('{"action": "accept", "seller": ["@A"], "price": 7}', "seller"),
    ('{"message": "hi"}', "action"),  # missing action
    ('{"action": "decline"}', "action"),  # the seller's action
    ('{"action": "message", "price": -1}', "price"),
    ('{"action": "message", "price": 5e9}', "price"),
    ('{"action": "message", "to": [1, 2]}', "to"),
    ('{"action": "message", "to": {"who": "all"}}', "to"),
    ('{"action": "message", "price": 5', "incomplete"),
])
def test_unusable_buyer_outputs_raise_output_error_naming_the_problem(text: str, reason: str) -> None:
    # given a buyer output that cannot be trusted
    # when it is parsed
    with pytest.raises(OutputError) as err:
        parse_buyer(text)
    # then the error names the field or the rule
    assert reason in str(err.value)


# --- properties ------------------------------------------------------------------------------------

@settings(max_examples=200, deadline=None)
@given(prose=st.text(alphabet=st.characters(blacklist_characters="{}"), max_size=60),
       cents=st.integers(min_value=0, max_value=10_000_000),
       message=st.text(alphabet=st.characters(blacklist_categories=("Cc", "Cs")), max_size=80))
def test_any_valid_offer_survives_any_prose_around_it(prose: str, cents: int, message: str) -> None:
    # given a valid offer (any message, braces and quotes included) with brace-free prose around it
    price = Decimal(cents) / 100
    body = json.dumps({"action": "offer", "price": float(price), "message": message})
    # when it is parsed
    action = parse_seller(f"{prose}{body}{prose}")
    # then the price and the message come back exactly
    assert action.price == price and action.message == message.strip()


@settings(max_examples=200, deadline=None)
@given(text=st.text(max_size=200))
def test_arbitrary_text_gives_an_action_or_an_output_error_and_nothing_else(text: str) -> None:
    # given any text at all
    # when it is parsed for either role
    # then the parser returns an action or raises OutputError, never another exception
    for parse in (parse_seller, parse_buyer):
        try:
            parse(text)
        except OutputError:
            pass


# --- known gaps ------------------------------------------------------------------------------------

@pytest.mark.parametrize("price", ['"6 to 7"', '"between 6 and 7"', '"1e3"', '"6,50"'])
def test_a_price_string_holding_two_numbers_or_an_exponent_is_refused(price: str) -> None:
    # given a price written as a range, or in a form that is not one plain amount
    # when it is parsed
    # then it is refused rather than read as a different number
    with pytest.raises(OutputError):
        parse_buyer('{"action": "message", "price": ' + price + "}")
        raise AssertionError(f"{price} was accepted")

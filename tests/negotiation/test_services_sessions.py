"""Tests for negotiation/services/sessions.py and negotiation/services/scenarios.py.

`session_import` takes a whole scenario document or nothing: every bad line is reported at once,
under the exact path a person would fix (`sellers[1].inventory[0].least_price`), and a refused
document leaves every table as it was. `session_export` gives back a document that imports to the
same session, and the bundled sample loads once however often it is asked for.
"""

from __future__ import annotations

import copy
from collections.abc import Callable
from decimal import Decimal
from typing import Any

import pytest
from django.apps import apps
from django.contrib.auth import get_user_model
from django.core.exceptions import ValidationError

from negotiation.engine.names import HANDLE_RULE
from negotiation.models import BuyerDemand, InventoryItem, Seller, Session
from negotiation.services.scenarios import sample_session_load, scenario_document
from negotiation.services.sessions import session_export, session_import
from tests.factories import UserFactory

pytestmark = pytest.mark.django_db

Doc = dict[str, Any]

LISTED_TWICE = "This seller already lists this item (item names are compared ignoring case)."
DEMANDED_TWICE = "The buyer already has a demand for this item (item names are compared ignoring case)."


@pytest.fixture
def sample() -> Doc:
    return scenario_document("spec_sample")


def table_counts() -> dict[str, int]:
    """Rows in every table a session import could touch: all negotiation models, and users."""
    models = [*apps.get_app_config("negotiation").get_models(), get_user_model()]
    return {m._meta.label: m.objects.count() for m in models}


def normalized(document: Doc) -> Doc:
    """A document with sellers and lines in a fixed order, so two exports can be compared."""
    doc = copy.deepcopy(document)
    doc["buyer"]["item_demands"].sort(key=lambda d: d["item_name"].lower())
    doc["sellers"].sort(key=lambda s: s["handle"].lower())
    for s in doc["sellers"]:
        s["inventory"].sort(key=lambda line: line["item_name"].lower())
    return doc


def import_errors(document: Any) -> dict[str, list[str]]:
    with pytest.raises(ValidationError) as err:
        session_import(document=document)
    return err.value.message_dict


def seller_doc(handle: str, **extra: Any) -> Doc:
    return {"handle": handle, "style": "neutral",
            "priorities": {"customer_retention": "0.50", "profit_maximization": "0.50"},
            "inventory": [{"item_name": "USB-C Cable", "cost_price": "3.00", "selling_price": "9.00",
                           "least_price": "6.00"}], **extra}


# --- Import and export ----------------------------------------------------------------------


def test_the_bundled_sample_imports(sample: Doc) -> None:
    # given the spec's sample document and an owner
    owner = UserFactory()
    # when it is imported
    session = session_import(document=sample, owner=owner)
    # then the session holds the buyer's two demands and the four sellers with their private ladders
    assert (session.name, session.owner) == ("spec-sample", owner)
    assert {(d.item_name, d.quantity) for d in session.demands.all()} == {("iPhone Case", 2), ("USB-C Cable", 3)}
    assert session.sellers.count() == 4 and InventoryItem.objects.filter(seller__session=session).count() == 6
    cable_house = session.sellers.get(handle="@CableHouse")
    assert (cable_house.style, cable_house.customer_retention_weight,
            cable_house.profit_maximization_weight) == ("sweet", Decimal("0.80"), Decimal("0.20"))
    line = cable_house.inventory.get(item_name="iPhone Case")
    assert (line.cost_price, line.least_price, line.selling_price) == (Decimal("9.00"), Decimal("14.50"),
                                                                     Decimal("20.00"))


def test_export_gives_back_the_imported_document(sample: Doc) -> None:
    # given the imported sample
    session = session_import(document=sample)
    # when it is exported
    exported = session_export(session=session)
    # then it is the sample document, up to the order of sellers and lines
    assert normalized(exported) == normalized(sample)


def test_export_then_reimport_round_trips_to_an_equal_document(sample: Doc) -> None:
    # given an exported session
    first = session_export(session=session_import(document=sample))
    # when the export is imported again and exported once more
    second_session = session_import(document=first)
    second = session_export(session=second_session)
    # then both documents are equal, and the copy is a separate session
    assert second == first
    assert Session.objects.count() == 2 and Seller.objects.count() == 8


def test_both_seller_shapes_are_accepted(sample: Doc) -> None:
    # given one seller in the 10.1 shape (priorities) and one in the 5.2 shape (personality, JSON numbers)
    sample["sellers"] = [
        seller_doc("@Priorities", style="rude",
                   priorities={"customer_retention": "0.30", "profit_maximization": "0.70"}),
        {"handle": "@Personality", "inventory": seller_doc("@x")["inventory"],
         "personality": {"style": "sweet", "customer_retention_weight": 0.8, "profit_maximization_weight": 0.2}},
    ]
    # when the document is imported
    session = session_import(document=sample)
    # then each seller's style and weights were read from its own shape
    got = {s.handle: (s.style, s.customer_retention_weight, s.profit_maximization_weight)
           for s in session.sellers.all()}
    assert got == {"@Priorities": ("rude", Decimal("0.30"), Decimal("0.70")),
                   "@Personality": ("sweet", Decimal("0.80"), Decimal("0.20"))}


def test_a_document_of_ten_sellers_is_accepted(sample: Doc) -> None:
    # given a document at the 10-seller cap
    sample["sellers"] = [seller_doc(f"@S{i}") for i in range(10)]
    # when it is imported
    session = session_import(document=sample)
    # then all ten are stored
    assert session.sellers.count() == 10


# --- Refused documents: exact paths, nothing written ----------------------------------------


def set_in(path: tuple[Any, ...], value: Any) -> Callable[[Doc], None]:
    def change(doc: Doc) -> None:
        target = doc
        for key in path[:-1]:
            target = target[key]
        target[path[-1]] = value
    return change


def drop(path: tuple[Any, ...]) -> Callable[[Doc], None]:
    def change(doc: Doc) -> None:
        target = doc
        for key in path[:-1]:
            target = target[key]
        del target[path[-1]]
    return change


def eleven_sellers(doc: Doc) -> None:
    doc["sellers"] = [seller_doc(f"@S{i}") for i in range(11)]


def duplicate_inventory_line(doc: Doc) -> None:
    line = dict(doc["sellers"][0]["inventory"][0], item_name="IPHONE CASE")
    doc["sellers"][0]["inventory"].append(line)


BAD_DOCUMENTS = [
    pytest.param(set_in(("sellers", 1, "inventory", 0, "least_price"), "cheap"),
                 "sellers[1].inventory[0].least_price", "“cheap” value must be a decimal number.", id="least-nan"),
    pytest.param(drop(("sellers", 1, "inventory", 0, "least_price")),
                 "sellers[1].inventory[0].least_price", "This field cannot be null.", id="least-missing"),
    pytest.param(set_in(("buyer", "item_demands", 0, "max_price"), "eighteen"),
                 "buyer.item_demands[0].max_price", "“eighteen” value must be a decimal number.", id="max-nan"),
    pytest.param(set_in(("buyer", "item_demands", 0, "max_price"), None),
                 "buyer.item_demands[0].max_price", "This field cannot be null.", id="max-null"),
    pytest.param(set_in(("sellers", 2, "handle"), "@techmart"),
                 "sellers[2].handle", "Duplicate handle @techmart: each handle must be unique in a session.",
                 id="duplicate-handle"),
    pytest.param(set_in(("sellers", 0, "handle"), "TechMart"),
                 "sellers[0].handle", HANDLE_RULE,
                 id="handle-format"),
    pytest.param(set_in(("sellers", 0, "style"), "smug"),
                 "sellers[0].style", "Value 'smug' is not a valid choice.", id="style"),
    pytest.param(eleven_sellers, "sellers", "A session has at most 10 sellers; this one has 11.", id="11-sellers"),
    pytest.param(set_in(("sellers",), {"handle": "@A"}), "sellers", "Sellers must be a list.", id="sellers-object"),
    pytest.param(set_in(("sellers", 1), "@CableHouse"), "sellers[1]", "Each seller must be an object.",
                 id="seller-string"),
    pytest.param(set_in(("sellers", 1, "inventory"), "USB-C Cable"), "sellers[1].inventory",
                 "Inventory must be a list of items.", id="inventory-string"),
    pytest.param(set_in(("sellers", 1, "inventory", 1), 7), "sellers[1].inventory[1]",
                 "Each inventory line must be an object.", id="line-number"),
    pytest.param(duplicate_inventory_line, "sellers[0].inventory[2].item_name", LISTED_TWICE,
                 id="duplicate-line"),
    pytest.param(drop(("buyer",)), "buyer.item_demands", "The buyer needs at least one item demand.",
                 id="no-buyer"),
    pytest.param(set_in(("buyer", "item_demands"), []), "buyer.item_demands",
                 "The buyer needs at least one item demand.", id="no-demands"),
    pytest.param(set_in(("buyer",), ["iPhone Case"]), "buyer.item_demands",
                 "The buyer needs at least one item demand.", id="buyer-list"),
    pytest.param(set_in(("buyer", "item_demands", 1), "USB-C Cable"), "buyer.item_demands[1]",
                 "Each demand must be an object.", id="demand-string"),
    pytest.param(set_in(("buyer", "item_demands", 1, "item_name"), "iphone CASE"),
                 "buyer.item_demands[1].item_name", DEMANDED_TWICE,
                 id="duplicate-demand"),
    pytest.param(set_in(("buyer", "item_demands", 0, "quantity"), "two"),
                 "buyer.item_demands[0].quantity", "“two” value must be an integer.", id="quantity-nan"),
]


@pytest.mark.parametrize(("change", "path", "message"), BAD_DOCUMENTS)
def test_a_bad_document_names_the_exact_path_and_writes_nothing(sample: Doc, change: Callable[[Doc], None],
                                                                path: str, message: str) -> None:
    # given the sample with one mistake, and the row count of every table
    change(sample)
    before = table_counts()
    # when it is imported
    errors = import_errors(sample)
    # then the error is reported at the mistake's path, and no table changed
    assert message in errors.get(path, []), errors
    assert table_counts() == before


@pytest.mark.parametrize(("change", "line", "message"), [
    pytest.param(set_in(("sellers", 1, "inventory", 0, "least_price"), "99.00"), "sellers[1].inventory[0]",
                 "Least price must not exceed the selling price.", id="least-above-selling"),
    pytest.param(set_in(("sellers", 1, "inventory", 0, "cost_price"), "7.05"), "sellers[1].inventory[0]",
                 "Cost price must be below the least price (the seller's floor).", id="cost-at-least"),
    pytest.param(set_in(("sellers", 3, "inventory", 0, "cost_price"), "-1"), "sellers[3].inventory[0]",
                 "Cost price cannot be negative.", id="negative-cost"),
    pytest.param(set_in(("buyer", "item_demands", 0, "min_price"), "19.00"), "buyer.item_demands[0]",
                 "Minimum price must not exceed maximum price.", id="min-above-max"),
    pytest.param(set_in(("buyer", "item_demands", 0, "quantity"), 0), "buyer.item_demands[0]",
                 "Quantity must be at least 1.", id="quantity-0"),
    pytest.param(set_in(("sellers", 0, "priorities"), {"customer_retention": "0.6", "profit_maximization": "0.6"}),
                 "sellers[0]", "Customer retention and profit maximization weights must sum to 1.", id="weights"),
])
def test_a_broken_rule_is_reported_at_its_line_and_writes_nothing(sample: Doc, change: Callable[[Doc], None],
                                                                  line: str, message: str) -> None:
    # given the sample with a line that breaks a rule spanning two fields
    change(sample)
    before = table_counts()
    # when it is imported
    errors = import_errors(sample)
    # then the rule's message is reported at that line (or one of its fields), and no table changed
    assert [k for k, msgs in errors.items() if message in msgs and (k == line or k.startswith(f"{line}."))], errors
    assert table_counts() == before


@pytest.mark.parametrize("document", [["not", "an", "object"], "spec_sample", None, 42],
                         ids=["list", "string", "null", "number"])
def test_a_document_that_is_not_an_object_is_refused(document: Any) -> None:
    # given something that is not a JSON object
    before = table_counts()
    # when it is imported
    errors = import_errors(document)
    # then the whole document is named, and nothing is written
    assert errors == {"document": ["The session document must be a JSON object."]}
    assert table_counts() == before


def test_every_mistake_in_a_document_is_reported_at_once(sample: Doc) -> None:
    # given a document with four independent mistakes
    sample["buyer"]["item_demands"][0]["max_price"] = "abc"
    sample["sellers"][1]["inventory"][0]["least_price"] = "x"
    sample["sellers"][2]["handle"] = "@TECHMART"
    sample["sellers"][3]["style"] = "smug"
    before = table_counts()
    # when it is imported
    errors = import_errors(sample)
    # then each one is named by its path, and nothing is written
    assert set(errors) == {"buyer.item_demands[0].max_price", "sellers[1].inventory[0].least_price",
                           "sellers[2].handle", "sellers[3].style"}
    assert table_counts() == before


def test_a_refused_document_leaves_existing_sessions_alone(sample: Doc) -> None:
    # given the sample already imported once
    session_import(document=sample)
    before = table_counts()
    # when a copy whose last seller is bad is imported (every earlier line is valid)
    bad = copy.deepcopy(sample)
    bad["sellers"][3]["inventory"][0]["selling_price"] = "1.00"
    with pytest.raises(ValidationError):
        session_import(document=bad)
    # then nothing was added: no half-written session, demands, sellers or lines
    assert table_counts() == before
    assert Session.objects.count() == 1 and BuyerDemand.objects.count() == 2


def test_priorities_that_are_not_an_object_are_a_validation_error(sample: Doc) -> None:
    # given a seller whose priorities are a string
    sample["sellers"][1]["priorities"] = "retention first"
    # when it is imported
    errors = import_errors(sample)
    # then the error names the seller's priorities, and nothing is written
    assert any(k.startswith("sellers[1]") for k in errors), errors
    assert Session.objects.count() == 0


def test_a_nul_character_in_a_name_is_a_validation_error(sample: Doc) -> None:
    # given a demand whose item name carries a NUL character (valid JSON: "\u0000")
    sample["buyer"]["item_demands"][0]["item_name"] = "iPhone Case\x00"
    # when it is imported
    errors = import_errors(sample)
    # then the error names the item, and nothing is written
    assert "buyer.item_demands[0].item_name" in errors, errors


def test_a_fractional_quantity_is_refused(sample: Doc) -> None:
    # given a demand for 2.7 iPhone Cases
    sample["buyer"]["item_demands"][0]["quantity"] = 2.7
    # when it is imported
    errors = import_errors(sample)
    # then the quantity is named rather than silently stored as 2
    assert "buyer.item_demands[0].quantity" in errors, errors


# --- Bundled scenarios --------------------------------------------------------------------------


def test_the_sample_session_is_loaded_once() -> None:
    # given no session yet
    # when the sample is asked for twice
    first = sample_session_load()
    second = sample_session_load()
    # then both calls return the same session, and nothing was duplicated
    assert second.pk == first.pk
    assert Session.objects.count() == 1 and Seller.objects.count() == 4 and BuyerDemand.objects.count() == 2


def test_each_owner_gets_one_sample_session() -> None:
    # given two users
    alice, bob = UserFactory(), UserFactory()
    # when each asks for the sample twice
    a1, a2 = sample_session_load(owner=alice), sample_session_load(owner=alice)
    b1 = sample_session_load(owner=bob)
    # then each owner has exactly one, and they are different sessions
    assert a1.pk == a2.pk != b1.pk
    assert (a1.owner, b1.owner) == (alice, bob)
    assert Session.objects.count() == 2

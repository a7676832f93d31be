"""Tests for negotiation/models.py: Postgres refuses every row that breaks a domain rule.

Each rule is checked three ways: an ORM `save()` raises an IntegrityError naming the constraint,
a raw SQL INSERT or UPDATE (which skips Django entirely) is refused just the same, and
`full_clean()` reports the rule in the words of the constraint's `violation_error_message`. The
10-seller cap is a trigger, so it is checked through the ORM and raw SQL only.
"""

from __future__ import annotations

import re
import uuid
from collections.abc import Callable, Iterator
from contextlib import contextmanager
from decimal import Decimal
from typing import Any

import pytest
from django.core.exceptions import NON_FIELD_ERRORS, ValidationError
from django.db import IntegrityError, connection, models, transaction

from negotiation.engine.names import HANDLE_RULE, name_key
from negotiation.models import Batch, BuyerDemand, InventoryItem, Message, NegotiationRun, Outcome, Seller, Session
from tests.factories import (
    BuyerDemandFactory,
    InventoryItemFactory,
    SellerFactory,
    SessionFactory,
    UserFactory,
)

pytestmark = pytest.mark.django_db

D = Decimal


@contextmanager
def refused(constraint: str) -> Iterator[None]:
    """The block fails with an IntegrityError naming `constraint`; a savepoint keeps the test usable."""
    with pytest.raises(IntegrityError, match=constraint), transaction.atomic():
        yield


def raw_insert(table: str, row: dict[str, Any]) -> None:
    cols = ", ".join(row)
    marks = ", ".join(["%s"] * len(row))
    with connection.cursor() as cur:
        cur.execute(f"INSERT INTO {table} ({cols}) VALUES ({marks})", list(row.values()))


def raw_update(table: str, pk: Any, **values: Any) -> None:
    sets = ", ".join(f"{col} = %s" for col in values)
    with connection.cursor() as cur:
        cur.execute(f"UPDATE {table} SET {sets} WHERE id = %s", [*values.values(), pk])


def count(model: type[models.Model]) -> int:
    return model.objects.count()


# --- Row builders: a valid row of each table, with the fields under test overridden -------------

# Raw SQL skips Django, so it writes the name's comparison key itself (engine/names.py), as the ORM does.
def inventory_row(seller: Seller, **over: Any) -> dict[str, Any]:
    row = {"id": uuid.uuid4(), "seller_id": seller.pk, "item_name": f"Item {uuid.uuid4().hex[:6]}",
           "cost_price": D("4.00"), "least_price": D("6.00"), "selling_price": D("9.00"), **over}
    return {**row, "item_key": name_key(row["item_name"])}


def demand_row(session: Session, **over: Any) -> dict[str, Any]:
    row = {"id": uuid.uuid4(), "session_id": session.pk, "item_name": f"Item {uuid.uuid4().hex[:6]}",
           "quantity": 1, "min_price": D("5.00"), "max_price": D("9.00"), **over}
    return {**row, "item_key": name_key(row["item_name"])}


def seller_row(session: Session, **over: Any) -> dict[str, Any]:
    row = {"id": uuid.uuid4(), "session_id": session.pk, "handle": f"@S{uuid.uuid4().hex[:8]}",
           "style": "neutral", "customer_retention_weight": D("0.60"), "profit_maximization_weight": D("0.40"),
           **over}
    return {**row, "handle_key": name_key(row["handle"])}


# (table, overrides, constraint) for the three price-and-profile tables
INVENTORY_CASES = [
    ({"cost_price": D("6.00")}, "inventory_cost_below_least"),  # cost == least
    ({"cost_price": D("7.00")}, "inventory_cost_below_least"),  # cost > least
    ({"least_price": D("9.50")}, "inventory_least_le_selling"),
    ({"cost_price": D("-0.01")}, "inventory_cost_not_negative"),
]
DEMAND_CASES = [
    ({"quantity": 0}, "demand_quantity_at_least_1"),
    ({"min_price": D("-1.00")}, "demand_min_price_not_negative"),
    ({"min_price": D("9.01")}, "demand_min_price_le_max_price"),
]
SELLER_CASES = [
    # 1.5 + -0.5 sums to 1, so only the range rule is broken
    ({"customer_retention_weight": D("1.50"), "profit_maximization_weight": D("-0.50")},
     "seller_weights_in_unit_range"),
    ({"customer_retention_weight": D("0.60"), "profit_maximization_weight": D("0.60")}, "seller_weights_sum_to_1"),
    ({"customer_retention_weight": D("0.30"), "profit_maximization_weight": D("0.30")}, "seller_weights_sum_to_1"),
    ({"handle": "QuickTech"}, "seller_handle_format"),
    ({"handle": "@Quick Tech"}, "seller_handle_format"),
    ({"handle": "@"}, "seller_handle_format"),
    ({"handle": "@Quick-Tech"}, "seller_handle_format"),
    ({"handle": "@Quick\tTech"}, "seller_handle_format"),
]
# The ORM stores names stripped (engine/names.py), so a trailing newline can only come in through raw SQL.
SELLER_RAW_CASES = [*SELLER_CASES, ({"handle": "@QuickTech\n"}, "seller_handle_format")]


@pytest.fixture
def session() -> Session:
    return SessionFactory()


@pytest.fixture
def seller(session: Session) -> Seller:
    return SellerFactory(session=session)


# --- Valid rows, at the edges of every rule ---------------------------------------------------


def test_factories_make_valid_rows(seller: Seller) -> None:
    # given rows built by the factories with their defaults
    item = InventoryItemFactory(seller=seller)
    demand = BuyerDemandFactory(session=seller.session)
    # when they are validated
    for obj in (seller.session, seller, item, demand):
        obj.full_clean()
    # then the seller's weights sum to 1 and the price ladder is cost < least <= selling
    assert seller.customer_retention_weight + seller.profit_maximization_weight == 1
    assert 0 <= item.cost_price < item.least_price <= item.selling_price


def test_rows_on_the_boundary_of_each_rule_are_accepted(session: Session) -> None:
    # given a seller with weights 0 and 1 and a line whose floor equals its ask and cost is 0
    seller = SellerFactory(session=session, customer_retention_weight=D("0"), profit_maximization_weight=D("1"))
    InventoryItemFactory(seller=seller, cost_price=D("0"), least_price=D("9.00"), selling_price=D("9.00"))
    # and a demand whose range is a single price starting at 0
    BuyerDemandFactory(session=session, min_price=D("0"), max_price=D("0"))
    # when the same edges come in through raw SQL
    raw_insert("negotiation_seller", seller_row(session, customer_retention_weight=D("1"),
                                                profit_maximization_weight=D("0")))
    raw_insert("negotiation_inventoryitem", inventory_row(seller, least_price=D("9.00")))
    raw_insert("negotiation_buyerdemand", demand_row(session, min_price=D("9.00")))
    # then every row was stored
    assert count(Seller) == 2 and count(InventoryItem) == 2 and count(BuyerDemand) == 2


# --- Inventory: 0 <= cost < least <= selling, item unique per seller ---------------------------


@pytest.mark.parametrize(("over", "constraint"), INVENTORY_CASES)
def test_inventory_price_rules_refuse_an_orm_save(seller: Seller, over: dict[str, Any], constraint: str) -> None:
    # given an inventory line that breaks one price rule
    item = InventoryItemFactory.build(seller=seller, **over)
    # when it is saved through the ORM
    with refused(constraint):
        item.save()
    # then nothing was written
    assert count(InventoryItem) == 0


@pytest.mark.parametrize(("over", "constraint"), INVENTORY_CASES)
def test_inventory_price_rules_refuse_a_raw_insert(seller: Seller, over: dict[str, Any], constraint: str) -> None:
    # given the same bad line as raw SQL, bypassing Django
    # when it is inserted
    with refused(constraint):
        raw_insert("negotiation_inventoryitem", inventory_row(seller, **over))
    # then Postgres refused it
    assert count(InventoryItem) == 0


@pytest.mark.parametrize(("over", "constraint"), INVENTORY_CASES)
def test_inventory_price_rules_refuse_a_raw_update(seller: Seller, over: dict[str, Any], constraint: str) -> None:
    # given a valid stored line
    item = InventoryItemFactory(seller=seller)
    # when raw SQL rewrites it into a bad one
    with refused(constraint):
        raw_update("negotiation_inventoryitem", item.pk, **over)
    # then the stored line is unchanged
    item.refresh_from_db()
    assert (item.cost_price, item.least_price, item.selling_price) == (D("4.00"), D("6.00"), D("9.00"))


def test_inventory_item_is_unique_per_seller_case_insensitively(seller: Seller) -> None:
    # given a seller stocking "USB-C Cable"
    InventoryItemFactory(seller=seller, item_name="USB-C Cable")
    # when the same item is added again in another case, through the ORM and through raw SQL
    with refused("inventory_item_unique_per_seller"):
        InventoryItemFactory(seller=seller, item_name="usb-c CABLE")
    with refused("inventory_item_unique_per_seller"):
        raw_insert("negotiation_inventoryitem", inventory_row(seller, item_name="USB-C CABLE"))
    # then only the first line exists, while another seller may stock the same item
    InventoryItemFactory(seller=SellerFactory(session=seller.session), item_name="usb-c cable")
    assert InventoryItem.objects.filter(seller=seller).count() == 1
    assert count(InventoryItem) == 2


# --- Buyer demand: quantity >= 1, 0 <= min <= max, item unique per session ---------------------


@pytest.mark.parametrize(("over", "constraint"), DEMAND_CASES)
def test_demand_rules_refuse_an_orm_save(session: Session, over: dict[str, Any], constraint: str) -> None:
    # given a demand that breaks one rule
    demand = BuyerDemandFactory.build(session=session, **over)
    # when it is saved through the ORM
    with refused(constraint):
        demand.save()
    # then nothing was written
    assert count(BuyerDemand) == 0


@pytest.mark.parametrize(("over", "constraint"), DEMAND_CASES)
def test_demand_rules_refuse_a_raw_insert(session: Session, over: dict[str, Any], constraint: str) -> None:
    # given the same bad demand as raw SQL
    # when it is inserted
    with refused(constraint):
        raw_insert("negotiation_buyerdemand", demand_row(session, **over))
    # then Postgres refused it
    assert count(BuyerDemand) == 0


@pytest.mark.parametrize(("over", "constraint"), DEMAND_CASES)
def test_demand_rules_refuse_a_raw_update(session: Session, over: dict[str, Any], constraint: str) -> None:
    # given a valid stored demand
    demand = BuyerDemandFactory(session=session)
    # when raw SQL rewrites it into a bad one
    with refused(constraint):
        raw_update("negotiation_buyerdemand", demand.pk, **over)
    # then the stored demand is unchanged
    demand.refresh_from_db()
    assert (demand.quantity, demand.min_price, demand.max_price) == (1, D("5.00"), D("9.00"))


def test_demand_item_is_unique_per_session_case_insensitively(session: Session) -> None:
    # given a buyer demanding "iPhone Case"
    BuyerDemandFactory(session=session, item_name="iPhone Case")
    # when a second demand for "IPHONE case" arrives through the ORM and through raw SQL
    with refused("demand_item_unique_per_session"):
        BuyerDemandFactory(session=session, item_name="IPHONE case")
    with refused("demand_item_unique_per_session"):
        raw_insert("negotiation_buyerdemand", demand_row(session, item_name="iphone case"))
    # then both are refused, while another session may demand the same item
    BuyerDemandFactory(item_name="iphone case")
    assert BuyerDemand.objects.filter(session=session).count() == 1
    assert count(BuyerDemand) == 2


# --- Seller: weights in [0, 1] summing to 1, handle format, handle unique per session ----------


@pytest.mark.parametrize(("over", "constraint"), SELLER_CASES)
def test_seller_rules_refuse_an_orm_save(session: Session, over: dict[str, Any], constraint: str) -> None:
    # given a seller that breaks one rule
    seller = SellerFactory.build(session=session, **over)
    # when it is saved through the ORM
    with refused(constraint):
        seller.save()
    # then nothing was written
    assert count(Seller) == 0


@pytest.mark.parametrize(("over", "constraint"), SELLER_RAW_CASES)
def test_seller_rules_refuse_a_raw_insert(session: Session, over: dict[str, Any], constraint: str) -> None:
    # given the same bad seller as raw SQL
    # when it is inserted
    with refused(constraint):
        raw_insert("negotiation_seller", seller_row(session, **over))
    # then Postgres refused it
    assert count(Seller) == 0


@pytest.mark.parametrize(("over", "constraint"), SELLER_RAW_CASES)
def test_seller_rules_refuse_a_raw_update(seller: Seller, over: dict[str, Any], constraint: str) -> None:
    # given a valid stored seller
    handle = seller.handle
    # when raw SQL rewrites it into a bad one
    with refused(constraint):
        raw_update("negotiation_seller", seller.pk, **over)
    # then the stored seller is unchanged
    seller.refresh_from_db()
    assert seller.handle == handle and seller.customer_retention_weight == D("0.60")


def test_seller_handle_is_unique_per_session_case_insensitively(session: Session) -> None:
    # given @QuickTech in a session
    SellerFactory(session=session, handle="@QuickTech")
    # when @quicktech joins the same session through the ORM and through raw SQL
    with refused("seller_handle_unique_per_session"):
        SellerFactory(session=session, handle="@quicktech")
    with refused("seller_handle_unique_per_session"):
        raw_insert("negotiation_seller", seller_row(session, handle="@QUICKTECH"))
    # then both are refused
    assert Seller.objects.filter(session=session).count() == 1


def test_the_same_handle_is_allowed_in_another_session(session: Session) -> None:
    # given @QuickTech in one session
    SellerFactory(session=session, handle="@QuickTech")
    # when @quicktech joins a different session, through the ORM and through raw SQL
    SellerFactory(handle="@quicktech")
    raw_insert("negotiation_seller", seller_row(SessionFactory(), handle="@QuickTech"))
    # then all three sellers exist
    assert count(Seller) == 3


# --- At most 10 sellers per session: the session_max_10_sellers trigger ------------------------


@pytest.fixture
def full_session(session: Session) -> Session:
    SellerFactory.create_batch(10, session=session)
    return session


def test_a_session_takes_exactly_10_sellers(full_session: Session) -> None:
    # given a session that was given 10 sellers
    # when they are counted
    # then all 10 were stored
    assert full_session.sellers.count() == 10


def test_the_11th_seller_is_refused_through_the_orm(full_session: Session) -> None:
    # given a session with 10 sellers
    # when an 11th is saved through the ORM
    with refused("session_max_10_sellers"):
        SellerFactory(session=full_session)
    # then the session still has 10
    assert full_session.sellers.count() == 10


def test_the_11th_seller_is_refused_through_raw_sql(full_session: Session) -> None:
    # given a session with 10 sellers
    # when an 11th is inserted with raw SQL
    with refused("session_max_10_sellers"):
        raw_insert("negotiation_seller", seller_row(full_session))
    # then the session still has 10
    assert full_session.sellers.count() == 10


def test_moving_a_seller_into_a_full_session_is_refused(full_session: Session) -> None:
    # given a seller in another session
    mover = SellerFactory()
    # when it is moved into the full session through the ORM and through a raw UPDATE
    mover.session = full_session
    with refused("session_max_10_sellers"):
        mover.save()
    with refused("session_max_10_sellers"):
        raw_update("negotiation_seller", mover.pk, session_id=full_session.pk)
    # then the full session still has 10 and the mover stayed where it was
    assert full_session.sellers.count() == 10
    assert Seller.objects.get(pk=mover.pk).session_id != full_session.pk


def test_a_seller_in_a_full_session_can_still_be_edited(full_session: Session) -> None:
    # given the 10th seller of a full session
    seller = full_session.sellers.last()
    # when it is edited through the ORM (which rewrites session_id too) and through raw SQL
    seller.handle = "@Renamed"
    seller.save()
    raw_update("negotiation_seller", seller.pk, session_id=full_session.pk, style="rude")
    # then the trigger does not count the seller against itself
    seller.refresh_from_db()
    assert (seller.handle, seller.style) == ("@Renamed", "rude")


# --- Runs and their records: batches, messages, outcomes ---------------------------------------


@pytest.fixture
def run(session: Session) -> NegotiationRun:
    batch = Batch.objects.create(session=session, item_name="Item", runs_requested=1, agents={})
    return NegotiationRun.objects.create(batch=batch, session=session, item_name="Item", agents={})


def test_a_batch_needs_at_least_one_run(run: NegotiationRun) -> None:
    # given a batch of one run
    batch = run.batch
    # when a batch of 0 runs is created, or the stored one is rewritten to 0 with raw SQL
    with refused("batch_runs_at_least_1"):
        Batch.objects.create(session=run.session, runs_requested=0, agents={})
    with refused("batch_runs_at_least_1"):
        raw_update("negotiation_batch", batch.pk, runs_requested=0)
    # then only the valid batch exists, unchanged
    assert list(Batch.objects.values_list("runs_requested", flat=True)) == [1]


def test_an_idempotency_key_is_unique_per_owner(session: Session) -> None:
    # given a batch made with a key
    owner = UserFactory()
    Batch.objects.create(session=session, owner=owner, runs_requested=1, agents={}, idempotency_key="k1")
    # when the same owner reuses the key
    with refused("batch_idempotency_key_unique"):
        Batch.objects.create(session=session, owner=owner, runs_requested=1, agents={}, idempotency_key="k1")
    # then it is refused, while another owner or a blank key may repeat
    Batch.objects.create(session=session, owner=UserFactory(), runs_requested=1, agents={}, idempotency_key="k1")
    Batch.objects.create(session=session, owner=owner, runs_requested=1, agents={})
    Batch.objects.create(session=session, owner=owner, runs_requested=1, agents={})
    assert count(Batch) == 4


def test_a_sender_writes_one_message_per_round(run: NegotiationRun) -> None:
    # given the buyer's round-1 message
    Message.objects.create(run=run, round_no=1, sender_type="buyer", sender="buyer", action="counter")
    other = Message.objects.create(run=run, round_no=2, sender_type="buyer", sender="buyer", action="counter")
    # when a duplicate delivery writes it again, or raw SQL moves round 2 onto round 1
    with refused("message_one_per_sender_per_round"):
        Message.objects.create(run=run, round_no=1, sender_type="buyer", sender="buyer", action="counter")
    with refused("message_one_per_sender_per_round"):
        raw_update("negotiation_message", other.pk, round_no=1)
    # then there is still one message per round
    assert sorted(Message.objects.values_list("round_no", flat=True)) == [1, 2]


@pytest.mark.parametrize(("fields", "constraint"), [
    ({"decision": "deal", "final_price": None, "chosen_handle": "@A"}, "outcome_deal_has_seller_and_price"),
    ({"decision": "deal", "final_price": D("7.00"), "chosen_handle": ""}, "outcome_deal_has_seller_and_price"),
    ({"decision": "no_deal", "final_price": D("-1.00")}, "outcome_price_not_negative"),
])
def test_outcome_rules_refuse_a_bad_outcome(run: NegotiationRun, fields: dict[str, Any], constraint: str) -> None:
    # given an outcome that breaks one rule
    # when it is saved through the ORM
    with refused(constraint):
        Outcome.objects.create(run=run, reason="accepted", **fields)
    # then nothing was written
    assert count(Outcome) == 0


def test_a_raw_update_cannot_strip_a_deal_of_its_price(run: NegotiationRun) -> None:
    # given a deal at $7.00 with @A
    outcome = Outcome.objects.create(run=run, decision="deal", reason="accepted", chosen_handle="@A",
                                     final_price=D("7.00"))
    # when raw SQL clears its price, or makes it negative
    with refused("outcome_deal_has_seller_and_price"):
        raw_update("negotiation_outcome", outcome.pk, final_price=None)
    with refused("outcome_price_not_negative"):
        raw_update("negotiation_outcome", outcome.pk, final_price=D("-7.00"))
    # then the deal is unchanged
    outcome.refresh_from_db()
    assert outcome.final_price == D("7.00")


# --- full_clean(): the same rules, in words a person can act on ------------------------------


def _demand(session: Session, **over: Any) -> BuyerDemand:
    return BuyerDemandFactory.build(session=session, **over)


def _item(session: Session, **over: Any) -> InventoryItem:
    return InventoryItemFactory.build(seller=SellerFactory(session=session), **over)


def _seller(session: Session, **over: Any) -> Seller:
    return SellerFactory.build(session=session, **over)


FULL_CLEAN_CASES: list[tuple[Callable[..., models.Model], dict[str, Any], str]] = [
    (_item, {"cost_price": D("-0.01")}, "Cost price cannot be negative."),
    (_item, {"cost_price": D("6.00")}, "Cost price must be below the least price (the seller's floor)."),
    (_item, {"least_price": D("9.50")}, "Least price must not exceed the selling price."),
    (_demand, {"quantity": 0}, "Quantity must be at least 1."),
    (_demand, {"min_price": D("-1.00")}, "Minimum price cannot be negative."),
    (_demand, {"min_price": D("9.50")}, "Minimum price must not exceed maximum price."),
    (_seller, {"customer_retention_weight": D("0.60"), "profit_maximization_weight": D("0.60")},
     "Customer retention and profit maximization weights must sum to 1."),
    # (no handle case: the field's validator is stricter than the database's check, so a bad handle is a
    # field error, tested below)
]


@pytest.mark.parametrize(("build", "over", "message"), FULL_CLEAN_CASES)
def test_full_clean_reports_each_rule_in_words(session: Session, build: Callable[..., models.Model],
                                               over: dict[str, Any], message: str) -> None:
    # given an unsaved object that breaks one rule
    obj = build(session, **over)
    # when it is validated
    with pytest.raises(ValidationError) as err:
        obj.full_clean()
    # then the rule's own message is the (only) error
    assert err.value.message_dict == {NON_FIELD_ERRORS: [message]}


def constraint_named(model: type[models.Model], name: str) -> Any:
    return next(c for c in model._meta.constraints if c.name == name)


@pytest.mark.parametrize(("over", "field_errors", "name", "message"), [
    ({"customer_retention_weight": D("1.50"), "profit_maximization_weight": D("-0.50")},
     {"customer_retention_weight": ["Ensure this value is less than or equal to 1."],
      "profit_maximization_weight": ["Ensure this value is greater than or equal to 0."]},
     "seller_weights_in_unit_range", "Each priority weight must lie between 0 and 1."),
    ({"handle": "QuickTech"},
     {"handle": [HANDLE_RULE]}, "seller_handle_format", HANDLE_RULE),
])
def test_field_validators_report_weight_range_and_handle_before_the_constraint(
        session: Session, over: dict[str, Any], field_errors: dict[str, list[str]], name: str, message: str) -> None:
    # given a seller whose weight or handle also fails its field's own validator
    seller = _seller(session, **over)
    # when it is validated
    with pytest.raises(ValidationError) as err:
        seller.full_clean()
    # then full_clean names the field (Django skips constraints on fields that already failed)
    assert err.value.message_dict == field_errors
    # and the constraints alone report the rule with the constraint's own message
    with pytest.raises(ValidationError, match=re.escape(message)):
        constraint_named(Seller, name).validate(Seller, seller)
    with pytest.raises(ValidationError) as only:
        seller.validate_constraints()
    assert only.value.message_dict == {NON_FIELD_ERRORS: [message]}


@pytest.mark.parametrize(("make_existing", "make_new", "message"), [
    (lambda s: BuyerDemandFactory(session=s, item_name="iPhone Case"),
     lambda s: BuyerDemandFactory.build(session=s, item_name="IPHONE CASE"),
     "The buyer already has a demand for this item (item names are compared ignoring case)."),
    (lambda s: SellerFactory(session=s, handle="@QuickTech"),
     lambda s: SellerFactory.build(session=s, handle="@quicktech"),
     "Another seller in this session already uses this handle (handles are compared ignoring case)."),
    (lambda s: InventoryItemFactory(seller=SellerFactory(session=s, handle="@Only"), item_name="USB-C Cable"),
     lambda s: InventoryItemFactory.build(seller=s.sellers.get(handle="@Only"), item_name="usb-c cable"),
     "This seller already stocks this item (item names are compared ignoring case)."),
])
def test_full_clean_reports_case_insensitive_duplicates(session: Session, make_existing: Callable[[Session], Any],
                                                        make_new: Callable[[Session], Any], message: str) -> None:
    # given a stored row
    make_existing(session)
    # when a second row differing only in case is validated
    with pytest.raises(ValidationError) as err:
        make_new(session).full_clean()
    # then the unique rule's own message is reported
    assert err.value.message_dict == {NON_FIELD_ERRORS: [message]}


def test_the_database_accepts_handles_in_any_script_and_keys_them_as_python_does(session: Session) -> None:
    # given handles in other scripts, through the ORM and raw SQL (the database checks only their ASCII part)
    SellerFactory(session=session, handle="@Ohrwurm_Köln")
    raw_insert("negotiation_seller", seller_row(session, handle="@東京電機"))
    # then the same handle in another case is refused by the key's unique constraint, both ways
    with refused("seller_handle_unique_per_session"):
        SellerFactory(session=session, handle="@OHRWURM_KÖLN")
    with refused("seller_handle_unique_per_session"):
        raw_insert("negotiation_seller", seller_row(session, handle="@ohrwurm_köln"))
    assert sorted(Seller.objects.values_list("handle_key", flat=True)) == ["@ohrwurm_köln", "@東京電機"]

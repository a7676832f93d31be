"""Tests for negotiation/admin.py through the Django test client, logged in as a superuser.

A bad session, seller or inventory line must come back as the same form with an error a person
can read (status 200), and write nothing; never a 500. Runs and their records are read-only: the
pages render, but there is no add page and a change page cannot save.
"""

from __future__ import annotations

import html
import re
from decimal import Decimal
from typing import Any

import pytest
from django.db import models
from django.test import Client

from negotiation.models import (
    Batch,
    BuyerDemand,
    InventoryItem,
    Message,
    NegotiationRun,
    Outcome,
    RunEvent,
    Seller,
    Session,
)
from tests.factories import BuyerDemandFactory, InventoryItemFactory, SellerFactory, SessionFactory

pytestmark = pytest.mark.django_db

SESSION_ADD = "/admin/negotiation/session/add/"
SELLER_ADD = "/admin/negotiation/seller/add/"
TWICE = "appears twice; names must be unique (compared ignoring case)."


def url(model: type[models.Model], action: str, pk: Any = None) -> str:
    base = f"/admin/negotiation/{model._meta.model_name}/"
    return base + (f"{pk}/{action}/" if pk is not None else f"{action}/" if action != "changelist" else "")


def formset(prefix: str, rows: list[dict[str, Any]], *, initial: int = 0) -> dict[str, Any]:
    """POST data for an inline formset: the management form, then `prefix-<i>-<field>` per row."""
    data: dict[str, Any] = {f"{prefix}-TOTAL_FORMS": str(len(rows)), f"{prefix}-INITIAL_FORMS": str(initial),
                            f"{prefix}-MIN_NUM_FORMS": "0", f"{prefix}-MAX_NUM_FORMS": "1000"}
    for i, row in enumerate(rows):
        data.update({f"{prefix}-{i}-{field}": value for field, value in row.items()})
    return data


def demand(name: str = "USB-C Cable", quantity: str = "1", low: str = "5.00", high: str = "9.00") -> dict[str, Any]:
    return {"item_name": name, "quantity": quantity, "min_price": low, "max_price": high}


def seller(handle: str, retention: str = "0.60", profit: str = "0.40") -> dict[str, Any]:
    return {"handle": handle, "style": "neutral", "customer_retention_weight": retention,
            "profit_maximization_weight": profit}


def line(name: str = "USB-C Cable", cost: str = "4.00", least: str = "6.00", selling: str = "9.00") -> dict[str, Any]:
    return {"item_name": name, "cost_price": cost, "least_price": least, "selling_price": selling}


def session_post(demands: list[dict[str, Any]], sellers: list[dict[str, Any]]) -> dict[str, Any]:
    return {"name": "admin-made", "description": "", "owner": "", **formset("demands", demands),
            **formset("sellers", sellers)}


def text(response: Any) -> str:
    return html.unescape(response.content.decode())


def errors(response: Any) -> list[str]:
    """Every error the page shows, form and inline, as plain text."""
    found = re.findall(r'<ul class="errorlist[^"]*"[^>]*>(.*?)</ul>', response.content.decode(), re.S)
    return [html.unescape(re.sub(r"<[^>]+>", " ", e)).strip() for e in found]


def totals() -> tuple[int, ...]:
    return tuple(m.objects.count() for m in (Session, BuyerDemand, Seller, InventoryItem))


# --- Session add page: inline demands and sellers ---------------------------------------------


def test_the_session_add_page_has_demand_and_seller_inlines(admin_client: Client) -> None:
    # given a logged-in superuser
    # when the session add page is opened
    response = admin_client.get(SESSION_ADD)
    # then it shows both inlines with the prefixes the POST tests use, and sellers capped at 10
    page = response.content.decode()
    assert response.status_code == 200
    for name in ("demands-TOTAL_FORMS", "demands-__prefix__-item_name", "demands-__prefix__-max_price",
                 "sellers-TOTAL_FORMS", "sellers-__prefix__-handle",
                 "sellers-__prefix__-customer_retention_weight"):
        assert f'name="{name}"' in page
    assert re.search(r'name="sellers-MAX_NUM_FORMS"[^>]*value="10"', page)


def test_a_valid_session_is_saved_with_its_demands_and_sellers(admin_client: Client) -> None:
    # given a session with two demands and two sellers
    data = session_post([demand("USB-C Cable"), demand("iPhone Case", "2", "10.00", "18.00")],
                        [seller("@QuickTech"), seller("@CableHouse", "0.80", "0.20")])
    # when it is posted
    response = admin_client.post(SESSION_ADD, data)
    # then the admin redirects and every row is written
    assert response.status_code == 302, errors(response)
    session = Session.objects.get(name="admin-made")
    assert sorted(session.demands.values_list("item_name", flat=True)) == ["USB-C Cable", "iPhone Case"]
    assert sorted(session.sellers.values_list("handle", flat=True)) == ["@CableHouse", "@QuickTech"]


@pytest.mark.parametrize(("demands", "sellers", "message"), [
    pytest.param([demand(low="9.50", high="9.00")], [], "Minimum price must not exceed maximum price.",
                 id="demand-min-above-max"),
    pytest.param([demand(quantity="0")], [], "Quantity must be at least 1.", id="demand-quantity-0"),
    pytest.param([demand(low="-1.00")], [], "Minimum price cannot be negative.", id="demand-negative-min"),
    pytest.param([demand("USB-C Cable"), demand("usb-c CABLE")], [], f"'usb-c CABLE' {TWICE}",
                 id="demand-names-differ-in-case"),
    pytest.param([demand()], [seller("@QuickTech"), seller("@quicktech")], f"'@quicktech' {TWICE}",
                 id="seller-handles-differ-in-case"),
    pytest.param([demand()], [seller("@QuickTech"), seller("@QuickTech")], f"'@QuickTech' {TWICE}",
                 id="seller-handles-equal"),
    pytest.param([demand()], [seller(f"@S{i}") for i in range(11)], "Please submit at most 10 forms.",
                 id="11-sellers"),
    pytest.param([demand()], [seller("@QuickTech", "0.60", "0.60")],
                 "Customer retention and profit maximization weights must sum to 1.", id="weights-sum"),
    pytest.param([demand()], [seller("@QuickTech", "1.50", "-0.50")],
                 "Ensure this value is less than or equal to 1.", id="weight-above-1"),
    pytest.param([demand()], [seller("QuickTech")],
                 "A handle is @ followed by 1–50 letters (any script, accents included), digits or underscores",
                 id="handle-format"),
])
def test_a_bad_session_re_renders_with_a_readable_error_and_writes_nothing(
        admin_client: Client, demands: list[dict[str, Any]], sellers: list[dict[str, Any]], message: str) -> None:
    # given a session whose inline demands or sellers break a rule
    before = totals()
    # when it is posted
    response = admin_client.post(SESSION_ADD, session_post(demands, sellers))
    # then the form comes back with the rule in words, and nothing was written
    assert response.status_code == 200
    assert any(message in e for e in errors(response)), errors(response)
    assert totals() == before


def test_two_inline_demands_with_blank_names_get_a_form_error_not_a_500(admin_client: Client) -> None:
    # given two inline demands whose item names are both left blank
    data = session_post([demand(""), demand("")], [])
    # when the session is posted
    response = admin_client.post(SESSION_ADD, data)
    # then each row says its name is required, and nothing is written
    assert response.status_code == 200
    assert "This field is required." in errors(response)
    assert totals() == (0, 0, 0, 0)


# --- Session change page: rules against rows already stored -----------------------------------


def existing_demands(session: Session) -> list[dict[str, Any]]:
    return [{"id": d.pk, "session": session.pk, **demand(d.item_name, str(d.quantity), str(d.min_price),
                                                          str(d.max_price))} for d in session.demands.all()]


def existing_sellers(session: Session) -> list[dict[str, Any]]:
    return [{"id": s.pk, "session": session.pk, **seller(s.handle, str(s.customer_retention_weight),
                                                         str(s.profit_maximization_weight))}
            for s in session.sellers.all()]


def session_change_post(session: Session, new_demands: list[dict[str, Any]], new_sellers: list[dict[str, Any]]
                        ) -> dict[str, Any]:
    demands, sellers = existing_demands(session), existing_sellers(session)
    return {"name": session.name, "description": "", "owner": "",
            **formset("demands", demands + new_demands, initial=len(demands)),
            **formset("sellers", sellers + new_sellers, initial=len(sellers))}


def test_an_11th_inline_seller_on_a_full_session_is_refused(admin_client: Client) -> None:
    # given a stored session with 10 sellers
    session = SessionFactory()
    BuyerDemandFactory(session=session)
    SellerFactory.create_batch(10, session=session)
    before = totals()
    # when its change page is saved with one more seller
    response = admin_client.post(url(Session, "change", session.pk),
                                 session_change_post(session, [], [seller("@Eleventh")]))
    # then the page says so and the session still has 10
    assert response.status_code == 200
    assert "Please submit at most 10 forms." in errors(response)
    assert totals() == before


def test_a_new_inline_demand_that_repeats_a_stored_one_in_another_case_is_refused(admin_client: Client) -> None:
    # given a stored session demanding "USB-C Cable"
    session = SessionFactory()
    BuyerDemandFactory(session=session, item_name="USB-C Cable")
    before = totals()
    # when "usb-c cable" is added on its change page
    response = admin_client.post(url(Session, "change", session.pk),
                                 session_change_post(session, [demand("usb-c cable")], []))
    # then the duplicate is named and nothing changes
    assert response.status_code == 200
    assert f"'usb-c cable' {TWICE}" in errors(response)
    assert totals() == before


# --- Seller change page: inline inventory -----------------------------------------------------


def seller_post(target: Seller, new_lines: list[dict[str, Any]]) -> dict[str, Any]:
    stored = [{"id": i.pk, "seller": target.pk, **line(i.item_name, str(i.cost_price), str(i.least_price),
                                                        str(i.selling_price))} for i in target.inventory.all()]
    return {"session": target.session.pk, "handle": target.handle, "style": target.style,
            "customer_retention_weight": str(target.customer_retention_weight),
            "profit_maximization_weight": str(target.profit_maximization_weight),
            **formset("inventory", stored + new_lines, initial=len(stored))}


@pytest.fixture
def stocked() -> Seller:
    target = SellerFactory(handle="@QuickTech")
    InventoryItemFactory(seller=target, item_name="USB-C Cable")
    return target


def test_the_seller_change_page_has_an_inventory_inline(admin_client: Client, stocked: Seller) -> None:
    # given a seller with one inventory line
    # when its change page is opened
    response = admin_client.get(url(Seller, "change", stocked.pk))
    # then the inventory inline is there with its stored line
    page = response.content.decode()
    assert response.status_code == 200
    assert 'name="inventory-TOTAL_FORMS"' in page and 'value="USB-C Cable"' in page


def test_a_valid_inventory_line_is_added(admin_client: Client, stocked: Seller) -> None:
    # given a new line with a valid ladder
    data = seller_post(stocked, [line("iPhone Case", "8.00", "12.00", "18.00")])
    # when the seller is saved
    response = admin_client.post(url(Seller, "change", stocked.pk), data)
    # then the line is stored next to the old one
    assert response.status_code == 302, errors(response)
    assert sorted(stocked.inventory.values_list("item_name", flat=True)) == ["USB-C Cable", "iPhone Case"]


@pytest.mark.parametrize(("new_lines", "message"), [
    pytest.param([line("iPhone Case", "8.00", "19.00", "18.00")], "Least price must not exceed the selling price.",
                 id="least-above-selling"),
    pytest.param([line("iPhone Case", "12.00", "12.00", "18.00")],
                 "Cost price must be below the least price (the seller's floor).", id="cost-equals-least"),
    pytest.param([line("iPhone Case", "13.00", "12.00", "18.00")],
                 "Cost price must be below the least price (the seller's floor).", id="cost-above-least"),
    pytest.param([line("iPhone Case", "-1.00", "12.00", "18.00")], "Cost price cannot be negative.",
                 id="negative-cost"),
    pytest.param([line("iPhone Case"), line("IPHONE CASE")], f"'IPHONE CASE' {TWICE}", id="two-new-lines"),
    pytest.param([line("usb-c cable")], f"'usb-c cable' {TWICE}", id="repeats-stored-line"),
])
def test_a_bad_inventory_line_re_renders_with_a_readable_error(admin_client: Client, stocked: Seller,
                                                               new_lines: list[dict[str, Any]], message: str) -> None:
    # given a seller with one stored line, and new lines that break a rule
    before = totals()
    # when the seller is saved
    response = admin_client.post(url(Seller, "change", stocked.pk), seller_post(stocked, new_lines))
    # then the form comes back with the rule in words, and nothing was written
    assert response.status_code == 200
    assert any(message in e for e in errors(response)), errors(response)
    assert totals() == before
    assert list(stocked.inventory.values_list("item_name", flat=True)) == ["USB-C Cable"]


# --- Seller add page --------------------------------------------------------------------------


def seller_add_post(session: Session, handle: str) -> dict[str, Any]:
    return {"session": session.pk, **seller(handle), **formset("inventory", [])}


def test_the_seller_add_form_refuses_an_11th_seller(admin_client: Client) -> None:
    # given a session with 10 sellers
    session = SessionFactory(name="full-house")
    SellerFactory.create_batch(10, session=session)
    # when an 11th seller is added from the seller admin
    response = admin_client.post(SELLER_ADD, seller_add_post(session, "@Eleventh"))
    # then the form names the cap and the session, and nothing is written
    assert response.status_code == 200
    assert "A session has at most 10 sellers; full-house already has 10." in errors(response)
    assert session.sellers.count() == 10


def test_the_seller_add_form_refuses_a_handle_taken_in_the_session(admin_client: Client) -> None:
    # given @QuickTech in a session
    session = SessionFactory()
    SellerFactory(session=session, handle="@QuickTech")
    # when @quicktech is added to the same session
    response = admin_client.post(SELLER_ADD, seller_add_post(session, "@quicktech"))
    # then the unique rule is shown in words
    assert response.status_code == 200
    assert ("Another seller in this session already uses this handle (handles are compared ignoring case)."
            in errors(response))
    assert session.sellers.count() == 1


def test_the_seller_add_form_saves_a_10th_seller(admin_client: Client) -> None:
    # given a session with 9 sellers
    session = SessionFactory()
    SellerFactory.create_batch(9, session=session)
    # when a 10th is added
    response = admin_client.post(SELLER_ADD, seller_add_post(session, "@Tenth"))
    # then it is saved
    assert response.status_code == 302, errors(response)
    assert session.sellers.count() == 10


# --- Runs and their records: read-only ----------------------------------------------------------


@pytest.fixture
def records() -> dict[type[models.Model], models.Model]:
    """One of each run record, linked as a finished batch would leave them."""
    item = InventoryItemFactory(item_name="USB-C Cable")
    session = item.seller.session
    BuyerDemandFactory(session=session, item_name="USB-C Cable")
    batch = Batch.objects.create(session=session, item_name="USB-C Cable", runs_requested=1, agents={})
    run = NegotiationRun.objects.create(batch=batch, session=session, item_name="USB-C Cable", agents={},
                                        status=NegotiationRun.Status.COMPLETED)
    message = Message.objects.create(run=run, round_no=1, sender_type="buyer", sender="buyer",
                                     recipients=[item.seller.handle], text="Best price?", action="counter",
                                     price=Decimal("6.00"))
    event = RunEvent.objects.create(run=run, message=message, round_no=1, actor="buyer", kind="leak")
    outcome = Outcome.objects.create(run=run, decision="deal", reason="accepted", chosen_seller=item.seller,
                                     chosen_handle=item.seller.handle, final_price=Decimal("6.50"))
    return {Batch: batch, NegotiationRun: run, Message: message, RunEvent: event, Outcome: outcome}


READ_ONLY = [Batch, NegotiationRun, Message, Outcome, RunEvent]


@pytest.mark.parametrize("model", READ_ONLY, ids=lambda m: m.__name__)
def test_read_only_changelists_and_change_pages_render(admin_client: Client, records: dict, model: Any) -> None:
    # given one stored record of the model
    obj = records[model]
    # when its changelist and its change page are opened
    listing = admin_client.get(url(model, "changelist"))
    detail = admin_client.get(url(model, "change", obj.pk))
    # then both render, the list linking to the record and the change page as a view with no save button
    # (a batch's only editable fields are its name and tags: tests/analytics/test_run_table.py)
    assert listing.status_code == 200
    assert url(model, "change", obj.pk) in listing.content.decode()
    assert detail.status_code == 200
    assert ('name="_save"' in detail.content.decode()) == (model is Batch)


@pytest.mark.parametrize("model", READ_ONLY, ids=lambda m: m.__name__)
def test_read_only_models_have_no_add_page(admin_client: Client, model: Any) -> None:
    # given a superuser
    # when the add page is requested, by GET and by POST
    # then both are forbidden
    assert admin_client.get(url(model, "add")).status_code == 403
    assert admin_client.post(url(model, "add"), {}).status_code == 403


def test_a_run_cannot_be_changed_by_posting_its_change_page(admin_client: Client, records: dict) -> None:
    # given a completed run
    run = records[NegotiationRun]
    # when its change page is posted with a new status
    response = admin_client.post(url(NegotiationRun, "change", run.pk), {"status": "queued", "item_name": "X"})
    # then the admin refuses and the run is unchanged
    assert response.status_code == 403
    run.refresh_from_db()
    assert (run.status, run.item_name) == ("completed", "USB-C Cable")


def test_the_session_and_seller_changelists_render(admin_client: Client, records: dict) -> None:
    # given a session with a demand and a seller
    # when their changelists are opened
    # then both render with the session's counts
    assert admin_client.get(url(Session, "changelist")).status_code == 200
    assert admin_client.get(url(Seller, "changelist")).status_code == 200


def test_the_cancel_action_cancels_a_batch_and_its_queued_runs(admin_client: Client, records: dict) -> None:
    # given a queued batch with one queued run
    batch = records[Batch]
    queued = NegotiationRun.objects.create(batch=batch, session=batch.session, item_name="USB-C Cable", agents={})
    # when the cancel action is applied from the changelist
    response = admin_client.post(url(Batch, "changelist"), {"action": "cancel", "_selected_action": [batch.pk]})
    # then the batch and the queued run are cancelled, and the completed run is untouched
    assert response.status_code == 302
    batch.refresh_from_db()
    queued.refresh_from_db()
    assert batch.status == Batch.Status.CANCELLED and queued.status == NegotiationRun.Status.CANCELLED
    assert NegotiationRun.objects.get(pk=records[NegotiationRun].pk).status == "completed"

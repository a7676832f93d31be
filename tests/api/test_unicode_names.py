"""Item names and handles in any script (issue 13, item 5): NFC on the way in, one comparison key for the
services' checks and the unique constraints, and a 400 (never a 500) when a name clashes, on
POST /api/sessions/import, /sessions/{id}/buyer-config and /sessions/{id}/sellers."""

from __future__ import annotations

import unicodedata
from typing import Any

import pytest

from negotiation.engine.names import HANDLE_RULE
from negotiation.models import BuyerDemand, InventoryItem, NegotiationRun, Seller, Session
from tests.api.conftest import BASELINE

COMPOSED, DECOMPOSED = "Caf\u00e9", "Cafe\u0301"
SAME = [("İpod", "ipod"), ("ΟΔΟΣ", "οδοσ"), ("ΟΔΟΣ", "οδος"), (COMPOSED, DECOMPOSED), ("Straße", "STRASSE"),
        ("CAFE\u0301", "café")]
DIFFERENT = [("ıpod", "ipod"), ("Café", "Cafe")]


def demand(name: str) -> dict[str, Any]:
    return {"item_name": name, "quantity": 1, "min_price": "5.00", "max_price": "20.00"}


def line(name: str, least: str = "12.00") -> dict[str, Any]:
    return {"item_name": name, "cost_price": "5.00", "selling_price": "25.00", "least_price": least}


def document(demands: list[str], sellers: list[tuple[str, list[str]]]) -> dict[str, Any]:
    return {"name": "unicode", "buyer": {"item_demands": [demand(n) for n in demands]},
            "sellers": [{"handle": h, "inventory": [line(n) for n in items]} for h, items in sellers]}


@pytest.mark.parametrize(("a", "b"), SAME)
def test_import_refuses_one_item_demanded_twice_in_any_case_or_form(api: Any, a: str, b: str) -> None:
    r = api.post("/api/sessions/import", document([a, b], [("@S", [a])]), format="json")
    assert r.status_code == 400, r.content
    assert "already has a demand for this item" in r.json()["errors"]["buyer.item_demands[1].item_name"][0]
    assert not Session.objects.exists()


@pytest.mark.parametrize(("a", "b"), SAME)
def test_import_refuses_one_item_stocked_twice_and_one_handle_twice(api: Any, a: str, b: str) -> None:
    r = api.post("/api/sessions/import", document([a], [("@S", [a, b])]), format="json")
    assert r.status_code == 400 and "sellers[0].inventory[1].item_name" in r.json()["errors"], r.content
    r = api.post("/api/sessions/import", document([a], [("@Ohrwurm_Köln", [a]),
                                                          (unicodedata.normalize("NFD", "@OHRWURM_KÖLN"), [b])]),
                 format="json")
    assert r.status_code == 400 and "Duplicate handle" in r.json()["errors"]["sellers[1].handle"][0], r.content
    assert not Session.objects.exists()


@pytest.mark.parametrize(("a", "b"), DIFFERENT)
def test_different_names_are_two_items(api: Any, a: str, b: str) -> None:
    r = api.post("/api/sessions/import", document([a, b], [("@S", [a, b])]), format="json")
    assert r.status_code == 201, r.content
    assert BuyerDemand.objects.count() == 2 and InventoryItem.objects.count() == 2


def test_names_and_handles_are_stored_nfc_with_their_key(api: Any) -> None:
    r = api.post("/api/sessions/import", document([DECOMPOSED], [(unicodedata.normalize("NFD", "@Köln"),
                                                                   [DECOMPOSED.upper()])]), format="json")
    assert r.status_code == 201, r.content
    d, i, s = BuyerDemand.objects.get(), InventoryItem.objects.get(), Seller.objects.get()
    assert (d.item_name, i.item_name, s.handle) == (COMPOSED, "CAFÉ", "@Köln")
    assert d.item_key == i.item_key == "café" and s.handle_key == "@köln"


@pytest.mark.parametrize(("a", "b"), SAME)
def test_buyer_config_refuses_one_item_twice_with_a_400(api: Any, sample: Session, a: str, b: str) -> None:
    before = sorted(BuyerDemand.objects.filter(session=sample).values_list("item_name", flat=True))
    r = api.post(f"/api/sessions/{sample.pk}/buyer-config", {"items": [demand(a), demand(b)]}, format="json")
    assert r.status_code == 400, r.content
    assert "listed twice" in r.json()["errors"]["items[1].item_name"][0]
    assert sorted(BuyerDemand.objects.filter(session=sample).values_list("item_name", flat=True)) == before


@pytest.mark.parametrize(("a", "b"), SAME)
def test_sellers_refuse_one_item_twice_and_a_handle_in_another_case(api: Any, sample: Session, a: str,
                                                                    b: str) -> None:
    r = api.post(f"/api/sessions/{sample.pk}/sellers", {"handle": "@Neu", "inventory": [line(a), line(b)]},
                 format="json")
    assert r.status_code == 400 and "inventory[1].item_name" in r.json()["errors"], r.content
    r = api.post(f"/api/sessions/{sample.pk}/sellers", {"handle": "@TECHMART"}, format="json")
    assert r.status_code == 400 and "already uses @TECHMART" in r.json()["errors"]["handle"][0], r.content
    assert not Seller.objects.filter(session=sample, handle__in=["@Neu", "@TECHMART"]).exists()


@pytest.mark.parametrize("handle", ["@Ohrwurm_Köln", "@東京電機", "@Σοφία_2"])
def test_handles_in_any_script(api: Any, sample: Session, handle: str) -> None:
    r = api.post(f"/api/sessions/{sample.pk}/sellers", {"handle": handle, "inventory": [line("iPhone Case")]},
                 format="json")
    assert r.status_code == 201, r.content
    assert r.json()["handle"] == handle
    # the same handle in another case or Unicode form is the same seller
    again = unicodedata.normalize("NFD", handle.upper())
    r = api.post(f"/api/sessions/{sample.pk}/sellers", {"handle": again}, format="json")
    assert r.status_code == 400 and "handle" in r.json()["errors"], r.content


@pytest.mark.parametrize("handle", ["@Quick-Tech", "@Quick Tech", "@€uro", "TechMart", "@" + "x" * 51])
def test_a_bad_handle_is_refused_with_exactly_what_is_allowed(api: Any, sample: Session, handle: str) -> None:
    r = api.post(f"/api/sessions/{sample.pk}/sellers", {"handle": handle}, format="json")
    assert r.status_code == 400, r.content
    assert r.json()["errors"]["handle"] == [HANDLE_RULE]


def test_a_batch_for_an_item_includes_every_seller_that_stocks_it_under_any_form(api: Any) -> None:
    # the case: 'Café' composed and decomposed were two items, and a batch left a seller out
    doc = document([COMPOSED], [("@Eins", [COMPOSED]), ("@Zwei", [DECOMPOSED]), ("@Drei", ["CAFÉ"]),
                                ("@Vier", ["Cafe"])])
    session = api.post("/api/sessions/import", doc, format="json").json()
    r = api.post("/api/batches", {"session": session["id"], "item_name": "CAFE\u0301", "runs": 1,
                                  "agents": BASELINE}, format="json")
    assert r.status_code == 201, r.content
    run = NegotiationRun.objects.get()
    assert sorted(s["handle"] for s in run.scenario["sellers"]) == ["@Drei", "@Eins", "@Zwei"]


# --- a clash that gets past the checks is still a 400 naming the rule --------------------------------

def test_an_integrity_error_behind_a_weaker_check_is_a_400_naming_the_rule(api: Any, sample: Session,
                                                                          monkeypatch: pytest.MonkeyPatch) -> None:
    from negotiation import documents
    from negotiation.services import sessions

    # given the services' checks compare names the old way (Python's lower(), which differs from the key)
    monkeypatch.setattr(documents, "name_key", str.lower)
    monkeypatch.setattr(sessions, "name_key", str.lower)
    before = sorted(BuyerDemand.objects.filter(session=sample).values_list("item_name", flat=True))
    # when two names that the key calls the same reach the database
    r = api.post(f"/api/sessions/{sample.pk}/buyer-config", {"items": [demand("ΟΔΟΣ"), demand("οδοσ")]},
                 format="json")
    # then the unique constraint's own message comes back as a 400, and nothing changed
    assert r.status_code == 400, r.content
    assert r.json()["errors"] == {"item_name": [
        "The buyer already has a demand for this item (item names are compared ignoring case)."]}
    assert sorted(BuyerDemand.objects.filter(session=sample).values_list("item_name", flat=True)) == before
    r = api.post(f"/api/sessions/{sample.pk}/sellers", {"handle": "@Neu", "inventory": [
        line("Straße"), line("STRASSE")]}, format="json")
    assert r.status_code == 400 and list(r.json()["errors"]) == ["item_name"], r.content
    assert not Seller.objects.filter(handle="@Neu").exists()
    monkeypatch.setattr(sessions, "name_key", lambda text: "never-matches")
    r = api.post(f"/api/sessions/{sample.pk}/sellers", {"handle": "@techmart"}, format="json")
    assert r.status_code == 400 and r.json()["errors"] == {"handle": [
        "Another seller in this session already uses this handle (handles are compared ignoring case)."]}, r.content


def test_length_limits_apply_to_the_nfc_form(api: Any, sample: Session) -> None:
    # 50 accented letters typed decomposed are 101 code points, 51 once composed: a valid handle
    handle = "@" + "e\u0301" * 50
    r = api.post(f"/api/sessions/{sample.pk}/sellers", {"handle": handle}, format="json")
    assert r.status_code == 201, r.content
    assert r.json()["handle"] == "@" + "é" * 50


# --- the migration that filled the keys of rows stored before them --------------------------------

def test_the_migration_fills_nfc_names_and_keys_and_stops_on_a_clash(sample: Session) -> None:
    import importlib

    from django.apps import apps
    from django.db import connection, transaction

    fill_keys = importlib.import_module("negotiation.migrations.0009_name_keys_unicode_handles").fill_keys
    demand = BuyerDemand.objects.get(session=sample, item_name="iPhone Case")
    seller = Seller.objects.get(session=sample, handle="@TechMart")
    with connection.cursor() as cur:  # rows as an older version wrote them: decomposed, no key
        cur.execute("UPDATE negotiation_buyerdemand SET item_name = %s, item_key = '' WHERE id = %s",
                    [DECOMPOSED, demand.pk])
        cur.execute("UPDATE negotiation_seller SET handle_key = '' WHERE id = %s", [seller.pk])
    fill_keys(apps, None)
    demand.refresh_from_db()
    seller.refresh_from_db()
    assert (demand.item_name, demand.item_key, seller.handle_key) == (COMPOSED, "café", "@techmart")
    # two lines that lower() told apart but the key does not: the migration names them and writes nothing
    line = InventoryItem.objects.filter(seller=seller).first()
    with connection.cursor() as cur:
        cur.execute("UPDATE negotiation_inventoryitem SET item_name = 'Straße', item_key = 'x' WHERE id = %s",
                    [line.pk])
        cur.execute("INSERT INTO negotiation_inventoryitem (id, seller_id, item_name, item_key, cost_price, "
                    "selling_price, least_price) VALUES (gen_random_uuid(), %s, 'STRASSE', 'y', 1, 3, 2)",
                    [seller.pk])
    with pytest.raises(RuntimeError, match="Straße.*STRASSE|STRASSE.*Straße"), transaction.atomic():
        fill_keys(apps, None)

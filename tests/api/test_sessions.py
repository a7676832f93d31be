"""Sessions over HTTP: CRUD, buyer config, sellers, import/export round trip, and every bad input."""

from __future__ import annotations

import copy
from typing import Any

import pytest

from negotiation.models import BuyerDemand, InventoryItem, Seller, Session
from negotiation.services.scenarios import scenario_document

pytestmark = pytest.mark.django_db

SELLER = {"handle": "@TechStore", "style": "neutral",
          "priorities": {"customer_retention": 0.6, "profit_maximization": 0.4},
          "inventory": [{"item_name": "Laptop", "cost_price": 700, "selling_price": 1200, "least_price": 900}]}


def _new(api: Any, **body: Any) -> dict:
    r = api.post("/api/sessions", body or {"description": "Laptop negotiation scenario"}, format="json")
    assert r.status_code == 201, r.content
    return r.json()


def test_create_list_read_update_delete(api: Any) -> None:
    # given a new session (spec 10.1 request)
    created = _new(api)
    sid = created["id"]
    assert created["session_id"] == sid and created["created_at"] and created["description"].startswith("Laptop")
    # when it is listed, read, renamed
    listed = api.get("/api/sessions").json()
    assert listed["count"] == 1 and listed["results"][0]["id"] == sid
    assert api.get(f"/api/sessions/{sid}").json()["buyer"] == {"item_demands": []}
    r = api.patch(f"/api/sessions/{sid}", {"name": "laptops"}, format="json")
    assert r.status_code == 200 and r.json()["name"] == "laptops"
    # then it can be deleted, and is gone
    assert api.delete(f"/api/sessions/{sid}").status_code == 204
    assert api.get(f"/api/sessions/{sid}").status_code == 404


def test_buyer_config_replaces_the_demands(api: Any) -> None:
    sid = _new(api)["id"]
    items = [{"item_name": "Laptop", "quantity": 1, "min_price": 800, "max_price": 1500},
             {"item_name": "Mouse", "quantity": 2, "min_price": 5, "max_price": 20}]
    r = api.post(f"/api/sessions/{sid}/buyer-config", {"items": items}, format="json")
    assert r.status_code == 200, r.content
    assert [i["item_name"] for i in r.json()["items"]] == ["Laptop", "Mouse"]
    # a second call is the whole configuration: Mouse is gone
    r = api.post(f"/api/sessions/{sid}/buyer-config", {"items": items[:1]}, format="json")
    assert r.status_code == 200
    assert list(BuyerDemand.objects.filter(session_id=sid).values_list("item_name", flat=True)) == ["Laptop"]


@pytest.mark.parametrize(("items", "path"), [
    ([{"item_name": "Laptop", "quantity": 1, "min_price": -1, "max_price": 10}], "items[0].min_price"),
    ([{"item_name": "Laptop", "quantity": 1, "min_price": 20, "max_price": 10}], "items[0]"),
    ([{"item_name": "Laptop", "quantity": 0, "min_price": 1, "max_price": 10}], "items[0].quantity"),
    ([{"item_name": "Laptop", "min_price": 1, "max_price": 10},
      {"item_name": "laptop", "min_price": 1, "max_price": 10}], "items[1].item_name"),
    ([{"item_name": "Laptop", "min_price": "abc", "max_price": 10}], "items[0].min_price"),
    ([], "items"),
])
def test_buyer_config_bad_input_is_400_and_writes_nothing(api: Any, items: list, path: str) -> None:
    sid = _new(api)["id"]
    api.post(f"/api/sessions/{sid}/buyer-config", {"items": [
        {"item_name": "Keep", "min_price": 1, "max_price": 2}]}, format="json")
    r = api.post(f"/api/sessions/{sid}/buyer-config", {"items": items}, format="json")
    assert r.status_code == 400, r.content
    body = r.json()
    assert path in body["errors"], body
    assert body["detail"]
    assert list(BuyerDemand.objects.filter(session_id=sid).values_list("item_name", flat=True)) == ["Keep"]


def test_add_a_seller(api: Any) -> None:
    sid = _new(api)["id"]
    r = api.post(f"/api/sessions/{sid}/sellers", SELLER, format="json")
    assert r.status_code == 201, r.content
    body = r.json()
    assert body["handle"] == "@TechStore" and body["priorities"] == {"customer_retention": "0.60",
                                                                    "profit_maximization": "0.40"}
    assert body["inventory"][0]["least_price"] == "900.00"
    # the spec 5.2 "personality" shape works too
    r = api.post(f"/api/sessions/{sid}/sellers", {
        "handle": "@Other", "personality": {"style": "rude", "customer_retention_weight": 0.2,
                                            "profit_maximization_weight": 0.8}}, format="json")
    assert r.status_code == 201 and r.json()["style"] == "rude"
    # and a seller can be removed
    assert api.delete(f"/api/sessions/{sid}/sellers/{r.json()['id']}").status_code == 204
    assert Seller.objects.filter(session_id=sid).count() == 1


def _with(**changes: Any) -> dict:
    seller = copy.deepcopy(SELLER)
    for key, value in changes.items():
        if key.startswith("inv_"):
            seller["inventory"][0][key[4:]] = value
        else:
            seller[key] = value
    return seller


@pytest.mark.parametrize(("seller", "path"), [
    (_with(inv_least_price=1300), "inventory[0]"),  # least above selling
    (_with(inv_cost_price=950), "inventory[0]"),  # cost not below least
    (_with(inv_cost_price=-5), "inventory[0].cost_price"),  # negative price
    (_with(handle="TechStore"), "handle"),  # no @
    (_with(handle="@Tech Store"), "handle"),
    (_with(priorities={"customer_retention": 0.7, "profit_maximization": 0.7}), "non_field_errors"),
    (_with(priorities={"customer_retention": 1.5, "profit_maximization": 0}), "priorities.customer_retention"),
    (_with(style="grumpy"), "style"),
    (_with(inventory="lots"), "inventory"),
    (_with(inventory=[SELLER["inventory"][0], SELLER["inventory"][0]]), "inventory[1].item_name"),
])
def test_bad_seller_is_400_with_the_field_path(api: Any, seller: dict, path: str) -> None:
    sid = _new(api)["id"]
    r = api.post(f"/api/sessions/{sid}/sellers", seller, format="json")
    assert r.status_code == 400, r.content
    assert path in r.json()["errors"], r.json()
    assert not Seller.objects.filter(session_id=sid).exists()


def test_duplicate_handle_and_the_eleventh_seller_are_refused(api: Any) -> None:
    sid = _new(api)["id"]
    assert api.post(f"/api/sessions/{sid}/sellers", SELLER, format="json").status_code == 201
    r = api.post(f"/api/sessions/{sid}/sellers", _with(handle="@techstore"), format="json")
    assert r.status_code == 400 and "already uses" in r.json()["errors"]["handle"][0]
    for i in range(9):
        assert api.post(f"/api/sessions/{sid}/sellers", _with(handle=f"@S{i}"), format="json").status_code == 201
    r = api.post(f"/api/sessions/{sid}/sellers", _with(handle="@Eleventh"), format="json")
    assert r.status_code == 400 and "at most 10 sellers" in r.json()["detail"]
    assert Seller.objects.filter(session_id=sid).count() == 10


def test_import_then_export_round_trips(api: Any) -> None:
    doc = scenario_document("spec_sample")
    r = api.post("/api/sessions/import", doc, format="json")
    assert r.status_code == 201, r.content
    sid = r.json()["id"]
    assert len(r.json()["sellers"]) == 4
    exported = api.get(f"/api/sessions/{sid}/export").json()
    # re-importing the export gives the same document again
    again = api.post("/api/sessions/import", exported, format="json")
    assert again.status_code == 201
    assert api.get(f"/api/sessions/{again.json()['id']}/export").json() == exported
    assert {"item_name": "iPhone Case", "quantity": 2, "min_price": "10.00", "max_price": "18.00"} in exported[
        "buyer"]["item_demands"]
    assert {s["handle"] for s in exported["sellers"]} == {"@TechMart", "@CableHouse", "@QuickTech", "@BudgetWires"}


def _doc(mutate: Any) -> dict:
    doc = scenario_document("spec_sample")
    mutate(doc)
    return doc


@pytest.mark.parametrize(("doc", "path"), [
    (_doc(lambda d: d["sellers"][1]["inventory"][0].update(least_price="9.99")), "sellers[1].inventory[0]"),
    (_doc(lambda d: d["sellers"][2].update(handle="@techmart")), "sellers[2].handle"),
    (_doc(lambda d: d["sellers"].extend(
        [dict(d["sellers"][3], handle=f"@X{i}") for i in range(7)])), "sellers"),
    (_doc(lambda d: d["buyer"]["item_demands"][0].update(min_price="30")), "buyer.item_demands[0]"),
    (_doc(lambda d: d["buyer"]["item_demands"][1].update(max_price="-1")), "buyer.item_demands[1].max_price"),
    (_doc(lambda d: d["sellers"][0].update(priorities=["not", "a", "dict"])), "sellers[0].priorities"),
    (_doc(lambda d: d.pop("buyer")), "buyer"),
    (["not", "an", "object"], "non_field_errors"),
])
def test_a_bad_import_is_400_and_writes_nothing(api: Any, doc: Any, path: str) -> None:
    r = api.post("/api/sessions/import", doc, format="json")
    assert r.status_code == 400, r.content
    assert path in r.json()["errors"], r.json()
    assert not Session.objects.exists() and not InventoryItem.objects.exists()


def test_a_session_with_runs_cannot_be_deleted(api: Any, sample: Session) -> None:
    r = api.post("/api/batches", {"session": str(sample.pk), "item_name": "USB-C Cable", "runs": 1,
                                  "agents": {"buyer": {"strategy": "linear"}, "seller": {"strategy": "linear"},
                                             "analyst": {"strategy": "linear"}}}, format="json")
    assert r.status_code == 201, r.content
    r = api.delete(f"/api/sessions/{sample.pk}")
    assert r.status_code == 409 and "cannot be deleted" in r.json()["detail"]
    assert Session.objects.filter(pk=sample.pk).exists()


def test_other_users_sessions_are_404_and_staff_see_all(api: Any, other_api: Any, staff: Any,
                                                        sample: Session) -> None:
    from tests.api.conftest import client_for

    sid = sample.pk
    for method, path, body in [("get", f"/api/sessions/{sid}", None), ("patch", f"/api/sessions/{sid}", {}),
                               ("delete", f"/api/sessions/{sid}", None),
                               ("post", f"/api/sessions/{sid}/buyer-config", {"items": []}),
                               ("post", f"/api/sessions/{sid}/sellers", SELLER),
                               ("get", f"/api/sessions/{sid}/export", None)]:
        r = getattr(other_api, method)(path, body, format="json")
        assert r.status_code == 404, (method, path, r.content)
        assert r.json() == {"detail": "No session with this id.", "errors": {}}
    assert other_api.get("/api/sessions").json()["count"] == 0
    assert client_for(staff).get(f"/api/sessions/{sid}").status_code == 200
    assert client_for(staff).get("/api/sessions").json()["count"] == 1
    assert Session.objects.filter(pk=sid).exists()

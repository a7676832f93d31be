"""One model checks the session document everywhere (issue 14): negotiation/documents.py's pydantic models
parse the import, seller-add and buyer-config bodies, a JSON document given to `session_import`, and a
suite's scenario files. A rule changed there changes at every door at once, and a key none of them
defines is refused by all of them (the suite loader and the import service used to drop it silently).

Through the real endpoints (Postgres, DRF's parser, the error handler) and the real suite loader."""

from __future__ import annotations

import copy
from typing import Any

import pytest
from django.core.exceptions import ValidationError

from analytics.benchmarks.suite_files import check_document
from negotiation import documents
from negotiation.models import BuyerDemand, Seller, Session
from negotiation.services.scenarios import scenario_document
from negotiation.services.sessions import session_import

pytestmark = pytest.mark.django_db


@pytest.fixture
def doc() -> dict[str, Any]:
    return copy.deepcopy(scenario_document("spec_sample"))


def test_a_rule_changed_in_the_model_changes_at_every_door(api: Any, sample: Session, doc: dict[str, Any],
                                                           monkeypatch: pytest.MonkeyPatch) -> None:
    # given the handle rule tightened in documents.py alone: no handle may contain "Tech"
    real = documents.handle_problem
    monkeypatch.setattr(documents, "handle_problem",
                        lambda handle: "No Tech here." if "Tech" in handle else real(handle))
    # then the import endpoint, the seller-add endpoint, the import service and the suite loader all refuse
    r = api.post("/api/sessions/import", doc, format="json")
    assert r.status_code == 400 and r.json()["errors"]["sellers[0].handle"] == ["No Tech here."], r.content
    r = api.post(f"/api/sessions/{sample.pk}/sellers", {"handle": "@NewTech"}, format="json")
    assert r.status_code == 400 and r.json()["errors"] == {"handle": ["No Tech here."]}, r.content
    with pytest.raises(ValidationError) as err:
        session_import(document=doc)
    assert err.value.message_dict["sellers[0].handle"] == ["No Tech here."]
    problems = check_document(doc, ["iPhone Case"], "x.json")
    assert "x.json: sellers[0].handle: No Tech here." in problems, problems
    # and nothing was written
    assert Session.objects.count() == 1 and not Seller.objects.filter(handle="@NewTech").exists()


def test_the_item_cap_is_read_once_for_every_door(api: Any, sample: Session, doc: dict[str, Any],
                                                  settings: Any) -> None:
    # given MAMS_MAX_ITEMS lowered to 1 (the API's serializers fixed the cap when they were imported)
    settings.MAMS_MAX_ITEMS = 1
    items = [{"item_name": n, "min_price": "1", "max_price": "2"} for n in ("a", "b")]
    r = api.post(f"/api/sessions/{sample.pk}/buyer-config", {"items": items}, format="json")
    assert r.status_code == 400 and r.json()["errors"] == {"items": [
        "At most 1 item demands per buyer; split them across sessions."]}, r.content
    r = api.post("/api/sessions/import", doc, format="json")
    assert r.status_code == 400 and "buyer.item_demands" in r.json()["errors"], r.content
    with pytest.raises(ValidationError) as err:
        session_import(document=doc)
    assert err.value.message_dict["buyer.item_demands"] == ["At most 1 item demands per buyer; this one has 2."]
    assert any("buyer.item_demands: At most 1" in p for p in check_document(doc, ["iPhone Case"], "x.json"))
    assert sorted(BuyerDemand.objects.filter(session=sample).values_list("item_name", flat=True)) == [
        "USB-C Cable", "iPhone Case"]


@pytest.mark.parametrize(("where", "path"), [
    (lambda d: d["sellers"][2].update(invetory=[]), "sellers[2].invetory"),
    (lambda d: d["buyer"]["item_demands"][0].update(budget="20"), "buyer.item_demands[0].budget"),
    (lambda d: d.update(item_demands=[]), "item_demands"),
])
def test_a_key_the_document_does_not_define_is_refused_by_the_service_and_the_suite_loader(
        doc: dict[str, Any], where: Any, path: str) -> None:
    # given a scenario file with a misspelt or invented key (extra="ignore" dropped it before: the
    # seller's whole inventory vanished without a word)
    where(doc)
    # when the import service or the suite loader reads it, then the key is named with the keys allowed there
    with pytest.raises(ValidationError) as err:
        session_import(document=doc)
    assert list(err.value.message_dict) == [path]
    assert err.value.message_dict[path][0].startswith(f"Unknown key '{path.rsplit('.', 1)[-1]}'")
    assert any(p.startswith(f"x.json: {path}: Unknown key") for p in check_document(doc, ["iPhone Case"], "x.json"))
    assert not Session.objects.exists()


def test_a_seller_may_give_flat_weights_at_every_door(api: Any, sample: Session) -> None:
    # one model means one set of shapes: the flat 5.2 keys the files accepted are accepted by the API too
    r = api.post(f"/api/sessions/{sample.pk}/sellers", {"handle": "@Flat", "customer_retention_weight": "0.3",
                                                        "profit_maximization_weight": 0.7}, format="json")
    assert r.status_code == 201, r.content
    assert r.json()["priorities"] == {"customer_retention": "0.30", "profit_maximization": "0.70"}


def test_the_schema_of_each_body_is_the_models_own(api: Any) -> None:
    schema = api.get("/api/schema/?format=json").json()
    components = schema["components"]["schemas"]
    body = schema["paths"]["/api/sessions/import"]["post"]["requestBody"]["content"]["application/json"]["schema"]
    assert body == {"$ref": "#/components/schemas/SessionDocumentRequest"}
    sellers = components["SessionDocumentRequest"]["properties"]["sellers"]
    assert sellers["maxItems"] == 10 and sellers["items"] == {"$ref": "#/components/schemas/SellerDocumentRequest"}
    line = components["InventoryLineRequest"]
    assert line["additionalProperties"] is False
    assert line["properties"]["least_price"] == {"anyOf": [{"type": "number", "minimum": 0}, {"type": "string"}]}
    demand = components["DemandRequest"]["properties"]["quantity"]
    assert (demand["type"], demand["minimum"]) == ("integer", 1)

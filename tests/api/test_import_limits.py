"""Session import files that are malformed, huge or deeply nested: each is a 4xx whose message says
what to change, answered quickly, and nothing is written (negotiation/api/sessions.py::SessionImportApi,
negotiation/api/common.py::LimitedJSONParser, negotiation/services/sessions.py::session_import)."""

from __future__ import annotations

import copy
import json
import time
from typing import Any

import pytest
from django.core.exceptions import ValidationError

from negotiation.models import BuyerDemand, InventoryItem, Seller, Session
from negotiation.services.scenarios import scenario_document
from negotiation.services.sessions import session_import

pytestmark = pytest.mark.django_db
URL = "/api/sessions/import"


def doc(**changes: Any) -> dict[str, Any]:
    document = copy.deepcopy(scenario_document("spec_sample"))
    document.update(changes)
    return document


def send(api: Any, body: bytes | str, **extra: Any) -> tuple[Any, float]:
    started = time.monotonic()
    response = api.generic("POST", URL, body, content_type="application/json", **extra)
    return response, time.monotonic() - started


def refused(api: Any, body: bytes | str, code: int = 400) -> dict[str, Any]:
    """Post a raw body; it must be refused with `code`, quickly, with a short body, and write nothing."""
    response, seconds = send(api, body)
    assert response.status_code == code, response.content[:500]
    assert seconds < 5, f"took {seconds:.1f} s to refuse"
    assert len(response.content) < 4000, "the error quotes the input back"
    assert not (Session.objects.exists() or Seller.objects.exists() or InventoryItem.objects.exists()
                or BuyerDemand.objects.exists())
    return response.json()


# --- malformed ----------------------------------------------------------------------------------

@pytest.mark.parametrize(("body", "says"), [
    ('{"name": ', "JSON parse error - Expecting value: line 1 column 10"),
    (b'{"name": "\xff\xfe"}', "JSON parse error - 'utf-8' codec can't decode"),
    ('{"name": "a"} trailing', "JSON parse error - Extra data"),
])
def test_text_that_is_not_json_is_400_naming_where_it_breaks(api: Any, body: Any, says: str) -> None:
    # given a body that is not JSON  # when it is imported  # then the parse error is the message
    body_json = refused(api, body)
    assert body_json["detail"].startswith(says) and body_json["errors"]["body"] == [body_json["detail"]]


@pytest.mark.parametrize(("body", "got"), [
    ("[1, 2]", "an array"), ('"a session"', "a string"), ("5", "a number"), ("null", "null"), ("true", "true or false"),
])
def test_a_top_level_that_is_not_an_object_is_400(api: Any, body: str, got: str) -> None:
    assert refused(api, body)["errors"]["non_field_errors"] == [
        f"The session document must be a JSON object with `buyer` and `sellers`; this body is {got}."]


def test_wrong_types_everywhere_are_all_reported_by_path(api: Any) -> None:
    # given a document where every value has the wrong type
    body = {"name": [], "description": {}, "buyer": {"item_demands": [
        {"item_name": {}, "quantity": True, "min_price": [], "max_price": {"x": 1}}, "not an object"]},
        "sellers": [{"handle": [], "style": 4, "priorities": "high", "inventory": {}}, [], "seller"]}
    # when it is imported
    errors = refused(api, json.dumps(body))["errors"]
    # then each bad value is named, and nothing was written (checked by refused)
    for path in ["name", "description", "buyer.item_demands[0].item_name", "buyer.item_demands[0].quantity",
                 "buyer.item_demands[0].min_price", "buyer.item_demands[0].max_price", "buyer.item_demands[1]",
                 "sellers[0].handle", "sellers[0].style", "sellers[0].priorities", "sellers[0].inventory",
                 "sellers[1]", "sellers[2]"]:
        assert path in errors, (path, errors)
    assert errors["sellers[0].style"] == ["Unknown style; use one of: rude, neutral, sweet."]
    for sellers in [{}, "all of them", 7]:
        assert "sellers" in refused(api, json.dumps(doc(sellers=sellers)))["errors"]
    assert "buyer" in refused(api, json.dumps(doc(buyer=[])))["errors"]


# --- huge ---------------------------------------------------------------------------------------

def test_a_50_mb_body_is_413_before_it_is_read(api: Any, settings: Any) -> None:
    body = b'{"description": "' + b"x" * (50 * 1024 * 1024) + b'"}'
    detail = refused(api, body, code=413)["detail"]
    limit = settings.DATA_UPLOAD_MAX_MEMORY_SIZE
    assert detail.startswith(f"The request body is larger than the {limit} bytes allowed (this one is {len(body)} "
                             "bytes).")
    assert "MAMS_MAX_BODY_BYTES" in detail


def test_ten_thousand_sellers_are_refused_at_once_without_validating_each(api: Any) -> None:
    # given 10,000 sellers (each one valid on its own), about 200 KB: under the body limit
    body = json.dumps(doc(sellers=[{"handle": f"@s{i}"} for i in range(10_000)]))
    # when imported: refused by count, in well under the 5 s refused() allows (it took 45 s before)
    response, seconds = send(api, body)
    assert response.status_code == 400 and seconds < 2, (response.status_code, seconds)
    assert response.json()["errors"] == {"sellers": [
        "At most 10 sellers per session; remove some, or split them across sessions."]}


@pytest.mark.parametrize(("build", "path", "says"), [
    (lambda d: d["buyer"].update(item_demands=[
        {"item_name": f"item {i}", "min_price": "1", "max_price": "2"} for i in range(51)]),
     "buyer.item_demands", "At most 50 item demands per buyer; split them across sessions."),
    (lambda d: d["sellers"][1].update(inventory=[
        {"item_name": f"item {i}", "cost_price": "1", "selling_price": "3", "least_price": "2"} for i in range(5000)]),
     "sellers[1].inventory", "At most 50 inventory lines per seller; list only the items this marketplace negotiates."),
])
def test_too_many_items_are_refused_with_the_cap(api: Any, build: Any, path: str, says: str) -> None:
    document = doc()
    build(document)
    assert refused(api, json.dumps(document))["errors"] == {path: [says]}


def test_buyer_config_has_the_same_item_cap(api: Any, sample: Session) -> None:
    items = [{"item_name": f"item {i}", "min_price": "1", "max_price": "2"} for i in range(51)]
    r = api.post(f"/api/sessions/{sample.pk}/buyer-config", {"items": items}, format="json")
    assert r.status_code == 400 and r.json()["errors"] == {"items": [
        "At most 50 item demands per buyer; split them across sessions."]}
    assert sample.demands.count() == 2


@pytest.mark.parametrize(("field", "limit"), [("name", 200), ("description", 10_000)])
def test_a_one_megabyte_string_is_refused_with_the_field_length(api: Any, field: str, limit: int) -> None:
    errors = refused(api, json.dumps(doc(**{field: "x" * 1_000_000})))["errors"]
    assert errors == {field: [f"Ensure this field has no more than {limit} characters."]}


@pytest.mark.parametrize(("where", "path"), [
    (lambda d, big: d["sellers"][0].update(handle=big), "sellers[0].handle"),
    (lambda d, big: d["sellers"][0].update(style=big), "sellers[0].style"),
    (lambda d, big: d["sellers"][0]["inventory"][0].update(item_name=big), "sellers[0].inventory[0].item_name"),
    (lambda d, big: d["buyer"]["item_demands"][0].update(min_price=big), "buyer.item_demands[0].min_price"),
])
def test_a_one_megabyte_string_anywhere_is_400_without_quoting_it_back(api: Any, where: Any, path: str) -> None:
    document = doc()
    where(document, "9" * 1_000_000)
    body = refused(api, json.dumps(document))  # refused() also checks the answer is under 4 KB
    assert list(body["errors"]) == [path]


def test_a_document_at_every_limit_imports(api: Any) -> None:
    # given 10 sellers with 50 inventory lines each and 50 item demands, and maximal names
    lines = [{"item_name": f"item {i}", "cost_price": "1.00", "selling_price": "3.00", "least_price": "2.00"}
             for i in range(50)]
    document = doc(name="n" * 200, description="d" * 10_000,
                   buyer={"item_demands": [{"item_name": f"item {i}", "min_price": "1", "max_price": "2"}
                                           for i in range(50)]},
                   sellers=[{"handle": f"@s{i}", "inventory": lines} for i in range(10)])
    # when imported, then it is all written
    response, seconds = send(api, json.dumps(document))
    assert response.status_code == 201, response.content[:500]
    assert (Seller.objects.count(), InventoryItem.objects.count(), BuyerDemand.objects.count()) == (10, 500, 50)
    assert seconds < 30


# --- deeply nested ------------------------------------------------------------------------------

DEPTH_MESSAGE = ("The JSON nests arrays and objects more than 20 levels deep; no MAMS request needs more than 5 "
                 "(a session document). Check that you are sending the right document.")


@pytest.mark.parametrize("body", [
    "[" * 10_000 + "]" * 10_000,                      # Python's json raises RecursionError here
    '{"a": ' * 10_000 + "1" + "}" * 10_000,
    "[" * 21 + "]" * 21,                              # just over the limit, parsed fine by json
    json.dumps(doc())[:-1] + ', "deep": ' + "[" * 900 + "]" * 900 + "}",
])
def test_deep_nesting_is_400_not_500(api: Any, body: str) -> None:
    assert refused(api, body)["detail"] == DEPTH_MESSAGE


def test_deep_nesting_is_refused_on_every_json_endpoint(api: Any, sample: Session) -> None:
    for url in ["/api/sessions", f"/api/sessions/{sample.pk}/sellers", "/api/batches"]:
        r = api.generic("POST", url, "[" * 5000 + "]" * 5000, content_type="application/json")
        assert r.status_code == 400 and r.json()["detail"] == DEPTH_MESSAGE, url


# --- ambiguous JSON -----------------------------------------------------------------------------

@pytest.mark.parametrize(("mutate", "path"), [
    (lambda d: d.update(sellerz=[]), "sellerz"),
    (lambda d: d.update(id="4a2ac1bd-dfb7-4181-a32c-549d792b88a5"), "id"),
    (lambda d: d["buyer"].update(budget="100"), "buyer.budget"),
    (lambda d: d["buyer"]["item_demands"][1].update(colour="red"), "buyer.item_demands[1].colour"),
    (lambda d: d["sellers"][2].update(invetory=[]), "sellers[2].invetory"),
    (lambda d: d["sellers"][0]["priorities"].update(loyalty="0.1"), "sellers[0].priorities.loyalty"),
    (lambda d: d["sellers"][0]["inventory"][1].update(floor="1"), "sellers[0].inventory[1].floor"),
])
def test_an_unknown_key_is_400_with_the_keys_that_are_allowed(api: Any, mutate: Any, path: str) -> None:
    # given a hand-edited file with a key the document does not define (a typo would lose data silently)
    document = doc()
    mutate(document)
    errors = refused(api, json.dumps(document))["errors"]
    key = path.rsplit(".", 1)[-1]
    assert list(errors) == [path] and errors[path][0].startswith(f"Unknown key '{key}'; the keys allowed here are: ")


def test_an_unknown_key_is_reported_with_the_other_errors(api: Any) -> None:
    document = doc()
    document["sellers"][0].update(style="grumpy", invetory=[])
    errors = refused(api, json.dumps(document))["errors"]
    assert set(errors) == {"sellers[0].style", "sellers[0].invetory"}


def test_the_one_resource_endpoints_refuse_extra_keys_too(api: Any, sample: Session) -> None:
    # (they ignored them before issue 13: an unknown key is now a 400 on every body)
    seller = {"handle": "@Extra", "inventory": [], "id": "ignored"}
    r = api.post(f"/api/sessions/{sample.pk}/sellers", seller, format="json")
    assert r.status_code == 400 and list(r.json()["errors"]) == ["id"]
    assert not sample.sellers.filter(handle="@Extra").exists()


def test_a_key_given_twice_is_400(api: Any) -> None:
    text = json.dumps(doc())
    body = text.replace('"sellers":', '"sellers": [], "sellers":', 1)
    detail = refused(api, body)["detail"]
    assert detail == "JSON parse error - the key 'sellers' appears twice in one object; keep only one of them"


@pytest.mark.parametrize(("number", "says"), [
    ("NaN", "NaN is not a JSON number"),
    ("Infinity", "Infinity is not a JSON number"),
    ("-Infinity", "-Infinity is not a JSON number"),
    ("1e400", "the number 1e400 is out of range"),
    ("-1e400", "the number -1e400 is out of range"),
    ("9" * 5000, "a number has 5000 digits; at most 40 are accepted"),
])
def test_numbers_json_cannot_hold_are_400(api: Any, number: str, says: str) -> None:
    body = json.dumps(doc()).replace('"max_price": "18.00"', f'"max_price": {number}')
    assert refused(api, body)["detail"].startswith(f"JSON parse error - {says}")


def test_large_but_finite_numbers_are_field_errors(api: Any) -> None:
    body = json.dumps(doc()).replace('"max_price": "18.00"', '"max_price": 1e300').replace(
        '"quantity": 2', '"quantity": 99999999999999999999')
    errors = refused(api, body)["errors"]
    assert set(errors) == {"buyer.item_demands[0].max_price", "buyer.item_demands[0].quantity"}


# --- the service, for callers other than the API (bundled scenario files) -----------------------

def test_the_service_refuses_oversize_documents_by_count() -> None:
    document = doc(sellers=[{"handle": f"@s{i}"} for i in range(10_000)])
    document["buyer"]["item_demands"] *= 30
    started = time.monotonic()
    with pytest.raises(ValidationError) as exc:
        session_import(document=document)
    assert time.monotonic() - started < 2
    assert exc.value.message_dict == {
        "sellers": ["A session has at most 10 sellers; this one has 10000."],
        "buyer.item_demands": ["At most 50 item demands per buyer; this one has 60."]}
    one = doc()
    one["sellers"][0]["inventory"] = one["sellers"][0]["inventory"] * 26
    with pytest.raises(ValidationError) as exc:
        session_import(document=one)
    assert exc.value.message_dict == {"sellers[0].inventory": [
        "At most 50 inventory lines per seller; this one has 52."]}
    assert not Session.objects.exists()

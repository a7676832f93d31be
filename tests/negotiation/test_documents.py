"""The session document model (negotiation/documents.py): one shape and one set of rules for the API's
export, the import service and the suite loader; a seller's weights read the same way everywhere."""

from __future__ import annotations

import copy
from decimal import Decimal
from typing import Any

import pytest

from analytics.benchmarks.suite_files import check_document
from negotiation.documents import SessionDocument, document_problems, seller_terms
from negotiation.services.scenarios import scenario_document
from negotiation.services.sessions import session_export, session_import


@pytest.fixture
def sample() -> dict[str, Any]:
    return scenario_document("spec_sample")


@pytest.mark.parametrize(("seller", "expected"), [
    ({"priorities": {"customer_retention": "0.7", "profit_maximization": "0.3"}}, ("neutral", "0.7", "0.3")),
    ({"personality": {"style": "rude", "customer_retention_weight": "0.2", "profit_maximization_weight": "0.8"}},
     ("rude", "0.2", "0.8")),
    ({"style": "sweet", "customer_retention_weight": "0.6", "profit_maximization_weight": "0.4"},
     ("sweet", "0.6", "0.4")),
    ({}, ("neutral", "0.5", "0.5")),
])
def test_a_sellers_terms_are_read_from_every_spec_shape(seller: dict[str, Any], expected: tuple[str, str, str]):
    assert seller_terms(seller) == expected


def test_the_suite_loader_reads_flat_weights_as_the_importer_does(sample: dict[str, Any]):
    # given a seller whose weights are flat keys that do not sum to 1 (the importer refuses it)
    doc = copy.deepcopy(sample)
    seller = doc["sellers"][0]
    seller.pop("priorities", None)
    seller.pop("personality", None)
    seller.update(customer_retention_weight="0.9", profit_maximization_weight="0.9")
    # when the suite loader checks the same document
    problems = check_document(doc, [doc["buyer"]["item_demands"][0]["item_name"]], "x.json")
    # then it refuses it too (its own copy of the weights reader used to skip flat keys and read 0.5/0.5)
    assert any("sum to 1" in p for p in problems), problems


def test_a_bad_document_is_reported_by_path(sample: dict[str, Any]):
    doc = copy.deepcopy(sample)
    doc["sellers"][1]["inventory"][0]["cost_price"] = doc["sellers"][1]["inventory"][0]["selling_price"]
    doc["buyer"]["item_demands"][0]["quantity"] = 2.5
    parsed, problems = document_problems(doc)
    assert parsed is None
    paths = {path for path, _ in problems}
    assert "sellers[1].inventory[0]" in paths and "buyer.item_demands[0].quantity" in paths, problems


@pytest.mark.django_db
def test_the_export_is_the_document_model_and_imports_back(sample: dict[str, Any]):
    # given the sample imported from a typed document
    session = session_import(document=SessionDocument.model_validate(sample))
    # when it is exported
    exported = session_export(session=session)
    # then the export parses as the same document, field for field (sellers and lines in any order)
    again = SessionDocument.model_validate(exported)
    assert _ordered(again) == _ordered(SessionDocument.model_validate(sample))
    assert again.sellers[0].customer_retention + again.sellers[0].profit_maximization == Decimal("1")


def _ordered(doc: SessionDocument) -> dict[str, Any]:
    data = doc.model_dump()
    data["buyer"]["item_demands"].sort(key=lambda d: d["item_name"].lower())
    data["sellers"].sort(key=lambda s: s["handle"].lower())
    for s in data["sellers"]:
        s["inventory"].sort(key=lambda line: line["item_name"].lower())
    return data

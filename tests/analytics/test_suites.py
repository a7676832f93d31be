"""Benchmark suites: the files and their loader (analytics/benchmarks/suite_files.py, no database), then loading a
suite into the database idempotently (analytics/benchmarks/services.py::suite_load)."""

from __future__ import annotations

import json
import shutil
from decimal import Decimal
from pathlib import Path
from typing import Any

import pytest

from analytics.benchmarks.suite_files import SUITES_DIR, SuiteError, list_suites, load_suite

REQUIRED = {"one-seller-easy", "three-sellers", "ten-sellers", "tight-zopa", "no-zopa", "rude-profit-first",
            "sweet-retention-first", "several-items"}


def _floors(document: dict[str, Any], item: str) -> list[Decimal]:
    return [Decimal(line["least_price"]) for s in document["sellers"] for line in s["inventory"]
            if line["item_name"].lower() == item.lower()]


def _max_price(document: dict[str, Any], item: str) -> Decimal:
    return next(Decimal(d["max_price"]) for d in document["buyer"]["item_demands"]
                if d["item_name"].lower() == item.lower())


def _copy_core(tmp_path: Path) -> Path:
    root = tmp_path / "suites"
    shutil.copytree(SUITES_DIR / "core-v1", root / "core-v1")
    return root


# --- the shipped files -----------------------------------------------------------------------

def test_core_suite_has_the_eight_required_scenarios():
    suite = load_suite("core-v1")
    assert (suite.name, suite.version, suite.label) == ("core", 1, "core-v1")
    assert {s.slug for s in suite.scenarios} >= REQUIRED
    assert len(suite.content_hash) == 64


def test_core_scenarios_have_the_promised_shapes():
    suite = load_suite("core")
    by = {s.slug: s for s in suite.scenarios}
    assert len(by["one-seller-easy"].document["sellers"]) == 1
    assert len(by["three-sellers"].document["sellers"]) == 3
    assert len(by["ten-sellers"].document["sellers"]) == 10
    tight = by["tight-zopa"]
    zopa = _max_price(tight.document, tight.items[0]) - min(_floors(tight.document, tight.items[0]))
    assert Decimal(0) < zopa <= Decimal("0.05") * _max_price(tight.document, tight.items[0])
    none = by["no-zopa"]
    assert all(f > _max_price(none.document, none.items[0]) for f in _floors(none.document, none.items[0]))
    rude = by["rude-profit-first"].document["sellers"][0]
    assert rude["style"] == "rude" and Decimal(rude["priorities"]["profit_maximization"]) >= Decimal("0.8")
    sweet = by["sweet-retention-first"].document["sellers"][0]
    assert sweet["style"] == "sweet" and Decimal(sweet["priorities"]["customer_retention"]) >= Decimal("0.8")
    assert len(by["several-items"].items) >= 2


def test_latest_version_wins_and_exact_versions_resolve(tmp_path: Path):
    # given core-v1 and a core-v2 that differs only in its description
    root = _copy_core(tmp_path)
    shutil.copytree(root / "core-v1", root / "core-v2")
    manifest = json.loads((root / "core-v2" / "suite.json").read_text())
    manifest.update(version=2, description="second")
    (root / "core-v2" / "suite.json").write_text(json.dumps(manifest))
    # then "core" is v2, "core-v1" is v1, and the two hash differently
    assert load_suite("core", root=root).version == 2
    assert load_suite("core-v1", root=root).version == 1
    assert load_suite("core", root=root).content_hash != load_suite("core-v1", root=root).content_hash
    assert [s.label for s in list_suites(root=root)] == ["core-v1", "core-v2"]


def test_content_hash_ignores_formatting_but_not_content(tmp_path: Path):
    root = _copy_core(tmp_path)
    before = load_suite("core-v1", root=root).content_hash
    path = root / "core-v1" / "tight_zopa.json"
    doc = json.loads(path.read_text())
    path.write_text(json.dumps(doc, indent=7))
    assert load_suite("core-v1", root=root).content_hash == before
    doc["sellers"][0]["inventory"][0]["least_price"] = "77.00"
    path.write_text(json.dumps(doc))
    assert load_suite("core-v1", root=root).content_hash != before


@pytest.mark.parametrize("ref", ["nope", "core-v9", "", "core-v0", "../core-v1"])
def test_unknown_suite_is_a_clear_error(ref: str):
    with pytest.raises(SuiteError, match="unknown suite .*Known suites: .*core \\(v1, v2\\)"):
        load_suite(ref)


@pytest.mark.parametrize(("edit", "message"), [
    (lambda d: d["sellers"][0]["inventory"][0].update(cost_price="90.00"), "cost_price < least_price"),
    (lambda d: d["sellers"][0]["priorities"].update(customer_retention="0.70"), "sum to 1"),
    (lambda d: d["sellers"].extend([{**d["sellers"][0], "handle": f"@S{i}"} for i in range(9)]), "at most 10"),
    (lambda d: d["buyer"]["item_demands"][0].update(item_name="Other"), "not demanded"),
    (lambda d: d["sellers"].append({**d["sellers"][0]}), "used twice"),
])
def test_an_invalid_scenario_file_is_refused_with_its_path(tmp_path: Path, edit: Any, message: str):
    root = _copy_core(tmp_path)
    path = root / "core-v1" / "tight_zopa.json"
    doc = json.loads(path.read_text())
    edit(doc)
    path.write_text(json.dumps(doc))
    with pytest.raises(SuiteError, match=message) as info:
        load_suite("core-v1", root=root)
    assert "tight_zopa.json" in str(info.value)


def test_manifest_must_match_its_directory(tmp_path: Path):
    root = _copy_core(tmp_path)
    (root / "core-v1").rename(root / "core-v3")
    with pytest.raises(SuiteError, match="says core-v1 but lives in core-v3"):
        load_suite("core-v3", root=root)


# --- into the database: idempotent, and never two contents under one version ----------------------

@pytest.mark.django_db
def test_a_suite_loads_once_and_again_is_a_no_op():
    from analytics.benchmarks.services import suite_load
    from analytics.models import Suite, SuiteScenario
    from negotiation.models import Session

    # given nothing loaded, when core-v1 is loaded twice
    first, created = suite_load(ref="core-v1")
    sessions = Session.objects.count()
    again, created_again = suite_load(ref="core-v1")
    # then one suite with its eight scenarios exists, made once, each an ownerless session
    assert created and not created_again and again.pk == first.pk
    assert Suite.objects.count() == 1 and Session.objects.count() == sessions
    scenarios = SuiteScenario.objects.filter(suite=first).select_related("session")
    assert {s.slug for s in scenarios} >= REQUIRED
    assert all(s.session.owner_id is None for s in scenarios)
    several = scenarios.get(slug="several-items")
    assert sorted(several.items) == sorted(several.session.demands.values_list("item_name", flat=True))
    assert first.content_hash == load_suite("core-v1").content_hash
    # and "core" names the latest version, core-v2, a separate suite with its own rules and hash
    latest, _ = suite_load(ref="core")
    assert latest.label == "core-v2" and latest.rules == "hidden" and first.rules == "known"
    assert latest.pk != first.pk and latest.content_hash != first.content_hash


@pytest.mark.django_db
def test_the_same_version_with_other_content_is_refused(tmp_path: Path, monkeypatch: pytest.MonkeyPatch):
    from analytics.benchmarks.services import suite_load
    from analytics.models import Suite

    # given core-v1 loaded from a copy of the files
    root = _copy_core(tmp_path)
    monkeypatch.setattr("analytics.benchmarks.suite_files.SUITES_DIR", root)
    suite_load(ref="core-v1")
    # when a scenario file is edited without bumping the version
    path = root / "core-v1" / "one_seller_easy.json"
    doc = json.loads(path.read_text())
    doc["sellers"][0]["inventory"][0]["least_price"] = "30.00"
    path.write_text(json.dumps(doc))
    # then loading it again is refused, telling the user to bump the version, and nothing changes
    with pytest.raises(SuiteError, match=r"already loaded with different content.*core-v2.*\"version\": 2"):
        suite_load(ref="core-v1")
    assert Suite.objects.count() == 1


@pytest.mark.django_db
def test_suite_sessions_are_usable_by_every_user_without_leaking(db: Any):
    from rest_framework.authtoken.models import Token
    from rest_framework.test import APIClient

    from tests.analytics.benchmark_helpers import BOULWARE, launch
    from tests.factories import UserFactory

    # given alice's benchmark run on the shared suite sessions
    alice, bob = UserFactory(username="alice5"), UserFactory(username="bob5")
    run = launch(buyers=[BOULWARE], owner=alice)
    batch = run.entries.first().batch

    def client(user: Any) -> APIClient:
        c = APIClient()
        c.credentials(HTTP_AUTHORIZATION=f"Token {Token.objects.get_or_create(user=user)[0].key}")
        return c

    # then alice reads her batch, bob does not, and neither sees the suite's sessions in their list
    assert client(alice).get(f"/api/batches/{batch.pk}").status_code == 200
    assert client(bob).get(f"/api/batches/{batch.pk}").status_code == 404
    assert client(alice).get("/api/sessions").json()["count"] == 0
    assert client(bob).get(f"/api/sessions/{batch.session_id}").status_code == 404

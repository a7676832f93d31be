"""A benchmark suite's sessions are immutable: read-only in the admin, refused by every service that
edits sessions (a 400 naming the suite), and every launch checks their content against the hash
recorded when the suite was loaded, so an edit that went around both (raw SQL) is refused too."""

from __future__ import annotations

from decimal import Decimal

import pytest
from django.core.exceptions import ValidationError
from django.db import connection
from django.test import Client

from analytics.benchmarks.services import suite_load
from analytics.benchmarks.suite_files import SuiteError
from analytics.models import SuiteScenario
from negotiation.models import BuyerDemand, Session
from negotiation.services import sessions
from tests.analytics.benchmark_helpers import LINEAR, launch
from tests.factories import UserFactory

pytestmark = pytest.mark.django_db


@pytest.fixture
def scenario() -> SuiteScenario:
    suite, _ = suite_load(ref="core-v1")
    return SuiteScenario.objects.select_related("session", "suite").get(suite=suite, slug="one-seller-easy")


def test_loading_a_suite_freezes_its_sessions_and_records_their_hashes(scenario: SuiteScenario) -> None:
    sc_all = SuiteScenario.objects.filter(suite=scenario.suite).select_related("session")
    assert all(sc.session.frozen and sc.suite.label in sc.session.frozen_by for sc in sc_all)
    assert all(len(sc.session_hash) == 64 for sc in sc_all)


@pytest.mark.parametrize("edit", ["update", "delete", "demands", "add_seller", "delete_seller"])
def test_every_session_service_refuses_to_edit_a_suite_session(scenario: SuiteScenario, edit: str) -> None:
    session = scenario.session
    calls = {
        "update": lambda: sessions.session_update(session=session, name="mine now"),
        "delete": lambda: sessions.session_delete(session=session),
        "demands": lambda: sessions.buyer_config_set(session=session, items=[
            {"item_name": "Widget", "quantity": 1, "min_price": "1.00", "max_price": "99.00"}]),
        "add_seller": lambda: sessions.seller_add(session=session, seller={
            "handle": "@New", "inventory": [{"item_name": "Widget", "cost_price": "1.00", "least_price": "2.00",
                                             "selling_price": "3.00"}]}),
        "delete_seller": lambda: sessions.seller_delete(seller=session.sellers.first()),
    }
    with pytest.raises(ValidationError) as err:
        calls[edit]()
    message = str(err.value)
    assert "core-v1" in message and "one-seller-easy" in message and "new version" in message
    # and nothing changed
    assert Session.objects.get(pk=session.pk).name == session.name
    assert SuiteScenario.objects.get(pk=scenario.pk).session.sellers.count() == session.sellers.count()


def test_the_admin_shows_a_suite_session_read_only(scenario: SuiteScenario) -> None:
    staff = UserFactory(username="admin-frozen", is_staff=True, is_superuser=True)
    staff.save()
    web = Client()
    web.force_login(staff)
    url = f"/admin/negotiation/session/{scenario.session.pk}/change/"
    page = web.get(url)
    assert page.status_code == 200 and 'name="_save"' not in page.content.decode()
    demand = scenario.session.demands.first()
    before = demand.max_price
    r = web.post(url, {"name": "edited", "demands-TOTAL_FORMS": "1", "demands-INITIAL_FORMS": "1",
                       "demands-0-id": str(demand.pk), "demands-0-max_price": "999.00"})
    assert r.status_code == 403
    assert BuyerDemand.objects.get(pk=demand.pk).max_price == before


def test_a_launch_refuses_a_suite_session_changed_behind_the_services(scenario: SuiteScenario) -> None:
    # given a suite session whose max price was changed with raw SQL (no service, no admin)
    with connection.cursor() as cur:
        cur.execute("UPDATE negotiation_buyerdemand SET max_price = max_price + 1 WHERE session_id = %s",
                    [scenario.session_id])
    # when a benchmark of that suite is launched, then it is refused with a message naming the scenario
    with pytest.raises(SuiteError, match="one-seller-easy was changed in the database"):
        launch(buyers=[LINEAR])
    # and once the content is restored, it launches
    with connection.cursor() as cur:
        cur.execute("UPDATE negotiation_buyerdemand SET max_price = max_price - 1 WHERE session_id = %s",
                    [scenario.session_id])
    assert launch(buyers=[LINEAR]).pk is not None
    assert Decimal("0") < scenario.session.demands.first().max_price

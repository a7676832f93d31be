"""negotiation/services/outside.py: when an outside buyer's run is sealed, and what its debrief says."""

from __future__ import annotations

from decimal import Decimal
from typing import Any

import pytest

from negotiation.models import NegotiationRun, Outcome
from negotiation.services import outside
from tests.factories import SessionFactory, UserFactory

pytestmark = pytest.mark.django_db

Status = NegotiationRun.Status


def _seller(handle: str, least: str, cost: str = "1.00", ask: str = "50.00") -> dict[str, Any]:
    return {"id": "", "handle": handle, "style": "neutral", "retention_weight": "0.50", "profit_weight": "0.50",
            "cost_price": cost, "selling_price": ask, "least_price": least}


def _run(*, mode: str = NegotiationRun.Mode.HUMAN_BUYER, status: str = Status.RUNNING, max_price: str = "40.00",
         floors: tuple[str, ...] = ("30.00", "25.00")) -> NegotiationRun:
    scenario = {"buyer": {"item_name": "Widget", "quantity": 2, "min_price": "10.00", "max_price": max_price},
                "sellers": [_seller(f"@S{i}", f) for i, f in enumerate(floors)]}
    return NegotiationRun.objects.create(session=SessionFactory(), owner=UserFactory(), item_name="Widget", mode=mode,
                                         status=status, agents={}, scenario=scenario)


def _finish(run: NegotiationRun, *, price: str | None, seller: str = "", status: str = Status.COMPLETED) -> None:
    Outcome.objects.create(run=run, decision="deal" if price else "no_deal",
                           reason="accepted" if price else "walked_away", chosen_handle=seller,
                           final_price=Decimal(price) if price else None, quantity=2, rounds=2)
    NegotiationRun.objects.filter(pk=run.pk).update(status=status)
    run.refresh_from_db()


@pytest.mark.parametrize(("mode", "status", "sealed"), [
    ("human_buyer", Status.RUNNING, True), ("external", Status.RUNNING, True), ("external", Status.QUEUED, True),
    ("human_buyer", Status.COMPLETED, False), ("external", Status.CANCELLED, False),
    ("external", Status.FAILED, False), ("agent", Status.RUNNING, False)])
def test_only_an_outside_buyers_unfinished_run_is_sealed(mode: str, status: str, sealed: bool) -> None:
    run = _run(mode=mode, status=status)
    assert outside.sealed(run) is sealed
    assert (outside.debrief(run) is None) is (status in (Status.RUNNING, Status.QUEUED))


def test_a_deal_is_debriefed_with_every_floor_the_zopa_and_the_share() -> None:
    # given a room with floors 30 and 25 under a max of 40, closed at 32 with @S0 (floor 30)
    run = _run()
    _finish(run, price="32.00", seller="@S0")
    # when it is debriefed
    d = outside.debrief(run)
    # then every floor is stated, the ZOPA is 40 − 25, and the share is (40 − 32) / (40 − 30)
    assert [(s["handle"], s["least_price"], s["within_budget"]) for s in d["sellers"]] == [
        ("@S0", Decimal("30.00"), True), ("@S1", Decimal("25.00"), True)]
    assert d["zopa"] == Decimal("15.00") and d["lowest_floor_seller"] == "@S1"
    assert d["buyer_share"] == Decimal("0.8") and d["seller_share"] == Decimal("0.2")
    assert d["left_on_table"] == Decimal("7.00") and d["mutual_loss"] is False
    assert "kept 80% of the surplus" in d["summary"] and "$7.00 per unit below your price" in d["summary"]


def test_walking_away_from_a_possible_deal_is_a_mutual_loss() -> None:
    run = _run(mode=NegotiationRun.Mode.EXTERNAL)
    _finish(run, price=None)
    d = outside.debrief(run)
    assert d["deal"] is False and d["buyer_share"] is None and d["mutual_loss"] is True
    assert d["best_price"] == Decimal("25.00") and "both sides lost a possible deal" in d["summary"]


def test_a_room_where_no_floor_was_within_the_max_says_no_deal_was_possible() -> None:
    run = _run(max_price="20.00")
    _finish(run, price=None)
    d = outside.debrief(run)
    assert d["zopa"] == Decimal("-5.00") and d["mutual_loss"] is False and d["best_price"] is None
    assert "no deal was possible" in d["summary"]

"""Tests for negotiation/turn_rows.py: the fixed SQL of a turn reads and writes what the ORM would.

Each read is compared with the ORM's answer for the same rows, so a field added to a model, or a
converter (JSON) the SQL forgot, shows up here. The INSERT is checked for its defaults and for a
duplicate (run, round, sender), which must write nothing and leave a surrounding transaction usable.
"""

from __future__ import annotations

from decimal import Decimal
from typing import Any

import pytest
from django.db import transaction

from negotiation import turn_rows
from negotiation.engine.types import BUYER
from negotiation.models import Batch, Message, NegotiationRun
from negotiation.run_context import run_context
from negotiation.services.batches import batch_create
from negotiation.services.scenarios import sample_session_load

pytestmark = pytest.mark.django_db

AGENTS = {"buyer": {"strategy": "linear"}, "seller": {"strategy": "boulware"}, "analyst": {"strategy": "linear"}}


@pytest.fixture
def run(django_capture_on_commit_callbacks: Any) -> NegotiationRun:
    with django_capture_on_commit_callbacks(execute=False):  # the batch start is not sent to Redis
        batch = batch_create(session=sample_session_load(), item_name="USB-C Cable", runs=1, agents=AGENTS,
                             max_rounds=4, base_seed=7)
    return batch.runs.get()


def message(run: NegotiationRun, round_no: int, sender: str, **kwargs: Any) -> Message:
    seller_id = None if sender == BUYER else next(s["id"] for s in run.scenario["sellers"] if s["handle"] == sender)
    fields: dict[str, Any] = {"run": run, "round_no": round_no, "sender": sender, "seller_id": seller_id,
                              "sender_type": "buyer" if sender == BUYER else "seller",
                              "recipients": ["buyer"], "text": f"{sender} in round {round_no}", "action": "offer",
                              "price": Decimal("7.25"), **kwargs}
    return Message(**fields)


def test_run_for_turn_is_the_orm_row_with_its_batch_status(run: NegotiationRun) -> None:
    found = turn_rows.run_for_turn(run.pk)
    assert found is not None
    loaded, batch_status = found.run, found.batch_status
    orm = NegotiationRun.objects.get(pk=run.pk)
    for f in NegotiationRun._meta.concrete_fields:
        assert getattr(loaded, f.attname) == getattr(orm, f.attname), f.name
    assert isinstance(loaded.scenario, dict) and loaded.scenario["buyer"]["item_name"] == "USB-C Cable"
    assert batch_status == Batch.Status.QUEUED
    # and a saved instance, as the ORM would give it (an update does not insert)
    assert not loaded._state.adding


def test_run_for_turn_of_a_run_without_batch_or_of_no_run(run: NegotiationRun) -> None:
    NegotiationRun.objects.filter(pk=run.pk).update(batch=None)
    found = turn_rows.run_for_turn(run.pk)
    assert found is not None and found.batch_status is None and found.transcript == ()
    assert turn_rows.run_for_turn("00000000-0000-0000-0000-000000000000") is None


def test_the_transcript_is_the_orm_transcript_in_the_same_order(run: NegotiationRun) -> None:
    # given messages written out of order: a seller's reply in round 2 before the buyer's
    for m in [message(run, 1, BUYER, recipients=["@CableHouse", "@QuickTech"], price=None, action="message"),
              message(run, 1, "@QuickTech"), message(run, 1, "@CableHouse", price=None, action="decline"),
              message(run, 2, "@CableHouse"), message(run, 2, BUYER, recipients=["@CableHouse"])]:
        assert turn_rows.message_insert(m)
    # then the fixed query gives exactly what the ORM path (run_context with rows) gives
    fast, full = run_context(run), run_context(run, rows=True)
    assert fast.transcript == full.transcript
    # and so does the transcript read with the run (JSON in SQL, prices as exact decimals)
    found = turn_rows.run_for_turn(run.pk)
    assert found is not None and found.transcript == full.transcript
    assert [(m.round_no, m.sender) for m in fast.transcript] == [
        (1, BUYER), (1, "@QuickTech"), (1, "@CableHouse"), (2, BUYER), (2, "@CableHouse")]
    assert fast.transcript[0].recipients == ("@CableHouse", "@QuickTech")
    assert fast.transcript[1].price == Decimal("7.25")
    assert fast.message(1, "@QuickTech") == full.transcript[1] and fast.message(3, BUYER) is None
    assert fast.row(1, BUYER) is None and full.row(1, BUYER) == Message.objects.get(run=run, round_no=1, sender=BUYER)


def test_an_insert_fills_the_defaults_as_save_would(run: NegotiationRun) -> None:
    m = message(run, 1, BUYER, recipients=["@CableHouse"], raw_output='{"action": "offer"}', llm_calls=2)
    assert turn_rows.message_insert(m)
    stored = Message.objects.get(pk=m.pk)
    assert stored.quality == {} and stored.created_at is not None and stored.created_at == m.created_at
    assert (stored.recipients, stored.price, stored.llm_calls, stored.raw_output) == (
        ["@CableHouse"], Decimal("7.25"), 2, '{"action": "offer"}')
    assert not m._state.adding


def test_a_duplicate_insert_writes_nothing_and_keeps_the_transaction_usable(run: NegotiationRun) -> None:
    first = message(run, 1, "@QuickTech", text="first")
    assert turn_rows.message_insert(first)
    with transaction.atomic():
        # a redelivered turn inside a transaction: its INSERT is refused quietly ...
        again = message(run, 1, "@QuickTech", text="second")
        assert not turn_rows.message_insert(again)
        assert again._state.adding
        # ... and the transaction can still be used (an IntegrityError would have aborted it)
        assert Message.objects.filter(run=run).count() == 1
    assert list(Message.objects.filter(run=run).values_list("text", flat=True)) == ["first"]


def test_a_round_moves_once_and_only_from_the_round_it_is_in(run: NegotiationRun) -> None:
    # given a running run in round 2
    NegotiationRun.objects.filter(pk=run.pk).update(status="running", current_round=2)
    # when two deliveries of round 2's last reply both try to move it on
    first, second = turn_rows.round_move(run.pk, 2), turn_rows.round_move(run.pk, 2)
    # then exactly one moves it, to round 3, and writes its heartbeat
    assert (first, second) == (True, False)
    run.refresh_from_db()
    assert run.current_round == 3 and run.heartbeat_at is not None
    # and a stale round, or a run that is no longer running, does not move
    assert not turn_rows.round_move(run.pk, 2)
    NegotiationRun.objects.filter(pk=run.pk).update(status="cancelled")
    assert not turn_rows.round_move(run.pk, 3)
    assert NegotiationRun.objects.get(pk=run.pk).current_round == 3

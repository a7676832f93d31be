"""The live stream's reads (negotiation/services/events.py) against commits that land between them.

The end-to-end stream test (tests/api/test_e2e.py) can meet these races only by chance, under load;
here the commit is placed between the two reads on purpose, so each case happens every time.
"""

from __future__ import annotations

from typing import Any

import pytest

from negotiation.models import Message, NegotiationRun, Outcome, Session
from negotiation.run_context import run_context as real_run_context
from negotiation.services import events
from negotiation.services.launch import scenario_for

pytestmark = pytest.mark.django_db


def _render(kind: str, row: Any, audience: tuple[str, ...]) -> dict[str, Any]:
    return {"id": str(row.pk), "kind": kind}


def _say(run: NegotiationRun, round_no: int, sender: str, *, price: str | None = None, action: str = "message"
         ) -> Message:
    buyer = sender == "buyer"
    return Message.objects.create(run=run, round_no=round_no, sender=sender, sender_type="buyer" if buyer else "seller",
                                  recipients=["@QuickTech"] if buyer else ["buyer"], text="…", action=action,
                                  price=price)


def _running_run(sample: Session) -> NegotiationRun:
    return NegotiationRun.objects.create(session=sample, owner=sample.owner, item_name="USB-C Cable", agents={},
                                         scenario=scenario_for(session=sample, item_name="USB-C Cable"),
                                         status=NegotiationRun.Status.RUNNING, max_rounds=3, current_round=2)


def test_a_run_ending_between_the_streams_two_reads_sends_its_outcome_once(
        sample: Session, monkeypatch: pytest.MonkeyPatch) -> None:
    # given a run in its second round, whose stream has delivered round 1
    run = _running_run(sample)
    _say(run, 1, "buyer")
    _say(run, 1, "@QuickTech", price="7.00", action="offer")
    first, cursor = events.pending_events(run=run, cursor=events.Cursor(), render=_render)
    assert [e.kind for e in first] == ["message", "offer"]

    # when the last turn (the buyer's accept in round 2, and the outcome, one commit) lands just after the
    # stream has read the transcript and before it reads anything else
    def transcript_then_the_last_turn(r: NegotiationRun, **kw: Any) -> Any:
        ctx = real_run_context(r, **kw)
        if not Outcome.objects.filter(run=r).exists():
            _say(r, 2, "buyer", price="7.00", action="accept")
            Outcome.objects.create(run=r, decision="deal", reason="accepted", chosen_handle="@QuickTech",
                                   final_price="7.00", rounds=2)
        return ctx

    monkeypatch.setattr(events, "run_context", transcript_then_the_last_turn)
    second, cursor = events.pending_events(run=run, cursor=cursor, render=_render)
    third, cursor = events.pending_events(run=run, cursor=cursor, render=_render)
    # then across the reads the stream sends the accept and the outcome, each once, the outcome last
    sent = [e.kind for e in second + third]
    assert sent == ["message", "outcome"], sent
    outcome = Outcome.objects.get(run=run)
    assert [e.data["id"] for e in second + third][-1] == str(outcome.pk)
    # and a client resuming after any event gets exactly the events after it
    everything = first + second + third
    monkeypatch.setattr(events, "run_context", real_run_context)
    for i, ev in enumerate(everything):
        rest, _ = events.pending_events(run=run, cursor=ev.cursor, render=_render)
        assert [e.data["id"] for e in rest] == [e.data["id"] for e in everything[i + 1:]]


def test_replies_of_a_round_committed_out_of_order_are_each_sent_once_and_resume_exactly(sample: Session) -> None:
    # given a round whose second seller's reply commits before the first's
    run = _running_run(sample)
    handles = [s["handle"] for s in run.scenario["sellers"]]
    assert len(handles) >= 2
    _say(run, 1, "buyer")
    _say(run, 1, handles[1], price="8.00", action="offer")
    first, cursor = events.pending_events(run=run, cursor=events.Cursor(), render=_render)
    _say(run, 1, handles[0], price="7.50", action="offer")
    _say(run, 2, "buyer")
    second, cursor = events.pending_events(run=run, cursor=cursor, render=_render)
    everything = first + second
    # then every message was sent once
    assert sorted(e.data["id"] for e in everything) == sorted(str(m.pk) for m in Message.objects.filter(run=run))
    # and resuming after each event gives the same set as the live stream sent after it
    for i, ev in enumerate(everything):
        rest, _ = events.pending_events(run=run, cursor=events.Cursor.parse(ev.cursor.encode()), render=_render)
        assert sorted(e.data["id"] for e in rest) == sorted(e.data["id"] for e in everything[i + 1:])

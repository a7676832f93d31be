"""A person as the buyer, in-process (the sellers' turns are played here instead of on a worker):
start, message, decide, and every refusal, with nothing private in any response."""

from __future__ import annotations

import json
import re
from decimal import Decimal
from typing import Any

import pytest

from negotiation.models import Message, NegotiationRun, Outcome, Session
from tests.api.conftest import BASELINE

pytestmark = pytest.mark.django_db

SELLERS_LINEAR = {"seller": {"strategy": "linear"}, "analyst": {"strategy": "linear"}}


def _start(api: Any, sample: Session, **changes: Any) -> Any:
    body = {"session_id": str(sample.pk), "item_name": "usb-c cable", "mode": "human_buyer",
            "agents": SELLERS_LINEAR, "max_rounds": 3, **changes}
    return api.post("/api/negotiations/start", body, format="json")


def private_strings(sample: Session, item: str = "USB-C Cable", run_id: Any = None) -> list[str]:
    """Every seller's cost and floor for the item, as they would appear in a body.

    A floor that a seller itself offered is no secret any more (the buyer was told it), so prices
    the sellers of `run_id` actually offered are left out.
    """
    offered = set()
    if run_id is not None:
        offered = {str(p) for p in Message.objects.filter(run_id=run_id, sender_type="seller")
                   .exclude(price=None).values_list("price", flat=True)}
    out = []
    for seller in sample.sellers.prefetch_related("inventory"):
        for line in seller.inventory.filter(item_name=item):
            out += [str(line.cost_price), str(line.least_price)]
    return [v for v in out if v not in offered]


def carries(body: str, price: str) -> bool:
    """The price as a number of its own (not inside a timestamp such as 05:37:27.051234)."""
    return re.search(rf"(?<![\d.]){re.escape(price)}(?![\d])", body) is not None


def test_start_message_decide(api: Any, sample: Session, sellers_answer: Any, settings: Any) -> None:
    settings.MAMS_LIVE_WAIT_SECONDS = 1
    bodies: list[str] = []
    # given a live room for the USB-C cable (spec 10.2)
    r = _start(api, sample)
    assert r.status_code == 201, r.content
    bodies.append(r.content.decode())
    start = r.json()
    rid = start["negotiation_id"]
    assert start["status"] == "running" and start["mode"] == "human_buyer"
    assert start["available_sellers"] == ["@BudgetWires", "@CableHouse", "@QuickTech", "@TechMart"]
    assert start["scenario"] is None and start["agents"]["buyer"]["strategy"] == "human"
    # when the buyer broadcasts with wait=false, the answer is 202 with every seller pending
    r = api.post(f"/api/negotiations/{rid}/message", {"sender": "buyer", "text": "I need 3 cables. Offers?",
                                                      "recipients": ["all"], "wait": False}, format="json")
    assert r.status_code == 202, r.content
    assert r.json()["pending"] == start["available_sellers"] and r.json()["round"] == 1
    bodies.append(r.content.decode())
    # and a second message before the replies is a conflict
    r = api.post(f"/api/negotiations/{rid}/message", {"text": "hello?", "wait": False}, format="json")
    assert r.status_code == 409 and "waiting for" in r.json()["detail"]
    sellers_answer(rid)
    # a counter to one seller only reaches that seller
    r = api.post(f"/api/negotiations/{rid}/message", {"text": "Can you do $6.00?", "recipients": ["@quicktech"],
                                                      "price": "6.00", "wait": True}, format="json")
    # (nobody plays the turn here, so wait=true gives up after the configured time: see the e2e test)
    assert r.status_code in (200, 202)
    assert r.json()["recipients"] == ["@QuickTech"]
    sellers_answer(rid)
    run = NegotiationRun.objects.get(pk=rid)
    assert run.current_round == 3
    detail = api.get(f"/api/negotiations/{rid}").json()
    offers = detail["standing_offers"]
    assert detail["debrief"] is None and detail["scenario"] is None
    assert set(offers) == {"@BudgetWires", "@CableHouse", "@QuickTech", "@TechMart"}
    bodies += [json.dumps(detail), api.get(f"/api/negotiations/{rid}/messages").content.decode(),
               api.get(f"/api/negotiations/{rid}/analytics").content.decode()]
    # accepting at a price the seller did not offer is refused, and nothing is recorded
    wrong = str(round(float(offers["@BudgetWires"]) - 0.5, 2))
    r = api.post(f"/api/negotiations/{rid}/decide", {"decision": "accept", "seller": "@BudgetWires",
                                                     "price": wrong}, format="json")
    assert r.status_code == 400 and "standing offer is" in r.json()["errors"]["price"][0]
    assert not Outcome.objects.filter(run_id=rid).exists()
    assert not Message.objects.filter(run_id=rid, round_no=3).exists()
    # accepting at the offered price ends the run with a deal (spec 10.2 decide)
    seller_id = next(s["id"] for s in run.scenario["sellers"] if s["handle"] == "@BudgetWires")
    # (and until then no response carried a seller's private configuration or anything computed from it)
    for body in bodies:
        for secret in private_strings(sample, run_id=rid):
            assert not carries(body, secret), secret
        for word in ("cost_price", "least_price", "retention", "profit_maximization", "sweet", "rude", "deal_quality",
                     "avg_rule_adherence", "guardrail_violations"):
            assert word not in body, word
    r = api.post(f"/api/negotiations/{rid}/decide", {"decision": "accept", "seller_id": seller_id,
                                                     "price": offers["@BudgetWires"], "quantity": 3}, format="json")
    assert r.status_code == 200, r.content
    out = r.json()
    assert out["status"] == "completed" and out["decision"] == "deal" and out["outcome_id"]
    assert out["deal_summary"]["seller"] == "@BudgetWires" and out["deal_summary"]["final_price"] == offers[
        "@BudgetWires"]
    assert out["deal_summary"]["quantity"] == 3 and out["analysis"]["within_budget"] is True
    assert "below its first ask" in out["analysis"]["summary"]
    # and the answer that ended it lays the sellers open: the debrief (services/outside.py)
    debrief = out["debrief"]
    floors = {s.handle: str(s.inventory.get(item_name="USB-C Cable").least_price)
              for s in sample.sellers.prefetch_related("inventory")}
    assert {s["handle"]: s["least_price"] for s in debrief["sellers"]} == floors
    price, top, floor = (Decimal(offers["@BudgetWires"]), Decimal(debrief["max_price"]),
                         Decimal(floors["@BudgetWires"]))
    assert debrief["chosen_floor"] == floors["@BudgetWires"] and debrief["seller"] == "@BudgetWires"
    assert debrief["buyer_share"] == pytest.approx(float((top - price) / (top - floor)))
    assert Decimal(debrief["zopa"]) == top - min(Decimal(f) for f in floors.values())
    assert debrief["mutual_loss"] is False and debrief["deal"] is True
    # a decision or a message on a finished run is a conflict
    r = api.post(f"/api/negotiations/{rid}/decide", {"decision": "walk_away"}, format="json")
    assert r.status_code == 409 and "already completed" in r.json()["detail"]
    r = api.post(f"/api/negotiations/{rid}/message", {"text": "one more thing", "wait": False}, format="json")
    assert r.status_code == 409
    # then, the run having ended, the run API shows it whole, with the same debrief
    detail = api.get(f"/api/negotiations/{rid}").json()
    assert detail["debrief"] == debrief and detail["scenario"] == run.scenario
    assert api.get(f"/api/negotiations/{rid}/analytics").json()["debrief"] == debrief


def test_walk_away(api: Any, sample: Session) -> None:
    rid = _start(api, sample).json()["id"]
    r = api.post(f"/api/negotiations/{rid}/decide", {"decision": "walk_away", "text": "Too pricey."}, format="json")
    assert r.status_code == 200
    out = r.json()
    assert out["decision"] == "no_deal" and out["reason"] == "walked_away" and out["deal_summary"] is None


@pytest.mark.parametrize(("changes", "path"), [
    ({"item_name": "Toaster"}, "item_name"),
    ({"session_id": "00000000-0000-0000-0000-000000000000"}, "session"),
    ({"session_id": None}, "session_id"),
    ({"mode": "agent"}, "mode"),
    ({"max_rounds": 0}, "max_rounds"),
    ({"agents": {"seller": {"profile": "nope"}}}, "agents.seller.profile"),
])
def test_bad_start_is_400(api: Any, sample: Session, changes: dict, path: str) -> None:
    r = _start(api, sample, **changes)
    assert r.status_code == 400, r.content
    assert path in r.json()["errors"], r.json()
    assert not NegotiationRun.objects.exists()


@pytest.mark.parametrize(("body", "path"), [
    ({"text": "hi", "recipients": ["@Nobody"]}, "recipients"),
    ({"text": "@Nobody: hi", "recipients": ["all"]}, "text"),
    ({"text": "hi", "recipients": ["all", "@QuickTech"]}, "recipients"),
    ({"text": "hi", "recipients": []}, "recipients"),
    ({"text": "hi", "price": "9.01"}, "price"),
    ({"text": "hi", "price": "-1"}, "price"),
    ({"text": ""}, "text"),
    ({"text": "x" * 4001}, "text"),
    ({"text": "hi", "sender": "@QuickTech"}, "sender"),
])
def test_bad_message_is_400(api: Any, sample: Session, body: dict, path: str) -> None:
    rid = _start(api, sample).json()["id"]
    r = api.post(f"/api/negotiations/{rid}/message", {"wait": False, **body}, format="json")
    assert r.status_code == 400, r.content
    assert path in r.json()["errors"], r.json()
    assert not Message.objects.filter(run_id=rid).exists()


def test_bad_decisions_are_400(api: Any, sample: Session, sellers_answer: Any) -> None:
    rid = _start(api, sample).json()["id"]
    r = api.post(f"/api/negotiations/{rid}/decide", {"decision": "accept", "seller": "@QuickTech"}, format="json")
    assert r.status_code == 400 and "has not made you an offer" in r.json()["errors"]["seller"][0]
    api.post(f"/api/negotiations/{rid}/message", {"text": "Offers?", "wait": False}, format="json")
    sellers_answer(rid)
    for body, path in [({"decision": "accept"}, "seller"), ({"decision": "accept", "seller": "@Nobody"}, "seller"),
                       ({"decision": "accept", "seller": "@QuickTech", "quantity": 7}, "quantity"),
                       ({"decision": "maybe"}, "decision")]:
        r = api.post(f"/api/negotiations/{rid}/decide", body, format="json")
        assert r.status_code == 400 and path in r.json()["errors"], (body, r.content)
    assert NegotiationRun.objects.get(pk=rid).status == "running"


def test_an_agent_run_takes_no_human_turns(api: Any, sample: Session) -> None:
    r = api.post("/api/batches", {"session": str(sample.pk), "item_name": "USB-C Cable", "runs": 1,
                                  "agents": BASELINE}, format="json")
    run = NegotiationRun.objects.get(batch_id=r.json()["id"])
    NegotiationRun.objects.filter(pk=run.pk).update(status="running")
    r = api.post(f"/api/negotiations/{run.pk}/message", {"text": "hi", "wait": False}, format="json")
    assert r.status_code == 409 and "LLM buyer" in r.json()["detail"]


def test_other_users_cannot_drive_my_negotiation(api: Any, other_api: Any, anon: Any, sample: Session) -> None:
    rid = _start(api, sample).json()["id"]
    for path, body in [("message", {"text": "hi", "wait": False}), ("decide", {"decision": "walk_away"})]:
        assert other_api.post(f"/api/negotiations/{rid}/{path}", body, format="json").status_code == 404
        assert anon.post(f"/api/negotiations/{rid}/{path}", body, format="json").status_code == 401
    r = other_api.post("/api/negotiations/start", {"session": str(sample.pk), "item_name": "USB-C Cable"},
                       format="json")
    assert r.status_code == 400 and "session" in r.json()["errors"]
    assert anon.post("/api/negotiations/start", {}, format="json").status_code == 401
    assert NegotiationRun.objects.get(pk=rid).status == "running"


def test_nothing_scored_reaches_a_person_before_the_end_and_everything_after(api: Any, sample: Session) -> None:
    from analytics.models import RunAnalysis

    # given a running room for which scores exist anyway: a verdict, and a repaired seller message
    rid = _start(api, sample).json()["negotiation_id"]
    run = NegotiationRun.objects.get(pk=rid)
    RunAnalysis.objects.create(run=run, status="done", source="llm", deal_quality=0.4, coherence=0.8,
                               reasons="@BudgetWires's floor was 5.65 and the buyer stopped above it.",
                               recommendations=["Push @BudgetWires toward 5.65."])
    Message.objects.create(run=run, round_no=1, sender="buyer", sender_type="buyer", recipients=["@QuickTech"],
                           text="Offers?", action="message", quality={"rule_adherence": 1.0})
    Message.objects.create(run=run, round_no=1, sender="@QuickTech", sender_type="seller", recipients=["buyer"],
                           text="$7.00", action="offer", price="7.00", quality={"rule_adherence": 0.0})
    NegotiationRun.objects.filter(pk=rid).update(current_round=2)
    # when the buyer reads the run's analytics while it runs
    a = api.get(f"/api/negotiations/{rid}/analytics").json()
    # then no score, count, verdict or debrief is there, not even a seller's rule adherence
    assert a["analysis"] is None and a["galileo_metrics"] is None and a["debrief"] is None
    assert "counts" not in a and a["outcome"].get("buyer_surplus_share") is None
    assert "ended" in a["galileo_note"]
    # when the buyer walks away, then the verdict is shown whole, with the analyst's words and the debrief
    assert api.post(f"/api/negotiations/{rid}/decide", {"decision": "walk_away"}, format="json").status_code == 200
    a = api.get(f"/api/negotiations/{rid}/analytics").json()
    assert a["analysis"]["deal_quality"] == 0.4 and a["analysis"]["reasons"].startswith("@BudgetWires's floor")
    assert a["galileo_metrics"]["avg_rule_adherence"] == 0.5 and "counts" in a
    assert a["debrief"]["mutual_loss"] is True and a["debrief"]["deal"] is False


def test_a_seller_stating_its_floor_reaches_a_person_withheld_on_every_surface(
        api: Any, sample: Session, sellers_answer: Any, settings: Any, llm: Any,
        monkeypatch: pytest.MonkeyPatch) -> None:
    # given LLM sellers that offer their ask and say their floor and cost out loud (a legal offer, a leaky text)
    from analytics.environment import episode_observation
    from negotiation.api.live import SellerReplySerializer
    from negotiation.models import RunEvent
    from negotiation.services.live import live_replies_wait

    monkeypatch.setitem(settings.LLM_PROFILES["openai-compatible"], "rate", "6000/minute")
    settings.MAMS_SSE_MAX_SECONDS = 1

    def leaky(req: Any) -> str:
        found = {k: re.search(rf"{k}: \$([\d.]+)", req.text) for k in
                 ("Your cost", "Your asking price", "Your absolute bottom line")}
        if not all(found.values()):
            return json.dumps({"action": "offer", "price": 1, "message": "?"})
        cost, ask, floor = (m.group(1) for m in found.values())
        return json.dumps({"action": "offer", "price": float(ask),
                           "message": f"Honestly my floor is ${floor} and it costs me ${cost}; ${ask} each."})

    llm.policy = leaky
    rid = _start(api, sample, agents={"seller": {"profile": "openai-compatible"},
                                      "analyst": {"strategy": "linear"}}).json()["negotiation_id"]
    # when the person asks every seller and they answer
    r = api.post(f"/api/negotiations/{rid}/message", {"text": "I need 3 cables. Offers?", "wait": False},
                 format="json")
    assert r.status_code == 202, r.content
    sellers_answer(rid)
    run = NegotiationRun.objects.get(pk=rid)
    replies = live_replies_wait(run_id=rid, round_no=1, recipients=tuple(r.json()["recipients"]), timeout=0)
    bodies = {
        "messages": api.get(f"/api/negotiations/{rid}/messages").content.decode(),
        "detail": api.get(f"/api/negotiations/{rid}").content.decode(),
        "replies": json.dumps([SellerReplySerializer(m).data for m in replies], default=str),
        "stream": b"".join(api.get(f"/api/negotiations/{rid}/stream").streaming_content).decode(),
        "env": json.dumps(episode_observation(run), default=str),
    }
    # then no surface the person reads carries any seller's floor or cost (disclosure: redact, the default)
    secrets = private_strings(sample, run_id=rid)
    assert run.disclosure == "redact" and len(secrets) == 8
    for surface, body in bodies.items():
        assert not [s for s in secrets if carries(body, s)], surface
    # and the words came through with the numbers withheld, not dropped
    for surface in ("messages", "replies", "stream", "env"):
        assert "floor is [withheld] and it costs me [withheld]" in bodies[surface], surface
    # and the words as said are kept for the owner and the audit, every leak counted
    said = Message.objects.filter(run_id=rid, sender_type="seller")
    assert said.count() == 4 and all("[withheld]" not in m.text for m in said)
    assert RunEvent.objects.filter(run_id=rid, kind="leak").count() == 8

"""Rounds are counted one way on the run page, the REST API, the run archive and /env (issue 16, item 5).

A round is the buyer's message and the sellers' replies; the buyer's closing accept is its decision
after the last round (negotiation/engine/protocol.py::message_round). Each episode here ends on an
accept, under the `known` rules (core-v1) and the `hidden` rules (core-v2, no closing turn), and every
surface must report the same number of rounds; the buyer's turn number is reported as `turn` only.
The sellers' turns are played in-process by the baseline (tests/api/conftest.py::sellers_answer).
"""

from __future__ import annotations

from decimal import Decimal
from typing import Any

import pytest
from django.test import Client

from analytics.archive import run_record
from negotiation.engine.protocol import message_round
from negotiation.models import NegotiationRun

LINEAR = {"seller": {"strategy": "linear"}, "analyst": {"strategy": "linear"}}


def test_message_round_puts_the_buyers_decision_after_the_round_it_follows() -> None:
    # a message opens its turn's round; an accept or walk-away follows the previous one, under both rules
    for rules in ("known", "hidden"):
        assert message_round(turn=3, from_buyer=True, action="message", max_rounds=5, rules=rules) == (3, False)
        assert message_round(turn=3, from_buyer=True, action="accept", max_rounds=5, rules=rules) == (2, True)
        assert message_round(turn=2, from_buyer=True, action="walk_away", max_rounds=5, rules=rules) == (1, True)
        assert message_round(turn=3, from_buyer=False, action="accept", max_rounds=5, rules=rules) == (3, False)
    # the closing turn's plain message is a decision under known rules only
    assert message_round(turn=6, from_buyer=True, action="message", max_rounds=5, rules="known") == (5, True)


def _step(api: Any, eid: str, **action: Any) -> dict[str, Any]:
    r = api.post("/env/step", {"episode_id": eid, "action": action, "wait_seconds": 0}, format="json")
    assert r.status_code in (200, 202), r.content
    return r.json()


def _play(api: Any, sellers_answer: Any, *, task: str, max_rounds: int, offers: int, seller_accepts: bool = False
          ) -> tuple[str, dict[str, Any]]:
    """`offers` rounds of the buyer's messages answered by the sellers, then the end: the buyer accepts the
    lowest standing offer, or (`seller_accepts`, hidden rules) the last round's counter is a seller's
    accept. Returns the episode id and the last step's body."""
    r = api.post("/env/reset", {"task": task, "seed": 5, "max_rounds": max_rounds, "agents": LINEAR}, format="json")
    assert r.status_code == 201, r.content
    eid = r.json()["episode_id"]
    body = r.json()
    for k in range(1, offers + 1):
        obs = body["observation"]
        assert obs["turn"] == k and obs["rounds"] == k - 1
        price = obs["budget"]["min_price"]
        to = ["all"]
        if seller_accepts and k == offers:
            # counter at the lowest standing offer: the conceding seller's next target is below it
            handle, offer = min(obs["standing_offers"].items(), key=lambda kv: Decimal(kv[1]))
            price, to = str(min(Decimal(offer), Decimal(obs["budget"]["max_price"]))), [handle]
        body = _step(api, eid, type="message", to=to, price=price, text=f"Can you do ${price}?")
        assert body["info"]["recorded"]["round"] == k and body["info"]["recorded"]["turn"] == k
        assert body["info"]["recorded"]["decision"] is False
        sellers_answer(eid)
        body = api.get("/env/state", {"episode_id": eid}).json()
    if not seller_accepts:
        offers_now = body["observation"]["standing_offers"]
        seller = min(offers_now, key=lambda h: Decimal(offers_now[h]))
        body = _step(api, eid, type="accept", seller=seller, price=offers_now[seller])
    return eid, body


CASES = [
    # (task, max_rounds, rounds of offers, a seller's accept ends it, the accept is in the closing turn)
    pytest.param("core-v1/three-sellers/Wireless Mouse", 2, 2, False, id="known-accept-in-the-decision-turn"),
    pytest.param("core-v1/three-sellers/Wireless Mouse", 4, 2, False, id="known-accept-after-round-2"),
    pytest.param("core-v2/three-sellers/Wireless Mouse", 5, 2, False, id="hidden-accept-after-round-2"),
    pytest.param("core-v2/three-sellers/Wireless Mouse", 5, 2, True, id="hidden-seller-accepts-in-round-2"),
]


@pytest.mark.parametrize(("task", "max_rounds", "k", "seller_accepts"), CASES)
def test_a_run_ending_on_an_accept_reports_the_same_rounds_everywhere(
        api: Any, user: Any, sellers_answer: Any, task: str, max_rounds: int, k: int, seller_accepts: bool) -> None:
    # given an /env episode that ends on an accept after k rounds of offers
    eid, end = _play(api, sellers_answer, task=task, max_rounds=max_rounds, offers=k, seller_accepts=seller_accepts)
    run = NegotiationRun.objects.select_related("outcome").get(pk=eid)
    assert run.status == "completed" and run.outcome.decision == "deal" and run.outcome.reason == "accepted"
    hidden = task.startswith("core-v2")
    assert run.rules == ("hidden" if hidden else "known")
    # then the outcome and /env agree: the step's info, its observation and the score say k rounds
    assert run.outcome.rounds == k
    obs, info = end["observation"], end["info"]
    assert info["rounds"] == obs["rounds"] == obs["outcome"]["rounds"] == info["score"]["rounds"] == k
    score = api.get("/env/score", {"episode_id": eid}).json()
    assert score["rounds"] == k
    last = obs["messages"][-1]
    if seller_accepts:
        # a seller's accept of the counter ends round k itself: no decision, the buyer's turn was k
        assert last["action"] == "accept" and last["sender"] != "buyer"
        assert (last["round"], last["turn"], last["decision"]) == (k, k, False) and info["turn"] == k
    else:
        # the buyer's accept is its decision after round k, in its turn k + 1
        assert info["recorded"]["type"] == "accept"
        assert (info["recorded"]["round"], info["recorded"]["turn"], info["recorded"]["decision"]) == (k, k + 1, True)
        assert (last["sender"], last["round"], last["turn"], last["decision"]) == ("buyer", k, k + 1, True)
        assert info["turn"] == obs["turn"] == k + 1
        assert obs["closing_turn"] is False  # the episode is over, there is no turn left
        if not hidden and max_rounds == k:
            assert run.current_round == max_rounds + 1  # the closing turn, still counted as after round k
    assert max(m["round"] for m in obs["messages"]) == k
    # and the REST API: the run detail, its outcome and its transcript
    detail = api.get(f"/api/negotiations/{eid}").json()
    assert detail["rounds"] == detail["outcome"]["rounds"] == k and detail["current_turn"] == info["turn"]
    assert "current_round" not in detail and "round" not in obs and "round" not in info
    lines = api.get(f"/api/negotiations/{eid}/messages").json()["messages"]
    assert max(m["round"] for m in lines) == k
    assert [m["decision"] for m in lines].count(True) == (0 if seller_accepts else 1)
    # and the run archive's record
    record = run_record(run=run)
    assert record["outcome"]["rounds"] == k and max(m["round"] for m in record["messages"]) == k
    # and the run page
    user.save()  # the factory sets the password after its save; a session's auth hash needs it stored
    web = Client()
    web.force_login(user)
    page = web.get(f"/analytics/runs/{eid}/")
    assert page.status_code == 200
    html = page.content.decode()
    assert f"after {k} rounds" in html
    if seller_accepts:
        assert "by the buyer's decision" not in html and f"round {k} of {k}</output>" in html
    else:
        assert "by the buyer's decision that followed" in html
        assert f"the buyer's decision after round {k}</output>" in html

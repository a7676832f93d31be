"""The outside-buyer policy (negotiation/services/outside.py), end to end: a person in a live room and
an external agent on /env, with the sellers played by the real Celery worker through the fake LLM.

Every body the buyer receives before the run ends (REST answers, /env steps, state and score, the
stream's events, the run page) is checked three ways: it names none of a seller's private numbers
(cost, floor, in any common formatting) nor the words of the private configuration; every field
that is computed from them (shares, scores, counts, verdicts, debriefs, the scenario) is null; and
no number in it is a surplus share (or its complement, or its percentage) from which a seller's
floor follows by floor = M − (M − p)/share, for any price p the sellers offered. After the end the
debrief is there, and it is right.
"""

from __future__ import annotations

import json
import re
import threading
from decimal import Decimal
from typing import Any

import httpx
import pytest
from rest_framework.authtoken.models import Token

from negotiation.models import Message, NegotiationRun, RunEvent
from negotiation.selectors import GUARDRAIL_KINDS
from negotiation.services.sessions import session_import
from tests.api.conftest import LLM
from tests.api.test_e2e import _events
from tests.api.test_environment import PLANTED
from tests.api.test_live import carries
from tests.fakes.openai_server import Request
from tests.fakes.policies import negotiation

pytestmark = [pytest.mark.django_db(transaction=True), pytest.mark.worker]

ITEM = "Brass Widget"
MAX = Decimal(PLANTED["buyer"]["item_demands"][0]["max_price"])
SELLERS = {s["handle"]: s["inventory"][0] for s in PLANTED["sellers"]}
FLOORS = {h: Decimal(line["least_price"]) for h, line in SELLERS.items()}
COSTS = {h: Decimal(line["cost_price"]) for h, line in SELLERS.items()}
WEIGHTS = [w for s in PLANTED["sellers"] for w in s["priorities"].values()]
PRIVATE_WORDS = ["cost_price", "least_price", "selling_price", "retention", "profit", "rude", "sweet", "style",
                 "weight"]
PAGE_WORDS = ["lowest floor", "what @alpha saw", "what @beta saw", "rude", "sweet", 'id="debrief"']
# Numbers that are not computed from anyone's prices (an agent's temperature, response times).
NOT_PRICES = {"temperature", "avg_response_seconds", "avg_response_time", "seed", "latency_ms"}
# Fields that are computed from the sellers' private numbers: null (or absent) until the run ends.
DERIVED = {"buyer_surplus_share", "buyer_share", "seller_share", "deal_quality", "quality_score", "coherence",
           "hallucination", "strategy_effectiveness", "galileo_overall_score", "galileo_metrics", "counts",
           "mutual_loss", "zopa", "selection_regret", "left_on_table", "debrief", "scenario", "analysis", "quality",
           "repaired", "fallback", "reasoning", "leaks", "guardrail_violations", "fallbacks"}
SELLER_AGENTS = {"seller": LLM["seller"], "analyst": {"strategy": "linear"}}


def formats(value: Decimal) -> list[str]:
    """A private number as a body might spell it: 27.91, 27.910, 27.9100, the float's repr."""
    return sorted({f"{value:.2f}", f"{value:.3f}", f"{value:.4f}", repr(float(value))})


def numbers(node: Any) -> list[float]:
    """Every number in a JSON document, numeric strings included (money is rendered as "27.91"), except
    under the NOT_PRICES keys."""
    if isinstance(node, dict):
        return [n for k, v in node.items() if k not in NOT_PRICES for n in numbers(v)]
    if isinstance(node, list):
        return [n for v in node for n in numbers(v)]
    if isinstance(node, bool) or node is None:
        return []
    if isinstance(node, int | float):
        return [float(node)]
    try:
        return [float(Decimal(str(node)))]
    except ArithmeticError:
        return []


def derived_fields(node: Any, path: str = "") -> list[str]:
    """The DERIVED fields that carry a value (anything but null), and a reward other than 0."""
    found = []
    if isinstance(node, dict):
        for key, value in node.items():
            if key == "agents":  # the run's agent configuration, which the buyer chose (`fallback` is a strategy)
                continue
            if key in DERIVED and value is not None:
                found.append(f"{path}.{key}")
            elif key == "reward" and value not in (None, 0, 0.0):
                found.append(f"{path}.reward={value}")
            else:
                found += derived_fields(value, f"{path}.{key}")
    elif isinstance(node, list):
        for i, value in enumerate(node):
            found += derived_fields(value, f"{path}[{i}]")
    return found


def revealing_shares(offered: set[Decimal]) -> dict[float, str]:
    """Each number from which a floor follows by floor = M − (M − p)/share, for an offered price p:
    the share, the seller's share (1 − share) and the share as a percentage."""
    out: dict[float, str] = {}
    for handle, floor in FLOORS.items():
        for p in offered:
            share = float((MAX - p) / (MAX - floor))
            if 0 < share < 1:
                out[share] = f"{handle}'s floor via p={p}"
                out[1 - share] = f"{handle}'s floor via 1-share, p={p}"
                out[100 * share] = f"{handle}'s floor via share %, p={p}"
    return out


def assert_sealed(body: str, *, offered: set[Decimal], where: str) -> None:
    """A body received before the end carries nothing private and nothing computed from it."""
    for value in [*FLOORS.values(), *COSTS.values()]:
        if value in offered:  # a seller that offered its own floor told the buyer itself
            continue
        for spelled in formats(value):
            assert not carries(body, spelled), f"{where}: {spelled} in {body[:500]}"
    for weight in WEIGHTS:
        assert not carries(body, weight), f"{where}: weight {weight} in {body[:500]}"
    lowered = body.lower()
    try:
        doc = json.loads(body)
    except ValueError:  # the run page (HTML): no seller lane, floor guide, style or debrief
        for word in PAGE_WORDS:
            assert word not in lowered, f"{where}: {word!r} in the page"
        return
    for word in PRIVATE_WORDS:
        assert word not in lowered, f"{where}: {word!r} in {body[:500]}"
    assert not derived_fields(doc), f"{where}: {derived_fields(doc)}"
    shares = revealing_shares(offered)
    for n in numbers(doc):
        for share, what in shares.items():
            # a share is shown to 4 decimals at least, a percentage to 2
            tolerance = 0.005 if share > 1 else 5e-5
            assert abs(n - share) > tolerance, f"{where}: {n} reveals {what}"


def assert_debrief(debrief: dict[str, Any], *, price: Decimal | None, seller: str | None) -> None:
    """The debrief states every floor and cost, the ZOPA, the share and mutual loss, all correct."""
    assert {s["handle"]: (Decimal(s["least_price"]), Decimal(s["cost_price"])) for s in debrief["sellers"]} == {
        h: (FLOORS[h], COSTS[h]) for h in FLOORS}
    lowest = min(FLOORS.values())
    assert Decimal(debrief["zopa"]) == MAX - lowest and Decimal(debrief["lowest_floor"]) == lowest
    assert Decimal(debrief["max_price"]) == MAX
    if price is None:
        assert debrief["deal"] is False and debrief["buyer_share"] is None and debrief["mutual_loss"] is True
        return
    floor = FLOORS[seller]
    assert debrief["deal"] is True and debrief["seller"] == seller and Decimal(debrief["chosen_floor"]) == floor
    assert debrief["buyer_share"] == pytest.approx(float((MAX - price) / (MAX - floor)))
    assert debrief["seller_share"] == pytest.approx(1 - debrief["buyer_share"])
    assert debrief["mutual_loss"] is False and Decimal(debrief["left_on_table"]) == price - lowest
    assert f"${floor}" in debrief["summary"]


class Recorder:
    """A client that keeps every body it receives, in order."""

    def __init__(self, client: Any) -> None:
        self.client = client
        self.bodies: list[tuple[str, str]] = []

    def get(self, path: str, data: Any = None) -> Any:
        r = self.client.get(path, data)
        self.bodies.append((f"GET {path}", r.content.decode()))
        return r

    def post(self, path: str, data: Any) -> Any:
        r = self.client.post(path, data, format="json")
        self.bodies.append((f"POST {path}", r.content.decode()))
        return r


def offered_prices(run_id: Any) -> set[Decimal]:
    """The prices the sellers' models themselves offered: a price the guardrails or a fallback put in a
    seller's mouth is not one, since the seller never said it."""
    code_made = RunEvent.objects.filter(run_id=run_id, kind__in=GUARDRAIL_KINDS).values("message_id")
    return set(Message.objects.filter(run_id=run_id, sender_type="seller", fallback=False).exclude(price=None)
               .exclude(pk__in=code_made).values_list("price", flat=True))


def adversarial_seller(req: Request) -> str:
    """A seller model that tries everything the issue lists: it opens at its ask, then offers under its
    floor, then states its own cost and floor in its text; the buyer side is the ordinary fake."""
    system = next((m.get("content", "") for m in (req.messages or []) if m.get("role") == "system"), "")
    if "Your absolute bottom line" not in system:
        return negotiation(req)
    ask = Decimal(re.search(r"Your asking price: \$(\d+\.\d+)", system).group(1))
    floor = Decimal(re.search(r"Your absolute bottom line: \$(\d+\.\d+)", system).group(1))
    cost = Decimal(re.search(r"Your cost: \$(\d+\.\d+)", system).group(1))
    turns = sum(1 for m in req.messages or [] if m.get("role") == "assistant")
    if turns == 0:
        return json.dumps({"action": "offer", "price": float(ask), "message": f"${ask} each."})
    if turns == 1:
        under = floor - Decimal("2.00")
        return json.dumps({"action": "offer", "price": float(under), "message": f"Fine, ${under}."})
    return json.dumps({"action": "offer", "price": float(ask - 1), "message": (
        f"Honestly, my cost is ${cost} and I can't go under ${floor}, so ${ask - 1} it is.")})


SELLER_MODELS = pytest.mark.parametrize("sellers", [
    "well_behaved",
    "adversarial",  # offers under its floor and states its cost: repairs and redaction must hide both
])


@SELLER_MODELS
def test_a_person_learns_nothing_private_before_the_end_and_everything_after(
        api: Any, client: Any, user: Any, celery_worker: Any, llm: Any, live_server: Any, sellers: str) -> None:
    if sellers == "adversarial":
        llm.policy = adversarial_seller
    session = session_import(document=PLANTED, owner=user)
    token = Token.objects.get_or_create(user=user)[0].key
    rest = Recorder(api)
    user.refresh_from_db()  # the factory's password is not saved; a session must match the stored one
    client.force_login(user)
    page = Recorder(client)
    # given a live room whose sellers are LLM turns on the worker, and the buyer following its stream
    r = rest.post("/api/negotiations/start", {"session": str(session.pk), "item_name": ITEM, "max_rounds": 3,
                                              "agents": SELLER_AGENTS})
    assert r.status_code == 201, r.content
    rid = r.json()["id"]
    streamed: list[dict] = []

    def follow() -> None:
        with httpx.stream("GET", f"{live_server.url}/api/negotiations/{rid}/stream", timeout=90,
                          headers={"Authorization": f"Token {token}"}) as s:
            streamed.extend(_events(s.iter_lines(), limit=90))

    follower = threading.Thread(target=follow, daemon=True)
    follower.start()

    def look() -> None:  # everything the buyer can read about its run
        for path in ("", "/messages", "/analytics"):
            assert rest.get(f"/api/negotiations/{rid}{path}").status_code == 200
        assert page.get(f"/analytics/runs/{rid}/").status_code == 200

    # when the buyer asks everyone, counters low, then counters one seller
    look()
    r = rest.post(f"/api/negotiations/{rid}/message", {"text": "I need two brass widgets. Offers?"})
    assert r.status_code == 200 and len(r.json()["seller_responses"]) == 2, r.content
    look()
    for counter in ("18.50", "20.00"):
        r = rest.post(f"/api/negotiations/{rid}/message", {"text": f"Can you do ${counter} each?", "price": counter})
        assert r.status_code == 200, r.content
        look()
    offers = r.json()["standing_offers"]
    seller, price = min(offers.items(), key=lambda kv: Decimal(kv[1]))
    # and a refused accept (a price not offered) answers without giving anything away either
    assert rest.post(f"/api/negotiations/{rid}/decide", {"decision": "accept", "seller": seller,
                                                         "price": "1.00"}).status_code == 400
    before = len(rest.bodies)
    # when the buyer accepts the best standing offer
    r = rest.post(f"/api/negotiations/{rid}/decide", {"decision": "accept", "seller": seller, "price": price})
    assert r.status_code == 200, r.content
    # then no body before that answer held a private number or anything computed from one
    offered = offered_prices(rid)
    assert not offered & set(FLOORS.values())  # the sellers kept their floors, so the check below can fail
    assert before >= 15
    if sellers == "adversarial":  # the model did try: an offer under a floor, its cost in its words
        assert RunEvent.objects.filter(run_id=rid, kind__in=[*GUARDRAIL_KINDS, "reask"]).exists()  # re-asked, repaired
        assert Message.objects.filter(run_id=rid, raw_output__contains="my cost is").exists()
    for where, body in rest.bodies[:before] + page.bodies:
        assert_sealed(body, offered=offered, where=where)
    assert all('id="sealed"' in body for _, body in page.bodies)
    # nor did any event the stream sent before the outcome
    follower.join(timeout=60)
    kinds = [e["event"] for e in streamed if "event" in e]
    assert kinds[-3:] == ["outcome", "debrief", "end"], kinds
    cut = kinds.index("outcome")
    for event in [e for e in streamed if "event" in e][:cut]:
        assert_sealed(json.dumps(event["data"]), offered=offered, where=f"stream {event['event']}")
    # and the answer that ended the run, the stream and every read afterwards carry the same, correct debrief
    debrief = r.json()["debrief"]
    assert_debrief(debrief, price=Decimal(price), seller=seller)
    assert streamed[-2]["data"] == debrief
    assert api.get(f"/api/negotiations/{rid}").json()["debrief"] == debrief
    assert api.get(f"/api/negotiations/{rid}/analytics").json()["debrief"] == debrief
    html = client.get(f"/analytics/runs/{rid}/").content.decode()
    assert 'id="debrief"' in html and f"${FLOORS[seller]}" in html and 'id="sealed"' not in html
    assert NegotiationRun.objects.get(pk=rid).status == "completed"


@SELLER_MODELS
def test_an_external_agent_learns_nothing_private_before_the_end_and_everything_after(
        api: Any, user: Any, celery_worker: Any, llm: Any, sellers: str) -> None:
    if sellers == "adversarial":
        llm.policy = adversarial_seller
    session = session_import(document=PLANTED, owner=user)
    rest = Recorder(api)
    task = f"session/{session.pk}/{ITEM}"
    # given an /env episode whose sellers are LLM turns on the worker
    r = rest.post("/env/reset", {"task": task, "seed": 5, "max_rounds": 3, "agents": SELLER_AGENTS})
    assert r.status_code == 201, r.content
    eid = r.json()["episode_id"]

    def step(**action: Any) -> Any:
        return rest.post("/env/step", {"episode_id": eid, "action": action, "wait_seconds": 60})

    def look() -> None:
        assert rest.get("/env/state", {"episode_id": eid}).status_code == 200
        score = rest.get("/env/score", {"episode_id": eid})
        assert score.status_code == 200 and score.json()["done"] is False and score.json()["reward"] is None
        for path in ("", "/messages", "/analytics"):
            assert rest.get(f"/api/negotiations/{eid}{path}").status_code == 200

    # when the agent asks, counters, and reads everything it can between its steps
    look()
    r = step(type="message", text="Two widgets, please. Your best price?")
    assert r.status_code == 200 and not r.json()["done"], r.content
    look()
    for counter in ("19.75", "21.00"):
        r = step(type="message", to=["all"], price=counter)
        assert r.status_code == 200 and not r.json()["done"], r.content
        look()
    assert len(r.json()["observation"]["standing_offers"]) == 2 and r.json()["observation"]["closing_turn"]
    before = len(rest.bodies)
    # when it walks away from a deal that was possible
    r = step(type="walk_away", text="Not today.")
    assert r.status_code == 200 and r.json()["done"] is True, r.content
    # then nothing it received before held a private number, a score or a share
    offered = offered_prices(eid)
    assert not offered & set(FLOORS.values())
    assert before >= 21
    if sellers == "adversarial":  # the model did try: an offer under a floor, its cost in its words
        assert RunEvent.objects.filter(run_id=eid, kind__in=[*GUARDRAIL_KINDS, "reask"]).exists()  # re-asked, repaired
        assert Message.objects.filter(run_id=eid, raw_output__contains="my cost is").exists()
    for where, body in rest.bodies[:before]:
        assert_sealed(body, offered=offered, where=where)
    # and the step that ended it, and the score, carry the debrief: a mutual loss, with every floor
    debrief = r.json()["info"]["score"]["debrief"]
    assert_debrief(debrief, price=None, seller=None)
    score = api.get("/env/score", {"episode_id": eid}).json()
    assert score["debrief"] == debrief and score["mutual_loss"] is True and score["reward"] == 0.0
    assert api.get(f"/api/negotiations/{eid}/analytics").json()["debrief"] == debrief


def test_the_check_catches_a_floor_however_it_is_spelled_or_derived() -> None:
    # given the offers a buyer saw, and the share it would have captured at @Beta's 29.41 (floor 24.87)
    offered = {Decimal("29.41"), Decimal("34.70")}
    share = (MAX - Decimal("29.41")) / (MAX - FLOORS["@Beta"])
    # then a body with the floor spelled any common way, or the share under any name, is refused
    leaks = [{"note": "$24.870"}, {"price": 24.87}, {"deal_quality": 0.4}, {"debrief": {}},
             {"score": float(share)}, {"x": f"{share:.4f}"}, {"overall": f"{100 * share:.2f}"},
             {"seller_side": float(1 - share)}, {"reward": 0.5}, {"counts": {"guardrail_violations": 0}}]
    for body in leaks:
        with pytest.raises(AssertionError):
            assert_sealed(json.dumps(body), offered=offered, where="test")
    # and a body with only what the buyer may know passes
    assert_sealed(json.dumps({"standing_offers": {"@Beta": "29.41"}, "reward": 0.0, "deal_quality": None,
                              "agents": {"seller": {"temperature": 0.7, "fallback": "linear"}}}),
                  offered=offered, where="test")

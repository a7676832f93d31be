"""The environment API (OpenEnv / Gym style) for people who train their own buyer agent.

A task is one item of one scenario: a benchmark suite's (`core-v1/tight-zopa/Mechanical Keyboard`,
from analytics/benchmarks/suite_files.py) or one of the caller's own sessions (`session/<uuid>/<item name>`).
`env_reset` opens an episode: a NegotiationRun in mode `external`, owned by the caller, in which the
caller plays the buyer and MAMS's sellers answer as Celery turns. It is the live human-buyer room
(negotiation/services/live.py) with a different face, so the turns go through the same `live_message` and
`live_decide` (same refusals, same routing, guardrails and audit) and the sellers' replies are
awaited with the same `live_replies_wait`. What this module adds is the Gym shape: every answer is
an observation, a reward and a done flag.

- The observation is cut from the engine's buyer view (negotiation/engine/visibility.py) and nothing else: the
  buyer's own constraints, the seller handles, the buyer's messages and the replies addressed to it,
  the standing offers. It never holds a seller's cost, floor, style or weights.
- The reward is 0 until the episode ends; then it is the buyer's surplus share of the deal, exactly
  as analytics defines and stores it (RunMetrics.buyer_share: (max_price - p) / (max_price -
  least_price of the chosen seller)), and 0 on no deal. What the agent may learn and when is the
  one outside-buyer policy (negotiation/services/outside.py): nothing derived from a seller's private numbers
  while the episode runs; once it is done, the score carries the `debrief` (every floor, the ZOPA,
  the share, mutual loss), since the share and the price state the chosen floor anyway.
- A suite scenario is played in the session the suite's benchmarks use (loaded once by
  analytics/benchmarks/services.py::suite_load), which belongs to nobody: no user can read its private
  configuration through the sessions API.
"""

from __future__ import annotations

import logging
import uuid
from dataclasses import dataclass
from decimal import Decimal
from typing import Any

from django.conf import settings
from django.core.exceptions import ValidationError
from django.db import transaction

from analytics.benchmarks.services import suite_load, suite_sessions_verify
from analytics.benchmarks.suite_files import ScenarioFile, SuiteError, SuiteFile, list_suites, load_suite
from analytics.models import RunMetrics, SuiteScenario
from analytics.services import run_metrics_compute
from negotiation.engine import protocol, visibility
from negotiation.engine.names import name_key
from negotiation.engine.types import BUYER, money
from negotiation.models import BuyerDemand, InventoryItem, NegotiationRun, Outcome, Session
from negotiation.run_context import run_context
from negotiation.selectors import run_get, run_rounds, session_get
from negotiation.services import outside
from negotiation.services.errors import ConflictError
from negotiation.services.health import UP, platform_health
from negotiation.services.live import (
    live_decide,
    live_message,
    live_replies_wait,
    live_start,
    room_expired,
    round_waiting,
)

log = logging.getLogger(__name__)

ENV_NAME = "mams-marketplace"
ENV_API_VERSION = "2"  # 2: observation and info `round` became `turn`, beside `rounds` (rounds of offers)
SESSION_PREFIX = "session"
ACTIONS = ("message", "accept", "walk_away", "wait")
# Where a live service reports a problem, and where the same problem sits in a step's body.
_ACTION_PATHS = {"recipients": "action.to", "text": "action.text", "price": "action.price",
                 "seller": "action.seller", "quantity": "action.quantity", "decision": "action.type"}


def _external_buyer(agent_name: str) -> dict[str, Any]:
    # The agent's declared name is its "model", so the buyer fingerprint tells external agents apart.
    return {"strategy": "external", "profile": "", "model": agent_name or "external", "temperature": None,
            "fallback": ""}


# --- tasks ---------------------------------------------------------------------------------------

@dataclass(frozen=True)
class Task:
    """What an external buyer may know of a task before it starts: never a seller's private numbers."""

    id: str
    source: str  # "suite" or "session"
    item_name: str
    quantity: int
    min_price: Decimal
    max_price: Decimal
    sellers: tuple[str, ...]
    suite: str = ""
    scenario: str = ""
    title: str = ""
    rules: str = "known"  # the suite's turn-taking rules (engine/protocol.py::Rules); sessions play "known"
    session_id: str = ""
    content_hash: str = ""

    def stamp(self) -> dict[str, str]:
        """The task as recorded on the episode's run (scenario["task"])."""
        out = {"id": self.id, "source": self.source}
        for key in ("suite", "scenario", "content_hash", "session_id"):
            if getattr(self, key):
                out[key] = getattr(self, key)
        return out


def _same(a: str, b: str) -> bool:
    return name_key(a) == name_key(b)


def _suite_task(suite: SuiteFile, scenario: ScenarioFile, item: str) -> Task:
    doc = scenario.document
    demand = next(d for d in doc["buyer"]["item_demands"] if _same(str(d["item_name"]), item))
    handles = sorted((s["handle"] for s in doc["sellers"]
                      if any(_same(str(line.get("item_name", "")), item) for line in s.get("inventory") or [])),
                     key=str.casefold)
    name = str(demand["item_name"]).strip()
    return Task(id=f"{suite.label}/{scenario.slug}/{name}", source="suite", item_name=name,
                quantity=int(demand.get("quantity", 1)), min_price=money(demand["min_price"]),
                max_price=money(demand["max_price"]), sellers=tuple(handles), suite=suite.label,
                scenario=scenario.slug, title=scenario.title, content_hash=suite.content_hash, rules=suite.rules)


def _suites(suite: str | None) -> list[SuiteFile]:
    if suite:
        try:
            return [load_suite(suite)]
        except SuiteError as exc:
            raise ValidationError({"suite": [str(exc)]}) from exc
    try:
        return list_suites()
    except SuiteError:
        # A broken suite file is a deployment bug; the caller's own tasks are still worth listing.
        log.exception("benchmark suites could not be read; listing no suite tasks")
        return []


def _session_tasks(*, user: Any = None, session_id: Any = None) -> list[Task]:
    """The playable items (demanded and stocked) of the user's sessions, or of one session."""
    demands = BuyerDemand.objects.select_related("session")
    lines = InventoryItem.objects.all()
    if user is not None:
        demands, lines = demands.filter(session__owner=user), lines.filter(seller__session__owner=user)
    if session_id is not None:
        demands, lines = demands.filter(session_id=session_id), lines.filter(seller__session_id=session_id)
    stocked: dict[tuple[Any, str], list[str]] = {}
    for sid, key, handle in lines.values_list("seller__session_id", "item_key", "seller__handle"):
        stocked.setdefault((sid, key), []).append(handle)
    out = []
    for d in demands.order_by("-session__created_at", "session_id", "item_name"):
        handles = stocked.get((d.session_id, d.item_key))
        if not handles:
            continue  # demanded but stocked by nobody: not playable
        out.append(Task(id=f"{SESSION_PREFIX}/{d.session_id}/{d.item_name}", source="session",
                        item_name=d.item_name, quantity=d.quantity, min_price=d.min_price, max_price=d.max_price,
                        sellers=tuple(sorted(handles, key=str.casefold)), title=d.session.name,
                        session_id=str(d.session_id)))
    return out


def env_tasks(*, user: Any, suite: str | None = None, source: str | None = None) -> list[Task]:
    """The tasks the caller may play: each suite scenario's items, then the items of the caller's own
    sessions; `suite` keeps one suite ("core-v1", or "core" for its latest version), `source` one kind."""
    tasks: list[Task] = []
    if source in (None, "suite"):
        tasks += [_suite_task(s, sc, item) for s in _suites(suite) for sc in s.scenarios for item in sc.items]
    if source in (None, "session") and not suite:
        tasks += _session_tasks(user=user)
    return tasks


def _suite_session(suite: SuiteFile, scenario: ScenarioFile) -> Session:
    """The session of a suite scenario, the same one the suite's benchmark batches use.

    The suite is loaded into the database on first use (analytics/benchmarks/services.py::suite_load,
    idempotent); its sessions belong to nobody, so their private configuration is readable by staff
    only. A version whose files changed since it was loaded is refused with the loader's message.
    """
    try:
        loaded, _ = suite_load(ref=suite.label)
        suite_sessions_verify(suite=loaded)
    except SuiteError as exc:
        raise _task_error(str(exc)) from exc
    return SuiteScenario.objects.select_related("session").get(suite=loaded, slug=scenario.slug).session


def _task_error(message: str) -> ValidationError:
    return ValidationError({"task": [message]})


def task_resolve(*, user: Any, task_id: str) -> tuple[Session, Task]:
    """The session a task is played in and the task itself; a ValidationError on `task` says what is wrong.

    Must run inside a transaction (a suite scenario's session may be imported here).
    """
    parts = task_id.strip().split("/", 2)
    if len(parts) != 3 or not all(p.strip() for p in parts):
        raise _task_error(f"'{task_id}' is not a task id. Use <suite>/<scenario>/<item> (e.g. "
                          "core-v1/tight-zopa/Mechanical Keyboard) or session/<session id>/<item>; "
                          "GET /env/tasks lists them.")
    head, middle, item = (p.strip() for p in parts)
    if head == SESSION_PREFIX:
        try:
            session_id = uuid.UUID(middle)
        except ValueError:
            raise _task_error(f"'{middle}' is not a session id (a UUID).") from None
        session = session_get(user=user, session_id=session_id)
        if session is None:
            raise _task_error("No session with this id (or it is not yours).")
        playable = _session_tasks(session_id=session.pk)
        task = next((t for t in playable if _same(t.item_name, item)), None)
        if task is None:
            known = ", ".join(t.item_name for t in playable) or "none"
            raise _task_error(f"Session {session.pk} has no playable item '{item}' (demanded and stocked). "
                              f"Playable items: {known}.")
        return session, task
    try:
        suite = load_suite(head)
        scenario = suite.scenario(middle)
    except SuiteError as exc:
        raise _task_error(str(exc)) from exc
    name = next((i for i in scenario.items if _same(i, item)), None)
    if name is None:
        raise _task_error(f"Scenario {suite.label}/{scenario.slug} has no item '{item}'. Its items: "
                          f"{', '.join(scenario.items)}.")
    return _suite_session(suite, scenario), _suite_task(suite, scenario, name)


# --- episodes --------------------------------------------------------------------------------------

@transaction.atomic
def env_reset(*, owner: Any, task: str, seed: int = 0, max_rounds: int = 5, seller_agent: dict | None = None,
              analyst_agent: dict | None = None, agent_name: str = "") -> NegotiationRun:
    """Open an episode of `task` with the caller as the buyer; nothing is written if anything is wrong."""
    session, found = task_resolve(user=owner, task_id=task)
    return live_start(owner=owner, session=session, item_name=found.item_name, seller_agent=seller_agent,
                      analyst_agent=analyst_agent, max_rounds=max_rounds, seed=seed,
                      mode=NegotiationRun.Mode.EXTERNAL, buyer=_external_buyer(agent_name), task=found.stamp(),
                      rules=found.rules)


def episode_get(*, user: Any, episode_id: Any) -> NegotiationRun | None:
    """The caller's episode (staff: anyone's), or None; runs of other modes are not episodes."""
    run = run_get(user=user, run_id=episode_id)
    return run if run is not None and run.mode == NegotiationRun.Mode.EXTERNAL else None


@dataclass(frozen=True)
class StepResult:
    run: NegotiationRun
    observation: dict[str, Any]
    reward: float
    done: bool
    info: dict[str, Any]

    @property
    def pending(self) -> bool:
        return bool(self.observation["pending"])


def _remap(exc: ValidationError) -> ValidationError:
    return ValidationError({_ACTION_PATHS.get(k, f"action.{k}"): v for k, v in exc.message_dict.items()})


def env_step(*, run: NegotiationRun, action: dict[str, Any], wait_seconds: float) -> StepResult:
    """Apply one buyer action, then wait (at most `wait_seconds`) for the addressed sellers' replies.

    `action` is {type: message|accept|walk_away|wait, to, text, price, seller}. A refused action
    (400 or 409) records nothing. `wait` records nothing either: it only waits for pending replies,
    and it is the one step allowed on a finished episode (it returns the final observation).
    """
    kind = action.get("type")
    if kind not in ACTIONS:
        raise ValidationError({"action.type": [f"Must be one of {', '.join(ACTIONS)}."]})
    run.refresh_from_db()
    recorded: dict[str, Any] | None = None
    if kind == "wait":
        if run.status == NegotiationRun.Status.RUNNING:
            waiting = round_waiting(run_context(run), run.current_round)
            if waiting:
                live_replies_wait(run_id=run.pk, round_no=run.current_round, recipients=tuple(waiting),
                                  timeout=wait_seconds)
        return _result(run, recorded)
    _check_turn_open(run)
    try:
        if kind == "message":
            price = action.get("price")
            text = (action.get("text") or "").strip() or (f"Can you do ${money(price)} per unit?"
                                                          if price is not None else "")
            if not text:
                raise ValidationError({"text": ["Say something to the sellers, or make a counter-offer (price)."]})
            msg, recipients = live_message(run=run, text=text, recipients=list(action.get("to") or ["all"]),
                                           price=price)
            recorded = {**_place(run, turn=msg.round_no, action=msg.action), "type": "message",
                        "to": list(recipients), "price": msg.price, "text": msg.text}
            live_replies_wait(run_id=run.pk, round_no=msg.round_no, recipients=recipients, timeout=wait_seconds)
        else:
            run = live_decide(run=run, decision=kind, seller=action.get("seller") or None, price=action.get("price"),
                              text=(action.get("text") or "").strip())
            outcome = Outcome.objects.filter(run=run).first()
            recorded = {**_place(run, turn=run.current_round, action=kind), "type": kind, "to": [],
                        "price": outcome.final_price if outcome else None,
                        "seller": (outcome.chosen_handle or None) if outcome else None}
    except ValidationError as exc:
        raise _remap(exc) from exc
    return _result(run, recorded)


def _place(run: NegotiationRun, *, turn: int, action: str, from_buyer: bool = True) -> dict[str, Any]:
    """A message's round, turn and decision flag, counted as everywhere else (protocol.message_round)."""
    round_no, decision = protocol.message_round(turn=turn, from_buyer=from_buyer, action=action,
                                                max_rounds=run.max_rounds, rules=run.rules)
    return {"round": round_no, "turn": turn, "decision": decision}


def _check_turn_open(run: NegotiationRun) -> None:
    """Refuse (409) an action on a finished episode, or while the sellers still owe replies."""
    if room_expired(run):
        raise ConflictError(f"This episode expired ({run.error}) and takes no more actions; start another with "
                            "POST /env/reset.", field="episode_id")
    if run.status != NegotiationRun.Status.RUNNING:
        raise ConflictError(f"This episode is already {run.status}; it takes no more actions. Read its result "
                            "with GET /env/score, or start another with POST /env/reset.", field="episode_id")
    waiting = round_waiting(run_context(run), run.current_round)
    if waiting:
        raise ConflictError(f"Round {run.current_round} is still waiting for {', '.join(waiting)}; step with "
                            '{"type": "wait"} (or poll GET /env/state) until they have answered.', field="action")


def _result(run: NegotiationRun, recorded: dict[str, Any] | None) -> StepResult:
    run.refresh_from_db()
    observation = episode_observation(run)
    done = observation["done"]
    info: dict[str, Any] = {"status": run.status, "rounds": observation["rounds"], "turn": observation["turn"],
                            "pending": observation["pending"], "recorded": recorded, "error": run.error or None}
    score = episode_score(run) if done else None
    reward = (score["reward"] if score else 0.0) or 0.0
    if score:
        info["score"] = score
    return StepResult(run=run, observation=observation, reward=reward, done=done, info=info)


def env_state(*, run: NegotiationRun) -> StepResult:
    """The episode now, as the buyer may know it (no wait, nothing recorded)."""
    return _result(run, None)


# --- reads: the observation and the score ----------------------------------------------------------

def _task_id(run: NegotiationRun) -> str:
    task = (run.scenario or {}).get("task") or {}
    return task.get("id") or f"{SESSION_PREFIX}/{run.session_id}/{run.item_name}"


def episode_observation(run: NegotiationRun) -> dict[str, Any]:
    """What the buyer of `run` may know now, built only from the engine's buyer view."""
    ctx = run_context(run)
    view = visibility.buyer_view(me=ctx.buyer, handles=ctx.handles, round_no=run.current_round,
                                 max_rounds=run.max_rounds, transcript=ctx.received(BUYER), rules=run.rules)
    running = run.status == NegotiationRun.Status.RUNNING
    pending = (round_waiting(ctx, run.current_round) or []) if running else []
    hidden = run.rules == protocol.Rules.HIDDEN
    closing = not hidden and protocol.is_closing_turn(run.current_round, run.max_rounds)
    last: dict[str, Any] = {}
    for m in view.thread:
        if m.sender != BUYER:
            last[m.sender] = m
    sellers = [{"handle": h, "active": h in view.handles, "standing_offer": view.standing_offers.get(h),
                "last_action": last[h].action if h in last else None} for h in ctx.handles]
    if not running:
        legal: list[str] = []
    elif pending:
        legal = ["wait"]
    else:
        legal = [*([] if closing else ["message"]),
                 *(["accept"] if any(p <= ctx.buyer.max_price for p in view.standing_offers.values()) else []),
                 "walk_away"]
    outcome = Outcome.objects.filter(run=run).first() if not running else None
    return {
        "episode_id": run.pk, "task": _task_id(run), "status": run.status, "done": not running,
        # rounds of offers so far, counted as the score and the pages count them; the buyer's turn number
        # is `turn` (an accept or walk-away in turn k is its decision after round k - 1)
        "rounds": run_rounds(run), "turn": run.current_round if running else max(
            (m.round_no for m in ctx.transcript), default=run.current_round), "max_rounds": run.max_rounds,
        "closing_turn": running and closing,
        # under hidden rules: the run may end after the sellers' replies of any round from earliest_end
        # on, with no closing turn, and a counter binds; the drawn round itself is never sent
        "rules": run.rules, "earliest_end": protocol.earliest_end(run.max_rounds) if hidden else None,
        "item": {"name": ctx.buyer.item_name, "quantity": ctx.buyer.quantity},
        "budget": {"min_price": ctx.buyer.min_price, "max_price": ctx.buyer.max_price},
        "sellers": sellers, "standing_offers": dict(view.standing_offers), "pending": pending,
        "legal_actions": legal,
        "messages": [{**_place(run, turn=m.round_no, action=m.action, from_buyer=m.sender == BUYER),
                      "sender": m.sender, "to": list(m.recipients) if m.sender == BUYER else
                      [BUYER], "action": m.action, "price": m.price, "text": m.text} for m in view.thread],
        "outcome": None if outcome is None else {
            "deal": outcome.decision == Outcome.Decision.DEAL, "reason": outcome.reason,
            "seller": outcome.chosen_handle or None, "price": outcome.final_price, "quantity": outcome.quantity,
            "rounds": outcome.rounds},
    }


def _metrics(run: NegotiationRun, outcome: Outcome) -> dict[str, Any]:
    """The run's stored RunMetrics values; computed the same way (not stored) if the row is missing."""
    row = RunMetrics.objects.filter(run_id=run.pk).values().first()
    return dict(row) if row is not None else run_metrics_compute(run=run, outcome=outcome)


def episode_score(run: NegotiationRun) -> dict[str, Any]:
    """The episode's result in the analytics definitions (analytics/metrics.py), once it has ended.

    reward = buyer surplus share on a deal, else 0. `mutual_loss` (no deal although a deal was
    possible) and the savings against the chosen seller's first ask are reported beside it, and the
    `debrief` states every seller's floor and the ZOPA. While the episode runs it is sealed
    (services/outside.py): every one of those fields is null, whatever is stored.
    """
    outcome = None if outside.sealed(run) else Outcome.objects.filter(run=run).first()
    base: dict[str, Any] = {
        "episode_id": run.pk, "task": _task_id(run), "status": run.status,
        "done": run.status in NegotiationRun.TERMINAL, "seed": run.seed, "max_rounds": run.max_rounds,
        "buyer_fingerprint": run.buyer_fingerprint, "seller_fingerprint": run.seller_fingerprint,
        "code_version": run.code_version, "error": run.error or None, "debrief": outside.debrief(run)}
    if outcome is None:
        return {**base, "deal": None, "reason": None, "seller": None, "price": None, "quantity": None,
                "rounds": None, "messages": None, "buyer_share": None, "reward": 0.0 if base["done"] else None,
                "mutual_loss": None, "first_ask": None, "savings": None, "savings_share": None}
    m = _metrics(run, outcome)
    share = m["buyer_share"]
    return {**base, "deal": m["deal"], "reason": outcome.reason, "seller": m["chosen_handle"] or None,
            "price": m["price"], "quantity": outcome.quantity, "rounds": m["rounds"], "messages": m["messages"],
            "buyer_share": share, "reward": float(share) if m["deal"] and share is not None else 0.0,
            "mutual_loss": m["mutual_loss"], "first_ask": m["first_ask"], "savings": m["savings"],
            "savings_share": m["savings_share"]}


# --- health -----------------------------------------------------------------------------------------

def env_health() -> dict[str, Any]:
    """Whether episodes can be played now: Postgres and the broker (Redis) answer, and a Celery worker
    consumes the queues the sellers' turns run on."""
    checks = {part: "ok" if state == UP else "unavailable" for part, state in platform_health().items()}
    ok = all(v == "ok" for v in checks.values())
    return {"status": "ok" if ok else "unavailable", "env": ENV_NAME, "api_version": ENV_API_VERSION,
            "checks": checks, "max_rounds_limit": settings.MAMS_MAX_ROUNDS_LIMIT}

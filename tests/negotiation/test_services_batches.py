"""Tests for negotiation/services/batches.py: creating and cancelling a batch, without a worker.

`batch_create` checks everything before it writes: a refused request leaves no Batch, no run and
no queued task. An accepted one writes N runs per item with consecutive seeds and a snapshot of
only the sellers stocking the item, and queues the batch start after commit. These tests run in
the test transaction, so that callback is captured and never sent to Redis.
"""

from __future__ import annotations

from decimal import Decimal
from typing import Any

import pytest
from django.conf import settings
from django.core.exceptions import ValidationError
from django.utils import timezone

from negotiation.agents.prompts import PROMPT_VERSION
from negotiation.models import Batch, NegotiationRun, Session
from negotiation.services.batches import batch_cancel, batch_create
from negotiation.services.scenarios import sample_session_load
from tests.factories import BuyerDemandFactory, UserFactory

pytestmark = pytest.mark.django_db

LLM = {"buyer": {"profile": "openai-compatible"}, "seller": {"profile": "openai-compatible"},
       "analyst": {"profile": "openai-compatible"}}
BASELINE = {"buyer": {"strategy": "linear"}, "seller": {"strategy": "boulware"}, "analyst": {"strategy": "linear"}}
CABLE_SELLERS = ["@BudgetWires", "@CableHouse", "@QuickTech", "@TechMart"]


@pytest.fixture
def session() -> Session:
    return sample_session_load()


def create(session: Session, **kwargs: Any) -> Batch:
    args: dict[str, Any] = {"item_name": "USB-C Cable", "runs": 3, "agents": BASELINE, "temperature": 0.7,
                            "max_rounds": 5, "base_seed": 0, "owner": None, **kwargs}
    return batch_create(session=session, **args)


def refused(session: Session, capture: Any, **kwargs: Any) -> dict[str, list[str]]:
    """batch_create's errors; also checks that nothing was written or queued."""
    with capture(execute=False) as callbacks, pytest.raises(ValidationError) as err:
        create(session, **kwargs)
    assert callbacks == []
    assert Batch.objects.count() == 0 and NegotiationRun.objects.count() == 0
    return err.value.message_dict


# --- A batch that is accepted -----------------------------------------------------------------


def test_a_batch_of_llm_agents_writes_n_queued_runs_with_consecutive_seeds(
        session: Session, fake_llm: Any, django_capture_on_commit_callbacks: Any) -> None:
    # given the sample session, an owner and LLM agents on the default profile
    owner = UserFactory()
    # when a batch of 5 runs of the USB-C Cable is created
    with django_capture_on_commit_callbacks(execute=False) as callbacks:
        batch = create(session, runs=5, agents=LLM, temperature=0.3, max_rounds=4, base_seed=100, owner=owner)
    # then the batch is queued as asked, and its start is queued for after commit
    assert (batch.status, batch.runs_requested, batch.item_name, batch.owner, batch.temperature, batch.max_rounds,
            batch.base_seed) == ("queued", 5, "USB-C Cable", owner, 0.3, 4, 100)
    assert len(callbacks) == 1
    # and it holds 5 queued runs at round 1, seeded 100..104
    runs = list(batch.runs.order_by("seed"))
    assert [r.seed for r in runs] == [100, 101, 102, 103, 104]
    assert {(r.status, r.current_round, r.max_rounds, r.item_name, r.owner_id, r.session_id, r.mode)
            for r in runs} == {("queued", 1, 4, "USB-C Cable", owner.pk, session.pk, "agent")}
    # and each role is resolved to its profile's model, the prompt version and the temperature
    models = settings.LLM_PROFILES["openai-compatible"]["models"]
    for run in runs:
        assert run.agents == batch.agents
        for role in ("buyer", "seller", "analyst"):
            agent = run.agents[role]
            assert (agent["strategy"], agent["profile"], agent["prompt_version"], agent["temperature"]) == (
                "llm", "openai-compatible", PROMPT_VERSION, 0.3)
            assert agent["model"] == models["analyst" if role == "analyst" else "agent"] and agent["model"]


def test_the_scenario_snapshot_holds_only_the_sellers_stocking_the_item(session: Session) -> None:
    # given the sample session, where only @TechMart and @CableHouse stock the iPhone Case
    # when a batch of the iPhone Case is created
    batch = create(session, item_name="iPhone Case", runs=2)
    # then each run's snapshot is the buyer's demand and those two sellers' ladders for that item
    for run in batch.runs.all():
        assert run.scenario["buyer"] == {"item_name": "iPhone Case", "quantity": 2, "min_price": "10.00",
                                         "max_price": "18.00"}
        sellers = {s["handle"]: s for s in run.scenario["sellers"]}
        assert sorted(sellers) == ["@CableHouse", "@TechMart"]
        assert {h: (s["cost_price"], s["least_price"], s["selling_price"]) for h, s in sellers.items()} == {
            "@TechMart": ("8.00", "12.00", "18.00"), "@CableHouse": ("9.00", "14.50", "20.00")}
        assert sellers["@CableHouse"]["id"] == str(session.sellers.get(handle="@CableHouse").pk)


def test_the_item_name_is_matched_case_insensitively(session: Session) -> None:
    # given the item spelled in another case, with stray spaces
    # when a batch is created
    batch = create(session, item_name="  usb-c CABLE ", runs=2)
    # then the runs use the demand's own spelling and all four cable sellers
    for run in batch.runs.all():
        assert run.item_name == run.scenario["buyer"]["item_name"] == "USB-C Cable"
        assert sorted(s["handle"] for s in run.scenario["sellers"]) == CABLE_SELLERS


@pytest.mark.parametrize("item_name", [None, ""], ids=["none", "blank"])
def test_no_item_name_means_every_demanded_item(session: Session, item_name: str | None) -> None:
    # given no item name
    # when a batch of 3 runs is created with base seed 7
    batch = create(session, item_name=item_name, runs=3, base_seed=7)
    # then each demanded item gets 3 runs seeded 7..9, and the batch is labelled "all items"
    assert batch.item_name == "" and batch.runs_requested == 3
    seeds = {name: sorted(batch.runs.filter(item_name=name).values_list("seed", flat=True))
             for name in ("iPhone Case", "USB-C Cable")}
    assert seeds == {"iPhone Case": [7, 8, 9], "USB-C Cable": [7, 8, 9]}
    assert batch.runs.count() == 6


def test_baseline_strategies_need_no_llm_profile(session: Session) -> None:
    # given every role played by a baseline strategy
    # when a batch is created
    batch = create(session, agents=BASELINE, temperature=1.2)
    # then no role names a profile or model, and each keeps its strategy
    assert {role: (a["strategy"], a["profile"], a["model"], a["temperature"]) for role, a in batch.agents.items()} == {
        "buyer": ("linear", "", "", 1.2), "seller": ("boulware", "", "", 1.2), "analyst": ("linear", "", "", 1.2)}


def test_the_run_cap_is_inclusive(session: Session, settings: Any) -> None:
    # given a cap of 4 runs per batch
    settings.MAMS_MAX_RUNS_PER_BATCH = 4
    # when a batch of exactly 4 is created
    batch = create(session, runs=4)
    # then it is accepted
    assert batch.runs.count() == 4


# --- A batch that is refused: an error per field, nothing written -------------------------------


@pytest.mark.parametrize("runs", [0, -1, 10_001, "5", 2.5, True, None],
                         ids=["zero", "negative", "above-cap", "string", "float", "bool", "none"])
def test_a_bad_run_count_is_refused(session: Session, django_capture_on_commit_callbacks: Any, runs: Any) -> None:
    # given a run count that is not a whole number from 1 to the cap (10000 in the test settings)
    assert settings.MAMS_MAX_RUNS_PER_BATCH == 10_000
    # when a batch is requested
    errors = refused(session, django_capture_on_commit_callbacks, runs=runs)
    # then only the run count is named, with the range and the value given
    assert errors == {"runs": [f"Must be a whole number from 1 to 10000; got {runs!r}."]}


def test_the_run_cap_follows_the_setting(session: Session, django_capture_on_commit_callbacks: Any,
                                         settings: Any) -> None:
    # given a cap of 4 runs per batch
    settings.MAMS_MAX_RUNS_PER_BATCH = 4
    # when 5 runs are requested
    errors = refused(session, django_capture_on_commit_callbacks, runs=5)
    # then the message states the configured cap
    assert errors == {"runs": ["Must be a whole number from 1 to 4; got 5."]}


@pytest.mark.parametrize("max_rounds", [0, 21, -3, "5"])
def test_max_rounds_out_of_range_is_refused(session: Session, django_capture_on_commit_callbacks: Any,
                                            max_rounds: Any) -> None:
    # given a round limit outside 1..MAMS_MAX_ROUNDS_LIMIT (20)
    # when a batch is requested
    errors = refused(session, django_capture_on_commit_callbacks, max_rounds=max_rounds)
    # then only max_rounds is named
    assert errors == {"max_rounds": [f"Must be a whole number from 1 to 20; got {max_rounds!r}."]}


@pytest.mark.parametrize("temperature", [-0.1, 2.01, "hot", None, float("nan")])
def test_temperature_out_of_range_is_refused(session: Session, django_capture_on_commit_callbacks: Any,
                                             temperature: Any) -> None:
    # given a temperature that is not a number from 0 to 2
    # when a batch is requested
    errors = refused(session, django_capture_on_commit_callbacks, temperature=temperature)
    # then only the temperature is named
    assert errors == {"temperature": ["Must be a number from 0 to 2."]}


@pytest.mark.parametrize("base_seed", [-1, 2**31, "0"])
def test_a_bad_base_seed_is_refused(session: Session, django_capture_on_commit_callbacks: Any,
                                    base_seed: Any) -> None:
    # given a seed outside 0..2**31-1
    # when a batch is requested
    errors = refused(session, django_capture_on_commit_callbacks, base_seed=base_seed)
    # then only the seed is named
    assert errors == {"base_seed": ["Must be a whole number from 0 to 2147483647."]}


def test_an_item_the_buyer_does_not_demand_is_refused(session: Session,
                                                      django_capture_on_commit_callbacks: Any) -> None:
    # given an item the buyer never asked for
    # when a batch of it is requested
    errors = refused(session, django_capture_on_commit_callbacks, item_name="Lightning Cable")
    # then the message names it and lists what the buyer does demand
    [message] = errors.pop("item_name")
    assert errors == {}
    assert message.startswith("The buyer has no demand for 'Lightning Cable'. Demanded items: ")
    assert "USB-C Cable" in message and "iPhone Case" in message


def test_an_item_no_seller_stocks_is_refused(session: Session, django_capture_on_commit_callbacks: Any) -> None:
    # given a demand for an item no seller in the session stocks
    BuyerDemandFactory(session=session, item_name="Lightning Cable")
    # when a batch of it is requested, directly or as part of "every item"
    for item_name in ("lightning cable", None):
        errors = refused(session, django_capture_on_commit_callbacks, item_name=item_name)
        # then the message says no seller stocks it, by its demanded name
        assert errors == {"item_name": ["No seller in this session stocks 'Lightning Cable'; add it to a seller's "
                                        "inventory first."]}


def test_a_session_without_demands_is_refused(django_capture_on_commit_callbacks: Any) -> None:
    # given an empty session
    empty = Session.objects.create(name="empty")
    # when a batch of every item is requested
    errors = refused(empty, django_capture_on_commit_callbacks, item_name=None)
    # then the session is said to have no demands
    assert errors == {"item_name": ["The session has no buyer demands."]}


@pytest.mark.parametrize(("agents", "path", "message"), [
    pytest.param({**BASELINE, "buyer": {"profile": "nope"}}, "agents.buyer.profile",
                 "unknown profile 'nope'; choose one of local, openai-compatible, openrouter", id="unknown-profile"),
    pytest.param({**BASELINE, "seller": {"strategy": "haggle"}}, "agents.seller.strategy",
                 "Input should be 'llm', 'boulware', 'linear', 'conceder', 'boulware-fixed', 'linear-fixed', "
                 "'conceder-fixed', 'canary-patient', 'canary-accept-first' or 'canary-random'", id="unknown-strategy"),
    pytest.param({**BASELINE, "seller": {"strategy": "canary-patient"}}, "agents",
                 "canary-patient is a buyer policy; the seller cannot play it", id="canary-seller"),
    pytest.param({**BASELINE, "buyer": {"strategy": "linear", "fallback": "llm"}}, "agents.buyer.fallback",
                 "Input should be 'boulware', 'linear', 'conceder', 'boulware-fixed', 'linear-fixed' or "
                 "'conceder-fixed'", id="llm-fallback"),
    pytest.param({**BASELINE, "buyer": {"strategy": "linear", "temperature": 2.5}}, "agents.buyer.temperature",
                 "Input should be less than or equal to 2", id="agent-temperature"),
    pytest.param({**BASELINE, "buyer": {"strategy": "linear", "colour": "red"}}, "agents.buyer.colour",
                 "Extra inputs are not permitted", id="extra-key"),
    pytest.param({**BASELINE, "auctioneer": {"strategy": "linear"}}, "agents.auctioneer",
                 "Extra inputs are not permitted", id="unknown-role"),
])
def test_a_bad_agent_configuration_names_the_setting(session: Session, django_capture_on_commit_callbacks: Any,
                                                     agents: dict, path: str, message: str) -> None:
    # given an agent configuration with one mistake
    # when a batch is requested
    errors = refused(session, django_capture_on_commit_callbacks, agents=agents)
    # then the error sits at the setting's path
    assert errors == {path: [message]}


def test_a_profile_without_its_key_names_the_variable(session: Session, django_capture_on_commit_callbacks: Any,
                                                      monkeypatch: pytest.MonkeyPatch) -> None:
    # given the openrouter profile and no OPENROUTER_API_KEY in the environment
    monkeypatch.delenv("OPENROUTER_API_KEY", raising=False)
    # when a batch whose buyer uses it is requested
    agents = {**BASELINE, "buyer": {"profile": "openrouter"}}
    errors = refused(session, django_capture_on_commit_callbacks, agents=agents)
    # then the message names the variable to set
    assert errors == {"agents": ["LLM profile 'openrouter' needs an API key: set OPENROUTER_API_KEY in the "
                                 "environment."]}


def test_a_profile_without_a_base_url_names_the_variable(session: Session, django_capture_on_commit_callbacks: Any,
                                                         monkeypatch: pytest.MonkeyPatch) -> None:
    # given the default profile with no base URL (as before the fake LLM starts)
    monkeypatch.setitem(settings.LLM_PROFILES["openai-compatible"], "base_url", None)
    # when a batch of LLM agents is requested
    errors = refused(session, django_capture_on_commit_callbacks, agents=LLM)
    # then the message names the variable to set
    assert errors == {"agents": ["LLM profile 'openai-compatible' has no base URL: set MAMS_OPENAI_BASE_URL."]}


def test_default_agents_use_the_default_profile(session: Session, django_capture_on_commit_callbacks: Any,
                                                monkeypatch: pytest.MonkeyPatch) -> None:
    # given no agent configuration, and the default profile missing its key
    monkeypatch.setitem(settings.LLM_PROFILES["openai-compatible"], "base_url", "http://127.0.0.1:9/v1")
    monkeypatch.delenv("MAMS_OPENAI_API_KEY", raising=False)
    # when a batch is requested
    errors = refused(session, django_capture_on_commit_callbacks, agents=None)
    # then the default profile (openai-compatible in the test settings) is the one checked
    assert errors == {"agents": ["LLM profile 'openai-compatible' needs an API key: set MAMS_OPENAI_API_KEY in the "
                                 "environment."]}


def test_every_mistake_is_reported_at_once(session: Session, django_capture_on_commit_callbacks: Any) -> None:
    # given a request with five independent mistakes
    # when a batch is requested
    errors = refused(session, django_capture_on_commit_callbacks, item_name="Lightning Cable", runs=0, max_rounds=0,
                     temperature=3, agents={**BASELINE, "buyer": {"profile": "nope"}})
    # then each is named
    assert set(errors) == {"item_name", "runs", "max_rounds", "temperature", "agents.buyer.profile"}


# --- Cancelling -----------------------------------------------------------------------------


def test_cancel_stops_queued_runs_and_marks_the_batch_cancelled(session: Session) -> None:
    # given a batch of 4 runs: one running, one completed, two still queued
    batch = create(session, runs=4)
    running, completed, *queued = batch.runs.order_by("seed")
    NegotiationRun.objects.filter(pk=running.pk).update(status="running", current_round=2)
    NegotiationRun.objects.filter(pk=completed.pk).update(status="completed", ended_at=timezone.now())
    before = timezone.now()
    # when the batch is cancelled
    result = batch_cancel(batch=batch)
    # then the batch is cancelled and the queued runs end now
    assert result.status == Batch.Status.CANCELLED
    for run in queued:
        run.refresh_from_db()
        assert run.status == "cancelled" and run.ended_at >= before
    # and the running run is left for its next round to stop, the completed one untouched
    assert NegotiationRun.objects.get(pk=running.pk).status == "running"
    assert NegotiationRun.objects.get(pk=completed.pk).status == "completed"


def test_cancelling_twice_changes_nothing_more(session: Session) -> None:
    # given a cancelled batch
    batch = batch_cancel(batch=create(session, runs=2))
    ended = sorted(batch.runs.values_list("ended_at", flat=True))
    # when it is cancelled again
    again = batch_cancel(batch=batch)
    # then it is still cancelled and its runs keep their end times
    assert again.status == Batch.Status.CANCELLED
    assert sorted(again.runs.values_list("ended_at", flat=True)) == ended


def test_a_completed_batch_is_not_cancelled(session: Session) -> None:
    # given a batch whose runs all completed
    batch = create(session, runs=2)
    batch.runs.update(status="completed")
    Batch.objects.filter(pk=batch.pk).update(status="completed")
    # when it is cancelled
    result = batch_cancel(batch=batch)
    # then it stays completed, and so do its runs
    assert result.status == Batch.Status.COMPLETED
    assert set(result.runs.values_list("status", flat=True)) == {"completed"}


def test_the_snapshot_is_not_changed_by_later_edits_to_the_session(session: Session) -> None:
    # given a batch made from the sample session
    batch = create(session, runs=1)
    # when a seller's floor is raised afterwards
    line = session.sellers.get(handle="@QuickTech").inventory.get()
    line.least_price = Decimal("6.90")
    line.save()
    # then the run keeps the floor it was made with
    run = batch.runs.get()
    assert {s["handle"]: s["least_price"] for s in run.scenario["sellers"]}["@QuickTech"] == "6.35"


@pytest.mark.django_db
def test_an_unknown_model_for_a_profile_is_refused_with_its_path_and_nothing_is_written() -> None:
    # given the sample session and the local profile, which serves exactly one model
    from negotiation.models import Batch, NegotiationRun
    from negotiation.services.scenarios import sample_session_load

    session = sample_session_load()
    # when a batch asks the local profile for a model it does not serve
    with pytest.raises(ValidationError) as err:
        batch_create(session=session, item_name="USB-C Cable", runs=2,
                     agents={"buyer": {"strategy": "linear"}, "analyst": {"strategy": "linear"},
                             "seller": {"profile": "local", "model": "gpt-9-ultra"}})
    # then the error names the role's model, the known model and the setting; nothing is written
    messages = err.value.message_dict["agents.seller.model"]
    assert "gpt-9-ultra" in messages[0] and "gemma-3-270m" in messages[0] and "MAMS_LOCAL_LLM_MODEL" in messages[0]
    assert not Batch.objects.exists() and not NegotiationRun.objects.exists()


# --- Finishing (lifecycle.batch_refresh, called after each run ends) --------------------------------


def test_a_batch_finishes_only_when_no_run_is_left_queued_or_running(session: Session) -> None:
    from negotiation.services.lifecycle import batch_refresh

    # given a running batch of 3 runs: one completed, one failed, one still running
    batch = create(session, runs=3)
    Batch.objects.filter(pk=batch.pk).update(status="running")
    done, failed, running = batch.runs.order_by("seed")
    NegotiationRun.objects.filter(pk=done.pk).update(status="completed")
    NegotiationRun.objects.filter(pk=failed.pk).update(status="failed")
    NegotiationRun.objects.filter(pk=running.pk).update(status="running")
    # when a run ends while another is running, the batch is left as it is
    batch_refresh(batch_id=batch.pk)
    batch.refresh_from_db()
    assert (batch.status, batch.finished_at) == ("running", None)
    # and when the last one ends, the batch is finished with its end time, as partly failed (one run
    # failed: it is not "completed")
    NegotiationRun.objects.filter(pk=running.pk).update(status="completed")
    before = timezone.now()
    batch_refresh(batch_id=batch.pk)
    batch.refresh_from_db()
    assert batch.status == "partly_failed" and batch.finished_at >= before
    # and a second refresh (a redelivered end) keeps that end time
    first_end = batch.finished_at
    batch_refresh(batch_id=batch.pk)
    batch.refresh_from_db()
    assert (batch.status, batch.finished_at) == ("partly_failed", first_end)


@pytest.mark.parametrize(("ends", "expected"), [
    (["completed", "completed", "completed"], "completed"),
    (["failed", "failed", "failed"], "failed"),
    (["completed", "failed", "failed"], "partly_failed"),
    (["completed", "completed", "failed"], "partly_failed"),
])
def test_a_finished_batch_says_what_its_runs_did(session: Session, ends: list[str], expected: str) -> None:
    from negotiation.services.lifecycle import batch_refresh

    # given a running batch whose runs have all ended as `ends`
    batch = create(session, runs=3)
    Batch.objects.filter(pk=batch.pk).update(status="running")
    for run, status in zip(batch.runs.order_by("seed"), ends, strict=True):
        NegotiationRun.objects.filter(pk=run.pk).update(status=status)
    # when the batch is refreshed
    batch_refresh(batch_id=batch.pk)
    # then it is completed only when every run completed, failed when every run failed
    batch.refresh_from_db()
    assert batch.status == expected and batch.finished_at is not None


@pytest.mark.parametrize("status", ["failed", "partly_failed"])
def test_a_batch_that_finished_with_failures_cannot_be_cancelled(session: Session, status: str) -> None:
    from negotiation.services.batches import batch_cancel_request
    from negotiation.services.errors import ConflictError

    # given a batch that finished with failed runs
    batch = create(session, runs=1)
    Batch.objects.filter(pk=batch.pk).update(status=status, finished_at=timezone.now())
    batch.refresh_from_db()
    # when a user asks to cancel it, then it is a conflict, and it keeps its status
    with pytest.raises(ConflictError):
        batch_cancel_request(batch=batch)
    batch.refresh_from_db()
    assert batch.status == status


@pytest.mark.parametrize(("statuses", "expected"), [
    (["completed", "completed"], "completed"),
    (["failed", "failed"], "failed"),
    (["completed", "failed"], "partly_failed"),
    (["partly_failed", "completed"], "partly_failed"),
    (["completed", "running"], "running"),
    (["queued", "queued"], "queued"),
    (["failed", "cancelled"], "cancelled"),
])
def test_a_group_of_batches_is_completed_only_when_every_batch_completed(statuses: list[str], expected: str) -> None:
    from negotiation.services.batches import batches_status

    # given the statuses of an experiment's or a benchmark run's batches, when they are combined,
    # then the group is no more successful than its batches
    assert batches_status(statuses) == expected


def test_a_cancelled_batch_gets_its_end_time_but_stays_cancelled(session: Session) -> None:
    from negotiation.services.lifecycle import batch_refresh

    # given a cancelled batch whose one running run was left to stop at its next round
    batch = create(session, runs=2)
    first, second = batch.runs.order_by("seed")
    NegotiationRun.objects.filter(pk=first.pk).update(status="running")
    batch = batch_cancel(batch=batch)
    batch_refresh(batch_id=batch.pk)
    batch.refresh_from_db()
    assert (batch.status, batch.finished_at) == ("cancelled", None)
    # when that run ends
    NegotiationRun.objects.filter(pk=first.pk).update(status="cancelled")
    batch_refresh(batch_id=batch.pk)
    # then the batch has its end time and is still cancelled
    batch.refresh_from_db()
    assert batch.status == "cancelled" and batch.finished_at is not None

"""Reflect sequences (negotiation/services/reflect.py): the coach's note reaches exactly the agent it was
written for, in the prompt the fake LLM server actually received, and every prompt version is stored.

Most tests play each run in-process (`play_through`) and call the reflection service directly, so
each step can be inspected; the last test runs a whole sequence through a real Celery worker.
"""

from __future__ import annotations

import json
from collections.abc import Callable
from typing import Any

import pytest
from django.core.exceptions import ValidationError

from negotiation.agents.coach import (
    COMPLETION_LINES,
    COMPLETION_REPAIR_LINES,
    NOTE_PRIMER,
    coach_completion,
    coach_fewshot,
    parse_completion_note,
    parse_note,
)
from negotiation.agents.fingerprint import agent_fingerprint
from negotiation.agents.prompts import NOTES_KEPT, PROMPT_VERSION, prompt_version
from negotiation.engine.utility import run_utilities
from negotiation.models import Message, NegotiationRun, PromptVersion, ReflectSequence, SequenceStep, Session
from negotiation.services.prompt_versions import agents_with_notes
from negotiation.services.reflect import buyer_case, seller_case, sequence_create, sequence_step_reflect
from negotiation.services.scenarios import scenario_document
from negotiation.services.sessions import session_import
from tests.conftest import wait_for
from tests.factories import UserFactory
from tests.fakes.policies import COACH_FEWSHOT_HEADER, negotiation

LLM = {"buyer": {"profile": "openai-compatible"}, "seller": {"profile": "openai-compatible"},
       "analyst": {"profile": "openai-compatible"}}
CASE_SELLERS = ("@CableHouse", "@TechMart")  # the two sellers of the sample's iPhone Case
BASE_COACH = "fake-completion"  # the fake, as a base model: the coach gets completion prompts


@pytest.fixture(autouse=True)
def _fast_fake(monkeypatch: pytest.MonkeyPatch) -> None:
    """In-process calls use the worker's limits for the fake (the default 60/minute is a real provider's)."""
    from django.conf import settings

    monkeypatch.setitem(settings.LLM_PROFILES["openai-compatible"], "rate", "6000/minute")
    monkeypatch.setitem(settings.LLM_PROFILES, BASE_COACH, {**settings.LLM_PROFILES["openai-compatible"],
                                                            "prompt_format": "completion"})


@pytest.fixture
def prompts_seen(llm: Any) -> list[dict[str, Any]]:
    """Every request the fake LLM server answered: its chat messages or prompt, as the server received them."""
    seen: list[dict[str, Any]] = []

    def capture(req: Any) -> str:
        system = next((m.get("content", "") for m in (req.messages or []) if m.get("role") == "system"), "")
        seen.append({"system": system, "text": req.text, "req": req})
        return negotiation(req)

    llm.policy = capture
    return seen


def _sequence(sample: Session, owner: Any, *, mode: str, length: int = 3, item: str = "iPhone Case",
              agents: dict | None = None) -> ReflectSequence:
    return sequence_create(owner=owner, session=sample, item_name=item, mode=mode, length=length,
                           agents=agents or LLM, max_rounds=3, base_seed=40)


def _step(seq: ReflectSequence, index: int) -> SequenceStep:
    return SequenceStep.objects.select_related("run").get(sequence=seq, index=index)


def _play_and_reflect(seq: ReflectSequence, index: int, play_through: Callable[[Any], NegotiationRun]
                      ) -> SequenceStep:
    step = _step(seq, index)
    run = play_through(step.run_id)
    assert run.status == "completed"
    sequence_step_reflect(run_id=run.pk)
    step.refresh_from_db()
    return step


def test_buyer_reflect_puts_the_note_in_the_next_buyer_prompt_and_stores_its_version(
        sample: Session, owner: Any, prompts_seen: list[dict[str, Any]], play_through: Any) -> None:
    # given a buyer-reflect sequence of 3 runs
    seq = _sequence(sample, owner, mode="buyer")
    first = _step(seq, 0)
    assert first.run.agents["buyer"]["prompt_version"] == PROMPT_VERSION and first.buyer_prompt_id == PROMPT_VERSION
    # when run 1 is played and reflected on
    step = _play_and_reflect(seq, 0, play_through)
    run1 = step.run
    # then the buyer's utility is its own, and the coach wrote one note for the buyer only
    outcome = run1.outcome
    expected = run_utilities(scenario=run1.scenario, deal=outcome.decision == "deal",
                             chosen=outcome.chosen_handle or None, price=outcome.final_price)
    assert step.buyer_utility == pytest.approx(expected["buyer"])
    assert step.seller_utility == pytest.approx(expected["seller_side"])
    assert list(step.notes) == ["buyer"] and step.coach_calls == 1 and step.coach_fallbacks == 0
    note = step.notes["buyer"]
    assert note.startswith("Coach for buyer after utility")
    # and the coach read the buyer's view: no seller's floor or cost
    coach = [p for p in prompts_seen if "negotiation coach" in p["system"]]
    assert len(coach) == 1
    for floor_or_cost in ("12.00", "8.00", "14.50", "9.00"):
        assert f"${floor_or_cost}" not in coach[0]["text"]
    # and run 2 plays with the note: a new prompt version, stored, and a new buyer fingerprint
    second = _step(seq, 1)
    buyer = second.run.agents["buyer"]
    assert buyer["notes"] == [note]
    assert buyer["prompt_version"] == prompt_version(role="buyer", notes=[note]) != PROMPT_VERSION
    stored = PromptVersion.objects.get(pk=buyer["prompt_version"])
    assert (stored.role, stored.notes, stored.base_version) == ("buyer", [note], PROMPT_VERSION)
    assert "BUYER_SYSTEM" in stored.templates and second.buyer_prompt_id == stored.pk
    assert second.run.buyer_fingerprint == agent_fingerprint(buyer) != run1.buyer_fingerprint
    assert second.run.seller_fingerprint == run1.seller_fingerprint  # the sellers do not reflect
    assert second.run.agents["seller"]["prompt_version"] == PROMPT_VERSION
    # when run 2 is played
    before = len(prompts_seen)
    play_through(second.run_id)
    # then every buyer prompt the server received in run 2 carried the note, and no seller prompt did
    run2 = [p for p in prompts_seen[before:] if "negotiation coach" not in p["system"]]
    buyer_prompts = [p for p in run2 if "strategic buyer" in p["system"]]
    seller_prompts = [p for p in run2 if "absolute bottom line" in p["system"]]
    assert buyer_prompts and seller_prompts
    assert all(note in p["system"] for p in buyer_prompts)
    assert not any(note in p["text"] for p in seller_prompts)
    assert len(buyer_prompts) == Message.objects.filter(run_id=second.run_id, sender="buyer").count()
    # and no prompt before the coach's (run 1's) had it
    assert not any(note in p["text"] for p in prompts_seen[:prompts_seen.index(coach[0])])


def test_seller_reflect_gives_each_seller_only_its_own_note_from_only_its_own_thread(
        sample: Session, owner: Any, prompts_seen: list[dict[str, Any]], play_through: Any) -> None:
    # given a seller-reflect sequence on the iPhone Case (two sellers)
    seq = _sequence(sample, owner, mode="seller", length=2)
    # when run 1 is played and reflected on
    step = _play_and_reflect(seq, 0, play_through)
    # then each seller got its own note, and the buyer none
    assert set(step.notes) == set(CASE_SELLERS) and step.coach_calls == 2
    coach = {h: next(p["text"] for p in prompts_seen if f"You coach the SELLER {h}." in p["text"])
             for h in CASE_SELLERS}
    scenario = {s["handle"]: s for s in step.run.scenario["sellers"]}
    for me, rival in (CASE_SELLERS, CASE_SELLERS[::-1]):
        # a seller's coach saw its own numbers, not its rival's, nor the buyer's budget
        assert f"${scenario[me]['least_price']}" in coach[me]
        assert rival not in coach[me]
        assert f"${scenario[rival]['least_price']}" not in coach[me] and "18.00 per unit" not in coach[me]
    second = _step(seq, 1)
    spec = second.run.agents["seller"]
    assert spec["notes"] == {h: [step.notes[h]] for h in CASE_SELLERS}
    assert PromptVersion.objects.get(pk=spec["prompt_version"]).notes == spec["notes"]
    assert second.run.agents["buyer"]["prompt_version"] == PROMPT_VERSION
    # when run 2 is played, each seller's prompts carry its own note and never its rival's
    before = len(prompts_seen)
    play_through(second.run_id)
    for me, rival in (CASE_SELLERS, CASE_SELLERS[::-1]):
        mine = [p for p in prompts_seen[before:] if f"You are {me}," in p["system"]]
        assert mine and all(step.notes[me] in p["system"] and step.notes[rival] not in p["text"] for p in mine)
    buyer = [p for p in prompts_seen[before:] if "strategic buyer" in p["system"]]
    assert buyer and not any(n in p["text"] for p in buyer for n in step.notes.values())


def test_an_unusable_coach_answer_is_a_counted_fallback_and_the_agent_plays_on_without_a_note(
        sample: Session, owner: Any, llm: Any, play_through: Any) -> None:
    # given a coach that never answers with a note
    def garbage_coach(req: Any) -> str:
        if "negotiation coach" in req.text:
            return "Great negotiation! Keep it up."
        return negotiation(req)

    llm.policy = garbage_coach
    seq = _sequence(sample, owner, mode="buyer", length=2)
    # when run 1 is reflected on
    step = _play_and_reflect(seq, 0, play_through)
    # then one repair was tried, the fallback is counted with its reason, and run 2 has no notes
    assert step.notes == {} and step.coach_fallbacks == 1 and step.coach_calls == 2
    assert "not a usable note" in step.coach_errors["buyer"]
    second = _step(seq, 1)
    assert second.run.agents["buyer"]["prompt_version"] == PROMPT_VERSION
    assert "notes" not in second.run.agents["buyer"]


def test_a_base_model_coach_writes_the_buyer_note_from_a_completion_prompt(
        sample: Session, owner: Any, prompts_seen: list[dict[str, Any]], play_through: Any) -> None:
    # given a buyer-reflect sequence whose coach is a base model (completion prompts, like the local Gemma)
    seq = _sequence(sample, owner, mode="buyer", agents={**LLM, "analyst": {"profile": BASE_COACH}})
    assert seq.agents["analyst"]["prompt_format"] == "completion"
    # when run 1 is played and reflected on
    step = _play_and_reflect(seq, 0, play_through)
    # then the coach got one completion prompt: the examples, then the buyer's case, ending at the primer
    coach = [p for p in prompts_seen if COACH_FEWSHOT_HEADER in p["text"]]
    assert len(coach) == 1
    req = coach[0]["req"]
    assert req.messages is None and req.path == "/v1/completions"
    assert req.prompt == coach_completion(buyer_case(run=step.run, utility=step.buyer_utility))
    assert req.prompt.startswith(coach_fewshot("buyer")) and req.prompt.endswith(f"\n{NOTE_PRIMER}")
    assert req.body["temperature"] == 0 and req.body["stop"] == ["\n"]
    # and the note was rebuilt from the primer and the continuation
    note = step.notes["buyer"]
    assert note == f"Coach for buyer after utility {step.buyer_utility:.3f}: open lower and concede in smaller steps."
    assert step.coach_calls == 1 and step.coach_fallbacks == 0 and step.coach_errors == {}
    # and run 2's buyer plays with it: a new, stored prompt version
    second = _step(seq, 1)
    buyer = second.run.agents["buyer"]
    assert buyer["notes"] == [note] and buyer["prompt_version"] == prompt_version(role="buyer", notes=[note])
    assert PromptVersion.objects.get(pk=buyer["prompt_version"]).notes == [note]
    assert second.buyer_prompt_id == buyer["prompt_version"]
    # when run 2 is played, every buyer prompt the server received carried the note, and no seller prompt
    before = len(prompts_seen)
    play_through(second.run_id)
    buyer_prompts = [p for p in prompts_seen[before:] if "strategic buyer" in p["system"]]
    seller_prompts = [p for p in prompts_seen[before:] if "absolute bottom line" in p["system"]]
    assert buyer_prompts and seller_prompts
    assert all(note in p["system"] for p in buyer_prompts)
    assert not any(note in p["text"] for p in seller_prompts)


def test_the_completion_coach_prompts_keep_each_agent_to_its_own_view(
        sample: Session, owner: Any, llm: Any, play_through: Any) -> None:
    # given a played run of the iPhone Case (two sellers, three rounds)
    seq = _sequence(sample, owner, mode="seller", agents={**LLM, "analyst": {"profile": BASE_COACH}})
    run = play_through(_step(seq, 0).run_id)
    scenario = {s["handle"]: s for s in run.scenario["sellers"]}
    said = {h: [m.text for m in Message.objects.filter(run=run, sender=h)] for h in CASE_SELLERS}
    assert all(said.values())

    def case_of(prompt: str, role: str) -> str:  # the part after the fixed examples: what this run put in
        assert prompt.startswith(coach_fewshot(role))
        return prompt[len(coach_fewshot(role)):]

    # when each seller's completion coach prompt is built
    for me, rival in (CASE_SELLERS, CASE_SELLERS[::-1]):
        mine = case_of(coach_completion(seller_case(run=run, handle=me, utility=0.25)), "seller")
        # then it holds its own numbers and words, and nothing of its rival's, nor the buyer's budget
        assert f"${scenario[me]['least_price']}" in mine and f"${scenario[me]['cost_price']}" in mine
        assert said[me][-1] in mine
        assert rival not in mine and not any(text in mine for text in said[rival])
        for key in ("least_price", "cost_price", "selling_price"):
            assert f"${scenario[rival][key]}" not in mine
        assert "$10.00" not in mine and "$18.00 per unit" not in mine
    # and the buyer's holds no seller's cost or floor, and at most the last lines of the transcript
    buyer = case_of(coach_completion(buyer_case(run=run, utility=0.5)), "buyer")
    for handle in CASE_SELLERS:
        assert f"${scenario[handle]['least_price']}" not in buyer and f"${scenario[handle]['cost_price']}" not in buyer
    lines = [line for line in buyer.splitlines() if line.startswith("R")]
    assert Message.objects.filter(run=run).count() > COMPLETION_LINES == len(lines)


def test_the_completion_note_is_rebuilt_from_the_primer() -> None:
    for reply in ('Open at $11 and hold."}', "Open at $11 and hold.", 'Open at $11   and hold."'):
        assert parse_completion_note(reply) == "Open at $11 and hold."
    assert parse_completion_note('Hold at $16."} Buyer: more') == "Hold at $16."
    for bad in ('"}', 'ok"}', 'Buyer: {"action": "offer", "price": 7.50}', "x" * 400):
        with pytest.raises(ValueError):
            parse_completion_note(bad)


def test_a_garbage_completion_coach_answer_is_a_counted_fallback(
        sample: Session, owner: Any, llm: Any, play_through: Any) -> None:
    # given a base-model coach that echoes a negotiation line instead of a note
    coach: list[Any] = []

    def echoing_coach(req: Any) -> str:
        if COACH_FEWSHOT_HEADER in (req.prompt or ""):
            coach.append(req)
            return 'Buyer: {"action": "offer", "price": 7.50}'
        return negotiation(req)

    llm.policy = echoing_coach
    seq = _sequence(sample, owner, mode="buyer", length=2, agents={**LLM, "analyst": {"profile": BASE_COACH}})
    # when run 1 is reflected on
    step = _play_and_reflect(seq, 0, play_through)
    # then a second deterministic try read a shorter case, and the fallback is counted with its reason
    assert len(coach) == 2 and all(r.body["temperature"] == 0 for r in coach)
    assert coach[1].prompt == coach_completion(buyer_case(run=step.run, utility=step.buyer_utility),
                                               last=COMPLETION_REPAIR_LINES) != coach[0].prompt
    assert step.notes == {} and step.coach_fallbacks == 1 and step.coach_calls == 2
    assert "not a usable note" in step.coach_errors["buyer"]
    # and the buyer plays run 2 without a note
    second = _step(seq, 1)
    assert second.run.agents["buyer"]["prompt_version"] == PROMPT_VERSION
    assert "notes" not in second.run.agents["buyer"]


def test_the_last_run_completes_the_sequence_without_asking_the_coach(
        sample: Session, owner: Any, prompts_seen: list[dict[str, Any]], play_through: Any) -> None:
    seq = _sequence(sample, owner, mode="both", length=1)
    step = _play_and_reflect(seq, 0, play_through)
    seq.refresh_from_db()
    assert seq.status == "completed" and seq.finished_at is not None
    assert step.coach_calls == 0 and step.buyer_utility is not None
    assert not any("negotiation coach" in p["system"] for p in prompts_seen)
    assert SequenceStep.objects.filter(sequence=seq).count() == 1


def test_a_redelivered_reflection_writes_nothing_twice(sample: Session, owner: Any, llm: Any,
                                                       play_through: Any) -> None:
    seq = _sequence(sample, owner, mode="buyer", length=3)
    _play_and_reflect(seq, 0, play_through)
    calls = len(llm.requests)
    sequence_step_reflect(run_id=_step(seq, 0).run_id)  # the same delivery again
    assert SequenceStep.objects.filter(sequence=seq).count() == 2
    assert len(llm.requests) == calls  # a recorded step is not coached again


def test_a_failed_run_ends_the_sequence_with_its_reason(sample: Session, owner: Any, llm: Any) -> None:
    from negotiation.services.lifecycle import run_fail

    seq = _sequence(sample, owner, mode="buyer", length=3)
    run_id = _step(seq, 0).run_id
    run_fail(run_id=run_id, reason="the provider refused the key")
    sequence_step_reflect(run_id=run_id)
    seq.refresh_from_db()
    assert seq.status == "failed" and "run 1 of 3 failed: the provider refused the key" in seq.error
    assert SequenceStep.objects.filter(sequence=seq).count() == 1


def test_the_sweeper_requeues_a_reflection_that_was_never_queued(sample: Session, owner: Any, llm: Any,
                                                                 play_through: Any, monkeypatch: Any) -> None:
    from datetime import timedelta

    from django.utils import timezone

    from negotiation.services import reflect

    queued: list[str] = []
    rounds: list[str] = []
    monkeypatch.setattr(reflect, "enqueue_reflect", lambda run_id: queued.append(str(run_id)))
    monkeypatch.setattr(reflect, "enqueue_round", lambda run_id, round_no: rounds.append(f"{run_id}:{round_no}"))
    seq = _sequence(sample, owner, mode="none", length=2, agents={**LLM, "analyst": {"strategy": "linear"}})
    # given a sequence whose first run never started (its round task was lost), the sweeper starts it
    first = _step(seq, 0).run_id
    NegotiationRun.objects.filter(pk=first).update(created_at=timezone.now() - timedelta(minutes=11))
    assert reflect.sequences_sweep(stale_after=timedelta(minutes=10)) == 1 and rounds == [f"{first}:1"]
    # given the run ended but its reflection was never queued
    run = play_through(first)
    # then a sweep leaves it while it is recent, and re-queues it once it is stale
    assert reflect.sequences_sweep(stale_after=timedelta(minutes=10)) == 0
    NegotiationRun.objects.filter(pk=run.pk).update(ended_at=timezone.now() - timedelta(minutes=11))
    assert reflect.sequences_sweep(stale_after=timedelta(minutes=10)) == 1 and queued == [str(run.pk)]
    # and once reflected on, it is not swept again
    sequence_step_reflect(run_id=run.pk)
    assert reflect.sequences_sweep(stale_after=timedelta(minutes=10)) == 0


def test_notes_accumulate_per_agent_and_only_the_most_recent_are_kept() -> None:
    agents = {"buyer": {"strategy": "llm", "prompt_variant": "default", "prompt_version": PROMPT_VERSION},
              "seller": {"strategy": "llm", "prompt_variant": "terse", "prompt_version": prompt_version(
                  variant="terse")}}
    for i in range(NOTES_KEPT + 2):
        agents = agents_with_notes(agents, buyer=f"buyer note {i}", sellers={"@A": f"a{i}"} if i % 2 else {})
    assert agents["buyer"]["notes"] == [f"buyer note {i}" for i in range(2, NOTES_KEPT + 2)]
    assert agents["seller"]["notes"] == {"@A": ["a1", "a3", "a5"]}
    assert agents["seller"]["prompt_version"] == prompt_version(variant="terse", role="seller",
                                                                notes={"@A": ["a1", "a3", "a5"]})


def test_a_repeated_note_moves_to_the_end_instead_of_appearing_twice() -> None:
    agents = {"buyer": {"strategy": "llm", "prompt_variant": "default", "prompt_version": PROMPT_VERSION},
              "seller": {"strategy": "llm", "prompt_variant": "default", "prompt_version": PROMPT_VERSION}}
    for note in ("open low", "name the rival", "open low"):
        agents = agents_with_notes(agents, buyer=note, sellers={"@A": note})
    assert agents["buyer"]["notes"] == ["name the rival", "open low"]
    assert agents["seller"]["notes"] == {"@A": ["name the rival", "open low"]}


def test_the_coach_answer_is_validated() -> None:
    assert parse_note('Sure: {"note": "  Open at $11   and hold. "}') == "Open at $11 and hold."
    for bad in ("no json here", '{"advice": "x"}', '{"note": "short"}', json.dumps({"note": "x" * 400})):
        with pytest.raises(ValueError):
            parse_note(bad)


@pytest.mark.parametrize(("mode", "agents", "path"), [
    ("buyer", {**LLM, "buyer": {"strategy": "boulware"}}, "agents.buyer.strategy"),
    ("seller", {**LLM, "seller": {"strategy": "linear"}}, "agents.seller.strategy"),
    ("both", {**LLM, "analyst": {"strategy": "linear"}}, "agents.analyst"),
    ("sideways", LLM, "mode"),
])
def test_a_sequence_that_cannot_reflect_is_refused_before_anything_is_written(
        sample: Session, owner: Any, mode: str, agents: dict, path: str) -> None:
    with pytest.raises(ValidationError) as exc:
        _sequence(sample, owner, mode=mode, agents=agents)
    assert path in exc.value.message_dict
    assert not ReflectSequence.objects.exists() and not NegotiationRun.objects.exists()


def test_a_sequence_checks_its_numbers_and_item(sample: Session, owner: Any) -> None:
    with pytest.raises(ValidationError) as exc:
        sequence_create(owner=owner, session=sample, item_name="Laptop", mode="none", length=0, agents=LLM,
                        base_seed=-1, seed_policy="random")
    assert {"item_name", "length", "base_seed", "seed_policy"} <= set(exc.value.message_dict)
    # no reflection needs no coach: a baseline analyst is fine in mode none
    seq = _sequence(sample, owner, mode="none", agents={**LLM, "analyst": {"strategy": "linear"}})
    assert seq.steps.count() == 1


@pytest.mark.django_db(transaction=True)
@pytest.mark.worker
def test_a_both_reflect_sequence_runs_through_the_worker(celery_worker: Any, prompts_seen: list[dict[str, Any]]
                                                         ) -> None:
    # given a both-reflect sequence of 3 runs on the sample's iPhone Case
    owner = UserFactory(username="wren")
    sample = session_import(document=scenario_document("spec_sample"), owner=owner)
    seq = _sequence(sample, owner, mode="both", length=3)
    # when the worker plays it (runs, coach calls on the analysis queue, next runs)
    wait_for(lambda: ReflectSequence.objects.get(pk=seq.pk).status != "running", timeout=180,
             what=f"sequence {seq.pk}")
    seq.refresh_from_db()
    assert seq.status == "completed", (seq.error, celery_worker.log_tail())
    steps = list(SequenceStep.objects.filter(sequence=seq).select_related("run").order_by("index"))
    assert [s.index for s in steps] == [0, 1, 2] and all(s.reflected_at for s in steps)
    assert [s.run.seed for s in steps] == [40, 41, 42]
    # then notes accumulated run by run (the fake coach repeats itself when the utility repeats, and a
    # repeated note is not added twice), each run's versions are stored, and a version changes exactly
    # when that role's notes changed
    versions = [(s.run.agents["buyer"]["prompt_version"], s.run.agents["seller"]["prompt_version"]) for s in steps]
    assert versions[0][0] == versions[0][1] == PROMPT_VERSION  # no notes yet: one version for every role
    assert PromptVersion.objects.filter(pk__in=[v for pair in versions for v in pair]).count() == len(
        {v for pair in versions for v in pair})
    expected: list[str] = []
    for step in steps:
        assert (step.run.agents["buyer"].get("notes") or []) == expected
        if (note := (step.notes or {}).get("buyer")):
            expected = [n for n in expected if n != note] + [note]
    assert len(expected) >= 1
    buyer_notes = [tuple(s.run.agents["buyer"].get("notes") or []) for s in steps]
    seller_notes = [json.dumps(s.run.agents["seller"].get("notes") or {}, sort_keys=True) for s in steps]
    assert len({b for b, _ in versions}) == len(set(buyer_notes)) >= 2
    assert len({s for _, s in versions}) == len(set(seller_notes)) >= 2
    # and the last run's buyer prompts, as the server received them, carried both notes
    last_buyer = [p for p in prompts_seen if "strategic buyer" in p["system"]
                  and steps[1].notes["buyer"] in p["system"]]
    assert last_buyer and all(steps[0].notes["buyer"] in p["system"] for p in last_buyer)
    assert all(s.buyer_utility is not None and s.seller_utility is not None for s in steps)
    assert steps[2].coach_calls == 0  # nothing follows the last run

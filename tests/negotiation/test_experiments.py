"""Paired experiments (negotiation/services/experiments.py, analytics/research.py, manage.py run_experiment):
conditions share scenarios and seeds, so their runs pair by (item, seed), and the paired differences are
the compare page's. The first test runs a whole experiment through a real Celery worker; the others
play runs in-process.
"""

from __future__ import annotations

import io
from collections.abc import Callable
from typing import Any

import numpy as np
import pytest
from django.core.exceptions import ValidationError
from django.core.management import CommandError, call_command

from analytics import metrics
from analytics.models import RunMetrics
from analytics.research import experiment_results, experiment_results_json
from negotiation.agents.prompts import PROMPT_VERSION, VARIANTS, prompt_version
from negotiation.models import Batch, Experiment, ExperimentCondition, NegotiationRun, PromptVersion, Session
from negotiation.services.errors import ConflictError, LimitExceeded
from negotiation.services.experiments import condition_parse, experiment_create, experiment_launch, experiment_status
from negotiation.services.scenarios import scenario_document
from negotiation.services.sessions import session_import
from tests.factories import UserFactory
from tests.fakes.policies import negotiation

LLM_SELLERS = {"seller": {"profile": "openai-compatible"}, "analyst": {"strategy": "linear"}}
BASELINE = {"buyer": {"strategy": "boulware"}, "seller": {"strategy": "linear"}, "analyst": {"strategy": "linear"}}


def _conditions(*pairs: tuple[str, dict]) -> list[dict[str, Any]]:
    return [{"label": label, **fields} for label, fields in pairs]


def _by_seed(batch: Batch) -> dict[tuple[str, int], RunMetrics]:
    return {(m.item_name, m.seed): m for m in RunMetrics.objects.filter(batch=batch)}


@pytest.mark.django_db(transaction=True)
@pytest.mark.worker
def test_an_experiment_pairs_its_runs_by_seed_through_the_worker(celery_worker: Any, llm: Any) -> None:
    # given the sample session, the fake LLM playing the sellers, and three buyer conditions: two
    # baseline strategies and an LLM buyer with the 'anchoring' prompt variant
    seen: list[str] = []

    def capture(req: Any) -> str:
        seen.append(req.text)
        return negotiation(req)

    llm.policy = capture
    owner = UserFactory(username="ivo")
    sample = session_import(document=scenario_document("spec_sample"), owner=owner)
    out = io.StringIO()
    # when run_experiment creates it and waits for the worker
    call_command("run_experiment", "--session", sample.name, "--item", "usb-c cable", "--runs", "4",
                 "--max-rounds", "3", "--base-seed", "70", "--wait", "--timeout", "240",
                 "--condition", 'boulware={"buyer": {"strategy": "boulware"}, "seller": {"profile": '
                                '"openai-compatible"}, "analyst": {"strategy": "linear"}}',
                 "--condition", 'conceder={"buyer": {"strategy": "conceder"}, "seller": {"profile": '
                                '"openai-compatible"}, "analyst": {"strategy": "linear"}}',
                 "--condition", 'anchoring={"agents": {"buyer": {"profile": "openai-compatible", "prompt_variant": '
                                '"anchoring"}, "seller": {"profile": "openai-compatible"}, "analyst": {"strategy": '
                                '"linear"}}}',
                 stdout=out)
    experiment = Experiment.objects.get()
    conditions = list(experiment.conditions.select_related("batch").order_by("position"))
    batches = [c.batch for c in conditions]
    # then every condition ran the same item on seeds 70..73, each seed once
    for batch in batches:
        assert batch.status == "completed" and batch.base_seed == 70 and batch.item_name == "USB-C Cable"
        assert sorted(NegotiationRun.objects.filter(batch=batch).values_list("seed", flat=True)) == [70, 71, 72, 73]
    # and runs with the same seed met the same sellers
    scenarios = [{r.seed: r.scenario for r in NegotiationRun.objects.filter(batch=b)} for b in batches]
    assert scenarios[0] == scenarios[1] == scenarios[2]
    # and the results pair all 4 runs by seed, with the paired difference computed pair by pair
    results = experiment_results_json(experiment_results(experiment=experiment))
    control = _by_seed(batches[0])
    for cmp, batch in zip(results["comparisons"], batches[1:], strict=True):
        assert (cmp["against"], cmp["pairs"], cmp["paired_by"]) == ("boulware", 4, "seed")
        other = _by_seed(batch)
        assert set(other) == set(control)
        diffs = [other[k].rounds - control[k].rounds for k in sorted(control)]
        assert cmp["differences"]["rounds"]["mean"] == pytest.approx(np.mean(diffs))
        assert cmp["differences"]["rounds"]["n"] == 4
        assert "buyer configuration" in cmp["differs"]
    # and the conceder and boulware buyers did not play alike (the comparison is not vacuous)
    assert any(r.rounds != control[k].rounds for k, r in _by_seed(batches[1]).items())
    # and the anchoring buyer's prompts, as the server received them, carried its variant's lines
    anchoring = batches[2].agents["buyer"]
    assert anchoring["prompt_version"] == prompt_version(variant="anchoring") != PROMPT_VERSION
    assert PromptVersion.objects.filter(pk=anchoring["prompt_version"], variant="anchoring").exists()
    buyer_prompts = [t for t in seen if "strategic buyer" in t]
    assert buyer_prompts and all(VARIANTS["anchoring"].buyer in t for t in buyer_prompts)
    # and the command printed the table
    text = out.getvalue()
    assert "4 pairs by seed" in text and "anchoring − boulware" in text and "conceder" in text


def test_results_are_the_compare_pages_paired_differences(sample: Session, owner: Any,
                                                          play_through: Callable[[Any], NegotiationRun]) -> None:
    # given a two-condition experiment of baseline agents, played to the end
    experiment = experiment_create(owner=owner, session=sample, name="bw vs lin", item_name="USB-C Cable", runs=5,
                                   base_seed=3, max_rounds=4, conditions=_conditions(
                                       ("boulware", {"agents": BASELINE}),
                                       ("linear", {"agents": {**BASELINE, "buyer": {"strategy": "linear"}}})))
    for run in NegotiationRun.objects.filter(batch__experiment_condition__experiment=experiment):
        play_through(run.pk)
    a, b = [c.batch for c in experiment.conditions.order_by("position")]
    # when the results are read
    r = experiment_results(experiment=experiment)
    # then each condition's metrics are its batch's, and the difference is b − a over seeds 3..7
    assert [c["metrics"]["deal_rate"].n for c in r["conditions"]] == [5, 5]
    cmp = r["comparisons"][0]
    assert cmp["pairs"] == 5 and cmp["paired_by"] == "seed"
    ma, mb = _by_seed(a), _by_seed(b)
    price_pairs = [float(mb[k].price - ma[k].price) for k in ma if ma[k].deal and mb[k].deal]
    row = next(x for x in cmp["rows"] if x["head"].key == "price")
    assert row["estimate"].n == len(price_pairs) and row["estimate"].mean == pytest.approx(np.mean(price_pairs))
    assert row["sentence"].startswith(("linear", "boulware", "price: no"))


def test_a_seller_population_condition_plays_only_its_sellers_in_their_styles(sample: Session, owner: Any) -> None:
    experiment = experiment_create(
        owner=owner, session=sample, name="population", item_name="USB-C Cable", runs=2, conditions=_conditions(
            ("all", {"agents": BASELINE}),
            ("two-rude", {"agents": BASELINE, "sellers": ["@quicktech", "@BudgetWires"],
                          "styles": {"@QuickTech": "rude"}})))
    all_, two = [c.batch for c in experiment.conditions.order_by("position")]
    full = NegotiationRun.objects.filter(batch=all_).first().scenario["sellers"]
    assert len(full) == 4
    for run in NegotiationRun.objects.filter(batch=two):
        sellers = {s["handle"]: s for s in run.scenario["sellers"]}
        assert set(sellers) == {"@QuickTech", "@BudgetWires"}
        assert sellers["@QuickTech"]["style"] == "rude" and sellers["@BudgetWires"]["style"] == "rude"
    cond = experiment.conditions.get(label="two-rude")
    assert cond.sellers == ["@QuickTech", "@BudgetWires"] and cond.styles == {"@QuickTech": "rude"}


def test_temperature_and_model_conditions_reach_the_batches(sample: Session, owner: Any, llm: Any) -> None:
    llm = {"buyer": {"profile": "openai-compatible"}, **LLM_SELLERS}
    other_model = {**llm, "buyer": {"profile": "openai-compatible", "model": "other-model"}}
    experiment = experiment_create(owner=owner, session=sample, name="temps", item_name="USB-C Cable", runs=1,
                                   conditions=_conditions(("t07", {"agents": llm}),
                                                          ("t02", {"agents": llm, "temperature": 0.2}),
                                                          ("model", {"agents": other_model})))
    batches = {c.label: c.batch for c in experiment.conditions.all()}
    assert batches["t07"].agents["buyer"]["temperature"] == 0.7 and batches["t02"].agents["buyer"]["temperature"] == 0.2
    assert batches["model"].agents["buyer"]["model"] == "other-model"
    runs = {label: NegotiationRun.objects.get(batch=b) for label, b in batches.items()}
    assert len({r.buyer_fingerprint for r in runs.values()}) == 3  # each condition is a different buyer
    assert len({r.seller_fingerprint for r in runs.values()}) == 2  # t02 changes the sellers' temperature too


@pytest.mark.parametrize(("conditions", "path"), [
    (_conditions(("only", {})), "conditions"),
    (_conditions(("a", {}), ("A", {})), "conditions[1].label"),
    (_conditions(("a", {}), ("b c", {})), "conditions[1].label"),
    (_conditions(("a", {}), ("b", {"sellers": ["@Nobody"]})), "conditions[1].sellers"),
    (_conditions(("a", {}), ("b", {"styles": {"@QuickTech": "grumpy"}})), "conditions[1].styles"),
    (_conditions(("a", {}), ("b", {"temperature": 3})), "conditions[1].temperature"),
    (_conditions(("a", {}), ("b", {"colour": "red"})), "conditions[1].colour"),
    (_conditions(("a", {"agents": BASELINE}), ("b", {"agents": {"buyer": {"profile": "nope"}}})),
     "conditions[1].agents.buyer.profile"),
    (_conditions(("a", {"agents": BASELINE}), ("b", {"agents": {"buyer": {"prompt_variant": "shouty"}}})),
     "conditions[1].agents.buyer.prompt_variant"),
])
def test_a_bad_experiment_is_refused_with_the_path_and_writes_nothing(sample: Session, owner: Any,
                                                                      conditions: list, path: str) -> None:
    with pytest.raises(ValidationError) as exc:
        experiment_create(owner=owner, session=sample, name="bad", item_name="USB-C Cable", runs=2,
                          conditions=conditions)
    assert path in exc.value.message_dict, exc.value.message_dict
    assert not Experiment.objects.exists() and not Batch.objects.exists() and not NegotiationRun.objects.exists()


def test_common_fields_are_checked_before_the_conditions(sample: Session, owner: Any) -> None:
    with pytest.raises(ValidationError) as exc:
        experiment_create(owner=owner, session=sample, name=" ", item_name="Laptop", runs=0, max_rounds=99,
                          base_seed=-1, conditions=_conditions(("a", {}), ("b", {})))
    assert {"name", "item_name", "runs", "max_rounds", "base_seed"} <= set(exc.value.message_dict)


def test_the_active_batch_cap_refuses_the_whole_experiment(sample: Session, owner: Any, settings: Any) -> None:
    settings.MAMS_MAX_ACTIVE_BATCHES_PER_USER = 2
    with pytest.raises(LimitExceeded):
        experiment_create(owner=owner, session=sample, name="too many", item_name="USB-C Cable", runs=1,
                          conditions=_conditions(("a", {"agents": BASELINE}), ("b", {"agents": BASELINE}),
                                                 ("c", {"agents": BASELINE})))
    assert not Experiment.objects.exists() and not Batch.objects.exists()


def test_a_draft_launches_once_and_its_status_follows_its_batches(sample: Session, owner: Any,
                                                                  play_through: Any) -> None:
    draft = experiment_create(owner=owner, session=sample, name="draft", item_name="USB-C Cable", runs=1,
                              launch=False, conditions=_conditions(("a", {"agents": BASELINE}),
                                                                   ("b", {"agents": BASELINE})))
    assert experiment_status(draft) == "draft" and not Batch.objects.exists()
    experiment_launch(experiment=draft)
    assert experiment_status(draft) == "running" and Batch.objects.count() == 2
    with pytest.raises(ConflictError):
        experiment_launch(experiment=draft)
    for run in NegotiationRun.objects.all():
        play_through(run.pk)
    from negotiation.services.lifecycle import batch_refresh

    for batch in Batch.objects.all():
        batch_refresh(batch_id=batch.pk)
    assert experiment_status(draft) == "completed"


def test_a_launch_with_a_bad_condition_keeps_no_batch(sample: Session, owner: Any) -> None:
    draft = experiment_create(owner=owner, session=sample, name="draft", item_name="USB-C Cable", runs=1,
                              launch=False, conditions=_conditions(("a", {"agents": BASELINE}),
                                                                   ("b", {"agents": BASELINE})))
    ExperimentCondition.objects.filter(experiment=draft, label="b").update(agents={"buyer": {"strategy": "greedy"}})
    with pytest.raises(ValidationError) as exc:
        experiment_launch(experiment=draft)
    assert "conditions[1].agents.buyer.strategy" in exc.value.message_dict
    assert not Batch.objects.exists() and Experiment.objects.get().launched_at is None


def test_conditions_parse_from_the_command_line() -> None:
    assert condition_parse('ctl={"buyer": {"strategy": "linear"}}') == {"label": "ctl",
                                                                       "agents": {"buyer": {"strategy": "linear"}}}
    assert condition_parse('hot={"temperature": 1.2, "agents": {}}') == {"label": "hot", "temperature": 1.2,
                                                                        "agents": {}}
    assert condition_parse("plain=") == {"label": "plain"}
    for bad in ("nolabel", '=[]', "x={oops", "x=[1]"):
        with pytest.raises(ValueError):
            condition_parse(bad)


def test_the_command_reports_bad_input_without_creating_anything(sample: Session) -> None:
    with pytest.raises(CommandError, match="conditions\\[1\\].agents.buyer.profile"):
        call_command("run_experiment", "--session", str(sample.pk), "--item", "USB-C Cable",
                     "--condition", "a=" + '{"buyer": {"strategy": "linear"}}',
                     "--condition", "b=" + '{"buyer": {"profile": "nope"}}', stdout=io.StringIO())
    with pytest.raises(CommandError, match="No session"):
        call_command("run_experiment", "--session", "nope", "--condition", "a=", "--condition", "b=",
                     stdout=io.StringIO())
    assert not Experiment.objects.exists()


def test_the_command_without_wait_launches_and_says_where_the_results_are(sample: Session) -> None:
    out = io.StringIO()
    call_command("run_experiment", "--session", str(sample.pk), "--item", "USB-C Cable", "--runs", "2",
                 "--condition", 'a={"buyer": {"strategy": "linear"}, "seller": {"strategy": "linear"}}',
                 "--condition", 'b={"buyer": {"strategy": "conceder"}, "seller": {"strategy": "linear"}}',
                 stdout=out)
    experiment = Experiment.objects.get()
    assert experiment.owner == sample.owner and experiment.name == "a vs b"
    assert f"/api/experiments/{experiment.pk}/results" in out.getvalue()
    assert Batch.objects.count() == 2


def _admin(db: Any) -> Any:
    from django.test import Client

    admin = UserFactory(username="boss", is_staff=True, is_superuser=True)
    admin.save()
    client = Client()
    client.force_login(admin)
    return client


def test_the_admin_drafts_an_experiment_with_inline_conditions_and_launches_it(sample: Session, owner: Any) -> None:
    from tests.negotiation.test_admin import formset

    client = _admin(None)
    others = '"seller": {"strategy": "linear"}, "analyst": {"strategy": "linear"}'
    rows = [{"position": "0", "label": "control", "agents": f'{{"buyer": {{"strategy": "boulware"}}, {others}}}',
             "temperature": "0.7", "sellers": "", "styles": "{}"},
            {"position": "1", "label": "two", "agents": f'{{"buyer": {{"strategy": "conceder"}}, {others}}}',
             "temperature": "0.7", "sellers": "@QuickTech,@BudgetWires", "styles": '{"@QuickTech": "sweet"}'}]
    data = {"name": "admin exp", "owner": str(owner.pk), "session": str(sample.pk), "item_name": "USB-C Cable",
            "runs": "2", "max_rounds": "3", "base_seed": "9", **formset("conditions", rows)}
    # a single condition is refused on the form, and nothing is written
    one = {**data, **formset("conditions", rows[:1])}
    response = client.post("/admin/negotiation/experiment/add/", one)
    assert response.status_code == 200 and "Please submit at least 2 forms" in response.content.decode()
    assert not Experiment.objects.exists()
    # two conditions are saved as a draft, with no batch yet
    response = client.post("/admin/negotiation/experiment/add/", data)
    assert response.status_code == 302, response.content.decode()[:2000]
    experiment = Experiment.objects.get()
    assert experiment_status(experiment) == "draft" and experiment.conditions.count() == 2
    assert experiment.conditions.get(label="two").sellers == ["@QuickTech", "@BudgetWires"]
    # the launch action makes one batch per condition, same seeds, with the population in the snapshots
    response = client.post("/admin/negotiation/experiment/", {"action": "launch", "_selected_action": [experiment.pk]},
                           follow=True)
    notes = [str(m) for m in response.context["messages"]]
    assert notes[-1] == "admin exp: launched.", notes
    batches = {c.label: c.batch for c in experiment.conditions.select_related("batch")}
    assert {b.base_seed for b in batches.values()} == {9}
    sellers = NegotiationRun.objects.filter(batch=batches["two"]).first().scenario["sellers"]
    assert {s["handle"]: s["style"] for s in sellers} == {"@QuickTech": "sweet", "@BudgetWires": "rude"}
    # launching again says so, and makes nothing more
    response = client.post("/admin/negotiation/experiment/", {"action": "launch", "_selected_action": [experiment.pk]},
                           follow=True)
    assert "already launched" in response.content.decode() and Batch.objects.count() == 2


def test_more_than_two_conditions_get_holm_adjusted_p_values(sample: Session, owner: Any,
                                                             play_through: Callable[[Any], NegotiationRun]) -> None:
    # given a four-condition experiment of baseline buyers against Linear sellers, played to the end
    experiment = experiment_create(owner=owner, session=sample, name="four buyers", item_name="USB-C Cable", runs=12,
                                   base_seed=3, max_rounds=4, conditions=_conditions(
                                       ("boulware", {"agents": BASELINE}),
                                       *((name, {"agents": {**BASELINE, "buyer": {"strategy": name}}})
                                         for name in ("linear", "conceder", "canary-accept-first"))))
    for run in NegotiationRun.objects.filter(batch__experiment_condition__experiment=experiment):
        play_through(run.pk)
    # when the results are read
    r = experiment_results(experiment=experiment)
    # then each metric's three p-values (one per condition against the control) are Holm-adjusted together
    assert r["adjusted"] and r["adjustment"].startswith("Holm")
    for i, head in enumerate(r["heads"]):
        family = [cmp["rows"][i] for cmp in r["comparisons"]]
        assert [row["p_holm"] for row in family] == metrics.holm_adjust([row["p"] for row in family]), head.key
        assert all(row["survives"] == (row["p_holm"] is not None and row["p_holm"] <= metrics.ALPHA)
                   for row in family)
    # and the price the accept-first canary pays differs from Boulware's on every seed: that survives
    price = next(i for i, h in enumerate(r["heads"]) if h.key == "price")
    canary = next(cmp for cmp in r["comparisons"] if cmp["label"] == "canary-accept-first")
    assert canary["rows"][price]["survives"], canary["rows"][price]
    # and the API's JSON names the adjustment and carries both p-values
    out = experiment_results_json(r)
    assert out["p_adjustment"].startswith("Holm")
    diff = out["comparisons"][0]["differences"]["price"]
    assert diff["p_adjusted"] >= diff["p_value"]

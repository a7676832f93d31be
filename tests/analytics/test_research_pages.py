"""Experiment and reflect-sequence pages (analytics/research_views.py): login, scoping, the paired
comparison with its chart, and a sequence's cumulative average utility plotted per side."""

from __future__ import annotations

import re
from typing import Any

import pytest
from django.test import Client
from django.urls import reverse

from negotiation.engine.utility import cumulative_mean
from negotiation.models import NegotiationRun, SequenceStep
from negotiation.services.experiments import experiment_create
from negotiation.services.reflect import sequence_create, sequence_step_reflect
from tests.analytics.conftest import BASELINE
from tests.factories import UserFactory

pytestmark = pytest.mark.django_db


@pytest.fixture
def web(user: Any) -> Client:
    client = Client()
    client.force_login(user)
    return client


@pytest.fixture
def played_experiment(sample: Any, user: Any, play_through: Any) -> Any:
    conditions = [{"label": name, "agents": {**BASELINE, "buyer": {"strategy": name}}}
                  for name in ("boulware", "conceder")]
    experiment = experiment_create(owner=user, session=sample, name="boulware vs conceder", item_name="USB-C Cable",
                                   runs=3, max_rounds=4, conditions=conditions)
    for run in NegotiationRun.objects.all():
        play_through(run.pk)
    return experiment


@pytest.fixture
def played_sequence(sample: Any, user: Any, play_through: Any) -> Any:
    """A no-reflect sequence of 3 baseline runs (no coach, no LLM), every run played and recorded."""
    sequence = sequence_create(owner=user, session=sample, item_name="USB-C Cable", mode="none", length=3,
                               agents=BASELINE, max_rounds=4, base_seed=2)
    for index in range(3):
        run_id = SequenceStep.objects.get(sequence=sequence, index=index).run_id
        play_through(run_id)
        sequence_step_reflect(run_id=run_id)
    return sequence


def test_the_pages_need_a_login_and_hide_other_users_objects(played_experiment: Any, played_sequence: Any) -> None:
    anon = Client()
    for url in (reverse("analytics:experiments"), reverse("analytics:sequences")):
        assert anon.get(url).status_code == 302
    stranger, who = Client(), UserFactory(username="stranger")
    who.save()  # the factory sets the password after its save; a session's auth hash needs it stored
    stranger.force_login(who)
    assert stranger.get(reverse("analytics:experiment", args=[played_experiment.pk])).status_code == 404
    assert stranger.get(reverse("analytics:sequence", args=[played_sequence.pk])).status_code == 404
    assert "boulware vs conceder" not in stranger.get(reverse("analytics:experiments")).content.decode()


def test_the_experiment_page_shows_conditions_and_paired_differences(web: Client, played_experiment: Any) -> None:
    assert "boulware vs conceder" in web.get(reverse("analytics:experiments")).content.decode()
    html = web.get(reverse("analytics:experiment", args=[played_experiment.pk])).content.decode()
    assert "conceder − boulware" in html and "3 pairs of completed runs, paired by seed" in html
    assert "changes the buyer configuration" in html
    assert re.search(r"<svg class=\"chart\"[^>]*aria-label=\"Paired differences conceder − boulware", html)
    assert "Buyer surplus share" in html and "n=3" in html


def test_the_sequence_page_plots_each_sides_cumulative_average_utility(web: Client, played_sequence: Any) -> None:
    steps = list(SequenceStep.objects.filter(sequence=played_sequence).order_by("index"))
    played_sequence.refresh_from_db()
    assert played_sequence.status == "completed" and all(s.buyer_utility is not None for s in steps)
    SequenceStep.objects.filter(pk=steps[0].pk).update(notes={"buyer": "Open at $5.50 and hold."})
    html = web.get(reverse("analytics:sequence", args=[played_sequence.pk])).content.decode()
    chart = re.search(r"<svg class=\"chart\"[^>]*aria-label=\"Cumulative average utility.*?</svg>", html, re.S)
    assert chart is not None
    expected = cumulative_mean([s.buyer_utility for s in steps])
    titles = re.findall(r"<title>buyer after run (\d+): ([0-9.]+)</title>", chart.group(0))
    assert [(int(i), float(v)) for i, v in titles] == [(i + 1, pytest.approx(round(v, 2), abs=0.005))
                                                       for i, v in enumerate(expected)]
    assert "seller side after run 3" in chart.group(0)
    assert "Open at $5.50 and hold." in html and "No reflection" not in html
    assert reverse("analytics:sequences") in html  # the nav links the sequences list

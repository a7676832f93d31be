"""Statuses tell the truth (issue 13): a batch, an experiment and the command-line tools say
completed only when every run completed, failed when every run did, partly_failed otherwise; and a
launch on a local LLM server that does not answer is refused before anything is queued."""
from __future__ import annotations

import io
import json
import socket
import time
from typing import Any

import pytest
from django.contrib.auth import get_user_model
from django.core.management import call_command
from django.core.management.base import CommandError
from django.test import Client

from negotiation.models import Batch, Experiment, NegotiationRun
from negotiation.services.batches import batch_create
from negotiation.services.experiments import experiment_status
from negotiation.services.lifecycle import batch_refresh
from negotiation.services.scenarios import sample_session_load
from tests.api.conftest import client_for

BASELINE = {"buyer": {"strategy": "linear"}, "seller": {"strategy": "linear"}, "analyst": {"strategy": "linear"}}
LLM_BUYER = {"buyer": {"profile": "openai-compatible"}, "seller": {"strategy": "linear"},
             "analyst": {"strategy": "linear"}}


def _closed_port() -> int:
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        return s.getsockname()[1]


def _experiment(user: Any, session: Any, conditions: dict[str, dict], out: io.StringIO) -> None:
    call_command("run_experiment", "--session", str(session.pk), "--item", "USB-C Cable", "--runs", "1",
                 "--max-rounds", "2", "--wait", "--timeout", "120",
                 *[a for label, agents in conditions.items() for a in ("--condition", f"{label}={json.dumps(agents)}")],
                 stdout=out)


@pytest.mark.django_db(transaction=True)
@pytest.mark.worker
def test_an_experiment_whose_every_run_failed_is_failed_everywhere_and_the_cli_exits_non_zero(
        celery_worker: Any, llm: Any) -> None:
    # given a provider that answers 503 to everything, and two conditions whose buyer is an LLM
    user = get_user_model().objects.create_user("ada", password="pw")
    session = sample_session_load(owner=user)
    llm.configure(outage_until=time.time() + 600)
    out = io.StringIO()
    # when run_experiment waits for them
    with pytest.raises(CommandError, match="every run failed"):
        _experiment(user, session, {"a": LLM_BUYER, "b": LLM_BUYER}, out)
    # then it printed the reason with its count, and every status says failed
    text = out.getvalue()
    assert "2 of 2 runs failed, by reason:" in text and "2×" in text and "503" in text
    assert "(completed)" not in text and "(failed)" in text
    experiment = Experiment.objects.get()
    assert experiment_status(experiment) == "failed"
    batch = Batch.objects.first()
    assert batch.status == "failed"
    body = client_for(user).get(f"/api/batches/{batch.pk}").json()
    assert body["status"] == "failed" and body["progress"]["failed"] == 1
    web = Client()
    web.force_login(user)
    html = web.get(f"/analytics/batches/{batch.pk}/").content.decode()
    assert 'class="badge failed"' in html and 'class="badge completed"' not in html
    assert "1 of 1 run failed" in html


@pytest.mark.django_db(transaction=True)
@pytest.mark.worker
def test_an_experiment_with_some_failed_runs_is_partly_failed_and_the_cli_lists_the_reasons(
        celery_worker: Any, llm: Any) -> None:
    # given a provider that answers 503 to everything: a baseline condition runs, an LLM one cannot
    user = get_user_model().objects.create_user("ada", password="pw")
    session = sample_session_load(owner=user)
    llm.configure(outage_until=time.time() + 600)
    out = io.StringIO()
    # when run_experiment waits for them
    _experiment(user, session, {"baseline": BASELINE, "llm": LLM_BUYER}, out)
    # then it exits normally but says which runs failed and why; nothing claims completed
    text = out.getvalue()
    assert "(partly_failed)" in text and "1 of 2 runs failed, by reason:" in text and "503" in text
    assert experiment_status(Experiment.objects.get()) == "partly_failed"
    assert sorted(Batch.objects.values_list("status", flat=True)) == ["completed", "failed"]


@pytest.mark.django_db
def test_a_partly_failed_batch_shows_its_status_and_count_in_the_api_and_on_its_page() -> None:
    # given a finished batch of 3 runs, one of which failed
    user = get_user_model().objects.create_user("ada", password="pw")
    batch = batch_create(session=sample_session_load(owner=user), item_name="USB-C Cable", runs=3,
                         agents=BASELINE, owner=user)
    runs = list(batch.runs.order_by("seed"))
    NegotiationRun.objects.filter(pk__in=[r.pk for r in runs[:2]]).update(status="completed")
    NegotiationRun.objects.filter(pk=runs[2].pk).update(status="failed", error="the provider said 503")
    batch_refresh(batch_id=batch.pk)
    # when its API body, the batches list and its page are read
    body = client_for(user).get(f"/api/batches/{batch.pk}").json()
    web = Client()
    web.force_login(user)
    page = web.get(f"/analytics/batches/{batch.pk}/").content.decode()
    listing = web.get("/analytics/").content.decode()
    # then each says partly_failed with its own badge, never a green completed, and the count
    assert body["status"] == "partly_failed" and body["progress"]["failed"] == 1
    assert 'class="badge partly_failed"' in page and "1 of 3 runs failed" in page
    assert 'class="badge partly_failed"' in listing and 'class="badge completed"' not in listing
    # and the failed run's page leads with its reason and promises nothing more
    run_page = web.get(f"/analytics/runs/{runs[2].pk}/").content.decode()
    assert "This run failed" in run_page and "the provider said 503" in run_page
    assert "No outcome yet" not in run_page and "Not analysed yet" not in run_page


@pytest.mark.django_db
def test_a_launch_on_the_local_profile_is_refused_when_its_server_does_not_answer(settings: Any) -> None:
    # given the local profile pointed at a port nobody listens on
    settings.LLM_PROFILES = {**settings.LLM_PROFILES,
                             "local": {**settings.LLM_PROFILES["local"],
                                       "base_url": f"http://127.0.0.1:{_closed_port()}/v1"}}
    user = get_user_model().objects.create_user("ada", password="pw")
    session = sample_session_load(owner=user)
    agents = {"buyer": {"profile": "local"}, "seller": {"strategy": "linear"}, "analyst": {"strategy": "linear"}}
    # when a batch is launched through the API
    started = time.monotonic()
    r = client_for(user).post("/api/batches", {"session": str(session.pk), "item_name": "USB-C Cable", "runs": 2,
                                               "agents": agents}, format="json")
    # then it is refused at once, saying how to start the server, and nothing was queued
    assert r.status_code == 400, r.content
    assert "make up" in r.content.decode() and "deploy/local/stack.sh llm" in r.content.decode()
    assert time.monotonic() - started < 5
    assert not Batch.objects.exists() and not NegotiationRun.objects.exists()
    # and run_experiment refuses it too
    with pytest.raises(CommandError, match="make up"):
        call_command("run_experiment", "--session", str(session.pk), "--item", "USB-C Cable", "--runs", "1",
                     "--condition", f"a={json.dumps(agents)}", "--condition", f"b={json.dumps(BASELINE)}",
                     stdout=io.StringIO())
    assert not Batch.objects.exists()
    # while baseline agents need no server at all
    r = client_for(user).post("/api/batches", {"session": str(session.pk), "item_name": "USB-C Cable", "runs": 1,
                                               "agents": BASELINE}, format="json")
    assert r.status_code == 201, r.content

"""Secrets stay secret, and production settings pass Django's deployment checks.

A planted API key is given to a real worker, which plays a batch through error paths (a provider
outage that fails a run, 500s and garbage that are retried or repaired); then the key is looked
for everywhere it could have leaked: the worker's log, every row of every table (as text, so
JSON columns, traces and error reasons are included), and the API's and pages' answers.
"""

from __future__ import annotations

import os
import secrets
import subprocess
import sys
import time
from typing import Any

import pytest
from django.db import connection

from negotiation.models import NegotiationRun
from negotiation.services.batches import batch_create
from negotiation.services.scenarios import sample_session_load
from tests.api.conftest import client_for
from tests.conftest import ROOT, WorkerProcess, wait_for_batch
from tests.factories import UserFactory
from tests.ops.conftest import LLM, ops_worker


@pytest.mark.django_db(transaction=True)
@pytest.mark.worker
def test_a_planted_api_key_appears_in_no_log_row_or_response(
        private_redis: Any, workers: list[WorkerProcess], llm: Any, monkeypatch: pytest.MonkeyPatch) -> None:
    # given a worker (and this web process) holding a unique planted key, logging at DEBUG
    planted = f"sk-planted-{secrets.token_hex(12)}"
    monkeypatch.setenv("MAMS_OPENAI_API_KEY", planted)
    worker = ops_worker("secret", llm, {"MAMS_OPENAI_API_KEY": planted, "MAMS_LOG_LEVEL": "DEBUG"})
    workers.append(worker)
    user = UserFactory(username="keyholder")
    session = sample_session_load()
    from tests.fakes.policies import negotiation

    sent: set[str] = set()

    def capture(req: Any) -> str:
        sent.update(v for k, v in req.headers.items() if k.lower() == "authorization")
        return negotiation(req)

    llm.policy = capture
    # when one batch meets 500s and garbage, and another a provider outage that outlasts its retries
    llm.add_faults("500", "invalid_content", "truncated_content", "injection")
    ok = batch_create(session=session, item_name="USB-C Cable", runs=2, agents=LLM, max_rounds=2, owner=user)
    wait_for_batch(ok.pk, timeout=120, worker=worker)
    llm.configure(outage_until=time.time() + 600)
    failed = batch_create(session=session, item_name="USB-C Cable", runs=1, agents=LLM, max_rounds=2, owner=user)
    wait_for_batch(failed.pk, timeout=120, worker=worker)
    llm.configure(outage_until=None)
    run = NegotiationRun.objects.get(batch=failed)
    assert run.status == "failed" and run.error  # the error path really ran
    assert sent == {f"Bearer {planted}"}  # the worker really called the provider with the planted key
    # then the key is nowhere: the worker's log ...
    assert planted not in worker.log.read_text(errors="replace")
    # ... any row of any table ...
    with connection.cursor() as cur:
        for table in connection.introspection.table_names():
            cur.execute(f'SELECT count(*) FROM "{table}" t WHERE t::text LIKE %s', [f"%{planted}%"])
            assert cur.fetchone()[0] == 0, f"the planted key is in table {table}"
    # ... or any answer of the API and the pages, failed run included
    api = client_for(user)
    api.force_login(user)
    paths = [f"/api/batches/{failed.pk}", f"/api/batches/{ok.pk}", f"/api/negotiations?batch={failed.pk}",
             f"/api/negotiations/{run.pk}", f"/api/negotiations/{run.pk}/messages",
             f"/api/batches/{ok.pk}/results.csv", f"/api/batches/{ok.pk}/results.jsonl",
             f"/analytics/batches/{failed.pk}/", f"/analytics/runs/{run.pk}/", "/api/negotiations/not-a-uuid",
             "/analytics/"]
    for path in paths:
        response = api.get(path)
        body = b"".join(response.streaming_content) if response.streaming else response.content
        assert response.status_code < 500, (path, response.status_code)
        assert planted.encode() not in body, f"the planted key is in the answer to {path}"


def test_manage_check_deploy_passes_with_production_settings() -> None:
    env = {**os.environ, "DJANGO_SETTINGS_MODULE": "mams.settings.production",
           "MAMS_SECRET_KEY": secrets.token_urlsafe(64), "MAMS_ALLOWED_HOSTS": "mams.example.org"}
    out = subprocess.run([sys.executable, "manage.py", "check", "--deploy", "--fail-level", "WARNING"], cwd=ROOT,
                         env=env, capture_output=True, text=True, timeout=120)
    assert out.returncode == 0, out.stdout + out.stderr
    assert "no issues" in out.stdout


def test_production_settings_refuse_a_missing_or_short_secret_key() -> None:
    env = {**os.environ, "DJANGO_SETTINGS_MODULE": "mams.settings.production", "MAMS_SECRET_KEY": "short"}
    out = subprocess.run([sys.executable, "manage.py", "check"], cwd=ROOT, env=env, capture_output=True, text=True,
                         timeout=120)
    assert out.returncode != 0 and "MAMS_SECRET_KEY" in out.stderr

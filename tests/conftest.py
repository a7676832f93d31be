"""Shared fixtures: the fake LLM on loopback and a real Celery worker process on the test database.

The worker is a separate `celery worker` process (threads pool) started against the database that
pytest-django created, and Redis database 1; tests that use it must commit their data
(`django_db(transaction=True)`), exactly as the web process and workers do in production.
"""

from __future__ import annotations

import os
import subprocess
import sys
import time
import uuid
from collections.abc import Iterator
from contextlib import contextmanager
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import pytest

os.environ.setdefault("MAMS_OPENAI_API_KEY", "test-key")

# Fixtures that need the stack's Postgres or Redis (or a worker, which needs both): a test that uses
# one is marked `services`, so `pytest -m "not services"` runs the rest without any service started.
SERVICE_FIXTURES = {"db", "transactional_db", "django_db_setup", "celery_worker", "clean_broker", "live_server",
                    "llm"}  # every LLM call takes a slot of the Redis limiter


def pytest_collection_modifyitems(config: pytest.Config, items: list[pytest.Item]) -> None:
    for item in items:
        if item.get_closest_marker("django_db") or SERVICE_FIXTURES & set(getattr(item, "fixturenames", ())):
            item.add_marker(pytest.mark.services)
ROOT = Path(__file__).resolve().parent.parent
OUTPUT = ROOT / "test-output"


@pytest.fixture(scope="session")
def fake_llm() -> Iterator[Any]:
    from django.conf import settings

    from tests.fakes.openai_server import FakeLLM
    from tests.fakes.policies import negotiation

    fake = FakeLLM(policy=negotiation)
    fake.start()
    settings.LLM_PROFILES["openai-compatible"]["base_url"] = fake.base_url
    yield fake
    fake.stop()


@pytest.fixture
def llm(fake_llm: Any) -> Iterator[Any]:
    """The fake, reset to a well-behaved negotiator for each test."""
    from tests.fakes.policies import negotiation

    fake_llm.reset()
    fake_llm.configure(latency=0, rate_limit=None, faults=[], outage_until=None, outage_status=503, headers="none",
                       token_limit=None, input_token_limit=None, output_token_limit=None)
    fake_llm.policy = negotiation
    yield fake_llm
    fake_llm.reset()
    fake_llm.policy = negotiation


@dataclass
class WorkerProcess:
    proc: subprocess.Popen  # the worker, or its supervisor (deploy/local/supervise.sh) when supervised
    hostname: str
    log: Path
    child_pidfile: Path | None = None  # supervised: the current worker process's pid

    def child_pid(self) -> int:
        return int(self.child_pidfile.read_text()) if self.child_pidfile else self.proc.pid

    def log_tail(self, n: int = 60) -> str:
        return "\n".join(self.log.read_text(errors="replace").splitlines()[-n:])


def start_worker(*, db_name: str, llm_url: str, name: str, extra_env: dict[str, str] | None = None,
                 supervised: bool = False) -> WorkerProcess:
    from django.conf import settings

    from mams.celery import app
    from mams.queues import ALL_QUEUES

    OUTPUT.mkdir(exist_ok=True)
    hostname = f"{name}-{uuid.uuid4().hex[:6]}@localhost"
    log = OUTPUT / f"worker-{name}.log"
    env = {**os.environ, "DJANGO_SETTINGS_MODULE": "mams.settings.test", "MAMS_DB_NAME": db_name,
           "MAMS_TEST_REDIS_URL": settings.REDIS_URL, "MAMS_OPENAI_BASE_URL": llm_url,
           "MAMS_OPENAI_API_KEY": "test-key", "MAMS_OPENAI_RATE": "6000/minute", "MAMS_OPENAI_CONCURRENCY": "16",
           "MAMS_LLM_MAX_RETRIES": "2", "MAMS_LLM_TIMEOUT": "90", "MAMS_DB_CONN_MAX_AGE": "0",
           **(extra_env or {})}
    command = [sys.executable, "-m", "celery", "-A", "mams", "worker", "-Q", ALL_QUEUES, "-P", "threads", "-c", "8",
               "--hostname", hostname, "--loglevel", "INFO", "--without-mingle", "--without-gossip"]
    child_pidfile = None
    if supervised:
        child_pidfile = OUTPUT / f"worker-{name}.child.pid"
        child_pidfile.unlink(missing_ok=True)
        env["MAMS_SUPERVISE_CHILD_PIDFILE"] = str(child_pidfile)
        command = [str(ROOT / "deploy" / "local" / "supervise.sh"), f"worker {name}", "--", *command]
    with log.open("w") as fh:
        proc = subprocess.Popen(command, cwd=ROOT, env=env, stdout=fh, stderr=subprocess.STDOUT)
    deadline = time.monotonic() + 60
    while time.monotonic() < deadline:
        if proc.poll() is not None:
            raise RuntimeError(f"the Celery worker exited:\n{log.read_text()[-3000:]}")
        if app.control.ping(destination=[hostname], timeout=0.5):
            return WorkerProcess(proc=proc, hostname=hostname, log=log, child_pidfile=child_pidfile)
    proc.kill()
    raise RuntimeError(f"the Celery worker did not answer a ping in 60 s:\n{log.read_text()[-3000:]}")


def stop_worker(worker: WorkerProcess) -> None:
    worker.proc.terminate()
    try:
        worker.proc.wait(timeout=20)
    except subprocess.TimeoutExpired:
        worker.proc.kill()
        worker.proc.wait()


@pytest.fixture(scope="session")
def clean_broker() -> None:
    """Start from an empty test broker: tasks left by an aborted earlier run must not leak in."""
    import redis
    from django.conf import settings

    redis.Redis.from_url(settings.REDIS_URL).flushdb()


@pytest.fixture(scope="session")
def celery_worker(django_db_setup: Any, django_db_blocker: Any, fake_llm: Any, clean_broker: None
                  ) -> Iterator[WorkerProcess]:
    from django.conf import settings

    worker = start_worker(db_name=settings.DATABASES["default"]["NAME"], llm_url=fake_llm.base_url, name="w1")
    yield worker
    stop_worker(worker)


@contextmanager
def queues_taken_from(worker: WorkerProcess, *queues: str) -> Iterator[None]:
    """The shared worker stops consuming `queues` for a while (Celery's remote control), so a test's own
    worker, configured otherwise (another store, an API key), is the only one that takes those tasks."""
    from mams.celery import app

    for q in queues:
        app.control.cancel_consumer(q, destination=[worker.hostname], reply=True, timeout=10)
    try:
        yield
    finally:
        for q in queues:
            app.control.add_consumer(q, destination=[worker.hostname], reply=True, timeout=10)


@pytest.fixture(autouse=True)
def _worker_idle_before_flush(request: pytest.FixtureRequest) -> Iterator[None]:
    """After a test that used the shared worker, let it finish what the test left queued (the post-run
    analysis, a coach call, a cancelled batch's rounds) before pytest-django truncates the tables:
    a worker writing into a TRUNCATE can deadlock it. Set up after pytest-django's own autouse
    database fixture, so this teardown runs before the flush."""
    yield
    if "celery_worker" not in request.fixturenames:
        return
    import redis
    from django.conf import settings

    from mams.queues import Queue

    broker = redis.Redis.from_url(settings.REDIS_URL)

    def idle() -> bool:
        return not any(broker.llen(q.value) for q in Queue) and not broker.hlen("unacked")

    deadline = time.monotonic() + 30
    while not idle() and time.monotonic() < deadline:
        time.sleep(0.1)


def wait_for(predicate: Any, *, timeout: float, interval: float = 0.2, what: str = "condition") -> None:
    deadline = time.monotonic() + timeout
    while time.monotonic() < deadline:
        if predicate():
            return
        time.sleep(interval)
    raise AssertionError(f"timed out after {timeout}s waiting for {what}")


def wait_for_batch(batch_id: Any, *, timeout: float = 120, worker: WorkerProcess | None = None) -> None:
    from negotiation.models import Batch, NegotiationRun

    def done() -> bool:
        # The batch itself is marked finished (finished_at, then its final status) by the refresh after
        # the last run's commit: wait for that. Its status alone is not enough, because a cancelled batch
        # (by its owner or its budget) says `cancelled` while its running runs are still ending.
        return (not NegotiationRun.objects.filter(batch_id=batch_id, status__in=["queued", "running"]).exists()
                and Batch.objects.filter(pk=batch_id, finished_at__isnull=False).exists())

    try:
        wait_for(done, timeout=timeout, what=f"batch {batch_id}")
    except AssertionError as exc:
        tail = worker.log_tail() if worker else ""
        raise AssertionError(f"{exc}\n--- worker log ---\n{tail}") from exc


@pytest.fixture
def play_through(monkeypatch: pytest.MonkeyPatch) -> Any:
    """Play a queued agent run to its end in-process: buyer turn, each seller's turn, next round.

    Nothing is enqueued (no worker involved); returns a function run_id -> the finished run.
    """
    from analytics import archive, services
    from negotiation.models import Message, NegotiationRun
    from negotiation.services import play

    monkeypatch.setattr(play, "enqueue_seller_turns", lambda *a, **k: None)
    monkeypatch.setattr(play, "enqueue_round", lambda *a, **k: None)
    monkeypatch.setattr(services, "enqueue_analysis", lambda *a, **k: None)
    monkeypatch.setattr(archive, "archive_enqueue", lambda *a, **k: None)  # the run-end hook queues nothing
    monkeypatch.setattr(play, "voice_on_commit", lambda *a, **k: None)

    def run_it(run_id: Any) -> NegotiationRun:
        for _ in range(100):
            run = NegotiationRun.objects.get(pk=run_id)
            if run.status in NegotiationRun.TERMINAL:
                return run
            round_no = run.current_round
            play.round_play(run_id=run_id, round_no=round_no)
            buyer = Message.objects.filter(run_id=run_id, round_no=round_no, sender="buyer").first()
            ids = {s["handle"]: s["id"] for s in run.scenario["sellers"]}
            for handle in buyer.recipients if buyer else []:
                play.seller_turn(run_id=run_id, round_no=round_no, seller_id=ids[handle])
        raise AssertionError("the run did not end in 100 steps")

    return run_it

"""Operations tests: real processes, killed and restarted for real.

These tests must never touch the shared Postgres and Redis servers' processes. Each test gets a
throwaway `redis-server` of its own on a free loopback port (append-only, like the real one), and
the test process and its dedicated workers use it as broker and limiter store; so no other worker
(the session's `w1`, another engineer's) can take these tests' tasks, and a restart hurts no one.
"""

from __future__ import annotations

import json
import os
import re
import shutil
import socket
import subprocess
import sys
import time
from collections import defaultdict
from collections.abc import Iterator
from dataclasses import dataclass
from datetime import timedelta
from pathlib import Path
from typing import Any

import pytest

from tests.conftest import ROOT, WorkerProcess, start_worker, stop_worker


def free_port() -> int:
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        return s.getsockname()[1]


@dataclass
class PrivateRedis:
    port: int
    dir: Path
    proc: subprocess.Popen | None = None

    @property
    def url(self) -> str:
        return f"redis://127.0.0.1:{self.port}/0"

    def start(self) -> None:
        log = (self.dir / "redis.log").open("a")
        self.proc = subprocess.Popen(
            ["redis-server", "--port", str(self.port), "--bind", "127.0.0.1", "--dir", str(self.dir),
             "--appendonly", "yes", "--appendfsync", "everysec", "--save", "", "--protected-mode", "yes"],
            stdout=log, stderr=subprocess.STDOUT)
        deadline = time.monotonic() + 10
        while time.monotonic() < deadline:
            if self.cli("ping") == "PONG":
                return
            time.sleep(0.05)
        raise RuntimeError(f"the private redis-server did not start:\n{(self.dir / 'redis.log').read_text()}")

    def cli(self, *args: str) -> str:
        out = subprocess.run(["redis-cli", "-p", str(self.port), *args], capture_output=True, text=True, timeout=10)
        return out.stdout.strip()

    def shutdown(self) -> None:
        """SHUTDOWN as an operator's restart does: the append-only file is flushed, then it exits."""
        if self.proc is None:
            return
        self.cli("shutdown")
        try:
            self.proc.wait(timeout=15)
        except subprocess.TimeoutExpired:
            self.proc.kill()
            self.proc.wait()
        self.proc = None


def _point_celery_at(url: str) -> None:
    from kombu import pools

    from mams.celery import app

    app.conf.broker_url = url
    # Drop the pools bound to the previous broker, so the next publish connects to this one. kombu keeps
    # its pools in a process-wide registry keyed by broker URL: closing one in place (force_close_all)
    # left a closed pool there that the next test on that URL got back ("Acquire on closed pool").
    pools.reset()
    app._pool = None
    app.amqp._producer_pool = None


@pytest.fixture
def private_redis(settings: Any, tmp_path: Path) -> Iterator[PrivateRedis]:
    """A throwaway Redis that is this test's broker and limiter store (and its workers')."""
    from mams.celery import app
    from negotiation.services import events

    previous = app.conf.broker_url
    server = PrivateRedis(port=free_port(), dir=tmp_path / "redis")
    server.dir.mkdir()
    server.start()
    settings.REDIS_URL = server.url
    settings.CELERY_BROKER_URL = server.url
    _point_celery_at(server.url)
    events._client = None
    try:
        yield server
    finally:
        _point_celery_at(previous)
        events._client = None
        server.shutdown()
        shutil.rmtree(server.dir, ignore_errors=True)


PGBIN = Path("/usr/lib/postgresql/15/bin")


@dataclass
class PrivatePostgres:
    """A throwaway Postgres cluster (initdb as the `postgres` user: Postgres refuses to run as root)."""

    port: int
    dir: Path
    name: str = "mams_ops"

    def pg(self, *args: str, timeout: float = 90) -> None:
        subprocess.run(["runuser", "-u", "postgres", "--", *args], check=True, capture_output=True, timeout=timeout)

    def start(self) -> None:
        self.pg(str(PGBIN / "initdb"), "-D", str(self.dir / "data"), "-U", "postgres", "-A", "trust", "-E", "UTF8",
                "--locale=C.UTF-8", "--no-sync")
        self.start_again()
        psql = ["psql", "-h", "127.0.0.1", "-p", str(self.port), "-U", "postgres", "-qtAc"]
        subprocess.run([*psql, "create role mams login createdb"], check=True, capture_output=True)
        subprocess.run([*psql, f"create database {self.name} owner mams"], check=True, capture_output=True)

    def start_again(self) -> None:
        """Start the (initialised) cluster, as after an outage."""
        self.pg(str(PGBIN / "pg_ctl"), "-D", str(self.dir / "data"), "-l", str(self.dir / "postgres.log"), "-w",
                "-t", "60", "start", "-o", f"-p {self.port} -h 127.0.0.1 -k {self.dir} -c fsync=off")

    def restart(self) -> None:
        """What an operator's `pg_ctl restart -m fast` does: every connection is cut."""
        self.pg(str(PGBIN / "pg_ctl"), "-D", str(self.dir / "data"), "-l", str(self.dir / "postgres.log"), "-m",
                "fast", "-w", "-t", "60", "restart")

    def stop(self) -> None:
        self.pg(str(PGBIN / "pg_ctl"), "-D", str(self.dir / "data"), "-m", "immediate", "-w", "stop")


@pytest.fixture
def private_postgres(transactional_db: Any) -> Iterator[PrivatePostgres]:
    """A throwaway Postgres cluster, migrated, that the test process's ORM uses for the test's duration.

    pytest-django's own test database is given back before its teardown flush runs.
    """
    import tempfile

    from django.db import connections

    root = Path(tempfile.mkdtemp(prefix="mams-pg-"))
    shutil.chown(root, "postgres", "postgres")
    server = PrivatePostgres(port=free_port(), dir=root)
    server.start()
    env = {**os.environ, "DJANGO_SETTINGS_MODULE": "mams.settings.test",
           "MAMS_DB_PORT": str(server.port), "MAMS_DB_NAME": server.name}
    subprocess.run([sys.executable, "manage.py", "migrate", "-v0"], cwd=ROOT, env=env, check=True, timeout=300)
    conn = connections["default"]
    saved = {k: conn.settings_dict[k] for k in ("NAME", "PORT")}
    conn.close()
    conn.settings_dict.update(NAME=server.name, PORT=str(server.port))
    try:
        yield server
    finally:
        conn.close()
        conn.settings_dict.update(saved)
        try:
            server.stop()
        finally:
            shutil.rmtree(root, ignore_errors=True)


@pytest.fixture
def workers() -> Iterator[list[WorkerProcess]]:
    """Workers a test starts; whatever is still alive at the end is stopped."""
    started: list[WorkerProcess] = []
    yield started
    for worker in started:
        if worker.proc.poll() is None:
            stop_worker(worker)


LLM = {role: {"profile": "openai-compatible"} for role in ("buyer", "seller", "analyst")}
# Redelivery 5 s after a delivery (each worker looks every second); a short LLM timeout so the killed
# worker's limiter leases expire soon too; unbuffered logs, so the tests can read them while it runs.
FAST_RECOVERY = {"MAMS_VISIBILITY_TIMEOUT": "5", "MAMS_UNACKED_RESTORE_SECONDS": "1", "MAMS_LLM_TIMEOUT": "10",
                 "MAMS_ANALYSIS_ENABLED": "0", "PYTHONUNBUFFERED": "1"}


def ops_worker(name: str, llm: Any, extra: dict[str, str] | None = None, *, supervised: bool = False
               ) -> WorkerProcess:
    from django.db import connection

    extra = {"MAMS_DB_PORT": str(connection.settings_dict["PORT"]), **(extra or {})}
    return start_worker(db_name=connection.settings_dict["NAME"], llm_url=llm.base_url, name=name,
                        extra_env={**FAST_RECOVERY, **(extra or {})}, supervised=supervised)


def unacked_task_ids(redis_url: str) -> set[str]:
    """Ids of the tasks the broker handed out and nobody acknowledged (kombu's `unacked` hash)."""
    import redis

    rows = redis.Redis.from_url(redis_url).hvals("unacked")
    return {json.loads(row)[0]["headers"]["id"] for row in rows}


def received_task_ids(worker: WorkerProcess) -> set[str]:
    return set(re.findall(r"\[([0-9a-f-]{36})\] received", worker.log.read_text(errors="replace")))


def wait_with_sweeper(batch_id: Any, *, timeout: float, worker: WorkerProcess, stale: float = 8.0) -> int:
    """Wait for a batch to finish, sweeping stale runs every 2 s as beat's sweep task would (running runs
    with a stale heartbeat, queued runs whose task was lost); returns runs re-queued."""
    from django.db import InterfaceError, OperationalError, connections
    from kombu.exceptions import OperationalError as KombuOperationalError
    from redis.exceptions import RedisError

    from negotiation.models import NegotiationRun
    from negotiation.services import sweeps

    requeued = 0
    deadline = time.monotonic() + timeout
    while True:
        if time.monotonic() > deadline:
            raise AssertionError(f"batch {batch_id} did not finish in {timeout}s\n--- worker log ---\n"
                                 f"{worker.log_tail()}")
        try:
            if not NegotiationRun.objects.filter(batch_id=batch_id, status__in=["queued", "running"]).exists():
                return requeued
            requeued += sweeps.runs_sweep(stale_after=timedelta(seconds=stale))
            requeued += sweeps.runs_sweep_queued(stale_after=timedelta(seconds=stale))
        except (OperationalError, InterfaceError):
            connections.close_all()  # this process's connection died in a database restart too
        except (KombuOperationalError, RedisError):
            pass  # the broker is restarting: sweep again next time
        time.sleep(2)


def assert_every_turn_exactly_once(batch: Any) -> None:
    """Completed runs only; rounds 1..n with none skipped; per buyer message one reply per recipient."""
    from negotiation.models import Batch, Message, NegotiationRun

    batch.refresh_from_db()
    assert batch.status == Batch.Status.COMPLETED
    runs = list(NegotiationRun.objects.filter(batch=batch).select_related("outcome"))
    assert len(runs) == batch.runs_requested
    assert {r.status for r in runs} == {"completed"}, [(r.status, r.error) for r in runs]
    for run in runs:
        assert run.outcome is not None
        by_round: dict[int, list[Message]] = defaultdict(list)
        for msg in Message.objects.filter(run=run):
            by_round[msg.round_no].append(msg)
        rounds = sorted(by_round)
        assert rounds == list(range(1, len(rounds) + 1)), f"run {run.pk} skipped a round: {rounds}"
        assert len(rounds) <= run.max_rounds
        for round_no in rounds:
            msgs = by_round[round_no]
            buyers = [m for m in msgs if m.sender == "buyer"]
            assert len(buyers) == 1, f"run {run.pk} round {round_no}: {len(buyers)} buyer messages"
            replies = sorted(m.sender for m in msgs if m.sender_type == "seller")
            assert replies == sorted(buyers[0].recipients), f"run {run.pk} round {round_no}: {replies}"
        assert run.outcome.rounds <= len(rounds)

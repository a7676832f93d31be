"""Operations tests: real processes, killed and restarted for real.

These tests must never touch the shared Postgres and Redis servers' processes. Each test gets a
throwaway `redis-server` of its own on a free loopback port (append-only, like the real one), and
the test process and its dedicated workers use it as broker and limiter store; so no other worker
(the session's `w1`, another engineer's) can take these tests' tasks, and a restart hurts no one.
"""

from __future__ import annotations

import shutil
import socket
import subprocess
import time
from collections.abc import Iterator
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import pytest

from tests.conftest import WorkerProcess, stop_worker


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
    from mams.celery import app

    app.conf.broker_url = url
    # Drop the pools bound to the previous broker, so the next publish connects to this one.
    if app._pool is not None:
        app._pool.force_close_all()
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


@pytest.fixture
def workers() -> Iterator[list[WorkerProcess]]:
    """Workers a test starts; whatever is still alive at the end is stopped."""
    started: list[WorkerProcess] = []
    yield started
    for worker in started:
        if worker.proc.poll() is None:
            stop_worker(worker)

"""deploy/local/supervise.sh, the local stack's second line: a worker that exits is started again.

The worker runs under the supervisor exactly as `make up` and `deploy/local/stack.sh worker` run it;
it is killed with SIGKILL mid-batch (what the kernel's OOM killer or a crash does), and the batch
must still complete with every turn exactly once, on the restarted process.
"""

from __future__ import annotations

import os
import signal
import subprocess
import time
from pathlib import Path
from typing import Any

import pytest

from mams.presence import workers_presence
from negotiation.models import Message, NegotiationRun
from negotiation.services.batches import batch_create
from negotiation.services.scenarios import sample_session_load
from tests.conftest import ROOT, WorkerProcess, wait_for
from tests.ops.conftest import LLM, assert_every_turn_exactly_once, ops_worker, wait_with_sweeper

SUPERVISE = ROOT / "deploy" / "local" / "supervise.sh"


def _alive(pid: int) -> bool:
    try:
        os.kill(pid, 0)
    except ProcessLookupError:
        return False
    return True


@pytest.mark.django_db(transaction=True)
@pytest.mark.worker
def test_a_supervised_worker_killed_mid_batch_comes_back_and_finishes_the_batch(
        private_redis: Any, workers: list[WorkerProcess], llm: Any) -> None:
    # given a supervised worker with a batch of 6 runs in flight
    llm.configure(latency=0.2)
    worker = ops_worker("supervised", llm, supervised=True)
    workers.append(worker)
    batch = batch_create(session=sample_session_load(), item_name="USB-C Cable", runs=6, agents=LLM, max_rounds=4)
    wait_for(lambda: Message.objects.filter(run__batch=batch).count() >= 8, timeout=60, interval=0.05,
             what="the batch to be well under way")
    first = worker.child_pid()
    # when the worker process (not its supervisor) is killed with SIGKILL
    os.kill(first, signal.SIGKILL)
    assert NegotiationRun.objects.filter(batch=batch, status__in=["queued", "running"]).exists(), \
        "the batch finished before the kill; the test proved nothing"
    # then the supervisor starts a new worker process, which heartbeats again ...
    wait_for(lambda: worker.child_pid() != first and _alive(worker.child_pid()), timeout=30,
             what="the supervisor to start the worker again")
    wait_for(lambda: any(w.get("pid") == worker.child_pid() for w in workers_presence().workers), timeout=60,
             what="the restarted worker's heartbeat")
    assert worker.proc.poll() is None, "the supervisor itself exited"
    log = worker.log.read_text(errors="replace")
    assert "supervise worker supervised: exited with status 137" in log
    assert "supervise worker supervised: restarted" in log
    # ... and the batch completes with every turn exactly once
    wait_with_sweeper(batch.pk, timeout=180, worker=worker)
    assert_every_turn_exactly_once(batch)


def _supervise(tmp_path: Path, script: str, **env: str) -> subprocess.Popen:
    child = tmp_path / "child.pid"
    return subprocess.Popen([str(SUPERVISE), "job", "--", "bash", "-c", script], stdout=subprocess.PIPE,
                            stderr=subprocess.STDOUT, text=True,
                            env={**os.environ, "MAMS_SUPERVISE_CHILD_PIDFILE": str(child), **env})


def test_a_child_that_keeps_failing_is_restarted_with_a_growing_backoff(tmp_path: Path) -> None:
    # given a command that exits at once with status 3, under the supervisor with a 4 s cap
    proc = _supervise(tmp_path, "exit 3", MAMS_SUPERVISE_MAX_DELAY="4")
    # when it has run for about 8 s
    time.sleep(8)
    proc.send_signal(signal.SIGTERM)
    out, _ = proc.communicate(timeout=10)
    # then each exit was logged and followed by a wait of 1, 2, 4, 4 … s (never a tight loop)
    delays = [int(line.rsplit("again in ", 1)[1].rstrip("s")) for line in out.splitlines() if "again in" in line]
    assert "exited with status 3" in out
    assert delays[:3] == [1, 2, 4], out
    assert all(d == 4 for d in delays[3:]), out
    assert 3 <= len(delays) <= 5, out
    assert proc.returncode == 0 and "stopped" in out


def test_stopping_the_supervisor_stops_its_child(tmp_path: Path) -> None:
    # given a long-running child under the supervisor
    proc = _supervise(tmp_path, "sleep 300")
    wait_for(lambda: (tmp_path / "child.pid").exists(), timeout=10, what="the child to start")
    child = int((tmp_path / "child.pid").read_text())
    assert _alive(child)
    # when the supervisor gets SIGTERM (what `make down`, Ctrl-C in `make up`, or stack.sh worker-stop send)
    proc.send_signal(signal.SIGTERM)
    proc.wait(timeout=10)
    # then the child is gone too, and nothing was restarted
    wait_for(lambda: not _alive(child), timeout=10, what="the child to exit")
    assert "restarted" not in proc.stdout.read()

"""Soak benchmark (`make soak`): one long batch survives its infrastructure failing again and again.

Real parts only, all of them this script's own so nothing else is disturbed: a throwaway Postgres
cluster and a throwaway append-only `redis-server` (broker and limiter store), the fake
OpenAI-compatible provider as its own process on loopback, and two Celery worker processes, each
under deploy/local/supervise.sh exactly as `make up` and `deploy/local/stack.sh worker` run them.
This process plays beat's part: it runs the stale-run sweeper every few seconds, as the schedule does.

While one batch (500 runs by default) plays, on a seeded random schedule:
- Redis is shut down (SHUTDOWN, as an operator's restart) and started again on the same data 20 times;
- Postgres is restarted (`pg_ctl restart -m fast`: every connection is cut) 10 times;
- a worker process (not its supervisor) is killed with SIGKILL 10 times.

Then it checks every run from the database: completed, no duplicate message (the unique keys make a
duplicate impossible; the count proves it), no missing turn (each round has one buyer message and
one reply per addressed seller, rounds 1..n with none skipped), none stuck in queued/running. It
prints those, the restarts survived, the worker processes the supervisors restarted (the 10 kills,
plus any exit of the worker's own, which the first line of defence should make 0), and the batch
time. Target: every run completes; duplicates, missing turns and stuck runs are 0.

Usage: make soak   (or .venv/bin/python perf/soak.py [--runs 500] [--redis 20] [--postgres 10] [--kills 10])
Figures print last.
"""

from __future__ import annotations

import argparse
import os
import random
import re
import shutil
import signal
import subprocess
import sys
import tempfile
import time
import uuid
from collections import Counter, defaultdict
from datetime import timedelta
from pathlib import Path

ROOT = Path(__file__).resolve().parent.parent
sys.path.insert(0, str(ROOT))
PGBIN = Path(os.environ.get("MAMS_PGBIN", "/usr/lib/postgresql/15/bin"))
SUPERVISE = ROOT / "deploy" / "local" / "supervise.sh"
LOGS = ROOT / ".local" / "soak"

from tests.ops.conftest import PrivateRedis, free_port  # noqa: E402 - the suite's throwaway Redis, after sys.path


def as_postgres(*args: str, timeout: float = 120) -> None:
    subprocess.run(["runuser", "-u", "postgres", "--", *args], check=True, capture_output=True, timeout=timeout,
                   cwd="/")


class Postgres:
    def __init__(self) -> None:
        self.dir = Path(tempfile.mkdtemp(prefix="mams-soak-pg-"))
        shutil.chown(self.dir, "postgres", "postgres")
        self.port = free_port()

    def pg_ctl(self, *args: str) -> None:
        as_postgres(str(PGBIN / "pg_ctl"), "-D", str(self.dir / "data"), "-l", str(self.dir / "postgres.log"),
                    *args)

    def start(self) -> None:
        as_postgres(str(PGBIN / "initdb"), "-D", str(self.dir / "data"), "-U", "postgres", "-A", "trust",
                    "-E", "UTF8", "--locale=C.UTF-8", "--no-sync")
        self.pg_ctl("-w", "-t", "60", "start", "-o",
                    f"-p {self.port} -h 127.0.0.1 -k {self.dir} -c fsync=off -c max_connections=200")
        psql = ["psql", "-h", "127.0.0.1", "-p", str(self.port), "-U", "postgres", "-qtAc"]
        subprocess.run([*psql, "create role mams login createdb"], check=True, capture_output=True)
        subprocess.run([*psql, "create database mams_soak owner mams"], check=True, capture_output=True)

    def restart(self) -> None:
        self.pg_ctl("-m", "fast", "-w", "-t", "60", "restart")

    def remove(self) -> None:
        try:
            self.pg_ctl("-m", "immediate", "-w", "stop")
        except subprocess.CalledProcessError:
            pass
        shutil.rmtree(self.dir, ignore_errors=True)


class Worker:
    """A worker under supervise.sh; `kill()` SIGKILLs the worker process, not the supervisor."""

    def __init__(self, name: str, env: dict[str, str]) -> None:
        self.name = name
        self.hostname = f"soak-{name}-{uuid.uuid4().hex[:6]}@localhost"
        self.child_pidfile = LOGS / f"{name}.child.pid"
        self.child_pidfile.unlink(missing_ok=True)
        self.log = LOGS / f"{name}.log"
        with self.log.open("w") as fh:
            self.proc = subprocess.Popen(
                [str(SUPERVISE), f"worker {name}", "--", sys.executable, "-m", "celery", "-A", "mams", "worker",
                 "-Q", "rounds,agents,analysis,maintenance,voice,archive", "-P", "threads", "-c", "8",
                 "--hostname", self.hostname,
                 "--without-mingle", "--without-gossip", "--loglevel", "INFO"],
                cwd=ROOT, env={**env, "MAMS_SUPERVISE_CHILD_PIDFILE": str(self.child_pidfile),
                               "MAMS_SUPERVISE_MAX_DELAY": "4"},
                stdout=fh, stderr=subprocess.STDOUT)

    def child_pid(self) -> int | None:
        try:
            return int(self.child_pidfile.read_text())
        except (OSError, ValueError):
            return None

    def kill(self) -> bool:
        pid = self.child_pid()
        if pid is None:
            return False
        try:
            os.kill(pid, signal.SIGKILL)
        except ProcessLookupError:
            return False
        return True

    def restarts(self) -> int:
        return len(re.findall(r"supervise worker \S+: restarted", self.log.read_text(errors="replace")))

    def stop(self) -> None:
        self.proc.terminate()
        try:
            self.proc.wait(timeout=30)
        except subprocess.TimeoutExpired:
            self.proc.kill()
            pid = self.child_pid()
            if pid:
                try:
                    os.kill(pid, signal.SIGKILL)
                except ProcessLookupError:
                    pass


def start_fake(latency: float) -> tuple[subprocess.Popen, str]:
    proc = subprocess.Popen([sys.executable, "-m", "tests.fakes.openai_server", "--port", "0", "--latency",
                             str(latency), "--policy", "negotiation"], cwd=ROOT, stdout=subprocess.PIPE, text=True)
    line = proc.stdout.readline().strip() if proc.stdout else ""
    if not line.startswith("FAKE_LLM_URL="):
        proc.kill()
        raise SystemExit(f"the fake provider did not start: {line!r}")
    return proc, line.split("=", 1)[1]


def sweep(stale: float) -> int:
    """What beat's sweeper does, surviving the outages it runs through."""
    from django.db import InterfaceError, OperationalError, connections
    from kombu.exceptions import OperationalError as KombuOperationalError
    from redis.exceptions import RedisError

    from negotiation.services import sweeps

    try:
        return (sweeps.runs_sweep(stale_after=timedelta(seconds=stale))
                + sweeps.runs_sweep_queued(stale_after=timedelta(seconds=stale)))
    except (OperationalError, InterfaceError):
        connections.close_all()
    except (KombuOperationalError, RedisError, ConnectionError, OSError):
        pass
    return 0


def unfinished(batch_id: str) -> int | None:
    from django.db import InterfaceError, OperationalError, connections

    from negotiation.models import NegotiationRun

    try:
        return NegotiationRun.objects.filter(batch_id=batch_id, status__in=["queued", "running"]).count()
    except (OperationalError, InterfaceError):
        connections.close_all()
        return None


def audit(batch_id: str) -> dict[str, int]:
    """Counts from the database: completed, failed, stuck, duplicate messages, missing turns."""
    from django.db.models import Count

    from negotiation.models import Message, NegotiationRun

    runs = list(NegotiationRun.objects.filter(batch_id=batch_id))
    by_status = Counter(r.status for r in runs)
    duplicates = sum(row["n"] - 1 for row in Message.objects.filter(run__batch_id=batch_id)
                     .values("run_id", "round_no", "sender").annotate(n=Count("id")).filter(n__gt=1))
    msgs: dict[tuple, list] = defaultdict(list)
    for m in Message.objects.filter(run__batch_id=batch_id).only("run_id", "round_no", "sender", "sender_type",
                                                                  "recipients"):
        msgs[(m.run_id, m.round_no)].append(m)
    missing = 0
    for run in runs:
        rounds = sorted(r for (rid, r) in msgs if rid == run.pk)
        if run.status == "completed" and rounds != list(range(1, len(rounds) + 1)):
            missing += len(set(range(1, max(rounds, default=0) + 1)) - set(rounds))
        for r in rounds:
            buyers = [m for m in msgs[(run.pk, r)] if m.sender == "buyer"]
            if len(buyers) != 1:
                missing += 1
                continue
            replied = {m.sender for m in msgs[(run.pk, r)] if m.sender_type == "seller"}
            # the last round of an unfinished run may still be waiting for replies: only finished runs count
            if run.status == "completed":
                missing += len(set(buyers[0].recipients) - replied)
    return {"runs": len(runs), "completed": by_status["completed"], "failed": by_status["failed"],
            "stuck": by_status["queued"] + by_status["running"], "duplicates": duplicates, "missing": missing}


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.split("\n")[0])
    parser.add_argument("--runs", type=int, default=500)
    parser.add_argument("--redis", type=int, default=20, help="Redis restarts")
    parser.add_argument("--postgres", type=int, default=10, help="Postgres restarts")
    parser.add_argument("--kills", type=int, default=10, help="worker SIGKILLs")
    parser.add_argument("--every", type=float, default=3.0, help="seconds between faults (jittered)")
    parser.add_argument("--latency", type=float, default=0.2, help="the fake provider's seconds per call")
    parser.add_argument("--seed", type=int, default=7)
    parser.add_argument("--timeout", type=float, default=1800)
    opts = parser.parse_args()
    LOGS.mkdir(parents=True, exist_ok=True)

    pg = Postgres()
    rd = PrivateRedis(port=free_port(), dir=Path(tempfile.mkdtemp(prefix="mams-soak-redis-")))
    fake = None
    workers: list[Worker] = []
    try:
        print(f"soak: {opts.runs} runs, two supervised workers; Redis restarted {opts.redis}x, Postgres "
              f"{opts.postgres}x, a worker SIGKILLed {opts.kills}x ...", flush=True)
        pg.start()
        rd.start()
        fake, url = start_fake(opts.latency)
        env = {**os.environ, "DJANGO_SETTINGS_MODULE": "mams.settings.local", "MAMS_DEBUG": "0",
               "MAMS_DB_PORT": str(pg.port), "MAMS_DB_NAME": "mams_soak", "MAMS_REDIS_URL": rd.url,
               "MAMS_BROKER_URL": rd.url, "MAMS_OPENAI_BASE_URL": url, "MAMS_OPENAI_API_KEY": "soak-key",
               "MAMS_OPENAI_RATE": "100000/minute", "MAMS_OPENAI_CONCURRENCY": "32", "MAMS_LLM_TIMEOUT": "10",
               "MAMS_ANALYSIS_ENABLED": "0", "MAMS_DB_CONN_MAX_AGE": "0", "PYTHONUNBUFFERED": "1",
               # a killed worker's tasks come back within ~30 s; each worker looks for them every 2 s
               "MAMS_VISIBILITY_TIMEOUT": "30", "MAMS_UNACKED_RESTORE_SECONDS": "2", "MAMS_LOG_LEVEL": "INFO"}
        os.environ.update({k: v for k, v in env.items() if k.startswith(("MAMS_", "DJANGO_"))})
        subprocess.run([sys.executable, "manage.py", "migrate", "-v0"], cwd=ROOT, env=env, check=True, timeout=600)
        import django

        django.setup()
        from negotiation.services.batches import batch_create
        from negotiation.services.scenarios import sample_session_load

        workers = [Worker("w1", env), Worker("w2", env)]
        from mams.presence import workers_presence

        deadline = time.monotonic() + 90
        while len(workers_presence().workers) < 2:
            if time.monotonic() > deadline:
                raise SystemExit(f"the soak's workers did not start; see {LOGS}")
            time.sleep(0.5)

        faults = ["redis"] * opts.redis + ["postgres"] * opts.postgres + ["kill"] * opts.kills
        rng = random.Random(opts.seed)
        rng.shuffle(faults)
        agents = {role: {"profile": "openai-compatible", "model": "soak-model"} for role in ("buyer", "seller",
                                                                                                 "analyst")}
        started = time.monotonic()
        batch = batch_create(session=sample_session_load(), item_name="USB-C Cable", runs=opts.runs, agents=agents,
                             max_rounds=4, base_seed=opts.seed)
        batch_id = str(batch.pk)
        done = Counter()
        next_fault = started + opts.every
        last_sweep = 0.0
        finished_at = None
        while time.monotonic() - started < opts.timeout:
            now = time.monotonic()
            if faults and now >= next_fault:
                kind = faults.pop()
                if kind == "redis":
                    rd.shutdown()
                    time.sleep(rng.uniform(0.5, 3.0))
                    rd.start()
                    done[kind] += 1
                elif kind == "postgres":
                    pg.restart()
                    done[kind] += 1
                elif rng.choice(workers).kill() or any(w.kill() for w in workers):
                    done[kind] += 1
                print(f"  {time.monotonic() - started:6.1f}s  {kind:<8} (redis {done['redis']}, postgres "
                      f"{done['postgres']}, kills {done['kill']})", flush=True)
                next_fault = time.monotonic() + opts.every * rng.uniform(0.5, 1.5)
            if now - last_sweep >= 5:
                sweep(stale=20)
                last_sweep = now
            if unfinished(batch_id) == 0:
                finished_at = time.monotonic()
                break
            time.sleep(0.5)
        wall = (finished_at or time.monotonic()) - started
        from django.db import connections

        connections.close_all()
        result = audit(batch_id)
        alive = [w for w in workers if w.proc.poll() is None]
        restarted = sum(w.restarts() for w in workers)
        if done["redis"] + done["postgres"] + done["kill"] < opts.redis + opts.postgres + opts.kills:
            print("  note: the batch finished (or timed out) before every fault was applied; the counts below "
                  "are those applied during the batch (lower --every, or raise --runs)", flush=True)
    finally:
        for w in workers:
            w.stop()
        if fake is not None:
            fake.terminate()
        rd.shutdown()
        shutil.rmtree(rd.dir, ignore_errors=True)
        pg.remove()

    all_faults = done["redis"] == opts.redis and done["postgres"] == opts.postgres and done["kill"] == opts.kills
    ok = (all_faults and result["completed"] == result["runs"] == opts.runs and not result["duplicates"]
          and not result["missing"] and not result["stuck"])
    print(f"\n=== MAMS soak ({opts.runs}-run batch, 2 supervised worker processes, 2 cores; logs in {LOGS}) ===")
    print(f"restarts survived: Redis {done['redis']}/{opts.redis}, Postgres {done['postgres']}/{opts.postgres}, "
          f"worker SIGKILLs {done['kill']}/{opts.kills}; supervisors alive at the end {len(alive)}/2")
    print(f"worker processes restarted by the supervisors: {restarted} "
          f"({done['kill']} after our kills, {restarted - done['kill']} after an exit of their own)")
    print(f"runs completed {result['completed']}/{opts.runs}, failed {result['failed']}, stuck {result['stuck']}; "
          f"duplicate messages {result['duplicates']}; missing turns {result['missing']}")
    print(f"batch time {wall:.1f} s;  target met: {'yes' if ok else 'NO'}")
    sys.exit(0 if ok else 1)


if __name__ == "__main__":
    main()

"""Benchmark: the platform's own overhead per LLM turn, and the rate achieved against a hard limit.

Real parts only: a Celery worker process, Postgres, Redis and the real openai client, against the
fake OpenAI-compatible provider running as its own process on loopback (scripted negotiators).

Phase A: the fake answers at once and the worker has ONE thread, so turns run strictly one after
another; the gaps between consecutive message commits, minus the provider's own time, are the
platform's cost per turn (task pickup, context load, prompt building, guardrails, DB writes). The
worker runs as deployed (MAMS_DEBUG=0: no debug cursor) and stays up across several batches, whose
gaps are pooled; its CPU time per turn and a reference loop's time (how fast the VM was just then)
print beside the median.
Phase B: the fake takes 300 ms per call, sends no rate-limit headers and refuses (429) anything
beyond 20 requests in any 1-second window, like a real provider; MAMS is configured with that very
limit, 20/second (a user writes the provider's limit; the limiter paces at
MAMS_LLM_CONFIGURED_LIMIT_SHARE of it). We report the achieved request rate as a fraction of the
provider's and the configured limit, the 429s, the batch time (to its last analysis) over the lower
bound calls / limit, and where the time went, from the provider's log of arrivals: the least span of
21 consecutive calls (under 1 s is a 429), how much of the limiter's spacing jitter took, the gaps
between calls, and how often no caller was waiting at the limiter.
Phase BH: phase B again with the limit stated in OpenAI-style headers (1200 a minute) and no rate
configured in MAMS.
Phase C: real providers limit tokens too, and say where a caller stands in every answer. The fake
takes 300 ms per call, limits requests (1200 a minute) and tokens (prompt + completion, a per-minute
token bucket) at once, with the token limit set so that it binds (about 12 calls a second at this
workload's tokens per call, measured in phase B), and sends OpenAI-style x-ratelimit-* headers.
MAMS is configured with NO limits for the profile: it learns them from the headers. We report the
achieved requests/s / request limit, tokens/min / token limit, 429s, and the batch time / the lower
bound max(calls / request limit, tokens / token limit). Figures print last.

Usage: make bench   (or .venv/bin/python perf/overhead.py [--runs-a 30] [--batches-a 3] [--runs-b 300]
                    [--runs-c 300] [--rate-b 20/second] [--phases ABHC])
"""

from __future__ import annotations

import argparse
import json
import os
import statistics
import subprocess
import sys
import time
import uuid
from pathlib import Path
from typing import Any

ROOT = Path(__file__).resolve().parent.parent
sys.path.insert(0, str(ROOT))
DB = os.environ.get("MAMS_BENCH_DB", "mams_bench")
REDIS = os.environ.get("MAMS_BENCH_REDIS_URL",
                       os.environ.get("MAMS_REDIS_URL", "redis://127.0.0.1:63790/0").rsplit("/", 1)[0] + "/2")
os.environ.update({"DJANGO_SETTINGS_MODULE": "mams.settings.local", "MAMS_DB_NAME": DB, "MAMS_REDIS_URL": REDIS,
                   "MAMS_OPENAI_API_KEY": "bench-key", "MAMS_LOG_LEVEL": "WARNING",
                   # as deployed: Django's debug cursor (it times, formats and keeps every query) is off
                   "MAMS_DEBUG": os.environ.get("MAMS_DEBUG", "0")})


def sh(*args: str) -> str:
    return subprocess.run(args, check=True, capture_output=True, text=True).stdout.strip()


def ensure_db() -> None:
    port = os.environ.get("MAMS_DB_PORT", "54329")
    psql = ["psql", "-h", "127.0.0.1", "-p", port, "-U", "postgres", "-qtAc"]
    if sh(*psql, f"select 1 from pg_database where datname='{DB}'") != "1":
        sh(*psql, f"create database {DB} owner mams")
    subprocess.run([sys.executable, "manage.py", "migrate", "-v0"], cwd=ROOT, check=True)


def start_fake(latency: float, rate: str | None, *, tokens: str | None = None,
               headers: str = "none") -> tuple[subprocess.Popen, str]:
    args = [sys.executable, "-m", "tests.fakes.openai_server", "--port", "0", "--latency", str(latency),
            "--policy", "negotiation", "--headers", headers]
    if rate:
        args += ["--rate", rate]
    if tokens:
        args += ["--tokens", tokens]
    proc = subprocess.Popen(args, cwd=ROOT, stdout=subprocess.PIPE, text=True)
    line = proc.stdout.readline().strip() if proc.stdout else ""
    if not line.startswith("FAKE_LLM_URL="):
        proc.kill()
        raise SystemExit(f"the fake provider did not start: {line!r}")
    return proc, line.split("=", 1)[1]


def start_worker(url: str, concurrency: int, rate: str, *, name: str = "bench", max_in_flight: int | None = None,
                 queues: str = "rounds,agents,analysis,maintenance,voice,archive",
                 tpm: str = "none") -> subprocess.Popen:
    """A worker process with its own hostname (as on its own host), once it answers a ping."""
    env = {**os.environ, "MAMS_OPENAI_BASE_URL": url, "MAMS_OPENAI_RATE": rate, "MAMS_OPENAI_TPM": tpm,
           "MAMS_OPENAI_CONCURRENCY": str(max_in_flight or concurrency), "MAMS_LLM_TIMEOUT": "10"}
    (ROOT / ".local").mkdir(exist_ok=True)
    log = open(ROOT / ".local" / f"bench-worker-{name}-{concurrency}.log", "w")  # noqa: SIM115
    hostname = f"{name}-{uuid.uuid4().hex[:6]}@localhost"
    proc = subprocess.Popen(
        [sys.executable, "-m", "celery", "-A", "mams", "worker", "-Q", queues,
         "-P", "threads", "-c", str(concurrency), "--hostname", hostname,
         "--without-mingle", "--without-gossip", "--loglevel", "WARNING"],
        cwd=ROOT, env=env, stdout=log, stderr=subprocess.STDOUT)
    from mams.celery import app
    deadline = time.monotonic() + 60
    while not app.control.ping(destination=[hostname], timeout=0.5):
        if time.monotonic() > deadline or proc.poll() is not None:
            raise SystemExit("the bench worker did not start; see .local/bench-worker-*.log")
    return proc


def run_batch(runs: int, max_rounds: int, base_url: str, agents: dict | None = None, *,
              analyses: bool = False) -> tuple[str, float]:
    """Run a batch; its time ends when its runs have ended (and, with `analyses`, their analyses too:
    the post-run analyst's calls are part of a batch's calls)."""
    from django.conf import settings

    from analytics.models import RunAnalysis
    from negotiation.models import NegotiationRun
    from negotiation.services.batches import batch_create
    from negotiation.services.scenarios import sample_session_load

    settings.LLM_PROFILES["openai-compatible"]["base_url"] = base_url
    agents = agents or {role: {"profile": "openai-compatible", "model": "bench-model"}
                        for role in ("buyer", "seller", "analyst")}
    started = time.monotonic()
    batch = batch_create(session=sample_session_load(), item_name="USB-C Cable", runs=runs, agents=agents,
                         max_rounds=max_rounds, base_seed=int(time.time()) % 100000)
    while NegotiationRun.objects.filter(batch=batch, status__in=["queued", "running"]).exists():
        if time.monotonic() - started > 900:
            raise SystemExit("the batch did not finish in 15 minutes")
        time.sleep(0.05)
    completed = NegotiationRun.objects.filter(batch=batch, status="completed")
    while analyses and RunAnalysis.objects.filter(run__in=completed, status__in=["done", "failed"]).count() \
            < completed.count():
        if time.monotonic() - started > 900:
            raise SystemExit("the batch's analyses did not finish in 15 minutes")
        time.sleep(0.05)
    return str(batch.pk), time.monotonic() - started


def stop(*procs: subprocess.Popen) -> None:
    for p in procs:
        p.terminate()
    for p in procs:
        try:
            p.wait(timeout=20)
        except subprocess.TimeoutExpired:
            p.kill()


def reference_ms() -> float:
    """A fixed pure-Python workload (best of 5), to show how fast the machine was during the run.

    These VMs' speed drifts by tens of percent within minutes; the same code measured 8 ms and 12 ms
    an hour apart. Printing this beside the overhead lets a reader compare runs made at different times.
    """
    best = float("inf")
    for _ in range(5):
        started = time.perf_counter()
        acc = {}
        for i in range(60_000):
            acc[f"k{i % 997}"] = acc.get(f"k{i % 997}", 0) + len(str(i))
        best = min(best, (time.perf_counter() - started) * 1000)
    return best


def cpu_seconds(pid: int) -> float:
    """User + system CPU time of a process so far (Linux /proc)."""
    fields = Path(f"/proc/{pid}/stat").read_text().rsplit(")", 1)[1].split()
    return (int(fields[11]) + int(fields[12])) / os.sysconf("SC_CLK_TCK")


def phase_a(runs: int, sessions: int) -> dict[str, Any]:
    from negotiation.models import Message, NegotiationRun

    fake, url = start_fake(0.0, None)
    # Negotiation turns only: the post-run analysis (its own LLM call) is queued for another worker,
    # as a deployment that separates the queues would do, so its time is not counted as turn overhead.
    worker = start_worker(url, 1, "100000/minute", queues="rounds,agents")
    gaps: list[float] = []
    medians: list[float] = []
    turns = cpu = wall = 0.0
    refs: list[float] = []
    llm: list[int] = []
    try:
        run_batch(3, 4, url)  # warm-up (first connections, first client), not counted
        # Several batches on the one long-lived worker, as a deployment runs: a slow minute on the
        # host then moves one batch's median, not the figure.
        for _ in range(sessions):
            refs.append(reference_ms())
            cpu_before = cpu_seconds(worker.pid)
            batch_id, seconds = run_batch(runs, 4, url)
            cpu += cpu_seconds(worker.pid) - cpu_before
            wall += seconds
            assert not NegotiationRun.objects.filter(batch_id=batch_id).exclude(status="completed").exists()
            msgs = list(Message.objects.filter(run__batch_id=batch_id).order_by("created_at")
                        .values_list("created_at", "latency_ms"))
            batch_gaps = [(b[0] - a[0]).total_seconds() * 1000 - b[1] for a, b in zip(msgs, msgs[1:], strict=False)]
            gaps += batch_gaps
            medians.append(statistics.median(batch_gaps))
            turns += len(msgs)
            llm += [m[1] for m in msgs]
    finally:
        stop(worker, fake)
    return {"turns": int(turns), "wall": wall, "median_ms": statistics.median(gaps),
            "p90_ms": statistics.quantiles(gaps, n=10)[-1], "batch_medians": medians,
            "cpu_ms": cpu * 1000 / turns, "llm_ms": statistics.median(llm), "reference_ms": statistics.median(refs)}


def arrival_profile(arrivals: list[float], limit: int, window: float, interval: float) -> dict[str, float]:
    """Where a rate-limited batch's time went, from the provider's log of accepted arrivals (sorted).

    slack_ms: the least time by which any limit+1 consecutive arrivals spanned more than the window
    (0 or less is a 429, or would have been one); the limiter spaces them (limit / configured rate)
    apart, so jitter_ms = that spacing minus the least span is what jitter took from the margin.
    lost_s: the time the gaps between arrivals took beyond the limiter's interval (no caller waiting,
    late wake-ups), the efficiency loss in the middle of the batch.
    """
    gaps = [b - a for a, b in zip(arrivals, arrivals[1:], strict=False)]
    spans = [arrivals[i + limit] - arrivals[i] for i in range(len(arrivals) - limit)]
    least = min(spans) if spans else float("nan")
    return {"slack_ms": (least - window) * 1000, "jitter_ms": (limit * interval - least) * 1000,
            "spans_under_margin": sum(1 for x in spans if x < limit * interval - 0.005),
            "gap_median_ms": statistics.median(gaps) * 1000 if gaps else float("nan"),
            "gap_p99_ms": statistics.quantiles(gaps, n=100)[-1] * 1000 if len(gaps) > 1 else float("nan"),
            "gap_min_ms": min(gaps) * 1000 if gaps else float("nan"),
            "lost_s": sum(max(0.0, g - interval) for g in gaps),
            "long_gaps": sum(1 for g in gaps if g > 2 * interval)}


def phase_b(runs: int, *, headers: bool = False, rate: str = "20/second") -> dict[str, Any]:
    import httpx

    from negotiation.agents.limiter import emission_interval

    # With headers: the same 20 a second stated per minute (OpenAI's headers are per minute), and
    # MAMS configured with no rate: it learns the limit from the answers.
    fake, url = start_fake(0.3, "1200/60" if headers else "20/1", headers="openai" if headers else "none")
    worker = start_worker(url, 24, "none" if headers else rate)
    # Callers holding a limiter lease (waiting for their rate slot, or in their call), sampled every 20 ms:
    # when it falls to the calls in flight, nobody was waiting and the limiter had no one to grant.
    import threading

    import redis as redis_lib
    held: list[int] = []
    sampling = threading.Event()

    def sample() -> None:
        client = redis_lib.Redis.from_url(REDIS)
        while not sampling.wait(0.02):
            now = client.time()
            held.append(int(client.zcount("mams:llm:inflight:openai-compatible:bench-model",
                                          f"({now[0] + now[1] / 1e6}", "+inf")))

    sampler = threading.Thread(target=sample, daemon=True)
    sampler.start()
    # requests that went on the wire late after their slot and took a fresh one (limiter.hold_if_late)
    late_key = "mams:llm:late:openai-compatible:bench-model"
    late_before = int(redis_lib.Redis.from_url(REDIS).get(late_key) or 0)
    try:
        batch_id, wall = run_batch(runs, 4, url, analyses=True)
        late = int(redis_lib.Redis.from_url(REDIS).get(late_key) or 0) - late_before
        stats = httpx.get(url.removesuffix("/v1") + "/_stats").json()
        records = httpx.get(url.removesuffix("/v1") + "/_requests").json()
    finally:
        sampling.set()
        stop(worker, fake)
    records = records if isinstance(records, list) else records.get("requests", [])
    (ROOT / ".local" / f"bench-b{'h' if headers else ''}-requests.json").write_text(json.dumps(records))
    ok_records = [r for r in records if r["status"] == 200]
    ok = sorted(r["arrival"] for r in ok_records)
    # Steady state: drop the first and last 10% of calls (the ramp-up and the tail of the batch).
    cut = max(1, len(ok) // 10)
    mid = ok[cut:-cut]
    steady = (len(mid) - 1) / (mid[-1] - mid[0]) if len(mid) > 1 else 0.0
    overall = (len(ok) - 1) / (ok[-1] - ok[0]) if len(ok) > 1 else 0.0
    from django.conf import settings
    share = 1.0 if headers else getattr(settings, "LLM_CONFIGURED_LIMIT_SHARE", 1.0)
    interval = emission_interval(None if headers else rate) / share if not headers else 1 / (20 * 0.99)
    return {"calls": len(ok), "wall": wall, "steady_rate": steady, "overall_rate": overall, "late": late,
            "n429": stats["by_status"].get("429", 0), "max_window": stats["max_accepted_in_window"],
            "lower_bound": len(ok) / 20, "configured": 0 if headers else 1 / emission_interval(rate),
            "share": share, "first_s": ok[0] - records[0]["arrival"] if ok else float("nan"),
            "profile": arrival_profile(ok, 20, 1.0, interval),
            "held_median": statistics.median(held) if held else float("nan"),
            "held_le_6": sum(1 for h in held if h <= 6) / max(1, len(held)),
            "tokens_per_call": sum(r["prompt_tokens"] + r["completion_tokens"] for r in ok_records) / max(1, len(ok))}


def phase_c(runs: int, tokens_per_call: float) -> dict[str, float]:
    import httpx

    request_limit = 1200  # per minute: 20 a second
    # The token limit binds: about 12 calls a second at this workload's tokens per call.
    token_limit = int(round(tokens_per_call * 12 * 60, -3))
    fake, url = start_fake(0.3, f"{request_limit}/60", tokens=f"{token_limit}/60", headers="openai")
    worker = start_worker(url, 24, "none", tpm="none")  # no limits configured: learned from the headers
    try:
        batch_id, wall = run_batch(runs, 4, url)
        stats = httpx.get(url.removesuffix("/v1") + "/_stats").json()
        records = httpx.get(url.removesuffix("/v1") + "/_requests").json()
    finally:
        stop(worker, fake)
    ok_records = sorted((r for r in records if r["status"] == 200), key=lambda r: r["arrival"])
    ok = [r["arrival"] for r in ok_records]
    tokens = sum(r["prompt_tokens"] + r["completion_tokens"] for r in ok_records)
    span = ok[-1] - ok[0] if len(ok) > 1 else float("nan")
    cut = max(1, len(ok) // 10)
    mid = ok_records[cut:-cut]
    mid_span = mid[-1]["arrival"] - mid[0]["arrival"] if len(mid) > 1 else float("nan")
    mid_tokens = sum(r["prompt_tokens"] + r["completion_tokens"] for r in mid[1:])
    lower_bound = max(len(ok) / (request_limit / 60), tokens / (token_limit / 60))
    return {"calls": len(ok), "tokens": tokens, "wall": wall, "token_limit": token_limit,
            "request_limit": request_limit, "lower_bound": lower_bound,
            "req_share": (len(ok) - 1) / span / (request_limit / 60),
            "tok_share": (tokens - ok_records[0]["prompt_tokens"] - ok_records[0]["completion_tokens"]) / span * 60
            / token_limit,
            "steady_tok_share": mid_tokens / mid_span * 60 / token_limit,
            "n429": stats["by_status"].get("429", 0), "batch_id": batch_id}


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.split("\n")[0])
    parser.add_argument("--runs-a", type=int, default=30, help="runs per phase-A batch")
    parser.add_argument("--batches-a", type=int, default=3, help="phase-A batches, pooled")
    parser.add_argument("--runs-b", type=int, default=300)
    parser.add_argument("--runs-c", type=int, default=300)
    parser.add_argument("--rate-b", default="20/second",
                        help="MAMS's configured rate in phase B (the fake's limit is 20 in any 1 s)")
    parser.add_argument("--phases", default="ABHC",
                        help="which phases to run, e.g. BC (H: phase B with OpenAI headers and no rate configured)")
    opts = parser.parse_args()
    ensure_db()
    import django

    django.setup()
    import redis

    redis.Redis.from_url(REDIS).flushdb()
    a = b = c = None
    if "A" in opts.phases:
        print(f"phase A: {opts.batches_a} batches of {opts.runs_a} runs, fake provider at 0 ms, one worker thread ...",
              flush=True)
        a = phase_a(opts.runs_a, opts.batches_a)
    if "B" in opts.phases or "C" in opts.phases:
        print(f"phase B: {opts.runs_b} runs, fake provider at 300 ms with a hard 20 req/s limit ...", flush=True)
        b = phase_b(opts.runs_b, rate=opts.rate_b)
    bh = None
    if "H" in opts.phases:
        print(f"phase B with headers: {opts.runs_b} runs, 1200 req/min stated in OpenAI headers, no rate configured",
              flush=True)
        bh = phase_b(opts.runs_b, headers=True)
    if "C" in opts.phases:
        print(f"phase C: {opts.runs_c} runs, fake provider at 300 ms limiting requests and tokens, OpenAI headers, "
              "no limits configured in MAMS ...", flush=True)
        c = phase_c(opts.runs_c, b["tokens_per_call"])
    print("\n=== MAMS benchmark (2-core machine; one Celery worker process) ===")
    if a:
        print(f"A  turns {a['turns']}, wall {a['wall']:.1f}s, provider time per call (median) {a['llm_ms']:.1f} ms; "
              f"machine speed: reference loop {a['reference_ms']:.1f} ms (lower is faster)")
        print(f"A  worker CPU per turn {a['cpu_ms']:.1f} ms (the openai client's share included); per-batch medians "
              + ", ".join(f"{m:.1f}" for m in a["batch_medians"]) + " ms")
        print(f"A  platform overhead per LLM turn: median {a['median_ms']:.1f} ms, p90 {a['p90_ms']:.1f} ms "
              "(target: median < 15 ms)")
    if b:
        p = b["profile"]
        print(f"B  calls {b['calls']}, wall {b['wall']:.1f}s; first call {b['first_s']:.2f}s after the first record; "
              f"MAMS configured at {b['configured']:g}/s, paced at {b['configured'] * b['share']:.2f}/s "
              f"(share {b['share']:g})")
        print(f"B  most requests accepted in any 1 s window: {b['max_window']} (limit 20); least span of 21 "
              f"consecutive calls: 1 s {p['slack_ms']:+.1f} ms; jitter took up to {p['jitter_ms']:.1f} ms of the "
              f"limiter's spacing ({p['spans_under_margin']} spans more than 5 ms short)")
        print(f"B  gaps between calls: median {p['gap_median_ms']:.1f} ms, p99 {p['gap_p99_ms']:.1f} ms, "
              f"least {p['gap_min_ms']:.1f} ms; {p['long_gaps']} over two intervals; time beyond the interval "
              f"{p['lost_s']:.2f}s; steady {b['steady_rate']:.2f} req/s, whole batch {b['overall_rate']:.2f} req/s")
        print(f"B  callers holding a limiter lease (waiting or calling), every 20 ms: median {b['held_median']:g}; "
              f"6 or fewer (about the calls in flight: nobody waiting) {b['held_le_6']:.0%} of the time")
        print(f"B  requests that went on the wire late after their slot and took a fresh one: {b['late']}; "
              f"load average now {os.getloadavg()[0]:.1f}")
    if bh:
        print(f"BH calls {bh['calls']}, wall {bh['wall']:.1f}s, "
              f"ratio to calls/limit {bh['wall'] / bh['lower_bound']:.2f}; "
              f"429s {bh['n429']}; achieved steady {bh['steady_rate'] / 20:.3f}, whole batch "
              f"{bh['overall_rate'] / 20:.3f} of 1200/min (headers on, no rate configured); "
              f"late sends given a fresh slot {bh['late']}")
    if c:
        print(f"C  calls {c['calls']}, tokens {c['tokens']}, wall {c['wall']:.1f}s; "
              f"limits {c['request_limit']} req/min "
              f"and {c['token_limit']} tokens/min (the token limit binds); MAMS configured with no limits")
        print(f"C  achieved requests/s / request limit: {c['req_share']:.3f}")
        print(f"C  achieved tokens/min / token limit: {c['tok_share']:.3f} whole batch, "
              f"{c['steady_tok_share']:.3f} steady (target >= 0.97)")
        print(f"C  provider 429s: {c['n429']} (target 0)")
        print(f"C  batch time / lower bound: {c['wall']:.1f}s / {c['lower_bound']:.1f}s = "
              f"{c['wall'] / c['lower_bound']:.3f} (target <= 1.03)")
    if b:
        # last, the no-headers figures: MAMS configured with the provider's own limit (20/s), no headers
        print(f"B  requests/s / provider limit (20/s): {b['overall_rate'] / 20:.3f} whole batch, "
              f"{b['steady_rate'] / 20:.3f} steady (target >= 0.95)")
        print(f"B  requests/s / configured limit ({b['configured']:g}/s): {b['overall_rate'] / b['configured']:.3f} "
              f"whole batch, {b['steady_rate'] / b['configured']:.3f} steady")
        print(f"B  provider 429s: {b['n429']} (target 0)")
        print(f"B  batch time / lower bound (calls / 20 per s): {b['wall']:.1f}s / {b['lower_bound']:.1f}s = "
              f"{b['wall'] / b['lower_bound']:.3f}")


if __name__ == "__main__":
    main()

"""Load benchmark: throughput against a hard provider limit with 1, 2 and 4 workers, an asyncio baseline, memory.

Real parts only (see perf/overhead.py, whose helpers this reuses): Celery worker processes, each
with its own --hostname as if on its own host (the scale-out of deploy/README.md, on one machine),
Postgres, Redis, and the fake OpenAI-compatible provider as its own process on loopback, answering
in 300 ms and refusing (429) anything beyond 20 requests in any 1-second window. MAMS's shared
limiter is set to 19/s.

1. Throughput: the same batch with 1, 2 and 4 worker processes; achieved request rate as a
   fraction of the limit, 429s, the most requests the provider accepted in any window, and the
   batch time against the lower bound (calls / limit). The batch is 300 runs (1,800 calls, ~95 s):
   a batch has fixed costs (its first call leaves ~0.5 s after it is created; its last answer
   takes the provider's 300 ms) that are 4% of a 60-run batch's 20 s, so a 60-run batch on one
   worker is measured too, to show them.
2. Baseline: the spec prototype's approach, in one process: for each negotiation, the buyer's call
   then `asyncio.gather` over the addressed sellers' calls under one `Semaphore(10)`, every
   negotiation at once, with `openai.AsyncOpenAI` (its retries honour Retry-After) against the
   same provider. Its default 2 retries are not enough at 300 runs: a call that meets three 429s
   raises RateLimitError and the whole `gather` fails, so the baseline gets 10. It replays the
   turn structure MAMS recorded for the 1-worker batch, so both make the same calls.
3. Memory: a 2,000-run batch of baseline strategies (no LLM, 2 rounds) on one worker; its peak RSS
   up to 200 and up to 2,000 completed runs.

Usage: .venv/bin/python perf/load.py [--runs 300] [--small-runs 60] [--memory-runs 2000]   (figures print last)
"""

from __future__ import annotations

import argparse
import asyncio
import os
import sys
import threading
import time
from collections import defaultdict
from pathlib import Path

sys.path.insert(0, str(Path(__file__).resolve().parent))
import overhead
from overhead import ensure_db, run_batch, start_fake, start_worker, stop

os.environ["MAMS_ANALYSIS_ENABLED"] = "0"  # negotiation calls only, so the baseline can make the same ones
LIMIT = 20
THREADS = 24  # in flight across all workers; at 300 ms, 19/s needs ~6


def _provider(url: str, path: str) -> dict | list:
    import httpx

    return httpx.get(url.removesuffix("/v1") + path, timeout=30).json()


def _reset(url: str) -> None:
    import httpx

    httpx.post(url.removesuffix("/v1") + "/_reset", timeout=30)


def _rates(url: str, started: float | None = None) -> dict[str, float]:
    stats = _provider(url, "/_stats")
    records = _provider(url, "/_requests")
    ok = sorted(r["arrival"] for r in records if r["status"] == 200)
    cut = max(1, len(ok) // 10)  # steady state: without the ramp-up and the tail
    mid = ok[cut:-cut]
    return {"calls": len(ok), "n429": stats["by_status"].get("429", 0), "max_window": stats["max_accepted_in_window"],
            "steady": (len(mid) - 1) / (mid[-1] - mid[0]) if len(mid) > 1 else 0.0,
            "overall": (len(ok) - 1) / (ok[-1] - ok[0]) if len(ok) > 1 else 0.0,
            "first_call": ok[0] - started if ok and started else 0.0, "span": ok[-1] - ok[0] if ok else 0.0}


def throughput(url: str, runs: int, n_workers: int) -> dict[str, float | str]:
    _reset(url)
    procs = [start_worker(url, THREADS // n_workers, "19/second", name=f"load{n_workers}w{i + 1}",
                          max_in_flight=THREADS) for i in range(n_workers)]
    try:
        started = time.time()
        batch_id, wall = run_batch(runs, 4, url)
    finally:
        stop(*procs)
    return {"batch": batch_id, "wall": wall, "runs": runs, "workers": n_workers, **_rates(url, started)}


def describe(r: dict) -> str:
    bound = r["calls"] / LIMIT
    return (f"{r['runs']} runs, {r['workers']} worker(s): {r['calls']} calls in {r['wall']:.1f}s; lower bound "
            f"{bound:.1f}s, ratio {r['wall'] / bound:.3f} (at 19/s alone: {LIMIT / 19:.3f}); first call "
            f"{r['first_call']:.2f}s after the batch was created, first to last call {r['span']:.1f}s; "
            f"rate steady {r['steady']:.2f}/s = {r['steady'] / LIMIT:.2f} of the limit, "
            f"whole batch {r['overall']:.2f}/s = {r['overall'] / LIMIT:.2f}; 429s {r['n429']}; "
            f"max accepted in any 1 s window {r['max_window']}")


def turn_structure(batch_id: str) -> list[list[int]]:
    """Per run, per round, how many sellers answered the buyer: the calls the baseline replays."""
    from negotiation.models import Message

    rounds: dict[tuple[str, int], int] = defaultdict(int)
    for run_id, round_no, kind in Message.objects.filter(run__batch_id=batch_id).values_list(
            "run_id", "round_no", "sender_type"):
        rounds[(str(run_id), round_no)] += kind == "seller"
    runs: dict[str, list[int]] = defaultdict(list)
    for (run_id, _), sellers in sorted(rounds.items()):
        runs[run_id].append(sellers)
    return list(runs.values())


def baseline(url: str, structure: list[list[int]]) -> dict[str, float]:
    import openai

    async def main() -> float:
        client = openai.AsyncOpenAI(base_url=url, api_key="bench-key", timeout=30, max_retries=10)
        sem = asyncio.Semaphore(10)

        async def call(role: str) -> None:
            async with sem:
                await client.chat.completions.create(
                    model="bench-model", max_tokens=200,
                    messages=[{"role": "system", "content": f"You are the {role} negotiating USB-C cables."},
                              {"role": "user", "content": "Reply with one JSON action."}])

        async def negotiation(rounds: list[int]) -> None:
            for sellers in rounds:
                await call("buyer")
                await asyncio.gather(*(call("seller") for _ in range(sellers)))

        started = time.monotonic()
        await asyncio.gather(*(negotiation(r) for r in structure))
        await client.close()
        return time.monotonic() - started

    _reset(url)
    wall = asyncio.run(main())
    return {"wall": wall, **_rates(url)}


def rss_kib(pid: int) -> int:
    for line in Path(f"/proc/{pid}/status").read_text().splitlines():
        if line.startswith("VmRSS:"):
            return int(line.split()[1])
    return 0


def memory(runs: int) -> dict[str, float]:
    from negotiation.models import NegotiationRun

    fake, url = start_fake(0.0, None)
    worker = start_worker(url, 8, "100000/minute", name="memory")
    peaks = {"at_200": 0, "at_all": 0, "start": rss_kib(worker.pid)}
    done = threading.Event()

    def sample() -> None:
        from django.db import connection

        while not done.is_set():
            completed = NegotiationRun.objects.filter(status="completed", batch__created_at__gte=started_at).count()
            rss = rss_kib(worker.pid)
            peaks["at_all"] = max(peaks["at_all"], rss)
            if completed <= 200:
                peaks["at_200"] = max(peaks["at_200"], rss)
            time.sleep(0.5)
        connection.close()

    from django.utils import timezone

    started_at = timezone.now()
    sampler = threading.Thread(target=sample, daemon=True)
    sampler.start()
    strategies = {"buyer": {"strategy": "boulware"}, "seller": {"strategy": "linear"},
                  "analyst": {"strategy": "linear"}}
    try:
        batch_id, wall = run_batch(runs, 2, url, agents=strategies)  # 2 rounds: ~10 turns a run, to keep it short
        peaks["at_all"] = max(peaks["at_all"], rss_kib(worker.pid))
    finally:
        done.set()
        sampler.join()
        stop(worker, fake)
    completed = NegotiationRun.objects.filter(batch_id=batch_id, status="completed").count()
    return {"runs": runs, "completed": completed, "wall": wall, **{k: v / 1024 for k, v in peaks.items()}}


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.split("\n")[0])
    parser.add_argument("--runs", type=int, default=300)
    parser.add_argument("--small-runs", type=int, default=60, help="also a batch this size on one worker (0: no)")
    parser.add_argument("--memory-runs", type=int, default=2000)
    parser.add_argument("--workers", default="1,2,4")
    opts = parser.parse_args()
    ensure_db()
    import django

    django.setup()
    import redis

    redis.Redis.from_url(overhead.REDIS).flushdb()
    fake, url = start_fake(0.3, f"{LIMIT}/1")
    results: dict[int, dict] = {}
    small = None
    try:
        for n in (int(x) for x in opts.workers.split(",")):
            print(f"throughput: {opts.runs} runs on {n} worker process(es) ...", flush=True)
            results[n] = throughput(url, opts.runs, n)
            print("  " + describe(results[n]), flush=True)
        if opts.small_runs:
            print(f"throughput: {opts.small_runs} runs on 1 worker process ...", flush=True)
            small = throughput(url, opts.small_runs, 1)
            print("  " + describe(small), flush=True)
        first = results[min(results)]
        print("baseline: asyncio.gather + Semaphore(10), the same calls ...", flush=True)
        base = baseline(url, turn_structure(str(first["batch"])))
    finally:
        stop(fake)
    print(f"memory: {opts.memory_runs} runs of baseline strategies on one worker ...", flush=True)
    mem = memory(opts.memory_runs)

    print(f"\n=== MAMS load benchmark (2-core machine; provider 300 ms, hard limit {LIMIT}/s; MAMS limiter 19/s) ===")
    for r in [*results.values(), *([small] if small else [])]:
        print(describe(r))
    bound = base["calls"] / LIMIT
    print(f"asyncio baseline: {base['calls']} calls accepted in {base['wall']:.1f}s; ratio to the lower bound "
          f"{base['wall'] / bound:.2f}; 429s it caused {base['n429']}; max accepted in any window {base['max_window']}")
    for n, r in results.items():
        print(f"MAMS with {n} worker(s) / baseline batch time: {r['wall'] / base['wall']:.2f}")
    print(f"memory: {mem['completed']}/{mem['runs']} runs completed in {mem['wall']:.0f}s; worker RSS at start "
          f"{mem['start']:.0f} MiB, peak up to 200 runs {mem['at_200']:.0f} MiB, peak up to {mem['runs']} runs "
          f"{mem['at_all']:.0f} MiB")


if __name__ == "__main__":
    main()

"""Tests for negotiation/agents/limiter.py: the global LLM limiter, against the real Redis.

The limiter must hold across every thread of every worker process, so the rate and concurrency
limits are checked both with threads and with separate OS processes (small `python -c` children
that start together on a "go" line and report their timestamps as JSON). A holder that dies
without releasing (a SIGKILLed process, or a context that is never exited) must free its slot
when its lease runs out. Each test uses its own Redis namespace, deleted afterwards.
"""

from __future__ import annotations

import json
import subprocess
import sys
import threading
import time
import uuid
from collections.abc import Iterator
from contextlib import contextmanager
from pathlib import Path

import pytest
from django.conf import settings

from negotiation.agents.limiter import Cost, LimiterTimeout, LLMLimiter, TokenLimits

pytestmark = pytest.mark.services  # the Redis limiter (make services)

ROOT = Path(__file__).resolve().parents[2]
FAST = "10000/second"  # a rate that never binds, for tests about concurrency
# Timestamps are taken by the holder after its grant, so a thread descheduled on a busy machine
# stamps late; windows are shortened by this much so that noise is not read as a breach. A limiter
# that let through even one extra request per second would still be caught.
JITTER = 0.05

# A child process: holds `count` slots one after another on `threads` threads and prints the
# (entered, left) wall-clock times of each. It waits for "go" on stdin so all children start together.
CHILD = """
import json, sys, threading, time
from negotiation.agents.limiter import LLMLimiter
url, namespace, key, rate, concurrency, threads, count, hold = sys.argv[1:9]
limiter = LLMLimiter(url, namespace=namespace)
spans, lock = [], threading.Lock()
def work():
    for _ in range(int(count)):
        with limiter.slot(key, rate=rate, max_concurrency=int(concurrency), lease_seconds=10):
            entered = time.time()
            time.sleep(float(hold))
            left = time.time()
        with lock:
            spans.append((entered, left))
print("ready", flush=True)
sys.stdin.readline()
workers = [threading.Thread(target=work) for _ in range(int(threads))]
for w in workers: w.start()
for w in workers: w.join()
print(json.dumps(spans), flush=True)
"""

# A child that takes one slot with a short lease, says so, and then hangs until it is killed.
CRASHER = """
import sys, time
from negotiation.agents.limiter import LLMLimiter
url, namespace, key, lease = sys.argv[1:5]
limiter = LLMLimiter(url, namespace=namespace)
with limiter.slot(key, rate="10000/second", max_concurrency=1, lease_seconds=float(lease)):
    print("held", flush=True)
    time.sleep(60)
"""


@pytest.fixture
def limiter() -> Iterator[LLMLimiter]:
    limiter = LLMLimiter(settings.REDIS_URL, namespace=f"test-limiter:{uuid.uuid4().hex[:12]}")
    yield limiter
    keys = list(limiter.redis.scan_iter(f"{limiter.namespace}:*"))
    if keys:
        limiter.redis.delete(*keys)
    limiter.redis.close()


@contextmanager
def abandoned(limiter: LLMLimiter, key: str, *, lease: float) -> Iterator[None]:
    """A slot entered and not released while the block runs: a hung holder, as Redis sees it."""
    holder = limiter.slot(key, rate=FAST, max_concurrency=1, lease_seconds=lease)
    holder.__enter__()
    try:
        yield
    finally:
        # Exited here, not left to garbage collection, which would release it on a closed client.
        holder.__exit__(None, None, None)


def max_in_window(stamps: list[float], window: float) -> int:
    """The most timestamps inside any half-open window [t, t + window)."""
    ordered, best, start = sorted(stamps), 0, 0
    for end, t in enumerate(ordered):
        while ordered[start] <= t - window:
            start += 1
        best = max(best, end - start + 1)
    return best


def max_overlap(spans: list[tuple[float, float]]) -> int:
    """The most spans open at one instant (a span that ends as another starts does not overlap it)."""
    events = sorted([(left, -1) for _, left in spans] + [(entered, 1) for entered, _ in spans])
    best = current = 0
    for _, step in events:
        current += step
        best = max(best, current)
    return best


def run_children(n: int, *, limiter: LLMLimiter, key: str, rate: str, concurrency: int, threads: int, count: int,
                 hold: float) -> list[tuple[float, float]]:
    """Start n child processes, release them at once, and gather every span they report."""
    args = [settings.REDIS_URL, limiter.namespace, key, rate, str(concurrency), str(threads), str(count), str(hold)]
    procs = [subprocess.Popen([sys.executable, "-c", CHILD, *args], cwd=ROOT, stdin=subprocess.PIPE,
                              stdout=subprocess.PIPE, stderr=subprocess.PIPE, text=True) for _ in range(n)]
    try:
        for proc in procs:
            assert proc.stdout is not None and proc.stdout.readline().strip() == "ready", proc.stderr
        for proc in procs:
            assert proc.stdin is not None
            proc.stdin.write("go\n")
            proc.stdin.flush()
        spans: list[tuple[float, float]] = []
        for proc in procs:
            out, err = proc.communicate(timeout=30)
            assert proc.returncode == 0, err
            spans += [tuple(span) for span in json.loads(out.strip().splitlines()[-1])]
        return spans
    finally:
        for proc in procs:
            if proc.poll() is None:
                proc.kill()
            for pipe in (proc.stdin, proc.stdout, proc.stderr):
                if pipe is not None:
                    pipe.close()
            proc.wait()


def hold_on_threads(limiter: LLMLimiter, key: str, *, threads: int, count: int, rate: str, concurrency: int,
                    hold: float) -> list[tuple[float, float]]:
    spans: list[tuple[float, float]] = []
    lock = threading.Lock()

    def work() -> None:
        for _ in range(count):
            with limiter.slot(key, rate=rate, max_concurrency=concurrency, lease_seconds=10):
                entered = time.time()
                time.sleep(hold)
                left = time.time()
            with lock:
                spans.append((entered, left))

    workers = [threading.Thread(target=work) for _ in range(threads)]
    for worker in workers:
        worker.start()
    for worker in workers:
        worker.join(timeout=30)
    return spans


# --- rate ------------------------------------------------------------------------------------------

def test_threads_never_exceed_the_rate_in_any_one_second_window_and_use_most_of_it(limiter: LLMLimiter) -> None:
    # given 7 threads that each want 3 slots at once, under "10/second"
    # when they all take them (21 acquisitions, about 2 s at the limit)
    spans = hold_on_threads(limiter, "rate-threads", threads=7, count=3, rate="10/second", concurrency=100,
                            hold=0)
    stamps = sorted(entered for entered, _ in spans)
    # then no 1-second window holds more than 10, nor did they go faster than 10/s on average
    assert len(stamps) == 21
    assert max_in_window(stamps, 1.0 - JITTER) <= 10
    assert stamps[-1] - stamps[0] >= (len(stamps) - 1) / 10 - JITTER
    # and throughput is close to the limit
    assert (len(stamps) - 1) / (stamps[-1] - stamps[0]) >= 0.8 * 10


def test_separate_processes_share_one_rate(limiter: LLMLimiter) -> None:
    # given 3 OS processes that each want 7 slots as fast as they can, under one "10/second" key
    # when they are released together
    spans = run_children(3, limiter=limiter, key="rate-procs", rate="10/second", concurrency=100, threads=1,
                         count=7, hold=0)
    stamps = sorted(entered for entered, _ in spans)
    # then the limit held across processes (a per-process limiter would allow 30 in a second)
    assert len(stamps) == 21
    assert max_in_window(stamps, 1.0 - JITTER) <= 10
    assert stamps[-1] - stamps[0] >= (len(stamps) - 1) / 10 - JITTER
    # and together they still get close to the limit
    assert (len(stamps) - 1) / (stamps[-1] - stamps[0]) >= 0.8 * 10


# --- concurrency -----------------------------------------------------------------------------------

def test_threads_never_hold_more_than_max_concurrency_slots(limiter: LLMLimiter) -> None:
    # given 9 threads each holding a slot for 0.1 s, twice, with max_concurrency=3
    # when they all run
    spans = hold_on_threads(limiter, "conc-threads", threads=9, count=2, rate=FAST, concurrency=3, hold=0.1)
    # then exactly 3 held a slot at once at the busiest moment: never more, and the cap was reached
    assert len(spans) == 18
    assert max_overlap(spans) == 3
    # and every slot was given back
    assert limiter.in_flight("conc-threads") == 0


def test_separate_processes_share_one_concurrency_cap(limiter: LLMLimiter) -> None:
    # given 3 OS processes with 3 threads each, every holder keeping its slot for 0.1 s, cap 3
    # when they are released together
    spans = run_children(3, limiter=limiter, key="conc-procs", rate=FAST, concurrency=3, threads=3, count=2,
                         hold=0.1)
    # then at most 3 holders overlapped across all processes, and 3 did
    assert len(spans) == 18
    assert max_overlap(spans) == 3
    assert limiter.in_flight("conc-procs") == 0


# --- leases ----------------------------------------------------------------------------------------

def test_a_killed_holders_slot_is_freed_when_its_lease_expires(limiter: LLMLimiter) -> None:
    # given a process holding the only slot with a 0.8 s lease, killed with SIGKILL before releasing it
    with subprocess.Popen([sys.executable, "-c", CRASHER, settings.REDIS_URL, limiter.namespace, "crash", "0.8"],
                          cwd=ROOT, stdout=subprocess.PIPE, stderr=subprocess.PIPE, text=True) as proc:
        try:
            assert proc.stdout is not None and proc.stdout.readline().strip() == "held", proc.stderr
        finally:
            proc.kill()
    killed_at = time.monotonic()
    # then the dead holder's slot still counts for a while: a short wait gets nothing
    assert limiter.in_flight("crash") == 1
    with pytest.raises(LimiterTimeout), limiter.slot("crash", rate=FAST, max_concurrency=1, lease_seconds=5,
                                                     max_wait=0.1):
        pass
    # when a new caller waits longer than the lease
    with limiter.slot("crash", rate=FAST, max_concurrency=1, lease_seconds=5, max_wait=5):
        freed_after = time.monotonic() - killed_at
        # then it gets the slot once the lease has run out, not much later
        assert limiter.in_flight("crash") == 1
    assert freed_after < 0.8 + 0.5
    assert limiter.in_flight("crash") == 0


def test_a_context_never_exited_frees_its_slot_after_the_lease(limiter: LLMLimiter) -> None:
    # given a holder that entered its slot with a 0.4 s lease and never leaves (a hung or dead caller)
    with abandoned(limiter, "stuck", lease=0.4):
        started = time.monotonic()
        # when another caller asks for the only slot
        with limiter.slot("stuck", rate=FAST, max_concurrency=1, lease_seconds=5, max_wait=3) as waited:
            # then it waited out the lease, and got the slot
            assert waited >= 0.3 and time.monotonic() - started >= 0.35


def test_a_short_max_wait_raises_limiter_timeout_when_every_slot_is_taken(limiter: LLMLimiter) -> None:
    # given both slots held
    with limiter.slot("full", rate=FAST, max_concurrency=2, lease_seconds=5), \
            limiter.slot("full", rate=FAST, max_concurrency=2, lease_seconds=5):
        # when a third caller may wait only 0.1 s
        started = time.monotonic()
        with pytest.raises(LimiterTimeout), limiter.slot("full", rate=FAST, max_concurrency=2, lease_seconds=5,
                                                         max_wait=0.1):
            pass
        # then it gives up promptly, without taking a slot
        assert time.monotonic() - started < 1.0
        assert limiter.in_flight("full") == 2


def test_a_caller_waiting_for_a_lease_takes_no_rate_slot(limiter: LLMLimiter) -> None:
    # given the only lease held, under a slow rate (one request per second)
    with limiter.slot("queue", rate="1/second", max_concurrency=1, lease_seconds=5):
        tat = limiter.redis.get(f"{limiter.namespace}:gcra:queue")
        # when another caller waits for the lease and gives up
        with pytest.raises(LimiterTimeout), limiter.slot("queue", rate="1/second", max_concurrency=1,
                                                         lease_seconds=5, max_wait=0.2):
            pass
        # then the rate schedule is as the holder left it: the waiter reserved no request
        assert limiter.redis.get(f"{limiter.namespace}:gcra:queue") == tat


def test_a_caller_holding_a_lease_waits_for_its_rate_slot(limiter: LLMLimiter) -> None:
    # given a rate of 4 per second, and one request just granted
    with limiter.slot("spaced", rate="4/second", max_concurrency=5, lease_seconds=5):
        pass
    # when the next caller finds a free lease at once
    started = time.monotonic()
    with limiter.slot("spaced", rate="4/second", max_concurrency=5, lease_seconds=5):
        # then it holds its lease while it waits about a quarter second for the rate slot
        assert time.monotonic() - started >= 0.2
        assert limiter.in_flight("spaced") == 1
    assert limiter.in_flight("spaced") == 0


# --- in_flight ------------------------------------------------------------------------------------

def test_in_flight_counts_held_slots_and_drops_on_release_even_after_an_error(limiter: LLMLimiter) -> None:
    # given no holder
    assert limiter.in_flight("count") == 0
    # when two slots are held
    with limiter.slot("count", rate=FAST, max_concurrency=5, lease_seconds=5):
        with limiter.slot("count", rate=FAST, max_concurrency=5, lease_seconds=5):
            # then both count, and a different key is unaffected
            assert limiter.in_flight("count") == 2
            assert limiter.in_flight("other") == 0
        assert limiter.in_flight("count") == 1
    assert limiter.in_flight("count") == 0
    # when the body of a slot raises
    with pytest.raises(RuntimeError), limiter.slot("count", rate=FAST, max_concurrency=5, lease_seconds=5):
        assert limiter.in_flight("count") == 1
        raise RuntimeError("the LLM call failed")
    # then the slot was still given back
    assert limiter.in_flight("count") == 0


def test_in_flight_does_not_count_an_expired_lease(limiter: LLMLimiter) -> None:
    # given a holder whose 0.2 s lease has run out without a release
    with abandoned(limiter, "expired", lease=0.2):
        time.sleep(0.4)
        # when in_flight is asked before anyone acquires again
        # then the expired lease is not reported as held
        assert limiter.in_flight("expired") == 0


# --- token budgets and the provider's stated limits -------------------------------------------------

def _grants(limiter: LLMLimiter, key: str, *, n: int, threads: int, cost: Cost, limits: TokenLimits,
            rate: str | None = FAST, settle_to: Cost | None = None) -> list[float]:
    """Take n slots on `threads` threads; returns the grant times (settling each to `settle_to`)."""
    stamps: list[float] = []
    lock = threading.Lock()
    left = iter(range(n))

    def work() -> None:
        while True:
            with lock:
                if next(left, None) is None:
                    return
            with limiter.slot(key, rate=rate, max_concurrency=threads, lease_seconds=10, cost=cost, limits=limits):
                with lock:
                    stamps.append(time.time())
            if settle_to is not None:
                limiter.settle(key, reserved=cost, used=settle_to, rate=rate, limits=limits)

    workers = [threading.Thread(target=work) for _ in range(threads)]
    for worker in workers:
        worker.start()
    for worker in workers:
        worker.join(timeout=60)
    return sorted(stamps)


def test_token_reservations_never_exceed_the_budget_in_any_second_and_use_most_of_it(limiter: LLMLimiter) -> None:
    # given 60,000 tokens a minute (1,000 a second) and calls that reserve 100 each, on 6 threads
    stamps = _grants(limiter, "tok", n=30, threads=6, cost=Cost(tokens=100), limits=TokenLimits(tokens=60_000))
    # then no one-second window holds more than 1,000 tokens (10 calls) plus the call that opens it
    assert max_in_window(stamps, 1.0 - JITTER) <= 11
    # and the budget is used: 30 calls take about 2.9 s, not much more
    assert 2.6 <= stamps[-1] - stamps[0] <= 3.6


def test_settling_to_the_reported_usage_gives_back_what_was_reserved_and_not_used(limiter: LLMLimiter) -> None:
    limits = TokenLimits(tokens=60_000)
    # reserving 500 (prompt + max_tokens) but using 100: without settling, 12 calls need ~5.5 s
    unsettled = _grants(limiter, "unsettled", n=12, threads=2, cost=Cost(tokens=500), limits=limits)
    settled = _grants(limiter, "settled", n=12, threads=2, cost=Cost(tokens=500), limits=limits,
                      settle_to=Cost(tokens=100))
    assert unsettled[-1] - unsettled[0] >= 5.0
    assert settled[-1] - settled[0] <= 2.5


def test_input_and_output_budgets_bind_separately(limiter: LLMLimiter) -> None:
    # the output budget (600/min = 10/s) binds for calls reserving 5 output tokens: 2 calls a second
    stamps = _grants(limiter, "io", n=6, threads=3, cost=Cost(tokens=105, input_tokens=100, output_tokens=5),
                     limits=TokenLimits(input_tokens=1_000_000, output_tokens=600))
    assert 2.3 <= stamps[-1] - stamps[0] <= 3.2


def test_the_providers_stated_limit_applies_when_lower_and_the_configured_one_stays_a_ceiling(
        limiter: LLMLimiter) -> None:
    cost = Cost(tokens=100)
    # the provider says 120 requests a minute: 2 a second, whatever nothing was configured
    limiter.observe("adopt", {"x-ratelimit-limit-requests": "120", "x-ratelimit-remaining-requests": "119",
                              "x-ratelimit-reset-requests": "500ms"}, cost=cost)
    stamps = _grants(limiter, "adopt", n=5, threads=2, cost=cost, limits=TokenLimits(), rate=None)
    assert stamps[-1] - stamps[0] >= 4 * 0.5 - JITTER
    assert limiter.provider_limits("adopt") == {"requests": 120}
    # a provider that allows far more than the configured 4/second does not raise it
    limiter.observe("ceiling", {"x-ratelimit-limit-requests": "60000", "x-ratelimit-remaining-requests": "59999",
                                "x-ratelimit-reset-requests": "1ms"}, cost=cost)
    stamps = _grants(limiter, "ceiling", n=5, threads=2, cost=cost, limits=TokenLimits(), rate="4/second")
    assert stamps[-1] - stamps[0] >= 4 * 0.25 - JITTER


def test_a_spent_budget_holds_every_caller_until_the_provider_has_room(limiter: LLMLimiter) -> None:
    cost = Cost(tokens=100)
    # remaining 0 and full in 61 s at 60,000/min: 1,000 below zero, so 1 s + one call's 0.1 s to wait
    limiter.observe("spent", {"x-ratelimit-limit-tokens": "60000", "x-ratelimit-remaining-tokens": "0",
                              "x-ratelimit-reset-tokens": "1m1s"}, cost=cost)
    started = time.monotonic()
    with limiter.slot("spent", rate=None, max_concurrency=2, lease_seconds=5, cost=cost, limits=TokenLimits()):
        waited = time.monotonic() - started
    assert 1.0 <= waited <= 1.6


def test_a_429s_retry_after_holds_every_caller(limiter: LLMLimiter) -> None:
    limiter.observe("refused", {}, cost=Cost(tokens=10), retry_after=1.0)
    started = time.monotonic()
    with limiter.slot("refused", rate=FAST, max_concurrency=2, lease_seconds=5, cost=Cost(tokens=10)):
        assert time.monotonic() - started >= 0.95


def test_with_nothing_configured_one_call_goes_first_to_learn_the_limits(limiter: LLMLimiter) -> None:
    unlimited = {"rate": None, "max_concurrency": 4, "lease_seconds": 5, "cost": Cost(tokens=10),
                 "limits": TokenLimits()}
    with limiter.slot("probe", **unlimited):
        # a second caller waits while the first is out, because nothing says what the limits are
        with pytest.raises(LimiterTimeout), limiter.slot("probe", max_wait=0.3, **unlimited):
            pass
        # once an answer came back (even one without headers), the in-flight cap applies again
        limiter.observe("probe", {}, cost=Cost(tokens=10))
        with limiter.slot("probe", max_wait=0.3, **unlimited), limiter.slot("probe", max_wait=0.3, **unlimited):
            pass


def test_unusable_headers_fall_back_to_the_configured_limits_and_are_logged_once(
        limiter: LLMLimiter, caplog: pytest.LogCaptureFixture) -> None:
    azure = {"x-ratelimit-limit-tokens": "-1", "x-ratelimit-remaining-tokens": "-1", "x-ratelimit-reset-tokens": "0"}
    with caplog.at_level("WARNING", logger="negotiation.agents.limiter"):
        for _ in range(3):
            assert limiter.observe("azure", azure, cost=Cost(tokens=10)) == {}
    assert len([r for r in caplog.records if "limit '-1'" in r.getMessage()]) == 1
    assert limiter.provider_limits("azure") == {}
    # nothing stalls: the configured 20/second still paces the calls
    stamps = _grants(limiter, "azure", n=5, threads=2, cost=Cost(tokens=10), limits=TokenLimits(), rate="20/second")
    assert stamps[-1] - stamps[0] <= 0.5


def _redis_now(limiter: LLMLimiter) -> float:
    seconds, micros = limiter.redis.time()
    return seconds + micros / 1_000_000


def test_a_caller_that_wakes_a_little_late_does_not_slip_the_request_schedule(limiter: LLMLimiter) -> None:
    from negotiation.agents.limiter import REQUEST_LATENESS_SECONDS

    schedule = limiter._keys("late")[1]
    interval = 1 / 20

    def grant_after(lateness: float) -> tuple[float, float]:
        due = _redis_now(limiter) - lateness  # the slot was due `lateness` ago: the caller woke late
        limiter.redis.set(schedule, f"{due:.6f}")
        with limiter.slot("late", rate="20/second", max_concurrency=4, lease_seconds=5, share=1.0,
                          configured_share=1.0):
            pass
        return due, float(limiter.redis.get(schedule))

    # a few ms late (a thread's wake-up): the next slot is one interval after the one due, not after now
    due, next_due = grant_after(0.004)
    assert next_due == pytest.approx(due + interval, abs=1e-4)
    # later than the lateness allowance: the schedule ran dry; it restarts from now (see the next test)
    before = _redis_now(limiter)
    _, next_due = grant_after(REQUEST_LATENESS_SECONDS + 0.005)
    assert before + interval - 1e-4 <= next_due <= _redis_now(limiter) + 2 * interval + 1e-4


def test_a_schedule_that_ran_dry_restarts_one_interval_later_so_a_stalled_grant_cannot_crowd_a_window(
        limiter: LLMLimiter) -> None:
    # given a 20/second schedule whose last grant was due 200 ms ago and never followed: the worker that
    # holds it may have stalled before sending it (make bench phase B saw 150-300 ms stalls), so it may
    # reach the provider only now, together with the request granted next
    schedule = limiter._keys("dry")[1]
    interval = 1 / 20
    limiter.redis.set(schedule, f"{_redis_now(limiter) - 0.2:.6f}")
    # when the next caller takes its slot (at once: nothing is waiting)
    before = _redis_now(limiter)
    with limiter.slot("dry", rate="20/second", max_concurrency=4, lease_seconds=5, share=1.0, configured_share=1.0):
        pass
    after = _redis_now(limiter)
    # then the one after it is due two intervals on, not one: with one, the stalled request and the
    # 20 that follow it would arrive within 19 intervals, 21 in one second (a 429 at a 20/second limit)
    assert before + 2 * interval - 1e-4 <= float(limiter.redis.get(schedule)) <= after + 2 * interval + 1e-4
    # and the schedule it restarted goes on one interval at a time
    with limiter.slot("dry", rate="20/second", max_concurrency=4, lease_seconds=5, share=1.0, configured_share=1.0):
        granted = _redis_now(limiter)
    assert granted >= before + 2 * interval - 0.002


def test_a_configured_limit_is_paced_at_its_share_so_the_providers_window_keeps_slack(limiter: LLMLimiter) -> None:
    from negotiation.agents.limiter import CONFIGURED_LIMIT_SHARE

    # given the provider's real limit configured as it is, 20/second, and the default share (0.97)
    assert settings.LLM_CONFIGURED_LIMIT_SHARE == CONFIGURED_LIMIT_SHARE == 0.97
    schedule = limiter._keys("share")[1]
    due = _redis_now(limiter)
    limiter.redis.set(schedule, f"{due:.6f}")
    # when a caller takes the slot that is due
    with limiter.slot("share", rate="20/second", max_concurrency=4, lease_seconds=5, share=0.99):
        pass
    # then the next is due 1/(20 × 0.97) s later: 21 grants span 1.031 s, 31 ms of slack a second for the
    # jitter between a grant and its arrival (at the full rate they would span exactly 1 s: no slack)
    assert float(limiter.redis.get(schedule)) == pytest.approx(due + 1 / (20 * 0.97), abs=1e-4)
    # and threads that want more than that get that rate: 81 intervals span 4.175 s at 19.4/s, 4.05 s at
    # 20/s; the bound between them (19.7/s) leaves 60 ms for a thread that stamps its grant late
    stamps = _grants(limiter, "share-threads", n=82, threads=6, cost=Cost(), limits=TokenLimits(), rate="20/second")
    rate = (len(stamps) - 1) / (stamps[-1] - stamps[0])
    assert 0.9 * 20 * 0.97 <= rate <= 19.7, f"{rate:.2f}/s"


def test_a_configured_token_limit_is_paced_at_its_share_too(limiter: LLMLimiter) -> None:
    # given 60,000 tokens a minute configured and a call of 1,000 (one second of the budget)
    schedule = limiter._keys("share-tok")[2]
    due = _redis_now(limiter)
    limiter.redis.set(schedule, f"{due:.6f}")
    with limiter.slot("share-tok", rate=None, max_concurrency=4, lease_seconds=5, cost=Cost(tokens=1000),
                      limits=TokenLimits(tokens=60_000), configured_share=0.97):
        pass
    # then it takes 1/0.97 s of the schedule
    assert float(limiter.redis.get(schedule)) == pytest.approx(due + 1 / 0.97, abs=1e-3)


@pytest.mark.parametrize("share", [0, -0.5, 1.01])
def test_a_configured_share_outside_0_to_1_is_refused(limiter: LLMLimiter, share: float) -> None:
    with pytest.raises(ValueError, match="share"), limiter.slot("bad-share", rate="20/second", max_concurrency=1,
                                                                lease_seconds=5, configured_share=share):
        pass


def test_a_request_sent_late_after_its_slot_takes_a_fresh_one_and_waits_for_it(limiter: LLMLimiter) -> None:
    from negotiation.agents.limiter import LATE_SEND_SECONDS, hold_if_late

    schedule = limiter._keys("late-send")[1]
    interval = 1 / 20
    kwargs: dict = {"rate": "20/second", "max_concurrency": 4, "lease_seconds": 5, "share": 1.0,
                    "configured_share": 1.0}
    # on time: a request that goes on the wire right after its grant keeps its slot, at no Redis cost
    limiter.redis.set(schedule, f"{_redis_now(limiter):.6f}")
    with limiter.slot("late-send", **kwargs):
        due = float(limiter.redis.get(schedule))
        assert hold_if_late() == 0.0
    assert float(limiter.redis.get(schedule)) == due and limiter.late_sends("late-send") == 0
    # given a slot granted when due, and its request held back past LATE_SEND_SECONDS before the wire
    # (a worker stall: it would reach the provider in a later slot than it was given)
    limiter.redis.set(schedule, f"{_redis_now(limiter):.6f}")
    with limiter.slot("late-send", **kwargs):
        next_due = float(limiter.redis.get(schedule))
        time.sleep(LATE_SEND_SECONDS + 0.02)  # the deliberate stall
        # when it is about to go out
        held = hold_if_late()
        sent = _redis_now(limiter)
        # then it took the next slot of the schedule and waited for it (nobody else had taken it), and
        # the schedule moved one interval on, so the slots after it make room for it
        assert 0 < held <= interval
        assert sent >= next_due - 0.002
        assert float(limiter.redis.get(schedule)) == pytest.approx(next_due + interval, abs=1e-4)
        assert limiter.late_sends("late-send") == 1
        # and the check is made once per slot
        assert hold_if_late() == 0.0
    # outside a slot there is nothing to check
    assert hold_if_late() == 0.0
    # and the next requests, on time, keep their slots (the fresh slot's wait is not taken for lateness)
    for _ in range(3):
        with limiter.slot("late-send", **kwargs):
            assert hold_if_late() == 0.0
    assert limiter.late_sends("late-send") == 1


def test_a_late_request_whose_schedule_ran_dry_takes_a_slot_from_now(limiter: LLMLimiter) -> None:
    from negotiation.agents.limiter import LATE_SEND_SECONDS, hold_if_late

    schedule = limiter._keys("late-dry")[1]
    limiter.redis.set(schedule, f"{_redis_now(limiter):.6f}")
    with limiter.slot("late-dry", rate="20/second", max_concurrency=4, lease_seconds=5, share=1.0,
                      configured_share=1.0):
        time.sleep(max(LATE_SEND_SECONDS, 1 / 20) + 0.02)  # the deliberate stall, past its next slot too
        before = _redis_now(limiter)
        assert hold_if_late() == 0.0  # its fresh slot is now: no wait
        after = _redis_now(limiter)
    assert before + 1 / 20 - 1e-4 <= float(limiter.redis.get(schedule)) <= after + 1 / 20 + 1e-4
    assert limiter.late_sends("late-dry") == 1


def test_a_redis_error_while_taking_a_fresh_slot_never_fails_the_call(
        limiter: LLMLimiter, monkeypatch: pytest.MonkeyPatch, caplog: pytest.LogCaptureFixture) -> None:
    import redis as redis_lib

    from negotiation.agents.limiter import LATE_SEND_SECONDS, hold_if_late

    def broken(**_: object) -> None:
        raise redis_lib.ConnectionError("Redis went away")

    monkeypatch.setattr(limiter, "_regrant", broken)
    for _ in range(2):
        with limiter.slot("late-broken", rate="20/second", max_concurrency=4, lease_seconds=5, share=1.0):
            time.sleep(LATE_SEND_SECONDS + 0.01)  # the deliberate stall
            assert hold_if_late() == 0.0  # the request goes as it is
    assert len([r for r in caplog.records if "could not take a fresh slot" in r.getMessage()]) == 1

"""The global LLM limiter, shared by every worker process on every host through Redis.

Celery's `rate_limit` counts per worker, so N workers would send N times the provider's limit.
Here each (profile, model) has two limits held in Redis:

- a request rate ("20/second", "600/minute": parsed by the `limits` library), enforced as a
  GCRA schedule: requests are spaced evenly, one every period/N, instead of being let through in
  bursts. A moving window lets N requests leave at once and N more the instant they expire, and
  loopback jitter of a few milliseconds then puts N+1 inside the provider's own window (429s were
  measured that way); even spacing leaves a whole interval of slack on every request;
- a cap on calls in flight: a lease set (a sorted set of tokens scored by expiry), so a worker
  killed mid-call frees its slot when the lease runs out.

A caller takes its concurrency slot first and its rate slot last, so the request leaves the
moment its rate slot is granted; when both are free, one script takes both in one round trip.
The scripts read the Redis server's clock, so hosts with skewed clocks still agree.
"""

from __future__ import annotations

import random
import time
import uuid
from collections.abc import Iterator
from contextlib import contextmanager
from functools import lru_cache

import redis
from limits import parse

# The scripts are built from shared parts, so the lease and the GCRA logic exist once.
_NOW = """
local t = redis.call('TIME')
local now = tonumber(t[1]) + tonumber(t[2]) / 1000000
"""

# The lease set KEYS[1] (tokens scored by expiry); ARGV[1..3] = lease seconds, limit, token.
# Returns `{full}` when every slot is held; otherwise takes one and goes on.
_LEASE = """
redis.call('ZREMRANGEBYSCORE', KEYS[1], '-inf', now)
if redis.call('ZCARD', KEYS[1]) >= tonumber(ARGV[2]) then
  return {full}
end
redis.call('ZADD', KEYS[1], now + tonumber(ARGV[1]), ARGV[3])
redis.call('EXPIRE', KEYS[1], math.ceil(tonumber(ARGV[1])) + 1)
"""

# GCRA on the theoretical arrival time KEYS[{k}]; ARGV[{i}], ARGV[{i} + 1] = emission interval (s),
# burst (>= 1). Returns "0" when granted, else the seconds to wait (as a string: Lua numbers become
# integers).
_GCRA = """
local interval = tonumber(ARGV[{i}])
local tau = (tonumber(ARGV[{i} + 1]) - 1) * interval
local tat = tonumber(redis.call('GET', KEYS[{k}]) or '0')
if tat < now then tat = now end
if now < tat - tau then
  return tostring(tat - tau - now)
end
local new_tat = tat + interval
redis.call('SET', KEYS[{k}], string.format('%.6f', new_tat), 'PX', math.ceil((new_tat - now) * 1000) + 1000)
return '0'
"""

# KEYS[1] = lease set; ARGV = lease seconds, limit, token. Returns 1 when a lease was taken, else 0.
_ACQUIRE_SLOT = _NOW + _LEASE.format(full="0") + "return 1\n"

# KEYS[1] = theoretical arrival time; ARGV = emission interval (s), burst (>= 1).
_ACQUIRE_RATE = _NOW + _GCRA.format(k=1, i=1)

# Both at once, the common case in one round trip: the lease as _ACQUIRE_SLOT, then (only if it was
# taken) the rate slot as _ACQUIRE_RATE. KEYS = lease set, TAT; ARGV = lease seconds, limit, token,
# interval, burst. Returns "-1" when no lease was free (nothing held), "0" when both are held, else
# the seconds to wait for the rate slot while the lease is held (the caller then polls _ACQUIRE_RATE).
_ACQUIRE_BOTH = _NOW + _LEASE.format(full="'-1'") + _GCRA.format(k=2, i=4)


class LimiterTimeout(Exception):
    """No slot within the wait budget; the caller treats it as a transient error."""


def emission_interval(rate: str) -> float:
    """Seconds between two requests for a rate such as "20/second" or "1200 per minute"."""
    item = parse(rate)
    return item.get_expiry() / item.amount


class LLMLimiter:
    def __init__(self, redis_url: str, *, namespace: str = "mams:llm") -> None:
        self.namespace = namespace
        self.redis = redis.Redis.from_url(redis_url)
        self._slot = self.redis.register_script(_ACQUIRE_SLOT)
        self._rate = self.redis.register_script(_ACQUIRE_RATE)
        self._both = self.redis.register_script(_ACQUIRE_BOTH)

    @contextmanager
    def slot(self, key: str, *, rate: str, max_concurrency: int, lease_seconds: float,
             max_wait: float = 300.0, burst: int = 1) -> Iterator[float]:
        """Hold one concurrency slot and one rate slot for `key`; yields the seconds waited."""
        started = time.monotonic()
        deadline = started + max_wait
        token = uuid.uuid4().hex
        lease_key = f"{self.namespace}:inflight:{key}"
        rate_key = f"{self.namespace}:gcra:{key}"
        interval = emission_interval(rate)
        # First try both in one round trip (a turn's usual case); while no lease is free, wait for
        # one alone, so a waiting caller never takes a rate slot it cannot use.
        wait = float(self._both(keys=[lease_key, rate_key],
                                args=[lease_seconds, max_concurrency, token, interval, burst]))
        if wait < 0:
            while not self._slot(keys=[lease_key], args=[lease_seconds, max_concurrency, token]):
                _nap(deadline, 0.005, 0.02)
        try:
            if wait < 0:
                wait = float(self._rate(keys=[rate_key], args=[interval, burst]))
            while wait > 0:
                _nap(deadline, wait, 0.002)
                wait = float(self._rate(keys=[rate_key], args=[interval, burst]))
            yield time.monotonic() - started
        finally:
            try:
                self.redis.zrem(lease_key, token)
            except redis.RedisError:
                pass  # Redis went away during the call: the lease expires by itself; keep the answer

    def in_flight(self, key: str) -> int:
        """Slots held now: leases not yet expired by the Redis server's clock."""
        seconds, micros = self.redis.time()
        now = seconds + micros / 1_000_000
        return int(self.redis.zcount(f"{self.namespace}:inflight:{key}", f"({now}", "+inf"))


def _nap(deadline: float, base: float, jitter: float) -> None:
    if time.monotonic() > deadline:
        raise LimiterTimeout("waited too long for an LLM slot")
    time.sleep(min(base, 1.0) + random.uniform(0, jitter))


@lru_cache(maxsize=4)
def limiter_for(redis_url: str) -> LLMLimiter:
    return LLMLimiter(redis_url)

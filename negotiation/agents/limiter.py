"""The global LLM limiter, shared by every worker process on every host through Redis.

Celery's `rate_limit` counts per worker, so N workers would send N times the provider's limit.
Here each (profile, model) has two limits held in Redis: a moving-window request rate (the
`limits` library's moving window, e.g. "20/second" or "600/minute") and a cap on calls in flight
(a lease set: a sorted set of tokens scored by expiry, so a worker killed mid-call frees its slot
when the lease runs out). A caller takes a concurrency slot first and the rate token last, so the
request leaves the moment its token is granted and tokens are never spent while waiting.
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
from limits.storage import storage_from_string
from limits.strategies import MovingWindowRateLimiter

# KEYS[1] = lease set; ARGV = lease seconds, limit, token. Uses the server clock so hosts with
# skewed clocks still agree.
_ACQUIRE = """
local t = redis.call('TIME')
local now = tonumber(t[1]) + tonumber(t[2]) / 1000000
redis.call('ZREMRANGEBYSCORE', KEYS[1], '-inf', now)
if redis.call('ZCARD', KEYS[1]) < tonumber(ARGV[2]) then
  redis.call('ZADD', KEYS[1], now + tonumber(ARGV[1]), ARGV[3])
  redis.call('EXPIRE', KEYS[1], math.ceil(tonumber(ARGV[1])) + 1)
  return 1
end
return 0
"""


class LimiterTimeout(Exception):
    """No slot within the wait budget; the caller treats it as a transient error."""


class LLMLimiter:
    def __init__(self, redis_url: str, *, namespace: str = "mams:llm") -> None:
        self.namespace = namespace
        self.redis = redis.Redis.from_url(redis_url)
        self._acquire = self.redis.register_script(_ACQUIRE)
        self.window = MovingWindowRateLimiter(storage_from_string(redis_url))

    @contextmanager
    def slot(self, key: str, *, rate: str, max_concurrency: int, lease_seconds: float,
             max_wait: float = 300.0) -> Iterator[float]:
        """Hold one concurrency slot and one rate token for `key`; yields the seconds waited."""
        started = time.monotonic()
        deadline = started + max_wait
        token = uuid.uuid4().hex
        lease_key = f"{self.namespace}:inflight:{key}"
        while not self._acquire(keys=[lease_key], args=[lease_seconds, max_concurrency, token]):
            _nap(deadline, 0.005, 0.02)
        try:
            item = parse(rate)
            while not self.window.hit(item, self.namespace, key):
                reset_at, _ = self.window.get_window_stats(item, self.namespace, key)
                _nap(deadline, max(0.002, reset_at - time.time()), 0.005)
            yield time.monotonic() - started
        finally:
            self.redis.zrem(lease_key, token)

    def in_flight(self, key: str) -> int:
        return int(self.redis.zcard(f"{self.namespace}:inflight:{key}"))


def _nap(deadline: float, base: float, jitter: float) -> None:
    if time.monotonic() > deadline:
        raise LimiterTimeout("waited too long for an LLM slot")
    time.sleep(min(base, 1.0) + random.uniform(0, jitter))


@lru_cache(maxsize=4)
def limiter_for(redis_url: str) -> LLMLimiter:
    return LLMLimiter(redis_url)

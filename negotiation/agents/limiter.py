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

Tokens are budgets too (real providers limit tokens per minute, and Anthropic input and output
tokens separately): each is a GCRA schedule whose step is the call's cost, so a call reserves its
expected tokens (prompt estimate + max_tokens) before it leaves, atomically with its request slot,
and `settle` moves the schedule by what the answer really used, so the budget never drifts.
The limits in force are the configured ones and the ones the provider last stated in its headers
(`observe`, shared in Redis), whichever is lower, each taken at its share: the provider's at `share`
(0.99: a stated limit is per minute, where 1% is 600 ms of slack) and the configured ones at
`configured_share` (0.97, see CONFIGURED_LIMIT_SHARE: a user writes the provider's real limit, and
a "20/second" window needs tens of ms of slack for the jitter between a grant here and the request's
arrival there). A user who configured nothing, or too much, runs at the provider's real limit.
When nothing is configured and the provider has not answered yet, one call goes first to learn the
limits. A budget the provider says is spent (remaining below a call, or a 429's
Retry-After) pushes its schedule to when the provider will have room again, for every worker.

A request granted on time can still leave late: its worker stalls (150 ms on a busy host) between
the grant and the moment the HTTP client writes it, and it then reaches the provider inside a later
window, on top of the requests granted on schedule there (a 429 at a 20/second limit). The gateway's
HTTP client calls `hold_if_late` right before each request goes on the wire; a request later than
LATE_SEND_SECONDS after its slot gives its slot up and takes a fresh one (see _REGRANT), so every
request that reaches the provider left within LATE_SEND_SECONDS of a slot of one GCRA schedule.
Lateness is measured on the Redis clock (the slot) against this host's clock at the send, through an
offset taken from the recent replies, so it holds across hosts. Token budgets are not moved: their
windows are a minute, where the share leaves 600 ms or more of slack, far beyond a stall.
"""

from __future__ import annotations

import logging
import random
import threading
import time
import uuid
from collections import deque
from collections.abc import Iterator, Mapping
from contextlib import contextmanager
from contextvars import ContextVar
from dataclasses import dataclass
from functools import lru_cache
from typing import Any

import redis
from limits import parse

from negotiation.agents import ratelimit_headers

log = logging.getLogger(__name__)
TOKEN_RESOURCES = ("tokens", "input_tokens", "output_tokens")
# How far (seconds of a token budget) a refund may take a schedule below the clock. A call reserves
# prompt + max_tokens and gives back the unused part when its answer arrives, by which time the
# schedule has often caught up with the clock; without credit that refund would be lost and the
# budget would be spent at the reserved rate, not the used one (measured: 0.67 of a binding token
# limit). One second of credit covers the refunds of the calls in flight at a few hundred ms each,
# and refunds that land while a caller sleeps out its computed wait; it lets at most one second's
# worth of tokens go early (after a pause of under a second), well inside a per-minute bucket.
TOKEN_CREDIT_SECONDS = 1.0
# How late (seconds) a caller may take its request slot without the schedule slipping: a caller
# sleeps until its slot is due and wakes a few ms after it (thread wake-up, the GIL, a loaded host);
# resetting the schedule to "now" on every grant lost that lateness each time, so the limiter ran
# below its configured rate (make bench phase B, 19/s configured for a 20/s provider, on a loaded
# host: 0.85 and 0.89 of the provider's limit; kept on schedule: 0.94 and 0.93). The price: any
# run of consecutive grants spans at least its intervals minus this (capped at a quarter interval),
# so a rate configured with margin under the provider's (19/s for 20/s: 52 ms a second) keeps all
# but this much of it.
REQUEST_LATENESS_SECONDS = 0.010
# The share of a configured limit the limiter paces at. A request is granted here and arrives at the
# provider some ms later, and that delay varies: evenly spaced at exactly N per window, N+1 grants
# span exactly the window, so any jitter puts N+1 inside the provider's moving window (a 429). At 0.97
# a 20/second limit keeps 31 ms a window (1/0.97 - 1 s): make bench phase B (fake provider with a hard
# 20-per-second window, MAMS configured at 20/second, 2,100 calls) measured grant-to-arrival delays of
# 4.8 ms median, 27.9 ms at p99.9, and jitter taking at most 15-17.5 ms of the 31 (0 429s, 0.958-0.964
# of the provider's limit) at load average 1-2; on a host at load 3.8, 100 ms stalls got through (7
# 429s; perf/README.md) until a request that leaves late takes a fresh slot (LATE_SEND_SECONDS).
# Overridden by MAMS_LLM_CONFIGURED_LIMIT_SHARE (mams/settings/base.py).
CONFIGURED_LIMIT_SHARE = 0.97
# How late (seconds after its slot) a request may go on the wire and keep its slot. Why this is
# enough: GCRA slots are at least one interval apart, so N+1 consecutive slots span at least N
# intervals, W/share for a limit of N per window W (1.031 s at 20/second and 0.97: 31 ms of slack).
# If every request reaches the provider between its slot and ε after it, any N+1 arrivals span at
# least N intervals minus ε, more than W while ε is under the slack: no window holds N+1. A request's
# ε is its lateness at the send (this, at most) plus the last hop (the HTTP client's write, loopback,
# the provider's accept), so 15 ms leaves 16 ms of the 31 for the hop. Measured (make bench phase B,
# 2,100 calls a run): slot to send median 4-5 ms, p99.9 13-15 ms; send to the fake's arrival stamp
# median 3-4 ms, p99.9 13-21 ms; slot to arrival at most 24-28 ms, 32-33 ms with both cores busy and
# still 0 429s there (perf/README.md). A request later than this takes a fresh slot (_REGRANT): its
# old slot is left unused, which can only empty a window, and the fresh one is an ordinary GCRA grant,
# so the argument holds for it as for any other, whatever the stall and however many late requests
# there are. The price is one interval of the schedule per late request (0-3 of 2,100 at normal load,
# 17-23 with both cores busy): throughput drops only when workers stall.
LATE_SEND_SECONDS = 0.015
# At most this many fresh slots for one request (each taken when the one before was missed too: the
# caller woke late from its wait); after that it goes as it is, logged once. On a host that busy,
# the share (MAMS_LLM_CONFIGURED_LIMIT_SHARE) is the remedy.
LATE_SEND_RETRIES = 3
# How far back (seconds) replies count for the offset between this host's clock and Redis's (`_local`).
OFFSET_SECONDS = 10.0

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


# The multi-budget form. KEYS = lease set, limits hash, then the schedules of requests, tokens,
# input tokens, output tokens. ARGV = lease seconds, limit, token, take lease (1/0), share, burst,
# configured request interval (0: none), configured tokens/input/output per minute (0: none), the
# call's tokens/input/output cost, probe (1: nothing configured), token credit (seconds, see _SETTLE),
# request lateness (seconds, see REQUEST_LATENESS_SECONDS).
# The interval of each budget is the larger of the configured one and the provider's (from the
# limits hash, at `share`). Returns {status, lateness,
# clock}: status "-1" when no lease was free (nothing held), "0" when the lease (if asked) and every
# budget are held, else the seconds to wait for the budgets while the lease is held; budgets are taken
# all or none. Lateness: on a grant, seconds from the request slot to now (-1: no request rate); and
# the server's clock.
_INTERVALS = """
local share = tonumber(ARGV[5])
local adopted = redis.call('HMGET', KEYS[2], 'requests', 'tokens', 'input_tokens', 'output_tokens', 'seen')
local function interval(configured, provider)
  local iv = configured
  if provider and tonumber(provider) and tonumber(provider) > 0 then
    iv = math.max(iv, 60 / (tonumber(provider) * share))
  end
  return iv
end
local ivs = {interval(tonumber(ARGV[7]), adopted[1])}
for i = 2, 4 do
  local per_minute = tonumber(ARGV[6 + i])
  ivs[i] = interval(per_minute > 0 and 60 / per_minute or 0, adopted[i])
end
"""
_ACQUIRE_BUDGETS = _NOW + _INTERVALS + """
if ARGV[4] == '1' then
  local limit = tonumber(ARGV[2])
  if ARGV[14] == '1' and not adopted[5] then limit = 1 end
  redis.call('ZREMRANGEBYSCORE', KEYS[1], '-inf', now)
  if redis.call('ZCARD', KEYS[1]) >= limit then
    return {'-1', '-1', '0'}
  end
  redis.call('ZADD', KEYS[1], now + tonumber(ARGV[1]), ARGV[3])
  redis.call('EXPIRE', KEYS[1], math.ceil(tonumber(ARGV[1])) + 1)
end
local costs = {1, tonumber(ARGV[11]), tonumber(ARGV[12]), tonumber(ARGV[13])}
local tats = {}
-- A request schedule that ran dry restarts with one interval more after its first grant. The grant
-- before it may not have reached the provider yet: a worker process that stalls (measured: 150-300 ms
-- on a busy host) sends it late, together with this one, and without the extra interval the next
-- window would hold one request more than the schedule meant (a 429 at a 20/second limit).
local restart = 0
local wait = 0
for i = 1, 4 do
  if ivs[i] > 0 and costs[i] > 0 then
    -- A token schedule stored below the clock holds refund credit (see _SETTLE); a missing one is now.
    local tat = tonumber(redis.call('GET', KEYS[2 + i]) or '0')
    local floor = now
    if i > 1 and tat > 0 then floor = now - tonumber(ARGV[15]) end
    -- the request schedule keeps its time when the caller it granted woke a little late (see
    -- REQUEST_LATENESS_SECONDS), so callers' wake-up delays do not slow it below the configured rate;
    -- later than that it ran dry and restarts from now, one interval later (see `restart` above)
    if i == 1 and tat > 0 then
      floor = now - math.min(tonumber(ARGV[16]), ivs[1] / 4)
      if tat < floor then
        floor = now
        restart = ivs[1]
      end
    end
    if tat < floor then tat = floor end
    local tau = 0
    if i == 1 then tau = (tonumber(ARGV[6]) - 1) * ivs[1] end
    if now < tat - tau then wait = math.max(wait, tat - tau - now) end
    tats[i] = tat
  end
end
if wait > 0 then return {tostring(wait), '-1', '0'} end
for i = 1, 4 do
  if tats[i] then
    local new_tat = tats[i] + costs[i] * ivs[i]
    if i == 1 then new_tat = new_tat + restart end
    local ttl = math.ceil((new_tat - now) * 1000) + 1000
    if i > 1 then
      -- a token schedule outlives its time by the credit, so a refund that lands after it was due
      -- (or before a waiting caller wakes) is kept; at most the credit's worth can go early
      ttl = math.max(0, math.ceil((new_tat - now) * 1000)) + math.ceil(tonumber(ARGV[15]) * 1000)
    end
    redis.call('SET', KEYS[2 + i], string.format('%.6f', new_tat), 'PX', ttl)
  end
end
-- granted: how late after its slot (seconds, for `hold_if_late`; -1: no request rate in force), and now
local stamp = string.format('%.6f', now)
if tats[1] then return {'0', tostring(math.max(0, now - tats[1])), stamp} end
return {'0', '-1', stamp}
"""

# KEYS = limits hash, then the schedules of requests, tokens, input, output tokens (as above);
# ARGV[1..14] as above (only 5..10 are read), ARGV[15..17] = tokens/input/output actually used minus
# reserved, ARGV[18] = token credit (seconds). Moves each token schedule by that many tokens' worth of its interval.
_SETTLE = _NOW + _INTERVALS.replace("KEYS[2]", "KEYS[1]") + """
for i = 2, 4 do
  local delta = tonumber(ARGV[13 + i])
  local tat = tonumber(redis.call('GET', KEYS[1 + i]) or 'nil')
  if ivs[i] > 0 and delta ~= 0 and tat then
    -- A refund may take the schedule below now by up to the credit (ARGV[18] seconds): a reservation
    -- given back after the schedule caught up with the clock is kept, not lost, so what the budget
    -- spends is what calls used. The credit lapses with the key.
    local new_tat = math.max(tat + delta * ivs[i], now - tonumber(ARGV[18]))
    local ttl = math.max(0, math.ceil((new_tat - now) * 1000)) + math.ceil(tonumber(ARGV[18]) * 1000)
    redis.call('SET', KEYS[1 + i], string.format('%.6f', new_tat), 'PX', ttl)
  end
end
return 1
"""

# A request that goes on the wire late gives up its slot and takes a fresh one (see LATE_SEND_SECONDS):
# the next slot of the request schedule, as an ordinary grant would (now if the schedule is behind the
# clock), which it waits for. KEYS = limits hash, request schedule, count of fresh slots taken;
# ARGV[1..10] as _SETTLE (only 5..10 are read). Returns {seconds until the fresh slot ("-1": no
# request rate in force, nothing to do), the server's clock}.
_REGRANT = _NOW + _INTERVALS.replace("KEYS[2]", "KEYS[1]") + """
if ivs[1] <= 0 then return {'-1', '0'} end
redis.call('INCR', KEYS[3])
redis.call('EXPIRE', KEYS[3], 86400)
local tat = tonumber(redis.call('GET', KEYS[2]) or '0')
local slot = math.max(tat, now)
local new_tat = slot + ivs[1]
redis.call('SET', KEYS[2], string.format('%.6f', new_tat), 'PX', math.ceil((new_tat - now) * 1000) + 1000)
return {tostring(slot - now), string.format('%.6f', now)}
"""

# KEYS = limits hash, then the four schedules; ARGV[1..4] = the provider's limits per minute (0: not
# stated), ARGV[5..8] = seconds until the provider has room again (0: it has). Records the limits
# (and that the provider has answered) and holds back each spent budget until it has room.
_OBSERVE = _NOW + """
local names = {'requests', 'tokens', 'input_tokens', 'output_tokens'}
redis.call('HSET', KEYS[1], 'seen', '1')
for i = 1, 4 do
  if tonumber(ARGV[i]) > 0 then redis.call('HSET', KEYS[1], names[i], ARGV[i]) end
  local wait = tonumber(ARGV[4 + i])
  if wait > 0 then
    local tat = tonumber(redis.call('GET', KEYS[1 + i]) or '0')
    if tat < now + wait then
      redis.call('SET', KEYS[1 + i], string.format('%.6f', now + wait), 'PX', math.ceil(wait * 1000) + 1000)
    end
  end
end
redis.call('EXPIRE', KEYS[1], 3600)
return 1
"""


@dataclass(frozen=True)
class Cost:
    """What one call reserves (before it leaves) or used (after): tokens in all, prompt, completion."""

    tokens: int = 0
    input_tokens: int = 0
    output_tokens: int = 0


@dataclass(frozen=True)
class TokenLimits:
    """A profile's configured token budgets per minute (None: not configured; the provider's apply)."""

    tokens: int | None = None
    input_tokens: int | None = None
    output_tokens: int | None = None

    def args(self) -> list[int]:
        return [self.tokens or 0, self.input_tokens or 0, self.output_tokens or 0]


@dataclass(frozen=True)
class _Grant:
    """The request slot a caller holds, for `hold_if_late`: when it was due (time.monotonic()) and
    how to take a fresh one."""

    limiter: LLMLimiter
    key: str
    slot: float
    keys: list[str]
    args: list[Any]


# The request slot of the call in progress in this thread (or task), set by `LLMLimiter.slot` while it
# is held and consumed by the first `hold_if_late`.
_GRANT: ContextVar[_Grant | None] = ContextVar("mams_llm_grant", default=None)


def hold_if_late() -> float:
    """Call right before a request goes on the wire (the gateway's HTTP client does, in a request
    hook); returns the seconds it held the request.

    A request later than LATE_SEND_SECONDS after its slot (its worker stalled after the grant) takes
    a fresh slot and waits for it, so it cannot reach the provider inside a window already filled on
    schedule (see LATE_SEND_SECONDS). One Redis round trip, and only for a late request; outside a
    slot, or on time, nothing happens. A Redis error never fails the call: it goes as it is, logged
    once.
    """
    grant = _GRANT.get()
    if grant is None:
        return 0.0
    _GRANT.set(None)  # one check per slot: a redirect or a retry of the same request is not a new one
    slot, held = grant.slot, 0.0
    for attempt in range(LATE_SEND_RETRIES + 1):
        if time.monotonic() - slot <= LATE_SEND_SECONDS:
            break
        if attempt == LATE_SEND_RETRIES:
            grant.limiter._log_once(grant.key, f"a request still left more than {LATE_SEND_SECONDS * 1000:g} ms "
                                    f"after its slot after {LATE_SEND_RETRIES} fresh slots (a host this busy "
                                    "needs a lower MAMS_LLM_CONFIGURED_LIMIT_SHARE)")
            break
        try:
            reply, stamp = grant.limiter._regrant(keys=grant.keys, args=grant.args)
        except redis.RedisError as exc:
            grant.limiter._log_once(grant.key, f"could not take a fresh slot for a late request ({exc}); "
                                    "it went as it was")
            break
        wait = float(reply)
        if wait < 0:
            break  # no request rate in force
        slot = grant.limiter._local(float(stamp) + wait, float(stamp))
        if wait > 0:
            time.sleep(wait)
            held += wait
    return held


class LimiterTimeout(Exception):
    """No slot within the wait budget; the caller treats it as a transient error."""


def emission_interval(rate: str | None) -> float:
    """Seconds between two requests for a rate such as "20/second" or "1200 per minute" (0: no rate)."""
    if not rate:
        return 0.0
    item = parse(rate)
    return item.get_expiry() / item.amount


class LLMLimiter:
    def __init__(self, redis_url: str, *, namespace: str = "mams:llm") -> None:
        self.namespace = namespace
        self.redis = redis.Redis.from_url(redis_url)
        self._slot = self.redis.register_script(_ACQUIRE_SLOT)
        self._rate = self.redis.register_script(_ACQUIRE_RATE)
        self._both = self.redis.register_script(_ACQUIRE_BOTH)
        self._budgets = self.redis.register_script(_ACQUIRE_BUDGETS)
        self._settle = self.redis.register_script(_SETTLE)
        self._observe = self.redis.register_script(_OBSERVE)
        self._regrant = self.redis.register_script(_REGRANT)
        # (when, time.monotonic() - the server's clock) at the last grants' replies (see `_local`)
        self._offsets: deque[tuple[float, float]] = deque(maxlen=256)
        self._offsets_lock = threading.Lock()
        self._logged: set[tuple[str, str]] = set()

    def _keys(self, key: str) -> list[str]:
        """The limits hash and the four schedules of `key` (requests first: the pre-token key)."""
        gcra = f"{self.namespace}:gcra:{key}"
        return [f"{self.namespace}:limits:{key}", gcra, *(f"{gcra}:{r}" for r in TOKEN_RESOURCES)]

    def _args(self, *, rate: str | None, limits: TokenLimits, share: float, burst: int,
              configured_share: float) -> list[float | int]:
        # ARGV[5..10] of the budget scripts: the configured limits as paced, at `configured_share`
        return [share, burst, emission_interval(rate) / configured_share,
                *(per_minute * configured_share for per_minute in limits.args())]

    @contextmanager
    def slot(self, key: str, *, rate: str | None, max_concurrency: int, lease_seconds: float,
             max_wait: float = 300.0, burst: int = 1, cost: Cost | None = None,
             limits: TokenLimits | None = None, share: float | None = None,
             configured_share: float | None = None) -> Iterator[float]:
        """Hold one concurrency slot, one rate slot and `cost` of each token budget for `key`;
        yields the seconds waited.

        Without `cost`, `limits`, `share` or `configured_share` this is the request-only limiter. With
        any of them, the provider's stated limits (`observe`) count too, `cost` is reserved until
        `settle`, and the configured limits are paced at `configured_share` (default
        CONFIGURED_LIMIT_SHARE).
        """
        if cost is None and limits is None and share is None and configured_share is None:
            with self._request_slot(key, rate=rate, max_concurrency=max_concurrency, lease_seconds=lease_seconds,
                                    max_wait=max_wait, burst=burst) as waited:
                yield waited
            return
        started = time.monotonic()
        deadline = started + max_wait
        token = uuid.uuid4().hex
        lease_key = f"{self.namespace}:inflight:{key}"
        limits = limits or TokenLimits()
        cost = cost or Cost()
        probe = int(not rate and not any(limits.args()))
        head: list[Any] = [lease_seconds, max_concurrency, token]
        tail: list[Any] = [*self._args(rate=rate, limits=limits, share=share or 1.0, burst=burst,
                                       configured_share=_share(configured_share)),
                cost.tokens, cost.input_tokens, cost.output_tokens, probe, TOKEN_CREDIT_SECONDS,
                REQUEST_LATENESS_SECONDS]
        keys = [lease_key, *self._keys(key)]

        def take(lease: int) -> tuple[float, float, float]:
            wait, lateness, stamp = self._budgets(keys=keys, args=[*head, lease, *tail])
            return float(wait), float(lateness), float(stamp)

        wait, lateness, stamp = take(1)
        while wait < 0:
            _nap(deadline, 0.005, 0.02)
            wait, lateness, stamp = take(1)
        try:
            while wait > 0:
                _nap(deadline, wait, 0.002)
                wait, lateness, stamp = take(0)
            grant = None
            if lateness >= 0:  # a request rate is in force: arm `hold_if_late`
                grant = _Grant(self, key, self._local(stamp - lateness, stamp),
                               [*self._keys(key)[:2], f"{self.namespace}:late:{key}"], [0, 0, 0, 0, *tail[:6]])
            armed = _GRANT.set(grant)
            try:
                yield time.monotonic() - started
            finally:
                _GRANT.reset(armed)
        finally:
            try:
                self.redis.zrem(lease_key, token)
            except redis.RedisError:
                pass  # Redis went away during the call: the lease expires by itself; keep the answer

    def settle(self, key: str, *, reserved: Cost, used: Cost, rate: str | None = None,
               limits: TokenLimits | None = None, share: float = 1.0, configured_share: float | None = None) -> None:
        """Correct a call's reservation to what it used (0 for a call the provider refused)."""
        deltas = [used.tokens - reserved.tokens, used.input_tokens - reserved.input_tokens,
                  used.output_tokens - reserved.output_tokens]
        if not any(deltas):
            return
        args = [0, 0, 0, 0, *self._args(rate=rate, limits=limits or TokenLimits(), share=share, burst=1,
                                        configured_share=_share(configured_share)),
                0, 0, 0, 0, *deltas, TOKEN_CREDIT_SECONDS]
        self._settle(keys=self._keys(key), args=args)

    def observe(self, key: str, headers: Mapping[str, str], *, cost: Cost,
                retry_after: float | None = None) -> dict[str, ratelimit_headers.Budget]:
        """Adopt what the provider's answer says about its limits; returns the budgets it stated.

        Each stated budget's limit is recorded for every worker; a budget with less left than this
        call's cost holds its schedule until the provider has room (a 429's Retry-After holds the
        request schedule, so no worker sends into a known refusal). Headers that cannot be used are
        logged once per problem and process, and the configured limits stay in force.
        """
        budgets, problems = ratelimit_headers.parse(headers, now=time.time())
        for problem in problems:
            self._log_once(key, f"unusable rate-limit header from the provider ({problem}); "
                                "the configured limits apply")
        if not budgets:
            self._log_once(key, "the provider sent no usable rate-limit headers; the configured limits apply",
                           level=logging.INFO)
        costs = {"requests": 1, "tokens": cost.tokens, "input_tokens": cost.input_tokens,
                 "output_tokens": cost.output_tokens}
        limits_arg = [budgets[r].limit if r in budgets else 0 for r in ratelimit_headers.RESOURCES]
        waits = [min(600.0, budgets[r].wait_for(costs[r])) if r in budgets else 0.0
                 for r in ratelimit_headers.RESOURCES]
        if retry_after:
            waits[0] = max(waits[0], min(600.0, retry_after))
        self._observe(keys=self._keys(key), args=[*limits_arg, *waits])
        return budgets

    def _local(self, server_time: float, replied: float) -> float:
        """`server_time` (on the Redis server's clock) as time.monotonic() here; `replied` is the
        server's clock in the reply just received.

        The offset between the clocks is the least (reply received here - server's clock at the reply)
        of the last replies: a thread that reads its reply late (the GIL, a stalled worker) sees a
        larger one, which would make its slot look later than it was and hide its lateness (measured:
        slots 35 ms apart where the schedule spaced them 51.5 ms, on a host at load 3).
        """
        now = time.monotonic()
        with self._offsets_lock:
            # only the last OFFSET_SECONDS: a clock stepped since then says nothing about now
            while self._offsets and self._offsets[0][0] < now - OFFSET_SECONDS:
                self._offsets.popleft()
            self._offsets.append((now, now - replied))
            return server_time + min(offset for _, offset in self._offsets)

    def late_sends(self, key: str) -> int:
        """How many requests for `key` took a fresh slot because they went on the wire late
        (`hold_if_late`; the count lapses a day after the last)."""
        return int(self.redis.get(f"{self.namespace}:late:{key}") or 0)

    def provider_limits(self, key: str) -> dict[str, int]:
        """The per-minute limits the provider last stated for `key`."""
        raw = self.redis.hgetall(self._keys(key)[0])
        named = {(k.decode() if isinstance(k, bytes) else k): v for k, v in raw.items()}
        return {k: int(float(v)) for k, v in named.items() if k in ratelimit_headers.RESOURCES}

    def _log_once(self, key: str, message: str, *, level: int = logging.WARNING) -> None:
        if (key, message) not in self._logged:
            self._logged.add((key, message))
            log.log(level, "LLM limits for %s: %s", key, message)

    @contextmanager
    def _request_slot(self, key: str, *, rate: str | None, max_concurrency: int, lease_seconds: float,
                      max_wait: float = 300.0, burst: int = 1) -> Iterator[float]:
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


def _share(configured_share: float | None) -> float:
    share = CONFIGURED_LIMIT_SHARE if configured_share is None else configured_share
    if not 0 < share <= 1:
        raise ValueError(f"a configured limit's share must be above 0 and at most 1; got {share!r}")
    return share


def _nap(deadline: float, base: float, jitter: float) -> None:
    if time.monotonic() > deadline:
        raise LimiterTimeout("waited too long for an LLM slot")
    time.sleep(min(base, 1.0) + random.uniform(0, jitter))


@lru_cache(maxsize=4)
def limiter_for(redis_url: str) -> LLMLimiter:
    return LLMLimiter(redis_url)

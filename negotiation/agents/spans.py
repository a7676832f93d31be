"""The buffer of a run's LLM calls, for its Galileo trace: one Redis list per run, no Django.

A negotiation's LLM calls happen in many Celery tasks, on any worker, in any thread, and Galileo's
batch-mode logger holds a trace in the memory of one process. So the gateway records each call
where it happens (`record_llm_call`: input, output, model, tokens, duration, and the
run/round/role/handle labels of `meta`) with one RPUSH to a list keyed by the run, on the Redis
already run for Celery; it expires after two days if the run never ends. When the run ends,
analytics/tracing.py takes the list (`take`) and sends the trace. This module is below the models
and knows nothing of Galileo or Django: the caller passes the Redis URL and decides whether
tracing is on.
"""

from __future__ import annotations

import json
import logging
import time
from typing import Any, Protocol

import redis

log = logging.getLogger(__name__)

BUFFER_TTL_SECONDS = 2 * 24 * 3600
KEY_PATTERN = "mams:galileo:spans:*"

_redis: redis.Redis | None = None


class Reply(Protocol):
    @property
    def text(self) -> str: ...
    @property
    def model(self) -> str: ...
    @property
    def prompt_tokens(self) -> int: ...
    @property
    def completion_tokens(self) -> int: ...
    @property
    def latency_ms(self) -> int: ...


class RunLike(Protocol):
    @property
    def pk(self) -> Any: ...
    @property
    def batch_id(self) -> Any: ...


def _db_of(url: str) -> int:
    tail = url.rsplit("/", 1)[-1]
    return int(tail) if tail.isdigit() else 0


def client(url: str) -> redis.Redis:
    """One Redis client per process, made again when the URL's database changes (tests switch it)."""
    global _redis
    if _redis is None or _redis.connection_pool.connection_kwargs.get("db") != _db_of(url):
        _redis = redis.Redis.from_url(url, socket_timeout=5, socket_connect_timeout=2)
    return _redis


def _key(run_id: Any) -> str:
    return f"mams:galileo:spans:{run_id}"


def meta(*, run: RunLike, round_no: int, role: str, handle: str) -> dict[str, Any]:
    """The labels of one LLM call's span."""
    return {"run": str(run.pk), "batch": str(run.batch_id or ""), "round": round_no, "role": role, "handle": handle}


def record_llm_call(*, url: str, meta: dict[str, Any], chat: list[dict[str, str]] | None, prompt: str | None,
                    reply: Reply, temperature: float) -> None:
    """Buffer one successful LLM call for its run's trace; never raises."""
    record = {"input": chat if chat is not None else (prompt or ""), "output": reply.text, "model": reply.model,
              "prompt_tokens": reply.prompt_tokens, "completion_tokens": reply.completion_tokens,
              "duration_ns": int(reply.latency_ms) * 1_000_000, "temperature": temperature, "meta": meta,
              "at": time.time()}
    try:
        pipe = client(url).pipeline(transaction=False)
        pipe.rpush(_key(meta["run"]), json.dumps(record, default=str))
        pipe.expire(_key(meta["run"]), BUFFER_TTL_SECONDS)
        pipe.execute()
    except Exception as exc:  # noqa: BLE001  (a tracing hiccup must never cost a negotiation turn)
        log.warning("run %s: could not buffer an LLM span for Galileo (%s)", meta.get("run"), exc)


def take(*, url: str, run_id: Any) -> list[dict[str, Any]]:
    """The run's buffered calls, oldest first; the buffer is emptied in the same step."""
    pipe = client(url).pipeline(transaction=True)
    pipe.lrange(_key(run_id), 0, -1)
    pipe.delete(_key(run_id))
    raw, _ = pipe.execute()
    records = [json.loads(r) for r in raw]
    return sorted(records, key=lambda r: r.get("at", 0))

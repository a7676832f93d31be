"""Which Celery workers are alive and consuming MAMS's queues, read in one Redis round trip.

A batch whose runs sit in `queued` because no worker runs is indistinguishable, in Postgres, from
one waiting behind a backlog; the pages and the API must say which it is. Celery's own `ping` is a
broadcast that waits for replies (a second or more per page load), so each worker instead keeps a
key of its own in Redis, `mams:worker:<hostname>`, refreshed every `HEARTBEAT_SECONDS` with a TTL of
`HEARTBEAT_TTL`. The refresh runs on the consumer's own timer (a consumer bootstep), so it stops
when the consumer stops consuming (connection lost, shutting down), not only when the process dies;
a killed worker's key expires within the TTL. The hostnames are also kept in one set, `INDEX`, so a
read is one SMEMBERS and one MGET over the workers (not a SCAN of the whole keyspace, which every
health check and every dashboard poll would pay); a member whose key has expired is dropped then.
"""

from __future__ import annotations

import json
import logging
import os
import threading
import time
from dataclasses import dataclass
from typing import Any

import redis
from celery import bootsteps
from django.conf import settings
from django.db import connection

from mams.queues import Queue

log = logging.getLogger(__name__)

KEY_PREFIX = "mams:worker:"
INDEX = "mams:workers"
HEARTBEAT_SECONDS = 5.0
HEARTBEAT_TTL = 15
# Queues a batch needs to be played: the rounds and the seller turns.
PLAY_QUEUES = frozenset({Queue.ROUNDS.value, Queue.AGENTS.value})
NO_WORKER_HINT = ("no worker is running: start one with `make up` (or `deploy/local/stack.sh worker`) or "
                  "`systemctl start mams-worker@1`")

_client: redis.Redis | None = None
_client_url: str | None = None


def _redis() -> redis.Redis:
    global _client, _client_url
    if _client is None or _client_url != settings.REDIS_URL:
        _client = redis.Redis.from_url(settings.REDIS_URL, socket_timeout=1, socket_connect_timeout=1)
        _client_url = settings.REDIS_URL
    return _client


@dataclass(frozen=True)
class Presence:
    """Live workers, and whether the queues a batch needs are consumed. `known` is False when Redis
    could not be asked (then nothing is claimed either way)."""

    known: bool
    workers: tuple[dict[str, Any], ...] = ()

    @property
    def queues(self) -> frozenset[str]:
        return frozenset(q for w in self.workers for q in w.get("queues", ()))

    @property
    def can_play(self) -> bool:
        return self.queues >= PLAY_QUEUES

    @property
    def missing_queues(self) -> list[str]:
        return sorted(PLAY_QUEUES - self.queues)


def workers_presence() -> Presence:
    """The workers whose heartbeat is fresh (one SMEMBERS and one MGET)."""
    try:
        client = _redis()
        hosts = sorted(h.decode() if isinstance(h, bytes) else h for h in client.smembers(INDEX))
        values = client.mget([f"{KEY_PREFIX}{h}" for h in hosts]) if hosts else []
        gone = [h for h, raw in zip(hosts, values, strict=True) if raw is None]
        if gone:  # killed workers: their keys expired
            client.srem(INDEX, *gone)
    except redis.RedisError as exc:
        log.warning("worker presence: Redis did not answer (%s)", exc)
        return Presence(known=False)
    workers = []
    for raw in values:
        if raw is None:
            continue
        try:
            workers.append(json.loads(raw))
        except ValueError:
            continue
    return Presence(known=True, workers=tuple(workers))


def heartbeat_write(*, hostname: str, queues: list[str]) -> None:
    body = json.dumps({"hostname": hostname, "queues": sorted(queues), "pid": os.getpid(), "at": time.time()})
    client = _redis()
    pipe = client.pipeline(transaction=False)
    pipe.set(f"{KEY_PREFIX}{hostname}", body, ex=HEARTBEAT_TTL)
    pipe.sadd(INDEX, hostname)
    pipe.execute()


def heartbeat_clear(*, hostname: str) -> None:
    pipe = _redis().pipeline(transaction=False)
    pipe.delete(f"{KEY_PREFIX}{hostname}")
    pipe.srem(INDEX, hostname)
    pipe.execute()


class HeartbeatStep(bootsteps.StartStopStep):
    """A consumer bootstep: started when the consumer is connected and consuming, stopped (and the key
    removed) when it stops, restarted after the consumer reconnects."""

    requires = ("celery.worker.consumer.tasks:Tasks",)

    def __init__(self, parent: Any, **kwargs: Any) -> None:
        super().__init__(parent, **kwargs)
        self.tref: Any = None

    def _beat(self, consumer: Any) -> None:
        try:
            queues = [q.name for q in consumer.task_consumer.queues] if consumer.task_consumer else []
            heartbeat_write(hostname=consumer.hostname, queues=queues)
        except Exception as exc:  # noqa: BLE001 - a missed beat must never hurt the consumer
            log.warning("worker heartbeat not written (%s); the next one retries", exc)

    def start(self, parent: Any) -> None:
        self._beat(parent)
        self.tref = parent.timer.call_repeatedly(HEARTBEAT_SECONDS, self._beat, (parent,), priority=10)

    def stop(self, parent: Any) -> None:
        if self.tref is not None:
            self.tref.cancel()
            self.tref = None
        try:
            heartbeat_clear(hostname=parent.hostname)
        except Exception as exc:  # noqa: BLE001
            log.info("worker heartbeat not removed (%s); it expires in %ss", exc, HEARTBEAT_TTL)

    def shutdown(self, parent: Any) -> None:
        self.stop(parent)


def database_watch(*, first_delay: float = 0.0) -> None:
    """At worker start: if Postgres does not answer, say so in the log, then check again with a backoff
    (2, 4 … 60 s) and say when it answers. The worker itself keeps running: its turns retry on their
    infrastructure budget (MAMS_INFRA_MAX_RETRIES), so nothing needs a restart when Postgres returns."""
    def check() -> None:
        delay, warned = 2.0, False
        time.sleep(first_delay)
        while True:
            try:
                connection.ensure_connection()
                if warned:
                    log.warning("Postgres answers again (%s:%s); turns continue", connection.settings_dict["HOST"],
                                connection.settings_dict["PORT"])
                connection.close()
                return
            except Exception as exc:  # noqa: BLE001 - any failure is "not answering"; the log says which
                connection.close()
                log.warning("Postgres at %s:%s (database %s) does not answer (%s): this worker waits; turns retry "
                            "on their own budget. Checking again in %.0f s.", connection.settings_dict["HOST"],
                            connection.settings_dict["PORT"], connection.settings_dict["NAME"],
                            str(exc).strip().splitlines()[0][:200], delay)
                warned = True
                time.sleep(delay)
                delay = min(delay * 2, 60.0)

    threading.Thread(target=check, name="mams-database-watch", daemon=True).start()

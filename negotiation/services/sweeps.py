"""The sweepers: periodic repairs of what a crash or a silent buyer left behind.

- `runs_sweep`: a running run whose heartbeat went stale (a worker killed between a commit and an
  enqueue) gets its current round re-queued;
- `runs_sweep_queued`: a queued run whose round-1 task was lost before any worker took it is
  re-queued, with a token so that the original, should it turn up, starts nothing;
- `rooms_expire`: a room whose outside buyer (a person or an external agent) has gone quiet for
  longer than MAMS_ROOM_IDLE_SECONDS is closed.

The Celery beat task `negotiation.sweep` (negotiation/tasks.py) calls all three.
"""

from __future__ import annotations

import logging
from datetime import timedelta
from typing import Any

from django.conf import settings
from django.db.models import Exists, OuterRef, QuerySet
from django.utils import timezone
from redis.exceptions import RedisError

from mams.queues import Queue
from negotiation.dispatch import enqueue_round, queue_depth
from negotiation.models import Batch, Message, NegotiationRun
from negotiation.services import events
from negotiation.services.lifecycle import run_end

log = logging.getLogger(__name__)
Status = NegotiationRun.Status
# The first word of the error of a room `rooms_expire` closed for want of a buyer.
ROOM_EXPIRED = "abandoned"


def _requeued_key(run_id: Any) -> str:
    return f"mams:requeued:{run_id}"


def mark_requeued(run_id: Any) -> None:
    """Remember, for as long as the original task could still be delivered, that this run's start was
    re-queued: the original (token-less) round-1 task may turn up after the re-queue started the run."""
    ttl = int(settings.CELERY_BROKER_TRANSPORT_OPTIONS.get("visibility_timeout", 3600)) + 3600
    events.redis_client().set(_requeued_key(run_id), "1", ex=ttl)


def was_requeued(run_id: Any) -> bool:
    try:
        return bool(events.redis_client().exists(_requeued_key(run_id)))
    except RedisError:
        return False  # unknown: play, as before (a duplicate costs a call; the unique key keeps the data)


def _idle_runs(*, cutoff: Any, modes: Any) -> QuerySet[NegotiationRun]:
    """Running runs of these modes with no progress since `cutoff`: neither a heartbeat (start, round
    advance, re-queue) nor a message, since a turn writes only its message."""
    recent = Message.objects.filter(run=OuterRef("pk"), created_at__gte=cutoff)
    return (NegotiationRun.objects.filter(status=Status.RUNNING, mode__in=modes, heartbeat_at__lt=cutoff)
            .exclude(Exists(recent)))


def runs_sweep(*, stale_after: timedelta) -> int:
    """Re-queue the current round of running runs whose heartbeat is older than `stale_after`.

    A worker killed after a commit but before its enqueue leaves a run with no task in flight; the
    round task is idempotent, so re-queueing one that was merely slow costs at most a duplicate call.
    """
    stale = list(_idle_runs(cutoff=timezone.now() - stale_after, modes=[NegotiationRun.Mode.AGENT])
                 .values_list("pk", "current_round")[:1000])
    for run_id, round_no in stale:
        now = timezone.now()
        NegotiationRun.objects.filter(pk=run_id).update(heartbeat_at=now)
        # With a token: a run whose start was re-queued refuses token-less round-1 deliveries (see _claim).
        enqueue_round(run_id, round_no, requeued=now.isoformat())
    return len(stale)


def runs_sweep_queued(*, stale_after: timedelta) -> int:
    """Re-queue the queued runs of unfinished batches whose round-1 task was lost (a broker message lost
    before any worker took it, a lost `batch_start`); returns how many.

    A queued run qualifies when it has waited longer than `stale_after` (since it was made, or since
    its last re-queue) while the rounds queue is empty: with nothing waiting in the broker, its task
    is gone. A run that is merely waiting behind a long backlog is left in its place. Each re-queue
    writes a new token to the run's heartbeat, conditionally (of two concurrent sweeps one wins), and
    the task carries it: the original delivery, should it turn up after all, starts nothing.
    """
    cutoff = timezone.now() - stale_after
    waiting = (NegotiationRun.objects.filter(
        status=Status.QUEUED, mode=NegotiationRun.Mode.AGENT, created_at__lt=cutoff,
        batch__status__in=[Batch.Status.QUEUED, Batch.Status.RUNNING])
        .exclude(heartbeat_at__gte=cutoff))
    if not waiting.exists() or queue_depth(Queue.ROUNDS):
        return 0
    requeued = 0
    for run_id, token in waiting.values_list("pk", "heartbeat_at").iterator(chunk_size=500):
        now = timezone.now()
        if NegotiationRun.objects.filter(pk=run_id, status=Status.QUEUED, heartbeat_at=token).update(
                heartbeat_at=now):
            mark_requeued(run_id)
            enqueue_round(run_id, 1, requeued=now.isoformat())
            requeued += 1
    if requeued:
        log.warning("re-queued %d queued run(s) whose first task was lost", requeued)
    return requeued


def _span(seconds: int) -> str:
    if seconds % 3600 == 0:
        return f"{seconds // 3600} h"
    return f"{seconds // 60} min" if seconds % 60 == 0 else f"{seconds} s"


def room_idle_note() -> str:
    """How long a room may wait for its buyer, in words (for the messages that mention expiry)."""
    return _span(settings.MAMS_ROOM_IDLE_SECONDS)


def rooms_expire(*, idle_after: timedelta) -> int:
    """End as cancelled the outside-buyer rooms (live or /env) with no buyer action for `idle_after`;
    returns how many. A zero or negative `idle_after` expires nothing.

    Such a run waits on a person or an external agent, not on a task, so no sweep re-queues it, and
    an abandoned one would stay running (and count against its owner's open rooms) forever. Idle
    means no heartbeat and no message since the cutoff: a turn writes only its message, so the
    newest message is the progress signal (as in `runs_sweep`). Each end is conditional on the run
    being running and still idle, so a buyer who acts at the last moment keeps the room, and two
    overlapping sweeps end each room once. The reason starts with ROOM_EXPIRED, which is how the
    turn services tell an expired room from one ended otherwise.
    """
    if idle_after <= timedelta(0):
        return 0
    cutoff = timezone.now() - idle_after
    idle = _idle_runs(cutoff=cutoff, modes=NegotiationRun.OUTSIDE_BUYER)
    reason = (f"{ROOM_EXPIRED}: no buyer action for {_span(int(idle_after.total_seconds()))} "
              "(MAMS_ROOM_IDLE_SECONDS)")
    expired = sum(run_end(run_id=run_id, status=Status.CANCELLED, reason=reason, scope=idle)
                  for run_id in list(idle.values_list("pk", flat=True)[:1000]))
    if expired:
        log.info("closed %d abandoned room(s) with no buyer action since %s", expired, cutoff.isoformat())
    return expired

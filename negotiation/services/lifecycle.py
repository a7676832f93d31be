"""A run's end, in one place: the outcome, the batch or reflect sequence moving on, and the hooks.

Whatever ends a run (the turn that reached an end, a failure a task gave up on, a cancel, the room
sweeper) comes through here, so what follows an end is written once:

- a run of a batch: the batch is refreshed after commit (`batch_refresh`: its status says what its
  runs did);
- a run of a reflect sequence (no batch): the sequence takes its next step (services/reflect.py);
- the hooks other apps registered: analytics (analytics/apps.py) records a completed run's metrics
  in the finishing transaction and queues its analysis after commit, queues a failed run's trace,
  and archives every ended run (analytics/archive.py). The hooks are how `negotiation` tells
  `analytics` without importing it (layers import downward; analytics sits above negotiation).

To change what happens when a run ends, start here.
"""

from __future__ import annotations

from collections.abc import Callable
from typing import Any, Protocol

from django.db import IntegrityError, transaction
from django.db.models import Case, Exists, F, OuterRef, Q, QuerySet, Value, When
from django.utils import timezone

from negotiation.engine import protocol
from negotiation.engine.types import BUYER, EndReason
from negotiation.models import Batch, NegotiationRun, Outcome
from negotiation.run_context import RunContext
from negotiation.services.events import publish_on_commit
from negotiation.services.reflect import sequence_run_ended

Status = NegotiationRun.Status


class RunCompletedHook(Protocol):
    def __call__(self, *, run: NegotiationRun, outcome: Outcome) -> None: ...


RunIdHook = Callable[..., None]

_completed_hooks: list[RunCompletedHook] = []
_failed_hooks: list[RunIdHook] = []
_ended_hooks: list[RunIdHook] = []


def on_run_completed(hook: RunCompletedHook) -> None:
    """Call `hook(run=, outcome=)` inside the transaction that completes a run (once per hook)."""
    if hook not in _completed_hooks:
        _completed_hooks.append(hook)


def on_run_failed(hook: RunIdHook) -> None:
    """Call `hook(run_id=)` inside the transaction that fails a run (once per hook)."""
    if hook not in _failed_hooks:
        _failed_hooks.append(hook)


def on_run_ended(hook: RunIdHook) -> None:
    """Call `hook(run_id=)` inside the transaction that ends a run in any way: completed, failed,
    cancelled or expired (once per hook), before the batch or sequence moves on."""
    if hook not in _ended_hooks:
        _ended_hooks.append(hook)


def run_complete(*, run: NegotiationRun, ctx: RunContext, end: protocol.End, reasoning: str) -> Outcome:
    """Write the outcome and complete the run; must run inside the caller's (the turn's) transaction."""
    rounds = max((m.round_no for m in ctx.transcript if m.sender != BUYER), default=0)
    deal = end.reason == EndReason.ACCEPTED
    outcome = Outcome.objects.create(
        run=run, decision=Outcome.Decision.DEAL if deal else Outcome.Decision.NO_DEAL, reason=end.reason.value,
        chosen_seller_id=ctx.seller_ids.get(end.seller or "") if deal else None,
        chosen_handle=(end.seller or "") if deal else "", final_price=end.price if deal else None,
        quantity=ctx.buyer.quantity, rounds=rounds, reasoning_summary=reasoning[:2000])
    publish_on_commit(run.pk, "outcome")
    ended = timezone.now()
    done = NegotiationRun.objects.filter(pk=run.pk, status=Status.RUNNING).update(
        status=Status.COMPLETED, ended_at=ended)
    if not done:
        raise IntegrityError(f"run {run.pk} was no longer running")
    run.status, run.ended_at = Status.COMPLETED, ended
    # The batch is refreshed first after commit, then the analysis is queued (it can wait).
    _after_terminal(run.batch_id, run.pk)
    for hook in _completed_hooks:  # analytics: metrics in this transaction, the analysis after commit
        hook(run=run, outcome=outcome)
    return outcome


def _after_terminal(batch_id: Any, run_id: Any) -> None:
    for hook in _ended_hooks:  # analytics: every ended run goes to the audit archive (analytics/archive.py)
        hook(run_id=run_id)
    if batch_id:
        transaction.on_commit(lambda: batch_refresh(batch_id=batch_id))
    else:  # a reflect sequence's runs have no batch: the sequence moves on after this run
        sequence_run_ended(run_id=run_id)


def run_end(*, run_id: Any, status: str, reason: str = "", scope: QuerySet[NegotiationRun] | None = None) -> bool:
    """End a queued or running run as `status` (with `reason` as its error); False if it had ended.

    One conditional UPDATE, so of two racing callers exactly one ends the run; `scope` narrows it
    further (the sweeper's "still idle"). Live streams are told after commit, and the batch or
    sequence moves on.
    """
    with transaction.atomic():
        run = NegotiationRun.objects.filter(pk=run_id).only("batch_id").first()
        if run is None:
            return False
        fields: dict[str, Any] = {"status": status, "ended_at": timezone.now()}
        if reason:
            fields["error"] = reason[:2000]
        done = (scope if scope is not None else NegotiationRun.objects).filter(
            pk=run_id, status__in=[Status.QUEUED, Status.RUNNING]).update(**fields)
        if done:
            publish_on_commit(run.pk, "status", status=status)
            _after_terminal(run.batch_id, run.pk)
        return bool(done)


def run_fail(*, run_id: Any, reason: str) -> None:
    """End a run as failed with a reason a person can act on (e.g. which profile setting to fix)."""
    with transaction.atomic():
        if run_end(run_id=run_id, status=Status.FAILED, reason=reason):
            for hook in _failed_hooks:
                hook(run_id=run_id)


def run_cancel(*, run_id: Any, reason: str = "") -> None:
    run_end(run_id=run_id, status=Status.CANCELLED, reason=reason)


def batch_refresh(*, batch_id: Any) -> None:
    """Mark a batch finished once none of its runs is queued or running, with a status that says what
    its runs did: completed when every run completed, failed when none completed and some failed,
    partly_failed when some completed and some did not. A cancelled batch stays cancelled and gets its
    end time. One conditional UPDATE, after every run's end, so racing callers agree."""
    def runs(**where: Any) -> Exists:
        return Exists(NegotiationRun.objects.filter(batch_id=OuterRef("pk"), **where))

    live = Q(status__in=Batch.ACTIVE)
    ended = Batch.objects.filter(pk=batch_id, finished_at=None).exclude(runs(status__in=NegotiationRun.ACTIVE))
    ended.update(
        status=Case(
            When(live & ~runs(status__in=[Status.FAILED, Status.CANCELLED]), then=Value(Batch.Status.COMPLETED)),
            When(live & ~runs(status=Status.COMPLETED) & runs(status=Status.FAILED), then=Value(Batch.Status.FAILED)),
            When(live & runs(status=Status.FAILED), then=Value(Batch.Status.PARTLY_FAILED)),
            # runs cancelled one by one (only a cancelled batch does that today): not a success
            When(live, then=Value(Batch.Status.CANCELLED)),
            default=F("status")),
        finished_at=timezone.now())

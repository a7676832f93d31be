"""Batch writes: create a batch and its runs in one transaction, start them after commit, cancel.

The same `batch_create` serves the REST API, the demo command, the admin and scheduled benchmarks,
so every path gets the same checks: the item must be demanded and stocked, the session must have
at most 10 sellers, the run count and round count must be in range, and every role's profile must
be known and configured. Errors are raised before anything is written or queued.
"""

from __future__ import annotations

import re
from collections.abc import Iterable
from typing import Any

from django.conf import settings
from django.contrib.auth import get_user_model
from django.core.exceptions import ValidationError
from django.db import IntegrityError, transaction
from django.utils import timezone

from negotiation.agents.fingerprint import run_fingerprints
from negotiation.dispatch import enqueue_batch_start, enqueue_round
from negotiation.engine.disclosure import parse_disclosure
from negotiation.engine.protocol import parse_rules
from negotiation.models import Batch, Disclosure, NegotiationRun, Rules, Session
from negotiation.services.budgets import budget_check, usage_seed
from negotiation.services.errors import ConflictError, LimitExceeded
from negotiation.services.launch import agents_resolve, check_range, check_seed, check_temperature, scenario_check
from negotiation.services.lifecycle import batch_refresh
from negotiation.services.prompt_versions import prompt_versions_record

RUN_CHUNK = 1000


def _check_active_batches(owner: Any, needed: int = 1, refusal: Any = None) -> None:
    """Refuse `needed` more batches for a user beyond MAMS_MAX_ACTIVE_BATCHES_PER_USER queued or running.

    The user's row is locked first, so two concurrent requests cannot both take the last place.
    `refusal(active, cap)` may raise a caller's own LimitExceeded (a benchmark asks for many at once).
    """
    cap = settings.MAMS_MAX_ACTIVE_BATCHES_PER_USER
    if owner is None or cap <= 0:
        return
    get_user_model().objects.select_for_update().filter(pk=owner.pk).first()
    active = Batch.objects.filter(owner=owner, status__in=[Batch.Status.QUEUED, Batch.Status.RUNNING]).count()
    if active + needed > cap:
        if refusal is not None:
            refusal(active, cap)
        raise LimitExceeded(f"You already have {active} batches queued or running (the limit is {cap}, "
                            "MAMS_MAX_ACTIVE_BATCHES_PER_USER); wait for one to finish or cancel one.",
                            field="runs")


@transaction.atomic
def batch_create(*, session: Session, item_name: str | None, runs: int, agents: dict | None = None,
                 temperature: float = 0.7, max_rounds: int = 5, base_seed: int = 0, owner: Any = None,
                 idempotency_key: str | None = None, population: dict | None = None,
                 disclosure: str = Disclosure.REDACT, name: str = "", tags: Iterable[str] | None = None,
                 voice: bool = False, rules: str = Rules.KNOWN, budget_usd: Any = None,
                 budget_tokens: Any = None) -> Batch:
    errors: dict[str, list[str]] = {}
    label, tag_list = _label_check(errors, name, tags)
    if not isinstance(voice, bool):
        errors.setdefault("voice", []).append("Must be true or false.")
    try:
        # As with disclosure: an unknown rule set is refused, never read as the default.
        rules = parse_rules(rules).value
    except ValueError as exc:
        errors.setdefault("rules", []).append(str(exc))
    try:
        # An unknown rule is refused, never read as the default: a batch meant to study leaking
        # must not quietly run with redaction, nor the reverse.
        disclosure = parse_disclosure(disclosure).value
    except ValueError as exc:
        errors.setdefault("disclosure", []).append(str(exc))
    check_range(errors, "runs", runs, 1, settings.MAMS_MAX_RUNS_PER_BATCH)
    check_range(errors, "max_rounds", max_rounds, 1, settings.MAMS_MAX_ROUNDS_LIMIT)
    checked_temperature = check_temperature(errors, "temperature", temperature)
    check_seed(errors, "base_seed", base_seed)
    n_sellers = session.sellers.count()
    if n_sellers > settings.MAMS_MAX_SELLERS:
        errors.setdefault("session", []).append(
            f"A session has at most {settings.MAMS_MAX_SELLERS} sellers; this one has {n_sellers}.")
    resolved = agents_resolve(agents, checked_temperature, errors)
    budget_usd, budget_tokens = budget_check(errors, budget_usd=budget_usd, budget_tokens=budget_tokens,
                                             resolved=resolved)
    if item_name is not None and not isinstance(item_name, str):
        errors.setdefault("item_name", []).append("Must be an item name (text), or empty for every demanded item.")
        item_name = None
    names = [item_name] if item_name else list(session.demands.values_list("item_name", flat=True))
    if not names:
        errors.setdefault("item_name", []).append("The session has no buyer demands.")
    scenarios = [scenario_check(errors, session=session, item_name=item, population=population) for item in names]
    if errors:
        raise ValidationError(errors)
    _check_active_batches(owner)
    # Store the demand's own spelling, as the runs do, not the caller's ("  usb-c CABLE ").
    item_label = scenarios[0]["buyer"]["item_name"] if item_name else ""
    batch = Batch.objects.create(owner=owner, session=session, item_name=item_label, runs_requested=runs,
                                 agents=resolved, temperature=temperature, max_rounds=max_rounds,
                                 base_seed=base_seed, idempotency_key=idempotency_key or "", disclosure=disclosure,
                                 name=label, tags=tag_list, voice=voice, rules=rules, budget_usd=budget_usd,
                                 budget_tokens=budget_tokens)
    prompt_versions_record(agents=resolved)  # every prompt version a run names is stored, for replay
    stamps = run_fingerprints(resolved, disclosure=disclosure, rules=rules)
    rows = [NegotiationRun(batch=batch, session=session, owner=owner, item_name=sc["buyer"]["item_name"],
                           seed=base_seed + i, agents=resolved, scenario=sc, max_rounds=max_rounds,
                           voice=voice, **stamps)
            for sc in scenarios for i in range(runs)]
    NegotiationRun.objects.bulk_create(rows, batch_size=RUN_CHUNK)
    if budget_usd is not None or budget_tokens is not None:
        transaction.on_commit(lambda: usage_seed(batch.pk))  # before its first turn can be queued
    transaction.on_commit(lambda: enqueue_batch_start(batch.pk))
    return batch


TAG = re.compile(r"^[\w.:-]{1,40}$")
MAX_TAGS = 20


def _label_check(errors: dict[str, list[str]], name: Any, tags: Any) -> tuple[str, list[str]]:
    """A batch's optional name (at most 120 characters) and tags (at most 20, each 1-40 letters,
    digits or . _ : -), trimmed, the tags without repeats; a bad one is an error naming the field."""
    if name is None:
        name = ""
    if not isinstance(name, str) or len(name.strip()) > 120:
        errors.setdefault("name", []).append("Must be text of at most 120 characters.")
        name = ""
    out: list[str] = []
    if tags is None:
        tags = []
    if isinstance(tags, str) or not isinstance(tags, Iterable):
        errors.setdefault("tags", []).append("Must be a list of tags.")
        tags = []
    for i, tag in enumerate(tags):
        tag = tag.strip() if isinstance(tag, str) else tag
        if not isinstance(tag, str) or not TAG.match(tag):
            errors.setdefault(f"tags.{i}", []).append(
                "A tag is 1 to 40 letters, digits or . _ : - (no spaces).")
        elif tag not in out:
            out.append(tag)
    if len(out) > MAX_TAGS:
        errors.setdefault("tags", []).append(f"At most {MAX_TAGS} tags.")
    return name.strip(), out


def batches_status(statuses: Iterable[str]) -> str:
    """One status for a group of batches (an experiment's conditions, a benchmark run), by the same
    rule as a batch's runs: cancelled if any batch was; queued or running while any is; completed only
    when every batch completed, failed when every batch failed, else partly_failed."""
    found = set(statuses)
    if Batch.Status.CANCELLED in found:
        return Batch.Status.CANCELLED
    if found and found <= {Batch.Status.QUEUED}:
        return Batch.Status.QUEUED
    if found & set(Batch.ACTIVE):
        return Batch.Status.RUNNING
    if found <= {Batch.Status.COMPLETED}:
        return Batch.Status.COMPLETED
    if found == {Batch.Status.FAILED}:
        return Batch.Status.FAILED
    return Batch.Status.PARTLY_FAILED


def batch_start(*, batch_id: Any) -> None:
    """Queue round 1 of every queued run of a batch (one cheap message per run; safe to repeat)."""
    ids = NegotiationRun.objects.filter(batch_id=batch_id, status=NegotiationRun.Status.QUEUED,
                                        current_round=1).values_list("pk", flat=True)
    for run_id in ids.iterator(chunk_size=RUN_CHUNK):
        enqueue_round(run_id, 1)


@transaction.atomic
def batch_cancel(*, batch: Batch) -> Batch:
    """Stop queued runs now; running ones end at their next round (their round task sees the flag)."""
    Batch.objects.filter(pk=batch.pk, status__in=[Batch.Status.QUEUED, Batch.Status.RUNNING]).update(
        status=Batch.Status.CANCELLED)
    NegotiationRun.objects.filter(batch=batch, status=NegotiationRun.Status.QUEUED).update(
        status=NegotiationRun.Status.CANCELLED, ended_at=timezone.now())
    batch.refresh_from_db()
    return batch


def batch_create_idempotent(*, owner: Any, idempotency_key: str, request_hash: str, **kwargs: Any
                            ) -> tuple[Batch, bool]:
    """`batch_create` behind an Idempotency-Key: (batch, created).

    The first request with a key creates the batch and stores the hash of its body; a retry with
    the same key and body returns that batch (created=False) and queues nothing; the same key with
    another body is a ConflictError. Keys are per owner. Two racing first requests meet the
    (owner, key) unique constraint: the loser rolls back and returns the winner's batch.
    """
    def existing() -> Batch | None:
        return Batch.objects.filter(owner=owner, idempotency_key=idempotency_key).first()

    def replay(batch: Batch) -> tuple[Batch, bool]:
        if batch.request_hash and batch.request_hash != request_hash:
            raise ConflictError("This Idempotency-Key was already used for a different request; use a new key "
                                "for a new batch.", field="Idempotency-Key")
        return batch, False

    found = existing() if idempotency_key else None
    if found is not None:
        return replay(found)
    try:
        with transaction.atomic():
            batch = batch_create(owner=owner, idempotency_key=idempotency_key, **kwargs)
            Batch.objects.filter(pk=batch.pk).update(request_hash=request_hash)
            batch.request_hash = request_hash
    except IntegrityError:
        if not idempotency_key:
            raise
        found = existing()
        if found is None:
            raise
        return replay(found)
    return batch, True


@transaction.atomic
def batch_cancel_request(*, batch: Batch) -> Batch:
    """Cancel on a user's request: a finished batch is a conflict; cancelling twice is harmless.

    Queued runs are cancelled in this transaction; running ones end at their next round. When
    nothing is left running the batch is marked finished after commit.
    """
    if batch.status in Batch.FINISHED:
        raise ConflictError("This batch has already finished; there is nothing to cancel.", field="status")
    batch = batch_cancel(batch=batch)
    transaction.on_commit(lambda: batch_refresh(batch_id=batch.pk))
    return batch

"""The audit archive: every ended run written once to object storage, as the spec's Tigris trail promises.

An auditor who later needs the raw records reads `<prefix>/<batch>/<run>.json.gz` from the bucket, not
MAMS's database: the transcript as said (each message with who could see it, and the words each lane
received when the disclosure rule withheld a number), the private scenario, the outcome, the metrics,
the agents' fingerprints and configuration, and any seller audio. The archive is the owner's record, so
it holds the private numbers; nothing in it is ever shown to a party of the run.

Writes are idempotent: the JSON is canonical (sorted keys, no time of writing) and gzip's header mtime
is 0, so the same run gives the same bytes; an object whose stored SHA-256 already matches is not
written again. `MAMS_ARCHIVE_URL` picks the store: `s3://bucket/prefix` through boto3 (which reads
AWS_ENDPOINT_URL_S3 and the keys from the environment, for Tigris, S3 or MinIO), or `file:///path`.
The store is only ever touched by the archive task (analytics/tasks.py) after the run has ended, so a
slow or unreachable store can never fail or delay a negotiation.
"""

from __future__ import annotations

import base64
import gzip
import hashlib
import json
import logging
import os
import re
import tempfile
import time
from dataclasses import dataclass
from datetime import timedelta
from pathlib import Path
from typing import Any
from urllib.parse import unquote, urlparse

from django.conf import settings
from django.db import transaction
from django.db.models import F
from django.utils import timezone

from analytics.models import RunArchive, RunMetrics
from mams.celery import app
from mams.queues import Queue
from negotiation.engine import protocol, visibility
from negotiation.engine.types import BUYER
from negotiation.models import MessageAudio, NegotiationRun, Outcome
from negotiation.run_context import run_context
from negotiation.services.voice import run_audio_pending

log = logging.getLogger(__name__)
FORMAT = "mams.run-archive/2"  # 2: messages carry round (of offers), turn and decision; events a turn
# S3's bucket naming rules (3–63 lowercase letters, digits, dots and hyphens, starting and ending alnum).
BUCKET_RE = re.compile(r"^[a-z0-9][a-z0-9.\-]{1,61}[a-z0-9]$")


class ArchiveConfigError(ValueError):
    """MAMS_ARCHIVE_URL cannot name a store: the message says what to fix."""


class ArchiveStoreError(RuntimeError):
    """The store refused or could not be reached; the message names no secret."""


@dataclass(frozen=True)
class Target:
    scheme: str  # "s3" or "file"
    bucket: str  # s3 only
    prefix: str  # s3: key prefix without slashes at the ends; file: the folder

    def key(self, *, batch_id: Any, run_id: Any) -> str:
        rel = f"{batch_id or 'no-batch'}/{run_id}.json.gz"
        return f"{self.prefix}/{rel}" if self.scheme == "s3" and self.prefix else rel

    def url(self, key: str) -> str:
        return f"s3://{self.bucket}/{key}" if self.scheme == "s3" else f"file://{Path(self.prefix) / key}"


def target_parse(url: str) -> Target:
    """The store named by MAMS_ARCHIVE_URL, or ArchiveConfigError saying what is wrong with it."""
    raw = (url or "").strip()
    parsed = urlparse(raw)
    if parsed.scheme == "s3":
        if not parsed.netloc:
            raise ArchiveConfigError(f"MAMS_ARCHIVE_URL {raw!r} names no bucket: use s3://bucket/prefix.")
        if not BUCKET_RE.match(parsed.netloc) or ".." in parsed.netloc:
            raise ArchiveConfigError(f"MAMS_ARCHIVE_URL: {parsed.netloc!r} is not a valid bucket name (3–63 "
                                     "lowercase letters, digits, dots or hyphens).")
        if parsed.query or parsed.fragment or parsed.username or parsed.password:
            raise ArchiveConfigError("MAMS_ARCHIVE_URL must be s3://bucket/prefix only: put the endpoint in "
                                     "AWS_ENDPOINT_URL_S3 and the keys in AWS_ACCESS_KEY_ID / AWS_SECRET_ACCESS_KEY.")
        return Target(scheme="s3", bucket=parsed.netloc, prefix=parsed.path.strip("/"))
    if parsed.scheme == "file":
        path = unquote(parsed.path)
        if parsed.netloc or not path.startswith("/"):
            raise ArchiveConfigError(f"MAMS_ARCHIVE_URL {raw!r}: a local folder is file:///absolute/path.")
        return Target(scheme="file", bucket="", prefix=path.rstrip("/") or "/")
    raise ArchiveConfigError(f"MAMS_ARCHIVE_URL {raw!r} is not s3://bucket/prefix or file:///absolute/path.")


# --- the stores -----------------------------------------------------------------------------------


def _s3_client(*, timeout: float | None = None, attempts: int = 2) -> Any:
    # boto3 loads only when the store is S3.
    import boto3  # noqa: PLC0415
    from botocore.config import Config  # noqa: PLC0415

    timeout = timeout or settings.MAMS_ARCHIVE_TIMEOUT_SECONDS
    # boto3 reads AWS_ENDPOINT_URL_S3 / AWS_ENDPOINT_URL, the keys and the region from the environment.
    # Its own retries are kept short: the task's retries (with backoff) are the ones that wait out an outage.
    return boto3.client("s3", config=Config(connect_timeout=timeout, read_timeout=timeout,
                                            retries={"max_attempts": attempts, "mode": "standard"}))


def describe(exc: Exception) -> str:
    """An error in words without anything from the environment's secrets (boto3 never puts keys in them)."""
    text = f"{exc.__class__.__name__}: {exc}"
    for name in ("AWS_SECRET_ACCESS_KEY", "AWS_SESSION_TOKEN", "ELEVENLABS_API_KEY"):
        secret = os.environ.get(name)
        if secret and len(secret) >= 8:  # a real key; a one-letter test value would mangle the words
            text = text.replace(secret, "[secret]")
    return text[:1000]


def object_put(target: Target, key: str, body: bytes, sha256: str) -> bool:
    """Write `body` at `key` unless an object with the same SHA-256 is there; True when it wrote."""
    if target.scheme == "file":
        path = Path(target.prefix) / key
        if path.exists() and hashlib.sha256(path.read_bytes()).hexdigest() == sha256:
            return False
        path.parent.mkdir(parents=True, exist_ok=True)
        fd, tmp = tempfile.mkstemp(dir=path.parent, prefix=".tmp-", suffix=".json.gz")
        with os.fdopen(fd, "wb") as fh:
            fh.write(body)
        os.replace(tmp, path)  # readers never see half an object
        return True
    from botocore.exceptions import BotoCoreError, ClientError  # noqa: PLC0415  (boto3 loads only when the store is S3)

    client = _s3_client()
    try:
        try:
            head = client.head_object(Bucket=target.bucket, Key=key)
            if head.get("Metadata", {}).get("sha256") == sha256 and head.get("ContentLength") == len(body):
                return False
        except ClientError as exc:
            if exc.response.get("Error", {}).get("Code") not in ("404", "NoSuchKey", "NotFound"):
                raise
        client.put_object(Bucket=target.bucket, Key=key, Body=body, ContentType="application/json",
                          ContentEncoding="gzip", Metadata={"sha256": sha256},
                          ChecksumAlgorithm="SHA256")
        return True
    except (BotoCoreError, ClientError) as exc:
        raise ArchiveStoreError(describe(exc)) from exc


def object_get(url: str) -> bytes:
    """The bytes of an archived object (for the backfill's checks, tests and a person's download)."""
    parsed = urlparse(url)
    if parsed.scheme == "file":
        return Path(unquote(parsed.path)).read_bytes()
    return _s3_client().get_object(Bucket=parsed.netloc, Key=parsed.path.lstrip("/"))["Body"].read()


def store_problem(*, check_bucket: bool = True) -> str | None:
    """What keeps MAMS_ARCHIVE_URL from working, in words, or None: an invalid URL, a missing bucket,
    a store that cannot be reached. Used by `manage.py check` and the batch page."""
    try:
        target = target_parse(settings.MAMS_ARCHIVE_URL)
    except ArchiveConfigError as exc:
        return str(exc)
    if target.scheme == "file":
        folder = Path(target.prefix)
        existing = next((p for p in (folder, *folder.parents) if p.exists()), None)
        if existing is None or not os.access(existing, os.W_OK):
            return f"The archive folder {folder} cannot be written (MAMS_ARCHIVE_URL)."
        return None
    if not check_bucket:
        return None
    from botocore.exceptions import BotoCoreError, ClientError  # noqa: PLC0415  (boto3 loads only when the store is S3)

    try:
        # One short try: `manage.py check` (and so migrate, runserver) must not hang on a store that is down.
        _s3_client(timeout=min(3.0, settings.MAMS_ARCHIVE_TIMEOUT_SECONDS), attempts=1).head_bucket(
            Bucket=target.bucket)
    except ClientError as exc:
        code = exc.response.get("Error", {}).get("Code", "")
        if code in ("404", "NoSuchBucket", "NotFound"):
            return f"The archive bucket {target.bucket!r} does not exist (MAMS_ARCHIVE_URL); create it or fix the URL."
        if code in ("403", "AccessDenied"):
            return f"Access to the archive bucket {target.bucket!r} is denied: check AWS_ACCESS_KEY_ID and its rights."
        return f"The archive bucket {target.bucket!r} could not be checked: {describe(exc)}"
    except BotoCoreError as exc:
        return f"The archive store could not be reached ({describe(exc)}); check AWS_ENDPOINT_URL_S3."
    return None


_problem_cache: tuple[float, str, str | None] | None = None


def store_problem_cached(ttl: float = 60.0) -> str | None:
    """store_problem, remembered for `ttl` seconds per URL, so a page view costs no round trip."""
    global _problem_cache
    now = time.monotonic()
    if _problem_cache and _problem_cache[1] == settings.MAMS_ARCHIVE_URL and now - _problem_cache[0] < ttl:
        return _problem_cache[2]
    problem = store_problem()
    _problem_cache = (now, settings.MAMS_ARCHIVE_URL, problem)
    return problem


# --- the record -------------------------------------------------------------------------------------


def _money(value: Any) -> str | None:
    return None if value is None else str(value)


def _metrics(run: NegotiationRun) -> dict[str, Any] | None:
    row = RunMetrics.objects.filter(run=run).first()
    if row is None:
        return None
    out: dict[str, Any] = {}
    for f in RunMetrics._meta.concrete_fields:
        if f.name in ("run", "batch"):
            continue
        value = getattr(row, f.attname)
        out[f.name] = value if isinstance(value, bool | int | float | str | type(None) | dict | list) else str(value)
    return out


def _place(run: NegotiationRun, m: Any) -> dict[str, Any]:
    """A message's round of offers, the buyer's turn it was sent in, and whether it is the buyer's closing
    decision, counted as the pages, the API and /env count them (protocol.message_round)."""
    round_no, decision = protocol.message_round(turn=m.round_no, from_buyer=m.sender == BUYER, action=m.action,
                                                max_rounds=run.max_rounds, rules=run.rules)
    return {"round": round_no, "turn": m.round_no, "decision": decision}


def run_record(*, run: NegotiationRun) -> dict[str, Any]:
    """The archive document of one run: plain JSON, with nothing that changes between two writes."""
    ctx = run_context(run, rows=True)
    received = {BUYER: ctx.received(BUYER)}
    for handle in ctx.handles:
        received[handle] = ctx.received(handle)
    audio = _audio_by_message(run)
    messages = []
    for m in ctx.transcript:
        row = ctx.row(m.round_no, m.sender)
        lanes = visibility.audience(m)
        delivered = {}
        for viewer in lanes:
            if viewer == m.sender:
                continue
            got = next((g for g in received.get(viewer, ()) if g.round_no == m.round_no and g.sender == m.sender), None)
            if got is not None and got.text != m.text:
                delivered[viewer] = got.text  # the disclosure rule withheld a number from this lane
        line: dict[str, Any] = {
            "id": str(row.pk) if row else None, **_place(run, m), "sender": m.sender,
            "recipients": list(m.recipients), "visible_to": list(lanes), "action": m.action,
            "price": _money(m.price), "text": m.text, "delivered_text": delivered,
        }
        if row is not None:
            line.update(reasoning=row.reasoning, llm_model=row.llm_model, llm_calls=row.llm_calls,
                        prompt_tokens=row.prompt_tokens, completion_tokens=row.completion_tokens,
                        latency_ms=row.latency_ms, repaired=row.repaired, fallback=row.fallback,
                        created_at=row.created_at.isoformat())
            if str(row.pk) in audio:
                line["audio"] = audio[str(row.pk)]
        messages.append(line)
    outcome = Outcome.objects.filter(run=run).first()
    events = [{"turn": e.round_no, "actor": e.actor, "kind": e.kind, "detail": e.detail,
               "original_price": _money(e.original_price), "repaired_price": _money(e.repaired_price)}
              for e in run.events.all().order_by("round_no", "id")]
    return {
        "format": FORMAT,
        "run": {"id": str(run.pk), "batch_id": str(run.batch_id) if run.batch_id else None,
                "session_id": str(run.session_id), "item_name": run.item_name, "mode": run.mode,
                "status": run.status, "error": run.error, "seed": run.seed, "max_rounds": run.max_rounds,
                "disclosure": run.disclosure, "code_version": run.code_version,
                "created_at": run.created_at.isoformat(),
                "started_at": run.started_at.isoformat() if run.started_at else None,
                "ended_at": run.ended_at.isoformat() if run.ended_at else None},
        "fingerprint": {"buyer": run.buyer_fingerprint, "sellers": run.seller_fingerprint},
        "agents": run.agents,
        "scenario": run.scenario,
        "messages": messages,
        "events": events,
        "outcome": None if outcome is None else {
            "decision": outcome.decision, "reason": outcome.reason, "chosen_handle": outcome.chosen_handle,
            "final_price": _money(outcome.final_price), "quantity": outcome.quantity, "rounds": outcome.rounds,
            "reasoning_summary": outcome.reasoning_summary},
        "metrics": _metrics(run),
    }


def _audio_by_message(run: NegotiationRun) -> dict[str, dict[str, Any]]:
    """The seller audio of a run, base64, by message id (negotiation.voice); empty when voice is off."""
    out = {}
    for a in MessageAudio.objects.filter(message__run=run).order_by("message_id"):
        entry: dict[str, Any] = {"status": a.status, "engine": a.engine, "voice": a.voice,
                                 "content_type": a.content_type, "note": a.note}
        if a.status == MessageAudio.Status.READY and a.data:
            entry["sha256"] = hashlib.sha256(bytes(a.data)).hexdigest()
            entry["base64"] = base64.b64encode(bytes(a.data)).decode()
        out[str(a.message_id)] = entry
    return out


def record_bytes(record: dict[str, Any]) -> bytes:
    """Canonical JSON, gzipped with mtime 0 and no file name: equal records give equal bytes."""
    raw = json.dumps(record, sort_keys=True, separators=(",", ":"), ensure_ascii=False, default=str).encode()
    return gzip.compress(raw, compresslevel=9, mtime=0)


# --- the service the task calls ---------------------------------------------------------------------


class AudioPending(RuntimeError):
    """The run's seller audio is still being made: archive a little later, with it."""


def run_archive(*, run_id: Any, wait_for_audio: bool = True) -> RunArchive | None:
    """Write one ended run's archive object and record where it is; None if the run is gone or not ended.

    Raises ArchiveStoreError (the task retries) or AudioPending. Safe to repeat: the same bytes are not
    written twice, and the record is an update of the run's one RunArchive row.
    """
    run = NegotiationRun.objects.filter(pk=run_id).first()
    if run is None or run.status not in NegotiationRun.TERMINAL:
        return None
    if wait_for_audio and _audio_pending(run):
        raise AudioPending(f"run {run_id}: seller audio is still being made")
    target = target_parse(settings.MAMS_ARCHIVE_URL)
    key = target.key(batch_id=run.batch_id, run_id=run.pk)
    body = record_bytes(run_record(run=run))
    sha = hashlib.sha256(body).hexdigest()
    RunArchive.objects.get_or_create(run=run, defaults={"batch_id": run.batch_id})
    RunArchive.objects.filter(run=run).update(attempts=F("attempts") + 1)
    wrote = object_put(target, key, body, sha)
    with transaction.atomic():
        RunArchive.objects.filter(run=run).update(
            status=RunArchive.Status.ARCHIVED, url=target.url(key), key=key, size=len(body), sha256=sha, error="",
            archived_at=timezone.now())
    log.info("run %s archived at %s (%d bytes, %s)", run.pk, target.url(key), len(body),
             "written" if wrote else "already there")
    return RunArchive.objects.get(run=run)


def _audio_pending(run: NegotiationRun) -> bool:
    return run_audio_pending(run=run)


def run_archive_fail(*, run_id: Any, error: str) -> None:
    """Record on the run that its archive could not be written (shown on the batch page); never raises."""
    run = NegotiationRun.objects.filter(pk=run_id).only("batch_id").first()
    if run is None:
        return
    RunArchive.objects.update_or_create(run=run, defaults={"batch_id": run.batch_id, "status": RunArchive.Status.FAILED,
                                                          "error": error[:2000]})


def archive_on_commit(*, run_id: Any) -> None:
    """The run-end hook: queue the archive task after the ending transaction commits."""
    if not settings.MAMS_ARCHIVE_ENABLED:
        return
    transaction.on_commit(lambda: archive_enqueue(run_id))


def archive_enqueue(run_id: Any, *, countdown: float | None = None) -> None:
    try:
        app.send_task("analytics.archive_run", args=[str(run_id)], queue=Queue.ARCHIVE, countdown=countdown)
    except Exception:  # the broker is down: the backfill (or the sweep) archives the run later
        log.exception("run %s: could not queue its archive; `manage.py archive_backfill` will write it", run_id)


def runs_to_archive(*, batch_id: Any = None) -> Any:
    """Ended runs with no archived object yet (or a failed one), oldest first."""
    qs = NegotiationRun.objects.filter(status__in=NegotiationRun.TERMINAL).exclude(
        archive__status=RunArchive.Status.ARCHIVED)
    if batch_id:
        qs = qs.filter(batch_id=batch_id)
    return qs.order_by("ended_at", "id")


def archive_sweep(*, older_than_seconds: int, limit: int = 500) -> int:
    """Backstop: queue the archive of runs that ended a while ago (within a week) and have no archive row,
    e.g. because the broker was down when they ended. Safe to repeat: the archive task is idempotent."""
    now = timezone.now()
    qs = (NegotiationRun.objects.filter(status__in=NegotiationRun.TERMINAL, archive__isnull=True,
                                        ended_at__lt=now - timedelta(seconds=older_than_seconds),
                                        ended_at__gt=now - timedelta(days=7))
          .order_by("ended_at").values_list("pk", flat=True)[:limit])
    n = 0
    for run_id in qs:
        archive_enqueue(run_id)
        n += 1
    return n


def archive_list(*, batch_id: Any) -> list[RunArchive]:
    return list(RunArchive.objects.filter(batch_id=batch_id).order_by("run__created_at", "run_id"))


def run_archive_note(*, run_id: Any, error: str) -> None:
    """Keep the latest write error on a pending archive while the task retries (the page says "retrying")."""
    run = NegotiationRun.objects.filter(pk=run_id).only("batch_id").first()
    if run is None:
        return
    RunArchive.objects.get_or_create(run=run, defaults={"batch_id": run.batch_id})
    RunArchive.objects.filter(run=run).exclude(status=RunArchive.Status.ARCHIVED).update(error=error[:2000])


def store_label() -> str:
    """MAMS_ARCHIVE_URL as shown to a person (it never holds a secret: keys come from the environment)."""
    return settings.MAMS_ARCHIVE_URL

"""Galileo tracing: one session per batch, one trace per negotiation, one LLM span per call.

A negotiation's LLM calls happen in many Celery tasks (a round task per buyer turn, a task per
seller turn), on any worker, in any thread, and Galileo's batch-mode `GalileoLogger` holds a trace
in the memory of one process. So each call is recorded where it happens, by the gateway
(`record_llm_call`: input, output, model, tokens, duration, and the run/round/role/handle
metadata handed down from play.py and decide.py), into a Redis list keyed by the run, on the Redis
we already run for Celery (one RPUSH; it expires after two days if the run never ends). When the
run ends, the analysis task on the `analysis` queue assembles the trace (`run_trace_flush`):
start the trace, one `add_llm_span` per recorded call plus the analyst's own, conclude with the
outcome, and flush at the end of the task. Galileo's network time therefore never delays a
negotiation turn, and the SDK's `galileo.openai` wrapper (which turns a 429 into a RuntimeError and
breaks the retry logic) is never used.

No GALILEO_API_KEY, no tracing: every function here returns at once and nothing is buffered.
A Galileo failure (down, refusing, slow) is logged and never fails a run: the SDK swallows
ingestion errors itself, and everything here is wrapped besides. `MAMS_GALILEO_INGESTION_HOOK`
(a dotted path) hands the ingest payload to a function instead of the network, the SDK's own
offline seam; tests use it. Scores that Galileo computes on the traces are read back later by
`galileo_scores_fetch` (a periodic task), and shown beside the local scores, labelled.
"""

from __future__ import annotations

import json
import logging
import threading
import time
import uuid
from collections.abc import Callable
from datetime import UTC, datetime
from typing import Any

import redis
from django.conf import settings
from django.utils.module_loading import import_string

log = logging.getLogger(__name__)

BUFFER_TTL_SECONDS = 2 * 24 * 3600
SESSION_NAMESPACE = uuid.UUID("6d616d73-0000-4000-8000-67616c696c65")  # "mams" / "galile"
# Metrics of a trace or span that are measurements, not quality scores.
NOT_SCORES = {"duration_ns", "num_input_tokens", "num_output_tokens", "num_total_tokens", "time_to_first_token_ns",
              "cost", "num_llm_calls"}

_redis: redis.Redis | None = None
_ids: dict[str, str] = {}  # project_id and log_stream_id, resolved once per process
_ids_lock = threading.Lock()


def enabled() -> bool:
    return bool(getattr(settings, "GALILEO_API_KEY", None))


def _hook() -> Callable[[Any], None] | None:
    path = getattr(settings, "MAMS_GALILEO_INGESTION_HOOK", None)
    return import_string(path) if path else None


def _client() -> redis.Redis:
    global _redis
    if _redis is None or _redis.connection_pool.connection_kwargs.get("db") != _db_of(settings.REDIS_URL):
        _redis = redis.Redis.from_url(settings.REDIS_URL, socket_timeout=5, socket_connect_timeout=2)
    return _redis


def _db_of(url: str) -> int:
    tail = url.rsplit("/", 1)[-1]
    return int(tail) if tail.isdigit() else 0


def _key(run_id: Any) -> str:
    return f"mams:galileo:spans:{run_id}"


def meta(*, run: Any, round_no: int, role: str, handle: str) -> dict[str, Any]:
    """The labels of one LLM call's span."""
    return {"run": str(run.pk), "batch": str(run.batch_id or ""), "round": round_no, "role": role, "handle": handle}


def record_llm_call(*, meta: dict[str, Any], chat: list[dict[str, str]] | None, prompt: str | None, reply: Any,
                    temperature: float) -> None:
    """Buffer one successful LLM call for its run's trace; never raises, no-op without a key."""
    if not enabled():
        return
    record = {"input": chat if chat is not None else (prompt or ""), "output": reply.text, "model": reply.model,
              "prompt_tokens": reply.prompt_tokens, "completion_tokens": reply.completion_tokens,
              "duration_ns": int(reply.latency_ms) * 1_000_000, "temperature": temperature, "meta": meta,
              "at": time.time()}
    try:
        pipe = _client().pipeline(transaction=False)
        pipe.rpush(_key(meta["run"]), json.dumps(record, default=str))
        pipe.expire(_key(meta["run"]), BUFFER_TTL_SECONDS)
        pipe.execute()
    except Exception as exc:  # a tracing hiccup must never cost a negotiation turn
        log.warning("run %s: could not buffer an LLM span for Galileo (%s)", meta.get("run"), exc)


def _take(run_id: Any) -> list[dict[str, Any]]:
    pipe = _client().pipeline(transaction=True)
    pipe.lrange(_key(run_id), 0, -1)
    pipe.delete(_key(run_id))
    raw, _ = pipe.execute()
    records = [json.loads(r) for r in raw]
    return sorted(records, key=lambda r: r.get("at", 0))


def _new_logger(hook: Callable[[Any], None] | None) -> Any:
    from galileo.logger import GalileoLogger

    if hook is not None:
        return GalileoLogger(project=settings.GALILEO_PROJECT, log_stream=settings.GALILEO_LOG_STREAM,
                             ingestion_hook=hook)
    with _ids_lock:
        if _ids:
            return GalileoLogger(project_id=_ids["project_id"], log_stream_id=_ids["log_stream_id"])
        logger = GalileoLogger(project=settings.GALILEO_PROJECT, log_stream=settings.GALILEO_LOG_STREAM)
        if logger.project_id and logger.log_stream_id:
            _ids.update(project_id=str(logger.project_id), log_stream_id=str(logger.log_stream_id))
        return logger


def _session(logger: Any, run: Any, hook: Callable[[Any], None] | None) -> str | None:
    """The batch's Galileo session: found or created once (by external id), then cached in Redis."""
    group = str(run.batch_id or run.pk)
    if hook is not None:
        # Galileo's schema wants a version-4 UUID: the batch's name-based UUID, stamped as v4.
        session_id = str(uuid.UUID(bytes=uuid.uuid5(SESSION_NAMESPACE, group).bytes, version=4))
        logger.set_session(session_id)
        return session_id
    key = f"mams:galileo:session:{_ids.get('log_stream_id', '')}:{group}"
    cached = _client().get(key)
    if cached:
        logger.set_session(cached.decode())
        return cached.decode()
    with _client().lock(f"{key}:lock", timeout=30, blocking_timeout=30):
        cached = _client().get(key)
        if cached:
            logger.set_session(cached.decode())
            return cached.decode()
        label = f"batch {group[:8]}" if run.batch_id else f"run {group[:8]}"
        session_id = logger.start_session(name=f"MAMS {label}", external_id=group,
                                          metadata={"batch": str(run.batch_id or ""), "item": run.item_name})
        if session_id:
            _client().set(key, session_id, ex=30 * 24 * 3600)
        return session_id


def _outcome_text(run: Any, analysis: Any) -> str:
    outcome = getattr(run, "outcome", None)
    if run.status == "failed":
        return f"failed: {run.error}"
    if outcome is None:
        return run.status
    text = (f"deal with {outcome.chosen_handle} at ${outcome.final_price} x{outcome.quantity}"
            if outcome.decision == "deal" else f"no deal ({outcome.reason})")
    if analysis is not None and analysis.deal_quality is not None:
        text += (f"; analysis ({analysis.source}): deal quality {analysis.deal_quality:.2f}, coherence "
                 f"{analysis.coherence:.2f}, hallucination {analysis.hallucination:.2f}")
    return text


def _metadata(values: dict[str, Any]) -> dict[str, str]:
    return {k: "" if v is None else str(v) for k, v in values.items()}


def run_trace_flush(*, run: Any, analysis: Any) -> dict[str, Any] | None:
    """Send the run's trace: its buffered LLM spans under one trace in the batch's session.

    Returns {"trace_id", "session_id", "spans"} (also stored on the analysis), or None when Galileo
    is off or nothing could be sent. Never raises.
    """
    if not enabled():
        return None
    try:
        return _flush(run=run, analysis=analysis)
    except Exception as exc:
        log.warning("run %s: could not send its Galileo trace (%s: %s)", run.pk, exc.__class__.__name__, exc)
        return None


def _flush(*, run: Any, analysis: Any) -> dict[str, Any] | None:
    records = _take(run.pk)
    hook = _hook()
    logger = _new_logger(hook)
    session_id = _session(logger, run, hook)
    agents = run.agents or {}
    b = (run.scenario or {}).get("buyer", {})
    started = run.started_at or run.created_at
    ended = run.ended_at or datetime.now(UTC)
    trace = logger.start_trace(
        input=f"Buy {b.get('quantity', '?')} x {run.item_name} from {len((run.scenario or {}).get('sellers', []))} "
              f"sellers in at most {run.max_rounds} rounds (seed {run.seed})",
        name=f"negotiation {str(run.pk)[:8]}", created_at=started, external_id=str(run.pk),
        metadata=_metadata({"run": run.pk, "batch": run.batch_id, "seed": run.seed, "item": run.item_name,
                            "mode": run.mode, "status": run.status,
                            "buyer_model": (agents.get("buyer") or {}).get("model"),
                            "seller_model": (agents.get("seller") or {}).get("model"),
                            "analyst_model": (agents.get("analyst") or {}).get("model")}),
        tags=["mams", run.status] + ([f"batch:{run.batch_id}"] if run.batch_id else []))
    for r in records:
        m = r.get("meta") or {}
        logger.add_llm_span(
            input=r["input"], output=r["output"], model=r.get("model"),
            name=f"{m.get('role', 'llm')} {m.get('handle', '')} R{m.get('round', '?')}".strip(),
            created_at=datetime.fromtimestamp(r.get("at", time.time()), tz=UTC),
            duration_ns=r.get("duration_ns"), metadata=_metadata(m),
            num_input_tokens=r.get("prompt_tokens"), num_output_tokens=r.get("completion_tokens"),
            total_tokens=(r.get("prompt_tokens") or 0) + (r.get("completion_tokens") or 0),
            temperature=r.get("temperature"), status_code=200)
    logger.conclude(output=_outcome_text(run, analysis), duration_ns=int((ended - started).total_seconds() * 1e9),
                    status_code=200 if run.status == "completed" else 500)
    errors: list[Exception] = []
    logger.flush(on_error=errors.append)
    result = {"trace_id": str(trace.id), "session_id": session_id, "spans": len(records),
              "sent_at": datetime.now(UTC).isoformat()}
    if errors:
        result["error"] = f"{errors[0].__class__.__name__}: {str(errors[0])[:300]}"
        log.warning("run %s: Galileo refused its trace (%s)", run.pk, result["error"])
    if analysis is not None:
        from analytics.models import RunAnalysis

        RunAnalysis.objects.filter(run_id=run.pk).update(galileo={**(analysis.galileo or {}), **result})
        analysis.galileo = {**(analysis.galileo or {}), **result}
    return result


# --- reading Galileo's scores back -------------------------------------------------------------


def _scores(metrics: Any) -> dict[str, float]:
    if not isinstance(metrics, dict):
        return {}
    out = {}
    for k, v in metrics.items():
        if k in NOT_SCORES:
            continue
        if isinstance(v, dict):  # {"value": 0.9, ...}
            v = v.get("value", v.get("score"))
        if isinstance(v, bool) or not isinstance(v, int | float):
            continue
        out[k] = round(float(v), 4)
    return out


def _get_trace(trace_id: str) -> dict[str, Any] | None:
    from galileo.traces import Traces
    from galileo_core.helpers.execution import async_run

    if not _ids:
        _new_logger(None)
    client = Traces(project_id=_ids["project_id"], log_stream_id=_ids["log_stream_id"])
    return async_run(client.get_trace(trace_id))


def galileo_scores_fetch(*, run_id: Any) -> dict[str, float] | None:
    """Read Galileo's scores of a run's trace and spans back; store them beside the local ones.

    Returns the trace's scores, or None when Galileo is off, the trace is unknown, or Galileo has
    not scored it yet (the periodic task tries again later). Never raises.
    """
    from analytics.models import RunAnalysis
    from negotiation.models import Message

    if not enabled():
        return None
    analysis = RunAnalysis.objects.filter(run_id=run_id).first()
    trace_id = ((analysis.galileo or {}) if analysis else {}).get("trace_id")
    if not trace_id:
        return None
    try:
        trace = _get_trace(trace_id)
    except Exception as exc:
        log.warning("run %s: could not read its Galileo scores (%s: %s)", run_id, exc.__class__.__name__, exc)
        return None
    if not isinstance(trace, dict):
        return None
    scores = _scores(trace.get("metrics"))
    by_turn: dict[tuple[int, str], dict[str, float]] = {}
    for span in trace.get("spans") or []:
        meta_ = span.get("user_metadata") or span.get("metadata") or {}
        span_scores = _scores(span.get("metrics"))
        if span_scores and meta_.get("round") and meta_.get("handle") and meta_.get("role") != "analyst":
            by_turn[(int(meta_["round"]), meta_["handle"])] = span_scores
    if not scores and not by_turn:
        return None
    RunAnalysis.objects.filter(run_id=run_id).update(galileo={**analysis.galileo, "scores": scores,
                                                              "read_at": datetime.now(UTC).isoformat()})
    if by_turn:
        rows = list(Message.objects.filter(run_id=run_id).only("id", "round_no", "sender", "quality"))
        for m in rows:
            found = by_turn.get((m.round_no, m.sender))
            if found:
                m.quality = {**(m.quality or {}), "galileo": found,
                             "source": "galileo+local" if m.quality else "galileo"}
        Message.objects.bulk_update(rows, ["quality"], batch_size=200)
    return scores


def galileo_scores_sweep(*, limit: int = 200) -> int:
    """Read back the scores of recent traces that have none yet (a periodic task); returns how many."""
    from datetime import timedelta

    from django.utils import timezone

    from analytics.models import RunAnalysis

    if not enabled():
        return 0
    since = timezone.now() - timedelta(days=1)
    pending = (RunAnalysis.objects.filter(galileo__has_key="trace_id", updated_at__gte=since)
               .exclude(galileo__has_key="scores").values_list("run_id", flat=True)[:limit])
    return sum(1 for run_id in pending if galileo_scores_fetch(run_id=run_id) is not None)

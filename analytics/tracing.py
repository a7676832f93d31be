"""Galileo tracing: one session per batch, one trace per negotiation, one LLM span per call.

The gateway buffers each LLM call in Redis as it happens (negotiation/agents/spans.py, keyed by the
run). When the run ends, the analysis task on the `analysis` queue assembles the trace here
(`run_trace_flush`): start the trace in the batch's session, one `add_llm_span` per buffered call
plus the analyst's own, conclude with the outcome, and flush at the end of the task. Galileo's
network time therefore never delays a negotiation turn, and the SDK's `galileo.openai` wrapper
(which turns a 429 into a RuntimeError and breaks the retry logic) is never used.

No GALILEO_API_KEY, no tracing: `enabled()` is false, the gateway buffers nothing and
`run_trace_flush` returns at once. A Galileo failure (down, refusing, slow) is logged and never
fails a run: the SDK swallows ingestion errors itself, and everything here is wrapped besides.
`MAMS_GALILEO_INGESTION_HOOK` (a dotted path) hands the ingest payload to a function instead of the
network, the SDK's own offline seam; tests use it. Galileo's scores of the traces are read back
later by analytics/galileo_scores.py.
"""

from __future__ import annotations

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

from analytics.models import RunAnalysis
from negotiation.agents import spans

log = logging.getLogger(__name__)

SESSION_NAMESPACE = uuid.UUID("6d616d73-0000-4000-8000-67616c696c65")  # "mams" / "galile"
_ids: dict[str, str] = {}  # project_id and log_stream_id, resolved once per process
_ids_lock = threading.Lock()


def enabled() -> bool:
    return bool(getattr(settings, "GALILEO_API_KEY", None))


def _hook() -> Callable[[Any], None] | None:
    path = getattr(settings, "MAMS_GALILEO_INGESTION_HOOK", None)
    return import_string(path) if path else None


def _client() -> redis.Redis:
    """The Redis of the span buffer, which also caches each batch's Galileo session id."""
    return spans.client(settings.REDIS_URL)


def _text(value: bytes | str | None) -> str | None:
    return value.decode() if isinstance(value, bytes) else value


def project_ids() -> dict[str, str]:
    """Galileo's project and log stream ids of the configured names, resolved once per process."""
    if not _ids:
        _new_logger(None)
    return _ids


def _new_logger(hook: Callable[[Any], None] | None) -> Any:
    from galileo.logger import GalileoLogger  # noqa: PLC0415  (the SDK is heavy: loaded when a trace is sent)

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
    cached = _text(_client().get(key))
    if cached:
        logger.set_session(cached)
        return cached
    with _client().lock(f"{key}:lock", timeout=30, blocking_timeout=30):
        cached = _text(_client().get(key))
        if cached:
            logger.set_session(cached)
            return cached
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
    except Exception as exc:  # noqa: BLE001  (a Galileo failure never fails a run; logged)
        log.warning("run %s: could not send its Galileo trace (%s: %s)", run.pk, exc.__class__.__name__, exc)
        return None


def _flush(*, run: Any, analysis: Any) -> dict[str, Any] | None:
    records = spans.take(url=settings.REDIS_URL, run_id=run.pk)
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
        RunAnalysis.objects.filter(run_id=run.pk).update(galileo={**(analysis.galileo or {}), **result})
        analysis.galileo = {**(analysis.galileo or {}), **result}
    return result

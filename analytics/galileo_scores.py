"""Galileo's own scores of MAMS's traces, read back and stored beside the local scores.

Galileo scores a trace some time after it was sent (analytics/tracing.py), so a periodic task
(`galileo_scores_sweep`) reads back the traces of the last day that have no scores yet, and stores
the trace's scores on the run's analysis and each span's scores on its message, labelled as
Galileo's. Off without a key; never raises.
"""

from __future__ import annotations

import logging
from datetime import UTC, datetime, timedelta
from typing import Any

from django.utils import timezone

from analytics import tracing
from analytics.models import RunAnalysis
from negotiation.models import Message

log = logging.getLogger(__name__)

# Metrics of a trace or span that are measurements, not quality scores.
NOT_SCORES = {"duration_ns", "num_input_tokens", "num_output_tokens", "num_total_tokens", "time_to_first_token_ns",
              "cost", "num_llm_calls"}


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
    from galileo.traces import Traces  # noqa: PLC0415  (the SDK is heavy: loaded by the periodic task only)
    from galileo_core.helpers.execution import async_run  # noqa: PLC0415

    ids = tracing.project_ids()
    client = Traces(project_id=ids["project_id"], log_stream_id=ids["log_stream_id"])
    return async_run(client.get_trace(trace_id))


def galileo_scores_fetch(*, run_id: Any) -> dict[str, float] | None:
    """Read Galileo's scores of a run's trace and spans back; store them beside the local ones.

    Returns the trace's scores, or None when Galileo is off, the trace is unknown, or Galileo has
    not scored it yet (the periodic task tries again later). Never raises.
    """
    if not tracing.enabled():
        return None
    analysis = RunAnalysis.objects.filter(run_id=run_id).first()
    trace_id = ((analysis.galileo or {}) if analysis else {}).get("trace_id")
    if not trace_id:
        return None
    try:
        trace = _get_trace(trace_id)
    except Exception as exc:  # noqa: BLE001  (Galileo's failures must never fail the task; logged)
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
    if analysis is None or (not scores and not by_turn):
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
    if not tracing.enabled():
        return 0
    since = timezone.now() - timedelta(days=1)
    pending = (RunAnalysis.objects.filter(galileo__has_key="trace_id", updated_at__gte=since)
               .exclude(galileo__has_key="scores").values_list("run_id", flat=True)[:limit])
    return sum(1 for run_id in pending if galileo_scores_fetch(run_id=run_id) is not None)

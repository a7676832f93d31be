"""`GET /api/negotiations/{id}/stream`: a run's messages, offers and outcome as server-sent events.

Events: `message` (a buyer message or a seller's decline), `offer` (a seller reply with a price),
`outcome`, for a human or external buyer a `debrief` (every seller's floor, the ZOPA, the buyer's
surplus share: negotiation/services/outside.py), then `end` (with the run's final status) before the
server closes the stream. A
comment line (`: keep-alive`) is sent every MAMS_SSE_HEARTBEAT_SECONDS. Each event's `id` is a
resume cursor (see negotiation/services/events.py): reconnect with the `Last-Event-ID` header (or
`?last_event_id=`, for clients that cannot set headers) and every event not yet received arrives
exactly once. A human buyer's stream carries the buyer's view only.
"""

from __future__ import annotations

from typing import Any

from django.conf import settings
from django.http import StreamingHttpResponse
from drf_spectacular.types import OpenApiTypes
from drf_spectacular.utils import OpenApiParameter, extend_schema
from rest_framework.renderers import JSONRenderer
from rest_framework.request import Request
from rest_framework.views import APIView

from negotiation.api.common import EventStreamRenderer, errors
from negotiation.api.runs import DebriefSerializer, OutcomeSerializer, message_data, run_or_404
from negotiation.models import NegotiationRun
from negotiation.services import outside
from negotiation.services.events import Cursor, run_stream


def _renderer(run: NegotiationRun) -> Any:
    def render(kind: str, row: Any, audience: tuple[str, ...]) -> dict[str, Any]:
        if kind == "outcome":
            return OutcomeSerializer(row).data
        if kind == "debrief":
            body = outside.debrief(row)
            return DebriefSerializer(body).data if body is not None else {}
        return message_data(run, row, audience)
    return render


class RunStreamApi(APIView):
    renderer_classes = [JSONRenderer, EventStreamRenderer]

    @extend_schema(tags=["negotiations"], operation_id="negotiations_stream", parameters=[
        OpenApiParameter("Last-Event-ID", str, OpenApiParameter.HEADER, required=False,
                         description="Resume after this event id."),
        OpenApiParameter("last_event_id", str, required=False, description="The same, as a query parameter."),
    ], responses={(200, "text/event-stream"): OpenApiTypes.STR, **errors(401, 404)},
        description=__doc__)
    def get(self, request: Request, run_id: Any) -> StreamingHttpResponse:
        run = run_or_404(request, run_id, shared=True)
        cursor = Cursor.parse(request.headers.get("Last-Event-ID") or request.query_params.get("last_event_id"))
        body = run_stream(run_id=run.pk, cursor=cursor, render=_renderer(run),
                          heartbeat=settings.MAMS_SSE_HEARTBEAT_SECONDS, max_seconds=settings.MAMS_SSE_MAX_SECONDS,
                          poll=settings.MAMS_SSE_POLL_SECONDS)
        response = StreamingHttpResponse(body, content_type="text/event-stream")
        response["Cache-Control"] = "no-cache"
        response["X-Accel-Buffering"] = "no"  # nginx: do not buffer the stream
        return response

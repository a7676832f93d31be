"""What the API views share: a size-limited JSON parser, the non-JSON renderers, pagination,
the error schema, and the small serializer pieces several resources use."""

from __future__ import annotations

import io
from typing import Any

from django.conf import settings
from drf_spectacular.utils import OpenApiParameter, OpenApiResponse, inline_serializer
from rest_framework import serializers
from rest_framework.pagination import LimitOffsetPagination
from rest_framework.parsers import JSONParser
from rest_framework.renderers import BaseRenderer, JSONRenderer
from rest_framework.request import Request
from rest_framework.response import Response

from negotiation.api.errors import PayloadTooLarge

MONEY = {"max_digits": 10, "decimal_places": 2}


class LimitedJSONParser(JSONParser):
    """JSON only, and never more than DATA_UPLOAD_MAX_MEMORY_SIZE bytes read into memory.

    DRF's parser reads the raw stream, which bypasses Django's own body-size check, so the limit
    is enforced here: by the declared Content-Length, and by reading at most one byte more.
    """

    def parse(self, stream: Any, media_type: str | None = None, parser_context: dict | None = None) -> Any:
        limit = settings.DATA_UPLOAD_MAX_MEMORY_SIZE
        request = (parser_context or {}).get("request")
        meta = getattr(request, "META", {}) if request is not None else {}
        try:
            declared = int(meta.get("CONTENT_LENGTH") or 0)
        except (TypeError, ValueError):
            declared = 0
        too_big = f"The request body is larger than the {limit} bytes allowed."
        if limit is not None and declared > limit:
            raise PayloadTooLarge(too_big)
        data = stream.read(limit + 1) if limit is not None else stream.read()
        if limit is not None and len(data) > limit:
            raise PayloadTooLarge(too_big)
        return super().parse(io.BytesIO(data), media_type, parser_context)


class _PassthroughRenderer(BaseRenderer):
    """For views that stream their own body; errors on them still render as JSON text."""

    charset = "utf-8"

    def render(self, data: Any, accepted_media_type: str | None = None, renderer_context: dict | None = None
               ) -> bytes:
        return JSONRenderer().render(data)


class CSVRenderer(_PassthroughRenderer):
    media_type = "text/csv"
    format = "csv"


class JSONLinesRenderer(_PassthroughRenderer):
    media_type = "application/x-ndjson"
    format = "jsonl"


class EventStreamRenderer(_PassthroughRenderer):
    media_type = "text/event-stream"
    format = "sse"


class Pagination(LimitOffsetPagination):
    default_limit = 50
    max_limit = 500


def paginated_response(*, request: Request, view: Any, queryset: Any, serializer: type[serializers.Serializer],
                       context: dict | None = None) -> Response:
    paginator = Pagination()
    page = paginator.paginate_queryset(queryset, request, view=view)
    data = serializer(page, many=True, context={"request": request, **(context or {})}).data
    return paginator.get_paginated_response(data)


PAGE_PARAMETERS = [
    OpenApiParameter("limit", int, description="Page size (default 50, at most 500)."),
    OpenApiParameter("offset", int, description="Rows to skip."),
]


def page_of(serializer: type[serializers.Serializer], name: str) -> serializers.Serializer:
    return inline_serializer(name=name, fields={
        "count": serializers.IntegerField(),
        "next": serializers.URLField(allow_null=True),
        "previous": serializers.URLField(allow_null=True),
        "results": serializer(many=True),
    })


ErrorSerializer = inline_serializer(name="Error", fields={
    "detail": serializers.CharField(help_text="A one-line summary."),
    "errors": serializers.DictField(child=serializers.ListField(child=serializers.CharField()),
                                    help_text='Messages by field path, e.g. {"items[0].max_price": ["..."]}.'),
})


def errors(*codes: int) -> dict[int, OpenApiResponse]:
    """The documented error responses of an operation (401 and 404 are added where they apply)."""
    words = {400: "Invalid input; messages by field path.", 401: "Not authenticated.",
             404: "No such object, or not yours.", 409: "Conflicts with the current state.",
             413: "Request body too large.", 429: "A per-user limit is reached; retry once earlier work is done."}
    return {code: OpenApiResponse(ErrorSerializer, description=words.get(code, "")) for code in codes}

"""What the API views share: a size-limited JSON parser, the non-JSON renderers, pagination,
the error schema, and the small serializer pieces several resources use."""

from __future__ import annotations

import json
import math
from collections.abc import Mapping
from typing import Any

from django.conf import settings
from drf_spectacular.utils import OpenApiParameter, OpenApiResponse, inline_serializer
from rest_framework import serializers
from rest_framework.exceptions import ParseError
from rest_framework.pagination import LimitOffsetPagination
from rest_framework.parsers import JSONParser
from rest_framework.renderers import BaseRenderer, JSONRenderer
from rest_framework.request import Request
from rest_framework.response import Response

from negotiation.api.errors import body_too_large

# No MAMS request nests deeper than 5 levels (a session document: sellers[i].inventory[j].field).
MAX_JSON_DEPTH = 20
# No MAMS number needs more digits; longer ones are refused before Python converts them.
MAX_NUMBER_DIGITS = 40


def _json_object(pairs: list[tuple[str, Any]]) -> dict[str, Any]:
    # json keeps the last of two equal keys without a word; in a hand-edited file that loses data.
    obj: dict[str, Any] = {}
    for key, value in pairs:
        if key in obj:
            raise ValueError(f"the key {key[:50]!r} appears twice in one object; keep only one of them")
        obj[key] = value
    return obj


def _json_int(text: str) -> int:
    if len(text.lstrip("-")) > MAX_NUMBER_DIGITS:
        raise ValueError(f"a number has {len(text.lstrip('-'))} digits; at most {MAX_NUMBER_DIGITS} are accepted")
    return int(text)


def _json_float(text: str) -> float:
    value = float(text)
    if math.isinf(value):
        raise ValueError(f"the number {text[:MAX_NUMBER_DIGITS]} is out of range")
    return value


def _json_constant(name: str) -> None:
    raise ValueError(f"{name} is not a JSON number; send a finite number (prices as strings, e.g. \"9.50\")")


def _json_depth(value: Any) -> int:
    """How deeply arrays and objects nest (a scalar is 0), without recursion; stops past the limit."""
    deepest, stack = 0, [(value, 1)] if isinstance(value, dict | list) else []
    while stack and deepest <= MAX_JSON_DEPTH:
        node, depth = stack.pop()
        deepest = max(deepest, depth)
        children = node.values() if isinstance(node, dict) else node
        stack.extend((child, depth + 1) for child in children if isinstance(child, dict | list))
    return deepest


class LimitedJSONParser(JSONParser):
    """JSON only, at most DATA_UPLOAD_MAX_MEMORY_SIZE bytes, nested at most MAX_JSON_DEPTH levels.

    DRF's parser reads the raw stream, which bypasses Django's own body-size check, so the limit
    is enforced here: by the declared Content-Length, and by reading at most one byte more. A
    deeply nested body makes Python's json raise RecursionError (a 500 in DRF's parser), so that
    is a 400 here too. Duplicate keys, infinite floats and absurdly long numbers are refused
    rather than silently resolved.
    """

    def parse(self, stream: Any, media_type: str | None = None, parser_context: Mapping[str, Any] | None = None
              ) -> Any:
        limit = settings.DATA_UPLOAD_MAX_MEMORY_SIZE
        request = (parser_context or {}).get("request")
        meta = getattr(request, "META", {}) if request is not None else {}
        try:
            declared = int(meta.get("CONTENT_LENGTH") or 0)
        except (TypeError, ValueError):
            declared = 0
        if limit is not None and declared > limit:
            raise body_too_large(meta)
        data = stream.read(limit + 1) if limit is not None else stream.read()
        if limit is not None and len(data) > limit:
            raise body_too_large(None)
        too_deep = ParseError(f"The JSON nests arrays and objects more than {MAX_JSON_DEPTH} levels deep; no MAMS "
                              "request needs more than 5 (a session document). Check that you are sending "
                              "the right document.")
        encoding = (parser_context or {}).get("encoding", settings.DEFAULT_CHARSET)
        try:
            parsed = json.loads(data.decode(encoding), object_pairs_hook=_json_object, parse_int=_json_int,
                                parse_float=_json_float, parse_constant=_json_constant)
        except RecursionError:
            raise too_deep from None
        except ValueError as exc:  # UnicodeDecodeError included
            raise ParseError(f"JSON parse error - {exc}") from exc
        if _json_depth(parsed) > MAX_JSON_DEPTH:
            raise too_deep
        return parsed


class _PassthroughRenderer(BaseRenderer):
    """For views that stream their own body; errors on them still render as JSON text."""

    charset = "utf-8"

    def render(self, data: Any, accepted_media_type: str | None = None,
               renderer_context: Mapping[str, Any] | None = None) -> bytes:
        return JSONRenderer().render(data)


class BinaryRenderer(_PassthroughRenderer):
    """For views that return bytes (audio, archive objects) to a client that accepts them (e.g. audio/*)."""

    media_type = "*/*"
    format = "bin"


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
    page: list[Any] | None = paginator.paginate_queryset(queryset, request, view=view)
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
             403: "You may read this but not change it (a shared benchmark batch).",
             404: "No such object, or not yours.", 409: "Conflicts with the current state.",
             413: "Request body too large.", 429: "A per-user limit is reached; retry once earlier work is done."}
    return {code: OpenApiResponse(ErrorSerializer, description=words.get(code, "")) for code in codes}

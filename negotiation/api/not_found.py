"""Unknown paths under /api/ and /env/ answer a JSON 404 in the API's error shape, not an HTML page.

A client of the API parses every answer as JSON; an HTML 404 (or, under the local DEBUG default,
Django's page that lists every URL pattern) is neither readable by it nor something to show. The
catch-all comes last in each URL list. Django's APPEND_SLASH redirect only runs for paths that do not
resolve, so the catch-all does it itself: a path that exists with a trailing slash is redirected there.
"""

from __future__ import annotations

from typing import Any

from django.http import HttpRequest, HttpResponse, HttpResponsePermanentRedirect, JsonResponse
from django.urls import Resolver404, resolve

from negotiation.api.errors import error_body


def api_not_found(request: HttpRequest, *args: Any, **kwargs: Any) -> HttpResponse:
    path = request.path_info
    if not path.endswith("/"):
        try:
            match = resolve(path + "/")
        except Resolver404:
            match = None
        if match is not None and match.func is not api_not_found:
            query = request.META.get("QUERY_STRING", "")
            return HttpResponsePermanentRedirect(request.path + "/" + (f"?{query}" if query else ""))
    root = "/env/" if path.startswith("/env/") else "/api/"
    detail = (f"No such endpoint: {request.method} {path}. The endpoints are listed in the API schema at "
              f"/api/schema/ (browsable at /api/docs/)" + (" and in the README's environment API section."
                                                             if root == "/env/" else "."))
    return JsonResponse(error_body(detail, {"path": [detail]}), status=404)

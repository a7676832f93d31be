"""CSV and JSON downloads of the pages' tables: `?export=csv` or `?export=json` on a page gives the
table it shows, with the same columns under the same headings, the same filters and the same order
(every matching row, not one screen's page of them), as plain values: a share as a fraction 0-1,
money in dollars, times in ISO 8601, ids in full. A researcher's notebook reads either directly.
"""

from __future__ import annotations

import csv
import io
import json
from collections.abc import Iterable, Sequence
from datetime import date, datetime
from decimal import Decimal
from typing import Any
from uuid import UUID

from django.http import HttpRequest, HttpResponse

FORMATS = ("csv", "json")


def requested(request: HttpRequest) -> str | None:
    """The export asked for, or None for the page itself; an unknown format is a ValueError."""
    fmt = request.GET.get("export")
    if not fmt:
        return None
    if fmt not in FORMATS:
        raise ValueError(f"export: must be one of {', '.join(FORMATS)}; got {fmt!r}.")
    return fmt


def plain(value: Any) -> Any:
    if isinstance(value, Decimal):
        return float(value)
    if isinstance(value, datetime | date):
        return value.isoformat()
    if isinstance(value, UUID):
        return str(value)
    if isinstance(value, list | tuple):
        return [plain(v) for v in value]
    return value


def response(fmt: str, *, name: str, columns: Sequence[str], rows: Iterable[Sequence[Any]]) -> HttpResponse:
    rows = [[plain(v) for v in row] for row in rows]
    if fmt == "json":
        body = json.dumps({"columns": list(columns), "rows": [dict(zip(columns, r, strict=True)) for r in rows]},
                          indent=1)
        out = HttpResponse(body, content_type="application/json")
    else:
        buf = io.StringIO()
        writer = csv.writer(buf)
        writer.writerow(columns)
        for r in rows:
            writer.writerow(["" if v is None else " ".join(v) if isinstance(v, list) else v for v in r])
        out = HttpResponse(buf.getvalue(), content_type="text/csv; charset=utf-8")
    out["Content-Disposition"] = f'attachment; filename="{name}.{fmt}"'
    return out


def bad_request(message: str) -> HttpResponse:
    return HttpResponse(message, status=400, content_type="text/plain; charset=utf-8")

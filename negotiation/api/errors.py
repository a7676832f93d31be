"""One error shape for every 4xx: `{"detail": "summary", "errors": {"field.path": ["message"]}}`.

Paths use the same notation as the services (`sellers[1].inventory[0].least_price`), so a DRF
serializer error and a model constraint reported by a service read alike. Django's
ValidationError from a service becomes 400, a ConflictError or a protected delete 409, an
oversize body 413, a used-up per-user quota (LimitExceeded) 429; anything DRF already knows keeps
its status and gets the same shape. An IntegrityError that got past a service's checks (two requests
racing for one name) is a 400 that names the rule: the message is the constraint's own
`violation_error_message`, found by the constraint name Postgres reports, so the words live in one
place (the model).
"""

from __future__ import annotations

from typing import Any

from django.apps import apps
from django.conf import settings
from django.core.exceptions import PermissionDenied, RequestDataTooBig, ValidationError
from django.db import IntegrityError
from django.db.models import ProtectedError
from django.http import Http404
from rest_framework import exceptions, status
from rest_framework.response import Response
from rest_framework.views import exception_handler as drf_exception_handler
from rest_framework.views import set_rollback

from negotiation.services.errors import ConflictError, LimitExceeded, flatten


class PayloadTooLarge(exceptions.APIException):
    status_code = status.HTTP_413_REQUEST_ENTITY_TOO_LARGE
    default_detail = "The request body is too large."
    default_code = "payload_too_large"


def body_too_large(meta: Any) -> PayloadTooLarge:
    """413 for a body over DATA_UPLOAD_MAX_MEMORY_SIZE, with its declared size when there is one."""
    limit = settings.DATA_UPLOAD_MAX_MEMORY_SIZE
    try:
        size = int((meta or {}).get("CONTENT_LENGTH") or 0)
    except (TypeError, ValueError):
        size = 0
    size_note = f" (this one is {size} bytes)" if size > limit else ""
    return PayloadTooLarge(f"The request body is larger than the {limit} bytes allowed{size_note}. A session "
                           "document is a few KiB: check that you are sending the right file. Operators set "
                           "the limit with MAMS_MAX_BODY_BYTES.")


# DRF quotes the input in some messages ("xxx…" is not a valid choice); a megabyte quoted back helps no one.
MAX_MESSAGE_CHARS = 300


def _short(message: Any) -> str:
    text = str(message)
    return text if len(text) <= MAX_MESSAGE_CHARS else text[:MAX_MESSAGE_CHARS - 1] + "…"


def flatten_detail(detail: Any, prefix: str = "") -> dict[str, list[str]]:
    """DRF's nested error detail (dicts, lists per item) as {"a.b[0].c": [messages]}."""
    out: dict[str, list[str]] = {}

    def walk(node: Any, path: str) -> None:
        if isinstance(node, dict):
            for key, value in node.items():
                if isinstance(key, int):  # DRF keys list items by index
                    walk(value, f"{path}[{key}]")
                elif str(key) in ("non_field_errors", "__all__"):
                    walk(value, path)
                else:
                    walk(value, f"{path}.{key}" if path else str(key))
        elif isinstance(node, list):
            if all(not isinstance(x, dict | list) for x in node):
                out.setdefault(path or "non_field_errors", []).extend(_short(x) for x in node)
            else:
                for i, item in enumerate(node):
                    if item:
                        walk(item, f"{path}[{i}]")
        else:
            out.setdefault(path or "non_field_errors", []).append(_short(node))

    walk(detail, prefix)
    return out


def error_body(detail: str, errors: dict[str, list[str]] | None = None) -> dict[str, Any]:
    return {"detail": detail, "errors": errors or {}}


def _summary(errors: dict[str, list[str]], fallback: str) -> str:
    for path, messages in errors.items():
        if messages:
            return f"{path}: {messages[0]}" if path != "non_field_errors" else messages[0]
    return fallback


# Rules enforced in SQL outside any model's Meta (the migration's trigger), by constraint name.
SQL_RULES = {"session_max_10_sellers": ("non_field_errors", f"A session has at most {settings.MAMS_MAX_SELLERS} "
                                                            "sellers and this one is full.")}


def constraint_rule(name: str) -> tuple[str, str] | None:
    """(field path, message) of a named database constraint, from the model that declares it."""
    if name in SQL_RULES:
        return SQL_RULES[name]
    for model in apps.get_models():
        for constraint in model._meta.constraints:
            if constraint.name == name:
                fields = [f for f in getattr(constraint, "fields", ()) if not model._meta.get_field(f).is_relation]
                key_to_name = {getattr(model, "KEY_FIELD", None): getattr(model, "NAME_FIELD", None)}
                field = key_to_name.get(fields[0], fields[0]) if len(fields) == 1 else "non_field_errors"
                return field, str(constraint.violation_error_message or constraint.get_violation_error_message())
    return None


def integrity_response(exc: IntegrityError) -> Response:
    """A 400 for a database rule that refused a write; the transaction is rolled back."""
    name = getattr(getattr(exc.__cause__, "diag", None), "constraint_name", None) or ""
    rule = constraint_rule(name)
    if rule is None:
        field, message = "non_field_errors", (f"The database refused this change (rule {name or 'unnamed'}); "
                                              "nothing was saved. Check the values against the documented rules.")
    else:
        field, message = rule
    set_rollback()
    return Response(error_body(message, {field: [message]}), status=status.HTTP_400_BAD_REQUEST)


def exception_handler(exc: Exception, context: dict[str, Any]) -> Response | None:
    if isinstance(exc, IntegrityError):
        return integrity_response(exc)
    if isinstance(exc, ValidationError):
        errors = flatten(exc)
        return Response(error_body(_summary(errors, "Invalid input."), errors), status=status.HTTP_400_BAD_REQUEST)
    if isinstance(exc, ConflictError):
        return Response(error_body(exc.message, {exc.field: [exc.message]}), status=status.HTTP_409_CONFLICT)
    if isinstance(exc, LimitExceeded):
        return Response(error_body(exc.message, {exc.field: [exc.message]}),
                        status=status.HTTP_429_TOO_MANY_REQUESTS)
    if isinstance(exc, ProtectedError):
        msg = "This object is still referenced by runs or batches and cannot be deleted."
        return Response(error_body(msg, {"non_field_errors": [msg]}), status=status.HTTP_409_CONFLICT)
    if isinstance(exc, RequestDataTooBig):
        exc = body_too_large(getattr(context.get("request"), "META", None))
    if isinstance(exc, Http404):
        exc = exceptions.NotFound()
    elif isinstance(exc, PermissionDenied):
        exc = exceptions.PermissionDenied()
    response = drf_exception_handler(exc, context)
    if response is None:
        return None
    if isinstance(exc, exceptions.ValidationError):
        errors = flatten_detail(exc.detail)
        response.data = error_body(_summary(errors, "Invalid input."), errors)
    elif isinstance(exc, exceptions.ParseError | PayloadTooLarge):
        response.data = error_body(str(exc.detail), {"body": [str(exc.detail)]})
    else:
        detail = exc.detail if isinstance(exc, exceptions.APIException) else str(exc)
        response.data = error_body(str(detail) if not isinstance(detail, dict | list) else "Error.",
                                   flatten_detail(detail) if isinstance(detail, dict | list) else {})
    return response

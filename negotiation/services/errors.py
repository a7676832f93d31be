"""Domain errors raised by services; the API and commands turn them into readable 400s."""

from __future__ import annotations

from django.core.exceptions import ValidationError


def flatten(error: ValidationError, prefix: str = "") -> dict[str, list[str]]:
    """A ValidationError as {"field.path": [messages]}, the shape every edge reports."""
    out: dict[str, list[str]] = {}
    if hasattr(error, "error_dict"):
        for field, errors in error.error_dict.items():
            key = f"{prefix}.{field}" if prefix and field != "__all__" else (prefix or field)
            for err in errors:
                out.setdefault(key, []).extend(err.messages)
    else:
        out.setdefault(prefix or "non_field_errors", []).extend(error.messages)
    return out


def raise_at(path: str, message: str) -> None:
    raise ValidationError({path: [message]})


class LimitExceeded(Exception):
    """A per-user quota is used up (e.g. too many active batches); the API answers 429.

    Unlike bad input, the same request succeeds later, once the user's earlier work has finished.
    """

    def __init__(self, message: str, *, field: str = "non_field_errors") -> None:
        super().__init__(message)
        self.message = message
        self.field = field


class ConflictError(Exception):
    """A request that is valid but clashes with the current state (a finished run, a reused key).

    The API answers 409 with `field` as the error path, so a client can tell it from bad input.
    """

    def __init__(self, message: str, *, field: str = "non_field_errors") -> None:
        super().__init__(message)
        self.message = message
        self.field = field

"""Strict request bodies: every API input serializer derives from `StrictSerializer`.

DRF by default drops a key it does not know and converts what it can ("5" -> 5, 1 -> "1", "yes" ->
True), so `{"agents": {"seller": {"modle": "x"}}}` made a batch with the default model and
`"runs": "5"` passed, without a word. Here:

- a key the serializer does not declare is a 400 at any depth, under its full path
  (`agents.seller.modle`), with the keys allowed at that place;
- JSON types are kept: an integer field takes a JSON integer (not "5", 5.0 or true), a float field a
  JSON number, a boolean field true or false, a text, choice or id field a JSON string. Money and
  weights (decimal fields) take a JSON number or a decimal string, because exports write them as
  strings ("9.50") to keep cents exact.

The OpenAPI schema says the same: `additionalProperties: false` on every strict body (the
drf-spectacular extension below). Query-string serializers stay plain DRF serializers, since every
query value arrives as a string.

The session document's bodies (import, seller-add, buyer-config) are not serializers but
negotiation/documents.py's pydantic models, which hold the same rules (`extra="forbid"`, JSON types
checked before conversion); `PydanticBodyExtension` puts their JSON schema into the OpenAPI schema.
"""

from __future__ import annotations

from collections.abc import Mapping
from typing import Any

from drf_spectacular.drainage import set_override
from drf_spectacular.extensions import OpenApiSerializerExtension
from drf_spectacular.plumbing import ResolvedComponent
from pydantic import BaseModel
from rest_framework import serializers

from negotiation.documents import ECHO_CHARS, json_type, unknown_key
from negotiation.engine.names import clean_name


def type_problem(field: serializers.Field, value: Any) -> Any:
    """None if `value` has the JSON type `field` takes, else the error detail (a list, or a dict by index/key)."""
    if value is None or isinstance(field, serializers.Serializer | serializers.ListSerializer):
        return None  # null is the field's own business (allow_null); nested serializers check themselves
    got = json_type(value)
    if isinstance(field, serializers.BooleanField):
        ok, want = isinstance(value, bool), "true or false (a JSON boolean)"
    elif isinstance(field, serializers.IntegerField):
        ok, want = isinstance(value, int) and not isinstance(value, bool), "a whole number (a JSON integer, e.g. 5)"
    elif isinstance(field, serializers.FloatField):
        ok, want = isinstance(value, int | float) and not isinstance(value, bool), "a number (a JSON number, e.g. 0.7)"
    elif isinstance(field, serializers.DecimalField):
        ok = isinstance(value, int | float | str) and not isinstance(value, bool)
        want = 'a number or a decimal string (e.g. 9.5 or "9.50")'
    elif isinstance(field, serializers.ChoiceField):
        # A non-string that is no choice either gets the field's own "use one of ..." message from DRF.
        ok = isinstance(value, str) or str(value) not in field.choice_strings_to_values
        want = f"a string, one of: {', '.join(map(str, field.choices))}"
    elif isinstance(field, serializers.CharField | serializers.UUIDField):
        ok, want = isinstance(value, str), "a string"
    elif isinstance(field, serializers.ListField):
        if not isinstance(value, list):
            return [f"Must be an array; got {got}."]
        problems = {i: p for i, item in enumerate(value) if (p := type_problem(field.child, item))}
        return problems or None
    elif isinstance(field, serializers.DictField):
        if not isinstance(value, Mapping):
            return [f"Must be an object; got {got}."]
        by_key = {str(k)[:ECHO_CHARS]: p for k, v in value.items() if (p := type_problem(field.child, v))}
        return by_key or None
    else:
        return None
    return None if ok else [f"Must be {want}; got {got}."]


class NameField(serializers.CharField):
    """An item name or handle: normalised to NFC (engine/names.py) before its length is checked and it is used."""

    def to_internal_value(self, data: Any) -> str:
        return clean_name(super().to_internal_value(data))


class StrictSerializer(serializers.Serializer):
    """An input serializer that refuses unknown keys and values of the wrong JSON type (see the module doc)."""

    def to_internal_value(self, data: Any) -> Any:
        if not isinstance(data, Mapping):
            return super().to_internal_value(data)  # DRF's "Expected a dictionary" error
        writable = [name for name, field in self.fields.items() if not field.read_only]
        allowed = ", ".join(writable) or "none"
        problems: dict[str, Any] = {
            str(key)[:ECHO_CHARS]: [unknown_key(key, allowed)]
            for key in data if key not in writable}
        for name in writable:
            if name in data and (problem := type_problem(self.fields[name], data[name])):
                problems[name] = problem
        try:
            value = super().to_internal_value(data)
        except serializers.ValidationError as exc:
            if problems and isinstance(exc.detail, dict):
                exc.detail.update(problems)  # ours say why more precisely (e.g. a string for a number)
            raise
        if problems:
            raise serializers.ValidationError(problems)
        return value


class StrictSerializerExtension(OpenApiSerializerExtension):
    """Documents a strict body as such: `additionalProperties: false`."""

    target_class = StrictSerializer
    match_subclasses = True

    def map_serializer(self, auto_schema: Any, direction: Any) -> Any:
        schema = auto_schema._map_basic_serializer(self.target, direction)
        schema["additionalProperties"] = False
        return schema


class PydanticBodyExtension(OpenApiSerializerExtension):
    """A pydantic model as a request or response body: its JSON schema (validation mode for a request,
    serialization mode for a response), with each nested model a component of its own.

    Replaces drf-spectacular's contrib extension, which always uses serialization mode (a request's
    decimals would read as strings only) and names request and response components alike. OpenAPI 3.0
    has no `null` type and no pydantic keywords, so an optional field's `null` branch is dropped (a
    key left out is the way to leave it unset) and decimal bounds become `minimum`/`maximum`.
    """

    target_class = BaseModel
    match_subclasses = True
    priority = 1  # over drf_spectacular.contrib.pydantic

    def get_name(self, auto_schema: Any, direction: Any) -> str:
        # A model is also a nested component of another (SellerDocument inside SessionDocument): both are
        # made from the same class by the same function, so the two identities are one schema.
        set_override(self.target, "suppress_collision_warning", True)
        return self.target.__name__

    def map_serializer(self, auto_schema: Any, direction: Any) -> Any:
        suffix = "Request" if direction == "request" else ""
        schema = self.target.model_json_schema(
            ref_template=f"#/components/schemas/{{model}}{suffix}",
            mode="validation" if direction == "request" else "serialization")
        for name, sub in schema.pop("$defs", {}).items():
            auto_schema.registry.register_on_missing(ResolvedComponent(
                name=f"{name}{suffix}", type=ResolvedComponent.SCHEMA, object=f"{name}{suffix}",
                schema=openapi_30(sub)))
        return openapi_30(schema)


PYDANTIC_ONLY = ("decimal_places", "max_digits", "title")


def openapi_30(node: Any) -> Any:
    """A pydantic JSON schema (2020-12) as OpenAPI 3.0 accepts it; see PydanticBodyExtension."""
    if isinstance(node, list):
        return [openapi_30(item) for item in node]
    if not isinstance(node, dict):
        return node
    out = {key: openapi_30(value) for key, value in node.items() if key not in PYDANTIC_ONLY}
    if "anyOf" in out:
        branches = [b for b in out["anyOf"] if b != {"type": "null"}]
        if len(branches) == 1:
            del out["anyOf"]
            out = {**branches[0], **out}
        else:
            out["anyOf"] = branches
    if out.get("default", 0) is None:
        del out["default"]
    bounds = {"minimum": out.pop("ge", None), "maximum": out.pop("le", None)}
    for branch in [out, *out.get("anyOf", [])]:
        if branch.get("type") in ("number", "integer"):
            branch.update({k: v for k, v in bounds.items() if v is not None})
    if "$ref" in out and len(out) > 1:  # OpenAPI 3.0 ignores a $ref's siblings: keep them with allOf
        out = {"allOf": [{"$ref": out.pop("$ref")}], **out}
    return out


__all__ = ["NameField", "PydanticBodyExtension", "StrictSerializer", "openapi_30", "type_problem"]

"""The session document: a whole scenario (the buyer's demands, the sellers, their inventory, weights and
limits) as one typed value, the shape of spec section 5 that the API imports and exports, the
bundled scenario files use and benchmark suites are made of.

These pydantic models are the one definition of that shape and of its rules, and the only place
input of that shape is checked: the import, seller-add and buyer-config endpoints parse their bodies
with them (`parse`), the import service parses a document given as JSON with them, the suite loader
checks files with them (`document_problems`), and the services take the typed values. The rules:

- strict JSON: a key the document does not define is refused at any depth, naming its path and the
  keys allowed there; an integer is a JSON integer (not "5", 5.0 or true); money and weights are a
  JSON number or a decimal string (exports write "9.50" to keep cents exact); text is a string
  without NUL characters, within its length;
- the database's own rules (the CHECK constraints' messages are read from negotiation/models.py, so
  the words live in one place): 0 <= cost_price < least_price <= selling_price, 0 <= min_price <=
  max_price, quantity >= 1, weights in [0, 1] summing to 1, the handle rule;
- at most MAMS_MAX_SELLERS sellers and MAMS_MAX_ITEMS demands or inventory lines (refused by count,
  before any element is checked); handles and item names unique as negotiation/engine/names.py
  compares them, reported together with every other mistake.

A seller's weights and style may be given in any spec shape (10.1's `priorities`, 5.2's
`personality`, or flat keys); `seller_terms` is the one reader of the three.

Errors are (path, message) pairs with paths such as `sellers[1].inventory[0].least_price`. The REST
API and the import service worded a few of the same mistakes differently before this model existed
(and their tests and clients read those words), so `_message` keeps each caller's wording: "api",
"import" (a JSON document given to `session_import`) and "file" (the suite loader). The rule is the
same for all three; only the sentence differs, and only where the table below says so.
"""

from __future__ import annotations

import types
from collections.abc import Callable, Mapping
from decimal import Decimal, InvalidOperation
from typing import Annotated, Any, Literal, TypeVar, Union, get_args, get_origin

from django.conf import settings
from django.core.exceptions import ValidationError as DjangoValidationError
from pydantic import (
    BaseModel,
    BeforeValidator,
    ConfigDict,
    Field,
    ValidationError,
    ValidationInfo,
    ValidatorFunctionWrapHandler,
    WrapValidator,
    model_validator,
)
from pydantic_core import InitErrorDetails, PydanticCustomError

from negotiation.engine.names import HANDLE_RULE, clean_name, handle_problem, name_key
from negotiation.models import MONEY, BuyerDemand, InventoryItem, Seller, Session, Style

Wording = Literal["api", "import", "file"]
DEFAULT_WEIGHT = "0.5"
HANDLE_CHARS = 51
# Keys and values are echoed back in messages; a hostile megabyte-long one is not.
ECHO_CHARS = 50


def _rule(model: type[Any], name: str) -> str:
    """The message of a model's named CHECK constraint: the database rule's own words."""
    constraint = next(c for c in model._meta.constraints if c.name == name)
    return str(constraint.violation_error_message)


# --- scalar types: each checks its JSON type before pydantic converts anything --------------------

def unknown_key(key: Any, allowed: str) -> str:
    """The message for a key no body or document takes here (the key cut to ECHO_CHARS)."""
    return f"Unknown key {str(key)[:ECHO_CHARS]!r}; the keys allowed here are: {allowed}."


def json_type(value: Any) -> str:
    """What a parsed JSON value is, in words ("a string", "null", ...): the API's strict serializers
    (negotiation/api/strict.py) and these models say "got ..." the same way."""
    if value is None:
        return "null"
    if isinstance(value, bool):
        return "a boolean"
    if isinstance(value, int | float):
        return "a number"
    if isinstance(value, str):
        return "a string"
    if isinstance(value, list):
        return "an array"
    return "an object"


def _string(value: Any) -> str:
    if not isinstance(value, str):
        raise PydanticCustomError("json_string", "must be a string", {"got": json_type(value)})
    if "\x00" in value:
        raise PydanticCustomError("nul", "Null characters are not allowed.")
    return value


def _name(value: Any) -> str:
    return clean_name(_string(value))


def _handle(value: Any) -> str:
    handle = _name(value)
    problem = handle_problem(handle)
    if problem:
        raise PydanticCustomError("handle", "{rule}", {"rule": problem})
    return handle


def _number(value: Any) -> Decimal:
    if isinstance(value, bool) or not isinstance(value, int | float | str | Decimal):
        raise PydanticCustomError("json_decimal", "must be a number or a decimal string",
                                  {"got": json_type(value), "text": str(value)[:ECHO_CHARS]})
    try:
        return Decimal(value.strip() if isinstance(value, str) else str(value))
    except InvalidOperation:
        raise PydanticCustomError("decimal_text", "not a decimal number",
                                  {"text": str(value)[:ECHO_CHARS]}) from None


def _whole(value: Any) -> int:
    if isinstance(value, bool) or not isinstance(value, int):
        raise PydanticCustomError("json_integer", "must be a JSON integer",
                                  {"got": json_type(value), "text": str(value)[:ECHO_CHARS]})
    return value


Text = Annotated[str, BeforeValidator(_string)]
# Names as stored (NFC, trimmed: negotiation/engine/names.py), compared by their name_key.
ItemName = Annotated[str, BeforeValidator(_name), Field(min_length=1, max_length=255)]
Handle = Annotated[str, BeforeValidator(_handle),
                   Field(json_schema_extra={"maxLength": HANDLE_CHARS, "description": HANDLE_RULE})]
Money = Annotated[Decimal, BeforeValidator(_number),
                  Field(ge=0, max_digits=MONEY["max_digits"], decimal_places=MONEY["decimal_places"],
                        allow_inf_nan=False)]
Weight = Annotated[Decimal, BeforeValidator(_number),
                   Field(ge=0, le=1, max_digits=3, decimal_places=2, allow_inf_nan=False)]
Quantity = Annotated[int, BeforeValidator(_whole), Field(ge=1, le=2_147_483_647)]
StyleName = Literal["rude", "neutral", "sweet"]


def _checked_list(what: str, cap: Callable[[], int], name_field: str, *, at_least_one: bool = False) -> Any:
    """A list refused by count before any element is checked, whose elements' `name_field` values are
    unique by name_key; a repeat is reported at its own path alongside every element's own errors."""

    def check(value: Any, handler: ValidatorFunctionWrapHandler, info: ValidationInfo) -> Any:
        if not isinstance(value, list):
            raise PydanticCustomError("not_a_list", "not a list", {"what": what, "got": json_type(value)})
        if len(value) > cap():
            raise PydanticCustomError("too_many", "too many", {"what": what, "cap": cap(), "n": len(value)})
        if at_least_one and not value:
            raise PydanticCustomError("no_demands", "The buyer needs at least one item demand.")
        repeats: list[InitErrorDetails] = []
        seen: set[str] = set()
        for i, item in enumerate(value):
            name = item.get(name_field) if isinstance(item, Mapping) else None
            if not isinstance(name, str) or not clean_name(name):
                continue
            if name_key(name) in seen:
                repeats.append({"type": PydanticCustomError(f"repeat_{what}", "repeated", {"name": clean_name(name)}),
                                "loc": (i, name_field), "input": name})
            seen.add(name_key(name))
        try:
            result = handler(value)
        except ValidationError as exc:
            raise ValidationError.from_exception_data(exc.title, [*_details(exc), *repeats]) from None
        if repeats:
            raise ValidationError.from_exception_data(what, repeats)
        return result

    return WrapValidator(check)


def _details(exc: ValidationError) -> list[InitErrorDetails]:
    """A ValidationError's errors, to raise again together with others."""
    return [{"type": PydanticCustomError(e["type"], e["msg"].replace("{", "{{").replace("}", "}}"), e.get("ctx")),
             "loc": e["loc"], "input": e["input"]} for e in exc.errors(include_url=False)]


def _max_items() -> int:
    return int(settings.MAMS_MAX_ITEMS)


def _max_sellers() -> int:
    return int(settings.MAMS_MAX_SELLERS)


def _broken(rules: list[tuple[bool, str]], code: str, got: str) -> None:
    errors: list[InitErrorDetails] = [
        {"type": PydanticCustomError(code, "{rule}", {"rule": rule, "got": got}), "loc": (), "input": got}
        for ok, rule in rules if not ok]
    if errors:
        raise ValidationError.from_exception_data(code, errors)


# --- the document -------------------------------------------------------------------------------

class _Document(BaseModel):
    model_config = ConfigDict(extra="forbid", frozen=True)


class InventoryLine(_Document):
    item_name: ItemName
    cost_price: Money
    selling_price: Money
    least_price: Money

    @model_validator(mode="after")
    def _prices_in_order(self) -> InventoryLine:
        _broken([(self.cost_price < self.least_price, _rule(InventoryItem, "inventory_cost_below_least")),
                 (self.least_price <= self.selling_price, _rule(InventoryItem, "inventory_least_le_selling"))],
                "price_order", f"{self.cost_price}, {self.least_price}, {self.selling_price}")
        return self


class Demand(_Document):
    item_name: ItemName
    quantity: Quantity = 1
    min_price: Money
    max_price: Money

    @model_validator(mode="after")
    def _range(self) -> Demand:
        _broken([(self.min_price <= self.max_price, _rule(BuyerDemand, "demand_min_price_le_max_price"))],
                "price_range", f"{self.min_price} and {self.max_price}")
        return self


ItemDemands = Annotated[list[Demand], _checked_list("item_demands", _max_items, "item_name", at_least_one=True),
                        Field(json_schema_extra=lambda s: s.update(minItems=1, maxItems=_max_items()))]
InventoryLines = Annotated[list[InventoryLine], _checked_list("inventory", _max_items, "item_name"),
                           Field(json_schema_extra=lambda s: s.update(maxItems=_max_items()))]


class Buyer(_Document):
    item_demands: ItemDemands


class BuyerConfig(_Document):
    """The body of POST /api/sessions/{id}/buyer-config: the buyer's complete list of demands."""

    items: Annotated[list[Demand], _checked_list("items", _max_items, "item_name", at_least_one=True),
                     Field(json_schema_extra=lambda s: s.update(minItems=1, maxItems=_max_items()),
                           description="The complete list: items left out are removed.")]


class Priorities(_Document):
    """Spec 10.1's weights; the two must sum to 1."""

    customer_retention: Weight | None = None
    profit_maximization: Weight | None = None


class Personality(_Document):
    """Spec 5.2's form of the same settings; `priorities` wins when both are given."""

    style: StyleName | None = None
    customer_retention_weight: Weight | None = None
    profit_maximization_weight: Weight | None = None


def seller_terms(raw: Mapping[str, Any]) -> tuple[Any, Any, Any]:
    """(style, customer retention weight, profit weight) of a seller as written, in any spec shape:
    `priorities` (10.1) wins over `personality` (5.2), which wins over flat keys; 0.5 each and
    "neutral" when absent. Values are returned as written."""
    pri = raw.get("priorities") or {}
    per = raw.get("personality") or {}
    retention = pri.get("customer_retention", per.get("customer_retention_weight",
                                                      raw.get("customer_retention_weight", DEFAULT_WEIGHT)))
    profit = pri.get("profit_maximization", per.get("profit_maximization_weight",
                                                    raw.get("profit_maximization_weight", DEFAULT_WEIGHT)))
    style = raw.get("style") or per.get("style") or Style.NEUTRAL.value
    return style, retention, profit


class SellerDocument(_Document):
    """One seller (the body of POST /api/sessions/{id}/sellers, and each of a document's `sellers`)."""

    handle: Handle
    style: StyleName | None = None
    priorities: Priorities | None = Field(default=None,
                                                          description="The two weights must sum to 1.")
    personality: Personality | None = None
    customer_retention_weight: Weight | None = None
    profit_maximization_weight: Weight | None = None
    inventory: InventoryLines = Field(default_factory=list,
                                      description="cost_price < least_price <= selling_price for each item.")

    def terms(self) -> tuple[StyleName, Decimal, Decimal]:
        """(style, customer retention weight, profit weight), whichever spec shape they were given in."""
        style, retention, profit = seller_terms(self.model_dump(exclude_none=True, include={
            "style", "priorities", "personality", "customer_retention_weight", "profit_maximization_weight"}))
        return style, Decimal(retention), Decimal(profit)

    @property
    def style_name(self) -> StyleName:
        return self.terms()[0]

    @property
    def customer_retention(self) -> Decimal:
        return self.terms()[1]

    @property
    def profit_maximization(self) -> Decimal:
        return self.terms()[2]

    @model_validator(mode="after")
    def _weights(self) -> SellerDocument:
        _, retention, profit = self.terms()
        _broken([(retention + profit == 1, _rule(Seller, "seller_weights_sum_to_1"))], "weights",
                f"{retention} and {profit}")
        return self


class SessionDocument(_Document):
    """A whole session, as imported and exported."""

    name: Annotated[Text, Field(max_length=200)] = ""
    description: Annotated[Text, Field(max_length=10_000)] = ""
    buyer: Buyer
    sellers: Annotated[list[SellerDocument], _checked_list("sellers", _max_sellers, "handle"),
                       Field(json_schema_extra=lambda s: s.update(maxItems=_max_sellers()),
                             description="Each handle unique (compared ignoring case and Unicode form).")
                       ] = Field(default_factory=list)

    def stocked(self, item_name: str) -> bool:
        return any(name_key(line.item_name) == name_key(item_name) for s in self.sellers for line in s.inventory)

    def demand(self, item_name: str) -> Demand | None:
        return next((d for d in self.buyer.item_demands if name_key(d.item_name) == name_key(item_name)), None)

    def as_json(self) -> dict[str, Any]:
        """The import/export JSON (prices and weights as strings, weights under `priorities`)."""
        return {
            "name": self.name, "description": self.description,
            "buyer": {"item_demands": [
                {"item_name": d.item_name, "quantity": d.quantity, "min_price": str(d.min_price),
                 "max_price": str(d.max_price)} for d in self.buyer.item_demands]},
            "sellers": [
                {"handle": s.handle, "style": s.style_name,
                 "priorities": {"customer_retention": str(s.customer_retention),
                                "profit_maximization": str(s.profit_maximization)},
                 "inventory": [{"item_name": i.item_name, "cost_price": str(i.cost_price),
                                "selling_price": str(i.selling_price), "least_price": str(i.least_price)}
                               for i in s.inventory]}
                for s in self.sellers],
        }

    @classmethod
    def of_session(cls, session: Session) -> SessionDocument:
        """A stored session as its document (what `session_export` returns)."""
        return cls.model_construct(
            name=session.name, description=session.description,
            buyer=Buyer.model_construct(item_demands=[
                Demand.model_construct(item_name=d.item_name, quantity=d.quantity, min_price=d.min_price,
                                       max_price=d.max_price) for d in session.demands.all()]),
            sellers=[SellerDocument.model_construct(
                handle=s.handle, style=s.style, priorities=Priorities.model_construct(
                    customer_retention=s.customer_retention_weight, profit_maximization=s.profit_maximization_weight),
                personality=None, customer_retention_weight=None, profit_maximization_weight=None,
                inventory=[InventoryLine.model_construct(item_name=i.item_name, cost_price=i.cost_price,
                                                         selling_price=i.selling_price, least_price=i.least_price)
                           for i in s.inventory.all()])
                for s in session.sellers.prefetch_related("inventory")])


# --- parsing, and the errors in each caller's words ----------------------------------------------

M = TypeVar("M", bound=BaseModel)


def parse(model: type[M], raw: Any, *, wording: Wording = "api") -> M:
    """`raw` (parsed JSON) as a `model`, or a Django ValidationError of {path: [messages]} (a 400 at the API)."""
    if model is SessionDocument and not isinstance(raw, Mapping) and wording == "import":
        raise DjangoValidationError({"document": ["The session document must be a JSON object."]})
    try:
        return model.model_validate(raw)
    except ValidationError as exc:
        errors: dict[str, list[str]] = {}
        for path, message in problems(model, exc, wording):
            if message not in errors.setdefault(path or "non_field_errors", []):
                errors[path or "non_field_errors"].append(message)
        raise DjangoValidationError(errors) from None


def document_problems(raw: Any) -> tuple[SessionDocument | None, list[tuple[str, str]]]:
    """Parse a session document file; (the document, []) or (None, [(path, message), ...]) with paths such as
    `sellers[1].inventory[0]`."""
    try:
        return SessionDocument.model_validate(raw), []
    except ValidationError as exc:
        return None, [(path or "document", message) for path, message in problems(SessionDocument, exc, "file")]


def problems(model: type[BaseModel], exc: ValidationError, wording: Wording) -> list[tuple[str, str]]:
    """Each error of `exc` as (path, message) in `wording`."""
    return [_message(model, e["type"], tuple(e["loc"]), e.get("ctx") or {}, e["input"], wording)
            for e in exc.errors(include_url=False)]


# Where the callers' words differ (see the module doc): {code: {wording: message}}; "" is everyone else.
WORDS: dict[str, dict[str, str]] = {
    "missing": {"": "This field is required.", "import": "This field cannot be null."},
    "null": {"": "This field may not be null.", "import": "This field cannot be null."},
    "json_decimal": {"": 'Must be a number or a decimal string (e.g. 9.5 or "9.50"); got {got}.',
                     "import": "“{text}” value must be a decimal number."},
    "decimal_text": {"": "A valid number is required.", "import": "“{text}” value must be a decimal number."},
    "json_integer": {"": "Must be a whole number (a JSON integer, e.g. 5); got {got}.",
                     "import": "Quantity must be a whole number."},
    "integer_text": {"": "Must be a whole number (a JSON integer, e.g. 5); got {got}.",
                     "import": "“{text}” value must be an integer."},
    "style": {"": "Unknown style; use one of: {styles}.", "import": "Value {value} is not a valid choice."},
    "blank": {"": "This field may not be blank.", "import": "This field cannot be blank."},
    "too_many_sellers": {"": "At most {cap} sellers per session; remove some, or split them across sessions.",
                         "import": "A session has at most {cap} sellers; this one has {n}.",
                         "file": "at most {cap} sellers in a session; this one has {n}"},
    "too_many_item_demands": {"": "At most {cap} item demands per buyer; split them across sessions.",
                              "import": "At most {cap} item demands per buyer; this one has {n}.",
                              "file": "At most {cap} item demands per buyer; this one has {n}."},
    "too_many_inventory": {
        "": "At most {cap} inventory lines per seller; list only the items this marketplace negotiates.",
        "import": "At most {cap} inventory lines per seller; this one has {n}.",
        "file": "At most {cap} inventory lines per seller; this one has {n}."},
    "repeat_sellers": {"": "Duplicate handle {name}: each handle must be unique in a session.",
                       "file": "{name} is used twice"},
    "price_order": {"": "{rule}", "file": "needs 0 <= cost_price < least_price <= selling_price (got {got})"},
    "price_range": {"": "{rule}", "file": "needs 0 <= min_price <= max_price (got {got})"},
}
SAME_WORDS = {
    "json_string": "Must be a string; got {got}.",
    "nul": "Null characters are not allowed.",
    "handle": "{rule}",
    "weights": "{rule}",
    "string_too_long": "Ensure this field has no more than {max_length} characters.",
    "too_long": "Ensure this field has no more than {max_length} characters.",  # a constrained Text
    "decimal_max_digits": "Ensure that there are no more than {max_digits} digits in total.",
    "decimal_max_places": "Ensure that there are no more than {decimal_places} decimal places.",
    "decimal_whole_digits": "Ensure that there are no more than {whole_digits} digits before the decimal point.",
    "finite_number": "A valid number is required.",
    "greater_than_equal": "Ensure this value is greater than or equal to {ge}.",
    "less_than_equal": "Ensure this value is less than or equal to {le}.",
    "no_demands": "The buyer needs at least one item demand.",
    "repeat_inventory": "This seller already lists this item (item names are compared ignoring case).",
    "repeat_item_demands": "The buyer already has a demand for this item (item names are compared ignoring case).",
    "repeat_items": "'{name}' is listed twice (item names are compared ignoring case).",
}
# A field's own words for a value out of its range: the database rule it would break (the API says
# DRF's "Ensure this value is ...", as it always did).
RANGE_RULES: dict[str, tuple[type[Any], str]] = {
    "quantity": (BuyerDemand, "demand_quantity_at_least_1"),
    "min_price": (BuyerDemand, "demand_min_price_not_negative"),
    "cost_price": (InventoryItem, "inventory_cost_not_negative"),
    "customer_retention": (Seller, "seller_weights_in_unit_range"),
    "profit_maximization": (Seller, "seller_weights_in_unit_range"),
    "customer_retention_weight": (Seller, "seller_weights_in_unit_range"),
    "profit_maximization_weight": (Seller, "seller_weights_in_unit_range"),
}
# What a place must hold, said by the place: {field or list name: (an object's words, a list's words)};
# the API says DRF's words instead, as it always did.
PLACES = {"sellers": ("Each seller must be an object.", "Sellers must be a list."),
          "inventory": ("Each inventory line must be an object.", "Inventory must be a list of items."),
          "item_demands": ("Each demand must be an object.", "Item demands must be a list."),
          "items": ("Each demand must be an object.", "Items must be a list of item demands."),
          "priorities": ("Priorities must be an object.", ""),
          "personality": ("Personality must be an object.", "")}


def _message(root: type[BaseModel], code: str, loc: tuple[int | str, ...], ctx: dict[str, Any], value: Any,
             wording: Wording) -> tuple[str, str]:
    field = next((part for part in reversed(loc) if isinstance(part, str)), "")
    if code == "missing" and wording == "import" and loc in {("buyer",), ("buyer", "item_demands")}:
        return "buyer.item_demands", SAME_WORDS["no_demands"]  # how the import service always said it
    if code in {"model_type", "model_attributes_type", "dict_type"}:
        if wording == "import" and loc == ("buyer",):
            return "buyer.item_demands", SAME_WORDS["no_demands"]
        said = PLACES.get(str(loc[-2]) if loc and isinstance(loc[-1], int) else field, ("", ""))[0]
        if wording == "api" or not said:  # DRF's words, as the API said it before
            said = f"Invalid data. Expected a dictionary, but got {type(value).__name__}."
        return _path(loc), said
    if code == "not_a_list":
        said = PLACES[ctx["what"]][1]
        return _path(loc), (f'Expected a list of items but got type "{type(value).__name__}".'
                            if wording == "api" else said)
    if code == "extra_forbidden":
        allowed = ", ".join(_model_at(root, loc[:-1]).model_fields)
        key = str(loc[-1])[:ECHO_CHARS]
        return _path((*loc[:-1], key)), unknown_key(key, allowed)
    if code == "literal_error":
        code, ctx = "style", {"styles": ", ".join(Style.values), "value": repr(value)[:ECHO_CHARS]}
    elif code == "json_decimal" and value is None:
        code = "null"
    elif code == "json_integer" and isinstance(value, str):
        code = "integer_text"
    elif code == "string_too_short":
        code = "blank"
    elif code == "too_many":
        code = f"too_many_{'item_demands' if ctx['what'] == 'items' else ctx['what']}"
    elif code in {"greater_than_equal", "less_than_equal"} and field in RANGE_RULES and wording != "api":
        return _path(loc), _rule(*RANGE_RULES[field])
    words = WORDS.get(code)
    template = (words.get(wording, words[""]) if words else SAME_WORDS.get(code)) or "{fallback}"
    return _path(loc), template.format(**ctx, fallback=ctx.get("error", code))


def _path(loc: tuple[int | str, ...]) -> str:
    out = ""
    for part in loc:
        out += f"[{part}]" if isinstance(part, int) else (f".{part}" if out else str(part))
    return out


def _model_at(model: type[BaseModel], loc: tuple[int | str, ...]) -> type[BaseModel]:
    """The model class found at `loc` inside `model` (field by field, list item by index)."""
    kind: Any = model
    for part in loc:
        kind = _bare(kind)
        kind = get_args(kind)[0] if isinstance(part, int) else kind.model_fields[part].annotation
    return _bare(kind)


def _bare(kind: Any) -> Any:
    while True:
        origin = get_origin(kind)
        if origin is Annotated:
            kind = get_args(kind)[0]
        elif origin in (Union, types.UnionType):
            kind = next(a for a in get_args(kind) if a is not type(None))
        else:
            return kind


__all__ = ["ECHO_CHARS", "Buyer", "BuyerConfig", "Demand", "InventoryLine", "Personality", "Priorities",
           "SellerDocument", "SessionDocument", "StyleName", "Wording", "document_problems", "json_type", "parse",
           "problems", "seller_terms", "unknown_key"]

"""The session document: a whole scenario (the buyer's demands, the sellers, their inventory, weights and
limits) as one typed value, the shape of spec section 5 that the API imports and exports, the
bundled scenario files use and benchmark suites are made of.

`SessionDocument` is the one definition of that shape and of its rules (the database's own:
0 <= cost_price < least_price <= selling_price, 0 <= min_price <= max_price, quantity >= 1, weights
in [0, 1] summing to 1, at most MAMS_MAX_SELLERS sellers and MAMS_MAX_ITEMS lines, handles and item
names unique as negotiation/engine/names.py compares them): the suite loader checks files with it,
the import service writes from it and the export is made by it. A seller's weights and style may be
given in either spec shape (10.1's `priorities`, 5.2's `personality`, or flat); `seller_terms` is the
one reader of both.
"""

from __future__ import annotations

from collections.abc import Mapping
from decimal import Decimal
from typing import Annotated, Any, Literal

from django.conf import settings
from pydantic import BaseModel, BeforeValidator, ConfigDict, Field, ValidationError, field_validator, model_validator

from negotiation.engine.names import clean_name, handle_problem, name_key
from negotiation.models import Session, Style

DEFAULT_WEIGHT = "0.5"
Money = Annotated[Decimal, Field(ge=0, max_digits=10, decimal_places=2, allow_inf_nan=False)]
Weight = Annotated[Decimal, Field(ge=0, le=1, max_digits=3, decimal_places=2, allow_inf_nan=False)]
# Names as stored (NFC, trimmed: negotiation/engine/names.py), compared by their name_key.
ItemName = Annotated[str, BeforeValidator(lambda v: clean_name(v) if isinstance(v, str) else v),
                     Field(min_length=1, max_length=255)]
StyleName = Literal["rude", "neutral", "sweet"]


def seller_terms(raw: Mapping[str, Any]) -> tuple[Any, Any, Any]:
    """(style, customer retention weight, profit weight) of a seller as written, in any spec shape:
    `priorities` (10.1) wins over `personality` (5.2), which wins over flat keys; 0.5 each and
    "neutral" when absent. Values are returned as written, for the caller to check."""
    pri = raw.get("priorities") or {}
    per = raw.get("personality") or {}
    retention = pri.get("customer_retention", per.get("customer_retention_weight",
                                                      raw.get("customer_retention_weight", DEFAULT_WEIGHT)))
    profit = pri.get("profit_maximization", per.get("profit_maximization_weight",
                                                    raw.get("profit_maximization_weight", DEFAULT_WEIGHT)))
    style = raw.get("style") or per.get("style") or Style.NEUTRAL.value
    return style, retention, profit


class _Document(BaseModel):
    model_config = ConfigDict(extra="ignore", frozen=True)


class InventoryLine(_Document):
    item_name: ItemName
    cost_price: Money
    selling_price: Money
    least_price: Money

    @model_validator(mode="after")
    def _prices_in_order(self) -> InventoryLine:
        if not self.cost_price < self.least_price <= self.selling_price:
            raise ValueError("needs 0 <= cost_price < least_price <= selling_price "
                             f"(got {self.cost_price}, {self.least_price}, {self.selling_price})")
        return self


class Demand(_Document):
    item_name: ItemName
    quantity: int = Field(default=1, ge=1, le=2_147_483_647, strict=True)
    min_price: Money
    max_price: Money

    @model_validator(mode="after")
    def _range(self) -> Demand:
        if self.min_price > self.max_price:
            raise ValueError(f"needs 0 <= min_price <= max_price (got {self.min_price} and {self.max_price})")
        return self


class Buyer(_Document):
    item_demands: list[Demand] = Field(min_length=1)

    @model_validator(mode="after")
    def _each_item_once(self) -> Buyer:
        names = [name_key(d.item_name) for d in self.item_demands]
        twice = sorted({n for n in names if names.count(n) > 1})
        if twice:
            raise ValueError(f"'{twice[0]}' is demanded twice")
        if len(names) > settings.MAMS_MAX_ITEMS:
            raise ValueError(f"At most {settings.MAMS_MAX_ITEMS} item demands per buyer; this one has {len(names)}.")
        return self


class SellerDocument(_Document):
    handle: str
    style: StyleName = "neutral"
    customer_retention: Weight
    profit_maximization: Weight
    inventory: list[InventoryLine] = Field(default_factory=list)

    @model_validator(mode="before")
    @classmethod
    def _either_spec_shape(cls, raw: Any) -> Any:
        if not isinstance(raw, Mapping):
            return raw
        for key in ("priorities", "personality"):
            if raw.get(key) is not None and not isinstance(raw[key], Mapping):
                raise ValueError(f"{key.capitalize()} must be an object.")
        style, retention, profit = seller_terms(raw)
        return {"handle": raw.get("handle", ""), "style": style, "customer_retention": str(retention),
                "profit_maximization": str(profit), "inventory": raw.get("inventory") or []}

    @field_validator("handle")
    @classmethod
    def _handle(cls, v: str) -> str:
        v = clean_name(v)
        problem = handle_problem(v)
        if problem:
            raise ValueError(problem)
        return v

    @model_validator(mode="after")
    def _weights_and_lines(self) -> SellerDocument:
        if self.customer_retention + self.profit_maximization != 1:
            raise ValueError(f"weights must each lie in [0, 1] and sum to 1 (got {self.customer_retention} and "
                             f"{self.profit_maximization})")
        if len(self.inventory) > settings.MAMS_MAX_ITEMS:
            raise ValueError(f"At most {settings.MAMS_MAX_ITEMS} inventory lines per seller; this one has "
                             f"{len(self.inventory)}.")
        names = [name_key(line.item_name) for line in self.inventory]
        if len(set(names)) != len(names):
            raise ValueError("This seller already lists an item twice.")
        return self


class SessionDocument(_Document):
    """A whole session, as imported and exported."""

    name: str = Field(default="", max_length=200)
    description: str = Field(default="", max_length=10_000)
    buyer: Buyer
    sellers: list[SellerDocument] = Field(default_factory=list)

    @model_validator(mode="after")
    def _sellers(self) -> SessionDocument:
        if len(self.sellers) > settings.MAMS_MAX_SELLERS:
            raise ValueError(f"at most {settings.MAMS_MAX_SELLERS} sellers in a session; this one has "
                             f"{len(self.sellers)}")
        handles = [name_key(s.handle) for s in self.sellers]
        for i, handle in enumerate(handles):
            if handles.index(handle) != i:
                raise ValueError(f"sellers[{i}].handle: {self.sellers[i].handle} is used twice")
        return self

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
                {"handle": s.handle, "style": s.style,
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
                handle=s.handle, style=s.style, customer_retention=s.customer_retention_weight,
                profit_maximization=s.profit_maximization_weight,
                inventory=[InventoryLine.model_construct(item_name=i.item_name, cost_price=i.cost_price,
                                                         selling_price=i.selling_price, least_price=i.least_price)
                           for i in s.inventory.all()])
                for s in session.sellers.prefetch_related("inventory")])


def document_problems(raw: Any) -> tuple[SessionDocument | None, list[tuple[str, str]]]:
    """Parse a session document; (the document, []) or (None, [(path, message), ...]) with paths such as
    `sellers[1].inventory[0]`."""
    try:
        return SessionDocument.model_validate(raw), []
    except ValidationError as exc:
        return None, [(_path(e["loc"]), e["msg"].removeprefix("Value error, ")) for e in exc.errors()]


def _path(loc: tuple[int | str, ...]) -> str:
    out = ""
    for part in loc:
        out += f"[{part}]" if isinstance(part, int) else (f".{part}" if out else str(part))
    return out or "document"


__all__ = ["Buyer", "Demand", "InventoryLine", "SellerDocument", "SessionDocument", "StyleName", "document_problems",
           "seller_terms"]

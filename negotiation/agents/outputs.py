"""Structured agent outputs: `{action, price, message, reasoning}` validated with pydantic.

LLMs wrap JSON in prose, code fences or trailing commentary, and small models stop mid-object.
`extract_json` takes the first balanced object; the models coerce the usual variants ("$6.50",
"Accept") and reject what cannot be trusted. A validation error is a value the caller repairs once
and otherwise replaces with the baseline strategy.
"""

from __future__ import annotations

import json
import re
from decimal import Decimal, InvalidOperation
from typing import Any, Literal

from pydantic import BaseModel, ConfigDict, Field, ValidationError, field_validator

from negotiation.engine.types import (
    ALL,
    BuyerAct,
    BuyerAction,
    SellerAct,
    SellerAction,
    money,
)

MAX_PRICE = Decimal("100000000")
_AMOUNT = re.compile(r"-?(?:\d{1,3}(?:,\d{3})+|\d+)(?:\.\d+)?|-?\.\d+")


class OutputError(ValueError):
    """The model's text is not a usable action; the message says why, for the repair prompt."""


# Small models write `"price": $6.50`; dropping the stray currency sign is safe and saves a repair.
_DOLLAR_VALUE = re.compile(r'("price"\s*:\s*)\$\s*(?=\d)')


def extract_json(text: str) -> dict[str, Any]:
    text = _DOLLAR_VALUE.sub(r"\1", text)
    start = text.find("{")
    if start < 0:
        raise OutputError("no JSON object found")
    depth, in_str, escape = 0, False, False
    for i in range(start, len(text)):
        ch = text[i]
        if in_str:
            if escape:
                escape = False
            elif ch == "\\":
                escape = True
            elif ch == '"':
                in_str = False
        elif ch == '"':
            in_str = True
        elif ch == "{":
            depth += 1
        elif ch == "}":
            depth -= 1
            if depth == 0:
                try:
                    value = json.loads(text[start:i + 1])
                except json.JSONDecodeError as exc:
                    raise OutputError(f"invalid JSON: {exc.msg}") from exc
                if not isinstance(value, dict):
                    raise OutputError("the JSON is not an object")
                return value
    raise OutputError("the JSON object is incomplete")


def _price(value: Any) -> Decimal | None:
    if value is None or value == "":
        return None
    if isinstance(value, bool):
        raise ValueError("price must be a number")
    if isinstance(value, str):
        # Exactly one amount ("$1,250.00", "6.50 USD"); "6 to 7" or "1e3" is not read as 67 or 13.
        amounts = _AMOUNT.findall(value)
        if len(amounts) != 1:
            raise ValueError("price must be one number")
        value = amounts[0].replace(",", "")
    try:
        price = Decimal(str(value))
    except InvalidOperation as exc:
        raise ValueError("price must be a number") from exc
    if not price.is_finite() or price < 0 or price > MAX_PRICE:
        raise ValueError("price must be a positive amount")
    return money(price)


class _Base(BaseModel):
    model_config = ConfigDict(extra="ignore", str_strip_whitespace=True)
    price: Decimal | None = None
    message: str = Field(default="", max_length=4000)
    reasoning: str = Field(default="", max_length=4000)

    @field_validator("price", mode="before")
    @classmethod
    def _coerce_price(cls, v: Any) -> Decimal | None:
        return _price(v)

    @field_validator("message", "reasoning", mode="before")
    @classmethod
    def _text(cls, v: Any) -> str:
        return "" if v is None else str(v)


class SellerOutput(_Base):
    action: Literal["offer", "accept", "decline"]

    @field_validator("action", mode="before")
    @classmethod
    def _lower(cls, v: Any) -> Any:
        return v.strip().lower() if isinstance(v, str) else v


class BuyerOutput(_Base):
    action: Literal["message", "accept", "walk_away"]
    to: list[str] = Field(default_factory=lambda: [ALL])
    seller: str | None = None

    @field_validator("action", mode="before")
    @classmethod
    def _norm(cls, v: Any) -> Any:
        if isinstance(v, str):
            v = v.strip().lower().replace(" ", "_").replace("-", "_")
            return {"walk": "walk_away", "walkaway": "walk_away", "counter": "message", "offer": "message"}.get(v, v)
        return v

    @field_validator("to", mode="before")
    @classmethod
    def _to_list(cls, v: Any) -> Any:
        if v is None or v == "":
            return [ALL]
        return [v] if isinstance(v, str) else v


def _first_error(exc: ValidationError) -> str:
    err = exc.errors()[0]
    where = ".".join(str(p) for p in err.get("loc", ())) or "output"
    return f"{where}: {err.get('msg', 'invalid')}"


def parse_seller(text: str) -> SellerAction:
    try:
        out = SellerOutput.model_validate(extract_json(text))
    except ValidationError as exc:
        raise OutputError(_first_error(exc)) from exc
    if out.action == "offer" and out.price is None:
        raise OutputError("an offer needs a price")
    return SellerAction(action=SellerAct(out.action), message=out.message, price=out.price,
                        reasoning=out.reasoning)


def parse_buyer(text: str) -> BuyerAction:
    try:
        out = BuyerOutput.model_validate(extract_json(text))
    except ValidationError as exc:
        raise OutputError(_first_error(exc)) from exc
    if out.action == "accept" and not out.seller:
        raise OutputError("an accept needs the seller's handle")
    return BuyerAction(action=BuyerAct(out.action), message=out.message, to=tuple(out.to) or (ALL,),
                       seller=out.seller, price=out.price, reasoning=out.reasoning)

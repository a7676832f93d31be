"""What a model's tokens cost, so that "cost per run" and a batch's estimate are never blank for a
known model.

The table holds dollars per million input (prompt) and output (completion) tokens for the models
the profiles name by default, with the date the prices were read from the providers' price pages
(they change; a lab on a fixed budget should check them). `MAMS_MODEL_PRICES_JSON` extends or
overrides it: `{"model-id": {"input": 3.0, "output": 15.0}, ...}` (dollars per million tokens).
A local model costs nothing. A model in neither is unpriced (`None`), never guessed. Pure Python.
"""

from __future__ import annotations

import json
import math
import os
from dataclasses import dataclass
from decimal import Decimal
from functools import lru_cache

PRICES_AS_OF = "2025-10-01"

# Dollars per million tokens: (input, output).
_TABLE: dict[str, tuple[str, str]] = {
    "anthropic/claude-sonnet-4.5": ("3", "15"),
    "anthropic/claude-haiku-4.5": ("1", "5"),
    "google/gemini-2.5-flash": ("0.30", "2.50"),
    "gpt-4o-mini": ("0.15", "0.60"),
    "openai/gpt-4o-mini": ("0.15", "0.60"),
    "gemma-3-270m": ("0", "0"),  # the local default: no provider bills it
}


class PriceTableError(ValueError):
    """MAMS_MODEL_PRICES_JSON is not a JSON object of {model: {"input": n, "output": n}}."""


@dataclass(frozen=True)
class Price:
    input_per_million: Decimal
    output_per_million: Decimal
    source: str  # "table (as of <date>)" or "MAMS_MODEL_PRICES_JSON"

    def cost(self, *, prompt_tokens: int, completion_tokens: int) -> Decimal:
        return (self.input_per_million * prompt_tokens + self.output_per_million * completion_tokens) / 1_000_000


def _number(model: str, field: str, value: object) -> Decimal:
    if isinstance(value, bool) or not isinstance(value, int | float | str):
        raise PriceTableError(f"MAMS_MODEL_PRICES_JSON: {model}.{field} must be a number of dollars per million tokens")
    try:
        number = Decimal(str(value))
    except ArithmeticError:
        raise PriceTableError(f"MAMS_MODEL_PRICES_JSON: {model}.{field} is not a number: {value!r}") from None
    if not number.is_finite() or number < 0 or number > 10_000:
        raise PriceTableError(f"MAMS_MODEL_PRICES_JSON: {model}.{field} must be from 0 to 10000, got {value!r}")
    return number


@lru_cache(maxsize=8)
def _prices(raw_json: str) -> dict[str, Price]:
    prices = {model: Price(Decimal(i), Decimal(o), f"table (as of {PRICES_AS_OF})") for model, (i, o) in _TABLE.items()}
    if raw_json.strip():
        try:
            extra = json.loads(raw_json)
        except ValueError as exc:
            raise PriceTableError(f"MAMS_MODEL_PRICES_JSON is not valid JSON: {exc}") from None
        if not isinstance(extra, dict):
            raise PriceTableError('MAMS_MODEL_PRICES_JSON must be an object: {"model": {"input": 3, "output": 15}}')
        for model, entry in extra.items():
            if not isinstance(entry, dict) or set(entry) != {"input", "output"}:
                raise PriceTableError(f'MAMS_MODEL_PRICES_JSON: {model} needs exactly "input" and "output"')
            prices[model] = Price(_number(model, "input", entry["input"]), _number(model, "output", entry["output"]),
                                  "MAMS_MODEL_PRICES_JSON")
    return prices


def price_for(model: str) -> Price | None:
    """The price of `model`, or None when neither the table nor MAMS_MODEL_PRICES_JSON knows it."""
    return _prices(os.environ.get("MAMS_MODEL_PRICES_JSON", "")).get(model)


def cost_usd(model: str, *, prompt_tokens: int, completion_tokens: int) -> Decimal | None:
    price = price_for(model)
    if price is None or not all(math.isfinite(t) and t >= 0 for t in (prompt_tokens, completion_tokens)):
        return None
    return price.cost(prompt_tokens=prompt_tokens, completion_tokens=completion_tokens)

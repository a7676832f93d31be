"""Each agent's own utility from a finished run: what a reflect coach tells an agent it scored.

A utility is computed only from what that agent privately knows, so a coach that reads it learns
nothing about the other side: the buyer's from its own price range, a seller's from its own cost,
ask and priorities. Both lie in [0, 1]. These are not DESIGN's surplus shares (analytics/metrics.py),
which divide the ZOPA with the chosen seller's floor, a number the buyer never sees.

- Buyer, on a deal at price p: (max_price − p) / (max_price − min_price), clamped to [0, 1]. It is 1
  at or below the buyer's minimum and 0 at its maximum. A degenerate range (min = max) scores 1 for
  any deal within budget.
- Seller, on a deal it made at price p: w_retention · 1 + w_profit · (p − cost) / (selling − cost),
  the margin term clamped to [0, 1]. Closing keeps the customer (the retention weight is earned in
  full) and the margin is measured against cost, not against the floor.
- No deal, and every seller that did not make the deal: 0, as in NegotiationGym.

Why cost and not the floor: NegotiationGym measured the seller's margin against its floor, and its
floor equalled its ask, so (p − floor) / (ask − floor) was 0 (or undefined) on every deal. Here
the database enforces cost < least_price <= selling_price, so selling − cost > 0 and any deal at or
above the floor has a margin (least − cost) / (selling − cost) > 0: a seller's deal always has a
positive utility, even when its floor equals its ask (tests/negotiation/test_utility.py).
"""

from __future__ import annotations

from collections.abc import Iterable, Mapping
from decimal import Decimal
from typing import Any


def _clamp(value: Decimal) -> float:
    return float(min(Decimal(1), max(Decimal(0), value)))


def buyer_utility(*, deal: bool, price: Decimal | None, min_price: Decimal, max_price: Decimal) -> float:
    """(max_price − p) / (max_price − min_price) on a deal, clamped to [0, 1]; 0 on no deal.

    With min_price = max_price, any deal at or below max_price scores 1 (and above it 0).
    """
    if not deal or price is None:
        return 0.0
    span = max_price - min_price
    if span <= 0:
        return 1.0 if price <= max_price else 0.0
    return _clamp((max_price - price) / span)


def seller_margin(*, price: Decimal, cost_price: Decimal, selling_price: Decimal) -> float:
    """(p − cost) / (selling − cost), clamped to [0, 1]. Needs cost < selling (a valid inventory line)."""
    span = selling_price - cost_price
    if span <= 0:
        raise ValueError(f"cost {cost_price} must be below the selling price {selling_price}")
    return _clamp((price - cost_price) / span)


def seller_utility(*, sold: bool, price: Decimal | None, cost_price: Decimal, selling_price: Decimal,
                   retention_weight: Decimal, profit_weight: Decimal) -> float:
    """w_retention + w_profit · (p − cost) / (selling − cost) when this seller made the deal; else 0."""
    if not sold or price is None:
        return 0.0
    margin = seller_margin(price=price, cost_price=cost_price, selling_price=selling_price)
    return float(retention_weight) + float(profit_weight) * margin


def run_utilities(*, scenario: Mapping, deal: bool, chosen: str | None, price: Decimal | None
                  ) -> dict[str, Any]:
    """Every agent's utility in a run, from its scenario snapshot and outcome.

    Returns {"buyer": u, "sellers": {handle: u}, "seller_side": Σ seller utilities}. At most one
    seller makes the deal, so the seller side's utility is the winner's (0 with no deal).
    """
    b = scenario["buyer"]
    sellers: dict[str, float] = {}
    for s in scenario["sellers"]:
        sold = deal and s["handle"] == chosen
        sellers[s["handle"]] = seller_utility(
            sold=sold, price=price, cost_price=Decimal(s["cost_price"]), selling_price=Decimal(s["selling_price"]),
            retention_weight=Decimal(s["retention_weight"]), profit_weight=Decimal(s["profit_weight"]))
    buyer = buyer_utility(deal=deal, price=price, min_price=Decimal(b["min_price"]),
                          max_price=Decimal(b["max_price"]))
    return {"buyer": buyer, "sellers": sellers, "seller_side": sum(sellers.values())}


def cumulative_mean(values: Iterable[float | None]) -> list[float | None]:
    """The running mean after each value: [v0, (v0+v1)/2, ...]; None values are skipped (a failed run),
    and the mean stays None until the first defined value."""
    out: list[float | None] = []
    total, n = 0.0, 0
    for v in values:
        if v is not None:
            total += float(v)
            n += 1
        out.append(total / n if n else None)
    return out


__all__ = ["buyer_utility", "cumulative_mean", "run_utilities", "seller_margin", "seller_utility"]

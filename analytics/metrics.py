"""Metric definitions, each once, as pure functions with the formula in the docstring.

No Django here: the same functions score a run in a test, in a selector and in a benchmark.
"""

from __future__ import annotations

from decimal import Decimal


def buyer_surplus_share(*, price: Decimal, max_price: Decimal, least_price: Decimal) -> Decimal | None:
    """Buyer's share of the ZOPA on a deal: (max_price − p) / (max_price − least_price_of_chosen_seller).

    Undefined (None) when the ZOPA is <= 0. 1 means the buyer paid the seller's floor, 0 its own max.
    """
    zopa = max_price - least_price
    if zopa <= 0:
        return None
    return (max_price - price) / zopa


def seller_surplus_share(*, price: Decimal, max_price: Decimal, least_price: Decimal) -> Decimal | None:
    """Seller's share of the ZOPA on a deal: 1 − buyer_surplus_share; None when the ZOPA is <= 0."""
    share = buyer_surplus_share(price=price, max_price=max_price, least_price=least_price)
    return None if share is None else 1 - share

"""A run's context: its private configuration and transcript, as the engine and the turns use it.

Every turn (services/play.py, services/live.py), every view of one side (prompts, API bodies, the
stream, /env) and the run's end read a run through `run_context`; the engine cuts views out of the
`RunContext` it returns, and `received` applies the run's disclosure rule in one place.
"""

from __future__ import annotations

import copy
from dataclasses import dataclass, field
from decimal import Decimal
from functools import cached_property
from typing import Any

from negotiation import turn_rows
from negotiation.engine.disclosure import as_received
from negotiation.engine.types import BuyerPrivate, Msg, SellerPrivate
from negotiation.models import Message, NegotiationRun


@dataclass(frozen=True)
class RunContext:
    """Everything the orchestrator holds about a run; the engine cuts views out of it."""

    buyer: BuyerPrivate
    sellers: dict[str, SellerPrivate]  # handle -> private configuration
    seller_ids: dict[str, str]  # handle -> Seller id
    handles: tuple[str, ...]
    transcript: tuple[Msg, ...]
    rows: dict[tuple[int, str], Message] = field(default_factory=dict)  # only from run_context(run, rows=True)
    disclosure: str = "redact"  # the run's rule (negotiation.engine.disclosure)

    def received(self, viewer: str) -> tuple[Msg, ...]:
        """The transcript as `viewer` (BUYER or a seller handle) receives it under the run's rule.

        Every view of one side (prompts, API bodies, the stream, /env) is cut from this, never
        from `transcript`, so the disclosure rule is applied in one place; `transcript` keeps the
        words as said, for the owner's pages and the audit.
        """
        return as_received(self.transcript, viewer=viewer, rule=self.disclosure, buyer=self.buyer,
                           sellers=self.sellers)

    def row_received(self, row: Message, viewer: str) -> Message:
        """A stored message as `viewer` receives it: an unsaved copy whose text is the delivered words.

        For the API bodies and stream events that serialize rows; the row itself is left as said.
        """
        said = Msg(round_no=row.round_no, sender=row.sender, recipients=tuple(row.recipients), text=row.text,
                   action=row.action, price=row.price)
        (got,) = as_received((said,), viewer=viewer, rule=self.disclosure, buyer=self.buyer, sellers=self.sellers)
        if got.text == row.text:
            return row
        delivered = copy.copy(row)
        delivered.text = got.text
        return delivered

    @cached_property
    def _said(self) -> dict[tuple[int, str], Msg]:
        return {(m.round_no, m.sender): m for m in self.transcript}

    def message(self, round_no: int, sender: str) -> Msg | None:
        """What `sender` said in `round_no`, as the engine sees it."""
        return self._said.get((round_no, sender))

    def row(self, round_no: int, sender: str) -> Message | None:
        """The stored message (timings, tokens, raw output); requires run_context(run, rows=True)."""
        return self.rows.get((round_no, sender))


def scenario_snapshot(*, demand: Any, inventory: list[Any]) -> dict[str, Any]:
    return {
        "buyer": {"item_name": demand.item_name, "quantity": demand.quantity,
                  "min_price": str(demand.min_price), "max_price": str(demand.max_price)},
        "sellers": [
            {"id": str(line.seller.id), "handle": line.seller.handle, "style": line.seller.style,
             "retention_weight": str(line.seller.customer_retention_weight),
             "profit_weight": str(line.seller.profit_maximization_weight),
             "cost_price": str(line.cost_price), "selling_price": str(line.selling_price),
             "least_price": str(line.least_price)}
            for line in inventory],
    }


def run_context(run: NegotiationRun, *, rows: bool = False, transcript: tuple[Msg, ...] | None = None
                ) -> RunContext:
    """The run's private configuration and transcript; `rows` also loads the stored messages.

    A turn passes the `transcript` it read with the run (turn_rows.run_for_turn), so it is not read twice.
    """
    sc = run.scenario
    b = sc["buyer"]
    buyer = BuyerPrivate(item_name=b["item_name"], quantity=int(b["quantity"]),
                         min_price=Decimal(b["min_price"]), max_price=Decimal(b["max_price"]))
    sellers = {
        s["handle"]: SellerPrivate(handle=s["handle"], style=s["style"],
                                   retention_weight=Decimal(s["retention_weight"]),
                                   profit_weight=Decimal(s["profit_weight"]), cost_price=Decimal(s["cost_price"]),
                                   selling_price=Decimal(s["selling_price"]), least_price=Decimal(s["least_price"]))
        for s in sc["sellers"]}
    if rows:
        full = list(Message.objects.filter(run=run).order_by("round_no", "sender_type", "created_at"))
        transcript = tuple(Msg(round_no=m.round_no, sender=m.sender, recipients=tuple(m.recipients), text=m.text,
                               action=m.action, price=m.price) for m in full)
        by_key = {(m.round_no, m.sender): m for m in full}
    else:  # a turn needs only what the engine sees: one fixed query (see turn_rows)
        transcript, by_key = (transcript if transcript is not None else turn_rows.transcript(run.pk)), {}
    return RunContext(buyer=buyer, sellers=sellers, seller_ids={s["handle"]: s["id"] for s in sc["sellers"]},
                      handles=tuple(s["handle"] for s in sc["sellers"]), transcript=transcript, rows=by_key,
                      disclosure=run.disclosure)

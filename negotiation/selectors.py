"""Reads: a run's context for the engine, and batch tables and summaries for people."""

from __future__ import annotations

from dataclasses import dataclass
from decimal import Decimal
from typing import Any

from django.db.models import Avg, Count, Q, QuerySet

from analytics.metrics import buyer_surplus_share
from negotiation.engine.types import BuyerPrivate, EventKind, Msg, SellerPrivate
from negotiation.models import Batch, Message, NegotiationRun

GUARDRAIL_KINDS = [k.value for k in EventKind if k not in (EventKind.LEAK, EventKind.FALLBACK)
                   and not k.value.startswith(("claim_", "unsupported_"))]


@dataclass(frozen=True)
class RunContext:
    """Everything the orchestrator holds about a run; the engine cuts views out of it."""

    buyer: BuyerPrivate
    sellers: dict[str, SellerPrivate]  # handle -> private configuration
    seller_ids: dict[str, str]  # handle -> Seller id
    handles: tuple[str, ...]
    transcript: tuple[Msg, ...]
    messages: dict[tuple[int, str], Message]

    def message(self, round_no: int, sender: str) -> Message | None:
        return self.messages.get((round_no, sender))


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


def run_context(run: NegotiationRun) -> RunContext:
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
    rows = list(Message.objects.filter(run=run).order_by("round_no", "sender_type", "created_at"))
    transcript = tuple(Msg(round_no=m.round_no, sender=m.sender, recipients=tuple(m.recipients), text=m.text,
                           action=m.action, price=m.price) for m in rows)
    return RunContext(buyer=buyer, sellers=sellers, seller_ids={s["handle"]: s["id"] for s in sc["sellers"]},
                      handles=tuple(s["handle"] for s in sc["sellers"]), transcript=transcript,
                      messages={(m.round_no, m.sender): m for m in rows})


def run_rows(*, batch_id: Any) -> QuerySet[NegotiationRun]:
    """One row per run with its outcome and event counts, computed in SQL."""
    return (NegotiationRun.objects.filter(batch_id=batch_id)
            .select_related("outcome")
            .annotate(leaks=Count("events", filter=Q(events__kind=EventKind.LEAK.value)),
                      guardrails=Count("events", filter=Q(events__kind__in=GUARDRAIL_KINDS)),
                      fallbacks=Count("events", filter=Q(events__kind=EventKind.FALLBACK.value)))
            .order_by("created_at", "seed"))


def run_buyer_share(run: NegotiationRun) -> Decimal | None:
    outcome = getattr(run, "outcome", None)
    if outcome is None or outcome.final_price is None:
        return None
    least = next((Decimal(s["least_price"]) for s in run.scenario["sellers"]
                  if s["handle"] == outcome.chosen_handle), None)
    if least is None:
        return None
    return buyer_surplus_share(price=outcome.final_price, max_price=Decimal(run.scenario["buyer"]["max_price"]),
                               least_price=least)


def batch_progress(*, batch_id: Any) -> dict[str, int]:
    counts = dict(NegotiationRun.objects.filter(batch_id=batch_id).values_list("status")
                  .annotate(n=Count("id")).values_list("status", "n"))
    return {s: counts.get(s, 0) for s in NegotiationRun.Status.values}


def batch_summary(*, batch_id: Any) -> dict[str, Any]:
    batch = Batch.objects.get(pk=batch_id)
    runs = NegotiationRun.objects.filter(batch_id=batch_id)
    agg = runs.aggregate(
        total=Count("id"),
        finished=Count("id", filter=Q(status=NegotiationRun.Status.COMPLETED)),
        deals=Count("id", filter=Q(outcome__decision="deal")),
        mean_price=Avg("outcome__final_price", filter=Q(outcome__decision="deal")),
        mean_rounds=Avg("outcome__rounds", filter=Q(status=NegotiationRun.Status.COMPLETED)),
    )
    first = runs.exclude(started_at=None).order_by("started_at").values_list("started_at", flat=True).first()
    last = runs.exclude(ended_at=None).order_by("-ended_at").values_list("ended_at", flat=True).first()
    agg["deal_rate"] = (agg["deals"] / agg["finished"]) if agg["finished"] else None
    agg["wall_seconds"] = (last - first).total_seconds() if first and last else None
    agg["progress"] = batch_progress(batch_id=batch_id)
    agg["status"] = batch.status
    return agg

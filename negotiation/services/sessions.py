"""Session writes: a whole scenario imported as one document, or demands and sellers one by one.

Every object is `full_clean()`ed before it is saved (DRF and management commands do not), and an
import is one transaction: a document with any bad line writes nothing, and the error names the
exact path, e.g. `sellers[1].inventory[0].least_price`.
"""

from __future__ import annotations

from decimal import Decimal
from typing import Any

from django.conf import settings
from django.core.exceptions import ValidationError
from django.db import transaction

from negotiation.models import BuyerDemand, InventoryItem, Seller, Session
from negotiation.services.errors import flatten


def _clean(obj: Any, path: str, errors: dict[str, list[str]], exclude: list[str] | None = None) -> None:
    try:
        obj.full_clean(exclude=exclude)
    except ValidationError as exc:
        for key, messages in flatten(exc, path).items():
            errors.setdefault(key, []).extend(messages)


def _weights(raw: dict[str, Any]) -> tuple[Any, Any]:
    """Accept both spec shapes: 10.1's `priorities` and 5.2's `personality`."""
    pri = raw.get("priorities") or {}
    per = raw.get("personality") or {}
    retention = pri.get("customer_retention", per.get("customer_retention_weight",
                                                      raw.get("customer_retention_weight", "0.5")))
    profit = pri.get("profit_maximization", per.get("profit_maximization_weight",
                                                    raw.get("profit_maximization_weight", "0.5")))
    return retention, profit


def _seller_obj(session: Session, raw: dict[str, Any]) -> Seller:
    retention, profit = _weights(raw)
    style = raw.get("style") or (raw.get("personality") or {}).get("style") or "neutral"
    return Seller(session=session, handle=str(raw.get("handle", "")), style=style,
                  customer_retention_weight=_dec(retention), profit_maximization_weight=_dec(profit))


def _dec(value: Any) -> Any:
    # Leave non-numbers as they are so full_clean reports them against the right field.
    try:
        return Decimal(str(value))
    except Exception:  # noqa: BLE001
        return value


def _build_seller(session: Session, raw: Any, path: str, errors: dict[str, list[str]]
                  ) -> tuple[Seller, list[InventoryItem]]:
    if not isinstance(raw, dict):
        errors.setdefault(path, []).append("Each seller must be an object.")
        return Seller(session=session), []
    seller = _seller_obj(session, raw)
    _clean(seller, path, errors, exclude=["session"])
    items: list[InventoryItem] = []
    inventory = raw.get("inventory") or []
    if not isinstance(inventory, list):
        errors.setdefault(f"{path}.inventory", []).append("Inventory must be a list of items.")
        inventory = []
    seen: set[str] = set()
    for j, line in enumerate(inventory):
        ipath = f"{path}.inventory[{j}]"
        if not isinstance(line, dict):
            errors.setdefault(ipath, []).append("Each inventory line must be an object.")
            continue
        item = InventoryItem(seller=seller, item_name=str(line.get("item_name", "")).strip(),
                             cost_price=_dec(line.get("cost_price")), selling_price=_dec(line.get("selling_price")),
                             least_price=_dec(line.get("least_price")))
        _clean(item, ipath, errors, exclude=["seller"])
        if item.item_name.lower() in seen:
            errors.setdefault(f"{ipath}.item_name", []).append("This seller already lists this item.")
        seen.add(item.item_name.lower())
        items.append(item)
    return seller, items


@transaction.atomic
def session_import(*, document: dict[str, Any], owner: Any = None) -> Session:
    """Create a whole session from the spec's section-5 shapes, or write nothing at all."""
    if not isinstance(document, dict):
        raise ValidationError({"document": ["The session document must be a JSON object."]})
    errors: dict[str, list[str]] = {}
    session = Session(owner=owner, name=str(document.get("name", ""))[:200],
                      description=str(document.get("description", "")))
    _clean(session, "", errors, exclude=["owner"])
    buyer = document.get("buyer") or {}
    demands_raw = buyer.get("item_demands", document.get("item_demands", [])) if isinstance(buyer, dict) else []
    sellers_raw = document.get("sellers") or []
    if not isinstance(demands_raw, list) or not demands_raw:
        errors.setdefault("buyer.item_demands", []).append("The buyer needs at least one item demand.")
        demands_raw = []
    if not isinstance(sellers_raw, list):
        errors.setdefault("sellers", []).append("Sellers must be a list.")
        sellers_raw = []
    if len(sellers_raw) > settings.MAMS_MAX_SELLERS:
        errors.setdefault("sellers", []).append(
            f"A session has at most {settings.MAMS_MAX_SELLERS} sellers; this one has {len(sellers_raw)}.")
    demands: list[BuyerDemand] = []
    seen_items: set[str] = set()
    for i, raw in enumerate(demands_raw):
        path = f"buyer.item_demands[{i}]"
        if not isinstance(raw, dict):
            errors.setdefault(path, []).append("Each demand must be an object.")
            continue
        demand = BuyerDemand(session=session, item_name=str(raw.get("item_name", "")).strip(),
                             quantity=raw.get("quantity", 1), min_price=_dec(raw.get("min_price")),
                             max_price=_dec(raw.get("max_price")))
        _clean(demand, path, errors, exclude=["session"])
        if demand.item_name.lower() in seen_items:
            errors.setdefault(f"{path}.item_name", []).append("The buyer already has a demand for this item.")
        seen_items.add(demand.item_name.lower())
        demands.append(demand)
    built = [_build_seller(session, raw, f"sellers[{i}]", errors) for i, raw in enumerate(sellers_raw)]
    handles = [s.handle.lower() for s, _ in built]
    for i, handle in enumerate(handles):
        if handle and handles.index(handle) != i:
            errors.setdefault(f"sellers[{i}].handle", []).append(
                f"Duplicate handle {built[i][0].handle}: each handle must be unique in a session.")
    if errors:
        raise ValidationError(errors)
    session.save()
    BuyerDemand.objects.bulk_create(demands)
    for seller, items in built:
        seller.save()
        InventoryItem.objects.bulk_create(items)
    return session


def session_export(*, session: Session) -> dict[str, Any]:
    """The import document for a session, so a scenario can be saved, versioned and re-imported."""
    return {
        "name": session.name,
        "description": session.description,
        "buyer": {"item_demands": [
            {"item_name": d.item_name, "quantity": d.quantity, "min_price": str(d.min_price),
             "max_price": str(d.max_price)} for d in session.demands.all()]},
        "sellers": [
            {"handle": s.handle, "style": s.style,
             "priorities": {"customer_retention": str(s.customer_retention_weight),
                            "profit_maximization": str(s.profit_maximization_weight)},
             "inventory": [{"item_name": i.item_name, "cost_price": str(i.cost_price),
                            "selling_price": str(i.selling_price), "least_price": str(i.least_price)}
                           for i in s.inventory.all()]}
            for s in session.sellers.prefetch_related("inventory")],
    }

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
from django.core.validators import ProhibitNullCharactersValidator
from django.db import transaction

from negotiation.documents import SessionDocument, seller_terms
from negotiation.engine.names import clean_name, name_key
from negotiation.models import Batch, BuyerDemand, InventoryItem, NegotiationRun, Seller, Session
from negotiation.services.errors import ConflictError, flatten

_NO_NUL = ProhibitNullCharactersValidator()


def _clean(obj: Any, path: str, errors: dict[str, list[str]], exclude: list[str] | None = None) -> None:
    # Postgres cannot store NUL in text, and model fields (unlike form fields) do not check for it.
    for field in obj._meta.concrete_fields:
        value = getattr(obj, field.attname)
        if isinstance(value, str) and "\x00" in value:
            key = f"{path}.{field.name}" if path else field.name
            errors.setdefault(key, []).append(str(_NO_NUL.message))
            return
    try:
        obj.full_clean(exclude=exclude)
    except ValidationError as exc:
        for key, messages in flatten(exc, path).items():
            errors.setdefault(key, []).extend(messages)


def _seller_obj(session: Session, raw: dict[str, Any]) -> Seller:
    style, retention, profit = seller_terms(raw)
    return Seller(session=session, handle=clean_name(str(raw.get("handle", ""))), style=style,
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
    shapes = [k for k in ("priorities", "personality") if raw.get(k) is not None and not isinstance(raw[k], dict)]
    for key in shapes:
        errors.setdefault(f"{path}.{key}", []).append(f"{key.capitalize()} must be an object.")
    if shapes:
        return Seller(session=session), []
    seller = _seller_obj(session, raw)
    _clean(seller, path, errors, exclude=["session"])
    items: list[InventoryItem] = []
    inventory = raw.get("inventory") or []
    if not isinstance(inventory, list):
        errors.setdefault(f"{path}.inventory", []).append("Inventory must be a list of items.")
        inventory = []
    if len(inventory) > settings.MAMS_MAX_ITEMS:
        errors.setdefault(f"{path}.inventory", []).append(
            f"At most {settings.MAMS_MAX_ITEMS} inventory lines per seller; this one has {len(inventory)}.")
        inventory = []
    seen: set[str] = set()
    for j, line in enumerate(inventory):
        ipath = f"{path}.inventory[{j}]"
        if not isinstance(line, dict):
            errors.setdefault(ipath, []).append("Each inventory line must be an object.")
            continue
        item = InventoryItem(seller=seller, item_name=clean_name(str(line.get("item_name", ""))),
                             cost_price=_dec(line.get("cost_price")), selling_price=_dec(line.get("selling_price")),
                             least_price=_dec(line.get("least_price")))
        _clean(item, ipath, errors, exclude=["seller"])
        if name_key(item.item_name) in seen:
            errors.setdefault(f"{ipath}.item_name", []).append(
                "This seller already lists this item (item names are compared ignoring case).")
        seen.add(name_key(item.item_name))
        items.append(item)
    return seller, items


def _build_demand(session: Session, raw: dict[str, Any], path: str, errors: dict[str, list[str]]) -> BuyerDemand:
    quantity = raw.get("quantity", 1)
    if isinstance(quantity, bool) or (isinstance(quantity, float) and not quantity.is_integer()):
        # IntegerField.to_python would truncate 2.7 to 2 without a word.
        errors.setdefault(f"{path}.quantity", []).append("Quantity must be a whole number.")
    demand = BuyerDemand(session=session, item_name=clean_name(str(raw.get("item_name", ""))),
                         quantity=quantity, min_price=_dec(raw.get("min_price")), max_price=_dec(raw.get("max_price")))
    _clean(demand, path, errors, exclude=["session"])
    return demand


@transaction.atomic
def session_import(*, document: SessionDocument | dict[str, Any], owner: Any = None) -> Session:
    """Create a whole session from the spec's section-5 shapes, or write nothing at all.

    `document` is a SessionDocument (negotiation/documents.py), or its JSON as written in a file or
    a request: either way every object is built from it and `full_clean()`ed against the models' own
    rules, and each error is reported under its path in the document.
    """
    if isinstance(document, SessionDocument):
        document = document.as_json()
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
        sellers_raw = []  # reported; validating thousands of them would only take time
    if len(demands_raw) > settings.MAMS_MAX_ITEMS:
        errors.setdefault("buyer.item_demands", []).append(
            f"At most {settings.MAMS_MAX_ITEMS} item demands per buyer; this one has {len(demands_raw)}.")
        demands_raw = []
    demands: list[BuyerDemand] = []
    seen_items: set[str] = set()
    for i, raw in enumerate(demands_raw):
        path = f"buyer.item_demands[{i}]"
        if not isinstance(raw, dict):
            errors.setdefault(path, []).append("Each demand must be an object.")
            continue
        demand = _build_demand(session, raw, path, errors)
        if name_key(demand.item_name) in seen_items:
            errors.setdefault(f"{path}.item_name", []).append(
                "The buyer already has a demand for this item (item names are compared ignoring case).")
        seen_items.add(name_key(demand.item_name))
        demands.append(demand)
    built = [_build_seller(session, raw, f"sellers[{i}]", errors) for i, raw in enumerate(sellers_raw)]
    handles = [name_key(s.handle) for s, _ in built]
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
    return SessionDocument.of_session(session).as_json()


# --- edits one piece at a time (the REST API) -------------------------------------------------

def session_create(*, owner: Any, name: str = "", description: str = "") -> Session:
    session = Session(owner=owner, name=name, description=description)
    session.full_clean(exclude=["owner"])
    session.save()
    return session


def session_update(*, session: Session, name: str | None = None, description: str | None = None) -> Session:
    session_editable(session=session)
    if name is not None:
        session.name = name
    if description is not None:
        session.description = description
    session.full_clean(exclude=["owner"])
    session.save(update_fields=["name", "description"])
    return session


@transaction.atomic
def session_delete(*, session: Session) -> None:
    """Delete a session and its configuration; refused while runs or batches keep its results."""
    session_editable(session=session)

    runs = NegotiationRun.objects.filter(session=session).count()
    batches = Batch.objects.filter(session=session).count()
    if runs or batches:
        raise ConflictError(f"This session has {runs} negotiation run(s) in {batches} batch(es); it cannot be "
                            "deleted while their results are kept. Create a new session (or import an "
                            "edited export) instead.")
    session.delete()


@transaction.atomic
def buyer_config_set(*, session: Session, items: list[dict[str, Any]]) -> list[BuyerDemand]:
    """Replace the buyer's demands with `items` (the whole buyer configuration), or change nothing.

    Replace, not merge: an item left out is removed, so the stored configuration is always exactly
    the last one sent. Runs already made keep their own snapshot and are unaffected.
    """
    session_editable(session=session)
    errors: dict[str, list[str]] = {}
    if not items:
        errors.setdefault("items", []).append("The buyer needs at least one item demand.")
    demands: list[BuyerDemand] = []
    seen: set[str] = set()
    for i, raw in enumerate(items):
        path = f"items[{i}]"
        demand = _build_demand(session, raw, path, errors)
        if name_key(demand.item_name) in seen:
            errors.setdefault(f"{path}.item_name", []).append(
                f"'{demand.item_name}' is listed twice (item names are compared ignoring case).")
        seen.add(name_key(demand.item_name))
        demands.append(demand)
    if errors:
        raise ValidationError(errors)
    BuyerDemand.objects.filter(session=session).delete()
    return BuyerDemand.objects.bulk_create(demands)


@transaction.atomic
def seller_add(*, session: Session, seller: dict[str, Any]) -> Seller:
    """Add one seller with its inventory (spec 10.1), or write nothing."""
    session_editable(session=session)
    Session.objects.select_for_update().filter(pk=session.pk).first()  # one seller-add per session at a time
    errors: dict[str, list[str]] = {}
    count = session.sellers.count()
    if count >= settings.MAMS_MAX_SELLERS:
        errors.setdefault("non_field_errors", []).append(
            f"A session has at most {settings.MAMS_MAX_SELLERS} sellers and this one is full.")
    obj, items = _build_seller(session, seller, "", errors)
    errors = {("non_field_errors" if k == "__all__" else k.lstrip(".")): v for k, v in errors.items()}
    if obj.handle and session.sellers.filter(handle_key=name_key(obj.handle)).exists():
        errors.setdefault("handle", []).append(
            f"Another seller in this session already uses {obj.handle} (handles are compared ignoring case).")
    if errors:
        raise ValidationError(errors)
    obj.save()
    InventoryItem.objects.bulk_create(items)
    return obj


@transaction.atomic
def seller_delete(*, seller: Seller) -> None:
    """Remove a seller from its session; finished runs keep their own snapshot of it."""
    session_editable(session=seller.session)

    live = NegotiationRun.objects.filter(session_id=seller.session_id, status__in=[
        NegotiationRun.Status.QUEUED, NegotiationRun.Status.RUNNING]).count()
    if live:
        raise ConflictError(f"{live} run(s) of this session are queued or running and may still address "
                            f"{seller.handle}; remove it once they have finished (or cancel them).")
    seller.delete()


def session_editable(*, session: Session) -> None:
    """Refuse any change to a benchmark suite's session: its results are compared across runs of that
    suite version, so an edit would silently break comparability. A ValidationError (400) says which
    suite it is and what to do instead."""
    if session.frozen:
        msg = (f"This session belongs to {session.frozen_by} and is read-only: results are compared across "
               "runs of that suite version. To change it, copy the suite to a new version "
               "(suites/<name>-v<N+1>/) or export the session and import it as your own.")
        raise ValidationError({"session": [msg]})

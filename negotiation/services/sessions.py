"""Session writes: a whole scenario imported as one document, or demands and sellers one by one.

The input arrives typed: negotiation/documents.py's models are the one check of its shape, types
and rules (the API parses request bodies with them; a document given here as JSON is parsed with
them once, on the way in). What is left here needs the database: a handle already used in the
session, a full session, a frozen (benchmark) session. Every object is still `full_clean()`ed
before it is saved, as a last guard, and an import is one transaction: a document with any bad
line writes nothing, and the error names the exact path, e.g. `sellers[1].inventory[0].least_price`.
"""

from __future__ import annotations

from collections.abc import Mapping
from typing import Any

from django.conf import settings
from django.core.exceptions import ValidationError
from django.db import transaction

from negotiation.documents import Demand, SellerDocument, SessionDocument, parse
from negotiation.engine.names import name_key
from negotiation.models import Batch, BuyerDemand, InventoryItem, NegotiationRun, Seller, Session
from negotiation.services.errors import ConflictError, flatten


def _clean(obj: Any, path: str, errors: dict[str, list[str]], exclude: list[str]) -> None:
    try:
        obj.full_clean(exclude=exclude)
    except ValidationError as exc:
        for key, messages in flatten(exc, path).items():
            errors.setdefault(key, []).extend(messages)


def _seller_rows(session: Session, seller: SellerDocument, path: str, errors: dict[str, list[str]]
                 ) -> tuple[Seller, list[InventoryItem]]:
    style, retention, profit = seller.terms()
    obj = Seller(session=session, handle=seller.handle, style=style, customer_retention_weight=retention,
                 profit_maximization_weight=profit)
    _clean(obj, path, errors, exclude=["session"])
    items = [InventoryItem(seller=obj, item_name=line.item_name, cost_price=line.cost_price,
                           selling_price=line.selling_price, least_price=line.least_price)
             for line in seller.inventory]
    for j, item in enumerate(items):
        _clean(item, f"{path}.inventory[{j}]", errors, exclude=["seller"])
    return obj, items


def _demand_rows(session: Session, demands: list[Demand], path: str, errors: dict[str, list[str]]
                 ) -> list[BuyerDemand]:
    rows = [BuyerDemand(session=session, item_name=d.item_name, quantity=d.quantity, min_price=d.min_price,
                        max_price=d.max_price) for d in demands]
    for i, row in enumerate(rows):
        _clean(row, f"{path}[{i}]", errors, exclude=["session"])
    return rows


@transaction.atomic
def session_import(*, document: SessionDocument | Mapping[str, Any], owner: Any = None) -> Session:
    """Create a whole session from the spec's section-5 shapes, or write nothing at all.

    `document` is a SessionDocument (negotiation/documents.py); JSON as written in a file (the
    bundled scenarios, a suite) is parsed into one first, its errors reported by path in the words
    this service always used.
    """
    if not isinstance(document, SessionDocument):
        document = parse(SessionDocument, document, wording="import")
    errors: dict[str, list[str]] = {}
    session = Session(owner=owner, name=document.name, description=document.description)
    _clean(session, "", errors, exclude=["owner"])
    demands = _demand_rows(session, document.buyer.item_demands, "buyer.item_demands", errors)
    built = [_seller_rows(session, s, f"sellers[{i}]", errors) for i, s in enumerate(document.sellers)]
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
def buyer_config_set(*, session: Session, items: list[Demand]) -> list[BuyerDemand]:
    """Replace the buyer's demands with `items` (the whole buyer configuration, checked by
    documents.BuyerConfig), or change nothing.

    Replace, not merge: an item left out is removed, so the stored configuration is always exactly
    the last one sent. Runs already made keep their own snapshot and are unaffected.
    """
    session_editable(session=session)
    errors: dict[str, list[str]] = {}
    demands = _demand_rows(session, items, "items", errors)
    if errors:
        raise ValidationError(errors)
    BuyerDemand.objects.filter(session=session).delete()
    return BuyerDemand.objects.bulk_create(demands)


@transaction.atomic
def seller_add(*, session: Session, seller: SellerDocument) -> Seller:
    """Add one seller with its inventory (spec 10.1), or write nothing."""
    session_editable(session=session)
    Session.objects.select_for_update().filter(pk=session.pk).first()  # one seller-add per session at a time
    errors: dict[str, list[str]] = {}
    if session.sellers.count() >= settings.MAMS_MAX_SELLERS:
        errors.setdefault("non_field_errors", []).append(
            f"A session has at most {settings.MAMS_MAX_SELLERS} sellers and this one is full.")
    obj, items = _seller_rows(session, seller, "", errors)
    errors = {("non_field_errors" if k == "__all__" else k.lstrip(".")): v for k, v in errors.items()}
    if session.sellers.filter(handle_key=name_key(obj.handle)).exists():
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

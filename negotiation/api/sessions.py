"""Sessions: create, list, read, edit and delete; the buyer's demands and the sellers; import and export.

A session's owner sees its full configuration, private seller prices included: this is the
configuration API. The live negotiation endpoints are the ones that show a buyer's view only.
"""

from __future__ import annotations

from collections.abc import Mapping
from typing import Any

from django.conf import settings
from drf_spectacular.utils import extend_schema
from rest_framework import serializers, status
from rest_framework.exceptions import NotFound
from rest_framework.request import Request
from rest_framework.response import Response
from rest_framework.views import APIView

from negotiation.api.common import MAX_JSON_DEPTH, PAGE_PARAMETERS, errors, page_of, paginated_response
from negotiation.api.strict import StrictSerializer
from negotiation.documents import BuyerConfig, SellerDocument, SessionDocument, parse
from negotiation.models import MONEY, Seller, Session
from negotiation.selectors import session_get, session_list
from negotiation.services.sessions import (
    buyer_config_set,
    seller_add,
    seller_delete,
    session_create,
    session_delete,
    session_export,
    session_import,
    session_update,
)

TAG = ["sessions"]


# --- shapes (spec 5.1, 5.2 and 10.1) ------------------------------------------------------------
# The bodies of import, seller-add and buyer-config are negotiation/documents.py's pydantic models,
# parsed once by `parse` (a 400 naming each path) and documented in the schema by
# negotiation/api/strict.py::PydanticBodyExtension. The serializers below only shape the answers.

class DemandOutputSerializer(serializers.Serializer):
    id = serializers.UUIDField()
    item_name = serializers.CharField()
    quantity = serializers.IntegerField()
    min_price = serializers.DecimalField(**MONEY)
    max_price = serializers.DecimalField(**MONEY)


class SellerOutputSerializer(serializers.Serializer):
    class SellerPriorities(serializers.Serializer):
        customer_retention = serializers.DecimalField(max_digits=3, decimal_places=2,
                                                      source="customer_retention_weight")
        profit_maximization = serializers.DecimalField(max_digits=3, decimal_places=2,
                                                       source="profit_maximization_weight")

    class InventoryLineOut(serializers.Serializer):
        id = serializers.UUIDField()
        item_name = serializers.CharField()
        cost_price = serializers.DecimalField(**MONEY)
        selling_price = serializers.DecimalField(**MONEY)
        least_price = serializers.DecimalField(**MONEY)

    id = serializers.UUIDField()
    seller_id = serializers.UUIDField(source="id")
    handle = serializers.CharField()
    style = serializers.CharField()  # type: ignore[assignment]  # an API key named like a Field attribute
    priorities = SellerPriorities(source="*")
    inventory = InventoryLineOut(many=True, source="inventory.all")


class SessionSummarySerializer(serializers.Serializer):
    id = serializers.UUIDField()
    session_id = serializers.UUIDField(source="id")
    name = serializers.CharField()
    description = serializers.CharField()
    owner = serializers.CharField(source="owner.username", default=None)
    created_at = serializers.DateTimeField()


class SessionListItemSerializer(SessionSummarySerializer):
    items = serializers.IntegerField(source="n_demands", help_text="How many items the buyer demands.")
    sellers = serializers.IntegerField(source="n_sellers")


class SessionDetailSerializer(SessionSummarySerializer):
    class BuyerDemands(serializers.Serializer):
        item_demands = DemandOutputSerializer(many=True, source="demands.all")

    buyer = BuyerDemands(source="*")
    sellers = SellerOutputSerializer(many=True, source="sellers.all")


def session_or_404(request: Request, session_id: Any) -> Session:
    session = session_get(user=request.user, session_id=session_id)
    if session is None:
        raise NotFound("No session with this id.")
    return session


def _detail(request: Request, session_id: Any, code: int = status.HTTP_200_OK) -> Response:
    return Response(SessionDetailSerializer(session_or_404(request, session_id)).data, status=code)


# --- views --------------------------------------------------------------------------------------

class SessionsApi(APIView):
    """GET lists your sessions; POST creates an empty one (spec 10.1)."""

    class SessionCreateInput(StrictSerializer):
        name = serializers.CharField(max_length=200, required=False, allow_blank=True, default="")
        description = serializers.CharField(max_length=10_000, required=False, allow_blank=True, default="")

    @extend_schema(tags=TAG, operation_id="sessions_list", parameters=PAGE_PARAMETERS,
                   responses={200: page_of(SessionListItemSerializer, "PaginatedSessionList"), **errors(401)})
    def get(self, request: Request) -> Response:
        return paginated_response(request=request, view=self, queryset=session_list(user=request.user),
                                  serializer=SessionListItemSerializer)

    @extend_schema(tags=TAG, operation_id="sessions_create", request=SessionCreateInput,
                   responses={201: SessionDetailSerializer, **errors(400, 401, 413)})
    def post(self, request: Request) -> Response:
        data = self.SessionCreateInput(data=request.data)
        data.is_valid(raise_exception=True)
        session = session_create(owner=request.user, **data.validated_data)
        return _detail(request, session.pk, status.HTTP_201_CREATED)


class SessionApi(APIView):
    """One session: read it with its buyer demands and sellers, rename it, or delete it."""

    class SessionUpdateInput(StrictSerializer):
        name = serializers.CharField(max_length=200, required=False, allow_blank=True)
        description = serializers.CharField(max_length=10_000, required=False, allow_blank=True)

    @extend_schema(tags=TAG, operation_id="sessions_read", responses={200: SessionDetailSerializer,
                                                                       **errors(401, 404)})
    def get(self, request: Request, session_id: Any) -> Response:
        return _detail(request, session_id)

    @extend_schema(tags=TAG, operation_id="sessions_update", request=SessionUpdateInput,
                   responses={200: SessionDetailSerializer, **errors(400, 401, 404)})
    def patch(self, request: Request, session_id: Any) -> Response:
        session = session_or_404(request, session_id)
        data = self.SessionUpdateInput(data=request.data)
        data.is_valid(raise_exception=True)
        session_update(session=session, **data.validated_data)
        return _detail(request, session_id)

    @extend_schema(tags=TAG, operation_id="sessions_delete", responses={204: None, **errors(401, 404, 409)},
                   description="Deletes the session and its configuration. Refused with 409 while batches or "
                               "runs of it exist, so that results are never orphaned.")
    def delete(self, request: Request, session_id: Any) -> Response:
        session_delete(session=session_or_404(request, session_id))
        return Response(status=status.HTTP_204_NO_CONTENT)


class BuyerConfigApi(APIView):
    """Set the buyer's demands (spec 10.1). Replaces the whole buyer configuration."""

    class BuyerConfigOutput(serializers.Serializer):
        session_id = serializers.UUIDField()
        items = DemandOutputSerializer(many=True)

    @extend_schema(tags=TAG, operation_id="sessions_buyer_config", request=BuyerConfig,
                   responses={200: BuyerConfigOutput, **errors(400, 401, 404, 413)},
                   description="Replace semantics: after the call the buyer demands exactly `items` (at least "
                               "one; item names unique, compared ignoring case and Unicode form: 'Straße' = "
                               "'STRASSE'; 0 <= min_price <= max_price; "
                               "quantity >= 1). Runs already made keep their own snapshot.")
    def post(self, request: Request, session_id: Any) -> Response:
        session = session_or_404(request, session_id)
        body = parse(BuyerConfig, request.data)
        demands = buyer_config_set(session=session, items=body.items)
        return Response(self.BuyerConfigOutput({"session_id": session.pk, "items": demands}).data)


class SellersApi(APIView):
    """Add a seller with its style, priorities and inventory (spec 10.1)."""

    @extend_schema(tags=TAG, operation_id="sessions_sellers_add", request=SellerDocument,
                   responses={201: SellerOutputSerializer, **errors(400, 401, 404, 413)},
                   description="At most 10 sellers per session; the handle must be new in the session "
                               "(compared ignoring case); every inventory line needs cost < least <= selling.")
    def post(self, request: Request, session_id: Any) -> Response:
        session = session_or_404(request, session_id)
        seller = seller_add(session=session, seller=parse(SellerDocument, request.data))
        seller = Seller.objects.prefetch_related("inventory").get(pk=seller.pk)
        return Response(SellerOutputSerializer(seller).data, status=status.HTTP_201_CREATED)


class SellerApi(APIView):
    """Remove one seller from a session."""

    @extend_schema(tags=TAG, operation_id="sessions_sellers_delete", responses={204: None, **errors(401, 404, 409)})
    def delete(self, request: Request, session_id: Any, seller_id: Any) -> Response:
        session = session_or_404(request, session_id)
        seller = session.sellers.filter(pk=seller_id).first()
        if seller is None:
            raise NotFound("No seller with this id in this session.")
        seller_delete(seller=seller)
        return Response(status=status.HTTP_204_NO_CONTENT)


JSON_TYPES = {list: "an array", str: "a string", int: "a number", float: "a number", bool: "true or false",
              type(None): "null"}


class SessionImportApi(APIView):
    """Create a whole session from one document (spec section 5 shapes), or nothing at all."""

    @extend_schema(tags=TAG, operation_id="sessions_import", request=SessionDocument,
                   responses={201: SessionDetailSerializer, **errors(400, 401, 413)},
                   description="One transaction: a document with any bad line writes nothing, and each error "
                               "names its path, e.g. `sellers[1].inventory[0].least_price`. "
                               "`GET /api/sessions/{id}/export` returns this same document. Refused with a "
                               "message that says what to change: a key the document does not define, more "
                               f"than {settings.MAMS_MAX_SELLERS} sellers or {settings.MAMS_MAX_ITEMS} item demands or "
                               "inventory lines per seller, a string over its field's length, JSON nested "
                               f"deeper than {MAX_JSON_DEPTH} levels, a key given twice, and (413) a body "
                               "over the size limit.")
    def post(self, request: Request) -> Response:
        if not isinstance(request.data, Mapping):
            got = JSON_TYPES.get(type(request.data), "something else")
            raise serializers.ValidationError({"non_field_errors": [
                f"The session document must be a JSON object with `buyer` and `sellers`; this body is {got}."]})
        session = session_import(document=parse(SessionDocument, request.data), owner=request.user)
        return _detail(request, session.pk, status.HTTP_201_CREATED)


class SessionExportApi(APIView):
    """The session as an import document, to save, version and re-import."""

    @extend_schema(tags=TAG, operation_id="sessions_export", responses={200: SessionDocument,
                                                                         **errors(401, 404)})
    def get(self, request: Request, session_id: Any) -> Response:
        return Response(session_export(session=session_or_404(request, session_id)))

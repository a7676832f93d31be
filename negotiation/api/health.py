"""`GET /api/health`: whether each part of MAMS is up, for an operator, a load balancer or a status page.

Public (no token), like `/env/health`, so it says only up or down per part. The answer is 503 only
when this web process cannot serve (Postgres or Redis down); with no worker running the web still
serves, so it answers 200 with `"status": "degraded"` and `workers: down`.
"""

from __future__ import annotations

from typing import Any

from drf_spectacular.utils import OpenApiResponse, extend_schema
from rest_framework import serializers, status
from rest_framework.permissions import AllowAny
from rest_framework.request import Request
from rest_framework.response import Response
from rest_framework.views import APIView

from negotiation.services.health import DOWN, UP, platform_health


class HealthApi(APIView):
    """Up or down per part: the database, the broker, and the Celery workers."""

    authentication_classes: list[Any] = []
    permission_classes = [AllowAny]

    class HealthOutput(serializers.Serializer):
        class Parts(serializers.Serializer):
            database = serializers.ChoiceField(choices=[UP, DOWN])
            broker = serializers.ChoiceField(choices=[UP, DOWN])
            workers = serializers.ChoiceField(choices=[UP, DOWN], help_text=(
                "up when a live worker consumes the rounds and agents queues; down means queued runs will wait"))

        status = serializers.ChoiceField(choices=["up", "degraded", "down"], help_text=(
            "up: every part is up; degraded: the web serves but no worker is running; down: Postgres or Redis "
            "is down"))
        parts = Parts()

    @extend_schema(tags=["operations"], operation_id="health", auth=[], responses={
        200: HealthOutput, 503: OpenApiResponse(HealthOutput, description="The database or the broker is down.")})
    def get(self, request: Request) -> Response:
        parts = platform_health()
        code: int
        if parts["database"] == DOWN or parts["broker"] == DOWN:
            overall, code = "down", status.HTTP_503_SERVICE_UNAVAILABLE
        elif parts["workers"] == DOWN:
            overall, code = "degraded", status.HTTP_200_OK
        else:
            overall, code = "up", status.HTTP_200_OK
        return Response(self.HealthOutput({"status": overall, "parts": parts}).data, status=code)

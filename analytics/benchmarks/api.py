"""`GET /api/leaderboard/?suite=core-v1&sort=-buyer_share[&opponent=<fingerprint>]`: the leaderboard as JSON.

The same data as the page and `manage.py leaderboard` (analytics/benchmarks/leaderboard.py): one table
per opponent fingerprint, one row per buyer configuration, each metric with its 95% CI and n.
"""

from __future__ import annotations

from drf_spectacular.utils import OpenApiParameter, extend_schema
from rest_framework import serializers
from rest_framework.exceptions import ValidationError
from rest_framework.request import Request
from rest_framework.response import Response
from rest_framework.views import APIView

from analytics.benchmarks.leaderboard import COLUMNS, DEFAULT_SORT, SORTS, LeaderboardError, leaderboard
from negotiation.api.common import errors

TAG = ["benchmarks"]


class EstimateSerializer(serializers.Serializer):
    mean = serializers.FloatField(allow_null=True)
    low = serializers.FloatField(allow_null=True, help_text="Lower end of the seeded bootstrap 95% CI.")
    high = serializers.FloatField(allow_null=True, help_text="Upper end of the 95% CI.")
    n = serializers.IntegerField(help_text="Runs where the metric is defined (buyer share: deals).")


class MetricsSerializer(serializers.Serializer):
    buyer_score = EstimateSerializer(help_text="Buyer surplus share with no deal = 0, over runs where a deal was "
                                               "possible (analytics/metrics.py::buyer_score); the default ranking.")
    buyer_share = EstimateSerializer(help_text="Buyer surplus share on deals: (max − p) / (max − chosen floor).")
    deal_rate = EstimateSerializer(help_text="Deals / runs.")
    win_rate = EstimateSerializer(help_text="Deals with buyer share > win_threshold / runs where a deal was possible.")
    mutual_loss = EstimateSerializer(help_text="Runs with no deal although some seller's floor was within budget.")
    rounds = EstimateSerializer(help_text="Rounds per run.")


class AgentPartsSerializer(serializers.Serializer):
    strategy = serializers.CharField(allow_null=True)
    profile = serializers.CharField(allow_null=True, allow_blank=True)
    model = serializers.CharField(allow_null=True, allow_blank=True)
    temperature = serializers.FloatField(allow_null=True)
    prompt_format = serializers.CharField(allow_null=True, required=False)
    prompt_version = serializers.CharField(allow_null=True, required=False)
    fallback = serializers.CharField(allow_null=True)
    tactics = serializers.CharField(required=False, help_text="A seeded baseline's draw version (beta and opening "
                                                              "from the run's seed); absent for -fixed and LLMs.")


class DriftSerializer(serializers.Serializer):
    metric = serializers.CharField()
    label = serializers.CharField()  # type: ignore[assignment]  # an API key named like a Field attribute
    mean = serializers.FloatField()
    low = serializers.FloatField()
    high = serializers.FloatField()
    n = serializers.IntegerField()
    previous_mean = serializers.FloatField()
    previous_low = serializers.FloatField()
    previous_high = serializers.FloatField()
    previous_n = serializers.IntegerField()
    benchmark = serializers.UUIDField(help_text="The benchmark run that drifted.")
    previous = serializers.UUIDField(help_text="The benchmark run it was compared with.")
    created_at = serializers.DateTimeField()


class VersusLeaderSerializer(serializers.Serializer):
    leader = serializers.BooleanField(help_text="This row has the table's top buyer score.")
    pairs = serializers.IntegerField(required=False, help_text="Runs paired with the top row's.")
    difference = serializers.FloatField(required=False, allow_null=True, help_text="Mean paired difference, top − row.")
    p = serializers.FloatField(required=False, allow_null=True, help_text="Paired sign-flip permutation test p-value.")
    p_holm = serializers.FloatField(required=False, allow_null=True, help_text="Holm-adjusted across the table.")
    survives = serializers.BooleanField(required=False, help_text="p_holm <= alpha.")


class RowSerializer(serializers.Serializer):
    rank = serializers.IntegerField()
    label = serializers.CharField(help_text="profile:model@temperature, or baseline:<strategy>.")  # type: ignore[assignment]  # an API key named like a Field attribute
    baseline = serializers.BooleanField(help_text="A reference row: a classic concession strategy, no LLM.")
    canary = serializers.BooleanField(help_text="A reference row: an exploit canary, a policy with no skill.")
    vs_leader = VersusLeaderSerializer(allow_null=True, help_text="The buyer score against the top row's.")
    buyer_fingerprint = serializers.CharField()
    seller_fingerprint = serializers.CharField()
    buyer = AgentPartsSerializer(help_text="What the buyer fingerprint hashes.")
    runs = serializers.IntegerField(help_text="Completed runs behind the row.")
    benchmark_runs = serializers.IntegerField()
    last_run_at = serializers.DateTimeField(allow_null=True)
    code_versions = serializers.ListField(child=serializers.CharField(), help_text="Commits that produced the runs.")
    metrics = MetricsSerializer()
    drift = DriftSerializer(many=True, help_text="Metrics that left the previous benchmark run's CI in the latest one.")


class OpponentSerializer(AgentPartsSerializer):
    fingerprint = serializers.CharField()
    label = serializers.CharField()  # type: ignore[assignment]  # an API key named like a Field attribute
    benchmark_runs = serializers.IntegerField()
    last_run_at = serializers.DateTimeField(allow_null=True)


class TableSerializer(serializers.Serializer):
    opponent = OpponentSerializer()
    rows = RowSerializer(many=True)
    adjusted = serializers.BooleanField(help_text="More than two rows: the vs_leader p-values are Holm-adjusted.")


class LeaderboardSerializer(serializers.Serializer):
    suite = serializers.CharField()
    content_hash = serializers.CharField(help_text="sha256 of the suite version's files; empty if never loaded.")
    suites = serializers.ListField(child=serializers.CharField(), help_text="Loaded suite versions.")
    sort = serializers.CharField()
    opponent = serializers.CharField(help_text="The opponent filter, if any.")
    win_threshold = serializers.FloatField()
    note = serializers.CharField()
    rules = serializers.CharField(help_text="The suite's turn-taking rules: known (core-v1) or hidden (core-v2).")
    alpha = serializers.FloatField(help_text="The family-wise error rate 'survives' refers to.")
    holm_note = serializers.CharField()
    opponents = OpponentSerializer(many=True, help_text="Every opponent configuration with results on the suite.")
    tables = TableSerializer(many=True, help_text="One table per opponent fingerprint; never compare across them.")


class LeaderboardApi(APIView):
    """The benchmark leaderboard of one suite version: shared benchmark runs and your own (staff: all)."""

    @extend_schema(tags=TAG, operation_id="leaderboard", parameters=[
        OpenApiParameter("suite", str, description="core-v1, or core for its latest loaded version (default core)."),
        OpenApiParameter("sort", str, enum=[*SORTS, *(f"-{s}" for s in SORTS)],
                         description=f"Column, '-' for descending (default {DEFAULT_SORT}). Metrics sort by mean: "
                                     + ", ".join(c.key for c in COLUMNS) + "."),
        OpenApiParameter("opponent", str, description="Only this opponent (seller) fingerprint."),
    ], responses={200: LeaderboardSerializer, **errors(400, 401)})
    def get(self, request: Request) -> Response:
        params = request.query_params
        try:
            data = leaderboard(user=request.user, suite=params.get("suite") or None,
                               sort=params.get("sort") or DEFAULT_SORT, opponent=params.get("opponent") or "")
        except LeaderboardError as exc:
            raise ValidationError({exc.field: [str(exc)]}) from exc
        return Response(LeaderboardSerializer(data).data)


@extend_schema(exclude=True)
class LeaderboardSlashApi(LeaderboardApi):
    """The same at /api/leaderboard/ (with the slash), kept out of the schema to document it once."""

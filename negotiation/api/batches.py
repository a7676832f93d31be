"""Batches: launch N negotiations of one configuration, watch their progress, cancel, export results.

`POST /api/batches` honours an `Idempotency-Key` header: the first request with a key creates the
batch (201); a retry with the same key and the same body returns that batch (200, header
`Idempotent-Replayed: true`) and queues nothing; the same key with another body is 409. Keys are
per user and at most 200 characters. Results stream row by row, so a 10,000-run export never sits
in memory.
"""

from __future__ import annotations

import csv
import hashlib
import json
import uuid
from collections.abc import Iterator
from decimal import Decimal
from typing import Any

from django.conf import settings
from django.http import StreamingHttpResponse
from drf_spectacular.types import OpenApiTypes
from drf_spectacular.utils import OpenApiParameter, OpenApiResponse, extend_schema, extend_schema_field
from rest_framework import serializers, status
from rest_framework.exceptions import NotFound, PermissionDenied, ValidationError
from rest_framework.renderers import JSONRenderer
from rest_framework.request import Request
from rest_framework.response import Response
from rest_framework.views import APIView

from negotiation.agents.config import BASELINES, FIXED_BASELINES, STRATEGIES
from negotiation.agents.prompts import VARIANTS
from negotiation.api.common import (
    PAGE_PARAMETERS,
    CSVRenderer,
    JSONLinesRenderer,
    errors,
    page_of,
    paginated_response,
)
from negotiation.api.strict import NameField, StrictSerializer
from negotiation.models import Batch, Disclosure, Rules
from negotiation.selectors import (
    RESULT_COLUMNS,
    batch_eta,
    batch_get,
    batch_list,
    batch_summary,
    batch_workers,
    may_change,
    run_result_row,
    run_results,
    session_get,
)
from negotiation.services.batches import batch_cancel_request, batch_create_idempotent
from negotiation.services.budgets import MAX_BUDGET_TOKENS, MAX_BUDGET_USD, batch_spend
from negotiation.services.estimates import batch_estimate

TAG = ["batches"]
EXPORT_CHUNK = 500


class AgentSpecSerializer(StrictSerializer):
    strategy = serializers.ChoiceField(choices=list(STRATEGIES), required=False,
                                       help_text="llm; a baseline concession strategy that makes no LLM call (its "
                                                 "beta and opening drawn from the run's seed, or the nominal curve "
                                                 "with -fixed); or, for the buyer, an exploit canary.")
    profile = serializers.CharField(max_length=100, required=False,
                                    help_text="An LLM profile name (see settings.LLM_PROFILES), e.g. local, "
                                              "openrouter, openai-compatible.")
    model = serializers.RegexField(r"^[A-Za-z0-9._:/@+\-]{1,200}$", required=False, allow_null=True,
                                   error_messages={"invalid": "A model name is letters, digits and ._:/@+- only."},
                                   help_text="Defaults to the profile's model for the role.")
    temperature = serializers.FloatField(min_value=0, max_value=2, required=False, allow_null=True)
    fallback = serializers.ChoiceField(choices=[*BASELINES, *FIXED_BASELINES], required=False,
                                       help_text="The baseline that acts when the LLM's output is unusable.")
    prompt_variant = serializers.ChoiceField(choices=list(VARIANTS), required=False,
                                             help_text="A named prompt variant (negotiation/agents/prompts.py): "
                                                       + "; ".join(f"{v.name}: {v.description}"
                                                                   for v in VARIANTS.values()))


class AgentsSerializer(StrictSerializer):
    buyer = AgentSpecSerializer(required=False)
    seller = AgentSpecSerializer(required=False)
    analyst = AgentSpecSerializer(required=False)


class BatchOutputSerializer(serializers.Serializer):
    class BatchProgress(serializers.Serializer):
        queued = serializers.IntegerField()
        running = serializers.IntegerField()
        completed = serializers.IntegerField()
        failed = serializers.IntegerField()
        cancelled = serializers.IntegerField()

    id = serializers.UUIDField()
    session = serializers.UUIDField(source="session_id")
    owner = serializers.CharField(source="owner.username", default=None)
    shared = serializers.BooleanField(default=False, help_text=(
        "A shared benchmark batch (made by a benchmark run without an owner): every signed-in user reads it and "
        "its runs; only staff may cancel it."))
    name = serializers.CharField(help_text="The batch's optional name (blank if none).")
    tags = serializers.ListField(child=serializers.CharField(), help_text="The batch's optional tags.")
    item_name = serializers.CharField(help_text="Blank means every item the buyer demands.")
    runs_requested = serializers.IntegerField(help_text="Runs per item.")
    agents = serializers.JSONField(help_text="The resolved agent configuration per role.")
    temperature = serializers.FloatField()
    max_rounds = serializers.IntegerField()
    base_seed = serializers.IntegerField()
    disclosure = serializers.ChoiceField(choices=Disclosure.choices, help_text=(
        "What the other side receives of a number that states its sender's hidden price: redact or allow."))
    voice = serializers.BooleanField(help_text="Each seller reply is spoken; its message then has an audio_url.")
    rules = serializers.ChoiceField(choices=Rules.choices, help_text=(
        "The turn-taking rules: known (max_rounds told, a closing turn) or hidden (core-v2: a per-run hidden last "
        "round, no closing turn, binding counters). Part of the runs' fingerprints."))
    status = serializers.ChoiceField(choices=Batch.Status.choices)
    budget_usd = serializers.DecimalField(max_digits=12, decimal_places=6, allow_null=True,
                                          help_text="The dollar budget, or null.")
    budget_tokens = serializers.IntegerField(allow_null=True, help_text="The token budget, or null.")
    stop_reason = serializers.CharField(help_text=(
        "Why the platform stopped the batch on its own: \"budget reached\" (then status is cancelled); "
        "blank otherwise."))
    created_at = serializers.DateTimeField()
    finished_at = serializers.DateTimeField(allow_null=True)
    total_runs = serializers.IntegerField(source="eta.total")
    finished_runs = serializers.IntegerField(source="eta.finished")
    percent = serializers.FloatField(source="eta.percent")
    progress = BatchProgress(source="eta.progress")
    started_at = serializers.DateTimeField(source="eta.started_at", allow_null=True)
    runs_per_second = serializers.FloatField(source="eta.runs_per_second", allow_null=True)
    eta_seconds = serializers.FloatField(source="eta.eta_seconds", allow_null=True,
                                         help_text="Runs left / observed rate (finished runs per second since "
                                                   "the first run started); null until a run has finished.")
    eta_at = serializers.DateTimeField(source="eta.eta_at", allow_null=True)
    results_csv = serializers.SerializerMethodField()
    results_jsonl = serializers.SerializerMethodField()

    def _url(self, obj: Batch, ext: str) -> str:
        request = self.context.get("request")
        path = f"/api/batches/{obj.pk}/results.{ext}"
        return request.build_absolute_uri(path) if request else path

    def get_results_csv(self, obj: Batch) -> str:
        return self._url(obj, "csv")

    def get_results_jsonl(self, obj: Batch) -> str:
        return self._url(obj, "jsonl")

    def to_representation(self, instance: Batch) -> dict[str, Any]:
        instance.eta = batch_eta(batch=instance)  # type: ignore[attr-defined]  # read by the eta.* sources
        return super().to_representation(instance)


class BatchDetailSerializer(BatchOutputSerializer):
    class BatchSummary(serializers.Serializer):
        deals = serializers.IntegerField()
        deal_rate = serializers.FloatField(allow_null=True)
        mean_price = serializers.DecimalField(max_digits=12, decimal_places=4, allow_null=True)
        mean_rounds = serializers.FloatField(allow_null=True)
        wall_seconds = serializers.FloatField(allow_null=True)

    class BatchWorkers(serializers.Serializer):
        live = serializers.IntegerField(allow_null=True, help_text="Live Celery workers consuming the queues a batch "
                                                                   "is played on; null when Redis does not answer.")
        alert = serializers.CharField(allow_null=True, help_text="Set when runs remain and no worker will play "
                                                                 "them: what is wrong and what to do.")

    class BatchSpend(serializers.Serializer):
        prompt_tokens = serializers.IntegerField()
        completion_tokens = serializers.IntegerField()
        tokens = serializers.IntegerField()
        usd = serializers.CharField(allow_null=True, help_text="Dollars, a decimal string; null when a model "
                                                               "with usage has no price.")
        unpriced_models = serializers.ListField(child=serializers.CharField())

    summary = serializers.SerializerMethodField()
    workers = serializers.SerializerMethodField()
    spend = serializers.SerializerMethodField()

    @extend_schema_field(BatchSpend)
    def get_spend(self, obj: Batch) -> dict[str, Any]:
        """What the batch's recorded LLM calls (turns and post-run analyses) cost so far
        (services/budgets.py::batch_spend)."""
        return batch_spend(batch_id=obj.pk).as_dict()

    @extend_schema_field(BatchWorkers)
    def get_workers(self, obj: Batch) -> dict[str, Any]:
        return self.BatchWorkers(batch_workers(progress=obj.eta["progress"])).data  # type: ignore[attr-defined]

    @extend_schema_field(BatchSummary)
    def get_summary(self, obj: Batch) -> dict[str, Any]:
        return self.BatchSummary(batch_summary(batch_id=obj.pk)).data


def batch_or_404(request: Request, batch_id: Any) -> Batch:
    batch = batch_get(user=request.user, batch_id=batch_id)
    if batch is None:
        raise NotFound("No batch with this id.")
    return batch


class BatchesApi(APIView):
    """GET lists your batches with progress; POST launches one."""

    class BatchCreateInput(StrictSerializer):
        session = serializers.UUIDField(help_text="The session to negotiate in.")
        item_name = NameField(max_length=255, required=False, allow_blank=True, allow_null=True,
                                          default="", help_text="One demanded item; null or blank for every item "
                                                                "(then `runs` runs of each).")
        runs = serializers.IntegerField(help_text="Runs per item, 1 to MAMS_MAX_RUNS_PER_BATCH (10000 by "
                                                  "default).")
        name = serializers.CharField(max_length=120, required=False, allow_blank=True, default="",
                                     help_text="An optional name, shown in the batches table and searchable.")
        tags = serializers.ListField(child=serializers.CharField(max_length=40), max_length=20, required=False,
                                     default=list, help_text="Optional tags (1-40 letters, digits or . _ : -), "
                                                             "to filter the batches table by.")
        agents = AgentsSerializer(required=False, help_text="Per role: strategy, profile, model, temperature.")
        temperature = serializers.FloatField(min_value=0, max_value=2, default=0.7)
        max_rounds = serializers.IntegerField(default=5, help_text="1 to MAMS_MAX_ROUNDS_LIMIT (20 by default).")
        base_seed = serializers.IntegerField(min_value=0, max_value=2_147_483_647, default=0,
                                             help_text="Run i gets seed base_seed + i.")
        disclosure = serializers.ChoiceField(
            choices=Disclosure.values, default=Disclosure.REDACT,
            error_messages={"invalid_choice": f"Must be one of {', '.join(Disclosure.values)}; got {{input!r}}."},
            help_text="redact (default): a number in a message that states its sender's own hidden price "
                      "reaches the other side as [withheld]; allow: delivered as said, to study leaking. "
                      "Leaks are counted either way.")
        voice = serializers.BooleanField(default=False, help_text=(
            "Speak each seller reply (ElevenLabs with ELEVENLABS_API_KEY, else espeak-ng), on the voice queue; "
            "each seller message then carries an audio_url. Off by default: large batches rarely want it."))
        rules = serializers.ChoiceField(
            choices=Rules.values, default=Rules.KNOWN,
            error_messages={"invalid_choice": f"Must be one of {', '.join(Rules.values)}; got {{input!r}}."},
            help_text="known (default): max_rounds is the deadline, told to the agents, with a closing turn; "
                      "hidden: each run ends without warning after a round drawn from its seed (the agents are "
                      "told the range), with no closing turn, and a counter is binding, so waiting cannot win "
                      "(the core-v2 benchmark rules, negotiation/engine/protocol.py).")
        budget_usd = serializers.DecimalField(
            max_digits=12, decimal_places=6, min_value=Decimal("0.000001"), max_value=MAX_BUDGET_USD,
            required=False, allow_null=True, default=None,
            error_messages={"min_value": "Must be above 0 dollars.",
                            "max_value": f"Must be at most {MAX_BUDGET_USD} dollars.",
                            "invalid": "Must be a finite number of dollars above 0."},
            help_text="Dollars the batch may spend (the recorded tokens of its LLM calls, agent turns and post-run "
                      "analyses, priced by the price table). When reached no new turn starts, no analysis calls "
                      "its LLM, calls in flight finish and the remaining runs end cancelled with the reason "
                      "\"budget reached\". Every LLM agent's model, the analyst's too, needs a price "
                      "(MAMS_MODEL_PRICES_JSON).")
        budget_tokens = serializers.IntegerField(
            min_value=1, max_value=MAX_BUDGET_TOKENS, required=False, allow_null=True, default=None,
            error_messages={"min_value": "Must be at least 1 token.",
                            "max_value": f"Must be at most {MAX_BUDGET_TOKENS} tokens."},
            help_text="Tokens (prompt + completion) the batch may spend; stops it like budget_usd.")
        dry_run = serializers.BooleanField(
            default=False, help_text="true: launch nothing; answer 200 with the estimate (calls, tokens, "
                                     "dollars, wall time under the known limits) and the inputs it used.")

        def validate_runs(self, value: int) -> int:
            if not 1 <= value <= settings.MAMS_MAX_RUNS_PER_BATCH:
                raise serializers.ValidationError(
                    f"Must be a whole number from 1 to {settings.MAMS_MAX_RUNS_PER_BATCH}; got {value}.")
            return value

        def validate_max_rounds(self, value: int) -> int:
            if not 1 <= value <= settings.MAMS_MAX_ROUNDS_LIMIT:
                raise serializers.ValidationError(
                    f"Must be a whole number from 1 to {settings.MAMS_MAX_ROUNDS_LIMIT}; got {value}.")
            return value

    @extend_schema(tags=TAG, operation_id="batches_list", parameters=[
        *PAGE_PARAMETERS,
        OpenApiParameter("status", str, enum=Batch.Status.values, description="Only batches in this status."),
        OpenApiParameter("session", OpenApiTypes.UUID, description="Only batches of this session."),
    ], responses={200: page_of(BatchOutputSerializer, "PaginatedBatchList"), **errors(400, 401)})
    def get(self, request: Request) -> Response:
        status_ = request.query_params.get("status") or None
        session = request.query_params.get("session") or None
        if status_ and status_ not in Batch.Status.values:
            raise ValidationError({"status": [f"Must be one of {', '.join(Batch.Status.values)}."]})
        if session and not _is_uuid(session):
            raise ValidationError({"session": ["Must be a valid UUID."]})
        return paginated_response(request=request, view=self, serializer=BatchOutputSerializer,
                                  queryset=batch_list(user=request.user, status=status_, session_id=session))

    @extend_schema(tags=TAG, operation_id="batches_create", request=BatchCreateInput, parameters=[
        OpenApiParameter("Idempotency-Key", str, OpenApiParameter.HEADER, required=False,
                         description="Makes a retried POST return the same batch instead of a second one."),
    ], responses={201: BatchDetailSerializer,
                  200: OpenApiResponse(BatchDetailSerializer, description="A replay of an earlier request with "
                                                                          "the same Idempotency-Key."),
                  **errors(400, 401, 409, 413, 429)})
    def post(self, request: Request) -> Response:
        key = request.headers.get("Idempotency-Key", "").strip()
        if len(key) > 200:
            raise ValidationError({"Idempotency-Key": ["At most 200 characters."]})
        data = self.BatchCreateInput(data=request.data)
        data.is_valid(raise_exception=True)
        v = dict(data.validated_data)
        session = session_get(user=request.user, session_id=v.pop("session"))
        if session is None:
            raise ValidationError({"session": ["No session with this id (or it is not yours)."]})
        if v.pop("dry_run"):
            v.pop("budget_usd"), v.pop("budget_tokens")
            estimate = batch_estimate(session=session, item_name=(v.get("item_name") or "").strip() or None,
                                      runs=v["runs"], agents=v.get("agents"), max_rounds=v["max_rounds"],
                                      temperature=v["temperature"])
            return Response({"dry_run": True, "estimate": estimate}, status=status.HTTP_200_OK)
        body_hash = hashlib.sha256(json.dumps(request.data, sort_keys=True, default=str).encode()).hexdigest()
        batch, created = batch_create_idempotent(
            owner=request.user, idempotency_key=key, request_hash=body_hash, session=session,
            item_name=(v.pop("item_name") or "").strip() or None, agents=v.pop("agents", None), **v)
        out = BatchDetailSerializer(batch_or_404(request, batch.pk), context={"request": request}).data
        if created:
            return Response(out, status=status.HTTP_201_CREATED)
        return Response(out, status=status.HTTP_200_OK, headers={"Idempotent-Replayed": "true"})


def _is_uuid(value: str) -> bool:

    try:
        uuid.UUID(value)
    except ValueError:
        return False
    return True


class BatchApi(APIView):
    """One batch: status, progress per run status, ETA and a summary of the finished runs."""

    @extend_schema(tags=TAG, operation_id="batches_read", responses={200: BatchDetailSerializer,
                                                                      **errors(401, 404)})
    def get(self, request: Request, batch_id: Any) -> Response:
        return Response(BatchDetailSerializer(batch_or_404(request, batch_id), context={"request": request}).data)


class BatchCancelApi(APIView):
    """Cancel: queued runs stop now, running ones end at their next round; nothing half-written is kept."""

    @extend_schema(tags=TAG, operation_id="batches_cancel", request=None,
                   responses={200: BatchDetailSerializer, **errors(401, 403, 404, 409)},
                   description="409 when the batch has already finished; cancelling a cancelled batch is "
                               "harmless. 403 for a shared benchmark batch that is not yours: you may read it, "
                               "only staff may cancel it (another user's private batch stays a 404).")
    def post(self, request: Request, batch_id: Any) -> Response:
        batch = batch_or_404(request, batch_id)
        if not may_change(request.user, batch):
            raise PermissionDenied("This is a shared benchmark batch: every signed-in user may read it, but only "
                                   "staff may cancel it.")
        batch_cancel_request(batch=batch)
        return Response(BatchDetailSerializer(batch_or_404(request, batch_id), context={"request": request}).data)


class _Echo:
    def write(self, value: str) -> str:
        return value


def _csv_rows(batch_id: Any) -> Iterator[str]:
    writer = csv.writer(_Echo())
    yield writer.writerow(RESULT_COLUMNS)
    for run in run_results(batch_id=batch_id).iterator(chunk_size=EXPORT_CHUNK):
        row = run_result_row(run)
        yield writer.writerow([row[c] for c in RESULT_COLUMNS])


def _jsonl_rows(batch_id: Any) -> Iterator[str]:
    for run in run_results(batch_id=batch_id).iterator(chunk_size=EXPORT_CHUNK):
        row = run_result_row(run)
        yield json.dumps({c: (None if row[c] == "" else row[c]) for c in RESULT_COLUMNS}) + "\n"


RESULTS_DOC = ("One row per run: " + ", ".join(RESULT_COLUMNS) + ". Streamed; money is a decimal string; "
               "buyer_surplus_share = (max_price - price) / (max_price - chosen seller's least_price).")


class BatchResultsCsvApi(APIView):
    renderer_classes = [JSONRenderer, CSVRenderer]

    @extend_schema(tags=TAG, operation_id="batches_results_csv", description=RESULTS_DOC,
                   responses={(200, "text/csv"): OpenApiTypes.STR, **errors(401, 404)})
    def get(self, request: Request, batch_id: Any) -> StreamingHttpResponse:
        batch = batch_or_404(request, batch_id)
        response = StreamingHttpResponse(_csv_rows(batch.pk), content_type="text/csv; charset=utf-8")
        response["Content-Disposition"] = f'attachment; filename="batch-{batch.pk}.csv"'
        return response


class BatchResultsJsonlApi(APIView):
    renderer_classes = [JSONRenderer, JSONLinesRenderer]

    @extend_schema(tags=TAG, operation_id="batches_results_jsonl", description=RESULTS_DOC,
                   responses={(200, "application/x-ndjson"): OpenApiTypes.STR, **errors(401, 404)})
    def get(self, request: Request, batch_id: Any) -> StreamingHttpResponse:
        batch = batch_or_404(request, batch_id)
        response = StreamingHttpResponse(_jsonl_rows(batch.pk), content_type="application/x-ndjson")
        response["Content-Disposition"] = f'attachment; filename="batch-{batch.pk}.jsonl"'
        return response

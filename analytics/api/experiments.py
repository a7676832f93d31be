"""Paired experiments and reflect sequences.

`POST /api/experiments` runs two or more conditions (a model, a temperature, a prompt variant, a
seller population) on the same scenarios with the same seeds; `GET .../results` gives each
condition's metrics with bootstrap CIs and each condition's paired differences against the first
(the control), paired by (item, seed). `POST /api/sequences` plays N runs one after another in a
reflect mode (none, buyer, seller, both); `GET /api/sequences/{id}` gives each run's prompt versions,
utilities, their cumulative averages and the coach's notes. Another user's object is a 404.
"""

from __future__ import annotations

from typing import Any

from django.conf import settings
from drf_spectacular.utils import extend_schema
from rest_framework import serializers, status
from rest_framework.exceptions import NotFound, ValidationError
from rest_framework.request import Request
from rest_framework.response import Response
from rest_framework.views import APIView

from analytics.research import (
    experiment_get,
    experiment_list,
    experiment_results,
    experiment_results_json,
    experiment_state,
    sequence_get,
    sequence_list,
    sequence_summary,
)
from negotiation.api.batches import AgentsSerializer
from negotiation.api.common import PAGE_PARAMETERS, errors, page_of, paginated_response
from negotiation.api.strict import NameField, StrictSerializer
from negotiation.models import Experiment, ReflectSequence, Style
from negotiation.selectors import session_get
from negotiation.services.experiments import MAX_CONDITIONS, experiment_create
from negotiation.services.reflect import MAX_LENGTH, sequence_create

TAG = ["experiments"]
SEQ_TAG = ["sequences"]
SEED_MAX = 2_147_483_647


def _runs(value: int) -> None:
    if not 1 <= value <= settings.MAMS_MAX_RUNS_PER_BATCH:
        raise serializers.ValidationError(f"Must be a whole number from 1 to {settings.MAMS_MAX_RUNS_PER_BATCH}; "
                                          f"got {value}.")


def _rounds(value: int) -> None:
    if not 1 <= value <= settings.MAMS_MAX_ROUNDS_LIMIT:
        raise serializers.ValidationError(f"Must be a whole number from 1 to {settings.MAMS_MAX_ROUNDS_LIMIT}; "
                                          f"got {value}.")


def _validated(request: Request, serializer: type[serializers.Serializer]) -> tuple[Any, dict[str, Any]]:
    """The request's validated fields, and the session they name (one of the user's, else a 400)."""
    data = serializer(data=request.data)
    data.is_valid(raise_exception=True)
    fields = dict(data.validated_data)
    session = session_get(user=request.user, session_id=fields.pop("session"))
    if session is None:
        raise ValidationError({"session": ["No session with this id (or it is not yours)."]})
    return session, fields


# --- experiments ---------------------------------------------------------------------------------

class ExperimentConditionInputSerializer(StrictSerializer):
    label = serializers.CharField(max_length=60, help_text="Unique in the experiment, e.g. control, temp-0.2.")  # type: ignore[assignment]  # an API key named like a Field attribute
    agents = AgentsSerializer(required=False, help_text="Per role: strategy, profile, model, temperature, "
                                                        "prompt_variant.")
    temperature = serializers.FloatField(min_value=0, max_value=2, default=0.7,
                                         help_text="For roles that do not set their own.")
    sellers = serializers.ListField(child=serializers.CharField(max_length=51), required=False, max_length=10,
                                    help_text="A seller population: the handles that take part (default: all).")
    styles = serializers.DictField(child=serializers.ChoiceField(choices=Style.values), required=False,
                                   help_text='Style overrides by handle, e.g. {"@QuickTech": "rude"}.')


class ExperimentOutputSerializer(serializers.Serializer):
    class ExperimentConditionOut(serializers.Serializer):
        label = serializers.CharField()  # type: ignore[assignment]  # an API key named like a Field attribute
        position = serializers.IntegerField(help_text="0 is the control.")
        agents = serializers.JSONField(help_text="The agents as given (each batch stores them resolved).")
        temperature = serializers.FloatField()
        sellers = serializers.ListField(child=serializers.CharField())
        styles = serializers.DictField(child=serializers.CharField())
        batch = serializers.UUIDField(source="batch_id", allow_null=True)
        batch_status = serializers.CharField(source="batch.status", default=None, allow_null=True)

    id = serializers.UUIDField()
    name = serializers.CharField()
    owner = serializers.CharField(source="owner.username", default=None)
    session = serializers.UUIDField(source="session_id")
    item_name = serializers.CharField(help_text="Blank means every demanded item.")
    runs = serializers.IntegerField(help_text="Runs per condition (and per item).")
    base_seed = serializers.IntegerField(help_text="Run i of every condition has seed base_seed + i.")
    max_rounds = serializers.IntegerField()
    status = serializers.SerializerMethodField()
    created_at = serializers.DateTimeField()
    launched_at = serializers.DateTimeField(allow_null=True)
    conditions = ExperimentConditionOut(many=True)

    def get_status(self, obj: Experiment) -> str:
        return experiment_state(obj)


class ConditionEstimateSerializer(serializers.Serializer):
    mean = serializers.FloatField(allow_null=True)
    low = serializers.FloatField(allow_null=True, help_text="95% bootstrap CI.")
    high = serializers.FloatField(allow_null=True)
    n = serializers.IntegerField()


class PairedDifferenceSerializer(ConditionEstimateSerializer):
    mean_control = serializers.FloatField(allow_null=True)
    mean_condition = serializers.FloatField(allow_null=True)
    sentence = serializers.CharField()


class ExperimentResultsSerializer(serializers.Serializer):
    class ExperimentConditionResult(serializers.Serializer):
        label = serializers.CharField()  # type: ignore[assignment]  # an API key named like a Field attribute
        batch = serializers.UUIDField(allow_null=True)
        status = serializers.CharField(allow_null=True)
        progress = serializers.DictField(child=serializers.FloatField(), allow_null=True)
        fingerprints = serializers.DictField(child=serializers.CharField())
        metrics = serializers.DictField(child=ConditionEstimateSerializer())

    class ExperimentComparison(serializers.Serializer):
        label = serializers.CharField()  # type: ignore[assignment]  # an API key named like a Field attribute
        against = serializers.CharField(help_text="The control's label.")
        pairs = serializers.IntegerField(help_text="Pairs of completed runs with the same item and seed.")
        paired_by = serializers.CharField(help_text="seed (or position when the batches share no seed).")
        differs = serializers.ListField(child=serializers.CharField(),
                                        help_text="What this condition changes: buyer or seller configuration "
                                                  "(by fingerprint), seller population.")
        differences = serializers.DictField(child=PairedDifferenceSerializer(),
                                            help_text="Per metric: condition − control over the pairs.")

    status = serializers.CharField()
    paired_by = serializers.CharField()
    conditions = ExperimentConditionResult(many=True)
    comparisons = ExperimentComparison(many=True)


def experiment_or_404(request: Request, experiment_id: Any) -> Experiment:
    experiment = experiment_get(user=request.user, experiment_id=experiment_id)
    if experiment is None:
        raise NotFound("No experiment with this id.")
    return experiment


class ExperimentsApi(APIView):
    """GET lists your experiments; POST creates one and launches a batch per condition."""

    class ExperimentCreateInput(StrictSerializer):
        name = serializers.CharField(max_length=200)
        session = serializers.UUIDField(help_text="The session whose scenarios every condition plays.")
        item_name = NameField(max_length=255, required=False, allow_blank=True, allow_null=True,
                                          default="", help_text="One demanded item; blank for every item.")
        runs = serializers.IntegerField(validators=[_runs], help_text="Runs per condition (and per item).")
        max_rounds = serializers.IntegerField(default=5, validators=[_rounds])
        base_seed = serializers.IntegerField(min_value=0, max_value=SEED_MAX, default=0,
                                             help_text="Run i of every condition gets seed base_seed + i.")
        conditions = ExperimentConditionInputSerializer(  # type: ignore[call-arg]  # ListSerializer's, not in the stubs
            many=True, min_length=2, max_length=MAX_CONDITIONS,
                                         help_text="The first is the control.")

    @extend_schema(tags=TAG, operation_id="experiments_list", parameters=PAGE_PARAMETERS,
                   responses={200: page_of(ExperimentOutputSerializer, "PaginatedExperimentList"), **errors(401)})
    def get(self, request: Request) -> Response:
        return paginated_response(request=request, view=self, serializer=ExperimentOutputSerializer,
                                  queryset=experiment_list(user=request.user))

    @extend_schema(tags=TAG, operation_id="experiments_create", request=ExperimentCreateInput,
                   responses={201: ExperimentOutputSerializer, **errors(400, 401, 413, 429)})
    def post(self, request: Request) -> Response:
        session, fields = _validated(request, self.ExperimentCreateInput)
        experiment = experiment_create(owner=request.user, session=session, **fields)
        return Response(ExperimentOutputSerializer(experiment_or_404(request, experiment.pk)).data,
                        status=status.HTTP_201_CREATED)


class ExperimentApi(APIView):
    @extend_schema(tags=TAG, operation_id="experiments_read",
                   responses={200: ExperimentOutputSerializer, **errors(401, 404)})
    def get(self, request: Request, experiment_id: Any) -> Response:
        return Response(ExperimentOutputSerializer(experiment_or_404(request, experiment_id)).data)


class ExperimentResultsApi(APIView):
    @extend_schema(tags=TAG, operation_id="experiments_results", responses={200: ExperimentResultsSerializer,
                                                                             **errors(401, 404)},
                   description="Each condition's metrics with seeded bootstrap 95% CIs (as on its batch page), "
                               "and each condition's paired differences against the control: runs with the same "
                               "item and seed are pairs, as on the compare page.")
    def get(self, request: Request, experiment_id: Any) -> Response:
        experiment = experiment_or_404(request, experiment_id)
        results = experiment_results_json(experiment_results(experiment=experiment))
        return Response(ExperimentResultsSerializer(results).data)


# --- reflect sequences ---------------------------------------------------------------------------

class SequenceOutputSerializer(serializers.Serializer):
    class SequenceStepOut(serializers.Serializer):
        index = serializers.IntegerField()
        run = serializers.UUIDField(source="run.pk")
        seed = serializers.IntegerField()
        status = serializers.CharField()
        buyer_prompt_version = serializers.CharField(source="buyer_prompt")
        seller_prompt_version = serializers.CharField(source="seller_prompt")
        buyer_fingerprint = serializers.CharField()
        seller_fingerprint = serializers.CharField()
        buyer_utility = serializers.FloatField(allow_null=True)
        seller_utility = serializers.FloatField(allow_null=True, help_text="The seller side: Σ seller utilities.")
        seller_utilities = serializers.DictField(child=serializers.FloatField())
        cumulative_buyer_utility = serializers.FloatField(source="cum_buyer", allow_null=True)
        cumulative_seller_utility = serializers.FloatField(source="cum_seller", allow_null=True)
        notes = serializers.DictField(child=serializers.CharField(),
                                      help_text='Notes written after this run: {"buyer": ..., "@Handle": ...}.')
        coach_fallbacks = serializers.IntegerField()
        coach_errors = serializers.DictField(child=serializers.CharField())

    id = serializers.UUIDField()
    owner = serializers.CharField(source="owner.username", default=None)
    session = serializers.UUIDField(source="session_id")
    item_name = serializers.CharField()
    mode = serializers.ChoiceField(choices=ReflectSequence.Mode.choices)
    length = serializers.IntegerField()
    seed_policy = serializers.ChoiceField(choices=ReflectSequence.SeedPolicy.choices)
    base_seed = serializers.IntegerField()
    max_rounds = serializers.IntegerField()
    agents = serializers.JSONField(help_text="The resolved agents of the first run (no notes yet).")
    status = serializers.ChoiceField(choices=ReflectSequence.Status.choices)
    error = serializers.CharField()
    created_at = serializers.DateTimeField()
    finished_at = serializers.DateTimeField(allow_null=True)
    runs_done = serializers.IntegerField(source="summary.done")
    coach_calls = serializers.IntegerField(source="summary.coach_calls")
    coach_fallbacks = serializers.IntegerField(source="summary.coach_fallbacks")
    steps = SequenceStepOut(many=True, source="summary.steps")

    def to_representation(self, instance: ReflectSequence) -> dict[str, Any]:
        instance.summary = sequence_summary(sequence=instance)  # type: ignore[attr-defined]  # the summary.* sources
        return super().to_representation(instance)


class SequenceListSerializer(serializers.Serializer):
    id = serializers.UUIDField()
    session = serializers.UUIDField(source="session_id")
    item_name = serializers.CharField()
    mode = serializers.CharField()
    length = serializers.IntegerField()
    status = serializers.CharField()
    created_at = serializers.DateTimeField()
    finished_at = serializers.DateTimeField(allow_null=True)


def sequence_or_404(request: Request, sequence_id: Any) -> ReflectSequence:
    sequence = sequence_get(user=request.user, sequence_id=sequence_id)
    if sequence is None:
        raise NotFound("No sequence with this id.")
    return sequence


class SequencesApi(APIView):
    """GET lists your reflect sequences; POST starts one."""

    class SequenceCreateInput(StrictSerializer):
        session = serializers.UUIDField()
        item_name = NameField(max_length=255, help_text="The one demanded item every run negotiates.")
        mode = serializers.ChoiceField(choices=ReflectSequence.Mode.values, default=ReflectSequence.Mode.BOTH,
                                       help_text="Who gets a coach's note after each run: none, buyer, seller "
                                                 "(each seller its own), both.")
        length = serializers.IntegerField(min_value=1, max_value=MAX_LENGTH, help_text="Runs, one after another.")
        agents = AgentsSerializer(required=False, help_text="The analyst profile is the coach (chat or base model).")
        temperature = serializers.FloatField(min_value=0, max_value=2, default=0.7)
        max_rounds = serializers.IntegerField(default=5, validators=[_rounds])
        base_seed = serializers.IntegerField(min_value=0, max_value=SEED_MAX - MAX_LENGTH, default=0)
        seed_policy = serializers.ChoiceField(choices=ReflectSequence.SeedPolicy.values,
                                              default=ReflectSequence.SeedPolicy.INCREMENT,
                                              help_text="increment: run i has seed base_seed + i (pairs with "
                                                        "another mode's sequence); fixed: every run base_seed.")

    @extend_schema(tags=SEQ_TAG, operation_id="sequences_list", parameters=PAGE_PARAMETERS,
                   responses={200: page_of(SequenceListSerializer, "PaginatedSequenceList"), **errors(401)})
    def get(self, request: Request) -> Response:
        return paginated_response(request=request, view=self, serializer=SequenceListSerializer,
                                  queryset=sequence_list(user=request.user))

    @extend_schema(tags=SEQ_TAG, operation_id="sequences_create", request=SequenceCreateInput,
                   responses={201: SequenceOutputSerializer, **errors(400, 401, 413, 429)})
    def post(self, request: Request) -> Response:
        session, fields = _validated(request, self.SequenceCreateInput)
        sequence = sequence_create(owner=request.user, session=session, **fields)
        return Response(SequenceOutputSerializer(sequence_or_404(request, sequence.pk)).data,
                        status=status.HTTP_201_CREATED)


class SequenceApi(APIView):
    @extend_schema(tags=SEQ_TAG, operation_id="sequences_read",
                   responses={200: SequenceOutputSerializer, **errors(401, 404)})
    def get(self, request: Request, sequence_id: Any) -> Response:
        return Response(SequenceOutputSerializer(sequence_or_404(request, sequence_id)).data)

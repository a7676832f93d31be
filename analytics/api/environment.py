"""The environment API for external buyer agents (OpenEnv style), mounted at /env/ (mams/urls.py).

`GET /env/health`, `GET /env/tasks`, `POST /env/reset`, `POST /env/step`, `GET /env/state` and
`GET /env/score`. Until an episode is done every answer about it is the buyer's view
(analytics/environment.py builds it from the engine's buyer view only): no seller cost, floor, style
or weights, nor anything computed from them; once it is done, the score carries a `debrief` that
states them (the one outside-buyer policy: negotiation/services/outside.py).

Authentication is the API's token, and an episode is its owner's (another user's is a 404), except
`/env/health`: orchestrators probe it before they hold a token, as with OpenEnv servers, and it
says only whether episodes can be played now (the database and the broker answer, and a worker
consumes the queues), nothing about any user, episode or configuration.
"""

from __future__ import annotations

from typing import Any

from django.conf import settings
from django.urls import path
from drf_spectacular.types import OpenApiTypes
from drf_spectacular.utils import OpenApiParameter, OpenApiResponse, extend_schema
from rest_framework import serializers, status
from rest_framework.exceptions import NotFound
from rest_framework.permissions import AllowAny
from rest_framework.request import Request
from rest_framework.response import Response
from rest_framework.views import APIView

from analytics.environment import (
    ACTIONS,
    StepResult,
    env_health,
    env_reset,
    env_state,
    env_step,
    env_tasks,
    episode_get,
    episode_score,
)
from negotiation.api.common import PAGE_PARAMETERS, Pagination, errors, page_of
from negotiation.api.live import RoomInput
from negotiation.api.runs import (
    DEBRIEF_HELP,
    DECISION_HELP,
    ROUND_HELP,
    ROUNDS_HELP,
    RUNS_ROUNDS_HELP,
    TURN_HELP,
    DebriefSerializer,
)
from negotiation.api.strict import StrictSerializer
from negotiation.models import MONEY, NegotiationRun

TAG = ["environment (external agents)"]
MODEL_NAME = r"^[A-Za-z0-9._:/@+\-]{1,200}$"


# --- shapes ----------------------------------------------------------------------------------------

class ItemSerializer(serializers.Serializer):
    name = serializers.CharField()
    quantity = serializers.IntegerField()


class BudgetSerializer(serializers.Serializer):
    min_price = serializers.DecimalField(**MONEY, help_text="Your lowest acceptable price per unit.")
    max_price = serializers.DecimalField(**MONEY, help_text="Your highest acceptable price per unit (private).")


class EnvTaskSerializer(serializers.Serializer):
    class TaskItem(serializers.Serializer):
        name = serializers.CharField(source="item_name")
        quantity = serializers.IntegerField()

    id = serializers.CharField(help_text="Pass it to POST /env/reset, e.g. core-v1/tight-zopa/Mechanical Keyboard.")
    source = serializers.CharField(help_text="suite (a benchmark scenario) or session (one of yours).")  # type: ignore[assignment]  # an API key named like a Field attribute
    suite = serializers.CharField(help_text="The benchmark suite and version, e.g. core-v1 (blank for a session).")
    scenario = serializers.CharField(help_text="The scenario's slug in its suite (blank for a session).")
    title = serializers.CharField(help_text="The scenario's title, or the session's name.")
    session = serializers.CharField(source="session_id", help_text="Your session's id (blank for a suite task).")
    content_hash = serializers.CharField(help_text="The suite's content hash: results compare only within one.")
    item = TaskItem(source="*")
    budget = BudgetSerializer(source="*", help_text="Your constraints in this task.")
    sellers = serializers.ListField(child=serializers.CharField(), help_text="The handles of the sellers you meet.")


ENV_TURN_HELP = ("Your turn number: the next one, or the last one played once done. A message in turn k opens "
                 "round k; an accept or walk-away in turn k is your decision after round k - 1 (the score's "
                 "rounds is then k - 1).")


class SellerStateSerializer(serializers.Serializer):
    handle = serializers.CharField()
    active = serializers.BooleanField(help_text="False once the seller has declined: it is out of the room.")
    standing_offer = serializers.DecimalField(**MONEY, allow_null=True, help_text="Its latest offer to you.")
    last_action = serializers.CharField(allow_null=True, help_text="offer, accept (your counter) or decline.")


class EnvMessageSerializer(serializers.Serializer):
    round = serializers.IntegerField(help_text=ROUND_HELP)
    turn = serializers.IntegerField(help_text=TURN_HELP)
    decision = serializers.BooleanField(help_text=DECISION_HELP)
    sender = serializers.CharField(help_text="'buyer' (you) or a seller's handle.")
    to = serializers.ListField(child=serializers.CharField())
    action = serializers.CharField()
    price = serializers.DecimalField(**MONEY, allow_null=True)
    text = serializers.CharField(allow_blank=True)


class EpisodeOutcomeSerializer(serializers.Serializer):
    deal = serializers.BooleanField()
    reason = serializers.CharField(help_text="accepted, walked_away, all_declined or max_rounds")
    seller = serializers.CharField(allow_null=True)
    price = serializers.DecimalField(**MONEY, allow_null=True, help_text="Per unit.")
    quantity = serializers.IntegerField()
    rounds = serializers.IntegerField(help_text=ROUNDS_HELP)


class ObservationSerializer(serializers.Serializer):
    episode_id = serializers.UUIDField()
    task = serializers.CharField()
    status = serializers.ChoiceField(choices=NegotiationRun.Status.choices)
    done = serializers.BooleanField()
    rounds = serializers.IntegerField(help_text=RUNS_ROUNDS_HELP)
    turn = serializers.IntegerField(help_text=ENV_TURN_HELP)
    max_rounds = serializers.IntegerField()
    closing_turn = serializers.BooleanField(help_text="The last sellers' replies are in: accept or walk away.")
    rules = serializers.CharField(help_text="known: max_rounds is the deadline, with a closing turn; hidden (core-v2): "
                                            "the episode ends without warning after the sellers' replies of some "
                                            "round from earliest_end to max_rounds, with no closing turn, and a "
                                            "counter-offer is binding (a seller's accept is the deal).")
    earliest_end = serializers.IntegerField(allow_null=True, help_text="Under hidden rules, the first round that "
                                                                       "may be the last; null under known rules.")
    item = ItemSerializer()
    budget = BudgetSerializer()
    sellers = SellerStateSerializer(many=True)
    standing_offers = serializers.DictField(child=serializers.DecimalField(**MONEY),
                                            help_text="What you may accept now, by handle.")
    pending = serializers.ListField(child=serializers.CharField(), help_text="Sellers that still owe a reply.")
    legal_actions = serializers.ListField(child=serializers.CharField(), help_text=(
        "The action types you may take now (message, accept, walk_away; wait while replies are pending)."))
    messages = EnvMessageSerializer(many=True, help_text="Your messages and every reply to you, in order.")
    outcome = EpisodeOutcomeSerializer(allow_null=True)


class ScoreSerializer(serializers.Serializer):
    episode_id = serializers.UUIDField()
    task = serializers.CharField()
    status = serializers.ChoiceField(choices=NegotiationRun.Status.choices)
    done = serializers.BooleanField()
    seed = serializers.IntegerField()
    max_rounds = serializers.IntegerField()
    deal = serializers.BooleanField(allow_null=True)
    reason = serializers.CharField(allow_null=True)
    seller = serializers.CharField(allow_null=True)
    price = serializers.DecimalField(**MONEY, allow_null=True)
    quantity = serializers.IntegerField(allow_null=True)
    rounds = serializers.IntegerField(allow_null=True, help_text=ROUNDS_HELP)
    messages = serializers.IntegerField(allow_null=True)
    buyer_share = serializers.FloatField(allow_null=True, help_text=(
        "Buyer surplus share on a deal: (max_price - price) / (max_price - the chosen seller's least price)."))
    reward = serializers.FloatField(allow_null=True, help_text="buyer_share on a deal, 0 otherwise; null while "
                                                               "the episode runs.")
    mutual_loss = serializers.BooleanField(allow_null=True, help_text="No deal although one was possible.")
    first_ask = serializers.DecimalField(**MONEY, allow_null=True, help_text="The chosen seller's first offer.")
    savings = serializers.DecimalField(**MONEY, allow_null=True, help_text="first_ask - price, per unit.")
    savings_share = serializers.FloatField(allow_null=True)
    buyer_fingerprint = serializers.CharField()
    seller_fingerprint = serializers.CharField(help_text="Compare results only with the same seller fingerprint.")
    code_version = serializers.CharField()
    error = serializers.CharField(allow_null=True)
    debrief = DebriefSerializer(allow_null=True, help_text=DEBRIEF_HELP)


class RecordedSerializer(serializers.Serializer):
    round = serializers.IntegerField(help_text=ROUND_HELP)
    turn = serializers.IntegerField(help_text=TURN_HELP)
    decision = serializers.BooleanField(help_text=DECISION_HELP)
    type = serializers.CharField(help_text="message, accept or walk_away.")
    to = serializers.ListField(child=serializers.CharField(), help_text="The sellers your message reached.")
    price = serializers.DecimalField(**MONEY, allow_null=True)
    text = serializers.CharField(required=False)
    seller = serializers.CharField(required=False, allow_null=True)


class InfoSerializer(serializers.Serializer):
    status = serializers.ChoiceField(choices=NegotiationRun.Status.choices)
    rounds = serializers.IntegerField(help_text=RUNS_ROUNDS_HELP)
    turn = serializers.IntegerField(help_text=ENV_TURN_HELP)
    pending = serializers.ListField(child=serializers.CharField())
    recorded = RecordedSerializer(allow_null=True, help_text="What this step recorded (null for wait/state).")
    error = serializers.CharField(allow_null=True, help_text="Why the episode failed, if it did.")
    score = ScoreSerializer(required=False, help_text="Once the episode is done.")


class StepOutputSerializer(serializers.Serializer):
    episode_id = serializers.UUIDField()
    observation = ObservationSerializer()
    reward = serializers.FloatField(help_text="0 until the episode ends; then buyer_share on a deal, else 0.")
    done = serializers.BooleanField()
    info = InfoSerializer()


def _step_body(result: StepResult) -> dict[str, Any]:
    return StepOutputSerializer({"episode_id": result.run.pk, "observation": result.observation,
                                 "reward": result.reward, "done": result.done, "info": result.info}).data


class EpisodeQuery(serializers.Serializer):
    episode_id = serializers.UUIDField()


EPISODE_PARAMETER = OpenApiParameter("episode_id", OpenApiTypes.UUID, required=True,
                                     description="The id POST /env/reset returned.")


def _episode(request: Request, episode_id: Any) -> NegotiationRun:
    run = episode_get(user=request.user, episode_id=episode_id)
    if run is None:
        raise NotFound("No episode with this id (or it is not yours).")
    return run


def _episode_from_query(request: Request) -> NegotiationRun:
    query = EpisodeQuery(data=request.query_params)
    query.is_valid(raise_exception=True)
    return _episode(request, query.validated_data["episode_id"])


# --- operations ------------------------------------------------------------------------------------

class EnvHealthApi(APIView):
    """Whether episodes can be played now. Public: it reveals nothing about users or episodes."""

    authentication_classes: list[Any] = []
    permission_classes = [AllowAny]

    class EnvHealthOutput(serializers.Serializer):
        status = serializers.ChoiceField(choices=["ok", "unavailable"])
        env = serializers.CharField()
        api_version = serializers.CharField()
        checks = serializers.DictField(child=serializers.ChoiceField(choices=["ok", "unavailable"]))
        max_rounds_limit = serializers.IntegerField()

    @extend_schema(tags=TAG, operation_id="env_health", auth=[], responses={
        200: EnvHealthOutput, 503: OpenApiResponse(EnvHealthOutput, description="The database or the broker is down, "
                                                                   "or no Celery worker is running.")})
    def get(self, request: Request) -> Response:
        body = env_health()
        return Response(self.EnvHealthOutput(body).data,
                        status=status.HTTP_200_OK if body["status"] == "ok" else status.HTTP_503_SERVICE_UNAVAILABLE)


class EnvTasksApi(APIView):
    """The tasks you can reset into: every benchmark suite scenario's items, then your own sessions' items."""

    class TasksQuery(serializers.Serializer):
        suite = serializers.CharField(max_length=100, required=False,
                                      help_text="Only this suite: core-v1, or core for its latest version.")
        source = serializers.ChoiceField(choices=["suite", "session"], required=False)  # type: ignore[assignment]  # an API key named like a Field attribute

    @extend_schema(tags=TAG, operation_id="env_tasks", parameters=[
        OpenApiParameter("suite", str, description="Only this suite: core-v1, or core for its latest version."),
        OpenApiParameter("source", str, enum=["suite", "session"], description="Only suite or only session tasks."),
        *PAGE_PARAMETERS], responses={200: page_of(EnvTaskSerializer, "EnvTaskPage"), **errors(400, 401)})
    def get(self, request: Request) -> Response:
        query = self.TasksQuery(data=request.query_params)
        query.is_valid(raise_exception=True)
        tasks = env_tasks(user=request.user, suite=query.validated_data.get("suite"),
                          source=query.validated_data.get("source"))
        paginator = Pagination()
        page = paginator.paginate_queryset(tasks, request, view=self)
        return paginator.get_paginated_response(EnvTaskSerializer(page, many=True).data)


class EnvResetApi(APIView):
    """Start an episode of a task: you play the buyer, MAMS's sellers answer. Returns the first observation."""

    class ResetInput(RoomInput):
        task = serializers.CharField(max_length=600, help_text="A task id from GET /env/tasks.")
        agent_name = serializers.RegexField(MODEL_NAME, required=False, default="", error_messages={
            "invalid": "A name is letters, digits and ._:/@+- only."}, help_text=(
            "Your buyer's name and version, e.g. my-buyer-v3: recorded as the buyer's model, so results group "
            "by it (buyer_fingerprint)."))

    @extend_schema(tags=TAG, operation_id="env_reset", request=ResetInput,
                   responses={201: StepOutputSerializer, **errors(400, 401, 413, 429)},
                   description="429 when you already hold MAMS_MAX_OPEN_ROOMS_PER_USER unfinished episodes and "
                               "live rooms; an episode with no action for MAMS_ROOM_IDLE_SECONDS is closed as "
                               "cancelled.")
    def post(self, request: Request) -> Response:
        data = self.ResetInput(data=request.data)
        data.is_valid(raise_exception=True)
        v = data.validated_data
        agents = v.get("agents") or {}
        run = env_reset(owner=request.user, task=v["task"], seed=v["seed"], max_rounds=v["max_rounds"],
                        seller_agent=agents.get("seller"), analyst_agent=agents.get("analyst"),
                        agent_name=v["agent_name"])
        return Response(_step_body(env_state(run=run)), status=status.HTTP_201_CREATED)


class EnvStepApi(APIView):
    """Act as the buyer: message (to all or @handles, with an optional counter price), accept, walk away, or wait.

    Answers once the addressed sellers have replied: 200, or 202 if some have not within the wait (step
    with {"type": "wait"} to wait more). A refused action records nothing.
    """

    class StepInput(StrictSerializer):
        class Action(StrictSerializer):
            type = serializers.ChoiceField(choices=ACTIONS, help_text=(
                "message: speak (to, text, price); accept: a seller's standing offer (seller, price); walk_away; "
                "wait: record nothing, wait for pending replies."))
            to = serializers.ListField(child=serializers.CharField(max_length=52), min_length=1, max_length=11,
                                       required=False, help_text='["all"] (default) or a list of @handles.')
            text = serializers.CharField(max_length=4000, required=False, allow_blank=True,
                                         help_text="What you say (a counter alone gets a one-line text).")
            price = serializers.DecimalField(**MONEY, min_value=0, required=False, allow_null=True, help_text=(
                "message: your counter-offer per unit (at most your max_price); accept: must equal the offer."))
            seller = serializers.CharField(max_length=64, required=False, allow_blank=True,
                                           help_text="accept: the seller's @handle.")

        episode_id = serializers.UUIDField()
        action = Action()
        wait_seconds = serializers.FloatField(min_value=0, required=False, allow_null=True, help_text=(
            "How long to wait for the sellers (default and cap: MAMS_LIVE_WAIT_SECONDS, 120 s)."))

    @extend_schema(tags=TAG, operation_id="env_step", request=StepInput, responses={
        200: StepOutputSerializer,
        202: OpenApiResponse(StepOutputSerializer, description="Recorded; some sellers have not answered yet."),
        **errors(400, 401, 404, 409, 413)},
        description="400 for a bad action (an unknown seller, accepting a price nobody offered, a counter above "
                    "your max_price); 409 after the episode is done, or while the sellers still owe replies.")
    def post(self, request: Request) -> Response:
        data = self.StepInput(data=request.data)
        data.is_valid(raise_exception=True)
        v = data.validated_data
        run = _episode(request, v["episode_id"])
        cap = float(settings.MAMS_LIVE_WAIT_SECONDS)
        wait = cap if v.get("wait_seconds") is None else min(v["wait_seconds"], cap)
        result = env_step(run=run, action=v["action"], wait_seconds=wait)
        return Response(_step_body(result), status=status.HTTP_202_ACCEPTED if result.pending else status.HTTP_200_OK)


class EnvStateApi(APIView):
    """The episode now, as the buyer may know it: no seller's cost, floor, style or weights until it is done."""

    @extend_schema(tags=TAG, operation_id="env_state", parameters=[EPISODE_PARAMETER],
                   responses={200: StepOutputSerializer, **errors(400, 401, 404)})
    def get(self, request: Request) -> Response:
        return Response(_step_body(env_state(run=_episode_from_query(request))))


class EnvScoreApi(APIView):
    """The episode's result in the analytics definitions: deal, price, rounds, buyer surplus share (the reward)."""

    @extend_schema(tags=TAG, operation_id="env_score", parameters=[EPISODE_PARAMETER],
                   responses={200: ScoreSerializer, **errors(400, 401, 404)})
    def get(self, request: Request) -> Response:
        return Response(ScoreSerializer(episode_score(_episode_from_query(request))).data)


# Mounted under /env/ by mams/urls.py (OpenEnv's paths: no /api/ prefix, no trailing slash).
urlpatterns = [
    path("health", EnvHealthApi.as_view(), name="env-health"),
    path("tasks", EnvTasksApi.as_view(), name="env-tasks"),
    path("reset", EnvResetApi.as_view(), name="env-reset"),
    path("step", EnvStepApi.as_view(), name="env-step"),
    path("state", EnvStateApi.as_view(), name="env-state"),
    path("score", EnvScoreApi.as_view(), name="env-score"),
]

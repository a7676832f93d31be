"""A person as the buyer (spec 10.2 and 12.4): start a negotiation, message the sellers, decide.

Until the negotiation ends every response is the buyer's view: seller handles and ids, what the
sellers said to the buyer, their offers, and the buyer's own constraints; never a seller's cost,
floor, style or weights, nor anything computed from them. The answer that ends it (a decision, or a
message whose round ended it) carries the `debrief` that states them (negotiation/services/outside.py).
"""

from __future__ import annotations

from decimal import Decimal
from typing import Any

from django.conf import settings
from drf_spectacular.utils import OpenApiResponse, extend_schema, extend_schema_field
from rest_framework import serializers, status
from rest_framework.exceptions import ValidationError
from rest_framework.request import Request
from rest_framework.response import Response
from rest_framework.views import APIView

from negotiation.api.batches import AgentSpecSerializer
from negotiation.api.common import errors
from negotiation.api.runs import (
    AUDIO_HELP,
    CURRENT_TURN_HELP,
    DEBRIEF_HELP,
    DECISION_HELP,
    ROUND_HELP,
    RUNS_ROUNDS_HELP,
    TURN_HELP,
    DebriefSerializer,
    OutcomeSerializer,
    RunDetailSerializer,
    message_audio_url,
    run_or_404,
)
from negotiation.api.strict import NameField, StrictSerializer
from negotiation.engine import protocol
from negotiation.models import MONEY, Message, NegotiationRun
from negotiation.selectors import run_analytics, run_buyer_view, run_rounds, run_turn, session_get
from negotiation.services import outside
from negotiation.services.live import live_decide, live_message, live_replies_wait, live_start

TAG = ["live negotiation"]


class LiveRunSerializer(RunDetailSerializer):
    available_sellers = serializers.SerializerMethodField()
    stream = serializers.SerializerMethodField()

    def get_available_sellers(self, run: NegotiationRun) -> list[str]:
        return list(run_buyer_view(run=run).handles)

    def get_stream(self, run: NegotiationRun) -> str:
        return f"/api/negotiations/{run.pk}/stream"


class SellerReplySerializer(serializers.Serializer):
    message_id = serializers.UUIDField(source="id")
    seller_id = serializers.UUIDField(allow_null=True)
    handle = serializers.CharField(source="sender")
    round = serializers.IntegerField(source="round_no")
    action = serializers.CharField(help_text="offer, accept (your counter) or decline.")
    price = serializers.DecimalField(**MONEY, allow_null=True)
    response = serializers.CharField(source="text")
    audio_url = serializers.SerializerMethodField()
    created_at = serializers.DateTimeField()

    @extend_schema_field(serializers.CharField(allow_null=True, help_text=AUDIO_HELP))
    def get_audio_url(self, msg: Message) -> str | None:
        return message_audio_url(msg)


class RoomInput(StrictSerializer):
    """What opening a room for an outside buyer takes (here and POST /env/reset): sellers, rounds, seed."""

    class LiveAgents(StrictSerializer):
        seller = AgentSpecSerializer(required=False)
        analyst = AgentSpecSerializer(required=False)

    agents = LiveAgents(required=False, help_text="How the sellers are played (default: the default profile).")
    max_rounds = serializers.IntegerField(default=5)
    seed = serializers.IntegerField(min_value=0, max_value=2_147_483_647, default=0)

    def validate_max_rounds(self, value: int) -> int:
        if not 1 <= value <= settings.MAMS_MAX_ROUNDS_LIMIT:
            raise serializers.ValidationError(f"Must be a whole number from 1 to {settings.MAMS_MAX_ROUNDS_LIMIT}.")
        return value


class LiveStartApi(APIView):
    """Open a negotiation room for one item with you as the buyer."""

    class LiveStartInput(RoomInput):
        session = serializers.UUIDField(required=False)
        session_id = serializers.UUIDField(required=False, help_text="Alias of `session` (spec 10.2).")
        item_name = NameField(max_length=255)
        mode = serializers.ChoiceField(choices=["human_buyer"], default="human_buyer")
        voice = serializers.BooleanField(default=True, help_text=(
            "Speak each seller reply (on by default in a live room); each seller response then carries an "
            "audio_url once its audio is ready, and the stream sends an `audio` event."))

        def validate(self, attrs: dict[str, Any]) -> dict[str, Any]:
            if not attrs.get("session") and not attrs.get("session_id"):
                raise serializers.ValidationError({"session": ["This field is required."]})
            return attrs

    @extend_schema(tags=TAG, operation_id="negotiations_start", request=LiveStartInput,
                   responses={201: LiveRunSerializer, **errors(400, 401, 413, 429)},
                   description="429 when you already hold MAMS_MAX_OPEN_ROOMS_PER_USER open rooms (live "
                               "negotiations and /env episodes together); a room with no buyer action for "
                               "MAMS_ROOM_IDLE_SECONDS is closed as cancelled.")
    def post(self, request: Request) -> Response:
        data = self.LiveStartInput(data=request.data)
        data.is_valid(raise_exception=True)
        v = data.validated_data
        session = session_get(user=request.user, session_id=v.get("session") or v.get("session_id"))
        if session is None:
            raise ValidationError({"session": ["No session with this id (or it is not yours)."]})
        agents = v.get("agents") or {}
        run = live_start(owner=request.user, session=session, item_name=v["item_name"],
                         seller_agent=agents.get("seller"), analyst_agent=agents.get("analyst"),
                         max_rounds=v["max_rounds"], seed=v["seed"], voice=v["voice"])
        return Response(LiveRunSerializer(run_or_404(request, run.pk)).data, status=status.HTTP_201_CREATED)


class LiveMessageOutput(serializers.Serializer):
    message_id = serializers.UUIDField()
    round = serializers.IntegerField(help_text=ROUND_HELP)
    turn = serializers.IntegerField(help_text=TURN_HELP)
    decision = serializers.BooleanField(help_text=DECISION_HELP)
    recipients = serializers.ListField(child=serializers.CharField())
    seller_responses = SellerReplySerializer(many=True)
    pending = serializers.ListField(child=serializers.CharField(),
                                    help_text="Addressed sellers that have not answered yet.")
    complete = serializers.BooleanField(help_text="Every addressed seller has answered.")
    status = serializers.CharField()
    rounds = serializers.IntegerField(help_text=RUNS_ROUNDS_HELP)
    current_turn = serializers.IntegerField(help_text=CURRENT_TURN_HELP)
    standing_offers = serializers.DictField(child=serializers.DecimalField(**MONEY))
    outcome = OutcomeSerializer(allow_null=True)
    debrief = DebriefSerializer(allow_null=True, help_text=DEBRIEF_HELP)


def _message_result(run: NegotiationRun, msg: Message, replies: list[Message]) -> dict[str, Any]:
    run.refresh_from_db()
    answered = {m.sender for m in replies}
    outcome = getattr(run, "outcome", None) if run.status in NegotiationRun.TERMINAL else None
    round_no, decision = protocol.message_round(turn=msg.round_no, from_buyer=True, action=msg.action,
                                                max_rounds=run.max_rounds, rules=run.rules)
    return LiveMessageOutput({
        "message_id": msg.pk, "round": round_no, "turn": msg.round_no, "decision": decision,
        "recipients": msg.recipients,
        "seller_responses": replies, "pending": [h for h in msg.recipients if h not in answered],
        "complete": answered >= set(msg.recipients), "status": run.status,
        "rounds": run_rounds(run), "current_turn": run_turn(run),
        "standing_offers": run_buyer_view(run=run).standing_offers, "outcome": outcome,
        "debrief": outside.debrief(run)}).data


class LiveMessageApi(APIView):
    """Speak to all sellers or to @handles, optionally with a counter-offer; the sellers answer."""

    class LiveMessageInput(StrictSerializer):
        sender = serializers.ChoiceField(choices=["buyer"], default="buyer", help_text="Always the buyer.")
        text = serializers.CharField(max_length=4000)
        recipients = serializers.ListField(child=serializers.CharField(max_length=52), min_length=1, max_length=11,
                                           default=["all"], help_text='["all"] or a list of @handles.')
        price = serializers.DecimalField(**MONEY, min_value=Decimal("0"), required=False, allow_null=True,
                                         help_text="A counter-offer per unit (at most your maximum price).")
        wait = serializers.BooleanField(default=True, help_text=(
            "true: answer once every addressed seller has replied (at most MAMS_LIVE_WAIT_SECONDS, 120 s by "
            "default; 202 with the replies so far after that). false: answer 202 at once; the replies arrive on "
            "the stream."))

    @extend_schema(tags=TAG, operation_id="negotiations_message", request=LiveMessageInput, responses={
        200: LiveMessageOutput,
        202: OpenApiResponse(LiveMessageOutput, description="Recorded; some replies are still pending."),
        **errors(400, 401, 404, 409, 413)})
    def post(self, request: Request, run_id: Any) -> Response:
        run = run_or_404(request, run_id)
        data = self.LiveMessageInput(data=request.data)
        data.is_valid(raise_exception=True)
        v = data.validated_data
        msg, recipients = live_message(run=run, text=v["text"], recipients=v["recipients"], price=v.get("price"))
        replies = live_replies_wait(run_id=run.pk, round_no=msg.round_no, recipients=recipients,
                                    timeout=settings.MAMS_LIVE_WAIT_SECONDS if v["wait"] else 0)
        body = _message_result(run, msg, replies)
        return Response(body, status=status.HTTP_200_OK if body["complete"] else status.HTTP_202_ACCEPTED)


class LiveDecideOutput(serializers.Serializer):
    class DealSummary(serializers.Serializer):
        seller = serializers.CharField()
        seller_id = serializers.UUIDField(allow_null=True)
        final_price = serializers.DecimalField(**MONEY)
        quantity = serializers.IntegerField()
        total = serializers.DecimalField(max_digits=14, decimal_places=2)
        reasoning = serializers.CharField()

    class DealAnalysis(serializers.Serializer):
        quality_score = serializers.FloatField(allow_null=True)
        strategy_effectiveness = serializers.CharField(allow_null=True)
        gemini_insights = serializers.CharField(allow_null=True)
        initial_ask = serializers.DecimalField(**MONEY, allow_null=True)
        savings_vs_initial = serializers.DecimalField(**MONEY, allow_null=True)
        within_budget = serializers.BooleanField(allow_null=True)
        summary = serializers.CharField()
        note = serializers.CharField(allow_null=True)

    outcome_id = serializers.UUIDField()
    negotiation_id = serializers.UUIDField()
    status = serializers.CharField()
    decision = serializers.CharField()
    reason = serializers.CharField()
    deal_summary = DealSummary(allow_null=True)
    analysis = DealAnalysis()
    debrief = DebriefSerializer(help_text="Every seller's floor, the ZOPA, your surplus share and whether it was a "
                                          "mutual loss: the negotiation has ended, so nothing is withheld.")


def _decide_result(run: NegotiationRun) -> dict[str, Any]:
    outcome = run.outcome
    stats = run_analytics(run=run)["outcome"]
    deal = outcome.final_price is not None
    if deal:
        summary = f"Deal with {outcome.chosen_handle} at ${outcome.final_price} per unit"
        if stats["savings_vs_initial"] is not None and stats["initial_ask"]:
            pct = 100 * stats["savings_vs_initial"] / stats["initial_ask"]
            summary += f", {pct:.1f}% below its first ask of ${stats['initial_ask']}"
        summary += "."
    else:
        summary = f"No deal ({outcome.reason.replace('_', ' ')})."
    return LiveDecideOutput({
        "outcome_id": outcome.pk, "negotiation_id": run.pk, "status": run.status, "decision": outcome.decision,
        "reason": outcome.reason,
        "deal_summary": {"seller": outcome.chosen_handle, "seller_id": outcome.chosen_seller_id,
                         "final_price": outcome.final_price, "quantity": outcome.quantity,
                         "total": (outcome.final_price or 0) * outcome.quantity,
                         "reasoning": outcome.reasoning_summary} if deal else None,
        "analysis": {"quality_score": None, "strategy_effectiveness": None, "gemini_insights": None,
                     "initial_ask": stats["initial_ask"], "savings_vs_initial": stats["savings_vs_initial"],
                     "within_budget": stats["within_budget"], "summary": summary,
                     "note": "Quality scores and the LLM post-deal analysis appear on the run's analytics once "
                             "the analysis task has scored it."},
        "debrief": outside.debrief(run),
    }).data


class LiveDecideApi(APIView):
    """Accept a seller's standing offer (at exactly the offered price) or walk away; returns the outcome."""

    class LiveDecideInput(StrictSerializer):
        decision = serializers.ChoiceField(choices=["accept", "walk_away"])
        seller = serializers.CharField(max_length=64, required=False, allow_blank=True,
                                       help_text="For accept: the seller's @handle or id.")
        seller_id = serializers.CharField(max_length=64, required=False, allow_blank=True,
                                          help_text="Alias of `seller` (spec 10.2).")
        price = serializers.DecimalField(**MONEY, min_value=Decimal("0"), required=False, allow_null=True,
                                         help_text="Must equal the seller's standing offer; omit to accept it.")
        quantity = serializers.IntegerField(min_value=1, max_value=2_147_483_647, required=False, allow_null=True,
                                            help_text="Optional; must equal the buyer's demanded quantity.")
        text = serializers.CharField(max_length=4000, required=False, allow_blank=True, default="",
                                     help_text="What you say to the sellers (and your reasoning).")

    @extend_schema(tags=TAG, operation_id="negotiations_decide", request=LiveDecideInput,
                   responses={200: LiveDecideOutput, **errors(400, 401, 404, 409, 413)},
                   description="400 for an accept at a price the seller has not offered (nothing is recorded); "
                               "409 when the negotiation has already ended or a round is still waiting for "
                               "replies.")
    def post(self, request: Request, run_id: Any) -> Response:
        run = run_or_404(request, run_id)
        data = self.LiveDecideInput(data=request.data)
        data.is_valid(raise_exception=True)
        v = data.validated_data
        run = live_decide(run=run, decision=v["decision"], seller=v.get("seller") or v.get("seller_id") or None,
                          price=v.get("price"), quantity=v.get("quantity"), text=v["text"])
        return Response(_decide_result(run_or_404(request, run.pk)))

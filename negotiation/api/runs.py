"""Runs: a negotiation's record with its outcome, its transcript (who saw each message), analytics.

For a run with a human or external-agent buyer, what these responses show follows the one outside-buyer
policy (negotiation/services/outside.py): until the run ends, the buyer's view only (the seller handles,
the buyer's own constraints and the messages addressed to the buyer), never `scenario` (the sellers'
costs, floors, styles and weights), the sellers' reasoning or anything computed from them; once it has
ended, the whole run and a `debrief` that states every seller's floor.
"""

from __future__ import annotations

from typing import Any

from django.http import HttpResponse
from drf_spectacular.types import OpenApiTypes
from drf_spectacular.utils import OpenApiParameter, extend_schema, extend_schema_field
from rest_framework import serializers
from rest_framework.exceptions import NotFound, ValidationError
from rest_framework.renderers import JSONRenderer
from rest_framework.request import Request
from rest_framework.response import Response
from rest_framework.views import APIView

from negotiation.api.common import PAGE_PARAMETERS, BinaryRenderer, errors, page_of, paginated_response
from negotiation.engine import protocol
from negotiation.engine.types import BUYER
from negotiation.models import MONEY, Message, MessageAudio, NegotiationRun, Outcome
from negotiation.selectors import run_analytics, run_buyer_view, run_get, run_list, run_rounds, run_transcript, run_turn
from negotiation.services import outside
from negotiation.services.events import audio_url

TAG = ["negotiations"]


class DebriefSerializer(serializers.Serializer):
    """services/outside.py::debrief: the run laid open for its buyer once it has ended."""

    class DebriefSeller(serializers.Serializer):
        handle = serializers.CharField()
        least_price = serializers.DecimalField(**MONEY, help_text="Its floor: the lowest price it could accept.")
        cost_price = serializers.DecimalField(**MONEY)
        selling_price = serializers.DecimalField(**MONEY, help_text="Its asking price.")
        style = serializers.CharField()  # type: ignore[assignment]  # an API key named like a Field attribute
        retention_weight = serializers.DecimalField(max_digits=4, decimal_places=2)
        profit_weight = serializers.DecimalField(max_digits=4, decimal_places=2)
        within_budget = serializers.BooleanField(help_text="Its floor was at or below your maximum price.")

    status = serializers.CharField()
    max_price = serializers.DecimalField(**MONEY)
    sellers = DebriefSeller(many=True)
    lowest_floor = serializers.DecimalField(**MONEY, allow_null=True)
    lowest_floor_seller = serializers.CharField(allow_null=True)
    zopa = serializers.DecimalField(**MONEY, allow_null=True, help_text=(
        "max_price - the lowest floor; below 0 no deal was possible."))
    deal = serializers.BooleanField()
    price = serializers.DecimalField(**MONEY, allow_null=True)
    seller = serializers.CharField(allow_null=True)
    chosen_floor = serializers.DecimalField(**MONEY, allow_null=True, help_text="The chosen seller's floor.")
    buyer_share = serializers.FloatField(allow_null=True, help_text=(
        "(max_price - price) / (max_price - chosen_floor): the share of the surplus you captured."))
    seller_share = serializers.FloatField(allow_null=True)
    best_price = serializers.DecimalField(**MONEY, allow_null=True, help_text="The lowest floor within max_price.")
    left_on_table = serializers.DecimalField(**MONEY, allow_null=True, help_text="price - best_price, per unit.")
    mutual_loss = serializers.BooleanField(help_text="No deal although some floor was within max_price.")
    summary = serializers.CharField()


ROUNDS_HELP = ("Rounds of offers: a round is the buyer's message and the addressed sellers' replies to it. The "
               "buyer's closing accept or walk-away (or, under known rules, its message in the closing turn) is "
               "its decision after the last round, not a round. Counted this way on the pages, the API and /env, "
               "under both rule sets.")
RUNS_ROUNDS_HELP = ("Rounds of offers completed so far (outcome.rounds once the run has ended). " + ROUNDS_HELP)
ROUND_HELP = ("The round of offers this message belongs to; for the buyer's decision (decision true), the round "
              "it follows. So an accept of round 2's offer says round 2, as the outcome's rounds does.")
TURN_HELP = ("The buyer's turn in which the message was sent (stored as its round number): equal to round, except "
             "for the buyer's decision, which comes in turn round + 1.")
DECISION_HELP = ("True for the buyer's closing accept or walk-away (or its message in the closing turn under known "
                 "rules): its decision after `round`, not a round of offers.")

CURRENT_TURN_HELP = ("The buyer's turn number: the next one while the run goes on, the last one played once it has "
                     "ended. Turn k opens round k with a message; an accept or walk-away in turn k is the buyer's "
                     "decision after round k - 1.")

DEBRIEF_HELP = ("Null until the negotiation has ended; then every seller's floor, the ZOPA, your surplus share and "
                "whether it was a mutual loss (negotiation/services/outside.py).")


class OutcomeSerializer(serializers.Serializer):
    outcome_id = serializers.UUIDField(source="id")
    decision = serializers.ChoiceField(choices=Outcome.Decision.choices, help_text="deal or no_deal")
    reason = serializers.CharField(help_text="accepted, walked_away, all_declined or max_rounds")
    seller = serializers.CharField(source="chosen_handle", allow_blank=True)
    seller_id = serializers.UUIDField(source="chosen_seller_id", allow_null=True)
    final_price = serializers.DecimalField(**MONEY, allow_null=True, help_text="Per unit.")
    quantity = serializers.IntegerField()
    total = serializers.SerializerMethodField()
    rounds = serializers.IntegerField(help_text=ROUNDS_HELP)
    reasoning_summary = serializers.CharField()
    galileo_overall_score = serializers.DecimalField(max_digits=5, decimal_places=2, allow_null=True)
    created_at = serializers.DateTimeField()

    @extend_schema_field(serializers.DecimalField(max_digits=14, decimal_places=2, allow_null=True))
    def get_total(self, obj: Outcome) -> str | None:
        return None if obj.final_price is None else str(obj.final_price * obj.quantity)


class BuyerConstraintsSerializer(serializers.Serializer):
    item_name = serializers.CharField()
    quantity = serializers.IntegerField()
    min_price = serializers.DecimalField(**MONEY)
    max_price = serializers.DecimalField(**MONEY)


class RunSerializer(serializers.Serializer):
    id = serializers.UUIDField()
    negotiation_id = serializers.UUIDField(source="id")
    batch = serializers.UUIDField(source="batch_id", allow_null=True)
    session = serializers.UUIDField(source="session_id")
    item_name = serializers.CharField()
    mode = serializers.ChoiceField(choices=NegotiationRun.Mode.choices)
    status = serializers.ChoiceField(choices=NegotiationRun.Status.choices)
    seed = serializers.IntegerField()
    buyer_fingerprint = serializers.CharField(help_text="12-hex hash of the buyer agent's configuration (strategy, "
                                                        "profile, model, temperature, prompt format and version, "
                                                        "fallback): runs compare only with like runs.")
    seller_fingerprint = serializers.CharField(help_text="The same hash of the sellers' agent configuration.")
    code_version = serializers.CharField(help_text="The commit that produced the run.")
    disclosure = serializers.CharField(help_text="The disclosure rule the run was played under (redact or allow); "
                                                 "part of its fingerprint.")
    rules = serializers.CharField(help_text="The turn-taking rules the run was played under (known or hidden); part "
                                            "of its fingerprint.")
    max_rounds = serializers.IntegerField()
    rounds = serializers.SerializerMethodField()
    current_turn = serializers.SerializerMethodField()
    agents = serializers.JSONField()
    buyer = serializers.SerializerMethodField()
    sellers = serializers.SerializerMethodField()
    scenario = serializers.SerializerMethodField()
    error = serializers.CharField()
    created_at = serializers.DateTimeField()
    started_at = serializers.DateTimeField(allow_null=True)
    ended_at = serializers.DateTimeField(allow_null=True)
    outcome = serializers.SerializerMethodField()

    @extend_schema_field(serializers.IntegerField(help_text=CURRENT_TURN_HELP))
    def get_current_turn(self, run: NegotiationRun) -> int:
        return run_turn(run)

    @extend_schema_field(serializers.IntegerField(help_text=RUNS_ROUNDS_HELP))
    def get_rounds(self, run: NegotiationRun) -> int:
        return run_rounds(run)

    @extend_schema_field(BuyerConstraintsSerializer)
    def get_buyer(self, run: NegotiationRun) -> dict[str, Any]:
        return BuyerConstraintsSerializer(run.scenario.get("buyer") or {}).data

    @extend_schema_field(serializers.ListField(child=serializers.CharField(), help_text="Seller handles."))
    def get_sellers(self, run: NegotiationRun) -> list[str]:
        return [s["handle"] for s in run.scenario.get("sellers", [])]

    @extend_schema_field(serializers.JSONField(allow_null=True, help_text=(
        "The private configuration snapshot (buyer demand, sellers' prices, styles and weights); null for "
        "a human- or external-buyer run until it has ended.")))
    def get_scenario(self, run: NegotiationRun) -> dict | None:
        return None if outside.sealed(run) else run.scenario

    @extend_schema_field(OutcomeSerializer(allow_null=True))
    def get_outcome(self, run: NegotiationRun) -> dict | None:
        outcome = getattr(run, "outcome", None)
        return OutcomeSerializer(outcome).data if outcome else None


class RunDetailSerializer(RunSerializer):
    standing_offers = serializers.SerializerMethodField()
    debrief = serializers.SerializerMethodField()

    @extend_schema_field(DebriefSerializer(allow_null=True, help_text=DEBRIEF_HELP))
    def get_debrief(self, run: NegotiationRun) -> dict | None:
        body = outside.debrief(run)
        return None if body is None else DebriefSerializer(body).data

    @extend_schema_field(serializers.DictField(child=serializers.DecimalField(**MONEY), help_text=(
        "Each active seller's latest offer to the buyer, by handle: what the buyer may accept now.")))
    def get_standing_offers(self, run: NegotiationRun) -> dict[str, str]:
        return {h: str(p) for h, p in run_buyer_view(run=run).standing_offers.items()}


AUDIO_HELP = ("Where the seller's reply can be heard (spec 10.2), once its audio is ready; null for the buyer's "
              "messages, a run without voice, or while it is being made.")


def message_audio_url(msg: Message) -> str | None:
    if msg.sender_type != Message.SenderType.SELLER:
        return None

    cached = getattr(msg, "_audio_ready", None)
    ready = cached if cached is not None else MessageAudio.objects.filter(
        message_id=msg.pk, status=MessageAudio.Status.READY).exists()
    return audio_url(run_id=msg.run_id, message_id=msg.pk) if ready else None


class MessageSerializer(serializers.Serializer):
    """A transcript line as the buyer sees it."""

    id = serializers.UUIDField()
    message_id = serializers.UUIDField(source="id")
    round = serializers.SerializerMethodField()
    turn = serializers.IntegerField(source="round_no", help_text=TURN_HELP)
    decision = serializers.SerializerMethodField()
    sender = serializers.CharField(help_text="'buyer' or the seller's handle.")
    sender_type = serializers.CharField()
    seller_id = serializers.UUIDField(allow_null=True)
    recipients = serializers.ListField(child=serializers.CharField())
    visible_to = serializers.SerializerMethodField()
    action = serializers.CharField()
    price = serializers.DecimalField(**MONEY, allow_null=True)
    text = serializers.CharField()
    audio_url = serializers.SerializerMethodField()
    created_at = serializers.DateTimeField()

    def _place(self, msg: Message) -> tuple[int, bool]:
        run = self.context.get("run") or msg.run
        return protocol.message_round(turn=msg.round_no, from_buyer=msg.sender == BUYER, action=msg.action,
                                      max_rounds=run.max_rounds, rules=run.rules)

    @extend_schema_field(serializers.IntegerField(help_text=ROUND_HELP))
    def get_round(self, msg: Message) -> int:
        return self._place(msg)[0]

    @extend_schema_field(serializers.BooleanField(help_text=DECISION_HELP))
    def get_decision(self, msg: Message) -> bool:
        return self._place(msg)[1]

    @extend_schema_field(serializers.CharField(allow_null=True, help_text=AUDIO_HELP))
    def get_audio_url(self, msg: Message) -> str | None:
        return message_audio_url(msg)

    @extend_schema_field(serializers.ListField(child=serializers.CharField(), help_text=(
        "Everyone who could see this message: the buyer and the addressed sellers, or the seller and the "
        "buyer (negotiation.engine.visibility.audience).")))
    def get_visible_to(self, msg: Message) -> list[str]:
        return list(self.context.get("audience", {}).get(msg.pk, ()))


class MessageFullSerializer(MessageSerializer):
    """A transcript line with what only the orchestrator holds (agent runs only)."""

    reasoning = serializers.CharField()
    llm_model = serializers.CharField()
    llm_calls = serializers.IntegerField()
    prompt_tokens = serializers.IntegerField()
    completion_tokens = serializers.IntegerField()
    latency_ms = serializers.IntegerField()
    repaired = serializers.BooleanField()
    fallback = serializers.BooleanField()
    quality = serializers.JSONField()


def message_data(run: NegotiationRun, msg: Message, audience: tuple[str, ...]) -> dict[str, Any]:
    cls = MessageSerializer if outside.sealed(run) else MessageFullSerializer
    return cls(msg, context={"audience": {msg.pk: audience}, "run": run}).data


def run_or_404(request: Request, run_id: Any, *, shared: bool = False) -> NegotiationRun:
    """A run of the user's, or 404; `shared` (reads only) admits a run of a shared benchmark batch too."""
    run = run_get(user=request.user, run_id=run_id, shared=shared)
    if run is None:
        raise NotFound("No negotiation with this id.")
    return run


class RunsApi(APIView):
    """Your negotiation runs, newest first."""

    @extend_schema(tags=TAG, operation_id="negotiations_list", parameters=[
        *PAGE_PARAMETERS,
        OpenApiParameter("batch", OpenApiTypes.UUID, description="Only runs of this batch."),
        OpenApiParameter("status", str, enum=NegotiationRun.Status.values),
        OpenApiParameter("mode", str, enum=NegotiationRun.Mode.values),
    ], responses={200: page_of(RunSerializer, "PaginatedRunList"), **errors(400, 401)})
    def get(self, request: Request) -> Response:
        params = request.query_params
        bad: dict[str, list[str]] = {}
        if params.get("status") and params["status"] not in NegotiationRun.Status.values:
            bad["status"] = [f"Must be one of {', '.join(NegotiationRun.Status.values)}."]
        if params.get("mode") and params["mode"] not in NegotiationRun.Mode.values:
            bad["mode"] = [f"Must be one of {', '.join(NegotiationRun.Mode.values)}."]
        batch: Any = params.get("batch") or None
        if batch:
            try:
                batch = serializers.UUIDField().to_internal_value(batch)
            except serializers.ValidationError:
                bad["batch"] = ["Must be a valid UUID."]
        if bad:
            raise ValidationError(bad)
        qs = run_list(user=request.user, batch_id=batch, status=params.get("status") or None,
                      mode=params.get("mode") or None)
        return paginated_response(request=request, view=self, queryset=qs, serializer=RunSerializer)


class RunApi(APIView):
    """One negotiation with its outcome and the offers standing now."""

    @extend_schema(tags=TAG, operation_id="negotiations_read", responses={200: RunDetailSerializer,
                                                                           **errors(401, 404)})
    def get(self, request: Request, run_id: Any) -> Response:
        return Response(RunDetailSerializer(run_or_404(request, run_id, shared=True)).data)


class RunMessagesApi(APIView):
    """The transcript in order; each message says who could see it."""

    class TranscriptOutput(serializers.Serializer):
        negotiation_id = serializers.UUIDField()
        mode = serializers.CharField()
        messages = MessageFullSerializer(many=True, help_text="A human- or external-buyer run shows the buyer's "
                                                              "view only until it has ended: no reasoning, model, "
                                                              "token, repair or quality fields.")

    @extend_schema(tags=TAG, operation_id="negotiations_messages",
                   responses={200: TranscriptOutput, **errors(401, 404)})
    def get(self, request: Request, run_id: Any) -> Response:
        run = run_or_404(request, run_id, shared=True)
        lines = [message_data(run, msg, audience) for msg, audience in run_transcript(run=run)]
        return Response({"negotiation_id": str(run.pk), "mode": run.mode, "messages": lines})


class RunMessageAudioApi(APIView):
    """A seller reply spoken (WAV from espeak-ng, or MP3 from ElevenLabs): the bytes behind `audio_url`."""

    renderer_classes = [JSONRenderer, BinaryRenderer]

    @extend_schema(tags=TAG, operation_id="negotiations_message_audio",
                   responses={(200, "audio/*"): OpenApiTypes.BINARY, **errors(401, 404)})
    def get(self, request: Request, run_id: Any, message_id: Any) -> HttpResponse:

        run = run_or_404(request, run_id, shared=True)
        # Only a reply this reader's transcript holds (an outside buyer's: the replies sent to the buyer).
        visible = {msg.pk for msg, _ in run_transcript(run=run) if msg.sender_type == Message.SenderType.SELLER}
        audio = MessageAudio.objects.filter(message_id=message_id, message__run=run,
                                            status=MessageAudio.Status.READY).first()
        if audio is None or audio.message_id not in visible:
            raise NotFound("No audio for this message (voice off, not ready yet, or it could not be made).")
        response = HttpResponse(bytes(audio.data), content_type=audio.content_type)
        response["Cache-Control"] = "private, max-age=86400"
        return response


class RunAnalyticsApi(APIView):
    """Spec 10.3: rounds, messages, response time, quality scores and the outcome against the budget."""

    class AnalyticsOutput(serializers.Serializer):
        class AnalyticsOutcome(serializers.Serializer):
            type = serializers.CharField(allow_null=True, help_text="deal or no_deal; null while running.")
            reason = serializers.CharField(allow_null=True)
            seller = serializers.CharField(allow_null=True)
            final_price = serializers.DecimalField(**MONEY, allow_null=True)
            quantity = serializers.IntegerField(allow_null=True)
            initial_ask = serializers.DecimalField(**MONEY, allow_null=True,
                                                   help_text="The chosen seller's first offer.")
            savings_vs_initial = serializers.DecimalField(**MONEY, allow_null=True, help_text="Per unit.")
            savings_vs_initial_total = serializers.DecimalField(max_digits=14, decimal_places=2, allow_null=True)
            within_budget = serializers.BooleanField(allow_null=True)
            buyer_surplus_share = serializers.DecimalField(max_digits=8, decimal_places=4, allow_null=True,
                                                           required=False)

        negotiation_id = serializers.UUIDField()
        status = serializers.CharField()
        mode = serializers.CharField()
        conversation_rounds = serializers.IntegerField()
        total_messages = serializers.IntegerField()
        avg_response_time = serializers.CharField(allow_null=True, help_text='e.g. "2.3s".')
        avg_response_seconds = serializers.FloatField(allow_null=True)
        galileo_metrics = serializers.JSONField(allow_null=True)
        galileo_note = serializers.CharField(allow_null=True)
        outcome = AnalyticsOutcome()
        counts = serializers.JSONField(required=False, help_text="Leaks, guardrail violations, fallbacks, LLM calls "
                                                                 "and tokens; absent while a human- or external-"
                                                                 "buyer run has not ended.")

        class Verdict(serializers.Serializer):
            status = serializers.ChoiceField(choices=["pending", "done", "failed"])
            source = serializers.CharField(allow_null=True, help_text='"llm" (the analyst model) or "local" scorers.')  # type: ignore[assignment]  # an API key named like a Field attribute
            model = serializers.CharField(allow_null=True)
            deal_quality = serializers.FloatField(allow_null=True, help_text="0..1")
            strategy_effectiveness = serializers.CharField(allow_null=True, help_text="low, medium or high.")
            coherence = serializers.FloatField(allow_null=True, help_text="0..1")
            hallucination = serializers.FloatField(allow_null=True, help_text="0..1, lower is better.")
            reasons = serializers.CharField(required=False)
            recommendations = serializers.ListField(child=serializers.CharField(), required=False)
            error = serializers.CharField(required=False, allow_null=True,
                                          help_text="Why the analyst model's verdict was not used.")

        analysis = Verdict(allow_null=True, help_text="The post-deal analysis; null until it has run (and, for a "
                                                      "human- or external-buyer run, until the run has ended).")
        debrief = DebriefSerializer(allow_null=True, help_text=DEBRIEF_HELP)

    @extend_schema(tags=TAG, operation_id="negotiations_analytics",
                   responses={200: AnalyticsOutput, **errors(401, 404)})
    def get(self, request: Request, run_id: Any) -> Response:
        return Response(self.AnalyticsOutput(run_analytics(run=run_or_404(request, run_id, shared=True))).data)

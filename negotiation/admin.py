"""Admin: sessions with inline demands, sellers with inline inventory; runs read-only.

Constraint violations come back as form errors, because every model constraint carries a
`violation_error_message` and the admin validates constraints before saving.
"""

from __future__ import annotations

from typing import Any

from django import forms
from django.conf import settings
from django.contrib import admin, messages
from django.core.exceptions import ValidationError
from django.db.models import Count
from django.forms.models import BaseInlineFormSet
from django.http import HttpRequest

from negotiation.engine.names import name_key
from negotiation.models import (
    Batch,
    BuyerDemand,
    Experiment,
    ExperimentCondition,
    InventoryItem,
    Message,
    NegotiationRun,
    Outcome,
    PromptVersion,
    ReflectSequence,
    RunEvent,
    Seller,
    SequenceStep,
    Session,
)
from negotiation.selectors import run_rounds
from negotiation.services.batches import batch_cancel
from negotiation.services.budgets import batch_spend
from negotiation.services.errors import ConflictError, LimitExceeded, flatten
from negotiation.services.experiments import experiment_launch, experiment_status


class UniqueNameFormSet(BaseInlineFormSet):
    """Refuse two rows with the same name (by its key, engine/names.py) in one save, before the database does.

    Django checks a unique constraint row by row against the saved rows, not across the rows of one formset.
    """

    unique_field = ""

    def clean(self) -> None:
        super().clean()
        seen: set[str] = set()
        for form in self.forms:
            if not form.cleaned_data or form.cleaned_data.get("DELETE"):
                continue
            name = form.cleaned_data.get(self.unique_field)
            if not name:  # the field failed its own validation; that error is already on the form
                continue
            value = name_key(str(name))
            if value in seen:
                form.add_error(self.unique_field, f"'{name}' appears twice; names must be unique (compared ignoring "
                                                  "case).")
            seen.add(value)


class DemandFormSet(UniqueNameFormSet):
    unique_field = "item_name"


class SellerFormSet(UniqueNameFormSet):
    unique_field = "handle"


class InventoryFormSet(UniqueNameFormSet):
    unique_field = "item_name"


def _frozen(obj: Any) -> bool:
    """A benchmark suite's session (or one of its sellers): read-only here, as in every service."""
    session = obj if isinstance(obj, Session) else getattr(obj, "session", None)
    return bool(session is not None and session.frozen)


class FrozenReadOnlyInline:
    """Inline rows of a frozen session (or of its seller) can be viewed, not added, changed or deleted."""

    def has_add_permission(self, request: HttpRequest, obj: Any = None) -> bool:
        return not _frozen(obj) and super().has_add_permission(request, obj)  # type: ignore[misc]

    def has_change_permission(self, request: HttpRequest, obj: Any = None) -> bool:
        return not _frozen(obj) and super().has_change_permission(request, obj)  # type: ignore[misc]

    def has_delete_permission(self, request: HttpRequest, obj: Any = None) -> bool:
        return not _frozen(obj) and super().has_delete_permission(request, obj)  # type: ignore[misc]


class BuyerDemandInline(FrozenReadOnlyInline, admin.TabularInline):
    model = BuyerDemand
    formset = DemandFormSet
    extra = 0


class SellerLinkInline(FrozenReadOnlyInline, admin.TabularInline):
    model = Seller
    formset = SellerFormSet
    extra = 0
    fields = ("handle", "style", "customer_retention_weight", "profit_maximization_weight")
    show_change_link = True
    max_num = 10

    def get_formset(self, request: HttpRequest, obj: Any = None, **kwargs: Any) -> Any:
        # InlineModelAdmin has no validate_max option; without it an 11th row reaches the trigger (a 500).
        kwargs.setdefault("validate_max", True)
        return super().get_formset(request, obj, **kwargs)


@admin.register(Session)
class SessionAdmin(admin.ModelAdmin):
    list_display = ("__str__", "owner", "n_demands", "n_sellers", "created_at")
    search_fields = ("name", "description")
    inlines = [BuyerDemandInline, SellerLinkInline]
    readonly_fields = ("frozen_by",)

    def has_change_permission(self, request: HttpRequest, obj: Any = None) -> bool:
        return not _frozen(obj) and super().has_change_permission(request, obj)

    def has_delete_permission(self, request: HttpRequest, obj: Any = None) -> bool:
        return not _frozen(obj) and super().has_delete_permission(request, obj)

    def get_queryset(self, request: HttpRequest) -> Any:
        return super().get_queryset(request).annotate(
            nd=Count("demands", distinct=True), ns=Count("sellers", distinct=True))

    @admin.display(description="demands")
    def n_demands(self, obj: Session) -> int:
        return obj.nd  # type: ignore[attr-defined]

    @admin.display(description="sellers")
    def n_sellers(self, obj: Session) -> int:
        return obj.ns  # type: ignore[attr-defined]


class InventoryInline(FrozenReadOnlyInline, admin.TabularInline):
    model = InventoryItem
    formset = InventoryFormSet
    extra = 0


class SellerForm(forms.ModelForm):
    class Meta:
        model = Seller
        fields = ["session", "handle", "style", "customer_retention_weight", "profit_maximization_weight", "voice"]

    def clean(self) -> dict[str, Any]:
        data = super().clean() or {}
        session = data.get("session")
        if session is not None and session.frozen:
            raise forms.ValidationError(f"{session} belongs to {session.frozen_by} and is read-only; copy the "
                                        "suite to a new version to change it.")
        if session is not None:
            others = Seller.objects.filter(session=session).exclude(pk=self.instance.pk).count()
            if others >= settings.MAMS_MAX_SELLERS:
                raise forms.ValidationError(f"A session has at most {settings.MAMS_MAX_SELLERS} sellers; "
                                            f"{session} already has {others}.")
        return data


@admin.register(Seller)
class SellerAdmin(admin.ModelAdmin):
    form = SellerForm
    list_display = ("handle", "session", "style", "customer_retention_weight", "profit_maximization_weight", "voice")
    list_filter = ("style",)
    search_fields = ("handle",)
    inlines = [InventoryInline]

    def has_change_permission(self, request: HttpRequest, obj: Any = None) -> bool:
        return not _frozen(obj) and super().has_change_permission(request, obj)

    def has_delete_permission(self, request: HttpRequest, obj: Any = None) -> bool:
        return not _frozen(obj) and super().has_delete_permission(request, obj)


class ReadOnlyAdmin(admin.ModelAdmin):
    """Records of what happened: browsable, never edited or deleted one row at a time."""

    def has_add_permission(self, request: HttpRequest) -> bool:
        return False

    def has_change_permission(self, request: HttpRequest, obj: Any = None) -> bool:
        return False

    def has_delete_permission(self, request: HttpRequest, obj: Any = None) -> bool:
        return False


class MessageInline(admin.TabularInline):
    model = Message
    extra = 0
    can_delete = False
    fields = ("round_no", "sender", "recipients", "action", "price", "text", "llm_model", "prompt_tokens",
              "completion_tokens", "latency_ms", "repaired", "fallback")
    readonly_fields = fields

    def has_add_permission(self, request: HttpRequest, obj: Any = None) -> bool:
        return False


class EventInline(admin.TabularInline):
    model = RunEvent
    extra = 0
    can_delete = False
    fields = ("round_no", "actor", "kind", "detail", "original_price", "repaired_price")
    readonly_fields = fields

    def has_add_permission(self, request: HttpRequest, obj: Any = None) -> bool:
        return False


@admin.register(NegotiationRun)
class NegotiationRunAdmin(ReadOnlyAdmin):
    list_display = ("short_id", "batch_link", "item_name", "status", "outcome_text", "price", "rounds", "started_at")
    list_filter = ("status", "outcome__decision", "mode", ("batch", admin.RelatedOnlyFieldListFilter), "started_at")
    search_fields = ("id", "batch__id", "batch__name", "item_name", "buyer_fingerprint", "seller_fingerprint",
                     "code_version")
    list_select_related = ("batch", "outcome")
    date_hierarchy = "started_at"
    inlines = [MessageInline, EventInline]

    @admin.display(description="run", ordering="id")
    def short_id(self, obj: NegotiationRun) -> str:
        return str(obj.pk)[:8]

    @admin.display(description="batch", ordering="batch__created_at")
    def batch_link(self, obj: NegotiationRun) -> str:
        batch = obj.batch if obj.batch_id is not None else None
        if batch is None:
            return "–"
        return batch.name or str(obj.batch_id)[:8]

    @admin.display(description="outcome", ordering="outcome__decision")
    def outcome_text(self, obj: NegotiationRun) -> str:
        out = getattr(obj, "outcome", None)
        return f"{out.get_decision_display()} ({out.reason})" if out else "–"

    @admin.display(description="price", ordering="outcome__final_price")
    def price(self, obj: NegotiationRun) -> str:
        out = getattr(obj, "outcome", None)
        return f"${out.final_price:,.2f}" if out and out.final_price is not None else "–"

    @admin.display(description="rounds", ordering="outcome__rounds")
    def rounds(self, obj: NegotiationRun) -> int:
        return run_rounds(obj)  # rounds of offers, as the pages and the API count them


@admin.register(Batch)
class BatchAdmin(ReadOnlyAdmin):
    """Batches are records, except their name and tags, which a researcher may set at any time."""

    def has_delete_permission(self, request: HttpRequest, obj: Any = None) -> bool:
        return True  # a whole batch, with its runs, may be cleaned up

    def has_change_permission(self, request: HttpRequest, obj: Any = None) -> bool:
        return True  # name and tags only: every other field is read-only below

    def get_readonly_fields(self, request: HttpRequest, obj: Any = None) -> list[str]:
        return [*(f.name for f in Batch._meta.fields if f.name not in ("name", "tags")), "spend"]

    @admin.display(description="spend (recorded usage of its LLM calls: turns and analyses)")
    def spend(self, obj: Batch) -> str:
        s = batch_spend(batch_id=obj.pk)
        usd = f"${s.usd:.6f}" if s.usd is not None else f"unpriced ({', '.join(s.unpriced_models)})"
        return f"{usd} · {s.tokens} tokens ({s.prompt_tokens} prompt, {s.completion_tokens} completion)"

    list_display = ("short_id", "name", "tag_list", "session", "item_name", "runs_requested", "status", "created_at",
                    "finished_at")
    list_filter = ("status", ("session", admin.RelatedOnlyFieldListFilter), "created_at")
    search_fields = ("id", "name", "tags", "item_name", "session__name")
    actions = ["cancel"]

    @admin.display(description="batch", ordering="id")
    def short_id(self, obj: Batch) -> str:
        return str(obj.pk)[:8]

    @admin.display(description="tags")
    def tag_list(self, obj: Batch) -> str:
        return ", ".join(obj.tags) or "–"

    @admin.action(description="Cancel selected batches (queued runs stop; running ones end next round)")
    def cancel(self, request: HttpRequest, queryset: Any) -> None:
        for batch in queryset:
            batch_cancel(batch=batch)
        self.message_user(request, f"Cancelled {queryset.count()} batch(es).", messages.SUCCESS)


@admin.register(Message)
class MessageAdmin(ReadOnlyAdmin):
    list_display = ("run", "round_no", "sender", "action", "price", "llm_model", "latency_ms", "fallback")
    list_filter = ("sender_type", "action", "fallback")


@admin.register(Outcome)
class OutcomeAdmin(ReadOnlyAdmin):
    list_display = ("run", "decision", "reason", "chosen_handle", "final_price", "quantity", "rounds")
    list_filter = ("decision", "reason")


@admin.register(RunEvent)
class RunEventAdmin(ReadOnlyAdmin):
    list_display = ("run", "round_no", "actor", "kind", "detail")
    list_filter = ("kind",)


# --- paired experiments and reflect sequences ---------------------------------------------------


class ExperimentConditionInline(admin.TabularInline):
    model = ExperimentCondition
    extra = 0
    min_num = 2
    fields = ("position", "label", "agents", "temperature", "sellers", "styles", "batch")
    readonly_fields = ("batch",)

    def get_formset(self, request: HttpRequest, obj: Any = None, **kwargs: Any) -> Any:
        kwargs.setdefault("validate_min", True)  # an experiment compares at least a control and one condition
        return super().get_formset(request, obj, **kwargs)

    def get_readonly_fields(self, request: HttpRequest, obj: Any = None) -> Any:
        return self.fields if obj is not None and obj.launched_at else self.readonly_fields

    def has_add_permission(self, request: HttpRequest, obj: Any = None) -> bool:
        return obj is None or not obj.launched_at

    def has_delete_permission(self, request: HttpRequest, obj: Any = None) -> bool:
        return obj is None or not obj.launched_at


@admin.register(Experiment)
class ExperimentAdmin(admin.ModelAdmin):
    """Draft an experiment with its conditions (the first position is the control), then launch it with
    the action: one batch per condition, all with the experiment's seeds, through the API's service."""

    list_display = ("name", "session", "item_name", "runs", "base_seed", "status", "created_at")
    readonly_fields = ("launched_at",)
    fields = ("name", "owner", "session", "item_name", "runs", "max_rounds", "base_seed", "launched_at")
    inlines = [ExperimentConditionInline]
    actions = ["launch"]

    @admin.display(description="status")
    def status(self, obj: Experiment) -> str:
        return experiment_status(obj)

    def get_readonly_fields(self, request: HttpRequest, obj: Any = None) -> Any:
        if obj is not None and obj.launched_at:
            return self.fields  # what ran is a record: start a new experiment to change it
        return self.readonly_fields

    def save_model(self, request: HttpRequest, obj: Experiment, form: Any, change: bool) -> None:
        if obj.owner_id is None and request.user.is_authenticated:
            obj.owner = request.user
        super().save_model(request, obj, form, change)

    @admin.action(description="Launch selected experiments (one batch per condition, same seeds)")
    def launch(self, request: HttpRequest, queryset: Any) -> None:


        for experiment in queryset:
            try:
                experiment_launch(experiment=experiment)
            except ValidationError as exc:
                problems = "; ".join(f"{k}: {' '.join(v)}" for k, v in flatten(exc).items())
                self.message_user(request, f"{experiment}: not launched. {problems}", messages.ERROR)
            except (ConflictError, LimitExceeded) as exc:
                self.message_user(request, f"{experiment}: {exc.message}", messages.ERROR)
            else:
                self.message_user(request, f"{experiment}: launched.", messages.SUCCESS)


class SequenceStepInline(admin.TabularInline):
    model = SequenceStep
    extra = 0
    can_delete = False
    fields = ("index", "run", "buyer_prompt", "seller_prompt", "buyer_utility", "seller_utility", "notes",
              "coach_calls", "coach_fallbacks", "coach_errors")
    readonly_fields = fields

    def has_add_permission(self, request: HttpRequest, obj: Any = None) -> bool:
        return False


@admin.register(ReflectSequence)
class ReflectSequenceAdmin(ReadOnlyAdmin):
    list_display = ("id", "session", "item_name", "mode", "length", "status", "created_at")
    list_filter = ("mode", "status")
    inlines = [SequenceStepInline]


@admin.register(PromptVersion)
class PromptVersionAdmin(ReadOnlyAdmin):
    list_display = ("id", "role", "variant", "base_version", "created_at")
    list_filter = ("role", "variant")

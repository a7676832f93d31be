"""The spec's schema (section 8) with every price rule as a Postgres CHECK constraint.

Models own their invariants: a row that breaks a rule is refused by the database even when it
arrives through raw SQL, and `full_clean()` reports the same rule by name in words a person can
act on (each constraint's `violation_error_message`). The 10-seller cap is a trigger (see the
migration), because a CHECK cannot count rows.
"""

from __future__ import annotations

import uuid
from collections.abc import Callable
from decimal import Decimal
from typing import Any, TypedDict

from django.conf import settings
from django.contrib.postgres.fields import ArrayField
from django.core.exceptions import ValidationError
from django.core.validators import MaxValueValidator, MinValueValidator, RegexValidator
from django.db import models
from django.db.models import F, Q

from negotiation.engine.names import HANDLE_DB_RE, HANDLE_RULE, clean_name, handle_problem, name_key
from negotiation.engine.types import EndReason, EventKind

# Only what the database can check the same way Python does (see engine/names.py); the full rule
# (letters of any script, digits, "_") is the field's validator.
HANDLE_RE = HANDLE_DB_RE


class Digits(TypedDict):
    """The precision of a decimal column or API field, spread into it as **MONEY or **WEIGHT (typed, so
    the type checker matches each key to its keyword)."""

    max_digits: int
    decimal_places: int


class WeightColumn(Digits):
    validators: list[Callable[[Any], None]]


# Prices: dollars and cents up to 99,999,999.99 (the API's fields share it: negotiation/api/common.py).
MONEY: Digits = {"max_digits": 10, "decimal_places": 2}
WEIGHT: WeightColumn = {"max_digits": 3, "decimal_places": 2,
                        "validators": [MinValueValidator(Decimal("0")), MaxValueValidator(Decimal("1"))]}


def validate_handle(value: str) -> None:
    problem = handle_problem(clean_name(value))
    if problem:
        raise ValidationError(problem, code="invalid")


class KeyedQuerySet(models.QuerySet):
    """bulk_create skips save(), so it fills the name keys itself: no row is written without its key."""

    def bulk_create(self, objs: Any, *args: Any, **kwargs: Any) -> list[Any]:
        objs = list(objs)
        for obj in objs:
            obj.fill_name_key()
        return super().bulk_create(objs, *args, **kwargs)


class KeyedName(models.Model):
    """A model with a name compared by its key (engine/names.py): the name is stored NFC and the key
    beside it, and the unique constraints are on the key. The key is set on every write path (clean,
    save, bulk_create), so the checks in Python and the constraint in Postgres use one definition."""

    NAME_FIELD = ""
    KEY_FIELD = ""

    objects = KeyedQuerySet.as_manager()

    class Meta:
        abstract = True

    def save(self, *args: Any, **kwargs: Any) -> None:
        self.fill_name_key()
        update_fields = kwargs.get("update_fields")
        if update_fields is not None and self.NAME_FIELD in update_fields:
            kwargs["update_fields"] = {*update_fields, self.KEY_FIELD}
        super().save(*args, **kwargs)

    def clean_fields(self, exclude: Any = None) -> None:
        self.fill_name_key()
        super().clean_fields(exclude=exclude)

    def validate_constraints(self, exclude: Any = None) -> None:
        # A form leaves the key out (it is not editable), but it is checked whenever its name is.
        if exclude and self.NAME_FIELD not in exclude:
            exclude = set(exclude) - {self.KEY_FIELD}
        self.fill_name_key()
        super().validate_constraints(exclude=exclude)

    def fill_name_key(self) -> None:
        name = clean_name(getattr(self, self.NAME_FIELD) or "")
        setattr(self, self.NAME_FIELD, name)
        setattr(self, self.KEY_FIELD, name_key(name))


# Casefolding can lengthen a name ('ß' -> 'ss', 'ﬃ' -> 'ffi'): at most three times, so the keys have room.
KEY_LENGTH = 3 * 255
NAME_KEY_HELP = "The name's comparison key (NFC, Unicode case folding; engine/names.py), set on every save."


class Style(models.TextChoices):
    RUDE = "rude"
    NEUTRAL = "neutral"
    SWEET = "sweet"


class Session(models.Model):
    """A marketplace configuration: buyer demands and sellers. Configure once, run many."""

    id = models.UUIDField(primary_key=True, default=uuid.uuid4, editable=False)
    owner = models.ForeignKey(settings.AUTH_USER_MODEL, null=True, blank=True, on_delete=models.CASCADE,
                              related_name="mams_sessions")
    name = models.CharField(max_length=200, blank=True, help_text="Short label, e.g. 'spec-sample'.")
    description = models.TextField(blank=True)
    created_at = models.DateTimeField(auto_now_add=True)
    frozen_by = models.CharField(max_length=200, blank=True, default="", help_text=(
        "Set for a benchmark suite's session (e.g. 'benchmark suite core-v1, scenario one-seller-easy'): it is "
        "read-only, since results are compared across runs of that suite version."))

    class Meta:
        ordering = ["-created_at"]

    def __str__(self) -> str:
        return self.name or self.description[:60] or str(self.id)

    @property
    def frozen(self) -> bool:
        return bool(self.frozen_by)


class BuyerDemand(KeyedName):
    """What the buyer wants of one item: quantity and a per-unit price range (spec 5.1)."""

    NAME_FIELD, KEY_FIELD = "item_name", "item_key"

    id = models.UUIDField(primary_key=True, default=uuid.uuid4, editable=False)
    session = models.ForeignKey(Session, on_delete=models.CASCADE, related_name="demands")
    item_name = models.CharField(max_length=255)
    item_key = models.CharField(max_length=KEY_LENGTH, editable=False, default="", help_text=NAME_KEY_HELP)
    quantity = models.PositiveIntegerField(default=1)
    min_price = models.DecimalField(**MONEY)
    max_price = models.DecimalField(**MONEY)

    class Meta:
        ordering = ["item_name"]
        constraints = [
            models.CheckConstraint(condition=Q(quantity__gte=1), name="demand_quantity_at_least_1",
                                   violation_error_message="Quantity must be at least 1."),
            models.CheckConstraint(condition=Q(min_price__gte=0), name="demand_min_price_not_negative",
                                   violation_error_message="Minimum price cannot be negative."),
            models.CheckConstraint(condition=Q(min_price__lte=F("max_price")),
                                   name="demand_min_price_le_max_price",
                                   violation_error_message="Minimum price must not exceed maximum price."),
            models.UniqueConstraint(fields=["session", "item_key"], name="demand_item_unique_per_session",
                                    violation_error_message="The buyer already has a demand for this item "
                                                            "(item names are compared ignoring case)."),
        ]

    def __str__(self) -> str:
        return f"{self.item_name} x{self.quantity} (${self.min_price}–${self.max_price})"


class Seller(KeyedName):
    """A seller agent: handle, conversation style and priorities (spec 5.2). Private to itself."""

    NAME_FIELD, KEY_FIELD = "handle", "handle_key"

    id = models.UUIDField(primary_key=True, default=uuid.uuid4, editable=False)
    session = models.ForeignKey(Session, on_delete=models.CASCADE, related_name="sellers")
    handle = models.CharField(max_length=51, validators=[validate_handle], help_text=HANDLE_RULE)
    handle_key = models.CharField(max_length=KEY_LENGTH, editable=False, default="", help_text=NAME_KEY_HELP)
    style = models.CharField(max_length=16, choices=Style.choices, default=Style.NEUTRAL)
    customer_retention_weight = models.DecimalField(**WEIGHT, default=Decimal("0.50"))
    profit_maximization_weight = models.DecimalField(**WEIGHT, default=Decimal("0.50"))
    voice = models.CharField(max_length=100, blank=True, default="", db_default="", help_text=(
        "How this seller sounds when voice is on: an ElevenLabs voice id when ELEVENLABS_API_KEY is set, else an "
        "espeak-ng voice such as 'en-gb+f3 pitch=65 speed=170'. Blank: a default by style and position."))

    class Meta:
        ordering = ["handle"]
        constraints = [
            models.CheckConstraint(condition=Q(handle__regex=HANDLE_RE), name="seller_handle_format",
                                   violation_error_message=HANDLE_RULE),
            models.CheckConstraint(
                condition=Q(customer_retention_weight__gte=0, customer_retention_weight__lte=1,
                            profit_maximization_weight__gte=0, profit_maximization_weight__lte=1),
                name="seller_weights_in_unit_range",
                violation_error_message="Each priority weight must lie between 0 and 1."),
            models.CheckConstraint(
                condition=Q(profit_maximization_weight=1 - F("customer_retention_weight")),
                name="seller_weights_sum_to_1",
                violation_error_message="Customer retention and profit maximization weights must sum to 1."),
            models.UniqueConstraint(fields=["session", "handle_key"], name="seller_handle_unique_per_session",
                                    violation_error_message="Another seller in this session already uses "
                                                            "this handle (handles are compared ignoring case)."),
        ]

    def __str__(self) -> str:
        return self.handle


class InventoryItem(KeyedName):
    """One item a seller stocks, with its private price ladder: cost < least <= selling."""

    NAME_FIELD, KEY_FIELD = "item_name", "item_key"

    id = models.UUIDField(primary_key=True, default=uuid.uuid4, editable=False)
    seller = models.ForeignKey(Seller, on_delete=models.CASCADE, related_name="inventory")
    item_name = models.CharField(max_length=255)
    item_key = models.CharField(max_length=KEY_LENGTH, editable=False, default="", help_text=NAME_KEY_HELP)
    cost_price = models.DecimalField(**MONEY)
    selling_price = models.DecimalField(**MONEY)
    least_price = models.DecimalField(**MONEY)

    class Meta:
        ordering = ["item_name"]
        verbose_name_plural = "inventory"
        constraints = [
            models.CheckConstraint(condition=Q(cost_price__gte=0), name="inventory_cost_not_negative",
                                   violation_error_message="Cost price cannot be negative."),
            models.CheckConstraint(condition=Q(cost_price__lt=F("least_price")),
                                   name="inventory_cost_below_least",
                                   violation_error_message="Cost price must be below the least price "
                                                           "(the seller's floor)."),
            models.CheckConstraint(condition=Q(least_price__lte=F("selling_price")),
                                   name="inventory_least_le_selling",
                                   violation_error_message="Least price must not exceed the selling price."),
            models.UniqueConstraint(fields=["seller", "item_key"], name="inventory_item_unique_per_seller",
                                    violation_error_message="This seller already stocks this item "
                                                            "(item names are compared ignoring case)."),
        ]

    def __str__(self) -> str:
        return f"{self.item_name} (ask ${self.selling_price})"


class Disclosure(models.TextChoices):
    """What the other side receives of a message that states its sender's hidden number
    (negotiation.engine.disclosure): withheld, the default, or delivered as said, to study leaking."""

    REDACT = "redact"
    ALLOW = "allow"


class Rules(models.TextChoices):
    """The turn-taking rule set of a batch's runs (negotiation.engine.protocol.Rules): `known`, the
    deadline told and a closing turn (core-v1); `hidden`, a per-run hidden last round, no closing
    turn and binding counters (core-v2), so that waiting alone cannot win."""

    KNOWN = "known"
    HIDDEN = "hidden"


class Batch(models.Model):
    """N negotiations of one configuration, launched together and read together."""

    class Status(models.TextChoices):
        # Once no run is queued or running, a batch says what its runs did: completed only when every
        # run completed, failed when none did, partly_failed for the rest (the progress block has the
        # counts). The name leads with "failed" so that no reader, and no `startswith("completed")`,
        # takes it for a success.
        QUEUED = "queued"
        RUNNING = "running"
        COMPLETED = "completed", "completed (every run completed)"
        PARTLY_FAILED = "partly_failed", "partly failed (finished, some runs failed)"
        FAILED = "failed", "failed (every run failed)"
        CANCELLED = "cancelled"

    ACTIVE = (Status.QUEUED, Status.RUNNING)
    FINISHED = (Status.COMPLETED, Status.PARTLY_FAILED, Status.FAILED)

    id = models.UUIDField(primary_key=True, default=uuid.uuid4, editable=False)
    owner = models.ForeignKey(settings.AUTH_USER_MODEL, null=True, blank=True, on_delete=models.CASCADE,
                              related_name="mams_batches")
    name = models.CharField(max_length=120, blank=True, default="",
                            help_text="An optional name to tell batches apart in the run table.")
    tags = ArrayField(models.CharField(max_length=40, validators=[RegexValidator(
                          r"^[\w.:-]{1,40}$", "A tag is 1 to 40 letters, digits or . _ : - (no spaces).")]),
                      blank=True, default=list, size=20,
                      help_text="Optional labels to filter and group batches by (letters, digits, . _ : -).")
    session = models.ForeignKey(Session, on_delete=models.PROTECT, related_name="batches")
    item_name = models.CharField(max_length=255, blank=True, help_text="Blank means every demanded item.")
    runs_requested = models.PositiveIntegerField()
    agents = models.JSONField(help_text="Resolved agent configuration per role.")
    temperature = models.FloatField(default=0.7)
    max_rounds = models.PositiveSmallIntegerField(default=5)
    base_seed = models.BigIntegerField(default=0)
    disclosure = models.CharField(max_length=8, choices=Disclosure.choices, default=Disclosure.REDACT,
                                  help_text="redact: a stated hidden number reaches the other side as "
                                            "[withheld]; allow: delivered as said. Counted either way.")
    voice = models.BooleanField(default=False, db_default=False,
                                help_text="Speak each seller reply (off by default for batches).")
    rules = models.CharField(max_length=8, choices=Rules.choices, default=Rules.KNOWN,
                             help_text="known: max_rounds is the deadline, told to the agents, with a closing turn; "
                                       "hidden: each run ends at a hidden round drawn from its seed (core-v2).")
    status = models.CharField(max_length=16, choices=Status.choices, default=Status.QUEUED)
    budget_usd = models.DecimalField(max_digits=12, decimal_places=6, null=True, blank=True, help_text=(
        "Dollars the batch may spend (the recorded usage of its LLM calls, agent turns and post-run analyses, "
        "priced by negotiation/agents/prices.py); when reached no new turn starts and the remaining runs end "
        "cancelled."))
    budget_tokens = models.PositiveBigIntegerField(null=True, blank=True, help_text=(
        "Tokens (prompt + completion) the batch may spend; when reached no new turn starts."))
    stop_reason = models.CharField(max_length=40, blank=True, default="", help_text=(
        "Why the platform stopped the batch on its own (\"budget reached\"); blank otherwise."))
    idempotency_key = models.CharField(max_length=200, blank=True, default="")
    request_hash = models.CharField(max_length=64, blank=True, default="",
                                    help_text="SHA-256 of the request that created the batch, so a retry with the "
                                              "same Idempotency-Key but another body is refused.")
    created_at = models.DateTimeField(auto_now_add=True)
    finished_at = models.DateTimeField(null=True, blank=True)

    class Meta:
        ordering = ["-created_at"]
        verbose_name_plural = "batches"
        constraints = [
            models.UniqueConstraint(fields=["owner", "idempotency_key"], condition=~Q(idempotency_key=""),
                                    name="batch_idempotency_key_unique"),
            models.CheckConstraint(condition=Q(runs_requested__gte=1), name="batch_runs_at_least_1",
                                   violation_error_message="A batch needs at least one run."),
        ]

    def __str__(self) -> str:
        return f"Batch {str(self.id)[:8]} · {self.item_name or 'all items'} × {self.runs_requested}"


class NegotiationRun(models.Model):
    """One negotiation for one item. `current_round` is the round whose buyer turn is next."""

    class Status(models.TextChoices):
        QUEUED = "queued"
        RUNNING = "running"
        COMPLETED = "completed"
        FAILED = "failed"
        CANCELLED = "cancelled"

    class Mode(models.TextChoices):
        AGENT = "agent", "agent buyer"
        HUMAN_BUYER = "human_buyer", "human buyer"
        EXTERNAL = "external", "external agent buyer (environment API)"

    TERMINAL = (Status.COMPLETED, Status.FAILED, Status.CANCELLED)
    ACTIVE = (Status.QUEUED, Status.RUNNING)
    # The buyer's turns arrive through the API (a person, or an external agent through /env/): no
    # round task plays them, and every response about such a run carries only the buyer's view.
    OUTSIDE_BUYER = (Mode.HUMAN_BUYER, Mode.EXTERNAL)

    id = models.UUIDField(primary_key=True, default=uuid.uuid4, editable=False)
    batch = models.ForeignKey(Batch, null=True, blank=True, on_delete=models.CASCADE, related_name="runs")
    session = models.ForeignKey(Session, on_delete=models.PROTECT, related_name="runs")
    owner = models.ForeignKey(settings.AUTH_USER_MODEL, null=True, blank=True, on_delete=models.CASCADE,
                              related_name="mams_runs")
    item_name = models.CharField(max_length=255)
    mode = models.CharField(max_length=16, choices=Mode.choices, default=Mode.AGENT)
    status = models.CharField(max_length=16, choices=Status.choices, default=Status.QUEUED)
    seed = models.BigIntegerField(default=0)
    agents = models.JSONField(help_text="Per role: profile, model, strategy, temperature, prompt version.")
    scenario = models.JSONField(default=dict, help_text="Snapshot of the buyer's demand and the sellers' "
                                "private configuration for this item when the run was made.")
    max_rounds = models.PositiveSmallIntegerField(default=5)
    current_round = models.PositiveSmallIntegerField(default=1)
    error = models.TextField(blank=True, help_text="Why the run failed, in words.")
    created_at = models.DateTimeField(auto_now_add=True)
    started_at = models.DateTimeField(null=True, blank=True)
    ended_at = models.DateTimeField(null=True, blank=True)
    heartbeat_at = models.DateTimeField(null=True, blank=True,
                                        help_text="Last progress; a sweeper re-queues stale runs.")
    buyer_fingerprint = models.CharField(max_length=12, blank=True, db_index=True,
                                         help_text="Hash of the buyer agent's configuration (see agents.fingerprint).")
    seller_fingerprint = models.CharField(max_length=12, blank=True, db_index=True,
                                          help_text="Hash of the sellers' agent configuration.")
    code_version = models.CharField(max_length=40, blank=True, help_text="The commit that produced this run.")
    disclosure = models.CharField(max_length=8, choices=Disclosure.choices, default=Disclosure.REDACT,
                                  help_text="The batch's disclosure rule, copied so every turn reads it with the run.")
    voice = models.BooleanField(default=False, db_default=False, help_text=(
        "Each seller reply is spoken (negotiation/services/voice.py): on for live rooms, opt-in per batch."))
    rules = models.CharField(max_length=8, choices=Rules.choices, default=Rules.KNOWN,
                             help_text="The batch's turn-taking rules, copied so every turn reads them with the run.")

    class Meta:
        ordering = ["created_at", "id"]
        indexes = [models.Index(fields=["batch", "status"]), models.Index(fields=["status", "heartbeat_at"])]

    def __str__(self) -> str:
        return f"Run {str(self.id)[:8]} · {self.item_name} · {self.status}"


class Message(models.Model):
    """One turn's message. Unique per (run, round, sender): a redelivered turn writes nothing."""

    class SenderType(models.TextChoices):
        BUYER = "buyer"
        SELLER = "seller"

    id = models.UUIDField(primary_key=True, default=uuid.uuid4, editable=False)
    run = models.ForeignKey(NegotiationRun, on_delete=models.CASCADE, related_name="messages")
    round_no = models.PositiveSmallIntegerField()
    sender_type = models.CharField(max_length=8, choices=SenderType.choices)
    sender = models.CharField(max_length=51, help_text="'buyer' or the seller's handle.")
    seller = models.ForeignKey(Seller, null=True, blank=True, on_delete=models.SET_NULL, related_name="+")
    recipients = ArrayField(models.CharField(max_length=51), default=list)
    text = models.TextField(blank=True)
    action = models.CharField(max_length=16)
    price = models.DecimalField(**MONEY, null=True, blank=True)
    reasoning = models.TextField(blank=True)
    llm_model = models.CharField(max_length=200, blank=True)
    llm_calls = models.PositiveSmallIntegerField(default=0)
    prompt_tokens = models.PositiveIntegerField(default=0)
    completion_tokens = models.PositiveIntegerField(default=0)
    latency_ms = models.PositiveIntegerField(default=0)
    repaired = models.BooleanField(default=False, help_text="The first output was invalid; a repair worked.")
    fallback = models.BooleanField(default=False, help_text="The baseline strategy acted for the LLM.")
    raw_output = models.TextField(blank=True)
    quality = models.JSONField(default=dict, blank=True)
    created_at = models.DateTimeField(auto_now_add=True)

    class Meta:
        ordering = ["round_no", "created_at"]
        constraints = [
            models.UniqueConstraint(fields=["run", "round_no", "sender"], name="message_one_per_sender_per_round"),
        ]

    def __str__(self) -> str:
        return f"R{self.round_no} {self.sender}: {self.action}"


class MessageAudio(models.Model):
    """A seller reply spoken (negotiation/services/voice.py): the audio bytes, or why there are none.

    The words spoken are the ones the buyer received (the disclosure rule applied), never the raw text.
    """

    class Status(models.TextChoices):
        READY = "ready"
        FAILED = "failed"

    message = models.OneToOneField(Message, primary_key=True, on_delete=models.CASCADE, related_name="audio")
    status = models.CharField(max_length=8, choices=Status.choices)
    engine = models.CharField(max_length=20, help_text="espeak-ng or elevenlabs")
    voice = models.CharField(max_length=100, blank=True)
    content_type = models.CharField(max_length=40, blank=True)
    data = models.BinaryField(blank=True, default=b"")
    duration_ms = models.PositiveIntegerField(null=True, blank=True)
    chars = models.PositiveIntegerField(default=0, help_text="Characters spoken.")
    note = models.CharField(max_length=300, blank=True, help_text="e.g. the text was cut to fit.")
    error = models.TextField(blank=True)
    created_at = models.DateTimeField(auto_now_add=True)

    def __str__(self) -> str:
        return f"audio of {self.message_id}: {self.status}"


class RunEvent(models.Model):
    """A guardrail repair or refusal, a leak, a fallback: each one recorded and counted."""

    run = models.ForeignKey(NegotiationRun, on_delete=models.CASCADE, related_name="events")
    message = models.ForeignKey(Message, null=True, blank=True, on_delete=models.CASCADE, related_name="events")
    round_no = models.PositiveSmallIntegerField()
    actor = models.CharField(max_length=51)
    kind = models.CharField(max_length=40, choices=[(k.value, k.value) for k in EventKind])
    detail = models.TextField(blank=True)
    original_price = models.DecimalField(**MONEY, null=True, blank=True)
    repaired_price = models.DecimalField(**MONEY, null=True, blank=True)
    created_at = models.DateTimeField(auto_now_add=True)

    class Meta:
        ordering = ["round_no", "id"]
        indexes = [models.Index(fields=["run", "kind"])]

    def __str__(self) -> str:
        return f"R{self.round_no} {self.actor}: {self.kind}"


class Outcome(models.Model):
    """How a run ended: a deal with a seller at a price, or no deal and why."""

    class Decision(models.TextChoices):
        DEAL = "deal"
        NO_DEAL = "no_deal"

    id = models.UUIDField(primary_key=True, default=uuid.uuid4, editable=False)
    run = models.OneToOneField(NegotiationRun, on_delete=models.CASCADE, related_name="outcome")
    decision = models.CharField(max_length=8, choices=Decision.choices)
    reason = models.CharField(max_length=20, choices=[(r.value, r.value) for r in EndReason])
    chosen_seller = models.ForeignKey(Seller, null=True, blank=True, on_delete=models.SET_NULL, related_name="+")
    chosen_handle = models.CharField(max_length=51, blank=True)
    final_price = models.DecimalField(**MONEY, null=True, blank=True)
    quantity = models.PositiveIntegerField(default=1)
    rounds = models.PositiveSmallIntegerField(default=0)
    reasoning_summary = models.TextField(blank=True)
    galileo_overall_score = models.DecimalField(max_digits=5, decimal_places=2, null=True, blank=True)
    created_at = models.DateTimeField(auto_now_add=True)

    class Meta:
        constraints = [
            models.CheckConstraint(
                condition=Q(decision="no_deal") | (Q(final_price__isnull=False) & ~Q(chosen_handle="")),
                name="outcome_deal_has_seller_and_price",
                violation_error_message="A deal needs a chosen seller and a final price."),
            models.CheckConstraint(condition=Q(final_price__isnull=True) | Q(final_price__gte=0),
                                   name="outcome_price_not_negative",
                                   violation_error_message="The final price cannot be negative."),
        ]

    def __str__(self) -> str:
        if self.decision == self.Decision.DEAL:
            return f"deal with {self.chosen_handle} at ${self.final_price}"
        return f"no deal ({self.reason})"


# --- paired experiments and reflect sequences ---------------------------------------------------


class PromptVersion(models.Model):
    """The exact prompts an agent played with, under the 12-character version its run records.

    A run's `agents[role]["prompt_version"]` is this row's id: the templates of the prompt variant
    and, for a reflecting agent, the coach's notes appended to its prompt, so any run can be
    replayed with exactly what produced it. A notes-free version is shared by every role (blank
    `role`); a version with notes belongs to one role (the sellers' notes are kept per handle).
    """

    id = models.CharField(max_length=12, primary_key=True)
    role = models.CharField(max_length=8, blank=True, help_text="buyer or seller; blank when shared by every role.")
    variant = models.CharField(max_length=40, default="default")
    base_version = models.CharField(max_length=12, help_text="PROMPT_VERSION of the templates in this version.")
    templates = models.JSONField(help_text="The template texts and the variant's extra lines.")
    notes = models.JSONField(default=list, blank=True,
                             help_text="Coach notes: a list for the buyer, {handle: [notes]} for the sellers.")
    created_at = models.DateTimeField(auto_now_add=True)

    class Meta:
        ordering = ["-created_at"]

    def __str__(self) -> str:
        return f"{self.id} ({self.role or 'all roles'}, {self.variant})"


class Experiment(models.Model):
    """Two or more conditions played on the same scenarios with the same seeds (common random numbers).

    Each condition becomes one ordinary batch with the experiment's base seed, so run i of every
    condition has seed base_seed + i and runs pair by (item, seed). Its status is derived from the
    batches (see `negotiation.services.experiments.experiment_status`).
    """

    id = models.UUIDField(primary_key=True, default=uuid.uuid4, editable=False)
    owner = models.ForeignKey(settings.AUTH_USER_MODEL, null=True, blank=True, on_delete=models.CASCADE,
                              related_name="mams_experiments")
    name = models.CharField(max_length=200)
    session = models.ForeignKey(Session, on_delete=models.PROTECT, related_name="experiments")
    item_name = models.CharField(max_length=255, blank=True, help_text="Blank means every demanded item.")
    runs = models.PositiveIntegerField(default=10, help_text="Runs per condition (and per item).")
    base_seed = models.BigIntegerField(default=0)
    max_rounds = models.PositiveSmallIntegerField(default=5)
    created_at = models.DateTimeField(auto_now_add=True)
    launched_at = models.DateTimeField(null=True, blank=True)

    class Meta:
        ordering = ["-created_at"]
        constraints = [
            models.CheckConstraint(condition=Q(runs__gte=1), name="experiment_runs_at_least_1",
                                   violation_error_message="An experiment needs at least one run per condition."),
        ]

    def __str__(self) -> str:
        return self.name or str(self.id)


class ExperimentCondition(models.Model):
    """One arm of an experiment: an agent configuration, a temperature, a prompt variant (in `agents`),
    or a seller population (`sellers`: the handles that take part, all when empty; `styles`:
    {handle: style} overrides). Position 0 is the control every other condition is compared with."""

    experiment = models.ForeignKey(Experiment, on_delete=models.CASCADE, related_name="conditions")
    position = models.PositiveSmallIntegerField(default=0)
    label = models.CharField(max_length=60, validators=[RegexValidator(
        r"^[A-Za-z0-9][A-Za-z0-9_.\-]*$", "A label is letters, digits and _.- (e.g. 'control', 'temp-0.2').")])
    agents = models.JSONField(default=dict, blank=True,
                              help_text='Per role: strategy, profile, model, temperature, prompt_variant, e.g. '
                                        '{"buyer": {"prompt_variant": "anchoring"}}.')
    temperature = models.FloatField(default=0.7, validators=[MinValueValidator(0), MaxValueValidator(2)])
    sellers = ArrayField(models.CharField(max_length=51), default=list, blank=True,
                         help_text="Seller handles taking part; empty means every seller of the session.")
    styles = models.JSONField(default=dict, blank=True, help_text='Style overrides, e.g. {"@QuickTech": "rude"}.')
    batch = models.OneToOneField(Batch, null=True, blank=True, on_delete=models.SET_NULL,
                                 related_name="experiment_condition")

    class Meta:
        ordering = ["experiment", "position"]
        constraints = [
            models.UniqueConstraint(fields=["experiment", "label"], name="condition_label_unique",
                                    violation_error_message="Another condition of this experiment has this label."),
            models.UniqueConstraint(fields=["experiment", "position"], name="condition_position_unique",
                                    violation_error_message="Another condition of this experiment has this "
                                                            "position."),
        ]

    def __str__(self) -> str:
        return self.label


class ReflectSequence(models.Model):
    """N runs of one scenario played one after another; after each, a coach writes a strategy note
    for each reflecting side, appended to that agent's prompt for the next run (NegotiationGym's
    no-reflect, buyer-reflect, seller-reflect and both-reflect modes)."""

    class Mode(models.TextChoices):
        NONE = "none", "no reflection"
        BUYER = "buyer", "the buyer reflects"
        SELLER = "seller", "the sellers reflect"
        BOTH = "both", "both sides reflect"

    class SeedPolicy(models.TextChoices):
        INCREMENT = "increment", "run i has seed base_seed + i"
        FIXED = "fixed", "every run has seed base_seed"

    class Status(models.TextChoices):
        RUNNING = "running"
        COMPLETED = "completed"
        FAILED = "failed"

    id = models.UUIDField(primary_key=True, default=uuid.uuid4, editable=False)
    owner = models.ForeignKey(settings.AUTH_USER_MODEL, null=True, blank=True, on_delete=models.CASCADE,
                              related_name="mams_sequences")
    session = models.ForeignKey(Session, on_delete=models.PROTECT, related_name="sequences")
    item_name = models.CharField(max_length=255)
    mode = models.CharField(max_length=8, choices=Mode.choices, default=Mode.BOTH)
    length = models.PositiveSmallIntegerField(help_text="How many runs the sequence plays.")
    agents = models.JSONField(help_text="The resolved agent configuration of the first run (no notes yet).")
    max_rounds = models.PositiveSmallIntegerField(default=5)
    base_seed = models.BigIntegerField(default=0)
    seed_policy = models.CharField(max_length=10, choices=SeedPolicy.choices, default=SeedPolicy.INCREMENT)
    status = models.CharField(max_length=10, choices=Status.choices, default=Status.RUNNING)
    error = models.TextField(blank=True)
    created_at = models.DateTimeField(auto_now_add=True)
    finished_at = models.DateTimeField(null=True, blank=True)

    class Meta:
        ordering = ["-created_at"]
        constraints = [
            models.CheckConstraint(condition=Q(length__gte=1), name="sequence_length_at_least_1",
                                   violation_error_message="A sequence plays at least one run."),
        ]

    def __str__(self) -> str:
        return f"{self.get_mode_display()} × {self.length} · {self.item_name}"


class SequenceStep(models.Model):
    """One run of a sequence: the prompt versions it played with, each side's utility, and the notes
    the coach wrote after it (empty when nobody reflects, or when a coach answer was unusable)."""

    sequence = models.ForeignKey(ReflectSequence, on_delete=models.CASCADE, related_name="steps")
    index = models.PositiveSmallIntegerField()
    run = models.OneToOneField(NegotiationRun, on_delete=models.CASCADE, related_name="sequence_step")
    buyer_prompt = models.ForeignKey(PromptVersion, null=True, blank=True, on_delete=models.PROTECT,
                                     related_name="+")
    seller_prompt = models.ForeignKey(PromptVersion, null=True, blank=True, on_delete=models.PROTECT,
                                      related_name="+")
    buyer_utility = models.FloatField(null=True, blank=True)
    seller_utility = models.FloatField(null=True, blank=True, help_text="The seller side: Σ seller utilities.")
    seller_utilities = models.JSONField(default=dict, blank=True, help_text="{handle: utility}")
    notes = models.JSONField(default=dict, blank=True,
                             help_text='Notes written after this run: {"buyer": "...", "@Handle": "..."}.')
    coach_calls = models.PositiveIntegerField(default=0)
    coach_prompt_tokens = models.PositiveIntegerField(default=0)
    coach_completion_tokens = models.PositiveIntegerField(default=0)
    coach_latency_ms = models.PositiveIntegerField(default=0)
    coach_fallbacks = models.PositiveSmallIntegerField(default=0, help_text="Coach answers that were unusable "
                                                                             "(the agent continued without a note).")
    coach_errors = models.JSONField(default=dict, blank=True, help_text="{who: why no note was written}")
    reflected_at = models.DateTimeField(null=True, blank=True)

    class Meta:
        ordering = ["sequence", "index"]
        constraints = [
            models.UniqueConstraint(fields=["sequence", "index"], name="sequence_step_unique_index"),
        ]

    def __str__(self) -> str:
        return f"step {self.index} of {self.sequence_id}"

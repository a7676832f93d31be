"""Per-run metrics and the post-deal analysis, one row per run each.

`RunMetrics` holds every per-run metric of a completed run as plain columns, written in the same
transaction as its Outcome (see analytics/services.py for why). `RunAnalysis` holds the structured
verdict of the analysis task, where it came from (the analyst LLM or the local scorers), the local
scores it is always shown beside, Galileo's scores when a key is set, and the error of a failed
analysis (which never fails the run).
"""

from __future__ import annotations

from django.db import models
from django.db.models import Q

from negotiation.models import MONEY, Batch, NegotiationRun


class RunMetrics(models.Model):
    """Every per-run metric of one completed run; formulas in analytics/metrics.py."""

    run = models.OneToOneField(NegotiationRun, primary_key=True, on_delete=models.CASCADE, related_name="metrics")
    batch = models.ForeignKey(Batch, null=True, blank=True, on_delete=models.CASCADE, related_name="+")
    seed = models.BigIntegerField(default=0)
    item_name = models.CharField(max_length=255, blank=True)
    deal = models.BooleanField()
    price = models.DecimalField(**MONEY, null=True, blank=True)
    max_price = models.DecimalField(**MONEY)
    chosen_handle = models.CharField(max_length=51, blank=True)
    chosen_style = models.CharField(max_length=16, blank=True)
    chosen_weights = models.CharField(max_length=16, blank=True, help_text="retention/profit, e.g. 0.60/0.40")
    buyer_share = models.FloatField(null=True, blank=True)
    seller_share = models.FloatField(null=True, blank=True)
    zopa = models.DecimalField(**MONEY, null=True, blank=True, help_text="max_price − lowest floor in the room")
    first_ask = models.DecimalField(**MONEY, null=True, blank=True)
    savings = models.DecimalField(**MONEY, null=True, blank=True)
    savings_share = models.FloatField(null=True, blank=True)
    selection_regret = models.DecimalField(**MONEY, null=True, blank=True)
    mutual_loss = models.BooleanField(default=False)
    rounds = models.PositiveSmallIntegerField(default=0)
    messages = models.PositiveIntegerField(default=0)
    llm_calls = models.PositiveIntegerField(default=0)
    prompt_tokens = models.PositiveIntegerField(default=0)
    completion_tokens = models.PositiveIntegerField(default=0)
    tokens = models.PositiveIntegerField(default=0)
    cost_usd = models.DecimalField(max_digits=14, decimal_places=8, null=True, blank=True,
                                   help_text="None when a model the run used has no price in MAMS_MODEL_PRICES.")
    latency_ms = models.PositiveIntegerField(default=0, help_text="Σ LLM time of the run's calls.")
    duration_ms = models.PositiveIntegerField(null=True, blank=True, help_text="Wall time from start to end.")
    leaks = models.PositiveIntegerField(default=0)
    guardrails = models.PositiveIntegerField(default=0)
    claim_inconsistent = models.PositiveIntegerField(default=0)
    unsupported_claims = models.PositiveIntegerField(default=0)
    fallbacks = models.PositiveIntegerField(default=0)
    reasks = models.PositiveIntegerField(default=0, help_text="Turns re-asked once after breaking a price rule.")
    buyer_model = models.CharField(max_length=200, blank=True)
    seller_model = models.CharField(max_length=200, blank=True)
    created_at = models.DateTimeField(auto_now_add=True)

    class Meta:
        verbose_name_plural = "run metrics"
        indexes = [models.Index(fields=["batch", "seed"])]
        constraints = [
            models.CheckConstraint(condition=Q(deal=False) | Q(price__isnull=False), name="metrics_deal_has_price"),
        ]

    def __str__(self) -> str:
        return f"metrics of run {str(self.run_id)[:8]}"


class RunAnalysis(models.Model):
    """The post-deal verdict of one run, with reasons, and where each score came from."""

    class Status(models.TextChoices):
        PENDING = "pending"
        DONE = "done"
        FAILED = "failed"

    class Source(models.TextChoices):
        LLM = "llm", "analyst LLM"
        LOCAL = "local", "local scorers"

    class Level(models.TextChoices):
        LOW = "low"
        MEDIUM = "medium"
        HIGH = "high"

    run = models.OneToOneField(NegotiationRun, primary_key=True, on_delete=models.CASCADE, related_name="analysis")
    batch = models.ForeignKey(Batch, null=True, blank=True, on_delete=models.CASCADE, related_name="+")
    status = models.CharField(max_length=8, choices=Status.choices, default=Status.PENDING)
    source = models.CharField(max_length=8, choices=Source.choices, blank=True)
    model = models.CharField(max_length=200, blank=True)
    deal_quality = models.FloatField(null=True, blank=True)
    strategy_effectiveness = models.CharField(max_length=8, choices=Level.choices, blank=True)
    coherence = models.FloatField(null=True, blank=True)
    hallucination = models.FloatField(null=True, blank=True)
    recommendations = models.JSONField(default=list, blank=True)
    reasons = models.TextField(blank=True)
    local = models.JSONField(default=dict, blank=True, help_text="The local scorers' verdict, always computed.")
    galileo = models.JSONField(default=dict, blank=True, help_text="Scores read back from Galileo, when a key is set.")
    error = models.TextField(blank=True, help_text="Why the analyst LLM's verdict could not be used.")
    attempts = models.PositiveSmallIntegerField(default=0)
    prompt_tokens = models.PositiveIntegerField(default=0)
    completion_tokens = models.PositiveIntegerField(default=0)
    latency_ms = models.PositiveIntegerField(default=0)
    created_at = models.DateTimeField(auto_now_add=True)
    updated_at = models.DateTimeField(auto_now=True)

    class Meta:
        verbose_name_plural = "run analyses"
        indexes = [models.Index(fields=["batch", "status"])]
        constraints = [
            models.CheckConstraint(condition=Q(deal_quality__isnull=True) | Q(deal_quality__gte=0, deal_quality__lte=1),
                                   name="analysis_deal_quality_0_1"),
            models.CheckConstraint(condition=Q(coherence__isnull=True) | Q(coherence__gte=0, coherence__lte=1),
                                   name="analysis_coherence_0_1"),
            models.CheckConstraint(
                condition=Q(hallucination__isnull=True) | Q(hallucination__gte=0, hallucination__lte=1),
                name="analysis_hallucination_0_1"),
        ]

    def __str__(self) -> str:
        return f"analysis of run {str(self.run_id)[:8]} ({self.status})"


class RunArchive(models.Model):
    """Where a finished run's audit record lies in object storage (analytics/archive.py), or why not yet.

    The object is a gzip of canonical JSON (no timestamps of its own, gzip mtime 0), so writing the same
    run twice yields the same bytes, the same `sha256`, and one identical object.
    """

    class Status(models.TextChoices):
        PENDING = "pending"
        ARCHIVED = "archived"
        FAILED = "failed", "failed (the store could not be written)"

    run = models.OneToOneField(NegotiationRun, primary_key=True, on_delete=models.CASCADE, related_name="archive")
    batch = models.ForeignKey(Batch, null=True, blank=True, on_delete=models.CASCADE, related_name="+")
    status = models.CharField(max_length=10, choices=Status.choices, default=Status.PENDING)
    url = models.CharField(max_length=1024, blank=True, help_text="s3://bucket/key or file:///path of the object.")
    key = models.CharField(max_length=1024, blank=True, help_text="<prefix>/<batch>/<run>.json.gz")
    size = models.PositiveBigIntegerField(null=True, blank=True, help_text="Bytes of the gzip object.")
    sha256 = models.CharField(max_length=64, blank=True, help_text="SHA-256 of the gzip object's bytes.")
    attempts = models.PositiveSmallIntegerField(default=0)
    error = models.TextField(blank=True, help_text="Why the last write failed, in words (no secrets).")
    archived_at = models.DateTimeField(null=True, blank=True)
    updated_at = models.DateTimeField(auto_now=True)

    class Meta:
        indexes = [models.Index(fields=["batch", "status"])]

    def __str__(self) -> str:
        return f"archive of {self.run_id}: {self.status}"

"""Benchmark records: loaded suites, schedules, benchmark runs (groups of ordinary batches), drift flags.

A `Suite` row is one version of a suite directory (analytics/benchmarks/suite_files.py) imported once: its content
hash is stored, so the same name and version can never be loaded again with other content. Its
scenarios are ordinary sessions owned by nobody (owner=None): every user's benchmark batches may
use them, and the owner-scoped API never lists them to a non-staff user.

A `BenchmarkRun` is one launch of a suite for a set of buyer configurations against one pinned
opponent configuration. Its work is ordinary batches (one per scenario × buyer, all with the same
base seed, so buyers are paired by seed), linked through `BenchmarkBatch`; its status is derived
from those batches, never stored. `finished_at` is set once, when every batch has ended, by the
same transaction that writes its `DriftFlag`s (analytics/benchmarks/drift.py).
"""

from __future__ import annotations

import uuid

from django.conf import settings
from django.contrib.postgres.fields import ArrayField
from django.db import models
from django.db.models import Q

from negotiation.models import Batch, Session

BUYERS_HINT = 'Give a JSON list of at least one buyer spec, e.g. [{"profile": "local"}, {"strategy": "boulware"}].'


class Suite(models.Model):
    """One version of a benchmark suite, imported from suites/<name>-v<N>/."""

    name = models.CharField(max_length=64)
    version = models.PositiveIntegerField()
    description = models.TextField(blank=True)
    content_hash = models.CharField(max_length=64, help_text="sha256 of the manifest and scenario files.")
    rules = models.CharField(max_length=8, default="known", help_text=(
        "The turn-taking rules its runs play under (negotiation.engine.protocol.Rules), from the manifest."))
    loaded_at = models.DateTimeField(auto_now_add=True)

    class Meta:
        ordering = ["name", "-version"]
        constraints = [models.UniqueConstraint(fields=["name", "version"], name="suite_name_version_unique",
                                               violation_error_message="This suite version is already loaded.")]

    def __str__(self) -> str:
        return self.label

    @property
    def label(self) -> str:
        return f"{self.name}-v{self.version}"


class SuiteScenario(models.Model):
    """A scenario of a suite version: the imported session and the items its runs negotiate."""

    suite = models.ForeignKey(Suite, on_delete=models.CASCADE, related_name="scenarios")
    position = models.PositiveSmallIntegerField(default=0)
    slug = models.SlugField(max_length=64)
    title = models.CharField(max_length=200, blank=True)
    session = models.ForeignKey(Session, on_delete=models.PROTECT, related_name="+")
    items = ArrayField(models.CharField(max_length=255), help_text="One item: a batch for it; several: every "
                                                                   "demanded item.")
    session_hash = models.CharField(max_length=64, blank=True, default="", help_text=(
        "sha256 of the session's export when the suite was loaded; every launch checks the session against it."))

    class Meta:
        ordering = ["suite", "position"]
        constraints = [models.UniqueConstraint(fields=["suite", "slug"], name="suite_scenario_slug_unique")]

    def __str__(self) -> str:
        return f"{self.suite_id}:{self.slug}"


class BenchmarkSchedule(models.Model):
    """A suite run on a cron schedule through django-celery-beat (the admin edits it).

    Saving it through `benchmark_schedule_save` checks it (`benchmark_schedule_validate`: the suite, the
    agent specs, the cron expression; the admin form runs the same checks) and keeps its PeriodicTask
    and CrontabSchedule in step. The checks are not field validators: an agent spec's check resolves
    LLM profiles, which this model layer must not import.
    """

    name = models.CharField(max_length=100, unique=True)
    suite = models.CharField(max_length=80, default="core",
                             help_text="'core' follows the latest version of the suite; 'core-v1' pins one.")
    buyers = models.JSONField(error_messages={"blank": BUYERS_HINT}, help_text=(
        'Buyer configurations to test, a JSON list of agent specs, e.g. [{"profile": "local", "model": '
        '"gemma-3-270m", "temperature": 0.7}, {"strategy": "boulware"}].'))
    opponents = models.JSONField(help_text=(
        'The pinned seller configuration, one agent spec, e.g. {"profile": "local", "model": "gemma-3-270m", '
        '"temperature": 0.7}. Results are comparable only against the same opponents.'))
    runs_per_scenario = models.PositiveSmallIntegerField(default=3)
    max_rounds = models.PositiveSmallIntegerField(default=5)
    base_seed = models.PositiveIntegerField(default=0, help_text="The same seeds every time, so runs pair across "
                                                                 "nights and across buyers.")
    cron = models.CharField(max_length=100, default="30 2 * * *",
                            help_text="minute hour day-of-month month day-of-week, in UTC (e.g. '30 2 * * *').")
    enabled = models.BooleanField(default=True)
    owner = models.ForeignKey(settings.AUTH_USER_MODEL, null=True, blank=True, on_delete=models.SET_NULL,
                              related_name="+", help_text="Whose batches these are; empty: shared with everyone.")
    periodic_task = models.OneToOneField("django_celery_beat.PeriodicTask", null=True, blank=True, editable=False,
                                         on_delete=models.SET_NULL, related_name="+")
    last_fired_at = models.DateTimeField(null=True, blank=True, editable=False)
    last_error = models.TextField(blank=True, editable=False)
    created_at = models.DateTimeField(auto_now_add=True)
    updated_at = models.DateTimeField(auto_now=True)

    class Meta:
        ordering = ["name"]
        constraints = [
            models.CheckConstraint(condition=Q(runs_per_scenario__gte=1), name="schedule_runs_at_least_1",
                                   violation_error_message="Runs per scenario must be at least 1."),
            models.CheckConstraint(condition=Q(max_rounds__gte=1), name="schedule_rounds_at_least_1",
                                   violation_error_message="Max rounds must be at least 1."),
        ]

    def __str__(self) -> str:
        return self.name


class BenchmarkRun(models.Model):
    """One launch of a suite: buyers × scenarios as ordinary batches against one pinned opponent."""

    id = models.UUIDField(primary_key=True, default=uuid.uuid4, editable=False)
    suite = models.ForeignKey(Suite, on_delete=models.PROTECT, related_name="benchmark_runs")
    schedule = models.ForeignKey(BenchmarkSchedule, null=True, blank=True, on_delete=models.SET_NULL,
                                 related_name="benchmark_runs")
    owner = models.ForeignKey(settings.AUTH_USER_MODEL, null=True, blank=True, on_delete=models.CASCADE,
                              related_name="+")
    buyers = models.JSONField(help_text="Resolved buyer agent per configuration.")
    opponents = models.JSONField(help_text="The resolved seller agent.")
    seller_fingerprint = models.CharField(max_length=12, db_index=True)
    runs_per_scenario = models.PositiveSmallIntegerField()
    max_rounds = models.PositiveSmallIntegerField()
    base_seed = models.BigIntegerField()
    trigger = models.CharField(max_length=200, blank=True, default="",
                               help_text="The beat task id that made it, so a redelivered task makes nothing twice.")
    created_at = models.DateTimeField(auto_now_add=True)
    finished_at = models.DateTimeField(null=True, blank=True, help_text="Every batch ended and drift was checked.")

    class Meta:
        ordering = ["-created_at"]
        constraints = [models.UniqueConstraint(fields=["trigger"], condition=~Q(trigger=""),
                                               name="benchmark_run_trigger_unique")]

    def __str__(self) -> str:
        return f"{self.suite_id and self.suite.label} · {self.created_at:%Y-%m-%d %H:%M}"


class BenchmarkBatch(models.Model):
    """One batch of a benchmark run: a scenario played by one buyer configuration."""

    benchmark = models.ForeignKey(BenchmarkRun, on_delete=models.CASCADE, related_name="entries")
    batch = models.OneToOneField(Batch, on_delete=models.CASCADE, related_name="benchmark_entry")
    scenario = models.ForeignKey(SuiteScenario, on_delete=models.PROTECT, related_name="+")
    buyer_fingerprint = models.CharField(max_length=12, db_index=True)

    class Meta:
        ordering = ["benchmark", "scenario__position", "buyer_fingerprint"]
        constraints = [models.UniqueConstraint(fields=["benchmark", "scenario", "buyer_fingerprint"],
                                               name="benchmark_batch_unique")]

    def __str__(self) -> str:
        return f"{self.scenario.slug} × {self.buyer_fingerprint}"


class DriftFlag(models.Model):
    """A metric of a pinned configuration that left the CI of its previous benchmark run."""

    benchmark = models.ForeignKey(BenchmarkRun, on_delete=models.CASCADE, related_name="drift_flags")
    previous = models.ForeignKey(BenchmarkRun, on_delete=models.CASCADE, related_name="+")
    suite = models.ForeignKey(Suite, on_delete=models.CASCADE, related_name="+")
    buyer_fingerprint = models.CharField(max_length=12, db_index=True)
    seller_fingerprint = models.CharField(max_length=12)
    metric = models.CharField(max_length=32)
    mean = models.FloatField()
    low = models.FloatField()
    high = models.FloatField()
    n = models.PositiveIntegerField()
    previous_mean = models.FloatField()
    previous_low = models.FloatField()
    previous_high = models.FloatField()
    previous_n = models.PositiveIntegerField()
    created_at = models.DateTimeField(auto_now_add=True)

    class Meta:
        ordering = ["-created_at", "metric"]
        constraints = [models.UniqueConstraint(fields=["benchmark", "buyer_fingerprint", "metric"],
                                               name="drift_flag_unique")]

    def __str__(self) -> str:
        return f"drift of {self.metric} for {self.buyer_fingerprint}"

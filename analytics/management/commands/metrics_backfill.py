"""Record metrics, and queue the analysis, for completed runs that finished before analytics existed."""

from __future__ import annotations

from typing import Any

from django.core.management.base import BaseCommand

from analytics.models import RunAnalysis
from analytics.services import enqueue_analysis, metrics_backfill
from negotiation.models import NegotiationRun


class Command(BaseCommand):
    help = "Fill in RunMetrics for completed runs without them; with --analyse, queue their analysis too."

    def add_arguments(self, parser: Any) -> None:
        parser.add_argument("--batch", help="only this batch's runs")
        parser.add_argument("--analyse", action="store_true", help="also queue the analysis of unanalysed runs")

    def handle(self, *args: Any, **opts: Any) -> None:
        n = metrics_backfill(batch_id=opts.get("batch"))
        self.stdout.write(f"recorded metrics for {n} run(s)")
        if opts["analyse"]:
            qs = NegotiationRun.objects.filter(status=NegotiationRun.Status.COMPLETED).exclude(
                pk__in=RunAnalysis.objects.filter(status=RunAnalysis.Status.DONE).values("run_id"))
            if opts.get("batch"):
                qs = qs.filter(batch_id=opts["batch"])
            queued = 0
            for run_id in qs.values_list("pk", flat=True).iterator(chunk_size=500):
                enqueue_analysis(run_id)
                queued += 1
            self.stdout.write(f"queued the analysis of {queued} run(s)")

"""`manage.py replicate negotiationarena --buyer openrouter:openai/gpt-4 --seller baseline:linear --wait`.

Runs a replication suite (analytics/benchmarks/replication.py) for one buyer against one seller configuration
and prints MAMS's figure with its 95% CI beside each published one, saying whether the published
value lies inside. `--report <benchmark run id>` prints the report of an earlier run. Reproducing a
paper needs its chat models and a key; with the baselines or the fake provider the path runs too.
"""

from __future__ import annotations

import time
import uuid
from typing import Any

from django.core.exceptions import ValidationError
from django.core.management.base import BaseCommand, CommandError, CommandParser

from analytics.benchmarks.replication import replication_launch, replication_report, replication_text
from analytics.benchmarks.services import benchmark_finish
from analytics.benchmarks.suite_files import SuiteError
from analytics.benchmarks.validation import parse_buyer
from analytics.models import BenchmarkRun
from negotiation.models import Batch
from negotiation.services.errors import LimitExceeded, flatten
from negotiation.services.estimates import dry_run_report, launch_dry_run


class Command(BaseCommand):
    help = "Run a replication suite and set MAMS's figures, with CIs, beside the paper's published ones."

    def add_arguments(self, parser: CommandParser) -> None:
        parser.add_argument("suite", nargs="?", help="negotiationarena or a2a-nt (or <name>-v<N>)")
        parser.add_argument("--buyer", default=None, metavar="SPEC",
                            help="profile, profile:model, profile:model@temperature or baseline:<strategy>")
        parser.add_argument("--seller", default=None, metavar="SPEC", help="the seller, in the same forms")
        parser.add_argument("--runs", type=int, default=20, help="runs per scenario")
        parser.add_argument("--seed", type=int, default=0, help="base seed")
        parser.add_argument("--wait", action="store_true", help="wait for the workers and print the report")
        parser.add_argument("--timeout", type=float, default=3600.0, help="seconds to wait with --wait")
        parser.add_argument("--report", default=None, metavar="ID", help="print the report of this benchmark run")
        parser.add_argument("--dry-run", action="store_true",
                            help="print the estimate (calls, tokens, dollars, wall time) of every batch it would "
                                 "launch, and launch nothing")

    def handle(self, *args: Any, **opts: Any) -> None:
        if opts["report"]:
            run = BenchmarkRun.objects.filter(pk=opts["report"]).select_related("suite").first() if _uuid(
                opts["report"]) else None
            if run is None:
                raise CommandError(f"no benchmark run {opts['report']!r}")
            self.stdout.write(replication_text(replication_report(benchmark=run)))
            return
        if not opts["suite"] or not opts["buyer"] or not opts["seller"]:
            raise CommandError("give a suite, --buyer and --seller (or --report <benchmark run id>)")
        try:
            buyer = parse_buyer(opts["buyer"])
            seller = parse_buyer(opts["seller"], option="--seller")
            def launch() -> Any:
                return replication_launch(suite=opts["suite"], buyer=buyer, seller=seller, runs=opts["runs"],
                                          base_seed=opts["seed"])
            if opts["dry_run"]:
                estimate = launch_dry_run(launch)
                self.stdout.write(dry_run_report(f"{opts['suite']}, {estimate['inputs']['batches']} batches.",
                                                 estimate))
                return
            run = launch()
        except (ValueError, SuiteError) as exc:
            raise CommandError(str(exc)) from exc
        except LimitExceeded as exc:
            raise CommandError(exc.message) from exc
        except ValidationError as exc:
            problems = "; ".join(f"{k}: {' '.join(v)}" for k, v in flatten(exc).items())
            raise CommandError(f"cannot launch the replication: {problems}") from exc
        batches = Batch.objects.filter(benchmark_entry__benchmark=run)
        self.stdout.write(f"Replication run {run.pk} on {run.suite.label}: {batches.count()} batches queued. "
                          f"Report: manage.py replicate --report {run.pk}, or /analytics/replications/{run.pk}/")
        if not opts["wait"]:
            return
        deadline = time.monotonic() + opts["timeout"]
        while batches.filter(finished_at__isnull=True).exists():
            if time.monotonic() > deadline:
                raise CommandError(f"timed out after {opts['timeout']:.0f}s; is a Celery worker running (make up)? "
                                   f"The batches keep running; report later with manage.py replicate --report {run.pk}")
            time.sleep(1)
        benchmark_finish(benchmark_id=run.pk)
        self.stdout.write(replication_text(replication_report(benchmark=run)))


def _uuid(value: str) -> bool:

    try:
        uuid.UUID(str(value))
    except ValueError:
        return False
    return True

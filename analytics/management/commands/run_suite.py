"""`manage.py run_suite core --buyer local:gemma-3-270m --buyer baseline:boulware --runs 3 [--wait]`.

Launches a benchmark run through the same service as the beat schedules (ordinary batches, one
per scenario × buyer, all on the same seeds), prints what it launched and, with --wait, waits for
the Celery workers, checks drift, and prints the leaderboard against the same opponents.
"""

from __future__ import annotations

import time
from typing import Any

from django.conf import settings
from django.contrib.auth import get_user_model
from django.core.exceptions import ValidationError
from django.core.management.base import BaseCommand, CommandError, CommandParser

from analytics.benchmarks.leaderboard import agent_label, leaderboard
from analytics.benchmarks.services import benchmark_finish, benchmark_run_create
from analytics.benchmarks.suite_files import SuiteError
from analytics.benchmarks.text import leaderboard_text, table
from analytics.benchmarks.validation import parse_buyer
from analytics.models import BenchmarkRun
from negotiation.agents.fingerprint import played_fingerprint
from negotiation.management.failures import failures_report
from negotiation.models import Batch, NegotiationRun
from negotiation.services.errors import LimitExceeded, flatten
from negotiation.services.estimates import dry_run_report, launch_dry_run


class Command(BaseCommand):
    help = "Run a benchmark suite for one or more buyer configurations against pinned opponents."

    def add_arguments(self, parser: CommandParser) -> None:
        parser.add_argument("suite", help="core-v1, or core for its latest version")
        parser.add_argument("--buyer", action="append", default=[], metavar="SPEC",
                            help="profile, profile:model, profile:model@temperature or baseline:<strategy>; "
                                 "repeat for several buyers (default: the default profile)")
        parser.add_argument("--opponent", default=None, metavar="SPEC",
                            help="the sellers, in the same forms (default: the default profile's model)")
        parser.add_argument("--runs", type=int, default=3, help="runs per scenario and buyer")
        parser.add_argument("--max-rounds", type=int, default=5)
        parser.add_argument("--seed", type=int, default=0, help="base seed, the same for every buyer")
        parser.add_argument("--owner", default=None, help="username owning the batches (default: shared)")
        parser.add_argument("--no-canaries", action="store_true",
                            help="leave out the exploit canary buyers (reference rows every benchmark runs by default)")
        parser.add_argument("--wait", action="store_true", help="wait for the workers and print the leaderboard")
        parser.add_argument("--timeout", type=float, default=3600.0, help="seconds to wait with --wait")
        parser.add_argument("--dry-run", action="store_true",
                            help="print the estimate (calls, tokens, dollars, wall time) of every batch it would "
                                 "launch, and launch nothing")

    def handle(self, *args: Any, **opts: Any) -> None:
        try:
            buyers = [parse_buyer(b) for b in opts["buyer"] or [settings.LLM_DEFAULT_PROFILE]]
            opponents = parse_buyer(opts["opponent"] or settings.LLM_DEFAULT_PROFILE, option="--opponent")
        except ValueError as exc:
            raise CommandError(str(exc)) from exc
        owner = None
        if opts["owner"]:
            owner = get_user_model().objects.filter(username=opts["owner"]).first()
            if owner is None:
                raise CommandError(f"no user named {opts['owner']!r}")
        try:
            def launch() -> BenchmarkRun:
                return benchmark_run_create(suite=opts["suite"], buyers=buyers, opponents=opponents,
                                            runs_per_scenario=opts["runs"], base_seed=opts["seed"], owner=owner,
                                            max_rounds=opts["max_rounds"], canaries=not opts["no_canaries"])
            if opts["dry_run"]:
                estimate = launch_dry_run(launch)
                self.stdout.write(dry_run_report(f"{opts['suite']}, {estimate['inputs']['batches']} batches.",
                                                 estimate))
                return
            run = launch()
        except SuiteError as exc:
            raise CommandError(str(exc)) from exc
        except LimitExceeded as exc:
            raise CommandError(exc.message) from exc
        except ValidationError as exc:
            problems = "; ".join(f"{k}: {' '.join(v)}" for k, v in flatten(exc).items())
            raise CommandError(f"cannot launch the benchmark: {problems}") from exc
        self._print_launch(run)
        if opts["wait"]:
            self._wait(run, opts["timeout"])
            benchmark_finish(benchmark_id=run.pk)
            self.stdout.write("")
            self.stdout.write(leaderboard_text(leaderboard(user=None, suite=run.suite.label,
                                                           opponent=run.seller_fingerprint)))
            failures_report(stdout=self.stdout, batch_ids=list(
                Batch.objects.filter(benchmark_entry__benchmark=run).values_list("pk", flat=True)))

    def _print_launch(self, run: BenchmarkRun) -> None:
        buyers = {played_fingerprint(b, rules=run.suite.rules): agent_label(b) for b in run.buyers}
        rows: list[list[Any]] = [
                [e.scenario.slug, buyers.get(e.buyer_fingerprint, e.buyer_fingerprint), e.buyer_fingerprint,
                 ", ".join(e.scenario.items), e.batch.runs_requested * len(e.scenario.items), str(e.batch_id)]
                for e in run.entries.select_related("scenario", "batch")]
        self.stdout.write(f"Benchmark run {run.pk} on {run.suite.label} (hash {run.suite.content_hash[:12]}), "
                          f"opponents {agent_label(run.opponents)} = {run.seller_fingerprint}, base seed "
                          f"{run.base_seed}, {run.runs_per_scenario} run(s) per scenario and buyer")
        self.stdout.write(table(["scenario", "buyer", "fingerprint", "items", "runs", "batch"], rows, right=(4,)))
        total = sum(r[4] for r in rows)
        self.stdout.write(f"{len(rows)} batches, {total} negotiations queued. Leaderboard: manage.py leaderboard "
                          f"--suite {run.suite.label}, or /analytics/leaderboard/?suite={run.suite.label}")

    def _wait(self, run: BenchmarkRun, timeout: float) -> None:
        batches = Batch.objects.filter(benchmark_entry__benchmark=run)
        runs = NegotiationRun.objects.filter(batch__in=batches)
        total = runs.count()
        deadline = time.monotonic() + timeout
        last = -1
        while batches.filter(finished_at__isnull=True).exists():
            done = runs.filter(status__in=NegotiationRun.TERMINAL).count()
            if done != last:
                self.stdout.write(f"  {done}/{total} negotiations finished")
                last = done
            if time.monotonic() > deadline:
                raise CommandError(f"timed out after {timeout:.0f}s with {done}/{total} negotiations finished; is a "
                                   "Celery worker running (make up)? The batches keep running; check later with "
                                   f"manage.py leaderboard --suite {run.suite.label}")
            time.sleep(2)
        self.stdout.write(f"  {total}/{total} negotiations finished")

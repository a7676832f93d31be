"""`manage.py run_experiment`: a paired experiment from the command line, with a results table.

    manage.py run_experiment --session spec-sample --item "USB-C Cable" --runs 20 --wait \\
        --condition control='{"buyer": {"profile": "local"}}' \\
        --condition anchoring='{"buyer": {"profile": "local", "prompt_variant": "anchoring"}}'

A condition is `label=JSON`: its fields (`agents`, `temperature`, `sellers`, `styles`) or, for short,
the agents themselves. The first condition is the control. It goes through `experiment_create`, the
service the API and the admin use, so the checks and the batches are the same; with `--wait` it
polls Postgres until the workers have played every run, then prints each condition's metrics with
their 95% CIs and each condition's paired differences against the control.
"""

from __future__ import annotations

import time
import uuid
from typing import Any

from django.contrib.auth import get_user_model
from django.core.exceptions import ValidationError
from django.core.management.base import BaseCommand, CommandError, CommandParser

from analytics.research import experiment_results
from analytics.templatetags.analytics_tags import fmt
from negotiation.management.failures import failures_report
from negotiation.models import Batch, Experiment, Session
from negotiation.services.errors import ConflictError, LimitExceeded, flatten
from negotiation.services.estimates import dry_run_report, launch_dry_run
from negotiation.services.experiments import condition_parse, experiment_create

TABLE_METRICS = ("deal_rate", "price", "buyer_share", "mutual_loss", "rounds", "fallback_rate", "tokens")


def session_lookup(value: str) -> Session:
    """A session by id, or by its name when exactly one session has it."""
    try:
        return Session.objects.get(pk=uuid.UUID(value))
    except (ValueError, Session.DoesNotExist):
        pass
    found = list(Session.objects.filter(name=value)[:2])
    if len(found) == 1:
        return found[0]
    if found:
        raise CommandError(f"Several sessions are named '{value}'; pass the session's id instead.")
    raise CommandError(f"No session with id or name '{value}'.")


def results_table(experiment: Experiment) -> str:
    """Each condition's metrics (mean [95% CI]) and the paired differences against the control."""
    r = experiment_results(experiment=experiment)
    heads = [h for h in r["heads"] if h.key in TABLE_METRICS]
    width = max(14, *(len(c["label"]) + 2 for c in r["conditions"]))
    lines = [f"Experiment '{experiment.name}' ({r['status']}): {experiment.runs} runs per condition, seeds "
             f"{experiment.base_seed}..{experiment.base_seed + experiment.runs - 1}, paired by item and seed.", ""]
    lines.append("condition".ljust(width) + "".join(h.label[:24].ljust(28) for h in heads))
    for c in r["conditions"]:
        cells = []
        for h in heads:
            e = c["metrics"].get(h.key)
            cells.append("–" if e is None or e.mean is None else
                         f"{fmt(e.mean, h.fmt)} [{fmt(e.low, h.fmt)}, {fmt(e.high, h.fmt)}]")
        lines.append(c["label"].ljust(width) + "".join(cell.ljust(28) for cell in cells))
    for cmp in r["comparisons"]:
        lines += ["", f"{cmp['label']} − {cmp['against']}: {cmp['pairs']} pairs by {cmp['paired_by']}"
                      + (f"; changes the {', '.join(cmp['differs'])}" if cmp["differs"] else "")]
        for row in cmp["rows"]:
            if row["head"].key in TABLE_METRICS:
                lines.append(f"  {row['sentence']}")
    return "\n".join(lines)


class Command(BaseCommand):
    help = "Run a paired experiment: two or more conditions on the same scenarios and seeds; print a table."

    def add_arguments(self, parser: CommandParser) -> None:
        parser.add_argument("--session", required=True, help="The session's id or name.")
        parser.add_argument("--item", default="", help="One demanded item (default: every item).")
        parser.add_argument("--condition", action="append", required=True, metavar="LABEL=JSON",
                            help="Repeat for each condition; the first is the control.")
        parser.add_argument("--runs", type=int, default=10, help="Runs per condition (and per item).")
        parser.add_argument("--max-rounds", type=int, default=5)
        parser.add_argument("--base-seed", type=int, default=0)
        parser.add_argument("--name", default="", help="Default: the conditions' labels.")
        parser.add_argument("--owner", default="", help="Username to own the experiment (default: the session's).")
        parser.add_argument("--wait", action="store_true", help="Wait for the workers, then print the results.")
        parser.add_argument("--timeout", type=float, default=3600.0, help="Seconds to wait with --wait.")
        parser.add_argument("--dry-run", action="store_true",
                            help="print the estimate (calls, tokens, dollars, wall time) of every batch it would "
                                 "launch, and launch nothing")

    def handle(self, *args: Any, **opts: Any) -> None:
        session = session_lookup(opts["session"])
        try:
            conditions = [condition_parse(c) for c in opts["condition"]]
        except ValueError as exc:
            raise CommandError(str(exc)) from exc
        owner = session.owner
        if opts["owner"]:
            owner = get_user_model().objects.filter(username=opts["owner"]).first()
            if owner is None:
                raise CommandError(f"No user '{opts['owner']}'.")
        name = opts["name"] or " vs ".join(c["label"] for c in conditions)
        try:
            def launch() -> Experiment:
                return experiment_create(owner=owner, session=session, name=name[:200], conditions=conditions,
                                         runs=opts["runs"], item_name=opts["item"] or None,
                                         max_rounds=opts["max_rounds"], base_seed=opts["base_seed"])
            if opts["dry_run"]:
                estimate = launch_dry_run(launch)
                self.stdout.write(dry_run_report(f"{len(conditions)} conditions × {opts['runs']} runs on "
                                                 f"'{session}' ({opts['item'] or 'every item'}).", estimate))
                return
            experiment = launch()
        except ValidationError as exc:
            problems = "\n".join(f"  {k}: {' '.join(v)}" for k, v in flatten(exc).items())
            raise CommandError(f"The experiment was not created:\n{problems}") from exc
        except (LimitExceeded, ConflictError) as exc:
            raise CommandError(exc.message) from exc
        self.stdout.write(f"Experiment {experiment.pk}: {len(conditions)} conditions × {opts['runs']} runs on "
                          f"'{session}' ({experiment.item_name or 'every item'}).")
        if not opts["wait"]:
            self.stdout.write("Running on the workers; results: GET /api/experiments/"
                              f"{experiment.pk}/results or /analytics/experiments/{experiment.pk}/")
            return
        self._wait(experiment, opts["timeout"])
        self.stdout.write(results_table(experiment))
        failures_report(stdout=self.stdout,
                        batch_ids=list(experiment.conditions.exclude(batch=None).values_list("batch_id", flat=True)))

    def _wait(self, experiment: Experiment, timeout: float) -> None:

        deadline = time.monotonic() + timeout
        batch_ids = list(experiment.conditions.exclude(batch=None).values_list("batch_id", flat=True))
        while Batch.objects.filter(pk__in=batch_ids, status__in=[Batch.Status.QUEUED, Batch.Status.RUNNING]).exists():
            if time.monotonic() > deadline:
                raise CommandError(f"Timed out after {timeout:g}s; the batches keep running. Results so far: "
                                   f"/analytics/experiments/{experiment.pk}/")
            time.sleep(1)

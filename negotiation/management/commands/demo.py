"""`manage.py demo`: load the spec's sample session, run a batch on the workers, print the results.

It launches through `batch_create`, the same service the API uses, and waits for the Celery
workers by polling Postgres, so what it prints is exactly what the database holds.
"""

from __future__ import annotations

import os
import secrets
import sys
import time
from decimal import Decimal
from typing import Any

import httpx
from django.conf import settings
from django.contrib.auth import get_user_model
from django.core.exceptions import ValidationError
from django.core.management.base import BaseCommand, CommandError, CommandParser

from mams.celery import app
from negotiation.agents.gateway import LLMError, get_profile
from negotiation.management.failures import failures_report
from negotiation.selectors import batch_progress, batch_summary, run_buyer_share, run_rows
from negotiation.services.batches import batch_create
from negotiation.services.errors import flatten
from negotiation.services.estimates import batch_estimate, dry_run_report
from negotiation.services.launch import check_range, scenario_for
from negotiation.services.scenarios import sample_session_load


def demo_admin() -> tuple[Any, str | None]:
    """A local superuser for the admin; its password is kept in .local/admin-password."""
    User = get_user_model()  # noqa: N806
    pw_file = settings.BASE_DIR / ".local" / "admin-password"
    user = User.objects.filter(username="admin").first()
    if user is None:
        password = secrets.token_urlsafe(12)
        user = User.objects.create_superuser("admin", "admin@localhost", password)
        pw_file.parent.mkdir(parents=True, exist_ok=True)
        pw_file.write_text(password + "\n")
        pw_file.chmod(0o600)
    return user, (pw_file.read_text().strip() if pw_file.exists() else None)


def describe_agents(agents: dict[str, dict[str, str]]) -> str:
    """"buyer boulware, sellers LLM on profile local": a profile is named only where an LLM uses it."""
    parts = []
    for role, label in (("buyer", "buyer"), ("seller", "sellers")):
        spec = agents[role]
        parts.append(f"{label} LLM on profile {spec['profile']}" if spec["strategy"] == "llm"
                     else f"{label} {spec['strategy']} (no LLM)")
    return ", ".join(parts)


def admin_hint(password: str | None) -> str:
    """Where the admin is: on the port `make up` serves (MAMS_WEB_PORT), with the password only if it is known."""
    url = f"http://127.0.0.1:{os.environ.get('MAMS_WEB_PORT', '8000')}/admin/"
    if password:
        how = f"as user 'admin' with password {password} (kept in .local/admin-password)"
    else:
        how = ("as user 'admin'; its password is not saved in .local/admin-password, so set one with "
               "`.venv/bin/python manage.py changepassword admin`")
    return f"Open the admin: run `make up`, then browse {url} {how}."


def fmt(value: Any, spec: str = "") -> str:
    return "—" if value is None else format(value, spec)


class Command(BaseCommand):
    help = "Run a demo batch of negotiations on the sample session and print a table and a summary."

    def add_arguments(self, parser: CommandParser) -> None:
        parser.add_argument("--runs", type=int, default=5)
        parser.add_argument("--item", default="USB-C Cable")
        parser.add_argument("--max-rounds", type=int, default=3)
        parser.add_argument("--profile", default=settings.LLM_DEFAULT_PROFILE)
        parser.add_argument("--buyer", default="llm", help="llm, boulware, linear or conceder")
        parser.add_argument("--sellers", default="llm", help="llm, boulware, linear or conceder")
        parser.add_argument("--temperature", type=float, default=0.7)
        parser.add_argument("--seed", type=int, default=1)
        parser.add_argument("--timeout", type=float, default=1200.0, help="seconds to wait for the workers")
        parser.add_argument("--budget-usd", default=None, help="stop the batch when its spend reaches this many "
                                                               "dollars (remaining runs end cancelled)")
        parser.add_argument("--budget-tokens", type=int, default=None, help="stop the batch at this many tokens")
        parser.add_argument("--dry-run", action="store_true",
                            help="print the batch's estimate (calls, tokens, dollars, wall time) and launch nothing")

    def handle(self, *args: Any, **opts: Any) -> None:
        user, password = demo_admin()
        session = sample_session_load(owner=user)
        uses_llm = "llm" in (opts["buyer"], opts["sellers"])
        agents = {"buyer": {"strategy": opts["buyer"], "profile": opts["profile"]},
                  "seller": {"strategy": opts["sellers"], "profile": opts["profile"]},
                  "analyst": {"strategy": "llm" if uses_llm else "linear", "profile": opts["profile"]}}
        if opts["dry_run"]:
            self._dry_run(session=session, agents=agents, opts=opts)
            return
        if uses_llm:
            self._check_provider(opts["profile"])
        self._check_workers()
        try:
            batch = batch_create(session=session, item_name=opts["item"], runs=opts["runs"], agents=agents,
                                 temperature=opts["temperature"], max_rounds=opts["max_rounds"],
                                 base_seed=opts["seed"], owner=user, budget_usd=opts["budget_usd"],
                                 budget_tokens=opts["budget_tokens"])
        except ValidationError as exc:
            problems = "; ".join(f"{k}: {' '.join(v)}" for k, v in flatten(exc).items())
            raise CommandError(f"cannot launch the batch: {problems}") from exc
        self.stdout.write(f"Batch {batch.pk}: {opts['runs']} × '{opts['item']}' on session '{session}' "
                          f"({describe_agents(agents)}; max {opts['max_rounds']} rounds)")
        self._wait(batch.pk, opts["timeout"])
        self._report(batch.pk)
        failures_report(stdout=self.stdout, batch_ids=[batch.pk])
        self.stdout.write("\n" + admin_hint(password))

    def _dry_run(self, *, session: Any, agents: dict, opts: dict[str, Any]) -> None:
        """Print what `batch_create` would be asked to launch, estimated; create nothing."""
        errors: dict[str, list[str]] = {}
        check_range(errors, "runs", opts["runs"], 1, settings.MAMS_MAX_RUNS_PER_BATCH)
        check_range(errors, "max_rounds", opts["max_rounds"], 1, settings.MAMS_MAX_ROUNDS_LIMIT)
        try:
            if errors:
                raise ValidationError(errors)
            scenario_for(session=session, item_name=opts["item"])
            estimate = batch_estimate(session=session, item_name=opts["item"], runs=opts["runs"], agents=agents,
                                      max_rounds=opts["max_rounds"], temperature=opts["temperature"])
        except ValidationError as exc:
            problems = "; ".join(f"{k}: {' '.join(v)}" for k, v in flatten(exc).items())
            raise CommandError(f"cannot estimate the batch: {problems}") from exc
        self.stdout.write(dry_run_report(f"{opts['runs']} × '{opts['item']}' on session '{session}' "
                                         f"({describe_agents(agents)}; max {opts['max_rounds']} rounds)", estimate))

    def _check_provider(self, profile_name: str) -> None:
        try:
            profile = get_profile(profile_name)
        except LLMError as exc:
            raise CommandError(str(exc)) from exc
        try:
            httpx.get(f"{profile.base_url.rstrip('/')}/models", timeout=5,
                      headers={"Authorization": f"Bearer {profile.api_key}"}).raise_for_status()
        except httpx.HTTPError as exc:
            hint = (" (set MAMS_LOCAL_LLM_URL, or start it: deploy/local/stack.sh llm)"
                    if profile_name == "local" else "")
            raise CommandError(f"cannot reach LLM profile '{profile_name}' at {profile.base_url}: {exc}{hint}") from exc

    def _check_workers(self) -> None:
        deadline = time.monotonic() + 30  # a worker started a moment ago may still be connecting
        while not app.control.ping(timeout=1.0):
            if time.monotonic() > deadline:
                raise CommandError("no Celery worker answered within 30 s; start one with "
                                   "`deploy/local/stack.sh worker` and see .local/celery/w1.log")

    def _wait(self, batch_id: Any, timeout: float) -> None:
        started = time.monotonic()
        while True:
            progress = batch_progress(batch_id=batch_id)
            done = progress["completed"] + progress["failed"] + progress["cancelled"]
            total = sum(progress.values())
            if sys.stderr.isatty():
                sys.stderr.write(f"\r  {done}/{total} runs finished "
                                 f"({progress['running']} running) after {time.monotonic() - started:.0f}s")
                sys.stderr.flush()
            if done == total:
                if sys.stderr.isatty():
                    sys.stderr.write("\n")
                return
            if time.monotonic() - started > timeout:
                raise CommandError(f"the batch did not finish within {timeout:.0f}s ({done}/{total} runs done); "
                                   "see .local/celery/*.log")
            time.sleep(1.0)

    def _report(self, batch_id: Any) -> None:
        header = (f"{'run':<9} {'seed':>4} {'status':<10} {'seller':<13} {'price':>7} {'rounds':>6} "
                  f"{'buyer share':>11} {'leaks':>5} {'re-asks':>7} {'guardrails':>10} {'fallbacks':>9}  reason")
        self.stdout.write("\n" + header + "\n" + "-" * len(header))
        run: Any  # a NegotiationRun annotated with its event counts by run_rows
        for run in run_rows(batch_id=batch_id):
            outcome = getattr(run, "outcome", None)
            share = run_buyer_share(run)
            reason = outcome.reason if outcome else (run.error[:60] if run.error else "")
            self.stdout.write(
                f"{str(run.pk)[:8]:<9} {run.seed:>4} {run.status:<10} "
                f"{(outcome.chosen_handle if outcome and outcome.chosen_handle else '—'):<13} "
                f"{fmt(outcome.final_price if outcome else None, '.2f'):>7} "
                f"{fmt(outcome.rounds if outcome else None):>6} {fmt(share, '.2f'):>11} "
                f"{run.leaks:>5} {run.reasks:>7} {run.guardrails:>10} {run.fallbacks:>9}  {reason}")
        s = batch_summary(batch_id=batch_id)
        rate = "—" if s["deal_rate"] is None else f"{s['deal_rate']:.0%} ({s['deals']}/{s['finished']})"
        mean_price = "—" if s["mean_price"] is None else f"${Decimal(s['mean_price']):.2f}"
        self.stdout.write(
            f"\nBatch summary: status {s['status']}, deal rate {rate}, mean price {mean_price}, "
            f"mean rounds {fmt(s['mean_rounds'], '.1f')}, wall time {fmt(s['wall_seconds'], '.1f')}s, "
            f"failed {s['progress']['failed']}")

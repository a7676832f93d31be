"""`manage.py load_suite core`: import a suite version from suites/ (idempotent)."""

from __future__ import annotations

from typing import Any

from django.core.exceptions import ValidationError
from django.core.management.base import BaseCommand, CommandError, CommandParser

from analytics.benchmarks.services import suite_load
from analytics.benchmarks.suite_files import SuiteError, list_suites


class Command(BaseCommand):
    help = "Load a benchmark suite version into the database; loading it again is a no-op."

    def add_arguments(self, parser: CommandParser) -> None:
        parser.add_argument("suite", nargs="?", help="core-v1, or core for its latest version; omit to list suites")

    def handle(self, *args: Any, **opts: Any) -> None:
        if not opts["suite"]:
            for sf in list_suites():
                self.stdout.write(f"{sf.label}  {len(sf.scenarios)} scenarios  {sf.content_hash[:12]}  "
                                  f"{sf.description}")
            return
        try:
            suite, created = suite_load(ref=opts["suite"])
        except (SuiteError, ValidationError) as exc:
            raise CommandError(str(exc)) from exc
        verb = "loaded" if created else "already loaded (same content)"
        self.stdout.write(f"{suite.label} {verb}: {suite.scenarios.count()} scenarios, hash {suite.content_hash[:12]}")

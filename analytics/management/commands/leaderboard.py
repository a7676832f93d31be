"""`manage.py leaderboard [--suite core-v1] [--sort -buyer_share]`: the leaderboard page as text."""

from __future__ import annotations

from typing import Any

from django.core.management.base import BaseCommand, CommandError, CommandParser

from analytics.benchmarks.leaderboard import DEFAULT_SORT, SORTS, LeaderboardError, leaderboard
from analytics.benchmarks.text import leaderboard_text


class Command(BaseCommand):
    help = "Print the benchmark leaderboard of a suite version (every benchmark run, shared or not)."

    def add_arguments(self, parser: CommandParser) -> None:
        parser.add_argument("--suite", default="core", help="core-v1, or core for its latest loaded version")
        parser.add_argument("--sort", default=DEFAULT_SORT,
                            help=f"one of {', '.join(SORTS)}; '-' for descending, written --sort=-buyer_share")
        parser.add_argument("--opponent", default="", help="only this opponent (seller) fingerprint")

    def handle(self, *args: Any, **opts: Any) -> None:
        try:
            data = leaderboard(user=None, suite=opts["suite"], sort=opts["sort"], opponent=opts["opponent"])
        except LeaderboardError as exc:
            raise CommandError(str(exc)) from exc
        self.stdout.write(leaderboard_text(data))

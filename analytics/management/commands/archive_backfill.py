"""Write the audit archive of runs that ended before the archive existed, or whose archive failed.

Runs in this process (not through the worker), one run at a time, and says exactly what happened:
how many objects were written, how many were already there, how many failed and why.
"""

from __future__ import annotations

import uuid
from typing import Any

from django.core.management.base import BaseCommand, CommandError

from analytics import archive
from negotiation.models import Batch


class Command(BaseCommand):
    help = "Archive ended runs with no archived object yet (every batch, or one with --batch ID)."

    def add_arguments(self, parser: Any) -> None:
        parser.add_argument("--batch", help="only this batch's runs (its id)")

    def handle(self, *args: Any, **opts: Any) -> None:
        batch_id = opts.get("batch")
        if batch_id:
            try:
                batch_id = uuid.UUID(batch_id)
            except ValueError as exc:
                raise CommandError(f"--batch {opts['batch']!r} is not a batch id (a UUID).") from exc
            if not Batch.objects.filter(pk=batch_id).exists():
                raise CommandError(f"--batch {batch_id}: no such batch.")
        try:
            archive.target_parse(archive.settings.MAMS_ARCHIVE_URL)
        except archive.ArchiveConfigError as exc:
            raise CommandError(str(exc)) from exc
        done = failed = 0
        for run_id in archive.runs_to_archive(batch_id=batch_id).values_list("pk", flat=True).iterator(chunk_size=200):
            try:
                row = archive.run_archive(run_id=run_id, wait_for_audio=False)
            except Exception as exc:  # noqa: BLE001  (one run's failure is recorded; the rest go on)
                failed += 1
                error = archive.describe(exc)
                archive.run_archive_fail(run_id=run_id, error=error)
                self.stderr.write(f"run {run_id}: {error}")
                continue
            if row is not None:
                done += 1
                self.stdout.write(f"run {run_id}: {row.url} ({row.size} bytes, sha256 {row.sha256[:12]}…)")
        self.stdout.write(f"archived {done} run(s), {failed} failed")
        if failed:
            raise CommandError(f"{failed} run(s) could not be archived; the error is recorded on each run")

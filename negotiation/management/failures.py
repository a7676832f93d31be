"""What the command-line tools (`demo`, `run_experiment`, `run_suite`) say once their batches have
finished: how many runs failed and why, grouped by reason with counts, and a non-zero exit when
every run failed, so that neither a reader nor a script takes failed work for a result."""
from __future__ import annotations

from typing import Any

from django.core.management.base import CommandError, OutputWrapper

from negotiation.selectors import runs_failures


def failures_report(*, stdout: OutputWrapper, batch_ids: list[Any]) -> None:
    """Print the failed runs' reasons with counts; raise CommandError (exit 1) when every run failed."""
    f = runs_failures(batch_ids=batch_ids)
    if f["failed"]:
        stdout.write(f"\n{f['failed']} of {f['total']} run{'s' if f['total'] != 1 else ''} failed, by reason:")
        for reason, n in f["reasons"]:
            stdout.write(f"  {n:>4}×  {reason or 'no reason recorded'}")
    if f["total"] and f["failed"] == f["total"]:
        raise CommandError(f"every run failed ({f['failed']} of {f['total']}); no result was produced. "
                           "The reasons are listed above.")

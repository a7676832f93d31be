"""`manage.py demo` and `manage.py run_suite --wait` say how many runs failed and why, grouped by reason
with counts, and exit non-zero when every run failed (issue 13, item 1; negotiation/management/failures.py).
`run_experiment` has the same tests in test_statuses.py. A real worker plays the runs against the fake LLM
server on loopback, which answers 503 to every completion here (an outage), so an LLM role cannot play."""
from __future__ import annotations

import io
import re
import time
from typing import Any

import pytest
from django.core.management import call_command
from django.core.management.base import CommandError

from negotiation.models import Batch, NegotiationRun

pytestmark = [pytest.mark.django_db(transaction=True), pytest.mark.worker]


def _reasons(text: str) -> list[tuple[int, str]]:
    """The report's "  N×  reason" lines."""
    return [(int(n), reason) for n, reason in re.findall(r"^\s+(\d+)×\s+(.+)$", text, flags=re.M)]


def test_demo_whose_every_run_failed_prints_the_reasons_with_counts_and_exits_non_zero(
        celery_worker: Any, llm: Any) -> None:
    # given a provider in an outage and a demo whose buyer is an LLM
    llm.configure(outage_until=time.time() + 600)
    out = io.StringIO()
    # when the demo runs (as `make demo` does, with the command's own waiting)
    with pytest.raises(CommandError, match=r"every run failed \(3 of 3\)"):
        call_command("demo", "--profile", "openai-compatible", "--buyer", "llm", "--sellers", "linear",
                     "--runs", "3", "--max-rounds", "2", "--timeout", "180", stdout=out)
    # then it printed the reason once, with its count, and no run is reported as a result
    text = out.getvalue()
    assert "3 of 3 runs failed, by reason:" in text, text
    reasons = _reasons(text)
    assert sum(n for n, _ in reasons) == 3 and all("503" in r for _, r in reasons), reasons
    assert "status failed" in text and "status completed" not in text
    assert Batch.objects.get().status == "failed"
    assert set(NegotiationRun.objects.values_list("status", flat=True)) == {"failed"}


def test_demo_with_baseline_agents_reports_no_failures_and_exits_zero(celery_worker: Any, llm: Any) -> None:
    out = io.StringIO()
    call_command("demo", "--buyer", "linear", "--sellers", "boulware", "--runs", "2", "--max-rounds", "2",
                 "--timeout", "180", stdout=out)
    text = out.getvalue()
    assert "status completed" in text and "failed, by reason" not in text and _reasons(text) == []


def _suite(out: io.StringIO, *buyers: str) -> None:
    # without the exploit canaries (baselines that never fail): these tests are about the buyers' failures
    call_command("run_suite", "core", *[a for b in buyers for a in ("--buyer", b)], "--opponent", "baseline:linear",
                 "--runs", "1", "--max-rounds", "2", "--no-canaries", "--wait", "--timeout", "300", stdout=out)


def test_run_suite_whose_every_run_failed_prints_the_reasons_and_exits_non_zero(celery_worker: Any,
                                                                                 llm: Any) -> None:
    # given a provider in an outage and a suite whose only buyer is an LLM
    llm.configure(outage_until=time.time() + 600)
    out = io.StringIO()
    # when run_suite waits for its batches
    with pytest.raises(CommandError, match="every run failed"):
        _suite(out, "openai-compatible")
    # then every run failed and the report groups them under their reason with the full count
    total = NegotiationRun.objects.count()
    assert total >= 8 and set(NegotiationRun.objects.values_list("status", flat=True)) == {"failed"}
    text = out.getvalue()
    assert f"{total} of {total} runs failed, by reason:" in text, text
    reasons = _reasons(text)
    assert sum(n for n, _ in reasons) == total and all("503" in r for _, r in reasons), reasons


def test_run_suite_with_some_failed_runs_lists_them_and_exits_zero(celery_worker: Any, llm: Any) -> None:
    # given a provider in an outage: a baseline buyer plays, an LLM buyer cannot
    llm.configure(outage_until=time.time() + 600)
    out = io.StringIO()
    # when run_suite waits for both buyers' batches
    _suite(out, "baseline:linear", "openai-compatible")
    # then it exits normally, and says exactly which share failed and why
    runs = NegotiationRun.objects
    failed, total = runs.filter(status="failed").count(), runs.count()
    assert failed == total - runs.filter(status="completed").count() and 0 < failed < total
    text = out.getvalue()
    assert f"{failed} of {total} runs failed, by reason:" in text, text
    assert sum(n for n, _ in _reasons(text)) == failed

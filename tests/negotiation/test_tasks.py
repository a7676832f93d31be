"""The turn tasks' retry policy (negotiation/tasks.py::_run_guarded): LLM errors and Postgres/Redis
errors each have a budget of their own, so a long database restart does not use up a turn's LLM
retries, and an outage longer than the infrastructure budget still ends the run with a reason.

The policy is exercised directly with a stand-in for Celery's bound task (its retry count and
kwargs); tests/ops/test_restarts.py shows the same with a real worker and a real Postgres outage.
"""

from __future__ import annotations

from types import SimpleNamespace
from typing import Any

import pytest
from celery.exceptions import Retry
from django.db import OperationalError
from redis.exceptions import ConnectionError as RedisConnectionError

from negotiation import tasks
from negotiation.agents.gateway import LLMTransientError

pytestmark = pytest.mark.services  # the Redis limiter (make services)


class Task:
    """What _run_guarded reads of a bound Celery task, and what it asks of `retry`."""

    def __init__(self, retries: int, kwargs: dict[str, Any]) -> None:
        self.request = SimpleNamespace(retries=retries, kwargs=kwargs)
        self.retried: dict[str, Any] | None = None

    def retry(self, **options: Any) -> Retry:
        self.retried = options
        return Retry()


@pytest.fixture
def failed(monkeypatch: pytest.MonkeyPatch, settings: Any) -> list[str]:
    settings.MAMS_LLM_MAX_RETRIES = 2
    settings.MAMS_INFRA_MAX_RETRIES = 60
    reasons: list[str] = []
    monkeypatch.setattr(tasks.lifecycle, "run_fail", lambda *, run_id, reason: reasons.append(reason))
    return reasons


def guarded(task: Task, error: Exception, infra_retries: int) -> None:
    def turn(**_: Any) -> None:
        raise error

    tasks._run_guarded(task, turn, infra_retries, run_id="r1", round_no=1)


def test_infrastructure_retries_leave_the_llm_budget_whole(failed: list[str]) -> None:
    # given a turn retried 10 times through a database outage
    task = Task(retries=10, kwargs={"infra_retries": 10})
    # when the provider then answers 503
    with pytest.raises(Retry):
        guarded(task, LLMTransientError("503 from openai-compatible"), infra_retries=10)
    # then it is the turn's first LLM retry (1-2 s), not the end of the run
    assert not failed and task.retried is not None
    assert 1 <= task.retried["countdown"] <= 2 and "kwargs" not in task.retried


def test_llm_retries_still_run_out_after_infrastructure_retries(failed: list[str]) -> None:
    task = Task(retries=12, kwargs={"infra_retries": 10})  # 10 infrastructure retries, then 2 LLM ones
    guarded(task, LLMTransientError("503 from openai-compatible"), infra_retries=10)
    assert task.retried is None and failed == ["gave up after 2 retries: 503 from openai-compatible"]


@pytest.mark.parametrize("error", [OperationalError("the database system is shutting down"),
                                   RedisConnectionError("Error 111 connecting to 127.0.0.1:6379.")])
def test_an_infrastructure_error_retries_on_its_own_budget_with_a_capped_backoff(
        failed: list[str], error: Exception) -> None:
    # given a turn that already used up its LLM retries
    task = Task(retries=5, kwargs={"run_id": "r1", "round_no": 1, "infra_retries": 3})
    # when Postgres or Redis fails it
    with pytest.raises(Retry):
        guarded(task, error, infra_retries=3)
    # then it retries, counting the retry in its own kwargs, after 8-10 s
    assert not failed and task.retried is not None
    assert task.retried["kwargs"] == {"run_id": "r1", "round_no": 1, "infra_retries": 4}
    assert 8 <= task.retried["countdown"] <= 10
    assert all(60 <= tasks.infra_backoff(n) <= 75 for n in range(6, 60))


def test_an_outage_longer_than_the_infrastructure_budget_fails_the_run_with_a_reason(failed: list[str]) -> None:
    task = Task(retries=62, kwargs={"infra_retries": 60})
    guarded(task, OperationalError("connection refused"), infra_retries=60)
    assert task.retried is None
    assert failed == ["gave up after 60 retries over about 55 min waiting for the database or Redis "
                      "(OperationalError: connection refused). Check that Postgres and Redis are up; "
                      "MAMS_INFRA_MAX_RETRIES sets how long a turn waits."]

"""Checks of benchmark inputs, as Django validators (the schedule's service and admin form run them,
and the admin shows each next to its field) and as parsers for the command line: suite references,
buyer and opponent agent specs, cron expressions.

An agent spec is validated exactly as a batch's agents are (negotiation/agents/config.py's
pydantic `AgentSpec`, then `resolve_agents`), so a schedule that saves is a schedule whose
batches can be created: a profile without its key or an unknown model is refused here, by name.
"""

from __future__ import annotations

from typing import Any

from django.core.exceptions import ValidationError
from django_celery_beat.validators import crontab_validator
from pydantic import ValidationError as PydanticError

from analytics.benchmarks.suite_files import SuiteError, load_suite
from analytics.models.benchmarks import BUYERS_HINT
from negotiation.agents.config import BASELINES, CANARIES, FIXED_BASELINES, AgentSpec, LLMError, resolve_agents
from negotiation.agents.fingerprint import agent_fingerprint

CRON_FIELDS = ("minute", "hour", "day of month", "month", "day of week")
# The analyst of benchmark batches: the local scorers (no LLM call), so a benchmark costs only its negotiations.
BENCH_ANALYST = {"strategy": "linear"}
DEFAULT_TEMPERATURE = 0.7


def _spec_problems(spec: Any, role: str) -> list[str]:
    if not isinstance(spec, dict):
        return [f"must be an object such as {{\"profile\": \"local\"}} or {{\"strategy\": \"boulware\"}}, "
                f"got {spec!r}"]
    try:
        AgentSpec.model_validate(spec)
        agents = {"buyer": {"strategy": "linear"}, "seller": {"strategy": "linear"}, "analyst": BENCH_ANALYST,
                  role: spec}
        resolve_agents(agents, temperature=DEFAULT_TEMPERATURE)
    except PydanticError as exc:
        return [f"{'.'.join(str(p) for p in e['loc']) or 'spec'}: {e['msg'].removeprefix('Value error, ')}"
                for e in exc.errors()]
    except LLMError as exc:
        return [str(exc)]
    return []


def validate_buyers(value: Any) -> None:
    """A non-empty JSON list of buyer agent specs with no configuration twice."""
    if not isinstance(value, list) or not value:
        raise ValidationError(BUYERS_HINT)
    problems = [f"buyer {i + 1}: {p}" for i, spec in enumerate(value) for p in _spec_problems(spec, "buyer")]
    if problems:
        raise ValidationError(problems)
    prints = [agent_fingerprint(resolve_buyer(spec)) for spec in value]
    if len(set(prints)) != len(prints):
        raise ValidationError("Two buyer specs resolve to the same configuration; list each one once.")


def validate_opponents(value: Any) -> None:
    """One seller agent spec: the pinned opponent of every buyer."""
    problems = _spec_problems(value, "seller")
    if problems:
        raise ValidationError([f"opponents: {p}" for p in problems])


def validate_suite_ref(value: Any) -> None:
    try:
        load_suite(str(value))
    except SuiteError as exc:
        raise ValidationError(str(exc)) from exc


def validate_cron(value: Any) -> None:
    """Five fields, minute hour day-of-month month day-of-week, each checked as beat checks it."""
    fields = str(value or "").split()
    if len(fields) != len(CRON_FIELDS):
        raise ValidationError(f"A cron expression has 5 fields ({', '.join(CRON_FIELDS)}), e.g. '30 2 * * *' for "
                              f"02:30 UTC every day; got {len(fields)} in {value!r}.")
    problems = []
    for i, (name, part) in enumerate(zip(CRON_FIELDS, fields, strict=True)):
        tab = ["*"] * 5
        tab[i] = part
        try:
            crontab_validator(" ".join(tab))
        except ValidationError:
            problems.append(f"the {name} field {part!r} is not valid")
    if problems:
        raise ValidationError(f"Invalid cron expression {value!r}: {'; '.join(problems)}.")


def cron_fields(value: str) -> dict[str, str]:
    """A valid cron expression as CrontabSchedule's fields."""
    minute, hour, dom, month, dow = value.split()
    return {"minute": minute, "hour": hour, "day_of_month": dom, "month_of_year": month, "day_of_week": dow}


def parse_buyer(text: str, *, option: str = "--buyer") -> dict[str, Any]:
    """A command-line buyer: `profile`, `profile:model`, `profile:model@temperature` or `baseline:<strategy>`.

    The model is everything after the first ':' (OpenRouter names contain '/' and sometimes ':').
    Raises ValueError with the accepted forms when the text or the spec is not valid.
    """
    forms = ("use profile (e.g. local), profile:model (e.g. local:gemma-3-270m), profile:model@temperature, or "
             f"baseline:<strategy> with strategy one of {', '.join(BASELINES)} (or <strategy>-fixed for the nominal "
             "curve; a buyer may also be an exploit canary: " + ", ".join(CANARIES) + ")")
    raw = (text or "").strip()
    if not raw:
        raise ValueError(f"empty {option}; {forms}")
    spec: dict[str, Any] = {}
    if "@" in raw:
        raw, temp = raw.rsplit("@", 1)
        try:
            spec["temperature"] = float(temp)
        except ValueError:
            raise ValueError(f"{option} {text!r}: temperature {temp!r} is not a number; {forms}") from None
    head, _, tail = raw.partition(":")
    if head == "baseline":
        if tail not in (*BASELINES, *FIXED_BASELINES, *CANARIES):
            raise ValueError(f"{option} {text!r}: unknown baseline strategy {tail!r}; {forms}")
        spec["strategy"] = tail
    else:
        spec["profile"] = head
        if tail:
            spec["model"] = tail
    problems = _spec_problems(spec, "seller" if option in ("--opponent", "--seller") else "buyer")
    if problems:
        raise ValueError(f"{option} {text!r}: {'; '.join(problems)}")
    return spec


def resolve_buyer(spec: dict[str, Any]) -> dict[str, Any]:
    """The resolved buyer agent (model filled in, prompt version stamped) as batches will store it."""
    return resolve_agents({"buyer": spec, "seller": {"strategy": "linear"}, "analyst": BENCH_ANALYST},
                          temperature=DEFAULT_TEMPERATURE)["buyer"]


def resolve_opponents(spec: dict[str, Any]) -> dict[str, Any]:
    return resolve_agents({"buyer": {"strategy": "linear"}, "seller": spec, "analyst": BENCH_ANALYST},
                          temperature=DEFAULT_TEMPERATURE)["seller"]


# Each field of a BenchmarkSchedule and its check (the service and the admin form run them).
SCHEDULE_CHECKS = {"suite": validate_suite_ref, "buyers": validate_buyers, "opponents": validate_opponents,
                   "cron": validate_cron}

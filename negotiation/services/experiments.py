"""Paired experiments: two or more conditions on the same scenarios with the same seeds.

A condition differs from the control in one thing a researcher chooses: a model, a temperature, a
prompt variant (all in its `agents`), or a seller population (which sellers take part, and their
styles). Launching makes one ordinary batch per condition through `batch_create`, every one with
the experiment's base seed, so run i of each condition has seed base_seed + i on the same item and
the runs pair by (item, seed): common random numbers, as the compare page pairs two batches.

Everything is checked before anything is written, and the batches are made in one transaction, so
a refused experiment leaves no half of itself behind (and queues nothing).
"""

from __future__ import annotations

import json
from typing import Any

from django.conf import settings
from django.core.exceptions import ValidationError
from django.db import transaction
from django.utils import timezone

from negotiation.engine.names import name_key
from negotiation.models import Batch, Experiment, ExperimentCondition, Seller, Session, Style
from negotiation.services.batches import batch_create, batches_status
from negotiation.services.errors import ConflictError, flatten
from negotiation.services.launch import DEFAULT_TEMPERATURE, check_range, check_temperature, scenario_for

MAX_CONDITIONS = 8
LABEL_CHARS = set("abcdefghijklmnopqrstuvwxyzABCDEFGHIJKLMNOPQRSTUVWXYZ0123456789_.-")
CONDITION_KEYS = {"label", "agents", "temperature", "sellers", "styles"}


def _add(errors: dict[str, list[str]], path: str, message: str) -> None:
    errors.setdefault(path, []).append(message)


def _population(raw: dict, path: str, handles: dict[str, str], errors: dict[str, list[str]]
                ) -> tuple[list[str], dict[str, str]]:
    """A condition's sellers and style overrides, checked against the session's handles (any case)."""
    sellers, styles = raw.get("sellers") or [], raw.get("styles") or {}
    out_sellers: list[str] = []
    if not isinstance(sellers, list) or not all(isinstance(h, str) for h in sellers):
        _add(errors, f"{path}.sellers", "Must be a list of seller handles, e.g. [\"@QuickTech\", \"@CableHouse\"].")
    else:
        for h in sellers:
            if name_key(h) not in handles:
                _add(errors, f"{path}.sellers",
                     f"No seller '{h}' in this session; sellers: {', '.join(handles.values())}.")
            elif handles[name_key(h)] not in out_sellers:
                out_sellers.append(handles[name_key(h)])
    out_styles: dict[str, str] = {}
    if not isinstance(styles, dict):
        _add(errors, f"{path}.styles", 'Must be an object of handle to style, e.g. {"@QuickTech": "rude"}.')
    else:
        for h, style in styles.items():
            if name_key(str(h)) not in handles:
                _add(errors, f"{path}.styles", f"No seller '{h}' in this session.")
            elif style not in Style.values:
                _add(errors, f"{path}.styles", f"'{style}' is not a style; choose one of {', '.join(Style.values)}.")
            else:
                out_styles[handles[name_key(str(h))]] = style
    return out_sellers, out_styles


def _conditions(raw: Any, session: Session, errors: dict[str, list[str]]) -> list[dict[str, Any]]:
    """The conditions as clean dicts; problems go to errors under conditions[i].field."""
    if not isinstance(raw, list) or not 2 <= len(raw) <= MAX_CONDITIONS:
        _add(errors, "conditions", f"An experiment needs 2 to {MAX_CONDITIONS} conditions (the first is the control); "
                                   f"got {len(raw) if isinstance(raw, list) else 'none'}.")
        return []
    handles = dict(Seller.objects.filter(session=session).values_list("handle_key", "handle"))
    seen: set[str] = set()
    out = []
    for i, c in enumerate(raw):
        path = f"conditions[{i}]"
        if not isinstance(c, dict):
            _add(errors, path, "Must be an object with a label and, optionally, agents, temperature, sellers, styles.")
            continue
        for key in sorted(set(c) - CONDITION_KEYS):
            _add(errors, f"{path}.{key}", f"Unknown field; a condition has {', '.join(sorted(CONDITION_KEYS))}.")
        label = c.get("label")
        if not isinstance(label, str) or not 1 <= len(label) <= 60 or not set(label) <= LABEL_CHARS:
            _add(errors, f"{path}.label", "A label is 1–60 letters, digits and _.- (e.g. 'control', 'temp-0.2').")
        elif label.lower() in seen:
            _add(errors, f"{path}.label", f"The label '{label}' is used by another condition; labels must be unique.")
        else:
            seen.add(label.lower())
        agents = c.get("agents") or {}
        if not isinstance(agents, dict):
            _add(errors, f"{path}.agents", "Must be an object of role to agent spec (buyer, seller, analyst).")
        temperature = c.get("temperature", DEFAULT_TEMPERATURE)
        check_temperature(errors, f"{path}.temperature", temperature)
        sellers, styles = _population(c, path, handles, errors)
        out.append({"label": label, "agents": agents, "temperature": temperature, "sellers": sellers,
                    "styles": styles})
    return out


@transaction.atomic
def experiment_create(*, owner: Any, session: Session, name: str, conditions: Any, runs: int,
                      item_name: str | None = None, max_rounds: int = 5, base_seed: int = 0,
                      launch: bool = True) -> Experiment:
    """Check an experiment, store it with its conditions and (by default) launch one batch per condition.

    Raises ValidationError with messages by field path (`conditions[1].agents.buyer.profile`),
    LimitExceeded when the conditions' batches would pass the user's active-batch cap; in either
    case nothing is written and nothing is queued.
    """
    errors: dict[str, list[str]] = {}
    if not isinstance(name, str) or not name.strip() or len(name) > 200:
        _add(errors, "name", "Give the experiment a name of 1 to 200 characters.")
    check_range(errors, "runs", runs, 1, settings.MAMS_MAX_RUNS_PER_BATCH)
    check_range(errors, "max_rounds", max_rounds, 1, settings.MAMS_MAX_ROUNDS_LIMIT)
    check_range(errors, "base_seed", base_seed, 0, 2**31 - 1)
    item = (item_name or "").strip() if isinstance(item_name, str | type(None)) else None
    if item is None:
        _add(errors, "item_name", "Must be an item name (text), or empty for every demanded item.")
    elif item:
        try:
            item = scenario_for(session=session, item_name=item)["buyer"]["item_name"]
        except ValidationError as exc:
            for key, msgs in flatten(exc).items():
                errors.setdefault(key, []).extend(msgs)
    clean = _conditions(conditions, session, errors)
    if errors:
        raise ValidationError(errors)
    experiment = Experiment.objects.create(owner=owner, session=session, name=name.strip(), item_name=item or "",
                                           runs=runs, max_rounds=max_rounds, base_seed=base_seed)
    ExperimentCondition.objects.bulk_create([ExperimentCondition(experiment=experiment, position=i, **c)
                                             for i, c in enumerate(clean)])
    if launch:
        experiment_launch(experiment=experiment)
    return experiment


@transaction.atomic
def experiment_launch(*, experiment: Experiment) -> Experiment:
    """One batch per condition, all with the experiment's seeds; all of them or none.

    A condition's own problems (an unknown profile, a population that stocks nothing) come back as
    `conditions[i].<path>`. Launching twice is a ConflictError.
    """
    experiment = Experiment.objects.select_for_update().get(pk=experiment.pk)
    if experiment.launched_at is not None:
        raise ConflictError("This experiment was already launched; create a new one to run it again.",
                            field="launched_at")
    conditions = list(experiment.conditions.order_by("position"))
    if len(conditions) < 2:
        raise ValidationError({"conditions": ["An experiment needs at least 2 conditions; the first is the control."]})
    errors: dict[str, list[str]] = {}
    for i, condition in enumerate(conditions):
        population = {"sellers": condition.sellers, "styles": condition.styles}
        try:
            with transaction.atomic():
                batch = batch_create(session=experiment.session, item_name=experiment.item_name or None,
                                     runs=experiment.runs, agents=condition.agents, temperature=condition.temperature,
                                     max_rounds=experiment.max_rounds, base_seed=experiment.base_seed,
                                     owner=experiment.owner,
                                     population=population if condition.sellers or condition.styles else None)
        except ValidationError as exc:
            for key, msgs in flatten(exc).items():
                errors.setdefault(f"conditions[{i}].{key}", []).extend(msgs)
            continue
        condition.batch = batch
        condition.save(update_fields=["batch"])
    if errors:
        raise ValidationError(errors)  # the atomic block drops every batch made above, and their queueing
    experiment.launched_at = timezone.now()
    experiment.save(update_fields=["launched_at"])
    return experiment


def experiment_status(experiment: Experiment, statuses: list[str] | None = None) -> str:
    """draft (not launched), running (a batch is queued or running), cancelled, or, once every batch
    has finished, completed, partly_failed or failed (see `batches_status`)."""
    if statuses is None:
        statuses = [s for s in experiment.conditions.values_list("batch__status", flat=True) if s]
    if not statuses:
        return "draft"
    status = batches_status(statuses)
    return "running" if status == Batch.Status.QUEUED else str(status)


def condition_parse(text: str) -> dict[str, Any]:
    """`label=JSON` from the command line: the JSON is a condition's fields (agents, temperature,
    sellers, styles), or, as a shorthand, the agents themselves ({"buyer": {...}})."""
    label, sep, body = text.partition("=")
    if not sep or not label.strip():
        raise ValueError(f"'{text}': write a condition as label=JSON, e.g. control='{{\"buyer\": {{\"strategy\": "
                         "\"linear\"}}'")
    try:
        data = json.loads(body) if body.strip() else {}
    except json.JSONDecodeError as exc:
        raise ValueError(f"condition '{label}': the JSON does not parse ({exc.msg} at column {exc.colno})") from exc
    if not isinstance(data, dict):
        raise ValueError(f"condition '{label}': the JSON must be an object")
    if set(data) & {"buyer", "seller", "analyst"} and not set(data) & (CONDITION_KEYS - {"label"}):
        data = {"agents": data}
    return {"label": label.strip(), **data}

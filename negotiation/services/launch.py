"""What every launch shares: checked ranges, resolved agents, and the scenario snapshot of an item.

A batch, a reflect sequence, a live room, an experiment and an /env episode are all launched from a
session and an item with an agent configuration; they check those the same way, here, before
anything is written or queued, and each problem lands in `errors` under the field a person must fix.
Each check adds to `errors` and carries on, so a launch reports every problem at once.
"""

from __future__ import annotations

from typing import Any

from django.core.exceptions import ValidationError
from pydantic import ValidationError as PydanticError

from negotiation.agents.config import UnknownModel, resolve_agents
from negotiation.agents.gateway import LLMError, profile_probe
from negotiation.engine.names import name_key
from negotiation.models import BuyerDemand, InventoryItem, Session
from negotiation.run_context import scenario_snapshot

SEED_MAX = 2**31 - 1
DEFAULT_TEMPERATURE = 0.7


def check_range(errors: dict[str, list[str]], name: str, value: Any, low: int, high: int) -> None:
    if not isinstance(value, int) or isinstance(value, bool) or not low <= value <= high:
        errors.setdefault(name, []).append(f"Must be a whole number from {low} to {high}; got {value!r}.")


def check_seed(errors: dict[str, list[str]], name: str, value: Any) -> None:
    if isinstance(value, bool) or not isinstance(value, int) or not 0 <= value <= SEED_MAX:
        errors.setdefault(name, []).append(f"Must be a whole number from 0 to {SEED_MAX}.")


def check_temperature(errors: dict[str, list[str]], name: str, value: Any) -> float:
    """The temperature, or the default when it is refused (so the agents can still be checked)."""
    if isinstance(value, bool) or not isinstance(value, int | float) or not 0 <= value <= 2:
        errors.setdefault(name, []).append("Must be a number from 0 to 2.")
        return DEFAULT_TEMPERATURE
    return float(value)


def errors_merge(errors: dict[str, list[str]], exc: ValidationError) -> None:
    for key, messages in exc.message_dict.items():
        errors.setdefault(key, []).extend(messages)


def agents_resolve(raw: dict | None, temperature: float, errors: dict[str, list[str]]) -> dict[str, dict]:
    """Resolve a launch's agent configuration; problems go into `errors` by field path (then {}).

    Each LLM profile the agents use is also checked for reachability where the profile asks for it
    (the local server, see `profile_probe`): once per launch, never per run.
    """
    try:
        resolved = resolve_agents(raw, temperature=temperature)
        for name in dict.fromkeys(spec["profile"] for spec in resolved.values() if spec["strategy"] == "llm"):
            profile_probe(name)
        return resolved
    except PydanticError as exc:
        for err in exc.errors():
            path = ".".join(["agents", *(str(p) for p in err["loc"])])
            errors.setdefault(path, []).append(err["msg"].removeprefix("Value error, "))
    except UnknownModel as exc:
        errors.setdefault(f"agents.{exc.role}.model", []).append(str(exc))
    except LLMError as exc:
        errors.setdefault("agents", []).append(str(exc))
    return {}


def scenario_for(*, session: Session, item_name: str, population: dict | None = None) -> dict[str, Any]:
    """Check an item can be negotiated in a session and snapshot its private configuration.

    A `population` ({"sellers": [handles], "styles": {handle: style}}) keeps only the listed sellers
    and overrides their styles in the snapshot, so the runs play exactly that population.
    """
    demand = BuyerDemand.objects.filter(session=session, item_key=name_key(item_name)).first()
    if demand is None:
        known = ", ".join(session.demands.values_list("item_name", flat=True)) or "none"
        raise ValidationError({"item_name": [f"The buyer has no demand for '{item_name}'. Demanded items: {known}."]})
    inventory = list(InventoryItem.objects.filter(seller__session=session, item_key=demand.item_key)
                     .select_related("seller").order_by("seller__handle"))
    if not inventory:
        raise ValidationError({"item_name": [f"No seller in this session stocks '{demand.item_name}'; add it to a "
                                             "seller's inventory first."]})
    snapshot = scenario_snapshot(demand=demand, inventory=inventory)
    return population_apply(snapshot, population) if population else snapshot


def scenario_check(errors: dict[str, list[str]], *, session: Session, item_name: str,
                   population: dict | None = None) -> dict[str, Any]:
    """`scenario_for`, its problems added to `errors` (then {})."""
    try:
        return scenario_for(session=session, item_name=item_name, population=population)
    except ValidationError as exc:
        errors_merge(errors, exc)
        return {}


def population_apply(snapshot: dict[str, Any], population: dict) -> dict[str, Any]:
    """The snapshot with only the population's sellers (all when none are listed), styles overridden."""
    wanted = {name_key(h) for h in population.get("sellers") or []}
    styles = {name_key(h): s for h, s in (population.get("styles") or {}).items()}
    sellers = [{**s, "style": styles.get(name_key(s["handle"]), s["style"])} for s in snapshot["sellers"]
               if not wanted or name_key(s["handle"]) in wanted]
    if not sellers:
        item = snapshot["buyer"]["item_name"]
        raise ValidationError({"sellers": [f"No seller of this population stocks '{item}'; stocked by: "
                                           f"{', '.join(s['handle'] for s in snapshot['sellers'])}."]})
    return {**snapshot, "sellers": sellers}

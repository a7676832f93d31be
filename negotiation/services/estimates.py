"""What a batch will cost before it is launched: calls, tokens, dollars and wall time, with the
assumptions that produced them, so a lab on a fixed budget can decide before it spends.

The figures are upper bounds, by construction: every run is assumed to use all `max_rounds`, the
buyer to address every seller every round, and each run to get its post-deal analysis. Tokens per
call come from the prompt sizes measured with MAMS's own prompts (see the constants), completion
tokens are capped by each call's max_tokens. Wall time is the larger of calls / request limit and
tokens / token limit for each (profile, model), under the limits known now: those configured for
the profile and those the provider last stated in its headers (the lower of the two); with no
limit known it is left out, and the answer says so. Dollars use negotiation/agents/prices.py;
a model without a price leaves dollars out and is named.
"""

from __future__ import annotations

from collections.abc import Callable
from decimal import ROUND_HALF_UP, Decimal
from typing import Any

from django.conf import settings
from django.core.exceptions import ValidationError
from django.db import transaction
from django.db.models.signals import post_save

from negotiation.agents.decide import CHAT_MAX_TOKENS, COMPLETION_MAX_TOKENS
from negotiation.agents.gateway import get_profile
from negotiation.agents.limiter import emission_interval, limiter_for
from negotiation.agents.prices import PRICES_AS_OF, PriceTableError, price_for
from negotiation.models import Batch, Session
from negotiation.services.launch import agents_resolve

# Prompt tokens per call, measured (characters / 4, as the fake provider counts) over the 5,397 agent
# calls and 819 analyses `make bench` recorded with MAMS's chat prompts on the load sample session
# (4 rounds; the transcript grows each round, so these are means over rounds): buyer 325, seller 217,
# analysis 465. Completion tokens are an assumption, not a measurement (the fake's scripted answers,
# ~25 tokens, are terser than a model that also writes its reasoning): 120 per agent answer, 300 per
# analysis, capped by each call's max_tokens.
PROMPT_TOKENS_PER_CALL = {"buyer": 330, "seller": 220, "analyst": 470}
COMPLETION_TOKENS_PER_AGENT_CALL = 120
COMPLETION_TOKENS_PER_ANALYSIS = 300


def batch_estimate(*, session: Session, item_name: str | None, runs: int, agents: dict | None,
                   max_rounds: int, temperature: float = 0.7) -> dict[str, Any]:
    """The estimate of a batch `batch_create` would make from the same arguments; creates nothing."""
    errors: dict[str, list[str]] = {}
    resolved = agents_resolve(agents, float(temperature), errors)
    if errors:
        raise ValidationError(errors)
    n_sellers = session.sellers.count()
    n_items = 1 if item_name else session.demands.count()
    total_runs = runs * n_items
    return _estimate(resolved=resolved, total_runs=total_runs, seller_slots=total_runs * n_sellers,
                     max_rounds=max_rounds, inputs={"sellers": n_sellers, "items": n_items})


def _estimate(*, resolved: dict, total_runs: int, seller_slots: int, max_rounds: int, inputs: dict[str, Any]
              ) -> dict[str, Any]:
    """The estimate of `total_runs` runs with these resolved agents; `seller_slots` is the runs' sellers
    summed (a run's sellers each answer every round, at most)."""
    calls_total = {"buyer": max_rounds * total_runs, "seller": max_rounds * seller_slots,
                   "analyst": total_runs if settings.MAMS_ANALYSIS_ENABLED else 0}
    calls_per_run = {"buyer": max_rounds, "seller": max_rounds * seller_slots // max(total_runs, 1),
                     "analyst": 1 if settings.MAMS_ANALYSIS_ENABLED else 0}
    groups: dict[tuple[str, str], dict[str, int]] = {}
    dollars = Decimal(0)
    unpriced: list[str] = []
    for role, calls in calls_total.items():
        spec = resolved[role]
        if spec["strategy"] != "llm" or not calls:
            continue
        chat = spec.get("prompt_format", "chat") == "chat"
        prompt = PROMPT_TOKENS_PER_CALL[role]
        if role == "analyst":
            completion = COMPLETION_TOKENS_PER_ANALYSIS
        else:
            completion = min(COMPLETION_TOKENS_PER_AGENT_CALL, CHAT_MAX_TOKENS if chat else COMPLETION_MAX_TOKENS)
        group = groups.setdefault((spec["profile"], spec["model"]),
                                  {"calls": 0, "prompt_tokens": 0, "completion_tokens": 0})
        group["calls"] += calls
        group["prompt_tokens"] += calls * prompt
        group["completion_tokens"] += calls * completion
        try:
            price = price_for(spec["model"])
        except PriceTableError as exc:
            raise ValidationError({"agents": [str(exc)]}) from None
        if price is None:
            unpriced.append(spec["model"])
        else:
            dollars += price.cost(prompt_tokens=calls * prompt, completion_tokens=calls * completion)
    per_model = []
    wall: float | None = 0.0
    for (profile_name, model), group in groups.items():
        limits = _known_limits(profile_name, model)
        tokens = group["prompt_tokens"] + group["completion_tokens"]
        bounds = []
        if limits["requests_per_minute"]:
            bounds.append(group["calls"] / limits["requests_per_minute"] * 60)
        if limits["tokens_per_minute"]:
            bounds.append(tokens / limits["tokens_per_minute"] * 60)
        seconds = max(bounds) if bounds else None
        wall = None if wall is None or seconds is None else max(wall, seconds)
        per_model.append({"profile": profile_name, "model": model, **group, "tokens": tokens, **limits,
                          "wall_seconds": None if seconds is None else round(seconds, 1)})
    calls = sum(g["calls"] for g in groups.values())
    tokens = sum(g["prompt_tokens"] + g["completion_tokens"] for g in groups.values())
    return {
        "runs": total_runs,
        "calls": calls,
        "prompt_tokens": sum(g["prompt_tokens"] for g in groups.values()),
        "completion_tokens": sum(g["completion_tokens"] for g in groups.values()),
        "tokens": tokens,
        "dollars": None if unpriced else str(dollars.quantize(Decimal("0.01"), rounding=ROUND_HALF_UP)),
        "unpriced_models": sorted(set(unpriced)),
        "wall_seconds": None if wall is None or not groups else round(wall, 1),
        "by_model": per_model,
        "inputs": {
            "upper_bound": "every run uses all max_rounds, the buyer addresses every seller every round, and "
                           "every run is analysed",
            **inputs, "max_rounds": max_rounds, "calls_per_run": calls_per_run,
            "prompt_tokens_per_call": PROMPT_TOKENS_PER_CALL,
            "completion_tokens_per_agent_call": COMPLETION_TOKENS_PER_AGENT_CALL,
            "completion_tokens_per_analysis": COMPLETION_TOKENS_PER_ANALYSIS,
            "completion_tokens_measured": False,
            "prices": {m: _price_text(m) for m in sorted({m for _, m in groups})},
            "prices_as_of": PRICES_AS_OF,
        },
    }


def _price_text(model: str) -> dict[str, str] | None:
    price = price_for(model)
    if price is None:
        return None
    return {"input_per_million": str(price.input_per_million), "output_per_million": str(price.output_per_million),
            "source": price.source}


def _known_limits(profile_name: str, model: str) -> dict[str, Any]:
    """Per-minute limits for (profile, model): the lower of the configured and the provider-stated."""
    profile = get_profile(profile_name)
    interval = emission_interval(profile.rate)
    configured = {"requests": 60 / interval if interval else None, "tokens": profile.token_limits.tokens}
    try:
        stated = limiter_for(settings.REDIS_URL).provider_limits(f"{profile_name}:{model}")
    except Exception:  # noqa: BLE001 - an estimate without Redis still has the configured limits
        stated = {}
    known = {}
    for resource in ("requests", "tokens"):
        values = [v for v in (configured[resource], stated.get(resource)) if v]
        known[resource] = min(values) if values else None
    return {"requests_per_minute": known["requests"], "tokens_per_minute": known["tokens"],
            "limits_from": {r: ("provider" if stated.get(r) and (not configured[r] or stated[r] <= (configured[r] or 0))
                                else "configured" if configured[r] else None) for r in ("requests", "tokens")}}


def estimate_lines(estimate: dict[str, Any]) -> list[str]:
    """The estimate in words, one line each: the launch form and the commands' --dry-run show these."""
    dollars = (f"${estimate['dollars']}" if estimate["dollars"] is not None
               else f"unknown (no price for {', '.join(estimate['unpriced_models'])}: add it to "
                    "MAMS_MODEL_PRICES_JSON)")
    wall = (f"{estimate['wall_seconds']} s under the known limits" if estimate["wall_seconds"] is not None
            else "unknown (no request or token limit is known for a model)")
    inputs = estimate["inputs"]
    lines = [f"{estimate['runs']} runs, at most {estimate['calls']} LLM calls, "
             f"{estimate['tokens']} tokens ({estimate['prompt_tokens']} prompt, "
             f"{estimate['completion_tokens']} completion)",
             f"cost at most {dollars} (prices as of {inputs['prices_as_of']})",
             f"wall time at least {wall}"]
    for g in estimate["by_model"]:
        limits = ", ".join(f"{g[k]:g} {k.split('_')[0]}/min ({g['limits_from'][k.split('_')[0]]})"
                           for k in ("requests_per_minute", "tokens_per_minute") if g[k])
        lines.append(f"  {g['profile']} / {g['model']}: {g['calls']} calls, {g['tokens']} tokens"
                     f"{'; limits ' + limits if limits else '; no limit known'}")
    lines.append(f"assumes: {inputs['upper_bound']}; prompt tokens per call {inputs['prompt_tokens_per_call']} "
                 f"(measured); completion tokens {inputs['completion_tokens_per_agent_call']} per agent answer and "
                 f"{inputs['completion_tokens_per_analysis']} per analysis (assumed, not measured)")
    return lines


def dry_run_report(what: str, estimate: dict[str, Any]) -> str:
    """A command's --dry-run output: what would have been launched, then the estimate's lines."""
    return "\n".join([f"Dry run, nothing launched: {what}", *(f"  {line}" for line in estimate_lines(estimate))])


def launch_dry_run(launch: Callable[[], Any]) -> dict[str, Any]:
    """What a launch would cost, launching nothing: `launch` (an experiment, a suite, a replication: any
    code that makes batches through batch_create) runs with every check it has, in a transaction that
    is then rolled back, so nothing it wrote stays and nothing it queued after commit is sent. Each
    batch it made is estimated from its runs as made (their sellers, their resolved agents), and the
    estimates are added up. Errors the launch raises propagate, as they would without the dry run."""
    made: list[Batch] = []

    def collect(sender: Any, instance: Batch, created: bool, **kwargs: Any) -> None:
        if created:
            made.append(instance)

    class _Rollback(Exception):
        pass

    post_save.connect(collect, sender=Batch, weak=False, dispatch_uid="launch_dry_run")
    try:
        with transaction.atomic():
            launch()
            parts = []
            for batch in made:
                slots = sum(len(sc.get("sellers", [])) for sc in batch.runs.values_list("scenario", flat=True))
                total = batch.runs.count()
                parts.append(_estimate(resolved=batch.agents, total_runs=total, seller_slots=slots,
                                       max_rounds=batch.max_rounds, inputs={"batches": 1}))
            estimate = estimate_combine(parts)
            raise _Rollback
    except _Rollback:
        pass
    finally:
        post_save.disconnect(sender=Batch, dispatch_uid="launch_dry_run")
    return estimate


def estimate_combine(parts: list[dict[str, Any]]) -> dict[str, Any]:
    """Several batches' estimates as one: sums, per (profile, model) merged, wall time from the merged
    groups under the same limits (batches launched together share them)."""
    by_model: dict[tuple[str, str], dict[str, Any]] = {}
    for part in parts:
        for g in part["by_model"]:
            m = by_model.setdefault((g["profile"], g["model"]), {**g, "calls": 0, "prompt_tokens": 0,
                                                                  "completion_tokens": 0, "tokens": 0})
            for k in ("calls", "prompt_tokens", "completion_tokens", "tokens"):
                m[k] += g[k]
    wall: float | None = 0.0
    for m in by_model.values():
        bounds = [b for b in ((m["calls"] / m["requests_per_minute"] * 60) if m["requests_per_minute"] else None,
                              (m["tokens"] / m["tokens_per_minute"] * 60) if m["tokens_per_minute"] else None)
                  if b is not None]
        m["wall_seconds"] = round(max(bounds), 1) if bounds else None
        wall = None if wall is None or m["wall_seconds"] is None else max(wall, m["wall_seconds"])
    unpriced = sorted({u for p in parts for u in p["unpriced_models"]})
    dollars = None if unpriced else str(sum((Decimal(p["dollars"]) for p in parts), Decimal(0)))
    inputs = dict(parts[0]["inputs"]) if parts else {
        "upper_bound": "", "prices_as_of": PRICES_AS_OF, "prompt_tokens_per_call": PROMPT_TOKENS_PER_CALL,
        "completion_tokens_per_agent_call": COMPLETION_TOKENS_PER_AGENT_CALL,
        "completion_tokens_per_analysis": COMPLETION_TOKENS_PER_ANALYSIS}
    inputs.update({"batches": len(parts), "prices": {k: v for p in parts for k, v in p["inputs"]["prices"].items()}})
    inputs.pop("calls_per_run", None)
    return {"runs": sum(p["runs"] for p in parts), "calls": sum(p["calls"] for p in parts),
            "prompt_tokens": sum(p["prompt_tokens"] for p in parts),
            "completion_tokens": sum(p["completion_tokens"] for p in parts),
            "tokens": sum(p["tokens"] for p in parts), "dollars": dollars, "unpriced_models": unpriced,
            "wall_seconds": None if wall is None or not by_model else round(wall, 1),
            "by_model": list(by_model.values()), "inputs": inputs}

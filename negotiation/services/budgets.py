"""A batch's spend and its budget: what its LLM calls cost, and stopping it when the budget is reached.

Spend is summed from recorded usage and priced with negotiation/agents/prices.py in ONE function,
`spend_of`, whatever the source of the per-model token sums. The usage is every LLM call MAMS makes
for the batch: each Message row's model, prompt and completion tokens (the agent turns), plus what
other apps register with `on_batch_usage` (analytics: the post-run analyst's calls, which a lab on a
fixed budget pays for too; `negotiation` cannot import analytics, so analytics registers its sums).
`batch_spend` reads them from Postgres (the batch page, the admin and the API), and the budget check
reads the same sums from a Redis hash that every recorded call increments (`usage_record_on_commit`;
one HGETALL per turn, only for batches with a budget; a SUM over a large batch's messages on every
turn would not be cheap). If Redis has lost the hash it is rebuilt from Postgres, registered usage
included.

When the spend reaches a budget, no new turn starts: the turn that sees it cancels its run, marks
the batch `cancelled` with stop_reason "budget reached" and cancels its queued runs with that
reason; turns already in flight finish and are recorded (so the final spend may pass the budget by
at most those turns, plus the analyses already calling). An analysis that would start after the
budget is reached does not call its LLM (`budget_allows_call`; analytics uses its local scorers).
"""

from __future__ import annotations

import logging
import math
from collections.abc import Callable
from dataclasses import dataclass, field
from decimal import Decimal, InvalidOperation
from typing import Any

from django.db import transaction
from django.db.models import Sum
from django.utils import timezone
from redis.exceptions import RedisError

from negotiation.agents.prices import PriceTableError, price_for
from negotiation.models import Batch, Message, NegotiationRun
from negotiation.services import events
from negotiation.services.lifecycle import batch_refresh, run_cancel

log = logging.getLogger(__name__)

STOP_REASON = "budget reached"
MAX_BUDGET_USD = Decimal("100000")
MAX_BUDGET_TOKENS = 10_000_000_000
USAGE_TTL_SECONDS = 30 * 24 * 3600


@dataclass(frozen=True)
class Spend:
    prompt_tokens: int = 0
    completion_tokens: int = 0
    usd: Decimal | None = Decimal(0)  # None when a model with usage has no price
    unpriced_models: tuple[str, ...] = field(default_factory=tuple)

    @property
    def tokens(self) -> int:
        return self.prompt_tokens + self.completion_tokens

    def as_dict(self) -> dict[str, Any]:
        return {"prompt_tokens": self.prompt_tokens, "completion_tokens": self.completion_tokens,
                "tokens": self.tokens, "usd": None if self.usd is None else str(self.usd),
                "unpriced_models": list(self.unpriced_models)}


def spend_of(usage: dict[str, tuple[int, int]]) -> Spend:
    """The one place spend is summed and priced: {model: (prompt_tokens, completion_tokens)} -> Spend."""
    usd: Decimal | None = Decimal(0)
    unpriced = []
    for model, (prompt, completion) in sorted(usage.items()):
        if not prompt and not completion:
            continue
        try:
            price = price_for(model)
        except PriceTableError:
            price = None
        if price is None:
            unpriced.append(model)
            usd = None
        elif usd is not None:
            usd += price.cost(prompt_tokens=prompt, completion_tokens=completion)
    return Spend(prompt_tokens=sum(p for p, _ in usage.values()), completion_tokens=sum(c for _, c in usage.values()),
                 usd=usd, unpriced_models=tuple(unpriced))


UsageSource = Callable[[Any], dict[str, tuple[int, int]]]
_usage_sources: list[UsageSource] = []


def on_batch_usage(source: UsageSource) -> None:
    """Count `source(batch_id) -> {model: (prompt_tokens, completion_tokens)}` (recorded in Postgres) in
    every batch's spend (once per source). Its calls must also be added to the Redis sums as they are
    recorded (`usage_record_on_commit`), so the budget check sees them."""
    if source not in _usage_sources:
        _usage_sources.append(source)


def _db_usage(batch_id: Any) -> dict[str, tuple[int, int]]:
    rows = (Message.objects.filter(run__batch_id=batch_id).values("llm_model")
            .annotate(p=Sum("prompt_tokens"), c=Sum("completion_tokens")))
    usage: dict[str, tuple[int, int]] = {}
    for r in rows:
        p, c = usage.get(r["llm_model"], (0, 0))
        usage[r["llm_model"]] = (p + (r["p"] or 0), c + (r["c"] or 0))
    for source in _usage_sources:  # analytics: the post-run analyst's calls
        for model, (sp, sc) in source(batch_id).items():
            p, c = usage.get(model, (0, 0))
            usage[model] = (p + sp, c + sc)
    return usage


def batch_spend(*, batch_id: Any) -> Spend:
    """What a batch's recorded LLM calls cost (from Postgres): for the batch page, the admin and the API."""
    return spend_of(_db_usage(batch_id))


# --- the per-turn check, on Redis -------------------------------------------------------------

def _key(batch_id: Any) -> str:
    return f"mams:batch-usage:{batch_id}"


def usage_record_on_commit(*, batch_id: Any, model: str, prompt_tokens: int, completion_tokens: int) -> None:
    """After the call's record commits (a turn's message, an analysis), add its usage to the batch's
    Redis sums (used only by the check)."""
    if not batch_id or not (prompt_tokens or completion_tokens):
        return

    def add() -> None:
        try:
            pipe = events.redis_client().pipeline(transaction=True)
            pipe.hincrby(_key(batch_id), f"p:{model}", prompt_tokens)
            pipe.hincrby(_key(batch_id), f"c:{model}", completion_tokens)
            pipe.expire(_key(batch_id), USAGE_TTL_SECONDS)
            pipe.execute()
        except RedisError:
            log.warning("batch %s: usage not added to the Redis sums; the budget check will rebuild them", batch_id)
            try:
                events.redis_client().delete(_key(batch_id))
            except RedisError:
                pass

    transaction.on_commit(add)


def usage_seed(batch_id: Any) -> None:
    """Start a budgeted batch's Redis sums at zero (`seeded` tells a lost hash from an empty one)."""
    events.redis_client().hset(_key(batch_id), "seeded", 1)
    events.redis_client().expire(_key(batch_id), USAGE_TTL_SECONDS)


def _live_usage(batch_id: Any) -> dict[str, tuple[int, int]]:
    raw = events.redis_client().hgetall(_key(batch_id))
    if not raw:  # lost (Redis restarted, or a failed add deleted it): rebuild from the recorded usage
        usage = _db_usage(batch_id)
        mapping: dict[Any, Any] = {"seeded": 1}  # redis-py types the keys and values as a broad union
        for model, (p, c) in usage.items():
            mapping[f"p:{model}"], mapping[f"c:{model}"] = p, c
        events.redis_client().hset(_key(batch_id), mapping=mapping)
        events.redis_client().expire(_key(batch_id), USAGE_TTL_SECONDS)
        return usage
    usage = {}
    for k, v in raw.items():
        k = k.decode() if isinstance(k, bytes) else k
        kind, _, model = k.partition(":")
        if kind not in ("p", "c"):
            continue
        p, c = usage.get(model, (0, 0))
        usage[model] = (p + int(v), c) if kind == "p" else (p, c + int(v))
    return usage


def budget_reached(spend: Spend, *, budget_usd: Decimal | None, budget_tokens: int | None) -> bool:
    if budget_tokens is not None and spend.tokens >= budget_tokens:
        return True
    # An unpriced model cannot be in a batch with a dollar budget (batch_create refuses it); if the
    # price table lost it since, the spend is unknown and the batch stops rather than spend blind.
    return budget_usd is not None and (spend.usd is None or spend.usd >= budget_usd)


def _live_spend(batch_id: Any) -> Spend:
    try:
        return spend_of(_live_usage(batch_id))
    except RedisError:
        return batch_spend(batch_id=batch_id)  # slower, still exact


def budget_allows_turn(*, run_id: Any, batch_id: Any, budget_usd: Decimal | None, budget_tokens: int | None) -> bool:
    """Checked before a turn's LLM call: True to play it; False after stopping the batch (budget reached)."""
    if budget_usd is None and budget_tokens is None:
        return True
    if not budget_reached(_live_spend(batch_id), budget_usd=budget_usd, budget_tokens=budget_tokens):
        return True
    batch_stop_for_budget(batch_id=batch_id, run_id=run_id)
    return False


def batch_budget(batch_id: Any) -> dict[str, Any] | None:
    """The batch's budgets, or None when it has none (or there is no batch): read once by a caller
    outside the turns and passed to the two functions below."""
    found = Batch.objects.filter(pk=batch_id).values("budget_usd", "budget_tokens").first() if batch_id else None
    if found is None or (found["budget_usd"] is None and found["budget_tokens"] is None):
        return None
    return {"budget_usd": found["budget_usd"], "budget_tokens": found["budget_tokens"]}


def budget_allows_call(*, batch_id: Any, budget: dict[str, Any] | None) -> bool:
    """Checked before an LLM call outside the turns (the post-run analyst): False when the batch has a
    budget (`batch_budget`) and its spend has reached it. It stops nothing: the next turn's check does that."""
    return budget is None or not budget_reached(_live_spend(batch_id), **budget)


def call_usage_record_on_commit(*, batch_id: Any, budget: dict[str, Any] | None, model: str, prompt_tokens: int,
                                completion_tokens: int) -> None:
    """For a call recorded outside the turns (registered with `on_batch_usage`): add it to the Redis sums
    after its record commits, when the batch has a budget (`batch_budget`; only the budget check reads them)."""
    if budget is not None:
        usage_record_on_commit(batch_id=batch_id, model=model, prompt_tokens=prompt_tokens,
                               completion_tokens=completion_tokens)


def batch_stop_for_budget(*, batch_id: Any, run_id: Any = None) -> None:
    """Mark the batch stopped by its budget, cancel its queued runs and `run_id` with the reason."""
    with transaction.atomic():
        Batch.objects.filter(pk=batch_id, status__in=Batch.ACTIVE).update(
            status=Batch.Status.CANCELLED, stop_reason=STOP_REASON)
        NegotiationRun.objects.filter(batch_id=batch_id, status=NegotiationRun.Status.QUEUED).update(
            status=NegotiationRun.Status.CANCELLED, ended_at=timezone.now(), error=STOP_REASON)
    if run_id is not None:
        run_cancel(run_id=run_id, reason=STOP_REASON)
    batch_refresh(batch_id=batch_id)


# --- input checks -------------------------------------------------------------------------------

def budget_check(errors: dict[str, list[str]], *, budget_usd: Any, budget_tokens: Any,
                 resolved: dict) -> tuple[Decimal | None, int | None]:
    """Validate a launch's budgets into `errors` by field; returns them as stored (None when not set)."""
    usd: Decimal | None = None
    tokens: int | None = None
    if budget_usd is not None:
        try:
            usd = Decimal(str(budget_usd)) if not isinstance(budget_usd, bool) else None
        except (InvalidOperation, ValueError):
            usd = None
        if usd is None or not usd.is_finite() or not Decimal("0.000001") <= usd <= MAX_BUDGET_USD \
                or usd != usd.quantize(Decimal("0.000001")):
            errors.setdefault("budget_usd", []).append(
                f"Must be a number of dollars above 0 and at most {MAX_BUDGET_USD} (at most 6 decimals); "
                f"got {budget_usd!r}.")
            usd = None
        else:
            for role, spec in resolved.items():  # the analyst too: its calls are in the spend
                if spec.get("strategy") != "llm":
                    continue
                try:
                    price = price_for(spec["model"])
                except PriceTableError as exc:
                    errors.setdefault("budget_usd", []).append(str(exc))
                    continue
                if price is None:
                    errors.setdefault("budget_usd", []).append(
                        f"The {role}'s model {spec['model']!r} has no price, so a dollar budget cannot be kept; "
                        "add its price to MAMS_MODEL_PRICES_JSON "
                        '({"model": {"input": dollars per million, "output": dollars per million}}) '
                        "or use budget_tokens.")
    if budget_tokens is not None:
        ok = isinstance(budget_tokens, int) and not isinstance(budget_tokens, bool)
        if not ok and isinstance(budget_tokens, float) and math.isfinite(budget_tokens) and budget_tokens.is_integer():
            budget_tokens, ok = int(budget_tokens), True
        if not ok or not 1 <= budget_tokens <= MAX_BUDGET_TOKENS:
            errors.setdefault("budget_tokens", []).append(
                f"Must be a whole number of tokens from 1 to {MAX_BUDGET_TOKENS}; got {budget_tokens!r}.")
        else:
            tokens = budget_tokens
    return usd, tokens

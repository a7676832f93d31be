"""Metric definitions, each once, as pure functions with the formula in the docstring.

No Django here: the same functions score a run when it finishes (analytics/services.py stores the
per-run values), compare two batches, and are tested on hand-worked examples without a database.
Prices are `Decimal` (cents, like the columns they come from); shares and rates are floats.

The bootstrap lives here too. It resamples runs (the unit of replication) with a seeded numpy
generator, so the same values and seed always give the same interval. A resampled mean depends
only on how many times each run was drawn, so every column of a dashboard is resampled at once:
one matrix of draw counts, one matrix product (see `bootstrap_many`).
"""

from __future__ import annotations

from collections.abc import Callable, Iterable, Mapping, Sequence
from dataclasses import dataclass
from decimal import Decimal
from typing import Any, cast

import numpy as np

from negotiation.engine.types import EventKind

# --- surplus on the ZOPA ------------------------------------------------------------------------


def buyer_surplus_share(*, price: Decimal, max_price: Decimal, least_price: Decimal) -> Decimal | None:
    """Buyer's share of the ZOPA on a deal: (max_price − p) / (max_price − least_price_of_chosen_seller).

    Undefined (None) when the ZOPA is <= 0. 1 means the buyer paid the seller's floor, 0 its own max.
    """
    zopa = max_price - least_price
    if zopa <= 0:
        return None
    return (max_price - price) / zopa


def seller_surplus_share(*, price: Decimal, max_price: Decimal, least_price: Decimal) -> Decimal | None:
    """Seller's share of the ZOPA on a deal: 1 − buyer_surplus_share; None when the ZOPA is <= 0."""
    share = buyer_surplus_share(price=price, max_price=max_price, least_price=least_price)
    return None if share is None else 1 - share


def feasible_floor(*, max_price: Decimal, least_prices: Iterable[Decimal]) -> Decimal | None:
    """The cheapest deal possible: min(least_price over sellers with least_price <= max_price), or None."""
    feasible = [p for p in least_prices if p <= max_price]
    return min(feasible) if feasible else None


def best_zopa(*, max_price: Decimal, least_prices: Iterable[Decimal]) -> Decimal | None:
    """Width of the widest ZOPA in the room: max_price − min(least_price over all sellers).

    May be <= 0 (no seller can meet the buyer's max); None when there are no sellers.
    """
    floors = list(least_prices)
    return max_price - min(floors) if floors else None


def selection_regret(*, price: Decimal | None, max_price: Decimal, least_prices: Iterable[Decimal]
                     ) -> Decimal | None:
    """Money left on the table by picking this seller: p − min(least_price over sellers with least_price <= max_price).

    0 when the buyer paid the lowest floor in the room. None on no deal, or when no seller was
    feasible (then a deal broke a guardrail and regret is not meaningful).
    """
    if price is None:
        return None
    floor = feasible_floor(max_price=max_price, least_prices=least_prices)
    return None if floor is None else price - floor


def mutual_loss(*, deal: bool, max_price: Decimal, least_prices: Iterable[Decimal]) -> bool:
    """No deal, although some seller's least_price <= max_price (both sides could have gained)."""
    return not deal and feasible_floor(max_price=max_price, least_prices=least_prices) is not None


# A run is a buyer *win* when it ends in a deal in which the buyer kept more than this share of the
# ZOPA (buyer_surplus_share > WIN_SHARE_THRESHOLD), i.e. more than half of the surplus. The win rate
# counts only runs where a deal was possible (some seller's least_price <= max_price): in a market
# with no ZOPA walking away is right, and nobody can win or lose there. Defined once, here; the
# leaderboard's column and its label read it.
WIN_SHARE_THRESHOLD = 0.5


def buyer_wins(*, deal: np.ndarray, buyer_share: np.ndarray, zopa: np.ndarray,
               threshold: float = WIN_SHARE_THRESHOLD) -> np.ndarray:
    """Per run: 1.0 for a deal with buyer_surplus_share > threshold, 0.0 otherwise, NaN when no deal was
    possible (zopa < 0 or unknown). Arrays of equal length, NaN for NULL."""
    possible = ~np.isnan(zopa) & (zopa >= 0)
    won = (deal > 0) & (np.nan_to_num(buyer_share, nan=-1.0) > threshold)
    return np.where(possible, won.astype(float), np.nan)


def buyer_score(*, deal: np.ndarray, buyer_share: np.ndarray, zopa: np.ndarray) -> np.ndarray:
    """Per run: the buyer's surplus share with no deal scored 0, where a deal could create surplus.

        score = buyer_surplus_share   on a deal,
                0                      without one,     when zopa > 0 (zopa = max_price − best floor);
                NaN                    when zopa <= 0 or unknown (walking away is right; nothing to score).

    The leaderboard's headline (analytics/benchmarks/leaderboard.py). The buyer share on deals alone is
    conditional on closing, so a policy that closes only its luckiest runs (the patient exploit
    canary under hidden deadlines: 29% deals at a 0.63 share against Linear sellers) would top it
    while losing most of the surplus on offer. Worked example: three runs with zopa 10, 10, 0;
    deal, no deal, deal; shares 0.6, –, –  ->  [0.6, 0.0, NaN], mean 0.3 over n = 2.
    A deal whose share is undefined (the chosen seller's floor is the budget) scores 0.
    """
    possible = ~np.isnan(zopa) & (zopa > 0)
    got = np.where(deal > 0, np.nan_to_num(buyer_share, nan=0.0), 0.0)
    return np.where(possible, got, np.nan)


def savings_vs_first_ask(*, price: Decimal | None, first_ask: Decimal | None) -> Decimal | None:
    """Per-unit saving against the chosen seller's first offer: first_ask − p (None without both)."""
    if price is None or first_ask is None:
        return None
    return first_ask - price


def savings_share(*, price: Decimal | None, first_ask: Decimal | None) -> float | None:
    """The saving as a fraction of the first ask: (first_ask − p) / first_ask (None if first_ask <= 0)."""
    saving = savings_vs_first_ask(price=price, first_ask=first_ask)
    if saving is None or first_ask is None or first_ask <= 0:
        return None
    return float(saving / first_ask)


def first_ask(*, offers: Sequence[tuple[int, str, Decimal | None]], seller: str | None) -> Decimal | None:
    """The first priced message of `seller` in (round, sender, price) order, or None.

    `offers` are (round_no, sender, price) for every seller message of the run.
    """
    if not seller:
        return None
    for _round, sender, price in sorted((o for o in offers if o[2] is not None), key=lambda o: o[0]):
        if sender == seller:
            return price
    return None


# --- tokens, cost, latency ----------------------------------------------------------------------


@dataclass(frozen=True)
class ModelPrice:
    """US dollars per 1M tokens."""

    input: Decimal
    output: Decimal


FREE = ModelPrice(input=Decimal(0), output=Decimal(0))
PER_TOKENS = Decimal(1_000_000)


def model_price(model: str, table: Mapping[str, Mapping[str, Any]]) -> ModelPrice | None:
    """A model's price from the table (`{"model": {"input": $/1M, "output": $/1M}}`), or None if unknown.

    An exact name wins; otherwise the longest key the model's name starts with, because providers
    answer with dated names ("gpt-4o-mini-2024-07-18" is priced as "gpt-4o-mini").
    """
    entry = table.get(model)
    if entry is None:
        prefixes = [k for k in table if model.startswith(k)]
        entry = table[max(prefixes, key=len)] if prefixes else None
    if entry is None:
        return None
    return ModelPrice(input=Decimal(str(entry["input"])), output=Decimal(str(entry["output"])))


def llm_cost(*, prompt_tokens: int, completion_tokens: int, price: ModelPrice | None) -> Decimal | None:
    """Cost of tokens in US dollars: (prompt_tokens × input + completion_tokens × output) / 1M; None if unpriced."""
    if price is None:
        return None
    return (prompt_tokens * price.input + completion_tokens * price.output) / PER_TOKENS


@dataclass(frozen=True)
class Usage:
    """Tokens one run spent with one model; `local` calls (the loopback profile) cost nothing."""

    model: str
    prompt_tokens: int
    completion_tokens: int
    local: bool = False


def run_cost(usages: Iterable[Usage], table: Mapping[str, Mapping[str, Any]]) -> Decimal | None:
    """Σ llm_cost over the run's usages (local ones are free); None if any used tokens are unpriced."""
    total = Decimal(0)
    for u in usages:
        if u.prompt_tokens == 0 and u.completion_tokens == 0:
            continue
        cost = llm_cost(prompt_tokens=u.prompt_tokens, completion_tokens=u.completion_tokens,
                        price=FREE if u.local else model_price(u.model, table))
        if cost is None:
            return None
        total += cost
    return total


def total_tokens(*, prompt_tokens: int, completion_tokens: int) -> int:
    """Tokens = prompt_tokens + completion_tokens."""
    return prompt_tokens + completion_tokens


def mean_latency_ms(*, latency_ms: int, llm_calls: int) -> float | None:
    """Mean LLM time per call: Σ latency_ms / llm_calls (None without calls)."""
    return latency_ms / llm_calls if llm_calls else None


# --- quality events -----------------------------------------------------------------------------

EVENT_GROUPS = ("leaks", "guardrails", "claim_inconsistent", "unsupported_claims", "fallbacks", "reasks")


def event_group(kind: str) -> str:
    """The counter an event kind goes to: leaks, claim_inconsistent, unsupported_claims, fallbacks,
    reasks (an agent told of a broken rule and asked once more; what it then answered is its own), or
    guardrails (every repair or refusal of an action by the rules: the code decided)."""
    if kind == EventKind.LEAK:
        return "leaks"
    if kind == EventKind.CLAIM_INCONSISTENT:
        return "claim_inconsistent"
    if kind == EventKind.UNSUPPORTED_CLAIM:
        return "unsupported_claims"
    if kind == EventKind.FALLBACK:
        return "fallbacks"
    if kind == EventKind.REASK:
        return "reasks"
    return "guardrails"


def event_counts(kinds: Mapping[str, int]) -> dict[str, int]:
    """Per-run counts of each group from {event kind: count}: leak events, guardrail violations,
    claim inconsistencies, unsupported competitor claims, fallbacks and re-asks."""
    counts = dict.fromkeys(EVENT_GROUPS, 0)
    for kind, n in kinds.items():
        counts[event_group(kind)] += n
    return counts


def rate(numerator: float, denominator: float) -> float | None:
    """numerator / denominator, None when the denominator is 0 (e.g. deal rate = deals / finished runs)."""
    return numerator / denominator if denominator else None


# --- the per-run record -------------------------------------------------------------------------


@dataclass(frozen=True)
class SellerTerms:
    handle: str
    least_price: Decimal
    style: str = ""
    weights: str = ""  # "retention/profit", e.g. "0.60/0.40"


def run_metrics(*, deal: bool, price: Decimal | None, chosen: str | None, max_price: Decimal,
                sellers: Sequence[SellerTerms], offers: Sequence[tuple[int, str, Decimal | None]],
                rounds: int, messages: int, llm_calls: int, prompt_tokens: int, completion_tokens: int,
                latency_ms: int, usages: Iterable[Usage], prices: Mapping[str, Mapping[str, Any]],
                event_kinds: Mapping[str, int]) -> dict[str, Any]:
    """Every per-run metric of a finished run, from plain values (see each function for its formula)."""
    floors = [s.least_price for s in sellers]
    seller = next((s for s in sellers if s.handle == chosen), None) if deal else None
    buyer_share = seller_share = None
    if deal and price is not None and seller is not None:
        b = buyer_surplus_share(price=price, max_price=max_price, least_price=seller.least_price)
        buyer_share = None if b is None else float(b)
        seller_share = None if b is None else float(1 - b)
    ask = first_ask(offers=offers, seller=chosen) if deal else None
    return {
        "deal": deal, "price": price if deal else None, "max_price": max_price,
        "chosen_handle": (chosen or "") if deal else "",
        "chosen_style": seller.style if seller else "", "chosen_weights": seller.weights if seller else "",
        "buyer_share": buyer_share, "seller_share": seller_share,
        "zopa": best_zopa(max_price=max_price, least_prices=floors),
        "first_ask": ask,
        "savings": savings_vs_first_ask(price=price if deal else None, first_ask=ask),
        "savings_share": savings_share(price=price if deal else None, first_ask=ask),
        "selection_regret": selection_regret(price=price if deal else None, max_price=max_price,
                                             least_prices=floors),
        "mutual_loss": mutual_loss(deal=deal, max_price=max_price, least_prices=floors),
        "rounds": rounds, "messages": messages, "llm_calls": llm_calls,
        "prompt_tokens": prompt_tokens, "completion_tokens": completion_tokens,
        "tokens": total_tokens(prompt_tokens=prompt_tokens, completion_tokens=completion_tokens),
        "cost_usd": run_cost(usages, prices),
        "latency_ms": latency_ms,
        **event_counts(event_kinds),
    }


# --- local quality scorers ----------------------------------------------------------------------
# Deterministic stand-ins for an LLM judge: the same fields, computed from the run's numbers and
# events, so a run always has scores and pages can say where each came from.


def local_deal_quality(*, deal: bool, buyer_share: float | None, mutual_loss: bool) -> float:
    """Deal quality for the buyer, 0–1: the buyer's surplus share on a deal (0.5 when the ZOPA is
    undefined); 0 for a mutual loss; 1 for no deal when no seller could meet the buyer's max."""
    if deal:
        return 0.5 if buyer_share is None else min(1.0, max(0.0, buyer_share))
    return 0.0 if mutual_loss else 1.0


def strategy_level(deal_quality: float) -> str:
    """low (< 0.3), medium (< 0.6) or high."""
    return "high" if deal_quality >= 0.6 else "medium" if deal_quality >= 0.3 else "low"


def local_coherence(*, messages: int, claim_inconsistent: int, fallbacks: int) -> float:
    """1 − (claim inconsistencies + fallbacks) / messages, clamped to 0–1 (1 without messages)."""
    if not messages:
        return 1.0
    return max(0.0, 1.0 - (claim_inconsistent + fallbacks) / messages)


def local_hallucination(*, buyer_messages: int, unsupported_claims: int) -> float:
    """Unsupported competitor claims per buyer message, clamped to 0–1 (0 without buyer messages)."""
    if not buyer_messages:
        return 0.0
    return min(1.0, unsupported_claims / buyer_messages)


def local_recommendations(m: Mapping[str, Any]) -> list[str]:
    """One or two rule-based recommendations from a run's metrics, most important first."""
    recs = []
    if m.get("leaks"):
        recs.append("Never state your own hidden price (floor, cost or budget) in a message.")
    if m.get("mutual_loss"):
        recs.append("A deal was possible: keep negotiating with the cheapest seller rather than walking away.")
    if m.get("selection_regret") and m["selection_regret"] > 0:
        recs.append("Probe every seller before accepting: a cheaper floor was available in the room.")
    if m.get("unsupported_claims"):
        recs.append("Only cite competitor prices that were actually offered.")
    if m.get("guardrails"):
        recs.append("Stay within your price limits: the rules had to repair some actions.")
    if m.get("buyer_share") is not None and m["buyer_share"] < 0.3:
        recs.append("Open lower and concede more slowly: the seller kept most of the surplus.")
    if not recs:
        recs.append("Keep the same approach: the deal was clean and well inside the buyer's range.")
    return recs[:2]


def local_message_quality(*, text: str, events: Iterable[str], sender_is_buyer: bool) -> dict[str, float]:
    """Per-message scores, 0–1: claim_consistency (no text/price mismatch), leak_free, rule_adherence
    (no guardrail repair or fallback), coherence (the mean of those three; 0 for an empty message)
    and, for the buyer, hallucination (1 when it cited a price no seller offered)."""
    groups = {event_group(k) for k in events}
    scores = {
        "claim_consistency": 0.0 if "claim_inconsistent" in groups else 1.0,
        "leak_free": 0.0 if "leaks" in groups else 1.0,
        "rule_adherence": 0.0 if "guardrails" in groups or "fallbacks" in groups else 1.0,
    }
    scores["coherence"] = round(sum(scores.values()) / 3, 4) if text.strip() else 0.0
    if sender_is_buyer:
        scores["hallucination"] = 1.0 if "unsupported_claims" in groups else 0.0
    return scores


# --- bootstrap confidence intervals ------------------------------------------------------------

DEFAULT_RESAMPLES = 1000
_CELLS_PER_CHUNK = 2_000_000  # resample count matrices are built this many cells at a time


@dataclass(frozen=True)
class Estimate:
    """A mean with its bootstrap confidence interval over n values."""

    n: int
    mean: float | None
    low: float | None
    high: float | None

    @property
    def excludes_zero(self) -> bool:
        return self.low is not None and self.high is not None and (self.low > 0 or self.high < 0)


def _as_column(values: Iterable[Any]) -> np.ndarray:
    if isinstance(values, np.ndarray):
        return values.astype(float, copy=False)
    return np.asarray([np.nan if v is None else float(v) for v in values], dtype=float)


def bootstrap_many(columns: Mapping[str, Iterable[Any]], *, seed: int = 0, n_resamples: int = DEFAULT_RESAMPLES,
                   confidence: float = 0.95) -> dict[str, Estimate]:
    """Means and percentile-bootstrap CIs of several per-unit columns, resampling the units jointly.

    Every column has one value per unit (a run, or a pair of runs); None or NaN means "undefined
    for this unit" (the price of a run without a deal). Each resample draws n units with
    replacement, as counts c_i (Σ c_i = n), and a column's resampled mean is the ratio
    Σ c_i·v_i·d_i / Σ c_i·d_i over the units where it is defined (d_i = 1). The interval is the
    (1−confidence)/2 and (1+confidence)/2 quantiles of the resampled means. All columns share
    the same resamples, so the whole dashboard costs one count matrix and one matrix product.

    Seeded: the same columns and seed give the same intervals. A column with one defined value,
    or one value repeated, has a zero-width interval; with none, everything is None.
    """
    names = list(columns)
    cols = [_as_column(columns[k]) for k in names]
    n = cols[0].size if cols else 0
    if any(c.size != n for c in cols):
        raise ValueError("every column needs one value per unit")
    defined = [~np.isnan(c) for c in cols]
    out: dict[str, Estimate] = {}
    varying = []
    for name, col, ok in zip(names, cols, defined, strict=True):
        k = int(ok.sum())
        if k == 0:
            out[name] = Estimate(n=0, mean=None, low=None, high=None)
            continue
        vals = col[ok]
        mean = float(vals.mean())
        if k == 1 or np.all(vals == vals[0]):
            out[name] = Estimate(n=k, mean=mean, low=mean, high=mean)
        else:
            out[name] = Estimate(n=k, mean=mean, low=None, high=None)
            varying.append(name)
    if not varying:
        return out
    index = {name: i for i, name in enumerate(names)}
    weights = np.column_stack([np.nan_to_num(cols[index[k]]) * defined[index[k]] for k in varying]
                              + [defined[index[k]].astype(float) for k in varying])
    rng = np.random.default_rng(seed)
    sums = np.empty((n_resamples, weights.shape[1]))
    chunk = max(1, _CELLS_PER_CHUNK // n)
    for start in range(0, n_resamples, chunk):
        rows = min(chunk, n_resamples - start)
        idx = rng.integers(0, n, size=(rows, n), dtype=np.int64)
        idx += np.arange(rows, dtype=np.int64)[:, None] * n
        counts = np.bincount(idx.ravel(), minlength=rows * n).reshape(rows, n).astype(np.float32)
        sums[start:start + rows] = counts @ weights.astype(np.float32)
    m = len(varying)
    with np.errstate(invalid="ignore", divide="ignore"):
        means = sums[:, :m] / sums[:, m:]
    tail = (1 - confidence) / 2
    for j, name in enumerate(varying):
        col = means[:, j]
        col = col[~np.isnan(col)]  # a resample that drew no unit where the column is defined
        low, high = np.quantile(col, [tail, 1 - tail])
        out[name] = Estimate(n=out[name].n, mean=out[name].mean, low=float(low), high=float(high))
    return out


def bootstrap_ci(values: Iterable[float | Decimal | bool | int | None], *, seed: int = 0,
                 n_resamples: int = DEFAULT_RESAMPLES, confidence: float = 0.95) -> Estimate:
    """Mean and percentile-bootstrap CI of one list of values (None dropped first); see bootstrap_many."""
    kept = [v for v in values if v is not None]
    return bootstrap_many({"v": kept}, seed=seed, n_resamples=n_resamples, confidence=confidence)["v"]


def paired_differences(a: Mapping[Any, float | None], b: Mapping[Any, float | None]) -> list[float]:
    """b − a for every key (e.g. the run's seed) present with a value in both, in key order."""
    keys = sorted(k for k in a.keys() & b.keys() if a[k] is not None and b[k] is not None)
    return [float(b[k]) - float(a[k]) for k in keys]  # type: ignore[arg-type]


# --- published metrics of replication suites (suites/negotiationarena-v1, a2a-nt-v1) ---------
# Each paper's definition, once, so `manage.py replicate` sets MAMS's figure beside the published one.

def na_buyer_payoff(*, price: Decimal, value: Decimal) -> Decimal:
    """NegotiationArena buy–sell (Bianchi et al. 2024): the buyer's payoff on a deal, value − price,
    where value is what the buyer is willing to pay (MAMS: its max_price).

    Worked example: the buyer values the item at 60 and pays 41.37 -> payoff 18.63 (GPT-4's published
    mean as buyer in the ZOPA game). No deal has no payoff (the paper averages over deals).
    """
    return value - price


def a2a_price_reduction_rate(*, price: Decimal, retail: Decimal) -> float | None:
    """A2A-NT (Zhu et al. 2025) buyer price-reduction rate on a deal: (retail − p) / retail.

    MAMS's retail is the seller's selling_price. Worked example: retail 399, price 339 -> 60/399 = 0.1504.
    None when retail <= 0.
    """
    return float((retail - price) / retail) if retail > 0 else None


def a2a_relative_profit(*, price: Decimal, wholesale: Decimal, retail: Decimal) -> float | None:
    """A2A-NT seller relative profit on a deal: (p − wholesale) / (retail − wholesale) (their code's
    `seller_margin_rate`). MAMS's wholesale is the seller's least_price (their seller may not sell
    below it). Worked example: wholesale 279, retail 399, price 339 -> 60/120 = 0.5. None when
    retail <= wholesale.
    """
    return float((price - wholesale) / (retail - wholesale)) if retail > wholesale else None


def a2a_out_of_budget(*, deal: bool, price: Decimal | None, budget: Decimal) -> bool:
    """A2A-NT out-of-budget: a deal at a price above the buyer's budget (rate over all runs).

    MAMS's guardrails refuse such an accept, so a MAMS run should never count one; the metric is
    computed anyway so that a replication shows the paper's risk beside MAMS's. Worked example:
    budget 339, deal at 350 -> True; no deal -> False.
    """
    return bool(deal and price is not None and price > budget)


# --- many comparisons ---------------------------------------------------------------------------

def paired_permutation_p(differences: Iterable[float], *, seed: int = 0, n_resamples: int = 10_000) -> float | None:
    """Two-sided p-value of a paired sign-flip permutation test that the mean difference is 0.

    Under H0 each pair's difference is as likely to be +d as −d, so the statistic |mean(d)| is
    compared with |mean(s·d)| over random signs s in {−1, +1}: p = (1 + #{|mean(s·d)| >= |mean(d)|}) /
    (1 + n_resamples) (the +1s keep p > 0, Phipson & Smyth 2010). Seeded; None with no pairs.
    Worked example: d = [1, 1, 1, 1, 1] has 2 of 32 sign patterns as extreme (all + or all −), so
    p ≈ 0.0625; d = [1, −1, 1, −1] has mean 0 and p = 1.
    """
    d = np.asarray([float(x) for x in differences], dtype=float)
    d = d[~np.isnan(d)]
    if d.size == 0:
        return None
    observed = abs(d.mean())
    if observed == 0:
        return 1.0
    rng = np.random.default_rng(seed)
    signs = rng.choice(np.array([-1.0, 1.0]), size=(n_resamples, d.size))
    flipped = np.abs((signs * d).mean(axis=1))
    # a tolerance so that ties with the observed statistic count as "as extreme" despite float sums
    extreme = int((flipped >= observed - 1e-12 * max(1.0, observed)).sum())
    return (1 + extreme) / (1 + n_resamples)


def holm_adjust(p_values: Sequence[float | None]) -> list[float | None]:
    """Holm's step-down adjustment (Holm 1979), controlling the family-wise error rate.

    Sort the m defined p-values ascending, p(1) <= ... <= p(m); the adjusted value of p(i) is
    max over j <= i of min(1, (m − j + 1)·p(j)). A difference "survives" at level α when its adjusted
    p <= α. None stays None (and does not count in m). Worked example: [0.01, 0.04, 0.03] ->
    [0.03, 0.06, 0.06] (0.01·3; 0.03·2 = 0.06; max(0.06, 0.04·1) = 0.06): at α = 0.05 only the first survives.
    """
    defined = sorted((p, i) for i, p in enumerate(p_values) if p is not None)
    m = len(defined)
    out: list[float | None] = [None] * len(p_values)
    running = 0.0
    for rank, (p, i) in enumerate(defined):
        running = max(running, min(1.0, (m - rank) * p))
        out[i] = running
    return out


ALPHA = 0.05  # the family-wise error rate the pages' "survives" refers to


def compare_sentence(*, metric: str, estimate: Estimate, higher_is_better: bool | None, label_a: str,
                     label_b: str, unit: str = "", fmt_diff: Callable[[float], str] | None = None) -> str:
    """A plain-language reading of a paired difference (B − A) and whether its CI excludes 0.

    `fmt_diff` writes a signed difference in its metric's unit (analytics/formats.py: "+6.6 pp",
    "−$1.20"), so the sentence reads like the table beside it."""
    if estimate.mean is None:
        return f"{metric}: no pairs to compare."
    show = fmt_diff or (lambda v: f"{v:+.3g}{unit}")
    diff = show(estimate.mean)
    ci = f"95% CI {show(cast(float, estimate.low))} to {show(cast(float, estimate.high))}"
    if estimate.mean == 0 and not estimate.excludes_zero:
        return f"{metric}: no difference between {label_a} and {label_b} ({ci})."
    b_higher = estimate.mean > 0
    if higher_is_better is None:
        lead = f"{label_b if b_higher else label_a} is higher on {metric} (B − A = {diff}, {ci})"
    else:
        better = label_b if b_higher == higher_is_better else label_a
        lead = f"{better} did better on {metric} (B − A = {diff}, {ci})"
    tail = ("; the interval excludes 0, so the difference is unlikely to be chance." if estimate.excludes_zero
            else "; the interval includes 0, so this could be chance.")
    return lead + tail

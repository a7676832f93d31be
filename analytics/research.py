"""Reads for paired experiments and reflect sequences (selectors, no writes).

An experiment's per-condition figures are its batches' dashboard headlines (the same seeded
bootstrap CIs the batch pages show), and each condition is compared with the control by
`batch_compare`, the compare page's pairing by (item, seed) with its paired bootstrap. With more
than two conditions, each metric is tested once per condition against the control, so the paired
permutation p-values of a metric are Holm-adjusted across the conditions (metrics.holm_adjust) and
a difference "survives" only if its adjusted p is at most metrics.ALPHA. A sequence's
figures are each side's utility per run and its cumulative average (negotiation/engine/utility.py).
"""

from __future__ import annotations

from functools import partial
from typing import Any

from django.db.models import Prefetch, QuerySet

from analytics import formats, metrics
from analytics.selectors import COMPARE, HEADLINE_KEYS, batch_compare, batch_dashboard, visible
from negotiation.agents.fingerprint import run_fingerprints
from negotiation.engine.utility import cumulative_mean
from negotiation.models import Experiment, ExperimentCondition, ReflectSequence, SequenceStep
from negotiation.services.experiments import experiment_status

HEADS = [HEADLINE_KEYS[k] for k in COMPARE]


def experiment_list(*, user: Any) -> QuerySet:
    conditions = Prefetch("conditions", queryset=ExperimentCondition.objects.select_related("batch")
                          .order_by("position"))
    return (visible(Experiment.objects.select_related("session", "owner"), user).prefetch_related(conditions)
            .order_by("-created_at", "id"))


def experiment_get(*, user: Any, experiment_id: Any) -> Experiment | None:
    return experiment_list(user=user).filter(pk=experiment_id).first()


def experiment_state(experiment: Experiment) -> str:
    """The status from the (prefetched) conditions' batches."""
    return experiment_status(experiment, [c.batch.status for c in experiment.conditions.all() if c.batch])


def _estimate(e: metrics.Estimate | None) -> dict[str, Any]:
    if e is None:
        return {"mean": None, "low": None, "high": None, "n": 0}
    return {"mean": e.mean, "low": e.low, "high": e.high, "n": e.n}


def _condition(c: ExperimentCondition) -> dict[str, Any]:
    out: dict[str, Any] = {"label": c.label, "position": c.position, "agents": c.agents, "temperature": c.temperature,
                           "sellers": c.sellers, "styles": c.styles, "batch": c.batch, "status": None,
                           "progress": None, "metrics": {}, "fingerprints": {}}
    if c.batch is None:
        return out
    d = batch_dashboard(batch_id=c.batch_id)
    out.update(status=c.batch.status, progress={"total": d["total"], "finished": d["finished"],
                                                "percent": d["percent"]},
               metrics={h.key: d["headlines"][h.key] for h in HEADS})
    stamps = run_fingerprints(c.batch.agents, disclosure=c.batch.disclosure, rules=c.batch.rules)
    out["fingerprints"] = {"buyer": stamps["buyer_fingerprint"], "seller": stamps["seller_fingerprint"]}
    return out


def _differs(control: dict[str, Any], other: dict[str, Any]) -> list[str]:
    """What a condition changes against the control, so a reader can tell what a difference is about."""
    out = []
    for role in ("buyer", "seller"):
        if control["fingerprints"].get(role) != other["fingerprints"].get(role):
            out.append(f"{role} configuration")
    if (control["sellers"], control["styles"]) != (other["sellers"], other["styles"]):
        out.append("seller population")
    return out


def experiment_results(*, experiment: Experiment) -> dict[str, Any]:
    """Per condition: headline metrics with CIs; per non-control condition: paired differences
    (condition − control) by (item, seed), each with its paired bootstrap CI and a sentence."""
    conds = [_condition(c) for c in experiment.conditions.all()]
    control = conds[0] if conds else None
    comparisons = []
    for c in conds[1:]:
        if control is None or control["batch"] is None or c["batch"] is None:
            continue
        result = batch_compare(a=control["batch"], b=c["batch"])
        rows = []
        for r in result["rows"]:
            h = r["head"]
            rows.append({"head": h, "estimate": r["estimate"], "mean_a": r["mean_a"], "mean_b": r["mean_b"],
                         "p": r["p"], "p_holm": r["p"], "survives": r["p"] is not None and r["p"] <= metrics.ALPHA,
                         "sentence": metrics.compare_sentence(metric=h.label.lower(), estimate=r["estimate"],
                                                              higher_is_better=h.higher_is_better,
                                                              label_a=control["label"], label_b=c["label"],
                                                              fmt_diff=partial(formats.diff, unit=h.fmt))})
        comparisons.append({"label": c["label"], "against": control["label"], "pairs": result["pairs"],
                            "paired_by": result["paired_by"], "rows": rows, "differs": _differs(control, c)})
    adjusted = len(conds) > 2
    if adjusted:
        for i in range(len(HEADS)):
            family = [cmp["rows"][i] for cmp in comparisons]
            for row, p in zip(family, metrics.holm_adjust([row["p"] for row in family]), strict=True):
                row["p_holm"], row["survives"] = p, p is not None and p <= metrics.ALPHA
    return {"status": experiment_state(experiment), "conditions": conds, "comparisons": comparisons,
            "heads": HEADS, "adjusted": adjusted, "alpha": metrics.ALPHA,
            "adjustment": ("Holm, per metric across the conditions compared with the control" if adjusted
                           else "none (one comparison)")}


def experiment_results_json(results: dict[str, Any]) -> dict[str, Any]:
    """The results as plain JSON for the API."""
    return {
        "status": results["status"],
        "paired_by": "item and seed: run i of every condition has seed base_seed + i",
        "p_adjustment": results["adjustment"], "alpha": results["alpha"],
        "conditions": [
            {"label": c["label"], "batch": str(c["batch"].pk) if c["batch"] else None, "status": c["status"],
             "progress": c["progress"], "fingerprints": c["fingerprints"],
             "metrics": {k: _estimate(v) for k, v in c["metrics"].items()}}
            for c in results["conditions"]],
        "comparisons": [
            {"label": cmp["label"], "against": cmp["against"], "pairs": cmp["pairs"], "paired_by": cmp["paired_by"],
             "differs": cmp["differs"],
             "differences": {r["head"].key: {**_estimate(r["estimate"]), "mean_control": r["mean_a"],
                                             "mean_condition": r["mean_b"], "sentence": r["sentence"],
                                             "p_value": r["p"], "p_adjusted": r["p_holm"], "survives": r["survives"]}
                             for r in cmp["rows"]}}
            for cmp in results["comparisons"]],
    }


# --- reflect sequences ---------------------------------------------------------------------------

def sequence_list(*, user: Any) -> QuerySet:
    return visible(ReflectSequence.objects.select_related("session", "owner"), user).order_by("-created_at", "id")


def sequence_get(*, user: Any, sequence_id: Any) -> ReflectSequence | None:
    return sequence_list(user=user).filter(pk=sequence_id).first()


def sequence_summary(*, sequence: ReflectSequence) -> dict[str, Any]:
    """Each run of a sequence with its prompt versions, utilities, cumulative averages and notes."""
    steps = list(SequenceStep.objects.filter(sequence=sequence).select_related("run", "run__outcome")
                 .order_by("index"))
    buyer = [s.buyer_utility for s in steps]
    seller = [s.seller_utility for s in steps]
    cum_buyer, cum_seller = cumulative_mean(buyer), cumulative_mean(seller)
    rows = []
    for s, cb, cs in zip(steps, cum_buyer, cum_seller, strict=True):
        outcome = getattr(s.run, "outcome", None)
        rows.append({
            "index": s.index, "number": s.index + 1, "run": s.run, "seed": s.run.seed, "status": s.run.status,
            "deal": outcome.decision == "deal" if outcome else None,
            "chosen": outcome.chosen_handle if outcome else "", "price": outcome.final_price if outcome else None,
            "buyer_prompt": (s.run.agents.get("buyer") or {}).get("prompt_version", ""),
            "seller_prompt": (s.run.agents.get("seller") or {}).get("prompt_version", ""),
            "buyer_fingerprint": s.run.buyer_fingerprint, "seller_fingerprint": s.run.seller_fingerprint,
            "buyer_utility": s.buyer_utility, "seller_utility": s.seller_utility,
            "seller_utilities": s.seller_utilities, "cum_buyer": cb, "cum_seller": cs,
            "notes": s.notes, "coach_calls": s.coach_calls, "coach_fallbacks": s.coach_fallbacks,
            "coach_errors": s.coach_errors, "reflected": s.reflected_at is not None,
            "tokens": s.coach_prompt_tokens + s.coach_completion_tokens})
    return {"steps": rows, "done": sum(1 for r in rows if r["reflected"]),
            "coach_calls": sum(r["coach_calls"] for r in rows),
            "coach_fallbacks": sum(r["coach_fallbacks"] for r in rows),
            "coach_tokens": sum(r["tokens"] for r in rows),
            "final": {"buyer": cum_buyer[-1] if cum_buyer else None, "seller": cum_seller[-1] if cum_seller else None}}

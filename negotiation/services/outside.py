"""What an outside buyer may learn, and when: the one disclosure policy for live rooms and /env episodes.

An outside buyer is a person in a live room (mode `human_buyer`) or an external agent on `/env` (mode
`external`). Information asymmetry is what MAMS measures, so the rule is stated once, here, and every
buyer-side surface asks this module instead of deciding for itself:

- **Sealed while the run has not ended** (status `running` or `queued`). Nothing derived from any
  seller's private numbers (cost, least price, selling price, style, weights) reaches the buyer: no
  surplus share, no deal quality or other analysis score, no outcome score, no reward other than 0,
  no mutual-loss flag, no ZOPA or regret, no per-message quality, no guardrail, repair, fallback or
  leak counts, no seller reasoning, no scenario snapshot. What the buyer sees is the engine's buyer
  view (its own constraints, the handles, its thread, the standing offers) and nothing more.
  A score is as revealing as the share it comes from: with the deal price p and the buyer's max M,
  a share s gives the chosen seller's floor as M − (M − p)/s, and 0 versus 1 on no deal says whether
  any floor was within M; so nothing of the kind is shown half-hidden.
- **Open once the run has ended** (completed, failed or cancelled, including a room the sweeper
  closed). The run is then a lesson, not a contest: the buyer gets a `debrief` that states every
  seller's floor and cost, the ZOPA (max price − lowest floor), the share of the surplus it
  captured, the money left on the table and whether it was a mutual loss, and every other surface
  may show the run as it shows an agent run. This is the "instant feedback" of the procurement
  training use case. (A suite task is fixed, so the debrief teaches its floors for later episodes
  of the same task: that is what training on a fixed task means, and results say which task.)

"The run has ended" means its status is terminal; the Outcome is written in the same transaction
that completes the run, so an outcome, its scores and the run's metrics never exist while it is
sealed. Per surface, before the end / after it:

- `GET /api/negotiations/{id}` (and the live room's `start`): no `scenario`, `debrief` null / the
  scenario and the debrief (api/runs.py).
- `GET .../messages`: the buyer's view, without reasoning, model, tokens, repair flags or quality /
  every message with all of them (selectors.run_transcript, api/runs.py::message_data).
- `GET .../analytics`: no counts, share, quality averages or verdict / all of them and the debrief
  (selectors.run_analytics, selectors.run_verdict).
- `POST .../message`: replies and standing offers, `debrief` null / the debrief, if its round ended
  the run; `POST .../decide` ends the run, so its answer carries the debrief (api/live.py).
- `GET .../stream`: the buyer's messages and offers / the outcome, then a `debrief` event, then
  `end` (services/events.py::run_stream).
- `/env/step`, `/env/state`: the observation (the buyer view), reward 0, no score / `info.score`
  with the reward and the debrief; `/env/score`: every result field null / all of them and the
  debrief (analytics/environment.py::episode_score).
- The run page `/analytics/runs/<id>/`: the buyer's lane only, no floor guides, events, metrics or
  verdict / the whole page and the debrief (analytics/views.py::run_detail).
- Batch exports and dashboards never hold an outside buyer's run: rooms and episodes have no batch.

The debrief's numbers come from the metric definitions in analytics/metrics.py (pure functions, no
Django), so they are the same numbers the analytics pages and RunMetrics report.
"""

from __future__ import annotations

from decimal import Decimal
from typing import Any

from analytics import metrics
from negotiation.models import NegotiationRun, Outcome


def is_outside(run: NegotiationRun) -> bool:
    """The buyer of `run` is outside MAMS: a person in a live room or an agent on /env."""
    return run.mode in NegotiationRun.OUTSIDE_BUYER


def has_ended(run: NegotiationRun) -> bool:
    """The run has ended: completed, failed or cancelled. Nothing can change its outcome any more."""
    return run.status in NegotiationRun.TERMINAL


def sealed(run: NegotiationRun) -> bool:
    """Whether the seller side of `run` is sealed from its reader now: an outside buyer's run that has not ended.

    While sealed, a surface shows the buyer's view only; anything computed from a seller's private
    numbers (scores, shares, counts, the scenario, the verdict) is withheld, even when it is null.
    Agent runs are never sealed: their reader is the researcher who configured every party.
    """
    return is_outside(run) and not has_ended(run)


def debrief(run: NegotiationRun) -> dict[str, Any] | None:
    """The run laid open for its buyer once it has ended; None while it is sealed or still running.

    - sellers: each seller's least price (floor), cost, asking price, style and weights, and
      whether its floor was within the buyer's max;
    - lowest_floor (and its seller), zopa = max_price − lowest floor (<= 0: no deal was possible);
    - deal, price, seller and that seller's floor; buyer_share = (max_price − p) / (max_price −
      floor of the chosen seller) and seller_share = 1 − buyer_share (None on no deal or a ZOPA <= 0);
    - best_price = the lowest floor within the max; left_on_table = p − best_price (selection regret);
    - mutual_loss: no deal although some floor was within the max;
    - summary: the same in one or two sentences a trainee can read.
    """
    if not has_ended(run):
        return None
    sc = run.scenario or {}
    buyer = sc.get("buyer") or {}
    if "max_price" not in buyer:
        return None
    max_price = Decimal(buyer["max_price"])
    sellers = [{"handle": s["handle"], "least_price": Decimal(s["least_price"]), "cost_price": Decimal(s["cost_price"]),
                "selling_price": Decimal(s["selling_price"]), "style": s.get("style", ""),
                "retention_weight": Decimal(s["retention_weight"]), "profit_weight": Decimal(s["profit_weight"]),
                "within_budget": Decimal(s["least_price"]) <= max_price}
               for s in sc.get("sellers") or []]
    floors = [s["least_price"] for s in sellers]
    lowest = min(sellers, key=lambda s: (s["least_price"], s["handle"])) if sellers else None
    outcome = Outcome.objects.filter(run_id=run.pk).first()
    deal = outcome is not None and outcome.decision == Outcome.Decision.DEAL and outcome.final_price is not None
    price = outcome.final_price if outcome is not None and deal else None
    chosen = outcome.chosen_handle if outcome is not None and deal else None
    chosen_floor = next((s["least_price"] for s in sellers if s["handle"] == chosen), None)
    share = (metrics.buyer_surplus_share(price=price, max_price=max_price, least_price=chosen_floor)
             if price is not None and chosen_floor is not None else None)
    best = metrics.feasible_floor(max_price=max_price, least_prices=floors)
    body: dict[str, Any] = {
        "status": run.status, "max_price": max_price, "sellers": sellers,
        "lowest_floor": lowest["least_price"] if lowest else None, "lowest_floor_seller": lowest["handle"] if lowest
        else None, "zopa": metrics.best_zopa(max_price=max_price, least_prices=floors),
        "deal": deal, "price": price, "seller": chosen, "chosen_floor": chosen_floor,
        "buyer_share": share, "seller_share": None if share is None else 1 - share,
        "best_price": best,
        "left_on_table": metrics.selection_regret(price=price, max_price=max_price, least_prices=floors),
        "mutual_loss": metrics.mutual_loss(deal=deal, max_price=max_price, least_prices=floors),
    }
    body["summary"] = _summary(body)
    return body


def _summary(d: dict[str, Any]) -> str:
    floors = ", ".join(f"{s['handle']} ${s['least_price']}" for s in d["sellers"])
    head = f"The sellers' floors were {floors}; your maximum was ${d['max_price']}."
    if d["zopa"] is None or d["zopa"] < 0:
        return head + " No seller could meet your maximum, so no deal was possible."
    if d["deal"]:
        text = f"{head} You paid ${d['price']} to {d['seller']}, whose floor was ${d['chosen_floor']}"
        if d["buyer_share"] is not None:
            text += f": you kept {float(d['buyer_share']):.0%} of the surplus between its floor and your maximum"
        text += "."
        if d["left_on_table"]:
            text += (f" The lowest floor in the room was ${d['best_price']} ({d['lowest_floor_seller']}), "
                     f"${d['left_on_table']} per unit below your price.")
        return text
    if d["mutual_loss"]:
        return (f"{head} No deal, although {d['lowest_floor_seller']} could have sold at ${d['best_price']} or more, "
                "within your maximum: both sides lost a possible deal.")
    return head + " No deal."

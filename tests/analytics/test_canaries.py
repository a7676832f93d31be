"""The exploit canaries (negotiation/agents/canaries.py) against the baselines on core-v2.

The benchmark's promise: no known trivial policy wins. On every core-v2 marketplace, against each
baseline seller, the canaries' buyer score (metrics.buyer_score: the surplus share, no deal = 0)
must not beat the median of the three baseline buyers' scores. The games are played in memory
through production's turn functions (tests/negotiation/selfplay.py), on 30 seeds, with the rules
the suite's manifest names; the same check under the core-v1 rules must fail (the patient buyer
wins there), which shows the check can fail. A benchmark run of core-v2 through the real services
then shows the canaries as reference rows on the leaderboard, played under the hidden rules.
"""

from __future__ import annotations

import statistics
from decimal import Decimal
from typing import Any

import numpy as np
import pytest

from analytics import metrics
from analytics.benchmarks.leaderboard import leaderboard
from analytics.benchmarks.suite_files import load_suite
from negotiation.agents.canaries import CANARIES
from negotiation.agents.fingerprint import agent_fingerprint, played_fingerprint
from negotiation.engine.protocol import Rules, last_round
from negotiation.engine.types import BuyerPrivate, EndReason, SellerPrivate, money
from tests.analytics.benchmark_helpers import BOULWARE, LINEAR, launch, play_all
from tests.negotiation.selfplay import play

BASELINES = ("boulware", "linear", "conceder")
SEEDS = range(30)
MAX_ROUNDS = 5  # run_suite's default


def markets(label: str) -> list[tuple[BuyerPrivate, list[SellerPrivate]]]:
    """Every (buyer demand, sellers stocking it) a suite's scenarios negotiate, from its files."""
    out = []
    for sc in load_suite(label).scenarios:
        doc = sc.document
        for item in sc.items:
            d = next(x for x in doc["buyer"]["item_demands"] if x["item_name"].lower() == item.lower())
            buyer = BuyerPrivate(item_name=item, quantity=d.get("quantity", 1), min_price=money(d["min_price"]),
                                 max_price=money(d["max_price"]))
            sellers = [SellerPrivate(handle=s["handle"], style=s.get("style", "neutral"),
                                     retention_weight=Decimal("0.5"), profit_weight=Decimal("0.5"),
                                     cost_price=money(line["cost_price"]), least_price=money(line["least_price"]),
                                     selling_price=money(line["selling_price"]))
                       for s in doc["sellers"] for line in s.get("inventory", [])
                       if line["item_name"].lower() == item.lower()]
            out.append((buyer, sorted(sellers, key=lambda s: s.handle)))
    return out


def score(label: str, rules: Rules, buyer: str, seller: str) -> float:
    """The mean buyer score of one buyer policy against one seller policy over a suite's markets and SEEDS."""
    deal, share, zopa = [], [], []
    for me, sellers in markets(label):
        best = metrics.best_zopa(max_price=me.max_price, least_prices=[s.least_price for s in sellers])
        for seed in SEEDS:
            game = play(sellers, me, max_rounds=MAX_ROUNDS, buyer_strategy=buyer, seller_strategy=seller,
                        rules=rules, seed=seed)
            done = game.end.reason == EndReason.ACCEPTED
            chosen = next((s for s in sellers if s.handle == game.end.seller), None)
            got = (metrics.buyer_surplus_share(price=game.end.price, max_price=me.max_price,
                                               least_price=chosen.least_price) if done and chosen else None)
            deal.append(1.0 if done else 0.0)
            share.append(np.nan if got is None else float(got))
            zopa.append(np.nan if best is None else float(best))
    scores = metrics.buyer_score(deal=np.array(deal), buyer_share=np.array(share), zopa=np.array(zopa))
    return float(np.nanmean(scores))


def beaten(label: str, rules: Rules) -> list[str]:
    """Every (seller, canary) where the canary's score beats the median of the baselines' scores."""
    out = []
    for seller in BASELINES:
        bar = statistics.median(score(label, rules, b, seller) for b in BASELINES)
        for canary in CANARIES:
            got = score(label, rules, canary, seller)
            if got > bar:
                out.append(f"{canary} vs {seller} sellers: {got:.3f} > baseline median {bar:.3f}")
    return out


def test_core_v2_names_the_hidden_rules():
    assert load_suite("core-v2").rules == Rules.HIDDEN
    assert load_suite("core-v1").rules == Rules.KNOWN


def test_no_exploit_canary_beats_the_baseline_median_on_core_v2():
    # given core-v2's marketplaces, its rules, and each baseline seller
    # when the three baseline buyers and the three canaries play 30 seeds each
    # then no canary's buyer score beats the median of the baselines' scores
    assert beaten("core-v2", load_suite("core-v2").rules) == []


def test_the_check_catches_the_core_v1_exploit():
    # given the same marketplaces under core-v1's rules (a known deadline and a closing turn)
    found = beaten("core-v1", load_suite("core-v1").rules)
    # then the patient canary wins against every baseline seller: the check can fail
    assert [f for f in found if f.startswith("canary-patient")] and len(
        [f for f in found if f.startswith("canary-patient")]) == 3, found
    assert score("core-v1", Rules.KNOWN, "canary-patient", "boulware") == pytest.approx(1.0)


@pytest.mark.django_db
def test_a_core_v2_benchmark_plays_hidden_rules_and_shows_the_canaries_as_reference_rows(play_through: Any):
    from django.conf import settings

    from negotiation.models import Message, NegotiationRun
    # given a core-v2 benchmark of a Linear buyer against Boulware sellers, canaries included
    run = play_all(launch(buyers=[LINEAR], opponents=BOULWARE, runs=2, suite="core-v2", canaries=True,
                          max_rounds=MAX_ROUNDS), play_through)
    # then every run played under the hidden rules, and the fingerprints say so
    runs = NegotiationRun.objects.filter(batch__benchmark_entry__benchmark=run)
    assert set(runs.values_list("rules", flat=True)) == {"hidden"}
    assert run.seller_fingerprint == played_fingerprint(run.opponents, rules="hidden") != agent_fingerprint(
        run.opponents)
    # and no run has a closing turn or says anything after its drawn last round
    key = settings.MAMS_DEADLINE_KEY or settings.SECRET_KEY
    for r in runs:
        last = last_round(rules="hidden", seed=r.seed, max_rounds=r.max_rounds, key=key)
        said = Message.objects.filter(run=r).values_list("round_no", flat=True)
        assert max(said) <= last <= MAX_ROUNDS
    # and the leaderboard has the buyer plus the three canaries, flagged as reference rows
    table = leaderboard(user=None, suite="core-v2")["tables"][0]
    rows = {r["label"]: r for r in table["rows"]}
    assert set(rows) == {"baseline:linear", *CANARIES}
    assert all(rows[c]["canary"] and not rows[c]["baseline"] for c in CANARIES)
    assert rows["baseline:linear"]["baseline"] and not rows["baseline:linear"]["canary"]
    # and with more than two rows, each is compared with the top score, Holm-adjusted
    assert table["adjusted"] is True
    assert sum(1 for r in rows.values() if r["vs_leader"] and r["vs_leader"]["leader"]) == 1
    assert all(r["vs_leader"]["p_holm"] >= r["vs_leader"]["p"] for r in rows.values() if not r["vs_leader"]["leader"])
    # and the page shows them as such, with the rules and the Holm note
    from django.test import Client

    from tests.factories import UserFactory
    reader = UserFactory(username="reader17")
    reader.save()  # the factory sets the password after its save; a page session's auth hash needs it stored
    client = Client()
    client.force_login(reader)
    body = client.get("/analytics/leaderboard/?suite=core-v2").content.decode()
    assert body.count("exploit canary</span>") == 3 and "hidden deadline" in body and "Holm-adjusted" in body

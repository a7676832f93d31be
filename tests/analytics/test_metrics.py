"""analytics/metrics.py on hand-worked examples, with no database.

The running example is the spec's sample: the buyer's max is $9.00; floors are @A $6.00, @B $7.00
and @C $9.50 (above the buyer's max, so @C can never be a feasible deal).
"""

from __future__ import annotations

from decimal import Decimal as D

import numpy as np
import pytest

from analytics import metrics as m

SELLERS = [m.SellerTerms("@A", D("6.00"), "rude", "0.20/0.80"), m.SellerTerms("@B", D("7.00"), "sweet", "0.60/0.40"),
           m.SellerTerms("@C", D("9.50"), "neutral", "0.50/0.50")]
FLOORS = [s.least_price for s in SELLERS]
PRICES = {"gpt-4o-mini": {"input": 0.15, "output": 0.60}, "claude": {"input": 3, "output": 15}}


def test_buyer_share_on_a_deal_is_the_buyers_part_of_the_zopa() -> None:
    # ZOPA with @A is 9 - 6 = 3; paying 7.50 leaves the buyer 1.50 of it
    assert m.buyer_surplus_share(price=D("7.50"), max_price=D("9.00"), least_price=D("6.00")) == D("0.5")
    assert m.seller_surplus_share(price=D("7.50"), max_price=D("9.00"), least_price=D("6.00")) == D("0.5")
    # at the floor the buyer has everything, at its max nothing
    assert m.buyer_surplus_share(price=D("6.00"), max_price=D("9.00"), least_price=D("6.00")) == 1
    assert m.buyer_surplus_share(price=D("9.00"), max_price=D("9.00"), least_price=D("6.00")) == 0


@pytest.mark.parametrize("least", [D("9.00"), D("9.50")])
def test_surplus_share_is_undefined_when_the_zopa_is_not_positive(least: D) -> None:
    assert m.buyer_surplus_share(price=D("9.00"), max_price=D("9.00"), least_price=least) is None
    assert m.seller_surplus_share(price=D("9.00"), max_price=D("9.00"), least_price=least) is None


def test_selection_regret_is_the_price_above_the_cheapest_feasible_floor() -> None:
    # @C's 9.50 is not feasible, so the reference floor is @A's 6.00
    assert m.selection_regret(price=D("7.00"), max_price=D("9.00"), least_prices=FLOORS) == D("1.00")
    assert m.selection_regret(price=D("6.00"), max_price=D("9.00"), least_prices=FLOORS) == 0
    assert m.selection_regret(price=None, max_price=D("9.00"), least_prices=FLOORS) is None
    # nobody feasible (ZOPA <= 0 everywhere): regret is undefined
    assert m.selection_regret(price=D("9.00"), max_price=D("5.00"), least_prices=FLOORS) is None


def test_selection_regret_with_tied_floors_uses_the_shared_floor() -> None:
    assert m.selection_regret(price=D("6.50"), max_price=D("9.00"), least_prices=[D("6.00"), D("6.00")]) == D("0.50")


def test_mutual_loss_is_no_deal_although_a_seller_was_feasible() -> None:
    assert m.mutual_loss(deal=False, max_price=D("9.00"), least_prices=FLOORS) is True
    assert m.mutual_loss(deal=True, max_price=D("9.00"), least_prices=FLOORS) is False
    # ZOPA <= 0 with every seller: walking away is no loss
    assert m.mutual_loss(deal=False, max_price=D("5.99"), least_prices=FLOORS) is False
    # a floor exactly at the max is still feasible (least_price <= max_price)
    assert m.mutual_loss(deal=False, max_price=D("6.00"), least_prices=[D("6.00")]) is True


def test_best_zopa_can_be_negative_and_is_none_without_sellers() -> None:
    assert m.best_zopa(max_price=D("9.00"), least_prices=FLOORS) == D("3.00")
    assert m.best_zopa(max_price=D("5.00"), least_prices=FLOORS) == D("-1.00")
    assert m.best_zopa(max_price=D("5.00"), least_prices=[]) is None


def test_savings_against_the_first_ask_of_the_chosen_seller() -> None:
    offers = [(1, "@B", D("9.00")), (1, "@A", D("8.50")), (2, "@A", D("7.80")), (2, "@B", None)]
    assert m.first_ask(offers=offers, seller="@A") == D("8.50")
    assert m.savings_vs_first_ask(price=D("7.80"), first_ask=D("8.50")) == D("0.70")
    assert m.savings_share(price=D("7.80"), first_ask=D("8.50")) == pytest.approx(0.7 / 8.5)
    assert m.first_ask(offers=offers, seller="@C") is None
    assert m.savings_vs_first_ask(price=None, first_ask=D("8.50")) is None


def test_cost_uses_the_price_table_per_million_tokens_and_local_is_free() -> None:
    price = m.model_price("gpt-4o-mini-2024-07-18", PRICES)  # a dated name is priced by its prefix
    assert price == m.ModelPrice(D("0.15"), D("0.60"))
    # 1,000,000 prompt tokens at $0.15 and 500,000 completion tokens at $0.60 = 0.15 + 0.30
    assert m.llm_cost(prompt_tokens=1_000_000, completion_tokens=500_000, price=price) == D("0.45")
    usages = [m.Usage("gpt-4o-mini", 2000, 1000), m.Usage("claude", 1000, 100),
              m.Usage("gemma", 9999, 9999, local=True)]
    # 2000*0.15 + 1000*0.60 + 1000*3 + 100*15 = 300 + 600 + 3000 + 1500 = 5400 per 1M
    assert m.run_cost(usages, PRICES) == D("0.0054")
    assert m.run_cost([m.Usage("unknown-model", 10, 10)], PRICES) is None
    assert m.run_cost([m.Usage("unknown-model", 0, 0)], PRICES) == 0  # a model that spent nothing costs nothing


def test_event_kinds_are_counted_in_their_groups() -> None:
    # given events of every group, re-asks included
    counts = m.event_counts({"leak": 2, "seller_below_floor": 1, "buyer_accept_above_max": 3, "fallback": 1,
                             "claim_inconsistent": 1, "unsupported_claim": 4, "reask": 5})
    # then a re-ask is its own count, not a guardrail repair (the agent answered again; the code did not decide)
    assert counts == {"leaks": 2, "guardrails": 4, "claim_inconsistent": 1, "unsupported_claims": 4, "fallbacks": 1,
                      "reasks": 5}
    assert m.rate(3, 4) == 0.75 and m.rate(1, 0) is None


def _run(**over: object) -> dict:
    args: dict = dict(deal=True, price=D("7.50"), chosen="@A", max_price=D("9.00"), sellers=SELLERS,
                      offers=[(1, "@A", D("8.50")), (1, "@B", D("9.00")), (2, "@A", D("7.50"))], rounds=2,
                      messages=6, llm_calls=7, prompt_tokens=1000, completion_tokens=200, latency_ms=700,
                      usages=[m.Usage("gpt-4o-mini", 1000, 200)], prices=PRICES, event_kinds={"leak": 1})
    args.update(over)
    return m.run_metrics(**args)


def test_run_metrics_of_a_deal() -> None:
    r = _run()
    assert r["deal"] and r["price"] == D("7.50") and r["chosen_style"] == "rude" and r["chosen_weights"] == "0.20/0.80"
    assert r["buyer_share"] == pytest.approx(0.5) and r["seller_share"] == pytest.approx(0.5)
    assert r["first_ask"] == D("8.50") and r["savings"] == D("1.00")
    assert r["selection_regret"] == D("1.50") and r["mutual_loss"] is False
    assert r["tokens"] == 1200 and r["cost_usd"] == D("0.00027") and r["leaks"] == 1 and r["guardrails"] == 0


def test_run_metrics_of_no_deal() -> None:
    r = _run(deal=False, price=None, chosen=None)
    assert r["price"] is None and r["buyer_share"] is None and r["selection_regret"] is None
    assert r["savings"] is None and r["chosen_handle"] == "" and r["mutual_loss"] is True


def test_run_metrics_with_a_single_seller_whose_floor_is_above_the_max() -> None:
    # a deal above the max can only happen if a guardrail failed; the metrics must not crash or invent a share
    r = _run(sellers=[SELLERS[2]], chosen="@C", price=D("9.50"), offers=[(1, "@C", D("9.50"))])
    assert r["buyer_share"] is None and r["selection_regret"] is None and r["zopa"] == D("-0.50")
    assert m.mutual_loss(deal=False, max_price=D("9.00"), least_prices=[D("9.50")]) is False


def test_run_metrics_with_a_single_feasible_seller() -> None:
    r = _run(sellers=[SELLERS[1]], chosen="@B", price=D("7.00"), offers=[(1, "@B", D("8.00")), (2, "@B", D("7.00"))])
    assert r["buyer_share"] == pytest.approx(1.0) and r["selection_regret"] == 0 and r["savings"] == D("1.00")


def test_local_scorers() -> None:
    assert m.local_deal_quality(deal=True, buyer_share=0.7, mutual_loss=False) == 0.7
    assert m.local_deal_quality(deal=True, buyer_share=None, mutual_loss=False) == 0.5
    assert m.local_deal_quality(deal=False, buyer_share=None, mutual_loss=True) == 0.0
    assert m.local_deal_quality(deal=False, buyer_share=None, mutual_loss=False) == 1.0
    assert [m.strategy_level(q) for q in (0.1, 0.3, 0.59, 0.6)] == ["low", "medium", "medium", "high"]
    assert m.local_coherence(messages=10, claim_inconsistent=1, fallbacks=1) == pytest.approx(0.8)
    assert m.local_hallucination(buyer_messages=4, unsupported_claims=1) == 0.25
    recs = m.local_recommendations({"leaks": 1, "mutual_loss": True, "selection_regret": D("1")})
    assert len(recs) == 2 and "hidden price" in recs[0]
    q = m.local_message_quality(text="I can do $7.00", events=["leak"], sender_is_buyer=False)
    assert q["leak_free"] == 0.0 and q["claim_consistency"] == 1.0 and q["coherence"] == pytest.approx(2 / 3, abs=1e-4)


def test_bootstrap_ci_is_seeded_and_brackets_the_mean() -> None:
    values = [0.1 * i for i in range(50)]
    a = m.bootstrap_ci(values, seed=7)
    assert a == m.bootstrap_ci(values, seed=7)
    assert a != m.bootstrap_ci(values, seed=8)
    assert a.low < a.mean < a.high and a.n == 50
    # the mean of 0..4.9 is 2.45, its standard error about 0.20, so the 95% interval is about ±0.4
    assert a.mean == pytest.approx(2.45)
    assert 1.9 < a.low < 2.2 and 2.7 < a.high < 3.0


def test_bootstrap_of_a_rate_matches_the_binomial_interval() -> None:
    # 30 deals in 100 runs: the normal-approximation 95% interval is 0.30 ± 1.96*sqrt(.3*.7/100) = ±0.09
    est = m.bootstrap_ci([True] * 30 + [False] * 70, seed=1)
    assert est.mean == pytest.approx(0.3)
    assert est.low == pytest.approx(0.21, abs=0.02) and est.high == pytest.approx(0.39, abs=0.02)


def test_bootstrap_with_many_distinct_values_is_reproducible() -> None:
    values = [i / 997 for i in range(2000)]  # every value distinct
    est = m.bootstrap_ci(values, seed=3, n_resamples=500)
    assert est == m.bootstrap_ci(values, seed=3, n_resamples=500)
    assert est.low < est.mean < est.high


def test_bootstrap_edge_cases() -> None:
    assert m.bootstrap_ci([], seed=0) == m.Estimate(0, None, None, None)
    assert m.bootstrap_ci([None, None], seed=0).n == 0
    assert m.bootstrap_ci([D("7.5")], seed=0) == m.Estimate(1, 7.5, 7.5, 7.5)
    # ties everywhere: a degenerate interval, not an error
    assert m.bootstrap_ci([2, 2, 2], seed=0) == m.Estimate(3, 2.0, 2.0, 2.0)


def test_paired_differences_and_the_plain_language_line() -> None:
    a = {1: 0.5, 2: 0.4, 3: None, 4: 0.2}
    b = {1: 0.7, 2: 0.6, 3: 0.9, 5: 0.1}
    assert m.paired_differences(a, b) == pytest.approx([0.2, 0.2])  # seeds 1 and 2 only
    est = m.bootstrap_ci(m.paired_differences(a, b) * 10, seed=0)
    line = m.compare_sentence(metric="buyer share", estimate=est, higher_is_better=True, label_a="A", label_b="B")
    assert line.startswith("B did better on buyer share") and "excludes 0" in line
    worse = m.compare_sentence(metric="cost", estimate=est, higher_is_better=False, label_a="A", label_b="B")
    assert worse.startswith("A did better on cost")
    mixed = m.bootstrap_ci([-1, 1, 2, -2, 0.5], seed=0)
    assert "could be chance" in m.compare_sentence(metric="rounds", estimate=mixed, higher_is_better=None,
                                                   label_a="A", label_b="B")
    assert m.compare_sentence(metric="x", estimate=m.Estimate(0, None, None, None), higher_is_better=True,
                              label_a="A", label_b="B") == "x: no pairs to compare."


def test_bootstrap_many_resamples_units_jointly_and_skips_undefined_values() -> None:
    # four runs: two deals at 7 and 8, two without a deal (price undefined)
    cols = {"deal": [1, 1, 0, 0], "price": [7.0, 8.0, None, float("nan")], "same": [3, 3, 3, 3]}
    est = m.bootstrap_many(cols, seed=5)
    assert est["deal"].mean == 0.5 and est["deal"].n == 4
    assert est["price"].mean == 7.5 and est["price"].n == 2 and 7.0 <= est["price"].low <= est["price"].high <= 8.0
    assert est["same"] == m.Estimate(4, 3.0, 3.0, 3.0)
    assert m.bootstrap_many(cols, seed=5) == est
    with pytest.raises(ValueError):
        m.bootstrap_many({"a": [1, 2], "b": [1]})


# --- buyer score and many comparisons (worked examples from the docstrings) ------------------------

def test_buyer_score_counts_no_deal_as_zero_where_a_deal_was_possible():
    from analytics.metrics import buyer_score
    got = buyer_score(deal=np.array([1.0, 0.0, 1.0]), buyer_share=np.array([0.6, np.nan, np.nan]),
                      zopa=np.array([10.0, 10.0, 0.0]))
    assert got[:2].tolist() == [0.6, 0.0] and np.isnan(got[2])
    assert np.nanmean(got) == pytest.approx(0.3)


def test_holm_adjust_worked_example():
    from analytics.metrics import holm_adjust
    assert holm_adjust([0.01, 0.04, 0.03]) == pytest.approx([0.03, 0.06, 0.06])
    assert holm_adjust([0.01, None, 0.5]) == [0.02, None, 0.5]
    assert holm_adjust([]) == []
    # adjusted p-values are never below the raw ones and never above 1
    raw = [0.2, 0.001, 0.04, 0.9]
    assert all(a >= p and a <= 1 for a, p in zip(holm_adjust(raw), raw, strict=True))


def test_paired_permutation_p_worked_examples():
    from analytics.metrics import paired_permutation_p
    # five equal positive differences: 2 of the 32 sign patterns are as extreme
    assert paired_permutation_p([1, 1, 1, 1, 1]) == pytest.approx(2 / 32, abs=0.01)
    assert paired_permutation_p([1, -1, 1, -1]) == 1.0
    assert paired_permutation_p([]) is None
    # a large consistent shift is very unlikely under H0; the same data and seed give the same p
    shift = [0.3 + 0.01 * i for i in range(30)]
    assert paired_permutation_p(shift) < 0.001 and paired_permutation_p(shift) == paired_permutation_p(shift)


# --- replication suites' published metrics (worked examples from the docstrings) ---------------------

def test_negotiationarena_buyer_payoff_worked_example():
    assert m.na_buyer_payoff(price=D("41.37"), value=D("60")) == D("18.63")


def test_a2a_nt_metrics_worked_examples():
    assert m.a2a_price_reduction_rate(price=D("339"), retail=D("399")) == pytest.approx(60 / 399)
    assert m.a2a_relative_profit(price=D("339"), wholesale=D("279"), retail=D("399")) == pytest.approx(0.5)
    assert m.a2a_relative_profit(price=D("339"), wholesale=D("399"), retail=D("399")) is None
    assert m.a2a_out_of_budget(deal=True, price=D("350"), budget=D("339"))
    assert not m.a2a_out_of_budget(deal=False, price=None, budget=D("339"))
    assert not m.a2a_out_of_budget(deal=True, price=D("339"), budget=D("339"))

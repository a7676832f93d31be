"""The server-drawn charts (analytics/charts.py) and the number formats (analytics/formats.py): nice
ticks, axis titles with units, share axes 0-100%, CI whiskers, and the compare plot on shared scales."""

from __future__ import annotations

import re

import pytest

from analytics import charts
from analytics.formats import diff, fmt, tick


@pytest.mark.parametrize(("lo", "hi", "expected"), [
    (0, 4, [0, 1, 2, 3, 4]),
    (0, 7, [0, 2, 4, 6, 8]),
    (8.72, 9.89, [8.5, 8.75, 9.0, 9.25, 9.5, 9.75, 10.0]),
    (0, 1, [0, 0.2, 0.4, 0.6, 0.8, 1.0]),
    (-0.087, 0.087, [-0.1, -0.05, 0, 0.05, 0.1]),
])
def test_ticks_are_nice_numbers_that_cover_the_data(lo: float, hi: float, expected: list[float]) -> None:
    assert charts.nice_ticks(lo, hi) == pytest.approx(expected)


def test_counts_get_whole_number_ticks() -> None:
    assert charts.nice_ticks(0, 3, integer=True) == [0, 1, 2, 3]


def test_one_format_per_kind() -> None:
    assert [fmt(0.4234, "pct"), fmt(1234.5, "money"), fmt(-3.2, "money"), fmt(1680, "num")] == [
        "42.3%", "$1,234.50", "−$3.20", "1,680"]
    assert [diff(0.0657, "pct"), diff(-1680, "num"), diff(0.29, "money"), diff(0, "pct")] == [
        "+6.6 pp", "−1,680", "+$0.29", "±0.0 pp"]
    assert [tick(0.25, "pct", 0.25), tick(9.5, "money", 0.5), tick(10, "money", 5)] == ["25%", "$9.50", "$10"]


def texts(svg: str, cls: str) -> list[str]:
    return re.findall(rf'<text[^>]*class="{cls}"[^>]*>([^<]*)</text>', svg)


def test_a_share_chart_runs_from_0_to_100_percent_with_ci_whiskers_and_axis_titles() -> None:
    svg = charts.bars(["rude", "sweet"], [("buyer share", [0.83, 0.4], [(0.7, 0.9), (0.3, 0.5)])], label="Shares",
                      x_title="Seller style", y_title="Buyer's share (%)", y_unit="pct", y_max=1.0)
    assert texts(svg, "tick")[:5] == ["0%", "25%", "50%", "75%", "100%"]
    assert texts(svg, "axis-title x") == ["Seller style"] and texts(svg, "axis-title y") == ["Buyer&#x27;s share (%)"]
    assert svg.count('<g class="ci">') == 2 and "95% CI 70.0% – 90.0%" in svg


def test_the_offers_chart_has_nice_dollar_ticks_and_keeps_guide_labels_inside() -> None:
    svg = charts.offers({"@A": [charts.Point(1, 9.89), charts.Point(2, 8.72)]}, rounds=2, label="Offers",
                        guides={"lowest floor @BudgetWires": 5.65})
    ticks = [t for t in texts(svg, "tick") if t.startswith("$")]
    assert ticks == ["$5", "$6", "$7", "$8", "$9", "$10"]
    label = re.search(r'<text x="([\d.]+)"[^>]*text-anchor="end" class="guide-label">([^<]*)</text>', svg)
    assert float(label.group(1)) <= charts.W and label.group(2) == "lowest floor @BudgetWires $5.65"
    assert texts(svg, "axis-title x") == ["Round"] and texts(svg, "axis-title y") == ["Price per unit ($)"]


def test_the_compare_plot_puts_rows_of_one_unit_on_one_scale_with_their_numbers() -> None:
    svg = charts.forest([("Deal rate", 0.1, 0.05, 0.15, "pct"), ("Buyer share", 0.02, -0.01, 0.05, "pct"),
                         ("Mean price", -0.29, -0.4, -0.1, "money")], label="Diffs")
    def x(v: str) -> float:  # the tick's position on the shared percent axis
        return float(re.search(rf'<text x="([\d.]+)"[^>]*class="tick">{re.escape(v)}</text>', svg).group(1))

    # both shares on one axis: a 20 pp difference sits twice as far from 0 as a 10 pp one
    assert x("+20 pp") - x("0 pp") == pytest.approx(2 * (x("+10 pp") - x("0 pp")))
    dots = [float(v) for v in re.findall(r'<circle cx="([\d.]+)"', svg)]
    assert dots[0] - x("0 pp") == pytest.approx(5 * (dots[1] - x("0 pp")), rel=0.02)  # 10 pp vs 2 pp
    assert svg.count('class="zero"') == 2  # one zero line per panel (percent points, dollars)
    assert "+10.0 pp [+5.0 pp, +15.0 pp]" in svg and "−$0.29 [−$0.40, −$0.10]" in svg
    assert texts(svg, "axis-title x") and texts(svg, "axis-title y") == ["Metric"]

"""Charts drawn on the server as inline SVG: no JavaScript library, no internet, printable.

Each function takes plain numbers and returns an SVG string that scales to its container (`viewBox`,
width 100%; the stylesheet keeps a chart between about 0.9x and 1.3x its drawn size on a 1400 px
screen, so its 12 px type reads as 11-16 px). Every chart has an x and a y axis title with its unit,
ticks at "nice" values (1, 2, 2.5 or 5 times a power of ten), numbers in the one format per kind of
analytics/formats.py, and CI whiskers wherever a number has a CI. Every text is escaped. Elements
carry `data-*` attributes where the run page's replay needs them (`data-round`).
"""

from __future__ import annotations

import math
from collections.abc import Mapping, Sequence
from dataclasses import dataclass
from html import escape
from itertools import pairwise
from typing import Any

from analytics.formats import diff, fmt, tick

PALETTE = ["#2563eb", "#dc2626", "#16a34a", "#9333ea", "#ea580c", "#0891b2", "#ca8a04", "#db2777", "#4b5563",
           "#65a30d"]
W, H = 600, 280
PAD_L, PAD_R, PAD_T, PAD_B = 74, 16, 30, 54
CHAR_W = 7.0  # the width of one 12 px character, for laying out legends and labels


def _svg(body: list[str], *, label: str, width: int = W, height: int = H) -> str:
    return (f'<svg class="chart" viewBox="0 0 {width} {height}" width="100%" role="img" '
            f'aria-label="{escape(label)}" xmlns="http://www.w3.org/2000/svg"><title>{escape(label)}</title>'
            f'{"".join(body)}</svg>')


def nice_ticks(lo: float, hi: float, *, n: int = 5, integer: bool = False) -> list[float]:
    """Tick values covering [lo, hi] at a step of 1, 2, 2.5 or 5 times a power of ten (whole numbers
    for counts); the first and last tick are the axis ends."""
    if not math.isfinite(lo) or not math.isfinite(hi):
        lo, hi = 0.0, 1.0
    if hi <= lo:
        hi = lo + (abs(lo) or 1.0)
    raw = (hi - lo) / n
    mag = 10 ** math.floor(math.log10(raw))
    step = next(m * mag for m in (1, 2, 2.5, 5, 10) if m * mag >= raw * 0.999)
    if integer:
        step = max(1.0, round(step)) if step >= 1 else 1.0
    start, end = math.floor(lo / step + 1e-9) * step, math.ceil(hi / step - 1e-9) * step
    count = round((end - start) / step)
    return [round(start + i * step, 10) for i in range(count + 1)]


def _step(ticks: Sequence[float]) -> float:
    return ticks[1] - ticks[0] if len(ticks) > 1 else 1.0


def _axis_titles(x_title: str, y_title: str, *, width: int = W, height: int = H, left: float = PAD_L,
                 right: float = PAD_R, bottom: float = PAD_B, top: float = PAD_T) -> list[str]:
    cx, cy = left + (width - left - right) / 2, top + (height - top - bottom) / 2
    return [f'<text x="{cx:.1f}" y="{height - 8}" text-anchor="middle" class="axis-title x">{escape(x_title)}</text>',
            f'<text x="16" y="{cy:.1f}" transform="rotate(-90 16 {cy:.1f})" text-anchor="middle" '
            f'class="axis-title y">{escape(y_title)}</text>']


def _y_axis(ticks: Sequence[float], unit: str, *, height: int = H) -> list[str]:
    out, lo, hi = [], ticks[0], ticks[-1]
    for v in ticks:
        y = height - PAD_B - (height - PAD_T - PAD_B) * (v - lo) / (hi - lo)
        out.append(f'<line x1="{PAD_L}" x2="{W - PAD_R}" y1="{y:.1f}" y2="{y:.1f}" class="grid"/>')
        out.append(f'<text x="{PAD_L - 6}" y="{y + 4:.1f}" text-anchor="end" class="tick">'
                   f'{escape(tick(v, unit, _step(ticks)))}</text>')
    return out


def _legend(names: Sequence[str], *, x: float = PAD_L, y: float = 16, colors: Sequence[str] = PALETTE) -> list[str]:
    out = []
    for j, name in enumerate(names):
        out.append(f'<rect x="{x:.1f}" y="{y - 9}" width="10" height="10" fill="{colors[j % len(colors)]}"/>')
        out.append(f'<text x="{x + 14:.1f}" y="{y}" class="legend">{escape(name)}</text>')
        x += 26 + CHAR_W * len(name)
    return out


def empty(label: str, message: str = "No data yet") -> str:
    return _svg([f'<text x="{W / 2}" y="{H / 2}" text-anchor="middle" class="empty">{escape(message)}</text>'],
                label=label)


Series = tuple[str, Sequence[float]] | tuple[str, Sequence[float], Sequence[tuple[float | None, float | None] | None]]


def bars(labels: Sequence[str], series: Sequence[Series], *, label: str, x_title: str, y_title: str,
         y_unit: str = "num", y_max: float | None = None, stacked: bool = True) -> str:
    """Vertical bars, one group per label; several series stack (or sit side by side). A series may
    carry a (low, high) CI per bar, drawn as a whisker; `y_max` pins the axis (1.0 for a share)."""
    if not labels or not any(any(v for v in s[1]) for s in series):
        return empty(label)
    errors = [list(s[2]) if len(s) > 2 else [None] * len(labels) for s in series]
    totals = [sum(s[1][i] for s in series) if stacked else max(s[1][i] for s in series) for i in range(len(labels))]
    highs = [e[1] for errs in errors for e in errs if e and e[1] is not None]
    ticks = ([y_max * i / 4 for i in range(5)] if y_max is not None
             else nice_ticks(0, max(totals + highs), integer=y_unit == "count"))
    top = ticks[-1]
    plot_w, plot_h = W - PAD_L - PAD_R, H - PAD_T - PAD_B
    slot = plot_w / len(labels)
    bar_w = slot * 0.7 / (1 if stacked else len(series))
    out = _y_axis(ticks, y_unit)

    def y_of(v: float) -> float:
        return H - PAD_B - plot_h * max(0.0, min(v, top)) / top

    every = max(1, math.ceil(len(labels) * 9 * CHAR_W / plot_w / 1.2))  # keep category labels from colliding
    for i, name in enumerate(labels):
        base = 0.0
        for j, s in enumerate(series):
            sname, v = s[0], s[1][i]
            x = PAD_L + slot * i + slot * 0.15 + (0 if stacked else j * bar_w)
            y0 = y_of(base) if stacked else y_of(0)
            y1 = y_of(base + v) if stacked else y_of(v)
            ci = errors[j][i]
            u = _unit(y_unit)
            note = f" (95% CI {fmt(ci[0], u)} – {fmt(ci[1], u)})" if ci and ci[0] is not None else ""
            out.append(f'<rect x="{x:.1f}" y="{y1:.1f}" width="{bar_w:.1f}" height="{max(y0 - y1, 0):.1f}" '
                       f'fill="{PALETTE[j % len(PALETTE)]}" class="bar"><title>{escape(str(name))} · {escape(sname)}: '
                       f'{escape(fmt(v, _unit(y_unit)))}{escape(note)}</title></rect>')
            if ci and ci[0] is not None and ci[1] is not None:
                cx, lo, hi = x + bar_w / 2, y_of(base + ci[0]), y_of(base + ci[1])
                out.append(f'<g class="ci"><line x1="{cx:.1f}" x2="{cx:.1f}" y1="{lo:.1f}" y2="{hi:.1f}"/>'
                           f'<line x1="{cx - 5:.1f}" x2="{cx + 5:.1f}" y1="{lo:.1f}" y2="{lo:.1f}"/>'
                           f'<line x1="{cx - 5:.1f}" x2="{cx + 5:.1f}" y1="{hi:.1f}" y2="{hi:.1f}"/></g>')
            if stacked:
                base += v
        if i % every == 0:
            out.append(f'<text x="{PAD_L + slot * (i + 0.5):.1f}" y="{H - PAD_B + 18}" text-anchor="middle" '
                       f'class="tick">{escape(str(name)[:16])}</text>')
    if len(series) > 1 or any(any(e) for e in errors):
        names = [s[0] for s in series]
        out += _legend(names + (["95% CI"] if any(any(e) for e in errors) else []),
                       colors=[*PALETTE[:len(names)], "#111827"])
    out += _axis_titles(x_title, y_title)
    return _svg(out, label=label)


def _unit(axis_unit: str) -> str:
    return {"count": "num"}.get(axis_unit, axis_unit)


def histogram(bins: Sequence[dict[str, Any]], *, label: str, x_title: str, y_title: str = "Runs",
              x_unit: str = "num", color: str = PALETTE[0]) -> str:
    """Equal-width bins ({lo, hi, n}) as touching bars over a continuous x axis with nice ticks."""
    if not bins or not any(b["n"] for b in bins):
        return empty(label)
    ticks = nice_ticks(0, max(b["n"] for b in bins), integer=True)
    top = ticks[-1]
    lo, hi = float(bins[0]["lo"]), float(bins[-1]["hi"])
    if hi <= lo:
        lo, hi = lo - 0.5, hi + 0.5
    plot_w, plot_h = W - PAD_L - PAD_R, H - PAD_T - PAD_B

    def x_of(v: float) -> float:
        return PAD_L + plot_w * (v - lo) / (hi - lo)

    out = _y_axis(ticks, "count")
    for b in bins:
        h = plot_h * b["n"] / top
        x1, x2 = x_of(float(b["lo"])), x_of(float(b["hi"]))
        if x2 - x1 < 3:  # a single-value bin: draw it as a visible bar centred on its value
            x1, x2 = x1 - 6, x1 + 6
        out.append(f'<rect x="{x1 + 1:.1f}" y="{H - PAD_B - h:.1f}" width="{max(x2 - x1 - 2, 1):.1f}" '
                   f'height="{h:.1f}" fill="{color}" class="bar"><title>{escape(fmt(b["lo"], x_unit))}–'
                   f'{escape(fmt(b["hi"], x_unit))}: {b["n"]} run{"s" if b["n"] != 1 else ""}</title></rect>')
    x_ticks = [t for t in nice_ticks(lo, hi, n=6) if lo - 1e-9 <= t <= hi + 1e-9]
    for t in x_ticks:
        x = x_of(t)
        out.append(f'<line x1="{x:.1f}" x2="{x:.1f}" y1="{H - PAD_B}" y2="{H - PAD_B + 5}" class="axis"/>')
        out.append(f'<text x="{x:.1f}" y="{H - PAD_B + 18}" text-anchor="middle" class="tick">'
                   f'{escape(tick(t, x_unit, _step(x_ticks)))}</text>')
    out += _axis_titles(x_title, y_title)
    return _svg(out, label=label)


@dataclass(frozen=True)
class Point:
    round_no: int
    price: float
    label: str = ""


def offers(lines: Mapping[str, Sequence[Point]], *, rounds: int, label: str, guides: dict[str, float] | None = None,
           decision: bool = False) -> str:
    """Prices over rounds: one line per party, dashed guides (the buyer's max, each floor) labelled
    inside the plot. Every point and segment carries data-round, so the replay can hide what came later.
    With `decision`, the last step is the buyer's closing decision after the last round, labelled so."""
    values = [p.price for pts in lines.values() for p in pts] + list((guides or {}).values())
    if not values:
        return empty(label, "No prices were named in this run")
    ticks = nice_ticks(max(0.0, min(values) - (max(values) - min(values)) * 0.05), max(values), n=5)
    lo, hi = ticks[0], ticks[-1]
    # the word "decision" under the last step needs room that a round number does not
    plot_w, plot_h = W - PAD_L - PAD_R - 20 - (36 if decision else 0), H - PAD_T - PAD_B
    rounds = max(rounds, 1)

    def xy(r: int, v: float) -> tuple[float, float]:
        x = PAD_L + 20 + (plot_w * (r - 1) / (rounds - 1) if rounds > 1 else plot_w / 2)
        return x, H - PAD_B - plot_h * (v - lo) / (hi - lo)

    out = _y_axis(ticks, "money")
    for r in range(1, rounds + 1):
        x, _ = xy(r, lo)
        name = "decision" if decision and r == rounds else str(r)
        out.append(f'<text x="{x:.1f}" y="{H - PAD_B + 18}" text-anchor="middle" class="tick">{name}</text>')
    for name, value in (guides or {}).items():
        _, y = xy(1, value)
        out.append(f'<line x1="{PAD_L}" x2="{W - PAD_R}" y1="{y:.1f}" y2="{y:.1f}" class="guide"/>')
        out.append(f'<text x="{W - PAD_R - 2}" y="{y - 4:.1f}" text-anchor="end" class="guide-label">'
                   f'{escape(name)} {escape(fmt(value, "money"))}</text>')
    for j, (name, pts) in enumerate(lines.items()):
        color = PALETTE[j % len(PALETTE)]
        pts = sorted(pts, key=lambda p: p.round_no)
        for a, b in pairwise(pts):
            (x1, y1), (x2, y2) = xy(a.round_no, a.price), xy(b.round_no, b.price)
            out.append(f'<line x1="{x1:.1f}" y1="{y1:.1f}" x2="{x2:.1f}" y2="{y2:.1f}" stroke="{color}" '
                       f'class="series" data-round="{b.round_no}"/>')
        for p in pts:
            x, y = xy(p.round_no, p.price)
            out.append(f'<circle cx="{x:.1f}" cy="{y:.1f}" r="4" fill="{color}" class="point" '
                       f'data-round="{p.round_no}"><title>Round {p.round_no} {escape(name)}: '
                       f'{escape(fmt(p.price, "money"))} {escape(p.label)}</title></circle>')
    out += _legend(list(lines))
    out += _axis_titles("Round", "Price per unit ($)")
    return _svg(out, label=label)


FOREST_W = 820
F_LEFT, F_RIGHT = 200, 230  # metric names on the left, the numbers on the right
AXIS_NAMES = {"pct": "percentage points", "money": "$", "usd": "$", "ms": "ms", "num": ""}


def forest(rows: Sequence[tuple[Any, ...]], *, label: str, difference: str = "B − A") -> str:
    """Paired differences with their 95% CIs around a zero line, with the numbers beside each row.

    Rows are (name, mean, low, high[, unit]). Rows of one unit share one scale (every share in
    percentage points on one axis, every dollar amount on another); a count or a time of its own kind
    gets its own panel, so no row is stretched to a scale of its own without saying so.
    """
    rows = [r for r in rows if r[1] is not None]
    if not rows:
        return empty(label, "No pairs to compare")
    panels: dict[str, list[tuple[Any, ...]]] = {}
    for r in rows:
        unit = r[4] if len(r) > 4 else "num"
        key = unit if unit in ("pct", "money") else f"{unit}:{r[0]}"
        panels.setdefault(key, []).append(r)
    row_h, head_h, axis_h = 24, 8, 34
    plot_l, plot_r = F_LEFT, FOREST_W - F_RIGHT
    out, y = [], 34.0
    out.append(f'<text x="{FOREST_W - F_RIGHT + 8}" y="18" class="legend">{escape(difference)} [95% CI]</text>')
    for key, prs in panels.items():
        unit = key.split(":")[0]
        values = [v for r in prs for v in (r[1], r[2], r[3]) if v is not None]
        span = max(abs(min([*values, 0.0])), abs(max([*values, 0.0]))) or 1.0
        ticks = nice_ticks(-span, span, n=4)
        lo, hi = ticks[0], ticks[-1]

        def x_of(v: float, lo: float = lo, hi: float = hi) -> float:
            return plot_l + (plot_r - plot_l) * (v - lo) / (hi - lo)

        top = y + head_h
        bottom = top + row_h * len(prs)
        for t in ticks:
            out.append(f'<line x1="{x_of(t):.1f}" x2="{x_of(t):.1f}" y1="{top:.1f}" y2="{bottom:.1f}" class="grid"/>')
            out.append(f'<text x="{x_of(t):.1f}" y="{bottom + 15:.1f}" text-anchor="middle" class="tick">'
                       f'{escape(tick(t, "pp" if unit == "pct" else unit, _step(ticks)))}</text>')
        out.append(f'<line x1="{x_of(0):.1f}" x2="{x_of(0):.1f}" y1="{top - 4:.1f}" y2="{bottom:.1f}" class="zero"/>')
        for i, r in enumerate(prs):
            name, mean, low, high = r[0], r[1], r[2], r[3]
            cy = top + row_h * i + row_h / 2
            excludes = low is not None and high is not None and (low > 0 or high < 0)
            color = PALETTE[0] if excludes else "#6b7280"
            text = diff(mean, unit) + (f" [{diff(low, unit)}, {diff(high, unit)}]" if low is not None else "")
            out.append(f'<text x="{plot_l - 8}" y="{cy + 4:.1f}" text-anchor="end" class="tick">'
                       f'{escape(str(name))}</text>')
            if low is not None and high is not None:
                out.append(f'<line x1="{x_of(low):.1f}" x2="{x_of(high):.1f}" y1="{cy:.1f}" y2="{cy:.1f}" '
                           f'stroke="{color}" stroke-width="3" class="series"/>')
            out.append(f'<circle cx="{x_of(mean):.1f}" cy="{cy:.1f}" r="5" fill="{color}"><title>{escape(str(name))}: '
                       f'{escape(text)}</title></circle>')
            out.append(f'<text x="{plot_r + 8}" y="{cy + 4:.1f}" class="tick value{" sig" if excludes else ""}">'
                       f'{escape(text)}</text>')
        y = bottom + axis_h
    height = int(y + 14)
    cy = 34 + (height - 34 - 22) / 2
    out.append(f'<text x="{(plot_l + plot_r) / 2:.1f}" y="{height - 8}" text-anchor="middle" class="axis-title x">'
               f'{escape(difference)}, in each metric\'s unit (shares in percentage points, money in $)</text>')
    out.append(f'<text x="16" y="{cy:.1f}" transform="rotate(-90 16 {cy:.1f})" text-anchor="middle" '
               f'class="axis-title y">Metric</text>')
    return _svg(out, label=label, width=FOREST_W, height=height)


def lines(series: Mapping[str, Sequence[float | None]], *, label: str, x_title: str, y_title: str, top: float = 1.0,
          x_label: str = "run", y_unit: str = "num") -> str:
    """Values over steps 1..n (e.g. a cumulative average utility per run): one line per series, y from
    0 to `top`; a None leaves a gap. Each point carries data-step and a tooltip."""
    n = max((len(v) for v in series.values()), default=0)
    if not n or not any(x is not None for v in series.values() for x in v):
        return empty(label)
    ticks = nice_ticks(0, top, n=4)
    top = ticks[-1]
    plot_w, plot_h = W - PAD_L - PAD_R - 20, H - PAD_T - PAD_B

    def xy(i: int, v: float) -> tuple[float, float]:
        x = PAD_L + 10 + (plot_w * i / (n - 1) if n > 1 else plot_w / 2)
        return x, H - PAD_B - plot_h * max(0.0, min(v, top)) / top

    out = _y_axis(ticks, y_unit)
    step = max(1, math.ceil(n / 12))
    for i in range(0, n, step):
        x, _ = xy(i, 0)
        out.append(f'<text x="{x:.1f}" y="{H - PAD_B + 18}" text-anchor="middle" class="tick">{i + 1}</text>')
    for j, (name, values) in enumerate(series.items()):
        color = PALETTE[j % len(PALETTE)]
        points = [(i, v) for i, v in enumerate(values) if v is not None]
        for (i1, v1), (i2, v2) in pairwise(points):
            if i2 == i1 + 1:
                (x1, y1), (x2, y2) = xy(i1, v1), xy(i2, v2)
                out.append(f'<line x1="{x1:.1f}" y1="{y1:.1f}" x2="{x2:.1f}" y2="{y2:.1f}" stroke="{color}" '
                           f'class="series"/>')
        for i, v in points:
            x, y = xy(i, v)
            out.append(f'<circle cx="{x:.1f}" cy="{y:.1f}" r="3.5" fill="{color}" class="point" data-step="{i + 1}">'
                       f'<title>{escape(name)} after {escape(x_label)} {i + 1}: {escape(fmt(v, _unit(y_unit)))}'
                       f'</title></circle>')
    out += _legend(list(series))
    out += _axis_titles(x_title, y_title)
    return _svg(out, label=label)
